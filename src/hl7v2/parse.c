/* Parsing: one pass over the message records where every segment and
 * field starts; values are split further and unescaped only when read
 * (access.c). Everything lives in the caller's arena and points into the
 * input, which is copied only when it must be converted to UTF-8.
 * DESIGN-NOTES.md section 6 has the rules (delimiters from MSH, MSH field
 * numbering, terminators, character sets). */
#include <stdint.h>
#include <string.h>

#include "core/error.h"
#include "hl7v2/hl7v2_int.h"

/* Parser state for one message. */
struct parser {
    struct mg_hl7v2_msg *msg;
    struct mg_arena *arena;
    struct mg_diag *diag;
    char fs;   /* field separator */
    char term; /* segment terminator: CR, or LF when the text has no CR */
    /* Field separator offsets within the current segment. */
    uint32_t sep[MG_HL7V2_MAX_FIELDS + 1];
};

static bool
has_high_bytes(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    uint64_t w;

    for (; i + 8 <= n; i += 8) {
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ull)
            return true;
    }
    for (; i < n; i++)
        if (p[i] & 0x80)
            return true;
    return false;
}

static size_t
count_byte(const char *p, size_t n, char c)
{
    const char *end = p + n;
    size_t k = 0;

    while ((p = memchr(p, c, (size_t)(end - p))) != NULL) {
        k++;
        p++;
    }
    return k;
}

/* Whether a segment starts at p, just after a terminator: three id
 * characters, then the field separator or a terminator (or the end).
 * Blank lines count as starts. The one rule for where segments begin. */
static bool
starts_segment(const char *p, const char *end, char fs, char term)
{
    if (term == '\r' && p < end && *p == '\n')
        p++; /* CRLF */
    if (p == end || *p == term)
        return true;
    return end - p >= 3 && mg__hl7v2_is_seg_id(p, 3) &&
           (end - p == 3 || p[3] == fs || p[3] == term);
}

/* The start of the segment after the one at p, or end. */
static const char *
next_segment(const char *p, const char *end, char fs, char term)
{
    for (; p < end; p++)
        if (*p == term && starts_segment(p + 1, end, fs, term))
            return p + 1 + (term == '\r' && p + 1 < end && p[1] == '\n');
    return end;
}

/* Names the segment, occurrence and field that hold byte off of text, for
 * an error about that byte (bad character data). Only runs on failure, on
 * the text before it is split, so it finds segments as the parser will: a
 * terminator that starts no segment is data, not a boundary. */
static void
locate(struct mg_str text, char fs, size_t off, struct mg_diag *d,
       const char *what)
{
    char term = memchr(text.ptr, '\r', text.len) ? '\r' : '\n';
    const char *end = text.ptr + text.len, *at = text.ptr + off;
    const char *seg = text.ptr, *s;
    char id[4] = "";
    int seq = 0, field;

    for (s = text.ptr; s <= at; s = next_segment(s, end, fs, term))
        seg = s;
    if (at - seg >= 3 && mg__hl7v2_is_seg_id(seg, 3))
        memcpy(id, seg, 3);
    for (s = text.ptr; id[0] != '\0' && s <= seg;
         s = next_segment(s, end, fs, term))
        seq += memcmp(s, id, 3) == 0; /* s <= seg: 3 bytes are there */
    field = (int)count_byte(seg, (size_t)(at - seg), fs);
    if (mg__hl7v2_is_header_id(id) && field >= 1)
        field++;
    mg__hl7v2_diag(d, MG_HL7_ERR_DATA_TYPE, id, seq, field, 0, "%s in %s-%d",
                   what, id[0] ? id : "segment", field);
}

/* Picks the character set: forced, MSH-18, BOM, or the default. */
static int
pick_charset(struct mg_hl7v2_msg *msg, const struct mg_hl7v2_parse_opts *o,
             struct mg_diag *diag)
{
    struct mg_str msh18, name;

