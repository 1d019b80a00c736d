/*
 * envelope: decodes the JSON message body once, hands the payload to the
 * handler, and encodes the retry / DLQ copy. Pure: no I/O, no logging.
 *
 * Decoding rules (breaking any of them makes the body "not an envelope":
 * envelope_decode() returns -EINVAL and a one-line, printable-ASCII reason):
 *  - The body is UTF-8 JSON (no BOM, no invalid sequences, no lone
 *    surrogates), at most 2048 levels deep (jansson's parser limit, enforced
 *    before recursion goes further, so hostile nesting cannot blow the
 *    stack), no duplicate keys at any level, nothing but whitespace after
 *    the value. "\u0000" is allowed inside string values (it round-trips),
 *    never inside keys. The top level is an object. An empty body is invalid.
 *  - message_id: required, a non-empty string of at most ENVELOPE_ID_MAX
 *    bytes without control characters (0x00-0x1f, 0x7f).
 *  - payload: required, an object.
 *  - trace_id, schema_version: optional strings, same limits as message_id
 *    but may be empty. They end up in AMQP headers, HTTP headers and journal
 *    fields, hence the control-character ban.
 *  - attempt, max_attempt: optional integers 0..ENVELOPE_ATTEMPT_MAX. Reals
 *    (even 2.0), strings, negative and larger values are invalid.
 *  - first_seen_at, next_retry_at: optional RFC 3339 timestamps (strings).
 *  - error_code, error_class, dead_lettered_at (strings), last_error
 *    (object), errors (array) written by an earlier copy: only their JSON
 *    type is checked; the values are kept as they are.
 *  - An optional field whose value is null counts as absent.
 *  - Every other field is kept and re-encoded unchanged (same key order;
 *    numbers keep their value, reals are printed by jansson with %.17g).
 *
 * Encoding a failure sets attempt, error_code, error_class, first_seen_at
 * (only when absent), next_retry_at (UTC with milliseconds, or removed for a
 * DLQ copy), dead_lettered_at (DLQ), and last_error = {error_code,
 * error_class, at, attempt, [cause_code, cause_class], [kind, http_status |
 * transport+detail | timeout | exit_code | signal+signal_name | detail,
 * handler_code, handler_class, retry_after_ms, evidence, evidence_truncated,
 * duration_ms]}; the same object is appended to errors, which keeps the
 * last ENVELOPE_ERRORS_KEPT entries. Strings taken from the handler result
 * are made valid UTF-8 (bad bytes and NUL become U+FFFD), so a hostile
 * stderr cannot make the copy unparsable. New keys go after existing ones.
 *
 * The decoded document is never modified after envelope_decode(): each
 * envelope_encode_failure() call works on a shallow copy of the top-level
 * object (the payload and other values are shared, not copied), so calling
 * it several times is safe and every result reflects only that call's
 * failure. Encoded output is bounded by a multiple of the body size.
 */
#include "common/envelope.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

/*
 * Re-encoding may grow a body: jansson prints "2e-7" as
 * "1.9999999999999999e-7" (at most ~6x). The slack covers what
 * encode_failure adds (last_error plus the errors history, each evidence
 * string at most 6 bytes per input byte once escaped).
 */
#define DUMP_GROWTH	    8
#define DUMP_SLACK	    (1024 * 1024)
#define EXPECTED_LAST_ERROR (512 + RESULT_EVIDENCE_MAX)

struct envelope_impl {
	struct envelope pub; /* pub.priv is root */
	json_t *root;
	json_t *payload; /* borrowed from root */
	size_t body_len;
};

static struct envelope_impl *impl_of(const struct envelope *e)
{
	return (struct envelope_impl *)((char *)e - offsetof(struct envelope_impl, pub));
}

static void jfreep(json_t **j)
{
	json_decref(*j);
}

/*
 * Writes the reason and returns -EINVAL. The reason travels in an AMQP
 * header and in log lines, so anything outside printable ASCII (jansson
 * quotes the offending input bytes) becomes '?'.
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

/* Returns the value of an optional key, NULL when absent or null. */
static json_t *get_optional(json_t *root, const char *key)
{
	json_t *v = json_object_get(root, key);

	return json_is_null(v) ? NULL : v;
}

