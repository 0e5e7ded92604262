//! The data a plugin hands to the host. Every type is `#[repr(C)]` and
//! `StableAbi`; strings and lists are `abi_stable`'s FFI-safe `RString` and
//! `RVec`, so host and plugin may be built by different compilers.

use abi_stable::{
    std_types::{ROption, RString, RVec},
    StableAbi,
};

use crate::ids::{
    Curve, HashAlg, IdleBehaviour, InitializeFlags, MechanismId, MlDsaAccess, MlDsaParameterSet,
    Operations, PluginErrorKind, UserType,
};

/// Who the plugin is.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct PluginIdentity {
    /// Short, unique, lower-case name (`[a-z0-9-]+`), as written in
    /// `[hsm] provider = "..."`: `nshield`, `utimaco`, `kryoptic`, `luna`, `thales-csp`.
    pub name: RString,
    /// The HSM vendor, as a person would write it ("Entrust", "Thales").
    pub vendor: RString,
    /// One line on which products the plugin covers.
    pub description: RString,
    /// The plugin's own version (not the ABI version), e.g. `1.2.0`.
    pub plugin_version: RString,
}

/// An operating system family, for [`PlatformPath`].
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct PlatformPath {
    /// `std::env::consts::OS` of the platform: `linux`, `macos`, `windows`, ...
    pub os: RString,
    /// Absolute path of the vendor's PKCS#11 library on that platform.
    pub path: RString,
}

/// Where the vendor installs its PKCS#11 library, per platform.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Default)]
pub struct LibraryPaths {
    /// One entry per platform the vendor documents.
    pub paths: RVec<PlatformPath>,
}

impl LibraryPaths {
    /// The path for the platform this code runs on, if the vendor gives one.
    pub fn for_current_os(&self) -> Option<&str> {
        self.for_os(std::env::consts::OS)
    }

    /// The path for `os` (a `std::env::consts::OS` value).
    pub fn for_os(&self, os: &str) -> Option<&str> {
        self.paths
            .iter()
            .find(|p| p.os == os)
            .map(|p| p.path.as_str())
    }
}

/// An environment variable the vendor library reads.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct EnvVar {
    /// The variable's name, e.g. `NFAST_HOME`.
    pub name: RString,
    /// The value the vendor uses when it is unset. The host exports it
    /// before `C_Initialize` unless the operator already set the variable.
    pub default: ROption<RString>,
    /// Whether the library refuses to initialise (`C_Initialize` fails)
    /// when the variable is unset and has no default.
    pub required: bool,
    /// What the variable means, for `kipuka plugins inspect`.
    pub description: RString,
}

/// How the vendor's HSM treats idle sessions.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct IdleSessionPolicy {
    /// What happens to an idle session.
    pub behaviour: IdleBehaviour,
    /// Longest interval, in seconds, between two uses of a session that the
    /// host must keep to avoid the vendor closing it (a cheap
    /// `C_GetSessionInfo` counts as a use). `None`: no keep-alive needed.
    pub keepalive_secs: ROption<u32>,
}

/// How the vendor reaches ML-DSA.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct MlDsaSupport {
    /// How the token signs with ML-DSA, if at all.
    pub native: MlDsaAccess,
    /// With [`MlDsaAccess::VENDOR_MECHANISM`]: the vendor's mechanism number.
    pub vendor_mechanism: ROption<MechanismId>,
    /// Whether native support depends on the HSM firmware version; the host
    /// then checks `C_GetMechanismList` before relying on it.
    pub firmware_dependent: bool,
    /// Whether the host may sign with a software-held ML-DSA key
    /// (`SoftwarePqcFallback`) for this vendor when the token cannot.
    pub software_fallback: bool,
}

/// The quirks the host's generic PKCS#11 engine applies for this vendor.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct ProviderConfig {
    /// Prefixes of `CK_INFO.manufacturerID` (from `C_GetInfo`) by which the
    /// host recognises this vendor's library when `[hsm]` names neither a
    /// provider nor a known library path. Compared case-insensitively.
    pub manufacturer_ids: RVec<RString>,
    /// The Cryptoki version the vendor library implements, as `(major, minor)`
    /// of `CK_INFO.cryptokiVersion`.
    pub pkcs11_version: Pkcs11Version,
    /// Environment variables the vendor library reads.
    pub env: RVec<EnvVar>,
    /// `CK_C_INITIALIZE_ARGS.flags` for `C_Initialize`.
    pub initialize_flags: InitializeFlags,
    /// Most sessions the vendor allows at once (per partition / slot).
    /// `None`: no documented limit. The host's pool never exceeds it.
    pub max_sessions: ROption<u32>,
    /// How idle sessions are treated.
    pub idle_sessions: IdleSessionPolicy,
    /// The `CK_USER_TYPE` for `C_Login`.
    pub login_user_type: UserType,
    /// Hashes usable in `CK_RSA_PKCS_OAEP_PARAMS` (hashAlg and the MGF1 of
    /// the same hash). A wrap asking for another hash is refused by the host.
    pub oaep_hashes: RVec<HashAlg>,
    /// How ML-DSA is reached.
    pub ml_dsa: MlDsaSupport,
    /// Longest `CKA_LABEL` the vendor accepts, in bytes; `None` if unlimited.
    pub key_label_max_len: ROption<u32>,
    /// FIPS 140-3 security level of the validated module; `None` if none.
    pub fips_140_3_level: ROption<u8>,
    /// Whether the HSM can be reached over the network (so latency and
    /// connection loss are to be expected).
    pub network_hsm: bool,
    /// Whether CA keys are non-exportable by default (`CKA_EXTRACTABLE =
    /// false`); `false` means the operator must choose it.
    pub non_exportable_by_default: bool,
    /// The vendor's known limitations, one sentence each.
    pub notes: RVec<RString>,
}

/// A PKCS#11 version number (`CK_VERSION`).
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub struct Pkcs11Version {
    /// Major version.
    pub major: u8,
    /// Minor version.
    pub minor: u8,
}

/// One mechanism the vendor supports, with what it supports it for.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct Mechanism {
    /// The `CK_MECHANISM_TYPE`.
    pub id: MechanismId,
    /// Its name (`CKM_...`), so that vendor mechanisms unknown to the host
    /// still print well.
    pub name: RString,
    /// What the mechanism is used for.
    pub operations: Operations,
    /// Key sizes in bits (RSA modulus, AES key); empty if not size-bound.
    pub key_sizes: RVec<u32>,
    /// Curves, for EC mechanisms.
    pub curves: RVec<Curve>,
    /// Hashes, for mechanisms parameterised by one (PSS, OAEP).
    pub hashes: RVec<HashAlg>,
    /// ML-DSA parameter sets, for ML-DSA mechanisms.
    pub parameter_sets: RVec<MlDsaParameterSet>,
}

/// An error from a plugin call.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct PluginError {
    /// What kind of failure.
    pub kind: PluginErrorKind,
    /// What went wrong, for the operator.
    pub message: RString,
}

impl core::fmt::Display for PluginError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}
