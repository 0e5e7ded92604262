#!/usr/bin/env bash
# Issue 7 item 4, in one command (from the workspace root): kipuka-bench
# against `kipuka serve` behind the PKCS#11 shim, which adds a network
# HSM's latency to every C_Sign, and the ratio to the bound SESSIONS / DELAY.
#
#   bench/latency.sh                 # 32 sessions at c=64 and 1 session at c=8, 20 ms
#   DELAY_MS=5 bench/latency.sh      # another latency
#   TOKEN=kryoptic bench/latency.sh  # Kryoptic behind the shim (default softhsm2)
#
# Needs `cargo xtask deps` once (it writes target/kipuka-test-env.sh). Each
# run starts a fresh server (tests/src/bin/shim-server.rs: a new token, the
# pool and the shim's session limit both at SESSIONS), loads it for $SECS
# seconds after 1 s of warm-up, prints one line, and stops it. JSON per run
# under target/bench-results/latency-*.json.
set -euo pipefail

SECS=${SECS:-10}
DELAY_MS=${DELAY_MS:-20}
TOKEN=${TOKEN:-softhsm2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/target/bench-results
mkdir -p "$OUT"
cd "$ROOT"
# shellcheck source=/dev/null
. target/kipuka-test-env.sh

[ -n "${NO_BUILD:-}" ] || cargo build --release -p kipuka-bench -p kipuka-tests --bin shim-server

work=$(mktemp -d)
holder=""
cleanup() {
    [ -z "$holder" ] || kill "$holder" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# measure SESSIONS CONCURRENCY
measure() {
    local sessions=$1 concurrency=$2 name="latency-s$1-c$2-${DELAY_MS}ms-$TOKEN"
    mkfifo "$work/in"
    # The server lives while this fifo has a writer.
    sleep 100000 >"$work/in" &
    holder=$!
    target/release/shim-server "$sessions" "$DELAY_MS" "$TOKEN" <"$work/in" >"$work/out" 2>"$work/err" &
    local server=$!
    for _ in $(seq 1 120); do
        grep -q '^ready$' "$work/out" && break
        kill -0 "$server" 2>/dev/null || { cat "$work/err"; exit 1; }
        sleep 1
    done
    grep -q '^ready$' "$work/out" || { echo "the server did not start"; cat "$work/err"; exit 1; }
    local url cacert basic
    url=$(sed -n 's/^URL=//p' "$work/out")
    cacert=$(sed -n 's/^CACERT=//p' "$work/out")
    basic=$(sed -n 's/^BASIC_FILE=//p' "$work/out")
    target/release/kipuka-bench --url "$url" --cacert "$cacert" --basic-file "$basic" \
        --concurrency "$concurrency" --duration "$SECS" --warmup 1 --timeout 10 \
        --csrs $((sessions * 1000 / DELAY_MS * (SECS + 1) + 1000)) --json >"$OUT/$name.json"
    kill "$holder"
    holder=""
    wait "$server"
    local stats
    stats=$(sed -n 's/^SHIM_STATS=//p' "$work/out")
    rm -f "$work/in" "$work/out" "$work/err"
    local rate p50 p99 errors bound
    rate=$(tr -d '\n ' <"$OUT/$name.json" | sed -E 's/.*"enrollments_per_s":([0-9.]+).*/\1/')
    p50=$(tr -d '\n ' <"$OUT/$name.json" | sed -E 's/.*"p50_ms":([0-9.]+).*/\1/')
    p99=$(tr -d '\n ' <"$OUT/$name.json" | sed -E 's/.*"p99_ms":([0-9.]+).*/\1/')
    errors=$(tr -d '\n ' <"$OUT/$name.json" | sed -E 's/.*"error_total":([0-9]+).*/\1/')
    bound=$(awk -v s="$sessions" -v d="$DELAY_MS" 'BEGIN { printf "%.1f", s * 1000 / d }')
    printf '%-36s load %-16s | %s/s of bound %s/s = %s | p50 %s ms p99 %s ms | errors %s | shim high-water %s sessions\n' \
        "$name" "$(uptime | sed 's/.*load average: //; s/,.*//')" "$rate" "$bound" \
        "$(awk -v r="$rate" -v b="$bound" 'BEGIN { printf "%.3f", r / b }')" "$p50" "$p99" "$errors" \
        "$(echo "$stats" | sed -E 's/.*"high_water":([0-9]+).*/\1/')"
}

measure 32 64
measure 1 8
