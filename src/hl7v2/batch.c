/* Batches: [FHS] {[BHS] {MSH...} [BTS]} [FTS] (HL7 v2 chapter 2.10.3).
 * The file is cut into message slices without parsing the messages, and
 * the trailers' counts (BTS-1 messages, FTS-1 batches) are checked, so a
 * truncated transfer is caught before anything is stored. */
#include <string.h>

#include "core/error.h"
#include "hl7v2/hl7v2_int.h"

struct splitter {
    struct mg_hl7v2_batch *out;
    struct mg_diag *diag;
    char fs;               /* the file's field separator */
    char msg_fs;           /* the open message's (MSH-1) */
    const char *msg_start; /* current message, NULL when none is open */
    size_t in_batch;       /* messages since the last BHS */
    int nbts;              /* BTS segments seen */
    bool fts_seen;
};


bool
mg_hl7v2_is_batch(struct mg_str in)
{
    if (in.ptr == NULL)
        return false;
    in = mg__hl7v2_skip_preamble(in, NULL);
    return in.len >= 3 && (memcmp(in.ptr, "FHS", 3) == 0 ||
                           memcmp(in.ptr, "BHS", 3) == 0);
}

static void
close_message(struct splitter *sp, const char *end)
{
    if (sp->msg_start == NULL)
        return;
    sp->out->msg[sp->out->nmsg++] =
        mg_str_n(sp->msg_start, (size_t)(end - sp->msg_start));
    sp->msg_start = NULL;
}

/* Compares a trailer's count (field 1 of seg) with what was seen. */
static int
check_count(struct splitter *sp, struct mg_str seg, const char *id, int seq,
            size_t seen)
{
    struct mg_str f = mg_str_trim(mg__hl7v2_piece(seg, sp->fs, 2));
    unsigned long long n;

    if (f.len == 0)
        return MG_OK; /* optional */
    if (!mg_str_to_u64(f, &n)) {
        mg__hl7v2_diag(sp->diag, MG_HL7_ERR_DATA_TYPE, id, seq, 1, 0,
                       "%s-1 is not a number", id);
        return MG_EPARSE;
    }
    if (n != seen) {
        mg__hl7v2_diag(sp->diag, MG_HL7_ERR_SEGMENT_SEQUENCE, id, seq, 1, 0,
                       "%s-1 says %llu, found %zu", id, n, seen);
        return MG_EPARSE;
    }
    return MG_OK;
}

static int
out_of_place(struct splitter *sp, const char *id, int seq)
{
    mg__hl7v2_diag(sp->diag, MG_HL7_ERR_SEGMENT_SEQUENCE, id, seq, 0, 0,
                   "%s segment out of place in batch", id[0] ? id : "a");
    return MG_EPARSE;
}

/* Whether a line inside an open message starts a segment, by the rule of
 * mg_hl7v2_parse(): a segment id, then the end of the line or a field
 * separator (the message's or the file's; a header brings its own). Any
 * other line is data of the field before it: a CR that slipped into a
 * value, e.g. into the base64 of an embedded PDF. */
static bool
starts_segment(const struct splitter *sp, struct mg_str line, const char *id)
{
    char c;

    if (id[0] == '\0')
        return false;
    if (line.len == 3)
        return true;
    c = line.ptr[3];
    if (mg__hl7v2_is_header_id(id))
        return !(c >= 'A' && c <= 'Z') && !(c >= '0' && c <= '9');
    return c == sp->fs || c == sp->msg_fs;
}

/* One line of the file, seg being its bytes and index its position. */
static int
take_segment(struct splitter *sp, struct mg_str seg, size_t index)
{
    char id[4] = "";

    if (seg.len >= 3 && mg__hl7v2_is_seg_id(seg.ptr, 3))
        memcpy(id, seg.ptr, 3);
    if (sp->msg_start != NULL && !starts_segment(sp, seg, id))
        return MG_OK; /* stays in the message slice */
    if (sp->fts_seen || id[0] == '\0')
        return out_of_place(sp, id, (int)index + 1);
    if (strcmp(id, "FHS") == 0) {
        if (index != 0)
            return out_of_place(sp, id, 2);
        sp->out->fhs = seg;
    } else if (strcmp(id, "BHS") == 0) {
        close_message(sp, seg.ptr);
        sp->out->nbatch++;
        sp->in_batch = 0;
    } else if (strcmp(id, "MSH") == 0) {
        close_message(sp, seg.ptr);
        sp->msg_start = seg.ptr;
        sp->msg_fs = seg.len > 3 ? seg.ptr[3] : sp->fs;
        sp->in_batch++;
    } else if (strcmp(id, "BTS") == 0) {
        close_message(sp, seg.ptr);
        return check_count(sp, seg, id, ++sp->nbts, sp->in_batch);
    } else if (strcmp(id, "FTS") == 0) {
        close_message(sp, seg.ptr);
        sp->fts_seen = true;
        sp->out->fts = seg;
        /* Without BHS the file is one implicit batch. */
        return check_count(sp, seg, id, 1,
                           sp->out->nbatch ? sp->out->nbatch
                                           : (sp->out->nmsg > 0));
    } else if (sp->msg_start == NULL) {
        return out_of_place(sp, id, 1);
    }
    return MG_OK;
}

int
mg_hl7v2_batch_split(struct mg_str in, struct mg_arena *arena,
                     struct mg_hl7v2_batch *out, struct mg_diag *diag)
{
    struct splitter sp = {out, diag, '|', '|', NULL, 0, 0, false};
    const char *p, *end, *q;
    char term;
    size_t cap = 1, index = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    if (in.ptr == NULL)
        in.ptr = "";
    in = mg__hl7v2_skip_preamble(in, NULL);
    if (in.len >= 4)
        sp.fs = in.ptr[3];
    term = memchr(in.ptr, '\r', in.len) ? '\r' : '\n';
    for (p = in.ptr, end = in.ptr + in.len;
         (q = memchr(p, term, (size_t)(end - p))) != NULL; p = q + 1)
        cap++;
    out->msg = mg_arena_alloc(arena, cap * sizeof(*out->msg));
    if (out->msg == NULL) {
        mg__hl7v2_diag(diag, MG_HL7_ERR_INTERNAL, "", 0, 0, 0,
                       "out of memory");
        return MG_ENOMEM;
    }
    for (p = in.ptr; p < end; p = q + (q < end)) {
        if (term == '\r' && *p == '\n')
            q = p; /* second half of CRLF */
        else if ((q = memchr(p, term, (size_t)(end - p))) == NULL)
            q = end;
        if (q == p)
            continue;
        rc = take_segment(&sp, mg_str_n(p, (size_t)(q - p)), index++);
        if (rc != MG_OK)
            return rc;
    }
    close_message(&sp, end);
    return MG_OK;
}
