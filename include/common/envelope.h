/*
 * envelope: the JSON message body (design.md Part 1, "Envelope"). Decodes and
 * validates a body, hands out the payload for the handler, and encodes the
 * retry and DLQ copies with last_error, a bounded errors history and
 * dead_lettered_at. One of the two jansson users (with taxonomy). Pure: no I/O.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/result.h"
#include "common/taxonomy.h"

/* Bounds that make a body invalid rather than expensive. */
#define ENVELOPE_ATTEMPT_MAX 1000000 /* larger attempt / max_attempt values */
#define ENVELOPE_ID_MAX	     256     /* message_id, trace_id, schema_version */
#define ENVELOPE_ERRORS_KEPT 10	     /* entries of the "errors" history */

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

struct envelope {
	const char *message_id;	    /* never NULL, never empty */
	const char *trace_id;	    /* "" when absent */
	const char *schema_version; /* "" when absent */
	uint32_t attempt;	    /* failures so far (0 when absent) */
	uint32_t max_attempt;	    /* valid when has_max_attempt */
	bool has_max_attempt;
	uint64_t first_seen_at_usec; /* realtime; "now" when absent */
	void *priv;		     /* the decoded JSON document */
};

/*
 * Decodes body. On success returns 0 and *out. On a body that is not a valid
 * envelope returns -EINVAL and writes a one-line reason to why (e.g.
 * "payload: expected object, got array"); -ENOMEM on allocation failure.
 * now_usec (realtime) is used for a missing first_seen_at.
 */
int envelope_decode(const void *body, size_t len, uint64_t now_usec, struct envelope **out,
		    char *why, size_t why_len);
struct envelope *envelope_free(struct envelope *e);
void envelope_freep(struct envelope **e);

/* The payload as compact JSON (malloc'd, NUL-terminated); NULL on OOM. */
char *envelope_payload(const struct envelope *e, size_t *len);

/* What happened, for the copy dlqd publishes after a failure. */
struct failure {
	const char *error_code;
	enum error_class error_class;
	const char *cause_code; /* for RETRY_EXHAUSTED: the last real code, else NULL */
	enum error_class cause_class;
	uint32_t attempt;	     /* the new attempt count */
	uint64_t now_usec;	     /* realtime */
	uint64_t next_retry_at_usec; /* realtime, 0 for a DLQ copy */
	bool dead_lettered;	     /* adds dead_lettered_at */
	const struct result *result; /* evidence; may be NULL */
};

/*
 * Encodes the copy to publish: the original document with attempt,
 * error_code, error_class, first_seen_at (if it was missing), next_retry_at
 * (retries), dead_lettered_at (DLQ), last_error and the errors history (the
 * last ENVELOPE_ERRORS_KEPT entries) updated; all other fields unchanged.
 * Returns a malloc'd buffer or NULL on OOM.
 */
char *envelope_encode_failure(struct envelope *e, const struct failure *f, size_t *len);
