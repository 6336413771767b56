/* Loading a mapping set: reads the route files and code tables of a
 * folder, checks every key, compiles paths, conditions and transforms,
 * resolves "extends", and refuses the whole set when anything is wrong,
 * after reporting every problem with file:line: key path. jansson keeps
 * no positions, so lines come from core/jsonpos (the key names are
 * searched for in the text). All compiled data lives in the set's arena. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/jsonpos.h"
#include "mapping/mapping_int.h"

#define MAX_FILE_BYTES (4u << 20) /* a mapping file is a few KiB */
#define MAX_DEPTH 16              /* key nesting we track for messages */

struct loader {
    struct mg_mapping_set *set;
    struct mg_arena *a;
    FILE *err;
    mg_mapping_adapter_check_cb check; /* NULL: any adapter name */
    int errors;
    bool oom;
    const char *file;             /* display path of the current file */
    const char *text;             /* its text (for lines) */
    const char *key[MAX_DEPTH];   /* key path from the top of the file */
    size_t nkey;
};

/* ---- reporting ------------------------------------------------------- */

static void
push(struct loader *l, const char *key)
{
    if (l->nkey < MAX_DEPTH)
        l->key[l->nkey] = key;
    l->nkey++;
}

static void
pop(struct loader *l)
{
    l->nkey--;
}

static char *dup(struct loader *l, const char *s);

/* Item i of a list, as "[i]" in the key path: report() finds that item's
 * line, not the first item's. */
static void
push_index(struct loader *l, size_t i)
{
    char idx[24];
    const char *k;

    snprintf(idx, sizeof(idx), "[%zu]", i);
    k = dup(l, idx); /* NULL when out of memory (l->oom) */

    push(l, k != NULL ? k : "[?]");
}

MG_PRINTF(2, 3)
static void
report(struct loader *l, const char *fmt, ...)
{
    size_t n = MG_MIN(l->nkey, (size_t)MAX_DEPTH);
    va_list ap;

    l->errors++;
    if (l->err == NULL)
        return;
    if (l->text == NULL) /* about a folder or an unreadable file */
        fprintf(l->err, "%s: ", l->file);
    else
        fprintf(l->err, "%s:%d: ", l->file,
                n ? mg_jsonpos_line(l->text, l->key, n) : 1);
    for (size_t i = 0; i < n; i++)
        fprintf(l->err, "%s%s", i && l->key[i][0] != '[' ? "/" : "",
                l->key[i]);
    fputs(n ? ": " : "", l->err);
    va_start(ap, fmt);
    vfprintf(l->err, fmt, ap);
    va_end(ap);
    fputc('\n', l->err);
}

/* ---- small helpers --------------------------------------------------- */

static char *
dup(struct loader *l, const char *s)
{
    char *p = mg_arena_strndup(l->a, s, strlen(s));

    if (p == NULL)
        l->oom = true;
    return p;
}

static void *
alloc(struct loader *l, size_t n)
{
    void *p = mg_arena_calloc(l->a, n ? n : 1);

    if (p == NULL)
        l->oom = true;
    return p;
}

static struct mg_str
dup_str(struct loader *l, json_t *v)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    char *p = mg_arena_strndup(l->a, s, n);

    if (p == NULL)
        l->oom = true;
    return mg_str_n(p, p ? n : 0);
}

/* A string, or an array of strings (at least one). *out in the arena.
 * False when v is not that, or when out of memory (an element may then be
 * a NULL string: the caller must not read them). */
static bool
str_list(struct loader *l, json_t *v, struct mg_str **out, size_t *n)
{
    size_t i;
    json_t *e;

    if (json_is_string(v)) {
        *out = alloc(l, sizeof(**out));
        *n = 1;
        if (*out)
            (*out)[0] = dup_str(l, v);
        return !l->oom;
    }
    if (!json_is_array(v) || json_array_size(v) == 0) {
        report(l, "expected a string or a non-empty list of strings");
        return false;
    }
    *out = alloc(l, json_array_size(v) * sizeof(**out));
    *n = json_array_size(v);
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e)) {
            push_index(l, i);
            report(l, "expected a list of strings");
            pop(l);
            return false;
        }
        if (*out)
            (*out)[i] = dup_str(l, e);
    }
    return !l->oom;
}

/* A string or null (JSON null means the explicit null: clear the column). */
static bool
str_or_null(struct loader *l, json_t *v, struct mg_str *out, bool *is_null)
{
    *is_null = json_is_null(v);
    if (*is_null) {
        *out = mg_str_n("", 0);
        return true;
    }
    if (!json_is_string(v)) {
        report(l, "expected a string or null");
        return false;
    }
    *out = dup_str(l, v);
    return true;
}

static char *
read_text(struct loader *l, const char *path)
{
    struct mg_buf b;
    int rc;

    mg_buf_init(&b, MAX_FILE_BYTES);
    rc = mg_buf_read_file(&b, path);
    if (rc == MG_OK && b.ptr == NULL)
        rc = mg_buf_append(&b, "", 0); /* an empty file: still a string */
    if (rc == MG_ENOMEM)
        l->oom = true;
    else if (rc == MG_ETOOBIG)
        report(l, "larger than %u bytes", MAX_FILE_BYTES);
    else if (rc != MG_OK)
        report(l, "cannot read: %s", mg_strerror(rc));
    if (rc != MG_OK) {
        mg_buf_dispose(&b);
        return NULL;
    }
    return mg_buf_take(&b, NULL);
}

