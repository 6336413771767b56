/* fhir.patient -- internal patient -> FHIR R4 Patient (outbound only; the
 * FHIR REST issue adds the inbound side and its SQL). The MRN is the
 * identifier typed MR (v2-0203); other identifiers keep their system when
 * it is a URI, else name their assigner; a merged record links to its
 * survivor (replaced-by). */
#include <string.h>

#include "adapters/adapter.h"
#include "core/error.h"

#define V2_0203 "http://terminology.hl7.org/CodeSystem/v2-0203"

/* fallback: the v2-0203 code of an identifier whose type is a site's own
 * (the MRN is MR whatever the sender called its type), or NULL. */
static json_t *
typed_identifier(const char *system, const char *value, const char *type,
                 const char *fallback)
{
    json_t *id = json_object();
    char code[16];
    const char *coded = mg_adapter_identifier_type(type, code, sizeof(code));

    /* A code of table 0203 is a v2-0203 coding; a site's own type ("MRN")
     * is no code of that system, so it goes as text (with the fallback's
     * coding, so that Patient.identifier.where(type.coding.code='MR')
     * finds the MRN). */
    if (coded == NULL)
        coded = fallback;
    if (coded != NULL)
        json_object_set_new(id, "type", json_pack("{s:[{s:s,s:s}]}", "coding",
                                                  "system", V2_0203, "code",
                                                  coded));
    if (coded != code && type != NULL && *type) {
        if (json_object_get(id, "type") == NULL)
            json_object_set_new(id, "type", json_object());
        json_object_set_new(json_object_get(id, "type"), "text",
                            json_string(type));
    }
    if (system != NULL && strcmp(system, "urn:medgate:unqualified") == 0)
        system = NULL; /* no authority: a shared system would merge them */
    if (system != NULL && mg_adapter_is_uri(system))
        json_object_set_new(id, "system", json_string(system));
    else if (system != NULL)
        json_object_set_new(id, "assigner", json_pack("{s:s}", "display",
                                                      system));
    json_object_set_new(id, "value", json_string(value));
    return id;
}

/* What an identifiers row adds beyond system, value and type: the
 * assigner's name when the system is a URI (HOSP for urn:oid:1.2.3, as
 * CX.4.1 gave it), and the period it is valid in. */
static void
identifier_details(json_t *out, const json_t *row)
{
    const char *ns = json_string_value(json_object_get(row, "assigner"));
    const char *from = json_string_value(json_object_get(row, "period_start"));
    const char *to = json_string_value(json_object_get(row, "period_end"));

    if (ns != NULL && *ns && json_object_get(out, "system") != NULL &&
        json_object_get(out, "assigner") == NULL)
        json_object_set_new(out, "assigner", json_pack("{s:s}", "display",
                                                       ns));
    if ((from != NULL && *from) || (to != NULL && *to)) {
        json_t *period = json_object();
        mg_adapter_json_time(period, "start", from, false);
        mg_adapter_json_time(period, "end", to, false);
        if (json_object_size(period) > 0)
            json_object_set_new(out, "period", period);
        else
            json_decref(period);
    }
}

/* Sets obj[key] = [item] when item has something (FHIR forbids empty
 * objects and arrays); frees item otherwise. */
static void
set_one(json_t *obj, const char *key, json_t *item)
{
    if (json_object_size(item) > 0)
        json_object_set_new(obj, key, json_pack("[o]", item));
    else
        json_decref(item);
}

static json_t *
identifiers(const json_t *r)
{
    const char *mrn = mg_adapter_get(r, "patient", "medical_record_number");
    const json_t *mrn_id = mg_adapter_mrn_identifier(r);
    json_t *list = json_array(), *id;
    size_t i;

    if (mrn != NULL) {
        json_t *out = typed_identifier(mg_adapter_mrn_system(r), mrn,
                                       mg_adapter_mrn_type(r), "MR");
        if (mrn_id != NULL)
            identifier_details(out, mrn_id);
        json_array_append_new(list, out);
    }
    json_array_foreach(json_object_get(r, "identifiers"), i, id) {
        const char *v = json_string_value(json_object_get(id, "value"));
        const char *use = json_string_value(json_object_get(id, "use"));
        json_t *out;
        if (v == NULL || id == mrn_id)
            continue;
        out = typed_identifier(
            json_string_value(json_object_get(id, "system")), v,
            json_string_value(json_object_get(id, "type_code")), NULL);
        /* patient_identifiers.use holds FHIR's codes; old marks what a
         * merge retired ("no longer valid", R4 identifier-use). */
        if (use != NULL && strcmp(use, "usual") != 0)
            json_object_set_new(out, "use", json_string(use));
        identifier_details(out, id);
        json_array_append_new(list, out);
    }
    return list;
}

