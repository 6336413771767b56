/* Checks of the configuration that need other modules than core (which
 * loads it and must not depend on them): core calls them while loading, so
 * their problems are reported as file:line: key: problem with the rest. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "app/app.h"
#include "core/conf.h"
#include "core/error.h"
#include "core/str.h"
#include "hl7v2/hl7v2.h"
#include "mapping/mapping.h"

const struct mg_conf_listener *
mg_app_listener(const struct mg_conf *conf, const char *name)
{
    for (int i = 0; name != NULL && i < conf->nlisteners; i++)
        if (strcmp(conf->listeners[i].name, name) == 0)
            return &conf->listeners[i];
    return NULL;
}

int
mg_app_check_route_listeners(const struct mg_conf *conf,
                             const struct mg_mapping_set *set,
                             void (*warn)(const char *line, void *arg),
                             void *arg)
{
    char line[512];
    const char *name;
    int n = 0;

    for (size_t i = 0; i < mg_mapping_set_count(set); i++) {
        const struct mg_mapping_route *r = mg_mapping_set_route(set, i);

        for (size_t k = 0; (name = mg_mapping_route_listener(r, k)); k++) {
            if (mg_app_listener(conf, name) != NULL)
                continue;
            snprintf(line, sizeof(line), "%s: route %s matches listener "
                     "\"%s\", which is not configured: it takes no message "
                     "from it", mg_mapping_route_file(r),
                     mg_mapping_route_name(r), name);
            warn(line, arg);
            n++;
        }
    }
    return n;
}

static bool
charset_known(const char *name)
{
    enum mg_hl7v2_charset cs;

    return mg_hl7v2_charset_lookup(mg_str_from(name), &cs, NULL) == MG_OK;
}

void
mg_app_register_conf_checks(void)
{
    mg_conf_set_charset_check(charset_known);
}
