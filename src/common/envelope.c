/*
 * envelope: checks a message body against the envelope rules and reads the
 * fields dlqd needs, leaving the bytes alone. Pure: no I/O, no logging.
 *
 * Decoding rules (breaking any of them makes the body "not an envelope":
 * envelope_decode() returns -EINVAL and a one-line, printable-ASCII reason;
 * docs/envelope.md is the reference for operators and producers):
 *  - The body is JSON as jsonscan accepts it: UTF-8, at most
 *    JSCAN_DEPTH_MAX levels, no duplicate names in any object, nothing after
 *    the value. Numbers of any size and precision are fine: they are never
 *    converted. The top level is an object. An empty body is invalid.
 *  - message_id: required, a non-empty string of at most ENVELOPE_ID_MAX
 *    bytes (unescaped) without control characters (0x00-0x1f, 0x7f).
 *  - payload: required, an object.
 *  - trace_id, schema_version: optional strings, same limits as message_id
 *    but may be empty. They end up in AMQP headers, HTTP headers and journal
 *    fields, hence the control-character ban.
 *  - attempt, max_attempt: optional integers written without fraction or
 *    exponent ("2.0" and "1e3" are refused): max_attempt 0..ENVELOPE_ATTEMPT_MAX,
 *    attempt one more (the copy of a message exhausted at that bound).
 *  - first_seen_at, next_retry_at: optional RFC 3339 timestamps (strings).
 *  - error_code, error_class, dead_lettered_at (strings), last_error
 *    (object), errors (array) written by an earlier copy: only their JSON
 *    type is checked. replay_count (dlqctl's) is read when it is a
 *    non-negative integer, and ignored otherwise.
 *  - An optional field whose value is null counts as absent.
 *  - Every other field is the producer's and is never looked at.
 */
#include "common/envelope.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/jsonscan.h"
#include "common/util.h"

#define ID_BUF (ENVELOPE_ID_MAX + 1)

struct envelope_impl {
	struct envelope pub;
	struct jscan_doc doc;
	char *strings; /* the id and history strings, packed (pack_strings()) */
};

/* Where the strings are unescaped while the body is checked: on the stack,
 * so a decoded envelope keeps their bytes only, not five times ID_BUF. */
struct scratch {
	char message_id[ID_BUF], trace_id[ID_BUF], schema_version[ID_BUF];
	char error_code[ID_BUF], error_class[ID_BUF];
};

/*
 * Writes the reason and returns -EINVAL. The reason travels in an AMQP
 * header and in log lines, so anything outside printable ASCII becomes '?'.
 */
_printf_(3, 4) static int invalid(char *why, size_t why_len, const char *fmt, ...)
{
	va_list ap;

	if (!why || why_len == 0)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(why, why_len, fmt, ap);
	va_end(ap);
	for (char *p = why; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	return -EINVAL;
}

/* Integers are named apart from other numbers in messages, as producers
 * think of them. */
static bool is_integer_text(const char *p, size_t n)
{
	return n > 0 && !memchr(p, '.', n) && !memchr(p, 'e', n) && !memchr(p, 'E', n);
}

static const char *type_name(const struct envelope *e, const struct jscan_member *m)
{
	if (m->kind == JSCAN_NUMBER && is_integer_text(e->body + m->value.off, m->value.len))
		return "integer";
	return jscan_kind_name(m->kind);
}

/* The member, or NULL when absent or null. */
static const struct jscan_member *get_optional(const struct envelope *e, const char *key)
{
	const struct jscan_member *m = jscan_member(e->doc, key);

	return m && m->kind == JSCAN_NULL ? NULL : m;
}

static int check_id(struct envelope *e, const char *key, bool required, char buf[ID_BUF],
		    const char **out, char *why, size_t why_len)
{
	/* A required field set to null is a wrong type, not a missing one. */
	const struct jscan_member *m = required ? jscan_member(e->doc, key) : get_optional(e, key);
	size_t n;

	*out = "";
	if (!m) {
		if (required)
			return invalid(why, why_len, "%s: missing", key);
		return 0;
	}
	if (m->kind != JSCAN_STRING)
		return invalid(why, why_len, "%s: expected string, got %s", key, type_name(e, m));
	n = jscan_string(e->body, m->value, buf, ID_BUF, NULL);
	if (n == 0 && required)
		return invalid(why, why_len, "%s: empty", key);
	if (n > ENVELOPE_ID_MAX)
		return invalid(why, why_len, "%s: longer than %d bytes (%zu)", key, ENVELOPE_ID_MAX,
			       n);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)buf[i];
		if (c < 0x20 || c == 0x7f)
			return invalid(why, why_len, "%s: control character 0x%02x at byte %zu",
				       key, c, i);
	}
	*out = buf;
	return 0;
}

