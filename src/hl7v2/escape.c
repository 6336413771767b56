/* Escape sequences (HL7 v2 chapter 2.7). Values are decoded only after the
 * message was split on every delimiter, otherwise "\F\" would create a
 * field; decoding is lazy, on read, so messages nobody reads cost nothing.
 * DESIGN-NOTES.md section 6 lists the sequences. */
#include <string.h>

#include "core/error.h"
#include "hl7v2/hl7v2_int.h"

/* Output written so far by the decoder. */
struct out {
    char *p;
    size_t len;
    const char *iconv_name; /* for MG_HL7V2_CS_ICONV */
};

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* "Xhhhh..": an even, non-zero number of hex digits after X. */
static bool
is_hex_seq(struct mg_str s)
{
    if (s.len < 3 || s.ptr[0] != 'X' || (s.len - 1) % 2 != 0)
        return false;
    for (size_t i = 1; i < s.len; i++)
        if (hexval(s.ptr[i]) < 0)
            return false;
    return true;
}

/* Writes the bytes of a hex escape, read in the message's charset. UTF-8
 * and ASCII bytes are copied (repaired later if invalid); Latin-1 bytes
 * are widened; other sets go through iconv. Each byte took two digits and
 * becomes at most three bytes, so the output stays within twice the
 * input. */
static void
put_hex(struct out *o, struct mg_str s, enum mg_hl7v2_charset cs,
        struct mg_arena *arena)
{
    size_t start = o->len, n = (s.len - 1) / 2;
    unsigned char b;
    struct mg_str conv;

    for (size_t i = 0; i < n; i++) {
        b = (unsigned char)(hexval(s.ptr[1 + 2 * i]) << 4 |
                            hexval(s.ptr[2 + 2 * i]));
        if (cs == MG_HL7V2_CS_LATIN1 && b >= 0x80) {
            o->p[o->len++] = (char)(0xC0 | (b >> 6));
            o->p[o->len++] = (char)(0x80 | (b & 0x3F));
        } else {
            o->p[o->len++] = (char)b;
        }
    }
    if (cs != MG_HL7V2_CS_ICONV)
        return;
    /* On failure the bytes stay as they are and are repaired later. */
    if (mg__hl7v2_to_utf8(mg_str_n(o->p + start, o->len - start), cs,
                          o->iconv_name, arena, &conv, NULL) == MG_OK &&
        conv.len <= 3 * n) {
        memcpy(o->p + start, conv.ptr, conv.len);
        o->len = start + conv.len;
    }
}

/* A number after a formatting command (".sp 3"), clamped to [1, max]. */
static size_t
fmt_count(struct mg_str arg, size_t max)
{
    size_t n = 0;

    for (size_t i = 0; i < arg.len; i++) {
        if (arg.ptr[i] >= '0' && arg.ptr[i] <= '9')
            n = n * 10 + (size_t)(arg.ptr[i] - '0');
        if (n > max)
            return max;
    }
    return n == 0 ? 1 : n;
}

/* Formatting commands (FT): line breaks become "\n", skips spaces, the
 * rest (indents, fill mode) has no plain-text meaning and is dropped.
 * false: not a command we know. */
static bool
put_format(struct out *o, struct mg_str s)
{
    struct mg_str cmd, arg;

    if (s.len < 3 || s.ptr[0] != '.')
        return false;
    cmd = mg_str_n(s.ptr + 1, 2);
    arg = mg_str_n(s.ptr + 3, s.len - 3);
    if (mg_str_eqz(cmd, "br") || mg_str_eqz(cmd, "ce")) {
        if (arg.len != 0)
            return false;
        o->p[o->len++] = '\n';
        return true;
    }
    if (mg_str_eqz(cmd, "sp")) {
        /* Never longer than the sequence itself: output fits the input. */
        for (size_t n = fmt_count(arg, s.len); n > 0; n--)
            o->p[o->len++] = '\n';
        return true;
    }
    if (mg_str_eqz(cmd, "sk")) {
        /* Skip n spaces to the right: spaces, or the words around it run
         * together ("Size:\.sk 3\12 mm"). Capped as .sp is. */
        for (size_t n = fmt_count(arg, s.len); n > 0; n--)
            o->p[o->len++] = ' ';
        return true;
    }
    if (mg_str_eqz(cmd, "fi") || mg_str_eqz(cmd, "nf"))
        return arg.len == 0;
    return mg_str_eqz(cmd, "in") || mg_str_eqz(cmd, "ti");
}

/* Decodes one sequence (the text between two escape characters).
 * false: unknown, the caller keeps it verbatim. */
static bool
put_seq(struct out *o, struct mg_str s, const struct mg_hl7v2_delims *d,
        enum mg_hl7v2_charset cs, struct mg_arena *arena)
{
    char c = '\0';

    if (s.len == 1) {
        switch (s.ptr[0]) {
        case 'F': c = d->field; break;
        case 'S': c = d->comp; break;
        case 'T': c = d->sub; break;
        case 'R': c = d->rep; break;
        case 'E': c = d->esc; break;
        case 'P': c = d->trunc; break;
        case 'H':
        case 'N':
            return true; /* highlighting on/off: no plain-text meaning */
        default:
            return false;
        }
        if (c == '\0')
            return false;
        o->p[o->len++] = c;
        return true;
    }
    if (is_hex_seq(s)) {
        put_hex(o, s, cs, arena);
        return true;
    }
    return put_format(o, s);
}

/* The length of the valid UTF-8 text at p that holds no NUL byte; all
 * of n when it is all valid. */
