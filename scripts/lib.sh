# Shared by scripts/up, scripts/down, scripts/test and scripts/bench. Every step is
# idempotent: it checks before it installs, starts or creates anything.
# shellcheck shell=bash

set -euo pipefail

VECTIS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Outside the clone, so a fresh clone on the same machine reuses the broker build and
# the compiled dependencies.
export VECTIS_CACHE_DIR="${VECTIS_CACHE_DIR:-/var/cache/vectis}"
export VECTIS_DATA_DIR="${VECTIS_DATA_DIR:-/var/lib/vectis}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$VECTIS_CACHE_DIR/target}"
export DATABASE_URL="${DATABASE_URL:-postgres://vectis:vectis@127.0.0.1:5432/vectis}"
export KAFKA_BROKERS="${KAFKA_BROKERS:-127.0.0.1:9092}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

TANSU_VERSION=0.6.0
TANSU_BIN="$VECTIS_CACHE_DIR/tansu-$TANSU_VERSION/bin/tansu"
# The development stack's broker. The test suite runs its own (see use_test_broker).
BROKER_PORT=9092
BROKER_DIR="$VECTIS_DATA_DIR/broker"

log() { printf '[vectis] %s\n' "$*" >&2; }
die() { printf '[vectis] error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian packages: PostgreSQL, and the C toolchain librdkafka's bundled build needs.
ensure_packages() {
  local wanted=(postgresql postgresql-contrib build-essential pkg-config zlib1g-dev python3 python3-venv procps)
  local missing=()
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  command -v cargo >/dev/null || die "cargo is not on PATH: install the Rust toolchain first"
}

# The machine's PostgreSQL cluster, started, with a `vectis` role that may create
# databases (tests create one per test) and a `vectis` database.
ensure_postgres() {
  local version cluster
  read -r version cluster < <(pg_lsclusters --no-header 2>/dev/null | awk 'NR==1 {print $1, $2}') || true
  if [ -z "${version:-}" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n1)
    cluster=main
    log "creating PostgreSQL $version cluster $cluster"
    as_root pg_createcluster "$version" "$cluster" >/dev/null
  fi
  if ! pg_lsclusters --no-header | awk -v v="$version" -v c="$cluster" '$1==v && $2==c {print $4}' | grep -q online; then
    log "starting PostgreSQL $version/$cluster"
    as_root pg_ctlcluster "$version" "$cluster" start
  fi
  for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.5
  done
  pg_isready -q -h 127.0.0.1 -p 5432 || die "PostgreSQL did not come up on 127.0.0.1:5432"
  as_root runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -d postgres <<'SQL' >/dev/null
SELECT 'CREATE ROLE vectis LOGIN CREATEDB PASSWORD ''vectis'''
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vectis')\gexec
SELECT 'CREATE DATABASE vectis OWNER vectis'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'vectis')\gexec
SQL
}

