/*
 * broker_stream: the DLQ copy of a delivery over [pipeline]
 * max_message_size, written while its body arrives, so that no body is
 * ever held whole whatever producers send.
 *
 * At the delivery's content header, deliver_begin() allocates no body and
 * offers the stream (stream_offer()); the message goes to the daemon at
 * once, which routes it to the DLQ as MESSAGE_TOO_LARGE and calls
 * broker_publish() from inside its delivery callback. That sends the copy's
 * basic.publish (mandatory) and content header, with the original's body
 * size, on the publisher's CH_STREAM (stream_start()); each body frame then
 * read on the consumer link goes on as a body frame of the copy
 * (stream_body()). The broker confirms the copy after its last frame, and
 * only then does the daemon ack the original, as for any copy.
 *
 * What can go wrong, and why nothing is lost:
 *  - no copy started (publisher link down or blocked): the frames are read
 *    and dropped, and the daemon requeues the delivery; the broker delivers
 *    it again, body and all;
 *  - the publisher link fails mid-body: the pending copy fails
 *    (-ECONNRESET, the daemon requeues) and the rest is dropped;
 *  - the consumer link fails mid-body: a half-sent message can only be
 *    abandoned with its connection (RabbitMQ takes any other frame on that
 *    channel as a connection error), so the publisher link fails too; the
 *    broker drops the partial copy and requeues the original;
 *  - nack or basic.return of the copy: its callback fails, the daemon
 *    requeues.
 * A copy's body can only be sent once: a later broker_publish() of the same
 * delivery gets -ESTALE.
 */
#include <errno.h>

#include "broker_int.h"
#include "common/log.h"

/* A frame's header and end octet, around its payload (AMQP 0-9-1 2.3.5). */
#define FRAME_OVERHEAD 8

void stream_offer(struct broker *b, uint64_t tag, uint64_t size)
{
	b->stream = (struct stream){
		.state = STREAM_OFFERED, .tag = tag, .generation = b->generation, .need = size
	};
}

void stream_offered_done(struct broker *b)
{
	if (b->stream.state == STREAM_OFFERED)
		b->stream.state = STREAM_DISCARD;
}

bool stream_can_start(const struct broker *b, const struct broker_msg *m)
{
	return b->stream.state == STREAM_OFFERED && b->stream.tag == m->tag &&
	       b->stream.generation == m->generation;
}

int stream_start(struct broker *b, const struct copy *c, const amqp_basic_properties_t *props)
{
	struct link *l = &b->publisher;
	amqp_basic_publish_t req = { .exchange = amqp_cstring_bytes(c->exchange),
				     .routing_key = amqp_cstring_bytes(c->routing_key),
				     .mandatory = 1 };
	amqp_frame_t head = { .frame_type = AMQP_FRAME_HEADER, .channel = CH_STREAM };
	int r;

	/* The copy's body is the original's, unchanged: nothing of its own. */
	if (c->body || c->len != b->stream.need)
		return -EINVAL;
	head.payload.properties.class_id = AMQP_BASIC_CLASS;
	head.payload.properties.body_size = b->stream.need;
	head.payload.properties.decoded = (void *)props;
	r = amqp_send_method(l->conn, CH_STREAM, AMQP_BASIC_PUBLISH_METHOD, &req);
	if (r == AMQP_STATUS_OK)
		r = amqp_send_frame(l->conn, &head);
	link_pump_soon(l);
	if (r != AMQP_STATUS_OK) {
		link_fail(l, amqpconn_errno(r), "basic.publish (streamed DLQ copy): %s",
			  amqp_error_string2(r));
		return amqpconn_errno(r);
	}
	b->stream.state = STREAM_SENDING;
	return 0;
}

/* Sends frag as body frames of the copy, cut to the publisher's frame_max. */
static int forward(struct link *l, amqp_bytes_t frag)
{
	int fm = amqp_get_frame_max(l->conn);
	size_t chunk = fm > FRAME_OVERHEAD ? (size_t)fm - FRAME_OVERHEAD : frag.len;

	for (size_t off = 0; off < frag.len; off += chunk) {
		amqp_frame_t f = { .frame_type = AMQP_FRAME_BODY, .channel = CH_STREAM };
		f.payload.body_fragment = (amqp_bytes_t){ .len = MIN(chunk, frag.len - off),
							  .bytes = (char *)frag.bytes + off };
		int r = amqp_send_frame(l->conn, &f);
		if (r != AMQP_STATUS_OK) {
			link_fail(l, amqpconn_errno(r), "streamed DLQ copy: %s",
				  amqp_error_string2(r));
			return amqpconn_errno(r);
		}
	}
	return 0;
}

bool stream_body(struct broker *b, amqp_bytes_t frag)
{
	struct stream *s = &b->stream;

	if (s->state == STREAM_SENDING &&
	    (!link_usable(&b->publisher) || forward(&b->publisher, frag) < 0))
		s->state = STREAM_DISCARD; /* the pending copy fails with its link */
	s->got += frag.len;
	if (s->got < s->need)
		return false;
	if (s->state == STREAM_SENDING)
		link_pump_soon(&b->publisher); /* the confirm comes soon */
	s->state = STREAM_NONE;
	return true;
}

void stream_link_lost(struct broker *b, enum link_role role)
{
	struct stream *s = &b->stream;

	if (role == LINK_PUBLISHER) {
		if (s->state == STREAM_SENDING)
			s->state = STREAM_DISCARD;
		return;
	}
	if (s->state == STREAM_SENDING)
		link_fail(&b->publisher, -ECONNRESET,
			  "the consumer connection was lost in the middle of an oversize "
			  "message; only closing this connection drops its partial DLQ copy");
	s->state = STREAM_NONE;
}
