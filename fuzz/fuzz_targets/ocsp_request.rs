//! The OCSP request decoding the responder applies (`POST /ocsp/<label>`
//! body and `GET /ocsp/<label>/<base64>` path): `OcspRequest::parse`, the
//! nonce lookup, the store's spelling of each CertID serial, and
//! `est::status::decode_get` on the path text. An `Err` is fine; a panic
//! is a finding.
#![no_main]

use der::{Decode, Encode};
use kipuka::{
    ca::ocsp::OcspRequest,
    est::status::decode_get,
    revocation::ocsp::serial_hex,
};
use libfuzzer_sys::fuzz_target;

fn check(der: &[u8]) {
    let Ok(req) = OcspRequest::parse(der) else {
        return;
    };
    assert!(!req.tbs_request.request_list.is_empty());
    let _ = req.nonce();
    for r in &req.tbs_request.request_list {
        let hex = serial_hex(&r.req_cert);
        assert!(
            !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "serial spelled {hex:?}"
        );
        // Lower case, no leading zero octet unless the serial is zero.
        assert!(hex == "00" || !hex.starts_with("00"), "serial spelled {hex:?}");
    }
    // What was accepted re-encodes, and the encoding decodes to the same
    // request (the cache keys CertIDs by their re-encoding).
    let again = req.to_der().expect("an accepted request re-encodes");
    assert_eq!(OcspRequest::from_der(&again).expect("re-decodes"), req);
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(der) = decode_get(text) {
            check(&der);
        }
    }
});
