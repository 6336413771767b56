/* Applying a route to a parsed message. Every rule is read in order: its
 * paths are tried (fallbacks, concatenation, or every item of an "each"),
 * transforms and the table run on a value, the default fills an absent
 * one, and a required rule without a value stops the whole message with a
 * diag that points at the HL7 location. Each field read is marked, so the
 * result can list what no rule used. Allocation: the caller's arena only. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "mapping/mapping_int.h"

enum kind { ABSENT, NUL, VAL };

struct outv {
    enum kind kind;
    struct mg_str str;
    struct mg_mapping_where at;
};

/* Where a value was read (for diags and person_name). */
struct loc {
    const struct mg_hl7v2_seg *seg; /* NULL when the segment is absent */
    char segid[4];
    int seq, field, rep, comp, sub;
    const struct mg__mapping_path *path;
};

/* The item of an "each" rule. */
struct item {
    const struct mg_hl7v2_seg *seg;
    int seq;
    int field;         /* EACH_REP */
    int rep;           /* EACH_REP */
    struct mg_str raw; /* EACH_REP: the repetition itself */
};

/* The most items one "each" rule takes from a message. Each may become
 * a row (an identifier, a file): 40,000 PID-3 repetitions took 55 s of
 * the database and 40,000 attachments outlasted the statement timeout,
 * which fails the message's grouped commit, so it was never answered.
 * Real messages hold a handful; a long report some hundreds of lines.
 * The repetitions of one field read at once ("OBX-5[*]") are bounded the
 * same way. */
#define MAX_ITEMS 5000

struct run {
    const struct mg_hl7v2_msg *msg;
    const struct mg_mapping_part *part; /* NULL: the whole message */
    struct mg_arena *arena;
    struct mg_diag *diag;
    unsigned char *used;  /* used[used_at[i] + f]: field f of segment i */
    size_t *used_at;
    const char *target;   /* rule being read, for diags */
    const char *group;    /* group name or NULL */
    size_t item_no;       /* 1-based item of the group */
    bool keep_empty;      /* the rule keeps blank lines ("[*]" too) */
    bool whole;           /* the rule reads repetitions whole */
    const struct mg_mapping_route *route;
    int *source_at;       /* per route rule: the "from" position its value
                             (or explicit null) came from, -1 for none */
    int last_from;        /* that position, for the rule just read */
};

static int fail(struct run *r, const struct loc *l, int code, const char *fmt,
                ...) MG_PRINTF(4, 5);

/* ---- reading --------------------------------------------------------- */

/* The segments the run reads, in message order: the head and the part, or
 * the whole message without a part. Sets from[]/to[] and returns how many
 * ranges (1 or 2). Every walk over segments keeps to them, so a message
 * cut into many parts costs each part its own size, not the message's. */
static int
ranges(const struct run *r, size_t from[2], size_t to[2])
{
    const struct mg_mapping_part *p = r->part;

    from[0] = 0;
    if (p == NULL) {
        to[0] = r->msg->nseg;
        return 1;
    }
    to[0] = p->head_end;
    from[1] = p->begin > p->head_end ? p->begin : p->head_end;
    to[1] = p->end;
    return 2;
}

/* Where segment i (one the run reads) is in the run's own numbering:
 * the head first, then the part. */
static size_t
visible_pos(const struct run *r, size_t i)
{
    const struct mg_mapping_part *p = r->part;

    return p == NULL || i < p->head_end ? i : p->head_end + (i - p->begin);
}

/* The seq-th segment id the run sees, and in *global its occurrence in
 * the whole message (left as it is when there is none), so locations name
 * the message's segment: the second part's OBR is OBR[2]. */
static const struct mg_hl7v2_seg *
find_seg(const struct run *r, const char *id, int seq, int *global)
{
    size_t from[2], to[2];
    int n = ranges(r, from, to);

    for (int k = 0; k < n; k++)
        for (size_t i = from[k]; i < to[k]; i++)
            if (memcmp(r->msg->seg[i].id, id, 4) == 0 && --seq == 0) {
                *global = r->msg->seg[i].seq;
                return &r->msg->seg[i];
            }
    return NULL;
}

static void
mark_used(struct run *r, const struct mg_hl7v2_seg *seg, int field)
{
    size_t i = visible_pos(r, (size_t)(seg - r->msg->seg));

    if (field > 0 && field < seg->nfield)
        r->used[r->used_at[i] + (size_t)field] = 1;
}

/* Joins parts[0..n) with sep into the arena. */
static int
join(struct mg_arena *a, const struct mg_str *parts, size_t n,
     struct mg_str sep, struct mg_str *out)
{
    size_t len = 0, at = 0;
    char *p;

