/* The MLLP client behind `medgate send` (see client.h): a splitter that
 * turns files as people keep them (LF or CRLF, a BOM, several messages,
 * batch envelopes) into messages as MLLP carries them, a reader for the
 * MSA/ERR of an ACK, and a blocking connection that keeps one message in
 * flight. */
#include "mllp/client.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/error.h"
#include "hl7v2/hl7v2.h"
#include "mllp/mllp.h"

/* ---- Splitting ----------------------------------------------------------- */

/* What the normalising pass learnt about the file. */
struct scan {
    size_t nmsh;       /* lines starting with MSH */
    bool envelope;     /* an FHS, BHS, BTS or FTS line */
    size_t junk_line;  /* 1-based line of the first non-segment before any
                          MSH or envelope; 0 when none */
    bool junk_framed;  /* that line starts with an MLLP SB or EB byte */
    size_t lf_msh_line; /* 1-based line holding LF then MSH, in a file whose
                           segments end in CR: 0 when none */
};

static bool
is_alnum(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9');
}

/* The line starts with segment id and a separator after it. */
static bool
line_is(struct mg_str line, const char *id)
{
    return line.len >= 4 && memcmp(line.ptr, id, 3) == 0 &&
           !is_alnum(line.ptr[3]);
}

static bool
is_envelope(struct mg_str line)
{
    return line_is(line, "FHS") || line_is(line, "BHS") ||
           line_is(line, "BTS") || line_is(line, "FTS");
}

static bool
is_blank(struct mg_str line)
{
    for (size_t i = 0; i < line.len; i++)
        if (line.ptr[i] != ' ' && line.ptr[i] != '\t' && line.ptr[i] != '\n')
            return false;
    return true;
}

/* Drops what may precede a segment id on a line: a BOM (files joined with
 * cat keep each file's) and, in CR mode, stray LFs. */
static struct mg_str
strip_line_start(struct mg_str line)
{
    if (line.len >= 3 && memcmp(line.ptr, "\xEF\xBB\xBF", 3) == 0) {
        line.ptr += 3;
        line.len -= 3;
    }
    while (line.len > 0 && line.ptr[0] == '\n') {
        line.ptr++;
        line.len--;
    }
    return line;
}

/* Where the line at p ends, and in *next where the next one starts.
 * Besides the terminator, a BOM followed by MSH ends a line: it is where
 * `cat` joined a file that lacks a final line end to the next file. */
static const char *
line_end(const char *p, const char *end, char term, const char **next)
{
    const char *q = memchr(p, term, (size_t)(end - p)), *b = p;

    if (q == NULL)
        q = end;
    while (b + 1 < q && (b = memchr(b + 1, 0xEF, (size_t)(q - b - 1)))) {
        if (q - b >= 6 && memcmp(b, "\xEF\xBB\xBFMSH", 6) == 0) {
            *next = b;
            return b;
        }
    }
    *next = q + (q < end);
    if (term == '\r' && *next < end && **next == '\n')
        (*next)++; /* CRLF is one terminator */
    return q;
}

/* Whether line holds a line feed followed by a segment that starts a
 * message: in a file whose segments end in CR, a lone LF is data, so the
 * file mixes line ends, and the message after the LF would be sent inside
 * the one before it. */
static bool
lf_then_msh(struct mg_str line)
{
    const char *p = line.ptr, *end = line.ptr + line.len;

    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        struct mg_str rest = mg_str_n(p + 1, (size_t)(end - p - 1));

        if (line_is(rest, "MSH") || line_is(rest, "BHS") ||
            line_is(rest, "FHS"))
            return true;
        p++;
    }
    return false;
}

/* Notes what kind of line this is, before it is copied. */
static void
scan_line(struct scan *sc, struct mg_str line, size_t lineno)
{
    if (sc->lf_msh_line == 0 && lf_then_msh(line))
        sc->lf_msh_line = lineno;
    if (line_is(line, "MSH")) {
        sc->nmsh++;
    } else if (is_envelope(line)) {
        sc->envelope = true;
    } else if (sc->nmsh == 0 && !sc->envelope && sc->junk_line == 0) {
        sc->junk_line = lineno;
        sc->junk_framed = line.len > 0 && (line.ptr[0] == MG_MLLP_SB ||
                                           line.ptr[0] == MG_MLLP_EB);
    }
}

/* Copies in to the arena with every segment ended by CR, without BOMs or
 * blank lines. Segments end at CR or CRLF when in holds a CR (a lone LF is
 * then data, as the parser reads it), else at LF. */
