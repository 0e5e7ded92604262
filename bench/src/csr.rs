//! Pre-generated PKCS#10 requests, all made before the clock starts.
//!
//! Each CSR has its own subject (`CN=kipuka-bench-<run>-<n>`, the run part
//! random so that two runs never repeat). EC CSRs each have a fresh P-256
//! key; RSA CSRs share a few keys ([`KeyType::Rsa`]: generating thousands
//! of RSA keys would take minutes) but each is signed anew over its own
//! subject, so the server verifies a different signature every time.

use std::{str::FromStr, sync::atomic::AtomicUsize, sync::atomic::Ordering};

use const_oid::db::rfc5912;
use der::{
    asn1::{Any, BitString},
    Decode, Encode,
};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::{
    name::Name,
    request::{CertReq, CertReqInfo, Version},
};

use crate::error::BenchError;

/// The key of the generated CSRs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA P-256, a fresh key per CSR, signed with SHA-256.
    EcP256,
    /// RSA of this many bits, PKCS#1 v1.5 with SHA-256.
    Rsa(usize),
}

impl FromStr for KeyType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "ec:p-256" | "ec:p256" | "ec" => Ok(KeyType::EcP256),
            "rsa:2048" => Ok(KeyType::Rsa(2048)),
            "rsa:3072" => Ok(KeyType::Rsa(3072)),
            _ => Err(format!(
                "{s:?} is not a key type: use ec:P-256, rsa:2048 or rsa:3072"
            )),
        }
    }
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyType::EcP256 => f.write_str("ec:P-256"),
            KeyType::Rsa(bits) => write!(f, "rsa:{bits}"),
        }
    }
}

fn csr_err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Csr(e.to_string())
}

fn random_bytes<const N: usize>() -> Result<[u8; N], BenchError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| csr_err(format!("operating system RNG: {e}")))?;
    Ok(b)
}

/// Signs `CertificationRequestInfo` DER; returns the signature and its algorithm.
trait CsrSigner: Sync {
    fn spki(&self) -> &SubjectPublicKeyInfoOwned;
    fn algorithm(&self) -> AlgorithmIdentifierOwned;
    fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, BenchError>;
}

struct EcKey {
    key: p256::ecdsa::SigningKey,
    spki: SubjectPublicKeyInfoOwned,
}

impl EcKey {
    fn generate() -> Result<Self, BenchError> {
        use p256::pkcs8::EncodePublicKey;
        // A uniformly random 32-byte string is a valid scalar except with
        // probability ~2^-32 (zero or ≥ n): draw again then.
        let key = loop {
            if let Ok(k) = p256::ecdsa::SigningKey::from_slice(&random_bytes::<32>()?) {
                break k;
            }
        };
        let der = key.verifying_key().to_public_key_der().map_err(csr_err)?;
        let spki = SubjectPublicKeyInfoOwned::from_der(der.as_bytes()).map_err(csr_err)?;
        Ok(EcKey { key, spki })
    }
}

impl CsrSigner for EcKey {
    fn spki(&self) -> &SubjectPublicKeyInfoOwned {
        &self.spki
    }
    fn algorithm(&self) -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned {
            oid: rfc5912::ECDSA_WITH_SHA_256,
            parameters: None,
        }
    }
    fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, BenchError> {
        use p256::ecdsa::{signature::Signer, Signature};
        let sig: Signature = self.key.sign(tbs);
        Ok(sig.to_der().as_bytes().to_vec())
    }
}

struct RsaKey {
    key: rsa::pkcs1v15::SigningKey<rsa::sha2::Sha256>,
    spki: SubjectPublicKeyInfoOwned,
}

impl RsaKey {
    fn generate(bits: usize) -> Result<Self, BenchError> {
        use rsa::pkcs8::EncodePublicKey;
        let mut rng = getrandom::SysRng;
        let key = rsa::PrivateKey::new(&mut rng, bits).map_err(csr_err)?;
        let der = key.to_public_key().to_public_key_der().map_err(csr_err)?;
        let spki = SubjectPublicKeyInfoOwned::from_der(der.as_bytes()).map_err(csr_err)?;
        Ok(RsaKey {
            key: rsa::pkcs1v15::SigningKey::new(key),
            spki,
        })
    }
}

impl CsrSigner for RsaKey {
    fn spki(&self) -> &SubjectPublicKeyInfoOwned {
        &self.spki
    }
    fn algorithm(&self) -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned {
            oid: rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
            parameters: Some(Any::null()),
        }
    }
    fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, BenchError> {
        use rsa::signature::{SignatureEncoding, Signer};
        Ok(self.key.try_sign(tbs).map_err(csr_err)?.to_vec())
    }
}

