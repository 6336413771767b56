/* First stage of the intake, per message and before any I/O: parse and
 * check, decide what will be stored and answered, build the ACKs and
 * render the row's columns. */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/diag.h"
#include "core/error.h"
#include "hl7v2/hl7v2.h"
#include "intake/intake_int.h"
#include "mapping/mapping.h"

/* Message types the gateway takes (the adapters of the mapping issue).
 * Anything else is stored as rejected and answered AR 200/201. */
static const struct {
    const char *type;
    const char *triggers[8];
} supported[] = {
    {"ADT", {"A01", "A04", "A08", "A28", "A31", "A40", NULL}},
    {"ORM", {"O01", NULL}},
    {"OMI", {"O23", NULL}},
    {"ORU", {"R01", NULL}},
};

static bool
type_supported(struct mg_str type, struct mg_str trigger, int *code)
{
    for (size_t i = 0; i < sizeof(supported) / sizeof(supported[0]); i++) {
        if (!mg_str_eqz(type, supported[i].type))
            continue;
        for (int k = 0; supported[i].triggers[k]; k++)
            if (mg_str_eqz(trigger, supported[i].triggers[k]))
                return true;
        *code = MG_HL7_ERR_UNSUPPORTED_EVENT;
        return false;
    }
    *code = MG_HL7_ERR_UNSUPPORTED_TYPE;
    return false;
}

static bool
pattern_match(const char *pattern, struct mg_str value)
{
    return pattern == NULL || strcmp(pattern, "*") == 0 ||
           mg_str_eqz(value, pattern);
}

static const struct mg_conf_sender *
find_sender(const struct mg_conf_listener *li, struct mg_str app,
            struct mg_str fac)
{
    for (int i = 0; i < li->nsenders; i++)
        if (pattern_match(li->senders[i].application, app) &&
            pattern_match(li->senders[i].facility, fac))
            return &li->senders[i];
    return NULL;
}

/* A copy safe for a PostgreSQL text column: printable ASCII and valid
 * UTF-8 kept, other bytes as '?'; NULL for an empty value when
 * empty_is_null. Values from a message that failed to parse may be in any
 * charset. */
