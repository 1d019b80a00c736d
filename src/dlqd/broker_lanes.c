/*
 * broker_lanes: the delay-lane watch. Every lane this process declared is
 * read now and then, and a lane that stopped expiring its messages gets its
 * overdue head moved to the main queue, as the runbook's remedy does by
 * hand ("Retries stuck in a delay lane").
 *
 * Why: RabbitMQ 3.10's quorum queues can stop expiring a lane whose
 * leadership moved to a restarted node, until the next operation on it.
 * Its retries are kept, not lost, but nobody would run them before another
 * retry happens to enter that lane: for a long lane, or after an outage,
 * that can be never. lanewatch.c decides when a lane is stalled.
 *
 * One lane per tick, round robin, on CH_LANES of the publisher link: a
 * passive queue.declare reads the depth; on a stall, basic.get (with acks)
 * takes the head, which is published to the main queue like a poison-guard
 * copy (copy_redelivery(): bytes and properties as they were) through the
 * confirm-mode publish path, and acked on the lane only once confirmed; any
 * failure rejects it back into the lane. The get is itself an operation on
 * the lane, which is what wakes a stalled one: usually the rest then flows.
 *
 * The watched set outlives reconnects (the stall follows a node restart,
 * which is exactly when links reconnect); a lane that no longer exists is
 * dropped from it. Everything is asynchronous, like the DLQ probe.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "broker_int.h"
#include "common/copy.h"
#include "common/log.h"

/* One lane read per tick. */
#define LANES_TICK_USEC (1 * USEC_PER_SEC)

static void lanes_idle(struct broker *b)
{
	struct lanes *w = &b->lane_watch;

	w->msg = broker_msg_free(w->msg);
	w->state = LANES_IDLE;
}

static void lane_name(const struct broker *b, size_t i, char name[static TOPOLOGY_NAME_MAX])
{
	topology_lane(b->names.queue, b->lane_watch.ms[i], name);
}

/* Forgets lane i (deleted by someone); the next retry through it declares
 * it again and brings it back. */
static void lanes_drop(struct broker *b, size_t i)
{
	struct lanes *w = &b->lane_watch;

	w->n--;
	w->ms[i] = w->ms[w->n];
	w->seen[i] = w->seen[w->n];
	if (w->next >= w->n)
		w->next = 0;
}

int lanes_watch(struct broker *b, uint64_t lane_ms)
{
	struct lanes *w = &b->lane_watch;
	uint64_t *ms;
	struct lane_seen *seen;

	for (size_t i = 0; i < w->n; i++)
		if (w->ms[i] == lane_ms)
			return 0;
	if (w->n >= MAX_LANES)
		return -E2BIG;
	ms = realloc(w->ms, (w->n + 1) * sizeof(*ms));
	if (!ms)
		return -ENOMEM;
	w->ms = ms;
	seen = realloc(w->seen, (w->n + 1) * sizeof(*seen));
	if (!seen)
		return -ENOMEM;
	w->seen = seen;
	w->ms[w->n] = lane_ms;
	lanewatch_reset(&w->seen[w->n], broker_mono_now(b));
	w->n++;
	return 0;
}

/* The moved head's copy is confirmed (r 0) or not: settle the get. */
static void on_moved(void *userdata, int r, const char *reason)
{
	struct broker *b = userdata;
	struct lanes *w = &b->lane_watch;
	struct link *l = &b->publisher;
	char name[TOPOLOGY_NAME_MAX];
	int s;

	if (w->state != LANES_WAIT_CONFIRM)
		return; /* the link went away: the broker put the head back */
	if (!link_usable(l)) {
		lanes_idle(b);
		return;
	}
	lane_name(b, w->cur, name);
	if (r == 0) {
		s = amqp_basic_ack(l->conn, CH_LANES, w->tag, 0);
		w->moved++;
		log_full(LOG_NOTICE, 0, &(struct log_ctx){ .event = "lane-stalled", .attempt = -1 },
			 "moved the overdue head of delay lane %s to %s", name, b->names.queue);
	} else {
		s = amqp_basic_reject(l->conn, CH_LANES, w->tag, 1);
		log_warning("cannot move the overdue head of delay lane %s to %s: %s; it stays "
			    "in the lane",
			    name, b->names.queue, reason ? reason : "publish failed");
	}
	link_pump_soon(l);
	lanewatch_reset(&w->seen[w->cur], broker_mono_now(b));
	lanes_idle(b);
	if (s != AMQP_STATUS_OK)
		link_fail(l, amqpconn_errno(s), "settling a delay lane's head: %s",
			  amqp_error_string2(s));
}

