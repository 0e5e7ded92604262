//! `[server] max_connections_per_ip`: how many connections one source may
//! hold open at once, so that one host holding idle connections (or
//! stalling TLS handshakes) cannot take every slot of `max_connections`
//! from everyone else. A connection over the limit is closed as soon as it
//! is accepted, before any TLS or HTTP work.
//!
//! A source is an IPv4 address, or an IPv6 /64 (one host commonly owns a
//! whole /64, so counting single IPv6 addresses would limit nothing).
//! IPv4-mapped IPv6 addresses count as their IPv4 address.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

/// The source a connection is counted against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    /// The source of a connection from `ip`.
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(_) => Source(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Source(IpAddr::V6(prefix.into()))
                }
            },
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[derive(Debug, Default)]
struct Open {
    connections: usize,
    /// Refused since the source last fell to half its limit (for logging
    /// once per episode, not once per connection: a source that closes
    /// one connection and opens two, again and again, is one episode).
    refused: u64,
}

/// The open connections per source, and the limit.
#[derive(Debug)]
pub struct PerIpLimit {
    limit: usize,
    open: Mutex<HashMap<Source, Open>>,
}

/// Why [`PerIpLimit::enter`] refused a connection.
#[derive(Debug, PartialEq, Eq)]
pub struct OverLimit {
    /// The source, as counted.
    pub source: Source,
    /// The first refusal since the source was below its limit.
    pub first: bool,
}

/// One counted connection; dropping it gives the slot back.
#[derive(Debug)]
pub struct IpSlot {
    owner: Arc<PerIpLimit>,
    source: Source,
}

impl PerIpLimit {
    /// At most `limit` connections per source (at least 1).
    pub fn new(limit: usize) -> Arc<PerIpLimit> {
        Arc::new(PerIpLimit {
            limit: limit.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    fn open(&self) -> MutexGuard<'_, HashMap<Source, Open>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a connection from `ip`, unless its source is at the limit.
    pub fn enter(self: &Arc<Self>, ip: IpAddr) -> Result<IpSlot, OverLimit> {
        let source = Source::of(ip);
        let mut open = self.open();
        let entry = open.entry(source).or_default();
        if entry.connections >= self.limit {
            entry.refused += 1;
            return Err(OverLimit {
                source,
                first: entry.refused == 1,
            });
        }
        entry.connections += 1;
        Ok(IpSlot {
            owner: self.clone(),
            source,
        })
    }

    /// Connections open from `ip`'s source.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.open()
            .get(&Source::of(ip))
            .map_or(0, |o| o.connections)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open();
        if let Some(entry) = open.get_mut(&self.source) {
            entry.connections = entry.connections.saturating_sub(1);
            if entry.connections <= self.owner.limit / 2 {
                entry.refused = 0;
            }
            if entry.connections == 0 {
                open.remove(&self.source);
            }
        }
    }
}

/// Counts the connection from `ip` on `limit`, or says why not: a warning
/// the first time a source goes over its limit, then debug lines.
pub fn admit(limit: &Arc<PerIpLimit>, ip: IpAddr, listener: &'static str) -> Option<IpSlot> {
    match limit.enter(ip) {
        Ok(slot) => Some(slot),
        Err(over) => {
            crate::metrics::rate_limited("max_connections_per_ip");
            if over.first {
                tracing::warn!(
                    source = %over.source,
                    max_connections_per_ip = limit.limit,
                    listener,
                    "connection limit per source reached; its further connections are closed until one ends"
                );
            } else {
                tracing::debug!(source = %over.source, listener, "connection over the per-source limit closed");
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_gets_its_limit_and_slots_come_back() {
        let limit = PerIpLimit::new(2);
        let a = limit.enter(ip("192.0.2.1")).unwrap();
        let _b = limit.enter(ip("192.0.2.1")).unwrap();
        let over = limit.enter(ip("192.0.2.1")).unwrap_err();
        assert!(over.first);
        assert!(!limit.enter(ip("192.0.2.1")).unwrap_err().first);
        // Another source is not affected.
        let _c = limit.enter(ip("192.0.2.2")).unwrap();
        drop(a);
        assert_eq!(limit.open_from(ip("192.0.2.1")), 1);
        let d = limit.enter(ip("192.0.2.1")).unwrap();
        assert!(
            limit.enter(ip("192.0.2.1")).unwrap_err().first,
            "a new episode once down to half the limit"
        );
        drop((_b, _c, d));
        assert!(limit.open().is_empty(), "no entry left behind");
    }

    #[test]
    fn churning_at_the_limit_is_one_episode() {
        let limit = PerIpLimit::new(4);
        let mut open: Vec<IpSlot> = (0..4)
            .map(|_| limit.enter(ip("192.0.2.9")).unwrap())
            .collect();
        assert!(limit.enter(ip("192.0.2.9")).unwrap_err().first);
        for _ in 0..3 {
            open.pop();
            open.push(limit.enter(ip("192.0.2.9")).unwrap());
            assert!(!limit.enter(ip("192.0.2.9")).unwrap_err().first);
        }
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            Source::of(ip("2001:db8:1:2:aaaa::1")),
            Source::of(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            Source::of(ip("::ffff:192.0.2.7")),
            Source::of(ip("192.0.2.7"))
        );
        assert_eq!(
            Source::of(ip("2001:db8:1:2:aaaa::1")).to_string(),
            "2001:db8:1:2::/64"
        );
    }
}
