/* API keys: high-entropy machine credentials (DESIGN-NOTES section 9).
 * A token reads "mgk_<key_id>_<secret>": key_id is 12 random bytes in hex,
 * secret 32 random bytes in base64url without padding. The database keeps
 * key_id and tag = BLAKE2b-256(key = server pepper, "apikey-v1" || key_id ||
 * "_" || secret); a token is checked by looking up key_id, recomputing the tag and
 * comparing in constant time. A fast keyed hash is right here: 256-bit random
 * secrets cannot be brute-forced, and Argon2 would put 64 MiB of work on
 * every request. */
#ifndef MG_SECURITY_SECURITY_H
#define MG_SECURITY_SECURITY_H

#include <stdbool.h>
#include <stddef.h>

#include "core/compiler.h"
#include "core/str.h"

#define MG_APIKEY_TAG_BYTES 32
#define MG_APIKEY_PEPPER_BYTES 32
#define MG_APIKEY_ID_MAX 24     /* hex of 12 bytes */
#define MG_APIKEY_TOKEN_MAX 96

/* Initialises libsodium; call once at startup before threads. */
MG_MUST_CHECK int mg_security_init(void);

/* Decodes a pepper given as 64 hex digits. MG_OK, or MG_ECONF (also for
 * an empty text: an all-zero pepper is no pepper, and a copy of the
 * database alone would let guesses of a key be checked offline). */
MG_MUST_CHECK int mg_apikey_pepper_parse(const char *hex,
                                         unsigned char pepper[MG_APIKEY_PEPPER_BYTES]);

/* Creates a new random key: the token to hand to the user, the key id to
 * store, and the tag to store. */
MG_MUST_CHECK int mg_apikey_new(const unsigned char *pepper,
                                char token[MG_APIKEY_TOKEN_MAX],
                                char key_id[MG_APIKEY_ID_MAX + 1],
                                unsigned char tag[MG_APIKEY_TAG_BYTES]);

/* Splits a presented token into its key id (a view into token) and checks
 * its form. false when it is not a medgate token. */
bool mg_apikey_parse(struct mg_str token, struct mg_str *key_id,
                     struct mg_str *secret);

/* true when token matches the stored tag (constant-time compare). */
bool mg_apikey_verify(const unsigned char *pepper, struct mg_str token,
                      const unsigned char stored_tag[MG_APIKEY_TAG_BYTES]);

#endif