static int check_id(json_t *root, const char *key, bool required, const char **out, char *why,
		    size_t why_len)
{
	/* A required field set to null is a wrong type, not a missing one. */
	json_t *v = required ? json_object_get(root, key) : get_optional(root, key);
	const char *s;
	size_t n;

	if (!v) {
		if (required)
			return invalid(why, why_len, "%s: missing", key);
		*out = "";
		return 0;
	}
	if (!json_is_string(v))
		return invalid(why, why_len, "%s: expected string, got %s", key,
			       util_json_type_name(v));
	s = json_string_value(v);
	n = json_string_length(v);
	if (n == 0 && required)
		return invalid(why, why_len, "%s: empty", key);
	if (n > ENVELOPE_ID_MAX)
		return invalid(why, why_len, "%s: longer than %d bytes (%zu)", key, ENVELOPE_ID_MAX,
			       n);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			return invalid(why, why_len, "%s: control character 0x%02x at byte %zu",
				       key, c, i);
	}
	*out = s;
	return 0;
}

static int check_count(json_t *root, const char *key, uint32_t *out, bool *present, char *why,
		       size_t why_len)
{
	json_t *v = get_optional(root, key);
	json_int_t i;

	if (present)
		*present = false;
	if (!v)
		return 0;
	if (json_is_integer(v)) {
		i = json_integer_value(v);
		if (i >= 0 && i <= ENVELOPE_ATTEMPT_MAX) {
			*out = (uint32_t)i;
			if (present)
				*present = true;
			return 0;
		}
		return invalid(why, why_len,
			       "%s: must be an integer 0..%d, got %" JSON_INTEGER_FORMAT, key,
			       ENVELOPE_ATTEMPT_MAX, i);
	}
	if (json_is_real(v))
		return invalid(why, why_len, "%s: must be an integer 0..%d, got %g", key,
			       ENVELOPE_ATTEMPT_MAX, json_real_value(v));
	return invalid(why, why_len, "%s: must be an integer 0..%d, got %s", key,
		       ENVELOPE_ATTEMPT_MAX, util_json_type_name(v));
}

static int check_timestamp(json_t *root, const char *key, uint64_t *out, bool *present, char *why,
			   size_t why_len)
{
	json_t *v = get_optional(root, key);
	const char *s;

	*present = false;
	if (!v)
		return 0;
	if (!json_is_string(v))
		return invalid(why, why_len, "%s: expected RFC 3339 string, got %s", key,
			       util_json_type_name(v));
	s = json_string_value(v);
	/* An embedded NUL would hide trailing junk from parse_timestamp(). */
	if (strlen(s) != json_string_length(v) || parse_timestamp(s, out) < 0)
		return invalid(why, why_len, "%s: not an RFC 3339 timestamp: \"%.64s\"", key, s);
	*present = true;
	return 0;
}

static int check_type(json_t *root, const char *key, json_type type, char *why, size_t why_len)
{
	static const char *const names[] = {
		[JSON_OBJECT] = "object",
		[JSON_ARRAY] = "array",
		[JSON_STRING] = "string",
	};
	json_t *v = get_optional(root, key);

	if (!v || json_typeof(v) == type)
		return 0;
	return invalid(why, why_len, "%s: expected %s, got %s", key, names[type],
		       util_json_type_name(v));
}

