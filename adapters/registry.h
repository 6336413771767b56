/* The registry the build generates from the adapters' folders
 * (adapters/CMakeLists.txt writes registry.c); for adapter.c only. */
#ifndef MG_ADAPTERS_REGISTRY_H
#define MG_ADAPTERS_REGISTRY_H

#include "adapters/adapter.h"

struct mg__adapter_entry {
    const struct mg_adapter *adapter;
    const char *sql; /* its SQL function, NULL for an outbound-only one */
};

/* Ends with an entry whose adapter is NULL. */
extern const struct mg__adapter_entry mg__adapters[];
extern const char mg__adapters_common_sql[];

#endif
