/* `medgate send`: sends HL7 v2 message files to an MLLP listener, one
 * message in flight, and prints each ACK. Integration engineers use it to
 * try a feed by hand; scripts use its exit code (client.h lists them).
 *
 * Every file is read, split and checked before the connection is opened,
 * so a malformed file, or a message that MLLP cannot frame, stops the run
 * before anything is sent: input errors are exit 2, and exit 3 is kept for
 * what the network or the peer did. Error messages name the file, the
 * message number and its MSH-10, never message content (STYLE.md
 * section 6). */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/error.h"
#include "hl7v2/hl7v2.h"
#include "mllp/client.h"

/* Files bigger than this are refused: a batch of ORU with PDFs is tens of
 * megabytes, and the whole file is held in memory. */
#define MAX_FILE (512u * 1024 * 1024)
#define DEFAULT_TIMEOUT_MS 30000
/* Messages named one by one when a file has some that cannot be framed. */
#define MAX_REPORTED 10

static const char usage_text[] =
    "usage: medgate send [--host H] [--port P] [--timeout-ms N] [--quiet]\n"
    "                    [--keep-going] [FILE...]\n"
    "\n"
    "Sends the HL7 v2 messages in each FILE (none or '-': standard input)\n"
    "over MLLP, one at a time, and prints each ACK. Files may hold several\n"
    "messages, FHS/BHS batches, CR, LF or CRLF line ends and a UTF-8 BOM.\n"
    "\n"
    "  --host H         listener address (default 127.0.0.1)\n"
    "  --port P         listener port (default 2575)\n"
    "  --timeout-ms N   time to connect, to write each message, and to\n"
    "                   wait for its ACK once written (default 30000)\n"
    "  -q, --quiet      one line per message: FILE#N MSH-10 MSA-1 [ERR-3]\n"
    "  --keep-going     after an AE/AR/CE/CR, send the remaining messages\n"
    "\n"
    "exit: 0 all AA/CA, 1 some AE/AR/CE/CR, 2 usage or input error (bad\n"
    "      option or value, unreadable or malformed file, a message holding\n"
    "      an MLLP block byte 0x0B or 0x1C; nothing is sent), 3 host not\n"
    "      resolved, connection failed, timed out, closed without an ACK,\n"
    "      or the reply was not an ACK\n";

struct send_opts {
    const char *host;
    const char *port;
    int timeout_ms;
    bool quiet;
    bool keep_going;
    char **files; /* borrowed from argv */
    int nfiles;
};

/* One input file, split. */
struct input {
    const char *name;    /* as given; "-" is standard input */
    struct mg_str *msg;  /* in the run's arena */
    size_t nmsg;
};

struct run {
    struct send_opts opts;
    FILE *out;
    FILE *err;
    struct mg_arena arena; /* file contents and message slices */
    struct input *in;      /* opts.nfiles entries (1 for stdin) */
    size_t nin;
    struct mg_mllp_client *client;
    struct mg_str prev_cid; /* MSH-10 of the message sent before; empty
                               for the first */
    bool late_refusal; /* a skipped late ACK was AE/AR/CE/CR */
};

static const char *
display_name(const char *name)
{
    return strcmp(name, "-") == 0 ? "stdin" : name;
}

/* ---- Options ------------------------------------------------------------- */

/* Matches "--name VALUE" and "--name=VALUE"; advances *i past the value. */
static bool
take_value(int argc, char **argv, int *i, const char *name,
           const char **value)
{
    size_t n = strlen(name);

    if (strncmp(argv[*i], name, n) != 0)
        return false;
    if (argv[*i][n] == '=') {
        *value = argv[*i] + n + 1;
        return true;
    }
    if (argv[*i][n] != '\0')
        return false;
    *value = *i + 1 < argc ? argv[++*i] : NULL;
    return true;
}

static bool
parse_timeout(const char *s, int *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 1 || v > INT_MAX)
        return false;
    *out = (int)v;
    return true;
}

