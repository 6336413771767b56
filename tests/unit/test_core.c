/* Unit tests for core: buffers, arenas, strings, errors, configuration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/cidr.h"
#include "core/conf.h"
#include "core/diag.h"
#include "core/error.h"
#include "core/log.h"
#include "core/str.h"

static void
test_buf_append_respects_max(void **state)
{
    struct mg_buf b;

    (void)state;
    mg_buf_init(&b, 8);
    assert_int_equal(mg_buf_append(&b, "12345", 5), MG_OK);
    assert_int_equal(mg_buf_append(&b, "6789", 4), MG_ETOOBIG);
    assert_int_equal(b.len, 5);
    assert_int_equal(mg_buf_appendf(&b, "%d", 678), MG_OK);
    assert_string_equal(b.ptr, "12345678");
    mg_buf_consume(&b, 3);
    assert_string_equal(b.ptr, "45678");
    mg_buf_dispose(&b);
}

static void
test_buf_append_out_of_memory(void **state)
{
    struct mg_buf b;

    (void)state;
    mg_buf_init(&b, 0);
    mg_alloc_fail_after(1);
    assert_int_equal(mg_buf_append(&b, "x", 1), MG_ENOMEM);
    mg_alloc_fail_after(0);
    assert_int_equal(b.len, 0);
    mg_buf_dispose(&b);
}

static void
test_buf_read_file_up_to_max(void **state)
{
    char path[] = "/tmp/mg-buf-XXXXXX";
    int fd = mkstemp(path);
    struct mg_buf b;

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "0123456789", 10), 10);
    close(fd);
    mg_buf_init(&b, 10); /* exactly the file's size: fits */
    assert_int_equal(mg_buf_read_file(&b, path), MG_OK);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.ptr, "0123456789");
    mg_buf_dispose(&b);
    mg_buf_init(&b, 9); /* one byte short */
    assert_int_equal(mg_buf_read_file(&b, path), MG_ETOOBIG);
    mg_buf_dispose(&b);
    unlink(path);
    mg_buf_init(&b, 0);
    assert_int_equal(mg_buf_read_file(&b, path), -ENOENT);
    mg_buf_dispose(&b);
}

static void
test_arena_many_allocations_and_max(void **state)
{
    struct mg_arena a;
    long before = mg_alloc_live();

    (void)state;
    mg_arena_init(&a, 64, 4096);
    for (int i = 0; i < 100; i++) {
        char *s = mg_arena_strndup(&a, "hello", 5);
        assert_non_null(s);
        assert_string_equal(s, "hello");
    }
    assert_null(mg_arena_alloc(&a, 8192));
    mg_arena_dispose(&a);
    assert_int_equal(mg_alloc_live(), before);
}

/* Sizes near SIZE_MAX must fail, not wrap: the rounding up to the
 * alignment, or the block header added to it, made a tiny block that the
 * caller then wrote the whole size into. (Only sizes the arithmetic
 * refuses: a merely huge one would reach malloc, which ASan aborts on.) */
static void
test_arena_alloc_near_size_max(void **state)
{
    struct mg_arena a;
    long before = mg_alloc_live();

    (void)state;
    mg_arena_init(&a, 64, 0); /* no maximum */
    assert_null(mg_arena_alloc(&a, SIZE_MAX));
    assert_null(mg_arena_alloc(&a, SIZE_MAX - 20));
    assert_null(mg_arena_calloc(&a, SIZE_MAX - 1));
    assert_non_null(mg_arena_alloc(&a, 100)); /* still usable */
    mg_arena_dispose(&a);
    assert_int_equal(mg_alloc_live(), before);
}

/* A buffer whose maximum is SIZE_MAX: len + n + 1 (the NUL) wrapped to
 * 0, so a reserve that cannot be met said MG_OK. */
static void
test_buf_reserve_near_size_max(void **state)
{
    struct mg_buf b;

    (void)state;
    mg_buf_init(&b, SIZE_MAX);
    assert_int_equal(mg_buf_append(&b, "abc", 3), MG_OK);
    assert_int_not_equal(mg_buf_reserve(&b, SIZE_MAX - 3), MG_OK);
    assert_int_not_equal(mg_buf_append(&b, "x", SIZE_MAX - 3), MG_OK);
    assert_int_equal(b.len, 3);
    assert_string_equal(b.ptr, "abc");
    mg_buf_dispose(&b);
}