    msh18 = mg_str_trim(mg__hl7v2_piece(msg->msh.field[18],
                                        msg->delims.rep, 1));
    if (o != NULL && o->force_charset != NULL)
        name = mg_str_from(o->force_charset);
    else if (msh18.len > 0)
        name = msh18;
    else if (msg->bom)
        name = MG_STR("UNICODE UTF-8");
    else if (o != NULL && o->default_charset != NULL)
        name = mg_str_from(o->default_charset);
    else
        name = MG_STR("ASCII");
    if (mg_hl7v2_charset_lookup(name, &msg->charset, &msg->iconv_name) ==
        MG_OK)
        return MG_OK;
    if (name.ptr == msh18.ptr) {
        mg__hl7v2_diag(diag, MG_HL7_ERR_TABLE_VALUE, "MSH", 1, 18, 0,
                       "MSH-18 character set not supported");
        return MG_EUNSUPPORTED;
    }
    mg__hl7v2_diag(diag, MG_HL7_ERR_INTERNAL, "", 0, 0, 0,
                   "configured character set not supported");
    return MG_EINVAL;
}

/* Converts a message in a single-byte set to UTF-8 (before splitting: the
 * delimiters are ASCII in every set we read, so positions do not move
 * relative to them). ASCII and UTF-8 text is used in place and checked
 * after splitting, by check_utf8(). */
static int
decode_text(struct mg_hl7v2_msg *msg, struct mg_str body, struct mg_arena *a,
            struct mg_diag *diag)
{
    size_t bad = 0;
    int rc;

    msg->text = body;
    if (msg->charset == MG_HL7V2_CS_ASCII ||
        msg->charset == MG_HL7V2_CS_UTF8 ||
        !has_high_bytes(body.ptr, body.len))
        return MG_OK;
    rc = mg__hl7v2_to_utf8(body, msg->charset, msg->iconv_name, a,
                           &msg->text, &bad);
    if (rc == MG_ENOMEM) {
        mg__hl7v2_diag(diag, MG_HL7_ERR_INTERNAL, "", 0, 0, 0,
                       "out of memory converting the character set");
        return rc;
    }
    if (rc != MG_OK) {
        locate(body, msg->delims.field, bad, diag,
               "byte not in the declared character set");
        return MG_EPARSE;
    }
    msg->transcoded = msg->text.ptr != body.ptr;
    return MG_OK;
}

/* A segment that cannot be in a message; its id is not trusted, so the
 * diag names its position (seq counts all segments here). */
static int
segment_error(struct parser *ps, const char *what)
{
    size_t n = ps->msg->nseg + 1;

    mg__hl7v2_diag(ps->diag, MG_HL7_ERR_SEGMENT_SEQUENCE, "", (int)n, 0, 0,
                   "segment %zu: %s", n, what);
    return MG_EPARSE;
}

/* Checks the id of a segment and whether it may appear in a message. */
static int
check_segment_id(struct parser *ps, struct mg_str raw)
{
    if (raw.len < 3 || !mg__hl7v2_is_seg_id(raw.ptr, 3) ||
        (raw.len > 3 && raw.ptr[3] != ps->fs))
        return segment_error(ps, "id is not 3 upper-case letters or digits");
    if (ps->msg->nseg == 0)
        return MG_OK; /* the MSH, checked by mg_hl7v2_msh_check() */
    if (memcmp(raw.ptr, "MSH", 3) == 0 || memcmp(raw.ptr, "FHS", 3) == 0 ||
        memcmp(raw.ptr, "BHS", 3) == 0 || memcmp(raw.ptr, "BTS", 3) == 0 ||
        memcmp(raw.ptr, "FTS", 3) == 0)
        return segment_error(ps, "second message or batch envelope "
                                 "(use the batch API)");
    return MG_OK;
}

