/*
 * copy: the one place that knows what dlqd and dlqctl publish. From the
 * original message (as plain structs), its decoded envelope and what
 * happened to it, it returns the complete copy: body, every AMQP header in
 * order, exchange and routing key, and which properties to keep. The AMQP
 * adapters (broker for dlqd, dlqscan for dlqctl) only transmit it.
 *
 * Four kinds of copy (design.md Part 1, "Envelope"; docs/envelope.md):
 *  - retry: to <queue>.retry with the lane as routing key;
 *  - DLQ: to <queue>.dlx with routing key <error_class>.<error_code>; a
 *    body that is not an envelope goes there with its bytes unchanged;
 *  - replay (dlqctl): back to <queue> through the default exchange;
 *  - redelivery (dlqd's poison guard, classic main queues): back to <queue>
 *    through the default exchange, everything as it came plus the count of
 *    redeliveries in HDR_REDELIVERIES.
 *  - deferred retry: a retry the retry budget did not admit, back to a
 *    delay lane unchanged but for next_retry_at (no attempt counted).
 * Envelope bodies are spliced, never re-encoded: every member keeps the
 * producer's bytes except those the copy sets, and new members go at the
 * end. Pure: no I/O, no logging.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/envelope.h"
#include "common/result.h"
#include "common/taxonomy.h"
#include "common/topology.h"
#include "common/util.h"

/* AMQP headers of retry and DLQ copies (design.md Part 1), defined once. */
#define HDR_MESSAGE_ID	     "x-dlqd-message-id"
#define HDR_TRACE_ID	     "x-dlqd-trace-id"
#define HDR_ATTEMPT	     "x-dlqd-attempt"
#define HDR_ERROR_CODE	     "x-dlqd-error-code"
#define HDR_ERROR_CLASS	     "x-dlqd-error-class"
#define HDR_DEAD_LETTERED_AT "x-dlqd-dead-lettered-at"
#define HDR_ERROR_DETAIL     "x-dlqd-error-detail"
/* dlqd's own additions */
#define HDR_PUBLISH_SEQ		"x-dlqd-publish-seq" /* matches a basic.return to its publish */
#define HDR_ORIGINAL_EXPIRATION "x-dlqd-original-expiration"
#define HDR_ORIGINAL_USER_ID	"x-dlqd-original-user-id"
#define HDR_REPLAY_COUNT	"x-dlqd-replay-count"
#define HDR_REPLAYED_AT		"x-dlqd-replayed-at"
/* Times a classic main queue redelivered the message unsettled (the poison
 * guard); also on a POISON_MESSAGE DLQ copy, as evidence. */
#define HDR_REDELIVERIES "x-dlqd-redeliveries"
/* The broker's count on a quorum queue (RabbitMQ 3.10 and later). */
#define HDR_DELIVERY_COUNT  "x-delivery-count"
#define HDR_BUDGET_DEFERRED "x-dlqd-budget-deferred" /* times the retry budget put it back */

/* One AMQP header (or property), flattened by an adapter. */
enum header_kind {
	HEADER_STRING, /* s, s_len (bytes, not NUL-terminated) */
	HEADER_INT,    /* i */
	HEADER_BOOL,   /* i is 0 or 1 */
	HEADER_FLOAT,  /* f */
	HEADER_OTHER,  /* a table, an array, void...: only its adapter knows it */
};

struct header {
	const char *key;
	size_t key_len;
	enum header_kind kind;
	const char *s;
	size_t s_len;
	int64_t i;
	double f;
	/* A header kept from the original: the adapter's own value, which it
	 * sends as it came. NULL for a header the copy sets. */
	const void *raw;
};

/* The original delivery as an adapter sees it; everything is borrowed. */
struct copy_source {
	const void *body;
	size_t len;
	const struct header *headers; /* with raw set */
	size_t n_headers;
	const char *expiration; /* the property's value, NULL when unset */
	size_t expiration_len;
	const char *user_id; /* likewise */
	size_t user_id_len;
};

