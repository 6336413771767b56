"""Adapters: what an accepted message writes into the internal tables.
hl7v2.adt: patients + patient_identifiers, matched by medical record number
within the organization ("" clears a column, an empty field leaves it), and
A40 merges. hl7v2.order: scans and worklist entries by accession number.
hl7v2.result: reports linked to their scan, attachments in scan_files.
Every corpus message field by field: test_corpus_adapters.py."""
import base64
import hashlib
import socket
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

import harness as h
from test_mllp import exchange_all, mllp_exchange, segments

ADT = ("MSH|^~\\&|RIS|RAD|MEDGATE|HOSP|20240101120000||ADT^{ev}^ADT_A01|{cid}|P|2.5.1\r"
       "EVN|{ev}|20240101120000\r"
       "PID|1||{mrn}^^^HOSP^MR~{ssn}^^^USSSA^SS||{name}||{dob}|{sex}|||||{phone}\r"
       "PV1|1|O\r")


def adt(cid, ev="A01", mrn="MRN1", ssn="111", name="Doe^Jane", dob="19800102", sex="F",
        phone="555-0100"):
    return ADT.format(cid=cid, ev=ev, mrn=mrn, ssn=ssn, name=name, dob=dob, sex=sex,
                      phone=phone).encode()


def pipelined(port, frames):
    """Writes all frames at once on one connection (so they share grouped
    commits) and returns the MSA-1 of each ACK, in order."""
    return [segments(a)["MSA"][1] for a in exchange_all(port, frames)]


class GatewayTest(unittest.TestCase):
    """A fresh migrated database and a gateway with the shipped mappings."""
    prefix = "adapt"

    def setUp(self):
        self.db = h.create_database(self.prefix)
        h.migrate(self.db)
        self.gw = h.Gateway(self.db).start()

    def tearDown(self):
        self.gw.stop()

    def send(self, payload):
        return segments(mllp_exchange(self.gw.mllp_port, payload))["MSA"][1]


class PatientAdapterTest(GatewayTest):

    def patient(self, mrn):
        return h.psql(self.db, "SELECT last_name, first_name, date_of_birth, gender, "
                      "coalesce(phone, '-'), source FROM patients WHERE medical_record_number = :'p1'", mrn)

    def test_exact_resend_of_a_failed_message_in_one_batch_is_stored_once(self):
        # No MRN: refused at the mapping stage, stored as failed. The same
        # bytes twice on one pipelined connection share a grouped commit.
        bad = adt("EX-1", mrn="", ssn="")
        self.assertEqual(pipelined(self.gw.mllp_port, [bad, bad, adt("EX-2", mrn="M2")]),
                         ["AE", "AE", "AA"])
        self.assertEqual(h.psql(self.db, "SELECT status FROM hl7_messages WHERE control_id='EX-1'"),
                         [["failed"]])
        self.assertEqual(h.psql(self.db, "SELECT status FROM sync_logs WHERE external_id='EX-1' ORDER BY id"),
                         [["failed"], ["duplicate"]])

    def test_repeat_of_a_failed_message_that_wanted_no_ack_is_a_repeat(self):
        # MSH-15 NE (MSH-16 empty): no ACK at all, so none is stored for
        # the failure; the repeat is still recognised (stored once, logged
        # duplicate).
        bad = adt("NE-1", mrn="", ssn="").replace(b"|P|2.5.1\r", b"|P|2.5.1|||NE\r", 1)
        with socket.create_connection(("127.0.0.1", self.gw.mllp_port), timeout=10) as sock:
            sock.sendall(b"\x0b" + bad + b"\x1c\r")
            time.sleep(0.5)  # two commits, not one
            sock.sendall(b"\x0b" + bad + b"\x1c\r" + b"\x0b" + adt("NE-2", mrn="M2") + b"\x1c\r")
            buf = b""
            while b"\x1c\r" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
        self.assertEqual(segments(buf.strip(b"\x0b").split(b"\x1c")[0])["MSA"][1:3], ["AA", "NE-2"])
        self.assertEqual(h.psql(self.db, "SELECT status FROM hl7_messages WHERE control_id='NE-1'"),
                         [["failed"]])
        self.assertEqual(h.psql(self.db, "SELECT status FROM sync_logs WHERE external_id='NE-1' ORDER BY id"),
                         [["failed"], ["duplicate"]])

    def test_admit_creates_patient_and_identifiers(self):
        self.assertEqual(self.send(adt("P-1")), "AA")
        self.assertEqual(self.patient("MRN1"), [["Doe", "Jane", "1980-01-02", "female", "555-0100", "hl7v2"]])
        ids = h.psql(self.db, "SELECT system, value, coalesce(type_code, '-') FROM patient_identifiers "
                     "ORDER BY value")
        self.assertEqual(ids, [["USSSA", "111", "SS"], ["HOSP", "MRN1", "MR"]])

    def test_identifier_periods_of_any_precision_are_no_refusal(self):
        # CX.7/CX.8 are dates; a year alone (DT allows it) or a time after
        # the day must not refuse the registration. The day is stored when
        # there is one; a year alone gives no period.
        msg = adt("P-20").decode().replace("MRN1^^^HOSP^MR", "MRN1^^^HOSP^MR^^2020") \
                                  .replace("111^^^USSSA^SS", "111^^^USSSA^SS^^20200315^20210101120000")
        self.assertEqual(self.send(msg.encode()), "AA")
        self.assertEqual(h.psql(self.db, "SELECT value, coalesce(period_start::text, '-'), "
                                "coalesce(period_end::text, '-') FROM patient_identifiers ORDER BY value"),
                         [["111", "2020-03-15", "2021-01-01"], ["MRN1", "-", "-"]])

    def test_update_changes_clears_and_keeps(self):
        self.assertEqual(self.send(adt("P-2")), "AA")
        # A08: new family name, phone explicitly cleared (""), DOB left empty (keep).
        self.assertEqual(self.send(adt("P-3", ev="A08", name="Smith^Jane", dob="", phone='""')), "AA")
        self.assertEqual(self.patient("MRN1"), [["Smith", "Jane", "1980-01-02", "female", "-", "hl7v2"]])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients"), "1")

    def test_a_name_or_address_sent_is_the_whole_value(self):
        # HL7 v2: a field sent is its whole value. JONES^MARY after
        # SMITH^JOHN^QUINCY^JR^DR became "Mary Quincy Jones Jr, Dr", and a
        # new street kept the old flat number.
        a01 = adt("NA-1", name="SMITH^JOHN^QUINCY^JR^DR").decode().replace(
            "||555-0100", "12 MAIN ST^APT 4B^BOSTON^MA^02115^USA||555-0100")  # PID-11
        self.assertEqual(self.send(a01.encode()), "AA")
        a08 = adt("NA-2", ev="A08", name="JONES^MARY").decode().replace(
            "||555-0100", "99 ELM RD^^CAMBRIDGE^MA^02139||555-0100")
        self.assertEqual(self.send(a08.encode()), "AA")
        cols = ("SELECT last_name, first_name, coalesce(middle_name, '-'), coalesce(name_suffix, '-'), "
                "coalesce(name_prefix, '-'), address_line1, coalesce(address_line2, '-'), city, "
                "coalesce(country, '-') FROM patients")
        self.assertEqual(h.psql(self.db, cols),
                         [["JONES", "MARY", "-", "-", "-", "99 ELM RD", "-", "CAMBRIDGE", "-"]])
        # A message without PID-5 or PID-11 leaves both as they are.
        self.assertEqual(self.send(adt("NA-3", ev="A08", name="", phone="555-0111")), "AA")
        self.assertEqual(h.psql(self.db, cols),
                         [["JONES", "MARY", "-", "-", "-", "99 ELM RD", "-", "CAMBRIDGE", "-"]])

    def test_fields_this_cannot_use_do_not_refuse_the_registration(self):
        # A birth date known only to the year or the month (a valid DTM),
        # an EVN-2 no adapter reads, and PID-30 U were each AE 102: the
        # registration was lost.
        year = adt("FU-1", mrn="Y1", dob="1980")
        month = adt("FU-2", mrn="Y2", dob="198002")
        evn = adt("FU-3", mrn="Y3").replace(b"EVN|A01|20240101120000", b"EVN|A01|20240101120000.123456")
        self.assertEqual([self.send(m) for m in (year, month, evn)], ["AA", "AA", "AA"])
        self.assertEqual(h.psql(self.db, "SELECT medical_record_number, coalesce(date_of_birth::text, '-') "
                                "FROM patients ORDER BY 1"),
                         [["Y1", "-"], ["Y2", "-"], ["Y3", "1980-01-02"]])
        # An update giving the year only keeps the known date.
        self.assertEqual(self.send(adt("FU-4", ev="A08", mrn="Y3", dob="1980")), "AA")
        self.assertEqual(h.scalar(self.db, "SELECT date_of_birth FROM patients WHERE medical_record_number = 'Y3'"),
                         "1980-01-02")
        # PID-30 U says nothing: the patient stays deceased (from PID-29).
        pid29_30 = lambda cid, ts, flag: adt(cid, ev="A08", mrn="Y3").decode().replace(
            "|555-0100\r", "|555-0100" + "|" * 16 + ts + "|" + flag + "\r").encode()
        self.assertEqual(self.send(pid29_30("FU-5", "20240101000000", "Y")), "AA")
        self.assertEqual(h.psql(self.db, "SELECT deceased, deceased_at IS NOT NULL FROM patients "
                                "WHERE medical_record_number = 'Y3'"), [["t", "t"]])
        unknown = pid29_30("FU-6", "", "U")
        self.assertEqual(self.send(unknown), "AA")
        self.assertEqual(h.psql(self.db, "SELECT deceased, deceased_at IS NOT NULL FROM patients "
                                "WHERE medical_record_number = 'Y3'"), [["t", "t"]])

    def test_death_time_alone_marks_the_patient_deceased(self):
        msg = adt("P-4").decode().replace("|555-0100", "|555-0100" + "|" * 16 + "20240101080000")
        self.assertEqual(self.send(msg.encode()), "AA")  # PID-29 set, PID-30 empty
        self.assertEqual(h.psql(self.db, "SELECT deceased, deceased_at IS NOT NULL FROM patients"), [["t", "t"]])

    def test_death_time_alone_on_an_update_marks_the_patient_deceased(self):
        # A known patient's A08 with PID-29 (death time) and no PID-30: the
        # same as for a new patient, not AE 103 (deceased false kept).
        self.assertEqual(self.send(adt("P-5")), "AA")
        msg = adt("P-6", ev="A08").decode().replace("|555-0100", "|555-0100" + "|" * 16 + "20240101080000")
        self.assertEqual(self.send(msg.encode()), "AA")
        self.assertEqual(h.psql(self.db, "SELECT deceased, deceased_at IS NOT NULL FROM patients"), [["t", "t"]])

    def test_a_death_time_with_pid_30_n_is_ae_103_without_a_location(self):
        # PID-29 set, PID-30 N: the message contradicts itself, and the
        # table check "deceased OR deceased_at IS NULL" refuses the row.
        # A table check names no column, so ERR-2 is empty.
        msg = adt("P-9").decode().replace("|555-0100", "|555-0100" + "|" * 16 + "20240101080000|N")
        seg = segments(mllp_exchange(self.gw.mllp_port, msg.encode()))
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertTrue(seg["ERR"][3].startswith("103^"), seg["ERR"])
        self.assertEqual(seg["ERR"][2], "")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients"), "0")

    def test_pid_30_n_without_a_death_time_is_alive_again(self):
        # Deceased by mistake, then A08 with PID-30 N and PID-29 empty:
        # not deceased, and the death time goes (not AE 103 from the check
        # "deceased OR deceased_at IS NULL").
        msg = adt("P-7").decode().replace("|555-0100", "|555-0100" + "|" * 16 + "20240101080000|Y")
        self.assertEqual(self.send(msg.encode()), "AA")
        msg = adt("P-8", ev="A08").decode().replace("|555-0100", "|555-0100" + "|" * 17 + "N")
        self.assertEqual(self.send(msg.encode()), "AA")
        self.assertEqual(h.psql(self.db, "SELECT deceased, deceased_at IS NULL FROM patients"), [["f", "t"]])

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