int envelope_decode(const void *body, size_t len, uint64_t now_usec, struct envelope **out,
		    char *why, size_t why_len)
{
	_cleanup_(jfreep) json_t *root = NULL;
	_cleanup_free_ struct envelope_impl *impl = NULL;
	struct envelope *e;
	json_error_t err;
	json_t *payload;
	uint64_t ignored;
	bool present;
	int r;

	*out = NULL;
	if (why && why_len)
		why[0] = '\0';
	if (len == 0)
		return invalid(why, why_len, "empty body");
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL,
			  &err);
	if (!root) {
		if (json_error_code(&err) == json_error_out_of_memory)
			return -ENOMEM;
		return invalid(why, why_len, "invalid JSON at line %d column %d: %s", err.line,
			       err.column, err.text);
	}
	if (!json_is_object(root))
		return invalid(why, why_len, "body: expected object, got %s",
			       util_json_type_name(root));

	impl = calloc(1, sizeof(*impl));
	if (!impl)
		return -ENOMEM;
	e = &impl->pub;

	r = check_id(root, "message_id", true, &e->message_id, why, why_len);
	if (r < 0)
		return r;
	payload = json_object_get(root, "payload");
	if (!payload)
		return invalid(why, why_len, "payload: missing");
	if (!json_is_object(payload))
		return invalid(why, why_len, "payload: expected object, got %s",
			       util_json_type_name(payload));

	if ((r = check_id(root, "trace_id", false, &e->trace_id, why, why_len)) < 0 ||
	    (r = check_id(root, "schema_version", false, &e->schema_version, why, why_len)) < 0 ||
	    (r = check_count(root, "attempt", &e->attempt, NULL, why, why_len)) < 0 ||
	    (r = check_count(root, "max_attempt", &e->max_attempt, &e->has_max_attempt, why,
			     why_len)) < 0 ||
	    (r = check_timestamp(root, "first_seen_at", &e->first_seen_at_usec, &present, why,
				 why_len)) < 0)
		return r;
	if (!present)
		e->first_seen_at_usec = now_usec;
	if ((r = check_timestamp(root, "next_retry_at", &ignored, &present, why, why_len)) < 0 ||
	    (r = check_type(root, "error_code", JSON_STRING, why, why_len)) < 0 ||
	    (r = check_type(root, "error_class", JSON_STRING, why, why_len)) < 0 ||
	    (r = check_type(root, "dead_lettered_at", JSON_STRING, why, why_len)) < 0 ||
	    (r = check_type(root, "last_error", JSON_OBJECT, why, why_len)) < 0 ||
	    (r = check_type(root, "errors", JSON_ARRAY, why, why_len)) < 0)
		return r;

	impl->payload = payload;
	impl->body_len = len;
	impl->root = TAKE_PTR(root);
	e->priv = impl->root;
	*out = &TAKE_PTR(impl)->pub;
	return 0;
}

struct envelope *envelope_free(struct envelope *e)
{
	struct envelope_impl *impl;

	if (!e)
		return NULL;
	impl = impl_of(e);
	json_decref(impl->root);
	free(impl);
	return NULL;
}

void envelope_freep(struct envelope **e)
{
	*e = envelope_free(*e);
}

/*
 * A dump target sized up front from the body, so the usual message needs a
 * single allocation and no copy: jansson calls this for every token, which
 * is why it is not a struct buf (one out-of-line call per token).
 */
struct sink {
	char *data;
	size_t len, cap, max;
};

static int sink_cb(const char *p, size_t n, void *userdata)
{
	struct sink *s = userdata;

	if (n > s->max - s->len)
		return -1;
	if (s->len + n >= s->cap) {
		size_t cap = MAX(s->cap * 2, s->len + n + 1);
		char *d;

		cap = MIN(cap, s->max + 1);
		d = realloc(s->data, cap);
		if (!d)
			return -1;
		s->data = d;
		s->cap = cap;
	}
	memcpy(s->data + s->len, p, n);
	s->len += n;
	return 0;
}

/* One pass straight into the returned buffer: no second dump, no final copy. */
static char *dump(const json_t *j, size_t body_len, size_t extra, size_t *len)
{
	struct sink s = { 0 };

	s.max = body_len > (SIZE_MAX - DUMP_SLACK) / DUMP_GROWTH
			? SIZE_MAX / 2
			: body_len * DUMP_GROWTH + DUMP_SLACK;
	s.cap = MIN(body_len + extra + 1, s.max + 1);
	s.data = malloc(s.cap);
	if (!s.data)
		return NULL;
	if (json_dump_callback(j, sink_cb, &s, JSON_COMPACT) < 0) {
		free(s.data);
		return NULL;
	}
	s.data[s.len] = '\0';
	if (len)
		*len = s.len;
	return s.data;
}

char *envelope_payload(const struct envelope *e, size_t *len)
{
	const struct envelope_impl *impl = impl_of(e);

	return dump(impl->payload, impl->body_len, 0, len);
}

/*
 * A JSON string from bytes that may be anything: every byte that does not
 * belong to a valid UTF-8 sequence (and every NUL) becomes U+FFFD, so the
 * result is at most 3 * n bytes.
 */
