/* The HTTP/1.1 request codec: http-parser 2.9.4 tokenises, this file
 * collects one request at a time into bounded buffers and enforces our
 * limits. The parser pauses itself when a request is complete
 * (http_parser_pause), so the bytes of a pipelined next request are left
 * to the caller and parsed only when it is ready for them. */
#include <http_parser.h>
#include <limits.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "http/http.h"

#define DEFAULT_MAX_HEADER (16u * 1024)
#define DEFAULT_MAX_BODY (16u * 1024 * 1024)
#define DEFAULT_MAX_URL (8u * 1024)
#define DEFAULT_MAX_HEADERS 100u
/* Storage above this is given back between requests, so that an idle
 * keep-alive connection does not hold a big request's memory. */
#define KEEP_STORAGE 4096u
/* The most body storage reserved from Content-Length alone. */
#define RESERVE_BODY (64u * 1024)
/* Bytes of the request line not stored: method, spaces, version, CRLF. */
#define REQUEST_LINE_OVERHEAD 16u

/* Where one header sits in head; offsets, since head may move. */
struct span {
    size_t name_off;
    size_t name_len;
    size_t value_off;
    size_t value_len;
};

struct mg_http_parser {
    http_parser hp;
    struct mg_http_limits lim;
    struct mg_buf head;            /* the target, then names and values */
    struct mg_buf body;            /* de-chunked body */
    struct span *spans;            /* nhdrs used, cap allocated */
    struct mg_http_header *hdrs;   /* views built at completion, cap */
    size_t nhdrs;
    size_t cap;
    size_t url_len;                /* bytes of the target in head */
    enum mg_http_phase phase;
    bool in_value;                 /* the last header callback was a value */
    bool done;                     /* msg was handed out: reset first */
    bool continue_pending;         /* Expect: 100-continue not yet taken */
    int err;                       /* sticky error code, 0 = none */
    int status;                    /* HTTP status for err */
    const char *err_text;          /* static reason for err */
    mg_http_head_check head_check; /* NULL: none */
    void *head_check_arg;
    struct mg_http_msg msg;
};

static int
fail(struct mg_http_parser *p, int err, int status, const char *text)
{
    p->err = err;
    p->status = status;
    p->err_text = text;
    return -1; /* any non-zero stops http-parser with HPE_CB_* */
}

static int
on_message_begin(http_parser *hp)
{
    struct mg_http_parser *p = hp->data;

    p->phase = MG_HTTP_PHASE_HEADERS;
    return 0;
}

/* The stored head plus what the request line and header lines add. */
static bool
head_too_big(const struct mg_http_parser *p, size_t more)
{
    size_t total = p->head.len + more + REQUEST_LINE_OVERHEAD + 4 * p->nhdrs;

    return total > p->lim.max_header_bytes;
}

static int
append_head(struct mg_http_parser *p, const char *at, size_t n)
{
    if (head_too_big(p, n))
        return fail(p, MG_ETOOBIG, 431, "request header section too large");
    if (mg_buf_append(&p->head, at, n) < 0)
        return fail(p, MG_ENOMEM, 500, "out of memory");
    return 0;
}

static int
on_url(http_parser *hp, const char *at, size_t n)
{
    struct mg_http_parser *p = hp->data;

    p->url_len += n;
    if (p->url_len > p->lim.max_url_bytes)
        return fail(p, MG_ETOOBIG, 414, "request target too long");
    return append_head(p, at, n);
}

static int
grow_headers(struct mg_http_parser *p)
{
    size_t cap = p->cap ? p->cap * 2 : 16;
    struct span *spans;
    struct mg_http_header *hdrs;

    if (cap > p->lim.max_headers)
        cap = p->lim.max_headers;
    spans = mg_realloc(p->spans, cap * sizeof(*spans));
    if (spans == NULL)
        return MG_ENOMEM;
    p->spans = spans;
    hdrs = mg_realloc(p->hdrs, cap * sizeof(*hdrs));
    if (hdrs == NULL)
        return MG_ENOMEM;
    p->hdrs = hdrs;
    p->cap = cap;
    return MG_OK;
}

