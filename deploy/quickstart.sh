#!/usr/bin/env bash
# Quickstart: builds dbsync, starts a private source and target PostgreSQL on
# free local ports, loads sample data, and replicates it live (initial copy,
# then a stream of changes) with progress on the console. Ctrl-C stops it all
# and removes the temporary servers.
#
#   deploy/quickstart.sh            # 2M sample orders, then a change every few ms
#   ROWS=200000 deploy/quickstart.sh
#
# While it runs, dbsync's admin endpoint (printed below) serves /metrics and
# /api/tasks, and the copy logs per-table progress lines (rows/s, ETA).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-2000000}

bindir=""
for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
  [ -x "$d/initdb" ] && { bindir=$d; break; }
done
[ -n "$bindir" ] || bindir=$(dirname "$(command -v initdb 2>/dev/null || true)")
[ -x "$bindir/initdb" ] || { echo "PostgreSQL server binaries not found: apt-get install postgresql" >&2; exit 1; }

echo "== building dbsync (release)"
cargo build --release --bin dbsync
DBSYNC=$PWD/target/release/dbsync

work=$(mktemp -d /tmp/dbsync-quickstart.XXXXXX)
as_pg=()
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$work"; as_pg=(runuser -u postgres --); fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SRC_PORT=$(free_port); DST_PORT=$(free_port); ADMIN_PORT=$(free_port)

start_pg() { # name port wal_level
  "${as_pg[@]}" "$bindir/initdb" -D "$work/$1" -U postgres -A trust -E UTF8 --locale=C >/dev/null
  cat >> "$work/$1/postgresql.conf" <<CONF
port = $2
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work'
wal_level = $3
max_replication_slots = 10
max_wal_senders = 10
CONF
  "${as_pg[@]}" "$bindir/pg_ctl" -D "$work/$1" -l "$work/$1.log" -w start >/dev/null
}
cleanup() {
  [ -n "${DBSYNC_PID:-}" ] && kill "$DBSYNC_PID" 2>/dev/null && wait "$DBSYNC_PID" 2>/dev/null || true
  [ -n "${WRITER_PID:-}" ] && kill "$WRITER_PID" 2>/dev/null || true
  for n in source target; do "${as_pg[@]}" "$bindir/pg_ctl" -D "$work/$n" -m fast stop >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

echo "== starting source (port $SRC_PORT, wal_level=logical) and target (port $DST_PORT)"
start_pg source "$SRC_PORT" logical
start_pg target "$DST_PORT" replica
psql_src() { "$bindir/psql" -q -h 127.0.0.1 -p "$SRC_PORT" -U postgres "$@"; }
psql_dst() { "$bindir/psql" -q -h 127.0.0.1 -p "$DST_PORT" -U postgres "$@"; }
psql_src -c "CREATE DATABASE shop"
psql_dst -c "CREATE DATABASE reporting"

echo "== loading $ROWS sample orders into the source"
psql_src -d shop <<SQL
CREATE TABLE orders (id bigint PRIMARY KEY, customer text, amount numeric(12,2),
                     status text, created_at timestamptz DEFAULT now());
INSERT INTO orders (id, customer, amount, status)
SELECT g, 'customer-' || (g % 5000), round((random() * 1000)::numeric, 2),
       (ARRAY['NEW','PAID','SHIPPED'])[1 + g % 3]
  FROM generate_series(1, $ROWS) g;
SQL

cat > "$work/dbsync.toml" <<TOML
[daemon]
data_dir = "$work/data"

[daemon.admin]
listen = "127.0.0.1:$ADMIN_PORT"

[[task]]
name = "quickstart"
sync_mode = "FULL_INCREMENTAL"

[task.source]
type = "postgresql"
url = "postgres://postgres@127.0.0.1:$SRC_PORT/shop"

[task.target]
type = "postgresql"
url = "postgres://postgres@127.0.0.1:$DST_PORT/reporting"

[[task.mapping]]
source = "public.orders"
TOML

echo "== dbsync check"
"$DBSYNC" check --config "$work/dbsync.toml"

echo "== replicating (Ctrl-C to stop); metrics: http://127.0.0.1:$ADMIN_PORT/metrics, tasks: http://127.0.0.1:$ADMIN_PORT/api/tasks"
"$DBSYNC" run --config "$work/dbsync.toml" &
DBSYNC_PID=$!

# A live workload: new orders, status changes and deletes.
( i=$((ROWS + 1)); while true; do
    psql_src -d shop -c "BEGIN;
      INSERT INTO orders (id, customer, amount, status) VALUES ($i, 'customer-$((i % 5000))', 42.00, 'NEW');
      UPDATE orders SET status = 'PAID' WHERE id = $((i - 100));
      DELETE FROM orders WHERE id = $((i - 1000));
      COMMIT;" >/dev/null 2>&1 || true
    i=$((i + 1)); sleep 0.005
  done ) &
WRITER_PID=$!

while kill -0 "$DBSYNC_PID" 2>/dev/null; do
  sleep 5
  src=$(psql_src -d shop -Atc "SELECT count(*) FROM orders" 2>/dev/null || echo "?")
  dst=$(psql_dst -d reporting -Atc "SELECT count(*) FROM orders" 2>/dev/null || echo "-")
  echo "   source rows: $src   target rows: $dst"
done