static json_t *utf8_string(const char *s, size_t n)
{
	static const char replacement[] = "\xef\xbf\xbd";
	const unsigned char *p = (const unsigned char *)s;
	_cleanup_free_ char *clean = NULL;
	size_t i = 0, o = 0, k;

	while (i < n && (k = utf8_seq_len(p + i, n - i)) > 0)
		i += k;
	if (i == n)
		return json_stringn_nocheck(s, n);

	if (n > (SIZE_MAX - 1) / 3)
		return NULL;
	clean = malloc(3 * n + 1);
	if (!clean)
		return NULL;
	memcpy(clean, s, i);
	o = i;
	while (i < n) {
		k = utf8_seq_len(p + i, n - i);
		if (k == 0) {
			memcpy(clean + o, replacement, 3);
			o += 3;
			i++;
		} else {
			memcpy(clean + o, s + i, k);
			o += k;
			i += k;
		}
	}
	return json_stringn_nocheck(clean, o);
}

static json_t *cstr(const char *s)
{
	return utf8_string(s ? s : "", s ? strlen(s) : 0);
}

static json_t *field(const char *s, size_t size)
{
	return utf8_string(s, strnlen(s, size));
}

static const char *class_name(enum error_class c)
{
	const char *s = error_class_to_string(c);

	return s ? s : "UNKNOWN";
}

/* Retries fire within ~100 ms of their time, so their timestamp says ms. */
static char *format_timestamp_msec(uint64_t usec, char buf[static TIMESTAMP_MAX])
{
	char sec[TIMESTAMP_MAX];
	size_t n;

	format_timestamp(usec, sec);
	n = strlen(sec);
	if (n == 0 || sec[n - 1] != 'Z')
		return strscpy(buf, sec, TIMESTAMP_MAX);
	snprintf(buf, TIMESTAMP_MAX, "%.*s.%03uZ", (int)(n - 1), sec,
		 (unsigned)(usec / USEC_PER_MSEC % 1000));
	return buf;
}

static json_t *timestamp(uint64_t usec)
{
	char ts[TIMESTAMP_MAX];

	return json_string_nocheck(format_timestamp(usec, ts));
}

static json_t *signal_name(int sig)
{
	char name[32];
	const char *abbrev = sigabbrev_np(sig);

	if (abbrev)
		snprintf(name, sizeof(name), "SIG%s", abbrev);
	else if (sig >= SIGRTMIN && sig <= SIGRTMAX)
		snprintf(name, sizeof(name), "SIGRTMIN+%d", sig - SIGRTMIN);
	else
		snprintf(name, sizeof(name), "SIG%d", sig);
	return json_string_nocheck(name);
}

/* json_object_set_new() also drops v and fails when v is NULL (OOM). */
static int add(json_t *o, const char *key, json_t *v)
{
	return json_object_set_new_nocheck(o, key, v);
}

static int add_evidence(json_t *o, const struct result *r)
{
	size_t n = MIN(r->evidence_len, sizeof(r->evidence));

	if (add(o, "kind", json_string_nocheck(result_kind_to_string(r->kind))) < 0)
		return -ENOMEM;
	switch (r->kind) {
	case RESULT_HTTP:
		if (add(o, "http_status", json_integer(r->http_status)) < 0)
			return -ENOMEM;
		break;
	case RESULT_TRANSPORT:
		if (add(o, "transport", field(r->transport, sizeof(r->transport))) < 0 ||
		    add(o, "detail", field(r->detail, sizeof(r->detail))) < 0)
			return -ENOMEM;
		break;
	case RESULT_TIMEOUT:
		if (add(o, "timeout", json_true()) < 0)
			return -ENOMEM;
		break;
	case RESULT_EXIT:
		if (add(o, "exit_code", json_integer(r->exit_code)) < 0)
			return -ENOMEM;
		break;
	case RESULT_SIGNAL:
		if (add(o, "signal", json_integer(r->signal)) < 0 ||
		    add(o, "signal_name", signal_name(r->signal)) < 0)
			return -ENOMEM;
		break;
	case RESULT_INTERNAL:
		if (add(o, "detail", field(r->detail, sizeof(r->detail))) < 0)
			return -ENOMEM;
		break;
	case RESULT_SUCCESS:
		break;
	}
	if (r->handler_code[0] &&
	    add(o, "handler_code", field(r->handler_code, sizeof(r->handler_code))) < 0)
		return -ENOMEM;
	if (r->handler_class[0] &&
	    add(o, "handler_class", field(r->handler_class, sizeof(r->handler_class))) < 0)
		return -ENOMEM;
	if (r->retry_after_usec &&
	    add(o, "retry_after_ms",
		json_integer((json_int_t)(r->retry_after_usec / USEC_PER_MSEC))) < 0)
		return -ENOMEM;
	if ((n > 0 || r->evidence_truncated) &&
	    (add(o, "evidence", utf8_string(r->evidence, n)) < 0 ||
	     add(o, "evidence_truncated", json_boolean(r->evidence_truncated)) < 0))
		return -ENOMEM;
	if (add(o, "duration_ms", json_integer((json_int_t)(r->duration_usec / USEC_PER_MSEC))) < 0)
		return -ENOMEM;
	return 0;
}

