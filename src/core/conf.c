/* The option table and the JSON loader. jansson keeps no positions for
 * values, so a key's line is found by scanning the text for its quoted name
 * under its parent (good enough to point an engineer at the right line). */
#include "core/conf.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/jsonpos.h"

enum opt_type { OPT_STR, OPT_INT, OPT_LONG };

struct opt {
    const char *key; /* dotted path in the JSON file */
    enum opt_type type;
    size_t offset;
    const char *def; /* default, as text */
    long min, max;   /* for numbers */
    const char *doc;
};

/* true when v is one of the '|'-separated words of list. */
static bool
one_of(const char *v, const char *list)
{
    size_t n = strlen(v), k;

    for (const char *w = list;; w += k + 1) {
        k = strcspn(w, "|");
        if (k == n && strncmp(w, v, n) == 0)
            return true;
        if (w[k] == '\0')
            return false;
    }
}

static const char *
check_log_level(const char *v)
{
    return one_of(v, "debug|info|warn|error")
               ? NULL
               : "expected debug, info, warn or error";
}

static const char *
check_log_format(const char *v)
{
    return one_of(v, "kv|json") ? NULL : "expected kv or json";
}

/* Empty (all zeros, for demos) or 64 hex digits, as the API keys need. */
static const char *
check_pepper(const char *v)
{
    size_t n = strlen(v);

    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)v[i]))
            return "expected 64 hex digits";
    return n == 0 || n == 64 ? NULL : "expected 64 hex digits";
}

/* Shorter, an ordinary COMMIT (a grouped commit's flush on a busy disk)
 * would be given up, its connection replaced and its messages resent. */
static const char *
check_commit_timeout(long v)
{
    return v == 0 || v >= 1000
               ? NULL
               : "below 1000 ms, too short for a COMMIT; 0 turns the "
                 "deadline off";
}

#define O(f) offsetof(struct mg_conf, f)

static const struct opt options[] = {
    {"database.url", OPT_STR, O(database_url), "postgresql:///medgate", 0, 0,
     "libpq connection string or URL. Override with MEDGATE_DATABASE_URL."},
    {"database.pool_size", OPT_INT, O(database_pool_size), "4", 1, 64,
     "PostgreSQL connections this process keeps open."},
    {"database.queue_max", OPT_INT, O(database_queue_max), "4096", 1, 1000000,
     "Requests that may wait for a connection; beyond it callers get 503/no ACK."},
    {"database.statement_timeout_ms", OPT_INT,
     O(database_statement_timeout_ms), "30000", 100, 3600000,
     "Server-side statement_timeout for every connection."},
    {"database.reconnect_max_ms", OPT_INT, O(database_reconnect_max_ms),
     "5000", 100, 300000, "Upper bound of the reconnect back-off."},
    {"database.commit_timeout_ms", OPT_INT, O(database_commit_timeout_ms),
     "30000", 0, 3600000,
     "A COMMIT not answered this long is given up: its outcome counts as "
     "unknown (no ACK), an ERROR is logged and its connection replaced. "
     "statement_timeout does not bound a COMMIT (one waiting for a "
     "synchronous standby that is down). 0 = no deadline, else >= 1000."},
    {"http.bind", OPT_STR, O(http_bind), "127.0.0.1", 0, 0,
     "Address of the HTTP listener (FHIR and admin endpoints)."},
    {"http.port", OPT_INT, O(http_port), "8080", 0, 65535,
     "Port of the HTTP listener (0 = any free port, logged at start)."},
    {"http.max_connections", OPT_INT, O(http_max_connections), "4096", 1,
     1000000, "Open HTTP connections; more are accepted and closed at once."},
    {"http.max_header_bytes", OPT_LONG, O(http_max_header_bytes), "16384",
     1024, 81920, "Request line plus headers; more gets 431."},
    {"http.max_body_bytes", OPT_LONG, O(http_max_body_bytes), "16777216", 1,
     1073741824, "Request body; more gets 413."},
    {"http.header_timeout_ms", OPT_INT, O(http_header_timeout_ms), "10000",
     100, 600000, "Time to receive a whole request head; then 408."},
    {"http.body_timeout_ms", OPT_INT, O(http_body_timeout_ms), "30000", 100,
     3600000, "Time without progress while receiving a body; then 408."},
    {"http.idle_timeout_ms", OPT_INT, O(http_idle_timeout_ms), "15000", 100,
     3600000, "Keep-alive connection idle time before it is closed."},
    {"log.level", OPT_STR, O(log_level), "info", 0, 0,
     "debug, info, warn or error."},
    {"log.format", OPT_STR, O(log_format), "kv", 0, 0,
     "kv (key=value lines) or json (one JSON object per line)."},
    {"shutdown.drain_timeout_ms", OPT_INT, O(shutdown_drain_timeout_ms),
     "10000", 0, 600000,
     "On SIGTERM/SIGINT: time for in-flight work before connections are cut."},
    {"paths.schema", OPT_STR, O(schema_dir), MG_DEFAULT_SCHEMA_DIR, 0, 0,
     "Folder of numbered SQL migrations applied by `medgate migrate`."},
    {"paths.mappings", OPT_STR, O(mappings_dir), MG_DEFAULT_MAPPINGS_DIR, 0, 0,
     "Folder of mapping files."},
    {"security.api_key_pepper", OPT_STR, O(api_key_pepper), "", 0, 0,
     "64 hex digits keying API-key hashes. A secret: set "
     "MEDGATE_SECURITY_API_KEY_PEPPER rather than writing it here."},
    {"intake.batch_max", OPT_INT, O(intake_batch_max), "32", 1, 4096,
     "Most HL7 messages in one grouped commit. While a commit is in flight "
     "another starts once batch_max/8 messages wait (up to "
     "commits_in_flight at once); 32 measured best on 2 cores "
     "(tests/bench)."},
    {"intake.commits_in_flight", OPT_INT, O(intake_commits_in_flight), "2",
     1, 8,
     "Most grouped commits in flight at once, each on its own database "
     "connection. 2 measured best on 2 cores (tests/bench); a database "
     "server with more cores may use more, up to database.pool_size."},
};

