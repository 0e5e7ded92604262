//! The Prometheus process metrics (`process_*`, as the Go and Python
//! clients export them), read from `/proc/self`: prometheus-client has no
//! process collector, and the few fields needed do not justify a crate.

use std::sync::{atomic::AtomicU64, Mutex};

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

type GaugeF = Gauge<f64, AtomicU64>;

pub(super) struct ProcessMetrics {
    cpu: Counter<f64, AtomicU64>,
    /// CPU seconds already added to `cpu` (a counter only goes up by deltas).
    cpu_seen: Mutex<f64>,
    rss: Gauge,
    vsize: Gauge,
    fds: Gauge,
    threads: Gauge,
    start: GaugeF,
}

/// Clock ticks per second: `sysconf(_SC_CLK_TCK)`, 100 on every Linux ABI
/// kipuka builds for.
const CLK_TCK: f64 = 100.0;
const PAGE: i64 = 4096;

impl ProcessMetrics {
    pub(super) fn register(r: &mut Registry) -> ProcessMetrics {
        let m = ProcessMetrics {
            cpu: Counter::default(),
            cpu_seen: Mutex::new(0.0),
            rss: Gauge::default(),
            vsize: Gauge::default(),
            fds: Gauge::default(),
            threads: Gauge::default(),
            start: GaugeF::default(),
        };
        r.register(
            "process_cpu_seconds",
            "User and system CPU time",
            m.cpu.clone(),
        );
        r.register(
            "process_resident_memory_bytes",
            "Resident set size",
            m.rss.clone(),
        );
        r.register(
            "process_virtual_memory_bytes",
            "Virtual memory size",
            m.vsize.clone(),
        );
        r.register("process_open_fds", "Open file descriptors", m.fds.clone());
        r.register("process_threads", "OS threads", m.threads.clone());
        r.register(
            "process_start_time_seconds",
            "Start time, seconds since the Unix epoch",
            m.start.clone(),
        );
        m
    }

    /// Reads `/proc/self/stat` and counts `/proc/self/fd`. A field that
    /// cannot be read keeps its last value.
    pub(super) fn sample(&self) {
        if let Some(stat) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| Stat::parse(&s))
        {
            let cpu = (stat.utime + stat.stime) as f64 / CLK_TCK;
            let mut seen = self.cpu_seen.lock().expect("cpu lock");
            if cpu > *seen {
                self.cpu.inc_by(cpu - *seen);
                *seen = cpu;
            }
            self.rss.set(stat.rss_pages * PAGE);
            self.vsize.set(stat.vsize as i64);
            self.threads.set(stat.threads);
            if let Some(boot) = boot_time() {
                self.start.set(boot + stat.starttime as f64 / CLK_TCK);
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.fds.set(dir.count() as i64);
        }
    }
}

/// The fields of `/proc/PID/stat` (proc(5)) we export.
#[derive(Debug, PartialEq)]
struct Stat {
    utime: u64,
    stime: u64,
    threads: i64,
    starttime: u64,
    vsize: u64,
    rss_pages: i64,
}

impl Stat {
    /// The command name (field 2) may hold spaces and parentheses: fields
    /// are counted from the last `)`.
    fn parse(s: &str) -> Option<Stat> {
        let rest = &s[s.rfind(')')? + 1..];
        // rest[0] is field 3 (state).
        let f: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| f.get(n - 3).copied();
        Some(Stat {
            utime: field(14)?.parse().ok()?,
            stime: field(15)?.parse().ok()?,
            threads: field(20)?.parse().ok()?,
            starttime: field(22)?.parse().ok()?,
            vsize: field(23)?.parse().ok()?,
            rss_pages: field(24)?.parse().ok()?,
        })
    }
}

/// `btime` of `/proc/stat`: boot time, seconds since the epoch.
fn boot_time() -> Option<f64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_command_name_with_spaces_and_parentheses() {
        let line = "4242 (kip (u) ka) S 1 4242 4242 0 -1 4194560 2000 0 0 0 \
                    150 50 0 0 20 0 7 0 123456 987654321 2500 18446744073709551615";
        assert_eq!(
            Stat::parse(line),
            Some(Stat {
                utime: 150,
                stime: 50,
                threads: 7,
                starttime: 123456,
                vsize: 987654321,
                rss_pages: 2500,
            })
        );
    }

    #[test]
    fn reads_this_process() {
        let s = std::fs::read_to_string("/proc/self/stat").unwrap();
        let stat = Stat::parse(&s).expect("parses");
        assert!(stat.threads >= 1 && stat.rss_pages > 0);
    }
}
