"""HL7 v2 over MLLP end to end: real clients (Debian's mllp_send and
`medgate send`) against the real gateway and PostgreSQL. Every supported
message of the corpus is acknowledged AA, every unsupported one AR with a
reason, malformed ones AE/AR with an ERR that points at the fault, and each
is in hl7_messages and sync_logs exactly once."""
import glob
import json
import os
import select
import socket
import threading
import subprocess
import tempfile
import time
import unittest

import harness as h

CORPUS = sorted(glob.glob(os.path.join(h.TESTDATA, "hl7v2", "*", "*.hl7")))
SUPPORTED = {"ADT": {"A01", "A04", "A08", "A28", "A31", "A40"},
             "ORM": {"O01"}, "OMI": {"O23"}, "ORU": {"R01"}}


def msh_of(path):
    """(MSH-9.1, MSH-9.2, MSH-10) read straight from the file."""
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    first = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r")[0]
    fs = first[3:4]
    fields = first.split(fs)
    comp = fields[1][0:1]
    t = fields[8].split(comp)
    return t[0].decode(), t[1].decode() if len(t) > 1 else "", fields[9].decode()


def segments_of(path):
    with open(path, "rb") as f:
        data = f.read().replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    return [seg.decode("latin-1").split("|") for seg in data.split(b"\r") if seg]


def expected_code(path):
    mtype, trigger, _ = msh_of(path)
    if trigger not in SUPPORTED.get(mtype, ()):
        return "AR"
    # An imaging order needs an accession number (IPC-1, OBR-18, ORC-3 or
    # OBR-3); ORM-O01-06 is an ORC without OBR or IPC and none of them:
    # the mapping answers AE 101 rather than invent one.
    segs = segments_of(path)
    ids = {seg[0][-3:] for seg in segs}
    orc3 = [seg[3] for seg in segs if seg[0] == "ORC" and len(seg) > 3 and seg[3]]
    if mtype in ("ORM", "OMI") and not ids & {"OBR", "IPC"} and not orc3:
        return "AE"
    # A result attachment (OBX-2 ED) must name an HL7 encoding in ED.4: A,
    # Hex or Base64. dcm4che's ORU_R01-CDA sends "ASCII" with raw XML whose
    # '&' split the data into sub-components: the result adapter answers AE
    # 102 rather than keep a truncated document.
    ed4 = [seg[5].split("^")[3] for seg in segs
           if seg[0] == "OBX" and len(seg) > 5 and seg[2] == "ED" and seg[5].count("^") >= 4]
    if mtype == "ORU" and any(e.upper() not in ("A", "HEX", "BASE64") for e in ed4):
        return "AE"
    return "AA"


def wire_copy(path, directory):
    """What an MLLP sender puts on the wire: no BOM, CR segment ends."""
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    data = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r").rstrip(b"\r")
    out = os.path.join(directory, os.path.basename(path))
    with open(out, "wb") as f:
        f.write(data.replace(b"\r", b"\n") + b"\n")  # LF file for --loose
    return out


mllp_exchange = h.mllp_exchange
segments = h.segments


def read_until_eof(s):
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return buf
        buf += chunk