class OrderAdapterTest(GatewayTest):
    prefix = "orders"

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

    def test_reorder_after_cancel_and_status_changes(self):
        send = lambda cid, ctl, extra=b"": segments(mllp_exchange(
            self.gw.mllp_port, ORM.format(cid=cid, ctl=ctl).encode().replace(b"|FL9^RIS||", b"|FL9^RIS||" + extra)))["MSA"][1]
        self.assertEqual(send("S-1", "NW"), "AA")
        self.assertEqual(send("S-2", "CA"), "AA")
        self.assertEqual(send("S-3", "NW"), "AA")  # ordered again: a new worklist entry
        self.assertEqual(h.psql(self.db, "SELECT s.status, q.status FROM scans s JOIN scan_queue q ON q.scan_id = s.id "
                                "ORDER BY q.queue_entered_at, q.status"), [["ordered", "cancelled"], ["ordered", "waiting"]])
        # SC with ORC-5 CM: the study is done.
        self.assertEqual(send("S-4", "SC", b"CM"), "AA")
        self.assertEqual(h.psql(self.db, "SELECT status, completed_at IS NOT NULL FROM scans"), [["completed", "t"]])

    def test_a_change_or_cancel_keeps_the_order_time(self):
        # ORC-9 is the time of the event ORC-1 names: the order's on the NW,
        # the status change's on the SC, which must not become the order time.
        nw = ORM.format(cid="T-1", ctl="NW").replace("^^^20240102083000^^S", "^^^20240102083000^^S||20240101080000")
        self.assertEqual(self.send(nw.encode()), "AA")
        sc = ORM.format(cid="T-2", ctl="SC").replace("|FL9^RIS||", "|FL9^RIS||IP").replace(
            "^^^20240102083000^^S", "^^^20240102083000^^S||20240105093000")
        self.assertEqual(self.send(sc.encode()), "AA")
        ca = ORM.format(cid="T-3", ctl="CA").replace("^^^20240102083000^^S", "^^^20240102083000^^S||20240106100000")
        self.assertEqual(self.send(ca.encode()), "AA")
        self.assertEqual(h.psql(self.db, "SELECT status, to_char(ordered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') "
                                "FROM scans"), [["cancelled", "2024-01-01 08:00"]])

    def test_cancel_of_a_study_being_read_closes_its_entry(self):
        self.assertEqual(self.send(ORM.format(cid="I-1", ctl="NW").encode()), "AA")
        h.psql(self.db, "INSERT INTO users (organization_id, email, role) VALUES (:'p1', 'rad@example.org', "
               "'radiologist')", h.DEMO_ORG)
        h.psql(self.db, "UPDATE scan_queue SET status = 'in_progress', "
               "assigned_to_user_id = (SELECT id FROM users WHERE email = 'rad@example.org')")
        self.assertEqual(self.send(ORM.format(cid="I-2", ctl="CA").encode()), "AA")
        self.assertEqual(h.psql(self.db, "SELECT s.status, q.status FROM scans s JOIN scan_queue q ON q.scan_id = s.id"),
                         [["cancelled", "cancelled"]])
        # Ordered again: a new entry (the open one would have held the key: AE 207).
        self.assertEqual(self.send(ORM.format(cid="I-3", ctl="NW").encode()), "AA")
        self.assertEqual(h.psql(self.db, "SELECT status FROM scan_queue ORDER BY queue_entered_at"),
                         [["cancelled"], ["waiting"]])

    def test_change_without_a_priority_keeps_the_priority(self):
        self.assertEqual(self.send(ORM.format(cid="K-1", ctl="NW").encode()), "AA")  # ORC-7.6 S: stat
        # XO with a new procedure and no timing/priority at all (ORC-7 empty).
        xo = ORM.format(cid="K-2", ctl="XO").replace("^^^20240102083000^^S", "").replace(
            "71046^XR CHEST 2 VIEWS", "71047^XR CHEST 3 VIEWS")
        self.assertEqual(self.send(xo.encode()), "AA")
        self.assertEqual(h.psql(self.db, "SELECT procedure_code, priority FROM scans"), [["71047", "stat"]])
        # "" in ORC-7.6 clears it: routine.
        xo = ORM.format(cid="K-3", ctl="XO").replace("^^^20240102083000^^S", '^^^^^""')
        self.assertEqual(self.send(xo.encode()), "AA")
        self.assertEqual(h.scalar(self.db, "SELECT priority FROM scans"), "routine")

    def test_reported_study_is_neither_moved_back_nor_cancelled(self):
        send = lambda cid, ctl, orc5=b"": self.send(ORM.format(cid=cid, ctl=ctl).encode().replace(
            b"|FL9^RIS||", b"|FL9^RIS||" + orc5))
        self.assertEqual(send("RS-1", "NW"), "AA")
        self.assertEqual(self.send(oru("RS-2", "ACC9")), "AA")  # final report
        self.assertEqual(h.scalar(self.db, "SELECT status FROM scans"), "reported")
        # A late status change (exam completed) leaves it reported.
        self.assertEqual(send("RS-3", "SC", b"CM"), "AA")
        self.assertEqual(h.scalar(self.db, "SELECT status FROM scans"), "reported")
        # A cancel of a reported study is refused: AE at what asked for it
        # (ORC-1, or ORC-5 of an SC), nothing changes.
        for cid, ctl, orc5, at in (("RS-4", "CA", b"", "ORC^1^1^"), ("RS-5", "SC", b"CA", "ORC^1^5^")):
            seg = segments(mllp_exchange(self.gw.mllp_port, ORM.format(cid=cid, ctl=ctl).encode().replace(
                b"|FL9^RIS||", b"|FL9^RIS||" + orc5)))
            self.assertEqual(seg["MSA"][1], "AE", cid)
            self.assertTrue(seg["ERR"][3].startswith("102^"), seg["ERR"])
            self.assertTrue(seg["ERR"][2].startswith(at), seg["ERR"])
            self.assertIn("reported", seg["ERR"][8])
        self.assertEqual(h.psql(self.db, "SELECT s.status, q.status, r.report_status FROM scans s "
                                "JOIN scan_queue q ON q.scan_id = s.id JOIN reports r ON r.scan_id = s.id"),
                         [["reported", "completed", "final"]])

    def test_status_changes_move_forward_and_a_done_study_is_not_cancelled(self):
        send = lambda cid, ctl, orc5=b"": segments(mllp_exchange(self.gw.mllp_port, ORM.format(
            cid=cid, ctl=ctl).encode().replace(b"|FL9^RIS||", b"|FL9^RIS||" + orc5)))
        status = lambda: h.psql(self.db, "SELECT s.status, q.status FROM scans s JOIN scan_queue q "
                                "ON q.scan_id = s.id")
        self.assertEqual(send("F-1", "NW")["MSA"][1], "AA")
        self.assertEqual(send("F-2", "SC", b"IP")["MSA"][1], "AA")
        self.assertEqual(status(), [["in_progress", "waiting"]])
        # Scheduled arriving after in progress: late, moves nothing back.
        self.assertEqual(send("F-3", "SC", b"SC")["MSA"][1], "AA")
        self.assertEqual(status(), [["in_progress", "waiting"]])
        self.assertEqual(send("F-4", "SC", b"CM")["MSA"][1], "AA")
        self.assertEqual(send("F-5", "SC", b"IP")["MSA"][1], "AA")
        self.assertEqual(status(), [["completed", "waiting"]])
        # The images exist: a cancel is refused, and the study stays on
        # the readers' worklist.
        seg = send("F-6", "CA")
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertTrue(seg["ERR"][2].startswith("ORC^1^1^"), seg["ERR"])
        self.assertIn("is completed already and cannot be cancelled", seg["ERR"][8])
        self.assertEqual(status(), [["completed", "waiting"]])

    def test_a_cancelled_order_stays_cancelled_until_ordered_again(self):
        send = lambda cid, ctl, orc5=b"": segments(mllp_exchange(self.gw.mllp_port, ORM.format(
            cid=cid, ctl=ctl).encode().replace(b"|FL9^RIS||", b"|FL9^RIS||" + orc5)))["MSA"][1]
        self.assertEqual(send("C-1", "NW"), "AA")
        self.assertEqual(send("C-2", "CA"), "AA")
        # A status message for it (scheduled) does not bring it back half
        # way (scheduled, with its worklist entry cancelled).
        self.assertEqual(send("C-3", "SC", b"SC"), "AA")
        self.assertEqual(send("C-4", "XO"), "AA")
        self.assertEqual(h.psql(self.db, "SELECT s.status, q.status FROM scans s JOIN scan_queue q "
                                "ON q.scan_id = s.id"), [["cancelled", "cancelled"]])

    def test_a_new_priority_reorders_the_worklist_entry(self):
        self.assertEqual(self.send(ORM.format(cid="PR-1", ctl="NW").encode().replace(b"^^S\r", b"^^R\r")), "AA")
        self.assertEqual(h.psql(self.db, "SELECT s.priority, q.priority_score FROM scans s JOIN scan_queue q "
                                "ON q.scan_id = s.id"), [["routine", "1.000"]])
        self.assertEqual(self.send(ORM.format(cid="PR-2", ctl="XO").encode()), "AA")  # now S: stat
        self.assertEqual(h.psql(self.db, "SELECT s.priority, q.priority_score FROM scans s JOIN scan_queue q "
                                "ON q.scan_id = s.id"), [["stat", "4.000"]])
        # A score set otherwise (by hand, triage) stays while the priority
        # does not change.
        h.psql(self.db, "UPDATE scan_queue SET priority_score = 9")
        self.assertEqual(self.send(ORM.format(cid="PR-3", ctl="XO").encode()), "AA")
        self.assertEqual(h.scalar(self.db, "SELECT priority_score FROM scan_queue"), "9.000")

    def test_a_study_uid_of_another_study_is_ae_at_its_field(self):
        # Two orders (accessions ACC9, ACC10), then a change of ACC10 that
        # names ACC9's study UID: the unique key refuses it, AE 207 at the
        # ZDS-1 that carried the UID.
        zds = lambda uid: "ZDS|%s^^Application^DICOM\r" % uid
        self.assertEqual(self.send((ORM.format(cid="UQ-1", ctl="NW") + zds("1.2.3.9")).encode()), "AA")
        second = ORM.format(cid="UQ-2", ctl="NW").replace("ACC9", "ACC10").replace("FL9^RIS", "FL10^RIS")
        self.assertEqual(self.send((second + zds("1.2.3.10")).encode()), "AA")
        change = ORM.format(cid="UQ-3", ctl="XO").replace("ACC9", "ACC10").replace("FL9^RIS", "FL10^RIS")
        seg = segments(mllp_exchange(self.gw.mllp_port, (change + zds("1.2.3.9")).encode()))
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertTrue(seg["ERR"][3].startswith("207^"), seg["ERR"])
        self.assertTrue(seg["ERR"][2].startswith("ZDS^1^1"), seg["ERR"])
        self.assertEqual(h.scalar(self.db, "SELECT study_instance_uid FROM scans WHERE accession_number = 'ACC10'"),
                         "1.2.3.10")

    def test_a_month_precision_order_time_is_its_first_instant(self):
        msg = ORM.format(cid="T-1", ctl="NW").replace("^^^20240102083000^^S\r", "^^^20240102083000^^S||202203\r")
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, msg.encode()))["MSA"][1], "AA")
        self.assertEqual(h.scalar(self.db, "SELECT to_char(ordered_at, 'YYYY-MM-DD HH24:MI') "
                                  "FROM scans"), "2022-03-01 00:00")

    def test_times_without_an_offset_are_the_organizations_wall_clock(self):
        h.psql(self.db, "UPDATE organizations SET timezone = 'Europe/Berlin' WHERE id = :'p1'", h.DEMO_ORG)
        # ORC-9 in summer without an offset: 10:00 in Berlin is 08:00 UTC;
        # ORC-7.4 in winter with its own offset keeps it.
        msg = ORM.format(cid="TZ-1", ctl="NW").replace("^^^20240102083000^^S\r",
                                                       "^^^20240102083000-0500^^S||20240701100000\r")
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, msg.encode()))["MSA"][1], "AA")
        self.assertEqual(h.psql(self.db, "SELECT to_char(ordered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), "
                                "to_char(scheduled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') FROM scans"),
                         [["2024-07-01 08:00", "2024-01-02 13:30"]])
        # A month alone is the first instant of that month there.
        msg = ORM.format(cid="TZ-2", ctl="NW").replace("^^^20240102083000^^S\r", "^^^20240102083000^^S||202203\r") \
                 .replace("ACC9", "ACC10").replace("FL9^RIS", "FL10^RIS")
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, msg.encode()))["MSA"][1], "AA")
        self.assertEqual(h.scalar(self.db, "SELECT to_char(ordered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') "
                                  "FROM scans WHERE accession_number = 'ACC10'"), "2022-02-28 23:00")
        # A name PostgreSQL does not know is refused when it is written.
        with self.assertRaises(h.PsqlError) as e:
            h.psql(self.db, "UPDATE organizations SET timezone = 'Europe/Berlinn' WHERE id = :'p1'", h.DEMO_ORG)
        self.assertIn('time zone "Europe/Berlinn" is not known', e.exception.stderr)

    def test_replay_runs_the_adapter_again(self):
        # A cancel that came before its order: refused (AE 204) and kept.
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, ORM.format(cid="RP-1", ctl="CA").encode()))["MSA"][1], "AE")
        env = {"MEDGATE_DATABASE_URL": h.conninfo(self.db),
               "MEDGATE_PATHS_MAPPINGS": os.path.join(h.SOURCE_DIR, "mappings")}
        same = h.run_medgate("replay", "--failed", "--dry-run", env=env)
        self.assertEqual(same.returncode, 1, same.stderr)  # it would still fail
        self.assertIn("1 unchanged", same.stdout)  # the same refusal, same ERR location
        self.assertEqual(segments(mllp_exchange(self.gw.mllp_port, ORM.format(cid="RP-2", ctl="NW").encode()))["MSA"][1], "AA")
        dry = h.run_medgate("replay", "--failed", "--dry-run", env=env)
        self.assertIn("RP-1: failed -> received", dry.stdout)
        self.assertEqual(h.scalar(self.db, "SELECT status FROM scans"), "ordered")  # the dry run wrote nothing
        real = h.run_medgate("replay", "--failed", env=env)
        self.assertEqual(real.returncode, 0, real.stderr)
        self.assertEqual(h.psql(self.db, "SELECT s.status, q.status FROM scans s JOIN scan_queue q ON q.scan_id = s.id"),
                         [["cancelled", "cancelled"]])
        self.assertEqual(h.scalar(self.db, "SELECT status FROM hl7_messages WHERE control_id = 'RP-1'"), "received")

    def test_new_order_attaches_to_the_scan_a_uid_only_result_created(self):
        # A preliminary result naming only the study (OBX 113014, no
        # accession, no OBR-3) came first and created the scan; the order
        # with its accession and the same UID (ZDS-1) then fills that scan
        # in and puts it on the worklist, instead of AE 207.
        uid_only = lambda cid, uid, status: oru(cid, "", status=status, uid=uid).replace(b"|FL9^RIS|", b"||")
        order = lambda cid, uid, acc="ACC9", mrn="MRN9": (ORM.format(cid=cid, ctl="NW").replace(
            "ACC9", acc).replace("MRN9", mrn) + "ZDS|%s^^RIS^DICOM\r" % uid).encode()
        self.assertEqual(self.send(uid_only("UO-1", "1.2.3.9", "P")), "AA")
        self.assertEqual(self.send(order("UO-2", "1.2.3.9")), "AA")
        self.assertEqual(h.psql(self.db, "SELECT s.accession_number, s.study_instance_uid, s.procedure_code, "
                                "s.priority, s.status, q.status FROM scans s JOIN scan_queue q ON q.scan_id = s.id"),
                         [["ACC9", "1.2.3.9", "71046", "stat", "completed", "waiting"]])
        # The final report by accession: the same scan, its entry completed.
        self.assertEqual(self.send(oru("UO-3", "ACC9")), "AA")
        self.assertEqual(h.psql(self.db, "SELECT s.status, q.status, count(r.id) FROM scans s "
                                "JOIN scan_queue q ON q.scan_id = s.id JOIN reports r ON r.scan_id = s.id "
                                "GROUP BY 1, 2"), [["reported", "completed", "2"]])
        # A study reported before its order: its entry is a completed one.
        self.assertEqual(self.send(uid_only("UO-4", "1.2.3.8", "F")), "AA")
        self.assertEqual(self.send(order("UO-5", "1.2.3.8", acc="ACC8")), "AA")
        self.assertEqual(h.psql(self.db, "SELECT s.status, q.status, q.completed_at IS NOT NULL FROM scans s "
                                "JOIN scan_queue q ON q.scan_id = s.id WHERE s.accession_number = 'ACC8'"),
                         [["reported", "completed", "t"]])
        # Another patient's order for that study: AE 204 at the UID's field.
        self.assertEqual(self.send(uid_only("UO-6", "1.2.3.7", "P")), "AA")
        seg = segments(mllp_exchange(self.gw.mllp_port, order("UO-7", "1.2.3.7", acc="ACC7", mrn="MRN7")))
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertTrue(seg["ERR"][3].startswith("204^"), seg["ERR"])
        self.assertTrue(seg["ERR"][2].startswith("ZDS^1^1"), seg["ERR"])
        self.assertIn("another patient", seg["ERR"][8])
        self.assertEqual(h.psql(self.db, "SELECT coalesce(accession_number, '-'), p.medical_record_number "
                                "FROM scans s JOIN patients p ON p.id = s.patient_id "
                                "WHERE study_instance_uid = '1.2.3.7'"), [["-", "MRN9"]])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM scans"), "3")

    def order(self, cid, ctl, status="", obr24=None, pid="Roe^Richard"):
        msg = ORM.format(cid=cid, ctl=ctl).replace("|FL9^RIS||", "|FL9^RIS||" + status)
        if obr24 is not None:
            msg = msg.replace("ACC9||||||CR", "ACC9||||||" + obr24)
        return self.send(msg.replace("Roe^Richard", pid).encode())

    def status(self):
        return h.psql(self.db, "SELECT s.status, s.completed_at IS NOT NULL, q.status FROM scans s "
                      "JOIN scan_queue q ON q.scan_id = s.id ORDER BY q.queue_entered_at")

    def test_the_fillers_cancel_codes_cancel(self):
        # Table 0119: CR and DR answer the placer's CA and DC; OD is the
        # filler's own discontinue. Each left the order on the worklist.
        for n, code in enumerate(("OD", "CR", "DR")):
            self.assertEqual(self.order("FC-%dN" % n, "NW"), "AA", code)
            self.assertEqual(self.order("FC-%dC" % n, code), "AA", code)
            self.assertEqual(h.psql(self.db, "SELECT status FROM scans"), [["cancelled"]], code)
            self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM scan_queue WHERE status <> 'cancelled'"),
                             "0", code)

    def test_order_status_is_read_with_xo_and_nw(self):
        # IHE RAD-13 sends "procedure completed" as XO with ORC-5 CM; a RIS
        # that orders when the exam ends sends NW with CM. Both stayed
        # ordered. SC on a NW is every IHE new order's: still ordered.
        self.assertEqual(self.order("OS-1", "NW", "SC"), "AA")
        self.assertEqual(self.status(), [["ordered", "f", "waiting"]])
        self.assertEqual(self.order("OS-2", "XO", "CM"), "AA")
        self.assertEqual(self.status(), [["completed", "t", "waiting"]])
        h.psql(self.db, "DELETE FROM scan_queue; DELETE FROM scans")
        self.assertEqual(self.order("OS-3", "NW", "CM"), "AA")
        self.assertEqual(self.status(), [["completed", "t", "waiting"]])
        # A late XO saying scheduled moves nothing back.
        self.assertEqual(self.order("OS-4", "XO", "SC"), "AA")
        self.assertEqual(self.status(), [["completed", "t", "waiting"]])

    def test_a_new_order_in_progress_in_a_grouped_commit(self):
        # The set-based path writes new orders together: NW with IP too.
        frames = [ORM.format(cid="GS-%d" % n, ctl="NW").replace("ACC9", "ACC-GS%d" % n)
                  .replace("MRN9", "MRN-GS%d" % n).replace("|FL9^RIS||", "|FL9^RIS||" + st).encode()
                  for n, st in enumerate(("IP", "", "CM"))]
        self.assertEqual(pipelined(self.gw.mllp_port, frames), ["AA", "AA", "AA"])
        self.assertEqual(h.psql(self.db, "SELECT accession_number, status, completed_at IS NOT NULL FROM scans "
                                "ORDER BY 1"),
                         [["ACC-GS0", "in_progress", "f"], ["ACC-GS1", "ordered", "f"],
                          ["ACC-GS2", "completed", "t"]])

    def test_a_service_section_or_unknown_modality_is_left_out(self):
        # OBR-24 is the diagnostic service section (table 0074): RAD was
        # stored as a modality, and Rad or X-RAY refused the order (AE 103),
        # after which every change of it was AE 204.
        self.assertEqual(self.order("MO-1", "NW", obr24="RAD"), "AA")
        self.assertEqual(h.psql(self.db, "SELECT coalesce(scan_type, '-') FROM scans"), [["-"]])
        self.assertEqual(self.order("MO-2", "XO", obr24="RUS"), "AA")  # table 0074 ultrasound
        self.assertEqual(h.psql(self.db, "SELECT scan_type FROM scans"), [["US"]])
        for n, word in enumerate(("Rad", "X-RAY", "US-OB")):
            self.assertEqual(self.order("MO-3%d" % n, "XO", obr24=word), "AA", word)
        self.assertEqual(h.psql(self.db, "SELECT scan_type, status FROM scans"), [["US", "ordered"]])

    def test_a_priority_in_obr_5_alone_is_read(self):
        # v2.3 RIS still send the priority in OBR-5 (kept for backward
        # compatibility) with no quantity/timing: a STAT order was routine.
        msg = ORM.format(cid="P5-1", ctl="NW").replace("||||^^^20240102083000^^S", "||||") \
                 .replace("71046^XR CHEST 2 VIEWS^CPT4|", "71046^XR CHEST 2 VIEWS^CPT4|S")
        self.assertEqual(self.send(msg.encode()), "AA")
        self.assertEqual(h.psql(self.db, "SELECT s.priority, q.priority_score FROM scans s "
                                "JOIN scan_queue q ON q.scan_id = s.id"), [["stat", "4.000"]])

    def test_a_change_without_the_accession_finds_the_order_by_its_filler_number(self):
        # The NW had its accession in OBR-18; a status message of the ORC
        # alone (or a short OBR) falls back to the filler number ORC-3 as
        # its accession, and was AE 204 although the order has that filler
        # number.
        self.assertEqual(self.order("FN-1", "NW"), "AA")
        head = ORM.format(cid="{cid}", ctl="NW").split("ORC|")[0]
        sc = head.format(cid="FN-2") + "ORC|SC|PL9^RIS|FL9^RIS||IP\r"
        self.assertEqual(self.send(sc.encode()), "AA")
        self.assertEqual(h.psql(self.db, "SELECT accession_number, status FROM scans"), [["ACC9", "in_progress"]])
        xo = head.format(cid="FN-3") + "ORC|XO|PL9^RIS|FL9^RIS\rOBR|1|PL9^RIS|FL9^RIS|70450^CT HEAD^CPT4\r"
        self.assertEqual(self.send(xo.encode()), "AA")
        self.assertEqual(h.psql(self.db, "SELECT accession_number, procedure_code, status FROM scans"),
                         [["ACC9", "70450", "in_progress"]])
        # Another patient's message with that filler number finds nothing.
        other = (head.format(cid="FN-4") + "ORC|CA|PL9^RIS|FL9^RIS\r").replace("MRN9", "MRN-OTHER")
        seg = segments(mllp_exchange(self.gw.mllp_port, other.encode()))
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertTrue(seg["ERR"][3].startswith("204^"), seg["ERR"])
        ca = head.format(cid="FN-5") + "ORC|CA|PL9^RIS|FL9^RIS\r"
        self.assertEqual(self.send(ca.encode()), "AA")
        self.assertEqual(h.psql(self.db, "SELECT s.status, q.status FROM scans s JOIN scan_queue q "
                                "ON q.scan_id = s.id"), [["cancelled", "cancelled"]])

    def test_two_requested_procedures_of_one_accession_are_two_studies(self):
        # IHE: one order (accession Q1) requests two procedures, each its
        # own ORC/OBR with its OBR-19 and ZDS study UID. The second group
        # overwrote the first scan (AA): the chest CT was gone.
        head = ("MSH|^~\\&|RIS|RAD|MEDGATE|HOSP|20240101120000||ORM^O01^ORM_O01|{cid}|P|2.3.1\r"
                "PID|1||MRN9^^^HOSP^MR||Roe^Richard||19700101|M\r")
        def group(ctl, rp, code, uid, status=""):
            return ("ORC|%s|PQ1|FQ1||%s\r" % (ctl, status) +
                    "OBR|1|PQ1|FQ1|%s^CT %s^L||||||||||||||Q1|%s|||||CT\r" % (code, code, rp) +
                    "ZDS|%s^100^Application^DICOM\r" % uid)
        nw = head.format(cid="MR-1") + group("NW", "RPQ1", "CHEST", "1.2.840.99.1.1") + \
            group("NW", "RPQ2", "ABD", "1.2.840.99.1.2")
        self.assertEqual(self.send(nw.encode()), "AA")
        scans = ("SELECT s.requested_procedure_id, s.procedure_code, s.study_instance_uid, s.status, q.status "
                 "FROM scans s JOIN scan_queue q ON q.scan_id = s.id ORDER BY 1")
        self.assertEqual(h.psql(self.db, scans),
                         [["RPQ1", "CHEST", "1.2.840.99.1.1", "ordered", "waiting"],
                          ["RPQ2", "ABD", "1.2.840.99.1.2", "ordered", "waiting"]])
        # A status for one procedure moves that study only.
        sc = head.format(cid="MR-2") + group("SC", "RPQ1", "CHEST", "1.2.840.99.1.1", "IP")
        self.assertEqual(self.send(sc.encode()), "AA")
        self.assertEqual([r[3] for r in h.psql(self.db, scans)], ["in_progress", "ordered"])
        # A change naming a procedure the order never had: AE 204 at OBR-19.
        seg = segments(mllp_exchange(self.gw.mllp_port, (head.format(cid="MR-3") + group(
            "XO", "RPQ9", "HEAD", "1.2.840.99.1.9")).encode()))
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertTrue(seg["ERR"][1].startswith("OBR^1^19^204&"), seg["ERR"])  # v2.3.1: ERR-1
        # The report for the abdomen (accession and OBR-19) is the abdomen's.
        result = oru("MR-4", "Q1").decode().replace("|Q1|", "|Q1|RPQ2|", 1)
        self.assertEqual(self.send(result.encode()), "AA")
        self.assertEqual(h.psql(self.db, "SELECT s.requested_procedure_id FROM reports r JOIN scans s "
                                "ON s.id = r.scan_id"), [["RPQ2"]])

    def test_changes_and_cancels_do_not_rewrite_the_patient(self):
        # IHE RAD-13: the PID of a change or cancel is not to update the
        # patient. A CA carrying the RIS's stale copy undid an ADT rename.
        self.assertEqual(self.order("CP-1", "NW"), "AA")
        self.assertEqual(self.send(adt("CP-2", ev="A08", mrn="MRN9", name="Smith^Richard")), "AA")
        self.assertEqual(self.order("CP-3", "XO"), "AA")
        self.assertEqual(self.order("CP-4", "CA"), "AA")
        self.assertEqual(h.psql(self.db, "SELECT last_name, status FROM patients p JOIN scans s "
                                "ON s.patient_id = p.id"), [["Smith", "cancelled"]])
        # A new order is the RIS registering the patient: it updates, the
        # whole name as sent (a suffix and prefix too).
        self.assertEqual(self.order("CP-5", "NW", pid="Roe^Rick^^JR^DR"), "AA")
        self.assertEqual(h.psql(self.db, "SELECT first_name, name_suffix, name_prefix FROM patients"),
                         [["Rick", "JR", "DR"]])

    def test_change_or_cancel_of_unknown_accession_is_ae_204(self):
        for cid, ctl in (("U-1", "CA"), ("U-2", "XO")):
            seg = segments(mllp_exchange(self.gw.mllp_port, ORM.format(cid=cid, ctl=ctl).encode()))
            self.assertEqual(seg["MSA"][1], "AE", ctl)
            self.assertTrue(seg["ERR"][3].startswith("204^"), seg["ERR"])
            self.assertTrue(seg["ERR"][2].startswith("OBR^1^18"), seg["ERR"])  # where ACC9 was read
            self.assertIn("ACC9", seg["ERR"][8])
            self.assertEqual(h.psql(self.db, "SELECT status, error_location FROM hl7_messages "
                                    "WHERE control_id = :'p1'", cid)[0][0], "failed")
        # Nothing of those messages was written, not even their patient.
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM scans"), "0")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients"), "0")
        self.assertEqual(h.psql(self.db, "SELECT status FROM sync_logs WHERE external_id = 'U-1'"), [["failed"]])


