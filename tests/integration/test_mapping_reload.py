"""The mapping stage in the intake and reloading the mapping files: a
message whose mapping fails is stored as failed and answered AE naming the
field; a valid change to the files takes effect without restart; a broken
set is refused whole and the previous one keeps serving."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import harness as h
from test_mllp import mllp_exchange, segments

ORDER = ("MSH|^~\\&|RIS|RAD|MEDGATE|HOSP|20240101120000||ORM^O01^ORM_O01|{cid}|P|2.5.1\r"
         "PID|1||555^^^HOSP^MR||Roe^Richard||19700101|M\r"
         "ORC|NW|PL1^RIS\r")


def order(cid):
    return ORDER.format(cid=cid).encode()


class MappingReloadTest(unittest.TestCase):
    def setUp(self):
        self.db = h.create_database("reload")
        h.migrate(self.db)
        self.maps = tempfile.mkdtemp(prefix="medgate-maps-")
        shutil.copytree(os.path.join(h.SOURCE_DIR, "mappings"), self.maps, dirs_exist_ok=True)
        self.gw = h.Gateway(self.db, config={"paths": {"mappings": self.maps}}).start()

    def tearDown(self):
        self.gw.stop()

    def edit_orders(self, required=True, fix=False):
        """Edits the accession rule in orders.json: its "required" (a
        non-boolean breaks the file), and with fix, a last fallback to
        ORC-2.1, as for a RIS that sends the accession as the placer order
        number."""
        path = os.path.join(self.maps, "orders.json")
        with open(path) as f:
            doc = json.load(f)
        rule = doc["fields"]["scan.accession_number"]
        rule["required"] = required
        if fix:
            rule["from"].append("ORC-2.1")
        with open(path, "w") as f:
            json.dump(doc, f, indent=2)
        # mtime resolution: make sure the change is visible as a change
        t = time.time() + 2
        os.utime(path, (t, t))

    def wait_for_log(self, text, timeout=30, times=1):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.gw.read_log().count(text) >= times:
                return True
            time.sleep(0.2)
        return False

    def test_mapping_failure_is_ae_naming_the_field_and_stored_failed(self):
        seg = segments(mllp_exchange(self.gw.mllp_port, order("MAP-1")))
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertTrue(seg["ERR"][3].startswith("101^"), seg["ERR"])
        self.assertTrue(seg["ERR"][2].startswith("ORC^1^3"), seg["ERR"])
        row = h.psql(self.db, "SELECT status, error_location FROM hl7_messages WHERE control_id='MAP-1'")[0]
        self.assertEqual(row[0], "failed")
        self.assertTrue(row[1].startswith("ORC^1^3"), row)

    def test_valid_change_takes_effect_and_broken_set_is_refused(self):
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, order("RL-1")))["MSA"][1], "AE")

        # A broken file: refused whole, the running set keeps serving.
        self.edit_orders("sometimes")  # not a boolean
        self.assertTrue(self.wait_for_log("refused (errors above)"), self.gw.read_log()[-2000:])
        # The loader's problem is a log line, in the log's format.
        self.assertRegex(self.gw.read_log(), r'level=error component=main msg="mapping: [^"]*orders.json:\d+: '
                                             r'fields/scan.accession_number/required: expected true or false"')
        status, _, metrics = self.gw.get("/metrics")
        self.assertIn("medgate_mapping_refused_pending 1\n", metrics)
        # `config check` says so too (the unit runs it before a start,
        # which would fail with this folder).
        env = {"MEDGATE_PATHS_MAPPINGS": self.maps}
        check = h.run_medgate("config", "check", self.gw.config_path, env=env)
        self.assertEqual(check.returncode, 1, check.stdout)
        self.assertIn("orders.json:", check.stderr)
        self.assertIn("the mapping files in %s have errors" % self.maps, check.stderr)
        # The same errors at the next retries are not logged again.
        time.sleep(6)
        self.assertEqual(self.gw.read_log().count("fields/scan.accession_number/required"), 1)
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, order("RL-2")))["MSA"][1], "AE")
        adt = mllp_exchange(self.gw.mllp_port, order("RL-3").replace(b"ORM^O01^ORM_O01", b"ADT^A01^ADT_A01")
                            .replace(b"ORC|NW|PL1^RIS\r", b"PV1|1|O\r"))
        self.assertEqual(segments(adt)["MSA"][1], "AA")

        # A valid change: the accession is read from ORC-2 as a last resort.
        self.edit_orders(fix=True)
        self.assertTrue(self.wait_for_log("mapping files reloaded"), self.gw.read_log()[-2000:])
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, order("RL-4")))["MSA"][1], "AA")
        self.assertIsNone(self.gw.proc.poll())
        self.assertIn("medgate_mapping_refused_pending 0\n", self.gw.get("/metrics")[2])

    def test_the_log_names_the_routes_in_service_and_those_gone(self):
        # A deleted route file showed only as AR 200 on every message it
        # used to take: the log said "mapping files reloaded" and no more.
        self.assertIn("mapping files in %s loaded, 3 routes: adt, orders, results" % self.maps,
                      self.gw.read_log())
        os.remove(os.path.join(self.maps, "orders.json"))
        self.assertTrue(self.wait_for_log("mapping files reloaded, 2 routes: adt, results; gone: orders"),
                        self.gw.read_log()[-2000:])

    def test_a_folder_back_to_the_set_in_service_clears_the_refusal(self):
        # A broken file is added, then removed again: the folder is the set
        # in service once more, so the alarm must not stay on.
        broken = os.path.join(self.maps, "zz-broken.json")
        with open(broken, "w") as f:
            f.write('{"route": "zz", "adapter": "hl7v2.adt", "fields": {,}}')
        self.assertTrue(self.wait_for_log("refused (errors above)"), self.gw.read_log()[-2000:])
        self.assertIn("medgate_mapping_refused_pending 1\n", self.gw.get("/metrics")[2])
        os.remove(broken)
        self.assertTrue(self.wait_for_log("are the set in service again"), self.gw.read_log()[-2000:])
        self.assertIn("medgate_mapping_refused_pending 0\n", self.gw.get("/metrics")[2])
        self.assertNotIn("mapping files reloaded", self.gw.read_log())

    def test_replay_after_the_mapping_is_fixed(self):
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, order("RP-1")))["MSA"][1], "AE")
        self.edit_orders(fix=True)
        env = {"MEDGATE_DATABASE_URL": h.conninfo(self.db), "MEDGATE_PATHS_MAPPINGS": self.maps}

        dry = h.run_medgate("replay", "--failed", "--dry-run", "--diff", env=env)
        self.assertEqual(dry.returncode, 0, dry.stderr)
        self.assertIn("RP-1: failed -> received", dry.stdout)
        self.assertIn("  - status: failed", dry.stdout)
        self.assertIn("  - error: ", dry.stdout)
        self.assertIn("  + status: received", dry.stdout)
        self.assertEqual(h.scalar(self.db, "SELECT status FROM hl7_messages WHERE control_id='RP-1'"), "failed")

        real = h.run_medgate("replay", "--failed", env=env)
        self.assertEqual(real.returncode, 0, real.stderr)
        self.assertIn("1 now accepted", real.stdout)
        self.assertEqual(h.psql(self.db, "SELECT status, error IS NULL FROM hl7_messages WHERE control_id='RP-1'"),
                         [["received", "t"]])
        logs = h.psql(self.db, "SELECT status, error FROM sync_logs WHERE external_id='RP-1' ORDER BY id")
        self.assertEqual([row[0] for row in logs], ["failed", "processed"])
        self.assertEqual(logs[1][1], "replayed: accepted")
        # The replay ran the order adapter: the scan and its patient exist.
        self.assertEqual(h.psql(self.db, "SELECT s.accession_number, p.medical_record_number FROM scans s "
                                         "JOIN patients p ON p.id = s.patient_id"), [["PL1", "555"]])
        again = h.run_medgate("replay", "--failed", env=env)
        self.assertIn("replayed 0 message(s)", again.stdout)
        # The sender resends the same bytes: the message is accepted now,
        # so the answer is AA (it was the AE it got before the replay).
        seg = segments(mllp_exchange(self.gw.mllp_port, order("RP-1")))
        self.assertEqual(seg["MSA"][1:3], ["AA", "RP-1"])
        self.assertEqual(h.psql(self.db, "SELECT status, ack_code FROM hl7_messages WHERE control_id='RP-1'"),
                         [["received", "AA"]])

    def test_replay_of_a_duplicate_row_or_an_unknown_id_says_why_not(self):
        # A control id reused with another payload (AE 205) is stored as a
        # duplicate row; --id on it printed only "0 message(s)", exit 1, as
        # for an id that does not exist.
        adt = order("DU-1").replace(b"ORM^O01^ORM_O01", b"ADT^A01^ADT_A01").replace(
            b"ORC|NW|PL1^RIS\r", b"PV1|1|O\r")
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, adt))["MSA"][1], "AA")
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, adt.replace(b"PV1|1|O", b"PV1|1|I")))
                         ["MSA"][1], "AE")
        dup = h.scalar(self.db, "SELECT id FROM hl7_messages WHERE status = 'duplicate'")
        env = {"MEDGATE_DATABASE_URL": h.conninfo(self.db), "MEDGATE_PATHS_MAPPINGS": self.maps}
        r = h.run_medgate("replay", "--id", dup, env=env)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("is a duplicate row: its control id (MSH-10) was an earlier message's", r.stderr)
        r = h.run_medgate("replay", "--id", "00000000-0000-4000-8000-000000000099", env=env)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("no inbound message has id 00000000-0000-4000-8000-000000000099", r.stderr)

    def test_replay_diff_shows_what_the_new_mapping_changes_in_the_records(self):
        self.edit_orders(fix=True)
        self.assertTrue(self.wait_for_log("mapping files reloaded"), self.gw.read_log()[-2000:])
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, order("RD-1")))["MSA"][1], "AA")
        # A mapping change that gives accepted orders another value.
        path = os.path.join(self.maps, "orders.json")
        with open(path) as f:
            doc = json.load(f)
        doc["fields"]["scan.clinical_indication"] = {"const": "Chest pain"}
        with open(path, "w") as f:
            json.dump(doc, f, indent=2)
        env = {"MEDGATE_DATABASE_URL": h.conninfo(self.db), "MEDGATE_PATHS_MAPPINGS": self.maps}

        dry = h.run_medgate("replay", "--all", "--dry-run", "--diff", env=env)
        self.assertEqual(dry.returncode, 0, dry.stderr)
        self.assertIn("RD-1: received, its records would change:", dry.stdout)
        self.assertIn("  ~ scans[PL1].clinical_indication: null -> Chest pain\n", dry.stdout)
        self.assertNotIn("scans[PL1].accession_number", dry.stdout)  # unchanged columns are not listed
        self.assertIn("1 unchanged, 0 superseded, 0 errors; 1 written again", dry.stdout)
        self.assertEqual(h.scalar(self.db, "SELECT clinical_indication IS NULL FROM scans"), "t")

        real = h.run_medgate("replay", "--all", env=env)
        self.assertEqual(real.returncode, 0, real.stderr)
        self.assertEqual(h.scalar(self.db, "SELECT clinical_indication FROM scans"), "Chest pain")

    def replay_env(self):
        return {"MEDGATE_DATABASE_URL": h.conninfo(self.db), "MEDGATE_PATHS_MAPPINGS": self.maps}

    def dry_diff(self, which="--failed"):
        """What `replay <which> --dry-run --diff` prints (it must succeed)."""
        dry = h.run_medgate("replay", which, "--dry-run", "--diff", env=self.replay_env())
        self.assertEqual(dry.returncode, 0, dry.stderr)
        return dry.stdout

    def test_replay_diff_shows_the_patient_found_by_another_identifier(self):
        adt = ("MSH|^~\\&|RIS|RAD|MEDGATE|HOSP|20240101120000||ADT^A01^ADT_A01|PI-1|P|2.5.1\r"
               "PID|1||PAT7^^^HOSP^MR~777^^^USSSA^SS||Roe^Richard||19700101|M\r"
               "PV1|1|O\r").encode()
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, adt))["MSA"][1], "AA")
        # An order naming the patient by SSN only, with another first name;
        # it fails under the running mapping (no accession).
        by_ssn = order("PI-2").replace(b"555^^^HOSP^MR||Roe^Richard", b"777^^^USSSA^SS||Roe^Rick")
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, by_ssn))["MSA"][1], "AE")
        self.edit_orders(fix=True)

        out = self.dry_diff()
        # The adapter updates PAT7 (matched by the SSN): the diff says so.
        self.assertIn("  ~ patients[PAT7].first_name: Richard -> Rick\n", out)
        self.assertNotIn("patients[777]", out)
        self.assertEqual(h.scalar(self.db, "SELECT first_name FROM patients"), "Richard")

    def test_replay_diff_shows_a_scan_found_by_its_uid_as_changed(self):
        def result(cid, obr):
            return ("MSH|^~\\&|RIS|RAD|MEDGATE|HOSP|20240102100000||ORU^R01^ORU_R01|%s|P|2.5.1\r"
                    "PID|1||555^^^HOSP^MR||Roe^Richard||19700101|M\r"
                    "OBR|1|||71046^XR CHEST 2 VIEWS^CPT4|||20240102090000|||||||||||%s||||"
                    "20240102095900|||F\r"
                    "OBX|1|TX|59776-5^Findings^LN||Clear.||||||F\r"
                    "OBX|2|ST|113014^DICOM Study^DCM||1.2.3.77||||||F\r" % (cid, obr)).encode()
        # A result naming only its study UID makes a scan without accession.
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, result("UD-1", "")))["MSA"][1], "AA")
        path = os.path.join(self.maps, "results.json")
        with open(path) as f:
            shipped = f.read()
        doc = json.loads(shipped)
        doc["fields"]["report.report_status"] = {"from": "ZZZ-1", "required": True}
        with open(path, "w") as f:
            json.dump(doc, f)
        self.assertTrue(self.wait_for_log("mapping files reloaded"), self.gw.read_log()[-2000:])
        # The next version names the accession too, and fails.
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, result("UD-2", "ACC77")))["MSA"][1], "AE")
        with open(path, "w") as f:
            f.write(shipped)

        out = self.dry_diff()
        self.assertIn("  ~ scans[ACC77].accession_number: null -> ACC77\n", out)
        self.assertNotIn("  + scans[", out)
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM scans WHERE accession_number IS NULL"), "1")

    def test_replay_accepts_a_rejected_sender_once_it_is_configured(self):
        """A message rejected for an unknown sender is stored without an
        organization. Replayed after the sender is added, it must be
        written for the sender's organization (it failed SQLSTATE 22P02)."""
        self.edit_orders(fix=True)
        self.assertTrue(self.wait_for_log("mapping files reloaded"), self.gw.read_log()[-2000:])
        port = h.free_port()
        only_rad = {"name": "strict", "port": port, "senders": [
            {"application": "RIS", "facility": "RAD", "organization_id": h.DEMO_ORG}]}
        gw = h.Gateway(self.db, config={"paths": {"mappings": self.maps},
                                        "mllp": {"listeners": [only_rad]}}).start()
        try:
            other = order("RS-1").replace(b"|RIS|RAD|", b"|RIS|OTHER|")
            self.assertEqual(segments(mllp_exchange(port, other))["MSA"][1], "AR")
        finally:
            gw.stop()
        self.assertEqual(h.psql(self.db, "SELECT status, organization_id IS NULL FROM hl7_messages "
                                "WHERE control_id = 'RS-1'"), [["rejected", "t"]])
        conf = dict(gw.conf)
        conf["mllp"] = {"listeners": [dict(only_rad, senders=only_rad["senders"] + [
            {"application": "RIS", "facility": "OTHER", "organization_id": h.DEMO_ORG}])]}
        path = os.path.join(tempfile.mkdtemp(), "replay.json")
        with open(path, "w") as f:
            json.dump(conf, f)
        real = h.run_medgate("replay", "--config", path, "--all")
        self.assertEqual(real.returncode, 0, real.stdout + real.stderr)
        self.assertIn("RS-1: rejected -> received", real.stdout)
        self.assertEqual(h.psql(self.db, "SELECT m.status, m.organization_id, s.organization_id FROM hl7_messages m, "
                                "scans s WHERE m.control_id = 'RS-1' AND s.accession_number = 'PL1'"),
                         [["received", h.DEMO_ORG, h.DEMO_ORG]])

    def test_replay_takes_the_latest_of_two_failed_messages_with_one_control_id(self):
        # The sender resends RP-7 with a corrected name; both fail today.
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, order("RP-7")))["MSA"][1], "AE")
        corrected = order("RP-7").replace(b"Roe^Richard", b"Roe^Rick")
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, corrected))["MSA"][1], "AE")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM hl7_messages WHERE control_id='RP-7'"
                                           " AND status='failed'"), "2")
        self.edit_orders(fix=True)
        env = {"MEDGATE_DATABASE_URL": h.conninfo(self.db), "MEDGATE_PATHS_MAPPINGS": self.maps}
        real = h.run_medgate("replay", "--failed", env=env)
        self.assertEqual(real.returncode, 0, real.stderr)
        self.assertIn("1 now accepted", real.stdout)
        self.assertIn("1 superseded", real.stdout)
        self.assertIn("only the latest is replayed", real.stdout)
        # The correction is the one accepted; the first transmission stays failed.
        self.assertEqual(h.psql(self.db, "SELECT status, position('Rick' in convert_from(raw, 'UTF8')) > 0"
                                         " FROM hl7_messages WHERE control_id='RP-7' ORDER BY received_at"),
                         [["failed", "f"], ["received", "t"]])
        self.assertEqual(h.scalar(self.db, "SELECT first_name FROM patients"), "Rick")

    def test_replay_of_a_message_whose_correction_was_accepted_is_superseded(self):
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, order("RP-8")))["MSA"][1], "AE")
        self.edit_orders(fix=True)
        self.assertTrue(self.wait_for_log("mapping files reloaded"))
        corrected = order("RP-8").replace(b"Roe^Richard", b"Roe^Rick")
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, corrected))["MSA"][1], "AA")
        env = {"MEDGATE_DATABASE_URL": h.conninfo(self.db), "MEDGATE_PATHS_MAPPINGS": self.maps}
        real = h.run_medgate("replay", "--failed", env=env)
        self.assertEqual(real.returncode, 0, real.stderr)
        self.assertIn("replayed 0 message(s): 0 now accepted, 0 failed or rejected, 0 unchanged,"
                      " 1 superseded, 0 errors; 0 written again", real.stdout)
        self.assertEqual(h.psql(self.db, "SELECT status FROM hl7_messages WHERE control_id='RP-8'"
                                         " ORDER BY received_at"), [["failed"], ["received"]])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM scans"), "1")

    def test_replay_all_takes_the_latest_of_two_rejected_messages(self):
        # No route for orders yet: both transmissions of RR-1 are AR 200.
        path = os.path.join(self.maps, "orders.json")
        shutil.move(path, path + ".off")
        self.assertTrue(self.wait_for_log("mapping files reloaded"))
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, order("RR-1")))["MSA"][1], "AR")
        corrected = order("RR-1").replace(b"Roe^Richard", b"Roe^Rick")
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, corrected))["MSA"][1], "AR")
        shutil.move(path + ".off", path)
        self.edit_orders(fix=True)
        env = {"MEDGATE_DATABASE_URL": h.conninfo(self.db), "MEDGATE_PATHS_MAPPINGS": self.maps}
        real = h.run_medgate("replay", "--all", env=env)
        self.assertEqual(real.returncode, 0, real.stderr)
        self.assertIn("1 superseded", real.stdout)
        self.assertEqual(h.psql(self.db, "SELECT status, position('Rick' in convert_from(raw, 'UTF8')) > 0"
                                         " FROM hl7_messages WHERE control_id='RR-1' ORDER BY received_at"),
                         [["rejected", "f"], ["received", "t"]])
        self.assertEqual(h.scalar(self.db, "SELECT first_name FROM patients"), "Rick")
        # Superseded rows do not come back in every later run.
        again = h.run_medgate("replay", "--all", "--limit", "1", env=env)
        self.assertIn("replayed 1 message(s)", again.stdout)
        self.assertIn("1 unchanged", again.stdout)

    def test_repeat_of_an_accepted_message_keeps_its_ack_after_a_mapping_change(self):
        original = os.path.join(self.maps, "orders.json.orig")
        shutil.copy(os.path.join(self.maps, "orders.json"), original)
        self.edit_orders(fix=True)
        self.assertTrue(self.wait_for_log("mapping files reloaded"))
        first = mllp_exchange(self.gw.mllp_port, order("RA-1"))
        self.assertEqual(segments(first)["MSA"][1], "AA")

        os.replace(original, os.path.join(self.maps, "orders.json"))  # the accession rule without ORC-2
        t = time.time() + 4
        os.utime(os.path.join(self.maps, "orders.json"), (t, t))
        self.assertTrue(self.wait_for_log("mapping files reloaded", times=2))
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, order("RA-2")))["MSA"][1], "AE")

        # Today the same bytes would fail mapping, but they were accepted
        # once: the original AA again, nothing stored twice.
        self.assertEqual(mllp_exchange(self.gw.mllp_port, order("RA-1")), first)
        self.assertEqual(h.psql(self.db, "SELECT status FROM hl7_messages WHERE control_id='RA-1'"),
                         [["received"]])
        self.assertEqual(h.psql(self.db, "SELECT status FROM sync_logs WHERE external_id='RA-1' ORDER BY id"),
                         [["committed"], ["duplicate"]])
        # A different payload under that control id is a duplicate key.
        seg = segments(mllp_exchange(self.gw.mllp_port, order("RA-1").replace(b"Roe^Richard", b"Roe^Rick")))
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertTrue(seg["ERR"][3].startswith("205^"), seg["ERR"])

    def test_sighup_reloads(self):
        self.edit_orders(fix=True)
        self.gw.proc.send_signal(signal.SIGHUP)
        self.assertTrue(self.wait_for_log("mapping files reloaded"))
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, order("HUP-1")))["MSA"][1], "AA")


    def test_a_route_never_hands_its_adapter_a_type_it_does_not_take(self):
        # A site route for one facility without a message_type list: it
        # outranks the shipped routes for everything from that facility.
        # Its ADT adapter cannot write a report, so an ORU it matches is
        # refused (AR 200 naming the route), not answered AA and dropped.
        with open(os.path.join(self.maps, "adt-site-x.json"), "w") as f:
            json.dump({"route": "adt-site-x", "match": {"sending_facility": "XRAD"},
                       "adapter": "hl7v2.adt",
                       "fields": {"patient.medical_record_number": {"from": "PID-3.1", "required": True}}}, f)
        self.gw.proc.send_signal(signal.SIGHUP)
        self.assertTrue(self.wait_for_log("mapping files reloaded"))
        oru = ("MSH|^~\\&|RIS|XRAD|MEDGATE|HOSP|20240101120000||ORU^R01^ORU_R01|XR-1|P|2.5.1\r"
               "PID|1||555^^^HOSP^MR||Roe^Richard\r"
               "OBR|1||FX1|71046^XR CHEST^CPT4|||||||||||||||ACCX||||||F\r"
               "OBX|1|TX|59776-5^Findings^LN||Lungs are clear.||||||F\r").encode()
        seg = segments(mllp_exchange(self.gw.mllp_port, oru))
        self.assertEqual(seg["MSA"][1], "AR")
        self.assertTrue(seg["ERR"][3].startswith("200^"), seg["ERR"])
        self.assertIn("adt-site-x", seg["ERR"][8])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients"), "0")
        # What the route is for still goes through it.
        adt = ("MSH|^~\\&|RIS|XRAD|MEDGATE|HOSP|20240101120000||ADT^A01^ADT_A01|XR-2|P|2.5.1\r"
               "PID|1||556^^^HOSP^MR||Roe^Rita\r").encode()
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, adt))["MSA"][1], "AA")

    def test_a_route_for_a_listener_not_configured_is_named(self):
        # A typo in a route's listener leaves the route unused, so its
        # senders' messages silently go through the base route: the load
        # and `config check` say so (a warning: the set still loads).
        with open(os.path.join(self.maps, "adt-east.json"), "w") as f:
            json.dump({"route": "adt-east", "extends": "adt", "match": {"listener": "ris-esat"},
                       "fields": {"patient.medical_record_number": {"from": "PID-2.1", "required": True}}}, f)
        self.gw.proc.send_signal(signal.SIGHUP)
        self.assertTrue(self.wait_for_log("mapping files reloaded"))
        self.assertIn('route adt-east matches listener \\"ris-esat\\", which is not configured',
                      self.gw.read_log())
        check = h.run_medgate("config", "check", self.gw.config_path,
                              env={"MEDGATE_PATHS_MAPPINGS": self.maps})
        self.assertEqual(check.returncode, 0, check.stderr)
        self.assertIn('warning: %s/adt-east.json: route adt-east matches listener "ris-esat", '
                      'which is not configured' % self.maps, check.stderr)

    def test_a_value_postgresql_cannot_read_is_ae_102_without_a_location(self):
        # A site's route that sends PID-7 to the date column without the
        # hl7_date transform: PostgreSQL refuses "1980XX01" (SQLSTATE class
        # 22), which names no column, so ERR-2 is empty.
        path = os.path.join(self.maps, "adt.json")
        with open(path) as f:
            doc = json.load(f)
        del doc["fields"]["patient.date_of_birth"]["transform"]
        with open(path, "w") as f:
            json.dump(doc, f)
        self.gw.proc.send_signal(signal.SIGHUP)
        self.assertTrue(self.wait_for_log("mapping files reloaded"))
        adt = ("MSH|^~\\&|RIS|RAD|MEDGATE|HOSP|20240101120000||ADT^A01^ADT_A01|DOB-1|P|2.5.1\r"
               "PID|1||557^^^HOSP^MR||Roe^Rita||1980XX01|F\r").encode()
        seg = segments(mllp_exchange(self.gw.mllp_port, adt))
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertTrue(seg["ERR"][3].startswith("102^"), seg["ERR"])
        self.assertEqual(seg["ERR"][2], "")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients"), "0")

    def test_sighup_without_a_configuration_file_reloads_the_mappings(self):
        # A gateway configured from the environment alone (no --config):
        # SIGHUP still reloads the mappings and rechecks the database.
        port = h.free_port()
        env = dict(os.environ, MEDGATE_DATABASE_URL=h.conninfo(self.db),
                   MEDGATE_HTTP_PORT=str(port), MEDGATE_PATHS_MAPPINGS=self.maps)
        log = tempfile.NamedTemporaryFile(prefix="medgate-env-", suffix=".log", delete=False)
        proc = subprocess.Popen([h.BIN, "serve"], stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            def said(text):
                with open(log.name, "rb") as f:
                    return text in f.read().decode("utf-8", "replace")
            deadline = time.time() + 30
            while time.time() < deadline and not said("listening"):
                time.sleep(0.1)
            proc.send_signal(signal.SIGHUP)
            while time.time() < deadline and not said("SIGHUP: mapping files reloaded"):
                time.sleep(0.1)
            self.assertTrue(said("SIGHUP: mapping files reloaded"))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            os.unlink(log.name)


class ReplayOfAcceptedOrdersTest(unittest.TestCase):
    """Replay of a message accepted before writes its values again, not the
    events it caused: later messages may have moved the order on."""

    def setUp(self):
        self.db = h.create_database("replayev")
        h.migrate(self.db)
        self.maps = tempfile.mkdtemp(prefix="medgate-maps-")
        shutil.copytree(os.path.join(h.SOURCE_DIR, "mappings"), self.maps, dirs_exist_ok=True)
        MappingReloadTest.edit_orders(self, fix=True)  # accession from ORC-2.1
        self.gw = h.Gateway(self.db, config={"paths": {"mappings": self.maps}}).start()
        self.env = {"MEDGATE_DATABASE_URL": h.conninfo(self.db), "MEDGATE_PATHS_MAPPINGS": self.maps}

    def tearDown(self):
        self.gw.stop()

    def send(self, cid, control):
        m = order(cid).replace(b"ORC|NW|", ("ORC|%s|" % control).encode())
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, m))["MSA"][1], "AA", cid)

    def worklist(self):
        return h.psql(self.db, "SELECT s.status, (SELECT string_agg(q.status, ',' ORDER BY q.created_at)"
                               " FROM scan_queue q WHERE q.scan_id = s.id) FROM scans s")

    def test_an_old_new_order_does_not_reopen_an_order_cancelled_since(self):
        self.send("EV-1", "NW")
        self.send("EV-2", "CA")
        self.assertEqual(self.worklist(), [["cancelled", "cancelled"]])
        # A cautious first run that takes only the oldest message, the NW.
        first = h.run_medgate("replay", "--all", "--limit", "1", env=self.env)
        self.assertEqual(first.returncode, 0, first.stderr)
        self.assertEqual(self.worklist(), [["cancelled", "cancelled"]])
        # It says where the next run starts, and that run takes the CA.
        self.assertIn("stopped at --limit 1", first.stdout)
        since = first.stdout.split("run again with --since '")[1].split("'")[0]
        rest = h.run_medgate("replay", "--all", "--since", since, env=self.env)
        self.assertEqual(rest.returncode, 0, rest.stderr)
        self.assertIn("replayed 1 message(s)", rest.stdout)
        self.assertEqual(self.worklist(), [["cancelled", "cancelled"]])

    def test_an_old_cancel_does_not_cancel_an_order_placed_again_since(self):
        self.send("EV-3", "NW")
        self.send("EV-4", "CA")
        self.send("EV-5", "NW")  # ordered again: a new worklist entry
        self.assertEqual(self.worklist(), [["ordered", "cancelled,waiting"]])
        cancel = h.scalar(self.db, "SELECT id FROM hl7_messages WHERE control_id = 'EV-4'")
        r = h.run_medgate("replay", "--id", cancel, env=self.env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("1 written again", r.stdout)
        self.assertEqual(self.worklist(), [["ordered", "cancelled,waiting"]])

    def test_exit_code_says_whether_messages_still_fail(self):
        self.send("EV-6", "NW")
        missing = order("EV-7").replace(b"ORC|NW|PL1^RIS", b"ORC|NW|")  # no accession anywhere
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, missing))["MSA"][1], "AE")
        r = h.run_medgate("replay", "--failed", env=self.env)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("1 unchanged", r.stdout)
        r = h.run_medgate("replay", "--id", "00000000-0000-4000-8000-000000000000", env=self.env)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("replayed 0 message(s)", r.stdout)
        r = h.run_medgate("replay", "--all", env=self.env)  # EV-6 accepted, EV-7 still failing
        self.assertEqual(r.returncode, 1, r.stdout)
        ok = h.run_medgate("replay", "--id", h.scalar(self.db, "SELECT id FROM hl7_messages WHERE control_id = 'EV-6'"),
                           env=self.env)
        self.assertEqual(ok.returncode, 0, ok.stdout)
        for bad in (["--id", "not-a-uuid"], ["--all", "--since", "yesterday-ish"]):
            r = h.run_medgate("replay", *bad, env=self.env)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("--id must be a UUID and --since a time", r.stderr)
        down = h.run_medgate("replay", "--all", env={"MEDGATE_DATABASE_URL": "host=/nonexistent dbname=x",
                                                     "MEDGATE_PATHS_MAPPINGS": self.maps})
        self.assertEqual(down.returncode, 3, down.stderr)


