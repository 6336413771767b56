/* Mapping engine: declarative mapping files (mappings/<name>.json) that say how
 * an inbound HL7 v2 message becomes internal records, loaded as one set,
 * and the evaluator that applies a route to a parsed message. Also a small
 * FHIRPath evaluator over jansson JSON for the FHIR mappings.
 * docs/mapping-guide.md describes the file grammar for integration
 * engineers; this header is the contract for the code that uses it.
 *
 * Model. A mapping set is every route file of one folder plus its code
 * tables (folder/tables/<name>.json), compiled once and then read-only: any
 * number of threads may find routes and apply them concurrently. A route
 * says which messages it takes (match), which adapter consumes its result,
 * and one rule per target ("patient.last_name", "patient_identifiers[]").
 * Applying a route to a message gives a struct mg_mapping_result: the
 * targets that got a value or an explicit null, in rule order, the
 * repeated groups, and the message fields no rule read (for the dry run).
 * Nothing of the result is allocated outside the caller's arena.
 *
 * No I/O except in mg_mapping_set_load(), mg_mapping_dir_stamp() and
 * mg_mapping_dry_run_print(); no libuv, no database. */
#ifndef MG_MAPPING_MAPPING_H
#define MG_MAPPING_MAPPING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/arena.h"
#include "core/compiler.h"
#include "core/diag.h"
#include "core/str.h"
#include "hl7v2/hl7v2.h"

struct json_t; /* jansson's json_t */

struct mg_mapping_set;
struct mg_mapping_route;

/* The longest target name ("patient.last_name", "scan_files[]") the
 * loader takes, in bytes: names are keys of the adapters' input. */
#define MG_MAPPING_TARGET_MAX 63

/* ---- Loading a set -------------------------------------------------- */

/* Loads every "*.json" route file of dir (sorted by name) and every code
 * table in dir/tables/<name>.json, checks them, resolves "extends", and
 * compiles the set. All or nothing: when any file has a problem the whole
 * set is refused, and every problem found is written to err (may be NULL)
 * as one line "FILE:LINE: KEY/PATH: problem", the key path naming the
 * JSON keys from the top of the file, e.g.
 *   mappings/orders.json:12: fields/scan.modality/table: unknown table "x"
 * Returns MG_OK with *out (the caller owns it: mg_mapping_set_free());
 * MG_ECONF (a file is wrong, or dir cannot be read; reported to err);
 * MG_ENOMEM. *out is untouched on error, so a caller reloading on SIGHUP
 * keeps its old set. Blocking file I/O: call at start-up or off the loop. */
MG_MUST_CHECK int mg_mapping_set_load(const char *dir,
                                      struct mg_mapping_set **out,
                                      FILE *err);

/* Says whether the adapter called name (a route's "adapter") can consume
 * the route's result: NULL when it can, else a static text saying why not,
 * e.g. "no adapter is called". Called during the load, on its thread. */
typedef const char *(*mg_mapping_adapter_check_cb)(const char *name);

/* mg_mapping_set_load(), also asking check about every "adapter" a route
 * file names; a refusal is a problem like the others, reported as
 *   mappings/orders.json:4: adapter: no adapter is called "hl7v2.ordr"
 * A route that inherits its adapter through "extends" is checked in the
 * file that names it. check NULL accepts any name: the adapters are built
 * on this module, so it cannot know them itself (adapters/adapter.h
 * passes its registry). Same returns and ownership as mg_mapping_set_load(). */
MG_MUST_CHECK int mg_mapping_set_load_checked(const char *dir,
                                              mg_mapping_adapter_check_cb check,
                                              struct mg_mapping_set **out,
                                              FILE *err);

/* Takes one more reference to set (NULL is fine) and returns it: whoever
 * still needs a set that a reload replaced (a message mapped with it and
 * not yet committed) keeps it alive until its mg_mapping_set_free(). Not
 * thread-safe: take and drop references on one thread (the loop's). */
struct mg_mapping_set *mg_mapping_set_ref(struct mg_mapping_set *set);

/* Drops a reference; the last one frees the set and everything it owns.
 * Results made from it must not be used afterwards (their target names
 * belong to the set). NULL is fine. */
void mg_mapping_set_free(struct mg_mapping_set *set);

/* A cheap fingerprint of the folder's files (names, inodes, sizes,
 * modification and change times of dir/<name>.json and
 * dir/tables/<name>.json), taken when the set was
 * loaded, before the files were read. */
uint64_t mg_mapping_set_stamp(const struct mg_mapping_set *set);

/* The fingerprint of dir now, as mg_mapping_set_stamp() took it: MG_OK,
 * or MG_ECONF when dir cannot be read. A few stat() calls: cheap enough
 * for a once-a-second timer. A change is a file changed, added or gone. */
MG_MUST_CHECK int mg_mapping_dir_stamp(const char *dir, uint64_t *out);


/* Routes in load order (file name order); i < count. */
size_t mg_mapping_set_count(const struct mg_mapping_set *set);
const struct mg_mapping_route *
mg_mapping_set_route(const struct mg_mapping_set *set, size_t i);
/* The route called name, or NULL. */
const struct mg_mapping_route *
mg_mapping_route_by_name(const struct mg_mapping_set *set, const char *name);