def exchange_all(port, frames, timeout=10):
    """Writes all frames at once on one connection (so they share grouped
    commits) and returns the ACK of each, in order, without its framing."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"".join(b"\x0b" + f + b"\x1c\r" for f in frames))
        return read_acks(sock, len(frames))


def read_acks(sock, n):
    """Reads until n ACK frames came (or the peer closed); returns them
    without their framing."""
    buf = b""
    while buf.count(b"\x1c\r") < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return [a.strip(b"\x0b") for a in buf.split(b"\x1c\r") if a]


def answers_up_to_probe(port, frame, probe_cid, timeout=30):
    """Sends `frame` and then an original-mode probe on the same
    connection, and returns every ACK that came before and with the
    probe's. ACKs go out in arrival order, so an answer to `frame` would
    come first: a lone probe ACK shows that `frame` got none."""
    probe = msg(probe_cid)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"\x0b" + frame + b"\x1c\r\x0b" + probe + b"\x1c\r")
        buf = b""
        while ("|" + probe_cid).encode() not in buf or not buf.endswith(b"\x1c\r"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    return [a.strip(b"\x0b") for a in buf.split(b"\x1c\r") if a]


class CorpusTest(unittest.TestCase):
    def setUp(self):
        self.db = h.create_database("mllp")
        h.migrate(self.db)
        # Original mode: several corpus files set MSH-15/16 (even NE) but a
        # test client waits for one ACK each; enhanced mode is tested below.
        port = h.free_port()
        self.gw = h.Gateway(self.db, config={"mllp": {"listeners": [
            {"name": "test", "port": port, "ack_mode": "original",
             "senders": [{"organization_id": h.DEMO_ORG}]}]}})
        self.gw.mllp_port = port
        self.gw.start()
        self.tmp = tempfile.mkdtemp()

    def tearDown(self):
        self.gw.stop()

    def forget_messages(self):
        """Several corpus files reuse one sender and MSH-10 (MSG00001...):
        start each file afresh so duplicate detection does not apply. They
        come from unrelated sources and reuse made-up identifiers too
        (PATID1234 under ADT1, under test1&2.16.1&HCD and under NIST MPI):
        one number from two assigning authorities is two people, refused
        (AE 204), so each file starts with no patients either."""
        h.psql(self.db, "TRUNCATE hl7_messages, sync_logs, patients, patient_identifiers, "
               "scans, scan_queue, reports, scan_files CASCADE")

    def check_stored_once(self, path):
        _, _, control_id = msh_of(path)
        n = h.scalar(self.db, "SELECT count(*) FROM hl7_messages WHERE control_id = :'p1'", control_id)
        logs = h.scalar(self.db, "SELECT count(*) FROM sync_logs WHERE external_id = :'p1'", control_id)
        self.assertEqual((n, logs), ("1", "1"), path)
        row = h.psql(self.db, "SELECT status, ack_code, octet_length(raw) > 0, listener "
                     "FROM hl7_messages WHERE control_id = :'p1'", control_id)[0]
        want = expected_code(path)
        self.assertEqual(row[1], want, path)
        self.assertEqual(row[0], {"AA": "received", "AE": "failed", "AR": "rejected"}[want], path)
        self.assertEqual(row[2:], ["t", "test"])

    def test_corpus_through_mllp_send(self):
        self.assertGreater(len(CORPUS), 35)
        for path in CORPUS:
            with self.subTest(path=os.path.basename(path)):
                self.forget_messages()
                r = subprocess.run(["mllp_send", "--loose", "-p", str(self.gw.mllp_port),
                                    "-f", wire_copy(path, self.tmp), "127.0.0.1"],
                                   capture_output=True, timeout=30)
                self.assertEqual(r.returncode, 0, r.stderr)
                ack = r.stdout.replace(b"\n", b"\r")
                seg = segments(ack)
                self.assertEqual(seg["MSA"][1], expected_code(path))
                self.assertEqual(seg["MSA"][2], msh_of(path)[2])
                if expected_code(path) == "AR":
                    self.assertIn("ERR", seg)
                    self.assertIn("not supported", ack.decode("latin-1"))
                if expected_code(path) == "AE":
                    # 101 for the order without accession, 102 at OBX-5.4
                    # for the attachment in an unknown encoding.
                    want = "102^" if msh_of(path)[0] == "ORU" else "101^"
                    self.assertTrue(seg["ERR"][3].startswith(want), seg["ERR"])
                    if want == "102^":
                        self.assertTrue(seg["ERR"][2].startswith("OBX^5^5^1^4"), seg["ERR"])
                self.check_stored_once(path)

    def test_corpus_through_medgate_send(self):
        for path in CORPUS:
            with self.subTest(path=os.path.basename(path)):
                self.forget_messages()
                r = h.run_medgate("send", "--port", str(self.gw.mllp_port), "--quiet", path)
                want = expected_code(path)
                self.assertEqual(r.returncode, 0 if want == "AA" else 1, r.stdout + r.stderr)
                self.assertIn(" %s" % want, r.stdout)
                self.check_stored_once(path)


MSG = ("MSH|^~\\&|RIS|RAD|MEDGATE|HOSP|20240101120000||ADT^A01^ADT_A01|{cid}|P|2.5.1{extra}\r"
       "EVN|A01|20240101120000\r"
       "PID|1||{mrn}^^^HOSP^MR||Doe^Jane||19800101|F\r"
       "PV1|1|O\r")


def msg(cid, mrn="123", extra=""):
    return MSG.format(cid=cid, mrn=mrn, extra=extra).encode()


class CommitWarningTest(unittest.TestCase):
    """A COMMIT answered with a WARNING (as PostgreSQL answers when a wait
    for a synchronous standby is cancelled) is in doubt: no AA. A deferred
    trigger raises such a warning during the COMMIT of WARN-1's insert."""

    def setUp(self):
        self.db = h.create_database("warn")
        h.migrate(self.db)
        h.psql(self.db, "CREATE FUNCTION warn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
               " IF NEW.control_id = 'WARN-1' THEN RAISE WARNING 'committed locally only'; END IF;"
               " RETURN NULL; END $$;"
               "CREATE CONSTRAINT TRIGGER warn AFTER INSERT ON hl7_messages"
               " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION warn()")
        self.gw = h.Gateway(self.db).start()

    def tearDown(self):
        self.gw.stop()

    def test_no_aa_for_a_commit_in_doubt_and_the_resend_gets_it(self):
        self.assertEqual(mllp_exchange(self.gw.mllp_port, msg("WARN-1")), b"")  # closed, no ACK
        self.assertIn("its outcome counts as in doubt", self.gw.read_log())
        # It is stored (the commit happened locally): the sender's resend
        # is a repeat, answered AA, and nothing is stored twice.
        seg = segments(mllp_exchange(self.gw.mllp_port, msg("WARN-1")))
        self.assertEqual(seg["MSA"][1:3], ["AA", "WARN-1"])
        self.assertEqual(h.psql(self.db, "SELECT status FROM sync_logs WHERE external_id='WARN-1' ORDER BY id"),
                         [["committed"], ["duplicate"]])
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, msg("WARN-2")))["MSA"][1], "AA")


