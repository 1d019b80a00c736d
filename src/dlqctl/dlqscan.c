/*
 * dlqscan: two blocking AMQP connections, one reading the DLQ, one
 * publishing replays. Everything librabbitmq hands out lives in its frame
 * pools; a delivery is destroyed before the next is read, so memory stays
 * at one message plus the socket buffers whatever the queue holds.
 */
#include "dlqctl/dlqscan.h"

#include <amqp.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/amqpconn.h"
#include "common/amqpmsg.h"

#define CH 1

struct dlqscan {
	struct amqpconn_target target;
	amqp_connection_state_t rd, pub;
	bool rd_channel, pub_channel;
	bool have_env;
	amqp_envelope_t env;
	struct dlqscan_delivery d;
	struct header *hdrs; /* reused for each delivery */
	size_t hdrs_cap;
	struct header props[AMQPMSG_PROPS_MAX];
	uint64_t next_seq;
};

static int open_channel(amqp_connection_state_t conn, char *err, size_t errlen)
{
	amqp_channel_open(conn, CH);
	return amqpconn_check_rpc(conn, "channel.open", err, errlen);
}

int dlqscan_open(const struct config *c, bool publish, struct dlqscan **out, char *err,
		 size_t errlen)
{
	_cleanup_(dlqscan_freep) struct dlqscan *s = calloc(1, sizeof(*s));
	int hb = (int)(c->broker.heartbeat_usec / USEC_PER_SEC);
	size_t node = 0;
	int r;

	if (!s)
		return -ENOMEM;
	r = amqpconn_target_init(&s->target, c, err, errlen);
	if (r < 0) {
		free(TAKE_PTR(s));
		return r;
	}
	/* The first node that answers; the publisher starts from the same. */
	if ((r = amqpconn_open_any(&s->target, &node, "dlqctl", hb, &s->rd, err, errlen)) < 0 ||
	    (r = open_channel(s->rd, err, errlen)) < 0)
		return r;
	s->rd_channel = true;
	if (publish) {
		if ((r = amqpconn_open_any(&s->target, &node, "dlqctl-replay", hb, &s->pub, err,
					   errlen)) < 0 ||
		    (r = open_channel(s->pub, err, errlen)) < 0)
			return r;
		s->pub_channel = true;
		amqp_confirm_select(s->pub, CH);
		if ((r = amqpconn_check_rpc(s->pub, "confirm.select", err, errlen)) < 0)
			return r;
		s->next_seq = 1;
	}
	*out = TAKE_PTR(s);
	return 0;
}

static void release(struct dlqscan *s)
{
	if (s->have_env) {
		amqp_destroy_envelope(&s->env);
		s->have_env = false;
	}
	if (s->rd)
		amqp_maybe_release_buffers(s->rd);
}

static void close_conn(amqp_connection_state_t conn, bool channel)
{
	if (!conn)
		return;
	/* Closing hands every unacked delivery back to the queue. */
	if (channel)
		amqp_channel_close(conn, CH, AMQP_REPLY_SUCCESS);
	amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(conn);
}

struct dlqscan *dlqscan_free(struct dlqscan *s)
{
	if (!s)
		return NULL;
	release(s);
	close_conn(s->pub, s->pub_channel);
	close_conn(s->rd, s->rd_channel);
	amqpconn_target_done(&s->target);
	free(s->hdrs);
	free(s);
	return NULL;
}

void dlqscan_freep(struct dlqscan **s)
{
	*s = dlqscan_free(*s);
}

int dlqscan_depth(struct dlqscan *s, const char *queue, uint64_t *messages, uint32_t *consumers,
		  char *err, size_t errlen)
{
	amqp_queue_declare_ok_t *ok;
	int r;

	/* A 404 closes the channel: declare on a throwaway one. */
	amqp_channel_open(s->rd, CH + 1);
	if ((r = amqpconn_check_rpc(s->rd, "channel.open", err, errlen)) < 0)
		return r;
	ok = amqp_queue_declare(s->rd, CH + 1, amqp_cstring_bytes(queue), 1, 0, 0, 0,
				amqp_empty_table);
	r = amqpconn_check_rpc(s->rd, "queue.declare", err, errlen);
	if (r == -ENOENT)
		return error_set(err, errlen, r, "queue '%s' does not exist", queue);
	if (r < 0)
		return r;
	*messages = ok->message_count;
	if (consumers)
		*consumers = ok->consumer_count;
	amqp_channel_close(s->rd, CH + 1, AMQP_REPLY_SUCCESS);
	return amqpconn_check_rpc(s->rd, "channel.close", err, errlen);
}

