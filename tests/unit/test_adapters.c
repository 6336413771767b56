/* Unit tests for the adapters' C side: the registry, the outbound sides
 * (internal rows -> ORU^R01 and FHIR Patient / ImagingStudy /
 * DiagnosticReport) and the helpers. The ORU^R01 is read back through the
 * shipped results mapping, so the values a RIS receives are the values the
 * gateway itself would take from such a message. The expected values are
 * the record's own, written out here; nothing is produced by the code under
 * test and compared with itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapters/adapter.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/error.h"
#include "mapping/mapping.h"

#define MAPPINGS MG_SOURCE_DIR "/mappings"

/* Internal rows as row_to_json gives them. */
static const char record_json[] =
    "{\"message\": {\"sending_application\": \"MEDGATE\","
    "  \"sending_facility\": \"HOSP\", \"receiving_application\": \"RIS\","
    "  \"receiving_facility\": \"RAD\", \"control_id\": \"OUT-1\","
    "  \"datetime\": \"20240102100000\"},"
    " \"patient\": {\"id\": \"7d1f0c5e-0000-4000-8000-000000000001\","
    "  \"medical_record_number\": \"MRN9\", \"last_name\": \"O'Brien\","
    "  \"first_name\": \"Ann\", \"middle_name\": \"B\","
    "  \"date_of_birth\": \"1970-01-02\", \"gender\": \"female\","
    "  \"phone\": \"555-0100\", \"is_active\": true, \"deceased\": false,"
    "  \"merged_into\": null},"
    " \"identifiers\": [{\"system\": \"HOSP\", \"value\": \"MRN9\","
    "  \"type_code\": \"MR\"}, {\"system\": \"urn:oid:2.16.840.1.113883.4.1\","
    "  \"value\": \"123-45-6789\", \"type_code\": \"SS\"}],"
    " \"scan\": {\"id\": \"7d1f0c5e-0000-4000-8000-000000000002\","
    "  \"accession_number\": \"ACC9\", \"placer_order_number\": \"PL9\","
    "  \"filler_order_number\": \"FL9\", \"study_instance_uid\": \"1.2.3.4\","
    "  \"procedure_code\": \"71046\", \"procedure_code_system\": \"CPT4\","
    "  \"procedure_description\": \"XR CHEST 2 VIEWS\","
    "  \"scan_type\": \"CR\", \"status\": \"reported\"},"
    " \"report\": {\"id\": \"7d1f0c5e-0000-4000-8000-000000000003\","
    "  \"external_id\": \"FL9\", \"report_status\": \"final\","
    "  \"findings_text\": \"Lungs clear | no effusion ^ ok.\\nHeart normal.\\n"
    "Normal chest.\","
    "  \"impression\": \"Normal chest.\","
    "  \"reporting_radiologist_name\": \"Rita Ray\","
    "  \"effective_at\": \"2024-01-02T09:00:00+00:00\","
    "  \"issued_at\": \"2024-01-02T09:59:00.25+01:00\","
    "  \"signed_at\": \"2024-01-02T10:01:00+00:00\"}}";

static json_t *
record(void)
{
    json_error_t e;
    json_t *r = json_loads(record_json, 0, &e);

    if (r == NULL)
        fail_msg("record: %s", e.text);
    return r;
}

/* ---- registry -------------------------------------------------------- */

static void
test_registry(void **state)
{
    const struct mg_adapter *a;

    (void)state;
    a = mg_adapter_for_type(mg_str_from("OMI"), mg_str_from("O23"));
    assert_non_null(a);
    assert_string_equal(a->name, "hl7v2.order");
    assert_null(mg_adapter_for_type(mg_str_from("ADT"), mg_str_from("A03")));
    assert_non_null(mg_adapter_for_type(mg_str_from("ADT"), MG_STR_NULL));
    assert_null(mg_adapter_for_type(mg_str_from("SIU"), MG_STR_NULL));
    a = mg_adapter_find("fhir.patient");
    assert_non_null(a);
    assert_null(a->to_internal); /* outbound only, for now */
    assert_null(mg_adapter_find("hl7v2.nothing"));
}

/* A route naming an adapter without an inbound side is refused at load. */
static void
test_route_needs_an_inbound_adapter(void **state)
{
    char dir[] = "/tmp/mg-adapters-XXXXXX", path[64];
    struct mg_mapping_set *set = NULL;
    FILE *f;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/r.json", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"route\": \"r\", \"match\": {\"message_type\": [\"ADT^A01\"]},"
          " \"adapter\": \"fhir.patient\", \"fields\": {\"patient.last_name\":"
          " {\"from\": \"PID-5.1\"}}}\n", f);
    fclose(f);
    assert_int_equal(mg_adapters_load_set(dir, &set, stderr), MG_ECONF);
    assert_null(set);
    unlink(path);
    rmdir(dir);
}

/* ---- helpers --------------------------------------------------------- */

static void
test_iso_to_hl7(void **state)
{
    char out[32];

    (void)state;
    assert_int_equal(mg_adapter_iso_to_hl7("1970-01-02", out), MG_OK);
    assert_string_equal(out, "19700102");
    assert_int_equal(mg_adapter_iso_to_hl7("2024-01-02T09:30:00+01:00", out),
                     MG_OK);
    assert_string_equal(out, "20240102093000+0100");
    assert_int_equal(mg_adapter_iso_to_hl7("2024-01-02T09:30:05.123-05:30",
                                           out), MG_OK);
    assert_string_equal(out, "20240102093005-0530");
    assert_int_equal(mg_adapter_iso_to_hl7("2024-01-02T09:30:00Z", out),
                     MG_OK);
    assert_string_equal(out, "20240102093000+0000");
    assert_int_equal(mg_adapter_iso_to_hl7("2024-01", out), MG_EINVAL);
    assert_int_equal(mg_adapter_iso_to_hl7("2024-01-02 09:30", out),
                     MG_EINVAL);
    assert_int_equal(mg_adapter_iso_to_hl7("19700102", out), MG_EINVAL);
    assert_int_equal(mg_adapter_iso_to_hl7("", out), MG_EINVAL);
}

/* ---- ORU^R01 --------------------------------------------------------- */

/* The ORU for the record, parsed and mapped by the shipped results route. */
struct readback {
    struct mg_arena arena;
    struct mg_mapping_set *set;
    struct mg_buf oru;
    struct mg_mapping_result res;
};

static const char *
value(struct readback *rb, const char *target)
{
    const struct mg_mapping_value *v = mg_mapping_result_get(&rb->res, target);

    if (v == NULL || v->null)
        return NULL;
    return mg_arena_strndup(&rb->arena, v->str.ptr, v->str.len);
}

static void
read_back(struct readback *rb, json_t *r)
{
    const struct mg_mapping_route *route;
    struct mg_hl7v2_parse_opts opts = {0};
    struct mg_hl7v2_msg *msg;
    struct mg_diag d;
    const struct mg_adapter *a = mg_adapter_find("hl7v2.result");

    memset(rb, 0, sizeof(*rb));
    mg_arena_init(&rb->arena, 64 * 1024, 0);
    mg_buf_init(&rb->oru, 0);
    assert_int_equal(a->to_outbound(r, &rb->oru, &d), MG_OK);
    assert_int_equal(mg_mapping_set_load(MAPPINGS, &rb->set, stderr), MG_OK);
    assert_int_equal(mg_hl7v2_parse(mg_buf_str(&rb->oru), &opts, &rb->arena,
                                    &msg, &d), MG_OK);
    assert_int_equal(mg_mapping_route_find(rb->set, &msg->hdr, "any", &route),
                     MG_OK);
    assert_string_equal(mg_mapping_route_adapter(route), "hl7v2.result");
    assert_int_equal(mg_mapping_apply(route, msg, &rb->arena, &rb->res, &d),
                     MG_OK);
}

