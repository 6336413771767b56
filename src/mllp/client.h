/* The MLLP client behind `medgate send`: cuts message files into messages,
 * sends each one framed over one TCP connection and waits for its ACK
 * before sending the next (MLLP allows one message in flight), and reads
 * the MSA/ERR summary out of the ACK.
 *
 * This is a command-line client, not part of the event loop: the socket is
 * non-blocking, but every call waits (poll() with a deadline) until it is
 * done, so the calls block. The splitter and the ACK reader are sans I/O
 * and can be used on their own.
 *
 * Threads: every function may be called from any thread; a client is used
 * by one thread at a time. */
#ifndef MG_MLLP_CLIENT_H
#define MG_MLLP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/arena.h"
#include "core/compiler.h"
#include "core/diag.h"
#include "core/str.h"

/* ACK frames bigger than this are refused (MG_ETOOBIG): an ACK is an MSH,
 * an MSA and a few ERR segments. */
#define MG_MLLP_CLIENT_MAX_ACK (1024u * 1024)

/* ---- Splitting files into messages (no I/O) -------------------------- */

/* A file cut into messages. Everything is in the arena given to
 * mg_mllp_client_split(). */
struct mg_mllp_split {
    struct mg_str text; /* the normalised input: no BOM, no empty lines,
                           every segment ended by CR */
    struct mg_str *msg; /* slices of text, one per message, each ending
                           in CR; MSH first */
    size_t nmsg;
    bool batch;         /* the input held FHS/BHS/BTS/FTS envelopes */
};

/* Cuts a file's bytes into messages ready to frame.
 *
 * Line endings: when the input holds any CR, segments end at CR or CRLF
 * and a lone LF is data (as mg_hl7v2_parse() reads it); otherwise they end
 * at LF. Every segment is rewritten to end in CR. A UTF-8 byte-order mark
 * at the start of any line (files joined with cat) is dropped, as are
 * empty and blank lines; a BOM followed by "MSH" inside a line starts a
 * new line (cat of a file without a final line end and one with a BOM).
 *
 * Messages: a plain file is cut before every line that starts with "MSH".
 * When a line starts with FHS, BHS, BTS or FTS the file is a batch, cut by
 * mg_hl7v2_batch_split() (which also checks the BTS-1 and FTS-1 counts);
 * the envelope segments are not sent.
 *
 * in is borrowed; out->text is a copy in arena and out->msg points into
 * it. A file without any message gives MG_OK and nmsg 0.
 * MG_OK; MG_EPARSE when a plain file has anything but blank lines before
 * its first MSH, or a batch is malformed (*diag says where, by
 * line or segment, never what it held); MG_ENOMEM. diag may be NULL. */
MG_MUST_CHECK int mg_mllp_client_split(struct mg_str in, struct mg_arena *arena,
                                       struct mg_mllp_split *out,
                                       struct mg_diag *diag);

/* Checks that msg can be sent as one MLLP frame. MLLP has no escape
 * mechanism, so a payload holding a start block byte (SB, 0x0B) or an end
 * block byte (EB, 0x1C) would be cut short or restarted by the receiver:
 * such a message is bad input and must not be sent. MG_OK, or MG_EINVAL
 * with *diag at the first such byte (segment id and occurrence, and a
 * text naming the byte and the segment's number in msg, never what it
 * held). diag may be NULL. No I/O, no allocation. */
MG_MUST_CHECK int mg_mllp_client_check_frame(struct mg_str msg,
                                             struct mg_diag *diag);

/* ---- Reading an ACK (no I/O) ----------------------------------------- */

/* What an acknowledgement said. Slices of the ACK, still escaped. */
struct mg_mllp_ack_info {
    struct mg_str code;       /* MSA-1: AA, AE, AR, CA, CE, CR, or other */
    struct mg_str control_id; /* MSA-2: the MSH-10 it acknowledges */
    struct mg_str err_code;   /* first ERR's ERR-3.1 (v2.5+), or ERR-1.4.1
                                 (before v2.5); empty when absent */
    bool ok;                  /* code is AA or CA */
};

/* Reads MSA-1, MSA-2 and the first ERR code out of an ACK (segments
 * ended by CR, as on the wire; LF is tolerated). Delimiters come from the
 * ACK's MSH. MG_OK, or MG_EPARSE when there is no MSH or no MSA (then *out
 * is all empty). */
