//! The vendor library's environment, applied before `C_Initialize`.

use std::collections::BTreeMap;

use crate::plugins::VendorProfile;

use super::error::HsmError;

/// What was done to one variable, for the start-up log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvAction {
    /// The operator had set it; left alone.
    KeptOperatorValue(String),
    /// Set from `[hsm.env]` in the configuration.
    SetFromConfig(String),
    /// Set to the vendor's default.
    SetDefault(String),
    /// Unset, optional, no default.
    LeftUnset(String),
}

/// Exports `[hsm.env]` without overriding what the operator set, before the
/// provider is known (to ask the library its manufacturer).
pub fn apply_configured_env(configured: &BTreeMap<String, String>) {
    for (name, value) in configured {
        if std::env::var_os(name).is_none() {
            std::env::set_var(name, value);
        }
    }
}

/// Applies `[hsm.env]` and the plugin's defaults to the process
/// environment, never overriding a variable the operator exported.
///
/// Must run before any thread that reads the environment is started (the
/// vendor library reads it in `C_Initialize`), which is why the engine does
/// it first thing when it opens the library.
pub fn apply_vendor_env(
    profile: &VendorProfile,
    configured: &BTreeMap<String, String>,
) -> Result<Vec<EnvAction>, HsmError> {
    let mut actions = Vec::new();
    for (name, value) in configured {
        if std::env::var_os(name).is_some() {
            actions.push(EnvAction::KeptOperatorValue(name.clone()));
        } else {
            std::env::set_var(name, value);
            actions.push(EnvAction::SetFromConfig(name.clone()));
        }
    }
    for var in &profile.env {
        if configured.contains_key(&var.name) {
            continue;
        }
        if std::env::var_os(&var.name).is_some() {
            actions.push(EnvAction::KeptOperatorValue(var.name.clone()));
        } else if let Some(default) = &var.default {
            std::env::set_var(&var.name, default);
            actions.push(EnvAction::SetDefault(var.name.clone()));
        } else if var.required {
            return Err(HsmError::MissingEnv {
                vendor: profile.name.clone(),
                name: var.name.clone(),
                description: var.description.clone(),
            });
        } else {
            actions.push(EnvAction::LeftUnset(var.name.clone()));
        }
    }
    Ok(actions)
}