/* A non-negative integer token's value, saturated at max; -1 otherwise. */
static int64_t count_value(const char *p, size_t n, int64_t max)
{
	int64_t v = 0;

	if (n > 1 && p[0] == '-' && p[1] == '0' && n == 2)
		return 0; /* "-0" */
	if (!is_integer_text(p, n) || p[0] == '-')
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (v > (max - (p[i] - '0')) / 10)
			return max;
		v = v * 10 + (p[i] - '0');
	}
	return v;
}

static int check_count(struct envelope *e, const char *key, int64_t max, uint32_t *out,
		       bool *present, char *why, size_t why_len)
{
	const struct jscan_member *m = get_optional(e, key);
	const char *text;
	int64_t v;

	if (present)
		*present = false;
	if (!m)
		return 0;
	text = e->body + m->value.off;
	if (m->kind != JSCAN_NUMBER)
		return invalid(why, why_len, "%s: must be an integer 0..%" PRId64 ", got %s", key,
			       max, type_name(e, m));
	v = count_value(text, m->value.len, INT64_MAX);
	if (v < 0 || v > max)
		return invalid(why, why_len, "%s: must be an integer 0..%" PRId64 ", got %.*s%s",
			       key, max, (int)MIN(m->value.len, 40u), text,
			       m->value.len > 40 ? "..." : "");
	*out = (uint32_t)v;
	if (present)
		*present = true;
	return 0;
}

static int check_timestamp(struct envelope *e, const char *key, uint64_t *out, bool *present,
			   char *why, size_t why_len)
{
	const struct jscan_member *m = get_optional(e, key);
	char s[TIMESTAMP_MAX * 2];
	bool nul;
	size_t n;

	*present = false;
	if (!m)
		return 0;
	if (m->kind != JSCAN_STRING)
		return invalid(why, why_len, "%s: expected RFC 3339 string, got %s", key,
			       type_name(e, m));
	n = jscan_string(e->body, m->value, s, sizeof(s), &nul);
	/* An embedded NUL would hide trailing junk from parse_timestamp(). */
	if (nul || n >= sizeof(s) || parse_timestamp(s, out) < 0)
		return invalid(why, why_len, "%s: not an RFC 3339 timestamp: \"%.64s\"", key, s);
	*present = true;
	return 0;
}

static int check_type(struct envelope *e, const char *key, enum jscan_kind kind, char *why,
		      size_t why_len)
{
	const struct jscan_member *m = get_optional(e, key);

	if (!m || m->kind == kind)
		return 0;
	return invalid(why, why_len, "%s: expected %s, got %s", key, jscan_kind_name(kind),
		       type_name(e, m));
}

/* A string field of an earlier copy, for dlqctl: cut, never refused. */
static const char *history_string(struct envelope *e, const char *key, char buf[ID_BUF])
{
	const struct jscan_member *m = get_optional(e, key);

	buf[0] = '\0';
	if (m && m->kind == JSCAN_STRING)
		jscan_string(e->body, m->value, buf, ID_BUF, NULL);
	return buf;
}

static void read_history(struct envelope_impl *impl, struct scratch *sc)
{
	struct envelope *e = &impl->pub;
	const struct jscan_member *m;
	char ts[ID_BUF];

	e->error_code = history_string(e, "error_code", sc->error_code);
	e->error_class = history_string(e, "error_class", sc->error_class);
	if (history_string(e, "dead_lettered_at", ts)[0] &&
	    parse_timestamp(ts, &e->dead_lettered_at_usec) < 0)
		e->dead_lettered_at_usec = 0;
	m = get_optional(e, "replay_count");
	if (m && m->kind == JSCAN_NUMBER) {
		int64_t v = count_value(e->body + m->value.off, m->value.len,
					ENVELOPE_REPLAY_COUNT_MAX);
		e->replay_count = v > 0 ? (uint64_t)v : 0;
	}
}