static int
normalise(struct mg_str in, struct mg_arena *arena, struct mg_str *text,
          struct scan *sc)
{
    char term = memchr(in.ptr, '\r', in.len) ? '\r' : '\n';
    const char *p = in.ptr, *end = in.ptr + in.len, *q, *next;
    size_t len = 0, lineno = 0;
    char *out;

    /* Every line shrinks or keeps its size; only an unterminated last
     * line grows, by its CR. */
    out = mg_arena_alloc(arena, in.len + 1);
    if (out == NULL)
        return MG_ENOMEM;
    while (p < end) {
        struct mg_str line;

        q = line_end(p, end, term, &next);
        line = strip_line_start(mg_str_n(p, (size_t)(q - p)));
        lineno++;
        p = next;
        if (is_blank(line))
            continue;
        scan_line(sc, line, lineno);
        memcpy(out + len, line.ptr, line.len);
        len += line.len;
        out[len++] = '\r';
    }
    *text = mg_str_n(out, len);
    return MG_OK;
}

/* Cuts CR-terminated text before every MSH line. */
static void
split_plain(struct mg_str text, struct mg_mllp_split *out)
{
    const char *p = text.ptr, *end = text.ptr + text.len, *q;
    const char *start = NULL;

    for (; p < end; p = q + 1) {
        q = memchr(p, '\r', (size_t)(end - p));
        if (line_is(mg_str_n(p, (size_t)(q - p)), "MSH")) {
            if (start != NULL)
                out->msg[out->nmsg++] = mg_str_n(start, (size_t)(p - start));
            start = p;
        }
    }
    if (start != NULL)
        out->msg[out->nmsg++] = mg_str_n(start, (size_t)(end - start));
}

static int
split_batch(struct mg_str text, struct mg_arena *arena,
            struct mg_mllp_split *out, struct mg_diag *diag)
{
    struct mg_hl7v2_batch b;
    struct mg_diag local;
    int rc;

    rc = mg_hl7v2_batch_split(text, arena, &b, diag ? diag : &local);
    if (rc != MG_OK)
        return rc;
    out->msg = b.msg;
    out->nmsg = b.nmsg;
    out->batch = true;
    return MG_OK;
}

int
mg_mllp_client_split(struct mg_str in, struct mg_arena *arena,
                     struct mg_mllp_split *out, struct mg_diag *diag)
{
    struct scan sc = {0, false, 0, false, 0};
    int rc;

    memset(out, 0, sizeof(*out));
    if (diag != NULL)
        mg_diag_clear(diag);
    if (in.ptr == NULL)
        in = MG_STR("");
    rc = normalise(in, arena, &out->text, &sc);
    if (rc != MG_OK) {
        if (diag != NULL)
            mg_diag_set(diag, MG_HL7_ERR_INTERNAL, "out of memory");
        return rc;
    }
    if (sc.lf_msh_line != 0) {
        if (diag != NULL)
            mg_diag_set(diag, MG_HL7_ERR_SEGMENT_SEQUENCE,
                        "line %zu: a line feed followed by MSH in a file "
                        "whose segments end in CR: the file mixes line "
                        "ends (convert it to one kind)", sc.lf_msh_line);
        return MG_EPARSE;
    }
    if (sc.envelope)
        return split_batch(out->text, arena, out, diag);
    if (sc.junk_line != 0) {
        if (diag != NULL)
            mg_diag_set(diag, MG_HL7_ERR_SEGMENT_SEQUENCE,
                        "line %zu: expected MSH, FHS or BHS%s", sc.junk_line,
                        sc.junk_framed ? " (it starts with an MLLP block "
                                         "byte: is the input already "
                                         "MLLP-framed?)" : "");
        return MG_EPARSE;
    }
    out->msg = mg_arena_alloc(arena, (sc.nmsh + 1) * sizeof(*out->msg));
    if (out->msg == NULL) {
        if (diag != NULL)
            mg_diag_set(diag, MG_HL7_ERR_INTERNAL, "out of memory");
        return MG_ENOMEM;
    }
    split_plain(out->text, out);
    return MG_OK;
}

/* ---- Checking that a message can be framed ------------------------------- */

/* Puts the segment id, its occurrence and the field number of the byte at
 * bad, in the segment that starts at seg, in *diag; leaves *diag as it is
 * when the segment does not start with an id and a separator before bad. */
