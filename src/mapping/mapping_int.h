/* Internals shared by the mapping engine's files; not for other modules.
 * The loader (load.c) compiles JSON into these structures, all allocated
 * from the set's arena; the evaluator (apply.c) only reads them. */
#ifndef MG_MAPPING_MAPPING_INT_H
#define MG_MAPPING_MAPPING_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mapping/mapping.h"

/* ---- HL7 v2 paths (path.c) ------------------------------------------- */

enum mg__mapping_path_kind {
    MG__PATH_ABS,     /* "PID-3[CX.5=MR].1": from the message */
    MG__PATH_REL_SEG, /* "-5.1": in the segment of an each "OBX" item */
    MG__PATH_REL_REP, /* ".4.1": in the repetition of an each "PID-3" item */
};

enum mg__mapping_rep_sel {
    MG__REP_INDEX, /* [n], 1 when not written */
    MG__REP_ALL,   /* [*]: every valued repetition, joined by "\n" */
    MG__REP_MATCH, /* [TYPE.c=value]: first repetition whose comp c = value */
    MG__REP_ITEM,  /* the repetition of the each item (relative ".c") */
};

struct mg__mapping_path {
    enum mg__mapping_path_kind kind;
    char seg[4];                    /* ABS only */
    int seq;                        /* ABS only: occurrence, 1-based */
    int field;                      /* 0 for REL_REP */
    enum mg__mapping_rep_sel rsel;
    int rep;                        /* MG__REP_INDEX */
    int match_comp;                 /* MG__REP_MATCH */
    struct mg_str match_value;      /* MG__REP_MATCH */
    int comp, sub;                  /* 1 when not written */
    bool has_comp, has_sub;         /* the component, sub-component
                                       was written */
    const char *text;               /* as written, NUL-terminated */
};

/* Parses a path; rel says which relative form is allowed here (ABS is
 * always allowed). MG_OK, or MG_EINVAL with a static reason in *why. */
int mg__mapping_path_parse(const char *text, enum mg__mapping_path_kind rel,
                           struct mg_arena *arena,
                           struct mg__mapping_path *out, const char **why);

/* ---- Rules ----------------------------------------------------------- */

enum mg__mapping_xf {
    MG__XF_TRIM,
    MG__XF_UPPER,
    MG__XF_LOWER,
    MG__XF_HL7_TS,
    MG__XF_HL7_DATE,
    MG__XF_SEX,
    MG__XF_PRIORITY,
    MG__XF_PERSON_NAME, /* reads the message: family + given */
    MG__XF_CONCAT,      /* changes how "from" is read */
};

/* The transform called name; false when there is none. */
bool mg__mapping_xf_lookup(const char *name, enum mg__mapping_xf *out);

/* A string transform (not PERSON_NAME or CONCAT). MG_OK, MG_EMAPPING (value
 * does not fit), MG_ENOMEM. */
int mg__mapping_xf_apply(enum mg__mapping_xf xf, struct mg_str in,
                         struct mg_arena *arena, struct mg_str *out);

enum mg__mapping_cond_op {
    MG__COND_IN,
    MG__COND_NOT_IN,
    MG__COND_CONTAINS,     /* any needle, ASCII case-insensitive */
    MG__COND_NOT_CONTAINS,
    MG__COND_EXISTS,       /* valued == want */
    MG__COND_ANY,          /* any of sub holds */
};

struct mg__mapping_cond {
    enum mg__mapping_cond_op op;
    struct mg__mapping_path path; /* not for ANY */
    struct mg_str *val;           /* IN, NOT_IN, CONTAINS, NOT_CONTAINS */
    size_t nval;
    bool want;                    /* EXISTS */
    struct mg__mapping_cond *sub; /* ANY */
    size_t nsub;
};

struct mg__mapping_table {
    const char *name;  /* file name without ".json", or "(inline)" */
    bool strict;       /* a value not in the table is error 103 */
    bool has_default;  /* else a value not in the table passes unchanged */
    bool default_null;
    struct mg_str def;
    struct mg_str *key;
    struct mg_str *val;
    bool *val_null;
    size_t n;
};

enum mg__mapping_each {
    MG__EACH_NONE,
    MG__EACH_SEG, /* every occurrence of a segment */
    MG__EACH_REP, /* every repetition of one field */
};

struct mg__mapping_rule {
    const char *target;          /* as written, "[]" kept for groups */
    struct mg_str entity, column;
    const char *note;
    bool group;                  /* target ends in "[]" */
    struct mg__mapping_path *from;
    size_t nfrom;
    bool concat;
    struct mg_str separator;     /* concat; default " " */
    bool skip_contained;         /* concat: leave out a part an earlier
                                  * part already holds as whole words (an
                                  * SAD's street name and number that
                                  * repeat its street address) */
    bool has_const, const_null;
    struct mg_str constval;
    const struct mg__mapping_table *table;
    bool has_default, default_null;
    struct mg_str def;
    bool required;
    enum mg__mapping_xf *xf;     /* in order; CONCAT not included */
    size_t nxf;
    struct mg__mapping_cond *when; /* all must hold */
    size_t nwhen;
    enum mg__mapping_each each;
    struct mg__mapping_path each_path; /* seg (+ seq, field for REP) */
    bool has_join;
    struct mg_str join;
    bool keep_empty; /* join: a selected item without a value joins as an
                      * empty part between valued ones (a report's blank
                      * lines) */
    bool whole;      /* "from" reads each repetition whole, as text: a '^'
                      * or '&' in it is a character (TX, FT, ST) */
    struct mg__mapping_rule *sub; /* group fields */
    size_t nsub;
    /* "same_source": the target of an earlier rule of the route whose
     * "from" list is parallel to this one: this rule reads only the
     * position that rule took its value from (a code, its coding system
     * and its text from the same field), NULL for none. */
    const char *same_source;
};

/* A list of match values; set is false when the key was absent (inherit
 * from the route extended, else any). "*" alone makes the list empty. */
struct mg__mapping_strlist {
    const char **v;
    size_t n;
    bool set;
};

struct mg_mapping_route {
    const char *name;
    const char *file;    /* path as loaded */
    const char *note;
    const char *adapter;
    const char *extends; /* NULL when none */
    struct mg__mapping_strlist types, apps, facs, listeners;
    /* "split": the segments that start a part (["ORC", "OBR"]); n 0: the
     * message is mapped whole. */
    struct mg__mapping_strlist split;
    /* The rules in effect (inherited and own), in order. */
    const struct mg__mapping_rule **rule;
    size_t nrule;
    size_t nscalar, ngroup;
    int weight;          /* 4 listener + 2 facility + 1 application */
    int depth;           /* length of the extends chain */
    size_t order;        /* load order */
    /* loader state */
    struct mg__mapping_rule *own;  /* rules this file names */
    size_t nown;
    const char **removed;          /* targets set to null: drop inherited */
    size_t nremoved;
    int state;                     /* 0 new, 1 resolving, 2 resolved */
    const char *text;              /* file text while loading, else NULL */
};

struct mg_mapping_set {
    struct mg_arena arena;         /* everything below lives here */
    struct mg_mapping_route **route;
    size_t nroute;
    struct mg__mapping_table **table;
    size_t ntable;
    uint64_t stamp;
    unsigned refs; /* the loader's, plus one per mg_mapping_set_ref() */
};


#endif