MG_MUST_CHECK int mg_mllp_client_read_ack(struct mg_str ack,
                                          struct mg_mllp_ack_info *out);

/* ---- The connection --------------------------------------------------- */

struct mg_mllp_client;

/* Whether port is a port mg_mllp_client_connect() can use: a number from
 * 1 to 65535, or a TCP service name this host knows (its services
 * database; no DNS). Checks nothing else, so a caller can refuse a bad
 * value as a usage error before it opens anything. */
bool mg_mllp_client_port_ok(const char *port);

/* Whether host may name a host: a value no resolver can answer is a
 * usage error, not a network one. A name holds no ':' (so "host:port" and
 * URLs are refused) unless it is an IPv6 address, and no '/', brackets or
 * white space. Reads no DNS. */
bool mg_mllp_client_host_ok(const char *host);

/* Resolves host and port (see mg_mllp_client_port_ok()) and connects to
 * the first address that answers within timeout_ms (each address gets the
 * whole timeout). On MG_OK *out is a new client the caller closes with
 * mg_mllp_client_close(). Returns MG_OK; MG_EINVAL (port is not a port:
 * the caller's input, not the network); MG_ENOTFOUND (host cannot be
 * resolved: unknown name, or no answer from the resolver); MG_ETIMEDOUT;
 * a negative errno (e.g. -ECONNREFUSED) from the last address tried;
 * MG_ENOMEM. */
MG_MUST_CHECK int mg_mllp_client_connect(const char *host, const char *port,
                                         int timeout_ms,
                                         struct mg_mllp_client **out);

/* Sends msg as one MLLP frame (within timeout_ms) and waits for the next
 * frame from the peer, at most timeout_ms once msg is written. Bytes the
 * peer sends
 * outside frames are skipped. On MG_OK *ack is the payload, valid until
 * the next call with c. Returns MG_OK; MG_EINVAL (msg holds SB or EB);
 * MG_ETIMEDOUT; MG_ECLOSED (the peer closed before a whole ACK came);
 * MG_ETOOBIG (the ACK passed MG_MLLP_CLIENT_MAX_ACK); a negative errno
 * from send/recv (e.g. -ECONNRESET); MG_ENOMEM. After any error the
 * connection is out of step: close it. */
MG_MUST_CHECK int mg_mllp_client_exchange(struct mg_mllp_client *c,
                                          struct mg_str msg, int timeout_ms,
                                          struct mg_str *ack);

/* Waits for the next frame from the peer without sending anything, at
 * most timeout_ms (0: only what has already arrived): for a frame that
 * mg_mllp_client_exchange() returned but was not the ACK awaited. Returns
 * as mg_mllp_client_exchange() does, MG_EINVAL aside. */
MG_MUST_CHECK int mg_mllp_client_receive(struct mg_mllp_client *c,
                                         int timeout_ms, struct mg_str *ack);

/* Closes the socket and frees c (NULL is ignored). */
void mg_mllp_client_close(struct mg_mllp_client *c);

/* ---- medgate send ----------------------------------------------------- */

/* Exit codes of `medgate send`. */
enum mg_mllp_send_exit {
    MG_MLLP_SEND_OK = 0,       /* every message got AA or CA */
    MG_MLLP_SEND_NACKED = 1,   /* some message got AE, AR, CE, CR (other) */
    MG_MLLP_SEND_USAGE = 2,    /* bad options, unreadable or malformed file,
                                  a message that cannot be framed (holds
                                  0x0B or 0x1C); nothing was sent */
    MG_MLLP_SEND_NETWORK = 3,  /* host not resolved, connect failed,
                                  timeout, closed, no ACK */
};

/* `medgate send [--host H] [--port P] [--timeout-ms N] [--quiet]
 * [--keep-going] [FILE...]`, argv[0] being "send". ACKs (or, with --quiet,
 * one summary line per message) go to out, errors and warnings to err.
 * Returns an enum mg_mllp_send_exit value. Touches no global state, so
 * tests may call it repeatedly. */
int mg_mllp_send_run(int argc, char **argv, FILE *out, FILE *err);

/* mg_mllp_send_run() on stdout and stderr: the entry point main.c calls
 * for `medgate send`. */
int mg_mllp_send_main(int argc, char **argv);

#endif
