/* libFuzzer target for the HTTP/1.1 request codec (src/http/parser.c), the
 * first code every byte from the network meets on the HTTP port. Besides
 * "no crash, no sanitizer report", it checks the codec's promises:
 *  - every request it returns is well-formed: a method, a path inside the
 *    target, headers and body within the limits;
 *  - an error comes with a status the server can answer and a reason;
 *  - the outcome does not depend on how the bytes arrive: the same input
 *    fed whole and fed in small pieces (as TCP may deliver it) gives the
 *    same requests, and an error at the same request. A difference is a
 *    desync, the stuff of request smuggling. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "core/buf.h"
#include "core/error.h"
#include "http/http.h"

/* Small limits, so that inputs of a few kB reach every one of them. */
static const struct mg_http_limits limits = {
    .max_header_bytes = 2048,
    .max_body_bytes = 4096,
    .max_url_bytes = 512,
    .max_headers = 16,
};

static void
check_request(const struct mg_http_msg *m, struct mg_buf *trace)
{
    size_t head = m->target.len;

    CHECK(m->method.len > 0);
    CHECK(m->target.len <= limits.max_url_bytes);
    CHECK(m->path.len <= m->target.len);
    CHECK(m->query.len <= m->target.len);
    CHECK(m->body.len <= limits.max_body_bytes);
    CHECK(m->nheaders <= limits.max_headers);
    for (size_t i = 0; i < m->nheaders; i++) {
        CHECK(m->headers[i].name.len > 0);
        head += m->headers[i].name.len + m->headers[i].value.len;
    }
    CHECK(head <= limits.max_header_bytes);
    (void)mg_http_msg_header(m, "content-length");
    CHECK(mg_buf_appendf(trace, "%.*s %.*s %d.%d h%zu b%zu k%d|",
                         (int)m->method.len, m->method.ptr,
                         (int)m->target.len, m->target.ptr, m->version_major,
                         m->version_minor, m->nheaders, m->body.len,
                         (int)m->keep_alive) == MG_OK);
    CHECK(mg_buf_append(trace, m->body.ptr, m->body.len) == MG_OK);
}

/* Feeds data in pieces of at most step bytes (0: all at once), taking
 * every pipelined request, and writes what came out to trace. */
static void
run(const uint8_t *data, size_t size, size_t step, struct mg_buf *trace)
{
    struct mg_http_parser *p;
    const struct mg_http_msg *m;
    size_t off = 0, end, used;
    int rc;

    if (mg_http_parser_new(&limits, &p) != MG_OK)
        return;
    end = step == 0 || step > size ? size : step;
    for (;;) {
        m = NULL;
        used = 0;
        rc = mg_http_parser_feed(p, (const char *)data + off, end - off, &used,
                                 &m);
        CHECK(used <= end - off);
        off += used;
        if (rc == MG_OK) {
            CHECK(m != NULL && used > 0);
            check_request(m, trace);
            continue;
        }
        if (rc == MG_AGAIN) {
            CHECK(off == end);
            if (end == size)
                break;
            end = end + step > size ? size : end + step;
            continue;
        }
        CHECK(rc == MG_EPARSE || rc == MG_ETOOBIG || rc == MG_ENOMEM);
        if (rc == MG_ENOMEM)
            break;
        CHECK(mg_http_parser_error_status(p) >= 400);
        CHECK(mg_http_parser_error_text(p)[0] != '\0');
        /* dead: the same error again */
        CHECK(mg_http_parser_feed(p, "x", 1, &used, &m) == rc);
        /* Which error wins may depend on the pieces (a limit crossed by
         * the first bytes of a header name that turns out malformed
         * later), so only that there was one is compared. */
        CHECK(mg_buf_appendz(trace, "error") == MG_OK);
        break;
    }
    mg_http_parser_free(p);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mg_buf whole, pieces;
    size_t step;

    if (size < 1)
        return 0;
    step = 1 + data[0] % 7; /* pieces of 1 to 7 bytes */
    data++;
    size--;
    mg_buf_init(&whole, 0);
    mg_buf_init(&pieces, 0);
    run(data, size, 0, &whole);
    run(data, size, step, &pieces);
    if (whole.len != pieces.len ||
        (whole.len > 0 && memcmp(whole.ptr, pieces.ptr, whole.len) != 0)) {
        fprintf(stderr, "fed whole:\n%.*s\nfed in pieces of %zu:\n%.*s\n",
                (int)whole.len, whole.ptr ? whole.ptr : "", step,
                (int)pieces.len, pieces.ptr ? pieces.ptr : "");
        __builtin_trap();
    }
    mg_buf_dispose(&whole);
    mg_buf_dispose(&pieces);
    return 0;
}
