/* hl7v2.order -- Imaging orders: scans and their worklist entries (hl7v2_order.sql).
 * The input is the usual one (mg_adapter_input): everything the route maps. */
#include "adapters/adapter.h"

static const char *const accepts[] = {"ORM^O01", "OMI^O23", NULL};

const struct mg_adapter mg_adapter_hl7v2_order = {
    .name = "hl7v2.order",
    .accepts = accepts,
    .to_internal = mg_adapter_input,
    .batch = true,
    .to_outbound = NULL,
};
