#!/usr/bin/env bash
# A throwaway PostgreSQL cluster with the TechEmpower schema, for the tfb app's database
# routes, the tests and the benchmarks. No system service is touched: initdb into a
# scratch directory, postgres run by hand as the `postgres` user.
#
#   scripts/db.sh up       create (first time) and start; idempotent
#   scripts/db.sh down     stop, and remove the cluster
#   scripts/db.sh stop     stop, keep the cluster (start again with `up`)
#   scripts/db.sh status   say what runs where
#   scripts/db.sh psql [ARGS]   psql as benchmarkdbuser on hello_world
#
# Where it listens: 127.0.0.1:$PX_DB_PORT (the kernel backend), and, when the veth
# testbed is up, 10.99.0.2:$PX_DB_PORT inside px-client (the AF_XDP backend reaches the
# database across the link, as it would a database host): a socat relay in px-client
# forwards that address to the cluster's Unix socket, which is not bound to a namespace.
# Schema: database hello_world, role benchmarkdbuser/benchmarkdbpass (SCRAM-SHA-256),
# World(id, randomNumber) with 10,000 rows, Fortune(id, message) with the 12 standard
# rows; pg_stat_statements is loaded (the tests count statements with it); a second
# role md5user/md5pass authenticates with md5 (the client's md5 path is tested).
# Env: PX_DB_DIR (default /var/tmp/px-db), PX_DB_PORT (5432), PX_DB_CPU (pin postgres
# and the relay to this CPU list, e.g. 0; unset: not pinned).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
DIR=${PX_DB_DIR:-/var/tmp/px-db}
PORT=${PX_DB_PORT:-5432}
DATA=$DIR/data SOCK=$DIR/sock LOG=$DIR/postgres.log
CLIENT_NS=px-client CLIENT_IP=10.99.0.2

die() { echo "db.sh: $*" >&2; exit 1; }
log() { echo "db.sh: $*" >&2; }

[ "$(id -u)" -eq 0 ] || die "needs root (it runs postgres as the postgres user, and the relay in the testbed's namespace)"

pgbin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/postgres" ] && { echo "$d"; return; }; done
  return 1
}

install() {
  local missing=()
  pgbin >/dev/null || missing+=(postgresql postgresql-contrib)
  command -v psql >/dev/null || missing+=(postgresql-client)
  command -v socat >/dev/null || missing+=(socat)
  if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get"
    log "installing ${missing[*]}"
    apt-get update -qq >/dev/null
    # policy-rc.d: the package must not start (or create) a system cluster of its own.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
  fi
  id postgres >/dev/null 2>&1 || useradd --system --home-dir "$DIR" --shell /bin/sh postgres
}

