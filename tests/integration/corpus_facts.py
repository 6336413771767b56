"""Expected facts for the HL7 v2 test corpus (tests/data/hl7v2/).

Every value here was read by hand: first from the message text (segments
split at CR/LF, fields at MSH-1, components/repetitions/sub-components at
MSH-2), then through the shipped mapping files (mappings/adt.json,
orders.json, results.json and mappings/tables/*.json, with the path grammar
of docs/mapping-guide.md). None of it was produced by running the gateway,
so a test that compares the database with these facts checks the gateway
against an independent reading of the message.

Layout
------
FACTS maps a path relative to tests/data/hl7v2 to a dict:

  type         MSH-9.1 ^ MSH-9.2.
  ack          MSA-1 expected for the message sent on its own to a fresh
               database with the shipped mappings and the default listener
               (ack_mode "auto"). "AA"/"AE"/"AR" in original mode. Three
               messages ask for enhanced mode (MSH-15/MSH-16 valued); for
               those it is "CA", see ack_sent. Every entry has one.
  ack_sent     Only present (False) when MSH-15 is NE: the sender asked for
               no accept acknowledgment, so none goes back on the wire. The
               stored hl7_messages.ack_code is still "CA".
  patient      patients columns of the patient the message names (matched by
               medical_record_number). Names: PID-5.1 (its first
               sub-component) and PID-5.2, as sent. date_of_birth: PID-7 via
               hl7_date. gender: PID-8 via tables/sex.json.
  identifiers  patient_identifiers rows from PID-3 (value = CX.1,
               type_code = CX.5; None = CX.5 empty, so the column is NULL).
               Only for the ADT and order routes. results.json has no
               patient_identifiers[] group, so ORU entries leave this out.
  scan         scans columns the route fills and that can be read in the
               message. priority is always filled (table default
               "routine"). Columns with no value in the message are left
               out, not listed as None.
  report       ORU only: report_status (OBR-25 of the first OBR via
               tables/report_status.json, default "registered") and short
               substrings the findings_text / impression must contain.
               Keys are left out when the message has no such text.
  merge        A40 only: survivor_mrn (PID-3 MR of the first PID) and
               merged_mrn (MRG-1 MR of the first MRG).
  why          Where each value sits in the message.

Where ack is "AE", the mapping stops the message, so nothing reaches the
patients/scans tables and the entry has no patient/scan facts.

Assumptions
-----------
* Each file is sent alone to a fresh database. Several files share
  MSH-3/MSH-4/MSH-10 (see SHARED_CONTROL_IDS). The gateway answers a second
  message with the same sender and control id but a different payload
  as a duplicate (AE 205), and it never maps it. Several files also share an
  MRN with different demographics (PATID1234 is EVERYMAN/ADAM 1988-08-18 in
  the v2.8 GHH files, EVERYMAN/ADAM 1961-06-15 in ADT01-28.hl7 and
  Jones/William in the LRI file), so the patient facts hold only right after
  that file.
* LF files are sent with CR segment terminators (medgate send does this).
  BOMs are dropped.

SKIPPED lists the corpus files whose MSH-9 the gateway does not take, with
the acknowledgment that should come back.
"""

# Patient blocks that recur across files (copied into each entry below).
_GHH_PATIENT = {
    # PID-3 rep 1 PATID1234^5^M11^test1&2.16.1&HCD^MR^GOOD HEALTH HOSPITAL,
    # PID-5 EVERYMAN&&&&Aniston^ADAM^A^III..., PID-7 198808181126+0215, PID-8 M
    "medical_record_number": "PATID1234",
    "last_name": "EVERYMAN",
    "first_name": "ADAM",
    "date_of_birth": "1988-08-18",
    "gender": "male",
}
_GHH_IDENTIFIERS = [
    {"value": "PATID1234", "type_code": "MR"},
    {"value": "123456789", "type_code": "SS"},
]
_GHH_WHY = ("PID-3 rep1 PATID1234 (CX.5 MR, the MRN), rep2 123456789 SS; "
            "PID-5.1 EVERYMAN (first sub-component of EVERYMAN&&&&Aniston), "
            "PID-5.2 ADAM; PID-7 198808181126+0215 -> 1988-08-18; PID-8 M")

