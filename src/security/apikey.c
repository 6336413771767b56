/* API key creation and verification with libsodium. */
#include "security/security.h"

#include <sodium.h>
#include <string.h>

#include "core/error.h"

#define PREFIX "mgk_"
#define ID_BYTES 12
#define SECRET_BYTES 32

int
mg_security_init(void)
{
    return sodium_init() < 0 ? MG_EINVAL : MG_OK;
}

int
mg_apikey_pepper_parse(const char *hex,
                       unsigned char pepper[MG_APIKEY_PEPPER_BYTES])
{
    size_t n = 0;

    memset(pepper, 0, MG_APIKEY_PEPPER_BYTES);
    if (hex == NULL || strlen(hex) != 2 * MG_APIKEY_PEPPER_BYTES ||
        sodium_hex2bin(pepper, MG_APIKEY_PEPPER_BYTES, hex, strlen(hex), NULL,
                       &n, NULL) != 0 ||
        n != MG_APIKEY_PEPPER_BYTES)
        return MG_ECONF;
    return MG_OK;
}

static void
compute_tag(const unsigned char *pepper, struct mg_str key_id,
            struct mg_str secret, unsigned char tag[MG_APIKEY_TAG_BYTES])
{
    crypto_generichash_state st;

    crypto_generichash_init(&st, pepper, MG_APIKEY_PEPPER_BYTES,
                            MG_APIKEY_TAG_BYTES);
    crypto_generichash_update(&st, (const unsigned char *)"apikey-v1", 9);
    crypto_generichash_update(&st, (const unsigned char *)key_id.ptr,
                              key_id.len);
    crypto_generichash_update(&st, (const unsigned char *)"_", 1);
    crypto_generichash_update(&st, (const unsigned char *)secret.ptr,
                              secret.len);
    crypto_generichash_final(&st, tag, MG_APIKEY_TAG_BYTES);
}

int
mg_apikey_new(const unsigned char *pepper, char token[MG_APIKEY_TOKEN_MAX],
              char key_id[MG_APIKEY_ID_MAX + 1],
              unsigned char tag[MG_APIKEY_TAG_BYTES])
{
    const int variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
    unsigned char id[ID_BYTES], secret[SECRET_BYTES];
    char secret_text[64];

    randombytes_buf(id, sizeof(id));
    randombytes_buf(secret, sizeof(secret));
    /* Hex, not base64url: the schema wants the id alphanumeric (it is shown
     * and searched), and '-'/'_' would break that in 4 keys out of 10. */
    sodium_bin2hex(key_id, MG_APIKEY_ID_MAX + 1, id, sizeof(id));
    sodium_bin2base64(secret_text, sizeof(secret_text), secret, sizeof(secret),
                      variant);
    /* The secret's base64url may hold '_' too: the id's fixed length is
     * what the token is split on. */
    snprintf(token, MG_APIKEY_TOKEN_MAX, PREFIX "%s_%s", key_id, secret_text);
    compute_tag(pepper, mg_str_from(key_id), mg_str_from(secret_text), tag);
    sodium_memzero(secret, sizeof(secret));
    sodium_memzero(secret_text, sizeof(secret_text));
    return MG_OK;
}

bool
mg_apikey_parse(struct mg_str token, struct mg_str *key_id,
                struct mg_str *secret)
{
    const size_t id_len = 2 * ID_BYTES;
    const size_t prefix = sizeof(PREFIX) - 1;

    if (token.len < prefix + id_len + 2 ||
        memcmp(token.ptr, PREFIX, prefix) != 0 ||
        token.ptr[prefix + id_len] != '_')
        return false;
    *key_id = mg_str_n(token.ptr + prefix, id_len);
    *secret = mg_str_n(token.ptr + prefix + id_len + 1,
                       token.len - prefix - id_len - 1);
    return secret->len > 0 && secret->len < 64;
}

bool
mg_apikey_verify(const unsigned char *pepper, struct mg_str token,
                 const unsigned char stored_tag[MG_APIKEY_TAG_BYTES])
{
    unsigned char tag[MG_APIKEY_TAG_BYTES];
    struct mg_str key_id, secret;
    bool ok;

    if (!mg_apikey_parse(token, &key_id, &secret))
        return false;
    compute_tag(pepper, key_id, secret, tag);
    ok = crypto_verify_32(tag, stored_tag) == 0;
    sodium_memzero(tag, sizeof(tag));
    return ok;
}
