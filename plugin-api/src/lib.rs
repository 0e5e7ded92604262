//! # kipuka-plugin-api
//!
//! The stable ABI between the kipuka EST server and its HSM vendor plugins.
//!
//! A plugin is a `cdylib` that describes one HSM vendor as *data*: where the
//! vendor's PKCS#11 library lives, which quirks the host's generic PKCS#11
//! engine must apply ([`ProviderConfig`]), and which mechanisms the vendor
//! supports ([`Mechanism`]). The host does all signing and wrapping itself.
//!
//! Writing a plugin is implementing [`VendorPlugin`] and calling
//! [`export_plugin!`]:
//!
//! ```no_run
//! use kipuka_plugin_api::*;
//!
//! struct Acme;
//! impl VendorPlugin for Acme {
//!     fn identity() -> PluginIdentity {
//!         PluginIdentity::new("acme", "Acme", "Acme HSM 9000", env!("CARGO_PKG_VERSION"))
//!     }
//!     fn default_library_path() -> LibraryPaths {
//!         LibraryPaths::from_pairs(&[("linux", "/opt/acme/lib/libacmepkcs11.so")])
//!     }
//!     fn provider_config() -> ProviderConfig {
//!         ProviderConfig::builder().max_sessions(32).build()
//!     }
//!     fn supported_mechanisms() -> Vec<Mechanism> {
//!         MechanismTable::matrix_baseline(&[HashAlg::SHA256]).build()
//!     }
//! }
//! export_plugin!(Acme);
//! # fn main() {}
//! ```
//!
//! ## Compatibility promise
//! The root module [`PluginModV1`] is frozen at ABI version [`ABI_VERSION`].
//! A host of ABI major version 1 loads every plugin built against any 1.x
//! API. A later, incompatible API adds a `PluginModV2` with version 2.0.0; a
//! v2 host tries v2 first, then v1, so older plugins keep working, while an
//! older host refuses a v2 plugin with a message naming both versions.

#![warn(missing_docs)]

mod builder;
mod ids;
#[cfg(feature = "serde")]
mod serde_impls;
mod types;

#[doc(hidden)]
pub use abi_stable;
use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    prefix_type::PrefixTypeTrait,
    sabi_types::VersionStrings,
    std_types::{RResult, RVec},
    StableAbi,
};

pub use builder::{
    MechanismTable, ProviderConfigBuilder, AES_SIZES, NIST_CURVES, RSA_SIZES, SIGNING_HASHES,
};
pub use ids::{
    Curve, HashAlg, IdleBehaviour, InitializeFlags, MechanismId, MlDsaAccess, MlDsaParameterSet,
    Operations, PluginErrorKind, UserType,
};
pub use types::{
    EnvVar, IdleSessionPolicy, LibraryPaths, Mechanism, MlDsaSupport, Pkcs11Version, PlatformPath,
    PluginError, PluginIdentity, ProviderConfig,
};

/// The ABI version of [`PluginModV1`], pinned: it changes only when the
/// layout of the root module or of the data it returns changes, never with
/// the crate's own version.
pub const ABI_VERSION: &str = "1.0.0";

/// Result of every plugin call: the data, or why the plugin could not give it.
pub type PluginResult<T> = RResult<T, PluginError>;

/// Version 1 of the plugin root module: four functions returning data.
///
/// Every function catches panics inside the plugin and reports them as a
/// [`PluginError`] of kind [`PluginErrorKind::PANICKED`]: a panic never
/// crosses the FFI boundary.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModV1Ref)))]
#[sabi(missing_field(panic))]
pub struct PluginModV1 {
    /// Who the plugin is.
    pub identity: extern "C" fn() -> PluginResult<PluginIdentity>,
    /// The vendor's PKCS#11 library, per platform.
    pub default_library_path: extern "C" fn() -> PluginResult<LibraryPaths>,
    /// The quirks the generic PKCS#11 engine applies.
    pub provider_config: extern "C" fn() -> PluginResult<ProviderConfig>,
    /// The mechanisms the vendor supports, with sizes, curves and operations.
    #[sabi(last_prefix_field)]
    pub supported_mechanisms: extern "C" fn() -> PluginResult<RVec<Mechanism>>,
}

impl RootModule for PluginModV1Ref {
    declare_root_module_statics! {PluginModV1Ref}
    const BASE_NAME: &'static str = "kipuka_plugin";
    const NAME: &'static str = "kipuka plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(ABI_VERSION);
}

/// The version of this crate, as opposed to [`ABI_VERSION`].
pub const API_CRATE_VERSION: VersionStrings = package_version_strings!();

/// A vendor, described as data. Implement it on a unit struct and pass the
/// struct to [`export_plugin!`].
pub trait VendorPlugin {
    /// Who the plugin is.
    fn identity() -> PluginIdentity;
    /// Where the vendor installs its PKCS#11 library.
    fn default_library_path() -> LibraryPaths;
    /// The quirks of the vendor.
    fn provider_config() -> ProviderConfig;
    /// The mechanisms the vendor supports.
    fn supported_mechanisms() -> Vec<Mechanism>;
}

