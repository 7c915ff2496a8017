#!/usr/bin/env bash
# The webhook benchmark (issue 13): BENCH_WEBHOOK_ROWS (10,000) signals posted in batches
# (100 a batch, 4 clients) to the release build, with no subscription and then with
# BENCH_SUBSCRIPTIONS (10) subscriptions to one local receiver (examples/webhook_receiver.rs),
# taking turns for BENCH_ROUNDS (3) rounds on fresh databases. Prints the ingest rate of both
# (and their ratio), and how fast the deliveries reached the receiver: deliveries/s from the
# first post to the last delivery.
#   bench/webhooks.sh
#   BENCH_WEBHOOK_ROWS=2000 BENCH_ROUNDS=1 bench/webhooks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${BENCH_WEBHOOK_ROWS:-10000}
SUBS=${BENCH_SUBSCRIPTIONS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
ADMIN=${BENCH_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB="${ADMIN%/*}/signals_webhooks"
PORT=${BENCH_PORT:-18093}
RECEIVER=127.0.0.1:${BENCH_RECEIVER_PORT:-18094}
WORK=$(mktemp -d /tmp/signals-webhooks.XXXXXX)
say() { printf '== %s\n' "$*" >&2; }

cargo build --release --quiet --bin signals --example webhook_receiver
SIGNALS=./target/release/signals
python3 bench/ingest.py generate "$ROWS" "$WORK/signals.jsonl"
./target/release/examples/webhook_receiver "$RECEIVER" &
RECV=$!
SERVER=
trap 'kill $RECV $SERVER 2>/dev/null || true' EXIT

# One measured ingest on a fresh database with $1 subscriptions; writes
# "ingest_rows_per_s deliveries deliveries_per_s" to $WORK/result.
run() {
  psql "$ADMIN" -qc "DROP DATABASE IF EXISTS signals_webhooks WITH (FORCE)" -c "CREATE DATABASE signals_webhooks"
  DATABASE_URL=$DB $SIGNALS migrate 2>/dev/null
  local key admin before
  key=$(DATABASE_URL=$DB $SIGNALS keys create --name bench --scope write 2>/dev/null)
  admin=$(DATABASE_URL=$DB $SIGNALS keys create --name bench-admin --scope admin 2>/dev/null)
  DATABASE_URL=$DB SIGNALS_BIND=127.0.0.1:$PORT RUST_LOG=warn SIGNALS_RATE_LIMIT_WRITE=0 \
    SIGNALS_RATE_LIMIT_READ=0 SIGNALS_WEBHOOK_ALLOW_HTTP=true SIGNALS_WEBHOOK_ALLOW_PRIVATE=true \
    SIGNALS_WEBHOOK_KEY_FILE="$WORK/webhook.key" $SIGNALS serve >>"$WORK/serve.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
  for _ in $(seq "$1"); do
    curl -fs "http://127.0.0.1:$PORT/v1/webhooks" -H "Authorization: Bearer $admin" \
      -H 'Content-Type: application/json' -d "{\"url\": \"http://localhost:${RECEIVER#*:}/hook\"}" >/dev/null
  done
  before=$(curl -fs "http://$RECEIVER/count" | cut -d' ' -f1)
  local started ingest expected got
  started=$(python3 -c 'import time; print(int(time.time() * 1000))')
  ingest=$(python3 bench/ingest.py post "http://127.0.0.1:$PORT/v1/signals/batch" "$key" "$WORK/signals.jsonl" 100 4)
  expected=$((ROWS * $1))
  got=0
  if [ "$1" -gt 0 ]; then
    for _ in $(seq 600); do
      read -r got _ last < <(curl -fs "http://$RECEIVER/count") || true
      got=$((got - before))
      [ "$got" -ge "$expected" ] && break
      sleep 0.5
    done
    [ "$got" -ge "$expected" ] || { echo "bench: only $got of $expected deliveries arrived" >&2; exit 1; }
    echo "$ingest $got $(python3 -c "print(round($got / (($last - $started) / 1000)))")" >"$WORK/result"
  else
    echo "$ingest 0 0" >"$WORK/result"
  fi
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=
}

printf '%5s %14s %14s %7s %12s %14s\n' round "ingest 0 subs" "ingest $SUBS subs" ratio deliveries "deliveries/s"
ratios=()
for r in $(seq "$ROUNDS"); do
  run 0
  read -r without _ _ <"$WORK/result"
  run "$SUBS"
  read -r with delivered rate <"$WORK/result"
  ratio=$(python3 -c "print(f'{$with / $without:.2f}')")
  ratios+=("$ratio")
  printf '%5s %14s %14s %7s %12s %14s\n' "$r" "$without" "$with" "$ratio" "$delivered" "$rate"
done
echo "median ratio: $(python3 -c "import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "${ratios[@]}")"
echo "(rows/s; deliveries/s from the first post to the last delivery; files in $WORK)"
