/* hl7v2.result -- radiology results: reports and attachments linked to
 * their scan (hl7v2_result.sql). Inbound the input is the usual one
 * (mg_adapter_input). Outbound it writes a report as an ORU^R01 (v2.5.1,
 * IHE RAD-28 style) for a RIS: PID, OBR with the accession in OBR-18 and
 * the status in OBR-25, an OBX 113014 with the Study Instance UID, one TX
 * OBX per line of the findings and of the impression. The mapping of
 * mappings/results.json reads every one of those fields back. */
#include <stdio.h>
#include <string.h>

#include "adapters/adapter.h"
#include "core/buf.h"
#include "core/error.h"

static const char *const accepts[] = {"ORU^R01", NULL};

static const struct mg_hl7v2_delims delims = {'|', '^', '~', '\\', '&', 0};

/* One field (or component) value, escaped; nothing for NULL. */
static int
put(struct mg_buf *b, const char *v)
{
    return v ? mg_hl7v2_escape(b, &delims, mg_str_from(v)) : MG_OK;
}

/* An ISO time as an HL7 DTM; nothing for NULL or an unreadable one. */
static int
put_time(struct mg_buf *b, const char *iso)
{
    char ts[32];

    return iso && mg_adapter_iso_to_hl7(iso, ts) == MG_OK
               ? mg_buf_appendz(b, ts)
               : MG_OK;
}

/* Table 0001 from patients.gender. */
static const char *
sex_code(const char *gender)
{
    static const char *const map[][2] = {
        {"male", "M"}, {"female", "F"}, {"other", "O"}, {"unknown", "U"}};

    for (size_t i = 0; gender && i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(gender, map[i][0]) == 0)
            return map[i][1];
    return NULL;
}

/* Table 0123 from reports.report_status. */
static const char *
status_code(const char *status)
{
    static const char *const map[][2] = {
        {"registered", "I"}, {"preliminary", "P"}, {"final", "F"},
        {"amended", "C"},    {"corrected", "C"},   {"cancelled", "X"}};

    for (size_t i = 0; status && i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(status, map[i][0]) == 0)
            return map[i][1];
    return "I";
}

static int
put_msh(struct mg_buf *b, const json_t *r)
{
    int rc = mg_buf_appendz(b, "MSH|^~\\&|");

    if (rc == MG_OK) rc = put(b, mg_adapter_get(r, "message", "sending_application"));
    if (rc == MG_OK) rc = mg_buf_appendc(b, '|');
    if (rc == MG_OK) rc = put(b, mg_adapter_get(r, "message", "sending_facility"));
    if (rc == MG_OK) rc = mg_buf_appendc(b, '|');
    if (rc == MG_OK) rc = put(b, mg_adapter_get(r, "message", "receiving_application"));
    if (rc == MG_OK) rc = mg_buf_appendc(b, '|');
    if (rc == MG_OK) rc = put(b, mg_adapter_get(r, "message", "receiving_facility"));
    if (rc == MG_OK) rc = mg_buf_appendc(b, '|');
    if (rc == MG_OK) rc = put(b, mg_adapter_get(r, "message", "datetime"));
    if (rc == MG_OK) rc = mg_buf_appendz(b, "||ORU^R01^ORU_R01|");
    if (rc == MG_OK) rc = put(b, mg_adapter_get(r, "message", "control_id"));
    return rc == MG_OK ? mg_buf_appendz(b, "|P|2.5.1\r") : rc;
}

/* PID-3: the MRN typed MR, then the other identifiers with their type. */
static int
put_pid(struct mg_buf *b, const json_t *r)
{
    const json_t *ids = json_object_get(r, "identifiers"), *id;
    const char *mrn = mg_adapter_get(r, "patient", "medical_record_number");
    size_t i;
    int rc = mg_buf_appendz(b, "PID|1||");

    if (rc == MG_OK) rc = put(b, mrn);
    if (rc == MG_OK) rc = mg_buf_appendz(b, "^^^^MR");
    json_array_foreach(ids, i, id) {
        const char *v = json_string_value(json_object_get(id, "value"));
        const char *t = json_string_value(json_object_get(id, "type_code"));
        if (rc != MG_OK || v == NULL || (mrn && strcmp(v, mrn) == 0))
            continue;
        rc = mg_buf_appendc(b, '~');
        if (rc == MG_OK) rc = put(b, v);
        if (rc == MG_OK) rc = mg_buf_appendz(b, "^^^^");
        if (rc == MG_OK) rc = put(b, t);
    }
    if (rc == MG_OK) rc = mg_buf_appendz(b, "||");
    if (rc == MG_OK) rc = put(b, mg_adapter_get(r, "patient", "last_name"));
    if (rc == MG_OK) rc = mg_buf_appendc(b, '^');
    if (rc == MG_OK) rc = put(b, mg_adapter_get(r, "patient", "first_name"));
    if (rc == MG_OK) rc = mg_buf_appendc(b, '^');
    if (rc == MG_OK) rc = put(b, mg_adapter_get(r, "patient", "middle_name"));
    if (rc == MG_OK) rc = mg_buf_appendz(b, "||");
    if (rc == MG_OK) rc = put_time(b, mg_adapter_get(r, "patient", "date_of_birth"));
    if (rc == MG_OK) rc = mg_buf_appendc(b, '|');
    if (rc == MG_OK) rc = put(b, sex_code(mg_adapter_get(r, "patient", "gender")));
    return rc == MG_OK ? mg_buf_appendc(b, '\r') : rc;
}

/* OBR: 2 placer, 3 filler, 4 procedure, 7 observation time, 18 accession,
 * 22 results reported, 25 status, 32 principal result interpreter. */
