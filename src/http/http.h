/* HTTP/1.1 for medgate: a request codec, a server on net/, a router, and
 * responses, with FHIR OperationOutcome bodies for the errors the gateway
 * itself produces (DESIGN-NOTES.md section 4).
 *
 * The codec (parser.c, library mg_http_codec) is sans I/O: bytes in,
 * complete requests out, no uv.h, so it is tested on every split point
 * and can be fuzzed. http-parser 2.9.4 does the tokenising inside it and
 * never shows through this header, so it can be swapped for llhttp.
 *
 * The server (library mg_http) takes one request at a time per connection:
 * it stops reading when a request is complete, hands it to the route's
 * handler, and parses the next (pipelined) request only after the response
 * was written. Handlers are asynchronous: they call mg_http_respond exactly
 * once, now or on a later loop turn. Everything runs on the loop thread. */
#ifndef MG_HTTP_HTTP_H
#define MG_HTTP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/compiler.h"
#include "core/str.h"

struct uv_loop_s;

/* ---- Codec ------------------------------------------------------------ */

struct mg_http_header {
    struct mg_str name;  /* as sent; compare with mg_str_ieq */
    struct mg_str value; /* without surrounding blanks */
};

/* One complete request. Every view points into the parser that returned
 * it and is valid until the next mg_http_parser_feed or _free. */
struct mg_http_msg {
    struct mg_str method; /* "GET", "POST", ...: static storage */
    struct mg_str target; /* the request-target as sent */
    struct mg_str path;   /* target up to '?' (origin or absolute form),
                             not percent-decoded; "*" for OPTIONS * */
    struct mg_str query;  /* after '?', without it; empty when none */
    const struct mg_http_header *headers;
    size_t nheaders;
    struct mg_str body;   /* the whole body, de-chunked; trailers dropped */
    int version_major;
    int version_minor;
    bool keep_alive;      /* HTTP/1.0 + keep-alive, or 1.1 without close */
};

/* Limits of one request. Zero fields take the default in the comment. */
struct mg_http_limits {
    size_t max_header_bytes; /* request line + header lines: 16 KiB */
    size_t max_body_bytes;   /* after de-chunking: 16 MiB */
    size_t max_url_bytes;    /* the request-target: 8 KiB */
    size_t max_headers;      /* header lines: 100 */
};

/* Where the parser stands in the current request (for timeouts). */
enum mg_http_phase {
    MG_HTTP_PHASE_IDLE,    /* no byte of a request yet (CRLF skipped) */
    MG_HTTP_PHASE_HEADERS, /* request line or headers arriving */
    MG_HTTP_PHASE_BODY,    /* headers complete, body arriving */
};

struct mg_http_parser;

/* Creates a parser for requests within lim (copied; NULL: defaults).
 * MG_OK or MG_ENOMEM. Storage grows with the request, up to the limits. */
MG_MUST_CHECK int mg_http_parser_new(const struct mg_http_limits *lim,
                                     struct mg_http_parser **out);
void mg_http_parser_free(struct mg_http_parser *p);

/* Parses data[0..n) until one request is complete or the input is used
 * up; *used is the bytes consumed. Bytes after a complete request are not
 * consumed: feed them again (they start the next, pipelined, request).
 * MG_OK: *msg is the request (valid until the next feed).
 * MG_AGAIN: everything consumed, the request is not complete yet.
 * MG_EPARSE: malformed (status 400). MG_ETOOBIG: over a limit (413, 414
 *   or 431). MG_ENOMEM. After an error the parser is dead: every further
 *   feed returns the same error; mg_http_parser_error_status says which
 *   status to answer and mg_http_parser_error_text why.
 * No I/O; calls back only the head check, if one is set. */
MG_MUST_CHECK int mg_http_parser_feed(struct mg_http_parser *p,
                                      const char *data, size_t n,
                                      size_t *used,
                                      const struct mg_http_msg **msg);

enum mg_http_phase mg_http_parser_phase(const struct mg_http_parser *p);