static void
locate(struct mg_str msg, const char *seg, const char *bad,
       struct mg_diag *diag)
{
    const char *p = msg.ptr, *q;
    int seq = 0, field = 0;
    char id[4] = "";

    if (bad - seg < 4 || !is_alnum(seg[0]) || !is_alnum(seg[1]) ||
        !is_alnum(seg[2]))
        return;
    memcpy(id, seg, 3);
    for (q = seg + 3; q < bad; q++)
        field += *q == seg[3];
    if (memcmp(id, "MSH", 3) == 0)
        field++;                            /* MSH-1 is the separator */
    for (; p <= seg; p = q + 1) {
        q = memchr(p, '\r', (size_t)(seg - p) + 1);
        seq += memcmp(p, id, 3) == 0;
        if (q == NULL)
            break;
    }
    mg_diag_at(diag, id, seq, field, 0);
}

int
mg_mllp_client_check_frame(struct mg_str msg, struct mg_diag *diag)
{
    const char *sb = memchr(msg.ptr, MG_MLLP_SB, msg.len);
    const char *eb = memchr(msg.ptr, MG_MLLP_EB, msg.len);
    const char *bad = sb == NULL || (eb != NULL && eb < sb) ? eb : sb;
    const char *seg = msg.ptr, *what;
    size_t nseg = 1;

    if (bad == NULL)
        return MG_OK;
    if (diag == NULL)
        return MG_EINVAL;
    for (const char *q = msg.ptr; q < bad; q++) {
        if (*q == '\r') {
            nseg++;
            seg = q + 1;
        }
    }
    what = bad == sb ? "an MLLP start block byte (0x0B)"
                     : "an MLLP end block byte (0x1C)";
    mg_diag_clear(diag);
    locate(msg, seg, bad, diag);
    if (diag->segment[0] != '\0')
        mg_diag_set(diag, MG_HL7_ERR_DATA_TYPE,
                    "segment %zu (%s-%d) holds %s", nseg, diag->segment,
                    diag->field, what);
    else if (bad == seg)
        mg_diag_set(diag, MG_HL7_ERR_DATA_TYPE,
                    "segment %zu starts with %s (is the input already "
                    "MLLP-framed?)", nseg, what);
    else
        mg_diag_set(diag, MG_HL7_ERR_DATA_TYPE, "segment %zu holds %s", nseg,
                    what);
    return MG_EINVAL;
}

/* ---- Reading ACKs -------------------------------------------------------- */

/* Piece n (0-based) of s cut at sep; empty when absent. */
static struct mg_str
piece(struct mg_str s, char sep, int n)
{
    const char *p = s.ptr, *end = s.ptr + s.len, *q;

    for (;; n--) {
        q = memchr(p, sep, (size_t)(end - p));
        if (q == NULL)
            q = end;
        if (n == 0)
            return mg_str_n(p, (size_t)(q - p));
        if (q == end)
            return mg_str_n(end, 0);
        p = q + 1;
    }
}

/* The error code of an ERR segment: ERR-3.1 (v2.5 and later), else the
 * code in ERR-1.4.1 (the older ELD layout). */
static struct mg_str
err_code(struct mg_str seg, const struct mg_hl7v2_delims *d)
{
    struct mg_str code;

    code = mg_hl7v2_raw_comp(piece(seg, d->field, 3), d, 1);
    if (code.len == 0) {
        code = mg_hl7v2_raw_comp(piece(seg, d->field, 1), d, 4);
        if (d->sub != '\0')
            code = piece(code, d->sub, 0);
    }
    return mg_str_trim(code);
}

int
mg_mllp_client_read_ack(struct mg_str ack, struct mg_mllp_ack_info *out)
{
    struct mg_hl7v2_msh msh;
    const char *p, *end, *q;
    bool have_msa = false, have_err = false;

    memset(out, 0, sizeof(*out));
    if (ack.ptr == NULL || mg_hl7v2_msh_peek(ack, &msh) != MG_OK)
        return MG_EPARSE;
    for (p = ack.ptr, end = ack.ptr + ack.len; p < end; p = q + 1) {
        struct mg_str seg;

        for (q = p; q < end && *q != '\r' && *q != '\n'; q++)
            ;
        seg = mg_str_n(p, (size_t)(q - p));
        if (seg.len < 4 || seg.ptr[3] != msh.delims.field)
            continue;
        if (!have_msa && memcmp(seg.ptr, "MSA", 3) == 0) {
            out->code = mg_str_trim(piece(seg, msh.delims.field, 1));
            out->control_id = mg_str_trim(piece(seg, msh.delims.field, 2));
            have_msa = true;
        } else if (!have_err && memcmp(seg.ptr, "ERR", 3) == 0) {
            out->err_code = err_code(seg, &msh.delims);
            have_err = out->err_code.len > 0;
        }
    }
    if (!have_msa) {
        memset(out, 0, sizeof(*out));
        return MG_EPARSE;
    }
    out->ok = mg_str_eqz(out->code, "AA") || mg_str_eqz(out->code, "CA");
    return MG_OK;
}

