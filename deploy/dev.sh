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
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
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

pg_bin() { ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1; }

cmd_run() {
  install_packages
  build build
  var="$top/var"  # global: the EXIT trap needs it
  mkdir -p "$var/dev"
  say "starting PostgreSQL in var/pg"
  local sock
  sock=$(./deploy/pg.sh start "$var/pg")
  trap 'say "stopping PostgreSQL"; ./deploy/pg.sh stop "$var/pg"' EXIT
  if ! psql -h "$sock" -U postgres -XAtqc "SELECT 1 FROM pg_database WHERE datname='medgate'" postgres | grep -q 1; then
    psql -h "$sock" -U postgres -Xqc "CREATE DATABASE medgate" postgres
  fi
  export MEDGATE_DATABASE_URL="host=$sock user=postgres dbname=medgate"
  # The API-key pepper is a secret: made once, kept in var/dev, given by
  # environment (never in the configuration file).
  [ -s "$var/dev/pepper" ] || (umask 077; od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$var/dev/pepper")
  export MEDGATE_SECURITY_API_KEY_PEPPER
  MEDGATE_SECURITY_API_KEY_PEPPER=$(cat "$var/dev/pepper")
  local conf="$var/dev/medgate.json"
  ./deploy/demo-config.sh "${MEDGATE_HTTP_PORT:-8080}" "${MEDGATE_MLLP_PORT:-2575}" >"$conf"
  ./build/src/medgate migrate --config "$conf"
  ./build/src/medgate demo-seed --config "$conf" --key-file "$var/dev/api-key"
  say "medgate: HTTP (FHIR + admin) on http://127.0.0.1:${MEDGATE_HTTP_PORT:-8080}, MLLP on 127.0.0.1:${MEDGATE_MLLP_PORT:-2575}"
  say "demo API key (also in var/dev/api-key): $(cat "$var/dev/api-key")"
  say "try: curl http://127.0.0.1:${MEDGATE_HTTP_PORT:-8080}/readyz ; Ctrl-C stops the gateway and the database"
  # Not exec: the EXIT trap must still stop PostgreSQL after the gateway ends.
  ./build/src/medgate serve --config "$conf" &
  local pid=$!
  # Ctrl-C reaches the gateway itself (same process group); forward only TERM.
  trap 'true' INT
  trap 'kill -TERM $pid 2>/dev/null || true' TERM
  wait $pid || true
  wait $pid 2>/dev/null || true
}

# The outside FHIR validator the integration tests run (conformance/fhir):
# Node.js and npm from the machine, or Debian's when there are none.
install_fhir_validator() {
  if ! command -v npm >/dev/null; then
    say "installing: nodejs npm"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends nodejs npm >/dev/null
  fi
  [ -d conformance/fhir/node_modules/@asymmetrik ] && return 0
  say "installing the FHIR validator (npm ci in conformance/fhir)"
  npm ci --prefix conformance/fhir --no-audit --no-fund --silent
}

cmd_test() {
  install_packages
  install_fhir_validator
  build build
  build build-asan -DMG_SANITIZE=ON
  # The fuzz build compiles only the fuzz targets with clang/libFuzzer.
  CC=clang build build-fuzz -DMG_FUZZ=ON -DMG_SANITIZE=ON -- fuzz_hl7v2 fuzz_mllp
  tmp=$(mktemp -d /tmp/medgate-test-XXXXXX)  # global: the EXIT trap needs it
  say "starting a throwaway PostgreSQL in $tmp"
  export MEDGATE_TEST_PGHOST
  MEDGATE_TEST_PGHOST=$(MEDGATE_PG_FSYNC=${MEDGATE_PG_FSYNC:-on} ./deploy/pg.sh start "$tmp")
  trap './deploy/pg.sh stop "$tmp"; rm -rf "$tmp"' EXIT
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
  [ $rc = 0 ] && say "all tests passed" || say "SOME TESTS FAILED"
  return $rc
}

case "${1:-}" in
run) cmd_run ;;
test) cmd_test ;;
build) install_packages; build build ;;
*) echo "usage: $0 run|test|build" >&2; exit 2 ;;
esac
