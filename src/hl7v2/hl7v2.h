/* HL7 v2 codec (sans I/O): parse v2.3 - v2.8 messages, read values by path,
 * serialise, split batches and build acknowledgements. It sees only bytes:
 * no libuv, no sockets, no files, so it is easy to test, fuzz and reuse
 * (STYLE.md section 1). DESIGN-NOTES.md sections 5 and 6 give the rules it
 * follows.
 *
 * Model. mg_hl7v2_parse() makes one pass over the message and records, for
 * every segment, where each field starts and ends. Nothing is copied:
 * fields are slices of the input (or of a UTF-8 copy in the arena when the
 * message arrived in another character set). Repetitions, components and
 * sub-components are split, and escape sequences decoded, only when a value
 * is read; decoded values are written to the message's arena.
 *
 * Numbering follows the standard: fields, repetitions, components and
 * sub-components are 1-based, and MSH-1 is the field separator itself, so
 * in "MSH|^~\&|APP" MSH-2 is "^~\&" and MSH-3 is "APP". FHS and BHS count
 * the same way.
 *
 * Threads: a message may be read from one thread at a time (reads allocate
 * from its arena). Functions without a message or arena are reentrant. */
#ifndef MG_HL7V2_HL7V2_H
#define MG_HL7V2_HL7V2_H

#include <stdbool.h>
#include <stddef.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/compiler.h"
#include "core/diag.h"
#include "core/str.h"

/* More fields than this in one segment is refused (MG_ETOOBIG, 0357 code
 * 207): real segments stop near 50, and the limit bounds what a hostile
 * message can make us index. */
#define MG_HL7V2_MAX_FIELDS 1000
/* MSH fields kept by mg_hl7v2_msh_peek(): MSH-1 .. MSH-21. */
#define MG_HL7V2_MSH_FIELDS 21

/* ---- Delimiters and the raw MSH ------------------------------------- */

/* The message's delimiters, from MSH-1 and MSH-2. esc, sub and trunc are
 * '\0' when MSH-2 is too short to name them (then nothing is unescaped). */
struct mg_hl7v2_delims {
    char field; /* MSH-1, usually '|' */
    char comp;  /* MSH-2[0], usually '^' */
    char rep;   /* MSH-2[1], usually '~' */
    char esc;   /* MSH-2[2], usually '\\' */
    char sub;   /* MSH-2[3], usually '&' */
    char trunc; /* MSH-2[4], v2.7+ '#', else '\0' */
};

/* The MSH as it stands on the wire: slices of the input, still escaped and
 * in the sender's character set, which is what an ACK must echo. Filled by
 * mg_hl7v2_msh_peek() (which reads a damaged MSH as far as it can) and by
 * mg_hl7v2_parse(). */
struct mg_hl7v2_msh {
    struct mg_hl7v2_delims delims;
    bool delims_ok;         /* MSH-2 was well formed */
    int nfield;             /* highest MSH-n present (1 .. 21) */
    struct mg_str segment;  /* the whole MSH segment, no terminator */
    /* field[n] is MSH-n, n = 1 .. MG_HL7V2_MSH_FIELDS; [0] is unused and
     * fields past nfield are empty. field[1] is the separator itself. */
    struct mg_str field[MG_HL7V2_MSH_FIELDS + 1];
};

/* Finds the MSH at the start of in (after an optional UTF-8 byte-order
 * mark and leading CR/LF) and slices MSH-1 .. MSH-21 into *out without
 * validating them: the "critical response data" an ACK needs even when the
 * rest of the message cannot be parsed. A malformed MSH-2 gives
 * delims_ok = false and the standard "^~\&" for the characters it lacks.
 * MG_OK, or MG_EPARSE when in does not start with "MSH" and a separator.
 * No allocation; *out points into in. */
MG_MUST_CHECK int mg_hl7v2_msh_peek(struct mg_str in, struct mg_hl7v2_msh *out);