def order_obr(acc):
    f = [""] * 25
    f[0], f[1], f[2] = "OBR", "1", "P-%s^RIS" % acc
    f[4] = "71046^XR CHEST^CPT4"
    f[18] = acc
    f[24] = "CR"
    return "|".join(f)


def order_for(cid, mrn, acc, name="Roe^Richard"):
    return ("MSH|^~\\&|RIS|RAD|MEDGATE|HOSP|20240101120000||ORM^O01^ORM_O01|%s|P|2.5.1\r"
            "PID|1||%s^^^HOSP^MR||%s||19700101|M\r"
            "ORC|NW|P-%s^RIS\r" % (cid, mrn, name, acc) + order_obr(acc) + "\r").encode()


def order_by_pid3(cid, pid3, acc):
    """An order whose PID-3 is given whole (no MR-typed identifier, say)."""
    return ("MSH|^~\\&|RIS|RAD|MEDGATE|HOSP|20240101120000||ORM^O01^ORM_O01|%s|P|2.5.1\r"
            "PID|1||%s||Roe^Richard||19700101|M\r"
            "ORC|NW|P-%s^RIS\r" % (cid, pid3, acc) + order_obr(acc) + "\r").encode()


class IdentifierMatchTest(GatewayTest):
    """Issue 4: the order's patient is "created or matched by identifier".
    An order that names the patient only by another identifier (an SSN in
    PID-3, no MR) files under the patient holding it; an MR-typed MRN that
    is new makes a new patient, whatever else it shares."""

    prefix = "idmatch"

    def patient_of(self, acc):
        return h.scalar(self.db, "SELECT p.medical_record_number FROM scans s JOIN patients p "
                        "ON p.id = s.patient_id WHERE s.accession_number = :'p1'", acc)

    def test_one_number_from_two_assigning_authorities_is_two_people(self):
        # Smith is 12345 at HOSPA; Jones is 12345 at CLINICB. Matching by
        # the number alone overwrote Smith with Jones.
        smith = adt("AU-1", mrn="12345", name="Smith^John").replace(b"12345^^^HOSP^MR", b"12345^^^HOSPA^MR")
        jones = adt("AU-2", mrn="12345", name="Jones^Mary").replace(b"12345^^^HOSP^MR", b"12345^^^CLINICB^MR")
        self.assertEqual(self.send(smith), "AA")
        seg = segments(mllp_exchange(self.gw.mllp_port, jones))
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertTrue(seg["ERR"][3].startswith("204^"), seg["ERR"])
        self.assertTrue(seg["ERR"][2].startswith("PID^1^3"), seg["ERR"])
        self.assertIn("another assigning authority (HOSPA)", seg["ERR"][8])
        self.assertEqual(h.psql(self.db, "SELECT last_name FROM patients"), [["Smith"]])
        # An order for CLINICB's 12345 in a grouped commit (the set-based
        # path) is refused too, and its neighbour is written.
        acks = pipelined(self.gw.mllp_port, [
            order_for("AU-3", "12345", "ACC-AU3").replace(b"12345^^^HOSP^MR", b"12345^^^CLINICB^MR"),
            order_for("AU-4", "OTHER9", "ACC-AU4")])
        self.assertEqual(acks, ["AE", "AA"])
        self.assertEqual(self.patient_of("ACC-AU4"), "OTHER9")
        self.assertIsNone(self.patient_of("ACC-AU3"))
        # The same authority named by its OID, or its namespace alone, is
        # the same authority: Smith again.
        for cid, pid3 in (("AU-5", b"12345^^^HOSPA&2.16.840.1.113883.19.5&ISO^MR"),
                          ("AU-6", b"12345^^^&2.16.840.1.113883.19.5&ISO^MR"),
                          ("AU-7", b"12345^^^^MR")):
            msg = adt(cid, ev="A08", mrn="12345", name="Smith^Johnny").replace(b"12345^^^HOSP^MR", pid3)
            self.assertEqual(self.send(msg), "AA", cid)
        self.assertEqual(h.psql(self.db, "SELECT last_name, first_name FROM patients "
                                "WHERE medical_record_number = '12345'"), [["Smith", "Johnny"]])
        # Orders, which name the authority by its OID one day and its
        # namespace the next: one authority, every time.
        for cid, pid3 in (("AU-8", b"12345^^^HOSPA&2.16.840.1.113883.19.5&ISO^MR"),
                          ("AU-9", b"12345^^^HOSPA^MR"),
                          ("AU-10", b"12345^^^HOSPA&2.16.840.1.113883.19.5&ISO^MR")):
            msg = order_for(cid, "12345", "ACC-" + cid).replace(b"12345^^^HOSP^MR", pid3)
            self.assertEqual(self.send(msg), "AA", cid)
        # A result for CLINICB's 12345: refused, the report not filed
        # under Smith.
        other = oru("AU-11", "ACC-AU-8").replace(b"MRN9^^^HOSP^MR", b"12345^^^CLINICB^MR")
        self.assertEqual(self.send(other), "AE")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM reports"), "0")
        # A merge of CLINICB's 12345 into another patient would move
        # Smith's studies: refused at MRG-1.
        self.assertEqual(self.send(adt("AU-12", mrn="SURV1")), "AA")
        merge = adt("AU-13", ev="A40", mrn="SURV1").decode().replace(
            "PV1|1|O\r", "MRG|12345^^^CLINICB^MR\r").encode()
        seg = segments(mllp_exchange(self.gw.mllp_port, merge))
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertTrue(seg["ERR"][2].startswith("MRG^1^1"), seg["ERR"])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients WHERE merged_into IS NOT NULL"), "0")

    def test_order_matched_by_another_identifier(self):
        self.assertEqual(self.send(adt("IM-1", mrn="PAT1", ssn="555")), "AA")
        self.assertEqual(self.send(order_by_pid3("IM-2", "555^^^USSSA^SS", "ACC-S1")), "AA")
        self.assertEqual(self.patient_of("ACC-S1"), "PAT1")
        # The same in a grouped commit with another order (the set-based
        # path must leave it to the one-by-one path, which finds PAT1).
        frames = [order_by_pid3("IM-3", "555^^^USSSA^SS", "ACC-S2"),
                  order_for("IM-4", "OTHER1", "ACC-O1")]
        self.assertEqual(pipelined(self.gw.mllp_port, frames), ["AA", "AA"])
        self.assertEqual(self.patient_of("ACC-S2"), "PAT1")
        self.assertEqual(self.patient_of("ACC-O1"), "OTHER1")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients"), "2")

    def test_a_new_mr_typed_mrn_is_a_new_patient(self):
        self.assertEqual(self.send(adt("IM-5", mrn="PAT2", ssn="556")), "AA")
        # A new MRN typed MR with PAT2's SSN: another record, not PAT2.
        self.assertEqual(self.send(order_for("IM-6", "NEW2", "ACC-N2")), "AA")
        self.assertEqual(self.send(order_by_pid3("IM-7", "NEW3^^^HOSP^MR~556^^^USSSA^SS", "ACC-N3")), "AA")
        self.assertEqual(self.patient_of("ACC-N3"), "NEW3")
        self.assertEqual(h.scalar(self.db, "SELECT p.medical_record_number FROM patient_identifiers i "
                                  "JOIN patients p ON p.id = i.patient_id WHERE i.value = '556'"), "PAT2")

    def test_a_new_untyped_or_mrn_typed_mrn_sharing_an_ssn_is_a_new_patient(self):
        # Twins under one SSN (or a placeholder 000000000): the second's MRN
        # is untyped (v2.3 senders leave CX.5 empty) or typed MRN. It was
        # matched by the shared SSN and overwrote the first twin.
        girl = order_by_pid3("TW-1", "13001^^^HOSP~000000000^^^SSA^SS", "ACC-TW1").replace(
            b"Roe^Richard", b"BABY^GIRL")
        boy = order_by_pid3("TW-2", "13002^^^HOSP~000000000^^^SSA^SS", "ACC-TW2").replace(
            b"Roe^Richard", b"BABY^BOY")
        other = adt("TW-3", mrn="12001", ssn="999999999", name="FIRST^PATIENT").replace(
            b"12001^^^HOSP^MR", b"12001^^^CERNER^MRN")
        second = adt("TW-4", mrn="12002", ssn="999999999", name="SECOND^PATIENT").replace(
            b"12002^^^HOSP^MR", b"12002^^^CERNER^MRN")
        self.assertEqual([self.send(m) for m in (girl, boy, other, second)], ["AA"] * 4)
        self.assertEqual(h.psql(self.db, "SELECT medical_record_number, last_name, first_name FROM patients "
                                "ORDER BY 1"),
                         [["12001", "FIRST", "PATIENT"], ["12002", "SECOND", "PATIENT"],
                          ["13001", "BABY", "GIRL"], ["13002", "BABY", "BOY"]])
        self.assertEqual(self.patient_of("ACC-TW2"), "13002")

    def test_a_bare_number_or_account_number_matches_nobody(self):
        # No authority (CX.4 empty), or an account number: no proof of who
        # the person is, so no match (A's record was overwritten).
        a = adt("IM-11", mrn="PAT5").decode().replace("~111^^^USSSA^SS", "~12345^^^^PI~888^^^HOSP^AN")
        self.assertEqual(self.send(a.encode()), "AA")
        self.assertEqual(self.send(order_by_pid3("IM-12", "999^^^^SS~12345^^^^PI", "ACC-B1")), "AA")
        self.assertEqual(self.patient_of("ACC-B1"), "999")
        self.assertEqual(self.send(order_by_pid3("IM-13", "998^^^^SS~888^^^HOSP^AN", "ACC-B2")), "AA")
        self.assertEqual(self.patient_of("ACC-B2"), "998")
        self.assertEqual(h.scalar(self.db, "SELECT first_name FROM patients WHERE medical_record_number = 'PAT5'"),
                         "Jane")

    def test_identifiers_of_two_patients_match_neither(self):
        self.assertEqual(self.send(adt("IM-8", mrn="PAT3", ssn="557")), "AA")
        self.assertEqual(self.send(adt("IM-9", mrn="PAT4", ssn="558")), "AA")
        self.assertEqual(self.send(order_by_pid3("IM-10", "557^^^USSSA^SS~558^^^USSSA^SS", "ACC-A")), "AA")
        self.assertEqual(self.patient_of("ACC-A"), "557")  # its own record, as before


