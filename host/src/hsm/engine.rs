//! Starting the engine from the configuration: choose the provider, open
//! the library and token, start the pool, open every CA's key and check it
//! against the CA certificate.

use std::{path::Path, sync::Arc, time::Duration};

use kipuka_plugin_api::{HashAlg, MlDsaAccess};

use crate::{
    ca::chain::{load_chain, spki_der, ChainError},
    config::{CaConfig, Config, HashChoice, RsaScheme},
    plugins::{select_provider, ChosenBy, PluginRegistry, SelectError, VendorProfile},
};

use super::{
    context::{Pkcs11Context, TokenSelector},
    error::HsmError,
    health::HealthThresholds,
    keys::KeyAlgorithm,
    pin::PinSource,
    pool::{PoolSettings, SessionPool},
    pqc_fallback::SoftwarePqcFallback,
    sign::{ecdsa_hash, SignatureScheme},
    signer::{CaSigner, HsmKeySigner, KeyCustody},
    uri::Pkcs11Uri,
};

/// Why the engine or a CA could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// No provider could be chosen.
    #[error(transparent)]
    Provider(#[from] SelectError),
    /// The HSM refused.
    #[error(transparent)]
    Hsm(#[from] HsmError),
    /// A CA certificate could not be read.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// A CA's configuration cannot work.
    #[error("CA {ca}: {reason}")]
    Ca {
        /// The CA id.
        ca: String,
        /// Why.
        reason: String,
    },
}

fn ca_error(ca: &CaConfig, reason: impl Into<String>) -> StartError {
    StartError::Ca {
        ca: ca.id.clone(),
        reason: reason.into(),
    }
}

/// The running engine: one token, one pool.
pub struct HsmEngine {
    pool: Arc<SessionPool>,
    chosen_by: ChosenBy,
    health_interval: Duration,
}

/// A CA's key, opened, before any certificate is checked.
pub struct OpenedKey {
    /// The signing key.
    pub signer: CaSigner,
    /// Algorithm and size.
    pub algorithm: KeyAlgorithm,
    /// The scheme it signs with.
    pub scheme: SignatureScheme,
    /// The mechanism, or "software ML-DSA".
    pub mechanism: String,
    /// Its public key, DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// Warnings for the operator.
    pub warnings: Vec<String>,
}

/// One CA's key, opened and checked against its certificate.
pub struct CaKey {
    /// The CA id.
    pub ca_id: String,
    /// The signing key.
    pub signer: CaSigner,
    /// Algorithm and size.
    pub algorithm: KeyAlgorithm,
    /// The scheme it signs certificates with.
    pub scheme: SignatureScheme,
    /// The mechanism, or "software ML-DSA".
    pub mechanism: String,
    /// Hardware or software.
    pub custody: KeyCustody,
    /// Warnings for the operator (an extractable key...).
    pub warnings: Vec<String>,
    /// The CA certificate chain, CA first.
    pub chain: Vec<x509_cert::Certificate>,
}

fn pin_source(config: &Config) -> PinSource {
    let hsm = &config.hsm;
    if let Some(name) = &hsm.pin_env {
        PinSource::Env(name.clone())
    } else if let Some(path) = &hsm.pin_file {
        PinSource::File(path.clone())
    } else if let Some(pin) = &hsm.pin {
        tracing::warn!("[hsm] pin is written in the configuration file: acceptable for development only; use pin_env or pin_file");
        PinSource::Literal(pin.clone())
    } else {
        PinSource::None
    }
}

/// The token to use: `[hsm] token_label` / `slot`, else the `token=` /
/// `slot-id=` / `serial=` of the CA key URIs (all of which must agree).
fn token_selector(config: &Config) -> Result<TokenSelector, StartError> {
    let mut sel = TokenSelector {
        label: config.hsm.token_label.clone(),
        slot: config.hsm.slot,
        serial: None,
    };
    for ca in config.ca.iter().filter(|c| !c.key.is_empty()) {
        let uri: Pkcs11Uri = ca
            .key
            .parse()
            .map_err(|e| ca_error(ca, format!("key {:?}: {e}", ca.key)))?;
        let slot = uri.slot_id.or(ca.hsm_slot);
        for (have, want, what) in [
            (&mut sel.label, uri.token.clone(), "token"),
            (&mut sel.serial, uri.serial.clone(), "serial"),
        ] {
            match (have.as_ref(), want) {
                (Some(h), Some(w)) if *h != w => {
                    return Err(ca_error(
                        ca,
                        format!(
                            "key names {what} {w:?}, but kipuka serves all CAs from {what} {h:?}"
                        ),
                    ))
                }
                (None, Some(w)) => *have = Some(w),
                _ => {}
            }
        }
        match (sel.slot, slot) {
            (Some(h), Some(w)) if h != w => {
                return Err(ca_error(
                    ca,
                    format!("key is in slot {w}, but kipuka serves all CAs from slot {h}"),
                ))
            }
            (None, Some(w)) => sel.slot = Some(w),
            _ => {}
        }
    }
    Ok(sel)
}

impl HsmEngine {
    /// Chooses the provider and starts the pool (opening the first session
    /// and logging in). Blocking: call before the async server starts.
    pub fn start(
        config: &Config,
        registry: &PluginRegistry,
    ) -> Result<(HsmEngine, Arc<VendorProfile>), StartError> {
        let library = config.hsm.library.as_deref();
        let (profile, chosen_by) = select_provider(
            registry,
            config.hsm.provider.as_deref(),
            library,
            |lib| {
                // The library reads `[hsm.env]` (KRYOPTIC_CONF, CS_PKCS11_R3_CFG...)
                // in C_Initialize, also when only asked who made it.
                super::env::apply_configured_env(&config.hsm.env);
                Pkcs11Context::manufacturer_of(lib).map_err(|reason| {
                    // Which vendor it is, is the question; but a library
                    // without its environment usually fails right here.
                    let unset: Vec<String> = registry
                        .names()
                        .into_iter()
                        .filter_map(|n| registry.get(n))
                        .flat_map(|p| {
                            p.env
                                .iter()
                                .filter(|v| v.required && std::env::var_os(&v.name).is_none())
                                .map(move |v| format!("{} ({})", v.name, p.name))
                        })
                        .collect();
                    if unset.is_empty() {
                        reason
                    } else {
                        format!(
                            "{reason}; variables that loaded plugins' libraries require are unset: {} (set them in the environment or [hsm.env], or set [hsm] provider)",
                            unset.join(", ")
                        )
                    }
                })
            },
        )?;
        let profile = Arc::new(profile.clone());
        let user_type = config
            .hsm
            .login_user_type()
            .map_err(|e| HsmError::Pin(e.to_string()))?
            .unwrap_or(profile.login_user_type);
        let ctx = Arc::new(Pkcs11Context::open(
            library,
            profile.clone(),
            &config.hsm.env,
            token_selector(config)?,
        )?);
        let pool = SessionPool::start(
            ctx,
            pin_source(config),
            user_type,
            PoolSettings {
                size: config.hsm_pool_size() as usize,
                acquire_timeout: Duration::from_millis(config.hsm.acquire_timeout_ms),
                operation_timeout: Duration::from_millis(config.hsm.operation_timeout_ms),
                thresholds: HealthThresholds {
                    degraded_after: config.hsm.degraded_after_errors,
                    unavailable_after: config.hsm.unavailable_after_errors,
                },
            },
        )?;
        let health_interval = pool.check_interval(Duration::from_secs(
            config.hsm.health_check_interval_secs.max(1),
        ));
        Ok((
            HsmEngine {
                pool,
                chosen_by,
                health_interval,
            },
            profile,
        ))
    }

    /// The session pool.
    pub fn pool(&self) -> &Arc<SessionPool> {
        &self.pool
    }

    /// How the provider was chosen.
    pub fn chosen_by(&self) -> ChosenBy {
        self.chosen_by
    }

    /// Health-check interval in force.
    pub fn health_interval(&self) -> Duration {
        self.health_interval
    }

    /// Starts the periodic health check on the current tokio runtime.
    pub fn spawn_health_checks(&self) -> tokio::task::JoinHandle<()> {
        let pool = self.pool.clone();
        let every = self.health_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                pool.health_check().await;
            }
        })
    }

    /// Opens the key of `ca`, chooses its mechanism and checks that it
    /// matches the public key of the CA certificate. Blocking.
    pub fn open_ca(&self, ca: &CaConfig) -> Result<CaKey, StartError> {
        let chain = load_chain(&ca.cert, &ca.chain)?;
        let cert_spki = spki_der(&chain[0]);
        let key = self.open_key(ca)?;
        if key.spki != cert_spki {
            return Err(ca_error(
                ca,
                format!("the certificate {} does not match the key: its public key differs from the key's", ca.cert.display()),
            ));
        }
        Ok(CaKey {
            ca_id: ca.id.clone(),
            custody: key.signer.custody(),
            signer: key.signer,
            algorithm: key.algorithm,
            scheme: key.scheme,
            mechanism: key.mechanism,
            warnings: key.warnings,
            chain,
        })
    }

    /// Opens the key of `ca` without its certificate (for `kipuka ca init`,
    /// which makes the certificate). Blocking.
    pub fn open_key(&self, ca: &CaConfig) -> Result<OpenedKey, StartError> {
        let profile = self.pool.context().profile();
        let mut warnings = Vec::new();
        let (signer, algorithm, scheme, mechanism, spki) = match (
            &ca.software_key,
            ca.key.is_empty(),
        ) {
            (Some(path), true) => {
                if !profile.ml_dsa.software_fallback {
                    return Err(ca_error(
                        ca,
                        format!(
                            "plugin {} does not allow the software ML-DSA fallback",
                            profile.name
                        ),
                    ));
                }
                let key = match (
                    &ca.software_key_passphrase_env,
                    &ca.software_key_passphrase_file,
                ) {
                    (Some(env), None) => SoftwarePqcFallback::load_from_env(path, env),
                    (None, Some(file)) => {
                        let passphrase = super::pin::read_secret_file(file, "passphrase file")
                            .map_err(|e| ca_error(ca, e))?;
                        SoftwarePqcFallback::load(path, &passphrase)
                    }
                    _ => {
                        return Err(ca_error(
                            ca,
                            "software_key needs one of software_key_passphrase_env or software_key_passphrase_file",
                        ))
                    }
                }
                .map_err(|e| ca_error(ca, e.to_string()))?;
                if profile.ml_dsa.native != MlDsaAccess::NONE {
                    warnings.push(format!(
                        "{} can sign ML-DSA in the HSM ({}), yet this CA's key is held in software",
                        profile.name, profile.ml_dsa.native
                    ));
                }
                let spki = key.public_key_spki_der();
                let set = key.parameter_set();
                (
                    CaSigner::Software(Arc::new(key)),
                    KeyAlgorithm::MlDsa { set },
                    SignatureScheme::MlDsa,
                    "software ML-DSA (SoftwarePqcFallback)".to_string(),
                    spki,
                )
            }
            (None, false) => {
                let uri: Pkcs11Uri = ca
                    .key
                    .parse()
                    .map_err(|e| ca_error(ca, format!("key {:?}: {e}", ca.key)))?;
                let (info, signer) =
                    HsmKeySigner::open_choosing(&self.pool, &uri, |alg| scheme_for(ca, alg))?;
                let scheme = scheme_for(ca, info.algorithm);
                let signer = signer.ok_or_else(|| {
                    ca_error(
                        ca,
                        format!(
                            "the token cannot sign ML-DSA (plugin {}: native {}); configure software_key for the software fallback",
                            profile.name, profile.ml_dsa.native
                        ),
                    )
                })?;
                if info.extractable {
                    warnings.push(format!(
                        "CA key {uri} is extractable (CKA_EXTRACTABLE=true): it can leave the HSM"
                    ));
                }
                if !info.sensitive {
                    warnings.push(format!(
                        "CA key {uri} is not sensitive (CKA_SENSITIVE=false)"
                    ));
                }
                let mechanism = signer.mechanism().mechanism().to_string();
                (
                    CaSigner::Hsm(Box::new(signer)),
                    info.algorithm,
                    scheme,
                    mechanism,
                    info.public_key_spki.clone(),
                )
            }
            (Some(_), false) => {
                return Err(ca_error(ca, "set either key or software_key, not both"))
            }
            (None, true) => {
                return Err(ca_error(
                    ca,
                    "no key: set key (a pkcs11: URI) or software_key",
                ))
            }
        };
        Ok(OpenedKey {
            signer,
            algorithm,
            scheme,
            mechanism,
            spki,
            warnings,
        })
    }
}

