/* MLLP listener on net/. Each connection keeps a FIFO of reply slots, one
 * per received frame, so ACKs leave in arrival order even when commits
 * finish out of order; a slot is written only when it and every slot
 * before it are ready. A connection's state outlives the socket until the
 * intake has answered every frame it took (nothing is freed while the
 * intake still holds a pointer to it).
 *
 * A sender that half-closes (shutdown(SHUT_WR) after its last frame) still
 * gets every ACK: the connection closes only once the last one is written.
 * A pipelining sender gets at most MAX_PENDING frames taken at once, even
 * when one read brings more: the rest of that read is held, unread as far
 * as the sender can tell, until ACKs make room. */
#include "mllp/server.h"

#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/log.h"
#include "intake/intake.h"
#include "mllp/mllp.h"
#include "net/net.h"

/* Frames waiting for their ACK before we stop reading the connection:
 * ordinary senders keep one in flight, so this only bounds a pipeliner. */
#define MAX_PENDING 32

enum slot_action { SLOT_WAIT, SLOT_SEND, SLOT_SEND_CLOSE, SLOT_CLOSE };

struct slot {
    struct slot *next;
    struct mllp_conn *mc;
    enum slot_action action;
    char *frame; /* the encoded ACK (owned) */
    size_t len;
};

struct mllp_conn {
    struct mg_mllp_server *srv;
    struct mg_net_conn *net; /* NULL once the socket is closed */
    struct mg_mllp_decoder dec;
    struct mg_intake_seq seq; /* its messages commit in arrival order */
    struct slot *head, *tail;
    unsigned pending; /* slots not yet written */
    struct mg_buf held; /* bytes read past MAX_PENDING frames, not decoded */
    bool feeding;       /* decoding held bytes (no nested decoding) */
    bool peer_done;     /* the sender half-closed: close after the ACKs */
    bool ending;        /* a close is queued: no later frame is taken */
    bool paused;
    struct mg_log_ctx log;
};

struct mg_mllp_server {
    struct mg_net_listener *listener;
    const struct mg_conf_listener *conf;
    struct mg_intake *intake;
    bool draining;
    void (*closed_cb)(void *);
    void *closed_arg;
    /* counters */
    unsigned long long frames, acks_sent, oversize, closed_no_ack;
    unsigned long long junk_bytes; /* outside frames, of closed connections */
    unsigned long long not_allowed; /* peers outside allow_from, closed */
    unsigned long long over_address; /* over max_connections_per_address */
    unsigned long long unfinished;   /* connections ended inside a frame */
    /* lines a sender can repeat at will: 5 each per 10 s a listener */
    struct mg_log_limit not_stored_log, oversize_log, junk_log, allow_log,
        address_log, unfinished_log;
};

static void flush_slots(struct mllp_conn *mc);
static void feed_held(struct mllp_conn *mc);

static void
conn_free_if_done(struct mllp_conn *mc)
{
    if (mc->net != NULL || mc->head != NULL)
        return;
    mg_mllp_decoder_dispose(&mc->dec);
    mg_buf_dispose(&mc->held);
    mg_free(mc);
}

static void
drop_slots_written(struct mllp_conn *mc)
{
    /* Called when the socket is gone: ready slots can never be written. */
    struct slot **p = &mc->head, *s;

    while ((s = *p) != NULL) {
        if (s->action != SLOT_WAIT) {
            *p = s->next;
            mg_free(s->frame);
            mg_free(s);
            mc->pending--;
        } else {
            p = &s->next;
        }
    }
    mc->tail = NULL;
    for (s = mc->head; s != NULL; s = s->next)
        mc->tail = s;
}

static struct slot *
slot_new(struct mllp_conn *mc)
{
    struct slot *s = mg_calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->mc = mc;
    if (mc->tail)
        mc->tail->next = s;
    else
        mc->head = s;
    mc->tail = s;
    mc->pending++;
    return s;
}

/* Sets the ACK (payload, unframed) and what follows it. A slot that closes
 * the connection ends it: frames behind it would be stored with no ACK to
 * tell the sender, whose resend of this one would then commit after them. */
static void
slot_fill(struct slot *s, enum slot_action action, const char *ack,
          size_t len)
{
    struct mg_buf b;

    s->action = action;
    if (action != SLOT_SEND)
        s->mc->ending = true;
    if (ack == NULL || len == 0) {
        if (action == SLOT_SEND_CLOSE)
            s->action = SLOT_CLOSE;
        return;
    }
    mg_buf_init(&b, 0);
    if (mg_mllp_encode(&b, mg_str_n(ack, len)) != MG_OK) {
        mg_buf_dispose(&b);
        s->action = SLOT_CLOSE; /* cannot frame it: the sender will resend */
        return;
    }
    s->frame = mg_buf_take(&b, &s->len);
}