class MergeTest(GatewayTest):
    """A01 for two MRNs, an order for each, A40 merging them: the survivor
    holds both scans and later messages for the old MRN land on it."""

    prefix = "merge"

    def test_merge_moves_scans_and_identifiers_and_old_mrn_lands_on_survivor(self):
        self.assertEqual(self.send(adt("M-1", mrn="KEEP1", ssn="901", name="Keep^Kate")), "AA")
        self.assertEqual(self.send(adt("M-2", mrn="OLD2", ssn="902", name="Old^Kate")), "AA")
        self.assertEqual(self.send(order_for("M-3", "KEEP1", "ACC-K", "Keep^Kate")), "AA")
        self.assertEqual(self.send(order_for("M-4", "OLD2", "ACC-O", "Old^Kate")), "AA")
        a40 = adt("M-5", ev="A40", mrn="KEEP1", ssn="901", name="Keep^Kate").decode() + \
            "MRG|OLD2^^^HOSP^MR||||||Old^Kate\r"
        self.assertEqual(self.send(a40.encode()), "AA")

        survivor = h.scalar(self.db, "SELECT id FROM patients WHERE medical_record_number = 'KEEP1'")
        self.assertEqual(h.psql(self.db, "SELECT merged_into = :'p1', merged_at IS NOT NULL, is_active "
                                "FROM patients WHERE medical_record_number = 'OLD2'", survivor),
                         [["t", "t", "f"]])
        self.assertEqual(h.psql(self.db, "SELECT accession_number FROM scans WHERE patient_id = :'p1' "
                                "ORDER BY 1", survivor), [["ACC-K"], ["ACC-O"]])
        # The retired record's identifiers moved over, marked old.
        self.assertEqual(h.psql(self.db, "SELECT value, use FROM patient_identifiers WHERE patient_id = :'p1' "
                                "ORDER BY value", survivor),
                         [["901", "usual"], ["902", "old"], ["KEEP1", "usual"], ["OLD2", "old"]])

        # Later messages for the old MRN: an update and a new order. Both
        # land on the survivor, which keeps its own registration's name and
        # phone: a message under the retired MRN describes the retired
        # record (late, or from a sender that missed the merge).
        self.assertEqual(self.send(adt("M-6", ev="A08", mrn="OLD2", ssn="902", name="Keep^Katherine",
                                       phone="555-0199")), "AA")
        self.assertEqual(self.send(order_for("M-7", "OLD2", "ACC-N", "Keep^Katherine")), "AA")
        self.assertEqual(h.psql(self.db, "SELECT first_name, phone FROM patients WHERE id = :'p1'", survivor),
                         [["Kate", "555-0100"]])
        self.assertEqual(h.scalar(self.db, "SELECT patient_id FROM scans WHERE accession_number = 'ACC-N'"),
                         survivor)
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients WHERE merged_into IS NULL"), "1")

        # The same A40 again (a new control id) changes nothing.
        self.assertEqual(self.send(a40.replace("|M-5|", "|M-8|").encode()), "AA")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients"), "2")

    def test_identifiers_the_survivor_lists_stay_current(self):
        # The duplicate record got the SSN first; the A40's PID-3 lists it
        # for the survivor: it moves over and is the survivor's usual one.
        self.assertEqual(self.send(adt("D-1", mrn="DUP1", ssn="999")), "AA")
        self.assertEqual(self.send(adt("D-2", mrn="KEEP9", ssn="777")), "AA")
        a40 = adt("D-3", ev="A40", mrn="KEEP9", ssn="999").decode() + "MRG|DUP1^^^HOSP^MR\r"
        self.assertEqual(self.send(a40.encode()), "AA")
        survivor = h.scalar(self.db, "SELECT id FROM patients WHERE medical_record_number = 'KEEP9'")
        self.assertEqual(h.psql(self.db, "SELECT value, use FROM patient_identifiers WHERE patient_id = :'p1' "
                                "ORDER BY value", survivor),
                         [["777", "usual"], ["999", "usual"], ["DUP1", "old"], ["KEEP9", "usual"]])

    def a40(self, cid, survivor, prior):
        msg = adt(cid, ev="A40", mrn=survivor, ssn="9" + survivor).decode() + "MRG|%s^^^HOSP^MR\r" % prior
        return self.send(msg.encode())

    def scans_of(self, mrn):
        return h.psql(self.db, "SELECT s.accession_number FROM scans s JOIN patients p ON p.id = s.patient_id "
                      "WHERE p.medical_record_number = :'p1' AND p.merged_into IS NULL ORDER BY 1", mrn)

    def test_merge_chain_lands_everything_on_the_last_survivor(self):
        # A into B, then B into C: A's and B's rows are C's, and A's MRN
        # leads to C.
        for mrn in ("CHA", "CHB", "CHC"):
            self.assertEqual(self.send(order_for("C-" + mrn, mrn, "ACC-" + mrn)), "AA")
        self.assertEqual(self.a40("C-1", "CHB", "CHA"), "AA")
        self.assertEqual(self.a40("C-2", "CHC", "CHB"), "AA")
        self.assertEqual(self.scans_of("CHC"), [["ACC-CHA"], ["ACC-CHB"], ["ACC-CHC"]])
        self.assertEqual(self.send(order_for("C-3", "CHA", "ACC-LATE")), "AA")
        self.assertEqual(self.scans_of("CHC")[-1], ["ACC-LATE"])
        self.assertEqual(h.psql(self.db, "SELECT medical_record_number, merged_into IS NULL FROM patients "
                                "ORDER BY 1"), [["CHA", "f"], ["CHB", "f"], ["CHC", "t"]])

    def test_merge_of_an_mrn_merged_into_someone_else_follows_the_chain(self):
        # A into B, then an A40 that merges A (retired, now B) into C: B is
        # the record A stands for, so B is merged into C with everything it
        # holds; no second retired record of A is made.
        for mrn in ("MA", "MB", "MC"):
            self.assertEqual(self.send(order_for("X-" + mrn, mrn, "ACC-" + mrn)), "AA")
        self.assertEqual(self.a40("X-1", "MB", "MA"), "AA")
        self.assertEqual(self.a40("X-2", "MC", "MA"), "AA")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients WHERE medical_record_number = 'MA'"),
                         "1")
        self.assertEqual(self.scans_of("MC"), [["ACC-MA"], ["ACC-MB"], ["ACC-MC"]])
        c = h.scalar(self.db, "SELECT id FROM patients WHERE medical_record_number = 'MC'")
        self.assertEqual(h.psql(self.db, "SELECT medical_record_number, merged_into = :'p1', is_active "
                                "FROM patients WHERE medical_record_number <> 'MC' ORDER BY 1", c),
                         [["MA", "t", "f"], ["MB", "t", "f"]])
        self.assertEqual(h.psql(self.db, "SELECT value, use FROM patient_identifiers WHERE patient_id = :'p1' "
                                "AND value LIKE 'M%' ORDER BY 1", c),
                         [["MA", "old"], ["MB", "old"], ["MC", "usual"]])
        # Later messages for A and for B land on C.
        self.assertEqual(self.send(order_for("X-3", "MA", "ACC-A2")), "AA")
        self.assertEqual(self.send(order_for("X-4", "MB", "ACC-B2")), "AA")
        self.assertEqual(h.psql(self.db, "SELECT DISTINCT patient_id FROM scans"), [[c]])
        # The same A40 again, and B into C (done by the chain): AA, nothing new.
        self.assertEqual(self.a40("X-5", "MC", "MA"), "AA")
        self.assertEqual(self.a40("X-6", "MC", "MB"), "AA")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients"), "3")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients WHERE merged_into IS NULL"), "1")
        # Merging C back into A (which is C) would make a loop: refused.
        seg = segments(mllp_exchange(self.gw.mllp_port, (adt("X-7", ev="A40", mrn="MA").decode()
                                                         + "MRG|MC^^^HOSP^MR\r").encode()))
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertTrue(seg["ERR"][3].startswith("102^"), seg["ERR"])
        self.assertTrue(seg["ERR"][2].startswith("MRG^1^1"), seg["ERR"])

    def test_merge_of_an_unknown_mrn_still_redirects_it(self):
        self.assertEqual(self.send(adt("N-1", mrn="KEEP2")), "AA")
        a40 = adt("N-2", ev="A40", mrn="KEEP2").decode() + "MRG|GONE9^^^HOSP^MR\r"
        self.assertEqual(self.send(a40.encode()), "AA")
        self.assertEqual(self.send(order_for("N-3", "GONE9", "ACC-G")), "AA")
        self.assertEqual(h.scalar(self.db, "SELECT p.medical_record_number FROM scans s "
                                  "JOIN patients p ON p.id = s.patient_id"), "KEEP2")

    def test_merge_naming_the_prior_record_by_another_identifier(self):
        # MRG-1 with the EMR's enterprise id (PI) alone: a placeholder under
        # "E5002" was retired and the real duplicate stayed live with its
        # studies (AA).
        keep = adt("MP-1", mrn="5001").replace(b"~111^^^USSSA^SS", b"~E5001^^^EPI^PI")
        dup = adt("MP-2", mrn="5002").replace(b"~111^^^USSSA^SS", b"~E5002^^^EPI^PI")
        self.assertEqual([self.send(keep), self.send(dup)], ["AA", "AA"])
        self.assertEqual(self.send(order_for("MP-3", "5002", "ACC-MP")), "AA")
        a40 = keep.decode().replace("|MP-1|", "|MP-4|").replace("ADT^A01", "ADT^A40").replace(
            "PV1|1|O\r", "MRG|E5002^^^EPI^PI\r").encode()
        self.assertEqual(self.send(a40), "AA")
        survivor = h.scalar(self.db, "SELECT id FROM patients WHERE medical_record_number = '5001'")
        self.assertEqual(h.psql(self.db, "SELECT medical_record_number, merged_into = :'p1' FROM patients "
                                "WHERE merged_into IS NOT NULL", survivor), [["5002", "t"]])
        self.assertEqual(h.scalar(self.db, "SELECT patient_id FROM scans WHERE accession_number = 'ACC-MP'"),
                         survivor)
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients"), "2")  # no placeholder
        # The same A40 again changes nothing.
        self.assertEqual(self.send(a40.replace(b"|MP-4|", b"|MP-5|")), "AA")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients"), "2")

    def test_v2_3_merge_events_merge_as_a40_does(self):
        # A18, A34 and A36 (v2.3's merges, still sent by feeds of that
        # generation) were AR 201: the duplicate stayed live with its studies.
        for n, ev in enumerate(("A18", "A34", "A36")):
            keep, old = "K%d" % n, "O%d" % n
            self.assertEqual(self.send(adt("V3-%dA" % n, mrn=keep, ssn="70%d" % n)), "AA", ev)
            self.assertEqual(self.send(adt("V3-%dB" % n, mrn=old, ssn="71%d" % n)), "AA", ev)
            self.assertEqual(self.send(order_for("V3-%dC" % n, old, "ACC-V3%d" % n)), "AA", ev)
            merge = adt("V3-%dD" % n, ev=ev, mrn=keep, ssn="70%d" % n).decode().replace(
                "PV1|1|O\r", "MRG|%s^^^HOSP^MR\r" % old).replace("^ADT_A01|", "|")
            self.assertEqual(self.send(merge.encode()), "AA", ev)
            self.assertEqual(h.psql(self.db, "SELECT k.medical_record_number FROM patients o "
                                    "JOIN patients k ON k.id = o.merged_into "
                                    "WHERE o.medical_record_number = :'p1'", old), [[keep]], ev)
            self.assertEqual(h.scalar(self.db, "SELECT p.medical_record_number FROM scans s JOIN patients p "
                                      "ON p.id = s.patient_id WHERE s.accession_number = :'p1'",
                                      "ACC-V3%d" % n), keep, ev)

    def test_merge_without_mrg_is_ae_101(self):
        seg = segments(mllp_exchange(self.gw.mllp_port, adt("N-4", ev="A40", mrn="KEEP3")))
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertTrue(seg["ERR"][3].startswith("101^"), seg["ERR"])
        self.assertEqual(seg["ERR"][2], "")  # no MRG segment to point at
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients"), "0")


