/* Mapping paths: the HL7 v2 path syntax of hl7v2.h ("PID-3[2].1") with
 * two additions mapping files need: a repetition chosen by a component's
 * value ("PID-3[CX.5=MR].1") or all repetitions ("OBX-5[*]"), and paths
 * relative to the item of an "each" rule ("-5" in a segment, ".4.1" in a
 * repetition). Parsed once at load time into struct mg__mapping_path. */
#include <string.h>

#include "core/error.h"
#include "mapping/mapping_int.h"

static bool
is_seg_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* A number >= 1 at *p; advances *p. */
static bool
parse_number(const char **p, int *out)
{
    long v = 0;
    const char *s = *p;

    while (**p >= '0' && **p <= '9') {
        v = v * 10 + (**p - '0');
        if (v > 100000)
            return false;
        (*p)++;
    }
    if (*p == s || v < 1)
        return false;
    *out = (int)v;
    return true;
}

/* A data type name as in [CX.5=MR]: a capital letter, then capitals or
 * digits. */
static bool
is_type_name(const char *s, const char *end)
{
    if (s == end || *s < 'A' || *s > 'Z')
        return false;
    for (; s < end; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
            return false;
    return true;
}

/* The inside of "[...]" after a field: n, "*", or [TYPE.]comp=value. */
static int
parse_rep_sel(const char **p, struct mg_arena *arena,
              struct mg__mapping_path *out, const char **why)
{
    const char *s = *p, *close = strchr(s, ']'), *eq, *dot;

    if (close == NULL) {
        *why = "missing ']'";
        return MG_EINVAL;
    }
    *p = close + 1;
    if (close - s == 1 && *s == '*') {
        out->rsel = MG__REP_ALL;
        return MG_OK;
    }
    eq = memchr(s, '=', (size_t)(close - s));
    if (eq == NULL) {
        out->rsel = MG__REP_INDEX;
        if (!parse_number(&s, &out->rep) || s != close) {
            *why = "a repetition is [n], [*] or [TYPE.n=value]";
            return MG_EINVAL;
        }
        return MG_OK;
    }
    /* "CX.5=MR" or "5=MR": the data type name is documentation only, but
     * it must be a name -- "4.1=X" is not component 4.1 read as 1. */
    dot = memchr(s, '.', (size_t)(eq - s));
    if (dot != NULL) {
        if (!is_type_name(s, dot)) {
            *why = "a condition is [TYPE.n=value] with TYPE a data type "
                   "name and n a component number (sub-components cannot "
                   "be matched)";
            return MG_EINVAL;
        }
        s = dot + 1;
    }
    out->rsel = MG__REP_MATCH;
    if (!parse_number(&s, &out->match_comp) || s != eq || eq + 1 == close) {
        *why = "a condition is [TYPE.n=value] with n a component number";
        return MG_EINVAL;
    }
    out->match_value.len = (size_t)(close - eq - 1);
    out->match_value.ptr = mg_arena_strndup(arena, eq + 1,
                                            out->match_value.len);
    if (out->match_value.ptr == NULL)
        return MG_ENOMEM;
    return MG_OK;
}

/* "F[sel].C.S" after the '-'. */
static int
parse_field_part(const char **p, struct mg_arena *arena,
                 struct mg__mapping_path *out, const char **why)
{
    int rc;

    if (!parse_number(p, &out->field)) {
        *why = "expected a field number after '-'";
        return MG_EINVAL;
    }
    if (**p == '[') {
        (*p)++;
        rc = parse_rep_sel(p, arena, out, why);
        if (rc != MG_OK)
            return rc;
    }
    return MG_OK;
}

/* ".C" or ".C.S" */
static int
parse_comp_part(const char **p, struct mg__mapping_path *out,
                const char **why)
{
    if (**p != '.')
        return MG_OK;
    (*p)++;
    if (!parse_number(p, &out->comp)) {
        *why = "expected a component number after '.'";
        return MG_EINVAL;
    }
    out->has_comp = true;
    if (**p != '.')
        return MG_OK;
    (*p)++;
    if (!parse_number(p, &out->sub)) {
        *why = "expected a sub-component number after '.'";
        return MG_EINVAL;
    }
    out->has_sub = true;
    return MG_OK;
}

static int
parse_abs(const char **p, struct mg_arena *arena,
          struct mg__mapping_path *out, const char **why)
{
    const char *s = *p;

    if (!is_seg_char(s[0]) || !is_seg_char(s[1]) || !is_seg_char(s[2])) {
        *why = "a path starts with a segment id (\"PID-3\"), '-' or '.'";
        return MG_EINVAL;
    }
    memcpy(out->seg, s, 3);
    out->seg[3] = '\0';
    *p = s + 3;
    if (**p == '[') {
        (*p)++;
        if (!parse_number(p, &out->seq) || **p != ']') {
            *why = "a segment occurrence is [n]";
            return MG_EINVAL;
        }
        (*p)++;
    }
    if (**p != '-') {
        *why = "expected '-' and a field number after the segment id";
        return MG_EINVAL;
    }
    (*p)++;
    return parse_field_part(p, arena, out, why);
}

int
mg__mapping_path_parse(const char *text, enum mg__mapping_path_kind rel,
                       struct mg_arena *arena, struct mg__mapping_path *out,
                       const char **why)
{
    const char *p = text;
    int rc;

    memset(out, 0, sizeof(*out));
    out->seq = out->rep = out->comp = out->sub = 1;
    out->rsel = MG__REP_INDEX;
    out->text = text;
    if (*p == '-') {
        if (rel != MG__PATH_REL_SEG) {
            *why = rel == MG__PATH_REL_REP
                       ? "inside each over a field use \".c\" paths"
                       : "a relative path needs an \"each\" segment";
            return MG_EINVAL;
        }
        out->kind = MG__PATH_REL_SEG;
        p++;
        rc = parse_field_part(&p, arena, out, why);
    } else if (*p == '.') {
        if (rel != MG__PATH_REL_REP) {
            *why = rel == MG__PATH_REL_SEG
                       ? "inside each over a segment use \"-f\" paths"
                       : "a relative path needs an \"each\" field";
            return MG_EINVAL;
        }
        out->kind = MG__PATH_REL_REP;
        out->rsel = MG__REP_ITEM;
        rc = MG_OK;
    } else {
        out->kind = MG__PATH_ABS;
        rc = parse_abs(&p, arena, out, why);
    }
    if (rc != MG_OK)
        return rc;
    rc = parse_comp_part(&p, out, why);
    if (rc != MG_OK)
        return rc;
    if (out->kind == MG__PATH_REL_REP && p == text) {
        *why = "expected \".c\"";
        return MG_EINVAL;
    }
    if (*p != '\0') {
        *why = "unexpected text after the path";
        return MG_EINVAL;
    }
    return MG_OK;
}