/* Builds the field table of one segment from the separator offsets. */
static int
add_segment(struct parser *ps, struct mg_str raw, size_t nsep)
{
    struct mg_hl7v2_seg *seg = &ps->msg->seg[ps->msg->nseg];
    bool hdr;
    size_t start = 0, k = 0;
    int n;

    memcpy(seg->id, raw.ptr, 3);
    seg->id[3] = '\0';
    seg->raw = raw;
    hdr = mg__hl7v2_is_header_id(seg->id);
    seg->nfield = (int)nsep + 1 + (hdr && nsep > 0);
    seg->field = mg_arena_alloc(ps->arena,
                                (size_t)seg->nfield * sizeof(*seg->field));
    if (seg->field == NULL) {
        mg__hl7v2_diag(ps->diag, MG_HL7_ERR_INTERNAL, seg->id, 0, 0, 0,
                       "out of memory");
        return MG_ENOMEM;
    }
    for (n = 0; n < seg->nfield; n++) {
        if (hdr && n == 1) {
            seg->field[1] = mg_str_n(raw.ptr + 3, 1); /* MSH-1 */
            continue;
        }
        size_t stop = k < nsep ? ps->sep[k] : raw.len;
        seg->field[n] = mg_str_n(raw.ptr + start, stop - start);
        start = stop + 1;
        k++;
    }
    ps->msg->nseg++;
    return MG_OK;
}

/* Scans one segment starting at p: records its field separators and
 * returns where it ends (the terminator or the end of text). A terminator
 * not followed by a segment id is data: senders let a CR slip into a
 * field (dcm4che's ORU_R01-PDF.hl7 has one inside the base64 of OBX-5),
 * and keeping it loses nothing, where splitting there would invent a
 * segment. */
static int
scan_segment(struct parser *ps, const char *p, const char *end,
             const char **stop)
{
    const char *q = p;
    size_t nsep = 0;
    int rc;

    for (; q < end; q++) {
        if (*q == ps->term && starts_segment(q + 1, end, ps->fs, ps->term))
            break;
        if (*q != ps->fs)
            continue;
        if (nsep == MG_HL7V2_MAX_FIELDS) {
            mg__hl7v2_diag(ps->diag, MG_HL7_ERR_INTERNAL, "", 0,
                           MG_HL7V2_MAX_FIELDS + 1, 0,
                           "segment %zu has more than %d fields",
                           ps->msg->nseg + 1, MG_HL7V2_MAX_FIELDS);
            if (ps->diag != NULL && q - p >= 3 &&
                mg__hl7v2_is_seg_id(p, 3)) {
                memcpy(ps->diag->segment, p, 3);
                ps->diag->segment[3] = '\0';
            }
            return MG_ETOOBIG;
        }
        ps->sep[nsep++] = (uint32_t)(q - p);
    }
    *stop = q;
    if (q == p)
        return MG_OK; /* empty segment: skipped */
    rc = check_segment_id(ps, mg_str_n(p, (size_t)(q - p)));
    if (rc != MG_OK)
        return rc;
    return add_segment(ps, mg_str_n(p, (size_t)(q - p)), nsep);
}

/* Numbers each segment among those of its id (seg->seq), in one pass
 * with a small hash table of the ids seen: a location needs it for every
 * segment of a message that may hold a million. */
static int
number_segments(struct parser *ps)
{
    struct mg_hl7v2_msg *msg = ps->msg;
    struct slot {
        char id[4];
        int count;
    } *t;
    size_t size = 16, h;

    while (size < 2 * msg->nseg && size < 131072) /* ids: at most 36^3 */
        size *= 2;
    t = mg_arena_calloc(ps->arena, size * sizeof(*t));
    if (t == NULL) {
        mg__hl7v2_diag(ps->diag, MG_HL7_ERR_INTERNAL, "", 0, 0, 0,
                       "out of memory");
        return MG_ENOMEM;
    }
    for (size_t i = 0; i < msg->nseg; i++) {
        const char *id = msg->seg[i].id;
        h = ((size_t)(unsigned char)id[0] * 31 * 31 +
             (size_t)(unsigned char)id[1] * 31 + (unsigned char)id[2]) &
            (size - 1);
        while (t[h].id[0] != '\0' && memcmp(t[h].id, id, 4) != 0)
            h = (h + 1) & (size - 1);
        memcpy(t[h].id, id, 4);
        msg->seg[i].seq = ++t[h].count;
    }
    return MG_OK;
}

