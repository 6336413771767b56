/* Connections of the one-shot commands (oneshot.h). */
#include "store/oneshot.h"

PGconn *
mg_store_connect_once(const char *conninfo, const char *who, FILE *err)
{
    PQconninfoOption *parsed;
    char *why = NULL;
    PGconn *c;

    parsed = PQconninfoParse(conninfo, &why);
    PQfreemem(why);
    if (parsed == NULL) {
        if (err != NULL)
            fprintf(err, "%s: cannot connect to the database: the database "
                    "URL does not parse (check its syntax and "
                    "percent-encoding)\n", who);
        return NULL;
    }
    PQconninfoFree(parsed);
    c = PQconnectdb(conninfo);
    if (PQstatus(c) == CONNECTION_OK)
        return c;
    if (err != NULL)
        fprintf(err, "%s: cannot connect to the database: %s", who,
                PQerrorMessage(c));
    PQfinish(c);
    return NULL;
}
