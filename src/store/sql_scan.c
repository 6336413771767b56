/* A statement scanner for migration files: finds a statement that ends or
 * opens a transaction (see sql_scan.h). */
#include "store/sql_scan.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "core/compiler.h"

/* Each migration runs in one transaction with its schema_migrations row, so
 * a file must not end or open one itself (a COMMIT in it would commit half
 * a migration). Only a statement's first words make such a statement, so
 * the scanner splits statements as the server's lexer would: comments (--
 * and block comments, which nest), string literals ('' doubled, and \
 * escapes in E''), quoted identifiers and dollar-quoted bodies ($$ or
 * $tag$, where plpgsql writes BEGIN ... END) are skipped, and a ';' ends a
 * statement except inside the BEGIN ATOMIC ... END body of CREATE
 * FUNCTION/PROCEDURE, counted as psql does (outside parentheses).
 * Assumes standard_conforming_strings (on since PostgreSQL 9.1). */

#define SCAN_WORDS 4     /* first words of a statement kept */
#define SCAN_WORD_MAX 16 /* longer words are no keyword we look for */

struct scan {
    const char *p, *end;                  /* the text left */
    int line;                             /* of p, from 1 */
    char word[SCAN_WORDS][SCAN_WORD_MAX]; /* upper case; "" = not a word */
    int nwords;                           /* tokens of the statement */
    int first_line;                       /* of its first token */
    int parens, begins;                   /* open ( and BEGIN ... END */
};

static bool
ident_start(unsigned char c)
{
    return isalpha(c) || c == '_' || c >= 0x80;
}

static bool
ident_char(unsigned char c)
{
    return ident_start(c) || isdigit(c) || c == '$';
}

static void
advance(struct scan *s, const char *to)
{
    for (; s->p < to; s->p++)
        s->line += *s->p == '\n';
}

/* From just after the opening quote q to just after the closing one. */
static void
skip_quoted(struct scan *s, char q, bool backslash)
{
    while (s->p < s->end) {
        char c = *s->p;

        advance(s, s->p + 1);
        if (backslash && c == '\\')
            advance(s, MG_MIN(s->p + 1, s->end));
        else if (c == q && (s->p == s->end || *s->p != q))
            return;
        else if (c == q)
            advance(s, s->p + 1); /* a doubled quote */
    }
}

/* From just after the opening slash-star, nesting as PostgreSQL does. */
static void
skip_block_comment(struct scan *s)
{
    int depth = 1;

    while (s->p < s->end && depth > 0) {
        if (s->end - s->p >= 2 && s->p[0] == '/' && s->p[1] == '*')
            depth++;
        else if (s->end - s->p >= 2 && s->p[0] == '*' && s->p[1] == '/')
            depth--;
        else {
            advance(s, s->p + 1);
            continue;
        }
        advance(s, s->p + 2);
    }
}

/* At '$': skips $tag$ ... $tag$ and returns true, or returns false when
 * the '$' opens none ($1 is a parameter). */
static bool
skip_dollar_quoted(struct scan *s)
{
    const char *t = s->p + 1, *q;
    size_t n;

    if (t < s->end && *t != '$' && !ident_start((unsigned char)*t))
        return false;
    while (t < s->end && *t != '$' && ident_char((unsigned char)*t))
        t++;
    if (t == s->end || *t != '$')
        return false;
    n = (size_t)(t + 1 - s->p); /* the whole "$tag$" */
    for (q = t + 1; q + n <= s->end; q++)
        if (memcmp(q, s->p, n) == 0)
            break;
    advance(s, q + n <= s->end ? q + n : s->end);
    return true;
}

static bool
word_is(const struct scan *s, int i, const char *w)
{
    return i < s->nwords && strcmp(s->word[i], w) == 0;
}

/* CREATE [OR REPLACE] FUNCTION|PROCEDURE: may hold BEGIN ATOMIC ... END. */
static bool
in_routine(const struct scan *s)
{
    int k = word_is(s, 1, "OR") && word_is(s, 2, "REPLACE") ? 3 : 1;

    return word_is(s, 0, "CREATE") &&
           (word_is(s, k, "FUNCTION") || word_is(s, k, "PROCEDURE"));
}