#undef O

/* String options with a form: the check gives NULL when the value can be
 * used, else the problem (never quoting the value: it may be a secret). */
static const struct {
    const char *key;
    const char *(*check)(const char *v);
} string_checks[] = {
    {"log.level", check_log_level},
    {"log.format", check_log_format},
    {"security.api_key_pepper", check_pepper},
};

static const char *
string_problem(const struct opt *o, const char *text)
{
    for (size_t i = 0; i < MG_ARRAY_LEN(string_checks); i++)
        if (strcmp(string_checks[i].key, o->key) == 0)
            return string_checks[i].check(text);
    return NULL;
}

/* Whole-number options with a form beyond their range, checked likewise. */
static const struct {
    const char *key;
    const char *(*check)(long v);
} number_checks[] = {
    {"database.commit_timeout_ms", check_commit_timeout},
};

/* set_option()'s reasons for any number, which the range completes. */
static const char not_a_number[] = "not a whole number";
static const char out_of_range[] = "out of range";

static const char *
number_problem(const struct opt *o, long v)
{
    for (size_t i = 0; i < MG_ARRAY_LEN(number_checks); i++)
        if (strcmp(number_checks[i].key, o->key) == 0)
            return number_checks[i].check(v);
    return NULL;
}

/* Listener keys, documented here so the reference lists them too. */
static const struct opt listener_options[] = {
    {"mllp.listeners[].name", OPT_STR, 0, "mllp", 0, 0,
     "Name shown in logs and sync_logs.listener. At most 16 listeners."},
    {"mllp.listeners[].bind", OPT_STR, 0, "127.0.0.1", 0, 0, "Address."},
    {"mllp.listeners[].port", OPT_INT, 0, "2575", 0, 65535, "Port."},
    {"mllp.listeners[].max_connections", OPT_INT, 0, "256", 1, 100000,
     "Open connections; more are closed at once."},
    {"mllp.listeners[].max_connections_per_address", OPT_INT, 0, "0", 0,
     100000, "Open connections from one peer address; more are closed at "
     "once. 0 = no limit."},
    {"mllp.listeners[].max_frame_bytes", OPT_LONG, 0, "16777216", 64,
     1073741824, "Largest MLLP frame; a larger one is refused and the "
     "connection closed."},
    {"mllp.listeners[].idle_timeout_ms", OPT_INT, 0, "600000", 100, 86400000,
     "A connection that starts or ends no frame this long is closed "
     "(never one waiting for its ACK): a frame must come whole within it."},
    {"mllp.listeners[].ack_mode", OPT_STR, 0, "auto", 0, 0,
     "auto (enhanced when MSH-15/16 are valued) or original."},
    {"mllp.listeners[].db_down_reply", OPT_STR, 0, "close", 0, 0,
     "When the database cannot store a message: close (no ACK) or ar."},
    {"mllp.listeners[].default_charset", OPT_STR, 0, "", 0, 0,
     "Charset assumed when MSH-18 is empty: an HL7 table 0211 name (8859/1 "
     "to 8859/9, 8859/15, CP1252, UNICODE UTF-8, ASCII), checked at load; "
     "empty = UTF-8."},
    {"mllp.listeners[].allow_from[]", OPT_STR, 0, "", 0, 0,
     "Peer addresses that may connect, as addresses or ranges (\"10.1.2.0/24\", "
     "\"2001:db8::/32\"); others are closed at once. Empty = any. At most 32."},
    {"mllp.listeners[].senders[]", OPT_STR, 0, "", 0, 0,
     "Accepted senders: {application, facility, organization_id, charset}; "
     "\"*\" matches any (charset as default_charset). A message from a "
     "sender not listed gets AR. At most 32 a listener."},
};

