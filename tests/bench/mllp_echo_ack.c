/* bench_mllp_echo_ack: a trivial MLLP responder that answers every frame
 * at once with an AA acknowledgement (built by the hl7v2 codec from the
 * frame's MSH), stores nothing and does no other work. Running
 * bench_mllp_load against it shows the generator's own ceiling
 * (tests/bench/README.md). One epoll loop on one thread.
 *
 * --ae-every N answers every Nth frame with AE (to see the generator count
 * it), and --exit-after N exits at once, without answering, on the Nth
 * frame: a crash in the middle of a run, as kill -9 of the gateway. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/error.h"
#include "hl7v2/hl7v2.h"
#include "mllp/mllp.h"

#define MAX_EVENTS 256

struct peer {
    int fd;
    struct mg_mllp_decoder dec;
    struct mg_buf out;  /* framed ACKs not yet written */
    bool want_out;      /* EPOLLOUT armed */
};

struct responder {
    int ep;
    int lfd;
    uint64_t frames;
    uint64_t ae_every;   /* 0: never */
    uint64_t exit_after; /* 0: never */
    struct mg_buf body;  /* scratch for one ACK */
    char ts[16];
    time_t ts_sec;
};

static const char usage[] =
    "usage: bench_mllp_echo_ack [--host H] [--port P] [--ae-every N]\n"
    "                           [--exit-after N]\n"
    "  --host H        address to listen on (default 127.0.0.1)\n"
    "  --port P        port (default 2575; 0 picks one, printed on stdout)\n"
    "  --ae-every N    answer every Nth frame with AE instead of AA\n"
    "  --exit-after N  exit without answering when frame N arrives\n";

static void
peer_close(struct peer *p)
{
    close(p->fd);
    mg_mllp_decoder_dispose(&p->dec);
    mg_buf_dispose(&p->out);
    mg_free(p);
}

static void
arm(struct responder *r, struct peer *p, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = p};

    (void)epoll_ctl(r->ep, EPOLL_CTL_MOD, p->fd, &ev);
}

/* Appends the framed ACK of frame to p->out. */
static int
answer(struct responder *r, struct peer *p, struct mg_str frame)
{
    struct mg_hl7v2_ack ack = {0};
    struct mg_hl7v2_msh msh;
    char id[32];
    time_t now = time(NULL);
    int rc;

    if (++r->frames == r->exit_after) {
        fprintf(stderr, "bench_mllp_echo_ack: exiting at frame %llu\n",
                (unsigned long long)r->frames);
        _exit(0);
    }
    if (now != r->ts_sec) {
        struct tm tm;

        r->ts_sec = now;
        gmtime_r(&now, &tm);
        strftime(r->ts, sizeof(r->ts), "%Y%m%d%H%M%S", &tm);
    }
    memset(&msh, 0, sizeof(msh));
    if (mg_hl7v2_msh_peek(frame, &msh) != MG_OK)
        ack.code = MG_HL7V2_AR; /* built from what could be read */
    else
        ack.code = r->ae_every && r->frames % r->ae_every == 0 ? MG_HL7V2_AE
                                                               : MG_HL7V2_AA;
    snprintf(id, sizeof(id), "E%llu", (unsigned long long)r->frames);
    ack.control_id = mg_str_from(id);
    ack.timestamp = mg_str_from(r->ts);
    mg_buf_reset(&r->body);
    rc = mg_hl7v2_ack_build(&msh, &ack, &r->body);
    if (rc == MG_OK)
        rc = mg_mllp_encode(&p->out, mg_buf_str(&r->body));
    return rc;
}

/* Writes what p->out holds; MG_OK, or an error when p must close. */
static int
flush_out(struct responder *r, struct peer *p)
{
    ssize_t n;

    while (p->out.len > 0) {
        n = send(p->fd, p->out.ptr, p->out.len, MSG_NOSIGNAL);
        if (n > 0) {
            mg_buf_consume(&p->out, (size_t)n);
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!p->want_out)
                arm(r, p, EPOLLIN | EPOLLOUT);
            p->want_out = true;
            return MG_OK;
        } else if (n < 0 && errno != EINTR) {
            return -errno;
        }
    }
    if (p->want_out)
        arm(r, p, EPOLLIN);
    p->want_out = false;
    return MG_OK;
}

