/*
 * broker_link: the life of one AMQP connection ("link") inside sd-event:
 * connect, pump frames, send heartbeats, fail, tear down, reconnect.
 *
 * librabbitmq is frame-level and not event-driven, so this file adapts it:
 *  - the socket fd is watched for input; on input (and after anything that
 *    may have read ahead into the library's buffer, such as a publish or a
 *    declaration RPC) pump() drains every frame with a zero timeout and
 *    hands each to the concern it belongs to (deliveries, confirms and
 *    returns, the DLQ probe);
 *  - heartbeats are only sent when the library is called, so a timer calls
 *    pump() at half the heartbeat interval;
 *  - over the body-memory bound the consumer link stops reading between
 *    deliveries (its io source off) and the timer sends the heartbeats
 *    itself; the broker's frames wait in the socket, so on resume the
 *    library reads them before it could think the broker silent;
 *  - a body frame's memory goes back to its channel's pool once handled,
 *    so a long body never piles up in the library;
 *  - deliveries and basic.return arrive as method + header + body frames
 *    that are assembled here;
 *  - any channel or connection error tears the link down (in a deferred
 *    event, never in the middle of a callback) and reconnects it with
 *    jittered backoff. Declarations are idempotent, so a reconnect also
 *    heals a deleted exchange or queue when [pipeline] declare is on.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>

#include "broker_int.h"
#include "common/log.h"

#define RECONNECT_MIN_USEC (200 * USEC_PER_MSEC)
#define RECONNECT_MAX_USEC (30 * USEC_PER_SEC)

static void pump(struct link *l);

void source_enable(sd_event_source *s, int enabled, const char *what)
{
	int r = sd_event_source_set_enabled(s, enabled);

	if (r < 0)
		log_warning_errno(r, "cannot %s the %s event source: %m, ignoring",
				  enabled == SD_EVENT_OFF ? "disable" : "enable", what);
}

void source_describe(sd_event_source *s, const char *name)
{
	int r = sd_event_source_set_description(s, name);

	if (r < 0)
		log_debug("cannot name the %s event source: %s, ignoring", name, strerror(-r));
}

/* Arms (or re-arms) the one-shot timer *s to fire usec from now. */
static int set_timer(sd_event_source **s, struct link *l, uint64_t usec, sd_event_time_handler_t cb,
		     const char *name)
{
	uint64_t now;
	int r;

	r = sd_event_now(l->b->event, CLOCK_MONOTONIC, &now);
	if (r < 0)
		return r;
	if (*s) {
		r = sd_event_source_set_time(*s, now + usec);
		return r < 0 ? r : sd_event_source_set_enabled(*s, SD_EVENT_ONESHOT);
	}
	r = sd_event_add_time(l->b->event, s, CLOCK_MONOTONIC, now + usec, 1000, cb, l);
	if (r < 0)
		return r;
	source_describe(*s, name);
	return 0;
}

static const char *link_event(const struct link *l, const char *what)
{
	static const char *const names[2][3] = {
		{ "broker-connected", "broker-lost", "broker-connect-failed" },
		{ "publisher-connected", "publisher-lost", "publisher-connect-failed" },
	};
	int i = strcmp(what, "connected") == 0 ? 0 : strcmp(what, "lost") == 0 ? 1 : 2;

	return names[l->role][i];
}

int link_check_rpc(struct link *l, const char *what)
{
	char err[320];
	int r = amqpconn_check_rpc(l->conn, what, err, sizeof(err));

	if (r < 0) {
		log_error("%s on the %s connection", err, l->name);
		strscpy(l->last_error, err, sizeof(l->last_error));
	}
	return r;
}

/* --- failure and teardown ------------------------------------------------ */

void link_next_node(struct link *l)
{
	l->node = (l->node + 1) % l->b->target.n_nodes;
}

void link_fail(struct link *l, int err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (l->failed || !l->conn)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	l->failed = true;
	snprintf(l->last_error, sizeof(l->last_error), "%s connection lost: %.250s", l->name, msg);
	log_full(LOG_ERR, err, &(struct log_ctx){ .event = link_event(l, "lost"), .attempt = -1 },
		 "lost the %s connection to the broker: %s", l->name, msg);
	if (l->teardown)
		source_enable(l->teardown, SD_EVENT_ONESHOT, "amqp-teardown");
}

