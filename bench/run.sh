#!/usr/bin/env bash
# The read benchmark of issue 3: the release build under wrk against pgbench running the very SQL
# statements the service sends, in the same run, on the same machine and data.
#
#   bench/run.sh                       # 1,000,000 signals in the database signals_bench
#   BENCH_ROWS=100000 bench/run.sh     # smaller, for a quick look
#   BENCH_ONLY="Q1 Q3" bench/run.sh    # only these queries
#   BENCH_ROUNDS=5 BENCH_DURATION=10   # measured rounds per query (default 3 of 15 s)
#   BENCH_LOAD=sql bench/run.sh        # fill with bench/generate.sql directly, not via signals import
#
# One report, medians of the rounds: per query the API without its cache and with it, pgbench
# on the service's own SQL and on the plain table a user would make (issue 15), the searches
# that match many signals (one client p50, 32 connections), GET /healthz (the framework's
# ceiling), the service's peak RSS, the import rate when this run loaded the data, and last
# COPY against `signals import` and the batch endpoint on the first BENCH_INGEST_ROWS (100,000;
# 0 leaves it out) of these signals (bench/ingest.sh).
#
# Q1 min_score=7 newest 20 | Q2 one signal by random id | Q3 one tag + min_score=7 |
# Q4 a text search | Q5 page 500 of a cursor walk (newest first). Q2 draws from 128 random ids on
# both sides.
# Prints req/s, p50/p99 and the API/pgbench ratio per query (medians of the rounds, each round
# one wrk run then one pgbench run), and the service's peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."

DB=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/signals_bench}
ROWS=${BENCH_ROWS:-1000000}
DURATION=${BENCH_DURATION:-15}
WARMUP=${BENCH_WARMUP:-5}
ROUNDS=${BENCH_ROUNDS:-3}
ONLY=${BENCH_ONLY:-}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-2}
PORT=${BENCH_PORT:-18090}
Q4_TEXT=${BENCH_QUERY_TEXT:-dralun miriv}
WORK=$(mktemp -d /tmp/signals-bench.XXXXXX)
BASE="http://127.0.0.1:$PORT"

say() { printf '== %s\n' "$*" >&2; }

for tool in psql pgbench python3 curl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is needed" >&2; exit 1; }
done
if ! command -v wrk >/dev/null; then
  say "installing wrk"
  apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi

# The database: created, migrated and filled up to ROWS signals when it has fewer.
ADMIN="${DB%/*}/postgres"
DBNAME="${DB##*/}"; DBNAME="${DBNAME%%\?*}"
if [ -z "$(psql "$ADMIN" -Atc "SELECT 1 FROM pg_database WHERE datname = '$DBNAME'")" ]; then
  psql "$ADMIN" -qc "CREATE DATABASE $DBNAME"
fi
say "building the release binary"
cargo build --release --quiet --bin signals --example service_sql
SIGNALS=./target/release/signals
SQL=./target/release/examples/service_sql
DATABASE_URL=$DB $SIGNALS migrate 2>/dev/null
have=$(psql "$DB" -Atc "SELECT count(*) FROM signals")
if [ "$have" -lt "$ROWS" ]; then
  # The signals are made by bench/generate.sql in a scratch database and go into the benchmark
  # database through the project's own ingest path, `signals import` (validation, slugs, case
  # keys, the search document: all as for signals posted to the API). BENCH_LOAD=sql generates
  # straight into the benchmark database instead (faster, bypasses the service's code).
  if [ "${BENCH_LOAD:-import}" = sql ]; then TARGET=$DB; else TARGET="${DB%/*}/${DBNAME}_source"; fi
  if [ "$TARGET" != "$DB" ]; then
    psql "$ADMIN" -qc "DROP DATABASE IF EXISTS ${DBNAME}_source" -c "CREATE DATABASE ${DBNAME}_source"
    DATABASE_URL=$TARGET $SIGNALS migrate 2>/dev/null
  fi
  say "generating signals $((have + 1))..$ROWS (bench/generate.sql, two sessions in parallel)"
  mid=$(( (have + 1 + ROWS) / 2 ))
  psql "$TARGET" -q -v first=$((have + 1)) -v last=$mid -f bench/generate.sql &
  psql "$TARGET" -q -v first=$((mid + 1)) -v last="$ROWS" -f bench/generate.sql &
  wait
  if [ "$TARGET" != "$DB" ]; then
    say "importing them with signals import"
    psql "$TARGET" -X -At -v FETCH_COUNT=5000 -v limit=ALL -f bench/export.sql |
      DATABASE_URL=$DB $SIGNALS import - 2>"$WORK/import.log" ||
      { echo "bench: signals import failed:" >&2; tail -5 "$WORK/import.log" >&2; exit 1; }
    tail -1 "$WORK/import.log" >&2
    psql "$ADMIN" -qc "DROP DATABASE ${DBNAME}_source"
  fi
  psql "$DB" -qc "VACUUM (ANALYZE) signals" -c "VACUUM (ANALYZE) signal_search"
