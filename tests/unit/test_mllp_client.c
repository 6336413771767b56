/* Unit tests for the MLLP client behind `medgate send`: the splitter on
 * every file of tests/data/hl7v2 in CR, LF and CRLF, with and without a
 * BOM, one message or all of them in one file; batches; the check that a
 * message can be framed; port values; the ACK reader; and `medgate send`
 * end to end against a small MLLP responder thread on 127.0.0.1 (exit
 * codes 0, 1, 2, 3 and what is printed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/error.h"
#include "hl7v2/hl7v2.h"
#include "mllp/client.h"
#include "mllp/mllp.h"

#define DATA MG_TESTDATA_DIR "/hl7v2"
#define MAX_FILES 64

/* ---- Helpers ------------------------------------------------------------- */

static char *
read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *p;
    long n;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    p[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return p;
}

/* The file names listed in MANIFEST.tsv (first column), malloc'd. */
static size_t
manifest(char *names[MAX_FILES])
{
    size_t len, n = 0;
    char *text = read_file(DATA "/MANIFEST.tsv", &len), *line, *save;

    line = strtok_r(text, "\n", &save); /* the header */
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        char *tab = strchr(line, '\t');

        assert_non_null(tab);
        assert_true(n < MAX_FILES);
        names[n++] = strndup(line, (size_t)(tab - line));
    }
    free(text);
    assert_true(n >= 40);
    return n;
}

static size_t
count_char(struct mg_str s, char c)
{
    size_t n = 0;

    for (size_t i = 0; i < s.len; i++)
        n += s.ptr[i] == c;
    return n;
}

/* text (CR-terminated segments) rewritten with eol after each segment. */
static void
with_eol(struct mg_buf *out, struct mg_str text, const char *eol, bool bom)
{
    if (bom)
        assert_int_equal(mg_buf_appendz(out, "\xEF\xBB\xBF"), MG_OK);
    for (size_t i = 0; i < text.len; i++) {
        if (text.ptr[i] == '\r')
            assert_int_equal(mg_buf_appendz(out, eol), MG_OK);
        else
            assert_int_equal(mg_buf_appendc(out, text.ptr[i]), MG_OK);
    }
}

/* ---- Splitter ------------------------------------------------------------ */

/* Every data file is one message: normalised to CR, no BOM, no LF, and
 * parsed to the same segments as the file itself. */
static void
test_split_every_data_file(void **state)
{
    char *names[MAX_FILES], path[512];
    size_t nfile = manifest(names);

    (void)state;
    for (size_t i = 0; i < nfile; i++) {
        struct mg_hl7v2_msg *orig, *sent;
        struct mg_mllp_split sp;
        struct mg_arena arena;
        struct mg_str m;
        size_t len;
        char *bytes;

        snprintf(path, sizeof(path), "%s/%s", DATA, names[i]);
        bytes = read_file(path, &len);
        mg_arena_init(&arena, 4096, 0);
        assert_int_equal(mg_mllp_client_split(mg_str_n(bytes, len), &arena,
                                              &sp, NULL), MG_OK);
        assert_int_equal(sp.nmsg, 1);
        assert_false(sp.batch);
        m = sp.msg[0];
        assert_memory_equal(m.ptr, "MSH|", 4);
        assert_int_equal(m.ptr[m.len - 1], '\r');
        assert_int_equal(count_char(m, '\n'), 0);
        assert_true(mg_str_eq(m, sp.text));

        assert_int_equal(mg_hl7v2_parse(mg_str_n(bytes, len), NULL, &arena,
                                        &orig, NULL), MG_OK);
        assert_int_equal(mg_hl7v2_parse(m, NULL, &arena, &sent, NULL),
                         MG_OK);
        assert_int_equal(sent->nseg, orig->nseg);
        /* ORU_R01-PDF.hl7 has a CR inside its base64 data. */
        assert_true(count_char(m, '\r') >= orig->nseg);
        assert_true(mg_str_eq(sent->hdr.control_id, orig->hdr.control_id));
        for (size_t s = 0; s < orig->nseg; s++)
            assert_true(mg_str_eq(sent->seg[s].raw, orig->seg[s].raw));

        mg_arena_dispose(&arena);
        free(bytes);
        free(names[i]);
    }
}

/* All data files in one file, in each line ending, with a BOM before
 * every message or none, blank lines between them or no line end after
 * the last segment: the same messages come out, in order, as from the
 * files one by one. */