static int
put_obr(struct mg_buf *b, const json_t *r, const char *status)
{
    int rc = mg_buf_appendz(b, "OBR|1|");

    if (rc == MG_OK) rc = put(b, mg_adapter_get(r, "scan", "placer_order_number"));
    if (rc == MG_OK) rc = mg_buf_appendc(b, '|');
    if (rc == MG_OK) rc = put(b, mg_adapter_get(r, "scan", "filler_order_number"));
    if (rc == MG_OK) rc = mg_buf_appendc(b, '|');
    if (rc == MG_OK) rc = put(b, mg_adapter_get(r, "scan", "procedure_code"));
    if (rc == MG_OK) rc = mg_buf_appendc(b, '^');
    if (rc == MG_OK) rc = put(b, mg_adapter_get(r, "scan", "procedure_description"));
    if (rc == MG_OK) rc = mg_buf_appendc(b, '^');
    if (rc == MG_OK) rc = put(b, mg_adapter_get(r, "scan", "procedure_code_system"));
    if (rc == MG_OK) rc = mg_buf_appendz(b, "|||");
    if (rc == MG_OK) rc = put_time(b, mg_adapter_get(r, "report", "effective_at"));
    if (rc == MG_OK) rc = mg_buf_appendz(b, "|||||||||||");
    if (rc == MG_OK) rc = put(b, mg_adapter_get(r, "scan", "accession_number"));
    if (rc == MG_OK) rc = mg_buf_appendz(b, "||||");
    if (rc == MG_OK) rc = put_time(b, mg_adapter_get(r, "report", "issued_at"));
    if (rc == MG_OK) rc = mg_buf_appendz(b, "|||");
    if (rc == MG_OK) rc = mg_buf_appendz(b, status);
    if (rc == MG_OK) rc = mg_buf_appendz(b, "|||||||");
    if (rc == MG_OK) rc = put(b, mg_adapter_get(r, "report", "reporting_radiologist_name"));
    if (rc == MG_OK) rc = mg_buf_appendc(b, '^');
    if (rc == MG_OK) rc = put_time(b, mg_adapter_get(r, "report", "signed_at"));
    return rc == MG_OK ? mg_buf_appendc(b, '\r') : rc;
}

/* One OBX per line of the first size bytes of text (none for NULL),
 * numbered from *n. */
static int
put_text(struct mg_buf *b, int *n, const char *code, const char *text,
         size_t size, const char *status)
{
    const char *end = text ? text + size : NULL;
    int rc = MG_OK;

    while (rc == MG_OK && text != NULL && text < end) {
        const char *nl = memchr(text, '\n', (size_t)(end - text));
        size_t len = nl ? (size_t)(nl - text) : (size_t)(end - text);
        char line[64];
        snprintf(line, sizeof(line), "OBX|%d|TX|%s||", ++*n, code);
        rc = mg_buf_appendz(b, line);
        if (rc == MG_OK)
            rc = mg_hl7v2_escape(b, &delims, mg_str_n(text, len));
        if (rc == MG_OK)
            rc = mg_buf_appendz(b, "||||||");
        if (rc == MG_OK)
            rc = mg_buf_appendz(b, status);
        if (rc == MG_OK)
            rc = mg_buf_appendc(b, '\r');
        text += len + (nl != NULL);
    }
    return rc;
}

/* The findings lines that are not also the impression's (inbound, the
 * findings are every text OBX, the impression one of them). */
static size_t
findings_only(const char *findings, const char *impression)
{
    size_t n = findings ? strlen(findings) : 0, m;

    if (impression == NULL || (m = strlen(impression)) == 0 || m > n)
        return n;
    if (strcmp(findings + n - m, impression) != 0)
        return n;
    n -= m;
    return n > 0 && findings[n - 1] == '\n' ? n - 1 : n;
}

static int
to_outbound(const json_t *r, struct mg_buf *b, struct mg_diag *diag)
{
    const char *status = status_code(mg_adapter_get(r, "report", "report_status"));
    const char *findings = mg_adapter_get(r, "report", "findings_text");
    const char *impression = mg_adapter_get(r, "report", "impression");
    const char *uid = mg_adapter_get(r, "scan", "study_instance_uid");
    int n = 0, rc;

    if (mg_adapter_get(r, "patient", "medical_record_number") == NULL ||
        (mg_adapter_get(r, "scan", "accession_number") == NULL && uid == NULL))
        return mg_adapter_refuse(diag, "an ORU^R01 needs the patient's MRN "
                                 "and the scan's accession number or Study "
                                 "Instance UID");
    rc = put_msh(b, r);
    if (rc == MG_OK) rc = put_pid(b, r);
    if (rc == MG_OK) rc = put_obr(b, r, status);
    if (rc == MG_OK && uid != NULL) {
        rc = mg_buf_appendz(b, "OBX|1|ST|113014^DICOM Study^DCM||");
        if (rc == MG_OK) rc = put(b, uid);
        if (rc == MG_OK) rc = mg_buf_appendz(b, "||||||");
        if (rc == MG_OK) rc = mg_buf_appendz(b, status);
        if (rc == MG_OK) rc = mg_buf_appendc(b, '\r');
        n = 1;
    }
    if (rc == MG_OK)
        rc = put_text(b, &n, "59776-5^Findings^LN", findings,
                      findings_only(findings, impression), status);
    if (rc == MG_OK)
        rc = put_text(b, &n, "19005-8^Impression^LN", impression,
                      impression ? strlen(impression) : 0, status);
    return rc;
}

const struct mg_adapter mg_adapter_hl7v2_result = {
    .name = "hl7v2.result",
    .accepts = accepts,
    .to_internal = mg_adapter_input,
    .to_outbound = to_outbound,
};