static void
read_back_done(struct readback *rb)
{
    mg_mapping_set_free(rb->set);
    mg_buf_dispose(&rb->oru);
    mg_arena_dispose(&rb->arena);
}

static void
test_oru_reads_back_through_the_results_mapping(void **state)
{
    json_t *r = record();
    struct readback rb;

    (void)state;
    read_back(&rb, r);
    assert_string_equal(value(&rb, "patient.medical_record_number"), "MRN9");
    assert_string_equal(value(&rb, "patient.last_name"), "O'Brien");
    assert_string_equal(value(&rb, "patient.first_name"), "Ann");
    assert_string_equal(value(&rb, "patient.date_of_birth"), "1970-01-02");
    assert_string_equal(value(&rb, "patient.gender"), "female");
    assert_string_equal(value(&rb, "scan.accession_number"), "ACC9");
    assert_string_equal(value(&rb, "scan.placer_order_number"), "PL9");
    assert_string_equal(value(&rb, "scan.filler_order_number"), "FL9");
    assert_string_equal(value(&rb, "scan.study_instance_uid"), "1.2.3.4");
    assert_string_equal(value(&rb, "report.external_id"), "FL9");
    assert_string_equal(value(&rb, "report.report_status"), "final");
    /* Delimiters in the text travel escaped and come back as they were. */
    assert_string_equal(value(&rb, "report.findings_text"),
                        "Lungs clear | no effusion ^ ok.\nHeart normal.\n"
                        "Normal chest.");
    assert_string_equal(value(&rb, "report.impression"), "Normal chest.");
    assert_string_equal(value(&rb, "report.effective_at"),
                        "2024-01-02T09:00:00+00:00");
    assert_string_equal(value(&rb, "report.issued_at"),
                        "2024-01-02T09:59:00+01:00");
    assert_non_null(strstr(mg_buf_str(&rb.oru).ptr,
                           "MSH|^~\\&|MEDGATE|HOSP|RIS|RAD|20240102100000||"
                           "ORU^R01^ORU_R01|OUT-1|P|2.5.1\r"));
    assert_non_null(strstr(mg_buf_str(&rb.oru).ptr,
                           "PID|1||MRN9^^^HOSP^MR~123-45-6789^^^"
                           "&2.16.840.1.113883.4.1&ISO^SS||"));
    read_back_done(&rb);
    json_decref(r);
}

static void
test_oru_status_codes(void **state)
{
    static const char *const cases[][2] = {
        {"preliminary", "preliminary"}, {"corrected", "corrected"},
        {"amended", "corrected"},       {"cancelled", "cancelled"},
        {"registered", "registered"},   {"partial", "partial"}};
    json_t *r = record();
    struct readback rb;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_object_set_new(json_object_get(r, "report"), "report_status",
                            json_string(cases[i][0]));
        read_back(&rb, r);
        assert_string_equal(value(&rb, "report.report_status"), cases[i][1]);
        read_back_done(&rb);
    }
    json_decref(r);
}

static void
test_oru_needs_mrn_and_study(void **state)
{
    const struct mg_adapter *a = mg_adapter_find("hl7v2.result");
    json_t *r = record();
    struct mg_buf b;
    struct mg_diag d;

    (void)state;
    mg_buf_init(&b, 0);
    json_object_del(json_object_get(r, "patient"), "medical_record_number");
    mg_diag_clear(&d);
    assert_int_equal(a->to_outbound(r, &b, &d), MG_EINVAL);
    assert_int_equal(d.code, MG_HL7_ERR_REQUIRED_MISSING);
    assert_non_null(strstr(d.text, "MRN"));
    mg_buf_dispose(&b);
    json_decref(r);
}

/* OBR-32 is an NDL whose first component is a CNN (id&family&given): the
 * radiologist's name is a name there, not the id number. */
static void
test_oru_interpreter_is_a_name(void **state)
{
    json_t *r = record();
    struct readback rb;

    (void)state;
    read_back(&rb, r);
    assert_non_null(value(&rb, "report.reporting_radiologist_name"));
    assert_string_equal(value(&rb, "report.reporting_radiologist_name"),
                        "Rita Ray");
    assert_null(value(&rb, "report.reporting_radiologist_id"));
    assert_string_equal(value(&rb, "report.signed_at"),
                        "2024-01-02T10:01:00+00:00");
    read_back_done(&rb);
    json_decref(r);
}

/* The stored findings hold every text observation, the impression and the
 * recommendations too. Only whole trailing lines equal to those are left
 * out of the findings OBX; the recommendations travel as 18783-1. */
static void
test_oru_report_sections(void **state)
{
    json_t *r = record(), *rep = json_object_get(r, "report");
    struct readback rb;

    (void)state;
    /* A findings line that only ends like the impression stays whole. */
    json_object_set_new(rep, "findings_text",
                        json_string("Lungs clear. No acute disease."));
    json_object_set_new(rep, "impression", json_string("No acute disease."));
    read_back(&rb, r);
    assert_non_null(strstr(mg_buf_str(&rb.oru).ptr,
                           "|TX|59776-5^Findings^LN||Lungs clear. No acute "
                           "disease.|"));
    assert_string_equal(value(&rb, "report.impression"), "No acute disease.");
    read_back_done(&rb);
    /* Findings, impression and recommendations come back as stored. */
    json_object_set_new(rep, "findings_text",
                        json_string("Lungs clear.\nNo acute disease.\n"
                                    "Follow-up CT in 6 months."));
    json_object_set_new(rep, "recommendations",
                        json_string("Follow-up CT in 6 months."));
    read_back(&rb, r);
    assert_string_equal(value(&rb, "report.findings_text"),
                        "Lungs clear.\nNo acute disease.\n"
                        "Follow-up CT in 6 months.");
    assert_string_equal(value(&rb, "report.impression"), "No acute disease.");
    assert_string_equal(value(&rb, "report.recommendations"),
                        "Follow-up CT in 6 months.");
    read_back_done(&rb);
    json_decref(r);
}

/* What a receiver shows of the report: every TX OBX in order, one line
 * each, as "code:OBX-5" (OBX-5 unescaped), lines joined by "\n". */
static const char *
shown_lines(struct readback *rb)
{
    struct mg_hl7v2_parse_opts opts = {0};
    struct mg_hl7v2_msg *msg;
    struct mg_diag d;
    struct mg_buf out;
    const char *text;
    char path[32];

    assert_int_equal(mg_hl7v2_parse(mg_buf_str(&rb->oru), &opts, &rb->arena,
                                    &msg, &d), MG_OK);
    mg_buf_init(&out, 0);
    for (size_t i = 1; i <= mg_hl7v2_seg_count(msg, "OBX"); i++) {
        struct mg_str v;

        snprintf(path, sizeof(path), "OBX[%zu]-2", i);
        if (!mg_str_eqz(mg_hl7v2_getz(msg, path), "TX"))
            continue;
        snprintf(path, sizeof(path), "OBX[%zu]-3", i);
        v = mg_hl7v2_getz(msg, path);
        if (out.len > 0)
            assert_int_equal(mg_buf_appendc(&out, '\n'), MG_OK);
        assert_int_equal(mg_buf_append(&out, v.ptr, v.len), MG_OK);
        assert_int_equal(mg_buf_appendc(&out, ':'), MG_OK);
        snprintf(path, sizeof(path), "OBX[%zu]-5", i);
        v = mg_hl7v2_getz(msg, path);
        assert_int_equal(mg_buf_append(&out, v.ptr, v.len), MG_OK);
    }
    text = mg_arena_strndup(&rb->arena, out.ptr ? out.ptr : "", out.len);
    mg_buf_dispose(&out);
    return text;
}

