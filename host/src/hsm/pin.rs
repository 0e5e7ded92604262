//! Where the HSM PIN comes from.
//!
//! The PIN itself is never kept: the engine keeps its *source* and reads
//! the PIN into a zeroizing buffer each time it must log in (at start-up,
//! and again only if the token went away and came back), then drops it.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use super::error::HsmError;

/// Where to read the PIN.
#[derive(Clone, Debug)]
pub enum PinSource {
    /// An environment variable (`pin_env`, conventionally `KIPUKA_HSM_PIN`).
    Env(String),
    /// A file holding the PIN (`pin_file`); one trailing newline is ignored.
    File(PathBuf),
    /// A literal from the configuration (`pin`): development only.
    Literal(SecretString),
    /// No PIN: the token needs no login (protected authentication path).
    None,
}

impl PinSource {
    /// Reads the PIN. `None` for [`PinSource::None`].
    pub fn read(&self) -> Result<Option<SecretString>, HsmError> {
        match self {
            PinSource::Env(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(Some(SecretString::from(v))),
                Ok(_) => Err(HsmError::Pin(format!(
                    "environment variable {name} is empty"
                ))),
                Err(_) => Err(HsmError::Pin(format!(
                    "environment variable {name} is not set"
                ))),
            },
            PinSource::File(path) => read_secret_file(path, "PIN file")
                .map(Some)
                .map_err(HsmError::Pin),
            PinSource::Literal(pin) => {
                Ok(Some(SecretString::from(pin.expose_secret().to_string())))
            }
            PinSource::None => Ok(None),
        }
    }

    /// Where the PIN comes from, for logs (never the PIN).
    pub fn describe(&self) -> String {
        match self {
            PinSource::Env(name) => format!("environment variable {name}"),
            PinSource::File(path) => format!("file {}", path.display()),
            PinSource::Literal(_) => "the configuration file (development only)".to_string(),
            PinSource::None => "none (no login)".to_string(),
        }
    }
}

/// A secret (a PIN, a passphrase) from a file of its own: one trailing
/// newline (LF or CRLF) is ignored, an empty secret is refused. The text read
/// is zeroized; `what` names the file in errors ("PIN file").
pub fn read_secret_file(path: &Path, what: &str) -> Result<SecretString, String> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?,
    );
    let secret = text.strip_suffix('\n').unwrap_or(&text);
    let secret = secret.strip_suffix('\r').unwrap_or(secret);
    if secret.is_empty() {
        return Err(format!("{what} {} is empty", path.display()));
    }
    Ok(SecretString::from(secret.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_pins_lose_one_newline_and_empty_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pin");
        std::fs::write(&f, "1234\n").unwrap();
        let pin = PinSource::File(f.clone()).read().unwrap().unwrap();
        assert_eq!(pin.expose_secret(), "1234");
        std::fs::write(&f, "\n").unwrap();
        assert!(PinSource::File(f)
            .read()
            .unwrap_err()
            .to_string()
            .contains("is empty"));
        let missing = PinSource::Env("KIPUKA_TEST_SURELY_UNSET_PIN".into())
            .read()
            .unwrap_err();
        assert_eq!(
            missing.to_string(),
            "HSM PIN: environment variable KIPUKA_TEST_SURELY_UNSET_PIN is not set"
        );
    }

    #[test]
    fn debug_never_shows_a_literal_pin() {
        let s = PinSource::Literal(SecretString::from("hunter2".to_string()));
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
