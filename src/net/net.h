/* The only socket glue in medgate: TCP listeners and the connections they
 * accept, on one libuv loop. HTTP (src/http/) and MLLP (src/mllp/) servers
 * are built on it and never touch uv_tcp_t themselves.
 *
 * A connection delivers bytes to a read callback and queues writes. It
 * owns the things every protocol server needs and gets wrong when each
 * writes its own: a connection limit, per-phase timeouts on one timer,
 * back-pressure (reading stops while too many written bytes wait for the
 * peer), a graceful close that sends what is queued before the FIN and
 * then waits briefly for the peer's FIN (so a reply to a request we refuse
 * mid-body is not destroyed by a TCP RST), and memory that is freed only
 * after the close callback, never while a callback is on the stack.
 *
 * Everything here runs on the loop thread: every function must be called
 * from it and every callback runs on it. All memory comes from mg_malloc.
 * This header does not include uv.h; callers pass their uv_loop_t. */
#ifndef MG_NET_NET_H
#define MG_NET_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/compiler.h"

struct uv_loop_s;
struct mg_net_listener;
struct mg_net_conn;

/* The read status that says the peer finished sending (libuv's UV_EOF). */
#define MG_NET_EOF (-4095)

/* Bytes arrived (status MG_OK, n > 0), the peer finished sending (status
 * MG_NET_EOF, n 0) or reading failed (a negative libuv code, n 0). data is
 * valid only during the call: copy what must be kept. After EOF or an
 * error no more reads come; the callback normally closes the connection. */
typedef void (*mg_net_read_cb)(struct mg_net_conn *c, int status,
                               const char *data, size_t n);
/* A connection was accepted (reading has not started). Return MG_OK to
 * keep it; reading starts when the callback returns. Any other value
 * closes it at once, without a close callback. Typically allocates the
 * protocol state and stores it with mg_net_conn_set_data. */
typedef int (*mg_net_accept_cb)(struct mg_net_conn *c);
/* The connection is closed. Called exactly once for every connection whose
 * accept callback returned MG_OK; c is freed when it returns. */
typedef void (*mg_net_close_cb)(struct mg_net_conn *c);
/* A write finished: MG_OK once the bytes are handed to the kernel, or a
 * negative libuv code (UV_ECANCELED when the connection closed first). */
typedef void (*mg_net_write_cb)(struct mg_net_conn *c, int status, void *arg);
/* The connection's timer expired (see mg_net_conn_set_timeout). */
typedef void (*mg_net_timeout_cb)(struct mg_net_conn *c);
/* The listener is closed and its last connection is gone. */
typedef void (*mg_net_listener_closed_cb)(struct mg_net_listener *l,
                                          void *arg);

/* How a listener binds and what its connections do. Zero fields take the
 * default named in the comment. */
struct mg_net_listener_opts {
    const char *bind;         /* IPv4 or IPv6 literal; NULL: "127.0.0.1" */
    int port;                 /* 0: the kernel picks one */
    int backlog;              /* listen(2) backlog; 0: 511 */
    unsigned max_connections; /* open at once; more are closed; 0: none */
    unsigned keepalive_s;     /* TCP keepalive idle seconds; 0: off */
    size_t write_high_water;  /* queued write bytes that stop reading;
                                 0: 256 KiB */
    size_t write_low_water;   /* ... and that resume it; 0: high / 4 */
    unsigned close_linger_ms; /* graceful close gives up after this;
                                 0: 5000 */
    mg_net_accept_cb on_accept; /* required */
    mg_net_read_cb on_read;     /* required */
    mg_net_close_cb on_close;   /* optional */
    void *data;                 /* the listener's user data */
    const char *name;           /* for log lines (borrowed); may be NULL */
};

/* Counters of a listener, for metrics. */
struct mg_net_stats {
    uint64_t accepted; /* connections accepted and kept */
    uint64_t rejected; /* connections closed at once: over max_connections
                          or refused by on_accept */
    unsigned open;     /* connections not yet closed (closing included) */
};

/* Binds opts->bind:opts->port and starts accepting. opts is copied (bind
 * too). *out stays valid until the closed callback of
 * mg_net_listener_close. MG_OK; MG_EINVAL (no callbacks, bad address);
 * MG_ENOMEM; or a libuv code such as UV_EADDRINUSE. Never calls back
 * synchronously. */
