//! `[metrics] listen` and the access log, end to end: `kipuka serve` on
//! SoftHSM2, enrollments with curl and OpenSSL, `/metrics` scraped with
//! curl and parsed by an independent implementation of the Prometheus text
//! format (Python `prometheus_client.parser`, Debian
//! `python3-prometheus-client`); the JSON log read back line by line.

use std::{
    collections::BTreeMap,
    io::Write,
    process::{Command, Stdio},
};

use kipuka_tests::{
    est_server::{run, EstOptions, EstServer, PASSWORD, USER},
    tokens::TokenKind,
};

/// Debian's interpreter: the one `python3-prometheus-client` installs into
/// (a `python3` earlier on PATH may be another installation).
const PYTHON: &str = "/usr/bin/python3";

/// Reads an exposition on stdin; prints one JSON array per sample:
/// `[name, {labels}, value]`.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;

type Labels = BTreeMap<String, String>;

/// Every sample of one scrape.
struct Scrape(Vec<(String, Labels, f64)>);

impl Scrape {
    /// The value of `name` with exactly these labels; 0 when absent (a
    /// series appears at its first increment).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.0
            .iter()
            .find(|(n, l, _)| n == name && *l == want)
            .map_or(0.0, |(_, _, v)| *v)
    }

    /// Samples named `name` whose labels include `labels`.
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a (String, Labels, f64)> + 'a {
        self.0.iter().filter(move |(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
    }
}

fn scrape(s: &EstServer) -> (String, Scrape) {
    let url = s
        .metrics_url
        .as_ref()
        .expect("the server printed its metrics URL");
    let out = run(Command::new("curl").args(["-sS", "--fail", "--max-time", "10", url]));
    let text = String::from_utf8(out.stdout).unwrap();
    (text.clone(), parse(&text))
}

fn parse(text: &str) -> Scrape {
    let mut child = Command::new(PYTHON)
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{PYTHON} is missing ({e}): apt-get install python3-prometheus-client")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client.parser refused the exposition (is python3-prometheus-client \
         installed?): {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<(String, Labels, f64)> = serde_json::from_slice(&out.stdout).unwrap();
    Scrape(rows)
}