/* A blank line of the report is a TX OBX with an empty OBX-5 (HL7 v2.5.1
 * 2.A.78: TX is display text, one OBX per line), wherever it stands: also
 * before the impression or the recommendations that are left out of the
 * findings OBX (such a blank line was dropped with them), and between
 * CRLF line ends (it was a \X0D\ value). The receiver's lines, read in
 * order, are the report's lines. */
static void
test_oru_blank_lines_kept(void **state)
{
    static const struct {
        const char *findings, *impression, *advice, *shown;
    } cases[] = {
        {"FINDINGS:\n\nNo acute disease.", NULL, NULL,
         "59776-5:FINDINGS:\n59776-5:\n59776-5:No acute disease."},
        {"FINDINGS:\n\nNo acute disease.\n\nIMPRESSION:\n\nNormal chest.",
         "Normal chest.", NULL,
         "59776-5:FINDINGS:\n59776-5:\n59776-5:No acute disease.\n59776-5:\n"
         "59776-5:IMPRESSION:\n59776-5:\n19005-8:Normal chest."},
        {"FINDINGS:\r\n\r\nNo acute disease.\r\n", NULL, NULL,
         "59776-5:FINDINGS:\n59776-5:\n59776-5:No acute disease."},
        {"Lungs clear.\n\nNo acute disease.\n\nFollow-up CT.\n\n",
         "No acute disease.", "Follow-up CT.",
         "59776-5:Lungs clear.\n59776-5:\n19005-8:No acute disease.\n"
         "19005-8:\n18783-1:Follow-up CT.\n18783-1:"},
        {"Lungs clear.\r\nNo acute disease.", "No acute disease.\n", NULL,
         "59776-5:Lungs clear.\n19005-8:No acute disease."},
        {"\nLungs clear.\n\n\n", "Two\n\nlines", NULL,
         "59776-5:\n59776-5:Lungs clear.\n59776-5:\n59776-5:\n"
         "19005-8:Two\n19005-8:\n19005-8:lines"},
        /* Sections that are not at the end (dcm4che ORU_R01-SR: text OBX
         * after the recommendation): each line once, where it stands,
         * with its section's code. They went out twice. */
        {"Kidney enlarged.\nFollow-up CT.\n\nRequest: urology.",
         "Kidney enlarged.", "Follow-up CT.",
         "19005-8:Kidney enlarged.\n18783-1:Follow-up CT.\n18783-1:\n"
         "59776-5:Request: urology."},
    };
    int bad = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *r = record(), *rep = json_object_get(r, "report");
        struct readback rb;
        const char *got;

        json_object_set_new(rep, "findings_text",
                            json_string(cases[i].findings));
        json_object_set_new(rep, "impression",
                            cases[i].impression
                                ? json_string(cases[i].impression)
                                : json_null());
        json_object_set_new(rep, "recommendations",
                            cases[i].advice ? json_string(cases[i].advice)
                                            : json_null());
        read_back(&rb, r);
        got = shown_lines(&rb);
        if (strcmp(got, cases[i].shown) != 0) {
            print_error("case %zu: shown\n%s\nwant\n%s\n", i, got,
                        cases[i].shown);
            bad++;
        }
        read_back_done(&rb);
        json_decref(r);
    }
    assert_int_equal(bad, 0);
}

/* OBR-4 (universal service id) is required in an ORU^R01's OBR, also for
 * a scan that a result created (no order, no procedure code): it is the
 * procedure code with its description and system; else the procedure or
 * study description as text; else the modality (DICOM "DCM" code); else
 * LOINC 18748-4 "Diagnostic imaging study", the code fhir.diagnostic_report
 * gives every report. */
static void
test_oru_obr4_never_empty(void **state)
{
    static const struct {
        const char *drop[6], *want;
    } cases[] = {
        {{NULL}, "71046^XR CHEST 2 VIEWS^CPT4"},
        {{"procedure_code", "procedure_code_system", NULL},
         "^XR CHEST 2 VIEWS"},
        {{"procedure_code", "procedure_code_system", "procedure_description",
          NULL},
         "^CT CHEST W/O \\T\\ ABD"},
        {{"procedure_code", "procedure_code_system", "procedure_description",
          "study_description", NULL},
         "CR^^DCM"},
        {{"procedure_code", "procedure_code_system", "procedure_description",
          "study_description", "scan_type", NULL},
         "18748-4^Diagnostic imaging study^LN"},
        /* A sender's own modality code (the modality table passes unknown
         * ones through) is no DICOM code: it was sent as ECHO^^DCM. */
        {{"procedure_code", "procedure_code_system", "procedure_description",
          "study_description", "scan_type=ECHO", NULL},
         "18748-4^Diagnostic imaging study^LN"},
    };
    int bad = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *r = record(), *scan = json_object_get(r, "scan");
        struct mg_hl7v2_parse_opts opts = {0};
        struct mg_hl7v2_msg *msg;
        struct readback rb;
        struct mg_diag d;
        struct mg_str obr4;

        json_object_set_new(scan, "study_description",
                            json_string("CT CHEST W/O & ABD"));
        for (size_t k = 0; cases[i].drop[k] != NULL; k++)
            if (strcmp(cases[i].drop[k], "scan_type=ECHO") == 0)
                json_object_set_new(scan, "scan_type", json_string("ECHO"));
            else
                json_object_set_new(scan, cases[i].drop[k], json_null());
        read_back(&rb, r);
        assert_int_equal(mg_hl7v2_parse(mg_buf_str(&rb.oru), &opts,
                                        &rb.arena, &msg, &d), MG_OK);
        obr4 = mg_hl7v2_seg_field(mg_hl7v2_seg_find(msg, "OBR", 1), 4);
        if (!mg_str_eqz(obr4, cases[i].want)) {
            print_error("case %zu: OBR-4 '%.*s', want '%s'\n", i,
                        (int)obr4.len, obr4.ptr, cases[i].want);
            bad++;
        }
        /* The rest of the message reads back as before. */
        assert_string_equal(value(&rb, "scan.accession_number"), "ACC9");
        read_back_done(&rb);
        json_decref(r);
    }
    assert_int_equal(bad, 0);
}

/* PID-3 names each identifier's assigning authority (CX.4), the MRN's
 * too: an id is unique only within its authority, and the RIS must tell a
 * hospital's MRN from another's. An OID is the HD's universal id (ISO), as
 * the adapters read it in; an unqualified identifier has none. */
