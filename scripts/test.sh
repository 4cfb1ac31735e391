#!/usr/bin/env bash
# Runs every test of the workspace against real PostgreSQL 15 and Redis on loopback.
#
# Works on a fresh machine (as root or not) and when run twice in a row: it installs what
# is missing (PostgreSQL 15, redis-server, chromium, chromium-driver, cargo-nextest,
# google-api-python-client), starts throwaway servers on free loopback ports, exports
# their URLs and stops them on exit.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tmp="$root/.ci/tmp"
# PostgreSQL runs as its own user, which may not be able to enter the checkout's folders:
# its data lives under /tmp instead.
pgdir="${TMPDIR:-/tmp}/mcss-test-pg-$(id -u)-$(printf %s "$root" | cksum | cut -d" " -f1)"
# Found (or installed) by find_postgres; set PG_BIN to use another PostgreSQL.
PG_BIN=${PG_BIN:-}

log() { printf '[test] %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The bin folder of PostgreSQL: $PG_BIN, else 15, else the newest under /usr/lib/postgresql.
# Prints nothing (and still succeeds) when there is none.
pg_bin_dir() {
  local dir
  for dir in ${PG_BIN:-/usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r)}; do
    if [ -x "$dir/initdb" ]; then
      printf '%s\n' "$dir"
      return 0
    fi
  done
  return 0
}

find_postgres() {
  local dir
  dir=$(pg_bin_dir)
  if [ -z "$dir" ]; then
    log "installing PostgreSQL 15"
    apt_install postgresql-15 || apt_install postgresql
    dir=$(pg_bin_dir)
  fi
  if [ -z "$dir" ]; then
    log "no initdb found under /usr/lib/postgresql/*/bin (set PG_BIN)"
    exit 1
  fi
  PG_BIN=$dir
  # initdb and pg_ctl refuse to run as root: root runs them as the postgres user, which
  # the Debian package creates (made here when PostgreSQL came from elsewhere).
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  fi
}

install_missing() {
  local need=()
  command -v redis-server >/dev/null || need+=(redis-server)
  command -v chromium >/dev/null || need+=(chromium)
  command -v chromedriver >/dev/null || need+=(chromium-driver)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt_install "${need[@]}"
  fi
  find_postgres
  if ! python3 -c 'import googleapiclient, google.oauth2' >/dev/null 2>&1; then
    log "installing google-api-python-client (Google's own client, for the emulator's conformance test)"
    python3 -m pip install -q --disable-pip-version-check google-api-python-client >/dev/null 2>&1 \
      || log "could not install google-api-python-client"
  fi
  if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest"
    cargo install --locked cargo-nextest >/dev/null
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

cleanup() {
  set +e
  if [ -n "${PG_STARTED:-}" ]; then
    run_pg "$PG_BIN/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null 2>&1
  fi
  if [ -n "${REDIS_PID:-}" ]; then kill "$REDIS_PID" 2>/dev/null; wait "$REDIS_PID" 2>/dev/null; fi
}
trap cleanup EXIT

run_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
  # A server left by an interrupted run would hold the folder: stop it first.
  if [ -f "$pgdir/data/postmaster.pid" ]; then
    run_pg "$PG_BIN/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$pgdir"
  mkdir -p "$pgdir"
  [ "$(id -u)" = 0 ] && chown -R postgres "$pgdir"
  run_pg "$PG_BIN/initdb" -D "$pgdir/data" -A trust -U postgres >/dev/null
  PG_PORT=$(free_port)
  run_pg "$PG_BIN/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w -t 30 \
    -o "-p $PG_PORT -k $pgdir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null
  PG_STARTED=1
  export MCSS_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  log "PostgreSQL on $MCSS_TEST_POSTGRES_URL"
}

start_redis() {
  REDIS_PORT=$(free_port)
  mkdir -p "$tmp/redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$tmp/redis" --daemonize no >"$tmp/redis/log" 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 1 50); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  export MCSS_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  log "Redis on $MCSS_TEST_REDIS_URL"
}

install_missing
mkdir -p "$tmp"
start_postgres
start_redis
export MCSS_TEST_CHROMEDRIVER=${MCSS_TEST_CHROMEDRIVER:-$(command -v chromedriver)}
export MCSS_TEST_CHROMIUM=${MCSS_TEST_CHROMIUM:-$(command -v chromium)}

cargo nextest run --workspace --no-fail-fast "$@"
