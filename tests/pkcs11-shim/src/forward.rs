// The session-taking entry points of cryptoki-sys 0.5's CK_FUNCTION_LIST
// (PKCS#11 2.40), in its order, with the specification's parameter names.
// Each maps the shim's session handle to the real module's, applies the
// emulation (see `session_call`, which also catches panics) and forwards.

use cryptoki_sys::*;

use crate::{session_call, Hook};

/// For each `C_Name(parameters after the session handle) => hook;`: the
/// exported `C_Name`, which runs `session_call` with the hook and then the
/// real module's `C_Name` with the real session handle and the caller's
/// other arguments as they came (`CKR_FUNCTION_NOT_SUPPORTED` where the real
/// module has none). Plus `fill`, which puts them all in a function list.
macro_rules! forward {
    ($($name:ident($($arg:ident: $ty:ty),* $(,)?) => $hook:expr;)*) => {
        $(
            #[doc = concat!("`", stringify!($name), "`, forwarded.")]
            ///
            /// # Safety
            #[doc = concat!("As `", stringify!($name), "` in PKCS#11.")]
            #[no_mangle]
            pub unsafe extern "C" fn $name(hSession: CK_SESSION_HANDLE, $($arg: $ty),*) -> CK_RV {
                session_call(hSession, $hook, |real, real_session| match real.$name {
                    // SAFETY: the real module's own entry point, called with the
                    // caller's arguments and the real handle the shim's handle
                    // stands for.
                    Some(f) => unsafe { f(real_session, $($arg),*) },
                    None => CKR_FUNCTION_NOT_SUPPORTED,
                })
            }
        )*

        /// Fills the session entries of `list` with this module's functions.
        pub(crate) fn fill(list: &mut CK_FUNCTION_LIST) {
            $(list.$name = Some($name);)*
        }
    };
}

