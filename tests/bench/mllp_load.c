/* bench_mllp_load: an MLLP load generator for medgate (tests/bench/README.md).
 *
 * N connections each keep the MLLP discipline: one message in flight, the
 * next written only after the ACK for the last has been read. One epoll
 * loop on one thread drives them all, so the generator needs little CPU
 * per message and does not limit the gateway it measures.
 *
 * Messages are ADT^A01 and ORM^O01 of about 600 bytes, generated from the
 * run id and a sequence number alone: MSH-10 is "<run-id>-<seq>", and the
 * MRN, visit, order numbers, accession and study UID derive from the same
 * two, so every message creates distinct rows and any message can be made
 * again (--replay-file) after a crash test. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/error.h"
#include "mllp/client.h"
#include "mllp/mllp.h"

#define MAX_CONNS 256
#define MAX_RUN_ID 16
#define WIRE_MAX 2048 /* a framed message; the templates stay far below */

enum exit_code {
    EXIT_OK = 0,
    EXIT_NACKED = 1, /* an ACK other than AA/CA, or a wrong MSA-2 */
    EXIT_USAGE = 2,
    EXIT_CONN = 4,   /* a connection failed: see --log-unacked */
};

enum msg_type { TYPE_ADT, TYPE_ORM, TYPE_MIXED };

/* ACK codes as counted. */
enum { ACK_AA, ACK_AE, ACK_AR, ACK_CA, ACK_OTHER, ACK_NCODES };

struct opts {
    const char *host;
    const char *port;
    int connections;
    uint64_t messages;   /* measured messages; 0 with --seconds */
    double seconds;      /* run length after warm-up; 0: use messages */
    enum msg_type type;
    char run_id[MAX_RUN_ID + 1];
    uint64_t warmup;     /* messages sent first and not measured */
    int timeout_ms;      /* connect, and each ACK */
    const char *log_acked;
    const char *log_unacked;
    const char *replay_file;
};

enum conn_state { CONNECTING, OPEN, DONE, FAILED };

struct conn {
    int fd;
    int id;                 /* 1-based, for messages */
    enum conn_state state;
    struct mg_mllp_decoder dec;
    bool inflight;          /* a message was written, no ACK yet */
    bool measured;          /* it counts in the statistics */
    bool want_out;          /* EPOLLOUT is armed: wire not all written */
    uint64_t seq;           /* of the message in flight */
    uint64_t t_write;       /* mono us: first byte written (or connect) */
    size_t wlen, woff;      /* wire[woff .. wlen) still to write */
    char wire[WIRE_MAX];
};

struct gen {
    struct opts o;
    int ep;
    struct conn *conns;
    int live;               /* connections not DONE or FAILED */
    int failed;
    /* The plan: message index i has sequence number i + 1, or replay[i]. */
    uint64_t *replay;
    uint64_t planned;       /* UINT64_MAX with --seconds */
    uint64_t next;          /* next index to send */
    bool stopping;          /* --seconds are up: send nothing new */
    /* Results. */
    uint64_t sent, sent_measured;
    uint64_t acks[ACK_NCODES];
    uint64_t acked_measured, errors, mismatched;
    uint32_t *lat_us;       /* one per measured ACK */
    size_t nlat, caplat;
    uint64_t t_start, t_end; /* mono us: first measured write, last ACK */
    uint64_t *unacked;      /* sequence numbers written but not ACKed */
    size_t nunacked, capunacked;
    FILE *acked_log;
    /* Message building. */
    char ts[16];            /* MSH-7, refreshed every second */
    time_t ts_sec;
    unsigned long uid_hash; /* run id as a number, for the study UID */
};

/* ---- Message templates --------------------------------------------------- */

/* %1$s MSH-7 timestamp, %2$s "<run-id>-<seq>". */
static const char adt_a01[] =
    "MSH|^~\\&|MGLOAD|LOADFAC|MEDGATE|MEDGATE|%1$s||ADT^A01^ADT_A01|%2$s|P|"
    "2.5.1\r"
    "EVN|A01|%1$s|||LOAD^Generator^Bench\r"
    "PID|1||MR%2$s^^^MGLOAD&1.2.826.0.1.3680043.8.498.1&ISO^MR||"
    "LOADTEST^PATIENT^%2$s^^^^L||19700101|F|||100 Bench Street^^Springfield"
    "^IL^62701^USA^H||^PRN^PH^^1^555^5550100|||S||AN%2$s^^^MGLOAD^AN\r"
    "NK1|1|LOADTEST^CONTACT|SPO^Spouse^HL70063|100 Bench Street^^Springfield"
    "^IL^62701^USA^H\r"
    "PV1|1|I|WARD1^101^A^LOADFAC||||1234^Attending^Alice^^^Dr^MD|||MED|||"
    "|7||||IN|VN%2$s^^^MGLOAD^VN\r"
    "AL1|1|DA|PCN^Penicillin^RXNORM|MO|Rash\r"
    "DG1|1||R07.9^Chest pain, unspecified^I10||%1$s|A\r";

