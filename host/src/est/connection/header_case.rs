//! Response header names on the wire in the spelling of the RFCs.
//!
//! HTTP header names are case-insensitive, but EST clients written in C for
//! devices often compare them byte for byte (`WWW-Authenticate`,
//! `Content-Transfer-Encoding`, ...). hyper writes names in lower case, or
//! with `title_case_headers` as `Www-Authenticate`, which such a client does
//! not recognise.
//!
//! The one way hyper's public API offers to put a given spelling on the wire
//! is the one behind `preserve_header_case`: a map of spellings carried in a
//! message's extensions, which hyper's HTTP/1 encoder consults for every
//! header it writes (its own `Date` and `Content-Length` included). Its type
//! is private to hyper, and hyper fills it only while parsing a message. So
//! at start-up we let hyper parse one request, in memory, whose header names
//! are spelled as they must go out, keep the extensions hyper recorded for
//! it, and copy them into every response. Names not in the map fall back to
//! title case. If a future hyper stopped doing this, the byte-exact test in
//! `tests/tests/strict_clients.rs` fails; nothing else would break.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http::{Extensions, Request, Response};
use http_body_util::Empty;
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The spellings every response uses, as RFC 7230, 7231, 7234, 7235, 6266,
/// 7030 and 5019 write them. Each appears once per response at most.
pub const CANONICAL: &[&str] = &[
    "WWW-Authenticate",
    "Content-Type",
    "Content-Length",
    "Content-Transfer-Encoding",
    "Content-Disposition",
    "Retry-After",
    "Date",
    "Allow",
    "Connection",
    "Cache-Control",
    "ETag",
    "Expires",
    "Last-Modified",
    "X-Request-Id",
];

/// Extensions that make hyper write [`CANONICAL`]'s spellings; copy them
/// into each response with [`Extensions::extend`].
#[derive(Clone, Debug, Default)]
pub struct HeaderSpellings(Extensions);

impl HeaderSpellings {
    /// Asks hyper to parse a request spelled with [`CANONICAL`]'s names and
    /// keeps what it recorded. Fails only if hyper cannot parse it, which
    /// would be a bug.
    pub async fn learn() -> Result<HeaderSpellings, String> {
        let mut request = String::from("GET / HTTP/1.1\r\nHost: localhost\r\n");
        for name in CANONICAL {
            // A GET may not carry a body: its length is 0.
            let value = if name.eq_ignore_ascii_case("content-length") {
                "0"
            } else {
                "x"
            };
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");

        let (mut client, server) = tokio::io::duplex(8192);
        let seen: Arc<Mutex<Option<Extensions>>> = Arc::default();
        let keep = seen.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            if let Ok(mut slot) = keep.lock() {
                *slot = Some(req.extensions().clone());
            }
            async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) }
        });
        let conn = http1::Builder::new()
            .preserve_header_case(true)
            .keep_alive(false)
            .serve_connection(TokioIo::new(server), service);
        let talk = async move {
            client.write_all(request.as_bytes()).await?;
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).await?;
            Ok::<_, std::io::Error>(())
        };
        let (served, talked) = tokio::join!(conn, talk);
        served.map_err(|e| format!("hyper refused the header-spelling request: {e}"))?;
        talked.map_err(|e| format!("in-memory exchange failed: {e}"))?;
        let extensions = seen
            .lock()
            .map_err(|_| "header-spelling slot poisoned".to_string())?
            .take()
            .ok_or("hyper never called the service")?;
        Ok(HeaderSpellings(extensions))
    }

    /// Puts the spellings on `response`.
    pub fn apply<B>(&self, response: &mut Response<B>) {
        response.extensions_mut().extend(self.0.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves one response with `headers` through hyper and returns the
    /// bytes hyper wrote.
    async fn wire_bytes(spellings: &HeaderSpellings, headers: &[(&str, &str)]) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(8192);
        let spellings = spellings.clone();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
            let mut response = Response::new(http_body_util::Full::new(Bytes::from("hi\n")));
            for (n, v) in &headers {
                response.headers_mut().insert(
                    http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    http::HeaderValue::from_str(v).unwrap(),
                );
            }
            spellings.apply(&mut response);
            async { Ok::<_, Infallible>(response) }
        });
        let conn = http1::Builder::new()
            .title_case_headers(true)
            .keep_alive(false)
            .serve_connection(TokioIo::new(server), service);
        let talk = async move {
            client
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).await.unwrap();
            answer
        };
        let (served, answer) = tokio::join!(conn, talk);
        served.unwrap();
        answer
    }

    #[tokio::test]
    async fn responses_carry_the_rfc_spellings_and_title_case_for_the_rest() {
        let spellings = HeaderSpellings::learn().await.unwrap();
        let wire = wire_bytes(
            &spellings,
            &[
                ("www-authenticate", "Basic realm=\"kipuka\""),
                ("content-type", "text/plain"),
                ("content-transfer-encoding", "base64"),
                ("retry-after", "5"),
                ("x-custom-thing", "1"),
            ],
        )
        .await;
        let text = String::from_utf8(wire).unwrap();
        let head = text.split("\r\n\r\n").next().unwrap();
        for line in [
            "WWW-Authenticate: Basic realm=\"kipuka\"",
            "Content-Type: text/plain",
            "Content-Transfer-Encoding: base64",
            "Retry-After: 5",
            "Content-Length: 3",
            "X-Custom-Thing: 1",
        ] {
            assert!(
                head.lines().any(|l| l == line),
                "{line:?} missing in:\n{head}"
            );
        }
        assert!(head.lines().any(|l| l.starts_with("Date: ")), "{head}");
    }

    #[tokio::test]
    async fn without_the_spellings_hyper_title_cases_www_authenticate_wrongly() {
        // The reason this module exists: title case alone is not the RFC's spelling.
        let wire = wire_bytes(
            &HeaderSpellings::default(),
            &[("www-authenticate", "Basic")],
        )
        .await;
        let text = String::from_utf8(wire).unwrap();
        assert!(text.contains("\r\nWww-Authenticate: Basic\r\n"), "{text}");
    }
}
