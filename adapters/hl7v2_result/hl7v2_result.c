/* hl7v2.result -- radiology results: reports and attachments linked to
 * their scan (hl7v2_result.sql). Inbound the input is the usual one
 * (mg_adapter_input). Outbound it writes a report as an ORU^R01 (v2.5.1,
 * IHE RAD-28 style) for a RIS: PID, OBR with the accession in OBR-18 and
 * the status in OBR-25, an OBX 113014 with the Study Instance UID, one TX
 * OBX per line of the findings, of the impression and of the
 * recommendations (a blank line is an OBX with an empty OBX-5), then one
 * OBX per attachment: ED with its base64 data when it is held inline, RP
 * with its URI otherwise. The
 * mapping of mappings/results.json reads every one of those fields back,
 * blank lines included ("keep_empty"). */
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
        {"registered", "I"}, {"partial", "R"}, {"preliminary", "P"},
        {"final", "F"},
        {"amended", "C"},    {"corrected", "C"},   {"cancelled", "X"}};

    for (size_t i = 0; status && i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(status, map[i][0]) == 0)
            return map[i][1];
    return "I";
}

/* Whether the n bytes at p are all ASCII. */
static bool
is_ascii(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] >= 0x80)
            return false;
    return true;
}

/* MSH; MSH-18 says UNICODE UTF-8 when the message is not all ASCII, since
 * v2.5.1 reads a message without MSH-18 as ASCII (2.15.9.18) and a RIS
 * would decode the UTF-8 bytes of a name or report in its own default. */
static int
put_msh(struct mg_buf *b, const json_t *r, bool utf8)
{
    size_t start = b->len;
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
    if (rc == MG_OK) rc = mg_buf_appendz(b, "|P|2.5.1");
    if (rc == MG_OK && (utf8 || !is_ascii(b->ptr + start, b->len - start)))
        rc = mg_buf_appendz(b, "||||||UNICODE UTF-8");
    return rc == MG_OK ? mg_buf_appendc(b, '\r') : rc;
}

/* CX.4 for a patient_identifiers row, the way the adapters read one in
 * (common.sql): its system urn:oid:<oid> as the HD's ISO universal id,
 * another URI as a URI universal id, each after the namespace (HD.1, the
 * row's assigner) many receivers match on; a namespace as it is; nothing
 * for urn:medgate:unqualified, which stands for no authority. */
static int
put_authority(struct mg_buf *b, const json_t *id)
{
    const char *system = json_string_value(json_object_get(id, "system"));
    const char *ns = json_string_value(json_object_get(id, "assigner"));
    const char *type = NULL;
    int rc = MG_OK;

    if (system == NULL || strcmp(system, "urn:medgate:unqualified") == 0)
        return MG_OK;
    if (strncmp(system, "urn:oid:", 8) == 0) {
        system += 8;
        type = "&ISO";
    } else if (mg_adapter_is_uri(system)) {
        type = "&URI";
    }
    if (type == NULL)
        return put(b, system);
    if (ns != NULL && *ns)
        rc = put(b, ns);
    if (rc == MG_OK) rc = mg_buf_appendc(b, '&');
    if (rc == MG_OK) rc = put(b, system);
    return rc == MG_OK ? mg_buf_appendz(b, type) : rc;
}

/* CX.6 to CX.8 of a patient_identifiers row: assigning facility, and the
 * period it is valid in; nothing when it has none of them. */
static int
put_cx_tail(struct mg_buf *b, const json_t *id)
{
    const char *fac = json_string_value(json_object_get(id,
                                                        "assigning_facility"));
    const char *from = json_string_value(json_object_get(id, "period_start"));
    const char *to = json_string_value(json_object_get(id, "period_end"));
    int rc = MG_OK;

    if (fac == NULL && from == NULL && to == NULL)
        return MG_OK;
    rc = mg_buf_appendc(b, '^');
    if (rc == MG_OK) rc = put(b, fac);
    if (rc == MG_OK && (from != NULL || to != NULL))
        rc = mg_buf_appendc(b, '^');
    if (rc == MG_OK) rc = put_time(b, from);
    if (rc == MG_OK && to != NULL) rc = mg_buf_appendc(b, '^');
    return rc == MG_OK ? put_time(b, to) : rc;
}

