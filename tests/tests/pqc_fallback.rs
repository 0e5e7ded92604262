//! `SoftwarePqcFallback` against the OpenSSL 3.5 command line (`KIPUKA_TEST_OPENSSL`), the
//! independent implementation: OpenSSL's encrypted ML-DSA keys load in kipuka and kipuka's
//! signatures verify in OpenSSL (raw, and as an X.509 certificate signature); kipuka's encrypted
//! keys load in OpenSSL. Fails (does not skip) when the OpenSSL 3.5 program is missing: run
//! `cargo xtask test`.

use anyhow::{bail, ensure, Context, Result};
use kipuka::hsm::pqc_fallback::{PqcError, SoftwarePqcFallback};
use kipuka_plugin_api::MlDsaParameterSet;
use kipuka_tests::tokens::openssl35;
use pkcs8::der::asn1::{AnyRef, BitStringRef};
use pkcs8::der::{Decode, Encode, Header, Length, Reader, SliceReader, Tag, Tagged};
use secrecy::SecretString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The variable OpenSSL reads the passphrase from (`-passin env:` / `-passout env:`), set on
/// the child process only.
const PASS_VAR: &str = "KIPUKA_TEST_PQC_PASSPHRASE";
const PASSPHRASE: &str = "kipuka pqc test passphrase";

