//! The set of loaded plugins, and the ones refused with their reasons.

use std::path::{Path, PathBuf};

use super::{
    discovery::{candidate_files, PluginSource},
    loader::{load_plugin, PluginLoadError},
    profile::VendorProfile,
};

/// Loaded plugins by name, plus every refusal.
#[derive(Debug, Default)]
pub struct PluginRegistry {
    plugins: Vec<VendorProfile>,
    refused: Vec<PluginLoadError>,
}

impl PluginRegistry {
    /// Scans `sources` and loads the `files`, refusing bad plugins one by
    /// one while keeping the good ones.
    pub fn load(sources: &[PluginSource], files: &[PathBuf]) -> Self {
        let mut registry = PluginRegistry::default();
        let mut seen: Vec<PathBuf> = Vec::new();
        let mut candidates = Vec::new();
        for source in sources {
            match candidate_files(source) {
                Ok(found) => candidates.extend(found),
                Err(e) => registry.refused.push(e),
            }
        }
        candidates.extend(files.iter().cloned());
        for path in candidates {
            // The same file reached through two folders (or a link) is one plugin.
            let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if seen.contains(&canonical) {
                continue;
            }
            seen.push(canonical);
            registry.add(load_plugin(&path));
        }
        registry
    }

    /// A registry of already-loaded profiles (duplicates refused as when loading).
    pub fn from_profiles(profiles: impl IntoIterator<Item = VendorProfile>) -> Self {
        let mut registry = PluginRegistry::default();
        for profile in profiles {
            registry.add(Ok(profile));
        }
        registry
    }

    fn add(&mut self, loaded: Result<VendorProfile, PluginLoadError>) {
        match loaded {
            Ok(profile) => match self.get(&profile.name) {
                Some(first) => self.refused.push(PluginLoadError::Duplicate {
                    path: profile.path.clone(),
                    name: profile.name.clone(),
                    first: first.path.clone(),
                }),
                None => self.plugins.push(profile),
            },
            Err(e) => self.refused.push(e),
        }
    }

    /// The loaded plugins, in load order.
    pub fn plugins(&self) -> &[VendorProfile] {
        &self.plugins
    }

    /// The refused files, with reasons.
    pub fn refused(&self) -> &[PluginLoadError] {
        &self.refused
    }

    /// The plugin named `name`.
    pub fn get(&self, name: &str) -> Option<&VendorProfile> {
        self.plugins.iter().find(|p| p.name == name)
    }

    /// Names of the loaded plugins, for error messages.
    pub fn names(&self) -> Vec<&str> {
        self.plugins.iter().map(|p| p.name.as_str()).collect()
    }

    /// The plugins whose default library path for this platform is `library`.
    pub fn by_library(&self, library: &Path) -> Vec<&VendorProfile> {
        self.plugins
            .iter()
            .filter(|p| {
                p.default_library_path
                    .as_deref()
                    .is_some_and(|d| same_file(Path::new(d), library))
            })
            .collect()
    }

    /// The plugins that claim `manufacturer` (`CK_INFO.manufacturerID`).
    pub fn by_manufacturer(&self, manufacturer: &str) -> Vec<&VendorProfile> {
        self.plugins
            .iter()
            .filter(|p| p.claims_manufacturer(manufacturer))
            .collect()
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
