//! Builders that keep a vendor plugin to a page of data.
//!
//! The compatibility matrix describes every vendor as the same baseline
//! (RSA 2048–4096, ECDSA P-256–P-521, AES key wrap, ECDH) plus a few
//! differences (OAEP hashes, ML-DSA, session limits). [`MechanismTable`]
//! states the baseline once; each plugin adds what is its own.

use abi_stable::std_types::{ROption, RString, RVec};

use crate::ids::{
    Curve, HashAlg, IdleBehaviour, InitializeFlags, MechanismId, MlDsaAccess, MlDsaParameterSet,
    Operations, UserType,
};
use crate::types::{
    EnvVar, IdleSessionPolicy, LibraryPaths, Mechanism, MlDsaSupport, Pkcs11Version, PlatformPath,
    PluginIdentity, ProviderConfig,
};

/// RSA modulus sizes every vendor of the matrix supports.
pub const RSA_SIZES: &[u32] = &[2048, 3072, 4096];
/// Curves every vendor of the matrix supports.
pub const NIST_CURVES: &[Curve] = &[Curve::P256, Curve::P384, Curve::P521];
/// The hashes kipuka signs with (`RsaHashAlgorithm`).
pub const SIGNING_HASHES: &[HashAlg] = &[HashAlg::SHA256, HashAlg::SHA384, HashAlg::SHA512];
/// AES key sizes for key wrapping and content encryption.
pub const AES_SIZES: &[u32] = &[128, 192, 256];

impl PluginIdentity {
    /// An identity from plain strings.
    pub fn new(name: &str, vendor: &str, description: &str, plugin_version: &str) -> Self {
        PluginIdentity {
            name: name.into(),
            vendor: vendor.into(),
            description: description.into(),
            plugin_version: plugin_version.into(),
        }
    }
}

impl LibraryPaths {
    /// Library paths from `(os, path)` pairs, `os` as in `std::env::consts::OS`.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        LibraryPaths {
            paths: pairs
                .iter()
                .map(|(os, path)| PlatformPath {
                    os: (*os).into(),
                    path: (*path).into(),
                })
                .collect(),
        }
    }
}

/// A list of [`Mechanism`]s, built from named groups.
#[derive(Clone, Debug, Default)]
pub struct MechanismTable {
    mechanisms: Vec<Mechanism>,
}

fn mechanism(id: MechanismId, operations: Operations) -> Mechanism {
    Mechanism {
        id,
        name: id
            .name()
            .map(RString::from)
            .unwrap_or_else(|| format!("{id}").into()),
        operations,
        key_sizes: RVec::new(),
        curves: RVec::new(),
        hashes: RVec::new(),
        parameter_sets: RVec::new(),
    }
}

const SIGN_VERIFY: Operations = Operations::SIGN.union(Operations::VERIFY);
const WRAP_UNWRAP: Operations = Operations::WRAP.union(Operations::UNWRAP);
const ENCRYPT_DECRYPT: Operations = Operations::ENCRYPT.union(Operations::DECRYPT);

