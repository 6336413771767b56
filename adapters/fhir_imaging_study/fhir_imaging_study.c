/* fhir.imaging_study -- internal scan -> FHIR R4 ImagingStudy (outbound
 * only until the FHIR REST issue). The Study Instance UID is the
 * urn:dicom:uid identifier, the accession the identifier typed ACSN; the
 * scan's status maps to ImagingStudy.status. */
#include <stdio.h>
#include <string.h>

#include "adapters/adapter.h"
#include "core/error.h"

/* scans.status -> ImagingStudy.status (registered | available |
 * cancelled | entered-in-error | unknown). */
static const char *
study_status(const char *s)
{
    if (s == NULL)
        return "unknown";
    if (strcmp(s, "completed") == 0 || strcmp(s, "reported") == 0)
        return "available";
    if (strcmp(s, "cancelled") == 0 || strcmp(s, "entered_in_error") == 0)
        return strcmp(s, "cancelled") == 0 ? "cancelled" : "entered-in-error";
    return "registered"; /* ordered, scheduled, in_progress */
}

/* Coding.system for scans.procedure_code_system, which holds what OBR-4.3
 * said: a URI as it is, an HL7 table 0396 name as its code system's URI
 * (FHIR R4 terminologies-systems), NULL for a name with no known URI
 * ("L", "99xxx"): Coding.system must identify the system, and a bare
 * "CPT4" names none. */
static const char *
code_system(const char *s)
{
    static const char *const map[][2] = {
        {"LN", "http://loinc.org"},
        {"C4", "http://www.ama-assn.org/go/cpt"},
        {"CPT4", "http://www.ama-assn.org/go/cpt"},
        {"SCT", "http://snomed.info/sct"},
        {"DCM", "http://dicom.nema.org/resources/ontology/DCM"}};

    if (s == NULL || mg_adapter_is_uri(s))
        return s;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(s, map[i][0]) == 0)
            return map[i][1];
    return NULL;
}

static int
to_outbound(const json_t *r, struct mg_buf *out, struct mg_diag *diag)
{
    const char *id = mg_adapter_get(r, "scan", "id");
    const char *pid = mg_adapter_get(r, "patient", "id");
    const char *uid = mg_adapter_get(r, "scan", "study_instance_uid");
    const char *acc = mg_adapter_get(r, "scan", "accession_number");
    /* Codes as FHIR takes them: "CT " (a padded OBR-24) is CT. */
    char mod_buf[32], code_buf[256];
    const char *mod = mg_adapter_code(mg_adapter_get(r, "scan", "scan_type"),
                                      mod_buf, sizeof(mod_buf));
    const char *code = mg_adapter_code(
        mg_adapter_get(r, "scan", "procedure_code"), code_buf,
        sizeof(code_buf));
    const char *desc;
    json_t *res, *ids, *coding;
    char buf[160];

    if (id == NULL || pid == NULL)
        return mg_adapter_refuse(diag, "an ImagingStudy needs the scan's and "
                                 "the patient's ids");
    ids = json_array();
    snprintf(buf, sizeof(buf), "Patient/%s", pid);
    res = json_pack("{s:s,s:s,s:s,s:{s:s}}", "resourceType", "ImagingStudy",
                    "id", id, "status",
                    study_status(mg_adapter_get(r, "scan", "status")),
                    "subject", "reference", buf);
    if (uid != NULL) {
        snprintf(buf, sizeof(buf), "urn:oid:%s", uid);
        json_array_append_new(ids, json_pack("{s:s,s:s}", "system",
                                             "urn:dicom:uid", "value", buf));
    }
    if (acc != NULL)
        json_array_append_new(ids, json_pack(
            "{s:{s:[{s:s,s:s}]},s:s}", "type", "coding", "system",
            "http://terminology.hl7.org/CodeSystem/v2-0203", "code", "ACSN",
            "value", acc));
    if (json_array_size(ids) > 0) /* FHIR forbids an empty array */
        json_object_set(res, "identifier", ids);
    json_decref(ids);
    if (mod != NULL && mg_adapter_acquisition_modality(mod))
        json_object_set_new(res, "modality", json_pack(
            "[{s:s,s:s}]", "system",
            "http://dicom.nema.org/resources/ontology/DCM", "code", mod));
    else if (mod != NULL && !mg_adapter_dicom_modality(mod))
        /* a sender's own code: no system claimed. A derived object's
         * (SR, KO, OT...) is no acquisition modality: left out. */
        json_object_set_new(res, "modality", json_pack("[{s:s}]", "code",
                                                       mod));
    mg_adapter_json_time(res, "started",
                         mg_adapter_get(r, "scan", "acquisition_date"), false);
    if (code != NULL) {
        coding = json_pack("{s:s}", "code", code);
        mg_adapter_json_set(coding, "system",
                            code_system(mg_adapter_get(
                                r, "scan", "procedure_code_system")));
        json_t *concept = json_pack("{s:[o]}", "coding", coding);
        /* What the order said the procedure is: the concept's text, as
         * docs/schema.md maps it (Coding.display is the code system's own
         * name for the code, which a local system does not give us). */
        mg_adapter_json_set(concept, "text",
                            mg_adapter_get(r, "scan",
                                           "procedure_description"));
        json_object_set_new(res, "procedureCode", json_pack("[o]", concept));
    }
    /* The study's own description (DICOM (0008,1030), which R4 maps to
     * ImagingStudy.description), else what was ordered. */
    desc = mg_adapter_get(r, "scan", "study_description");
    mg_adapter_json_set(res, "description",
                        desc ? desc
                             : mg_adapter_get(r, "scan",
                                              "procedure_description"));
    return mg_adapter_json_out(res, out);
}

const struct mg_adapter mg_adapter_fhir_imaging_study = {
    .name = "fhir.imaging_study",
    .accepts = NULL,
    .to_internal = NULL,
    .to_outbound = to_outbound,
};
