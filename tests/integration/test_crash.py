"""Crash safety: 10,000 messages over 8 connections, `kill -9` of the
gateway in the middle, restart, resend everything that was not
acknowledged. Every acknowledged message must be stored exactly once, and
in the end every message is stored exactly once -- its hl7_messages row and
what its adapter wrote (one patient per message, one scan and worklist
entry per order).

The kill lands mid-commit on purpose: a deferred trigger makes every COMMIT
take a shared advisory lock, the test holds that lock exclusively while it
kills the gateway, then lets the orphaned COMMITs finish. Those messages are
stored but were never acknowledged, so the resend must find them (a kill
at a random moment almost never hits the short window between COMMIT and
ACK, and the duplicate path went untested)."""
import os
import subprocess
import sys
import tempfile
import time
import unittest

import harness as h

LOAD = os.path.join(os.environ.get("MEDGATE_BUILD_DIR", os.path.join(h.SOURCE_DIR, "build")),
                    "tests", "bench", "bench_mllp_load")
TOTAL = 10000
GATE = 736201  # advisory lock key every COMMIT of an hl7_messages row takes


def read_ids(path, code=None):
    ids = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                parts = line.strip().split("\t")
                if parts[0] and (code is None or parts[-1] == code):
                    ids.append(parts[0])
    return ids


def stored_counts(db, run_id):
    """(rows, distinct control ids) of the run's messages."""
    return tuple(int(v) for v in h.psql(
        db, "SELECT count(*), count(DISTINCT control_id) FROM hl7_messages "
        "WHERE control_id LIKE :'p1'", run_id + "-%")[0])


class CrashTest(unittest.TestCase):
    @staticmethod
    def committed(db, run_id):
        return set(r[0] for r in h.psql(
            db, "SELECT control_id FROM hl7_messages WHERE control_id LIKE :'p1'", run_id + "-%"))

    def test_kill_9_loses_nothing_acknowledged(self):
        db = h.create_database("crash")
        h.migrate(db)
        h.psql(db, "CREATE FUNCTION crash_gate() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
               " PERFORM pg_advisory_xact_lock_shared(%d); RETURN NULL; END $$;"
               "CREATE CONSTRAINT TRIGGER crash_gate AFTER INSERT ON hl7_messages"
               " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION crash_gate()" % GATE)
        gw = h.Gateway(db).start()
        tmp = tempfile.mkdtemp()
        run_id = "crash%d" % os.getpid()
        acked1, unacked = os.path.join(tmp, "acked1"), os.path.join(tmp, "unacked")
        load = subprocess.Popen([LOAD, "--port", str(gw.mllp_port), "--connections", "8",
                                 "--messages", str(TOTAL), "--type", "mixed", "--run-id", run_id,
                                 "--log-acked", acked1, "--log-unacked", unacked],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        # Kill once a good part (but not all) is acknowledged, while
        # COMMITs are held in the deferred trigger.
        deadline = time.time() + 60
        while time.time() < deadline and len(read_ids(acked1)) < TOTAL // 4:
            time.sleep(0.02)
        gate = subprocess.Popen(["psql", "-h", h.pg_host(), "-U", "postgres", "-d", db, "-X",
                                 "-q", "-At"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        gate.stdin.write("SELECT 'locked', pg_advisory_lock(%d);\n" % GATE)
        gate.stdin.flush()
        self.assertTrue(gate.stdout.readline().startswith("locked"))
        waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %d " \
                  "AND NOT granted" % GATE
        deadline = time.time() + 30
        while time.time() < deadline and h.scalar(db, waiting) == "0":
            time.sleep(0.01)
        time.sleep(0.2)  # let the other commits in flight reach the gate too
        held = int(h.scalar(db, waiting))
        # What is committed now is all that can be committed before the
        # kill: every COMMIT from here on waits at the gate. An AA sent
        # before its COMMIT finished would name a message missing here,
        # even though the COMMIT goes through once the gate opens.
        committed_at_kill = self.committed(db, run_id)
        gw.kill9()
        gate.stdin.close()  # the orphaned COMMITs go through now
        gate.wait(timeout=30)
        gate.stdout.close()
        deadline = time.time() + 30
        while time.time() < deadline and h.scalar(
                db, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()") != "0":
            time.sleep(0.05)
        out = load.communicate(timeout=120)[0].decode()
        h.psql(db, "DROP TRIGGER crash_gate ON hl7_messages")
        first = read_ids(acked1, "AA")
        self.assertGreater(held, 0, "no COMMIT was in flight at the kill")
        self.assertGreater(len(first), 0, out)
        self.assertLess(len(first), TOTAL, "gateway was killed too late to test anything")
        self.assertIn("MSA-2 mismatches 0,", out)

        # Every message acknowledged before the crash is there, once; some
        # that were not acknowledged committed all the same (in doubt).
        stored = self.committed(db, run_id)
        missing = [c for c in first if c not in stored]
        self.assertEqual(missing, [], "acknowledged but not stored")
        early = [c for c in first if c not in committed_at_kill]
        self.assertEqual(early, [], "acknowledged before its COMMIT had finished")
        rows, distinct = stored_counts(db, run_id)
        self.assertEqual(rows, distinct, "a message stored twice before the restart")
        self.assertGreater(len(stored), len(first), "no message committed without its ACK: "
                           "the kill did not land mid-commit")

        # Restart and resend everything not acknowledged (some of it was
        # committed before the kill: those come back as duplicates).
        gw.start()
        acked2 = os.path.join(tmp, "acked2")
        r = subprocess.run([LOAD, "--port", str(gw.mllp_port), "--connections", "8",
                            "--type", "mixed", "--run-id", run_id, "--replay-file", unacked,
                            "--log-acked", acked2], capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        second = read_ids(acked2, "AA")
        self.assertEqual(len(set(first) | set(second)), TOTAL)

        counts = h.psql(db, "SELECT count(*), count(DISTINCT control_id), "
                        "count(*) FILTER (WHERE status <> 'received') "
                        "FROM hl7_messages WHERE control_id LIKE :'p1'", run_id + "-%")[0]
        self.assertEqual(counts, [str(TOTAL), str(TOTAL), "0"])
        # What the adapters wrote, once per message too: every message has
        # its own MRN (MR<run>-<seq>), every order (even seq) its own
        # accession (A<run>-<seq>) and worklist entry.
        adapted = h.psql(db, """
            SELECT (SELECT count(*) FROM patients WHERE medical_record_number LIKE :'p1'),
                   (SELECT count(DISTINCT medical_record_number) FROM patients
                     WHERE medical_record_number LIKE :'p1'),
                   (SELECT count(*) FROM patient_identifiers WHERE value LIKE :'p1'),
                   (SELECT count(*) FROM scans WHERE accession_number LIKE :'p2'),
                   (SELECT count(DISTINCT accession_number) FROM scans
                     WHERE accession_number LIKE :'p2'),
                   (SELECT count(*) FROM scan_queue q JOIN scans s ON s.id = q.scan_id
                     WHERE s.accession_number LIKE :'p2')""",
                         "MR" + run_id + "-%", "A" + run_id + "-%")[0]
        self.assertEqual(adapted, [str(TOTAL)] * 3 + [str(TOTAL // 2)] * 3)
        print("\ncrash test: %d acknowledged before kill -9 (%d commits held in COMMIT), %d stored "
              "then; %d acknowledged after restart and resend; %d stored, each once" %
              (len(first), held, len(stored), len(second), TOTAL), file=sys.stderr)
        gw.stop()


if __name__ == "__main__":
    h.main()
