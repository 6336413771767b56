/* Cutting a message into parts (a route's "split"): an order or a result
 * message may carry several orders (ORC/OBR groups), and each becomes its
 * own scan or report instead of the first one taking the observations of
 * all. The parts share the head (MSH, PID, PV1, ...): one message, one
 * patient. */
#include <string.h>

#include "core/error.h"
#include "mapping/mapping_int.h"

/* Position of segment id in the route's split list, or -1. */
static int
split_rank(const struct mg_mapping_route *route, const char *id)
{
    for (size_t k = 0; k < route->split.n; k++)
        if (strcmp(route->split.v[k], id) == 0)
            return (int)k;
    return -1;
}

/* A PID after the first part would be a second patient, whose orders the
 * head's PID would claim: refused rather than filed under the wrong one.
 * A PID with the head PID's identifiers (PID-3) is the same patient again:
 * ORU_R01 repeats PATIENT_RESULT, and senders repeat the PID with it. */
static int
refuse_second_patient(const struct mg_hl7v2_msg *msg, size_t head_end,
                      struct mg_diag *diag)
{
    const struct mg_hl7v2_seg *pid = mg_hl7v2_seg_find(msg, "PID", 1);
    struct mg_str ids = mg_str_n("", 0);

    if (pid != NULL && (size_t)(pid - msg->seg) < head_end)
        ids = mg_hl7v2_seg_field(pid, 3); /* the head's patient */

    for (size_t i = head_end; i < msg->nseg; i++) {
        if (memcmp(msg->seg[i].id, "PID", 4) != 0 ||
            (ids.len > 0 &&
             mg_str_eq(mg_hl7v2_seg_field(&msg->seg[i], 3), ids)))
            continue;
        if (diag != NULL) {
            mg_diag_clear(diag);
            mg_diag_at(diag, "PID", msg->seg[i].seq, 0, 0);
            mg_diag_set(diag, MG_HL7_ERR_SEGMENT_SEQUENCE, "a second patient "
                        "(PID) after the first order group: send one "
                        "patient per message");
        }
        return MG_EMAPPING;
    }
    return MG_OK;
}

/* Where the parts begin: a segment of the split list starts one when the
 * current part already holds it or a segment listed after it (ORC OBR is
 * one part, OBR OBR two). Returns how many (0: no segment starts one),
 * writing starts[] when it is not NULL. */
static size_t
part_starts(const struct mg_mapping_route *route,
            const struct mg_hl7v2_msg *msg, size_t *starts)
{
    size_t n = 0;
    int held = -1; /* highest rank the current part holds */

    for (size_t i = 0; i < msg->nseg; i++) {
        int rank = split_rank(route, msg->seg[i].id);

        if (rank < 0)
            continue;
        if (n == 0 || held >= rank) {
            if (starts != NULL)
                starts[n] = i;
            n++;
            held = -1;
        }
        if (rank > held)
            held = rank;
    }
    return n;
}

/* A message is mapped once for each of its parts, and each part reads the
 * head too: a real order or result carries a few order groups behind a
 * head of tens of segments, and these bounds keep a crafted one (20,000
 * "OBR" segments in 120 kB took 20 s of the event loop) to a few
 * million segment visits. */
#define MAX_PARTS 1000
#define MAX_SHARED_HEAD 1000

/* Refuses a split that would cost too much; MG_OK when it would not. */
static int
refuse_oversplit(const struct mg_hl7v2_msg *msg, const size_t *starts,
                 size_t count, struct mg_diag *diag)
{
    size_t at;

    if (count <= 1 || (count <= MAX_PARTS && starts[0] <= MAX_SHARED_HEAD))
        return MG_OK;
    at = count > MAX_PARTS ? starts[MAX_PARTS] : starts[0];
    if (diag != NULL) {
        mg_diag_clear(diag);
        mg_diag_at(diag, msg->seg[at].id, msg->seg[at].seq, 0, 0);
        if (count > MAX_PARTS)
            mg_diag_set(diag, MG_HL7_ERR_SEGMENT_SEQUENCE, "more than %d "
                        "order groups in one message: send at most %d",
                        MAX_PARTS, MAX_PARTS);
        else
            mg_diag_set(diag, MG_HL7_ERR_SEGMENT_SEQUENCE, "more than %d "
                        "segments before the first order group of a "
                        "message with several", MAX_SHARED_HEAD);
    }
    return MG_EMAPPING;
}

int
mg_mapping_split(const struct mg_mapping_route *route,
                 const struct mg_hl7v2_msg *msg, struct mg_arena *arena,
                 struct mg_mapping_part **parts, size_t *n,
                 struct mg_diag *diag)
{
    size_t count = part_starts(route, msg, NULL), *starts;

    if (count == 0) {
        *parts = mg_arena_alloc(arena, sizeof(**parts));
        if (*parts == NULL)
            return MG_ENOMEM;
        (*parts)[0] = (struct mg_mapping_part){msg->nseg, msg->nseg,
                                               msg->nseg};
        *n = 1;
        return MG_OK;
    }
    starts = mg_arena_alloc(arena, count * sizeof(*starts));
    *parts = mg_arena_alloc(arena, count * sizeof(**parts));
    if (starts == NULL || *parts == NULL)
        return MG_ENOMEM;
    part_starts(route, msg, starts);
    if (refuse_oversplit(msg, starts, count, diag) != MG_OK)
        return MG_EMAPPING;
    for (size_t k = 0; k < count; k++)
        (*parts)[k] = (struct mg_mapping_part){
            starts[0], starts[k], k + 1 < count ? starts[k + 1] : msg->nseg};
    *n = count;
    return refuse_second_patient(msg, starts[0], diag);
}
