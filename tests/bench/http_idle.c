/* bench_http_idle: opens N idle TCP connections to an HTTP server, holds
 * them for S seconds, then sends "GET /healthz" on each and counts the 200
 * answers. Used to show that the gateway holds many idle connections with
 * bounded memory: with -p PID it prints the server's VmRSS before the
 * connections are opened, while they are held, and after the requests.
 *
 *   bench_http_idle [-n N] [-s SECONDS] [-p PID] [-u PATH] HOST PORT
 *
 * Exit status 0 when every connection was answered with 200. Connections
 * the server closed while idle (its idle timeout is shorter than S) are
 * counted as "closed_idle" and are not an error of the tool. */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct opts {
    long n;
    long seconds;
    long pid;
    const char *path;
    const char *host;
    const char *port;
};

/* One connection: its socket and what came back (the status line). */
struct conn {
    int fd;
    int state; /* 0 open, 1 closed while idle, 2 answered, 3 failed */
    int status;
    size_t len;
    char buf[64];
};

static void
usage(void)
{
    fprintf(stderr, "usage: bench_http_idle [-n N] [-s SECONDS] [-p PID] "
                    "[-u PATH] HOST PORT\n");
    exit(2);
}

static void
parse_args(int argc, char **argv, struct opts *o)
{
    int ch;

    *o = (struct opts){.n = 1000, .seconds = 10, .path = "/healthz"};
    while ((ch = getopt(argc, argv, "n:s:p:u:")) != -1) {
        switch (ch) {
        case 'n': o->n = atol(optarg); break;
        case 's': o->seconds = atol(optarg); break;
        case 'p': o->pid = atol(optarg); break;
        case 'u': o->path = optarg; break;
        default: usage();
        }
    }
    if (argc - optind != 2 || o->n <= 0 || o->seconds < 0)
        usage();
    o->host = argv[optind];
    o->port = argv[optind + 1];
}

/* Each connection needs a descriptor: raise the soft limit to fit. */
static void
raise_nofile(long n)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)n + 64;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want
                      ? want
                      : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        perror("setrlimit");
    if (rl.rlim_cur < want)
        fprintf(stderr, "warning: RLIMIT_NOFILE is %llu, below %llu\n",
                (unsigned long long)rl.rlim_cur, (unsigned long long)want);
}

/* Prints the VmRSS line of /proc/PID/status, labelled. */
static void
print_rss(long pid, const char *when)
{
    char path[64], line[256];
    FILE *f;

    if (pid <= 0)
        return;
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    f = fopen(path, "r");
    if (f == NULL)
        return;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            printf("rss_%s_kb %ld\n", when, strtol(line + 6, NULL, 10));
            break;
        }
    }
    fclose(f);
}

static int
dial(const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);

    if (fd < 0)
        return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* True when the server closed fd while we were idle. */
static int
closed_by_peer(int fd)
{
    char c;
    ssize_t r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

static void
send_requests(struct conn *cs, long n, const struct opts *o)
{
    char req[512];
    int len = snprintf(req, sizeof(req),
                       "GET %s HTTP/1.1\r\nHost: %s\r\n"
                       "Connection: close\r\n\r\n",
                       o->path, o->host);

    for (long i = 0; i < n; i++) {
        if (cs[i].state != 0)
            continue;
        if (closed_by_peer(cs[i].fd)) {
            cs[i].state = 1;
            continue;
        }
        if (send(cs[i].fd, req, (size_t)len, MSG_NOSIGNAL) != len)
            cs[i].state = 3;
    }
}

/* Reads status lines until every open connection answered or 10 s. */
static void
collect(struct conn *cs, long n)
{
    struct pollfd *pfd = calloc((size_t)n, sizeof(*pfd));
    time_t deadline = time(NULL) + 10;
    long waiting;

    do {
        waiting = 0;
        for (long i = 0; i < n; i++) {
            pfd[i].fd = cs[i].state == 0 ? cs[i].fd : -1;
            pfd[i].events = POLLIN;
            waiting += cs[i].state == 0;
        }
        if (waiting == 0 || poll(pfd, (nfds_t)n, 1000) < 0)
            break;
        for (long i = 0; i < n; i++) {
            struct conn *c = &cs[i];
            ssize_t r;
            if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
            if (r <= 0) {
                c->state = 3;
                continue;
            }
            c->len += (size_t)r;
            c->buf[c->len] = '\0';
            if (strchr(c->buf, '\n') != NULL || c->len == sizeof(c->buf) - 1) {
                c->status = strncmp(c->buf, "HTTP/1.", 7) == 0
                                ? atoi(c->buf + 9)
                                : -1;
                c->state = 2;
            }
        }
    } while (time(NULL) < deadline);
    free(pfd);
}

int
main(int argc, char **argv)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    long opened = 0, closed_idle = 0, ok = 0, other = 0, failed = 0;
    struct opts o;
    struct conn *cs;
    int rc;

    parse_args(argc, argv, &o);
    raise_nofile(o.n);
    rc = getaddrinfo(o.host, o.port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "%s:%s: %s\n", o.host, o.port, gai_strerror(rc));
        return 2;
    }
    cs = calloc((size_t)o.n, sizeof(*cs));
    print_rss(o.pid, "before");
    for (long i = 0; i < o.n; i++) {
        cs[i].fd = dial(ai);
        cs[i].state = cs[i].fd < 0 ? 3 : 0;
        opened += cs[i].fd >= 0;
    }
    freeaddrinfo(ai);
    printf("opened %ld of %ld\n", opened, o.n);
    fflush(stdout);
    sleep((unsigned)o.seconds);
    print_rss(o.pid, "held");
    send_requests(cs, o.n, &o);
    collect(cs, o.n);
    print_rss(o.pid, "after");
    for (long i = 0; i < o.n; i++) {
        closed_idle += cs[i].state == 1;
        ok += cs[i].state == 2 && cs[i].status == 200;
        other += cs[i].state == 2 && cs[i].status != 200;
        failed += cs[i].state == 3 || cs[i].state == 0;
        if (cs[i].fd >= 0)
            close(cs[i].fd);
    }
    printf("held_seconds %ld\nanswered_200 %ld\nanswered_other %ld\n"
           "closed_idle %ld\nfailed %ld\n",
           o.seconds, ok, other, closed_idle, failed);
    free(cs);
    return ok == o.n ? 0 : 1;
}
