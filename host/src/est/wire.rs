//! RFC 7030 / RFC 8951 encodings at the edge: request bodies in, PKCS#7 certs-only and base64 out.
//!
//! Base64 comes from `base64ct` (RustCrypto). It is already in the dependency graph through
//! `der`/`pem-rfc7468` and `spki`, so it adds no crate, and its decoder is strict RFC 4648. The
//! tolerance RFC 8951 asks for (line breaks at any width, spaces, padding or none) is a pre-pass
//! here, which also gives each error the byte position in the body as received. `base64`'s
//! configurable engines would not save that pre-pass: it reports positions in its own input.
//!
//! The certs-only message is built from `der` derive types of our own rather than the `cms`
//! crate: `cms` (0.3.0-rc) models `certificates` as a `SetOfVec`, which sorts the certificates,
//! and we keep the caller's order (see [`certs_only`]).

use const_oid::db::rfc5911::{ID_DATA, ID_SIGNED_DATA};
use der::{
    asn1::{AnyRef, ObjectIdentifier, SetOfVec},
    Decode, Encode, Sequence, Tag, Tagged,
};
use x509_cert::Certificate;

/// The Content-Type of `/cacerts`, `/simpleenroll` and `/simplereenroll` responses.
pub const CONTENT_TYPE_CERTS_ONLY: &str = "application/pkcs7-mime; smime-type=certs-only";
/// The Content-Type of a `/csrattrs` response.
pub const CONTENT_TYPE_CSRATTRS: &str = "application/csrattrs";
/// The media type of an enrollment request body (RFC 7030 4.2.1).
pub const MEDIA_TYPE_PKCS10: &str = "application/pkcs10";

/// PEM labels accepted around a request body (RFC 7468 and the older OpenSSL `-newhdr` label).
const PEM_LABELS: [&str; 2] = ["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"];

/// Why a body could not be decoded, or a response could not be encoded.
///
/// The messages of the client-side variants ([`WireError::is_client_error`]) are meant to be
/// sent as the plain-text body of an HTTP 400. Byte positions count from 0 in the body as
/// received.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Nothing but (possibly) whitespace.
    #[error("body is empty: expected base64 (RFC 8951)")]
    Empty,
    /// The body is over the caller's limit.
    #[error("body is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes of body.
        limit: usize,
        /// The body's size.
        size: usize,
    },
    /// Not base64.
    #[error("body is not base64: {problem} at byte {position}")]
    BadBase64 {
        /// Offset of the offending byte in the body.
        position: usize,
        /// What is wrong there.
        problem: String,
    },
    /// A binary DER body where base64 is required.
    #[error(
        "body is binary DER, but EST bodies are base64 (RFC 8951): send the base64 of the DER"
    )]
    BinaryDer,
    /// PEM armor that is not a certificate request's, or broken.
    #[error("body is PEM but {0}")]
    BadPem(String),
    /// The base64 decodes to something that is not one DER value.
    #[error("{0}")]
    NotDer(String),
    /// The request's Content-Type is wrong or missing.
    #[error("{}", content_type_message(.got.as_deref()))]
    ContentType {
        /// The Content-Type received, if any.
        got: Option<String>,
    },
    /// A certs-only message needs at least one certificate (server side).
    #[error("no certificate to put in the certs-only response")]
    NoCertificates,
    /// A certificate handed to [`certs_only`] is not DER X.509 (server side).
    #[error("certificate #{index} of the response is not a DER X.509 certificate: {reason}")]
    BadCertificate {
        /// 0-based position in the list.
        index: usize,
        /// The parser's message.
        reason: String,
    },
    /// The CSR attributes configuration cannot be expressed (server side).
    #[error("CSR attributes: {0}")]
    InvalidSpec(String),
    /// DER encoding failed (server side; should not happen).
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's message.
        reason: String,
    },
}

impl WireError {
    /// `true` when the client sent something wrong (HTTP 400), `false` for a server-side fault
    /// (HTTP 500).
    pub fn is_client_error(&self) -> bool {
        match self {
            Self::Empty
            | Self::TooLarge { .. }
            | Self::BadBase64 { .. }
            | Self::BinaryDer
            | Self::BadPem(_)
            | Self::NotDer(_)
            | Self::ContentType { .. } => true,
            Self::NoCertificates
            | Self::BadCertificate { .. }
            | Self::InvalidSpec(_)
            | Self::Encode { .. } => false,
        }
    }

