/*
 * Unit tests for envelope: every decoding rule with its exact reason and the
 * payload span. The copies built from an envelope are tests/unit/common/
 * test_copy.c's.
 */
#include <errno.h>
#include <libgen.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/envelope.h"
#include "common/util.h"
#include "envelope_test.h"

static void expect_invalid_n(const char *body, size_t len, const char *want)
{
	struct envelope *e = NULL;
	char why[256];
	int r;

	memset(why, 'X', sizeof(why));
	r = envelope_decode(body, len, T0, &e, why, sizeof(why));
	if (r != -EINVAL)
		fail_msg("decode of %.200s: expected -EINVAL, got %d", body, r);
	assert_null(e);
	assert_string_equal(why, want);
}

static void expect_invalid(const char *body, const char *want)
{
	expect_invalid_n(body, strlen(body), want);
}

/* Only checks the prefix (jansson's own text follows). */
static void expect_invalid_prefix(const char *body, size_t len, const char *prefix)
{
	struct envelope *e = NULL;
	char why[256] = "";
	int r = envelope_decode(body, len, T0, &e, why, sizeof(why));

	assert_int_equal(r, -EINVAL);
	assert_null(e);
	if (strncmp(why, prefix, strlen(prefix)) != 0)
		fail_msg("why \"%s\" does not start with \"%s\"", why, prefix);
	for (const char *p = why; *p; p++)
		assert_true(*p >= 0x20 && *p < 0x7f);
}

/* ---- decoding: valid bodies ---- */

static void test_decode_minimal(void **state)
{
	struct envelope *e = decode_ok("{\"message_id\":\"m1\",\"payload\":{}}");
	size_t len = 99;
	char *p;

	assert_string_equal(e->message_id, "m1");
	assert_string_equal(e->trace_id, "");
	assert_string_equal(e->schema_version, "");
	assert_int_equal(e->attempt, 0);
	assert_false(e->has_max_attempt);
	assert_int_equal(e->first_seen_at_usec, T0);
	assert_non_null(e->doc);
	p = payload_dup(e, &len);
	assert_string_equal(p, "{}");
	assert_int_equal(len, 2);
	free(p);
	assert_null(envelope_free(e));
}

static void test_decode_full(void **state)
{
	static const char body[] =
		"{\"message_id\": \"evt_20260317_abc123\", \"trace_id\": \"trc_x8f\",\n"
		" \"schema_version\": \"v2\", \"attempt\": 2, \"max_attempt\": 5,\n"
		" \"first_seen_at\": \"2026-03-17T03:10:00Z\",\n"
		" \"next_retry_at\": \"2026-03-17T03:12:30.250Z\",\n"
		" \"error_code\": \"UPSTREAM_TIMEOUT\", \"error_class\": \"TRANSIENT\",\n"
		" \"dead_lettered_at\": \"2026-03-17T03:11:00Z\",\n"
		" \"last_error\": {\"error_code\": \"UPSTREAM_TIMEOUT\"}, \"errors\": [{}, 3],\n"
		" \"extra\": [1, 2], \"payload\": {\"b\": 1, \"a\": [true, null, \"\\u00e9\"]}}  "
		"\n\t";
	_cleanup_(envelope_freep) struct envelope *e = decode_ok(body);
	_cleanup_free_ char *p = NULL;

	assert_string_equal(e->message_id, "evt_20260317_abc123");
	assert_string_equal(e->trace_id, "trc_x8f");
	assert_string_equal(e->schema_version, "v2");
	assert_int_equal(e->attempt, 2);
	assert_true(e->has_max_attempt);
	assert_int_equal(e->max_attempt, 5);
	assert_int_equal(e->first_seen_at_usec, T0);
	p = payload_dup(e, NULL);
	assert_string_equal(p, "{\"b\": 1, \"a\": [true, null, \"\\u00e9\"]}");
}

static void test_decode_bounds_accepted(void **state)
{
	char body[1024];
	char id[ENVELOPE_ID_MAX + 1];

	memset(id, 'a', ENVELOPE_ID_MAX);
	id[ENVELOPE_ID_MAX] = '\0';
	snprintf(
		body, sizeof(body),
		"{\"message_id\":\"%s\",\"trace_id\":\"\",\"attempt\":1000000,"
		"\"max_attempt\":0,\"first_seen_at\":\"2026-03-17T04:10:00+01:00\",\"payload\":{}}",
		id);
	_cleanup_(envelope_freep) struct envelope *e = decode_ok(body);

	assert_int_equal(strlen(e->message_id), ENVELOPE_ID_MAX);
	assert_string_equal(e->trace_id, "");
	assert_int_equal(e->attempt, ENVELOPE_ATTEMPT_MAX);
	assert_true(e->has_max_attempt);
	assert_int_equal(e->max_attempt, 0);
	assert_int_equal(e->first_seen_at_usec, T0);
}

