#!/usr/bin/env bash
# The README's two commands.
#
#   ./deploy/dev.sh run    install what is missing, build, start the private
#                          PostgreSQL under var/, migrate, seed the demo
#                          organization and run the gateway in the foreground
#   ./deploy/dev.sh test   the same set-up on a throwaway cluster, then the
#                          whole suite through ctest: unit + integration on
#                          the normal build, again under ASan/UBSan, and the
#                          bounded fuzz runs (clang/libFuzzer)
#   ./deploy/dev.sh build  install and build only
#
# Works as root or as a user with sudo. Environment: JOBS (build jobs,
# default nproc), MEDGATE_HTTP_PORT / MEDGATE_MLLP_PORT for `run`.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
jobs=${JOBS:-$(nproc)}

packages=(build-essential cmake pkg-config git ca-certificates curl
  libuv1-dev libpq-dev libcurl4-openssl-dev libxml2-dev libjansson-dev
  libsodium-dev libhttp-parser-dev libcmocka-dev postgresql postgresql-client
  python3 python3-hl7 clang libclang-rt-14-dev)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else echo "dev.sh: needs root to run: $*; run as root or install sudo" >&2; return 1
  fi
}

# apt-get, waiting for the dpkg lock (a fresh machine's unattended-upgrades
# holds it for a while after boot) rather than failing at once. `update`
# takes another lock: it is tried again for up to 10 minutes.
apt_install() {
  say "installing: $*"
  local i
  for i in $(seq 20); do
    as_root apt-get -o DPkg::Lock::Timeout=600 update -qq && break
    [ "$i" = 20 ] && return 1
    say "apt-get update failed (lock held?); trying again in 30 s"
    sleep 30
  done
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
    install -y -qq --no-install-recommends "$@" >/dev/null
}

install_packages() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  apt_install "${missing[@]}"
}

build() { # build DIR [cmake options...] [-- targets...]
  local dir=$1; shift
  local werror=OFF opts=() targets=()
  [ "${CI:-}" = true ] && werror=ON
  while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
  [ "${1:-}" = -- ] && shift && targets=(--target "$@")
  say "building $dir"
  cmake -S . -B "$dir" -DMG_WERROR="$werror" "${opts[@]}" >/dev/null
  cmake --build "$dir" -j "$jobs" "${targets[@]}" >/dev/null
}

# True when something on this machine already listens on 127.0.0.1:PORT.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cmd_run() {
  local http_port=${MEDGATE_HTTP_PORT:-8080} mllp_port=${MEDGATE_MLLP_PORT:-2575} p
  for p in "$http_port" "$mllp_port"; do
    if port_in_use "$p"; then
      echo "dev.sh: port $p is in use on 127.0.0.1 (another run, or another program)." >&2
      echo "        Choose others: MEDGATE_HTTP_PORT=9080 MEDGATE_MLLP_PORT=2576 $0 run" >&2
      exit 1
    fi
  done
  install_packages
  build build
  var="$top/var"  # global: the EXIT trap needs it
  mkdir -p "$var/dev"
  local sock
  if ./deploy/pg.sh status "$var/pg" >/dev/null 2>&1; then
    # Another run (or a test) is using this cluster: share it, and leave it
    # running when this one ends.
    say "PostgreSQL in var/pg is already running: using it and leaving it running (./deploy/pg.sh stop var/pg stops it)"
    sock=$(./deploy/pg.sh start "$var/pg")
  else
    say "starting PostgreSQL in var/pg"
    sock=$(./deploy/pg.sh start "$var/pg")
    trap 'say "stopping PostgreSQL"; ./deploy/pg.sh stop "$var/pg"' EXIT
  fi
  if [ "$(psql -h "$sock" -U postgres -XAtqc "SELECT 1 FROM pg_database WHERE datname='medgate'" postgres)" != 1 ]; then
    psql -h "$sock" -U postgres -Xqc "CREATE DATABASE medgate" postgres
  fi
  export MEDGATE_DATABASE_URL="host=$sock user=postgres dbname=medgate"
  # The API-key pepper is a secret: made once, kept in var/dev, given by
  # environment (never in the configuration file).
  [ -s "$var/dev/pepper" ] || (umask 077; od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$var/dev/pepper")
  export MEDGATE_SECURITY_API_KEY_PEPPER
  MEDGATE_SECURITY_API_KEY_PEPPER=$(cat "$var/dev/pepper")
  local conf="$var/dev/medgate.json"
  ./deploy/demo-config.sh "$http_port" "$mllp_port" >"$conf"
  ./build/src/medgate migrate --config "$conf"
  ./build/src/medgate demo-seed --config "$conf" --key-file "$var/dev/api-key"
  say "medgate: HTTP (admin: /healthz /readyz /metrics) on http://127.0.0.1:$http_port, MLLP on 127.0.0.1:$mllp_port"
  say "demo API key (also in var/dev/api-key): $(cat "$var/dev/api-key")"
  say "try: curl http://127.0.0.1:$http_port/readyz ; Ctrl-C stops the gateway and the database"
  # Not exec: the EXIT trap must still stop PostgreSQL after the gateway ends.
  ./build/src/medgate serve --config "$conf" &
  local pid=$! rc=0
  # Ctrl-C reaches the gateway itself (same process group); forward only TERM.
  trap 'true' INT
  trap 'kill -TERM $pid 2>/dev/null || true' TERM
  # A trapped signal ends `wait` early: wait again until the gateway is gone,
  # then exit with its status (a port taken meanwhile, a bad database, ...).
  while :; do
    rc=0
    wait "$pid" || rc=$?
    kill -0 "$pid" 2>/dev/null || break
  done
  return "$rc"
}