/* Parses the file's text; reports jansson's own line on a syntax error. */
static json_t *
parse_json(struct loader *l, const char *text)
{
    json_error_t jerr;
    json_t *root;

    /* A UTF-8 byte-order mark, as Windows editors write one: no newline,
     * so the lines counted in l->text stay right. */
    if (strncmp(text, "\xEF\xBB\xBF", 3) == 0)
        text += 3;
    root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        l->errors++;
        if (l->err)
            fprintf(l->err, "%s:%d: %s\n", l->file, jerr.line, jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        report(l, "the top level must be an object");
        json_decref(root);
        return NULL;
    }
    return root;
}

/* ---- code tables ----------------------------------------------------- */

/* Fills t from a code map {"S": "stat", "X": null}. */
static void
load_table_values(struct loader *l, struct mg__mapping_table *t, json_t *obj)
{
    const char *code;
    json_t *v;
    size_t i = 0;

    t->n = json_object_size(obj);
    t->key = alloc(l, t->n * sizeof(*t->key));
    t->val = alloc(l, t->n * sizeof(*t->val));
    t->val_null = alloc(l, t->n * sizeof(*t->val_null));
    if (l->oom)
        return;
    json_object_foreach(obj, code, v)
    {
        push(l, code);
        t->key[i] = mg_str_n(dup(l, code), strlen(code));
        str_or_null(l, v, &t->val[i], &t->val_null[i]);
        pop(l);
        i++;
    }
}

/* The full form {"note", "strict", "default", "values"}. */
static void
load_table_full(struct loader *l, struct mg__mapping_table *t, json_t *obj)
{
    const char *key;
    json_t *v;

    json_object_foreach(obj, key, v)
    {
        push(l, key);
        if (strcmp(key, "note") == 0) {
            if (!json_is_string(v))
                report(l, "expected a string");
        } else if (strcmp(key, "strict") == 0) {
            if (!json_is_boolean(v))
                report(l, "expected true or false");
            t->strict = json_is_true(v);
        } else if (strcmp(key, "default") == 0) {
            t->has_default = true;
            str_or_null(l, v, &t->def, &t->default_null);
        } else if (strcmp(key, "values") == 0) {
            if (json_is_object(v))
                load_table_values(l, t, v);
            else
                report(l, "expected an object of code: value");
        } else {
            report(l, "unknown key (a table has note, strict, default, "
                      "values)");
        }
        pop(l);
    }
    if (json_object_get(obj, "values") == NULL)
        report(l, "a table needs \"values\"");
    if (t->strict && t->has_default)
        report(l, "a strict table has no default");
}

static struct mg__mapping_table *
load_table(struct loader *l, const char *name, json_t *obj)
{
    struct mg__mapping_table *t = alloc(l, sizeof(*t));

    if (t == NULL)
        return NULL;
    t->name = dup(l, name);
    if (json_is_object(json_object_get(obj, "values")))
        load_table_full(l, t, obj);
    else
        load_table_values(l, t, obj);
    return t;
}

static const struct mg__mapping_table *
find_table(const struct mg_mapping_set *set, const char *name)
{
    for (size_t i = 0; i < set->ntable; i++)
        if (strcmp(set->table[i]->name, name) == 0)
            return set->table[i];
    return NULL;
}

/* ---- conditions ------------------------------------------------------ */

static void load_cond(struct loader *l, struct mg__mapping_cond *c, json_t *v,
                      enum mg__mapping_path_kind rel);

static void
load_path(struct loader *l, json_t *v, enum mg__mapping_path_kind rel,
          struct mg__mapping_path *out)
{
    const char *why = "";
    char *text;
    int rc;

    if (!json_is_string(v)) {
        report(l, "expected a path string");
        return;
    }
    text = dup(l, json_string_value(v));
    if (text == NULL)
        return;
    rc = mg__mapping_path_parse(text, rel, l->a, out, &why);
    if (rc == MG_ENOMEM)
        l->oom = true;
    else if (rc != MG_OK)
        report(l, "bad path \"%s\": %s", text, why);
}

/* A "when": one condition object or a list of them (all must hold). */
static void
load_when(struct loader *l, json_t *v, enum mg__mapping_path_kind rel,
          struct mg__mapping_cond **out, size_t *n)
{
    size_t i;
    json_t *e;

    if (json_is_object(v)) {
        *n = 1;
        *out = alloc(l, sizeof(**out));
        if (*out)
            load_cond(l, *out, v, rel);
        return;
    }
    if (!json_is_array(v) || json_array_size(v) == 0) {
        report(l, "expected a condition object or a list of them");
        return;
    }
    *n = json_array_size(v);
    *out = alloc(l, *n * sizeof(**out));
    if (*out == NULL)
        return;
    json_array_foreach(v, i, e) {
        push_index(l, i);
        load_cond(l, &(*out)[i], e, rel);
        pop(l);
    }
}

static const struct {
    const char *name;
    enum mg__mapping_cond_op op;
} cond_ops[] = {
    {"in", MG__COND_IN},
    {"equals", MG__COND_IN},
    {"not_in", MG__COND_NOT_IN},
    {"contains", MG__COND_CONTAINS},
    {"not_contains", MG__COND_NOT_CONTAINS},
    {"exists", MG__COND_EXISTS},
    {"any", MG__COND_ANY},
};

static void
load_cond_op(struct loader *l, struct mg__mapping_cond *c, const char *key,
             json_t *v, enum mg__mapping_path_kind rel)
{
    switch (c->op) {
    case MG__COND_IN:
    case MG__COND_NOT_IN:
        if (strcmp(key, "equals") == 0 && !json_is_string(v))
            report(l, "expected a string");
        else if (strcmp(key, "equals") != 0 && !json_is_array(v))
            report(l, "expected a list of strings");
        else
            str_list(l, v, &c->val, &c->nval);
        break;
    case MG__COND_CONTAINS:
    case MG__COND_NOT_CONTAINS:
        str_list(l, v, &c->val, &c->nval);
        break;
    case MG__COND_EXISTS:
        if (!json_is_boolean(v))
            report(l, "expected true or false");
        c->want = json_is_true(v);
        break;
    case MG__COND_ANY:
        if (!json_is_array(v))
            report(l, "expected a list of conditions");
        else
            load_when(l, v, rel, &c->sub, &c->nsub);
        break;
    }
}

