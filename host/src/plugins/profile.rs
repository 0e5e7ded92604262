//! What one plugin declares, copied out of the plugin into host types.
//!
//! A plugin is data: the host calls its four functions once at load time
//! and keeps the answers here. Nothing calls into a plugin afterwards, so a
//! plugin cannot misbehave in the middle of a request.

use std::{collections::BTreeMap, path::PathBuf};

use kipuka_plugin_api::{
    Curve, HashAlg, IdleBehaviour, InitializeFlags, LibraryPaths, Mechanism, MechanismId,
    MlDsaAccess, MlDsaParameterSet, MlDsaSupport, Operations, PluginIdentity, ProviderConfig,
    UserType,
};
use serde::Serialize;

/// Everything a plugin declares, plus where it was loaded from.
#[derive(Clone, Debug, Serialize)]
pub struct VendorProfile {
    /// Unique plugin name (`nshield`, `luna`, ...).
    pub name: String,
    /// Vendor as a person writes it.
    pub vendor: String,
    /// What the plugin covers.
    pub description: String,
    /// The plugin's own version.
    pub plugin_version: String,
    /// The ABI version the plugin was built against.
    pub abi_version: String,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// The vendor library for this platform, if the vendor gives one.
    pub default_library_path: Option<String>,
    /// Whether that library exists on this machine.
    pub default_library_exists: bool,
    /// Library paths for every platform the plugin names.
    pub library_paths: BTreeMap<String, String>,
    /// `CK_INFO.manufacturerID` prefixes that identify the vendor's library.
    pub manufacturer_ids: Vec<String>,
    /// The Cryptoki version, e.g. `2.40`.
    pub pkcs11_version: String,
    /// Environment the vendor library reads.
    pub env: Vec<EnvVarSpec>,
    /// `C_Initialize` flags.
    pub initialize_flags: InitializeFlags,
    /// Most concurrent sessions; `None` (JSON `null`) when unlimited.
    pub max_sessions: Option<u32>,
    /// How idle sessions are treated.
    pub idle_sessions: IdleSessions,
    /// `C_Login` user type.
    pub login_user_type: UserType,
    /// Hashes usable with RSA-OAEP.
    pub oaep_hashes: Vec<HashAlg>,
    /// How ML-DSA is reached.
    pub ml_dsa: MlDsaProfile,
    /// Longest key label, in bytes.
    pub key_label_max_len: Option<u32>,
    /// FIPS 140-3 level, if validated.
    pub fips_140_3_level: Option<u8>,
    /// Whether the HSM is reached over a network.
    pub network_hsm: bool,
    /// Whether keys are non-exportable by default.
    pub non_exportable_by_default: bool,
    /// Known limitations.
    pub notes: Vec<String>,
    /// Supported mechanisms.
    pub mechanisms: Vec<MechanismProfile>,
}

/// An environment variable the vendor library reads.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EnvVarSpec {
    /// Variable name.
    pub name: String,
    /// Value exported when the operator has not set it.
    pub default: Option<String>,
    /// Whether the library fails to start without it.
    pub required: bool,
    /// What it means.
    pub description: String,
}

/// Idle-session behaviour.
#[derive(Clone, Debug, Serialize)]
pub struct IdleSessions {
    /// What happens to idle sessions.
    pub behaviour: IdleBehaviour,
    /// Longest gap between uses of a session, if the vendor needs keep-alives.
    pub keepalive_secs: Option<u32>,
}

/// ML-DSA support.
#[derive(Clone, Debug, Serialize)]
pub struct MlDsaProfile {
    /// How the token reaches ML-DSA natively.
    pub native: MlDsaAccess,
    /// The vendor mechanism, when native access is through one.
    pub vendor_mechanism: Option<MechanismId>,
    /// Whether native support depends on firmware.
    pub firmware_dependent: bool,
    /// Whether the software fallback may be used.
    pub software_fallback: bool,
}

impl MlDsaProfile {
    /// One word for tables: `pkcs11-3.2`, `vendor-mechanism*` (firmware-dependent),
    /// `software`, or `none`.
    pub fn summary(&self) -> String {
        match (self.native, self.software_fallback) {
            (MlDsaAccess::NONE, true) => "software".to_string(),
            (MlDsaAccess::NONE, false) => "none".to_string(),
            (native, _) if self.firmware_dependent => format!("{native}*"),
            (native, _) => native.to_string(),
        }
    }
}

