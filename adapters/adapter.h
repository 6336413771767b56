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
 * those with AE and an ERR at the field the target was read from.
 *
 * An adapter may also write many messages at once (`batch`): its SQL then
 * defines medgate_adapter_<name>_batch(orgs uuid[], message_ids uuid[],
 * inputs jsonb[]) RETURNS integer[], which writes the messages it can with
 * one statement per table and returns their positions; the others go to
 * the per-message function. The intake hands it only messages that share
 * no record (mg_adapter_input_keys) with any other message of their
 * grouped commit, so writing them together is the same as writing them one
 * after the other. */
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
    /* Internal -> outbound: the message or resource for record, appended
     * to out (HL7 v2 with CR segment ends, or FHIR JSON). record holds
     * internal rows as PostgreSQL's row_to_json gives them: "patient",
     * "identifiers" (array), "scan", "report"; an HL7 v2 message also
     * needs "message": sending_application, sending_facility,
     * receiving_application, receiving_facility, control_id and datetime
     * (an HL7 DTM). MG_OK; MG_EINVAL with diag->text (may be NULL) naming
     * what the record lacks; MG_ENOMEM. NULL when the adapter has no
     * outbound side. Delivery (queue, retry) is the outbound issue's. */
    int (*to_outbound)(const json_t *record, struct mg_buf *out,
                       struct mg_diag *diag);
    bool batch; /* its SQL defines medgate_adapter_<name>_batch() */
};

/* The adapter called name, or NULL. */
const struct mg_adapter *mg_adapter_find(const char *name);

/* Whether adapter a takes messages of type^trigger (a NULL trigger:
 * messages of type). */
bool mg_adapter_takes(const struct mg_adapter *a, struct mg_str type,
                      struct mg_str trigger);

/* The adapter that takes messages of type^trigger, or NULL when none does
 * (the gateway does not support the message). A NULL trigger (MG_STR_NULL)
 * matches any: is the message type known at all? */
const struct mg_adapter *mg_adapter_for_type(struct mg_str type,
                                             struct mg_str trigger);

/* mg_mapping_set_load_checked() with this registry: every route's
 * "adapter" must name an adapter that has an inbound side, else the set
 * is refused with FILE:LINE: adapter: problem. The set a gateway can serve
 * with. *out is untouched on error. */
MG_MUST_CHECK int mg_adapters_load_set(const char *dir,
                                       struct mg_mapping_set **out,
                                       FILE *err);

/* The usual input: {"message": {"type", "trigger"}, one object per entity
 * of the mapped values ("patient": {"last_name": ...}; an explicit HL7 null
 * is a JSON null), one array of objects per group ("patient_identifiers":
 * [{"value": ...}])}. NULL when out of memory. */
json_t *mg_adapter_input(const struct mg_mapping_result *res,
                         const struct mg_hl7v2_header *hdr);

/* The input document of adapter ad for msg under route: ad->to_internal()
 * of the mapped values, or, when the route cuts the message into several
 * parts (mg_mapping_split: several orders in one message), a JSON array of
 * one such document per part, in message order. The adapter's SQL gets
 * each part in turn (medgate_adapt), all in one subtransaction. MG_OK with
 * *out (the caller decrefs it); MG_EMAPPING with *diag (may be NULL) as
 * mg_mapping_apply() sets it; MG_ENOMEM. */
MG_MUST_CHECK int mg_adapter_map(const struct mg_adapter *ad,
                                 const struct mg_mapping_route *route,
                                 const struct mg_hl7v2_msg *msg,
                                 struct mg_arena *arena, json_t **out,
                                 struct mg_diag *diag);

/* The records an input document names (of every part, for an array), as 64-bit fingerprints: the
 * patient's medical record number, a merge's prior one, every patient
 * identifier, the scan's accession number and Study Instance UID. Writes
 * at most max into keys and returns how many there are (more than max
 * when they did not fit). Two messages whose fingerprints meet may touch
 * one record, so they must be written in order; a false match only costs
 * speed. */
size_t mg_adapter_input_keys(const json_t *in, uint64_t *keys, size_t max);

/* A digest (32 hex digits) of every SQL text mg_adapters_install writes.
 * The install records it as medgate_adapters_checksum(), and `medgate
 * serve` is ready only when the database returns its own build's digest:
 * a binary upgraded without `medgate migrate` is caught at /readyz instead
 * of by every message failing. */
#define MG_ADAPTERS_CHECKSUM_HEX 32
void mg_adapters_checksum(char out[MG_ADAPTERS_CHECKSUM_HEX + 1]);

/* Helpers for outbound sides. */

/* A record that lacks what the outbound message needs: diag (may be NULL)
 * gets code 101 and what, in words; returns MG_EINVAL. */
int mg_adapter_refuse(struct mg_diag *diag, const char *what);

/* record[object][key] as a string, or NULL when absent, null, empty (a
 * FHIR string is never empty) or not a string. */
const char *mg_adapter_get(const json_t *record, const char *object,
                           const char *key);

