#!/usr/bin/env bash
# The name policy and a bad-password flood, side by side in one run
# (BENCHMARKS.md, "Name policy on and off; a bad-password flood"):
#
#   cargo xtask demo --port 18443     # once, to make target/kipuka-demo/ (then stop it)
#   bench/policy_and_flood.sh
#
# Two `kipuka serve` from the demo's configuration, each with its own store:
# "policy" as the demo ships it ([ca.policy] on every CA, mode enforce) and
# "open" with the [ca.policy] tables taken out. kipuka-bench enrolls on
# them alternately (EC CA, Basic, keep-alive, concurrency 16, CSRs named
# CN=kipuka-bench-..., which the demo's policy allows), ROUNDS times SECS
# seconds each. Then, on "policy", the same load again while a second
# kipuka-bench from another source address (127.0.0.2) sends enrollments
# with a wrong password on FLOOD_CONNECTIONS (64) connections as fast as
# they are answered; the flood's user name is not the legitimate one (a
# flood as the legitimate user would spend that user's failed_auth_*
# bucket, which is the point of that bucket). The flood generator runs on
# the same two cores as the server and the legitimate load.
set -euo pipefail

OUT=$(cd "$(dirname "$0")/.." && pwd)/target/bench-results/policy-and-flood
. "$(dirname "$0")/demo_servers.sh"
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-8}
PORT=${PORT:-18455}
FLOOD_CONNECTIONS=${FLOOD_CONNECTIONS:-64}

demo_config policy "$PORT"
demo_config open $((PORT + 1))
# Every [ca.policy] table, up to the next table header, out.
awk '/^\[ca\.policy\]/ { skip = 1; next } /^\[/ { skip = 0 } !skip' "$OUT/open.toml" >"$OUT/open.tmp"
mv "$OUT/open.tmp" "$OUT/open.toml"
grep -q '^\[ca\.policy\]' "$OUT/policy.toml" || { echo "the demo configuration has no [ca.policy]"; exit 1; }
serve policy
serve open

legit() { # PORT OUTFILE
    "$BENCH" --url "https://127.0.0.1:$1/.well-known/est/ec/simpleenroll" \
        --cacert "$DEMO/tls-ca.pem" --basic-file "$DEMO/basic-auth.txt" \
        --key-type ec:P-256 --concurrency 16 --duration "$SECS" --warmup 1 --csrs 20000 \
        --timeout 10 --json >"$2"
}
printf 'mallory:wrong password\n' >"$OUT/flood-auth.txt"
flooded() { # ROUND: the legitimate load on "policy" while the flood runs
    "$BENCH" --url "https://127.0.0.1:$PORT/.well-known/est/ec/simpleenroll" --source 127.0.0.2 \
        --cacert "$DEMO/tls-ca.pem" --basic-file "$OUT/flood-auth.txt" \
        --key-type ec:P-256 --concurrency "$FLOOD_CONNECTIONS" --duration $((SECS + 2)) --warmup 0 \
        --csrs 2000 --timeout 10 --json >"$OUT/flood-$1.json" 2>"$OUT/flood-$1.err" &
    local flood=$!
    sleep 1
    legit $PORT "$OUT/flooded-$1.json"
    wait $flood || true
}
# Round by round, the three series take turns, so that each sees the same
# machine and stores of about the same size.
declare -A sum=([policy]=0 [open]=0 [flooded]=0)
for r in $(seq 1 "$ROUNDS"); do
    for name in policy open flooded; do
        case $name in
        policy) legit $PORT "$OUT/$name-$r.json" ;;
        open) legit $((PORT + 1)) "$OUT/$name-$r.json" ;;
        flooded) flooded "$r" ;;
        esac
        v=$(rate "$OUT/$name-$r.json")
        printf 'round %s %-8s %8.1f enrollments/s  load %s\n' "$r" "$name" "$v" "$(uptime | sed 's/.*load average: //')"
        sum[$name]=$(echo "${sum[$name]} + $v" | bc -l)
    done
done
printf 'policy on: %.1f/s  off: %.1f/s  on/off: %.3f\n' \
    "$(echo "${sum[policy]} / $ROUNDS" | bc -l)" "$(echo "${sum[open]} / $ROUNDS" | bc -l)" \
    "$(echo "${sum[policy]} / ${sum[open]}" | bc -l)"
printf 'policy on, during the flood: %.1f/s  flooded/policy on: %.3f\n' \
    "$(echo "${sum[flooded]} / $ROUNDS" | bc -l)" "$(echo "${sum[flooded]} / ${sum[policy]}" | bc -l)"

# What the flood got: its answers by kind (401 while its failed-auth
# buckets last, then 429 before any password check), per second.
for r in $(seq 1 "$ROUNDS"); do
    python3 - "$OUT/flood-$r.json" <<'PY'
import json, sys
load = json.load(open(sys.argv[1]))["load"]
secs = load["seconds"] or 1
kinds = ", ".join(f"{k} {v / secs:.0f}/s" for k, v in sorted(load["errors"]["by_kind"].items()))
print(f"flood: {load['requests_sent'] / secs:.0f} requests/s on {load['connections']} connections: {kinds}")
PY
done
