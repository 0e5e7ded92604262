//! CSR decoding and proof of possession (`kipuka::ca::csr::verify_csr`) on
//! arbitrary bytes, as `/simpleenroll` hands it the decoded body: an `Err`
//! is fine, a panic, a hang or an unbounded allocation is a finding.
#![no_main]

use kipuka::ca::csr::{verify_csr, MAX_CSR_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(csr) = verify_csr(data) {
        // A CSR that verified is the input, bounded, with its key read.
        assert_eq!(csr.der, data);
        assert!(data.len() <= MAX_CSR_BYTES);
    }
});
