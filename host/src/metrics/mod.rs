//! Prometheus metrics: what the other layers count and time, and the
//! `[metrics] listen` endpoint that serves them ([`listener`]).
//!
//! The crate is `prometheus-client`, the Prometheus project's own Rust
//! client: typed families with derived label sets (so a label cannot be
//! misspelled at one call site), histograms, and the text exposition — no
//! global macros, no exporter thread of its own.
//!
//! The interface is a handful of free functions ([`est_request`],
//! [`hsm_sign`], [`certificate_issued`], ...). Until [`install`] runs (only
//! when `[metrics] listen` is set) they do nothing beyond one atomic load,
//! so a server without metrics pays nothing. Gauges that describe a state
//! (session pools, token health, CRL age, the process) are read at scrape
//! time by the samplers that `cli::serve` registers ([`add_sampler`]).
//!
//! Labels have bounded cardinality: CA ids come from the configuration,
//! operations and statuses from fixed lists ([`operation_label`]), CKR codes
//! from the PKCS#11 list. Never a serial, a user name or a path segment a
//! client chose.

pub mod listener;
mod process;

use std::{
    sync::{Mutex, OnceLock},
    time::Duration,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// The EST operations (and the other paths) a request can be counted as.
/// Anything else a client asks for is `unknown`.
const OPERATIONS: &[&str] = &[
    "cacerts",
    "csrattrs",
    "simpleenroll",
    "simplereenroll",
    "serverkeygen",
    "fullcmc",
];

/// `operation` as a label: one of the EST operations, else `unknown`.
pub fn operation_label(operation: &str) -> &'static str {
    OPERATIONS
        .iter()
        .find(|o| **o == operation)
        .copied()
        .unwrap_or("unknown")
}

/// The `ca` label of a request that named no CA we serve.
pub const NO_CA: &str = "unknown";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    ca: String,
    operation: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    ca: String,
    operation: &'static str,
}

/// Labels of `kipuka_hsm_sign_duration_seconds`, fixed per CA at start-up.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignLabels {
    /// The `[[ca]]` id.
    pub ca: String,
    /// The vendor plugin (`kryoptic`, ...), or `software` for the ML-DSA fallback.
    pub plugin: String,
    /// The mechanism (`CKM_ECDSA`, ...).
    pub mechanism: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CaLabels {
    ca: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabels {
    pool: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    abi_versions: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Run at every scrape to set the gauges that describe a state.
type Sampler = Box<dyn Fn(&Sample<'_>) + Send + Sync>;

/// Request latency: 1 ms to ~16 s.
fn request_buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 15,
    ))
}

/// HSM and store latency: 100 µs to ~1.6 s.
fn fast_buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 2.0, 15,
    ))
}

/// Every metric, registered once in [`Metrics::registry`].
struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Histograms<OperationLabels>,
    sign_duration: Histograms<SignLabels>,
    hsm_errors: Family<CkrLabels, Counter>,
    sessions: Family<SessionLabels, Gauge>,
    token_health: Family<PoolLabels, Gauge>,
    issued: Family<CaLabels, Counter>,
    revoked: Family<CaLabels, Gauge>,
    crl_age: Family<CaLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    ocsp: Family<StatusLabels, Counter>,
    code_uses: Family<CodeLabels, Counter>,
    rate_limited: Family<LimitLabels, Counter>,
    store_duration: Histograms<StoreLabels>,
    process: process::ProcessMetrics,
    samplers: Mutex<Vec<Sampler>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CkrLabels {
    code: String,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

fn get() -> Option<&'static Metrics> {
    METRICS.get()
}

/// Turns the metrics on for this process (idempotent). Until then every
/// recording function is a no-op.
pub fn install() {
    METRICS.get_or_init(Metrics::new);
}