/* Properties of a route, owned by the set. note may be NULL. */
const char *mg_mapping_route_name(const struct mg_mapping_route *route);
const char *mg_mapping_route_adapter(const struct mg_mapping_route *route);
const char *mg_mapping_route_file(const struct mg_mapping_route *route);
const char *mg_mapping_route_note(const struct mg_mapping_route *route);
/* The i-th listener name of the route's match, NULL past the last. */
const char *mg_mapping_route_listener(const struct mg_mapping_route *route,
                                      size_t i);

/* ---- Choosing a route ----------------------------------------------- */

/* Finds the route for a message from its header (MSH-9.1/9.2 against
 * match.message_type, MSH-3.1 against match.sending_application, MSH-4.1
 * against match.sending_facility) and the name of the listener it came in
 * on (match.listener; NULL means "not from a listener", which matches only
 * routes that name no listener). Among the routes that match, the most
 * specific wins: a named listener weighs 4, a named facility 2, a named
 * application 1, and on equal weight an exact "TYPE^TRIGGER" beats
 * "TYPE^*" beats any type; then a route that extends another beats the
 * one it extends; then the first file name wins.
 * MG_OK with *out (owned by the set) or MG_ENOTFOUND. No allocation. */
MG_MUST_CHECK int mg_mapping_route_find(const struct mg_mapping_set *set,
                                        const struct mg_hl7v2_header *hdr,
                                        const char *listener,
                                        const struct mg_mapping_route **out);

/* ---- Applying a route ----------------------------------------------- */

/* Where in the message a value was read: SEG[seq]-field[rep].comp.sub;
 * seq 0 when it was not read from the message (a constant or a default). */
struct mg_mapping_where {
    char segment[4];
    int seq, field, rep, comp, sub;
};

/* One target and what the message says about it. */
struct mg_mapping_value {
    const char *target;   /* "patient.last_name" or a group field "value";
                             owned by the set */
    struct mg_str entity; /* target up to the first '.': "patient"; empty
                             for a group field */
    struct mg_str column; /* the rest: "last_name" */
    struct mg_str str;    /* UTF-8, unescaped; "" when null. Points into
                             the message or the arena */
    bool null;            /* explicit HL7 null (""): clear the column;
                             distinct from a target that is absent */
    struct mg_mapping_where at; /* for errors that name the field */
};

/* One item of a repeated group: one repetition (each "PID-3") or one
 * segment (each "OBX"). */
struct mg_mapping_item {
    struct mg_mapping_value *field; /* the sub-fields present, rule order */
    size_t nfield;
    char segment[4];                /* where the item is: "PID" */
    int seq;                        /* occurrence of the segment, 1-based */
    int rep;                        /* repetition, 1-based; 0 for each SEG */
};

struct mg_mapping_group {
    const char *target;           /* "patient_identifiers" (no "[]") */
    struct mg_mapping_item *item; /* in message order */
    size_t nitem;
};

/* A message field no rule read: SEG[seq]-field. */
struct mg_mapping_loc {
    char segment[4];
    int seq;
    int field;
};

struct mg_mapping_result {
    const struct mg_mapping_route *route;
    struct mg_mapping_value *value; /* scalar targets with a value or an
                                       explicit null, in rule order */
    size_t nvalue;
    struct mg_mapping_group *group; /* one per group rule, even when empty */
    size_t ngroup;
    struct mg_mapping_loc *unused;  /* non-empty fields nobody read, in
                                       message order (MSH-1..4 and 9..12,
                                       which routing and ACKs use, count
                                       as read) */
    size_t nunused;
};

/* The part of a message one mapping result is made of: segments
 * [0, head_end) -- MSH and everything before the first segment that starts
 * a part (PID, PV1, ...) -- and segments [begin, end) of the part. Rules
 * see only these: "OBR-3" is the part's OBR, "each OBX" its OBX. A part
 * with head_end == nseg is the whole message. Locations stay those of the
 * whole message (the second OBR is OBR[2] in its part too). */
struct mg_mapping_part {
    size_t head_end, begin, end;
};

/* The parts route cuts msg into (the route's "split", e.g. ["ORC", "OBR"]:
 * a part starts at each ORC, and at each OBR not in the part an ORC just
 * started; a segment starts a new part when the current one already holds
 * it or a segment listed after it). A route without "split", or a message
 * without such a segment, makes one part: the whole message. *parts in
 * arena, *n >= 1. MG_OK; MG_EMAPPING with *diag (may be NULL) when a PID
 * of another patient (another PID-3 than the head's) comes after the first
 * part (one message, one patient: code 100 at that PID); MG_ENOMEM. */
MG_MUST_CHECK int mg_mapping_split(const struct mg_mapping_route *route,
                                   const struct mg_hl7v2_msg *msg,
                                   struct mg_arena *arena,
                                   struct mg_mapping_part **parts, size_t *n,
                                   struct mg_diag *diag);