class ReplayWithoutConfigTest(unittest.TestCase):
    """Without --config, a message's listener is unknown: its bytes are read
    in the character set stored with it, not as ASCII."""

    def setUp(self):
        self.db = h.create_database("replaycs")
        h.migrate(self.db)
        self.gw = h.Gateway(self.db, config={"mllp": {"listeners": [{
            "name": "latin", "port": h.free_port(),
            "senders": [{"application": "RIS", "facility": "RAD", "organization_id": h.DEMO_ORG,
                         "charset": "8859/1"}]}]}}).start()

    def tearDown(self):
        self.gw.stop()

    def test_a_latin1_message_stays_accepted(self):
        port = self.gw.conf["mllp"]["listeners"][0]["port"]
        latin1 = ("MSH|^~\\&|RIS|RAD|MEDGATE|HOSP|20240101120000||ADT^A01^ADT_A01|LT-1|P|2.5.1\r"
                  "EVN|A01|20240101120000\rPID|1||LT1^^^HOSP^MR||Müller^Jürgen||19800101|M\rPV1|1|O\r")
        self.assertEqual(segments(mllp_exchange(port, latin1.encode("latin-1")))["MSA"][1], "AA")
        r = h.run_medgate("replay", "--all", env={"MEDGATE_DATABASE_URL": h.conninfo(self.db)})
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("listener latin is not in the configuration", r.stderr)
        self.assertIn("1 unchanged", r.stdout)
        self.assertEqual(h.psql(self.db, "SELECT m.status, p.last_name FROM hl7_messages m, patients p"),
                         [["received", "Müller"]])


if __name__ == "__main__":
    h.main()
