/* Checks of the configuration that need other modules than core (which
 * loads it and must not depend on them). */
#include <stdio.h>
#include <string.h>

#include "app/app.h"
#include "core/error.h"
#include "core/str.h"
#include "hl7v2/hl7v2.h"

/* A character set the codec cannot read would make every message from the
 * sender (or listener) without MSH-18 an AE "configured character set not
 * supported": a fault of ours, not of the message. Refused at load. */
static bool
charset_ok(const char *name, const char *where, const char *key, FILE *err)
{
    enum mg_hl7v2_charset cs;

    if (name == NULL || mg_hl7v2_charset_lookup(mg_str_from(name), &cs,
                                                NULL) == MG_OK)
        return true;
    fprintf(err, "%s: %s: unknown character set \"%s\" (HL7 table 0211 "
            "names: ASCII, 8859/1 .. 8859/9, 8859/15, UNICODE UTF-8, "
            "CP1252)\n", where, key, name);
    return false;
}

int
mg_app_check_conf(const struct mg_conf *conf, const char *where, FILE *err)
{
    bool ok = true;
    char key[96];

    for (int i = 0; i < conf->nlisteners; i++) {
        const struct mg_conf_listener *li = &conf->listeners[i];

        snprintf(key, sizeof(key), "mllp.listeners[%d].default_charset", i);
        ok &= charset_ok(li->default_charset, where, key, err);
        for (int k = 0; k < li->nsenders; k++) {
            snprintf(key, sizeof(key), "mllp.listeners[%d].senders[%d].charset",
                     i, k);
            ok &= charset_ok(li->senders[k].charset, where, key, err);
        }
    }
    return ok ? MG_OK : MG_ECONF;
}