/* Checks the MSH fields the gateway relies on, in this order, and fills
 * *diag (location and HL7 table 0357 code) on the first problem:
 *   MSH-2 empty / malformed             101 / 102  (MSH-2; well formed
 *                                       is 2 - 5 distinct punctuation
 *                                       characters, not MSH-1)
 *   MSH-9 empty / MSH-9.1 not 3 chars   101 / 200  (MSH-9)
 *   MSH-10 empty                        101  (MSH-10)
 *   MSH-11 empty / not P, D or T        101 / 202  (MSH-11)
 *   MSH-12 empty / not 2.3 .. 2.8.2     101 / 203  (MSH-12)
 * MSH-9.1, MSH-11.1 and MSH-12.1 are read by mg_hl7v2_msh_comp(), without
 * surrounding spaces, as the header summary reads them.
 * MG_OK, or MG_EPARSE (unsupported type/processing id/version included:
 * the diag code tells them apart). diag may be NULL. */
MG_MUST_CHECK int mg_hl7v2_msh_check(const struct mg_hl7v2_msh *msh,
                                     struct mg_diag *diag);

/* The fast path for a listener: mg_hl7v2_msh_peek() then
 * mg_hl7v2_msh_check(). A missing MSH is code 100 (segment sequence) at
 * MSH. *out is filled as far as the MSH could be read, also on error, so
 * an AR can be built from it. MG_OK or MG_EPARSE. */
MG_MUST_CHECK int mg_hl7v2_check(struct mg_str in, struct mg_hl7v2_msh *out,
                                 struct mg_diag *diag);

/* Component n (1-based) of the first repetition of a raw field, still
 * escaped. Empty when absent. Use on mg_hl7v2_msh fields. */
struct mg_str mg_hl7v2_raw_comp(struct mg_str field,
                                const struct mg_hl7v2_delims *d, int n);

/* Component comp of MSH-field (first repetition), still escaped and
 * without surrounding spaces: the one reading of the raw MSH that the
 * header check, the ACK builder and the intake share, so they judge the
 * value the header summary (which trims too) shows. Senders pad ("ADT ",
 * " P", "2.5 "), and a value must not be refused by one part of the
 * gateway and accepted by another. Empty when absent or when field is not
 * 1 .. MG_HL7V2_MSH_FIELDS. No allocation; points into msh's input. */
struct mg_str mg_hl7v2_msh_comp(const struct mg_hl7v2_msh *msh, int field,
                                int comp);

/* ---- Parsed messages ------------------------------------------------- */

/* Character sets (HL7 table 0211) the codec reads. Everything is converted
 * to UTF-8 at parse time. */
enum mg_hl7v2_charset {
    MG_HL7V2_CS_ASCII,  /* "ASCII", "ISO IR6"; valid UTF-8 is accepted too */
    MG_HL7V2_CS_UTF8,   /* "UNICODE UTF-8", "UTF-8", "ISO IR192" */
    MG_HL7V2_CS_LATIN1, /* "8859/1", "ISO IR100" (hand-written, no iconv) */
    MG_HL7V2_CS_ICONV,  /* "8859/2".."8859/9", "8859/15", "CP1252" (iconv) */
};

/* Header summary, filled by mg_hl7v2_parse(). Values are unescaped UTF-8
 * without leading or trailing spaces; an absent value is empty. (The
 * escaped wire fields are in msg->msh.) */
struct mg_hl7v2_header {
    struct mg_str sending_app;   /* MSH-3.1 */
    struct mg_str sending_fac;   /* MSH-4.1 */
    struct mg_str receiving_app; /* MSH-5.1 */
    struct mg_str receiving_fac; /* MSH-6.1 */
    struct mg_str datetime;      /* MSH-7.1 (DTM as sent) */
    struct mg_str type;          /* MSH-9.1, e.g. "ADT" */
    struct mg_str trigger;       /* MSH-9.2, e.g. "A01" */
    struct mg_str structure;     /* MSH-9.3, e.g. "ADT_A01"; often empty */
    struct mg_str control_id;    /* MSH-10 */
    struct mg_str processing_id; /* MSH-11.1: "P", "D" or "T" */
    struct mg_str version;       /* MSH-12.1, e.g. "2.5.1" */
    struct mg_str accept_ack;    /* MSH-15: "AL", "NE", "ER", "SU" or "" */
    struct mg_str app_ack;       /* MSH-16, same table 0155 */
    struct mg_str charset;       /* MSH-18 first repetition, as sent */
};

