/* `medgate demo-seed`: the demo organization and its API key, for the
 * README's run command. A blocking libpq connection is fine here: this is a
 * one-shot command, not the event loop. */
#include <libpq-fe.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/app.h"
#include "core/error.h"
#include "security/security.h"
#include "store/oneshot.h"

static int
run(PGconn *c, const char *sql, int n, const char *const *params)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK ||
             PQresultStatus(r) == PGRES_TUPLES_OK;

    if (!ok)
        fprintf(stderr, "demo-seed: %s", PQerrorMessage(c));
    PQclear(r);
    return ok ? MG_OK : MG_EDB;
}

static bool
key_file_has_key(const char *path)
{
    char line[MG_APIKEY_TOKEN_MAX];
    FILE *f = fopen(path, "r");
    bool ok;

    if (f == NULL)
        return false;
    ok = fgets(line, sizeof(line), f) != NULL && strncmp(line, "mgk_", 4) == 0;
    fclose(f);
    return ok;
}

static int
create_key(PGconn *c, const unsigned char *pepper, const char *key_file)
{
    char token[MG_APIKEY_TOKEN_MAX], key_id[MG_APIKEY_ID_MAX + 1];
    unsigned char tag[MG_APIKEY_TAG_BYTES];
    char tag_hex[2 * MG_APIKEY_TAG_BYTES + 3] = "\\x";
    const char *params[3];
    FILE *f;
    int rc;

    rc = mg_apikey_new(pepper, token, key_id, tag);
    if (rc != MG_OK)
        return rc;
    sodium_bin2hex(tag_hex + 2, sizeof(tag_hex) - 2, tag, sizeof(tag));
    params[0] = key_id;
    params[1] = tag_hex;
    params[2] = MG_DEMO_ORGANIZATION_ID;
    rc = run(c, "INSERT INTO api_keys (key_id, tag, organization_id, name, "
                "scopes) VALUES ($1, $2::bytea, $3, 'demo', ARRAY['*'])",
             3, params);
    if (rc != MG_OK)
        return rc;
    umask(077);
    f = fopen(key_file, "w");
    if (f == NULL) {
        perror(key_file);
        return MG_EIO;
    }
    fprintf(f, "%s\n", token);
    fclose(f);
    sodium_memzero(token, sizeof(token));
    return MG_OK;
}

int
mg_app_demo_seed(const struct mg_conf *conf, const char *key_file)
{
    unsigned char pepper[MG_APIKEY_PEPPER_BYTES];
    const char *org[1] = {MG_DEMO_ORGANIZATION_ID};
    PGconn *c;
    int rc;

    if (mg_security_init() != MG_OK ||
        mg_apikey_pepper_parse(conf->api_key_pepper, pepper) != MG_OK) {
        fprintf(stderr, "demo-seed: security.api_key_pepper must be 64 hex "
                        "digits\n");
        return 1;
    }
    c = mg_store_connect_once(conf->database_url, "demo-seed", stderr);
    if (c == NULL)
        return 1;
    rc = run(c, "INSERT INTO organizations (id, name, identifier, type) "
                "VALUES ($1, 'Demo Hospital', 'demo', 'hospital') "
                "ON CONFLICT (id) DO NOTHING", 1, org);
    if (rc == MG_OK && !key_file_has_key(key_file))
        rc = create_key(c, pepper, key_file);
    PQfinish(c);
    return rc == MG_OK ? 0 : 1;
}
