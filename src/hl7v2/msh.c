/* The MSH: reading it without trusting it (for ACKs of broken messages),
 * checking the fields the gateway relies on, and the small splitting
 * helpers the rest of the codec shares. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "hl7v2/hl7v2_int.h"

const struct mg_hl7v2_delims mg__hl7v2_std_delims = {'|', '^', '~', '\\',
                                                     '&', '\0'};

/* Versions this codec reads (MSH-12.1), DESIGN.md section 6. */
static const char *const versions[] = {"2.3", "2.3.1", "2.4", "2.5", "2.5.1",
                                       "2.6", "2.7", "2.7.1", "2.8", "2.8.1",
                                       "2.8.2"};

struct mg_str
mg__hl7v2_piece(struct mg_str s, char sep, int n)
{
    const char *p, *end, *q;

    if (n < 1 || s.len == 0)
        return mg_str_n(s.ptr ? s.ptr : "", 0);
    p = s.ptr;
    end = s.ptr + s.len;
    if (sep == '\0')
        return n == 1 ? s : mg_str_n(s.ptr, 0);
    for (; n > 1; n--) {
        q = memchr(p, sep, (size_t)(end - p));
        if (q == NULL)
            return mg_str_n(end, 0);
        p = q + 1;
    }
    q = memchr(p, sep, (size_t)(end - p));
    return mg_str_n(p, (size_t)((q ? q : end) - p));
}

int
mg__hl7v2_piece_count(struct mg_str s, char sep)
{
    const char *p, *end, *q;
    int n = 1;

    if (s.len == 0)
        return 0;
    if (sep == '\0')
        return 1;
    p = s.ptr;
    end = s.ptr + s.len;
    while ((q = memchr(p, sep, (size_t)(end - p))) != NULL) {
        n++;
        p = q + 1;
    }
    return n;
}

bool
mg__hl7v2_is_header_id(const char *id)
{
    return strcmp(id, "MSH") == 0 || strcmp(id, "FHS") == 0 ||
           strcmp(id, "BHS") == 0;
}

static bool
is_id_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool
mg__hl7v2_is_seg_id(const char *p, size_t len)
{
    return len == 3 && is_id_char(p[0]) && is_id_char(p[1]) &&
           is_id_char(p[2]);
}

void
mg__hl7v2_diag(struct mg_diag *d, int code, const char *seg, int seq,
               int field, int comp, const char *fmt, ...)
{
    va_list ap;

    if (d == NULL)
        return;
    mg_diag_clear(d);
    mg_diag_at(d, seg, seq, field, comp);
    d->code = code;
    va_start(ap, fmt);
    vsnprintf(d->text, sizeof(d->text), fmt, ap);
    va_end(ap);
}

struct mg_str
mg_hl7v2_raw_comp(struct mg_str field, const struct mg_hl7v2_delims *d, int n)
{
    return mg__hl7v2_piece(mg__hl7v2_piece(field, d->rep, 1), d->comp, n);
}

struct mg_str
mg_hl7v2_msh_comp(const struct mg_hl7v2_msh *msh, int field, int comp)
{
    if (field < 1 || field > MG_HL7V2_MSH_FIELDS)
        return mg_str_n("", 0);
    return mg_str_trim(mg_hl7v2_raw_comp(msh->field[field], &msh->delims,
                                         comp));
}

/* A delimiter must be printable punctuation: never a letter, digit,
 * space or control character, which would be confused with data. */
static bool
is_delim_char(char c)
{
    return c > ' ' && c < 0x7f && !is_id_char(c) && !(c >= 'a' && c <= 'z');
}

/* MSH-2 is well formed when it has 2 to 5 distinct delimiter characters
 * (component and repetition at least), none equal to the field
 * separator, which must be one too (printable ASCII: the ACK uses the
 * sender's delimiters, and is stored as text). */