class HeldBytesTest(unittest.TestCase):
    """While commits cannot finish, pipelining senders of large frames make
    the gateway hold their messages. Before, each connection could have 32
    waiting, whatever their size (a 16 MB frame holds about 48 MB): a few
    connections filled the memory. Now a connection with a message waiting
    is not read while the waiting messages hold 256 MiB."""

    def setUp(self):
        self.db = h.create_database("held")
        h.migrate(self.db)
        self.gw = h.Gateway(self.db, config={"database": {"statement_timeout_ms": 120000}}).start()

    def tearDown(self):
        self.gw.stop()

    def held(self):
        metrics = self.gw.get("/metrics")[2]
        return int(metrics.split("medgate_intake_held_bytes ")[1].split()[0])

    def test_pipelined_large_frames_wait_instead_of_filling_the_memory(self):
        # The lock holds every commit: nothing that arrives is answered.
        locker = subprocess.Popen(["psql", "-h", h.pg_host(), "-U", "postgres", "-d", self.db, "-X", "-q"],
                                  stdin=subprocess.PIPE, text=True)
        locker.stdin.write("BEGIN; LOCK TABLE hl7_messages IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600);\n")
        locker.stdin.flush()
        deadline = time.time() + 30
        while h.scalar(self.db, "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                                "WHERE c.relname = 'hl7_messages' AND l.mode = 'AccessExclusiveLock' "
                                "AND l.granted") != "1":
            self.assertLess(time.time(), deadline)
            time.sleep(0.1)
        frame = b"\x0b" + msg("HB-%d") + b"ZZZ|" + b"x" * (1 << 20) + b"\r\x1c\r"
        conns, replies, senders = [], [], []
        for c in range(6):
            s = socket.create_connection(("127.0.0.1", self.gw.mllp_port), timeout=60)
            conns.append(s)
            data = b"".join(frame.replace(b"HB-%d", b"HB-%d-%d" % (c, i)) for i in range(32))
            t = threading.Thread(target=s.sendall, args=(data,))
            t.start()
            senders.append(t)
        try:
            # Wait until the gateway takes nothing more, then read what it holds.
            last, stable_since = -1, time.time()
            while time.time() - stable_since < 2:
                now = self.held()
                if now != last:
                    last, stable_since = now, time.time()
                time.sleep(0.2)
            self.assertGreater(last, 200 << 20)  # it did take a lot
            # 256 MiB, and at most one more message (about 3 MB) per connection.
            self.assertLess(last, (256 << 20) + 6 * (4 << 20))
        finally:
            # pg_sleep does not notice its client is gone: end the backend.
            h.psql(self.db, "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_class c "
                            "ON c.oid = l.relation WHERE c.relname = 'hl7_messages' "
                            "AND l.mode = 'AccessExclusiveLock' AND l.granted")
            locker.terminate()
            locker.wait(timeout=30)
            locker.stdin.close()
        # Nothing is lost: every frame is answered, in order, once the lock is gone.
        for t in senders:
            t.join(timeout=120)
        for c, s in enumerate(conns):
            buf = b""
            while buf.count(b"\x1c\r") < 32:
                chunk = s.recv(65536)
                self.assertTrue(chunk, "connection %d closed after %d ACKs" % (c, buf.count(b"\x1c\r")))
                buf += chunk
            acks = [segments(f.strip(b"\x0b"))["MSA"][1:3] for f in buf.split(b"\x1c\r")[:32]]
            self.assertEqual(acks, [["AA", "HB-%d-%d" % (c, i)] for i in range(32)])
            s.close()
        self.assertEqual(self.held(), 0)


