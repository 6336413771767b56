/* Configuration: one JSON file, described by one option table (Redis
 * static_configs[], nginx ngx_command_t). Every scalar option can be
 * overridden from the environment as MEDGATE_<PATH> (dots become
 * underscores, upper case), which is how secrets and the database URL are
 * usually given: MEDGATE_DATABASE_URL. Errors name file:line:key. */
#ifndef MG_CORE_CONF_H
#define MG_CORE_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/cidr.h"
#include "core/compiler.h"

#define MG_CONF_MAX_LISTENERS 16
#define MG_CONF_MAX_SENDERS 32
#define MG_CONF_MAX_ALLOW 32

enum mg_ack_mode {
    MG_ACK_AUTO,     /* original or enhanced, as the message's MSH-15/16 ask */
    MG_ACK_ORIGINAL, /* always original mode (AA/AE/AR) */
};

/* When the database cannot take a message: close without an ACK (the sender
 * retries) or answer AR (HL7 "receiver problem, resend later"). */
enum mg_db_down_reply {
    MG_DB_DOWN_CLOSE,
    MG_DB_DOWN_AR,
};

/* One accepted sender on an MLLP listener: MSH-3/MSH-4 patterns ("*" = any). */
struct mg_conf_sender {
    char *application; /* MSH-3.1, "*" for any */
    char *facility;    /* MSH-4.1, "*" for any */
    char *organization_id; /* UUID of the organization the sender belongs to */
    char *charset;     /* default when MSH-18 is empty, e.g. "8859/1"; NULL = ASCII/UTF-8 */
};

struct mg_conf_listener {
    char *name;             /* shown in logs and sync_logs.listener */
    char *bind;             /* address */
    int port;
    int max_connections;
    int max_connections_per_address; /* 0: no limit */
    long max_frame_bytes;
    int idle_timeout_ms;
    enum mg_ack_mode ack_mode;
    enum mg_db_down_reply db_down_reply;
    char *default_charset;  /* for senders without their own */
    struct mg_conf_sender senders[MG_CONF_MAX_SENDERS];
    int nsenders;
    /* the peer addresses that may connect; none listed: any */
    struct mg_cidr allow_from[MG_CONF_MAX_ALLOW];
    int nallow;
};

struct mg_conf {
    char *path; /* the file it was loaded from, or NULL for defaults */

    /* database */
    char *database_url;
    int database_pool_size;
    int database_queue_max;
    int database_statement_timeout_ms;
    int database_reconnect_max_ms;
    int database_commit_timeout_ms; /* 0 = no deadline */

    /* http */
    char *http_bind;
    int http_port;
    int http_max_connections;
    long http_max_header_bytes;
    long http_max_body_bytes;
    int http_header_timeout_ms;
    int http_body_timeout_ms;
    int http_idle_timeout_ms;

    /* log */
    char *log_level;
    char *log_format;

    /* shutdown */
    int shutdown_drain_timeout_ms;

    /* paths */
    char *schema_dir;
    char *mappings_dir;

    /* security */
    char *api_key_pepper; /* 64 hex digits; secret: give it by environment */

    /* intake */
    int intake_batch_max;
    int intake_commits_in_flight;

    /* mllp */
    struct mg_conf_listener listeners[MG_CONF_MAX_LISTENERS];
    int nlisteners;
};

/* Whether a listener's default_charset or a sender's charset names a
 * character set the codec reads. Core does not know the codec: the program
 * registers this before loading, and a name it refuses is a load problem
 * like any other (without it, any name is taken). */
typedef bool (*mg_conf_charset_check_fn)(const char *name);
void mg_conf_set_charset_check(mg_conf_charset_check_fn check);

/* Fills c with the defaults of every option. */
void mg_conf_defaults(struct mg_conf *c);
/* Loads path over the defaults, then applies MEDGATE_* environment
 * overrides. On error writes "file:line: key: problem" lines to err (may be
 * NULL) and returns MG_ECONF; c then holds what could be read. */
MG_MUST_CHECK int mg_conf_load(struct mg_conf *c, const char *path, FILE *err);
/* Applies only the environment overrides (used when no file is given).
 * Both also write "(environment): warning: NAME is not a medgate option,
 * ignored[; did you mean MEDGATE_...?]" to err for each MEDGATE_ variable
 * that is neither an option nor a tool variable of deploy/ or tests/
 * (never its value); such a variable does not make them fail. */
MG_MUST_CHECK int mg_conf_apply_env(struct mg_conf *c, FILE *err);
/* Calls changed(key, arg) for each option whose value differs between a
 * and b (scalar options by their dotted key, "mllp.listeners" once for
 * any difference in the listeners and their senders). For SIGHUP: what
 * a reload cannot apply is named, so nobody believes it took effect. */
void mg_conf_diff(const struct mg_conf *a, const struct mg_conf *b,
                  void (*changed)(const char *key, void *arg), void *arg);
/* Frees the strings the conf owns. */
void mg_conf_dispose(struct mg_conf *c);
/* Writes a Markdown table of every option with its default and meaning. */
void mg_conf_write_reference(FILE *out);

#endif