/* What l->out keeps between writes: acks of a prefetch window and a few
 * copies; a bigger frame set is written and its memory given back. */
#define WIRE_KEEP (64 * 1024)
/* The most l->out holds: a copy's body larger than this (minus its frames)
 * is published the library's way. */
#define WIRE_MAX (1024 * 1024)

static int wait_writable(int fd, uint64_t deadline)
{
	uint64_t now = now_monotonic_usec();
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int n;

	if (now >= deadline)
		return -ETIMEDOUT;
	n = poll(&p, 1, (int)((deadline - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC));
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	return n == 0 ? -ETIMEDOUT : 0;
}

int link_send_wire(struct link *l)
{
	const char *p = l->out.data;
	size_t left = l->out.len;
	uint64_t deadline = 0;
	int fd, r = 0;

	if (left == 0)
		return 0;
	if (l->failed || !l->conn) {
		r = -ENOTCONN;
		goto done;
	}
	fd = amqp_get_sockfd(l->conn);
	while (left > 0) {
		ssize_t n = send(fd, p, left, MSG_NOSIGNAL);

		if (n >= 0) {
			p += n;
			left -= (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			r = -errno;
			break;
		}
		/* The broker reads slower than we write: wait as librabbitmq
		 * would, but not forever. */
		if (!deadline)
			deadline = now_monotonic_usec() + AMQPCONN_RPC_TIMEOUT_USEC;
		if ((r = wait_writable(fd, deadline)) < 0)
			break;
	}
	if (r < 0)
		link_fail(l, r, "sending %zu bytes of frames: %s", l->out.len, strerror(-r));
done:
	if (l->out.cap > WIRE_KEEP)
		buf_done(&l->out);
	else
		buf_reset(&l->out);
	return r;
}

static void close_link(struct link *l, bool graceful)
{
	if (!l->conn)
		return;
	l->io = sd_event_source_disable_unref(l->io);
	l->heartbeat = sd_event_source_disable_unref(l->heartbeat);
	if (graceful && !l->failed) {
		if (l->role == LINK_CONSUMER)
			deliver_flush_acks(l->b);
		amqp_channel_close(l->conn, CH_WORK, AMQP_REPLY_SUCCESS);
		amqp_connection_close(l->conn, AMQP_REPLY_SUCCESS);
	}
	amqp_destroy_connection(l->conn);
	l->conn = NULL;
	buf_done(&l->out);	/* frames of a lost connection mean nothing to the next */
	l->reading_off = false; /* a new connection gets a new io source */
	l->in.msg = broker_msg_free(l->in.msg);
	l->in.active = false;
	l->in_stream.active = false;
}

/* Voids everything that belonged to this connection and says so. */
static void teardown(struct link *l)
{
	struct broker *b = l->b;
	bool was_up = l->up;

	close_link(l, false);
	if (was_up)
		link_next_node(l); /* a node that failed us: try the others first */
	l->up = false;
	l->failed = false;
	stream_link_lost(b, l->role);
	if (l->role == LINK_CONSUMER) {
		deliver_reset(b);
		if (was_up && b->cb.connection)
			b->cb.connection(b->userdata, false);
	} else {
		b->blocked = false;
		b->n_lanes = 0;
		b->probe.channel_open = false;
		probe_done(b, -ECONNRESET);
		lanes_link_lost(b);
		publish_fail_all(b, true);
	}
	(void)link_schedule_reconnect(l);
}

static int on_teardown(sd_event_source *s, void *userdata)
{
	teardown(userdata);
	return 0;
}

/* --- frames --------------------------------------------------------------- */

static void content_done(struct link *l, struct incoming *in)
{
	in->active = false;
	if (in->is_return)
		publish_returned(l->b, in);
	else if (in->msg) /* a streamed delivery was handed over at its header */
		deliver_complete(l->b, TAKE_PTR(in->msg));
}

/* Where a content's frames are assembled: deliveries and CH_WORK returns
 * in l->in, returns of streamed copies in l->in_stream. */
static struct incoming *content_of(struct link *l, uint16_t ch)
{
	if (ch == CH_WORK)
		return &l->in;
	if (ch == CH_STREAM && l->role == LINK_PUBLISHER)
		return &l->in_stream;
	return NULL;
}

/* The publisher link's connection.blocked and connection.unblocked. */
static void set_blocked(struct broker *b, bool blocked, const amqp_bytes_t *reason)
{
	b->blocked = blocked;
	if (blocked)
		log_full(LOG_WARNING, 0,
			 &(struct log_ctx){ .event = "broker-blocked", .attempt = -1 },
			 "the broker blocks publishing (%.*s); retry and DLQ copies wait, acks go "
			 "on",
			 (int)reason->len, (char *)reason->bytes);
	else
		log_full(LOG_NOTICE, 0,
			 &(struct log_ctx){ .event = "broker-unblocked", .attempt = -1 },
			 "the broker unblocked publishing");
}

static void on_method(struct link *l, amqp_frame_t *f)
{
	struct broker *b = l->b;
	uint16_t ch = f->channel;
	amqp_method_t *m = &f->payload.method;
	bool consumer = l->role == LINK_CONSUMER;

	if (ch == CH_PROBE && !consumer) {
		probe_method(l, m);
		return;
	}
	if (ch == CH_LANES && !consumer) {
		lanes_method(l, m);
		return;
	}
	switch (m->id) {
	case AMQP_BASIC_DELIVER_METHOD: {
		amqp_basic_deliver_t *d = m->decoded;
		if (!consumer || ch != CH_WORK || l->in.active) {
			link_fail(l, -EPROTO, "unexpected basic.deliver on channel %u", ch);
			return;
		}
		l->in = (struct incoming){ .active = true,
					   .tag = d->delivery_tag,
					   .redelivered = d->redelivered };
		return;
	}
	case AMQP_BASIC_RETURN_METHOD: {
		amqp_basic_return_t *r = m->decoded;
		struct incoming *in = content_of(l, ch);
		if (consumer || !in || in->active) {
			link_fail(l, -EPROTO, "unexpected basic.return on channel %u", ch);
			return;
		}
		*in = (struct incoming){ .active = true,
					 .ch = ch,
					 .is_return = true,
					 .reply_code = r->reply_code,
					 .seq = -1 };
		snprintf(in->reply_text, sizeof(in->reply_text), "%.*s", (int)r->reply_text.len,
			 (char *)r->reply_text.bytes);
		return;
	}
	case AMQP_BASIC_ACK_METHOD:
	case AMQP_BASIC_NACK_METHOD: {
		bool ack = m->id == AMQP_BASIC_ACK_METHOD;
		uint64_t tag = ack ? ((amqp_basic_ack_t *)m->decoded)->delivery_tag
				   : ((amqp_basic_nack_t *)m->decoded)->delivery_tag;
		bool multiple = ack ? ((amqp_basic_ack_t *)m->decoded)->multiple
				    : ((amqp_basic_nack_t *)m->decoded)->multiple;
		if (consumer || !content_of(l, ch)) {
			link_fail(l, -EPROTO,
				  "unexpected confirm on channel %u of the %s connection", ch,
				  l->name);
			return;
		}
		publish_confirmed(b, ch, tag, multiple, ack);
		return;
	}
	case AMQP_BASIC_CANCEL_METHOD:
		/* The broker cancelled our consumer (queue deleted?). */
		link_fail(l, -ECONNRESET, "the broker cancelled the consumer");
		return;
	case AMQP_BASIC_CANCEL_OK_METHOD:
		return;
	case AMQP_CHANNEL_CLOSE_METHOD: {
		amqp_channel_close_t *c = m->decoded;
		amqp_channel_close_ok_t ok = { 0 };
		amqp_send_method(l->conn, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
		link_fail(l, -EPROTO, "channel %u closed by the broker: %u %.*s", ch, c->reply_code,
			  (int)c->reply_text.len, (char *)c->reply_text.bytes);
		return;
	}
	case AMQP_CONNECTION_CLOSE_METHOD: {
		amqp_connection_close_t *c = m->decoded;
		amqp_connection_close_ok_t ok = { 0 };
		amqp_send_method(l->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
		link_fail(l, -ECONNRESET, "connection closed by the broker: %u %.*s", c->reply_code,
			  (int)c->reply_text.len, (char *)c->reply_text.bytes);
		return;
	}
	case AMQP_CONNECTION_BLOCKED_METHOD:
		/* Only publishing connections get blocked. */
		if (!consumer)
			set_blocked(b, true, &((amqp_connection_blocked_t *)m->decoded)->reason);
		return;
	case AMQP_CONNECTION_UNBLOCKED_METHOD:
		if (!consumer)
			set_blocked(b, false, NULL);
		return;
	default:
		log_debug("ignoring AMQP method 0x%08x on channel %u of the %s connection", m->id,
			  ch, l->name);
	}
}

static void on_header(struct link *l, amqp_frame_t *f)
{
	struct incoming *in = content_of(l, f->channel);
	amqp_basic_properties_t *p = f->payload.properties.decoded;
	uint64_t size = f->payload.properties.body_size;

	if (f->channel == CH_PROBE && l->role == LINK_PUBLISHER) {
		probe_header(l, p, size);
		return;
	}
	if (f->channel == CH_LANES && l->role == LINK_PUBLISHER) {
		lanes_header(l, p, size);
		return;
	}
	if (!in || !in->active || in->have_header) {
		link_fail(l, -EPROTO, "unexpected content header on channel %u", f->channel);
		return;
	}
	in->have_header = true;
	in->need = size;
	if (in->is_return)
		in->seq = publish_return_seq(p);
	else if (deliver_begin(l, p, size) < 0)
		return;
	if (in->streamed) {
		/* Now, so that its DLQ copy can start before the body arrives. */
		deliver_complete(l->b, TAKE_PTR(in->msg));
		stream_offered_done(l->b);
	}
	if (size == 0)
		content_done(l, in);
}

static void on_body(struct link *l, amqp_frame_t *f)
{
	struct incoming *in = content_of(l, f->channel);
	amqp_bytes_t frag = f->payload.body_fragment;

	if (f->channel == CH_PROBE && l->role == LINK_PUBLISHER) {
		probe_body(l, frag.len);
		return;
	}
	if (f->channel == CH_LANES && l->role == LINK_PUBLISHER) {
		lanes_body(l, frag);
		return;
	}
	if (!in || !in->active || !in->have_header || in->got + frag.len > in->need) {
		link_fail(l, -EPROTO, "unexpected content body on channel %u", f->channel);
		return;
	}
	if (in->streamed)
		stream_body(l->b, frag);
	else if (in->msg)
		memcpy(in->msg->body + in->got, frag.bytes, frag.len);
	in->got += frag.len;
	if (in->got == in->need)
		content_done(l, in);
}

/* Stops reading, between deliveries, while the body-memory bound says so. */
static bool hold_off(struct link *l)
{
	if (!l->paused || l->in.active)
		return false;
	if (!l->reading_off && l->io) {
		source_enable(l->io, SD_EVENT_OFF, "amqp-consumer");
		l->reading_off = true;
	}
	return true;
}

void link_set_paused(struct link *l, bool paused)
{
	struct broker *b = l->b;

	if (l->paused == paused)
		return;
	l->paused = paused;
	/* Debug: at the bound this is two lines per message; the gauge
	 * dlqd_body_bytes_held tells an operator the same. */
	log_debug("%s reading deliveries: %" PRIu64 " body bytes held, %s "
		  "[pipeline] max_body_memory - max_message_size = %" PRIu64,
		  paused ? "pausing" : "resuming", b->mem.held, paused ? "over" : "back under",
		  membound_threshold(&b->mem));
	if (paused || !l->conn)
		return;
	if (l->reading_off) {
		source_enable(l->io, SD_EVENT_ON, "amqp-consumer");
		l->reading_off = false;
	}
	link_pump_soon(l);
}

static void pump(struct link *l)
{
	struct timeval zero = { 0, 0 };
	amqp_frame_t f;

	while (l->conn && !l->failed && !hold_off(l)) {
		if (!amqp_frames_enqueued(l->conn) && !amqp_data_in_buffer(l->conn))
			amqp_maybe_release_buffers(l->conn);
		int r = amqp_simple_wait_frame_noblock(l->conn, &f, &zero);
		if (r == AMQP_STATUS_TIMEOUT)
			return;
		if (r != AMQP_STATUS_OK) {
			link_fail(l, amqpconn_errno(r), "%s", amqp_error_string2(r));
			return;
		}
		switch (f.frame_type) {
		case AMQP_FRAME_METHOD:
			on_method(l, &f);
			break;
		case AMQP_FRAME_HEADER:
			on_header(l, &f);
			break;
		case AMQP_FRAME_BODY:
			on_body(l, &f);
			/* The fragment lives in the channel's pool, which otherwise
			 * grows by a frame per frame until the socket runs dry: a
			 * long body would pile up there whole. */
			if (l->conn)
				amqp_maybe_release_buffers_on_channel(l->conn, f.channel);
			break;
		default:
			break; /* heartbeats are handled inside the library */
		}
	}
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	pump(userdata);
	return 0;
}

static int on_pump_later(sd_event_source *s, void *userdata)
{
	pump(userdata);
	return 0;
}

void link_pump_soon(struct link *l)
{
	if (l->pump_later)
		source_enable(l->pump_later, SD_EVENT_ONESHOT, "amqp-pump");
}

static uint64_t heartbeat_period(const struct broker *b)
{
	return MAX(b->heartbeat_usec / 2, USEC_PER_SEC);
}

static int on_heartbeat(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct link *l = userdata;
	int r;

	/* librabbitmq sends and checks heartbeats only when called: without
	 * this tick an idle link would never notice a broker gone silent.
	 * A time source is one-shot; arm it again. */
	pump(l);
	if (l->reading_off && link_usable(l)) {
		/* Not reading: the library would not send one. */
		amqp_frame_t hb = { .frame_type = AMQP_FRAME_HEARTBEAT, .channel = 0 };
		int k = amqp_send_frame(l->conn, &hb);
		if (k != AMQP_STATUS_OK)
			link_fail(l, amqpconn_errno(k), "heartbeat: %s", amqp_error_string2(k));
	}
	r = sd_event_source_set_time(s, usec + heartbeat_period(l->b));
	if (r >= 0)
		r = sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
	if (r < 0)
		log_warning_errno(r,
				  "cannot re-arm the %s connection's heartbeat timer: %m, "
				  "ignoring (a silent broker is noticed on the next input)",
				  l->name);
	return 0;
}

/* --- connect -------------------------------------------------------------- */

/* The per-link part of connecting, after the channels and declarations. */
static int start_link(struct link *l)
{
	struct broker *b = l->b;
	int r;

	if (l->role == LINK_PUBLISHER) {
		amqp_confirm_select(l->conn, CH_WORK);
		if ((r = link_check_rpc(l, "confirm.select")) < 0)
			return r;
		amqp_channel_open(l->conn, CH_PROBE);
		if ((r = link_check_rpc(l, "channel.open")) < 0)
			return r;
		b->probe.channel_open = true;
		amqp_channel_open(l->conn, CH_STREAM);
		if ((r = link_check_rpc(l, "channel.open")) < 0)
			return r;
		amqp_confirm_select(l->conn, CH_STREAM);
		return link_check_rpc(l, "confirm.select");
	}
	amqp_basic_qos(l->conn, CH_WORK, 0, (uint16_t)b->prefetch, 0);
	if ((r = link_check_rpc(l, "basic.qos")) < 0)
		return r;
	amqp_basic_consume_ok_t *ok =
		amqp_basic_consume(l->conn, CH_WORK, amqp_cstring_bytes(b->names.queue),
				   amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
	if ((r = link_check_rpc(l, "basic.consume")) < 0)
		return r;
	snprintf(b->consumer_tag, sizeof(b->consumer_tag), "%.*s", (int)ok->consumer_tag.len,
		 (char *)ok->consumer_tag.bytes);
	return 0;
}

static int connect_link(struct link *l)
{
	struct broker *b = l->b;
	int heartbeat_s = (int)(b->heartbeat_usec / USEC_PER_SEC);
	char name[TOPOLOGY_NAME_MAX + 16], err[320];
	int r;

	snprintf(name, sizeof(name), "dlqd %s %s", b->names.queue, l->name);
	r = amqpconn_open(&b->target, l->node, name, heartbeat_s, &l->conn, err, sizeof(err));
	if (r < 0) {
		snprintf(l->last_error, sizeof(l->last_error), "%s connection: %.250s", l->name,
			 err);
		return log_full(r == -EACCES ? LOG_ERR : LOG_WARNING, r,
				&(struct log_ctx){ .event = link_event(l, "connect-failed"),
						   .attempt = -1 },
				"%s connection: %.250s", l->name, err);
	}
	l->raw = !b->target.nodes[l->node].info.ssl;
	buf_init(&l->out, WIRE_MAX);
	for (int ch = CH_WORK; ch <= CH_ADMIN; ch++) {
		amqp_channel_open(l->conn, (amqp_channel_t)ch);
		if ((r = link_check_rpc(l, "channel.open")) < 0)
			return r;
	}
	/* Both links declare: each must heal what it depends on when it
	 * reconnects after a channel error (a deleted exchange, say). */
	if (b->declare && (r = declare_topology(l)) < 0)
		return r;
	if ((r = start_link(l)) < 0)
		return r;
	r = sd_event_add_io(b->event, &l->io, amqp_get_sockfd(l->conn), EPOLLIN, on_io, l);
	if (r < 0)
		return log_error_errno(r, "cannot watch the %s connection's socket: %m", l->name);
	source_describe(l->io, l->role == LINK_CONSUMER ? "amqp-consumer" : "amqp-publisher");
	if (b->heartbeat_usec > 0) {
		r = set_timer(&l->heartbeat, l, heartbeat_period(b), on_heartbeat,
			      "amqp-heartbeat");
		if (r < 0)
			return log_error_errno(r, "cannot arm the %s connection's heartbeat: %m",
					       l->name);
	}
	return 0;
}

static int on_reconnect(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct link *l = userdata;
	struct broker *b = l->b;

	if (l->role == LINK_CONSUMER)
		b->generation++;
	else
		b->next_seq = b->next_stream_seq = 1;
	if (connect_link(l) < 0) {
		close_link(l, false);
		l->failed = false;
		/* The next node at once; a pause only after a whole round. */
		link_next_node(l);
		if (++l->tried >= b->target.n_nodes) {
			l->tried = 0;
			l->connect_failures++;
		}
		(void)link_schedule_reconnect(l);
		return 0;
	}
	l->ever_up = true;
	l->connect_failures = 0;
	l->tried = 0;
	l->last_error[0] = '\0';
	l->up = true;
	log_full(LOG_NOTICE, 0,
		 &(struct log_ctx){ .event = link_event(l, "connected"), .attempt = -1 },
		 l->role == LINK_CONSUMER ? "consuming %s on %s (prefetch %u)"
					  : "publishing for %s on %s (prefetch %u)",
		 b->names.queue, b->target.nodes[l->node].endpoint, b->prefetch);
	if (l->role == LINK_CONSUMER) {
		b->consuming = true;
		if (b->cb.connection)
			b->cb.connection(b->userdata, true);
	}
	link_pump_soon(l);
	return 0;
}

/* Logs its own failure: a link that cannot arm its timer stays down. */
int link_schedule_reconnect(struct link *l)
{
	uint64_t delay = 0;
	int r;

	if (l->tried > 0) {
		delay = 0; /* other nodes of the cluster are still untried */
	} else if (l->connect_failures > 0 || l->ever_up) {
		unsigned n = MIN(l->connect_failures, 10u);
		delay = MIN(RECONNECT_MAX_USEC, RECONNECT_MIN_USEC << n);
		delay = (uint64_t)((double)delay * (0.75 + random_unit() / 2));
	}
	r = set_timer(&l->reconnect, l, delay, on_reconnect, "amqp-reconnect");
	if (r < 0)
		return log_error_errno(r, "cannot arm the %s connection's reconnect timer: %m",
				       l->name);
	return 0;
}

static int add_defer_off(struct link *l, sd_event_source **s, sd_event_handler_t cb,
			 const char *name)
{
	int r = sd_event_add_defer(l->b->event, s, cb, l);

	if (r < 0)
		return r;
	source_describe(*s, name);
	return sd_event_source_set_enabled(*s, SD_EVENT_OFF);
}

int link_init(struct broker *b, struct link *l, enum link_role role)
{
	int r;

	l->b = b;
	l->role = role;
	l->name = role == LINK_CONSUMER ? "consumer" : "publisher";
	if ((r = add_defer_off(l, &l->teardown, on_teardown, "amqp-teardown")) < 0 ||
	    (r = add_defer_off(l, &l->pump_later, on_pump_later, "amqp-pump")) < 0)
		return r;
	return 0;
}

void link_done(struct link *l)
{
	close_link(l, true);
	l->reconnect = sd_event_source_disable_unref(l->reconnect);
	l->teardown = sd_event_source_disable_unref(l->teardown);
	l->pump_later = sd_event_source_disable_unref(l->pump_later);
}
