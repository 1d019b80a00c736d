/*
 * broker_int: what the broker_*.c files share and nothing else sees: the
 * broker object, its two links, and what each concern offers the others.
 * The contract with the daemon is include/dlqd/broker.h.
 *
 *   broker.c          the object: create from a config (copying what it
 *                     needs), start, free, accessors
 *   broker_link.c     a link's life: connect, frame pump and dispatch,
 *                     heartbeats, failure, teardown, reconnect
 *   broker_topology.c declarations: main queue, exchanges, DLQ, delay lanes
 *   broker_probe.c    the DLQ probe: depth and age of the head
 *   broker_publish.c  retry and DLQ copies: publish, confirms, returns
 *   broker_deliver.c  deliveries: assembly, batched acks, requeue, cancel,
 *                     the body-memory bound
 *   broker_stream.c   an oversize delivery's body, forwarded frame by frame
 *                     into its DLQ copy
 *   broker_lanes.c    the delay-lane watch: a lane that stopped expiring
 *                     gets its overdue head moved to the main queue
 *
 * Nothing here holds a pointer into a struct config: broker_new() copies
 * what the links need, so the daemon may free the config it was given.
 */
#pragma once

#include <amqp.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <systemd/sd-event.h>

#include "common/amqpconn.h"
#include "common/amqpmsg.h"
#include "common/topology.h"
#include "common/util.h"
#include "dlqd/broker.h"
#include "dlqd/lanewatch.h"
#include "dlqd/membound.h"

/* Channels, the same numbers on both links. */
enum {
	CH_WORK = 1,  /* consumer: basic.consume; publisher: confirm-mode publish */
	CH_ADMIN = 2, /* declarations (synchronous RPCs) */
	CH_PROBE = 3, /* publisher only: the asynchronous DLQ probe */
	/* Publisher only, confirm mode: DLQ copies of oversize deliveries,
	 * whose body frames follow as they arrive (broker_stream.c). The
	 * frames of one publish must be contiguous on its channel, so no other
	 * publish may share it. */
	CH_STREAM = 4,
	/* Publisher only: the delay-lane watch (broker_lanes.c). */
	CH_LANES = 5,
};

#define MAX_LANES 4096

struct broker_props {
	amqp_pool_t pool;
	amqp_basic_properties_t p;
};

/* A copy published and not yet confirmed. */
struct pending {
	uint16_t ch;  /* CH_WORK or CH_STREAM: each counts its own confirms */
	uint64_t seq; /* publish sequence number on that channel */
	uint64_t id;  /* stable id for broker_publish_forget() */
	broker_confirm_fn cb;
	void *userdata;
	bool returned;
	char reason[160];
	struct pending *next;
};

/* Content (header + body frames) that follows a deliver or return method. */
struct incoming {
	bool active;
	uint16_t ch;
	bool is_return;
	uint64_t tag;
	bool redelivered;
	uint16_t reply_code;
	char reply_text[128];
	int64_t seq;		/* from the returned message's HDR_PUBLISH_SEQ */
	struct broker_msg *msg; /* deliveries only; NULL once handed over early */
	bool streamed;		/* an oversize delivery: its body goes to b->stream */
	size_t need, got;
	bool have_header;
};

enum link_role {
	LINK_CONSUMER,
	LINK_PUBLISHER,
};

struct link {
	struct broker *b;
	enum link_role role;
	const char *name; /* "consumer" / "publisher", for logs */
	amqp_connection_state_t conn;
	bool up;
	bool failed;
	bool ever_up;
	unsigned connect_failures; /* rounds over every node that failed */
	size_t node;		   /* [broker] url's node this link uses or tries next */
	size_t tried;		   /* nodes tried in this round */
	struct incoming in;	   /* content on CH_WORK */
	struct incoming in_stream; /* publisher: a basic.return on CH_STREAM */
	/* Over the body-memory bound: stop reading after the current delivery
	 * (paused), and the io source is then off (reading_off). */
	bool paused, reading_off;
	char last_error[320]; /* why it last failed; "" once up */
	/* Plain TCP: frames encoded by amqpwire go to the socket in one write
	 * (out holds them until link_send_wire()). TLS: librabbitmq sends. */
	bool raw;
	struct buf out;
	sd_event_source *io, *heartbeat, *reconnect, *teardown, *pump_later;
};

struct unsettled {
	uint64_t tag;
	bool done;
};

