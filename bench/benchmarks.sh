#!/usr/bin/env bash
# The measurements of BENCHMARKS.md, in one command (from the workspace root):
#
#   bench/benchmarks.sh            # all of it: about 15 minutes on 2 cores
#   bench/benchmarks.sh quick      # the ECDSA keep-alive concurrency-16 run only
#
# Starts `cargo xtask demo` (SoftHSM2 token and CAs under target/kipuka-demo/)
# in the background on $PORT, runs kipuka-bench against it, writes one JSON
# file per run under target/bench-results/, prints a summary line per run,
# and stops the server it started. Every run is bounded (--duration, --timeout).
# KIPUKA_PID=N: measure the demo server already running on $PORT instead.
set -euo pipefail

PORT=${PORT:-18443}
SECS=${SECS:-10}
RAW_SECS=${RAW_SECS:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEMO=$ROOT/target/kipuka-demo
OUT=$ROOT/target/bench-results
BENCH=$ROOT/target/release/kipuka-bench
mkdir -p "$OUT"
cd "$ROOT"

[ -n "${NO_BUILD:-}" ] || cargo build --release -p kipuka-bench

server_pid=""
stop_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
    fi
}
trap stop_server EXIT

if [ -n "${KIPUKA_PID:-}" ]; then
    # A demo server already running on $PORT (started as below): measure it as it is.
    kipuka_pid=$KIPUKA_PID
else
    echo "==> cargo xtask demo --port $PORT (log: $OUT/demo.log)"
    setsid cargo xtask demo --port "$PORT" >"$OUT/demo.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 120); do
        grep -q "kipuka listening" "$OUT/demo.log" 2>/dev/null && break
        kill -0 "$server_pid" 2>/dev/null || { cat "$OUT/demo.log"; exit 1; }
        sleep 5
    done
    grep -q "kipuka listening" "$OUT/demo.log" || { echo "the demo server did not start"; exit 1; }
    # cargo and xtask exec what they run: the server is the process started above.
    kipuka_pid=$server_pid
fi
tr '\0' ' ' <"/proc/$kipuka_pid/cmdline" | grep -q "kipuka serve" || { echo "pid $kipuka_pid is not kipuka serve"; exit 1; }
export SOFTHSM2_CONF=$DEMO/softhsm2.conf

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$kipuka_pid/status"; }

# run NAME LABEL KEY_TYPE OBJECT [kipuka-bench options...]
run() {
    local name=$1 label=$2 key_type=$3 object=$4
    shift 4
    local url="https://127.0.0.1:$PORT/.well-known/est/$label/simpleenroll"
    "$BENCH" --url "$url" --cacert "$DEMO/tls-ca.pem" --basic-file "$DEMO/basic-auth.txt" \
        --key-type "$key_type" --warmup "${WARMUP:-1}" --timeout 10 --json \
        --raw-sign "pkcs11:token=kipuka-demo;object=$object" --pin-file "$DEMO/hsm-pin" \
        --raw-duration "$RAW_SECS" "$@" >"$OUT/$name.json"
    printf '%-28s load %s | %s\n' "$name" "$(uptime | sed 's/.*load average: //')" \
        "$(tr -d '\n ' <"$OUT/$name.json" | sed -E 's/.*"enrollments":([0-9]+).*"error_total":([0-9]+).*"enrollments_per_s":([0-9.]+).*"p99_ms":([0-9.]+).*"sign_per_s":([0-9.]+),"verify_per_s":([0-9.]+),"verify_sign_per_s":([0-9.]+).*/ok=\1 err=\2 rate=\3\/s p99=\4ms sign=\5\/s verify=\6\/s verify+sign=\7\/s/')"
}

if [ "${1:-}" = quick ]; then
    run ec-c16-keepalive ec ec:P-256 ec-ca-key --concurrency 16 --duration "$SECS" --csrs 40000
    exit 0
fi

for ca in ec rsa; do
    if [ $ca = ec ]; then kt=ec:P-256; csrs=40000; else kt=rsa:2048; csrs=8000; fi
    for c in 1 4 16 64; do
        run "$ca-c$c-keepalive" $ca $kt $ca-ca-key --concurrency $c --duration "$SECS" --csrs $csrs
        run "$ca-c$c-new-connection" $ca $kt $ca-ca-key --concurrency $c --duration "$SECS" \
            --csrs $csrs --no-keepalive
    done
done

# p99 at half the best keep-alive rate of each CA, paced.
for ca in ec rsa; do
    if [ $ca = ec ]; then kt=ec:P-256; csrs=40000; else kt=rsa:2048; csrs=8000; fi
    best=0
    for c in 1 4 16 64; do
        r=$(tr -d '\n ' <"$OUT/$ca-c$c-keepalive.json" | sed -E 's/.*"enrollments_per_s":([0-9.]+).*/\1/')
        best=$(awk -v a="$best" -v b="$r" 'BEGIN { print (b > a) ? b : a }')
    done
    half=$(awk -v b="$best" 'BEGIN { printf "%d", b / 2 }')
    run "$ca-half-rate-$half" $ca $kt $ca-ca-key --concurrency 16 --duration "$SECS" \
        --csrs $csrs --rate "$half"
done

# Server memory over 100,000 enrollments (ECDSA CA, keep-alive, concurrency 16).
before=$(rss_kb)
WARMUP=0 run ec-100k-requests ec ec:P-256 ec-ca-key --concurrency 16 --requests 100000
after=$(rss_kb)
echo "server VmRSS before ${before} kB, after 100,000 enrollments ${after} kB (+$((after - before)) kB)" |
    tee "$OUT/rss.txt"
