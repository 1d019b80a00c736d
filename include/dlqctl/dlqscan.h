/*
 * dlqscan: dlqctl's AMQP edge (the librabbitmq adapter next to broker.c's).
 * It reads a queue in order without removing anything: a consumer with
 * manual acks and no prefetch limit, whose unacked deliveries go back to
 * the queue, in their places, when the connection closes. Only what the
 * caller acks leaves the queue. Replays are published on a second
 * connection in confirm mode, so that waiting for confirms never has to
 * park deliveries, and a publish blocked by a resource alarm never stalls
 * the reading side. Blocking, with bounded timeouts; it never logs.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "dlqctl/dlqrecord.h"

struct dlqscan;

/* One delivery; valid until the next dlqscan_next() or dlqscan_free(). */
struct dlqscan_delivery {
	uint64_t tag;
	struct dlq_message msg;
	struct copy_source source; /* the same message, for the copy module */
	void *priv;
};

/*
 * Connects (amqpconn: URL, password_file, TLS) for reading and, with
 * publish, for replaying. Errors: -errno with a one-line reason in err.
 */
int dlqscan_open(const struct config *c, bool publish, struct dlqscan **out, char *err,
		 size_t errlen);
struct dlqscan *dlqscan_free(struct dlqscan *s);
void dlqscan_freep(struct dlqscan **s);

/* Ready messages and consumers of queue (passive declare); -ENOENT if missing. */
int dlqscan_depth(struct dlqscan *s, const char *queue, uint64_t *messages, uint32_t *consumers,
		  char *err, size_t errlen);

/* Starts consuming queue (manual acks, no prefetch limit). */
int dlqscan_start(struct dlqscan *s, const char *queue, char *err, size_t errlen);

/*
 * Waits up to timeout_usec for the next delivery: 1 and *d, 0 on timeout,
 * -errno when the channel or connection failed (reason in err; e.g. the
 * broker's consumer_timeout closes the channel with 406).
 */
int dlqscan_next(struct dlqscan *s, uint64_t timeout_usec, struct dlqscan_delivery **d, char *err,
		 size_t errlen);

/* Acks one delivery (never `multiple`: unmatched ones stay). */
int dlqscan_ack(struct dlqscan *s, uint64_t tag, char *err, size_t errlen);

/*
 * Publishes c (copy_replay() of d) as it says, with d's other properties,
 * mandatory and persistent, in confirm mode. Returns the publish sequence
 * number (>= 1) or -errno.
 */
int64_t dlqscan_publish(struct dlqscan *s, const struct dlqscan_delivery *d, const struct copy *c,
			char *err, size_t errlen);

enum dlqscan_confirm { DLQSCAN_ACK, DLQSCAN_NACK, DLQSCAN_RETURN };
/* seq covers every pending sequence number <= seq when multiple is set. */
typedef void (*dlqscan_confirm_fn)(void *userdata, enum dlqscan_confirm kind, uint64_t seq,
				   bool multiple);

/*
 * Reads publisher confirms for up to timeout_usec (0: only what has
 * arrived), calling cb for each. A basic.return comes with seq 0: it is
 * for some pending publish. Returns the number of events or -errno.
 */
int dlqscan_confirms(struct dlqscan *s, uint64_t timeout_usec, dlqscan_confirm_fn cb,
		     void *userdata, char *err, size_t errlen);
