//! Choosing the provider (plugin) for `[hsm]`.
//!
//! In order: an explicit `provider = "name"`; else the plugin whose default
//! library path is `library`; else the plugin that claims the library's
//! `C_GetInfo` manufacturer. Anything ambiguous or unknown is an error,
//! because applying the wrong vendor's quirks fails later and obscurely.

use std::path::Path;

use super::{profile::VendorProfile, registry::PluginRegistry};

/// How the provider was chosen, for the start-up log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChosenBy {
    /// `[hsm] provider`.
    Explicit,
    /// `[hsm] library` equals the plugin's default library path.
    LibraryPath,
    /// The library's `CK_INFO.manufacturerID`.
    Manufacturer,
}

/// Why no provider could be chosen.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SelectError {
    /// `provider` names no loaded plugin.
    #[error("[hsm] provider = \"{name}\" is not a loaded plugin (loaded: {loaded})")]
    UnknownProvider {
        /// The name asked for.
        name: String,
        /// The loaded plugins.
        loaded: String,
    },
    /// Neither `provider` nor `library` is set.
    #[error("[hsm] needs `provider` (one of: {loaded}) or `library`")]
    NothingToGoOn {
        /// The loaded plugins.
        loaded: String,
    },
    /// Several plugins claim the same thing.
    #[error(
        "[hsm] {what} matches several plugins ({candidates}); set [hsm] provider to one of them"
    )]
    Ambiguous {
        /// What was matched.
        what: String,
        /// The matching plugins.
        candidates: String,
    },
    /// No plugin claims the library's manufacturer.
    #[error("[hsm] library {library} reports manufacturer {manufacturer:?}, which no loaded plugin claims (loaded: {loaded}); set [hsm] provider")]
    UnknownManufacturer {
        /// The library.
        library: String,
        /// Its `manufacturerID`.
        manufacturer: String,
        /// The loaded plugins.
        loaded: String,
    },
    /// The library could not be asked for its manufacturer.
    #[error(
        "[hsm] library {library}: cannot read its manufacturer to choose a provider: {reason}"
    )]
    ManufacturerUnavailable {
        /// The library.
        library: String,
        /// Why.
        reason: String,
    },
}

/// Chooses the provider. `manufacturer_of` is only called when neither the
/// name nor the library path decides (it loads the PKCS#11 library).
pub fn select_provider<'r>(
    registry: &'r PluginRegistry,
    provider: Option<&str>,
    library: Option<&Path>,
    manufacturer_of: impl FnOnce(&Path) -> Result<String, String>,
) -> Result<(&'r VendorProfile, ChosenBy), SelectError> {
    let loaded = || registry.names().join(", ");
    if let Some(name) = provider {
        return registry
            .get(name)
            .map(|p| (p, ChosenBy::Explicit))
            .ok_or_else(|| SelectError::UnknownProvider {
                name: name.to_string(),
                loaded: loaded(),
            });
    }
    let Some(library) = library else {
        return Err(SelectError::NothingToGoOn { loaded: loaded() });
    };
    let by_path = registry.by_library(library);
    if let Some(p) = single(&by_path, || format!("library = {}", library.display()))? {
        return Ok((p, ChosenBy::LibraryPath));
    }
    let manufacturer =
        manufacturer_of(library).map_err(|reason| SelectError::ManufacturerUnavailable {
            library: library.display().to_string(),
            reason,
        })?;
    let by_maker = registry.by_manufacturer(&manufacturer);
    match single(&by_maker, || format!("manufacturer {manufacturer:?}"))? {
        Some(p) => Ok((p, ChosenBy::Manufacturer)),
        None => Err(SelectError::UnknownManufacturer {
            library: library.display().to_string(),
            manufacturer,
            loaded: loaded(),
        }),
    }
}

