"""Adapters: what an accepted message writes into the internal tables.
Built so far: the patient adapter (patients + patient_identifiers, matched
by medical record number within the organization; "" clears a column,
an empty field leaves it)."""
import json
import os
import shutil
import tempfile
import unittest

import harness as h
from test_mllp import mllp_exchange, segments

ADT = ("MSH|^~\\&|RIS|RAD|MEDGATE|HOSP|20240101120000||ADT^{ev}^ADT_A01|{cid}|P|2.5.1\r"
       "EVN|{ev}|20240101120000\r"
       "PID|1||{mrn}^^^HOSP^MR~{ssn}^^^USSSA^SS||{name}||{dob}|{sex}|||||{phone}\r"
       "PV1|1|O\r")


def adt(cid, ev="A01", mrn="MRN1", ssn="111", name="Doe^Jane", dob="19800102", sex="F",
        phone="555-0100"):
    return ADT.format(cid=cid, ev=ev, mrn=mrn, ssn=ssn, name=name, dob=dob, sex=sex,
                      phone=phone).encode()


class PatientAdapterTest(unittest.TestCase):
    def setUp(self):
        self.db = h.create_database("adapt")
        h.migrate(self.db)
        self.gw = h.Gateway(self.db).start()

    def tearDown(self):
        self.gw.stop()

    def send(self, payload):
        return segments(mllp_exchange(self.gw.mllp_port, payload))["MSA"][1]

    def patient(self, mrn):
        return h.psql(self.db, "SELECT last_name, first_name, date_of_birth, gender, "
                      "coalesce(phone, '-'), source FROM patients WHERE medical_record_number = :'p1'", mrn)

    def test_admit_creates_patient_and_identifiers(self):
        self.assertEqual(self.send(adt("P-1")), "AA")
        self.assertEqual(self.patient("MRN1"), [["Doe", "Jane", "1980-01-02", "female", "555-0100", "hl7v2"]])
        ids = h.psql(self.db, "SELECT system, value, coalesce(type_code, '-') FROM patient_identifiers "
                     "ORDER BY value")
        self.assertEqual(ids, [["USSSA", "111", "SS"], ["HOSP", "MRN1", "MR"]])

    def test_update_changes_clears_and_keeps(self):
        self.assertEqual(self.send(adt("P-2")), "AA")
        # A08: new family name, phone explicitly cleared (""), DOB left empty (keep).
        self.assertEqual(self.send(adt("P-3", ev="A08", name="Smith^Jane", dob="", phone='""')), "AA")
        self.assertEqual(self.patient("MRN1"), [["Smith", "Jane", "1980-01-02", "female", "-", "hl7v2"]])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients"), "1")

    def test_corpus_admit_fields(self):
        # ADT01-23.hl7: PID|1||10006579^^^1^MR^1||DUCK^DONALD^D||19241010|M
        path = os.path.join(h.TESTDATA, "hl7v2", "fhir-converter", "ADT01-23.hl7")
        r = h.run_medgate("send", "--port", str(self.gw.mllp_port), "--quiet", path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(h.psql(self.db, "SELECT last_name, first_name, middle_name, date_of_birth, gender "
                                "FROM patients WHERE medical_record_number = '10006579'"),
                         [["DUCK", "DONALD", "D", "1924-10-10", "male"]])


def obr():
    f = [""] * 25
    f[0], f[1], f[2], f[3] = "OBR", "1", "PL9^RIS", "FL9^RIS"
    f[4] = "71046^XR CHEST 2 VIEWS^CPT4"
    f[7] = "20240101120000"
    f[18] = "ACC9"      # OBR-18: accession (IHE placer field 1)
    f[24] = "CR"        # OBR-24: modality
    return "|".join(f)


ORM = ("MSH|^~\\&|RIS|RAD|MEDGATE|HOSP|20240101120000||ORM^O01^ORM_O01|{cid}|P|2.5.1\r"
       "PID|1||MRN9^^^HOSP^MR||Roe^Richard||19700101|M\r"
       "ORC|{ctl}|PL9^RIS|FL9^RIS||||^^^20240102083000^^S\r" + obr() + "\r")


class OrderAdapterTest(unittest.TestCase):
    def setUp(self):
        self.db = h.create_database("orders")
        h.migrate(self.db)
        self.gw = h.Gateway(self.db).start()

    def tearDown(self):
        self.gw.stop()

    def test_ihe_order_with_zds_creates_scan_and_worklist_entry(self):
        # dcm4che ORM_O01-GeneralOrder.hl7 (an OMI^O23): OBR-18 AccessionNumber,
        # ZDS-1.1 the study UID, OBR-4 10637-7^...^LN, modality CT, PID-3 PID_1.
        path = os.path.join(h.TESTDATA, "hl7v2", "dcm4che", "ORM_O01-GeneralOrder.hl7")
        r = h.run_medgate("send", "--port", str(self.gw.mllp_port), "--quiet", path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        rows = h.psql(self.db, "SELECT s.accession_number, s.study_instance_uid, s.procedure_code, "
                      "s.scan_type, s.priority, s.status, p.medical_record_number, q.status "
                      "FROM scans s JOIN patients p ON p.id = s.patient_id "
                      "JOIN scan_queue q ON q.scan_id = s.id")
        self.assertEqual(rows, [["AccessionNumber", "1.2.392.200036.9125.0.198811291108.7", "10637-7",
                                 "CT", "routine", "ordered", "PID_1", "waiting"]])

    def test_new_order_then_cancel(self):
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, ORM.format(cid="O-1", ctl="NW").encode()))["MSA"][1], "AA")
        self.assertEqual(h.psql(self.db, "SELECT accession_number, procedure_code, scan_type, priority, status, "
                                "placer_order_number, filler_order_number FROM scans"),
                         [["ACC9", "71046", "CR", "stat", "ordered", "PL9", "FL9"]])
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, ORM.format(cid="O-2", ctl="CA").encode()))["MSA"][1], "AA")
        self.assertEqual(h.psql(self.db, "SELECT s.status, q.status FROM scans s JOIN scan_queue q ON q.scan_id = s.id"),
                         [["cancelled", "cancelled"]])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM scans"), "1")


