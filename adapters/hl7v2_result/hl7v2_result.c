/* hl7v2.result -- Radiology results: reports and attachments linked to their scan (hl7v2_result.sql).
 * The input is the usual one (mg_adapter_input): everything the route maps. */
#include "adapters/adapter.h"

static const char *const accepts[] = {"ORU^R01", NULL};

const struct mg_adapter mg_adapter_hl7v2_result = {
    .name = "hl7v2.result",
    .accepts = accepts,
    .to_internal = mg_adapter_input,
    .to_outbound = NULL,
};
