"""Every supported message of the HL7 v2 corpus (tests/data/hl7v2/) field by
field: each file is sent alone over MLLP to a gateway on a database just
as `medgate migrate` left it, and the acknowledgment and the rows it leaves in patients,
patient_identifiers, scans (+ scan_queue), reports and merged patients are
compared with the facts read by hand from the message text
(corpus_facts.py, FACTS). The files the gateway does not take (SKIPPED)
must be rejected as recorded there.

Cross-check: for the fhir-converter messages, the FHIR Bundles that
Microsoft's FHIR-Converter produces from the same messages (copied, MIT,
under tests/data/hl7v2/fhir-converter/expected/) are compared with the same
rows: Patient name, birthDate, gender and identifiers, DiagnosticReport
status and the A40 Linkage. It is a second, independent reading of the
messages, so it uses the database rows, not corpus_facts.py.

Each file goes to a database in the state `medgate migrate` leaves, so
nothing from another file can interfere, as the facts assume (several files
share MSH-10 and MRNs). Measured on the dev cluster (2 cores): a database
per file cost 0.75-1 s a file (CREATE DATABASE is fsync-bound, from a
template or not), 37-57 s for the test; TRUNCATE of the 28 tables 0.4 s.
So one database and one gateway serve all files, and before each file a
DELETE empties every table that was empty right after the migration and
resets the sequences (~0.03 s; the gateway keeps no state of its own
between messages: duplicate detection reads hl7_messages). The whole test
then takes about 8 s. MEDGATE_TEST_KEEP_DB=1 keeps the database."""
import glob
import json
import os
import re
import socket
import tempfile
import unittest

import harness as h
from corpus_facts import FACTS, SKIPPED
from test_mllp import mllp_exchange, msh_of, segments, wire_copy

HL7 = os.path.join(h.TESTDATA, "hl7v2")
EXPECTED = os.path.join(h.SOURCE_DIR, "tests", "data", "hl7v2-expected", "fhir-converter")
ORDER_TYPES = ("ORM^O01", "OMI^O23")
ACCEPTED = ("AA", "CA")
KEEP_DB = os.environ.get("MEDGATE_TEST_KEEP_DB") == "1"

# The fhir-converter messages whose FHIR-Converter output is copied. Not
# copied: LAB-ORM-1.hl7 (no expected output upstream), ORM-O01-06.hl7
# (answered AE, nothing is written, so there is nothing to compare) and
# the unsupported ones (ADT-A03-02, MDM-T02-01, SIU-S12-01, VXU).
CROSS_CHECKED = sorted(
    rel for rel, f in FACTS.items()
    if rel.startswith("fhir-converter/") and f.get("ack") in ACCEPTED
    and rel != "fhir-converter/LAB-ORM-1.hl7")

# FHIR DiagnosticReport.status -> reports.report_status. The seven statuses
# the table can give map to themselves. FHIR-Converter writes "unknown"
# when OBR-25 is empty; tables/report_status.json sends an empty or unknown
# OBR-25 to its default, registered: a convention difference, not a fault.
FHIR_REPORT_STATUS = {
    "registered": "registered", "partial": "partial", "preliminary": "preliminary",
    "final": "final", "amended": "amended", "corrected": "corrected",
    "cancelled": "cancelled", "unknown": "registered",
}

TABLES = ("patients", "patient_identifiers", "scans", "scan_queue",
          "reports", "scan_files")


# The tables that hold rows right after `medgate migrate` (the harness adds
# the test organization): one query, counting every base table of public.
SEEDED = """SELECT t.table_name FROM information_schema.tables t
 WHERE t.table_schema = 'public' AND t.table_type = 'BASE TABLE'
   AND (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM public.%I',
        t.table_name), false, true, '')))[1]::text::int > 0"""


def clear_sql(db):
    """SQL that brings db back to its state right after the migration:
    every table that is empty now is emptied again (foreign keys and
    triggers off for the statement's session, as every referencing table
    is emptied too) and the sequences start over."""
    seeded = {r[0] for r in h.psql(db, SEEDED)}
    tables = [r[0] for r in h.psql(db, "SELECT table_name FROM information_schema.tables "
                                     "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' "
                                     "ORDER BY 1") if r[0] not in seeded]
    seqs = [r[0] for r in h.psql(db, "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")]
    assert "patients" in tables and "hl7_messages" in tables, seeded
    return ("BEGIN; SET LOCAL session_replication_role = replica;\n" +
            "".join('DELETE FROM public."%s";\n' % t for t in tables) +
            "".join("ALTER SEQUENCE public.\"%s\" RESTART;\n" % q for q in seqs) +
            "COMMIT;")


