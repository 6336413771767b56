/* Unit tests for the MLLP framing codec: every split point of a stream of
 * frames, junk before SB, a missing CR, oversize frames followed by good
 * ones, restarts, allocation failure, and encode/decode round trips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/error.h"
#include "mllp/mllp.h"

#define MAX_FRAMES 8

/* What came out of a decoder: frames (copied), oversize heads, errors. */
struct sink {
    char frame[MAX_FRAMES][256];
    size_t len[MAX_FRAMES];
    int rc[MAX_FRAMES];
    int n;
};

/* Feeds one chunk the way a read callback would, collecting results. */
static void
feed(struct mg_mllp_decoder *d, const char *p, size_t n, struct sink *s)
{
    struct mg_str frame;
    size_t used;
    int rc;

    while (n > 0) {
        rc = mg_mllp_decoder_feed(d, p, n, &used, &frame);
        assert_true(used <= n);
        p += used;
        n -= used;
        if (rc == MG_AGAIN) {
            assert_int_equal(n, 0);
            break;
        }
        assert_true(s->n < MAX_FRAMES);
        assert_true(frame.len < sizeof(s->frame[0]));
        memcpy(s->frame[s->n], frame.ptr, frame.len);
        s->len[s->n] = frame.len;
        s->rc[s->n] = rc;
        s->n++;
    }
}

static void
assert_frame(const struct sink *s, int i, int rc, const char *want)
{
    assert_true(i < s->n);
    assert_int_equal(s->rc[i], rc);
    assert_int_equal(s->len[i], strlen(want));
    assert_memory_equal(s->frame[i], want, s->len[i]);
}

/* "\x0b" stands alone so the hex escape cannot swallow the next char. */
static const char three[] = "\x0b" "MSH|^~\\&|A|B\rPID|1\r" "\x1c\r"
                            "\x0b" "MSH|^~\\&|C\r" "\x1c\r"
                            "\x0b" "" "\x1c\r";

static void
check_three(const struct sink *s)
{
    assert_int_equal(s->n, 3);
    assert_frame(s, 0, MG_OK, "MSH|^~\\&|A|B\rPID|1\r");
    assert_frame(s, 1, MG_OK, "MSH|^~\\&|C\r");
    assert_frame(s, 2, MG_OK, "");
}

static void
test_decoder_every_split_point(void **state)
{
    size_t n = sizeof(three) - 1;
    long live = mg_alloc_live();

    (void)state;
    for (size_t cut = 0; cut <= n; cut++) {
        struct mg_mllp_decoder d;
        struct sink s = {0};

        mg_mllp_decoder_init(&d, 64);
        feed(&d, three, cut, &s);
        feed(&d, three + cut, n - cut, &s);
        check_three(&s);
        assert_int_equal(d.stats.frames, 3);
        assert_int_equal(d.stats.junk, 0);
        assert_int_equal(d.stats.missing_cr, 0);
        assert_false(mg_mllp_decoder_in_frame(&d));
        mg_mllp_decoder_dispose(&d);
    }
    assert_int_equal(mg_alloc_live(), live);
}

/* Every pair of cut points, and one byte at a time. */
static void
test_decoder_every_two_split_points(void **state)
{
    size_t n = sizeof(three) - 1;

    (void)state;
    for (size_t c1 = 0; c1 <= n; c1++) {
        for (size_t c2 = c1; c2 <= n; c2++) {
            struct mg_mllp_decoder d;
            struct sink s = {0};

            mg_mllp_decoder_init(&d, 64);
            feed(&d, three, c1, &s);
            feed(&d, three + c1, c2 - c1, &s);
            feed(&d, three + c2, n - c2, &s);
            check_three(&s);
            mg_mllp_decoder_dispose(&d);
        }
    }
    {
        struct mg_mllp_decoder d;
        struct sink s = {0};

        bool inside = false;

        mg_mllp_decoder_init(&d, 64);
        for (size_t i = 0; i < n; i++) {
            feed(&d, three + i, 1, &s);
            /* In a frame exactly from its SB up to its EB. */
            if (three[i] == MG_MLLP_SB || three[i] == MG_MLLP_EB)
                inside = three[i] == MG_MLLP_SB;
            assert_int_equal(mg_mllp_decoder_in_frame(&d), inside);
        }
        check_three(&s);
        mg_mllp_decoder_dispose(&d);
    }
}

