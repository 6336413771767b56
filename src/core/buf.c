/* Bounded growable buffers. */
#include "core/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"

void
mg_buf_init(struct mg_buf *b, size_t max)
{
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max ? max : SIZE_MAX - 1;
}

void
mg_buf_dispose(struct mg_buf *b)
{
    mg_free(b->ptr);
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
}

void
mg_buf_reset(struct mg_buf *b)
{
    b->len = 0;
    if (b->ptr != NULL)
        b->ptr[0] = '\0';
}

int
mg_buf_reserve(struct mg_buf *b, size_t n)
{
    size_t need, cap;
    char *p;

    /* The last test keeps len + n + 1 from wrapping when max is SIZE_MAX. */
    if (n > b->max || b->len > b->max - n || b->len + n == SIZE_MAX)
        return MG_ETOOBIG;
    need = b->len + n + 1; /* room for the NUL */
    if (need <= b->cap)
        return MG_OK;
    cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    p = mg_realloc(b->ptr, cap);
    if (p == NULL)
        return MG_ENOMEM;
    b->ptr = p;
    b->cap = cap;
    return MG_OK;
}

int
mg_buf_append(struct mg_buf *b, const void *p, size_t n)
{
    int rc = mg_buf_reserve(b, n);

    if (rc != MG_OK)
        return rc;
    if (n > 0)
        memcpy(b->ptr + b->len, p, n);
    b->len += n;
    b->ptr[b->len] = '\0';
    return MG_OK;
}

int
mg_buf_append_str(struct mg_buf *b, struct mg_str s)
{
    return mg_buf_append(b, s.ptr, s.len);
}

int
mg_buf_appendz(struct mg_buf *b, const char *z)
{
    return mg_buf_append(b, z, strlen(z));
}

int
mg_buf_appendc(struct mg_buf *b, char c)
{
    return mg_buf_append(b, &c, 1);
}

int
mg_buf_vappendf(struct mg_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    int n, rc;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return MG_EINVAL;
    rc = mg_buf_reserve(b, (size_t)n);
    if (rc != MG_OK)
        return rc;
    vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return MG_OK;
}

int
mg_buf_appendf(struct mg_buf *b, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = mg_buf_vappendf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void
mg_buf_consume(struct mg_buf *b, size_t n)
{
    if (n >= b->len) {
        mg_buf_reset(b);
        return;
    }
    memmove(b->ptr, b->ptr + n, b->len - n);
    b->len -= n;
    b->ptr[b->len] = '\0';
}

char *
mg_buf_take(struct mg_buf *b, size_t *len)
{
    char *p = b->ptr;

    if (len != NULL)
        *len = b->len;
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

static int
read_fd(struct mg_buf *b, int fd)
{
    char probe;
    ssize_t n;
    size_t room;
    int rc;

    for (;;) {
        room = MG_MIN((size_t)64 * 1024, b->max - b->len);
        if (room == 0) { /* full: fine only if the file ends here */
            n = read(fd, &probe, 1);
            if (n < 0 && errno == EINTR)
                continue;
            return n == 0 ? MG_OK : n > 0 ? MG_ETOOBIG : -errno;
        }
        rc = mg_buf_reserve(b, room);
        if (rc != MG_OK)
            return rc;
        n = read(fd, b->ptr + b->len, room);
        if (n == 0)
            return MG_OK;
        if (n > 0) {
            b->len += (size_t)n;
            b->ptr[b->len] = '\0';
        } else if (errno != EINTR) {
            return -errno;
        }
    }
}

int
mg_buf_read_file(struct mg_buf *b, const char *path)
{
    int fd, rc;

    if (strcmp(path, "-") == 0)
        return read_fd(b, STDIN_FILENO);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    rc = read_fd(b, fd);
    close(fd);
    return rc;
}