/* PID-3: the MRN with its type (MR, or the type of the identifier it
 * came from), then the other current identifiers with their
 * type, each with its assigning authority. Retired ones (a merged
 * record's, use old) are left out: a RIS matching any MR repetition would
 * file the report under the retired patient. */
static int
put_pid(struct mg_buf *b, const json_t *r)
{
    const json_t *ids = json_object_get(r, "identifiers"), *id;
    const json_t *mrn_id = mg_adapter_mrn_identifier(r);
    const char *mrn = mg_adapter_get(r, "patient", "medical_record_number");
    const char *suffix = mg_adapter_get(r, "patient", "name_suffix");
    const char *prefix = mg_adapter_get(r, "patient", "name_prefix");
    size_t i;
    int rc = mg_buf_appendz(b, "PID|1||");

    if (rc == MG_OK) rc = put(b, mrn);
    if (rc == MG_OK) rc = mg_buf_appendz(b, "^^^");
    if (rc == MG_OK) rc = put_authority(b, mrn_id);
    if (rc == MG_OK) rc = mg_buf_appendc(b, '^');
    if (rc == MG_OK) rc = put(b, mg_adapter_mrn_type(r));
    if (rc == MG_OK) rc = put_cx_tail(b, mrn_id);
    json_array_foreach(ids, i, id) {
        const char *v = json_string_value(json_object_get(id, "value"));
        const char *t = json_string_value(json_object_get(id, "type_code"));
        if (rc != MG_OK || v == NULL || id == mrn_id ||
            mg_adapter_identifier_retired(id))
            continue;
        rc = mg_buf_appendc(b, '~');
        if (rc == MG_OK) rc = put(b, v);
        if (rc == MG_OK) rc = mg_buf_appendz(b, "^^^");
        if (rc == MG_OK) rc = put_authority(b, id);
        if (rc == MG_OK) rc = mg_buf_appendc(b, '^');
        if (rc == MG_OK) rc = put(b, t);
        if (rc == MG_OK) rc = put_cx_tail(b, id);
    }
    if (rc == MG_OK) rc = mg_buf_appendz(b, "||");
    if (rc == MG_OK) rc = put(b, mg_adapter_get(r, "patient", "last_name"));
    if (rc == MG_OK) rc = mg_buf_appendc(b, '^');
    if (rc == MG_OK) rc = put(b, mg_adapter_get(r, "patient", "first_name"));
    if (rc == MG_OK) rc = mg_buf_appendc(b, '^');
    if (rc == MG_OK) rc = put(b, mg_adapter_get(r, "patient", "middle_name"));
    /* XPN.4 suffix, XPN.5 prefix (as adt.json reads them in) */
    if (rc == MG_OK && (suffix != NULL || prefix != NULL))
        rc = mg_buf_appendc(b, '^');
    if (rc == MG_OK) rc = put(b, suffix);
    if (rc == MG_OK && prefix != NULL) rc = mg_buf_appendc(b, '^');
    if (rc == MG_OK) rc = put(b, prefix);
    if (rc == MG_OK) rc = mg_buf_appendz(b, "||");
    if (rc == MG_OK) rc = put_time(b, mg_adapter_get(r, "patient", "date_of_birth"));
    if (rc == MG_OK) rc = mg_buf_appendc(b, '|');
    if (rc == MG_OK) rc = put(b, sex_code(mg_adapter_get(r, "patient", "gender")));
    return rc == MG_OK ? mg_buf_appendc(b, '\r') : rc;
}