static int
on_header_field(http_parser *hp, const char *at, size_t n)
{
    struct mg_http_parser *p = hp->data;
    struct span *s;

    /* RFC 7230 section 3.2.4: no blank between name and colon. http-parser
     * keeps it in the name, yet frames the body by "Content-Length " or
     * "Transfer-Encoding ", which a proxy in front may ignore (smuggling). */
    if (memchr(at, ' ', n) != NULL)
        return fail(p, MG_EPARSE, 400, "whitespace in a header field name");
    if (p->phase == MG_HTTP_PHASE_BODY)
        return 0; /* a chunked trailer: not kept */
    if (p->nhdrs == 0 || p->in_value) {
        if (p->nhdrs == p->lim.max_headers)
            return fail(p, MG_ETOOBIG, 431, "too many header fields");
        if (p->nhdrs == p->cap && grow_headers(p) < 0)
            return fail(p, MG_ENOMEM, 500, "out of memory");
        s = &p->spans[p->nhdrs++];
        s->name_off = p->head.len;
        s->name_len = 0;
        s->value_off = p->head.len;
        s->value_len = 0;
        p->in_value = false;
    }
    p->spans[p->nhdrs - 1].name_len += n;
    return append_head(p, at, n);
}

static int
on_header_value(http_parser *hp, const char *at, size_t n)
{
    struct mg_http_parser *p = hp->data;
    struct span *s;

    if (p->phase == MG_HTTP_PHASE_BODY)
        return 0;
    if (p->nhdrs == 0)
        return fail(p, MG_EPARSE, 400, "header value without a name");
    s = &p->spans[p->nhdrs - 1];
    if (!p->in_value) {
        s->value_off = p->head.len;
        p->in_value = true;
    }
    s->value_len += n;
    return append_head(p, at, n);
}

/* Turns the offsets into views; head no longer moves for this request. */
static void
build_headers(struct mg_http_parser *p)
{
    const char *base = p->head.ptr;

    for (size_t i = 0; i < p->nhdrs; i++) {
        const struct span *s = &p->spans[i];
        p->hdrs[i].name = mg_str_n(base + s->name_off, s->name_len);
        p->hdrs[i].value =
            mg_str_trim(mg_str_n(base + s->value_off, s->value_len));
    }
    p->msg.headers = p->hdrs;
    p->msg.nheaders = p->nhdrs;
}

static size_t
count_headers(const struct mg_http_msg *m, const char *name)
{
    struct mg_str want = mg_str_from(name);
    size_t n = 0;

    for (size_t i = 0; i < m->nheaders; i++)
        n += mg_str_ieq(m->headers[i].name, want);
    return n;
}

static bool
has_body(const http_parser *hp)
{
    return (hp->flags & F_CHUNKED) ||
           (hp->content_length != ULLONG_MAX && hp->content_length > 0);
}

static void split_target(struct mg_http_msg *m);