fn single<'r>(
    matches: &[&'r VendorProfile],
    what: impl FnOnce() -> String,
) -> Result<Option<&'r VendorProfile>, SelectError> {
    match matches {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => Err(SelectError::Ambiguous {
            what: what(),
            candidates: many
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use kipuka_plugin_api::{LibraryPaths, PluginIdentity, ProviderConfig};

    use super::*;

    fn profile(name: &str, library: &str, makers: &[&str]) -> VendorProfile {
        let config = makers
            .iter()
            .fold(ProviderConfig::builder(), |b, m| b.manufacturer_id(m))
            .build();
        VendorProfile::from_plugin(
            PathBuf::from(format!("/plugins/lib{name}.so")),
            "1.0.0".into(),
            PluginIdentity::new(name, "V", "d", "1"),
            LibraryPaths::from_pairs(&[(std::env::consts::OS, library)]),
            config,
            Vec::new(),
        )
    }

    fn registry() -> PluginRegistry {
        PluginRegistry::from_profiles([
            profile(
                "nshield",
                "/opt/nfast/toolkits/pkcs11/libcknfast.so",
                &["nCipher"],
            ),
            profile(
                "luna",
                "/usr/safenet/lunaclient/lib/libCryptoki2_64.so",
                &["SafeNet", "Thales"],
            ),
            profile(
                "thales-csp",
                "/opt/safenet/ptk/libcryptoki.so",
                &["SafeNet", "Thales"],
            ),
        ])
    }

    fn never(_: &Path) -> Result<String, String> {
        panic!("the manufacturer must not be asked for")
    }

    #[test]
    fn explicit_provider_wins_and_unknown_names_are_refused() {
        let r = registry();
        let (p, by) = select_provider(&r, Some("luna"), Some(Path::new("/x.so")), never).unwrap();
        assert_eq!((p.name.as_str(), by), ("luna", ChosenBy::Explicit));
        let e = select_provider(&r, Some("acme"), None, never).unwrap_err();
        assert_eq!(
            e.to_string(),
            "[hsm] provider = \"acme\" is not a loaded plugin (loaded: nshield, luna, thales-csp)"
        );
    }

    #[test]
    fn library_path_decides_before_the_manufacturer() {
        let r = registry();
        let lib = Path::new("/opt/nfast/toolkits/pkcs11/libcknfast.so");
        let (p, by) = select_provider(&r, None, Some(lib), never).unwrap();
        assert_eq!((p.name.as_str(), by), ("nshield", ChosenBy::LibraryPath));
    }

    #[test]
    fn manufacturer_decides_when_the_path_is_unknown() {
        let r = registry();
        let lib = Path::new("/usr/local/lib/libcknfast.so");
        let (p, by) =
            select_provider(&r, None, Some(lib), |_| Ok("nCipher Corp. Ltd".into())).unwrap();
        assert_eq!((p.name.as_str(), by), ("nshield", ChosenBy::Manufacturer));
    }

    #[test]
    fn ambiguous_or_unknown_manufacturers_are_start_up_errors() {
        let r = registry();
        let lib = Path::new("/somewhere/libCryptoki2.so");
        let e = select_provider(&r, None, Some(lib), |_| Ok("SafeNet, Inc.".into())).unwrap_err();
        assert!(
            matches!(e, SelectError::Ambiguous { ref candidates, .. } if candidates == "luna, thales-csp"),
            "{e}"
        );
        let e = select_provider(&r, None, Some(lib), |_| Ok("Acme".into())).unwrap_err();
        assert!(matches!(e, SelectError::UnknownManufacturer { .. }), "{e}");
        let e = select_provider(&r, None, Some(lib), |_| Err("dlopen failed".into())).unwrap_err();
        assert!(e.to_string().contains("dlopen failed"), "{e}");
        let e = select_provider(&r, None, None, never).unwrap_err();
        assert!(matches!(e, SelectError::NothingToGoOn { .. }), "{e}");
    }

    #[test]
    fn duplicate_names_keep_the_first() {
        let r = PluginRegistry::from_profiles([
            profile("luna", "/a.so", &[]),
            profile("luna", "/b.so", &[]),
        ]);
        assert_eq!(r.plugins().len(), 1);
        assert!(matches!(
            r.refused()[0],
            crate::plugins::PluginLoadError::Duplicate { .. }
        ));
    }
}
