/* Acknowledgements (HL7 v2 chapter 2.9; DESIGN-NOTES.md section 5). The
 * ACK is built from the inbound MSH as it stood on the wire, so it can be
 * built even when the rest of the message (or the MSH itself, past its
 * delimiters) could not be parsed: HAPI calls this the "critical response
 * data". Inbound fields are copied raw: they are escaped already, for the
 * very delimiters the ACK reuses. */
#include <stdint.h>
#include <string.h>

#include "core/error.h"
#include "core/str.h"
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

/* MSH-15 / MSH-16 as given: trimmed, with the explicit null "" as empty
 * (HL7 v2 2.9: original mode when both are omitted or null). */
static struct mg_str
ack_type(struct mg_str v)
{
    v = mg_str_trim(v);
    return mg_str_eqz(v, "\"\"") ? mg_str_n(NULL, 0) : v;
}

enum mg_hl7v2_ack_mode
mg_hl7v2_ack_mode(const struct mg_hl7v2_msh *msh)
{
    if (ack_type(msh->field[15]).len > 0 || ack_type(msh->field[16]).len > 0)
        return MG_HL7V2_ACK_ENHANCED;
    return MG_HL7V2_ACK_ORIGINAL;
}

/* Table 0155 applied to one of MSH-15 / MSH-16. */
static bool
ack_wanted(struct mg_str v, bool ok)
{
    v = ack_type(v);
    if (mg_str_eqz(v, "NE"))
        return false;
    if (mg_str_eqz(v, "ER"))
        return !ok;
    if (mg_str_eqz(v, "SU"))
        return ok;
    return true; /* AL, empty, or a value we do not know */
}

bool
mg_hl7v2_answer(const struct mg_hl7v2_msh *msh, bool ok,
                enum mg_hl7v2_ack_mode *as)
{
    *as = mg_hl7v2_ack_mode(msh);
    if (*as == MG_HL7V2_ACK_ORIGINAL || ack_wanted(msh->field[15], ok))
        return true;
    /* No accept ACK wanted. The answer is sent after the message was
     * processed, so what there is to say is the application ACK, when
     * MSH-16 asks for one: NE/AL is original mode by another name. An
     * empty MSH-16 asks for nothing (HL7 gives it no default): NE alone
     * still means no answer, as it always did here. With neither wanted,
     * *as stays enhanced: the outcome is recorded as the accept ACK that
     * was not sent. */
    if (ack_type(msh->field[16]).len == 0 ||
        !ack_wanted(msh->field[16], ok))
        return false;
    *as = MG_HL7V2_ACK_ORIGINAL;
    return true;
}

bool
mg_hl7v2_is_ack(const struct mg_hl7v2_msh *msh)
{
    return mg_str_eqz(mg_hl7v2_msh_comp(msh, 9, 1), "ACK");
}

/* The problems mg_hl7v2_check() reports: no MSH (100 at MSH), MSH-2
 * missing or malformed (101/102 at MSH-2), MSH-9 .. MSH-12 empty (101).
 * HL7 v2.5 section 2.9.2.1 (2.9.3.1 in enhanced mode) has the receiver
 * check MSH-9, MSH-11 and MSH-12 before any application processing and
 * reject (AR/CR) a message that fails: a header we cannot read, or that
 * lacks those fields or the MSH-10 the ACK must quote, fails there, and is
 * not an error in the message's content (AE/CE). */
static bool
header_unreadable(const struct mg_diag *diag)
{
    if (strcmp(diag->segment, "MSH") != 0)
        return false;
    switch (diag->code) {
    case MG_HL7_ERR_SEGMENT_SEQUENCE:
        return diag->field == 0;
    case MG_HL7_ERR_REQUIRED_MISSING:
        return diag->field == 2 || (diag->field >= 9 && diag->field <= 12);
    case MG_HL7_ERR_DATA_TYPE:
        return diag->field == 1 || diag->field == 2; /* the delimiters */
    default:
        return false;
    }
}