    fn encode(what: &'static str, e: der::Error) -> Self {
        Self::Encode {
            what,
            reason: e.to_string(),
        }
    }
}

fn content_type_message(got: Option<&str>) -> String {
    match got {
        None => format!("Content-Type is missing: expected {MEDIA_TYPE_PKCS10} (RFC 7030 4.2.1)"),
        Some(got) => format!(
            "Content-Type must be {MEDIA_TYPE_PKCS10} (RFC 7030 4.2.1), got {:?}",
            got.chars().take(100).collect::<String>()
        ),
    }
}

fn bad_base64(position: usize, problem: impl Into<String>) -> WireError {
    WireError::BadBase64 {
        position,
        problem: problem.into(),
    }
}

/// Decodes an EST request body (RFC 8951): base64 whatever `Content-Transfer-Encoding` says.
///
/// Accepted: line breaks at any width (LF or CRLF), spaces and tabs anywhere, with or without
/// `=` padding; and PEM armor (`CERTIFICATE REQUEST` or `NEW CERTIFICATE REQUEST`, whitespace
/// only around it) for curl users posting a `.pem` file. Refused, with the byte position:
/// any other character (base64url `-`/`_` included), data after padding, wrong padding, a
/// truncated final group, non-zero unused bits in the last character (non-canonical).
///
/// `limit` bounds the body as received, in bytes (the DER is then at most 3/4 of it); it is
/// checked before anything else. The result is one complete DER SEQUENCE (a CSR, a CMC
/// request); its contents are the caller's to parse.
pub fn decode_body(body: &[u8], limit: usize) -> Result<Vec<u8>, WireError> {
    if body.len() > limit {
        return Err(WireError::TooLarge {
            limit,
            size: body.len(),
        });
    }
    let Some(start) = body.iter().position(|b| !is_space(*b)) else {
        return Err(WireError::Empty);
    };
    let der = if body[start..].starts_with(b"-----BEGIN ") {
        decode_pem(body, start)?
    } else {
        match decode_base64_at(body, 0) {
            Ok(der) => der,
            Err(e @ WireError::BadBase64 { .. }) => {
                if looks_like_der(body) {
                    return Err(WireError::BinaryDer);
                }
                if let Some(at) = find(body, b"-----BEGIN ") {
                    return Err(WireError::BadPem(format!(
                        "has text before its BEGIN line (byte {at}); send the PEM block alone"
                    )));
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    };
    check_one_sequence(&der)?;
    Ok(der)
}

/// `true` when `body` is one complete DER SEQUENCE (0x30, definite length covering exactly the
/// rest). For a caller that wants to accept raw DER when the client said
/// `Content-Transfer-Encoding: binary`; [`decode_body`] itself never does. Checks the outer
/// TLV only.
pub fn looks_like_der(body: &[u8]) -> bool {
    body.first() == Some(&0x30) && AnyRef::from_der(body).is_ok()
}

fn check_one_sequence(der: &[u8]) -> Result<(), WireError> {
    let any = AnyRef::from_der(der)
        .map_err(|e| WireError::NotDer(format!("decoded body is not one DER value: {e}")))?;
    if any.tag() != Tag::Sequence {
        return Err(WireError::NotDer(format!(
            "decoded body is a DER {}, not a SEQUENCE",
            any.tag()
        )));
    }
    Ok(())
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// PEM armor starting at `start` (which holds `-----BEGIN `). Positions stay body-relative.
fn decode_pem(body: &[u8], start: usize) -> Result<Vec<u8>, WireError> {
    let label_start = start + b"-----BEGIN ".len();
    let Some(label_len) = find(&body[label_start..], b"-----") else {
        return Err(WireError::BadPem(
            "its BEGIN line does not end with -----".into(),
        ));
    };
    let label = &body[label_start..label_start + label_len];
    let label = std::str::from_utf8(label)
        .ok()
        .filter(|l| PEM_LABELS.contains(l))
        .ok_or_else(|| {
            WireError::BadPem(format!(
                "its label is {:?}; expected \"CERTIFICATE REQUEST\" or \"NEW CERTIFICATE REQUEST\"",
                String::from_utf8_lossy(&label[..label.len().min(60)])
            ))
        })?;
    // The rest of the BEGIN line: blanks, then a line break.
    let mut inner_start = label_start + label_len + b"-----".len();
    while inner_start < body.len() && matches!(body[inner_start], b' ' | b'\t' | b'\r') {
        inner_start += 1;
    }
    if body.get(inner_start) != Some(&b'\n') {
        return Err(WireError::BadPem(format!(
            "its BEGIN line is not followed by a line break (byte {inner_start})"
        )));
    }
    let end_line = format!("-----END {label}-----");
    let Some(inner_len) = find(&body[inner_start..], b"-----END ") else {
        return Err(WireError::BadPem(format!("it has no {end_line} line")));
    };
    let inner_end = inner_start + inner_len;
    if !body[inner_end..].starts_with(end_line.as_bytes()) {
        return Err(WireError::BadPem(format!(
            "its END line (byte {inner_end}) does not match: expected {end_line}"
        )));
    }
    let after = inner_end + end_line.len();
    if let Some(extra) = body[after..].iter().position(|b| !is_space(*b)) {
        return Err(WireError::BadPem(format!(
            "has text after its END line (byte {}); send one PEM block alone",
            after + extra
        )));
    }
    decode_base64_at(&body[inner_start..inner_end], inner_start)
}

fn base64_value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

fn describe_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("invalid character '{}'", b as char)
    } else {
        format!("invalid byte 0x{b:02x}")
    }
}

/// The tolerant base64 pass over `text`, which sits at `offset` in the body.
fn decode_base64_at(text: &[u8], offset: usize) -> Result<Vec<u8>, WireError> {
    let mut data = Vec::with_capacity(text.len());
    let mut last_data = 0usize;
    let mut padding = 0usize;
    let mut first_pad = 0usize;
    for (i, &b) in text.iter().enumerate() {
        let position = offset + i;
        if is_space(b) {
            continue;
        }
        if b == b'=' {
            if padding == 0 {
                first_pad = position;
            }
            padding += 1;
            if padding > 2 {
                return Err(bad_base64(position, "more than two '=' padding characters"));
            }
            continue;
        }
        if base64_value(b).is_none() {
            let mut problem = describe_byte(b);
            if b == b'-' || b == b'_' {
                problem.push_str(" (base64url is not accepted; use the standard alphabet)");
            }
            return Err(bad_base64(position, problem));
        }
        if padding > 0 {
            return Err(bad_base64(position, "data after '=' padding"));
        }
        data.push(b);
        last_data = position;
    }
    if data.is_empty() {
        return if padding > 0 {
            Err(bad_base64(first_pad, "padding without data"))
        } else {
            Err(WireError::Empty)
        };
    }
    let rem = data.len() % 4;
    if rem == 1 {
        return Err(bad_base64(
            last_data,
            "truncated data (a lone character in the final group of four)",
        ));
    }
    if padding > 0 && padding != (4 - rem) % 4 {
        return Err(bad_base64(
            first_pad,
            format!(
                "wrong padding ({padding} '=' after {} characters)",
                data.len()
            ),
        ));
    }
    // Unused low bits of the last character must be zero (RFC 4648 3.5, canonical encoding).
    let unused_mask = match rem {
        2 => 0x0f,
        3 => 0x03,
        _ => 0,
    };
    let last = data[data.len() - 1];
    if base64_value(last).unwrap_or(0) & unused_mask != 0 {
        return Err(bad_base64(
            last_data,
            format!(
                "non-canonical final character '{}' (its unused bits are not zero)",
                last as char
            ),
        ));
    }
    // Only the standard alphabet is left in `data`, so this is ASCII and canonical.
    let text = std::str::from_utf8(&data).map_err(|_| bad_base64(offset, "not ASCII"))?;
    <base64ct::Base64Unpadded as base64ct::Encoding>::decode_vec(text)
        .map_err(|e| bad_base64(offset, e.to_string()))
}

/// Base64 in lines of 64 columns, each ended by `"\r\n"` (the last one too). Strict clients
/// accept CRLF; libest and strongSwan read it. Empty input gives an empty string.
pub fn base64_lines(der: &[u8]) -> String {
    let b64 = <base64ct::Base64 as base64ct::Encoding>::encode_string(der);
    let mut out = String::with_capacity(b64.len() + (b64.len() / 64 + 1) * 2);
    let mut rest = b64.as_str();
    while !rest.is_empty() {
        // The alphabet is ASCII: any byte index is a char boundary.
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push_str("\r\n");
        rest = tail;
    }
    out
}

/// RFC 5652 `ContentInfo`, with the content fixed to `SignedData`.
#[derive(Clone, Debug, Sequence)]
struct ContentInfo<'a> {
    content_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    content: SignedData<'a>,
}

/// RFC 5652 `SignedData`, as much of it as certs-only needs (and parses).
#[derive(Clone, Debug, Sequence)]
struct SignedData<'a> {
    /// `CMSVersion`: 1 here.
    version: u8,
    /// `DigestAlgorithmIdentifiers`: empty here.
    digest_algorithms: SetOfVec<AnyRef<'a>>,
    encap_content_info: EncapsulatedContentInfo<'a>,
    /// `certificates [0] IMPLICIT CertificateSet OPTIONAL`. A `Vec` (SEQUENCE OF), not a
    /// `SetOfVec`: with the IMPLICIT tag the bytes are the same `A0 len cert cert ...`, but
    /// the order is the caller's instead of DER's sort (see [`certs_only`]).
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    certificates: Option<Vec<AnyRef<'a>>>,
    /// `crls [1] IMPLICIT RevocationInfoChoices OPTIONAL`: never written, skipped when read.
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    crls: Option<Vec<AnyRef<'a>>>,
    /// `SignerInfos`: empty here.
    signer_infos: SetOfVec<AnyRef<'a>>,
}

