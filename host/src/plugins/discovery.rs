//! Where plugins are looked for.

use std::path::{Path, PathBuf};

use super::loader::PluginLoadError;

/// The folder every installed kipuka searches.
pub const SYSTEM_PLUGIN_DIR: &str = "/usr/lib/kipuka/plugins";

/// File-name prefix of the plugins this project builds (`cargo build` puts
/// them next to the binary as `libkipuka_plugin_<name>.so`).
pub const BUILT_PLUGIN_PREFIX: &str = "libkipuka_plugin_";

/// A folder to scan for plugins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginSource {
    /// The folder.
    pub dir: PathBuf,
    /// Only files named `libkipuka_plugin_*` (for the binary's own folder,
    /// which may hold unrelated libraries).
    pub kipuka_prefixed_only: bool,
    /// Whether a missing folder is an error (folders the operator named)
    /// or just skipped (the defaults).
    pub required: bool,
}

/// The default search path: `<binary dir>/plugins`, the binary's own folder
/// (only `libkipuka_plugin_*` there), then [`SYSTEM_PLUGIN_DIR`].
pub fn default_sources() -> Vec<PluginSource> {
    let mut sources = Vec::new();
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        sources.push(PluginSource {
            dir: exe_dir.join("plugins"),
            kipuka_prefixed_only: false,
            required: false,
        });
        sources.push(PluginSource {
            dir: exe_dir,
            kipuka_prefixed_only: true,
            required: false,
        });
    }
    sources.push(PluginSource {
        dir: PathBuf::from(SYSTEM_PLUGIN_DIR),
        kipuka_prefixed_only: false,
        required: false,
    });
    sources
}

/// Folders named by the operator: every shared library in them is a candidate.
pub fn explicit_sources(dirs: &[PathBuf]) -> Vec<PluginSource> {
    dirs.iter()
        .map(|dir| PluginSource {
            dir: dir.clone(),
            kipuka_prefixed_only: false,
            required: true,
        })
        .collect()
}

/// Whether `path` has this platform's shared-library suffix.
pub fn is_shared_library(path: &Path) -> bool {
    let suffix = std::env::consts::DLL_SUFFIX.trim_start_matches('.');
    path.extension().is_some_and(|ext| ext == suffix)
}

/// The candidate plugin files of one source, sorted by file name so that
/// which of two duplicates wins does not depend on the file system's order.
pub fn candidate_files(source: &PluginSource) -> Result<Vec<PathBuf>, PluginLoadError> {
    let entries = match std::fs::read_dir(&source.dir) {
        Ok(entries) => entries,
        Err(e) if !source.required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Vec::new())
        }
        Err(e) => {
            return Err(PluginLoadError::UnreadableFolder {
                path: source.dir.clone(),
                reason: e.to_string(),
            })
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file() && is_shared_library(path))
        .filter(|path| {
            !source.kipuka_prefixed_only
                || path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(BUILT_PLUGIN_PREFIX))
        })
        .collect();
    files.sort();
    Ok(files)
}
