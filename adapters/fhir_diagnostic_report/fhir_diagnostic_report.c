/* fhir.diagnostic_report -- internal report -> FHIR R4 DiagnosticReport
 * (outbound only until the FHIR REST issue): category RAD, code LOINC
 * 18748-4 (diagnostic imaging study), the report's status as it is (the
 * schema uses FHIR's codes), the impression as the conclusion and the
 * report text as a text/plain presentedForm, followed by the report's
 * attachments (record["files"]: a PDF kept from an OBX ED inline, an RP
 * reference as its URL). A cancelled report has neither. */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "adapters/adapter.h"
#include "core/alloc.h"
#include "core/error.h"

static int
add_text(json_t *forms, const char *text)
{
    size_t n = strlen(text);
    size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = mg_malloc(cap);

    if (b64 == NULL)
        return MG_ENOMEM;
    sodium_bin2base64(b64, cap, (const unsigned char *)text, n,
                      sodium_base64_VARIANT_ORIGINAL);
    json_array_append_new(forms, json_pack(
        "{s:s,s:s}", "contentType", "text/plain; charset=utf-8", "data",
        b64));
    mg_free(b64);
    return MG_OK;
}

/* An Attachment per attachment of the report: its content inline (data,
 * base64 as stored) or its url, with contentType, size and title. R4's
 * Attachment.hash is SHA-1, which is not kept (scan_files has SHA-256). */
static void
add_files(json_t *forms, const json_t *r)
{
    struct mg_adapter_file f;
    json_t *a;

    for (size_t k = 0; mg_adapter_file(r, k, &f); k++) {
        /* Only what the EMR can use: a pointer that is an absolute URL (an
         * RP.1 "reports/2024 01/r.pdf" resolves nowhere there and is no
         * FHIR url), or content that is not empty. */
        if (f.uri != NULL ? !mg_adapter_is_uri(f.uri) : f.base64.len == 0)
            continue;
        a = json_object();
        mg_adapter_json_set(a, "contentType",
                            f.mime ? f.mime : "application/octet-stream");
        if (f.uri != NULL)
            mg_adapter_json_set(a, "url", f.uri);
        else
            json_object_set_new(a, "data", json_stringn(f.base64.ptr,
                                                        f.base64.len));
        if (f.size >= 0 && f.size <= 2147483647LL) /* unsignedInt */
            json_object_set_new(a, "size", json_integer(f.size));
        mg_adapter_json_set(a, "title", f.name);
        json_array_append_new(forms, a);
    }
}

static int
to_outbound(const json_t *r, struct mg_buf *out, struct mg_diag *diag)
{
    const char *id = mg_adapter_get(r, "report", "id");
    const char *pid = mg_adapter_get(r, "patient", "id");
    const char *sid = mg_adapter_get(r, "scan", "id");
    const char *ext = mg_adapter_get(r, "report", "external_id");
    const char *who = mg_adapter_get(r, "report", "reporting_radiologist_name");
    const char *text = mg_adapter_get(r, "report", "findings_text");
    const char *status = mg_adapter_get(r, "report", "report_status");
    const char *issued = mg_adapter_get(r, "report", "issued_at");
    json_t *res, *forms;
    char ref[80];
    int rc = MG_OK;

    if (id == NULL || pid == NULL)
        return mg_adapter_refuse(diag, "a DiagnosticReport needs the "
                                 "report's and the patient's ids");
    snprintf(ref, sizeof(ref), "Patient/%s", pid);
    res = json_pack("{s:s,s:s,s:s,s:[{s:[{s:s,s:s}]}],s:{s:[{s:s,s:s,s:s}]},"
                    "s:{s:s}}",
                    "resourceType", "DiagnosticReport", "id", id, "status",
                    status ? status : "registered", "category", "coding",
                    "system", "http://terminology.hl7.org/CodeSystem/v2-0074",
                    "code", "RAD", "code", "coding", "system",
                    "http://loinc.org", "code", "18748-4", "display",
                    "Diagnostic imaging study", "subject", "reference", ref);
    if (ext != NULL)
        json_object_set_new(res, "identifier", json_pack("[{s:s}]", "value",
                                                         ext));
    mg_adapter_json_time(res, "effectiveDateTime",
                         mg_adapter_get(r, "report", "effective_at"), false);
    /* when this version was issued (OBR-22), else when it was signed */
    mg_adapter_json_time(res, "issued",
                         issued ? issued
                                : mg_adapter_get(r, "report", "signed_at"),
                         true);
    if (who != NULL)
        json_object_set_new(res, "resultsInterpreter",
                            json_pack("[{s:s}]", "display", who));
    if (sid != NULL) {
        snprintf(ref, sizeof(ref), "ImagingStudy/%s", sid);
        json_object_set_new(res, "imagingStudy",
                            json_pack("[{s:s}]", "reference", ref));
    }
    /* A cancelled report (OBR-25 X: withdrawn) goes without its text and
     * attachments, as the ORU^R01 goes without observations: its words
     * are not to be read as a result any more. */
    if (status != NULL && strcmp(status, "cancelled") == 0)
        return mg_adapter_json_out(res, out);
    mg_adapter_json_set(res, "conclusion",
                              mg_adapter_get(r, "report", "impression"));
    forms = json_array();
    if (text != NULL)
        rc = add_text(forms, text);
    add_files(forms, r);
    if (rc != MG_OK) {
        json_decref(forms);
        json_decref(res);
        return rc;
    }
    if (json_array_size(forms) > 0)
        json_object_set(res, "presentedForm", forms);
    json_decref(forms);
    return mg_adapter_json_out(res, out);
}

const struct mg_adapter mg_adapter_fhir_diagnostic_report = {
    .name = "fhir.diagnostic_report",
    .accepts = NULL,
    .to_internal = NULL,
    .to_outbound = to_outbound,
};
