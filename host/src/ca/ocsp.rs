//! OCSP (RFC 6960) messages: the request as clients send it, and the
//! BasicOCSPResponse signed by the CA key through the [`Issuer`] (the same
//! engine, quirks and signature check as certificates). The CA signs its
//! own responses; a delegated responder key (`[ca.ocsp] responder_key`)
//! would add its certificate to `certs` here.

use std::time::SystemTime;

use bytes::Bytes;

use der::{
    asn1::{Any, BitString, GeneralizedTime, ObjectIdentifier, OctetString},
    Decode, Encode, Enumerated, Sequence, Tag, TagNumber,
};
use spki::AlgorithmIdentifierOwned;
use x509_cert::{
    ext::{pkix::CrlReason, Extensions},
    serial_number::SerialNumber,
    Version,
};

use super::{
    crl::reason,
    issue::{IssueError, Issuer},
};

/// id-pkix-ocsp-nonce (RFC 8954).
pub const ID_PKIX_OCSP_NONCE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");
/// id-pkix-ocsp-basic.
const ID_PKIX_OCSP_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
/// SHA-1 and SHA-256, the CertID hashes answered.
pub const ID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
/// SHA-256.
pub const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");

/// `CertID`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
#[allow(missing_docs)]
pub struct CertId {
    pub hash_algorithm: AlgorithmIdentifierOwned,
    pub issuer_name_hash: OctetString,
    pub issuer_key_hash: OctetString,
    pub serial_number: SerialNumber,
}

/// `Request`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
#[allow(missing_docs)]
pub struct Request {
    pub req_cert: CertId,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub single_request_extensions: Option<Extensions>,
}

/// `TBSRequest`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
#[allow(missing_docs)]
pub struct TbsRequest {
    #[asn1(context_specific = "0", default = "Default::default")]
    pub version: Version,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    pub requestor_name: Option<Any>,
    pub request_list: Vec<Request>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
    pub request_extensions: Option<Extensions>,
}

/// `OCSPRequest`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
#[allow(missing_docs)]
pub struct OcspRequest {
    pub tbs_request: TbsRequest,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub optional_signature: Option<Any>,
}

impl OcspRequest {
    /// Parses DER; anything else (trailing bytes, an empty request list)
    /// is an error naming what is wrong.
    pub fn parse(der: &[u8]) -> Result<OcspRequest, String> {
        let req = OcspRequest::from_der(der).map_err(|e| format!("not an OCSPRequest: {e}"))?;
        if req.tbs_request.request_list.is_empty() {
            return Err("the OCSPRequest asks about no certificate".into());
        }
        Ok(req)
    }

    /// The nonce extension (RFC 8954), if any, as sent.
    pub fn nonce(&self) -> Option<&x509_cert::ext::Extension> {
        self.tbs_request
            .request_extensions
            .as_ref()?
            .iter()
            .find(|e| e.extn_id == ID_PKIX_OCSP_NONCE)
    }
}

/// `OCSPResponseStatus`.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Enumerated)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum ResponseStatus {
    Successful = 0,
    MalformedRequest = 1,
    InternalError = 2,
    TryLater = 3,
    SigRequired = 5,
    Unauthorized = 6,
}

/// `ResponseBytes`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct ResponseBytes {
    response_type: ObjectIdentifier,
    response: OctetString,
}

/// `OCSPResponse`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct OcspResponse {
    response_status: ResponseStatus,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    response_bytes: Option<ResponseBytes>,
}

/// An `OCSPResponse` without a body: every status but `successful`.
pub fn error_response(status: ResponseStatus) -> Vec<u8> {
    OcspResponse {
        response_status: status,
        response_bytes: None,
    }
    .to_der()
    // An enumerated value in a sequence always encodes.
    .unwrap_or_else(|_| vec![0x30, 0x03, 0x0a, 0x01, status as u8])
}

/// `RevokedInfo`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct RevokedInfo {
    revocation_time: GeneralizedTime,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    revocation_reason: Option<CrlReason>,
}

/// `SingleResponse`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct SingleResponse {
    cert_id: CertId,
    /// The CertStatus CHOICE, already tagged.
    cert_status: Any,
    this_update: GeneralizedTime,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    next_update: Option<GeneralizedTime>,
}

/// `ResponseData` (version v1, left out as the DEFAULT).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct ResponseData {
    /// ResponderID byKey: `[2] EXPLICIT OCTET STRING`, already tagged.
    responder_id: Any,
    produced_at: GeneralizedTime,
    responses: Vec<SingleResponse>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    response_extensions: Option<Extensions>,
}

/// `BasicOCSPResponse` (no `certs`: the CA signs, the client has it).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct BasicOcspResponse {
    tbs_response_data: ResponseData,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
}

/// What the responder says about one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertStatus {
    /// Issued by this CA and not revoked.
    Good,
    /// Revoked at this time, with this CRLReason code.
    Revoked {
        /// revocationTime.
        at: SystemTime,
        /// The reason code (0, unspecified, is left out of the response).
        reason_code: u8,
    },
    /// Not a certificate this CA issued.
    Unknown,
}

/// One answer of a response.
#[derive(Clone, Debug)]
pub struct SingleAnswer {
    /// The CertID, as asked.
    pub cert_id: CertId,
    /// The status.
    pub status: CertStatus,
    /// thisUpdate.
    pub this_update: SystemTime,
    /// nextUpdate.
    pub next_update: SystemTime,
}