fi
say "$(psql "$DB" -Atc "SELECT count(*) FROM signals") signals"
# The plain table a user would make for the same signals (issue 15's baseline): the client
# fields only, the same rows in the same physical order, a B-tree on (published_at, id) and on
# (score, published_at), a GIN on tags. Made again when the signals changed.
if [ "$(psql "$DB" -Atc "SELECT count(*) FROM pg_class WHERE relname = 'signals_plain'")" = 0 ] ||
   [ "$(psql "$DB" -Atc "SELECT count(*) FROM signals_plain")" != "$(psql "$DB" -Atc "SELECT count(*) FROM signals")" ]; then
  say "making the plain table signals_plain"
  psql "$DB" -q -v ON_ERROR_STOP=1 <<'SQL'
DROP TABLE IF EXISTS signals_plain;
CREATE TABLE signals_plain AS
  SELECT id, slug, title, summary, body, score, category, published_at, sections, tags, source_url,
         created_at, updated_at
  FROM signals ORDER BY ctid;
ALTER TABLE signals_plain ADD PRIMARY KEY (id);
CREATE INDEX signals_plain_published_idx ON signals_plain (published_at, id);
CREATE INDEX signals_plain_score_idx ON signals_plain (score, published_at);
CREATE INDEX signals_plain_tags_idx ON signals_plain USING gin (tags);
VACUUM ANALYZE signals_plain;
SQL
fi
say "storage: $(psql "$DB" -Atc "SELECT string_agg(format('%s %s (TOAST %s)', c.relname,
    pg_size_pretty(pg_relation_size(c.oid)), pg_size_pretty(coalesce(pg_relation_size(c.reltoastrelid), 0))), '; ')
  FROM pg_class c WHERE c.relname IN ('signals', 'signals_plain', 'signal_search')")"
# Both sides are measured on a warm cache: the table, its TOAST data (most of the 6.9 GB) and its
# indexes are read into the OS page cache first, so random reads (Q2) measure CPU, not the disk.
if psql "$DB" -qc "CREATE EXTENSION IF NOT EXISTS pg_prewarm" 2>/dev/null; then
  say "reading the table and its indexes into the page cache"
  psql "$DB" -qAtc "SELECT sum(pg_prewarm(c.oid, 'read')) FROM pg_class c
    WHERE c.relpages > 0 AND (c.relname IN ('signals', 'signals_plain', 'signal_search')
       OR c.oid IN (SELECT reltoastrelid FROM pg_class WHERE relname IN ('signals', 'signals_plain', 'signal_search'))
       OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid IN ('signals'::regclass, 'signals_plain'::regclass, 'signal_search'::regclass)))" >/dev/null
fi