PDF = b"%PDF-1.3\n% a tiny test document\n%%EOF\n"


def result_obr(acc, status, issued="20240102095900"):
    f = [""] * 33
    f[0], f[1], f[2], f[3] = "OBR", "1", "PL9^RIS", "FL9^RIS"
    f[4] = "71046^XR CHEST^CPT4"
    f[7] = "20240102090000"     # observation time -> effective_at
    f[18] = acc                 # accession
    f[22] = issued              # results reported -> issued_at
    f[25] = status              # F final, P preliminary, C corrected
    f[32] = "ID77&Ray&Rita"     # principal result interpreter (CNN)
    return "|".join(f)


def oru(cid, acc, status="F", text=("Lungs are clear.", "No acute disease."), pdf=None, uid=None,
        issued="20240102095900", recs=()):
    segs = ["MSH|^~\\&|RIS|RAD|MEDGATE|HOSP|20240102100000||ORU^R01^ORU_R01|%s|P|2.5.1" % cid,
            "PID|1||MRN9^^^HOSP^MR||Roe^Richard||19700101|M",
            result_obr(acc, status, issued)]
    n = 0
    for line in text:
        n += 1
        segs.append("OBX|%d|TX|59776-5^Findings^LN||%s||||||%s" % (n, line, status))
    n += 1
    segs.append("OBX|%d|TX|19005-8^Impression^LN||Normal chest.||||||%s" % (n, status))
    for line in recs:
        n += 1
        segs.append("OBX|%d|TX|18783-1^Recommendation^LN||%s||||||%s" % (n, line, status))
    if uid:
        n += 1
        segs.append("OBX|%d|ST|113014^DICOM Study^DCM||%s||||||%s" % (n, uid, status))
    if pdf is not None:
        n += 1
        segs.append("OBX|%d|ED|18748-4^Diagnostic Imaging Report^LN||^AP^PDF^Base64^%s||||||%s"
                    % (n, base64.b64encode(pdf).decode(), status))
    return ("\r".join(segs) + "\r").encode()


