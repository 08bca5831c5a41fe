#!/usr/bin/env bash
# `make bench`: Roster's micro-benchmarks and a fixed simulator suite, written up as docs/benchmarks.md.
#
#   scripts/bench.sh            # or: make bench
#
# 1. builds the release binaries (roster, roster-loadgen, roster-logseed);
# 2. runs the criterion micro-benchmarks (roster-scim, roster-filter-sql, roster-events, roster-license-policy)
#    with short settings;
# 3. runs the simulator (crates/loadgen/measure.sh: a fresh `roster serve` on SQLite per run): creates and
#    `userName eq` lookups at each concurrency of BENCH_CONCURRENCY, single member adds against group size up to
#    BENCH_MEMBER_ADD_USERS, the full Entra scenario with its correctness check, and the re-licensing of
#    BENCH_RELICENSE_USERS users after a policy change;
# 4. when Kafka and Postgres are up (`scripts/services.sh status`) or BENCH_KAFKA=1: the creates at concurrency
#    32 against the split deployment (roster ingress, 2 x roster projector, roster licensing on a fresh database
#    and topic) and `roster replay` of that topic into another fresh database; then `roster-logseed` writes an
#    Entra-shaped log of BENCH_REPLAY_EVENTS events to a fresh topic, `roster replay` rebuilds a database from it
#    and the read model is checked against what the log must leave behind;
# 5. writes docs/benchmarks.md and docs/benchmarks/*.svg from the JSON results (scripts/bench_report.py).
#
# Knobs (environment):
#   BENCH_SCALE=small|default|large  small: a smoke test of the whole pipeline in a few minutes (tiny sizes);
#                                    large: the full scenario at 10 accounts x 10,000 users x 100 groups
#   BENCH_CONCURRENCY="1 4 16 32 64 128 256" concurrency sweep of the creates and lookups
#   BENCH_SECS=10                    seconds per sweep point
#   BENCH_MEMBER_ADD_USERS=100000    largest group of the member-add scenario
#   BENCH_RELICENSE_USERS=100000     users re-licensed by the relicense scenario
#   BENCH_REPLAY_EVENTS=1000000      events of the seeded log replayed with Kafka + Postgres
#   BENCH_KAFKA=auto|1|0             auto: the split deployment runs when services.sh says both services are up;
#                                    1: start them (scripts/services.sh start) and run; 0: skip
#   BENCH_MICRO=1 / BENCH_SIM=1      set to 0 to skip the micro-benchmarks / the simulator
#   BENCH_RESULTS=<dir>              where the JSON results go (default $CARGO_TARGET_DIR/bench-results; wiped)
#   BENCH_DOC=docs/benchmarks.md     the report (its SVGs go to docs/benchmarks/)
#   BENCH_SERVER_ENV="ROSTER_RATE_LIMIT_PER_ACCOUNT=0"
#                                    environment of every Roster process: the per-account rate limit (500/s by
#                                    default, a tenant policy rather than capacity) is off, or one account's
#                                    throughput would measure the limiter (the load generator retries 429s)
# The default run takes about 20 minutes on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
server_env=${BENCH_SERVER_ENV-ROSTER_RATE_LIMIT_PER_ACCOUNT=0}
cargo=${CARGO:-cargo}
scale=${BENCH_SCALE:-default}
concurrency=${BENCH_CONCURRENCY:-1 4 16 32 64 128 256}
secs=${BENCH_SECS:-10}
member_add_users=${BENCH_MEMBER_ADD_USERS:-100000}
relicense_users=${BENCH_RELICENSE_USERS:-100000}
replay_events=${BENCH_REPLAY_EVENTS:-1000000}
seed_args=(--accounts 10 --users 10000 --groups 100)
kafka_mode=${BENCH_KAFKA:-auto}
results=${BENCH_RESULTS:-$CARGO_TARGET_DIR/bench-results}
doc=${BENCH_DOC:-docs/benchmarks.md}
# Users offered to a creates run: more than the fastest run creates in BENCH_SECS, which stops it.
create_users=60000
lookup_users=2000
full_args=(--accounts 2 --users 2000 --groups 20)
case $scale in
    small)
        concurrency=${BENCH_CONCURRENCY:-1 8 32}
        secs=${BENCH_SECS:-3}
        member_add_users=${BENCH_MEMBER_ADD_USERS:-2000}
        relicense_users=${BENCH_RELICENSE_USERS:-2000}
        replay_events=${BENCH_REPLAY_EVENTS:-20000}
        seed_args=(--accounts 10 --users 500 --groups 10)
        lookup_users=500
        full_args=(--accounts 2 --users 300 --groups 5)
        ;;
    large) full_args=(--accounts 10 --users 10000 --groups 100) ;;
    default) ;;
    *) echo "bench.sh: BENCH_SCALE must be small, default or large, not $scale" >&2; exit 2 ;;
