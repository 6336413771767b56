/* Responses: the status line and the headers every response carries
 * (Date, Content-Length, Connection), serialised with the body into one
 * buffer and one write; and the FHIR OperationOutcome the gateway sends
 * for its own errors (FHIR R4 operationoutcome.html, http.html). */
#include <http_parser.h>
#include <stdio.h>
#include <time.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/log.h"
#include "http/http_int.h"

/* RFC 7231 section 7.1.1.1 IMF-fixdate. */
static void
http_date(char *out, size_t size)
{
    time_t now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    strftime(out, size, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static const char *
reason(int status)
{
    const char *r = http_status_str((enum http_status)status);

    /* http-parser names unknown codes "<unknown>". */
    return r[0] == '<' ? "Unknown" : r;
}

/* RFC 7230 section 3.3: no body in 1xx, 204 and 304 responses (and none
 * for HEAD, though its Content-Length tells the size of the GET). */
static bool
status_has_body(int status)
{
    return status >= 200 && status != 204 && status != 304;
}

static int
build_head(struct mg_buf *b, const struct mg_http_request *req, int status,
           const char *ctype, const char *extra, size_t len, bool close)
{
    const struct mg_http_msg *m = req->msg;
    char date[40];
    int rc;

    http_date(date, sizeof(date));
    rc = mg_buf_appendf(b, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status,
                        reason(status), date);
    if (rc == MG_OK && ctype != NULL)
        rc = mg_buf_appendf(b, "Content-Type: %s\r\n", ctype);
    if (rc == MG_OK && status != 204 && status >= 200)
        rc = mg_buf_appendf(b, "Content-Length: %zu\r\n", len);
    if (rc == MG_OK && close)
        rc = mg_buf_appendz(b, "Connection: close\r\n");
    /* An HTTP/1.0 client keeps the connection only when told so. */
    else if (rc == MG_OK && m != NULL && m->version_major == 1 &&
             m->version_minor == 0)
        rc = mg_buf_appendz(b, "Connection: keep-alive\r\n");
    if (rc == MG_OK && extra != NULL)
        rc = mg_buf_appendz(b, extra);
    if (rc == MG_OK)
        rc = mg_buf_appendz(b, "\r\n");
    return rc;
}

static bool
must_close(const struct mg_http_request *req)
{
    const struct mg_http_server *s = req->hc->s;

    return req->close || req->msg == NULL || !req->msg->keep_alive ||
           s->draining || s->closing;
}

static void
observe(struct mg_http_request *req, int status)
{
    struct mg__http_conn *hc = req->hc;
    double secs = (double)(mg_clock_mono_us() - req->start_us) / 1e6;

    mg__http_metrics_observe(&hc->s->metrics, req->route, status, secs);
    /* /readyz's 503 is an answer, not a failure: the admin module logs
     * each change of readiness once, not each load balancer probe. */
    if (status >= 400 && !(status == 503 && req->route != NULL &&
                           strcmp(req->route, "readyz") == 0)) {
        struct mg_log_ctx ctx = {.component = "http", .action = "responding",
                                 .conn_id = hc->id, .peer = hc->peer};
        mg_log_limited(status >= 500 ? &hc->s->error_log : &hc->s->answer_log,
                       status >= 500 ? MG_LOG_WARN : MG_LOG_INFO, &ctx,
                       "status=%d route=%s", status, req->route);
    }
}

void
mg_http_respond(struct mg_http_request *req, int status,
                const char *content_type, const char *extra_headers,
                const void *body, size_t len)
{
    struct mg_buf b;
    bool close;
    char *out;
    size_t n;
    int rc;

    if (!req->active) {
        struct mg_log_ctx ctx = {.component = "http", .action = "responding",
                                 .conn_id = req->hc->id,
                                 .peer = req->hc->peer};
        mg_log(MG_LOG_ERROR, &ctx, "respond called twice: status=%d", status);
        return;
    }
    req->active = false;
    observe(req, status);
    if (req->hc->nc == NULL) {
        mg__http_request_done(req); /* the client went away */
        return;
    }
    if (!status_has_body(status))
        len = 0;
    close = must_close(req);
    mg_buf_init(&b, 0);
    rc = build_head(&b, req, status, content_type, extra_headers, len, close);
    if (rc == MG_OK && len > 0 && !req->head)
        rc = mg_buf_append(&b, body, len);
    out = mg_buf_take(&b, &n);
    if (rc < 0) {
        mg_free(out);
        out = NULL; /* mg__http_conn_send aborts the connection */
    }
    mg__http_conn_send(req->hc, out, n, close);
    mg__http_request_done(req);
}

/* Appends s as the inside of a JSON string (RFC 8259 section 7). */
static int
append_json_string(struct mg_buf *out, const char *s)
{
    int rc = MG_OK;

    for (; *s && rc == MG_OK; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            rc = mg_buf_appendf(out, "\\%c", c);
        else if (c < 0x20)
            rc = mg_buf_appendf(out, "\\u%04x", c);
        else
            rc = mg_buf_appendc(out, (char)c);
    }
    return rc;
}

int
mg_http_outcome_json(struct mg_buf *out, const char *issue_code,
                     const char *diagnostics)
{
    int rc;

    rc = mg_buf_appendz(out, "{\"resourceType\":\"OperationOutcome\","
                             "\"issue\":[{\"severity\":\"error\",\"code\":\"");
    if (rc == MG_OK)
        rc = append_json_string(out, issue_code);
    if (rc == MG_OK)
        rc = mg_buf_appendz(out, "\",\"diagnostics\":\"");
    if (rc == MG_OK)
        rc = append_json_string(out, diagnostics);
    if (rc == MG_OK)
        rc = mg_buf_appendz(out, "\"}]}");
    return rc;
}

void
mg_http_respond_outcome_ex(struct mg_http_request *req, int status,
                           const char *extra_headers, const char *issue_code,
                           const char *diagnostics)
{
    struct mg_buf b;

    mg_buf_init(&b, 0);
    if (mg_http_outcome_json(&b, issue_code, diagnostics) < 0) {
        /* Out of memory: an empty body still carries the status. */
        mg_buf_reset(&b);
    }
    mg_http_respond(req, status, "application/fhir+json", extra_headers,
                    b.ptr, b.len);
    mg_buf_dispose(&b);
}

void
mg_http_respond_outcome(struct mg_http_request *req, int status,
                        const char *issue_code, const char *diagnostics)
{
    mg_http_respond_outcome_ex(req, status, NULL, issue_code, diagnostics);
}

const struct mg_http_msg *
mg_http_request_msg(const struct mg_http_request *req)
{
    return req->msg;
}

uint64_t
mg_http_request_conn_id(const struct mg_http_request *req)
{
    return req->hc->id;
}

const char *
mg_http_request_peer(const struct mg_http_request *req)
{
    return req->hc->peer;
}

const char *
mg_http_request_route(const struct mg_http_request *req)
{
    return req->route;
}
