/* A FHIRPath subset over jansson JSON, for FHIR mapping rules: enough to
 * say "Patient.identifier.where(type.coding.code='MR').value" and
 * "Patient.name.given[0]", and small enough to check by reading.
 *
 *   expr    := path [ '=' literal ]
 *   path    := step { '.' step }
 *   step    := name [ '[' n ']' ] | 'where(' expr ')' [ '[' n ']' ]
 *            | 'first()' | 'exists()'
 *   literal := 'text' | number | true | false
 *
 * Collections follow FHIRPath: navigating into an array yields all its
 * elements, in order. The first name of a top-level path may be the
 * resource type ("Patient"), which selects the resource itself when its
 * resourceType matches and nothing otherwise. docs/mapping-guide.md gives
 * the exact semantics, including where they are simpler than the spec. */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "mapping/mapping.h"

enum step_kind { ST_MEMBER, ST_WHERE, ST_FIRST, ST_EXISTS };

struct step {
    enum step_kind kind;
    char *name;               /* ST_MEMBER */
    long index;               /* -1: none */
    struct mg_fhirpath *cond; /* ST_WHERE */
};

struct mg_fhirpath {
    struct step *step;
    size_t nstep;
    json_t *literal; /* "= literal", or NULL */
};

struct parser {
    const char *s;
    size_t len, at;
    struct mg_diag *diag;
    int depth; /* where( nesting: each level recurses in parse and eval */
};

/* More nested where() than any mapping needs is a compile error, not a
 * stack overflow. */
#define MAX_DEPTH 16

/* An index past any real resource's arrays: a larger one is a typo. */
#define MAX_INDEX 1000000

/* ---- compiling ------------------------------------------------------- */

static int
syntax(struct parser *p, const char *what)
{
    if (p->diag != NULL) {
        mg_diag_clear(p->diag);
        mg_diag_set(p->diag, MG_HL7_ERR_DATA_TYPE,
                    "FHIRPath: %s at offset %zu", what, p->at);
        snprintf(p->diag->path, sizeof(p->diag->path), "%.*s",
                 (int)MG_MIN(p->len, sizeof(p->diag->path) - 1), p->s);
    }
    return MG_EINVAL;
}

static void
skip_space(struct parser *p)
{
    while (p->at < p->len && isspace((unsigned char)p->s[p->at]))
        p->at++;
}

static bool
eat(struct parser *p, char c)
{
    skip_space(p);
    if (p->at < p->len && p->s[p->at] == c) {
        p->at++;
        return true;
    }
    return false;
}

static bool
eat_word(struct parser *p, const char *w)
{
    size_t n = strlen(w);

    if (p->len - p->at >= n && memcmp(p->s + p->at, w, n) == 0) {
        p->at += n;
        return true;
    }
    return false;
}

static size_t
ident_len(const struct parser *p)
{
    size_t i = p->at;

    if (i >= p->len || !(isalpha((unsigned char)p->s[i]) || p->s[i] == '_'))
        return 0;
    while (i < p->len &&
           (isalnum((unsigned char)p->s[i]) || p->s[i] == '_'))
        i++;
    return i - p->at;
}

static int parse_expr(struct parser *p, struct mg_fhirpath *fp, char end);

static int
parse_index(struct parser *p, long *index)
{
    *index = -1;
    if (!eat(p, '['))
        return MG_OK;
    skip_space(p);
    if (p->at >= p->len || !isdigit((unsigned char)p->s[p->at]))
        return syntax(p, "expected an index [n]");
    /* Digits by hand, within the text (strtol would read past an
     * expression that is a slice of a larger buffer). */
    *index = 0;
    while (p->at < p->len && isdigit((unsigned char)p->s[p->at])) {
        *index = *index * 10 + (p->s[p->at] - '0');
        if (*index > MAX_INDEX)
            return syntax(p, "index too large");
        p->at++;
    }
    return eat(p, ']') ? MG_OK : syntax(p, "expected ']'");
}