esac

log() { echo "bench.sh: $(date -u +%H:%M:%S) $*" >&2; }

rm -rf "$results"
mkdir -p "$results/sim"
started=$(date +%s)
echo "{\"scale\": \"$scale\", \"secs_per_point\": $secs, \"started_unix\": $started}" >"$results/run.json"

log "building release binaries"
$cargo build --release -q -p roster -p roster-loadgen -p roster-logseed
roster_bin=$CARGO_TARGET_DIR/release/roster
loadgen_bin=$CARGO_TARGET_DIR/release/roster-loadgen
logseed_bin=$CARGO_TARGET_DIR/release/roster-logseed

# --- micro-benchmarks -----------------------------------------------------------------------------------
if [[ ${BENCH_MICRO:-1} != 0 ]]; then
    log "criterion micro-benchmarks"
    export CRITERION_HOME=$results/criterion
    # --bench '*' runs the criterion targets only (not the libraries' test harnesses, which reject these flags).
    $cargo bench -q -p roster-scim -p roster-filter-sql -p roster-events -p roster-license-policy --bench '*' -- \
        --warm-up-time 1 --measurement-time 3 --noplot 2>&1 | grep -v '^$' >"$results/criterion.log" ||
        { log "cargo bench failed; see $results/criterion.log"; exit 1; }
    unset CRITERION_HOME
fi

# One simulator run against a fresh embedded server; a failed correctness check is recorded, not fatal.
sim() {
    local name=$1
    shift
    log "simulator: $name ($*)"
    if ! ROSTER_ENV=$server_env ROSTER_BIN=$roster_bin LOADGEN_BIN=$loadgen_bin crates/loadgen/measure.sh --no-progress \
        --report "$results/sim/$name.json" "$@" >"$results/sim/$name.log" 2>&1; then
        log "simulator: $name failed (see $results/sim/$name.log); continuing"
    fi
}

# --- simulator on the embedded defaults -------------------------------------------------------------------
if [[ ${BENCH_SIM:-1} != 0 ]]; then
    for c in $concurrency; do
        sim "creates-c$c" --scenario creates --accounts 1 --users "$create_users" --concurrency "$c" \
            --duration-secs "$secs"
    done
    for c in $concurrency; do
        sim "lookups-c$c" --scenario lookups --accounts 1 --users "$lookup_users" --groups 0 --concurrency "$c" \
            --duration-secs "$secs"
    done
    sim member-add --scenario member-add --accounts 1 --users "$member_add_users" --samples 100 \
        --member-batch 1000 --concurrency 16
    sim full --scenario full "${full_args[@]}" --concurrency 8
    sim relicense --scenario relicense --accounts 1 --users "$relicense_users" --member-batch 1000 --concurrency 16
fi

# --- Kafka + Postgres, separate processes -----------------------------------------------------------------
# Waits for `roster: ready` in a process's stdout file and prints the address after `$2 listening on `.
wait_ready() {
    local out=$1 what=$2 pid=$3
    for _ in $(seq 1200); do
        grep -q '^roster: ready' "$out" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || { log "split: a roster process exited; see $out"; return 1; }
        sleep 0.1
    done
    grep -q '^roster: ready' "$out" || { log "split: no ready line in $out"; return 1; }
    sed -n "s/^roster: $what listening on //p" "$out" | head -1
}

