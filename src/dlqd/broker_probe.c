/*
 * broker_probe: the DLQ's depth and the age of its head, for the metrics
 * (broker_probe_dlq()), read without consuming anything.
 *
 * The probe reads <queue>.dlq's depth with a passive queue.declare on
 * CH_PROBE of the publisher link, then peeks at its head without keeping it:
 * basic.get (with acks), then at once basic.reject with requeue. A classic
 * queue puts a requeued message back at its old position, so the DLQ keeps
 * its order and count; the message only gains the redelivered flag.
 *
 * While the DLQ has a consumer (dlqctl reading it) the probe stops after the
 * declare and reports -EBUSY: the reader's unacked messages are not in the
 * count, and taking the head away would reorder what the reader sees.
 *
 * Quorum DLQs are only counted, never touched: RabbitMQ 3.10 requeues a
 * rejected message at the back of a quorum queue (every probe would reorder
 * the DLQ), and quorum queues count every return against x-delivery-limit
 * (20 by default from RabbitMQ 4.0), past which the message is dropped or
 * dead-lettered.
 *
 * The probe never holds the head's body: only its properties are read, and
 * its body frames are counted and dropped as they arrive. A head larger
 * than [pipeline] max_message_size is not fetched again on every poll
 * either: its age is reused while the depth stays the same, for at most
 * PROBE_MEMO_USEC, after which it is peeked at again.
 *
 * Everything is asynchronous: the replies arrive through the link's frame
 * pump like any frame; a probe in flight when the link drops reports
 * -ECONNRESET and the broker requeues what it held.
 */
#include <errno.h>

#include "broker_int.h"
#include "common/copy.h"
#include "common/log.h"

#define PROBE_MEMO_USEC (60 * USEC_PER_SEC)

/* The last big head's age still stands: same depth, and not too old. */
static bool memo_applies(struct broker *b)
{
	const struct probe_memo *m = &b->probe_memo;

	return m->valid && m->depth == b->probe.depth &&
	       broker_mono_now(b) < m->at_usec + PROBE_MEMO_USEC;
}

void probe_done(struct broker *b, int r)
{
	struct probe *pr = &b->probe;
	broker_dlq_fn cb = pr->cb;

	if (pr->state == PROBE_IDLE)
		return;
	pr->state = PROBE_IDLE;
	pr->cb = NULL;
	if (cb)
		cb(pr->userdata, r, pr->depth, r < 0 ? 0 : pr->oldest_usec);
}

