/* The migration runner behind `medgate migrate`: each pending file is
 * checked (no NUL byte, no transaction control of its own) before the
 * first is applied, then each runs in one transaction with its
 * schema_migrations row. */
#include "store/migrate.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <libpq-fe.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/error.h"
#include "store/oneshot.h"
#include "store/sql_scan.h"

#define MIGRATION_LOCK_KEY 4242004201 /* any constant shared by all runners */
#define MAX_MIGRATIONS 512

struct migration {
    int version;
    char name[128]; /* file name */
};

/* "0003_imaging.sql" -> 3; -1 when the name is not a migration. */
static int
version_of(const char *name)
{
    size_t n = strlen(name);
    int v = 0, digits = 0;

    if (n < 6 || strcmp(name + n - 4, ".sql") != 0)
        return -1;
    while (name[digits] >= '0' && name[digits] <= '9') {
        v = v * 10 + (name[digits] - '0');
        digits++;
    }
    if (digits != 4 || name[digits] != '_' || v == 0)
        return -1;
    return v;
}

static int
cmp_migration(const void *a, const void *b)
{
    return ((const struct migration *)a)->version -
           ((const struct migration *)b)->version;
}

static int
list_migrations(const char *dir, struct migration *out, int *count, FILE *err)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (d == NULL) {
        if (err)
            fprintf(err, "%s: cannot open: %s\n", dir, strerror(errno));
        return MG_EIO;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strstr(e->d_name, ".sql") == NULL)
            continue;
        int v = version_of(e->d_name);
        if (v < 0 || strlen(e->d_name) >= sizeof(out[0].name) ||
            n == MAX_MIGRATIONS) {
            if (err)
                fprintf(err, "%s/%s: not a migration name (NNNN_name.sql)\n",
                        dir, e->d_name);
            closedir(d);
            return MG_ECONF;
        }
        out[n].version = v;
        memcpy(out[n].name, e->d_name, strlen(e->d_name) + 1); /* fits: checked */
        n++;
    }
    closedir(d);
    qsort(out, (size_t)n, sizeof(*out), cmp_migration);
    for (int i = 1; i < n; i++) {
        if (out[i].version == out[i - 1].version) {
            if (err)
                fprintf(err, "%s: two migrations numbered %04d\n", dir,
                        out[i].version);
            return MG_ECONF;
        }
    }
    *count = n;
    return MG_OK;
}

int
mg_migrate_latest(const char *dir, int *version, FILE *err)
{
    static struct migration list[MAX_MIGRATIONS];
    int n = 0, rc = list_migrations(dir, list, &n, err);

    if (rc == MG_OK)
        *version = n ? list[n - 1].version : 0;
    return rc;
}

static int
read_file(const char *path, struct mg_buf *out, FILE *err)
{
    int rc = mg_buf_read_file(out, path);

    if (rc != MG_OK && err)
        fprintf(err, "%s: cannot read: %s\n", path, mg_strerror(rc));
    return rc == MG_OK ? MG_OK : MG_EIO;
}

/* SHA-256 of the file with each CR LF read as LF: the same migration
 * checked out with CRLF line ends (a Windows checkout, a converting copy)
 * is not a changed file. LF files hash as they always did. */
static void
sha256_hex(struct mg_str s, char hex[65])
{
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_state st;
    size_t from = 0;

    crypto_hash_sha256_init(&st);
    for (size_t i = 0; i + 1 < s.len; i++) {
        if (s.ptr[i] == '\r' && s.ptr[i + 1] == '\n') {
            crypto_hash_sha256_update(&st, (const unsigned char *)s.ptr + from,
                                      i - from);
            from = i + 1; /* the LF starts the next run */
        }
    }
    crypto_hash_sha256_update(&st, (const unsigned char *)s.ptr + from,
                              s.len - from);
    crypto_hash_sha256_final(&st, digest);
    sodium_bin2hex(hex, 65, digest, sizeof(digest));
}

/* MG_OK, or MG_ECONF after naming path:line of the first statement of
 * text that ends or opens a transaction. */