static size_t
text_prefix(const char *p, size_t n)
{
    const char *nul = memchr(p, '\0', n);
    size_t bad;

    if (nul != NULL)
        n = (size_t)(nul - p);
    return mg__hl7v2_utf8_valid(p, n, &bad) ? n : bad;
}

/* Replaces bytes that are not UTF-8, and NUL bytes (which no text column
 * can store), with U+FFFD: hex escapes (\X00\) can hold anything; the
 * rest of the text was validated at parse time. */
static int
repair_utf8(struct mg_str *v, struct mg_arena *arena)
{
    size_t bad, j = 0, i = 0;
    char *o;

    if (text_prefix(v->ptr, v->len) == v->len)
        return MG_OK;
    o = mg_arena_alloc(arena, v->len * 3 + 1);
    if (o == NULL)
        return MG_ENOMEM;
    while (i < v->len) {
        bad = text_prefix(v->ptr + i, v->len - i);
        memcpy(o + j, v->ptr + i, bad);
        j += bad;
        i += bad;
        if (i < v->len) {
            memcpy(o + j, "\xEF\xBF\xBD", 3);
            j += 3;
            i++;
        }
    }
    o[j] = '\0';
    *v = mg_str_n(o, j);
    return MG_OK;
}

int
mg_hl7v2_unescape(struct mg_str raw, const struct mg_hl7v2_delims *d,
                  enum mg_hl7v2_charset cs, struct mg_arena *arena,
                  struct mg_str *out)
{
    if (cs == MG_HL7V2_CS_ICONV)
        cs = MG_HL7V2_CS_ASCII; /* no set named: bytes as UTF-8, repaired */
    return mg__hl7v2_unescape(raw, d, cs, NULL, arena, out);
}

int
mg__hl7v2_unescape(struct mg_str raw, const struct mg_hl7v2_delims *d,
                   enum mg_hl7v2_charset cs, const char *iconv_name,
                   struct mg_arena *arena, struct mg_str *out)
{
    struct out o;
    const char *p = raw.ptr, *end = raw.ptr + raw.len, *e, *q;
    bool hex = false;

    if (d->esc == '\0' || raw.len == 0 ||
        (e = memchr(raw.ptr, d->esc, raw.len)) == NULL) {
        *out = raw;
        return MG_OK;
    }
    /* Latin-1 hex bytes widen to 2 bytes from 2 digits; everything else
     * shrinks, so twice the input always fits. */
    o.p = mg_arena_alloc(arena, raw.len * 2 + 1);
    if (o.p == NULL)
        return MG_ENOMEM;
    o.len = 0;
    o.iconv_name = iconv_name;
    while (e != NULL) {
        memcpy(o.p + o.len, p, (size_t)(e - p));
        o.len += (size_t)(e - p);
        q = memchr(e + 1, d->esc, (size_t)(end - e - 1));
        if (q == NULL) {
            p = e; /* unterminated: the rest is kept verbatim */
            break;
        }
        struct mg_str s = mg_str_n(e + 1, (size_t)(q - e - 1));
        if (!put_seq(&o, s, d, cs, arena)) {
            memcpy(o.p + o.len, e, (size_t)(q - e + 1));
            o.len += (size_t)(q - e + 1);
        } else if (is_hex_seq(s)) {
            hex = true;
        }
        p = q + 1;
        e = memchr(p, d->esc, (size_t)(end - p));
    }
    memcpy(o.p + o.len, p, (size_t)(end - p));
    o.len += (size_t)(end - p);
    o.p[o.len] = '\0';
    *out = mg_str_n(o.p, o.len);
    return hex ? repair_utf8(out, arena) : MG_OK;
}

/* The escape letter for c, or '\0' when c is plain data. */
static char
escape_letter(const struct mg_hl7v2_delims *d, char c)
{
    if (c == '\0')
        return '\0';
    if (c == d->field)
        return 'F';
    if (c == d->comp)
        return 'S';
    if (c == d->sub)
        return 'T';
    if (c == d->rep)
        return 'R';
    if (c == d->esc)
        return 'E';
    if (c == d->trunc)
        return 'P';
    return '\0';
}

/* Control characters other than TAB are written as \Xhh\: CR and LF
 * would end the segment, and VT (0x0B) and FS (0x1C), the MLLP block
 * bytes, would make the message impossible to frame (word processors put
 * VT in text as a line break). */
static bool
is_control(char c)
{
    return (unsigned char)c < 0x20 && c != '\t';
}

int
mg__hl7v2_put_hex_escape(struct mg_buf *out, char esc, unsigned char b)
{
    static const char hex[] = "0123456789ABCDEF";
    const char seq[5] = {esc, 'X', hex[b >> 4], hex[b & 0x0F], esc};

    return mg_buf_append(out, seq, sizeof(seq));
}

int
mg_hl7v2_escape(struct mg_buf *out, const struct mg_hl7v2_delims *d,
                struct mg_str text)
{
    size_t start = 0;
    char seq[3], l;
    int rc;

    for (size_t i = 0; i < text.len; i++) {
        char c = text.ptr[i];

        l = escape_letter(d, c);
        if (l == '\0' && !is_control(c))
            continue;
        rc = mg_buf_append(out, text.ptr + start, i - start);
        if (rc != MG_OK)
            return rc;
        start = i + 1;
        if (d->esc == '\0') {
            rc = mg_buf_appendc(out, ' ');
        } else if (l != '\0') {
            seq[0] = d->esc;
            seq[1] = l;
            seq[2] = d->esc;
            rc = mg_buf_append(out, seq, 3);
        } else {
            rc = mg__hl7v2_put_hex_escape(out, d->esc, (unsigned char)c);
        }
        if (rc != MG_OK)
            return rc;
    }
    return mg_buf_append(out, text.ptr + start, text.len - start);
}
