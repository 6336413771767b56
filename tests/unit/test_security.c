/* Unit tests for API keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

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
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apikey_new_then_verify),
        cmocka_unit_test(test_apikey_rejects_tampering),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