/* %1$s timestamp, %2$s "<run-id>-<seq>", %3$s accession, %4$s study UID. */
static const char orm_o01[] =
    "MSH|^~\\&|MGLOAD|LOADRIS|MEDGATE|MEDGATE|%1$s||ORM^O01^ORM_O01|%2$s|P|"
    "2.5.1\r"
    "PID|1||MR%2$s^^^MGLOAD&1.2.826.0.1.3680043.8.498.1&ISO^MR||"
    "LOADTEST^ORDER^%2$s^^^^L||19800202|M|||200 Bench Avenue^^Springfield^IL"
    "^62701^USA^H\r"
    "PV1|1|O|RAD^^^LOADFAC||||5678^Referring^Robin^^^Dr^MD\r"
    "ORC|NW|PO%2$s^MGLOAD|FO%2$s^LOADRIS||SC||^^^%1$s^^R||%1$s|||"
    "5678^Referring^Robin^^^Dr^MD\r"
    "OBR|1|PO%2$s^MGLOAD|FO%2$s^LOADRIS|71046^XR CHEST 2 VIEWS^CPT4|||%1$s"
    "|||||||||5678^Referring^Robin^^^Dr^MD||%3$s|RP%2$s|SPS%2$s||||CR|||"
    "1^^^%1$s^^R\r"
    "ZDS|%4$s^MGLOAD^Application^DICOM\r";

static void
refresh_timestamp(struct gen *g)
{
    /* A message is a function of run id and sequence number alone, so a
     * resend after a crash (--replay-file) is byte for byte what a real
     * sender would resend: MSH-7 and the order times are the same for
     * every message of a run. */
    time_t now = (time_t)1767225600; /* 2026-01-01T00:00:00Z */
    struct tm tm;

    if (now == g->ts_sec)
        return;
    g->ts_sec = now;
    gmtime_r(&now, &tm);
    strftime(g->ts, sizeof(g->ts), "%Y%m%d%H%M%S", &tm);
}

static bool
is_orm(const struct gen *g, uint64_t seq)
{
    return g->o.type == TYPE_ORM || (g->o.type == TYPE_MIXED && seq % 2 == 0);
}

/* Writes the framed message with sequence number seq into c->wire. */
static int
build_message(struct gen *g, struct conn *c, uint64_t seq)
{
    char id[MAX_RUN_ID + 24], acc[MAX_RUN_ID + 26], uid[64];
    int n;

    refresh_timestamp(g);
    snprintf(id, sizeof(id), "%s-%llu", g->o.run_id, (unsigned long long)seq);
    c->wire[0] = MG_MLLP_SB;
    if (is_orm(g, seq)) {
        snprintf(acc, sizeof(acc), "A%s", id);
        snprintf(uid, sizeof(uid), "1.2.826.0.1.3680043.8.498.%lu.%llu",
                 g->uid_hash, (unsigned long long)seq);
        n = snprintf(c->wire + 1, WIRE_MAX - 3, orm_o01, g->ts, id, acc,
                     uid);
    } else {
        n = snprintf(c->wire + 1, WIRE_MAX - 3, adt_a01, g->ts, id);
    }
    if (n < 0 || n >= WIRE_MAX - 3)
        return MG_ETOOBIG;
    c->wire[n + 1] = MG_MLLP_EB;
    c->wire[n + 2] = MG_MLLP_CR;
    c->wlen = (size_t)n + 3;
    c->woff = 0;
    c->seq = seq;
    return MG_OK;
}

/* ---- Options ------------------------------------------------------------- */

