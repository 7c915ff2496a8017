#!/usr/bin/env bash
# What the rate limiter costs (issue 11): Q2 (one signal by random id, the cheapest request the
# service answers) under wrk against the release build with limits off and with limits on at a
# quota never reached (so every request is counted, and the counts go to PostgreSQL every
# 250 ms as in production), taking turns, in one run.
#
#   bench/limits.sh                    # 10,000 signals in the database signals_limits
#   BENCH_ROUNDS=5 BENCH_DURATION=10 bench/limits.sh
#
# Prints req/s and p50/p99 per round and the median ratio on/off.
set -euo pipefail
cd "$(dirname "$0")/.."

DB=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/signals_limits}
ROWS=${BENCH_ROWS:-10000}
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-3}
ROUNDS=${BENCH_ROUNDS:-5}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-2}
PORT=${BENCH_PORT:-18091}
WORK=$(mktemp -d /tmp/signals-limits.XXXXXX)
say() { printf '== %s\n' "$*" >&2; }

command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }
ADMIN="${DB%/*}/postgres"
DBNAME="${DB##*/}"
if [ -z "$(psql "$ADMIN" -Atc "SELECT 1 FROM pg_database WHERE datname = '$DBNAME'")" ]; then
  psql "$ADMIN" -qc "CREATE DATABASE $DBNAME"
fi
say "building the release binary"
cargo build --release --quiet --bin signals
SIGNALS=./target/release/signals
DATABASE_URL=$DB $SIGNALS migrate 2>/dev/null
have=$(psql "$DB" -Atc "SELECT count(*) FROM signals")
if [ "$have" -lt "$ROWS" ]; then
  say "generating signals $((have + 1))..$ROWS"
  psql "$DB" -q -v first=$((have + 1)) -v last="$ROWS" -f bench/generate.sql
  psql "$DB" -qc "VACUUM (ANALYZE) signals"
fi
psql "$DB" -Atc "SELECT id FROM signals ORDER BY random() LIMIT 128" > "$WORK/ids.txt"

run() { # run NAME LIMIT: one measured wrk run against a fresh service with that read limit
  DATABASE_URL=$DB SIGNALS_BIND=127.0.0.1:$PORT RUST_LOG=warn SIGNALS_RATE_LIMIT_READ=$2 \
    $SIGNALS serve 2>>"$WORK/serve.log" &
  local server=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
  BENCH_IDS_FILE="$WORK/ids.txt" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -s bench/random_id.lua "http://127.0.0.1:$PORT/" >/dev/null
  BENCH_IDS_FILE="$WORK/ids.txt" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s bench/random_id.lua \
    "http://127.0.0.1:$PORT/" > "$WORK/$1.txt"
  curl -fsI "http://127.0.0.1:$PORT/openapi.json" | grep -i '^ratelimit' >> "$WORK/$1.fields" || true
  kill "$server"; wait "$server" 2>/dev/null || true
  python3 bench/report.py wrk "$WORK/$1.txt"
}

results="["
for r in $(seq "$ROUNDS"); do
  say "round $r"
  off=$(run "off-$r" 0)
  on=$(run "on-$r" 1000000000/60s)
  results+="{\"off\": $off, \"on\": $on},"
done
results="${results%,}]"
python3 - "$results" <<'PY'
import json, statistics, sys
rounds = json.loads(sys.argv[1])
print(f"{'round':>5} {'off req/s':>10} {'on req/s':>10} {'ratio':>6} {'off p50/p99 ms':>16} {'on p50/p99 ms':>16}")
for i, r in enumerate(rounds, 1):
    off, on = r["off"], r["on"]
    print(f"{i:>5} {off['rps']:>10.0f} {on['rps']:>10.0f} {on['rps'] / off['rps']:>6.3f} "
          f"{off['p50']:>7.2f}/{off['p99']:<7.2f} {on['p50']:>7.2f}/{on['p99']:<7.2f}")
    assert off["bad"] == 0 and on["bad"] == 0, "non-2xx answers"
ratios = [r["on"]["rps"] / r["off"]["rps"] for r in rounds]
print(f"median: off {statistics.median(r['off']['rps'] for r in rounds):.0f} req/s, "
      f"on {statistics.median(r['on']['rps'] for r in rounds):.0f} req/s, ratio {statistics.median(ratios):.3f}")
PY
echo "(raw outputs in $WORK)"