static void
load_cond(struct loader *l, struct mg__mapping_cond *c, json_t *v,
          enum mg__mapping_path_kind rel)
{
    const char *key;
    json_t *e, *path = NULL;
    int nops = 0;

    if (!json_is_object(v)) {
        report(l, "a condition is an object such as "
                  "{\"path\": \"OBX-2\", \"in\": [\"TX\"]}");
        return;
    }
    json_object_foreach(v, key, e)
    {
        size_t i;

        push(l, key);
        for (i = 0; i < MG_ARRAY_LEN(cond_ops); i++)
            if (strcmp(key, cond_ops[i].name) == 0)
                break;
        if (i < MG_ARRAY_LEN(cond_ops)) {
            c->op = cond_ops[i].op;
            nops++;
            load_cond_op(l, c, key, e, rel);
        } else if (strcmp(key, "path") == 0) {
            path = e;
            load_path(l, e, rel, &c->path);
        } else if (strcmp(key, "note") != 0) {
            report(l, "unknown key (a condition has path and one of in, "
                      "equals, not_in, contains, not_contains, exists; "
                      "or any)");
        }
        pop(l);
    }
    if (nops != 1)
        report(l, "a condition needs exactly one test (in, equals, not_in, "
                  "contains, not_contains, exists, any)");
    else if ((c->op == MG__COND_ANY) != (path == NULL))
        report(l, c->op == MG__COND_ANY ? "\"any\" takes no path"
                                        : "a condition needs a \"path\"");
}

/* ---- rules ----------------------------------------------------------- */

struct rule_ctx {
    enum mg__mapping_path_kind rel; /* relative form allowed in paths */
    bool top;                       /* a route-level target, not a group
                                       field */
};

static void load_rule(struct loader *l, struct mg__mapping_rule *r,
                      const char *target, json_t *v, struct rule_ctx ctx);

static void
load_each(struct loader *l, struct mg__mapping_rule *r, json_t *v)
{
    struct mg__mapping_path *p = &r->each_path;
    const char *why = "", *s;

    if (!json_is_string(v)) {
        report(l, "expected a segment id (\"OBX\") or a field (\"PID-3\")");
        return;
    }
    s = json_string_value(v);
    if (strlen(s) == 3) {
        r->each = MG__EACH_SEG;
        memcpy(p->seg, s, 4);
        p->text = dup(l, s);
        for (int i = 0; i < 3; i++)
            if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')))
                why = "bad segment id";
        if (*why)
            report(l, "%s \"%s\"", why, s);
        return;
    }
    r->each = MG__EACH_REP;
    load_path(l, v, MG__PATH_ABS, p);
    if (p->comp != 1 || p->sub != 1 || p->rsel != MG__REP_INDEX ||
        p->rep != 1 || strchr(s, '.') != NULL)
        report(l, "each takes a segment (\"OBX\") or a whole field "
                  "(\"PID-3\", \"PID[2]-3\")");
}

static void
load_from(struct loader *l, struct mg__mapping_rule *r, json_t *v,
          enum mg__mapping_path_kind rel)
{
    struct mg_str *texts = NULL;
    size_t n = 0;

    if (!str_list(l, v, &texts, &n) || texts == NULL)
        return;
    r->nfrom = n;
    r->from = alloc(l, n * sizeof(*r->from));
    if (r->from == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        const char *why = "";
        int rc = mg__mapping_path_parse(texts[i].ptr, rel, l->a, &r->from[i],
                                        &why);
        if (rc == MG_ENOMEM)
            l->oom = true;
        else if (rc != MG_OK) {
            if (json_is_array(v))
                push_index(l, i);
            report(l, "bad path \"%s\": %s", texts[i].ptr, why);
            if (json_is_array(v))
                pop(l);
        }
    }
}

static void
load_transforms(struct loader *l, struct mg__mapping_rule *r, json_t *v)
{
    struct mg_str *names = NULL;
    size_t n = 0;
    enum mg__mapping_xf xf;

    if (!str_list(l, v, &names, &n) || names == NULL)
        return;
    r->xf = alloc(l, n * sizeof(*r->xf));
    if (r->xf == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        if (!mg__mapping_xf_lookup(names[i].ptr, &xf))
            report(l, "unknown transform \"%s\" (hl7_ts, hl7_date, trim, "
                      "upper, lower, person_name, sex, priority, concat)",
                   names[i].ptr);
        else if (xf == MG__XF_CONCAT)
            r->concat = true;
        else
            r->xf[r->nxf++] = xf;
    }
}

static void
load_table_ref(struct loader *l, struct mg__mapping_rule *r, json_t *v)
{
    if (json_is_string(v)) {
        r->table = find_table(l->set, json_string_value(v));
        if (r->table == NULL)
            report(l, "unknown table \"%s\" (no tables/%s.json)",
                   json_string_value(v), json_string_value(v));
    } else if (json_is_object(v)) {
        r->table = load_table(l, "(inline)", v);
    } else {
        report(l, "expected a table name or an object of code: value");
    }
}