/* OBR-4, the universal service id, which ORU^R01 requires (v2.5.1
 * 7.4.1.4): the procedure code^description^system. A scan that a result
 * created has no order and so no procedure code: then the procedure or
 * study description as text only (CE.1 is optional), else the modality
 * as its DICOM code (scan_type holds one, "DCM" in table 0396), else LOINC
 * 18748-4, the code fhir.diagnostic_report gives every imaging report. */
static int
put_service(struct mg_buf *b, const json_t *r)
{
    const char *code = mg_adapter_get(r, "scan", "procedure_code");
    const char *text = mg_adapter_get(r, "scan", "procedure_description");
    const char *sys = mg_adapter_get(r, "scan", "procedure_code_system");
    int rc;

    if (code == NULL) {
        sys = NULL; /* a coding system names nothing without a code */
        if (text == NULL)
            text = mg_adapter_get(r, "scan", "study_description");
    }
    if (code == NULL && text == NULL &&
        mg_adapter_dicom_modality(mg_adapter_get(r, "scan", "scan_type"))) {
        code = mg_adapter_get(r, "scan", "scan_type");
        sys = "DCM";
    }
    if (code == NULL && text == NULL) {
        code = "18748-4";
        text = "Diagnostic imaging study";
        sys = "LN";
    }
    rc = put(b, code);
    if (rc == MG_OK && (text != NULL || sys != NULL))
        rc = mg_buf_appendc(b, '^');
    if (rc == MG_OK) rc = put(b, text);
    if (rc == MG_OK && sys != NULL) rc = mg_buf_appendc(b, '^');
    return rc == MG_OK ? put(b, sys) : rc;
}

/* The first of three report columns that has a value, or NULL. */
static const char *
first_of(const json_t *r, const char *a, const char *b, const char *c)
{
    const char *v = mg_adapter_get(r, "report", a);

    if (v == NULL)
        v = mg_adapter_get(r, "report", b);
    return v != NULL ? v : mg_adapter_get(r, "report", c);
}

/* OBR: 2 placer, 3 filler, 4 procedure, 7 observation time, 18 accession,
 * 22 results reported, 25 status, 32 principal result interpreter (an
 * NDL: the name goes in the family name of its CNN, NDL.1.2, and the
 * signing time in NDL.2; NDL.1.1 is an id number). */
static int
put_obr(struct mg_buf *b, const json_t *r, const char *status)
{
    const char *who = mg_adapter_get(r, "report", "reporting_radiologist_name");
    int rc = mg_buf_appendz(b, "OBR|1|");

    if (rc == MG_OK) rc = put(b, mg_adapter_get(r, "scan", "placer_order_number"));
    if (rc == MG_OK) rc = mg_buf_appendc(b, '|');
    if (rc == MG_OK) rc = put(b, mg_adapter_get(r, "scan", "filler_order_number"));
    if (rc == MG_OK) rc = mg_buf_appendc(b, '|');
    if (rc == MG_OK) rc = put_service(b, r);
    if (rc == MG_OK) rc = mg_buf_appendz(b, "|||");
    /* OBR-7 must be valued in a report (v2.5.1 4.5.3.7): the observation
     * time, else when the report was issued or signed. */
    if (rc == MG_OK) rc = put_time(b, first_of(r, "effective_at", "issued_at",
                                               "signed_at"));
    if (rc == MG_OK) rc = mg_buf_appendz(b, "|||||||||||");
    if (rc == MG_OK) rc = put(b, mg_adapter_get(r, "scan", "accession_number"));
    if (rc == MG_OK) rc = mg_buf_appendz(b, "||||");
    if (rc == MG_OK) rc = put_time(b, mg_adapter_get(r, "report", "issued_at"));
    if (rc == MG_OK) rc = mg_buf_appendz(b, "|||");
    if (rc == MG_OK) rc = mg_buf_appendz(b, status);
    if (rc == MG_OK) rc = mg_buf_appendz(b, "|||||||");
    if (rc == MG_OK && who != NULL) rc = mg_buf_appendc(b, '&');
    if (rc == MG_OK) rc = put(b, who);
    if (rc == MG_OK) rc = mg_buf_appendc(b, '^');
    if (rc == MG_OK) rc = put_time(b, mg_adapter_get(r, "report", "signed_at"));
    return rc == MG_OK ? mg_buf_appendc(b, '\r') : rc;
}

