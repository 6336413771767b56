/* libFuzzer target for the HL7 v2 codec. Besides "no crash, no sanitizer
 * report", it checks the codec's promises:
 *  - a parsed message serialises to bytes that parse again and serialise
 *    to the same bytes (the round trip is a fixed point);
 *  - every value of every segment can be read;
 *  - an ACK can be built from whatever MSH could be peeked, and parses;
 *  - batches split without overrunning. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/error.h"
#include "hl7v2/hl7v2.h"

/* Reads every leaf of every segment (bounded, to keep runs fast). */
static void
read_everything(const struct mg_hl7v2_msg *m)
{
    struct mg_hl7v2_val v;

    for (size_t i = 0; i < m->nseg && i < 64; i++) {
        const struct mg_hl7v2_seg *s = &m->seg[i];

        for (int f = 1; f < s->nfield && f < 64; f++) {
            int reps = mg_hl7v2_rep_count(m, s, f);

            for (int r = 1; r <= reps && r <= 8; r++) {
                int comps = mg_hl7v2_comp_count(m, s, f, r);

                for (int c = 1; c <= comps && c <= 8; c++) {
                    CHECK(mg_hl7v2_seg_get(m, s, f, r, c, 1, &v) == MG_OK);
                    CHECK(v.presence == MG_HL7V2_VALUED || v.str.len == 0);
                    CHECK(mg_hl7v2_seg_get(m, s, f, r, c, 2, &v) == MG_OK);
                }
            }
        }
    }
}

static void
check_round_trip(const struct mg_hl7v2_msg *m,
                 const struct mg_hl7v2_parse_opts *opts, struct mg_arena *a)
{
    struct mg_buf once, twice;
    struct mg_hl7v2_msg *again = NULL;
    struct mg_diag d;

    mg_buf_init(&once, 0);
    mg_buf_init(&twice, 0);
    if (mg_hl7v2_serialize(m, &once) == MG_OK) {
        /* Same options: a defaulted charset must be defaulted again. */
        CHECK(mg_hl7v2_parse(mg_buf_str(&once), opts, a, &again, &d) ==
              MG_OK);
        CHECK(again->nseg == m->nseg);
        CHECK(mg_hl7v2_serialize(again, &twice) == MG_OK);
        CHECK(once.len == twice.len &&
              memcmp(once.ptr, twice.ptr, once.len) == 0);
    }
    mg_buf_dispose(&twice);
    mg_buf_dispose(&once);
}

static void
check_ack(struct mg_str in)
{
    struct mg_hl7v2_msh msh;
    struct mg_diag d;
    struct mg_buf b;
    struct mg_arena a;
    struct mg_hl7v2_msg *ack;
    struct mg_hl7v2_ack o = {.control_id = MG_STR("FUZZ1"),
                             .err = &d,
                             .nerr = 1};
    int rc = mg_hl7v2_check(in, &msh, &d);

    if (rc == MG_OK)
        return; /* nothing to report; the parse path covers the rest */
    o.code = mg_hl7v2_ack_code_for(&d, mg_hl7v2_ack_mode(&msh));
    mg_buf_init(&b, 1 << 20);
    mg_arena_init(&a, 4096, 0);
    if (mg_hl7v2_ack_build(&msh, &o, &b) == MG_OK && msh.delims_ok &&
        mg_hl7v2_is_ack(&msh) == false) {
        /* Our ACK of a readable MSH is a message we can read back. */
        struct mg_diag d2;

        rc = mg_hl7v2_parse(mg_buf_str(&b), NULL, &a, &ack, &d2);
        (void)rc; /* echoed fields may be invalid (e.g. MSH-12) */
    }
    mg_arena_dispose(&a);
    mg_buf_dispose(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mg_str in = {(const char *)data, size};
    struct mg_hl7v2_parse_opts opts = {.default_charset = "8859/1"};
    struct mg_arena a;
    struct mg_hl7v2_msg *m = NULL;
    struct mg_hl7v2_batch batch;
    struct mg_diag d;
    struct mg_str out;
    static const struct mg_hl7v2_delims std = {'|', '^', '~', '\\', '&', 0};

    mg_arena_init(&a, 16384, 0);
    const struct mg_hl7v2_parse_opts *o = size & 1 ? &opts : NULL;

    if (mg_hl7v2_parse(in, o, &a, &m, &d) == MG_OK) {
        read_everything(m);
        check_round_trip(m, o, &a);
        (void)mg_hl7v2_getz(m, "PID-3[2].4.2");
    }
    check_ack(in);
    if (mg_hl7v2_batch_split(in, &a, &batch, &d) == MG_OK) {
        for (size_t i = 0; i < batch.nmsg; i++)
            CHECK(batch.msg[i].ptr >= in.ptr &&
                  batch.msg[i].ptr + batch.msg[i].len <= in.ptr + in.len);
    }
    CHECK(mg_hl7v2_unescape(in, &std, MG_HL7V2_CS_LATIN1, &a, &out) == MG_OK);
    CHECK(out.len <= 3 * in.len); /* U+FFFD for each bad byte */
    mg_arena_dispose(&a);
    return 0;
}