static char **
str_field(struct mg_conf *c, const struct opt *o)
{
    return (char **)((char *)c + o->offset);
}

static int
set_option(struct mg_conf *c, const struct opt *o, const char *text,
           const char **why)
{
    char *end;
    long v;

    if (o->type == OPT_STR) {
        char *dup;
        if ((*why = string_problem(o, text)) != NULL)
            return MG_ECONF;
        dup = mg_strdup(text);
        if (dup == NULL)
            return MG_ENOMEM;
        mg_free(*str_field(c, o));
        *str_field(c, o) = dup;
        return MG_OK;
    }
    errno = 0;
    v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0') {
        *why = not_a_number;
        return MG_ECONF;
    }
    if (v < o->min || v > o->max) {
        *why = out_of_range;
        return MG_ECONF;
    }
    if ((*why = number_problem(o, v)) != NULL)
        return MG_ECONF;
    if (o->type == OPT_INT)
        *(int *)((char *)c + o->offset) = (int)v;
    else
        *(long *)((char *)c + o->offset) = v;
    return MG_OK;
}

void
mg_conf_defaults(struct mg_conf *c)
{
    const char *why;

    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < MG_ARRAY_LEN(options); i++)
        if (set_option(c, &options[i], options[i].def, &why) != MG_OK)
            abort(); /* a bad default is our bug; startup may abort */
}

struct loader {
    const char *path;
    const char *text;
    FILE *err;
    int errors;
};

MG_PRINTF(3, 4)
static void
report(struct loader *l, const char *key, const char *fmt, ...)
{
    va_list ap;

    l->errors++;
    if (l->err == NULL)
        return;
    fprintf(l->err, "%s:%d: %s: ", l->path ? l->path : "(environment)",
            mg_jsonpos_line_dotted(l->text, key), key);
    va_start(ap, fmt);
    vfprintf(l->err, fmt, ap);
    va_end(ap);
    fputc('\n', l->err);
}

/* The JSON scalar as text for set_option: strings as is, integers printed. */
static bool
scalar_text(json_t *v, enum opt_type type, char *buf, size_t size)
{
    if (type == OPT_STR && json_is_string(v)) {
        snprintf(buf, size, "%s", json_string_value(v));
        return true;
    }
    if (type != OPT_STR && json_is_integer(v)) {
        snprintf(buf, size, "%lld", (long long)json_integer_value(v));
        return true;
    }
    return false;
}

static void
load_scalar(struct loader *l, struct mg_conf *c, const struct opt *o,
            json_t *v)
{
    char text[4096];
    const char *why = "";

    if (!scalar_text(v, o->type, text, sizeof(text))) {
        report(l, o->key, "expected %s",
               o->type == OPT_STR ? "a string" : "a whole number");
        return;
    }
    if (set_option(c, o, text, &why) == MG_OK)
        return;
    /* An option's own check (number_problem) says its whole rule; the
     * range would contradict it ("below 1000 ms ... (allowed 0..)"). */
    if (o->type == OPT_STR || (why != not_a_number && why != out_of_range))
        report(l, o->key, "%s", why);
    else
        report(l, o->key, "%s (allowed %ld..%ld)", why, o->min, o->max);
}

static json_t *
lookup(json_t *root, const char *dotted)
{
    char part[128];
    const char *p = dotted, *dot;
    json_t *v = root;

    while (v != NULL && *p) {
        dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof(part) || !json_is_object(v))
            return NULL;
        memcpy(part, p, n);
        part[n] = '\0';
        v = json_object_get(v, part);
        p = dot ? dot + 1 : p + n;
    }
    return v;
}

/* Known top-level sections and their keys, to flag typos. */
static bool
known_key(const char *section, const char *key)
{
    char dotted[256];

    snprintf(dotted, sizeof(dotted), "%s.%s", section, key);
    for (size_t i = 0; i < MG_ARRAY_LEN(options); i++)
        if (strcmp(options[i].key, dotted) == 0)
            return true;
    return strcmp(dotted, "mllp.listeners") == 0;
}

static bool
known_section(const char *section)
{
    size_t n = strlen(section);

    for (size_t i = 0; i < MG_ARRAY_LEN(options); i++)
        if (strncmp(options[i].key, section, n) == 0 &&
            options[i].key[n] == '.')
            return true;
    return strcmp(section, "mllp") == 0;
}

static void
check_unknown_keys(struct loader *l, json_t *root)
{
    const char *section, *key;
    json_t *obj, *v;
    char dotted[256];

    json_object_foreach(root, section, obj)
    {
        if (strcmp(section, "note") == 0)
            continue; /* free text for the engineer */
        if (!known_section(section)) {
            report(l, section, "unknown section");
            continue;
        }
        if (!json_is_object(obj)) {
            report(l, section, "expected an object");
            continue;
        }
        json_object_foreach(obj, key, v)
        {
            if (strcmp(key, "note") == 0 || known_key(section, key))
                continue;
            snprintf(dotted, sizeof(dotted), "%s.%s", section, key);
            report(l, dotted, "unknown option");
        }
    }
}

