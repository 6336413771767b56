/* Reading values: paths ("PID-3[2].1"), segments by id and occurrence,
 * repetitions, components, sub-components. Splitting and unescaping happen
 * here, on demand, so a value nobody reads costs nothing. */
#include <string.h>

#include "core/error.h"
#include "hl7v2/hl7v2_int.h"

/* Parses a number >= 1 at s[*i]; false when there is none or it is out of
 * range (paths are written by people, not by senders). */
static bool
path_number(struct mg_str s, size_t *i, int *out)
{
    long v = 0;
    size_t start = *i;

    while (*i < s.len && s.ptr[*i] >= '0' && s.ptr[*i] <= '9') {
        v = v * 10 + (s.ptr[*i] - '0');
        if (v > 100000)
            return false;
        (*i)++;
    }
    if (*i == start || v < 1)
        return false;
    *out = (int)v;
    return true;
}

/* "[n]" at s[*i], if present. */
static bool
path_index(struct mg_str s, size_t *i, int *out)
{
    if (*i >= s.len || s.ptr[*i] != '[')
        return true;
    (*i)++;
    if (!path_number(s, i, out) || *i >= s.len || s.ptr[*i] != ']')
        return false;
    (*i)++;
    return true;
}

int
mg_hl7v2_path_parse(struct mg_str s, struct mg_hl7v2_path *out)
{
    size_t i = 3;

    memset(out, 0, sizeof(*out));
    out->seq = out->rep = out->comp = out->sub = 1;
    if (s.len < 5 || !mg__hl7v2_is_seg_id(s.ptr, 3))
        return MG_EINVAL;
    memcpy(out->seg, s.ptr, 3);
    if (!path_index(s, &i, &out->seq) || i >= s.len || s.ptr[i] != '-')
        return MG_EINVAL;
    i++;
    if (!path_number(s, &i, &out->field) || !path_index(s, &i, &out->rep))
        return MG_EINVAL;
    if (i < s.len && s.ptr[i] == '.') {
        i++;
        if (!path_number(s, &i, &out->comp))
            return MG_EINVAL;
    }
    if (i < s.len && s.ptr[i] == '.') {
        i++;
        if (!path_number(s, &i, &out->sub))
            return MG_EINVAL;
    }
    return i == s.len ? MG_OK : MG_EINVAL;
}

struct mg_str
mg_hl7v2_seg_field(const struct mg_hl7v2_seg *seg, int n)
{
    if (seg == NULL || n < 0 || n >= seg->nfield)
        return mg_str_n("", 0);
    return seg->field[n];
}

/* MSH-1 and MSH-2 (and FHS/BHS) hold the delimiters: never split them. */
/* The explicit null: exactly two double quotes. */
static bool
is_null_value(struct mg_str v)
{
    return v.len == 2 && v.ptr[0] == '"' && v.ptr[1] == '"';
}

static bool
is_verbatim(const struct mg_hl7v2_seg *seg, int field)
{
    return field <= 2 && mg__hl7v2_is_header_id(seg->id);
}

int
mg_hl7v2_rep_get(const struct mg_hl7v2_msg *msg,
                 const struct mg_hl7v2_seg *seg, int field, struct mg_str rep,
                 int comp, int sub, struct mg_hl7v2_val *out)
{
    const struct mg_hl7v2_delims *d = &msg->delims;
    struct mg_str v = rep;
    bool whole = comp == 0 && sub == 0; /* the repetition as text */
    int rc;

    out->str = mg_str_n("", 0);
    out->presence = MG_HL7V2_EMPTY;
    if (!whole && (comp < 1 || sub < 1))
        return MG_EINVAL;
    if (seg != NULL && is_verbatim(seg, field)) {
        if (comp > 1 || sub > 1 || v.len == 0)
            return MG_OK;
    } else {
        /* Read whole, separators a sender padded the text with at its
         * end ("text^^") are no part of it. */
        while (whole && v.len > 0 && (v.ptr[v.len - 1] == d->comp ||
                                      v.ptr[v.len - 1] == d->sub))
            v.len--;
        /* "" nulls everything below it: a field sent as "" deletes the
         * whole field, each of its components included. */
        if (!whole && !is_null_value(v)) {
            v = mg__hl7v2_piece(v, d->comp, comp);
            if (!is_null_value(v))
                v = mg__hl7v2_piece(v, d->sub, sub);
        }
        if (v.len == 0)
            return MG_OK;
        if (is_null_value(v)) {
            out->presence = MG_HL7V2_NULL;
            return MG_OK;
        }
        rc = mg__hl7v2_unescape(v, d, msg->charset, msg->iconv_name,
                                msg->arena, &v);
        if (rc != MG_OK)
            return rc;
    }
    out->str = v;
    out->presence = MG_HL7V2_VALUED;
    return MG_OK;
}