int dlqscan_start(struct dlqscan *s, const char *queue, char *err, size_t errlen)
{
	int r;

	/* No prefetch limit: unacked non-matching messages would stall a limited one. */
	amqp_basic_qos(s->rd, CH, 0, 0, 0);
	if ((r = amqpconn_check_rpc(s->rd, "basic.qos", err, errlen)) < 0)
		return r;
	amqp_basic_consume(s->rd, CH, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0,
			   amqp_empty_table);
	return amqpconn_check_rpc(s->rd, "basic.consume", err, errlen);
}

static struct timeval tv_of(uint64_t usec)
{
	return (struct timeval){ .tv_sec = (time_t)(usec / USEC_PER_SEC),
				 .tv_usec = (suseconds_t)(usec % USEC_PER_SEC) };
}

static int fill(struct dlqscan *s)
{
	const amqp_basic_properties_t *p = &s->env.message.properties;
	struct copy_source src;

	if (amqpmsg_source(p, s->env.message.body.bytes, s->env.message.body.len, &s->hdrs,
			   &s->hdrs_cap, &src) < 0)
		return -ENOMEM;
	s->d = (struct dlqscan_delivery){
		.tag = s->env.delivery_tag,
		.msg = { .body = src.body,
			 .len = src.len,
			 .headers = src.headers,
			 .n_headers = src.n_headers,
			 .props = s->props,
			 .n_props = amqpmsg_props(p, s->props) },
		.source = src,
		.priv = &s->env,
	};
	return 0;
}

/* A frame that is not a delivery arrived on the reading connection. */
static int unexpected(struct dlqscan *s, char *err, size_t errlen)
{
	amqp_frame_t f;
	char buf[256];
	int r;

	r = amqp_simple_wait_frame(s->rd, &f);
	if (r != AMQP_STATUS_OK)
		return error_set(err, errlen, amqpconn_errno(r), "reading the queue: %s",
				 amqp_error_string2(r));
	if (f.frame_type != AMQP_FRAME_METHOD)
		return 0;
	switch (f.payload.method.id) {
	case AMQP_CHANNEL_CLOSE_METHOD: {
		amqp_channel_close_t *m = f.payload.method.decoded;
		amqp_channel_close_ok_t ok = { 0 };
		amqp_send_method(s->rd, CH, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
		s->rd_channel = false;
		snprintf(buf, sizeof(buf), "%.*s", (int)m->reply_text.len,
			 (char *)m->reply_text.bytes);
		return error_set(err, errlen,
				 m->reply_code == AMQP_PRECONDITION_FAILED ? -ETIMEDOUT : -EPROTO,
				 "the broker closed the channel: %u %s", m->reply_code, buf);
	}
	case AMQP_CONNECTION_CLOSE_METHOD: {
		amqp_connection_close_t *m = f.payload.method.decoded;
		snprintf(buf, sizeof(buf), "%.*s", (int)m->reply_text.len,
			 (char *)m->reply_text.bytes);
		return error_set(err, errlen, -ECONNRESET,
				 "the broker closed the connection: %u %s", m->reply_code, buf);
	}
	case AMQP_BASIC_CANCEL_METHOD:
		return error_set(err, errlen, -ENOENT,
				 "the broker cancelled the consumer (queue deleted?)");
	default:
		return 0; /* basic.ack of a publish on another channel, qos-ok...: ignore */
	}
}

int dlqscan_next(struct dlqscan *s, uint64_t timeout_usec, struct dlqscan_delivery **d, char *err,
		 size_t errlen)
{
	struct timeval tv = tv_of(timeout_usec);
	amqp_rpc_reply_t r;
	int k;

	release(s);
	r = amqp_consume_message(s->rd, &s->env, &tv, 0);
	if (r.reply_type == AMQP_RESPONSE_NORMAL) {
		s->have_env = true;
		if ((k = fill(s)) < 0)
			return k;
		*d = &s->d;
		return 1;
	}
	if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
	    r.library_error == AMQP_STATUS_TIMEOUT)
		return 0;
	if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
	    r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
		k = unexpected(s, err, errlen);
		return k < 0 ? k : 0;
	}
	return error_set(err, errlen,
			 r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
				 ? amqpconn_errno(r.library_error)
				 : -EPROTO,
			 "reading the queue: %s",
			 r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
				 ? amqp_error_string2(r.library_error)
				 : "unexpected reply");
}