/* Room for another frame: held bytes are decoded before the socket is
 * read again, so frames are taken in the order they were sent. While the
 * intake holds too many bytes, a connection with a frame waiting waits
 * for its answer (which frees some) before it is read again: a few
 * pipelining clients of large frames cannot fill the memory. */
static bool
has_room(const struct mllp_conn *mc)
{
    return mc->pending < MAX_PENDING && !mc->srv->draining && !mc->ending &&
           (mc->pending == 0 || !mg_intake_full(mc->srv->intake));
}

static void
update_reading(struct mllp_conn *mc)
{
    bool want_pause;

    if (mc->net == NULL)
        return;
    if (mc->held.len > 0 && has_room(mc))
        feed_held(mc);
    want_pause = !has_room(mc) || mc->held.len > 0;
    if (mc->net == NULL || want_pause == mc->paused)
        return;
    mc->paused = want_pause;
    if (want_pause)
        mg_net_conn_pause(mc->net);
    else
        mg_net_conn_resume(mc->net);
}

static void
flush_slots(struct mllp_conn *mc)
{
    struct slot *s;
    bool close = false;

    while ((s = mc->head) != NULL && s->action != SLOT_WAIT && !close) {
        mc->head = s->next;
        if (mc->head == NULL)
            mc->tail = NULL;
        mc->pending--;
        if (s->frame != NULL && mc->net != NULL) {
            if (mg_net_conn_write_take(mc->net, s->frame, s->len, NULL,
                                       NULL) == MG_OK)
                mc->srv->acks_sent++;
            s->frame = NULL; /* taken, even on failure */
        }
        close = s->action == SLOT_SEND_CLOSE || s->action == SLOT_CLOSE;
        mg_free(s->frame);
        mg_free(s);
    }
    if (mc->net == NULL) {
        conn_free_if_done(mc);
        return;
    }
    if (close) {
        mc->srv->closed_no_ack += mc->pending > 0;
        mg_net_conn_close(mc->net);
        return;
    }
    if ((mc->srv->draining || mc->peer_done) && mc->head == NULL) {
        mg_net_conn_close(mc->net);
        return;
    }
    update_reading(mc);
}

static void
on_intake_done(void *arg, int rc, const char *ack, size_t ack_len)
{
    struct slot *s = arg;
    struct mllp_conn *mc = s->mc;
    const struct mg_conf_listener *conf;

    if (mc->net == NULL) {
        /* The socket is gone, and at shutdown the server may be too (it
         * is freed when its last socket closes, not when its last commit
         * ends): nothing can be written, touch nothing of it. */
        slot_fill(s, SLOT_CLOSE, NULL, 0);
        flush_slots(mc);
        return;
    }
    conf = mc->srv->conf;
    if (rc == MG_OK)
        slot_fill(s, SLOT_SEND, ack, ack_len);
    else if (conf->db_down_reply == MG_DB_DOWN_AR && ack != NULL)
        slot_fill(s, SLOT_SEND_CLOSE, ack, ack_len);
    else {
        /* Not stored: no ACK. Closing makes the sender retransmit. */
        if (rc == MG_EINDOUBT)
            mg_log_limited(&mc->srv->not_stored_log, MG_LOG_WARN, &mc->log,
                           "message's commit outcome unknown (it may be "
                           "stored: its resend then gets the original ACK): "
                           "closing without ACK so the sender retries");
        else
            mg_log_limited(&mc->srv->not_stored_log, MG_LOG_WARN, &mc->log,
                           "message not stored (%s): closing without ACK so "
                           "the sender retries", mg_strerror(rc));
        slot_fill(s, SLOT_CLOSE, NULL, 0);
    }
    flush_slots(mc);
}

static void
refuse_oversize(struct mllp_conn *mc, struct mg_str head)
{
    struct slot *s = slot_new(mc);
    struct mg_buf ack;

    mc->srv->oversize++;
    mg_log_limited(&mc->srv->oversize_log, MG_LOG_WARN, &mc->log,
                   "frame larger than %ld bytes refused",
                   mc->srv->conf->max_frame_bytes);
    if (s == NULL) {
        mg_net_conn_abort(mc->net);
        return;
    }
    mg_buf_init(&ack, 0);
    if (mg_intake_reject_ack(mc->srv->conf, head, "frame exceeds the "
                             "listener's max_frame_bytes", &ack) == MG_OK)
        slot_fill(s, SLOT_SEND_CLOSE, ack.ptr, ack.len);
    else
        slot_fill(s, SLOT_CLOSE, NULL, 0);
    mg_buf_dispose(&ack);
    flush_slots(mc);
}

