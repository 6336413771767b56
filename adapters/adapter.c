/* The adapter registry, the usual adapter input and the SQL installer. */
#include "adapters/adapter.h"
#include "adapters/registry.h"

#include <ctype.h>
#include <libpq-fe.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/error.h"
#include "store/oneshot.h"


const struct mg_adapter *
mg_adapter_find(const char *name)
{
    for (const struct mg__adapter_entry *e = mg__adapters; e->adapter; e++)
        if (name != NULL && strcmp(e->adapter->name, name) == 0)
            return e->adapter;
    return NULL;
}

/* "ADT^A01" against type "ADT", trigger "A01". */
bool
mg_adapter_takes(const struct mg_adapter *a, struct mg_str type,
                 struct mg_str trigger)
{
    for (const char *const *t = a->accepts; t != NULL && *t; t++) {
        const char *caret = strchr(*t, '^');
        if (caret != NULL &&
            mg_str_eq(type, mg_str_n(*t, (size_t)(caret - *t))) &&
            (trigger.ptr == NULL || mg_str_eqz(trigger, caret + 1)))
            return true;
    }
    return false;
}

const struct mg_adapter *
mg_adapter_for_type(struct mg_str type, struct mg_str trigger)
{
    for (const struct mg__adapter_entry *e = mg__adapters; e->adapter; e++)
        if (mg_adapter_takes(e->adapter, type, trigger))
            return e->adapter;
    return NULL;
}

/* The loader's check of a route's "adapter": the route's result goes to
 * the adapter's inbound side, so an outbound-only adapter will not do. */
static const char *
inbound_problem(const char *name)
{
    const struct mg_adapter *a = mg_adapter_find(name);

    if (a == NULL)
        return "no adapter is called";
    return a->to_internal == NULL ? "no inbound side in adapter" : NULL;
}

int
mg_adapters_load_set(const char *dir, struct mg_mapping_set **out, FILE *err)
{
    return mg_mapping_set_load_checked(dir, inbound_problem, out, err);
}

static json_t *
value_json(const struct mg_mapping_value *v)
{
    return v->null ? json_null() : json_stringn(v->str.ptr, v->str.len);
}

/* obj[key] as an object, created when missing. */
static json_t *
member_object(json_t *obj, struct mg_str key)
{
    char name[MG_MAPPING_TARGET_MAX + 1];
    json_t *m;

    if (key.len == 0 || key.len >= sizeof(name))
        return NULL;
    memcpy(name, key.ptr, key.len);
    name[key.len] = '\0';
    m = json_object_get(obj, name);
    if (m == NULL) {
        m = json_object();
        if (json_object_set_new(obj, name, m) != 0)
            return NULL;
    }
    return json_is_object(m) ? m : NULL;
}

static int
add_values(json_t *in, const struct mg_mapping_result *res)
{
    for (size_t i = 0; i < res->nvalue; i++) {
        const struct mg_mapping_value *v = &res->value[i];
        json_t *ent = member_object(in, v->entity);
        char col[MG_MAPPING_TARGET_MAX + 1];
        if (ent == NULL || v->column.len >= sizeof(col))
            continue; /* the loader allows no such target */
        memcpy(col, v->column.ptr, v->column.len);
        col[v->column.len] = '\0';
        if (json_object_set_new(ent, col, value_json(v)) != 0)
            return MG_ENOMEM;
    }
    return MG_OK;
}

static int
add_groups(json_t *in, const struct mg_mapping_result *res)
{
    for (size_t g = 0; g < res->ngroup; g++) {
        const struct mg_mapping_group *grp = &res->group[g];
        json_t *list = json_array();
        if (list == NULL || json_object_set_new(in, grp->target, list) != 0)
            return MG_ENOMEM;
        for (size_t i = 0; i < grp->nitem; i++) {
            json_t *item = json_object();
            if (item == NULL || json_array_append_new(list, item) != 0)
                return MG_ENOMEM;
            for (size_t f = 0; f < grp->item[i].nfield; f++) {
                const struct mg_mapping_value *v = &grp->item[i].field[f];
                if (json_object_set_new(item, v->target, value_json(v)) != 0)
                    return MG_ENOMEM;
            }
        }
    }
    return MG_OK;
}