static void
test_split_many_messages_any_eol(void **state)
{
    static const struct {
        const char *eol;
        bool bom;
        const char *gap; /* between messages */
        bool cut;        /* no terminator after the last segment */
    } cases[] = {
        {"\r", false, "", false},      {"\r", true, "\r", false},
        {"\n", false, "", false},      {"\n", true, "\n\n", false},
        {"\r\n", false, "", false},    {"\r\n", true, "\r\n", false},
        {"\n", false, " \n", false},   {"\r\n", true, "\r\n\t\r\n", false},
        /* cat of files with a BOM and without a final line end */
        {"\n", true, "", true},        {"\r\n", true, "", true},
        {"\r", true, "", true},
    };
    char *names[MAX_FILES], path[512];
    struct mg_str one[MAX_FILES];
    size_t nfile = manifest(names);
    struct mg_arena arena;

    (void)state;
    mg_arena_init(&arena, 64 * 1024, 0);
    for (size_t i = 0; i < nfile; i++) {
        struct mg_mllp_split sp;
        size_t len;
        char *bytes;

        snprintf(path, sizeof(path), "%s/%s", DATA, names[i]);
        bytes = read_file(path, &len);
        assert_int_equal(mg_mllp_client_split(mg_str_n(bytes, len), &arena,
                                              &sp, NULL), MG_OK);
        one[i] = sp.msg[0];
        free(bytes);
        free(names[i]);
    }
    for (size_t c = 0; c < MG_ARRAY_LEN(cases); c++) {
        struct mg_mllp_split sp;
        struct mg_buf all;

        mg_buf_init(&all, 0);
        for (size_t i = 0; i < nfile; i++) {
            with_eol(&all, one[i], cases[c].eol, cases[c].bom);
            if (cases[c].cut)
                all.len -= strlen(cases[c].eol);
            assert_int_equal(mg_buf_appendz(&all, cases[c].gap), MG_OK);
        }
        assert_int_equal(mg_mllp_client_split(mg_buf_str(&all), &arena, &sp,
                                              NULL), MG_OK);
        assert_int_equal(sp.nmsg, nfile);
        for (size_t i = 0; i < nfile; i++)
            assert_true(mg_str_eq(sp.msg[i], one[i]));
        mg_buf_dispose(&all);
    }
    mg_arena_dispose(&arena);
}

/* Hand-made inputs: what is kept, dropped, and refused. */
static void
test_split_cases(void **state)
{
    static const struct {
        const char *in;
        int rc;
        size_t nmsg;
        const char *first; /* expected first message */
        const char *text;  /* expected in the diag */
    } cases[] = {
        {"", MG_OK, 0, NULL, NULL},
        {"\r\n\n  \n", MG_OK, 0, NULL, NULL},
        {"MSH|^~\\&|A\nPID|1", MG_OK, 1, "MSH|^~\\&|A\rPID|1\r", NULL},
        /* With a CR in the file, a lone LF is data, not a terminator. */
        {"MSH|^~\\&|A\rOBX|1|TX|a\nb\r", MG_OK, 1,
         "MSH|^~\\&|A\rOBX|1|TX|a\nb\r", NULL},
        {"MSH|^~\\&|A\r\nEVN|\r\nMSH|^~\\&|B\r\n", MG_OK, 2,
         "MSH|^~\\&|A\rEVN|\r", NULL},
        /* "MSHX" is not an MSH line, so no new message starts there. */
        {"MSH|^~\\&|A\nMSHX|1\n", MG_OK, 1, "MSH|^~\\&|A\rMSHX|1\r", NULL},
        {"\xEF\xBB\xBF\nMSH|^~\\&|A", MG_OK, 1, "MSH|^~\\&|A\r", NULL},
        {"MSH|^~\\&|A\nPID|1\xEF\xBB\xBFMSH|^~\\&|B", MG_OK, 2,
         "MSH|^~\\&|A\rPID|1\r", NULL},
        /* A BOM inside a line that is not before MSH stays data. */
        {"MSH|^~\\&|A\nNTE|1|x\xEF\xBB\xBFy", MG_OK, 1,
         "MSH|^~\\&|A\rNTE|1|x\xEF\xBB\xBFy\r", NULL},
        {"PID|1\nMSH|^~\\&|A", MG_EPARSE, 0, NULL, "line 1:"},
        {"\n\nhello\nMSH|^~\\&|A", MG_EPARSE, 0, NULL, "line 3:"},
        /* Mixed line ends: B would have gone inside A. */
        {"MSH|^~\\&|A\r\nPID|1\nMSH|^~\\&|B\nPID|2\n", MG_EPARSE, 0, NULL,
         "line 2: a line feed followed by MSH"},
    };

    (void)state;
    for (size_t c = 0; c < MG_ARRAY_LEN(cases); c++) {
        struct mg_mllp_split sp;
        struct mg_arena arena;
        struct mg_diag diag;

        mg_arena_init(&arena, 1024, 0);
        assert_int_equal(mg_mllp_client_split(mg_str_from(cases[c].in),
                                              &arena, &sp, &diag),
                         cases[c].rc);
        if (cases[c].rc == MG_OK) {
            assert_int_equal(sp.nmsg, cases[c].nmsg);
            if (cases[c].first != NULL)
                assert_true(mg_str_eqz(sp.msg[0], cases[c].first));
        } else {
            assert_non_null(strstr(diag.text, cases[c].text));
        }
        mg_arena_dispose(&arena);
    }
}