static int
on_headers_complete(http_parser *hp)
{
    struct mg_http_parser *p = hp->data;
    struct mg_http_msg *m = &p->msg;
    struct mg_str expect;
    size_t nhost;

    build_headers(p);
    m->method = mg_str_from(http_method_str((enum http_method)hp->method));
    m->target = mg_str_n(p->head.ptr ? p->head.ptr : "", p->url_len);
    split_target(m);
    m->version_major = hp->http_major;
    m->version_minor = hp->http_minor;
    /* RFC 7230 section 5.4: a 1.1 request without Host, and any request
     * with more than one, gets a 400. */
    nhost = count_headers(m, "Host");
    if (nhost > 1)
        return fail(p, MG_EPARSE, 400, "more than one Host header");
    if ((hp->http_major > 1 || (hp->http_major == 1 && hp->http_minor >= 1)) &&
        nhost == 0)
        return fail(p, MG_EPARSE, 400, "missing Host header");
    /* http-parser reports "no Content-Length" as ULLONG_MAX, not 0. */
    if (hp->content_length != ULLONG_MAX &&
        hp->content_length > p->lim.max_body_bytes)
        return fail(p, MG_ETOOBIG, 413, "request body too large");
    if (p->head_check != NULL && has_body(hp)) {
        const char *why = "";
        int status = p->head_check(p->head_check_arg, m, &why);

        if (status != 0)
            return fail(p, MG_EUNSUPPORTED, status, why);
    }
    /* Room for a small body at once; a big one grows as it arrives, so a
     * client announcing much and sending little costs little. */
    if (hp->content_length != ULLONG_MAX && hp->content_length > 0 &&
        mg_buf_reserve(&p->body, (size_t)MG_MIN(hp->content_length,
                                                RESERVE_BODY)) < 0)
        return fail(p, MG_ENOMEM, 500, "out of memory");
    expect = mg_http_msg_header(m, "Expect");
    p->continue_pending = m->version_minor >= 1 && has_body(hp) &&
                          mg_str_ieq(expect, MG_STR("100-continue"));
    p->phase = MG_HTTP_PHASE_BODY;
    return 0;
}

static int
on_body(http_parser *hp, const char *at, size_t n)
{
    struct mg_http_parser *p = hp->data;

    /* The body is arriving: the client did not wait for 100 Continue. */
    p->continue_pending = false;
    if (p->body.len + n > p->lim.max_body_bytes)
        return fail(p, MG_ETOOBIG, 413, "request body too large");
    if (mg_buf_append(&p->body, at, n) < 0)
        return fail(p, MG_ENOMEM, 500, "out of memory");
    return 0;
}

/* Splits the target into path and query; origin form ("/a?b") is the
 * rule, absolute form ("http://h/a?b") is allowed (RFC 7230 5.3.2). */
static void
split_target(struct mg_http_msg *m)
{
    struct http_parser_url u;
    const char *t = m->target.ptr;
    size_t n = m->target.len;

    m->path = m->target;
    m->query = mg_str_n(t + n, 0);
    if (n > 0 && t[0] != '/') {
        http_parser_url_init(&u);
        if (http_parser_parse_url(t, n, 0, &u) != 0)
            return; /* "*" or authority form: keep it whole */
        m->path = (u.field_set & (1 << UF_PATH))
                      ? mg_str_n(t + u.field_data[UF_PATH].off,
                                 u.field_data[UF_PATH].len)
                      : MG_STR("/");
        if (u.field_set & (1 << UF_QUERY))
            m->query = mg_str_n(t + u.field_data[UF_QUERY].off,
                                u.field_data[UF_QUERY].len);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (t[i] == '?' || t[i] == '#') {
            m->path.len = i;
            if (t[i] == '?') {
                const char *hash = memchr(t + i + 1, '#', n - i - 1);
                size_t end = hash ? (size_t)(hash - t) : n;
                m->query = mg_str_n(t + i + 1, end - i - 1);
            }
            break;
        }
    }
}

