#!/bin/sh
# Entry point of the container image (deploy/Containerfile): `serve` applies
# the migrations first, as the systemd unit does; migrate takes a database
# lock, so replicas starting together are safe. MEDGATE_MIGRATE=0 skips it
# (migrations run as a separate job). Any other command runs as given.
set -e
if [ "${1:-}" = serve ] && [ "${MEDGATE_MIGRATE:-1}" != 0 ]; then
  shift
  /usr/local/bin/medgate migrate "$@"
  exec /usr/local/bin/medgate serve "$@"
fi
exec /usr/local/bin/medgate "$@"