static void
take_frame(struct mllp_conn *mc, struct mg_str frame)
{
    struct slot *s = slot_new(mc);

    mc->srv->frames++;
    if (s == NULL) {
        mg_net_conn_abort(mc->net); /* no slot to close it in order */
        return;
    }
    if (mg_intake_submit(mc->srv->intake, mc->srv->conf,
                         mg_net_conn_ip(mc->net), &mc->seq, frame,
                         on_intake_done, s) != MG_OK) {
        slot_fill(s, SLOT_CLOSE, NULL, 0);
        flush_slots(mc);
        return;
    }
    update_reading(mc);
}

static void
on_idle(struct mg_net_conn *c)
{
    struct mllp_conn *mc = mg_net_conn_data(c);

    if (mc->head != NULL) { /* waiting for a commit is not idleness */
        mg_net_conn_set_timeout(c, (unsigned)mc->srv->conf->idle_timeout_ms,
                                on_idle);
        return;
    }
    if (mg_mllp_decoder_in_frame(&mc->dec))
        mg_log_limited(&mc->srv->unfinished_log, MG_LOG_WARN, &mc->log,
                       "idle timeout in the middle of a frame (%zu bytes "
                       "and no end block 0x1C): dropped, closing",
                       mg_mllp_decoder_partial(&mc->dec));
    else
        mg_log(MG_LOG_INFO, &mc->log, "idle timeout, closing");
    mg_net_conn_close(c);
}

/* Decodes data[0..n) and takes its frames while there is room for them.
 * Returns the bytes used: all of them, unless the connection is closing or
 * MAX_PENDING frames wait for their ACKs. */
static size_t
feed(struct mllp_conn *mc, const char *data, size_t n)
{
    struct mg_str frame;
    size_t used, total = 0;
    int rc;

    while (total < n && !mg_net_conn_closing(mc->net) && has_room(mc)) {
        rc = mg_mllp_decoder_feed(&mc->dec, data + total, n - total, &used,
                                  &frame);
        total += used;
        if (rc == MG_OK)
            take_frame(mc, frame);
        else if (rc == MG_ETOOBIG)
            refuse_oversize(mc, frame);
        else if (rc == MG_ENOMEM)
            mg_net_conn_abort(mc->net);
    }
    return total;
}

static void
feed_held(struct mllp_conn *mc)
{
    if (mc->feeding)
        return; /* a frame taken from the held bytes asked for more */
    mc->feeding = true;
    mg_buf_consume(&mc->held, feed(mc, mc->held.ptr, mc->held.len));
    mc->feeding = false;
}

static void
on_read(struct mg_net_conn *c, int status, const char *data, size_t n)
{
    struct mllp_conn *mc = mg_net_conn_data(c);
    uint64_t frames;
    bool in_frame;
    size_t used;

    if (status == MG_NET_EOF && mc->head != NULL) {
        /* A half-close: the sender may still be reading. Its frames are
         * being committed; their ACKs go out, then the connection closes
         * (flush_slots). */
        mc->peer_done = true;
        return;
    }
    if (status != MG_OK) {
        mg_net_conn_close(c); /* EOF or error: ACKs already queued still go */
        return;
    }
    frames = mc->dec.stats.frames;
    in_frame = mg_mllp_decoder_in_frame(&mc->dec);
    used = feed(mc, data, n);
    /* Only a frame that starts or ends is activity: bytes of one frame, or
     * junk between frames, a byte now and then, kept a connection open
     * for ever (slowloris). A frame must come whole within
     * idle_timeout_ms of its start. */
    if (mc->dec.stats.frames != frames ||
        (!in_frame && mg_mllp_decoder_in_frame(&mc->dec)))
        mg_net_conn_set_timeout(c, (unsigned)mc->srv->conf->idle_timeout_ms,
                                on_idle);
    if (used < n && !mg_net_conn_closing(c)) {
        /* Over MAX_PENDING within one read: keep the rest for later (the
         * read buffer is the listener's, reused by the next read). */
        if (mg_buf_append(&mc->held, data + used, n - used) != MG_OK) {
            mg_net_conn_abort(c);
            return;
        }
        update_reading(mc);
    }
}