fn encoding(e: impl std::fmt::Display) -> IssueError {
    IssueError::Encoding(format!("OCSP response: {e}"))
}

fn tagged(number: u32, constructed: bool, content: Vec<u8>) -> der::Result<Any> {
    Any::new(
        Tag::ContextSpecific {
            constructed,
            number: TagNumber(number),
        },
        content,
    )
}

fn cert_status(status: &CertStatus) -> der::Result<Any> {
    match status {
        // good [0] IMPLICIT NULL, unknown [2] IMPLICIT NULL.
        CertStatus::Good => tagged(0, false, Vec::new()),
        CertStatus::Unknown => tagged(2, false, Vec::new()),
        // revoked [1] IMPLICIT RevokedInfo: the SEQUENCE's content under tag [1].
        CertStatus::Revoked { at, reason_code } => {
            let info = RevokedInfo {
                revocation_time: GeneralizedTime::from_system_time(*at)?,
                revocation_reason: reason(*reason_code),
            };
            let mut content = Vec::new();
            for field in [
                Some(info.revocation_time.to_der()?),
                info.revocation_reason
                    .map(|r| -> der::Result<Vec<u8>> { tagged(0, true, r.to_der()?)?.to_der() })
                    .transpose()?,
            ]
            .into_iter()
            .flatten()
            {
                content.extend_from_slice(&field);
            }
            tagged(1, true, content)
        }
    }
}

/// The ResponderID byKey: SHA-1 of the CA's public key (RFC 6960 §4.2.1).
pub fn responder_key_hash(issuer: &Issuer) -> Vec<u8> {
    use sha1::Digest;
    let cert = &issuer.chain()[0];
    sha1::Sha1::digest(
        cert.tbs_certificate()
            .subject_public_key_info()
            .subject_public_key
            .raw_bytes(),
    )
    .to_vec()
}

/// Builds and signs a successful response (DER `OCSPResponse`), with the
/// request's nonce extension echoed when given.
pub async fn sign_response(
    issuer: &Issuer,
    answers: &[SingleAnswer],
    produced_at: SystemTime,
    nonce: Option<&x509_cert::ext::Extension>,
) -> Result<Vec<u8>, IssueError> {
    let responses = answers
        .iter()
        .map(|a| -> der::Result<SingleResponse> {
            Ok(SingleResponse {
                cert_id: a.cert_id.clone(),
                cert_status: cert_status(&a.status)?,
                this_update: GeneralizedTime::from_system_time(a.this_update)?,
                next_update: Some(GeneralizedTime::from_system_time(a.next_update)?),
            })
        })
        .collect::<der::Result<Vec<_>>>()
        .map_err(encoding)?;
    let key_hash = OctetString::new(responder_key_hash(issuer)).map_err(encoding)?;
    let data = ResponseData {
        responder_id: tagged(2, true, key_hash.to_der().map_err(encoding)?).map_err(encoding)?,
        produced_at: GeneralizedTime::from_system_time(produced_at).map_err(encoding)?,
        responses,
        response_extensions: nonce.map(|n| vec![n.clone()]),
    };
    let tbs: Bytes = data.to_der().map_err(encoding)?.into();
    let signature = issuer.sign_message(tbs).await?;
    let basic = BasicOcspResponse {
        tbs_response_data: data,
        signature_algorithm: issuer.signature_algorithm(),
        signature: BitString::from_bytes(&signature).map_err(encoding)?,
    }
    .to_der()
    .map_err(encoding)?;
    OcspResponse {
        response_status: ResponseStatus::Successful,
        response_bytes: Some(ResponseBytes {
            response_type: ID_PKIX_OCSP_BASIC,
            response: OctetString::new(basic).map_err(encoding)?,
        }),
    }
    .to_der()
    .map_err(encoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_responses_are_the_three_byte_enumerations() {
        assert_eq!(
            error_response(ResponseStatus::MalformedRequest),
            [0x30, 0x03, 0x0a, 0x01, 0x01]
        );
        assert_eq!(
            error_response(ResponseStatus::TryLater),
            [0x30, 0x03, 0x0a, 0x01, 0x03]
        );
    }

    #[test]
    fn statuses_are_tagged_as_rfc_6960_says() {
        assert_eq!(
            cert_status(&CertStatus::Good).unwrap().to_der().unwrap(),
            [0x80, 0]
        );
        assert_eq!(
            cert_status(&CertStatus::Unknown).unwrap().to_der().unwrap(),
            [0x82, 0]
        );
        let revoked = cert_status(&CertStatus::Revoked {
            at: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
            reason_code: 1,
        })
        .unwrap()
        .to_der()
        .unwrap();
        // [1] constructed, GeneralizedTime, [0] { ENUMERATED 1 }.
        assert_eq!(revoked[0], 0xa1);
        assert_eq!(revoked[2], 0x18);
        assert_eq!(
            &revoked[revoked.len() - 5..],
            [0xa0, 0x03, 0x0a, 0x01, 0x01]
        );
    }

    #[test]
    fn garbage_and_empty_requests_are_refused() {
        assert!(OcspRequest::parse(b"not der").is_err());
        assert!(OcspRequest::parse(&[0x30, 0x00]).is_err());
        // tbsRequest with an empty requestList.
        assert!(OcspRequest::parse(&[0x30, 0x04, 0x30, 0x02, 0x30, 0x00])
            .unwrap_err()
            .contains("no certificate"));
    }
}