/* Counts a token of the statement; w is the word in upper case, or "". */
static void
note_token(struct scan *s, const char *w, int line)
{
    if (s->nwords == 0)
        s->first_line = line;
    if (s->nwords < SCAN_WORDS)
        snprintf(s->word[s->nwords], SCAN_WORD_MAX, "%s", w);
    s->nwords++;
    if (s->parens > 0 || !in_routine(s))
        return;
    /* psql's rule: CASE ... END nests only inside a BEGIN. */
    if (strcmp(w, "BEGIN") == 0 || (strcmp(w, "CASE") == 0 && s->begins > 0))
        s->begins++;
    else if (strcmp(w, "END") == 0 && s->begins > 0)
        s->begins--;
}

/* The statement's name when it ends or opens a transaction, else NULL.
 * ROLLBACK [WORK|TRANSACTION] TO a savepoint stays inside one. */
static const char *
tx_control(const struct scan *s)
{
    static const char *const ends[] = {"BEGIN", "COMMIT", "END", "ABORT"};
    int to = word_is(s, 1, "WORK") || word_is(s, 1, "TRANSACTION") ? 2 : 1;

    for (size_t i = 0; i < MG_ARRAY_LEN(ends); i++)
        if (word_is(s, 0, ends[i]))
            return ends[i];
    if (word_is(s, 0, "ROLLBACK") && !word_is(s, to, "TO"))
        return "ROLLBACK";
    if (word_is(s, 1, "TRANSACTION") && word_is(s, 0, "START"))
        return "START TRANSACTION";
    if (word_is(s, 1, "TRANSACTION") && word_is(s, 0, "PREPARE"))
        return "PREPARE TRANSACTION";
    return NULL;
}

/* Reads the word or number at s->p into w (upper case, "" when too
 * long). A '$' continues a word (a$b is one identifier), not a number. */
static void
take_word(struct scan *s, char w[SCAN_WORD_MAX])
{
    const char *from = s->p;
    bool number = isdigit((unsigned char)*from);
    size_t n = 0;

    while (s->p < s->end && ident_char((unsigned char)*s->p) &&
           !(number && *s->p == '$'))
        s->p++;
    if ((size_t)(s->p - from) < SCAN_WORD_MAX)
        for (; from + n < s->p; n++)
            w[n] = (char)toupper((unsigned char)from[n]);
    w[n] = '\0';
}

/* Scans one token or statement end; false at the end of the text. */
static bool
scan_token(struct scan *s)
{
    char w[SCAN_WORD_MAX];
    int line = s->line;
    char c = *s->p;

    if (ident_start((unsigned char)c) || isdigit((unsigned char)c)) {
        take_word(s, w);
        if (strcmp(w, "E") == 0 && s->p < s->end && *s->p == '\'') {
            advance(s, s->p + 1);
            skip_quoted(s, '\'', true);
            w[0] = '\0';
        }
        note_token(s, w, line);
    } else if (c == '-' && s->end - s->p >= 2 && s->p[1] == '-') {
        while (s->p < s->end && *s->p != '\n' && *s->p != '\r')
            s->p++;
    } else if (c == '/' && s->end - s->p >= 2 && s->p[1] == '*') {
        advance(s, s->p + 2);
        skip_block_comment(s);
    } else if (c == '\'' || c == '"') {
        advance(s, s->p + 1);
        skip_quoted(s, c, false);
        note_token(s, "", line);
    } else if (c == '$' && skip_dollar_quoted(s)) {
        note_token(s, "", line);
    } else if (c == ';' && s->begins == 0) {
        return false; /* the statement ends */
    } else {
        s->parens += c == '(';
        s->parens -= c == ')' && s->parens > 0;
        if (!isspace((unsigned char)c))
            note_token(s, "", line);
        advance(s, s->p + 1);
    }
    return true;
}

bool
mg__sql_find_tx_control(struct mg_str text, const char **what, int *line)
{
    struct scan s = {.p = text.ptr, .end = text.ptr + text.len, .line = 1};

    while (s.p < s.end) {
        while (s.p < s.end && scan_token(&s))
            ;
        *what = tx_control(&s);
        if (*what != NULL) {
            *line = s.first_line;
            return true;
        }
        memset(s.word, 0, sizeof(s.word));
        s.nwords = s.parens = s.begins = 0;
        if (s.p < s.end)
            advance(&s, s.p + 1); /* the ';' */
    }
    return false;
}
