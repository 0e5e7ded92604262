//! Loading one plugin file.
//!
//! Each file is loaded with `lib_header_from_path(..).init_root_module()`:
//! abi_stable's `RootModule::load_from_file` caches one module per root
//! module *type*, so with it the second vendor would silently be the first.

use std::path::{Path, PathBuf};

use abi_stable::{
    library::{lib_header_from_path, LibraryError, RootModule},
    std_types::RResult,
};
use kipuka_plugin_api::{PluginError, PluginModV1Ref, PluginResult};

use super::profile::VendorProfile;

/// Why a plugin file was refused. Every message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginLoadError {
    /// The file does not exist.
    #[error("{path}: no such plugin file")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The plugin folder does not exist or cannot be read.
    #[error("{path}: cannot read plugin folder: {reason}")]
    UnreadableFolder {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The dynamic loader could not open the file.
    #[error("{path}: not a loadable shared library: {reason}")]
    NotALibrary {
        /// The file.
        path: PathBuf,
        /// What the dynamic loader said.
        reason: String,
    },
    /// The library has no abi_stable root module: some other shared library.
    #[error("{path}: not a kipuka plugin (it exports no kipuka root module)")]
    NotAPlugin {
        /// The file.
        path: PathBuf,
    },
    /// The plugin was built against an incompatible ABI version.
    #[error("{path}: incompatible plugin ABI: the plugin is built for ABI {found}, this kipuka speaks ABI {expected}")]
    AbiVersion {
        /// The file.
        path: PathBuf,
        /// The host's ABI version.
        expected: String,
        /// The plugin's ABI version.
        found: String,
    },
    /// Same version number, different layout: the plugin was built against
    /// a modified API crate.
    #[error("{path}: plugin ABI layout differs from this kipuka's (ABI {expected}): {detail}")]
    AbiLayout {
        /// The file.
        path: PathBuf,
        /// The host's ABI version.
        expected: String,
        /// abi_stable's first line of explanation.
        detail: String,
    },
    /// A plugin function failed or panicked.
    #[error("{path}: plugin function {function}() failed: {error}")]
    PluginCall {
        /// The file.
        path: PathBuf,
        /// Which function.
        function: &'static str,
        /// What it reported.
        error: PluginError,
    },
    /// The plugin's data breaks a rule of the contract.
    #[error("{path}: invalid plugin data: {reason}")]
    InvalidData {
        /// The file.
        path: PathBuf,
        /// Which rule.
        reason: String,
    },
    /// Another file already provides a plugin of that name.
    #[error("{path}: duplicate plugin name '{name}', already loaded from {first}")]
    Duplicate {
        /// The refused file.
        path: PathBuf,
        /// The name.
        name: String,
        /// The file that was loaded first.
        first: PathBuf,
    },
}

impl PluginLoadError {
    /// The file or folder the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Missing { path }
            | Self::UnreadableFolder { path, .. }
            | Self::NotALibrary { path, .. }
            | Self::NotAPlugin { path }
            | Self::AbiVersion { path, .. }
            | Self::AbiLayout { path, .. }
            | Self::PluginCall { path, .. }
            | Self::InvalidData { path, .. }
            | Self::Duplicate { path, .. } => path,
        }
    }
}

/// The ABI version this host speaks.
pub fn host_abi_version() -> String {
    PluginModV1Ref::VERSION_STRINGS.version.to_string()
}

/// Loads the plugin at `path` and reads everything it declares.
pub fn load_plugin(path: &Path) -> Result<VendorProfile, PluginLoadError> {
    let path_buf = path.to_path_buf();
    if !path.is_file() {
        return Err(PluginLoadError::Missing { path: path_buf });
    }
    let header = lib_header_from_path(path).map_err(|e| classify(path, e))?;
    let found_version = header.version_strings().version.to_string();
    let module = header
        .init_root_module::<PluginModV1Ref>()
        .map_err(|e| classify(path, e))?;

    let call = |function: &'static str| {
        let path = path_buf.clone();
        move |error| PluginLoadError::PluginCall {
            path,
            function,
            error,
        }
    };
    let identity = into_result(module.identity()()).map_err(call("identity"))?;
    let paths =
        into_result(module.default_library_path()()).map_err(call("default_library_path"))?;
    let config = into_result(module.provider_config()()).map_err(call("provider_config"))?;
    let mechanisms = into_result(module.supported_mechanisms()())
        .map_err(call("supported_mechanisms"))?
        .into_vec();

    let profile =
        VendorProfile::from_plugin(path_buf, found_version, identity, paths, config, mechanisms);
    validate(&profile)?;
    Ok(profile)
}

fn into_result<T>(r: PluginResult<T>) -> Result<T, PluginError> {
    match r {
        RResult::ROk(v) => Ok(v),
        RResult::RErr(e) => Err(e),
    }
}

/// Turns abi_stable's multi-line errors into one precise, single-line reason.
fn classify(path: &Path, error: LibraryError) -> PluginLoadError {
    let path = path.to_path_buf();
    match error {
        LibraryError::OpenError { err, .. } => {
            // dlerror() repeats the path; say it once.
            let reason = err.to_string();
            let prefix = format!("{}: ", path.display());
            let reason = reason.strip_prefix(&prefix).unwrap_or(&reason).to_string();
            PluginLoadError::NotALibrary { path, reason }
        }
        LibraryError::GetSymbolError { .. } => PluginLoadError::NotAPlugin { path },
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => PluginLoadError::AbiVersion {
            path,
            expected: expected_version.to_string(),
            found: actual_version.to_string(),
        },
        LibraryError::RootModule { err, .. } => PluginLoadError::InvalidData {
            path,
            reason: format!(
                "the root module failed to initialise: {}",
                first_line(&err.to_string())
            ),
        },
        LibraryError::Many(errors) => match errors.into_iter().next() {
            Some(first) => classify(&path, first),
            None => PluginLoadError::NotAPlugin { path },
        },
        other => PluginLoadError::AbiLayout {
            path,
            expected: host_abi_version(),
            detail: first_line(&other.to_string()),
        },
    }
}

fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no detail")
        .to_string()
}

/// The rules a plugin's data must follow, checked at load time so that a
/// broken plugin is refused with a reason instead of misbehaving later.
fn validate(p: &VendorProfile) -> Result<(), PluginLoadError> {
    let invalid = |reason: String| PluginLoadError::InvalidData {
        path: p.path.clone(),
        reason,
    };
    let name_ok = !p.name.is_empty()
        && p.name.len() <= 32
        && p.name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok {
        return Err(invalid(format!(
            "plugin name {:?} must be 1 to 32 characters of a-z, 0-9 and '-'",
            p.name
        )));
    }
    if p.vendor.trim().is_empty() {
        return Err(invalid("vendor is empty".into()));
    }
    if p.max_sessions == Some(0) {
        return Err(invalid("max_sessions is 0; use None for unlimited".into()));
    }
    if let Some(e) = p
        .env
        .iter()
        .find(|e| e.name.is_empty() || e.name.contains('='))
    {
        return Err(invalid(format!(
            "environment variable name {:?} is not valid",
            e.name
        )));
    }
    for (os, lib) in &p.library_paths {
        if !Path::new(lib).is_absolute() {
            return Err(invalid(format!(
                "library path for {os} is not absolute: {lib}"
            )));
        }
    }
    Ok(())
}