json_t *
mg_adapter_input(const struct mg_mapping_result *res,
                 const struct mg_hl7v2_header *hdr)
{
    json_t *in = json_object(), *msg = json_object();

    if (in == NULL || msg == NULL ||
        json_object_set_new(in, "message", msg) != 0 ||
        json_object_set_new(msg, "type", json_stringn(hdr->type.ptr,
                                                      hdr->type.len)) != 0 ||
        json_object_set_new(msg, "trigger",
                            json_stringn(hdr->trigger.ptr,
                                         hdr->trigger.len)) != 0 ||
        add_values(in, res) != MG_OK || add_groups(in, res) != MG_OK) {
        json_decref(in);
        return NULL;
    }
    return in;
}

/* The most group items (rows: identifiers, files) the parts of one
 * message may give together. Each part repeats the head's (its patient's
 * identifiers): 1000 parts of a PID-3 of 5000 made five million. */
#define MAX_MESSAGE_ITEMS 20000

/* Adds res's group items to *total; refuses the message past the bound. */
static int
count_items(const struct mg_mapping_result *res, size_t *total,
            struct mg_diag *diag)
{
    for (size_t g = 0; g < res->ngroup; g++)
        *total += res->group[g].nitem;
    if (*total <= MAX_MESSAGE_ITEMS)
        return MG_OK;
    if (diag != NULL) {
        mg_diag_clear(diag);
        mg_diag_set(diag, MG_HL7_ERR_SEGMENT_SEQUENCE, "the message's order "
                    "groups give more than %d items (identifiers, files) "
                    "together", MAX_MESSAGE_ITEMS);
    }
    return MG_EMAPPING;
}

int
mg_adapter_map(const struct mg_adapter *ad,
               const struct mg_mapping_route *route,
               const struct mg_hl7v2_msg *msg, struct mg_arena *arena,
               json_t **out, struct mg_diag *diag)
{
    struct mg_mapping_part *parts;
    struct mg_mapping_result res;
    struct mg_arena scratch, *a; /* scratch: one part, freed before the next */
    json_t *all = NULL, *one;
    size_t n, items = 0;
    int rc = mg_mapping_split(route, msg, arena, &parts, &n, diag);

    if (rc == MG_OK && n > 1 && (all = json_array()) == NULL)
        rc = MG_ENOMEM;
    /* Each part maps in a scratch arena reset before the next: kept side
     * by side, n parts would cost n times their bookkeeping. A message of
     * one part (nearly all) maps in the caller's arena, as before parts:
     * no block of its own. */
    mg_arena_init(&scratch, 16384, 0); /* allocates on first use only */
    a = n > 1 ? &scratch : arena;
    for (size_t k = 0; rc == MG_OK && k < n; k++) {
        if (a == &scratch)
            mg_arena_reset(&scratch);
        rc = mg_mapping_apply_part(route, msg, &parts[k], a, &res, diag);
        if (rc == MG_OK)
            rc = count_items(&res, &items, diag);
        if (rc != MG_OK)
            break;
        one = ad->to_internal(&res, &msg->hdr); /* copies the values */
        if (one == NULL)
            rc = MG_ENOMEM;
        else if (n == 1)
            all = one;
        else if (json_array_append_new(all, one) != 0)
            rc = MG_ENOMEM;
    }
    mg_arena_dispose(&scratch);
    if (rc != MG_OK) {
        json_decref(all);
        return rc;
    }
    *out = all;
    return MG_OK;
}

/* FNV-1a over a class letter and the value: which record kind, which key. */
static uint64_t
key_fingerprint(char kind, const char *v)
{
    return mg_fnv1a(mg_fnv1a(MG_FNV1A_BASIS, &kind, 1), v, strlen(v));
}

static void
add_key(uint64_t *keys, size_t max, size_t *n, char kind, const json_t *v)
{
    if (!json_is_string(v) || json_string_length(v) == 0)
        return;
    if (*n < max)
        keys[*n] = key_fingerprint(kind, json_string_value(v));
    (*n)++;
}