int
mg_hl7v2_seg_get(const struct mg_hl7v2_msg *msg,
                 const struct mg_hl7v2_seg *seg, int field, int rep, int comp,
                 int sub, struct mg_hl7v2_val *out)
{
    struct mg_str v;

    out->str = mg_str_n("", 0);
    out->presence = MG_HL7V2_EMPTY;
    if (field < 1 || rep < 1)
        return MG_EINVAL; /* comp and sub: mg_hl7v2_rep_get() checks them */
    v = mg_hl7v2_seg_field(seg, field);
    if (seg != NULL && is_verbatim(seg, field)) {
        if (rep > 1)
            return MG_OK;
    } else {
        v = mg__hl7v2_piece(v, msg->delims.rep, rep);
    }
    return mg_hl7v2_rep_get(msg, seg, field, v, comp, sub, out);
}

bool
mg_hl7v2_rep_next(const struct mg_hl7v2_msg *msg,
                  const struct mg_hl7v2_seg *seg, int field,
                  struct mg_hl7v2_rep_iter *it, struct mg_str *rep)
{
    const char *q;

    if (!it->started) {
        it->started = true;
        it->rest = mg_hl7v2_seg_field(seg, field);
        it->n = 0;
        it->more = it->rest.len > 0;
        it->whole = seg != NULL && is_verbatim(seg, field);
    }
    if (!it->more)
        return false;
    q = it->whole ? NULL : memchr(it->rest.ptr, msg->delims.rep, it->rest.len);
    if (q == NULL) {
        *rep = it->rest;
        it->more = false;
    } else {
        *rep = mg_str_n(it->rest.ptr, (size_t)(q - it->rest.ptr));
        it->rest = mg_str_n(q + 1, it->rest.len - (size_t)(q - it->rest.ptr) - 1);
    }
    it->n++;
    return true;
}

int
mg_hl7v2_get_path(const struct mg_hl7v2_msg *msg,
                  const struct mg_hl7v2_path *path, struct mg_hl7v2_val *out)
{
    const struct mg_hl7v2_seg *seg = mg_hl7v2_seg_find(msg, path->seg,
                                                       path->seq);

    if (seg == NULL) {
        out->str = mg_str_n("", 0);
        out->presence = MG_HL7V2_EMPTY;
        return path->field < 1 ? MG_EINVAL : MG_OK;
    }
    return mg_hl7v2_seg_get(msg, seg, path->field, path->rep, path->comp,
                            path->sub, out);
}

int
mg_hl7v2_get(const struct mg_hl7v2_msg *msg, const char *path,
             struct mg_hl7v2_val *out)
{
    struct mg_hl7v2_path p;

    if (mg_hl7v2_path_parse(mg_str_from(path), &p) != MG_OK) {
        out->str = mg_str_n("", 0);
        out->presence = MG_HL7V2_EMPTY;
        return MG_EINVAL;
    }
    return mg_hl7v2_get_path(msg, &p, out);
}

struct mg_str
mg_hl7v2_getz(const struct mg_hl7v2_msg *msg, const char *path)
{
    struct mg_hl7v2_val v;

    if (mg_hl7v2_get(msg, path, &v) != MG_OK)
        return mg_str_n("", 0);
    return v.str;
}

size_t
mg_hl7v2_seg_count(const struct mg_hl7v2_msg *msg, const char *id)
{
    size_t n = 0;

    for (size_t i = 0; i < msg->nseg; i++)
        n += strcmp(msg->seg[i].id, id) == 0;
    return n;
}

const struct mg_hl7v2_seg *
mg_hl7v2_seg_find(const struct mg_hl7v2_msg *msg, const char *id, int seq)
{
    for (size_t i = 0; i < msg->nseg && seq > 0; i++)
        if (strcmp(msg->seg[i].id, id) == 0 && --seq == 0)
            return &msg->seg[i];
    return NULL;
}

int
mg_hl7v2_rep_count(const struct mg_hl7v2_msg *msg,
                   const struct mg_hl7v2_seg *seg, int field)
{
    struct mg_str v = mg_hl7v2_seg_field(seg, field);

    if (seg != NULL && is_verbatim(seg, field))
        return v.len > 0;
    return mg__hl7v2_piece_count(v, msg->delims.rep);
}

int
mg_hl7v2_comp_count(const struct mg_hl7v2_msg *msg,
                    const struct mg_hl7v2_seg *seg, int field, int rep)
{
    struct mg_str v = mg_hl7v2_seg_field(seg, field);

    if (seg != NULL && is_verbatim(seg, field))
        return rep == 1 && v.len > 0;
    v = mg__hl7v2_piece(v, msg->delims.rep, rep);
    return mg__hl7v2_piece_count(v, msg->delims.comp);
}