static void test_decode_null_optionals(void **state)
{
	_cleanup_(envelope_freep) struct envelope *e = decode_ok(
		"{\"message_id\":\"m\",\"payload\":{},\"trace_id\":null,\"schema_version\":null,"
		"\"attempt\":null,\"max_attempt\":null,\"first_seen_at\":null,"
		"\"next_retry_at\":null,\"error_code\":null,\"error_class\":null,"
		"\"dead_lettered_at\":null,\"last_error\":null,\"errors\":null}");

	assert_string_equal(e->trace_id, "");
	assert_string_equal(e->schema_version, "");
	assert_int_equal(e->attempt, 0);
	assert_false(e->has_max_attempt);
	assert_int_equal(e->first_seen_at_usec, T0);
}

static void test_decode_nul_in_payload_string(void **state)
{
	_cleanup_(envelope_freep) struct envelope *e =
		decode_ok("{\"message_id\":\"m\",\"payload\":{\"s\":\"a\\u0000b\"}}");
	_cleanup_free_ char *p = NULL;
	size_t len;

	p = payload_dup(e, &len);
	assert_int_equal(len, strlen("{\"s\":\"a\\u0000b\"}"));
	assert_string_equal(p, "{\"s\":\"a\\u0000b\"}");
}

/* ---- decoding: invalid bodies ---- */

static void test_decode_missing_required(void **state)
{
	expect_invalid("{\"payload\":{}}", "message_id: missing");
	expect_invalid("{\"message_id\":\"m\"}", "payload: missing");
	expect_invalid("{}", "message_id: missing");
}

