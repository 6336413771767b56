/* The gateway's commands: the process that serves (listeners, database
 * pool, signals, drain) and the one-shot administrative commands. main.c
 * only parses arguments and calls these. */
#ifndef MG_APP_APP_H
#define MG_APP_APP_H

#include <stdio.h>

#include "core/conf.h"

/* Runs the gateway until SIGINT/SIGTERM and a drain. Returns the process
 * exit code. */
int mg_app_serve(const struct mg_conf *conf);

/* Creates the demo organization (fixed id) and, when key_file has no key
 * yet, a new API key for it whose token is written to key_file. Idempotent.
 * Returns the process exit code. */
int mg_app_demo_seed(const struct mg_conf *conf, const char *key_file);

/* `medgate map --dry-run [--listener NAME] FILE...`: prints what each message would become
 * under the mapping files of conf->mappings_dir, writing nothing. Returns
 * the process exit code (1 when any message could not be mapped). */
int mg_app_map_dry_run(const struct mg_conf *conf, int nfiles, char **files);

/* `medgate replay (--id UUID | --failed | --all) [--since T] [--limit N]
 * [--dry-run] [--diff]`: runs stored inbound messages through today's
 * checks and mapping files; writes each new outcome unless --dry-run.
 * Returns the process exit code. */
int mg_app_replay(const struct mg_conf *conf, int argc, char **argv);

/* The configured listener called name, or NULL (none, or name NULL). */
const struct mg_conf_listener *mg_app_listener(const struct mg_conf *conf,
                                               const char *name);

/* The configured listener called name; when there is none (a listener
 * gone from the configuration, or name NULL), *scratch made into one that
 * accepts any sender as organization org. For replay and the dry run,
 * which judge a message as the intake would. */
const struct mg_conf_listener *
mg_app_listener_for(const struct mg_conf *conf, const char *name,
                    const char *org, struct mg_conf_listener *scratch);

struct mg_mapping_set;

/* Calls warn with a line for each listener a route's match names that the
 * configuration does not have (a typo such as "ris-esat" would silently
 * leave the route unused, and its senders' messages to the base route);
 * returns how many. */
int mg_app_check_route_listeners(const struct mg_conf *conf,
                                 const struct mg_mapping_set *set,
                                 void (*warn)(const char *line, void *arg),
                                 void *arg);

/* Registers with core the checks of the configuration it cannot make
 * itself (character set names the HL7 codec reads); call before loading. */
void mg_app_register_conf_checks(void);

#define MG_DEMO_ORGANIZATION_ID "00000000-0000-4000-8000-000000000001"

#endif