static int
refuse_tx_control(const char *path, struct mg_str text, FILE *err)
{
    const char *what;
    int line;

    if (!mg__sql_find_tx_control(text, &what, &line))
        return MG_OK;
    if (err)
        fprintf(err, "%s:%d: transaction control (%s) in a migration: "
                "medgate runs each file in one transaction with its "
                "schema_migrations row; remove the statement\n", path, line,
                what);
    return MG_ECONF;
}

/* MG_OK when text can be sent as one migration, else MG_ECONF after
 * naming path and the problem on err. */
static int
check_text(const char *path, struct mg_str text, FILE *err)
{
    /* libpq sends a query up to its first NUL: the statements after one
     * would be dropped, and the file recorded as applied. */
    if (memchr(text.ptr, '\0', text.len) != NULL) {
        if (err)
            fprintf(err, "%s: holds a NUL byte (not a SQL text file)\n", path);
        return MG_ECONF;
    }
    return text.len == 0 ? MG_OK : refuse_tx_control(path, text, err);
}

/* Checks every file still to apply before the first is applied, so that a
 * refused file leaves the database where it was, not part way along. */
static int
check_pending(const char *dir, const struct migration *list, int n,
              int applied, FILE *err)
{
    char path[1024];
    struct mg_buf text;
    int rc = MG_OK;

    for (int i = 0; rc == MG_OK && i < n; i++) {
        if (list[i].version <= applied)
            continue;
        mg_buf_init(&text, 0);
        snprintf(path, sizeof(path), "%s/%s", dir, list[i].name);
        rc = read_file(path, &text, err);
        if (rc == MG_OK)
            rc = check_text(path, mg_buf_str(&text), err);
        mg_buf_dispose(&text);
    }
    return rc;
}

/* Runs one command; MG_OK or MG_EDB with the server's message on err. */
static int
exec_ok(PGconn *c, const char *sql, FILE *err, const char *what)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? MG_OK : MG_EDB;

    if (rc != MG_OK && err)
        fprintf(err, "%s: %s", what, PQerrorMessage(c));
    PQclear(r);
    return rc;
}

static const char *const bootstrap_sql =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version int PRIMARY KEY,"
    " name text NOT NULL,"
    " checksum text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())";

/* Checks recorded migrations against the files; *applied gets the highest.
 * A file numbered below the highest applied one that was never applied
 * (added later: a merge, a late branch) is an error: the runner applies
 * only above the highest, so it would be skipped for good. */
static int
check_applied(PGconn *c, const char *dir, const struct migration *list, int n,
              int *applied, FILE *err)
{
    PGresult *r = PQexec(c, "SELECT version, checksum FROM schema_migrations "
                            "ORDER BY version");
    bool recorded[MAX_MIGRATIONS] = {false};
    int rc = MG_OK, rows;

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        if (err)
            fprintf(err, "reading schema_migrations: %s", PQerrorMessage(c));
        PQclear(r);
        return MG_EDB;
    }
    rows = PQntuples(r);
    *applied = 0;
    for (int i = 0; i < rows && rc == MG_OK; i++) {
        int v = atoi(PQgetvalue(r, i, 0));
        const char *sum = PQgetvalue(r, i, 1);
        int k = 0;
        *applied = v > *applied ? v : *applied;
        while (k < n && list[k].version != v)
            k++;
        if (k == n) {
            if (err)
                fprintf(err, "database has migration %04d, which this medgate "
                             "does not know (database newer than %s)\n", v, dir);
            rc = MG_ESCHEMA;
            break;
        }
        recorded[k] = true;
        char path[1024], hex[65];
        struct mg_buf text;
        mg_buf_init(&text, 0);
        snprintf(path, sizeof(path), "%s/%s", dir, list[k].name);
        rc = read_file(path, &text, err);
        if (rc == MG_OK) {
            sha256_hex(mg_buf_str(&text), hex);
            if (strcmp(hex, sum) != 0) {
                if (err)
                    fprintf(err, "%s changed after it was applied "
                                 "(add a new migration instead)\n", path);
                rc = MG_ESCHEMA;
            }
        }
        mg_buf_dispose(&text);
    }
    PQclear(r);
    for (int k = 0; rc == MG_OK && k < n && list[k].version < *applied; k++) {
        if (!recorded[k]) {
            if (err)
                fprintf(err, "%s/%s was never applied, and the database is at "
                             "%04d already (renumber it above %04d)\n",
                        dir, list[k].name, *applied, *applied);
            rc = MG_ESCHEMA;
        }
    }
    return rc;
}

