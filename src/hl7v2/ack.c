/* Acknowledgements (HL7 v2 chapter 2.9; DESIGN-NOTES.md section 5). The
 * ACK is built from the inbound MSH as it stood on the wire, so it can be
 * built even when the rest of the message (or the MSH itself, past its
 * delimiters) could not be parsed: HAPI calls this the "critical response
 * data". Inbound fields are copied raw: they are escaped already, for the
 * very delimiters the ACK reuses. */
#include <string.h>

#include "core/error.h"
#include "hl7v2/hl7v2_int.h"

static const char *const ack_codes[] = {"AA", "AE", "AR", "CA", "CE", "CR"};

/* Table 0357. */
static const struct {
    int code;
    const char *text;
} err_texts[] = {
    {0, "Message accepted"},
    {100, "Segment sequence error"},
    {101, "Required field missing"},
    {102, "Data type error"},
    {103, "Table value not found"},
    {200, "Unsupported message type"},
    {201, "Unsupported event code"},
    {202, "Unsupported processing id"},
    {203, "Unsupported version id"},
    {204, "Unknown key identifier"},
    {205, "Duplicate key identifier"},
    {206, "Application record locked"},
    {207, "Application internal error"},
};

const char *
mg_hl7v2_ack_code_str(enum mg_hl7v2_ack_code code)
{
    if ((unsigned)code >= MG_ARRAY_LEN(ack_codes))
        return "AE";
    return ack_codes[code];
}

const char *
mg_hl7v2_err_text(int code)
{
    for (size_t i = 0; i < MG_ARRAY_LEN(err_texts); i++)
        if (err_texts[i].code == code)
            return err_texts[i].text;
    return NULL;
}

enum mg_hl7v2_ack_mode
mg_hl7v2_ack_mode(const struct mg_hl7v2_msh *msh)
{
    if (mg_str_trim(msh->field[15]).len > 0 ||
        mg_str_trim(msh->field[16]).len > 0)
        return MG_HL7V2_ACK_ENHANCED;
    return MG_HL7V2_ACK_ORIGINAL;
}

/* Table 0155 applied to one of MSH-15 / MSH-16. */
static bool
ack_wanted(struct mg_str v, bool ok)
{
    v = mg_str_trim(v);
    if (mg_str_eqz(v, "NE"))
        return false;
    if (mg_str_eqz(v, "ER"))
        return !ok;
    if (mg_str_eqz(v, "SU"))
        return ok;
    return true; /* AL, empty, or a value we do not know */
}

bool
mg_hl7v2_accept_ack_wanted(const struct mg_hl7v2_msh *msh, bool ok)
{
    return ack_wanted(msh->field[15], ok);
}

bool
mg_hl7v2_app_ack_wanted(const struct mg_hl7v2_msh *msh, bool ok)
{
    return ack_wanted(msh->field[16], ok);
}

bool
mg_hl7v2_is_ack(const struct mg_hl7v2_msh *msh)
{
    return mg_str_eqz(mg_hl7v2_raw_comp(msh->field[9], &msh->delims, 1),
                      "ACK");
}

enum mg_hl7v2_ack_code
mg_hl7v2_ack_code_for(const struct mg_diag *diag, enum mg_hl7v2_ack_mode mode)
{
    bool reject = diag->code >= MG_HL7_ERR_UNSUPPORTED_TYPE &&
                  diag->code <= MG_HL7_ERR_UNSUPPORTED_VERSION;

    if (diag->code == MG_HL7_ERR_SEGMENT_SEQUENCE &&
        strcmp(diag->segment, "MSH") == 0 && diag->field == 0)
        reject = true; /* no MSH at all */
    if (mode == MG_HL7V2_ACK_ENHANCED)
        return reject ? MG_HL7V2_CR : MG_HL7V2_CE;
    return reject ? MG_HL7V2_AR : MG_HL7V2_AE;
}

/* Writing context: the output, the delimiters and the version. */
struct writer {
    struct mg_buf *out;
    const struct mg_hl7v2_delims *d;
    bool utf8;  /* MSH-18 says UTF-8: our text may keep non-ASCII */
    int rc;     /* first error; later writes are skipped */
};

static void
put(struct writer *w, struct mg_str s)
{
    if (w->rc == MG_OK)
        w->rc = mg_buf_append_str(w->out, s);
}

static void
putc_(struct writer *w, char c)
{
    if (w->rc == MG_OK)
        w->rc = mg_buf_appendc(w->out, c);
}

static void
putz(struct writer *w, const char *z)
{
    put(w, mg_str_from(z));
}

static void
putn(struct writer *w, int n)
{
    if (w->rc == MG_OK && n > 0)
        w->rc = mg_buf_appendf(w->out, "%d", n);
}

/* Our own text, escaped; non-ASCII becomes '?' unless the peer reads
 * UTF-8 (the ACK is in the sender's character set). */
static void
put_text(struct writer *w, struct mg_str s)
{
    char tmp[256];
    size_t n;

    while (w->rc == MG_OK && s.len > 0) {
        n = MG_MIN(s.len, sizeof(tmp));
        memcpy(tmp, s.ptr, n);
        for (size_t i = 0; i < n && !w->utf8; i++)
            if ((unsigned char)tmp[i] >= 0x80)
                tmp[i] = '?';
        w->rc = mg_hl7v2_escape(w->out, w->d, mg_str_n(tmp, n));
        s.ptr += n;
        s.len -= n;
    }
}

static void
put_field_sep(struct writer *w)
{
    putc_(w, w->d->field);
}

/* "2.3" and "2.3.1" peers predate ERR-2..12 and read MSA-3. */
static bool
version_before(struct mg_str v, const char *than)
{
    size_t n = strlen(than);

    return v.len >= 3 && strncmp(v.ptr, than, MG_MIN(v.len, n)) < 0;
}

