//! The RFC 8951 body decoder (`kipuka::est::wire::decode_body`) on arbitrary
//! bytes. Whatever it accepts must be one DER SEQUENCE that the server's own
//! encoder turns back into a body decoding to the same bytes.
#![no_main]

use kipuka::est::wire::{base64_lines, decode_body, looks_like_der};
use libfuzzer_sys::fuzz_target;

/// The server's default `max_body_bytes`.
const LIMIT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    match decode_body(data, LIMIT) {
        Ok(der) => {
            assert!(
                looks_like_der(&der),
                "accepted a body that is not one DER SEQUENCE"
            );
            assert!(der.len() <= data.len());
            let again = decode_body(base64_lines(&der).as_bytes(), usize::MAX)
                .expect("the server's own base64 must decode");
            assert_eq!(again, der);
        }
        Err(e) => {
            // Every refusal of a client body is a client error (HTTP 400).
            assert!(e.is_client_error(), "{e:?} for client input");
            let _ = e.to_string();
        }
    }
});