# The outside FHIR validator the integration tests run (conformance/fhir):
# Node.js and npm from the machine, or Debian's when there are none.
install_fhir_validator() {
  if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    apt_install nodejs npm
  fi
  # npm writes node_modules/.package-lock.json last: a complete install that
  # is newer than the lock file (not an interrupted or outdated one).
  [ conformance/fhir/node_modules/.package-lock.json -nt conformance/fhir/package-lock.json ] &&
    return 0
  say "installing the FHIR validator (npm ci in conformance/fhir)"
  npm ci --prefix conformance/fhir --no-audit --no-fund --loglevel=error
}

cmd_test() {
  install_packages
  install_fhir_validator
  build build
  build build-asan -DMG_SANITIZE=ON
  # The fuzz build compiles only the fuzz targets with clang/libFuzzer.
  CC=clang build build-fuzz -DMG_FUZZ=ON -DMG_SANITIZE=ON -- \
    fuzz_hl7v2 fuzz_mllp fuzz_mapping fuzz_http fuzz_fhirpath
  tmp=$(mktemp -d /tmp/medgate-test-XXXXXX)  # global: the EXIT trap needs it
  trap './deploy/pg.sh stop "$tmp"; rm -rf "$tmp"' EXIT
  say "starting a throwaway PostgreSQL in $tmp"
  export MEDGATE_TEST_PGHOST
  MEDGATE_TEST_PGHOST=$(MEDGATE_PG_FSYNC=${MEDGATE_PG_FSYNC:-on} ./deploy/pg.sh start "$tmp")
  local rc=0
  say "unit + integration tests"
  ctest --test-dir build --output-on-failure -LE 'fuzz|bench' || rc=1
  say "unit + integration tests under ASan/UBSan"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -LE 'fuzz|bench' || rc=1
  say "fuzz targets (bounded time)"
  ctest --test-dir build-fuzz --output-on-failure -L fuzz || rc=1
  grep -h -e ' Testing: fuzz' -e 'stat::number_of_executed_units' \
    build-fuzz/Testing/Temporary/LastTest.log || true
  if [ $rc = 0 ]; then say "all tests passed"; else say "SOME TESTS FAILED"; fi
  return $rc
}

case "${1:-}" in
run) cmd_run ;;
test) cmd_test ;;
build) install_packages; build build ;;
*) echo "usage: $0 run|test|build" >&2; exit 2 ;;
esac
