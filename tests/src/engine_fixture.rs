//! In-process fixture for engine tests: one SoftHSM2 and one Kryoptic token
//! per test process, with RSA, EC (and on Kryoptic ML-DSA) keys generated
//! *by the token tools*, not by kipuka, and their public keys exported by
//! `pkcs11-tool` so that verification never trusts kipuka's key reading.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, OnceLock},
    time::Duration,
};

use kipuka::{
    hsm::{HealthThresholds, PinSource, Pkcs11Context, PoolSettings, SessionPool, TokenSelector},
    plugins::{load_plugin, VendorProfile},
};
use kipuka_plugin_api::UserType;
use secrecy::SecretString;

use crate::{
    artifacts::{out_of_tree_plugin, vendor_plugin},
    tokens::{openssl35, TestToken, TokenKind},
};

/// RSA sizes, EC curves (pkcs11-tool names) and ML-DSA sets made on each token.
pub const RSA_BITS: [u32; 3] = [2048, 3072, 4096];
/// Curves: (kipuka label suffix, pkcs11-tool name).
pub const CURVES: [(&str, &str); 3] = [
    ("p256", "prime256v1"),
    ("p384", "secp384r1"),
    ("p521", "secp521r1"),
];
/// ML-DSA parameter sets on Kryoptic: (label suffix, CKP value).
pub const ML_DSA: [(&str, u64); 3] = [("44", 1), ("65", 2), ("87", 3)];

/// A token with keys, its vendor profile and a folder of exported public keys.
pub struct EngineToken {
    /// The token.
    pub token: TestToken,
    /// The vendor profile (Kryoptic plugin; the out-of-tree example for SoftHSM2).
    pub profile: Arc<VendorProfile>,
    /// `<label>.pub.pem` files.
    pub keys_dir: PathBuf,
}

impl EngineToken {
    /// The PEM public key of `label`, exported by pkcs11-tool + openssl.
    pub fn public_pem(&self, label: &str) -> PathBuf {
        self.keys_dir.join(format!("{label}.pub.pem"))
    }

    /// `pkcs11:` URI of the private key `label`.
    pub fn uri(&self, label: &str) -> kipuka::hsm::Pkcs11Uri {
        format!("pkcs11:token={};object={label}", self.token.label)
            .parse()
            .unwrap()
    }

    /// A context on this token.
    pub fn context(&self) -> Arc<Pkcs11Context> {
        Arc::new(
            Pkcs11Context::open(
                Some(&self.token.module),
                self.profile.clone(),
                &BTreeMap::new(),
                TokenSelector {
                    label: Some(self.token.label.clone()),
                    ..Default::default()
                },
            )
            .unwrap_or_else(|e| panic!("{}: {e}", self.token.kind)),
        )
    }

    /// A started pool of `size` sessions on this token.
    pub fn pool(&self, size: usize, thresholds: HealthThresholds) -> Arc<SessionPool> {
        SessionPool::start(
            self.context(),
            PinSource::Literal(SecretString::from(self.token.user_pin.clone())),
            UserType::USER,
            PoolSettings {
                size,
                acquire_timeout: Duration::from_secs(10),
                operation_timeout: Duration::from_secs(60),
                thresholds,
            },
        )
        .unwrap_or_else(|e| panic!("{}: {e}", self.token.kind))
    }
}

/// Default thresholds for tests that do not look at health.
pub const RELAXED: HealthThresholds = HealthThresholds {
    degraded_after: 3,
    unavailable_after: 10,
};

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn export_public(token: &TestToken, label: &str, dir: &Path) {
    let der = dir.join(format!("{label}.pub.der"));
    let out = token
        .pkcs11_tool([
            "--read-object",
            "--type",
            "pubkey",
            "--label",
            label,
            "-o",
            der.to_str().unwrap(),
        ])
        .unwrap();
    assert!(
        out.status.success(),
        "export {label}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    run(Command::new(openssl35().unwrap())
        .args(["pkey", "-pubin", "-inform", "DER", "-in"])
        .arg(&der)
        .arg("-out")
        .arg(dir.join(format!("{label}.pub.pem"))));
}

