/* libFuzzer target for the mapping stage: what the intake does with every
 * message it parsed, before anything is stored. The input is parsed as an
 * HL7 v2 message; the shipped mapping files (mappings/) pick its route,
 * split it into order groups, read every rule's paths, apply tables and
 * transforms, and the route's adapter turns the values into its input
 * document, whose record fingerprints are then taken. Besides "no crash, no
 * sanitizer report" it checks that
 *  - a mapping error names a code and, when it read the message, a segment;
 *  - the input document is a JSON object, or an array of one object per
 *    part, and serialises;
 *  - mapping the same message twice gives the same document. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "adapters/adapter.h"
#include "core/arena.h"
#include "core/diag.h"
#include "core/error.h"
#include "hl7v2/hl7v2.h"
#include "mapping/mapping.h"

static struct mg_mapping_set *shipped;

/* The document of msg as text (malloc'd), or NULL on a mapping error. */
static char *
map_once(const struct mg_adapter *ad, const struct mg_mapping_route *route,
         const struct mg_hl7v2_msg *msg)
{
    struct mg_arena arena;
    struct mg_diag diag;
    uint64_t keys[16];
    json_t *in = NULL;
    char *text = NULL;
    int rc;

    mg_arena_init(&arena, 16384, 0);
    mg_diag_clear(&diag);
    rc = mg_adapter_map(ad, route, msg, &arena, &in, &diag);
    if (rc == MG_OK) {
        CHECK(json_is_object(in) || json_is_array(in));
        for (size_t i = 0; json_is_array(in) && i < json_array_size(in); i++)
            CHECK(json_is_object(json_array_get(in, i)));
        (void)mg_adapter_input_keys(in, keys, sizeof(keys) / sizeof(keys[0]));
        text = json_dumps(in, JSON_SORT_KEYS | JSON_COMPACT);
        CHECK(text != NULL);
        json_decref(in);
    } else {
        CHECK(rc == MG_EMAPPING || rc == MG_ENOMEM);
        CHECK(rc == MG_ENOMEM || diag.code != 0);
    }
    mg_arena_dispose(&arena);
    return text;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct mg_mapping_route *route;
    const struct mg_adapter *ad;
    struct mg_hl7v2_msg *msg;
    struct mg_arena arena;
    struct mg_diag diag;
    char *first, *second;

    if (shipped == NULL &&
        mg_adapters_load_set(MG_FUZZ_MAPPINGS, &shipped, stderr) != MG_OK)
        abort(); /* the shipped files must load: not a finding */
    mg_arena_init(&arena, size + 4096, 0);
    if (mg_hl7v2_parse(mg_str_n((const char *)data, size), NULL, &arena, &msg,
                       &diag) != MG_OK ||
        mg_mapping_route_find(shipped, &msg->hdr, NULL, &route) != MG_OK ||
        (ad = mg_adapter_find(mg_mapping_route_adapter(route))) == NULL) {
        mg_arena_dispose(&arena);
        return 0;
    }
    first = map_once(ad, route, msg);
    second = map_once(ad, route, msg);
    CHECK((first == NULL) == (second == NULL));
    CHECK(first == NULL || strcmp(first, second) == 0);
    free(first);
    free(second);
    mg_arena_dispose(&arena);
    return 0;
}
