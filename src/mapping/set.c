/* The loaded set: its fingerprint for reloads, its routes, and choosing
 * the route for a message (the precedence rule of mapping.h). */
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "mapping/mapping_int.h"

/* ---- fingerprint ----------------------------------------------------- */

static uint64_t
fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Adds the names, sizes and mtimes of dir's *.json files to *sum. The
 * per-file hashes are added, so readdir order does not matter. */
static int
stamp_dir(const char *dir, bool may_miss, uint64_t *sum)
{
    char path[4096];
    struct dirent *e;
    struct stat st;
    uint64_t h;
    size_t n;
    DIR *d = opendir(dir);

    if (d == NULL)
        return may_miss && errno == ENOENT ? MG_OK : MG_ECONF;
    while ((e = readdir(d)) != NULL) {
        n = strlen(e->d_name);
        if (e->d_name[0] == '.' || n <= 5 ||
            strcmp(e->d_name + n - 5, ".json") != 0)
            continue;
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >=
                sizeof(path) ||
            stat(path, &st) != 0)
            continue;
        h = fnv1a(0xcbf29ce484222325ULL, path, strlen(path));
        /* The inode and change time too: a file replaced by a copy of
         * the same size and mtime (cp -p, rsync -t) is a change. */
        h = fnv1a(h, &st.st_ino, sizeof(st.st_ino));
        h = fnv1a(h, &st.st_size, sizeof(st.st_size));
        h = fnv1a(h, &st.st_mtim, sizeof(st.st_mtim));
        h = fnv1a(h, &st.st_ctim, sizeof(st.st_ctim));
        *sum += h;
    }
    closedir(d);
    return MG_OK;
}

int
mg_mapping_dir_stamp(const char *dir, uint64_t *out)
{
    char tables[4096];
    uint64_t sum = 0;
    int rc = stamp_dir(dir, false, &sum);

    if (rc != MG_OK)
        return rc;
    if ((size_t)snprintf(tables, sizeof(tables), "%s/tables", dir) <
        sizeof(tables))
        rc = stamp_dir(tables, true, &sum);
    *out = sum;
    return rc;
}

uint64_t
mg_mapping_set_stamp(const struct mg_mapping_set *set)
{
    return set->stamp;
}

/* ---- routes ---------------------------------------------------------- */

size_t
mg_mapping_set_count(const struct mg_mapping_set *set)
{
    return set->nroute;
}

const struct mg_mapping_route *
mg_mapping_set_route(const struct mg_mapping_set *set, size_t i)
{
    return i < set->nroute ? set->route[i] : NULL;
}

const struct mg_mapping_route *
mg_mapping_route_by_name(const struct mg_mapping_set *set, const char *name)
{
    for (size_t i = 0; i < set->nroute; i++)
        if (strcmp(set->route[i]->name, name) == 0)
            return set->route[i];
    return NULL;
}

const char *
mg_mapping_route_name(const struct mg_mapping_route *route)
{
    return route->name;
}

const char *
mg_mapping_route_adapter(const struct mg_mapping_route *route)
{
    return route->adapter;
}

const char *
mg_mapping_route_file(const struct mg_mapping_route *route)
{
    return route->file;
}

const char *
mg_mapping_route_note(const struct mg_mapping_route *route)
{
    return route->note;
}

const char *
mg_mapping_route_listener(const struct mg_mapping_route *route, size_t i)
{
    return i < route->listeners.n ? route->listeners.v[i] : NULL;
}

/* ---- choosing -------------------------------------------------------- */

static bool
list_has(const struct mg__mapping_strlist *l, struct mg_str s)
{
    if (l->n == 0)
        return true; /* any */
    for (size_t i = 0; i < l->n; i++)
        if (mg_str_eqz(s, l->v[i]))
            return true;
    return false;
}

/* How well hdr's MSH-9 matches the route's types: -1 no match, 0 any,
 * 1 "TYPE^*", 2 "TYPE^TRIGGER". */
static int
type_rank(const struct mg__mapping_strlist *types,
          const struct mg_hl7v2_header *hdr)
{
    int best = -1;

    if (types->n == 0)
        return 0;
    for (size_t i = 0; i < types->n; i++) {
        const char *t = types->v[i];

        if (!mg_str_eq(hdr->type, mg_str_n(t, 3)))
            continue;
        if (strcmp(t + 4, "*") == 0)
            best = MG_MAX(best, 1);
        else if (mg_str_eqz(hdr->trigger, t + 4))
            best = 2;
    }
    return best;
}

int
mg_mapping_route_find(const struct mg_mapping_set *set,
                      const struct mg_hl7v2_header *hdr,
                      const char *listener,
                      const struct mg_mapping_route **out)
{
    const struct mg_mapping_route *best = NULL;
    long best_score = -1, score;
    int rank;

    for (size_t i = 0; i < set->nroute; i++) {
        const struct mg_mapping_route *r = set->route[i];

        rank = type_rank(&r->types, hdr);
        if (rank < 0 || !list_has(&r->apps, hdr->sending_app) ||
            !list_has(&r->facs, hdr->sending_fac))
            continue;
        if (r->listeners.n > 0 &&
            (listener == NULL ||
             !list_has(&r->listeners, mg_str_from(listener))))
            continue;
        /* weight, then type rank, then depth; ties keep the first file. */
        score = (long)r->weight * 3 * 1024 + rank * 1024 + r->depth;
        if (score > best_score) {
            best = r;
            best_score = score;
        }
    }
    if (best == NULL)
        return MG_ENOTFOUND;
    *out = best;
    return MG_OK;
}
