//! A graceful close for connections whose client may still be sending.
//!
//! When the server closes a TCP connection while unread bytes from the
//! client are still arriving, the kernel answers them with a reset, and a
//! reset makes the client's kernel throw away what it received but the
//! client has not read yet: the answer the server just sent (a 413, a 401).
//! So a connection that closes with a request body still unread first shuts
//! down its sending side (TLS close_notify, then TCP FIN), then keeps reading
//! and discarding for a short, bounded time — until the client closes too,
//! until it has been quiet for [`LINGER_IDLE`], or for [`LINGER_MAX`] at most
//! — and only then closes. This is what Apache calls a lingering close.
//!
//! Connections without unread input close as before, at once.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{ready, Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::{Instant, Sleep},
};

/// Longest wait for more input from a client once the answer is sent.
pub const LINGER_IDLE: Duration = Duration::from_secs(2);
/// Longest lingering close in all.
pub const LINGER_MAX: Duration = Duration::from_secs(10);

/// A stream whose underlying TCP socket can be read directly, after the
/// layers above it (TLS) have said goodbye.
pub trait RawTcp {
    /// The TCP socket.
    fn raw_tcp(&mut self) -> &mut TcpStream;
}

impl RawTcp for TcpStream {
    fn raw_tcp(&mut self) -> &mut TcpStream {
        self
    }
}

impl RawTcp for tokio_rustls::server::TlsStream<TcpStream> {
    fn raw_tcp(&mut self) -> &mut TcpStream {
        self.get_mut().0
    }
}

/// Set by the request handling when an answer leaves input unread: the
/// connection then closes with a linger.
#[derive(Clone, Debug, Default)]
pub struct LingerFlag(Arc<AtomicBool>);

impl LingerFlag {
    /// This connection must linger when it closes.
    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

enum State {
    Open,
    Lingering {
        total: Pin<Box<Sleep>>,
        idle: Pin<Box<Sleep>>,
    },
    Closed,
}

/// `S` with a lingering close (see the module documentation).
pub struct Lingering<S> {
    inner: S,
    flag: LingerFlag,
    state: State,
}

impl<S> Lingering<S> {
    /// Wraps `inner`; it lingers at shutdown once `flag` is set.
    pub fn new(inner: S, flag: LingerFlag) -> Lingering<S> {
        Lingering {
            inner,
            flag,
            state: State::Open,
        }
    }
}

impl<S: RawTcp + Unpin> Lingering<S> {
    /// Reads and discards until the client closes, goes quiet, or the
    /// total time is up.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let State::Lingering { total, idle } = &mut self.state else {
            return Poll::Ready(());
        };
        let mut scratch = [0u8; 4096];
        loop {
            if total.as_mut().poll(cx).is_ready() || idle.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(self.inner.raw_tcp()).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(()), // EOF
                Poll::Ready(Ok(())) => idle.as_mut().reset(Instant::now() + LINGER_IDLE),
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Lingering<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + RawTcp + Unpin> AsyncWrite for Lingering<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match this.state {
                State::Open => {
                    // close_notify and FIN first: the client learns the answer is complete.
                    let shut = ready!(Pin::new(&mut this.inner).poll_shutdown(cx));
                    if shut.is_err() || !this.flag.is_set() {
                        this.state = State::Closed;
                        return Poll::Ready(shut);
                    }
                    let now = Instant::now();
                    this.state = State::Lingering {
                        total: Box::pin(tokio::time::sleep_until(now + LINGER_MAX)),
                        idle: Box::pin(tokio::time::sleep_until(now + LINGER_IDLE)),
                    };
                }
                State::Lingering { .. } => {
                    ready!(this.poll_linger(cx));
                    this.state = State::Closed;
                }
                State::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}
