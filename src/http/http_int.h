/* Internals of the HTTP server (server.c), responses (respond.c) and
 * metrics (metrics.c); only src/http/ includes this. */
#ifndef MG_HTTP_HTTP_INT_H
#define MG_HTTP_HTTP_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/log.h"
#include "http/http.h"
#include "net/net.h"

/* Upper latency bounds of the histogram buckets, in seconds. */
#define MG__HTTP_NBUCKETS 14
extern const double mg__http_buckets[MG__HTTP_NBUCKETS];

/* Distinct status codes counted per route; more are counted as code 0. */
#define MG__HTTP_NCODES 24

struct mg__http_code_count {
    int code;
    uint64_t n;
};

/* Counters of one route name. */
struct mg__http_route_metrics {
    char *name;                               /* owned */
    uint64_t buckets[MG__HTTP_NBUCKETS];      /* per bucket, not cumulative */
    double sum;                               /* seconds */
    uint64_t count;
    struct mg__http_code_count codes[MG__HTTP_NCODES];
    int ncodes;
};

struct mg__http_metrics {
    struct mg__http_route_metrics *routes; /* owned, nroutes used */
    size_t nroutes;
    size_t cap;
};

struct mg__http_conn;

/* The one request in flight on a connection (embedded in it). */
struct mg_http_request {
    struct mg__http_conn *hc;
    const struct mg_http_msg *msg; /* NULL for a request refused unparsed */
    const char *route;             /* metrics label */
    uint64_t start_us;             /* first byte, monotonic */
    bool head;                     /* HEAD: no body in the response */
    bool close;                    /* close after the response */
    bool active;                   /* handed out, respond not yet called */
};

/* One HTTP connection. It outlives its socket while a handler still holds
 * its request: refs counts the socket and the request. */
struct mg__http_conn {
    struct mg_http_server *s;
    struct mg_net_conn *nc;        /* NULL once the socket closed */
    struct mg_http_parser *parser;
    struct mg_buf pending;         /* read, not parsed yet (pipelining) */
    struct mg_http_request req;
    int refs;
    uint64_t id;                   /* copies for logs after nc is gone */
    char peer[64];
    uint64_t start_us;             /* first byte of the current request */
    bool busy;                     /* request out or response being sent */
    bool eof;                      /* the peer sent its FIN */
    char allow[416];               /* "Allow: ...\r\n" of the last 405
                                    * (find_route), else "" */
};

struct mg_http_server {
    struct mg_net_listener *l;     /* NULL once closed */
    const struct mg_http_router *router;
    struct mg_http_server_opts o;
    char bind[64];
    int port;
    struct mg_net_stats final;     /* listener counters when it closed */
    unsigned nconns;               /* mg__http_conn alive */
    unsigned pending;              /* requests with handlers */
    struct mg__http_metrics metrics;
    /* lines a client can repeat at will: 4xx answers, refused requests;
     * 5 each per 10 s (the metrics count every one). 5xx answers have
     * their own, so that a client's bad requests cannot hide them. */
    struct mg_log_limit answer_log, error_log, refused_log;
    bool draining;
    bool closing;
    mg_http_server_cb drained;
    void *drained_arg;
    mg_http_server_cb closed;
    void *closed_arg;
};

/* Metrics (metrics.c). init adds a row for each route name of router. */
int mg__http_metrics_init(struct mg__http_metrics *m,
                          const struct mg_http_router *router);
void mg__http_metrics_dispose(struct mg__http_metrics *m);
void mg__http_metrics_observe(struct mg__http_metrics *m, const char *route,
                              int code, double seconds);

/* The route names of router, for the metrics (router.c). */
size_t mg__http_router_count(const struct mg_http_router *r);
const char *mg__http_router_name(const struct mg_http_router *r, size_t i);

/* A response is queued, or dropped when the socket is gone (server.c).
 * buf (from mg_malloc) is taken. */
void mg__http_conn_send(struct mg__http_conn *hc, char *buf, size_t len,
                        bool close);
/* Releases the request's hold on its connection (server.c). */
void mg__http_request_done(struct mg_http_request *req);

#define MG__HTTP_UNMATCHED "unmatched"

#endif
