/*
 * broker: the AMQP edge's object (see include/dlqd/broker.h): built once
 * from a config, it holds two connections ("links") and everything that
 * belongs to them, and hands out what the daemon reads.
 *
 * The consumer link consumes the main queue and acks; the publisher link
 * publishes retry and DLQ copies in confirm mode. They are separate because
 * RabbitMQ stops reading a connection that publishes during a memory or
 * disk alarm: on a shared connection our acks would stall with it, and
 * successful jobs could not be settled.
 *
 * broker_new() copies every value it uses from the config (the connection
 * target, the topology names, heartbeat, prefetch, queue type, declare), so
 * the caller may free the config as soon as it returns; a reload cannot
 * change them anyway (the body limits excepted: broker_set_limits()). The concerns live in broker_link.c, broker_topology.c,
 * broker_probe.c, broker_publish.c and broker_deliver.c (see broker_int.h).
 *
 * Losing the consumer link voids its deliveries (the broker requeues them);
 * losing the publisher link only fails the pending publishes, whose
 * deliveries stay unacked and are published again by the daemon.
 */
#include "dlqd/broker.h"

#include <errno.h>
#include <stdlib.h>

#include "broker_int.h"
#include "common/log.h"

int broker_new(sd_event *e, const struct config *c, const struct broker_callbacks *cb,
	       void *userdata, struct broker **out)
{
	_cleanup_(broker_freep) struct broker *b = NULL;
	char err[320];
	int r;

	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->event = sd_event_ref(e);
	b->cb = *cb;
	b->userdata = userdata;
	b->next_id = 1;
	b->next_seq = 1;
	r = amqpconn_target_init(&b->target, c, err, sizeof(err));
	if (r < 0)
		return log_error_errno(r, "%s", err);
	topology_init(&b->names, c->pipeline.queue);
	b->heartbeat_usec = c->broker.heartbeat_usec;
	b->prefetch = c->broker.prefetch;
	b->quorum = c->pipeline.queue_type == QUEUE_QUORUM;
	b->declare = c->pipeline.declare;
	b->next_stream_seq = 1;
	membound_init(&b->mem, c->pipeline.max_body_memory, c->pipeline.max_message_size);
	b->max_message_size = c->pipeline.max_message_size;

	if ((r = link_init(b, &b->consumer, LINK_CONSUMER)) < 0 ||
	    (r = link_init(b, &b->publisher, LINK_PUBLISHER)) < 0 || (r = deliver_init(b)) < 0)
		return log_error_errno(r, "cannot set up the broker's event sources: %m");
	*out = TAKE_PTR(b);
	return 0;
}

int broker_start(struct broker *b)
{
	int r;

	if (b->started)
		return 0;
	if ((r = link_schedule_reconnect(&b->consumer)) < 0 ||
	    (r = link_schedule_reconnect(&b->publisher)) < 0 || (r = lanes_start(b)) < 0)
		return r;
	b->started = true;
	return 0;
}

struct broker *broker_free(struct broker *b)
{
	if (!b)
		return NULL;
	link_done(&b->consumer);
	link_done(&b->publisher);
	publish_fail_all(b, false);
	lanes_done(b);
	deliver_done(b);
	sd_event_unref(b->event);
	amqpconn_target_done(&b->target);
	free(b->lanes);
	free(b);
	return NULL;
}

void broker_freep(struct broker **b)
{
	*b = broker_free(*b);
}

bool broker_is_up(const struct broker *b)
{
	return link_usable(&b->consumer);
}

bool broker_quorum(const struct broker *b)
{
	return b->quorum;
}

const char *broker_queue(const struct broker *b)
{
	return b->names.queue;
}

const char *broker_retry_exchange(const struct broker *b)
{
	return b->names.retry_x;
}

const char *broker_dlx(const struct broker *b)
{
	return b->names.dlx;
}

const char *broker_endpoint(const struct broker *b)
{
	return b->target.nodes[b->consumer.node].endpoint;
}

const char *broker_last_error(const struct broker *b)
{
	return b->consumer.last_error;
}

void broker_set_limits(struct broker *b, uint64_t max_message_size, uint64_t max_body_memory)
{
	b->max_message_size = max_message_size;
	if (membound_set_limits(&b->mem, max_body_memory, max_message_size) != MEMBOUND_SAME)
		link_set_paused(&b->consumer, b->mem.paused);
}

uint64_t broker_body_bytes_held(const struct broker *b)
{
	return b->mem.held;
}

uint64_t broker_generation(const struct broker *b)
{
	return b->generation;
}
