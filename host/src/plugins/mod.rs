//! Vendor plugins: discovery, loading, the registry, provider selection.
//!
//! A plugin is a `cdylib` exporting the `kipuka-plugin-api` root module. It
//! describes one HSM vendor as data; the generic PKCS#11 engine (`hsm`)
//! applies what it says.

mod discovery;
mod loader;
mod profile;
mod registry;
mod select;

pub use discovery::{
    default_sources, explicit_sources, is_shared_library, PluginSource, BUILT_PLUGIN_PREFIX,
    SYSTEM_PLUGIN_DIR,
};
pub use loader::{host_abi_version, load_plugin, PluginLoadError};
pub use profile::{EnvVarSpec, IdleSessions, MechanismProfile, MlDsaProfile, VendorProfile};
pub use registry::PluginRegistry;
pub use select::{select_provider, ChosenBy, SelectError};
