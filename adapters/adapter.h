/* Adapters: one module per message family (adapters/<name>/), each a small
 * table of functions plus the SQL function that writes its records.
 *
 * Inbound, a route's mapping turns a message into named values
 * (patient.last_name, scan.accession_number, groups such as
 * patient_identifiers[]); the adapter turns those into one JSON document,
 * its input, and its SQL function (installed by `medgate migrate`, called
 * inside the intake's transaction for each message) writes the internal
 * rows from it. Adding a message family is one folder here -- <name>.c
 * defining `const struct mg_adapter mg_adapter_<name>` and <name>.sql
 * defining medgate_adapter_<name>(org uuid, message_id uuid, input jsonb)
 * -- and one mapping file. The build finds the folders by itself.
 *
 * The SQL functions report problems the sender must fix with SQLSTATE class
 * MG and the mapping target in DETAIL (see common.sql); the intake answers
 * those with AE and an ERR at the field the target was read from. */
#ifndef MG_ADAPTERS_ADAPTER_H
#define MG_ADAPTERS_ADAPTER_H

#include <stdio.h>

#include <jansson.h>

#include "core/compiler.h"
#include "hl7v2/hl7v2.h"
#include "mapping/mapping.h"

struct mg_adapter {
    const char *name; /* as routes name it: "hl7v2.order" */
    /* The message types it takes, "ADT^A01" style, NULL-terminated. */
    const char *const *accepts;
    /* Inbound -> internal: the input document of its SQL function, or
     * NULL when out of memory. */
    json_t *(*to_internal)(const struct mg_mapping_result *res,
                           const struct mg_hl7v2_header *hdr);
    /* Internal -> outbound (ORU^R01 to the RIS, FHIR resources to the EMR)
     * comes with the outbound and FHIR issues; NULL until then. */
    void *to_outbound;
};

/* The adapter called name, or NULL. */
const struct mg_adapter *mg_adapter_find(const char *name);

/* The adapter that takes messages of type^trigger, or NULL when none does
 * (the gateway does not support the message). A NULL trigger (MG_STR_NULL)
 * matches any: is the message type known at all? */
const struct mg_adapter *mg_adapter_for_type(struct mg_str type,
                                             struct mg_str trigger);

/* Checks that every route of set names an adapter that exists. MG_OK, or
 * MG_ECONF with a line per problem on err (may be NULL). */
MG_MUST_CHECK int mg_adapters_check_set(const struct mg_mapping_set *set,
                                        FILE *err);

/* mg_mapping_set_load() and then mg_adapters_check_set(): the set a
 * gateway can serve with. *out is untouched on error. */
MG_MUST_CHECK int mg_adapters_load_set(const char *dir,
                                       struct mg_mapping_set **out,
                                       FILE *err);

/* The usual input: {"message": {"type", "trigger"}, one object per entity
 * of the mapped values ("patient": {"last_name": ...}; an explicit HL7 null
 * is a JSON null), one array of objects per group ("patient_identifiers":
 * [{"value": ...}])}. NULL when out of memory. */
json_t *mg_adapter_input(const struct mg_mapping_result *res,
                         const struct mg_hl7v2_header *hdr);

/* A digest (32 hex digits) of every SQL text mg_adapters_install writes.
 * The install records it as medgate_adapters_checksum(), and `medgate
 * serve` is ready only when the database returns its own build's digest:
 * a binary upgraded without `medgate migrate` is caught at /readyz instead
 * of by every message failing. */
#define MG_ADAPTERS_CHECKSUM_HEX 32
void mg_adapters_checksum(char out[MG_ADAPTERS_CHECKSUM_HEX + 1]);

/* Installs (or replaces) the shared SQL, every adapter's SQL function and
 * the dispatcher medgate_adapt() and medgate_adapters_checksum() in the
 * database named by conninfo, in one transaction. Run by `medgate migrate` after the schema migrations.
 * MG_OK, MG_EDB (with the error on err) or MG_EDBDOWN. */
MG_MUST_CHECK int mg_adapters_install(const char *conninfo, FILE *out,
                                      FILE *err);

#endif