static void
write_msh(struct writer *w, const struct mg_hl7v2_msh *in,
          const struct mg_hl7v2_ack *ack)
{
    const struct mg_hl7v2_delims *d = w->d;
    struct mg_str trig = mg_hl7v2_raw_comp(in->field[9], d, 2);
    struct mg_str pid = in->field[11], ver = in->field[12];

    putz(w, "MSH");
    put_field_sep(w);
    if (in->delims_ok)
        put(w, in->field[2]);
    else
        putz(w, "^~\\&");
    for (int n = 3; n <= 18; n++) {
        put_field_sep(w);
        switch (n) {
        case 3: put(w, in->field[5]); break;
        case 4: put(w, in->field[6]); break;
        case 5: put(w, in->field[3]); break;
        case 6: put(w, in->field[4]); break;
        case 7: put_text(w, ack->timestamp); break;
        case 9:
            putz(w, "ACK");
            putc_(w, d->comp);
            put(w, trig);
            putc_(w, d->comp);
            putz(w, "ACK");
            break;
        case 10: put_text(w, ack->control_id); break;
        case 11: put(w, pid.len ? pid : MG_STR("P")); break;
        case 12: put(w, ver.len ? ver : MG_STR("2.5.1")); break;
        case 18: put(w, in->field[18]); break;
        default: break;
        }
    }
    putc_(w, '\r');
}

/* ERR-2 (ERL): SEG^seq^field^rep^comp^sub; empty when the problem is not
 * about a place in the message. With eld, the ERR-1 (ELD) form used
 * before v2.5: SEG^seq^field, always three components. */
static void
write_location(struct writer *w, const struct mg_diag *e, bool eld)
{
    bool here = e->segment[0] != '\0';
    const int parts[] = {here ? (e->seq ? e->seq : 1) : 0, e->field, e->rep,
                         e->comp, e->sub};
    size_t n = MG_ARRAY_LEN(parts);

    if (!here && !eld)
        return;
    if (eld)
        n = 2;
    else
        while (n > 1 && parts[n - 1] == 0)
            n--; /* no trailing empty components */
    putz(w, e->segment);
    for (size_t i = 0; i < n; i++) {
        putc_(w, w->d->comp);
        putn(w, parts[i]);
    }
}

/* code^text^HL70357 with the given component separator. */
static void
write_code(struct writer *w, int code, char sep)
{
    const char *text = mg_hl7v2_err_text(code);

    if (w->rc == MG_OK)
        w->rc = mg_buf_appendf(w->out, "%d", code);
    putc_(w, sep);
    putz(w, text ? text : "");
    putc_(w, sep);
    putz(w, "HL70357");
}

static void
write_err(struct writer *w, const struct mg_diag *e,
          const struct mg_hl7v2_ack *ack, bool old)
{
    char sev = ack->severity;
    struct mg_str user = ack->user_text;

    if (sev == '\0')
        sev = ack->code == MG_HL7V2_AA || ack->code == MG_HL7V2_CA ? 'W'
                                                                   : 'E';
    putz(w, "ERR");
    put_field_sep(w); /* ERR-1 */
    if (old) {
        write_location(w, e, true);
        putc_(w, w->d->comp);
        write_code(w, e->code, w->d->sub ? w->d->sub : ' ');
    }
    put_field_sep(w); /* ERR-2 */
    write_location(w, e, false);
    put_field_sep(w); /* ERR-3 */
    write_code(w, e->code, w->d->comp);
    put_field_sep(w); /* ERR-4 */
    putc_(w, sev);
    put_field_sep(w); /* ERR-5, ERR-6 empty */
    put_field_sep(w);
    put_field_sep(w); /* ERR-7 */
    put_text(w, mg_str_from(e->text));
    put_field_sep(w); /* ERR-8 */
    put_text(w, user.len ? user : mg_str_from(e->text));
    putc_(w, '\r');
}

int
mg_hl7v2_ack_build(const struct mg_hl7v2_msh *in,
                   const struct mg_hl7v2_ack *ack, struct mg_buf *out)
{
    struct mg_str ver = mg_hl7v2_raw_comp(in->field[12], &in->delims, 1);
    /* The set the parser reads: MSH-18's first repetition, any name. */
    struct mg_str cs_name = mg__hl7v2_piece(in->field[18], in->delims.rep, 1);
    struct writer w = {out, &in->delims, false, MG_OK};
    const struct mg_diag *first = NULL;
    enum mg_hl7v2_charset cs;
    bool old_msa, old_err;

    if (ack->control_id.len == 0)
        return MG_EINVAL;
    w.utf8 = mg_hl7v2_charset_lookup(cs_name, &cs, NULL) == MG_OK &&
             cs == MG_HL7V2_CS_UTF8;
    old_msa = version_before(ver, "2.4");
    old_err = version_before(ver, "2.5");
    for (size_t i = 0; i < ack->nerr && first == NULL; i++)
        if (ack->err[i].code != 0 || ack->err[i].segment[0] != '\0')
            first = &ack->err[i];

    write_msh(&w, in, ack);
    putz(&w, "MSA");
    put_field_sep(&w);
    putz(&w, mg_hl7v2_ack_code_str(ack->code));
    put_field_sep(&w);
    put(&w, in->field[10]);
    if (old_msa && first != NULL) {
        put_field_sep(&w);
        put_text(&w, mg_str_from(first->text));
    }
    putc_(&w, '\r');
    for (size_t i = 0; i < ack->nerr; i++)
        if (ack->err[i].code != 0 || ack->err[i].segment[0] != '\0')
            write_err(&w, &ack->err[i], ack, old_err);
    return w.rc;
}
