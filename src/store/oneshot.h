/* Blocking libpq for the one-shot commands (`medgate migrate`, `demo-seed`,
 * `replay`, the adapters' installer): never on the event loop. */
#ifndef MG_STORE_ONESHOT_H
#define MG_STORE_ONESHOT_H

#include <libpq-fe.h>
#include <stdio.h>

/* Connects to conninfo. NULL on failure, after writing "WHO: cannot
 * connect to the database: WHY" to err (may be NULL). A conninfo that does
 * not parse is reported without libpq's text, which can quote part of it:
 * a password. */
PGconn *mg_store_connect_once(const char *conninfo, const char *who,
                              FILE *err);

#endif
