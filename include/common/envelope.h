/*
 * envelope: the JSON message body (design.md Part 1, "Envelope"; every limit
 * in docs/envelope.md). Validates a body once and exposes the fields dlqd
 * reads, while the body itself stays the producer's bytes: the payload is a
 * byte range of it, never decoded numbers and re-encoded text. The copies
 * dlqd publishes are spliced from those ranges by the copy module. Pure: no
 * I/O, no logging.
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

#define ENVELOPE_REPLAY_COUNT_MAX (INT64_MAX - 1) /* so + 1 never wraps */

struct jscan_doc;

struct envelope {
	const char *message_id;	    /* never NULL, never empty */
	const char *trace_id;	    /* "" when absent */
	const char *schema_version; /* "" when absent */
	uint32_t attempt;	    /* failures so far (0 when absent) */
	uint32_t max_attempt;	    /* valid when has_max_attempt */
	bool has_max_attempt;
	uint64_t first_seen_at_usec; /* realtime; "now" when absent */
	bool has_first_seen_at;
	/* Written by an earlier copy; read by dlqctl. "" / 0 when absent. */
	const char *error_code; /* cut to ENVELOPE_ID_MAX bytes */
	const char *error_class;
	uint64_t dead_lettered_at_usec;
	uint64_t replay_count; /* at most ENVELOPE_REPLAY_COUNT_MAX */

	const char *body; /* the decoded bytes (borrowed) */
	size_t len;
	const struct jscan_doc *doc; /* the body's top-level members */
};

/*
 * Decodes body. On success returns 0 and *out, which borrows body: the
 * bytes must stay valid and unchanged until envelope_free(). On a body that
 * is not a valid envelope returns -EINVAL and writes a one-line,
 * printable-ASCII reason to why (e.g. "payload: expected object, got
 * array"); -ENOMEM on allocation failure. now_usec (realtime) is used for a
 * missing first_seen_at.
 */
int envelope_decode(const void *body, size_t len, uint64_t now_usec, struct envelope **out,
		    char *why, size_t why_len);
struct envelope *envelope_free(struct envelope *e);
void envelope_freep(struct envelope **e);

/* The payload: the producer's bytes of the "payload" value, exactly (a
 * pointer into the body, not NUL-terminated). */
const char *envelope_payload(const struct envelope *e, size_t *len);
