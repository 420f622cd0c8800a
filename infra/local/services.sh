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

KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT  # a cluster's: see kafka_bootstrap
# STEPSTREAM_SERVICES_TLS_DIR (ca.pem, server.crt, server.key) serves PostgreSQL and Redis
# over TLS only: the URLs then ask for it and verify the server against ca.pem.
SERVICES_TLS_DIR=${STEPSTREAM_SERVICES_TLS_DIR:-}
if [ -n "$SERVICES_TLS_DIR" ]; then
  DATABASE_URL="postgresql://stepstream:stepstream@127.0.0.1:$PG_PORT/stepstream?sslmode=verify-full&sslrootcert=$SERVICES_TLS_DIR/ca.pem"
  REDIS_URL="rediss://127.0.0.1:$REDIS_PORT/0?ssl_ca_certs=$SERVICES_TLS_DIR/ca.pem"
else
  DATABASE_URL=postgresql://stepstream:stepstream@127.0.0.1:$PG_PORT/stepstream
  REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
fi

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

# Kafka: one broker by default; `--brokers N` (STEPSTREAM_KAFKA_BROKERS) runs N combined
# broker+controller nodes, node i on KAFKA_PORT+i-1 (controller KAFKA_CONTROLLER_PORT+i-1),
# its data in kafka-i, its pid in run/kafka-i.pid. A cluster of three or more gets what a
# replicated deployment needs: RF 3 defaults and min.insync.replicas=2 on the controllers
# too (Kafka 4.1 clusters with eligible leader replicas read it there, not on brokers).
# STEPSTREAM_KAFKA_TLS_DIR secures a single broker: ca.pem and broker.pem (certificate
# and key) there; SASL_SSL with SCRAM on KAFKA_PORT, mutual TLS on KAFKA_PORT+1, TLS
# between broker and controller, and the ACL authorizer (super users: CN=broker, admin).
# STEPSTREAM_KAFKA_SCRAM_USERS="name=password ..." are created when the storage is formatted.
KAFKA_BROKERS=${STEPSTREAM_KAFKA_BROKERS:-1}
KAFKA_TLS_DIR=${STEPSTREAM_KAFKA_TLS_DIR:-}
SCRAM_USERS=${STEPSTREAM_KAFKA_SCRAM_USERS:-}

node_dir() { if [ "$KAFKA_BROKERS" = 1 ]; then echo "$KAFKA_DIR"; else echo "$KAFKA_DIR-$1"; fi; }
node_pidfile() {
  if [ "$KAFKA_BROKERS" = 1 ]; then echo "$RUN_DIR/kafka.pid"; else echo "$RUN_DIR/kafka-$1.pid"; fi
}
node_address() { echo "127.0.0.1:$((KAFKA_PORT + $1 - 1))"; }

kafka_bootstrap() {
  local i servers=()
  for i in $(seq 1 "$KAFKA_BROKERS"); do servers+=("$(node_address "$i")"); done
  (IFS=,; echo "${servers[*]}")
}

# The probe's own access to a secured broker: mutual TLS with the broker's certificate.
kafka_probe() {
  local address=$1; shift
  if [ -n "$KAFKA_TLS_DIR" ]; then
    KAFKA_SECURITY_PROTOCOL=SSL KAFKA_SSL_CA_FILE=$KAFKA_TLS_DIR/ca.pem \
      KAFKA_SSL_CERT_FILE=$KAFKA_TLS_DIR/broker.pem KAFKA_SSL_KEY_FILE=$KAFKA_TLS_DIR/broker.pem \
      "$PYTHON" -m stepstream.streams.kafka_probe kafka "127.0.0.1:$((KAFKA_PORT + 1))" "$@"
  else
    probe kafka "$address" "$@"
  fi
}

