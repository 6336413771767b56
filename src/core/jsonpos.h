/* Lines of keys in JSON text. jansson keeps no positions for values, so a
 * loader that wants to say "file:line: key: problem" finds the line by
 * scanning the text for the quoted key names in order, each after the one
 * before (its parent). That is good enough to point an engineer at the
 * right line; it can be fooled by a key name that also occurs earlier as a
 * string value, and then points a little too early. */
#ifndef MG_CORE_JSONPOS_H
#define MG_CORE_JSONPOS_H

#include <stddef.h>

/* Line (1-based) of the quoted name keys[nkeys - 1], found by searching
 * text for "keys[0]", then for "keys[1]" after it, and so on. A key that
 * is not found stops the search at the last one found (line 1 when none
 * is). Key names are matched as written, without JSON unescaping; a name
 * longer than 255 bytes stops the search too. Returns 0 when text is NULL.
 * No allocation; any thread. */
int mg_jsonpos_line(const char *text, const char *const *keys, size_t nkeys);

/* mg_jsonpos_line() with the keys given as one dotted path, "a.b.c"; a
 * "[n]" suffix on a part (an array index) is ignored. For configuration
 * files, whose key names hold no dots. */
int mg_jsonpos_line_dotted(const char *text, const char *dotted);

#endif
