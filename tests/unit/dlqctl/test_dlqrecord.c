/*
 * Unit tests for dlqrecord: the record read from headers, body and AMQP
 * properties (and which wins); the replay copy of an envelope (attempt 0,
 * replay_count, replayed_at, history and key order kept) and of an invalid
 * body (bytes untouched); the JSON views of list, show and the archive.
 * The envelope is the golden DLQ copy tests/data/envelope/full.dlq.out.json.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dlqctl/dlqrecord.h"
#include "dlqctl/dlqtext.h"

#define SEC USEC_PER_SEC

static char *golden;
static size_t golden_len;

static int setup(void **state)
{
	char path[4096];
	const char *dir = getenv("DLQD_TEST_DATA");

	(void)state;
	snprintf(path, sizeof(path), "%s/envelope/full.dlq.out.json", dir ? dir : "tests/data");
	assert_int_equal(read_file_max(path, 1 << 20, &golden, &golden_len), 0);
	while (golden_len && golden[golden_len - 1] == '\n')
		golden[--golden_len] = '\0';
	return 0;
}

/* dlqrecord_json() into a fresh string; fails the test on an error. */
static char *to_json(const struct dlq_message *m, const struct dlq_record *r, uint64_t now,
		     unsigned flags)
{
	struct buf b;

	buf_init(&b, SIZE_MAX);
	assert_int_equal(dlqrecord_json(m, r, now, flags, &b), 0);
	return buf_steal(&b, NULL);
}

static int teardown(void **state)
{
	(void)state;
	free(golden);
	return 0;
}

#define HS(k, v)                                                                                  \
	{                                                                                         \
		.key = k, .key_len = strlen(k), .kind = HEADER_STRING, .s = v, .s_len = strlen(v) \
	}
#define HI(k, v)                                                           \
	{                                                                  \
		.key = k, .key_len = strlen(k), .kind = HEADER_INT, .i = v \
	}

static const struct header dlqd_headers[] = {
	HS("x-origin", "billing"),
	HS("x-dlqd-message-id", "evt_20260317_abc123"),
	HS("x-dlqd-trace-id", "trc_x8f"),
	HI("x-dlqd-attempt", 6),
	HS("x-dlqd-error-code", "RETRY_EXHAUSTED"),
	HS("x-dlqd-error-class", "PERSISTENT"),
	HS("x-dlqd-dead-lettered-at", "2026-03-17T03:20:00Z"),
	HI("x-dlqd-publish-seq", 41),
};

static void test_parse_dlqd_copy(void **state)
{
	struct dlq_message m = {
		golden, golden_len, dlqd_headers, ARRAY_SIZE(dlqd_headers), NULL, 0
	};
	struct envelope *env = NULL;
	struct dlq_record r;
	uint64_t at;

	(void)state;
	assert_int_equal(dlqrecord_parse(&m, 0, &r, &env), 0);
	assert_non_null(env);
	assert_true(r.envelope);
	assert_string_equal(r.message_id, "evt_20260317_abc123");
	assert_string_equal(r.trace_id, "trc_x8f");
	assert_string_equal(r.error_code, "RETRY_EXHAUSTED");
	assert_string_equal(r.error_class, "PERSISTENT");
	assert_string_equal(r.schema_version, "v2");
	assert_int_equal(r.attempt, 6);
	assert_int_equal(r.replay_count, 0);
	assert_int_equal(parse_timestamp("2026-03-17T03:20:00Z", &at), 0);
	assert_int_equal(r.dead_lettered_at_usec, at);
	envelope_free(env);
}

/* Without headers (a copy made by hand or by an older dlqd) the body speaks. */
static void test_parse_body_only(void **state)
{
	struct dlq_message m = { golden, golden_len, NULL, 0, NULL, 0 };
	struct dlq_record r;

	(void)state;
	assert_int_equal(dlqrecord_parse(&m, 0, &r, NULL), 0);
	assert_true(r.envelope);
	assert_string_equal(r.message_id, "evt_20260317_abc123");
	assert_string_equal(r.error_code, "RETRY_EXHAUSTED");
	assert_int_equal(r.attempt, 6);
	assert_true(r.dead_lettered_at_usec > 0);
}