/* Runs one mg_log_write() with stderr sent to a file; returns the bytes
 * written (the line may hold a NUL, so it is not read as a string). */
static size_t
capture_log(char *out, size_t size, bool json, const struct mg_log_ctx *ctx,
            const char *msg)
{
    char path[] = "/tmp/mg-log-XXXXXX";
    int fd = mkstemp(path), saved = dup(STDERR_FILENO);
    ssize_t n;

    assert_true(fd >= 0 && saved >= 0);
    unlink(path);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    mg_log_set_json(json);
    mg_log_write(MG_LOG_WARN, ctx, "%s", msg);
    mg_log_set_json(false);
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    n = read(fd, out, size);
    close(fd);
    assert_true(n > 0);
    return (size_t)n;
}

/* The message fields of a refusal line: separate keys, so that a log
 * shipper can filter by listener or sender; the sender's text quoted. */
static void
test_log_message_fields(void **state)
{
    struct mg_log_ctx ctx = {.component = "intake", .peer = "10.0.0.1:4000",
                             .listener = "ris", .sender = "RIS^RAD \"x\"",
                             .control_id = "MSG-1"};
    char line[1024];
    size_t n;

    (void)state;
    n = capture_log(line, sizeof(line) - 1, false, &ctx, "refused");
    line[n] = '\0';
    assert_non_null(strstr(line, " peer=10.0.0.1:4000 listener=\"ris\" "
                                 "sender=\"RIS^RAD \\\"x\\\"\" msh10=\"MSG-1\" "
                                 "msg=\"refused\"\n"));
    n = capture_log(line, sizeof(line) - 1, true, &ctx, "refused");
    line[n] = '\0';
    assert_non_null(strstr(line, "\"listener\":\"ris\",\"sender\":"
                                 "\"RIS^RAD \\\"x\\\"\",\"msh10\":\"MSG-1\""));
}

/* A limited line says how many were left out before it, and only then:
 * every line ended "(0 more like it not logged before this one)". */
static void
test_log_limited_says_only_a_real_count(void **state)
{
    struct mg_log_limit l = MG_LOG_LIMIT_INIT(1, 10);
    char path[] = "/tmp/mg-log-XXXXXX", out[512];
    int fd = mkstemp(path), saved = dup(STDERR_FILENO);
    ssize_t n;

    (void)state;
    assert_true(fd >= 0 && saved >= 0);
    unlink(path);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    mg_log_limited(&l, MG_LOG_WARN, NULL, "first");
    mg_log_limited(&l, MG_LOG_WARN, NULL, "second"); /* left out */
    l.start_us -= l.window_us;                       /* the window ends */
    mg_log_limited(&l, MG_LOG_WARN, NULL, "third");
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    n = read(fd, out, sizeof(out) - 1);
    close(fd);
    assert_true(n > 0);
    out[n] = '\0';
    assert_non_null(strstr(out, " msg=\"first\"\n"));
    assert_null(strstr(out, "second"));
    assert_non_null(strstr(out, " msg=\"third (1 more like it not logged "
                                "before this one)\"\n"));
}

/* One line, no NUL, every quoted value closed, and for JSON an object. */
static void
assert_one_log_line(const char *line, size_t n, bool json)
{
    size_t quotes = 0;

    assert_null(memchr(line, '\0', n));
    assert_ptr_equal(memchr(line, '\n', n), line + n - 1);
    for (size_t i = 0; i + 1 < n; i++) {
        if (line[i] == '\\')
            i++;
        else
            quotes += line[i] == '"';
    }
    assert_int_equal(quotes % 2, 0);
    if (json) {
        assert_int_equal(line[0], '{');
        assert_int_equal(line[n - 2], '}');
    }
}

/* Long values (an MSH-10 as long as the sender likes, a message full of
 * quotes to escape) fill the line: it is cut, but stays one well-formed
 * line. A JSON line lost its closing brace, and a key cut at the end of
 * the line left a half key and a NUL in it. */
static void
test_log_long_values_keep_line_well_formed(void **state)
{
    static char id[2100], quotes[1001];
    char line[4096];
    struct mg_log_ctx ctx = {.component = "mllp", .action = "reading frame",
                             .conn_id = 7, .peer = "10.0.0.1:4000",
                             .control_id = id};
    size_t n;

    (void)state;
    memset(quotes, '"', sizeof(quotes) - 1);
    for (size_t len = 1900; len < sizeof(id); len++) {
        memset(id, 'A', len);
        id[len] = '\0';
        for (int json = 0; json <= 1; json++) {
            n = capture_log(line, sizeof(line), json, &ctx, "a \"quoted\"\n"
                            "message");
            assert_one_log_line(line, n, json);
            n = capture_log(line, sizeof(line), json, NULL, quotes);
            assert_one_log_line(line, n, json);
        }
    }
}