/* One segment. field[0] is the segment id; field[n] is field n, raw
 * (escaped), for n < nfield. For MSH, FHS and BHS field[1] is the one-byte
 * field separator and field[2] the encoding characters. */
struct mg_hl7v2_seg {
    char id[4];           /* NUL-terminated, e.g. "PID", "ZDS" */
    struct mg_str raw;    /* the whole segment, no terminator */
    struct mg_str *field; /* in the arena; nfield entries */
    int nfield;           /* highest field number present + 1 */
    int seq;              /* its occurrence among the message's segments of
                             the same id: 1 for the first OBX, 2 for the
                             second (PID[1], OBX[2] in locations) */
};

struct mg_hl7v2_msg {
    struct mg_str text;            /* the message as parsed: UTF-8, no BOM;
                                      the input or a copy in the arena */
    struct mg_hl7v2_delims delims; /* from MSH-1/MSH-2 */
    struct mg_hl7v2_msh msh;       /* raw MSH, slices of the input */
    struct mg_hl7v2_header hdr;    /* unescaped summary */
    struct mg_hl7v2_seg *seg;      /* in the arena, in message order */
    size_t nseg;
    enum mg_hl7v2_charset charset; /* what the input was decoded from */
    bool bom;                      /* the input began with EF BB BF */
    bool transcoded;               /* text is a UTF-8 copy, not the input */
    /* private */
    struct mg_arena *arena;    /* lazy unescapes go here */
    const char *iconv_name;    /* for MG_HL7V2_CS_ICONV */
};

struct mg_hl7v2_parse_opts {
    /* Character set assumed when MSH-18 is empty (a per-sender setting),
     * as a table 0211 name ("8859/1", "UNICODE UTF-8", "CP1252", ...).
     * NULL means ASCII, or UTF-8 when the input begins with a BOM. */
    const char *default_charset;
    /* Used instead of MSH-18 whatever it says (quirk profiles for senders
     * that declare one set and send another). NULL: honour MSH-18. */
    const char *force_charset;
};

/* Parses one message (not a batch; see mg_hl7v2_batch_split()).
 *
 * in is borrowed and must outlive *out, whose values may point into it.
 * opts may be NULL. The message and everything it refers to is allocated
 * from arena; nothing is allocated elsewhere (except by glibc iconv for
 * the MG_HL7V2_CS_ICONV sets). *out is valid only on MG_OK.
 *
 * Accepted: a leading UTF-8 BOM; CR segment terminators, CRLF, or bare LF
 * when the message holds no CR at all; empty segments (skipped); any
 * segment id of 3 upper-case letters or digits (Z-segments are kept like
 * any other). A terminator that is not followed by a segment id (three
 * upper-case letters or digits, then the field separator or the end of
 * the line) is taken as data of the field it is in: senders let CRs slip
 * into text and base64, and the round trip keeps them. The MSH is
 * validated as mg_hl7v2_msh_check() does; a second MSH, or FHS, BHS, BTS,
 * FTS, is an error (code 100: use mg_hl7v2_batch_split()).
 *
 * Character sets: MSH-18 (first repetition) or the default picks the
 * decoder; text is converted to UTF-8. Bytes that are not valid UTF-8 in
 * a message declared (or defaulted to) ASCII or UTF-8 are an error, not
 * silently kept, because every consumer downstream (JSON, PostgreSQL)
 * needs valid UTF-8: the diag names the segment and field, code 102.
 *
 * Returns MG_OK; MG_EPARSE (malformed; *diag says where and why, with a
 * table 0357 code); MG_EUNSUPPORTED (unknown MSH-18: 103 at MSH-18);
 * MG_EINVAL (opts names a character set we do not know: 207);
 * MG_ETOOBIG (a segment has more than MG_HL7V2_MAX_FIELDS fields, or the
 * input is 4 GiB or more: code 207); MG_ENOMEM (arena exhausted, 207).
 * diag may be NULL. */
