/* MLLP framing codec: a per-connection state machine fed raw chunks (the
 * design of DESIGN-NOTES.md section 5), an encoder, and the stateless
 * decoder of STYLE.md section 9. Sans I/O: no sockets, no libuv.
 *
 * Unlike the sketch in the design notes, a frame is handed out at its EB,
 * not when the byte after it arrives: a sender that omits the CR and
 * waits for its ACK would otherwise wait forever. The CR, when it comes,
 * is swallowed by the AFTER_EB state. */
#include <stdint.h>
#include <string.h>

#include "core/error.h"
#include "mllp/mllp.h"

enum {
    ST_IDLE,     /* between frames: skip to SB */
    ST_BODY,     /* inside a frame */
    ST_DISCARD,  /* inside a frame we refused: skip to EB */
    ST_AFTER_EB, /* a CR may follow */
};

void
mg_mllp_decoder_init(struct mg_mllp_decoder *d, size_t max_frame)
{
    memset(d, 0, sizeof(*d));
    d->max_frame = max_frame ? max_frame : MG_MLLP_DEFAULT_MAX_FRAME;
    mg_buf_init(&d->buf, d->max_frame);
    d->state = ST_IDLE;
}

void
mg_mllp_decoder_dispose(struct mg_mllp_decoder *d)
{
    mg_buf_dispose(&d->buf);
    d->held = false;
    d->state = ST_IDLE;
}

bool
mg_mllp_decoder_in_frame(const struct mg_mllp_decoder *d)
{
    return d->state == ST_BODY || d->state == ST_DISCARD;
}

size_t
mg_mllp_decoder_partial(const struct mg_mllp_decoder *d)
{
    return d->state == ST_BODY && !d->held ? d->buf.len : 0;
}

/* Index of the first SB or EB in p[i..n), or n. */
static size_t
find_mark(const char *p, size_t i, size_t n)
{
    while (i < n && p[i] != MG_MLLP_EB && p[i] != MG_MLLP_SB)
        i++;
    return i;
}

/* The frame passed max_frame: hand out its head, discard the rest. *i is
 * where the piece p[*i..j) of this chunk began. */
static int
refuse_oversize(struct mg_mllp_decoder *d, const char *p, size_t *i,
                size_t j, struct mg_str *frame)
{
    size_t keep = d->max_frame - d->buf.len;

    if (d->buf.len == 0) {
        *frame = mg_str_n(p + *i, keep);
    } else {
        /* Within buf's maximum by construction; out of memory, the
         * caller gets the head we already have. */
        if (mg_buf_append(&d->buf, p + *i, keep) != MG_OK)
            keep = 0;
        *frame = mg_buf_str(&d->buf);
        d->held = true;
    }
    d->stats.oversize++;
    d->stats.discarded += j - *i - keep;
    *i = j;
    d->state = ST_DISCARD;
    return MG_ETOOBIG;
}

/* The frame ends at the EB in p[j]; its last piece is p[*i..j). */
static int
deliver(struct mg_mllp_decoder *d, const char *p, size_t *i, size_t j,
        size_t n, struct mg_str *frame)
{
    int rc = MG_OK;

    if (d->buf.len == 0) {
        *frame = mg_str_n(p + *i, j - *i);
    } else {
        rc = mg_buf_append(&d->buf, p + *i, j - *i);
        *frame = mg_buf_str(&d->buf);
        d->held = true;
    }
    *i = j + 1;
    d->state = ST_AFTER_EB;
    if (*i < n && p[*i] == MG_MLLP_CR) {
        (*i)++;
        d->state = ST_IDLE;
    }
    if (rc != MG_OK) {
        d->stats.discarded += d->buf.len;
        mg_buf_reset(&d->buf);
        d->held = false;
        return MG_ENOMEM;
    }
    d->stats.frames++;
    return MG_OK;
}

/* Inside a frame: find its end, keep what we have so far. */
static int
step_body(struct mg_mllp_decoder *d, const char *p, size_t *i, size_t n,
          struct mg_str *frame)
{
    size_t j = find_mark(p, *i, n);

    if (d->buf.len + (j - *i) > d->max_frame)
        return refuse_oversize(d, p, i, j, frame);
    if (j < n && p[j] == MG_MLLP_EB)
        return deliver(d, p, i, j, n, frame);
    if (j < n) { /* SB: the sender gave up on this frame and restarted */
        d->stats.restarts++;
        d->stats.discarded += d->buf.len + (j - *i);
        mg_buf_reset(&d->buf);
        *i = j + 1;
        return MG_AGAIN;
    }
    if (mg_buf_append(&d->buf, p + *i, n - *i) != MG_OK) {
        d->stats.discarded += d->buf.len + (n - *i);
        mg_buf_reset(&d->buf);
        d->state = ST_DISCARD;
        *i = n;
        return MG_ENOMEM;
    }
    *i = n;
    return MG_AGAIN;
}