static int check_fields(struct envelope_impl *impl, struct scratch *sc, uint64_t now_usec,
			char *why, size_t why_len)
{
	struct envelope *e = &impl->pub;
	const struct jscan_member *payload;
	uint64_t ignored;
	bool present;
	int r;

	r = check_id(e, "message_id", true, sc->message_id, &e->message_id, why, why_len);
	if (r < 0)
		return r;
	payload = jscan_member(e->doc, "payload");
	if (!payload)
		return invalid(why, why_len, "payload: missing");
	if (payload->kind != JSCAN_OBJECT)
		return invalid(why, why_len, "payload: expected object, got %s",
			       type_name(e, payload));
	if ((r = check_id(e, "trace_id", false, sc->trace_id, &e->trace_id, why, why_len)) < 0 ||
	    (r = check_id(e, "schema_version", false, sc->schema_version, &e->schema_version, why,
			  why_len)) < 0 ||
	    /* A copy of a message exhausted at max_attempt ENVELOPE_ATTEMPT_MAX
	     * says one more: dlqd and dlqctl must read their own copies. */
	    (r = check_count(e, "attempt", ENVELOPE_ATTEMPT_MAX + 1, &e->attempt, NULL, why,
			     why_len)) < 0 ||
	    (r = check_count(e, "max_attempt", ENVELOPE_ATTEMPT_MAX, &e->max_attempt,
			     &e->has_max_attempt, why, why_len)) < 0 ||
	    (r = check_timestamp(e, "first_seen_at", &e->first_seen_at_usec, &e->has_first_seen_at,
				 why, why_len)) < 0 ||
	    (r = check_timestamp(e, "next_retry_at", &ignored, &present, why, why_len)) < 0 ||
	    (r = check_type(e, "error_code", JSCAN_STRING, why, why_len)) < 0 ||
	    (r = check_type(e, "error_class", JSCAN_STRING, why, why_len)) < 0 ||
	    (r = check_type(e, "dead_lettered_at", JSCAN_STRING, why, why_len)) < 0 ||
	    (r = check_type(e, "last_error", JSCAN_OBJECT, why, why_len)) < 0 ||
	    (r = check_type(e, "errors", JSCAN_ARRAY, why, why_len)) < 0)
		return r;
	if (!e->has_first_seen_at)
		e->first_seen_at_usec = now_usec;
	read_history(impl, sc);
	return 0;
}

static bool in_scratch(const struct scratch *sc, const char *p)
{
	return (const char *)sc <= p && p < (const char *)(sc + 1);
}

/* Moves the strings that point into sc to one block of their own size. */
static int pack_strings(struct envelope_impl *impl, const struct scratch *sc)
{
	struct envelope *e = &impl->pub;
	const char **fields[] = { &e->message_id, &e->trace_id, &e->schema_version, &e->error_code,
				  &e->error_class };
	size_t total = 0, o = 0;

	for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
		if (in_scratch(sc, *fields[i]))
			total += strlen(*fields[i]) + 1;
	if (total == 0)
		return 0;
	impl->strings = malloc(total);
	if (!impl->strings)
		return -ENOMEM;
	for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
		size_t n;

		if (!in_scratch(sc, *fields[i]))
			continue;
		n = strlen(*fields[i]) + 1;
		memcpy(impl->strings + o, *fields[i], n);
		*fields[i] = impl->strings + o;
		o += n;
	}
	return 0;
}

int envelope_decode(const void *body, size_t len, uint64_t now_usec, struct envelope **out,
		    char *why, size_t why_len)
{
	_cleanup_(envelope_freep) struct envelope *e = NULL;
	struct envelope_impl *impl;
	struct jscan_error err;
	struct scratch sc;
	unsigned line, col;
	int r;

	*out = NULL;
	if (why && why_len)
		why[0] = '\0';
	if (len == 0)
		return invalid(why, why_len, "empty body");
	impl = calloc(1, sizeof(*impl));
	if (!impl)
		return -ENOMEM;
	e = &impl->pub;
	e->body = body;
	e->len = len;
	e->doc = &impl->doc;
	r = jscan_parse(body, len, &impl->doc, &err);
	if (r == -EINVAL) {
		jscan_position(body, len, err.offset, &line, &col);
		return invalid(why, why_len, "invalid JSON at line %u column %u: %s", line, col,
			       err.text);
	}
	if (r < 0)
		return r;
	if (impl->doc.kind != JSCAN_OBJECT) {
		const char *p = body;
		size_t i = 0;
		while (i < len && strchr(" \t\r\n", p[i]))
			i++;
		return invalid(why, why_len, "body: expected object, got %s",
			       impl->doc.kind == JSCAN_NUMBER && is_integer_text(p + i, len - i)
				       ? "integer"
				       : jscan_kind_name(impl->doc.kind));
	}
	if ((r = check_fields(impl, &sc, now_usec, why, why_len)) < 0 ||
	    (r = pack_strings(impl, &sc)) < 0)
		return r;
	*out = TAKE_PTR(e);
	return 0;
}

struct envelope *envelope_free(struct envelope *e)
{
	struct envelope_impl *impl;

	if (!e)
		return NULL;
	impl = (struct envelope_impl *)((char *)e - offsetof(struct envelope_impl, pub));
	jscan_doc_done(&impl->doc);
	free(impl->strings);
	free(impl);
	return NULL;
}

void envelope_freep(struct envelope **e)
{
	*e = envelope_free(*e);
}

const char *envelope_payload(const struct envelope *e, size_t *len)
{
	const struct jscan_member *m = jscan_member(e->doc, "payload");

	*len = m->value.len;
	return e->body + m->value.off;
}