/// Whether [`install`] ran.
pub fn enabled() -> bool {
    get().is_some()
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "kipuka_est_requests",
            "HTTP requests answered, by CA, operation and status",
            requests.clone(),
        );
        let request_duration: Histograms<OperationLabels> =
            Family::new_with_constructor(request_buckets);
        registry.register(
            "kipuka_est_request_duration_seconds",
            "Time from the request head to the response head, by CA and operation",
            request_duration.clone(),
        );
        let sign_duration: Histograms<SignLabels> = Family::new_with_constructor(fast_buckets);
        registry.register(
            "kipuka_hsm_sign_duration_seconds",
            "CA signatures (certificates, CRLs, OCSP, key packages), pool wait included",
            sign_duration.clone(),
        );
        let hsm_errors = Family::<CkrLabels, Counter>::default();
        registry.register(
            "kipuka_hsm_errors",
            "PKCS#11 calls that failed, by CKR code",
            hsm_errors.clone(),
        );
        let sessions = Family::<SessionLabels, Gauge>::default();
        registry.register(
            "kipuka_hsm_sessions",
            "Sessions of each pool, in_use or idle",
            sessions.clone(),
        );
        let token_health = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "kipuka_hsm_token_health",
            "Token health: 0 healthy, 1 degraded, 2 unavailable",
            token_health.clone(),
        );
        let issued = Family::<CaLabels, Counter>::default();
        registry.register(
            "kipuka_certificates_issued",
            "Certificates issued and recorded, by CA",
            issued.clone(),
        );
        // A gauge read from the CRL, not a counter of events: revocations
        // are made by `kipuka certs revoke`, another process, and reach the
        // server through the store.
        let revoked = Family::<CaLabels, Gauge>::default();
        registry.register(
            "kipuka_certificates_revoked",
            "Revoked certificates listed on the CA's current CRL",
            revoked.clone(),
        );
        let crl_age = Family::<CaLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "kipuka_crl_age_seconds",
            "Seconds since the CA's current CRL was signed (thisUpdate)",
            crl_age.clone(),
        );
        let ocsp = Family::<StatusLabels, Counter>::default();
        registry.register(
            "kipuka_ocsp_responses",
            "OCSP responses, by certificate status or error",
            ocsp.clone(),
        );
        let code_uses = Family::<CodeLabels, Counter>::default();
        registry.register(
            "kipuka_enrollment_code_uses",
            "Enrollment-code uses: taken, refused (used up, expired, revoked), given_back",
            code_uses.clone(),
        );
        let rate_limited = Family::<LimitLabels, Counter>::default();
        registry.register(
            "kipuka_rate_limited",
            "Requests refused with 429, by [limits] entry",
            rate_limited.clone(),
        );
        let store_duration: Histograms<StoreLabels> = Family::new_with_constructor(fast_buckets);
        registry.register(
            "kipuka_store_operation_duration_seconds",
            "Certificate store operations",
            store_duration.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
                abi_versions: kipuka_plugin_api::ABI_VERSION.to_string(),
            })
            .set(1);
        registry.register(
            "kipuka_build_info",
            "Always 1: the kipuka version and the plugin ABI versions it loads",
            build,
        );
        let process = process::ProcessMetrics::register(&mut registry);
        Metrics {
            registry,
            requests,
            request_duration,
            sign_duration,
            hsm_errors,
            sessions,
            token_health,
            issued,
            revoked,
            crl_age,
            ocsp,
            code_uses,
            rate_limited,
            store_duration,
            process,
            samplers: Mutex::new(Vec::new()),
        }
    }

    /// The exposition: samplers first, so that gauges are current.
    fn encode(&self) -> String {
        self.process.sample();
        let sample = Sample { metrics: self };
        for s in self.samplers.lock().expect("samplers").iter() {
            s(&sample);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The text exposition of every metric, or `None` when metrics are off.
pub fn render() -> Option<String> {
    get().map(Metrics::encode)
}

/// What a sampler may set at scrape time.
pub struct Sample<'a> {
    metrics: &'a Metrics,
}

impl Sample<'_> {
    /// Sessions of `pool`: checked out now, and open but idle.
    pub fn pool_sessions(&self, pool: &str, in_use: usize, idle: usize) {
        for (state, n) in [("in_use", in_use), ("idle", idle)] {
            self.metrics
                .sessions
                .get_or_create(&SessionLabels {
                    pool: pool.to_string(),
                    state,
                })
                .set(n as i64);
        }
    }

    /// Health of `pool`'s token: 0 healthy, 1 degraded, 2 unavailable.
    pub fn token_health(&self, pool: &str, state: i64) {
        self.metrics
            .token_health
            .get_or_create(&PoolLabels {
                pool: pool.to_string(),
            })
            .set(state);
    }

    /// `ca`'s current CRL: its age and how many certificates it lists.
    pub fn crl(&self, ca: &str, age: Duration, entries: usize) {
        let labels = CaLabels { ca: ca.to_string() };
        self.metrics
            .crl_age
            .get_or_create(&labels)
            .set(age.as_secs_f64());
        self.metrics
            .revoked
            .get_or_create(&labels)
            .set(entries as i64);
    }
}

