"""Intake review: one connection's messages commit in arrival order even
when one of them cannot be stored, and what replay may and may not
touch."""
import re
import socket
import subprocess
import time
import unittest

import harness as h
from test_mllp import msg, read_acks, read_until_eof, segments


def frames(*cids):
    return b"".join(b"\x0b" + msg(c, mrn="R" + c) + b"\x1c\r" for c in cids)


def acks_of(buf):
    return [segments(a.strip(b"\x0b"))["MSA"][1:3] for a in buf.split(b"\x1c\r") if a.strip(b"\x0b")]


def install_gate(db, key):
    """Every commit of a message waits at its end for advisory lock key."""
    h.psql(db, "CREATE FUNCTION gate() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
           " PERFORM pg_advisory_xact_lock_shared(%d); RETURN NULL; END $$;"
           "CREATE CONSTRAINT TRIGGER gate AFTER INSERT ON hl7_messages"
           " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION gate()" % key)


def close_gate(db, key):
    """Holds lock key in a psql session (commits wait) until open_gate."""
    gate = subprocess.Popen(["psql", "-h", h.pg_host(), "-U", "postgres", "-d", db, "-X",
                             "-q", "-At"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    gate.stdin.write("SELECT 'locked', pg_advisory_lock(%d);\n" % key)
    gate.stdin.flush()
    if not gate.stdout.readline().startswith("locked"):
        raise AssertionError("the gate did not close")
    return gate


def open_gate(gate):
    gate.stdin.close()
    gate.wait(timeout=30)
    gate.stdout.close()


def flood_behind_a_held_commit(test, gate_key, first_cid, flood, settle):
    """Holds the commit of message first_cid at the gate, sends the flood
    frames on a second connection, lets them settle for settle seconds and
    opens the gate. Returns how much the gateway's peak memory grew while
    the flood waited (kB) and the flood's answers, in order."""
    from test_order_groups import peak_kb
    gate = close_gate(test.db, gate_key)
    first = socket.create_connection(("127.0.0.1", test.gw.mllp_port), timeout=60)
    other = socket.create_connection(("127.0.0.1", test.gw.mllp_port), timeout=60)
    try:
        first.sendall(frames(first_cid))  # its commit waits at the gate
        time.sleep(0.5)
        before = peak_kb(test.gw.proc.pid)
        other.sendall(b"".join(b"\x0b" + f + b"\x1c\r" for f in flood))
        time.sleep(settle)
        grown = peak_kb(test.gw.proc.pid) - before
        open_gate(gate)
        test.assertEqual(acks_of(first.recv(65536)), [["AA", first_cid]])
        other.shutdown(socket.SHUT_WR)
        return grown, acks_of(read_until_eof(other))
    finally:
        first.close()
        other.close()


class NotStoredStopsTheConnectionTest(unittest.TestCase):
    """A message the database refuses (a trigger raises for POISON-1 while
    the table "fails") is answered with no ACK and its connection closes.
    A message pipelined behind it on that connection must not commit: it
    gets no ACK either (the connection is gone), so the sender resends
    both, and the first would then commit after the second -- an A01
    stored after the A08 that updates it."""

    def setUp(self):
        self.db = h.create_database("irv")
        h.migrate(self.db)
        h.psql(self.db, "CREATE TABLE poison (on_ boolean);"
               "INSERT INTO poison VALUES (true);"
               "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
               " IF NEW.control_id = 'POISON-1' AND (SELECT on_ FROM poison) THEN"
               "  RAISE EXCEPTION 'refused by test'; END IF;"
               " RETURN NEW; END $$;"
               "CREATE TRIGGER poison BEFORE INSERT ON hl7_messages FOR EACH ROW EXECUTE FUNCTION poison()")
        self.gw = h.Gateway(self.db).start()

    def tearDown(self):
        self.gw.stop()

    def test_a_message_behind_one_not_stored_is_not_committed(self):
        with socket.create_connection(("127.0.0.1", self.gw.mllp_port), timeout=10) as s:
            s.sendall(frames("OK-1", "POISON-1", "NEXT-1", "NEXT-2"))
            buf = read_until_eof(s)
        self.assertEqual(acks_of(buf), [["AA", "OK-1"]])
        self.assertEqual(h.psql(self.db, "SELECT control_id FROM hl7_messages ORDER BY control_id"),
                         [["OK-1"]])
        # The sender resends what was not acknowledged, in its order.
        h.psql(self.db, "UPDATE poison SET on_ = false")
        with socket.create_connection(("127.0.0.1", self.gw.mllp_port), timeout=10) as s:
            s.sendall(frames("POISON-1", "NEXT-1", "NEXT-2"))
            s.shutdown(socket.SHUT_WR)
            buf = read_until_eof(s)
        self.assertEqual(acks_of(buf), [["AA", "POISON-1"], ["AA", "NEXT-1"], ["AA", "NEXT-2"]])
        self.assertEqual(h.psql(self.db, "SELECT external_id, status FROM sync_logs ORDER BY id"),
                         [["OK-1", "committed"], ["POISON-1", "committed"],
                          ["NEXT-1", "committed"], ["NEXT-2", "committed"]])


class TransientAdapterErrorTest(unittest.TestCase):
    """An adapter's error about the moment, not the message (a deadlock,
    SQLSTATE 40P01, raised here by a trigger for MRN DEAD), is never an
    AE: the batch is retried one message at a time, and the message that
    fails again alone is not stored and gets no ACK, so the sender resends
    it. Its neighbours are written."""

    def setUp(self):
        self.db = h.create_database("itr")
        h.migrate(self.db)
        h.psql(self.db, "CREATE FUNCTION dead() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
               " IF NEW.medical_record_number = 'DEAD' THEN"
               "  RAISE EXCEPTION 'deadlock (test)' USING ERRCODE = '40P01'; END IF;"
               " RETURN NEW; END $$;"
               "CREATE TRIGGER dead BEFORE INSERT OR UPDATE ON patients FOR EACH ROW EXECUTE FUNCTION dead()")
        self.gws = []

    def tearDown(self):
        for gw in self.gws:
            gw.stop()

    def test_a_deadlock_is_no_ae_and_the_resend_is_stored_once(self):
        gw = h.Gateway(self.db).start()
        self.gws.append(gw)
        with socket.create_connection(("127.0.0.1", gw.mllp_port), timeout=30) as a, \
                socket.create_connection(("127.0.0.1", gw.mllp_port), timeout=30) as b:
            a.sendall(b"\x0b" + msg("DEAD-1", mrn="DEAD") + b"\x1c\r")
            b.sendall(b"\x0b" + msg("LIVE-1", mrn="LIVE") + b"\x1c\r")
            self.assertEqual(read_until_eof(a), b"")  # no ACK; closed
            self.assertEqual([segments(x)["MSA"][1:3] for x in read_acks(b, 1)], [["AA", "LIVE-1"]])
            self.assertEqual(segments(h.mllp_exchange(gw.mllp_port, msg("LIVE-2", mrn="LIVE2")))["MSA"][1],
                             "AA")
        self.assertEqual(h.psql(self.db, "SELECT control_id FROM hl7_messages ORDER BY 1"),
                         [["LIVE-1"], ["LIVE-2"]])
        # The moment has passed: the resend is stored and written once.
        h.psql(self.db, "DROP TRIGGER dead ON patients")
        self.assertEqual(segments(h.mllp_exchange(gw.mllp_port, msg("DEAD-1", mrn="DEAD")))["MSA"][1], "AA")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM hl7_messages WHERE control_id = 'DEAD-1'"),
                         "1")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients WHERE medical_record_number = 'DEAD'"),
                         "1")

    def test_a_lone_message_that_lost_a_race_once_is_tried_again(self):
        # A deadlock the first time only (the sequence is not rolled back
        # with the failed statement): the message is tried once more and
        # stored, AA, instead of leaving its sender to a timeout.
        h.psql(self.db, "CREATE SEQUENCE once_seq;"
               "CREATE FUNCTION once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
               " IF NEW.medical_record_number = 'ONCE' AND nextval('once_seq') = 1 THEN"
               "  RAISE EXCEPTION 'deadlock (test)' USING ERRCODE = '40P01'; END IF;"
               " RETURN NEW; END $$;"
               "CREATE TRIGGER once BEFORE INSERT ON patients FOR EACH ROW EXECUTE FUNCTION once()")
        gw = h.Gateway(self.db).start()
        self.gws.append(gw)
        self.assertEqual(segments(h.mllp_exchange(gw.mllp_port, msg("ONCE-1", mrn="ONCE")))["MSA"][1], "AA")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients WHERE medical_record_number = 'ONCE'"),
                         "1")
        self.assertIn("tried again once", gw.read_log())

    def test_with_db_down_reply_ar_it_is_ar_207_resend_later(self):
        port = h.free_port()
        gw = h.Gateway(self.db, config={"mllp": {"listeners": [
            {"name": "t", "port": port, "db_down_reply": "ar",
             "senders": [{"organization_id": h.DEMO_ORG}]}]}}).start()
        self.gws.append(gw)
        seg = segments(h.mllp_exchange(port, msg("DEAD-2", mrn="DEAD")))
        self.assertEqual(seg["MSA"][1:3], ["AR", "DEAD-2"])
        self.assertTrue(seg["ERR"][3].startswith("207^"), seg["ERR"])
        self.assertIn("resend later", "|".join(seg["ERR"]))
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM hl7_messages"), "0")


