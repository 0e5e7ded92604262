//! `[[ca]] client_issuers`: which TLS client certificates may authenticate
//! at one CA.
//!
//! The TLS handshake has verified the client's chain to an anchor of the
//! whole server: that says who the client is, not where it may enroll. A CA
//! with `client_issuers` accepts a certificate only if one of the listed
//! certificates issued it: the certificate's issuer name is the listed
//! certificate's subject *and* its signature verifies with the listed
//! certificate's key. The name alone would not do: two anchors may carry the
//! same name (an issuer before and after a key rollover, or two vendors'
//! careless choices), and only the signature tells them apart.

use std::path::{Path, PathBuf};

use der::{
    asn1::{AnyRef, BitStringRef},
    referenced::OwnedToRef,
    Decode, Encode, Sequence,
};
use spki::AlgorithmIdentifierRef;
use x509_cert::Certificate;

use crate::{
    ca::{
        algorithms::{PublicKey, SignatureAlgorithm},
        chain::{read_certificates, ChainError},
        csr::CsrError,
    },
    config::CaConfig,
};

/// A certificate as it was signed: the TBSCertificate kept as received, so
/// the signature is checked over the client's own bytes, not a re-encoding.
#[derive(Sequence)]
struct SignedCertificate<'a> {
    tbs: AnyRef<'a>,
    algorithm: AlgorithmIdentifierRef<'a>,
    signature: BitStringRef<'a>,
}

/// Checks that `key` signed the DER certificate `cert_der`.
fn verify_signed_by(cert_der: &[u8], key: &PublicKey) -> Result<(), String> {
    let signed = SignedCertificate::from_der(cert_der)
        .map_err(|e| format!("it is not a DER certificate: {e}"))?;
    let algorithm = SignatureAlgorithm::parse(&signed.algorithm).map_err(describe)?;
    let signature = signed
        .signature
        .as_bytes()
        .ok_or("its signature BIT STRING has unused bits")?;
    let tbs = signed.tbs.to_der().map_err(|e| e.to_string())?;
    key.verify(&algorithm, &tbs, signature).map_err(describe)
}

/// [`CsrError`]'s messages speak of a CSR; these speak of a certificate.
fn describe(e: CsrError) -> String {
    match e {
        CsrError::BadSignature => "its signature does not verify".into(),
        CsrError::UnsupportedSignature(why) => {
            format!("its signature algorithm is not supported: {why}")
        }
        CsrError::AlgorithmMismatch { signature, key } => {
            format!("it is signed with {signature}, which a {key} key cannot produce")
        }
        CsrError::UnsupportedKey(why) => format!("unsupported key: {why}"),
        other => other.to_string(),
    }
}

/// A `client_issuers` file that cannot be used. Callers add the CA's id.
#[derive(Debug, thiserror::Error)]
#[error("client_issuers: {} {reason}", path.display())]
pub struct IssuerFileError {
    /// The file, as configured.
    pub path: PathBuf,
    /// What is wrong with it, as the end of a sentence about the file.
    pub reason: String,
}

/// Why a client certificate is not accepted at a CA. The messages are
/// written for the client (HTTP 403), after "CA <id> does not accept this
/// client certificate: ".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotAccepted {
    /// No listed issuer has the certificate's issuer name.
    #[error("its issuer {issuer:?} is not one of the CA's client_issuers")]
    NotListed {
        /// The certificate's issuer name.
        issuer: String,
    },
    /// A listed issuer has the name, but did not sign the certificate.
    #[error(
        "it names the issuer {issuer:?}, but the certificate of that name in the CA's \
         client_issuers did not sign it ({why})"
    )]
    NotSigned {
        /// The certificate's issuer name.
        issuer: String,
        /// What the signature check said.
        why: String,
    },
    /// The certificate's issuer name cannot be encoded again.
    #[error("its issuer name cannot be read: {0}")]
    Unreadable(String),
}

/// One certificate of `client_issuers`, ready to check signatures with.
pub struct ClientIssuer {
    /// The file it was read from.
    pub path: PathBuf,
    /// The certificate.
    pub cert: Certificate,
    subject_der: Vec<u8>,
    key: PublicKey,
}

// By hand: the verifying key has no `Debug`, and the file and subject say it all.
impl std::fmt::Debug for ClientIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIssuer")
            .field("path", &self.path)
            .field("subject", &self.subject())
            .finish_non_exhaustive()
    }
}