# The service, as deployed: release build, default settings, quiet logs, twice: without its
# cache of hot reads (every request reaches PostgreSQL: what the SQL comparisons are about) and
# with it (SIGNALS_CACHE_MB's default), each idle while the other is measured.
# Rate limits off unless BENCH_RATE_LIMIT_READ says otherwise (bench/limits.sh measures them).
CACHED="http://127.0.0.1:$((PORT + 1))"
DATABASE_URL=$DB SIGNALS_BIND=127.0.0.1:$PORT RUST_LOG=warn SIGNALS_RATE_LIMIT_READ=${BENCH_RATE_LIMIT_READ:-0} \
  SIGNALS_CACHE_MB=0 SIGNALS_WEBHOOK_KEY_FILE="$WORK/webhook.key" $SIGNALS serve 2>"$WORK/serve.log" &
SERVER=$!
DATABASE_URL=$DB SIGNALS_BIND=127.0.0.1:$((PORT + 1)) RUST_LOG=warn SIGNALS_RATE_LIMIT_READ=${BENCH_RATE_LIMIT_READ:-0} \
  SIGNALS_WEBHOOK_KEY_FILE="$WORK/webhook.key" $SIGNALS serve 2>"$WORK/serve-cached.log" &
SERVER_CACHED=$!
trap 'kill $SERVER $SERVER_CACHED 2>/dev/null || true; wait $SERVER $SERVER_CACHED 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fs "$BASE/readyz" >/dev/null && curl -fs "$CACHED/readyz" >/dev/null && break; sleep 0.2; done
# A text search's first look reads the GIN index of the newest documents, which the service
# builds at start when it has none that covers its horizon (src/db/search_index.rs): measured
# once it is there, as a running service has it.
recent_index() {
  psql "$DB" -Atc "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE i.indrelid = 'signal_search'::regclass AND i.indisvalid
      AND starts_with(c.relname::text, 'signal_search_recent_')"
}
waited=0
while [ -z "$(recent_index)" ]; do
  [ "$waited" -ge 1800 ] && { echo "bench: no index of the newest search documents after 30 min" >&2; exit 1; }
  [ "$waited" = 0 ] && say "waiting for the service's index of the newest search documents"
  sleep 1; waited=$((waited + 1))
done
[ "$waited" -gt 0 ] && say "$(recent_index) built in about $waited s"
psql "$DB" -qAtc "SELECT pg_prewarm('$(recent_index)'::regclass, 'read')" >/dev/null 2>&1 || true