class WritesRefusedTest(unittest.TestCase):
    """A database that takes connections but refuses every write (a
    standby after a failover: read-only, SQLSTATE 25006; a full disk:
    53100, raised here by a trigger) answered /readyz 200 while every
    message went unanswered. Three refused grouped commits in a row make
    the gateway not ready until one goes through (or 30 s pass without
    another)."""

    def setUp(self):
        self.db = h.create_database("wrf")
        h.migrate(self.db)
        h.psql(self.db, "CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
               " RAISE EXCEPTION 'could not extend file (test)' USING ERRCODE = '53100'; END $$;"
               "CREATE TRIGGER full_disk BEFORE INSERT ON hl7_messages FOR EACH ROW "
               "EXECUTE FUNCTION full_disk()")
        self.gw = h.Gateway(self.db).start()

    def tearDown(self):
        self.gw.stop()

    def metric(self, name):
        body = self.gw.get("/metrics")[2]
        return re.search(r"^%s (\S+)$" % name, body, re.M).group(1)

    def test_a_database_refusing_writes_makes_the_gateway_not_ready(self):
        for n in range(3):
            with socket.create_connection(("127.0.0.1", self.gw.mllp_port), timeout=30) as sock:
                sock.sendall(b"\x0b" + msg("WR-%d" % n, mrn="WR%d" % n) + b"\x1c\r")
                self.assertEqual(read_until_eof(sock), b"")  # not stored: no ACK
            if n < 2:
                self.assertEqual(self.gw.get("/readyz")[0], 200)
        status, _, body = self.gw.get("/readyz")
        self.assertEqual((status, body), (503, "not ready: the database refuses writes\n"))
        self.assertEqual(self.metric("medgate_intake_write_refusals_in_a_row"), "3")
        self.assertIn("SQLSTATE 53100 (the database server is out of a resource", self.gw.read_log())
        # The disk is freed: the next message goes through, and it is ready.
        h.psql(self.db, "DROP TRIGGER full_disk ON hl7_messages")
        self.assertEqual(segments(h.mllp_exchange(self.gw.mllp_port, msg("WR-9", mrn="WR9")))["MSA"][1], "AA")
        self.assertEqual(self.gw.get("/readyz")[0], 200)
        self.assertEqual(self.metric("medgate_intake_write_refusals_in_a_row"), "0")
        self.assertGreater(float(self.metric("medgate_intake_last_commit_timestamp_seconds")),
                           time.time() - 60)