/* The DLQ probe on the publisher link's CH_PROBE (see broker_probe.c). */
struct probe {
	enum { PROBE_IDLE, PROBE_WAIT_DECLARE, PROBE_WAIT_GET, PROBE_WAIT_CONTENT } state;
	bool channel_open;
	broker_dlq_fn cb;
	void *userdata;
	uint64_t depth;
	uint64_t oldest_usec;
	bool have_header;
	uint64_t need, got;
};

/* The delay-lane watch (broker_lanes.c): lanes declared in this process's
 * life, each with its last readings, read one per tick. */
struct lanes {
	uint64_t *ms; /* the lanes' TTLs, which name them */
	struct lane_seen *seen;
	size_t n, next, cur; /* cur: the lane being read or moved */
	enum {
		LANES_IDLE,
		LANES_WAIT_DECLARE,
		LANES_WAIT_GET,
		LANES_WAIT_CONTENT,
		LANES_WAIT_CONFIRM, /* its head is published to the main queue */
	} state;
	bool channel_open;
	uint64_t tag;		/* of the basic.get */
	struct broker_msg *msg; /* the head, while its content arrives */
	uint64_t got;
	uint64_t moved; /* heads moved since start */
	sd_event_source *timer;
};

/* The oversize delivery being read on the consumer link, if any (at most
 * one: a delivery's frames are contiguous on its channel). */
struct stream {
	enum {
		STREAM_NONE,
		STREAM_OFFERED, /* header read, handed to the daemon */
		STREAM_SENDING, /* its DLQ copy's head is out on CH_STREAM */
		STREAM_DISCARD, /* no copy (or it was lost): drop the frames */
	} state;
	uint64_t tag, generation; /* the delivery */
	uint64_t need, got;	  /* its body bytes */
};

/* The last age read from a DLQ head larger than max_message_size: reused
 * while the depth stays, so such a head is not fetched on every poll. */
struct probe_memo {
	bool valid;
	uint64_t depth, oldest_usec, at_usec; /* at: CLOCK_MONOTONIC */
};

struct broker {
	sd_event *event;
	struct broker_callbacks cb;
	void *userdata;

	/* From the config at broker_new(); a reload never changes them (they
	 * are "restart" keys in docs/config.md). */
	struct amqpconn_target target;
	struct topology names;
	uint64_t heartbeat_usec;
	uint32_t prefetch;
	bool quorum;  /* [pipeline] queue_type = quorum */
	bool declare; /* [pipeline] declare */
	/* Reloadable (broker_set_limits()). */
	uint64_t max_message_size;
	struct membound mem; /* body bytes held, against max_body_memory */

	struct link consumer, publisher;
	bool started;

	/* consumer link */
	bool consuming;
	uint64_t generation; /* of consumer connections; stamps deliveries */
	char consumer_tag[256];
	/*
	 * Deliveries not yet settled with the broker, in tag order (tags only
	 * grow on a channel). An ack is recorded here and sent by
	 * deliver_flush_acks(): a run of finished deliveries at the front goes
	 * out as one `multiple` ack. At most prefetch entries, since the
	 * broker stops delivering there.
	 */
	struct unsettled *unsettled;
	size_t n_unsettled, cap_unsettled, n_done;
	sd_event_source *flush;
	struct stream stream;

	/* publisher link */
	/* connection.blocked (a resource alarm) is in force: publish nothing. */
	bool blocked;
	uint64_t next_seq, next_stream_seq; /* per channel: CH_WORK, CH_STREAM */
	uint64_t next_id;
	struct pending *head, *tail;
	uint64_t *lanes; /* lanes declared on this publisher connection */
	size_t n_lanes;
	struct probe probe;
	struct probe_memo probe_memo;
	struct lanes lane_watch;
};

static inline bool key_is(amqp_bytes_t k, const char *s)
{
	return k.len == strlen(s) && memcmp(k.bytes, s, k.len) == 0;
}

/* The first header called key in p's headers, flattened into *h. */
static inline bool props_header(const amqp_basic_properties_t *p, const char *key, struct header *h)
{
	if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
		return false;
	for (int i = 0; i < p->headers.num_entries; i++)
		if (key_is(p->headers.entries[i].key, key)) {
			amqpmsg_header(h, p->headers.entries[i].key, &p->headers.entries[i].value);
			return true;
		}
	return false;
}

/* The loop's CLOCK_MONOTONIC time (0 if the loop cannot say). */
static inline uint64_t broker_mono_now(const struct broker *b)
{
	uint64_t now = 0;

	(void)sd_event_now(b->event, CLOCK_MONOTONIC, &now);
	return now;
}

