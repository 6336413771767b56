/* Internals shared by the listener (listener.c) and the connection
 * (conn.c); only src/net/ includes this. */
#ifndef MG_NET_NET_INT_H
#define MG_NET_NET_INT_H

#include <uv.h>

#include "core/log.h"
#include "net/net.h"

/* One read buffer per listener: reads are delivered synchronously and
 * consumed in the read callback, so idle connections hold no buffer. */
#define MG__NET_READ_BUF (64u * 1024)

struct mg_net_listener {
    uv_tcp_t tcp;
    uv_timer_t retry;              /* accepts again after a failed one */
    int handles;                   /* tcp and retry until they are closed */
    struct mg_net_listener_opts o; /* o.bind points at bind below */
    char bind[64];                 /* copy of the address literal */
    int port;                      /* the port bound */
    struct mg_net_conn *conns;     /* all connections, closing ones too */
    unsigned nconns;               /* length of conns */
    struct mg_net_stats st;
    struct mg_log_limit full_log;  /* "at max_connections" lines */
    char *rbuf;                    /* MG__NET_READ_BUF bytes, owned */
    bool closing;                  /* mg_net_listener_close was called */
    mg_net_listener_closed_cb on_closed;
    void *closed_arg;
};

struct mg_net_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;         /* user timeouts, then the linger deadline */
    uv_shutdown_t shutdown;   /* graceful close */
    struct mg_net_listener *l;
    struct mg_net_conn *prev; /* in l->conns */
    struct mg_net_conn *next;
    uint64_t id;
    void *data;                  /* user data */
    mg_net_timeout_cb on_timeout; /* NULL when the timer is unarmed */
    int handles;                 /* handles initialised and not closed */
    bool started;      /* on_accept kept it: counted, gets on_close */
    bool reading;      /* uv_read_start is in effect */
    bool user_paused;  /* mg_net_conn_pause */
    bool bp_paused;    /* write queue above high-water */
    bool eof;          /* the peer sent FIN or reading failed */
    bool closing;      /* close or abort was called */
    bool lingering;    /* shut down, reading until the peer's FIN */
    bool handles_closing; /* uv_close was called on the handles */
    char peer[64];     /* "ip:port" */
    char ip[48];       /* the address alone, "" when it could not be told */
};

/* Sets up a freshly accepted connection and hands it to on_accept
 * (conn.c). c->tcp is initialised and accepted, c is linked in l. */
void mg__net_conn_accepted(struct mg_net_conn *c);
/* Fills c->peer ("ip:port") from the socket. */
void mg__net_conn_format_peer(struct mg_net_conn *c);
/* Closes the handles of c, which is then unlinked and freed (conn.c). */
void mg__net_conn_close_handles(struct mg_net_conn *c);
/* A connection of l is gone: frees l if it was the last (listener.c). */
void mg__net_listener_conn_gone(struct mg_net_listener *l);

#endif