static void
test_oru_identifier_authorities(void **state)
{
    json_t *r = record();
    struct readback rb;

    (void)state;
    json_array_append_new(json_object_get(r, "identifiers"), json_pack(
        "{s:s,s:s}", "system", "urn:medgate:unqualified", "value", "X7"));
    read_back(&rb, r);
    assert_non_null(strstr(mg_buf_str(&rb.oru).ptr,
                           "PID|1||MRN9^^^HOSP^MR~123-45-6789^^^"
                           "&2.16.840.1.113883.4.1&ISO^SS~X7^^^^||"));
    assert_string_equal(value(&rb, "patient.medical_record_number"), "MRN9");
    read_back_done(&rb);
    json_decref(r);
}

/* The identifiers of a merged patient: the survivor's MRN is the row
 * typed MR that is not retired; another authority's identifier with the
 * same value is kept; a retired one (use old, moved by an A40) is not
 * sent in PID-3, and is marked old in FHIR. */
static json_t *
merged_record(void)
{
    json_t *r = record(), *ids = json_array();

    json_array_append_new(ids, json_pack("{s:s,s:s,s:s}", "system",
                                         "urn:oid:2.9", "value", "MRN9",
                                         "type_code", "PI"));
    json_array_append_new(ids, json_pack("{s:s,s:s,s:s,s:s}", "system", "HOSP",
                                         "value", "MRN9", "type_code", "MR",
                                         "use", "usual"));
    json_array_append_new(ids, json_pack("{s:s,s:s,s:s,s:s}", "system", "HOSP",
                                         "value", "100", "type_code", "MR",
                                         "use", "old"));
    json_object_set_new(r, "identifiers", ids);
    return r;
}

static void
test_oru_leaves_out_retired_identifiers(void **state)
{
    json_t *r = merged_record();
    struct readback rb;

    (void)state;
    read_back(&rb, r);
    assert_non_null(strstr(mg_buf_str(&rb.oru).ptr,
                           "PID|1||MRN9^^^HOSP^MR~MRN9^^^&2.9&ISO^PI||"));
    read_back_done(&rb);
    json_decref(r);
}

/* What an identifier and a name carry beyond their value: HD.1, the
 * namespace many RIS match on, before an ISO universal id; the assigning
 * facility and the period (CX.6-8); the name's suffix and prefix (XPN.4,
 * XPN.5). They were dropped. */
static json_t *
detailed_record(void)
{
    json_t *r = record();

    json_array_append_new(json_object_get(r, "identifiers"), json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s}", "system", "urn:oid:1.2.3", "assigner",
        "HOSP", "value", "55", "type_code", "PI", "assigning_facility", "FAC",
        "period_start", "2020-01-01"));
    json_object_set_new(json_object_get(r, "patient"), "name_prefix",
                        json_string("Dr"));
    json_object_set_new(json_object_get(r, "patient"), "name_suffix",
                        json_string("Jr"));
    return r;
}

static void
test_oru_identifier_and_name_details(void **state)
{
    json_t *r = detailed_record();
    struct mg_buf b;

    (void)state;
    mg_buf_init(&b, 0);
    assert_int_equal(mg_adapter_find("hl7v2.result")->to_outbound(r, &b, NULL),
                     MG_OK);
    if (strstr(mg_buf_str(&b).ptr, "~55^^^HOSP&1.2.3&ISO^PI^FAC^20200101||"
                                   "O'Brien^Ann^B^Jr^Dr||") == NULL)
        fail_msg("ORU: %s", mg_buf_str(&b).ptr);
    mg_buf_dispose(&b);
    json_decref(r);
}

/* OBR-7 is required in a report: without an observation time, when it
 * was issued. A cancelled report (X) goes without observations. */
static void
test_oru_obr7_and_cancelled(void **state)
{
    json_t *r = record();
    json_t *rep = json_object_get(r, "report");
    struct mg_buf b;
    const char *obr;

    (void)state;
    json_object_del(rep, "effective_at");
    mg_buf_init(&b, 0);
    assert_int_equal(mg_adapter_find("hl7v2.result")->to_outbound(r, &b, NULL),
                     MG_OK);
    obr = strstr(mg_buf_str(&b).ptr, "\rOBR|");
    assert_non_null(obr);
    if (strstr(obr, "^XR CHEST 2 VIEWS^CPT4|||20240102095900+0100|") == NULL)
        fail_msg("OBR: %.200s", obr + 1);
    assert_non_null(strstr(mg_buf_str(&b).ptr, "\rOBX|"));
    mg_buf_dispose(&b);
    json_object_set_new(rep, "report_status", json_string("cancelled"));
    mg_buf_init(&b, 0);
    assert_int_equal(mg_adapter_find("hl7v2.result")->to_outbound(r, &b, NULL),
                     MG_OK);
    assert_non_null(strstr(mg_buf_str(&b).ptr, "\rOBR|"));
    assert_null(strstr(mg_buf_str(&b).ptr, "\rOBX|"));
    mg_buf_dispose(&b);
    json_decref(r);
}

/* Text that is not ASCII is declared UTF-8 in MSH-18: without it, v2.5.1
 * says ASCII and a RIS reads the bytes in its own default set. */
static void
test_oru_declares_utf8(void **state)
{
    json_t *r = record();
    struct readback rb;

    (void)state;
    json_object_set_new(json_object_get(r, "patient"), "last_name",
                        json_string("M\xc3\xbcller"));
    read_back(&rb, r);
    assert_non_null(strstr(mg_buf_str(&rb.oru).ptr,
                           "|ORU^R01^ORU_R01|OUT-1|P|2.5.1||||||"
                           "UNICODE UTF-8\r"));
    assert_string_equal(value(&rb, "patient.last_name"), "M\xc3\xbcller");
    read_back_done(&rb);
    json_decref(r);
}

/* MSH-7 and MSH-10 are required: a RIS refuses a message without them,
 * and its ACK could not name the message. */
static void
test_oru_needs_control_id_and_time(void **state)
{
    static const char *const keys[] = {"control_id", "datetime"};
    const struct mg_adapter *a = mg_adapter_find("hl7v2.result");
    struct mg_buf b;
    struct mg_diag d;

    (void)state;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_t *r = record();
        mg_buf_init(&b, 0);
        json_object_del(json_object_get(r, "message"), keys[i]);
        mg_diag_clear(&d);
        assert_int_equal(a->to_outbound(r, &b, &d), MG_EINVAL);
        assert_int_equal(d.code, MG_HL7_ERR_REQUIRED_MISSING);
        mg_buf_dispose(&b);
        json_decref(r);
    }
}

/* ---- FHIR ------------------------------------------------------------ */

static json_t *
fhir(const char *adapter, json_t *r)
{
    struct mg_buf b;
    struct mg_diag d;
    json_error_t e;
    json_t *res;

    mg_buf_init(&b, 0);
    assert_int_equal(mg_adapter_find(adapter)->to_outbound(r, &b, &d), MG_OK);
    res = json_loadb(b.ptr, b.len, 0, &e);
    assert_non_null(res);
    mg_buf_dispose(&b);
    return res;
}

static const char *
str_at(const json_t *root, const char *path)
{
    /* path: keys and array indexes separated by '/', e.g. "name/0/family". */
    char buf[128], *save = NULL;
    const json_t *at = root;

    snprintf(buf, sizeof(buf), "%s", path);
    for (char *k = strtok_r(buf, "/", &save); k && at;
         k = strtok_r(NULL, "/", &save))
        at = json_is_array(at) ? json_array_get(at, (size_t)atoi(k))
                               : json_object_get(at, k);
    return json_string_value(at);
}