/* The line of text that starts at p (before end): *len is its length
 * without its line end, "\n" or "\r\n" (text from a browser or Windows
 * ends lines with CRLF; a CR kept in the value would reach the receiver as
 * \X0D\ and turn a blank line into a non-blank one). Returns where the
 * next line starts. A final line end ends the last line and starts no
 * empty one: "A\n" is one line, "A\n\n" is "A" and a blank line. */
static const char *
line_at(const char *p, const char *end, size_t *len)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));

    if (nl == NULL) {
        *len = (size_t)(end - p);
        return end;
    }
    *len = (size_t)(nl - p) - (nl > p && nl[-1] == '\r');
    return nl + 1;
}

/* The start of the last line of text[0..n), n > 0, as line_at() reads
 * lines; *len is its length without its line end. */
static size_t
last_line(const char *text, size_t n, size_t *len)
{
    size_t e = n, s;

    if (text[e - 1] == '\n')
        e--;
    for (s = e; s > 0 && text[s - 1] != '\n'; s--)
        ;
    *len = e - s - (e < n && e > s && text[e - 1] == '\r');
    return s;
}

/* One TX OBX, numbered *n + 1, holding line (empty for a blank line: in
 * TX each OBX is a line on the receiver's display, HL7 v2.5.1 2.A.78). */
static int
put_line(struct mg_buf *b, int *n, const char *code, struct mg_str line,
         const char *status)
{
    char head[64];
    int rc;

    snprintf(head, sizeof(head), "OBX|%d|TX|%s||", ++*n, code);
    rc = mg_buf_appendz(b, head);
    if (rc == MG_OK) rc = mg_hl7v2_escape(b, &delims, line);
    if (rc == MG_OK) rc = mg_buf_appendz(b, "||||||");
    if (rc == MG_OK) rc = mg_buf_appendz(b, status);
    return rc == MG_OK ? mg_buf_appendc(b, '\r') : rc;
}

/* One OBX per line of text (none for NULL), blank lines included,
 * numbered from *n. */
static int
put_text(struct mg_buf *b, int *n, const char *code, const char *text,
         const char *status)
{
    const char *p = text, *end = text ? text + strlen(text) : NULL;
    size_t len;
    int rc = MG_OK;

    while (rc == MG_OK && p != NULL && p < end) {
        const char *next = line_at(p, end, &len);

        rc = put_line(b, n, code, mg_str_n(p, len), status);
        p = next;
    }
    return rc;
}

/* Whether tail's lines are text's lines from offset s on, each a whole
 * line; *end is then the offset past the last one's line end. */
static bool
lines_match(const char *text, size_t n, size_t s, const char *tail,
            size_t *end)
{
    const char *p = text + s, *e = text + n, *q = tail, *qe = tail + strlen(tail);
    size_t pl, ql;

    while (q < qe) {
        const char *qn = line_at(q, qe, &ql), *pn;

        if (p >= e)
            return false;
        pn = line_at(p, e, &pl);
        if (pl != ql || memcmp(p, q, pl) != 0)
            return false;
        p = pn;
        q = qn;
    }
    *end = (size_t)(p - text);
    return true;
}

/* Where tail (the impression, or the recommendations) stands in the
 * stored findings text[0..n) as whole consecutive lines, the last time:
 * [*start, *end). False when it is not there. */
static bool
find_block(const char *text, size_t n, const char *tail, size_t *start,
           size_t *end)
{
    size_t s, len;

    if (text == NULL || tail == NULL || *tail == '\0' || n == 0)
        return false;
    s = last_line(text, n, &len);
    for (;;) {
        if (lines_match(text, n, s, tail, end)) {
            *start = s;
            return true;
        }
        if (s == 0)
            return false;
        s = last_line(text, s, &len);
    }
}

