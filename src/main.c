/* medgate entry point: parses the command line, loads the configuration and
 * hands over to the command. Everything else lives in the modules. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/adapter.h"
#include "app/app.h"
#include "core/conf.h"
#include "core/error.h"
#include "core/log.h"
#include "mapping/mapping.h"
#include "store/migrate.h"

int mg_mllp_send_main(int argc, char **argv);

static const char usage[] =
    "usage: medgate COMMAND [--config FILE] [options]\n"
    "\n"
    "commands:\n"
    "  serve                 run the gateway (HTTP + MLLP) until SIGTERM\n"
    "  migrate               apply the schema migrations and install the\n"
    "                        adapters' SQL functions (after every upgrade)\n"
    "  config check FILE     validate a configuration file\n"
    "  config reference      print every option as a Markdown table\n"
    "  send [options] FILE…  send HL7 v2 messages over MLLP, print the ACKs\n"
    "                        (medgate send --help)\n"
    "  map --dry-run [--listener NAME] FILE…\n"
    "                        show what messages would become under the\n"
    "                        mapping files (writes nothing); --listener\n"
    "                        tries the routes of that listener too\n"
    "  replay (--id UUID|--failed|--all) [--since T] [--limit N]\n"
    "         [--dry-run] [--diff]\n"
    "                        run stored messages through today's mappings\n"
    "                        (exit 0 all accepted, 1 some still refused,\n"
    "                        2 usage, 3 database or mapping files)\n"
    "  demo-seed --key-file F  create the demo organization and API key\n"
    "  version               print the version\n"
    "  help                  print this text (so does --help after any\n"
    "                        command; it then does nothing else)\n"
    "\n"
    "Without --config, defaults apply; MEDGATE_* variables override any\n"
    "option (e.g. MEDGATE_DATABASE_URL).\n";

/* Removes "NAME FILE" from argv and returns FILE; NULL when NAME is not
 * there. *missing is set when NAME is the last argument (no FILE). */
static const char *
take_option(int *argc, char **argv, const char *name, bool *missing)
{
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], name) != 0)
            continue;
        if (i + 1 == *argc) {
            *missing = true;
            return NULL;
        }
        const char *v = argv[i + 1];
        memmove(&argv[i], &argv[i + 2],
                (size_t)(*argc - i - 1) * sizeof(char *));
        *argc -= 2;
        return v;
    }
    return NULL;
}

/* --help or -h as the command or anywhere after it (before "--"). */
static bool
asks_help(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    return false;
}

/* A command that takes no operands refuses any left over: `serve
 * --confg FILE` must not start with the defaults, nor `migrate --dry-run`
 * migrate. */
static bool
no_operands(int argc, char **argv)
{
    if (argc <= 2)
        return true;
    fprintf(stderr, "medgate %s: unexpected argument %s\n\n%s", argv[1],
            argv[2], usage);
    return false;
}

static int
load_conf(struct mg_conf *conf, const char *path)
{
    int rc;

    mg_conf_defaults(conf);
    rc = path ? mg_conf_load(conf, path, stderr) : mg_conf_apply_env(conf, stderr);
    if (rc != MG_OK)
        return rc;
    if (!mg_log_set_level(conf->log_level)) {
        fprintf(stderr, "%s: log.level: unknown level %s\n",
                path ? path : "(environment)", conf->log_level);
        return MG_ECONF;
    }
    mg_log_set_json(strcmp(conf->log_format, "json") == 0);
    return MG_OK;
}

static void
print_warning(const char *line, void *arg)
{
    (void)arg;
    fprintf(stderr, "warning: %s\n", line);
}

static int
cmd_config(int argc, char **argv)
{
    struct mg_conf conf;
    int rc;

    if (argc >= 3 && strcmp(argv[2], "reference") == 0) {
        mg_conf_write_reference(stdout);
        return 0;
    }
    if (argc < 4 || strcmp(argv[2], "check") != 0) {
        fputs(usage, stderr);
        return 2;
    }
    rc = load_conf(&conf, argv[3]);
    if (rc == MG_OK) {
        /* The mapping folder too: serve refuses to start with a broken
         * set, and the systemd unit runs this check before every start. */
        struct mg_mapping_set *set;

        rc = mg_adapters_load_set(conf.mappings_dir, &set, stderr);
        if (rc == MG_OK) {
            (void)mg_app_check_route_listeners(&conf, set, print_warning,
                                               NULL);
            mg_mapping_set_free(set);
        } else {
            fprintf(stderr, "%s: the mapping files in %s have errors\n",
                    argv[3], conf.mappings_dir);
        }
    }
    mg_conf_dispose(&conf);
    if (rc != MG_OK)
        return 1;
    printf("%s: ok\n", argv[3]);
    return 0;
}

static int
cmd_migrate(const struct mg_conf *conf)
{
    int rc = mg_migrate_run(conf->database_url, conf->schema_dir, stdout,
                            stderr);

    /* The adapters' SQL functions follow the schema they write to. */
    if (rc == MG_OK)
        rc = mg_adapters_install(conf->database_url, stdout, stderr);

    if (rc != MG_OK)
        fprintf(stderr, "migrate: %s\n", mg_strerror(rc));
    return rc == MG_OK ? 0 : 1;
}

int
main(int argc, char **argv)
{
    const char *config, *key_file;
    bool missing = false;
    struct mg_conf conf;
    int code;

    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    mg_app_register_conf_checks();
    if (strcmp(argv[1], "version") == 0) {
        puts("medgate " MG_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "send") == 0)
        return mg_mllp_send_main(argc - 1, argv + 1);
    /* Before anything that acts: `medgate migrate --help` must not migrate. */
    if (strcmp(argv[1], "help") == 0 || asks_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(argv[1], "config") == 0)
        return cmd_config(argc, argv);

    config = take_option(&argc, argv, "--config", &missing);
    key_file = take_option(&argc, argv, "--key-file", &missing);
    if (missing) {
        fprintf(stderr, "medgate %s: --config and --key-file need a FILE\n",
                argv[1]);
        return 2;
    }
    if ((strcmp(argv[1], "serve") == 0 || strcmp(argv[1], "migrate") == 0 ||
         strcmp(argv[1], "demo-seed") == 0) && !no_operands(argc, argv))
        return 2;
    if (load_conf(&conf, config) != MG_OK)
        return 1;
    if (strcmp(argv[1], "serve") == 0)
        code = mg_app_serve(&conf);
    else if (strcmp(argv[1], "migrate") == 0)
        code = cmd_migrate(&conf);
    else if (strcmp(argv[1], "map") == 0 && argc >= 4 &&
             strcmp(argv[2], "--dry-run") == 0)
        code = mg_app_map_dry_run(&conf, argc - 3, argv + 3);
    else if (strcmp(argv[1], "replay") == 0)
        code = mg_app_replay(&conf, argc - 2, argv + 2);
    else if (strcmp(argv[1], "demo-seed") == 0 && key_file != NULL)
        code = mg_app_demo_seed(&conf, key_file);
    else {
        fputs(usage, stderr);
        code = 2;
    }
    mg_conf_dispose(&conf);
    return code;
}