class OperatorSignalsTest(unittest.TestCase):
    """What the on-call engineer reads at log.level warn: each refusal as a
    WARN line with the listener, the sender (MSH-3^MSH-4), MSH-10 and the
    peer as fields, a reused control id too, limited a listener (one
    flooding sender hid another listener's refusals); a listener at
    max_connections and a frame cut off before its end block are said."""

    def setUp(self):
        self.db = h.create_database("ops")
        h.migrate(self.db)
        self.ris, self.emr = h.free_port(), h.free_port()
        any_sender = [{"application": "*", "facility": "*", "organization_id": h.DEMO_ORG}]
        self.gw = h.Gateway(self.db, config={"log": {"level": "warn"}, "mllp": {"listeners": [
            {"name": "ris", "port": self.ris, "max_connections": 1, "senders": any_sender},
            {"name": "emr", "port": self.emr, "senders": any_sender}]}}).start()

    def tearDown(self):
        self.gw.stop()

    def lines(self, *words):
        return [l for l in self.gw.read_log().splitlines() if all(w in l for w in words)]

    def test_refusals_and_a_reused_control_id_are_warn_lines_with_fields(self):
        # On emr, which has no connection limit: one connection after
        # another on ris (max_connections 1) can find the last one still
        # closing on the gateway's side, and be refused.
        self.assertEqual(segments(h.mllp_exchange(self.emr, msg("OPS-1", mrn="")))["MSA"][1], "AE")
        self.assertEqual(segments(h.mllp_exchange(self.emr, msg("OPS-2")))["MSA"][1], "AA")
        self.assertEqual(segments(h.mllp_exchange(self.emr, msg("OPS-2", mrn="OTHER")))["MSA"][1], "AE")
        refused = self.lines("level=warn", 'msh10="OPS-1"')
        self.assertEqual(len(refused), 1, self.gw.read_log())
        self.assertIn('listener="emr" sender="RIS^RAD"', refused[0])
        self.assertIn("peer=127.0.0.1", refused[0])
        self.assertIn("refused: AE at PID^1^3", refused[0])
        reused = self.lines("level=warn", 'msh10="OPS-2"')
        self.assertEqual(len(reused), 1, self.gw.read_log())
        self.assertIn("refused: AE 205, the control id (MSH-10) of an earlier message", reused[0])

    def test_one_listener_flooding_does_not_hide_anothers_refusals(self):
        with socket.create_connection(("127.0.0.1", self.emr), timeout=30) as sock:
            sock.sendall(b"".join(b"\x0b" + msg("FL-%d" % n, mrn="") + b"\x1c\r" for n in range(12)))
            self.assertEqual(len(read_acks(sock, 12)), 12)
        self.assertEqual(segments(h.mllp_exchange(self.ris, msg("OTHER-1", mrn="")))["MSA"][1], "AE")
        self.assertEqual(len(self.lines('listener="emr"', "refused:")), 5)  # its limit: 5 in 10 s
        self.assertEqual(len(self.lines('listener="ris"', 'msh10="OTHER-1"')), 1, self.gw.read_log())

    def test_max_connections_and_an_unfinished_frame_are_said(self):
        with socket.create_connection(("127.0.0.1", self.ris), timeout=10) as held:
            self.assertEqual(segments(h.mllp_exchange(self.emr, msg("UP-1")))["MSA"][1], "AA")  # settled
            with socket.create_connection(("127.0.0.1", self.ris), timeout=10) as late:
                self.assertEqual(read_until_eof(late), b"")  # closed at once
            held.sendall(b"\x0b" + msg("HALF-1")[:40])  # no end block, then gone
        deadline = time.time() + 10
        while time.time() < deadline and not self.lines("middle of a frame"):
            time.sleep(0.1)
        full = self.lines("level=warn", "at max_connections (1 open): connection closed")
        self.assertEqual(len(full), 1, self.gw.read_log())
        self.assertIn('listener="ris"', full[0])
        cut = self.lines("level=warn", 'listener="ris"',
                         "connection ended in the middle of a frame (40 bytes and no end block 0x1C)")
        self.assertEqual(len(cut), 1, self.gw.read_log())
        self.assertIn('medgate_mllp_unfinished_frames_total{listener="ris"} 1', self.gw.get("/metrics")[2])