static const char usage[] =
    "usage: bench_mllp_load [--host H] [--port P] [--connections N]\n"
    "         [--messages M | --seconds S] [--warmup N]\n"
    "         [--type adt|orm|mixed] [--run-id ID] [--timeout-ms N]\n"
    "         [--log-acked FILE] [--log-unacked FILE] [--replay-file FILE]\n"
    "\n"
    "  --host, --port     MLLP listener (default 127.0.0.1 2575)\n"
    "  --connections N    1..256 connections, one message in flight each\n"
    "                     (default 1)\n"
    "  --messages M       measured messages in all (default 10000)\n"
    "  --seconds S        or: send for S seconds after the warm-up\n"
    "  --warmup N         send N messages first, not measured (default 0)\n"
    "  --type T           adt, orm or mixed (odd seq ADT, even ORM; default)\n"
    "  --run-id ID        1..16 letters/digits; MSH-10 is ID-<seq>\n"
    "                     (default: from the clock and pid)\n"
    "  --timeout-ms N     connect and per-ACK timeout (default 10000)\n"
    "  --log-acked FILE   append '<MSH-10>\\t<MSA-1>' for every ACK\n"
    "  --log-unacked FILE write '<MSH-10>' for every message without ACK\n"
    "                     (in flight when a connection died, then unsent)\n"
    "  --replay-file FILE send exactly the MSH-10s listed in FILE (one per\n"
    "                     line, '<MSH-10>' or '<MSH-10>\\t...'; same --type)\n"
    "\n"
    "exit: 0 all AA/CA, 1 other ACK codes or wrong MSA-2, 2 usage,\n"
    "      4 a connection failed (messages without ACK: --log-unacked)\n";

static bool
parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static bool
valid_run_id(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > MAX_RUN_ID)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= 'a' && s[i] <= 'z')))
            return false;
    return true;
}

/* Seven base-36 digits: six from the clock in seconds (unique for 69
 * years), one from the pid, so two runs started together differ. */
static void
default_run_id(char *out)
{
    static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    uint64_t t = (uint64_t)time(NULL) - 1700000000u;

    for (int i = 5; i >= 0; i--) {
        out[i] = digits[t % 36];
        t /= 36;
    }
    out[6] = digits[(unsigned)getpid() % 36];
    out[7] = '\0';
}

static bool
parse_type(const char *s, enum msg_type *out)
{
    if (s == NULL)
        return false;
    if (strcmp(s, "adt") == 0)
        *out = TYPE_ADT;
    else if (strcmp(s, "orm") == 0)
        *out = TYPE_ORM;
    else if (strcmp(s, "mixed") == 0)
        *out = TYPE_MIXED;
    else
        return false;
    return true;
}

/* One "--name value" pair; false when name is unknown or value bad. */
static bool
parse_pair(struct opts *o, const char *name, const char *v)
{
    uint64_t n;

    if (v == NULL)
        return false;
    if (strcmp(name, "--host") == 0)
        o->host = v;
    else if (strcmp(name, "--port") == 0)
        o->port = v;
    else if (strcmp(name, "--connections") == 0 &&
             parse_u64(v, 1, MAX_CONNS, &n))
        o->connections = (int)n;
    else if (strcmp(name, "--messages") == 0 && parse_u64(v, 1, 1u << 30, &n))
        o->messages = n;
    else if (strcmp(name, "--seconds") == 0 && parse_u64(v, 1, 86400, &n))
        o->seconds = (double)n;
    else if (strcmp(name, "--warmup") == 0 && parse_u64(v, 0, 1u << 30, &n))
        o->warmup = n;
    else if (strcmp(name, "--timeout-ms") == 0 &&
             parse_u64(v, 1, 3600000, &n))
        o->timeout_ms = (int)n;
    else if (strcmp(name, "--type") == 0 && parse_type(v, &o->type))
        ;
    else if (strcmp(name, "--run-id") == 0 && valid_run_id(v))
        snprintf(o->run_id, sizeof(o->run_id), "%s", v);
    else if (strcmp(name, "--log-acked") == 0)
        o->log_acked = v;
    else if (strcmp(name, "--log-unacked") == 0)
        o->log_unacked = v;
    else if (strcmp(name, "--replay-file") == 0)
        o->replay_file = v;
    else
        return false;
    return true;
}

