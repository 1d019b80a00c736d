/*
 * metrics_server: the HTTP/1.1 endpoint that serves the metrics registry on
 * the daemon's sd-event loop. No threads: a nonblocking listening socket and
 * one io source plus one deadline timer per connection.
 *
 * GET /metrics answers metrics_render() as text/plain; version=0.0.4,
 * GET /status.json metrics_render_json(), GET / the status page
 * (status_page.h); HEAD works for all three. Other paths are 404, other
 * methods 405, a request head over 8 KiB 431. Every response carries
 * Content-Length and Connection: close. A connection that has not finished
 * within the deadline (5 s) is closed, whatever it is doing, and at most
 * METRICS_SERVER_CONNECTIONS_MAX are open at once: beyond that the server
 * stops accepting and the kernel backlog holds the rest. The caller logs what
 * metrics_server_new() returns; the server itself logs only the event-loop
 * failures it survives (", ignoring").
 */
#pragma once

#include <systemd/sd-event.h>

#include "dlqd/metrics.h"

#define METRICS_SERVER_CONNECTIONS_MAX 64
#define METRICS_SERVER_HEAD_MAX	       8192
#define METRICS_SERVER_TIMEOUT_USEC    (5 * USEC_PER_SEC)

struct metrics_server;

/*
 * Listens on listen ("host:port" or "[v6]:port" as listen_addr_parse()
 * reads them, the parser config.c checks [metrics] listen with; port 0, which
 * config refuses, picks a free port) and serves m, which must outlive the
 * server. Returns 0, or -EINVAL for a malformed address, -EADDRNOTAVAIL for
 * a host that does not resolve, or the -errno of socket(), bind() or listen()
 * (e.g. -EADDRINUSE).
 */
int metrics_server_new(sd_event *e, const char *listen, const struct metrics *m,
		       struct metrics_server **out);
/* The bound port (useful with port 0). */
int metrics_server_port(const struct metrics_server *s);
/* Connections open now. */
unsigned metrics_server_connections(const struct metrics_server *s);
/* The per-connection deadline for connections accepted from now on (tests). */
void metrics_server_set_timeout_usec(struct metrics_server *s, uint64_t usec);
/* Closes the listening socket and every connection. */
struct metrics_server *metrics_server_free(struct metrics_server *s);
void metrics_server_freep(struct metrics_server **s);
