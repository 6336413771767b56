/* hl7v2.adt -- Patient administration: create, update and merge patients (hl7v2_adt.sql).
 * The input is the usual one (mg_adapter_input): everything the route maps. */
#include "adapters/adapter.h"

/* A18, A34 and A36 are v2.3's merges, read as A40 (hl7v2_adt.sql). */
static const char *const accepts[] = {"ADT^A01", "ADT^A04", "ADT^A08", "ADT^A28", "ADT^A31",
                                      "ADT^A40", "ADT^A18", "ADT^A34", "ADT^A36", NULL};

const struct mg_adapter mg_adapter_hl7v2_adt = {
    .name = "hl7v2.adt",
    .accepts = accepts,
    .to_internal = mg_adapter_input,
    .batch = true,
    .to_outbound = NULL,
};