impl MechanismTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// What every vendor of the compatibility matrix supports: RSA and EC key
    /// generation, RSA PKCS#1 v1.5 and PSS signing (raw and hash-and-sign),
    /// ECDSA on the NIST curves, AES key generation and AES-KW, ECDH1 derive,
    /// and RSA-OAEP with the vendor's `oaep_hashes`.
    pub fn matrix_baseline(oaep_hashes: &[HashAlg]) -> Self {
        Self::new()
            .rsa_key_pair_gen(RSA_SIZES)
            .rsa_pkcs1_signing(RSA_SIZES)
            .rsa_pss_signing(RSA_SIZES, SIGNING_HASHES)
            .ec_key_pair_gen(NIST_CURVES)
            .ecdsa_signing(NIST_CURVES)
            .aes_key_gen(AES_SIZES)
            .aes_key_wrap(AES_SIZES)
            .rsa_oaep(RSA_SIZES, oaep_hashes)
            .ecdh1_derive(NIST_CURVES)
    }

    /// Adds one mechanism as given.
    pub fn with(mut self, mechanism: Mechanism) -> Self {
        match self.mechanisms.iter_mut().find(|m| m.id == mechanism.id) {
            Some(existing) => *existing = mechanism,
            None => self.mechanisms.push(mechanism),
        }
        self
    }

    /// Removes a mechanism the vendor lacks.
    pub fn without(mut self, id: MechanismId) -> Self {
        self.mechanisms.retain(|m| m.id != id);
        self
    }

    fn sized(self, id: MechanismId, ops: Operations, sizes: &[u32]) -> Self {
        let mut m = mechanism(id, ops);
        m.key_sizes = sizes.iter().copied().collect();
        self.with(m)
    }

    fn curved(self, id: MechanismId, ops: Operations, curves: &[Curve]) -> Self {
        let mut m = mechanism(id, ops);
        m.curves = curves.iter().copied().collect();
        self.with(m)
    }

    /// `CKM_RSA_PKCS_KEY_PAIR_GEN` for these modulus sizes.
    pub fn rsa_key_pair_gen(self, sizes: &[u32]) -> Self {
        self.sized(
            MechanismId::RSA_PKCS_KEY_PAIR_GEN,
            Operations::GENERATE_KEY_PAIR,
            sizes,
        )
    }

    /// `CKM_RSA_PKCS` (sign over a host-built DigestInfo) and
    /// `CKM_SHA{256,384,512}_RSA_PKCS`.
    pub fn rsa_pkcs1_signing(self, sizes: &[u32]) -> Self {
        [
            MechanismId::SHA256_RSA_PKCS,
            MechanismId::SHA384_RSA_PKCS,
            MechanismId::SHA512_RSA_PKCS,
        ]
        .into_iter()
        .fold(
            self.sized(MechanismId::RSA_PKCS, SIGN_VERIFY, sizes),
            |t, id| t.sized(id, SIGN_VERIFY, sizes),
        )
    }

    /// `CKM_RSA_PKCS_PSS` with these hashes and `CKM_SHA*_RSA_PKCS_PSS`.
    pub fn rsa_pss_signing(self, sizes: &[u32], hashes: &[HashAlg]) -> Self {
        let mut pss = mechanism(MechanismId::RSA_PKCS_PSS, SIGN_VERIFY);
        pss.key_sizes = sizes.iter().copied().collect();
        pss.hashes = hashes.iter().copied().collect();
        [
            MechanismId::SHA256_RSA_PKCS_PSS,
            MechanismId::SHA384_RSA_PKCS_PSS,
            MechanismId::SHA512_RSA_PKCS_PSS,
        ]
        .into_iter()
        .fold(self.with(pss), |t, id| t.sized(id, SIGN_VERIFY, sizes))
    }

    /// `CKM_EC_KEY_PAIR_GEN` on these curves.
    pub fn ec_key_pair_gen(self, curves: &[Curve]) -> Self {
        self.curved(
            MechanismId::EC_KEY_PAIR_GEN,
            Operations::GENERATE_KEY_PAIR,
            curves,
        )
    }

    /// `CKM_ECDSA` (over a host-computed hash) on these curves.
    pub fn ecdsa_signing(self, curves: &[Curve]) -> Self {
        self.curved(MechanismId::ECDSA, SIGN_VERIFY, curves)
    }

    /// `CKM_ECDSA_SHA{256,384,512}` (hash inside the token) on these curves.
    pub fn ecdsa_hash_and_sign(self, curves: &[Curve]) -> Self {
        [
            MechanismId::ECDSA_SHA256,
            MechanismId::ECDSA_SHA384,
            MechanismId::ECDSA_SHA512,
        ]
        .into_iter()
        .fold(self, |t, id| t.curved(id, SIGN_VERIFY, curves))
    }

    /// `CKM_AES_KEY_GEN` for these key sizes.
    pub fn aes_key_gen(self, sizes: &[u32]) -> Self {
        self.sized(MechanismId::AES_KEY_GEN, Operations::GENERATE, sizes)
    }

    /// `CKM_AES_KEY_WRAP` (RFC 3394) with keys of these sizes.
    pub fn aes_key_wrap(self, sizes: &[u32]) -> Self {
        self.sized(
            MechanismId::AES_KEY_WRAP,
            WRAP_UNWRAP.union(ENCRYPT_DECRYPT),
            sizes,
        )
    }

    /// `CKM_AES_CBC_PAD` and `CKM_AES_GCM` for content encryption; `wrap`
    /// says whether the token also accepts them in `C_WrapKey`, so a
    /// generated private key can be encrypted without leaving the token.
    pub fn aes_content_encryption(self, sizes: &[u32], wrap: bool) -> Self {
        let ops = if wrap {
            ENCRYPT_DECRYPT.union(WRAP_UNWRAP)
        } else {
            ENCRYPT_DECRYPT
        };
        self.sized(MechanismId::AES_CBC_PAD, ops, sizes)
            .sized(MechanismId::AES_GCM, ops, sizes)
    }

    /// `CKM_RSA_PKCS_OAEP` with these hashes (hashAlg = MGF1 hash).
    pub fn rsa_oaep(self, sizes: &[u32], hashes: &[HashAlg]) -> Self {
        let mut m = mechanism(
            MechanismId::RSA_PKCS_OAEP,
            WRAP_UNWRAP.union(ENCRYPT_DECRYPT),
        );
        m.key_sizes = sizes.iter().copied().collect();
        m.hashes = hashes.iter().copied().collect();
        self.with(m)
    }

    /// `CKM_ECDH1_DERIVE` on these curves.
    pub fn ecdh1_derive(self, curves: &[Curve]) -> Self {
        self.curved(MechanismId::ECDH1_DERIVE, Operations::DERIVE, curves)
    }

    /// ML-DSA signing through `sign` (standard `CKM_ML_DSA` or a vendor
    /// mechanism) and key generation through `keygen`, for these parameter sets.
    pub fn ml_dsa(
        self,
        sign: MechanismId,
        keygen: Option<MechanismId>,
        sets: &[MlDsaParameterSet],
    ) -> Self {
        let with_sets = |id, ops| {
            let mut m = mechanism(id, ops);
            m.parameter_sets = sets.iter().copied().collect();
            m
        };
        let table = self.with(with_sets(sign, SIGN_VERIFY));
        match keygen {
            Some(id) => table.with(with_sets(id, Operations::GENERATE_KEY_PAIR)),
            None => table,
        }
    }

    /// Gives a vendor mechanism a readable name.
    pub fn named(mut self, id: MechanismId, name: &str) -> Self {
        if let Some(m) = self.mechanisms.iter_mut().find(|m| m.id == id) {
            m.name = name.into();
        }
        self
    }

    /// The finished list.
    pub fn build(self) -> Vec<Mechanism> {
        self.mechanisms
    }
}

