#!/usr/bin/env bash
# The ingest benchmark of issues 4 and 15: the same signals loaded three ways into an empty table,
# taking turns for a few rounds: PostgreSQL's COPY (the baseline, through the same trigger),
# `signals import`, and POST /v1/signals/batch (batches of 500, 4 concurrent clients). Prints the
# medians of rows/s and of each round's ratio to COPY.
#   bench/ingest.sh                      # 100,000 generated signals, 3 rounds
#   BENCH_INGEST_ROWS=20000 BENCH_INGEST_ROUNDS=1 bench/ingest.sh
#   BENCH_INGEST_SOURCE=postgres://.../signals_bench bench/ingest.sh
#                                        # the first signals of that database, in time order
#                                        # (bench/run.sh does this with its own data)
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${BENCH_INGEST_ROWS:-100000}
ROUNDS=${BENCH_INGEST_ROUNDS:-3}
ADMIN=${BENCH_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB="${ADMIN%/*}/signals_ingest"
PORT=${BENCH_PORT:-18091}
WORK=$(mktemp -d /tmp/signals-ingest.XXXXXX)
say() { printf '== %s\n' "$*" >&2; }

cargo build --release --quiet --bin signals
SIGNALS=./target/release/signals
psql "$ADMIN" -qc "DROP DATABASE IF EXISTS signals_ingest" -c "CREATE DATABASE signals_ingest"
DATABASE_URL=$DB $SIGNALS migrate 2>/dev/null
if [ -n "${BENCH_INGEST_SOURCE:-}" ]; then
  say "exporting $ROWS signals of the source database"
  psql "$BENCH_INGEST_SOURCE" -X -At -v FETCH_COUNT=5000 -v limit="$ROWS" -f bench/export.sql > "$WORK/signals.jsonl"
else
  say "generating $ROWS signals"
  python3 bench/ingest.py generate "$ROWS" "$WORK/signals.jsonl"
fi
ROWS=$(wc -l < "$WORK/signals.jsonl")
python3 bench/ingest.py copy "$WORK/signals.jsonl" "$WORK/signals.tsv"
# Every way starts from the migrated, empty tables (the change log emptied too) and a checkpoint.
empty() { psql "$DB" -qc "SET client_min_messages = warning" -c "TRUNCATE signals, signal_changes CASCADE" -c "CHECKPOINT" >/dev/null; }
# rows/s of $ROWS rows since the time $1 (seconds since the epoch)
rate() { python3 -c "import sys, time; print(round(int(sys.argv[1]) / (time.time() - float(sys.argv[2]))))" "$ROWS" "$1"; }
loaded() { [ "$(psql "$DB" -Atc 'SELECT count(*) FROM signals')" = "$ROWS" ] || { echo "bench: $1 left a row count other than $ROWS" >&2; exit 1; }; }

KEY=$(DATABASE_URL=$DB $SIGNALS keys create --name ingest-bench --scope write 2>/dev/null)
# The service runs only while the batches are posted, so it does no work (its change listener)
# while the other two load. Limits off: the benchmark posts hundreds of batches from one address.
SERVER=""
trap '[ -z "$SERVER" ] || kill $SERVER 2>/dev/null || true' EXIT
serve() {
  DATABASE_URL=$DB SIGNALS_BIND=127.0.0.1:$PORT RUST_LOG=warn SIGNALS_RATE_LIMIT_WRITE=0 SIGNALS_RATE_LIMIT_READ=0 \
    SIGNALS_WEBHOOK_KEY_FILE="$WORK/webhook.key" $SIGNALS serve 2>>"$WORK/serve.log" &
  SERVER=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && return; sleep 0.2; done
  echo "bench: the service did not start:" >&2; tail -5 "$WORK/serve.log" >&2; exit 1
}
stop() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""; }

rounds=""
for r in $(seq "$ROUNDS"); do
  say "round $r of $ROUNDS: COPY"
  empty
  start=$(date +%s.%N)
  psql "$DB" -qc "\\copy signals (id, slug, title, summary, body, score, category, category_key, published_at, sections, tags, tag_keys, source_url, created_at, updated_at) FROM '$WORK/signals.tsv'"
  copy=$(rate "$start"); loaded COPY

  say "round $r of $ROUNDS: signals import"
  empty
  start=$(date +%s.%N)
  DATABASE_URL=$DB $SIGNALS import "$WORK/signals.jsonl" 2>"$WORK/import.log"
  import=$(rate "$start"); loaded "signals import"

  say "round $r of $ROUNDS: POST /v1/signals/batch"
  empty
  serve
  batch=$(python3 bench/ingest.py post "http://127.0.0.1:$PORT/v1/signals/batch" "$KEY" "$WORK/signals.jsonl" 500 4)
  stop
  loaded "the batch endpoint"
  say "COPY $copy, signals import $import, batch $batch rows/s"
  rounds+="${rounds:+, }{\"copy\": $copy, \"import\": $import, \"batch\": $batch}"
done
echo "{\"rows\": $ROWS, \"rounds\": [$rounds]}" > "$WORK/ingest.json"
python3 bench/ingest.py report "$WORK/ingest.json"
[ -z "${BENCH_INGEST_JSON:-}" ] || cp "$WORK/ingest.json" "$BENCH_INGEST_JSON"
echo "(files in $WORK)"
