/* Unit tests for the HL7 v2 codec: every message in tests/data/hl7v2
 * (parse, header against MANIFEST.tsv, round trip), hand-picked header
 * values, paths, escapes, character sets, nulls, Z-segments, batches,
 * ACKs in both modes and malformed input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "core/alloc.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/error.h"
#include "hl7v2/hl7v2.h"

#define DATA MG_TESTDATA_DIR "/hl7v2"

/* ---- helpers ------------------------------------------------------- */


/* What serialize must give back: BOM dropped, CR after every segment,
 * empty segments gone. Terminators as the parser reads them: CR (CRLF as
 * one), or LF when there is no CR at all. */
static void
normalise(const char *in, size_t len, struct mg_buf *out)
{
    char term;
    size_t i = 0, start;

    if (len >= 3 && memcmp(in, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    term = memchr(in, '\r', len) ? '\r' : '\n';
    while (i < len) {
        start = i;
        while (i < len && in[i] != term)
            i++;
        if (i > start) {
            assert_int_equal(mg_buf_append(out, in + start, i - start), 0);
            assert_int_equal(mg_buf_appendc(out, '\r'), 0);
        }
        i++;
        if (term == '\r' && i < len && in[i] == '\n')
            i++;
    }
}

static bool
contains(struct mg_str hay, const char *needle)
{
    size_t n = strlen(needle);

    for (size_t i = 0; i + n <= hay.len; i++)
        if (memcmp(hay.ptr + i, needle, n) == 0)
            return true;
    return false;
}

static void
assert_str(struct mg_str s, const char *want)
{
    char buf[512];

    snprintf(buf, sizeof(buf), "%.*s", (int)MG_MIN(s.len, 500), s.ptr);
    assert_string_equal(buf, want);
    assert_int_equal(s.len, strlen(want));
}

static void
assert_path(const struct mg_hl7v2_msg *m, const char *path, const char *want)
{
    struct mg_hl7v2_val v;

    assert_int_equal(mg_hl7v2_get(m, path, &v), MG_OK);
    assert_str(v.str, want);
}

static struct mg_hl7v2_msg *
parse_ok(struct mg_arena *a, const char *text,
         const struct mg_hl7v2_parse_opts *opts)
{
    struct mg_hl7v2_msg *m = NULL;
    struct mg_diag d;
    int rc = mg_hl7v2_parse(mg_str_from(text), opts, a, &m, &d);

    if (rc != MG_OK)
        fail_msg("parse: %s (%s-%d: %s)", mg_strerror(rc), d.segment, d.field,
                 d.text);
    return m;
}

/* ---- the corpus ---------------------------------------------------- */

/* The "type@version" column of MANIFEST.tsv for file rel, e.g.
 * "ADT^A01^ADT_A01@2.8". */
static bool
manifest_lookup(const char *manifest, const char *rel, char *out, size_t n)
{
    size_t rl = strlen(rel);

    for (const char *line = manifest; line && *line;) {
        const char *nl = strchr(line, '\n');

        if (strncmp(line, rel, rl) == 0 && line[rl] == '\t') {
            const char *c = line;
            for (int i = 0; i < 3 && c; i++)
                c = strchr(c, '\t') ? strchr(c, '\t') + 1 : NULL;
            if (c == NULL)
                return false;
            snprintf(out, n, "%.*s", (int)strcspn(c, "\t"), c);
            return true;
        }
        line = nl ? nl + 1 : NULL;
    }
    return false;
}

static void
check_against_manifest(const struct mg_hl7v2_msg *m, const char *want,
                       const char *rel)
{
    char got[128];
    const struct mg_hl7v2_header *h = &m->hdr;

    if (h->structure.len > 0)
        snprintf(got, sizeof(got), "%.*s^%.*s^%.*s@%.*s", (int)h->type.len,
                 h->type.ptr, (int)h->trigger.len, h->trigger.ptr,
                 (int)h->structure.len, h->structure.ptr,
                 (int)h->version.len, h->version.ptr);
    else
        snprintf(got, sizeof(got), "%.*s^%.*s@%.*s", (int)h->type.len,
                 h->type.ptr, (int)h->trigger.len, h->trigger.ptr,
                 (int)h->version.len, h->version.ptr);
    if (strcmp(got, want) != 0)
        fail_msg("%s: header %s, manifest %s", rel, got, want);
}

/* Parses, checks against the manifest and round-trips one file. */
static void
check_corpus_file(const char *manifest, const char *rel)
{
    char path[512], want[128];
    struct mg_arena a;
    struct mg_buf out, norm;
    struct mg_hl7v2_msg *m = NULL;
    struct mg_hl7v2_msh msh;
    struct mg_diag d;
    size_t len;
    char *text;
    int rc;

    snprintf(path, sizeof(path), "%s/%s", DATA, rel);
    text = mg_test_read_file(path, &len);
    assert_non_null(text);
    assert_true(manifest_lookup(manifest, rel, want, sizeof(want)));
    mg_arena_init(&a, 8192, 0);
    mg_buf_init(&out, 0);
    mg_buf_init(&norm, 0);

    assert_int_equal(mg_hl7v2_check(mg_str_n(text, len), &msh, &d), MG_OK);
    rc = mg_hl7v2_parse(mg_str_n(text, len), NULL, &a, &m, &d);
    if (rc != MG_OK)
        fail_msg("%s: %s at %s-%d: %s", rel, mg_strerror(rc), d.segment,
                 d.field, d.text);
    check_against_manifest(m, want, rel);
    assert_true(m->nseg >= 2);
    assert_string_equal(m->seg[0].id, "MSH");
    assert_int_equal(m->bom, len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0);

    assert_int_equal(mg_hl7v2_serialize(m, &out), MG_OK);
    normalise(text, len, &norm);
    if (out.len != norm.len || memcmp(out.ptr, norm.ptr, out.len) != 0)
        fail_msg("%s: round trip differs (%zu vs %zu bytes)", rel, out.len,
                 norm.len);

    mg_buf_dispose(&norm);
    mg_buf_dispose(&out);
    mg_arena_dispose(&a);
    free(text);
}

static int
corpus_dir(const char *manifest, const char *sub)
{
    char path[512], rel[256];
    struct dirent *e;
    DIR *dir;
    int n = 0;

    snprintf(path, sizeof(path), "%s/%s", DATA, sub);
    dir = opendir(path);
    assert_non_null(dir);
    while ((e = readdir(dir)) != NULL) {
        size_t l = strlen(e->d_name);

        if (l < 4 || strcmp(e->d_name + l - 4, ".hl7") != 0)
            continue;
        snprintf(rel, sizeof(rel), "%s/%.200s", sub, e->d_name);
        check_corpus_file(manifest, rel);
        n++;
    }
    closedir(dir);
    return n;
}

static void
test_corpus_every_message(void **state)
{
    size_t len;
    char *manifest = mg_test_read_file(DATA "/MANIFEST.tsv", &len);
    long live = mg_alloc_live();
    int n;

    (void)state;
    assert_non_null(manifest);
    n = corpus_dir(manifest, "fhir-converter");
    assert_int_equal(n, 30);
    n = corpus_dir(manifest, "dcm4che");
    assert_int_equal(n, 11);
    assert_int_equal(mg_alloc_live(), live);
    free(manifest);
}

/* Values read by hand from the files. */
static const struct {
    const char *file;
    const char *control_id, *type, *trigger, *structure, *version;
    const char *sending_app, *sending_fac, *charset, *accept, *app;
    const char *path, *value; /* one more value in the body */
} picked[] = {
    {"fhir-converter/ADT-A01-01.hl7", "MSG00001", "ADT", "A01", "ADT_A01",
     "2.8", "ADTApp", "GHHSFacility", "", "", "", "PID-3.4.2", "2.16.1"},
    {"fhir-converter/ADT01-23.hl7", "599102", "ADT", "A01", "", "2.3",
     "AccMgr", "1", "", "", "", "PID-3.5", "MR"},
    {"fhir-converter/LAB-ORU-2.hl7", "ControlID", "ORU", "R01", "", "2.5",
     "SomeSystem", "", "", "", "", "OBX[3]-3.2",
     "EOSINOPHILS/100 LEUKOCYTES"},
    {"fhir-converter/VXU.hl7", "NIST-IZ-AD-2.1_Send_V04_Z22", "VXU", "V04",
     "VXU_V04", "2.5.1", "NISTEHRAPP", "NISTEHRFAC", "", "ER", "AL",
     "PID-5.2", "Elise"},
    {"fhir-converter/ADT-A40-02.hl7", "8919-40", "ADT", "A40", "ADT_A40",
     "2.8", "Ntierprise", "Ntierprise Clinic", "", "NE", "NE", "MSH-9.3",
     "ADT_A40"},
    {"fhir-converter/ADT-A01-02.hl7", "MSG00001", "ADT", "A01", "ADT_A01",
     "2.8", "ADTApp", "GHHSFacility", "", "", "", "PV1-14",
     "NHS Provider-General (inc.A&E-this Hosp)"},
    {"dcm4che/ORM_O01-GeneralOrder.hl7", "1001126", "OMI", "O23", "OMI_O23",
     "2.5.1", "MESA_OF", "XYZ_RADIOLOGY", "8859/1", "", "", "ZDS-1.1",
     "1.2.392.200036.9125.0.198811291108.7"},
    {"dcm4che/ADT_A40-PatientMerge.hl7", "1002122", "ADT", "A40", "ADT_A39",
     "2.5.1", "MESA_OF", "XYZ_RADIOLOGY", "8859/1", "", "", "MRG-7.1",
     "Old_Smith"},
    {"dcm4che/ORU_R01-CDA.hl7", "1001127", "ORU", "R01", "ORU_R01", "2.5.1",
     "MESA_RPT_MGR", "XYZ_RADIOLOGY", "8859/1", "", "", "PID-3.1", "PID_1"},
    {"dcm4che/SIU_S12-NewAppointmentBooking.hl7", "1001127", "SIU", "S12",
     "SIU_S12", "2.5.1", "MESA_OF", "XYZ_RADIOLOGY", "8859/1", "", "",
     "AIS-3.2", "SEPTOPLASTIA (OPERA\xC3\x87\xC3\x83O ISOLADA)"},
};

static void
test_corpus_hand_picked_values(void **state)
{
    (void)state;
    for (size_t i = 0; i < MG_ARRAY_LEN(picked); i++) {
        char path[512];
        struct mg_arena a;
        struct mg_hl7v2_msg *m;
        size_t len;
        char *text;

        snprintf(path, sizeof(path), "%s/%s", DATA, picked[i].file);
        text = mg_test_read_file(path, &len);
        assert_non_null(text);
        mg_arena_init(&a, 8192, 0);
        m = parse_ok(&a, text, NULL);
        assert_str(m->hdr.control_id, picked[i].control_id);
        assert_str(m->hdr.type, picked[i].type);
        assert_str(m->hdr.trigger, picked[i].trigger);
        assert_str(m->hdr.structure, picked[i].structure);
        assert_str(m->hdr.version, picked[i].version);
        assert_str(m->hdr.sending_app, picked[i].sending_app);
        assert_str(m->hdr.sending_fac, picked[i].sending_fac);
        assert_str(m->hdr.charset, picked[i].charset);
        assert_str(m->hdr.accept_ack, picked[i].accept);
        assert_str(m->hdr.app_ack, picked[i].app);
        assert_path(m, picked[i].path, picked[i].value);
        mg_arena_dispose(&a);
        free(text);
    }
}

/* The dcm4che orders declare 8859/1 but carry UTF-8 bytes of an en dash:
 * we honour the declaration (three Latin-1 characters), unless a sender
 * profile forces UTF-8. */
static void
test_corpus_declared_charset_honoured(void **state)
{
    struct mg_hl7v2_parse_opts utf8 = {.force_charset = "UNICODE UTF-8"};
    struct mg_arena a;
    struct mg_hl7v2_msg *m;
    size_t len;
    char *text = mg_test_read_file(DATA "/dcm4che/OMI_O23-ImagingOrder.hl7", &len);

    (void)state;
    assert_non_null(text);
    mg_arena_init(&a, 8192, 0);
    m = parse_ok(&a, text, NULL);
    assert_true(m->transcoded);
    assert_int_equal(m->charset, MG_HL7V2_CS_LATIN1);
    assert_true(contains(m->text, "\xC3\xA2\xC2\x80\xC2\x93"));
    m = parse_ok(&a, text, &utf8);
    assert_false(m->transcoded);
    assert_ptr_equal(m->text.ptr, text);
    mg_arena_dispose(&a);
    free(text);
}

/* ---- paths and access ---------------------------------------------- */

static const char adt[] =
    "MSH|^~\\&|SND|SFAC|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|CTRL1|P|"
    "2.5.1\r"
    "EVN|A01|20240101120000\r"
    "PID|1||111^^^HOSP&1.2.3&ISO^PI~222^^^HOSP&1.2.3&ISO^MR~333^^^SSA^SS||"
    "Doe^John^Q~Roe^Jo||19700101|M\r"
    "OBX|1|TX|A||first\r"
    "OBX|2|TX|B||second\r"
    "OBX|3|TX|C||third~line two\r"
    "ZDS|1.2.3^100^Application^DICOM\r";

static void
test_access_paths(void **state)
{
    static const struct {
        const char *path, *want;
    } cases[] = {
        {"MSH-1", "|"},
        {"MSH-2", "^~\\&"},
        {"MSH-3", "SND"},
        {"MSH-9", "ADT"}, /* a composite reads as its first component */
        {"MSH-9.2", "A01"},
        {"MSH-9.3", "ADT_A01"},
        {"MSH-10", "CTRL1"},
        {"PID-3", "111"},
        {"PID-3[2].1", "222"},
        {"PID-3[2]", "222"},
        {"PID-3[3].4", "SSA"},
        {"PID-3.4.2", "1.2.3"},
        {"PID-3[2].4.3", "ISO"},
        {"PID-3[4].1", ""},
        {"PID-5[2].2", "Jo"},
        {"PID-8", "M"},
        {"PID-30", ""},
        {"OBX[3]-5", "third"},
        {"OBX[3]-5[2]", "line two"},
        {"OBX[2]-5", "second"},
        {"OBX-5", "first"},
        {"OBX[4]-5", ""},
        {"ZDS-1.4", "DICOM"},
        {"PV1-2", ""},
    };
    struct mg_arena a;
    struct mg_hl7v2_msg *m;

    (void)state;
    mg_arena_init(&a, 4096, 0);
    m = parse_ok(&a, adt, NULL);
    for (size_t i = 0; i < MG_ARRAY_LEN(cases); i++)
        assert_path(m, cases[i].path, cases[i].want);
    mg_arena_dispose(&a);
}

static void
test_access_iteration_and_find(void **state)
{
    const struct mg_hl7v2_seg *pid, *obx;
    struct mg_arena a;
    struct mg_hl7v2_msg *m;
    struct mg_hl7v2_val v;
    struct mg_hl7v2_rep_iter it = {0};
    struct mg_str raw;
    int rep = 0;

    (void)state;
    mg_arena_init(&a, 4096, 0);
    m = parse_ok(&a, adt, NULL);
    assert_int_equal(mg_hl7v2_seg_count(m, "OBX"), 3);
    assert_int_equal(mg_hl7v2_seg_count(m, "PID"), 1);
    assert_int_equal(mg_hl7v2_seg_count(m, "NK1"), 0);
    assert_null(mg_hl7v2_seg_find(m, "OBX", 4));
    obx = mg_hl7v2_seg_find(m, "OBX", 3);
    assert_non_null(obx);
    assert_int_equal(mg_hl7v2_rep_count(m, obx, 5), 2);
    assert_int_equal(mg_hl7v2_seg_get(m, obx, 5, 2, 1, 1, &v), MG_OK);
    assert_str(v.str, "line two");

    pid = mg_hl7v2_seg_find(m, "PID", 1);
    assert_int_equal(mg_hl7v2_rep_count(m, pid, 3), 3);
    assert_int_equal(mg_hl7v2_rep_count(m, pid, 2), 0);
    assert_int_equal(mg_hl7v2_comp_count(m, pid, 3, 1), 5);
    /* the repetitions in one walk read as mg_hl7v2_seg_get() reads them */
    while (mg_hl7v2_rep_next(m, pid, 3, &it, &raw)) {
        struct mg_hl7v2_val w;
        rep = it.n;
        for (int comp = 1; comp <= 5; comp++) {
            assert_int_equal(mg_hl7v2_rep_get(m, pid, 3, raw, comp, 1, &v),
                             MG_OK);
            assert_int_equal(mg_hl7v2_seg_get(m, pid, 3, rep, comp, 1, &w),
                             MG_OK);
            assert_int_equal(v.presence, w.presence);
            assert_true(mg_str_eq(v.str, w.str));
        }
    }
    assert_int_equal(rep, 3);
    assert_int_equal(mg_hl7v2_seg_get(m, pid, 3, 2, 1, 1, &v), MG_OK);
    assert_str(v.str, "222");
    assert_int_equal(obx->seq, 3); /* the third OBX */
    memset(&it, 0, sizeof(it));
    assert_false(mg_hl7v2_rep_next(m, pid, 2, &it, &raw)); /* empty field */
    assert_str(mg_hl7v2_seg_field(pid, 8), "M");
    assert_str(mg_hl7v2_seg_field(pid, 99), "");
    assert_int_equal(mg_hl7v2_seg_get(m, pid, 0, 1, 1, 1, &v), MG_EINVAL);
    assert_str(mg_hl7v2_getz(m, "PID-5.1"), "Doe");
    assert_str(mg_hl7v2_getz(m, "bad path"), "");
    mg_arena_dispose(&a);
}

static void
test_path_parse_cases(void **state)
{
    static const struct {
        const char *text;
        int rc;
        struct mg_hl7v2_path want;
    } cases[] = {
        {"PID-3", MG_OK, {"PID", 1, 3, 1, 1, 1}},
        {"PID-3[2].1", MG_OK, {"PID", 1, 3, 2, 1, 1}},
        {"OBX[3]-5", MG_OK, {"OBX", 3, 5, 1, 1, 1}},
        {"PID-3.1.2", MG_OK, {"PID", 1, 3, 1, 1, 2}},
        {"MSH-9.2", MG_OK, {"MSH", 1, 9, 1, 2, 1}},
        {"ZDS[2]-1[3].4.5", MG_OK, {"ZDS", 2, 1, 3, 4, 5}},
        {"PID", MG_EINVAL, {{0}, 0, 0, 0, 0, 0}},
        {"PID-", MG_EINVAL, {{0}, 0, 0, 0, 0, 0}},
        {"PID-0", MG_EINVAL, {{0}, 0, 0, 0, 0, 0}},
        {"pid-3", MG_EINVAL, {{0}, 0, 0, 0, 0, 0}},
        {"PID-3[0]", MG_EINVAL, {{0}, 0, 0, 0, 0, 0}},
        {"PID-3[2", MG_EINVAL, {{0}, 0, 0, 0, 0, 0}},
        {"PID-3.", MG_EINVAL, {{0}, 0, 0, 0, 0, 0}},
        {"PID-3.1.2.3", MG_EINVAL, {{0}, 0, 0, 0, 0, 0}},
        {"PID-3x", MG_EINVAL, {{0}, 0, 0, 0, 0, 0}},
        {"PID-99999999", MG_EINVAL, {{0}, 0, 0, 0, 0, 0}},
    };
    struct mg_hl7v2_path p;

    (void)state;
    for (size_t i = 0; i < MG_ARRAY_LEN(cases); i++) {
        int rc = mg_hl7v2_path_parse(mg_str_from(cases[i].text), &p);

        if (rc != cases[i].rc)
            fail_msg("%s: rc %d", cases[i].text, rc);
        if (rc != MG_OK)
            continue;
        assert_string_equal(p.seg, cases[i].want.seg);
        assert_int_equal(p.seq, cases[i].want.seq);
        assert_int_equal(p.field, cases[i].want.field);
        assert_int_equal(p.rep, cases[i].want.rep);
        assert_int_equal(p.comp, cases[i].want.comp);
        assert_int_equal(p.sub, cases[i].want.sub);
    }
}

/* ---- escapes ------------------------------------------------------- */

static void
test_escape_unescape_cases(void **state)
{
    static const struct {
        const char *raw;
        enum mg_hl7v2_charset cs;
        const char *want;
    } cases[] = {
        {"plain", MG_HL7V2_CS_ASCII, "plain"},
        {"A\\F\\B", MG_HL7V2_CS_ASCII, "A|B"},
        {"A\\S\\B", MG_HL7V2_CS_ASCII, "A^B"},
        {"A\\T\\E", MG_HL7V2_CS_ASCII, "A&E"},
        {"A\\R\\B", MG_HL7V2_CS_ASCII, "A~B"},
        {"C:\\E\\dir", MG_HL7V2_CS_ASCII, "C:\\dir"},
        {"\\F\\\\S\\\\T\\\\R\\\\E\\", MG_HL7V2_CS_ASCII, "|^&~\\"},
        {"one\\.br\\two", MG_HL7V2_CS_ASCII, "one\ntwo"},
        {"a\\.sp 2\\b", MG_HL7V2_CS_ASCII, "a\n\nb"},
        {"a\\.sp\\b", MG_HL7V2_CS_ASCII, "a\nb"},
        {"Size:\\.sk 3\\12 mm", MG_HL7V2_CS_ASCII, "Size:   12 mm"},
        {"a\\.sk\\b", MG_HL7V2_CS_ASCII, "a b"},
        {"\\.ce\\title", MG_HL7V2_CS_ASCII, "\ntitle"},
        {"\\H\\bold\\N\\", MG_HL7V2_CS_ASCII, "bold"},
        {"x\\.in 4\\y\\.fi\\", MG_HL7V2_CS_ASCII, "xy"},
        {"\\X41\\", MG_HL7V2_CS_ASCII, "A"},
        {"\\X414243\\", MG_HL7V2_CS_ASCII, "ABC"},
        {"caf\\XC3A9\\", MG_HL7V2_CS_UTF8, "caf\xC3\xA9"},
        {"caf\\XE9\\", MG_HL7V2_CS_LATIN1, "caf\xC3\xA9"},
        {"OPERA\\XC7\\\\XC3\\O", MG_HL7V2_CS_LATIN1,
         "OPERA\xC3\x87\xC3\x83O"},
        {"bad\\XFF\\", MG_HL7V2_CS_UTF8, "bad\xEF\xBF\xBD"},
        /* a NUL, which no text column can hold, is no text either */
        {"a\\X00\\b", MG_HL7V2_CS_ASCII, "a\xEF\xBF\xBD" "b"},
        {"\\X410042\\", MG_HL7V2_CS_UTF8, "A\xEF\xBF\xBD" "B"},
        {"\\X4\\", MG_HL7V2_CS_ASCII, "\\X4\\"},      /* odd digits */
        {"\\XZZ\\", MG_HL7V2_CS_ASCII, "\\XZZ\\"},    /* not hex */
        {"\\Zlocal\\", MG_HL7V2_CS_ASCII, "\\Zlocal\\"}, /* kept */
        {"\\C2842\\x", MG_HL7V2_CS_ASCII, "\\C2842\\x"},
        {"\\Q\\", MG_HL7V2_CS_ASCII, "\\Q\\"},
        {"\\\\", MG_HL7V2_CS_ASCII, "\\\\"},
        {"tail\\", MG_HL7V2_CS_ASCII, "tail\\"},      /* unterminated */
        {"a\\F", MG_HL7V2_CS_ASCII, "a\\F"},
        {"\\P\\", MG_HL7V2_CS_ASCII, "\\P\\"},        /* no trunc char */
    };
    static const struct mg_hl7v2_delims d = {'|', '^', '~', '\\', '&', '\0'};
    struct mg_arena a;
    struct mg_str out;

    (void)state;
    mg_arena_init(&a, 4096, 0);
    for (size_t i = 0; i < MG_ARRAY_LEN(cases); i++) {
        struct mg_str raw = mg_str_from(cases[i].raw);

        assert_int_equal(mg_hl7v2_unescape(raw, &d, cases[i].cs, &a, &out),
                         MG_OK);
        if (out.len != strlen(cases[i].want) ||
            memcmp(out.ptr, cases[i].want, out.len) != 0)
            fail_msg("case %zu (%s): got '%.*s'", i, cases[i].raw,
                     (int)out.len, out.ptr);
    }
    /* Without an escape character nothing is decoded or copied. */
    struct mg_hl7v2_delims short_d = {'|', '^', '~', '\0', '\0', '\0'};
    struct mg_str raw = MG_STR("A\\F\\B");
    assert_int_equal(mg_hl7v2_unescape(raw, &short_d, MG_HL7V2_CS_ASCII, &a,
                                       &out),
                     MG_OK);
    assert_ptr_equal(out.ptr, raw.ptr);
    mg_arena_dispose(&a);
}

static void
test_escape_round_trip(void **state)
{
    static const char *texts[] = {
        "a|b^c~d\\e&f", "line\r\nbreak", "", "plain text", "\\E\\",
    };
    static const struct mg_hl7v2_delims d = {'|', '^', '~', '\\', '&', '#'};
    struct mg_arena a;
    struct mg_buf b;
    struct mg_str out;

    (void)state;
    mg_arena_init(&a, 4096, 0);
    mg_buf_init(&b, 0);
    for (size_t i = 0; i < MG_ARRAY_LEN(texts); i++) {
        mg_buf_reset(&b);
        assert_int_equal(mg_hl7v2_escape(&b, &d, mg_str_from(texts[i])), 0);
        assert_null(memchr(mg_buf_str(&b).ptr, '|', b.len));
        assert_null(memchr(mg_buf_str(&b).ptr, '\r', b.len));
        assert_int_equal(mg_hl7v2_unescape(mg_buf_str(&b), &d,
                                           MG_HL7V2_CS_UTF8, &a, &out),
                         MG_OK);
        assert_str(out, texts[i]);
    }
    mg_buf_reset(&b);
    assert_int_equal(mg_hl7v2_escape(&b, &d, MG_STR("x#y")), 0);
    assert_string_equal(b.ptr, "x\\P\\y");
    mg_buf_dispose(&b);
    mg_arena_dispose(&a);
}

/* MLLP cannot frame a payload holding its block bytes (SB 0x0B, EB 0x1C),
 * and text pasted from a word processor carries VT (0x0B) as a line
 * break: escaped text holds no control character but TAB, so an ORU or
 * an ACK built from it can always be sent. */
static void
test_escape_control_bytes(void **state)
{
    static const struct mg_hl7v2_delims d = {'|', '^', '~', '\\', '&', 0};
    static const struct mg_hl7v2_delims no_esc = {'|', '^', '~', 0, 0, 0};
    struct mg_str text = MG_STR("a\x0b" "b\x1c" "c\td\x01" "e\x7f");
    struct mg_arena a;
    struct mg_buf b;
    struct mg_str out;

    (void)state;
    mg_arena_init(&a, 4096, 0);
    mg_buf_init(&b, 0);
    assert_int_equal(mg_hl7v2_escape(&b, &d, text), MG_OK);
    assert_string_equal(b.ptr, "a\\X0B\\b\\X1C\\c\td\\X01\\e\x7f");
    assert_int_equal(mg_hl7v2_unescape(mg_buf_str(&b), &d, MG_HL7V2_CS_UTF8,
                                       &a, &out),
                     MG_OK);
    assert_str(out, "a\x0b" "b\x1c" "c\td\x01" "e\x7f");
    mg_buf_reset(&b);
    assert_int_equal(mg_hl7v2_escape(&b, &no_esc, text), MG_OK);
    assert_string_equal(b.ptr, "a b c\td e\x7f");
    mg_buf_dispose(&b);
    mg_arena_dispose(&a);
}

/* ---- character sets ------------------------------------------------ */

#define MSH_CS(cs)                                                             \
    "MSH|^~\\&|A|B|C|D|20240101||ADT^A08|C1|P|2.5||||||" cs "\r"

static void
test_charset_cases(void **state)
{
    static const struct {
        const char *msg;
        const char *default_cs;
        int rc;
        const char *name;    /* PID-5.1 when rc == MG_OK */
        bool transcoded;
        int diag_code, diag_field; /* when rc != MG_OK */
        const char *diag_seg;
    } cases[] = {
        {MSH_CS("8859/1") "PID|1||X||Ren\xE9", NULL, MG_OK, "Ren\xC3\xA9",
         true, 0, 0, ""},
        {MSH_CS("ISO IR100") "PID|1||X||\xC6\xD8\xC5", NULL, MG_OK,
         "\xC3\x86\xC3\x98\xC3\x85", true, 0, 0, ""},
        {MSH_CS("UNICODE UTF-8") "PID|1||X||Ren\xC3\xA9", NULL, MG_OK,
         "Ren\xC3\xA9", false, 0, 0, ""},
        {MSH_CS("8859/1") "PID|1||X||Plain", NULL, MG_OK, "Plain", false, 0,
         0, ""},
        {MSH_CS("") "PID|1||X||Ren\xE9", "8859/1", MG_OK, "Ren\xC3\xA9", true,
         0, 0, ""},
        {MSH_CS("") "PID|1||X||Ren\xC3\xA9", "UNICODE UTF-8", MG_OK,
         "Ren\xC3\xA9", false, 0, 0, ""},
        {MSH_CS("8859/15") "PID|1||X||\xA4", NULL, MG_OK, "\xE2\x82\xAC",
         true, 0, 0, ""},
        {MSH_CS("") "PID|1||X||\x80uro", "CP1252", MG_OK, "\xE2\x82\xACuro",
         true, 0, 0, ""},
        /* ASCII by default: valid UTF-8 passes, Latin-1 bytes do not. */
        {MSH_CS("") "PID|1||X||Ren\xC3\xA9", NULL, MG_OK, "Ren\xC3\xA9",
         false, 0, 0, ""},
        {MSH_CS("") "PID|1||X||Ren\xE9", NULL, MG_EPARSE, NULL, false, 102, 5,
         "PID"},
        {MSH_CS("UNICODE UTF-8") "PID|1||X||a\xC3(", NULL, MG_EPARSE, NULL,
         false, 102, 5, "PID"},
        {MSH_CS("UNICODE UTF-8") "PID|1\rNTE|1\rNTE|2|\xED\xA0\x80", NULL,
         MG_EPARSE, NULL, false, 102, 2, "NTE"},
        {MSH_CS("KLINGON") "PID|1", NULL, MG_EUNSUPPORTED, NULL, false, 103,
         18, "MSH"},
        {MSH_CS("") "PID|1", "KLINGON", MG_EINVAL, NULL, false, 207, 0, ""},
        {"\xEF\xBB\xBF" MSH_CS("") "PID|1||X||Ren\xC3\xA9", NULL, MG_OK,
         "Ren\xC3\xA9", false, 0, 0, ""},
    };
    struct mg_arena a;
    struct mg_buf out;

    (void)state;
    mg_arena_init(&a, 4096, 0);
    mg_buf_init(&out, 0);
    for (size_t i = 0; i < MG_ARRAY_LEN(cases); i++) {
        struct mg_hl7v2_parse_opts o = {.default_charset = cases[i].default_cs};
        struct mg_hl7v2_msg *m = NULL;
        struct mg_diag d;
        const char *in = cases[i].msg;
        int rc = mg_hl7v2_parse(mg_str_from(in), &o, &a, &m, &d);

        if (rc != cases[i].rc)
            fail_msg("case %zu: rc %s (%s)", i, mg_strerror(rc), d.text);
        if (rc != MG_OK) {
            assert_int_equal(d.code, cases[i].diag_code);
            assert_int_equal(d.field, cases[i].diag_field);
            assert_string_equal(d.segment, cases[i].diag_seg);
            continue;
        }
        assert_path(m, "PID-5", cases[i].name);
        assert_int_equal(m->transcoded, cases[i].transcoded);
        /* Serialised back in the message's own set, byte for byte. */
        mg_buf_reset(&out);
        assert_int_equal(mg_hl7v2_serialize(m, &out), MG_OK);
        if (in[0] == '\xEF')
            in += 3;
        assert_int_equal(out.len, strlen(in) + 1);
        assert_memory_equal(out.ptr, in, strlen(in));
    }
    mg_buf_dispose(&out);
    mg_arena_dispose(&a);
}

/* The second NTE's bad byte is located with its occurrence. */
static void
test_charset_bad_utf8_location(void **state)
{
    struct mg_arena a;
    struct mg_hl7v2_msg *m;
    struct mg_diag d;

    (void)state;
    mg_arena_init(&a, 4096, 0);
    assert_int_equal(mg_hl7v2_parse(MG_STR(MSH_CS("UNICODE UTF-8")
                                           "NTE|1|x\rNTE|2|y|\xFF"),
                                    NULL, &a, &m, &d),
                     MG_EPARSE);
    assert_string_equal(d.segment, "NTE");
    assert_int_equal(d.seq, 2);
    assert_int_equal(d.field, 3);
    assert_int_equal(d.code, 102);
    /* An invalid byte in MSH itself: MSH field numbering. */
    assert_int_equal(mg_hl7v2_parse(MG_STR("MSH|^~\\&|A\xFF|B|C|D|1||ADT^A01|"
                                           "C1|P|2.5\rPID|1"),
                                    NULL, &a, &m, &d),
                     MG_EPARSE);
    assert_string_equal(d.segment, "MSH");
    assert_int_equal(d.field, 3);
    mg_arena_dispose(&a);
}

/* A byte the declared set lacks (0x81 in CP1252) is located in the
 * segments the parser sees: a CR inside a value does not start one. */
static void
test_charset_bad_byte_after_stray_cr(void **state)
{
    struct mg_arena a;
    struct mg_hl7v2_msg *m;
    struct mg_diag d;

    (void)state;
    mg_arena_init(&a, 4096, 0);
    mg_diag_clear(&d);
    assert_int_equal(mg_hl7v2_parse(MG_STR(MSH_CS("CP1252")
                                           "OBX|1|ED|||JVBE\rqUJD|x\r"
                                           "OBX|2|ED|||JVBE\rqU\x81" "D|x"),
                                    NULL, &a, &m, &d),
                     MG_EPARSE);
    assert_int_equal(d.code, 102);
    assert_string_equal(d.segment, "OBX");
    assert_int_equal(d.seq, 2);
    assert_int_equal(d.field, 5);
    mg_arena_dispose(&a);
}

/* ---- nulls, Z-segments, terminators -------------------------------- */

static void
test_null_distinct_from_empty(void **state)
{
    struct mg_arena a;
    struct mg_hl7v2_msg *m;
    struct mg_hl7v2_val v;

    (void)state;
    mg_arena_init(&a, 4096, 0);
    m = parse_ok(&a,
                 "MSH|^~\\&|A|B|C|D|1||ADT^A08|C1|P|2.5\r"
                 "PID|1||\"\"||Doe^\"\"^^x\"\"",
                 NULL);
    assert_int_equal(mg_hl7v2_get(m, "PID-3", &v), MG_OK);
    assert_int_equal(v.presence, MG_HL7V2_NULL);
    assert_int_equal(v.str.len, 0);
    assert_int_equal(mg_hl7v2_get(m, "PID-4", &v), MG_OK);
    assert_int_equal(v.presence, MG_HL7V2_EMPTY);
    assert_int_equal(mg_hl7v2_get(m, "PID-40", &v), MG_OK);
    assert_int_equal(v.presence, MG_HL7V2_EMPTY);
    assert_int_equal(mg_hl7v2_get(m, "PID-5.2", &v), MG_OK);
    assert_int_equal(v.presence, MG_HL7V2_NULL);
    assert_int_equal(mg_hl7v2_get(m, "PID-5.4", &v), MG_OK);
    assert_int_equal(v.presence, MG_HL7V2_VALUED);
    assert_str(v.str, "x\"\"");
    assert_int_equal(mg_hl7v2_get(m, "PID-1", &v), MG_OK);
    assert_int_equal(v.presence, MG_HL7V2_VALUED);
    assert_int_equal(mg_hl7v2_get(m, "NK1-1", &v), MG_OK);
    assert_int_equal(v.presence, MG_HL7V2_EMPTY);
    mg_arena_dispose(&a);
}

/* A field (or repetition, or component) sent as "" is deleted whole: every
 * component and sub-component below it reads as null, not as absent -- an
 * A08 with PID-11 "" clears the city as well as the street. A later
 * repetition of it does not exist. */
static void
test_null_field_nulls_its_components(void **state)
{
    struct mg_arena a;
    struct mg_hl7v2_msg *m;
    struct mg_hl7v2_val v;
    static const struct {
        const char *path;
        enum mg_hl7v2_presence want;
    } cases[] = {
        {"PID-11", MG_HL7V2_NULL},     {"PID-11.1", MG_HL7V2_NULL},
        {"PID-11.3", MG_HL7V2_NULL},   {"PID-11.5.2", MG_HL7V2_NULL},
        {"PID-11[2].3", MG_HL7V2_EMPTY}, {"PID-5.1", MG_HL7V2_VALUED},
        {"PID-5.2", MG_HL7V2_NULL},    {"PID-5.2.2", MG_HL7V2_NULL},
        {"PID-5.3", MG_HL7V2_EMPTY},   {"PID-13[2].1", MG_HL7V2_NULL},
        {"PID-13[1].1", MG_HL7V2_VALUED},
    };

    (void)state;
    mg_arena_init(&a, 4096, 0);
    m = parse_ok(&a,
                 "MSH|^~\\&|A|B|C|D|1||ADT^A08|C1|P|2.5\r"
                 "PID|1||1||Doe^\"\"||||||\"\"||555~\"\"",
                 NULL);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(mg_hl7v2_get(m, cases[i].path, &v), MG_OK);
        if (v.presence != cases[i].want)
            fail_msg("%s: presence %d, want %d", cases[i].path, v.presence,
                     cases[i].want);
    }
    mg_arena_dispose(&a);
}

static void
test_zsegment_kept(void **state)
{
    struct mg_arena a;
    struct mg_hl7v2_msg *m;
    struct mg_buf out;

    (void)state;
    mg_arena_init(&a, 4096, 0);
    mg_buf_init(&out, 0);
    m = parse_ok(&a, adt, NULL);
    assert_int_equal(m->nseg, 7);
    assert_string_equal(m->seg[6].id, "ZDS");
    assert_str(m->seg[6].raw, "ZDS|1.2.3^100^Application^DICOM");
    assert_path(m, "ZDS-1.1", "1.2.3");
    assert_int_equal(mg_hl7v2_serialize(m, &out), MG_OK);
    assert_string_equal(out.ptr, adt);
    mg_buf_dispose(&out);
    mg_arena_dispose(&a);
}

static void
test_terminators_and_round_trip(void **state)
{
    static const struct {
        const char *in, *out;
        size_t nseg;
    } cases[] = {
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|C|P|2.5\rPID|1", NULL, 2},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|C|P|2.5\r\nPID|1\r\n", NULL, 2},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|C|P|2.5\nPID|1\n\n", NULL, 2},
        {"\r\n\xEF\xBB\xBFMSH|^~\\&|A|B|C|D|1||ADT^A01|C|P|2.5\rPID|1", NULL,
         0},
        {"\xEF\xBB\xBFMSH|^~\\&|A|B|C|D|1||ADT^A01|C|P|2.5\r\r\rPID|1\r\r",
         NULL, 2},
        /* LF inside a CR-terminated message is data (OBX text). */
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|C|P|2.5\rNTE|1||a\nb\r", NULL, 2},
        /* Other delimiters: fields split on '#' and components on '!'. */
        {"MSH#!*$@#A#B#C#D#1##ADT!A01#C#P#2.5\rPID#1##x!y*z", NULL, 2},
    };
    struct mg_arena a;
    struct mg_buf out, norm;

    (void)state;
    mg_arena_init(&a, 4096, 0);
    mg_buf_init(&out, 0);
    mg_buf_init(&norm, 0);
    for (size_t i = 0; i < MG_ARRAY_LEN(cases); i++) {
        struct mg_hl7v2_msg *m = NULL;
        struct mg_diag d;
        int rc = mg_hl7v2_parse(mg_str_from(cases[i].in), NULL, &a, &m, &d);

        if (cases[i].nseg == 0) { /* BOM after blank lines: not a BOM */
            assert_int_equal(rc, MG_EPARSE);
            continue;
        }
        assert_int_equal(rc, MG_OK);
        assert_int_equal(m->nseg, cases[i].nseg);
        mg_buf_reset(&out);
        mg_buf_reset(&norm);
        assert_int_equal(mg_hl7v2_serialize(m, &out), MG_OK);
        normalise(cases[i].in, strlen(cases[i].in), &norm);
        assert_int_equal(out.len, norm.len);
        assert_memory_equal(out.ptr, norm.ptr, out.len);
    }
    {
        struct mg_hl7v2_msg *m = parse_ok(&a, cases[6].in, NULL);

        assert_path(m, "PID-3.2", "y");
        assert_path(m, "PID-3[2]", "z");
        assert_path(m, "MSH-9.2", "A01");
        assert_path(m, "MSH-2", "!*$@");
        assert_int_equal(m->delims.esc, '$');
        assert_int_equal(m->delims.sub, '@');
    }
    mg_buf_dispose(&norm);
    mg_buf_dispose(&out);
    mg_arena_dispose(&a);
}