/// Builds a [`ProviderConfig`], starting from what is true of most vendors:
/// PKCS#11 2.40, `CKF_OS_LOCKING_OK`, `CKU_USER`, OAEP with SHA-256, no
/// session limit, idle sessions kept, no native ML-DSA but the software
/// fallback allowed, non-exportable keys by default.
#[derive(Clone, Debug)]
pub struct ProviderConfigBuilder {
    config: ProviderConfig,
}

impl ProviderConfig {
    /// Starts a builder; see [`ProviderConfigBuilder`] for the defaults.
    pub fn builder() -> ProviderConfigBuilder {
        ProviderConfigBuilder {
            config: ProviderConfig {
                manufacturer_ids: RVec::new(),
                pkcs11_version: Pkcs11Version {
                    major: 2,
                    minor: 40,
                },
                env: RVec::new(),
                initialize_flags: InitializeFlags::OS_LOCKING_OK,
                max_sessions: ROption::RNone,
                idle_sessions: IdleSessionPolicy {
                    behaviour: IdleBehaviour::KEPT,
                    keepalive_secs: ROption::RNone,
                },
                login_user_type: UserType::USER,
                oaep_hashes: RVec::from(vec![HashAlg::SHA256]),
                ml_dsa: MlDsaSupport {
                    native: MlDsaAccess::NONE,
                    vendor_mechanism: ROption::RNone,
                    firmware_dependent: false,
                    software_fallback: true,
                },
                key_label_max_len: ROption::RNone,
                fips_140_3_level: ROption::RNone,
                network_hsm: false,
                non_exportable_by_default: true,
                notes: RVec::new(),
            },
        }
    }
}