size_t
mg_adapter_input_keys(const json_t *in, uint64_t *keys, size_t max)
{
    static const struct {
        char kind;
        const char *object, *key;
    } named[] = {
        {'p', "patient", "medical_record_number"},
        {'p', "merge", "prior_medical_record_number"},
        {'s', "scan", "accession_number"},
        {'u', "scan", "study_instance_uid"},
    };
    static const char *const id_groups[] = {"patient_identifiers",
                                            "merge_prior_identifiers"};
    size_t n = 0, i;
    const json_t *item;

    if (json_is_array(in)) { /* the parts of a split message */
        json_array_foreach(in, i, item)
            n += mg_adapter_input_keys(item, keys + MG_MIN(n, max),
                                       max - MG_MIN(n, max));
        return n;
    }
    for (i = 0; i < sizeof(named) / sizeof(named[0]); i++)
        add_key(keys, max, &n, named[i].kind,
                json_object_get(json_object_get(in, named[i].object),
                                named[i].key));
    for (size_t g = 0; g < sizeof(id_groups) / sizeof(id_groups[0]); g++)
        json_array_foreach(json_object_get(in, id_groups[g]), i, item)
            add_key(keys, max, &n, 'i', json_object_get(item, "value"));
    return n;
}

/* ---- outbound helpers ------------------------------------------------ */

const char *
mg_adapter_get(const json_t *record, const char *object, const char *key)
{
    const json_t *o = json_object_get(record, object);
    const json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;

    /* FHIR has no empty strings, and HL7 v2 sends nothing for one. */
    return json_is_string(v) && json_string_length(v) > 0
               ? json_string_value(v)
               : NULL;
}

/* The base64 content of a "data:<mime>;base64,<data>" URI. */
static bool
data_uri(const char *uri, struct mg_str *base64)
{
    static const char marker[] = ";base64,";
    const char *data;

    if (strncmp(uri, "data:", 5) != 0 || (data = strchr(uri, ',')) == NULL ||
        (size_t)(data - uri) < 5 + sizeof(marker) - 2 ||
        strncmp(data - (sizeof(marker) - 2), marker, sizeof(marker) - 1) != 0)
        return false;
    *base64 = mg_str_from(data + 1);
    return true;
}

bool
mg_adapter_file(const json_t *record, size_t k, struct mg_adapter_file *out)
{
    const json_t *files = json_object_get(record, "files"), *f;
    const char *type, *uri;
    size_t i;

    json_array_foreach(files, i, f) {
        type = json_string_value(json_object_get(f, "file_type"));
        uri = json_string_value(json_object_get(f, "storage_uri"));
        if (uri == NULL || *uri == '\0' || type == NULL ||
            (strcmp(type, "document") != 0 && strcmp(type, "image") != 0))
            continue;
        if (k-- > 0)
            continue;
        memset(out, 0, sizeof(*out));
        out->name = json_string_value(json_object_get(f, "file_name"));
        out->mime = json_string_value(json_object_get(f, "mime_type"));
        if (out->mime != NULL && *out->mime == '\0')
            out->mime = NULL;
        out->size = json_is_integer(json_object_get(f, "file_size_bytes"))
            ? (long long)json_integer_value(json_object_get(f, "file_size_bytes"))
            : -1;
        if (!data_uri(uri, &out->base64))
            out->uri = uri;
        return true;
    }
    return false;
}

bool
mg_adapter_dicom_modality(const char *code)
{
    static const char terms[] =
        " ANN AR ASMT AU BDUS BI BMD CFM CR CT CTPROTOCOL DG DMS DOC DX ECG"
        " EEG EMG EOG EPS ES FID GM HC HD IO IOL IVOCT IVUS KER KO LEN LS M3D"
        " MG MR NM OAM OCT OP OPM OPT OPTBSV OPTENF OPV OSS OT PLAN POS PR PT"
        " PX REG RESP RF RG RTDOSE RTIMAGE RTINTENT RTPLAN RTRAD RTRECORD"
        " RTSEGANN RTSTRUCT RWV SEG SM SMR SR SRF STAIN TEXTUREMAP TG US VA XA"
        " XAPROTOCOL XC ";
    char word[24];

    if (code == NULL || strlen(code) == 0 || strlen(code) > 20 ||
        strchr(code, ' ') != NULL)
        return false;
    snprintf(word, sizeof(word), " %s ", code);
    return strstr(terms, word) != NULL;
}