/* ---- malformed input ----------------------------------------------- */

static void
test_malformed_inputs(void **state)
{
    static const struct {
        const char *in;
        int rc, code;
        const char *seg;
        int field;
    } cases[] = {
        {"", MG_EPARSE, 100, "MSH", 0},
        {"PID|1||X\rMSH|^~\\&", MG_EPARSE, 100, "MSH", 0},
        {"MSH", MG_EPARSE, 100, "MSH", 0},
        {"MSHX|^~\\&", MG_EPARSE, 100, "MSH", 0},
        {"MSH|", MG_EPARSE, 101, "MSH", 2},
        {"MSH|^~\\&", MG_EPARSE, 101, "MSH", 9},
        {"MSH|^~\\&|A|B|C|D|1", MG_EPARSE, 101, "MSH", 9},
        {"MSH|^^\\&|A|B|C|D|1||ADT^A01|C|P|2.5", MG_EPARSE, 102, "MSH", 2},
        {"MSH|^~\\&x7|A|B|C|D|1||ADT^A01|C|P|2.5", MG_EPARSE, 102, "MSH", 2},
        {"MSH|a~\\&|A|B|C|D|1||ADT^A01|C|P|2.5", MG_EPARSE, 102, "MSH", 2},
        {"MSH|^|\\&|A|B|C|D|1||ADT^A01|C|P|2.5", MG_EPARSE, 102, "MSH", 2},
        {"MSH|^~\\&|A|B|C|D|1||^A01|C|P|2.5", MG_EPARSE, 200, "MSH", 9},
        {"MSH|^~\\&|A|B|C|D|1||ADTX^A01|C|P|2.5", MG_EPARSE, 200, "MSH", 9},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01||P|2.5", MG_EPARSE, 101, "MSH", 10},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|C||2.5", MG_EPARSE, 101, "MSH", 11},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|C|X|2.5", MG_EPARSE, 202, "MSH", 11},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|C|P", MG_EPARSE, 101, "MSH", 12},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|C|P|2.2", MG_EPARSE, 203, "MSH", 12},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|C|P|2.9", MG_EPARSE, 203, "MSH", 12},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|C|P|3.0", MG_EPARSE, 203, "MSH", 12},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|C|P|2.5\rPID|1\rMSH|^~\\&|A", MG_EPARSE,
         100, "", 0},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|C|P|2.5\rBTS|1", MG_EPARSE, 100, "", 0},
        /* Accepted: MSH-9 without trigger (ACK), v2.3.1, v2.8.2. */
        {"MSH|^~\\&|A|B|C|D|1||ACK|C|P|2.3.1", MG_OK, 0, "", 0},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|C|T^T|2.8.2^USA", MG_OK, 0, "", 0},
    };
    struct mg_arena a;

    (void)state;
    mg_arena_init(&a, 4096, 0);
    for (size_t i = 0; i < MG_ARRAY_LEN(cases); i++) {
        struct mg_hl7v2_msg *m = NULL;
        struct mg_diag d;
        int rc;

        mg_diag_clear(&d);
        rc = mg_hl7v2_parse(mg_str_from(cases[i].in), NULL, &a, &m, &d);
        if (rc != cases[i].rc || d.code != cases[i].code ||
            strcmp(d.segment, cases[i].seg) != 0 ||
            d.field != cases[i].field)
            fail_msg("case %zu: rc %s code %d at %s-%d (%s)", i,
                     mg_strerror(rc), d.code, d.segment, d.field, d.text);
    }
    mg_arena_dispose(&a);
}