static bool
delims_valid(char fs, struct mg_str enc)
{
    if (!is_delim_char(fs) || enc.len < 2 || enc.len > 5)
        return false;
    for (size_t i = 0; i < enc.len; i++) {
        if (!is_delim_char(enc.ptr[i]) || enc.ptr[i] == fs)
            return false;
        for (size_t j = 0; j < i; j++)
            if (enc.ptr[i] == enc.ptr[j])
                return false;
    }
    return true;
}

static void
read_delims(struct mg_hl7v2_msh *m)
{
    struct mg_str enc = m->field[2];
    struct mg_hl7v2_delims *d = &m->delims;

    m->delims_ok = delims_valid(m->field[1].ptr[0], enc);
    *d = mg__hl7v2_std_delims;
    d->field = m->field[1].ptr[0];
    if (!m->delims_ok)
        return; /* the standard set is our best guess for an ACK */
    d->comp = enc.ptr[0];
    d->rep = enc.len > 1 ? enc.ptr[1] : '\0';
    d->esc = enc.len > 2 ? enc.ptr[2] : '\0';
    d->sub = enc.len > 3 ? enc.ptr[3] : '\0';
    d->trunc = enc.len > 4 ? enc.ptr[4] : '\0';
}

/* Skips a UTF-8 BOM and blank lines before the first segment. */
struct mg_str
mg__hl7v2_skip_preamble(struct mg_str in, bool *bom)
{
    bool has_bom = in.len >= 3 && memcmp(in.ptr, "\xEF\xBB\xBF", 3) == 0;

    if (has_bom) {
        in.ptr += 3;
        in.len -= 3;
    }
    if (bom != NULL)
        *bom = has_bom;
    while (in.len > 0 && (in.ptr[0] == '\r' || in.ptr[0] == '\n')) {
        in.ptr++;
        in.len--;
    }
    return in;
}

int
mg_hl7v2_msh_peek(struct mg_str in, struct mg_hl7v2_msh *out)
{
    const char *p, *end, *q;
    int n;

    memset(out, 0, sizeof(*out));
    out->delims = mg__hl7v2_std_delims;
    if (in.ptr == NULL)
        return MG_EPARSE;
    in = mg__hl7v2_skip_preamble(in, NULL);
    if (in.len < 4 || memcmp(in.ptr, "MSH", 3) != 0 ||
        in.ptr[3] == '\r' || in.ptr[3] == '\n' || is_id_char(in.ptr[3]))
        return MG_EPARSE;

    p = in.ptr;
    end = p + in.len;
    for (q = p; q < end && *q != '\r' && *q != '\n'; q++)
        ;
    out->segment = mg_str_n(p, (size_t)(q - p));
    end = q;

    out->field[1] = mg_str_n(p + 3, 1);
    p += 4;
    for (n = 2; n <= MG_HL7V2_MSH_FIELDS; n++) {
        q = memchr(p, in.ptr[3], (size_t)(end - p));
        out->field[n] = mg_str_n(p, (size_t)((q ? q : end) - p));
        out->nfield = n;
        if (q == NULL)
            break;
        p = q + 1;
    }
    for (n = out->nfield + 1; n <= MG_HL7V2_MSH_FIELDS; n++)
        out->field[n] = mg_str_n(end, 0);
    out->field[0] = mg_str_n(in.ptr, 3);
    read_delims(out);
    return MG_OK;
}

static bool
version_supported(struct mg_str v)
{
    for (size_t i = 0; i < MG_ARRAY_LEN(versions); i++)
        if (mg_str_eqz(v, versions[i]))
            return true;
    return false;
}

static bool
type_valid(struct mg_str t)
{
    return mg__hl7v2_is_seg_id(t.ptr, t.len);
}

