/* The HTTP server on net/: one request at a time per connection
 * (DESIGN-NOTES.md section 4). Reading stops when a request is complete;
 * the handler answers now or later; once the response is written, bytes
 * left over from the last read (a pipelined request) are parsed, and
 * reading resumes. One timer per connection follows the phase: idle
 * keep-alive wait, header deadline from the first byte, body progress,
 * response write. */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/log.h"
#include "http/http_int.h"

#define DEFAULT_HEADER_TIMEOUT 10000u
#define DEFAULT_BODY_TIMEOUT 30000u
#define DEFAULT_IDLE_TIMEOUT 15000u
/* Unparsed input kept while a request is served: at most one read. */
#define PENDING_MAX (128u * 1024)

static const char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";

static void
log_ctx(const struct mg__http_conn *hc, struct mg_log_ctx *ctx,
        const char *action)
{
    *ctx = (struct mg_log_ctx){.component = "http", .action = action,
                              .conn_id = hc->id, .peer = hc->peer};
}

static void
maybe_finish(struct mg_http_server *s)
{
    mg_http_server_cb cb;

    if (s->nconns > 0 || s->l != NULL)
        return;
    if (s->drained != NULL) {
        cb = s->drained;
        s->drained = NULL;
        cb(s, s->drained_arg);
    }
    if (!s->closing)
        return;
    if (s->closed != NULL)
        s->closed(s, s->closed_arg);
    mg__http_metrics_dispose(&s->metrics);
    mg_free(s);
}

static void
conn_unref(struct mg__http_conn *hc)
{
    struct mg_http_server *s = hc->s;

    if (--hc->refs > 0)
        return;
    mg_http_parser_free(hc->parser);
    mg_buf_dispose(&hc->pending);
    mg_free(hc);
    s->nconns--;
    maybe_finish(s);
}

void
mg__http_request_done(struct mg_http_request *req)
{
    req->hc->s->pending--;
    conn_unref(req->hc);
}

static void
on_idle_timeout(struct mg_net_conn *nc)
{
    mg_net_conn_close(nc); /* quietly: no request was started */
}

static void
on_write_timeout(struct mg_net_conn *nc)
{
    struct mg_log_ctx ctx;

    log_ctx(mg_net_conn_data(nc), &ctx, "writing response");
    mg_log(MG_LOG_INFO, &ctx, "client not reading: closing");
    mg_net_conn_abort(nc);
}

/* Hands a request out: it holds a reference on hc until answered. */
static struct mg_http_request *
start_request(struct mg__http_conn *hc, const struct mg_http_msg *msg)
{
    struct mg_http_request *req = &hc->req;

    hc->busy = true;
    mg_net_conn_pause(hc->nc);
    mg_net_conn_set_timeout(hc->nc, 0, NULL);
    *req = (struct mg_http_request){
        .hc = hc,
        .msg = msg,
        .route = MG__HTTP_UNMATCHED,
        .start_us = hc->start_us ? hc->start_us : mg_clock_mono_us(),
        .head = msg != NULL && mg_str_eqz(msg->method, "HEAD"),
        .active = true,
    };
    hc->refs++;
    hc->s->pending++;
    return req;
}

/* Refuses the request being received (or timed out) with status and
 * closes the connection after the answer. */
static void
refuse(struct mg__http_conn *hc, int status, const char *issue,
       const char *text)
{
    struct mg_http_request *req = start_request(hc, NULL);
    struct mg_log_ctx ctx;

    log_ctx(hc, &ctx, "reading request");
    mg_log_limited(&hc->s->refused_log, MG_LOG_INFO, &ctx,
                   "refused: status=%d reason=\"%s\"", status, text);
    req->close = true;
    if (status == 405 && hc->allow[0] != '\0')
        mg_http_respond_outcome_ex(req, status, hc->allow, issue, text);
    else
        mg_http_respond_outcome(req, status, issue, text);
}

static void
on_header_timeout(struct mg_net_conn *nc)
{
    refuse(mg_net_conn_data(nc), 408, "timeout",
           "request header not received in time");
}

static void
on_body_timeout(struct mg_net_conn *nc)
{
    refuse(mg_net_conn_data(nc), 408, "timeout",
           "request body not received in time");
}