/* A CR that does not start a segment is data of the field it is in. */
static void
test_stray_terminator_is_data(void **state)
{
    static const struct {
        const char *in, *path, *want;
        size_t nseg;
    } cases[] = {
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|C|P|2.5\rPID|1|a\rpid|b", "PID-2",
         "a\rpid", 2},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|C|P|2.5\rPID|1|a\rpid|b", "PID-3",
         "b", 2},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|C|P|2.5\rOBX|1|ED|||QUJD\rREVG\r"
         "NTE|1",
         "OBX-5", "QUJD\rREVG", 3},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|C|P|2.5\nPID|1|x\nPIDX|2\n", "PID-2",
         "x\nPIDX", 2},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|C|P|2.5\rPID|1|x\r\x1a", "PID-2",
         "x\r\x1a", 2},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|C|P|2.5\rPID|1|x\r\nZZ1\r\n",
         "ZZ1-1", "", 3},
    };
    struct mg_arena a;
    struct mg_buf out;

    (void)state;
    mg_arena_init(&a, 4096, 0);
    mg_buf_init(&out, 0);
    for (size_t i = 0; i < MG_ARRAY_LEN(cases); i++) {
        struct mg_hl7v2_msg *m = parse_ok(&a, cases[i].in, NULL);

        assert_int_equal(m->nseg, cases[i].nseg);
        assert_path(m, cases[i].path, cases[i].want);
    }
    /* The CR inside OBX-5 survives the round trip. */
    {
        struct mg_hl7v2_msg *m = parse_ok(&a, cases[2].in, NULL);

        assert_int_equal(mg_hl7v2_serialize(m, &out), MG_OK);
        assert_string_equal(out.ptr, "MSH|^~\\&|A|B|C|D|1||ADT^A01|C|P|2.5\r"
                                     "OBX|1|ED|||QUJD\rREVG\rNTE|1\r");
    }
    mg_buf_dispose(&out);
    mg_arena_dispose(&a);
}