static int
parse_segments(struct parser *ps)
{
    struct mg_str text = ps->msg->text;
    const char *p = text.ptr, *end = text.ptr + text.len, *q;
    size_t cap;
    int rc;

    ps->term = memchr(p, '\r', text.len) ? '\r' : '\n';
    cap = count_byte(p, text.len, ps->term) + 1;
    ps->msg->seg = mg_arena_alloc(ps->arena, cap * sizeof(*ps->msg->seg));
    if (ps->msg->seg == NULL) {
        mg__hl7v2_diag(ps->diag, MG_HL7_ERR_INTERNAL, "", 0, 0, 0,
                       "out of memory");
        return MG_ENOMEM;
    }
    while (p < end) {
        rc = scan_segment(ps, p, end, &q);
        if (rc != MG_OK)
            return rc;
        p = q + (q < end);
        /* "\r\n" is one terminator (files written on Windows). */
        if (ps->term == '\r' && p < end && *p == '\n')
            p++;
    }
    return number_segments(ps);
}

/* Refuses the message for the bad byte at offset bad of segment i, named
 * by segment, occurrence and field: "<what> in PID-5". MG_EPARSE. */
static int
refuse_byte(const struct mg_hl7v2_msg *msg, size_t i, size_t bad,
            const char *what, struct mg_diag *diag)
{
    const struct mg_hl7v2_seg *seg = &msg->seg[i];
    int seq = seg->seq, field;

    field = (int)count_byte(seg->raw.ptr, bad, msg->delims.field);
    if (mg__hl7v2_is_header_id(seg->id) && field >= 1)
        field++;
    mg__hl7v2_diag(diag, MG_HL7_ERR_DATA_TYPE, seg->id, seq, field, 0,
                   "%s in %s-%d", what, seg->id, field);
    return MG_EPARSE;
}

/* ASCII and UTF-8 messages must be valid UTF-8 (see mg_hl7v2_parse()). A
 * message without high bytes is checked in one fast pass; otherwise the
 * first bad byte is named by segment, occurrence and field. */
static int
check_utf8(const struct mg_hl7v2_msg *msg, struct mg_diag *diag)
{
    const struct mg_hl7v2_seg *seg;
    size_t bad;

    if (msg->transcoded || !has_high_bytes(msg->text.ptr, msg->text.len))
        return MG_OK;
    for (size_t i = 0; i < msg->nseg; i++) {
        seg = &msg->seg[i];
        if (!mg__hl7v2_utf8_valid(seg->raw.ptr, seg->raw.len, &bad))
            return refuse_byte(msg, i, bad, "invalid UTF-8", diag);
    }
    return MG_OK;
}

/* No text may hold a NUL byte (in any character set): PostgreSQL's text
 * and jsonb cannot store one, so a message holding one would fail every
 * statement it is in, with nothing stored and no answer, and its sender
 * would resend it for ever. Refused here, it is stored and answered. */
static int
check_nul(const struct mg_hl7v2_msg *msg, struct mg_diag *diag)
{
    const char *nul;

    if (memchr(msg->text.ptr, '\0', msg->text.len) == NULL)
        return MG_OK;
    for (size_t i = 0; i < msg->nseg; i++) {
        nul = memchr(msg->seg[i].raw.ptr, '\0', msg->seg[i].raw.len);
        if (nul != NULL)
            return refuse_byte(msg, i, (size_t)(nul - msg->seg[i].raw.ptr),
                               "a NUL byte", diag);
    }
    return MG_OK;
}

