/* Schema migrations: numbered SQL files NNNN_name.sql in a folder, applied
 * in order, each in its own transaction, recorded in schema_migrations with
 * a checksum. This is a command-line operation (`medgate migrate`), so it
 * uses blocking libpq and never runs on the event loop. */
#ifndef MG_STORE_MIGRATE_H
#define MG_STORE_MIGRATE_H

#include <stdio.h>

#include "core/compiler.h"

/* The highest migration version found in dir, in *version (0 if none).
 * MG_OK, or MG_EIO/MG_ECONF with a line on err (may be NULL) when the
 * folder cannot be read or a file name is not NNNN_name.sql. */
MG_MUST_CHECK int mg_migrate_latest(const char *dir, int *version, FILE *err);

/* Applies every migration of dir not yet recorded in the database named by
 * conninfo. Progress goes to out (may be NULL), problems to err.
 * MG_OK when the database is current (nothing to do is success),
 * MG_ESCHEMA when the database is newer than dir, an applied file changed
 * (CR LF and LF line ends count as the same) or a file numbered below the
 * highest applied one was never applied, MG_ECONF when a file name is not
 * NNNN_name.sql or a file still to apply holds a NUL byte or a statement
 * that ends or opens a transaction (sql_scan.h; checked before the first
 * is applied), MG_EDB when a statement fails
 * (that migration is rolled back, earlier ones stay), MG_EDBDOWN when the
 * database cannot be reached.
 * Concurrent runs are serialised with an advisory lock. */
MG_MUST_CHECK int mg_migrate_run(const char *conninfo, const char *dir,
                                 FILE *out, FILE *err);

#endif
