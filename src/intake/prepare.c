/* First stage of the intake, per message and before any I/O: parse and
 * check, decide what will be stored and answered, build the ACKs and
 * render the row's columns. */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/adapter.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/error.h"
#include "hl7v2/hl7v2.h"
#include "intake/intake_int.h"
#include "mapping/mapping.h"

static bool
pattern_match(const char *pattern, struct mg_str value)
{
    return pattern == NULL || strcmp(pattern, "*") == 0 ||
           mg_str_eqz(value, pattern);
}

/* The listener's sender entry for MSH-3.1 app and MSH-4.1 fac, or NULL. */
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

/* MSH-n.1 with its escape sequences decoded (A\T\B is A&B), as the
 * routes and the duplicate key see it; raw bytes stay as sent (their
 * character set may be the sender's, not known yet). */
static struct mg_str
decoded_name(const struct mg_hl7v2_msh *msh, int n, struct mg_arena *a)
{
    struct mg_str raw = mg_hl7v2_msh_comp(msh, n, 1), out;
    enum mg_hl7v2_charset cs = MG_HL7V2_CS_UTF8;

    if (msh->nfield >= 18 &&
        mg_hl7v2_charset_lookup(mg_hl7v2_msh_comp(msh, 18, 1), &cs, NULL) !=
            MG_OK)
        cs = MG_HL7V2_CS_UTF8;
    if (!msh->delims_ok ||
        mg_hl7v2_unescape(raw, &msh->delims, cs, a, &out) != MG_OK)
        return raw;
    return mg_str_trim(out);
}

/* The sender entry for the message's MSH-3.1 and MSH-4.1 (trimmed, as
 * mg_hl7v2_msh_comp() reads them): as sent, else with escape sequences
 * decoded, so that "A&B" in the configuration matches A\T\B. */
static const struct mg_conf_sender *
sender_of(const struct mg_conf_listener *li, const struct mg_hl7v2_msh *msh)
{
    struct mg_str app = mg_hl7v2_msh_comp(msh, 3, 1);
    struct mg_str fac = mg_hl7v2_msh_comp(msh, 4, 1);
    const struct mg_conf_sender *s = find_sender(li, app, fac);
    struct mg_arena a;

    if (s != NULL || !msh->delims_ok ||
        (memchr(app.ptr, msh->delims.esc, app.len) == NULL &&
         memchr(fac.ptr, msh->delims.esc, fac.len) == NULL))
        return s;
    mg_arena_init(&a, 512, 0);
    s = find_sender(li, decoded_name(msh, 3, &a), decoded_name(msh, 4, &a));
    mg_arena_dispose(&a);
    return s;
}

/* The character set a message from sender s (NULL: none matched) on li
 * is read in when its MSH-18 is empty: the sender's, else the listener's
 * default (NULL: ASCII, or UTF-8). */
static const char *
assumed_charset(const struct mg_conf_listener *li,
                const struct mg_conf_sender *s)
{
    return s != NULL && s->charset != NULL ? s->charset : li->default_charset;
}

/* A copy safe for a PostgreSQL text column: printable ASCII and valid
 * UTF-8 kept (a parsed header is UTF-8: 'ÉST' and 'ÈST' are two senders,
 * and two keys), other bytes as '?'; NULL for an empty value when
 * empty_is_null. Values from a message that failed to parse may be in any
 * charset. At most max bytes; a character cut at max becomes '?'. */