/// One mechanism.
#[derive(Clone, Debug, Serialize)]
pub struct MechanismProfile {
    /// `CKM_...` name.
    pub name: String,
    /// The `CK_MECHANISM_TYPE` number.
    pub id: MechanismId,
    /// What it is used for.
    pub operations: Operations,
    /// Key sizes in bits.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub key_sizes: Vec<u32>,
    /// Curves.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub curves: Vec<Curve>,
    /// Hashes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<HashAlg>,
    /// ML-DSA parameter sets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parameter_sets: Vec<MlDsaParameterSet>,
}

impl VendorProfile {
    /// Builds a profile from the four answers of a plugin.
    pub fn from_plugin(
        path: PathBuf,
        abi_version: String,
        identity: PluginIdentity,
        paths: LibraryPaths,
        config: ProviderConfig,
        mechanisms: Vec<Mechanism>,
    ) -> Self {
        let default_library_path = paths.for_current_os().map(str::to_string);
        let default_library_exists = default_library_path
            .as_deref()
            .is_some_and(|p| std::path::Path::new(p).exists());
        let MlDsaSupport {
            native,
            vendor_mechanism,
            firmware_dependent,
            software_fallback,
        } = config.ml_dsa;
        VendorProfile {
            name: identity.name.into_string(),
            vendor: identity.vendor.into_string(),
            description: identity.description.into_string(),
            plugin_version: identity.plugin_version.into_string(),
            abi_version,
            path,
            default_library_path,
            default_library_exists,
            library_paths: paths
                .paths
                .into_iter()
                .map(|p| (p.os.into_string(), p.path.into_string()))
                .collect(),
            manufacturer_ids: config
                .manufacturer_ids
                .into_iter()
                .map(|s| s.into_string())
                .collect(),
            pkcs11_version: format!(
                "{}.{}",
                config.pkcs11_version.major, config.pkcs11_version.minor
            ),
            env: config
                .env
                .into_iter()
                .map(|e| EnvVarSpec {
                    name: e.name.into_string(),
                    default: e.default.into_option().map(|d| d.into_string()),
                    required: e.required,
                    description: e.description.into_string(),
                })
                .collect(),
            initialize_flags: config.initialize_flags,
            max_sessions: config.max_sessions.into_option(),
            idle_sessions: IdleSessions {
                behaviour: config.idle_sessions.behaviour,
                keepalive_secs: config.idle_sessions.keepalive_secs.into_option(),
            },
            login_user_type: config.login_user_type,
            oaep_hashes: config.oaep_hashes.into_vec(),
            ml_dsa: MlDsaProfile {
                native,
                vendor_mechanism: vendor_mechanism.into_option(),
                firmware_dependent,
                software_fallback,
            },
            key_label_max_len: config.key_label_max_len.into_option(),
            fips_140_3_level: config.fips_140_3_level.into_option(),
            network_hsm: config.network_hsm,
            non_exportable_by_default: config.non_exportable_by_default,
            notes: config.notes.into_iter().map(|n| n.into_string()).collect(),
            mechanisms: mechanisms
                .into_iter()
                .map(|m| MechanismProfile {
                    name: m.name.into_string(),
                    id: m.id,
                    operations: m.operations,
                    key_sizes: m.key_sizes.into_vec(),
                    curves: m.curves.into_vec(),
                    hashes: m.hashes.into_vec(),
                    parameter_sets: m.parameter_sets.into_vec(),
                })
                .collect(),
        }
    }

    /// The declared mechanism `id`, if any.
    pub fn mechanism(&self, id: MechanismId) -> Option<&MechanismProfile> {
        self.mechanisms.iter().find(|m| m.id == id)
    }

    /// Whether the vendor declares `id` for all of `operations`.
    pub fn supports(&self, id: MechanismId, operations: Operations) -> bool {
        self.mechanism(id)
            .is_some_and(|m| m.operations.contains(operations))
    }

    /// Whether `manufacturer` (a `CK_INFO.manufacturerID`) names this vendor.
    pub fn claims_manufacturer(&self, manufacturer: &str) -> bool {
        let manufacturer = manufacturer.trim().to_ascii_lowercase();
        self.manufacturer_ids
            .iter()
            .any(|id| manufacturer.starts_with(&id.to_ascii_lowercase()))
    }
}
