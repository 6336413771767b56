/* Request counters and latency histograms per route name, written in the
 * Prometheus text exposition format (version 0.0.4) for the admin module.
 * Rows are created for every route at start, so a scrape shows zeros
 * rather than missing series. */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "http/http_int.h"

const double mg__http_buckets[MG__HTTP_NBUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,    0.25,  0.5,    1,     2.5,  5,     10,
};

static struct mg__http_route_metrics *
find_route(struct mg__http_metrics *m, const char *name)
{
    for (size_t i = 0; i < m->nroutes; i++)
        if (strcmp(m->routes[i].name, name) == 0)
            return &m->routes[i];
    return NULL;
}

/* The row for name, added when missing; NULL when out of memory. */
static struct mg__http_route_metrics *
get_route(struct mg__http_metrics *m, const char *name)
{
    struct mg__http_route_metrics *r = find_route(m, name);

    if (r != NULL)
        return r;
    if (m->nroutes == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        r = mg_realloc(m->routes, cap * sizeof(*r));
        if (r == NULL)
            return NULL;
        m->routes = r;
        m->cap = cap;
    }
    r = &m->routes[m->nroutes];
    memset(r, 0, sizeof(*r));
    r->name = mg_strdup(name);
    if (r->name == NULL)
        return NULL;
    m->nroutes++;
    return r;
}

int
mg__http_metrics_init(struct mg__http_metrics *m,
                      const struct mg_http_router *router)
{
    memset(m, 0, sizeof(*m));
    if (get_route(m, MG__HTTP_UNMATCHED) == NULL)
        return MG_ENOMEM;
    for (size_t i = 0; i < mg__http_router_count(router); i++)
        if (get_route(m, mg__http_router_name(router, i)) == NULL)
            return MG_ENOMEM;
    return MG_OK;
}

void
mg__http_metrics_dispose(struct mg__http_metrics *m)
{
    for (size_t i = 0; i < m->nroutes; i++)
        mg_free(m->routes[i].name);
    mg_free(m->routes);
    memset(m, 0, sizeof(*m));
}

static void
count_code(struct mg__http_route_metrics *r, int code)
{
    int i;

    for (i = 0; i < r->ncodes; i++) {
        if (r->codes[i].code == code) {
            r->codes[i].n++;
            return;
        }
    }
    if (r->ncodes == MG__HTTP_NCODES) {
        /* The table is full; the last slot becomes code 0 ("other"). */
        r->codes[MG__HTTP_NCODES - 1].code = 0;
        r->codes[MG__HTTP_NCODES - 1].n++;
        return;
    }
    r->codes[r->ncodes].code = code;
    r->codes[r->ncodes].n = 1;
    r->ncodes++;
}

void
mg__http_metrics_observe(struct mg__http_metrics *m, const char *route,
                         int code, double seconds)
{
    struct mg__http_route_metrics *r = get_route(m, route);
    int b;

    if (r == NULL)
        return; /* out of memory: a lost sample is not worth failing for */
    count_code(r, code);
    for (b = 0; b < MG__HTTP_NBUCKETS; b++)
        if (seconds <= mg__http_buckets[b])
            break;
    if (b < MG__HTTP_NBUCKETS)
        r->buckets[b]++;
    r->sum += seconds;
    r->count++;
}

/* Appends a label value escaped as the exposition format requires. */
static int
append_label(struct mg_buf *out, const char *v)
{
    int rc = MG_OK;

    for (; *v && rc == MG_OK; v++) {
        if (*v == '\\' || *v == '"')
            rc = mg_buf_appendc(out, '\\');
        if (rc == MG_OK)
            rc = *v == '\n' ? mg_buf_appendz(out, "\\n")
                            : mg_buf_appendc(out, *v);
    }
    return rc;
}