impl ClientIssuer {
    /// Reads `path`, which must hold exactly one certificate with a key
    /// kipuka can check signatures with.
    fn read(path: &Path) -> Result<ClientIssuer, IssuerFileError> {
        let error = |reason: String| IssuerFileError {
            path: path.to_path_buf(),
            reason,
        };
        let mut certs = read_certificates(path).map_err(|e| {
            error(match e {
                ChainError::Read { reason, .. } => format!("cannot be read: {reason}"),
                ChainError::Parse { reason, .. } => {
                    format!("holds no usable certificate: {reason}")
                }
            })
        })?;
        if certs.len() != 1 {
            return Err(error(format!(
                "holds {} certificates: give each issuer a file of its own (a file with a \
                 chain would also accept the certificates its root issued directly)",
                certs.len()
            )));
        }
        let cert = certs.remove(0);
        let tbs = cert.tbs_certificate();
        let key =
            PublicKey::from_spki(&tbs.subject_public_key_info().owned_to_ref()).map_err(|e| {
                error(format!(
                    "holds a certificate whose key cannot check client certificates: {}",
                    describe(e)
                ))
            })?;
        let subject_der = tbs.subject().to_der().map_err(|e| {
            error(format!(
                "holds a certificate whose subject cannot be read: {e}"
            ))
        })?;
        Ok(ClientIssuer {
            path: path.to_path_buf(),
            cert,
            subject_der,
            key,
        })
    }

    /// Its subject, as RFC 4514 text.
    pub fn subject(&self) -> String {
        self.cert.tbs_certificate().subject().to_string()
    }

    /// Whether `anchor` is this certificate (same name and key), or signed it.
    fn anchored_by(&self, anchor: &Certificate) -> bool {
        let ours = self.cert.tbs_certificate();
        let theirs = anchor.tbs_certificate();
        let Ok(anchor_name) = theirs.subject().to_der() else {
            return false;
        };
        if anchor_name == self.subject_der
            && theirs.subject_public_key_info() == ours.subject_public_key_info()
        {
            return true;
        }
        if ours.issuer().to_der().ok().as_ref() != Some(&anchor_name) {
            return false;
        }
        let Ok(key) = PublicKey::from_spki(&theirs.subject_public_key_info().owned_to_ref()) else {
            return false;
        };
        self.cert
            .to_der()
            .is_ok_and(|der| verify_signed_by(&der, &key).is_ok())
    }
}

/// The issuers of one CA's `client_issuers`, in configuration order (never
/// empty: validation refuses an empty list).
pub struct ClientIssuers {
    issuers: Vec<ClientIssuer>,
}

impl ClientIssuers {
    /// Reads `ca.client_issuers`: `Ok(None)` when it is unset (every client
    /// certificate that passed TLS is accepted at this CA).
    pub fn for_ca(ca: &CaConfig) -> Result<Option<ClientIssuers>, IssuerFileError> {
        let Some(paths) = &ca.client_issuers else {
            return Ok(None);
        };
        let issuers = paths
            .iter()
            .map(|p| ClientIssuer::read(p))
            .collect::<Result<_, _>>()?;
        Ok(Some(ClientIssuers { issuers }))
    }

    /// The listed issuers.
    pub fn iter(&self) -> impl Iterator<Item = &ClientIssuer> {
        self.issuers.iter()
    }

    /// The listed issuer that issued the client certificate `cert`, whose
    /// DER as the client sent it is `cert_der`; or why none did.
    pub fn issuer_of(
        &self,
        cert: &Certificate,
        cert_der: &[u8],
    ) -> Result<&ClientIssuer, NotAccepted> {
        let issuer = cert.tbs_certificate().issuer();
        let issuer_der = issuer
            .to_der()
            .map_err(|e| NotAccepted::Unreadable(e.to_string()))?;
        let mut failure = None;
        for candidate in self.issuers.iter().filter(|i| i.subject_der == issuer_der) {
            match verify_signed_by(cert_der, &candidate.key) {
                Ok(()) => return Ok(candidate),
                Err(why) => failure = Some(why),
            }
        }
        Err(match failure {
            None => NotAccepted::NotListed {
                issuer: issuer.to_string(),
            },
            Some(why) => NotAccepted::NotSigned {
                issuer: issuer.to_string(),
                why,
            },
        })
    }

