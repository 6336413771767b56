/* String transforms a rule may apply to a value: HL7 dates and times to
 * ISO 8601, trimming and case, and the two small vocabularies every site
 * needs (administrative sex, table 0001; priority, table 0027). A value the
 * transform cannot read is refused (HL7 0357 code 102), never guessed at:
 * a site that wants leniency maps the codes with a table instead. */
#include <string.h>

#include "core/error.h"
#include "mapping/mapping_int.h"

static const struct {
    const char *name;
    enum mg__mapping_xf xf;
} xf_names[] = {
    {"trim", MG__XF_TRIM},
    {"upper", MG__XF_UPPER},
    {"lower", MG__XF_LOWER},
    {"hl7_ts", MG__XF_HL7_TS},
    {"hl7_date", MG__XF_HL7_DATE},
    {"sex", MG__XF_SEX},
    {"priority", MG__XF_PRIORITY},
    {"person_name", MG__XF_PERSON_NAME},
    {"concat", MG__XF_CONCAT},
};

bool
mg__mapping_xf_lookup(const char *name, enum mg__mapping_xf *out)
{
    for (size_t i = 0; i < MG_ARRAY_LEN(xf_names); i++)
        if (strcmp(xf_names[i].name, name) == 0) {
            *out = xf_names[i].xf;
            return true;
        }
    return false;
}

/* ---- HL7 DTM -> ISO 8601 --------------------------------------------- */

/* The parts of a DTM: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]. */
struct dtm {
    const char *p;   /* the digits */
    size_t ndigit;   /* 4, 6, 8, 10, 12 or 14 */
    const char *frac; /* fraction digits after '.', or NULL */
    size_t nfrac;
    const char *zone; /* "+HHMM" / "-HHMM", or NULL */
};

static int
num2(const char *p)
{
    return (p[0] - '0') * 10 + (p[1] - '0');
}

static bool
is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static bool
dtm_ranges_ok(const struct dtm *t)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y = num2(t->p) * 100 + num2(t->p + 2), m, d;

    if (y == 0) /* no year 0 in ISO 8601's common era, nor in PostgreSQL */
        return false;
    if (t->ndigit >= 6) {
        m = num2(t->p + 4);
        if (m < 1 || m > 12)
            return false;
        if (t->ndigit >= 8) {
            d = num2(t->p + 6);
            if (d < 1 || d > mdays[m - 1] || (m == 2 && d == 29 && !is_leap(y)))
                return false;
        }
    }
    if (t->ndigit >= 10 && num2(t->p + 8) > 23)
        return false;
    if (t->ndigit >= 12 && num2(t->p + 10) > 59)
        return false;
    if (t->ndigit >= 14 && num2(t->p + 12) > 60) /* 60: leap second */
        return false;
    if (t->zone && (num2(t->zone + 1) > 14 || num2(t->zone + 3) > 59))
        return false;
    return true;
}

static size_t
count_digits(const char *p, size_t n)
{
    size_t i = 0;

    while (i < n && p[i] >= '0' && p[i] <= '9')
        i++;
    return i;
}

static bool
dtm_parse(struct mg_str s, struct dtm *t)
{
    size_t i, n;

    memset(t, 0, sizeof(*t));
    s = mg_str_trim(s);
    t->p = s.ptr;
    t->ndigit = i = count_digits(s.ptr, s.len);
    if (i < 4 || i > 14 || i % 2 != 0)
        return false;
    if (i < s.len && s.ptr[i] == '.') {
        if (t->ndigit != 14)
            return false;
        n = count_digits(s.ptr + i + 1, s.len - i - 1);
        if (n < 1 || n > 4)
            return false;
        t->frac = s.ptr + i + 1;
        t->nfrac = n;
        i += 1 + n;
    }
    if (i < s.len && (s.ptr[i] == '+' || s.ptr[i] == '-')) {
        if (s.len - i != 5 || count_digits(s.ptr + i + 1, 4) != 4)
            return false;
        t->zone = s.ptr + i;
        i += 5;
    }
    return i == s.len && dtm_ranges_ok(t);
}

/* Writes the ISO form of t into buf (at least 40 bytes); the length. */
static size_t
dtm_iso(const struct dtm *t, bool date_only, char *buf)
{
    static const char sep[] = {'-', '-', 'T', ':', ':'};
    size_t n = 0, parts = t->ndigit / 2 - 1; /* 1 .. 6 */

    if (date_only && parts > 3)
        parts = 3;
    memcpy(buf, t->p, 4);
    n = 4;
    for (size_t k = 1; k < parts; k++) {
        buf[n++] = sep[k - 1];
        memcpy(buf + n, t->p + 2 + 2 * k, 2);
        n += 2;
    }
    if (parts == 4) { /* hour only: ISO readers want the minutes */
        memcpy(buf + n, ":00", 3);
        n += 3;
    }
    if (date_only || parts < 4)
        return n; /* a zone on a date has no ISO form: dropped */
    if (t->frac) {
        buf[n++] = '.';
        memcpy(buf + n, t->frac, t->nfrac);
        n += t->nfrac;
    }
    if (t->zone) {
        buf[n++] = t->zone[0];
        memcpy(buf + n, t->zone + 1, 2);
        buf[n + 2] = ':';
        memcpy(buf + n + 3, t->zone + 3, 2);
        n += 5;
    }
    return n;
}