/* The report's text OBX, from *n on. Inbound, the stored findings are
 * every text OBX of the report, the impression's and the recommendations'
 * among them, in the sender's order: so the findings go out line by line
 * in that order, each line with the code of the section it belongs to
 * (the impression's or recommendations' lines where they stand, a blank
 * line after a section with it), and nothing twice. A section that the
 * findings do not hold goes out after them. */
static int
put_sections(struct mg_buf *b, int *n, const char *findings,
             const char *impression, const char *advice, const char *status)
{
    static const char find_code[] = "59776-5^Findings^LN",
                      imp_code[] = "19005-8^Impression^LN",
                      rec_code[] = "18783-1^Recommendation^LN";
    size_t fn = findings ? strlen(findings) : 0, is = 0, ie = 0, rs = 0,
           re = 0, len;
    bool imp = find_block(findings, fn, impression, &is, &ie);
    bool rec = find_block(findings, fn, advice, &rs, &re);
    const char *p = findings, *code, *prev = find_code;
    int rc = MG_OK;

    if (imp && rec && is < re && rs < ie)
        imp = false; /* one inside the other: the impression goes after */
    while (rc == MG_OK && p != NULL && p < findings + fn) {
        size_t off = (size_t)(p - findings);
        const char *next = line_at(p, findings + fn, &len);

        code = imp && off >= is && off < ie   ? imp_code
               : rec && off >= rs && off < re ? rec_code
               : len == 0                     ? prev
                                              : find_code;
        rc = put_line(b, n, code, mg_str_n(p, len), status);
        prev = code;
        p = next;
    }
    if (rc == MG_OK && !imp)
        rc = put_text(b, n, imp_code, impression, status);
    if (rc == MG_OK && !rec)
        rc = put_text(b, n, rec_code, advice, status);
    return rc;
}

/* HL7 table 0191 type of data and the subtype for a MIME type, such that
 * medgate_mime_type (hl7v2_result.sql) reads the same MIME type back. */
static void
ed_type(const char *mime, const char **type, const char **subtype)
{
    static const char *const map[][3] = {
        {"application/pdf", "AP", "PDF"},  {"application/rtf", "AP", "RTF"},
        {"application/xml", "AP", "XML"},  {"text/html", "TEXT", "HTML"},
        {"image/jpeg", "IM", "JPEG"},      {"image/png", "IM", "PNG"},
        {"image/gif", "IM", "GIF"},        {"image/tiff", "IM", "TIFF"},
        {"application/dicom", "AP", "DICOM"}, {"text/plain", "TEXT", ""}};

    for (size_t i = 0; mime && i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(mime, map[i][0]) == 0) {
            *type = map[i][1];
            *subtype = map[i][2];
            return;
        }
    *type = mime && strncmp(mime, "image/", 6) == 0 ? "IM" : "AP";
    *subtype = "";
}

/* One OBX per attachment, numbered from *n: ED
 * (^type^subtype^Base64^data) when its content is held inline, else RP
 * (uri^^type^subtype). The code is LOINC 18748-4, the report document. */