/// The scheme for `ca`'s key: RSA from the configuration, ECDSA from the
/// curve, ML-DSA from the parameter set.
fn scheme_for(ca: &CaConfig, algorithm: KeyAlgorithm) -> SignatureScheme {
    let hash = match ca.hash {
        HashChoice::Sha256 => HashAlg::SHA256,
        HashChoice::Sha384 => HashAlg::SHA384,
        HashChoice::Sha512 => HashAlg::SHA512,
    };
    match algorithm {
        KeyAlgorithm::Rsa { .. } => match ca.rsa_scheme {
            RsaScheme::Pkcs1 => SignatureScheme::RsaPkcs1(hash),
            RsaScheme::Pss => SignatureScheme::RsaPss(hash),
        },
        KeyAlgorithm::Ec { curve } => SignatureScheme::Ecdsa(ecdsa_hash(curve)),
        KeyAlgorithm::MlDsa { .. } => SignatureScheme::MlDsa,
    }
}

/// Loads plugins as the configuration says.
pub fn load_plugins(config: &Config) -> PluginRegistry {
    use crate::plugins::{default_sources, explicit_sources};
    let sources = if config.plugins.dirs.is_empty() {
        default_sources()
    } else {
        explicit_sources(&config.plugins.dirs)
    };
    PluginRegistry::load(&sources, &config.plugins.files)
}

/// For `kipuka check` output.
pub fn describe_library(library: Option<&Path>, profile: &VendorProfile) -> String {
    library
        .map(|l| l.display().to_string())
        .or_else(|| profile.default_library_path.clone())
        .unwrap_or_else(|| "(none)".into())
}