/* What happened to the message, for a retry or DLQ copy. */
struct failure {
	const char *error_code;
	enum error_class error_class;
	const char *cause_code; /* for RETRY_EXHAUSTED: the last real code, else NULL */
	enum error_class cause_class;
	uint32_t attempt;	     /* the new attempt count */
	uint64_t now_usec;	     /* realtime */
	uint64_t next_retry_at_usec; /* realtime; set for a retry copy, 0 for a DLQ copy */
	uint64_t lane_ms;	     /* retry: the delay lane */
	const struct result *result; /* evidence; may be NULL */
	const char *detail;	     /* why the body is not an envelope, or NULL */
	uint64_t redeliveries;	     /* POISON_MESSAGE: the count, set as HDR_REDELIVERIES */
};

/* Properties a copy does not keep (their values move into headers). */
enum {
	COPY_DROP_EXPIRATION = 1 << 0, /* a per-message TTL breaks a delay lane's FIFO */
	COPY_DROP_USER_ID = 1 << 1,    /* the broker refuses a foreign user_id */
};

#define COPY_HEADERS_SET 10 /* the most headers a copy sets itself */

struct copy {
	char exchange[TOPOLOGY_NAME_MAX]; /* "" = the default exchange */
	char routing_key[TOPOLOGY_NAME_MAX];
	const char *body; /* the copy's bytes: owned_body or the source's */
	size_t len;
	struct header *headers; /* the complete list, in order (malloc'd) */
	size_t n_headers;
	unsigned drop_props; /* COPY_DROP_*; every other property is kept */
	/* Retry and DLQ copies say application/json when the original named no
	 * content type; a replay keeps the properties as they are. Every copy
	 * is persistent (a retry must survive a broker restart). */
	bool default_content_type;

	char *owned_body;
	char stamp[TIMESTAMP_MAX]; /* dead_lettered_at / replayed_at header value */
};

/*
 * The copy borrows from src, env and f (header values point into them, and
 * into the struct copy itself: do not move it); they must outlive it.
 *
 * The retry or DLQ copy of src after f. env is NULL for a body that is not
 * an envelope (its bytes go unchanged, f->detail in x-dlqd-error-detail).
 * A copy is a DLQ copy when f->next_retry_at_usec is 0. Returns 0 or
 * -ENOMEM; release with copy_done().
 */
int copy_failure(const char *queue, const struct copy_source *src, const struct envelope *env,
		 const struct failure *f, struct copy *out);

/*
 * The replay copy of a DLQ message (dlqctl): for an envelope, attempt 0,
 * replay_count + 1 (saturating), replayed_at now, next_retry_at removed;
 * error_code, last_error, errors and dead_lettered_at stay as history. Any
 * other body goes unchanged. replay_count is the count so far (from the
 * header or the body, whichever is larger).
 */
int copy_replay(const char *queue, const struct copy_source *src, const struct envelope *env,
		uint64_t replay_count, uint64_t now_usec, struct copy *out);

/*
 * The redelivery copy of a delivery the classic main queue redelivered
 * unsettled (dlqd's poison guard): to <queue> through the default exchange,
 * the body and every property as they came (user_id excepted: it moves to
 * HDR_ORIGINAL_USER_ID, as the broker refuses a foreign one), every header
 * kept but HDR_PUBLISH_SEQ, and HDR_REDELIVERIES = redeliveries. The copy
 * arrives without the redelivered flag, so it is handled as usual; if it is
 * redelivered in turn, its header says how often this happened before.
 */
int copy_redelivery(const char *queue, const struct copy_source *src, uint64_t redeliveries,
		    struct copy *out);

/*
 * The deferred copy of a retry (attempt > 0) that the retry budget did not
 * admit: to <queue>.retry with the lane as routing key, like a retry copy,
 * but nothing happened to it: the body keeps every byte (attempt,
 * last_error, errors included) except next_retry_at, set to
 * next_retry_at_usec; the headers set message id, trace id, the unchanged
 * attempt and x-dlqd-budget-deferred (how many times so far, + 1), and keep
 * every other header of src (its error code and class among them). env must
 * not be NULL. Returns 0 or -ENOMEM; release with copy_done().
 */
int copy_defer(const char *queue, const struct copy_source *src, const struct envelope *env,
	       uint64_t lane_ms, uint64_t next_retry_at_usec, struct copy *out);

void copy_done(struct copy *c);

/* The header called key in h[0..n), or NULL. */
const struct header *header_find(const struct header *h, size_t n, const char *key);
