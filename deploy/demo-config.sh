#!/usr/bin/env bash
# Prints the demo configuration used by `./deploy/dev.sh run`: HTTP on
# 127.0.0.1:$1, one MLLP listener on 127.0.0.1:$2 that accepts any sender as
# the demo organization. The database URL comes from MEDGATE_DATABASE_URL.
set -euo pipefail
http_port=${1:-8080}
mllp_port=${2:-2575}
cat <<JSON
{
  "note": "Demo configuration written by deploy/demo-config.sh. See deploy/medgate.example.json for every option.",
  "http": { "bind": "127.0.0.1", "port": $http_port },
  "log": { "level": "info", "format": "kv" },
  "mllp": {
    "listeners": [
      {
        "name": "demo",
        "bind": "127.0.0.1",
        "port": $mllp_port,
        "senders": [
          { "application": "*", "facility": "*",
            "organization_id": "00000000-0000-4000-8000-000000000001" }
        ]
      }
    ]
  }
}
JSON
