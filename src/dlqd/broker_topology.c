/*
 * broker_topology: the declarations of design.md's topology for [pipeline]
 * queue = Q: the main queue Q, the retry exchange Q.retry (direct), the DLQ
 * exchange Q.dlx (topic) and Q.dlq bound to it with `#`, and the delay
 * lanes Q.retry.<ms>, declared when first needed.
 *
 * A lane is a queue with a queue-level TTL that dead-letters back to Q
 * through the default exchange, so a retry never fans out to other
 * consumers and each lane stays FIFO. Lanes never get x-expires: a lane
 * holding messages must not vanish.
 *
 * Declarations are synchronous RPCs on CH_ADMIN; they are idempotent, so a
 * link that reconnects declares again and heals what was deleted.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "broker_int.h"

static amqp_table_t queue_args(const struct broker *b, amqp_table_entry_t *e, bool lane,
			       uint64_t ttl_ms)
{
	size_t n = 0;

	if (b->quorum)
		e[n++] = amqpconn_entry_str("x-queue-type", "quorum");
	if (lane) {
		e[n++] = amqpconn_entry_int("x-message-ttl", (int64_t)ttl_ms);
		e[n++] = amqpconn_entry_str("x-dead-letter-exchange", "");
		e[n++] = amqpconn_entry_str("x-dead-letter-routing-key", b->names.queue);
		if (b->quorum) {
			/* Classic dead-lettering is at-most-once; quorum lanes can
			 * do better, but only with reject-publish overflow. */
			e[n++] = amqpconn_entry_str("x-dead-letter-strategy", "at-least-once");
			e[n++] = amqpconn_entry_str("x-overflow", "reject-publish");
		}
	}
	return (amqp_table_t){ .num_entries = (int)n, .entries = e };
}

static int declare_queue(struct link *l, const char *name, bool lane, uint64_t ttl_ms)
{
	amqp_table_entry_t e[8];
	char what[TOPOLOGY_NAME_MAX + 32];

	amqp_queue_declare(l->conn, CH_ADMIN, amqp_cstring_bytes(name), 0, 1, 0, 0,
			   queue_args(l->b, e, lane, ttl_ms));
	snprintf(what, sizeof(what), "queue.declare %s", name);
	return link_check_rpc(l, what);
}

static int declare_exchange(struct link *l, const char *name, const char *type)
{
	char what[TOPOLOGY_NAME_MAX + 32];

	amqp_exchange_declare(l->conn, CH_ADMIN, amqp_cstring_bytes(name), amqp_cstring_bytes(type),
			      0, 1, 0, 0, amqp_empty_table);
	snprintf(what, sizeof(what), "exchange.declare %s", name);
	return link_check_rpc(l, what);
}

static int bind_queue(struct link *l, const char *queue, const char *exchange, const char *key)
{
	char what[3 * TOPOLOGY_NAME_MAX];

	amqp_queue_bind(l->conn, CH_ADMIN, amqp_cstring_bytes(queue), amqp_cstring_bytes(exchange),
			amqp_cstring_bytes(key), amqp_empty_table);
	snprintf(what, sizeof(what), "queue.bind %s to %s", queue, exchange);
	return link_check_rpc(l, what);
}

int declare_topology(struct link *l)
{
	struct broker *b = l->b;
	int r;

	if ((r = declare_queue(l, b->names.queue, false, 0)) < 0 ||
	    (r = declare_exchange(l, b->names.retry_x, "direct")) < 0 ||
	    (r = declare_exchange(l, b->names.dlx, "topic")) < 0 ||
	    (r = declare_queue(l, b->names.dlq, false, 0)) < 0 ||
	    (r = bind_queue(l, b->names.dlq, b->names.dlx, "#")) < 0)
		return r;
	return 0;
}

int broker_ensure_lane(struct broker *b, uint64_t lane_ms)
{
	struct link *l = &b->publisher;
	char name[TOPOLOGY_NAME_MAX];
	uint64_t *n;
	int r;

	if (!link_usable(l))
		return -ENOTCONN;
	for (size_t i = 0; i < b->n_lanes; i++)
		if (b->lanes[i] == lane_ms)
			return 0;
	/* The copy cannot be published while blocked anyway, and RabbitMQ may
	 * stop reading a blocked connection: a synchronous declaration could
	 * then stall the loop for the RPC timeout. */
	if (b->blocked)
		return -EAGAIN;
	if (b->n_lanes >= MAX_LANES)
		return -E2BIG;
	topology_lane(b->names.queue, lane_ms, name);
	/* The retry exchange is declared here too, so a lane can be bound
	 * whichever link came up first. */
	r = declare_exchange(l, b->names.retry_x, "direct");
	if (r >= 0)
		r = declare_queue(l, name, true, lane_ms);
	if (r >= 0)
		r = bind_queue(l, name, b->names.retry_x, name);
	link_pump_soon(l);
	if (r < 0) {
		link_fail(l, r, "cannot declare delay lane %s", name);
		return r;
	}
	n = realloc(b->lanes, (b->n_lanes + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	b->lanes = n;
	b->lanes[b->n_lanes++] = lane_ms;
	/* Not fatal: the lane works, only its watch is missing. */
	(void)lanes_watch(b, lane_ms);
	return 0;
}