/* Whether a DICOM modality is an acquisition modality (DICOM PS3.16 CID
 * 29), which is all R4 lets ImagingStudy.modality hold: documents, key
 * objects, presentation states, structured reports, plans and other
 * derived objects (CID 32 and the like) are not. */
bool
mg_adapter_acquisition_modality(const char *code)
{
    static const char derived[] =
        " ANN ASMT AU CTPROTOCOL DOC FID HC KO M3D OT PLAN POS PR REG RTDOSE"
        " RTINTENT RTPLAN RTRAD RTRECORD RTSEGANN RTSTRUCT RWV SEG SMR SR"
        " STAIN TEXTUREMAP XAPROTOCOL ";
    char word[24];

    if (!mg_adapter_dicom_modality(code))
        return false;
    snprintf(word, sizeof(word), " %s ", code);
    return strstr(derived, word) == NULL;
}

const char *
mg_adapter_identifier_type(const char *code, char *buf, size_t size)
{
    /* HL7 table 0203 (v2.5.1, and the v2.7 additions ACSN, CZ, DC, MRT). */
    static const char table[] =
        " ACSN AM AN ANC AND ANON ANT APRN BA BC BR BRN CC CY CZ DC DDS DEA"
        " DFN DI DL DN DO DP DPM DR DS EI EN FI GI GL GN HC IND JHN LI LN LR"
        " MA MB MC MCD MCN MCR MCT MD MI MR MRT MS NE NH NI NII NIIP NP NPI"
        " OD PE PEN PI PN PNT PPIN PPN PRC PRN PT QA RI RN RPH RR RRI SL SN"
        " SR SS TAX TN U UPIN VN VS WC WCN XX ";
    size_t n = code != NULL ? strlen(code) : 0;

    if (n == 0 || n + 3 > size || strchr(code, ' ') != NULL)
        return NULL;
    buf[0] = ' ';
    for (size_t i = 0; i < n; i++)
        buf[i + 1] = (char)toupper((unsigned char)code[i]);
    buf[n + 1] = ' ';
    buf[n + 2] = '\0';
    if (strstr(table, buf) == NULL)
        return NULL;
    memmove(buf, buf + 1, n);
    buf[n] = '\0';
    return buf;
}

const char *
mg_adapter_mrn_type(const json_t *record)
{
    const char *t = json_string_value(json_object_get(
        mg_adapter_mrn_identifier(record), "type_code"));

    return t != NULL && *t ? t : "MR";
}

bool
mg_adapter_identifier_retired(const json_t *id)
{
    const char *use = json_string_value(json_object_get(id, "use"));

    return use != NULL && strcmp(use, "old") == 0;
}

/* How well identifiers row id fits as the MRN's: 0 not at all (another
 * value); more for typed MR, more for not retired. */
static int
mrn_fit(const json_t *id, const char *mrn)
{
    const char *v = json_string_value(json_object_get(id, "value"));
    const char *t = json_string_value(json_object_get(id, "type_code"));

    if (mrn == NULL || v == NULL || strcmp(v, mrn) != 0)
        return 0;
    return 1 + (t != NULL && strcmp(t, "MR") == 0) +
           2 * !mg_adapter_identifier_retired(id);
}

const json_t *
mg_adapter_mrn_identifier(const json_t *record)
{
    const char *mrn = mg_adapter_get(record, "patient",
                                     "medical_record_number");
    const json_t *id, *best = NULL;
    int fit = 0, f;
    size_t i;

    json_array_foreach(json_object_get(record, "identifiers"), i, id)
        if ((f = mrn_fit(id, mrn)) > fit) {
            fit = f;
            best = id;
        }
    return best;
}

const char *
mg_adapter_mrn_system(const json_t *record)
{
    return json_string_value(json_object_get(mg_adapter_mrn_identifier(record),
                                             "system"));
}

static bool
digits(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    return true;
}