/// A SoftHSM2 server with `[metrics] listen` on a free port and `[log]`
/// as given.
fn server(log: &str) -> EstServer {
    let mut s = EstServer::start_opts(
        TokenKind::SoftHsm2,
        EstOptions {
            no_launch: true,
            ..EstOptions::default()
        },
    );
    let config = std::fs::read_to_string(&s.config).unwrap();
    let config = config.replace("[log]\nlevel = \"info\"\n", log);
    assert!(config.contains(log), "the test config has its [log] table");
    std::fs::write(
        &s.config,
        format!("{config}\n[metrics]\nlisten = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    s.launch();
    s
}

fn enroll(s: &EstServer, name: &str) -> kipuka_tests::est_client::Answer {
    let (csr, _) = s.csr(
        name,
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        &format!("/CN={name}"),
        None,
    );
    s.post_csr_basic(Some("ec"), "simpleenroll", &csr)
}

#[test]
fn enrollments_move_the_counters_by_exactly_n_and_the_scrape_parses() {
    const N: usize = 5;
    let s = server("[log]\nlevel = \"info\"\n");
    let (_, before) = scrape(&s);
    let ok = [
        ("ca", "ec"),
        ("operation", "simpleenroll"),
        ("status", "200"),
    ];
    let refused = [
        ("ca", "ec"),
        ("operation", "simpleenroll"),
        ("status", "415"),
    ];
    let requests = "kipuka_est_requests_total";

    for i in 0..N {
        let a = enroll(&s, &format!("metrics-dev-{i}"));
        assert_eq!(a.status, 200, "{}", a.text());
    }
    // Authenticated, wrong media type: a 415 for the same CA and operation.
    let (csr, _) = s.csr(
        "metrics-415",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/CN=x",
        None,
    );
    let wrong = s.curl(&[
        "-u",
        &format!("{USER}:{PASSWORD}"),
        "-H",
        "Content-Type: text/plain",
        "--data-binary",
        &format!("@{}", csr.display()),
        &s.url(Some("ec"), "simpleenroll"),
    ]);
    assert_eq!(wrong.status, 415, "{}", wrong.text());
    // A label and an operation nobody configured: no series of their own.
    assert_eq!(s.curl(&[&s.url(Some("nosuchca"), "cacerts")]).status, 404);
    assert_eq!(s.curl(&[&s.url(Some("ec"), "nosuchop")]).status, 404);
    // /metrics is not served on the EST port.
    let on_est = s.curl(&[&format!("{}/metrics", s.base)]);
    assert_eq!(on_est.status, 404);
    assert!(!on_est.text().contains("kipuka_"), "{}", on_est.text());

    let (text, after) = scrape(&s);
    assert_eq!(
        after.value(requests, &ok) - before.value(requests, &ok),
        N as f64,
        "{text}"
    );
    assert_eq!(
        after.value(requests, &refused) - before.value(requests, &refused),
        1.0,
        "{text}"
    );
    assert_eq!(
        after.value(
            requests,
            &[
                ("ca", "unknown"),
                ("operation", "cacerts"),
                ("status", "404")
            ]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        after.value(
            requests,
            &[("ca", "ec"), ("operation", "unknown"), ("status", "404")]
        ),
        1.0,
        "{text}"
    );
    assert!(
        !text.contains("nosuch"),
        "a client-chosen name became a label:\n{text}"
    );
    assert!(!text.contains(USER), "a user name became a label:\n{text}");

    // The histogram: buckets cumulative, +Inf = _count = the counter summed
    // over statuses, for every (ca, operation) seen.
    let mut pairs: Vec<(String, String)> = after
        .matching(requests, &[])
        .map(|(_, l, _)| (l["ca"].clone(), l["operation"].clone()))
        .collect();
    pairs.sort();
    pairs.dedup();
    assert!(pairs.len() >= 3, "{pairs:?}");
    for (ca, op) in &pairs {
        let sel = [("ca", ca.as_str()), ("operation", op.as_str())];
        let mut buckets: Vec<(f64, f64)> = after
            .matching("kipuka_est_request_duration_seconds_bucket", &sel)
            .map(|(_, l, v)| (l["le"].parse::<f64>().unwrap(), *v))
            .collect();
        buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
        assert!(buckets.len() > 5, "{ca}/{op}: {buckets:?}");
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{ca}/{op}: buckets are not cumulative: {buckets:?}"
        );
        let count = after.value("kipuka_est_request_duration_seconds_count", &sel);
        let inf = buckets.last().unwrap();
        assert!(
            inf.0.is_infinite() && inf.1 == count,
            "{ca}/{op}: {buckets:?} vs {count}"
        );
        let total: f64 = after.matching(requests, &sel).map(|(_, _, v)| v).sum();
        assert_eq!(count, total, "{ca}/{op}: _count against the counter");
        assert!(after.value("kipuka_est_request_duration_seconds_sum", &sel) > 0.0);
    }

    // Issued certificates and the HSM signatures behind them.
    let issued = [("ca", "ec")];
    assert_eq!(
        after.value("kipuka_certificates_issued_total", &issued)
            - before.value("kipuka_certificates_issued_total", &issued),
        N as f64,
        "{text}"
    );
    let signs: f64 = after
        .matching("kipuka_hsm_sign_duration_seconds_count", &[("ca", "ec")])
        .map(|(_, l, v)| {
            assert!(l["mechanism"].starts_with("CKM_"), "{l:?}");
            assert!(!l["plugin"].is_empty(), "{l:?}");
            v
        })
        .sum();
    let signs_before: f64 = before
        .matching("kipuka_hsm_sign_duration_seconds_count", &[("ca", "ec")])
        .map(|(_, _, v)| v)
        .sum();
    assert!(signs - signs_before >= N as f64, "{text}");
    // Store commits were timed.
    assert!(
        after.value(
            "kipuka_store_operation_duration_seconds_count",
            &[("operation", "record_issued")]
        ) >= N as f64,
        "{text}"
    );
    // State read at scrape time.
    let label = s.token.label.as_str();
    assert_eq!(
        after.value("kipuka_hsm_token_health", &[("pool", label)]),
        0.0,
        "{text}"
    );
    let open: f64 = after
        .matching("kipuka_hsm_sessions", &[("pool", label)])
        .map(|(_, _, v)| v)
        .sum();
    assert!(open >= 1.0, "{text}");
    assert!(
        after
            .matching("kipuka_crl_age_seconds", &[("ca", "ec")])
            .count()
            == 1,
        "{text}"
    );
    assert_eq!(
        after.value("kipuka_certificates_revoked", &[("ca", "ec")]),
        0.0
    );
    let build: Vec<_> = after.matching("kipuka_build_info", &[]).collect();
    assert_eq!(build.len(), 1, "{text}");
    assert_eq!(build[0].2, 1.0);
    assert_eq!(build[0].1["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(build[0].1["abi_versions"], kipuka_plugin_api::ABI_VERSION);
    assert!(
        after.value("process_resident_memory_bytes", &[]) > 1e6,
        "{text}"
    );
    assert!(after.value("process_open_fds", &[]) >= 3.0, "{text}");
    assert!(
        after.value("process_cpu_seconds_total", &[]) > 0.0,
        "{text}"
    );

    // The metrics listener serves /metrics and nothing else.
    let other = s
        .metrics_url
        .as_ref()
        .unwrap()
        .replace("/metrics", "/healthz");
    let out =
        run(Command::new("curl").args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", &other]));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
}

#[test]
fn every_request_has_an_access_line_and_its_id_follows_it_to_the_hsm() {
    let s = server("[log]\nlevel = \"info,kipuka::hsm=debug\"\nformat = \"json\"\n");
    let a = enroll(&s, "logged-dev");
    assert_eq!(a.status, 200, "{}", a.text());
    let id = a.header("x-request-id").expect("X-Request-Id").to_string();
    assert_eq!(id.len(), 16, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    // Spelled as in the usual header, and a new id per request.
    let out = run(Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-D", "-", "--cacert"])
        .arg(&s.tls_ca)
        .arg(s.url(Some("ec"), "cacerts")));
    let head = String::from_utf8_lossy(&out.stdout).to_string();
    let second = head
        .lines()
        .find_map(|l| l.strip_prefix("X-Request-Id: "))
        .unwrap_or_else(|| panic!("no X-Request-Id header as spelled:\n{head}"))
        .trim()
        .to_string();
    assert_ne!(second, id);

    // The log is JSON, one object per line; every line about the request
    // names its id.
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(!log.contains(PASSWORD), "the password reached the log");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let about: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| v["span"]["request_id"] == id.as_str())
        .collect();
    let access: Vec<_> = about
        .iter()
        .filter(|v| v["target"] == "kipuka::access")
        .collect();
    assert_eq!(access.len(), 1, "one access line per request: {about:#?}");
    let line = access[0];
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["method"], "POST");
    assert_eq!(line["path"], "/.well-known/est/ec/simpleenroll");
    assert_eq!(line["ca"], "ec");
    assert_eq!(line["operation"], "simpleenroll");
    assert_eq!(line["status"], 200);
    assert_eq!(line["client"], format!("basic:{USER}"));
    assert_eq!(line["bytes_out"], a.body.len() as u64);
    assert!(line["bytes_in"].as_u64().unwrap() > 100, "{line}");
    assert!(line["duration_ms"].as_f64().unwrap() > 0.0, "{line}");
    assert!(line["timestamp"].is_string(), "{line}");
    // The audit event and the HSM call of the same enrollment carry the id.
    assert!(
        about.iter().any(|v| v["event"] == "CertificateIssued"),
        "{about:#?}"
    );
    let hsm: Vec<_> = about
        .iter()
        .filter(|v| v["target"] == "kipuka::hsm" && v["message"] == "C_Sign")
        .collect();
    assert_eq!(hsm.len(), 1, "{about:#?}");
    assert_eq!(hsm[0]["ok"], true);
    assert!(hsm[0]["mechanism"].as_str().unwrap().starts_with("CKM_"));
    // A refused request is logged too, without a client.
    let refused = s.curl(&[&s.url(Some("ec"), "simpleenroll"), "--data-binary", "x"]);
    assert_eq!(refused.status, 401);
    let rid = refused.header("x-request-id").unwrap().to_string();
    let log = std::fs::read_to_string(&s.log).unwrap();
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["span"]["request_id"] == rid.as_str() && v["target"] == "kipuka::access")
        .unwrap_or_else(|| panic!("no access line for {rid}:\n{log}"));
    assert_eq!(line["status"], 401);
    assert_eq!(line["client"], "-");
}