class ResultAdapterTest(GatewayTest):
    prefix = "results"

    def test_result_links_to_the_ordered_scan_and_completes_it(self):
        self.assertEqual(self.send(ORM.format(cid="R-1", ctl="NW").encode()), "AA")
        self.assertEqual(self.send(oru("R-2", "ACC9", status="P", text=("Prelim line.",))), "AA")
        self.assertEqual(h.psql(self.db, "SELECT r.report_status, s.status, q.status FROM reports r "
                                "JOIN scans s ON s.id = r.scan_id JOIN scan_queue q ON q.scan_id = s.id"),
                         [["preliminary", "ordered", "waiting"]])
        self.assertEqual(self.send(oru("R-3", "ACC9", pdf=PDF)), "AA")
        rows = h.psql(self.db, "SELECT r.report_status, replace(r.findings_text, E'\\n', '|'), r.impression, "
                      "r.reporting_radiologist_name, r.external_id, s.accession_number, s.status, q.status "
                      "FROM reports r JOIN scans s ON s.id = r.scan_id JOIN scan_queue q ON q.scan_id = s.id")
        # The final report replaced the preliminary one (same OBR-3).
        self.assertEqual(rows, [["final", "Lungs are clear.|No acute disease.|Normal chest.", "Normal chest.",
                                 "Rita Ray", "FL9", "ACC9", "reported", "completed"]])
        files = h.psql(self.db, "SELECT mime_type, file_size_bytes, encode(sha256, 'hex'), "
                       "left(storage_uri, 28) FROM scan_files")
        self.assertEqual(files, [["application/pdf", str(len(PDF)), hashlib.sha256(PDF).hexdigest(),
                                  "data:application/pdf;base64,"]])
        # The same result again (a new control id): still one report, one file.
        self.assertEqual(self.send(oru("R-4", "ACC9", pdf=PDF)), "AA")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM reports"), "1")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM scan_files"), "1")

    def test_result_without_obr18_finds_the_order_by_its_filler_number(self):
        # The order named its accession in OBR-18 (ACC9, filler FL9); the
        # result has no OBR-18, so its accession falls back to the filler
        # number: the same study, not a second one.
        self.assertEqual(self.send(ORM.format(cid="FO-1", ctl="NW").encode()), "AA")
        self.assertEqual(self.send(oru("FO-2", "")), "AA")
        self.assertEqual(h.psql(self.db, "SELECT s.accession_number, s.status, q.status FROM reports r "
                                "JOIN scans s ON s.id = r.scan_id JOIN scan_queue q ON q.scan_id = s.id"),
                         [["ACC9", "reported", "completed"]])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM scans"), "1")

    def test_result_for_an_unknown_study_creates_it_and_links_by_uid(self):
        self.assertEqual(self.send(oru("R-5", "ACC-X", uid="1.2.3.4.5")), "AA")
        self.assertEqual(h.psql(self.db, "SELECT s.accession_number, s.study_instance_uid, s.status, "
                                "p.medical_record_number FROM reports r JOIN scans s ON s.id = r.scan_id "
                                "JOIN patients p ON p.id = s.patient_id"),
                         [["ACC-X", "1.2.3.4.5", "reported", "MRN9"]])
        # No accession (OBR-18 and OBR-3 empty) but the same study UID: same scan.
        msg = oru("R-6", "", uid="1.2.3.4.5").replace(b"|FL9^RIS|", b"||")
        self.assertEqual(self.send(msg), "AA")
        self.assertEqual(h.scalar(self.db, "SELECT count(DISTINCT scan_id) FROM reports"), "1")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM scans"), "1")
        reports = h.psql(self.db, "SELECT id, external_id FROM reports ORDER BY external_id")
        self.assertEqual([r[1] for r in reports], ["1.2.3.4.5", "FL9"])
        # Sent again: the report keyed by the study UID is replaced, not added.
        self.assertEqual(self.send(msg.replace(b"|R-6|", b"|R-6b|")), "AA")
        self.assertEqual(h.psql(self.db, "SELECT id, external_id FROM reports ORDER BY external_id"), reports)

    def test_attachment_only_follow_up_keeps_the_text(self):
        self.assertEqual(self.send(oru("R-8", "ACC9")), "AA")
        follow = oru("R-9", "ACC9", text=(), pdf=PDF)
        follow = b"\r".join(seg for seg in follow.split(b"\r") if b"19005-8" not in seg)
        self.assertEqual(self.send(follow), "AA")
        self.assertEqual(h.psql(self.db, "SELECT replace(findings_text, E'\\n', '|'), impression FROM reports"),
                         [["Lungs are clear.|No acute disease.|Normal chest.", "Normal chest."]])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM scan_files"), "1")

    def test_late_preliminary_does_not_replace_the_final_report(self):
        self.assertEqual(self.send(ORM.format(cid="L-1", ctl="NW").encode()), "AA")
        self.assertEqual(self.send(oru("L-2", "ACC9", status="F")), "AA")
        # The preliminary version arrives after the final one (a resend, a
        # slow interface): AA, but the final report stays as it was.
        self.assertEqual(self.send(oru("L-3", "ACC9", status="P", text=("Prelim line.",))), "AA")
        self.assertEqual(h.psql(self.db, "SELECT r.report_status, replace(r.findings_text, E'\\n', '|'), "
                                "s.status FROM reports r JOIN scans s ON s.id = r.scan_id"),
                         [["final", "Lungs are clear.|No acute disease.|Normal chest.", "reported"]])
        # A correction still replaces it.
        self.assertEqual(self.send(oru("L-4", "ACC9", status="C", text=("Corrected line.",))), "AA")
        self.assertEqual(h.psql(self.db, "SELECT report_status, replace(findings_text, E'\\n', '|') FROM reports"),
                         [["corrected", "Corrected line.|Normal chest."]])

    def test_unverified_and_incomplete_results_are_partial(self):
        # OBR-25 R (stored, not verified) and A (some results): partial,
        # which neither reports the study nor closes its worklist entry.
        self.assertEqual(self.send(ORM.format(cid="PA-1", ctl="NW").encode()), "AA")
        self.assertEqual(self.send(oru("PA-2", "ACC9", status="R", text=("Unverified.",))), "AA")
        self.assertEqual(h.psql(self.db, "SELECT r.report_status, s.status, q.status FROM reports r "
                                "JOIN scans s ON s.id = r.scan_id JOIN scan_queue q ON q.scan_id = s.id"),
                         [["partial", "ordered", "waiting"]])
        self.assertEqual(self.send(oru("PA-3", "ACC9", status="A", text=("Some.",))), "AA")
        self.assertEqual(h.scalar(self.db, "SELECT report_status FROM reports"), "partial")
        # The final replaces it; a partial version arriving late does not.
        self.assertEqual(self.send(oru("PA-4", "ACC9", status="F")), "AA")
        self.assertEqual(self.send(oru("PA-5", "ACC9", status="R", text=("Late.",))), "AA")
        self.assertEqual(h.psql(self.db, "SELECT report_status, replace(findings_text, E'\\n', '|') FROM reports"),
                         [["final", "Lungs are clear.|No acute disease.|Normal chest."]])

    def test_a_version_issued_before_the_stored_one_does_not_replace_it(self):
        self.assertEqual(self.send(oru("V-1", "ACC9", status="F", issued="20240102095900")), "AA")
        self.assertEqual(self.send(oru("V-2", "ACC9", status="C", text=("Corrected line.",),
                                       issued="20240103080000")), "AA")
        # The first final again, under a new control id (a resend by an
        # interface engine): AA, but the correction issued later stays.
        self.assertEqual(self.send(oru("V-3", "ACC9", status="F", issued="20240102095900")), "AA")
        self.assertEqual(h.psql(self.db, "SELECT report_status, replace(findings_text, E'\\n', '|') FROM reports"),
                         [["corrected", "Corrected line.|Normal chest."]])
        # Cancelled, then a late preliminary version: still cancelled.
        self.assertEqual(self.send(oru("V-4", "ACC9", status="X", issued="20240104080000")), "AA")
        self.assertEqual(self.send(oru("V-5", "ACC9", status="P", text=("Prelim.",),
                                       issued="20240105080000")), "AA")
        self.assertEqual(h.scalar(self.db, "SELECT report_status FROM reports"), "cancelled")

    def test_the_original_final_resent_does_not_undo_its_correction(self):
        # No OBR-22 anywhere: a final without one never replaces a
        # correction.
        self.assertEqual(self.send(oru("U-1", "ACC9", status="F", text=("No mass.",), issued="")), "AA")
        self.assertEqual(self.send(oru("U-2", "ACC9", status="C", text=("2 cm mass, left kidney.",),
                                       issued="")), "AA")
        self.assertEqual(self.send(oru("U-3", "ACC9", status="F", text=("No mass.",), issued="")), "AA")
        self.assertEqual(h.psql(self.db, "SELECT report_status, replace(findings_text, E'\\n', '|'), "
                                "issued_at FROM reports"),
                         [["corrected", "2 cm mass, left kidney.|Normal chest.", ""]])
        # A final issued after the correction (a new signature) replaces it.
        later = oru("U-4", "ACC9", status="F", text=("Re-read: 2 cm cyst.",), issued="20240103080000")
        self.assertEqual(self.send(later), "AA")
        self.assertEqual(h.scalar(self.db, "SELECT report_status FROM reports"), "final")

    def test_a_report_id_never_moves_the_report_to_another_study(self):
        # Two requested procedures of one order, one OBR-3 (FL9) for both:
        # the second study's report must not take the first one's away.
        self.assertEqual(self.send(oru("MV-1", "ACC9", text=("Chest: 8 mm nodule.",))), "AA")
        seg = segments(mllp_exchange(self.gw.mllp_port, oru("MV-2", "ACC10", text=("Abdomen: normal.",))))
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertEqual(seg["ERR"][2], "OBR^1^3^1^1^1")
        self.assertTrue(seg["ERR"][3].startswith("204^"), seg["ERR"])
        self.assertIn("another study", seg["ERR"][8])
        self.assertEqual(h.psql(self.db, "SELECT s.accession_number, replace(r.findings_text, E'\\n', '|') "
                                "FROM reports r JOIN scans s ON s.id = r.scan_id"),
                         [["ACC9", "Chest: 8 mm nodule.|Normal chest."]])

    def test_two_groups_of_one_result_with_one_report_id_are_refused(self):
        # One ORU, two OBR groups for the same accession and OBR-3 (two
        # requested procedures, OBR-19): one report would overwrite the
        # other, so the message is refused whole, at the second OBR-3.
        first = oru("G-1", "ACC9", text=("Chest: 8 mm nodule.",))
        second = oru("G-1", "ACC9", text=("Abdomen: normal.",)).split(b"\r", 2)[2]
        seg = segments(mllp_exchange(self.gw.mllp_port, first + second))
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertTrue(seg["ERR"][3].startswith("205^"), seg["ERR"])
        self.assertEqual(seg["ERR"][2], "OBR^2^3^1^1^1")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM reports"), "0")
        self.assertEqual(h.scalar(self.db, "SELECT status FROM hl7_messages WHERE control_id = 'G-1'"),
                         "failed")

    def test_one_report_repeated_for_two_procedures_is_filed_once(self):
        # One OBR-3 for two requested procedures of two studies, the same
        # report text in each group (one report covering both): filed
        # once, and both studies are reported.
        self.assertEqual(self.send(ORM.format(cid="GR-1", ctl="NW").encode()), "AA")  # ACC9
        self.assertEqual(self.send(ORM.format(cid="GR-2", ctl="NW").replace("ACC9", "ACC10")
                                   .replace("PL9^RIS|FL9^RIS", "PL10^RIS|FL10^RIS").encode()), "AA")
        first = oru("GR-3", "ACC9", text=("Chest and abdomen: normal.",))
        second = oru("GR-3", "ACC10", text=("Chest and abdomen: normal.",)).split(b"\r", 2)[2]
        self.assertEqual(self.send(first + second), "AA")
        self.assertEqual(h.psql(self.db, "SELECT s.accession_number FROM reports r JOIN scans s ON s.id = r.scan_id"),
                         [["ACC9"]])
        self.assertEqual(h.psql(self.db, "SELECT accession_number, status FROM scans ORDER BY 1"),
                         [["ACC10", "reported"], ["ACC9", "reported"]])

    def test_a_cancelled_report_may_be_filed_again_under_the_right_study(self):
        # Misfiled under ACC9, withdrawn (X), then sent for ACC10 with the
        # same OBR-3: the cancelled report moves to the right study.
        self.assertEqual(self.send(oru("MF-1", "ACC9", text=("Abdomen: normal.",))), "AA")
        self.assertEqual(self.send(oru("MF-2", "ACC9", status="X", issued="20240103080000")), "AA")
        self.assertEqual(self.send(oru("MF-3", "ACC10", text=("Abdomen: normal.",),
                                       issued="20240104080000")), "AA")
        self.assertEqual(h.psql(self.db, "SELECT s.accession_number, r.report_status FROM reports r "
                                "JOIN scans s ON s.id = r.scan_id"), [["ACC10", "final"]])

    def test_a_result_does_not_rewrite_the_patients_demographics(self):
        # The order registered MRN9 as Roe^Richard, born 1970-01-01, male.
        # A result whose PID says otherwise is no registration: the record
        # stays as it was (a stale RIS copy, or the sign of a wrong
        # patient), and the report is filed.
        self.assertEqual(self.send(ORM.format(cid="DM-1", ctl="NW").encode()), "AA")
        other = oru("DM-2", "ACC9").replace(b"Roe^Richard||19700101|M", b"Zeta^Zed||19991231|F")
        self.assertEqual(self.send(other), "AA")
        self.assertEqual(h.psql(self.db, "SELECT last_name, first_name, date_of_birth, gender FROM patients"),
                         [["Roe", "Richard", "1970-01-01", "male"]])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM reports"), "1")
        # A result for a patient nobody registered creates it with its PID.
        self.assertEqual(self.send(oru("DM-3", "ACC5").replace(b"MRN9^^^HOSP^MR||Roe^Richard",
                                                              b"MRN5^^^HOSP^MR||Poe^Edgar")
                                   .replace(b"|FL9^RIS|", b"|FL5^RIS|")), "AA")
        self.assertEqual(h.psql(self.db, "SELECT last_name FROM patients WHERE medical_record_number = 'MRN5'"),
                         [["Poe"]])
        # Found by another identifier (PID-3 has the SSN only): not
        # rewritten either.
        self.assertEqual(self.send(adt("DM-4", mrn="MRN4", ssn="444")), "AA")  # Doe^Jane
        by_ssn = oru("DM-5", "ACC4").replace(b"MRN9^^^HOSP^MR||Roe^Richard||19700101|M",
                                             b"444^^^USSSA^SS||Zeta^Zed||19991231|M") \
                                    .replace(b"|FL9^RIS|", b"|FL4^RIS|")
        self.assertEqual(self.send(by_ssn), "AA")
        self.assertEqual(h.psql(self.db, "SELECT p.last_name, p.first_name, p.date_of_birth FROM reports r "
                                "JOIN scans s ON s.id = r.scan_id JOIN patients p ON p.id = s.patient_id "
                                "WHERE r.external_id = 'FL4'"), [["Doe", "Jane", "1980-01-02"]])

    def test_a_late_final_neither_replaces_a_cancel_nor_closes_the_study(self):
        self.assertEqual(self.send(ORM.format(cid="Z-1", ctl="NW").encode()), "AA")
        self.assertEqual(self.send(oru("Z-2", "ACC9", status="X", issued="20240104080000")), "AA")
        # A final issued before the cancel arrives late: ignored, and the
        # study is not marked reported nor its worklist entry completed.
        self.assertEqual(self.send(oru("Z-3", "ACC9", status="F", issued="20240102095900")), "AA")
        self.assertEqual(h.psql(self.db, "SELECT r.report_status, s.status, q.status FROM reports r "
                                "JOIN scans s ON s.id = r.scan_id JOIN scan_queue q ON q.scan_id = s.id"),
                         [["cancelled", "ordered", "waiting"]])

    def test_a_new_version_with_text_replaces_the_whole_report(self):
        self.assertEqual(self.send(oru("T-1", "ACC9", status="F", recs=("Follow-up CT in 6 months.",))), "AA")
        self.assertEqual(h.psql(self.db, "SELECT recommendations, reporting_radiologist_name FROM reports"),
                         [["Follow-up CT in 6 months.", "Rita Ray"]])
        # The correction has no recommendation and no signer (OBR-32): it
        # is the whole report now, so neither stays from the final one.
        corr = oru("T-2", "ACC9", status="C", text=("Corrected line.",)).replace(b"|ID77&Ray&Rita", b"|")
        self.assertEqual(self.send(corr), "AA")
        self.assertEqual(h.psql(self.db, "SELECT report_status, replace(findings_text, E'\\n', '|'), impression, "
                                "recommendations IS NULL, reporting_radiologist_name IS NULL FROM reports"),
                         [["corrected", "Corrected line.|Normal chest.", "Normal chest.", "t", "t"]])

    def test_a_scan_found_by_its_uid_gets_the_accession(self):
        # A result naming only its study (no OBR-18, no OBR-3) makes the scan.
        only_uid = oru("U-1", "", uid="1.2.3.9").replace(b"|FL9^RIS|", b"||")
        self.assertEqual(self.send(only_uid), "AA")
        self.assertEqual(h.psql(self.db, "SELECT accession_number IS NULL, study_instance_uid FROM scans"),
                         [["t", "1.2.3.9"]])
        # The next version names both: the scan found by the UID gets ACC5.
        self.assertEqual(self.send(oru("U-2", "ACC5", uid="1.2.3.9")), "AA")
        # A version naming only the accession finds the same scan.
        self.assertEqual(self.send(oru("U-3", "ACC5", status="C")), "AA")
        self.assertEqual(h.psql(self.db, "SELECT accession_number, study_instance_uid FROM scans"),
                         [["ACC5", "1.2.3.9"]])
        self.assertEqual(h.scalar(self.db, "SELECT count(DISTINCT scan_id) FROM reports"), "1")

    def test_accession_and_uid_of_two_studies_is_ae_204_at_the_uid(self):
        only_uid = oru("U-4", "", uid="1.2.3.8").replace(b"|FL9^RIS|", b"||")
        self.assertEqual(self.send(only_uid), "AA")                      # scan 1: the UID
        self.assertEqual(self.send(ORM.format(cid="U-5", ctl="NW").encode()), "AA")  # scan 2: ACC9
        seg = segments(mllp_exchange(self.gw.mllp_port, oru("U-6", "ACC9", uid="1.2.3.8")))
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertTrue(seg["ERR"][3].startswith("204^"), seg["ERR"])
        self.assertTrue(seg["ERR"][2].startswith("OBX^4^5"), seg["ERR"])  # the UID's OBX
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM reports r JOIN scans s ON s.id = r.scan_id "
                                  "WHERE s.accession_number = 'ACC9'"), "0")

    def test_cancel_for_an_unknown_study_is_ae_204(self):
        seg = segments(mllp_exchange(self.gw.mllp_port, oru("K-1", "ACC-NONE", status="X")))
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertTrue(seg["ERR"][3].startswith("204^"), seg["ERR"])
        self.assertTrue(seg["ERR"][2].startswith("OBR^1^18"), seg["ERR"])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM scans"), "0")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM reports"), "0")

    def test_a_new_signer_replaces_the_linked_radiologist(self):
        h.psql(self.db, "INSERT INTO users (organization_id, email, role, practitioner_id) "
               "VALUES (:'p1', 'rita@example.org', 'radiologist', 'ID77')", h.DEMO_ORG)
        self.assertEqual(self.send(oru("W-1", "ACC9", status="P")), "AA")  # signed by ID77, a user here
        self.assertEqual(h.psql(self.db, "SELECT u.email, r.reporting_radiologist_name FROM reports r "
                                "JOIN users u ON u.id = r.reporting_radiologist_id"),
                         [["rita@example.org", "Rita Ray"]])
        # The final is signed by ID88, who is no user here: the name and the
        # link both follow the message (no link to Rita under Sam's name).
        final = oru("W-2", "ACC9", status="F").replace(b"ID77&Ray&Rita", b"ID88&Sun&Sam")
        self.assertEqual(self.send(final), "AA")
        self.assertEqual(h.psql(self.db, "SELECT reporting_radiologist_id IS NULL, reporting_radiologist_name "
                                "FROM reports"), [["t", "Sam Sun"]])

    def test_result_for_another_patients_study_is_refused(self):
        self.assertEqual(self.send(ORM.format(cid="R-10", ctl="NW").encode()), "AA")  # MRN9's ACC9
        other = oru("R-11", "ACC9").replace(b"MRN9^^^HOSP^MR||Roe^Richard", b"MRN7^^^HOSP^MR||Poe^Edgar")
        seg = segments(mllp_exchange(self.gw.mllp_port, other))
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertTrue(seg["ERR"][3].startswith("204^"), seg["ERR"])
        self.assertIn("another patient", seg["ERR"][8])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM reports"), "0")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients WHERE medical_record_number = 'MRN7'"), "0")

    def test_result_naming_another_patients_report_is_refused(self):
        # MRN9's final report has the filler number FL9 (OBR-3). A result
        # for MRN7's study that names FL9 too (a reused or mistyped number)
        # must not move MRN9's report to MRN7: AE 204 at OBR-3, as for a
        # study of another patient, whatever the status of the new version.
        self.assertEqual(self.send(oru("RX-1", "ACC9")), "AA")
        mine = h.psql(self.db, "SELECT r.id, r.scan_id, r.findings_text FROM reports r")
        for cid, status in (("RX-2", "F"), ("RX-3", "P")):
            other = oru(cid, "ACC7", status=status, text=("Someone else.",)).replace(
                b"MRN9^^^HOSP^MR||Roe^Richard", b"MRN7^^^HOSP^MR||Poe^Edgar")
            seg = segments(mllp_exchange(self.gw.mllp_port, other))
            self.assertEqual(seg["MSA"][1], "AE", cid)
            self.assertTrue(seg["ERR"][3].startswith("204^"), seg["ERR"])
            self.assertTrue(seg["ERR"][2].startswith("OBR^1^3^1"), seg["ERR"])  # where FL9 was read
            self.assertIn("another patient", seg["ERR"][8])
        self.assertEqual(h.psql(self.db, "SELECT r.id, r.scan_id, r.findings_text FROM reports r"), mine)
        self.assertEqual(h.psql(self.db, "SELECT s.accession_number, p.medical_record_number FROM scans s "
                                "JOIN patients p ON p.id = s.patient_id"), [["ACC9", "MRN9"]])

    def test_bad_attachment_is_ae_naming_the_obx(self):
        msg = oru("R-7", "ACC9", pdf=b"x").replace(b"^Base64^eA==", b"^Base64^***")
        seg = segments(mllp_exchange(self.gw.mllp_port, msg))
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertTrue(seg["ERR"][3].startswith("102^"), seg["ERR"])
        self.assertTrue(seg["ERR"][2].startswith("OBX^4^5^1^5"), seg["ERR"])  # OBX 4, ED.5 data
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM reports"), "0")


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
        self.assertTrue(seg["ERR"][3].startswith("103^"), seg["ERR"])  # table value not found
        self.assertTrue(seg["ERR"][2].startswith("PID^1^8"), seg["ERR"])
        row = h.psql(self.db, "SELECT status, error FROM hl7_messages WHERE control_id='RF-1'")[0]
        self.assertEqual(row[0], "failed")
        self.assertIn("SQLSTATE 23514", row[1])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients"), "0")
        seg = segments(mllp_exchange(self.gw.mllp_port, adt("RF-2", sex="female", mrn="MRN2")))
        self.assertEqual(seg["MSA"][1], "AA")

    def test_refusal_is_located_with_the_mapping_the_message_was_mapped_with(self):
        """A reload between the mapping of a message and its commit: the AE
        still points where the value was read, not where today's files
        would read it."""
        gate = 736202
        h.psql(self.db, "CREATE FUNCTION hold() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
               " PERFORM pg_advisory_xact_lock_shared(%d); RETURN NEW; END $$;"
               "CREATE TRIGGER hold BEFORE INSERT ON hl7_messages"
               " FOR EACH ROW EXECUTE FUNCTION hold()" % gate)
        lock = subprocess.Popen(["psql", "-h", h.pg_host(), "-U", "postgres", "-d", self.db, "-X",
                                 "-q", "-At"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        lock.stdin.write("SELECT 'locked', pg_advisory_lock(%d);\n" % gate)
        lock.stdin.flush()
        self.assertTrue(lock.stdout.readline().startswith("locked"))
        answer = {}
        sender = threading.Thread(target=lambda: answer.update(
            ack=mllp_exchange(self.gw.mllp_port, adt("RL-1", sex="Q"))))
        sender.start()
        waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %d " \
                  "AND NOT granted" % gate
        deadline = time.time() + 30
        while time.time() < deadline and h.scalar(self.db, waiting) == "0":
            time.sleep(0.05)
        self.assertEqual(h.scalar(self.db, waiting), "1", "the statement never reached the gate")

        path = os.path.join(self.maps, "adt.json")
        with open(path) as f:
            doc = json.load(f)
        doc["fields"]["patient.gender"] = {"from": "PID-9"}  # empty in the message
        with open(path, "w") as f:
            json.dump(doc, f, indent=2)
        t = time.time() + 2
        os.utime(path, (t, t))
        deadline = time.time() + 30
        while time.time() < deadline and "mapping files reloaded" not in self.gw.read_log():
            time.sleep(0.2)
        self.assertIn("mapping files reloaded", self.gw.read_log())

        lock.stdin.close()  # the statement goes on
        lock.wait(timeout=30)
        lock.stdout.close()
        sender.join(timeout=30)
        seg = segments(answer["ack"])
        self.assertEqual(seg["MSA"][1], "AE")
        self.assertTrue(seg["ERR"][2].startswith("PID^1^8"), seg["ERR"])
        self.assertEqual(h.scalar(self.db, "SELECT error_location FROM hl7_messages WHERE control_id='RL-1'")
                         .split("^")[:3], ["PID", "1", "8"])

    def test_a_corrected_resend_commits_before_what_follows_it(self):
        # One connection: an A01 its adapter refuses, the corrected A01
        # under the same MSH-10, then an A08 that renames the patient. The
        # corrected copy repeats a key of the batch, so the batch ends
        # before it; committed after the A08, it would undo the rename.
        frames = [adt("K-1", mrn="M9", sex="Q", name="Old^Name"),
                  adt("K-1", mrn="M9", sex="female", name="Old^Name"),
                  adt("K-2", ev="A08", mrn="M9", sex="female", name="New^Name")]
        self.assertEqual(pipelined(self.gw.mllp_port, frames), ["AE", "AA", "AA"])
        self.assertEqual(h.scalar(self.db, "SELECT last_name FROM patients"), "New")
        # The corrected copy was not held back to a commit of its own.
        self.assertEqual(h.psql(self.db, "SELECT m.control_id, m.status FROM hl7_messages m"
                                         " ORDER BY m.received_at, m.control_id"),
                         [["K-1", "failed"], ["K-1", "received"], ["K-2", "received"]])

    def test_bad_message_in_a_grouped_commit_spares_its_neighbours(self):
        frames = [adt("G-%d" % i, mrn="G%d" % i, sex="Q" if i == 3 else "female") for i in range(8)]
        codes = pipelined(self.gw.mllp_port, frames)
        self.assertEqual(codes, ["AA"] * 3 + ["AE"] + ["AA"] * 4)
        self.assertEqual(h.psql(self.db, "SELECT medical_record_number FROM patients ORDER BY 1"),
                         [["G%d" % i] for i in range(8) if i != 3])
        # They were committed together: fewer batches than messages.
        metrics = self.gw.get("/metrics")[2]
        batches = int(re.search(r"^medgate_intake_batches_total (\d+)", metrics, re.M).group(1))
        self.assertLess(batches, len(frames))


ORG = "00000000-0000-4000-8000-00000000b001"


def wait_for_held_transaction(db):
    """Waits until another session sleeps inside its open transaction
    (pg_sleep after its writes): its row locks are held from then on."""
    deadline = time.time() + 20
    while time.time() < deadline:
        if h.scalar(db, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                    "AND query LIKE 'SELECT pg_sleep%'") != "0":
            return
        time.sleep(0.05)
    raise AssertionError("the other session did not get to its pg_sleep")


def order_input(mrn, acc, control="NW", name="Roe"):
    doc = {"message": {"type": "ORM", "trigger": "O01"}, "order": {"control": control},
           "patient": {"medical_record_number": mrn, "last_name": name},
           "patient_identifiers": [{"value": mrn, "system": "HOSP", "type_code": "MR"}],
           "scan": {"priority": "routine"}}
    if acc is not None:
        doc["scan"]["accession_number"] = acc
    return json.dumps(doc)


def adt_input(mrn, trigger="A01", name="Doe"):
    return json.dumps({"message": {"type": "ADT", "trigger": trigger},
                       "patient": {"medical_record_number": mrn, "last_name": name},
                       "patient_identifiers": [{"value": mrn, "system": "HOSP"}]})


class BatchFunctionTest(unittest.TestCase):
    """The set-based side of the adapters (adapter.h "batch"): each batch
    function writes the messages it can write together and returns their
    positions; everything else is left for the per-message function."""

    def setUp(self):
        self.db = h.create_database("batchfn")
        h.migrate(self.db)
        h.psql(self.db, "INSERT INTO organizations (id, name, identifier) VALUES (:'p1', 'B', 'b')", ORG)

    def call(self, fn, *inputs):
        arr = "ARRAY[" + ",".join("%s::jsonb" % ("'" + i.replace("'", "''") + "'") for i in inputs) + "]"
        return h.scalar(self.db, "SELECT %s(array_fill(:'p1'::uuid, ARRAY[%d]), "
                        "array_fill(gen_random_uuid(), ARRAY[%d]), %s)" % (fn, len(inputs), len(inputs), arr),
                        ORG)

    def test_order_batch_gives_way_to_an_order_committed_while_it_waited(self):
        # Another instance's NW for the same accession commits while the
        # batch waits for the accession's lock: the batch must not make a
        # second scan of that accession. It chooses after the wait, so it
        # leaves that message to the one-by-one path and writes the other.
        h.psql(self.db, "SELECT medgate_adapter_hl7v2_adt(:'p1', gen_random_uuid(), :'p2'::jsonb)",
               ORG, adt_input("CP"))
        other = subprocess.Popen(["psql", "-h", h.pg_host(), "-U", "postgres", "-d", self.db, "-X", "-q",
                                  "-v", "ON_ERROR_STOP=1", "-v", "p1=" + ORG, "-v",
                                  "p2=" + order_input("CP", "ACC-C")],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        other.stdin.write("BEGIN;\nSELECT medgate_adapter_hl7v2_order(:'p1', gen_random_uuid(), :'p2'::jsonb);\n"
                          "SELECT pg_sleep(1.5);\nCOMMIT;\n")
        other.stdin.flush()
        wait_for_held_transaction(self.db)
        sel = self.call("medgate_adapter_hl7v2_order_batch", order_input("CP", "ACC-C"),
                        order_input("CQ", "ACC-Q"))
        self.assertEqual(sel, "{2}")
        _, err = other.communicate(timeout=30)
        self.assertEqual(other.returncode, 0, err)
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM scans WHERE accession_number = 'ACC-C'"), "1")

    def test_order_batch_takes_only_plain_new_orders(self):
        h.psql(self.db, "SELECT medgate_adapter_hl7v2_order(:'p1', gen_random_uuid(), :'p2'::jsonb)",
               ORG, order_input("OLD-P", "ACC-OLD"))
        h.psql(self.db, "SELECT medgate_adapter_hl7v2_adt(:'p1', gen_random_uuid(), :'p2'::jsonb)",
               ORG, adt_input("KNOWN", name="Known"))
        # A retired MRN: RET was merged into OLD-P.
        h.psql(self.db, "INSERT INTO patients (organization_id, medical_record_number, merged_into, "
               "merged_at, is_active, source) SELECT :'p1', 'RET', id, now(), false, 'hl7v2' "
               "FROM patients WHERE medical_record_number = 'OLD-P'", ORG)
        got = self.call("medgate_adapter_hl7v2_order_batch",
                        order_input("NEW-1", "ACC-1"),            # 1: new order, new patient
                        order_input("NEW-2", "ACC-2", "CA"),      # 2: a cancel
                        order_input("NEW-3", "ACC-OLD"),          # 3: accession already known
                        order_input("RET", "ACC-4"),              # 4: retired MRN
                        order_input("NEW-5", None),               # 5: no accession
                        order_input("KNOWN", "ACC-6", name="Roe2"),  # 6: known patient, new order
                        order_input("OLD-P", "ACC-7"))            # 7: survivor of a merge
        self.assertEqual(got, "{1,6}")
        rows = h.psql(self.db, "SELECT s.accession_number, p.medical_record_number, p.last_name, q.status "
                      "FROM scans s JOIN patients p ON p.id = s.patient_id "
                      "JOIN scan_queue q ON q.scan_id = s.id ORDER BY 1")
        self.assertEqual(rows, [["ACC-1", "NEW-1", "Roe", "waiting"], ["ACC-6", "KNOWN", "Roe2", "waiting"],
                                ["ACC-OLD", "OLD-P", "Roe", "waiting"]])
        self.assertEqual(h.psql(self.db, "SELECT value FROM patient_identifiers ORDER BY 1"),
                         [["KNOWN"], ["NEW-1"], ["OLD-P"]])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients WHERE medical_record_number "
                                  "IN ('NEW-2', 'NEW-3', 'NEW-5')"), "0")

    def test_order_batch_leaves_a_new_order_for_a_known_study_uid(self):
        # A result naming only its study UID created the scan: a new order
        # for that UID is not "plain" (it fills in that scan, one by one),
        # and the set-based path must not try to insert a second scan.
        h.psql(self.db, "SELECT medgate_adapter_hl7v2_result(:'p1', gen_random_uuid(), :'p2'::jsonb)", ORG,
               json.dumps({"message": {"type": "ORU", "trigger": "R01"},
                           "patient": {"medical_record_number": "UIDP"},
                           "scan": {"study_instance_uid": "1.2.840.5"},
                           "report": {"report_status": "preliminary"}}))
        uid_order = json.loads(order_input("UIDP", "ACC-U"))
        uid_order["scan"]["study_instance_uid"] = "1.2.840.5"
        uid_order = json.dumps(uid_order)
        got = self.call("medgate_adapter_hl7v2_order_batch", uid_order, order_input("PLAIN", "ACC-P"))
        self.assertEqual(got, "{2}")
        h.psql(self.db, "SELECT medgate_adapter_hl7v2_order(:'p1', gen_random_uuid(), :'p2'::jsonb)",
               ORG, uid_order)
        self.assertEqual(h.psql(self.db, "SELECT s.accession_number, coalesce(s.study_instance_uid, '-'), "
                                "p.medical_record_number, q.status FROM scans s "
                                "JOIN patients p ON p.id = s.patient_id JOIN scan_queue q ON q.scan_id = s.id "
                                "ORDER BY 1"),
                         [["ACC-P", "-", "PLAIN", "waiting"], ["ACC-U", "1.2.840.5", "UIDP", "waiting"]])

    def test_adt_batch_leaves_merges_and_missing_mrns(self):
        h.psql(self.db, "SELECT medgate_adapter_hl7v2_adt(:'p1', gen_random_uuid(), :'p2'::jsonb)",
               ORG, adt_input("HAVE", name="Before"))
        got = self.call("medgate_adapter_hl7v2_adt_batch",
                        adt_input("FRESH"), adt_input("HAVE", "A40"), adt_input("HAVE", "A08", "After"),
                        adt_input(""))
        self.assertEqual(got, "{1,3}")
        self.assertEqual(h.psql(self.db, "SELECT medical_record_number, last_name FROM patients ORDER BY 1"),
                         [["FRESH", "Doe"], ["HAVE", "After"]])


    def test_batch_keeps_arrival_order_for_a_merged_patient(self):
        # OLD was merged into KEEP. Two updates of that one person in one
        # commit, the first by the retired MRN, the second by the live one:
        # they share no key, so the intake marks both fast. The set-based
        # path must write what one by one writes: the later name.
        h.psql(self.db, "SELECT medgate_adapter_hl7v2_adt(:'p1', gen_random_uuid(), :'p2'::jsonb)",
               ORG, adt_input("KEEP", name="First"))
        h.psql(self.db, "SELECT medgate_adapter_hl7v2_adt(:'p1', gen_random_uuid(), :'p2'::jsonb)", ORG,
               json.dumps({"message": {"type": "ADT", "trigger": "A40"},
                           "patient": {"medical_record_number": "KEEP"},
                           "merge": {"prior_medical_record_number": "OLD"}}))
        for fast in ("true", "false"):
            got = h.psql(self.db, "BEGIN; SELECT count(*) FROM medgate_adapt_batch("
                         "ARRAY['hl7v2.adt', 'hl7v2.order'], array_fill(:'p1'::uuid, ARRAY[2]), "
                         "ARRAY[gen_random_uuid(), gen_random_uuid()], ARRAY[:'p2'::jsonb, :'p3'::jsonb], "
                         "ARRAY[%s, %s]) WHERE err_state IS NOT NULL; "
                         "SELECT last_name FROM patients WHERE merged_into IS NULL; ROLLBACK" % (fast, fast),
                         ORG, adt_input("OLD", "A08", "Older"), order_input("KEEP", "ACC-K", name="Newer"))
            self.assertEqual(got, [["0"], ["Newer"]], "fast: " + fast)


class ConcurrentMergeTest(unittest.TestCase):
    """A message for a patient that an A40 of another connection (or
    instance) merges while the message waits for the patient's row: it
    lands on the survivor, never on the retired record."""

    def setUp(self):
        self.db = h.create_database("racemerge")
        h.migrate(self.db)
        h.psql(self.db, "INSERT INTO organizations (id, name, identifier) VALUES (:'p1', 'B', 'b')", ORG)
        for mrn in ("RA", "RB", "RC"):
            h.psql(self.db, "SELECT medgate_adapter_hl7v2_adt(:'p1', gen_random_uuid(), :'p2'::jsonb)",
                   ORG, adt_input(mrn))

    def merge_held(self, survivor, prior):
        """An A40 merging prior into survivor, its transaction held open
        (in the background) until meanwhile() commits it."""
        doc = json.dumps({"message": {"type": "ADT", "trigger": "A40"},
                          "patient": {"medical_record_number": survivor},
                          "merge": {"prior_medical_record_number": prior}})
        return self.held("medgate_adapter_hl7v2_adt", doc)

    def held(self, function, doc):
        """An adapter function's call in a transaction held open after it
        (in the background), as another instance's grouped commit in
        flight would be, until meanwhile() commits it."""
        proc = subprocess.Popen(["psql", "-h", h.pg_host(), "-U", "postgres", "-d", self.db, "-X", "-q",
                                 "-At", "-v", "ON_ERROR_STOP=1", "-v", "p1=" + ORG, "-v", "p2=" + doc],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc.stdin.write("BEGIN;\nSELECT %s(:'p1', gen_random_uuid(), :'p2'::jsonb);\n"
                         "SELECT 'held';\n" % function)
        proc.stdin.flush()
        while True:
            line = proc.stdout.readline()
            if line.strip() == "held":
                return proc
            if not line:
                raise AssertionError("the held call failed: " + proc.stderr.read())

    def meanwhile(self, first, second):
        """Runs second() while first's transaction is open, waits until it
        is waiting for a lock first holds (so the test cannot pass by the
        two merely running one after the other), commits first and returns
        second()'s result."""
        out = {}

        def run():
            try:
                out["value"] = second()
            except Exception as e:  # re-raised below, in the test's thread
                out["error"] = e
        t = threading.Thread(target=run)
        t.start()
        try:
            h.wait_for(lambda: h.scalar(self.db, "SELECT count(*) FROM pg_locks WHERE NOT granted") != "0",
                       "the second call to wait for the first transaction")
        finally:
            _, err = first.communicate(input="COMMIT;\n", timeout=30)
            t.join(timeout=60)
        self.assertEqual(first.returncode, 0, err)
        if "error" in out:
            raise out["error"]
        return out.get("value")

    def adapt(self, function, doc):
        return h.psql(self.db, "SELECT %s(:'p1', gen_random_uuid(), :'p2'::jsonb)" % function, ORG, doc)

    def test_an_order_for_a_record_being_merged_goes_to_the_survivor(self):
        self.meanwhile(self.merge_held("RB", "RA"),
                       lambda: self.adapt("medgate_adapter_hl7v2_order", order_input("RA", "ACC-RACE")))
        self.assertEqual(h.psql(self.db, "SELECT p.medical_record_number, p.merged_into IS NULL "
                                "FROM scans s JOIN patients p ON p.id = s.patient_id"), [["RB", "t"]])

    def test_an_order_for_a_prior_mrn_nobody_held_waits_for_the_merge(self):
        # The A40 makes a retired record for NEWP (no one held it), which
        # the unique MRN index leaves out: without a lock on the MRN the
        # order saw no patient and made a second, live NEWP.
        self.meanwhile(self.merge_held("RB", "NEWP"),
                       lambda: self.adapt("medgate_adapter_hl7v2_order", order_input("NEWP", "ACC-NEWP")))
        self.assertEqual(h.psql(self.db, "SELECT p.medical_record_number FROM scans s "
                                "JOIN patients p ON p.id = s.patient_id"), [["RB"]])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients WHERE medical_record_number = 'NEWP' "
                                  "AND merged_into IS NULL"), "0")

    def test_the_set_based_order_path_waits_for_the_merge_too(self):
        # The batch function leaves the message to the one-by-one path,
        # which finds the survivor, instead of writing a live NEWQ.
        sel = self.meanwhile(self.merge_held("RB", "NEWQ"), lambda: h.scalar(
            self.db, "SELECT medgate_adapter_hl7v2_order_batch(ARRAY[:'p1'::uuid], "
            "ARRAY[gen_random_uuid()], ARRAY[:'p2'::jsonb])", ORG, order_input("NEWQ", "ACC-NEWQ")))
        self.assertEqual(sel, "{}")
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients WHERE medical_record_number = 'NEWQ' "
                                  "AND merged_into IS NULL"), "0")

    def test_a_patient_found_by_identifier_waits_for_its_creation(self):
        # Another instance registers M9 with its SSN (999 at SSA) and has
        # not committed yet when an order names the patient by the SSN only
        # (PID-3 999, typed SS): the order waits, then finds M9 by the
        # identifier, instead of making a second patient numbered 999.
        reg = json.dumps({"message": {"type": "ADT", "trigger": "A04"},
                          "patient": {"medical_record_number": "M9", "last_name": "Roe"},
                          "patient_identifiers": [
                              {"value": "M9", "system": "HOSP", "type_code": "MR"},
                              {"value": "999", "system": "SSA", "type_code": "SS"}]})
        order = json.loads(order_input("999", "ACC-SSN"))
        order["patient_identifiers"] = [{"value": "999", "system": "SSA", "type_code": "SS"}]
        self.meanwhile(self.held("medgate_adapter_hl7v2_adt", reg),
                       lambda: self.adapt("medgate_adapter_hl7v2_order", json.dumps(order)))
        self.assertEqual(h.psql(self.db, "SELECT p.medical_record_number FROM scans s "
                                "JOIN patients p ON p.id = s.patient_id WHERE s.accession_number = 'ACC-SSN'"),
                         [["M9"]])
        self.assertEqual(h.scalar(self.db, "SELECT count(*) FROM patients WHERE medical_record_number = '999'"),
                         "0")

    def test_one_new_accession_for_two_patients_at_once_is_one_study(self):
        # Another instance's NW for ACC-TWO (patient RA) is not committed
        # yet when a NW for ACC-TWO names RC: the second waits for it, then
        # finds a study of another patient (AE 204), not a second study.
        with self.assertRaises(h.PsqlError) as e:
            self.meanwhile(self.held("medgate_adapter_hl7v2_order", order_input("RA", "ACC-TWO")),
                           lambda: self.adapt("medgate_adapter_hl7v2_order", order_input("RC", "ACC-TWO")))
        self.assertIn("another patient", e.exception.stderr)
        self.assertEqual(h.psql(self.db, "SELECT p.medical_record_number FROM scans s "
                                "JOIN patients p ON p.id = s.patient_id WHERE s.accession_number = 'ACC-TWO'"),
                         [["RA"]])

    def test_a_merge_into_a_record_being_merged_follows_it(self):
        # RB into RC is under way when RA into RB comes: RA ends on RC,
        # one step, as if the two had come one after the other.
        self.meanwhile(self.merge_held("RC", "RB"), lambda: self.adapt(
            "medgate_adapter_hl7v2_adt",
            json.dumps({"message": {"type": "ADT", "trigger": "A40"},
                        "patient": {"medical_record_number": "RB"},
                        "merge": {"prior_medical_record_number": "RA"}})))
        self.assertEqual(h.psql(self.db, "SELECT p.medical_record_number, s.medical_record_number FROM patients p "
                                "JOIN patients s ON s.id = p.merged_into ORDER BY 1"),
                         [["RA", "RC"], ["RB", "RC"]])


