/* Diagnostics helpers. */
#include "core/diag.h"
#include "core/str.h"

#include <stdio.h>
#include <string.h>

void
mg_diag_clear(struct mg_diag *d)
{
    memset(d, 0, sizeof(*d));
}

void
mg_diag_set(struct mg_diag *d, int code, const char *fmt, ...)
{
    va_list ap;

    d->code = code;
    va_start(ap, fmt);
    vsnprintf(d->text, sizeof(d->text), fmt, ap);
    va_end(ap);
    mg_utf8_cut_partial(d->text);
}

void
mg_diag_at(struct mg_diag *d, const char *segment, int seq, int field, int comp)
{
    snprintf(d->segment, sizeof(d->segment), "%s", segment ? segment : "");
    d->seq = seq;
    d->field = field;
    d->comp = comp;
}
