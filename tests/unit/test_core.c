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
#include "core/conf.h"
#include "core/error.h"
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
        assert_non_null(strstr(out, ":3: mllp.listeners.senders: "
                                    "organization_id must be a UUID"));
        mg_conf_dispose(&c);
        unlink(path);
    }
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

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_append_respects_max),
        cmocka_unit_test(test_buf_append_out_of_memory),
        cmocka_unit_test(test_buf_read_file_up_to_max),
        cmocka_unit_test(test_arena_many_allocations_and_max),
        cmocka_unit_test(test_str_helpers),
        cmocka_unit_test(test_strerror_names_codes),
        cmocka_unit_test(test_conf_loads_values_and_env),
        cmocka_unit_test(test_conf_errors_name_line_and_key),
        cmocka_unit_test(test_conf_refuses_organization_id_not_uuid),
        cmocka_unit_test(test_conf_syntax_error_has_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
