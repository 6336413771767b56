/* Character sets (MSH-18, HL7 table 0211). The codec works in UTF-8: ASCII
 * and UTF-8 input is validated in place, ISO 8859-1 is widened by hand
 * (the common case, no iconv descriptor per message), and the other
 * single-byte sets go through glibc iconv. DESIGN-NOTES.md section 6. */
#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <string.h>

#include "core/error.h"
#include "hl7v2/hl7v2_int.h"

struct charset_name {
    const char *name; /* as in MSH-18, compared case-insensitively */
    enum mg_hl7v2_charset cs;
    const char *iconv; /* glibc name, for MG_HL7V2_CS_ICONV */
};

static const struct charset_name charsets[] = {
    {"ASCII", MG_HL7V2_CS_ASCII, NULL},
    {"US-ASCII", MG_HL7V2_CS_ASCII, NULL},
    {"ISO IR6", MG_HL7V2_CS_ASCII, NULL},
    {"UNICODE UTF-8", MG_HL7V2_CS_UTF8, NULL},
    {"UTF-8", MG_HL7V2_CS_UTF8, NULL},
    {"UTF8", MG_HL7V2_CS_UTF8, NULL},
    {"ISO IR192", MG_HL7V2_CS_UTF8, NULL},
    {"8859/1", MG_HL7V2_CS_LATIN1, NULL},
    {"ISO IR100", MG_HL7V2_CS_LATIN1, NULL},
    {"ISO-8859-1", MG_HL7V2_CS_LATIN1, NULL},
    {"LATIN1", MG_HL7V2_CS_LATIN1, NULL},
    {"8859/2", MG_HL7V2_CS_ICONV, "ISO-8859-2"},
    {"ISO IR101", MG_HL7V2_CS_ICONV, "ISO-8859-2"},
    {"8859/3", MG_HL7V2_CS_ICONV, "ISO-8859-3"},
    {"ISO IR109", MG_HL7V2_CS_ICONV, "ISO-8859-3"},
    {"8859/4", MG_HL7V2_CS_ICONV, "ISO-8859-4"},
    {"ISO IR110", MG_HL7V2_CS_ICONV, "ISO-8859-4"},
    {"8859/5", MG_HL7V2_CS_ICONV, "ISO-8859-5"},
    {"ISO IR144", MG_HL7V2_CS_ICONV, "ISO-8859-5"},
    {"8859/6", MG_HL7V2_CS_ICONV, "ISO-8859-6"},
    {"ISO IR127", MG_HL7V2_CS_ICONV, "ISO-8859-6"},
    {"8859/7", MG_HL7V2_CS_ICONV, "ISO-8859-7"},
    {"ISO IR126", MG_HL7V2_CS_ICONV, "ISO-8859-7"},
    {"8859/8", MG_HL7V2_CS_ICONV, "ISO-8859-8"},
    {"ISO IR138", MG_HL7V2_CS_ICONV, "ISO-8859-8"},
    {"8859/9", MG_HL7V2_CS_ICONV, "ISO-8859-9"},
    {"ISO IR148", MG_HL7V2_CS_ICONV, "ISO-8859-9"},
    {"8859/15", MG_HL7V2_CS_ICONV, "ISO-8859-15"},
    {"CP1252", MG_HL7V2_CS_ICONV, "WINDOWS-1252"},
    {"WINDOWS-1252", MG_HL7V2_CS_ICONV, "WINDOWS-1252"},
};

int
mg_hl7v2_charset_lookup(struct mg_str name, enum mg_hl7v2_charset *cs,
                        const char **iconv_name)
{
    name = mg_str_trim(name);
    if (iconv_name != NULL)
        *iconv_name = NULL;
    if (name.len == 0) {
        *cs = MG_HL7V2_CS_ASCII;
        return MG_OK;
    }
    for (size_t i = 0; i < MG_ARRAY_LEN(charsets); i++) {
        if (mg_str_ieq(name, mg_str_from(charsets[i].name))) {
            *cs = charsets[i].cs;
            if (iconv_name != NULL)
                *iconv_name = charsets[i].iconv;
            return MG_OK;
        }
    }
    return MG_EUNSUPPORTED;
}

bool
mg__hl7v2_utf8_valid(const char *s, size_t n, size_t *bad)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, k;
    uint64_t w;

    while (i < n) {
        /* Most HL7 text is ASCII: test eight bytes at a time. */
        if (n - i >= 8) {
            memcpy(&w, p + i, 8);
            if ((w & 0x8080808080808080ull) == 0) {
                i += 8;
                continue;
            }
        }
        k = mg_utf8_char_len((const char *)p + i, n - i);
        if (k == 0) {
            if (bad != NULL)
                *bad = i;
            return false;
        }
        i += k;
    }
    return true;
}

