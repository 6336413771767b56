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