MG_MUST_CHECK int mg_hl7v2_parse(struct mg_str in,
                                 const struct mg_hl7v2_parse_opts *opts,
                                 struct mg_arena *arena,
                                 struct mg_hl7v2_msg **out,
                                 struct mg_diag *diag);

/* Appends the message to out: every segment as parsed followed by CR. For
 * a message parsed from ASCII or UTF-8 the bytes are the input's with the
 * BOM dropped, terminators made CR and empty segments dropped; a
 * transcoded message is converted back to its character set, so the
 * round trip is byte-exact there too. MG_OK, MG_ETOOBIG (out's maximum),
 * MG_ENOMEM, MG_EIO (cannot convert back; only for hand-edited text). */
MG_MUST_CHECK int mg_hl7v2_serialize(const struct mg_hl7v2_msg *msg,
                                     struct mg_buf *out);

/* ---- Reading values ------------------------------------------------- */

/* A parsed path: "PID-3[2].1", "OBX[3]-5", "PID-3.1.2", "MSH-9.2".
 * Grammar: SEG ['[' seq ']'] '-' field ['[' rep ']'] ['.' comp ['.' sub]]
 * with SEG three upper-case letters or digits and numbers >= 1. */
struct mg_hl7v2_path {
    char seg[4]; /* segment id, NUL-terminated */
    int seq;     /* occurrence of the segment, 1-based */
    int field;   /* >= 1 */
    int rep;     /* 1-based; 1 when not written */
    int comp;    /* 1-based; 1 when not written */
    int sub;     /* 1-based; 1 when not written */
};

/* Parses a path (not NUL-terminated; no allocation). MG_OK or MG_EINVAL. */
MG_MUST_CHECK int mg_hl7v2_path_parse(struct mg_str text,
                                      struct mg_hl7v2_path *out);

/* What a leaf held on the wire. HL7 distinguishes "not sent" (empty: keep
 * what you have) from the explicit null "" (delete what you have). */
enum mg_hl7v2_presence {
    MG_HL7V2_EMPTY = 0, /* absent or empty */
    MG_HL7V2_NULL,      /* exactly "" */
    MG_HL7V2_VALUED,    /* anything else */
};

struct mg_hl7v2_val {
    struct mg_str str;              /* unescaped UTF-8; "" unless VALUED */
    enum mg_hl7v2_presence presence;
};

/* Reads one leaf: field, repetition, component, sub-component of a
 * segment (all 1-based; as with HAPI's Terser, reading a composite reads
 * its first part, so PID-5 gives the family name). MSH-1 and MSH-2 are
 * returned verbatim. The value is unescaped (see mg_hl7v2_unescape()); it
 * points into the message text, or into the arena when decoding changed
 * it, and lives as long as both. MG_OK (also for an absent leaf: presence
 * EMPTY), MG_EINVAL (a number < 1), MG_ENOMEM. */
MG_MUST_CHECK int mg_hl7v2_seg_get(const struct mg_hl7v2_msg *msg,
                                   const struct mg_hl7v2_seg *seg, int field,
                                   int rep, int comp, int sub,
                                   struct mg_hl7v2_val *out);

/* A walk over the repetitions of one field, in one pass (reading the
 * k-th with mg_hl7v2_seg_get() finds it from the field's start, which
 * for every k of a 200 kB field is some 10^10 steps). Zero it to start. */
struct mg_hl7v2_rep_iter {
    struct mg_str rest; /* what follows the repetitions given so far */
    int n;              /* the number of the one given last (1-based) */
    bool started, more, whole;
};

/* The next repetition of field n of seg as a raw slice for
 * mg_hl7v2_rep_get(); false when there is none left (none at all for an
 * empty field, as mg_hl7v2_rep_count() counts them). */
bool mg_hl7v2_rep_next(const struct mg_hl7v2_msg *msg,
                       const struct mg_hl7v2_seg *seg, int field,
                       struct mg_hl7v2_rep_iter *it, struct mg_str *rep);

/* mg_hl7v2_seg_get() of component comp, sub-component sub of rep, a
 * repetition of field n of seg that mg_hl7v2_rep_next() gave. comp and sub
 * both 0 read the repetition whole, for a text type (TX, FT, ST) that has
 * no components: a '^' or '&' a sender left unescaped is kept as that
 * character rather than ending the value. */
