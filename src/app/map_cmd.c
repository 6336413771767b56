/* `medgate map --dry-run [--listener NAME] FILE...`: shows what each
 * message of the files would become under the current mapping files (route,
 * every target with its value or explicit null, repeated groups, and the
 * message fields no rule used) and the FHIR resources those rows would be
 * sent as, without touching the database. First it prints what the intake
 * would answer (its checks of the header, the sender and the type come
 * before any mapping; a message they refuse is not mapped). --listener
 * stands for the MLLP listener the message would have come in on, so that
 * routes matching on a listener can be tried; without it, or when no
 * listener of the configuration has that name, any sender is accepted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/adapter.h"
#include "app/app.h"
#include "core/alloc.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/diag.h"
#include "core/error.h"
#include "hl7v2/hl7v2.h"
#include "intake/intake.h"
#include "mapping/mapping.h"
#include "mllp/client.h"

static const char usage[] =
    "usage: medgate map --dry-run [--listener NAME] FILE...\n"
    "  --listener NAME  route as if the messages came in on the MLLP\n"
    "                   listener NAME (mllp.listeners[].name), so routes\n"
    "                   that match on a listener can be tried (and, when\n"
    "                   the configuration has it, its senders' charsets)\n";

/* The options of one dry run. */
struct dry_run {
    const struct mg_mapping_set *set;
    const char *listener; /* NULL: not from a listener */
    /* configured as listener, else one accepting any sender */
    const struct mg_conf_listener *li;
};

/* The patient_identifiers rows the mapped identifiers would be: the
 * system as medgate_identifier_system (adapters/common.sql) stores it --
 * urn:oid:<CX.4.2> for an ISO authority, else the namespace (CX.4.1),
 * else urn:medgate:unqualified -- so the dry run's FHIR shows the system
 * the database would send, not the mapped namespace. */
static json_t *
stored_identifiers(const json_t *ids)
{
    json_t *rows = json_array(), *id;
    size_t i;

    json_array_foreach(ids, i, id) {
        json_t *row = json_deep_copy(id);
        const char *type = json_string_value(json_object_get(id,
                                                 "universal_id_type"));
        const char *uid = json_string_value(json_object_get(id,
                                                "universal_id"));
        const char *ns = json_string_value(json_object_get(id, "system"));
        if (row == NULL)
            continue;
        if (type != NULL && strcmp(type, "ISO") == 0 && uid != NULL && *uid) {
            json_t *sys = json_sprintf("urn:oid:%s", uid);
            if (sys != NULL)
                json_object_set_new(row, "system", sys);
        } else if (ns == NULL || *ns == '\0') {
            json_object_set_new(row, "system",
                                json_string("urn:medgate:unqualified"));
        }
        json_array_append_new(rows, row);
    }
    return rows;
}

/* The FHIR resources the mapped rows would be: the outbound adapters run on
 * the adapter input, with "new-patient", "new-scan" and "new-report" where
 * the database would assign an id (valid FHIR ids, so the output can go to
 * a validator as it is) and the mapped values where it would store them. */
static void
print_fhir_of(json_t *in)
{
    static const char *const kinds[][3] = {
        {"patient", "fhir.patient", "new-patient"},
        {"scan", "fhir.imaging_study", "new-scan"},
        {"report", "fhir.diagnostic_report", "new-report"}};
    json_t *ids = json_object_get(in, "patient_identifiers");
    struct mg_buf out;

    if (ids != NULL)
        json_object_set_new(in, "identifiers", stored_identifiers(ids));
    mg_buf_init(&out, 0);
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        json_t *row = json_object_get(in, kinds[i][0]);
        if (json_is_object(row))
            json_object_set_new(row, "id", json_string(kinds[i][2]));
    }
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (!json_is_object(json_object_get(in, kinds[i][0])))
            continue;
        out.len = 0;
        if (mg_adapter_find(kinds[i][1])->to_outbound(in, &out, NULL) ==
            MG_OK)
            printf("fhir %s: %.*s\n", kinds[i][1] + 5, (int)out.len, out.ptr);
    }
    mg_buf_dispose(&out);
}

/* The FHIR resources the mapped rows would be: the outbound adapters run on
 * the adapter input (of each part, for a message the route splits), with
 * "new-patient", "new-scan" and "new-report" where the database would
 * assign an id (valid FHIR ids, so the output can go to a validator as it
 * is) and the mapped values where it would store them. */
static void
print_fhir(const struct dry_run *dr, const struct mg_hl7v2_msg *msg,
           struct mg_arena *arena)
{
    const struct mg_mapping_route *route;
    const struct mg_adapter *ad;
    json_t *in, *part;
    size_t i;