/* "where.name" in buf. */
static const char *
dotted_key(char *buf, size_t size, const char *where, const char *name)
{
    snprintf(buf, size, "%s.%s", where, name);
    return buf;
}

/* Keys of a listener, as listener_options names them. */
static bool
listener_key(const char *key)
{
    static const char prefix[] = "mllp.listeners[].";

    for (size_t i = 0; i < MG_ARRAY_LEN(listener_options); i++) {
        const char *name = listener_options[i].key + sizeof(prefix) - 1;
        size_t n = strcspn(name, "[");
        if (strlen(key) == n && strncmp(key, name, n) == 0)
            return true;
    }
    return false;
}

static bool
sender_key(const char *key)
{
    return one_of(key, "application|facility|organization_id|charset");
}

/* Reports the keys of obj that known() does not know, as where.key: a
 * misspelt key would otherwise leave its default in force unnoticed. */
static void
check_keys(struct loader *l, json_t *obj, const char *where,
           bool (*known)(const char *key))
{
    const char *key;
    json_t *v;
    char dotted[256];

    json_object_foreach(obj, key, v)
    {
        if (strcmp(key, "note") == 0 || known(key))
            continue;
        snprintf(dotted, sizeof(dotted), "%s.%s", where, key);
        report(l, dotted, "unknown option");
    }
}

static char *
dup_or_null(const char *s)
{
    return s && *s ? mg_strdup(s) : NULL;
}

static const char *
obj_str(json_t *obj, const char *key, const char *def)
{
    json_t *v = json_object_get(obj, key);

    return json_is_string(v) ? json_string_value(v) : def;
}

/* 8-4-4-4-12 hex digits: organization ids go into uuid columns, and the
 * start-up check embeds them in SQL, so nothing else may pass. */
static bool
is_uuid(const char *s)
{
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;

        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
    }
    return s[36] == '\0';
}

static mg_conf_charset_check_fn charset_known;

void
mg_conf_set_charset_check(mg_conf_charset_check_fn check)
{
    charset_known = check;
}

/* A character set the codec cannot read would make every message from the
 * sender (or listener) without MSH-18 an AE "configured character set not
 * supported": a fault of ours, not of the message. Refused at load. */
static void
check_charset(struct loader *l, const char *name, const char *where,
              const char *leaf)
{
    char key[128];

    if (name != NULL && charset_known != NULL && !charset_known(name))
        report(l, dotted_key(key, sizeof(key), where, leaf),
               "unknown character set (HL7 table 0211 names: ASCII, 8859/1 "
               ".. 8859/9, 8859/15, UNICODE UTF-8, CP1252)");
}

/* key: where the sender is, "mllp.listeners[0].senders[1]". */
static void
load_sender(struct loader *l, struct mg_conf_sender *s, json_t *v,
            const char *key)
{
    if (!json_is_object(v)) {
        report(l, key, "expected an object");
        return;
    }
    check_keys(l, v, key, sender_key);
    s->application = mg_strdup(obj_str(v, "application", "*"));
    s->facility = mg_strdup(obj_str(v, "facility", "*"));
    s->organization_id = dup_or_null(obj_str(v, "organization_id", NULL));
    s->charset = dup_or_null(obj_str(v, "charset", NULL));
    check_charset(l, s->charset, key, "charset");
    if (s->organization_id == NULL)
        report(l, key, "organization_id is required");
    else if (!is_uuid(s->organization_id))
        report(l, key, "organization_id must be a UUID "
               "(8-4-4-4-12 hex digits)");
}

static long
obj_num(struct loader *l, json_t *obj, const char *key, long def, long min,
        long max, const char *where)
{
    json_t *v = json_object_get(obj, key);
    char dotted[256];
    long n;

    if (v == NULL)
        return def;
    snprintf(dotted, sizeof(dotted), "%s.%s", where, key);
    if (!json_is_integer(v)) {
        report(l, dotted, "expected a whole number");
        return def;
    }
    n = (long)json_integer_value(v);
    if (n < min || n > max) {
        report(l, dotted, "out of range (allowed %ld..%ld)", min, max);
        return def;
    }
    return n;
}

/* allow_from: each entry an address or a range, checked here so that a
 * typo is a load error (file:line), not a listener that refuses its RIS. */