#[doc(hidden)]
pub mod __private {
    //! Used by [`export_plugin!`]; not part of the API.
    use super::*;
    use abi_stable::std_types::{RErr, ROk};
    use std::panic::{catch_unwind, AssertUnwindSafe};

    /// Runs `f`, turning a panic into a [`PluginError`].
    pub fn guard<T>(f: impl FnOnce() -> T) -> PluginResult<T> {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(value) => ROk(value),
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic with a non-string payload".to_string());
                RErr(PluginError {
                    kind: PluginErrorKind::PANICKED,
                    message: message.into(),
                })
            }
        }
    }

    extern "C" fn identity<P: VendorPlugin>() -> PluginResult<PluginIdentity> {
        guard(P::identity)
    }
    extern "C" fn default_library_path<P: VendorPlugin>() -> PluginResult<LibraryPaths> {
        guard(P::default_library_path)
    }
    extern "C" fn provider_config<P: VendorPlugin>() -> PluginResult<ProviderConfig> {
        guard(P::provider_config)
    }
    extern "C" fn supported_mechanisms<P: VendorPlugin>() -> PluginResult<RVec<Mechanism>> {
        guard(|| RVec::from(P::supported_mechanisms()))
    }

    /// The root module of plugin `P`.
    pub fn root_module_v1<P: VendorPlugin>() -> PluginModV1Ref {
        PluginModV1 {
            identity: identity::<P>,
            default_library_path: default_library_path::<P>,
            provider_config: provider_config::<P>,
            supported_mechanisms: supported_mechanisms::<P>,
        }
        .leak_into_prefix()
    }
}

/// Exports a [`VendorPlugin`] as the library's abi_stable root module.
///
/// This is what `#[abi_stable::export_root_module]` generates, written with
/// `$crate` paths so that a plugin crate needs no dependency but this one.
/// The static's name is abi_stable 0.11's mangled root-module symbol.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[no_mangle]
        #[allow(non_upper_case_globals)]
        #[doc(hidden)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::abi_stable::library::LibHeader = {
            fn root_module() -> $crate::PluginModV1Ref {
                $crate::__private::root_module_v1::<$plugin>()
            }
            extern "C" fn erased_root_module() -> $crate::abi_stable::library::RootModuleResult {
                $crate::abi_stable::library::__call_root_module_loader(root_module)
            }
            // SAFETY: `erased_root_module` returns a `PluginModV1Ref`, the
            // type the header is built for, exactly as abi_stable's own
            // `#[export_root_module]` does.
            unsafe {
                $crate::abi_stable::library::LibHeader::from_constructor::<$crate::PluginModV1Ref>(
                    erased_root_module,
                    $crate::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_macro_uses_abi_stables_symbol_name() {
        // The macro hard-codes the symbol; abi_stable computes it. They must agree
        // or the host will report every plugin as "not a kipuka plugin".
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
    }

    #[test]
    fn guard_turns_a_panic_into_an_error() {
        let r = __private::guard(|| -> u32 { panic!("boom") });
        match r {
            RResult::RErr(e) => {
                assert_eq!(e.kind, PluginErrorKind::PANICKED);
                assert_eq!(e.message.as_str(), "boom");
            }
            RResult::ROk(_) => panic!("a panic must become an error"),
        }
    }

    #[test]
    fn unknown_values_print_with_their_number() {
        assert_eq!(MechanismId::ECDSA.to_string(), "CKM_ECDSA");
        assert_eq!(
            MechanismId(0x8001_0023).to_string(),
            "MechanismId(0x80010023)"
        );
        assert!(MechanismId(0x8001_0023).is_vendor_defined());
        assert_eq!(
            Operations::SIGN.union(Operations(1 << 20)).names(),
            ["sign", "bit20"]
        );
    }

    #[test]
    fn baseline_covers_the_matrix_rows() {
        let table = MechanismTable::matrix_baseline(&[HashAlg::SHA256]).build();
        let find = |id| {
            table
                .iter()
                .find(|m| m.id == id)
                .expect("mechanism in baseline")
        };
        assert_eq!(find(MechanismId::RSA_PKCS).key_sizes.as_slice(), RSA_SIZES);
        assert_eq!(find(MechanismId::ECDSA).curves.as_slice(), NIST_CURVES);
        assert_eq!(
            find(MechanismId::RSA_PKCS_OAEP).hashes.as_slice(),
            &[HashAlg::SHA256]
        );
        assert!(find(MechanismId::AES_KEY_WRAP)
            .operations
            .contains(Operations::WRAP));
        assert!(find(MechanismId::ECDH1_DERIVE)
            .operations
            .contains(Operations::DERIVE));
    }
}