int
mg_adapter_iso_to_hl7(const char *iso, char out[32])
{
    /* Where the digits of YYYY-MM-DDTHH:MM:SS sit. */
    static const size_t at[] = {0, 5, 8, 11, 14, 17}, len[] = {4, 2, 2, 2, 2, 2};
    size_t n = iso ? strlen(iso) : 0, o = 0, k, i;
    const char *zone;

    for (k = 0; k < 6 && at[k] + len[k] <= n; k++) {
        if (!digits(iso + at[k], len[k]) ||
            (k > 0 && iso[at[k] - 1] != "--T::"[k - 1]))
            return MG_EINVAL;
        memcpy(out + o, iso + at[k], len[k]);
        o += len[k];
    }
    if (k != 3 && k != 6)
        return MG_EINVAL; /* a date, or a date-time to the second */
    i = at[k - 1] + len[k - 1];
    if (i < n && iso[i] == '.')
        for (i++; i < n && iso[i] >= '0' && iso[i] <= '9'; i++)
            ; /* fractions: HL7 has them, the receivers rarely want them */
    zone = iso + i;
    if (k == 6 && (zone[0] == '+' || zone[0] == '-') && strlen(zone) == 6 &&
        digits(zone + 1, 2) && zone[3] == ':' && digits(zone + 4, 2)) {
        out[o++] = zone[0];
        memcpy(out + o, zone + 1, 2);
        memcpy(out + o + 2, zone + 4, 2);
        o += 4;
    } else if (k == 6 && strcmp(zone, "Z") == 0) {
        memcpy(out + o, "+0000", 5);
        o += 5;
    } else if (*zone != '\0') {
        return MG_EINVAL;
    }
    out[o] = '\0';
    return MG_OK;
}

/* [0-2](\.(0|[1-9][0-9]*))+, as FHIR R4's oid type has it. */
static bool
is_oid(const char *s)
{
    if (*s < '0' || *s > '2' || s[1] != '.')
        return false;
    for (s++; *s == '.'; ) {
        s++;
        if (*s == '0') {
            s++;
        } else if (*s >= '1' && *s <= '9') {
            while (*s >= '0' && *s <= '9')
                s++;
        } else {
            return false;
        }
    }
    return *s == '\0';
}

bool
mg_adapter_is_uri(const char *s)
{
    const char *p = s;

    if (s == NULL || *p < 'a' || *p > 'z')
        return false;
    while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
           *p == '+' || *p == '-' || *p == '.')
        p++;
    if (*p != ':' || p[1] == '\0')
        return false;
    for (p++; *p != '\0'; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7F)
            return false;
    /* FHIR's oid type: urn:oid:HOSP (an HD with HOSP&HOSP&ISO) is none */
    if (strncmp(s, "urn:oid:", 8) == 0)
        return is_oid(s + 8);
    return true;
}

const char *
mg_adapter_code(const char *s, char *buf, size_t size)
{
    size_t n;

    if (s == NULL)
        return NULL;
    while (*s == ' ' || *s == '\t')
        s++;
    n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n == 0 || n >= size)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < ' ' || s[i] == 0x7F ||
            (s[i] == ' ' && s[i + 1] == ' '))
            return NULL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return buf;
}

void
mg_adapter_json_set(json_t *obj, const char *key, const char *v)
{
    if (v != NULL)
        json_object_set_new(obj, key, json_string(v));
}

int
mg_adapter_refuse(struct mg_diag *diag, const char *what)
{
    if (diag != NULL)
        mg_diag_set(diag, MG_HL7_ERR_REQUIRED_MISSING, "%s", what);
    return MG_EINVAL;
}

void
mg_adapter_json_time(json_t *obj, const char *key, const char *iso,
                     bool instant)
{
    const char *t = iso ? strchr(iso, 'T') : NULL;
    bool zoned = t != NULL && (strchr(t, 'Z') || strchr(t, '+') ||
                               strchr(t, '-'));

    char buf[48];
    size_t hm;

    if (iso == NULL)
        return;
    if (t == NULL || zoned) {
        /* FHIR wants the seconds: HL7 minute precision gets ":00". */
        hm = t ? strcspn(t + 1, "Z+-") : 0;
        if (hm == 5 && strlen(iso) < sizeof(buf) - 3) {
            snprintf(buf, sizeof(buf), "%.*s:00%s", (int)(t + 6 - iso), iso,
                     t + 6);
            iso = buf;
        }
        if (!instant || zoned)
            json_object_set_new(obj, key, json_string(iso));
        return;
    }
    if (!instant) /* a local time: only its date is certain */
        json_object_set_new(obj, key, json_stringn(iso, (size_t)(t - iso)));
}

