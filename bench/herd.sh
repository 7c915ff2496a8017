#!/usr/bin/env bash
# Hot reads while signals change: the cache of hot reads empties on every change, and then every
# client of a hot page misses at once. wrk on one read (Q4, the text search, by default) against
# the release build with its cache on (the default), while a writer changes one signal every
# BENCH_WRITE_MS (PATCH of its score). Prints req/s, p50/p99 and the cache's lookups (hit, miss,
# shared: taken from another read of the same answer) per round.
#
#   bench/herd.sh                                     # on bench/run.sh's database (run it first)
#   BENCH_BASELINE=/tmp/signals-old bench/herd.sh     # that binary too, taking turns, same rounds
#   BENCH_PATH="/v1/signals?min_score=7" bench/herd.sh
#   BENCH_ROUNDS=3 BENCH_DURATION=15 BENCH_WRITE_MS=200
set -euo pipefail
cd "$(dirname "$0")/.."

DB=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/signals_bench}
DURATION=${BENCH_DURATION:-15}
ROUNDS=${BENCH_ROUNDS:-3}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-2}
PORT=${BENCH_PORT:-18093}
WRITE_MS=${BENCH_WRITE_MS:-200}
READ_PATH=${BENCH_PATH:-/v1/signals?q=dralun%20miriv}
BASELINE=${BENCH_BASELINE:-}
WORK=$(mktemp -d /tmp/signals-herd.XXXXXX)
BASE="http://127.0.0.1:$PORT"
say() { printf '== %s\n' "$*" >&2; }

command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }
say "building the release binary"
cargo build --release --quiet --bin signals
SIGNALS=./target/release/signals
[ "$(psql "$DB" -Atc "SELECT count(*) > 0 FROM signals" 2>/dev/null)" = t ] ||
  { echo "bench: $DB has no signals; run bench/run.sh first" >&2; exit 1; }
# The oldest signal: its changes empty the cache but never enter the page read. Its score is
# set back at the end, so the data stays bench/run.sh's (and its plain table's).
read -r SLUG SCORE < <(psql "$DB" -Atc "SELECT slug, score FROM signals ORDER BY published_at, id LIMIT 1" | tr '|' ' ')
KEY=$(DATABASE_URL=$DB $SIGNALS keys create --name herd-bench --scope admin 2>"$WORK/key.txt")
KEY_ID=$(awk '{ print $3 }' "$WORK/key.txt")
trap 'DATABASE_URL=$DB $SIGNALS keys revoke "$KEY_ID" >/dev/null 2>&1 || true
  psql "$DB" -qc "UPDATE signals SET score = $SCORE WHERE slug = '"'"'$SLUG'"'"'" || true' EXIT
openssl rand -hex 32 > "$WORK/webhook.key"

run() { # run NAME BINARY: one measured wrk run, with the writer, against a fresh service
  DATABASE_URL=$DB SIGNALS_BIND=127.0.0.1:$PORT RUST_LOG=warn SIGNALS_RATE_LIMIT_READ=0 \
    SIGNALS_RATE_LIMIT_WRITE=0 SIGNALS_WEBHOOK_KEY_FILE="$WORK/webhook.key" "$2" serve 2>>"$WORK/serve.log" &
  local server=$!
  for _ in $(seq 100); do curl -fs "$BASE/readyz" >/dev/null && break; sleep 0.1; done
  wrk -t"$THREADS" -c"$CONNECTIONS" -d3s "$BASE$READ_PATH" >/dev/null
  ( i=0; while true; do
      curl -fs -o /dev/null -X PATCH -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
        -d "{\"score\": $((i % 10))}" "$BASE/v1/signals/$SLUG" && echo >> "$WORK/$1.writes"
      i=$((i + 1)); sleep "$(printf '0.%03d' "$WRITE_MS")"
    done ) &
  local writer=$!
  local before; before=$(curl -fs "$BASE/metrics")
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$BASE$READ_PATH" > "$WORK/$1.txt"
  local after; after=$(curl -fs "$BASE/metrics")
  kill "$writer"; wait "$writer" 2>/dev/null || true
  kill "$server"; wait "$server" 2>/dev/null || true
  python3 - "$(python3 bench/report.py wrk "$WORK/$1.txt")" "$before" "$after" "$(wc -l < "$WORK/$1.writes")" <<'PY'
import json, re, sys
out = json.loads(sys.argv[1])
def lookups(text):
    return {m.group(1): float(m.group(2)) for m in
            re.finditer(r'^signals_cache_lookups_total\{outcome="(\w+)"\} (\S+)$', text, re.M)}
before, after = lookups(sys.argv[2]), lookups(sys.argv[3])
out["lookups"] = {k: after[k] - before.get(k, 0) for k in after}
out["writes"] = int(sys.argv[4])
print(json.dumps(out))
PY
}

results="["
for r in $(seq "$ROUNDS"); do
  say "round $r"
  round="{\"new\": $(run "new-$r" "$SIGNALS")"
  [ -n "$BASELINE" ] && round+=", \"baseline\": $(run "baseline-$r" "$BASELINE")"
  results+="$round},"
done
results="${results%,}]"
python3 - "$results" "$READ_PATH" "$WRITE_MS" <<'PY'
import json, statistics, sys
rounds = json.loads(sys.argv[1])
print(f"GET {sys.argv[2]}, 32 connections, while one signal changes every {sys.argv[3]} ms")
print(f"{'round':>5} {'binary':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'writes':>6} {'hit':>8} {'miss':>6} {'shared':>7}")
for i, r in enumerate(rounds, 1):
    for name, x in r.items():
        lk = x["lookups"]
        print(f"{i:>5} {name:>9} {x['rps']:>8.0f} {x['p50']:>8.1f} {x['p99']:>8.1f} {x['writes']:>6} "
              f"{lk.get('hit', 0):>8.0f} {lk.get('miss', 0):>6.0f} {lk.get('shared', 0):>7.0f}")
        assert x["bad"] == 0, "non-2xx answers"
for name in rounds[0]:
    print(f"median {name}: {statistics.median(r[name]['rps'] for r in rounds):.0f} req/s, "
          f"p99 {statistics.median(r[name]['p99'] for r in rounds):.1f} ms")
if "baseline" in rounds[0]:
    print(f"median ratio new/baseline: {statistics.median(r['new']['rps'] / r['baseline']['rps'] for r in rounds):.2f}")
PY
echo "(raw outputs in $WORK)"