static int
xf_time(struct mg_str in, bool date_only, struct mg_arena *arena,
        struct mg_str *out)
{
    struct dtm t;
    char buf[48], *p;
    size_t n;

    if (!dtm_parse(in, &t))
        return MG_EMAPPING;
    if (date_only && t.ndigit < 8) {
        /* A valid DTM of the year or month only (a birth date known no
         * better): no date, so no value -- not a refused message. */
        *out = mg_str_n("", 0);
        return MG_OK;
    }
    n = dtm_iso(&t, date_only, buf);
    p = mg_arena_strndup(arena, buf, n);
    if (p == NULL)
        return MG_ENOMEM;
    *out = mg_str_n(p, n);
    return MG_OK;
}

/* ---- case ------------------------------------------------------------ */

static int
xf_case(struct mg_str in, bool up, struct mg_arena *arena, struct mg_str *out)
{
    char *p = mg_arena_strndup(arena, in.ptr, in.len);

    if (p == NULL)
        return MG_ENOMEM;
    for (size_t i = 0; i < in.len; i++) {
        if (up && p[i] >= 'a' && p[i] <= 'z')
            p[i] = (char)(p[i] - 'a' + 'A');
        else if (!up && p[i] >= 'A' && p[i] <= 'Z')
            p[i] = (char)(p[i] - 'A' + 'a');
    }
    *out = mg_str_n(p, in.len);
    return MG_OK;
}

/* ---- vocabularies ---------------------------------------------------- */

struct code {
    const char *from, *to;
};

/* Table 0001 to the patients.gender CHECK values. */
static const struct code sex_codes[] = {
    {"F", "female"},  {"M", "male"},        {"O", "other"},
    {"A", "other"},   {"N", "other"},       {"U", "unknown"},
    {"female", "female"}, {"male", "male"}, {"other", "other"},
    {"unknown", "unknown"},
};

/* Table 0027 to the scans.priority CHECK values. */
static const struct code priority_codes[] = {
    {"S", "stat"},      {"A", "asap"},       {"R", "routine"},
    {"P", "routine"},   {"C", "routine"},    {"T", "urgent"},
    {"PRN", "routine"}, /* as needed: table 0027 (v2.5.1), and 0485 (TQ1-9) */
    {"stat", "stat"},   {"asap", "asap"},    {"routine", "routine"},
    {"urgent", "urgent"},
};

static int
xf_code(const struct code *codes, size_t n, struct mg_str in,
        struct mg_str *out)
{
    in = mg_str_trim(in);
    for (size_t i = 0; i < n; i++)
        if (mg_str_ieq(in, mg_str_from(codes[i].from))) {
            *out = mg_str_from(codes[i].to);
            return MG_OK;
        }
    return MG_EMAPPING;
}

int
mg__mapping_xf_apply(enum mg__mapping_xf xf, struct mg_str in,
                     struct mg_arena *arena, struct mg_str *out)
{
    switch (xf) {
    case MG__XF_TRIM:
        *out = mg_str_trim(in);
        return MG_OK;
    case MG__XF_UPPER:
        return xf_case(in, true, arena, out);
    case MG__XF_LOWER:
        return xf_case(in, false, arena, out);
    case MG__XF_HL7_TS:
        return xf_time(in, false, arena, out);
    case MG__XF_HL7_DATE:
        return xf_time(in, true, arena, out);
    case MG__XF_SEX:
        return xf_code(sex_codes, MG_ARRAY_LEN(sex_codes), in, out);
    case MG__XF_PRIORITY:
        return xf_code(priority_codes, MG_ARRAY_LEN(priority_codes), in, out);
    case MG__XF_PERSON_NAME:
    case MG__XF_CONCAT:
        break;
    }
    return MG_EINVAL;
}

int
mg_mapping_transform(const char *name, struct mg_str in,
                     struct mg_arena *arena, struct mg_str *out)
{
    enum mg__mapping_xf xf;

    if (!mg__mapping_xf_lookup(name, &xf) || xf == MG__XF_PERSON_NAME ||
        xf == MG__XF_CONCAT)
        return MG_EINVAL;
    return mg__mapping_xf_apply(xf, in, arena, out);
}