int
mg_adapter_json_out(json_t *res, struct mg_buf *out)
{
    char *text = res ? json_dumps(res, JSON_COMPACT) : NULL;
    int rc = text ? mg_buf_appendz(out, text) : MG_ENOMEM;

    free(text);
    json_decref(res);
    return rc;
}

/* ---- installing the SQL ---------------------------------------------- */

/* Errors that are about the moment rather than the message
 * (serialization, deadlock, lock wait, resources, shutdown, connection):
 * raised again, so the batch is retried, instead of being the message's. */
#define TRANSIENT_CLASSES "('40', '53', '55', '57', '58', '08')"

/* The SQL function name of an adapter: "hl7v2.order" -> hl7v2_order. */
static void
sql_name(const struct mg_adapter *a, char fn[96])
{
    size_t k = 0;

    for (const char *p = a->name; *p && k < 95; p++)
        fn[k++] = *p == '.' ? '_' : *p;
    fn[k] = '\0';
}

/* One "WHEN '<name>' THEN <verb> medgate_adapter_<fn><call>;" line per
 * adapter with SQL (only those with a batch function when batch_only). */
static int
append_cases(struct mg_buf *b, const char *verb, const char *call,
             bool batch_only)
{
    int rc = MG_OK;

    for (const struct mg__adapter_entry *e = mg__adapters;
         rc == MG_OK && e->adapter; e++) {
        char fn[96];
        if (e->sql == NULL || (batch_only && !e->adapter->batch))
            continue; /* outbound only, or no batch function to call */
        sql_name(e->adapter, fn);
        rc = mg_buf_appendf(b, "  WHEN '%s' THEN %s medgate_adapter_%s%s;\n",
                            e->adapter->name, verb, fn, call);
    }
    return rc;
}

/* medgate_adapt() runs one message's adapter function in a subtransaction
 * and returns the error instead of raising it, so one message's bad data
 * never aborts its neighbours in a grouped commit. DETAIL is kept only for
 * the adapters' own MG errors; PostgreSQL's may quote row values (PHI). */
static int
dispatch_one_sql(struct mg_buf *b)
{
    /* A split message (mg_adapter_map) is an array: each part goes to
     * the adapter in turn, all in this one subtransaction, and a refusal
     * names its part ("part[2]:scan.accession_number"). */
    int rc = mg_buf_appendz(b,
        "CREATE OR REPLACE FUNCTION medgate_adapt(adapter text, org uuid,"
        " message_id uuid, input jsonb, OUT err_state text,"
        " OUT err_text text, OUT err_target text)"
        " LANGUAGE plpgsql AS $medgate$\nDECLARE tbl text; con text;"
        " part jsonb; k integer := 0;\n"
        "BEGIN\n  IF jsonb_typeof(input) = 'array' THEN\n"
        "  FOR part IN SELECT jsonb_array_elements(input) LOOP\n"
        "  k := k + 1;\n  CASE adapter\n");

    if (rc == MG_OK)
        rc = append_cases(b, "PERFORM", "(org, message_id, part)", false);
    if (rc == MG_OK)
        rc = mg_buf_appendz(b,
            "  ELSE RAISE EXCEPTION 'no adapter is called %', adapter"
            " USING ERRCODE = 'MG000';\n  END CASE;\n  END LOOP;\n"
            "  RETURN;\n  END IF;\n  CASE adapter\n");
    if (rc == MG_OK)
        rc = append_cases(b, "PERFORM", "(org, message_id, input)", false);
    if (rc == MG_OK)
        rc = mg_buf_appendz(b,
            "  ELSE RAISE EXCEPTION 'no adapter is called %', adapter"
            " USING ERRCODE = 'MG000';\n  END CASE;\n"
            "EXCEPTION WHEN OTHERS THEN\n"
            "  GET STACKED DIAGNOSTICS err_state = RETURNED_SQLSTATE,"
            " err_text = MESSAGE_TEXT, err_target = PG_EXCEPTION_DETAIL,"
            " tbl = TABLE_NAME, con = CONSTRAINT_NAME;\n"
            "  IF left(err_state, 2) IN " TRANSIENT_CLASSES
            " THEN RAISE; END IF;\n"
            "  IF left(err_state, 2) <> 'MG' THEN err_target := NULL; END IF;\n"
            /* A column CHECK (patients_gender_check) names its column: the
             * target is then patient.gender, which the ERR can point at. */
            "  IF err_state = '23514' AND con LIKE tbl || '\\_%\\_check'"
            " THEN err_target := CASE tbl WHEN 'patients' THEN 'patient'"
            " WHEN 'scans' THEN 'scan' WHEN 'reports' THEN 'report' END"
            " || '.' || substr(con, length(tbl) + 2,"
            " length(con) - length(tbl) - 7); END IF;\n"
            /* The study UID's unique key: another scan has it (an XO, or
             * a NW with a new accession, naming another study's UID). */
            "  IF err_state = '23505'"
            " AND con = 'scans_organization_id_study_instance_uid_key'"
            " THEN err_target := 'scan.study_instance_uid'; END IF;\n"
            "  IF k > 0 AND err_target IS NOT NULL"
            " THEN err_target := 'part[' || k || ']:' || err_target; END IF;\n"
            "END $medgate$;\n");
    return rc;
}

