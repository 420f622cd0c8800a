#!/usr/bin/env bash
# Local Kafka (KRaft), PostgreSQL and Redis for stepstream, without Docker.
#
#   infra/local/services.sh up|down [kafka|postgres|redis ...]
#   infra/local/services.sh status|env
#
# `up` is idempotent: a service that already answers is reused. `down` stops only
# the processes whose pid files `up` wrote. Both act on every service unless given
# names (the outage tests stop and restart one service of a private set). Jars and data live outside git:
#   STEPSTREAM_CACHE_DIR  downloaded broker jars   (default ~/.cache/stepstream)
#   STEPSTREAM_STATE_DIR  data, logs and pid files (default /var/tmp/stepstream)
# Readiness is checked by the Python probe (infra/health.py): Kafka metadata, a SQL
# query, a Redis PING. PYTHON must point at an interpreter with stepstream installed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python3}
CACHE_DIR=${STEPSTREAM_CACHE_DIR:-$HOME/.cache/stepstream}
STATE_DIR=${STEPSTREAM_STATE_DIR:-/var/tmp/stepstream}
KAFKA_VERSION=${STEPSTREAM_KAFKA_VERSION:-4.1.1}
KAFKA_PORT=${STEPSTREAM_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${STEPSTREAM_KAFKA_CONTROLLER_PORT:-19093}
KAFKA_HEAP=${STEPSTREAM_KAFKA_HEAP:-768m}
PG_PORT=${STEPSTREAM_PG_PORT:-15432}
REDIS_PORT=${STEPSTREAM_REDIS_PORT:-16379}
READY_TIMEOUT=${STEPSTREAM_READY_TIMEOUT:-90}

KAFKA_LIBS=$CACHE_DIR/kafka-$KAFKA_VERSION/libs
KAFKA_DIR=$STATE_DIR/kafka
PG_DIR=$STATE_DIR/postgres
REDIS_DIR=$STATE_DIR/redis
RUN_DIR=$STATE_DIR/run

KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
DATABASE_URL=postgresql://stepstream:stepstream@127.0.0.1:$PG_PORT/stepstream
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

probe() { "$PYTHON" -m stepstream.infra.health "$@"; }

# PostgreSQL refuses to run as root; when we are root it runs as the `postgres` user.
as_pg_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$dir" ] && [ -x "$dir/pg_ctl" ] && { echo "$dir"; return; }
  command -v pg_ctl >/dev/null && { dirname "$(command -v pg_ctl)"; return; }
  return 1
}

ensure_packages() {
  local missing=()
  pg_bindir >/dev/null || missing+=(postgresql)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || [ -f "$KAFKA_LIBS/.complete" ] || missing+=(maven)
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing ${missing[*]} with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 \
      || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2; } \
      || die "could not install: ${missing[*]}"
  else
    die "missing packages: ${missing[*]} (install them, e.g. apt-get install ${missing[*]})"
  fi
}

# The operator console's tests drive a real browser: Debian's chromium and its matching
# chromedriver (Selenium), installed like the services.
cmd_browser() {
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      log "installing chromium and chromium-driver with apt-get"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >&2 \
        || { apt-get update -q >&2 \
             && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >&2; } \
        || die "could not install chromium and chromium-driver"
    else
      die "missing chromium and chromium-driver (apt-get install chromium chromium-driver)"
    fi
  fi
  command -v chromium
}