/* The unescaped header summary (MSH is seg[0]). */
static int
fill_header(struct mg_hl7v2_msg *msg)
{
    static const struct {
        size_t off;
        int field, comp;
    } map[] = {
#define H(m, f, c) {offsetof(struct mg_hl7v2_header, m), f, c}
        H(sending_app, 3, 1),   H(sending_fac, 4, 1),
        H(receiving_app, 5, 1), H(receiving_fac, 6, 1),
        H(datetime, 7, 1),      H(type, 9, 1),
        H(trigger, 9, 2),       H(structure, 9, 3),
        H(control_id, 10, 1),   H(processing_id, 11, 1),
        H(version, 12, 1),      H(accept_ack, 15, 1),
        H(app_ack, 16, 1),      H(charset, 18, 1),
#undef H
    };
    struct mg_hl7v2_val v;
    int rc;

    for (size_t i = 0; i < MG_ARRAY_LEN(map); i++) {
        rc = mg_hl7v2_seg_get(msg, &msg->seg[0], map[i].field, 1,
                              map[i].comp, 1, &v);
        if (rc != MG_OK)
            return rc;
        /* Senders pad ("2.3||| "): a space is not a value here. */
        *(struct mg_str *)((char *)&msg->hdr + map[i].off) =
            mg_str_trim(v.str);
    }
    return MG_OK;
}


int
mg_hl7v2_parse(struct mg_str in, const struct mg_hl7v2_parse_opts *opts,
               struct mg_arena *arena, struct mg_hl7v2_msg **out,
               struct mg_diag *diag)
{
    struct parser ps; /* 4 KiB of separator offsets: stack, not arena */
    struct mg_hl7v2_msg *msg;
    struct mg_str body;
    int rc;

    if (in.len > UINT32_MAX) {
        mg__hl7v2_diag(diag, MG_HL7_ERR_INTERNAL, "", 0, 0, 0,
                       "message too large");
        return MG_ETOOBIG;
    }
    msg = mg_arena_calloc(arena, sizeof(*msg));
    if (msg == NULL) {
        mg__hl7v2_diag(diag, MG_HL7_ERR_INTERNAL, "", 0, 0, 0,
                       "out of memory");
        return MG_ENOMEM;
    }
    msg->arena = arena;
    if (in.ptr == NULL)
        in.ptr = "";
    body = mg__hl7v2_skip_preamble(in, &msg->bom);
    rc = mg_hl7v2_check(body, &msg->msh, diag);
    if (rc != MG_OK)
        return rc;
    msg->delims = msg->msh.delims;
    rc = pick_charset(msg, opts, diag);
    if (rc == MG_OK)
        rc = decode_text(msg, body, arena, diag);
    if (rc != MG_OK)
        return rc;

    ps.msg = msg;
    ps.arena = arena;
    ps.diag = diag;
    ps.fs = msg->delims.field;
    rc = parse_segments(&ps);
    if (rc == MG_OK)
        rc = check_utf8(msg, diag);
    if (rc == MG_OK)
        rc = check_nul(msg, diag);
    if (rc == MG_OK)
        rc = fill_header(msg);
    if (rc == MG_ENOMEM)
        mg__hl7v2_diag(diag, MG_HL7_ERR_INTERNAL, "", 0, 0, 0,
                       "out of memory");
    if (rc != MG_OK)
        return rc;
    *out = msg;
    return MG_OK;
}

int
mg_hl7v2_serialize(const struct mg_hl7v2_msg *msg, struct mg_buf *out)
{
    int rc;

    for (size_t i = 0; i < msg->nseg; i++) {
        if (msg->transcoded)
            rc = mg__hl7v2_from_utf8(out, msg->seg[i].raw, msg->charset,
                                     msg->iconv_name);
        else
            rc = mg_buf_append_str(out, msg->seg[i].raw);
        if (rc == MG_OK)
            rc = mg_buf_appendc(out, '\r');
        if (rc != MG_OK)
            return rc;
    }
    return MG_OK;
}