/* ---- The connection ------------------------------------------------------ */

struct mg_mllp_client {
    int fd;
    struct mg_mllp_decoder dec;
    struct mg_buf wire; /* the framed message being sent */
    struct mg_buf ack;  /* the last ACK, copied out of the decoder */
    size_t rpos;        /* rbuf[rpos .. rlen) not yet fed to dec */
    size_t rlen;
    char rbuf[64 * 1024];
};

/* Milliseconds left until deadline (monotonic microseconds), at least 0. */
static int
ms_left(uint64_t deadline)
{
    uint64_t now = mg_clock_mono_us();

    if (now >= deadline)
        return 0;
    return (int)MG_MIN((deadline - now + 999) / 1000, (uint64_t)INT32_MAX);
}

static uint64_t
deadline_in(int timeout_ms)
{
    return mg_clock_mono_us() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) *
                                    1000u;
}

/* Waits until fd is ready for events or the deadline passes. Errors and
 * hang-ups count as ready: the next send/recv reports them. */
static int
wait_fd(int fd, short events, uint64_t deadline)
{
    struct pollfd pfd = {fd, events, 0};
    int n;

    for (;;) {
        n = poll(&pfd, 1, ms_left(deadline));
        if (n > 0)
            return MG_OK;
        if (n == 0)
            return MG_ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

static int
connect_one(const struct addrinfo *ai, int timeout_ms, int *out)
{
    int fd, rc, err = 0, one = 1;
    socklen_t len = sizeof(err);

    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd < 0)
        return -errno;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) {
            rc = -errno;
            goto out_close;
        }
        rc = wait_fd(fd, POLLOUT, deadline_in(timeout_ms));
        if (rc != MG_OK)
            goto out_close;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err != 0) {
            rc = -err;
            goto out_close;
        }
    }
    /* One small frame at a time: do not let Nagle hold it back. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    *out = fd;
    return MG_OK;

out_close:
    close(fd);
    return rc;
}

/* Whether getaddrinfo() answers for node/service with flags and no more:
 * for checks that must not wait on DNS. */
static bool
lookup_ok(const char *node, const char *service, int flags)
{
    struct addrinfo hints, *res;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_flags = flags;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(node, service, &hints, &res) != 0)
        return false;
    freeaddrinfo(res);
    return true;
}

bool
mg_mllp_client_port_ok(const char *port)
{
    unsigned long n = 0;
    const char *p;

    if (port == NULL || *port == '\0')
        return false;
    if (*port >= '0' && *port <= '9') {
        /* getaddrinfo() takes 99999 and sends to port 34463. */
        for (p = port; *p != '\0'; p++) {
            if (*p < '0' || *p > '9')
                return false;
            n = n * 10 + (unsigned long)(*p - '0');
            if (n > 65535)
                return false;
        }
        return n > 0;
    }
    if (!is_alnum(*port))
        return false;
    /* A service name: no node, so only the services database is read. */
    return lookup_ok(NULL, port, 0);
}

bool
mg_mllp_client_host_ok(const char *host)
{
    if (host == NULL || *host == '\0' || strpbrk(host, "/[] \t\r\n") != NULL)
        return false;
    /* An IPv6 literal is the only host with a ':'. */
    return strchr(host, ':') == NULL || lookup_ok(host, NULL, AI_NUMERICHOST);
}

/* getaddrinfo() for host and port, its failures told apart: a bad port is
 * the caller's input (MG_EINVAL), an unknown host the network's. */
static int
resolve(const char *host, const char *port, struct addrinfo **res)
{
    struct addrinfo hints;
    int rc;

    if (!mg_mllp_client_port_ok(port))
        return MG_EINVAL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, port, &hints, res);
    switch (rc) {
    case 0:
        return MG_OK;
    case EAI_SERVICE:
        return MG_EINVAL;
    case EAI_MEMORY:
        return MG_ENOMEM;
    case EAI_SYSTEM:
        if (errno != 0)
            return -errno;
        return MG_ENOTFOUND;
    default:
        return MG_ENOTFOUND;
    }
}

