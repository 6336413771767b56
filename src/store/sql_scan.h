/* Reading migration files as the server would split them into statements,
 * to find what a migration must not hold. Internal to the store. */
#ifndef MG_STORE_SQL_SCAN_H
#define MG_STORE_SQL_SCAN_H

#include <stdbool.h>

#include "core/str.h"

/* Whether text holds a statement that ends or opens a transaction (BEGIN,
 * COMMIT, END, ABORT, ROLLBACK but not ROLLBACK TO a savepoint, START
 * TRANSACTION, PREPARE TRANSACTION): each migration runs in one
 * transaction with its schema_migrations row, and a COMMIT in a file would
 * commit half of it. Comments, string literals, quoted identifiers and
 * dollar-quoted bodies (plpgsql's BEGIN ... END) are skipped, and the
 * BEGIN ATOMIC ... END body of CREATE FUNCTION/PROCEDURE is one statement,
 * as psql splits it. Assumes standard_conforming_strings (the default).
 * When found: true, *what the statement's name (static) and *line the
 * line (from 1) of its first word. */
bool mg__sql_find_tx_control(struct mg_str text, const char **what,
                             int *line);

#endif