    if (mg_mapping_route_find(dr->set, &msg->hdr, dr->listener, &route) !=
            MG_OK ||
        (ad = mg_adapter_find(mg_mapping_route_adapter(route))) == NULL ||
        mg_adapter_map(ad, route, msg, arena, &in, NULL) != MG_OK)
        return;
    if (!json_is_array(in))
        print_fhir_of(in);
    json_array_foreach(in, i, part)
        print_fhir_of(part);
    json_decref(in);
}

/* Prints what the intake would answer raw today. Returns whether it would
 * map it: false for a message refused before mapping (AR: header, sender or
 * type), or when that cannot be told. */
static bool
print_verdict(const struct dry_run *dr, struct mg_str raw)
{
    struct mg_intake_verdict v;
    bool mapped;

    memset(&v, 0, sizeof(v));
    if (mg_intake_judge(dr->li, dr->set, raw, &v) != MG_OK) {
        printf("intake: cannot tell (out of memory)\n");
        free(v.ack);
        free(v.input);
        return false;
    }
    printf("intake: %s, answered %s", v.status,
           v.ack_code[0] ? v.ack_code : "with no ACK");
    if (v.error[0])
        printf(": %s%s%s", v.error, v.location[0] ? " at " : "", v.location);
    putchar('\n');
    mapped = strcmp(v.status, "rejected") != 0;
    if (!mapped)
        printf("not mapped: the intake refuses the message before mapping\n");
    free(v.ack);
    free(v.input);
    return mapped;
}

/* Dry-runs every message of one file; returns how many failed. */
static int
dry_run_file(const struct dry_run *dr, const char *path)
{
    struct mg_hl7v2_parse_opts opts = {0};
    struct mg_mllp_split split;
    struct mg_hl7v2_msg *msg;
    struct mg_arena arena;
    struct mg_diag diag;
    struct mg_buf text;
    int failed = 0, rc;

    mg_buf_init(&text, 256u << 20);
    mg_arena_init(&arena, 64 * 1024, 0);
    rc = mg_buf_read_file(&text, path);
    if (rc != MG_OK) {
        fprintf(stderr, "%s: cannot read: %s\n", path, mg_strerror(rc));
        failed = 1;
        goto out;
    }
    if (mg_mllp_client_split(mg_buf_str(&text), &arena, &split, &diag) !=
        MG_OK) {
        fprintf(stderr, "%s: cannot read messages: %s\n", path, diag.text);
        failed = 1;
        goto out;
    }
    if (split.nmsg == 0) /* as medgate send says it: nothing was tried */
        fprintf(stderr, "%s: warning: no messages in the file\n", path);
    for (size_t i = 0; i < split.nmsg; i++) {
        printf("== %s message %zu\n", path, i + 1);
        if (!print_verdict(dr, split.msg[i])) {
            failed++;
            continue;
        }
        mg_diag_clear(&diag);
        /* Read as the intake reads it: without MSH-18, in the charset the
         * listener's configuration gives its sender. */
        opts.default_charset = mg_intake_default_charset(dr->li, split.msg[i]);
        if (mg_hl7v2_parse(split.msg[i], &opts, &arena, &msg, &diag) != MG_OK) {
            printf("parse error at %s-%d.%d: %s\n", diag.segment, diag.field,
                   diag.comp, diag.text);
            failed++;
            continue;
        }
        if (mg_mapping_dry_run_print(dr->set, msg, dr->listener, stdout) !=
            MG_OK)
            failed++;
        else
            print_fhir(dr, msg, &arena);
    }
out:
    mg_arena_dispose(&arena);
    mg_buf_dispose(&text);
    return failed;
}

/* Takes "--listener NAME" (anywhere, once) out of args, leaving the file
 * names in order. False on a usage error: no name, twice, or no file. */
static bool
take_listener(int *nargs, char **args, const char **listener)
{
    int n = 0;

    for (int i = 0; i < *nargs; i++) {
        if (strcmp(args[i], "--listener") != 0) {
            args[n++] = args[i];
            continue;
        }
        if (i + 1 == *nargs || *listener != NULL)
            return false;
        *listener = args[++i];
    }
    *nargs = n;
    return n > 0;
}

/* files holds the arguments after --dry-run: the options and the files. */
int
mg_app_map_dry_run(const struct mg_conf *conf, int nfiles, char **files)
{
    struct mg_mapping_set *set;
    struct dry_run dr = {NULL, NULL, NULL};
    struct mg_conf_listener any;
    int failed = 0;

    if (!take_listener(&nfiles, files, &dr.listener)) {
        fputs(usage, stderr);
        return 2;
    }
    if (mg_adapters_load_set(conf->mappings_dir, &set, stderr) != MG_OK) {
        fprintf(stderr, "map: the mapping files in %s have errors\n",
                conf->mappings_dir);
        return 1;
    }
    dr.set = set;
    dr.li = mg_app_listener_for(conf, dr.listener, "", &any);
    for (int i = 0; i < nfiles; i++)
        failed += dry_run_file(&dr, files[i]);
    mg_mapping_set_free(set);
    return failed ? 1 : 0;
}
