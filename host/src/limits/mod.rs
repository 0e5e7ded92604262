//! Rate limits (`[limits]`): token buckets kept in this process's memory.
//!
//! - Enrollments per requester (Basic user, enrollment code, client
//!   certificate subject) and per source IP address: `enrollments_per_hour`
//!   with `burst`.
//! - Failed authentications per source IP and per user name:
//!   `failed_auth_per_minute` with `failed_auth_burst`. They are checked
//!   *before* argon2 runs, so a password flood from one address costs a map
//!   lookup, not a core.
//!
//! Each kipuka process applies its own limits: N instances behind a load
//! balancer allow up to N times as much. A refusal says when to retry
//! (HTTP 429, `Retry-After`).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::config::LimitsConfig;

/// Buckets kept per limiter before full (idle) ones are forgotten.
const MAX_KEYS: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One token bucket per key.
#[derive(Debug)]
pub struct Limiter {
    /// Tokens per second.
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    /// `per_period` tokens each `period`, at most `burst` saved up. None
    /// when `per_period` is 0 (no limit).
    pub fn new(per_period: u32, period: Duration, burst: u32) -> Option<Limiter> {
        (per_period > 0).then(|| Limiter {
            rate: f64::from(per_period) / period.as_secs_f64(),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now;
    }

    fn wait_for_one(&self, b: &Bucket) -> Duration {
        Duration::from_secs_f64(((1.0 - b.tokens) / self.rate).max(0.0))
    }

    /// Whether `key` has a token now (none is taken): else how long until it has.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let Some(b) = buckets.get_mut(key) else {
            return Ok(());
        };
        self.refill(b, now);
        if b.tokens >= 1.0 {
            Ok(())
        } else {
            Err(self.wait_for_one(b))
        }
    }

    /// Takes a token for `key`, or says how long until one is there.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(key) {
            // Forget the buckets that have refilled: they hold nothing.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
        }
        let b = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        self.refill(b, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.wait_for_one(b))
        }
    }
}

/// Why a request was limited: for HTTP 429.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// What was exceeded, for the client.
    pub what: String,
    /// Whole seconds until a retry can succeed (at least 1).
    pub retry_after: u64,
}

/// `limit` names the `[limits]` entry, for `kipuka_rate_limited`.
fn limited(limit: &'static str, what: String, wait: Duration) -> Limited {
    crate::metrics::rate_limited(limit);
    Limited {
        what,
        retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
    }
}

/// The limits of one process.
#[derive(Debug)]
pub struct Limits {
    enroll_by_requester: Option<Limiter>,
    enroll_by_ip: Option<Limiter>,
    failures_by_ip: Option<Limiter>,
    failures_by_user: Option<Limiter>,
}

impl Limits {
    /// From `[limits]`.
    pub fn new(c: &LimitsConfig) -> Self {
        let hour = Duration::from_secs(3600);
        let minute = Duration::from_secs(60);
        Limits {
            enroll_by_requester: Limiter::new(c.enrollments_per_hour, hour, c.burst),
            enroll_by_ip: Limiter::new(c.enrollments_per_hour_per_ip, hour, c.burst),
            failures_by_ip: Limiter::new(c.failed_auth_per_minute, minute, c.failed_auth_burst),
            failures_by_user: Limiter::new(c.failed_auth_per_minute, minute, c.failed_auth_burst),
        }
    }

    /// Before a password is checked: refused while `ip` or `user` has used
    /// up its failed attempts.
    pub fn before_password(&self, ip: Option<IpAddr>, user: &str) -> Result<(), Limited> {
        let now = Instant::now();
        if let (Some(l), Some(ip)) = (&self.failures_by_ip, ip) {
            l.check(&ip.to_string(), now).map_err(|w| {
                limited(
                    "failed_auth_by_ip",
                    format!("too many failed authentications from {ip}"),
                    w,
                )
            })?;
        }
        if let Some(l) = &self.failures_by_user {
            l.check(user, now).map_err(|w| {
                limited(
                    "failed_auth_by_user",
                    format!("too many failed authentications as {user}"),
                    w,
                )
            })?;
        }
        Ok(())
    }

    /// After a failed password check.
    pub fn password_failed(&self, ip: Option<IpAddr>, user: &str) {
        let now = Instant::now();
        if let (Some(l), Some(ip)) = (&self.failures_by_ip, ip) {
            let _ = l.take(&ip.to_string(), now);
        }
        if let Some(l) = &self.failures_by_user {
            let _ = l.take(user, now);
        }
    }

    /// An enrollment by `requester` (`basic:alice`, `code:...`, `cert:...`)
    /// from `ip`: takes a token from each, or says when to come back.
    pub fn enrollment(&self, requester: &str, ip: Option<IpAddr>) -> Result<(), Limited> {
        let now = Instant::now();
        if let (Some(l), Some(ip)) = (&self.enroll_by_ip, ip) {
            l.take(&ip.to_string(), now).map_err(|w| {
                limited("enroll_by_ip", format!("too many enrollments from {ip}"), w)
            })?;
        }
        if let Some(l) = &self.enroll_by_requester {
            l.take(requester, now).map_err(|w| {
                limited(
                    "enroll_by_requester",
                    format!("too many enrollments by {requester}"),
                    w,
                )
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_then_refills_at_its_rate() {
        let l = Limiter::new(60, Duration::from_secs(60), 3).unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take("a", t0).is_ok());
        }
        let wait = l.take("a", t0).unwrap_err();
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::ZERO,
            "{wait:?}"
        );
        // Other keys are not affected.
        assert!(l.take("b", t0).is_ok());
        // One per second comes back.
        assert!(l.take("a", t0 + Duration::from_millis(1000)).is_ok());
        assert!(l.take("a", t0 + Duration::from_millis(1000)).is_err());
        // `check` takes nothing.
        assert!(l.check("c", t0).is_ok());
        assert!(l.check("a", t0 + Duration::from_secs(5)).is_ok());
        assert!(Limiter::new(0, Duration::from_secs(1), 5).is_none());
    }

    #[test]
    fn failed_passwords_close_the_door_before_argon2() {
        let limits = Limits::new(&LimitsConfig {
            failed_auth_per_minute: 6,
            failed_auth_burst: 2,
            ..LimitsConfig::default()
        });
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        assert!(limits.before_password(Some(ip), "alice").is_ok());
        limits.password_failed(Some(ip), "mallory");
        limits.password_failed(Some(ip), "mallory");
        let refused = limits.before_password(Some(ip), "alice").unwrap_err();
        assert!(refused.what.contains("192.0.2.9"), "{refused:?}");
        assert!((1..=10).contains(&refused.retry_after));
        // Another address, same user name: that name is limited too.
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        assert!(limits.before_password(Some(other), "mallory").is_err());
        assert!(limits.before_password(Some(other), "alice").is_ok());
    }
}
