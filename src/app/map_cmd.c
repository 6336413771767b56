/* `medgate map --dry-run FILE...`: shows what each message of the files
 * would become under the current mapping files (route, every target with
 * its value or explicit null, repeated groups, and the message fields no
 * rule used), without touching the database. */
#include <stdio.h>
#include <string.h>

#include "adapters/adapter.h"
#include "app/app.h"
#include "core/alloc.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/diag.h"
#include "core/error.h"
#include "hl7v2/hl7v2.h"
#include "mapping/mapping.h"
#include "mllp/client.h"

/* Dry-runs every message of one file; returns how many failed. */
static int
dry_run_file(const struct mg_mapping_set *set, const char *path)
{
    struct mg_mllp_split split;
    struct mg_hl7v2_msg *msg;
    struct mg_arena arena;
    struct mg_diag diag;
    struct mg_buf text;
    int failed = 0, rc;

    mg_buf_init(&text, 256u << 20);
    mg_arena_init(&arena, 64 * 1024, 0);
    rc = mg_buf_read_file(&text, path);
    if (rc != MG_OK)
        fprintf(stderr, "%s: cannot read: %s\n", path, mg_strerror(rc));
    if (rc != MG_OK ||
        mg_mllp_client_split(mg_buf_str(&text), &arena, &split, &diag) !=
            MG_OK) {
        fprintf(stderr, "%s: cannot read messages\n", path);
        failed = 1;
        goto out;
    }
    for (size_t i = 0; i < split.nmsg; i++) {
        printf("== %s message %zu\n", path, i + 1);
        mg_diag_clear(&diag);
        if (mg_hl7v2_parse(split.msg[i], NULL, &arena, &msg, &diag) != MG_OK) {
            printf("parse error at %s-%d.%d: %s\n", diag.segment, diag.field,
                   diag.comp, diag.text);
            failed++;
            continue;
        }
        if (mg_mapping_dry_run_print(set, msg, stdout) != MG_OK)
            failed++;
    }
out:
    mg_arena_dispose(&arena);
    mg_buf_dispose(&text);
    return failed;
}

int
mg_app_map_dry_run(const struct mg_conf *conf, int nfiles, char **files)
{
    struct mg_mapping_set *set;
    int failed = 0;

    if (mg_adapters_load_set(conf->mappings_dir, &set, stderr) != MG_OK) {
        fprintf(stderr, "map: the mapping files in %s have errors\n",
                conf->mappings_dir);
        return 1;
    }
    for (int i = 0; i < nfiles; i++)
        failed += dry_run_file(set, files[i]);
    mg_mapping_set_free(set);
    return failed ? 1 : 0;
}