/* medgate_adapt_batch() is what the intake calls, once per grouped
 * commit, with the stored messages in order: first each batch adapter's
 * function over its messages marked fast (they share no record with any
 * other message of the commit, so they may go first and together), each
 * call in a subtransaction -- if it fails, its messages simply go one by
 * one -- then medgate_adapt() for every message left, in order. It returns
 * a row (position, error, false) for each message an adapter refused and
 * (position, NULL, true) for each a batch function wrote. */
static int
dispatch_batch_sql(struct mg_buf *b)
{
    int rc = mg_buf_appendz(b,
        "CREATE OR REPLACE FUNCTION medgate_adapt_fast(adapter text,"
        " orgs uuid[], message_ids uuid[], inputs jsonb[])"
        " RETURNS integer[] LANGUAGE plpgsql AS $medgate$\n"
        "DECLARE st text;\nBEGIN\n  CASE adapter\n");

    if (rc == MG_OK)
        rc = append_cases(b, "RETURN", "_batch(orgs, message_ids, inputs)",
                          true);
    if (rc == MG_OK)
        rc = mg_buf_appendz(b,
            "  ELSE RETURN '{}';\n  END CASE;\n"
            "EXCEPTION WHEN OTHERS THEN\n"
            "  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE;\n"
            "  IF left(st, 2) IN " TRANSIENT_CLASSES " THEN RAISE; END IF;\n"
            /* The server log says so (the SQLSTATE only: a message text
             * may quote values). */
            "  RAISE LOG 'medgate: % batch of % fell back to one by one:"
            " SQLSTATE %', adapter, cardinality(inputs), st;\n"
            "  RETURN '{}';\n"
            "END $medgate$;\n"
            "CREATE OR REPLACE FUNCTION medgate_adapt_batch(adapters text[],"
            " orgs uuid[], message_ids uuid[], inputs jsonb[],"
            " fast boolean[], OUT k integer, OUT err_state text,"
            " OUT err_text text, OUT err_target text, OUT batched boolean)"
            " RETURNS SETOF record LANGUAGE plpgsql AS $medgate$\n"
            "DECLARE\n"
            "  n integer := coalesce(cardinality(adapters), 0);\n"
            "  done boolean[] := array_fill(false, ARRAY[n]);\n"
            "  a text; sel integer[]; h integer;\n"
            "BEGIN\n"
            "  FOR a IN SELECT DISTINCT adapters[i]"
            " FROM generate_subscripts(adapters, 1) i WHERE fast[i] LOOP\n"
            "    sel := ARRAY(SELECT i FROM generate_subscripts(adapters, 1) i"
            " WHERE fast[i] AND adapters[i] = a ORDER BY i);\n"
            "    FOREACH h IN ARRAY medgate_adapt_fast(a,"
            " ARRAY(SELECT orgs[i] FROM unnest(sel) i),"
            " ARRAY(SELECT message_ids[i] FROM unnest(sel) i),"
            " ARRAY(SELECT inputs[i] FROM unnest(sel) i)) LOOP\n"
            "      done[sel[h]] := true;\n"
            "      k := sel[h]; batched := true; RETURN NEXT;\n"
            "    END LOOP;\n"
            "  END LOOP;\n"
            "  batched := false;\n"
            "  FOR i IN 1 .. n LOOP\n"
            "    CONTINUE WHEN done[i];\n"
            "    SELECT i, r.err_state, r.err_text, r.err_target"
            " INTO k, err_state, err_text, err_target"
            " FROM medgate_adapt(adapters[i], orgs[i], message_ids[i],"
            " inputs[i]) r;\n"
            "    IF err_state IS NOT NULL THEN RETURN NEXT; END IF;\n"
            "  END LOOP;\n"
            "END $medgate$;\n");
    return rc;
}