static void
test_str_helpers(void **state)
{
    unsigned long long v;

    (void)state;
    assert_true(mg_str_ieq(MG_STR("Content-Length"), MG_STR("content-length")));
    assert_true(mg_str_eqz(mg_str_trim(MG_STR("  ab \r\n")), "ab"));
    assert_true(mg_str_to_u64(MG_STR("12345"), &v));
    assert_int_equal(v, 12345);
    assert_false(mg_str_to_u64(MG_STR("12a"), &v));
    assert_false(mg_str_to_u64(MG_STR(""), &v));
}

/* A diagnostic cut by its fixed buffer in the middle of a UTF-8
 * character ends before it: an AE's ERR text and the error column must be
 * valid UTF-8 (the stored AE failed its statement, SQLSTATE 22021). */
static void
test_diag_text_is_cut_on_a_character(void **state)
{
    struct mg_diag d;
    char s[16], text[400];

    (void)state;
    memset(text, 'a', sizeof(text));
    memcpy(text + sizeof(d.text) - 2, "\xC3\xA9\xC3\xA9", 4); /* é across the end */
    text[sizeof(text) - 1] = '\0';
    mg_diag_clear(&d);
    mg_diag_set(&d, 102, "%s", text);
    assert_int_equal(strlen(d.text), sizeof(d.text) - 2);
    snprintf(s, sizeof(s), "ab\xE2\x82\xAC"); /* a whole euro sign stays */
    mg_utf8_cut_partial(s);
    assert_string_equal(s, "ab\xE2\x82\xAC");
    snprintf(s, sizeof(s), "ab\xE2\x82"); /* its first two bytes go */
    mg_utf8_cut_partial(s);
    assert_string_equal(s, "ab");
    snprintf(s, sizeof(s), "ab\xF0\x9F\x98");
    mg_utf8_cut_partial(s);
    assert_string_equal(s, "ab");
}

static void
test_strerror_names_codes(void **state)
{
    (void)state;
    assert_string_equal(mg_strerror(MG_ETOOBIG), "too large");
    assert_string_equal(mg_strerror(MG_OK), "ok");
    assert_string_equal(mg_strerror(-2), "No such file or directory");
}

