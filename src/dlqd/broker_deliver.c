/*
 * broker_deliver: deliveries from the main queue on the consumer link, from
 * the content header that starts one to its ack or requeue.
 *
 * A delivery becomes a struct broker_msg that owns its body and a deep copy
 * of its properties (a retry or DLQ copy keeps them), and its tag is tracked
 * until the daemon settles it. Acks are batched: an ack is only recorded,
 * and a run of finished deliveries at the front leaves as one `multiple`
 * basic.ack when the loop is idle or a quarter of prefetch has finished;
 * the finished ones behind a running delivery follow in the same write
 * (common/amqpwire.h: one send() per flush over plain TCP).
 * A requeue (basic.nack with requeue) goes out at once.
 *
 * Body memory is bounded ([pipeline] max_body_memory, dlqd/membound.h):
 * every body allocated here counts until its broker_msg is freed, and the
 * consumer link stops reading while too much is held. A body over
 * max_message_size is never allocated at all (broker_stream.c).
 *
 * Losing the consumer link voids every delivery of that connection: the
 * broker requeues them, and a settle of one returns -ESTALE.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "broker_int.h"
#include "common/amqpmsg.h"
#include "common/amqpwire.h"

static void body_bytes(struct broker *b, enum membound_change c)
{
	if (c != MEMBOUND_SAME)
		link_set_paused(&b->consumer, c == MEMBOUND_PAUSE);
}

struct broker_msg *broker_msg_free(struct broker_msg *m)
{
	if (!m)
		return NULL;
	if (m->owner)
		body_bytes(m->owner, membound_release(&m->owner->mem, m->len));
	if (m->props) {
		empty_amqp_pool(&m->props->pool);
		free(m->props);
	}
	free(m->headers);
	free(m->body);
	free(m);
	return NULL;
}

static amqp_bytes_t pool_dup(amqp_pool_t *pool, amqp_bytes_t src)
{
	amqp_bytes_t out = { 0, NULL };

	if (src.len == 0)
		return out;
	amqp_pool_alloc_bytes(pool, src.len, &out);
	if (out.bytes)
		memcpy(out.bytes, src.bytes, src.len);
	else
		out.len = 0;
	return out;
}

/* Deep-copies properties out of the frame pool, which is reused per frame. */
static struct broker_props *props_clone(const amqp_basic_properties_t *src)
{
	struct broker_props *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	/* A job's properties are a few hundred bytes; what is bigger takes a
	 * block of its own. Prefetch of these are held at once. */
	init_amqp_pool(&p->pool, 512);
	p->p = *src;
	/* Only fields whose flag is set hold anything; the rest is garbage. */
#define DUP(field, flag)                                                     \
	p->p.field = (src->_flags & (flag)) ? pool_dup(&p->pool, src->field) \
					    : (amqp_bytes_t){ 0, NULL }
	DUP(content_type, AMQP_BASIC_CONTENT_TYPE_FLAG);
	DUP(content_encoding, AMQP_BASIC_CONTENT_ENCODING_FLAG);
	DUP(correlation_id, AMQP_BASIC_CORRELATION_ID_FLAG);
	DUP(reply_to, AMQP_BASIC_REPLY_TO_FLAG);
	DUP(expiration, AMQP_BASIC_EXPIRATION_FLAG);
	DUP(message_id, AMQP_BASIC_MESSAGE_ID_FLAG);
	DUP(type, AMQP_BASIC_TYPE_FLAG);
	DUP(user_id, AMQP_BASIC_USER_ID_FLAG);
	DUP(app_id, AMQP_BASIC_APP_ID_FLAG);
	DUP(cluster_id, AMQP_BASIC_CLUSTER_ID_FLAG);
#undef DUP
	p->p.headers = (amqp_table_t){ 0, NULL };
	if ((src->_flags & AMQP_BASIC_HEADERS_FLAG) &&
	    amqp_table_clone(&src->headers, &p->p.headers, &p->pool) != AMQP_STATUS_OK) {
		empty_amqp_pool(&p->pool);
		free(p);
		return NULL;
	}
	return p;
}

