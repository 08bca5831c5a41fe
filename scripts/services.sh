#!/usr/bin/env bash
# Local development / test services for Roster: PostgreSQL and a single-node
# Apache Kafka 4.x broker (KRaft mode, no ZooKeeper).
#
# Usage: scripts/services.sh start|stop|env|status|delete-topics TOPIC...
#
#   start   start the selected services (idempotent: already running services
#           are left alone), then print the environment lines on stdout:
#               export ROSTER_KAFKA_BROKERS=127.0.0.1:59092
#               export ROSTER_DATABASE_URL=postgres://roster:roster@127.0.0.1:55432/roster
#           so that   eval "$(scripts/services.sh start)"   works. Every other
#           message goes to stderr.
#   stop    stop the selected services (idempotent).
#   env     print the environment lines without starting anything.
#   status  print whether each selected service runs; exit 0 when all of them
#           run, 3 otherwise.
#   delete-topics TOPIC...
#           delete Kafka topics (benchmarks remove the large topics they write).
#
# Environment:
#   ROSTER_SERVICES       postgres | kafka | postgres,kafka (default: both)
#   ROSTER_SERVICES_DIR   state directory, outside the git clone so it can be
#                         reused between runs. Default: $HOME/.cache/roster-services,
#                         or /var/tmp/roster-services when running as root and
#                         $HOME is not traversable by the (non-root) postgres user.
#   ROSTER_PG_PORT                 default 55432
#   ROSTER_KAFKA_PORT              default 59092
#   ROSTER_KAFKA_CONTROLLER_PORT   default 59093
#   ROSTER_SERVICE_TIMEOUT         seconds to wait for a service (default 60)
#
# PostgreSQL: Debian's packages (installed with apt-get when no binaries are
# found and we are root). The server runs as a non-root OS user (`postgres` if
# it exists, else a dedicated system user `roster-svc`), data in
# $ROSTER_SERVICES_DIR/pg, listening on 127.0.0.1 only, unix socket inside the
# data directory, trust authentication, max_connections=300. Role `roster`
# (password `roster`, SUPERUSER so tests can create databases) and database
# `roster` are ensured on every start.
#
# Kafka: jars from Maven Central, collected with the machine's Maven from
# scripts/kafka/pom.xml (kafka_2.13 + kafka-tools + slf4j-simple) into
# $ROSTER_SERVICES_DIR/kafka/libs (cached; refreshed when the pom changes).
# The storage is formatted once (standalone KRaft quorum), then kafka.Kafka
# runs in the background on Java 17+. Settings: num.partitions=4, all
# replication factors 1, group.initial.rebalance.delay.ms=0 and
# auto.create.topics.enable=false (so Roster's own topic creation is what
# makes the topics exist; tests must create their topics). Broker log:
# $ROSTER_SERVICES_DIR/kafka/kafka.log. The CLI tools are on the same
# classpath, e.g.
#   java -cp "$ROSTER_SERVICES_DIR/kafka/libs/*" org.apache.kafka.tools.TopicCommand \
#        --bootstrap-server 127.0.0.1:59092 --list
set -euo pipefail
umask 022

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_POM="$SCRIPT_DIR/kafka/pom.xml"

PG_PORT="${ROSTER_PG_PORT:-55432}"
KAFKA_PORT="${ROSTER_KAFKA_PORT:-59092}"
KAFKA_CONTROLLER_PORT="${ROSTER_KAFKA_CONTROLLER_PORT:-59093}"
TIMEOUT="${ROSTER_SERVICE_TIMEOUT:-60}"
PG_SVC_USER_FALLBACK="roster-svc"

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }
is_root() { [[ "$(id -u)" -eq 0 ]]; }

# ---------------------------------------------------------------- locations

# True when every existing component of $1 can be traversed by "others"
# (the postgres OS user is neither owner nor group member of root's dirs).
others_can_traverse() {
  local p="$1"
  while [[ -n "$p" && "$p" != "/" ]]; do
    if [[ -e "$p" ]]; then
      local mode
      mode="$(stat -c %A "$p")"
      [[ "${mode:9:1}" == "x" || "${mode:9:1}" == "t" ]] || return 1
    fi
    p="$(dirname "$p")"
  done
  return 0
}