    if (n == 1) {
        *out = parts[0];
        return MG_OK;
    }
    for (size_t i = 0; i < n; i++)
        len += parts[i].len + (i ? sep.len : 0);
    p = mg_arena_alloc(a, len + 1);
    if (p == NULL)
        return MG_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (i) {
            memcpy(p + at, sep.ptr, sep.len);
            at += sep.len;
        }
        memcpy(p + at, parts[i].ptr, parts[i].len);
        at += parts[i].len;
    }
    p[at] = '\0';
    *out = mg_str_n(p, at);
    return MG_OK;
}

/* "OBX-5[*]": every valued repetition, one per line; with keep_empty,
 * blank repetitions between valued ones are blank lines (in a TX OBX,
 * "A~~B" is two paragraphs), as blank OBX are between OBX. */
static int
read_all_reps(struct run *r, const struct loc *l, struct mg_hl7v2_val *out)
{
    int n = mg_hl7v2_rep_count(r->msg, l->seg, l->field), k = 0, rc;
    struct mg_hl7v2_rep_iter it = {0};
    struct mg_str *parts, rep;
    bool null = false;

    out->presence = MG_HL7V2_EMPTY;
    out->str = mg_str_n("", 0);
    if (n == 0)
        return MG_OK;
    if (n > MAX_ITEMS)
        return fail(r, l, MG_HL7_ERR_SEGMENT_SEQUENCE, "%s: more than %d "
                    "repetitions in one field", r->target, MAX_ITEMS);
    parts = mg_arena_alloc(r->arena, (size_t)n * sizeof(*parts));
    if (parts == NULL)
        return MG_ENOMEM;
    while (mg_hl7v2_rep_next(r->msg, l->seg, l->field, &it, &rep)) {
        rc = mg_hl7v2_rep_get(r->msg, l->seg, l->field, rep, l->comp, l->sub,
                              out);
        if (rc != MG_OK)
            return rc;
        if (out->presence == MG_HL7V2_VALUED)
            parts[k++] = out->str;
        else if (r->keep_empty && k > 0)
            parts[k++] = mg_str_n("", 0);
        null |= out->presence == MG_HL7V2_NULL;
    }
    while (k > 0 && parts[k - 1].len == 0)
        k--; /* blank lines between values only */
    out->presence = k ? MG_HL7V2_VALUED : null ? MG_HL7V2_NULL
                                               : MG_HL7V2_EMPTY;
    if (k == 0)
        return MG_OK;
    return join(r->arena, parts, (size_t)k, mg_str_n("\n", 1), &out->str);
}

/* A [comp=value] condition: the first repetition it matches that has
 * something (a value or an explicit null) at the position read, else the
 * first one it matches (l->rep 0 when none does). PID-3 "^^^X^MR~M2^^^X^MR"
 * gives M2: a typed repetition without an id is no reason to refuse the
 * one after it. */
static int
read_matching_rep(struct run *r, const struct mg__mapping_path *p,
                  struct loc *l, struct mg_hl7v2_val *v)
{
    struct mg_hl7v2_rep_iter it = {0};
    struct mg_hl7v2_val c;
    struct mg_str rep;
    int first = 0, rc;

    while (mg_hl7v2_rep_next(r->msg, l->seg, l->field, &it, &rep)) {
        rc = mg_hl7v2_rep_get(r->msg, l->seg, l->field, rep, p->match_comp, 1,
                              &c);
        if (rc != MG_OK)
            return rc;
        if (c.presence != MG_HL7V2_VALUED || !mg_str_eq(c.str, p->match_value))
            continue;
        rc = mg_hl7v2_rep_get(r->msg, l->seg, l->field, rep, l->comp, l->sub,
                              v);
        if (rc != MG_OK)
            return rc;
        if (first == 0)
            first = it.n;
        if (v->presence != MG_HL7V2_EMPTY) {
            l->rep = it.n;
            return MG_OK;
        }
    }
    l->rep = first; /* v is empty: nothing, or an empty match */
    return MG_OK;
}

