/* Checks of the configuration that need other modules than core (which
 * loads it and must not depend on them): core calls them while loading, so
 * their problems are reported as file:line: key: problem with the rest. */
#include <stdbool.h>

#include "app/app.h"
#include "core/conf.h"
#include "core/error.h"
#include "core/str.h"
#include "hl7v2/hl7v2.h"

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
