#!/usr/bin/env bash
# Metrics overhead, side by side in one run (BENCHMARKS.md, "Metrics on and off"):
#
#   cargo xtask demo --port 18443     # once, to make target/kipuka-demo/ (then stop it)
#   bench/metrics_overhead.sh
#
# Starts two `kipuka serve` from the demo's configuration on the same token:
# "off" (no [metrics]) and "on" ([metrics] listen, scraped every second while
# measured), each with its own SQLite file. Then runs kipuka-bench against
# them alternately, off/on/off/on..., ROUNDS times SECS seconds each (EC CA,
# keep-alive, concurrency 16), so that both see the same machine, and prints
# each rate and the ratio of the sums. About 4 x ROUNDS x (SECS+1) seconds.
set -euo pipefail

OUT=$(cd "$(dirname "$0")/.." && pwd)/target/bench-results/metrics-overhead
. "$(dirname "$0")/demo_servers.sh"
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-8}
OFF_PORT=${OFF_PORT:-18451}
ON_PORT=${ON_PORT:-18452}
METRICS_PORT=${METRICS_PORT:-19464}

scraper=""
trap '[ -z "$scraper" ] || kill "$scraper" 2>/dev/null || true; stop_servers' EXIT

demo_config off $OFF_PORT
demo_config on $ON_PORT "[metrics]
listen = \"127.0.0.1:$METRICS_PORT\""
serve off
serve on

# A scraper, as Prometheus would be (every second; Prometheus' default is 15 s).
(while true; do curl -s -o /dev/null "http://127.0.0.1:$METRICS_PORT/metrics"; sleep 1; done) &
scraper=$!

sum_off=0; sum_on=0
for r in $(seq 1 "$ROUNDS"); do
    for name in off on; do
        port=$OFF_PORT; [ $name = on ] && port=$ON_PORT
        "$BENCH" --url "https://127.0.0.1:$port/.well-known/est/ec/simpleenroll" \
            --cacert "$DEMO/tls-ca.pem" --basic-file "$DEMO/basic-auth.txt" \
            --key-type ec:P-256 --concurrency 16 --duration "$SECS" --warmup 1 --csrs 20000 \
            --timeout 10 --json >"$OUT/$name-$r.json"
        v=$(rate "$OUT/$name-$r.json")
        printf 'round %s %-3s %8.1f enrollments/s  load %s\n' "$r" "$name" "$v" "$(uptime | sed 's/.*load average: //')"
        if [ $name = off ]; then sum_off=$(echo "$sum_off + $v" | bc -l); else sum_on=$(echo "$sum_on + $v" | bc -l); fi
    done
done
printf 'metrics off: %.1f/s  on: %.1f/s  on/off: %.3f\n' \
    "$(echo "$sum_off / $ROUNDS" | bc -l)" "$(echo "$sum_on / $ROUNDS" | bc -l)" "$(echo "$sum_on / $sum_off" | bc -l)"
curl -s "http://127.0.0.1:$METRICS_PORT/metrics" >"$OUT/last-scrape.txt"
grep '^kipuka_est_requests_total' "$OUT/last-scrape.txt"