static void
load_group_fields(struct loader *l, struct mg__mapping_rule *r, json_t *v)
{
    struct rule_ctx sub = {
        r->each == MG__EACH_SEG ? MG__PATH_REL_SEG : MG__PATH_REL_REP, false};
    const char *name;
    json_t *e;

    if (!json_is_object(v) || json_object_size(v) == 0) {
        report(l, "expected an object of field: rule");
        return;
    }
    r->sub = alloc(l, json_object_size(v) * sizeof(*r->sub));
    if (r->sub == NULL)
        return;
    json_object_foreach(v, name, e)
    {
        push(l, name);
        load_rule(l, &r->sub[r->nsub++], name, e, sub);
        pop(l);
    }
}

/* One key of a rule object. */
static void
load_rule_key(struct loader *l, struct mg__mapping_rule *r, const char *key,
              json_t *v, enum mg__mapping_path_kind rel)
{
    if (strcmp(key, "note") == 0) {
        if (json_is_string(v))
            r->note = dup(l, json_string_value(v));
        else
            report(l, "expected a string");
    } else if (strcmp(key, "from") == 0) {
        load_from(l, r, v, rel);
    } else if (strcmp(key, "const") == 0) {
        r->has_const = str_or_null(l, v, &r->constval, &r->const_null);
    } else if (strcmp(key, "default") == 0) {
        r->has_default = str_or_null(l, v, &r->def, &r->default_null);
    } else if (strcmp(key, "required") == 0) {
        if (!json_is_boolean(v))
            report(l, "expected true or false");
        r->required = json_is_true(v);
    } else if (strcmp(key, "transform") == 0) {
        load_transforms(l, r, v);
    } else if (strcmp(key, "table") == 0) {
        load_table_ref(l, r, v);
    } else if (strcmp(key, "separator") == 0 || strcmp(key, "join") == 0) {
        if (!json_is_string(v))
            report(l, "expected a string");
        else if (key[0] == 's')
            r->separator = dup_str(l, v);
        else
            r->join = dup_str(l, v), r->has_join = true;
    } else if (strcmp(key, "keep_empty") == 0 ||
               strcmp(key, "skip_contained") == 0 ||
               strcmp(key, "whole") == 0) {
        if (!json_is_boolean(v))
            report(l, "expected true or false");
        else if (key[0] == 'k')
            r->keep_empty = json_is_true(v);
        else if (key[0] == 'w')
            r->whole = json_is_true(v);
        else
            r->skip_contained = json_is_true(v);
    } else if (strcmp(key, "same_source") == 0) {
        if (!json_is_string(v))
            report(l, "expected a target name");
        else
            r->same_source = dup(l, json_string_value(v));
    } else if (strcmp(key, "when") == 0) {
        load_when(l, v, rel, &r->when, &r->nwhen);
    } else if (strcmp(key, "fields") == 0) {
        if (!r->group)
            report(l, "only a group target (\"name[]\") has fields");
        else
            load_group_fields(l, r, v);
    } else if (strcmp(key, "each") != 0) {
        report(l, "unknown key (a rule has note, from, const, table, "
                  "default, required, transform, separator, when, each, "
                  "join, keep_empty, whole, skip_contained, same_source, "
                  "fields)");
    }
}

/* The combinations of keys that make sense. */
static void
check_rule(struct loader *l, struct mg__mapping_rule *r, json_t *v)
{
    bool has_from = json_object_get(v, "from") != NULL;

    if (r->group) {
        static const char *const scalar_keys[] = {
            "from", "const", "table", "default", "required", "transform",
            "separator", "join", "keep_empty", "whole", "skip_contained"};
        for (size_t i = 0; i < MG_ARRAY_LEN(scalar_keys); i++)
            if (json_object_get(v, scalar_keys[i]) != NULL)
                report(l, "a group rule takes each, when, fields and note, "
                          "not \"%s\"", scalar_keys[i]);
        if (r->each == MG__EACH_NONE || r->sub == NULL)
            report(l, "a group rule needs \"each\" and \"fields\"");
        return;
    }
    if (has_from == r->has_const)
        report(l, "a rule needs exactly one of \"from\" and \"const\"");
    if (r->each != MG__EACH_NONE && !has_from)
        report(l, "a rule with \"each\" needs \"from\"");
    if (r->has_join && r->each == MG__EACH_NONE)
        report(l, "\"join\" needs \"each\"");
    if (json_object_get(v, "keep_empty") != NULL && !r->has_join)
        report(l, "\"keep_empty\" needs \"join\"");
    if (r->whole && !has_from)
        report(l, "\"whole\" needs \"from\"");
    for (size_t i = 0; r->whole && i < r->nfrom; i++)
        if (r->from[i].has_comp)
            report(l, "\"whole\" reads fields whole: path %s names a "
                      "component", r->from[i].text);
    for (size_t i = 0; r->whole && i < r->nxf; i++)
        if (r->xf[i] == MG__XF_PERSON_NAME || r->xf[i] == MG__XF_HL7_TS ||
            r->xf[i] == MG__XF_HL7_DATE)
            report(l, "\"whole\" is for text: a name or a time has "
                      "components (leave \"whole\" out)");
    if (r->separator.ptr != NULL && !r->concat)
        report(l, "\"separator\" needs the concat transform");
    if (json_object_get(v, "skip_contained") != NULL && !r->concat)
        report(l, "\"skip_contained\" needs the concat transform");
    if (r->concat && r->separator.ptr == NULL)
        r->separator = mg_str_n(" ", 1);
    if (r->required && r->has_default)
        report(l, "a rule is either required or has a default");
    if (r->has_const && (r->nxf || r->table || r->concat))
        report(l, "a constant takes no transform or table");
    /* A constant (even null) always answers, so "default" would never be
     * used and "required" never fail: a sign the author meant "from". */
    if (r->has_const && (r->required || r->has_default))
        report(l, "a constant is never missing: it takes no \"required\" "
                  "or \"default\"");
    if (r->same_source != NULL &&
        (!has_from || r->each != MG__EACH_NONE || r->concat))
        report(l, "\"same_source\" needs \"from\" (a list of fallbacks), "
                  "without each or concat");
}