/* Reads path p (in item it for a relative path) into *v; *l is where. */
static int
read_path(struct run *r, const struct mg__mapping_path *p,
          const struct item *it, struct mg_hl7v2_val *v, struct loc *l)
{
    memset(l, 0, sizeof(*l));
    l->path = p;
    l->comp = r->whole ? 0 : p->comp;
    l->sub = r->whole ? 0 : p->sub;
    l->rep = p->rep;
    l->field = p->field;
    v->presence = MG_HL7V2_EMPTY;
    v->str = mg_str_n("", 0);
    if (p->kind == MG__PATH_ABS) {
        memcpy(l->segid, p->seg, 4);
        l->seq = p->seq;
        l->seg = find_seg(r, p->seg, p->seq, &l->seq);
    } else {
        memcpy(l->segid, it->seg->id, 4);
        l->seq = it->seq;
        l->seg = it->seg;
        if (p->kind == MG__PATH_REL_REP) {
            l->field = it->field;
            l->rep = it->rep;
        }
    }
    if (l->seg == NULL)
        return MG_OK;
    mark_used(r, l->seg, l->field);
    if (p->rsel == MG__REP_ALL) {
        l->rep = 1;
        return read_all_reps(r, l, v);
    }
    if (p->rsel == MG__REP_MATCH)
        return read_matching_rep(r, p, l, v);
    if (p->kind == MG__PATH_REL_REP && it->raw.ptr != NULL)
        return mg_hl7v2_rep_get(r->msg, l->seg, l->field, it->raw, l->comp,
                                l->sub, v); /* not found again: see item */
    return mg_hl7v2_seg_get(r->msg, l->seg, l->field, l->rep, l->comp,
                            l->sub, v);
}

/* ---- diags ----------------------------------------------------------- */

MG_PRINTF(4, 5)
static int
fail(struct run *r, const struct loc *l, int code, const char *fmt, ...)
{
    struct mg_diag *d = r->diag;
    va_list ap;

    if (d == NULL)
        return MG_EMAPPING;
    mg_diag_clear(d);
    mg_diag_at(d, l->segid, l->seq, l->field, l->comp);
    d->rep = l->rep;
    d->sub = l->sub;
    d->code = code;
    if (r->group)
        snprintf(d->path, sizeof(d->path), "%s[%zu].%s", r->group,
                 r->item_no, r->target);
    else
        snprintf(d->path, sizeof(d->path), "%s", r->target);
    va_start(ap, fmt);
    vsnprintf(d->text, sizeof(d->text), fmt, ap);
    va_end(ap);
    return MG_EMAPPING;
}

static int
fail_required(struct run *r, const struct mg__mapping_rule *ru,
              const struct loc *l)
{
    char tried[160];
    size_t at = 0;
    struct loc first = *l;

    /* An "each" rule that found no item points at its first path in the
     * first such segment (OBX-5), where the value was looked for, not at
     * an occurrence 0 of field 0. */
    if (ru->each != MG__EACH_NONE && first.seq == 0) {
        first.seq = 1;
        if (first.field == 0 && ru->nfrom > 0) {
            first.field = ru->from[0].field;
            first.rep = 1;
            first.comp = ru->whole ? 0 : ru->from[0].comp;
            first.sub = ru->whole ? 0 : ru->from[0].sub;
        }
    }
    l = &first;
    tried[0] = '\0';
    for (size_t i = 0; i < ru->nfrom && at < sizeof(tried); i++)
        at += (size_t)snprintf(tried + at, sizeof(tried) - at, "%s%s",
                               i ? ", " : "", ru->from[i].text);
    return fail(r, l, MG_HL7_ERR_REQUIRED_MISSING,
                "required %s missing (tried %s%s%s)", r->target,
                ru->each != MG__EACH_NONE ? "each " : "",
                ru->each != MG__EACH_NONE ? ru->each_path.text : "", tried);
}

/* ---- conditions ------------------------------------------------------ */

static bool
contains_ci(struct mg_str hay, struct mg_str needle)
{
    if (needle.len == 0)
        return true;
    for (size_t i = 0; i + needle.len <= hay.len; i++)
        if (mg_str_ieq(mg_str_n(hay.ptr + i, needle.len), needle))
            return true;
    return false;
}

static int cond_all(struct run *r, const struct mg__mapping_cond *c, size_t n,
                    const struct item *it, bool *ok);

static int
cond_one(struct run *r, const struct mg__mapping_cond *c,
         const struct item *it, bool *ok)
{
    struct mg_hl7v2_val v;
    struct loc l;
    bool valued, hit = false;
    int rc;

    if (c->op == MG__COND_ANY) {
        *ok = false;
        for (size_t i = 0; i < c->nsub && !*ok; i++) {
            rc = cond_all(r, &c->sub[i], 1, it, ok);
            if (rc != MG_OK)
                return rc;
        }
        return MG_OK;
    }
    rc = read_path(r, &c->path, it, &v, &l);
    if (rc != MG_OK)
        return rc;
    valued = v.presence == MG_HL7V2_VALUED;
    for (size_t i = 0; valued && i < c->nval && !hit; i++)
        hit = c->op == MG__COND_IN || c->op == MG__COND_NOT_IN
                  ? mg_str_eq(v.str, c->val[i])
                  : contains_ci(v.str, c->val[i]);
    switch (c->op) {
    case MG__COND_IN:
    case MG__COND_CONTAINS:
        *ok = hit;
        break;
    case MG__COND_NOT_IN:
    case MG__COND_NOT_CONTAINS:
        *ok = !hit;
        break;
    default:
        *ok = valued == c->want;
        break;
    }
    return MG_OK;
}

