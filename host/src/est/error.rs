//! The EST layer's one error type, turned once into an HTTP status and a
//! plain-text body that tells the client what was wrong.

use http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

/// What went wrong with an EST request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EstError {
    /// Malformed request (base64, DER, CSR signature) → 400.
    #[error("{0}")]
    BadRequest(String),
    /// No or bad credentials → 401 with a Basic challenge.
    #[error("{0}")]
    Unauthorized(String),
    /// Policy refusal → 403.
    #[error("{0}")]
    Forbidden(String),
    /// Unknown CA label or path → 404.
    #[error("{0}")]
    NotFound(String),
    /// Wrong method → 405.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Body over the limit → 413.
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    /// Wrong Content-Type → 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A rate limit (`[limits]`) → 429 with `Retry-After` (seconds).
    #[error("{what}: retry in {retry_after} s")]
    TooManyRequests {
        /// What was exceeded.
        what: String,
        /// Seconds until a retry can succeed.
        retry_after: u64,
    },
    /// Not implemented (fullcmc) → 501.
    #[error("{0}")]
    NotImplemented(String),
    /// HSM busy or unavailable, store unavailable → 503 with Retry-After.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure → 500.
    #[error("{0}")]
    Internal(String),
}

impl EstError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            EstError::BadRequest(_) => StatusCode::BAD_REQUEST,
            EstError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            EstError::Forbidden(_) => StatusCode::FORBIDDEN,
            EstError::NotFound(_) => StatusCode::NOT_FOUND,
            EstError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            EstError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            EstError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            EstError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            EstError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            EstError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            EstError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The response: status, `text/plain` body ending in a newline, and
    /// the headers the status needs (a Basic challenge, Retry-After, Allow).
    pub fn into_response(self, realm: &str) -> Response {
        let status = self.status();
        let body = format!("{self}\n");
        let mut response = Response::new(body.into());
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        match &self {
            EstError::Unauthorized(_) => {
                let realm = realm.replace(['"', '\\'], "");
                if let Ok(v) = HeaderValue::from_str(&format!("Basic realm=\"{realm}\"")) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            EstError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            EstError::TooManyRequests { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        response
    }
}