# The split deployment of the integration suite's kafka backend on a fresh database and topic: roster migrate,
# roster ingress, 2 x roster projector, roster licensing; creates at concurrency 32 against the ingress (whose
# peak RSS is the ingress row of the targets), then `roster replay` of the topic into another fresh database.
split_run() {
    local dir=$results/split stamp db url topic pids=() pid public ops
    mkdir -p "$dir"
    stamp=$(date +%s)
    db=roster_bench_$stamp
    topic=roster-bench-$stamp
    local admin_url=${ROSTER_DATABASE_URL:-postgres://roster:roster@127.0.0.1:55432/roster}
    psql -X -q "$admin_url" -c "CREATE DATABASE $db" -c "CREATE DATABASE ${db}_replay" >"$dir/psql.log" 2>&1 ||
        { log "split: cannot create databases (see $dir/psql.log)"; return 1; }
    url=${admin_url%/*}/$db
    local env=(ROSTER_DATABASE_URL="$url" ROSTER_KAFKA_BROKERS="${ROSTER_KAFKA_BROKERS:-127.0.0.1:59092}"
        ROSTER_KAFKA_TOPIC="$topic" ROSTER_KAFKA_PARTITIONS=4 ROSTER_KAFKA_GROUP="bench-$stamp"
        ROSTER_ADMIN_TOKEN=adm RUST_LOG=warn $server_env)
    env "${env[@]}" "$roster_bin" migrate >"$dir/migrate.log" 2>&1 || { log "split: migrate failed"; return 1; }
    env "${env[@]}" "$roster_bin" ingress --listen 127.0.0.1:0 --ops-listen 127.0.0.1:0 \
        >"$dir/ingress.out" 2>"$dir/ingress.err" &
    pid=$!
    pids+=("$pid")
    # shellcheck disable=SC2064
    trap "kill ${pids[*]} 2>/dev/null || true" EXIT
    public=$(wait_ready "$dir/ingress.out" public "$pid") || return 1
    ops=$(wait_ready "$dir/ingress.out" ops "$pid") || return 1
    local ingress_pid=$pid role i=0
    for role in projector projector licensing; do
        i=$((i + 1))
        env "${env[@]}" ROSTER_PUBLIC_URL="http://$public" "$roster_bin" "$role" --listen 127.0.0.1:0 \
            --ops-listen 127.0.0.1:0 >"$dir/$role-$i.out" 2>"$dir/$role-$i.err" &
        pids+=("$!")
        wait_ready "$dir/$role-$i.out" ops "$!" >/dev/null || { kill "${pids[@]}"; return 1; }
    done
    # shellcheck disable=SC2064
    trap "kill ${pids[*]} 2>/dev/null || true" EXIT
    log "split: creates at concurrency 32 (ingress pid $ingress_pid)"
    "$loadgen_bin" run --admin-url "http://$ops" --admin-token adm --public-url "http://$public" --no-progress \
        --server-pid "$ingress_pid" --scenario creates --accounts 1 --users "$create_users" --concurrency 32 \
        --duration-secs "$secs" --converge-timeout-secs 60 --report "$results/sim/split-creates-c32.json" \
        >"$dir/loadgen.log" 2>&1 || log "split: loadgen exited $? (see $dir/loadgen.log)"
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    trap - EXIT
    log "split: roster replay of topic $topic"
    if env "${env[@]}" "$roster_bin" replay --into "${admin_url%/*}/${db}_replay" >"$dir/replay.log" 2>&1; then
        sed -n 's/^roster: replayed \([0-9]*\) events in \([0-9.]*\) s.*/{"events": \1, "secs": \2}/p' \
            "$dir/replay.log" >"$results/sim/split-replay.json"
    else
        log "split: replay failed (see $dir/replay.log)"
    fi
    psql -X -q "$admin_url" -c "DROP DATABASE IF EXISTS $db" -c "DROP DATABASE IF EXISTS ${db}_replay" \
        >>"$dir/psql.log" 2>&1 || true
}

# Replay at scale: `roster-logseed` writes an Entra-shaped log of BENCH_REPLAY_EVENTS events (10 accounts, an
# initial cycle each, then incremental cycles) to a fresh topic, `roster replay` rebuilds a fresh database from
# it, and the read model is compared with what the seeded log must leave behind.
seeded_replay() {
    local dir=$results/seeded stamp db topic
    mkdir -p "$dir"
    stamp=$(date +%s)
    db=roster_seed_$stamp
    topic=roster-seed-$stamp
    local admin_url=${ROSTER_DATABASE_URL:-postgres://roster:roster@127.0.0.1:55432/roster}
    psql -X -q "$admin_url" -c "CREATE DATABASE $db" -c "CREATE DATABASE ${db}_replay" >"$dir/psql.log" 2>&1 ||
        { log "seeded: cannot create databases (see $dir/psql.log)"; return 1; }
    local env=(ROSTER_DATABASE_URL="${admin_url%/*}/$db" ROSTER_KAFKA_BROKERS="${ROSTER_KAFKA_BROKERS:-127.0.0.1:59092}"
        ROSTER_KAFKA_TOPIC="$topic" ROSTER_KAFKA_PARTITIONS=4 ROSTER_KAFKA_GROUP="seed-$stamp" RUST_LOG=warn)
    log "seeded: writing $replay_events events to topic $topic"
    env "${env[@]}" "$logseed_bin" --events "$replay_events" "${seed_args[@]}" --expect "$dir/expect.json" >"$dir/logseed.log" 2>&1 ||
        { log "seeded: roster-logseed failed (see $dir/logseed.log)"; return 1; }
    log "seeded: roster replay of $replay_events events"
    if env "${env[@]}" "$roster_bin" replay --into "${admin_url%/*}/${db}_replay" >"$dir/replay.log" 2>&1; then
        local secs counts
        secs=$(sed -n 's/^roster: replayed [0-9]* events in \([0-9.]*\) s.*/\1/p' "$dir/replay.log")
        counts=$(psql -X -q -t -A -F, "${admin_url%/*}/${db}_replay" -c "SELECT (SELECT count(*) FROM scim_users),
            (SELECT count(*) FROM scim_users WHERE active), (SELECT count(*) FROM scim_groups),
            (SELECT count(*) FROM scim_members), (SELECT count(*) FROM scim_users WHERE license_type IS NOT NULL)")
        python3 - "$dir/expect.json" "$secs" "$counts" >"$results/sim/seeded-replay.json" <<'PY'
import json, sys
seeded = json.load(open(sys.argv[1]))
names = ["users", "active_users", "groups", "memberships", "licensed"]
actual = dict(zip(names, (int(x) for x in sys.argv[3].split(","))))
print(json.dumps({"events": seeded["events"], "accounts": seeded["accounts"], "seed_secs": seeded["secs"],
                  "secs": float(sys.argv[2]), "expected": seeded["expected"], "actual": actual}))
PY
    else
        log "seeded: replay failed (see $dir/replay.log)"
    fi
    psql -X -q "$admin_url" -c "DROP DATABASE IF EXISTS $db" -c "DROP DATABASE IF EXISTS ${db}_replay" \
        >>"$dir/psql.log" 2>&1 || true
    # About 600 MB per million events: a benchmark leaves no such topic behind.
    scripts/services.sh delete-topics "$topic" >>"$dir/psql.log" 2>&1 || log "seeded: could not delete topic $topic"
}

kafka_up() { scripts/services.sh status >/dev/null 2>&1; }
run_kafka=0
case $kafka_mode in
    1) eval "$(scripts/services.sh start)"; run_kafka=1 ;;
    auto) if kafka_up; then run_kafka=1; fi ;;
esac
if [[ $run_kafka == 1 && ${BENCH_SIM:-1} != 0 ]]; then
    split_run || log "split deployment run failed; see $results/split"
    seeded_replay || log "seeded replay failed; see $results/seeded"
elif [[ ${BENCH_SIM:-1} != 0 ]]; then
    log "Kafka + Postgres not running (make services; or BENCH_KAFKA=1): split deployment not measured"
fi

echo "{\"scale\": \"$scale\", \"secs_per_point\": $secs, \"started_unix\": $started, \"finished_unix\": $(date +%s), \"kafka\": $run_kafka}" \
    >"$results/run.json"
log "writing $doc"
python3 scripts/bench_report.py --results "$results" --doc "$doc"
log "done in $(($(date +%s) - started)) s"
