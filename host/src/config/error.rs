//! [`ConfigError`], the configuration layer's one error type, and the
//! translation of figment's errors into one-line messages that name the key,
//! the file or environment variable, and what was expected.

use std::fmt;
use std::path::PathBuf;

use figment::error::{Actual, Kind};

/// Where a configuration value came from. Every parse error names it, so the
/// operator knows which file or variable to edit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// A TOML configuration file.
    File(PathBuf),
    /// One `KIPUKA_<SECTION>__<KEY>` environment variable, by name.
    EnvVar(String),
    /// The `KIPUKA_*__*` environment variables, when no single one is to blame.
    Env,
    /// A TOML string given to [`Config::from_toml_str`](super::Config::from_toml_str).
    Inline,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::EnvVar(name) => write!(f, "environment variable {name}"),
            Origin::Env => f.write_str("the KIPUKA_*__* environment variables"),
            Origin::Inline => f.write_str("the configuration string"),
        }
    }
}

/// Everything that can be wrong with kipuka's configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("invalid TOML in {origin} at line {line}, column {column}: {message}")]
    Syntax {
        /// The file (or string).
        origin: Origin,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// The TOML parser's message.
        message: String,
    },
    /// A key kipuka does not know: usually a typo, which must not be ignored.
    #[error("unknown key \"{key}\" in {origin} (expected one of: {expected})")]
    UnknownKey {
        /// Full dotted path, e.g. `hsm.tokn_label` or `ca[1].lable`.
        key: String,
        /// The file or variable that set it.
        origin: Origin,
        /// The keys allowed at that place, comma-separated.
        expected: String,
    },
    /// A known key with a value of the wrong type or form, or a missing required key.
    #[error("key \"{key}\" in {origin}: {message}")]
    Value {
        /// Full dotted path, e.g. `server.listen`.
        key: String,
        /// The file or variable that set it.
        origin: Origin,
        /// What was found and what was expected (secrets are never shown).
        message: String,
    },
    /// A cross-field rule of [`Config::validate`](super::Config::validate) failed.
    #[error("{at}: {message}")]
    Invalid {
        /// Where: `server`, `hsm`, `ca "ec"`, `auth.users "alice"`, ...
        at: String,
        /// What is wrong, naming the offending value.
        message: String,
    },
}

/// Shorthand for [`ConfigError::Invalid`].
pub(crate) fn invalid(at: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        at: at.into(),
        message: message.into(),
    }
}

/// Keys whose values must never appear in a message, even when mistyped.
const SECRET_KEYS: &[&str] = &["hsm.pin"];

/// Turns figment's (first) error into a [`ConfigError`]. `origin_of` maps
/// the dotted key path to the source that set it.
pub(crate) fn from_figment(err: figment::Error, origin_of: impl Fn(&str) -> Origin) -> ConfigError {
    // figment's path leads to the map holding the bad field; for unknown and
    // missing fields the field itself is only in the kind.
    let mut path = err.path.clone();
    let field = match &err.kind {
        Kind::UnknownField(field, _) => Some(field.as_str()),
        Kind::MissingField(field) => Some(field.as_ref()),
        _ => None,
    };
    if let Some(field) = field.filter(|f| path.last().map(String::as_str) != Some(*f)) {
        path.push(field.to_string());
    }
    let dotted = path.join(".");
    let origin = origin_of(&dotted);
    let key = display_key(&path);
    let secret = SECRET_KEYS.contains(&dotted.as_str());
    let message = match err.kind {
        Kind::UnknownField(_, expected) => {
            return ConfigError::UnknownKey {
                key,
                origin,
                expected: expected.join(", "),
            }
        }
        Kind::MissingField(_) => "required key is missing".to_string(),
        Kind::InvalidType(actual, expected) => {
            format!(
                "invalid type: found {}, expected {expected}",
                shown(&actual, secret)
            )
        }
        Kind::InvalidValue(actual, expected) => {
            format!(
                "invalid value: found {}, expected {expected}",
                shown(&actual, secret)
            )
        }
        Kind::UnknownVariant(found, expected) => {
            format!(
                "unknown value \"{found}\", expected one of: {}",
                expected.join(", ")
            )
        }
        Kind::Message(_) if secret => "invalid value (not shown: it is a secret)".to_string(),
        // serde's own messages (e.g. "invalid socket address syntax") are one line.
        other => other.to_string(),
    };
    ConfigError::Value {
        key,
        origin,
        message,
    }
}

/// A bad value as figment describes it, or only its type if it is a secret.
fn shown(actual: &Actual, secret: bool) -> String {
    let kind = match actual {
        _ if !secret => return actual.to_string(),
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a float",
        Actual::Char(_) | Actual::Str(_) | Actual::Bytes(_) => "a string",
        _ => "a value",
    };
    format!("{kind} (not shown: it is a secret)")
}

/// `["ca", "0", "key"]` -> `ca[0].key`: array indices read as operators write them.
fn display_key(path: &[String]) -> String {
    let mut out = String::new();
    for segment in path {
        if !out.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

/// A TOML syntax error with its 1-based line and column, on one line.
pub(crate) fn from_toml(err: &toml::de::Error, text: &str, origin: Origin) -> ConfigError {
    let offset = err.span().map_or(0, |s| s.start).min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    ConfigError::Syntax {
        origin,
        line,
        column,
        message: err.message().trim().replace('\n', "; "),
    }
}