node_properties() {
  local i=$1 dir=$2 voters=() n rf=1 isr=1
  for n in $(seq 1 "$KAFKA_BROKERS"); do voters+=("$n@127.0.0.1:$((KAFKA_CONTROLLER_PORT + n - 1))"); done
  [ "$KAFKA_BROKERS" -ge 3 ] && { rf=3; isr=2; }
  cat <<PROPERTIES
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$(IFS=,; echo "${voters[*]}")
controller.listener.names=CONTROLLER
log.dirs=$dir/data
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.retention.hours=24
PROPERTIES
  if [ -z "$KAFKA_TLS_DIR" ]; then
    cat <<PROPERTIES
listeners=PLAINTEXT://$(node_address "$i"),CONTROLLER://127.0.0.1:$((KAFKA_CONTROLLER_PORT + i - 1))
advertised.listeners=PLAINTEXT://$(node_address "$i")
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
PROPERTIES
  else
    cat <<PROPERTIES
listeners=SASL_SSL://127.0.0.1:$KAFKA_PORT,SSL://127.0.0.1:$((KAFKA_PORT + 1)),CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=SASL_SSL://127.0.0.1:$KAFKA_PORT,SSL://127.0.0.1:$((KAFKA_PORT + 1))
inter.broker.listener.name=SSL
listener.security.protocol.map=CONTROLLER:SSL,SSL:SSL,SASL_SSL:SASL_SSL
ssl.keystore.type=PEM
ssl.keystore.location=$KAFKA_TLS_DIR/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$KAFKA_TLS_DIR/ca.pem
ssl.client.auth=required
listener.name.sasl_ssl.ssl.client.auth=none
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:CN=broker;User:admin
allow.everyone.if.no.acl.found=false
PROPERTIES
  fi
}

kafka_node_up() {
  local i=$1 dir pidfile
  dir=$(node_dir "$i") pidfile=$(node_pidfile "$i")
  pid_alive "$pidfile" && { log "kafka node $i: reusing pid $(cat "$pidfile")"; return; }
  mkdir -p "$dir/data"
  node_properties "$i" "$dir" > "$dir/server.properties"
  cat > "$dir/log4j2.properties" <<PROPERTIES
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
PROPERTIES
  local java_opts=(-Xms256m "-Xmx$KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
                   -Djava.awt.headless=true "-Dlog4j2.configurationFile=$dir/log4j2.properties")
  if [ ! -f "$dir/data/meta.properties" ]; then
    log "kafka node $i: formatting storage in $dir/data"
    local scram=() user
    for user in $SCRAM_USERS; do
      scram+=(--add-scram "SCRAM-SHA-512=[name=${user%%=*},password=${user#*=}]"
              --add-scram "SCRAM-SHA-256=[name=${user%%=*},password=${user#*=}]")
    done
    java -cp "$KAFKA_LIBS/*" "${java_opts[@]}" kafka.tools.StorageTool format \
      -t "$(kafka_cluster_id)" -c "$dir/server.properties" "${scram[@]}" >"$dir/format.log" 2>&1 \
      || die "kafka node $i: storage format failed; see $dir/format.log"
  fi
  log "kafka $KAFKA_VERSION node $i: starting on $(node_address "$i")"
  setsid nohup java -cp "$KAFKA_LIBS/*" "${java_opts[@]}" kafka.Kafka "$dir/server.properties" \
    >"$dir/server.log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
}

# Every node of a cluster is formatted with the same id, kept beside the nodes.
kafka_cluster_id() {
  local file=$STATE_DIR/kafka-cluster-id
  if [ ! -s "$file" ]; then
    java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1 > "$file"
  fi
  cat "$file"
}

kafka_up() {
  local i
  if [ "$KAFKA_BROKERS" = 1 ] && kafka_probe "$KAFKA_BOOTSTRAP_SERVERS" --timeout 2 2>/dev/null; then
    pid_alive "$(node_pidfile 1)" && log "kafka: reusing pid $(cat "$(node_pidfile 1)")" \
      || log "kafka: something else answers on $KAFKA_BOOTSTRAP_SERVERS; reusing it"
    return
  fi
  if [ "$KAFKA_BROKERS" = 1 ] && pid_alive "$(node_pidfile 1)"; then
    die "kafka: pid $(cat "$(node_pidfile 1)") runs but does not answer; see $KAFKA_DIR/server.log"
  fi
  if [ -n "$KAFKA_TLS_DIR" ] && [ "$KAFKA_BROKERS" != 1 ]; then
    die "a secured broker runs alone (--brokers 1)"
  fi
  ensure_kafka_jars
  for i in $(seq 1 "$KAFKA_BROKERS"); do kafka_node_up "$i"; done
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
  local options="-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200"
  if [ -n "$SERVICES_TLS_DIR" ]; then
    # The key must be the server's own and private, or PostgreSQL refuses it.
    install -m 600 "$SERVICES_TLS_DIR/server.key" "$PG_DIR/server.key"
    install -m 644 "$SERVICES_TLS_DIR/server.crt" "$PG_DIR/server.crt"
    [ "$(id -u)" = 0 ] && chown postgres: "$PG_DIR/server.key" "$PG_DIR/server.crt"
    # TCP connections must use TLS (hostssl); the local socket stays for the script.
    printf 'local all all trust\nhostssl all all 127.0.0.1/32 trust\n' > "$PG_DIR/pg_hba.conf"
    [ "$(id -u)" = 0 ] && chown postgres: "$PG_DIR/pg_hba.conf"
    options+=" -c ssl=on -c ssl_cert_file=$PG_DIR/server.crt -c ssl_key_file=$PG_DIR/server.key"
    options+=" -c hba_file=$PG_DIR/pg_hba.conf"
  fi
  log "postgres: starting on 127.0.0.1:$PG_PORT${SERVICES_TLS_DIR:+ (TLS only)}"
  as_pg_user "$bindir/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t "$READY_TIMEOUT" \
    -o "$options" start >&2 \
    || die "postgres: start failed; see $PG_DIR/server.log"
  head -n 1 "$PG_DIR/data/postmaster.pid" > "$pidfile"
  as_pg_user "$bindir/psql" -h "$PG_DIR" -p "$PG_PORT" -U stepstream -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'stepstream'" | grep -q 1 \
    || as_pg_user "$bindir/createdb" -h "$PG_DIR" -p "$PG_PORT" -U stepstream stepstream
}

