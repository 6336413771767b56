/* A TCP listener: binds, accepts, enforces the connection limit and keeps
 * the list of its connections so a server can drain them at shutdown. The
 * listener's memory lives until both its socket and its last connection
 * are closed, because connections read into the listener's buffer. */
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/log.h"
#include "net/net_int.h"

static const struct mg_log_ctx log_ctx = {.component = "net",
                                          .action = "accepting"};

/* After an accept that failed for lack of memory, the next try. libuv
 * stops watching the listening socket until the pending connection is
 * taken with uv_accept, so without a retry the listener would never
 * accept again. */
#define ACCEPT_RETRY_MS 100

static void
listener_free(struct mg_net_listener *l)
{
    mg_free(l->rbuf);
    mg_free(l);
}

static void
maybe_finish(struct mg_net_listener *l)
{
    if (!l->closing || l->handles > 0 || l->nconns > 0)
        return;
    if (l->on_closed != NULL)
        l->on_closed(l, l->closed_arg);
    listener_free(l);
}

void
mg__net_listener_conn_gone(struct mg_net_listener *l)
{
    l->nconns--;
    maybe_finish(l);
}

static void
on_listener_closed(uv_handle_t *h)
{
    struct mg_net_listener *l = h->data;

    l->handles--;
    maybe_finish(l);
}

static void
close_handles(struct mg_net_listener *l)
{
    uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
    if (l->handles > 1)
        uv_close((uv_handle_t *)&l->retry, on_listener_closed);
}

static void on_connection(uv_stream_t *server, int status);

static void
on_retry(uv_timer_t *t)
{
    struct mg_net_listener *l = t->data;

    on_connection((uv_stream_t *)&l->tcp, 0);
}

/* The pending connection could not be taken: try again shortly (it stays
 * in libuv's hands meanwhile, and so does every one behind it). */
static struct mg_net_conn *
accept_later(struct mg_net_listener *l, int rc)
{
    mg_log(MG_LOG_ERROR, &log_ctx, "accept failed: %s; retrying in %d ms",
           mg_strerror(rc), ACCEPT_RETRY_MS);
    uv_timer_start(&l->retry, on_retry, ACCEPT_RETRY_MS, 0);
    return NULL;
}

/* Accepts one pending connection into a new conn and links it. Returns
 * NULL when that fails. */
static struct mg_net_conn *
accept_one(struct mg_net_listener *l)
{
    struct mg_net_conn *c;
    int rc;

    c = mg_calloc(1, sizeof(*c));
    if (c == NULL)
        return accept_later(l, MG_ENOMEM);
    rc = uv_tcp_init(l->tcp.loop, &c->tcp);
    if (rc < 0) {
        mg_free(c);
        return accept_later(l, rc);
    }
    c->tcp.data = c;
    c->handles = 1;
    c->l = l;
    c->next = l->conns;
    if (l->conns != NULL)
        l->conns->prev = c;
    l->conns = c;
    l->nconns++;
    rc = uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&c->tcp);
    if (rc < 0) {
        mg_log(MG_LOG_WARN, &log_ctx, "accept failed: %s", mg_strerror(rc));
        c->closing = true;
        mg__net_conn_close_handles(c);
        return NULL;
    }
    return c;
}

static void
on_connection(uv_stream_t *server, int status)
{
    struct mg_net_listener *l = server->data;
    struct mg_net_conn *c;

    if (status < 0) {
        mg_log(MG_LOG_WARN, &log_ctx, "listen error: %s",
               mg_strerror(status));
        return;
    }
    c = accept_one(l);
    if (c == NULL)
        return;
    /* Accepting and closing at once tells the client "not now" right away,
     * instead of leaving it in the backlog until its own timeout. */
    if (l->o.max_connections > 0 && l->st.open >= l->o.max_connections) {
        struct mg_log_ctx ctx = {.component = "net", .action = "accepting",
                                 .peer = c->peer, .listener = l->o.name};

        mg__net_conn_format_peer(c);
        /* Said, limited: a few stuck or half-open peers can hold every
         * slot until their idle timeout, and the sender that matters sees
         * only connections reset. */
        mg_log_limited(&l->full_log, MG_LOG_WARN, &ctx,
                       "at max_connections (%u open): connection closed",
                       l->o.max_connections);
        l->st.rejected++;
        c->closing = true;
        mg__net_conn_close_handles(c);
        return;
    }
    mg__net_conn_accepted(c);
}