/* Both dispatchers, as one text. */
static int
dispatcher_sql(struct mg_buf *b)
{
    int rc = dispatch_one_sql(b);

    return rc == MG_OK ? dispatch_batch_sql(b) : rc;
}

void
mg_adapters_checksum(char out[MG_ADAPTERS_CHECKSUM_HEX + 1])
{
    unsigned char digest[MG_ADAPTERS_CHECKSUM_HEX / 2];
    crypto_generichash_state st;
    struct mg_buf disp;

    mg_buf_init(&disp, 0);
    crypto_generichash_init(&st, NULL, 0, sizeof(digest));
    crypto_generichash_update(&st, (const unsigned char *)
                              mg__adapters_common_sql,
                              strlen(mg__adapters_common_sql));
    for (const struct mg__adapter_entry *e = mg__adapters; e->adapter; e++)
        if (e->sql != NULL)
            crypto_generichash_update(&st, (const unsigned char *)e->sql,
                                      strlen(e->sql));
    if (dispatcher_sql(&disp) == MG_OK)
        crypto_generichash_update(&st, (const unsigned char *)disp.ptr,
                                  disp.len);
    crypto_generichash_final(&st, digest, sizeof(digest));
    sodium_bin2hex(out, MG_ADAPTERS_CHECKSUM_HEX + 1, digest, sizeof(digest));
    mg_buf_dispose(&disp);
}

static int
exec_sql(PGconn *c, const char *what, const char *sql, FILE *err)
{
    PGresult *res = PQexec(c, sql);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK ||
             PQresultStatus(res) == PGRES_TUPLES_OK;

    if (!ok && err != NULL)
        fprintf(err, "adapters: %s: %s", what, PQerrorMessage(c));
    PQclear(res);
    return ok ? MG_OK : MG_EDB;
}

int
mg_adapters_install(const char *conninfo, FILE *out, FILE *err)
{
    PGconn *c = mg_store_connect_once(conninfo, "adapters", err);
    struct mg_buf disp;
    int rc;

    if (c == NULL)
        return MG_EDBDOWN;
    mg_buf_init(&disp, 0);
    rc = exec_sql(c, "begin", "SET client_min_messages = warning; BEGIN;"
                  " SELECT pg_advisory_xact_lock(7220553)", err);
    if (rc == MG_OK)
        rc = exec_sql(c, "common.sql", mg__adapters_common_sql, err);
    for (const struct mg__adapter_entry *e = mg__adapters;
         rc == MG_OK && e->adapter; e++)
        if (e->sql != NULL)
            rc = exec_sql(c, e->adapter->name, e->sql, err);
    if (rc == MG_OK)
        rc = dispatcher_sql(&disp) == MG_OK
                 ? exec_sql(c, "medgate_adapt", disp.ptr, err)
                 : MG_ENOMEM;
    if (rc == MG_OK) {
        char sum[MG_ADAPTERS_CHECKSUM_HEX + 1], sql[160];
        mg_adapters_checksum(sum);
        snprintf(sql, sizeof(sql), "CREATE OR REPLACE FUNCTION "
                 "medgate_adapters_checksum() RETURNS text LANGUAGE sql "
                 "IMMUTABLE AS $$ SELECT '%s'::text $$", sum);
        rc = exec_sql(c, "medgate_adapters_checksum", sql, err);
    }
    if (rc == MG_OK)
        rc = exec_sql(c, "commit", "COMMIT", err);
    if (rc == MG_OK && out != NULL)
        for (const struct mg__adapter_entry *e = mg__adapters; e->adapter;
             e++)
            if (e->sql != NULL)
                fprintf(out, "adapter %s: installed\n", e->adapter->name);
    mg_buf_dispose(&disp);
    PQfinish(c);
    return rc;
}
