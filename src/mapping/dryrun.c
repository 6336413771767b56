/* The dry run: what a message would become under the current mapping set,
 * printed for an engineer (`medgate map --dry-run FILE`). It writes
 * nothing anywhere else. */
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "mapping/mapping_int.h"

/* s as a JSON string. */
static void
print_json_str(FILE *out, struct mg_str s)
{
    fputc('"', out);
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];

        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", out);
        else if (c == '\r')
            fputs("\\r", out);
        else if (c == '\t')
            fputs("\\t", out);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

static void
print_value(FILE *out, const struct mg_mapping_value *v)
{
    if (v == NULL)
        fputs("(absent)", out);
    else if (v->null)
        fputs("null", out);
    else
        print_json_str(out, v->str);
}

static void
print_group(FILE *out, const struct mg__mapping_rule *ru,
            const struct mg_mapping_group *g)
{
    fprintf(out, "  %s: %zu item%s (each %s)\n", ru->target, g->nitem,
            g->nitem == 1 ? "" : "s", ru->each_path.text);
    for (size_t i = 0; i < g->nitem; i++) {
        const struct mg_mapping_item *it = &g->item[i];

        fprintf(out, "    [%zu] %s[%d]", i + 1, it->segment, it->seq);
        if (it->rep)
            fprintf(out, "-%d[%d]", ru->each_path.field, it->rep);
        fputc(':', out);
        for (size_t k = 0; k < it->nfield; k++) {
            fprintf(out, " %s=", it->field[k].target);
            print_value(out, &it->field[k]);
        }
        fputc('\n', out);
    }
}

static void
print_result(FILE *out, const struct mg_mapping_route *route,
             const struct mg_mapping_result *res)
{
    size_t g = 0;

    fputs("targets:\n", out);
    for (size_t i = 0; i < route->nrule; i++) {
        const struct mg__mapping_rule *ru = route->rule[i];

        if (ru->group) {
            print_group(out, ru, &res->group[g++]);
            continue;
        }
        fprintf(out, "  %s = ", ru->target);
        print_value(out, mg_mapping_result_get(res, ru->target));
        fputc('\n', out);
        if (ru->note)
            fprintf(out, "      # %s\n", ru->note);
    }
    fprintf(out, "unused fields (%zu):", res->nunused);
    for (size_t i = 0; i < res->nunused; i++) {
        const struct mg_mapping_loc *l = &res->unused[i];

        if (l->seq > 1)
            fprintf(out, " %s[%d]-%d", l->segment, l->seq, l->field);
        else
            fprintf(out, " %s-%d", l->segment, l->field);
    }
    fputc('\n', out);
}

int
mg_mapping_dry_run_print(const struct mg_mapping_set *set,
                         const struct mg_hl7v2_msg *msg, const char *listener,
                         FILE *out)
{
    const struct mg_mapping_route *route;
    struct mg_mapping_part *parts = NULL;
    struct mg_mapping_result res;
    struct mg_arena arena, scratch; /* scratch: one part, as in the intake */
    struct mg_diag diag;
    size_t nparts = 0;
    int rc;

    rc = mg_mapping_route_find(set, &msg->hdr, listener, &route);
    if (rc != MG_OK) {
        fprintf(out, "no route for %.*s^%.*s from %.*s/%.*s%s%s\n",
                (int)msg->hdr.type.len, msg->hdr.type.ptr,
                (int)msg->hdr.trigger.len, msg->hdr.trigger.ptr,
                (int)msg->hdr.sending_app.len, msg->hdr.sending_app.ptr,
                (int)msg->hdr.sending_fac.len, msg->hdr.sending_fac.ptr,
                listener ? " on listener " : "", listener ? listener : "");
        return rc;
    }
    fprintf(out, "route: %s (%s)\nadapter: %s\n", route->name, route->file,
            route->adapter);
    if (route->extends)
        fprintf(out, "extends: %s\n", route->extends);
    if (route->note)
        fprintf(out, "note: %s\n", route->note);
    mg_arena_init(&arena, 16384, 0);
    mg_arena_init(&scratch, 16384, 0);
    mg_diag_clear(&diag);
    rc = mg_mapping_split(route, msg, &arena, &parts, &nparts, &diag);
    for (size_t k = 0; rc == MG_OK && k < nparts; k++) {
        if (nparts > 1)
            fprintf(out, "part %zu of %zu (%s[%d]):\n", k + 1, nparts,
                    msg->seg[parts[k].begin].id,
                    msg->seg[parts[k].begin].seq);
        mg_arena_reset(&scratch);
        rc = mg_mapping_apply_part(route, msg, &parts[k], &scratch, &res,
                                   &diag);
        if (rc == MG_OK)
            print_result(out, route, &res);
    }
    if (rc == MG_EMAPPING)
        fprintf(out, "error %d at %s[%d]-%d[%d].%d.%d, target %s: %s\n",
                diag.code, diag.segment, diag.seq, diag.field, diag.rep,
                diag.comp, diag.sub, diag.path, diag.text);
    else if (rc != MG_OK)
        fprintf(out, "error: %s\n", mg_strerror(rc));
    mg_arena_dispose(&scratch);
    mg_arena_dispose(&arena);
    return rc;
}