/* Asked when the head of a request that announces a body is complete
 * (method, target, path and headers of m are set; its body is not): 0 to
 * read the body, else an HTTP status to answer at once instead, with
 * *text its static reason. The parser then fails like for a malformed
 * request: the body is never read or held (no route takes it, so a client
 * cannot make the server hold a 16 MB body for a 404). */
typedef int (*mg_http_head_check)(void *arg, const struct mg_http_msg *m,
                                  const char **text);
void mg_http_parser_set_head_check(struct mg_http_parser *p,
                                   mg_http_head_check check, void *arg);

/* True once per request when its headers asked "Expect: 100-continue"
 * (HTTP/1.1, with a body) and the body has not arrived yet: the caller
 * should now send "HTTP/1.1 100 Continue". */
bool mg_http_parser_take_continue(struct mg_http_parser *p);

/* After an error: the HTTP status to answer (400, 413, 414, 431, 500 for
 * MG_ENOMEM, or what the head check said) and a static, PHI-free reason.
 * 0 and "" before one. */
int mg_http_parser_error_status(const struct mg_http_parser *p);
const char *mg_http_parser_error_text(const struct mg_http_parser *p);

/* The first header called name (case-insensitive), or MG_STR_NULL. */
struct mg_str mg_http_msg_header(const struct mg_http_msg *m,
                                 const char *name);

/* ---- Router ----------------------------------------------------------- */

struct mg_http_request;
struct mg_http_router;

/* Handles one request; must lead to exactly one mg_http_respond* call on
 * req, now or later. ud is the pointer given to mg_http_router_add. */
typedef void (*mg_http_handler_cb)(struct mg_http_request *req, void *ud);

MG_MUST_CHECK int mg_http_router_new(struct mg_http_router **out);
/* Frees the router; no server may still use it. */
void mg_http_router_free(struct mg_http_router *r);

/* Adds a route. method: "GET", "POST", ... or "*" for any. path: exact
 * ("/healthz"), or a prefix when it ends in '*' ("/fhir/" followed by
 * '*' matches every path starting with "/fhir/"). route_name labels the
 * metrics (several routes may share one). Strings are copied. A GET route
 * also answers HEAD, without the body.
 * MG_OK; MG_EINVAL (NULL argument, path not starting with '/', the same
 * method and path twice); MG_ENOMEM. */
MG_MUST_CHECK int mg_http_router_add(struct mg_http_router *r,
                                     const char *method, const char *path,
                                     mg_http_handler_cb handler, void *ud,
                                     const char *route_name);

/* A route found by mg_http_router_find. */
struct mg_http_route_match {
    mg_http_handler_cb handler;
    void *ud;
    const char *name; /* route_name, owned by the router */
};

/* Finds the route for method and path. The most specific path wins (an
 * exact path, then the longest prefix); then the method must match.
 * MG_OK: *m is filled. MG_ENOTFOUND: no path matches (404).
 * MG_EUNSUPPORTED: the path exists but not with this method (405); when
 * allow is not NULL it gets the methods of that path, e.g. "GET, HEAD".
 * MG_ENOMEM (allow could not grow). */
MG_MUST_CHECK int mg_http_router_find(const struct mg_http_router *r,
                                      struct mg_str method, struct mg_str path,
                                      struct mg_http_route_match *m,
                                      struct mg_buf *allow);

/* ---- Requests and responses ------------------------------------------- */

/* The parsed request; valid until mg_http_respond* is called. */
const struct mg_http_msg *
mg_http_request_msg(const struct mg_http_request *req);
/* The connection's id and peer "ip:port", for logs (valid as above, even
 * after the client went away). */
uint64_t mg_http_request_conn_id(const struct mg_http_request *req);
const char *mg_http_request_peer(const struct mg_http_request *req);
/* The route name the request was dispatched under. */
const char *mg_http_request_route(const struct mg_http_request *req);

/* Sends the response and finishes req, which is invalid afterwards.
 * content_type may be NULL (no Content-Type); extra_headers is NULL or
 * header lines each ending in "\r\n" (trusted: not checked). body[0..len)
 * is copied. Date and Content-Length are added, and "Connection: close"
 * when the connection closes after this response (the client asked, HTTP/
 * 1.0 without keep-alive, an error the gateway produced, or draining).
 * When the client has gone away the response is dropped. Never fails in a
 * way the handler must handle: if the response cannot be queued (out of
 * memory) the connection is closed. Must be called exactly once. */
