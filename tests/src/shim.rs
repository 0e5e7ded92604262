//! Driving the test-only PKCS#11 module (`tests/pkcs11-shim`): its JSON
//! configuration, written atomically so a running server picks changes up,
//! vendor profiles taken from the workspace's plugins, and its counters.

use std::path::{Path, PathBuf};

use kipuka::plugins::{load_plugin, VendorProfile};
use kipuka_plugin_api::MechanismId;
use serde_json::{json, Value};

use crate::{
    artifacts::{pkcs11_shim, vendor_plugin},
    est_server::{EstOptions, EstServer},
    tokens::{TestToken, TokenKind},
};

/// The variable naming the shim's configuration file.
pub const CONFIG_VAR: &str = "KIPUKA_SHIM_CONFIG";

/// A shim configuration file and its counters file.
pub struct Shim {
    /// The configuration file.
    pub config_path: PathBuf,
    /// Where the shim writes its counters.
    pub stats_path: PathBuf,
    /// The configuration (write it with [`Shim::write`]).
    pub config: Value,
    /// The temporary folder holding both files, when the shim owns it
    /// ([`start_behind_shim`]).
    _dir: Option<tempfile::TempDir>,
}

/// The configuration file of a shim whose files are in `dir`.
fn config_file(dir: &Path) -> PathBuf {
    dir.join("shim.json")
}

impl Shim {
    /// A pass-through shim in front of `token`'s module, files in `dir`.
    pub fn new(dir: &Path, token: &TestToken) -> Shim {
        std::fs::create_dir_all(dir).unwrap();
        let stats_path = dir.join("shim-stats.json");
        let shim = Shim {
            config_path: config_file(dir),
            config: json!({
                "module": token.module,
                "stats_file": stats_path,
            }),
            stats_path,
            _dir: None,
        };
        shim.write();
        shim
    }

    /// The shim emulating the vendor of workspace plugin `plugin`: its
    /// manufacturer, session limit, mechanisms (what the plugin declares,
    /// without firmware-dependent ML-DSA) and OAEP hashes, and the
    /// environment it requires (the matrix's variables; `must_exist` as the
    /// vendor library needs them).
    pub fn vendor(dir: &Path, token: &TestToken, plugin: &str) -> Shim {
        let profile = vendor_profile(plugin);
        let mut shim = Shim::new(dir, token);
        let c = shim.config.as_object_mut().unwrap();
        c.insert("vendor".into(), json!(plugin));
        let manufacturer = match plugin {
            "nshield" => "nCipher Corp. Ltd",
            "utimaco" => "Utimaco IS GmbH",
            "luna" => "SafeNet, Inc.",
            "thales-csp" => "SafeNet, Inc.",
            _ => profile.manufacturer_ids[0].as_str(),
        };
        assert!(
            profile
                .manufacturer_ids
                .iter()
                .any(|m| manufacturer.starts_with(m.as_str())),
            "{plugin} claims {:?}, not {manufacturer:?}",
            profile.manufacturer_ids
        );
        c.insert("manufacturer".into(), json!(manufacturer));
        c.insert(
            "library_description".into(),
            json!(format!("{} (kipuka emulation)", profile.vendor)),
        );
        if let Some(max) = profile.max_sessions {
            c.insert("max_sessions".into(), json!(max));
        }
        let firmware_ml_dsa = profile
            .ml_dsa
            .vendor_mechanism
            .filter(|_| profile.ml_dsa.firmware_dependent);
        let mechanisms: Vec<u64> = profile
            .mechanisms
            .iter()
            .map(|m| m.id.0)
            .filter(|id| Some(MechanismId(*id)) != firmware_ml_dsa)
            .collect();
        c.insert("mechanisms".into(), json!(mechanisms));
        let oaep: Vec<u64> = profile.oaep_hashes.iter().map(|h| h.0).collect();
        c.insert("oaep_hashes".into(), json!(oaep));
        let required: Vec<Value> = profile
            .env
            .iter()
            .filter(|v| v.required)
            .map(|v| {
                let must_exist = match v.name.as_str() {
                    "NFAST_HOME" | "NFAST_KMDATA" => Some("dir"),
                    "CS_PKCS11_R3_CFG" => Some("file"),
                    _ => None,
                };
                json!({"name": v.name, "must_exist": must_exist})
            })
            .collect();
        c.insert("required_env".into(), json!(required));
        shim.write();
        shim
    }

    /// Sets `key` (and writes the file).
    pub fn set(&mut self, key: &str, value: Value) {
        self.config
            .as_object_mut()
            .unwrap()
            .insert(key.to_string(), value);
        self.write();
    }

    /// Writes the configuration atomically (temporary file, rename).
    pub fn write(&self) {
        let tmp = self.config_path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&self.config).unwrap()).unwrap();
        std::fs::rename(&tmp, &self.config_path).unwrap();
    }

    /// `(KIPUKA_SHIM_CONFIG, path)` for a process's environment.
    pub fn env(&self) -> (String, String) {
        (
            CONFIG_VAR.to_string(),
            self.config_path.display().to_string(),
        )
    }

    /// The shim library.
    pub fn library(&self) -> PathBuf {
        pkcs11_shim()
    }

    /// The counters last written (`Value::Null` if none yet).
    pub fn stats(&self) -> Value {
        std::fs::read(&self.stats_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    /// One counter.
    pub fn stat(&self, name: &str) -> u64 {
        self.stats()[name].as_u64().unwrap_or(0)
    }
}

/// `kipuka serve` on a new `kind` token behind the shim: `[hsm] library` is
/// the shim, and every `kipuka` process has [`CONFIG_VAR`] besides
/// `opts.env`. The shim passes calls through, or emulates workspace plugin
/// `vendor` ([`Shim::vendor`]); `configure` changes it further. Both happen
/// as soon as the token exists (the shim's configuration names the token's
/// module), before `ca init` goes through the shim. The shim's files are in
/// a temporary folder that the returned [`Shim`] owns.
pub fn start_behind_shim(
    kind: TokenKind,
    vendor: Option<&str>,
    mut opts: EstOptions,
    configure: impl FnOnce(&mut Shim),
) -> (EstServer, Shim) {
    let dir = tempfile::Builder::new()
        .prefix("kipuka-shim-")
        .tempdir()
        .unwrap();
    opts.library = Some(pkcs11_shim());
    opts.env.push((
        CONFIG_VAR.to_string(),
        config_file(dir.path()).display().to_string(),
    ));
    let (server, mut shim) = EstServer::start_opts_with(kind, opts, |token| {
        let mut shim = match vendor {
            Some(plugin) => Shim::vendor(dir.path(), token, plugin),
            None => Shim::new(dir.path(), token),
        };
        configure(&mut shim);
        shim
    });
    shim._dir = Some(dir);
    (server, shim)
}

/// The profile of workspace plugin `name`, loaded from its `.so`.
pub fn vendor_profile(name: &str) -> VendorProfile {
    load_plugin(&vendor_plugin(name)).unwrap_or_else(|e| panic!("plugin {name}: {e}"))
}