/* MLLP has no authentication of its own: a listener's allow_from is the
 * one check of who may send (with a firewall in front). */
static bool
peer_allowed(const struct mg_conf_listener *li, const char *ip)
{
    if (li->nallow == 0)
        return true;
    for (int i = 0; i < li->nallow; i++)
        if (mg_cidr_match(&li->allow_from[i], ip))
            return true;
    return false;
}

struct same_address {
    const char *ip;
    unsigned n;
};

static void
count_same_address(struct mg_net_conn *c, void *arg)
{
    struct same_address *s = arg;
    const char *ip = mg_net_conn_ip(c);

    s->n += ip != NULL && strcmp(ip, s->ip) == 0;
}

/* Whether the peer has max_connections_per_address open already (the new
 * connection is not among them yet): one host must not take every slot
 * of the listener and keep the others' senders out. */
static bool
address_full(const struct mg_mllp_server *srv, const char *ip)
{
    struct same_address s = {ip, 0};

    if (srv->conf->max_connections_per_address == 0 || ip == NULL)
        return false;
    mg_net_listener_walk(srv->listener, count_same_address, &s);
    return s.n >= (unsigned)srv->conf->max_connections_per_address;
}

static int
on_accept(struct mg_net_conn *c)
{
    struct mg_mllp_server *srv = mg_net_listener_data(mg_net_conn_listener(c));
    struct mg_log_ctx peer = {.component = "mllp",
                              .conn_id = mg_net_conn_id(c),
                              .peer = mg_net_conn_peer(c),
                              .listener = srv->conf->name};
    struct mllp_conn *mc;

    if (srv->draining)
        return MG_ECANCELED; /* shutting down: the sender goes elsewhere */
    if (!peer_allowed(srv->conf, mg_net_conn_ip(c))) {
        srv->not_allowed++;
        mg_log_limited(&srv->allow_log, MG_LOG_WARN, &peer,
                       "address not in listener %s's allow_from: closed",
                       srv->conf->name);
        return MG_EREFUSED;
    }
    if (address_full(srv, mg_net_conn_ip(c))) {
        srv->over_address++;
        mg_log_limited(&srv->address_log, MG_LOG_WARN, &peer,
                       "address has listener %s's max_connections_per_address "
                       "(%d) open already: closed", srv->conf->name,
                       srv->conf->max_connections_per_address);
        return MG_EREFUSED;
    }
    mc = mg_calloc(1, sizeof(*mc));
    if (mc == NULL)
        return MG_ENOMEM;
    mc->srv = srv;
    mc->net = c;
    mg_mllp_decoder_init(&mc->dec, (size_t)srv->conf->max_frame_bytes);
    mg_buf_init(&mc->held, 0);
    mc->log.component = "mllp";
    mc->log.conn_id = mg_net_conn_id(c);
    mc->log.peer = mg_net_conn_peer(c);
    mc->log.listener = srv->conf->name;
    mg_net_conn_set_data(c, mc);
    mg_net_conn_set_timeout(c, (unsigned)srv->conf->idle_timeout_ms, on_idle);
    mg_log(MG_LOG_DEBUG, &mc->log, "connected to listener %s",
           srv->conf->name);
    return MG_OK;
}

static void
on_close(struct mg_net_conn *c)
{
    struct mllp_conn *mc = mg_net_conn_data(c);

    if (mc == NULL)
        return;
    /* Bytes that were never inside a frame: most often a sender that
     * writes HL7 without MLLP's start and end blocks, and then waits for
     * an ACK that cannot come. Said when its connection ends having sent
     * no frame at all; counted always (a sender ending frames with CR LF
     * leaves one byte between frames, which is no fault worth a line). */
    mc->srv->junk_bytes += mc->dec.stats.junk;
    /* A sender whose end block never comes (a broken 0x1C, a firewall
     * that cuts large frames) loses its message here without an answer. */
    if (mg_mllp_decoder_in_frame(&mc->dec)) {
        mc->srv->unfinished++;
        mg_log_limited(&mc->srv->unfinished_log, MG_LOG_WARN, &mc->log,
                       "connection ended in the middle of a frame (%zu "
                       "bytes and no end block 0x1C): dropped",
                       mg_mllp_decoder_partial(&mc->dec));
    }
    if (mc->dec.stats.junk > 0 && mc->dec.stats.frames == 0)
        mg_log_limited(&mc->srv->junk_log, MG_LOG_WARN, &mc->log,
                       "connection ended with %llu bytes and no MLLP frame, "
                       "skipped (a sender without the 0x0B start block?)",
                       (unsigned long long)mc->dec.stats.junk);
    mc->net = NULL;
    mc->log.peer = NULL; /* the string lived in c */
    drop_slots_written(mc);
    conn_free_if_done(mc);
}