static void
load_allow_from(struct loader *l, struct mg_conf_listener *li, json_t *arr,
                const char *where)
{
    char key[96];
    json_t *e;
    size_t i;

    if (arr == NULL)
        return;
    if (!json_is_array(arr)) {
        report(l, dotted_key(key, sizeof(key), where, "allow_from"),
               "expected an array of addresses or ranges");
        return;
    }
    json_array_foreach(arr, i, e)
    {
        snprintf(key, sizeof(key), "%s.allow_from[%zu]", where, i);
        if (li->nallow == MG_CONF_MAX_ALLOW) {
            report(l, key, "more than %d entries", MG_CONF_MAX_ALLOW);
            return;
        }
        if (!json_is_string(e) ||
            mg_cidr_parse(json_string_value(e), &li->allow_from[li->nallow]) !=
                MG_OK) {
            report(l, key, "expected an IP address or a range such as "
                   "10.1.2.0/24 (no host bits set after the prefix)");
            continue;
        }
        li->nallow++;
    }
}

/* A listener's name labels its metrics and log lines and fills
 * sync_logs.listener: a word, so that no quote or brace can break the
 * Prometheus text (one bad line fails the whole scrape). */
static bool
listener_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;

    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && strchr("_.-", name[i]) == NULL)
            return false;
    return true;
}

/* Two listeners with one name would share their metrics' series and
 * sync_logs.listener; two on one port, the second fails to bind at start. */
static void
check_listeners_apart(struct loader *l, const struct mg_conf *c)
{
    char where[48], key[96];

    for (int j = 1; j < c->nlisteners; j++) {
        const struct mg_conf_listener *b = &c->listeners[j];

        snprintf(where, sizeof(where), "mllp.listeners[%d]", j);
        for (int i = 0; i < j; i++) {
            const struct mg_conf_listener *a = &c->listeners[i];

            if (a->name && b->name && strcmp(a->name, b->name) == 0)
                report(l, dotted_key(key, sizeof(key), where, "name"),
                       "listener %s is named twice", b->name);
            if (a->port != 0 && a->port == b->port && a->bind && b->bind &&
                (strcmp(a->bind, b->bind) == 0 ||
                 strcmp(a->bind, "0.0.0.0") == 0 ||
                 strcmp(b->bind, "0.0.0.0") == 0 ||
                 strcmp(a->bind, "::") == 0 || strcmp(b->bind, "::") == 0))
                report(l, dotted_key(key, sizeof(key), where, "port"),
                       "port %d is listener %s's already", b->port,
                       a->name ? a->name : "?");
        }
    }
}

/* Listener number k of the file: its keys are reported as
 * "mllp.listeners[k].key", which also finds their line. */
static void
load_listener(struct loader *l, struct mg_conf_listener *li, json_t *v,
              size_t k)
{
    char where[48], key[96];
    const char *mode, *down;
    json_t *senders, *s;
    size_t i;

    snprintf(where, sizeof(where), "mllp.listeners[%zu]", k);

    check_keys(l, v, where, listener_key);
    li->name = mg_strdup(obj_str(v, "name", "mllp"));
    if (li->name != NULL && !listener_name_ok(li->name))
        report(l, dotted_key(key, sizeof(key), where, "name"),
               "expected 1 to 64 letters, digits, '_', '.' or '-' (it "
               "labels the listener's metrics and log lines)");
    li->bind = mg_strdup(obj_str(v, "bind", "127.0.0.1"));
    li->port = (int)obj_num(l, v, "port", 2575, 0, 65535, where);
    li->max_connections =
        (int)obj_num(l, v, "max_connections", 256, 1, 100000, where);
    li->max_connections_per_address = (int)obj_num(
        l, v, "max_connections_per_address", 0, 0, 100000, where);
    li->max_frame_bytes =
        obj_num(l, v, "max_frame_bytes", 16L << 20, 64, 1L << 30, where);
    li->idle_timeout_ms =
        (int)obj_num(l, v, "idle_timeout_ms", 600000, 100, 86400000, where);
    mode = obj_str(v, "ack_mode", "auto");
    if (strcmp(mode, "auto") == 0)
        li->ack_mode = MG_ACK_AUTO;
    else if (strcmp(mode, "original") == 0)
        li->ack_mode = MG_ACK_ORIGINAL;
    else
        report(l, dotted_key(key, sizeof(key), where, "ack_mode"),
               "expected auto or original");
    down = obj_str(v, "db_down_reply", "close");
    if (strcmp(down, "close") == 0)
        li->db_down_reply = MG_DB_DOWN_CLOSE;
    else if (strcmp(down, "ar") == 0)
        li->db_down_reply = MG_DB_DOWN_AR;
    else
        report(l, dotted_key(key, sizeof(key), where, "db_down_reply"),
               "expected close or ar");
    li->default_charset = dup_or_null(obj_str(v, "default_charset", NULL));
    check_charset(l, li->default_charset, where, "default_charset");
    load_allow_from(l, li, json_object_get(v, "allow_from"), where);
    senders = json_object_get(v, "senders");
    if (senders != NULL && !json_is_array(senders)) {
        report(l, dotted_key(key, sizeof(key), where, "senders"),
               "expected an array");
        return;
    }
    json_array_foreach(senders, i, s)
    {
        if (li->nsenders == MG_CONF_MAX_SENDERS) {
            report(l, dotted_key(key, sizeof(key), where, "senders"),
                   "more than %d senders", MG_CONF_MAX_SENDERS);
            return;
        }
        snprintf(key, sizeof(key), "%s.senders[%zu]", where, i);
        load_sender(l, &li->senders[li->nsenders++], s, key);
    }
}