/* A report's attachment: one record["files"] row (scan_files: file_name,
 * storage_uri, file_type, mime_type, file_size_bytes), with its content
 * when it is held inline (a data: URI with base64 data, as the result
 * adapter keeps an OBX ED attachment) or else its URI. */
struct mg_adapter_file {
    const char *name;      /* file_name, or NULL */
    const char *mime;      /* mime_type, or NULL */
    struct mg_str base64;  /* the inline content; len 0 when by reference */
    const char *uri;       /* storage_uri when by reference, else NULL */
    long long size;        /* file_size_bytes, -1 when unknown */
};

/* The k-th row of record["files"] that can be sent: a document or an
 * image (DICOM objects and archives are not report attachments) with a
 * storage_uri. False when there is no k-th one. */
bool mg_adapter_file(const json_t *record, size_t k,
                     struct mg_adapter_file *out);

/* The record["identifiers"] row of the patient's medical record number:
 * one holding its value, preferably typed MR and not retired (use old:
 * an A40 moves the merged record's MRN over as old), or NULL. */
const json_t *mg_adapter_mrn_identifier(const json_t *record);

/* The system of that row (patient_identifiers.system: urn:oid:<oid>, a
 * namespace, or urn:medgate:unqualified), or NULL. */
const char *mg_adapter_mrn_system(const json_t *record);

/* Whether code is a DICOM modality (defined terms of (0008,0060), PS3.3
 * C.7.3.1.1.1): only those may be sent as codes of the DCM system; a
 * sender's own code (the modality table passes unknown ones through) may
 * not. */
bool mg_adapter_dicom_modality(const char *code);

/* Whether code is a DICOM acquisition modality (CID 29): a DICOM modality
 * that is no derived object (SR, KO, PR, DOC, OT...). Only those go into
 * ImagingStudy.modality. */
bool mg_adapter_acquisition_modality(const char *code);

/* code as an HL7 table 0203 identifier type (FHIR's v2-0203 code system,
 * case-sensitive, upper case), written into buf; NULL when it is none
 * ("MRN", a site's own code): such a type is no code of that system. */
const char *mg_adapter_identifier_type(const char *code, char *buf,
                                       size_t size);

/* The identifier type of the patient's medical record number: its row's
 * type_code (SS when the MRN came from an SSN, as PID-3.1 of a PID-3
 * without an MR repetition does), MR when the row has none or there is
 * no row. */
const char *mg_adapter_mrn_type(const json_t *record);

/* Whether an identifiers row is retired (use "old", set by a merge): not
 * the patient's to send as current in an HL7 v2 PID-3. */
bool mg_adapter_identifier_retired(const json_t *id);

/* An ISO 8601 date or date-time as row_to_json writes it ("1970-01-02",
 * "2024-01-02T09:30:00+01:00", fractions dropped) as an HL7 DTM
 * ("19700102", "20240102093000+0100") in out. MG_OK or MG_EINVAL. */
MG_MUST_CHECK int mg_adapter_iso_to_hl7(const char *iso, char out[32]);

/* obj[key] = a FHIR dateTime (instant when instant is set) for an ISO
 * value. A time needs its offset in FHIR: rows from the database always
 * have one (timestamptz); a mapped value without one (the dry run) keeps
 * only its date, or is left out for an instant. Nothing for NULL. */
void mg_adapter_json_time(json_t *obj, const char *key, const char *iso,
                          bool instant);

/* Whether s is an absolute URI as FHIR's uri/url types and
 * Identifier.system need it: a lower-case scheme, ':', then no whitespace
 * ("urn:oid:1.2.3", "https://hosp.example/mrn"; not "MRN:EAST", not a
 * relative path), and a urn:oid: an OID (not "urn:oid:HOSP"). */
bool mg_adapter_is_uri(const char *s);

/* s as a FHIR code (no leading or trailing whitespace, no other whitespace
 * than single spaces), trimmed into buf; NULL when nothing is left or it
 * cannot be one. */
const char *mg_adapter_code(const char *s, char *buf, size_t size);

/* obj[key] = v as a JSON string when v is not NULL: a FHIR resource leaves
 * out what it does not know. Like the other jansson setters the resources
 * use, it leaves the key out when memory runs out. */
void mg_adapter_json_set(json_t *obj, const char *key, const char *v);

/* A FHIR resource as compact JSON appended to out; frees res. MG_OK or
 * MG_ENOMEM. */
MG_MUST_CHECK int mg_adapter_json_out(json_t *res, struct mg_buf *out);

/* Installs (or replaces) the shared SQL, every adapter's SQL function and
 * the dispatcher medgate_adapt() and medgate_adapters_checksum() in the
 * database named by conninfo, in one transaction. Run by `medgate migrate` after the schema migrations.
 * MG_OK, MG_EDB (with the error on err) or MG_EDBDOWN. */
MG_MUST_CHECK int mg_adapters_install(const char *conninfo, FILE *out,
                                      FILE *err);

#endif
