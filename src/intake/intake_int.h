/* Internals of the intake, shared by its files only. */
#ifndef MG_INTAKE_INTAKE_INT_H
#define MG_INTAKE_INTAKE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/conf.h"
#include "core/str.h"
#include "intake/intake.h"

enum mg__intake_outcome {
    MG__INTAKE_STORED,
    MG__INTAKE_DUPLICATE,          /* same key, same payload */
    MG__INTAKE_DUPLICATE_CONFLICT, /* same key, different payload */
    MG__INTAKE_FAILED,             /* stored, answered AE */
    MG__INTAKE_REJECTED,           /* stored, answered AR */
    MG__INTAKE_NOT_STORED,
    MG__INTAKE_NOUTCOMES
};

/* The columns of one message, rendered as text for the batch arrays. NULL
 * means SQL NULL. */
enum mg__intake_col {
    COL_ORG,
    COL_LISTENER,
    COL_APP,
    COL_FAC,
    COL_RAPP,
    COL_RFAC,
    COL_DATETIME,
    COL_TYPE,
    COL_TRIGGER,
    COL_STRUCTURE,
    COL_CONTROL_ID,
    COL_PROCESSING_ID,
    COL_VERSION,
    COL_ACCEPT_ACK,
    COL_APP_ACK,
    COL_HASH,   /* hex */
    COL_RAW,    /* hex */
    COL_CHARSET,
    COL_STATUS, /* received, failed, rejected */
    COL_ACK_CODE,
    COL_ACK,     /* the ACK for this outcome */
    COL_DUP_ACK, /* the ACK if it turns out a conflicting duplicate */
    COL_ERROR,
    COL_ERROR_LOCATION,
    COL_RECEIVED_AT, /* microseconds since the epoch */
    COL_ADAPTER,     /* the route's adapter, NULL when none runs */
    COL_INPUT,       /* its input document (JSON) */
    COL_FAST,        /* "t": shares no record with the rest of its batch */
    COL_PEER,        /* the sender's IP address, NULL when not known */
    MG__INTAKE_NPARAMS
};

/* Record fingerprints kept per message (mg_adapter_input_keys); a message
 * with more might share any record, so its whole batch goes one by one. */
#define MG__INTAKE_MAX_KEYS 16

struct mg__intake_item {
    struct mg__intake_item *next;
    mg_intake_done_cb done;
    void *arg;
    struct mg_arena arena; /* everything below points into it */
    const char *col[MG__INTAKE_NPARAMS];
    /* col and outcome as prepared: a batch that fails after an adapter
     * refused the message must not leave that refusal for the retry */
    const char *prepared[MG__INTAKE_NPARAMS];
    enum mg__intake_outcome prepared_outcome;
    struct mg_str down_ack; /* AR for "database down" replies */
    const struct mg_conf_listener *listener; /* lives as long as the conf */
    struct mg_mapping_set *mappings; /* a reference: the set it was mapped
                                      * with (NULL: none) */
    struct mg_intake_seq *seq;               /* NULL: none */
    enum mg__intake_outcome outcome;
    uint64_t keys[MG__INTAKE_MAX_KEYS]; /* the records its adapter writes */
    size_t nkeys;                       /* may exceed MG__INTAKE_MAX_KEYS */
    bool parts; /* its input is an array: one document per part */
    /* What the batch statement said, kept until its COMMIT: */
    bool retry;            /* not inserted: retry in the next batch */
    const char *ack;       /* the ACK to send (arena), NULL for none */
    size_t ack_len;
    bool solo; /* retry alone (its batch failed) */
    bool retried; /* alone, it met a deadlock or serialization failure
                   * once and was tried again */
    bool batched; /* its adapter's batch function wrote it */
    bool busy; /* refused at submit: queue full */
    bool lost; /* committed, but its answer could not be built */
    uint64_t key; /* its key hashed (intake.c), 0 for none */
    size_t mem;   /* what it holds (arena), counted in mg_intake's held */
    size_t bytes; /* its raw message (hex) and input: what it adds to a
                     batch statement's parameters */
};

/* Parses and checks frame, builds its ACKs and renders its columns.
 * MG_OK (also for messages that will be stored as failed/rejected), or
 * MG_ENOMEM. */
int mg__intake_prepare(struct mg__intake_item *it,
                       const struct mg_conf_listener *li,
                       const struct mg_mapping_set *mappings,
                       struct mg_str frame);

/* For a message refused unread because the queue is full: only its
 * "resend later" AR/CR (down_ack), from its MSH, none when it wants none.
 * Preparing it whole (parse, mapping, hex) would let a flood against a
 * slow database grow memory without bound. MG_OK. */
int mg__intake_prepare_busy(struct mg__intake_item *it,
                            const struct mg_conf_listener *li,
                            struct mg_str frame);

/* The adapter refused the stored message (SQLSTATE state, message text,
 * the mapping target that carried the value or NULL): turns it into a
 * failed message with an AE whose ERR names the field, re-reading the
 * stored bytes to find it. MG_OK or MG_ENOMEM. */
int mg__intake_adapter_failed(struct mg__intake_item *it,
                              const struct mg_mapping_set *mappings,
                              const char *state, const char *text,
                              const char *target);

/* The parameter arrays of one batch statement. */
struct mg__intake_batch {
    struct mg_buf arrays[MG__INTAKE_NPARAMS];
    const char *values[MG__INTAKE_NPARAMS];
};

/* PostgreSQL array literals: append elements (NULL is SQL NULL), the first
 * with first set, then close; *out is the literal, in b. */
int mg__intake_array_append(struct mg_buf *b, const char *v, bool first);
int mg__intake_array_close(struct mg_buf *b, const char **out);

/* Renders the arrays of the messages of list, after marking each one that
 * shares no record with another of them (COL_FAST). MG_OK or MG_ENOMEM. */
int mg__intake_batch_render(struct mg__intake_batch *b,
                            struct mg__intake_item *list);
void mg__intake_batch_dispose(struct mg__intake_batch *b);

extern const char mg__intake_batch_sql[];
extern const char mg__intake_fail_sql[];

#endif
