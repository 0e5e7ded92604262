//! `[ca.crl]`: how each CA publishes its revocation list.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{invalid, ConfigError};

/// `[ca.crl]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrlConfig {
    /// nextUpdate = thisUpdate + this many hours. Default 24.
    pub validity_hours: u32,
    /// The CRL is re-signed this often even without a revocation (and
    /// right after each revocation anyway). Default 60.
    pub refresh_minutes: u32,
    /// Revoked certificates stay on the CRL this many days after they
    /// expire; when > 0 the CRL says so with `expiredCertsOnCRL`
    /// (RFC 5280 §5.2.7). Default 0: they leave at expiry.
    pub keep_expired_days: u32,
}

impl Default for CrlConfig {
    fn default() -> Self {
        CrlConfig {
            validity_hours: 24,
            refresh_minutes: 60,
            keep_expired_days: 0,
        }
    }
}

impl CrlConfig {
    /// `validity_hours` as a duration.
    pub fn validity(&self) -> Duration {
        Duration::from_secs(u64::from(self.validity_hours) * 3600)
    }

    /// `refresh_minutes` as a duration.
    pub fn refresh(&self) -> Duration {
        Duration::from_secs(u64::from(self.refresh_minutes) * 60)
    }

    /// `keep_expired_days` as a duration.
    pub fn keep_expired(&self) -> Duration {
        Duration::from_secs(u64::from(self.keep_expired_days) * 86_400)
    }

    /// A CRL must be re-signed before it expires.
    pub(crate) fn check(&self, at: &str) -> Result<(), ConfigError> {
        if self.validity_hours == 0 || self.refresh_minutes == 0 {
            return Err(invalid(
                at,
                "crl.validity_hours and crl.refresh_minutes must be at least 1",
            ));
        }
        if self.refresh() >= self.validity() {
            return Err(invalid(
                at,
                format!(
                    "crl.refresh_minutes ({}) must be shorter than crl.validity_hours ({} h): \
                     the CRL would expire before it is re-signed",
                    self.refresh_minutes, self.validity_hours
                ),
            ));
        }
        Ok(())
    }
}

/// `[ca.ocsp]`: this CA's OCSP responder (`/ocsp/<label>`), which signs
/// with the CA key itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OcspConfig {
    /// nextUpdate = thisUpdate + this; cached responses (requests without
    /// nonce) are re-signed after half of it. Default 3600.
    pub max_age_seconds: u32,
}

impl Default for OcspConfig {
    fn default() -> Self {
        OcspConfig {
            max_age_seconds: 3600,
        }
    }
}

impl OcspConfig {
    /// `max_age_seconds` as a duration.
    pub fn max_age(&self) -> Duration {
        Duration::from_secs(u64::from(self.max_age_seconds))
    }

    pub(crate) fn check(&self, at: &str) -> Result<(), ConfigError> {
        if self.max_age_seconds < 60 {
            return Err(invalid(at, "ocsp.max_age_seconds must be at least 60"));
        }
        Ok(())
    }
}
