//! Latency percentiles and error counts.
//!
//! Latencies are kept whole (one `u32` of microseconds per request: 400 KB
//! for 100,000 requests) and sorted at the end, so percentiles are exact;
//! a run of the length this tool is for never needs a histogram's
//! bucketing, nor its dependency.

use std::{collections::BTreeMap, time::Duration};

/// Every latency of the counted requests.
#[derive(Debug, Default)]
pub struct Latencies(Vec<u32>);

/// p50/p90/p99/max in milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Latencies {
    /// Adds one.
    pub fn record(&mut self, d: Duration) {
        self.0
            .push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
    }

    /// Adds all of another.
    pub fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    /// Nearest-rank percentiles (0 when empty).
    pub fn percentiles(&mut self) -> Percentiles {
        if self.0.is_empty() {
            return Percentiles::default();
        }
        self.0.sort_unstable();
        let n = self.0.len();
        let at = |p: f64| {
            let rank = ((p / 100.0) * n as f64).ceil() as usize;
            f64::from(self.0[rank.clamp(1, n) - 1]) / 1000.0
        };
        Percentiles {
            p50_ms: at(50.0),
            p90_ms: at(90.0),
            p99_ms: at(99.0),
            max_ms: f64::from(self.0[n - 1]) / 1000.0,
        }
    }
}

/// Errors by kind: the HTTP status (`"401"`), `"200-no-certificate"`,
/// `"timeout"`, `"connect"`, `"tls"`, `"http"`; with the first message of each.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Errors {
    /// How many of each kind.
    pub by_kind: BTreeMap<String, u64>,
    /// The first message seen for each kind.
    pub first_message: BTreeMap<String, String>,
}

impl Errors {
    /// Counts one.
    pub fn add(&mut self, kind: &str, message: impl FnOnce() -> String) {
        *self.by_kind.entry(kind.to_string()).or_default() += 1;
        if !self.first_message.contains_key(kind) {
            let mut m = message();
            m.truncate(300);
            self.first_message.insert(kind.to_string(), m);
        }
    }

    /// Adds all of another.
    pub fn merge(&mut self, other: Errors) {
        for (k, n) in other.by_kind {
            *self.by_kind.entry(k).or_default() += n;
        }
        for (k, m) in other.first_message {
            self.first_message.entry(k).or_insert(m);
        }
    }

    /// All errors.
    pub fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut l = Latencies::default();
        for ms in 1..=100u64 {
            l.record(Duration::from_millis(ms));
        }
        let p = l.percentiles();
        assert_eq!(
            (p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms),
            (50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(Latencies::default().percentiles().max_ms, 0.0);
    }

    #[test]
    fn errors_count_by_kind_and_keep_the_first_message() {
        let mut e = Errors::default();
        e.add("401", || "first".into());
        e.add("401", || "second".into());
        e.add("timeout", || "t".into());
        assert_eq!(e.total(), 3);
        assert_eq!(e.by_kind["401"], 2);
        assert_eq!(e.first_message["401"], "first");
    }
}
