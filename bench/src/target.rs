//! `--url`: where the enrollments go.

use crate::error::BenchError;

/// A parsed enrollment URL.
#[derive(Clone, Debug)]
pub struct Target {
    /// As given.
    pub url: String,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Path (and query) to POST to.
    pub path: String,
    /// The local address to connect from (`--source`); None: the system's choice.
    pub source: Option<std::net::IpAddr>,
}

impl Target {
    /// Parses an `https://host[:port]/.well-known/est[/label]/simpleenroll` URL.
    pub fn parse(url: &str) -> Result<Self, BenchError> {
        let t = Self::parse_https(url)?;
        if !t.path.starts_with("/.well-known/est/") {
            return Err(BenchError::BadUrl {
                url: url.to_string(),
                reason:
                    "the path must be /.well-known/est[/LABEL]/simpleenroll (or simplereenroll)"
                        .into(),
            });
        }
        Ok(t)
    }

    /// Parses the `https://host[:port]/PATH` URL of an OCSP responder
    /// (kipuka's is `/ocsp/LABEL`).
    pub fn parse_ocsp(url: &str) -> Result<Self, BenchError> {
        let t = Self::parse_https(url)?;
        if t.path.is_empty() || t.path == "/" {
            return Err(BenchError::BadUrl {
                url: url.to_string(),
                reason: "no path: kipuka's OCSP responder is at /ocsp/LABEL".into(),
            });
        }
        Ok(t)
    }

    fn parse_https(url: &str) -> Result<Self, BenchError> {
        let bad = |reason: &str| BenchError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        match uri.scheme_str() {
            Some("https") => {}
            Some(other) => {
                return Err(bad(&format!(
                    "the scheme is {other}; this load generator speaks TLS only: use https://"
                )))
            }
            None => return Err(bad("no scheme: use https://HOST:PORT/...")),
        }
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        Ok(Target {
            url: url.to_string(),
            host,
            port: uri.port_u16().unwrap_or(443),
            path,
            source: None,
        })
    }

    /// `host:port` for messages and the `Host` header.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_est_urls_and_refuses_others() {
        let t = Target::parse("https://127.0.0.1:8443/.well-known/est/rsa/simpleenroll").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 8443));
        assert_eq!(t.path, "/.well-known/est/rsa/simpleenroll");
        assert_eq!(
            Target::parse("https://[::1]/.well-known/est/simpleenroll")
                .unwrap()
                .authority(),
            "[::1]:443"
        );
        for bad in [
            "http://127.0.0.1:8443/.well-known/est/simpleenroll",
            "127.0.0.1:8443",
            "https://127.0.0.1:8443/simpleenroll",
            "https://",
            "not a url at all",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Target::parse_ocsp("https://127.0.0.1:8443/ocsp/rsa")
                .unwrap()
                .path,
            "/ocsp/rsa"
        );
        assert!(Target::parse_ocsp("https://127.0.0.1:8443/").is_err());
        assert!(Target::parse_ocsp("http://127.0.0.1:8080/ocsp/rsa").is_err());
    }
}