/* MG_OK, MG_AGAIN for --help (usage printed), or MG_EINVAL (reported). */
static int
parse_opts(struct run *r, int argc, char **argv)
{
    struct send_opts *o = &r->opts;
    const char *v;
    int i, first = 1;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];

        first = i;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, r->out);
            return MG_AGAIN;
        }
        if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            o->quiet = true;
        } else if (strcmp(a, "--keep-going") == 0) {
            o->keep_going = true;
        } else if (take_value(argc, argv, &i, "--host", &v)) {
            if ((o->host = v) == NULL || !mg_mllp_client_host_ok(v))
                goto out_usage;
        } else if (take_value(argc, argv, &i, "--port", &v)) {
            if ((o->port = v) == NULL || !mg_mllp_client_port_ok(v))
                goto out_usage;
        } else if (take_value(argc, argv, &i, "--timeout-ms", &v)) {
            if (v == NULL || !parse_timeout(v, &o->timeout_ms))
                goto out_usage;
        } else if (a[0] == '-' && a[1] != '\0') {
            goto out_usage;
        } else {
            break; /* the first file */
        }
    }
    o->files = argv + i;
    o->nfiles = argc - i;
    return MG_OK;

out_usage:
    /* Both words of "--port 99999", so the user sees which one. */
    fprintf(r->err, "medgate send: bad option or value: %s%s%s\n",
            argv[first], i > first ? " " : "", i > first ? argv[i] : "");
    fputs(usage_text, r->err);
    return MG_EINVAL;
}

/* ---- Reading and splitting files ----------------------------------------- */

/* MSH-10 of msg for an error message: "-" when it is empty or holds a
 * control character (the 0x0B or 0x1C that made the message unsendable
 * may be in it). */
static struct mg_str
readable_id(struct mg_str msg)
{
    struct mg_hl7v2_msh msh;
    struct mg_str id;

    if (mg_hl7v2_msh_peek(msg, &msh) != MG_OK || msh.nfield < 10)
        return MG_STR("-");
    id = mg_str_trim(msh.field[10]);
    for (size_t i = 0; i < id.len; i++)
        if ((unsigned char)id.ptr[i] < 0x20 || id.ptr[i] == 0x7f)
            return MG_STR("-");
    return id.len > 0 ? id : MG_STR("-");
}

/* Refuses a file that holds messages MLLP cannot frame (an SB or EB byte
 * inside, often an already framed capture): MG_OK, or MG_EINVAL after
 * naming each one (number, MSH-10 and where the byte is). The whole run
 * is refused, as for any other input error, so that nothing is sent
 * before an input that the user must fix first. */
static int
check_frames(struct run *r, const char *name, const struct mg_mllp_split *sp)
{
    size_t bad = 0;
    struct mg_diag diag;
    struct mg_str cid;

    for (size_t n = 1; n <= sp->nmsg; n++) {
        if (mg_mllp_client_check_frame(sp->msg[n - 1], &diag) == MG_OK)
            continue;
        if (++bad > MAX_REPORTED)
            continue;
        cid = readable_id(sp->msg[n - 1]);
        fprintf(r->err, "medgate send: %s#%zu (MSH-10 %.*s): cannot be "
                "framed: %s\n", display_name(name), n, (int)cid.len,
                cid.ptr, diag.text);
    }
    if (bad == 0)
        return MG_OK;
    if (bad > MAX_REPORTED)
        fprintf(r->err, "medgate send: %s: %zu more such messages not "
                "listed\n", display_name(name), bad - MAX_REPORTED);
    fprintf(r->err, "medgate send: %s: %zu of %zu messages cannot be "
            "framed; nothing was sent\n", display_name(name), bad, sp->nmsg);
    return MG_EINVAL;
}