/// One DER CSR for `subject`, signed by `signer`.
fn build(signer: &dyn CsrSigner, subject: &str) -> Result<Vec<u8>, BenchError> {
    let info = CertReqInfo {
        version: Version::V1,
        subject: Name::from_str(subject).map_err(csr_err)?,
        public_key: signer.spki().clone(),
        attributes: Default::default(),
    };
    let tbs = info.to_der().map_err(csr_err)?;
    let signature = BitString::from_bytes(&signer.sign(&tbs)?).map_err(csr_err)?;
    CertReq {
        info,
        algorithm: signer.algorithm(),
        signature,
    }
    .to_der()
    .map_err(csr_err)
}

/// Runs `job(i)` for i in 0..n on every core, results in order.
fn parallel<T: Send>(
    n: usize,
    job: impl Fn(usize) -> Result<T, BenchError> + Sync,
) -> Result<Vec<T>, BenchError> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(n.max(1));
    let next = AtomicUsize::new(0);
    let results: Vec<Result<Vec<(usize, T)>, BenchError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(mine);
                        }
                        mine.push((i, job(i)?));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(csr_err("a CSR generation thread panicked")))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(n);
    for r in results {
        all.extend(r?);
    }
    all.sort_unstable_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

/// `count` distinct DER CSRs of `key_type` (RSA: over `rsa_keys` keys),
/// each with its own subject, or all with `subject`.
pub fn generate(
    key_type: KeyType,
    count: usize,
    rsa_keys: usize,
    subject: Option<&str>,
) -> Result<Vec<Vec<u8>>, BenchError> {
    let run: String = random_bytes::<6>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // One DNS-label-like CN (letters, digits, dashes): the demo's name policy
    // (`allow_cn = ["*"]`) issues it.
    let subject = |i: usize| match subject {
        Some(s) => s.to_string(),
        None => format!("CN=kipuka-bench-{run}-{i}"),
    };
    match key_type {
        KeyType::EcP256 => parallel(count, |i| build(&EcKey::generate()?, &subject(i))),
        KeyType::Rsa(bits) => {
            let keys = parallel(rsa_keys.min(count), |_| RsaKey::generate(bits))?;
            parallel(count, |i| build(&keys[i % keys.len()], &subject(i)))
        }
    }
}

/// The request body of a CSR: base64 in one line, or in lines of
/// `columns` characters ending with CRLF, as some EST servers want (those
/// that decode with OpenSSL's base64 BIO refuse one long line).
pub fn base64_body(der: &[u8], columns: Option<usize>) -> String {
    use base64ct::{Base64, Encoding};
    let one_line = Base64::encode_string(der);
    match columns {
        Some(n) if n > 0 => {
            let mut out = String::with_capacity(one_line.len() + 2 * (one_line.len() / n + 1));
            for chunk in one_line.as_bytes().chunks(n) {
                // Base64 is ASCII: every chunk is valid UTF-8.
                out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
                out.push_str("\r\n");
            }
            out
        }
        _ => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_csrs_pass_kipukas_own_check_and_differ() {
        for kt in [KeyType::EcP256, KeyType::Rsa(2048)] {
            let csrs = generate(kt, 3, 2, None).unwrap();
            assert_eq!(csrs.len(), 3);
            assert_ne!(csrs[0], csrs[1]);
            for der in &csrs {
                let v = kipuka::ca::csr::verify_csr(der).unwrap();
                assert!(v.subject.to_string().starts_with("CN=kipuka-bench-"));
            }
        }
    }

    #[test]
    fn a_given_subject_is_on_every_csr() {
        let csrs = generate(KeyType::EcP256, 2, 1, Some("CN=device-1,O=Example")).unwrap();
        assert_ne!(csrs[0], csrs[1], "a fresh key each");
        for der in &csrs {
            let v = kipuka::ca::csr::verify_csr(der).unwrap();
            assert_eq!(v.subject.to_string(), "CN=device-1,O=Example");
        }
        assert!(generate(KeyType::EcP256, 1, 1, Some("no equals sign")).is_err());
    }

    #[test]
    fn key_types_parse() {
        assert_eq!("ec:P-256".parse(), Ok(KeyType::EcP256));
        assert_eq!("rsa:3072".parse(), Ok(KeyType::Rsa(3072)));
        assert!("rsa:1024".parse::<KeyType>().is_err());
    }

    #[test]
    fn wrapped_bodies_decode_to_the_same_csr() {
        let der: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        let one = base64_body(&der, None);
        assert!(!one.contains('\n'));
        let wrapped = base64_body(&der, Some(64));
        let lines: Vec<&str> = wrapped.split_terminator("\r\n").collect();
        assert!(
            lines[..lines.len() - 1].iter().all(|l| l.len() == 64),
            "{wrapped}"
        );
        assert_eq!(lines.concat(), one);
    }
}