static int
put_files(struct mg_buf *b, int *n, const json_t *r, const char *status)
{
    struct mg_adapter_file f;
    const char *type, *subtype;
    char head[80];
    int rc = MG_OK;

    for (size_t k = 0; rc == MG_OK && mg_adapter_file(r, k, &f); k++) {
        ed_type(f.mime, &type, &subtype);
        snprintf(head, sizeof(head), "OBX|%d|%s|18748-4^Diagnostic Imaging "
                 "Report^LN||", ++*n, f.uri ? "RP" : "ED");
        rc = mg_buf_appendz(b, head);
        if (f.uri != NULL) {
            if (rc == MG_OK) rc = put(b, f.uri);
            if (rc == MG_OK) rc = mg_buf_appendz(b, "^^");
            if (rc == MG_OK) rc = mg_buf_appendz(b, type);
            if (rc == MG_OK) rc = mg_buf_appendc(b, '^');
            if (rc == MG_OK) rc = mg_buf_appendz(b, subtype);
        } else {
            if (rc == MG_OK) rc = mg_buf_appendc(b, '^');
            if (rc == MG_OK) rc = mg_buf_appendz(b, type);
            if (rc == MG_OK) rc = mg_buf_appendc(b, '^');
            if (rc == MG_OK) rc = mg_buf_appendz(b, subtype);
            if (rc == MG_OK) rc = mg_buf_appendz(b, "^Base64^");
            /* escaped all the same: base64 holds no delimiter, but a row
             * written by something else might */
            if (rc == MG_OK) rc = mg_hl7v2_escape(b, &delims, f.base64);
        }
        if (rc == MG_OK) rc = mg_buf_appendz(b, "||||||");
        if (rc == MG_OK) rc = mg_buf_appendz(b, status);
        if (rc == MG_OK) rc = mg_buf_appendc(b, '\r');
    }
    return rc;
}

/* The ORU from PID on, into b. */
static int
put_body(struct mg_buf *b, const json_t *r)
{
    const char *status = status_code(mg_adapter_get(r, "report", "report_status"));
    const char *findings = mg_adapter_get(r, "report", "findings_text");
    const char *impression = mg_adapter_get(r, "report", "impression");
    const char *advice = mg_adapter_get(r, "report", "recommendations");
    const char *uid = mg_adapter_get(r, "scan", "study_instance_uid");
    int n = 0, rc;

    rc = put_pid(b, r);
    if (rc == MG_OK) rc = put_obr(b, r, status);
    /* A cancelled result (OBR-25 X) goes without observations. */
    if (rc != MG_OK || strcmp(status, "X") == 0)
        return rc;
    if (uid != NULL) {
        rc = mg_buf_appendz(b, "OBX|1|ST|113014^DICOM Study^DCM||");
        if (rc == MG_OK) rc = put(b, uid);
        if (rc == MG_OK) rc = mg_buf_appendz(b, "||||||");
        if (rc == MG_OK) rc = mg_buf_appendz(b, status);
        if (rc == MG_OK) rc = mg_buf_appendc(b, '\r');
        n = 1;
    }
    rc = put_sections(b, &n, findings, impression, advice, status);
    return rc == MG_OK ? put_files(b, &n, r, status) : rc;
}

static int
to_outbound(const json_t *r, struct mg_buf *b, struct mg_diag *diag)
{
    struct mg_buf body;
    int rc;

    if (mg_adapter_get(r, "patient", "medical_record_number") == NULL ||
        (mg_adapter_get(r, "scan", "accession_number") == NULL &&
         mg_adapter_get(r, "scan", "study_instance_uid") == NULL))
        return mg_adapter_refuse(diag, "an ORU^R01 needs the patient's MRN "
                                 "and the scan's accession number or Study "
                                 "Instance UID");
    if (mg_adapter_get(r, "message", "control_id") == NULL ||
        mg_adapter_get(r, "message", "datetime") == NULL)
        return mg_adapter_refuse(diag, "an ORU^R01 needs message.control_id "
                                 "(MSH-10) and message.datetime (MSH-7)");
    /* The body first: MSH-18 depends on what it holds. */
    mg_buf_init(&body, b->max);
    rc = put_body(&body, r);
    if (rc == MG_OK)
        rc = put_msh(b, r, !is_ascii(body.ptr, body.len));
    if (rc == MG_OK)
        rc = mg_buf_append(b, body.ptr, body.len);
    mg_buf_dispose(&body);
    return rc;
}

const struct mg_adapter mg_adapter_hl7v2_result = {
    .name = "hl7v2.result",
    .accepts = accepts,
    .to_internal = mg_adapter_input,
    .to_outbound = to_outbound,
};