/* The route for method and path. On a 405 (the path exists, not with
 * this method) hc->allow gets the Allow line its answer must carry (RFC
 * 7231 section 6.5.5); else it is "". */
static int
find_route(struct mg__http_conn *hc, struct mg_str method, struct mg_str path,
           struct mg_http_route_match *m)
{
    struct mg_buf allow;
    int rc;

    mg_buf_init(&allow, 400);
    rc = mg_http_router_find(hc->s->router, method, path, m, &allow);
    hc->allow[0] = '\0';
    if (rc == MG_EUNSUPPORTED)
        snprintf(hc->allow, sizeof(hc->allow), "Allow: %s\r\n",
                 allow.ptr ? allow.ptr : "");
    mg_buf_dispose(&allow);
    return rc;
}

static void
dispatch(struct mg__http_conn *hc, const struct mg_http_msg *msg)
{
    struct mg_http_request *req = start_request(hc, msg);
    struct mg_http_route_match m;
    int rc = find_route(hc, msg->method, msg->path, &m);

    if (rc == MG_OK) {
        req->route = m.name;
        m.handler(req, m.ud);
    } else if (rc == MG_ENOTFOUND) {
        mg_http_respond_outcome(req, 404, "not-found", "no such endpoint");
    } else if (rc == MG_EUNSUPPORTED) {
        mg_http_respond_outcome_ex(req, 405, hc->allow, "not-supported",
                                   "method not allowed on this endpoint");
    } else {
        mg_http_respond_outcome(req, 500, "exception", mg_strerror(rc));
    }
}

static void
send_continue(struct mg__http_conn *hc)
{
    int rc = mg_net_conn_write(hc->nc, continue_line,
                               sizeof(continue_line) - 1, NULL, NULL);

    if (rc < 0)
        mg_net_conn_abort(hc->nc);
}

/* Arms the timer for the phase the parser is now in. */
static void
arm_timer(struct mg__http_conn *hc, enum mg_http_phase before)
{
    struct mg_http_server *s = hc->s;
    enum mg_http_phase now = mg_http_parser_phase(hc->parser);

    if (now == MG_HTTP_PHASE_BODY)
        mg_net_conn_set_timeout(hc->nc, s->o.body_timeout_ms,
                                on_body_timeout);
    else if (now == MG_HTTP_PHASE_HEADERS && before == MG_HTTP_PHASE_IDLE)
        mg_net_conn_set_timeout(hc->nc, s->o.header_timeout_ms,
                                on_header_timeout);
}

/* Keeps the unparsed tail of a read for after the response. */
static void
keep_pending(struct mg__http_conn *hc, const char *p, size_t n)
{
    if (n == 0 || mg_net_conn_closing(hc->nc))
        return;
    if (mg_buf_append(&hc->pending, p, n) < 0)
        mg_net_conn_abort(hc->nc);
}

/* A request that announces a body, for no route that exists or for one
 * that takes none: answered before its body is read, so that no client can
 * make the server hold a body (up to max_body_bytes a connection) for a
 * 404, a 405 or a GET. */
static int
check_head(void *arg, const struct mg_http_msg *m, const char **text)
{
    struct mg__http_conn *hc = arg;
    struct mg_http_route_match match;
    int rc = find_route(hc, m->method, m->path, &match);

    if (rc == MG_ENOTFOUND) {
        *text = "no such endpoint";
        return 404;
    }
    if (rc != MG_OK) {
        *text = "method not allowed on this endpoint";
        return 405;
    }
    /* A GET or HEAD body has no meaning (RFC 9110 9.3.1): not read, or
     * any client could make a health probe's connection hold one. */
    if (mg_str_eqz(m->method, "GET") || mg_str_eqz(m->method, "HEAD")) {
        *text = "a GET or HEAD request takes no body";
        return 413;
    }
    return 0;
}

static void
refuse_parse_error(struct mg__http_conn *hc)
{
    int status = mg_http_parser_error_status(hc->parser);
    const char *issue = status == 400   ? "invalid"
                        : status == 404 ? "not-found"
                        : status == 405 ? "not-supported"
                        : status == 500 ? "exception"
                                        : "too-long";

    refuse(hc, status, issue, mg_http_parser_error_text(hc->parser));
}