redis_up() {
  local pidfile=$RUN_DIR/redis.pid
  if probe redis "$REDIS_URL" --timeout 2 2>/dev/null; then
    pid_alive "$pidfile" && log "redis: reusing pid $(cat "$pidfile")" \
      || log "redis: something else answers on port $REDIS_PORT; reusing it"
    return
  fi
  mkdir -p "$REDIS_DIR"
  local listen=(--port "$REDIS_PORT")
  if [ -n "$SERVICES_TLS_DIR" ]; then  # TLS only: no plaintext port at all
    listen=(--port 0 --tls-port "$REDIS_PORT" --tls-cert-file "$SERVICES_TLS_DIR/server.crt"
            --tls-key-file "$SERVICES_TLS_DIR/server.key" --tls-ca-cert-file "$SERVICES_TLS_DIR/ca.pem"
            --tls-auth-clients no)
  fi
  log "redis: starting on 127.0.0.1:$REDIS_PORT${SERVICES_TLS_DIR:+ (TLS only)}"
  redis-server --bind 127.0.0.1 "${listen[@]}" --dir "$REDIS_DIR" --save "" \
    --appendonly no --daemonize yes --pidfile "$pidfile" --logfile "$REDIS_DIR/server.log" \
    || die "redis: start failed; see $REDIS_DIR/server.log"
}

wait_ready() {
  case $1 in
    kafka) local i
      for i in $(seq 1 "$KAFKA_BROKERS"); do
        kafka_probe "$(node_address "$i")" --timeout "$READY_TIMEOUT" \
          || die "kafka node $i did not answer within ${READY_TIMEOUT}s; see $(node_dir "$i")/server.log"
      done ;;
    postgres) probe postgres "$DATABASE_URL" --timeout "$READY_TIMEOUT" \
      || die "postgres did not answer within ${READY_TIMEOUT}s; see $PG_DIR/server.log" ;;
    redis) probe redis "$REDIS_URL" --timeout "$READY_TIMEOUT" \
      || die "redis did not answer within ${READY_TIMEOUT}s; see $REDIS_DIR/server.log" ;;
  esac
}

print_env() {
  echo "KAFKA_BOOTSTRAP_SERVERS=$(kafka_bootstrap)"
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
      kafka) local i
        for i in $(seq 1 "$KAFKA_BROKERS"); do stop_pid "kafka node $i" "$(node_pidfile "$i")"; done ;;
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

ACTION=${1:-}
[ $# -gt 0 ] && shift
ARGS=()
while [ $# -gt 0 ]; do
  case $1 in
    --brokers) KAFKA_BROKERS=${2:?--brokers needs a count}; shift 2 ;;
    --brokers=*) KAFKA_BROKERS=${1#--brokers=}; shift ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
[[ $KAFKA_BROKERS =~ ^[1-9][0-9]?$ ]] || die "--brokers: expected a count of nodes, got '$KAFKA_BROKERS'"
set -- "${ARGS[@]+"${ARGS[@]}"}"

case "$ACTION" in
  up) select_services "$@"; cmd_up ;;
  down) select_services "$@"; cmd_down ;;
  status) cmd_status ;;
  env) print_env ;;
  browser) cmd_browser ;;
  *) echo "usage: $0 up|down [--brokers N] [kafka|postgres|redis ...] | status | env | browser" >&2; exit 2 ;;
esac