static void test_headers_win(void **state)
{
	static const struct header h[] = {
		HS("x-dlqd-error-code", "AUTH_REVOKED"),
		HS("x-dlqd-error-class", "NON_RETRYABLE"),
		HS("x-dlqd-attempt", "3"), /* a string count is read too */
		HI("x-dlqd-replay-count", 2),
		HS("x-dlqd-message-id", "id\nwith\tcontrols"),
	};
	struct dlq_message m = { golden, golden_len, h, ARRAY_SIZE(h), NULL, 0 };
	struct dlq_record r;

	(void)state;
	assert_int_equal(dlqrecord_parse(&m, 0, &r, NULL), 0);
	assert_string_equal(r.error_code, "AUTH_REVOKED");
	assert_string_equal(r.error_class, "NON_RETRYABLE");
	assert_int_equal(r.attempt, 3);
	assert_int_equal(r.replay_count, 2);
	/* Kept as they are: whoever prints them escapes them. */
	assert_string_equal(r.message_id, "id\nwith\tcontrols");
}

static void test_parse_invalid_body(void **state)
{
	static const char body[] = "{\"message_id\":\"x\",\"payload\":{}}";
	static const struct header h[] = {
		HS("x-dlqd-error-code", "INVALID_ENVELOPE"),
		HS("x-dlqd-error-class", "NON_RETRYABLE"),
		HI("x-dlqd-attempt", 1),
	};
	static const struct header props[] = {
		HS("message_id", "amqp-id-7"),
		HI("timestamp", 1700000000),
	};
	struct dlq_message m = { body, strlen(body), h, ARRAY_SIZE(h), props, ARRAY_SIZE(props) };
	struct envelope *env = (void *)1;
	struct dlq_record r;

	(void)state;
	/* Even a body that decodes is not rewritten when dlqd called it invalid
	 * (e.g. MESSAGE_TOO_LARGE): replay sends its bytes unchanged. */
	assert_int_equal(dlqrecord_parse(&m, 0, &r, &env), 0);
	assert_null(env);
	assert_false(r.envelope);
	assert_string_equal(r.message_id, "amqp-id-7");
	assert_string_equal(r.schema_version, "");
	assert_int_equal(r.dead_lettered_at_usec, 1700000000 * SEC);

	m.body = "\xff\xfe not json";
	m.len = 11;
	m.headers = NULL;
	m.n_headers = 0;
	assert_int_equal(dlqrecord_parse(&m, 0, &r, &env), 0);
	assert_null(env);
	assert_false(r.envelope);
	assert_string_equal(r.error_code, "");
	assert_int_equal(r.attempt, -1);
}