/* The rule a "same_source" names: an earlier scalar rule of the route,
 * reading fallbacks (no each, concat or const), with as many paths. */
static void
check_same_source(struct loader *l, const struct mg_mapping_route *r,
                  size_t i)
{
    const struct mg__mapping_rule *ru = r->rule[i], *src = NULL;

    for (size_t k = 0; k < i; k++)
        if (strcmp(r->rule[k]->target, ru->same_source) == 0)
            src = r->rule[k];
    push(l, "fields");
    push(l, ru->target);
    push(l, "same_source");
    if (src == NULL)
        report(l, "no rule above this one maps \"%s\"", ru->same_source);
    else if (src->group || src->has_const || src->each != MG__EACH_NONE ||
             src->concat || src->nfrom != ru->nfrom)
        report(l, "\"%s\" must read from as many paths (%zu), by "
                  "fallback, as this rule", ru->same_source, ru->nfrom);
    pop(l);
    pop(l);
    pop(l);
}

static void
set_target(struct loader *l, struct mg__mapping_rule *r, const char *target,
           struct rule_ctx ctx)
{
    size_t n = strlen(target);
    const char *dot;

    r->target = dup(l, target);
    if (r->target == NULL)
        return;
    /* The adapter input's keys (adapter.c): a longer name would be left
     * out of it, and "message" is the gateway's own (type, trigger). */
    if (n > MG_MAPPING_TARGET_MAX)
        report(l, "a target name has at most %d bytes",
               MG_MAPPING_TARGET_MAX);
    if (ctx.top && (strncmp(target, "message.", 8) == 0 ||
                    strcmp(target, "message[]") == 0))
        report(l, "\"message\" is the gateway's own (the message's type "
                  "and trigger): choose another name");
    r->group = ctx.top && n > 2 && strcmp(target + n - 2, "[]") == 0;
    if (!ctx.top || r->group) {
        /* NUL-terminated: a group's column is the group's name. */
        r->column.len = r->group ? n - 2 : n;
        r->column.ptr = mg_arena_strndup(l->a, target, r->column.len);
        r->entity = mg_str_n(r->target, 0);
        l->oom |= r->column.ptr == NULL;
        return;
    }
    dot = strchr(r->target, '.');
    if (dot == NULL || dot == r->target || dot[1] == '\0') {
        report(l, "a target is entity.column (\"patient.last_name\") or a "
                  "group (\"patient_identifiers[]\")");
        return;
    }
    r->entity = mg_str_n(r->target, (size_t)(dot - r->target));
    r->column = mg_str_from(dot + 1);
}

static void
load_rule(struct loader *l, struct mg__mapping_rule *r, const char *target,
          json_t *v, struct rule_ctx ctx)
{
    const char *key;
    json_t *e, *each;

    set_target(l, r, target, ctx);
    if (json_is_string(v) && !r->group) { /* "t": "PID-5.1" = {"from": } */
        load_from(l, r, v, ctx.rel);
        return;
    }
    if (!json_is_object(v)) {
        report(l, "a rule is an object or a path string");
        return;
    }
    each = json_object_get(v, "each");
    if (each != NULL) {
        push(l, "each");
        if (!ctx.top)
            report(l, "each is only for route-level targets");
        else
            load_each(l, r, each);
        pop(l);
        if (r->each == MG__EACH_SEG)
            ctx.rel = MG__PATH_REL_SEG;
        else if (r->each == MG__EACH_REP)
            ctx.rel = MG__PATH_REL_REP;
    }
    json_object_foreach(v, key, e)
    {
        push(l, key);
        load_rule_key(l, r, key, e, ctx.rel);
        pop(l);
    }
    if (!ctx.top && r->same_source != NULL)
        report(l, "same_source is only for route-level targets");
    check_rule(l, r, v);
}

/* ---- routes ---------------------------------------------------------- */

static bool
valid_message_type(const char *s)
{
    size_t n = strlen(s);

    if (strcmp(s, "*") == 0)
        return true;
    if (n < 5 || s[3] != '^')
        return false;
    for (size_t i = 0; i < n; i++)
        if (i != 3 && !((s[i] >= 'A' && s[i] <= 'Z') ||
                        (s[i] >= '0' && s[i] <= '9') ||
                        (s[i] == '*' && i == 4 && n == 5)))
            return false;
    return n == 7 || (n == 5 && s[4] == '*');
}

static void
load_match_list(struct loader *l, json_t *v, struct mg__mapping_strlist *out,
                bool types)
{
    struct mg_str *vals = NULL;
    size_t n = 0;

    out->set = true;
    if (!str_list(l, v, &vals, &n) || vals == NULL)
        return;
    out->v = alloc(l, n * sizeof(*out->v));
    if (out->v == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(vals[i].ptr, "*") == 0) {
            out->n = 0; /* any */
            return;
        }
        if (types && !valid_message_type(vals[i].ptr))
            report(l, "bad message type \"%s\" (\"ORM^O01\", \"ADT^*\" or "
                      "\"*\")", vals[i].ptr);
        out->v[out->n++] = vals[i].ptr;
    }
}

