-- 0013: reports.report_status may be 'partial'.
--
-- HL7 table 0123 has two result statuses that are neither preliminary nor
-- final: R (results stored, not yet verified) and A (some, but not all,
-- results available). The HL7 v2-to-FHIR ConceptMap for OBR-25 maps R to
-- DiagnosticReport.status 'partial' (its 2020 ballot also mapped A there),
-- and R4's definition of partial -- "data in the report may be incomplete
-- or unverified" -- covers both. They were stored as 'registered', which
-- says no result exists at all.
ALTER TABLE reports DROP CONSTRAINT reports_report_status_check;
ALTER TABLE reports ADD CONSTRAINT reports_report_status_check
    CHECK (report_status IN ('registered', 'partial', 'preliminary', 'final',
                             'amended', 'corrected', 'cancelled'));