/// RFC 5652 `EncapsulatedContentInfo`.
#[derive(Clone, Debug, Sequence)]
struct EncapsulatedContentInfo<'a> {
    e_content_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    e_content: Option<AnyRef<'a>>,
}

/// A degenerate CMS SignedData "certs-only" message (RFC 5652 5.1, RFC 7030 4.1.3), DER:
/// `ContentInfo { id-signedData, SignedData { version 1, digestAlgorithms {}, encapContentInfo
/// { id-data } (no eContent), certificates [0] the certs, signerInfos {} } }`.
///
/// Order: the certificates are written in the order given, not sorted as DER's SET OF rule
/// would have it. RFC 7030 4.1.3 leaves it to the client to build the chain, so order means
/// nothing to a conforming client, while people reading `openssl pkcs7 -print_certs` expect the
/// CA (or the issued certificate) first. OpenSSL does the same (its template declares the
/// field a SEQUENCE OF, to keep order), and OpenSSL, libest and strongSwan read any order.
///
/// Each certificate is checked to parse as X.509 and embedded byte for byte.
pub fn certs_only(certs: &[Vec<u8>]) -> Result<Vec<u8>, WireError> {
    if certs.is_empty() {
        return Err(WireError::NoCertificates);
    }
    let mut set = Vec::with_capacity(certs.len());
    for (index, der) in certs.iter().enumerate() {
        Certificate::from_der(der).map_err(|e| WireError::BadCertificate {
            index,
            reason: e.to_string(),
        })?;
        // A certificate that parses is one complete DER value.
        set.push(
            AnyRef::from_der(der).map_err(|e| WireError::BadCertificate {
                index,
                reason: e.to_string(),
            })?,
        );
    }
    let message = ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: SignedData {
            version: 1,
            digest_algorithms: SetOfVec::new(),
            encap_content_info: EncapsulatedContentInfo {
                e_content_type: ID_DATA,
                e_content: None,
            },
            certificates: Some(set),
            crls: None,
            signer_infos: SetOfVec::new(),
        },
    };
    message
        .to_der()
        .map_err(|e| WireError::encode("certs-only message", e))
}

