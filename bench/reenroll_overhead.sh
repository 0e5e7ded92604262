#!/usr/bin/env bash
# The revocation check on /simplereenroll, side by side in one run
# (BENCHMARKS.md, "Re-enrollment with the revocation check"):
#
#   cargo xtask demo --port 18443     # once, to make target/kipuka-demo/ (then stop it)
#   bench/reenroll_overhead.sh
#
# Starts one `kipuka serve` from the demo's configuration with its own
# SQLite file and port, enrolls one device certificate (CN=bench-device,
# Basic), and revokes another, so that the store has a revocation to look
# through. Then runs kipuka-bench alternately, ROUNDS times SECS seconds
# each (EC CA, keep-alive, concurrency 16, the same subject on every CSR):
#   enroll:   /simpleenroll with Basic, no client certificate, no revocation check;
#   reenroll: /simplereenroll with the device certificate over TLS, which is
#             checked against the store's revocations on every request, and
#             whose names every renewal must match.
# The reenroll/enroll ratio bounds what the check costs (it also pays for
# the TLS client certificate and the renewal's name comparison).
#
# BASELINE=path/to/kipuka adds a second server from that binary (a build
# of the same commit with the check taken out, say), on its own store and
# PORT+1, and a third series, "baseline": the same /simplereenroll load on
# it. reenroll/baseline is then the cost of the check alone.
set -euo pipefail

OUT=$(cd "$(dirname "$0")/.." && pwd)/target/bench-results/reenroll-overhead
. "$(dirname "$0")/demo_servers.sh"
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-8}
PORT=${PORT:-18453}
OPENSSL=${OPENSSL:-openssl}

demo_config kipuka "$PORT"
serve kipuka
series=(enroll reenroll)
if [ -n "${BASELINE:-}" ]; then
    demo_config baseline $((PORT + 1))
    serve baseline "$BASELINE"
    series+=(baseline)
fi

URL=https://127.0.0.1:$PORT/.well-known/est/ec
enroll_device() { # NAME [URL]
    local url=${2:-$URL}
    "$OPENSSL" req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$OUT/$1.key" \
        -subj "/CN=$1" -outform DER 2>/dev/null | "$OPENSSL" base64 >"$OUT/$1.csr"
    curl -sSf --cacert "$DEMO/tls-ca.pem" -u "$(cat "$DEMO/basic-auth.txt")" \
        -H 'Content-Type: application/pkcs10' --data-binary "@$OUT/$1.csr" "$url/simpleenroll" |
        "$OPENSSL" base64 -d | "$OPENSSL" pkcs7 -inform DER -print_certs >"$OUT/$1.pem"
}
enroll_device bench-device
enroll_device bench-lost
"$KIPUKA" certs revoke "$("$OPENSSL" x509 -in "$OUT/bench-lost.pem" -noout -serial)" \
    --reason keyCompromise --config "$OUT/kipuka.toml" >/dev/null
BASE_URL=https://127.0.0.1:$((PORT + 1))/.well-known/est/ec
ENROLL_URL=$URL
if [ -n "${BASELINE:-}" ]; then
    # Its own device certificate, in its store, for it to renew.
    enroll_device base-device "$BASE_URL"
    ENROLL_URL=$BASE_URL
fi

common=(--cacert "$DEMO/tls-ca.pem" --key-type ec:P-256 --subject CN=bench-device
    --concurrency 16 --duration "$SECS" --warmup 1 --csrs 20000 --timeout 10 --json)
declare -A sum=([enroll]=0 [reenroll]=0 [baseline]=0)
for r in $(seq 1 "$ROUNDS"); do
    for name in "${series[@]}"; do
        case $name in
        # With a baseline, the Basic series goes to it, so that both stores
        # grow alike (a larger store makes every write dearer).
        enroll) "$BENCH" --url "$ENROLL_URL/simpleenroll" \
            --basic-file "$DEMO/basic-auth.txt" "${common[@]}" ;;
        reenroll) "$BENCH" --url "$URL/simplereenroll" --cert "$OUT/bench-device.pem" \
            --key "$OUT/bench-device.key" "${common[@]}" ;;
        baseline) "$BENCH" --url "$BASE_URL/simplereenroll" --cert "$OUT/base-device.pem" \
            --key "$OUT/base-device.key" "${common[@]/CN=bench-device/CN=base-device}" ;;
        esac >"$OUT/$name-$r.json"
        v=$(rate "$OUT/$name-$r.json")
        printf 'round %s %-8s %8.1f enrollments/s  load %s\n' "$r" "$name" "$v" "$(uptime | sed 's/.*load average: //')"
        sum[$name]=$(echo "${sum[$name]} + $v" | bc -l)
    done
done
printf 'simpleenroll (Basic): %.1f/s  simplereenroll (client certificate, revocation check): %.1f/s  reenroll/enroll: %.3f\n' \
    "$(echo "${sum[enroll]} / $ROUNDS" | bc -l)" "$(echo "${sum[reenroll]} / $ROUNDS" | bc -l)" \
    "$(echo "${sum[reenroll]} / ${sum[enroll]}" | bc -l)"
if [ -n "${BASELINE:-}" ]; then
    printf 'simplereenroll on the baseline: %.1f/s  reenroll/baseline: %.3f\n' \
        "$(echo "${sum[baseline]} / $ROUNDS" | bc -l)" "$(echo "${sum[reenroll]} / ${sum[baseline]}" | bc -l)"
fi
# The refusal itself: the revoked certificate is turned away.
code=$(curl -s -o "$OUT/refused.txt" -w '%{http_code}' --cacert "$DEMO/tls-ca.pem" \
    --cert "$OUT/bench-lost.pem" --key "$OUT/bench-lost.key" -H 'Content-Type: application/pkcs10' \
    --data-binary "@$OUT/bench-lost.csr" "$URL/simplereenroll")
echo "a revoked certificate at /simplereenroll: HTTP $code: $(cat "$OUT/refused.txt")"
