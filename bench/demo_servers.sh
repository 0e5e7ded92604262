# Sourced by the side-by-side benchmark scripts (bench/*_overhead.sh,
# bench/policy_and_flood.sh): extra `kipuka serve` processes made from the
# demo's configuration (target/kipuka-demo/kipuka.toml, written by `cargo
# xtask demo`), each with its own port and SQLite store, stopped on exit.
# The caller sets OUT (a scratch folder) before sourcing.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO=$ROOT/target/kipuka-demo
BENCH=$ROOT/target/release/kipuka-bench
KIPUKA=$ROOT/target/release/kipuka
[ -f "$DEMO/kipuka.toml" ] || { echo "run cargo xtask demo first (no $DEMO/kipuka.toml)"; exit 1; }
rm -rf "$OUT"
mkdir -p "$OUT"

pids=()
stop_servers() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    done
}
trap stop_servers EXIT

# demo_config NAME PORT [EXTRA_TOML]: $OUT/NAME.toml, the demo's
# configuration on PORT with the store $OUT/NAME.db, without its [metrics]
# table and plain-HTTP listener, EXTRA_TOML appended.
demo_config() {
    sed -e '/^\[metrics\]/,/^listen = /d' \
        -e "s|^listen = .*|listen = \"127.0.0.1:$2\"|" \
        -e "s|^url = \"sqlite://.*|url = \"sqlite://$OUT/$1.db\"|" \
        -e '/^http_listen = /d' \
        "$DEMO/kipuka.toml" >"$OUT/$1.toml"
    printf '%s\n' "${3:-}" >>"$OUT/$1.toml"
}

# serve NAME [BINARY]: starts BINARY (default: this build's kipuka) on
# $OUT/NAME.toml and waits until it listens.
serve() {
    (cd "$DEMO" && SOFTHSM2_CONF=$DEMO/softhsm2.conf exec "${2:-$KIPUKA}" serve --config "$OUT/$1.toml" \
        >"$OUT/$1.out" 2>"$OUT/$1.log") &
    pids+=($!)
    for _ in $(seq 1 120); do grep -q "kipuka listening" "$OUT/$1.out" 2>/dev/null && break; sleep 0.5; done
    grep -q "kipuka listening" "$OUT/$1.out" || { cat "$OUT/$1.log"; exit 1; }
}

# rate FILE: enrollments per second from a kipuka-bench --json report.
rate() { sed -E 's/.*"enrollments_per_s":([0-9.]+).*/\1/' <(tr -d '\n ' <"$1"); }