forward! {
    // Sessions and users.
    C_InitPIN(pPin: *mut CK_UTF8CHAR, ulPinLen: CK_ULONG) => Hook::Plain;
    C_SetPIN(
        pOldPin: *mut CK_UTF8CHAR,
        ulOldLen: CK_ULONG,
        pNewPin: *mut CK_UTF8CHAR,
        ulNewLen: CK_ULONG,
    ) => Hook::Plain;
    C_CloseSession() => Hook::Close;
    C_GetSessionInfo(pInfo: *mut CK_SESSION_INFO) => Hook::Plain;
    C_GetOperationState(
        pOperationState: *mut CK_BYTE,
        pulOperationStateLen: *mut CK_ULONG,
    ) => Hook::Plain;
    C_SetOperationState(
        pOperationState: *mut CK_BYTE,
        ulOperationStateLen: CK_ULONG,
        hEncryptionKey: CK_OBJECT_HANDLE,
        hAuthenticationKey: CK_OBJECT_HANDLE,
    ) => Hook::Plain;
    C_Login(userType: CK_USER_TYPE, pPin: *mut CK_UTF8CHAR, ulPinLen: CK_ULONG) => Hook::Plain;
    C_Logout() => Hook::Plain;

    // Objects.
    C_CreateObject(
        pTemplate: *mut CK_ATTRIBUTE,
        ulCount: CK_ULONG,
        phObject: *mut CK_OBJECT_HANDLE,
    ) => Hook::Plain;
    C_CopyObject(
        hObject: CK_OBJECT_HANDLE,
        pTemplate: *mut CK_ATTRIBUTE,
        ulCount: CK_ULONG,
        phNewObject: *mut CK_OBJECT_HANDLE,
    ) => Hook::Plain;
    C_DestroyObject(hObject: CK_OBJECT_HANDLE) => Hook::Plain;
    C_GetObjectSize(hObject: CK_OBJECT_HANDLE, pulSize: *mut CK_ULONG) => Hook::Plain;
    C_GetAttributeValue(
        hObject: CK_OBJECT_HANDLE,
        pTemplate: *mut CK_ATTRIBUTE,
        ulCount: CK_ULONG,
    ) => Hook::Plain;
    C_SetAttributeValue(
        hObject: CK_OBJECT_HANDLE,
        pTemplate: *mut CK_ATTRIBUTE,
        ulCount: CK_ULONG,
    ) => Hook::Plain;
    C_FindObjectsInit(pTemplate: *mut CK_ATTRIBUTE, ulCount: CK_ULONG) => Hook::Plain;
    C_FindObjects(
        phObject: *mut CK_OBJECT_HANDLE,
        ulMaxObjectCount: CK_ULONG,
        pulObjectCount: *mut CK_ULONG,
    ) => Hook::Plain;
    C_FindObjectsFinal() => Hook::Plain;

    // Encryption and decryption.
    C_EncryptInit(
        pMechanism: *mut CK_MECHANISM,
        hKey: CK_OBJECT_HANDLE,
    ) => Hook::Mechanism(pMechanism);
    C_Encrypt(
        pData: *mut CK_BYTE,
        ulDataLen: CK_ULONG,
        pEncryptedData: *mut CK_BYTE,
        pulEncryptedDataLen: *mut CK_ULONG,
    ) => Hook::Plain;
    C_EncryptUpdate(
        pPart: *mut CK_BYTE,
        ulPartLen: CK_ULONG,
        pEncryptedPart: *mut CK_BYTE,
        pulEncryptedPartLen: *mut CK_ULONG,
    ) => Hook::Plain;
    C_EncryptFinal(
        pLastEncryptedPart: *mut CK_BYTE,
        pulLastEncryptedPartLen: *mut CK_ULONG,
    ) => Hook::Plain;
    C_DecryptInit(
        pMechanism: *mut CK_MECHANISM,
        hKey: CK_OBJECT_HANDLE,
    ) => Hook::Mechanism(pMechanism);
    C_Decrypt(
        pEncryptedData: *mut CK_BYTE,
        ulEncryptedDataLen: CK_ULONG,
        pData: *mut CK_BYTE,
        pulDataLen: *mut CK_ULONG,
    ) => Hook::Plain;
    C_DecryptUpdate(
        pEncryptedPart: *mut CK_BYTE,
        ulEncryptedPartLen: CK_ULONG,
        pPart: *mut CK_BYTE,
        pulPartLen: *mut CK_ULONG,
    ) => Hook::Plain;
    C_DecryptFinal(pLastPart: *mut CK_BYTE, pulLastPartLen: *mut CK_ULONG) => Hook::Plain;

    // Digests.
    C_DigestInit(pMechanism: *mut CK_MECHANISM) => Hook::Mechanism(pMechanism);
    C_Digest(
        pData: *mut CK_BYTE,
        ulDataLen: CK_ULONG,
        pDigest: *mut CK_BYTE,
        pulDigestLen: *mut CK_ULONG,
    ) => Hook::Plain;
    C_DigestUpdate(pPart: *mut CK_BYTE, ulPartLen: CK_ULONG) => Hook::Plain;
    C_DigestKey(hKey: CK_OBJECT_HANDLE) => Hook::Plain;
    C_DigestFinal(pDigest: *mut CK_BYTE, pulDigestLen: *mut CK_ULONG) => Hook::Plain;

    // Signatures and their verification.
    C_SignInit(
        pMechanism: *mut CK_MECHANISM,
        hKey: CK_OBJECT_HANDLE,
    ) => Hook::Mechanism(pMechanism);
    C_Sign(
        pData: *mut CK_BYTE,
        ulDataLen: CK_ULONG,
        pSignature: *mut CK_BYTE,
        pulSignatureLen: *mut CK_ULONG,
    ) => Hook::Sign { output: !pSignature.is_null() };
    C_SignUpdate(pPart: *mut CK_BYTE, ulPartLen: CK_ULONG) => Hook::Plain;
    C_SignFinal(pSignature: *mut CK_BYTE, pulSignatureLen: *mut CK_ULONG) => Hook::Plain;
    C_SignRecoverInit(
        pMechanism: *mut CK_MECHANISM,
        hKey: CK_OBJECT_HANDLE,
    ) => Hook::Mechanism(pMechanism);
    C_SignRecover(
        pData: *mut CK_BYTE,
        ulDataLen: CK_ULONG,
        pSignature: *mut CK_BYTE,
        pulSignatureLen: *mut CK_ULONG,
    ) => Hook::Plain;
    C_VerifyInit(
        pMechanism: *mut CK_MECHANISM,
        hKey: CK_OBJECT_HANDLE,
    ) => Hook::Mechanism(pMechanism);
    C_Verify(
        pData: *mut CK_BYTE,
        ulDataLen: CK_ULONG,
        pSignature: *mut CK_BYTE,
        ulSignatureLen: CK_ULONG,
    ) => Hook::Plain;
    C_VerifyUpdate(pPart: *mut CK_BYTE, ulPartLen: CK_ULONG) => Hook::Plain;
    C_VerifyFinal(pSignature: *mut CK_BYTE, ulSignatureLen: CK_ULONG) => Hook::Plain;
    C_VerifyRecoverInit(
        pMechanism: *mut CK_MECHANISM,
        hKey: CK_OBJECT_HANDLE,
    ) => Hook::Mechanism(pMechanism);
    C_VerifyRecover(
        pSignature: *mut CK_BYTE,
        ulSignatureLen: CK_ULONG,
        pData: *mut CK_BYTE,
        pulDataLen: *mut CK_ULONG,
    ) => Hook::Plain;

    // Dual-function operations.
    C_DigestEncryptUpdate(
        pPart: *mut CK_BYTE,
        ulPartLen: CK_ULONG,
        pEncryptedPart: *mut CK_BYTE,
        pulEncryptedPartLen: *mut CK_ULONG,
    ) => Hook::Plain;
    C_DecryptDigestUpdate(
        pEncryptedPart: *mut CK_BYTE,
        ulEncryptedPartLen: CK_ULONG,
        pPart: *mut CK_BYTE,
        pulPartLen: *mut CK_ULONG,
    ) => Hook::Plain;
    C_SignEncryptUpdate(
        pPart: *mut CK_BYTE,
        ulPartLen: CK_ULONG,
        pEncryptedPart: *mut CK_BYTE,
        pulEncryptedPartLen: *mut CK_ULONG,
    ) => Hook::Plain;
    C_DecryptVerifyUpdate(
        pEncryptedPart: *mut CK_BYTE,
        ulEncryptedPartLen: CK_ULONG,
        pPart: *mut CK_BYTE,
        pulPartLen: *mut CK_ULONG,
    ) => Hook::Plain;

    // Keys.
    C_GenerateKey(
        pMechanism: *mut CK_MECHANISM,
        pTemplate: *mut CK_ATTRIBUTE,
        ulCount: CK_ULONG,
        phKey: *mut CK_OBJECT_HANDLE,
    ) => Hook::Mechanism(pMechanism);
    C_GenerateKeyPair(
        pMechanism: *mut CK_MECHANISM,
        pPublicKeyTemplate: *mut CK_ATTRIBUTE,
        ulPublicKeyAttributeCount: CK_ULONG,
        pPrivateKeyTemplate: *mut CK_ATTRIBUTE,
        ulPrivateKeyAttributeCount: CK_ULONG,
        phPublicKey: *mut CK_OBJECT_HANDLE,
        phPrivateKey: *mut CK_OBJECT_HANDLE,
    ) => Hook::Generate { mechanism: pMechanism };
    C_WrapKey(
        pMechanism: *mut CK_MECHANISM,
        hWrappingKey: CK_OBJECT_HANDLE,
        hKey: CK_OBJECT_HANDLE,
        pWrappedKey: *mut CK_BYTE,
        pulWrappedKeyLen: *mut CK_ULONG,
    ) => Hook::Wrap { mechanism: pMechanism, output: !pWrappedKey.is_null() };
    C_UnwrapKey(
        pMechanism: *mut CK_MECHANISM,
        hUnwrappingKey: CK_OBJECT_HANDLE,
        pWrappedKey: *mut CK_BYTE,
        ulWrappedKeyLen: CK_ULONG,
        pTemplate: *mut CK_ATTRIBUTE,
        ulAttributeCount: CK_ULONG,
        phKey: *mut CK_OBJECT_HANDLE,
    ) => Hook::Mechanism(pMechanism);
    C_DeriveKey(
        pMechanism: *mut CK_MECHANISM,
        hBaseKey: CK_OBJECT_HANDLE,
        pTemplate: *mut CK_ATTRIBUTE,
        ulAttributeCount: CK_ULONG,
        phKey: *mut CK_OBJECT_HANDLE,
    ) => Hook::Mechanism(pMechanism);

    // Random numbers.
    C_SeedRandom(pSeed: *mut CK_BYTE, ulSeedLen: CK_ULONG) => Hook::Plain;
    C_GenerateRandom(pRandomData: *mut CK_BYTE, ulRandomLen: CK_ULONG) => Hook::Plain;

    // Parallel function management (legacy).
    C_GetFunctionStatus() => Hook::Plain;
    C_CancelFunction() => Hook::Plain;
}
