# Sourced by the benchmark scripts (run from the repository root): a
# private PostgreSQL cluster with fsync and synchronous_commit on, in a
# temporary folder, migrated, holding the demo organization of
# deploy/demo-config.sh.
#
#   bench_pg_start NAME MEDGATE  makes $tmp (/tmp/medgate-NAME-XXXXXX),
#                                starts the cluster under it, sets $sock,
#                                exports MEDGATE_DATABASE_URL, migrates
#   bench_pg_stop                stops the cluster and removes $tmp
#
# Callers set tmp="" first and call bench_pg_stop from their EXIT trap.

bench_pg_start() {
  tmp=$(mktemp -d "/tmp/medgate-$1-XXXXXX")
  sock=$(MEDGATE_PG_FSYNC=on ./deploy/pg.sh start "$tmp/pg")
  export MEDGATE_DATABASE_URL="host=$sock user=postgres dbname=postgres"
  "$2" migrate >/dev/null
  psql -h "$sock" -U postgres -qXc "INSERT INTO organizations (id, name, identifier)
    VALUES ('00000000-0000-4000-8000-000000000001', 'Demo', 'demo')"
}

bench_pg_stop() {
  [ -n "$tmp" ] || return 0
  MEDGATE_PG_FSYNC=on ./deploy/pg.sh stop "$tmp/pg" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
