/* Durable HL7 v2 intake: every message an MLLP listener receives is stored
 * raw in hl7_messages with a sync_logs row, in a transaction that commits
 * BEFORE its ACK is handed back (DESIGN.md section 2.1, DESIGN-NOTES
 * section 3). Commits are grouped: whatever arrives while one commit is in
 * flight (up to three batches at once) goes into the next, so batches grow
 * with load and add no latency when idle. One sender's messages commit in
 * the order they arrived (struct mg_intake_seq). Duplicates (same sender + MSH-10) are recognised in the same
 * statement: same payload -> the original ACK again, nothing processed
 * twice; different payload -> AE (duplicate key) and the new payload kept
 * for inspection.
 *
 * Messages that cannot be parsed, or come from senders the listener does
 * not accept, or carry an unsupported type or version, are stored too
 * (status rejected/failed, with the reason) and answered AR/AE with an ERR
 * segment that points at the fault.
 *
 * Mapping stage: an accepted message is run through the mapping set (the
 * route for its type and sender); a message no route takes is rejected
 * (AR 200) and one whose mapping fails (a required field missing, a value
 * not in a strict table, a bad date) is stored as failed and answered AE
 * with an ERR naming the field. The route's adapter (adapters/) then writes
 * the mapped values to the internal tables in the same transaction as the
 * message; an adapter that refuses it (an unknown accession, a value the
 * schema refuses) makes it failed with an AE naming the field, without
 * touching its neighbours in the batch. AA means "stored and mapped". */
#ifndef MG_INTAKE_INTAKE_H
#define MG_INTAKE_INTAKE_H

#include <stddef.h>

#include "core/compiler.h"
#include "core/conf.h"
#include "core/str.h"

struct uv_loop_s;
struct mg_store;
struct mg_buf;
struct mg_intake;
struct mg_mapping_set;

/* The outcome of one message.
 * MG_OK: ack/ack_len is the ACK to send (AA/CA, or AE/AR/CE/CR for a
 *   message stored as failed/rejected or a duplicate); it is durable.
 * MG_EDBDOWN / MG_EINDOUBT / MG_EBUSY / MG_EDB: nothing is known to be
 *   stored; send no AA. ack (may be NULL) is an AR the listener may send
 *   when configured with db_down_reply = ar; otherwise close the
 *   connection so the sender retransmits.
 * ack is valid only during the call. */
typedef void (*mg_intake_done_cb)(void *arg, int rc, const char *ack,
                                  size_t ack_len);

struct mg_intake_opts {
    int batch_max; /* most messages in one commit */
    int queue_max; /* messages waiting for a commit; more fail MG_EBUSY */
    int commits_in_flight; /* most grouped commits at once (<= 8) */
};

/* The most bytes the messages waiting for their commit may hold (raw, its
 * hex copy and the adapter's input, about three times the frame) before
 * the MLLP listeners stop reading every connection that already has one
 * waiting. A connection with none is always read: the bound is this plus
 * one message per connection (max_connections x max_frame_bytes). */
#define MG_INTAKE_HELD_MAX ((size_t)256 << 20)

MG_MUST_CHECK int mg_intake_new(struct uv_loop_s *loop, struct mg_store *store,
                                const struct mg_intake_opts *opts,
                                struct mg_intake **out);
/* Fails everything still waiting with MG_ECANCELED and frees the intake
 * once the commit in flight (if any) has completed. */
void mg_intake_free(struct mg_intake *in);

/* One sender's order (an MLLP connection). Messages submitted with the
 * same sequence commit in the order they were submitted: several may share
 * a batch (which applies them in order), but none joins another batch
 * while an earlier one is in a batch still in flight -- otherwise a
 * pipelined A08 could commit before the A01 it updates. Once one of its
 * messages is answered with an error (not stored), every later one is
 * answered with that error too, unstored: the owner closes on such an
 * answer, so they could not be acknowledged, and the sender's resend of
 * the first would commit after them. Zeroed by its owner, which keeps it
 * until every message submitted with it has been answered. */
struct mg_intake_seq {
    unsigned flying;         /* its messages in batches in flight */
    unsigned long long batch; /* the batch they are in */
    int refused;             /* 0, or the error one of its messages got */
};

/* Takes one MLLP frame received by listener li from peer_ip (the
 * address the net layer read, stored with the message; NULL when not
 * known), in sequence seq (NULL: no order to keep). frame is copied. done(arg, ...) runs exactly once,
 * later, never synchronously; with an error rc for every message of seq
 * after one answered with an error. MG_OK, or MG_ENOMEM (done is not
 * called). */