if [[ -n "${ROSTER_SERVICES_DIR:-}" ]]; then
  SERVICES_DIR="$ROSTER_SERVICES_DIR"
else
  SERVICES_DIR="${HOME:-/root}/.cache/roster-services"
  if is_root && ! others_can_traverse "$SERVICES_DIR"; then
    SERVICES_DIR="/var/tmp/roster-services"
  fi
fi
case "$SERVICES_DIR" in /*) ;; *) SERVICES_DIR="$PWD/$SERVICES_DIR" ;; esac

PG_DATA="$SERVICES_DIR/pg"
PG_LOG="$SERVICES_DIR/postgres.log"
KAFKA_HOME="$SERVICES_DIR/kafka"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_DATA="$KAFKA_HOME/data"
KAFKA_CONFIG="$KAFKA_HOME/server.properties"
KAFKA_LOG="$KAFKA_HOME/kafka.log"
KAFKA_PID="$KAFKA_HOME/kafka.pid"

# ---------------------------------------------------------------- selection

WANT_PG=0
WANT_KAFKA=0
for s in $(printf '%s' "${ROSTER_SERVICES:-postgres,kafka}" | tr ',' ' '); do
  case "$s" in
    postgres|postgresql|pg) WANT_PG=1 ;;
    kafka) WANT_KAFKA=1 ;;
    all|both) WANT_PG=1; WANT_KAFKA=1 ;;
    *) die "unknown service '$s' in ROSTER_SERVICES (use postgres, kafka or postgres,kafka)" ;;
  esac
done
[[ $WANT_PG -eq 1 || $WANT_KAFKA -eq 1 ]] || die "ROSTER_SERVICES selects no service"

print_env() {
  if [[ $WANT_KAFKA -eq 1 ]]; then
    echo "export ROSTER_KAFKA_BROKERS=127.0.0.1:${KAFKA_PORT}"
  fi
  if [[ $WANT_PG -eq 1 ]]; then
    echo "export ROSTER_DATABASE_URL=postgres://roster:roster@127.0.0.1:${PG_PORT}/roster"
  fi
}

# ---------------------------------------------------------------- helpers

# True when $1 is a live (not zombie) process.
pid_alive() {
  [[ "$1" =~ ^[0-9]+$ ]] && kill -0 "$1" 2>/dev/null || return 1
  local state
  state="$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null || true)"
  [[ -n "$state" && "$state" != "Z" && "$state" != "X" ]]
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Serialise concurrent invocations. fd 9 must not leak into the long-lived
# server processes (they would keep the lock), hence the 9>&- on launches.
take_lock() {
  mkdir -p "$SERVICES_DIR"
  exec 9>"$SERVICES_DIR/.lock"
  if command -v flock >/dev/null 2>&1; then
    flock -w 600 9 || die "could not lock $SERVICES_DIR/.lock"
  fi
}

apt_install() {
  is_root || die "need root to install: $* (install them, or run as root)"
  log "installing $* with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update >&2
  apt-get install -y "$@" >&2
}

# ================================================================ PostgreSQL

PG_BIN=""
PG_USER=""

# Sets PG_BIN to a directory holding initdb, pg_ctl and postgres.
find_pg_bin() {
  local d want=""
  [[ -f "$PG_DATA/PG_VERSION" ]] && want="$(cat "$PG_DATA/PG_VERSION")"
  # The major version the data directory was created with wins.
  if [[ -n "$want" && -x "/usr/lib/postgresql/$want/bin/postgres" ]]; then
    PG_BIN="/usr/lib/postgresql/$want/bin"; return 0
  fi
  if command -v pg_ctl >/dev/null 2>&1; then
    d="$(dirname "$(readlink -f "$(command -v pg_ctl)")")"
    if [[ -x "$d/initdb" && -x "$d/postgres" ]]; then PG_BIN="$d"; return 0; fi
  fi
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]]; then
    PG_BIN="$d"; return 0
  fi
  return 1
}

pg_psql() {
  local psql="psql"
  [[ -x "$PG_BIN/psql" ]] && psql="$PG_BIN/psql"
  "$psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"
}

# Runs a command as the postgres OS user (from / so the cwd is readable).
as_pg() {
  if is_root; then
    (cd / && runuser -u "$PG_USER" -- "$@")
  else
    (cd / && "$@")
  fi
}

choose_pg_user() {
  if ! is_root; then PG_USER="$(id -un)"; return; fi
  if [[ -d "$PG_DATA" ]]; then
    local owner
    owner="$(stat -c %U "$PG_DATA")"
    if [[ "$owner" != "root" && "$owner" != "UNKNOWN" ]] && id -u "$owner" >/dev/null 2>&1; then
      PG_USER="$owner"; return
    fi
  fi
  if id -u postgres >/dev/null 2>&1; then
    PG_USER=postgres
  else
    if ! id -u "$PG_SVC_USER_FALLBACK" >/dev/null 2>&1; then
      log "creating system user $PG_SVC_USER_FALLBACK"
      useradd -r -m -s /bin/false "$PG_SVC_USER_FALLBACK"
    fi
    PG_USER="$PG_SVC_USER_FALLBACK"
  fi
}

# Prints the postmaster pid when it runs; removes a stale pid file otherwise.
pg_pid() {
  local f="$PG_DATA/postmaster.pid" pid
  [[ -f "$f" ]] || return 1
  pid="$(head -n 1 "$f" 2>/dev/null || true)"
  if pid_alive "$pid" && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == postgres* ]]; then
    echo "$pid"; return 0
  fi
  return 1
}

pg_clean_stale() {
  if [[ -f "$PG_DATA/postmaster.pid" ]] && ! pg_pid >/dev/null; then
    log "postgres: removing stale pid file $PG_DATA/postmaster.pid"
    rm -f "$PG_DATA/postmaster.pid" "$PG_DATA"/.s.PGSQL.*
  fi
}

pg_ensure_roles() {
  pg_psql -d postgres >&2 <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'roster') THEN
    CREATE ROLE roster LOGIN SUPERUSER PASSWORD 'roster';
  ELSE
    ALTER ROLE roster LOGIN SUPERUSER PASSWORD 'roster';
  END IF;
END
$$;
SQL
  if [[ "$(pg_psql -d postgres -At -c "SELECT 1 FROM pg_database WHERE datname = 'roster'")" != "1" ]]; then
    pg_psql -d postgres -c "CREATE DATABASE roster OWNER roster" >&2
  fi
}

pg_start() {
  if ! find_pg_bin; then
    apt_install postgresql
    find_pg_bin || die "postgres binaries not found after installing postgresql"
  fi
  command -v runuser >/dev/null 2>&1 || ! is_root || die "runuser (util-linux) is needed"
  choose_pg_user
  if is_root && ! others_can_traverse "$SERVICES_DIR"; then
    die "$SERVICES_DIR is not traversable by the postgres user '$PG_USER'; choose another ROSTER_SERVICES_DIR (e.g. /var/tmp/roster-services)"
  fi

  local pid
  if pid="$(pg_pid)"; then
    log "postgres: already running (pid $pid, 127.0.0.1:$PG_PORT)"
    pg_ensure_roles
    return 0
  fi
  pg_clean_stale

  if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
    if [[ -d "$PG_DATA" ]] && [[ -n "$(ls -A "$PG_DATA")" ]]; then
      die "$PG_DATA exists, is not empty and holds no cluster; remove it"
    fi
    log "postgres: initdb in $PG_DATA (user $PG_USER, $PG_BIN)"
    mkdir -p "$PG_DATA"
    is_root && chown "$PG_USER:" "$PG_DATA"
    chmod 700 "$PG_DATA"
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust \
      --encoding=UTF8 --locale=C >/dev/null
    printf "\n# Added by roster scripts/services.sh\ninclude_if_exists = 'roster.conf'\n" \
      | as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
  fi
  local have_ver bin_ver
  have_ver="$(cat "$PG_DATA/PG_VERSION")"
  bin_ver="$("$PG_BIN/postgres" --version | sed -E 's/.* ([0-9]+)(\.[0-9]+)*.*/\1/')"
  [[ "$have_ver" == "$bin_ver" ]] || \
    die "$PG_DATA was created by PostgreSQL $have_ver but the binaries in $PG_BIN are $bin_ver; remove $PG_DATA"

  # Regenerated on every start so that ROSTER_PG_PORT can change.
  as_pg tee "$PG_DATA/roster.conf" >/dev/null <<EOF
