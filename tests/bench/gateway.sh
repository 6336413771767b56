#!/usr/bin/env bash
# One measured run of `medgate serve` under bench_mllp_load, from nothing:
# a private PostgreSQL cluster (fsync and synchronous_commit on) in a
# temporary folder, a migrated database, the demo configuration, a warm-up,
# ANALYZE, the measured run, and everything removed afterwards.
#
#   tests/bench/gateway.sh [--build DIR] [--type orm|adt|mixed]
#                          [--connections N] [--seconds S] [--no-analyze]
#                          [--sql-profile]
#
# --sql-profile: where PostgreSQL's time goes. Loads pg_stat_statements
# (track = all, so the adapters' own statements count) and tracks
# functions, resets both after the warm-up, and prints after the run the
# statements and functions that took the most time. The extension costs
# throughput: quote the messages/s of runs without it.
#
# Why ANALYZE: a new database has no statistics, so PostgreSQL plans the
# adapters' lookups and the foreign-key checks against "empty" tables and may
# pick an index that covers only organization_id; those plans are replaced
# after autovacuum's first ANALYZE (about a minute into real traffic). The
# steady state is what a hospital runs in; --no-analyze shows the first
# minute. Run it on a quiet machine: the figures are the machine's.
set -euo pipefail
cd "$(dirname "$0")/../.."

build=build type=orm conns=16 seconds=10 analyze=1 profile=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --type) type=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --no-analyze) analyze=0; shift ;;
    --sql-profile) profile=1; shift ;;
    *) echo "usage: $0 [--build DIR] [--type orm|adt|mixed] [--connections N] [--seconds S] [--no-analyze] [--sql-profile]" >&2; exit 2 ;;
  esac
done

medgate=$build/src/medgate
load=$build/tests/bench/bench_mllp_load
. tests/bench/private_pg.sh
tmp="" gw=""
cleanup() {
  [ -n "$gw" ] && kill "$gw" 2>/dev/null && wait "$gw" 2>/dev/null || true
  bench_pg_stop
}
trap cleanup EXIT

if [ "$profile" = 1 ]; then
  export MEDGATE_PG_OPTIONS="${MEDGATE_PG_OPTIONS:-} -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all -c track_functions=all"
fi
bench_pg_start bench "$medgate"
[ "$profile" = 1 ] && psql -h "$sock" -U postgres -qXc "CREATE EXTENSION pg_stat_statements"
./deploy/demo-config.sh 28080 22575 | sed 's/"level": "info"/"level": "warn"/' >"$tmp/conf.json"
"$medgate" serve --config "$tmp/conf.json" >"$tmp/serve.log" 2>&1 &
gw=$!
for _ in $(seq 100); do
  curl -sf http://127.0.0.1:28080/readyz >/dev/null && break
  sleep 0.1
done
if [ "$analyze" = 1 ]; then
  "$load" --port 22575 --connections 16 --messages 2000 --type "$type" --run-id WARM >/dev/null
  psql -h "$sock" -U postgres -qc "ANALYZE"
fi
[ "$profile" = 1 ] && psql -h "$sock" -U postgres -qXAtc "SELECT pg_stat_statements_reset(), pg_stat_reset()" >/dev/null
echo "type $type, $conns connection(s), ${seconds}s, analyze $([ "$analyze" = 1 ] && echo yes || echo no)$([ "$profile" = 1 ] && echo ", sql profile (slower)")"
"$load" --port 22575 --connections "$conns" --seconds "$seconds" --warmup 500 --type "$type"
echo "gateway rss: $(ps -o rss= -p "$gw") kB"
if [ "$profile" = 1 ]; then
  # total_ms includes what a statement's functions ran; the functions'
  # self_ms does not include the statements they ran.
  psql -h "$sock" -U postgres -qX -c "SELECT calls, round(total_exec_time::numeric, 1) AS total_ms,
      round(mean_exec_time::numeric, 3) AS mean_ms, rows,
      left(regexp_replace(query, '\s+', ' ', 'g'), 60) AS statement
    FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat%'
    ORDER BY total_exec_time DESC LIMIT 12" \
    -c "SELECT funcname AS function, calls, round(total_time::numeric, 1) AS total_ms,
      round(self_time::numeric, 1) AS self_ms
    FROM pg_stat_user_functions ORDER BY self_time DESC LIMIT 10"
fi