/// The OpenSSL 3.5 program and a scratch directory.
struct OpenSsl {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl OpenSsl {
    fn new() -> Result<OpenSsl> {
        let bin = openssl35()?;
        let ssl = OpenSsl {
            bin,
            dir: tempfile::tempdir()?,
        };
        let version = String::from_utf8_lossy(&ssl.ok(&["version"])?).into_owned();
        let (major, minor) = version
            .strip_prefix("OpenSSL ")
            .and_then(|v| {
                let mut parts = v.split(['.', ' ']);
                Some((
                    parts.next()?.parse::<u32>().ok()?,
                    parts.next()?.parse::<u32>().ok()?,
                ))
            })
            .with_context(|| format!("cannot parse `openssl version`: {version}"))?;
        ensure!(
            (major, minor) >= (3, 5),
            "{} is {}, ML-DSA needs OpenSSL 3.5 or later",
            ssl.bin.display(),
            version.trim()
        );
        Ok(ssl)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Result<Output> {
        Command::new(&self.bin)
            .args(args)
            .current_dir(self.dir.path())
            .env(PASS_VAR, PASSPHRASE)
            .output()
            .with_context(|| format!("running {} {}", self.bin.display(), args.join(" ")))
    }

    /// Runs `openssl args...`, fails with its stderr unless it succeeds, returns its stdout.
    fn ok(&self, args: &[&str]) -> Result<Vec<u8>> {
        let out = self.run(args)?;
        if !out.status.success() {
            bail!(
                "`openssl {}` failed ({}):\n{}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out.stdout)
    }

    /// `openssl genpkey -algorithm <alg> | openssl pkcs8 -topk8 -v2 aes-256-cbc -passout env:X`,
    /// with `-provparam` options for genpkey; returns the encrypted key file.
    fn encrypted_key(&self, alg: &str, name: &str, genpkey_opts: &[&str]) -> Result<PathBuf> {
        let plain = format!("{name}.plain.pem");
        let mut args = vec!["genpkey", "-algorithm", alg, "-out", &plain];
        args.extend_from_slice(genpkey_opts);
        self.ok(&args)?;
        let encrypted = format!("{name}.p8.pem");
        let passout = format!("env:{PASS_VAR}");
        self.ok(&[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            &passout,
            "-in",
            &plain,
            "-out",
            &encrypted,
        ])?;
        Ok(self.path(&encrypted))
    }

    /// The public key of an encrypted private key file as DER SubjectPublicKeyInfo, and as
    /// a PEM file for `pkeyutl`.
    fn public_key(&self, key: &Path, name: &str) -> Result<(Vec<u8>, PathBuf)> {
        let key = key.to_str().context("non-UTF-8 temporary path")?;
        let passin = format!("env:{PASS_VAR}");
        let pem = format!("{name}.pub.pem");
        self.ok(&[
            "pkey", "-in", key, "-passin", &passin, "-pubout", "-out", &pem,
        ])?;
        let der = self.ok(&["pkey", "-pubin", "-in", &pem, "-outform", "DER"])?;
        Ok((der, self.path(&pem)))
    }

    /// `openssl pkeyutl -verify -rawin` of `sig` over `msg` with a public key PEM, plus extra
    /// options; true when OpenSSL says the signature verifies.
    fn verifies(&self, public: &Path, msg: &[u8], sig: &[u8], opts: &[&str]) -> Result<bool> {
        std::fs::write(self.path("msg.bin"), msg)?;
        std::fs::write(self.path("sig.bin"), sig)?;
        let public = public.to_str().context("non-UTF-8 temporary path")?;
        let mut args = vec![
            "pkeyutl", "-verify", "-pubin", "-inkey", public, "-rawin", "-in", "msg.bin",
            "-sigfile", "sig.bin",
        ];
        args.extend_from_slice(opts);
        let out = self.run(&args)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let verified = stdout.contains("Signature Verified Successfully");
        ensure!(
            verified == out.status.success(),
            "pkeyutl exit status {} disagrees with its output:\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(verified)
    }
}

fn passphrase() -> SecretString {
    SecretString::from(PASSPHRASE.to_owned())
}

/// (a)/(c): OpenSSL makes an encrypted key; kipuka loads it and signs; OpenSSL verifies.
fn openssl_key_kipuka_signs(alg: &str, set: MlDsaParameterSet, sig_len: usize) -> Result<()> {
    let ssl = OpenSsl::new()?;
    let key_file = ssl.encrypted_key(alg, "ossl", &[])?;
    let (openssl_spki, public_pem) = ssl.public_key(&key_file, "ossl")?;

    let key = SoftwarePqcFallback::load(&key_file, &passphrase())
        .with_context(|| format!("kipuka loading OpenSSL's {alg} key"))?;
    assert_eq!(key.parameter_set(), set);
    assert_eq!(
        key.public_key_spki_der(),
        openssl_spki,
        "kipuka's SubjectPublicKeyInfo differs from OpenSSL's for {alg}"
    );

    let msg = format!("kipuka {alg} interop message").into_bytes();
    let sig = key.sign(&msg)?;
    assert_eq!(sig.len(), sig_len, "{alg} signature length");
    assert!(
        ssl.verifies(&public_pem, &msg, &sig, &[])?,
        "OpenSSL rejects kipuka's {alg} signature"
    );

    let mut tampered = msg.clone();
    tampered[0] ^= 0x01;
    assert!(
        !ssl.verifies(&public_pem, &tampered, &sig, &[])?,
        "OpenSSL accepts kipuka's {alg} signature over a tampered message"
    );
    let mut bad_sig = sig.clone();
    bad_sig[sig_len / 2] ^= 0x01;
    assert!(
        !ssl.verifies(&public_pem, &msg, &bad_sig, &[])?,
        "OpenSSL accepts a tampered {alg} signature"
    );

    let wrong = SoftwarePqcFallback::load(&key_file, &SecretString::from("not it".to_owned()));
    match wrong {
        Err(e @ PqcError::Decrypt { .. }) => {
            let text = e.to_string();
            assert!(text.contains(key_file.to_str().unwrap()), "{text}");
            assert!(
                !text.contains(PASSPHRASE) && !text.contains("not it"),
                "{text}"
            );
        }
        other => panic!("wrong passphrase on OpenSSL's {alg} key: {other:?}"),
    }
    Ok(())
}

#[test]
fn openssl_ml_dsa_65_key_loads_and_kipuka_signature_verifies() -> Result<()> {
    openssl_key_kipuka_signs("ML-DSA-65", MlDsaParameterSet::ML_DSA_65, 3309)
}

#[test]
fn openssl_ml_dsa_44_key_loads_and_kipuka_signature_verifies() -> Result<()> {
    openssl_key_kipuka_signs("ML-DSA-44", MlDsaParameterSet::ML_DSA_44, 2420)
}

#[test]
fn openssl_ml_dsa_87_key_loads_and_kipuka_signature_verifies() -> Result<()> {
    openssl_key_kipuka_signs("ML-DSA-87", MlDsaParameterSet::ML_DSA_87, 4627)
}

/// OpenSSL's `pkeyutl` verifies with an empty context by default, as kipuka signs: the same
/// signature fails once a non-empty context string is given.
#[test]
fn kipuka_signs_with_the_empty_context() -> Result<()> {
    let ssl = OpenSsl::new()?;
    let key_file = ssl.encrypted_key("ML-DSA-44", "ctx", &[])?;
    let (_, public_pem) = ssl.public_key(&key_file, "ctx")?;
    let key = SoftwarePqcFallback::load(&key_file, &passphrase())?;
    let msg = b"context check";
    let sig = key.sign(msg)?;
    assert!(ssl.verifies(&public_pem, msg, &sig, &[])?);
    assert!(
        !ssl.verifies(
            &public_pem,
            msg,
            &sig,
            &["-pkeyopt", "context-string:kipuka"]
        )?,
        "a signature made with the empty context must not verify under another context"
    );
    Ok(())
}

/// (b): kipuka generates a key and writes it encrypted; OpenSSL reads it with the passphrase
/// and finds the same public key; the encryption is PBES2/PBKDF2-SHA256/AES-256-CBC.
#[test]
fn kipuka_encrypted_key_is_read_by_openssl() -> Result<()> {
    let ssl = OpenSsl::new()?;
    let key = SoftwarePqcFallback::generate(MlDsaParameterSet::ML_DSA_65)?;
    let pem = key.to_encrypted_pkcs8_pem(&passphrase())?;
    let file = ssl.path("kipuka.p8.pem");
    std::fs::write(&file, pem.as_bytes())?;

    let (openssl_spki, _) = ssl.public_key(&file, "kipuka")?;
    assert_eq!(
        openssl_spki,
        key.public_key_spki_der(),
        "OpenSSL reads a different public key from kipuka's encrypted key"
    );
    let text = String::from_utf8_lossy(&ssl.ok(&[
        "pkey",
        "-in",
        "kipuka.p8.pem",
        "-passin",
        &format!("env:{PASS_VAR}"),
        "-noout",
        "-text",
    ])?)
    .into_owned();
    assert!(text.contains("ML-DSA-65"), "{text}");

    let parsed =
        String::from_utf8_lossy(&ssl.ok(&["asn1parse", "-in", "kipuka.p8.pem"])?).into_owned();
    for expected in [
        "PBES2",
        "PBKDF2",
        "hmacWithSHA256",
        "aes-256-cbc",
        ":0927C0",
    ] {
        assert!(parsed.contains(expected), "no {expected} in:\n{parsed}");
    }

    let wrong = ssl.run(&[
        "pkey",
        "-in",
        "kipuka.p8.pem",
        "-passin",
        "pass:wrong",
        "-noout",
    ])?;
    assert!(
        !wrong.status.success(),
        "OpenSSL opened kipuka's key with a wrong passphrase"
    );
    // (kipuka reading its own files back is a unit test with fewer PBKDF2 iterations:
    // 600 000 of them take seconds in a debug build.)
    Ok(())
}

/// The seed-only form (`ml-dsa.output_formats=seed-only`) loads; the expanded-only form
/// (`priv-only`) is refused with a message that names the file.
#[test]
fn openssl_seed_only_loads_and_expanded_only_is_refused() -> Result<()> {
    let ssl = OpenSsl::new()?;
    let seed_only = ssl.encrypted_key(
        "ML-DSA-65",
        "seed",
        &["-provparam", "ml-dsa.output_formats=seed-only"],
    )?;
    let (openssl_spki, _) = ssl.public_key(&seed_only, "seed")?;
    let key = SoftwarePqcFallback::load(&seed_only, &passphrase())?;
    assert_eq!(key.public_key_spki_der(), openssl_spki);

    let expanded_only = ssl.encrypted_key(
        "ML-DSA-65",
        "expanded",
        &["-provparam", "ml-dsa.output_formats=priv-only"],
    )?;
    match SoftwarePqcFallback::load(&expanded_only, &passphrase()) {
        Err(e @ PqcError::ExpandedKeyOnly { .. }) => {
            assert!(
                e.to_string().contains(expanded_only.to_str().unwrap()),
                "{e}"
            );
        }
        other => panic!("expanded-only key: {other:?}"),
    }
    Ok(())
}

/// `openssl verify` accepts ML-DSA-65 certificates whose signatures kipuka made: OpenSSL
/// issues a self-signed CA certificate and a leaf certificate (P-256 key) under it, kipuka
/// re-signs each TBSCertificate with the same CA key. A self-signed trust anchor's own
/// signature is only checked with `-check_ss_sig`.
#[test]
fn openssl_verifies_certificates_signed_by_kipuka() -> Result<()> {
    let ssl = OpenSsl::new()?;
    let key_file = ssl.encrypted_key("ML-DSA-65", "ca", &[])?;
    let key_arg = key_file.to_str().context("non-UTF-8 temporary path")?;
    let passin = format!("env:{PASS_VAR}");
    ssl.ok(&[
        "req",
        "-x509",
        "-new",
        "-key",
        key_arg,
        "-passin",
        &passin,
        "-subj",
        "/CN=kipuka ML-DSA test CA",
        "-days",
        "1",
        "-out",
        "openssl-ca.pem",
    ])?;
    ssl.ok(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-noenc",
        "-keyout",
        "leaf.key",
        "-subj",
        "/CN=kipuka leaf",
        "-out",
        "leaf.csr",
    ])?;
    ssl.ok(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "openssl-ca.pem",
        "-CAkey",
        key_arg,
        "-passin",
        &passin,
        "-days",
        "1",
        "-outform",
        "DER",
        "-out",
        "openssl-leaf.der",
    ])?;
    ssl.ok(&[
        "x509",
        "-in",
        "openssl-ca.pem",
        "-outform",
        "DER",
        "-out",
        "openssl-ca.der",
    ])?;

    let key = SoftwarePqcFallback::load(&key_file, &passphrase())?;
    for (name, verify) in [
        (
            "ca",
            &["verify", "-check_ss_sig", "-CAfile", "ca.pem", "ca.pem"][..],
        ),
        (
            "leaf",
            &["verify", "-CAfile", "openssl-ca.pem", "leaf.pem"][..],
        ),
    ] {
        let openssl_cert = std::fs::read(ssl.path(&format!("openssl-{name}.der")))?;
        let (tbs, alg, openssl_sig) = split_certificate(&openssl_cert)?;
        let alg_oid = AnyRef::from_der(alg)?
            .decode_as::<pkcs8::spki::AlgorithmIdentifierRef<'_>>()?
            .oid
            .to_string();
        assert_eq!(alg_oid, key.algorithm_oid(), "{name}");
        let sig = key.sign(tbs)?;
        assert_ne!(sig, openssl_sig, "hedged signatures should differ");

        let pem_file = format!("{name}.pem");
        write_certificate(&ssl.path(&pem_file), tbs, alg, &sig)?;
        let out = ssl.ok(verify)?;
        assert!(
            String::from_utf8_lossy(&out).contains(&format!("{pem_file}: OK")),
            "{name}: {}",
            String::from_utf8_lossy(&out)
        );

        let mut bad = sig.clone();
        bad[10] ^= 0x01;
        write_certificate(&ssl.path(&pem_file), tbs, alg, &bad)?;
        let out = ssl.run(verify)?;
        assert!(
            !out.status.success(),
            "openssl verify accepts the {name} certificate with a tampered signature"
        );
    }
    Ok(())
}

fn write_certificate(path: &Path, tbs: &[u8], alg: &[u8], sig: &[u8]) -> Result<()> {
    let cert = certificate(tbs, alg, sig)?;
    let pem = pkcs8::der::pem::encode_string("CERTIFICATE", pkcs8::LineEnding::LF, &cert)?;
    std::fs::write(path, pem)?;
    Ok(())
}

/// The DER of tbsCertificate and signatureAlgorithm, and the signature bytes of a certificate.
fn split_certificate(der: &[u8]) -> Result<(&[u8], &[u8], Vec<u8>)> {
    let cert = AnyRef::from_der(der)?;
    ensure!(cert.tag() == Tag::Sequence, "certificate is not a SEQUENCE");
    let mut reader = SliceReader::new(cert.value())?;
    let tbs = reader.tlv_bytes()?;
    let alg = reader.tlv_bytes()?;
    let sig: BitStringRef<'_> = reader.decode()?;
    reader.finish()?;
    let sig = sig
        .as_bytes()
        .context("signature BIT STRING has unused bits")?;
    Ok((tbs, alg, sig.to_vec()))
}

/// `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }`.
fn certificate(tbs: &[u8], alg: &[u8], sig: &[u8]) -> Result<Vec<u8>> {
    let mut body = [tbs, alg].concat();
    BitStringRef::new(0, sig)?.encode_to_vec(&mut body)?;
    let mut cert = Vec::new();
    Header::new(Tag::Sequence, Length::try_from(body.len())?).encode_to_vec(&mut cert)?;
    cert.extend_from_slice(&body);
    Ok(cert)
}