class QueueFullTest(unittest.TestCase):
    """With the queue full (the database slow), a message is refused
    unread: "resend later", not stored. It used to be parsed, mapped and
    hex-encoded first and kept until its turn, so a flood of big frames
    against a slow database grew the gateway without bound."""

    GATE = 736204

    def setUp(self):
        self.db = h.create_database("iqf")
        h.migrate(self.db)
        install_gate(self.db, self.GATE)
        self.gw = h.Gateway(self.db, config={"database": {"queue_max": 2},
                                             "intake": {"commits_in_flight": 1}}).start()

    def tearDown(self):
        self.gw.stop()

    def test_a_full_queue_refuses_unread_and_costs_no_memory(self):
        from test_order_groups import under_asan
        big = [msg("QF-B%d" % i).replace(b"PV1|1|O\r", b"PV1|1|O\rNTE|1||" + b"x" * (8 << 20) + b"\r")
               for i in range(2, 12)]
        # all ten taken: two wait in the queue, eight are refused
        grown, got = flood_behind_a_held_commit(self, self.GATE, "QF-1", big, 2)
        self.assertEqual(got[:2], [["AA", "QF-B2"], ["AA", "QF-B3"]])
        self.assertEqual(got[2:], [["AR", "QF-B%d" % i] for i in range(4, 4 + len(got) - 2)])
        self.assertEqual(h.psql(self.db, "SELECT control_id FROM hl7_messages ORDER BY control_id"),
                         [["QF-1"], ["QF-B2"], ["QF-B3"]])
        if not under_asan():
            # two 8 MB messages prepared in full, eight refused at a few kB
            # each: 41 MB here, 172 MB when the refused ones were prepared
            self.assertLess(grown, 100 * 1024, "the gateway grew by %d kB" % grown)