static int
parse_opts(struct opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof(*o));
    o->host = "127.0.0.1";
    o->port = "2575";
    o->connections = 1;
    o->type = TYPE_MIXED;
    o->timeout_ms = 10000;
    /* Every option but --help takes a value: they come in pairs. */
    for (int i = 1; i < argc; i += 2) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage, stdout);
            exit(EXIT_OK);
        }
        if (!parse_pair(o, argv[i], i + 1 < argc ? argv[i + 1] : NULL)) {
            fprintf(stderr, "bench_mllp_load: bad option or value: %s\n",
                    argv[i]);
            fputs(usage, stderr);
            return EXIT_USAGE;
        }
    }
    if (o->seconds > 0 && o->messages != 0) {
        fputs("bench_mllp_load: --messages and --seconds exclude each "
              "other\n", stderr);
        return EXIT_USAGE;
    }
    if (o->seconds == 0 && o->messages == 0)
        o->messages = 10000;
    return EXIT_OK;
}

/* ---- Replay file --------------------------------------------------------- */

/* Takes "<run-id>-<seq>" from one line; all lines share one run id. */
static int
replay_line(struct gen *g, char *line, size_t lineno, uint64_t *seq)
{
    char *dash, *end = line + strcspn(line, "\t\r\n ");

    *end = '\0';
    dash = strrchr(line, '-');
    if (dash == NULL || !parse_u64(dash + 1, 1, UINT64_MAX / 2, seq))
        goto out_bad;
    *dash = '\0';
    if (!valid_run_id(line))
        goto out_bad;
    if (g->o.run_id[0] == '\0')
        memcpy(g->o.run_id, line, strlen(line) + 1); /* valid: <= 16 */
    else if (strcmp(g->o.run_id, line) != 0) {
        fprintf(stderr, "bench_mllp_load: %s:%zu: run id %s, expected %s\n",
                g->o.replay_file, lineno, line, g->o.run_id);
        return EXIT_USAGE;
    }
    return EXIT_OK;

out_bad:
    fprintf(stderr, "bench_mllp_load: %s:%zu: not <run-id>-<seq>\n",
            g->o.replay_file, lineno);
    return EXIT_USAGE;
}

static int
load_replay(struct gen *g)
{
    FILE *f = fopen(g->o.replay_file, "r");
    char line[256];
    size_t n = 0, cap = 0, lineno = 0;
    uint64_t seq;
    int rc = EXIT_OK;

    if (f == NULL) {
        fprintf(stderr, "bench_mllp_load: %s: %s\n", g->o.replay_file,
                strerror(errno));
        return EXIT_USAGE;
    }
    while (rc == EXIT_OK && fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        if (line[0] == '\n' || line[0] == '#')
            continue;
        rc = replay_line(g, line, lineno, &seq);
        if (rc == EXIT_OK && n == cap) {
            cap = cap ? cap * 2 : 1024;
            g->replay = mg_realloc(g->replay, cap * sizeof(*g->replay));
            if (g->replay == NULL)
                rc = EXIT_USAGE;
        }
        if (rc == EXIT_OK)
            g->replay[n++] = seq;
    }
    fclose(f);
    g->planned = n;
    g->o.warmup = 0;
    return rc;
}

/* ---- Recording ----------------------------------------------------------- */

static int
push_u64(uint64_t **arr, size_t *n, size_t *cap, uint64_t v)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 1024;
        uint64_t *p = mg_realloc(*arr, ncap * sizeof(**arr));

        if (p == NULL)
            return MG_ENOMEM;
        *arr = p;
        *cap = ncap;
    }
    (*arr)[(*n)++] = v;
    return MG_OK;
}