int
mg_mllp_client_connect(const char *host, const char *port, int timeout_ms,
                       struct mg_mllp_client **out)
{
    struct addrinfo *res, *ai;
    struct mg_mllp_client *c;
    int rc, fd = -1;

    rc = resolve(host, port, &res);
    if (rc != MG_OK)
        return rc;
    rc = MG_ENOTFOUND; /* no address at all */
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        rc = connect_one(ai, timeout_ms, &fd);
        if (rc == MG_OK)
            break;
    }
    freeaddrinfo(res);
    if (rc != MG_OK)
        return rc;

    c = mg_malloc(sizeof(*c));
    if (c == NULL) {
        close(fd);
        return MG_ENOMEM;
    }
    c->fd = fd;
    mg_mllp_decoder_init(&c->dec, MG_MLLP_CLIENT_MAX_ACK);
    mg_buf_init(&c->wire, 0);
    mg_buf_init(&c->ack, MG_MLLP_CLIENT_MAX_ACK);
    c->rpos = c->rlen = 0;
    *out = c;
    return MG_OK;
}

static int
send_all(struct mg_mllp_client *c, uint64_t deadline)
{
    const char *p = c->wire.ptr;
    size_t left = c->wire.len;
    ssize_t n;
    int rc;

    while (left > 0) {
        n = send(c->fd, p, left, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            left -= (size_t)n;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            rc = wait_fd(c->fd, POLLOUT, deadline);
            if (rc != MG_OK)
                return rc;
        } else if (errno != EINTR) {
            return -errno;
        }
    }
    return MG_OK;
}

/* Feeds what is buffered to the decoder; MG_OK when a frame came out (and
 * was copied to c->ack), MG_AGAIN when more must be read. */
static int
take_frame(struct mg_mllp_client *c)
{
    struct mg_str frame;
    size_t used;
    int rc;

    while (c->rpos < c->rlen) {
        rc = mg_mllp_decoder_feed(&c->dec, c->rbuf + c->rpos,
                                  c->rlen - c->rpos, &used, &frame);
        c->rpos += used;
        if (rc == MG_AGAIN)
            continue;
        if (rc != MG_OK)
            return rc;
        mg_buf_reset(&c->ack);
        return mg_buf_append_str(&c->ack, frame);
    }
    return MG_AGAIN;
}

static int
recv_frame(struct mg_mllp_client *c, uint64_t deadline)
{
    ssize_t n;
    int rc;

    for (;;) {
        rc = take_frame(c);
        if (rc != MG_AGAIN)
            return rc;
        n = recv(c->fd, c->rbuf, sizeof(c->rbuf), 0);
        if (n > 0) {
            c->rpos = 0;
            c->rlen = (size_t)n;
        } else if (n == 0) {
            return MG_ECLOSED;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            rc = wait_fd(c->fd, POLLIN, deadline);
            if (rc != MG_OK)
                return rc;
        } else if (errno != EINTR) {
            return -errno;
        }
    }
}

int
mg_mllp_client_exchange(struct mg_mllp_client *c, struct mg_str msg,
                        int timeout_ms, struct mg_str *ack)
{
    int rc;

    mg_buf_reset(&c->wire);
    rc = mg_mllp_encode(&c->wire, msg);
    if (rc != MG_OK)
        return rc;
    rc = send_all(c, deadline_in(timeout_ms));
    if (rc != MG_OK)
        return rc;
    /* The time for the ACK starts once the message is written: a large
     * message on a slow link must not eat the peer's time to answer. */
    rc = recv_frame(c, deadline_in(timeout_ms));
    if (rc != MG_OK)
        return rc;
    *ack = mg_buf_str(&c->ack);
    return MG_OK;
}

int
mg_mllp_client_receive(struct mg_mllp_client *c, int timeout_ms,
                       struct mg_str *ack)
{
    int rc = recv_frame(c, deadline_in(timeout_ms));

    if (rc != MG_OK)
        return rc;
    *ack = mg_buf_str(&c->ack);
    return MG_OK;
}

void
mg_mllp_client_close(struct mg_mllp_client *c)
{
    if (c == NULL)
        return;
    close(c->fd);
    mg_mllp_decoder_dispose(&c->dec);
    mg_buf_dispose(&c->wire);
    mg_buf_dispose(&c->ack);
    mg_free(c);
}