# Written by roster scripts/services.sh on every start; do not edit.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DATA'
max_connections = 300
EOF

  if port_open "$PG_PORT"; then
    die "port 127.0.0.1:$PG_PORT is already in use by another process (set ROSTER_PG_PORT)"
  fi
  touch "$PG_LOG"
  is_root && chown "$PG_USER:" "$PG_LOG"
  log "postgres: starting on 127.0.0.1:$PG_PORT (log $PG_LOG)"
  if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$TIMEOUT" start >&2 9>&-; then
    tail -n 30 "$PG_LOG" >&2 || true
    die "postgres did not start (log above, full log in $PG_LOG)"
  fi
  pg_ensure_roles
  log "postgres: ready"
}

pg_stop() {
  local pid
  if ! pid="$(pg_pid)"; then
    pg_clean_stale
    log "postgres: not running"
    return 0
  fi
  log "postgres: stopping (pid $pid)"
  if find_pg_bin; then
    PG_USER="$(stat -c %U "$PG_DATA")"
    is_root || PG_USER="$(id -un)"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t "$TIMEOUT" stop >&2 || true
  else
    kill -INT "$pid" 2>/dev/null || true   # SIGINT = fast shutdown
  fi
  local i
  for ((i = 0; i < TIMEOUT * 5; i++)); do
    pid_alive "$pid" || break
    sleep 0.2
  done
  if pid_alive "$pid"; then
    log "postgres: still running after ${TIMEOUT}s, sending SIGQUIT"
    kill -QUIT "$pid" 2>/dev/null || true
  fi
  log "postgres: stopped"
}