struct broker_msg *deliver_msg_new(const amqp_basic_properties_t *p, uint64_t size, bool streamed)
{
	struct broker_msg *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->len = size;
	m->streamed = streamed;
	m->body = streamed ? NULL : malloc(size + 1);
	m->props = props_clone(p);
	if ((!streamed && !m->body) || !m->props ||
	    amqpmsg_source(&m->props->p, m->body, m->len, &m->headers, &(size_t){ 0 }, &m->source) <
		    0)
		return broker_msg_free(m);
	if (m->body)
		m->body[size] = '\0';
	return m;
}

static int track_delivery(struct broker *b, uint64_t tag)
{
	if (b->n_unsettled == b->cap_unsettled) {
		size_t cap = b->cap_unsettled ? b->cap_unsettled * 2 : 256;
		struct unsettled *n = realloc(b->unsettled, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		b->unsettled = n;
		b->cap_unsettled = cap;
	}
	b->unsettled[b->n_unsettled++] = (struct unsettled){ .tag = tag };
	return 0;
}

int deliver_begin(struct link *l, const amqp_basic_properties_t *p, uint64_t size)
{
	struct broker *b = l->b;
	struct incoming *in = &l->in;
	bool streamed = size > b->max_message_size;
	struct broker_msg *m;

	/* A body over the limit goes to the DLQ unchanged, frame by frame as
	 * it arrives: whatever producers send, it is never held whole. */
	m = deliver_msg_new(p, size, streamed);
	if (!m) {
		link_fail(l, -ENOMEM, "out of memory for a %" PRIu64 "-byte delivery", size);
		return -ENOMEM;
	}
	m->tag = in->tag;
	m->generation = b->generation;
	m->redelivered = in->redelivered;
	in->msg = m;
	in->streamed = streamed;
	if (track_delivery(b, in->tag) < 0) {
		link_fail(l, -ENOMEM, "out of memory tracking deliveries");
		return -ENOMEM;
	}
	if (streamed) {
		stream_offer(b, in->tag, size);
		return 0;
	}
	m->body[size] = '\0';
	m->owner = b;
	body_bytes(b, membound_add(&b->mem, size));
	return 0;
}

void deliver_complete(struct broker *b, struct broker_msg *m)
{
	if (!b->consuming) {
		/* Arrived after basic.cancel: hand it straight back. */
		broker_requeue(b, m);
		broker_msg_free(m);
		return;
	}
	b->cb.delivery(b->userdata, m);
}

void deliver_reset(struct broker *b)
{
	b->consuming = false;
	b->n_unsettled = 0;
	b->n_done = 0;
}

static struct unsettled *find_unsettled(struct broker *b, uint64_t tag)
{
	size_t lo = 0, hi = b->n_unsettled;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (b->unsettled[mid].tag < tag)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < b->n_unsettled && b->unsettled[lo].tag == tag ? &b->unsettled[lo] : NULL;
}

/* Over plain TCP the ack joins the flush's one write; over TLS it is sent. */
static int send_ack(struct broker *b, uint64_t tag, bool multiple)
{
	struct link *l = &b->consumer;
	int r;

	if (l->raw) {
		r = amqpwire_ack(&l->out, CH_WORK, tag, multiple);
		if (r == -E2BIG && (r = link_send_wire(l)) == 0)
			r = amqpwire_ack(&l->out, CH_WORK, tag, multiple);
		if (r < 0)
			link_fail(l, r, "basic.ack: %s", strerror(-r));
		return r;
	}
	r = amqp_basic_ack(l->conn, CH_WORK, tag, multiple);
	if (r != AMQP_STATUS_OK) {
		link_fail(l, amqpconn_errno(r), "basic.ack: %s", amqp_error_string2(r));
		return amqpconn_errno(r);
	}
	return 0;
}

void deliver_flush_acks(struct broker *b)
{
	size_t i = 0, kept = 0;

	if (b->n_done == 0 || !b->consumer.conn || b->consumer.failed)
		return;
	while (i < b->n_unsettled && b->unsettled[i].done)
		i++;
	if (i > 0 && send_ack(b, b->unsettled[i - 1].tag, i > 1) < 0)
		return;
	/* Finished deliveries behind one still running go out one by one
	 * (in the same write: completions out of order are the rule). */
	for (size_t j = i; j < b->n_unsettled; j++) {
		if (b->unsettled[j].done) {
			if (send_ack(b, b->unsettled[j].tag, false) < 0)
				return;
		} else {
			b->unsettled[kept++] = b->unsettled[j];
		}
	}
	if (link_send_wire(&b->consumer) < 0)
		return;
	b->n_unsettled = kept;
	b->n_done = 0;
}

static int on_flush(sd_event_source *s, void *userdata)
{
	deliver_flush_acks(userdata);
	return 0;
}

static int send_nack(struct broker *b, uint64_t tag)
{
	int r = amqp_basic_nack(b->consumer.conn, CH_WORK, tag, 0, 1);

	if (r != AMQP_STATUS_OK) {
		link_fail(&b->consumer, amqpconn_errno(r), "basic.nack: %s", amqp_error_string2(r));
		return amqpconn_errno(r);
	}
	return 0;
}

static int settle_delivery(struct broker *b, const struct broker_msg *m, bool ack)
{
	struct unsettled *u;

	if (!link_usable(&b->consumer))
		return -ENOTCONN;
	if (m->generation != b->generation)
		return -ESTALE;
	u = find_unsettled(b, m->tag);
	if (ack) {
		if (!u || u->done)
			return -EALREADY;
		u->done = true;
		b->n_done++;
		if (b->n_done >= MAX(b->prefetch / 4, 1u))
			deliver_flush_acks(b);
		else
			source_enable(b->flush, SD_EVENT_ONESHOT, "amqp-ack-flush");
		return 0;
	}
	if (u) {
		if (u->done)
			return -EALREADY;
		memmove(u, u + 1, (size_t)(b->unsettled + b->n_unsettled - (u + 1)) * sizeof(*u));
		b->n_unsettled--;
	}
	return send_nack(b, m->tag);
}

int broker_ack(struct broker *b, const struct broker_msg *m)
{
	return settle_delivery(b, m, true);
}

int broker_requeue(struct broker *b, const struct broker_msg *m)
{
	return settle_delivery(b, m, false);
}

int broker_stop_consuming(struct broker *b)
{
	struct link *l = &b->consumer;

	if (!b->consuming)
		return 0;
	b->consuming = false;
	if (!link_usable(l))
		return 0;
	amqp_basic_cancel_t req = { .consumer_tag = amqp_cstring_bytes(b->consumer_tag),
				    .nowait = 1 };
	int r = amqp_send_method(l->conn, CH_WORK, AMQP_BASIC_CANCEL_METHOD, &req);
	if (r != AMQP_STATUS_OK)
		link_fail(l, amqpconn_errno(r), "basic.cancel: %s", amqp_error_string2(r));
	return 0;
}

int deliver_init(struct broker *b)
{
	int r;

	r = sd_event_add_defer(b->event, &b->flush, on_flush, b);
	if (r < 0)
		return r;
	/* Idle priority: acks pile up while the loop is busy and leave in one
	 * `multiple` ack when it is not (or at prefetch/4, whichever is first).
	 * Measured: fewer syscalls and loop iterations per message than acking
	 * each delivery at once. */
	if ((r = sd_event_source_set_priority(b->flush, SD_EVENT_PRIORITY_IDLE)) < 0 ||
	    (r = sd_event_source_set_enabled(b->flush, SD_EVENT_OFF)) < 0)
		return r;
	source_describe(b->flush, "amqp-ack-flush");
	return 0;
}

void deliver_done(struct broker *b)
{
	b->flush = sd_event_source_disable_unref(b->flush);
	free(b->unsettled);
	b->unsettled = NULL;
	b->n_unsettled = b->cap_unsettled = b->n_done = 0;
}