static int
on_readable(struct responder *r, struct peer *p)
{
    char buf[65536];
    const char *q = buf;
    struct mg_str frame;
    size_t left, used;
    ssize_t n;
    int rc;

    n = recv(p->fd, buf, sizeof(buf), 0);
    if (n == 0)
        return MG_ECLOSED;
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? MG_OK : -errno;
    for (left = (size_t)n; left > 0;) {
        rc = mg_mllp_decoder_feed(&p->dec, q, left, &used, &frame);
        q += used;
        left -= used;
        if (rc == MG_OK)
            rc = answer(r, p, frame);
        if (rc < 0)
            return rc;
    }
    return flush_out(r, p);
}

static void
on_accept(struct responder *r)
{
    struct epoll_event ev = {.events = EPOLLIN};
    struct peer *p;
    int fd, one = 1;

    while ((fd = accept(r->lfd, NULL, NULL)) >= 0) {
        p = mg_calloc(1, sizeof(*p));
        if (p == NULL || fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
            mg_free(p);
            close(fd);
            continue;
        }
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        p->fd = fd;
        mg_mllp_decoder_init(&p->dec, 0);
        mg_buf_init(&p->out, 64u * 1024 * 1024);
        ev.data.ptr = p;
        if (epoll_ctl(r->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            peer_close(p);
    }
}

static int
listen_on(const char *host, const char *port)
{
    struct addrinfo hints = {0}, *ai;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char name[NI_MAXSERV];
    int fd, one = 1, rc;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "bench_mllp_echo_ack: %s: %s\n", host,
                gai_strerror(rc));
        return -1;
    }
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK, 0);
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 512) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
        getnameinfo((struct sockaddr *)&ss, len, NULL, 0, name, sizeof(name),
                    NI_NUMERICSERV) != 0) {
        perror("bench_mllp_echo_ack: listen");
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    printf("listening on %s port %s\n", host, name);
    fflush(stdout);
    return fd;
}

static bool
parse_opts(int argc, char **argv, struct responder *r, const char **host,
           const char **port)
{
    for (int i = 1; i < argc; i += 2) { /* "--name value" pairs */
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            exit(0);
        }
        if (v == NULL)
            return false;
        if (strcmp(argv[i], "--host") == 0)
            *host = v;
        else if (strcmp(argv[i], "--port") == 0)
            *port = v;
        else if (strcmp(argv[i], "--ae-every") == 0)
            r->ae_every = strtoull(v, NULL, 10);
        else if (strcmp(argv[i], "--exit-after") == 0)
            r->exit_after = strtoull(v, NULL, 10);
        else
            return false;
    }
    return true;
}

int
main(int argc, char **argv)
{
    static struct responder r;
    struct epoll_event evs[MAX_EVENTS], ev = {.events = EPOLLIN};
    const char *host = "127.0.0.1", *port = "2575";
    int n;

    if (!parse_opts(argc, argv, &r, &host, &port)) {
        fputs(usage, stderr);
        return 2;
    }
    mg_buf_init(&r.body, 0);
    r.lfd = listen_on(host, port);
    r.ep = epoll_create1(0);
    if (r.lfd < 0 || r.ep < 0)
        return 1;
    ev.data.ptr = NULL; /* the listener */
    if (epoll_ctl(r.ep, EPOLL_CTL_ADD, r.lfd, &ev) < 0)
        return 1;
    for (;;) {
        n = epoll_wait(r.ep, evs, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            struct peer *p = evs[i].data.ptr;
            int rc = MG_OK;

            if (p == NULL) {
                on_accept(&r);
                continue;
            }
            if (evs[i].events & EPOLLOUT)
                rc = flush_out(&r, p);
            if (rc == MG_OK && (evs[i].events & (EPOLLIN | EPOLLHUP |
                                                 EPOLLERR)))
                rc = on_readable(&r, p);
            if (rc != MG_OK)
                peer_close(p);
        }
    }
}