static void
test_malformed_huge_field_count(void **state)
{
    const char *msh = "MSH|^~\\&|A|B|C|D|1||ADT^A01|C|P|2.5\rPID";
    struct mg_arena a;
    struct mg_hl7v2_msg *m;
    struct mg_diag d;
    struct mg_buf b;

    (void)state;
    mg_arena_init(&a, 4096, 0);
    mg_buf_init(&b, 0);
    assert_int_equal(mg_buf_appendz(&b, msh), 0);
    for (int i = 0; i < MG_HL7V2_MAX_FIELDS; i++)
        assert_int_equal(mg_buf_appendc(&b, '|'), 0);
    /* Exactly the limit is fine... */
    assert_int_equal(mg_hl7v2_parse(mg_buf_str(&b), NULL, &a, &m, &d), MG_OK);
    assert_int_equal(m->seg[1].nfield, MG_HL7V2_MAX_FIELDS + 1);
    /* ...one more is not. */
    assert_int_equal(mg_buf_appendz(&b, "|x"), 0);
    assert_int_equal(mg_hl7v2_parse(mg_buf_str(&b), NULL, &a, &m, &d),
                     MG_ETOOBIG);
    assert_string_equal(d.segment, "PID");
    assert_int_equal(d.field, MG_HL7V2_MAX_FIELDS + 1);
    assert_int_equal(d.code, 207);
    mg_buf_dispose(&b);
    mg_arena_dispose(&a);
}