static int
write_requests(const struct mg__http_metrics *m, struct mg_buf *out)
{
    int rc = mg_buf_appendz(out,
                            "# HELP medgate_http_requests_total HTTP requests "
                            "answered, by route and status code.\n"
                            "# TYPE medgate_http_requests_total counter\n");

    for (size_t i = 0; i < m->nroutes && rc == MG_OK; i++) {
        const struct mg__http_route_metrics *r = &m->routes[i];
        for (int c = 0; c < r->ncodes && rc == MG_OK; c++) {
            rc = mg_buf_appendz(out, "medgate_http_requests_total{route=\"");
            if (rc == MG_OK)
                rc = append_label(out, r->name);
            if (rc == MG_OK)
                rc = mg_buf_appendf(out, "\",code=\"%d\"} %llu\n",
                                    r->codes[c].code,
                                    (unsigned long long)r->codes[c].n);
        }
    }
    return rc;
}

/* One histogram line: name_suffix{route="...",le="..."} value. */
static int
write_series(struct mg_buf *out, const char *suffix, const char *route,
             const char *le, const char *value)
{
    int rc = mg_buf_appendf(out, "medgate_http_request_duration_seconds%s"
                            "{route=\"", suffix);

    if (rc == MG_OK)
        rc = append_label(out, route);
    if (rc == MG_OK && le != NULL)
        rc = mg_buf_appendf(out, "\",le=\"%s", le);
    if (rc == MG_OK)
        rc = mg_buf_appendf(out, "\"} %s\n", value);
    return rc;
}

static int
write_histogram(const struct mg__http_route_metrics *r, struct mg_buf *out)
{
    char le[32], v[32];
    uint64_t cum = 0;
    int rc = MG_OK;

    for (int b = 0; b < MG__HTTP_NBUCKETS && rc == MG_OK; b++) {
        cum += r->buckets[b];
        snprintf(le, sizeof(le), "%g", mg__http_buckets[b]);
        snprintf(v, sizeof(v), "%llu", (unsigned long long)cum);
        rc = write_series(out, "_bucket", r->name, le, v);
    }
    snprintf(v, sizeof(v), "%llu", (unsigned long long)r->count);
    if (rc == MG_OK)
        rc = write_series(out, "_bucket", r->name, "+Inf", v);
    if (rc == MG_OK)
        rc = write_series(out, "_count", r->name, NULL, v);
    snprintf(v, sizeof(v), "%.6f", r->sum);
    if (rc == MG_OK)
        rc = write_series(out, "_sum", r->name, NULL, v);
    return rc;
}

static int
write_gauge(struct mg_buf *out, const char *name, const char *type,
            const char *help, unsigned long long v)
{
    return mg_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name,
                          help, name, type, name, v);
}

int
mg_http_server_write_metrics(const struct mg_http_server *s,
                             struct mg_buf *out)
{
    const struct mg__http_metrics *m = &s->metrics;
    struct mg_net_stats st = s->final;
    int rc;

    if (s->l != NULL)
        mg_net_listener_stats(s->l, &st);
    rc = write_gauge(out, "medgate_http_open_connections", "gauge",
                     "Open HTTP connections.", st.open);
    if (rc == MG_OK)
        rc = write_gauge(out, "medgate_http_connections_accepted_total",
                         "counter", "HTTP connections accepted.",
                         (unsigned long long)st.accepted);
    if (rc == MG_OK)
        rc = write_gauge(out, "medgate_http_connections_rejected_total",
                         "counter",
                         "HTTP connections closed at once (over the limit).",
                         (unsigned long long)st.rejected);
    if (rc == MG_OK)
        rc = write_requests(m, out);
    if (rc == MG_OK)
        rc = mg_buf_appendz(out,
                            "# HELP medgate_http_request_duration_seconds "
                            "Time from the first byte of a request to its "
                            "response.\n"
                            "# TYPE medgate_http_request_duration_seconds "
                            "histogram\n");
    for (size_t i = 0; i < m->nroutes && rc == MG_OK; i++)
        rc = write_histogram(&m->routes[i], out);
    return rc;
}