_DUCK_PATIENT = {
    # PID|1||10006579^^^1^MR^1||DUCK^DONALD^D||19241010|M
    "medical_record_number": "10006579",
    "last_name": "DUCK",
    "first_name": "DONALD",
    "date_of_birth": "1924-10-10",
    "gender": "male",
}
_DUCK_WHY = ("PID-3 10006579^^^1^MR^1 (MR); PID-5 DUCK^DONALD^D; "
             "PID-7 19241010; PID-8 M")

_LUCY_PATIENT = {
    # PID|||PID_1^^^ADT1||Smith^Lucy^Mark||20141014|F
    "medical_record_number": "PID_1",
    "last_name": "Smith",
    "first_name": "Lucy",
    "date_of_birth": "2014-10-14",
    "gender": "female",
}
_LUCY_IDENTIFIERS = [{"value": "PID_1", "type_code": None}]

_DCM_STUDY_UID = "1.2.392.200036.9125.0.198811291108.7"


FACTS = {
    # ------------------------------------------------------------------
    # dcm4che: ADT
    # ------------------------------------------------------------------
    "dcm4che/ADT_A31-UpdatePersonInfo-Veterinary.hl7": {
        "type": "ADT^A31",
        "ack": "AA",
        "patient": {
            "medical_record_number": "PID_1",
            "last_name": "Smith",
            "first_name": "Lucy",
            "date_of_birth": "2014-10-14",
            "gender": "female",
        },
        "identifiers": [{"value": "PID_1", "type_code": None}],
        "why": "PID-3 PID_1^^^ADT1 (no CX.5, so the MRN falls back to PID-3.1); "
               "PID-2 CHIP_ID_1 and PID-4 TATTOO_ID_1 are not mapped; "
               "PID-5 Smith^Lucy; PID-7 20141014; PID-8 F^ (component 1 F); "
               "PID-9 Smith^Mark is an alias, not read",
    },
    "dcm4che/ADT_A31-UpdatePersonInfo.hl7": {
        "type": "ADT^A31",
        "ack": "AA",
        "patient": dict(_LUCY_PATIENT),
        "identifiers": list(_LUCY_IDENTIFIERS),
        "why": "PID-3 PID_1^^^ADT1 (no CX.5: MRN from PID-3.1); "
               "PID-5 Smith^Lucy^Mark; PID-7 20141014; PID-8 F",
    },
    "dcm4che/ADT_A40-PatientMerge.hl7": {
        "type": "ADT^A40",
        "ack": "AA",
        "patient": {
            "medical_record_number": "NEW_PID_1",
            "last_name": "New_Smith",
            "first_name": "Lucy",
            "date_of_birth": "2014-10-14",
            "gender": "female",
        },
        "identifiers": [{"value": "NEW_PID_1", "type_code": None}],
        "merge": {"survivor_mrn": "NEW_PID_1", "merged_mrn": "OLD_PID_1"},
        "why": "PID-3 NEW_PID_1^^^ADT1 (no CX.5: PID-3.1); PID-5 "
               "New_Smith^Lucy^Mark; PID-7 20141014; PID-8 F; MRG-1 "
               "OLD_PID_1^^^ADT1 (no CX.5: MRG-1.1), MRG-7 Old_Smith^Lucy^Mark",
    },

    # ------------------------------------------------------------------
    # dcm4che: orders
    # ------------------------------------------------------------------
    "dcm4che/OMI_O23-ImagingOrder.hl7": {
        "type": "OMI^O23",
        "ack": "AA",
        "patient": dict(_LUCY_PATIENT),
        "identifiers": list(_LUCY_IDENTIFIERS),
        "scan": {
            "accession_number": "AccessionNumber",
            "study_instance_uid": _DCM_STUDY_UID,
            "procedure_code": "10637-7",
            "scan_type": "CT",
            "priority": "routine",
        },
        "why": "PID-3 PID_1 (no CX.5); PID-5 Smith^Lucy^Mark; ORC-1 NW; "
               "IPC-1 AccessionNumber; IPC-3 study UID; IPC-5 CT; OBR-4.1 "
               "10637-7; TQ1-9 empty, ORC-7.6 RequestedProcedurePriority is "
               "no table 0027 code -> priority table default routine",
    },
    "dcm4che/ORM_O01-GeneralOrder.hl7": {
        "type": "OMI^O23",
        "ack": "AA",
        "patient": dict(_LUCY_PATIENT),
        "identifiers": list(_LUCY_IDENTIFIERS),
        "scan": {
            "accession_number": "AccessionNumber",
            "study_instance_uid": _DCM_STUDY_UID,
            "procedure_code": "10637-7",
            "scan_type": "CT",
            "priority": "routine",
        },
        "why": "MSH-9 says OMI^O23 despite the file name; no IPC: OBR-18 "
               "AccessionNumber, ZDS-1.1 study UID, OBR-24 CT, OBR-4.1 "
               "10637-7; ORC-1 NW; ORC-7.6 RequestedProcedurePriority -> "
               "routine (table default); PID-3 PID_1 (no CX.5)",
    },

    # ------------------------------------------------------------------
    # dcm4che: results
    # ------------------------------------------------------------------
    "dcm4che/ORU_R01-SR.hl7": {
        "type": "ORU^R01",
        "ack": "AA",
        "patient": dict(_LUCY_PATIENT),
        "scan": {
            "accession_number": "AccessionNumber",
            "study_instance_uid": _DCM_STUDY_UID,
        },
        "report": {
            "report_status": "final",
            "findings_contains": [
                "The right kidney is slightly enlarged, but otherwise normal",
                "small mass in the left lung",
                "bronchopneumonia",
                "Follow-up with CT of the Abdomen",
            ],
        },
        "why": "PID-3 PID_1 (no CX.5); OBR-18 AccessionNumber; OBR-25 F; "
               "OBX-1 113014^DICOM Study -> study UID; findings = TX OBX 4-7, "
               "9, 11, 13-15 (ST OBX 2/3 are Instance UIDs, CE OBX left out); "
               "no OBX coded 19005-8 or named impression, so no impression",
    },
    "dcm4che/ORU_R01-PDF.hl7": {
        "type": "ORU^R01",
        "ack": "AA",
        "patient": dict(_LUCY_PATIENT),
        "scan": {
            "accession_number": "AccessionNumber",
            "study_instance_uid": _DCM_STUDY_UID,
        },
        "report": {"report_status": "final"},
        "why": "PID-3 PID_1 (no CX.5); OBR-18 AccessionNumber; OBR-25 F; "
               "OBX-1 113014 -> study UID; OBX 2/3 are UID observations and "
               "OBX 4 is ED (^Application^PDF^Base64^..., with a CR inside "
               "the base64), so no findings text; one scan_files item",
    },
    "dcm4che/ORU_R01-CDA.hl7": {
        "type": "ORU^R01",
        # OBX-5 is ^Text^text/xml^ASCII^<xml...>: "ASCII" is not an
        # encoding of HL7 table 0299 (A, Hex, Base64), and the conformance
        # statement refuses such an attachment (AE 102 at ED.4) rather
        # than guess. Refused, so nothing is written.
        "ack": "AE",
        "why": "CRLF file; OBX 4 is ED with ED.4 'ASCII', outside table 0299: "
               "AE 102 at OBX-5.4, nothing written",
    },

    # ------------------------------------------------------------------
    # fhir-converter: ADT (v2.8 GHH samples)
    # ------------------------------------------------------------------
    "fhir-converter/ADT-A01-01.hl7": {
        "type": "ADT^A01",
        "ack": "AA",
        "patient": dict(_GHH_PATIENT),
        "identifiers": list(_GHH_IDENTIFIERS),
        "why": _GHH_WHY + "; PID-29/30 deceased Y (not checked here)",
    },
    "fhir-converter/ADT-A01-02.hl7": {
        "type": "ADT^A01",
        "ack": "AA",
        "patient": dict(_GHH_PATIENT),
        "identifiers": list(_GHH_IDENTIFIERS),
        "why": _GHH_WHY,
    },
    "fhir-converter/ADT-A04-01.hl7": {
        "type": "ADT^A04",
        "ack": "AA",
        "patient": dict(_GHH_PATIENT),
        "identifiers": list(_GHH_IDENTIFIERS),
        "why": _GHH_WHY,
    },
    "fhir-converter/ADT-A04-02.hl7": {
        "type": "ADT^A04",
        "ack": "AA",
        "patient": dict(_GHH_PATIENT),
        "identifiers": list(_GHH_IDENTIFIERS),
        "why": _GHH_WHY,
    },
    "fhir-converter/ADT-A08-01.hl7": {
        "type": "ADT^A08",
        "ack": "AA",
        "patient": dict(_GHH_PATIENT),
        "identifiers": list(_GHH_IDENTIFIERS),
        "why": _GHH_WHY,
    },
    "fhir-converter/ADT-A08-02.hl7": {
        "type": "ADT^A08",
        "ack": "AA",
        "patient": dict(_GHH_PATIENT),
        "identifiers": list(_GHH_IDENTIFIERS),
        "why": _GHH_WHY,
    },
    "fhir-converter/ADT-A40-01.hl7": {
        "type": "ADT^A40",
        "ack": "CA",
        "ack_sent": False,
        "patient": {
            "medical_record_number": "12345",
            "last_name": "Test",
            "first_name": "Test",
            "date_of_birth": "2018-02-05",
            "gender": "female",
        },
        "identifiers": [{"value": "12345", "type_code": "MR"}],
        "merge": {"survivor_mrn": "12345", "merged_mrn": "56789"},
        "why": "MSH-15/16 NE: enhanced mode, no ACK goes back (stored ack_code "
               "CA); PID-3 12345^^^BCBS^MR; PID-5 Test^Test^A; PID-7 20180205; "
               "PID-8 F; MRG-1 56789^^^BCBS^MR",
    },
    "fhir-converter/ADT-A40-02.hl7": {
        "type": "ADT^A40",
        "ack": "CA",
        "ack_sent": False,
        "patient": {
            "medical_record_number": "12345",
            "last_name": "Test",
            "first_name": "Test",
            "date_of_birth": "2018-02-05",
            "gender": "female",
        },
        "identifiers": [{"value": "12345", "type_code": "MR"}],
        "merge": {"survivor_mrn": "12345", "merged_mrn": "56789"},
        "why": "MSH-15/16 NE: no ACK goes back (stored ack_code CA); only the "
               "first PID/MRG pair is read: PID-3 12345^^^BCBS^MR, MRG-1 "
               "56789^^^BCBS^MR (the second pair 145 / 569 is ignored); "
               "PID-5 Test^Test^A; PID-7 20180205; PID-8 F",
    },

    # ------------------------------------------------------------------
    # fhir-converter: ADT (older samples)
    # ------------------------------------------------------------------
    "fhir-converter/ADT01-23.hl7": {
        "type": "ADT^A01",
        "ack": "AA",
        "patient": dict(_DUCK_PATIENT),
        "identifiers": [{"value": "10006579", "type_code": "MR"}],
        "why": _DUCK_WHY + "; MSH-15 is a single space (original mode); "
               "PID-30 'NO ' passes the non-strict Y/N table unchanged",
    },
    "fhir-converter/ADT01-28.hl7": {
        "type": "ADT^A01",
        "ack": "AA",
        "patient": {
            "medical_record_number": "PATID1234",
            "last_name": "EVERYMAN",
            "first_name": "ADAM",
            "date_of_birth": "1961-06-15",
            "gender": "male",
        },
        "identifiers": [
            {"value": "PATID1234", "type_code": "MR"},
            {"value": "123456789", "type_code": "SS"},
        ],
        "why": "PID-3 rep1 PATID1234^5^M11^ADT1^MR (the MRN), rep2 "
               "123456789^^^USSSA^SS; PID-5 EVERYMAN^ADAM^A^III; PID-7 "
               "19610615; PID-8 M (the mapping guide's own example)",
    },
    "fhir-converter/ADT04-23.hl7": {
        "type": "ADT^A04",
        "ack": "AA",
        "patient": {
            "medical_record_number": "123456789",
            "last_name": "BROS",
            "first_name": "MARIO",
            "date_of_birth": "1985-01-01",
            "gender": "male",
        },
        "identifiers": [{"value": "123456789", "type_code": "MR"}],
        "why": "PID-3 123456789^^^^MR; PID-5 BROS^MARIO^^^^; PID-7 "
               "19850101000000+0700 -> 1985-01-01; PID-8 M",
    },
    "fhir-converter/ADT04-251.hl7": {
        "type": "ADT^A04",
        "ack": "AA",
        "patient": {
            "medical_record_number": "MRN12345",
            "last_name": "Doe",
            "first_name": "Jane",
            "date_of_birth": "1978-01-01",
            "gender": "female",
        },
        "identifiers": [{"value": "MRN12345", "type_code": "MR"}],
        "why": "MSH-12 2.3 despite the name; no EVN; PID-3 "
               "MRN12345^5^M11^^MR^Special Hospital; PID-5 Doe^Jane; PID-7 "
               "19780101; PID-8 F",
    },
    "fhir-converter/ADT04-28.hl7": {
        "type": "ADT^A04",
        "ack": "AA",
        "patient": {
            "medical_record_number": "0000000001",
            "last_name": "Bixby",
            "first_name": "Timothy",
            "date_of_birth": "2008-01-06",
            "gender": "male",
        },
        "identifiers": [
            {"value": "0000000001", "type_code": None},
            {"value": "e167267c-16c9-4fe3-96ae-9cff5703e90a", "type_code": None},
            {"value": "a1d4ee8aba494ca", "type_code": None},
        ],
        "why": "PID-3 0000000001^^^MR~e167...^^^EHRID~a1d4...^^^NIST: 'MR' is "
               "in CX.4 (assigning authority), not CX.5, so no repetition "
               "matches [CX.5=MR] and the MRN falls back to PID-3.1 "
               "0000000001; PID-5 Bixby^Timothy^Paul; PID-7 20080106; PID-8 M",
    },

    # ------------------------------------------------------------------
    # fhir-converter: orders
    # ------------------------------------------------------------------
    "fhir-converter/LAB-ORM-1.hl7": {
        "type": "ORM^O01",
        "ack": "AA",
        "patient": dict(_DUCK_PATIENT),
        "identifiers": [{"value": "10006579", "type_code": "MR"}],
        "scan": {
            "accession_number": "82503246",
            "procedure_code": "24317-0",
            "scan_type": None,
            "priority": "routine",
        },
        "why": _DUCK_WHY + "; ORC-1 NW; no IPC, OBR-18 empty -> accession "
               "ORC-3.1 82503246; OBR-4.1 24317-0; OBR-24 HM (hematology, "
               "HL7 table 0074: no DICOM modality, so scan_type is left "
               "NULL); no TQ1/ORC-7/OBR-27 -> routine",
    },
    "fhir-converter/OML-O21-02.hl7": {
        "type": "ORM^O01",
        "ack": "AA",
        "patient": dict(_GHH_PATIENT),
        "identifiers": list(_GHH_IDENTIFIERS),
        "scan": [
            {"accession_number": "1201", "procedure_code": "57698-3",
             "priority": "routine"},
            {"accession_number": "2301", "procedure_code": "24590-2",
             "priority": "routine"},
        ],
        "why": "MSH-9 ORM^O01 despite the name; two ORC/OBR groups, a scan "
               "each: ORC-1 NW, OBR-18 empty -> accession ORC-3.1 1201 "
               "(1201^GHHFiller), OBR-4.1 57698-3, TQ1-9 R -> routine; then "
               "ORC-3.1 2301, OBR-4.1 24590-2, no TQ1 and ORC-7.6/OBR-27.6 "
               "empty -> routine; no OBR-24 (scan_type absent); " + _GHH_WHY,
    },
    "fhir-converter/ORM-O01-01.hl7": {
        "type": "ORM^O01",
        "ack": "AA",
        "patient": dict(_GHH_PATIENT),
        "identifiers": list(_GHH_IDENTIFIERS),
        "scan": {
            "accession_number": "1201",
            "procedure_code": "24725-4",
            "priority": "routine",
        },
        "why": "ORC-1 NW; OBR-18 empty -> accession ORC-3.1 1201; OBR-4.1 "
               "24725-4 (CT Head); ORC-7.6 empty, no TQ1/OBR-27 -> routine; "
               "no OBR-24; " + _GHH_WHY,
    },
    "fhir-converter/ORM-O01-02.hl7": {
        "type": "ORM^O01",
        "ack": "AA",
        "patient": dict(_GHH_PATIENT),
        "identifiers": list(_GHH_IDENTIFIERS),
        "scan": {
            "accession_number": "1201",
            "procedure_code": "24725-4",
            "priority": "routine",
        },
        "why": "ORC-1 NW; OBR-18 empty -> accession ORC-3.1 1201; OBR-4.1 "
               "24725-4; ORC-7 1^^^202110201126+0215 (.6 empty) and OBR-27 "
               ".6 empty -> routine; " + _GHH_WHY,
    },
    "fhir-converter/ORM-O01-03.hl7": {
        "type": "ORM^O01",
        "ack": "AA",
        "patient": dict(_GHH_PATIENT),
        "identifiers": list(_GHH_IDENTIFIERS),
        "scan": [
            {"accession_number": "1201", "procedure_code": "24725-4",
             "priority": "routine"},
            {"accession_number": "2301", "procedure_code": "24590-2",
             "priority": "routine"},
        ],
        "why": "two ORC/OBR groups, a scan each: ORC-3.1 1201, OBR-4.1 "
               "24725-4 (CT Head), then ORC-3.1 2301, OBR-4.1 24590-2 (MR "
               "Brain); ORC-7.6 empty -> routine; " + _GHH_WHY,
    },
    "fhir-converter/ORM-O01-04.hl7": {
        "type": "ORM^O01",
        "ack": "AA",
        "patient": dict(_GHH_PATIENT),
        "identifiers": list(_GHH_IDENTIFIERS),
        "scan": {
            "accession_number": "1201",
            "priority": "routine",
        },
        "why": "no OBR (ORC + ODS): accession ORC-3.1 1201, no procedure "
               "code; ORC-7.6 empty -> routine; " + _GHH_WHY,
    },
    "fhir-converter/ORM-O01-05.hl7": {
        "type": "ORM^O01",
        "ack": "AA",
        "patient": dict(_GHH_PATIENT),
        "identifiers": list(_GHH_IDENTIFIERS),
        "scan": {
            "accession_number": "986",
            "priority": "routine",
        },
        "why": "no OBR (ORC + RQD): ORC-1 NW, accession ORC-3.1 986 "
               "(986^IA PHIMS Stage^...^ISO); ORC-9 212010101700+0215 is a "
               "valid (future) date; no ORC-7 -> routine; " + _GHH_WHY,
    },
    "fhir-converter/ORM-O01-06.hl7": {
        "type": "ORM^O01",
        "ack": "AE",
        "why": "no IPC, no OBR, ORC-3 empty: scan.accession_number (IPC-1.1, "
               "OBR-18, ORC-3.1, OBR-3.1) is required and has no value -> "
               "AE 101 (at ORC-3); ORC-2 1163422591^EPC is a placer number, "
               "not a fallback; nothing is written",
    },

    # ------------------------------------------------------------------
    # fhir-converter: results
    # ------------------------------------------------------------------
    "fhir-converter/LAB-ORU-1.hl7": {
        "type": "ORU^R01",
        "ack": "AA",
        "patient": dict(_DUCK_PATIENT),
        "scan": [{"accession_number": "82503246"},
                 {"accession_number": "890775544"}],
        "report": [{"report_status": "final"},
                   {"report_status": "registered"}],
        "why": _DUCK_WHY + "; two OBR groups, a scan and a report each: "
               "OBR-18 empty -> accession OBR-3.1 82503246 with OBR-25 F, "
               "then 890775544 with OBR-25 empty -> default registered; all "
               "OBX are NM, so no findings text",
    },
    "fhir-converter/LAB-ORU-2.hl7": {
        "type": "ORU^R01",
        "ack": "AA",
        "patient": dict(_DUCK_PATIENT),
        "scan": [{"accession_number": "890775544"},
                 {"accession_number": "82503246"}],
        "report": [{"report_status": "registered"},
                   {"report_status": "registered"}],
        "why": _DUCK_WHY + "; two OBR groups: OBR-3.1 890775544 then "
               "82503246, both OBR-25 empty (the F is OBR-26) -> default "
               "registered; all OBX NM",
    },
    "fhir-converter/LRI_2.0-NG_CBC_Typ_Message.hl7": {
        "type": "ORU^R01",
        "ack": "CA",
        "patient": {
            "medical_record_number": "PATID1234",
            "last_name": "Jones",
            "first_name": "William",
            "date_of_birth": "1961-06-15",
            "gender": "male",
        },
        "scan": {"accession_number": "R-991133"},
        "report": {
            "report_status": "final",
            "findings_contains": [
                "Many spherocytes present.",
                "Reactive morphology in lymphoid cells.",
                "Platelets show defective granulation.",
            ],
        },
        "why": "MSH-15 AL / MSH-16 NE: enhanced mode, accept ACK CA; PID-3 "
               "PATID1234^^^NIST MPI^MR; PID-5 Jones^William^A; PID-7 "
               "19610615; PID-8 M; OBR-18 empty -> OBR-3.1 R-991133; OBR-25 "
               "F; findings = TX OBX 26-28; no impression OBX",
    },
    "fhir-converter/ORU-R01-01.hl7": {
        "type": "ORU^R01",
        "ack": "CA",
        "patient": {
            "medical_record_number": "14",
            "last_name": "Finn",
            "first_name": "Huckleberry",
            "date_of_birth": "1963-08-15",
            "gender": "male",
        },
        "scan": {"accession_number": "Placer 1"},
        "report": {"report_status": "final"},
        "why": "MSH-15 AL / MSH-16 NE: enhanced mode, accept ACK CA; PID-3 "
               "14^^^IA PHIMS Stage&...&ISO^PI (no MR: MRN = PID-3.1 14); "
               "PID-5 Finn^Huckleberry; PID-7 19630815; PID-8 M; OBR-18 "
               "'Placer 1'; OBR-25 F; OBX types RP/ED/CWE/RP/NM, so no "
               "findings text",
    },
    "fhir-converter/ORU-R01-RMGEAD.hl7": {
        "type": "ORU^R01",
        "ack": "AA",
        "patient": {
            "medical_record_number": "555-44-4444",
            "last_name": "EVERYWOMAN",
            "first_name": "EVE",
            "date_of_birth": "1962-03-20",
            "gender": "female",
        },
        "scan": {"accession_number": "1045813"},
        "report": {"report_status": "final"},
        "why": "PID-3 555-44-4444 (no CX.5: PID-3.1); PID-5 "
               "EVERYWOMAN^EVE^E^^^^L; PID-7 19620320; PID-8 F; OBR-18 empty "
               "-> OBR-3.1 1045813 (1045813^GHH LAB); OBR-25 F; one SN OBX, "
               "no findings text",
    },
}