# Parameters: the most common tag, random ids, and the cursor of page 500.
TAG=$(psql "$DB" -Atc "SELECT t FROM (SELECT unnest(tag_keys) t FROM signals TABLESAMPLE SYSTEM (2)) x GROUP BY t ORDER BY count(*) DESC LIMIT 1")
# 128 random ids (pgbench takes at most 128 scripts: one per id, so both sides draw from the same ids).
psql "$DB" -Atc "SELECT id FROM signals TABLESAMPLE SYSTEM (1) ORDER BY random() LIMIT 128" > "$WORK/ids.txt"
ONE_ID=$(head -1 "$WORK/ids.txt")
say "walking 499 pages for Q5"
cursor=""
for _ in $(seq 499); do
  cursor=$(curl -fs "$BASE/v1/signals?limit=20${cursor:+&cursor=$cursor}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["next_cursor"])')
done
# The keyset position inside the (signed) cursor, for pgbench.
read -r DEEP_T DEEP_ID < <(python3 - "$cursor" <<'EOF'
import base64, json, sys
payload = sys.argv[1].split(".")[0]
key = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["k"]["p"]
print(key[0], key[1])
EOF
)
Q4_URL=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$Q4_TEXT")

# Per query: its name, the path wrk requests, the arguments of examples/service_sql (which prints
# the statement the service sends) and the values of that statement's $1, $2, ... separated by ';'.
NAMES=("Q1 min_score=7 newest 20" "Q2 one signal by random id" "Q3 tag=$TAG + min_score=7"
       "Q4 q=\"$Q4_TEXT\"" "Q5 page 500 of a cursor walk")
PATHS=("/v1/signals?min_score=7" RANDOM_ID "/v1/signals?tag=$TAG&min_score=7"
       "/v1/signals?q=$Q4_URL" "/v1/signals?limit=20&cursor=$cursor")
# Q3's tag is the most common one: the statistics say enough signals pass it and the score
# bound, so the service sends the statement for the one plan PostgreSQL keeps (`list-kept`).
# Q4's first page is the first look among the newest documents: its bound is the time of the
# horizon-th newest one (src/db/lists.rs, `Horizon`).
HORIZON_T=$(psql "$DB" -Atc "SELECT published_at FROM signal_search ORDER BY published_at DESC, id DESC
  OFFSET $(($($SQL horizon) - 1)) LIMIT 1")
SQLARGS=("list min_score=7" "get $ONE_ID" "list-kept tag=$TAG&min_score=7" "list-first-look q=$Q4_URL"
         "list limit=20 $DEEP_T $DEEP_ID")
VALUES=("7;21" "$ONE_ID;1" "7;$TAG;21" "$Q4_TEXT;$HORIZON_T;$($SQL candidates);$Q4_TEXT;21" "$DEEP_T;$DEEP_ID;21")
# The same pages from the plain table with the obvious SQL (no plain statement for the search:
# the plain table has no text index). The tag as first spelled in the plain table's tags.
PLAIN_TAG=$(psql "$DB" -Atc "SELECT t FROM signals_plain, unnest(tags) t WHERE lower(t) = '$TAG' LIMIT 1")
PLAIN=("SELECT * FROM signals_plain WHERE score >= 7 ORDER BY published_at DESC, id DESC LIMIT 20;"
       "SELECT * FROM signals_plain WHERE id = :p1;"
       "SELECT * FROM signals_plain WHERE tags @> ARRAY['$PLAIN_TAG'] AND score >= 7 ORDER BY published_at DESC, id DESC LIMIT 20;"
       ""
       "SELECT * FROM signals_plain WHERE (published_at, id) < ('$DEEP_T', '$DEEP_ID') ORDER BY published_at DESC, id DESC LIMIT 20;")
# pgbench's sessions get the settings of the service's connection that runs each query: list
# queries with a text go through connections that plan every execution for its values, those
# one plan fits (Q1, Q3, Q5: `Shares::one_plan_fits`) through connections that keep one generic
# plan, lookups by id through connections with PostgreSQL's default (src/db/mod.rs, `Plans`).
# All of them without JIT, as every connection of the service.
CUSTOM="-c jit=off -c plan_cache_mode=force_custom_plan"
GENERIC="-c jit=off -c plan_cache_mode=force_generic_plan"
PLANS=("$GENERIC" "-c jit=off" "$GENERIC" "$CUSTOM" "$GENERIC")

echo '{"queries": [' > "$WORK/results.json"
first=1
for q in "${!NAMES[@]}"; do
  name=${NAMES[$q]}; path=${PATHS[$q]}
  if [ -n "$ONLY" ] && [[ " $ONLY " != *" ${name%% *} "* ]]; then continue; fi
  say "$name"
  # wrk against the service: a warm-up, then the measured run.
  if [ "$path" = RANDOM_ID ]; then
    script=(-s bench/random_id.lua); url="$BASE/"; cached_url="$CACHED/"
  else
    script=(); url="$BASE$path"; cached_url="$CACHED$path"
  fi
  curl -fs -o /dev/null "$url" || [ "$path" = RANDOM_ID ] || { echo "bench: $url fails" >&2; exit 1; }

  # pgbench runs the statement the service sends, prepared, with the same values.
  read -r -a sqlargv <<<"${SQLARGS[$q]}"
  $SQL "${sqlargv[@]}" | python3 -c 'import re,sys; print(re.sub(r"\$(\d+)", r":p\1", sys.stdin.read().strip()) + ";")' > "$WORK/query.sql"
  defines=()
  IFS=';' read -r -a values <<<"${VALUES[$q]}"
  for i in "${!values[@]}"; do defines+=(-D "p$((i + 1))=${values[$i]}"); done
  scripts=(-f query.sql)
  if [ "$path" = RANDOM_ID ]; then
    # One script per id, each the same statement with its own id variable; pgbench picks one at
    # random for every transaction.
    scripts=(); n=0
    while read -r id; do
      n=$((n + 1))
      sed "s/:p1/:id$n/" "$WORK/query.sql" > "$WORK/query_$n.sql"
      scripts+=(-f "query_$n.sql"); defines+=(-D "id$n=$id")
    done < "$WORK/ids.txt"
  fi
  # The plain table's statement, with the same random ids for Q2.
  plain_scripts=()
  if [ -n "${PLAIN[$q]}" ]; then
    if [ "$path" = RANDOM_ID ]; then
      n=0
      while read -r id; do
        n=$((n + 1))
        echo "${PLAIN[$q]}" | sed "s/:p1/:id$n/" > "$WORK/plain_$n.sql"
        plain_scripts+=(-f "plain_$n.sql")
      done < "$WORK/ids.txt"
    else
      echo "${PLAIN[$q]}" > "$WORK/plain.sql"
      plain_scripts=(-f plain.sql)
    fi
  fi
  run_wrk() { BENCH_IDS_FILE="$WORK/ids.txt" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$1s" --latency "${script[@]}" "${2:-$url}"; }
  run_pgbench() {
    (cd "$WORK" && rm -f pgbench_log.* && PGOPTIONS="${PLANS[$q]}" pgbench -n -M prepared -c "$CONNECTIONS" -j "$THREADS" -T "$1" -l "${defines[@]}" "${scripts[@]}" "$DB" > pgbench.txt 2>&1) ||
      { echo "bench: pgbench failed for $name:" >&2; tail -5 "$WORK/pgbench.txt" >&2; exit 1; }
  }
  run_plain() {
    (cd "$WORK" && rm -f pgbench_log.* && pgbench -n -M prepared -c "$CONNECTIONS" -j "$THREADS" -T "$1" -l "${defines[@]}" "${plain_scripts[@]}" "$DB" > plain.txt 2>&1) ||
      { echo "bench: pgbench (plain table) failed for $name:" >&2; tail -5 "$WORK/plain.txt" >&2; exit 1; }
  }

  # A warm-up of each side, then ROUNDS measured runs taking turns, so a slow spell of the
  # machine hits both sides alike; the report takes the median of the rounds.
  run_wrk "$WARMUP" >/dev/null
  run_wrk "$WARMUP" "$cached_url" >/dev/null
  run_pgbench "$WARMUP"
  [ ${#plain_scripts[@]} = 0 ] || run_plain "$WARMUP"
  rounds=""
  for r in $(seq "$ROUNDS"); do
    run_wrk "$DURATION" > "$WORK/wrk.txt"
    run_pgbench "$DURATION"
    own=$(python3 bench/report.py pgbench "$WORK/pgbench.txt" "$WORK" pgbench_log)
    plain=null
    if [ ${#plain_scripts[@]} != 0 ]; then
      run_plain "$DURATION"
      plain=$(python3 bench/report.py pgbench "$WORK/plain.txt" "$WORK" pgbench_log)
    fi
    run_wrk "$DURATION" "$cached_url" > "$WORK/wrk_cached.txt"
    rounds+="${rounds:+,}{\"api\": $(python3 bench/report.py wrk "$WORK/wrk.txt"), \"pgbench\": $own, \"plain\": $plain, \"cached\": $(python3 bench/report.py wrk "$WORK/wrk_cached.txt")}"
  done

  [ $first = 1 ] || echo ',' >> "$WORK/results.json"; first=0
  printf '{"name": %s, "rounds": [%s]}\n' \
    "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$name")" "$rounds" >> "$WORK/results.json"
done
echo "]," >> "$WORK/results.json"

# Searches that match many signals (issue 15): a word in about 5 % of the signals and one in more
# than half, beside Q4's text; each one client (p50) and 32 connections (req/s, non-2xx).
read -r FIVE HALF < <(psql "$DB" -Atc "WITH s AS (SELECT word, ndoc / 20000.0 AS share
    FROM ts_stat('SELECT search FROM signal_search LIMIT 20000')) SELECT
    (SELECT word FROM s WHERE share BETWEEN 0.03 AND 0.08 ORDER BY abs(share - 0.05) LIMIT 1),
    (SELECT word FROM s WHERE share > 0.5 ORDER BY share LIMIT 1)" -F ' ')
echo '"search": [' >> "$WORK/results.json"
for text in "$Q4_TEXT" "$FIVE" "$HALF"; do
  [ -n "$text" ] || continue
  say "search: $text"
  matches=$(psql "$DB" -Atc "SELECT count(*) FROM signal_search WHERE search @@ websearch_to_tsquery('english', \$\$$text\$\$)")
  url="$BASE/v1/signals?q=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$text")"
  wrk -t1 -c1 -d"${WARMUP}s" "$url" >/dev/null
  wrk -t1 -c1 -d"${DURATION}s" --latency "$url" > "$WORK/search1.txt"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url" > "$WORK/search32.txt"
  python3 - "$text" "$matches" "$WORK/search1.txt" "$WORK/search32.txt" >> "$WORK/results.json" <<'PY'
import json, sys
sys.path.insert(0, "bench")
from report import wrk
one, many = wrk(sys.argv[3]), wrk(sys.argv[4])
print(json.dumps({"name": sys.argv[1], "matches": int(sys.argv[2]), "p50": one["p50"],
                  "rps": many["rps"], "bad": many["bad"]}))
PY
  echo "," >> "$WORK/results.json"
done
# Drop the last comma: the array ends here.
sed -i '$ d' "$WORK/results.json"
echo '],' >> "$WORK/results.json"
say "GET /healthz"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$BASE/healthz" > "$WORK/healthz.txt"
echo "\"healthz_rps\": $(python3 bench/report.py wrk "$WORK/healthz.txt" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rps"])')," >> "$WORK/results.json"
echo "\"signals\": $(psql "$DB" -Atc "SELECT count(*) FROM signals")," >> "$WORK/results.json"
echo "\"peak_rss_kb\": $(awk '/VmHWM/ {print $2}' /proc/$SERVER/status)," >> "$WORK/results.json"
echo "\"peak_rss_cached_kb\": $(awk '/VmHWM/ {print $2}' /proc/$SERVER_CACHED/status)," >> "$WORK/results.json"
# How the cached instance's reads went: a cache it could not trust (its change listener not
# confirmed caught up) would show as bypassed lookups.
echo "\"cache_lookups\": $(curl -fs "$CACHED/metrics" | python3 -c 'import json, re, sys; print(json.dumps({m[0]: int(float(m[1])) for m in re.findall(r"signals_cache_lookups_total\{outcome=\"(\w+)\"\} (\S+)", sys.stdin.read())}))')," >> "$WORK/results.json"
echo "\"import\": $(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$(tail -1 "$WORK/import.log" 2>/dev/null || echo "(no import in this run)")")," >> "$WORK/results.json"
# Import against COPY (issue 15): bench/ingest.sh on the first BENCH_INGEST_ROWS of these
# signals, in a database of its own, taking turns for BENCH_INGEST_ROUNDS rounds.
if [ "${BENCH_INGEST_ROWS:-100000}" != 0 ]; then
  say "ingest: COPY, signals import and the batch endpoint"
  BENCH_ADMIN_URL=$ADMIN BENCH_INGEST_SOURCE=$DB BENCH_PORT=$((PORT + 2)) BENCH_INGEST_JSON="$WORK/ingest.json" \
    bench/ingest.sh >"$WORK/ingest.txt"
fi
echo "\"ingest\": $(cat "$WORK/ingest.json" 2>/dev/null || echo null)}" >> "$WORK/results.json"
python3 bench/report.py "$WORK/results.json"
echo "(raw outputs in $WORK)"
