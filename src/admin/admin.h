/* Operational endpoints on the HTTP router: GET /healthz (the process is
 * alive), GET /readyz (it can do its work: database reachable and schema
 * current), GET /metrics (Prometheus text). The admin module knows no
 * other module: whoever has metrics or a readiness condition registers a
 * callback, so adding a subsystem touches nothing here. */
#ifndef MG_ADMIN_ADMIN_H
#define MG_ADMIN_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/compiler.h"

struct mg_http_router;

#define MG_ADMIN_MAX_SOURCES 32

/* Appends Prometheus text for one subsystem. */
typedef void (*mg_admin_metrics_cb)(void *arg, struct mg_buf *out);
/* true when ready; otherwise writes why into reason: a general phrase
 * ("database unreachable"), then optionally ": " and the detail (libpq's
 * text: socket paths, host names). /readyz answers unauthenticated
 * callers, so its body carries the phrase only; the log gets it all. */
typedef bool (*mg_admin_ready_cb)(void *arg, char *reason, size_t size);

struct mg_admin {
    /* private */
    struct {
        mg_admin_metrics_cb fn;
        void *arg;
    } metrics[MG_ADMIN_MAX_SOURCES];
    int nmetrics;
    struct {
        mg_admin_ready_cb fn;
        void *arg;
    } ready[MG_ADMIN_MAX_SOURCES];
    int nready;
    unsigned long long started_us; /* monotonic */
    bool draining;                  /* /readyz says 503 while draining */
    char logged[256];               /* last reason logged; "" = ready */
};

/* Initialises a and adds its three routes to r (a must outlive r's use). */
MG_MUST_CHECK int mg_admin_init(struct mg_admin *a, struct mg_http_router *r);
MG_MUST_CHECK int mg_admin_add_metrics(struct mg_admin *a,
                                       mg_admin_metrics_cb fn, void *arg);
MG_MUST_CHECK int mg_admin_add_ready(struct mg_admin *a, mg_admin_ready_cb fn,
                                     void *arg);
/* Runs the readiness checks as /readyz does, logging a change of the
 * answer once (WARN): the program calls it on a timer too, so a change is
 * logged even when nobody probes /readyz. reason gets why not. */
bool mg_admin_check_ready(struct mg_admin *a, char *reason, size_t size);
/* From now on /readyz answers 503 "draining" (load balancers stop sending). */
void mg_admin_set_draining(struct mg_admin *a);

#endif