static void
record_latency(struct gen *g, uint64_t us)
{
    if (g->nlat == g->caplat) {
        size_t ncap = g->caplat ? g->caplat * 2 : 65536;
        uint32_t *p = mg_realloc(g->lat_us, ncap * sizeof(*p));

        if (p == NULL) {
            g->errors++; /* the sample is lost, the run goes on */
            return;
        }
        g->lat_us = p;
        g->caplat = ncap;
    }
    g->lat_us[g->nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int
ack_index(struct mg_str code)
{
    static const char *names[] = {"AA", "AE", "AR", "CA"};

    for (int i = 0; i < ACK_OTHER; i++)
        if (mg_str_eqz(code, names[i]))
            return i;
    return ACK_OTHER;
}

/* ---- Connections --------------------------------------------------------- */

static void
arm(struct gen *g, struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};

    (void)epoll_ctl(g->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void
conn_end(struct gen *g, struct conn *c, enum conn_state state)
{
    close(c->fd);
    c->fd = -1;
    c->state = state;
    mg_mllp_decoder_dispose(&c->dec);
    g->live--;
}

/* The connection is lost; what it had in flight stays unacknowledged. */
static void
conn_fail(struct gen *g, struct conn *c, const char *why)
{
    fprintf(stderr, "bench_mllp_load: connection %d: %s", c->id, why);
    if (c->inflight) {
        fprintf(stderr, " (no ACK for %s-%llu)", g->o.run_id,
                (unsigned long long)c->seq);
        if (push_u64(&g->unacked, &g->nunacked, &g->capunacked, c->seq) !=
            MG_OK)
            g->errors++;
        c->inflight = false;
    }
    fputc('\n', stderr);
    g->errors++;
    g->failed++;
    conn_end(g, c, FAILED);
}

static void
flush_wire(struct gen *g, struct conn *c)
{
    ssize_t n;

    while (c->woff < c->wlen) {
        n = send(c->fd, c->wire + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n > 0) {
            c->woff += (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_out)
                arm(g, c, EPOLLIN | EPOLLOUT);
            c->want_out = true;
            return;
        } else if (n < 0 && errno != EINTR) {
            conn_fail(g, c, strerror(errno));
            return;
        }
    }
    if (c->want_out)
        arm(g, c, EPOLLIN);
    c->want_out = false;
}

/* Sends the next message of the plan on c, or retires c. */
static void
send_next(struct gen *g, struct conn *c)
{
    uint64_t i, seq, now;

    if (g->stopping || g->next >= g->planned) {
        conn_end(g, c, DONE);
        return;
    }
    i = g->next++;
    seq = g->replay ? g->replay[i] : i + 1;
    if (build_message(g, c, seq) != MG_OK) {
        conn_fail(g, c, "message too big for the wire buffer");
        return;
    }
    now = mg_clock_mono_us();
    c->measured = i >= g->o.warmup;
    if (c->measured) {
        if (g->t_start == 0)
            g->t_start = now;
        g->sent_measured++;
    }
    g->sent++;
    c->inflight = true;
    c->t_write = now;
    flush_wire(g, c);
}

static void
log_acked(struct gen *g, uint64_t seq, struct mg_str code)
{
    if (g->acked_log == NULL)
        return;
    fprintf(g->acked_log, "%s-%llu\t%.*s\n", g->o.run_id,
            (unsigned long long)seq, (int)code.len, code.ptr);
}

/* A frame came in on c: count it as the ACK of what is in flight. */
static void
on_ack(struct gen *g, struct conn *c, struct mg_str frame, uint64_t now)
{
    struct mg_mllp_ack_info info;
    char id[MAX_RUN_ID + 24];
    int k;

    if (!c->inflight) {
        g->errors++; /* unsolicited: nothing was in flight */
        return;
    }
    c->inflight = false;
    if (mg_mllp_client_read_ack(frame, &info) != MG_OK) {
        info.code = MG_STR("??");
        info.control_id = MG_STR("");
    }
    k = ack_index(info.code);
    g->acks[k]++;
    snprintf(id, sizeof(id), "%s-%llu", g->o.run_id,
             (unsigned long long)c->seq);
    if (!mg_str_eqz(info.control_id, id))
        g->mismatched++;
    log_acked(g, c->seq, info.code);
    if (c->measured) {
        record_latency(g, now - c->t_write);
        g->acked_measured++;
        g->t_end = now;
        if (g->o.seconds > 0 &&
            now - g->t_start >= (uint64_t)(g->o.seconds * 1e6))
            g->stopping = true;
    }
    send_next(g, c);
}

static void
on_readable(struct gen *g, struct conn *c)
{
    char buf[16384];
    const char *p = buf;
    struct mg_str frame;
    size_t used, left;
    ssize_t n;
    int rc;

    n = recv(c->fd, buf, sizeof(buf), 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        conn_fail(g, c, n == 0 ? "closed by peer" : strerror(errno));
        return;
    }
    for (left = n > 0 ? (size_t)n : 0; left > 0 && c->state == OPEN;) {
        rc = mg_mllp_decoder_feed(&c->dec, p, left, &used, &frame);
        p += used;
        left -= used;
        if (rc == MG_OK)
            on_ack(g, c, frame, mg_clock_mono_us());
        else if (rc != MG_AGAIN) {
            conn_fail(g, c, mg_strerror(rc));
            return;
        }
    }
}

static void
on_connected(struct gen *g, struct conn *c)
{
    int err = 0, one = 1;
    socklen_t len = sizeof(err);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err != 0) {
        conn_fail(g, c, strerror(err));
        return;
    }
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->state = OPEN;
    arm(g, c, EPOLLIN);
    send_next(g, c);
}

static int
conn_start(struct gen *g, struct conn *c, const struct addrinfo *ai)
{
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};

    c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK,
                   ai->ai_protocol);
    if (c->fd < 0)
        return -errno;
    mg_mllp_decoder_init(&c->dec, 64 * 1024);
    c->state = CONNECTING;
    c->t_write = mg_clock_mono_us();
    g->live++;
    if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0 &&
        errno != EINPROGRESS) {
        conn_fail(g, c, strerror(errno));
        return MG_OK;
    }
    if (epoll_ctl(g->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        conn_fail(g, c, strerror(errno));
        return MG_OK;
    }
    return MG_OK;
}