static void
test_malformed_arena_exhausted(void **state)
{
    struct mg_arena a;
    struct mg_hl7v2_msg *m;
    struct mg_diag d;
    size_t len;
    char *text = mg_test_read_file(DATA "/fhir-converter/ADT-A01-01.hl7", &len);

    (void)state;
    assert_non_null(text);
    mg_arena_init(&a, 256, 1024);
    assert_int_equal(mg_hl7v2_parse(mg_str_n(text, len), NULL, &a, &m, &d),
                     MG_ENOMEM);
    assert_int_equal(d.code, 207);
    mg_arena_dispose(&a);
    free(text);
}

/* ---- batches ------------------------------------------------------- */

#define B_MSG(id)                                                              \
    "MSH|^~\\&|A|B|C|D|1||ADT^A01|" id "|P|2.5\rPID|1||" id "\r"

static void
test_batch_split_and_counts(void **state)
{
    static const char good[] = "FHS|^~\\&|A\r"
                               "BHS|^~\\&|A\r" B_MSG("M1") B_MSG("M2")
                               "BTS|2\r"
                               "BHS|^~\\&|A\r" B_MSG("M3") "BTS|1\r"
                               "FTS|2\r";
    struct mg_arena a;
    struct mg_hl7v2_batch b;
    struct mg_hl7v2_msg *m;
    struct mg_diag d;

    (void)state;
    mg_arena_init(&a, 4096, 0);
    assert_true(mg_hl7v2_is_batch(MG_STR(good)));
    assert_false(mg_hl7v2_is_batch(MG_STR(B_MSG("X"))));
    assert_int_equal(mg_hl7v2_batch_split(MG_STR(good), &a, &b, &d), MG_OK);
    assert_int_equal(b.nmsg, 3);
    assert_int_equal(b.nbatch, 2);
    assert_str(b.fhs, "FHS|^~\\&|A");
    assert_str(b.fts, "FTS|2");
    assert_str(b.msg[1], B_MSG("M2"));
    for (size_t i = 0; i < b.nmsg; i++) {
        char want[3] = {'M', (char)('1' + i), '\0'};

        assert_int_equal(mg_hl7v2_parse(b.msg[i], NULL, &a, &m, &d), MG_OK);
        assert_str(m->hdr.control_id, want);
        assert_int_equal(m->nseg, 2);
    }
    mg_arena_dispose(&a);
}

static void
test_batch_errors(void **state)
{
    static const struct {
        const char *in;
        int rc, code;
        const char *seg;
        int seq, field;
        size_t nmsg;
    } cases[] = {
        /* Empty batch: legal. */
        {"BHS|^~\\&\rBTS|0\r", MG_OK, 0, "", 0, 0, 0},
        {"FHS|^~\\&\nBHS|^~\\&\nBTS|0\nFTS|1\n", MG_OK, 0, "", 0, 0, 0},
        /* Trailers without counts; no envelope at all. */
        {"BHS|^~\\&\r" B_MSG("1") "BTS\r", MG_OK, 0, "", 0, 0, 1},
        {B_MSG("1") B_MSG("2"), MG_OK, 0, "", 0, 0, 2},
        {"FHS|^~\\&\r" B_MSG("1") "FTS|1\r", MG_OK, 0, "", 0, 0, 1},
        /* Wrong counts. */
        {"BHS|^~\\&\r" B_MSG("1") B_MSG("2") "BTS|3\r", MG_EPARSE, 100, "BTS",
         1, 1, 0},
        {"BHS|^~\\&\r" B_MSG("1") "BTS|1\rBHS|^~\\&\r" B_MSG("2") "BTS|2\r",
         MG_EPARSE, 100, "BTS", 2, 1, 0},
        {"FHS|^~\\&\rBHS|^~\\&\r" B_MSG("1") "BTS|1\rFTS|2\r", MG_EPARSE, 100,
         "FTS", 1, 1, 0},
        {"BHS|^~\\&\r" B_MSG("1") "BTS|one\r", MG_EPARSE, 102, "BTS", 1, 1,
         0},
        /* Out of place. */
        {"PID|1\r" B_MSG("1"), MG_EPARSE, 100, "PID", 1, 0, 0},
        {"BHS|^~\\&\rFHS|^~\\&\r", MG_EPARSE, 100, "FHS", 2, 0, 0},
        {"FHS|^~\\&\rFTS|0\r" B_MSG("1"), MG_EPARSE, 100, "MSH", 3, 0, 0},
    };
    struct mg_arena a;

    (void)state;
    mg_arena_init(&a, 4096, 0);
    for (size_t i = 0; i < MG_ARRAY_LEN(cases); i++) {
        struct mg_hl7v2_batch b;
        struct mg_diag d;
        int rc;

        mg_diag_clear(&d);
        rc = mg_hl7v2_batch_split(mg_str_from(cases[i].in), &a, &b, &d);
        if (rc != cases[i].rc || d.code != cases[i].code ||
            strcmp(d.segment, cases[i].seg) != 0 || d.seq != cases[i].seq ||
            d.field != cases[i].field)
            fail_msg("case %zu: rc %s code %d at %s[%d]-%d (%s)", i,
                     mg_strerror(rc), d.code, d.segment, d.seq, d.field,
                     d.text);
        if (rc == MG_OK)
            assert_int_equal(b.nmsg, cases[i].nmsg);
    }
    mg_arena_dispose(&a);
}

/* A CR that slipped into a value (base64 of an embedded PDF) is data in
 * a batch too, as mg_hl7v2_parse() reads it: the line after it does not
 * start a segment, so it neither cuts the message nor fails the file. */
static void
test_batch_stray_terminator_is_data(void **state)
{
    static const char in[] = "BHS|^~\\&\r" B_MSG("1")
                             "OBX|1|ED|||JVBE\r+rx0\r"
                             "OBX|2|ED|||JVBE\rqUJD\r" B_MSG("2")
                             "BTS|2\r";
    struct mg_arena a;
    struct mg_hl7v2_batch b;
    struct mg_hl7v2_msg *m;
    struct mg_diag d;

    (void)state;
    mg_arena_init(&a, 4096, 0);
    mg_diag_clear(&d);
    if (mg_hl7v2_batch_split(MG_STR(in), &a, &b, &d) != MG_OK)
        fail_msg("batch refused: %s[%d] %s", d.segment, d.seq, d.text);
    assert_int_equal(b.nmsg, 2);
    assert_int_equal(mg_hl7v2_parse(b.msg[0], NULL, &a, &m, &d), MG_OK);
    assert_int_equal(m->nseg, 4);
    assert_path(m, "OBX-5", "JVBE\r+rx0");
    assert_path(m, "OBX[2]-5", "JVBE\rqUJD");
    mg_arena_dispose(&a);
}

