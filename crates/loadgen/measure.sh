#!/usr/bin/env bash
# Runs one roster-loadgen measurement against a fresh `roster serve` (release build, new SQLite database).
#
#   crates/loadgen/measure.sh [loadgen run flags…]
#   e.g. crates/loadgen/measure.sh --scenario creates --accounts 1 --users 20000 --concurrency 32 --report r.json
#
# Binaries come from $CARGO_TARGET_DIR/release (default ./target/release); build them first with
# `cargo build --release -p roster -p roster-loadgen`, or point ROSTER_BIN / LOADGEN_BIN at them.
# The server's stdout/stderr are kept in the printed temporary directory when the run fails.
# ROSTER_ENV may add environment for the server (e.g. ROSTER_ENV="RUST_LOG=info").
set -euo pipefail

target=${CARGO_TARGET_DIR:-target}
roster=${ROSTER_BIN:-$target/release/roster}
loadgen=${LOADGEN_BIN:-$target/release/roster-loadgen}
for b in "$roster" "$loadgen"; do
    [[ -x $b ]] || { echo "measure.sh: $b not found; cargo build --release -p roster -p roster-loadgen" >&2; exit 2; }
done

dir=$(mktemp -d /tmp/lg-XXXXXX)
# The embedded defaults whatever the caller's shell holds: with ROSTER_KAFKA_BROKERS exported (by
# `eval "$(scripts/services.sh start)"`), `roster serve` would use Kafka as its log.
# shellcheck disable=SC2086
env -u ROSTER_KAFKA_BROKERS -u ROSTER_DATABASE_URL ROSTER_ADMIN_TOKEN=adm RUST_LOG=warn ${ROSTER_ENV:-} "$roster" serve \
    --listen 127.0.0.1:0 --ops-listen 127.0.0.1:0 --database-url "sqlite://$dir/roster.db?mode=rwc" \
    >"$dir/stdout" 2>"$dir/stderr" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT

for _ in $(seq 600); do
    grep -q '^roster: ready' "$dir/stdout" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { echo "measure.sh: roster exited; see $dir" >&2; exit 2; }
    sleep 0.1
done
public=$(sed -n 's/^roster: public listening on //p' "$dir/stdout")
ops=$(sed -n 's/^roster: ops listening on //p' "$dir/stdout")

set +e
"$loadgen" run --admin-url "http://$ops" --admin-token adm --public-url "http://$public" --server-pid "$pid" "$@"
rc=$?
set -e
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
trap - EXIT
if [[ $rc -eq 0 ]]; then
    rm -rf "$dir"
else
    echo "measure.sh: loadgen exited $rc; server output in $dir" >&2
fi
exit $rc
