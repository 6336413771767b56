/* Internals shared by the HL7 v2 codec's files; not for other modules. */
#ifndef MG_HL7V2_HL7V2_INT_H
#define MG_HL7V2_HL7V2_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "hl7v2/hl7v2.h"

/* The n-th (1-based) piece of s between separators sep; empty when s has
 * fewer pieces. sep '\0' means s is one piece. */
struct mg_str mg__hl7v2_piece(struct mg_str s, char sep, int n);

/* Number of pieces of s split on sep (1 for a non-empty s without sep, 0
 * for an empty s). */
int mg__hl7v2_piece_count(struct mg_str s, char sep);

/* MSH, FHS and BHS carry their own delimiters in fields 1 and 2. */
bool mg__hl7v2_is_header_id(const char *id);

/* A segment id is three upper-case letters or digits. */
bool mg__hl7v2_is_seg_id(const char *p, size_t len);

/* Fills a diag (which may be NULL): location and code and text. */
void mg__hl7v2_diag(struct mg_diag *d, int code, const char *seg, int seq,
                    int field, int comp, const char *fmt, ...) MG_PRINTF(7, 8);

/* True when p[0..n) is valid UTF-8 (no overlongs, surrogates or values
 * past U+10FFFF); otherwise *bad is the offset of the first bad byte. */
bool mg__hl7v2_utf8_valid(const char *p, size_t n, size_t *bad);

/* Converts in (in charset cs / iconv_name) to UTF-8 in the arena.
 * MG_OK, MG_EPARSE (*bad = input offset of the first unconvertible byte),
 * MG_ENOMEM. */
int mg__hl7v2_to_utf8(struct mg_str in, enum mg_hl7v2_charset cs,
                      const char *iconv_name, struct mg_arena *arena,
                      struct mg_str *out, size_t *bad);

/* Appends the UTF-8 text in converted back to cs / iconv_name.
 * MG_OK, MG_EIO (not representable), MG_ETOOBIG, MG_ENOMEM. */
int mg__hl7v2_from_utf8(struct mg_buf *out, struct mg_str in,
                        enum mg_hl7v2_charset cs, const char *iconv_name);

/* The standard delimiters |^~\& (no truncation character). */
extern const struct mg_hl7v2_delims mg__hl7v2_std_delims;

/* Appends byte b as the hex escape \Xhh\ with escape character esc. */
int mg__hl7v2_put_hex_escape(struct mg_buf *out, char esc, unsigned char b);

/* mg_hl7v2_unescape() with the iconv name of a MG_HL7V2_CS_ICONV set. */
int mg__hl7v2_unescape(struct mg_str raw, const struct mg_hl7v2_delims *d,
                       enum mg_hl7v2_charset cs, const char *iconv_name,
                       struct mg_arena *arena, struct mg_str *out);

/* in without a leading UTF-8 BOM (*bom says whether there was one; bom
 * may be NULL) and without blank lines before the first segment. */
struct mg_str mg__hl7v2_skip_preamble(struct mg_str in, bool *bom);

#endif