static const char *
col_text(struct mg_arena *a, struct mg_str s, size_t max, bool empty_is_null)
{
    char *out;
    size_t n = s.len < max ? s.len : max;

    if (n == 0)
        return empty_is_null ? NULL : "";
    out = mg_arena_alloc(a, n + 1);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        out[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[n] = '\0';
    return out;
}

/* Three upper-case letters or digits, as the schema's CHECK wants. */
static const char *
col_code3(struct mg_arena *a, struct mg_str s)
{
    if (s.len != 3)
        return NULL;
    for (size_t i = 0; i < 3; i++)
        if (!((s.ptr[i] >= 'A' && s.ptr[i] <= 'Z') ||
              (s.ptr[i] >= '0' && s.ptr[i] <= '9')))
            return NULL;
    return col_text(a, s, 3, true);
}

static const char *
col_hex(struct mg_arena *a, const unsigned char *p, size_t n)
{
    char *out = mg_arena_alloc(a, 2 * n + 1);

    if (out != NULL)
        sodium_bin2hex(out, 2 * n + 1, p, n);
    return out;
}

/* A new MSH-10 for each ACK: unique per process start and counter. */
static void
next_ack_id(char out[24])
{
    static unsigned long long counter;
    static unsigned boot;

    if (boot == 0)
        boot = (unsigned)(mg_clock_wall_us() / 1000000);
    snprintf(out, 24, "MG%08x%08llx", boot, ++counter & 0xffffffffull);
}

static const char *
build_ack(struct mg_arena *a, const struct mg_hl7v2_msh *msh,
          enum mg_hl7v2_ack_code code, const struct mg_diag *d, size_t *len)
{
    char id[24], ts[32];
    struct mg_hl7v2_ack ack;
    struct mg_buf b;
    const char *out = NULL;

    next_ack_id(id);
    mg_clock_hl7_now(ts, sizeof(ts));
    memset(&ack, 0, sizeof(ack));
    ack.code = code;
    ack.control_id = mg_str_from(id);
    ack.timestamp = mg_str_from(ts);
    ack.err = d;
    ack.nerr = d != NULL ? 1 : 0;
    mg_buf_init(&b, 64 * 1024);
    if (mg_hl7v2_ack_build(msh, &ack, &b) == MG_OK) {
        out = mg_arena_strndup(a, b.ptr, b.len);
        if (len != NULL)
            *len = b.len;
    }
    mg_buf_dispose(&b);
    return out;
}

static void
location_of(const struct mg_diag *d, char *out, size_t size)
{
    if (d->segment[0] == '\0')
        snprintf(out, size, "%s", "");
    else
        snprintf(out, size, "%s^%d^%d^%d^%d^%d", d->segment,
                 d->seq ? d->seq : 1, d->field, d->rep, d->comp, d->sub);
}

struct verdict {
    enum mg__intake_outcome outcome; /* STORED, FAILED or REJECTED */
    struct mg_diag diag;
    const struct mg_conf_sender *sender;
    struct mg_hl7v2_msg *msg; /* parsed, when it parsed */
    const char *patient;      /* JSON patch of patient.* targets, or NULL */
    const char *scan;         /* JSON patch of scan.* targets, or NULL */
};

static json_t *
item_string(const struct mg_mapping_item *item, const char *name)
{
    const struct mg_mapping_value *v = mg_mapping_item_get(item, name);

    return v == NULL || v->null ? json_null()
                                : json_stringn(v->str.ptr, v->str.len);
}

/* "identifiers": [{system, value, type_code}], from the group rule. */
static void
add_identifiers(json_t *obj, const struct mg_mapping_group *g)
{
    json_t *list;

    if (g == NULL || g->nitem == 0)
        return;
    list = json_array();
    for (size_t i = 0; i < g->nitem; i++) {
        json_t *id = json_object();
        json_object_set_new(id, "system", item_string(&g->item[i], "system"));
        json_object_set_new(id, "value", item_string(&g->item[i], "value"));
        json_object_set_new(id, "type_code",
                            item_string(&g->item[i], "type_code"));
        json_array_append_new(list, id);
    }
    json_object_set_new(obj, "identifiers", list);
}

/* The patient adapter's input: every patient.* target of the mapping as
 * one JSON object. A key with null clears the column (HL7 ""), a key that
 * is absent leaves it as it is; the batch statement applies it with
 * jsonb_populate_record, which has exactly these semantics. NULL when the
 * mapping names no medical record number (no patient to write). */
static json_t *
entity_object(const struct mg_mapping_result *res, const char *entity)
{
    json_t *obj = json_object();

    for (size_t i = 0; obj != NULL && i < res->nvalue; i++) {
        const struct mg_mapping_value *v = &res->value[i];
        char col[64];
        if (!mg_str_eqz(v->entity, entity) || v->column.len >= sizeof(col))
            continue;
        memcpy(col, v->column.ptr, v->column.len);
        col[v->column.len] = '\0';
        json_object_set_new(obj, col, v->null ? json_null()
                                              : json_stringn(v->str.ptr,
                                                             v->str.len));
    }
    return obj;
}

/* The object as compact JSON in the arena when it has a string key (the
 * entity's match key); NULL otherwise. Frees obj. */
static const char *
patch_text(struct mg_arena *a, json_t *obj, const char *key)
{
    const char *out = NULL;
    char *text;

    if (obj != NULL && json_is_string(json_object_get(obj, key))) {
        text = json_dumps(obj, JSON_COMPACT);
        if (text != NULL)
            out = mg_arena_strndup(a, text, strlen(text));
        free(text);
    }
    json_decref(obj);
    return out;
}

static const char *
patient_patch(struct mg_arena *a, const struct mg_mapping_result *res)
{
    json_t *obj = entity_object(res, "patient");

    if (obj != NULL)
        add_identifiers(obj,
                        mg_mapping_result_group(res, "patient_identifiers"));
    return patch_text(a, obj, "medical_record_number");
}

/* The order adapter's input: every scan.* target, plus the order control
 * (ORC-1) that says what to do with the scan. */
static const char *
scan_patch(struct mg_arena *a, const struct mg_mapping_result *res)
{
    json_t *obj = entity_object(res, "scan");
    const struct mg_mapping_value *ctl = mg_mapping_result_get(res,
                                                               "order.control");

    if (obj != NULL && ctl != NULL && !ctl->null)
        json_object_set_new(obj, "control",
                            json_stringn(ctl->str.ptr, ctl->str.len));
    return patch_text(a, obj, "accession_number");
}

/* Decides the message's fate: accepted, failed (AE) or rejected (AR). */
/* The mapping stage: the route for the message and its mapped values.
 * No route: rejected (AR 200). A mapping error: failed (AE), the diag
 * names the field and the target. Writing the values to the internal
 * tables plugs in here next. */
static void
map_stage(struct mg__intake_item *it, const struct mg_conf_listener *li,
          const struct mg_mapping_set *mappings, struct verdict *v)
{
    const struct mg_mapping_route *route;
    struct mg_mapping_result result;

    if (mappings == NULL)
        return; /* storage only (no mapping folder configured) */
    if (mg_mapping_route_find(mappings, &v->msg->hdr, li->name, &route) !=
        MG_OK) {
        mg_diag_clear(&v->diag);
        mg_diag_at(&v->diag, "MSH", 1, 9, 0);
        mg_diag_set(&v->diag, MG_HL7_ERR_UNSUPPORTED_TYPE,
                    "no mapping route takes this message type from this "
                    "sender");
        v->outcome = MG__INTAKE_REJECTED;
        return;
    }
    mg_diag_clear(&v->diag);
    if (mg_mapping_apply(route, v->msg, &it->arena, &result, &v->diag) !=
        MG_OK) {
        if (v->diag.code == 0)
            mg_diag_set(&v->diag, MG_HL7_ERR_INTERNAL, "mapping failed");
        v->outcome = MG__INTAKE_FAILED;
        return;
    }
    /* Adapters: the patient now; scans and reports plug in next to it. */
    v->patient = patient_patch(&it->arena, &result);
    if (strcmp(mg_mapping_route_adapter(route), "hl7v2.order") == 0)
        v->scan = scan_patch(&it->arena, &result);
}

static void
judge(struct mg__intake_item *it, const struct mg_conf_listener *li,
      const struct mg_mapping_set *mappings, struct mg_str frame,
      struct mg_hl7v2_msh *msh, struct verdict *v)
{
    struct mg_hl7v2_parse_opts opts = {0};
    int code = 0;

    mg_diag_clear(&v->diag);
    v->outcome = MG__INTAKE_STORED;
    if (mg_hl7v2_check(frame, msh, &v->diag) != MG_OK)
        goto out_bad;
    v->sender = find_sender(li, mg_hl7v2_raw_comp(msh->field[3], &msh->delims, 1),
                            mg_hl7v2_raw_comp(msh->field[4], &msh->delims, 1));
    if (v->sender == NULL) {
        mg_diag_at(&v->diag, "MSH", 1, 4, 1);
        mg_diag_set(&v->diag, MG_HL7_ERR_INTERNAL,
                    "sender not accepted on listener %s", li->name);
        v->outcome = MG__INTAKE_REJECTED;
        return;
    }
    opts.default_charset = v->sender->charset ? v->sender->charset
                                              : li->default_charset;
    if (mg_hl7v2_parse(frame, &opts, &it->arena, &v->msg, &v->diag) != MG_OK) {
        v->msg = NULL;
        goto out_bad;
    }
    if (!type_supported(v->msg->hdr.type, v->msg->hdr.trigger, &code)) {
        mg_diag_at(&v->diag, "MSH", 1, 9, code == MG_HL7_ERR_UNSUPPORTED_TYPE
                                               ? 1 : 2);
        mg_diag_set(&v->diag, code, "message type %.*s^%.*s is not supported",
                    (int)MG_MIN(v->msg->hdr.type.len, 3), v->msg->hdr.type.ptr,
                    (int)MG_MIN(v->msg->hdr.trigger.len, 3),
                    v->msg->hdr.trigger.ptr);
        v->outcome = MG__INTAKE_REJECTED;
        return;
    }
    map_stage(it, li, mappings, v);
    return;
out_bad:
    v->outcome = mg_hl7v2_ack_code_for(&v->diag, MG_HL7V2_ACK_ORIGINAL) ==
                         MG_HL7V2_AR
                     ? MG__INTAKE_REJECTED
                     : MG__INTAKE_FAILED;
}

/* MSH values: from the parsed header (unescaped UTF-8) when it parsed,
 * else the first component of the raw MSH field. */
static struct mg_str
header_value(const struct verdict *v, const struct mg_hl7v2_msh *msh, int n,
             int comp)
{
    const struct mg_hl7v2_header *h = v->msg ? &v->msg->hdr : NULL;

    if (h != NULL) {
        switch (n * 10 + comp) {
        case 31: return h->sending_app;
        case 41: return h->sending_fac;
        case 51: return h->receiving_app;
        case 61: return h->receiving_fac;
        case 71: return h->datetime;
        case 91: return h->type;
        case 92: return h->trigger;
        case 93: return h->structure;
        case 101: return h->control_id;
        case 111: return h->processing_id;
        case 121: return h->version;
        case 151: return h->accept_ack;
        case 161: return h->app_ack;
        case 181: return h->charset;
        default: break;
        }
    }
    if (n > msh->nfield)
        return MG_STR_NULL;
    return n == 10 ? msh->field[n]
                   : mg_hl7v2_raw_comp(msh->field[n], &msh->delims, comp);
}

static void
render_header(struct mg__intake_item *it, const struct verdict *v,
              const struct mg_hl7v2_msh *msh)
{
    struct mg_arena *a = &it->arena;

    it->col[COL_APP] = col_text(a, header_value(v, msh, 3, 1), 180, false);
    it->col[COL_FAC] = col_text(a, header_value(v, msh, 4, 1), 180, false);
    it->col[COL_RAPP] = col_text(a, header_value(v, msh, 5, 1), 180, false);
    it->col[COL_RFAC] = col_text(a, header_value(v, msh, 6, 1), 180, false);
    it->col[COL_DATETIME] = col_text(a, header_value(v, msh, 7, 1), 40, true);
    it->col[COL_TYPE] = col_code3(a, header_value(v, msh, 9, 1));
    it->col[COL_TRIGGER] = col_code3(a, header_value(v, msh, 9, 2));
    it->col[COL_STRUCTURE] = col_text(a, header_value(v, msh, 9, 3), 10, true);
    it->col[COL_CONTROL_ID] = col_text(a, header_value(v, msh, 10, 1), 199,
                                       true);
    it->col[COL_PROCESSING_ID] = col_text(a, header_value(v, msh, 11, 1), 8,
                                          true);
    it->col[COL_VERSION] = col_text(a, header_value(v, msh, 12, 1), 16, true);
    it->col[COL_ACCEPT_ACK] = col_text(a, header_value(v, msh, 15, 1), 4, true);
    it->col[COL_APP_ACK] = col_text(a, header_value(v, msh, 16, 1), 4, true);
    it->col[COL_CHARSET] = col_text(a, header_value(v, msh, 18, 1), 40, true);
}

static void
render_acks(struct mg__intake_item *it, const struct mg_conf_listener *li,
            const struct verdict *v, const struct mg_hl7v2_msh *msh)
{
    enum mg_hl7v2_ack_mode mode = li->ack_mode == MG_ACK_ORIGINAL
                                      ? MG_HL7V2_ACK_ORIGINAL
                                      : mg_hl7v2_ack_mode(msh);
    bool enhanced = mode == MG_HL7V2_ACK_ENHANCED;
    bool ok = v->outcome == MG__INTAKE_STORED;
    struct mg_diag d;
    enum mg_hl7v2_ack_code code;
    char loc[64];

    if (mg_hl7v2_is_ack(msh))
        return; /* never acknowledge an acknowledgement */
    if (ok)
        code = enhanced ? MG_HL7V2_CA : MG_HL7V2_AA;
    else if (v->outcome == MG__INTAKE_REJECTED)
        code = enhanced ? MG_HL7V2_CR : MG_HL7V2_AR;
    else
        code = enhanced ? MG_HL7V2_CE : MG_HL7V2_AE;
    it->col[COL_ACK_CODE] = mg_hl7v2_ack_code_str(code);
    if (!enhanced || mg_hl7v2_accept_ack_wanted(msh, ok))
        it->col[COL_ACK] = build_ack(&it->arena, msh, code,
                                     ok ? NULL : &v->diag, NULL);
    if (!ok) {
        it->col[COL_ERROR] = col_text(&it->arena, mg_str_from(v->diag.text),
                                      sizeof(v->diag.text), true);
        location_of(&v->diag, loc, sizeof(loc));
        it->col[COL_ERROR_LOCATION] = col_text(&it->arena, mg_str_from(loc),
                                               sizeof(loc), true);
    }
    mg_diag_clear(&d);
    mg_diag_at(&d, "MSH", 1, 10, 0);
    mg_diag_set(&d, MG_HL7_ERR_DUPLICATE_KEY, "control id already received "
                "from this sender with a different payload");
    it->col[COL_DUP_ACK] = build_ack(&it->arena, msh,
                                     enhanced ? MG_HL7V2_CE : MG_HL7V2_AE, &d,
                                     NULL);
    mg_diag_clear(&d);
    mg_diag_set(&d, MG_HL7_ERR_INTERNAL, "receiver could not store the "
                "message; resend later");
    it->down_ack.ptr = build_ack(&it->arena, msh,
                                 enhanced ? MG_HL7V2_CR : MG_HL7V2_AR, &d,
                                 &it->down_ack.len);
    if (it->down_ack.ptr == NULL)
        it->down_ack.len = 0;
    if (ok) {
        mg_diag_clear(&d);
        mg_diag_set(&d, MG_HL7_ERR_INTERNAL, "the mapped values could not be "
                    "written (see sync_logs)");
        it->write_code = enhanced ? "CE" : "AE";
        it->write_ack.ptr = build_ack(&it->arena, msh,
                                      enhanced ? MG_HL7V2_CE : MG_HL7V2_AE,
                                      &d, &it->write_ack.len);
        if (it->write_ack.ptr == NULL)
            it->write_ack.len = 0;
    }
}

int
mg__intake_prepare(struct mg__intake_item *it,
                   const struct mg_conf_listener *li,
                   const struct mg_mapping_set *mappings, struct mg_str frame)
{
    static const char *const status[] = {"received", "", "", "failed",
                                         "rejected"};
    unsigned char hash[32];
    struct mg_hl7v2_msh msh;
    struct verdict v;
    char when[24];

    memset(&v, 0, sizeof(v));
    snprintf(when, sizeof(when), "%lld", (long long)mg_clock_wall_us());
    it->col[COL_RECEIVED_AT] = mg_arena_strndup(&it->arena, when, strlen(when));
    crypto_generichash(hash, sizeof(hash), (const unsigned char *)frame.ptr,
                       frame.len, NULL, 0);
    it->col[COL_HASH] = col_hex(&it->arena, hash, sizeof(hash));
    it->col[COL_RAW] = col_hex(&it->arena, (const unsigned char *)frame.ptr,
                               frame.len);
    if (it->col[COL_RAW] == NULL || it->col[COL_HASH] == NULL)
        return MG_ENOMEM;
    it->col[COL_LISTENER] = li->name;

    judge(it, li, mappings, frame, &msh, &v);
    it->outcome = v.outcome;
    it->col[COL_STATUS] = status[v.outcome];
    it->col[COL_ORG] = v.sender ? v.sender->organization_id : NULL;
    it->col[COL_PATIENT] = v.outcome == MG__INTAKE_STORED ? v.patient : NULL;
    it->col[COL_SCAN] = it->col[COL_PATIENT] ? v.scan : NULL;
    render_header(it, &v, &msh);
    render_acks(it, li, &v, &msh);
    return MG_OK;
}

int
mg_intake_reject_ack(struct mg_str head, const char *text, struct mg_buf *out)
{
    struct mg_hl7v2_msh msh;
    struct mg_arena a;
    struct mg_diag d;
    const char *ack;
    size_t len = 0;
    int rc;

    if (mg_hl7v2_msh_peek(head, &msh) != MG_OK || msh.nfield < 10)
        return MG_EPARSE;
    mg_diag_clear(&d);
    mg_diag_set(&d, MG_HL7_ERR_INTERNAL, "%s", text);
    mg_arena_init(&a, 4096, 0);
    ack = build_ack(&a, &msh, mg_hl7v2_ack_mode(&msh) == MG_HL7V2_ACK_ENHANCED
                                  ? MG_HL7V2_CR : MG_HL7V2_AR,
                    &d, &len);
    rc = ack ? mg_buf_append(out, ack, len) : MG_ENOMEM;
    mg_arena_dispose(&a);
    return rc;
}

int
mg_intake_judge(const struct mg_conf_listener *li,
                const struct mg_mapping_set *set, struct mg_str raw,
                struct mg_intake_verdict *out)
{
    struct mg__intake_item it;
    int rc;

    memset(&it, 0, sizeof(it));
    memset(out, 0, sizeof(*out));
    mg_arena_init(&it.arena, raw.len + 4096, 0);
    rc = mg__intake_prepare(&it, li, set, raw);
    if (rc == MG_OK) {
        snprintf(out->status, sizeof(out->status), "%s", it.col[COL_STATUS]);
        snprintf(out->error, sizeof(out->error), "%s",
                 it.col[COL_ERROR] ? it.col[COL_ERROR] : "");
        snprintf(out->location, sizeof(out->location), "%s",
                 it.col[COL_ERROR_LOCATION] ? it.col[COL_ERROR_LOCATION] : "");
    }
    mg_arena_dispose(&it.arena);
    return rc;
}