static int
load_input(struct run *r, const char *name, struct input *in)
{
    struct mg_mllp_split split;
    struct mg_diag diag;
    struct mg_buf b;
    int rc;

    in->name = name;
    mg_buf_init(&b, MAX_FILE);
    rc = mg_buf_read_file(&b, name);
    if (rc != MG_OK) {
        fprintf(r->err, "medgate send: %s: cannot read: %s\n",
                display_name(name), mg_strerror(rc));
        goto out_dispose;
    }
    rc = mg_mllp_client_split(mg_buf_str(&b), &r->arena, &split, &diag);
    if (rc != MG_OK) {
        fprintf(r->err, "medgate send: %s: %s: %s\n", display_name(name),
                mg_strerror(rc), diag.text);
        goto out_dispose;
    }
    rc = check_frames(r, name, &split);
    if (rc != MG_OK)
        goto out_dispose;
    if (split.nmsg == 0)
        fprintf(r->err, "medgate send: %s: warning: no messages\n",
                display_name(name));
    in->msg = split.msg;
    in->nmsg = split.nmsg;

out_dispose:
    mg_buf_dispose(&b);
    return rc;
}

static int
load_inputs(struct run *r)
{
    static char *stdin_only[] = {"-"};
    char **files = r->opts.files;
    size_t n = (size_t)r->opts.nfiles;
    int rc;

    if (n == 0) {
        files = stdin_only;
        n = 1;
    }
    /* Someone typed `medgate send` alone: say what it waits for. */
    for (size_t i = 0; i < n; i++)
        if (strcmp(files[i], "-") == 0 && isatty(STDIN_FILENO)) {
            fprintf(r->err, "medgate send: reading messages from the "
                    "terminal; end with Ctrl-D (medgate send --help)\n");
            break;
        }
    r->in = mg_arena_calloc(&r->arena, n * sizeof(*r->in));
    if (r->in == NULL) {
        fprintf(r->err, "medgate send: %s\n", mg_strerror(MG_ENOMEM));
        return MG_ENOMEM;
    }
    for (r->nin = 0; r->nin < n; r->nin++) {
        rc = load_input(r, files[r->nin], &r->in[r->nin]);
        if (rc != MG_OK)
            return rc;
    }
    return MG_OK;
}

/* ---- Sending ------------------------------------------------------------- */

/* MSH-10 as sent, for messages and summaries ("-" when empty). */
static struct mg_str
control_id(struct mg_str msg)
{
    struct mg_hl7v2_msh msh;

    if (mg_hl7v2_msh_peek(msg, &msh) != MG_OK || msh.nfield < 10 ||
        msh.field[10].len == 0)
        return MG_STR("-");
    return mg_str_trim(msh.field[10]);
}

static struct mg_str
or_dash(struct mg_str s)
{
    return s.len > 0 ? s : MG_STR("-");
}

/* Bytes from the peer, for a terminal: a control character (ESC among
 * them: a peer could move the cursor, retitle the window, or worse) is
 * written as \xHH; CR, LF and CRLF end a line. */
static void
print_peer(FILE *out, struct mg_str s)
{
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];

        if (c == '\n' && i > 0 && s.ptr[i - 1] == '\r')
            continue; /* CRLF: one line end */
        if (c == '\r' || c == '\n')
            fputc('\n', out);
        else if ((c < 0x20 && c != '\t') || c == 0x7F)
            fprintf(out, "\\x%02X", c);
        else
            fputc(c, out);
    }
}

/* The ACK with one segment per line, then a blank line between ACKs. */
static void
print_ack(FILE *out, struct mg_str ack)
{
    print_peer(out, ack);
    if (ack.len > 0 && ack.ptr[ack.len - 1] != '\r' &&
        ack.ptr[ack.len - 1] != '\n')
        fputc('\n', out);
    fputc('\n', out);
}