enum mg_hl7v2_ack_code
mg_hl7v2_ack_code_for(const struct mg_diag *diag, enum mg_hl7v2_ack_mode mode)
{
    bool reject = (diag->code >= MG_HL7_ERR_UNSUPPORTED_TYPE &&
                   diag->code <= MG_HL7_ERR_UNSUPPORTED_VERSION) ||
                  header_unreadable(diag);

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

/* The most of one echoed field an ACK carries: enough for any real
 * control id or application name, and an ACK of a few of them stays far
 * below the ACK buffer's limit (a 70 kB MSH-10 made no ACK at all). */
#define ECHO_MAX 512

/* How much of s is echoed: at most ECHO_MAX bytes, and a cut never leaves
 * an escape sequence open (a dangling escape character would swallow the
 * field separator that follows, for the peer's parser). */
static size_t
echo_len(const struct writer *w, struct mg_str s)
{
    size_t n = MG_MIN(s.len, ECHO_MAX), open = SIZE_MAX;

    if (n == s.len || w->d->esc == '\0')
        return n;
    for (size_t i = 0; i < n; i++)
        if (s.ptr[i] == w->d->esc)
            open = open == SIZE_MAX ? i : SIZE_MAX;
    return open == SIZE_MAX ? n : open;
}

/* Appends a field of the message (MSH-3 to MSH-6, MSH-10 into MSA-2...)
 * so that the ACK is text in the sender's character set and in UTF-8
 * alike, since it is also stored in a text column: a non-ASCII byte is
 * kept only as part of valid UTF-8 when the peer reads UTF-8, and goes
 * as a hex escape (\XDC\) otherwise, which the sender decodes in its
 * own set (an 8859/1 MSH-4 with a raw 0xDC failed the whole grouped
 * commit it was in, for ever). NUL bytes are left out. */
static void
put(struct writer *w, struct mg_str s)
{
    size_t i = 0, run, n = echo_len(w, s), len;

    while (w->rc == MG_OK && i < n) {
        for (run = 0; i + run < n && (unsigned char)s.ptr[i + run] < 0x80 &&
                      s.ptr[i + run] != '\0'; run++)
            ;
        if (run > 0) {
            w->rc = mg_buf_append(w->out, s.ptr + i, run);
            i += run;
            continue;
        }
        if (s.ptr[i] == '\0') {
            i++;
            continue;
        }
        len = w->utf8 ? mg_utf8_char_len(s.ptr + i, n - i) : 0;
        if (len > 0) {
            w->rc = mg_buf_append(w->out, s.ptr + i, len);
            i += len;
        } else if (w->d->esc != '\0') {
            w->rc = mg__hl7v2_put_hex_escape(w->out, w->d->esc,
                                             (unsigned char)s.ptr[i]);
            i++;
        } else {
            w->rc = mg_buf_appendc(w->out, '?');
            i++;
        }
    }
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
        for (size_t i = 0, len; i < n; i += len ? len : 1) {
            len = (unsigned char)tmp[i] < 0x80 ? 1
                  : w->utf8 ? mg_utf8_char_len(tmp + i, n - i) : 0;
            if (len == 0)
                tmp[i] = '?'; /* not for the peer, or not UTF-8 at all */
        }
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

/* Reads up to three dotted numbers ("2.3.1" is 2, 3, 1; missing parts
 * are 0). False when v does not start with a digit. */
static bool
version_parse(struct mg_str v, int part[3])
{
    size_t i = 0;

    part[0] = part[1] = part[2] = 0;
    if (v.len == 0 || v.ptr[0] < '0' || v.ptr[0] > '9')
        return false;
    for (int k = 0; k < 3 && i < v.len; k++, i++) {
        for (; i < v.len && v.ptr[i] >= '0' && v.ptr[i] <= '9'; i++)
            part[k] = MG_MIN(part[k] * 10 + (v.ptr[i] - '0'), 9999);
        if (i < v.len && v.ptr[i] != '.')
            break;
    }
    return true;
}

/* Whether the peer's version v (MSH-12.1, trimmed) is older than than:
 * peers before 2.5 read ERR-1, before 2.4 MSA-3, and before 2.3.1 have no
 * MSH-9.3. An empty or unreadable version is answered in the 2.5.1
 * layout, so it is not "before" anything we ask about. */
static bool
version_before(struct mg_str v, const char *than)
{
    int a[3], b[3];

    if (!version_parse(v, a) || !version_parse(mg_str_from(than), b))
        return false;
    for (int k = 0; k < 3; k++)
        if (a[k] != b[k])
            return a[k] < b[k];
    return false;
}

/* MSH-9 of an ACK. From v2.3.1, whose MSH-9 gained the message structure
 * component, it is ACK^<trigger>^ACK: the general acknowledgment's
 * structure is always ACK, and from v2.5 the MSG data type requires the
 * component, so a message without a trigger gets ACK^^ACK rather than a
 * structure left out. Before v2.3.1 MSH-9 is type^trigger only, and
 * without a trigger just ACK (the v2.1 - 2.3 examples leave it out). */
static void
write_msh9(struct writer *w, struct mg_str trig, struct mg_str ver)
{
    putz(w, "ACK");
    if (version_before(ver, "2.3.1")) {
        if (trig.len > 0) {
            putc_(w, w->d->comp);
            put(w, trig);
        }
        return;
    }
    putc_(w, w->d->comp);
    put(w, trig);
    putc_(w, w->d->comp);
    putz(w, "ACK");
}

/* MSH-n (11 or 12) echoed with its first component as
 * mg_hl7v2_msh_comp() reads it, trimmed like the check and the header
 * summary read it: the ACK is our message, so it carries the processing
 * id and version we understood, not the sender's padding; the other
 * components ("^T", "^USA") are copied raw. An empty first component with
 * nothing after it is answered as dflt ("P", "2.5.1"). */
static void
write_trimmed(struct writer *w, const struct mg_hl7v2_msh *in, int n,
              const char *dflt)
{
    struct mg_str field = in->field[n], first = mg_hl7v2_msh_comp(in, n, 1);
    struct mg_str raw1;
    const char *end;

    if (field.len == 0) { /* no MSH-n at all (its ptr may be NULL) */
        putz(w, dflt);
        return;
    }
    raw1 = mg_hl7v2_raw_comp(field, w->d, 1);
    end = field.ptr + field.len;
    if (first.len == 0 && raw1.ptr + raw1.len == end) {
        putz(w, dflt);
        return;
    }
    put(w, first);
    put(w, mg_str_n(raw1.ptr + raw1.len,
                    (size_t)(end - (raw1.ptr + raw1.len))));
}

static void
write_msh(struct writer *w, const struct mg_hl7v2_msh *in,
          const struct mg_hl7v2_ack *ack, struct mg_str ver)
{
    struct mg_str trig = mg_hl7v2_msh_comp(in, 9, 2);

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
        case 9: write_msh9(w, trig, ver); break;
        case 10: put_text(w, ack->control_id); break;
        case 11: write_trimmed(w, in, 11, "P"); break;
        case 12: write_trimmed(w, in, 12, "2.5.1"); break;
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
    if (sep == '\0')
        return; /* no separator for the parts (MSH-2 without '&') */
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
        /* Before v2.5 ERR has ERR-1 only (ELD: segment^sequence^field^
         * code as a CE in sub-components); the text goes in MSA-3. */
        write_location(w, e, true);
        putc_(w, w->d->comp);
        write_code(w, e->code, w->d->sub);
        putc_(w, '\r');
        return;
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

/* MSA-3 is an ST of 80 characters in v2.3 and v2.4. */
#define MSA3_MAX 80

/* s cut to at most max bytes, not inside a UTF-8 character. */
static struct mg_str
utf8_cut(struct mg_str s, size_t max)
{
    if (s.len <= max)
        return s;
    s.len = max;
    while (s.len > 0 && ((unsigned char)s.ptr[s.len] & 0xC0) == 0x80)
        s.len--;
    return s;
}

int
mg_hl7v2_ack_build(const struct mg_hl7v2_msh *in,
                   const struct mg_hl7v2_ack *ack, struct mg_buf *out)
{
    struct mg_str ver = mg_hl7v2_msh_comp(in, 12, 1);
    /* The set the parser reads: MSH-18's first repetition, any name. */
    struct mg_str cs_name = mg__hl7v2_piece(in->field[18], in->delims.rep, 1);
    /* The sender's delimiters, unless they are not usable (a field
     * separator outside printable ASCII: the ACK would not be text). */
    struct writer w = {out, in->delims_ok || in->delims.field == '|'
                                ? &in->delims : &mg__hl7v2_std_delims,
                       false, MG_OK};
    const struct mg_diag *first = NULL;
    enum mg_hl7v2_charset cs;
    bool old_msa, old_err;

    if (ack->control_id.len == 0)
        return MG_EINVAL;
    w.utf8 = mg_hl7v2_charset_lookup(cs_name, &cs, NULL) == MG_OK &&
             cs == MG_HL7V2_CS_UTF8;
    old_msa = old_err = version_before(ver, "2.5");
    for (size_t i = 0; i < ack->nerr && first == NULL; i++)
        if (ack->err[i].code != 0 || ack->err[i].segment[0] != '\0')
            first = &ack->err[i];

    write_msh(&w, in, ack, ver);
    putz(&w, "MSA");
    put_field_sep(&w);
    putz(&w, mg_hl7v2_ack_code_str(ack->code));
    put_field_sep(&w);
    put(&w, in->field[10]);
    if (old_msa && first != NULL) {
        put_field_sep(&w);
        put_text(&w, utf8_cut(mg_str_from(first->text), MSA3_MAX));
    }
    putc_(&w, '\r');
    for (size_t i = 0; i < ack->nerr; i++)
        if (ack->err[i].code != 0 || ack->err[i].segment[0] != '\0')
            write_err(&w, &ack->err[i], ack, old_err);
    return w.rc;
}