static void test_json_views(void **state)
{
	static const struct header props[] = {
		HS("content_type", "application/json"),
		HI("delivery_mode", 2),
	};
	struct dlq_message m = { golden, golden_len,	   dlqd_headers, ARRAY_SIZE(dlqd_headers),
				 props,	 ARRAY_SIZE(props) };
	struct dlq_record r;
	uint64_t at;
	json_t *j, *body;
	char *s;

	(void)state;
	assert_int_equal(dlqrecord_parse(&m, 0, &r, NULL), 0);
	assert_int_equal(parse_timestamp("2026-03-17T04:20:00Z", &at), 0);

	s = to_json(&m, &r, at, 0);
	assert_non_null(s);
	assert_string_equal(
		s,
		"{\"message_id\":\"evt_20260317_abc123\",\"trace_id\":\"trc_x8f\",\"error_code\":"
		"\"RETRY_EXHAUSTED\",\"error_class\":\"PERSISTENT\",\"attempt\":6,"
		"\"schema_version\":\"v2\",\"replay_count\":0,\"dead_lettered_at\":"
		"\"2026-03-17T03:20:00Z\",\"age_seconds\":3600,\"valid_envelope\":true,"
		"\"body_bytes\":1482}");
	free(s);

	s = to_json(&m, &r, at, DLQRECORD_JSON_FULL | DLQRECORD_JSON_PRETTY);
	assert_non_null(strstr(s, "\n  \"headers\": {\n    \"x-origin\": \"billing\""));
	j = json_loads(s, 0, NULL);
	free(s);
	body = json_loads(golden, 0, NULL);
	assert_true(json_equal(json_object_get(j, "body"), body));
	assert_int_equal(json_integer_value(
				 json_object_get(json_object_get(j, "headers"), "x-dlqd-attempt")),
			 6);
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "properties"),
							      "content_type")),
			    "application/json");
	json_decref(j);

	/* The archive keeps the exact text. */
	s = to_json(&m, &r, at, DLQRECORD_JSON_FULL | DLQRECORD_JSON_RAW_BODY);
	j = json_loads(s, 0, NULL);
	free(s);
	assert_string_equal(json_string_value(json_object_get(j, "body_text")), golden);
	assert_null(json_object_get(j, "body"));
	json_decref(j);
	json_decref(body);

	/* Bytes that are not UTF-8: base64, in body and headers alike. */
	static const struct header bin[] = { HS("x-bin", "\xff\x01") };
	struct dlq_message b = { "\xff\x00\x41", 3, bin, 1, NULL, 0 };
	assert_int_equal(dlqrecord_parse(&b, 0, &r, NULL), 0);
	s = to_json(&b, &r, at, DLQRECORD_JSON_FULL);
	assert_non_null(strstr(s, "\"body_base64\":\"/wBB\""));
	assert_non_null(strstr(s, "\"x-bin\":{\"base64\":\"/wE=\"}"));
	assert_non_null(strstr(s, "\"message_id\":null"));
	assert_non_null(strstr(s, "\"age_seconds\":null"));
	free(s);
}

/* Fuzzing found these: each once made show abort or purge --archive stop. */
static void test_hostile_headers(void **state)
{
	static const struct header h[] = {
		{ .key = "x-\xff\xfe", .key_len = 4, .kind = HEADER_STRING, .s = "v", .s_len = 1 },
		{ .key = "x-nul\0key", .key_len = 9, .kind = HEADER_INT, .i = 1 },
		{ .key = "x-nan", .key_len = 5, .kind = HEADER_FLOAT, .f = NAN },
		{ .key = "x-inf", .key_len = 5, .kind = HEADER_FLOAT, .f = INFINITY },
		{ .key = "x-minf", .key_len = 6, .kind = HEADER_FLOAT, .f = -INFINITY },
		{ .key = "x-half", .key_len = 6, .kind = HEADER_FLOAT, .f = 0.5 },
		{ .key = "x-esc\x1b[2J",
		  .key_len = 9,
		  .kind = HEADER_STRING,
		  .s = "\x1b]0;x\x07",
		  .s_len = 6 },
	};
	struct dlq_message m = { golden, golden_len, h, ARRAY_SIZE(h), NULL, 0 };
	struct dlq_record r;
	json_t *j, *hs;
	char *s;

	(void)state;
	assert_int_equal(dlqrecord_parse(&m, 0, &r, NULL), 0);
	s = to_json(&m, &r, 0, DLQRECORD_JSON_FULL | DLQRECORD_JSON_RAW_BODY);
	j = json_loads(s, 0, NULL);
	assert_non_null(j);
	hs = json_object_get(j, "headers");
	assert_int_equal(json_object_size(hs), ARRAY_SIZE(h));
	assert_string_equal(json_string_value(json_object_get(hs, "x-\\xff\\xfe")), "v");
	assert_int_equal(json_integer_value(json_object_get(hs, "x-nul\\x00key")), 1);
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(hs, "x-nan"), "float")), "NaN");
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(hs, "x-inf"), "float")),
		"Infinity");
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(hs, "x-minf"), "float")),
		"-Infinity");
	assert_true(json_real_value(json_object_get(hs, "x-half")) == 0.5);
	assert_string_equal(json_string_value(json_object_get(hs, "x-esc\x1b[2J")), "\x1b]0;x\x07");
	/* JSON escapes the controls: nothing raw for a terminal. */
	assert_null(strchr(s, '\x1b'));
	assert_null(strchr(s, '\x07'));
	json_decref(j);
	free(s);
}