static void
print_summary(FILE *out, const char *name, size_t n, struct mg_str cid,
              const struct mg_mllp_ack_info *info)
{
    fprintf(out, "%s#%zu %.*s ", display_name(name), n, (int)cid.len,
            cid.ptr);
    print_peer(out, or_dash(info->code));
    if (info->err_code.len > 0) {
        fputc(' ', out);
        print_peer(out, info->err_code);
    }
    fputc('\n', out);
}

/* Whether ack answers the message sent before this one (cid), read into
 * *info: a peer that repeats an ACK, or sends a commit ACK and then an
 * application ACK, leaves one more frame for that message on the
 * connection. */
static bool
is_late_ack(const struct run *r, struct mg_str ack, struct mg_str cid,
            struct mg_mllp_ack_info *info)
{
    if (r->prev_cid.len == 0 || mg_mllp_client_read_ack(ack, info) != MG_OK)
        return false;
    return !mg_str_eq(info->control_id, cid) &&
           mg_str_eq(info->control_id, r->prev_cid);
}

/* Milliseconds from now until deadline (monotonic microseconds), >= 0. */
static int
ms_until(uint64_t deadline)
{
    uint64_t now = mg_clock_mono_us();

    return now >= deadline ? 0 : (int)((deadline - now) / 1000);
}

/* Sends message n (1-based) of in. Returns an exit code: OK, NACKED,
 * USAGE (the message cannot be framed; check_frames() keeps this from
 * happening) or NETWORK (the connection cannot be used any more). */
static int
send_one(struct run *r, const struct input *in, size_t n)
{
    struct mg_str msg = in->msg[n - 1], cid = control_id(msg), ack;
    const char *name = display_name(in->name);
    struct mg_mllp_ack_info info;
    uint64_t deadline;
    int rc;

    rc = mg_mllp_client_exchange(r->client, msg, r->opts.timeout_ms, &ack);
    /* About when the message was written: its ACK's time runs from there
     * (a late ACK of the one before came first). */
    deadline = mg_clock_mono_us() + (uint64_t)r->opts.timeout_ms * 1000u;
    /* Taken for this message's, a late ACK for the one before would shift
     * every later ACK onto the message after its own, and the last ACK
     * would never be read. Skip it, within this message's time. */
    while (rc == MG_OK && is_late_ack(r, ack, cid, &info)) {
        /* An enhanced-mode peer's application ACK after its CA: a refusal
         * there is a refusal of that message (exit 1). */
        fprintf(r->err, "medgate send: %s#%zu: warning: skipped an ACK for "
                "the message before (MSA-2 %.*s, MSA-1 ", name, n,
                (int)r->prev_cid.len, r->prev_cid.ptr);
        print_peer(r->err, or_dash(info.code));
        fputs(")\n", r->err);
        r->late_refusal |= !info.ok;
        rc = mg_mllp_client_receive(r->client, ms_until(deadline), &ack);
    }
    r->prev_cid = cid;
    if (rc == MG_EINVAL) {
        fprintf(r->err, "medgate send: %s#%zu (MSH-10 %.*s): cannot be "
                "framed: it holds an MLLP block byte (0x0B or 0x1C)\n", name,
                n, (int)cid.len, cid.ptr);
        return MG_MLLP_SEND_USAGE;
    }
    if (rc != MG_OK) {
        fprintf(r->err, "medgate send: %s#%zu (MSH-10 %.*s): no ACK: %s\n",
                name, n, (int)cid.len, cid.ptr, mg_strerror(rc));
        return MG_MLLP_SEND_NETWORK;
    }
    rc = mg_mllp_client_read_ack(ack, &info); /* zeroed on error */
    if (r->opts.quiet)
        print_summary(r->out, in->name, n, cid, &info);
    else
        print_ack(r->out, ack);
    if (rc != MG_OK) {
        fprintf(r->err, "medgate send: %s#%zu (MSH-10 %.*s): the reply is "
                "not an ACK (no MSH or MSA)\n", name, n, (int)cid.len,
                cid.ptr);
        return MG_MLLP_SEND_NETWORK;
    }
    if (!mg_str_eq(info.control_id, cid)) {
        fprintf(r->err, "medgate send: %s#%zu: warning: MSA-2 ", name, n);
        print_peer(r->err, or_dash(info.control_id));
        fprintf(r->err, " does not match MSH-10 %.*s\n", (int)cid.len,
                cid.ptr);
    }
    if (info.ok)
        return MG_MLLP_SEND_OK;
    fprintf(r->err, "medgate send: %s#%zu (MSH-10 %.*s): ", name, n,
            (int)cid.len, cid.ptr);
    print_peer(r->err, or_dash(info.code));
    if (info.err_code.len > 0) {
        fputs(" ERR-3 ", r->err);
        print_peer(r->err, info.err_code);
    }
    fputc('\n', r->err);
    return MG_MLLP_SEND_NACKED;
}