MG_MUST_CHECK int mg_intake_submit(struct mg_intake *in,
                                   const struct mg_conf_listener *li,
                                   const char *peer_ip,
                                   struct mg_intake_seq *seq,
                                   struct mg_str frame, mg_intake_done_cb done,
                                   void *arg);

/* Builds an AR (HL7 error 207 with text; CR in enhanced mode) for a frame
 * that listener li refuses before the intake sees it (too large), from
 * whatever of its MSH can be read in head. MG_OK; MG_EPARSE when head has
 * no usable MSH-10, MG_ENOTFOUND when the sender asked for no such ACK
 * (MSH-15 NE or SU): send nothing then. */
MG_MUST_CHECK int mg_intake_reject_ack(const struct mg_conf_listener *li,
                                       struct mg_str head, const char *text,
                                       struct mg_buf *out);

/* Uses set (borrowed; NULL = none) for the mapping stage of messages
 * submitted from now on. The caller may mg_mapping_set_free() the previous
 * set as soon as this returns: each message still in the intake holds its
 * own reference to the set it was mapped with (to locate an adapter's
 * refusal in it at commit time). */
void mg_intake_set_mappings(struct mg_intake *in, struct mg_mapping_set *set);

/* What the intake would decide for raw today (parse, sender, type, mapping
 * stage), without storing anything: for `medgate replay`. status is
 * "received", "failed" or "rejected"; error and location are empty when
 * it would be accepted. The strings are copied into out. */
struct mg_intake_verdict {
    char status[16];
    char error[256];
    char location[64];
    char adapter[64]; /* the adapter that would write it, "" if none */
    char organization_id[40]; /* of the sender it was matched to, or "" */
    char ack_code[4]; /* MSA-1 of its answer today, "" for none (an ACK) */
    char *ack;        /* that answer (malloc'd, the caller frees it), NULL
                         when none is sent (MSH-15 NE, or an ACK) */
    char *input;      /* its input document (malloc'd, the caller frees
                         it), NULL if none */
};

/* The character set listener li reads frame in when its MSH-18 is empty:
 * the charset of the sender MSH-3/4 name, else the listener's
 * default_charset; NULL for ASCII/UTF-8 (or no readable MSH). For `medgate
 * map --dry-run`, which must read a message as the intake would. */
const char *mg_intake_default_charset(const struct mg_conf_listener *li,
                                      struct mg_str frame);

MG_MUST_CHECK int mg_intake_judge(const struct mg_conf_listener *li,
                                  const struct mg_mapping_set *set,
                                  struct mg_str raw,
                                  struct mg_intake_verdict *out);

/* The verdict the intake gives raw when its adapter refused it (SQLSTATE
 * state, the error text, the mapping target or NULL, as medgate_adapt()
 * returns them): failed, with the same error and ERR location the intake
 * stores. For `medgate replay`. status, error and location are set. */
MG_MUST_CHECK int mg_intake_refusal(const struct mg_conf_listener *li,
                                    const struct mg_mapping_set *set,
                                    struct mg_str raw, const char *state,
                                    const char *text, const char *target,
                                    struct mg_intake_verdict *out);

/* Messages waiting or in the commit in flight. */
/* True when the messages waiting hold MG_INTAKE_HELD_MAX bytes or more. */
bool mg_intake_full(const struct mg_intake *in);

size_t mg_intake_pending(const struct mg_intake *in);

/* A grouped commit refused for a reason that refuses every write
 * (SQLSTATE class 25 read-only, 53 out of disk or memory, 58 I/O): this
 * many in a row, with none through since, make the gateway not ready for
 * MG_INTAKE_REFUSED_HOLD_MS after the last. The store's own check sees a
 * connection and the right schema, and said ready while no message could
 * be stored. The hold ends by itself, so that an instance the load
 * balancer took out of service (and so gets no message to try) comes
 * back to be tried again. */
#define MG_INTAKE_REFUSED_NOT_READY 3
#define MG_INTAKE_REFUSED_HOLD_MS 30000

/* Readiness for /readyz: false, with *reason, while the database refuses
 * writes (above). */
bool mg_intake_status(const struct mg_intake *in, char *reason, size_t size);

/* Appends Prometheus text: messages by outcome, batches, batch sizes. */
void mg_intake_write_metrics(const struct mg_intake *in, struct mg_buf *out);

#endif
