"""Crash safety: 10,000 messages over 8 connections, `kill -9` of the
gateway in the middle, restart, resend everything that was not
acknowledged. Every acknowledged message must be stored exactly once, and
in the end every message is stored exactly once."""
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


def read_ids(path, code=None):
    ids = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                parts = line.strip().split("\t")
                if parts[0] and (code is None or parts[-1] == code):
                    ids.append(parts[0])
    return ids


class CrashTest(unittest.TestCase):
    def test_kill_9_loses_nothing_acknowledged(self):
        db = h.create_database("crash")
        h.migrate(db)
        gw = h.Gateway(db).start()
        tmp = tempfile.mkdtemp()
        run_id = "crash%d" % os.getpid()
        acked1, unacked = os.path.join(tmp, "acked1"), os.path.join(tmp, "unacked")
        load = subprocess.Popen([LOAD, "--port", str(gw.mllp_port), "--connections", "8",
                                 "--messages", str(TOTAL), "--type", "mixed", "--run-id", run_id,
                                 "--log-acked", acked1, "--log-unacked", unacked],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        # Kill once a good part (but not all) is acknowledged.
        deadline = time.time() + 60
        while time.time() < deadline and len(read_ids(acked1)) < TOTAL // 4:
            time.sleep(0.02)
        gw.kill9()
        out = load.communicate(timeout=120)[0].decode()
        first = read_ids(acked1, "AA")
        self.assertGreater(len(first), 0, out)
        self.assertLess(len(first), TOTAL, "gateway was killed too late to test anything")

        # Every message acknowledged before the crash is there, once.
        stored = set(r[0] for r in h.psql(db, "SELECT control_id FROM hl7_messages WHERE control_id LIKE :'p1'",
                                           run_id + "-%"))
        missing = [c for c in first if c not in stored]
        self.assertEqual(missing, [], "acknowledged but not stored")

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
        print("\ncrash test: %d acknowledged before kill -9, %d stored then; %d acknowledged "
              "after restart and resend; %d stored, each once" %
              (len(first), len(stored), len(second), TOTAL), file=sys.stderr)
        gw.stop()


if __name__ == "__main__":
    h.main()