static int
parse_step(struct parser *p, struct step *st)
{
    size_t n, name_at;
    int rc;

    skip_space(p);
    st->index = -1;
    n = ident_len(p);
    if (n == 0)
        return syntax(p, "expected a name");
    name_at = p->at;
    p->at += n;
    if (!eat(p, '(')) {
        st->kind = ST_MEMBER;
        st->name = mg_strndup(p->s + name_at, n);
        return st->name ? parse_index(p, &st->index) : MG_ENOMEM;
    }
    if (n == 5 && memcmp(p->s + name_at, "where", 5) == 0) {
        st->kind = ST_WHERE;
        if (p->depth == MAX_DEPTH)
            return syntax(p, "where() nested too deeply");
        st->cond = mg_calloc(1, sizeof(*st->cond));
        if (st->cond == NULL)
            return MG_ENOMEM;
        p->depth++;
        rc = parse_expr(p, st->cond, ')');
        p->depth--;
        if (rc != MG_OK)
            return rc;
        if (!eat(p, ')'))
            return syntax(p, "expected ')'");
        return parse_index(p, &st->index);
    }
    if (n == 5 && memcmp(p->s + name_at, "first", 5) == 0)
        st->kind = ST_FIRST;
    else if (n == 6 && memcmp(p->s + name_at, "exists", 6) == 0)
        st->kind = ST_EXISTS;
    else {
        p->at = name_at; /* the offset of the function's name */
        return syntax(p, "unsupported function (where, first, exists)");
    }
    return eat(p, ')') ? MG_OK : syntax(p, "expected ')'");
}

static int
parse_literal(struct parser *p, json_t **out)
{
    const char *s;
    char *endp;
    size_t i;

    skip_space(p);
    s = p->s + p->at;
    if (p->at < p->len && *s == '\'') {
        for (i = p->at + 1; i < p->len && p->s[i] != '\''; i++)
            ;
        if (i >= p->len)
            return syntax(p, "unterminated string");
        *out = json_stringn(s + 1, i - p->at - 1);
        if (*out == NULL) /* jansson takes UTF-8 only */
            return syntax(p, "a string that is not UTF-8");
        p->at = i + 1;
    } else if (eat_word(p, "true")) {
        *out = json_true();
    } else if (eat_word(p, "false")) {
        *out = json_false();
    } else if (p->at < p->len && (isdigit((unsigned char)*s) || *s == '-')) {
        char buf[64];
        size_t n = 0;
        while (p->at + n < p->len && n < sizeof(buf) - 1 &&
               strchr("0123456789.-eE+", s[n]) != NULL)
            n++;
        memcpy(buf, s, n);
        buf[n] = '\0';
        double d = strtod(buf, &endp);
        if (endp != buf + n || n == 0 || !isfinite(d))
            return syntax(p, "bad number");
        if (strpbrk(buf, ".eE") == NULL) { /* an integer, kept exact */
            errno = 0;
            long long ll = strtoll(buf, &endp, 10);
            *out = errno == 0 && endp == buf + n ? json_integer(ll)
                                                 : json_real(d);
        } else {
            *out = json_real(d);
        }
        p->at += n;
    } else {
        return syntax(p, "expected a literal ('text', a number, true, "
                         "false)");
    }
    return *out ? MG_OK : MG_ENOMEM;
}

static int
parse_expr(struct parser *p, struct mg_fhirpath *fp, char end)
{
    size_t cap = 0;
    struct step *grown;
    int rc;

    do {
        if (fp->nstep == cap) {
            cap = cap ? cap * 2 : 4;
            grown = mg_realloc(fp->step, cap * sizeof(*grown));
            if (grown == NULL)
                return MG_ENOMEM;
            fp->step = grown;
        }
        memset(&fp->step[fp->nstep], 0, sizeof(*fp->step));
        rc = parse_step(p, &fp->step[fp->nstep++]);
        if (rc != MG_OK)
            return rc;
    } while (eat(p, '.'));
    if (eat(p, '='))
        return parse_literal(p, &fp->literal);
    skip_space(p);
    if (p->at < p->len && p->s[p->at] != end)
        return syntax(p, "unexpected text");
    return MG_OK;
}

int
mg_fhirpath_compile(struct mg_str text, struct mg_fhirpath **out,
                    struct mg_diag *diag)
{
    struct parser p = {text.ptr, text.len, 0, diag, 0};
    struct mg_fhirpath *fp = mg_calloc(1, sizeof(*fp));
    int rc;

    if (fp == NULL)
        return MG_ENOMEM;
    rc = parse_expr(&p, fp, '\0');
    skip_space(&p);
    if (rc == MG_OK && p.at != p.len)
        rc = syntax(&p, "unexpected text");
    if (rc != MG_OK) {
        mg_fhirpath_free(fp);
        return rc;
    }
    *out = fp;
    return MG_OK;
}

void
mg_fhirpath_free(struct mg_fhirpath *fp)
{
    if (fp == NULL)
        return;
    for (size_t i = 0; i < fp->nstep; i++) {
        mg_free(fp->step[i].name);
        mg_fhirpath_free(fp->step[i].cond);
    }
    mg_free(fp->step);
    json_decref(fp->literal);
    mg_free(fp);
}

/* ---- evaluating ------------------------------------------------------ */

