/* MLLP (Minimal Lower Layer Protocol, Release 1) framing: SB payload EB CR,
 * SB = 0x0B, EB = 0x1C, CR = 0x0D (DESIGN-NOTES.md section 5).
 *
 * The codec part (codec.c, library mg_mllp_codec) is sans I/O: it sees
 * only bytes, never a socket, and does not include uv.h, so it can be
 * tested on every split point and fuzzed. The listener and client built
 * on it (library mg_mllp) are not part of the codec.
 *
 * A connection owns one struct mg_mllp_decoder and feeds it every chunk
 * it reads; frames come out one at a time (pull API):
 *
 *     while (len > 0) {
 *         rc = mg_mllp_decoder_feed(&c->dec, p, len, &used, &frame);
 *         p += used;
 *         len -= used;
 *         if (rc == MG_AGAIN)
 *             break;                       // all consumed, read more
 *         if (rc == MG_OK)
 *             handle_frame(c, frame);      // may pause: keep p/len
 *         else if (rc == MG_ETOOBIG)
 *             refuse_oversize(c, frame);   // AR from the MSH in frame
 *         else
 *             close_conn(c);               // MG_ENOMEM
 *     }
 *
 * To pause (e.g. until a frame is committed before the next is taken),
 * stop calling feed, keep the read buffer and the p/len still unread, and
 * uv_read_stop(); resume with the same p/len. Bytes are never copied when
 * a frame arrives within one chunk; a frame split across chunks is
 * assembled in one growable buffer capped at max_frame. */
#ifndef MG_MLLP_MLLP_H
#define MG_MLLP_MLLP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/compiler.h"
#include "core/str.h"

#define MG_MLLP_SB '\x0b'
#define MG_MLLP_EB '\x1c'
#define MG_MLLP_CR '\r'

/* A decoder keeps up to this much storage between frames; a bigger
 * frame's is freed once the next read comes. */
#define MG_MLLP_KEEP_BYTES (256u * 1024)

/* Frame size limit when the caller gives 0: base64 PDFs in OBX-5 are big. */
#define MG_MLLP_DEFAULT_MAX_FRAME (16u * 1024 * 1024)

/* Counters for logs and metrics; callers read them, never write them. */
struct mg_mllp_stats {
    uint64_t frames;     /* frames returned with MG_OK */
    uint64_t junk;       /* bytes skipped outside frames (before SB) */
    uint64_t oversize;   /* frames refused with MG_ETOOBIG */
    uint64_t discarded;  /* bytes dropped from oversize or failed frames */
    uint64_t missing_cr; /* EB not followed by CR (tolerated) */
    uint64_t restarts;   /* SB inside a frame: the partial frame dropped */
};

/* Per-connection decoder. Embed it; touch only stats. */
struct mg_mllp_decoder {
    struct mg_mllp_stats stats;
    /* private */
    struct mg_buf buf; /* a frame that spans chunks; max = max_frame */
    size_t max_frame;  /* payload bytes */
    int state;         /* where the state machine stands */
    bool held;         /* buf holds a frame handed out: drop on next feed */
};

/* Initialises d for frames of at most max_frame payload bytes (0: the
 * default). Allocates nothing until a frame spans two chunks. */
void mg_mllp_decoder_init(struct mg_mllp_decoder *d, size_t max_frame);

/* Frees the buffer. d may be initialised again. */
void mg_mllp_decoder_dispose(struct mg_mllp_decoder *d);

/* Runs the state machine over p[0..n) until one frame ends or the input
 * is used up; *used says how many bytes were consumed (always all of
 * them on MG_AGAIN). Bytes before SB are skipped (stats.junk); an EB
 * without a CR after it is accepted (stats.missing_cr); an SB inside a
 * frame restarts the frame (stats.restarts).
 *
 * MG_OK: *frame is one payload, without SB, EB and CR. It is a slice of
 *   p, or of the decoder's buffer when the frame spanned chunks, and is
 *   valid until the next call to feed or dispose (and while p lives).
 * MG_AGAIN: no complete frame in what was fed; feed more.
 * MG_ETOOBIG: the frame passed max_frame. Reported once, as soon as it
 *   is known; *frame holds its first max_frame bytes (the MSH, to build
 *   an AR from). The rest is discarded up to its EB, after which the
 *   decoder is in sync again; nothing else is returned for that frame.
 * MG_ENOMEM: a frame spanning chunks could not be buffered; it is
 *   discarded like an oversize one. Close the connection.
 * Never calls back. One thread at a time per decoder. */
MG_MUST_CHECK int mg_mllp_decoder_feed(struct mg_mllp_decoder *d,
                                       const char *p, size_t n, size_t *used,
                                       struct mg_str *frame);

/* True between an SB and its EB: a frame is arriving (for the per-frame
 * arrival timeout). */
bool mg_mllp_decoder_in_frame(const struct mg_mllp_decoder *d);

/* The bytes of the unfinished frame kept so far (for the log when the
 * connection ends before its end block), 0 when none are kept. */
size_t mg_mllp_decoder_partial(const struct mg_mllp_decoder *d);

/* Appends SB payload EB CR to out. MG_OK; MG_EINVAL when payload holds SB
 * or EB (it would break the framing); MG_ETOOBIG (out's maximum) or
 * MG_ENOMEM, with out unchanged. */
MG_MUST_CHECK int mg_mllp_encode(struct mg_buf *out, struct mg_str payload);

/* Finds one MLLP frame (SB payload EB CR) at the start of in.
 * MG_OK: *frame is the payload, a slice of in; *consumed = bytes on the wire.
 * MG_AGAIN: incomplete. MG_EFRAME: bad framing. MG_ETOOBIG: > max_frame.
 * No I/O, no allocation, no state between calls (STYLE.md section 9;
 * the decoder above is the tolerant, streaming form). */
MG_MUST_CHECK int mg_mllp_decode(const char *in, size_t len, size_t max_frame,
                                 struct mg_str *frame, size_t *consumed);

#endif