static inline bool link_usable(const struct link *l)
{
	return l->up && !l->failed;
}

/* broker_link.c */
int link_init(struct broker *b, struct link *l, enum link_role role);
void link_done(struct link *l);
int link_schedule_reconnect(struct link *l);
/* The next node of [broker] url (wrapping): where this link connects next. */
void link_next_node(struct link *l);
/* Marks l failed and schedules its teardown (never inside a callback). */
void link_fail(struct link *l, int err, const char *fmt, ...) _printf_(3, 4);
/* Checks the last RPC on l; logs, records and returns -errno on failure. */
int link_check_rpc(struct link *l, const char *what);
/*
 * Writes the frames in l->out in one send() (more only when the socket
 * takes less), waiting for room at most AMQPCONN_RPC_TIMEOUT_USEC, and
 * empties it. Nothing may be sent the library's way while out holds frames.
 * A failure fails the link and returns -errno.
 */
int link_send_wire(struct link *l);
/* Sends and RPCs can read ahead into the library's buffer; get to it soon. */
void link_pump_soon(struct link *l);
/* sd_event_source_set_enabled() for a source whose failure we survive. */
void source_enable(sd_event_source *s, int enabled, const char *what);
void source_describe(sd_event_source *s, const char *name);
/* The body-memory bound says stop (after the current delivery) or resume. */
void link_set_paused(struct link *l, bool paused);

/* broker_topology.c: the fixed topology, when [pipeline] declare is on. */
int declare_topology(struct link *l);

/* broker_probe.c: frames on the publisher's CH_PROBE, and the end of a probe. */
void probe_method(struct link *l, const amqp_method_t *m);
void probe_header(struct link *l, const amqp_basic_properties_t *p, uint64_t size);
void probe_body(struct link *l, size_t len);
void probe_done(struct broker *b, int r);

/* broker_lanes.c: the delay-lane watch. */
int lanes_start(struct broker *b);
void lanes_done(struct broker *b);
/* Adds a lane (declared on the publisher link) to the watched set. */
int lanes_watch(struct broker *b, uint64_t lane_ms);
void lanes_method(struct link *l, const amqp_method_t *m);
void lanes_header(struct link *l, const amqp_basic_properties_t *p, uint64_t size);
void lanes_body(struct link *l, amqp_bytes_t frag);
void lanes_link_lost(struct broker *b);

/* broker_publish.c */
void publish_confirmed(struct broker *b, uint16_t ch, uint64_t tag, bool multiple, bool ack);
int64_t publish_return_seq(const amqp_basic_properties_t *p);
void publish_returned(struct broker *b, const struct incoming *in);
/* Ends every pending publish; with notify, its callback hears -ECONNRESET. */
void publish_fail_all(struct broker *b, bool notify);

/* broker_deliver.c */
int deliver_init(struct broker *b);
void deliver_done(struct broker *b);
/*
 * The header of a delivery: allocates l->in.msg and tracks its tag. A body
 * over max_message_size is not allocated: l->in.streamed is set, and the
 * caller hands the message over at once (its body follows to the stream).
 */
int deliver_begin(struct link *l, const amqp_basic_properties_t *p, uint64_t size);
/* A message of size body bytes with (a deep copy of) p, its body not yet
 * filled in (none when streamed); NULL when out of memory. */
struct broker_msg *deliver_msg_new(const amqp_basic_properties_t *p, uint64_t size, bool streamed);
/* A whole delivery: to the daemon, or straight back after basic.cancel. */
void deliver_complete(struct broker *b, struct broker_msg *m);
void deliver_flush_acks(struct broker *b);
/* The consumer connection is gone, and with it every delivery. */
void deliver_reset(struct broker *b);

/* broker_stream.c: an oversize delivery's body, from the consumer link's
 * frames to its DLQ copy on the publisher's CH_STREAM. */
void stream_offer(struct broker *b, uint64_t tag, uint64_t size);
/* After the daemon had the offer: no copy started means drop the frames. */
void stream_offered_done(struct broker *b);
/* Whether m is the offered delivery, whose copy may start now. */
bool stream_can_start(const struct broker *b, const struct broker_msg *m);
/* Sends the copy's basic.publish and content header on CH_STREAM. */
int stream_start(struct broker *b, const struct copy *c, const amqp_basic_properties_t *props);
/* A body frame of the streamed delivery; returns true at its last byte. */
bool stream_body(struct broker *b, amqp_bytes_t frag);
/* A link is gone: the copy in progress is void. */
void stream_link_lost(struct broker *b, enum link_role role);