static void
test_fhir_patient(void **state)
{
    json_t *r = record(), *p;

    (void)state;
    p = fhir("fhir.patient", r);
    assert_string_equal(str_at(p, "resourceType"), "Patient");
    assert_string_equal(str_at(p, "id"), "7d1f0c5e-0000-4000-8000-000000000001");
    assert_string_equal(str_at(p, "identifier/0/value"), "MRN9");
    assert_string_equal(str_at(p, "identifier/0/type/coding/0/code"), "MR");
    /* The MRN keeps its authority, a namespace (not a URI) here. */
    assert_non_null(str_at(p, "identifier/0/assigner/display"));
    assert_string_equal(str_at(p, "identifier/0/assigner/display"), "HOSP");
    assert_string_equal(str_at(p, "identifier/1/system"),
                        "urn:oid:2.16.840.1.113883.4.1");
    assert_string_equal(str_at(p, "identifier/1/value"), "123-45-6789");
    assert_string_equal(str_at(p, "name/0/family"), "O'Brien");
    assert_string_equal(str_at(p, "name/0/given/0"), "Ann");
    assert_string_equal(str_at(p, "name/0/given/1"), "B");
    assert_string_equal(str_at(p, "gender"), "female");
    assert_string_equal(str_at(p, "birthDate"), "1970-01-02");
    assert_string_equal(str_at(p, "telecom/0/value"), "555-0100");
    assert_true(json_is_true(json_object_get(p, "active")));
    assert_null(json_object_get(p, "link"));
    assert_null(json_object_get(p, "address")); /* FHIR: no empty parts */
    json_decref(p);
    /* An identifier with no authority gets no made-up shared system. */
    json_array_append_new(json_object_get(r, "identifiers"), json_pack(
        "{s:s,s:s}", "system", "urn:medgate:unqualified", "value", "X7"));
    p = fhir("fhir.patient", r);
    assert_string_equal(str_at(p, "identifier/2/value"), "X7");
    assert_null(json_object_get(json_array_get(json_object_get(p,
                                                               "identifier"),
                                               2), "system"));
    json_decref(p);
    /* A merged record points to its survivor. */
    json_object_set_new(json_object_get(r, "patient"), "merged_into",
                        json_string("7d1f0c5e-0000-4000-8000-000000000009"));
    p = fhir("fhir.patient", r);
    assert_string_equal(str_at(p, "link/0/type"), "replaced-by");
    assert_string_equal(str_at(p, "link/0/other/reference"),
                        "Patient/7d1f0c5e-0000-4000-8000-000000000009");
    json_decref(p);
    json_decref(r);
}

static void
test_fhir_patient_marks_retired_identifiers(void **state)
{
    json_t *r = merged_record(), *p;

    (void)state;
    p = fhir("fhir.patient", r);
    assert_string_equal(str_at(p, "identifier/0/value"), "MRN9");
    assert_string_equal(str_at(p, "identifier/0/assigner/display"), "HOSP");
    assert_string_equal(str_at(p, "identifier/1/system"), "urn:oid:2.9");
    assert_string_equal(str_at(p, "identifier/1/value"), "MRN9");
    assert_string_equal(str_at(p, "identifier/2/value"), "100");
    assert_string_equal(str_at(p, "identifier/2/use"), "old");
    assert_null(json_array_get(json_object_get(p, "identifier"), 3));
    json_decref(p);
    json_decref(r);
}

static void
test_fhir_patient_identifier_and_name_details(void **state)
{
    json_t *r = detailed_record(), *p;

    (void)state;
    p = fhir("fhir.patient", r);
    assert_string_equal(str_at(p, "identifier/2/system"), "urn:oid:1.2.3");
    assert_string_equal(str_at(p, "identifier/2/assigner/display"), "HOSP");
    assert_string_equal(str_at(p, "identifier/2/period/start"), "2020-01-01");
    assert_string_equal(str_at(p, "name/0/prefix/0"), "Dr");
    assert_string_equal(str_at(p, "name/0/suffix/0"), "Jr");
    json_decref(p);
    /* ImagingStudy.description is the study's own (DICOM (0008,1030)),
     * else what was ordered. */
    json_object_set_new(json_object_get(r, "scan"), "study_description",
                        json_string("CT HEAD W/O"));
    p = fhir("fhir.imaging_study", r);
    assert_string_equal(str_at(p, "description"), "CT HEAD W/O");
    assert_string_equal(str_at(p, "modality/0/system"),
                        "http://dicom.nema.org/resources/ontology/DCM");
    json_decref(p);
    /* A sender's own modality code is sent without claiming DICOM's. */
    json_object_set_new(json_object_get(r, "scan"), "scan_type",
                        json_string("ECHO"));
    p = fhir("fhir.imaging_study", r);
    assert_string_equal(str_at(p, "modality/0/code"), "ECHO");
    assert_null(json_object_get(json_array_get(json_object_get(p, "modality"),
                                               0), "system"));
    json_decref(p);
    json_decref(r);
}

static void
test_fhir_imaging_study(void **state)
{
    json_t *r = record(), *s;

    (void)state;
    s = fhir("fhir.imaging_study", r);
    assert_string_equal(str_at(s, "resourceType"), "ImagingStudy");
    assert_string_equal(str_at(s, "status"), "available"); /* reported */
    assert_string_equal(str_at(s, "identifier/0/system"), "urn:dicom:uid");
    assert_string_equal(str_at(s, "identifier/0/value"), "urn:oid:1.2.3.4");
    assert_string_equal(str_at(s, "identifier/1/type/coding/0/code"), "ACSN");
    assert_string_equal(str_at(s, "identifier/1/value"), "ACC9");
    assert_string_equal(str_at(s, "modality/0/code"), "CR");
    assert_string_equal(str_at(s, "subject/reference"),
                        "Patient/7d1f0c5e-0000-4000-8000-000000000001");
    assert_string_equal(str_at(s, "procedureCode/0/coding/0/code"), "71046");
    json_decref(s);
    json_object_set_new(json_object_get(r, "scan"), "status",
                        json_string("scheduled"));
    s = fhir("fhir.imaging_study", r);
    assert_string_equal(str_at(s, "status"), "registered");
    json_decref(s);
    json_decref(r);
}

static void
test_fhir_diagnostic_report(void **state)
{
    json_t *r = record(), *d;
    unsigned char text[256];
    size_t n = 0;
    const char *b64;

    (void)state;
    d = fhir("fhir.diagnostic_report", r);
    assert_string_equal(str_at(d, "resourceType"), "DiagnosticReport");
    assert_string_equal(str_at(d, "status"), "final");
    assert_string_equal(str_at(d, "category/0/coding/0/code"), "RAD");
    assert_string_equal(str_at(d, "identifier/0/value"), "FL9");
    assert_string_equal(str_at(d, "conclusion"), "Normal chest.");
    assert_string_equal(str_at(d, "issued"), "2024-01-02T09:59:00.25+01:00");
    assert_string_equal(str_at(d, "resultsInterpreter/0/display"), "Rita Ray");
    assert_string_equal(str_at(d, "imagingStudy/0/reference"),
                        "ImagingStudy/7d1f0c5e-0000-4000-8000-000000000002");
    b64 = str_at(d, "presentedForm/0/data");
    assert_non_null(b64);
    assert_int_equal(sodium_base642bin(text, sizeof(text), b64, strlen(b64),
                                       NULL, &n, NULL,
                                       sodium_base64_VARIANT_ORIGINAL), 0);
    assert_memory_equal(text, "Lungs clear | no effusion ^ ok.\nHeart "
                        "normal.\nNormal chest.", n);
    json_decref(d);
    /* Withdrawn (OBR-25 X): the status says so, and neither the
     * conclusion nor the text is offered as a result. */
    json_object_set_new(json_object_get(r, "report"), "report_status",
                        json_string("cancelled"));
    d = fhir("fhir.diagnostic_report", r);
    assert_string_equal(str_at(d, "status"), "cancelled");
    assert_null(json_object_get(d, "conclusion"));
    assert_null(json_object_get(d, "presentedForm"));
    json_decref(d);
    json_decref(r);
}