MG_MUST_CHECK int mg_hl7v2_rep_get(const struct mg_hl7v2_msg *msg,
                                   const struct mg_hl7v2_seg *seg, int field,
                                   struct mg_str rep, int comp, int sub,
                                   struct mg_hl7v2_val *out);

/* mg_hl7v2_seg_get() at a parsed path. A segment that does not occur, or
 * does not occur seq times, reads as EMPTY. */
MG_MUST_CHECK int mg_hl7v2_get_path(const struct mg_hl7v2_msg *msg,
                                    const struct mg_hl7v2_path *path,
                                    struct mg_hl7v2_val *out);

/* mg_hl7v2_get_path() on a NUL-terminated path string; MG_EINVAL when the
 * path does not parse. */
MG_MUST_CHECK int mg_hl7v2_get(const struct mg_hl7v2_msg *msg,
                               const char *path, struct mg_hl7v2_val *out);

/* Shorthand: *out is the value, "" when empty, null or on any error. */
struct mg_str mg_hl7v2_getz(const struct mg_hl7v2_msg *msg, const char *path);

/* Occurrences of segment id (e.g. "OBX") in the message. */
size_t mg_hl7v2_seg_count(const struct mg_hl7v2_msg *msg, const char *id);

/* The seq-th (1-based) occurrence of segment id, or NULL. */
const struct mg_hl7v2_seg *mg_hl7v2_seg_find(const struct mg_hl7v2_msg *msg,
                                             const char *id, int seq);

/* The raw (escaped) field n of seg; empty when absent. */
struct mg_str mg_hl7v2_seg_field(const struct mg_hl7v2_seg *seg, int n);

/* Repetitions in field n of seg: 0 when the field is empty, 1 for a
 * non-empty field without a repetition separator. MSH-1/MSH-2 count 1. */
int mg_hl7v2_rep_count(const struct mg_hl7v2_msg *msg,
                       const struct mg_hl7v2_seg *seg, int field);

/* Components in repetition rep of field n (0 when empty). */
int mg_hl7v2_comp_count(const struct mg_hl7v2_msg *msg,
                        const struct mg_hl7v2_seg *seg, int field, int rep);

/* ---- Escapes -------------------------------------------------------- */

/* Decodes the escape sequences in one leaf value (already split on every
 * delimiter): \F\ \S\ \T\ \R\ \E\ (and \P\ in v2.7+) become the delimiter;
 * \Xhh..\ becomes bytes, read in cs (Latin-1 bytes are converted to UTF-8;
 * invalid UTF-8 becomes U+FFFD; MG_HL7V2_CS_ICONV needs the set's name,
 * which only the message accessors have, so here it reads as UTF-8);
 * \.br\ and \.ce\ become "\n", \.sp n\ n newlines (at least one, at most
 * the length of the sequence); \H\ \N\ \.fi\ \.nf\ \.in n\ \.ti n\ \.sk n\
 * (formatting without a plain-text meaning) are dropped; anything else
 * (\Cxxyy\, \Mxxyyzz\, \Z..\, unknown, unterminated) is kept verbatim.
 * When raw holds no escape character, *out = raw and nothing is
 * allocated; otherwise *out is in arena. MG_OK or MG_ENOMEM. */
MG_MUST_CHECK int mg_hl7v2_unescape(struct mg_str raw,
                                    const struct mg_hl7v2_delims *d,
                                    enum mg_hl7v2_charset cs,
                                    struct mg_arena *arena,
                                    struct mg_str *out);

/* Appends text to out with every delimiter escaped (\F\ \S\ \T\ \R\ \E\,
 * \P\ when a truncation character is set), and control characters but
 * TAB as \Xhh\ (CR and LF as \X0D\ and \X0A\) so text can never end a
 * segment, nor hold the MLLP block bytes 0x0B and 0x1C that no frame can
 * carry. When the escape character is unknown, delimiters and control
 * characters are replaced by a space instead. MG_OK, MG_ETOOBIG,
 * MG_ENOMEM. */