static int
send_all(struct run *r)
{
    int result = MG_MLLP_SEND_OK, rc;

    for (size_t f = 0; f < r->nin; f++) {
        for (size_t n = 1; n <= r->in[f].nmsg; n++) {
            rc = send_one(r, &r->in[f], n);
            fflush(r->out);
            if (rc == MG_MLLP_SEND_NETWORK || rc == MG_MLLP_SEND_USAGE)
                return rc;
            if (rc == MG_MLLP_SEND_NACKED) {
                result = rc;
                if (!r->opts.keep_going)
                    return result;
            }
        }
    }
    return result;
}

static size_t
count_messages(const struct run *r)
{
    size_t total = 0;

    for (size_t f = 0; f < r->nin; f++)
        total += r->in[f].nmsg;
    return total;
}

int
mg_mllp_send_run(int argc, char **argv, FILE *out, FILE *err)
{
    struct run r;
    int rc, result;

    memset(&r, 0, sizeof(r));
    r.opts.host = "127.0.0.1";
    r.opts.port = "2575";
    r.opts.timeout_ms = DEFAULT_TIMEOUT_MS;
    r.out = out;
    r.err = err;
    rc = parse_opts(&r, argc, argv);
    if (rc != MG_OK)
        return rc == MG_AGAIN ? MG_MLLP_SEND_OK : MG_MLLP_SEND_USAGE;

    mg_arena_init(&r.arena, 64 * 1024, 0);
    result = MG_MLLP_SEND_USAGE;
    if (load_inputs(&r) != MG_OK)
        goto out_arena;
    result = MG_MLLP_SEND_OK;
    if (count_messages(&r) == 0)
        goto out_arena;

    rc = mg_mllp_client_connect(r.opts.host, r.opts.port, r.opts.timeout_ms,
                                &r.client);
    if (rc == MG_EINVAL) {
        /* parse_opts() checked the port: only a services database that
         * changed since then gets here. Still the user's input. */
        fprintf(err, "medgate send: bad port: %s\n", r.opts.port);
        result = MG_MLLP_SEND_USAGE;
        goto out_arena;
    }
    if (rc == MG_ENOTFOUND) {
        fprintf(err, "medgate send: cannot resolve host %s\n", r.opts.host);
        result = MG_MLLP_SEND_NETWORK;
        goto out_arena;
    }
    if (rc != MG_OK) {
        fprintf(err, "medgate send: cannot connect to %s port %s: %s\n",
                r.opts.host, r.opts.port, mg_strerror(rc));
        result = MG_MLLP_SEND_NETWORK;
        goto out_arena;
    }
    result = send_all(&r);
    if (result == MG_MLLP_SEND_OK && r.late_refusal)
        result = MG_MLLP_SEND_NACKED;
    mg_mllp_client_close(r.client);

out_arena:
    fflush(out);
    mg_arena_dispose(&r.arena);
    return result;
}

int
mg_mllp_send_main(int argc, char **argv)
{
    return mg_mllp_send_run(argc, argv, stdout, stderr);
}
