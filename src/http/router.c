/* The router: a small table of (method, path, handler) searched in order
 * of path specificity. Tens of routes at most, so a linear scan is fine
 * and keeps the rules easy to read. */
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "http/http.h"
#include "http/http_int.h"

struct route {
    char *method;   /* "GET", ..., or "*" */
    char *path;     /* without the trailing '*' of a prefix */
    bool prefix;
    mg_http_handler_cb handler;
    void *ud;
    char *name;
};

struct mg_http_router {
    struct route *routes;
    size_t n;
    size_t cap;
};

int
mg_http_router_new(struct mg_http_router **out)
{
    *out = mg_calloc(1, sizeof(**out));
    return *out ? MG_OK : MG_ENOMEM;
}

static void
route_dispose(struct route *rt)
{
    mg_free(rt->method);
    mg_free(rt->path);
    mg_free(rt->name);
}

void
mg_http_router_free(struct mg_http_router *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++)
        route_dispose(&r->routes[i]);
    mg_free(r->routes);
    mg_free(r);
}

static bool
same_pattern(const struct route *rt, const char *path, bool prefix)
{
    return rt->prefix == prefix && strcmp(rt->path, path) == 0;
}

static int
check_new(const struct mg_http_router *r, const struct route *nr)
{
    for (size_t i = 0; i < r->n; i++) {
        const struct route *rt = &r->routes[i];
        if (same_pattern(rt, nr->path, nr->prefix) &&
            strcmp(rt->method, nr->method) == 0)
            return MG_EINVAL;
    }
    return MG_OK;
}

int
mg_http_router_add(struct mg_http_router *r, const char *method,
                   const char *path, mg_http_handler_cb handler, void *ud,
                   const char *route_name)
{
    struct route rt = {0};
    size_t plen;
    int rc;

    if (method == NULL || path == NULL || handler == NULL ||
        route_name == NULL || path[0] != '/')
        return MG_EINVAL;
    plen = strlen(path);
    rt.prefix = path[plen - 1] == '*';
    rt.method = mg_strdup(method);
    rt.path = mg_strndup(path, rt.prefix ? plen - 1 : plen);
    rt.name = mg_strdup(route_name);
    rt.handler = handler;
    rt.ud = ud;
    rc = MG_ENOMEM;
    if (rt.method == NULL || rt.path == NULL || rt.name == NULL)
        goto out_dispose;
    rc = check_new(r, &rt);
    if (rc < 0)
        goto out_dispose;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        struct route *routes = mg_realloc(r->routes, cap * sizeof(*routes));
        rc = MG_ENOMEM;
        if (routes == NULL)
            goto out_dispose;
        r->routes = routes;
        r->cap = cap;
    }
    r->routes[r->n++] = rt;
    return MG_OK;

out_dispose:
    route_dispose(&rt);
    return rc;
}

/* How well rt's path matches: 0 not at all, else higher is better (an
 * exact path beats every prefix, a longer prefix a shorter one). */
static size_t
path_score(const struct route *rt, struct mg_str path)
{
    struct mg_str pat = mg_str_from(rt->path);

    if (rt->prefix)
        return mg_str_has_prefix(path, pat) ? pat.len + 1 : 0;
    return mg_str_eq(path, pat) ? SIZE_MAX : 0;
}

static bool
method_matches(const struct route *rt, struct mg_str method)
{
    return strcmp(rt->method, "*") == 0 || mg_str_eqz(method, rt->method);
}

/* Appends ", method" (and HEAD after GET) to allow. */
static int
add_allow(struct mg_buf *allow, const char *method)
{
    int rc = MG_OK;

    if (strcmp(method, "*") == 0)
        method = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
    if (allow->len > 0)
        rc = mg_buf_appendz(allow, ", ");
    if (rc == MG_OK)
        rc = mg_buf_appendz(allow, method);
    if (rc == MG_OK && strcmp(method, "GET") == 0)
        rc = mg_buf_appendz(allow, ", HEAD");
    return rc;
}

static void
fill_match(const struct route *rt, struct mg_http_route_match *m)
{
    m->handler = rt->handler;
    m->ud = rt->ud;
    m->name = rt->name;
}

int
mg_http_router_find(const struct mg_http_router *r, struct mg_str method,
                    struct mg_str path, struct mg_http_route_match *m,
                    struct mg_buf *allow)
{
    const struct route *best = NULL, *get = NULL;
    size_t best_score = 0;
    int rc;

    for (size_t i = 0; i < r->n; i++) {
        size_t score = path_score(&r->routes[i], path);
        if (score > best_score) {
            best_score = score;
            best = &r->routes[i];
        }
    }
    if (best == NULL)
        return MG_ENOTFOUND;
    /* Among the routes of the winning pattern, the method decides. */
    for (size_t i = 0; i < r->n; i++) {
        const struct route *rt = &r->routes[i];
        if (!same_pattern(rt, best->path, best->prefix))
            continue;
        if (method_matches(rt, method)) {
            fill_match(rt, m);
            return MG_OK;
        }
        if (strcmp(rt->method, "GET") == 0)
            get = rt;
    }
    if (get != NULL && mg_str_eqz(method, "HEAD")) {
        fill_match(get, m);
        return MG_OK;
    }
    for (size_t i = 0; allow != NULL && i < r->n; i++) {
        const struct route *rt = &r->routes[i];
        if (!same_pattern(rt, best->path, best->prefix))
            continue;
        rc = add_allow(allow, rt->method);
        if (rc < 0)
            return rc;
    }
    return MG_EUNSUPPORTED;
}

size_t
mg__http_router_count(const struct mg_http_router *r)
{
    return r->n;
}

const char *
mg__http_router_name(const struct mg_http_router *r, size_t i)
{
    return r->routes[i].name;
}