fn keygen(token: &TestToken, key_type: &str, label: &str, id: &str) {
    let out = token
        .pkcs11_tool([
            "--keypairgen",
            "--key-type",
            key_type,
            "--label",
            label,
            "--id",
            id,
            "--usage-sign",
            "--usage-derive",
        ])
        .unwrap();
    assert!(
        out.status.success(),
        "keygen {label}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_spki(dir: &Path, label: &str, spki: &[u8]) {
    std::fs::write(dir.join(format!("{label}.pub.der")), spki).unwrap();
    run(Command::new(openssl35().unwrap())
        .args(["pkey", "-pubin", "-inform", "DER", "-in"])
        .arg(dir.join(format!("{label}.pub.der")))
        .arg("-out")
        .arg(dir.join(format!("{label}.pub.pem"))));
}

/// Through the token's own API (cryptoki), with this file's own DER:
/// - the EC public keys (pkcs11-tool 0.23 cannot export P-384/P-521 ones:
///   "cannot create EVP_PKEY"), as SPKI from `CKA_EC_POINT`;
/// - on Kryoptic, ML-DSA key pairs (pkcs11-tool 0.23 cannot make them), as
///   SPKI from `CKA_VALUE`.
fn token_api_keys(token: &TestToken, dir: &Path, ml_dsa: bool) {
    use cryptoki::object::{Attribute, AttributeType};
    let (_p11, session) = token_session(token);
    let ec_public_key_oid = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    let curve_oids: [&[u8]; 3] = [
        &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
        &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
        &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23],
    ];
    for ((suffix, _), (oid, coord)) in CURVES
        .iter()
        .zip(curve_oids.into_iter().zip([32usize, 48, 66]))
    {
        let label = format!("ec-{suffix}");
        let public = session
            .find_objects(&[
                Attribute::Class(cryptoki::object::ObjectClass::PUBLIC_KEY),
                Attribute::Label(label.clone().into_bytes()),
            ])
            .unwrap()[0];
        let point = session
            .get_attributes(public, &[AttributeType::EcPoint])
            .unwrap()
            .into_iter()
            .find_map(|a| match a {
                Attribute::EcPoint(p) => Some(p),
                _ => None,
            })
            .expect("CKA_EC_POINT");
        let raw_len = 1 + 2 * coord;
        // PKCS#11 2.40 wraps the point in a DER OCTET STRING; some tokens do not.
        let point = if point.len() == raw_len {
            point
        } else {
            point[point.len() - raw_len..].to_vec()
        };
        let alg = der_seq(&[ec_public_key_oid.to_vec(), oid.to_vec()]);
        let mut bits = vec![0x00];
        bits.extend_from_slice(&point);
        write_spki(dir, &label, &der_seq(&[alg, der_tlv(0x03, &bits)]));
    }
    if !ml_dsa {
        return;
    }
    for (suffix, set) in ML_DSA {
        let label = format!("mldsa-{suffix}");
        let spki = generate_ml_dsa(&session, &label, set);
        write_spki(dir, &label, &spki);
    }
}

/// Generates an ML-DSA key pair (`set` = CKP value 1/2/3) labelled `label`
/// on the token of `session` (logged in, R/W) and returns its public key as
/// DER SubjectPublicKeyInfo built from `CKA_VALUE` by this file.
pub fn generate_ml_dsa(session: &cryptoki::session::Session, label: &str, set: u64) -> Vec<u8> {
    use cryptoki::{
        mechanism::Mechanism,
        object::{Attribute, AttributeType, MlDsaParameterSetType, ParameterSetType},
    };
    let (public, _) = session
        .generate_key_pair(
            &Mechanism::MlDsaKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::ParameterSet(ParameterSetType::from(match set {
                    1 => MlDsaParameterSetType::ML_DSA_44,
                    2 => MlDsaParameterSetType::ML_DSA_65,
                    _ => MlDsaParameterSetType::ML_DSA_87,
                })),
                Attribute::Verify(true),
            ],
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Sign(true),
            ],
        )
        .unwrap_or_else(|e| panic!("ML-DSA keygen: {e}"));
    let value = session
        .get_attributes(public, &[AttributeType::Value])
        .unwrap()
        .into_iter()
        .find_map(|a| match a {
            Attribute::Value(v) => Some(v),
            _ => None,
        })
        .expect("ML-DSA public value");
    // SPKI = SEQUENCE { SEQUENCE { OID 2.16.840.1.101.3.4.3.(16+set) }, BIT STRING }
    let oid = [
        0x06,
        0x09,
        0x60,
        0x86,
        0x48,
        0x01,
        0x65,
        0x03,
        0x04,
        0x03,
        0x10 + set as u8,
    ];
    let alg = der_seq(&[oid.to_vec()]);
    let mut bits = vec![0x00];
    bits.extend_from_slice(&value);
    der_seq(&[alg, der_tlv(0x03, &bits)])
}

