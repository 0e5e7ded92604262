//! The `/serverkeygen` CSR-attribute parser
//! (`kipuka::est::serverkeygen::attributes::parse_keygen_attributes`) on
//! arbitrary bytes: which protection of the generated key the client asks
//! for (RFC 7030 §4.4.1.1, §4.4.1.2). An `Err` is fine; a panic is a finding.
#![no_main]

use kipuka::est::serverkeygen::attributes::{parse_keygen_attributes, KeyProtection};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_keygen_attributes(data) {
        Ok(KeyProtection::TlsOnly) => {}
        Ok(KeyProtection::Symmetric(id) | KeyProtection::Asymmetric(id)) => {
            // Identifiers are bounded and never empty.
            assert!(!id.is_empty() && id.len() <= 256, "{} bytes", id.len());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
