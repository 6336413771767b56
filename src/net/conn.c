/* An accepted TCP connection: reads into the listener's buffer, queues
 * writes with back-pressure, runs one timer, and closes gracefully or
 * hard. Memory is freed in the close phase of the loop, after the user's
 * close callback, so no callback ever runs on freed memory. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/log.h"
#include "net/net_int.h"

/* A queued write. Copied data follows the struct in the same allocation;
 * taken data is held in owned. */
struct write_req {
    uv_write_t req;
    struct mg_net_conn *c;
    mg_net_write_cb cb;
    void *arg;
    char *owned;
};

_Static_assert(MG_NET_EOF == UV_EOF, "net.h's EOF is libuv's");

static _Atomic uint64_t last_conn_id; /* ids are unique across loops */

static void update_reading(struct mg_net_conn *c);

static void
on_handle_closed(uv_handle_t *h)
{
    struct mg_net_conn *c = h->data;
    struct mg_net_listener *l = c->l;

    if (--c->handles > 0)
        return;
    if (c->started) {
        l->st.open--;
        if (l->o.on_close != NULL)
            l->o.on_close(c);
    }
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    mg_free(c);
    mg__net_listener_conn_gone(l);
}

void
mg__net_conn_close_handles(struct mg_net_conn *c)
{
    if (c->handles_closing)
        return;
    c->handles_closing = true;
    c->reading = false;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    if (c->handles > 1)
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

void
mg__net_conn_format_peer(struct mg_net_conn *c)
{
    struct sockaddr_storage ss;
    char ip[INET6_ADDRSTRLEN] = "?";
    int len = sizeof(ss), port = 0;

    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, ip, sizeof(ip));
            port = ntohs(a->sin6_port);
            snprintf(c->ip, sizeof(c->ip), "%s", ip);
            snprintf(c->peer, sizeof(c->peer), "[%s]:%d", ip, port);
            return;
        }
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        snprintf(c->ip, sizeof(c->ip), "%s", ip);
    }
    snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, port);
}

void
mg__net_conn_accepted(struct mg_net_conn *c)
{
    struct mg_net_listener *l = c->l;

    if (uv_timer_init(l->tcp.loop, &c->timer) < 0)
        goto out_reject;
    c->timer.data = c;
    c->handles = 2;
    /* Responses are written whole; Nagle would only delay the last
     * segment of each. */
    (void)uv_tcp_nodelay(&c->tcp, 1);
    if (l->o.keepalive_s > 0)
        (void)uv_tcp_keepalive(&c->tcp, 1, l->o.keepalive_s);
    mg__net_conn_format_peer(c);
    c->id = atomic_fetch_add(&last_conn_id, 1) + 1;
    if (l->o.on_accept(c) != MG_OK)
        goto out_reject;
    c->started = true;
    l->st.accepted++;
    l->st.open++;
    update_reading(c);
    return;

out_reject:
    l->st.rejected++;
    c->closing = true;
    mg__net_conn_close_handles(c);
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct mg_net_conn *c = h->data;

    buf->base = c->l->rbuf;
    buf->len = MG__NET_READ_BUF;
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct mg_net_conn *c = s->data;

    if (nread == 0)
        return;
    if (c->closing) {
        /* Lingering after our FIN: input is discarded until the peer's. */
        if (nread < 0)
            mg__net_conn_close_handles(c);
        return;
    }
    if (nread < 0) {
        c->eof = true;
        update_reading(c);
        c->l->o.on_read(c, (int)nread, NULL, 0);
        return;
    }
    c->l->o.on_read(c, MG_OK, buf->base, (size_t)nread);
}

static void
update_reading(struct mg_net_conn *c)
{
    bool want = c->started && !c->closing && !c->eof && !c->user_paused &&
                !c->bp_paused;
    int rc;

    /* Once lingering, reading belongs to on_shutdown (it reads until the
     * peer's FIN): a late pause or resume must not stop that. */
    if (c->lingering || want == c->reading)
        return;
    if (!want) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
        return;
    }
    rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc < 0) {
        struct mg_log_ctx ctx = {.component = "net", .action = "reading",
                                 .conn_id = c->id, .peer = c->peer};
        mg_log(MG_LOG_WARN, &ctx, "read start failed: %s", mg_strerror(rc));
        mg_net_conn_abort(c);
        return;
    }
    c->reading = true;
}

uint64_t
mg_net_conn_id(const struct mg_net_conn *c)
{
    return c->id;
}

const char *
mg_net_conn_peer(const struct mg_net_conn *c)
{
    return c->peer;
}

const char *
mg_net_conn_ip(const struct mg_net_conn *c)
{
    return c->ip[0] ? c->ip : NULL;
}

struct mg_net_listener *
mg_net_conn_listener(const struct mg_net_conn *c)
{
    return c->l;
}