/* A frame in one chunk is handed out without a copy. */
static void
test_decoder_zero_copy_within_chunk(void **state)
{
    struct mg_mllp_decoder d;
    struct mg_str frame;
    size_t used;

    (void)state;
    mg_mllp_decoder_init(&d, 64);
    assert_int_equal(mg_mllp_decoder_feed(&d, three, sizeof(three) - 1,
                                          &used, &frame),
                     MG_OK);
    assert_ptr_equal(frame.ptr, three + 1);
    assert_int_equal(used, 1 + frame.len + 2);
    assert_null(d.buf.ptr); /* nothing was buffered */
    mg_mllp_decoder_dispose(&d);
}

/* A big frame that had to be buffered (it came in pieces) gives its
 * storage back once the next read comes; a small one's is kept. */
static void
test_decoder_frees_a_big_frames_buffer(void **state)
{
    static const char small[] = "\x0bMSH|^~\\&|A\x1c\r";
    size_t n = 1 << 20, used, at = 0;
    char *big = malloc(n + 3);
    struct mg_mllp_decoder d;
    struct mg_str frame;

    (void)state;
    assert_non_null(big);
    big[0] = MG_MLLP_SB;
    memset(big + 1, 'x', n);
    big[n + 1] = MG_MLLP_EB;
    big[n + 2] = MG_MLLP_CR;
    mg_mllp_decoder_init(&d, 0);
    /* in 64 kB reads, as a socket gives it */
    frame.len = 0;
    while (frame.len == 0) {
        size_t chunk = n + 3 - at < 65536 ? n + 3 - at : 65536;
        assert_int_equal(mg_mllp_decoder_feed(&d, big + at, chunk, &used,
                                              &frame),
                         at + chunk == n + 3 ? MG_OK : MG_AGAIN);
        at += used;
    }
    assert_int_equal(frame.len, n);
    assert_true(d.buf.cap >= n);
    assert_int_equal(mg_mllp_decoder_feed(&d, small, 2, &used, &frame),
                     MG_AGAIN);
    assert_true(d.buf.cap <= MG_MLLP_KEEP_BYTES);
    mg_mllp_decoder_dispose(&d);
    free(big);
}

static void
test_decoder_junk_before_start_block(void **state)
{
    static const char wire[] = "junk\r\n" "\x0b" "A" "\x1c\r" "\n\n"
                               "\x0b" "B" "\x1c\r";
    size_t n = sizeof(wire) - 1;

    (void)state;
    for (size_t cut = 0; cut <= n; cut++) {
        struct mg_mllp_decoder d;
        struct sink s = {0};

        mg_mllp_decoder_init(&d, 64);
        feed(&d, wire, cut, &s);
        feed(&d, wire + cut, n - cut, &s);
        assert_int_equal(s.n, 2);
        assert_frame(&s, 0, MG_OK, "A");
        assert_frame(&s, 1, MG_OK, "B");
        assert_int_equal(d.stats.junk, 8);
        mg_mllp_decoder_dispose(&d);
    }
}

static void
test_decoder_missing_cr(void **state)
{
    static const char wire[] = "\x0b" "A" "\x1c" "\x0b" "B" "\x1c\r"
                               "\x0b" "C" "\x1c";
    size_t n = sizeof(wire) - 1;

    (void)state;
    for (size_t cut = 0; cut <= n; cut++) {
        struct mg_mllp_decoder d;
        struct sink s = {0};

        mg_mllp_decoder_init(&d, 64);
        feed(&d, wire, cut, &s);
        feed(&d, wire + cut, n - cut, &s);
        /* C is delivered at its EB: a sender that omits the CR and waits
         * for the ACK must get it. */
        assert_int_equal(s.n, 3);
        assert_frame(&s, 0, MG_OK, "A");
        assert_frame(&s, 1, MG_OK, "B");
        assert_frame(&s, 2, MG_OK, "C");
        assert_int_equal(d.stats.missing_cr, 1);
        assert_int_equal(d.stats.junk, 0);
        mg_mllp_decoder_dispose(&d);
    }
}