MG_MUST_CHECK int mg_hl7v2_escape(struct mg_buf *out,
                                  const struct mg_hl7v2_delims *d,
                                  struct mg_str text);

/* ---- Character sets ------------------------------------------------- */

/* Looks up a table 0211 name (trimmed, case-insensitive); "" is ASCII.
 * MG_OK with *cs (and, for MG_HL7V2_CS_ICONV, *iconv_name, a static
 * string; iconv_name may be NULL) or MG_EUNSUPPORTED. */
MG_MUST_CHECK int mg_hl7v2_charset_lookup(struct mg_str name,
                                          enum mg_hl7v2_charset *cs,
                                          const char **iconv_name);

/* ---- Batches -------------------------------------------------------- */

/* A batch file split into its messages: [FHS] {[BHS] {MSH...} [BTS]} [FTS]
 * (DESIGN-NOTES.md section 6). Slices of the input, with their original
 * segment terminators; parse each with mg_hl7v2_parse(). */
struct mg_hl7v2_batch {
    struct mg_str fhs;  /* raw FHS segment, empty when absent */
    struct mg_str fts;  /* raw FTS segment, empty when absent */
    size_t nbatch;      /* BHS segments seen */
    struct mg_str *msg; /* in the arena */
    size_t nmsg;
};

/* True when in (after a BOM and blank lines) starts with FHS or BHS. */
bool mg_hl7v2_is_batch(struct mg_str in);

/* Splits a batch (or a plain run of messages) into messages and checks
 * the counts the trailers carry: BTS-1 = messages since its BHS, FTS-1 =
 * BHS segments in the file. An empty batch is legal. Delimiters are read
 * from FHS or BHS; envelope segments out of order (BHS after messages
 * without BTS is allowed, a second FHS is not) are errors. Inside a
 * message, a line that does not start a segment is data, as
 * mg_hl7v2_parse() reads it (a CR inside a value).
 * MG_OK; MG_EPARSE with *diag: wrong count (code 100, at BTS-1 / FTS-1
 * with seq = occurrence), anything before the first header or message
 * (100), a bad count value (102). MG_ENOMEM. in is borrowed. */
MG_MUST_CHECK int mg_hl7v2_batch_split(struct mg_str in,
                                       struct mg_arena *arena,
                                       struct mg_hl7v2_batch *out,
                                       struct mg_diag *diag);

/* ---- Acknowledgements (ack.c) ---------------------------------------- */

/* HL7 v2 chapter 2: original mode answers with one application ACK
 * (AA/AE/AR); enhanced mode (MSH-15 or MSH-16 valued) with an accept ACK
 * (CA/CE/CR) per MSH-15 and, later, an application ACK per MSH-16. */
enum mg_hl7v2_ack_mode {
    MG_HL7V2_ACK_ORIGINAL,
    MG_HL7V2_ACK_ENHANCED,
};

/* MSA-1 codes (table 0008). */
enum mg_hl7v2_ack_code {
    MG_HL7V2_AA, /* application accept */
    MG_HL7V2_AE, /* application error: fix and resend */
    MG_HL7V2_AR, /* application reject: MSH-9/11/12 or our problem */
    MG_HL7V2_CA, /* commit accept: stored, do not resend */
    MG_HL7V2_CE, /* commit error */
    MG_HL7V2_CR, /* commit reject */
};

/* Enhanced when MSH-15 or MSH-16 is valued (not empty, not ""), else
 * original. */
enum mg_hl7v2_ack_mode mg_hl7v2_ack_mode(const struct mg_hl7v2_msh *msh);

/* Whether the sender of msh gets an answer now for an outcome (ok: stored
 * and mapped; else refused), and in which codes (*as): original mode's
 * AA/AE/AR, or enhanced mode's accept ACK CA/CE/CR when MSH-15 wants one.
 * MSH-15 and MSH-16 are read by table 0155: AL always, NE never, ER only
 * when ok is false, SU only when ok is true; a value it does not know
 * means AL. Enhanced mode without an accept ACK wanted (MSH-15 NE, or ER
 * on success) is answered with the application ACK, AA/AE/AR, when MSH-16
 * is valued and wants one: the answer comes after processing. When it
 * returns false, *as is the message's mode (the codes an outcome is
 * recorded in). */