pg_status() {
  local pid
  if pid="$(pg_pid)"; then
    echo "postgres: running (pid $pid, 127.0.0.1:$PG_PORT, data $PG_DATA)"
  else
    echo "postgres: stopped (data $PG_DATA)"
    return 3
  fi
}

# ================================================================ Kafka

JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"

ensure_java_maven() {
  if ! command -v "$JAVA" >/dev/null 2>&1; then
    apt_install openjdk-17-jre-headless
    JAVA=java
  fi
  local major
  major="$("$JAVA" -version 2>&1 | sed -nE '1s/.*version "([0-9]+).*/\1/p')"
  [[ -n "$major" && "$major" -ge 17 ]] || die "Kafka 4.x needs Java 17+, '$JAVA' is ${major:-unknown}"
}

KAFKA_LOGGING_PROPS="$SCRIPT_DIR/kafka/simplelogger.properties"

pom_hash() { cat "$KAFKA_POM" "$KAFKA_LOGGING_PROPS" | sha256sum | cut -c1-16; }

# Packs simplelogger.properties into a jar so that every `java -cp 'libs/*'`
# (broker and CLI tools) is quiet by default.
kafka_logging_jar() {
  local out="$1" d
  d="$(mktemp -d)"
  cp "$KAFKA_LOGGING_PROPS" "$d/simplelogger.properties"
  if command -v jar >/dev/null 2>&1; then
    (cd "$d" && jar --create --file "$out" --no-manifest simplelogger.properties)
  elif command -v python3 >/dev/null 2>&1; then
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1], "w").write(sys.argv[2], "simplelogger.properties")' \
      "$out" "$d/simplelogger.properties"
  elif command -v zip >/dev/null 2>&1; then
    (cd "$d" && zip -q "$out" simplelogger.properties)
  else
    log "kafka: no jar/python3/zip to pack simplelogger.properties; CLI tools will log at INFO"
  fi
  rm -rf "$d"
}