/* An oversize frame is reported once with its head, then a good frame
 * comes through, at every split point. */
static void
test_decoder_oversize_then_good(void **state)
{
    static const char wire[] = "\x0b" "MSH|^~\\&|BIG|0123456789abcdefghij"
                               "\x1c\r" "\x0b" "MSH|ok" "\x1c\r";
    size_t n = sizeof(wire) - 1;
    long live = mg_alloc_live();

    (void)state;
    for (size_t cut = 0; cut <= n; cut++) {
        struct mg_mllp_decoder d;
        struct sink s = {0};

        mg_mllp_decoder_init(&d, 16);
        feed(&d, wire, cut, &s);
        feed(&d, wire + cut, n - cut, &s);
        assert_int_equal(s.n, 2);
        assert_frame(&s, 0, MG_ETOOBIG, "MSH|^~\\&|BIG|012");
        assert_frame(&s, 1, MG_OK, "MSH|ok");
        assert_int_equal(d.stats.oversize, 1);
        assert_int_equal(d.stats.frames, 1);
        assert_int_equal(d.stats.discarded, 33 - 16);
        mg_mllp_decoder_dispose(&d);
    }
    assert_int_equal(mg_alloc_live(), live);
}

/* A frame of exactly max_frame bytes is fine, split or not. */
static void
test_decoder_exact_max(void **state)
{
    static const char wire[] = "\x0b" "0123456789abcdef" "\x1c\r";
    size_t n = sizeof(wire) - 1;

    (void)state;
    for (size_t cut = 0; cut <= n; cut++) {
        struct mg_mllp_decoder d;
        struct sink s = {0};

        mg_mllp_decoder_init(&d, 16);
        feed(&d, wire, cut, &s);
        feed(&d, wire + cut, n - cut, &s);
        assert_int_equal(s.n, 1);
        assert_frame(&s, 0, MG_OK, "0123456789abcdef");
        mg_mllp_decoder_dispose(&d);
    }
}

/* SB inside a frame: the sender restarted; the partial frame is dropped. */
static void
test_decoder_restart(void **state)
{
    static const char wire[] = "\x0b" "half" "\x0b" "whole" "\x1c\r";
    size_t n = sizeof(wire) - 1;

    (void)state;
    for (size_t cut = 0; cut <= n; cut++) {
        struct mg_mllp_decoder d;
        struct sink s = {0};

        mg_mllp_decoder_init(&d, 64);
        feed(&d, wire, cut, &s);
        feed(&d, wire + cut, n - cut, &s);
        assert_int_equal(s.n, 1);
        assert_frame(&s, 0, MG_OK, "whole");
        assert_int_equal(d.stats.restarts, 1);
        assert_int_equal(d.stats.discarded, 4);
        mg_mllp_decoder_dispose(&d);
    }
}

/* Out of memory while buffering a split frame: that frame fails, the
 * decoder resynchronises on the next one. */
static void
test_decoder_out_of_memory(void **state)
{
    static const char wire[] = "\x0b" "first" "\x1c\r" "\x0b" "next" "\x1c\r";
    struct mg_mllp_decoder d;
    struct mg_str frame;
    size_t used;

    (void)state;
    mg_mllp_decoder_init(&d, 64);
    mg_alloc_fail_after(1);
    assert_int_equal(mg_mllp_decoder_feed(&d, wire, 3, &used, &frame),
                     MG_ENOMEM);
    mg_alloc_fail_after(0);
    assert_int_equal(used, 3);
    assert_int_equal(mg_mllp_decoder_feed(&d, wire + 3, sizeof(wire) - 4,
                                          &used, &frame),
                     MG_OK);
    assert_int_equal(frame.len, 4);
    assert_memory_equal(frame.ptr, "next", 4);
    mg_mllp_decoder_dispose(&d);
}