SKIPPED = {
    "dcm4che/ADT_A47-ChangePatientID.hl7":
        "ADT^A47 not supported: AR (201, unsupported event)",
    "dcm4che/OMG_O19-GeneralClinicalOrder-Eyecare.hl7":
        "OMG^O19 not supported: AR (200, unsupported message type)",
    "dcm4che/SIU_S12-NewAppointmentBooking.hl7":
        "SIU^S12 not supported: AR (200, unsupported message type)",
    "fhir-converter/ADT-A03-02.hl7":
        "ADT^A03 not supported: AR (201, unsupported event)",
    "fhir-converter/MDM-T02-01.hl7":
        "MDM^T02 not supported: AR (200, unsupported message type)",
    "fhir-converter/SIU-S12-01.hl7":
        "SIU^S12 not supported: AR (200, unsupported message type)",
    "fhir-converter/VXU.hl7":
        "VXU^V04 not supported: CR (200): MSH-15 ER / MSH-16 AL ask for "
        "enhanced mode, where a reject is CR, and ER means it is sent",
}


# Files that share sending application (MSH-3.1), sending facility
# (MSH-4.1) and control id (MSH-10). Sent into the same database, only the
# first of each group is mapped. Each later one is answered AE 205 as a
# duplicate control id with a different payload.
SHARED_CONTROL_IDS = {
    "ADTApp|GHHSFacility|MSG00001": [
        "fhir-converter/ADT-A01-01.hl7", "fhir-converter/ADT-A01-02.hl7",
        "fhir-converter/ADT-A03-02.hl7", "fhir-converter/ADT-A04-01.hl7",
        "fhir-converter/ADT-A04-02.hl7", "fhir-converter/ADT-A08-01.hl7",
        "fhir-converter/ADT-A08-02.hl7",
    ],
    "ORDApp|GHHSFacility|MSG00018": [
        "fhir-converter/OML-O21-02.hl7", "fhir-converter/ORM-O01-01.hl7",
        "fhir-converter/ORM-O01-03.hl7", "fhir-converter/ORM-O01-04.hl7",
        "fhir-converter/ORM-O01-05.hl7", "fhir-converter/ORM-O01-06.hl7",
    ],
    "Ntierprise|Ntierprise Clinic|8919-40": [
        "fhir-converter/ADT-A40-01.hl7", "fhir-converter/ADT-A40-02.hl7",
    ],
    "REDOX|RDX|1270326314": [
        "fhir-converter/ADT04-251.hl7", "fhir-converter/ADT04-28.hl7",
    ],
}
