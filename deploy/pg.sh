#!/usr/bin/env bash
# A private PostgreSQL cluster in a folder: the only database the run and test
# commands use. Unix socket only (no TCP port), trust authentication on that
# socket, whose folder only the cluster's owner (and root) can enter.
# initdb refuses to run as root, so as root the cluster belongs to the
# `postgres` user (created by Debian's postgresql package).
#
#   deploy/pg.sh start DIR    create (first time) and start; prints the socket dir
#   deploy/pg.sh stop DIR     fast shutdown
#   deploy/pg.sh status DIR
#
# MEDGATE_PG_FSYNC=off (tests only) and MEDGATE_PG_OPTIONS (more "-c k=v"
# server options, e.g. for a benchmark's pg_stat_statements) apply at start.
set -euo pipefail

cmd=${1:?usage: pg.sh start|stop|status DIR}
dir=$(realpath -m "${2:?usage: pg.sh start|stop|status DIR}")
data="$dir/data"
sock="$dir/run"

pgbin=""
for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
  if [ -x "$d/pg_ctl" ]; then pgbin=$d; break; fi
done
[ -n "$pgbin" ] || { echo "pg.sh: PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
  owner=$(id -un)
  [ "$(id -u)" = 0 ] && owner=postgres
  if [ -e "$data" ] && [ "$(stat -c %U "$data")" != "$owner" ]; then
    echo "pg.sh: $data belongs to $(stat -c %U "$data"), but $owner would run it" \
      "(as root the cluster runs as postgres): use the same user as the first time, or remove $dir" >&2
    exit 1
  fi
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 ||
      { echo "pg.sh: no postgres user (apt-get install postgresql)" >&2; exit 1; }
    chown postgres:postgres "$dir"
    # postgres must be able to reach the folder through its parents (a
    # checkout under /root or a 0700 home): give search permission (x, not
    # read) to others on each parent it cannot pass, and say so.
    p=""
    IFS=/ read -ra parts <<<"${dir#/}"
    for part in "${parts[@]:0:${#parts[@]}-1}"; do
      p="$p/$part"
      if ! runuser -u postgres -- test -x "$p"; then
        echo "pg.sh: chmod o+x $p (so that the postgres user can reach $dir)" >&2
        chmod o+x "$p"
      fi
    done
  fi
  if [ ! -s "$data/PG_VERSION" ]; then
    as_owner "$pgbin/initdb" -D "$data" -U postgres --auth=trust \
      --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  as_owner mkdir -p "$sock"
  as_owner chmod 0700 "$sock"
  if ! as_owner "$pgbin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_owner "$pgbin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 \
      -o "-c listen_addresses='' -c unix_socket_directories='$sock' -c max_connections=200 -c fsync=${MEDGATE_PG_FSYNC:-on} -c shared_buffers=256MB ${MEDGATE_PG_OPTIONS:-}" \
      start >/dev/null || { tail -20 "$dir/postgres.log" >&2; exit 1; }
  fi
  echo "$sock"
  ;;
stop)
  if [ -s "$data/PG_VERSION" ]; then
    as_owner "$pgbin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  ;;
status)
  as_owner "$pgbin/pg_ctl" -D "$data" status
  ;;
*)
  echo "usage: pg.sh start|stop|status DIR" >&2; exit 2 ;;
esac