static void
load_match(struct loader *l, struct mg_mapping_route *r, json_t *obj)
{
    const char *key;
    json_t *v;

    if (!json_is_object(obj)) {
        report(l, "expected an object");
        return;
    }
    json_object_foreach(obj, key, v)
    {
        push(l, key);
        if (strcmp(key, "message_type") == 0)
            load_match_list(l, v, &r->types, true);
        else if (strcmp(key, "sending_application") == 0)
            load_match_list(l, v, &r->apps, false);
        else if (strcmp(key, "sending_facility") == 0)
            load_match_list(l, v, &r->facs, false);
        else if (strcmp(key, "listener") == 0)
            load_match_list(l, v, &r->listeners, false);
        else if (strcmp(key, "note") != 0)
            report(l, "unknown key (match has message_type, "
                      "sending_application, sending_facility, listener, "
                      "note)");
        pop(l);
    }
}

/* "split": segment ids, in the order a part's segments come (ORC before
 * OBR); MSH cannot start a part. */
static void
load_split(struct loader *l, struct mg_mapping_route *r, json_t *v)
{
    struct mg_str *ids = NULL;
    size_t n = 0;

    r->split.set = true;
    if (!str_list(l, v, &ids, &n) || ids == NULL)
        return;
    r->split.v = alloc(l, n * sizeof(*r->split.v));
    if (r->split.v == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        const char *id = ids[i].ptr;
        bool ok = ids[i].len == 3 && id[0] >= 'A' && id[0] <= 'Z';

        for (size_t k = 1; ok && k < 3; k++)
            ok = (id[k] >= 'A' && id[k] <= 'Z') || (id[k] >= '0' && id[k] <= '9');
        if (!ok || strcmp(id, "MSH") == 0)
            report(l, "\"%s\" is not a segment that can start a part "
                      "(three letters or digits, not MSH)", id);
        r->split.v[r->split.n++] = id;
    }
}

static void
load_fields(struct loader *l, struct mg_mapping_route *r, json_t *obj)
{
    struct rule_ctx ctx = {MG__PATH_ABS, true};
    size_t n = json_object_size(obj);
    const char *target;
    json_t *v;

    if (!json_is_object(obj)) {
        report(l, "expected an object of target: rule");
        return;
    }
    r->own = alloc(l, n * sizeof(*r->own));
    r->removed = alloc(l, n * sizeof(*r->removed));
    if (l->oom)
        return;
    json_object_foreach(obj, target, v)
    {
        push(l, target);
        if (json_is_null(v)) { /* drop a rule inherited through extends */
            if (r->extends == NULL)
                report(l, "null removes an inherited rule: the route has "
                          "no \"extends\"");
            r->removed[r->nremoved++] = dup(l, target);
        } else {
            load_rule(l, &r->own[r->nown++], target, v, ctx);
        }
        pop(l);
    }
}

static bool
route_string(struct loader *l, json_t *v, const char **out)
{
    if (!json_is_string(v) || json_string_length(v) == 0) {
        report(l, "expected a non-empty string");
        return false;
    }
    *out = dup(l, json_string_value(v));
    return true;
}

/* The adapter is checked here, while the key path still names it, so a
 * wrong name is reported at its line like every other problem. */
static void
load_adapter(struct loader *l, struct mg_mapping_route *r, json_t *v)
{
    const char *why;

    if (!route_string(l, v, &r->adapter) || r->adapter == NULL ||
        l->check == NULL)
        return;
    why = l->check(r->adapter);
    if (why != NULL)
        report(l, "%s \"%s\"", why, r->adapter);
}

static void
load_route_keys(struct loader *l, struct mg_mapping_route *r, json_t *root)
{
    const char *key;
    json_t *v;

    /* extends first: "fields" checks it. */
    v = json_object_get(root, "extends");
    if (v != NULL) {
        push(l, "extends");
        route_string(l, v, &r->extends);
        pop(l);
    }
    json_object_foreach(root, key, v)
    {
        push(l, key);
        if (strcmp(key, "route") == 0)
            route_string(l, v, &r->name);
        else if (strcmp(key, "note") == 0)
            route_string(l, v, &r->note);
        else if (strcmp(key, "adapter") == 0)
            load_adapter(l, r, v);
        else if (strcmp(key, "match") == 0)
            load_match(l, r, v);
        else if (strcmp(key, "fields") == 0)
            load_fields(l, r, v);
        else if (strcmp(key, "split") == 0)
            load_split(l, r, v);
        else if (strcmp(key, "extends") != 0)
            report(l, "unknown key (a route has route, note, match, "
                      "adapter, extends, split, fields)");
        pop(l);
    }
}

static struct mg_mapping_route *
find_route(const struct mg_mapping_set *set, const char *name)
{
    for (size_t i = 0; i < set->nroute; i++)
        if (set->route[i]->name && strcmp(set->route[i]->name, name) == 0)
            return set->route[i];
    return NULL;
}

static void
load_route(struct loader *l, struct mg_mapping_route *r, json_t *root)
{
    load_route_keys(l, r, root);
    if (r->name == NULL) {
        push(l, "route");
        report(l, "a route file needs \"route\" (its name)");
        pop(l);
    } else if (find_route(l->set, r->name) != NULL) {
        push(l, "route");
        report(l, "route \"%s\" is already defined in %s", r->name,
               find_route(l->set, r->name)->file);
        pop(l);
    }
    if (r->extends == NULL && r->adapter == NULL)
        report(l, "a route needs \"adapter\" (or \"extends\")");
    if (r->extends == NULL && json_object_get(root, "fields") == NULL)
        report(l, "a route needs \"fields\" (or \"extends\")");
}

/* ---- extends --------------------------------------------------------- */

static bool
removed(const struct mg_mapping_route *r, const char *target)
{
    for (size_t i = 0; i < r->nremoved; i++)
        if (strcmp(r->removed[i], target) == 0)
            return true;
    return false;
}