/* ---- acknowledgements ---------------------------------------------- */

/* Parses an ACK we built (it must itself be a valid message). */
static struct mg_hl7v2_msg *
parse_ack(struct mg_arena *a, const struct mg_buf *b)
{
    struct mg_hl7v2_msg *m = NULL;
    struct mg_diag d;
    int rc = mg_hl7v2_parse(mg_buf_str(b), NULL, a, &m, &d);

    if (rc != MG_OK)
        fail_msg("ACK does not parse: %s at %s-%d (%s)\n%s", mg_strerror(rc),
                 d.segment, d.field, d.text, b->ptr);
    return m;
}

static void
test_ack_original_mode(void **state)
{
    struct mg_arena a;
    struct mg_buf b;
    struct mg_hl7v2_msg *in, *ack;
    struct mg_hl7v2_ack o = {.code = MG_HL7V2_AA,
                             .control_id = MG_STR("ACK-1"),
                             .timestamp = MG_STR("20240102030405+0000")};

    (void)state;
    mg_arena_init(&a, 4096, 0);
    mg_buf_init(&b, 0);
    in = parse_ok(&a,
                  "MSH|^~\\&|SND^1.2^ISO|SFAC|RCV|RFAC|20240101||ADT^A01^"
                  "ADT_A01|CTRL\\F\\1|P^T|2.5.1^USA||||||UNICODE UTF-8\r"
                  "PID|1",
                  NULL);
    assert_int_equal(mg_hl7v2_ack_mode(&in->msh), MG_HL7V2_ACK_ORIGINAL);
    assert_false(mg_hl7v2_is_ack(&in->msh));
    assert_int_equal(mg_hl7v2_ack_build(&in->msh, &o, &b), MG_OK);
    assert_string_equal(b.ptr,
                        "MSH|^~\\&|RCV|RFAC|SND^1.2^ISO|SFAC|"
                        "20240102030405+0000||ACK^A01^ACK|ACK-1|P^T|"
                        "2.5.1^USA||||||UNICODE UTF-8\r"
                        "MSA|AA|CTRL\\F\\1\r");
    ack = parse_ack(&a, &b);
    assert_true(mg_hl7v2_is_ack(&ack->msh));
    assert_path(ack, "MSA-2", "CTRL|1");
    assert_path(ack, "MSH-5.2", "1.2");
    assert_int_equal(mg_hl7v2_seg_count(ack, "ERR"), 0);

    /* AE with two ERR segments. */
    struct mg_diag errs[2];
    mg_diag_clear(&errs[0]);
    mg_diag_at(&errs[0], "PID", 1, 3, 1);
    errs[0].rep = 2;
    errs[0].sub = 2;
    mg_diag_set(&errs[0], MG_HL7_ERR_REQUIRED_MISSING,
                "PID-3 id missing | see ^ & ~ \\ spec");
    mg_diag_clear(&errs[1]);
    mg_diag_set(&errs[1], MG_HL7_ERR_INTERNAL, "mapping failed");
    o.code = MG_HL7V2_AE;
    o.control_id = MG_STR("ACK-2");
    o.err = errs;
    o.nerr = 2;
    mg_buf_reset(&b);
    assert_int_equal(mg_hl7v2_ack_build(&in->msh, &o, &b), MG_OK);
    ack = parse_ack(&a, &b);
    assert_path(ack, "MSA-1", "AE");
    assert_path(ack, "MSA-2", "CTRL|1");
    assert_path(ack, "MSA-3", ""); /* v2.5.1: no MSA-3 */
    assert_path(ack, "MSH-10", "ACK-2");
    assert_int_equal(mg_hl7v2_seg_count(ack, "ERR"), 2);
    assert_path(ack, "ERR-1", "");
    assert_path(ack, "ERR-2.1", "PID");
    assert_path(ack, "ERR-2.2", "1");
    assert_path(ack, "ERR-2.3", "3");
    assert_path(ack, "ERR-2.4", "2");
    assert_path(ack, "ERR-2.5", "1");
    assert_path(ack, "ERR-2.6", "2");
    assert_path(ack, "ERR-3.1", "101");
    assert_path(ack, "ERR-3.2", "Required field missing");
    assert_path(ack, "ERR-3.3", "HL70357");
    assert_path(ack, "ERR-4", "E");
    assert_path(ack, "ERR-5", "");
    assert_path(ack, "ERR-7", "PID-3 id missing | see ^ & ~ \\ spec");
    assert_path(ack, "ERR-8", "PID-3 id missing | see ^ & ~ \\ spec");
    assert_path(ack, "ERR[2]-2", "");
    assert_path(ack, "ERR[2]-3.1", "207");
    assert_path(ack, "ERR[2]-3.2", "Application internal error");
    assert_path(ack, "ERR[2]-7", "mapping failed");
    assert_str(mg_hl7v2_seg_find(ack, "ERR", 2)->raw,
               "ERR|||207^Application internal error^HL70357|E|||"
               "mapping failed|mapping failed");
    assert_non_null(strstr(b.ptr, "ERR||PID^1^3^2^1^2|101^Required field "
                                  "missing^HL70357|E|||PID-3 id missing "
                                  "\\F\\ see \\S\\ \\T\\ \\R\\ \\E\\ spec|"));
    mg_buf_dispose(&b);
    mg_arena_dispose(&a);
}

static void
test_ack_enhanced_mode(void **state)
{
    struct mg_arena a;
    struct mg_buf b;
    struct mg_hl7v2_msg *in, *ack;
    struct mg_diag warn;
    struct mg_hl7v2_ack o = {.code = MG_HL7V2_CA,
                             .control_id = MG_STR("A9"),
                             .err = &warn,
                             .nerr = 1,
                             .user_text = MG_STR("stored")};

    (void)state;
    mg_arena_init(&a, 4096, 0);
    mg_buf_init(&b, 0);
    in = parse_ok(&a,
                  "MSH|^~\\&|S|SF|R|RF|20240101||ORU^R01|C77|P|2.5.1|||AL|NE\r"
                  "PID|1",
                  NULL);
    assert_int_equal(mg_hl7v2_ack_mode(&in->msh), MG_HL7V2_ACK_ENHANCED);
    for (int ok = 0; ok <= 1; ok++) { /* AL|NE: the accept ACK, always */
        enum mg_hl7v2_ack_mode as;

        assert_true(mg_hl7v2_answer(&in->msh, ok, &as));
        assert_int_equal(as, MG_HL7V2_ACK_ENHANCED);
    }

    mg_diag_clear(&warn);
    mg_diag_at(&warn, "OBX", 2, 5, 0);
    mg_diag_set(&warn, MG_HL7_ERR_DATA_TYPE, "value truncated");
    assert_int_equal(mg_hl7v2_ack_build(&in->msh, &o, &b), MG_OK);
    ack = parse_ack(&a, &b);
    assert_path(ack, "MSA-1", "CA");
    assert_path(ack, "MSA-2", "C77");
    assert_path(ack, "MSH-9", "ACK");
    assert_path(ack, "MSH-9.2", "R01");
    assert_path(ack, "MSH-9.3", "ACK");
    assert_path(ack, "MSH-15", ""); /* never ask for an ACK of an ACK */
    assert_str(mg_hl7v2_seg_find(ack, "ERR", 1)->raw,
               "ERR||OBX^2^5|102^Data type error^HL70357|W|||value truncated|"
               "stored");
    mg_buf_dispose(&b);
    mg_arena_dispose(&a);
}

static void
test_ack_wanted_table(void **state)
{
    static const struct {
        const char *msh15;
        bool ok, want;
    } cases[] = {
        {"AL", true, true},  {"AL", false, true},  {"NE", true, false},
        {"NE", false, false}, {"ER", true, false}, {"ER", false, true},
        {"SU", true, true},  {"SU", false, false}, {"", true, true},
        {"XX", false, true},
    };

    (void)state;
    for (size_t i = 0; i < MG_ARRAY_LEN(cases); i++) {
        enum mg_hl7v2_ack_mode as;
        struct mg_hl7v2_msh msh;
        char text[128];

        snprintf(text, sizeof(text),
                 "MSH|^~\\&|S|SF|R|RF|1||ADT^A01|C|P|2.5|||%s|%s\r",
                 cases[i].msh15, cases[i].msh15);
        assert_int_equal(mg_hl7v2_msh_peek(mg_str_from(text), &msh), MG_OK);
        /* Table 0155 on both fields at once: the answer is wanted exactly
         * when that value wants one. */
        assert_int_equal(mg_hl7v2_answer(&msh, cases[i].ok, &as),
                         cases[i].want);
        assert_int_equal(mg_hl7v2_ack_mode(&msh), cases[i].msh15[0]
                                                      ? MG_HL7V2_ACK_ENHANCED
                                                      : MG_HL7V2_ACK_ORIGINAL);
    }
}

/* Which answer a sender gets now: original mode's, the accept ACK of
 * enhanced mode, or -- when MSH-15 wants no accept ACK -- the application
 * ACK per MSH-16 (NE/AL is original mode by another name). "" is null. */
static void
test_answer_table(void **state)
{
    static const struct {
        const char *msh15, *msh16;
        bool ok, sent;
        enum mg_hl7v2_ack_mode as;
    } cases[] = {
        {"", "", true, true, MG_HL7V2_ACK_ORIGINAL},
        {"\"\"", "\"\"", false, true, MG_HL7V2_ACK_ORIGINAL},
        {"AL", "NE", true, true, MG_HL7V2_ACK_ENHANCED},
        {"NE", "AL", true, true, MG_HL7V2_ACK_ORIGINAL},
        {"NE", "AL", false, true, MG_HL7V2_ACK_ORIGINAL},
        {"NE", "NE", true, false, MG_HL7V2_ACK_ORIGINAL},
        {"NE", "ER", true, false, MG_HL7V2_ACK_ORIGINAL},
        {"NE", "ER", false, true, MG_HL7V2_ACK_ORIGINAL},
        {"ER", "AL", false, true, MG_HL7V2_ACK_ENHANCED},
        {"ER", "AL", true, true, MG_HL7V2_ACK_ORIGINAL},
        {"ER", "NE", true, false, MG_HL7V2_ACK_ORIGINAL},
        {"SU", "", true, true, MG_HL7V2_ACK_ENHANCED},
        /* An empty MSH-16 asks for no application ACK: NE alone is none. */
        {"NE", "", false, false, MG_HL7V2_ACK_ORIGINAL},
        {"SU", "", false, false, MG_HL7V2_ACK_ORIGINAL},
    };

    (void)state;
    for (size_t i = 0; i < MG_ARRAY_LEN(cases); i++) {
        struct mg_hl7v2_msh msh;
        enum mg_hl7v2_ack_mode as;
        char text[128];

        snprintf(text, sizeof(text),
                 "MSH|^~\\&|S|SF|R|RF|1||ADT^A01|C|P|2.5|||%s|%s\r",
                 cases[i].msh15, cases[i].msh16);
        assert_int_equal(mg_hl7v2_msh_peek(mg_str_from(text), &msh), MG_OK);
        assert_int_equal(mg_hl7v2_answer(&msh, cases[i].ok, &as),
                         cases[i].sent);
        /* Unsent: recorded in the message's own (enhanced) codes. */
        assert_int_equal(as, cases[i].sent ? cases[i].as
                                           : MG_HL7V2_ACK_ENHANCED);
    }
}