kafka_ensure_libs() {
  local stamp="$KAFKA_LIBS/.roster-pom-hash" want
  want="$(pom_hash)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || apt_install maven
  log "kafka: fetching jars with Maven into $KAFKA_LIBS"
  local work="$KAFKA_HOME/maven" tmp="$KAFKA_HOME/libs.tmp"
  rm -rf "$work" "$tmp"
  mkdir -p "$work"
  cp "$KAFKA_POM" "$work/pom.xml"
  if ! (cd "$work" && mvn -q -B dependency:copy-dependencies \
          -DoutputDirectory="$tmp" >"$KAFKA_HOME/maven.log" 2>&1 9>&-); then
    tail -n 40 "$KAFKA_HOME/maven.log" >&2 || true
    rm -rf "$tmp"
    die "kafka: Maven could not fetch the dependencies of $KAFKA_POM (log above, full log in $KAFKA_HOME/maven.log)"
  fi
  kafka_logging_jar "$tmp/roster-logging.jar"
  compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || die "kafka: kafka_2.13 jar missing after Maven run"
  echo "$want" >"$tmp/.roster-pom-hash"
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  rm -rf "$work"
}

KAFKA_JVM_OPTS=(
  -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20
  -XX:+DisableExplicitGC -Djava.awt.headless=true
  # slf4j-simple: quiet (WARN, also set in scripts/kafka/simplelogger.properties)
  # except the line that says the broker is up, which start waits for.
  -Dorg.slf4j.simpleLogger.defaultLogLevel=warn
  -Dorg.slf4j.simpleLogger.log.kafka.server.KafkaRaftServer=info
  -Dorg.slf4j.simpleLogger.showDateTime=true
  "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS"
)

kafka_java() { "$JAVA" "${KAFKA_JVM_OPTS[@]}" -cp "$KAFKA_LIBS/*" "$@"; }

kafka_write_config() {
  cat >"$KAFKA_CONFIG" <<EOF
# Written by roster scripts/services.sh on every start; do not edit.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DATA
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Topics are created by Roster (or by the tests), never implicitly.
auto.create.topics.enable=false
EOF
}

# Prints the broker pid when it runs.
kafka_pid() {
  [[ -f "$KAFKA_PID" ]] || return 1
  local pid
  pid="$(cat "$KAFKA_PID" 2>/dev/null || true)"
  if pid_alive "$pid" \
     && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $KAFKA_CONFIG"; then
    echo "$pid"; return 0
  fi
  return 1
}

kafka_clean_stale() {
  if [[ -f "$KAFKA_PID" ]] && ! kafka_pid >/dev/null; then
    log "kafka: removing stale pid file $KAFKA_PID"
    rm -f "$KAFKA_PID"
  fi
}

