/* The intake's PostgreSQL array literals: every column of a grouped commit
 * travels as one text[] parameter, so a quote or backslash in any value
 * (adapter input is JSON, error texts quote the message) must come out
 * escaped, NULL must stay an unquoted NULL, and long values must survive
 * whole. The literal is checked against the array input rules of
 * PostgreSQL's docs ("Array Value Input"), written out by hand here.
 * Then the verdict on padded MSH values, which must be the header
 * summary's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/error.h"
#include "intake/intake.h"
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

/* ---- padded MSH values ----------------------------------------------- */

static struct mg_conf_listener *
listener(void)
{
    static struct mg_conf_listener li;

    memset(&li, 0, sizeof(li));
    li.name = "lab";
    li.ack_mode = MG_ACK_ORIGINAL;
    li.senders[0].application = "LAB";
    li.senders[0].facility = "*";
    li.nsenders = 1;
    return &li;
}

/* The intake reads MSH-3.1, MSH-9.1 and MSH-11.1 as the header summary
 * does, without surrounding spaces: a padded type, processing id or
 * sending application is the message the routes and the rows see, not an
 * AR 200 / AR 202 / unknown sender. */
static void
test_judge_padded_msh_values(void **state)
{
    static const char *const msgs[] = {
        "MSH|^~\\&|LAB|HOSP|GW|GW|20240101||ADT ^A01|C1|P|2.5\rPID|1||M1\r",
        "MSH|^~\\&|LAB|HOSP|GW|GW|20240101||ADT^A01|C1| P|2.5\rPID|1||M1\r",
        "MSH|^~\\&|LAB |HOSP|GW|GW|20240101||ADT^A01|C1|P|2.5\rPID|1||M1\r",
    };
    struct mg_intake_verdict v;
    int bad = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
        assert_int_equal(mg_intake_judge(listener(), NULL,
                                         mg_str_from(msgs[i]), &v),
                         MG_OK);
        if (strcmp(v.status, "received") != 0) {
            print_error("message %zu: %s: %s at %s\n", i, v.status, v.error,
                        v.location);
            bad++;
        }
        free(v.input);
        free(v.ack);
    }
    assert_int_equal(bad, 0);
    /* Still refused once trimmed: not P, D or T. */
    assert_int_equal(mg_intake_judge(listener(), NULL, mg_str_from(
        "MSH|^~\\&|LAB|HOSP|GW|GW|20240101||ADT^A01|C1| X|2.5\rPID|1\r"),
        &v), MG_OK);
    assert_string_equal(v.status, "rejected");
    assert_string_equal(v.location, "MSH^1^11^0^1^0");
    /* The answer replay would record: the AR with its ERR. */
    assert_string_equal(v.ack_code, "AR");
    assert_non_null(strstr(v.ack, "MSA|AR|C1"));
    free(v.input);
    free(v.ack);
}

/* A message that passed the header check but did not parse (bad UTF-8 in
 * PID) keeps its header columns from the raw MSH, read as the summary
 * reads them: trimmed, so the type column is ADT, not NULL. */
static void
test_prepare_unparsed_header_columns_trimmed(void **state)
{
    struct mg__intake_item it;

    (void)state;
    memset(&it, 0, sizeof(it));
    mg_arena_init(&it.arena, 8192, 0);
    assert_int_equal(mg__intake_prepare(&it, listener(), NULL, mg_str_from(
        "MSH|^~\\&|LAB|HOSP|GW|GW|20240101||ADT ^A01 |C1| P |2.5\r"
        "PID|1||M1||\xff\r")), MG_OK);
    assert_string_equal(it.col[COL_STATUS], "failed");
    assert_string_equal(it.col[COL_ERROR_LOCATION], "PID^1^5^0^0^0");
    assert_non_null(it.col[COL_TYPE]);
    assert_string_equal(it.col[COL_TYPE], "ADT");
    assert_string_equal(it.col[COL_TRIGGER], "A01");
    assert_string_equal(it.col[COL_PROCESSING_ID], "P");
    mg_arena_dispose(&it.arena);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_array_escapes),
        cmocka_unit_test(test_array_long_value_whole),
        cmocka_unit_test(test_array_empty),
        cmocka_unit_test(test_judge_padded_msh_values),
        cmocka_unit_test(test_prepare_unparsed_header_columns_trimmed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
