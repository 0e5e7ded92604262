//! Request bodies that an early answer did not read.
//!
//! A handler may answer before it reads the body: a 401 challenge, a 403,
//! 404, 405 or 415 is decided from the headers alone. hyper then cannot
//! reuse the connection (the unread body is still on the wire) and closes
//! it, and a client that is still sending its CSR gets a reset instead of
//! the answer. Clients that send the request, read the challenge and retry
//! with credentials never get to retry.
//!
//! So each request's body is handed to the routes as a [`TrackedBody`]; if
//! the routes drop it unfinished, it comes back through an [`Unread`] slot,
//! and [`settle`] reads and discards the rest (within the body limits)
//! before the answer goes out, if the routes never began reading it. If
//! they began and gave up (too large, too slow), or the rest is over the
//! limit or too slow, the answer says `Connection: close` and the
//! connection closes gracefully ([`super::linger`]).

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// A body the routes dropped unfinished.
struct Left {
    body: Incoming,
    /// The routes had begun reading it: they stopped on purpose (too large,
    /// too slow, broken), and it is not read any further.
    begun: bool,
}

/// Where a body the routes dropped unfinished is put back.
#[derive(Clone, Default)]
pub struct Unread(Arc<Mutex<Option<Left>>>);

impl Unread {
    fn put(&self, left: Left) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(left);
        }
    }

    fn take(&self) -> Option<Left> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// A request body that returns itself to an [`Unread`] slot when dropped
/// before its end.
pub struct TrackedBody {
    inner: Option<Incoming>,
    begun: bool,
    ended: bool,
    unread: Unread,
}

impl TrackedBody {
    /// Wraps `body`; an unfinished drop puts it into `unread`.
    pub fn new(body: Incoming, unread: Unread) -> TrackedBody {
        TrackedBody {
            inner: Some(body),
            begun: false,
            ended: false,
            unread,
        }
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        self.begun = true;
        if let Poll::Ready(None) = polled {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        if let Some(body) = self.inner.take() {
            if !self.ended && !body.is_end_stream() {
                self.unread.put(Left {
                    body,
                    begun: self.begun,
                });
            }
        }
    }
}

/// How much of an unread body may still be read, and for how long.
#[derive(Clone, Copy, Debug)]
pub struct DrainLimits {
    /// Bytes (the server's `max_body_bytes`).
    pub max_bytes: usize,
    /// Time (the server's request timeout).
    pub timeout: Duration,
}

/// What [`settle`] did about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// The body was read to its end (or there was none): the connection
    /// stays usable.
    KeepAlive,
    /// The rest of the body could not be read within the limits: the
    /// answer says `Connection: close`, and the connection must close
    /// gracefully.
    Close,
}

/// Before `response` goes out: reads and discards what the routes left of
/// the request body, or marks the response `Connection: close`.
pub async fn settle<B>(
    unread: &Unread,
    response: &mut Response<B>,
    limits: DrainLimits,
) -> Settled {
    let Some(left) = unread.take() else {
        return Settled::KeepAlive;
    };
    // A body the routes began and gave up on, or one over the limit (what
    // a 413 says, perhaps from its Content-Length alone), is not read any
    // further.
    let drained = !left.begun
        && response.status() != StatusCode::PAYLOAD_TOO_LARGE
        && drain(left.body, limits).await.is_ok();
    if drained {
        return Settled::KeepAlive;
    }
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Settled::Close
}

/// Why a body could not be drained.
#[derive(Debug)]
enum DrainError {
    TooLarge,
    TimedOut,
    Broken,
}

async fn drain(mut body: Incoming, limits: DrainLimits) -> Result<(), DrainError> {
    let read = async {
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| DrainError::Broken)?;
            if let Some(data) = frame.data_ref() {
                seen = seen.saturating_add(data.len());
                if seen > limits.max_bytes {
                    return Err(DrainError::TooLarge);
                }
            }
        }
        Ok(())
    };
    let result = tokio::time::timeout(limits.timeout, read)
        .await
        .unwrap_or(Err(DrainError::TimedOut));
    if let Err(e) = &result {
        tracing::debug!(reason = ?e, "unread request body not drained; closing the connection");
    }
    result
}
