//! `--ocsp-request`: load an OCSP responder instead of enrolling.
//!
//! The request is one an OCSP client made (e.g. `openssl ocsp -no_nonce
//! -reqout`), POSTed as `application/ocsp-request`. With `--ocsp-nonce`
//! every request carries its own fresh nonce (RFC 8954), so that the
//! responder must sign each one; without, the same request is sent again
//! and again, the case RFC 5019 responders answer from a cache.
//!
//! An answer counts only if it is a 200 whose body is an `OCSPResponse`
//! with `responseStatus` successful and a `BasicOCSPResponse` in it,
//! decoded here with `der`, not with the server's encoder.

use bytes::Bytes;
use const_oid::ObjectIdentifier;
use der::{
    asn1::{AnyRef, OctetString},
    Decode, Encode, Enumerated, Sequence,
};
use kipuka::ca::ocsp::{OcspRequest, ID_PKIX_OCSP_NONCE};
use x509_cert::ext::Extension;

use crate::error::BenchError;

/// id-pkix-ocsp-basic.
const ID_PKIX_OCSP_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");

/// Bytes of each generated nonce (RFC 8954 asks for at least 1, OpenSSL sends 16).
const NONCE_BYTES: usize = 16;

/// The request bodies to send: one (no nonce), or `count` distinct ones.
pub fn requests(template: &[u8], nonce: bool, count: usize) -> Result<Vec<Bytes>, BenchError> {
    let req = OcspRequest::parse(template)
        .map_err(|e| BenchError::Usage(format!("--ocsp-request: {e}")))?;
    if !nonce {
        if req.nonce().is_some() {
            return Err(BenchError::Usage(
                "--ocsp-request carries a nonce, so every answer would be signed anew: \
                 make it with `openssl ocsp -no_nonce -reqout`, or add --ocsp-nonce"
                    .into(),
            ));
        }
        return Ok(vec![Bytes::copy_from_slice(template)]);
    }
    (0..count.max(1))
        .map(|_| {
            let mut r = req.clone();
            let mut value = [0u8; NONCE_BYTES];
            getrandom::fill(&mut value)
                .map_err(|e| BenchError::Runtime(format!("random nonce: {e}")))?;
            let extn_value = OctetString::new(value.to_vec())
                .and_then(|inner| inner.to_der())
                .and_then(OctetString::new)
                .map_err(|e| BenchError::Runtime(format!("nonce: {e}")))?;
            let mut exts: Vec<Extension> = r
                .tbs_request
                .request_extensions
                .take()
                .unwrap_or_default()
                .into_iter()
                .filter(|e| e.extn_id != ID_PKIX_OCSP_NONCE)
                .collect();
            exts.push(Extension {
                extn_id: ID_PKIX_OCSP_NONCE,
                critical: false,
                extn_value,
            });
            r.tbs_request.request_extensions = Some(exts);
            r.to_der()
                .map(Bytes::from)
                .map_err(|e| BenchError::Runtime(format!("OCSP request: {e}")))
        })
        .collect()
}

/// `OCSPResponseStatus`, as far as it matters here.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Enumerated)]
#[repr(u8)]
enum Status {
    Successful = 0,
    MalformedRequest = 1,
    InternalError = 2,
    TryLater = 3,
    SigRequired = 5,
    Unauthorized = 6,
}

#[derive(Sequence)]
struct ResponseBytes<'a> {
    response_type: ObjectIdentifier,
    response: AnyRef<'a>,
}

#[derive(Sequence)]
struct OcspResponse<'a> {
    response_status: Status,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    response_bytes: Option<ResponseBytes<'a>>,
}

/// Why an answer is not a successful OCSP response.
pub fn check_successful(body: &[u8]) -> Result<(), String> {
    let r = OcspResponse::from_der(body).map_err(|e| format!("not an OCSPResponse: {e}"))?;
    if r.response_status != Status::Successful {
        return Err(format!("responseStatus {:?}", r.response_status));
    }
    match r.response_bytes {
        Some(b) if b.response_type == ID_PKIX_OCSP_BASIC => Ok(()),
        Some(b) => Err(format!(
            "responseType {} is not id-pkix-ocsp-basic",
            b.response_type
        )),
        None => Err("a successful response without responseBytes".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_statuses_and_garbage_are_not_answers() {
        // OCSPResponse { tryLater }.
        let e = check_successful(&[0x30, 0x03, 0x0a, 0x01, 0x03]).unwrap_err();
        assert!(e.contains("TryLater"), "{e}");
        // successful without responseBytes.
        let e = check_successful(&[0x30, 0x03, 0x0a, 0x01, 0x00]).unwrap_err();
        assert!(e.contains("without responseBytes"), "{e}");
        assert!(check_successful(b"").is_err());
    }

    /// Made by `openssl ocsp -no_nonce -reqout` and `openssl ocsp -reqout`.
    const NO_NONCE: &[u8] = include_bytes!("../../fuzz/seeds/ocsp_request/seed-nononce-sha1.der");
    const WITH_NONCE: &[u8] = include_bytes!("../../fuzz/seeds/ocsp_request/seed-nonce-sha1.der");

    #[test]
    fn nonce_mode_gives_distinct_requests_for_the_same_certificate() {
        let bodies = requests(NO_NONCE, true, 3).unwrap();
        assert_eq!(bodies.len(), 3);
        let parsed: Vec<OcspRequest> = bodies
            .iter()
            .map(|b| OcspRequest::parse(b).unwrap())
            .collect();
        let template = OcspRequest::parse(NO_NONCE).unwrap();
        for p in &parsed {
            assert_eq!(
                p.tbs_request.request_list,
                template.tbs_request.request_list
            );
            assert_eq!(
                p.nonce().unwrap().extn_value.as_bytes().len(),
                2 + NONCE_BYTES
            );
        }
        assert_ne!(parsed[0].nonce(), parsed[1].nonce());
        // A template that has a nonce gets a fresh one, not two.
        let again = requests(WITH_NONCE, true, 1).unwrap();
        let exts = OcspRequest::parse(&again[0])
            .unwrap()
            .tbs_request
            .request_extensions
            .unwrap();
        assert_eq!(
            exts.iter()
                .filter(|e| e.extn_id == ID_PKIX_OCSP_NONCE)
                .count(),
            1
        );
    }

    #[test]
    fn cached_mode_refuses_a_template_with_a_nonce() {
        assert_eq!(
            requests(NO_NONCE, false, 5).unwrap(),
            vec![Bytes::from_static(NO_NONCE)]
        );
        let e = requests(WITH_NONCE, false, 1).unwrap_err().to_string();
        assert!(e.contains("-no_nonce"), "{e}");
    }
}