/* Discarding a refused frame up to its EB (or a new SB). */
static void
step_discard(struct mg_mllp_decoder *d, const char *p, size_t *i, size_t n)
{
    size_t j = find_mark(p, *i, n);

    d->stats.discarded += j - *i;
    *i = j;
    if (j == n)
        return;
    *i = j + 1;
    mg_buf_reset(&d->buf);
    d->state = p[j] == MG_MLLP_SB ? ST_BODY : ST_AFTER_EB;
}

static void
step_idle(struct mg_mllp_decoder *d, const char *p, size_t *i, size_t n)
{
    const char *sb = memchr(p + *i, MG_MLLP_SB, n - *i);
    size_t j = sb ? (size_t)(sb - p) : n;

    d->stats.junk += j - *i;
    *i = j;
    if (sb != NULL) {
        *i = j + 1;
        d->state = ST_BODY;
    }
}

/* Frees the storage of a frame that was handed out, when it is big: kept
 * for the connection's life, 256 connections that each once got a 16 MB
 * frame would hold 8 GB (the buffer doubles past it, to 32 MB). */
static void
release_frame(struct mg_mllp_decoder *d)
{
    size_t max = d->buf.max;

    if (d->buf.cap <= MG_MLLP_KEEP_BYTES) {
        mg_buf_reset(&d->buf);
        return;
    }
    mg_buf_dispose(&d->buf);
    mg_buf_init(&d->buf, max);
}

int
mg_mllp_decoder_feed(struct mg_mllp_decoder *d, const char *p, size_t n,
                     size_t *used, struct mg_str *frame)
{
    size_t i = 0;
    int rc;

    if (d->held) {
        release_frame(d);
        d->held = false;
    }
    *frame = mg_str_n("", 0);
    while (i < n) {
        switch (d->state) {
        case ST_IDLE:
            step_idle(d, p, &i, n);
            break;
        case ST_AFTER_EB:
            if (p[i] == MG_MLLP_CR)
                i++;
            else
                d->stats.missing_cr++;
            d->state = ST_IDLE;
            break;
        case ST_DISCARD:
            step_discard(d, p, &i, n);
            break;
        default:
            rc = step_body(d, p, &i, n, frame);
            if (rc != MG_AGAIN) {
                *used = i;
                return rc;
            }
            break;
        }
    }
    *used = n;
    return MG_AGAIN;
}

int
mg_mllp_encode(struct mg_buf *out, struct mg_str payload)
{
    int rc;

    if (payload.len > 0 &&
        (memchr(payload.ptr, MG_MLLP_SB, payload.len) != NULL ||
         memchr(payload.ptr, MG_MLLP_EB, payload.len) != NULL))
        return MG_EINVAL;
    if (payload.len > SIZE_MAX - 3)
        return MG_ETOOBIG;
    rc = mg_buf_reserve(out, payload.len + 3);
    if (rc != MG_OK)
        return rc;
    /* Cannot fail now: the room is reserved. */
    rc = mg_buf_appendc(out, MG_MLLP_SB);
    if (rc == MG_OK)
        rc = mg_buf_append_str(out, payload);
    if (rc == MG_OK)
        rc = mg_buf_append(out, "\x1c\r", 2);
    return rc;
}

int
mg_mllp_decode(const char *in, size_t len, size_t max_frame,
               struct mg_str *frame, size_t *consumed)
{
    const char *eb;
    size_t scan;

    if (len == 0)
        return MG_AGAIN;
    if (in[0] != MG_MLLP_SB)
        return MG_EFRAME;

    /* Look no further than the largest frame we would accept. */
    scan = len - 1 < max_frame + 1 ? len - 1 : max_frame + 1;
    eb = memchr(in + 1, MG_MLLP_EB, scan);
    if (eb == NULL)
        return len - 1 > max_frame ? MG_ETOOBIG : MG_AGAIN;
    if (eb + 1 == in + len)
        return MG_AGAIN; /* have EB, CR not here yet */
    if (eb[1] != '\r')
        return MG_EFRAME;

    frame->ptr = in + 1;
    frame->len = (size_t)(eb - in) - 1;
    *consumed = (size_t)(eb - in) + 2;
    return MG_OK;
}
