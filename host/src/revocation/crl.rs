//! Publishing CRLs: what the store says, signed once, served many times.
//!
//! Each CA has a [`CrlSlot`] holding its newest signed CRL as shared bytes:
//! a request costs a reference-count increment, never a rebuild or an HSM
//! operation. [`refresh_due`] decides when to re-sign (a revocation or
//! unhold of that CA, by this process or another one sharing the database;
//! `refresh_minutes` elapsed; none signed yet) and [`publish`] does it.

use std::{
    sync::{Arc, RwLock},
    time::SystemTime,
};

use bytes::Bytes;

use crate::{
    ca::{
        crl::{sign_crl, CrlContent, CrlEntry},
        issue::Issuer,
    },
    config::CrlConfig,
    store::{CertificateStore, RevokedEntry},
};

/// A signed CRL, ready to serve.
#[derive(Debug)]
pub struct PublishedCrl {
    /// The DER.
    pub der: Bytes,
    /// Its cRLNumber.
    pub number: u64,
    /// thisUpdate.
    pub this_update: SystemTime,
    /// nextUpdate.
    pub next_update: SystemTime,
    /// The CA's revocation generation it reflects.
    pub generation: i64,
    /// How many entries it lists.
    pub entries: usize,
}

/// The newest CRL of one CA (None until the first one is signed).
#[derive(Debug, Default)]
pub struct CrlSlot(RwLock<Option<Arc<PublishedCrl>>>);

impl CrlSlot {
    /// The current CRL.
    pub fn get(&self) -> Option<Arc<PublishedCrl>> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, crl: Arc<PublishedCrl>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(crl);
    }
}

/// Why a CRL was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Reading the revocations or drawing the cRLNumber failed.
    #[error("certificate store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// Signing failed (HSM) or the CRL could not be encoded.
    #[error("signing the CRL: {0}")]
    Sign(#[from] crate::ca::issue::IssueError),
}

/// Whether `slot` must be re-signed now: nothing signed yet, the CA's
/// revocations changed since (`generation`), or `refresh_minutes` passed.
pub fn refresh_due(slot: &CrlSlot, generation: i64, config: &CrlConfig, now: SystemTime) -> bool {
    match slot.get() {
        None => true,
        Some(crl) => {
            crl.generation != generation
                || now
                    .duration_since(crl.this_update)
                    .is_ok_and(|age| age >= config.refresh())
        }
    }
}

fn entry(e: RevokedEntry) -> Option<CrlEntry> {
    Some(CrlEntry {
        serial: hex_bytes(&e.serial_hex)?,
        revoked_at: e.status.revoked_at,
        reason_code: e.status.reason_code,
        invalidity_date: e.status.invalidity_date,
    })
}

fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Reads `issuer`'s revocations from the store, draws the next cRLNumber,
/// signs and stores the CRL in `slot`. The generation is read first, so a
/// revocation that lands meanwhile makes the next [`refresh_due`] true.
pub async fn publish(
    store: &dyn CertificateStore,
    issuer: &Issuer,
    config: &CrlConfig,
    slot: &CrlSlot,
) -> Result<Arc<PublishedCrl>, PublishError> {
    let ca_id = issuer.ca_id();
    let started = std::time::Instant::now();
    let generation = store.ca_revocation_generation(ca_id)?;
    // Whole seconds: X.509 times have none smaller.
    let now = SystemTime::UNIX_EPOCH
        + std::time::Duration::from_secs(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        );
    let keep = config.keep_expired();
    let cutoff = now.checked_sub(keep).unwrap_or(SystemTime::UNIX_EPOCH);
    let revoked = store.revoked_entries(ca_id, cutoff)?;
    let read = revoked.len();
    let entries: Vec<CrlEntry> = revoked.into_iter().filter_map(entry).collect();
    let count = entries.len();
    if count < read {
        // Only a row not written by kipuka can have such a serial; say so
        // rather than publish a CRL that silently lacks it.
        tracing::error!(ca = %ca_id, unreadable = read - count, "revoked certificates with a serial that is not hex octets are not on the CRL");
    }
    let number = store.next_crl_number(ca_id).await?;
    let content = CrlContent {
        number,
        this_update: now,
        next_update: now + config.validity(),
        entries,
        expired_certs_on_crl: (config.keep_expired_days > 0).then_some(cutoff),
    };
    let der = sign_crl(issuer, &content).await?;
    let crl = Arc::new(PublishedCrl {
        der: der.into(),
        number,
        this_update: content.this_update,
        next_update: content.next_update,
        generation,
        entries: count,
    });
    slot.set(crl.clone());
    tracing::info!(
        ca = %ca_id,
        crl_number = number,
        entries = count,
        bytes = crl.der.len(),
        // Store read, encoding and HSM signature together.
        elapsed_ms = started.elapsed().as_millis() as u64,
        "CRL signed"
    );
    Ok(crl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_serials_become_bytes() {
        assert_eq!(hex_bytes("01ff"), Some(vec![1, 0xff]));
        assert_eq!(hex_bytes("1ff"), None);
        assert_eq!(hex_bytes("zz"), None);
    }

    #[test]
    fn refresh_is_due_first_after_a_change_and_after_the_period() {
        let slot = CrlSlot::default();
        let config = CrlConfig::default();
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        assert!(refresh_due(&slot, 0, &config, t0));
        slot.set(Arc::new(PublishedCrl {
            der: Bytes::new(),
            number: 1,
            this_update: t0,
            next_update: t0 + config.validity(),
            generation: 5,
            entries: 0,
        }));
        assert!(!refresh_due(&slot, 5, &config, t0));
        assert!(refresh_due(&slot, 6, &config, t0));
        assert!(refresh_due(&slot, 5, &config, t0 + config.refresh()));
    }
}
