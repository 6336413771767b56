/* A growable byte buffer with a hard maximum (curl's dynbuf "toobig"): every
 * buffer fed from the network has one, so input cannot grow memory without
 * bound. The content is kept NUL-terminated for convenience. */
#ifndef MG_CORE_BUF_H
#define MG_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "core/compiler.h"
#include "core/str.h"

struct mg_buf {
    char *ptr;  /* owned; NULL until the first append */
    size_t len; /* bytes in use */
    size_t cap; /* bytes allocated */
    size_t max; /* appends that would pass this fail with MG_ETOOBIG */
};

/* Initialises an empty buffer (no allocation). max 0 means SIZE_MAX. */
void mg_buf_init(struct mg_buf *b, size_t max);
/* Frees the storage; the buffer may be reused after mg_buf_init. */
void mg_buf_dispose(struct mg_buf *b);
/* Empties the buffer, keeping its storage. */
void mg_buf_reset(struct mg_buf *b);
/* MG_OK, MG_ETOOBIG (nothing appended) or MG_ENOMEM. */
MG_MUST_CHECK int mg_buf_append(struct mg_buf *b, const void *p, size_t n);
MG_MUST_CHECK int mg_buf_append_str(struct mg_buf *b, struct mg_str s);
MG_MUST_CHECK int mg_buf_appendz(struct mg_buf *b, const char *z);
MG_MUST_CHECK int mg_buf_appendc(struct mg_buf *b, char c);
int mg_buf_appendf(struct mg_buf *b, const char *fmt, ...)
    MG_PRINTF(2, 3);
MG_MUST_CHECK int mg_buf_vappendf(struct mg_buf *b, const char *fmt,
                                  va_list ap) MG_PRINTF(2, 0);
/* Makes room for n more bytes without changing len. */
MG_MUST_CHECK int mg_buf_reserve(struct mg_buf *b, size_t n);
/* Drops the first n bytes (n <= len). */
void mg_buf_consume(struct mg_buf *b, size_t n);
/* Appends the whole content of the file at path ("-" is standard input).
 * MG_OK; MG_ETOOBIG when it would pass the buffer's maximum (b keeps what
 * fit); MG_ENOMEM; or a negative errno from open/read. */
MG_MUST_CHECK int mg_buf_read_file(struct mg_buf *b, const char *path);
/* Moves the storage out (caller frees with mg_free); the buffer is empty. */
char *mg_buf_take(struct mg_buf *b, size_t *len);

static inline struct mg_str
mg_buf_str(const struct mg_buf *b)
{
    return (struct mg_str){b->ptr ? b->ptr : "", b->len};
}

#endif
