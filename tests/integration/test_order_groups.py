"""Messages with several order groups (ORC/OBR): the shipped order and
result routes "split" them, so each group is its own order or report, of
its own study. Without it the first OBR took every OBX of the message: a
grouped report (CT chest + CT abdomen) was filed whole under the first
study, and the second order of an ORM was acknowledged and dropped."""
import os
import subprocess
import tempfile
import unittest

import harness as h

MSH = "MSH|^~\\&|RIS|RAD|MEDGATE|HOSP|20240101120000||%s|%s|P|2.5.1"
PID = "PID|1||MRN7^^^HOSP^MR||Roe^Richard||19700101|M"


def obr(acc, filler, code="71046^XR CHEST^CPT4", status=""):
    f = [""] * 26
    f[0], f[1], f[2], f[3] = "OBR", "1", "P-%s^RIS" % acc, "%s^RIS" % filler
    f[4] = code
    f[18] = acc          # OBR-18: accession (IHE placer field 1)
    f[24] = "CT"         # OBR-24: modality
    f[25] = status       # OBR-25: result status
    return "|".join(f)


def message(*segs):
    return ("\r".join(segs) + "\r").encode()


def order(cid, *groups):
    """An ORM^O01 with one ORC/OBR group per (control, accession)."""
    segs = [MSH % ("ORM^O01^ORM_O01", cid), PID]
    for ctl, acc in groups:
        segs += ["ORC|%s|P-%s^RIS|F-%s^RIS" % (ctl, acc, acc), obr(acc, "F-" + acc)]
    return message(*segs)


def peak_kb(pid):
    """The process's peak resident memory (VmHWM), in kB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM for %d" % pid)


def under_asan():
    """An ASan build keeps freed memory in quarantine: its peak memory
    measures that, not medgate's use."""
    r = subprocess.run(["ldd", h.BIN], capture_output=True, text=True)
    return "libasan" in r.stdout


class OrderGroupsTest(unittest.TestCase):
    def setUp(self):
        self.db = h.create_database("groups")
        h.migrate(self.db)
        self.gw = h.Gateway(self.db).start()

    def tearDown(self):
        self.gw.stop()

    def send(self, payload):
        return h.segments(h.mllp_exchange(self.gw.mllp_port, payload))

    def test_an_order_message_with_two_groups_orders_two_studies(self):
        self.assertEqual(self.send(order("G-1", ("NW", "ACC1"), ("NW", "ACC2")))["MSA"][1], "AA")
        self.assertEqual(h.psql(self.db, "SELECT s.accession_number, s.filler_order_number, q.status, "
                                "p.medical_record_number FROM scans s "
                                "JOIN scan_queue q ON q.scan_id = s.id "
                                "JOIN patients p ON p.id = s.patient_id ORDER BY 1"),
                         [["ACC1", "F-ACC1", "waiting", "MRN7"], ["ACC2", "F-ACC2", "waiting", "MRN7"]])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients"), "1")

    def test_a_grouped_report_is_filed_per_study(self):
        self.assertEqual(self.send(order("G-2", ("NW", "ACC1"), ("NW", "ACC2")))["MSA"][1], "AA")
        oru = message(MSH % ("ORU^R01^ORU_R01", "G-3"), PID,
                      "ORC|RE|P-ACC1^RIS|R1^RIS", obr("ACC1", "R1", status="F"),
                      "OBX|1|TX|59776-5^Findings^LN||Chest clear.||||||F",
                      "ORC|RE|P-ACC2^RIS|R2^RIS", obr("ACC2", "R2", "74150^CT ABDOMEN^CPT4", "P"),
                      "OBX|1|TX|59776-5^Findings^LN||Liver normal.||||||P",
                      "OBX|2|TX|59776-5^Findings^LN||Spleen normal.||||||P")
        self.assertEqual(self.send(oru)["MSA"][1], "AA")
        self.assertEqual(h.psql(self.db, "SELECT s.accession_number, r.external_id, r.report_status, "
                                "replace(r.findings_text, E'\\n', '|'), s.status FROM reports r "
                                "JOIN scans s ON s.id = r.scan_id ORDER BY 1"),
                         [["ACC1", "R1", "final", "Chest clear.", "reported"],
                          ["ACC2", "R2", "preliminary", "Liver normal.|Spleen normal.", "ordered"]])

    def test_a_refused_group_refuses_the_whole_message(self):
        # The second group changes an order nobody placed: AE 204 at its
        # accession (the message's second OBR), and the first group's new
        # order is not written either -- the message is one unit.
        seg = self.send(order("G-4", ("NW", "ACC5"), ("XO", "ACC6")))
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertEqual(seg["ERR"][2].split("^")[:3], ["OBR", "2", "18"], seg["ERR"])
        self.assertTrue(seg["ERR"][3].startswith("204^"), seg["ERR"])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM scans"), "0")
        self.assertEqual(h.scalar(self.db, "SELECT status FROM hl7_messages WHERE control_id = 'G-4'"), "failed")

    def test_a_second_patient_after_the_first_group_is_refused(self):
        two = message(MSH % ("ORM^O01^ORM_O01", "G-5"), PID, "ORC|NW|P-ACC8^RIS", obr("ACC8", "F8"),
                      "PID|2||MRN8^^^HOSP^MR||Other^Olga||19700101|F", "ORC|NW|P-ACC9^RIS", obr("ACC9", "F9"))
        seg = self.send(two)
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertEqual(seg["ERR"][2].split("^")[:2], ["PID", "2"], seg["ERR"])
        self.assertTrue(seg["ERR"][3].startswith("100^"), seg["ERR"])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM scans"), "0")

    def test_a_repeated_pid_of_the_same_patient_is_not_a_second_patient(self):
        # ORU_R01 repeats PATIENT_RESULT: some senders repeat the same PID
        # before each report. One patient, two reports.
        oru = message(MSH % ("ORU^R01^ORU_R01", "G-7"), PID,
                      "ORC|RE|P-ACC3^RIS|R3^RIS", obr("ACC3", "R3", status="F"),
                      "OBX|1|TX|59776-5^Findings^LN||Chest clear.||||||F",
                      PID.replace("PID|1|", "PID|2|"),
                      "ORC|RE|P-ACC4^RIS|R4^RIS", obr("ACC4", "R4", status="F"),
                      "OBX|1|TX|59776-5^Findings^LN||Liver normal.||||||F")
        self.assertEqual(self.send(oru)["MSA"][1], "AA")
        self.assertEqual(h.psql(self.db, "SELECT s.accession_number, r.findings_text, "
                                "p.medical_record_number FROM reports r "
                                "JOIN scans s ON s.id = r.scan_id "
                                "JOIN patients p ON p.id = s.patient_id ORDER BY 1"),
                         [["ACC3", "Chest clear.", "MRN7"], ["ACC4", "Liver normal.", "MRN7"]])

    def test_many_groups_cost_the_memory_of_one(self):
        # Each part is mapped in a scratch arena freed before the next, and
        # reads only the head and itself: kept in the message's arena, 6000
        # groups (90 kB) took 6000 copies of the whole message's
        # bookkeeping, half a gigabyte. 1000 groups is the most a message
        # may hold (more are AE 100, test_mllp).
        if under_asan():
            self.skipTest("peak memory under ASan is its quarantine")
        segs = [MSH % ("ORM^O01^ORM_O01", "G-8"), PID]
        segs += ["ORC|XO||F%d^RIS" % i for i in range(1000)]
        before = peak_kb(self.gw.proc.pid)
        seg = self.send(message(*segs))
        grown = peak_kb(self.gw.proc.pid) - before
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertEqual(seg["ERR"][2].split("^")[:3], ["ORC", "1", "3"], seg["ERR"])
        self.assertLess(grown, 10 * 1024, "the gateway grew by %d kB" % grown)