ensure_kafka_jars() {
  [ -f "$KAFKA_LIBS/.complete" ] && return
  log "resolving org.apache.kafka:kafka_2.13:$KAFKA_VERSION from Maven Central into $KAFKA_LIBS"
  mkdir -p "$KAFKA_LIBS"
  (cd "$HERE/kafka" && mvn -q -B -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS") >&2 \
    || die "mvn could not resolve the Kafka broker jars"
  touch "$KAFKA_LIBS/.complete"
}

kafka_up() {
  local pidfile=$RUN_DIR/kafka.pid
  if probe kafka "$KAFKA_BOOTSTRAP_SERVERS" --timeout 2 2>/dev/null; then
    pid_alive "$pidfile" && log "kafka: reusing pid $(cat "$pidfile")" \
      || log "kafka: something else answers on $KAFKA_BOOTSTRAP_SERVERS; reusing it"
    return
  fi
  pid_alive "$pidfile" && die "kafka: pid $(cat "$pidfile") runs but does not answer; see $KAFKA_DIR/server.log"
  ensure_kafka_jars
  mkdir -p "$KAFKA_DIR/data"
  cat > "$KAFKA_DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.retention.hours=24
EOF
  cat > "$KAFKA_DIR/log4j2.properties" <<EOF
rootLogger.level=INFO
rootLogger.appenderRef.stdout.ref=STDOUT
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
logger.kafka.name=kafka
logger.kafka.level=WARN
logger.apache.name=org.apache.kafka
logger.apache.level=WARN
logger.server.name=kafka.server.KafkaRaftServer
logger.server.level=INFO
EOF
  local java_opts=(-Xms256m "-Xmx$KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
                   -Djava.awt.headless=true "-Dlog4j2.configurationFile=$KAFKA_DIR/log4j2.properties")
  if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
    log "kafka: formatting storage in $KAFKA_DIR/data"
    local cluster_id
    cluster_id=$(java -cp "$KAFKA_LIBS/*" "${java_opts[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    java -cp "$KAFKA_LIBS/*" "${java_opts[@]}" kafka.tools.StorageTool format \
      -t "$cluster_id" -c "$KAFKA_DIR/server.properties" >"$KAFKA_DIR/format.log" 2>&1 \
      || die "kafka: storage format failed; see $KAFKA_DIR/format.log"
  fi
  log "kafka $KAFKA_VERSION: starting on $KAFKA_BOOTSTRAP_SERVERS"
  setsid nohup java -cp "$KAFKA_LIBS/*" "${java_opts[@]}" kafka.Kafka "$KAFKA_DIR/server.properties" \
    >"$KAFKA_DIR/server.log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
}

postgres_up() {
  local pidfile=$RUN_DIR/postgres.pid bindir
  bindir=$(pg_bindir) || die "PostgreSQL binaries not found"
  if probe postgres "$DATABASE_URL" --timeout 2 2>/dev/null; then
    pid_alive "$pidfile" && log "postgres: reusing pid $(cat "$pidfile")" \
      || log "postgres: something else answers on port $PG_PORT; reusing it"
    return
  fi
  mkdir -p "$PG_DIR"
  [ "$(id -u)" = 0 ] && chown postgres: "$PG_DIR"
  if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
    log "postgres: initdb in $PG_DIR/data"
    as_pg_user "$bindir/initdb" -D "$PG_DIR/data" -U stepstream --auth=trust -E UTF8 \
      >"$PG_DIR/initdb.log" 2>&1 || die "postgres: initdb failed; see $PG_DIR/initdb.log"
  fi
  log "postgres: starting on 127.0.0.1:$PG_PORT"
  as_pg_user "$bindir/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t "$READY_TIMEOUT" \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200" start >&2 \
    || die "postgres: start failed; see $PG_DIR/server.log"
  head -n 1 "$PG_DIR/data/postmaster.pid" > "$pidfile"
  as_pg_user "$bindir/psql" -h 127.0.0.1 -p "$PG_PORT" -U stepstream -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'stepstream'" | grep -q 1 \
    || as_pg_user "$bindir/createdb" -h 127.0.0.1 -p "$PG_PORT" -U stepstream stepstream
}

redis_up() {
  local pidfile=$RUN_DIR/redis.pid
  if probe redis "$REDIS_URL" --timeout 2 2>/dev/null; then
    pid_alive "$pidfile" && log "redis: reusing pid $(cat "$pidfile")" \
      || log "redis: something else answers on port $REDIS_PORT; reusing it"
    return
  fi
  mkdir -p "$REDIS_DIR"
  log "redis: starting on 127.0.0.1:$REDIS_PORT"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$REDIS_DIR" --save "" \
    --appendonly no --daemonize yes --pidfile "$pidfile" --logfile "$REDIS_DIR/server.log" \
    || die "redis: start failed; see $REDIS_DIR/server.log"
}

wait_ready() {
  case $1 in
    kafka) probe kafka "$KAFKA_BOOTSTRAP_SERVERS" --timeout "$READY_TIMEOUT" \
      || die "kafka did not answer within ${READY_TIMEOUT}s; see $KAFKA_DIR/server.log" ;;
    postgres) probe postgres "$DATABASE_URL" --timeout "$READY_TIMEOUT" \
      || die "postgres did not answer within ${READY_TIMEOUT}s; see $PG_DIR/server.log" ;;
    redis) probe redis "$REDIS_URL" --timeout "$READY_TIMEOUT" \
      || die "redis did not answer within ${READY_TIMEOUT}s; see $REDIS_DIR/server.log" ;;
  esac
}

print_env() {
  echo "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS"
  echo "DATABASE_URL=$DATABASE_URL"
  echo "REDIS_URL=$REDIS_URL"
}

# Stop one pid-file process: SIGTERM, wait, then SIGKILL.
stop_pid() {
  local name=$1 pidfile=$2 pid
  if ! pid_alive "$pidfile"; then rm -f "$pidfile"; log "$name: not running"; return; fi
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then log "$name: still running, SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$pidfile"
  log "$name: stopped (pid $pid)"
}

# The services named on the command line (all of them when none is), checked.
SERVICES=()
select_services() {
  local name
  [ $# -eq 0 ] && set -- redis postgres kafka
  for name in "$@"; do
    case $name in
      kafka|postgres|redis) SERVICES+=("$name") ;;
      *) die "unknown service '$name' (kafka, postgres or redis)" ;;
    esac
  done
}

cmd_up() {
  local name
  mkdir -p "$STATE_DIR" "$RUN_DIR"
  chmod 755 "$STATE_DIR"
  ensure_packages
  for name in "${SERVICES[@]}"; do "${name}_up"; done
  for name in "${SERVICES[@]}"; do wait_ready "$name"; done
  print_env
}

cmd_down() {
  local name
  for name in "${SERVICES[@]}"; do
    case $name in
      kafka) stop_pid kafka "$RUN_DIR/kafka.pid" ;;
      postgres)
        if pid_alive "$RUN_DIR/postgres.pid"; then
          as_pg_user "$(pg_bindir)/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >&2 || true
        fi
        stop_pid postgres "$RUN_DIR/postgres.pid" ;;
      redis) stop_pid redis "$RUN_DIR/redis.pid" ;;
    esac
  done
}

cmd_status() {
  local name pidfile url state rc=0
  for name in kafka postgres redis; do
    pidfile=$RUN_DIR/$name.pid
    case $name in
      kafka) url=$KAFKA_BOOTSTRAP_SERVERS ;;
      postgres) url=$DATABASE_URL ;;
      redis) url=$REDIS_URL ;;
    esac
    if probe "$name" "$url" --timeout 2 2>/dev/null; then state=answers; else state="does not answer"; rc=3; fi
    if pid_alive "$pidfile"; then
      printf '%-9s pid %-8s %-16s %s\n' "$name" "$(cat "$pidfile")" "$state" "$url"
    else
      printf '%-9s %-12s %-16s %s\n' "$name" "not ours" "$state" "$url"
    fi
  done
  return $rc
}

case "${1:-}" in
  up) shift; select_services "$@"; cmd_up ;;
  down) shift; select_services "$@"; cmd_down ;;
  status) cmd_status ;;
  env) print_env ;;
  browser) cmd_browser ;;
  *) echo "usage: $0 up|down [kafka|postgres|redis ...] | status | env | browser" >&2; exit 2 ;;
esac