/* Feeds p[0..n) until a request is complete (dispatched) or all is used.
 * Bytes from a read that follow a complete request go to hc->pending;
 * bytes taken from hc->pending are consumed from it. */
static void
parse_input(struct mg__http_conn *hc, const char *p, size_t n,
            bool from_pending)
{
    enum mg_http_phase before = mg_http_parser_phase(hc->parser);
    const struct mg_http_msg *msg;
    size_t used;
    int rc;

    if (before == MG_HTTP_PHASE_IDLE)
        hc->start_us = 0;
    rc = mg_http_parser_feed(hc->parser, p, n, &used, &msg);
    if (hc->start_us == 0 &&
        (rc != MG_AGAIN ||
         mg_http_parser_phase(hc->parser) != MG_HTTP_PHASE_IDLE))
        hc->start_us = mg_clock_mono_us();
    if (from_pending)
        mg_buf_consume(&hc->pending, used);
    if (rc == MG_AGAIN) {
        arm_timer(hc, before);
        if (mg_http_parser_take_continue(hc->parser))
            send_continue(hc);
        return;
    }
    if (!from_pending)
        keep_pending(hc, p + used, n - used);
    if (rc == MG_OK)
        dispatch(hc, msg);
    else
        refuse_parse_error(hc);
}

/* The response is out: take the next request, from what was read
 * already or from the socket. */
static void
next_request(struct mg__http_conn *hc)
{
    hc->busy = false;
    if (hc->pending.len > 0) {
        parse_input(hc, hc->pending.ptr, hc->pending.len, true);
        if (hc->busy || mg_net_conn_closing(hc->nc))
            return;
    }
    if (hc->eof) {
        mg_net_conn_close(hc->nc); /* every request read was answered */
        return;
    }
    if (mg_http_parser_phase(hc->parser) == MG_HTTP_PHASE_IDLE)
        mg_net_conn_set_timeout(hc->nc, hc->s->o.idle_timeout_ms,
                                on_idle_timeout);
    mg_net_conn_resume(hc->nc);
}

static void
on_response_sent(struct mg_net_conn *nc, int status, void *arg)
{
    struct mg__http_conn *hc = arg;

    if (status < 0 || mg_net_conn_closing(nc))
        return;
    next_request(hc);
}

void
mg__http_conn_send(struct mg__http_conn *hc, char *buf, size_t len,
                   bool close)
{
    struct mg_net_conn *nc = hc->nc;
    int rc;

    if (buf == NULL) {
        mg_net_conn_abort(nc);
        return;
    }
    mg_net_conn_set_timeout(nc, hc->s->o.body_timeout_ms, on_write_timeout);
    rc = mg_net_conn_write_take(nc, buf, len, on_response_sent, hc);
    if (rc < 0)
        mg_net_conn_abort(nc);
    else if (close)
        mg_net_conn_close(nc);
}

static void
on_read(struct mg_net_conn *nc, int status, const char *data, size_t n)
{
    struct mg__http_conn *hc = mg_net_conn_data(nc);

    if (status < 0) {
        /* The peer is done sending. A request being served still gets
         * its answer (the close follows it); anything else ends here. */
        hc->eof = true;
        if (!hc->busy)
            mg_net_conn_close(nc);
        return;
    }
    if (hc->busy) {
        keep_pending(hc, data, n);
        return;
    }
    parse_input(hc, data, n, false);
}

static int
on_accept(struct mg_net_conn *nc)
{
    struct mg_http_server *s = mg_net_listener_data(mg_net_conn_listener(nc));
    struct mg__http_conn *hc;

    hc = mg_calloc(1, sizeof(*hc));
    if (hc == NULL)
        return MG_ENOMEM;
    if (mg_http_parser_new(&s->o.limits, &hc->parser) < 0) {
        mg_free(hc);
        return MG_ENOMEM;
    }
    hc->s = s;
    hc->nc = nc;
    hc->refs = 1;
    mg_http_parser_set_head_check(hc->parser, check_head, hc);
    hc->id = mg_net_conn_id(nc);
    snprintf(hc->peer, sizeof(hc->peer), "%s", mg_net_conn_peer(nc));
    mg_buf_init(&hc->pending, PENDING_MAX);
    s->nconns++;
    mg_net_conn_set_data(nc, hc);
    mg_net_conn_set_timeout(nc, s->o.idle_timeout_ms, on_idle_timeout);
    return MG_OK;
}

