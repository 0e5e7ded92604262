#!/usr/bin/python3
"""The README's metrics picture, from a real run (not part of the tests).

    cargo xtask demo --port 18443      # once, to make target/kipuka-demo/ (then stop it)
    /usr/bin/python3 scripts/metrics_plot.py [docs/metrics.png]

Starts `kipuka serve` from the demo's configuration with `[metrics] listen`
(own SQLite file), drives it with kipuka-bench in phases (concurrency 1, 4,
16, a pause, 4 again) plus a few refused requests made with curl (401, 415,
404), scrapes /metrics every second, parses each scrape with Prometheus'
own Python parser, and plots what the Grafana dashboard
(deploy/grafana/kipuka.json) shows: request rate by status, request and
HSM-signature latency quantiles (computed from the histogram buckets as
PromQL's histogram_quantile does), HSM sessions and the process's memory.
Needs Debian's python3-prometheus-client and python3-matplotlib.
"""

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DEMO = os.path.join(ROOT, "target", "kipuka-demo")
OUT = os.path.join(ROOT, "target", "metrics-plot")
KIPUKA = os.path.join(ROOT, "target", "release", "kipuka")
BENCH = os.path.join(ROOT, "target", "release", "kipuka-bench")
PORT, METRICS_PORT = 18461, 19465
PHASES = [(1, 8), (4, 8), (16, 8), (0, 5), (4, 8)]  # (concurrency, seconds); 0 = idle


def config():
    os.makedirs(OUT, exist_ok=True)
    lines, in_metrics = [], False
    for line in open(os.path.join(DEMO, "kipuka.toml")):
        # The demo's own [metrics] table goes: ours is added below.
        if line.startswith("[metrics]"):
            in_metrics = True
            continue
        if in_metrics:
            in_metrics = not line.startswith("listen = ")
            continue
        if line.startswith("listen = "):
            line = f'listen = "127.0.0.1:{PORT}"\n'
        elif line.startswith('url = "sqlite://'):
            line = f'url = "sqlite://{OUT}/plot.db"\n'
        elif line.startswith("http_listen = "):
            continue
        lines.append(line)
    lines.append(f'\n[metrics]\nlisten = "127.0.0.1:{METRICS_PORT}"\n')
    path = os.path.join(OUT, "kipuka.toml")
    open(path, "w").writelines(lines)
    return path


def scrape():
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5) as r:
        text = r.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def total(sample, name, **match):
    return sum(
        v
        for (n, labels), v in sample.items()
        if n == name and all(dict(labels).get(k) == want for k, want in match.items())
    )


def quantile(q, new, old, name, **match):
    """histogram_quantile(q, increase(name_bucket[...])) between two scrapes."""
    buckets = {}
    for (n, labels), v in new.items():
        d = dict(labels)
        if n == name + "_bucket" and all(d.get(k) == w for k, w in match.items()):
            le = float(d["le"])
            buckets[le] = buckets.get(le, 0) + v - old.get((n, labels), 0)
    les = sorted(buckets)
    if not les or buckets[les[-1]] <= 0:
        return None
    rank = q * buckets[les[-1]]
    prev_le, prev_count = 0.0, 0.0
    for le in les:
        if buckets[le] >= rank:
            if le == float("inf"):
                return prev_le
            span = buckets[le] - prev_count
            return prev_le + (le - prev_le) * ((rank - prev_count) / span if span else 0)
        prev_le, prev_count = le, buckets[le]
    return None


def load(stop, marks):
    env = dict(os.environ, SOFTHSM2_CONF=os.path.join(DEMO, "softhsm2.conf"))
    for concurrency, secs in PHASES:
        marks.append((time.time(), f"c={concurrency}" if concurrency else "idle"))
        if concurrency == 0:
            time.sleep(secs)
            continue
        subprocess.run(
            [BENCH, "--url", f"https://127.0.0.1:{PORT}/.well-known/est/ec/simpleenroll",
             "--cacert", os.path.join(DEMO, "tls-ca.pem"),
             "--basic-file", os.path.join(DEMO, "basic-auth.txt"),
             "--key-type", "ec:P-256", "--concurrency", str(concurrency),
             "--duration", str(secs), "--csrs", "8000", "--timeout", "10", "--json"],
            env=env, check=True, stdout=subprocess.DEVNULL)
        # A few refusals, as real clients make them.
        base = f"https://127.0.0.1:{PORT}/.well-known/est"
        ca = ["--cacert", os.path.join(DEMO, "tls-ca.pem")]
        for _ in range(3):
            subprocess.run(["curl", "-s", "-o", "/dev/null", *ca, "--data-binary", "x", f"{base}/ec/simpleenroll"])
            subprocess.run(["curl", "-s", "-o", "/dev/null", *ca, "-u", open(os.path.join(DEMO, "basic-auth.txt")).read().strip(),
                            "-H", "Content-Type: text/plain", "--data-binary", "x", f"{base}/ec/simpleenroll"])
            subprocess.run(["curl", "-s", "-o", "/dev/null", *ca, f"{base}/nosuch/cacerts"])
    stop.set()


