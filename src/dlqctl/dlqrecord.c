/*
 * dlqrecord: the DLQ message model of dlqctl. Headers win over the body
 * because dlqd writes both and the headers are the only thing an invalid
 * body has; the body fills in what headers lack (a copy published by an
 * older dlqd, or by hand).
 */
#include "dlqctl/dlqrecord.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/copy.h"
#include "common/taxonomy.h"
#include "dlqctl/dlqtext.h"

/* Copies a string header into dst; false when absent or not a string. */
static bool header_str(const struct dlq_message *m, const char *key, char *dst, size_t n)
{
	const struct header *h = header_find(m->headers, m->n_headers, key);

	if (!h || h->kind != HEADER_STRING)
		return false;
	dlqtext_utf8(dst, n, h->s, h->s_len);
	return true;
}

static bool header_int(const struct dlq_message *m, const char *key, int64_t *out)
{
	const struct header *h = header_find(m->headers, m->n_headers, key);

	if (!h)
		return false;
	if (h->kind == HEADER_INT) {
		*out = h->i;
		return true;
	}
	if (h->kind == HEADER_STRING && h->s_len > 0 && h->s_len < 24) {
		char tmp[24];
		uint64_t v;
		memcpy(tmp, h->s, h->s_len);
		tmp[h->s_len] = '\0';
		if (parse_uint(tmp, 0, INT64_MAX, &v) == 0) {
			*out = (int64_t)v;
			return true;
		}
	}
	return false;
}

/* Sets an empty field of the record from the envelope's text, which the
 * envelope cut to ENVELOPE_ID_MAX bytes, maybe inside a character. */
static void fill(char *dst, size_t n, const char *s)
{
	if (!dst[0])
		dlqtext_utf8(dst, n, s, dlqtext_uncut(s, strlen(s)));
}
#define FILL(field, s) fill(field, sizeof(field), s)

int dlqrecord_parse(const struct dlq_message *m, uint64_t now_usec, struct dlq_record *r,
		    struct envelope **env)
{
	_cleanup_(envelope_freep) struct envelope *e = NULL;
	char tmp[TIMESTAMP_MAX * 2];
	int64_t v;
	int k;

	*r = (struct dlq_record){ .attempt = -1 };
	if (env)
		*env = NULL;
	header_str(m, HDR_MESSAGE_ID, r->message_id, sizeof(r->message_id));
	header_str(m, HDR_TRACE_ID, r->trace_id, sizeof(r->trace_id));
	header_str(m, HDR_ERROR_CODE, r->error_code, sizeof(r->error_code));
	header_str(m, HDR_ERROR_CLASS, r->error_class, sizeof(r->error_class));
	if (header_int(m, HDR_ATTEMPT, &v) && v >= 0)
		r->attempt = v;
	if (header_int(m, HDR_REPLAY_COUNT, &v) && v >= 0)
		r->replay_count = (uint64_t)v;
	if (header_str(m, HDR_DEAD_LETTERED_AT, tmp, sizeof(tmp)))
		(void)parse_timestamp(tmp, &r->dead_lettered_at_usec);

	if (strcmp(r->error_code, ERROR_CODE_INVALID_ENVELOPE) != 0 &&
	    strcmp(r->error_code, ERROR_CODE_MESSAGE_TOO_LARGE) != 0) {
		k = envelope_decode(m->body, m->len, now_usec, &e, NULL, 0);
		if (k == -ENOMEM)
			return k;
	}
	if (e) {
		r->envelope = true;
		/* What the headers did not say. */
		FILL(r->message_id, e->message_id);
		FILL(r->trace_id, e->trace_id);
		FILL(r->schema_version, e->schema_version);
		FILL(r->error_code, e->error_code);
		FILL(r->error_class, e->error_class);
		if (r->attempt < 0)
			r->attempt = e->attempt;
		r->replay_count = MAX(r->replay_count, e->replay_count);
		if (!r->dead_lettered_at_usec)
			r->dead_lettered_at_usec = e->dead_lettered_at_usec;
	}
	if (!r->message_id[0]) {
		const struct header *p = header_find(m->props, m->n_props, "message_id");
		if (p && p->kind == HEADER_STRING)
			dlqtext_utf8(r->message_id, sizeof(r->message_id), p->s, p->s_len);
	}
	if (!r->dead_lettered_at_usec) {
		const struct header *p = header_find(m->props, m->n_props, "timestamp");
		if (p && p->kind == HEADER_INT && p->i > 0)
			r->dead_lettered_at_usec = (uint64_t)p->i * USEC_PER_SEC;
	}
	/* A replay adds one: that must not wrap. */
	r->replay_count = MIN(r->replay_count, (uint64_t)DLQRECORD_REPLAY_COUNT_MAX);
	if (env)
		*env = TAKE_PTR(e);
	return 0;
}

static json_t *str_or_null(const char *s)
{
	return s[0] ? json_string(s) : json_null();
}