static json_t *
name(const json_t *r)
{
    json_t *n = json_object(), *given = json_array();
    const char *first = mg_adapter_get(r, "patient", "first_name");
    const char *middle = mg_adapter_get(r, "patient", "middle_name");
    const char *prefix = mg_adapter_get(r, "patient", "name_prefix");
    const char *suffix = mg_adapter_get(r, "patient", "name_suffix");

    mg_adapter_json_set(n, "family", mg_adapter_get(r, "patient",
                                                          "last_name"));
    if (first != NULL)
        json_array_append_new(given, json_string(first));
    if (middle != NULL)
        json_array_append_new(given, json_string(middle));
    if (json_array_size(given) > 0)
        json_object_set(n, "given", given);
    json_decref(given);
    if (prefix != NULL)
        json_object_set_new(n, "prefix", json_pack("[s]", prefix));
    if (suffix != NULL)
        json_object_set_new(n, "suffix", json_pack("[s]", suffix));
    return n;
}

static json_t *
address(const json_t *r)
{
    json_t *a = json_object(), *lines = json_array();
    const char *l1 = mg_adapter_get(r, "patient", "address_line1");
    const char *l2 = mg_adapter_get(r, "patient", "address_line2");

    if (l1 != NULL)
        json_array_append_new(lines, json_string(l1));
    if (l2 != NULL)
        json_array_append_new(lines, json_string(l2));
    if (json_array_size(lines) > 0)
        json_object_set(a, "line", lines);
    json_decref(lines);
    mg_adapter_json_set(a, "city", mg_adapter_get(r, "patient", "city"));
    mg_adapter_json_set(a, "state", mg_adapter_get(r, "patient", "state"));
    mg_adapter_json_set(a, "postalCode",
                              mg_adapter_get(r, "patient", "postal_code"));
    mg_adapter_json_set(a, "country",
                              mg_adapter_get(r, "patient", "country"));
    return a;
}

static int
to_outbound(const json_t *r, struct mg_buf *out, struct mg_diag *diag)
{
    const json_t *p = json_object_get(r, "patient");
    const char *phone = mg_adapter_get(r, "patient", "phone");
    const char *email = mg_adapter_get(r, "patient", "email");
    const char *merged = mg_adapter_get(r, "patient", "merged_into");
    const char *died = mg_adapter_get(r, "patient", "deceased_at");
    const char *dead_flag = mg_adapter_get(r, "patient", "deceased");
    json_t *res, *ids, *telecom;
    char ref[80];

    if (mg_adapter_get(r, "patient", "id") == NULL)
        return mg_adapter_refuse(diag, "a Patient needs the patient row's id");
    telecom = json_array();
    res = json_pack("{s:s,s:s}", "resourceType", "Patient", "id",
                    mg_adapter_get(r, "patient", "id"));
    ids = identifiers(r);
    if (json_array_size(ids) > 0)
        json_object_set(res, "identifier", ids);
    json_decref(ids);
    if (json_is_boolean(json_object_get(p, "is_active")))
        json_object_set(res, "active", json_object_get(p, "is_active"));
    set_one(res, "name", name(r));
    if (phone != NULL)
        json_array_append_new(telecom, json_pack("{s:s,s:s}", "system",
                                                 "phone", "value", phone));
    if (email != NULL)
        json_array_append_new(telecom, json_pack("{s:s,s:s}", "system",
                                                 "email", "value", email));
    if (json_array_size(telecom) > 0)
        json_object_set(res, "telecom", telecom);
    json_decref(telecom);
    /* patients.gender uses FHIR's administrative-gender codes. */
    mg_adapter_json_set(res, "gender",
                              mg_adapter_get(r, "patient", "gender"));
    mg_adapter_json_set(res, "birthDate",
                              mg_adapter_get(r, "patient", "date_of_birth"));
    if (died != NULL)
        mg_adapter_json_time(res, "deceasedDateTime", died, false);
    else if (json_is_true(json_object_get(p, "deceased")) ||
             (dead_flag != NULL && strcmp(dead_flag, "true") == 0))
        /* a boolean from the database; "true" from a mapping's table (the
         * dry run shows the mapped values before PostgreSQL casts them) */
        json_object_set_new(res, "deceasedBoolean", json_true());
    set_one(res, "address", address(r));
    if (merged != NULL) {
        snprintf(ref, sizeof(ref), "Patient/%s", merged);
        json_object_set_new(res, "link", json_pack(
            "[{s:{s:s},s:s}]", "other", "reference", ref, "type",
            "replaced-by"));
    }
    return mg_adapter_json_out(res, out);
}

const struct mg_adapter mg_adapter_fhir_patient = {
    .name = "fhir.patient",
    .accepts = NULL,
    .to_internal = NULL,
    .to_outbound = to_outbound,
};