int dlqscan_ack(struct dlqscan *s, uint64_t tag, char *err, size_t errlen)
{
	int r = amqp_basic_ack(s->rd, CH, tag, 0);

	if (r != AMQP_STATUS_OK)
		return error_set(err, errlen, amqpconn_errno(r), "basic.ack: %s",
				 amqp_error_string2(r));
	return 0;
}

int64_t dlqscan_publish(struct dlqscan *s, const struct dlqscan_delivery *d, const struct copy *c,
			char *err, size_t errlen)
{
	const amqp_envelope_t *env = d->priv;
	_cleanup_free_ amqp_table_entry_t *e = NULL;
	amqp_basic_properties_t props;
	int r;

	if (amqpmsg_publish_props(&env->message.properties, c, NULL, 0, &props, &e) < 0)
		return error_set(err, errlen, -ENOMEM, "out of memory");
	r = amqp_basic_publish(s->pub, CH, amqp_cstring_bytes(c->exchange),
			       amqp_cstring_bytes(c->routing_key), 1, 0, &props,
			       (amqp_bytes_t){ .len = c->len, .bytes = (void *)c->body });
	if (r != AMQP_STATUS_OK)
		return error_set(err, errlen, amqpconn_errno(r), "basic.publish: %s",
				 amqp_error_string2(r));
	return (int64_t)s->next_seq++;
}

static int confirm_frame(struct dlqscan *s, const amqp_frame_t *f, dlqscan_confirm_fn cb,
			 void *userdata, char *err, size_t errlen)
{
	amqp_message_t msg;
	char buf[256];
	amqp_rpc_reply_t rr;

	if (f->frame_type != AMQP_FRAME_METHOD)
		return 0;
	switch (f->payload.method.id) {
	case AMQP_BASIC_ACK_METHOD: {
		amqp_basic_ack_t *m = f->payload.method.decoded;
		cb(userdata, DLQSCAN_ACK, m->delivery_tag, m->multiple);
		return 1;
	}
	case AMQP_BASIC_NACK_METHOD: {
		amqp_basic_nack_t *m = f->payload.method.decoded;
		cb(userdata, DLQSCAN_NACK, m->delivery_tag, m->multiple);
		return 1;
	}
	case AMQP_BASIC_RETURN_METHOD:
		/* The returned message's header and body frames follow. */
		rr = amqp_read_message(s->pub, f->channel, &msg, 0);
		if (rr.reply_type != AMQP_RESPONSE_NORMAL)
			return error_set(err, errlen, -EPROTO, "reading a returned message: %s",
					 amqpconn_reply_text(rr, buf, sizeof(buf)));
		amqp_destroy_message(&msg);
		cb(userdata, DLQSCAN_RETURN, 0, false);
		return 1;
	case AMQP_CHANNEL_CLOSE_METHOD: {
		amqp_channel_close_t *m = f->payload.method.decoded;
		s->pub_channel = false;
		return error_set(err, errlen, -EPROTO,
				 "the broker closed the replay channel: %u %.*s", m->reply_code,
				 (int)m->reply_text.len, (char *)m->reply_text.bytes);
	}
	case AMQP_CONNECTION_CLOSE_METHOD: {
		amqp_connection_close_t *m = f->payload.method.decoded;
		return error_set(err, errlen, -ECONNRESET,
				 "the broker closed the replay connection: %u %.*s", m->reply_code,
				 (int)m->reply_text.len, (char *)m->reply_text.bytes);
	}
	default:
		return 0;
	}
}

int dlqscan_confirms(struct dlqscan *s, uint64_t timeout_usec, dlqscan_confirm_fn cb,
		     void *userdata, char *err, size_t errlen)
{
	uint64_t deadline = now_monotonic_usec() + timeout_usec;
	int events = 0;

	for (;;) {
		uint64_t now = now_monotonic_usec();
		struct timeval tv = tv_of(deadline > now ? deadline - now : 0);
		amqp_frame_t f;
		int r;

		r = amqp_simple_wait_frame_noblock(s->pub, &f, &tv);
		if (r == AMQP_STATUS_TIMEOUT)
			break;
		if (r != AMQP_STATUS_OK)
			return error_set(err, errlen, amqpconn_errno(r), "reading confirms: %s",
					 amqp_error_string2(r));
		r = confirm_frame(s, &f, cb, userdata, err, errlen);
		if (r < 0)
			return r;
		events += r;
	}
	amqp_maybe_release_buffers(s->pub);
	return events;
}
