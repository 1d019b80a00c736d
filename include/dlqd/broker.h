/*
 * broker: the AMQP edge. Two connections: the consumer's consumes the main
 * queue (manual acks, prefetch); the publisher's publishes retry and DLQ
 * copies in confirm mode with `mandatory`; each has a channel for
 * declarations. Two, because RabbitMQ stops reading a connection that
 * publishes during a resource alarm, which would stall our acks too. Driven
 * by the daemon's sd-event loop: the sockets are fds, heartbeats are timers.
 *
 * The guarantee it offers the daemon: a publish callback reports 0 only once
 * the broker confirmed the copy (basic.ack, and no basic.return for it).
 * Anything else (nack, return, channel or connection error) reports < 0, and
 * the original delivery is then still unacked on the broker.
 *
 * When the connection fails, every delivery and pending publish of that
 * connection is void (the broker redelivers the deliveries); the broker
 * reconnects by itself with jittered backoff. The only module using
 * librabbitmq in the daemon.
 *
 * It also reads the DLQ's depth and the age of its head for the metrics
 * (broker_probe_dlq()), on a channel of its own on the publisher connection.
 *
 * Split by concern into src/dlqd/broker*.c (map in src/dlqd/broker_int.h).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "common/config.h"
#include "common/copy.h"

struct broker;
struct broker_props; /* the original AMQP properties, kept for copies */

/* A delivery from the main queue; owned by the daemon until settled. */
struct broker_msg {
	uint64_t tag;
	uint64_t generation; /* the connection it came on */
	bool redelivered;
	char *body; /* NUL-terminated for convenience; len excludes it */
	size_t len;
	/* Over [pipeline] max_message_size: body is NULL, and the bytes are
	 * never held. They go straight into the one DLQ copy broker_publish()
	 * may start for it at once (from the delivery callback); any later
	 * publish of it fails with -ESTALE: requeue it to have it again. */
	bool streamed;
	struct broker *owner; /* counts the body against max_body_memory */
	struct broker_props *props;
	/* The delivery as the copy module reads it (points into body, props). */
	struct copy_source source;
	struct header *headers;
};

struct broker_msg *broker_msg_free(struct broker_msg *m);

struct broker_callbacks {
	/* A new delivery; the callee owns m. */
	void (*delivery)(void *userdata, struct broker_msg *m);
	/* The connection came up (consuming) or went away. */
	void (*connection)(void *userdata, bool up);
};

/* Result of a publish: 0 confirmed; -EIO nacked; -ENOENT returned unroutable
 * (reason in the text); -ECONNRESET the connection went away first. */
typedef void (*broker_confirm_fn)(void *userdata, int r, const char *reason);

/*
 * Copies from c everything it will use ([broker] and [pipeline]): c may be
 * freed as soon as broker_new() returns.
 */
int broker_new(sd_event *e, const struct config *c, const struct broker_callbacks *cb,
	       void *userdata, struct broker **out);
struct broker *broker_free(struct broker *b);
void broker_freep(struct broker **b);

/* Starts connecting (now, then with backoff until it works). */
int broker_start(struct broker *b);
bool broker_is_up(const struct broker *b);
uint64_t broker_generation(const struct broker *b);
/*
 * The topology this broker was started with ([pipeline] queue and the
 * names common/topology derives from it). A reload does not change them:
 * copies must go where the running connections declared them.
 */
const char *broker_queue(const struct broker *b);
/*
 * [pipeline] max_message_size and max_body_memory, from broker_new() and
 * on a reload: bodies over the first are streamed, never held; the bodies
 * held stay under the second (reading from the broker pauses meanwhile).
 */
void broker_set_limits(struct broker *b, uint64_t max_message_size, uint64_t max_body_memory);
/* Body bytes of deliveries held now (for dlqd_body_bytes_held). */
uint64_t broker_body_bytes_held(const struct broker *b);

/* Whether the main queue is a quorum queue (also fixed at broker_new()). */
bool broker_quorum(const struct broker *b);
const char *broker_retry_exchange(const struct broker *b);
const char *broker_dlx(const struct broker *b);

/*
 * "host:port" of the [broker] url node the consumer connection uses (while
 * up) or tries next, as librabbitmq parsed it (an IPv6 host in brackets),
 * for messages, STATUS= and the node label; never the credentials.
 */
const char *broker_endpoint(const struct broker *b);

/* Why the consumer connection last failed (for STATUS=); "" while it is up. */
const char *broker_last_error(const struct broker *b);

/* Settles m. -ESTALE when m came on an earlier connection (nothing sent). */
int broker_ack(struct broker *b, const struct broker_msg *m);
int broker_requeue(struct broker *b, const struct broker_msg *m);

/* Stops deliveries (basic.cancel); what still arrives is requeued at once. */
int broker_stop_consuming(struct broker *b);

/*
 * Publishes c (built by the copy module from orig) as it says: its body,
 * headers, exchange and routing key, with orig's other properties, plus the
 * HDR_PUBLISH_SEQ header that matches a basic.return to its publish;
 * mandatory, in confirm mode. Returns -EAGAIN while the broker blocks
 * publishing (resource alarm). For a streamed orig (see struct broker_msg)
 * c must be its DLQ copy (c->len = orig->len, no body of its own), sent
 * while the body arrives; -ESTALE once that chance is gone. cb runs exactly once, later, from the loop,
 * unless broker_publish_forget() is called first.
 */
int broker_publish(struct broker *b, const struct copy *c, const struct broker_msg *orig,
		   broker_confirm_fn cb, void *userdata, uint64_t *id);
void broker_publish_forget(struct broker *b, uint64_t id);

/*
 * Result of a DLQ probe: r 0 with depth (messages ready in <queue>.dlq) and
 * oldest_usec (CLOCK_REALTIME µs at which its head message was dead-lettered,
 * from x-dlqd-dead-lettered-at or else the timestamp property; 0 when unknown
 * or the DLQ is empty). r < 0: -ENOENT the DLQ does not exist, -EPROTO the
 * broker refused the probe, -ECONNRESET the publisher link was lost first,
 * -EBUSY another client consumes the DLQ (its count is then incomplete, and
 * the probe leaves the head alone).
 */
typedef void (*broker_dlq_fn)(void *userdata, int r, uint64_t depth, uint64_t oldest_usec);

/*
 * Reads the DLQ's depth and the age of its head without consuming it, on a
 * channel of its own on the publisher link, without blocking: cb runs once,
 * later, from the loop. Classic DLQs: basic.get + basic.reject(requeue), so
 * the head keeps its place (and gets the redelivered flag). Quorum DLQs:
 * depth only (a requeue there would count against x-delivery-limit).
 * Returns -ENOTCONN while the publisher link is down, -EAGAIN while the
 * broker blocks it, -EBUSY while a probe is in flight (no callback then).
 */
int broker_probe_dlq(struct broker *b, broker_dlq_fn cb, void *userdata);

/* Overdue heads the delay-lane watch moved from stalled lanes to the main
 * queue since the start (see src/dlqd/broker_lanes.c). */
uint64_t broker_lanes_moved(const struct broker *b);

/* Makes sure the delay lane <queue>.retry.<lane_ms> exists and is bound;
 * -EAGAIN while the broker blocks publishing and the lane is not known. */
int broker_ensure_lane(struct broker *b, uint64_t lane_ms);