static void
listener_defaults(struct mg_net_listener_opts *o)
{
    if (o->backlog <= 0)
        o->backlog = 511;
    if (o->write_high_water == 0)
        o->write_high_water = 256u * 1024;
    if (o->write_low_water == 0 || o->write_low_water >= o->write_high_water)
        o->write_low_water = o->write_high_water / 4;
    if (o->close_linger_ms == 0)
        o->close_linger_ms = 5000;
}

static int
parse_addr(const char *bind, int port, struct sockaddr_storage *ss)
{
    if (port < 0 || port > 65535)
        return MG_EINVAL;
    if (uv_ip4_addr(bind, port, (struct sockaddr_in *)ss) == 0)
        return MG_OK;
    if (uv_ip6_addr(bind, port, (struct sockaddr_in6 *)ss) == 0)
        return MG_OK;
    return MG_EINVAL;
}

static int
bound_port(struct mg_net_listener *l)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    int rc;

    rc = uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len);
    if (rc < 0)
        return rc;
    if (ss.ss_family == AF_INET6)
        l->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    else
        l->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return MG_OK;
}

int
mg_net_listener_open(uv_loop_t *loop, const struct mg_net_listener_opts *opts,
                     struct mg_net_listener **out)
{
    struct mg_net_listener *l;
    struct sockaddr_storage ss;
    const char *bind = opts->bind ? opts->bind : "127.0.0.1";
    int rc;

    if (opts->on_accept == NULL || opts->on_read == NULL ||
        strlen(bind) >= sizeof(l->bind))
        return MG_EINVAL;
    rc = parse_addr(bind, opts->port, &ss);
    if (rc < 0)
        return rc;
    l = mg_calloc(1, sizeof(*l));
    if (l == NULL)
        return MG_ENOMEM;
    l->o = *opts;
    strcpy(l->bind, bind);
    l->o.bind = l->bind;
    listener_defaults(&l->o);
    l->full_log = MG_LOG_LIMIT_INIT(5, 10);
    l->rbuf = mg_malloc(MG__NET_READ_BUF);
    if (l->rbuf == NULL) {
        rc = MG_ENOMEM;
        goto out_free;
    }
    rc = uv_tcp_init(loop, &l->tcp);
    if (rc < 0)
        goto out_free;
    l->tcp.data = l;
    l->handles = 1;
    rc = uv_timer_init(loop, &l->retry);
    if (rc < 0)
        goto out_close;
    l->retry.data = l;
    l->handles = 2;
    rc = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&ss, 0);
    if (rc < 0)
        goto out_close;
    rc = uv_listen((uv_stream_t *)&l->tcp, l->o.backlog, on_connection);
    if (rc < 0)
        goto out_close;
    rc = bound_port(l);
    if (rc < 0)
        goto out_close;
    *out = l;
    return MG_OK;

out_close:
    l->closing = true;
    close_handles(l); /* frees l */
    return rc;
out_free:
    listener_free(l);
    return rc;
}

int
mg_net_listener_port(const struct mg_net_listener *l)
{
    return l->port;
}

void *
mg_net_listener_data(const struct mg_net_listener *l)
{
    return l->o.data;
}

void
mg_net_listener_stats(const struct mg_net_listener *l, struct mg_net_stats *st)
{
    *st = l->st;
}

void
mg_net_listener_walk(struct mg_net_listener *l,
                     void (*fn)(struct mg_net_conn *c, void *arg), void *arg)
{
    struct mg_net_conn *c, *next;

    /* Closing unlinks nothing until the close phase, so next stays valid. */
    for (c = l->conns; c != NULL; c = next) {
        next = c->next;
        if (c->started && !c->closing)
            fn(c, arg);
    }
}

static void
close_one(struct mg_net_conn *c, void *arg)
{
    if (*(bool *)arg)
        mg_net_conn_abort(c);
    else
        mg_net_conn_close(c);
}

void
mg_net_listener_close_conns(struct mg_net_listener *l, bool hard)
{
    struct mg_net_conn *c, *next;

    if (!hard) {
        mg_net_listener_walk(l, close_one, &hard);
        return;
    }
    /* Hard also hurries connections already in a graceful close. */
    for (c = l->conns; c != NULL; c = next) {
        next = c->next;
        mg_net_conn_abort(c);
    }
}

void
mg_net_listener_close(struct mg_net_listener *l, mg_net_listener_closed_cb cb,
                      void *arg)
{
    if (l->closing)
        return;
    l->closing = true;
    l->on_closed = cb;
    l->closed_arg = arg;
    close_handles(l);
}