/* mg_mapping_apply() on one part of msg (NULL: the whole message). */
MG_MUST_CHECK int mg_mapping_apply_part(const struct mg_mapping_route *route,
                                        const struct mg_hl7v2_msg *msg,
                                        const struct mg_mapping_part *part,
                                        struct mg_arena *arena,
                                        struct mg_mapping_result *out,
                                        struct mg_diag *diag);

/* Applies route to msg. Everything *out points to is allocated from arena
 * or points into msg (which must outlive it) and the set.
 * Returns MG_OK; MG_EMAPPING with *diag (may be NULL) naming the HL7
 * location (segment, seq, field, rep, comp, sub), the target in diag->path
 * and a code: 101 a required target is missing (location: the first path
 * tried), 102 a transform refused the value (e.g. not an HL7 date), 103 a
 * strict table has no entry for it; the text names the rule, never the
 * value (no PHI). MG_ENOMEM when the arena is exhausted. *out is valid
 * only on MG_OK. Reentrant: a route may be applied from several threads. */
MG_MUST_CHECK int mg_mapping_apply(const struct mg_mapping_route *route,
                                   const struct mg_hl7v2_msg *msg,
                                   struct mg_arena *arena,
                                   struct mg_mapping_result *out,
                                   struct mg_diag *diag);

/* The scalar value of target ("patient.last_name"), or NULL when the
 * result does not hold it (absent). */
const struct mg_mapping_value *
mg_mapping_result_get(const struct mg_mapping_result *res, const char *target);

/* The group called name ("patient_identifiers", "[]" optional) or NULL
 * when the route has no such group rule. */
const struct mg_mapping_group *
mg_mapping_result_group(const struct mg_mapping_result *res,
                        const char *name);

/* The sub-field name ("value") of a group item, or NULL when absent. */
const struct mg_mapping_value *
mg_mapping_item_get(const struct mg_mapping_item *item, const char *name);

/* For `medgate map --dry-run [--listener NAME] FILE`: finds the route for
 * msg as mg_mapping_route_find() does for a message that came in on
 * listener (NULL: on none, so routes that name a listener are not tried),
 * applies it and prints the route chosen (name, file, adapter, note),
 * every target of the route with its value, "null" or "(absent)" and the
 * rule's note, every repeated group with its items, and the unused fields.
 * Values are printed as JSON strings. The output contains PHI: it is for an
 * engineer at a terminal, not for logs. Returns what the route lookup or
 * mg_mapping_apply() returned (a mapping error is printed with its
 * location first); MG_ENOMEM. */
MG_MUST_CHECK int mg_mapping_dry_run_print(const struct mg_mapping_set *set,
                                           const struct mg_hl7v2_msg *msg,
                                           const char *listener, FILE *out);

/* ---- Transforms ----------------------------------------------------- */

/* Applies the string transform name ("hl7_ts", "hl7_date", "trim",
 * "upper", "lower", "sex", "priority") to in. *out is in, a slice of it,
 * a static string or a copy in arena. MG_OK; MG_EINVAL (unknown name, or a
 * transform that needs the message: person_name, concat); MG_EMAPPING (the
 * value does not fit the transform: HL7 table 0357 code 102); MG_ENOMEM.
 * Exposed for tests and tools; rules call the same code. */
MG_MUST_CHECK int mg_mapping_transform(const char *name, struct mg_str in,
                                       struct mg_arena *arena,
                                       struct mg_str *out);

/* ---- FHIRPath subset ------------------------------------------------ */

/* A compiled expression of the FHIRPath subset docs/mapping-guide.md
 * describes: paths (Patient.name.family), indexes ([0]), where(cond),
 * first(), exists(), and "= literal". */
struct mg_fhirpath;

/* Compiles text. MG_OK with *out (free with mg_fhirpath_free()); MG_EINVAL
 * with diag->text saying what and at which offset (diag may be NULL);
 * MG_ENOMEM. */
MG_MUST_CHECK int mg_fhirpath_compile(struct mg_str text,
                                      struct mg_fhirpath **out,
                                      struct mg_diag *diag);

void mg_fhirpath_free(struct mg_fhirpath *fp);

/* A collection: nodes of the evaluated resource (borrowed: valid while the
 * resource is), or jansson's json_true()/json_false() singletons for
 * booleans. */
struct mg_fhirpath_coll {
    struct json_t **item; /* in the arena */
    size_t n;
};

/* Evaluates fp with resource as the root. Arrays are flattened as
 * FHIRPath does. MG_OK or MG_ENOMEM. */
MG_MUST_CHECK int mg_fhirpath_eval(const struct mg_fhirpath *fp,
                                   struct json_t *resource,
                                   struct mg_arena *arena,
                                   struct mg_fhirpath_coll *out);

/* Compiles and evaluates expr, and gives the first item as text: a string
 * as it is (borrowed from resource: valid while resource is), a number or
 * boolean printed in arena. MG_OK; MG_ENOTFOUND
 * (empty collection, or the first item is an object or array); MG_EINVAL
 * (expr does not compile); MG_ENOMEM. */
MG_MUST_CHECK int mg_fhirpath_string(const char *expr,
                                     struct json_t *resource,
                                     struct mg_arena *arena,
                                     struct mg_str *out);

#endif