class AckRulesTest(unittest.TestCase):
    def setUp(self):
        self.db = h.create_database("ack")
        h.migrate(self.db)
        self.gw = h.Gateway(self.db, config={"mllp": {"listeners": [
            {"name": "test", "port": h.free_port(), "senders": [
                {"application": "*", "facility": "RAD", "organization_id": h.DEMO_ORG}]}]}})
        self.gw.mllp_port = self.gw.conf["mllp"]["listeners"][0]["port"]
        self.gw.start()

    def tearDown(self):
        self.gw.stop()

    def test_the_senders_address_is_stored_and_unframed_hl7_is_said(self):
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, msg("PEER-1")))["MSA"][1], "AA")
        self.assertEqual(h.scalar(self.db, "SELECT host(peer_address) FROM hl7_messages "
                                  "WHERE control_id = 'PEER-1'"), "127.0.0.1")
        # HL7 without MLLP's blocks: no frame, no ACK; the log says why
        # when the sender gives up, and /metrics counts the bytes.
        raw = msg("PEER-2")
        with socket.create_connection(("127.0.0.1", self.gw.mllp_port), timeout=5) as sock:
            sock.sendall(raw)
        deadline = time.time() + 10
        while time.time() < deadline and "and no MLLP frame" not in self.gw.read_log():
            time.sleep(0.05)
        self.assertIn("connection ended with %d bytes and no MLLP frame, skipped (a sender without "
                      "the 0x0B start block?)" % len(raw), self.gw.read_log())
        # Frames ended with CR LF leave a byte between frames: counted, but
        # no line for such a connection.
        with socket.create_connection(("127.0.0.1", self.gw.mllp_port), timeout=5) as sock:
            sock.sendall(b"\x0b" + msg("PEER-4") + b"\x1c\r\n")
            sock.recv(65536)
        time.sleep(0.5)
        self.assertEqual(self.gw.read_log().count("and no MLLP frame"), 1)
        self.assertIn('medgate_mllp_skipped_bytes_total{listener="test"} %d\n' % (len(raw) + 1),  # + the LF
                      self.gw.get("/metrics")[2])
        # A refused message is a log line too (limited), codes and places
        # only: the error text may quote the message.
        bad = msg("PEER-3").replace(b"|P|2.5", b"|P|9.9")
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, bad))["MSA"][1], "AR")
        deadline = time.time() + 5
        while time.time() < deadline and "refused: AR" not in self.gw.read_log():
            time.sleep(0.05)
        self.assertRegex(self.gw.read_log(), r"level=warn component=intake .* listener=\"test\" "
                                             r"sender=\"RIS\^RAD\" msh10=\"PEER-3\" "
                                             r"msg=\"refused: AR at MSH\^1\^12")

    def test_repeated_message_gets_the_original_ack_and_is_stored_once(self):
        first = mllp_exchange(self.gw.mllp_port, msg("DUP-1"))
        again = mllp_exchange(self.gw.mllp_port, msg("DUP-1"))
        self.assertEqual(segments(first)["MSA"][1], "AA")
        self.assertEqual(first, again)  # byte for byte, its MSH-10 included
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM hl7_messages WHERE control_id='DUP-1'"), "1")
        self.assertEqual(h.psql(self.db, "SELECT status FROM sync_logs WHERE external_id='DUP-1' ORDER BY id"),
                         [["committed"], ["duplicate"]])

    def test_same_control_id_different_payload_is_ae_205_and_kept(self):
        mllp_exchange(self.gw.mllp_port, msg("DUP-2", mrn="1"))
        ack = mllp_exchange(self.gw.mllp_port, msg("DUP-2", mrn="2"))
        seg = segments(ack)
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertTrue(seg["ERR"][3].startswith("205^"))
        self.assertTrue(seg["ERR"][2].startswith("MSH^1^10"), seg["ERR"])
        rows = h.psql(self.db, "SELECT status, duplicate_of IS NOT NULL, position('|2^^^' in convert_from(raw, 'UTF8')) > 0 "
                      "FROM hl7_messages WHERE control_id='DUP-2' ORDER BY received_at")
        self.assertEqual(rows, [["received", "f", "f"], ["duplicate", "t", "t"]])

    def test_unknown_sender_is_rejected_and_stored(self):
        payload = msg("SND-1").replace(b"|RIS|RAD|", b"|RIS|OTHER|")
        seg = segments(mllp_exchange(self.gw.mllp_port, payload))
        self.assertEqual(seg["MSA"][1], "AR")
        self.assertIn("sender not accepted", "|".join(seg["ERR"]))
        self.assertEqual(h.scalar(self.db, "SELECT status FROM hl7_messages WHERE control_id='SND-1'"), "rejected")

    def test_malformed_content_gets_ae_with_err_at_the_field(self):
        payload = msg("BAD-1").replace(b"Doe^Jane", b"Doe^J\xffne")  # not UTF-8/ASCII
        seg = segments(mllp_exchange(self.gw.mllp_port, payload))
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertTrue(seg["ERR"][2].startswith("PID^1^5"), seg["ERR"])
        self.assertTrue(seg["ERR"][3].startswith("102^"), seg["ERR"])
        row = h.psql(self.db, "SELECT status, error_location, error IS NOT NULL FROM hl7_messages "
                     "WHERE control_id='BAD-1'")[0]
        self.assertEqual(row[0], "failed")
        self.assertTrue(row[1].startswith("PID^1^5"))

    def test_nul_bytes_are_answered_and_stored_not_a_poison_message(self):
        """PostgreSQL text cannot hold a NUL: a message carrying one (a raw
        0x00 byte, or a hex escape \\X00\\) failed every grouped commit it
        was in and was never answered, so its sender resent it for ever."""
        frames = [msg("NUL-1", mrn="N1"),
                  msg("NUL-2", mrn="N2").replace(b"Doe^Jane", b"Doe^Ja\x00ne"),
                  msg("NUL-3", mrn="N3").replace(b"Doe^Jane", b"Doe^Ja\\X00\\ne"),
                  msg("NUL-4", mrn="N4"),
                  msg("NUL-\x005", mrn="N5")]
        raw = exchange_all(self.gw.mllp_port, frames, timeout=10)
        acks = [segments(a) for a in raw]
        self.assertEqual([a["MSA"][1:3] for a in acks],
                         [["AA", "NUL-1"], ["AE", "NUL-2"], ["AA", "NUL-3"], ["AA", "NUL-4"],
                          ["AE", "NUL-5"]])
        # An echoed MSH-10 leaves the NUL out: the ACK stays whole.
        self.assertTrue(acks[4]["ERR"][2].startswith("MSH^1^10"), acks[4]["ERR"])
        self.assertNotIn(b"\x00", b"".join(raw))
        # The raw NUL is refused at its field; the escaped one is text that
        # cannot be shown, as any other undecodable escape (U+FFFD).
        self.assertTrue(acks[1]["ERR"][2].startswith("PID^1^5"), acks[1]["ERR"])
        self.assertTrue(acks[1]["ERR"][3].startswith("102^"), acks[1]["ERR"])
        self.assertEqual(h.psql(self.db, "SELECT control_id, status FROM hl7_messages WHERE control_id "
                                "LIKE 'NUL-%' ORDER BY control_id"),
                         [["NUL-1", "received"], ["NUL-2", "failed"], ["NUL-3", "received"],
                          ["NUL-4", "received"], ["NUL-?5", "failed"]])
        self.assertEqual(h.scalar(self.db, "SELECT first_name FROM patients WHERE medical_record_number = 'N3'"),
                         "Ja\ufffdne")
        self.assertEqual(h.scalar(self.db, "SELECT position('\\x00'::bytea IN raw) > 0 FROM hl7_messages "
                                  "WHERE control_id = 'NUL-2'"), "t")  # kept as it came

    def test_header_bytes_that_are_not_utf8_are_escaped_in_the_ack(self):
        """The ACK echoes MSH-3 to MSH-6 and MSH-10, and is stored as text:
        an 8859/1 sender's facility name (0xDC) or a stray byte made it
        invalid UTF-8, which failed every grouped commit it was in, its
        neighbours' too, and was never answered. A 70 kB MSH-10 made no
        ACK at all."""
        latin1 = msg("HB-2").replace(b"2.5.1\r", b"2.5.1||||||8859/1\r") \
                            .replace(b"|MEDGATE|HOSP|", b"|MEDGATE|H\xdcSP|")
        stray = msg("HB-3").replace(b"|RIS|RAD|", b"|R\xffS|RAD|")
        huge = msg("HB-4" + "x" * 70000)
        # A field separator outside ASCII (0xA6) would be written into the
        # ACK as it came: the ACK goes with the standard delimiters, AR.
        broken_bar = msg("HB-6").replace(b"|", b"\xa6")
        frames = [msg("HB-1"), latin1, stray, huge, msg("HB-5"), broken_bar, msg("HB-7")]
        raw = exchange_all(self.gw.mllp_port, frames, timeout=10)
        acks = [segments(a) for a in raw]
        self.assertEqual([a["MSA"][1] for a in acks], ["AA", "AA", "AE", "AA", "AA", "AR", "AA"])
        self.assertEqual(acks[5]["MSA"][2], "HB-6")
        self.assertTrue(acks[5]["ERR"][2].startswith("MSH^1^1"), acks[5]["ERR"])
        # The 8859/1 facility goes back as a hex escape the sender decodes
        # in its own character set.
        self.assertEqual(acks[1]["MSH"][3], "H\\XDC\\SP")
        self.assertTrue(acks[2]["ERR"][2].startswith("MSH^1^3"), acks[2]["ERR"])
        self.assertEqual(acks[2]["MSH"][4], "R\\XFF\\S")
        self.assertTrue(acks[3]["MSA"][2].startswith("HB-4xxx"))
        for a in raw:
            a.decode("ascii")  # every ACK is plain ASCII here
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM hl7_messages WHERE control_id LIKE 'HB-%' "
                                  "AND ack_payload IS NOT NULL"), "7")

    def test_a_message_cut_into_too_many_parts_is_ae_100(self):
        # 20,000 bare OBR in 120 kB took 20 s of the event loop to map (each
        # part walked the whole message); more than 1000 order groups is
        # now refused at the 1001st, and the connection goes on.
        oru = ("MSH|^~\\&|RIS|RAD|MEDGATE|HOSP|20240102100000||ORU^R01^ORU_R01|SP-1|P|2.5.1\r"
               "PID|1||MRN9^^^HOSP^MR||Roe^Richard||19700101|M\r" + "OBR|1\r" * 20000).encode()
        raw = exchange_all(self.gw.mllp_port, [oru, msg("SP-2")], timeout=30)
        acks = [segments(a) for a in raw]
        self.assertEqual([a["MSA"][1:3] for a in acks], [["AE", "SP-1"], ["AA", "SP-2"]])
        self.assertTrue(acks[0]["ERR"][2].startswith("OBR^1001"), acks[0]["ERR"])
        self.assertTrue(acks[0]["ERR"][3].startswith("100^"), acks[0]["ERR"])

    def test_big_frames_pipelined_are_all_stored_and_answered(self):
        # A grouped statement carries at most 64 MB of raw message: 32
        # frames of 16 MB in one made a parameter over PostgreSQL's 1 GB,
        # failing the batch. Five 12 MB frames go in several batches.
        big = [msg("BIG-%d" % i).replace(b"PV1|1|O\r", b"PV1|1|O\rNTE|1||" + b"x" * (12 << 20) + b"\r")
               for i in range(5)]
        raw = exchange_all(self.gw.mllp_port, big + [msg("BIG-5")], timeout=120)
        self.assertEqual([segments(a)["MSA"][1:3] for a in raw],
                         [["AA", "BIG-%d" % i] for i in range(6)])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM hl7_messages WHERE control_id LIKE 'BIG-%' "
                                  "AND octet_length(raw) > 12 * 1024 * 1024"), "5")

    def test_failed_message_repeated_then_corrected(self):
        bad = msg("FIX-1").replace(b"Doe^Jane", b"Doe^J\xffne")
        first = mllp_exchange(self.gw.mllp_port, bad)
        self.assertEqual(mllp_exchange(self.gw.mllp_port, bad), first)  # same bytes: same AE
        fixed = segments(mllp_exchange(self.gw.mllp_port, msg("FIX-1")))
        self.assertEqual(fixed["MSA"][1], "AA")  # corrected, same MSH-10: processed
        self.assertEqual(h.psql(self.db, "SELECT status FROM hl7_messages WHERE control_id='FIX-1' "
                                "ORDER BY received_at"), [["failed"], ["received"]])

    def test_blank_control_id_is_refused_like_an_empty_one(self):
        # " " would otherwise pass the header check and hold no duplicate
        # key (the key reads MSH-10 trimmed): a resend would run again.
        for cid in ("", " "):
            seg = segments(mllp_exchange(self.gw.mllp_port, msg(cid)))
            self.assertEqual(seg["MSA"][1], "AR", repr(cid))
            self.assertTrue(seg["ERR"][3].startswith("101^"), seg["ERR"])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM hl7_messages WHERE status = 'received'"), "0")

    def test_non_ascii_sender_names_are_kept_and_keep_keys_apart(self):
        # UTF-8 in MSH-3 was stored as '?': two senders' messages with one
        # MSH-10 collided as a duplicate (AE 205).
        one = msg("U8-1").replace(b"|RIS|RAD|", "|RÏS|RAD|".encode())
        two = msg("U8-1").replace(b"|RIS|RAD|", "|RÌS|RAD|".encode())
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, one))["MSA"][1], "AA")
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, two))["MSA"][1], "AA")
        self.assertEqual(h.psql(self.db, "SELECT sending_application, status FROM hl7_messages "
                                "WHERE control_id = 'U8-1' ORDER BY received_at"),
                         [["RÏS", "received"], ["RÌS", "received"]])

    def test_unsupported_version_is_ar_203(self):
        seg = segments(mllp_exchange(self.gw.mllp_port, msg("VER-1").replace(b"|P|2.5.1", b"|P|9.9")))
        self.assertEqual(seg["MSA"][1], "AR")
        self.assertTrue(seg["ERR"][3].startswith("203^"))

    def test_unsupported_type_is_ar_even_when_its_content_is_bad(self):
        # MSH-9 is judged before the content: AR 200, not AE 102 for a byte
        # of a message nobody here would have processed anyway.
        bad = msg("TYP-1").replace(b"ADT^A01^ADT_A01", b"ZZZ^Z01").replace(b"Doe^Jane", b"Doe^J\xffne")
        seg = segments(mllp_exchange(self.gw.mllp_port, bad))
        self.assertEqual(seg["MSA"][1], "AR")
        self.assertTrue(seg["ERR"][3].startswith("200^"), seg["ERR"])
        self.assertTrue(seg["ERR"][2].startswith("MSH^1^9"), seg["ERR"])

    def test_a_refused_header_resent_gets_the_original_ar(self):
        # The sender is known (MSH-3/4) though the header is refused: the
        # same bytes again are a repeat, not a second row with a new AR.
        bad = msg("VER-2").replace(b"|P|2.5.1", b"|P|9.9")
        first = mllp_exchange(self.gw.mllp_port, bad)
        self.assertEqual(segments(first)["MSA"][1], "AR")
        self.assertEqual(mllp_exchange(self.gw.mllp_port, bad), first)  # byte for byte
        self.assertEqual(h.psql(self.db, "SELECT status, organization_id FROM hl7_messages WHERE control_id = 'VER-2'"),
                         [["rejected", h.DEMO_ORG]])
        self.assertEqual(h.psql(self.db, "SELECT status FROM sync_logs WHERE external_id = 'VER-2' ORDER BY id"),
                         [["rejected"], ["duplicate"]])

    def test_no_msh_is_rejected(self):
        seg = segments(mllp_exchange(self.gw.mllp_port, b"PID|1||123\r"))
        self.assertEqual(seg["MSA"][1], "AR")
        self.assertTrue(seg["ERR"][3].startswith("100^"), seg["ERR"])  # segment sequence error
        self.assertTrue(seg["ERR"][2].startswith("MSH"), seg["ERR"])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM hl7_messages WHERE status='rejected'"), "1")

    def test_enhanced_mode_answers_ca(self):
        seg = segments(mllp_exchange(self.gw.mllp_port, msg("ENH-1", extra="|||AL|NE")))
        self.assertEqual(seg["MSA"][1], "CA")
        self.assertEqual(seg["MSA"][2], "ENH-1")

    def test_no_accept_ack_but_an_application_ack_gets_aa_ae(self):
        # MSH-15 NE, MSH-16 AL: original mode by another name. The sender
        # waited for an answer that never came (and got nothing again on
        # every resend); the application ACK is what there is to say.
        seg = segments(mllp_exchange(self.gw.mllp_port, msg("ENH-NA", extra="|||NE|AL")))
        self.assertEqual(seg["MSA"][1:3], ["AA", "ENH-NA"])
        bad = msg("ENH-NB", extra="|||NE|ER").replace(b"|19800101|", b"|19801340|")
        seg = segments(mllp_exchange(self.gw.mllp_port, bad))
        self.assertEqual(seg["MSA"][1:3], ["AE", "ENH-NB"])
        # "" is the explicit null: original mode, not enhanced.
        seg = segments(mllp_exchange(self.gw.mllp_port, msg("ENH-NULL", extra='|||""|""')))
        self.assertEqual(seg["MSA"][1], "AA")

    def test_enhanced_mode_ne_gets_no_ack_for_a_duplicate_key(self):
        # MSH-15 NE: no accept ACK at all, also not the CE 205 of a control
        # id already used with another payload (it was sent before).
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, msg("ENH-D", mrn="1")))["MSA"][1], "AA")
        acks = answers_up_to_probe(self.gw.mllp_port, msg("ENH-D", mrn="2", extra="|||NE|NE"),
                                   "ENH-D-PROBE")
        self.assertEqual([segments(a)["MSA"][1:3] for a in acks], [["AA", "ENH-D-PROBE"]])
        self.assertEqual(h.wait_for_scalar(self.db, "SELECT status FROM hl7_messages WHERE control_id = 'ENH-D' "
                                           "AND status = 'duplicate'"), "duplicate")

    def test_enhanced_mode_ne_stores_without_ack(self):
        acks = answers_up_to_probe(self.gw.mllp_port, msg("ENH-NE", extra="|||NE|NE"),
                                   "ENH-NE-PROBE")
        self.assertEqual([segments(a)["MSA"][1:3] for a in acks], [["AA", "ENH-NE-PROBE"]])
        self.assertEqual(h.wait_for_scalar(self.db, "SELECT status FROM hl7_messages "
                                                    "WHERE control_id='ENH-NE'"), "received")

    def test_an_inbound_ack_is_stored_and_not_answered(self):
        ack = (b"MSH|^~\\&|RIS|RAD|MEDGATE|HOSP|20240101120000||ACK^A01^ACK|INACK-1|P|2.5.1\r"
               b"MSA|AA|OUT-77\r")
        acks = answers_up_to_probe(self.gw.mllp_port, ack, "INACK-PROBE")
        self.assertEqual([segments(a)["MSA"][1:3] for a in acks], [["AA", "INACK-PROBE"]])
        self.assertEqual(h.psql(self.db, "SELECT message_type, trigger_event FROM hl7_messages "
                                "WHERE control_id = 'INACK-1'"), [["ACK", "A01"]])

    def test_a_batch_frame_is_ar_100_and_the_connection_stays_open(self):
        batch = (b"BHS|^~\\&|RIS|RAD|MEDGATE|HOSP|20240101120000\r" + msg("IN-BATCH-1") +
                 b"BTS|1\r")
        with socket.create_connection(("127.0.0.1", self.gw.mllp_port), timeout=30) as sock:
            sock.sendall(b"\x0b" + batch + b"\x1c\r\x0b" + msg("AFTER-BATCH") + b"\x1c\r")
            first, second = [segments(a) for a in read_acks(sock, 2)]
        self.assertEqual(first["MSA"][1:3], ["AR", ""])
        self.assertEqual(first["MSH"][2:6], ["", "", "", ""])
        self.assertTrue(first["ERR"][3].startswith("100^"), first["ERR"])
        self.assertTrue(first["ERR"][2].startswith("MSH"), first["ERR"])
        self.assertEqual(second["MSA"][1:3], ["AA", "AFTER-BATCH"])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM hl7_messages WHERE status = 'rejected'"), "1")

    def test_ack_swaps_apps_and_echoes_version(self):
        seg = segments(mllp_exchange(self.gw.mllp_port, msg("SWP-1")))
        self.assertEqual(seg["MSH"][2:6], ["MEDGATE", "HOSP", "RIS", "RAD"])
        self.assertEqual(seg["MSH"][8], "ACK^A01^ACK")
        self.assertEqual(seg["MSH"][11], "2.5.1")
        self.assertNotEqual(seg["MSH"][9], "SWP-1")

    def test_several_frames_in_one_write_are_answered_in_order(self):
        with socket.create_connection(("127.0.0.1", self.gw.mllp_port), timeout=10) as s:
            s.sendall(b"junk" + b"".join(b"\x0b" + msg("ORD-%d" % i) + b"\x1c\r" for i in range(20)))
            buf = b""
            while buf.count(b"\x1c\r") < 20:
                buf += s.recv(65536)
        acks = [segments(a.strip(b"\x0b"))["MSA"][2] for a in buf.split(b"\x1c\r") if a]
        self.assertEqual(acks, ["ORD-%d" % i for i in range(20)])

    def test_half_closed_sender_still_gets_every_ack(self):
        # Some senders shut their side down after the last frame and then
        # read the ACKs: the connection stays open until they are written.
        with socket.create_connection(("127.0.0.1", self.gw.mllp_port), timeout=10) as s:
            s.sendall(b"".join(b"\x0b" + msg("HALF-%d" % i) + b"\x1c\r" for i in range(3)))
            s.shutdown(socket.SHUT_WR)
            buf = read_until_eof(s)
        acks = [segments(a.strip(b"\x0b"))["MSA"][1:3] for a in buf.split(b"\x1c\r") if a]
        self.assertEqual(acks, [["AA", "HALF-%d" % i] for i in range(3)])

    def test_a_pipeliner_has_at_most_32_frames_taken_even_within_one_read(self):
        # The first commit is held for 3 s; meanwhile 100 frames arrive in
        # one write (one read of the gateway). Only 32 may be taken (the
        # rest wait unread), and every frame is still answered in order.
        h.psql(self.db, "CREATE FUNCTION hold() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
               " IF NEW.control_id = 'HOLD-0' THEN PERFORM pg_sleep(3); END IF;"
               " RETURN NEW; END $$;"
               "CREATE TRIGGER hold BEFORE INSERT ON hl7_messages FOR EACH ROW EXECUTE FUNCTION hold()")
        frames = b"".join(b"\x0b" + msg("HOLD-%d" % i, mrn="H%d" % i) + b"\x1c\r" for i in range(100))
        self.assertLess(len(frames), 60000)

        def pending():
            body = self.gw.get("/metrics")[2]
            return int(next(l.split()[1] for l in body.splitlines()
                            if l.startswith("medgate_intake_pending ")))
        with socket.create_connection(("127.0.0.1", self.gw.mllp_port), timeout=30) as s:
            s.sendall(frames)
            seen = [pending()]
            while seen[-1] < 32 and len(seen) < 500:
                seen.append(pending())
            for _ in range(20):  # the held commit is still running
                seen.append(pending())
            acks = [segments(a)["MSA"][1:3] for a in read_acks(s, 100)]
        self.assertEqual(max(seen), 32, seen)
        self.assertEqual(acks, [["AA", "HOLD-%d" % i] for i in range(100)])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM hl7_messages WHERE control_id LIKE 'HOLD-%'"),
                         "100")

    def restart_with_small_frames(self, **listener):
        self.gw.stop()
        self.gw = h.Gateway(self.db, config={"mllp": {"listeners": [dict(
            {"name": "small", "port": h.free_port(), "max_frame_bytes": 1024,
             "senders": [{"organization_id": h.DEMO_ORG}]}, **listener)]}})
        self.gw.mllp_port = self.gw.conf["mllp"]["listeners"][0]["port"]
        self.gw.start()

    def test_a_sender_name_with_an_escaped_delimiter_is_matched_decoded(self):
        # MSH-4 A\T\B is the facility A&B, as the routes and the stored
        # row read it; the sender check compared the escaped bytes (AR 207).
        self.restart_with_small_frames(senders=[
            {"application": "RIS", "facility": "A&B", "organization_id": h.DEMO_ORG}])
        m = msg("ESC-1").replace(b"|RIS|RAD|", b"|RIS|A\\T\\B|", 1)
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, m))["MSA"][1], "AA")
        self.assertEqual(h.scalar(self.db, "SELECT sending_facility FROM hl7_messages "
                                           "WHERE control_id = 'ESC-1'"), "A&B")
        other = msg("ESC-2").replace(b"|RIS|RAD|", b"|RIS|A\\T\\C|", 1)
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, other))["MSA"][1], "AR")

    def test_allow_from_closes_other_addresses_at_once(self):
        # MLLP carries no credentials: the listener's allow_from is the
        # check of who may send. 127.0.0.1 is outside 192.0.2.0/24.
        self.restart_with_small_frames(allow_from=["192.0.2.0/24", "2001:db8::/32"])
        with socket.create_connection(("127.0.0.1", self.gw.mllp_port), timeout=10) as s:
            try:  # closed unread: the kernel may answer the frame with a reset
                s.sendall(b"\x0b" + msg("NA-1") + b"\x1c\r")
                reply = s.recv(100)
            except (ConnectionResetError, BrokenPipeError):
                reply = b""
            self.assertEqual(reply, b"")  # closed, no ACK
        self.assertIsNone(h.scalar(self.db, "SELECT id FROM hl7_messages WHERE control_id = 'NA-1'"))
        self.assertIn('medgate_mllp_not_allowed_total{listener="small"} 1', self.gw.get("/metrics")[2])
        self.assertIn("address not in listener small's allow_from: closed", self.gw.read_log())
        # Listed: served as always.
        self.restart_with_small_frames(allow_from=["192.0.2.0/24", "127.0.0.0/8"])
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, msg("NA-2")))["MSA"][1], "AA")

    def test_one_address_cannot_take_every_connection(self):
        # Without a limit, one host holding idle sockets kept every other
        # sender out for idle_timeout_ms (10 minutes by default).
        self.restart_with_small_frames(max_connections_per_address=2)
        held = [socket.create_connection(("127.0.0.1", self.gw.mllp_port), timeout=10) for _ in range(2)]
        try:
            deadline = time.time() + 10  # both accepted before the third comes
            while (time.time() < deadline and 'medgate_mllp_open_connections{listener="small"} 2'
                   not in self.gw.get("/metrics")[2]):
                time.sleep(0.05)
            with socket.create_connection(("127.0.0.1", self.gw.mllp_port), timeout=10) as s:
                try:
                    reply = s.recv(100)
                except ConnectionResetError:
                    reply = b""
                self.assertEqual(reply, b"")  # closed at once
            self.assertIn('medgate_mllp_address_limit_total{listener="small"} 1', self.gw.get("/metrics")[2])
            self.assertIn("max_connections_per_address (2) open already: closed", self.gw.read_log())
            held[0].close()
            deadline = time.time() + 10  # its slot comes back once it is gone
            while (time.time() < deadline and 'medgate_mllp_open_connections{listener="small"} 1'
                   not in self.gw.get("/metrics")[2]):
                time.sleep(0.05)
            self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, msg("PA-1")))["MSA"][1], "AA")
        finally:
            for s in held:
                s.close()

    def test_allow_from_with_a_bad_entry_is_a_load_error(self):
        conf = os.path.join(tempfile.mkdtemp(prefix="medgate-allow-"), "medgate.json")
        with open(conf, "w") as f:
            json.dump({"mllp": {"listeners": [{"name": "a", "allow_from": ["10.1.2.3/24"]}]}}, f, indent=2)
        r = h.run_medgate("config", "check", conf)
        self.assertEqual(r.returncode, 1)
        self.assertIn("mllp.listeners[0].allow_from[0]: expected an IP address or a range", r.stderr)

    def test_a_frame_must_come_whole_within_the_idle_timeout(self):
        """Bytes of one frame, or junk, a few at a time, kept a connection
        open for ever (slowloris): only a frame's start or end is activity
        now, so a frame must arrive whole within idle_timeout_ms (1 s
        here; the bytes come for 5 s)."""
        self.restart_with_small_frames(idle_timeout_ms=1000)
        frame = b"\x0b" + msg("SLOW-1")
        closed = False
        with socket.create_connection(("127.0.0.1", self.gw.mllp_port), timeout=10) as s:
            for i in range(50):  # one byte every 0.1 s for 5 s, unless closed
                try:
                    s.sendall(frame[i:i + 1])
                    if select.select([s], [], [], 0.1)[0]:
                        closed = s.recv(1) == b""
                except OSError:
                    closed = True
                if closed:
                    break
        self.assertTrue(closed, "the connection stayed open while the frame trickled in")
        # And a frame that comes whole is answered, of course.
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, msg("SLOW-2")))["MSA"][1], "AA")

    def test_oversize_frame_is_refused_and_connection_closed(self):
        self.restart_with_small_frames()
        big = msg("BIG-1") + b"OBX|1|TX|||" + b"x" * 5000 + b"\r"
        with socket.create_connection(("127.0.0.1", self.gw.mllp_port), timeout=10) as s:
            s.sendall(b"\x0b" + big + b"\x1c\r")
            buf = read_until_eof(s)
        self.assertIn(b"MSA|AR|BIG-1", buf)
        self.assertIn(b"max_frame_bytes", buf)

    def test_a_senders_charset_reads_latin1_and_is_recorded(self):
        # No MSH-18: the sender's configured 8859/1 decodes the bytes, and
        # the row says which set that was (it said nothing before).
        self.restart_with_small_frames(senders=[
            {"application": "RIS", "facility": "RAD", "organization_id": h.DEMO_ORG, "charset": "8859/1"}])
        latin1 = msg("CS-1", mrn="CS1").replace(b"Doe^Jane", "Müller^Jürgen".encode("latin-1"))
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, latin1))["MSA"][1], "AA")
        self.assertEqual(h.psql(self.db, "SELECT m.charset, p.last_name, p.first_name FROM hl7_messages m, patients p "
                                "WHERE m.control_id = 'CS-1' AND p.medical_record_number = 'CS1'"),
                         [["8859/1", "Müller", "Jürgen"]])

    def test_oversize_refusal_follows_the_listeners_ack_mode(self):
        # ack_mode original: AR whatever MSH-15 says (it said CR before).
        self.restart_with_small_frames(ack_mode="original")
        big = msg("BIG-2", extra="|||AL|NE") + b"OBX|1|TX|||" + b"x" * 5000 + b"\r"
        with socket.create_connection(("127.0.0.1", self.gw.mllp_port), timeout=10) as s:
            s.sendall(b"\x0b" + big + b"\x1c\r")
            buf = read_until_eof(s)
        self.assertIn(b"MSA|AR|BIG-2", buf)
        # Enhanced, MSH-15 NE: no accept ACK wanted, so none; closed.
        self.restart_with_small_frames()
        big = msg("BIG-3", extra="|||NE|NE") + b"OBX|1|TX|||" + b"x" * 5000 + b"\r"
        with socket.create_connection(("127.0.0.1", self.gw.mllp_port), timeout=10) as s:
            s.sendall(b"\x0b" + big + b"\x1c\r")
            self.assertEqual(read_until_eof(s), b"")

    def test_frames_behind_an_oversize_one_are_not_taken(self):
        # The refusal closes the connection after BEFORE-1's ACK: AFTER-1,
        # sent behind it, must not be stored, or the sender's resend of the
        # refused frame would be stored after it (and AFTER-1 never ACKed).
        self.restart_with_small_frames()
        big = msg("BIG-2") + b"OBX|1|TX|||" + b"x" * 5000 + b"\r"
        with socket.create_connection(("127.0.0.1", self.gw.mllp_port), timeout=10) as s:
            s.sendall(b"".join(b"\x0b" + m + b"\x1c\r" for m in (msg("BEFORE-1"), big, msg("AFTER-1"))))
            buf = read_until_eof(s)
        acks = [segments(a.strip(b"\x0b"))["MSA"][1:3] for a in buf.split(b"\x1c\r") if a]
        self.assertEqual(acks, [["AA", "BEFORE-1"], ["AR", "BIG-2"]])
        self.assertEqual(h.psql(self.db, "SELECT control_id FROM hl7_messages ORDER BY received_at"),
                         [["BEFORE-1"]])

if __name__ == "__main__":
    h.main()
