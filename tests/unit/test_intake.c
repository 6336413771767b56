/* The intake's PostgreSQL array literals: every column of a grouped commit
 * travels as one text[] parameter, so a quote or backslash in any value
 * (adapter input is JSON, error texts quote the message) must come out
 * escaped, NULL must stay an unquoted NULL, and long values must survive
 * whole. The literal is checked against the array input rules of
 * PostgreSQL's docs ("Array Value Input"), written out by hand here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/error.h"
#include "intake/intake_int.h"

static void
encode(const char *const *values, size_t n, struct mg_buf *b,
       const char **out)
{
    mg_buf_init(b, 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(mg__intake_array_append(b, values[i], i == 0),
                         MG_OK);
    assert_int_equal(mg__intake_array_close(b, out), MG_OK);
}

static void
test_array_escapes(void **state)
{
    (void)state;
    const char *values[] = {"plain", "say \"hi\"", "a\\b", NULL, "",
                            "\"\\\"", "{x,y}"};
    struct mg_buf b;
    const char *out;

    encode(values, sizeof(values) / sizeof(values[0]), &b, &out);
    assert_string_equal(out, "{\"plain\",\"say \\\"hi\\\"\",\"a\\\\b\",NULL,"
                             "\"\",\"\\\"\\\\\\\"\",\"{x,y}\"}");
    mg_buf_dispose(&b);
}

static void
test_array_long_value_whole(void **state)
{
    (void)state;
    char big[5001];
    struct mg_buf b;
    const char *out;
    const char *values[1] = {big};

    for (size_t i = 0; i < sizeof(big) - 1; i++)
        big[i] = i % 1000 == 999 ? '"' : (char)('a' + i % 26);
    big[sizeof(big) - 1] = '\0';
    encode(values, 1, &b, &out);
    /* {" + 5000 characters + 5 backslashes + "} */
    assert_int_equal(strlen(out), 2 + 5000 + 5 + 2);
    assert_memory_equal(out + 2, big, 999);
    assert_memory_equal(out + 2 + 999, "\\\"", 2);
    mg_buf_dispose(&b);
}

static void
test_array_empty(void **state)
{
    (void)state;
    struct mg_buf b;
    const char *out;

    mg_buf_init(&b, 0);
    assert_int_equal(mg__intake_array_close(&b, &out), MG_OK);
    assert_string_equal(out, "{}");
    mg_buf_dispose(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_array_escapes),
        cmocka_unit_test(test_array_long_value_whole),
        cmocka_unit_test(test_array_empty),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