static int
cond_all(struct run *r, const struct mg__mapping_cond *c, size_t n,
         const struct item *it, bool *ok)
{
    int rc;

    *ok = true;
    for (size_t i = 0; i < n && *ok; i++) {
        rc = cond_one(r, &c[i], it, ok);
        if (rc != MG_OK)
            return rc;
    }
    return MG_OK;
}

/* ---- items of "each" ------------------------------------------------- */

/* True when repetition rep of field holds nothing but component and
 * sub-component separators (nothing at all, "^^^", "^&^"): every component
 * is empty, so it says nothing. The explicit null "" is content. */
static bool
rep_is_empty(const struct mg_hl7v2_msg *msg, struct mg_str rep)
{
    const struct mg_hl7v2_delims *d = &msg->delims;

    for (size_t i = 0; i < rep.len; i++)
        if (rep.ptr[i] != d->comp && rep.ptr[i] != d->sub)
            return false;
    return true;
}

/* Every item of rule ru, in message order, into the arena. An empty
 * repetition is no item: skipping it here keeps its required or defaulted
 * sub-fields from refusing the message or making an item of defaults. */
static int
list_all_items(struct run *r, const struct mg__mapping_rule *ru,
               struct item **out, size_t *n)
{
    const struct mg__mapping_path *p = &ru->each_path;
    const struct mg_hl7v2_seg *seg;
    struct mg_hl7v2_rep_iter it = {0};
    struct mg_str rep;
    size_t k = 0;
    int seq;

    /* One more than MAX_ITEMS is enough to refuse the message. */
    *n = 0;
    if (ru->each == MG__EACH_SEG) {
        size_t from[2], to[2];
        int nr = ranges(r, from, to);

        for (int g = 0; g < nr; g++)
            for (size_t i = from[g]; i < to[g]; i++)
                k += memcmp(r->msg->seg[i].id, p->seg, 4) == 0;
        k = MG_MIN(k, (size_t)MAX_ITEMS + 1);
        *out = mg_arena_alloc(r->arena, (k ? k : 1) * sizeof(**out));
        if (*out == NULL)
            return MG_ENOMEM;
        for (int g = 0; g < nr; g++)
            for (size_t i = from[g]; i < to[g] && *n < k; i++)
                if (memcmp(r->msg->seg[i].id, p->seg, 4) == 0)
                    (*out)[(*n)++] = (struct item){&r->msg->seg[i],
                                                   r->msg->seg[i].seq, 0, 0,
                                                   {NULL, 0}};
        return MG_OK;
    }
    seq = p->seq;
    seg = find_seg(r, p->seg, p->seq, &seq);
    k = seg ? (size_t)mg_hl7v2_rep_count(r->msg, seg, p->field) : 0;
    k = MG_MIN(k, (size_t)MAX_ITEMS + 1);
    if (seg != NULL)
        mark_used(r, seg, p->field);
    *out = mg_arena_alloc(r->arena, (k ? k : 1) * sizeof(**out));
    if (*out == NULL)
        return MG_ENOMEM;
    while (*n < k && seg != NULL &&
           mg_hl7v2_rep_next(r->msg, seg, p->field, &it, &rep))
        if (!rep_is_empty(r->msg, rep))
            (*out)[(*n)++] = (struct item){seg, seq, p->field, it.n, rep};
    return MG_OK;
}

/* Refuses the message at extra, rule ru's first item past MAX_ITEMS. */
static int
too_many_items(struct run *r, const struct mg__mapping_rule *ru,
               const struct item *extra)
{
    struct loc l;

    memset(&l, 0, sizeof(l));
    memcpy(l.segid, extra->seg->id, 4);
    l.seg = extra->seg;
    l.seq = extra->seq;
    l.field = extra->field;
    l.rep = extra->rep;
    return fail(r, &l, MG_HL7_ERR_SEGMENT_SEQUENCE,
                "%s: more than %d of %s in one message", r->target,
                MAX_ITEMS, ru->each_path.text);
}

/* list_all_items, bounded: more than MAX_ITEMS refuse the message. */
static int
list_items(struct run *r, const struct mg__mapping_rule *ru,
           struct item **out, size_t *n)
{
    int rc = list_all_items(r, ru, out, n);

    if (rc == MG_OK && *n > MAX_ITEMS)
        return too_many_items(r, ru, &(*out)[MAX_ITEMS]);
    return rc;
}