/* FHS/BHS batches are cut by the codec: envelopes are not sent, counts
 * are checked, and LF batches work like CR ones. */
static void
test_split_batch(void **state)
{
    static const char good[] =
        "\xEF\xBB\xBF"
        "FHS|^~\\&|SND\n"
        "BHS|^~\\&|SND\n"
        "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|M1|P|2.5.1\n"
        "PID|1||X\n"
        "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|M2|P|2.5.1\n"
        "PID|1||Y\n"
        "BTS|2\n"
        "FTS|1\n";
    static const char bad_count[] =
        "BHS|^~\\&|SND\r"
        "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|M1|P|2.5.1\r"
        "BTS|3\r";
    struct mg_mllp_split sp;
    struct mg_arena arena;
    struct mg_diag diag;

    (void)state;
    mg_arena_init(&arena, 1024, 0);
    assert_int_equal(mg_mllp_client_split(MG_STR(good), &arena, &sp, &diag),
                     MG_OK);
    assert_true(sp.batch);
    assert_int_equal(sp.nmsg, 2);
    assert_true(mg_str_eqz(sp.msg[0],
                           "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|M1|P|2.5.1\r"
                           "PID|1||X\r"));
    assert_true(mg_str_eqz(sp.msg[1],
                           "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|M2|P|2.5.1\r"
                           "PID|1||Y\r"));
    assert_int_equal(mg_mllp_client_split(MG_STR(bad_count), &arena, &sp,
                                          &diag), MG_EPARSE);
    assert_string_equal(diag.segment, "BTS");
    mg_arena_dispose(&arena);
}

/* ---- Frame check --------------------------------------------------------- */

/* A message holding SB or EB cannot be framed: the diag says which byte
 * and where (segment number, id, occurrence, field), never the content. */
static void
test_check_frame_cases(void **state)
{
    static const struct {
        const char *msg;
        int rc;
        const char *seg; /* diag.segment */
        int seq, field;
        const char *text; /* in diag.text */
    } cases[] = {
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|M1|P|2.5.1\rPID|1\r", MG_OK, "", 0,
         0, NULL},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|M1|P|2.5.1\rNTE|1||x\x0by\r",
         MG_EINVAL, "NTE", 1, 3,
         "segment 2 (NTE-3) holds an MLLP start block byte (0x0B)"},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|M1|P|2.5.1\rOBX|1|TX|||a\r"
         "NTE|1\rOBX|2|TX|||b\x1c" "c\r",
         MG_EINVAL, "OBX", 2, 5,
         "segment 4 (OBX-5) holds an MLLP end block byte (0x1C)"},
        /* MSH-1 is the separator, so the tenth field is MSH-10. */
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|M\x1c" "1|P|2.5.1\r", MG_EINVAL,
         "MSH", 1, 10, "segment 1 (MSH-10) holds an MLLP end block byte"},
        /* The first of the two bytes is the one reported. */
        {"MSH|^~\\&|A\rPID|\x1c|\x0b\r", MG_EINVAL, "PID", 1, 1,
         "(0x1C)"},
        /* A capture saved with its framing. */
        {"MSH|^~\\&|A\rPID|1\r\x1c\r", MG_EINVAL, "", 0, 0,
         "segment 3 starts with an MLLP end block byte (0x1C) (is the input "
         "already MLLP-framed?)"},
        {"MSH|^~\\&|A\rPI\x0b" "D|1\r", MG_EINVAL, "", 0, 0,
         "segment 2 holds an MLLP start block byte (0x0B)"},
    };

    (void)state;
    for (size_t c = 0; c < MG_ARRAY_LEN(cases); c++) {
        struct mg_diag diag;

        assert_int_equal(mg_mllp_client_check_frame(mg_str_from(cases[c].msg),
                                                    &diag), cases[c].rc);
        assert_int_equal(mg_mllp_client_check_frame(mg_str_from(cases[c].msg),
                                                    NULL), cases[c].rc);
        if (cases[c].rc == MG_OK)
            continue;
        assert_string_equal(diag.segment, cases[c].seg);
        assert_int_equal(diag.seq, cases[c].seq);
        assert_int_equal(diag.field, cases[c].field);
        assert_non_null(strstr(diag.text, cases[c].text));
    }
}

/* Ports are numbers 1-65535 or service names; anything else is refused
 * before a lookup (getaddrinfo() itself would take 99999 as 34463). */
