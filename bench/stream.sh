#!/usr/bin/env bash
# The stream benchmark (issue 12): 1,000 concurrent `GET /v1/signals/stream` subscribers with
# mixed filters (none, a score threshold, a category, a tag with a threshold) on the release
# build, 100 signals posted one after another; prints the delivery latency p50/p99 (from the
# 201, and from the send: the commit is in between), whether any subscriber missed an event or
# got one twice, and the service's RSS (now and peak).
#
#   bench/stream.sh                                # 1000 subscribers, 100 signals
#   BENCH_SUBSCRIBERS=200 BENCH_POSTS=50 bench/stream.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DB=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/signals_stream}
SUBSCRIBERS=${BENCH_SUBSCRIBERS:-1000}
POSTS=${BENCH_POSTS:-100}
PORT=${BENCH_PORT:-18092}
WORK=$(mktemp -d /tmp/signals-stream.XXXXXX)
say() { printf '== %s\n' "$*" >&2; }

# Each subscriber is a connection on both sides.
ulimit -n "$(ulimit -Hn)"
ADMIN="${DB%/*}/postgres"
DBNAME="${DB##*/}"
psql "$ADMIN" -qc "DROP DATABASE IF EXISTS $DBNAME WITH (FORCE)"
psql "$ADMIN" -qc "CREATE DATABASE $DBNAME"
say "building the release binary and the benchmark client"
cargo build --release --quiet --bin signals --example stream_bench
SIGNALS=./target/release/signals
DATABASE_URL=$DB $SIGNALS migrate 2>/dev/null
KEY=$(DATABASE_URL=$DB $SIGNALS keys create --name stream-bench --scope write)

DATABASE_URL=$DB SIGNALS_BIND=127.0.0.1:$PORT RUST_LOG=warn SIGNALS_RATE_LIMIT_READ=0 \
  SIGNALS_RATE_LIMIT_WRITE=0 SIGNALS_MAX_STREAMS=$((SUBSCRIBERS + 100)) \
  $SIGNALS serve 2>"$WORK/serve.log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
rss() { awk '/^VmRSS|^VmHWM/ {printf "%s %.1f MB  ", $1, $2 / 1024}' "/proc/$server/status"; }
say "service RSS before: $(rss)"
SIGNALS_KEY=$KEY ./target/release/examples/stream_bench "http://127.0.0.1:$PORT" "$SUBSCRIBERS" "$POSTS"
status=$?
echo "service: $(rss)"
grep -c . "$WORK/serve.log" >/dev/null && { say "service log (warnings):"; tail -5 "$WORK/serve.log" >&2; } || true
exit $status
