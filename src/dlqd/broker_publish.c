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
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "broker_int.h"
#include "common/envelope.h"
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
void publish_confirmed(struct broker *b, uint64_t tag, bool multiple, bool ack)
{
	struct pending **pp = &b->head, *prev = NULL;

	while (*pp && !b->publisher.failed) {
		struct pending *p = *pp;
		if (p->seq > tag)
			break; /* the list is in publish order */
		if (p->seq != tag && !multiple) {
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
	if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
		return -1;
	for (int i = 0; i < p->headers.num_entries; i++) {
		const amqp_table_entry_t *e = &p->headers.entries[i];
		if (!key_is(e->key, HDR_PUBLISH_SEQ))
			continue;
		switch (e->value.kind) {
		case AMQP_FIELD_KIND_I64:
			return e->value.value.i64;
		case AMQP_FIELD_KIND_U64:
			return (int64_t)e->value.value.u64;
		case AMQP_FIELD_KIND_I32:
			return e->value.value.i32;
		case AMQP_FIELD_KIND_U32:
			return e->value.value.u32;
		default:
			return -1;
		}
	}
	return -1;
}

void publish_returned(struct broker *b, const struct incoming *in)
{
	for (struct pending *p = b->head; p; p = p->next)
		if ((int64_t)p->seq == in->seq) {
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

/*
 * The copy's AMQP headers, in entries (room for orig's headers + n_hdrs + 3):
 * orig's own minus those set here, then hdrs, then orig's `expiration` and
 * `user_id` properties moved into headers (a per-message TTL would break a
 * delay lane's FIFO order, a foreign user_id makes the broker refuse the
 * publish; props loses both flags), then the publish sequence number that
 * matches a basic.return to its publish. Entries point into op and hdrs.
 */
static amqp_table_t copy_headers(const amqp_basic_properties_t *op,
				 const struct broker_header *hdrs, size_t n_hdrs, uint64_t seq,
				 amqp_table_entry_t *entries, amqp_basic_properties_t *props)
{
	size_t n = 0;

	for (int i = 0; op && i < op->headers.num_entries; i++) {
		amqp_bytes_t k = op->headers.entries[i].key;
		bool ours = key_is(k, HDR_PUBLISH_SEQ) || key_is(k, HDR_ORIGINAL_EXPIRATION) ||
			    key_is(k, HDR_ORIGINAL_USER_ID);
		for (size_t j = 0; j < n_hdrs && !ours; j++)
			ours = key_is(k, hdrs[j].key);
		if (!ours)
			entries[n++] = op->headers.entries[i];
	}
	for (size_t j = 0; j < n_hdrs; j++)
		entries[n++] = hdrs[j].type == BH_INT ? amqpconn_entry_int(hdrs[j].key, hdrs[j].i)
						      : amqpconn_entry_str(hdrs[j].key, hdrs[j].s);
	if (op && (op->_flags & AMQP_BASIC_EXPIRATION_FLAG)) {
		entries[n++] = amqpconn_entry_bytes(amqp_cstring_bytes(HDR_ORIGINAL_EXPIRATION),
						    op->expiration);
		props->_flags &= ~AMQP_BASIC_EXPIRATION_FLAG;
	}
	if (op && (op->_flags & AMQP_BASIC_USER_ID_FLAG)) {
		entries[n++] =
			amqpconn_entry_bytes(amqp_cstring_bytes(HDR_ORIGINAL_USER_ID), op->user_id);
		props->_flags &= ~AMQP_BASIC_USER_ID_FLAG;
	}
	entries[n++] = amqpconn_entry_int(HDR_PUBLISH_SEQ, (int64_t)seq);
	return (amqp_table_t){ .num_entries = (int)n, .entries = entries };
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

int broker_publish(struct broker *b, const char *exchange, const char *routing_key,
		   const struct broker_msg *orig, const void *body, size_t len,
		   const struct broker_header *hdrs, size_t n_hdrs, broker_confirm_fn cb,
		   void *userdata, uint64_t *id)
{
	struct link *l = &b->publisher;
	amqp_basic_properties_t props = { 0 };
	const amqp_basic_properties_t *op = orig && orig->props ? &orig->props->p : NULL;
	_cleanup_free_ amqp_table_entry_t *entries = NULL;
	_cleanup_free_ struct pending *p = NULL;
	int r;

	if (!link_usable(l))
		return -ENOTCONN;
	if (b->blocked)
		return -EAGAIN;
	if (op)
		props = *op;
	entries = calloc((op ? (size_t)op->headers.num_entries : 0) + n_hdrs + 3, sizeof(*entries));
	p = calloc(1, sizeof(*p));
	if (!entries || !p)
		return -ENOMEM;
	props.headers = copy_headers(op, hdrs, n_hdrs, b->next_seq, entries, &props);
	props._flags |= AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
	/* Copies are always persistent: a retry must survive a broker restart. */
	props.delivery_mode = AMQP_DELIVERY_PERSISTENT;
	if (!(props._flags & AMQP_BASIC_CONTENT_TYPE_FLAG)) {
		props._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
		props.content_type = amqp_cstring_bytes("application/json");
	}

	r = amqp_basic_publish(l->conn, CH_WORK, amqp_cstring_bytes(exchange),
			       amqp_cstring_bytes(routing_key), 1, 0, &props,
			       (amqp_bytes_t){ .len = len, .bytes = (void *)body });
	link_pump_soon(l);
	if (r != AMQP_STATUS_OK) {
		link_fail(l, amqpconn_errno(r), "basic.publish: %s", amqp_error_string2(r));
		return amqpconn_errno(r);
	}
	p->seq = b->next_seq++;
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