static void
load_listeners(struct loader *l, struct mg_conf *c, json_t *root)
{
    json_t *arr = lookup(root, "mllp.listeners"), *v;
    size_t i;

    if (arr == NULL)
        return;
    if (!json_is_array(arr)) {
        report(l, "mllp.listeners", "expected an array");
        return;
    }
    json_array_foreach(arr, i, v)
    {
        if (c->nlisteners == MG_CONF_MAX_LISTENERS) {
            report(l, "mllp.listeners", "more than %d listeners",
                   MG_CONF_MAX_LISTENERS);
            return;
        }
        if (!json_is_object(v)) {
            report(l, "mllp.listeners", "expected an object");
            continue;
        }
        load_listener(l, &c->listeners[c->nlisteners++], v, i);
    }
    check_listeners_apart(l, c);
}

/* The file's text (NUL-terminated, from mg_malloc), or NULL after saying
 * why on err. */
static char *
read_file(const char *path, FILE *err)
{
    struct mg_buf b;
    int rc;

    mg_buf_init(&b, 16u << 20); /* a configuration file is small */
    rc = mg_buf_read_file(&b, path);
    if (rc == MG_OK && b.ptr == NULL)
        rc = mg_buf_append(&b, "", 0); /* an empty file: still a string */
    if (rc != MG_OK) {
        if (err)
            fprintf(err, "%s: cannot read: %s\n", path, mg_strerror(rc));
        mg_buf_dispose(&b);
        return NULL;
    }
    return mg_buf_take(&b, NULL);
}

/* password=... (or "password = ...") in a key/value string, or
 * user:password@ in a URL. */
static bool
url_has_password(const char *url)
{
    const char *scheme = strstr(url, "://"), *at, *p = url;

    while ((p = strstr(p, "password")) != NULL) {
        p += 8;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '=')
            return true;
    }
    if (scheme == NULL || (at = strchr(scheme + 3, '@')) == NULL)
        return false;
    return memchr(scheme + 3, ':', (size_t)(at - scheme - 3)) != NULL;
}

/* A secret written in a file every user of the machine can read: said,
 * never quoted (a warning: the unit file installs medgate.json 0644 for
 * the secrets to go to medgate.env, root-only). */
static void
warn_secret_readable(struct loader *l, json_t *root)
{
    const char *url = json_string_value(lookup(root, "database.url"));
    const char *pepper =
        json_string_value(lookup(root, "security.api_key_pepper"));
    struct stat st;

    if (l->err == NULL || stat(l->path, &st) != 0 || !(st.st_mode & S_IROTH))
        return;
    if (pepper != NULL && *pepper != '\0')
        fprintf(l->err, "%s: warning: security.api_key_pepper is in a file "
                "every user can read: set MEDGATE_SECURITY_API_KEY_PEPPER in "
                "the environment file instead (or chgrp medgate the file "
                "and chmod 0640 it)\n", l->path);
    if (url != NULL && url_has_password(url))
        fprintf(l->err, "%s: warning: database.url holds a password and "
                "the file is readable by every user: set MEDGATE_DATABASE_URL "
                "in the environment file instead (or chgrp medgate the file "
                "and chmod 0640 it)\n", l->path);
}

int
mg_conf_load(struct mg_conf *c, const char *path, FILE *err)
{
    struct loader l = {path, NULL, err, 0};
    json_error_t jerr;
    json_t *root, *v;
    char *text;
    int rc;

    text = read_file(path, err);
    if (text == NULL)
        return MG_ECONF;
    l.text = text;
    root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL || !json_is_object(root)) {
        if (err)
            fprintf(err, "%s:%d: %s\n", path, jerr.line,
                    root ? "the top level must be an object" : jerr.text);
        json_decref(root);
        mg_free(text);
        return MG_ECONF;
    }
    mg_free(c->path);
    c->path = mg_strdup(path);
    check_unknown_keys(&l, root);
    for (size_t i = 0; i < MG_ARRAY_LEN(options); i++) {
        v = lookup(root, options[i].key);
        if (v != NULL)
            load_scalar(&l, c, &options[i], v);
    }
    load_listeners(&l, c, root);
    warn_secret_readable(&l, root);
    json_decref(root);
    mg_free(text);
    rc = mg_conf_apply_env(c, err);
    return l.errors ? MG_ECONF : rc;
}

/* The variable that overrides o: MEDGATE_ and the dotted path in upper
 * case, dots as underscores (database.url: MEDGATE_DATABASE_URL). */
static void
env_name(const struct opt *o, char *name, size_t size)
{
    size_t n = (size_t)snprintf(name, size, "MEDGATE_%s", o->key);

    for (size_t k = 8; k < n && k < size; k++)
        name[k] = name[k] == '.' ? '_' : (char)toupper((unsigned char)name[k]);
}