static char *base64(const unsigned char *p, size_t n)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		*o++ = tab[(v >> 18) & 63];
		*o++ = tab[(v >> 12) & 63];
		*o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		*o++ = i + 2 < n ? tab[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

static json_t *header_value(const struct header *h)
{
	switch (h->kind) {
	case HEADER_STRING: {
		json_t *s = json_stringn(h->s, h->s_len);
		if (s)
			return s;
		_cleanup_free_ char *b = base64((const unsigned char *)h->s, h->s_len);
		return b ? json_pack("{s:s}", "base64", b) : NULL;
	}
	case HEADER_INT:
		return json_integer(h->i);
	case HEADER_BOOL:
		return json_boolean(h->i);
	case HEADER_FLOAT:
		/* JSON has no NaN or infinity: named, like a binary string. */
		if (!isfinite(h->f))
			return json_pack("{s:s}", "float",
					 isnan(h->f) ? "NaN"
					 : h->f > 0  ? "Infinity"
						     : "-Infinity");
		return json_real(h->f);
	case HEADER_OTHER:
		break;
	}
	return json_string("(unsupported AMQP field kind)");
}

static json_t *header_object(const struct header *h, size_t n)
{
	json_t *o = json_object();

	for (size_t i = 0; o && i < n; i++) {
		/* An AMQP key is at most 255 bytes; \xNN for what is not UTF-8. */
		char key[4 * 255 + 1];
		dlqtext_utf8(key, sizeof(key), h[i].key, h[i].key_len);
		if (json_object_set_new(o, key, header_value(&h[i])) < 0) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

static int add_body(json_t *o, const struct dlq_message *m, bool raw)
{
	json_t *v = NULL;
	const char *key = "body";

	if (!raw && m->len > 0)
		v = json_loadb(m->body, m->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	if (!v) {
		key = "body_text";
		v = json_stringn(m->body, m->len);
	}
	if (!v) {
		_cleanup_free_ char *b = base64(m->body, m->len);
		if (!b)
			return -ENOMEM;
		key = "body_base64";
		v = json_string(b);
	}
	return json_object_set_new(o, key, v) < 0 ? -ENOMEM : 0;
}

/* json_object_set_new() takes the value even when it fails (and fails on NULL). */
static int set(json_t *o, const char *key, json_t *v)
{
	return json_object_set_new(o, key, v) < 0 ? -ENOMEM : 0;
}

static int dump_to_buf(const char *p, size_t n, void *userdata)
{
	return buf_append(userdata, p, n) < 0 ? -1 : 0;
}

static void jfreep(json_t **j)
{
	json_decref(*j);
}

static json_t *record_object(const struct dlq_message *m, const struct dlq_record *r,
			     uint64_t now_usec)
{
	_cleanup_(jfreep) json_t *o = json_object();
	uint64_t at = r->dead_lettered_at_usec;
	char ts[TIMESTAMP_MAX];

	/* Every set is checked: a key that failed must not just be missing. */
	if (!o || set(o, "message_id", str_or_null(r->message_id)) < 0 ||
	    set(o, "trace_id", str_or_null(r->trace_id)) < 0 ||
	    set(o, "error_code", str_or_null(r->error_code)) < 0 ||
	    set(o, "error_class", str_or_null(r->error_class)) < 0 ||
	    set(o, "attempt", r->attempt >= 0 ? json_integer(r->attempt) : json_null()) < 0 ||
	    set(o, "schema_version", str_or_null(r->schema_version)) < 0 ||
	    set(o, "replay_count", json_integer((json_int_t)r->replay_count)) < 0 ||
	    set(o, "dead_lettered_at", at ? json_string(format_timestamp(at, ts)) : json_null()) <
		    0 ||
	    set(o, "age_seconds",
		at ? json_integer((json_int_t)((now_usec > at ? now_usec - at : 0) / USEC_PER_SEC))
		   : json_null()) < 0 ||
	    set(o, "valid_envelope", json_boolean(r->envelope)) < 0 ||
	    set(o, "body_bytes", json_integer((json_int_t)m->len)) < 0)
		return NULL;
	return TAKE_PTR(o);
}

int dlqrecord_json(const struct dlq_message *m, const struct dlq_record *r, uint64_t now_usec,
		   unsigned flags, struct buf *out)
{
	_cleanup_(jfreep) json_t *o = record_object(m, r, now_usec);
	size_t was = out->len;
	int k;

	if (!o)
		return -ENOMEM;
	if (flags & DLQRECORD_JSON_FULL) {
		if (set(o, "headers", header_object(m->headers, m->n_headers)) < 0 ||
		    set(o, "properties", header_object(m->props, m->n_props)) < 0 ||
		    add_body(o, m, flags & DLQRECORD_JSON_RAW_BODY) < 0)
			return -ENOMEM;
	}
	k = json_dump_callback(o, dump_to_buf, out,
			       (flags & DLQRECORD_JSON_PRETTY) ? JSON_INDENT(2) : JSON_COMPACT);
	if (k < 0) {
		/* Out of memory, or over the buffer's maximum: nothing half written. */
		out->len = was;
		if (out->data)
			out->data[was] = '\0';
		return -ENOMEM;
	}
	return 0;
}