static char *
write_temp(const char *text)
{
    static char path[64];
    FILE *f;

    snprintf(path, sizeof(path), "/tmp/mg-conf-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

/* Loads a configuration file holding json over the defaults into c; what
 * the loader reports goes to out (size bytes, NUL-terminated). */
static int
load_text(struct mg_conf *c, const char *json, char *out, size_t size)
{
    char *path = write_temp(json);
    FILE *err;
    int rc;

    memset(out, 0, size);
    err = fmemopen(out, size - 1, "w");
    assert_non_null(err);
    mg_conf_defaults(c);
    rc = mg_conf_load(c, path, err);
    fclose(err);
    unlink(path);
    return rc;
}

static void
test_conf_loads_values_and_env(void **state)
{
    struct mg_conf c;
    char *path = write_temp("{\n  \"http\": {\"port\": 9090},\n"
                            "  \"mllp\": {\"listeners\": [{\"name\": \"ris\","
                            " \"port\": 2600, \"senders\": [{\"facility\": "
                            "\"RAD\", \"organization_id\": "
                            "\"00000000-0000-4000-8000-0000000000a1\"}]}]}"
                            "\n}\n");

    (void)state;
    setenv("MEDGATE_DATABASE_URL", "postgresql:///other", 1);
    mg_conf_defaults(&c);
    assert_int_equal(mg_conf_load(&c, path, stderr), MG_OK);
    assert_int_equal(c.http_port, 9090);
    assert_int_equal(c.database_pool_size, 4);
    assert_string_equal(c.database_url, "postgresql:///other");
    assert_int_equal(c.nlisteners, 1);
    assert_int_equal(c.listeners[0].port, 2600);
    assert_string_equal(c.listeners[0].senders[0].facility, "RAD");
    assert_string_equal(c.listeners[0].senders[0].application, "*");
    unsetenv("MEDGATE_DATABASE_URL");
    mg_conf_dispose(&c);
    unlink(path);
}

static void
test_conf_errors_name_line_and_key(void **state)
{
    struct mg_conf c;
    char out[1024] = "";
    char *path = write_temp("{\n  \"http\": {\n    \"prot\": 1,\n"
                            "    \"port\": 99999\n  }\n}\n");
    FILE *err = fmemopen(out, sizeof(out) - 1, "w");

    (void)state;
    mg_conf_defaults(&c);
    assert_int_equal(mg_conf_load(&c, path, err), MG_ECONF);
    fclose(err);
    assert_non_null(strstr(out, ":3: http.prot: unknown option"));
    assert_non_null(strstr(out, ":4: http.port: out of range"));
    mg_conf_dispose(&c);
    unlink(path);
}

/* An organization id that is not a UUID is refused at load, with its key:
 * it would fail every message's insert (and the start-up check quotes it
 * in SQL). */
static void
test_conf_refuses_organization_id_not_uuid(void **state)
{
    static const char *const bad[] = {"o1",
                                      "00000000-0000-4000-8000-0000000000a",
                                      "00000000-0000-4000-8000-0000000000a1x",
                                      "00000000x0000-4000-8000-0000000000a1",
                                      "00000000-0000-4000-8000-0000000000g1",
                                      "'; DROP TABLE patients; --"};

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct mg_conf c;
        char out[1024] = "", text[512];
        FILE *err = fmemopen(out, sizeof(out) - 1, "w");
        char *path;

        snprintf(text, sizeof(text),
                 "{\n  \"mllp\": {\"listeners\": [{\"name\": \"ris\", "
                 "\"port\": 2600,\n    \"senders\": [{\"organization_id\": "
                 "\"%s\"}]}]}\n}\n", bad[i]);
        path = write_temp(text);
        mg_conf_defaults(&c);
        assert_int_equal(mg_conf_load(&c, path, err), MG_ECONF);
        fclose(err);
        assert_non_null(strstr(out, ":3: mllp.listeners[0].senders[0]: "
                                    "organization_id must be a UUID"));
        mg_conf_dispose(&c);
        unlink(path);
    }
}

/* A value the gateway cannot use is refused by `config check` and at
 * start, from the file and from the environment alike: log.format "JSON"
 * was taken as kv, a pepper that is not 64 hex digits passed, and
 * http.max_body_bytes 0 meant the 16 MiB default. The pepper is a secret:
 * the error names the variable, never its value. */
static void
test_conf_refuses_values_it_cannot_use(void **state)
{
    static const struct {
        const char *var, *value, *want;
    } env[] = {
        {"MEDGATE_LOG_FORMAT", "JSON", "MEDGATE_LOG_FORMAT: expected kv or json"},
        {"MEDGATE_LOG_LEVEL", "verbose", "MEDGATE_LOG_LEVEL: expected debug, "
                                         "info, warn or error"},
        {"MEDGATE_SECURITY_API_KEY_PEPPER", "s3cret-but-not-hex",
         "MEDGATE_SECURITY_API_KEY_PEPPER: expected 64 hex digits"},
        {"MEDGATE_SECURITY_API_KEY_PEPPER",
         "s3cret0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e",
         "MEDGATE_SECURITY_API_KEY_PEPPER: expected 64 hex digits"},
        {"MEDGATE_HTTP_MAX_BODY_BYTES", "0", "MEDGATE_HTTP_MAX_BODY_BYTES: "
                                            "out of range"},
    };
    struct mg_conf c;
    char out[1024];
    FILE *err;
    int rc;

    (void)state;
    for (size_t i = 0; i < sizeof(env) / sizeof(env[0]); i++) {
        memset(out, 0, sizeof(out));
        err = fmemopen(out, sizeof(out) - 1, "w");
        setenv(env[i].var, env[i].value, 1);
        mg_conf_defaults(&c);
        rc = mg_conf_apply_env(&c, err);
        unsetenv(env[i].var); /* before a failure can leave it set */
        fclose(err);
        if (rc != MG_ECONF)
            fail_msg("%s=%s accepted", env[i].var, env[i].value);
        if (strstr(out, env[i].want) == NULL)
            fail_msg("%s: got \"%s\"", env[i].var, out);
        assert_null(strstr(out, "s3cret"));
        mg_conf_dispose(&c);
    }
    setenv("MEDGATE_SECURITY_API_KEY_PEPPER",
           "000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F",
           1);
    setenv("MEDGATE_LOG_FORMAT", "json", 1);
    mg_conf_defaults(&c);
    assert_int_equal(mg_conf_apply_env(&c, NULL), MG_OK);
    unsetenv("MEDGATE_SECURITY_API_KEY_PEPPER");
    unsetenv("MEDGATE_LOG_FORMAT");
    mg_conf_dispose(&c);

    assert_int_equal(load_text(&c, "{\n  \"log\": {\n    \"format\": \"xml\"\n"
                                   "  },\n  \"security\": {\"api_key_pepper\": "
                                   "\"s3cret\"}\n}\n", out, sizeof(out)),
                     MG_ECONF);
    assert_non_null(strstr(out, ":3: log.format: expected kv or json\n"));
    assert_non_null(strstr(out, ":5: security.api_key_pepper: expected 64 "
                                "hex digits\n"));
    assert_null(strstr(out, "s3cret"));
    mg_conf_dispose(&c);
}

/* An error in the second listener or sender names it and its own line;
 * it was reported at the first one's line, as "mllp.listeners.ack_mode". */
static void
test_conf_errors_name_the_listener_and_sender(void **state)
{
    struct mg_conf c;
    char out[1024] = "";
    char *path = write_temp(
        "{\n  \"mllp\": {\"listeners\": [\n"
        "    {\"name\": \"a\", \"port\": 2600, \"ack_mode\": \"auto\",\n"
        "     \"senders\": [{\"organization_id\": "
        "\"00000000-0000-4000-8000-0000000000a1\"}]},\n"
        "    {\"name\": \"b\", \"port\": 2601,\n"
        "     \"ack_mode\": \"sometimes\",\n"
        "     \"senders\": [{\"organization_id\": "
        "\"00000000-0000-4000-8000-0000000000a1\"},\n"
        "                 {\"organization_id\": \"nope\"}]}]}\n}\n");
    FILE *err = fmemopen(out, sizeof(out) - 1, "w");

    (void)state;
    mg_conf_defaults(&c);
    assert_int_equal(mg_conf_load(&c, path, err), MG_ECONF);
    fclose(err);
    if (strstr(out, ":6: mllp.listeners[1].ack_mode: expected auto or "
                    "original\n") == NULL ||
        strstr(out, ":8: mllp.listeners[1].senders[1]: organization_id "
                    "must be a UUID") == NULL)
        fail_msg("got \"%s\"", out);
    mg_conf_dispose(&c);
    unlink(path);
}

/* A listener's name labels metrics: one with a quote made the Prometheus
 * text invalid and failed the whole scrape. Two listeners with one name
 * shared their series; two on one port failed only at start. */
static void
test_conf_listener_names_and_ports(void **state)
{
    struct mg_conf c;
    char out[1024];

    (void)state;
    assert_int_equal(load_text(&c,
                               "{\"mllp\": {\"listeners\": ["
                               "{\"name\": \"ris \\\"main\\\"\", \"port\": 2600}]}}",
                               out, sizeof(out)),
                     MG_ECONF);
    if (strstr(out, "mllp.listeners[0].name: expected 1 to 64 letters") == NULL)
        fail_msg("got \"%s\"", out);
    mg_conf_dispose(&c);
    assert_int_equal(load_text(&c,
                               "{\"mllp\": {\"listeners\": ["
                               "{\"name\": \"ris\", \"port\": 2600},"
                               "{\"name\": \"ris\", \"port\": 2601},"
                               "{\"name\": \"emr\", \"port\": 2600,"
                               " \"bind\": \"0.0.0.0\"},"
                               "{\"name\": \"lab\", \"port\": 2600,"
                               " \"bind\": \"10.0.0.1\"}]}}",
                               out, sizeof(out)),
                     MG_ECONF);
    if (strstr(out, "mllp.listeners[1].name: listener ris is named twice") ==
            NULL ||
        strstr(out, "mllp.listeners[2].port: port 2600 is listener ris's "
                    "already") == NULL ||
        strstr(out, "mllp.listeners[3].port: port 2600 is listener emr's "
                    "already") == NULL ||
        strstr(out, "mllp.listeners[3].port: port 2600 is listener ris's") !=
            NULL) /* 10.0.0.1 and 127.0.0.1 are two sockets */
        fail_msg("got \"%s\"", out);
    mg_conf_dispose(&c);
    assert_int_equal(load_text(&c,
                               "{\"mllp\": {\"listeners\": ["
                               "{\"name\": \"ris-1.main_a\", \"port\": 0},"
                               "{\"name\": \"emr\", \"port\": 0}]}}",
                               out, sizeof(out)),
                     MG_OK);
    mg_conf_dispose(&c);
}

/* A misspelt listener or sender key was ignored without a word, and the
 * default silently used (a sender's "charest" decodes 8859/1 as UTF-8). */
static void
test_conf_refuses_unknown_listener_keys(void **state)
{
    struct mg_conf c;
    char out[1024] = "";
    char *path = write_temp("{\n  \"mllp\": {\"listeners\": [{\"port\": 2600,"
                            "\n    \"idle_timeout\": 5000,\n"
                            "    \"senders\": [{\"organization_id\": "
                            "\"00000000-0000-4000-8000-0000000000a1\",\n"
                            "      \"charest\": \"8859/1\", \"note\": \"x\"}]"
                            "}]}\n}\n");
    FILE *err = fmemopen(out, sizeof(out) - 1, "w");

    (void)state;
    mg_conf_defaults(&c);
    assert_int_equal(mg_conf_load(&c, path, err), MG_ECONF);
    fclose(err);
    if (strstr(out, ":3: mllp.listeners[0].idle_timeout: unknown option\n") ==
            NULL ||
        strstr(out, ":5: mllp.listeners[0].senders[0].charest: "
               "unknown option\n") ==
            NULL)
        fail_msg("got \"%s\"", out);
    assert_null(strstr(out, "note"));
    mg_conf_dispose(&c);
    unlink(path);
}

/* database.commit_timeout_ms: 30 s by default, 0 turns the deadline off,
 * and a deadline under a second is refused (it would put ordinary commits
 * in doubt), from the file and from the environment alike. */
static void
test_conf_commit_timeout(void **state)
{
    static const struct {
        const char *value, *want; /* want NULL: accepted */
        int ms;
    } env[] = {
        {"0", NULL, 0},
        {"1000", NULL, 1000},
        {"2000", NULL, 2000},
        {"3600000", NULL, 3600000},
        {"999", "MEDGATE_DATABASE_COMMIT_TIMEOUT_MS: below 1000 ms", 0},
        {"1", "MEDGATE_DATABASE_COMMIT_TIMEOUT_MS: below 1000 ms", 0},
        {"-1", "MEDGATE_DATABASE_COMMIT_TIMEOUT_MS: out of range", 0},
        {"3600001", "MEDGATE_DATABASE_COMMIT_TIMEOUT_MS: out of range", 0},
        {"30s", "MEDGATE_DATABASE_COMMIT_TIMEOUT_MS: not a whole number", 0},
    };
    static char ref[32768];
    struct mg_conf c;
    char out[1024];
    FILE *err;
    int rc;

    (void)state;
    mg_conf_defaults(&c);
    assert_int_equal(c.database_commit_timeout_ms, 30000);
    mg_conf_dispose(&c);
    for (size_t i = 0; i < sizeof(env) / sizeof(env[0]); i++) {
        memset(out, 0, sizeof(out));
        err = fmemopen(out, sizeof(out) - 1, "w");
        setenv("MEDGATE_DATABASE_COMMIT_TIMEOUT_MS", env[i].value, 1);
        mg_conf_defaults(&c);
        rc = mg_conf_apply_env(&c, err);
        unsetenv("MEDGATE_DATABASE_COMMIT_TIMEOUT_MS");
        fclose(err);
        if (env[i].want == NULL && (rc != MG_OK ||
                                    c.database_commit_timeout_ms != env[i].ms))
            fail_msg("%s: rc %d, value %d, \"%s\"", env[i].value, rc,
                     c.database_commit_timeout_ms, out);
        if (env[i].want != NULL &&
            (rc != MG_ECONF || strstr(out, env[i].want) == NULL))
            fail_msg("%s: rc %d, got \"%s\"", env[i].value, rc, out);
        mg_conf_dispose(&c);
    }

    assert_int_equal(load_text(&c, "{\n  \"database\": {\n    "
                                   "\"commit_timeout_ms\": 500\n  }\n}\n", out,
                               sizeof(out)),
                     MG_ECONF);
    if (strstr(out, ":3: database.commit_timeout_ms: below 1000 ms") == NULL)
        fail_msg("got \"%s\"", out);
    if (strstr(out, "allowed") != NULL) /* a range would contradict it */
        fail_msg("got \"%s\"", out);
    mg_conf_dispose(&c);

    assert_int_equal(load_text(&c, "{\"database\": {\"commit_timeout_ms\": 0}}\n",
                               out, sizeof(out)),
                     MG_OK);
    assert_int_equal(c.database_commit_timeout_ms, 0);
    mg_conf_dispose(&c);

    /* `medgate config reference` lists it. */
    memset(ref, 0, sizeof(ref));
    err = fmemopen(ref, sizeof(ref) - 1, "w");
    mg_conf_write_reference(err);
    fclose(err);
    assert_non_null(strstr(ref, "| `database.commit_timeout_ms` | integer | "
                                "`30000` |"));
}

static void
test_conf_syntax_error_has_line(void **state)
{
    struct mg_conf c;
    char out[512] = "";
    char *path = write_temp("{\n \"http\": {\"port\": 1,}\n}\n");
    FILE *err = fmemopen(out, sizeof(out) - 1, "w");

    (void)state;
    mg_conf_defaults(&c);
    assert_int_equal(mg_conf_load(&c, path, err), MG_ECONF);
    fclose(err);
    assert_non_null(strstr(out, ":2: "));
    mg_conf_dispose(&c);
    unlink(path);
}

/* A MEDGATE_ variable that names no option (a misspelling) was ignored
 * without a word and the default silently used. It is now named, with the
 * closest option when there is one, never with its value (it may be a
 * secret); it stops nothing. The variables of the project's own scripts
 * and tests (deploy/, tests/) are not options and draw no warning. */
static void
test_conf_warns_of_unknown_env_variables(void **state)
{
    static const char *const quiet[] = {
        "MEDGATE_HTTP_PORT",  "MEDGATE_TEST_ANYTHING", "MEDGATE_BIN",
        "MEDGATE_BUILD_DIR",  "MEDGATE_SOURCE_DIR",    "MEDGATE_MIGRATE",
        "MEDGATE_MLLP_PORT",  "MEDGATE_PG_FSYNC",      "MEDGATE_PG_OPTIONS",
        "MEDGATE_FLOOR_SETTINGS",
    };
    static const char *const want[] = {
        "(environment): warning: MEDGATE_DATABSE_URL is not a medgate "
        "option, ignored; did you mean MEDGATE_DATABASE_URL?\n",
        "(environment): warning: medgate_log_level is not a medgate option, "
        "ignored; did you mean MEDGATE_LOG_LEVEL?\n",
        "(environment): warning: MEDGATE_HTTP_PROT is not a medgate option, "
        "ignored; did you mean MEDGATE_HTTP_PORT?\n",
        "(environment): warning: MEDGATE_FROBNICATE is not a medgate option, "
        "ignored\n",
    };
    struct mg_conf c;
    char out[2048] = "";
    FILE *err = fmemopen(out, sizeof(out) - 1, "w");
    size_t nq = sizeof(quiet) / sizeof(quiet[0]);
    int rc;

    (void)state;
    setenv("MEDGATE_DATABSE_URL", "host=s3cret-db password=s3cret", 1);
    setenv("medgate_log_level", "s3cret", 1);
    setenv("MEDGATE_HTTP_PROT", "s3cret", 1);
    setenv("MEDGATE_FROBNICATE", "s3cret", 1);
    for (size_t i = 0; i < nq; i++)
        setenv(quiet[i], "9090", 1);
    mg_conf_defaults(&c);
    rc = mg_conf_apply_env(&c, err);
    unsetenv("MEDGATE_DATABSE_URL"); /* before a failure can leave them */
    unsetenv("medgate_log_level");
    unsetenv("MEDGATE_HTTP_PROT");
    unsetenv("MEDGATE_FROBNICATE");
    for (size_t i = 0; i < nq; i++)
        unsetenv(quiet[i]);
    fclose(err);
    assert_int_equal(rc, MG_OK);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (strstr(out, want[i]) == NULL)
            fail_msg("want \"%s\", got \"%s\"", want[i], out);
    for (size_t i = 1; i < nq; i++) /* [0] is named as a suggestion */
        if (strstr(out, quiet[i]) != NULL)
            fail_msg("%s warned of: \"%s\"", quiet[i], out);
    assert_null(strstr(out, "s3cret"));
    assert_string_equal(c.database_url, "postgresql:///medgate");
    assert_int_equal(c.http_port, 9090);
    mg_conf_dispose(&c);
}

/* At most burst lines a window; the ones left out are said in the next
 * line let through, and a new window lets lines through again. */
/* Address ranges: what parses, what is refused, what matches. */
static void
test_cidr(void **state)
{
    static const char *const bad[] = {
        "", "/24", "10.1.2.3/24", "10.1.2.0/33", "10.1.2.0/", "10.1.2.0/x",
        "10.1.2.0/24x", "host.example", "::1/129", "2001:db8::1/32",
        "10.1.2.0/-1", "::ffff:0.0.0.0/95",
    };
    static const struct {
        const char *range, *ip;
        bool match;
    } cases[] = {
        {"10.1.2.0/24", "10.1.2.77", true},
        {"10.1.2.0/24", "10.1.3.1", false},
        {"10.1.2.0/24", "::ffff:10.1.2.9", true}, /* a dual-stack socket */
        {"192.0.2.7", "192.0.2.7", true},
        {"192.0.2.7", "192.0.2.8", false},
        {"0.0.0.0/0", "203.0.113.1", true},
        {"0.0.0.0/0", "2001:db8::1", false},
        {"2001:db8::/32", "2001:db8:ffff::1", true},
        {"2001:db8::/32", "2001:db9::1", false},
        {"::1", "::1", true},
        {"10.0.0.0/8", "not an address", false},
        /* An IPv4-mapped entry is its IPv4 range. */
        {"::ffff:10.1.2.0/120", "10.1.2.200", true},
        {"::ffff:10.1.2.0/120", "::ffff:10.1.2.1", true},
        {"::ffff:10.1.2.0/120", "10.1.3.1", false},
    };
    struct mg_cidr c;

    (void)state;
    for (size_t i = 0; i < MG_ARRAY_LEN(bad); i++)
        assert_int_equal(mg_cidr_parse(bad[i], &c), MG_EINVAL);
    for (size_t i = 0; i < MG_ARRAY_LEN(cases); i++) {
        assert_int_equal(mg_cidr_parse(cases[i].range, &c), MG_OK);
        assert_int_equal(mg_cidr_match(&c, cases[i].ip), cases[i].match);
    }
    assert_false(mg_cidr_match(&c, NULL));
}

static void
test_log_limit(void **state)
{
    struct mg_log_limit l = MG_LOG_LIMIT_INIT(3, 10);
    uint64_t t = 1000000, dropped = 99;
    int written = 0;

    (void)state;
    for (int i = 0; i < 100; i++)
        if (mg_log_limit_take(&l, t + (uint64_t)i * 1000, &dropped)) {
            written++;
            assert_int_equal(dropped, 0);
        }
    assert_int_equal(written, 3);
    /* Still the same window (9.9 s in): nothing. */
    assert_false(mg_log_limit_take(&l, t + 9900000, &dropped));
    /* The next window: the 98 left out are told. */
    assert_true(mg_log_limit_take(&l, t + 10000000, &dropped));
    assert_int_equal(dropped, 98);
    assert_true(mg_log_limit_take(&l, t + 10000001, &dropped));
    assert_int_equal(dropped, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_append_respects_max),
        cmocka_unit_test(test_buf_append_out_of_memory),
        cmocka_unit_test(test_buf_read_file_up_to_max),
        cmocka_unit_test(test_arena_many_allocations_and_max),
        cmocka_unit_test(test_arena_alloc_near_size_max),
        cmocka_unit_test(test_buf_reserve_near_size_max),
        cmocka_unit_test(test_log_long_values_keep_line_well_formed),
        cmocka_unit_test(test_log_message_fields),
        cmocka_unit_test(test_log_limited_says_only_a_real_count),
        cmocka_unit_test(test_str_helpers),
        cmocka_unit_test(test_diag_text_is_cut_on_a_character),
        cmocka_unit_test(test_strerror_names_codes),
        cmocka_unit_test(test_conf_loads_values_and_env),
        cmocka_unit_test(test_conf_errors_name_line_and_key),
        cmocka_unit_test(test_conf_refuses_organization_id_not_uuid),
        cmocka_unit_test(test_conf_syntax_error_has_line),
        cmocka_unit_test(test_conf_refuses_values_it_cannot_use),
        cmocka_unit_test(test_conf_refuses_unknown_listener_keys),
        cmocka_unit_test(test_conf_errors_name_the_listener_and_sender),
        cmocka_unit_test(test_conf_listener_names_and_ports),
        cmocka_unit_test(test_conf_warns_of_unknown_env_variables),
        cmocka_unit_test(test_conf_commit_timeout),
        cmocka_unit_test(test_log_limit),
        cmocka_unit_test(test_cidr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