/* Fails connections whose connect or ACK is overdue. */
static void
check_timeouts(struct gen *g, uint64_t now)
{
    uint64_t limit = (uint64_t)g->o.timeout_ms * 1000u;

    for (int i = 0; i < g->o.connections; i++) {
        struct conn *c = &g->conns[i];

        if ((c->state == CONNECTING || (c->state == OPEN && c->inflight)) &&
            now - c->t_write > limit)
            conn_fail(g, c, c->state == CONNECTING ? "connect timed out"
                                                   : "ACK timed out");
    }
}

static void
dispatch(struct gen *g, const struct epoll_event *ev)
{
    struct conn *c = ev->data.ptr;

    if (c->state == CONNECTING) {
        on_connected(g, c);
        return;
    }
    if (c->state != OPEN)
        return;
    if ((ev->events & EPOLLOUT) && c->want_out)
        flush_wire(g, c);
    if (c->state == OPEN && (ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        on_readable(g, c);
}

static void
run_loop(struct gen *g)
{
    struct epoll_event evs[MAX_CONNS];
    uint64_t last_check = mg_clock_mono_us(), now;
    int n;

    while (g->live > 0) {
        n = epoll_wait(g->ep, evs, MAX_CONNS, 20);
        if (n < 0 && errno != EINTR) {
            perror("bench_mllp_load: epoll_wait");
            exit(EXIT_CONN);
        }
        for (int i = 0; i < n; i++)
            dispatch(g, &evs[i]);
        now = mg_clock_mono_us();
        if (now - last_check >= 20000) {
            last_check = now;
            check_timeouts(g, now);
        }
    }
}

/* ---- Report -------------------------------------------------------------- */

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return (x > y) - (x < y);
}

/* Nearest-rank percentile of the sorted samples, in ms. */
static double
pct_ms(const struct gen *g, double p)
{
    size_t k;

    if (g->nlat == 0)
        return 0;
    k = (size_t)(p * (double)g->nlat + 0.999999);
    k = k == 0 ? 0 : k - 1;
    return g->lat_us[MG_MIN(k, g->nlat - 1)] / 1000.0;
}

static double
cpu_seconds(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void
report(struct gen *g)
{
    double secs = g->t_end > g->t_start ? (g->t_end - g->t_start) / 1e6 : 0;
    double cpu = cpu_seconds();

    qsort(g->lat_us, g->nlat, sizeof(*g->lat_us), cmp_u32);
    printf("run id:        %s\n", g->o.run_id);
    printf("connections:   %d (failed %d)\n", g->o.connections, g->failed);
    printf("messages sent: %llu measured, %llu with warm-up\n",
           (unsigned long long)g->sent_measured,
           (unsigned long long)g->sent);
    printf("acks:          AA %llu  AE %llu  AR %llu  CA %llu  other %llu\n",
           (unsigned long long)g->acks[ACK_AA],
           (unsigned long long)g->acks[ACK_AE],
           (unsigned long long)g->acks[ACK_AR],
           (unsigned long long)g->acks[ACK_CA],
           (unsigned long long)g->acks[ACK_OTHER]);
    printf("errors:        %llu (MSA-2 mismatches %llu, unacked %zu)\n",
           (unsigned long long)g->errors, (unsigned long long)g->mismatched,
           g->nunacked);
    printf("elapsed:       %.3f s\n", secs);
    printf("messages/s:    %.1f\n", secs > 0 ? g->acked_measured / secs : 0.0);
    printf("latency ms:    p50 %.3f  p90 %.3f  p99 %.3f  max %.3f\n",
           pct_ms(g, 0.50), pct_ms(g, 0.90), pct_ms(g, 0.99),
           g->nlat ? g->lat_us[g->nlat - 1] / 1000.0 : 0.0);
    printf("generator cpu: %.3f s (%.0f messages per cpu-second)\n", cpu,
           cpu > 0 ? g->sent / cpu : 0.0);
}

/* In-flight messages of failed connections, then the unsent rest of a
 * bounded plan: everything a replay must send to complete the run. */
static int
write_unacked(struct gen *g)
{
    FILE *f = fopen(g->o.log_unacked, "w");

    if (f == NULL) {
        fprintf(stderr, "bench_mllp_load: %s: %s\n", g->o.log_unacked,
                strerror(errno));
        return EXIT_USAGE;
    }
    for (size_t i = 0; i < g->nunacked; i++)
        fprintf(f, "%s-%llu\n", g->o.run_id,
                (unsigned long long)g->unacked[i]);
    if (g->planned != UINT64_MAX)
        for (uint64_t i = g->next; i < g->planned; i++)
            fprintf(f, "%s-%llu\n", g->o.run_id,
                    (unsigned long long)(g->replay ? g->replay[i] : i + 1));
    return fclose(f) == 0 ? EXIT_OK : EXIT_USAGE;
}

/* ---- Main ---------------------------------------------------------------- */

static unsigned long
fnv1a(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static int
setup(struct gen *g)
{
    if (g->o.replay_file != NULL) {
        if (load_replay(g) != EXIT_OK)
            return EXIT_USAGE;
    } else {
        g->planned = g->o.seconds > 0 ? UINT64_MAX
                                      : g->o.warmup + g->o.messages;
    }
    if (g->o.run_id[0] == '\0')
        default_run_id(g->o.run_id);
    g->uid_hash = fnv1a(g->o.run_id);
    if (g->o.log_acked != NULL) {
        g->acked_log = fopen(g->o.log_acked, "a");
        if (g->acked_log == NULL) {
            fprintf(stderr, "bench_mllp_load: %s: %s\n", g->o.log_acked,
                    strerror(errno));
            return EXIT_USAGE;
        }
        setvbuf(g->acked_log, NULL, _IOFBF, 1 << 16);
    }
    g->conns = mg_calloc((size_t)g->o.connections, sizeof(*g->conns));
    g->ep = epoll_create1(EPOLL_CLOEXEC);
    if (g->conns == NULL || g->ep < 0) {
        fputs("bench_mllp_load: out of memory or epoll\n", stderr);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

static int
connect_all(struct gen *g)
{
    struct addrinfo hints = {0}, *ai;
    int rc;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(g->o.host, g->o.port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "bench_mllp_load: %s port %s: %s\n", g->o.host,
                g->o.port, gai_strerror(rc));
        return EXIT_USAGE;
    }
    for (int i = 0; i < g->o.connections; i++) {
        g->conns[i].id = i + 1;
        g->conns[i].fd = -1;
        if (conn_start(g, &g->conns[i], ai) != MG_OK) {
            perror("bench_mllp_load: socket");
            freeaddrinfo(ai);
            return EXIT_CONN;
        }
    }
    freeaddrinfo(ai);
    return EXIT_OK;
}

static int
verdict(const struct gen *g)
{
    if (g->failed > 0)
        return EXIT_CONN;
    if (g->acks[ACK_AE] + g->acks[ACK_AR] + g->acks[ACK_OTHER] > 0 ||
        g->mismatched > 0)
        return EXIT_NACKED;
    return EXIT_OK;
}

int
main(int argc, char **argv)
{
    static struct gen g;
    int rc;

    rc = parse_opts(&g.o, argc, argv);
    if (rc != EXIT_OK)
        return rc;
    rc = setup(&g);
    if (rc != EXIT_OK)
        return rc;
    rc = connect_all(&g);
    if (rc != EXIT_OK)
        return rc;
    run_loop(&g);

    report(&g);
    if (g.acked_log != NULL && fclose(g.acked_log) != 0)
        perror("bench_mllp_load: --log-acked");
    if (g.o.log_unacked != NULL && write_unacked(&g) != EXIT_OK)
        return EXIT_USAGE;
    rc = verdict(&g);
    close(g.ep);
    mg_free(g.conns);
    mg_free(g.lat_us);
    mg_free(g.unacked);
    mg_free(g.replay);
    return rc;
}
