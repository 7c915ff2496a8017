#!/usr/bin/env bash
# The read benchmark with a streaming replica (issue 16), on this one machine: a primary and a
# replica of the benchmark's own (initdb and pg_basebackup -R as the postgres user, free ports),
# BENCH_ROWS (100,000) generated signals, then Q1 (min_score=7 newest 20) and Q2 (one signal by
# random id) under wrk, taking turns for BENCH_ROUNDS (3) rounds of BENCH_DURATION (10) s:
#   one:  one instance, every read on the primary (32 connections);
#   two:  two instances with SIGNALS_READ_DATABASE_URL = the replica (16 connections each).
# The caches are off: every read reaches a database. Prints req/s of each and their ratio.
#   bench/replicas.sh
#   BENCH_ROWS=20000 BENCH_ROUNDS=1 bench/replicas.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${BENCH_ROWS:-100000}
ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-10}
WORK=$(mktemp -d /tmp/signals-replicas.XXXXXX)
chmod 755 "$WORK"; [ "$(id -u)" = 0 ] && chown postgres "$WORK"
say() { printf '== %s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PRIMARY_PORT=$(free_port); REPLICA_PORT=$(free_port)
PIDS=()
cleanup() {
  kill "${PIDS[@]}" 2>/dev/null || true
  wait "${PIDS[@]}" 2>/dev/null || true
  as_postgres "$BIN/pg_ctl" stop -m immediate -D "$WORK/replica" >/dev/null 2>&1 || true
  as_postgres "$BIN/pg_ctl" stop -m immediate -D "$WORK/primary" >/dev/null 2>&1 || true
}
trap cleanup EXIT

say "a primary and a replica of our own"
mkdir -p "$WORK/primary" "$WORK/replica"; chown postgres "$WORK/primary" "$WORK/replica"; chmod 700 "$WORK/primary" "$WORK/replica"
as_postgres "$BIN/initdb" -D "$WORK/primary" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
printf "listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n" >> "$WORK/primary/postgresql.conf"
as_postgres "$BIN/pg_ctl" start -w -D "$WORK/primary" -l "$WORK/primary.log" -o "-p $PRIMARY_PORT" >/dev/null
as_postgres "$BIN/pg_basebackup" -D "$WORK/replica" -R -X stream -c fast -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres
as_postgres "$BIN/pg_ctl" start -w -D "$WORK/replica" -l "$WORK/replica.log" -o "-p $REPLICA_PORT" >/dev/null
ADMIN=postgres://postgres@127.0.0.1:$PRIMARY_PORT/postgres
PRIMARY=postgres://postgres@127.0.0.1:$PRIMARY_PORT/signals
REPLICA=postgres://postgres@127.0.0.1:$REPLICA_PORT/signals
psql "$ADMIN" -qc "CREATE DATABASE signals"

cargo build --release --quiet --bin signals
SIGNALS=./target/release/signals
DATABASE_URL=$PRIMARY $SIGNALS migrate 2>/dev/null
say "generating $ROWS signals"
psql "$PRIMARY" -q -v first=1 -v last="$ROWS" -f bench/generate.sql
psql "$PRIMARY" -qc "VACUUM (ANALYZE) signals"
psql "$PRIMARY" -Atc "SELECT id FROM signals ORDER BY random() LIMIT 128" > "$WORK/ids.txt"
# Until the replica has replayed everything.
target=$(psql "$PRIMARY" -Atc "SELECT pg_current_wal_lsn()")
until [ "$(psql "$REPLICA" -Atc "SELECT pg_last_wal_replay_lsn() >= '$target'")" = t ]; do sleep 0.5; done

serve() { # serve PORT [REPLICA]: an instance without its cache
  DATABASE_URL=$PRIMARY SIGNALS_BIND=127.0.0.1:$1 RUST_LOG=warn SIGNALS_RATE_LIMIT_READ=0 SIGNALS_CACHE_MB=0 \
    SIGNALS_READ_DATABASE_URL=${2:-} SIGNALS_WEBHOOK_KEY_FILE="$WORK/webhook.key" $SIGNALS serve 2>>"$WORK/serve.log" &
  PIDS+=($!)
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$1/readyz" >/dev/null && break; sleep 0.1; done
}
ONE=$(free_port); serve "$ONE"
B1=$(free_port); serve "$B1" "$REPLICA"
B2=$(free_port); serve "$B2" "$REPLICA"
for port in "$B1" "$B2"; do
  until curl -fs "http://127.0.0.1:$port/readyz" | grep -q "serving reads"; do sleep 0.2; done
done

run() { # run QUERY PORT CONNECTIONS: prints req/s
  local script=() path=/v1/signals?min_score=7
  [ "$1" = Q2 ] && { script=(-s bench/random_id.lua); path=/; }
  BENCH_IDS_FILE="$WORK/ids.txt" wrk -t1 -c"$3" -d"${DURATION}s" "${script[@]}" "http://127.0.0.1:$2$path" |
    awk '/Requests\/sec/ {print $2}'
}
printf '%-6s %5s %14s %26s %7s\n' query round "one (primary)" "two (replica), sum of both" ratio
for q in Q1 Q2; do
  for port in "$ONE" "$B1" "$B2"; do run "$q" "$port" 8 >/dev/null; done
  for r in $(seq "$ROUNDS"); do
    one=$(run "$q" "$ONE" 32)
    run "$q" "$B1" 16 > "$WORK/b1" &
    first=$!
    run "$q" "$B2" 16 > "$WORK/b2"
    wait "$first"
    two=$(python3 -c "print(round($(cat "$WORK/b1") + $(cat "$WORK/b2")))")
    printf '%-6s %5s %14.0f %26s %7s\n' "$q" "$r" "$one" "$two" "$(python3 -c "print(f'{$two / $one:.2f}')")"
  done
done
say "replica reads: $(psql "$REPLICA" -Atc "SELECT sum(seq_scan + idx_scan) FROM pg_stat_user_tables WHERE relname = 'signals'")"
