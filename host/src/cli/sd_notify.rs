//! systemd's service notification protocol (sd_notify(3)): `READY=1` once the
//! server serves, `RELOADING=1` / `READY=1` around a reload, `STOPPING=1` at
//! shutdown and `WATCHDOG=1` keep-alives when the unit sets `WatchdogSec=`.
//!
//! The protocol is one datagram of `KEY=VALUE` lines on the unix socket named
//! by `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). That
//! is a dozen lines over `std::os::unix::net::UnixDatagram`, so no crate:
//! libsystemd is not linked, and outside systemd (no `NOTIFY_SOCKET`)
//! every call is a no-op.

use std::{
    os::unix::net::{SocketAddr, UnixDatagram},
    time::Duration,
};

/// Where to send notifications; `None` when not started by systemd.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`; `None` when unset, empty or unusable (logged).
    pub fn from_env() -> Option<Notifier> {
        let name = std::env::var_os("NOTIFY_SOCKET")?;
        let name = name.to_str()?;
        if name.is_empty() {
            return None;
        }
        match Self::connect(name) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(socket = name, error = %e, "NOTIFY_SOCKET unusable: systemd will not hear from kipuka");
                None
            }
        }
    }

    fn connect(name: &str) -> std::io::Result<Notifier> {
        let to = match name.strip_prefix('@') {
            Some(abstract_name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(abstract_name.as_bytes())?
            }
            None if name.starts_with('/') => SocketAddr::from_pathname(name)?,
            None => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "neither an absolute path nor @abstract",
                ))
            }
        };
        Ok(Notifier {
            socket: UnixDatagram::unbound()?,
            to,
        })
    }

    /// Sends `state` (newline-separated `KEY=VALUE` lines); a failure is
    /// logged, never fatal: the server serves whether systemd hears or not.
    pub fn send(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.to) {
            tracing::warn!(error = %e, state, "sd_notify failed");
        }
    }

    /// `READY=1`: the HSM, the store and every listener are up.
    pub fn ready(&self) {
        self.send("READY=1\nSTATUS=serving");
    }

    /// `RELOADING=1` with the `MONOTONIC_USEC` systemd ≥ 253 wants for
    /// `Type=notify-reload` (older versions ignore it).
    pub fn reloading(&self) {
        self.send(&format!(
            "RELOADING=1\nSTATUS=reloading the configuration\nMONOTONIC_USEC={}",
            monotonic_usec()
        ));
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=finishing requests in flight");
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares with.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3)
/// advises; `None` without a watchdog or when `WATCHDOG_PID` names another process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abstract_and_path_sockets_receive_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        Notifier::connect(path.to_str().unwrap()).unwrap().ready();
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("kipuka-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::connect(&format!("@{name}")).unwrap().stopping();
        let n = listener.recv(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"STOPPING=1\n"));

        assert!(Notifier::connect("relative/path").is_err());
    }
}