/// The certificates (DER, in message order) of a PKCS#7/CMS SignedData message such as
/// [`certs_only`] makes; an absent `certificates` field gives an empty list. For tests and
/// clients; it checks the structure, not any signature.
pub fn certs_from_certs_only(der: &[u8]) -> Result<Vec<Vec<u8>>, WireError> {
    let info = ContentInfo::from_der(der)
        .map_err(|e| WireError::NotDer(format!("not a CMS SignedData message: {e}")))?;
    if info.content_type != ID_SIGNED_DATA {
        return Err(WireError::NotDer(format!(
            "CMS content type is {}, not id-signedData",
            info.content_type
        )));
    }
    info.content
        .certificates
        .unwrap_or_default()
        .iter()
        .map(|c| {
            c.to_der()
                .map_err(|e| WireError::encode("certificate from a certs-only message", e))
        })
        .collect()
}

/// Checks the Content-Type of an enrollment POST: `application/pkcs10`, any case, parameters
/// tolerated (`application/pkcs10; charset=...`). Anything else, or none, is refused with the
/// value received.
pub fn check_pkcs10_content_type(value: Option<&str>) -> Result<(), WireError> {
    let matches = value
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(MEDIA_TYPE_PKCS10));
    if matches {
        Ok(())
    } else {
        Err(WireError::ContentType {
            got: value.map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal DER SEQUENCE, as a stand-in for a CSR in the base64 tests.
    fn sample_der(len: usize) -> Vec<u8> {
        // SEQUENCE { OCTET STRING { len bytes } }
        let octets =
            der::asn1::OctetString::new((0..len).map(|i| (i * 7 + 3) as u8).collect::<Vec<_>>())
                .unwrap();
        let seq: Vec<der::asn1::OctetString> = vec![octets];
        seq.to_der().unwrap()
    }

    fn b64(der: &[u8]) -> String {
        <base64ct::Base64 as base64ct::Encoding>::encode_string(der)
    }

    fn wrap(text: &str, width: usize, eol: &str) -> String {
        text.as_bytes()
            .chunks(width)
            .map(|c| format!("{}{eol}", std::str::from_utf8(c).unwrap()))
            .collect()
    }

    const LIMIT: usize = 64 * 1024;

    #[test]
    fn accepts_line_widths_line_endings_and_no_breaks() {
        let der = sample_der(500);
        let text = b64(&der);
        for body in [
            text.clone(),
            wrap(&text, 64, "\n"),
            wrap(&text, 64, "\r\n"),
            wrap(&text, 76, "\r\n"),
            wrap(&text, 76, "\n"),
            wrap(&text, 1, "\n"),
            format!("{text}\n"),
            format!("  \t{text} \r\n\r\n\t "),
            text.trim_end_matches('=').to_owned(),
            wrap(text.trim_end_matches('='), 64, "\n"),
            text.replace('A', " A\t"),
        ] {
            assert_eq!(
                decode_body(body.as_bytes(), LIMIT).unwrap(),
                der,
                "{body:?}"
            );
        }
    }

    #[test]
    fn accepts_every_padding_length_with_and_without_padding() {
        for len in 90..96 {
            let der = sample_der(len);
            let text = b64(&der);
            assert_eq!(decode_body(text.as_bytes(), LIMIT).unwrap(), der);
            let bare = text.trim_end_matches('=');
            assert_eq!(decode_body(bare.as_bytes(), LIMIT).unwrap(), der);
        }
    }

    #[test]
    fn accepts_pem_armor() {
        let der = sample_der(300);
        let lines = wrap(&b64(&der), 64, "\n");
        for label in PEM_LABELS {
            let pem = format!("-----BEGIN {label}-----\n{lines}-----END {label}-----\n");
            assert_eq!(decode_body(pem.as_bytes(), LIMIT).unwrap(), der);
            let crlf = pem.replace('\n', "\r\n");
            assert_eq!(decode_body(crlf.as_bytes(), LIMIT).unwrap(), der);
            let padded = format!("\n\n  {pem}  \n");
            assert_eq!(decode_body(padded.as_bytes(), LIMIT).unwrap(), der);
        }
    }

    #[test]
    fn refuses_bad_pem() {
        let der = sample_der(100);
        let lines = wrap(&b64(&der), 64, "\n");
        let cert = format!("-----BEGIN CERTIFICATE-----\n{lines}-----END CERTIFICATE-----\n");
        let e = decode_body(cert.as_bytes(), LIMIT).unwrap_err();
        assert!(e.to_string().contains("\"CERTIFICATE\""), "{e}");

        let mismatched = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{lines}-----END NEW CERTIFICATE REQUEST-----\n"
        );
        let e = decode_body(mismatched.as_bytes(), LIMIT).unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");

        let unterminated = format!("-----BEGIN CERTIFICATE REQUEST-----\n{lines}");
        let e = decode_body(unterminated.as_bytes(), LIMIT).unwrap_err();
        assert!(e.to_string().contains("no -----END"), "{e}");

        let trailing = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{lines}-----END CERTIFICATE REQUEST-----\nxx"
        );
        let e = decode_body(trailing.as_bytes(), LIMIT).unwrap_err();
        assert_eq!(
            e,
            WireError::BadPem(format!(
                "has text after its END line (byte {}); send one PEM block alone",
                trailing.len() - 2
            ))
        );

        let leading = format!(
            "Certificate Request:\n-----BEGIN CERTIFICATE REQUEST-----\n{lines}-----END CERTIFICATE REQUEST-----\n"
        );
        let e = decode_body(leading.as_bytes(), LIMIT).unwrap_err();
        assert!(
            e.to_string()
                .contains("text before its BEGIN line (byte 21)"),
            "{e}"
        );

        let headers = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\nProc-Type: 4,ENCRYPTED\n{lines}-----END CERTIFICATE REQUEST-----\n"
        );
        let e = decode_body(headers.as_bytes(), LIMIT).unwrap_err();
        assert!(
            matches!(e, WireError::BadBase64 { position: 40, .. }),
            "{e}"
        );
    }

    #[test]
    fn bad_characters_name_their_position() {
        let der = sample_der(40);
        let mut body = b64(&der).into_bytes();
        body[17] = b'%';
        let e = decode_body(&body, LIMIT).unwrap_err();
        assert_eq!(
            e.to_string(),
            "body is not base64: invalid character '%' at byte 17"
        );
        body[17] = 0x82;
        assert_eq!(
            decode_body(&body, LIMIT).unwrap_err().to_string(),
            "body is not base64: invalid byte 0x82 at byte 17"
        );
        body[17] = b'_';
        assert!(decode_body(&body, LIMIT)
            .unwrap_err()
            .to_string()
            .contains("base64url"));
        // Positions count in the body as received, line breaks included.
        let wrapped = wrap(&b64(&der), 10, "\r\n");
        let mut body = wrapped.into_bytes();
        body[25] = b'.';
        assert!(matches!(
            decode_body(&body, LIMIT),
            Err(WireError::BadBase64 { position: 25, .. })
        ));
    }

    #[test]
    fn refuses_bad_padding_and_truncation() {
        let der = sample_der(92); // 96 bytes of DER: 32 groups, no padding
        let text = b64(&der);
        assert!(!text.ends_with('='));
        // Padding where none is due.
        let e = decode_body(format!("{text}=").as_bytes(), LIMIT).unwrap_err();
        assert_eq!(
            e,
            bad_base64(text.len(), "wrong padding (1 '=' after 128 characters)")
        );
        // Data after padding.
        let der2 = sample_der(93);
        let t2 = b64(&der2);
        assert!(t2.ends_with('='));
        let e = decode_body(format!("{t2}QQ==").as_bytes(), LIMIT).unwrap_err();
        assert_eq!(e, bad_base64(t2.len(), "data after '=' padding"));
        // Three '='.
        let e = decode_body(format!("{t2}==").as_bytes(), LIMIT).unwrap_err();
        assert!(e.to_string().contains("more than two"), "{e}");
        // A lone final character.
        let e = decode_body(format!("{text}Q").as_bytes(), LIMIT).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        // Non-zero unused bits: "MAB=" instead of "MAA=" (30 00, an empty SEQUENCE).
        assert_eq!(decode_body(b"MAA=", LIMIT).unwrap(), [0x30, 0x00]);
        for body in [&b"MAB="[..], b"MAB"] {
            let e = decode_body(body, LIMIT).unwrap_err();
            assert_eq!(
                e.to_string(),
                "body is not base64: non-canonical final character 'B' (its unused bits are not zero) at byte 2"
            );
        }
        // Only padding.
        assert!(matches!(
            decode_body(b"==", LIMIT),
            Err(WireError::BadBase64 { position: 0, .. })
        ));
    }

    #[test]
    fn refuses_empty_too_large_and_non_der() {
        assert_eq!(decode_body(b"", LIMIT), Err(WireError::Empty));
        assert_eq!(decode_body(b" \r\n\t", LIMIT), Err(WireError::Empty));
        let body = b64(&sample_der(100));
        assert_eq!(
            decode_body(body.as_bytes(), 10),
            Err(WireError::TooLarge {
                limit: 10,
                size: body.len()
            })
        );
        assert!(decode_body(body.as_bytes(), body.len()).is_ok());
        // Valid base64, but not DER / not one value / not a SEQUENCE.
        for junk in [
            &b"hello world"[..],
            &[0x30, 0x03, 0x02, 0x01],
            &[0x02, 0x01, 0x05],
        ] {
            let e = decode_body(b64(junk).as_bytes(), LIMIT).unwrap_err();
            assert!(matches!(e, WireError::NotDer(_)), "{e}");
        }
        let mut two = sample_der(3);
        two.extend(sample_der(3));
        assert!(matches!(
            decode_body(b64(&two).as_bytes(), LIMIT),
            Err(WireError::NotDer(_))
        ));
    }

    #[test]
    fn binary_der_is_recognised_and_refused() {
        let der = sample_der(200);
        assert!(looks_like_der(&der));
        assert!(!looks_like_der(&der[..der.len() - 1]));
        assert!(!looks_like_der(b64(&der).as_bytes()));
        assert!(!looks_like_der(b""));
        assert_eq!(decode_body(&der, LIMIT), Err(WireError::BinaryDer));
        assert!(!WireError::BinaryDer.to_string().is_empty());
    }

    #[test]
    fn base64_lines_are_64_columns_crlf() {
        for len in [0usize, 1, 47, 48, 49, 96, 1000] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let out = base64_lines(&data);
            if len == 0 {
                assert_eq!(out, "");
                continue;
            }
            assert!(out.ends_with("\r\n"));
            assert!(!out.contains("\n\n") && !out.replace("\r\n", "").contains(['\r', '\n']));
            let lines: Vec<&str> = out.split_terminator("\r\n").collect();
            let (last, full) = lines.split_last().unwrap();
            assert!(full.iter().all(|l| l.len() == 64), "{lines:?}");
            assert!(!last.is_empty() && last.len() <= 64);
            assert_eq!(
                <base64ct::Base64 as base64ct::Encoding>::decode_vec(&lines.concat()).unwrap(),
                data
            );
        }
    }

    #[test]
    fn content_type() {
        for ok in [
            "application/pkcs10",
            "Application/PKCS10",
            " application/pkcs10 ; charset=utf-8",
        ] {
            assert_eq!(check_pkcs10_content_type(Some(ok)), Ok(()), "{ok}");
        }
        let e = check_pkcs10_content_type(Some("application/x-www-form-urlencoded")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Content-Type must be application/pkcs10 (RFC 7030 4.2.1), got \"application/x-www-form-urlencoded\""
        );
        assert!(check_pkcs10_content_type(Some("application/pkcs10x")).is_err());
        assert!(check_pkcs10_content_type(Some("")).is_err());
        let e = check_pkcs10_content_type(None).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        assert!(e.is_client_error());
    }

    /// A P-256 CA and a device certificate it issued, made with `openssl req -x509` and
    /// `openssl x509 -req`. DER order: the leaf (30 82 01 2e) sorts before the CA (30 82 01 85).
    const CA_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIBhTCCASugAwIBAgIUW6of7M3fv5A4jrJ17nhudmaxSAkwCgYIKoZIzj0EAwIw