class SharedRecordsInOneCommitTest(GatewayTest):
    """Messages of one grouped commit that name the same patient are written
    one after the other, in order; the others together."""

    prefix = "shared"

    def test_admit_order_update_for_one_patient_in_one_commit(self):
        frames = [adt("S-1", mrn="SAME", name="Doe^Ann"), order_for("S-2", "SAME", "ACC-S1", "Doe^Ann"),
                  adt("S-3", ev="A08", mrn="SAME", name="Smith^Ann"), order_for("S-4", "OTHER", "ACC-S2"),
                  order_for("S-5", "SAME", "ACC-S3", "Smith^Ann")]
        codes = pipelined(self.gw.mllp_port, frames)
        self.assertEqual(codes, ["AA"] * len(frames))
        self.assertEqual(h.psql(self.db, "SELECT medical_record_number, last_name FROM patients ORDER BY 1"),
                         [["OTHER", "Roe"], ["SAME", "Smith"]])
        self.assertEqual(h.psql(self.db, "SELECT s.accession_number, p.medical_record_number FROM scans s "
                                "JOIN patients p ON p.id = s.patient_id ORDER BY 1"),
                         [["ACC-S1", "SAME"], ["ACC-S2", "OTHER"], ["ACC-S3", "SAME"]])
        metrics = self.gw.get("/metrics")[2]
        batches = int(re.search(r"^medgate_intake_batches_total (\d+)", metrics, re.M).group(1))
        self.assertLess(batches, len(frames))


    def test_admissions_of_distinct_patients_are_written_together(self):
        frames = [adt("T-%d" % i, mrn="T%d" % i, ssn="7%d" % i) for i in range(8)]
        self.assertEqual(pipelined(self.gw.mllp_port, frames), ["AA"] * len(frames))
        self.assertEqual(h.psql(self.db, "SELECT medical_record_number FROM patients ORDER BY 1"),
                         [["T%d" % i] for i in range(8)])
        metrics = self.gw.get("/metrics")[2]
        batches = int(re.search(r"^medgate_intake_batches_total (\d+)", metrics, re.M).group(1))
        batched = int(re.search(r"^medgate_intake_batched_messages_total (\d+)", metrics, re.M).group(1))
        # Fewer commits than messages: some commit held two or more, and
        # all of its messages went through the batch function together.
        self.assertLess(batches, len(frames))
        self.assertGreaterEqual(batched, 2)
        self.assertLessEqual(batched, len(frames))

