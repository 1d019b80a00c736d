/*
 * dlqrecord: what dlqctl knows about one DLQ message. It reads the x-dlqd-*
 * headers dlqd sets and the envelope in the body, rewrites a message for
 * replay, and renders it as JSON (list --json, show, purge --archive).
 * Pure: no I/O; the AMQP adapter (dlqscan) hands it plain structs. It is a
 * jansson user next to envelope.c: it reuses envelope_decode() for the
 * validation and only reads or sets the fields dlqctl owns.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/envelope.h"
#include "common/util.h"

/* One AMQP header (or property), flattened by the adapter. */
enum dlq_hkind {
	DLQ_H_STRING, /* s, s_len (bytes, not NUL-terminated) */
	DLQ_H_INT,    /* i */
	DLQ_H_BOOL,   /* i is 0 or 1 */
	DLQ_H_FLOAT,  /* f */
	DLQ_H_OTHER,  /* a table, an array, void...: shown as its kind only */
};

struct dlq_header {
	const char *key;
	size_t key_len;
	enum dlq_hkind kind;
	const char *s;
	size_t s_len;
	int64_t i;
	double f;
};

/* One DLQ delivery as the adapter sees it; everything is borrowed. */
struct dlq_message {
	const void *body;
	size_t len;
	const struct dlq_header *headers;
	size_t n_headers;
	const struct dlq_header *props; /* set AMQP properties, by their AMQP names */
	size_t n_props;
};

#define DLQRECORD_STR_MAX (ENVELOPE_ID_MAX + 1)
/* The largest replay_count read; a replay adds one, and that must not wrap. */
#define DLQRECORD_REPLAY_COUNT_MAX (INT64_MAX - 1)

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

/* Header lookup by key; NULL when absent. */
const struct dlq_header *dlqrecord_header(const struct dlq_header *h, size_t n, const char *key);

/*
 * The replay copy of a message: for an envelope a new body with attempt 0,
 * replay_count + 1, replayed_at now and next_retry_at removed (error_code,
 * last_error, errors and dead_lettered_at are kept as history); for any
 * other body the bytes unchanged (body NULL). The headers to set
 * (x-dlqd-attempt 0, x-dlqd-replay-count, x-dlqd-replayed-at) are in set[],
 * and dlqrecord_replay_drops() names those to remove.
 */
#define DLQRECORD_REPLAY_SET 3
struct dlq_replay {
	char *body; /* malloc'd; NULL = publish the original bytes */
	size_t len;
	char replayed_at[TIMESTAMP_MAX];
	struct dlq_header set[DLQRECORD_REPLAY_SET];
	size_t n_set;
};
int dlqrecord_replay(const struct envelope *env, const struct dlq_record *r, uint64_t now_usec,
		     struct dlq_replay *out);
void dlqrecord_replay_done(struct dlq_replay *out);
/* True for a header the replay copy must not carry over (set or stale). */
bool dlqrecord_replay_drops(const char *key, size_t key_len);

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