/* An id from the AMQP property and codes from the body reach the record
 * as UTF-8; printing escapes their controls. */
static void test_hostile_ids_and_codes(void **state)
{
	static const char body[] = "{\"message_id\":\"m1\",\"payload\":{},"
				   "\"error_code\":\"E\\u001b]0;owned\\u0007\\u009b\","
				   "\"error_class\":\"TRANSIENT\\u202e\"}";
	static const struct header props[] = {
		{ .key = "message_id",
		  .key_len = 10,
		  .kind = HEADER_STRING,
		  .s = "p\xff\x1b[2J\x80",
		  .s_len = 7 },
	};
	struct dlq_message m = { body, strlen(body), NULL, 0, props, 1 };
	char term[DLQTEXT_TERM_SIZE(DLQRECORD_STR_MAX)];
	struct dlq_record r;
	struct buf b;
	json_t *j;

	(void)state;
	assert_int_equal(dlqrecord_parse(&m, 0, &r, NULL), 0);
	assert_true(r.envelope);
	assert_string_equal(r.message_id, "m1");
	assert_string_equal(r.error_code, "E\x1b]0;owned\x07\xc2\x9b");
	assert_string_equal(dlqtext_term(r.error_code, term, sizeof(term)),
			    "E\\x1b]0;owned\\x07\\u009b");
	assert_string_equal(dlqtext_term(r.error_class, term, sizeof(term)), "TRANSIENT\\u202e");

	/* Not an envelope: the id is the property's, its bad bytes as \xNN. */
	m.body = "x";
	m.len = 1;
	assert_int_equal(dlqrecord_parse(&m, 0, &r, NULL), 0);
	assert_string_equal(r.message_id, "p\\xff\x1b[2J\\x80");
	buf_init(&b, SIZE_MAX);
	assert_int_equal(dlqrecord_json(&m, &r, 0, 0, &b), 0);
	assert_int_equal(dlqtext_json(&b), 0);
	for (size_t i = 0; i < b.len; i++)
		assert_true((unsigned char)b.data[i] >= 0x20 && (unsigned char)b.data[i] != 0x7f);
	j = json_loads(b.data, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "message_id")),
			    "p\\xff\x1b[2J\\x80");
	json_decref(j);
	buf_done(&b);
}

/* Long values are cut at a character boundary, never inside a sequence. */
static void test_cut_on_character_boundary(void **state)
{
	char id[600], cls[600];
	struct header h[2] = {
		{ .key = "x-dlqd-message-id", .key_len = 17, .kind = HEADER_STRING, .s = id },
		{ .key = "x-dlqd-error-class", .key_len = 18, .kind = HEADER_STRING, .s = cls },
	};
	struct dlq_message m = { "x", 1, h, 2, NULL, 0 };
	struct dlq_record r;
	size_t n;

	(void)state;
	/* "a" then 3-byte euro signs: byte 256 falls inside one. */
	id[0] = 'a';
	for (n = 1; n + 3 <= sizeof(id); n += 3)
		memcpy(id + n, "\xe2\x82\xac", 3);
	h[0].s_len = n;
	memset(cls, 'c', sizeof(cls));
	memcpy(cls + 254, "\xc3\xa9", 2); /* ends exactly at the limit */
	h[1].s_len = sizeof(cls);
	assert_int_equal(dlqrecord_parse(&m, 0, &r, NULL), 0);
	assert_int_equal(strlen(r.message_id), 1 + 85 * 3);
	for (size_t i = 0; r.message_id[i]; i += utf8_seq_len((void *)(r.message_id + i), 4))
		assert_true(utf8_seq_len((void *)(r.message_id + i), strlen(r.message_id) - i) > 0);
	assert_int_equal(strlen(r.error_class), 256);
	assert_memory_equal(r.error_class + 254, "\xc3\xa9", 2);

	/* The body's code, which the envelope cuts to 256 bytes: "x" and then
	 * 2-byte characters, so byte 256 is the first half of one. */
	struct buf body;
	buf_init(&body, 4096);
	buf_printf(&body, "{\"message_id\":\"a\",\"payload\":{},\"error_code\":\"x");
	for (int i = 0; i < 200; i++)
		buf_append(&body, "\xc3\xa9", 2);
	buf_append(&body, "\"}", 2);
	m = (struct dlq_message){ body.data, body.len, NULL, 0, NULL, 0 };
	assert_int_equal(dlqrecord_parse(&m, 0, &r, NULL), 0);
	assert_true(r.envelope);
	assert_int_equal(strlen(r.error_code), 255);
	assert_null(strchr(r.error_code, '\\'));
	assert_memory_equal(r.error_code + 253, "\xc3\xa9", 2);
	buf_done(&body);
}

