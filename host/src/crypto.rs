//! Symmetric cryptography done in software, for `/serverkeygen`: opening the
//! transport wrap of a key the HSM generated, and encrypting the key package
//! under the content-encryption key. Keys and plaintexts live in zeroizing
//! buffers; every function is a thin, checked call into RustCrypto.

use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyInit, KeyIvInit};
use zeroize::Zeroizing;

/// AES-256 key.
pub type Aes256Key = [u8; 32];

/// What went wrong opening a ciphertext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Wrong size for the mode.
    #[error("{0}")]
    Size(String),
    /// Integrity check or padding failed: wrong key or damaged data.
    #[error("{0}")]
    Integrity(&'static str),
}

/// AES key wrap with padding (RFC 5649) under `key`, opened.
pub fn kwp_unwrap(key: &Aes256Key, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let kwp = aes_kw::KwpAes256::new(key.into());
    let mut out = Zeroizing::new(vec![0u8; wrapped.len().saturating_sub(8)]);
    let len = kwp
        .unwrap_key(wrapped, &mut out)
        .map_err(|e| match e {
            aes_kw::Error::IntegrityCheckFailed => {
                CryptoError::Integrity("AES key wrap integrity check failed")
            }
            other => CryptoError::Size(format!("AES key wrap: {other}")),
        })?
        .len();
    out.truncate(len);
    Ok(out)
}

/// AES-256-CBC with PKCS#7 padding, decrypted.
pub fn cbc_decrypt(
    key: &Aes256Key,
    iv: &[u8; 16],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(16) {
        return Err(CryptoError::Size(format!(
            "AES-CBC ciphertext of {} bytes is not whole blocks",
            ciphertext.len()
        )));
    }
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    let len = cbc::Decryptor::<aes::Aes256>::new(key.into(), iv.into())
        .decrypt_padded::<aes::cipher::block_padding::Pkcs7>(&mut buf)
        .map_err(|_| CryptoError::Integrity("AES-CBC padding is invalid (wrong key?)"))?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// AES-256-CBC with PKCS#7 padding (CMS content encryption, RFC 3565).
pub fn cbc_encrypt(key: &Aes256Key, iv: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
    cbc::Encryptor::<aes::Aes256>::new(key.into(), iv.into())
        .encrypt_padded_vec::<aes::cipher::block_padding::Pkcs7>(plaintext)
}

/// AES-256-GCM with a 12-byte nonce and a 16-byte tag (RFC 5084), no
/// additional data: (ciphertext, tag).
pub fn gcm_encrypt(
    key: &Aes256Key,
    nonce: &[u8; 12],
    plaintext: &[u8],
    aad: &[u8],
) -> Result<(Vec<u8>, [u8; 16]), CryptoError> {
    use aes_gcm::aead::AeadInOut;
    let cipher = aes_gcm::Aes256Gcm::new(key.into());
    let mut buf = plaintext.to_vec();
    let tag = cipher
        .encrypt_inout_detached(nonce.into(), aad, buf.as_mut_slice().into())
        .map_err(|_| CryptoError::Size("AES-GCM refused the message length".into()))?;
    Ok((buf, tag.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 5649 §6, second example (7 octets) adapted to AES-256 is not given by
    // the RFC; the round trip through the wrap side of the same crate is
    // checked instead, and the token interop by the serverkeygen tests.
    #[test]
    fn kwp_round_trip_and_tamper() {
        let key = [7u8; 32];
        let kwp = aes_kw::KwpAes256::new((&key).into());
        let msg = b"a private key of odd length!!";
        let mut wrapped = vec![0u8; msg.len().div_ceil(8) * 8 + 8];
        let w = kwp.wrap_key(msg, &mut wrapped).unwrap().to_vec();
        assert_eq!(&kwp_unwrap(&key, &w).unwrap()[..], msg);
        let mut bad = w.clone();
        bad[3] ^= 1;
        assert!(matches!(
            kwp_unwrap(&key, &bad),
            Err(CryptoError::Integrity(_))
        ));
    }

    #[test]
    fn cbc_round_trip_and_bad_sizes() {
        let (key, iv) = ([1u8; 32], [2u8; 16]);
        for len in [0usize, 1, 15, 16, 17, 100] {
            let msg = vec![0x5a; len];
            let ct = cbc_encrypt(&key, &iv, &msg);
            assert_eq!(ct.len(), (len / 16 + 1) * 16);
            assert_eq!(&cbc_decrypt(&key, &iv, &ct).unwrap()[..], &msg[..]);
        }
        assert!(matches!(
            cbc_decrypt(&key, &iv, &[0; 15]),
            Err(CryptoError::Size(_))
        ));
        assert!(cbc_decrypt(&[9u8; 32], &iv, &cbc_encrypt(&key, &iv, b"x")).is_err());
    }
}
