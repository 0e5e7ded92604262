// Generated from cryptoki-sys 0.5 CK_FUNCTION_LIST (PKCS#11 2.40): one forwarding
// function per session-taking entry. Each maps the shim's session handle to the
// real module's, applies the emulation (see `session_call`) and forwards.

use cryptoki_sys::*;

use crate::{session_call, Hook};

/// `C_InitPIN`, forwarded.
///
/// # Safety
/// As `C_InitPIN` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_InitPIN(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_UTF8CHAR,
    arg3: CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_InitPIN {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_SetPIN`, forwarded.
///
/// # Safety
/// As `C_SetPIN` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_SetPIN(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_UTF8CHAR,
    arg3: CK_ULONG,
    arg4: *mut CK_UTF8CHAR,
    arg5: CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_SetPIN {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4, arg5) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_CloseSession`, forwarded.
///
/// # Safety
/// As `C_CloseSession` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_CloseSession(arg1: CK_SESSION_HANDLE) -> CK_RV {
    session_call(arg1, Hook::Close, |real, real_session| {
        match real.C_CloseSession {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_GetSessionInfo`, forwarded.
///
/// # Safety
/// As `C_GetSessionInfo` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_GetSessionInfo(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_SESSION_INFO,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_GetSessionInfo {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_GetOperationState`, forwarded.
///
/// # Safety
/// As `C_GetOperationState` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_GetOperationState(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: *mut CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_GetOperationState {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_SetOperationState`, forwarded.
///
/// # Safety
/// As `C_SetOperationState` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_SetOperationState(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: CK_ULONG,
    arg4: CK_OBJECT_HANDLE,
    arg5: CK_OBJECT_HANDLE,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_SetOperationState {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4, arg5) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_Login`, forwarded.
///
/// # Safety
/// As `C_Login` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_Login(
    arg1: CK_SESSION_HANDLE,
    arg2: CK_USER_TYPE,
    arg3: *mut CK_UTF8CHAR,
    arg4: CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| match real.C_Login {
        // SAFETY: the real module's own entry point, called with the caller's
        // arguments and the real handle the shim's handle stands for.
        Some(f) => unsafe { f(real_session, arg2, arg3, arg4) },
        None => CKR_FUNCTION_NOT_SUPPORTED,
    })
}

/// `C_Logout`, forwarded.
///
/// # Safety
/// As `C_Logout` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_Logout(arg1: CK_SESSION_HANDLE) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_Logout {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_CreateObject`, forwarded.
///
/// # Safety
/// As `C_CreateObject` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_CreateObject(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_ATTRIBUTE,
    arg3: CK_ULONG,
    arg4: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_CreateObject {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_CopyObject`, forwarded.
///
/// # Safety
/// As `C_CopyObject` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_CopyObject(
    arg1: CK_SESSION_HANDLE,
    arg2: CK_OBJECT_HANDLE,
    arg3: *mut CK_ATTRIBUTE,
    arg4: CK_ULONG,
    arg5: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_CopyObject {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4, arg5) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_DestroyObject`, forwarded.
///
/// # Safety
/// As `C_DestroyObject` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_DestroyObject(arg1: CK_SESSION_HANDLE, arg2: CK_OBJECT_HANDLE) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_DestroyObject {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_GetObjectSize`, forwarded.
///
/// # Safety
/// As `C_GetObjectSize` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_GetObjectSize(
    arg1: CK_SESSION_HANDLE,
    arg2: CK_OBJECT_HANDLE,
    arg3: *mut CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_GetObjectSize {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_GetAttributeValue`, forwarded.
///
/// # Safety
/// As `C_GetAttributeValue` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_GetAttributeValue(
    arg1: CK_SESSION_HANDLE,
    arg2: CK_OBJECT_HANDLE,
    arg3: *mut CK_ATTRIBUTE,
    arg4: CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_GetAttributeValue {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_SetAttributeValue`, forwarded.
///
/// # Safety
/// As `C_SetAttributeValue` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_SetAttributeValue(
    arg1: CK_SESSION_HANDLE,
    arg2: CK_OBJECT_HANDLE,
    arg3: *mut CK_ATTRIBUTE,
    arg4: CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_SetAttributeValue {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_FindObjectsInit`, forwarded.
///
/// # Safety
/// As `C_FindObjectsInit` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_FindObjectsInit(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_ATTRIBUTE,
    arg3: CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_FindObjectsInit {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_FindObjects`, forwarded.
///
/// # Safety
/// As `C_FindObjects` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_FindObjects(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_OBJECT_HANDLE,
    arg3: CK_ULONG,
    arg4: *mut CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_FindObjects {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_FindObjectsFinal`, forwarded.
///
/// # Safety
/// As `C_FindObjectsFinal` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_FindObjectsFinal(arg1: CK_SESSION_HANDLE) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_FindObjectsFinal {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_EncryptInit`, forwarded.
///
/// # Safety
/// As `C_EncryptInit` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_EncryptInit(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_MECHANISM,
    arg3: CK_OBJECT_HANDLE,
) -> CK_RV {
    session_call(
        arg1,
        Hook::Mechanism(arg2),
        |real, real_session| match real.C_EncryptInit {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        },
    )
}

/// `C_Encrypt`, forwarded.
///
/// # Safety
/// As `C_Encrypt` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_Encrypt(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: CK_ULONG,
    arg4: *mut CK_BYTE,
    arg5: *mut CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_Encrypt {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4, arg5) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_EncryptUpdate`, forwarded.
///
/// # Safety
/// As `C_EncryptUpdate` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_EncryptUpdate(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: CK_ULONG,
    arg4: *mut CK_BYTE,
    arg5: *mut CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_EncryptUpdate {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4, arg5) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_EncryptFinal`, forwarded.
///
/// # Safety
/// As `C_EncryptFinal` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_EncryptFinal(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: *mut CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_EncryptFinal {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_DecryptInit`, forwarded.
///
/// # Safety
/// As `C_DecryptInit` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_DecryptInit(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_MECHANISM,
    arg3: CK_OBJECT_HANDLE,
) -> CK_RV {
    session_call(
        arg1,
        Hook::Mechanism(arg2),
        |real, real_session| match real.C_DecryptInit {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        },
    )
}

/// `C_Decrypt`, forwarded.
///
/// # Safety
/// As `C_Decrypt` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_Decrypt(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: CK_ULONG,
    arg4: *mut CK_BYTE,
    arg5: *mut CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_Decrypt {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4, arg5) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_DecryptUpdate`, forwarded.
///
/// # Safety
/// As `C_DecryptUpdate` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_DecryptUpdate(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: CK_ULONG,
    arg4: *mut CK_BYTE,
    arg5: *mut CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_DecryptUpdate {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4, arg5) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_DecryptFinal`, forwarded.
///
/// # Safety
/// As `C_DecryptFinal` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_DecryptFinal(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: *mut CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_DecryptFinal {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_DigestInit`, forwarded.
///
/// # Safety
/// As `C_DigestInit` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_DigestInit(arg1: CK_SESSION_HANDLE, arg2: *mut CK_MECHANISM) -> CK_RV {
    session_call(
        arg1,
        Hook::Mechanism(arg2),
        |real, real_session| match real.C_DigestInit {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        },
    )
}

/// `C_Digest`, forwarded.
///
/// # Safety
/// As `C_Digest` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_Digest(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: CK_ULONG,
    arg4: *mut CK_BYTE,
    arg5: *mut CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_Digest {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4, arg5) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_DigestUpdate`, forwarded.
///
/// # Safety
/// As `C_DigestUpdate` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_DigestUpdate(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_DigestUpdate {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_DigestKey`, forwarded.
///
/// # Safety
/// As `C_DigestKey` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_DigestKey(arg1: CK_SESSION_HANDLE, arg2: CK_OBJECT_HANDLE) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_DigestKey {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_DigestFinal`, forwarded.
///
/// # Safety
/// As `C_DigestFinal` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_DigestFinal(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: *mut CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_DigestFinal {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_SignInit`, forwarded.
///
/// # Safety
/// As `C_SignInit` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_SignInit(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_MECHANISM,
    arg3: CK_OBJECT_HANDLE,
) -> CK_RV {
    session_call(
        arg1,
        Hook::Mechanism(arg2),
        |real, real_session| match real.C_SignInit {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        },
    )
}

/// `C_Sign`, forwarded.
///
/// # Safety
/// As `C_Sign` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_Sign(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: CK_ULONG,
    arg4: *mut CK_BYTE,
    arg5: *mut CK_ULONG,
) -> CK_RV {
    session_call(
        arg1,
        Hook::Sign {
            output: !arg4.is_null(),
        },
        |real, real_session| match real.C_Sign {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4, arg5) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        },
    )
}

/// `C_SignUpdate`, forwarded.
///
/// # Safety
/// As `C_SignUpdate` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_SignUpdate(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_SignUpdate {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_SignFinal`, forwarded.
///
/// # Safety
/// As `C_SignFinal` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_SignFinal(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: *mut CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_SignFinal {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_SignRecoverInit`, forwarded.
///
/// # Safety
/// As `C_SignRecoverInit` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_SignRecoverInit(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_MECHANISM,
    arg3: CK_OBJECT_HANDLE,
) -> CK_RV {
    session_call(
        arg1,
        Hook::Mechanism(arg2),
        |real, real_session| match real.C_SignRecoverInit {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        },
    )
}

/// `C_SignRecover`, forwarded.
///
/// # Safety
/// As `C_SignRecover` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_SignRecover(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: CK_ULONG,
    arg4: *mut CK_BYTE,
    arg5: *mut CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_SignRecover {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4, arg5) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_VerifyInit`, forwarded.
///
/// # Safety
/// As `C_VerifyInit` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_VerifyInit(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_MECHANISM,
    arg3: CK_OBJECT_HANDLE,
) -> CK_RV {
    session_call(
        arg1,
        Hook::Mechanism(arg2),
        |real, real_session| match real.C_VerifyInit {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        },
    )
}

/// `C_Verify`, forwarded.
///
/// # Safety
/// As `C_Verify` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_Verify(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: CK_ULONG,
    arg4: *mut CK_BYTE,
    arg5: CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_Verify {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4, arg5) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_VerifyUpdate`, forwarded.
///
/// # Safety
/// As `C_VerifyUpdate` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_VerifyUpdate(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_VerifyUpdate {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_VerifyFinal`, forwarded.
///
/// # Safety
/// As `C_VerifyFinal` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_VerifyFinal(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_VerifyFinal {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_VerifyRecoverInit`, forwarded.
///
/// # Safety
/// As `C_VerifyRecoverInit` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_VerifyRecoverInit(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_MECHANISM,
    arg3: CK_OBJECT_HANDLE,
) -> CK_RV {
    session_call(
        arg1,
        Hook::Mechanism(arg2),
        |real, real_session| match real.C_VerifyRecoverInit {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        },
    )
}