/* The record with the report's attachments: a PDF kept inline (as the
 * result adapter keeps an OBX ED), one by reference (an OBX RP), and a
 * DICOM object of the study, which is no report attachment. */
static json_t *
record_with_files(void)
{
    json_t *r = record();
    json_error_t e;
    json_t *files = json_loads(
        "[{\"file_name\": \"Report 1\", \"file_type\": \"document\","
        " \"mime_type\": \"application/pdf\", \"file_size_bytes\": 8,"
        " \"storage_uri\": \"data:application/pdf;base64,JVBERi0xLjQ=\"},"
        " {\"file_name\": \"Images\", \"file_type\": \"dicom\","
        " \"mime_type\": \"application/dicom\","
        " \"storage_uri\": \"file:///pacs/1.dcm\"},"
        " {\"file_name\": \"Report 2\", \"file_type\": \"document\","
        " \"mime_type\": \"application/pdf\","
        " \"storage_uri\": \"https://ris.example/r/9?a=1&b=2\"}]", 0, &e);

    assert_non_null(files);
    json_object_set_new(r, "files", files);
    return r;
}

/* Attachments go out as OBX ED (inline) and RP (by reference), and the
 * results mapping reads them back as the scan_files items they came as. */
static void
test_oru_attachments(void **state)
{
    json_t *r = record_with_files();
    const struct mg_mapping_group *g;
    const struct mg_mapping_value *v;
    struct readback rb;
    char got[8][64];
    static const char *const want[][2] = {
        {"value_type", "ED"}, {"ed_type_of_data", "AP"},
        {"ed_subtype", "PDF"}, {"ed_encoding", "Base64"},
        {"ed_data", "JVBERi0xLjQ="}};

    (void)state;
    read_back(&rb, r);
    g = mg_mapping_result_group(&rb.res, "scan_files[]");
    assert_non_null(g);
    assert_int_equal(g->nitem, 2); /* the DICOM object stays behind */
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        v = mg_mapping_item_get(&g->item[0], want[i][0]);
        assert_non_null(v);
        snprintf(got[0], sizeof(got[0]), "%.*s", (int)v->str.len, v->str.ptr);
        assert_string_equal(got[0], want[i][1]);
    }
    v = mg_mapping_item_get(&g->item[1], "value_type");
    assert_non_null(v);
    assert_memory_equal(v->str.ptr, "RP", 2);
    v = mg_mapping_item_get(&g->item[1], "storage_uri");
    assert_non_null(v); /* & travels escaped and comes back */
    snprintf(got[1], sizeof(got[1]), "%.*s", (int)v->str.len, v->str.ptr);
    assert_string_equal(got[1], "https://ris.example/r/9?a=1&b=2");
    v = mg_mapping_item_get(&g->item[1], "rp_subtype");
    assert_non_null(v);
    assert_memory_equal(v->str.ptr, "PDF", 3);
    /* A cancelled report goes without observations, attachments too. */
    read_back_done(&rb);
    json_object_set_new(json_object_get(r, "report"), "report_status",
                        json_string("cancelled"));
    read_back(&rb, r);
    assert_null(strstr(mg_buf_str(&rb.oru).ptr, "OBX|"));
    read_back_done(&rb);
    json_decref(r);
}

/* The same attachments follow the text in DiagnosticReport.presentedForm. */
static void
test_fhir_diagnostic_report_attachments(void **state)
{
    json_t *r = record_with_files(), *d;

    (void)state;
    d = fhir("fhir.diagnostic_report", r);
    assert_string_equal(str_at(d, "presentedForm/0/contentType"),
                        "text/plain; charset=utf-8");
    assert_string_equal(str_at(d, "presentedForm/1/contentType"),
                        "application/pdf");
    assert_string_equal(str_at(d, "presentedForm/1/data"), "JVBERi0xLjQ=");
    assert_string_equal(str_at(d, "presentedForm/1/title"), "Report 1");
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(json_object_get(d, "presentedForm"), 1),
                         "size")), 8);
    assert_null(json_object_get(
        json_array_get(json_object_get(d, "presentedForm"), 1), "url"));
    assert_string_equal(str_at(d, "presentedForm/2/url"),
                        "https://ris.example/r/9?a=1&b=2");
    assert_null(json_object_get(
        json_array_get(json_object_get(d, "presentedForm"), 2), "data"));
    assert_int_equal(json_array_size(json_object_get(d, "presentedForm")), 3);
    json_decref(d);
    json_decref(r);
}

/* What FHIR refuses, or an EMR cannot use, is not sent: a padded code is
 * trimmed (a code has no outer whitespace), an attachment that points
 * nowhere an EMR can follow (a relative RP.1 with a space) or holds
 * nothing is left out, a namespace with a colon is no system, and the MRN
 * is coded MR whatever the sender called its type. */
static void
test_fhir_refuses_what_fhir_refuses(void **state)
{
    json_t *r = record_with_files(), *p, *ids;
    json_error_t e;

    (void)state;
    json_object_set_new(json_object_get(r, "scan"), "scan_type",
                        json_string("CT "));
    json_object_set_new(json_object_get(r, "scan"), "procedure_code",
                        json_string(" 71020 "));
    p = fhir("fhir.imaging_study", r);
    assert_string_equal(str_at(p, "modality/0/code"), "CT");
    assert_string_equal(str_at(p, "modality/0/system"),
                        "http://dicom.nema.org/resources/ontology/DCM");
    assert_string_equal(str_at(p, "procedureCode/0/coding/0/code"), "71020");
    json_decref(p);
    json_object_set_new(json_object_get(r, "scan"), "scan_type",
                        json_string("  "));
    p = fhir("fhir.imaging_study", r);
    assert_null(json_object_get(p, "modality"));
    json_decref(p);

    json_array_append_new(json_object_get(r, "files"), json_loads(
        "{\"file_type\": \"document\", \"storage_uri\": \"reports/2024 01/r.pdf\"}",
        0, &e));
    json_array_append_new(json_object_get(r, "files"), json_loads(
        "{\"file_type\": \"document\", \"storage_uri\": \"data:application/pdf;base64,\"}",
        0, &e));
    p = fhir("fhir.diagnostic_report", r);
    assert_int_equal(json_array_size(json_object_get(p, "presentedForm")), 3);
    json_decref(p);

    ids = json_object_get(r, "identifiers");
    json_array_clear(ids);
    json_array_append_new(ids, json_pack("{s:s,s:s,s:s}", "value", "MRN9",
                                         "system", "MRN:EAST", "type_code",
                                         "MRN"));
    p = fhir("fhir.patient", r);
    assert_string_equal(str_at(p, "identifier/0/value"), "MRN9");
    assert_string_equal(str_at(p, "identifier/0/type/coding/0/code"), "MR");
    assert_string_equal(str_at(p, "identifier/0/type/text"), "MRN");
    assert_null(str_at(p, "identifier/0/system"));
    assert_string_equal(str_at(p, "identifier/0/assigner/display"),
                        "MRN:EAST");
    json_decref(p);
    /* HOSP&HOSP&ISO was stored as urn:oid:HOSP: no OID, so no system. */
    json_object_set_new(json_array_get(ids, 0), "system",
                        json_string("urn:oid:HOSP"));
    p = fhir("fhir.patient", r);
    assert_null(str_at(p, "identifier/0/system"));
    json_decref(p);
    assert_true(mg_adapter_is_uri("urn:oid:2.16.840.1.113883.4.1"));
    assert_false(mg_adapter_is_uri("urn:oid:1.02"));
    assert_false(mg_adapter_is_uri("urn:oid:3.1"));
    assert_false(mg_adapter_is_uri("urn:oid:1"));
    json_decref(r);
}