static void
test_port_ok(void **state)
{
    static const char *good[] = {"1", "2575", "65535"};
    static const char *bad[] = {"", "0", "65536", "99999", "-1", "+80",
                                "80x", " 80", "no-such-service-here"};
    struct mg_mllp_client *c = NULL;

    (void)state;
    for (size_t i = 0; i < MG_ARRAY_LEN(good); i++)
        assert_true(mg_mllp_client_port_ok(good[i]));
    for (size_t i = 0; i < MG_ARRAY_LEN(bad); i++) {
        assert_false(mg_mllp_client_port_ok(bad[i]));
        assert_int_equal(mg_mllp_client_connect("127.0.0.1", bad[i], 100,
                                                &c), MG_EINVAL);
    }
    assert_false(mg_mllp_client_port_ok(NULL));
    assert_null(c);
}

/* ---- ACK reader ---------------------------------------------------------- */

static void
test_read_ack_cases(void **state)
{
    static const struct {
        const char *ack;
        int rc;
        const char *code, *cid, *err;
        bool ok;
    } cases[] = {
        {"MSH|^~\\&|R|F|S|F|20240101||ACK^A01^ACK|1|P|2.5.1\r"
         "MSA|AA|M1\r", MG_OK, "AA", "M1", "", true},
        {"MSH|^~\\&|R|F|S|F|20240101||ACK|1|P|2.5.1\r"
         "MSA|AE|M2\rERR||PID^1^3|102^Data type error^HL70357|E\r"
         "ERR||PID^1^5|101^Missing^HL70357|E\r",
         MG_OK, "AE", "M2", "102", false},
        /* v2.3: the code is in ERR-1.4.1 (ELD). */
        {"MSH|^~\\&|R|F|S|F|20240101||ACK|1|P|2.3\r"
         "MSA|AR|M3|bad\rERR|MSH^1^12^203&Unsupported version&HL70357\r",
         MG_OK, "AR", "M3", "203", false},
        {"MSH|^~\\&|R|F|S|F|20240101||ACK|1|P|2.5.1\nMSA|CA|M4\n", MG_OK,
         "CA", "M4", "", true},
        /* Other delimiters, read from the ACK's MSH. */
        {"MSH#!$\\&#R#F#S#F#20240101##ACK#1#P#2.5.1\rMSA#CE#M5\r"
         "ERR##X!1#207!Internal\r", MG_OK, "CE", "M5", "207", false},
        {"MSH|^~\\&|R|F|S|F|20240101||ACK|1|P|2.5.1\r", MG_EPARSE, "", "",
         "", false},
        {"HELLO", MG_EPARSE, "", "", "", false},
    };

    (void)state;
    for (size_t c = 0; c < MG_ARRAY_LEN(cases); c++) {
        struct mg_mllp_ack_info info;

        assert_int_equal(mg_mllp_client_read_ack(mg_str_from(cases[c].ack),
                                                 &info), cases[c].rc);
        if (cases[c].rc != MG_OK)
            continue;
        assert_true(mg_str_eqz(info.code, cases[c].code));
        assert_true(mg_str_eqz(info.control_id, cases[c].cid));
        assert_true(mg_str_eqz(info.err_code, cases[c].err));
        assert_int_equal(info.ok, cases[c].ok);
    }
}

/* ---- A responder on 127.0.0.1 -------------------------------------------- */

enum responder_mode {
    REPLY,    /* AA, or AE (ERR 207) when MSH-10 is FAIL */
    MISMATCH, /* AA with MSA-2 = OTHER */
    SILENT,   /* read frames, never answer */
    HANGUP,   /* close the connection on the first frame */
    GARBAGE,  /* answer with a frame that is not an ACK */
    TWICE,    /* send every ACK twice (as a late duplicate would come) */
    COMMIT,   /* enhanced mode: CA, then the application ACK (REPLY's) */
    ESCAPE,   /* AA with MSA-2 holding a terminal escape sequence */
};

/* Serves one connection, then ends. */
struct responder {
    enum responder_mode mode;
    int lfd;
    char port[8];
    int frames; /* frames received; read after join */
    pthread_t thread;
};