/* Parent's rules minus the removed ones, own rules replacing or appended. */
static void
merge_rules(struct loader *l, struct mg_mapping_route *r,
            const struct mg_mapping_route *parent)
{
    size_t max = (parent ? parent->nrule : 0) + r->nown, n = 0, k;

    r->rule = alloc(l, max * sizeof(*r->rule));
    if (r->rule == NULL)
        return;
    for (size_t i = 0; parent && i < parent->nrule; i++)
        if (!removed(r, parent->rule[i]->target))
            r->rule[n++] = parent->rule[i];
    for (size_t i = 0; i < r->nown; i++) {
        for (k = 0; k < n; k++)
            if (strcmp(r->rule[k]->target, r->own[i].target) == 0)
                break;
        r->rule[k] = &r->own[i];
        n += k == n;
    }
    r->nrule = n;
    for (size_t i = 0; i < r->nremoved; i++) {
        bool found = false;
        for (size_t j = 0; parent && j < parent->nrule; j++)
            found |= strcmp(parent->rule[j]->target, r->removed[i]) == 0;
        if (!found) {
            push(l, "fields");
            push(l, r->removed[i]);
            report(l, "route \"%s\" has no rule for this target to remove",
                   parent ? parent->name : "");
            pop(l);
            pop(l);
        }
    }
}

static void
inherit_list(struct mg__mapping_strlist *own,
             const struct mg__mapping_strlist *parent)
{
    if (!own->set)
        *own = *parent;
}

static void resolve(struct loader *l, struct mg_mapping_route *r);

static void
resolve_parent(struct loader *l, struct mg_mapping_route *r)
{
    struct mg_mapping_route *p = find_route(l->set, r->extends);

    push(l, "extends");
    if (p == NULL) {
        report(l, "no route is called \"%s\"", r->extends);
    } else if (p->state == 1) {
        report(l, "\"extends\" makes a cycle through route \"%s\"", p->name);
        p = NULL;
    }
    pop(l);
    if (p == NULL)
        return;
    resolve(l, p);
    l->file = r->file; /* resolve(p) switched to the parent's file */
    l->text = r->text;
    inherit_list(&r->types, &p->types);
    inherit_list(&r->apps, &p->apps);
    inherit_list(&r->facs, &p->facs);
    inherit_list(&r->listeners, &p->listeners);
    inherit_list(&r->split, &p->split);
    if (r->adapter == NULL)
        r->adapter = p->adapter;
    r->depth = p->depth + 1;
    merge_rules(l, r, p);
}

static void
resolve(struct loader *l, struct mg_mapping_route *r)
{
    if (r->state != 0)
        return;
    r->state = 1;
    l->file = r->file;
    l->text = r->text;
    l->nkey = 0;
    if (r->extends != NULL)
        resolve_parent(l, r);
    else
        merge_rules(l, r, NULL);
    for (size_t i = 0; i < r->nrule; i++) {
        if (r->rule[i]->group)
            r->ngroup++;
        else
            r->nscalar++;
        if (r->rule[i]->same_source != NULL)
            check_same_source(l, r, i);
    }
    r->weight = (r->listeners.n ? 4 : 0) + (r->facs.n ? 2 : 0) +
                (r->apps.n ? 1 : 0);
    r->state = 2;
}

/* ---- ambiguity ------------------------------------------------------- */

static bool
same_list(const struct mg__mapping_strlist *a,
          const struct mg__mapping_strlist *b)
{
    size_t hits = 0;

    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        for (size_t j = 0; j < b->n; j++)
            hits += strcmp(a->v[i], b->v[j]) == 0;
    return hits == a->n;
}

static bool
types_overlap(const struct mg__mapping_strlist *a,
              const struct mg__mapping_strlist *b)
{
    if (a->n == 0 || b->n == 0)
        return a->n == b->n;
    for (size_t i = 0; i < a->n; i++)
        for (size_t j = 0; j < b->n; j++)
            if (strcmp(a->v[i], b->v[j]) == 0)
                return true;
    return false;
}

static bool
extends_chain(const struct mg_mapping_set *set,
              const struct mg_mapping_route *child,
              const struct mg_mapping_route *anc)
{
    for (int hops = 0; child && child->extends && hops < 64; hops++) {
        child = find_route(set, child->extends);
        if (child == anc)
            return true;
    }
    return false;
}

/* Two routes that would take the same message with the same weight can
 * only be told apart by file name: refuse that, it is a mistake. */
static void
check_ambiguous(struct loader *l)
{
    struct mg_mapping_set *set = l->set;

    for (size_t i = 0; i < set->nroute; i++)
        for (size_t j = i + 1; j < set->nroute; j++) {
            struct mg_mapping_route *a = set->route[i], *b = set->route[j];

            if (!same_list(&a->apps, &b->apps) ||
                !same_list(&a->facs, &b->facs) ||
                !same_list(&a->listeners, &b->listeners) ||
                !types_overlap(&a->types, &b->types) ||
                extends_chain(set, a, b) || extends_chain(set, b, a))
                continue;
            l->file = b->file;
            l->text = b->text;
            l->nkey = 0;
            push(l, "match");
            report(l, "routes \"%s\" (%s) and \"%s\" take the same "
                      "messages: make one match more specific",
                   a->name, a->file, b->name);
            pop(l);
        }
}

/* ---- the folder ------------------------------------------------------ */

static int
cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool
is_json_name(const char *name)
{
    size_t n = strlen(name);

    return name[0] != '.' && n > 5 && strcmp(name + n - 5, ".json") == 0;
}

