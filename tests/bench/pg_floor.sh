#!/usr/bin/env bash
# PostgreSQL's own ceiling for the intake's storing step on this machine,
# without the gateway and without the load generator: pgbench inserts what
# an accepted message costs at the least -- its hl7_messages row (a raw
# payload of about 600 bytes, the idempotency key) and its sync_logs row --
# into the migrated schema, B messages a transaction (one INSERT per table
# per transaction, as a grouped commit does), from C clients at once, with
# fsync and synchronous_commit on. It prints messages/s (transactions/s
# times B) for each setting.
#
#   tests/bench/pg_floor.sh [--build DIR] [--seconds S] [--mapped]
#
# --mapped adds what the order adapter writes for a new ORM^O01 (a new
# patient each time, as bench_mllp_load sends): the patients row, two
# patient_identifiers, the scans row and its scan_queue entry, in the same
# statement.
#
# Compare its figures with gateway.sh: the gateway cannot store messages
# faster than PostgreSQL alone can, on the same two cores, with nothing
# else running. The mapping stage (patients, identifiers, scans, worklist)
# comes on top of this.
set -euo pipefail
cd "$(dirname "$0")/../.."

build=build seconds=10 mapped=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --mapped) mapped=1; shift ;;
    *) echo "usage: $0 [--build DIR] [--seconds S] [--mapped]" >&2; exit 2 ;;
  esac
done

pgbin=""
for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
  if [ -x "$d/pgbench" ]; then pgbin=$d; break; fi
done
[ -n "$pgbin" ] || { echo "pg_floor.sh: pgbench not found (apt-get install postgresql)" >&2; exit 1; }

. tests/bench/private_pg.sh
tmp=""
trap bench_pg_stop EXIT

bench_pg_start floor "$build/src/medgate"

# One transaction: B messages, each a new control id (the idempotency key
# is a unique index probe and insert), a 600-byte payload and its BLAKE2b-
# sized hash, and one sync_logs row each. One statement, committed on its
# own (one round trip, where the gateway needs BEGIN, the statement and
# COMMIT), its batch size a constant so that the prepared plan is exact:
# every choice here is the cheapest, so that the figure is a ceiling.
script() {
  cat <<EOF
WITH m AS (
  INSERT INTO hl7_messages (organization_id, direction, listener,
    sending_application, sending_facility, receiving_application,
    receiving_facility, message_type, trigger_event, control_id, version,
    payload_hash, raw, status, ack_code, ack_payload)
  SELECT '00000000-0000-4000-8000-000000000001', 'inbound', 'ris',
    'RIS', 'HOSP', 'MEDGATE', 'HOSP', 'ORM', 'O01',
    md5(random()::text), '2.5', sha256(g::text::bytea),
    convert_to(repeat('MSH|^~\&|RIS|HOSP|MEDGATE|HOSP|20260101||ORM^O01|', 12), 'UTF8'),
    'received', 'AA', 'MSH|^~\&|MEDGATE|HOSP|RIS|HOSP||ACK^O01|1|P|2.5\rMSA|AA|1\r'
  FROM generate_series(1, $1) g
  RETURNING id, control_id, received_at
)
$([ "$mapped" = 1 ] && echo ", l AS (")
INSERT INTO sync_logs (organization_id, direction, protocol, listener,
  sender, message_type, trigger_event, external_id, hl7_message_id, status,
  received_at, committed_at, duration_ms)
SELECT '00000000-0000-4000-8000-000000000001', 'inbound', 'mllp', 'ris',
  'RIS^HOSP', 'ORM', 'O01', control_id, id, 'committed', received_at,
  clock_timestamp(), 1
FROM m
$([ "$mapped" = 1 ] && mapped_part)
;
EOF
}

# The order adapter's rows for each message: patient, identifiers, scan,
# worklist entry (chained on the sync_logs rows above).
mapped_part() {
  cat <<EOF
RETURNING hl7_message_id, external_id
), p AS (
  INSERT INTO patients (organization_id, medical_record_number, first_name,
    last_name, date_of_birth, gender, source)
  SELECT '00000000-0000-4000-8000-000000000001', 'MRN' || external_id,
    'Jane', 'Doe', '1970-01-01', 'female', 'hl7v2'
  FROM l
  RETURNING id, medical_record_number
), i AS (
  INSERT INTO patient_identifiers (organization_id, patient_id, system,
    value, type_code, use)
  SELECT '00000000-0000-4000-8000-000000000001', p.id, s.system,
    p.medical_record_number, s.type_code, 'usual'
  FROM p, (VALUES ('https://hospital.example/mrn', 'MR'),
    ('https://hospital.example/pid', 'PI'))
    s(system, type_code)
), s AS (
  INSERT INTO scans (organization_id, patient_id, accession_number,
    placer_order_number, filler_order_number, procedure_code,
    procedure_description, scan_type, body_part, priority, ordered_at,
    referring_physician_name, source)
  SELECT '00000000-0000-4000-8000-000000000001', p.id,
    'ACC' || p.medical_record_number, 'PL' || p.medical_record_number,
    'FI' || p.medical_record_number, '71020', 'Chest X-ray', 'XR', 'CHEST',
    'routine', now(), 'Smith^John', 'hl7v2'
  FROM p
  RETURNING organization_id, id
)
INSERT INTO scan_queue (organization_id, scan_id, priority_score)
SELECT organization_id, id, 1 FROM s
EOF
}

what="hl7_messages + sync_logs rows"
[ "$mapped" = 1 ] && what="$what, and an order's patient, 2 identifiers, scan and worklist entry"
echo "PostgreSQL alone: $what, fsync on, ${seconds}s each"
# Each setting is MESSAGES_A_TRANSACTION:CLIENTS; MEDGATE_FLOOR_SETTINGS
# (space-separated) replaces the default list. The defaults never hold
# more than 16 messages in flight, as 16 stop-and-wait MLLP connections
# cannot: one connection (1:1), 16 with a commit each (1:16), and 16
# grouped into one commit or two (16:1, 8:2).
for setting in ${MEDGATE_FLOOR_SETTINGS:-1:1 1:16 16:1 8:2}; do
  b=${setting%:*} clients=${setting#*:}
  script "$b" >"$tmp/floor.sql"
  # A warm-up of a few seconds so the tables are not empty.
  "$pgbin/pgbench" -h "$sock" -U postgres -n -M prepared -f "$tmp/floor.sql" -c "$clients" -j 1 -T 3 postgres >"$tmp/warm.log" 2>&1 || { cat "$tmp/warm.log" >&2; exit 1; }
  out=$("$pgbin/pgbench" -h "$sock" -U postgres -n -M prepared -f "$tmp/floor.sql" -c "$clients" -j 1 -T "$seconds" postgres 2>&1) || { echo "$out" >&2; exit 1; }
  tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
  lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
  awk -v b="$b" -v c="$clients" -v t="$tps" -v l="$lat" 'BEGIN {
    printf "%2d messages a transaction, %2d clients: %8.1f messages/s (%.1f commits/s, %.2f ms a commit)\n", b, c, b * t, t, l }'
done