void *
mg_net_conn_data(const struct mg_net_conn *c)
{
    return c->data;
}

void
mg_net_conn_set_data(struct mg_net_conn *c, void *data)
{
    c->data = data;
}

size_t
mg_net_conn_write_queue(const struct mg_net_conn *c)
{
    return uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp);
}

static void
on_write(uv_write_t *req, int status)
{
    struct write_req *w = MG_CONTAINER_OF(req, struct write_req, req);
    struct mg_net_conn *c = w->c;

    mg_free(w->owned);
    if (c->bp_paused &&
        mg_net_conn_write_queue(c) <= c->l->o.write_low_water) {
        c->bp_paused = false;
        update_reading(c);
    }
    if (w->cb != NULL)
        w->cb(c, status, w->arg);
    mg_free(w);
}

/* Queues w, whose data is base[0..n). Frees w on failure. */
static int
queue_write(struct mg_net_conn *c, struct write_req *w, char *base, size_t n)
{
    uv_buf_t buf = uv_buf_init(base, (unsigned)n);
    int rc;

    w->c = c;
    rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
    if (rc < 0) {
        mg_free(w->owned);
        mg_free(w);
        return rc;
    }
    if (mg_net_conn_write_queue(c) > c->l->o.write_high_water) {
        c->bp_paused = true;
        update_reading(c);
    }
    return MG_OK;
}

int
mg_net_conn_write(struct mg_net_conn *c, const void *data, size_t n,
                  mg_net_write_cb cb, void *arg)
{
    struct write_req *w;

    if (c->closing)
        return MG_ECLOSED;
    if (n > (size_t)UINT32_MAX - sizeof(*w))
        return MG_ETOOBIG;
    w = mg_malloc(sizeof(*w) + n);
    if (w == NULL)
        return MG_ENOMEM;
    memset(w, 0, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    if (n > 0)
        memcpy(w + 1, data, n);
    return queue_write(c, w, (char *)(w + 1), n);
}

int
mg_net_conn_write_take(struct mg_net_conn *c, char *data, size_t n,
                       mg_net_write_cb cb, void *arg)
{
    struct write_req *w;

    if (c->closing || n > UINT32_MAX) {
        mg_free(data);
        return c->closing ? MG_ECLOSED : MG_ETOOBIG;
    }
    w = mg_calloc(1, sizeof(*w));
    if (w == NULL) {
        mg_free(data);
        return MG_ENOMEM;
    }
    w->cb = cb;
    w->arg = arg;
    w->owned = data;
    return queue_write(c, w, data, n);
}

void
mg_net_conn_pause(struct mg_net_conn *c)
{
    c->user_paused = true;
    update_reading(c);
}

void
mg_net_conn_resume(struct mg_net_conn *c)
{
    c->user_paused = false;
    update_reading(c);
}

static void
on_timer(uv_timer_t *t)
{
    struct mg_net_conn *c = t->data;
    mg_net_timeout_cb cb = c->on_timeout;

    if (c->closing) {
        /* The linger deadline of a graceful close. */
        mg__net_conn_close_handles(c);
        return;
    }
    c->on_timeout = NULL;
    if (cb != NULL)
        cb(c);
}

void
mg_net_conn_set_timeout(struct mg_net_conn *c, unsigned ms,
                        mg_net_timeout_cb cb)
{
    if (c->closing)
        return;
    if (ms == 0 || cb == NULL) {
        c->on_timeout = NULL;
        uv_timer_stop(&c->timer);
        return;
    }
    c->on_timeout = cb;
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void
on_shutdown(uv_shutdown_t *req, int status)
{
    struct mg_net_conn *c = req->handle->data;

    if (c->handles_closing)
        return;
    if (status < 0 || c->eof) {
        mg__net_conn_close_handles(c);
        return;
    }
    /* Read (and drop) until the peer's FIN: closing with unread input
     * would send an RST that can destroy our last response in flight. */
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
        mg__net_conn_close_handles(c);
    c->reading = true;
    c->lingering = true;
}

void
mg_net_conn_close(struct mg_net_conn *c)
{
    int rc;

    if (c->closing)
        return;
    c->closing = true;
    c->on_timeout = NULL;
    update_reading(c);
    uv_timer_start(&c->timer, on_timer, c->l->o.close_linger_ms, 0);
    /* uv_shutdown waits for the queued writes before sending the FIN. */
    rc = uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown);
    if (rc < 0)
        mg__net_conn_close_handles(c);
}

void
mg_net_conn_abort(struct mg_net_conn *c)
{
    c->closing = true;
    c->on_timeout = NULL;
    mg__net_conn_close_handles(c);
}

bool
mg_net_conn_closing(const struct mg_net_conn *c)
{
    return c->closing;
}