/* MSH-2 and MSH-9 (message type). */
static int
check_delims_and_type(const struct mg_hl7v2_msh *m, struct mg_diag *diag)
{
    struct mg_str type;

    if (m->field[2].len == 0) {
        mg__hl7v2_diag(diag, MG_HL7_ERR_REQUIRED_MISSING, "MSH", 1, 2, 0,
                       "MSH-2 encoding characters missing");
        return MG_EPARSE;
    }
    if (!m->delims_ok && !is_delim_char(m->delims.field)) {
        mg__hl7v2_diag(diag, MG_HL7_ERR_DATA_TYPE, "MSH", 1, 1, 0,
                       "MSH-1 field separator is not printable ASCII "
                       "punctuation");
        return MG_EPARSE;
    }
    if (!m->delims_ok) {
        mg__hl7v2_diag(diag, MG_HL7_ERR_DATA_TYPE, "MSH", 1, 2, 0,
                       "MSH-2 encoding characters malformed");
        return MG_EPARSE;
    }
    if (m->field[9].len == 0) {
        mg__hl7v2_diag(diag, MG_HL7_ERR_REQUIRED_MISSING, "MSH", 1, 9, 0,
                       "MSH-9 message type missing");
        return MG_EPARSE;
    }
    type = mg_hl7v2_msh_comp(m, 9, 1);
    if (!type_valid(type)) {
        mg__hl7v2_diag(diag, MG_HL7_ERR_UNSUPPORTED_TYPE, "MSH", 1, 9, 1,
                       "MSH-9.1 message type malformed");
        return MG_EPARSE;
    }
    return MG_OK;
}

/* MSH-10, MSH-11 and MSH-12. */
static int
check_ids(const struct mg_hl7v2_msh *m, struct mg_diag *diag)
{
    struct mg_str pid, ver;

    /* Trimmed, as the header summary and the duplicate key read it: a
     * blank control id would otherwise pass here and hold no key. */
    if (mg_str_trim(m->field[10]).len == 0) {
        mg__hl7v2_diag(diag, MG_HL7_ERR_REQUIRED_MISSING, "MSH", 1, 10, 0,
                       "MSH-10 message control id missing");
        return MG_EPARSE;
    }
    pid = mg_hl7v2_msh_comp(m, 11, 1);
    if (pid.len == 0) {
        mg__hl7v2_diag(diag, MG_HL7_ERR_REQUIRED_MISSING, "MSH", 1, 11, 0,
                       "MSH-11 processing id missing");
        return MG_EPARSE;
    }
    if (!mg_str_eqz(pid, "P") && !mg_str_eqz(pid, "D") &&
        !mg_str_eqz(pid, "T")) {
        mg__hl7v2_diag(diag, MG_HL7_ERR_UNSUPPORTED_PROCESSING_ID, "MSH", 1,
                       11, 1, "MSH-11 processing id not P, D or T");
        return MG_EPARSE;
    }
    ver = mg_hl7v2_msh_comp(m, 12, 1);
    if (ver.len == 0) {
        mg__hl7v2_diag(diag, MG_HL7_ERR_REQUIRED_MISSING, "MSH", 1, 12, 0,
                       "MSH-12 version id missing");
        return MG_EPARSE;
    }
    if (!version_supported(ver)) {
        mg__hl7v2_diag(diag, MG_HL7_ERR_UNSUPPORTED_VERSION, "MSH", 1, 12, 1,
                       "MSH-12 version not in 2.3 .. 2.8.2");
        return MG_EPARSE;
    }
    return MG_OK;
}

int
mg_hl7v2_msh_check(const struct mg_hl7v2_msh *msh, struct mg_diag *diag)
{
    int rc = check_delims_and_type(msh, diag);

    if (rc != MG_OK)
        return rc;
    return check_ids(msh, diag);
}

int
mg_hl7v2_check(struct mg_str in, struct mg_hl7v2_msh *out,
               struct mg_diag *diag)
{
    if (mg_hl7v2_msh_peek(in, out) != MG_OK) {
        mg__hl7v2_diag(diag, MG_HL7_ERR_SEGMENT_SEQUENCE, "MSH", 1, 0, 0,
                       "message does not start with an MSH segment");
        return MG_EPARSE;
    }
    return mg_hl7v2_msh_check(out, diag);
}