# Tansu, built once into the cache (about 15 minutes cold on two cores).
ensure_tansu() {
  if [ ! -x "$TANSU_BIN" ]; then
    log "building the Tansu $TANSU_VERSION broker once into $VECTIS_CACHE_DIR (about 15 minutes)"
    mkdir -p "$VECTIS_CACHE_DIR"
    cargo install "tansu@$TANSU_VERSION" --locked --features libsql \
      --root "$VECTIS_CACHE_DIR/tansu-$TANSU_VERSION" >"$VECTIS_CACHE_DIR/tansu-build.log" 2>&1 \
      || { tail -n 30 "$VECTIS_CACHE_DIR/tansu-build.log" >&2; die "building Tansu failed"; }
  fi
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# The broker on 127.0.0.1:$BROKER_PORT with its SQLite engine. The engine resolves an
# absolute path wrongly, so it runs from inside its data directory with a relative one.
start_broker() {
  if port_open 127.0.0.1 "$BROKER_PORT"; then
    return 0
  fi
  ensure_tansu
  mkdir -p "$BROKER_DIR"
  log "starting the broker on 127.0.0.1:$BROKER_PORT (Tansu $TANSU_VERSION, SQLite storage in $BROKER_DIR)"
  (
    cd "$BROKER_DIR"
    nohup "$TANSU_BIN" broker \
      --listener-url "tcp://127.0.0.1:$BROKER_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$BROKER_PORT" \
      --storage-engine sqlite://broker.db >>broker.log 2>&1 &
    echo $! >broker.pid
  )
  for _ in $(seq 1 120); do
    if port_open 127.0.0.1 "$BROKER_PORT"; then
      index_broker_headers
      return 0
    fi
    sleep 0.5
  done
  tail -n 20 "$BROKER_DIR/broker.log" >&2 || true
  die "the broker did not start on 127.0.0.1:$BROKER_PORT"
}

# The test suite's own broker on 127.0.0.1:19092, emptied at the start of every run:
# tests leave their topics behind, and the development stack's broker stays untouched.
use_test_broker() {
  BROKER_PORT=19092
  BROKER_DIR="$VECTIS_DATA_DIR/test-broker"
  export KAFKA_BROKERS="127.0.0.1:$BROKER_PORT"
  stop_broker
  rm -rf "$BROKER_DIR"
}

# Tansu 0.6.0's SQLite schema has no index on record headers, so every fetched
# record scans all headers ever stored: fetches slow down quadratically with the
# broker's total data until the broker stops answering. The index is a local-broker
# fix only; Vectis itself speaks nothing but the Kafka API.
index_broker_headers() {
  python3 - "$BROKER_DIR/broker.db" <<'PY'
import sqlite3, sys, time
# Two repairs of Tansu 0.6.0's SQLite storage, applied when it starts:
# 1. An index on record headers: without it every fetch scans every header ever stored.
# 2. Kafka's retention.ms = -1 (keep forever, what the event log's topics use) is read
#    by Tansu's retention sweep as 0 seconds (`-1 / 1000` in integer arithmetic), so
#    it deletes every record of such a topic at its next maintenance. The trigger
#    refuses those deletions, which gives -1 its Kafka meaning.
for attempt in range(60):
    try:
        db = sqlite3.connect(sys.argv[1], timeout=30)
        if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='header'").fetchone():
            db.execute("CREATE INDEX IF NOT EXISTS vectis_header_topition_offset ON header (topition, offset_id)")
            db.execute("""
                CREATE TRIGGER IF NOT EXISTS vectis_infinite_retention BEFORE DELETE ON record
                WHEN EXISTS (SELECT 1 FROM topition tp
                             JOIN topic_configuration tc ON tc.topic = tp.topic
                             WHERE tp.id = OLD.topition AND tc.name = 'retention.ms' AND tc.value = '-1')
                BEGIN SELECT RAISE(IGNORE); END""")
            db.commit()
            sys.exit(0)
    except sqlite3.OperationalError:
        pass
    time.sleep(0.5)
sys.exit("the broker's SQLite schema did not appear; header index and retention trigger not created")
PY
}

stop_broker() {
  local pid_file="$BROKER_DIR/broker.pid"
  if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    log "stopping the broker"
    kill -TERM "$(cat "$pid_file")"
    for _ in $(seq 1 40); do
      kill -0 "$(cat "$pid_file")" 2>/dev/null || break
      sleep 0.25
    done
    kill -0 "$(cat "$pid_file")" 2>/dev/null && kill -KILL "$(cat "$pid_file")"
  fi
  rm -f "$pid_file"
}

stop_postgres() {
  pg_lsclusters --no-header 2>/dev/null | awk '$4=="online" {print $1, $2}' | while read -r v c; do
    log "stopping PostgreSQL $v/$c"
    as_root pg_ctlcluster "$v" "$c" stop
  done
}

# Tools the tests call, from PyPI, in a virtualenv in the cache: the reference
# OpenAPI validator checks the command API's document.
OPENAPI_SPEC_VALIDATOR_VERSION=0.9.0
ensure_test_tools() {
  local venv="$VECTIS_CACHE_DIR/python-tools"
  export OPENAPI_SPEC_VALIDATOR="$venv/bin/openapi-spec-validator"
  if [ -x "$OPENAPI_SPEC_VALIDATOR" ] &&
    "$venv/bin/pip" show openapi-spec-validator 2>/dev/null | grep -qx "Version: $OPENAPI_SPEC_VALIDATOR_VERSION"; then
    return
  fi
  log "installing openapi-spec-validator $OPENAPI_SPEC_VALIDATOR_VERSION into $venv"
  python3 -m venv "$venv" || die "python3 -m venv failed (Debian needs python3-venv)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "openapi-spec-validator==$OPENAPI_SPEC_VALIDATOR_VERSION"
}

# Everything the system and the tests need, running.
ensure_stack() {
  ensure_packages
  ensure_postgres
  start_broker
}