/* ---- values ---------------------------------------------------------- */

/* XPN/XCN/CNN as "Given Family": the given name is the component (or
 * sub-component, when the path named one) after the family name. */
static int
person_name(struct run *r, const struct loc *l, struct mg_str family,
            struct mg_str *out)
{
    struct mg_hl7v2_val given;
    struct mg_str parts[2];
    bool sub = l->path != NULL && l->path->has_sub;
    int rc;

    if (l->seg == NULL) {
        *out = family;
        return MG_OK;
    }
    rc = mg_hl7v2_seg_get(r->msg, l->seg, l->field, l->rep ? l->rep : 1,
                          sub ? l->comp : l->comp + 1,
                          sub ? l->sub + 1 : 1, &given);
    if (rc != MG_OK)
        return rc;
    given.str = mg_str_trim(given.str);
    if (given.presence != MG_HL7V2_VALUED || given.str.len == 0) {
        *out = family;
        return MG_OK;
    }
    parts[0] = given.str;
    parts[1] = family;
    return join(r->arena, parts, 2, mg_str_n(" ", 1), out);
}

static const char *
xf_name(enum mg__mapping_xf xf)
{
    static const char *const names[] = {
        "trim",     "upper",       "lower",  "hl7_ts", "hl7_date",
        "sex",      "priority",    "person_name", "concat"};
    return (size_t)xf < MG_ARRAY_LEN(names) ? names[xf] : "?";
}

/* Transforms, then the table, on a value. */
static int
finish(struct run *r, const struct mg__mapping_rule *ru, const struct loc *l,
       struct outv *o)
{
    const struct mg__mapping_table *t = ru->table;
    int rc;

    for (size_t i = 0; i < ru->nxf; i++) {
        if (ru->xf[i] == MG__XF_PERSON_NAME)
            rc = person_name(r, l, o->str, &o->str);
        else
            rc = mg__mapping_xf_apply(ru->xf[i], o->str, r->arena, &o->str);
        if (rc == MG_EMAPPING)
            return fail(r, l, MG_HL7_ERR_DATA_TYPE,
                        "%s: the value does not fit transform %s", r->target,
                        xf_name(ru->xf[i]));
        if (rc != MG_OK)
            return rc;
    }
    if (o->str.len == 0 && ru->nxf > 0 && !ru->keep_empty) {
        /* nothing left ("   " trimmed): no value, so the default and
         * required apply as to an empty field */
        o->kind = ABSENT;
        return MG_OK;
    }
    if (t == NULL)
        return MG_OK;
    for (int pass = 0; pass < 2; pass++) /* exact, then ignoring case */
        for (size_t i = 0; i < t->n; i++)
            if (pass ? mg_str_ieq(o->str, t->key[i])
                     : mg_str_eq(o->str, t->key[i])) {
                o->kind = t->val_null[i] ? NUL : VAL;
                o->str = t->val[i];
                return MG_OK;
            }
    if (t->strict)
        return fail(r, l, MG_HL7_ERR_TABLE_VALUE,
                    "%s: the value is not in table %s", r->target, t->name);
    if (t->has_default) {
        o->kind = t->default_null ? NUL : VAL;
        o->str = t->def;
    }
    return MG_OK;
}

/* For a "same_source" rule: the position the named earlier rule of the
 * route read, as [*first, *last); all of them when it read none (no code:
 * the description is still wanted, from wherever it is). */
static void
same_source_range(const struct run *r, const struct mg__mapping_rule *ru,
                  size_t *first, size_t *last)
{
    int at = -1;

    for (size_t k = 0; r->source_at != NULL && k < r->route->nrule; k++) {
        if (r->route->rule[k] == ru)
            break;
        if (strcmp(r->route->rule[k]->target, ru->same_source) == 0)
            at = r->source_at[k];
    }
    *first = at < 0 ? 0 : (size_t)at;
    *last = at < 0 ? ru->nfrom : MG_MIN((size_t)at + 1, ru->nfrom);
}

/* Whether s holds w as whole words: at its start or after a space, and
 * at its end or before one. ASCII letters compare without case. */
static bool
holds_words(struct mg_str s, struct mg_str w)
{
    for (size_t i = 0; w.len > 0 && i + w.len <= s.len; i++) {
        if ((i > 0 && s.ptr[i - 1] != ' ') ||
            (i + w.len < s.len && s.ptr[i + w.len] != ' '))
            continue;
        if (mg_str_ieq(mg_str_n(s.ptr + i, w.len), w))
            return true;
    }
    return false;
}

/* With "skip_contained": whether one of the n parts joined so far holds
 * part already. */
