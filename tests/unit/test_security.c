/* Unit tests for API keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <sodium.h>

#include "core/error.h"
#include "security/security.h"

static void
test_apikey_new_then_verify(void **state)
{
    unsigned char pepper[32], tag[32];
    char token[MG_APIKEY_TOKEN_MAX], id[MG_APIKEY_ID_MAX + 1];
    struct mg_str kid, secret;

    (void)state;
    assert_int_equal(mg_security_init(), MG_OK);
    assert_int_equal(mg_apikey_pepper_parse(
                         "000102030405060708090a0b0c0d0e0f"
                         "101112131415161718191a1b1c1d1e1f", pepper), MG_OK);
    assert_int_equal(mg_apikey_new(pepper, token, id, tag), MG_OK);
    assert_true(strncmp(token, "mgk_", 4) == 0);
    assert_true(mg_apikey_parse(mg_str_from(token), &kid, &secret));
    assert_true(mg_str_eqz(kid, id));
    assert_true(mg_apikey_verify(pepper, mg_str_from(token), tag));
}

/* The tag of a fixed token, computed outside medgate (Python's hashlib):
 *   blake2b(b"apikey-v1" + key_id + b"_" + secret, key=bytes(range(32)),
 *           digest_size=32)
 * so that keys made by other tools (a provisioning script, say) verify,
 * and a change of the formula cannot pass because new() and verify()
 * changed together. */
static void
test_apikey_known_answer(void **state)
{
    static const char token[] = "mgk_0123456789abcdef01234567_"
                                "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I";
    static const char want[] = "e43821ebeaabb244330b782f35f66dcc"
                               "e260266de2bd3903dfb43cabb80e93f4";
    unsigned char pepper[32], tag[32];
    size_t n;

    (void)state;
    assert_int_equal(mg_security_init(), MG_OK);
    assert_int_equal(mg_apikey_pepper_parse(
                         "000102030405060708090a0b0c0d0e0f"
                         "101112131415161718191a1b1c1d1e1f", pepper), MG_OK);
    assert_int_equal(sodium_hex2bin(tag, sizeof(tag), want, strlen(want),
                                    NULL, &n, NULL), 0);
    assert_int_equal(n, sizeof(tag));
    assert_true(mg_apikey_verify(pepper, mg_str_from(token), tag));
    tag[0] ^= 1;
    assert_false(mg_apikey_verify(pepper, mg_str_from(token), tag));
}

/* Every key id fits the schema's CHECK (key_id ~ '^[A-Za-z0-9]{6,64}$'):
 * base64url ids once failed it for about 4 keys in 10. */
static void
test_apikey_ids_fit_the_schema(void **state)
{
    unsigned char pepper[32] = {0}, tag[32];
    char token[MG_APIKEY_TOKEN_MAX], id[MG_APIKEY_ID_MAX + 1];
    struct mg_str kid, secret;

    (void)state;
    assert_int_equal(mg_security_init(), MG_OK);
    for (int i = 0; i < 500; i++) {
        assert_int_equal(mg_apikey_new(pepper, token, id, tag), MG_OK);
        assert_true(strlen(id) >= 6 && strlen(id) <= 64);
        for (const char *p = id; *p; p++)
            assert_true((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                        (*p >= '0' && *p <= '9'));
        assert_true(mg_apikey_parse(mg_str_from(token), &kid, &secret));
        assert_true(mg_str_eqz(kid, id));
        assert_true(mg_apikey_verify(pepper, mg_str_from(token), tag));
    }
}

static void
test_apikey_rejects_tampering(void **state)
{
    unsigned char pepper[32] = {1}, other[32] = {2}, tag[32];
    char token[MG_APIKEY_TOKEN_MAX], id[MG_APIKEY_ID_MAX + 1];

    (void)state;
    assert_int_equal(mg_apikey_new(pepper, token, id, tag), MG_OK);
    assert_false(mg_apikey_verify(other, mg_str_from(token), tag));
    token[strlen(token) - 1] ^= 1;
    assert_false(mg_apikey_verify(pepper, mg_str_from(token), tag));
    assert_false(mg_apikey_verify(pepper, MG_STR("Bearer abc"), tag));
    assert_int_equal(mg_apikey_pepper_parse("abc", pepper), MG_ECONF);
    assert_int_equal(mg_apikey_pepper_parse("", pepper), MG_ECONF);
    assert_int_equal(mg_apikey_pepper_parse(NULL, pepper), MG_ECONF);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apikey_new_then_verify),
        cmocka_unit_test(test_apikey_known_answer),
        cmocka_unit_test(test_apikey_rejects_tampering),
        cmocka_unit_test(test_apikey_ids_fit_the_schema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