static void test_decode_wrong_types(void **state)
{
	static const struct {
		const char *body, *why;
	} cases[] = {
		{ "{\"message_id\":1,\"payload\":{}}", "message_id: expected string, got integer" },
		{ "{\"message_id\":null,\"payload\":{}}", "message_id: expected string, got null" },
		{ "{\"message_id\":[\"m\"],\"payload\":{}}",
		  "message_id: expected string, got array" },
		{ "{\"message_id\":\"m\",\"payload\":[]}", "payload: expected object, got array" },
		{ "{\"message_id\":\"m\",\"payload\":\"{}\"}",
		  "payload: expected object, got string" },
		{ "{\"message_id\":\"m\",\"payload\":null}", "payload: expected object, got null" },
		{ "{\"message_id\":\"m\",\"payload\":1.5}",
		  "payload: expected object, got number" },
		{ "{\"message_id\":\"m\",\"payload\":true}",
		  "payload: expected object, got boolean" },
		{ "{\"message_id\":\"m\",\"payload\":{},\"trace_id\":5}",
		  "trace_id: expected string, got integer" },
		{ "{\"message_id\":\"m\",\"payload\":{},\"schema_version\":2}",
		  "schema_version: expected string, got integer" },
		{ "{\"message_id\":\"m\",\"payload\":{},\"attempt\":\"3\"}",
		  "attempt: must be an integer 0..1000001, got string" },
		{ "{\"message_id\":\"m\",\"payload\":{},\"attempt\":false}",
		  "attempt: must be an integer 0..1000001, got boolean" },
		{ "{\"message_id\":\"m\",\"payload\":{},\"max_attempt\":{}}",
		  "max_attempt: must be an integer 0..1000000, got object" },
		{ "{\"message_id\":\"m\",\"payload\":{},\"first_seen_at\":1773717000}",
		  "first_seen_at: expected RFC 3339 string, got integer" },
		{ "{\"message_id\":\"m\",\"payload\":{},\"next_retry_at\":[]}",
		  "next_retry_at: expected RFC 3339 string, got array" },
		{ "{\"message_id\":\"m\",\"payload\":{},\"error_code\":7}",
		  "error_code: expected string, got integer" },
		{ "{\"message_id\":\"m\",\"payload\":{},\"error_class\":{}}",
		  "error_class: expected string, got object" },
		{ "{\"message_id\":\"m\",\"payload\":{},\"dead_lettered_at\":0}",
		  "dead_lettered_at: expected string, got integer" },
		{ "{\"message_id\":\"m\",\"payload\":{},\"last_error\":\"x\"}",
		  "last_error: expected object, got string" },
		{ "{\"message_id\":\"m\",\"payload\":{},\"last_error\":[]}",
		  "last_error: expected object, got array" },
		{ "{\"message_id\":\"m\",\"payload\":{},\"errors\":{}}",
		  "errors: expected array, got object" },
		{ "{\"message_id\":\"m\",\"payload\":{},\"errors\":\"x\"}",
		  "errors: expected array, got string" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		expect_invalid(cases[i].body, cases[i].why);
}

static void test_decode_bad_counts(void **state)
{
	static const struct {
		const char *value, *why; /* why after "must be an integer 0..MAX, got " */
	} cases[] = {
		{ "-3", "-3" },
		{ "-1", "-1" },
		{ "1000002", "1000002" },
		{ "9223372036854775807", "9223372036854775807" },
		{ "1.5", "1.5" },
		{ "2.0", "2.0" },
		{ "1e30", "1e30" },
		{ "-0.0", "-0.0" },
		{ "99999999999999999999", "99999999999999999999" },
	};
	/* attempt may say one more than max_attempt's bound: the copy of a
	 * message exhausted at that bound (router.c) must decode again. */
	static const struct {
		const char *key;
		long max;
	} keys[] = { { "attempt", 1000001 }, { "max_attempt", 1000000 } };
	char body[256], want[256];

	for (size_t k = 0; k < ARRAY_SIZE(keys); k++)
		for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
			snprintf(body, sizeof(body),
				 "{\"message_id\":\"m\",\"payload\":{},\"%s\":%s}", keys[k].key,
				 cases[i].value);
			snprintf(want, sizeof(want), "%s: must be an integer 0..%ld, got %s",
				 keys[k].key, keys[k].max, cases[i].why);
			expect_invalid(body, want);
		}
	expect_invalid("{\"message_id\":\"m\",\"payload\":{},\"max_attempt\":1000001}",
		       "max_attempt: must be an integer 0..1000000, got 1000001");
	{
		_cleanup_(envelope_freep) struct envelope *e =
			decode_ok("{\"message_id\":\"m\",\"payload\":{},\"attempt\":1000001,\"max_"
				  "attempt\":1000000}");
		assert_int_equal(e->attempt, 1000001);
	}
	/* "-0" is zero, as JSON parsers read it. */
	{
		_cleanup_(envelope_freep) struct envelope *e =
			decode_ok("{\"message_id\":\"m\",\"payload\":{},\"attempt\":-0}");
		assert_int_equal(e->attempt, 0);
	}
}

static void test_decode_bad_ids(void **state)
{
	char body[1024], id[ENVELOPE_ID_MAX + 2];

	expect_invalid("{\"message_id\":\"\",\"payload\":{}}", "message_id: empty");
	expect_invalid("{\"message_id\":\"a\\nb\",\"payload\":{}}",
		       "message_id: control character 0x0a at byte 1");
	expect_invalid("{\"message_id\":\"ab\\u0000\",\"payload\":{}}",
		       "message_id: control character 0x00 at byte 2");
	expect_invalid("{\"message_id\":\"\\u007f\",\"payload\":{}}",
		       "message_id: control character 0x7f at byte 0");
	expect_invalid("{\"message_id\":\"m\",\"payload\":{},\"trace_id\":\"t\\r\\nX-Evil: 1\"}",
		       "trace_id: control character 0x0d at byte 1");
	expect_invalid("{\"message_id\":\"m\",\"payload\":{},\"schema_version\":\"\\t\"}",
		       "schema_version: control character 0x09 at byte 0");

	memset(id, 'a', ENVELOPE_ID_MAX + 1);
	id[ENVELOPE_ID_MAX + 1] = '\0';
	snprintf(body, sizeof(body), "{\"message_id\":\"%s\",\"payload\":{}}", id);
	expect_invalid(body, "message_id: longer than 256 bytes (257)");
	snprintf(body, sizeof(body), "{\"message_id\":\"m\",\"trace_id\":\"%s\",\"payload\":{}}",
		 id);
	expect_invalid(body, "trace_id: longer than 256 bytes (257)");
	snprintf(body, sizeof(body),
		 "{\"message_id\":\"m\",\"schema_version\":\"%s\",\"payload\":{}}", id);
	expect_invalid(body, "schema_version: longer than 256 bytes (257)");
}

static void test_decode_bad_timestamps(void **state)
{
	expect_invalid("{\"message_id\":\"m\",\"payload\":{},\"first_seen_at\":\"yesterday\"}",
		       "first_seen_at: not an RFC 3339 timestamp: \"yesterday\"");
	expect_invalid(
		"{\"message_id\":\"m\",\"payload\":{},\"first_seen_at\":\"2026-03-17T03:10:00\"}",
		"first_seen_at: not an RFC 3339 timestamp: \"2026-03-17T03:10:00\"");
	expect_invalid(
		"{\"message_id\":\"m\",\"payload\":{},\"first_seen_at\":\"2026-13-17T03:10:00Z\"}",
		"first_seen_at: not an RFC 3339 timestamp: \"2026-13-17T03:10:00Z\"");
	/* The NUL must not hide the junk behind it. */
	expect_invalid("{\"message_id\":\"m\",\"payload\":{},\"first_seen_at\":\"2026-03-17T03:10:"
		       "00Z\\u0000junk\"}",
		       "first_seen_at: not an RFC 3339 timestamp: \"2026-03-17T03:10:00Z\"");
	expect_invalid("{\"message_id\":\"m\",\"payload\":{},\"next_retry_at\":\"\"}",
		       "next_retry_at: not an RFC 3339 timestamp: \"\"");
	expect_invalid(
		"{\"message_id\":\"m\",\"payload\":{},\"next_retry_at\":\"2026-03-17 03:10:00Zx\"}",
		"next_retry_at: not an RFC 3339 timestamp: \"2026-03-17 03:10:00Zx\"");
}

static void test_decode_invalid_utf8(void **state)
{
	/* Raw 0xff, an overlong '/', a CESU surrogate, a truncated sequence. */
	expect_invalid("{\"message_id\":\"m\xff\",\"payload\":{}}",
		       "invalid JSON at line 1 column 17: invalid UTF-8 byte 0xff in a string");
	expect_invalid_prefix("{\"message_id\":\"m\",\"payload\":{\"k\":\"\xc0\xaf\"}}", 39,
			      "invalid JSON at line 1 column ");
	expect_invalid_prefix("{\"message_id\":\"m\",\"payload\":{\"k\":\"\xed\xa0\x80\"}}", 40,
			      "invalid JSON at line 1 column ");
	expect_invalid_prefix("{\"message_id\":\"m\",\"payload\":{\"\xe2\x82\":1}}", 36,
			      "invalid JSON at line 1 column ");
	expect_invalid_prefix(
		"{\"message_id\":\"m\",\"payload\":{\"k\":\"\\ud800\"}}", 43,
		"invalid JSON at line 1 column 35: high surrogate in \\u escape without its "
		"low surrogate");
	/* A BOM is not JSON. */
	expect_invalid("\xef\xbb\xbf{\"message_id\":\"m\",\"payload\":{}}",
		       "invalid JSON at line 1 column 1: byte order mark (not JSON)");
}

static char *deep_body(size_t depth, const char *open, const char *close)
{
	static const char head[] = "{\"message_id\":\"m\",\"payload\":{\"deep\":";
	size_t ol = strlen(open), cl = strlen(close);
	size_t n = sizeof(head) - 1 + depth * (ol + cl) + 3, o = 0;
	char *b = malloc(n);

	assert_non_null(b);
	memcpy(b, head, sizeof(head) - 1);
	o = sizeof(head) - 1;
	for (size_t i = 0; i < depth; i++, o += ol)
		memcpy(b + o, open, ol);
	for (size_t i = 0; i < depth; i++, o += cl)
		memcpy(b + o, close, cl);
	memcpy(b + o, "}}", 3);
	return b;
}

static void test_decode_deep_nesting(void **state)
{
	char *b;

	b = deep_body(10000, "[", "]");
	expect_invalid_prefix(b, strlen(b), "invalid JSON at line 1 column ");
	assert_non_null(strstr(b, "[[")); /* the body really was deep */
	free(b);

	b = deep_body(10000, "{\"a\":", "}");
	expect_invalid_prefix(b, strlen(b), "invalid JSON at line 1 column ");
	free(b);

	/* Top level too, with no envelope around it. */
	b = malloc(20001);
	assert_non_null(b);
	memset(b, '[', 10000);
	memset(b + 10000, ']', 10000);
	b[20000] = '\0';
	expect_invalid(b, "invalid JSON at line 1 column 2049: nested deeper than 2048 levels");
	free(b);

	/* Deep but legal (payload at depth 2, 2000 more) decodes and round-trips. */
	b = deep_body(2000, "[", "]");
	{
		_cleanup_(envelope_freep) struct envelope *e = decode_ok(b);
		_cleanup_free_ char *p = payload_dup(e, NULL);
		const char *start = strstr(b, "\"payload\":") + strlen("\"payload\":");

		assert_non_null(p);
		assert_int_equal(strlen(p), strlen(start) - 1);
		assert_memory_equal(p, start, strlen(p));
	}
	free(b);
}

static void test_decode_malformed(void **state)
{
	expect_invalid_n("", 0, "empty body");
	expect_invalid_n(NULL, 0, "empty body");
	expect_invalid(
		"  \n",
		"invalid JSON at line 2 column 1: a value expected, got the end of the text");
	expect_invalid("[]", "body: expected object, got array");
	expect_invalid("\"m\"", "body: expected object, got string");
	expect_invalid("42", "body: expected object, got integer");
	expect_invalid("null", "body: expected object, got null");
	expect_invalid("{\"message_id\":\"m\",\"payload\":{}} x",
		       "invalid JSON at line 1 column 33: the end of the text expected, got 'x'");
	expect_invalid("{\"message_id\":\"m\",\"payload\":{}}{}",
		       "invalid JSON at line 1 column 32: the end of the text expected, got '{'");
	expect_invalid_n(
		"{\"message_id\":\"m\",\"payload\":{}}\0", 32,
		"invalid JSON at line 1 column 32: the end of the text expected, got byte 0x00");
	expect_invalid(
		"{\"message_id\":\"m\",\"payload\":{}",
		"invalid JSON at line 1 column 31: ',' or '}' expected, got the end of the text");
	expect_invalid(
		"{\"message_id\":\"m\",\"message_id\":\"n\",\"payload\":{}}",
		"invalid JSON at line 1 column 19: duplicate name \"message_id\" in an object");
	expect_invalid("{\"message_id\":\"m\",\"payload\":{\"a\":{\"k\":1,\"k\":2}}}",
		       "invalid JSON at line 1 column 41: duplicate name \"k\" in an object");
	expect_invalid("{\"message_id\":\"m\",\"payload\":{\"a\\u0000\":1}}",
		       "invalid JSON at line 1 column 32: \\u0000 in an object name");
	expect_invalid("{\"message_id\":\"m\",\"payload\":{},}",
		       "invalid JSON at line 1 column 32: a name in quotes expected, got '}'");
}

static void test_decode_why_buffer(void **state)
{
	struct envelope *e = NULL;
	char small[8];
	static const char body[] = "{\"payload\":{}}";

	assert_int_equal(envelope_decode(body, strlen(body), T0, &e, NULL, 0), -EINVAL);
	assert_int_equal(envelope_decode(body, strlen(body), T0, &e, small, 0), -EINVAL);
	assert_int_equal(envelope_decode(body, strlen(body), T0, &e, small, sizeof(small)),
			 -EINVAL);
	assert_string_equal(small, "message");
	assert_null(e);
	assert_null(envelope_free(NULL));
	envelope_freep(&e);
}

/* ---- payload ---- */

static void test_payload_1mib_round_trip(void **state)
{
	struct buf b, payload;
	char *p;
	size_t len;

	buf_init(&payload, 4 * 1024 * 1024);
	assert_int_equal(buf_append(&payload, "{\"z\":1,\"big\":\"", 14), 0);
	for (size_t i = 0; payload.len < 1024 * 1024; i++)
		assert_int_equal(buf_printf(&payload, "%s%zu", i % 7 ? "x" : "\\n\xc3\xa9\\\"", i),
				 0);
	assert_int_equal(
		buf_printf(&payload, "%s",
			   "\",\"a\":[1,-2,3.5,true,false,null,{}],\"m\":{\"y\":\"\\u0001\"}}"),
		0);

	buf_init(&b, 8 * 1024 * 1024);
	assert_int_equal(buf_printf(&b, "{\"message_id\":\"big\",\"payload\":%s}", payload.data),
			 0);
	{
		_cleanup_(envelope_freep) struct envelope *e = decode_ok(b.data);
		p = payload_dup(e, &len);
		assert_non_null(p);
		assert_int_equal(len, payload.len);
		assert_memory_equal(p, payload.data, len);
		assert_int_equal(p[len], '\0');
		free(p);
	}
	buf_done(&b);
	buf_done(&payload);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_minimal),
		cmocka_unit_test(test_decode_full),
		cmocka_unit_test(test_decode_bounds_accepted),
		cmocka_unit_test(test_decode_null_optionals),
		cmocka_unit_test(test_decode_nul_in_payload_string),
		cmocka_unit_test(test_decode_missing_required),
		cmocka_unit_test(test_decode_wrong_types),
		cmocka_unit_test(test_decode_bad_counts),
		cmocka_unit_test(test_decode_bad_ids),
		cmocka_unit_test(test_decode_bad_timestamps),
		cmocka_unit_test(test_decode_invalid_utf8),
		cmocka_unit_test(test_decode_deep_nesting),
		cmocka_unit_test(test_decode_malformed),
		cmocka_unit_test(test_decode_why_buffer),
		cmocka_unit_test(test_payload_1mib_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