static bool
already_joined(const struct mg_str *parts, size_t n, struct mg_str part)
{
    for (size_t i = 0; i < n; i++)
        if (holds_words(parts[i], part))
            return true;
    return false;
}

/* The "from" paths: the first valued one (fallbacks), or all valued ones
 * joined (concat). No value but an explicit null somewhere: null. With
 * "same_source", only the position the named rule read. */
static int
read_from(struct run *r, const struct mg__mapping_rule *ru,
          const struct item *it, struct outv *o, struct loc *l)
{
    struct mg_hl7v2_val v;
    struct mg_str *parts = NULL;
    struct loc here, null_at;
    size_t k = 0, first = 0, last = ru->nfrom;
    int null_pos = -1;
    bool null = false;
    int rc;

    o->kind = ABSENT;
    o->str = mg_str_n("", 0);
    r->last_from = -1;
    if (ru->same_source != NULL)
        same_source_range(r, ru, &first, &last);
    if (ru->concat) {
        parts = mg_arena_alloc(r->arena, ru->nfrom * sizeof(*parts));
        if (parts == NULL)
            return MG_ENOMEM;
    }
    for (size_t i = first; i < last; i++) {
        r->keep_empty = ru->keep_empty;
        r->whole = ru->whole;
        rc = read_path(r, &ru->from[i], it, &v, &here);
        r->keep_empty = r->whole = false;
        if (rc != MG_OK)
            return rc;
        if (i == first || (l->seg == NULL && here.seg != NULL))
            *l = here; /* diags point at a segment the message has */
        if (v.presence == MG_HL7V2_NULL && !null) {
            null = true;
            null_at = here;
            null_pos = (int)i;
        }
        if (v.presence != MG_HL7V2_VALUED)
            continue;
        if (k == 0)
            *l = here;
        if (!ru->concat) {
            o->kind = VAL;
            o->str = v.str;
            r->last_from = (int)i;
            return MG_OK;
        }
        if (!ru->skip_contained || !already_joined(parts, k, v.str))
            parts[k++] = v.str;
    }
    if (k > 0) {
        o->kind = VAL;
        return join(r->arena, parts, k, ru->separator, &o->str);
    }
    if (null) {
        o->kind = NUL;
        *l = null_at;
        r->last_from = null_pos;
    }
    return MG_OK;
}

/* A scalar rule with "each": the first item's value, or all joined. */
static int
read_each(struct run *r, const struct mg__mapping_rule *ru, struct outv *o,
          struct loc *l)
{
    struct item *items;
    struct mg_str *parts = NULL;
    struct outv v = {ABSENT, {NULL, 0}, {{0}, 0, 0, 0, 0, 0}};
    struct loc here;
    size_t n, k = 0;
    bool ok, null = false;
    int rc;

    o->kind = ABSENT;
    memset(l, 0, sizeof(*l));
    memcpy(l->segid, ru->each_path.seg, 4);
    l->field = ru->each_path.field;
    rc = list_items(r, ru, &items, &n);
    if (rc == MG_OK && ru->has_join && n > 0) {
        parts = mg_arena_alloc(r->arena, n * sizeof(*parts));
        rc = parts ? MG_OK : MG_ENOMEM;
    }
    for (size_t i = 0; i < n && rc == MG_OK; i++) {
        rc = cond_all(r, ru->when, ru->nwhen, &items[i], &ok);
        if (rc != MG_OK || !ok)
            continue;
        rc = read_from(r, ru, &items[i], &v, &here);
        if (rc == MG_OK && v.kind == VAL)
            rc = finish(r, ru, &here, &v);
        if (rc != MG_OK)
            continue;
        if (v.kind != VAL && ru->keep_empty && k > 0) {
            parts[k++] = mg_str_n("", 0); /* a blank line, kept */
            continue;
        }
        if (v.kind == ABSENT)
            continue;
        null |= v.kind == NUL;
        if (v.kind == NUL)
            continue;
        if (!ru->has_join) {
            *o = v;
            *l = here;
            return MG_OK;
        }
        parts[k++] = v.str;
    }
    if (rc != MG_OK)
        return rc;
    while (k > 0 && parts[k - 1].len == 0)
        k--; /* keep_empty keeps blank parts between values only */
    if (k > 0) {
        o->kind = VAL;
        return join(r->arena, parts, k, ru->join, &o->str);
    }
    o->kind = null ? NUL : ABSENT;
    return MG_OK;
}

/* One value rule (a scalar target or a group field) in item it (NULL
 * outside a group). */