bool mg_hl7v2_answer(const struct mg_hl7v2_msh *msh, bool ok,
                     enum mg_hl7v2_ack_mode *as);

/* True when MSH-9.1 is "ACK": never acknowledge an acknowledgement. */
bool mg_hl7v2_is_ack(const struct mg_hl7v2_msh *msh);

/* The reject/error code for a failed parse or check in the given mode:
 * AR/CR for 200 - 203 (the sender's type, processing id or version) and
 * for an unreadable MSH: missing (100 at MSH), MSH-2 missing or malformed
 * (101/102 at MSH-2), MSH-9, MSH-10, MSH-11 or MSH-12 empty (101 there),
 * i.e. whatever mg_hl7v2_check() refuses (HL7 v2.5 section 2.9.2.1);
 * AE/CE for everything else. */
enum mg_hl7v2_ack_code mg_hl7v2_ack_code_for(const struct mg_diag *diag,
                                             enum mg_hl7v2_ack_mode mode);

/* What to say in an ACK. Everything is borrowed. */
struct mg_hl7v2_ack {
    enum mg_hl7v2_ack_code code; /* MSA-1 */
    struct mg_str control_id;    /* the ACK's own, new MSH-10 (required) */
    struct mg_str timestamp;     /* MSH-7, e.g. from mg_clock_hl7_now() */
    /* One ERR segment per entry (ERR-2 location, ERR-3 code, ERR-7 text);
     * entries with code 0 and no segment are skipped. */
    const struct mg_diag *err;
    size_t nerr;
    char severity;          /* ERR-4 (table 0516 E, W, I); 0: E unless AA/CA
                               (then W) */
    struct mg_str user_text; /* ERR-8; empty: the diag text */
};

/* Appends an acknowledgement of the message whose MSH is *in to out, with
 * CR after each segment and no MLLP framing (see mg_mllp_encode()).
 *   MSH: the inbound MSH-1/MSH-2 (standard ones if they were malformed),
 *        MSH-3/4 <-> MSH-5/6 swapped, MSH-7 = timestamp, MSH-9 =
 *        ACK^<MSH-9.2>^ACK (ACK^^ACK without a trigger; for peers before
 *        v2.3.1, which have no MSH-9.3, ACK^<MSH-9.2> or ACK),
 *        MSH-10 = ack->control_id, MSH-11, MSH-12 (MSH-12.1 without
 *        surrounding spaces) and MSH-18 echoed (MSH-11 "P" and MSH-12
 *        "2.5.1" when empty).
 *   MSA: MSA-1 code, MSA-2 = inbound MSH-10, and for v2.3/2.3.1 peers
 *        MSA-3 = the first diag text.
 *   ERR: v2.5 layout, ERR-2 = SEG^seq^field^rep^comp^sub, ERR-3 =
 *        code^text^HL70357, ERR-4 severity, ERR-7 diag text, ERR-8 user
 *        text; before v2.5 also ERR-1 = SEG^seq^field^code&text&HL70357.
 * Inbound fields are copied raw (they are already escaped for the same
 * delimiters); our texts are escaped, and non-ASCII bytes in them become
 * '?' unless MSH-18 is UTF-8, so the ACK stays in the sender's charset.
 * Works from a partial MSH (mg_hl7v2_msh_peek()). MG_OK, MG_EINVAL (no
 * control id), MG_ETOOBIG (out's maximum), MG_ENOMEM. On error out may
 * hold a partial ACK: reset it. */
MG_MUST_CHECK int mg_hl7v2_ack_build(const struct mg_hl7v2_msh *in,
                                     const struct mg_hl7v2_ack *ack,
                                     struct mg_buf *out);

/* "AA" .. "CR". */
const char *mg_hl7v2_ack_code_str(enum mg_hl7v2_ack_code code);

/* Table 0357 text for a code ("Application internal error"), or NULL. */
const char *mg_hl7v2_err_text(int code);

#endif