as_pg() { runuser -u postgres -- "$@"; }
running() { [ -f "$DATA/postmaster.pid" ] && as_pg "$(pgbin)/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }
psql_super() { as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" "$@"; }

create() {
  local bin; bin=$(pgbin)
  log "creating a cluster in $DATA"
  rm -rf "$DATA"
  mkdir -p "$DATA" "$SOCK"
  chown -R postgres: "$DIR"
  as_pg "$bin/initdb" -D "$DATA" -E UTF8 --locale=C.UTF-8 -U postgres --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  cat >> "$DATA/postgresql.conf" <<EOF
# px-appliance (scripts/db.sh)
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCK'
max_connections = 2000
shared_buffers = 256MB
synchronous_commit = off
fsync = off
full_page_writes = off
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.max = 1000
pg_stat_statements.track = all
EOF
  # The relay reaches the cluster through its Unix socket, so `local` lines must ask
  # for the password as host lines do; only the postgres superuser keeps peer.
  cat > "$DATA/pg_hba.conf" <<'EOF'
local all postgres peer
local all md5user md5
host  all md5user 0.0.0.0/0 md5
local all all scram-sha-256
host  all all 0.0.0.0/0 scram-sha-256
EOF
}

schema() {
  psql_super -d postgres <<'EOF'
CREATE ROLE benchmarkdbuser LOGIN PASSWORD 'benchmarkdbpass';
GRANT pg_read_all_stats TO benchmarkdbuser;
SET password_encryption = 'md5';
CREATE ROLE md5user LOGIN PASSWORD 'md5pass';
CREATE DATABASE hello_world OWNER benchmarkdbuser ENCODING 'UTF8' TEMPLATE template0;
EOF
  psql_super -d hello_world <<'EOF'
CREATE EXTENSION pg_stat_statements;
GRANT EXECUTE ON FUNCTION pg_stat_statements_reset(oid, oid, bigint) TO benchmarkdbuser;
SET ROLE benchmarkdbuser;
CREATE TABLE World (id integer NOT NULL, randomNumber integer NOT NULL DEFAULT 0, PRIMARY KEY (id));
INSERT INTO World (id, randomNumber)
  SELECT x, least(floor(random() * 10000 + 1), 10000) FROM generate_series(1, 10000) AS x;
CREATE TABLE Fortune (id integer NOT NULL, message varchar(2048) NOT NULL, PRIMARY KEY (id));
INSERT INTO Fortune (id, message) VALUES
  (1, 'fortune: No such file or directory'),
  (2, 'A computer scientist is someone who fixes things that aren''t broken.'),
  (3, 'After enough decimal places, nobody gives a damn.'),
  (4, 'A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1'),
  (5, 'A computer program does what you tell it to do, not what you want it to do.'),
  (6, 'Emacs is a nice operating system, but I prefer UNIX. — Tom Christaensen'),
  (7, 'Any program that runs right is obsolete.'),
  (8, 'A list is only as strong as its weakest link. — Donald Knuth'),
  (9, 'Feature: A bug with seniority.'),
  (10, 'Computers make very fast, very accurate mistakes.'),
  (11, '<script>alert("This should not be displayed in a browser alert box.");</script>'),
  (12, 'フレームワークのベンチマーク');
GRANT SELECT, UPDATE ON World, Fortune TO md5user;
EOF
  touch "$DATA/px-schema-done"
}

relay() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$CLIENT_NS" || return 0
  ip -n "$CLIENT_NS" -br addr | grep -q "$CLIENT_IP/" || return 0
  if ip netns exec "$CLIENT_NS" ss -Hltn "sport = :$PORT" | grep -q .; then return 0; fi
  local pin=()
  [ -n "${PX_DB_CPU:-}" ] && pin=(taskset -c "$PX_DB_CPU")
  # socat forks a process per connection: the pools hold theirs open, so it is a few.
  ip netns exec "$CLIENT_NS" "${pin[@]}" socat "TCP-LISTEN:$PORT,bind=$CLIENT_IP,fork,reuseaddr,nodelay" \
    "UNIX-CONNECT:$SOCK/.s.PGSQL.$PORT" </dev/null >/dev/null 2>&1 &
  disown
  for _ in $(seq 100); do
    ip netns exec "$CLIENT_NS" ss -Hltn "sport = :$PORT" | grep -q . && { log "relay on $CLIENT_IP:$PORT (in $CLIENT_NS)"; return 0; }
    sleep 0.05
  done
  die "the relay in $CLIENT_NS did not start listening"
}

up() {
  install
  if ! running; then
    [ -f "$DATA/px-schema-done" ] || create
    local bin pin=(); bin=$(pgbin)
    [ -n "${PX_DB_CPU:-}" ] && pin=(taskset -c "$PX_DB_CPU")
    # pg_ctl -w waits until the server accepts connections.
    as_pg "${pin[@]}" "$bin/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null || { tail -20 "$LOG" >&2; die "postgres did not start"; }
    [ -f "$DATA/px-schema-done" ] || schema
  fi
  relay
  log "PostgreSQL up: postgresql://benchmarkdbuser:benchmarkdbpass@127.0.0.1:$PORT/hello_world (data in $DATA)"
}

stop() {
  pkill -f "socat TCP-LISTEN:$PORT,bind=$CLIENT_IP" 2>/dev/null || true
  if running; then as_pg "$(pgbin)/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null; log "stopped"; fi
}

status() {
  if running; then echo "postgres: running on 127.0.0.1:$PORT, socket $SOCK, data $DATA"; else echo "postgres: not running"; fi
  if ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$CLIENT_NS" && ip netns exec "$CLIENT_NS" ss -Hltn "sport = :$PORT" | grep -q .; then
    echo "relay: $CLIENT_IP:$PORT in $CLIENT_NS"
  else
    echo "relay: none"
  fi
}

case "${1:-}" in
  up) up ;;
  stop) stop ;;
  down) stop; rm -rf "$DIR"; log "removed $DIR" ;;
  status) status ;;
  psql) shift; PGPASSWORD=benchmarkdbpass exec psql -X -h 127.0.0.1 -p "$PORT" -U benchmarkdbuser -d hello_world "$@" ;;
  *) sed -n '2,21p' "$0"; exit 2 ;;
esac