/* The whole head is in: publish it to the main queue. */
static void move_head(struct link *l)
{
	struct broker *b = l->b;
	struct lanes *w = &b->lane_watch;
	const struct header *h;
	uint64_t redeliveries = 0;
	struct copy c;
	int r;

	h = header_find(w->msg->source.headers, w->msg->source.n_headers, HDR_REDELIVERIES);
	if (h && h->kind == HEADER_INT && h->i > 0)
		redeliveries = (uint64_t)h->i;
	r = copy_redelivery(b->names.queue, &w->msg->source, redeliveries, &c);
	if (r >= 0) {
		r = broker_publish(b, &c, w->msg, on_moved, b, NULL);
		copy_done(&c);
	}
	w->msg = broker_msg_free(w->msg); /* the publish copied what it needs */
	w->state = LANES_WAIT_CONFIRM;
	if (r < 0)
		on_moved(b, r, r == -EAGAIN ? "the broker blocks publishing" : "cannot publish");
}

void lanes_method(struct link *l, const amqp_method_t *m)
{
	struct broker *b = l->b;
	struct lanes *w = &b->lane_watch;
	char name[TOPOLOGY_NAME_MAX];
	int r;

	switch (m->id) {
	case AMQP_QUEUE_DECLARE_OK_METHOD: {
		amqp_queue_declare_ok_t *ok = m->decoded;
		uint64_t ttl = w->ms[w->cur] * USEC_PER_MSEC;
		if (w->state != LANES_WAIT_DECLARE)
			break;
		if (!lanewatch_read(&w->seen[w->cur], broker_mono_now(b), ok->message_count, ttl)) {
			lanes_idle(b);
			return;
		}
		lane_name(b, w->cur, name);
		log_full(LOG_WARNING, 0,
			 &(struct log_ctx){ .event = "lane-stalled", .attempt = -1 },
			 "delay lane %s has held %" PRIu32 " messages for %" PRIu64
			 " s, longer than its TTL (%" PRIu64 " ms): taking its head",
			 name, ok->message_count,
			 (broker_mono_now(b) - w->seen[w->cur].since_usec) / USEC_PER_SEC,
			 w->ms[w->cur]);
		amqp_basic_get_t req = { .queue = amqp_cstring_bytes(name), .no_ack = 0 };
		r = amqp_send_method(l->conn, CH_LANES, AMQP_BASIC_GET_METHOD, &req);
		link_pump_soon(l);
		if (r != AMQP_STATUS_OK) {
			link_fail(l, amqpconn_errno(r), "basic.get (delay lane): %s",
				  amqp_error_string2(r));
			return;
		}
		w->state = LANES_WAIT_GET;
		return;
	}
	case AMQP_BASIC_GET_EMPTY_METHOD:
		if (w->state != LANES_WAIT_GET)
			break;
		/* The get woke it, and it expired everything meanwhile. */
		lanewatch_reset(&w->seen[w->cur], broker_mono_now(b));
		lanes_idle(b);
		return;
	case AMQP_BASIC_GET_OK_METHOD:
		if (w->state != LANES_WAIT_GET)
			break;
		w->tag = ((amqp_basic_get_ok_t *)m->decoded)->delivery_tag;
		w->state = LANES_WAIT_CONTENT;
		return;
	case AMQP_CHANNEL_CLOSE_METHOD: {
		amqp_channel_close_t *c = m->decoded;
		amqp_channel_close_ok_t ok = { 0 };
		amqp_send_method(l->conn, CH_LANES, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
		link_pump_soon(l);
		w->channel_open = false;
		if (w->state != LANES_IDLE && w->cur < w->n) {
			lane_name(b, w->cur, name);
			if (c->reply_code == AMQP_NOT_FOUND) {
				log_info("delay lane %s is gone; no longer watching it", name);
				lanes_drop(b, w->cur);
			} else
				log_warning("cannot watch delay lane %s: %u %.*s, ignoring", name,
					    c->reply_code, (int)c->reply_text.len,
					    (char *)c->reply_text.bytes);
		}
		/* A head we held is back in the lane with the channel. */
		lanes_idle(b);
		return;
	}
	default:
		break;
	}
	link_fail(l, -EPROTO, "unexpected AMQP method 0x%08x on the delay-lane channel", m->id);
}

void lanes_header(struct link *l, const amqp_basic_properties_t *p, uint64_t size)
{
	struct lanes *w = &l->b->lane_watch;

	if (w->state != LANES_WAIT_CONTENT || w->msg) {
		link_fail(l, -EPROTO, "unexpected content header on the delay-lane channel");
		return;
	}
	/* A lane holds copies dlqd made of bodies within max_message_size;
	 * held like one delivery, briefly, outside the body-memory count. */
	w->msg = deliver_msg_new(p, size, false);
	if (!w->msg) {
		link_fail(l, -ENOMEM, "out of memory for a %" PRIu64 "-byte lane head", size);
		return;
	}
	w->got = 0;
	if (size == 0)
		move_head(l);
}

void lanes_body(struct link *l, amqp_bytes_t frag)
{
	struct lanes *w = &l->b->lane_watch;

	if (w->state != LANES_WAIT_CONTENT || !w->msg || w->got + frag.len > w->msg->len) {
		link_fail(l, -EPROTO, "unexpected content body on the delay-lane channel");
		return;
	}
	memcpy(w->msg->body + w->got, frag.bytes, frag.len);
	w->got += frag.len;
	if (w->got == w->msg->len)
		move_head(l);
}

void lanes_link_lost(struct broker *b)
{
	b->lane_watch.channel_open = false;
	lanes_idle(b);
}

/* Reads the next lane's depth, when the publisher link can. */
static void lanes_tick(struct broker *b)
{
	struct lanes *w = &b->lane_watch;
	struct link *l = &b->publisher;
	char name[TOPOLOGY_NAME_MAX];
	int r;

	if (w->n == 0 || w->state != LANES_IDLE || !link_usable(l) || b->blocked)
		return;
	if (!w->channel_open) {
		amqp_channel_open(l->conn, CH_LANES);
		r = link_check_rpc(l, "channel.open (delay-lane watch)");
		link_pump_soon(l);
		if (r < 0) {
			link_fail(l, r, "cannot open the delay-lane watch channel");
			return;
		}
		w->channel_open = true;
	}
	w->cur = w->next;
	w->next = (w->next + 1) % w->n;
	lane_name(b, w->cur, name);
	amqp_queue_declare_t req = { .queue = amqp_cstring_bytes(name), .passive = 1 };
	r = amqp_send_method(l->conn, CH_LANES, AMQP_QUEUE_DECLARE_METHOD, &req);
	link_pump_soon(l);
	if (r != AMQP_STATUS_OK) {
		link_fail(l, amqpconn_errno(r), "delay-lane watch: %s", amqp_error_string2(r));
		return;
	}
	w->state = LANES_WAIT_DECLARE;
}

static int on_lanes_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct broker *b = userdata;
	int r;

	lanes_tick(b);
	r = sd_event_source_set_time(s, usec + LANES_TICK_USEC);
	if (r >= 0)
		r = sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
	if (r < 0)
		log_warning_errno(r, "cannot re-arm the delay-lane watch: %m; lanes go unwatched");
	return 0;
}

int lanes_start(struct broker *b)
{
	int r;

	r = sd_event_add_time(b->event, &b->lane_watch.timer, CLOCK_MONOTONIC,
			      broker_mono_now(b) + LANES_TICK_USEC, USEC_PER_MSEC * 100,
			      on_lanes_timer, b);
	if (r < 0)
		return r;
	source_describe(b->lane_watch.timer, "delay-lane watch");
	return 0;
}

void lanes_done(struct broker *b)
{
	struct lanes *w = &b->lane_watch;

	w->timer = sd_event_source_disable_unref(w->timer);
	w->msg = broker_msg_free(w->msg);
	free(w->ms);
	free(w->seen);
	*w = (struct lanes){ 0 };
}

uint64_t broker_lanes_moved(const struct broker *b)
{
	return b->lane_watch.moved;
}