void probe_method(struct link *l, const amqp_method_t *m)
{
	struct broker *b = l->b;
	struct probe *pr = &b->probe;
	int r;

	switch (m->id) {
	case AMQP_QUEUE_DECLARE_OK_METHOD: {
		amqp_queue_declare_ok_t *ok = m->decoded;
		if (pr->state != PROBE_WAIT_DECLARE)
			break;
		pr->depth = ok->message_count;
		if (ok->consumer_count > 0) {
			/* Someone reads the DLQ (dlqctl): its deliveries are not
			 * counted, and taking the head would reorder its scan. */
			probe_done(b, -EBUSY);
			return;
		}
		if (pr->depth == 0 || b->quorum) {
			probe_done(b, 0);
			return;
		}
		if (memo_applies(b)) {
			pr->oldest_usec = b->probe_memo.oldest_usec;
			probe_done(b, 0);
			return;
		}
		amqp_basic_get_t req = { .queue = amqp_cstring_bytes(b->names.dlq), .no_ack = 0 };
		r = amqp_send_method(l->conn, CH_PROBE, AMQP_BASIC_GET_METHOD, &req);
		if (r != AMQP_STATUS_OK) {
			link_fail(l, amqpconn_errno(r), "basic.get (DLQ probe): %s",
				  amqp_error_string2(r));
			return;
		}
		link_pump_soon(l);
		pr->state = PROBE_WAIT_GET;
		return;
	}
	case AMQP_BASIC_GET_EMPTY_METHOD:
		if (pr->state != PROBE_WAIT_GET)
			break;
		pr->depth = 0; /* emptied since the declare */
		probe_done(b, 0);
		return;
	case AMQP_BASIC_GET_OK_METHOD: {
		amqp_basic_get_ok_t *ok = m->decoded;
		if (pr->state != PROBE_WAIT_GET)
			break;
		pr->depth = (uint64_t)ok->message_count + 1;
		/* Back at once: the head is out of the queue for one round trip. */
		r = amqp_basic_reject(l->conn, CH_PROBE, ok->delivery_tag, 1);
		link_pump_soon(l);
		if (r != AMQP_STATUS_OK) {
			link_fail(l, amqpconn_errno(r), "basic.reject (DLQ probe): %s",
				  amqp_error_string2(r));
			return;
		}
		pr->state = PROBE_WAIT_CONTENT;
		pr->have_header = false;
		return;
	}
	case AMQP_CHANNEL_CLOSE_METHOD: {
		/* The DLQ is missing (declare = false?) or refused us: only the probe
		 * fails, never the publisher link. */
		amqp_channel_close_t *c = m->decoded;
		amqp_channel_close_ok_t ok = { 0 };
		amqp_send_method(l->conn, CH_PROBE, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
		pr->channel_open = false;
		log_warning("cannot probe %s: %u %.*s, ignoring", b->names.dlq, c->reply_code,
			    (int)c->reply_text.len, (char *)c->reply_text.bytes);
		probe_done(b, c->reply_code == AMQP_NOT_FOUND ? -ENOENT : -EPROTO);
		return;
	}
	default:
		break;
	}
	link_fail(l, -EPROTO, "unexpected AMQP method 0x%08x on the DLQ probe channel", m->id);
}

/* The string header key of p into out, when there is one and it fits. */
static bool header_string(const amqp_basic_properties_t *p, const char *key, char *out, size_t size)
{
	struct header h;

	if (!props_header(p, key, &h) || h.kind != HEADER_STRING || h.s_len >= size)
		return false;
	memcpy(out, h.s, h.s_len);
	out[h.s_len] = '\0';
	return true;
}

void probe_header(struct link *l, const amqp_basic_properties_t *p, uint64_t size)
{
	struct probe *pr = &l->b->probe;
	char at[64];

	if (pr->state != PROBE_WAIT_CONTENT || pr->have_header) {
		link_fail(l, -EPROTO, "unexpected content header on the DLQ probe channel");
		return;
	}
	pr->have_header = true;
	pr->need = size;
	pr->got = 0;
	/* dlqd's own header first; the timestamp property for foreign copies. */
	pr->oldest_usec = 0;
	if (header_string(p, HDR_DEAD_LETTERED_AT, at, sizeof(at)) &&
	    parse_timestamp(at, &pr->oldest_usec) < 0)
		pr->oldest_usec = 0;
	if (!pr->oldest_usec && (p->_flags & AMQP_BASIC_TIMESTAMP_FLAG) && p->timestamp > 0 &&
	    p->timestamp < UINT64_MAX / USEC_PER_SEC)
		pr->oldest_usec = p->timestamp * USEC_PER_SEC;
	l->b->probe_memo = (struct probe_memo){ .valid = size > l->b->max_message_size,
						.depth = pr->depth,
						.oldest_usec = pr->oldest_usec,
						.at_usec = broker_mono_now(l->b) };
	if (size == 0)
		probe_done(l->b, 0);
}

void probe_body(struct link *l, size_t len)
{
	struct probe *pr = &l->b->probe;

	if (pr->state != PROBE_WAIT_CONTENT || !pr->have_header || pr->got + len > pr->need) {
		link_fail(l, -EPROTO, "unexpected content body on the DLQ probe channel");
		return;
	}
	pr->got += len;
	if (pr->got == pr->need)
		probe_done(l->b, 0);
}

int broker_probe_dlq(struct broker *b, broker_dlq_fn cb, void *userdata)
{
	struct link *l = &b->publisher;
	struct probe *pr = &b->probe;
	int r;

	if (!link_usable(l))
		return -ENOTCONN;
	if (pr->state != PROBE_IDLE)
		return -EBUSY;
	if (b->blocked)
		return -EAGAIN; /* no synchronous channel.open on a blocked connection */
	if (!pr->channel_open) {
		amqp_channel_open(l->conn, CH_PROBE);
		r = link_check_rpc(l, "channel.open (DLQ probe)");
		link_pump_soon(l);
		if (r < 0) {
			link_fail(l, r, "cannot reopen the DLQ probe channel");
			return r;
		}
		pr->channel_open = true;
	}
	/* A passive declare first: the depth, and whether anyone else reads. */
	amqp_queue_declare_t req = { .queue = amqp_cstring_bytes(b->names.dlq), .passive = 1 };
	r = amqp_send_method(l->conn, CH_PROBE, AMQP_QUEUE_DECLARE_METHOD, &req);
	if (r != AMQP_STATUS_OK) {
		link_fail(l, amqpconn_errno(r), "DLQ probe: %s", amqp_error_string2(r));
		return amqpconn_errno(r);
	}
	*pr = (struct probe){
		.state = PROBE_WAIT_DECLARE, .channel_open = true, .cb = cb, .userdata = userdata
	};
	return 0;
}
