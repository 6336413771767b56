"""A COMMIT that never answers does not hold the gateway: with
synchronous replication required and the standby gone, PostgreSQL makes
every COMMIT wait for it, and statement_timeout does not end that wait.
database.commit_timeout_ms gives up on such a COMMIT: no ACK (its outcome is
unknown), the sender's connection is closed, an ERROR says what to check,
the pool connection is dropped (after a cancel) and replaced, and the
sender's resend is recognised once the standby requirement is lifted.

synchronous_standby_names can only be set for a whole cluster (it is a
sighup setting, refused per database or role), so this file starts a
private cluster of its own, even when MEDGATE_TEST_PGHOST names a shared
one, and removes it at the end."""
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

import harness as h

_cluster = None
_shared_host = None


def setUpModule():
    global _cluster, _shared_host
    _cluster = tempfile.mkdtemp(prefix="medgate-it-syncrep-")
    env = dict(os.environ, MEDGATE_PG_FSYNC="off")
    out = subprocess.run([h.PG_SH, "start", _cluster], check=True, env=env,
                         capture_output=True, text=True)
    _shared_host = os.environ.get("MEDGATE_TEST_PGHOST")
    # The harness reads this at every call: its psql, databases and
    # gateways all use the private cluster from here on.
    os.environ["MEDGATE_TEST_PGHOST"] = out.stdout.strip().splitlines()[-1]


def tearDownModule():
    if _shared_host is None:
        os.environ.pop("MEDGATE_TEST_PGHOST", None)
    else:
        os.environ["MEDGATE_TEST_PGHOST"] = _shared_host
    subprocess.run([h.PG_SH, "stop", _cluster], capture_output=True)
    shutil.rmtree(_cluster, ignore_errors=True)


def psql_args(db):
    return ["psql", "-h", h.pg_host(), "-U", "postgres", "-d", db, "-X", "-q",
            "-At", "-v", "ON_ERROR_STOP=1"]


def require_standby():
    """Makes every COMMIT that writes wait for a standby named nobody, and
    returns once one such wait is seen (the checkpointer applies the
    setting a moment after the reload)."""
    h.psql("postgres", "CREATE TABLE IF NOT EXISTS sync_probe (n int)")
    h.psql("postgres", "ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
    h.psql("postgres", "SELECT pg_reload_conf()")
    deadline = time.time() + 20
    while time.time() < deadline:
        probe = subprocess.Popen(psql_args("postgres") + [
            "-c", "INSERT INTO sync_probe VALUES (1)"],
            env=dict(os.environ, PGAPPNAME="sync-probe"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while probe.poll() is None and time.time() < deadline:
            pid = h.scalar("postgres", "SELECT pid FROM pg_stat_activity "
                           "WHERE application_name = 'sync-probe' "
                           "AND wait_event = 'SyncRep'")
            if pid is not None:
                h.psql("postgres", "SELECT pg_cancel_backend(:'p1')", pid)
                probe.wait(10)
                return
            time.sleep(0.05)
        probe.wait(10)
    raise AssertionError("a COMMIT never waited for the standby: "
                         "synchronous_standby_names not in force")


def lift_standby():
    h.psql("postgres", "ALTER SYSTEM RESET synchronous_standby_names")
    h.psql("postgres", "SELECT pg_reload_conf()")
    # Waiters are released when the checkpointer applies it: a commit that
    # returns proves it is in force.
    subprocess.run(psql_args("postgres") + [
        "-c", "INSERT INTO sync_probe VALUES (2)"],
        check=True, capture_output=True, timeout=30)


MSG = ("MSH|^~\\&|RIS|RAD|MEDGATE|HOSP|20240101120000||ADT^A01^ADT_A01|{cid}|P|2.5.1\r"
       "EVN|A01|20240101120000\r"
       "PID|1||{mrn}^^^HOSP^MR||Doe^Jane||19800101|F\r"
       "PV1|1|O\r")


def msg(cid, mrn):
    return MSG.format(cid=cid, mrn=mrn).encode()


def msa(ack):
    for seg in ack.split(b"\r"):
        if seg.startswith(b"MSA|"):
            return seg.decode().split("|")[1:3]
    return None


class CommitDeadlineTest(unittest.TestCase):
    def setUp(self):
        self.db = h.create_database("deadline")
        h.migrate(self.db)
        # The intake's batch commits as it ends (one statement, no BEGIN):
        # its deadline is the statement's timeout plus the commit's.
        self.gw = h.Gateway(self.db, config={
            "database": {"commit_timeout_ms": 2000,
                         "statement_timeout_ms": 2000}}).start()

    def tearDown(self):
        lift_standby()  # also after a failure: nothing may stay waiting
        self.gw.stop()

    def test_commit_waiting_for_a_lost_standby_is_given_up(self):
        require_standby()
        t0 = time.time()
        try:
            ack = h.mllp_exchange(self.gw.mllp_port, msg("SYNC-1", "S1"),
                                  timeout=20)
        except socket.timeout:
            self.fail("no answer and the connection still open after 20 s: "
                      "the COMMIT waiting for the standby was not given up")
        took = time.time() - t0
        self.assertEqual(ack, b"")  # closed by the gateway, no ACK at all
        self.assertGreater(took, 3.5)
        self.assertLess(took, 15)
        log = self.gw.read_log()
        self.assertIn("COMMIT did not answer within 4 s; its outcome is unknown", log)
        self.assertIn("synchronous_standby_names", log)
        self.assertIsNone(self.gw.proc.poll())
        self.assertEqual(self.gw.get("/healthz")[0], 200)
        # The cancel ended the wait: the commit is local, and no backend of
        # the gateway is left waiting for the standby.
        self.assertEqual(h.wait_for_scalar(
            self.db, "SELECT status FROM hl7_messages WHERE control_id = 'SYNC-1'",
            timeout=10), "received")
        self.assertEqual(h.scalar("postgres", "SELECT count(*) FROM pg_stat_activity "
                                  "WHERE wait_event = 'SyncRep' AND datname = :'p1'",
                                  self.db), "0")

        lift_standby()
        # The pool reconnected: the sender's resend is a repeat, answered
        # with the stored ACK, and a new message is stored and ACKed.
        self.assertEqual(msa(h.mllp_exchange(self.gw.mllp_port, msg("SYNC-1", "S1"))),
                         ["AA", "SYNC-1"])
        self.assertEqual(msa(h.mllp_exchange(self.gw.mllp_port, msg("SYNC-2", "S2"))),
                         ["AA", "SYNC-2"])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM hl7_messages "
                                  "WHERE control_id = 'SYNC-1'"), "1")
        self.assertEqual(h.psql(self.db, "SELECT status FROM sync_logs "
                                "WHERE external_id = 'SYNC-1' ORDER BY id"),
                         [["committed"], ["duplicate"]])
        metrics = self.gw.get("/metrics")[2]
        reconnects = next(line.split()[1] for line in metrics.splitlines()
                          if line.startswith("medgate_db_reconnects_total "))
        self.assertGreaterEqual(int(reconnects), 1)


if __name__ == "__main__":
    h.main()