/* MEDGATE_ variables of the project's own scripts and tests, not options
 * (a trailing '_' makes a prefix). Keep in step with deploy/ and tests/
 * (grep -r MEDGATE_): one missing here draws a warning at every start. */
static const char *const tool_vars[] = {
    "MEDGATE_TEST_",          /* tests/: MEDGATE_TEST_PGHOST, ..._KEEP_DB */
    "MEDGATE_BIN",            /* tests/integration: the binary under test */
    "MEDGATE_BUILD_DIR",      /* tests/integration, set by ctest */
    "MEDGATE_SOURCE_DIR",     /* tests/integration, set by ctest */
    "MEDGATE_MIGRATE",        /* deploy/container-entrypoint.sh */
    "MEDGATE_MLLP_PORT",      /* deploy/dev.sh run */
    "MEDGATE_PG_FSYNC",       /* deploy/pg.sh */
    "MEDGATE_PG_OPTIONS",     /* deploy/pg.sh, tests/bench/gateway.sh */
    "MEDGATE_FLOOR_SETTINGS", /* tests/bench/pg_floor.sh */
};

static bool
is_tool_var(const char *name, size_t n)
{
    for (size_t i = 0; i < MG_ARRAY_LEN(tool_vars); i++) {
        size_t k = strlen(tool_vars[i]);
        bool prefix = tool_vars[i][k - 1] == '_';

        if ((prefix ? n >= k : n == k) && strncmp(name, tool_vars[i], k) == 0)
            return true;
    }
    return false;
}

static bool
is_option_var(const char *name, size_t n)
{
    char opt[160];

    for (size_t i = 0; i < MG_ARRAY_LEN(options); i++) {
        env_name(&options[i], opt, sizeof(opt));
        if (strlen(opt) == n && strncmp(name, opt, n) == 0)
            return true;
    }
    return false;
}

#define MAX_SUGGEST 64 /* longer names get no suggestion */

/* Edits (insert, delete, change, swap of neighbours) that turn a into b,
 * upper and lower case alike; both shorter than MAX_SUGGEST. */
static unsigned
edits(const char *a, size_t na, const char *b, size_t nb)
{
    unsigned char d[MAX_SUGGEST + 1][MAX_SUGGEST + 1];

    for (size_t i = 0; i <= na; i++)
        d[i][0] = (unsigned char)i;
    for (size_t j = 0; j <= nb; j++)
        d[0][j] = (unsigned char)j;
    for (size_t i = 1; i <= na; i++) {
        for (size_t j = 1; j <= nb; j++) {
            int x = toupper((unsigned char)a[i - 1]);
            int y = toupper((unsigned char)b[j - 1]);
            unsigned v = d[i - 1][j - 1] + (x != y);

            v = MG_MIN(v, (unsigned)d[i - 1][j] + 1);
            v = MG_MIN(v, (unsigned)d[i][j - 1] + 1);
            if (i > 1 && j > 1 && x == toupper((unsigned char)b[j - 2]) &&
                y == toupper((unsigned char)a[i - 2]))
                v = MG_MIN(v, (unsigned)d[i - 2][j - 2] + 1);
            d[i][j] = (unsigned char)v;
        }
    }
    return d[na][nb];
}

/* The option variable closest to name (n bytes, MEDGATE_ first) into
 * best, or NULL when none is close enough to be the one meant: at most 3
 * edits, and fewer than half the letters after MEDGATE_. */
static const char *
closest_option(const char *name, size_t n, char best[MAX_SUGGEST])
{
    unsigned least = UINT_MAX, d;
    char opt[160];

    if (n >= MAX_SUGGEST)
        return NULL;
    for (size_t i = 0; i < MG_ARRAY_LEN(options); i++) {
        env_name(&options[i], opt, sizeof(opt));
        if (strlen(opt) >= MAX_SUGGEST)
            continue;
        d = edits(name, n, opt, strlen(opt));
        if (d < least) {
            least = d;
            memcpy(best, opt, strlen(opt) + 1);
        }
    }
    return least <= 3 && least * 2 < n - 8 ? best : NULL;
}

extern char **environ; /* POSIX; unistd.h declares it only for _GNU_SOURCE */

/* Names each MEDGATE_ variable (any case) that is neither an option nor
 * a tool variable: a misspelt override would leave the default in force
 * without a word. A warning only, so that a stray variable cannot keep
 * the gateway from starting (README). The value is never printed: it may
 * be a secret. */