/// `C_VerifyRecover`, forwarded.
///
/// # Safety
/// As `C_VerifyRecover` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_VerifyRecover(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: CK_ULONG,
    arg4: *mut CK_BYTE,
    arg5: *mut CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_VerifyRecover {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4, arg5) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_DigestEncryptUpdate`, forwarded.
///
/// # Safety
/// As `C_DigestEncryptUpdate` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_DigestEncryptUpdate(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: CK_ULONG,
    arg4: *mut CK_BYTE,
    arg5: *mut CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_DigestEncryptUpdate {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4, arg5) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_DecryptDigestUpdate`, forwarded.
///
/// # Safety
/// As `C_DecryptDigestUpdate` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_DecryptDigestUpdate(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: CK_ULONG,
    arg4: *mut CK_BYTE,
    arg5: *mut CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_DecryptDigestUpdate {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4, arg5) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_SignEncryptUpdate`, forwarded.
///
/// # Safety
/// As `C_SignEncryptUpdate` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_SignEncryptUpdate(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: CK_ULONG,
    arg4: *mut CK_BYTE,
    arg5: *mut CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_SignEncryptUpdate {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4, arg5) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_DecryptVerifyUpdate`, forwarded.
///
/// # Safety
/// As `C_DecryptVerifyUpdate` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_DecryptVerifyUpdate(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: CK_ULONG,
    arg4: *mut CK_BYTE,
    arg5: *mut CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_DecryptVerifyUpdate {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4, arg5) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_GenerateKey`, forwarded.
///
/// # Safety
/// As `C_GenerateKey` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_GenerateKey(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_MECHANISM,
    arg3: *mut CK_ATTRIBUTE,
    arg4: CK_ULONG,
    arg5: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    session_call(
        arg1,
        Hook::Mechanism(arg2),
        |real, real_session| match real.C_GenerateKey {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4, arg5) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        },
    )
}

/// `C_GenerateKeyPair`, forwarded.
///
/// # Safety
/// As `C_GenerateKeyPair` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_GenerateKeyPair(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_MECHANISM,
    arg3: *mut CK_ATTRIBUTE,
    arg4: CK_ULONG,
    arg5: *mut CK_ATTRIBUTE,
    arg6: CK_ULONG,
    arg7: *mut CK_OBJECT_HANDLE,
    arg8: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    session_call(
        arg1,
        Hook::Generate { mechanism: arg2 },
        |real, real_session| match real.C_GenerateKeyPair {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4, arg5, arg6, arg7, arg8) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        },
    )
}

/// `C_WrapKey`, forwarded.
///
/// # Safety
/// As `C_WrapKey` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_WrapKey(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_MECHANISM,
    arg3: CK_OBJECT_HANDLE,
    arg4: CK_OBJECT_HANDLE,
    arg5: *mut CK_BYTE,
    arg6: *mut CK_ULONG,
) -> CK_RV {
    session_call(
        arg1,
        Hook::Wrap {
            mechanism: arg2,
            output: !arg5.is_null(),
        },
        |real, real_session| match real.C_WrapKey {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4, arg5, arg6) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        },
    )
}

/// `C_UnwrapKey`, forwarded.
///
/// # Safety
/// As `C_UnwrapKey` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_UnwrapKey(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_MECHANISM,
    arg3: CK_OBJECT_HANDLE,
    arg4: *mut CK_BYTE,
    arg5: CK_ULONG,
    arg6: *mut CK_ATTRIBUTE,
    arg7: CK_ULONG,
    arg8: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    session_call(
        arg1,
        Hook::Mechanism(arg2),
        |real, real_session| match real.C_UnwrapKey {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4, arg5, arg6, arg7, arg8) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        },
    )
}

/// `C_DeriveKey`, forwarded.
///
/// # Safety
/// As `C_DeriveKey` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_DeriveKey(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_MECHANISM,
    arg3: CK_OBJECT_HANDLE,
    arg4: *mut CK_ATTRIBUTE,
    arg5: CK_ULONG,
    arg6: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    session_call(
        arg1,
        Hook::Mechanism(arg2),
        |real, real_session| match real.C_DeriveKey {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3, arg4, arg5, arg6) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        },
    )
}

/// `C_SeedRandom`, forwarded.
///
/// # Safety
/// As `C_SeedRandom` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_SeedRandom(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_SeedRandom {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_GenerateRandom`, forwarded.
///
/// # Safety
/// As `C_GenerateRandom` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_GenerateRandom(
    arg1: CK_SESSION_HANDLE,
    arg2: *mut CK_BYTE,
    arg3: CK_ULONG,
) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_GenerateRandom {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session, arg2, arg3) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_GetFunctionStatus`, forwarded.
///
/// # Safety
/// As `C_GetFunctionStatus` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_GetFunctionStatus(arg1: CK_SESSION_HANDLE) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_GetFunctionStatus {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// `C_CancelFunction`, forwarded.
///
/// # Safety
/// As `C_CancelFunction` in PKCS#11.
#[no_mangle]
pub unsafe extern "C" fn C_CancelFunction(arg1: CK_SESSION_HANDLE) -> CK_RV {
    session_call(arg1, Hook::Plain, |real, real_session| {
        match real.C_CancelFunction {
            // SAFETY: the real module's own entry point, called with the caller's
            // arguments and the real handle the shim's handle stands for.
            Some(f) => unsafe { f(real_session) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    })
}

/// Fills the session entries of `list` with this module's functions.
pub(crate) fn fill(list: &mut CK_FUNCTION_LIST) {
    list.C_InitPIN = Some(C_InitPIN);
    list.C_SetPIN = Some(C_SetPIN);
    list.C_CloseSession = Some(C_CloseSession);
    list.C_GetSessionInfo = Some(C_GetSessionInfo);
    list.C_GetOperationState = Some(C_GetOperationState);
    list.C_SetOperationState = Some(C_SetOperationState);
    list.C_Login = Some(C_Login);
    list.C_Logout = Some(C_Logout);
    list.C_CreateObject = Some(C_CreateObject);
    list.C_CopyObject = Some(C_CopyObject);
    list.C_DestroyObject = Some(C_DestroyObject);
    list.C_GetObjectSize = Some(C_GetObjectSize);
    list.C_GetAttributeValue = Some(C_GetAttributeValue);
    list.C_SetAttributeValue = Some(C_SetAttributeValue);
    list.C_FindObjectsInit = Some(C_FindObjectsInit);
    list.C_FindObjects = Some(C_FindObjects);
    list.C_FindObjectsFinal = Some(C_FindObjectsFinal);
    list.C_EncryptInit = Some(C_EncryptInit);
    list.C_Encrypt = Some(C_Encrypt);
    list.C_EncryptUpdate = Some(C_EncryptUpdate);
    list.C_EncryptFinal = Some(C_EncryptFinal);
    list.C_DecryptInit = Some(C_DecryptInit);
    list.C_Decrypt = Some(C_Decrypt);
    list.C_DecryptUpdate = Some(C_DecryptUpdate);
    list.C_DecryptFinal = Some(C_DecryptFinal);
    list.C_DigestInit = Some(C_DigestInit);
    list.C_Digest = Some(C_Digest);
    list.C_DigestUpdate = Some(C_DigestUpdate);
    list.C_DigestKey = Some(C_DigestKey);
    list.C_DigestFinal = Some(C_DigestFinal);
    list.C_SignInit = Some(C_SignInit);
    list.C_Sign = Some(C_Sign);
    list.C_SignUpdate = Some(C_SignUpdate);
    list.C_SignFinal = Some(C_SignFinal);
    list.C_SignRecoverInit = Some(C_SignRecoverInit);
    list.C_SignRecover = Some(C_SignRecover);
    list.C_VerifyInit = Some(C_VerifyInit);
    list.C_Verify = Some(C_Verify);
    list.C_VerifyUpdate = Some(C_VerifyUpdate);
    list.C_VerifyFinal = Some(C_VerifyFinal);
    list.C_VerifyRecoverInit = Some(C_VerifyRecoverInit);
    list.C_VerifyRecover = Some(C_VerifyRecover);
    list.C_DigestEncryptUpdate = Some(C_DigestEncryptUpdate);
    list.C_DecryptDigestUpdate = Some(C_DecryptDigestUpdate);
    list.C_SignEncryptUpdate = Some(C_SignEncryptUpdate);
    list.C_DecryptVerifyUpdate = Some(C_DecryptVerifyUpdate);
    list.C_GenerateKey = Some(C_GenerateKey);
    list.C_GenerateKeyPair = Some(C_GenerateKeyPair);
    list.C_WrapKey = Some(C_WrapKey);
    list.C_UnwrapKey = Some(C_UnwrapKey);
    list.C_DeriveKey = Some(C_DeriveKey);
    list.C_SeedRandom = Some(C_SeedRandom);
    list.C_GenerateRandom = Some(C_GenerateRandom);
    list.C_GetFunctionStatus = Some(C_GetFunctionStatus);
    list.C_CancelFunction = Some(C_CancelFunction);
}
