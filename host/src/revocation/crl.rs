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
        crl::{CrlEntry, CrlHeader, CrlWriter},
        issue::Issuer,
    },
    config::CrlConfig,
    store::CertificateStore,
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

/// The octets of a lowercase-hex serial, in `out`; None if it is not hex
/// octets (only a row not written by kipuka can hold such a serial).
fn hex_bytes<'a>(hex: &str, out: &'a mut [u8; 64]) -> Option<&'a [u8]> {
    let digits = hex.as_bytes();
    if !digits.len().is_multiple_of(2) || digits.len() > 2 * out.len() {
        return None;
    }
    let nibble = |d: u8| (d as char).to_digit(16).map(|v| v as u8);
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(&out[..digits.len() / 2])
}

/// Reads `issuer`'s revocations from the store, draws the next cRLNumber,
/// signs and stores the CRL in `slot`. The generation is read first, so a
/// revocation that lands meanwhile makes the next [`refresh_due`] true.
/// The entries go from the store's rows straight into the CRL's buffer.
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
    let number = store.next_crl_number(ca_id).await?;
    let header = CrlHeader {
        number,
        this_update: now,
        next_update: now + config.validity(),
        expired_certs_on_crl: (config.keep_expired_days > 0).then_some(cutoff),
    };
    // Sized for the previous CRL's entries: a re-signed CRL rarely differs much.
    let hint = slot.get().map_or(0, |c| c.entries + c.entries / 16);
    let mut writer = CrlWriter::new(issuer, header, hint)?;
    let (mut count, mut unreadable) = (0usize, 0usize);
    super::blocking(|| {
        let mut serial = [0u8; 64];
        store.for_each_revoked(
            ca_id,
            cutoff,
            &mut |e| match hex_bytes(e.serial_hex, &mut serial) {
                Some(serial) => {
                    writer.push(&CrlEntry {
                        serial,
                        revoked_at: e.status.revoked_at,
                        reason_code: e.status.reason_code,
                        invalidity_date: e.status.invalidity_date,
                    });
                    count += 1;
                }
                None => unreadable += 1,
            },
        )
    })?;
    if unreadable > 0 {
        // Say so rather than publish a CRL that silently lacks them.
        tracing::error!(ca = %ca_id, unreadable, "revoked certificates with a serial that is not hex octets are not on the CRL");
    }
    let read_ms = started.elapsed().as_millis() as u64;
    let der = writer.sign(issuer).await?;
    let crl = Arc::new(PublishedCrl {
        der,
        number,
        this_update: header.this_update,
        next_update: header.next_update,
        generation,
        entries: count,
    });
    slot.set(crl.clone());
    tracing::info!(
        ca = %ca_id,
        crl_number = number,
        entries = count,
        bytes = crl.der.len(),
        // Store read and encoding, then those and the HSM signature.
        read_ms,
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
        let mut out = [0u8; 64];
        assert_eq!(hex_bytes("01ff", &mut out), Some(&[1u8, 0xff][..]));
        assert_eq!(hex_bytes("1ff", &mut out), None);
        assert_eq!(hex_bytes("zz", &mut out), None);
        assert_eq!(hex_bytes("+1", &mut out), None, "no sign");
        assert_eq!(hex_bytes(&"ab".repeat(65), &mut out), None);
        assert_eq!(
            hex_bytes(&"ab".repeat(64), &mut out).map(<[u8]>::len),
            Some(64)
        );
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