static int eval(const struct mg_fhirpath *fp, json_t *root, bool top,
                struct mg_arena *a, struct mg_fhirpath_coll *out);

static int
coll_alloc(struct mg_arena *a, size_t n, struct mg_fhirpath_coll *c)
{
    c->n = 0;
    c->item = mg_arena_alloc(a, (n ? n : 1) * sizeof(*c->item));
    return c->item ? MG_OK : MG_ENOMEM;
}

/* obj's element name. A choice element (deceased[x]) is written in FHIR
 * JSON with its type appended (deceasedBoolean), and FHIRPath names it
 * without (R4 FHIRPath 2.9.1.1, "Patient.deceased"): when obj has no key
 * name, the key name + a FHIR type name is taken. */
static json_t *
member(const json_t *obj, const char *name)
{
    static const char *const types[] = {
        "Boolean", "Integer", "String", "DateTime", "Date", "Time",
        "Instant", "Decimal", "Uri", "Url", "Canonical", "Code", "Oid",
        "Id", "Uuid", "Base64Binary", "Markdown", "PositiveInt",
        "UnsignedInt", "Period", "Quantity", "CodeableConcept", "Coding",
        "Reference", "Range", "Ratio", "Attachment", "Identifier",
        "HumanName", "Address", "ContactPoint", "Timing", "Age", "Duration",
        "Count", "Distance", "Money", "SampledData", "Signature",
        "Annotation", "ContactDetail", "Contributor", "DataRequirement",
        "Expression", "ParameterDefinition", "RelatedArtifact",
        "TriggerDefinition", "UsageContext", "Dosage", "Meta"};
    json_t *v = json_object_get(obj, name);
    size_t len = strlen(name);
    const char *key;
    json_t *val;

    if (v != NULL || !json_is_object(obj))
        return v;
    json_object_foreach((json_t *)obj, key, val) {
        if (strncmp(key, name, len) != 0)
            continue;
        for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++)
            if (strcmp(key + len, types[t]) == 0)
                return val;
    }
    return NULL;
}

static int
step_member(const struct step *st, const struct mg_fhirpath_coll *in,
             struct mg_arena *a, struct mg_fhirpath_coll *out)
{
    size_t n = 0, i;
    json_t *v, *e;
    int rc;

    for (i = 0; i < in->n; i++) {
        v = member(in->item[i], st->name);
        n += json_is_array(v) ? json_array_size(v) : v != NULL;
    }
    rc = coll_alloc(a, n, out);
    for (size_t k = 0; rc == MG_OK && k < in->n; k++) {
        v = member(in->item[k], st->name);
        if (json_is_array(v)) {
            json_array_foreach(v, i, e) {
                if (!json_is_null(e)) /* a null adds nothing (FHIR JSON
                                         pads arrays with it for _given) */
                    out->item[out->n++] = e;
            }
        } else if (v != NULL && !json_is_null(v)) {
            out->item[out->n++] = v;
        }
    }
    return rc;
}

static bool
is_true(const struct mg_fhirpath_coll *c)
{
    return c->n == 1 && json_is_true(c->item[0]);
}

static int
step_where(const struct step *st, const struct mg_fhirpath_coll *in,
           struct mg_arena *a, struct mg_fhirpath_coll *out)
{
    struct mg_fhirpath_coll c;
    int rc = coll_alloc(a, in->n, out);

    for (size_t i = 0; rc == MG_OK && i < in->n; i++) {
        rc = eval(st->cond, in->item[i], false, a, &c);
        if (rc == MG_OK && is_true(&c))
            out->item[out->n++] = in->item[i];
    }
    return rc;
}

static int
apply_step(const struct step *st, const struct mg_fhirpath_coll *in,
           struct mg_arena *a, struct mg_fhirpath_coll *out)
{
    int rc;

    switch (st->kind) {
    case ST_MEMBER:
        rc = step_member(st, in, a, out);
        break;
    case ST_WHERE:
        rc = step_where(st, in, a, out);
        break;
    case ST_FIRST:
        *out = *in;
        out->n = MG_MIN(in->n, (size_t)1);
        return MG_OK;
    case ST_EXISTS:
        rc = coll_alloc(a, 1, out);
        if (rc == MG_OK)
            out->item[out->n++] = in->n ? json_true() : json_false();
        return rc;
    default:
        return MG_EINVAL;
    }
    if (rc == MG_OK && st->index >= 0) {
        if ((size_t)st->index < out->n) {
            out->item[0] = out->item[st->index];
            out->n = 1;
        } else {
            out->n = 0;
        }
    }
    return rc;
}

