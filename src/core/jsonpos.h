/* Lines of keys in JSON text. jansson keeps no positions for values, so a
 * loader that wants to say "file:line: key: problem" finds the line by
 * walking the text's structure along the key path: each key a member of
 * the object reached so far, each "[k]" an element of the array. Where the
 * structure has no such member (a caller that names an array's items
 * without an index), the rest of the path is searched in the text, each
 * quoted name after the one before, which can point a little early. */
#ifndef MG_CORE_JSONPOS_H
#define MG_CORE_JSONPOS_H

#include <stddef.h>

/* Line (1-based) of keys[nkeys - 1]: where its quoted name starts, or
 * where the element starts for "[k]" (0-based). A key found neither way
 * stops the search at the last one found (line 1 when none is). Key names
 * are matched as written, without JSON unescaping; a name longer than 255
 * bytes is not found by the text search. Returns 0 when text is NULL. No
 * allocation; any thread. */
int mg_jsonpos_line(const char *text, const char *const *keys, size_t nkeys);

/* mg_jsonpos_line() with the keys given as one dotted path, "a.b[1].c"
 * (at most 30 parts). For configuration files, whose key names hold no
 * dots. */
int mg_jsonpos_line_dotted(const char *text, const char *dotted);

#endif