static int
eval_rule(struct run *r, const struct mg__mapping_rule *ru,
          const struct item *it, struct outv *o)
{
    struct loc l;
    bool ok;
    int rc;

    r->target = ru->group ? ru->column.ptr : ru->target;
    memset(&l, 0, sizeof(l));
    memset(o, 0, sizeof(*o));
    o->kind = ABSENT;
    if (ru->each == MG__EACH_NONE && ru->nwhen > 0) {
        rc = cond_all(r, ru->when, ru->nwhen, it, &ok);
        if (rc != MG_OK || !ok)
            return rc; /* the rule does not apply to this message */
    }
    if (ru->has_const) {
        o->kind = ru->const_null ? NUL : VAL;
        o->str = ru->constval;
        return MG_OK;
    }
    if (ru->each != MG__EACH_NONE) {
        rc = read_each(r, ru, o, &l);
    } else {
        rc = read_from(r, ru, it, o, &l);
        if (rc == MG_OK && o->kind == VAL)
            rc = finish(r, ru, &l, o);
    }
    if (rc != MG_OK)
        return rc;
    if (o->kind != ABSENT && l.seg != NULL) {
        memcpy(o->at.segment, l.segid, 4);
        o->at.seq = l.seq;
        o->at.field = l.field;
        o->at.rep = l.rep;
        o->at.comp = l.comp;
        o->at.sub = l.sub;
    }
    if (o->kind == ABSENT && ru->has_default) {
        o->kind = ru->default_null ? NUL : VAL;
        o->str = ru->def;
    }
    if (ru->required && o->kind != VAL)
        return fail_required(r, ru, &l);
    return MG_OK;
}

static void
set_value(struct mg_mapping_value *v, const struct mg__mapping_rule *ru,
          const struct outv *o)
{
    v->target = ru->target;
    v->entity = ru->entity;
    v->column = ru->column;
    v->str = o->str;
    v->null = o->kind == NUL;
    v->at = o->at;
}

static int
eval_group(struct run *r, const struct mg__mapping_rule *ru,
           struct mg_mapping_group *g)
{
    struct item *items;
    struct mg_mapping_item *gi;
    struct outv o;
    size_t n;
    bool ok;
    int rc;

    g->target = ru->column.ptr;
    r->target = ru->target;
    rc = list_items(r, ru, &items, &n);
    if (rc != MG_OK)
        return rc;
    g->item = mg_arena_alloc(r->arena, (n ? n : 1) * sizeof(*g->item));
    if (g->item == NULL)
        return MG_ENOMEM;
    r->group = ru->column.ptr;
    for (size_t i = 0; i < n; i++) {
        rc = cond_all(r, ru->when, ru->nwhen, &items[i], &ok);
        if (rc != MG_OK)
            return rc;
        if (!ok)
            continue;
        gi = &g->item[g->nitem];
        memset(gi, 0, sizeof(*gi));
        gi->field = mg_arena_alloc(r->arena, ru->nsub * sizeof(*gi->field));
        if (gi->field == NULL)
            return MG_ENOMEM;
        r->item_no = g->nitem + 1;
        for (size_t s = 0; s < ru->nsub; s++) {
            rc = eval_rule(r, &ru->sub[s], &items[i], &o);
            if (rc != MG_OK)
                return rc;
            if (o.kind != ABSENT)
                set_value(&gi->field[gi->nfield++], &ru->sub[s], &o);
        }
        if (gi->nfield == 0)
            continue; /* every sub-field absent (e.g. "when"): no item */
        memcpy(gi->segment, items[i].seg->id, 4);
        gi->seq = items[i].seq;
        gi->rep = items[i].rep;
        g->nitem++;
    }
    r->group = NULL;
    return MG_OK;
}

/* ---- unused fields --------------------------------------------------- */

static int
init_used(struct run *r)
{
    const struct mg_hl7v2_msg *msg = r->msg;
    static const int msh_used[] = {1, 2, 3, 4, 9, 10, 11, 12};
    size_t total = 0, from[2], to[2], nvis = 0;
    int n = ranges(r, from, to);

    for (int k = 0; k < n; k++)
        nvis += to[k] - from[k];
    r->used_at = mg_arena_alloc(r->arena, (nvis ? nvis : 1) * sizeof(size_t));
    if (r->used_at == NULL)
        return MG_ENOMEM;
    for (int k = 0; k < n; k++)
        for (size_t i = from[k]; i < to[k]; i++) {
            r->used_at[visible_pos(r, i)] = total;
            total += (size_t)msg->seg[i].nfield + 1;
        }
    r->used = mg_arena_calloc(r->arena, total ? total : 1);
    if (r->used == NULL)
        return MG_ENOMEM;
    for (int k = 0; k < n; k++)
        for (size_t i = from[k]; i < to[k]; i++)
            if (memcmp(msg->seg[i].id, "MSH", 4) == 0)
                for (size_t m = 0; m < MG_ARRAY_LEN(msh_used); m++)
                    mark_used(r, &msg->seg[i], msh_used[m]);
    return MG_OK;
}

