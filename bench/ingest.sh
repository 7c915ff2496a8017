#!/usr/bin/env bash
# The ingest benchmark of issue 4: the same signals loaded three ways into an empty table, in one
# run: PostgreSQL's COPY (the baseline, through the same trigger), `signals import`, and
# POST /v1/signals/batch (batches of 500, 4 concurrent clients). Prints rows/s and the ratios.
#   bench/ingest.sh                      # 100,000 signals
#   BENCH_INGEST_ROWS=20000 bench/ingest.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${BENCH_INGEST_ROWS:-100000}
ADMIN=${BENCH_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB="${ADMIN%/*}/signals_ingest"
PORT=${BENCH_PORT:-18091}
WORK=$(mktemp -d /tmp/signals-ingest.XXXXXX)
say() { printf '== %s\n' "$*" >&2; }

cargo build --release --quiet --bin signals
SIGNALS=./target/release/signals
psql "$ADMIN" -qc "DROP DATABASE IF EXISTS signals_ingest" -c "CREATE DATABASE signals_ingest"
DATABASE_URL=$DB $SIGNALS migrate 2>/dev/null
say "generating $ROWS signals"
python3 bench/ingest.py generate "$ROWS" "$WORK/signals.jsonl"
python3 bench/ingest.py copy "$WORK/signals.jsonl" "$WORK/signals.tsv"
empty() { psql "$DB" -qc "TRUNCATE signals CASCADE" -c "CHECKPOINT" >/dev/null; }
# rows/s of $ROWS rows since the time $1 (seconds since the epoch)
rate() { python3 -c "import sys, time; print(round(int(sys.argv[1]) / (time.time() - float(sys.argv[2]))))" "$ROWS" "$1"; }

say "COPY"
empty
start=$(date +%s.%N)
psql "$DB" -qc "\\copy signals (id, slug, title, summary, body, score, category, category_key, published_at, sections, tags, tag_keys, source_url, created_at, updated_at) FROM '$WORK/signals.tsv'"
COPY_RATE=$(rate "$start")

say "signals import"
empty
start=$(date +%s.%N)
DATABASE_URL=$DB $SIGNALS import "$WORK/signals.jsonl" 2>"$WORK/import.log"
IMPORT_RATE=$(rate "$start")

say "POST /v1/signals/batch"
empty
KEY=$(DATABASE_URL=$DB $SIGNALS keys create --name ingest-bench --scope write 2>/dev/null)
# Limits off: the benchmark posts hundreds of batches from one address.
DATABASE_URL=$DB SIGNALS_BIND=127.0.0.1:$PORT RUST_LOG=warn SIGNALS_RATE_LIMIT_WRITE=0 SIGNALS_RATE_LIMIT_READ=0 \
  $SIGNALS serve 2>"$WORK/serve.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.2; done
BATCH_RATE=$(python3 bench/ingest.py post "http://127.0.0.1:$PORT/v1/signals/batch" "$KEY" "$WORK/signals.jsonl" 500 4)
[ "$(psql "$DB" -Atc 'SELECT count(*) FROM signals')" = "$ROWS" ] || { echo "bench: row count differs" >&2; exit 1; }

printf '\n%-40s %10s %8s\n' "way in ($ROWS signals)" "rows/s" "x COPY"
printf '%-40s %10s %8s\n' "COPY (baseline)" "$COPY_RATE" "1.00"
printf '%-40s %10s %8s\n' "signals import" "$IMPORT_RATE" "$(python3 -c "print(f'{$IMPORT_RATE/$COPY_RATE:.2f}')")"
printf '%-40s %10s %8s\n' "POST /v1/signals/batch (500 x 4 clients)" "$BATCH_RATE" "$(python3 -c "print(f'{$BATCH_RATE/$COPY_RATE:.2f}')")"
echo "(files in $WORK)"
