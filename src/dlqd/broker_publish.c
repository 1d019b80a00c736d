/*
 * broker_publish: retry and DLQ copies on the publisher link, and what the
 * broker says about them.
 *
 * Every copy is published `mandatory` on CH_WORK, which is in confirm mode,
 * and waits in a list in publish order until the broker confirms it. A
 * basic.return of a copy that no queue took comes before its basic.ack, and
 * is matched to the publish by the HDR_PUBLISH_SEQ header each copy carries
 * (a returned message has no delivery tag). So a callback reports 0 only
 * for a copy that was acked and not returned; a nack, a return or the loss
 * of the link reports < 0, and the daemon's delivery stays unacked.
 *
 * The DLQ copy of an oversize delivery goes out the same way on CH_STREAM,
 * a confirm-mode channel of its own (its body frames follow later, see
 * broker_stream.c); each channel numbers its confirms on its own, so a
 * pending copy remembers its channel.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_int.h"
#include "common/amqpmsg.h"
#include "common/amqpwire.h"
#include "common/copy.h"
#include "common/log.h"

static void confirm_one(struct pending *p, bool ok)
{
	if (!p->cb)
		return;
	if (!ok)
		p->cb(p->userdata, -EIO, "broker nacked the publish");
	else if (p->returned)
		p->cb(p->userdata, -ENOENT, p->reason);
	else
		p->cb(p->userdata, 0, NULL);
}

/*
 * Settles publish tag (and every earlier one with multiple). RabbitMQ may
 * confirm out of order when copies go to different queues, so the entry is
 * searched for, not assumed at the head. The list is at most prefetch long.
 */
void publish_confirmed(struct broker *b, uint16_t ch, uint64_t tag, bool multiple, bool ack)
{
	struct pending **pp = &b->head, *prev = NULL;

	while (*pp && !b->publisher.failed) {
		struct pending *p = *pp;
		if (p->ch == ch && p->seq > tag)
			break; /* the list is in publish order */
		if (p->ch != ch || (p->seq != tag && !multiple)) {
			prev = p;
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		if (b->tail == p)
			b->tail = prev;
		confirm_one(p, ack);
		free(p);
		if (!multiple)
			break;
	}
}

int64_t publish_return_seq(const amqp_basic_properties_t *p)
{
	struct header h;

	return props_header(p, HDR_PUBLISH_SEQ, &h) && h.kind == HEADER_INT ? h.i : -1;
}

void publish_returned(struct broker *b, const struct incoming *in)
{
	for (struct pending *p = b->head; p; p = p->next)
		if (p->ch == in->ch && (int64_t)p->seq == in->seq) {
			p->returned = true;
			/* Something unbound a queue; declare lanes afresh. */
			b->n_lanes = 0;
			snprintf(p->reason, sizeof(p->reason), "unroutable (%u %s)", in->reply_code,
				 in->reply_text);
			return;
		}
	log_warning("basic.return for an unknown publish (seq %" PRId64 "), ignoring", in->seq);
}

void publish_fail_all(struct broker *b, bool notify)
{
	struct pending *p;

	while ((p = b->head)) {
		b->head = p->next;
		if (notify && p->cb)
			p->cb(p->userdata, -ECONNRESET,
			      "the publisher connection was lost before the broker confirmed");
		free(p);
	}
	b->tail = NULL;
}

/* Adds p at the tail of the pending list, in publish order. */
static void pending_append(struct broker *b, struct pending *p)
{
	if (b->tail)
		b->tail->next = p;
	else
		b->head = p;
	b->tail = p;
}

/* A copy's three frames (method, header, body) in one write over plain
 * TCP; over TLS, or for a body too big to copy into l->out, the library's. */
static int publish_frames(struct link *l, const struct copy *c,
			  const amqp_basic_properties_t *props)
{
	amqp_bytes_t ex = amqp_cstring_bytes(c->exchange), key = amqp_cstring_bytes(c->routing_key),
		     body = { .len = c->len, .bytes = (void *)c->body };
	int r = -E2BIG;

	if (l->raw)
		r = amqpwire_publish(&l->out, CH_WORK, ex, key, true, props, body,
				     (size_t)amqp_get_frame_max(l->conn));
	if (r == 0)
		return link_send_wire(l);
	if (r != -E2BIG) {
		link_fail(l, r, "basic.publish: %s", strerror(-r));
		return r;
	}
	r = amqp_basic_publish(l->conn, CH_WORK, ex, key, 1, 0, props, body);
	link_pump_soon(l); /* it reads ahead into the library's buffer */
	if (r != AMQP_STATUS_OK) {
		link_fail(l, amqpconn_errno(r), "basic.publish: %s", amqp_error_string2(r));
		return amqpconn_errno(r);
	}
	return 0;
}

int broker_publish(struct broker *b, const struct copy *c, const struct broker_msg *orig,
		   broker_confirm_fn cb, void *userdata, uint64_t *id)
{
	struct link *l = &b->publisher;
	amqp_basic_properties_t props;
	_cleanup_free_ amqp_table_entry_t *entries = NULL;
	_cleanup_free_ struct pending *p = NULL;
	bool streamed = orig && orig->streamed;
	uint64_t *next = streamed ? &b->next_stream_seq : &b->next_seq;
	struct header seq = { .key = HDR_PUBLISH_SEQ,
			      .key_len = strlen(HDR_PUBLISH_SEQ),
			      .kind = HEADER_INT,
			      .i = (int64_t)*next };
	int r;

	if (streamed && !stream_can_start(b, orig))
		return -ESTALE; /* its body went by: only a redelivery brings it back */
	if (!link_usable(l))
		return -ENOTCONN;
	if (b->blocked)
		return -EAGAIN;
	p = calloc(1, sizeof(*p));
	if (!p || amqpmsg_publish_props(orig && orig->props ? &orig->props->p : NULL, c, &seq, 1,
					&props, &entries) < 0)
		return -ENOMEM;
	if (streamed) {
		r = stream_start(b, c, &props);
		if (r < 0)
			return r;
	} else if ((r = publish_frames(l, c, &props)) < 0) {
		return r;
	}
	p->ch = streamed ? CH_STREAM : CH_WORK;
	p->seq = (*next)++;
	p->id = b->next_id++;
	p->cb = cb;
	p->userdata = userdata;
	if (id)
		*id = p->id;
	pending_append(b, TAKE_PTR(p));
	return 0;
}

void broker_publish_forget(struct broker *b, uint64_t id)
{
	for (struct pending *p = b->head; p; p = p->next)
		if (p->id == id) {
			p->cb = NULL;
			return;
		}
}