static int
on_message_complete(http_parser *hp)
{
    struct mg_http_parser *p = hp->data;
    struct mg_http_msg *m = &p->msg;

    m->body = mg_buf_str(&p->body);
    /* An Upgrade we do not perform leaves the rest of the stream in an
     * unknown protocol: answer this request, then close. So does chunked
     * from a 1.0 client, whose framing a 1.0 hop may have read otherwise
     * (RFC 9112 section 6.1). */
    m->keep_alive = http_should_keep_alive(hp) && !hp->upgrade &&
                    !((hp->flags & F_CHUNKED) && hp->http_major == 1 &&
                      hp->http_minor == 0);
    p->continue_pending = false;
    p->done = true;
    p->phase = MG_HTTP_PHASE_IDLE;
    http_parser_pause(hp, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void
set_defaults(struct mg_http_limits *l)
{
    if (l->max_header_bytes == 0)
        l->max_header_bytes = DEFAULT_MAX_HEADER;
    if (l->max_body_bytes == 0)
        l->max_body_bytes = DEFAULT_MAX_BODY;
    if (l->max_url_bytes == 0)
        l->max_url_bytes = DEFAULT_MAX_URL;
    if (l->max_headers == 0)
        l->max_headers = DEFAULT_MAX_HEADERS;
}

int
mg_http_parser_new(const struct mg_http_limits *lim,
                   struct mg_http_parser **out)
{
    struct mg_http_parser *p = mg_calloc(1, sizeof(*p));

    if (p == NULL)
        return MG_ENOMEM;
    if (lim != NULL)
        p->lim = *lim;
    set_defaults(&p->lim);
    http_parser_init(&p->hp, HTTP_REQUEST);
    p->hp.data = p;
    mg_buf_init(&p->head, p->lim.max_header_bytes);
    mg_buf_init(&p->body, p->lim.max_body_bytes);
    *out = p;
    return MG_OK;
}

void
mg_http_parser_free(struct mg_http_parser *p)
{
    if (p == NULL)
        return;
    mg_buf_dispose(&p->head);
    mg_buf_dispose(&p->body);
    mg_free(p->spans);
    mg_free(p->hdrs);
    mg_free(p);
}

static void
release_buf(struct mg_buf *b)
{
    size_t max = b->max;

    if (b->cap <= KEEP_STORAGE) {
        mg_buf_reset(b);
        return;
    }
    mg_buf_dispose(b);
    mg_buf_init(b, max);
}

/* Forgets the request handed out, keeping modest storage for the next. */
static void
reset_request(struct mg_http_parser *p)
{
    release_buf(&p->head);
    release_buf(&p->body);
    p->nhdrs = 0;
    p->url_len = 0;
    p->in_value = false;
    p->done = false;
    p->phase = MG_HTTP_PHASE_IDLE;
    memset(&p->msg, 0, sizeof(p->msg));
    http_parser_pause(&p->hp, 0);
}

/* Maps an http-parser error we did not raise ourselves. */
static int
parser_error(struct mg_http_parser *p, enum http_errno e)
{
    if (e == HPE_HEADER_OVERFLOW)
        fail(p, MG_ETOOBIG, 431, "request header section too large");
    else
        fail(p, MG_EPARSE, 400, http_errno_description(e));
    return p->err;
}

int
mg_http_parser_feed(struct mg_http_parser *p, const char *data, size_t n,
                    size_t *used, const struct mg_http_msg **msg)
{
    enum http_errno e;
    size_t got;

    *used = 0;
    if (p->err != 0)
        return p->err;
    if (p->done)
        reset_request(p);
    if (n == 0)
        return MG_AGAIN;
    got = http_parser_execute(&p->hp, &settings, data, n);
    *used = got;
    e = HTTP_PARSER_ERRNO(&p->hp);
    if (e == HPE_PAUSED && p->done) {
        *msg = &p->msg;
        return MG_OK;
    }
    if (p->err != 0)
        return p->err; /* one of our callbacks refused */
    if (e != HPE_OK)
        return parser_error(p, e);
    return MG_AGAIN;
}

enum mg_http_phase
mg_http_parser_phase(const struct mg_http_parser *p)
{
    return p->phase;
}

bool
mg_http_parser_take_continue(struct mg_http_parser *p)
{
    bool pending = p->continue_pending;

    p->continue_pending = false;
    return pending;
}

int
mg_http_parser_error_status(const struct mg_http_parser *p)
{
    return p->err != 0 ? p->status : 0;
}

const char *
mg_http_parser_error_text(const struct mg_http_parser *p)
{
    return p->err != 0 ? p->err_text : "";
}

struct mg_str
mg_http_msg_header(const struct mg_http_msg *m, const char *name)
{
    struct mg_str want = mg_str_from(name);

    for (size_t i = 0; i < m->nheaders; i++)
        if (mg_str_ieq(m->headers[i].name, want))
            return m->headers[i].value;
    return MG_STR_NULL;
}

void
mg_http_parser_set_head_check(struct mg_http_parser *p,
                              mg_http_head_check check, void *arg)
{
    p->head_check = check;
    p->head_check_arg = arg;
}
