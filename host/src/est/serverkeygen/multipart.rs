//! `multipart/mixed` (RFC 2046 §5.1) for the two-part `/serverkeygen`
//! answer (RFC 7030 §4.4.2): the private key, then the certificate.

/// One part: its media type and its already base64-encoded body.
pub struct Part<'a> {
    /// `Content-Type` of the part.
    pub content_type: &'a str,
    /// The part's body, base64 text.
    pub base64: &'a str,
}

/// A fresh boundary. It contains `-`, which base64 text never does, so it
/// cannot occur inside a part.
pub fn new_boundary() -> String {
    let mut bytes = [0u8; 12];
    // A predictable boundary is harmless (base64 bodies cannot contain it);
    // if the generator fails, a fixed one still frames correctly.
    let _ = getrandom::fill(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("est-part-{hex}")
}

/// `Content-Type` of the whole answer.
pub fn content_type(boundary: &str) -> String {
    format!("multipart/mixed; boundary={boundary}")
}

/// The body: each part with its headers, CRLF line ends, closing delimiter.
pub fn body(boundary: &str, parts: &[Part<'_>]) -> String {
    let mut out = String::new();
    for part in parts {
        out.push_str("--");
        out.push_str(boundary);
        out.push_str("\r\nContent-Type: ");
        out.push_str(part.content_type);
        out.push_str("\r\nContent-Transfer-Encoding: base64\r\n\r\n");
        out.push_str(part.base64.trim_end());
        out.push_str("\r\n");
    }
    out.push_str("--");
    out.push_str(boundary);
    out.push_str("--\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_two_parts() {
        let b = "est-part-00";
        let text = body(
            b,
            &[
                Part {
                    content_type: "application/pkcs8",
                    base64: "QUJD\nREVG\n",
                },
                Part {
                    content_type: "application/pkcs7-mime; smime-type=certs-only",
                    base64: "WFla",
                },
            ],
        );
        assert_eq!(
            text,
            "--est-part-00\r\nContent-Type: application/pkcs8\r\nContent-Transfer-Encoding: \
             base64\r\n\r\nQUJD\nREVG\r\n--est-part-00\r\nContent-Type: application/pkcs7-mime; \
             smime-type=certs-only\r\nContent-Transfer-Encoding: base64\r\n\r\nWFla\r\n\
             --est-part-00--\r\n"
        );
        assert!(new_boundary().starts_with("est-part-"));
        assert_ne!(new_boundary(), new_boundary());
        assert_eq!(content_type(b), "multipart/mixed; boundary=est-part-00");
    }
}