static int
reply(int fd, struct mg_str frame, enum responder_mode mode)
{
    struct mg_hl7v2_ack ack = {0};
    struct mg_hl7v2_msh msh;
    struct mg_diag diag;
    struct mg_buf body, wire;
    int rc;

    if (mg_hl7v2_msh_peek(frame, &msh) != MG_OK)
        return -1;
    mg_diag_clear(&diag);
    ack.code = mode == COMMIT ? MG_HL7V2_CA : MG_HL7V2_AA;
    if (mode != COMMIT && mg_str_eqz(msh.field[10], "FAIL")) {
        ack.code = MG_HL7V2_AE;
        mg_diag_at(&diag, "PID", 1, 3, 0);
        mg_diag_set(&diag, MG_HL7_ERR_INTERNAL, "test failure");
        ack.err = &diag;
        ack.nerr = 1;
    }
    if (mode == MISMATCH)
        msh.field[10] = MG_STR("OTHER");
    if (mode == ESCAPE)
        msh.field[10] = MG_STR("\x1b]0;owned\x07");
    ack.control_id = MG_STR("ACK1");
    ack.timestamp = MG_STR("20240101000000");
    mg_buf_init(&body, 0);
    mg_buf_init(&wire, 0);
    rc = mg_hl7v2_ack_build(&msh, &ack, &body);
    if (rc == MG_OK)
        rc = mg_mllp_encode(&wire, mg_buf_str(&body));
    if (rc == MG_OK && send(fd, wire.ptr, wire.len, MSG_NOSIGNAL) !=
                           (ssize_t)wire.len)
        rc = -1;
    mg_buf_dispose(&body);
    mg_buf_dispose(&wire);
    return rc;
}

static void *
responder_main(void *arg)
{
    struct responder *r = arg;
    struct mg_mllp_decoder dec;
    char buf[4096];
    int fd = accept(r->lfd, NULL, NULL);
    ssize_t n;

    if (fd < 0)
        return NULL;
    mg_mllp_decoder_init(&dec, 0);
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) {
        const char *p = buf;
        size_t left = (size_t)n, used;
        struct mg_str frame;

        while (left > 0) {
            int rc = mg_mllp_decoder_feed(&dec, p, left, &used, &frame);

            p += used;
            left -= used;
            if (rc != MG_OK)
                continue;
            r->frames++;
            if (r->mode == TWICE && reply(fd, frame, r->mode) != MG_OK)
                goto out_close;
            if (r->mode == COMMIT && reply(fd, frame, COMMIT) != MG_OK)
                goto out_close;
            if (r->mode == GARBAGE)
                (void)send(fd, "\x0bHELLO\x1c\r", 8, MSG_NOSIGNAL);
            else if (r->mode == HANGUP ||
                     (r->mode != SILENT &&
                      reply(fd, frame, r->mode == COMMIT ? REPLY : r->mode) !=
                          MG_OK))
                goto out_close;
        }
    }
out_close:
    mg_mllp_decoder_dispose(&dec);
    close(fd);
    return NULL;
}

/* A socket bound to an ephemeral loopback port, its number in port. */
static int
bind_loopback(char port[8])
{
    struct sockaddr_in sa = {0};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(port, 8, "%u", (unsigned)ntohs(sa.sin_port));
    return fd;
}

/* The same, listening. */
static int
listen_loopback(char port[8])
{
    int fd = bind_loopback(port);

    assert_int_equal(listen(fd, 4), 0);
    return fd;
}

static void
responder_start(struct responder *r, enum responder_mode mode)
{
    memset(r, 0, sizeof(*r));
    r->mode = mode;
    r->lfd = listen_loopback(r->port);
    assert_int_equal(pthread_create(&r->thread, NULL, responder_main, r), 0);
}

static void
responder_join(struct responder *r)
{
    assert_int_equal(pthread_join(r->thread, NULL), 0);
    close(r->lfd);
}

/* ---- medgate send end to end --------------------------------------------- */

