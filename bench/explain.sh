#!/usr/bin/env bash
# EXPLAIN (ANALYZE, BUFFERS) of every query shape of GET /v1/signals, run as the service runs it:
# the statement printed by examples/service_sql, prepared, executed with the same values
# with the setting of the service's list connections (plan_cache_mode = force_custom_plan: every
# execution planned for its values), 6 executions first.
#   bench/explain.sh            # against signals_bench (see bench/run.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
DB=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/signals_bench}
cargo build --release --quiet --example service_sql
SQL=./target/release/examples/service_sql

TAG=$(psql "$DB" -Atc "SELECT t FROM (SELECT unnest(tag_keys) t FROM signals TABLESAMPLE SYSTEM (2)) x GROUP BY t ORDER BY count(*) DESC LIMIT 1")
RARE_TAG=$(psql "$DB" -Atc "SELECT t FROM (SELECT unnest(tag_keys) t FROM signals TABLESAMPLE SYSTEM (2)) x GROUP BY t ORDER BY count(*) LIMIT 1")
# A position deep in the newest-first walk: the 10,000th newest signal.
read -r DEEP_T DEEP_ID < <(psql "$DB" -Atc "SELECT to_char(published_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), id FROM signals ORDER BY published_at DESC, id DESC OFFSET 9999 LIMIT 1" | tr '|' ' ')
SINCE=$(psql "$DB" -Atc "SELECT to_char((max(published_at) - interval '7 days') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM signals")
TEXT=${BENCH_QUERY_TEXT:-dralun miriv}
# A text search's first look among the newest documents: from the time of the horizon-th newest
# (src/db/lists.rs, `Horizon`), ranking the newest SEARCH_CANDIDATES matches.
HORIZON_T=$(psql "$DB" -Atc "SELECT published_at FROM signal_search ORDER BY published_at DESC, id DESC
  OFFSET $(($($SQL horizon) - 1)) LIMIT 1")
CANDIDATES=$($SQL candidates)

# name ; query string (for service_sql) ; values of $1.. separated by | [; service_sql's verb, list]
SHAPES=(
  "score threshold (Q1);min_score=7;7|21"
  "category;category=Research;{research}|21"
  "one tag;tag=$TAG;{$TAG}|21"
  "rare tag;tag=$RARE_TAG;{$RARE_TAG}|21"
  "tag + score (Q3);tag=$TAG&min_score=7;7|{$TAG}|21"
  "time range (last 7 days);since=$SINCE;$SINCE|21"
  "text alone (Q4);q=$TEXT;$TEXT|$HORIZON_T|$CANDIDATES|$TEXT|21;list-first-look"
  "text + score;q=$TEXT&min_score=7;$TEXT|7|$TEXT|$TEXT|21"
  "sort -score;sort=-score;21"
  "sort score with min_score=9;sort=score&min_score=9;9|21"
  "sort published_at (oldest first);sort=published_at;21"
)

run() {
  local name=$1 sql=$2 values=$3
  local params
  params=$(python3 -c 'import sys; print(", ".join("'"'"'" + v.replace("'"'"'", "'"'"''"'"'") + "'"'"'" for v in sys.argv[1].split("|")))' "$values")
  echo "### $name"
  echo
  echo '```'
  {
    # As on the service's connections for list queries (src/db/mod.rs, `Plans::PerExecution`).
    echo "SET plan_cache_mode = force_custom_plan; SET jit = off;"
    echo "PREPARE q AS $sql;"
    for _ in 1 2 3 4 5 6; do echo "EXECUTE q($params);"; done
    echo "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE q($params);"
  } | psql -X -q "$DB" 2>&1 | sed -n '/QUERY PLAN/,$p' | grep -v '^(' | grep -v 'QUERY PLAN' | grep -v '^-*$' | grep -v '^ id ' || true
  echo '```'
  echo
}

for shape in "${SHAPES[@]}"; do
  IFS=';' read -r name query values verb <<<"$shape"
  run "$name" "$($SQL "${verb:-list}" "$query")" "$values"
done
run "deep page: after the 10,000th newest (Q5)" "$($SQL list 'limit=20' "$DEEP_T" "$DEEP_ID")" "$DEEP_T|$DEEP_ID|21"
