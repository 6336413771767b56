/* Unit tests for the mapping engine: the shipped mappings/ folder applied
 * to real messages in tests/data/hl7v2 (values checked against the message
 * files by hand), explicit nulls, fallbacks, conditions, transforms, load
 * errors with file:line:key, extends and route precedence, unused fields,
 * the dry run, change detection and the FHIRPath subset on
 * tests/data/fhir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "core/alloc.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/jsonpos.h"
#include "mapping/mapping.h"

#define MAPPINGS MG_SOURCE_DIR "/mappings"
#define HL7 MG_TESTDATA_DIR "/hl7v2"
#define FHIR MG_TESTDATA_DIR "/fhir"

/* ---- helpers ------------------------------------------------------- */

static struct mg_mapping_set *shipped; /* loaded once for the group */

static int
setup_shipped(void **state)
{
    (void)state;
    return mg_mapping_set_load(MAPPINGS, &shipped, stderr) == MG_OK ? 0 : -1;
}

static int
teardown_shipped(void **state)
{
    (void)state;
    mg_mapping_set_free(shipped);
    return 0;
}


/* One message mapped: the arena, text and result live until done(). */
struct mapped {
    struct mg_arena arena;
    char *text;
    struct mg_hl7v2_msg *msg;
    const struct mg_mapping_route *route;
    struct mg_mapping_result res;
    struct mg_diag diag;
    int rc;
};

static void
map_text(struct mapped *m, const struct mg_mapping_set *set, const char *text,
         size_t len)
{
    struct mg_diag pd;

    memset(m, 0, sizeof(*m));
    mg_arena_init(&m->arena, 65536, 0);
    m->text = malloc(len + 1);
    assert_non_null(m->text);
    memcpy(m->text, text, len);
    m->text[len] = '\0';
    assert_int_equal(mg_hl7v2_parse(mg_str_n(m->text, len), NULL, &m->arena,
                                    &m->msg, &pd),
                     MG_OK);
    assert_int_equal(mg_mapping_route_find(set, &m->msg->hdr, NULL, &m->route),
                     MG_OK);
    m->rc = mg_mapping_apply(m->route, m->msg, &m->arena, &m->res, &m->diag);
}

static void
map_file(struct mapped *m, const char *path)
{
    size_t len;
    char *text = mg_test_read_file(path, &len);

    assert_non_null(text);
    map_text(m, shipped, text, len);
    free(text);
    assert_int_equal(m->rc, MG_OK);
}

static void
done(struct mapped *m)
{
    mg_arena_dispose(&m->arena);
    free(m->text);
}

/* The value of target as a C string; "(absent)" / "(null)". */
static const char *
val(const struct mapped *m, const char *target)
{
    static char buf[4][8192];
    static int k;
    const struct mg_mapping_value *v = mg_mapping_result_get(&m->res, target);

    if (v == NULL)
        return "(absent)";
    if (v->null)
        return "(null)";
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%.*s", (int)v->str.len, v->str.ptr);
    return buf[k];
}

static const char *
item_val(const struct mg_mapping_item *it, const char *name)
{
    static char buf[4][8192];
    static int k;
    const struct mg_mapping_value *v = mg_mapping_item_get(it, name);

    if (v == NULL)
        return "(absent)";
    if (v->null)
        return "(null)";
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%.*s", (int)v->str.len, v->str.ptr);
    return buf[k];
}

/* A temporary mapping folder with the given files (name, content pairs,
 * NULL-terminated); names may include "tables/". */