/* An ImagingStudy with neither accession nor UID has no identifier (FHIR
 * forbids an empty array). */
static void
test_fhir_imaging_study_without_identifiers(void **state)
{
    json_t *r = record(), *s;

    (void)state;
    json_object_del(json_object_get(r, "scan"), "accession_number");
    json_object_del(json_object_get(r, "scan"), "study_instance_uid");
    s = fhir("fhir.imaging_study", r);
    assert_null(json_object_get(s, "identifier"));
    json_decref(s);
    json_decref(r);
}

/* Coding.system is a URI: HL7 table 0396 names (OBR-4.3) become the code
 * system's URI, and a name with no URI is left out, not sent as one. */
static void
test_fhir_imaging_study_code_system(void **state)
{
    static const char *const cases[][2] = {
        {"CPT4", "http://www.ama-assn.org/go/cpt"},
        {"LN", "http://loinc.org"},
        {"SCT", "http://snomed.info/sct"},
        {"http://example.org/codes", "http://example.org/codes"},
        {"L", NULL}, {"99LOCAL", NULL}};
    json_t *r = record(), *s;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_object_set_new(json_object_get(r, "scan"),
                            "procedure_code_system",
                            json_string(cases[i][0]));
        s = fhir("fhir.imaging_study", r);
        assert_string_equal(str_at(s, "procedureCode/0/coding/0/code"),
                            "71046");
        if (cases[i][1] != NULL)
            assert_string_equal(str_at(s, "procedureCode/0/coding/0/system"),
                                cases[i][1]);
        else
            assert_null(str_at(s, "procedureCode/0/coding/0/system"));
        json_decref(s);
    }
    json_decref(r);
}

/* A patient whose MRN came from an identifier that is not typed MR (PID-3
 * "555^^^USSSA^SS" alone): the MRN goes out with that identifier's type,
 * in FHIR and in PID-3, not as a medical record number. */
static void
test_mrn_keeps_its_identifier_type(void **state)
{
    json_t *r = record(), *p;
    struct readback rb;

    (void)state;
    json_object_set_new(json_object_get(r, "patient"), "medical_record_number",
                        json_string("555"));
    json_object_set_new(r, "identifiers", json_pack(
        "[{s:s,s:s,s:s}]", "system", "USSSA", "value", "555", "type_code",
        "SS"));
    p = fhir("fhir.patient", r);
    assert_string_equal(str_at(p, "identifier/0/value"), "555");
    assert_string_equal(str_at(p, "identifier/0/type/coding/0/code"), "SS");
    assert_null(json_array_get(json_object_get(p, "identifier"), 1));
    json_decref(p);
    read_back(&rb, r);
    assert_non_null(strstr(mg_buf_str(&rb.oru).ptr, "PID|1||555^^^USSSA^SS||"));
    read_back_done(&rb);
    json_decref(r);
}

/* Identifier types: a table 0203 code is a v2-0203 coding, in upper case
 * (the code system is case-sensitive); a site's own type is text only. */
static void
test_fhir_identifier_types(void **state)
{
    json_t *r = record(), *p;

    (void)state;
    json_object_set_new(r, "identifiers", json_pack(
        "[{s:s,s:s,s:s},{s:s,s:s,s:s},{s:s,s:s,s:s}]",
        "system", "HOSP", "value", "MRN9", "type_code", "MR",
        "system", "HOSP", "value", "A1", "type_code", "pi",
        "system", "HOSP", "value", "A2", "type_code", "MRN"));
    p = fhir("fhir.patient", r);
    assert_string_equal(str_at(p, "identifier/1/type/coding/0/code"), "PI");
    assert_string_equal(str_at(p, "identifier/1/type/coding/0/system"),
                        "http://terminology.hl7.org/CodeSystem/v2-0203");
    assert_null(str_at(p, "identifier/2/type/coding/0/code"));
    assert_string_equal(str_at(p, "identifier/2/type/text"), "MRN");
    json_decref(p);
    json_decref(r);
}

/* ImagingStudy.modality holds acquisition modalities only (R4, DICOM CID
 * 29): a study whose scan_type is a derived object's (SR, OT) has none. */
static void
test_fhir_imaging_study_modality_is_acquisition(void **state)
{
    static const char *const derived[] = {"SR", "OT", "KO", "DOC"};
    json_t *r = record(), *s;

    (void)state;
    for (size_t i = 0; i < sizeof(derived) / sizeof(derived[0]); i++) {
        json_object_set_new(json_object_get(r, "scan"), "scan_type",
                            json_string(derived[i]));
        s = fhir("fhir.imaging_study", r);
        assert_null(json_object_get(s, "modality"));
        json_decref(s);
    }
    json_object_set_new(json_object_get(r, "scan"), "scan_type",
                        json_string("MG"));
    s = fhir("fhir.imaging_study", r);
    assert_string_equal(str_at(s, "modality/0/code"), "MG");
    json_decref(s);
    json_decref(r);
}

/* The ordered procedure's description is the concept's text (docs/
 * schema.md), not a Coding.display no code system stands behind. */
static void
test_fhir_imaging_study_procedure_text(void **state)
{
    json_t *r = record(), *s;

    (void)state;
    s = fhir("fhir.imaging_study", r);
    assert_string_equal(str_at(s, "procedureCode/0/text"), "XR CHEST 2 VIEWS");
    assert_null(str_at(s, "procedureCode/0/coding/0/display"));
    json_decref(s);
    json_decref(r);
}

/* DiagnosticReport.issued: the version's OBR-22, else when it was signed;
 * Patient.deceasedBoolean from a boolean or a mapped "true". */
static void
test_fhir_issued_and_deceased_fallbacks(void **state)
{
    json_t *r = record(), *d;

    (void)state;
    json_object_del(json_object_get(r, "report"), "issued_at");
    d = fhir("fhir.diagnostic_report", r);
    assert_string_equal(str_at(d, "issued"), "2024-01-02T10:01:00+00:00");
    json_decref(d);
    json_object_set_new(json_object_get(r, "patient"), "deceased",
                        json_string("true"));
    d = fhir("fhir.patient", r);
    assert_true(json_is_true(json_object_get(d, "deceasedBoolean")));
    json_decref(d);
    json_object_set_new(json_object_get(r, "patient"), "deceased",
                        json_true());
    d = fhir("fhir.patient", r);
    assert_true(json_is_true(json_object_get(d, "deceasedBoolean")));
    json_decref(d);
    json_decref(r);
}