impl ProviderConfigBuilder {
    /// A `CK_INFO.manufacturerID` prefix that identifies the vendor's library.
    pub fn manufacturer_id(mut self, prefix: &str) -> Self {
        self.config.manufacturer_ids.push(prefix.into());
        self
    }

    /// The Cryptoki version of the vendor library.
    pub fn pkcs11_version(mut self, major: u8, minor: u8) -> Self {
        self.config.pkcs11_version = Pkcs11Version { major, minor };
        self
    }

    /// An environment variable the library reads.
    pub fn env(
        mut self,
        name: &str,
        default: Option<&str>,
        required: bool,
        description: &str,
    ) -> Self {
        self.config.env.push(EnvVar {
            name: name.into(),
            default: default.map(RString::from).into(),
            required,
            description: description.into(),
        });
        self
    }

    /// `CK_C_INITIALIZE_ARGS.flags`.
    pub fn initialize_flags(mut self, flags: InitializeFlags) -> Self {
        self.config.initialize_flags = flags;
        self
    }

    /// The vendor's limit on concurrent sessions.
    pub fn max_sessions(mut self, max: u32) -> Self {
        self.config.max_sessions = ROption::RSome(max);
        self
    }

    /// The HSM closes idle sessions after an administrator-set timeout; the
    /// host keeps each session used at least every `keepalive_secs`.
    pub fn idle_sessions_expire(mut self, keepalive_secs: u32) -> Self {
        self.config.idle_sessions = IdleSessionPolicy {
            behaviour: IdleBehaviour::CLOSED_AFTER_CONFIGURED_TIMEOUT,
            keepalive_secs: ROption::RSome(keepalive_secs),
        };
        self
    }

    /// The `CK_USER_TYPE` for `C_Login`.
    pub fn login_user_type(mut self, user: UserType) -> Self {
        self.config.login_user_type = user;
        self
    }

    /// The hashes usable with RSA-OAEP.
    pub fn oaep_hashes(mut self, hashes: &[HashAlg]) -> Self {
        self.config.oaep_hashes = hashes.iter().copied().collect();
        self
    }

    /// How ML-DSA is reached natively.
    pub fn ml_dsa(
        mut self,
        native: MlDsaAccess,
        vendor_mechanism: Option<MechanismId>,
        firmware_dependent: bool,
    ) -> Self {
        self.config.ml_dsa.native = native;
        self.config.ml_dsa.vendor_mechanism = vendor_mechanism.into();
        self.config.ml_dsa.firmware_dependent = firmware_dependent;
        self
    }

    /// Longest `CKA_LABEL` in bytes.
    pub fn key_label_max_len(mut self, len: u32) -> Self {
        self.config.key_label_max_len = ROption::RSome(len);
        self
    }

    /// FIPS 140-3 level of the validated module.
    pub fn fips_140_3_level(mut self, level: u8) -> Self {
        self.config.fips_140_3_level = ROption::RSome(level);
        self
    }

    /// The HSM can be reached over the network.
    pub fn network_hsm(mut self) -> Self {
        self.config.network_hsm = true;
        self
    }

    /// Keys are exportable unless the operator says otherwise.
    pub fn exportable_by_default(mut self) -> Self {
        self.config.non_exportable_by_default = false;
        self
    }

    /// A known limitation.
    pub fn note(mut self, note: &str) -> Self {
        self.config.notes.push(note.into());
        self
    }

    /// The finished configuration.
    pub fn build(self) -> ProviderConfig {
        self.config
    }
}