static void
on_close(struct mg_net_conn *nc)
{
    struct mg__http_conn *hc = mg_net_conn_data(nc);

    hc->nc = NULL;
    conn_unref(hc);
}

static void
on_listener_closed(struct mg_net_listener *l, void *arg)
{
    struct mg_http_server *s = arg;

    mg_net_listener_stats(l, &s->final);
    s->l = NULL;
    maybe_finish(s);
}

static void
server_defaults(struct mg_http_server_opts *o)
{
    if (o->header_timeout_ms == 0)
        o->header_timeout_ms = DEFAULT_HEADER_TIMEOUT;
    if (o->body_timeout_ms == 0)
        o->body_timeout_ms = DEFAULT_BODY_TIMEOUT;
    if (o->idle_timeout_ms == 0)
        o->idle_timeout_ms = DEFAULT_IDLE_TIMEOUT;
}

int
mg_http_server_open(struct uv_loop_s *loop,
                    const struct mg_http_server_opts *opts,
                    const struct mg_http_router *router,
                    struct mg_http_server **out)
{
    struct mg_net_listener_opts lo = {0};
    struct mg_http_server *s;
    int rc;

    if (router == NULL)
        return MG_EINVAL;
    s = mg_calloc(1, sizeof(*s));
    if (s == NULL)
        return MG_ENOMEM;
    s->o = *opts;
    s->answer_log = MG_LOG_LIMIT_INIT(5, 10);
    s->error_log = MG_LOG_LIMIT_INIT(5, 10);
    s->refused_log = MG_LOG_LIMIT_INIT(5, 10);
    server_defaults(&s->o);
    s->router = router;
    rc = mg__http_metrics_init(&s->metrics, router);
    if (rc < 0)
        goto out_free;
    lo.bind = opts->bind;
    lo.port = opts->port;
    lo.backlog = opts->backlog;
    lo.max_connections = opts->max_connections;
    lo.on_accept = on_accept;
    lo.on_read = on_read;
    lo.on_close = on_close;
    lo.data = s;
    rc = mg_net_listener_open(loop, &lo, &s->l);
    if (rc < 0)
        goto out_free;
    s->port = mg_net_listener_port(s->l);
    *out = s;
    return MG_OK;

out_free:
    mg__http_metrics_dispose(&s->metrics);
    mg_free(s);
    return rc;
}

int
mg_http_server_port(const struct mg_http_server *s)
{
    return s->port;
}

unsigned
mg_http_server_open_connections(const struct mg_http_server *s)
{
    struct mg_net_stats st = s->final;

    if (s->l != NULL)
        mg_net_listener_stats(s->l, &st);
    return st.open;
}

unsigned
mg_http_server_pending_requests(const struct mg_http_server *s)
{
    return s->pending;
}

/* Drain: a connection with no request under way closes now. */
static void
close_if_idle(struct mg_net_conn *nc, void *arg)
{
    struct mg__http_conn *hc = mg_net_conn_data(nc);

    if (!hc->busy && hc->pending.len == 0 &&
        mg_http_parser_phase(hc->parser) == MG_HTTP_PHASE_IDLE)
        mg_net_conn_close(nc);
}

void
mg_http_server_drain(struct mg_http_server *s, mg_http_server_cb drained,
                     void *arg)
{
    if (s->draining || s->closing)
        return;
    s->draining = true;
    s->drained = drained;
    s->drained_arg = arg;
    if (s->l != NULL) {
        mg_net_listener_walk(s->l, close_if_idle, NULL);
        mg_net_listener_close(s->l, on_listener_closed, s);
    }
}

void
mg_http_server_close(struct mg_http_server *s, mg_http_server_cb closed,
                     void *arg)
{
    if (s->closing)
        return;
    s->closing = true;
    s->closed = closed;
    s->closed_arg = arg;
    if (s->l == NULL) {
        maybe_finish(s); /* drained already: maybe nothing left to wait for */
        return;
    }
    mg_net_listener_close_conns(s->l, true);
    mg_net_listener_close(s->l, on_listener_closed, s);
}