static bool
is_unused(const struct run *r, size_t i, int f)
{
    return r->msg->seg[i].field[f].len > 0 &&
           !r->used[r->used_at[visible_pos(r, i)] + (size_t)f];
}

static int
collect_unused(struct run *r, struct mg_mapping_result *out)
{
    const struct mg_hl7v2_msg *msg = r->msg;
    size_t n = 0, from[2], to[2];
    int nr = ranges(r, from, to);

    for (int k = 0; k < nr; k++)
        for (size_t i = from[k]; i < to[k]; i++)
            for (int f = 1; f < msg->seg[i].nfield; f++)
                n += is_unused(r, i, f);
    out->unused = mg_arena_alloc(r->arena, (n ? n : 1) * sizeof(*out->unused));
    if (out->unused == NULL)
        return MG_ENOMEM;
    for (int k = 0; k < nr; k++)
        for (size_t i = from[k]; i < to[k]; i++)
            for (int f = 1; f < msg->seg[i].nfield; f++) {
                if (!is_unused(r, i, f))
                    continue;
                memcpy(out->unused[out->nunused].segment, msg->seg[i].id, 4);
                out->unused[out->nunused].seq = msg->seg[i].seq;
                out->unused[out->nunused].field = f;
                out->nunused++;
            }
    return MG_OK;
}

/* ---- the result ------------------------------------------------------ */

int
mg_mapping_apply(const struct mg_mapping_route *route,
                 const struct mg_hl7v2_msg *msg, struct mg_arena *arena,
                 struct mg_mapping_result *out, struct mg_diag *diag)
{
    return mg_mapping_apply_part(route, msg, NULL, arena, out, diag);
}

int
mg_mapping_apply_part(const struct mg_mapping_route *route,
                      const struct mg_hl7v2_msg *msg,
                      const struct mg_mapping_part *part,
                      struct mg_arena *arena, struct mg_mapping_result *out,
                      struct mg_diag *diag)
{
    struct run r = {msg, part, arena, diag, NULL, NULL, NULL, NULL, 0, false, false,
                    route, NULL, -1};
    const struct mg__mapping_rule *ru;
    struct outv o;
    int rc;

    memset(out, 0, sizeof(*out));
    out->route = route;
    rc = init_used(&r);
    if (rc != MG_OK)
        return rc;
    out->value = mg_arena_alloc(arena, (route->nscalar ? route->nscalar : 1) *
                                           sizeof(*out->value));
    out->group = mg_arena_calloc(arena, (route->ngroup ? route->ngroup : 1) *
                                            sizeof(*out->group));
    r.source_at = mg_arena_alloc(arena, (route->nrule ? route->nrule : 1) *
                                            sizeof(*r.source_at));
    if (out->value == NULL || out->group == NULL || r.source_at == NULL)
        return MG_ENOMEM;
    for (size_t i = 0; i < route->nrule; i++) {
        ru = route->rule[i];
        r.source_at[i] = -1;
        if (ru->group) {
            rc = eval_group(&r, ru, &out->group[out->ngroup++]);
        } else {
            r.last_from = -1;
            rc = eval_rule(&r, ru, NULL, &o);
            if (rc == MG_OK && o.kind != ABSENT)
                set_value(&out->value[out->nvalue++], ru, &o);
            r.source_at[i] = r.last_from;
        }
        if (rc != MG_OK)
            return rc;
    }
    return collect_unused(&r, out);
}

const struct mg_mapping_value *
mg_mapping_result_get(const struct mg_mapping_result *res, const char *target)
{
    for (size_t i = 0; i < res->nvalue; i++)
        if (strcmp(res->value[i].target, target) == 0)
            return &res->value[i];
    return NULL;
}

const struct mg_mapping_group *
mg_mapping_result_group(const struct mg_mapping_result *res,
                        const char *name)
{
    size_t n = strlen(name);

    if (n > 2 && strcmp(name + n - 2, "[]") == 0)
        n -= 2;
    for (size_t i = 0; i < res->ngroup; i++)
        if (mg_str_eq(mg_str_from(res->group[i].target), mg_str_n(name, n)))
            return &res->group[i];
    return NULL;
}

const struct mg_mapping_value *
mg_mapping_item_get(const struct mg_mapping_item *item, const char *name)
{
    for (size_t i = 0; i < item->nfield; i++)
        if (strcmp(item->field[i].target, name) == 0)
            return &item->field[i];
    return NULL;
}