static int
latin1_to_utf8(struct mg_str in, struct mg_arena *arena, struct mg_str *out)
{
    const unsigned char *p = (const unsigned char *)in.ptr;
    size_t high = 0, j = 0;
    char *o;

    for (size_t i = 0; i < in.len; i++)
        high += p[i] >> 7;
    o = mg_arena_alloc(arena, in.len + high + 1);
    if (o == NULL)
        return MG_ENOMEM;
    for (size_t i = 0; i < in.len; i++) {
        if (p[i] < 0x80) {
            o[j++] = (char)p[i];
        } else {
            o[j++] = (char)(0xC0 | (p[i] >> 6));
            o[j++] = (char)(0x80 | (p[i] & 0x3F));
        }
    }
    o[j] = '\0';
    *out = mg_str_n(o, j);
    return MG_OK;
}

/* Single-byte sets never need more than 3 UTF-8 bytes per input byte
 * (their repertoire is inside the BMP). */
static int
iconv_to_utf8(struct mg_str in, const char *name, struct mg_arena *arena,
              struct mg_str *out, size_t *bad)
{
    iconv_t cd;
    char *o, *ip = (char *)(uintptr_t)in.ptr, *op;
    size_t il = in.len, ol, r;
    int rc = MG_OK;

    if (in.len > (SIZE_MAX - 1) / 3)
        return MG_ENOMEM;
    o = mg_arena_alloc(arena, in.len * 3 + 1);
    if (o == NULL)
        return MG_ENOMEM;
    cd = iconv_open("UTF-8", name);
    if (cd == (iconv_t)-1)
        return errno == ENOMEM ? MG_ENOMEM : MG_EUNSUPPORTED;
    op = o;
    ol = in.len * 3;
    r = iconv(cd, &ip, &il, &op, &ol);
    if (r == (size_t)-1) {
        if (bad != NULL)
            *bad = in.len - il;
        rc = errno == E2BIG ? MG_ENOMEM : MG_EPARSE;
    }
    iconv_close(cd);
    if (rc != MG_OK)
        return rc;
    *op = '\0';
    *out = mg_str_n(o, (size_t)(op - o));
    return MG_OK;
}

int
mg__hl7v2_to_utf8(struct mg_str in, enum mg_hl7v2_charset cs,
                  const char *iconv_name, struct mg_arena *arena,
                  struct mg_str *out, size_t *bad)
{
    switch (cs) {
    case MG_HL7V2_CS_LATIN1:
        return latin1_to_utf8(in, arena, out);
    case MG_HL7V2_CS_ICONV:
        return iconv_to_utf8(in, iconv_name, arena, out, bad);
    default:
        break;
    }
    if (!mg__hl7v2_utf8_valid(in.ptr, in.len, bad))
        return MG_EPARSE;
    *out = in;
    return MG_OK;
}

static int
utf8_to_latin1(struct mg_buf *out, struct mg_str in)
{
    const unsigned char *p = (const unsigned char *)in.ptr;
    size_t i = 0, j;
    int rc = mg_buf_reserve(out, in.len);

    if (rc != MG_OK)
        return rc;
    j = out->len;
    while (i < in.len) {
        if (p[i] < 0x80) {
            out->ptr[j++] = (char)p[i++];
        } else if ((p[i] == 0xC2 || p[i] == 0xC3) && i + 1 < in.len &&
                   (p[i + 1] & 0xC0) == 0x80) {
            out->ptr[j++] = (char)(((p[i] & 0x03) << 6) | (p[i + 1] & 0x3F));
            i += 2;
        } else {
            out->ptr[out->len] = '\0';
            return MG_EIO;
        }
    }
    out->len = j;
    out->ptr[j] = '\0';
    return MG_OK;
}

static int
utf8_to_iconv(struct mg_buf *out, struct mg_str in, const char *name)
{
    iconv_t cd;
    char *ip = (char *)(uintptr_t)in.ptr, *op;
    size_t il = in.len, ol, r;
    int rc = mg_buf_reserve(out, in.len); /* never grows: 1 byte per char */

    if (rc != MG_OK)
        return rc;
    cd = iconv_open(name, "UTF-8");
    if (cd == (iconv_t)-1)
        return errno == ENOMEM ? MG_ENOMEM : MG_EIO;
    op = out->ptr + out->len;
    ol = in.len;
    r = iconv(cd, &ip, &il, &op, &ol);
    iconv_close(cd);
    if (r == (size_t)-1) {
        out->ptr[out->len] = '\0';
        return MG_EIO;
    }
    out->len = (size_t)(op - out->ptr);
    out->ptr[out->len] = '\0';
    return MG_OK;
}

int
mg__hl7v2_from_utf8(struct mg_buf *out, struct mg_str in,
                    enum mg_hl7v2_charset cs, const char *iconv_name)
{
    switch (cs) {
    case MG_HL7V2_CS_LATIN1:
        return utf8_to_latin1(out, in);
    case MG_HL7V2_CS_ICONV:
        return utf8_to_iconv(out, in, iconv_name);
    default:
        return mg_buf_append_str(out, in);
    }
}
