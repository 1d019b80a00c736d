/*
 * dlqrecord: what dlqctl knows about one DLQ message. It reads the x-dlqd-*
 * headers dlqd sets and the envelope in the body (through envelope_decode()),
 * and renders the message as JSON (list --json, show, purge --archive). The
 * replay copy is the copy module's (copy_replay()). Pure: no I/O; the AMQP
 * adapter (dlqscan) hands it plain structs (struct header, copy.h).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/copy.h"
#include "common/envelope.h"
#include "common/util.h"

/* One DLQ delivery as the adapter sees it; everything is borrowed. */
struct dlq_message {
	const void *body;
	size_t len;
	const struct header *headers;
	size_t n_headers;
	const struct header *props; /* set AMQP properties, by their AMQP names */
	size_t n_props;
};

#define DLQRECORD_STR_MAX (ENVELOPE_ID_MAX + 1)
/* The largest replay_count read; a replay adds one, and that must not wrap. */
#define DLQRECORD_REPLAY_COUNT_MAX ENVELOPE_REPLAY_COUNT_MAX

/*
 * The strings are what the message says, as valid UTF-8 (a byte that is not
 * becomes the text \xNN, see dlqtext.h), cut at a character boundary to
 * DLQRECORD_STR_MAX - 1 bytes. They may hold controls: whoever prints one
 * escapes it (dlqtext_term, dlqtext_json).
 */
struct dlq_record {
	char message_id[DLQRECORD_STR_MAX];
	char trace_id[DLQRECORD_STR_MAX];
	char error_code[DLQRECORD_STR_MAX];
	char error_class[DLQRECORD_STR_MAX];
	char schema_version[DLQRECORD_STR_MAX];
	int64_t attempt;		/* -1 when unknown */
	uint64_t replay_count;		/* replays so far, <= DLQRECORD_REPLAY_COUNT_MAX */
	uint64_t dead_lettered_at_usec; /* realtime; 0 when unknown */
	bool envelope;			/* the body is a valid envelope */
};

/*
 * Fills r from m. Each field comes from the x-dlqd-* header first, then the
 * envelope (when the body is one), then the AMQP properties (message_id,
 * timestamp). When the body is a valid envelope and env is not NULL, *env
 * receives it (the caller frees it). An envelope is never looked for in a
 * body whose header says INVALID_ENVELOPE or MESSAGE_TOO_LARGE: such bytes
 * are replayed unchanged. Returns 0 or -ENOMEM.
 */
int dlqrecord_parse(const struct dlq_message *m, uint64_t now_usec, struct dlq_record *r,
		    struct envelope **env);

/* What dlqrecord_json() writes. */
enum {
	DLQRECORD_JSON_FULL = 1 << 0,	  /* headers, properties and body too */
	DLQRECORD_JSON_RAW_BODY = 1 << 1, /* body as its exact text (or base64) */
	DLQRECORD_JSON_PRETTY = 1 << 2,	  /* indented */
};

/*
 * Appends one message as a JSON object to out: message_id, trace_id,
 * error_code, error_class, attempt, schema_version, replay_count,
 * dead_lettered_at, age_seconds, valid_envelope, body_bytes, and with FULL
 * the headers, the properties and the body: parsed JSON (the envelope) or,
 * with RAW_BODY or for a body that is not JSON, "body_text" (UTF-8) or
 * "body_base64". Whatever a message holds gives a complete object: a header
 * value that is not UTF-8 is {"base64": ...}, a NaN or infinite float
 * {"float": "NaN"|"Infinity"|"-Infinity"}, a header key that is not UTF-8
 * has \xNN escapes. -ENOMEM (or over out's maximum) leaves out unchanged:
 * no key is ever silently left out. The text is jansson's: run it through
 * dlqtext_json() before a terminal sees it.
 */
int dlqrecord_json(const struct dlq_message *m, const struct dlq_record *r, uint64_t now_usec,
		   unsigned flags, struct buf *out);
