//! Does a `simpleenroll` answer carry a certificate? An answer counts as an
//! enrollment only if its body is base64 of a PKCS#7/CMS SignedData
//! (RFC 5652 §5.1, certs-only: RFC 7030 §4.2.3) whose `certificates` field
//! holds at least one certificate that decodes as X.509.
//!
//! Decoded here with `der` and `x509-cert`, independently of the server's
//! own encoder, and strictly (DER, nothing after the message).

use base64ct::{Base64, Encoding};
use const_oid::ObjectIdentifier;
use der::{
    asn1::{AnyRef, IntRef},
    Class, Decode, Reader, Sequence, SliceReader, Tag, TagNumber, Tagged,
};
use x509_cert::Certificate;

/// id-signedData (RFC 5652).
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");

#[derive(Sequence)]
struct ContentInfo<'a> {
    content_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    content: AnyRef<'a>,
}

/// Why an answer is not an enrollment.
#[derive(Debug, PartialEq, Eq)]
pub struct NotACertificate(pub String);

fn bad(what: impl std::fmt::Display) -> NotACertificate {
    NotACertificate(what.to_string())
}

/// Base64 (line breaks and spaces allowed, RFC 8951) to DER.
fn unbase64(body: &[u8]) -> Result<Vec<u8>, NotACertificate> {
    let compact: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    Base64::decode_vec(
        std::str::from_utf8(&compact).map_err(|_| bad("the body is not base64 text"))?,
    )
    .map_err(|e| bad(format!("the body is not base64: {e}")))
}

/// The number of certificates in a base64 certs-only answer; at least one.
pub fn certificates_in(body: &[u8]) -> Result<usize, NotACertificate> {
    let der = unbase64(body)?;
    let info = ContentInfo::from_der(&der).map_err(|e| bad(format!("ContentInfo: {e}")))?;
    if info.content_type != ID_SIGNED_DATA {
        return Err(bad(format!(
            "content type {} is not id-signedData",
            info.content_type
        )));
    }
    if info.content.tag() != Tag::Sequence {
        return Err(bad("SignedData is not a SEQUENCE"));
    }
    let mut r = SliceReader::new(info.content.value()).map_err(bad)?;
    let field = |e: der::Error, name: &str| bad(format!("SignedData.{name}: {e}"));
    IntRef::decode(&mut r).map_err(|e| field(e, "version"))?;
    let digests = AnyRef::decode(&mut r).map_err(|e| field(e, "digestAlgorithms"))?;
    if digests.tag() != Tag::Set {
        return Err(bad("SignedData.digestAlgorithms is not a SET"));
    }
    let encap = AnyRef::decode(&mut r).map_err(|e| field(e, "encapContentInfo"))?;
    if encap.tag() != Tag::Sequence {
        return Err(bad("SignedData.encapContentInfo is not a SEQUENCE"));
    }
    let certs = AnyRef::decode(&mut r).map_err(|e| field(e, "certificates"))?;
    let tag = certs.tag();
    let is_certificates = tag.class() == Class::ContextSpecific
        && tag.number() == TagNumber(0)
        && tag.is_constructed();
    if !is_certificates {
        return Err(bad("no certificates field ([0]) in SignedData"));
    }
    let mut inner = SliceReader::new(certs.value()).map_err(bad)?;
    let mut count = 0;
    while !inner.is_finished() {
        Certificate::decode(&mut inner)
            .map_err(|e| bad(format!("certificate {}: {e}", count + 1)))?;
        count += 1;
    }
    if count == 0 {
        return Err(bad("the certificates field is empty"));
    }
    // What follows: optional crls [1], then signerInfos (a SET, empty here).
    let mut rest = AnyRef::decode(&mut r).map_err(|e| field(e, "signerInfos"))?;
    if rest.tag().class() == Class::ContextSpecific {
        rest = AnyRef::decode(&mut r).map_err(|e| field(e, "signerInfos"))?;
    }
    if rest.tag() != Tag::Set || !r.is_finished() {
        return Err(bad("SignedData does not end with its signerInfos SET"));
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_certs_only_message() {
        assert!(certificates_in(b"not base64!").is_err());
        assert!(certificates_in(b"").is_err());
        // A valid DER SEQUENCE that is no ContentInfo.
        assert!(certificates_in(b"MAA=").is_err());
    }

    #[test]
    fn an_empty_certs_only_is_no_enrollment() {
        // ContentInfo { signedData, [0] { 1, {}, { id-data }, {} } }: no certificates field.
        let der = [
            0x30, 0x23, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02, 0xa0,
            0x16, 0x30, 0x14, 0x02, 0x01, 0x01, 0x31, 0x00, 0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86,
            0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01, 0x31, 0x00,
        ];
        let e = certificates_in(Base64::encode_string(&der).as_bytes()).unwrap_err();
        assert!(e.0.contains("no certificates"), "{e:?}");
    }
}
