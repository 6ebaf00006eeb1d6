#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on 127.0.0.1 for tests and local tuning workers.
#
#   scripts/pg_local.sh start   # initdb + start on a free loopback port; prints the URL
#   scripts/pg_local.sh url     # print the URL of the running cluster
#   scripts/pg_local.sh env     # start if needed; print `export REPROLAB_POSTGRES_URL=...`
#   eval "$(scripts/pg_local.sh env)"   # ... into this shell
#   scripts/pg_local.sh stop    # stop the cluster and delete its data dir
#
# Uses the server binaries of Debian's `postgresql` package (/usr/lib/postgresql/*/bin)
# or an initdb/pg_ctl on PATH. As root the cluster runs as the `postgres` user (initdb
# refuses root). It listens on 127.0.0.1 only, with a random password, fsync off
# (the data is disposable). State lives in $REPROLAB_PG_DIR (default /tmp/reprolab-pg-$UID).
set -euo pipefail

STATE=${REPROLAB_PG_DIR:-${TMPDIR:-/tmp}/reprolab-pg-$(id -u)}
DATA=$STATE/data
USER_NAME=reprolab
DB_NAME=reprolab

die() { echo "pg_local: $*" >&2; exit 1; }

bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
    echo "$dir"
  elif command -v initdb >/dev/null; then
    dirname "$(command -v initdb)"
  else
    die "no PostgreSQL server binaries (initdb); install Debian's 'postgresql' package"
  fi
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user to own the cluster"
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

running() { [ -f "$DATA/postmaster.pid" ] && as_owner "$(bindir)/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

url() {
  [ -f "$STATE/url" ] || die "no cluster in $STATE; run: scripts/pg_local.sh start"
  cat "$STATE/url"
}

start() {
  if running; then
    url
    return
  fi
  local bin port password
  bin=$(bindir)
  rm -rf "$STATE"
  mkdir -p "$STATE"
  chmod 700 "$STATE"
  port=$(free_port)
  password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  printf '%s\n' "$password" >"$STATE/pwfile"
  [ "$(id -u)" = 0 ] && chown -R postgres: "$STATE"
  as_owner "$bin/initdb" -D "$DATA" -U "$USER_NAME" --pwfile="$STATE/pwfile" \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$STATE/initdb.log" ||
    { cat "$STATE/initdb.log" >&2; die "initdb failed"; }
  rm -f "$STATE/pwfile"
  local opts="-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$STATE"
  opts+=" -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  as_owner "$bin/pg_ctl" -D "$DATA" -l "$STATE/server.log" -o "$opts" -w -t 60 start >/dev/null ||
    { tail -n 20 "$STATE/server.log" >&2; die "pg_ctl start failed"; }
  PGPASSWORD=$password "$bin/createdb" -h 127.0.0.1 -p "$port" -U "$USER_NAME" "$DB_NAME"
  printf 'postgresql://%s:%s@127.0.0.1:%s/%s\n' "$USER_NAME" "$password" "$port" "$DB_NAME" \
    >"$STATE/url"
  chmod 600 "$STATE/url"
  url
}

stop() {
  if running; then
    as_owner "$(bindir)/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
  fi
  rm -rf "$STATE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) url ;;
  env)
    u=$(start)
    printf 'export REPROLAB_POSTGRES_URL=%q\n' "$u"
    ;;
  *) die "usage: $0 start|stop|url|env" ;;
esac