static bool
equal(json_t *v, json_t *lit)
{
    if (json_is_string(lit))
        return json_is_string(v) && strcmp(json_string_value(v),
                                           json_string_value(lit)) == 0;
    /* Two integers exactly: through doubles, 2^53 + 1 equals 2^53. */
    if (json_is_integer(lit) && json_is_integer(v))
        return json_integer_value(v) == json_integer_value(lit);
    if (json_is_number(lit))
        return json_is_number(v) && json_number_value(v) ==
                                        json_number_value(lit);
    return json_is_boolean(v) && json_is_true(v) == json_is_true(lit);
}

/* The first step of a top-level path may name the resource type. */
static bool
is_type_step(const struct step *st)
{
    return st->kind == ST_MEMBER && isupper((unsigned char)st->name[0]);
}

static int
eval(const struct mg_fhirpath *fp, json_t *root, bool top,
     struct mg_arena *a, struct mg_fhirpath_coll *out)
{
    struct mg_fhirpath_coll cur, next;
    size_t i = 0;
    bool hit = false;
    int rc = coll_alloc(a, 1, &cur);

    if (rc != MG_OK)
        return rc;
    if (root != NULL) /* no resource: an empty collection, never a NULL */
        cur.item[cur.n++] = root;
    if (top && fp->nstep > 0 && is_type_step(&fp->step[0])) {
        json_t *type = json_object_get(root, "resourceType");
        if (!json_is_string(type) ||
            strcmp(json_string_value(type), fp->step[0].name) != 0)
            cur.n = 0;
        if (fp->step[0].index > 0) /* Patient[1]: past the one resource */
            cur.n = 0;
        i = 1;
    }
    for (; i < fp->nstep; i++) {
        rc = apply_step(&fp->step[i], &cur, a, &next);
        if (rc != MG_OK)
            return rc;
        cur = next;
    }
    if (fp->literal == NULL || cur.n == 0) { /* "=" with {} on a side: {} */
        *out = cur;
        return MG_OK;
    }
    for (size_t k = 0; k < cur.n; k++)
        hit |= equal(cur.item[k], fp->literal);
    cur.item[0] = hit ? json_true() : json_false();
    cur.n = 1;
    *out = cur;
    return MG_OK;
}

int
mg_fhirpath_eval(const struct mg_fhirpath *fp, json_t *resource,
                 struct mg_arena *arena, struct mg_fhirpath_coll *out)
{
    return eval(fp, resource, true, arena, out);
}

/* The shortest decimal that reads back as d: 1.1, not the 17 digits
 * "1.1000000000000001" that %.17g gives. (A JSON number's trailing zeros,
 * FHIR's precision, are gone once jansson has read it as a double.) */
static void
shortest_decimal(double d, char *buf, size_t size)
{
    int prec;

    for (prec = 1; prec <= 17; prec++) { /* 17 digits always read back */
        snprintf(buf, size, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    /* %g writes 120.0 as "1.2e+02": no HL7 NM and no FHIR decimal reads
     * that. Plain notation, with the digits found, for any value that
     * fits the buffer (1e-20 to 1e40: far past a measurement). */
    if (strchr(buf, 'e') != NULL && fabs(d) >= 1e-20 && fabs(d) < 1e40) {
        int exp10 = (int)floor(log10(fabs(d)));
        snprintf(buf, size, "%.*f", prec - 1 - exp10 > 0 ? prec - 1 - exp10 : 0,
                 d);
    }
}

int
mg_fhirpath_string(const char *expr, json_t *resource,
                   struct mg_arena *arena, struct mg_str *out)
{
    struct mg_fhirpath *fp;
    struct mg_fhirpath_coll c;
    char buf[64];
    json_t *v;
    int rc = mg_fhirpath_compile(mg_str_from(expr), &fp, NULL);

    if (rc != MG_OK)
        return rc;
    rc = mg_fhirpath_eval(fp, resource, arena, &c);
    mg_fhirpath_free(fp);
    if (rc != MG_OK)
        return rc;
    if (c.n == 0)
        return MG_ENOTFOUND;
    v = c.item[0];
    if (json_is_string(v)) {
        *out = mg_str_n(json_string_value(v), json_string_length(v));
        return MG_OK;
    }
    if (json_is_integer(v))
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT,
                 json_integer_value(v));
    else if (json_is_real(v))
        shortest_decimal(json_real_value(v), buf, sizeof(buf));
    else if (json_is_boolean(v))
        snprintf(buf, sizeof(buf), "%s", json_is_true(v) ? "true" : "false");
    else
        return MG_ENOTFOUND;
    out->ptr = mg_arena_strndup(arena, buf, strlen(buf));
    out->len = strlen(buf);
    return out->ptr ? MG_OK : MG_ENOMEM;
}