class FailedBatchRetryTest(unittest.TestCase):
    """A grouped commit whose COMMIT fails after an adapter refused one of
    its messages: everything it said was rolled back, so each message is
    retried alone from scratch. Two test triggers set it up: the patient
    ONCE is refused while the sequence boom has not been used, and the
    message BOOM fails its first COMMIT (a deferred trigger that uses the
    sequence; sequences are not rolled back)."""

    def setUp(self):
        self.db = h.create_database("retry")
        h.migrate(self.db)
        h.psql(self.db, "CREATE SEQUENCE boom;"
               "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
               " IF NEW.control_id = 'BOOM' AND nextval('boom') = 1 THEN"
               "  RAISE EXCEPTION 'first commit of BOOM fails'; END IF; RETURN NULL; END $$;"
               "CREATE CONSTRAINT TRIGGER boom AFTER INSERT ON hl7_messages"
               " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION boom();"
               "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
               " IF NEW.medical_record_number = 'ONCE' AND NOT (SELECT is_called FROM boom) THEN"
               "  RAISE EXCEPTION 'refused before BOOM failed' USING ERRCODE = '23514'; END IF;"
               " RETURN NEW; END $$;"
               "CREATE TRIGGER refuse BEFORE INSERT ON patients FOR EACH ROW EXECUTE FUNCTION refuse()")
        self.gw = h.Gateway(self.db).start()

    def tearDown(self):
        self.gw.stop()

    def test_retry_after_a_failed_commit_runs_the_adapter_again(self):
        codes = pipelined(self.gw.mllp_port, [adt("ONCE-1", mrn="ONCE"), adt("BOOM", mrn="OTHER")])
        self.assertEqual(codes, ["AA", "AA"])
        self.assertEqual(h.psql(self.db, "SELECT control_id, status FROM hl7_messages ORDER BY 1"),
                         [["BOOM", "received"], ["ONCE-1", "received"]])
        self.assertEqual(h.psql(self.db, "SELECT medical_record_number FROM patients ORDER BY 1"),
                         [["ONCE"], ["OTHER"]])
        metrics = self.gw.get("/metrics")[2]
        self.assertRegex(metrics, r"(?m)^medgate_intake_failed_batches_total 1$")


class PipelinedSenderOrderTest(unittest.TestCase):
    """A sender that pipelines: its frames commit in the order they came,
    even when they span several grouped commits (batch_max 2 here, so up to
    three could be in flight at once). A probe trigger records each stored
    message's transaction and the snapshot its statement ran under: no
    frame's transaction may start while an earlier frame's is uncommitted."""

    def setUp(self):
        self.db = h.create_database("order")
        h.migrate(self.db)
        h.psql(self.db, "CREATE TABLE probe (ctl text, xid xid8, snap pg_snapshot);"
               "CREATE FUNCTION probe() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
               " INSERT INTO probe VALUES (NEW.control_id, pg_current_xact_id(), pg_current_snapshot());"
               " RETURN NEW; END $$;"
               "CREATE TRIGGER probe AFTER INSERT ON hl7_messages FOR EACH ROW EXECUTE FUNCTION probe()")
        self.gw = h.Gateway(self.db, config={"intake": {"batch_max": 2}}).start()

    def tearDown(self):
        self.gw.stop()

    def test_updates_of_one_patient_commit_in_arrival_order(self):
        n = 24
        frames = [adt("P-%02d" % i, ev="A01" if i == 0 else "A08", mrn="PIPE", name="Name%02d^Ann" % i)
                  for i in range(n)]
        self.assertEqual(pipelined(self.gw.mllp_port, frames), ["AA"] * n)
        self.assertEqual(h.psql(self.db, "SELECT last_name FROM patients"), [["Name%02d" % (n - 1)]])
        # For each frame, is the previous frame's transaction visible to it
        # (committed before its statement began) or the same one?
        rows = h.psql(self.db, "SELECT p.ctl, p.xid = q.xid OR pg_visible_in_snapshot(q.xid, p.snap) "
                      "FROM probe p JOIN probe q ON q.ctl = 'P-' || lpad((substr(p.ctl, 3)::int - 1)::text, 2, '0') "
                      "ORDER BY p.ctl")
        self.assertEqual(len(rows), n - 1)
        self.assertEqual([r for r in rows if r[1] != "t"], [])
        batches = int(re.search(r"^medgate_intake_batches_total (\d+)", self.gw.get("/metrics")[2], re.M).group(1))
        self.assertGreaterEqual(batches, n // 2)  # batch_max 2: they did span many commits


if __name__ == "__main__":
    h.main()