/* The "*.json" names in dir, sorted, in the arena (*n = 0 and true when
 * dir does not exist and may_miss). */
static bool
list_json(struct loader *l, const char *dir, bool may_miss, char ***out,
          size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t cap = 0;
    char **v = NULL, **grown;

    *out = NULL;
    *n = 0;
    if (d == NULL) {
        if (may_miss && errno == ENOENT)
            return true;
        l->file = dir;
        l->nkey = 0;
        report(l, "cannot read the folder: %s", strerror(errno));
        return false;
    }
    while ((e = readdir(d)) != NULL) {
        if (!is_json_name(e->d_name))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            grown = mg_arena_alloc(l->a, cap * sizeof(*v));
            if (grown == NULL) {
                l->oom = true;
                break;
            }
            if (*n)
                memcpy(grown, v, *n * sizeof(*v));
            v = grown;
        }
        v[(*n)++] = dup(l, e->d_name);
    }
    closedir(d);
    if (*n)
        qsort(v, *n, sizeof(*v), cmp_names);
    *out = v;
    return !l->oom;
}

static char *
join_path(struct loader *l, const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = mg_arena_alloc(l->a, a + b + 2);

    if (p == NULL) {
        l->oom = true;
        return NULL;
    }
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static void
load_tables(struct loader *l, const char *dir)
{
    char *tdir = join_path(l, dir, "tables"), **names, *text, *path, *name;
    size_t n;
    json_t *root;

    if (tdir == NULL || !list_json(l, tdir, true, &names, &n) || n == 0)
        return;
    l->set->table = alloc(l, n * sizeof(*l->set->table));
    for (size_t i = 0; i < n && !l->oom; i++) {
        path = join_path(l, tdir, names[i]);
        if (path == NULL)
            break;
        l->file = path;
        l->nkey = 0;
        l->text = text = read_text(l, path);
        if (text == NULL)
            continue;
        root = parse_json(l, text);
        if (root != NULL) {
            name = dup(l, names[i]);
            if (name != NULL) {
                name[strlen(name) - 5] = '\0';
                l->set->table[l->set->ntable] = load_table(l, name, root);
                l->set->ntable += l->set->table[l->set->ntable] != NULL;
            }
            json_decref(root);
        }
        mg_free(text);
    }
    l->text = NULL;
}

/* Reads the route files; their texts stay in texts[] (for lines in later
 * messages) until the caller frees them. */
static void
load_routes(struct loader *l, const char *dir, char ***texts, size_t *ntexts)
{
    char **names, *path;
    size_t n;
    json_t *root;
    struct mg_mapping_route *r;

    if (!list_json(l, dir, false, &names, &n))
        return;
    if (n == 0) {
        l->file = dir;
        l->nkey = 0;
        report(l, "no route files (*.json) in the folder");
        return;
    }
    l->set->route = alloc(l, n * sizeof(*l->set->route));
    *texts = mg_calloc(n, sizeof(**texts));
    if (l->set->route == NULL || *texts == NULL) {
        l->oom = true;
        return;
    }
    *ntexts = n;
    for (size_t i = 0; i < n && !l->oom; i++) {
        path = join_path(l, dir, names[i]);
        if (path == NULL)
            break;
        l->file = path;
        l->nkey = 0;
        l->text = (*texts)[i] = read_text(l, path);
        if (l->text == NULL)
            continue;
        root = parse_json(l, l->text);
        if (root == NULL)
            continue;
        r = alloc(l, sizeof(*r));
        if (r != NULL) {
            r->file = path;
            r->text = l->text;
            r->order = l->set->nroute;
            load_route(l, r, root);
            l->set->route[l->set->nroute++] = r;
        }
        json_decref(root);
    }
}

int
mg_mapping_set_load(const char *dir, struct mg_mapping_set **out, FILE *err)
{
    return mg_mapping_set_load_checked(dir, NULL, out, err);
}

int
mg_mapping_set_load_checked(const char *dir, mg_mapping_adapter_check_cb check,
                            struct mg_mapping_set **out, FILE *err)
{
    struct loader l = {0};
    struct mg_mapping_set *set = mg_calloc(1, sizeof(*set));
    char **texts = NULL;
    size_t ntexts = 0;
    int rc;

    if (set == NULL)
        return MG_ENOMEM;
    mg_arena_init(&set->arena, 16384, 0);
    set->refs = 1;
    l.set = set;
    l.a = &set->arena;
    l.err = err;
    l.check = check;
    l.file = dir;
    if (mg_mapping_dir_stamp(dir, &set->stamp) != MG_OK) {
        report(&l, "cannot read the folder: %s", strerror(errno));
    } else {
        load_tables(&l, dir);
        load_routes(&l, dir, &texts, &ntexts);
        for (size_t i = 0; i < set->nroute && !l.oom; i++)
            resolve(&l, set->route[i]);
        if (!l.oom)
            check_ambiguous(&l);
    }
    for (size_t i = 0; i < set->nroute; i++)
        set->route[i]->text = NULL;
    for (size_t i = 0; i < ntexts; i++)
        mg_free(texts[i]);
    mg_free(texts);
    rc = l.oom ? MG_ENOMEM : l.errors ? MG_ECONF : MG_OK;
    if (rc != MG_OK) {
        mg_mapping_set_free(set);
        return rc;
    }
    *out = set;
    return MG_OK;
}

struct mg_mapping_set *
mg_mapping_set_ref(struct mg_mapping_set *set)
{
    if (set != NULL)
        set->refs++;
    return set;
}

void
mg_mapping_set_free(struct mg_mapping_set *set)
{
    if (set == NULL || --set->refs > 0)
        return;
    mg_arena_dispose(&set->arena);
    mg_free(set);
}