static int
apply_one(PGconn *c, const char *dir, const struct migration *m, FILE *out,
          FILE *err)
{
    char path[1024], hex[65], version[16];
    const char *params[3];
    struct mg_buf text;
    PGresult *r;
    int rc;

    mg_buf_init(&text, 0);
    snprintf(path, sizeof(path), "%s/%s", dir, m->name);
    rc = read_file(path, &text, err);
    if (rc != MG_OK)
        goto out_dispose;
    rc = check_text(path, mg_buf_str(&text), err); /* changed meanwhile? */
    if (rc != MG_OK)
        goto out_dispose;
    sha256_hex(mg_buf_str(&text), hex);
    rc = exec_ok(c, "BEGIN", err, m->name);
    if (rc != MG_OK)
        goto out_dispose;
    rc = exec_ok(c, text.ptr ? text.ptr : "", err, path);
    if (rc == MG_OK) {
        snprintf(version, sizeof(version), "%d", m->version);
        params[0] = version;
        params[1] = m->name;
        params[2] = hex;
        r = PQexecParams(c, "INSERT INTO schema_migrations (version, name, "
                            "checksum) VALUES ($1, $2, $3)",
                         3, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            if (err)
                fprintf(err, "%s: recording: %s", m->name, PQerrorMessage(c));
            rc = MG_EDB;
        }
        PQclear(r);
    }
    if (rc == MG_OK)
        rc = exec_ok(c, "COMMIT", err, m->name);
    else
        (void)exec_ok(c, "ROLLBACK", NULL, m->name);
    if (rc == MG_OK && out)
        fprintf(out, "applied %s\n", m->name);
out_dispose:
    mg_buf_dispose(&text);
    return rc;
}

int
mg_migrate_run(const char *conninfo, const char *dir, FILE *out, FILE *err)
{
    static struct migration list[MAX_MIGRATIONS];
    char lock_sql[96];
    int n = 0, applied = 0, done = 0, rc;
    PGconn *c;

    rc = list_migrations(dir, list, &n, err);
    if (rc != MG_OK)
        return rc;
    c = mg_store_connect_once(conninfo, "migrate", err);
    if (c == NULL)
        return MG_EDBDOWN;
    (void)exec_ok(c, "SET client_min_messages = warning", NULL, "");
    /* The server must split the files as sql_scan.c did: with
     * standard_conforming_strings off (a database or role default), a
     * backslash would end a string where the scanner sees none, and a
     * COMMIT it read as text would run. */
    rc = exec_ok(c, "SET standard_conforming_strings = on", err,
                 "setting standard_conforming_strings");
    if (rc != MG_OK) {
        PQfinish(c);
        return rc;
    }
    snprintf(lock_sql, sizeof(lock_sql), "SELECT pg_advisory_lock(%lld)",
             (long long)MIGRATION_LOCK_KEY);
    rc = exec_ok(c, lock_sql, err, "taking the migration lock");
    if (rc == MG_OK)
        rc = exec_ok(c, bootstrap_sql, err, "creating schema_migrations");
    if (rc == MG_OK)
        rc = check_applied(c, dir, list, n, &applied, err);
    if (rc == MG_OK)
        rc = check_pending(dir, list, n, applied, err);
    for (int i = 0; rc == MG_OK && i < n; i++) {
        if (list[i].version <= applied)
            continue;
        rc = apply_one(c, dir, &list[i], out, err);
        done += rc == MG_OK;
    }
    if (rc == MG_OK && out)
        fprintf(out, "schema at version %d (%d applied now)\n",
                n ? list[n - 1].version : 0, done);
    PQfinish(c); /* releases the advisory lock */
    return rc;
}