def main():
    png = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs", "metrics.png")
    if not os.path.exists(os.path.join(DEMO, "kipuka.toml")):
        sys.exit("run `cargo xtask demo` first: no target/kipuka-demo/kipuka.toml")
    env = dict(os.environ, SOFTHSM2_CONF=os.path.join(DEMO, "softhsm2.conf"),
               KIPUKA_HSM_PIN=open(os.path.join(DEMO, "hsm-pin")).read().strip())
    log = open(os.path.join(OUT if os.path.isdir(OUT) else "/tmp", "serve.log"), "w")
    server = subprocess.Popen([KIPUKA, "serve", "--config", config()], cwd=DEMO, env=env,
                              stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        for line in server.stdout:
            if line.startswith("kipuka listening on"):
                break
        else:
            sys.exit(f"kipuka serve did not start; see {log.name}")
        stop, marks, scrapes = threading.Event(), [], []
        worker = threading.Thread(target=load, args=(stop, marks))
        start = time.time()
        worker.start()
        while not stop.is_set():
            scrapes.append((time.time() - start, scrape()))
            time.sleep(1)
        scrapes.append((time.time() - start, scrape()))
        worker.join()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
    plot(scrapes, [(t - start, name) for t, name in marks], png)
    print(f"wrote {png} from {len(scrapes)} scrapes")


def plot(scrapes, marks, png):
    w = 2  # window, in scrapes, for rates and quantiles
    t = [s[0] for s in scrapes[w:]]
    pairs = [(scrapes[i][1], scrapes[i - w][1], scrapes[i][0] - scrapes[i - w][0]) for i in range(w, len(scrapes))]
    statuses = sorted({dict(l)["status"] for s in scrapes for (n, l) in s[1] if n == "kipuka_est_requests_total"})
    fig, ax = plt.subplots(2, 2, figsize=(12, 7), sharex=True)
    fig.suptitle("kipuka under kipuka-bench (demo, SoftHSM2, EC P-256 CA) — scraped from /metrics every second")
    a = ax[0][0]
    for st in statuses:
        a.plot(t, [(total(n, "kipuka_est_requests_total", status=st) - total(o, "kipuka_est_requests_total", status=st)) / dt
                   for n, o, dt in pairs], label=f"status {st}")
    a.set_title("rate(kipuka_est_requests_total) by status")
    a.set_ylabel("requests / s")
    a.set_yscale("symlog", linthresh=1)
    a.legend(loc="upper left", fontsize=8)
    a = ax[0][1]
    for q in (0.5, 0.99):
        a.plot(t, [(lambda v: v * 1000 if v is not None else None)(quantile(q, n, o, "kipuka_est_request_duration_seconds", operation="simpleenroll")) for n, o, _ in pairs],
               label=f"request p{int(q * 100)}")
        a.plot(t, [(lambda v: v * 1000 if v is not None else None)(quantile(q, n, o, "kipuka_hsm_sign_duration_seconds", ca="ec")) for n, o, _ in pairs],
               linestyle="--", label=f"HSM sign p{int(q * 100)}")
    a.set_title("simpleenroll latency and C_Sign latency (histogram_quantile)")
    a.set_ylabel("ms")
    a.legend(loc="upper left", fontsize=8)
    a = ax[1][0]
    for state in ("in_use", "idle"):
        a.plot([s[0] for s in scrapes], [total(s[1], "kipuka_hsm_sessions", state=state) for s in scrapes], label=state)
    a.set_title("kipuka_hsm_sessions")
    a.set_ylabel("sessions")
    a.set_xlabel("seconds")
    a.legend(loc="upper left", fontsize=8)
    a = ax[1][1]
    a.plot([s[0] for s in scrapes], [total(s[1], "process_resident_memory_bytes") / 2**20 for s in scrapes], label="RSS")
    a.set_title("process_resident_memory_bytes")
    a.set_ylabel("MiB")
    a.set_xlabel("seconds")
    for row in ax:
        for a in row:
            for x, name in marks:
                a.axvline(x, color="grey", linewidth=0.5)
                a.text(x, a.get_ylim()[1], f" {name}", fontsize=7, va="top", color="grey")
    fig.tight_layout()
    os.makedirs(os.path.dirname(png), exist_ok=True)
    fig.savefig(png, dpi=90)


if __name__ == "__main__":
    main()