static void
warn_unknown_env(FILE *err)
{
    char best[MAX_SUGGEST];
    const char *hint;

    if (err == NULL)
        return;
    for (char **e = environ; *e != NULL; e++) {
        size_t n = strcspn(*e, "=");

        if (n < 8 || strncasecmp(*e, "MEDGATE_", 8) != 0 ||
            is_option_var(*e, n) || is_tool_var(*e, n))
            continue;
        hint = closest_option(*e, n, best);
        fprintf(err, "(environment): warning: %.*s is not a medgate option, "
                "ignored%s%s%s\n", (int)n, *e, hint ? "; did you mean " : "",
                hint ? hint : "", hint ? "?" : "");
    }
}

int
mg_conf_apply_env(struct mg_conf *c, FILE *err)
{
    struct loader l = {NULL, NULL, err, 0};
    char name[160];
    const char *why = "", *v;

    warn_unknown_env(err);
    for (size_t i = 0; i < MG_ARRAY_LEN(options); i++) {
        env_name(&options[i], name, sizeof(name));
        v = getenv(name);
        if (v == NULL)
            continue;
        if (set_option(c, &options[i], v, &why) != MG_OK)
            report(&l, name, "%s", why);
    }
    return l.errors ? MG_ECONF : MG_OK;
}

static void
dispose_listener(struct mg_conf_listener *li)
{
    mg_free(li->name);
    mg_free(li->bind);
    mg_free(li->default_charset);
    for (int i = 0; i < li->nsenders; i++) {
        mg_free(li->senders[i].application);
        mg_free(li->senders[i].facility);
        mg_free(li->senders[i].organization_id);
        mg_free(li->senders[i].charset);
    }
}

void
mg_conf_dispose(struct mg_conf *c)
{
    /* The pepper is a secret: not left behind in freed memory. */
    if (c->api_key_pepper != NULL)
        mg_memzero_explicit(c->api_key_pepper, strlen(c->api_key_pepper));
    for (size_t i = 0; i < MG_ARRAY_LEN(options); i++)
        if (options[i].type == OPT_STR)
            mg_free(*str_field(c, &options[i]));
    for (int i = 0; i < c->nlisteners; i++)
        dispose_listener(&c->listeners[i]);
    mg_free(c->path);
    memset(c, 0, sizeof(*c));
}

static void
write_rows(FILE *out, const struct opt *opts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fprintf(out, "| `%s` | %s | `%s` | %s |\n", opts[i].key,
                opts[i].type == OPT_STR ? "string" : "integer", opts[i].def,
                opts[i].doc);
}

void
mg_conf_write_reference(FILE *out)
{
    fprintf(out, "| option | type | default | meaning |\n"
                 "| --- | --- | --- | --- |\n");
    write_rows(out, options, MG_ARRAY_LEN(options));
    write_rows(out, listener_options, MG_ARRAY_LEN(listener_options));
}

static bool
str_differs(const char *x, const char *y)
{
    return (x == NULL) != (y == NULL) || (x != NULL && strcmp(x, y) != 0);
}

static bool
listeners_differ(const struct mg_conf *a, const struct mg_conf *b)
{
    if (a->nlisteners != b->nlisteners)
        return true;
    for (int i = 0; i < a->nlisteners; i++) {
        const struct mg_conf_listener *x = &a->listeners[i], *y = &b->listeners[i];

        if (str_differs(x->name, y->name) || str_differs(x->bind, y->bind) ||
            x->port != y->port || x->max_connections != y->max_connections ||
            x->max_connections_per_address != y->max_connections_per_address ||
            x->max_frame_bytes != y->max_frame_bytes ||
            x->idle_timeout_ms != y->idle_timeout_ms ||
            x->ack_mode != y->ack_mode || x->db_down_reply != y->db_down_reply ||
            str_differs(x->default_charset, y->default_charset) ||
            x->nsenders != y->nsenders || x->nallow != y->nallow ||
            memcmp(x->allow_from, y->allow_from,
                   (size_t)x->nallow * sizeof(x->allow_from[0])) != 0)
            return true;
        for (int k = 0; k < x->nsenders; k++) {
            const struct mg_conf_sender *s = &x->senders[k], *t = &y->senders[k];

            if (str_differs(s->application, t->application) ||
                str_differs(s->facility, t->facility) ||
                str_differs(s->organization_id, t->organization_id) ||
                str_differs(s->charset, t->charset))
                return true;
        }
    }
    return false;
}

void
mg_conf_diff(const struct mg_conf *a, const struct mg_conf *b,
             void (*changed)(const char *key, void *arg), void *arg)
{
    for (size_t i = 0; i < MG_ARRAY_LEN(options); i++) {
        const struct opt *o = &options[i];
        const char *x = (const char *)a + o->offset;
        const char *y = (const char *)b + o->offset;
        bool differs;

        switch (o->type) {
        case OPT_STR:
            differs = str_differs(*(char *const *)x, *(char *const *)y);
            break;
        case OPT_INT:
            differs = *(const int *)x != *(const int *)y;
            break;
        default:
            differs = *(const long *)x != *(const long *)y;
            break;
        }
        if (differs)
            changed(o->key, arg);
    }
    if (listeners_differ(a, b))
        changed("mllp.listeners", arg);
}
