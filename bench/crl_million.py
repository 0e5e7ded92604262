#!/usr/bin/env python3
"""The large-CRL benchmark of BENCHMARKS.md: a CRL of 1,000,000 revoked entries.

Runs a second `kipuka serve` on the demo's token and configuration
(`cargo xtask demo` must have been run once), but with a store, ports and
log of its own in a temporary directory, so the demo's store is not
touched. Then:

1. waits for the first CRL of the CA `--label` (the server signs every CA's
   CRL at start) and reads the server's RSS (VmRSS, VmHWM from /proc);
2. writes N revoked certificates of that CA into the store, in one
   transaction, with one revocation_log row, as `kipuka certs revoke`
   would leave them (the running server notices the new revocation
   generation within 250 ms and re-signs);
3. waits for the server's "CRL signed" log line with N entries and reports
   its `elapsed_ms` (store read + encoding + HSM signature) and the RSS
   growth;
4. checks the CRL with OpenSSL (`openssl crl -CAfile`: signature) and
   Python `cryptography` (entry count);
5. fetches it from the plain-HTTP listener with --clients parallel curl
   processes, --fetches times each, and reports the throughput.

Usage (from the workspace root):
    python3 bench/crl_million.py [--entries 1000000] [--clients 16] [--fetches 4]
"""

import argparse
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "target", "kipuka-demo")
KIPUKA = os.path.join(ROOT, "target", "release", "kipuka")


def rss_kb(pid):
    """VmRSS and VmHWM of the process, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out["VmRSS"], out["VmHWM"]


def own_config(text, tmp, port):
    """The demo's configuration with its own store, ports and JSON logs."""
    text, n = re.subn(r'(?m)^listen = "[^"]*"', f'listen = "127.0.0.1:{port}"', text, count=1)
    assert n == 1, "no [server] listen in the demo configuration"
    text, n = re.subn(r'(?m)^http_listen = "[^"]*"', f'http_listen = "127.0.0.1:{port + 1}"', text, count=1)
    assert n == 1, "no [server] http_listen in the demo configuration"
    text, n = re.subn(r'(?m)^url = "sqlite://[^"]*"', f'url = "sqlite://{tmp}/kipuka.db"', text, count=1)
    assert n == 1, "no [db] url in the demo configuration"
    text = re.sub(r'(?m)^format = "[^"]*"\n', "", text)
    if re.search(r"(?m)^\[log\]$", text):
        text = re.sub(r"(?m)^\[log\]$", '[log]\nformat = "json"', text, count=1)
    else:
        text += '\n[log]\nformat = "json"\n'
    return text


def crl_signed_lines(log_path):
    """The fields of every "CRL signed" line logged so far."""
    found = []
    with open(log_path, errors="replace") as f:
        for line in f:
            if '"CRL signed"' not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            # The server's JSON log puts the fields at the top level.
            found.append(event)
    return found


def wait_for(what, predicate, timeout, proc):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"kipuka serve exited ({proc.returncode}) while waiting for {what}")
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    sys.exit(f"timed out after {timeout} s waiting for {what}")


def insert_revoked(db, ca_id, n):
    now = int(time.time())
    conn = sqlite3.connect(db, timeout=30)
    rows = (
        # Serials as the server records them: positive, no leading zero octet.
        ((bytes([secrets.randbelow(127) + 1]) + secrets.token_bytes(15)).hex(), ca_id, f"CN=crl-bench-{i}", "[]",
         now - 60, now + 365 * 86400, "crl-bench", "bench", b"\x30\x00", now * 1000,
         now - 30, 1)
        for i in range(n)
    )
    with conn:
        conn.executemany(
            "INSERT INTO issued_certificates (serial_hex, ca_id, subject, sans, not_before,"
            " not_after, requester, operation, der, recorded_at, revoked_at, revocation_reason)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        conn.execute(
            "INSERT INTO revocation_log (ca_id, serial_hex, action, reason, at)"
            " VALUES (?, 'bench', 'revoke', 1, ?)",
            (ca_id, now * 1000),
        )
    # The commit is what the server can see: time it, not the close.
    committed = time.monotonic()
    conn.close()
    return committed