/* The parts of one message give at most 20,000 group items together:
 * each part repeats the head's identifiers, and 1000 parts of a long
 * PID-3 made millions of rows for one message. */
static void
test_map_bounds_the_items_of_all_parts(void **state)
{
    struct mg_hl7v2_parse_opts opts = {0};
    const struct mg_mapping_route *route;
    struct mg_mapping_set *set;
    struct mg_hl7v2_msg *msg;
    struct mg_arena a;
    struct mg_buf b;
    struct mg_diag d;
    json_t *in = NULL;

    (void)state;
    mg_arena_init(&a, 64 * 1024, 0);
    mg_buf_init(&b, 0);
    assert_int_equal(mg_mapping_set_load(MAPPINGS, &set, stderr), MG_OK);
    for (int ids = 20; ids <= 21; ids++) {
        b.len = 0;
        assert_int_equal(mg_buf_appendz(&b, "MSH|^~\\&|RIS|RAD|MEDGATE|HOSP|"
                                        "20240101120000||ORM^O01^ORM_O01|B-1|"
                                        "P|2.5.1\rPID|1||M0^^^X^MR"), MG_OK);
        for (int i = 1; i < ids; i++)
            assert_int_equal(mg_buf_appendf(&b, "~%d^^^X^PI", i), MG_OK);
        assert_int_equal(mg_buf_appendz(&b, "||Doe\r"), MG_OK);
        for (int g = 0; g < 1000; g++)
            assert_int_equal(mg_buf_appendf(&b, "ORC|NW|P%d|A%d\r", g, g),
                             MG_OK);
        assert_int_equal(mg_hl7v2_parse(mg_buf_str(&b), &opts, &a, &msg, &d),
                         MG_OK);
        assert_int_equal(mg_mapping_route_find(set, &msg->hdr, "any", &route),
                         MG_OK);
        /* 20 identifiers in each of 1000 parts: 20,000, taken */
        assert_int_equal(mg_adapter_map(mg_adapter_find("hl7v2.order"), route,
                                        msg, &a, &in, &d),
                         ids == 20 ? MG_OK : MG_EMAPPING);
        json_decref(in);
        in = NULL;
    }
    assert_int_equal(d.code, 100);
    mg_mapping_set_free(set);
    mg_buf_dispose(&b);
    mg_arena_dispose(&a);
}

/* FHIR has no empty strings: an empty column is left out like a null. */
static void
test_fhir_leaves_out_empty_strings(void **state)
{
    json_t *r = record(), *p;

    (void)state;
    json_object_set_new(json_object_get(r, "patient"), "first_name",
                        json_string(""));
    json_object_set_new(json_object_get(r, "patient"), "middle_name",
                        json_string(""));
    json_object_set_new(json_object_get(r, "patient"), "phone",
                        json_string(""));
    json_object_set_new(json_object_get(r, "report"), "impression",
                        json_string(""));
    json_object_set_new(json_object_get(r, "report"), "findings_text",
                        json_string(""));
    p = fhir("fhir.patient", r);
    assert_string_equal(str_at(p, "name/0/family"), "O'Brien");
    assert_null(json_object_get(json_array_get(json_object_get(p, "name"), 0),
                                "given"));
    assert_null(json_object_get(p, "telecom"));
    json_decref(p);
    p = fhir("fhir.diagnostic_report", r);
    assert_null(json_object_get(p, "conclusion"));
    assert_null(json_object_get(p, "presentedForm"));
    json_decref(p);
    json_decref(r);
}

/* The records an input names: the same key gives the same fingerprint,
 * a key of another kind (an MRN equal to an accession) does not, and a
 * message with more keys than fit says so. */
static void
test_input_keys(void **state)
{
    json_t *a = json_loads("{\"patient\": {\"medical_record_number\": \"X1\"},"
                           " \"scan\": {\"accession_number\": \"A1\","
                           " \"study_instance_uid\": \"\"},"
                           " \"patient_identifiers\": [{\"value\": \"X1\"},"
                           " {\"value\": \"S9\"}, {\"system\": \"no value\"}]}",
                           0, NULL);
    json_t *b = json_loads("{\"patient\": {\"medical_record_number\": \"A1\"},"
                           " \"merge\": {\"prior_medical_record_number\": \"X1\"}}",
                           0, NULL);
    uint64_t ka[8], kb[8], few[2];

    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    /* MRN, accession, two identifiers (an empty UID and a valueless
     * identifier name nothing). */
    assert_int_equal(mg_adapter_input_keys(a, ka, 8), 4);
    assert_int_equal(mg_adapter_input_keys(b, kb, 8), 2);
    assert_true(ka[0] == kb[1]);  /* MRN X1 and prior MRN X1: one patient */
    assert_true(ka[1] != kb[0]);  /* accession A1 is not MRN A1 */
    assert_true(ka[0] != ka[2]);  /* MRN X1 is not identifier X1 */
    assert_int_equal(mg_adapter_input_keys(a, few, 2), 4); /* did not fit */
    json_decref(a);
    json_decref(b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_input_keys),
        cmocka_unit_test(test_route_needs_an_inbound_adapter),
        cmocka_unit_test(test_iso_to_hl7),
        cmocka_unit_test(test_oru_reads_back_through_the_results_mapping),
        cmocka_unit_test(test_oru_status_codes),
        cmocka_unit_test(test_oru_needs_mrn_and_study),
        cmocka_unit_test(test_oru_interpreter_is_a_name),
        cmocka_unit_test(test_oru_report_sections),
        cmocka_unit_test(test_oru_blank_lines_kept),
        cmocka_unit_test(test_oru_obr4_never_empty),
        cmocka_unit_test(test_oru_declares_utf8),
        cmocka_unit_test(test_oru_identifier_authorities),
        cmocka_unit_test(test_oru_leaves_out_retired_identifiers),
        cmocka_unit_test(test_fhir_patient_marks_retired_identifiers),
        cmocka_unit_test(test_oru_obr7_and_cancelled),
        cmocka_unit_test(test_oru_identifier_and_name_details),
        cmocka_unit_test(test_fhir_patient_identifier_and_name_details),
        cmocka_unit_test(test_oru_needs_control_id_and_time),
        cmocka_unit_test(test_fhir_patient),
        cmocka_unit_test(test_fhir_imaging_study),
        cmocka_unit_test(test_fhir_diagnostic_report),
        cmocka_unit_test(test_fhir_diagnostic_report_attachments),
        cmocka_unit_test(test_fhir_refuses_what_fhir_refuses),
        cmocka_unit_test(test_oru_attachments),
        cmocka_unit_test(test_fhir_imaging_study_without_identifiers),
        cmocka_unit_test(test_fhir_imaging_study_code_system),
        cmocka_unit_test(test_fhir_leaves_out_empty_strings),
        cmocka_unit_test(test_map_bounds_the_items_of_all_parts),
        cmocka_unit_test(test_mrn_keeps_its_identifier_type),
        cmocka_unit_test(test_fhir_identifier_types),
        cmocka_unit_test(test_fhir_imaging_study_modality_is_acquisition),
        cmocka_unit_test(test_fhir_imaging_study_procedure_text),
        cmocka_unit_test(test_fhir_issued_and_deceased_fallbacks),
    };

    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