/* A temporary file holding text; the name is written to path. */
static void
temp_file(char path[64], const char *text)
{
    int fd;

    snprintf(path, 64, "/tmp/mg_send_test_XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* What one run of `medgate send` did. */
struct result {
    int exit;
    char out[16384];
    char err[4096];
};

static void
slurp(FILE *f, char *buf, size_t size)
{
    size_t n;

    rewind(f);
    n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Runs `medgate send` with the NULL-terminated arguments after "send". */
static void
run_send(struct result *res, ...)
{
    char *argv[32];
    int argc = 0;
    FILE *out = tmpfile(), *err = tmpfile();
    va_list ap;

    assert_non_null(out);
    assert_non_null(err);
    argv[argc++] = "send";
    va_start(ap, res);
    while ((argv[argc] = va_arg(ap, char *)) != NULL)
        argc++;
    va_end(ap);
    res->exit = mg_mllp_send_run(argc, argv, out, err);
    slurp(out, res->out, sizeof(res->out));
    slurp(err, res->err, sizeof(res->err));
}

#define MSG(id)                                                                \
    "MSH|^~\\&|SND|FAC|RCV|FAC|20240101120000||ADT^A01^ADT_A01|" id            \
    "|P|2.5.1\nEVN|A01|20240101120000\nPID|1||123^^^H^MR||DOE^JOHN\n"

static const char three[] = MSG("OK1") MSG("FAIL") MSG("OK3");

/* A data file (BOM, LF) and a file of two messages: every ACK is AA; the
 * full ACKs print one segment per line, the summaries one per message. */
static void
test_send_all_accepted(void **state)
{
    char path[64], want[512];
    struct responder r;
    struct result *res = malloc(sizeof(*res));
    long live = mg_alloc_live();

    (void)state;
    temp_file(path, MSG("OK1") "\n" MSG("OK2"));
    responder_start(&r, REPLY);
    run_send(res, "--port", r.port, DATA "/fhir-converter/ADT01-23.hl7",
             path, NULL);
    responder_join(&r);
    assert_int_equal(res->exit, MG_MLLP_SEND_OK);
    assert_int_equal(r.frames, 3);
    assert_null(strchr(res->out, '\r'));
    assert_non_null(strstr(res->out, "\nMSA|AA|OK1\n\n"));
    assert_non_null(strstr(res->out, "\nMSA|AA|OK2\n\n"));
    assert_non_null(strstr(res->out, "MSH|^~\\&|"));
    assert_string_equal(res->err, "");

    responder_start(&r, REPLY);
    run_send(res, "--quiet", "--host", "127.0.0.1", "--port", r.port, path,
             NULL);
    responder_join(&r);
    assert_int_equal(res->exit, MG_MLLP_SEND_OK);
    snprintf(want, sizeof(want), "%s#1 OK1 AA\n%s#2 OK2 AA\n", path, path);
    assert_string_equal(res->out, want);

    unlink(path);
    free(res);
    assert_int_equal(mg_alloc_live(), live);
}

/* An AE stops the run unless --keep-going; either way the exit is 1. */
static void
test_send_error_ack(void **state)
{
    char path[64], want[512];
    struct responder r;
    struct result *res = malloc(sizeof(*res));

    (void)state;
    temp_file(path, three);
    responder_start(&r, REPLY);
    run_send(res, "--port", r.port, "-q", path, NULL);
    responder_join(&r);
    assert_int_equal(res->exit, MG_MLLP_SEND_NACKED);
    assert_int_equal(r.frames, 2);
    snprintf(want, sizeof(want), "%s#1 OK1 AA\n%s#2 FAIL AE 207\n", path,
             path);
    assert_string_equal(res->out, want);
    snprintf(want, sizeof(want), "%s#2 (MSH-10 FAIL): AE ERR-3 207", path);
    assert_non_null(strstr(res->err, want));

    responder_start(&r, REPLY);
    run_send(res, "--keep-going", "--quiet", "--port", r.port, path, NULL);
    responder_join(&r);
    assert_int_equal(res->exit, MG_MLLP_SEND_NACKED);
    assert_int_equal(r.frames, 3);
    snprintf(want, sizeof(want),
             "%s#1 OK1 AA\n%s#2 FAIL AE 207\n%s#3 OK3 AA\n", path, path,
             path);
    assert_string_equal(res->out, want);

    unlink(path);
    free(res);
}

/* Refused, silent, hanging-up and garbage-sending peers all give exit 3. */
static void
test_send_network_failures(void **state)
{
    char path[64], port[8], want[256];
    struct responder r;
    struct result *res = malloc(sizeof(*res));
    int fd;

    (void)state;
    temp_file(path, three);
    /* Bound, never listening: connections are refused, and nobody else
     * can take the port meanwhile. */
    fd = bind_loopback(port);
    run_send(res, "--port", port, path, NULL);
    close(fd);
    assert_int_equal(res->exit, MG_MLLP_SEND_NETWORK);
    assert_non_null(strstr(res->err, "cannot connect to 127.0.0.1 port"));
    assert_string_equal(res->out, "");

    responder_start(&r, SILENT);
    run_send(res, "--port", r.port, "--timeout-ms", "200", path, NULL);
    responder_join(&r);
    assert_int_equal(res->exit, MG_MLLP_SEND_NETWORK);
    assert_int_equal(r.frames, 1);
    snprintf(want, sizeof(want), "%s#1 (MSH-10 OK1): no ACK: %s", path,
             mg_strerror(MG_ETIMEDOUT));
    assert_non_null(strstr(res->err, want));

    responder_start(&r, HANGUP);
    run_send(res, "--port", r.port, "--keep-going", path, NULL);
    responder_join(&r);
    assert_int_equal(res->exit, MG_MLLP_SEND_NETWORK);
    assert_int_equal(r.frames, 1);
    assert_non_null(strstr(res->err, "#1 (MSH-10 OK1): no ACK:"));

    responder_start(&r, GARBAGE);
    run_send(res, "--port", r.port, "--quiet", path, NULL);
    responder_join(&r);
    assert_int_equal(res->exit, MG_MLLP_SEND_NETWORK);
    assert_int_equal(r.frames, 1);
    snprintf(want, sizeof(want), "%s#1 OK1 -\n", path);
    assert_string_equal(res->out, want);
    assert_non_null(strstr(res->err, "#1 (MSH-10 OK1): the reply is not an "
                                     "ACK"));

    unlink(path);
    free(res);
}

/* A peer that sends one ACK twice: the copy is not the next message's
 * ACK. Taken as such, every ACK after it went to the message after its
 * own, and the last one was never read: an AE for FAIL exited 0. */
static void
test_send_duplicate_ack_skipped(void **state)
{
    char path[64], want[512];
    struct responder r;
    struct result *res = malloc(sizeof(*res));

    (void)state;
    temp_file(path, MSG("OK1") MSG("FAIL"));
    responder_start(&r, TWICE);
    run_send(res, "--quiet", "--port", r.port, path, NULL);
    responder_join(&r);
    assert_int_equal(res->exit, MG_MLLP_SEND_NACKED);
    snprintf(want, sizeof(want), "%s#1 OK1 AA\n%s#2 FAIL AE 207\n", path,
             path);
    assert_string_equal(res->out, want);
    assert_non_null(strstr(res->err, "#2: warning: skipped an ACK for the "
                                     "message before (MSA-2 OK1, MSA-1 AA)"));
    assert_null(strstr(res->err, "does not match"));
    unlink(path);
    free(res);
}

/* An enhanced-mode peer answers CA, then its application ACK: an AE there
 * (read as the late ACK of the message before) is a refusal, exit 1. */
static void
test_send_late_application_error(void **state)
{
    char path[64];
    struct responder r;
    struct result *res = malloc(sizeof(*res));

    (void)state;
    temp_file(path, MSG("FAIL") MSG("OK2"));
    responder_start(&r, COMMIT);
    run_send(res, "--quiet", "--port", r.port, path, NULL);
    responder_join(&r);
    assert_non_null(strstr(res->err, "(MSA-2 FAIL, MSA-1 AE)"));
    assert_int_equal(res->exit, MG_MLLP_SEND_NACKED);
    unlink(path);
    free(res);
}

/* What the peer sends reaches the terminal without its control
 * characters: ESC and BEL as \xHH. */
static void
test_send_prints_no_control_characters(void **state)
{
    char path[64];
    struct responder r;
    struct result *res = malloc(sizeof(*res));

    (void)state;
    temp_file(path, MSG("OK1"));
    responder_start(&r, ESCAPE);
    run_send(res, "--port", r.port, path, NULL);
    responder_join(&r);
    assert_non_null(strstr(res->out, "MSA|AA|\\x1B]0;owned\\x07"));
    assert_null(strchr(res->out, 0x1b));
    assert_null(strchr(res->err, 0x1b));
    unlink(path);
    free(res);
}

/* A wrong MSA-2 is a warning, not a failure. */
static void
test_send_control_id_mismatch(void **state)
{
    char path[64];
    struct responder r;
    struct result *res = malloc(sizeof(*res));

    (void)state;
    temp_file(path, MSG("OK1"));
    responder_start(&r, MISMATCH);
    run_send(res, "--quiet", "--port", r.port, path, NULL);
    responder_join(&r);
    assert_int_equal(res->exit, MG_MLLP_SEND_OK);
    assert_non_null(strstr(res->err,
                           "#1: warning: MSA-2 OTHER does not match MSH-10 "
                           "OK1"));
    unlink(path);
    free(res);
}

/* Bad options and unreadable or malformed files give exit 2 before any
 * connection is made (port 1 would refuse it). */
static void
test_send_usage(void **state)
{
    char path[64];
    struct result *res = malloc(sizeof(*res));

    (void)state;
    run_send(res, "--bogus", NULL);
    assert_int_equal(res->exit, MG_MLLP_SEND_USAGE);
    assert_non_null(strstr(res->err, "usage: medgate send"));
    run_send(res, "--port", NULL);
    assert_int_equal(res->exit, MG_MLLP_SEND_USAGE);
    run_send(res, "--timeout-ms", "0", "x.hl7", NULL);
    assert_int_equal(res->exit, MG_MLLP_SEND_USAGE);
    run_send(res, "--port", "1", "/nonexistent/x.hl7", NULL);
    assert_int_equal(res->exit, MG_MLLP_SEND_USAGE);
    assert_non_null(strstr(res->err, "/nonexistent/x.hl7: cannot read"));

    temp_file(path, "PID|1\n" MSG("OK1"));
    run_send(res, "--port", "1", path, NULL);
    assert_int_equal(res->exit, MG_MLLP_SEND_USAGE);
    assert_non_null(strstr(res->err, "line 1: expected MSH"));
    unlink(path);

    run_send(res, "--help", NULL);
    assert_int_equal(res->exit, MG_MLLP_SEND_OK);
    assert_non_null(strstr(res->out, "--keep-going"));
    free(res);
}

#define MSH(id)                                                                \
    "MSH|^~\\&|SND|FAC|RCV|FAC|20240101120000||ADT^A01^ADT_A01|" id "|P|2.5.1\n"

/* A message holding an MLLP block byte (0x0B or 0x1C) cannot be framed: it
 * is bad input, so exit 2, with the message named by number, MSH-10 and
 * place. As for every input error, nothing is sent, not even the
 * messages before it, with or without --keep-going: the listener below
 * would take a connection into its backlog, and must not see one. */
static void
test_send_unframeable_message(void **state)
{
    static const char *opts[] = {"--quiet", "--keep-going"};
    char path[64], port[8], want[256];
    struct result *res = malloc(sizeof(*res));
    int lfd;

    (void)state;
    temp_file(path, MSG("OK1")
                    MSH("BAD2") "EVN|A01|2024\x0b" "0101\nPID|1\n"
                    MSG("OK3")
                    MSH("B\x1c" "4") "PID|1\n");
    lfd = listen_loopback(port);
    for (size_t i = 0; i < MG_ARRAY_LEN(opts); i++) {
        run_send(res, "--port", port, "--timeout-ms", "300", opts[i], path,
                 NULL);
        assert_int_equal(res->exit, MG_MLLP_SEND_USAGE);
        assert_string_equal(res->out, "");
        snprintf(want, sizeof(want), "%s#2 (MSH-10 BAD2): cannot be framed: "
                 "segment 2 (EVN-2) holds an MLLP start block byte (0x0B)\n",
                 path);
        assert_non_null(strstr(res->err, want));
        /* Its MSH-10 holds the byte: not shown. */
        snprintf(want, sizeof(want), "%s#4 (MSH-10 -): cannot be framed: "
                 "segment 1 (MSH-10) holds an MLLP end block byte (0x1C)\n",
                 path);
        assert_non_null(strstr(res->err, want));
        assert_null(strstr(res->err, "#1 "));
        assert_null(strstr(res->err, "#3 "));
        assert_non_null(strstr(res->err, "2 of 4 messages cannot be framed; "
                                         "nothing was sent"));
        assert_null(strchr(res->err, '\x0b'));
        assert_null(strchr(res->err, '\x1c'));
    }
    /* No connection was made: none waits to be accepted. */
    assert_int_equal(poll(&(struct pollfd){lfd, POLLIN, 0}, 1, 0), 0);
    close(lfd);
    unlink(path);
    free(res);
}

/* A --port or --host that cannot name a listener is a usage error (exit
 * 2, before any connection), not a network failure. */
static void
test_send_bad_port_or_host(void **state)
{
    static const char *args[][2] = {
        {"--port", "99999"}, {"--port", "65536"}, {"--port", "0"},
        {"--port", "no-such-service-here"}, {"--host", "127.0.0.1:2575"},
        {"--host", "[::1]"}, {"--host", "mllp://127.0.0.1"},
    };
    char path[64], want[128];
    struct result *res = malloc(sizeof(*res));

    (void)state;
    temp_file(path, MSG("OK1"));
    for (size_t i = 0; i < MG_ARRAY_LEN(args); i++) {
        run_send(res, args[i][0], args[i][1], path, NULL);
        assert_int_equal(res->exit, MG_MLLP_SEND_USAGE);
        snprintf(want, sizeof(want), "bad option or value: %s %s\n",
                 args[i][0], args[i][1]);
        assert_non_null(strstr(res->err, want));
        assert_null(strstr(res->err, "cannot connect"));
    }
    unlink(path);
    free(res);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_every_data_file),
        cmocka_unit_test(test_split_many_messages_any_eol),
        cmocka_unit_test(test_split_cases),
        cmocka_unit_test(test_split_batch),
        cmocka_unit_test(test_check_frame_cases),
        cmocka_unit_test(test_port_ok),
        cmocka_unit_test(test_read_ack_cases),
        cmocka_unit_test(test_send_all_accepted),
        cmocka_unit_test(test_send_error_ack),
        cmocka_unit_test(test_send_network_failures),
        cmocka_unit_test(test_send_control_id_mismatch),
        cmocka_unit_test(test_send_duplicate_ack_skipped),
        cmocka_unit_test(test_send_late_application_error),
        cmocka_unit_test(test_send_prints_no_control_characters),
        cmocka_unit_test(test_send_usage),
        cmocka_unit_test(test_send_unframeable_message),
        cmocka_unit_test(test_send_bad_port_or_host),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