/// A logged-in R/W session on `token` through the token's own API.
pub fn token_session(token: &TestToken) -> (cryptoki::context::Pkcs11, cryptoki::session::Session) {
    use cryptoki::{
        context::{CInitializeArgs, CInitializeFlags, Pkcs11},
        session::UserType as U,
    };
    let p11 = Pkcs11::new(&token.module).unwrap();
    let _ = p11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = p11
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| p11.get_token_info(*s).unwrap().label().trim() == token.label)
        .expect("token slot");
    let session = p11.open_rw_session(slot).unwrap();
    let _ = session.login(U::User, Some(&SecretString::from(token.user_pin.clone())));
    (p11, session)
}

fn der_len(n: usize) -> Vec<u8> {
    match n {
        0..=127 => vec![n as u8],
        128..=255 => vec![0x81, n as u8],
        _ => vec![0x82, (n >> 8) as u8, n as u8],
    }
}

fn der_tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend(der_len(body.len()));
    v.extend_from_slice(body);
    v
}

fn der_seq(parts: &[Vec<u8>]) -> Vec<u8> {
    der_tlv(0x30, &parts.concat())
}

fn build(kind: TokenKind) -> EngineToken {
    let dir = tempfile::Builder::new()
        .prefix("kipuka-engine-")
        .tempdir()
        .unwrap()
        .keep();
    let label = match kind {
        TokenKind::SoftHsm2 => "kipuka-soft",
        TokenKind::Kryoptic => "kipuka-kry",
    };
    let token =
        TestToken::create(kind, &dir.join("token"), label).unwrap_or_else(|e| panic!("{e:#}"));
    // The modules read their configuration variable in C_Initialize.
    for (k, v) in &token.env {
        std::env::set_var(k, v);
    }
    let keys_dir = dir.join("keys");
    std::fs::create_dir_all(&keys_dir).unwrap();
    for (i, bits) in RSA_BITS.iter().enumerate() {
        let label = format!("rsa-{bits}");
        keygen(&token, &format!("rsa:{bits}"), &label, &format!("1{i}"));
        export_public(&token, &label, &keys_dir);
    }
    for (i, (suffix, name)) in CURVES.iter().enumerate() {
        keygen(
            &token,
            &format!("EC:{name}"),
            &format!("ec-{suffix}"),
            &format!("2{i}"),
        );
    }
    token_api_keys(&token, &keys_dir, kind == TokenKind::Kryoptic);
    let plugin = match kind {
        TokenKind::SoftHsm2 => out_of_tree_plugin(),
        TokenKind::Kryoptic => vendor_plugin("kryoptic"),
    };
    let profile = Arc::new(load_plugin(&plugin).unwrap_or_else(|e| panic!("{e}")));
    EngineToken {
        token,
        profile,
        keys_dir,
    }
}

/// The process's SoftHSM2 or Kryoptic token, made on first use.
pub fn engine_token(kind: TokenKind) -> &'static EngineToken {
    static SOFT: OnceLock<EngineToken> = OnceLock::new();
    static KRY: OnceLock<EngineToken> = OnceLock::new();
    match kind {
        TokenKind::SoftHsm2 => SOFT.get_or_init(|| build(kind)),
        TokenKind::Kryoptic => KRY.get_or_init(|| build(kind)),
    }
}

/// Verifies `sig` over `data` with the OpenSSL 3.5 command line.
/// `opts` are extra `-sigopt`/`-pkeyopt` arguments; `digest` None for ML-DSA (`-rawin`).
pub fn openssl_verify(
    public_pem: &Path,
    data: &[u8],
    sig: &[u8],
    digest: Option<&str>,
    opts: &[&str],
) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let (d, s) = (dir.path().join("data"), dir.path().join("sig"));
    std::fs::write(&d, data).unwrap();
    std::fs::write(&s, sig).unwrap();
    let mut cmd = Command::new(openssl35().unwrap());
    match digest {
        Some(md) => {
            cmd.args(["dgst", &format!("-{md}"), "-verify"])
                .arg(public_pem)
                .arg("-signature")
                .arg(&s);
            for o in opts {
                cmd.args(["-sigopt", o]);
            }
            cmd.arg(&d);
        }
        None => {
            cmd.args(["pkeyutl", "-verify", "-pubin", "-inkey"])
                .arg(public_pem)
                .args(["-rawin", "-in"])
                .arg(&d)
                .arg("-sigfile")
                .arg(&s);
        }
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