class WaitingMessagesHoldLittleTest(unittest.TestCase):
    """A message waiting for its commit holds its columns and answers, not
    its parse tables: a field-table entry for every '|' made a 4 MB frame
    of empty fields hold some 64 MB until its commit."""

    GATE = 736205

    def setUp(self):
        self.db = h.create_database("iwh")
        h.migrate(self.db)
        install_gate(self.db, self.GATE)
        self.gw = h.Gateway(self.db, config={"intake": {"commits_in_flight": 1}}).start()

    def tearDown(self):
        self.gw.stop()

    def test_six_wide_messages_waiting(self):
        from test_order_groups import under_asan
        if under_asan():
            self.skipTest("peak memory under ASan is its quarantine")
        zzz = (b"ZZZ" + b"|" * 999 + b"\r") * 4000  # 4 MB, 4 million empty fields
        wide = [msg("WW-%d" % i).replace(b"PV1|1|O\r", b"PV1|1|O\r" + zzz) for i in range(2, 8)]
        # all six prepared, waiting behind the gate
        grown, got = flood_behind_a_held_commit(self, self.GATE, "WW-1", wide, 3)
        self.assertEqual(got, [["AA", "WW-%d" % i] for i in range(2, 8)])
        # one message's tables at a time: 133 MB here, 451 MB when each kept its own
        self.assertLess(grown, 250 * 1024, "the gateway grew by %d kB" % grown)


class ConcurrentResendTest(unittest.TestCase):
    """A sender that gives up waiting resends on a new connection while the
    first copy is still committing. One gateway holds the copy until the
    first copy's commit has landed (a batch started alongside would not see
    a failed copy's row, or would wait on an accepted one's key and roll
    back); then it is an ordinary repeat: the original answer, one row.
    Two gateways on one database cannot see each other's queues: there the
    copy's statement meets the first's key, rolls back whole and is taken
    again, with the same result."""

    GATE = 736203

    def setUp(self):
        self.db = h.create_database("icr")
        h.migrate(self.db)
        install_gate(self.db, self.GATE)
        # batch_max 8: a second grouped commit may start as soon as one
        # message waits (batch_max / 8), so only the key holds the copy.
        self.gws = [h.Gateway(self.db, config={"intake": {"batch_max": 8}}).start()]

    def tearDown(self):
        for gw in self.gws:
            gw.stop()

    def waiting(self, n):
        q = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
             " AND wait_event_type IN ('Lock', 'LWLock') AND pid <> pg_backend_pid()")
        deadline = time.time() + 30
        while time.time() < deadline and int(h.scalar(self.db, q)) < n:
            time.sleep(0.05)
        return int(h.scalar(self.db, q))

    def race(self, frame, second_gw):
        """Sends frame on a first connection, waits until its commit holds at
        the gate, sends it again through second_gw, then opens the gate;
        returns both answers."""
        gate = close_gate(self.db, self.GATE)
        first = socket.create_connection(("127.0.0.1", self.gws[0].mllp_port), timeout=30)
        second = socket.create_connection(("127.0.0.1", second_gw.mllp_port), timeout=30)
        try:
            first.sendall(b"\x0b" + frame + b"\x1c\r")
            self.assertGreaterEqual(self.waiting(1), 1, "the first commit never reached the gate")
            second.sendall(b"\x0b" + frame + b"\x1c\r")
            if second_gw is not self.gws[0]:
                # The other gateway's statement waits on the first's key.
                self.assertGreaterEqual(self.waiting(2), 2, "the copy never met the first's key")
            else:
                time.sleep(0.5)  # time enough for a batch to start, if one would
            open_gate(gate)  # the first goes on
            return first.recv(65536), second.recv(65536)
        finally:
            first.close()
            second.close()

    def batches(self, gw):
        return int(re.search(r"^medgate_intake_batches_total (\d+)", gw.get("/metrics")[2],
                             re.M).group(1))

    def test_a_copy_waits_for_the_first_and_gets_its_ack(self):
        a1, a2 = self.race(msg("CC-1", mrn="RCC-1"), self.gws[0])
        self.assertEqual(acks_of(a1), [["AA", "CC-1"]])
        self.assertEqual(a2, a1)  # the original ACK, byte for byte
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM hl7_messages"), "1")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients"), "1")
        self.assertEqual(h.psql(self.db, "SELECT status FROM sync_logs ORDER BY id"),
                         [["committed"], ["duplicate"]])
        self.assertEqual(self.batches(self.gws[0]), 2)  # nothing rolled back and taken again

    def test_a_failed_copy_is_stored_once(self):
        bad = msg("CC-2", mrn="")  # no MRN: AE at PID-3
        a1, a2 = self.race(bad, self.gws[0])
        self.assertEqual(acks_of(a1), [["AE", "CC-2"]])
        self.assertEqual(a2, a1)
        self.assertEqual(h.psql(self.db, "SELECT status FROM hl7_messages"), [["failed"]])
        self.assertEqual(h.psql(self.db, "SELECT status FROM sync_logs ORDER BY id"),
                         [["failed"], ["duplicate"]])

    def test_a_copy_through_another_gateway_gets_the_original_ack(self):
        self.gws.append(h.Gateway(self.db, config={"intake": {"batch_max": 8}}).start())
        a1, a2 = self.race(msg("CC-3", mrn="RCC-3"), self.gws[1])
        self.assertEqual(acks_of(a1), [["AA", "CC-3"]])
        self.assertEqual(a2, a1)
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM hl7_messages"), "1")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients"), "1")