/* An unsupported version and a truncated MSH: AR from what could be read;
 * a v2.3 peer also gets MSA-3, ERR-1 and a two-part MSH-9. */
static void
test_ack_from_partial_msh(void **state)
{
    static const char v29[] =
        "MSH|^~\\&|S|SF|R|RF|1||ADT^A04|C29|P|2.9\rPID|1|||||||";
    static const char cut[] = "MSH|^~\\&|S|SF|R|RF|1||ADT^A04|C5";
    static const char v23[] = "MSH|^~\\&|S|SF|R|RF|1||ADT|C23|P|2.3\r";
    struct mg_hl7v2_ack o = {.control_id = MG_STR("N1")};
    struct mg_hl7v2_msh msh;
    char long_id[700];
    struct mg_diag d;
    struct mg_buf b;

    (void)state;
    mg_buf_init(&b, 0);
    assert_int_equal(mg_hl7v2_check(MG_STR(v29), &msh, &d), MG_EPARSE);
    assert_int_equal(d.code, 203);
    o.code = mg_hl7v2_ack_code_for(&d, mg_hl7v2_ack_mode(&msh));
    assert_int_equal(o.code, MG_HL7V2_AR);
    o.err = &d;
    o.nerr = 1;
    assert_int_equal(mg_hl7v2_ack_build(&msh, &o, &b), MG_OK);
    assert_string_equal(b.ptr,
                        "MSH|^~\\&|R|RF|S|SF|||ACK^A04^ACK|N1|P|2.9||||||\r"
                        "MSA|AR|C29\r"
                        "ERR||MSH^1^12^^1|203^Unsupported version id^HL70357|"
                        "E|||MSH-12 version not in 2.3 .. 2.8.2|"
                        "MSH-12 version not in 2.3 .. 2.8.2\r");

    mg_buf_reset(&b);
    assert_int_equal(mg_hl7v2_check(MG_STR(cut), &msh, &d), MG_EPARSE);
    assert_int_equal(d.code, 101);
    assert_int_equal(d.field, 11);
    o.code = mg_hl7v2_ack_code_for(&d, MG_HL7V2_ACK_ORIGINAL);
    assert_int_equal(o.code, MG_HL7V2_AR);
    assert_int_equal(mg_hl7v2_ack_build(&msh, &o, &b), MG_OK);
    assert_non_null(strstr(b.ptr, "|ACK^A04^ACK|N1|P|2.5.1|"));
    assert_non_null(strstr(b.ptr, "\rMSA|AR|C5\r"));

    /* No MSH at all: AR, nothing to echo but the ACK still parses. */
    mg_buf_reset(&b);
    assert_int_equal(mg_hl7v2_check(MG_STR("garbage"), &msh, &d), MG_EPARSE);
    assert_int_equal(mg_hl7v2_ack_code_for(&d, MG_HL7V2_ACK_ORIGINAL),
                     MG_HL7V2_AR);
    assert_int_equal(mg_hl7v2_ack_build(&msh, &o, &b), MG_OK);
    assert_non_null(strstr(b.ptr, "\rMSA|AR|\r"));

    mg_buf_reset(&b);
    assert_int_equal(mg_hl7v2_check(MG_STR(v23), &msh, &d), MG_OK);
    mg_diag_at(&d, "PID", 1, 3, 0);
    mg_diag_set(&d, MG_HL7_ERR_REQUIRED_MISSING, "no patient id");
    o.code = MG_HL7V2_AE;
    assert_int_equal(mg_hl7v2_ack_build(&msh, &o, &b), MG_OK);
    assert_non_null(strstr(b.ptr, "|ACK|N1|P|2.3|")); /* no MSH-9.3 */
    assert_non_null(strstr(b.ptr, "\rMSA|AE|C23|no patient id\r"));
    /* Before v2.5, ERR has ERR-1 only; the text is MSA-3's. */
    assert_non_null(strstr(b.ptr, "\rERR|PID^1^3^101&Required field missing&"
                                  "HL70357\r"));
    assert_null(strstr(b.ptr, "|E|"));

    /* v2.4: MSA-3 too, cut to its 80 characters; an MSH-2 without a
     * sub-component character gives ERR-1 the bare code. */
    mg_buf_reset(&b);
    assert_int_equal(mg_hl7v2_check(MG_STR("MSH|^~\\|S|SF|R|RF|1||ADT|C24|P|"
                                           "2.4\r"), &msh, &d), MG_OK);
    mg_diag_at(&d, "PID", 1, 3, 0);
    mg_diag_set(&d, MG_HL7_ERR_REQUIRED_MISSING, "%0100d", 7);
    assert_int_equal(mg_hl7v2_ack_build(&msh, &o, &b), MG_OK);
    assert_non_null(strstr(b.ptr, "\rMSA|AE|C24|00000000000000000000"
                                  "000000000000000000000000000000000000000000"
                                  "000000000000000000\rERR|PID^1^3^101\r"));

    /* An echo cut at 512 bytes does not leave an escape open: the peer
     * would read the next separator as part of it. (long_id lives as long
     * as msh, which points into it.) */
    {
        mg_buf_reset(&b);
        snprintf(long_id, sizeof(long_id),
                 "MSH|^~\\&|S|SF|R|RF|1||ADT^A01|%0511d\\F\\X|P|2.5\r", 0);
        assert_int_equal(mg_hl7v2_check(mg_str_from(long_id), &msh, &d),
                         MG_OK);
        o.code = MG_HL7V2_AA;
        o.nerr = 0;
        assert_int_equal(mg_hl7v2_ack_build(&msh, &o, &b), MG_OK);
        assert_non_null(strstr(b.ptr, "0000000000\r"));
        assert_null(strstr(b.ptr, "0\\"));
        o.nerr = 1;
    }

    /* A control id is required. */
    o.control_id = MG_STR_NULL;
    assert_int_equal(mg_hl7v2_ack_build(&msh, &o, &b), MG_EINVAL);
    mg_buf_dispose(&b);
}

/* MSH-9 of the ACK follows the peer's version: type^trigger before v2.3.1,
 * type^trigger^structure (always ACK) from v2.3.1 on, and the structure is
 * kept even when there is no trigger to echo. */
static void
test_ack_msh9_by_version(void **state)
{
    static const struct {
        const char *msh9, *msh12, *want;
    } cases[] = {
        {"ADT^A01", "2.5.1", "|ACK^A01^ACK|N|"},
        {"ADT^A01^ADT_A01", "2.3.1", "|ACK^A01^ACK|N|"},
        {"ADT^A01", "2.4", "|ACK^A01^ACK|N|"},
        {"ADT^A01", "", "|ACK^A01^ACK|N|P|2.5.1|"}, /* answered as 2.5.1 */
        {"ADT^A01", "2.9", "|ACK^A01^ACK|N|"},
        {"ADT", "2.5", "|ACK^^ACK|N|"},
        {"ADT^A01", "2.3", "|ACK^A01|N|"},
        {"ADT^A01^ADT_A01", "2.3", "|ACK^A01|N|"},
        {"ADT^A01", "2.2", "|ACK^A01|N|"},
        {"ADT", "2.3", "|ACK|N|"},
        {"ADT^", "2.3", "|ACK|N|"},
        {"ADT^A01", "2.3 ^USA", "|ACK^A01|N|"},
    };
    struct mg_hl7v2_ack o = {.code = MG_HL7V2_AA, .control_id = MG_STR("N")};
    struct mg_buf b;

    (void)state;
    mg_buf_init(&b, 0);
    for (size_t i = 0; i < MG_ARRAY_LEN(cases); i++) {
        struct mg_hl7v2_msh msh;
        char text[128];

        snprintf(text, sizeof(text), "MSH|^~\\&|S|SF|R|RF|1||%s|C|P|%s\r",
                 cases[i].msh9, cases[i].msh12);
        assert_int_equal(mg_hl7v2_msh_peek(mg_str_from(text), &msh), MG_OK);
        mg_buf_reset(&b);
        assert_int_equal(mg_hl7v2_ack_build(&msh, &o, &b), MG_OK);
        if (strstr(b.ptr, cases[i].want) == NULL)
            fail_msg("case %zu (%s, %s): want %s in %s", i, cases[i].msh9,
                     cases[i].msh12, cases[i].want, b.ptr);
    }
    mg_buf_dispose(&b);
}

/* MSH-12.1 is read without surrounding spaces, by the check as by the
 * header summary; the ACK echoes the version trimmed, and its layout
 * follows the trimmed version. */
static void
test_msh_version_trimmed(void **state)
{
    struct mg_hl7v2_ack o = {.code = MG_HL7V2_AA, .control_id = MG_STR("N")};
    struct mg_hl7v2_msg *m;
    struct mg_hl7v2_msh msh;
    struct mg_arena a;
    struct mg_diag d;
    struct mg_buf b;

    (void)state;
    mg_arena_init(&a, 4096, 0);
    mg_buf_init(&b, 0);
    assert_int_equal(mg_hl7v2_check(MG_STR("MSH|^~\\&|S|SF|R|RF|1||ADT^A01|C|"
                                           "P| 2.5 \r"),
                                    &msh, &d),
                     MG_OK);
    assert_int_equal(mg_hl7v2_ack_build(&msh, &o, &b), MG_OK);
    assert_non_null(strstr(b.ptr, "|ACK^A01^ACK|N|P|2.5|"));

    m = parse_ok(&a, "MSH|^~\\&|S|SF|R|RF|1||ADT^A01|C|P|2.5.1 ^USA\rPID|1",
                 NULL);
    assert_str(m->hdr.version, "2.5.1");
    mg_buf_reset(&b);
    assert_int_equal(mg_hl7v2_ack_build(&m->msh, &o, &b), MG_OK);
    assert_non_null(strstr(b.ptr, "|ACK^A01^ACK|N|P|2.5.1^USA|"));

    /* A padded 2.3 is a 2.3 peer: two-part MSH-9, MSA-3. */
    assert_int_equal(mg_hl7v2_check(MG_STR("MSH|^~\\&|S|SF|R|RF|1||ADT^A01|C|"
                                           "P|2.3 \r"),
                                    &msh, &d),
                     MG_OK);
    mg_diag_clear(&d);
    mg_diag_at(&d, "PID", 1, 3, 0);
    mg_diag_set(&d, MG_HL7_ERR_REQUIRED_MISSING, "no patient id");
    o.code = MG_HL7V2_AE;
    o.err = &d;
    o.nerr = 1;
    mg_buf_reset(&b);
    assert_int_equal(mg_hl7v2_ack_build(&msh, &o, &b), MG_OK);
    assert_non_null(strstr(b.ptr, "|ACK^A01|N|P|2.3|"));
    assert_non_null(strstr(b.ptr, "\rMSA|AE|C|no patient id\r"));

    /* Only spaces: missing, as the summary would read it. */
    assert_int_equal(mg_hl7v2_check(MG_STR("MSH|^~\\&|S|SF|R|RF|1||ADT^A01|C|"
                                           "P|   \r"),
                                    &msh, &d),
                     MG_EPARSE);
    assert_int_equal(d.code, 101);
    assert_int_equal(d.field, 12);
    mg_buf_dispose(&b);
    mg_arena_dispose(&a);
}