int
mg_mllp_server_open(struct uv_loop_s *loop,
                    const struct mg_conf_listener *conf,
                    struct mg_intake *intake, struct mg_mllp_server **out)
{
    struct mg_net_listener_opts opts;
    struct mg_mllp_server *s = mg_calloc(1, sizeof(*s));
    int rc;

    if (s == NULL)
        return MG_ENOMEM;
    s->conf = conf;
    s->intake = intake;
    s->not_stored_log = MG_LOG_LIMIT_INIT(5, 10);
    s->oversize_log = MG_LOG_LIMIT_INIT(5, 10);
    s->junk_log = MG_LOG_LIMIT_INIT(5, 10);
    s->allow_log = MG_LOG_LIMIT_INIT(5, 10);
    s->address_log = MG_LOG_LIMIT_INIT(5, 10);
    s->unfinished_log = MG_LOG_LIMIT_INIT(5, 10);
    memset(&opts, 0, sizeof(opts));
    opts.bind = conf->bind;
    opts.port = conf->port;
    opts.max_connections = (unsigned)conf->max_connections;
    opts.keepalive_s = 60; /* NAT boxes drop idle MLLP links otherwise */
    opts.on_accept = on_accept;
    opts.on_read = on_read;
    opts.on_close = on_close;
    opts.data = s;
    opts.name = conf->name;
    rc = mg_net_listener_open(loop, &opts, &s->listener);
    if (rc != MG_OK) {
        mg_free(s);
        return rc;
    }
    *out = s;
    return MG_OK;
}

int
mg_mllp_server_port(const struct mg_mllp_server *s)
{
    return mg_net_listener_port(s->listener);
}

static void
drain_conn(struct mg_net_conn *c, void *arg)
{
    struct mllp_conn *mc = mg_net_conn_data(c);

    (void)arg;
    if (mc == NULL)
        return;
    if (mc->head == NULL)
        mg_net_conn_close(c);
    else
        update_reading(mc);
}

void
mg_mllp_server_drain(struct mg_mllp_server *s)
{
    s->draining = true;
    mg_net_listener_walk(s->listener, drain_conn, NULL);
}

static void
on_listener_closed(struct mg_net_listener *l, void *arg)
{
    struct mg_mllp_server *s = arg;

    (void)l;
    if (s->closed_cb)
        s->closed_cb(s->closed_arg);
    mg_free(s);
}

void
mg_mllp_server_close(struct mg_mllp_server *s, void (*cb)(void *), void *arg)
{
    s->draining = true;
    s->closed_cb = cb;
    s->closed_arg = arg;
    mg_net_listener_close_conns(s->listener, false);
    mg_net_listener_close(s->listener, on_listener_closed, s);
}

unsigned
mg_mllp_server_open_connections(const struct mg_mllp_server *s)
{
    struct mg_net_stats st;

    mg_net_listener_stats(s->listener, &st);
    return st.open;
}

void
mg_mllp_server_write_metrics(const struct mg_mllp_server *s,
                             struct mg_buf *out)
{
    struct mg_net_stats st;
    const char *n = s->conf->name;

    mg_net_listener_stats(s->listener, &st);
    (void)mg_buf_appendf(
        out,
        "medgate_mllp_open_connections{listener=\"%s\"} %u\n"
        "medgate_mllp_accepted_total{listener=\"%s\"} %llu\n"
        "medgate_mllp_rejected_connections_total{listener=\"%s\"} %llu\n"
        "medgate_mllp_frames_total{listener=\"%s\"} %llu\n"
        "medgate_mllp_acks_sent_total{listener=\"%s\"} %llu\n"
        "medgate_mllp_oversize_frames_total{listener=\"%s\"} %llu\n"
        "medgate_mllp_skipped_bytes_total{listener=\"%s\"} %llu\n"
        "medgate_mllp_not_allowed_total{listener=\"%s\"} %llu\n"
        "medgate_mllp_address_limit_total{listener=\"%s\"} %llu\n"
        "medgate_mllp_unfinished_frames_total{listener=\"%s\"} %llu\n",
        n, st.open, n, (unsigned long long)st.accepted, n,
        (unsigned long long)st.rejected, n, s->frames, n, s->acks_sent, n,
        s->oversize, n, s->junk_bytes, n, s->not_allowed, n,
        s->over_address, n, s->unfinished);
}
