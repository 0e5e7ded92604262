//! `KIPUKA_<SECTION>__<KEY>` environment variables as a configuration source.
//!
//! Only variables with `__` after the prefix are configuration
//! (`KIPUKA_SERVER__LISTEN`, `KIPUKA_HSM__TOKEN_LABEL`, `KIPUKA_DB__MAX_CONNECTIONS`).
//! Others, such as `KIPUKA_HSM_PIN` (the matrix's PIN variable, read through
//! `hsm.pin_env`) or `KIPUKA_CACHE`, belong to someone else and are ignored.
//!
//! We build the figment data ourselves rather than use `figment::providers::Env`
//! so that (a) the exact variable can be named in errors, (b) `hsm.env`
//! names keep their case (`KIPUKA_HSM__ENV__NFAST_HOME` sets `NFAST_HOME`),
//! and (c) scalars stay strings: a PIN or token label `0012` must not turn
//! into the number 12. Numeric and boolean fields accept those strings
//! because the environment is extracted with `extract_lossy`.

use figment::providers::Serialized;
use figment::value::Value;
use figment::Figment;

use super::error::{invalid, ConfigError, Origin};

/// The prefix of every kipuka variable.
pub(crate) const PREFIX: &str = "KIPUKA_";

/// One configuration variable: its name, the dotted key it sets, its value.
struct Var {
    name: String,
    key: String,
    value: String,
}

/// The configuration variables of an environment.
pub(crate) struct EnvSource {
    vars: Vec<Var>,
}

impl EnvSource {
    /// The configuration variables of this process.
    pub(crate) fn from_process() -> Result<Self, ConfigError> {
        // Non-UTF-8 variables cannot be kipuka configuration; skip them.
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        Self::from_vars(vars)
    }

    /// The configuration variables among `vars`.
    pub(crate) fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut out = Vec::new();
        for (name, value) in vars {
            if let Some(key) = key_for(&name)? {
                out.push(Var { name, key, value });
            }
        }
        // Deterministic order, so a variable set twice (differing only in
        // case) always resolves the same way.
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(EnvSource { vars: out })
    }

    /// The variables as a figment, one nested value per variable.
    pub(crate) fn figment(&self) -> Figment {
        self.vars.iter().fold(Figment::new(), |figment, var| {
            figment.merge(Serialized::default(&var.key, value_of(&var.value)))
        })
    }

    /// The variable that set `key` (or a key inside or above it).
    pub(crate) fn origin_of(&self, key: &str) -> Origin {
        let related =
            |var: &&Var| var.key == key || is_under(&var.key, key) || is_under(key, &var.key);
        let exact = self.vars.iter().find(|v| v.key == key);
        match exact.or_else(|| self.vars.iter().find(related)) {
            Some(var) => Origin::EnvVar(var.name.clone()),
            None => Origin::Env,
        }
    }
}

/// Whether dotted `key` lies inside `parent` (`hsm.env.X` inside `hsm`).
fn is_under(key: &str, parent: &str) -> bool {
    key.strip_prefix(parent)
        .is_some_and(|rest| rest.starts_with('.'))
}

/// The dotted key a variable sets, or `None` when it is not configuration.
fn key_for(name: &str) -> Result<Option<String>, ConfigError> {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return Ok(None);
    };
    if !rest.contains("__") {
        return Ok(None);
    }
    let segments: Vec<&str> = rest.split("__").collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(invalid(
            format!("environment variable {name}"),
            "empty key segment (expected KIPUKA_<SECTION>__<KEY>, e.g. KIPUKA_SERVER__LISTEN)",
        ));
    }
    let is_hsm_env = segments.len() > 2
        && segments[0].eq_ignore_ascii_case("hsm")
        && segments[1].eq_ignore_ascii_case("env");
    let key = if is_hsm_env {
        // The vendor variable's name is kept as written, `__` included.
        format!("hsm.env.{}", segments[2..].join("__"))
    } else {
        segments.join(".").to_ascii_lowercase()
    };
    Ok(Some(key))
}

/// Arrays, tables and quoted strings are parsed (`["1.3"]`, `{ A = "b" }`,
/// `"x"`); everything else is kept as the string it is.
fn value_of(raw: &str) -> Value {
    match raw.trim_start().chars().next() {
        Some('[' | '{' | '"') => raw
            .parse()
            .unwrap_or_else(|e: std::convert::Infallible| match e {}),
        _ => Value::from(raw.to_string()),
    }
}