MG_MUST_CHECK int mg_net_listener_open(struct uv_loop_s *loop,
                                       const struct mg_net_listener_opts *opts,
                                       struct mg_net_listener **out);

/* The port actually bound (useful when 0 was asked). */
int mg_net_listener_port(const struct mg_net_listener *l);
/* The opts->data given at open. */
void *mg_net_listener_data(const struct mg_net_listener *l);
/* Copies the counters into *st. */
void mg_net_listener_stats(const struct mg_net_listener *l,
                           struct mg_net_stats *st);

/* Calls fn for every connection of l that is not closing. fn may close
 * the connection it is given (and only that one). */
void mg_net_listener_walk(struct mg_net_listener *l,
                          void (*fn)(struct mg_net_conn *c, void *arg),
                          void *arg);

/* Closes every open connection of l: gracefully (queued writes are sent
 * first), or at once with hard. Close callbacks come later. */
void mg_net_listener_close_conns(struct mg_net_listener *l, bool hard);

/* Stops accepting now. Connections already accepted stay open until their
 * owner closes them; when the listening socket and the last connection are
 * closed, cb(l, arg) runs (cb may be NULL) and l is freed. Calling it twice
 * is a no-op. */
void mg_net_listener_close(struct mg_net_listener *l,
                           mg_net_listener_closed_cb cb, void *arg);

/* Connection identity: a process-wide counter (never 0) and the peer as
 * "ip:port" ("[v6]:port" for IPv6). Valid until the close callback. */
uint64_t mg_net_conn_id(const struct mg_net_conn *c);
const char *mg_net_conn_peer(const struct mg_net_conn *c);
/* The peer's address alone ("192.0.2.7", "2001:db8::1"), NULL when it
 * could not be told. Valid until the close callback. */
const char *mg_net_conn_ip(const struct mg_net_conn *c);
struct mg_net_listener *mg_net_conn_listener(const struct mg_net_conn *c);

/* The connection's user data (NULL until set). */
void *mg_net_conn_data(const struct mg_net_conn *c);
void mg_net_conn_set_data(struct mg_net_conn *c, void *data);

/* Queues a copy of data[0..n) for sending. cb (may be NULL) runs once,
 * later, never synchronously. Above the high-water mark of queued bytes
 * reading stops until the queue falls below low-water.
 * MG_OK; MG_ECLOSED when the connection is closing (cb is not called);
 * MG_ENOMEM; or a libuv code. */
MG_MUST_CHECK int mg_net_conn_write(struct mg_net_conn *c, const void *data,
                                    size_t n, mg_net_write_cb cb, void *arg);

/* Like mg_net_conn_write but takes ownership of data (from mg_malloc): it
 * is freed with mg_free after sending, and also on failure. */
MG_MUST_CHECK int mg_net_conn_write_take(struct mg_net_conn *c, char *data,
                                         size_t n, mg_net_write_cb cb,
                                         void *arg);

/* Bytes queued for the peer and not yet taken by the kernel. */
size_t mg_net_conn_write_queue(const struct mg_net_conn *c);

/* Stops / restarts delivering reads (the protocol is busy with a request).
 * Back-pressure pauses independently: reading runs only when neither
 * holds it. Pausing does not stop the timer. */
void mg_net_conn_pause(struct mg_net_conn *c);
void mg_net_conn_resume(struct mg_net_conn *c);

/* (Re)arms the connection's single timer: cb(c) runs once after ms
 * milliseconds unless called again first. ms 0 or cb NULL stops it.
 * Ignored once the connection is closing. */
void mg_net_conn_set_timeout(struct mg_net_conn *c, unsigned ms,
                             mg_net_timeout_cb cb);

/* Graceful close: stops reading, sends what is queued, shuts the write
 * side down, discards input until the peer's FIN (or close_linger_ms),
 * then closes. Hard close (mg_net_conn_abort): closes at once and cancels
 * queued writes. Either way the close callback follows later; both are
 * no-ops on a closing connection, except that abort hurries a graceful
 * close. */
void mg_net_conn_close(struct mg_net_conn *c);
void mg_net_conn_abort(struct mg_net_conn *c);

/* True once mg_net_conn_close/abort was called or the socket failed. */
bool mg_net_conn_closing(const struct mg_net_conn *c);

#endif