kafka_start() {
  mkdir -p "$KAFKA_HOME"
  local pid
  if pid="$(kafka_pid)"; then
    log "kafka: already running (pid $pid, 127.0.0.1:$KAFKA_PORT)"
    return 0
  fi
  kafka_clean_stale
  ensure_java_maven
  kafka_ensure_libs
  kafka_write_config

  # Format once. Reformat (losing the data) only when the controller port or
  # the Kafka version changed, since both are baked into the storage.
  local fstamp="$KAFKA_HOME/format.stamp" want version
  version="$(basename "$(compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" | head -n 1)" .jar)"
  want="controller=$KAFKA_CONTROLLER_PORT version=${version#kafka_2.13-}"
  if [[ -f "$KAFKA_DATA/meta.properties" && "$(cat "$fstamp" 2>/dev/null)" != "$want" ]]; then
    log "kafka: storage was formatted for another controller port or Kafka version; reformatting (topics are lost)"
    rm -rf "$KAFKA_DATA"
  fi
  if [[ ! -f "$KAFKA_DATA/meta.properties" ]]; then
    rm -rf "$KAFKA_DATA"
    local cluster_id
    cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
    [[ "$cluster_id" =~ ^[A-Za-z0-9_-]{22}$ ]] || die "kafka: random-uuid gave '$cluster_id'"
    log "kafka: formatting storage in $KAFKA_DATA (cluster id $cluster_id)"
    local out
    if ! out="$(kafka_java kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$KAFKA_CONFIG" 2>&1)"; then
      printf '%s\n' "$out" >&2
      die "kafka: storage format failed"
    fi
    echo "$want" >"$fstamp"
  fi

  local p
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    if port_open "$p"; then
      die "port 127.0.0.1:$p is already in use by another process (set ROSTER_KAFKA_PORT / ROSTER_KAFKA_CONTROLLER_PORT)"
    fi
  done

  [[ -f "$KAFKA_LOG" ]] && mv -f "$KAFKA_LOG" "$KAFKA_LOG.1"
  log "kafka: starting on 127.0.0.1:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT, log $KAFKA_LOG)"
  # setsid: own session, so the broker outlives this shell and its job control.
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$KAFKA_PID" \
    "$JAVA" "${KAFKA_JVM_OPTS[@]}" -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONFIG" \
    </dev/null >"$KAFKA_LOG" 2>&1 9>&- &

  # Wait for the pid file, then for the broker to announce itself and listen.
  local i deadline=$((SECONDS + TIMEOUT))
  for ((i = 0; i < 50; i++)); do [[ -s "$KAFKA_PID" ]] && break; sleep 0.1; done
  while :; do
    if ! pid="$(kafka_pid)"; then
      tail -n 40 "$KAFKA_LOG" >&2 || true
      rm -f "$KAFKA_PID"
      die "kafka: broker exited during startup (log above, full log in $KAFKA_LOG)"
    fi
    if grep -q "Kafka Server started" "$KAFKA_LOG" && port_open "$KAFKA_PORT"; then
      break
    fi
    if ((SECONDS >= deadline)); then
      tail -n 40 "$KAFKA_LOG" >&2 || true
      kafka_stop >/dev/null 2>&1 || true
      die "kafka: broker not ready after ${TIMEOUT}s (log above, full log in $KAFKA_LOG)"
    fi
    sleep 0.2
  done
  log "kafka: ready (pid $pid)"
}

kafka_stop() {
  local pid
  if ! pid="$(kafka_pid)"; then
    kafka_clean_stale
    log "kafka: not running"
    return 0
  fi
  log "kafka: stopping (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for ((i = 0; i < TIMEOUT * 5; i++)); do
    pid_alive "$pid" || break
    sleep 0.2
  done
  if pid_alive "$pid"; then
    log "kafka: still running after ${TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$KAFKA_PID"
  log "kafka: stopped"
}

kafka_status() {
  local pid
  if pid="$(kafka_pid)"; then
    echo "kafka: running (pid $pid, 127.0.0.1:$KAFKA_PORT, data $KAFKA_DATA)"
  else
    echo "kafka: stopped (data $KAFKA_DATA)"
    return 3
  fi
}

# ================================================================ main

cmd="${1:-}"
case "$cmd" in
  start)
    take_lock
    if [[ $WANT_PG -eq 1 ]]; then pg_start; fi
    if [[ $WANT_KAFKA -eq 1 ]]; then kafka_start; fi
    print_env
    ;;
  stop)
    take_lock
    if [[ $WANT_KAFKA -eq 1 ]]; then kafka_stop; fi
    if [[ $WANT_PG -eq 1 ]]; then pg_stop; fi
    ;;
  env)
    print_env
    ;;
  status)
    rc=0
    if [[ $WANT_PG -eq 1 ]]; then pg_status || rc=3; fi
    if [[ $WANT_KAFKA -eq 1 ]]; then kafka_status || rc=3; fi
    exit "$rc"
    ;;
  delete-topics)
    shift
    rc=0
    for topic in "$@"; do
      kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
        --delete --topic "$topic" >&2 || rc=1
    done
    exit "$rc"
    ;;
  *)
    echo "usage: $0 start|stop|env|status|delete-topics TOPIC...   (ROSTER_SERVICES=postgres|kafka|postgres,kafka)" >&2
    exit 2
    ;;
esac
