/* /healthz, /readyz and /metrics. These answer anyone who can reach the
 * HTTP port (there is no authentication on them), so /readyz says which
 * check failed in general words and leaves the detail to the log. */
#include "admin/admin.h"

#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/log.h"
#include "http/http.h"

static void
on_healthz(struct mg_http_request *req, void *ud)
{
    (void)ud;
    mg_http_respond(req, 200, "text/plain; charset=utf-8", NULL, "ok\n", 3);
}

/* Logs each change of readiness once, with the whole reason: the detail
 * the body leaves out, without a line for every load balancer probe.
 * WARN both ways, so that an operator at log.level warn sees the gateway
 * stop and start taking messages, whatever the reason (a schema behind,
 * an organization deactivated: the store does not log every one). */
static void
log_change(struct mg_admin *a, const char *reason)
{
    static const struct mg_log_ctx ctx = {.component = "admin",
                                          .action = "checking readiness"};

    if (strncmp(reason, a->logged, sizeof(a->logged) - 1) == 0)
        return;
    if (reason[0] != '\0')
        mg_log(MG_LOG_WARN, &ctx, "not ready: %s", reason);
    else
        mg_log(MG_LOG_WARN, &ctx, "ready again");
    snprintf(a->logged, sizeof(a->logged), "%s", reason);
}

bool
mg_admin_check_ready(struct mg_admin *a, char *reason, size_t size)
{
    for (int i = 0; i < a->nready; i++) {
        reason[0] = '\0';
        if (!a->ready[i].fn(a->ready[i].arg, reason, size)) {
            if (reason[0] == '\0')
                snprintf(reason, size, "(no reason given)");
            log_change(a, reason);
            return false;
        }
    }
    log_change(a, "");
    return true;
}

static void
on_readyz(struct mg_http_request *req, void *ud)
{
    struct mg_admin *a = ud;
    char reason[256], body[300];
    int n;

    if (a->draining) {
        mg_http_respond(req, 503, "text/plain; charset=utf-8", NULL,
                        "draining\n", 9);
        return;
    }
    if (!mg_admin_check_ready(a, reason, sizeof(reason))) {
        /* Up to the first ':' only: the detail after it (libpq's socket
         * paths and host names) is for the log, not anyone. */
        n = snprintf(body, sizeof(body), "not ready: %.*s\n",
                     (int)strcspn(reason, ":"), reason);
        mg_http_respond(req, 503, "text/plain; charset=utf-8", NULL, body,
                        (size_t)MG_MIN(n, (int)sizeof(body) - 1));
        return;
    }
    mg_http_respond(req, 200, "text/plain; charset=utf-8", NULL, "ready\n", 6);
}

static void
on_metrics(struct mg_http_request *req, void *ud)
{
    struct mg_admin *a = ud;
    struct mg_buf out;
    double uptime = (double)(mg_clock_mono_us() - a->started_us) / 1e6;

    mg_buf_init(&out, 0);
    (void)mg_buf_appendf(&out,
                         "# HELP medgate_uptime_seconds Time since start.\n"
                         "# TYPE medgate_uptime_seconds gauge\n"
                         "medgate_uptime_seconds %.3f\n",
                         uptime);
    for (int i = 0; i < a->nmetrics; i++)
        a->metrics[i].fn(a->metrics[i].arg, &out);
    mg_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8",
                    NULL, out.ptr, out.len);
    mg_buf_dispose(&out);
}

int
mg_admin_init(struct mg_admin *a, struct mg_http_router *r)
{
    int rc;

    memset(a, 0, sizeof(*a));
    a->started_us = mg_clock_mono_us();
    rc = mg_http_router_add(r, "GET", "/healthz", on_healthz, a, "healthz");
    if (rc == MG_OK)
        rc = mg_http_router_add(r, "GET", "/readyz", on_readyz, a, "readyz");
    if (rc == MG_OK)
        rc = mg_http_router_add(r, "GET", "/metrics", on_metrics, a,
                                "metrics");
    return rc;
}

int
mg_admin_add_metrics(struct mg_admin *a, mg_admin_metrics_cb fn, void *arg)
{
    if (a->nmetrics == MG_ADMIN_MAX_SOURCES)
        return MG_ETOOBIG;
    a->metrics[a->nmetrics].fn = fn;
    a->metrics[a->nmetrics++].arg = arg;
    return MG_OK;
}

int
mg_admin_add_ready(struct mg_admin *a, mg_admin_ready_cb fn, void *arg)
{
    if (a->nready == MG_ADMIN_MAX_SOURCES)
        return MG_ETOOBIG;
    a->ready[a->nready].fn = fn;
    a->ready[a->nready++].arg = arg;
    return MG_OK;
}

void
mg_admin_set_draining(struct mg_admin *a)
{
    a->draining = true;
}