FzEVMBMGA1UEAwwMV2lyZSBUZXN0IENBMCAXDTI2MTEyNzAwMzYzNVoYDzIxMjYx
MTAzMDAzNjM1WjAXMRUwEwYDVQQDDAxXaXJlIFRlc3QgQ0EwWTATBgcqhkjOPQIB
BggqhkjOPQMBBwNCAATjHgeWiPtRY3Zb1IdrbsyWE1fMBsTJvyxRtGTMQKa8Dnpg
Yz4+3RMWuyuG4n52bmq0AEf2sIIkhglyfaOxXFivo1MwUTAdBgNVHQ4EFgQUl3dc
Ogs833cXafQC8fayDuATcN8wHwYDVR0jBBgwFoAUl3dcOgs833cXafQC8fayDuAT
cN8wDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiAUGfSfJJOsF4q+
ryiUvY0ug2FNofULJ8JpEDrZnKDzWQIhAJsJLZKJK506oJxnapeJXEZuQ0WsH4oW
cE9BVec4EzSU
-----END CERTIFICATE-----
";
    const LEAF_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIBLjCB1QIUANMTpEbMqoNLmFw5rYvPv+8mvKwwCgYIKoZIzj0EAwIwFzEVMBMG
A1UEAwwMV2lyZSBUZXN0IENBMCAXDTI2MTEyNzAwMzYzNVoYDzIxMjYxMTAzMDAz
NjM1WjAbMRkwFwYDVQQDDBB3aXJlLXRlc3QtZGV2aWNlMFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAEStsC0n86FdnLake/nq7PZyXGdTDgBYeMAdVhXj75mmEzvZvt
F6RXgc6eCxvnn+skZcqG9d1dMi9I/eMJWyaEETAKBggqhkjOPQQDAgNIADBFAiAO
PklWzMv7Bnh6KotF6v8yIsEVV5UipPNekRMjuwPzdwIhAMmfTp1WSL17Z19qXV48
al83iMtn5bCDf0cs3o9gPKZu
-----END CERTIFICATE-----
";

    fn pem_to_der(pem: &str) -> Vec<u8> {
        use der::DecodePem;
        Certificate::from_pem(pem).unwrap().to_der().unwrap()
    }

    #[test]
    fn certs_only_keeps_the_given_order_and_reads_back() {
        let ca = pem_to_der(CA_PEM);
        let leaf = pem_to_der(LEAF_PEM);
        for certs in [
            vec![ca.clone(), leaf.clone()],
            vec![leaf.clone(), ca.clone()],
            vec![ca.clone()],
        ] {
            let p7 = certs_only(&certs).unwrap();
            assert_eq!(certs_from_certs_only(&p7).unwrap(), certs);
            // ContentInfo { id-signedData (1.2.840.113549.1.7.2), [0] { SignedData { 1, {}, ...
            let body = &p7[4..];
            assert!(body.starts_with(&[
                0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02, 0xa0
            ]));
            // version 1, digestAlgorithms {}, encapContentInfo { id-data }, [0] certificates.
            let tail = [
                0x02, 0x01, 0x01, 0x31, 0x00, 0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
                0x0d, 0x01, 0x07, 0x01, 0xa0,
            ];
            assert!(find(&p7, &tail).is_some(), "{p7:02x?}");
            // signerInfos {} closes the message.
            assert!(p7.ends_with(&[0x31, 0x00]));
            // The message parses as DER, and base64 of it decodes back through decode_body.
            assert!(looks_like_der(&p7));
            assert_eq!(
                decode_body(base64_lines(&p7).as_bytes(), LIMIT).unwrap(),
                p7
            );
        }
    }

    #[test]
    fn certs_only_refuses_empty_and_non_certificates() {
        assert_eq!(certs_only(&[]), Err(WireError::NoCertificates));
        let e = certs_only(&[sample_der(10)]).unwrap_err();
        assert!(
            matches!(e, WireError::BadCertificate { index: 0, .. }),
            "{e}"
        );
        assert!(!e.is_client_error());
    }

    #[test]
    fn decode_body_never_panics() {
        // A small deterministic fuzz over the characters the decoder treats specially.
        let pieces: [&[u8]; 12] = [
            b"-----BEGIN CERTIFICATE REQUEST-----",
            b"-----END CERTIFICATE REQUEST-----",
            b"-----BEGIN ",
            b"-----",
            b"MII",
            b"=",
            b"\r\n",
            b"\n",
            b" ",
            b"QQ",
            b"\x30\x03",
            b"%",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..50_000 {
            let mut body = Vec::new();
            for _ in 0..next() % 8 {
                body.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
            }
            let _ = decode_body(&body, LIMIT);
            let _ = looks_like_der(&body);
            let _ = certs_from_certs_only(&body);
        }
    }

    #[test]
    fn certs_from_certs_only_refuses_garbage() {
        assert!(certs_from_certs_only(b"").is_err());
        assert!(certs_from_certs_only(&sample_der(20)).is_err());
    }
}