class DryRunTest(unittest.TestCase):
    def test_the_dry_run_shows_each_part(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "two.hl7")
            with open(path, "wb") as f:
                f.write(order("G-6", ("NW", "ACC1"), ("NW", "ACC2")))
            r = h.run_medgate("map", "--dry-run", path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        out = r.stdout
        self.assertIn("part 1 of 2 (ORC[1]):", out)
        self.assertIn("part 2 of 2 (ORC[2]):", out)
        first, second = out.split("part 2 of 2")
        self.assertIn('scan.accession_number = "ACC1"', first)
        self.assertNotIn("ACC2", first.split("part 1 of 2")[1])
        self.assertIn('scan.accession_number = "ACC2"', second)
        # The FHIR preview: one ImagingStudy per part.
        self.assertEqual(out.count("fhir imaging_study:"), 2)

    def test_many_parts_cost_the_memory_of_one(self):
        # As in the intake, each part is mapped in a scratch arena freed
        # before the next, not in the message's: 6000 groups took 6000
        # copies of the whole message's bookkeeping. The dry run of the
        # most groups a message may hold peaks near that of one group.
        if under_asan():
            self.skipTest("peak memory under ASan is its quarantine")

        def peak_of(groups):
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "many.hl7")
                with open(path, "wb") as f:
                    f.write(message(MSH % ("ORM^O01^ORM_O01", "G-9"), PID,
                                    *["ORC|NW||F%d^RIS" % i for i in range(groups)]))
                with open(os.devnull, "wb") as null:
                    p = subprocess.Popen([h.BIN, "map", "--dry-run", path],
                                         stdout=null, stderr=null)
                    _, status, usage = os.wait4(p.pid, 0)
            self.assertEqual(os.waitstatus_to_exitcode(status), 0)
            return usage.ru_maxrss

        one, most = peak_of(1), peak_of(1000)
        self.assertLess(most - one, 8 * 1024, "peak %d kB against %d kB" % (most, one))


if __name__ == "__main__":
    h.main()