void mg_http_respond(struct mg_http_request *req, int status,
                     const char *content_type, const char *extra_headers,
                     const void *body, size_t len);

/* Responds with a FHIR OperationOutcome (application/fhir+json) holding
 * one issue of severity "error": issue_code is a FHIR IssueType code
 * ("invalid", "not-found", "timeout", ...) and diagnostics a PHI-free
 * text (JSON-escaped here). The _ex form adds header lines as above. */
void mg_http_respond_outcome(struct mg_http_request *req, int status,
                             const char *issue_code, const char *diagnostics);
void mg_http_respond_outcome_ex(struct mg_http_request *req, int status,
                                const char *extra_headers,
                                const char *issue_code,
                                const char *diagnostics);

/* Appends the OperationOutcome JSON above to out. MG_OK, MG_ETOOBIG or
 * MG_ENOMEM. */
MG_MUST_CHECK int mg_http_outcome_json(struct mg_buf *out,
                                       const char *issue_code,
                                       const char *diagnostics);

/* ---- Server ----------------------------------------------------------- */

struct mg_http_server;

/* Filled by the caller, usually from struct mg_conf's http_* fields.
 * Zero fields take the defaults given. */
struct mg_http_server_opts {
    const char *bind;             /* address literal; NULL: "127.0.0.1" */
    int port;                     /* 0: any free port */
    int backlog;                  /* 0: 511 */
    unsigned max_connections;     /* 0: unlimited; beyond: closed at once */
    struct mg_http_limits limits;
    unsigned header_timeout_ms;   /* first byte to end of headers: 10 s */
    unsigned body_timeout_ms;     /* between body reads, and for writing
                                     a response: 30 s */
    unsigned idle_timeout_ms;     /* keep-alive wait for a request: 15 s */
};

typedef void (*mg_http_server_cb)(struct mg_http_server *s, void *arg);

/* Listens on opts->bind:opts->port and serves router's routes. router is
 * borrowed and must outlive the server. MG_OK; MG_EINVAL; MG_ENOMEM; or a
 * libuv code (UV_EADDRINUSE). */
MG_MUST_CHECK int mg_http_server_open(struct uv_loop_s *loop,
                                      const struct mg_http_server_opts *opts,
                                      const struct mg_http_router *router,
                                      struct mg_http_server **out);

/* The port bound (after asking for 0). */
int mg_http_server_port(const struct mg_http_server *s);

/* Connections whose socket is open, and requests handed to handlers and
 * not yet answered. */
unsigned mg_http_server_open_connections(const struct mg_http_server *s);
unsigned mg_http_server_pending_requests(const struct mg_http_server *s);

/* Appends the server's metrics in Prometheus text exposition format:
 * medgate_http_open_connections, _connections_accepted_total,
 * _connections_rejected_total, _requests_total{route,code} and the
 * histogram _request_duration_seconds{route} (from the first byte of a
 * request to its response). Requests that matched no route, and requests
 * refused before routing, count under route "unmatched".
 * MG_OK, MG_ETOOBIG or MG_ENOMEM. */
MG_MUST_CHECK int mg_http_server_write_metrics(const struct mg_http_server *s,
                                               struct mg_buf *out);

/* Starts a graceful shutdown: stops accepting, closes idle keep-alive
 * connections now, and lets the others finish their current request with
 * "Connection: close". drained(s, arg) (may be NULL) runs once, later,
 * when no connection and no pending request is left. Calling it again, or
 * after mg_http_server_close, does nothing. */
void mg_http_server_drain(struct mg_http_server *s, mg_http_server_cb drained,
                          void *arg);

/* Closes the listener and every connection at once. Requests still with
 * their handlers stay valid until answered (the answers are dropped);
 * then closed(s, arg) runs (may be NULL) and s is freed. It runs later,
 * except after a completed drain, when nothing is left and it runs at
 * once. */
void mg_http_server_close(struct mg_http_server *s, mg_http_server_cb closed,
                          void *arg);

#endif
