//! The generic PKCS#11 engine on two real tokens, SoftHSM2 and Kryoptic
//! (with PQC). Every signature is verified by the OpenSSL 3.5 command line
//! or by an independent Rust library; every wrapped key is unwrapped by
//! OpenSSL or by RustCrypto's aes-kw, never by kipuka.

use std::process::Command;

use aes_kw::KeyInit;
use kipuka::hsm::{
    keys::KeyAlgorithm,
    sign::{choose_mechanism, SignatureScheme},
    wrap, HsmKeySigner,
};
use kipuka_plugin_api::{Curve, HashAlg, MlDsaParameterSet};
use kipuka_tests::{
    engine_fixture::{engine_token, openssl_verify, CURVES, ML_DSA, RELAXED, RSA_BITS},
    tokens::{openssl35, TokenKind},
};

fn random_data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 13) as u8 ^ rand_byte()).collect()
}

fn rand_byte() -> u8 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u8
}

fn md(h: HashAlg) -> &'static str {
    match h {
        HashAlg::SHA384 => "sha384",
        HashAlg::SHA512 => "sha512",
        _ => "sha256",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_pkcs1_and_pss_with_every_hash_verify_with_openssl() {
    for kind in TokenKind::ALL {
        let t = engine_token(kind);
        let pool = t.pool(4, RELAXED);
        for bits in RSA_BITS {
            let label = format!("rsa-{bits}");
            for hash in [HashAlg::SHA256, HashAlg::SHA384, HashAlg::SHA512] {
                for scheme in [
                    SignatureScheme::RsaPkcs1(hash),
                    SignatureScheme::RsaPss(hash),
                ] {
                    let (info, signer) = HsmKeySigner::open(&pool, &t.uri(&label), scheme).unwrap();
                    assert_eq!(info.algorithm, KeyAlgorithm::Rsa { bits });
                    let signer = signer.expect("RSA is always native");
                    let data = random_data(300);
                    let sig = signer
                        .sign(data.clone().into())
                        .await
                        .unwrap_or_else(|e| panic!("{kind} {label} {scheme}: {e}"));
                    assert_eq!(sig.len() * 8, bits as usize);
                    let opts: &[&str] = match scheme {
                        SignatureScheme::RsaPss(_) => &[
                            "rsa_padding_mode:pss",
                            "rsa_pss_saltlen:digest",
                            &*Box::leak(format!("rsa_mgf1_md:{}", md(hash)).into_boxed_str()),
                        ],
                        _ => &[],
                    };
                    openssl_verify(&t.public_pem(&label), &data, &sig, Some(md(hash)), opts)
                        .unwrap_or_else(|e| {
                            panic!("{kind} {label} {scheme}: OpenSSL rejects the signature: {e}")
                        });
                    // And a signature over other data must not verify: the check can fail.
                    let mut other = data.clone();
                    other[0] ^= 1;
                    assert!(openssl_verify(
                        &t.public_pem(&label),
                        &other,
                        &sig,
                        Some(md(hash)),
                        opts
                    )
                    .is_err());
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecdsa_on_each_curve_uses_the_curves_hash_and_verifies_with_openssl() {
    for kind in TokenKind::ALL {
        let t = engine_token(kind);
        let pool = t.pool(4, RELAXED);
        for ((suffix, _), (curve, hash)) in CURVES.iter().zip([
            (Curve::P256, HashAlg::SHA256),
            (Curve::P384, HashAlg::SHA384),
            (Curve::P521, HashAlg::SHA512),
        ]) {
            let label = format!("ec-{suffix}");
            let (info, signer) =
                HsmKeySigner::open(&pool, &t.uri(&label), SignatureScheme::Ecdsa(hash)).unwrap();
            assert_eq!(info.algorithm, KeyAlgorithm::Ec { curve });
            let signer = signer.unwrap();
            for _ in 0..5 {
                let data = random_data(200);
                let sig = signer.sign(data.clone().into()).await.unwrap();
                assert_eq!(sig[0], 0x30, "DER Ecdsa-Sig-Value");
                openssl_verify(&t.public_pem(&label), &data, &sig, Some(md(hash)), &[])
                    .unwrap_or_else(|e| panic!("{kind} {label}: {e}"));
            }
            // A mismatched hash is refused before it reaches the token.
            let wrong = HsmKeySigner::open(
                &pool,
                &t.uri(&label),
                SignatureScheme::Ecdsa(if hash == HashAlg::SHA256 {
                    HashAlg::SHA512
                } else {
                    HashAlg::SHA256
                }),
            );
            assert!(wrong.is_err(), "{label}: mismatched hash accepted");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ml_dsa_is_native_on_kryoptic_and_verifies_with_openssl_35() {
    let t = engine_token(TokenKind::Kryoptic);
    let pool = t.pool(2, RELAXED);
    for ((suffix, set), sig_len) in ML_DSA.iter().zip([2420, 3309, 4627]) {
        let label = format!("mldsa-{suffix}");
        let (info, signer) =
            HsmKeySigner::open(&pool, &t.uri(&label), SignatureScheme::MlDsa).unwrap();
        assert_eq!(
            info.algorithm,
            KeyAlgorithm::MlDsa {
                set: MlDsaParameterSet(*set)
            }
        );
        let signer = signer.expect("Kryoptic signs ML-DSA natively (CKM_ML_DSA)");
        assert_eq!(
            signer.mechanism().mechanism(),
            kipuka_plugin_api::MechanismId::ML_DSA
        );
        let data = random_data(500);
        let sig = signer.sign(data.clone().into()).await.unwrap();
        assert_eq!(sig.len(), sig_len);
        openssl_verify(&t.public_pem(&label), &data, &sig, None, &[])
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        let mut other = data.clone();
        other[1] ^= 0x40;
        assert!(openssl_verify(&t.public_pem(&label), &other, &sig, None, &[]).is_err());
    }
}

#[test]
fn softhsm2_has_no_ml_dsa_so_the_engine_chooses_the_software_fallback() {
    let t = engine_token(TokenKind::SoftHsm2);
    let ctx = t.context();
    let chosen = choose_mechanism(
        &ctx,
        KeyAlgorithm::MlDsa {
            set: MlDsaParameterSet::ML_DSA_65,
        },
        SignatureScheme::MlDsa,
    )
    .unwrap();
    assert_eq!(
        chosen, None,
        "no native ML-DSA on SoftHSM2: the CA must use SoftwarePqcFallback"
    );
    let kry = engine_token(TokenKind::Kryoptic).context();
    assert!(choose_mechanism(
        &kry,
        KeyAlgorithm::MlDsa {
            set: MlDsaParameterSet::ML_DSA_65
        },
        SignatureScheme::MlDsa
    )
    .unwrap()
    .is_some());
}

#[test]
fn the_public_key_kipuka_reads_equals_what_pkcs11_tool_exports() {
    for kind in TokenKind::ALL {
        let t = engine_token(kind);
        let pool = t.pool(1, RELAXED);
        let mut labels: Vec<String> = RSA_BITS.iter().map(|b| format!("rsa-{b}")).collect();
        labels.extend(CURVES.iter().map(|(s, _)| format!("ec-{s}")));
        if kind == TokenKind::Kryoptic {
            labels.extend(ML_DSA.iter().map(|(s, _)| format!("mldsa-{s}")));
        }
        for label in labels {
            let uri = t.uri(&label);
            let info = pool
                .run_blocking(&|s| {
                    let h = kipuka::hsm::keys::find_private_key(s, &uri)?;
                    kipuka::hsm::keys::read_key_info(s, &uri, h)
                })
                .unwrap();
            let exported = std::fs::read(t.keys_dir.join(format!("{label}.pub.der"))).unwrap();
            assert_eq!(info.public_key_spki, exported, "{kind} {label}");
            assert!(
                info.sensitive,
                "{kind} {label}: generated keys are sensitive"
            );
        }
    }
}

/// Creates a secret key with a known value on the token (the test's own
/// cryptoki session), so the unwrapping side can compare.
fn known_secret(
    t: &kipuka_tests::engine_fixture::EngineToken,
    session: &cryptoki::session::Session,
    value: &[u8],
    wrap: bool,
) -> cryptoki::object::ObjectHandle {
    use cryptoki::object::{Attribute, KeyType, ObjectClass};
    let _ = t;
    session
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            Attribute::Value(value.to_vec()),
            Attribute::Extractable(true),
            Attribute::Sensitive(false),
            Attribute::Wrap(wrap),
            Attribute::Encrypt(true),
        ])
        .unwrap()
}

#[test]
fn aes_key_wrap_is_unwrapped_by_an_independent_library() {
    for kind in TokenKind::ALL {
        let t = engine_token(kind);
        let pool = t.pool(1, RELAXED);
        let ctx = pool.context().clone();
        let kek_bytes = [0x42u8; 32];
        let cek_bytes: Vec<u8> = (0..32).collect();
        let wrapped = pool
            .run_blocking(&|s| {
                let kek = known_secret(t, s, &kek_bytes, true);
                let cek = known_secret(t, s, &cek_bytes, false);
                let w = wrap::aes_key_wrap(&ctx, s, kek, cek);
                let _ = s.destroy_object(kek);
                let _ = s.destroy_object(cek);
                w
            })
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        let kw = aes_kw::KwAes256::new(&kek_bytes.into());
        let mut out = [0u8; 32];
        kw.unwrap_key(&wrapped, &mut out)
            .expect("RFC 3394 unwrap with aes-kw");
        assert_eq!(out.to_vec(), cek_bytes, "{kind}");
    }
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new(openssl35().unwrap())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn rsa_oaep_wraps_are_decrypted_by_openssl_and_unsupported_hashes_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("client.pem");
    let key_s = key.to_str().unwrap();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        key_s,
    ]);
    let modulus_hex =
        String::from_utf8(openssl(&["rsa", "-in", key_s, "-noout", "-modulus"])).unwrap();
    let modulus = hex::decode(modulus_hex.trim().trim_start_matches("Modulus=")).unwrap();
    let exponent = [0x01, 0x00, 0x01];
    let cek_bytes: Vec<u8> = (100..132).collect();

    // Kryoptic: SHA-256 and SHA-384 both work.
    let t = engine_token(TokenKind::Kryoptic);
    let pool = t.pool(1, RELAXED);
    let ctx = pool.context().clone();
    for hash in [HashAlg::SHA256, HashAlg::SHA384] {
        let wrapped = pool
            .run_blocking(&|s| {
                let cek = known_secret(t, s, &cek_bytes, false);
                let w = wrap::rsa_oaep_wrap(&ctx, s, &modulus, &exponent, hash, cek);
                let _ = s.destroy_object(cek);
                w
            })
            .unwrap_or_else(|e| panic!("Kryoptic OAEP {hash}: {e}"));
        let wfile = dir.path().join("wrapped");
        std::fs::write(&wfile, &wrapped).unwrap();
        let plain = openssl(&[
            "pkeyutl",
            "-decrypt",
            "-inkey",
            key_s,
            "-in",
            wfile.to_str().unwrap(),
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            &format!("rsa_oaep_md:{}", md(hash)),
            "-pkeyopt",
            &format!("rsa_mgf1_md:{}", md(hash)),
        ]);
        assert_eq!(plain, cek_bytes, "OAEP {hash}");
    }

    // SoftHSM2 does OAEP with SHA-1 only: SHA-256 is refused, naming vendor, mechanism and hash.
    let t = engine_token(TokenKind::SoftHsm2);
    let pool = t.pool(1, RELAXED);
    let ctx = pool.context().clone();
    let err = pool
        .run_blocking(&|s| {
            let cek = known_secret(t, s, &cek_bytes, false);
            let w = wrap::rsa_oaep_wrap(&ctx, s, &modulus, &exponent, HashAlg::SHA256, cek);
            let _ = s.destroy_object(cek);
            w
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nimbus") && err.contains("CKM_RSA_PKCS_OAEP") && err.contains("SHA-256"),
        "{err}"
    );
}

/// ANSI X9.63 KDF with SHA-256 (RFC 5753 §7.2), written here from the
/// standard so the test does not reuse kipuka's (or the token's) KDF.
fn x963_kdf_sha256(z: &[u8], shared_info: &[u8], len: usize) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut out = Vec::new();
    let mut counter = 1u32;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(z);
        h.update(counter.to_be_bytes());
        h.update(shared_info);
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(len);
    out
}

#[test]
fn ecdh_es_wraps_are_unwrapped_with_openssls_ecdh_and_aes_kw() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("client-ec.pem");
    let key_s = key.to_str().unwrap();
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        key_s,
    ]);
    let spki = openssl(&["pkey", "-in", key_s, "-pubout", "-outform", "DER"]);
    let point = spki[spki.len() - 65..].to_vec();
    let shared_info = b"ECC-CMS-SharedInfo stand-in".to_vec();
    let cek_bytes: Vec<u8> = (7..39).collect();
    for kind in TokenKind::ALL {
        let t = engine_token(kind);
        let pool = t.pool(1, RELAXED);
        let ctx = pool.context().clone();
        let result = pool.run_blocking(&|s| {
            let cek = known_secret(t, s, &cek_bytes, false);
            let w = wrap::ecdh_es_wrap(&ctx, s, Curve::P256, &point, &shared_info, 256, cek);
            let _ = s.destroy_object(cek);
            w
        });
        let wrapped = match (kind, result) {
            (_, Ok(w)) => w,
            (TokenKind::SoftHsm2, Err(e)) => {
                // SoftHSM2 2.6 derives ECDH only with the null KDF: a vendor
                // limitation, refused by name rather than weakened.
                let msg = e.to_string();
                assert!(
                    msg.contains("CKM_ECDH1_DERIVE") || msg.contains("C_DeriveKey"),
                    "{msg}"
                );
                continue;
            }
            (_, Err(e)) => panic!("{kind}: {e}"),
        };
        // The recipient's side, independently: OpenSSL's ECDH, our X9.63 KDF, aes-kw.
        let mut eph_spki = spki[..spki.len() - 65].to_vec();
        eph_spki.extend_from_slice(&wrapped.ephemeral_point);
        let eph = dir.path().join("eph.der");
        std::fs::write(&eph, &eph_spki).unwrap();
        let eph_pem = dir.path().join("eph.pem");
        openssl(&[
            "pkey",
            "-pubin",
            "-inform",
            "DER",
            "-in",
            eph.to_str().unwrap(),
            "-out",
            eph_pem.to_str().unwrap(),
        ]);
        let z = openssl(&[
            "pkeyutl",
            "-derive",
            "-inkey",
            key_s,
            "-peerkey",
            eph_pem.to_str().unwrap(),
        ]);
        let kek = x963_kdf_sha256(&z, &shared_info, 32);
        let kw = aes_kw::KwAes256::new_from_slice(&kek).unwrap();
        let mut out = [0u8; 32];
        kw.unwrap_key(&wrapped.wrapped_key, &mut out)
            .unwrap_or_else(|e| panic!("{kind}: unwrap: {e:?}"));
        assert_eq!(out.to_vec(), cek_bytes, "{kind}");
    }
}

/// Contexts on one library opened and dropped by many threads at once, as
/// the tests of this file do (and several CAs, or a tool beside the server,
/// would): the library is loaded and initialised once for the process and
/// stays so when the last context goes. When each context loaded its own
/// handle, the last one dropped unloaded the library and the next ones raced
/// in `C_Initialize`: SoftHSM2 crashed, lost its token or its sessions.
#[test]
fn contexts_opened_and_dropped_in_parallel_share_one_initialised_library() {
    use cryptoki::{
        context::{CInitializeArgs, CInitializeFlags, Pkcs11},
        error::{Error, RvError},
    };
    for kind in TokenKind::ALL {
        let t = engine_token(kind);
        let uri = t.uri("ec-p256");
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..10 {
                        // A private key is found only by a logged-in session.
                        t.pool(1, RELAXED)
                            .run_blocking(&|s| kipuka::hsm::keys::find_private_key(s, &uri))
                            .unwrap_or_else(|e| panic!("{kind}: {e}"));
                    }
                });
            }
        });
        // Every context of this test is gone; the library is still initialised.
        let other = Pkcs11::new(&t.token.module).unwrap();
        let rv = other.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
        assert!(
            matches!(
                rv,
                Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _))
            ),
            "{kind}: C_Initialize after the last context was dropped: {rv:?}"
        );
    }
}