/* MSH-9.1 and MSH-11.1 are read without surrounding spaces, by the check,
 * the ACK builder and the "is it an ACK" test as by the header summary:
 * 'ADT ' or ' P' is accepted as the summary reads it (it was AR 200 / AR
 * 202 while the summary said ADT and P), and a field of spaces only is
 * missing (101). The ACK echoes the trigger and MSH-11.1 trimmed. */
static void
test_msh_type_and_processing_id_trimmed(void **state)
{
    static const struct {
        const char *msh9, *msh11, *type, *pid;
    } ok[] = {
        {"ADT ^A01", "P", "ADT", "P"},
        {" ADT^A01", "P", "ADT", "P"},
        {"ADT^A01", " P", "ADT", "P"},
        {"ADT^A01", "T ", "ADT", "T"},
        {"ADT ^A01 ", " D ^T", "ADT", "D"},
    };
    struct mg_hl7v2_ack o = {.code = MG_HL7V2_AA, .control_id = MG_STR("N")};
    struct mg_hl7v2_msh msh;
    struct mg_arena a;
    struct mg_diag d;
    struct mg_buf b;
    char text[128];

    int bad = 0;

    (void)state;
    mg_arena_init(&a, 4096, 0);
    mg_buf_init(&b, 0);
    for (size_t i = 0; i < MG_ARRAY_LEN(ok); i++) {
        struct mg_hl7v2_msg *m;

        snprintf(text, sizeof(text), "MSH|^~\\&|S|SF|R|RF|1||%s|C|%s|2.5\r"
                 "PID|1", ok[i].msh9, ok[i].msh11);
        if (mg_hl7v2_check(mg_str_from(text), &msh, &d) != MG_OK) {
            print_error("case %zu ('%s', '%s'): refused %d at MSH-%d: %s\n",
                        i, ok[i].msh9, ok[i].msh11, d.code, d.field, d.text);
            bad++;
            continue;
        }
        m = parse_ok(&a, text, NULL);
        assert_str(m->hdr.type, ok[i].type);
        assert_str(m->hdr.processing_id, ok[i].pid);
    }
    assert_int_equal(bad, 0);

    /* The ACK: trigger and processing id as understood, other components
     * of MSH-11 as sent. */
    assert_int_equal(mg_hl7v2_check(MG_STR("MSH|^~\\&|S|SF|R|RF|1||ADT ^A01 |"
                                           "C| D ^T|2.5\r"),
                                    &msh, &d),
                     MG_OK);
    assert_int_equal(mg_hl7v2_ack_build(&msh, &o, &b), MG_OK);
    assert_non_null(strstr(b.ptr, "|ACK^A01^ACK|N|D^T|2.5|"));
    mg_buf_reset(&b);
    assert_int_equal(mg_hl7v2_check(MG_STR("MSH|^~\\&|S|SF|R|RF|1||ADT^A01|"
                                           "C|  |2.5\r"),
                                    &msh, &d),
                     MG_EPARSE);
    assert_int_equal(d.code, 101);
    assert_int_equal(d.field, 11);

    /* A padded ACK is an ACK: never acknowledged. */
    assert_int_equal(mg_hl7v2_msh_peek(MG_STR("MSH|^~\\&|S|SF|R|RF|1||ACK ^A01|"
                                              "C|P|2.5\r"),
                                       &msh),
                     MG_OK);
    assert_true(mg_hl7v2_is_ack(&msh));

    /* Still refused: a type that is not three letters once trimmed. */
    assert_int_equal(mg_hl7v2_check(MG_STR("MSH|^~\\&|S|SF|R|RF|1||AD ^A01|"
                                           "C|P|2.5\r"),
                                    &msh, &d),
                     MG_EPARSE);
    assert_int_equal(d.code, 200);
    assert_int_equal(mg_hl7v2_check(MG_STR("MSH|^~\\&|S|SF|R|RF|1||ADT^A01|"
                                           "C| X|2.5\r"),
                                    &msh, &d),
                     MG_EPARSE);
    assert_int_equal(d.code, 202);
    mg_buf_dispose(&b);
    mg_arena_dispose(&a);
}

/* A header the check refuses is rejected (AR/CR), whatever field it is
 * about: HL7 v2.5 section 2.9.2.1 rejects a message whose MSH-9, MSH-11
 * or MSH-12 the receiver cannot accept before any application processing.
 * Content errors, in MSH or elsewhere, stay AE/CE. */
static void
test_ack_code_for_header_faults(void **state)
{
    static const struct {
        const char *in;
        int code;
    } cases[] = {
        {"garbage", 100},
        {"MSH|", 101},
        {"MSH|^^\\&|A|B|C|D|1||ADT^A01|C|P|2.5", 102},
        {"MSH|^~\\&|A|B|C|D|1", 101},
        {"MSH|^~\\&|A|B|C|D|1||ADTX^A01|C|P|2.5", 200},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01||P|2.5", 101},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|C||2.5", 101},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|C|X|2.5", 202},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|C|P", 101},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|C|P|2.9", 203},
    };
    static const struct {
        const char *seg;
        int field, code;
    } content[] = {
        {"PID", 3, 101}, {"PID", 5, 102}, {"MSH", 18, 103},
        {"MSH", 10, 205}, {"MSH", 9, 102}, {"", 0, 207},
    };

    (void)state;
    for (size_t i = 0; i < MG_ARRAY_LEN(cases); i++) {
        struct mg_hl7v2_msh msh;
        struct mg_diag d;

        assert_int_equal(mg_hl7v2_check(mg_str_from(cases[i].in), &msh, &d),
                         MG_EPARSE);
        assert_int_equal(d.code, cases[i].code);
        if (mg_hl7v2_ack_code_for(&d, MG_HL7V2_ACK_ORIGINAL) != MG_HL7V2_AR ||
            mg_hl7v2_ack_code_for(&d, MG_HL7V2_ACK_ENHANCED) != MG_HL7V2_CR)
            fail_msg("case %zu (%s): %d at %s-%d not AR/CR", i, cases[i].in,
                     d.code, d.segment, d.field);
    }
    for (size_t i = 0; i < MG_ARRAY_LEN(content); i++) {
        struct mg_diag d;

        mg_diag_clear(&d);
        if (content[i].seg[0] != '\0')
            mg_diag_at(&d, content[i].seg, 1, content[i].field, 0);
        mg_diag_set(&d, content[i].code, "content");
        assert_int_equal(mg_hl7v2_ack_code_for(&d, MG_HL7V2_ACK_ORIGINAL),
                         MG_HL7V2_AE);
        assert_int_equal(mg_hl7v2_ack_code_for(&d, MG_HL7V2_ACK_ENHANCED),
                         MG_HL7V2_CE);
    }
}

/* The AE an MSH with charset msh18 gets for an error text, in b. */
static const char *
ack_with_text(struct mg_buf *b, const char *msh18, const char *text)
{
    struct mg_hl7v2_msh msh;
    struct mg_diag d;
    struct mg_hl7v2_ack o = {.code = MG_HL7V2_AE,
                             .control_id = MG_STR("N"),
                             .err = &d,
                             .nerr = 1};
    char head[128];

    mg_diag_clear(&d);
    mg_diag_set(&d, 207, "%s", text);
    snprintf(head, sizeof(head), "MSH|^~\\&|||||||ADT|C|P|2.5||||||%s\r",
             msh18);
    assert_int_equal(mg_hl7v2_msh_peek(mg_str_from(head), &msh), MG_OK);
    mg_buf_reset(b);
    assert_int_equal(mg_hl7v2_ack_build(&msh, &o, b), MG_OK);
    return b->ptr;
}

/* Our texts are ASCII-only unless the peer declared UTF-8, under any name
 * the parser reads as UTF-8 (and MSH-18's first repetition, which is what
 * the parser reads). */
static void
test_ack_charset_of_text(void **state)
{
    static const char *const utf8[] = {"UNICODE UTF-8", "ISO IR192", "UTF8",
                                       "utf-8", "UNICODE UTF-8~ISO IR87"};
    struct mg_buf b;

    (void)state;
    mg_buf_init(&b, 0);
    assert_non_null(strstr(ack_with_text(&b, "8859/1", "caf\xC3\xA9\r\nx"),
                           "|caf??\\X0D\\\\X0A\\x|"));
    for (size_t i = 0; i < MG_ARRAY_LEN(utf8); i++)
        if (strstr(ack_with_text(&b, utf8[i], "caf\xC3\xA9\r\nx"),
                   "|caf\xC3\xA9\\X0D\\\\X0A\\x|") == NULL)
            fail_msg("MSH-18 %s: text not kept: %s", utf8[i], b.ptr);
    mg_buf_dispose(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus_every_message),
        cmocka_unit_test(test_corpus_hand_picked_values),
        cmocka_unit_test(test_corpus_declared_charset_honoured),
        cmocka_unit_test(test_access_paths),
        cmocka_unit_test(test_access_iteration_and_find),
        cmocka_unit_test(test_path_parse_cases),
        cmocka_unit_test(test_escape_unescape_cases),
        cmocka_unit_test(test_escape_round_trip),
        cmocka_unit_test(test_escape_control_bytes),
        cmocka_unit_test(test_charset_cases),
        cmocka_unit_test(test_charset_bad_utf8_location),
        cmocka_unit_test(test_charset_bad_byte_after_stray_cr),
        cmocka_unit_test(test_null_distinct_from_empty),
        cmocka_unit_test(test_null_field_nulls_its_components),
        cmocka_unit_test(test_zsegment_kept),
        cmocka_unit_test(test_terminators_and_round_trip),
        cmocka_unit_test(test_malformed_inputs),
        cmocka_unit_test(test_stray_terminator_is_data),
        cmocka_unit_test(test_malformed_huge_field_count),
        cmocka_unit_test(test_malformed_arena_exhausted),
        cmocka_unit_test(test_batch_split_and_counts),
        cmocka_unit_test(test_batch_errors),
        cmocka_unit_test(test_batch_stray_terminator_is_data),
        cmocka_unit_test(test_ack_original_mode),
        cmocka_unit_test(test_ack_enhanced_mode),
        cmocka_unit_test(test_ack_wanted_table),
        cmocka_unit_test(test_answer_table),
        cmocka_unit_test(test_ack_from_partial_msh),
        cmocka_unit_test(test_ack_charset_of_text),
        cmocka_unit_test(test_ack_msh9_by_version),
        cmocka_unit_test(test_msh_version_trimmed),
        cmocka_unit_test(test_msh_type_and_processing_id_trimmed),
        cmocka_unit_test(test_ack_code_for_header_faults),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