class RefusedRowsTest(unittest.TestCase):
    """A mapped value the database refuses: stored as failed, answered AE,
    never left without an answer, and its neighbours unaffected."""

    def setUp(self):
        self.db = h.create_database("refuse")
        h.migrate(self.db)
        self.maps = tempfile.mkdtemp(prefix="medgate-maps-")
        shutil.copytree(os.path.join(h.SOURCE_DIR, "mappings"), self.maps, dirs_exist_ok=True)
        path = os.path.join(self.maps, "adt.json")
        with open(path) as f:
            doc = json.load(f)
        doc["fields"]["patient.gender"] = {"from": "PID-8"}  # no table: raw codes
        with open(path, "w") as f:
            json.dump(doc, f, indent=2)
        self.gw = h.Gateway(self.db, config={"paths": {"mappings": self.maps}}).start()

    def tearDown(self):
        self.gw.stop()

    def test_constraint_violation_is_ae_and_stored_failed(self):
        seg = segments(mllp_exchange(self.gw.mllp_port, adt("RF-1", sex="Q")))
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertIn("could not be written", "|".join(seg["ERR"]))
        row = h.psql(self.db, "SELECT status, error FROM hl7_messages WHERE control_id='RF-1'")[0]
        self.assertEqual(row[0], "failed")
        self.assertIn("SQLSTATE 23514", row[1])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients"), "0")
        seg = segments(mllp_exchange(self.gw.mllp_port, adt("RF-2", sex="female", mrn="MRN2")))
        self.assertEqual(seg["MSA"][1], "AA")


if __name__ == "__main__":
    h.main()