/// Registers `f`, run at every scrape (no-op while metrics are off).
pub fn add_sampler(f: impl Fn(&Sample<'_>) + Send + Sync + 'static) {
    if let Some(m) = get() {
        m.samplers.lock().expect("samplers").push(Box::new(f));
    }
}

/// One HTTP request answered. `ca` is a configured CA id or [`NO_CA`];
/// `operation` goes through [`operation_label`] or is one of the fixed
/// names of the other paths.
pub fn est_request(ca: &str, operation: &'static str, status: u16, elapsed: Duration) {
    let Some(m) = get() else { return };
    m.requests
        .get_or_create(&RequestLabels {
            ca: ca.to_string(),
            operation,
            status,
        })
        .inc();
    m.request_duration
        .get_or_create(&OperationLabels {
            ca: ca.to_string(),
            operation,
        })
        .observe(elapsed.as_secs_f64());
}

/// One CA signature, from asking the pool to having the signature.
pub fn hsm_sign(labels: &SignLabels, elapsed: Duration) {
    let Some(m) = get() else { return };
    m.sign_duration
        .get_or_create(labels)
        .observe(elapsed.as_secs_f64());
}

/// A PKCS#11 call failed with `code` (`CKR_DEVICE_REMOVED`, ...), or the
/// pool gave up (`timeout`, `busy`).
pub fn hsm_error(code: &str) {
    let Some(m) = get() else { return };
    m.hsm_errors
        .get_or_create(&CkrLabels {
            code: code.to_string(),
        })
        .inc();
}

/// A certificate of `ca` was issued and recorded.
pub fn certificate_issued(ca: &str) {
    if let Some(m) = get() {
        m.issued
            .get_or_create(&CaLabels { ca: ca.to_string() })
            .inc();
    }
}

/// An OCSP answer: `good`, `revoked`, `unknown`, or the error status
/// (`malformedRequest`, `unauthorized`, `tryLater`, `internalError`).
pub fn ocsp_response(status: &'static str) {
    if let Some(m) = get() {
        m.ocsp.get_or_create(&StatusLabels { status }).inc();
    }
}

/// What happened to an enrollment-code use: `taken`, `refused`, `given_back`.
pub fn enrollment_code(outcome: &'static str) {
    if let Some(m) = get() {
        m.code_uses.get_or_create(&CodeLabels { outcome }).inc();
    }
}

/// A request refused by the `[limits]` entry `limit`.
pub fn rate_limited(limit: &'static str) {
    if let Some(m) = get() {
        m.rate_limited.get_or_create(&LimitLabels { limit }).inc();
    }
}

/// A store operation took `elapsed`.
pub fn store_operation(operation: &'static str, elapsed: Duration) {
    if let Some(m) = get() {
        m.store_duration
            .get_or_create(&StoreLabels { operation })
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_operations_share_one_label() {
        assert_eq!(operation_label("simpleenroll"), "simpleenroll");
        assert_eq!(operation_label("../../etc/passwd"), "unknown");
        assert_eq!(operation_label("SimpleEnroll"), "unknown");
    }

    #[test]
    fn exposition_names_the_metrics() {
        install();
        est_request(
            "ec",
            operation_label("simpleenroll"),
            200,
            Duration::from_millis(3),
        );
        let text = render().expect("installed");
        assert!(text.contains(
            "kipuka_est_requests_total{ca=\"ec\",operation=\"simpleenroll\",status=\"200\"} 1"
        ));
        assert!(text.contains("kipuka_build_info{version=\""));
        assert!(text.contains("process_resident_memory_bytes "));
    }
}