static void
test_encode_decode_round_trip(void **state)
{
    static const char *payloads[] = {
        "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1\r",
        "",
        "\x06", /* MLLP release 2 commit acknowledgement */
        "caf\xC3\xA9\r\n",
    };
    struct mg_buf b;

    (void)state;
    mg_buf_init(&b, 0);
    for (size_t i = 0; i < MG_ARRAY_LEN(payloads); i++) {
        struct mg_mllp_decoder d;
        struct mg_str p = mg_str_from(payloads[i]), frame;
        size_t used;

        assert_int_equal(mg_mllp_encode(&b, p), MG_OK);
        mg_mllp_decoder_init(&d, 0);
        assert_int_equal(mg_mllp_decoder_feed(&d, b.ptr, b.len, &used,
                                              &frame),
                         MG_OK);
        assert_int_equal(used, b.len);
        assert_int_equal(frame.len, p.len);
        assert_memory_equal(frame.ptr, p.ptr, p.len);
        mg_mllp_decoder_dispose(&d);

        assert_int_equal(mg_mllp_decode(b.ptr, b.len, 1024, &frame, &used),
                         MG_OK);
        assert_int_equal(used, b.len);
        assert_int_equal(frame.len, p.len);
        mg_buf_reset(&b);
    }
    assert_int_equal(mg_mllp_encode(&b, MG_STR("a\x0b" "b")), MG_EINVAL);
    assert_int_equal(mg_mllp_encode(&b, MG_STR("a\x1c" "b")), MG_EINVAL);
    assert_int_equal(b.len, 0);
    mg_buf_dispose(&b);

    mg_buf_init(&b, 4);
    assert_int_equal(mg_mllp_encode(&b, MG_STR("abc")), MG_ETOOBIG);
    assert_int_equal(b.len, 0);
    mg_buf_dispose(&b);
}

/* The stateless decoder (STYLE.md section 9). */
static void
test_decode_stateless(void **state)
{
    static const char wire[] = "\x0b" "MSH|^~\\&|A|B\r" "\x1c\r";
    size_t n = sizeof(wire) - 1, consumed;
    struct mg_str frame;

    (void)state;
    for (size_t cut = 0; cut < n; cut++)
        assert_int_equal(mg_mllp_decode(wire, cut, 64, &frame, &consumed),
                         MG_AGAIN);
    assert_int_equal(mg_mllp_decode(wire, n, 64, &frame, &consumed), MG_OK);
    assert_int_equal(consumed, n);
    assert_int_equal(frame.len, n - 3);
    assert_int_equal(mg_mllp_decode("x", 1, 64, &frame, &consumed),
                     MG_EFRAME);
    assert_int_equal(mg_mllp_decode("\x0b" "ab" "\x1cX", 5, 64, &frame,
                                    &consumed),
                     MG_EFRAME);
    assert_int_equal(mg_mllp_decode(wire, n, 4, &frame, &consumed),
                     MG_ETOOBIG);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decoder_every_split_point),
        cmocka_unit_test(test_decoder_every_two_split_points),
        cmocka_unit_test(test_decoder_zero_copy_within_chunk),
        cmocka_unit_test(test_decoder_frees_a_big_frames_buffer),
        cmocka_unit_test(test_decoder_junk_before_start_block),
        cmocka_unit_test(test_decoder_missing_cr),
        cmocka_unit_test(test_decoder_oversize_then_good),
        cmocka_unit_test(test_decoder_exact_max),
        cmocka_unit_test(test_decoder_restart),
        cmocka_unit_test(test_decoder_out_of_memory),
        cmocka_unit_test(test_encode_decode_round_trip),
        cmocka_unit_test(test_decode_stateless),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