static void test_replay_count_clamped(void **state)
{
	static const struct header h[] = { HI("x-dlqd-replay-count", INT64_MAX) };
	static const char body[] =
		"{\"message_id\":\"a\",\"payload\":{},\"replay_count\":9223372036854775807}";
	struct dlq_message m = { body, strlen(body), h, 1, NULL, 0 };
	struct dlq_record r;

	(void)state;
	assert_int_equal(dlqrecord_parse(&m, 0, &r, NULL), 0);
	assert_int_equal(r.replay_count, DLQRECORD_REPLAY_COUNT_MAX);
	m.headers = NULL;
	m.n_headers = 0;
	assert_int_equal(dlqrecord_parse(&m, 0, &r, NULL), 0);
	assert_true(r.envelope);
	assert_int_equal(r.replay_count, DLQRECORD_REPLAY_COUNT_MAX);
	/* + 1 stays a positive int64. */
	assert_true((int64_t)(r.replay_count + 1) > 0);
}

/* A key that cannot be set fails the whole object, it is never left out. */
static void test_json_fails_loudly(void **state)
{
	struct dlq_message m = { "x", 1, NULL, 0, NULL, 0 };
	struct dlq_record r = { .attempt = 1 };
	struct buf b;

	(void)state;
	/* Not from dlqrecord_parse (which never keeps such bytes): jansson
	 * refuses the string, so setting message_id fails. */
	strscpy(r.message_id, "bad\xff", sizeof(r.message_id));
	buf_init(&b, SIZE_MAX);
	assert_int_equal(buf_append(&b, "keep", 4), 0);
	assert_int_equal(dlqrecord_json(&m, &r, 0, 0, &b), -ENOMEM);
	assert_string_equal(b.data, "keep");
	/* Over the buffer's maximum: the same, nothing half written. */
	r.message_id[0] = '\0';
	b.max = 20;
	assert_int_equal(dlqrecord_json(&m, &r, 0, 0, &b), -ENOMEM);
	assert_string_equal(b.data, "keep");
	b.max = SIZE_MAX;
	assert_int_equal(dlqrecord_json(&m, &r, 0, 0, &b), 0);
	assert_non_null(strstr(b.data, "keep{\"message_id\":null"));
	buf_done(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_dlqd_copy),
		cmocka_unit_test(test_parse_body_only),
		cmocka_unit_test(test_headers_win),
		cmocka_unit_test(test_parse_invalid_body),
		cmocka_unit_test(test_json_views),
		cmocka_unit_test(test_hostile_headers),
		cmocka_unit_test(test_hostile_ids_and_codes),
		cmocka_unit_test(test_cut_on_character_boundary),
		cmocka_unit_test(test_replay_count_clamped),
		cmocka_unit_test(test_json_fails_loudly),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