def fetch_all(url, clients, fetches, tmp):
    """Bytes and seconds for clients × fetches GETs of url, in parallel."""
    script = f'for i in $(seq {fetches}); do curl -sf -o /dev/null -w "%{{size_download}}\\n" {url} || exit 1; done'
    start = time.monotonic()
    procs = [subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(clients)]
    total = 0
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            sys.exit(f"a curl client failed ({p.returncode})")
        total += sum(int(x) for x in out.split())
    return total, time.monotonic() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--fetches", type=int, default=4)
    ap.add_argument("--label", default="ec")
    ap.add_argument("--port", type=int, default=18543)
    ap.add_argument("--openssl", default=os.environ.get("KIPUKA_TEST_OPENSSL", "openssl"))
    args = ap.parse_args()

    demo_config = os.path.join(DEMO, "kipuka.toml")
    if not os.path.isfile(demo_config):
        sys.exit(f"{demo_config} is missing: run `cargo xtask demo` once first")
    with open(demo_config, "rb") as f:
        parsed = tomllib.load(f)
    ca = next((c for c in parsed["ca"] if c.get("label") == args.label), None)
    if ca is None:
        sys.exit(f"the demo has no CA labelled {args.label!r}")

    tmp = tempfile.mkdtemp(prefix="kipuka-crl-bench-")
    proc = None
    try:
        with open(demo_config) as f:
            text = own_config(f.read(), tmp, args.port)
        config = os.path.join(tmp, "kipuka.toml")
        with open(config, "w") as f:
            f.write(text)
        log_path = os.path.join(tmp, "serve.log")
        env = dict(os.environ, SOFTHSM2_CONF=os.path.join(DEMO, "softhsm2.conf"))
        with open(log_path, "w") as log:
            proc = subprocess.Popen([KIPUKA, "serve", "--config", config], stdout=log, stderr=log,
                                    cwd=DEMO, env=env)
        base = f"http://127.0.0.1:{args.port + 1}"
        label_ca = ca["id"]

        def first_crl():
            return [x for x in crl_signed_lines(log_path) if x.get("ca") == label_ca]

        wait_for("the first CRL", first_crl, 60, proc)
        rss0, hwm0 = rss_kb(proc.pid)

        t = time.monotonic()
        committed = insert_revoked(os.path.join(tmp, "kipuka.db"), label_ca, args.entries)
        insert_s = committed - t

        def big_crl():
            return [x for x in first_crl() if x.get("entries") == args.entries]

        signed = wait_for(f"a CRL of {args.entries} entries", big_crl, 300, proc)[-1]
        noticed_s = time.monotonic() - committed
        rss1, hwm1 = rss_kb(proc.pid)

        crl_file = os.path.join(tmp, "big.crl")
        with urllib.request.urlopen(f"{base}/crl/{args.label}.crl", timeout=60) as r, open(crl_file, "wb") as f:
            shutil.copyfileobj(r, f)
        size = os.path.getsize(crl_file)
        check = subprocess.run([args.openssl, "crl", "-inform", "DER", "-in", crl_file, "-noout",
                                "-CAfile", os.path.join(DEMO, f"ca-{args.label}.pem")],
                               capture_output=True, text=True)
        if check.returncode != 0 or "verify ok" not in (check.stdout + check.stderr).lower():
            sys.exit(f"openssl crl does not verify the CRL: {check.stdout}{check.stderr}")
        from cryptography import x509
        with open(crl_file, "rb") as f:
            entries = len(x509.load_der_x509_crl(f.read()))
        if entries != args.entries:
            sys.exit(f"the CRL holds {entries} entries, not {args.entries}")
        rss2, hwm2 = rss_kb(proc.pid)

        total, secs = fetch_all(f"{base}/crl/{args.label}.crl", args.clients, args.fetches, tmp)
        rss3, hwm3 = rss_kb(proc.pid)

        mib = 1024.0
        print(f"CRL of CA {label_ca!r} ({args.label}), {args.entries} revoked entries, {size / 1e6:.1f} MB DER")
        print(f"  store insert (this script, one transaction): {insert_s:.1f} s")
        print(f"  built and signed by the server: {signed['elapsed_ms'] / 1000:.2f} s "
              f"(logged elapsed_ms; noticed and served {noticed_s:.2f} s after the commit)")
        if "read_ms" in signed:
            print(f"    of which store read + DER encoding {signed['read_ms'] / 1000:.2f} s, "
                  f"HSM signature and framing {(signed['elapsed_ms'] - signed['read_ms']) / 1000:.2f} s")
        print(f"  verified: openssl crl -CAfile (signature), python cryptography ({entries} entries)")
        print(f"  server RSS: {rss0 / mib:.0f} MiB before, {rss1 / mib:.0f} MiB after signing "
              f"(+{(rss1 - rss0) / mib:.0f} MiB), peak {hwm1 / mib:.0f} MiB (+{(hwm1 - hwm0) / mib:.0f} MiB)")
        print(f"  served: {args.clients} clients x {args.fetches} GETs = {total / 1e6:.0f} MB in {secs:.2f} s "
              f"= {total * 8 / secs / 1e9:.2f} Gbit/s; RSS then {rss3 / mib:.0f} MiB (peak {hwm3 / mib:.0f} MiB)")
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if os.environ.get("KEEP_TMP"):
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