static const char *
col_text(struct mg_arena *a, struct mg_str s, size_t max, bool empty_is_null)
{
    const unsigned char *in = (const unsigned char *)s.ptr;
    char *out;
    size_t n = s.len < max ? s.len : max, i = 0, k;

    if (n == 0)
        return empty_is_null ? NULL : "";
    out = mg_arena_alloc(a, n + 1);
    if (out == NULL)
        return NULL;
    while (i < n) {
        if (in[i] >= 0x20 && in[i] < 0x7f) {
            out[i] = (char)in[i];
            i++;
        } else if (in[i] >= 0x80 &&
                   (k = mg_utf8_char_len(s.ptr + i, n - i)) > 0) {
            memcpy(out + i, in + i, k);
            i += k;
        } else {
            out[i++] = '?';
        }
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

/* A new MSH-10 for each ACK: a random number drawn at the first ACK, then
 * a counter. Random, not the start time: two gateway instances started in
 * the same second (one database, one sender) would send the same ids. 18
 * characters, within MSH-10's 20 before v2.7. */
static void
next_ack_id(char out[24])
{
    static unsigned long long counter;
    static uint32_t instance;
    static bool drawn;

    if (!drawn) {
        instance = randombytes_random();
        drawn = true;
    }
    snprintf(out, 24, "MG%08x%08llx", (unsigned)instance,
             ++counter & 0xffffffffull);
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
    /* The parsed message and its mapping, freed once the columns and the
     * answers are rendered (copies in the item's arena): a message waits
     * for its commit with those only, not with parse tables that can be
     * 16 times its size (a field table entry for every '|'). */
    struct mg_arena work;
    struct mg_hl7v2_msg *msg; /* parsed, when it parsed */
    const char *adapter;      /* the route's adapter, when one runs */
    const char *input;        /* its input document */
};

/* The adapter's input document as compact JSON in the item's arena, and
 * the fingerprints of the records it names. Takes in. */
static const char *
adapter_input(struct mg__intake_item *it, json_t *in)
{
    const char *out = NULL;
    char *text = json_dumps(in, JSON_COMPACT);

    if (text != NULL) {
        it->bytes += strlen(text);
        out = mg_arena_strndup(&it->arena, text, strlen(text));
        it->nkeys = mg_adapter_input_keys(in, it->keys, MG__INTAKE_MAX_KEYS);
        it->parts = json_is_array(in);
    }
    free(text);
    json_decref(in);
    return out;
}

/* The mapping stage: the route for the message and its mapped values,
 * turned into the input of the route's adapter, which the batch statement
 * runs. No route: rejected (AR 200). A mapping error: failed (AE), the
 * diag names the field and the target. */
static void
map_stage(struct mg__intake_item *it, const struct mg_conf_listener *li,
          const struct mg_mapping_set *mappings, struct verdict *v)
{
    const struct mg_mapping_route *route;
    const struct mg_adapter *ad;
    json_t *in;

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
    ad = mg_adapter_find(mg_mapping_route_adapter(route));
    if (ad == NULL) { /* the loader's check makes this a set never used */
        mg_diag_at(&v->diag, "MSH", 1, 9, 0);
        mg_diag_set(&v->diag, MG_HL7_ERR_INTERNAL, "route %s names no known "
                    "adapter", mg_mapping_route_name(route));
        v->outcome = MG__INTAKE_FAILED;
        return;
    }
    /* A route may match more than its adapter takes (no message_type, or
     * TYPE^*): an ORU mapped by the ADT adapter would be answered AA and
     * its report never written. Refused as a type the route cannot take. */
    if (!mg_adapter_takes(ad, v->msg->hdr.type, v->msg->hdr.trigger)) {
        mg_diag_at(&v->diag, "MSH", 1, 9, 0);
        mg_diag_set(&v->diag, MG_HL7_ERR_UNSUPPORTED_TYPE,
                    "mapping route %s sends this message type to adapter "
                    "%s, which does not take it",
                    mg_mapping_route_name(route), ad->name);
        v->outcome = MG__INTAKE_REJECTED;
        return;
    }
    if (mg_adapter_map(ad, route, v->msg, &v->work, &in, &v->diag) !=
        MG_OK) {
        if (v->diag.code == 0)
            mg_diag_set(&v->diag, MG_HL7_ERR_INTERNAL, "mapping failed");
        v->outcome = MG__INTAKE_FAILED;
        return;
    }
    v->adapter = ad->name;
    v->input = adapter_input(it, in);
    if (v->input == NULL) {
        mg_diag_set(&v->diag, MG_HL7_ERR_INTERNAL, "out of memory");
        v->outcome = MG__INTAKE_FAILED;
    }
}

static void
judge(struct mg__intake_item *it, const struct mg_conf_listener *li,
      const struct mg_mapping_set *mappings, struct mg_str frame,
      struct mg_hl7v2_msh *msh, struct verdict *v)
{
    struct mg_hl7v2_parse_opts opts = {0};
    struct mg_str type, trigger;
    int code = 0;

    mg_diag_clear(&v->diag);
    v->outcome = MG__INTAKE_STORED;
    if (mg_hl7v2_check(frame, msh, &v->diag) != MG_OK) {
        /* A header refused (say, MSH-12 9.9) still names its sender when
         * MSH-3/4 can be read: the row is stored for that organization,
         * so that the same bytes again are a repeat (the original AR, not
         * a second row and a new AR). The outcome stays the refusal. */
        if (mg_hl7v2_msh_peek(frame, msh) == MG_OK)
            v->sender = sender_of(li, msh);
        goto out_bad;
    }
    v->sender = sender_of(li, msh);
    if (v->sender == NULL) {
        mg_diag_at(&v->diag, "MSH", 1, 4, 1);
        mg_diag_set(&v->diag, MG_HL7_ERR_INTERNAL,
                    "sender not accepted on listener %s", li->name);
        v->outcome = MG__INTAKE_REJECTED;
        return;
    }
    /* The type before the content (HL7 v2.5 2.9.2.1: MSH-9, -11, -12 are
     * checked before the message is processed): a type nobody takes is AR
     * 200/201 even when its content would not parse. MSH-9.1/.2 are three
     * letters or digits (mg_hl7v2_check), so escaping cannot hide them. */
    type = mg_hl7v2_msh_comp(msh, 9, 1);
    trigger = mg_hl7v2_msh_comp(msh, 9, 2);
    if (mg_adapter_for_type(type, trigger) == NULL) {
        code = mg_adapter_for_type(type, MG_STR_NULL) != NULL
                   ? MG_HL7_ERR_UNSUPPORTED_EVENT
                   : MG_HL7_ERR_UNSUPPORTED_TYPE;
        mg_diag_at(&v->diag, "MSH", 1, 9, code == MG_HL7_ERR_UNSUPPORTED_TYPE
                                               ? 1 : 2);
        mg_diag_set(&v->diag, code, "message type %.*s^%.*s is not supported",
                    (int)MG_MIN(type.len, 3), type.ptr,
                    (int)MG_MIN(trigger.len, 3), trigger.ptr);
        v->outcome = MG__INTAKE_REJECTED;
        return;
    }
    opts.default_charset = assumed_charset(li, v->sender);
    if (mg_hl7v2_parse(frame, &opts, &v->work, &v->msg, &v->diag) != MG_OK) {
        v->msg = NULL;
        goto out_bad;
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
 * else the component of the raw MSH field, trimmed as the header summary
 * trims it (mg_hl7v2_msh_comp()). */
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
    return n == 10 ? msh->field[n] : mg_hl7v2_msh_comp(msh, n, comp);
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
    /* Without MSH-18, the set the bytes were read in: the sender's or
     * the listener's default (NULL: ASCII, or UTF-8). */
    if (it->col[COL_CHARSET] == NULL && v->sender != NULL)
        it->col[COL_CHARSET] = assumed_charset(it->listener, v->sender);
}

/* Whether the sender gets an answer for an outcome (ok: stored and
 * mapped), and whether in enhanced mode's codes (CA/CE/CR): the listener's
 * ack_mode original answers every message AA/AE/AR. */
static bool
answer_wanted(const struct mg_conf_listener *li,
              const struct mg_hl7v2_msh *msh, bool ok, bool *enhanced)
{
    enum mg_hl7v2_ack_mode as = MG_HL7V2_ACK_ORIGINAL;
    bool wanted = li->ack_mode == MG_ACK_ORIGINAL ||
                  mg_hl7v2_answer(msh, ok, &as);

    *enhanced = as == MG_HL7V2_ACK_ENHANCED;
    return wanted;
}

/* The answer for an outcome: MSA-1, the ACK (unless enhanced mode says no
 * accept ACK is wanted), and for a failure the error and its location.
 * MG_ENOMEM when a wanted ACK could not be built (col[COL_ACK] is then
 * NULL), else MG_OK. */
static int
answer(struct mg__intake_item *it, const struct mg_hl7v2_msh *msh,
       enum mg__intake_outcome outcome, const struct mg_diag *d)
{
    bool ok = outcome == MG__INTAKE_STORED, enhanced;
    bool wanted = answer_wanted(it->listener, msh, ok, &enhanced);
    enum mg_hl7v2_ack_code code;
    char loc[64];

    if (ok)
        code = enhanced ? MG_HL7V2_CA : MG_HL7V2_AA;
    else if (outcome == MG__INTAKE_REJECTED)
        code = enhanced ? MG_HL7V2_CR : MG_HL7V2_AR;
    else
        code = enhanced ? MG_HL7V2_CE : MG_HL7V2_AE;
    it->col[COL_ACK_CODE] = mg_hl7v2_ack_code_str(code);
    it->col[COL_ACK] = NULL;
    if (wanted)
        it->col[COL_ACK] = build_ack(&it->arena, msh, code, ok ? NULL : d,
                                     NULL);
    if (!ok) {
        it->col[COL_ERROR] = col_text(&it->arena, mg_str_from(d->text),
                                      sizeof(d->text), true);
        location_of(d, loc, sizeof(loc));
        it->col[COL_ERROR_LOCATION] = col_text(&it->arena, mg_str_from(loc),
                                               sizeof(loc), true);
    }
    return wanted && it->col[COL_ACK] == NULL ? MG_ENOMEM : MG_OK;
}

/* The AR/CR of a database that cannot store the message (down, or the
 * queue full): "resend later". */
static void
render_down_ack(struct mg__intake_item *it, const struct mg_hl7v2_msh *msh,
                bool enhanced)
{
    struct mg_diag d;

    mg_diag_clear(&d);
    mg_diag_set(&d, MG_HL7_ERR_INTERNAL, "receiver could not store the "
                "message; resend later");
    it->down_ack.ptr = build_ack(&it->arena, msh,
                                 enhanced ? MG_HL7V2_CR : MG_HL7V2_AR, &d,
                                 &it->down_ack.len);
    if (it->down_ack.ptr == NULL)
        it->down_ack.len = 0;
}

/* The answers prepared besides the verdict's: the AE/CE 205 of a
 * duplicate key with another payload, and the AR/CR of a database that
 * cannot store it. Both are failures: answered as any other failure. */
static void
render_acks(struct mg__intake_item *it, const struct verdict *v,
            const struct mg_hl7v2_msh *msh)
{
    bool enhanced;
    struct mg_diag d;

    if (mg_hl7v2_is_ack(msh))
        return; /* never acknowledge an acknowledgement */
    (void)answer(it, msh, v->outcome, &v->diag); /* a NULL ACK: none sent */
    if (!answer_wanted(it->listener, msh, false, &enhanced))
        return; /* COL_DUP_ACK NULL, down_ack empty: none sent */
    mg_diag_clear(&d);
    mg_diag_at(&d, "MSH", 1, 10, 0);
    mg_diag_set(&d, MG_HL7_ERR_DUPLICATE_KEY, "control id already received "
                "from this sender with a different payload");
    it->col[COL_DUP_ACK] = build_ack(&it->arena, msh,
                                     enhanced ? MG_HL7V2_CE : MG_HL7V2_AE, &d,
                                     NULL);
    render_down_ack(it, msh, enhanced);
}

int
mg__intake_prepare_busy(struct mg__intake_item *it,
                        const struct mg_conf_listener *li, struct mg_str frame)
{
    struct mg_hl7v2_msh msh;
    bool enhanced;

    it->listener = li;
    if (mg_hl7v2_msh_peek(frame, &msh) != MG_OK || mg_hl7v2_is_ack(&msh))
        return MG_OK; /* no answer to build: closed without one */
    if (answer_wanted(li, &msh, false, &enhanced))
        render_down_ack(it, &msh, enhanced);
    return MG_OK;
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
    it->bytes = 2 * frame.len;
    it->col[COL_LISTENER] = li->name;
    it->listener = li;

    mg_arena_init(&v.work, frame.len + 4096, 0);
    judge(it, li, mappings, frame, &msh, &v);
    it->outcome = v.outcome;
    it->col[COL_STATUS] = status[v.outcome];
    it->col[COL_ORG] = v.sender ? v.sender->organization_id : NULL;
    if (v.outcome == MG__INTAKE_STORED && v.input != NULL) {
        it->col[COL_ADAPTER] = v.adapter;
        it->col[COL_INPUT] = v.input;
    }
    render_header(it, &v, &msh);
    render_acks(it, &v, &msh);
    mg_arena_dispose(&v.work);
    return MG_OK;
}

const char *
mg_intake_default_charset(const struct mg_conf_listener *li,
                          struct mg_str frame)
{
    const struct mg_conf_sender *s;
    struct mg_hl7v2_msh msh;

    if (mg_hl7v2_msh_peek(frame, &msh) != MG_OK)
        return NULL;
    s = sender_of(li, &msh);
    return assumed_charset(li, s);
}

int
mg_intake_reject_ack(const struct mg_conf_listener *li, struct mg_str head,
                     const char *text, struct mg_buf *out)
{
    struct mg_hl7v2_msh msh;
    struct mg_arena a;
    struct mg_diag d;
    const char *ack;
    size_t len = 0;
    bool enhanced;
    int rc;

    if (mg_hl7v2_msh_peek(head, &msh) != MG_OK || msh.nfield < 10)
        return MG_EPARSE;
    if (!answer_wanted(li, &msh, false, &enhanced))
        return MG_ENOTFOUND;
    mg_diag_clear(&d);
    mg_diag_set(&d, MG_HL7_ERR_INTERNAL, "%s", text);
    mg_arena_init(&a, 4096, 0);
    ack = build_ack(&a, &msh, enhanced ? MG_HL7V2_CR : MG_HL7V2_AR, &d, &len);
    rc = ack ? mg_buf_append(out, ack, len) : MG_ENOMEM;
    mg_arena_dispose(&a);
    return rc;
}

/* Copies the verdict part of a prepared item into out (replacing an
 * answer out held). MG_OK or MG_ENOMEM. */
static int
copy_verdict(const struct mg__intake_item *it, struct mg_intake_verdict *out)
{
    free(out->ack);
    out->ack = it->col[COL_ACK] != NULL ? strdup(it->col[COL_ACK]) : NULL;
    snprintf(out->ack_code, sizeof(out->ack_code), "%s",
             it->col[COL_ACK_CODE] ? it->col[COL_ACK_CODE] : "");
    snprintf(out->status, sizeof(out->status), "%s", it->col[COL_STATUS]);
    snprintf(out->error, sizeof(out->error), "%s",
             it->col[COL_ERROR] ? it->col[COL_ERROR] : "");
    snprintf(out->location, sizeof(out->location), "%s",
             it->col[COL_ERROR_LOCATION] ? it->col[COL_ERROR_LOCATION] : "");
    return it->col[COL_ACK] != NULL && out->ack == NULL ? MG_ENOMEM : MG_OK;
}

int
mg_intake_refusal(const struct mg_conf_listener *li,
                  const struct mg_mapping_set *set, struct mg_str raw,
                  const char *state, const char *text, const char *target,
                  struct mg_intake_verdict *out)
{
    struct mg__intake_item it;
    int rc;

    memset(&it, 0, sizeof(it));
    mg_arena_init(&it.arena, 2 * raw.len + 4096, 0);
    rc = mg__intake_prepare(&it, li, set, raw);
    if (rc == MG_OK)
        rc = mg__intake_adapter_failed(&it, set, state, text, target);
    if (rc == MG_OK)
        rc = copy_verdict(&it, out);
    mg_arena_dispose(&it.arena);
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
    if (rc == MG_OK)
        rc = copy_verdict(&it, out);
    if (rc == MG_OK) {
        snprintf(out->adapter, sizeof(out->adapter), "%s",
                 it.col[COL_ADAPTER] ? it.col[COL_ADAPTER] : "");
        snprintf(out->organization_id, sizeof(out->organization_id), "%s",
                 it.col[COL_ORG] ? it.col[COL_ORG] : "");
        if (it.col[COL_INPUT] != NULL) {
            out->input = strdup(it.col[COL_INPUT]);
            rc = out->input ? MG_OK : MG_ENOMEM;
        }
    }
    mg_arena_dispose(&it.arena);
    return rc;
}

/* ---- an adapter refused the message ---------------------------------- */

/* HL7 table 0357 for the SQLSTATE an adapter raised (see common.sql). */
static int
adapter_error_code(const char *state)
{
    if (strcmp(state, "MG101") == 0)
        return MG_HL7_ERR_REQUIRED_MISSING;
    if (strcmp(state, "MG204") == 0)
        return MG_HL7_ERR_UNKNOWN_KEY;
    if (strcmp(state, "MG205") == 0)
        return MG_HL7_ERR_DUPLICATE_KEY;
    if (strcmp(state, "MG102") == 0 || strncmp(state, "22", 2) == 0)
        return MG_HL7_ERR_DATA_TYPE;
    if (strcmp(state, "23514") == 0)
        return MG_HL7_ERR_TABLE_VALUE;
    return MG_HL7_ERR_INTERNAL;
}

/* The value of target ("scan.accession_number" or a group field such as
 * "scan_files[2].ed_data") in res, or NULL. */
static const struct mg_mapping_value *
find_target(const struct mg_mapping_result *res, const char *target)
{
    const char *open = strchr(target, '['), *close;
    const struct mg_mapping_group *g;
    char name[64];
    long n;

    if (open == NULL)
        return mg_mapping_result_get(res, target);
    close = strchr(open, ']');
    if (close == NULL || close[1] != '.' || (size_t)(open - target) >= 64)
        return NULL;
    memcpy(name, target, (size_t)(open - target));
    name[open - target] = '\0';
    n = strtol(open + 1, NULL, 10);
    g = mg_mapping_result_group(res, name);
    if (g == NULL || n < 1 || (size_t)n > g->nitem)
        return NULL;
    return mg_mapping_item_get(&g->item[n - 1], close + 2);
}

/* Where target was read in the stored message: the mapping is run again
 * over its bytes (an error path only, so the hot path keeps no
 * locations). The location stays empty when it cannot be found. */
static void
locate_target(struct mg__intake_item *it, const struct mg_mapping_set *set,
              struct mg_str frame, const struct mg_hl7v2_msh *msh,
              const char *target, struct mg_diag *d)
{
    const struct mg_conf_listener *li = it->listener;
    const struct mg_conf_sender *sender;
    struct mg_hl7v2_parse_opts opts = {0};
    const struct mg_mapping_route *route;
    const struct mg_mapping_value *v;
    struct mg_mapping_part *parts;
    struct mg_mapping_result res;
    struct mg_hl7v2_msg *msg;
    struct mg_diag ignored;
    size_t part = 1, nparts;
    int used = 0;

    snprintf(d->path, sizeof(d->path), "%s", target);
    /* "part[2]:scan.accession_number": a part of a split message. */
    if (sscanf(target, "part[%zu]:%n", &part, &used) == 1 && used > 0)
        target += used;
    sender = sender_of(li, msh);
    opts.default_charset = assumed_charset(li, sender);
    if (set == NULL ||
        mg_hl7v2_parse(frame, &opts, &it->arena, &msg, &ignored) != MG_OK ||
        mg_mapping_route_find(set, &msg->hdr, li->name, &route) != MG_OK ||
        mg_mapping_split(route, msg, &it->arena, &parts, &nparts, &ignored) !=
            MG_OK ||
        part < 1 || part > nparts ||
        mg_mapping_apply_part(route, msg, &parts[part - 1], &it->arena, &res,
                              &ignored) != MG_OK)
        return;
    v = find_target(&res, target);
    if (v == NULL || v->at.seq == 0)
        return;
    mg_diag_at(d, v->at.segment, v->at.seq, v->at.field, v->at.comp);
    d->rep = v->at.rep;
    d->sub = v->at.sub;
}

int
mg__intake_adapter_failed(struct mg__intake_item *it,
                          const struct mg_mapping_set *mappings,
                          const char *state, const char *text,
                          const char *target)
{
    const char *hex = it->col[COL_RAW];
    size_t cap = hex ? strlen(hex) / 2 : 0, len = 0;
    unsigned char *raw = mg_arena_alloc(&it->arena, cap ? cap : 1);
    struct mg_hl7v2_msh msh;
    struct mg_diag d;
    struct mg_str frame;

    if (raw == NULL)
        return MG_ENOMEM;
    if (hex == NULL ||
        sodium_hex2bin(raw, cap, hex, 2 * cap, NULL, &len, NULL) != 0)
        len = 0;
    frame = mg_str_n((const char *)raw, len);
    mg_diag_clear(&d);
    if (strncmp(state, "MG", 2) == 0)
        mg_diag_set(&d, adapter_error_code(state), "%s", text);
    else
        mg_diag_set(&d, adapter_error_code(state), "the mapped values could "
                    "not be written: %s (SQLSTATE %s)", text, state);
    it->outcome = MG__INTAKE_FAILED;
    it->col[COL_STATUS] = "failed";
    if (mg_hl7v2_msh_peek(frame, &msh) != MG_OK) {
        it->col[COL_ACK] = NULL; /* cannot happen: it was stored */
        it->col[COL_ERROR] = col_text(&it->arena, mg_str_from(d.text),
                                      sizeof(d.text), true);
        return MG_OK;
    }
    if (target != NULL && target[0] != '\0')
        locate_target(it, mappings, frame, &msh, target, &d);
    /* After the commit, an AE that cannot be built must not leave the
     * AA prepared before: the caller then gives no answer at all. */
    return answer(it, &msh, MG__INTAKE_FAILED, &d);
}