static void
make_dir(char *dir, size_t size, ...)
{
    const char *name, *content;
    char path[512];
    va_list ap;
    FILE *f;

    snprintf(dir, size, "/tmp/mg_map_test_XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/tables", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    va_start(ap, size);
    while ((name = va_arg(ap, const char *)) != NULL) {
        content = va_arg(ap, const char *);
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(content, f);
        fclose(f);
    }
    va_end(ap);
}

static void
remove_dir(const char *dir)
{
    char cmd[600];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Loads dir expecting failure; returns the error text (malloc'd). */
static char *
load_errors(const char *dir)
{
    struct mg_mapping_set *set = NULL;
    char *out = NULL;
    size_t len = 0;
    FILE *err = open_memstream(&out, &len);

    assert_non_null(err);
    assert_int_equal(mg_mapping_set_load(dir, &set, err), MG_ECONF);
    assert_null(set);
    fclose(err);
    return out;
}

#define MSH_ADT(type) "MSH|^~\\&|APP|FAC|GW|GW|20240101120000||" type \
                      "|1|P|2.5.1\r"

/* ---- the shipped set ------------------------------------------------ */

static void
test_set_load_shipped(void **state)
{
    (void)state;
    assert_int_equal(mg_mapping_set_count(shipped), 3);
    assert_string_equal(
        mg_mapping_route_adapter(mg_mapping_route_by_name(shipped, "adt")),
        "hl7v2.adt");
    assert_string_equal(
        mg_mapping_route_adapter(mg_mapping_route_by_name(shipped, "orders")),
        "hl7v2.order");
    assert_string_equal(
        mg_mapping_route_adapter(mg_mapping_route_by_name(shipped, "results")),
        "hl7v2.result");
    assert_null(mg_mapping_route_by_name(shipped, "nope"));
}

/* Every message of a type the shipped routes take maps without error,
 * except the sample order that carries no accession or filler number. */
static void
test_apply_every_shipped_message(void **state)
{
    static const char *const files[] = {
        "dcm4che/ADT_A31-UpdatePersonInfo.hl7",
        "dcm4che/ADT_A31-UpdatePersonInfo-Veterinary.hl7",
        "dcm4che/ADT_A40-PatientMerge.hl7",
        "dcm4che/OMI_O23-ImagingOrder.hl7",
        "dcm4che/ORM_O01-GeneralOrder.hl7",
        "dcm4che/ORU_R01-CDA.hl7",
        "dcm4che/ORU_R01-PDF.hl7",
        "dcm4che/ORU_R01-SR.hl7",
        "fhir-converter/ADT-A01-01.hl7",
        "fhir-converter/ADT-A01-02.hl7",
        "fhir-converter/ADT-A04-01.hl7",
        "fhir-converter/ADT-A04-02.hl7",
        "fhir-converter/ADT-A08-01.hl7",
        "fhir-converter/ADT-A08-02.hl7",
        "fhir-converter/ADT-A40-01.hl7",
        "fhir-converter/ADT-A40-02.hl7",
        "fhir-converter/ADT01-23.hl7",
        "fhir-converter/ADT01-28.hl7",
        "fhir-converter/ADT04-23.hl7",
        "fhir-converter/ADT04-251.hl7",
        "fhir-converter/ADT04-28.hl7",
        "fhir-converter/LAB-ORM-1.hl7",
        "fhir-converter/LAB-ORU-1.hl7",
        "fhir-converter/LAB-ORU-2.hl7",
        "fhir-converter/LRI_2.0-NG_CBC_Typ_Message.hl7",
        "fhir-converter/OML-O21-02.hl7",
        "fhir-converter/ORM-O01-01.hl7",
        "fhir-converter/ORM-O01-02.hl7",
        "fhir-converter/ORM-O01-03.hl7",
        "fhir-converter/ORM-O01-04.hl7",
        "fhir-converter/ORM-O01-05.hl7",
        "fhir-converter/ORU-R01-01.hl7",
        "fhir-converter/ORU-R01-RMGEAD.hl7",
    };
    char path[512];
    struct mapped m;

    (void)state;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", HL7, files[i]);
        map_file(&m, path);
        assert_non_null(mg_mapping_result_get(&m.res,
                                              "patient.medical_record_number"));
        done(&m);
    }
}

static void
test_adt_fhir_converter_v251(void **state)
{
    struct mapped m;
    const struct mg_mapping_group *g;

    (void)state;
    map_file(&m, HL7 "/fhir-converter/ADT01-28.hl7");
    assert_string_equal(mg_mapping_route_name(m.route), "adt");
    /* PID|1||PATID1234^5^M11^ADT1^MR^GOOD HEALTH HOSPITAL~123456789^^^USSSA^SS
     * ||EVERYMAN^ADAM^A^III||19610615|M||C|2222 HOME STREET^^GREENSBORO^NC^
     * 27401-1020|GL|(555) 555-2004|(555)555-2004||S|| */
    assert_string_equal(val(&m, "patient.medical_record_number"), "PATID1234");
    assert_string_equal(val(&m, "patient.last_name"), "EVERYMAN");
    assert_string_equal(val(&m, "patient.first_name"), "ADAM");
    assert_string_equal(val(&m, "patient.middle_name"), "A");
    assert_string_equal(val(&m, "patient.name_suffix"), "III");
    assert_string_equal(val(&m, "patient.date_of_birth"), "1961-06-15");
    assert_string_equal(val(&m, "patient.gender"), "male");
    assert_string_equal(val(&m, "patient.phone"), "(555) 555-2004");
    assert_string_equal(val(&m, "patient.address_line1"), "2222 HOME STREET");
    assert_string_equal(val(&m, "patient.city"), "GREENSBORO");
    assert_string_equal(val(&m, "patient.state"), "NC");
    assert_string_equal(val(&m, "patient.postal_code"), "27401-1020");
    assert_string_equal(val(&m, "patient.marital_status"), "S");
    assert_string_equal(val(&m, "patient.country"), "(absent)");
    /* EVN|A01|20070818112300+0700||: read by no adapter, so not mapped
     * (a malformed EVN-2 must not refuse the registration) */
    assert_string_equal(val(&m, "event.recorded_at"), "(absent)");
    assert_string_equal(val(&m, "merge.prior_medical_record_number"),
                        "(absent)");
    g = mg_mapping_result_group(&m.res, "patient_identifiers[]");
    assert_non_null(g);
    assert_int_equal(g->nitem, 2);
    assert_string_equal(item_val(&g->item[0], "value"), "PATID1234");
    assert_string_equal(item_val(&g->item[0], "system"), "ADT1");
    assert_string_equal(item_val(&g->item[0], "type_code"), "MR");
    assert_string_equal(item_val(&g->item[0], "assigning_facility"),
                        "GOOD HEALTH HOSPITAL");
    assert_string_equal(item_val(&g->item[1], "value"), "123456789");
    assert_string_equal(item_val(&g->item[1], "system"), "USSSA");
    assert_string_equal(item_val(&g->item[1], "type_code"), "SS");
    assert_int_equal(g->item[1].rep, 2);
    assert_string_equal(g->item[1].segment, "PID");
    /* entity/column split for the adapters */
    const struct mg_mapping_value *v =
        mg_mapping_result_get(&m.res, "patient.last_name");
    assert_true(mg_str_eqz(v->entity, "patient"));
    assert_true(mg_str_eqz(v->column, "last_name"));
    done(&m);
}

static void
test_adt_fhir_converter_v28(void **state)
{
    struct mapped m;
    const struct mg_mapping_group *g;

    (void)state;
    map_file(&m, HL7 "/fhir-converter/ADT-A01-02.hl7");
    /* PID-3 PATID1234^5^M11^test1&2.16.1&HCD^MR^...; PID-5
     * EVERYMAN&&&&Aniston^ADAM^A^III^Dr.^...; PID-7 198808181126+0215;
     * PID-11 1000&Hospital Lane^Ste. 123^Ann Arbor ^MI^99999^USA; PID-29
     * 20080825111630+0115; PID-30 Y. */
    assert_string_equal(val(&m, "patient.medical_record_number"), "PATID1234");
    assert_string_equal(val(&m, "patient.last_name"), "EVERYMAN");
    assert_string_equal(val(&m, "patient.name_prefix"), "Dr.");
    assert_string_equal(val(&m, "patient.date_of_birth"), "1988-08-18");
    assert_string_equal(val(&m, "patient.address_line1"),
                        "1000 Hospital Lane");
    assert_string_equal(val(&m, "patient.address_line2"), "Ste. 123");
    assert_string_equal(val(&m, "patient.country"), "USA");
    assert_string_equal(val(&m, "patient.deceased"), "true");
    assert_string_equal(val(&m, "patient.deceased_at"),
                        "2008-08-25T11:16:30+01:15");
    g = mg_mapping_result_group(&m.res, "patient_identifiers");
    assert_int_equal(g->nitem, 2);
    assert_string_equal(item_val(&g->item[0], "system"), "test1");
    assert_string_equal(item_val(&g->item[0], "universal_id"), "2.16.1");
    assert_string_equal(item_val(&g->item[0], "universal_id_type"), "HCD");
    done(&m);
}

static void
test_adt_merge(void **state)
{
    struct mapped m;
    const struct mg_mapping_group *g;

    (void)state;
    /* PID|||NEW_PID_1^^^ADT1||New_Smith^Lucy^Mark||20141014|F
     * MRG|OLD_PID_1^^^ADT1||||||Old_Smith^Lucy^Mark */
    map_file(&m, HL7 "/dcm4che/ADT_A40-PatientMerge.hl7");
    assert_string_equal(val(&m, "patient.medical_record_number"), "NEW_PID_1");
    assert_string_equal(val(&m, "patient.last_name"), "New_Smith");
    assert_string_equal(val(&m, "patient.gender"), "female");
    assert_string_equal(val(&m, "merge.prior_medical_record_number"),
                        "OLD_PID_1");
    assert_string_equal(val(&m, "merge.prior_last_name"), "Old_Smith");
    g = mg_mapping_result_group(&m.res, "merge_prior_identifiers");
    assert_int_equal(g->nitem, 1);
    assert_string_equal(item_val(&g->item[0], "system"), "ADT1");
    done(&m);

    /* PID|1||12345^^^BCBS^MR||Test^Test^A||20180205|F|||123 Any Street^^
     * Raleigh^NC^27615||(111)111-1111^^PH^^^111^1111111
     * MRG|56789^^^BCBS^MR */
    map_file(&m, HL7 "/fhir-converter/ADT-A40-02.hl7");
    assert_string_equal(val(&m, "patient.medical_record_number"), "12345");
    assert_string_equal(val(&m, "merge.prior_medical_record_number"), "56789");
    assert_string_equal(val(&m, "patient.phone"), "(111)111-1111");
    assert_string_equal(val(&m, "patient.city"), "Raleigh");
    assert_string_equal(val(&m, "patient.date_of_birth"), "2018-02-05");
    done(&m);
}

static void
test_orders_ihe_orm_with_zds(void **state)
{
    struct mapped m;

    (void)state;
    /* MSH-9 says OMI^O23; no IPC, so OBR and ZDS give the study. */
    map_file(&m, HL7 "/dcm4che/ORM_O01-GeneralOrder.hl7");
    assert_string_equal(mg_mapping_route_name(m.route), "orders");
    assert_string_equal(val(&m, "patient.medical_record_number"), "PID_1");
    assert_string_equal(val(&m, "patient.last_name"), "Smith");
    assert_string_equal(val(&m, "patient.first_name"), "Lucy");
    assert_string_equal(val(&m, "patient.date_of_birth"), "2014-10-14");
    assert_string_equal(val(&m, "order.control"), "NW");
    assert_string_equal(val(&m, "scan.accession_number"), "AccessionNumber");
    assert_string_equal(val(&m, "scan.study_instance_uid"),
                        "1.2.392.200036.9125.0.198811291108.7");
    assert_string_equal(val(&m, "scan.procedure_code"), "10637-7");
    assert_string_equal(val(&m, "scan.procedure_code_system"), "LN");
    assert_string_equal(val(&m, "scan.procedure_description"),
                        "Microscopic Observation");
    assert_string_equal(val(&m, "scan.scan_type"), "CT");
    assert_string_equal(val(&m, "scan.requested_procedure_id"),
                        "RequestedProcID");
    /* ORC-7.6 "RequestedProcedurePriority" is no table 0027 code. */
    assert_string_equal(val(&m, "scan.priority"), "routine");
    /* TQ1-7 200008161510 */
    assert_string_equal(val(&m, "scan.scheduled_at"), "2000-08-16T15:10");
    assert_string_equal(val(&m, "scan.placer_order_number"),
                        "PlacerOrderNumberImagingServiceRequest");
    /* PV1-8 ^ReferringPhysicianFN^ReferringPhysicianGN^...: the referring
     * physician (IHE: DICOM Referring Physician's Name), not OBR-16's
     * requesting one; no id in PV1-8.1, and none from OBR-16 either
     * (same_source: the id of the name's XCN). */
    assert_string_equal(val(&m, "scan.referring_physician_name"),
                        "ReferringPhysicianGN ReferringPhysicianFN");
    assert_string_equal(val(&m, "scan.referring_physician_id"), "(absent)");
    done(&m);
}

static void
test_orders_omi_ipc(void **state)
{
    struct mapped m;

    (void)state;
    /* IPC|AccessionNumber|RequestedProcID|1.2.392...7|ScheduledProcStepID|CT */
    map_file(&m, HL7 "/dcm4che/OMI_O23-ImagingOrder.hl7");
    assert_string_equal(val(&m, "scan.accession_number"), "AccessionNumber");
    assert_string_equal(val(&m, "scan.study_instance_uid"),
                        "1.2.392.200036.9125.0.198811291108.7");
    assert_string_equal(val(&m, "scan.scan_type"), "CT");
    assert_string_equal(val(&m, "scan.requested_procedure_id"),
                        "RequestedProcID");
    done(&m);
}

static void
test_orders_fhir_converter(void **state)
{
    struct mapped m;

    (void)state;
    /* ORC|NW|1101^GHHPlacer|1201^GHHFiller||SC||12&lb^BID&12:30:05^S50^
     * 20020315^...||202110201126+0215|... OBR|1|||24725-4^CT Head^LN|||...
     * 005454^RAD^ROBIN^B (OBR-16), PV1-8 0310^REFER^LINDA^C; no OBR-18, so the accession falls back
     * to the filler order number. */
    map_file(&m, HL7 "/fhir-converter/ORM-O01-01.hl7");
    assert_string_equal(val(&m, "scan.accession_number"), "1201");
    assert_string_equal(val(&m, "scan.placer_order_number"), "1101");
    assert_string_equal(val(&m, "scan.filler_order_number"), "1201");
    assert_string_equal(val(&m, "scan.procedure_code"), "24725-4");
    assert_string_equal(val(&m, "scan.procedure_description"), "CT Head");
    assert_string_equal(val(&m, "scan.ordered_at"), "2021-10-20T11:26+02:15");
    assert_string_equal(val(&m, "scan.scheduled_at"), "2002-03-15");
    /* PV1-8 0310^REFER^LINDA^C, the referring doctor; OBR-16 005454^RAD^
     * ROBIN^B is the ordering provider. */
    assert_string_equal(val(&m, "scan.referring_physician_name"),
                        "LINDA REFER");
    assert_string_equal(val(&m, "scan.referring_physician_id"), "0310");
    assert_string_equal(val(&m, "order.status"), "SC");
    done(&m);
}

/* ORC-2 only: no IPC-1, OBR-18, ORC-3 or OBR-3. */
static void
test_orders_required_missing(void **state)
{
    size_t len;
    char *text = mg_test_read_file(HL7 "/fhir-converter/ORM-O01-06.hl7", &len);
    struct mapped m;

    (void)state;
    assert_non_null(text);
    map_text(&m, shipped, text, len);
    free(text);
    assert_int_equal(m.rc, MG_EMAPPING);
    assert_int_equal(m.diag.code, 101);
    assert_string_equal(m.diag.path, "scan.accession_number");
    /* the first path tried whose segment the message has */
    assert_string_equal(m.diag.segment, "ORC");
    assert_int_equal(m.diag.field, 3);
    assert_non_null(strstr(m.diag.text, "IPC-1.1, OBR-18, ORC-3.1, OBR-3.1"));
    done(&m);
}

static void
test_results_sr(void **state)
{
    struct mapped m;
    const char *text;

    (void)state;
    map_file(&m, HL7 "/dcm4che/ORU_R01-SR.hl7");
    assert_string_equal(mg_mapping_route_name(m.route), "results");
    assert_string_equal(val(&m, "scan.accession_number"), "AccessionNumber");
    /* OBX|1|ST|113014^DICOM Study^DCM||1.2.392.200036.9125.0.198811291108.7 */
    assert_string_equal(val(&m, "scan.study_instance_uid"),
                        "1.2.392.200036.9125.0.198811291108.7");
    assert_string_equal(val(&m, "report.report_status"), "final");
    assert_string_equal(val(&m, "report.report_type"), "radiology");
    /* OBR-32 &VerifyingObserverFN&VerifyingObserverGN&... */
    assert_string_equal(val(&m, "report.reporting_radiologist_name"),
                        "VerifyingObserverGN VerifyingObserverFN");
    assert_string_equal(val(&m, "report.effective_at"), "2022-03-24T19:30:57");
    text = val(&m, "report.findings_text");
    assert_non_null(strstr(text, "The right kidney is slightly enlarged, but "
                                 "otherwise normal\nThere is a small mass"));
    assert_true(strncmp(text, "The right kidney", 16) == 0);
    assert_non_null(strstr(text, "\n4mmx6mm\n5mmx7mm\n"));
    assert_non_null(strstr(text, "Body Region = Body"));
    assert_null(strstr(text, "1.2.392")); /* UID observations left out */
    assert_null(strstr(text, "C65.2"));   /* CE observations too */
    assert_string_equal(val(&m, "report.recommendations"),
                        "Follow-up with CT of the Abdomen without contrast "
                        "is recommended in 6 months.");
    assert_string_equal(val(&m, "report.impression"), "(absent)");
    assert_int_equal(mg_mapping_result_group(&m.res, "scan_files")->nitem, 0);
    done(&m);
}

static void
test_results_pdf_and_cda(void **state)
{
    struct mapped m;
    const struct mg_mapping_group *g;

    (void)state;
    /* OBX|4|ED|18748-4^Diagnostic Imaging Report^LN||^Application^PDF^
     * Base64^JVBERi0xLjMN... */
    map_file(&m, HL7 "/dcm4che/ORU_R01-PDF.hl7");
    assert_string_equal(val(&m, "report.findings_text"), "(absent)");
    g = mg_mapping_result_group(&m.res, "scan_files");
    assert_int_equal(g->nitem, 1);
    assert_int_equal(g->item[0].seq, 4);
    assert_string_equal(item_val(&g->item[0], "value_type"), "ED");
    assert_string_equal(item_val(&g->item[0], "observation_code"), "18748-4");
    assert_string_equal(item_val(&g->item[0], "ed_type_of_data"),
                        "Application");
    assert_string_equal(item_val(&g->item[0], "ed_subtype"), "PDF");
    assert_string_equal(item_val(&g->item[0], "ed_encoding"), "Base64");
    assert_true(strncmp(item_val(&g->item[0], "ed_data"), "JVBERi0xLjMN",
                        12) == 0);
    assert_string_equal(item_val(&g->item[0], "storage_uri"), "(absent)");
    done(&m);

    /* Two 113014 observations: the first one wins. */
    map_file(&m, HL7 "/dcm4che/ORU_R01-CDA.hl7");
    assert_string_equal(val(&m, "scan.study_instance_uid"),
                        "2.16.840.1.113669.632.20.540351.10004609971");
    g = mg_mapping_result_group(&m.res, "scan_files");
    assert_int_equal(g->nitem, 1);
    assert_string_equal(item_val(&g->item[0], "ed_subtype"), "text/xml");
    done(&m);
}

static void
test_results_fhir_converter(void **state)
{
    struct mapped m;
    const struct mg_mapping_group *g;

    (void)state;
    /* PID|||555-44-4444||EVERYWOMAN^EVE^E...; OBR-25 F */
    map_file(&m, HL7 "/fhir-converter/ORU-R01-RMGEAD.hl7");
    assert_string_equal(val(&m, "patient.medical_record_number"),
                        "555-44-4444");
    assert_string_equal(val(&m, "patient.last_name"), "EVERYWOMAN");
    assert_string_equal(val(&m, "report.report_status"), "final");
    assert_string_equal(val(&m, "scan.filler_order_number"), "1045813");
    assert_string_equal(val(&m, "report.effective_at"),
                        "2002-02-15T07:30:00+06:00");
    done(&m);

    /* RP observations become references. */
    map_file(&m, HL7 "/fhir-converter/ORU-R01-01.hl7");
    g = mg_mapping_result_group(&m.res, "scan_files");
    assert_int_equal(g->nitem, 3);
    assert_string_equal(item_val(&g->item[0], "storage_uri"),
                        "https://testurl.com");
    assert_string_equal(item_val(&g->item[0], "rp_subtype"), "PICT");
    assert_string_equal(item_val(&g->item[1], "value_type"), "ED");
    done(&m);
}

/* ---- nulls, fallbacks, conditions (synthetic messages) --------------- */

/* Maps an A01 whose PID is pid_head, each case's input, then the end of
 * the segment, and checks the shipped route's target gives each case's
 * value. */
static void
check_pid_cases(const char *pid_head, const char *target,
                const char *const (*cases)[2], size_t n)
{
    char msg[256];
    struct mapped m;

    for (size_t i = 0; i < n; i++) {
        int len = snprintf(msg, sizeof(msg), MSH_ADT("ADT^A01") "%s%s\r",
                           pid_head, cases[i][0]);
        map_text(&m, shipped, msg, (size_t)len);
        assert_int_equal(m.rc, MG_OK);
        assert_string_equal(val(&m, target), cases[i][1]);
        done(&m);
    }
}

/* The shipped sex table follows the HL7 v2-to-FHIR ConceptMap for table
 * 0001 (A and N are other) and never refuses an odd code. */
static void
test_shipped_sex_table(void **state)
{
    static const char *const cases[][2] = {
        {"F", "female"}, {"M", "male"},     {"O", "other"},  {"A", "other"},
        {"N", "other"},  {"U", "unknown"}, {"X", "unknown"}};

    (void)state;
    check_pid_cases("PID|1||123^^^X^MR||Doe||19800101|", "patient.gender",
                    cases, MG_ARRAY_LEN(cases));
}

/* XAD.1 is an SAD: street address, street name, dwelling number. The
 * shipped route joins them, leaving out a part the address holds. */
static void
test_shipped_street_address(void **state)
{
    static const char *const cases[][2] = {
        {"12 Main St&Main St&12", "12 Main St"},
        {"12 MAIN ST&Main St", "12 MAIN ST"},
        {"1000&Hospital Lane", "1000 Hospital Lane"},
        {"&Main St&12", "Main St 12"},
        {"12 Mainly St&Main&12", "12 Mainly St Main"},
        {"Main&Main", "Main"}};

    (void)state;
    check_pid_cases("PID|1||123^^^X^MR||Doe||||||", "patient.address_line1",
                    cases, MG_ARRAY_LEN(cases));
}

/* The referrer's id comes from the XCN its name came from: OBR-16 names
 * Rita Ray without an id, ORC-12 is another person's id and name. */
static void
test_shipped_referrer_id_is_of_the_named_referrer(void **state)
{
    static const char msg[] =
        "MSH|^~\\&|RIS|HOSP|MG|MG|20260101120000||ORM^O01|X1|P|2.5\r"
        "PID|1||123^^^HOSP^MR||Doe^John\r"
        "ORC|NW|P1|F1|||||||||999^Other^Olga\r"
        "OBR|1|P1|F1|71046^XR CHEST^CPT4||||||||||||^Ray^Rita||ACC1\r";
    struct mapped m;

    (void)state;
    map_text(&m, shipped, msg, sizeof(msg) - 1);
    assert_int_equal(m.rc, MG_OK);
    assert_string_equal(val(&m, "scan.referring_physician_name"), "Rita Ray");
    assert_string_equal(val(&m, "scan.referring_physician_id"), "(absent)");
    done(&m);
}

static void
test_explicit_null(void **state)
{
    static const char msg[] = MSH_ADT("ADT^A08")
        "PID|1||123^^^X^MR||\"\"^John^\"\"||\"\"|\"\"||||||\r";
    struct mapped m;
    const struct mg_mapping_value *v;

    (void)state;
    map_text(&m, shipped, msg, sizeof(msg) - 1);
    assert_int_equal(m.rc, MG_OK);
    assert_string_equal(val(&m, "patient.last_name"), "(null)");
    assert_string_equal(val(&m, "patient.first_name"), "John");
    assert_string_equal(val(&m, "patient.middle_name"), "(null)");
    /* transforms and tables leave a null alone */
    assert_string_equal(val(&m, "patient.date_of_birth"), "(null)");
    assert_string_equal(val(&m, "patient.gender"), "(null)");
    /* empty is absent, not null */
    assert_string_equal(val(&m, "patient.phone"), "(absent)");
    v = mg_mapping_result_get(&m.res, "patient.last_name");
    assert_true(v->null);
    assert_int_equal(v->str.len, 0);
    done(&m);
}

static void
test_fallbacks_and_conditions(void **state)
{
    static const char typed[] = MSH_ADT("ADT^A04")
        "PID|1||A1^^^X^PI~M2^^^X^MR~S3^^^Y^SS||Doe^Jo\r";
    static const char untyped[] = MSH_ADT("ADT^A04")
        "PID|1||A1^^^X~B2^^^Y||Doe^Jo\r";
    static const char email[] = MSH_ADT("ADT^A04")
        "PID|1||A1||Doe||||||||555^PRN^PH~^NET^Internet^jo@example.org\r";
    struct mapped m;

    (void)state;
    map_text(&m, shipped, typed, sizeof(typed) - 1);
    assert_string_equal(val(&m, "patient.medical_record_number"), "M2");
    assert_int_equal(mg_mapping_result_group(&m.res, "patient_identifiers")
                         ->nitem,
                     3);
    done(&m);
    map_text(&m, shipped, untyped, sizeof(untyped) - 1);
    assert_string_equal(val(&m, "patient.medical_record_number"), "A1");
    done(&m);
    map_text(&m, shipped, email, sizeof(email) - 1);
    assert_string_equal(val(&m, "patient.email"), "jo@example.org");
    assert_string_equal(val(&m, "patient.phone"), "555");
    done(&m);
}

/* FT formatting is decoded by the codec; TX repetitions are lines. */
static void
test_results_text_lines(void **state)
{
    static const char msg[] =
        "MSH|^~\\&|RIS|FAC|GW|GW|20240101||ORU^R01|9|P|2.5.1\r"
        "PID|1||77^^^X^MR||Roe^Ann\r"
        "OBR|1||F1|CT^Head||||||||||||||ACC9|||||||P\r"
        "OBX|1|FT|^Report||line one\\.br\\line two||||||F\r"
        "OBX|2|TX|19005-8^IMPRESSION^LN||first~second||||||F\r"
        "OBX|3|NM|^Dose||5||||||F\r";
    struct mapped m;

    (void)state;
    map_text(&m, shipped, msg, sizeof(msg) - 1);
    assert_int_equal(m.rc, MG_OK);
    assert_string_equal(val(&m, "report.findings_text"),
                        "line one\nline two\nfirst\nsecond");
    assert_string_equal(val(&m, "report.impression"), "first\nsecond");
    assert_string_equal(val(&m, "report.report_status"), "preliminary");
    assert_string_equal(val(&m, "scan.accession_number"), "ACC9");
    done(&m);
}

/* A report's blank lines (TX OBX without a value) are kept between its
 * lines, not before the first or after the last; an empty OBX of another
 * type is no line at all. */
static void
test_results_blank_lines(void **state)
{
    static const char msg[] =
        "MSH|^~\\&|RIS|FAC|GW|GW|20240101||ORU^R01|9|P|2.5.1\r"
        "PID|1||77^^^X^MR||Roe^Ann\r"
        "OBR|1||F1|CT^Head||||||||||||||ACC9|||||||F\r"
        "OBX|1|TX|59776-5^Findings^LN||||||||F\r"
        "OBX|2|TX|59776-5^Findings^LN||FINDINGS:||||||F\r"
        "OBX|3|TX|59776-5^Findings^LN||||||||F\r"
        "OBX|4|TX|59776-5^Findings^LN||No acute disease.||||||F\r"
        "OBX|5|NM|^Dose||||||||F\r"
        "OBX|6|TX|59776-5^Findings^LN||\"\"||||||F\r"
        "OBX|7|TX|19005-8^IMPRESSION^LN||Normal.||||||F\r"
        "OBX|8|TX|59776-5^Findings^LN||||||||F\r";
    struct mapped m;

    (void)state;
    map_text(&m, shipped, msg, sizeof(msg) - 1);
    assert_int_equal(m.rc, MG_OK);
    assert_string_equal(val(&m, "report.findings_text"),
                        "FINDINGS:\n\nNo acute disease.\n\nNormal.");
    assert_string_equal(val(&m, "report.impression"), "Normal.");
    done(&m);
}

/* Blank repetitions of a TX OBX-5 ("A~~B") are blank lines, as blank OBX
 * are (HL7 v2.5.1 7.4.2: repetitions of a TX value are line breaks);
 * leading and trailing blanks are dropped, as between OBX. */
static void
test_results_blank_repetitions(void **state)
{
    static const char msg[] =
        "MSH|^~\\&|RIS|FAC|GW|GW|20240101||ORU^R01|9|P|2.5.1\r"
        "PID|1||77^^^X^MR||Roe^Ann\r"
        "OBR|1||F1|CT^Head||||||||||||||ACC9|||||||F\r"
        "OBX|1|TX|59776-5^Findings^LN||~FINDINGS:~~No acute disease.~||||||F\r"
        "OBX|2|TX|19005-8^IMPRESSION^LN||Normal.~~Follow up.||||||F\r";
    struct mapped m;

    (void)state;
    map_text(&m, shipped, msg, sizeof(msg) - 1);
    assert_int_equal(m.rc, MG_OK);
    assert_string_equal(val(&m, "report.findings_text"),
                        "FINDINGS:\n\nNo acute disease.\nNormal.\n\nFollow up.");
    assert_string_equal(val(&m, "report.impression"), "Normal.\n\nFollow up.");
    done(&m);
}

/* TX, FT and ST have no components (HL7 v2.5.1 2.A.80, 2.A.31, 2.A.74),
 * yet senders leave '&' and '^' in report text unescaped: read whole, the
 * text keeps them instead of ending at the first one. */
static void
test_results_unescaped_separators_in_text(void **state)
{
    static const char msg[] =
        "MSH|^~\\&|RIS|FAC|GW|GW|20240101||ORU^R01|9|P|2.5.1\r"
        "PID|1||77^^^X^MR||Roe^Ann\r"
        "OBR|1||F1|CT^Head||||||||||||||ACC9|||||||F\r"
        "OBX|1|TX|59776-5^Findings^LN||CT CHEST: R & L lungs clear.~"
        "Size 3^4 cm, \\T\\ stable.^^||||||F\r"
        "OBX|2|FT|19005-8^IMPRESSION^LN||BI-RADS 4: biopsy L 2:00 & R 10:00"
        "\\.br\\^ axilla||||||F\r";
    struct mapped m;

    (void)state;
    map_text(&m, shipped, msg, sizeof(msg) - 1);
    assert_int_equal(m.rc, MG_OK);
    assert_string_equal(val(&m, "report.findings_text"),
                        "CT CHEST: R & L lungs clear.\n"
                        "Size 3^4 cm, & stable.\n"
                        "BI-RADS 4: biopsy L 2:00 & R 10:00\n^ axilla");
    assert_string_equal(val(&m, "report.impression"),
                        "BI-RADS 4: biopsy L 2:00 & R 10:00\n^ axilla");
    done(&m);
}

/* OBR-32 is an NDL whose first component is a CNN (id&family&given), the
 * time in NDL.2. Senders that write it as an XCN (id^family^given) have
 * the family name in OBR-32.2: that is no signing time, and the report is
 * not refused for it. */
static void
test_results_interpreter_written_as_xcn(void **state)
{
    static const char ndl[] =
        "MSH|^~\\&|RIS|FAC|GW|GW|20240101||ORU^R01|9|P|2.5.1\r"
        "PID|1||77^^^X^MR||Roe^Ann\r"
        "OBR|1||F1|CT^Head||||||||||||||ACC9|||||||F|||||||"
        "ID77&Ray&Rita^20240102103000\r"
        "OBX|1|TX|59776-5^Findings^LN||Normal.||||||F\r";
    static const char xcn[] =
        "MSH|^~\\&|RIS|FAC|GW|GW|20240101||ORU^R01|9|P|2.3\r"
        "PID|1||77^^^X^MR||Roe^Ann\r"
        "OBR|1||F1|CT^Head||||||||||||||ACC9|||||||F|||||||"
        "12345^SMITH^JOHN^^^DR\r"
        "OBX|1|TX|59776-5^Findings^LN||Normal.||||||F\r";
    struct mapped m;

    (void)state;
    map_text(&m, shipped, ndl, sizeof(ndl) - 1);
    assert_int_equal(m.rc, MG_OK);
    assert_string_equal(val(&m, "report.signed_at"), "2024-01-02T10:30:00");
    assert_string_equal(val(&m, "report.reporting_radiologist_name"),
                        "Rita Ray");
    done(&m);
    map_text(&m, shipped, xcn, sizeof(xcn) - 1);
    assert_int_equal(m.rc, MG_OK);
    assert_string_equal(val(&m, "report.signed_at"), "(absent)");
    assert_string_equal(val(&m, "report.reporting_radiologist_id"), "12345");
    assert_string_equal(val(&m, "report.findings_text"), "Normal.");
    done(&m);
}

/* A document OBX-11 marks wrong (W) or deleted (D) is no attachment, as
 * such text is no report line. */
static void
test_results_wrong_attachment_is_not_kept(void **state)
{
    static const char msg[] =
        "MSH|^~\\&|RIS|FAC|GW|GW|20240101||ORU^R01|9|P|2.5.1\r"
        "PID|1||77^^^X^MR||Roe^Ann\r"
        "OBR|1||F1|CT^Head||||||||||||||ACC9|||||||F\r"
        "OBX|1|ED|18748-4^Report^LN||^AP^PDF^Base64^b2xk||||||W\r"
        "OBX|2|ED|18748-4^Report^LN||^AP^PDF^Base64^bmV3||||||F\r"
        "OBX|3|RP|18748-4^Report^LN||http://x/old.pdf^^AP^PDF||||||D\r";
    const struct mg_mapping_group *g;
    struct mapped m;

    (void)state;
    map_text(&m, shipped, msg, sizeof(msg) - 1);
    assert_int_equal(m.rc, MG_OK);
    g = mg_mapping_result_group(&m.res, "scan_files");
    assert_int_equal(g->nitem, 1);
    done(&m);
}

/* A code, its coding system and its text come from one field: OBR-4's
 * code never gets OBR-44's system ("same_source" in orders.json); with no
 * code in OBR-4, all three come from OBR-44. */
static void
test_orders_procedure_from_one_field(void **state)
{
    static const char one[] = MSH_ADT("ORM^O01") "PID|1||M1^^^X^MR\r"
        "ORC|NW|P1\r"
        "OBR|1|P1||71046^XR CHEST 2V||||||||||||||ACC1||||||||||||||||||||"
        "||||||RP1^Requested^L\r"; /* OBR-44 */
    static const char three[] = MSH_ADT("ORM^O01") "PID|1||M1^^^X^MR\r"
        "ORC|NW|P1\r"
        "OBR|1|P1||^CT HEAD W/O CONTRAST||||||||||||||ACC1\r";
    static const char two[] = MSH_ADT("ORM^O01") "PID|1||M1^^^X^MR\r"
        "ORC|NW|P1\r"
        "OBR|1|P1||^Chest||||||||||||||ACC1||||||||||||||||||||"
        "||||||RP1^Requested^L\r"; /* OBR-44 */
    struct mapped m;

    (void)state;
    map_text(&m, shipped, one, sizeof(one) - 1);
    assert_int_equal(m.rc, MG_OK);
    assert_string_equal(val(&m, "scan.procedure_code"), "71046");
    assert_string_equal(val(&m, "scan.procedure_description"), "XR CHEST 2V");
    assert_string_equal(val(&m, "scan.procedure_code_system"), "(absent)");
    done(&m);
    map_text(&m, shipped, two, sizeof(two) - 1);
    assert_int_equal(m.rc, MG_OK);
    assert_string_equal(val(&m, "scan.procedure_code"), "RP1");
    assert_string_equal(val(&m, "scan.procedure_description"), "Requested");
    assert_string_equal(val(&m, "scan.procedure_code_system"), "L");
    done(&m);
    /* No code anywhere: the description is still read (fallbacks). */
    map_text(&m, shipped, three, sizeof(three) - 1);
    assert_int_equal(m.rc, MG_OK);
    assert_string_equal(val(&m, "scan.procedure_code"), "(absent)");
    assert_string_equal(val(&m, "scan.procedure_description"),
                        "CT HEAD W/O CONTRAST");
    done(&m);
}

/* Accession of a result: OBR-18 (IHE), else ORC-3, else OBR-3, as for
 * orders (DESIGN-NOTES section 6). OBX marked wrong (W) or deleted (D) in
 * OBX-11 are no part of the report text. */
static void
test_results_accession_and_deleted_lines(void **state)
{
    static const char msg[] =
        "MSH|^~\\&|RIS|FAC|GW|GW|20240101||ORU^R01|9|P|2.5.1\r"
        "PID|1||77^^^X^MR||Roe^Ann\r"
        "ORC|RE|PL9|ACC9\r"
        "OBR|1|PL9|F1|CT^Head||||||||||||||||||||F\r"
        "OBX|1|TX|59776-5^Findings^LN||Old text.||||||W\r"
        "OBX|2|TX|59776-5^Findings^LN||Gone.||||||D\r"
        "OBX|3|TX|59776-5^Findings^LN||New text.||||||C\r"
        "OBX|4|TX|19005-8^IMPRESSION^LN||Old impression.||||||W\r"
        "OBX|5|TX|19005-8^IMPRESSION^LN||Normal.||||||F\r";
    struct mapped m;

    (void)state;
    map_text(&m, shipped, msg, sizeof(msg) - 1);
    assert_int_equal(m.rc, MG_OK);
    assert_string_equal(val(&m, "scan.accession_number"), "ACC9");
    assert_string_equal(val(&m, "report.findings_text"), "New text.\nNormal.");
    assert_string_equal(val(&m, "report.impression"), "Normal.");
    done(&m);
}

static void
test_required_and_type_errors(void **state)
{
    static const char no_id[] = MSH_ADT("ADT^A01") "PID|1||||Doe^Jo\r";
    static const char bad_dob[] = MSH_ADT("ADT^A01")
        "PID|1||A1^^^X^MR||Doe||2022XX01\r";
    static const char null_id[] = MSH_ADT("ADT^A01") "PID|1||\"\"||Doe\r";
    struct mapped m;

    (void)state;
    map_text(&m, shipped, no_id, sizeof(no_id) - 1);
    assert_int_equal(m.rc, MG_EMAPPING);
    assert_int_equal(m.diag.code, 101);
    assert_string_equal(m.diag.segment, "PID");
    assert_int_equal(m.diag.seq, 1);
    assert_int_equal(m.diag.field, 3);
    assert_int_equal(m.diag.comp, 1);
    assert_string_equal(m.diag.path, "patient.medical_record_number");
    assert_non_null(strstr(m.diag.text, "PID-3[CX.5=MR].1, PID-3.1"));
    done(&m);

    map_text(&m, shipped, bad_dob, sizeof(bad_dob) - 1);
    assert_int_equal(m.rc, MG_EMAPPING);
    assert_int_equal(m.diag.code, 102);
    assert_string_equal(m.diag.segment, "PID");
    assert_int_equal(m.diag.field, 7);
    assert_string_equal(m.diag.path, "patient.date_of_birth");
    assert_null(strstr(m.diag.text, "2022XX01")); /* no PHI in diags */
    done(&m);

    /* an explicit null does not satisfy "required" */
    map_text(&m, shipped, null_id, sizeof(null_id) - 1);
    assert_int_equal(m.rc, MG_EMAPPING);
    assert_int_equal(m.diag.code, 101);
    done(&m);
}

/* A condition takes the first repetition it matches that has the value:
 * an MR repetition without an id does not hide the MR one after it. */
static void
test_condition_skips_a_matching_repetition_without_the_value(void **state)
{
    static const char msg[] = MSH_ADT("ADT^A01")
        "PID|1||^^^X^MR~M2^^^X^MR~P3^^^X^PI||Doe\r";
    struct mapped m;

    (void)state;
    map_text(&m, shipped, msg, sizeof(msg) - 1);
    assert_int_equal(m.rc, MG_OK);
    assert_string_equal(val(&m, "patient.medical_record_number"), "M2");
    done(&m);
}

/* A value that a transform leaves empty ("   " trimmed) is no value: the
 * default applies, and "required" refuses it, as for an empty field. */
static void
test_transform_leaving_nothing_is_no_value(void **state)
{
    static const char route[] =
        "{ \"route\": \"t\", \"adapter\": \"x\",\n"
        "  \"match\": { \"message_type\": \"ADT^A01\" },\n"
        "  \"fields\": {\n"
        "    \"patient.last_name\": { \"from\": \"PID-5.1\", \"transform\": \"trim\","
        " \"default\": \"UNKNOWN\" },\n"
        "    \"patient.first_name\": { \"from\": \"PID-5.2\", \"transform\": \"trim\","
        " \"required\": true } } }\n";
    static const char blank_family[] = MSH_ADT("ADT^A01") "PID|1||A1||   ^Jo\r";
    static const char blank_given[] = MSH_ADT("ADT^A01") "PID|1||A1||Doe^  \r";
    struct mg_mapping_set *set;
    char dir[64];
    struct mapped m;

    (void)state;
    make_dir(dir, sizeof(dir), "t.json", route, NULL);
    assert_int_equal(mg_mapping_set_load(dir, &set, stderr), MG_OK);
    map_text(&m, set, blank_family, sizeof(blank_family) - 1);
    assert_int_equal(m.rc, MG_OK);
    assert_string_equal(val(&m, "patient.last_name"), "UNKNOWN");
    assert_string_equal(val(&m, "patient.first_name"), "Jo");
    done(&m);
    map_text(&m, set, blank_given, sizeof(blank_given) - 1);
    assert_int_equal(m.rc, MG_EMAPPING);
    assert_int_equal(m.diag.code, 101);
    assert_string_equal(m.diag.path, "patient.first_name");
    done(&m);
    mg_mapping_set_free(set);
    remove_dir(dir);
}

/* An empty repetition (PID-3 "~", "^^^") is as if it were not sent: it
 * gives no item, so a required or defaulted sub-field neither refuses the
 * message nor makes an item of defaults. A repetition with some content
 * but without the required sub-field is still refused. */
static void
test_group_skips_empty_repetitions(void **state)
{
    static const char route[] =
        "{ \"route\": \"ids\", \"adapter\": \"x\",\n"
        "  \"match\": { \"message_type\": \"ADT^A01\" },\n"
        "  \"fields\": {\n"
        "    \"ids[]\": { \"each\": \"PID-3\", \"fields\": {\n"
        "      \"value\": { \"from\": \".1\", \"required\": true },\n"
        "      \"type_code\": { \"from\": \".5\", \"default\": \"U\" } } },\n"
        "    \"types[]\": { \"each\": \"PID-3\", \"fields\": {\n"
        "      \"code\": { \"from\": \".5\", \"default\": \"U\" } } } } }\n";
    static const struct {
        const char *pid3;
        int reps[2]; /* the repetitions that are items; 0: no more */
    } cases[] = {
        {"12345^^^HOSP^MR~", {1, 0}},
        {"~12345^^^HOSP^MR", {2, 0}},
        {"12345^^^HOSP^MR~~67890^^^HOSP", {1, 3}},
        {"12345^^^HOSP^MR~^&^~67890^^^HOSP", {1, 3}},
        {"~^^^", {0, 0}},
    };
    const struct mg_mapping_group *ids, *types;
    struct mg_mapping_set *set;
    char dir[64], msg[256];
    struct mapped m;
    size_t n;
    int len;

    (void)state;
    make_dir(dir, sizeof(dir), "ids.json", route, NULL);
    assert_int_equal(mg_mapping_set_load(dir, &set, stderr), MG_OK);
    for (size_t i = 0; i < MG_ARRAY_LEN(cases); i++) {
        len = snprintf(msg, sizeof(msg), MSH_ADT("ADT^A01") "PID|1||%s||Doe\r",
                       cases[i].pid3);
        map_text(&m, set, msg, (size_t)len);
        assert_int_equal(m.rc, MG_OK);
        ids = mg_mapping_result_group(&m.res, "ids");
        types = mg_mapping_result_group(&m.res, "types");
        for (n = 0; n < 2 && cases[i].reps[n]; n++) {
            assert_int_equal(ids->item[n].rep, cases[i].reps[n]);
            assert_int_equal(types->item[n].rep, cases[i].reps[n]);
        }
        assert_int_equal(ids->nitem, n);
        assert_int_equal(types->nitem, n);
        done(&m);
    }

    /* content, but no value: refused at that repetition */
    len = snprintf(msg, sizeof(msg), MSH_ADT("ADT^A01")
                   "PID|1||12345^^^HOSP^MR~^^^HOSP^PI||Doe\r");
    map_text(&m, set, msg, (size_t)len);
    assert_int_equal(m.rc, MG_EMAPPING);
    assert_int_equal(m.diag.code, 101);
    assert_string_equal(m.diag.path, "ids[2].value");
    assert_int_equal(m.diag.field, 3);
    assert_int_equal(m.diag.rep, 2);
    done(&m);
    mg_mapping_set_free(set);
    remove_dir(dir);
}

/* Maps text (its route found in set) and cuts it into parts. */
static int
map_split(struct mapped *m, const struct mg_mapping_set *set, const char *text,
          struct mg_mapping_part **parts, size_t *n)
{
    map_text(m, set, text, strlen(text));
    return mg_mapping_split(m->route, m->msg, &m->arena, parts, n, &m->diag);
}

/* An "each" rule takes at most 5000 items: 40,000 PID-3 repetitions took
 * 55 s of the database, and as many attachments outlasted the statement
 * timeout, failing the message's grouped commit again and again. */
static void
test_each_rule_refuses_too_many_items(void **state)
{
    struct mg_buf b;
    struct mapped m;

    (void)state;
    mg_buf_init(&b, 0);
    assert_int_equal(mg_buf_appendz(&b, MSH_ADT("ADT^A01") "PID|1||M0^^^X^MR"),
                     MG_OK);
    for (int i = 1; i < 5000; i++)
        assert_int_equal(mg_buf_appendf(&b, "~%d^^^X^PI", i), MG_OK);
    assert_int_equal(mg_buf_appendz(&b, "||Doe\r"), MG_OK);
    map_text(&m, shipped, mg_buf_str(&b).ptr, mg_buf_str(&b).len);
    assert_int_equal(m.rc, MG_OK); /* 5000: still taken */
    done(&m);
    b.len -= strlen("||Doe\r");
    assert_int_equal(mg_buf_appendz(&b, "~5000^^^X^PI||Doe\r"), MG_OK);
    map_text(&m, shipped, mg_buf_str(&b).ptr, mg_buf_str(&b).len);
    assert_int_equal(m.rc, MG_EMAPPING);
    assert_int_equal(m.diag.code, 100);
    assert_string_equal(m.diag.segment, "PID");
    assert_int_equal(m.diag.field, 3);
    assert_int_equal(m.diag.rep, 5001);
    done(&m);
    mg_buf_dispose(&b);
}

/* Repetitions are walked once, not found again from the field's start
 * for each (a 200 kB PID-3 of empty repetitions before its MR one took
 * more than 100 s of the event loop): the MR identifier after 200,000
 * empty repetitions is read, and empty ones are no items. */
static void
test_repetitions_are_walked_once(void **state)
{
    struct mg_buf b;
    struct mapped m;

    (void)state;
    mg_buf_init(&b, 0);
    assert_int_equal(mg_buf_appendz(&b, MSH_ADT("ADT^A01") "PID|1||"), MG_OK);
    for (int i = 0; i < 200000; i++)
        assert_int_equal(mg_buf_appendc(&b, '~'), MG_OK);
    assert_int_equal(mg_buf_appendz(&b, "M1^^^X^MR||Doe\r"), MG_OK);
    map_text(&m, shipped, mg_buf_str(&b).ptr, mg_buf_str(&b).len);
    assert_int_equal(m.rc, MG_OK);
    assert_string_equal(val(&m, "patient.medical_record_number"), "M1");
    assert_int_equal(mg_mapping_result_group(&m.res, "patient_identifiers")
                         ->nitem, 1);
    assert_int_equal(mg_mapping_result_group(&m.res, "patient_identifiers")
                         ->item[0].rep, 200001);
    done(&m);
    mg_buf_dispose(&b);
}

/* A split is bounded: 1000 order groups, behind a head of at most 1000
 * segments when there are several (each part reads the head). A crafted
 * message of 20,000 bare OBR took 20 s of the event loop to map. */
static void
test_split_refuses_too_many_parts(void **state)
{
    struct mg_buf b;
    struct mg_mapping_part *parts;
    struct mapped m;
    size_t n;

    (void)state;
    mg_buf_init(&b, 0);
    assert_int_equal(mg_buf_appendz(&b, MSH_ADT("ORU^R01") "PID|1||M1\r"), MG_OK);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(mg_buf_appendz(&b, "OBR|1\r"), MG_OK);
    assert_int_equal(map_split(&m, shipped, mg_buf_str(&b).ptr, &parts, &n),
                     MG_OK);
    assert_int_equal(n, 1000);
    done(&m);
    assert_int_equal(mg_buf_appendz(&b, "OBR|1\r"), MG_OK);
    assert_int_equal(map_split(&m, shipped, mg_buf_str(&b).ptr, &parts, &n),
                     MG_EMAPPING);
    assert_int_equal(m.diag.code, 100);
    assert_string_equal(m.diag.segment, "OBR");
    assert_int_equal(m.diag.seq, 1001);
    done(&m);
    mg_buf_dispose(&b);
}

/* "split": one part per ORC/OBR group. Each part sees the head (MSH, PID)
 * and its own segments only, locations stay those of the whole message,
 * and a PID after the first group (a second patient) is refused, unless it
 * is the head's patient again. */
static void
test_split_into_order_groups(void **state)
{
    static const char route[] =
        "{ \"route\": \"res\", \"adapter\": \"x\",\n"
        "  \"match\": { \"message_type\": \"ORU^R01\" },\n"
        "  \"split\": [\"ORC\", \"OBR\"],\n"
        "  \"fields\": {\n"
        "    \"patient.mrn\": { \"from\": \"PID-3.1\" },\n"
        "    \"scan.acc\": { \"from\": [\"OBR-18\", \"ORC-3.1\"], "
        "\"required\": true },\n"
        "    \"report.text\": { \"each\": \"OBX\", \"from\": \"-5\", "
        "\"join\": \"|\" } } }\n";
    static const char two[] =
        MSH_ADT("ORU^R01") "PID|1||M1\r"
        "ORC|RE||F1\rOBR|1|||CT||||||||||||||A1\rOBX|1|TX|||one\r"
        "OBX|2|TX|||two\r"
        "OBR|2|||MR||||||||||||||A2\rOBX|3|TX|||three\r"
        "ORC|RE||F3\rOBR|3|||US\rNTE|1||note\r";
    struct mg_mapping_part *parts;
    struct mg_mapping_set *set;
    const struct mg_mapping_value *v;
    char dir[64], *out;
    struct mapped m;
    size_t n;

    (void)state;
    make_dir(dir, sizeof(dir), "res.json", route, NULL);
    assert_int_equal(mg_mapping_set_load(dir, &set, stderr), MG_OK);
    assert_int_equal(map_split(&m, set, two, &parts, &n), MG_OK);
    assert_int_equal(n, 3); /* ORC OBR, then OBR, then ORC OBR */
    assert_int_equal(parts[0].head_end, 2); /* MSH PID */
    assert_int_equal(parts[0].begin, 2);
    assert_int_equal(parts[1].begin, 6);
    assert_int_equal(parts[2].begin, 8);
    assert_int_equal(parts[2].end, m.msg->nseg);

    assert_int_equal(mg_mapping_apply_part(m.route, m.msg, &parts[1],
                                           &m.arena, &m.res, &m.diag),
                     MG_OK);
    assert_string_equal(val(&m, "patient.mrn"), "M1");
    assert_string_equal(val(&m, "scan.acc"), "A2");
    assert_string_equal(val(&m, "report.text"), "three");
    v = mg_mapping_result_get(&m.res, "scan.acc");
    assert_string_equal(v->at.segment, "OBR");
    assert_int_equal(v->at.seq, 2); /* the message's second OBR */

    assert_int_equal(mg_mapping_apply_part(m.route, m.msg, &parts[0],
                                           &m.arena, &m.res, &m.diag),
                     MG_OK);
    assert_string_equal(val(&m, "scan.acc"), "A1");
    assert_string_equal(val(&m, "report.text"), "one|two");

    /* The third group has no OBR-18: ORC-3 of its own ORC, not the first. */
    assert_int_equal(mg_mapping_apply_part(m.route, m.msg, &parts[2],
                                           &m.arena, &m.res, &m.diag),
                     MG_OK);
    assert_string_equal(val(&m, "scan.acc"), "F3");
    v = mg_mapping_result_get(&m.res, "scan.acc");
    assert_int_equal(v->at.seq, 2);
    assert_string_equal(val(&m, "report.text"), "(absent)");
    done(&m);

    /* A required value missing in the second group names that group. */
    {
        static const char bad[] =
            MSH_ADT("ORU^R01") "PID|1||M1\rOBR|1|||CT||||||||||||||A1\r"
            "OBR|2|||MR\r";

        assert_int_equal(map_split(&m, set, bad, &parts, &n), MG_OK);
        assert_int_equal(n, 2);
        assert_int_equal(mg_mapping_apply_part(m.route, m.msg, &parts[1],
                                               &m.arena, &m.res, &m.diag),
                         MG_EMAPPING);
        assert_string_equal(m.diag.segment, "OBR");
        assert_int_equal(m.diag.seq, 2);
        assert_int_equal(m.diag.field, 18);
        done(&m);
    }
    /* A second patient after the first group: refused at that PID. */
    {
        static const char second[] =
            MSH_ADT("ORU^R01") "PID|1||M1\rOBR|1|||CT||||||||||||||A1\r"
            "PID|2||M2\rOBR|2|||MR||||||||||||||A2\r";

        assert_int_equal(map_split(&m, set, second, &parts, &n),
                         MG_EMAPPING);
        assert_int_equal(m.diag.code, 100);
        assert_string_equal(m.diag.segment, "PID");
        assert_int_equal(m.diag.seq, 2);
        done(&m);
    }
    /* The same patient's PID again (ORU_R01 repeats PATIENT_RESULT): not
     * a second patient. */
    {
        static const char again[] =
            MSH_ADT("ORU^R01") "PID|1||M1^^^H^MR\rOBR|1|||CT||||||||||||||A1\r"
            "PID|2||M1^^^H^MR\rOBR|2|||MR||||||||||||||A2\r";

        assert_int_equal(map_split(&m, set, again, &parts, &n), MG_OK);
        assert_int_equal(n, 2);
        assert_int_equal(mg_mapping_apply_part(m.route, m.msg, &parts[1],
                                               &m.arena, &m.res, &m.diag),
                         MG_OK);
        assert_string_equal(val(&m, "patient.mrn"), "M1");
        assert_string_equal(val(&m, "scan.acc"), "A2");
        done(&m);
    }
    mg_mapping_set_free(set);
    remove_dir(dir);

    /* Without "split" (the ADT route) a message is one part, the whole. */
    map_file(&m, HL7 "/fhir-converter/ADT-A01-01.hl7");
    assert_int_equal(mg_mapping_split(m.route, m.msg, &m.arena, &parts, &n,
                                      &m.diag),
                     MG_OK);
    assert_int_equal(n, 1);
    assert_int_equal(parts[0].head_end, m.msg->nseg);
    done(&m);

    /* "split" must name segments that can start a part. */
    make_dir(dir, sizeof(dir), "s.json",
             "{ \"route\": \"s\", \"adapter\": \"x\",\n"
             "  \"split\": [\"MSH\", \"ob\"],\n"
             "  \"fields\": { \"a.b\": { \"from\": \"PID-3\" } } }\n",
             NULL);
    out = load_errors(dir);
    assert_non_null(strstr(out, "s.json:2: split: \"MSH\" is not a segment"));
    assert_non_null(strstr(out, "s.json:2: split: \"ob\" is not a segment"));
    free(out);
    remove_dir(dir);
}

/* ---- transforms ------------------------------------------------------ */

static void
test_transforms_table(void **state)
{
    static const struct {
        const char *xf, *in, *out; /* out NULL: refused (102) */
    } cases[] = {
        {"hl7_ts", "2022", "2022"},
        {"hl7_ts", "202203", "2022-03"},
        {"hl7_ts", "20220324", "2022-03-24"},
        {"hl7_ts", "2022032419", "2022-03-24T19:00"},
        {"hl7_ts", "202203241931", "2022-03-24T19:31"},
        {"hl7_ts", "20220324193156", "2022-03-24T19:31:56"},
        {"hl7_ts", "20220324193156.1234", "2022-03-24T19:31:56.1234"},
        {"hl7_ts", "20220324193156-0500", "2022-03-24T19:31:56-05:00"},
        {"hl7_ts", "198808181126+0215", "1988-08-18T11:26+02:15"},
        {"hl7_ts", "20210817151943.4+0200", "2021-08-17T15:19:43.4+02:00"},
        {"hl7_ts", "20240229", "2024-02-29"},
        {"hl7_ts", " 20220324 ", "2022-03-24"},
        {"hl7_ts", "20230229", NULL},
        {"hl7_ts", "00000101", NULL},
        {"hl7_ts", "0001", "0001"},
        {"hl7_ts", "20221301", NULL},
        {"hl7_ts", "2022032425", NULL},
        {"hl7_ts", "202203241", NULL},
        {"hl7_ts", "20220324.5", NULL},
        {"hl7_ts", "20220324193156+05", NULL},
        {"hl7_ts", "2022-03-24", NULL},
        {"hl7_ts", "", NULL},
        {"hl7_date", "19610615", "1961-06-15"},
        {"hl7_date", "19850101000000+0700", "1985-01-01"},
        {"hl7_date", "198808181126", "1988-08-18"},
        {"hl7_date", "1961", ""},   /* year only: no date, no refusal */
        {"hl7_date", "196106", ""},
        {"hl7_date", "1961XX", NULL},
        {"hl7_date", "19610632", NULL},
        {"sex", "F", "female"},
        {"sex", "m", "male"},
        {"sex", "O", "other"},
        {"sex", "A", "other"},
        {"sex", "U", "unknown"},
        {"sex", "N", "other"},
        {"sex", "X", NULL},
        {"priority", "S", "stat"},
        {"priority", "A", "asap"},
        {"priority", "R", "routine"},
        {"priority", "P", "routine"},
        {"priority", "T", "urgent"},
        {"priority", "prn", "routine"}, /* table 0027 as needed */
        {"priority", "Q", NULL},
        {"trim", "  a b \t", "a b"},
        {"upper", "abc-é", "ABC-é"},
        {"lower", "ABC", "abc"},
    };
    struct mg_arena a;
    struct mg_str out;
    char buf[128];
    int rc;

    (void)state;
    mg_arena_init(&a, 4096, 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rc = mg_mapping_transform(cases[i].xf, mg_str_from(cases[i].in), &a,
                                  &out);
        if (cases[i].out == NULL) {
            if (rc != MG_EMAPPING)
                fail_msg("%s(\"%s\") should be refused", cases[i].xf,
                         cases[i].in);
            continue;
        }
        assert_int_equal(rc, MG_OK);
        snprintf(buf, sizeof(buf), "%.*s", (int)out.len, out.ptr);
        if (strcmp(buf, cases[i].out) != 0)
            fail_msg("%s(\"%s\") = \"%s\", want \"%s\"", cases[i].xf,
                     cases[i].in, buf, cases[i].out);
    }
    assert_int_equal(mg_mapping_transform("nope", MG_STR("x"), &a, &out),
                     MG_EINVAL);
    assert_int_equal(mg_mapping_transform("person_name", MG_STR("x"), &a,
                                          &out),
                     MG_EINVAL);
    mg_arena_dispose(&a);
}

/* ---- load errors ----------------------------------------------------- */

static void
test_load_errors_name_file_line_key(void **state)
{
    char dir[64], *out;

    (void)state;
    make_dir(dir, sizeof(dir),
             "a_bad_path.json",
             "{\n"
             "  \"route\": \"a\",\n"
             "  \"match\": { \"message_type\": [\"ADT^A01\"] },\n"
             "  \"adapter\": \"hl7v2.adt\",\n"
             "  \"fields\": {\n"
             "    \"patient.last_name\": { \"from\": \"PID-5.1\" },\n"
             "    \"patient.first_name\": { \"from\": \"PID5.2\" },\n"
             "    \"patient.middle_name\": { \"from\": "
             "\"PID-3[4.1=ADT1].1\" }\n"
             "  }\n"
             "}\n",
             "b_unknown.json",
             "{\n"
             "  \"route\": \"b\",\n"
             "  \"match\": { \"message_type\": \"ORM^O01\" },\n"
             "  \"adapter\": \"hl7v2.order\",\n"
             "  \"fields\": {\n"
             "    \"scan.scan_type\": {\n"
             "      \"from\": \"OBR-24\",\n"
             "      \"table\": \"modalty\"\n"
             "    },\n"
             "    \"scan.priority\": { \"from\": \"ORC-7.6\",\n"
             "                       \"transfrom\": \"upper\" },\n"
             "    \"scan.ordered_at\": { \"from\": \"ORC-9\", "
             "\"transform\": \"hl7_time\" }\n"
             "  }\n"
             "}\n",
             "c_syntax.json",
             "{\n  \"route\": \"c\",\n  \"fields\": {,}\n}\n",
             "d_each.json",
             "{\n"
             "  \"route\": \"d\",\n"
             "  \"match\": { \"message_type\": [\"ORU^R1\"] },\n"
             "  \"adapter\": \"hl7v2.result\",\n"
             "  \"fields\": {\n"
             "    \"ids[]\": { \"each\": \"PID-3\",\n"
             "      \"fields\": { \"value\": { \"from\": \"-1\" } } },\n"
             "    \"report.x\": { \"from\": \"OBX-5\", \"when\": "
             "{ \"path\": \"OBX-2\" } },\n"
             "    \"report.y\": { \"from\": \"OBX-5\", \"keep_empty\": true },\n"
             "    \"report.z\": { \"from\": [\"OBX-5\", \"OBX-6\"], "
             "\"skip_contained\": true },\n"
             "    \"report.w\": { \"from\": \"OBX-5.1\", \"whole\": true },\n"
             "    \"message.type\": \"MSH-9.1\",\n"
             "    \"report.v\": { \"from\": \"OBR-32\", \"whole\": true, "
             "\"transform\": \"person_name\" },\n"
             "    \"report.a_column_name_that_is_longer_than_any_adapter_"
             "input_key_may_be\": \"OBX-5\"\n"
             "  }\n"
             "}\n",
             "e_lists.json",
             "{\n"
             "  \"route\": \"e\",\n"
             "  \"match\": { \"message_type\": [\"ORU^R01\"] },\n"
             "  \"adapter\": \"hl7v2.result\",\n"
             "  \"fields\": {\n"
             "    \"report.x\": { \"each\": \"OBX\", \"from\": \"-5\", "
             "\"when\": [\n"
             "      { \"path\": \"-2\", \"in\": [\"TX\"] },\n"
             "      { \"path\": \"-3\", \"in\": [\"X\"], \"exists\": true }\n"
             "    ] },\n"
             "    \"report.y\": { \"from\": [\n"
             "      \"OBX-5\",\n"
             "      \"OBX5\"\n"
             "    ] }\n"
             "  }\n"
             "}\n",
             "f_same.json",
             "{\n"
             "  \"route\": \"f\",\n"
             "  \"match\": { \"message_type\": [\"ORM^O02\"] },\n"
             "  \"adapter\": \"hl7v2.order\",\n"
             "  \"fields\": {\n"
             "    \"scan.procedure_description\": { \"from\": [\"OBR-4.2\"],\n"
             "      \"same_source\": \"scan.procedure_code\" },\n"
             "    \"scan.procedure_code\": { \"from\": [\"OBR-4.1\", \"OBR-44.1\"] },\n"
             "    \"scan.procedure_code_system\": { \"from\": [\"OBR-4.3\"],\n"
             "      \"same_source\": \"scan.procedure_code\" }\n"
             "  }\n"
             "}\n",
             "tables/broken.json", "{ \"values\": { \"A\": 1 } }\n",
             NULL);
    out = load_errors(dir);
    /* every problem, in every file, with file:line: key path */
    assert_non_null(strstr(out, "/a_bad_path.json:7: fields/"
                                "patient.first_name/from: bad path "
                                "\"PID5.2\""));
    /* [4.1=X] is not a data type name and component 1 */
    assert_non_null(strstr(out, "/a_bad_path.json:8: fields/"
                                "patient.middle_name/from: bad path "
                                "\"PID-3[4.1=ADT1].1\": a condition is "
                                "[TYPE.n=value] with TYPE a data type name"));
    assert_non_null(strstr(out, "/b_unknown.json:8: fields/scan.scan_type/"
                                "table: unknown table \"modalty\""));
    assert_non_null(strstr(out, "/b_unknown.json:11: fields/scan.priority/"
                                "transfrom: unknown key"));
    assert_non_null(strstr(out, "/b_unknown.json:12: fields/scan.ordered_at/"
                                "transform: unknown transform \"hl7_time\""));
    assert_non_null(strstr(out, "/c_syntax.json:3: "));
    assert_non_null(strstr(out, "/d_each.json:3: match/message_type: bad "
                                "message type \"ORU^R1\""));
    assert_non_null(strstr(out, "/d_each.json:7: fields/ids[]/fields/value/"
                                "from: bad path \"-1\": inside each over a "
                                "field use \".c\" paths"));
    assert_non_null(strstr(out, "/d_each.json:8: fields/report.x/when: a "
                                "condition needs exactly one test"));
    assert_non_null(strstr(out, "/d_each.json:9: fields/report.y: "
                                "\"keep_empty\" needs \"join\""));
    assert_non_null(strstr(out, "/d_each.json:12: fields/message.type: "
                                "\"message\" is the gateway's own"));
    assert_non_null(strstr(out, "/d_each.json:13: fields/report.v: "
                                "\"whole\" is for text"));
    assert_non_null(strstr(out, "/d_each.json:14: fields/report.a_column_"
                                "name_that_is_"
                                "longer_than_any_adapter_input_key_may_"
                                "be: a target name has at most 63 bytes"));
    assert_non_null(strstr(out, "/d_each.json:11: fields/report.w: "
                                "\"whole\" reads fields whole: path OBX-5.1 "
                                "names a component"));
    assert_non_null(strstr(out, "/d_each.json:10: fields/report.z: "
                                "\"skip_contained\" needs the concat "
                                "transform"));
    /* Items of a list: the line of the item, its index in the path. */
    assert_non_null(strstr(out, "/e_lists.json:8: fields/report.x/when[1]: "
                                "a condition needs exactly one test"));
    assert_non_null(strstr(out, "/e_lists.json:12: fields/report.y/from[1]: "
                                "bad path \"OBX5\""));
    assert_non_null(strstr(out, "/f_same.json:7: fields/"
                                "scan.procedure_description/same_source: no "
                                "rule above this one maps "
                                "\"scan.procedure_code\""));
    assert_non_null(strstr(out, "/f_same.json:10: fields/"
                                "scan.procedure_code_system/same_source: "
                                "\"scan.procedure_code\" must read from as "
                                "many paths (1), by fallback"));
    assert_non_null(strstr(out, "tables/broken.json:1: values/A: expected a "
                                "string or null"));
    free(out);
    remove_dir(dir);
}

static void
test_load_errors_routes(void **state)
{
    char dir[64], *out;

    (void)state;
    make_dir(dir, sizeof(dir),
             "a.json",
             "{ \"route\": \"one\", \"adapter\": \"x\",\n"
             "  \"match\": { \"message_type\": \"ADT^A01\" },\n"
             "  \"fields\": { \"p.a\": \"PID-5\" } }\n",
             "b.json",
             "{ \"route\": \"one\", \"adapter\": \"x\",\n"
             "  \"fields\": { \"p.a\": \"PID-5\" } }\n",
             "c.json",
             "{ \"route\": \"two\", \"adapter\": \"x\",\n"
             "  \"match\": { \"message_type\": [\"ADT^A01\", \"ADT^A04\"] },\n"
             "  \"fields\": { \"p.a\": \"PID-5\" } }\n",
             "d.json",
             "{ \"route\": \"three\", \"extends\": \"nothing\" }\n",
             "e.json",
             "{ \"route\": \"four\", \"extends\": \"five\" }\n",
             "f.json",
             "{ \"route\": \"five\", \"extends\": \"four\" }\n",
             "g.json",
             "{ \"route\": \"six\", \"adapter\": \"x\", \"fields\": {\n"
             "  \"p.a\": null, \"lastname\": \"PID-5\" } }\n",
             NULL);
    out = load_errors(dir);
    assert_non_null(strstr(out, "/b.json:1: route: route \"one\" is already "
                                "defined in"));
    assert_non_null(strstr(out, "/c.json:2: match: routes \"one\""));
    assert_non_null(strstr(out, "/d.json:1: extends: no route is called "
                                "\"nothing\""));
    assert_non_null(strstr(out, "makes a cycle"));
    assert_non_null(strstr(out, "/g.json:2: fields/p.a: null removes an "
                                "inherited rule"));
    assert_non_null(strstr(out, "/g.json:2: fields/lastname: a target is "
                                "entity.column"));
    free(out);
    remove_dir(dir);

    /* an empty or missing folder is an error too */
    make_dir(dir, sizeof(dir), NULL);
    out = load_errors(dir);
    assert_non_null(strstr(out, "no route files"));
    free(out);
    remove_dir(dir);
    out = load_errors("/nonexistent/mappings");
    assert_non_null(strstr(out, "cannot read the folder"));
    free(out);
}

/* A constant is never missing, so "required" and "default" mean nothing
 * on it: refused at load, with file:line: key path, for a route target and
 * a group field alike. */
static void
test_load_errors_const_with_required_or_default(void **state)
{
    char dir[64], *out;

    (void)state;
    make_dir(dir, sizeof(dir),
             "c.json",
             "{\n"
             "  \"route\": \"c\", \"adapter\": \"x\",\n"
             "  \"fields\": {\n"
             "    \"report.type\": { \"const\": \"r\", \"required\": true },\n"
             "    \"report.kind\": { \"const\": null, \"default\": \"k\" },\n"
             "    \"report.ok\": { \"const\": \"r\", \"required\": false },\n"
             "    \"ids[]\": { \"each\": \"PID-3\", \"fields\": {\n"
             "      \"system\": { \"const\": \"s\", \"required\": true } } }\n"
             "  }\n"
             "}\n",
             NULL);
    out = load_errors(dir);
    assert_non_null(strstr(out, "/c.json:4: fields/report.type: a constant "
                                "is never missing: it takes no \"required\" "
                                "or \"default\""));
    assert_non_null(strstr(out, "/c.json:5: fields/report.kind: a constant "
                                "is never missing"));
    assert_null(strstr(out, "report.ok"));
    assert_non_null(strstr(out, "/c.json:8: fields/ids[]/fields/system: a "
                                "constant is never missing"));
    free(out);
    remove_dir(dir);
}

/* The caller says which adapter names exist; an unknown one is a load
 * error at the "adapter" key like any other. A route that inherits its
 * adapter through "extends" is checked in the file that names it. */
static const char *
known_adapter(const char *name)
{
    return strcmp(name, "hl7v2.adt") == 0 ? NULL : "no adapter is called";
}

static void
test_load_checks_adapter_names(void **state)
{
    struct mg_mapping_set *set = NULL;
    char dir[64], *out = NULL;
    size_t len = 0;
    FILE *err;

    (void)state;
    make_dir(dir, sizeof(dir),
             "a.json",
             "{\n"
             "  \"route\": \"a\",\n"
             "  \"adapter\": \"hl7v2.nope\",\n"
             "  \"match\": { \"message_type\": \"ADT^A01\" },\n"
             "  \"fields\": { \"patient.last_name\": \"PID-5.1\" }\n"
             "}\n",
             "b.json",
             "{ \"route\": \"b\", \"adapter\": \"hl7v2.adt\",\n"
             "  \"match\": { \"message_type\": \"ADT^A04\" },\n"
             "  \"fields\": { \"patient.last_name\": \"PID-5.1\" } }\n",
             "c.json",
             "{ \"route\": \"c\", \"extends\": \"b\",\n"
             "  \"match\": { \"sending_facility\": \"F\" } }\n",
             NULL);
    err = open_memstream(&out, &len);
    assert_non_null(err);
    assert_int_equal(mg_mapping_set_load_checked(dir, known_adapter, &set, err),
                     MG_ECONF);
    assert_null(set);
    fclose(err);
    assert_non_null(strstr(out, "/a.json:3: adapter: no adapter is called "
                                "\"hl7v2.nope\"\n"));
    assert_null(strstr(out, "b.json"));
    assert_null(strstr(out, "c.json"));
    free(out);
    /* without a check (tools, tests) any name loads */
    assert_int_equal(mg_mapping_set_load(dir, &set, stderr), MG_OK);
    mg_mapping_set_free(set);
    remove_dir(dir);
}

/* ---- extends, precedence, strict tables ------------------------------ */

static const char base_route[] =
    "{\n"
    "  \"route\": \"ris\",\n"
    "  \"match\": { \"message_type\": [\"ORM^O01\"] },\n"
    "  \"adapter\": \"hl7v2.order\",\n"
    "  \"fields\": {\n"
    "    \"scan.accession_number\": { \"from\": [\"OBR-18\", \"ORC-3.1\"] },\n"
    "    \"scan.scan_type\": { \"from\": \"OBR-24\", \"table\": \"mod\" },\n"
    "    \"scan.notes\": { \"from\": \"NTE-3\" },\n"
    "    \"order.source\": { \"const\": \"base\" }\n"
    "  }\n"
    "}\n";

static const char site_b_route[] =
    "{\n"
    "  \"route\": \"ris-site-b\",\n"
    "  \"note\": \"Site B puts the accession in OBR-3.\",\n"
    "  \"extends\": \"ris\",\n"
    "  \"match\": { \"sending_facility\": \"SITEB\" },\n"
    "  \"fields\": {\n"
    "    \"scan.accession_number\": { \"from\": \"OBR-3.1\" },\n"
    "    \"scan.notes\": null,\n"
    "    \"order.site\": { \"const\": \"B\" }\n"
    "  }\n"
    "}\n";

static const char strict_table[] =
    "{ \"strict\": true, \"values\": { \"CT\": \"CT\", \"MRI\": \"MR\" } }\n";

static void
test_extends_and_precedence(void **state)
{
    static const char from_a[] =
        "MSH|^~\\&|RIS|SITEA|GW|GW|20240101||ORM^O01|1|P|2.3.1\r"
        "ORC|NW|P1|F1\rOBR|1|P1|F1|X||||||||||||||ACC1||||||MRI\r"
        "NTE|||note\r";
    static const char from_b[] =
        "MSH|^~\\&|RIS|SITEB|GW|GW|20240101||ORM^O01|1|P|2.3.1\r"
        "ORC|NW|P1|F1\rOBR|1|P1|F1|X||||||||||||||ACC1||||||MRI\r"
        "NTE|||note\r";
    struct mg_mapping_set *set;
    char dir[64];
    struct mapped m;

    (void)state;
    make_dir(dir, sizeof(dir), "ris.json", base_route, "ris-b.json",
             site_b_route, "tables/mod.json", strict_table, NULL);
    assert_int_equal(mg_mapping_set_load(dir, &set, stderr), MG_OK);

    map_text(&m, set, from_a, sizeof(from_a) - 1);
    assert_int_equal(m.rc, MG_OK);
    assert_string_equal(mg_mapping_route_name(m.route), "ris");
    assert_string_equal(val(&m, "scan.accession_number"), "ACC1");
    assert_string_equal(val(&m, "scan.scan_type"), "MR");
    assert_string_equal(val(&m, "scan.notes"), "note");
    assert_string_equal(val(&m, "order.site"), "(absent)");
    done(&m);

    /* the more specific route wins; it inherits what it does not name,
     * overrides what it names, drops what it sets to null */
    map_text(&m, set, from_b, sizeof(from_b) - 1);
    assert_int_equal(m.rc, MG_OK);
    assert_string_equal(mg_mapping_route_name(m.route), "ris-site-b");
    assert_string_equal(mg_mapping_route_adapter(m.route), "hl7v2.order");
    assert_string_equal(val(&m, "scan.accession_number"), "F1");
    assert_string_equal(val(&m, "scan.scan_type"), "MR");
    assert_string_equal(val(&m, "scan.notes"), "(absent)");
    assert_string_equal(val(&m, "order.source"), "base");
    assert_string_equal(val(&m, "order.site"), "B");
    /* rule order: inherited first (overrides in place), then new ones */
    assert_string_equal(m.res.value[0].target, "scan.accession_number");
    assert_string_equal(m.res.value[m.res.nvalue - 1].target, "order.site");
    done(&m);
    mg_mapping_set_free(set);
    remove_dir(dir);
}

static void
test_strict_table_and_listener(void **state)
{
    static const char route[] =
        "{ \"route\": \"r\", \"adapter\": \"x\",\n"
        "  \"match\": { \"message_type\": \"ORM^*\" },\n"
        "  \"fields\": { \"scan.scan_type\": { \"from\": \"OBR-24\", "
        "\"table\": \"mod\" } } }\n";
    static const char by_listener[] =
        "{ \"route\": \"l\", \"adapter\": \"y\",\n"
        "  \"match\": { \"listener\": \"site-c\" },\n"
        "  \"fields\": { \"scan.x\": { \"const\": null } } }\n";
    static const char msg[] =
        "MSH|^~\\&|RIS|F|GW|GW|20240101||ORM^O01|1|P|2.3.1\r"
        "OBR|1|||||||||||||||||||||||US\r";
    struct mg_mapping_set *set;
    const struct mg_mapping_route *r;
    char dir[64];
    struct mapped m;

    (void)state;
    make_dir(dir, sizeof(dir), "r.json", route, "l.json", by_listener,
             "tables/mod.json", strict_table, NULL);
    assert_int_equal(mg_mapping_set_load(dir, &set, stderr), MG_OK);
    map_text(&m, set, msg, sizeof(msg) - 1);
    assert_string_equal(mg_mapping_route_name(m.route), "r");
    assert_int_equal(m.rc, MG_EMAPPING);
    assert_int_equal(m.diag.code, 103);
    assert_string_equal(m.diag.segment, "OBR");
    assert_int_equal(m.diag.field, 24);
    assert_string_equal(m.diag.path, "scan.scan_type");
    /* a listener route outranks any sender route, only on its listener */
    assert_int_equal(mg_mapping_route_find(set, &m.msg->hdr, "site-c", &r),
                     MG_OK);
    assert_string_equal(mg_mapping_route_name(r), "l");
    assert_int_equal(mg_mapping_apply(r, m.msg, &m.arena, &m.res, &m.diag),
                     MG_OK);
    assert_string_equal(val(&m, "scan.x"), "(null)"); /* const null */
    assert_int_equal(mg_mapping_route_find(set, &m.msg->hdr, "other", &r),
                     MG_OK);
    assert_string_equal(mg_mapping_route_name(r), "r");
    done(&m);
    mg_mapping_set_free(set);
    remove_dir(dir);
}

/* ---- unused fields, dry run, change detection ----------------------- */

static bool
has_unused(const struct mg_mapping_result *res, const char *seg, int seq,
           int field)
{
    for (size_t i = 0; i < res->nunused; i++)
        if (strcmp(res->unused[i].segment, seg) == 0 &&
            res->unused[i].seq == seq && res->unused[i].field == field)
            return true;
    return false;
}

static void
test_unused_fields(void **state)
{
    struct mapped m;

    (void)state;
    map_file(&m, HL7 "/fhir-converter/ADT01-28.hl7");
    assert_true(has_unused(&m.res, "NK1", 1, 2));   /* NUCLEAR^NELDA^W */
    assert_true(has_unused(&m.res, "PID", 1, 10));  /* race C */
    assert_true(has_unused(&m.res, "PV1", 1, 3));
    assert_true(has_unused(&m.res, "MSH", 1, 7));
    assert_false(has_unused(&m.res, "MSH", 1, 9));  /* routing reads it */
    assert_false(has_unused(&m.res, "PID", 1, 5));
    assert_false(has_unused(&m.res, "PID", 1, 3));
    assert_false(has_unused(&m.res, "PID", 1, 11)); /* empty field */
    assert_false(has_unused(&m.res, "PID", 1, 9));  /* empty field */
    done(&m);

    /* the second PID/MRG pair of an A40 is not read */
    map_file(&m, HL7 "/fhir-converter/ADT-A40-02.hl7");
    assert_true(has_unused(&m.res, "PID", 2, 3));
    assert_true(has_unused(&m.res, "MRG", 2, 1));
    assert_false(has_unused(&m.res, "MRG", 1, 1));
    done(&m);
}

static void
test_dry_run_print(void **state)
{
    struct mapped m;
    char *out = NULL;
    size_t len = 0;
    FILE *f;

    (void)state;
    map_file(&m, HL7 "/fhir-converter/ADT01-28.hl7");
    f = open_memstream(&out, &len);
    assert_int_equal(mg_mapping_dry_run_print(shipped, m.msg, NULL, f), MG_OK);
    fclose(f);
    assert_non_null(strstr(out, "route: adt ("));
    assert_non_null(strstr(out, "adapter: hl7v2.adt\n"));
    assert_non_null(strstr(out, "  patient.last_name = \"EVERYMAN\"\n"));
    assert_non_null(strstr(out, "  patient.country = (absent)\n"));
    assert_non_null(strstr(out, "# The PID-3 identifier typed MR"));
    assert_non_null(strstr(out, "patient_identifiers[]: 2 items"));
    assert_non_null(strstr(out, "[2] PID[1]-3[2]: value=\"123456789\""));
    assert_non_null(strstr(out, "unused fields (24): MSH-5 MSH-6"));
    assert_non_null(strstr(out, " EVN-2 ")); /* read by no adapter */
    assert_non_null(strstr(out, " NK1-2 "));
    free(out);
    done(&m);
}

/* A file saved by a Windows editor starts with a UTF-8 byte-order mark: the
 * route and the table load, and their errors keep their lines. */
static void
test_load_files_with_a_byte_order_mark(void **state)
{
    struct mg_mapping_set *set;
    char dir[64], route[sizeof(base_route) + 3], table[sizeof(strict_table) + 3];
    char *out;

    (void)state;
    snprintf(route, sizeof(route), "\xEF\xBB\xBF%s", base_route);
    snprintf(table, sizeof(table), "\xEF\xBB\xBF%s", strict_table);
    make_dir(dir, sizeof(dir), "ris.json", route, "tables/mod.json", table,
             NULL);
    assert_int_equal(mg_mapping_set_load(dir, &set, stderr), MG_OK);
    assert_int_equal(mg_mapping_set_count(set), 1);
    mg_mapping_set_free(set);
    remove_dir(dir);
    make_dir(dir, sizeof(dir), "bad.json",
             "\xEF\xBB\xBF{\n  \"route\": \"b\",\n  \"fields\": {,}\n}\n", NULL);
    out = load_errors(dir);
    assert_non_null(strstr(out, "/bad.json:3: "));
    free(out);
    remove_dir(dir);
}

/* A required "each" rule that finds no item points at its first path in
 * the first such segment: OBX-5 of OBX 1, not OBX[0]-0. */
static void
test_required_each_points_at_its_path(void **state)
{
    static const char route[] =
        "{\n  \"route\": \"r\",\n"
        "  \"match\": { \"message_type\": [\"ORU^R01\"] },\n"
        "  \"adapter\": \"hl7v2.result\",\n"
        "  \"fields\": {\n"
        "    \"report.findings_text\": { \"each\": \"OBX\", \"from\": \"-5\","
        " \"join\": \"\\n\", \"required\": true }\n  }\n}\n";
    static const char msg[] =
        "MSH|^~\\&|RIS|FAC|GW|GW|20240101||ORU^R01|9|P|2.5.1\r"
        "PID|1||77^^^X^MR||Roe^Ann\r"
        "OBR|1||F1|CT^Head|||||||||||||||||||||F\r";
    struct mg_mapping_set *set;
    struct mapped m;
    char dir[64];

    (void)state;
    make_dir(dir, sizeof(dir), "r.json", route, NULL);
    assert_int_equal(mg_mapping_set_load(dir, &set, stderr), MG_OK);
    map_text(&m, set, msg, sizeof(msg) - 1);
    assert_int_equal(m.rc, MG_EMAPPING);
    assert_int_equal(m.diag.code, 101);
    assert_string_equal(m.diag.segment, "OBX");
    assert_int_equal(m.diag.seq, 1);
    assert_int_equal(m.diag.field, 5);
    assert_int_equal(m.diag.rep, 1);
    assert_int_equal(m.diag.comp, 1);
    done(&m);
    mg_mapping_set_free(set);
    remove_dir(dir);
}

/* Whether dir's fingerprint differs from stamp (or dir cannot be read). */
static bool
changed(const char *dir, uint64_t stamp)
{
    uint64_t now;

    return mg_mapping_dir_stamp(dir, &now) != MG_OK || now != stamp;
}

static void
test_set_changed(void **state)
{
    struct mg_mapping_set *set;
    char dir[64], path[128];
    uint64_t stamp;
    FILE *f;

    (void)state;
    make_dir(dir, sizeof(dir), "ris.json", base_route, "tables/mod.json",
             strict_table, NULL);
    assert_int_equal(mg_mapping_set_load(dir, &set, stderr), MG_OK);
    stamp = mg_mapping_set_stamp(set);
    assert_false(changed(dir, stamp));
    /* a new table file changes the stamp */
    snprintf(path, sizeof(path), "%s/tables/other.json", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("{}", f);
    fclose(f);
    assert_true(changed(dir, stamp));
    /* and so does a changed size */
    assert_int_equal(remove(path), 0);
    assert_false(changed(dir, stamp));
    /* a copy with the same size and times put in its place (cp -p,
     * rsync -t) is a change too: another inode */
    snprintf(path, sizeof(path), "%s/ris.json", dir);
    {
        char copy[160];
        struct stat st;
        struct timespec times[2];

        snprintf(copy, sizeof(copy), "%s.new", path);
        f = fopen(copy, "w");
        assert_non_null(f);
        fputs(base_route, f);
        fclose(f);
        assert_int_equal(stat(path, &st), 0);
        times[0] = st.st_atim;
        times[1] = st.st_mtim;
        assert_int_equal(utimensat(AT_FDCWD, copy, times, 0), 0);
        assert_int_equal(rename(copy, path), 0);
        assert_true(changed(dir, stamp));
    }
    mg_mapping_set_free(set);
    assert_int_equal(mg_mapping_set_load(dir, &set, stderr), MG_OK);
    stamp = mg_mapping_set_stamp(set);
    f = fopen(path, "a");
    fputs("\n", f);
    fclose(f);
    assert_true(changed(dir, stamp));
    assert_true(changed("/nonexistent/dir", stamp));
    mg_mapping_set_free(set);
    remove_dir(dir);
}

/* Applying is a function of the message alone: the same message mapped
 * again and again gives the same result and takes the same arena space
 * each time (nothing carried over from the previous call). Speed is the
 * benchmarks' business (tests/bench), not a timed assertion here. */
static void
test_apply_repeatable(void **state)
{
    struct mapped m;
    struct mg_mapping_result first, res;
    struct mg_diag d;
    size_t before, per_call;

    (void)state;
    map_file(&m, HL7 "/dcm4che/ORM_O01-GeneralOrder.hl7");
    before = m.arena.used;
    assert_int_equal(mg_mapping_apply(m.route, m.msg, &m.arena, &first, &d),
                     MG_OK);
    per_call = m.arena.used - before;
    assert_true(first.nvalue > 0);
    for (int i = 0; i < 2000; i++) {
        before = m.arena.used;
        assert_int_equal(mg_mapping_apply(m.route, m.msg, &m.arena, &res, &d),
                         MG_OK);
        assert_int_equal(m.arena.used - before, per_call);
        assert_int_equal(res.nvalue, first.nvalue);
        assert_int_equal(res.ngroup, first.ngroup);
        assert_int_equal(res.nunused, first.nunused);
    }
    done(&m);
}

/* ---- jsonpos --------------------------------------------------------- */

static void
test_jsonpos_lines(void **state)
{
    static const char text[] = "{\n \"a\": {\n  \"b.c\": 1,\n  \"d\": 2\n },\n"
                               " \"d\": 3\n}\n";
    const char *k1[] = {"a", "d"}, *k2[] = {"d"}, *k3[] = {"a", "b.c"},
               *k4[] = {"zz"};

    static const char list[] =
        "{\n \"note\": \"when in\",\n \"when\": [\n"
        "  {\"path\": \"-2\", \"in\": [\"TX\"]},\n"
        "  {\"path\": \"-3\",\n   \"in\": \"X\"}\n ],\n"
        " \"in\": 1,\n \"l\": [{\"k\": [\"{\", 1]}, {\"k\": 2}]\n}\n";
    const char *w1[] = {"when", "[1]", "in"}, *w0[] = {"when", "[0]", "in"},
               *top[] = {"in"}, *deep[] = {"l", "[1]", "k"},
               *gone[] = {"when", "[5]", "in"};

    (void)state;
    assert_int_equal(mg_jsonpos_line(text, k1, 2), 4);
    /* The top-level d, not the a's d that comes first in the text. */
    assert_int_equal(mg_jsonpos_line(text, k2, 1), 6);
    assert_int_equal(mg_jsonpos_line(text, k3, 2), 3);
    assert_int_equal(mg_jsonpos_line(text, k4, 1), 1);
    assert_int_equal(mg_jsonpos_line(NULL, k4, 1), 0);
    assert_int_equal(mg_jsonpos_line_dotted(text, "a.d"), 4);
    /* An index on an object: the rest found in the text after a. */
    assert_int_equal(mg_jsonpos_line_dotted(text, "a[0].d"), 4);
    /* List items: the second condition's "in", not the first's. */
    assert_int_equal(mg_jsonpos_line(list, w1, 3), 6);
    assert_int_equal(mg_jsonpos_line(list, w0, 3), 4);
    assert_int_equal(mg_jsonpos_line(list, top, 1), 8);
    assert_int_equal(mg_jsonpos_line(list, deep, 3), 9);
    /* No such item: the text after "when" (the first "in" there). */
    assert_int_equal(mg_jsonpos_line(list, gone, 3), 4);
    assert_int_equal(mg_jsonpos_line_dotted(list, "l[1].k"), 9);
}

/* ---- FHIRPath -------------------------------------------------------- */

static json_t *
load_json(const char *path)
{
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);

    assert_non_null(j);
    return j;
}

static const char *
fp(json_t *res, const char *expr, struct mg_arena *a)
{
    static char buf[256];
    struct mg_str s;
    int rc = mg_fhirpath_string(expr, res, a, &s);

    if (rc == MG_ENOTFOUND)
        return "(empty)";
    if (rc != MG_OK)
        return "(error)";
    snprintf(buf, sizeof(buf), "%.*s", (int)s.len, s.ptr);
    return buf;
}

/* Choice elements are named without their type (Patient.deceased finds
 * deceasedBoolean); a decimal is written as the shortest number that is
 * the same double (1.1, not 1.1000000000000001). */
static void
test_fhirpath_choice_elements_and_decimals(void **state)
{
    json_t *p = json_loads("{\"resourceType\": \"Patient\","
                           " \"deceasedDateTime\": \"2020-01-02\","
                           " \"identifier\": [{\"value\": \"X\"}]}", 0, NULL);
    json_t *o = json_loads("{\"resourceType\": \"Observation\","
                           " \"valueQuantity\": {\"value\": 1.1},"
                           " \"valueInteger\": 120.0, \"valueString\": 0.00001,"
                           " \"valueDecimal\": 0.30000000000000004,"
                           " \"count\": 9007199254740992,"
                           " \"extension\": [{\"valueExpression\":"
                           " {\"expression\": \"%x\"}}],"
                           " \"codeFilter\": \"not a choice\"}", 0, NULL);
    struct mg_arena a;

    (void)state;
    mg_arena_init(&a, 4096, 0);
    assert_string_equal(fp(p, "Patient.deceased", &a), "2020-01-02");
    assert_string_equal(fp(p, "Patient.deceased.exists()", &a), "true");
    assert_string_equal(fp(p, "Patient.id", &a), "(empty)"); /* not identifier */
    assert_string_equal(fp(p, "Patient[0].identifier.value", &a), "X");
    assert_string_equal(fp(p, "Patient[1].identifier.value", &a), "(empty)");
    assert_string_equal(fp(o, "Observation.value.value", &a), "1.1");
    /* No exponent: %g wrote 120.0 as 1.2e+02 and 0.00001 as 1e-05. */
    assert_string_equal(fp(o, "Observation.valueInteger", &a), "120");
    assert_string_equal(fp(o, "Observation.valueString", &a), "0.00001");
    /* 17 significant digits when 16 do not read back: 0.3 is another
     * double than 0.1 + 0.2. */
    assert_string_equal(fp(o, "Observation.valueDecimal", &a),
                        "0.30000000000000004");
    /* Integers compare exactly (2^53 + 1 is not 2^53); a whole decimal
     * still equals the integer. */
    assert_string_equal(fp(o, "Observation.count = 9007199254740993", &a),
                        "false");
    assert_string_equal(fp(o, "Observation.count = 9007199254740992", &a),
                        "true");
    assert_string_equal(fp(o, "Observation.valueInteger = 120", &a), "true");
    /* R4's other choice types: Extension.value[x] may be an Expression. */
    assert_string_equal(fp(o, "Observation.extension.value.expression", &a),
                        "%x");
    assert_string_equal(fp(o, "Observation.code", &a), "(empty)");
    mg_arena_dispose(&a);
    json_decref(p);
    json_decref(o);
}

static void
test_fhirpath_patients(void **state)
{
    json_t *p1 = load_json(FHIR "/Patient-from-ADT01-28.json");
    json_t *p2 = load_json(FHIR "/Patient-from-ADT-A01-02.json");
    json_t *p3 = load_json(FHIR "/Patient-from-LAB-ORU-1.json");
    struct mg_fhirpath *c;
    struct mg_fhirpath_coll coll;
    struct mg_arena a;

    (void)state;
    mg_arena_init(&a, 4096, 0);
    assert_string_equal(fp(p1, "Patient.name.family", &a), "EVERYMAN");
    assert_string_equal(fp(p1, "Patient.name.given[1]", &a), "A");
    assert_string_equal(fp(p1, "Patient.birthDate", &a), "1961-06-15");
    assert_string_equal(fp(p1, "gender", &a), "male");
    assert_string_equal(
        fp(p1, "Patient.identifier.where(type.coding.code='MR').value", &a),
        "PATID1234");
    assert_string_equal(
        fp(p1, "Patient.identifier.where(type.coding.code = 'SS').system",
           &a),
        "http://example.com/v2-to-fhir-converter/Identifier/USSSA");
    assert_string_equal(fp(p1, "Patient.identifier[2].value", &a),
                        "444333333");
    assert_string_equal(fp(p1, "Patient.telecom.where(use='work').value", &a),
                        "(555)555-2004");
    assert_string_equal(fp(p1, "Patient.name.exists()", &a), "true");
    assert_string_equal(fp(p1, "Patient.deceasedBoolean.exists()", &a),
                        "false");
    assert_string_equal(fp(p1, "Patient.gender = 'male'", &a), "true");
    assert_string_equal(fp(p1, "Patient.gender = 'female'", &a), "false");
    assert_string_equal(fp(p1, "Patient.photo = 'x'", &a), "(empty)");
    assert_string_equal(fp(p1, "Observation.status", &a), "(empty)");
    assert_string_equal(fp(p1, "Patient.name", &a), "(empty)"); /* object */

    /* two MR identifiers: where keeps both, first() the first */
    assert_string_equal(
        fp(p2, "Patient.identifier.where(type.coding.code='MR').first()"
               ".value", &a),
        "1234567");
    assert_string_equal(
        fp(p2, "Patient.identifier.where(type.coding.code='MR')[1].value",
           &a),
        "PATID1234");
    assert_string_equal(fp(p2, "Patient.name.where(use='official').family",
                           &a),
                        "Josh");
    assert_string_equal(fp(p2, "Patient.name.given[2]", &a), "Addsm");
    assert_string_equal(fp(p2, "Patient.name[1].given", &a), "stanley");
    assert_string_equal(
        fp(p2, "Patient.identifier.where(period.exists()).first().value",
           &a),
        "1234567");
    assert_string_equal(fp(p3, "Patient.communication.preferred", &a), "true");
    {
        /* a JSON null in an array adds nothing (FHIR pads given[] with
         * it when _given carries extensions) */
        json_t *pad = json_loads("{\"resourceType\": \"Patient\", \"name\": "
                                 "[{\"given\": [null, \"Ann\"]}, "
                                 "{\"given\": [null]}]}", 0, NULL);

        assert_non_null(pad);
        assert_string_equal(fp(pad, "Patient.name.given[0]", &a), "Ann");
        assert_string_equal(fp(pad, "Patient.name[2].given.exists()", &a),
                            "false");
        json_decref(pad);
    }
    assert_string_equal(fp(p3, "Patient.address.where(type='postal').city",
                           &a),
                        "FOWL");

    /* collections */
    assert_int_equal(mg_fhirpath_compile(MG_STR("Patient.name.given"), &c,
                                         NULL),
                     MG_OK);
    assert_int_equal(mg_fhirpath_eval(c, p2, &a, &coll), MG_OK);
    assert_int_equal(coll.n, 5); /* ADAM A Addsm, stanley, Son */
    assert_string_equal(json_string_value(coll.item[3]), "stanley");
    mg_fhirpath_free(c);
    /* No resource: empty, not one NULL item (found by fuzz_fhirpath). */
    assert_int_equal(mg_fhirpath_compile(MG_STR("first()"), &c, NULL), MG_OK);
    assert_int_equal(mg_fhirpath_eval(c, NULL, &a, &coll), MG_OK);
    assert_int_equal(coll.n, 0);
    mg_fhirpath_free(c);

    /* syntax errors */
    static const char *const bad[] = {
        "Patient.", "Patient.name[", "Patient.name.where(use='x'",
        "Patient.count()", "Patient.name = ", "Patient.name = 'x",
        "Patient..name", "Patient.name[a]", "Patient.name )",
        "Patient.name[99999999999]", "Patient.gender = 1e999",
        "Patient.gender = 'caf\xE9'",
        "a.where(b.where(c.where(d.where(e.where(f.where(g.where(h.where("
        "i.where(j.where(k.where(l.where(m.where(n.where(o.where(p.where("
        "q.where(r=1)))))))))))))))))"};
    struct mg_diag d;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        c = NULL;
        if (mg_fhirpath_compile(mg_str_from(bad[i]), &c, &d) != MG_EINVAL)
            fail_msg("\"%s\" should not compile", bad[i]);
        assert_null(c);
        assert_non_null(strstr(d.text, "FHIRPath"));
    }
    /* The offset of an unsupported function is its name's. */
    assert_int_equal(mg_fhirpath_compile(MG_STR("Patient.count()"), &c, &d),
                     MG_EINVAL);
    assert_non_null(strstr(d.text, "at offset 8"));
    /* An index is read within the text, not past it: "[1" of "[12]". */
    assert_int_equal(mg_fhirpath_compile(mg_str_n("Patient.name[12]", 14),
                                         &c, &d),
                     MG_EINVAL);
    assert_non_null(strstr(d.text, "expected ']' at offset 14"));
    mg_arena_dispose(&a);
    json_decref(p1);
    json_decref(p2);
    json_decref(p3);
}

/* ---- out of memory --------------------------------------------------- */

/* A set that a reload replaced stays usable while a reference to it is
 * held (a message mapped with it and not yet committed); the last free
 * releases it (ASan and the leak check see both). */
static void
test_set_references(void **state)
{
    struct mg_mapping_set *set;
    struct mapped m;
    size_t len;
    char *text = mg_test_read_file(HL7 "/fhir-converter/ADT-A01-02.hl7", &len);

    (void)state;
    assert_non_null(text);
    assert_int_equal(mg_mapping_set_load(MAPPINGS, &set, stderr), MG_OK);
    assert_ptr_equal(mg_mapping_set_ref(set), set);
    assert_null(mg_mapping_set_ref(NULL));
    mg_mapping_set_free(set); /* the loader's reference: still alive */
    map_text(&m, set, text, len);
    assert_int_equal(m.rc, MG_OK);
    done(&m);
    mg_mapping_set_free(set);
    free(text);
}

/* Every allocation of a load may fail: the result is MG_ENOMEM (or OK once
 * the failure point is past the end), never a crash or a leak. */
static void
test_load_allocation_failures(void **state)
{
    struct mg_mapping_set *set;
    long live = mg_alloc_live();
    int rc, n;

    (void)state;
    for (n = 1; n < 200; n++) {
        set = NULL;
        mg_alloc_fail_after(n);
        rc = mg_mapping_set_load(MAPPINGS, &set, NULL);
        mg_alloc_fail_after(0);
        if (rc == MG_OK) {
            mg_mapping_set_free(set);
            break;
        }
        assert_int_equal(rc, MG_ENOMEM);
        assert_null(set);
        assert_int_equal(mg_alloc_live(), live);
    }
    assert_true(n < 200);
}

/* An arena that runs out part-way through gives MG_ENOMEM, at every
 * point. */
static void
test_apply_arena_exhausted(void **state)
{
    size_t len;
    char *text = mg_test_read_file(HL7 "/dcm4che/ORU_R01-SR.hl7", &len);
    struct mg_arena pa, a;
    struct mg_hl7v2_msg *msg;
    const struct mg_mapping_route *route;
    struct mg_mapping_result res;
    struct mg_diag d;
    size_t max;
    int rc = MG_ENOMEM;

    (void)state;
    assert_non_null(text);
    mg_arena_init(&pa, 65536, 0);
    assert_int_equal(mg_hl7v2_parse(mg_str_n(text, len), NULL, &pa, &msg, &d),
                     MG_OK);
    assert_int_equal(mg_mapping_route_find(shipped, &msg->hdr, NULL, &route),
                     MG_OK);
    for (max = 64; rc == MG_ENOMEM && max < 65536; max += 64) {
        mg_arena_init(&a, 256, max);
        rc = mg_mapping_apply(route, msg, &a, &res, &d);
        mg_arena_dispose(&a);
        assert_true(rc == MG_OK || rc == MG_ENOMEM);
    }
    assert_int_equal(rc, MG_OK);
    mg_arena_dispose(&pa);
    free(text);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_load_shipped),
        cmocka_unit_test(test_apply_every_shipped_message),
        cmocka_unit_test(test_adt_fhir_converter_v251),
        cmocka_unit_test(test_shipped_sex_table),
        cmocka_unit_test(test_shipped_street_address),
        cmocka_unit_test(test_shipped_referrer_id_is_of_the_named_referrer),
        cmocka_unit_test(test_adt_fhir_converter_v28),
        cmocka_unit_test(test_adt_merge),
        cmocka_unit_test(test_orders_ihe_orm_with_zds),
        cmocka_unit_test(test_orders_omi_ipc),
        cmocka_unit_test(test_orders_fhir_converter),
        cmocka_unit_test(test_orders_required_missing),
        cmocka_unit_test(test_results_sr),
        cmocka_unit_test(test_results_pdf_and_cda),
        cmocka_unit_test(test_results_fhir_converter),
        cmocka_unit_test(test_explicit_null),
        cmocka_unit_test(test_fallbacks_and_conditions),
        cmocka_unit_test(test_results_text_lines),
        cmocka_unit_test(test_required_and_type_errors),
        cmocka_unit_test(test_transform_leaving_nothing_is_no_value),
        cmocka_unit_test(test_condition_skips_a_matching_repetition_without_the_value),
        cmocka_unit_test(test_group_skips_empty_repetitions),
        cmocka_unit_test(test_split_into_order_groups),
        cmocka_unit_test(test_split_refuses_too_many_parts),
        cmocka_unit_test(test_each_rule_refuses_too_many_items),
        cmocka_unit_test(test_repetitions_are_walked_once),
        cmocka_unit_test(test_transforms_table),
        cmocka_unit_test(test_load_errors_name_file_line_key),
        cmocka_unit_test(test_load_errors_routes),
        cmocka_unit_test(test_load_errors_const_with_required_or_default),
        cmocka_unit_test(test_load_checks_adapter_names),
        cmocka_unit_test(test_extends_and_precedence),
        cmocka_unit_test(test_strict_table_and_listener),
        cmocka_unit_test(test_unused_fields),
        cmocka_unit_test(test_dry_run_print),
        cmocka_unit_test(test_load_files_with_a_byte_order_mark),
        cmocka_unit_test(test_required_each_points_at_its_path),
        cmocka_unit_test(test_set_changed),
        cmocka_unit_test(test_apply_repeatable),
        cmocka_unit_test(test_jsonpos_lines),
        cmocka_unit_test(test_fhirpath_patients),
        cmocka_unit_test(test_fhirpath_choice_elements_and_decimals),
        cmocka_unit_test(test_set_references),
        cmocka_unit_test(test_results_blank_lines),
        cmocka_unit_test(test_results_blank_repetitions),
        cmocka_unit_test(test_results_unescaped_separators_in_text),
        cmocka_unit_test(test_results_interpreter_written_as_xcn),
        cmocka_unit_test(test_results_wrong_attachment_is_not_kept),
        cmocka_unit_test(test_results_accession_and_deleted_lines),
        cmocka_unit_test(test_orders_procedure_from_one_field),
        cmocka_unit_test(test_load_allocation_failures),
        cmocka_unit_test(test_apply_arena_exhausted),
    };

    return cmocka_run_group_tests(tests, setup_shipped, teardown_shipped);
}
