/* libFuzzer target for the MLLP decoder. The first byte picks a chunk
 * size; the rest is the wire. Whatever the chunking, the decoder must
 * give the same frames (results, lengths and bytes) as when fed the
 * whole input at once, and every frame must re-encode and decode to
 * itself. */
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "core/buf.h"
#include "core/error.h"
#include "mllp/mllp.h"

#define MAX_FRAME 4096

/* Records "rc len bytes" for every frame into log. */
static void
run(const char *p, size_t n, size_t chunk, struct mg_buf *log)
{
    struct mg_mllp_decoder d;
    struct mg_str frame;
    size_t used, take;
    int rc;

    mg_mllp_decoder_init(&d, MAX_FRAME);
    while (n > 0) {
        take = chunk < n ? chunk : n;
        const char *q = p;
        size_t left = take;

        while (left > 0) {
            rc = mg_mllp_decoder_feed(&d, q, left, &used, &frame);
            CHECK(used <= left);
            q += used;
            left -= used;
            if (rc == MG_AGAIN) {
                CHECK(left == 0);
                break;
            }
            CHECK(rc == MG_OK || rc == MG_ETOOBIG);
            CHECK(frame.len <= MAX_FRAME);
            CHECK(mg_buf_appendf(log, "%d %zu ", rc, frame.len) == MG_OK);
            CHECK(mg_buf_append_str(log, frame) == MG_OK);
        }
        p += take;
        n -= take;
    }
    mg_mllp_decoder_dispose(&d);
}

static void
check_encode(struct mg_str frame)
{
    struct mg_buf b;
    struct mg_str back;
    size_t used;

    mg_buf_init(&b, 0);
    if (mg_mllp_encode(&b, frame) == MG_OK) {
        CHECK(mg_mllp_decode(b.ptr, b.len, MAX_FRAME, &back, &used) == MG_OK);
        CHECK(used == b.len && back.len == frame.len);
        CHECK(frame.len == 0 || memcmp(back.ptr, frame.ptr, frame.len) == 0);
    }
    mg_buf_dispose(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mg_buf whole, split;
    struct mg_str frame;
    size_t chunk, consumed;

    if (size == 0)
        return 0;
    chunk = (size_t)data[0] + 1;
    data++;
    size--;
    mg_buf_init(&whole, 0);
    mg_buf_init(&split, 0);
    run((const char *)data, size, size ? size : 1, &whole);
    run((const char *)data, size, chunk, &split);
    CHECK(whole.len == split.len &&
          (whole.len == 0 || memcmp(whole.ptr, split.ptr, whole.len) == 0));
    mg_buf_dispose(&split);
    mg_buf_dispose(&whole);

    if (mg_mllp_decode((const char *)data, size, MAX_FRAME, &frame,
                       &consumed) == MG_OK) {
        CHECK(consumed <= size);
        check_encode(frame);
    }
    check_encode(mg_str_n((const char *)data, size < 512 ? size : 512));
    return 0;
}
