/* The MLLP listener: frames HL7 v2 messages off TCP connections (net/),
 * hands each to the durable intake, and writes the ACKs back in the order
 * the messages arrived on that connection, each only after its commit.
 * Several listeners run in one process, each with its own configuration
 * (struct mg_conf_listener: bind, port, senders, ACK mode, limits). */
#ifndef MG_MLLP_SERVER_H
#define MG_MLLP_SERVER_H

#include "core/buf.h"
#include "core/compiler.h"
#include "core/conf.h"

struct uv_loop_s;
struct mg_intake;
struct mg_mllp_server;

/* Starts listening. conf and intake are borrowed and must outlive the
 * server. MG_OK, MG_ENOMEM or a libuv bind error (UV_EADDRINUSE ...). */
MG_MUST_CHECK int mg_mllp_server_open(struct uv_loop_s *loop,
                                      const struct mg_conf_listener *conf,
                                      struct mg_intake *intake,
                                      struct mg_mllp_server **out);

/* The port bound (useful when the configuration asked for 0). */
int mg_mllp_server_port(const struct mg_mllp_server *s);

/* Drain: stop accepting and reading; each connection closes once the ACKs
 * of the messages it already sent are written. */
void mg_mllp_server_drain(struct mg_mllp_server *s);

/* Closes every connection now and frees the server when all are gone;
 * cb(arg) then runs (cb may be NULL). */
void mg_mllp_server_close(struct mg_mllp_server *s, void (*cb)(void *),
                          void *arg);

/* Open connections (for drain). */
unsigned mg_mllp_server_open_connections(const struct mg_mllp_server *s);

/* Appends Prometheus text for this listener. */
void mg_mllp_server_write_metrics(const struct mg_mllp_server *s,
                                  struct mg_buf *out);

#endif