class ReplayOnceTest(unittest.TestCase):
    """Two `medgate replay --failed` runs at once (two operators, or a
    cron job and a person) each read the message as failed. Each must
    replay it only if it is still as read when its turn comes: otherwise
    the adapter writes it twice and sync_logs says it was replayed twice."""

    def setUp(self):
        self.db = h.create_database("irp")
        h.migrate(self.db)
        self.gw = h.Gateway(self.db).start()

    def tearDown(self):
        self.gw.stop()

    def test_two_replays_at_once_replay_a_message_once(self):
        self.assertEqual(segments(h.mllp_exchange(self.gw.mllp_port, msg("RPL-1")))["MSA"][1], "AA")
        self.gw.stop()
        # As if it had failed (say, a mapping since fixed).
        h.psql(self.db, "UPDATE hl7_messages SET status = 'failed', error = 'was broken' "
                        "WHERE control_id = 'RPL-1'")
        # Someone holds the row for a moment, so both runs read it before
        # either writes.
        args = ["psql", "-h", h.pg_host(), "-U", "postgres", "-d", self.db, "-X", "-q",
                "-v", "ON_ERROR_STOP=1"]
        holder = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, text=True)
        holder.stdin.write("BEGIN; SELECT 1 FROM hl7_messages WHERE control_id = 'RPL-1' FOR UPDATE;\n"
                           "SELECT pg_sleep(3); COMMIT;\n")
        holder.stdin.close()
        deadline = time.time() + 10
        while h.scalar(self.db, "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                                "WHERE c.relname = 'hl7_messages' AND l.mode = 'RowShareLock'") == "0":
            self.assertLess(time.time(), deadline)
            time.sleep(0.05)
        env = dict(MEDGATE_DATABASE_URL=h.conninfo(self.db), **__import__("os").environ)
        runs = [subprocess.Popen([h.BIN, "replay", "--failed"], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [r.communicate(timeout=60) for r in runs]
        holder.wait(timeout=30)
        self.assertEqual(h.psql(self.db, "SELECT status, error FROM sync_logs WHERE external_id = 'RPL-1' "
                                         "ORDER BY id"),
                         [["committed", ""], ["processed", "replayed: accepted"]], outs)
        self.assertEqual(h.scalar(self.db, "SELECT status FROM hl7_messages WHERE control_id = 'RPL-1'"),
                         "received")
        self.assertEqual(sorted("1 now accepted" in out for out, _ in outs), [False, True], outs)


if __name__ == "__main__":
    h.main()