    /// The listed issuers that are not one of `anchors` and were not signed
    /// by one. A certificate they issued passes the TLS handshake only if
    /// its client also sends every intermediate up to an anchor; usually a
    /// `[server] client_ca` entry was forgotten.
    pub fn unanchored<'a>(&'a self, anchors: &[Certificate]) -> Vec<&'a ClientIssuer> {
        self.issuers
            .iter()
            .filter(|i| !anchors.iter().any(|a| i.anchored_by(a)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    //! Certificates made once with the OpenSSL command line (3.5), so that
    //! the code under test does not check what it produced itself.

    use super::*;
    use der::DecodePem;

    /// "CN=Unit CA A", P-256, self-signed.
    const CA_A: &str = "\
-----BEGIN CERTIFICATE-----
MIIBjjCCATWgAwIBAgIUMZLEI+EQ0Bca7K89OzDkgdvHI2YwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJVW5pdCBDQSBBMCAXDTI2MTEzMDE0MDg0OFoYDzIxMjYxMTA2
MTQwODQ4WjAUMRIwEAYDVQQDDAlVbml0IENBIEEwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAASu1fHWx/dPl0MO55xYsQ5AGscWNncrE9YlCT5g9rtU+Jk/kD5I9Qs7
hqj5e4RXL7Nawot+DINGuKReQ3AYf1fMo2MwYTAdBgNVHQ4EFgQUvaSiviJJ2M37
TIWp4YkKN3XJ0+IwHwYDVR0jBBgwFoAUvaSiviJJ2M37TIWp4YkKN3XJ0+IwDgYD
VR0PAQH/BAQDAgEGMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIh
AMEE3yAtoX/W/6gwEx0ovFY/BPIpC6peKFU8peS4L5pfAh8TcltByueLjJUtfwCQ
kZC53SLspcRfb0QPXfrNDMb1
-----END CERTIFICATE-----
";

    /// Another "CN=Unit CA A", with another P-256 key.
    const CA_A_OTHER_KEY: &str = "\
-----BEGIN CERTIFICATE-----
MIIBjjCCATWgAwIBAgIUTw5HlbRsvL2JBfvl6yCNPE2DQ6swCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJVW5pdCBDQSBBMCAXDTI2MTEzMDE0MDg0OFoYDzIxMjYxMTA2
MTQwODQ4WjAUMRIwEAYDVQQDDAlVbml0IENBIEEwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAASrfIC5sGLvg6el3L7//8GFaev91DGINnKOVdm8K91P++DELl4AkPWl
7t0LDitMKityGy1HIKJdVh63qVK4k3ydo2MwYTAdBgNVHQ4EFgQUR9lLkMyPe0Wi
eRVCLn0M2R4vNgMwHwYDVR0jBBgwFoAUR9lLkMyPe0WieRVCLn0M2R4vNgMwDgYD
VR0PAQH/BAQDAgEGMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIg
KNoIxscoZX2GFUSowlPxEG8LjnvZN9uR9yZMhGNygnQCIDBKO0fatF2fdwbBewS/
Tqwj+4MYVCjWgyN/JMIs7wJH
-----END CERTIFICATE-----
";

    /// "CN=Unit CA B", RSA-2048, self-signed.
    const CA_B: &str = "\
-----BEGIN CERTIFICATE-----
MIIDGzCCAgOgAwIBAgIUI0OVAWprKgOAHP+J3jRL+NAJoIUwDQYJKoZIhvcNAQEL
BQAwFDESMBAGA1UEAwwJVW5pdCBDQSBCMCAXDTI2MTEzMDE0MDg0OFoYDzIxMjYx
MTA2MTQwODQ4WjAUMRIwEAYDVQQDDAlVbml0IENBIEIwggEiMA0GCSqGSIb3DQEB
AQUAA4IBDwAwggEKAoIBAQDOP8e7qoYgJ47WtxXKuKvf/hAk0H4mijVNglYQzP58
IRzbkS92p9XlVlxioUjmiV7o9AsivflXrPGd4DPbirOtuNdvcGsli+s3mE0tswZD
8+Kp5iIa2Yt/jc70NYBVsdKp+xGrDDJGbOTTOVNG6cGxE7JgAnbsGY+mt6N0sNSv
L8Af3P5PBeRybnMlGiXBF1OMZpA9Iv7aNHAALC7QjJlT2+HTh0TWQ1VfZHxl7C/R
ZAf2JN6tB4xIFL9mOinX1Q/ICAbwV5oCBSWFb5l+Qb9YK+r9HfDgauEg76t9LRDh
o3/RN3fWK7BkwJZ/LAvsk8QiunAwYdsC+U7XPIUfvZvrAgMBAAGjYzBhMB0GA1Ud
DgQWBBROBO8xyYgb9dhg6vl68n0YFKVjYzAfBgNVHSMEGDAWgBROBO8xyYgb9dhg
6vl68n0YFKVjYzAOBgNVHQ8BAf8EBAMCAQYwDwYDVR0TAQH/BAUwAwEB/zANBgkq
hkiG9w0BAQsFAAOCAQEAt4WRX0RC5u0Iz4tfzwgOdvbtu0mMTlNE4/QCOp+e7YBi
dKsG508VGq8cwcECiIlsoCv4S+sPJcYBLhblkGPyG93XYE22se84n+pr0iSrGGgb
LczbPHke8n4LPDWZDNxDEPCZ9U9vInXryhU27S9vaHECxvmbPYsfCdfN5cUn2WI1
bS40zhCcj+aTgsRcJbZCcXR+8eLPMdiXkhdhTxlrbpnx4gzNFsZRTXMuy2pbQ3GS
m61C78vZFiRf4NX9PMDQBHfbwOYvbXXEfj06mmkhoB66lSkdBlirK/ZaDM3hqr6b
uDEjg4U7SZIBV1/qlNfUjKaHlXb54wJAqzpVEyI4kQ==
-----END CERTIFICATE-----
";

    /// Issued by [`CA_A`] (ECDSA with SHA-256).
    const LEAF_A: &str = "\
-----BEGIN CERTIFICATE-----
MIIBajCCARGgAwIBAgIUcp1mmJwkNgTtrmfW+2eMXsRNmTQwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJVW5pdCBDQSBBMCAXDTI2MTEzMDE0MDg0OFoYDzIxMjYxMTA2
MTQwODQ4WjARMQ8wDQYDVQQDDAZsZWFmLWEwWTATBgcqhkjOPQIBBggqhkjOPQMB
BwNCAAR3UJwaw8rO2fsCOBf2FDvctHAqSKfdQ6VvQiSBrolDOlSj4H3tPao1+iEY
DQ1bxe/GVMk7MFRxW94qJPHgtm4Ao0IwQDAdBgNVHQ4EFgQUSu6cyzxCjQfvtikT
EqduCSDgOj8wHwYDVR0jBBgwFoAUvaSiviJJ2M37TIWp4YkKN3XJ0+IwCgYIKoZI
zj0EAwIDRwAwRAIgUc7KTshGYWdweiGkNgOHr3JUvgYzXFxW51wzIhnKU8kCIGW6
pb+HrPEp4jrmDHpMRcRKSSRsyU3J/qploYAdvi9e
-----END CERTIFICATE-----
";

    /// Issued by [`CA_A_OTHER_KEY`]: the same issuer name as [`LEAF_A`].
    const LEAF_A_OTHER_KEY: &str = "\
-----BEGIN CERTIFICATE-----
MIIBbTCCARKgAwIBAgIUZFGT+5TJUoiqv7M6Wk8OGqLhylQwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJVW5pdCBDQSBBMCAXDTI2MTEzMDE0MDg0OFoYDzIxMjYxMTA2
MTQwODQ4WjASMRAwDgYDVQQDDAdsZWFmLWEyMFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAEXJtzniD4+BMNEzFIhI+avE16Fl4GrIMjdb9KJ7arjko0vzphwl8oM62D
tguJ0iFnZG2w1kR8ll98f7WzkE1XmKNCMEAwHQYDVR0OBBYEFDr7QcOA9UZ+cdhh
LN+eUzHkMRKuMB8GA1UdIwQYMBaAFEfZS5DMj3tFonkVQi59DNkeLzYDMAoGCCqG
SM49BAMCA0kAMEYCIQD3K9WRg02KEBY0VQ4uSBQGrHGNGiJ+zwdCr1u8K9j5NAIh
AJBOnvfmWvTSgsZrhkEi2qAtFpxkJLOFFk/RWmVNleW1
-----END CERTIFICATE-----
";

    /// Issued by [`CA_B`] (RSA PKCS#1 v1.5 with SHA-256).
    const LEAF_B: &str = "\
-----BEGIN CERTIFICATE-----
MIICLDCCARSgAwIBAgIUPXBYvC9hA+k2u2ApeB7Sq0H1cHEwDQYJKoZIhvcNAQEL
BQAwFDESMBAGA1UEAwwJVW5pdCBDQSBCMCAXDTI2MTEzMDE0MDg0OFoYDzIxMjYx
MTA2MTQwODQ4WjARMQ8wDQYDVQQDDAZsZWFmLWIwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAATzXZnLfZzcCLKUOjHd4bj9RFM8fBAbIn2IK8f4p0xhKVszeHjZLngd
6LeFPlpgEApFIQtiSfwJWVAEKcXTKiVGo0IwQDAdBgNVHQ4EFgQUA5UG1pvpqc47
Bpf1lCXzm9ZvKiMwHwYDVR0jBBgwFoAUTgTvMcmIG/XYYOr5evJ9GBSlY2MwDQYJ
KoZIhvcNAQELBQADggEBABJlE5Euj0LvLdil0gOYwrdLFf8mt1ogTLEtLhPrQDho
A9HjImssOR7m9+OPa5Q3QHTP4xE9iDDVRL/TdmmfYmSrIPWnduccCZG6m26RvWGG
rg6NPQOZsbVuU/L6urOQAAehzU+DRr1mFBFfaYK/K71ccA5eaxgh71XryYacuwuv
4WzqEP38XOz6ksBqTrt1jUfZpEy+bNX/67CYSswHIUAcS9qCtxt4ANyifmxXKYIx
iMUpG+XM4Q3Fa7z3mlpPC3OaV+AdkmNifJNQdBOuxlATd1RiYJV6TWYuNEMKe3hZ
Csm5F5Qtuqln+4Tv7MW2sd1GPU9yuuazD4+GrPzCFqg=
-----END CERTIFICATE-----
";

    /// "CN=Unit CA Ed25519": a key kipuka does not verify signatures with.
    const CA_ED25519: &str = "\
-----BEGIN CERTIFICATE-----
MIIBWzCCAQ2gAwIBAgIUJTjOM3pTKCnVHnXfTyjaLUURPfYwBQYDK2VwMBoxGDAW
BgNVBAMMD1VuaXQgQ0EgRWQyNTUxOTAgFw0yNjExMzAxNDI0NThaGA8yMTI2MTEw
NjE0MjQ1OFowGjEYMBYGA1UEAwwPVW5pdCBDQSBFZDI1NTE5MCowBQYDK2VwAyEA
uKxUg8Syy4CwWDcu5LABxjhvXPQeM5o43jpeeb8tOUWjYzBhMB0GA1UdDgQWBBQ5
Evw9SzTijoTusIyI+IOXxTklcjAfBgNVHSMEGDAWgBQ5Evw9SzTijoTusIyI+IOX
xTklcjAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIBBjAFBgMrZXADQQAE
pY/nEAKQN8pHHGiCj33VhfESkDpmOOn9NNGDkmdb1z8XHrLI6gbEdfgho7EHswIm
e1cdC46sJNe0MJVqiMAM
-----END CERTIFICATE-----
";

    /// Writes each PEM to its own file and reads them as `client_issuers`.
    fn issuers(dir: &Path, pems: &[&str]) -> ClientIssuers {
        let issuers = pems
            .iter()
            .enumerate()
            .map(|(i, pem)| {
                let path = dir.join(format!("issuer-{i}.pem"));
                std::fs::write(&path, pem).unwrap();
                ClientIssuer::read(&path).unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        ClientIssuers { issuers }
    }

    fn leaf(pem: &str) -> (Certificate, Vec<u8>) {
        let cert = Certificate::from_pem(pem).unwrap();
        let der = cert.to_der().unwrap();
        (cert, der)
    }

    #[test]
    fn the_listed_issuer_is_found_by_name_and_signature() {
        let dir = tempfile::tempdir().unwrap();
        let listed = issuers(dir.path(), &[CA_A, CA_B]);
        for (pem, subject) in [(LEAF_A, "CN=Unit CA A"), (LEAF_B, "CN=Unit CA B")] {
            let (cert, der) = leaf(pem);
            let found = listed
                .issuer_of(&cert, &der)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(found.subject(), subject);
        }
    }

    #[test]
    fn another_issuer_is_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, der) = leaf(LEAF_B);
        let refusal = issuers(dir.path(), &[CA_A])
            .issuer_of(&cert, &der)
            .unwrap_err();
        assert_eq!(
            refusal.to_string(),
            r#"its issuer "CN=Unit CA B" is not one of the CA's client_issuers"#
        );
    }

    #[test]
    fn the_same_issuer_name_with_another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, der) = leaf(LEAF_A_OTHER_KEY);
        let refusal = issuers(dir.path(), &[CA_A])
            .issuer_of(&cert, &der)
            .unwrap_err();
        assert!(
            matches!(&refusal, NotAccepted::NotSigned { why, .. } if why == "its signature does not verify"),
            "{refusal}"
        );
        // Both listed: the one whose key verifies is chosen, whatever the order.
        let both = issuers(dir.path(), &[CA_A, CA_A_OTHER_KEY]);
        assert_eq!(
            both.issuer_of(&cert, &der).unwrap().path,
            dir.path().join("issuer-1.pem")
        );
        let (cert, der) = leaf(LEAF_A);
        assert_eq!(
            both.issuer_of(&cert, &der).unwrap().path,
            dir.path().join("issuer-0.pem")
        );
    }

    #[test]
    fn a_tampered_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, mut der) = leaf(LEAF_A);
        // The last byte is the signature's.
        *der.last_mut().unwrap() ^= 1;
        let refusal = issuers(dir.path(), &[CA_A])
            .issuer_of(&cert, &der)
            .unwrap_err();
        assert!(
            matches!(refusal, NotAccepted::NotSigned { .. }),
            "{refusal}"
        );
    }

    #[test]
    fn unusable_files_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = ClientIssuer::read(&missing).err().unwrap().to_string();
        assert!(
            err.starts_with(&format!(
                "client_issuers: {} cannot be read: ",
                missing.display()
            )),
            "{err}"
        );
        let no_cert = dir.path().join("key.pem");
        std::fs::write(
            &no_cert,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = ClientIssuer::read(&no_cert).err().unwrap().to_string();
        assert_eq!(
            err,
            format!(
                "client_issuers: {} holds no usable certificate: no CERTIFICATE block",
                no_cert.display()
            )
        );
        let ed25519 = dir.path().join("ed25519.pem");
        std::fs::write(&ed25519, CA_ED25519).unwrap();
        let err = ClientIssuer::read(&ed25519).err().unwrap().to_string();
        assert!(
            err.starts_with(&format!(
                "client_issuers: {} holds a certificate whose key cannot check client \
                 certificates: unsupported key: public key algorithm",
                ed25519.display()
            )),
            "{err}"
        );
        let chain = dir.path().join("chain.pem");
        std::fs::write(&chain, format!("{LEAF_A}{CA_A}")).unwrap();
        let err = ClientIssuer::read(&chain).err().unwrap().to_string();
        assert!(
            err.starts_with(&format!(
                "client_issuers: {} holds 2 certificates: ",
                chain.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn an_issuer_is_anchored_by_itself_or_by_its_signer() {
        let dir = tempfile::tempdir().unwrap();
        let listed = issuers(dir.path(), &[CA_A, CA_B]);
        let anchor = |pem| Certificate::from_pem(pem).unwrap();
        let subjects = |anchors: &[Certificate]| -> Vec<String> {
            listed
                .unanchored(anchors)
                .iter()
                .map(|i| i.subject())
                .collect()
        };
        assert!(subjects(&[anchor(CA_A), anchor(CA_B)]).is_empty());
        assert_eq!(subjects(&[anchor(CA_B)]), ["CN=Unit CA A"]);
        // Same name, other key: not the same anchor.
        assert_eq!(
            subjects(&[anchor(CA_A_OTHER_KEY), anchor(CA_B)]),
            ["CN=Unit CA A"]
        );
        // A listed intermediate (here a leaf stands in for one) is anchored
        // by the anchor that signed it.
        let below = issuers(dir.path(), &[LEAF_A]);
        assert!(below.unanchored(&[anchor(CA_A)]).is_empty());
        assert_eq!(below.unanchored(&[anchor(CA_A_OTHER_KEY)]).len(), 1);
    }
}