static json_t *last_error_new(const struct failure *f)
{
	_cleanup_(jfreep) json_t *o = json_object();

	if (!o)
		return NULL;
	if (add(o, "error_code", cstr(f->error_code)) < 0 ||
	    add(o, "error_class", json_string_nocheck(class_name(f->error_class))) < 0 ||
	    add(o, "at", timestamp(f->now_usec)) < 0 ||
	    add(o, "attempt", json_integer(f->attempt)) < 0)
		return NULL;
	if (f->cause_code &&
	    (add(o, "cause_code", cstr(f->cause_code)) < 0 ||
	     add(o, "cause_class", json_string_nocheck(class_name(f->cause_class))) < 0))
		return NULL;
	if (f->result && add_evidence(o, f->result) < 0)
		return NULL;
	return TAKE_PTR(o);
}

/* The last ENVELOPE_ERRORS_KEPT - 1 old entries (shared, not copied) + last. */
static json_t *errors_new(json_t *old, json_t *last)
{
	_cleanup_(jfreep) json_t *a = json_array();
	size_t n = json_array_size(old), from;

	if (!a)
		return NULL;
	from = n >= ENVELOPE_ERRORS_KEPT ? n - (ENVELOPE_ERRORS_KEPT - 1) : 0;
	for (size_t i = from; i < n; i++)
		if (json_array_append(a, json_array_get(old, i)) < 0)
			return NULL;
	if (json_array_append(a, last) < 0)
		return NULL;
	return TAKE_PTR(a);
}

char *envelope_encode_failure(struct envelope *e, const struct failure *f, size_t *len)
{
	struct envelope_impl *impl = impl_of(e);
	_cleanup_(jfreep) json_t *copy = NULL, *last = NULL;
	char ts[TIMESTAMP_MAX];

	/* Shallow: new top-level table, every value shared with the original. */
	copy = json_copy(impl->root);
	last = last_error_new(f);
	if (!copy || !last)
		return NULL;

	if (add(copy, "attempt", json_integer(f->attempt)) < 0)
		return NULL;
	if (!get_optional(copy, "first_seen_at") &&
	    add(copy, "first_seen_at", timestamp(e->first_seen_at_usec)) < 0)
		return NULL;
	if (f->next_retry_at_usec) {
		if (add(copy, "next_retry_at",
			json_string_nocheck(format_timestamp_msec(f->next_retry_at_usec, ts))) < 0)
			return NULL;
	} else {
		(void)json_object_del(copy, "next_retry_at");
	}
	if (add(copy, "error_code", cstr(f->error_code)) < 0 ||
	    add(copy, "error_class", json_string_nocheck(class_name(f->error_class))) < 0)
		return NULL;
	if (f->dead_lettered && add(copy, "dead_lettered_at", timestamp(f->now_usec)) < 0)
		return NULL;
	if (json_object_set_nocheck(copy, "last_error", last) < 0 ||
	    add(copy, "errors", errors_new(json_object_get(impl->root, "errors"), last)) < 0)
		return NULL;

	/* Room for last_error twice (itself and in errors) without a realloc. */
	return dump(copy, impl->body_len, 2 * EXPECTED_LAST_ERROR, len);
}