# Everything a file can leave behind, read in one query. scan_files leaves
# out storage_uri (a data: URI holding the whole attachment). "find" is
# medgate_patient_find for every retired MRN: where later messages with it
# land.
SNAPSHOT = """SELECT jsonb_build_object(
  'hl7_messages', (SELECT coalesce(jsonb_agg(t), '[]') FROM (SELECT control_id, status,
                   ack_code, error, error_location FROM hl7_messages) t),
  'patients', (SELECT coalesce(jsonb_agg(t), '[]') FROM patients t),
  'patient_identifiers', (SELECT coalesce(jsonb_agg(t), '[]') FROM patient_identifiers t),
  'scans', (SELECT coalesce(jsonb_agg(t), '[]') FROM scans t),
  'scan_queue', (SELECT coalesce(jsonb_agg(t), '[]') FROM scan_queue t),
  'reports', (SELECT coalesce(jsonb_agg(t), '[]') FROM reports t),
  'scan_files', (SELECT coalesce(jsonb_agg(t), '[]') FROM (SELECT id, scan_id, file_name,
                 mime_type, file_size_bytes FROM scan_files) t),
  'find', (SELECT coalesce(jsonb_object_agg(medical_record_number,
           medgate_patient_find(organization_id, medical_record_number)), '{}')
           FROM patients WHERE merged_into IS NOT NULL))"""


def snapshot(db):
    """The rows of TABLES and hl7_messages as dicts (jsonb is one line;
    NULL is None)."""
    return json.loads(h.scalar(db, SNAPSHOT))


def wire_payload(path, directory):
    """The frame payload an MLLP sender puts on the wire for a corpus file:
    test_mllp.wire_copy's reading (no BOM, CR segment ends) with CRs."""
    with open(wire_copy(path, directory), "rb") as f:
        return f.read().replace(b"\n", b"\r")


def reject_of(text):
    """("AR" or "CR", error code) as SKIPPED records it."""
    m = re.search(r"\b([AC]R) \((\d{3})\b", text)
    assert m, "no ACK code in SKIPPED text: " + text
    return m.group(1), m.group(2)


def as_list(v):
    """A fact that is one row (a dict) or several (a list), as a list."""
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


class CorpusAdaptersTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="medgate-corpus-")
        cls.db = h.create_database("corpus")
        h.migrate(cls.db)
        cls.clear = clear_sql(cls.db)
        cls.gw = h.Gateway(cls.db).start()

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        if not KEEP_DB:
            h.psql("postgres", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % cls.db)

    def gateway(self):
        """The running gateway; a new one if the last file brought it down,
        so one crash does not hide the other files."""
        if self.gw.proc is None or self.gw.proc.poll() is not None:
            self.gw.stop()
            CorpusAdaptersTest.gw = h.Gateway(self.db).start()
        return self.gw

    def deliver(self, rel, ack_wanted=True):
        """Sends corpus file rel alone over MLLP to the gateway on a just-
        migrated database and reads what it left. Returns (ack payload,
        None when nothing came back; snapshot)."""
        h.psql(self.db, self.clear)
        gw = self.gateway()
        path = os.path.join(HL7, rel)
        payload = wire_payload(path, self.tmp)
        try:
            if ack_wanted:
                ack = mllp_exchange(gw.mllp_port, payload)
                if not ack:
                    raise AssertionError("no ACK")
            else:
                ack = self.send_expecting_no_ack(gw.mllp_port, payload, msh_of(path)[2])
        except (AssertionError, OSError) as e:
            raise AssertionError("%s: %s; gateway log:\n%s" % (rel, e, gw.read_log()[-4000:]))
        return ack, snapshot(self.db)

    def send_expecting_no_ack(self, port, payload, control_id):
        """MSH-15 NE: waits until the message is stored, then for a little
        longer, and returns whatever came back (None when nothing did)."""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"\x0b" + payload + b"\x1c\r")
            if h.wait_for_scalar(self.db, "SELECT 1 FROM hl7_messages WHERE control_id = :'p1'",
                                 control_id, timeout=10) is None:
                raise AssertionError("message %s never stored" % control_id)
            s.settimeout(0.5)
            try:
                data = s.recv(65536)
            except socket.timeout:
                return None
            return data.strip(b"\x0b\x1c\r") or None

    @staticmethod
    def counts(snap):
        return {t: len(snap[t]) for t in TABLES}

    # ---- the corpus is covered ------------------------------------------

    def test_facts_cover_every_corpus_file(self):
        files = {os.path.relpath(p, HL7) for p in glob.glob(os.path.join(HL7, "*", "*.hl7"))}
        self.assertEqual(len(files), 41)
        self.assertEqual(set(FACTS) & set(SKIPPED), set())
        self.assertEqual(set(FACTS) | set(SKIPPED), files)
        for rel, facts in FACTS.items():
            mtype, trigger, _ = msh_of(os.path.join(HL7, rel))
            self.assertEqual(facts["type"], "%s^%s" % (mtype, trigger), rel)
            self.assertIn(facts.get("ack"), ("AA", "AE", "AR", "CA"), rel)
        # Every copied FHIR-Converter output is used, and none is missing.
        copies = sorted(os.path.basename(p) for p in glob.glob(os.path.join(EXPECTED, "*-expected.json")))
        self.assertEqual(copies, sorted(os.path.basename(r)[:-4] + "-expected.json" for r in CROSS_CHECKED))

    # ---- supported files: facts ----------------------------------------

    def test_supported_files_match_the_facts(self):
        for rel in sorted(FACTS):
            facts = FACTS[rel]
            run = None
            with self.subTest(file=rel, part="delivery"):
                run = self.deliver(rel, ack_wanted=facts.get("ack_sent", True))
            if run is not None:
                self.check_file(rel, facts, *run)

    def check_file(self, rel, facts, ack, snap):
        control_id = msh_of(os.path.join(HL7, rel))[2]
        stored = [m for m in snap["hl7_messages"] if m["control_id"] == control_id]
        with self.subTest(file=rel, part="ack"):
            if facts.get("ack_sent", True):
                self.assertIsNotNone(ack)
                msa = segments(ack)["MSA"]
                self.assertEqual(msa[2], control_id)
                self.assertEqual(msa[1], facts["ack"], "ERR: %s" % segments(ack).get("ERR"))
            else:
                self.assertIsNone(ack, "MSH-15 NE: no accept ACK should be sent")
            self.assertEqual(len(snap["hl7_messages"]), 1, snap["hl7_messages"])
            self.assertEqual(len(stored), 1, snap["hl7_messages"])
            self.assertEqual(stored[0]["ack_code"], facts["ack"], stored[0])

        if facts["ack"] not in ACCEPTED:
            # Refused (AE: the mapping or the adapter stops the message):
            # nothing may be written.
            with self.subTest(file=rel, part="nothing written"):
                self.assertEqual(self.counts(snap), dict.fromkeys(TABLES, 0))
            return

        # The row is found first and compared after, so a wrong field does
        # not hide the checks that need the row (identifiers, links).
        patient = scan = None
        if "patient" in facts:
            with self.subTest(file=rel, part="patient"):
                patient = self.find_patient(snap, facts["patient"]["medical_record_number"])
                want = facts["patient"]
                self.assertEqual({k: patient[k] for k in want}, want)
        if "identifiers" in facts:
            with self.subTest(file=rel, part="identifiers"):
                self.assertIsNotNone(patient, "no patient to hold the identifiers")
                got = [{"value": r["value"], "type_code": r["type_code"]}
                       for r in snap["patient_identifiers"]
                       if r["patient_id"] == patient["id"] and r["use"] != "old"]
                key = lambda r: (r["value"], r["type_code"] or "")  # noqa: E731
                self.assertEqual(sorted(got, key=key), sorted(facts["identifiers"], key=key))
        # A message with several order groups (the routes' "split") has a
        # list of scans, and of reports in the same order.
        scans = as_list(facts.get("scan"))
        reports = as_list(facts.get("report"))
        for i, want in enumerate(scans):
            with self.subTest(file=rel, part="scan %d" % (i + 1)):
                scan = self.find_scan(snap, want["accession_number"])
                self.check_scan(snap, facts["type"], want, len(scans), scan, patient)
            if i < len(reports):
                with self.subTest(file=rel, part="report %d" % (i + 1)):
                    self.check_report(snap, reports[i], len(reports), scan)
        for i in range(len(scans), len(reports)):  # a report of no named scan
            with self.subTest(file=rel, part="report %d" % (i + 1)):
                self.check_report(snap, reports[i], len(reports), None)
        if "merge" in facts:
            with self.subTest(file=rel, part="merge"):
                self.check_merge(snap, facts["merge"])
        if rel in CROSS_CHECKED:
            with self.subTest(file=rel, part="fhir-converter"):
                self.cross_check(snap, rel)

    @staticmethod
    def live_patients(snap, mrn=None):
        return [p for p in snap["patients"] if p["merged_into"] is None
                and (mrn is None or p["medical_record_number"] == mrn)]

    def find_patient(self, snap, mrn):
        got = self.live_patients(snap, mrn)
        if len(got) != 1:
            self.fail("%d live patients with MRN %s; patients: %s" % (
                len(got), mrn,
                [{k: p[k] for k in ("medical_record_number", "last_name", "first_name", "merged_into")}
                 for p in snap["patients"]]))
        return got[0]

    def find_scan(self, snap, accession):
        got = [s for s in snap["scans"] if s["accession_number"] == accession]
        if len(got) != 1:
            self.fail("%d scans with accession %s; scans: %s" % (
                len(got), accession,
                [{k: s[k] for k in ("accession_number", "study_instance_uid")} for s in snap["scans"]]))
        return got[0]

    def check_scan(self, snap, mtype, want, nscans, scan, patient):
        problems = []
        ours = {k: scan[k] for k in want}
        if ours != want:
            problems.append("scan %s, want %s" % (ours, want))
        # One scan per ORC/OBR group, and nothing else.
        if len(snap["scans"]) != nscans:
            problems.append("%d scans, want %d" % (len(snap["scans"]), nscans))
        if patient is not None and scan["patient_id"] != patient["id"]:
            problems.append("scan not linked to the patient")
        if mtype in ORDER_TYPES:
            # A new order (ORC-1 NW in every order file) gets its worklist entry.
            queue = [q["status"] for q in snap["scan_queue"] if q["scan_id"] == scan["id"]]
            if queue != ["waiting"]:
                problems.append("scan_queue %s, want one waiting entry" % queue)
        self.assertEqual(problems, [])

    def check_report(self, snap, want, nreports, scan):
        got = snap["reports"]
        # One report per OBR group, each linked to its own scan.
        self.assertEqual(len(got), nreports, got)
        mine = [r for r in got if scan is None or r["scan_id"] == scan["id"]]
        self.assertEqual(len(mine), 1, "reports of the scan: %s" % got)
        r = mine[0]
        problems = []
        if r["report_status"] != want["report_status"]:
            problems.append("report_status %r, want %r" % (r["report_status"], want["report_status"]))
        for col, key in (("findings_text", "findings_contains"), ("impression", "impression_contains")):
            text = r[col] or ""
            if key in want:
                problems += ["%s lacks %r" % (col, s) for s in want[key] if s not in text]
            elif text:
                # The facts leave the key out when the message has no such text.
                problems.append("%s should be empty, is %r" % (col, text[:300]))
        self.assertEqual(problems, [])

    def check_merge(self, snap, want):
        survivor = self.live_patients(snap, want["survivor_mrn"])
        self.assertEqual(len(survivor), 1, "survivor %s" % want["survivor_mrn"])
        sid = survivor[0]["id"]
        merged = [{"merged_into": p["merged_into"], "dated": p["merged_at"] is not None,
                   "is_active": p["is_active"]}
                  for p in snap["patients"] if p["medical_record_number"] == want["merged_mrn"]]
        self.assertEqual(merged, [{"merged_into": sid, "dated": True, "is_active": False}])
        # Later messages with the retired MRN land on the survivor ...
        self.assertEqual(snap["find"].get(want["merged_mrn"]), sid)
        # ... and the retired identifier is kept on it, marked old.
        self.assertIn(want["merged_mrn"], [r["value"] for r in snap["patient_identifiers"]
                                           if r["patient_id"] == sid and r["use"] == "old"])

    # ---- cross-check with FHIR-Converter --------------------------------

    def cross_check(self, snap, rel):
        name = os.path.basename(rel)[:-4] + "-expected.json"
        with open(os.path.join(EXPECTED, name), encoding="utf-8") as f:
            bundle = json.load(f)
        resources = [e["resource"] for e in bundle["entry"]]
        kind = lambda t: [r for r in resources if r["resourceType"] == t]  # noqa: E731
        problems = []
        live = self.live_patients(snap)
        self.assertEqual(len(live), 1, "live patients")
        p = live[0]

        for fp in kind("Patient")[:1]:
            # The first name of the Patient is PID-5's first repetition; its
            # family and first given name are PID-5.1 and PID-5.2. Skipped:
            # the further given names (FHIR-Converter adds the middle name
            # and v2.8 XPN.14 there), prefix/suffix/use/period.
            fname = (fp.get("name") or [{}])[0]
            fhir = {"last_name": fname.get("family"),
                    "first_name": (fname.get("given") or [None])[0],
                    "date_of_birth": fp.get("birthDate"),
                    "gender": fp.get("gender")}
            ours = {k: p[k] for k in fhir}
            if ours != fhir:
                problems.append("Patient %s, rows %s" % (fhir, ours))
            # Identifiers: FHIR-Converter also makes identifiers from PID-2,
            # PID-4, PID-19 (SSN), PID-20 (driver's licence) and IN1 (member
            # numbers), which medgate does not keep in patient_identifiers,
            # and it qualifies systems with its own example.com URIs. So
            # only values are compared, one way: every identifier medgate
            # kept, and the MRN, must be among the Patient's.
            fhir_ids = {i.get("value") for i in fp.get("identifier", [])}
            ours_ids = [r["value"] for r in snap["patient_identifiers"] if r["patient_id"] == p["id"]]
            for v in sorted(set(ours_ids + [p["medical_record_number"]])):
                if v not in fhir_ids:
                    problems.append("identifier %r is not among the Patient's %s" % (v, sorted(fhir_ids)))

        for link in kind("Linkage")[:1]:
            # A40: FHIR-Converter writes a Linkage (no Patient). medgate reads
            # only the first PID/MRG pair, so only the first source and
            # historical items are compared.
            items = link.get("item", [])
            first = {t: next((i["resource"]["identifier"]["value"] for i in items if i["type"] == t), None)
                     for t in ("source", "historical")}
            merged = [m["medical_record_number"] for m in snap["patients"] if m["merged_into"] == p["id"]]
            ours = {"source": p["medical_record_number"],
                    "historical": merged[0] if len(merged) == 1 else merged}
            if ours != first:
                problems.append("Linkage %s, rows %s" % (first, ours))

        # DiagnosticReport: only where medgate wrote a report (the result
        # route). FHIR-Converter also makes one from an order's OBR (status
        # unknown); the order route writes no report, so there is nothing
        # to compare. The report is matched by its external id (OBR-3.1)
        # among each DiagnosticReport's identifiers.
        for r in snap["reports"]:
            match = [d for d in kind("DiagnosticReport")
                     if r["external_id"] in [i.get("value") for i in d.get("identifier") or []]]
            if len(match) != 1:
                problems.append("%d DiagnosticReports with identifier %r" % (len(match), r["external_id"]))
                continue
            status = match[0].get("status")
            if FHIR_REPORT_STATUS.get(status) != r["report_status"]:
                problems.append("DiagnosticReport %s status %r, report_status %r" %
                                (r["external_id"], status, r["report_status"]))
        self.assertEqual(problems, [])

    # ---- unsupported files ----------------------------------------------

    def test_unsupported_files_are_rejected(self):
        for rel in sorted(SKIPPED):
            code, err = reject_of(SKIPPED[rel])
            run = None
            with self.subTest(file=rel, part="delivery"):
                run = self.deliver(rel)
            if run is None:
                continue
            ack, snap = run
            with self.subTest(file=rel, part="ack"):
                seg = segments(ack)
                self.assertEqual(seg["MSA"][1], code, seg.get("ERR"))
                self.assertEqual(seg["MSA"][2], msh_of(os.path.join(HL7, rel))[2])
                self.assertIn("ERR", seg)
                self.assertEqual(seg["ERR"][3].split("^")[0], err, seg["ERR"])
                self.assertEqual([(m["status"], m["ack_code"]) for m in snap["hl7_messages"]],
                                 [("rejected", code)])
                self.assertEqual(self.counts(snap), dict.fromkeys(TABLES, 0))


if __name__ == "__main__":
    h.main()
