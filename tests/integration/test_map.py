"""`medgate map --dry-run`: what a message would become, without a database."""
import json
import os
import shutil
import tempfile
import unittest

import harness as h


class DryRunTest(unittest.TestCase):
    def test_order_shows_targets_route_and_unused_fields(self):
        path = os.path.join(h.TESTDATA, "hl7v2", "dcm4che", "ORM_O01-GeneralOrder.hl7")
        r = h.run_medgate("map", "--dry-run", path,
                          env={"MEDGATE_DATABASE_URL": "host=/nonexistent dbname=none"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("route: orders", r.stdout)
        # Facts read from the file itself: ZDS-1.1 and OBR-4.
        self.assertIn('scan.study_instance_uid = "1.2.392.200036.9125.0.198811291108.7"', r.stdout)
        self.assertIn('scan.procedure_code = "10637-7"', r.stdout)
        self.assertIn("unused fields", r.stdout)
        self.assertIn("OBX-5", r.stdout)
        # The FHIR resources those rows would be sent as.
        fhir = {line.split(": ", 1)[0]: json.loads(line.split(": ", 1)[1])
                for line in r.stdout.splitlines() if line.startswith("fhir ")}
        self.assertEqual(fhir["fhir patient"]["name"], [{"family": "Smith", "given": ["Lucy", "Mark"]}])
        self.assertEqual(fhir["fhir patient"]["birthDate"], "2014-10-14")
        study = fhir["fhir imaging_study"]
        self.assertEqual(study["identifier"][0]["value"], "urn:oid:1.2.392.200036.9125.0.198811291108.7")
        self.assertEqual(study["identifier"][1]["value"], "AccessionNumber")
        self.assertEqual(study["modality"][0]["code"], "CT")
        self.assertNotIn("fhir diagnostic_report", fhir)  # an order has no report

    def test_a_file_it_cannot_split_says_why_and_an_empty_one_warns(self):
        d = tempfile.mkdtemp(prefix="medgate-map-")
        bad, empty = os.path.join(d, "bad.hl7"), os.path.join(d, "empty.hl7")
        with open(bad, "w") as f:
            f.write("PID|1||123\nMSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\n")
        with open(empty, "w") as f:
            f.write("\n\n")
        r = h.run_medgate("map", "--dry-run", bad)
        self.assertEqual(r.returncode, 1)
        self.assertIn("bad.hl7: cannot read messages: line 1: expected MSH", r.stderr)
        r = h.run_medgate("map", "--dry-run", empty)
        self.assertIn("empty.hl7: warning: no messages in the file", r.stderr)

    def test_identifier_systems_are_the_ones_the_database_would_store(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        path = os.path.join(d, "iso.hl7")
        with open(path, "wb") as f:
            f.write(b"MSH|^~\\&|RIS|RAD|MEDGATE|HOSP|20240101120000||ADT^A01^ADT_A01|I-1|P|2.5.1\r"
                    b"PID|1||M1^^^HOSP&2.16.840.1.113883.19.5&ISO^MR~77^^^^PI||Roe^Ann||19800101|F\r")
        r = h.run_medgate("map", "--dry-run", path,
                          env={"MEDGATE_DATABASE_URL": "host=/nonexistent dbname=none"})
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        patient = [json.loads(line.split(": ", 1)[1]) for line in r.stdout.splitlines()
                   if line.startswith("fhir patient: ")][0]
        # An ISO authority is stored as urn:oid:<CX.4.2> (and sent as the
        # system, with the namespace as assigner); none at all is no system.
        self.assertEqual(patient["identifier"][0]["system"], "urn:oid:2.16.840.1.113883.19.5")
        self.assertEqual(patient["identifier"][0]["assigner"], {"display": "HOSP"})
        self.assertEqual(patient["identifier"][1]["value"], "77")
        self.assertNotIn("system", patient["identifier"][1])
        self.assertNotIn("assigner", patient["identifier"][1])

    def test_listener_option_reads_a_message_in_its_senders_charset(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        conf = os.path.join(d, "medgate.json")
        with open(conf, "w") as f:
            json.dump({"mllp": {"listeners": [{"name": "ris", "senders": [
                {"application": "RIS", "facility": "RAD", "organization_id": h.DEMO_ORG,
                 "charset": "8859/1"}]}]}}, f)
        path = os.path.join(d, "latin1.hl7")
        with open(path, "wb") as f:  # no MSH-18: the sender's 8859/1 applies
            f.write("MSH|^~\\&|RIS|RAD|MEDGATE|HOSP|20240101120000||ADT^A01^ADT_A01|L-1|P|2.5.1\r"
                    "PID|1||M1^^^HOSP^MR||Müller^Jürgen||19800101|M\r".encode("latin-1"))
        r = h.run_medgate("map", "--config", conf, "--dry-run", "--listener", "ris", path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn('patient.last_name = "Müller"', r.stdout)
        # Not from that listener: read as ASCII/UTF-8, so not readable.
        r = h.run_medgate("map", "--config", conf, "--dry-run", path)
        self.assertEqual(r.returncode, 1)
        self.assertIn("parse error at PID-5", r.stdout)

    def test_broken_mapping_set_is_refused_with_file_and_line(self):
        d = tempfile.mkdtemp()
        with open(os.path.join(d, "bad.json"), "w") as f:
            f.write('{\n  "route": "x",\n  "adapter": "hl7v2.adt",\n  "match": {"message_type": ["ADT^A01"]},\n'
                    '  "fields": {"patient.last_name": {"from": "PID-5.1", "transform": "nope"}}\n}\n')
        path = os.path.join(h.TESTDATA, "hl7v2", "fhir-converter", "ADT-A01-02.hl7")
        r = h.run_medgate("map", "--dry-run", path, env={"MEDGATE_PATHS_MAPPINGS": d})
        self.assertEqual(r.returncode, 1)
        self.assertIn(os.path.join(d, "bad.json") + ":5:", r.stderr)

    def test_listener_option_tries_a_listener_route(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        mappings = os.path.join(d, "mappings")
        shutil.copytree(os.path.join(h.SOURCE_DIR, "mappings"), mappings)
        with open(os.path.join(mappings, "adt-east.json"), "w") as f:
            json.dump({"route": "adt-east", "extends": "adt",
                       "match": {"listener": "ris-east"},
                       "fields": {"patient.last_name": {"from": "PID-5.2"}}}, f)
        path = os.path.join(h.TESTDATA, "hl7v2", "fhir-converter", "ADT01-28.hl7")
        env = {"MEDGATE_PATHS_MAPPINGS": mappings}
        r = h.run_medgate("map", "--dry-run", "--listener", "ris-east", path, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("route: adt-east", r.stdout)
        self.assertIn('patient.last_name = "ADAM"', r.stdout)  # PID-5.2
        # The FHIR lines come from the same route.
        fhir = [line for line in r.stdout.splitlines() if line.startswith("fhir patient: ")]
        self.assertEqual(json.loads(fhir[0].split(": ", 1)[1])["name"][0]["family"], "ADAM")
        # Another listener, or none, takes the route that names no listener.
        for args in (["--listener", "ris-west"], []):
            r = h.run_medgate("map", "--dry-run", *args, path, env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("route: adt (", r.stdout)
        # --listener without a name is a usage error.
        r = h.run_medgate("map", "--dry-run", "--listener", env=env)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--listener NAME", r.stderr)

    def test_what_the_intake_refuses_before_mapping_is_not_mapped(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        mappings = os.path.join(d, "mappings")
        shutil.copytree(os.path.join(h.SOURCE_DIR, "mappings"), mappings)
        # A route that would take any ADT: no adapter takes an A03, so the
        # intake answers AR 201 before the route is ever asked.
        with open(os.path.join(mappings, "adt.json")) as f:
            adt = json.load(f)
        adt["match"]["message_type"] = ["ADT^*"]
        with open(os.path.join(mappings, "adt.json"), "w") as f:
            json.dump(adt, f)
        env = {"MEDGATE_PATHS_MAPPINGS": mappings}
        a03 = os.path.join(h.TESTDATA, "hl7v2", "fhir-converter", "ADT-A03-02.hl7")
        r = h.run_medgate("map", "--dry-run", a03, env=env)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("intake: rejected, answered AR: message type ADT^A03 is not supported", r.stdout)
        self.assertNotIn("route:", r.stdout)
        # An accepted one says so, then shows its mapping.
        a01 = os.path.join(h.TESTDATA, "hl7v2", "fhir-converter", "ADT01-28.hl7")
        r = h.run_medgate("map", "--dry-run", a01, env=env)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("intake: received, answered AA\nroute: adt (", r.stdout)
        # A configured listener's senders are checked: RIS is not one.
        conf = os.path.join(d, "medgate.json")
        with open(conf, "w") as f:
            json.dump({"mllp": {"listeners": [{"name": "ris", "senders": [
                {"application": "OTHER", "facility": "*", "organization_id": h.DEMO_ORG}]}]}}, f)
        r = h.run_medgate("map", "--dry-run", "--listener", "ris", a01, "--config", conf, env=env)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("answered AR: sender not accepted on listener ris", r.stdout)

    def test_unknown_adapter_is_refused_with_file_and_line(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        with open(os.path.join(d, "bad.json"), "w") as f:
            f.write('{\n  "route": "x",\n  "adapter": "hl7v2.nope",\n'
                    '  "match": {"message_type": ["ADT^A01"]},\n'
                    '  "fields": {"patient.last_name": "PID-5.1"}\n}\n')
        path = os.path.join(h.TESTDATA, "hl7v2", "fhir-converter", "ADT-A01-02.hl7")
        r = h.run_medgate("map", "--dry-run", path, env={"MEDGATE_PATHS_MAPPINGS": d})
        self.assertEqual(r.returncode, 1)
        self.assertIn(os.path.join(d, "bad.json") + ':3: adapter: no adapter is called "hl7v2.nope"',
                      r.stderr)


if __name__ == "__main__":
    h.main()
