/*
 * Unit tests for copy: the retry / DLQ copies checked field by field and
 * against golden files in tests/data/envelope/ (regenerate them with
 * DLQD_UPDATE_GOLDEN=1 after an intended format change, then review the
 * diff), the spliced members byte for byte, and the headers.
 */
#include <errno.h>
#include <jansson.h>
#include <inttypes.h>
#include <libgen.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/copy.h"
#include "common/envelope.h"
#include "common/util.h"
#include "envelope_test.h"

static json_t *parse_strict(const char *s, size_t len)
{
	json_error_t err;
	json_t *j = json_loadb(s, len, JSON_REJECT_DUPLICATES, &err);

	if (!j)
		fail_msg("output is not strict JSON: %s: %.300s", err.text, s);
	return j;
}

/* The body of the copy copy_failure() builds, as a C string. */
static char *envelope_encode_failure(const struct envelope *e, const struct failure *f, size_t *len)
{
	struct copy_source src = { .body = e->body, .len = e->len };
	struct copy c;
	char *out;

	assert_int_equal(copy_failure("jobs", &src, e, f, &c), 0);
	out = strndup(c.body, c.len);
	if (len)
		*len = c.len;
	copy_done(&c);
	return out;
}

/* ---- encoding ---- */

static const char original[] =
	"{\"message_id\":\"evt_20260317_abc123\",\"trace_id\":\"trc_x8f\",\"schema_version\":"
	"\"v2\","
	"\"attempt\":2,\"max_attempt\":5,\"first_seen_at\":\"2026-03-17T03:10:00Z\","
	"\"next_retry_at\":\"2026-03-17T03:11:00.500Z\",\"error_code\":\"UPSTREAM_TIMEOUT\","
	"\"error_class\":\"TRANSIENT\",\"x_custom\":{\"nested\":[1,\"\xc3\xa9\\u2028\",null,-0.5],"
	"\"s\":\"\\\"q\\\"\"},"
	"\"payload\":{\"order\":42,\"items\":[{\"sku\":\"A\",\"qty\":2}],\"note\":"
	"\"caf\xc3\xa9\\n\"}}";

static void get_str(json_t *o, const char *key, const char *want)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_string(v))
		fail_msg("%s: not a string", key);
	assert_string_equal(json_string_value(v), want);
}

static void get_int(json_t *o, const char *key, json_int_t want)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v))
		fail_msg("%s: not an integer", key);
	assert_int_equal(json_integer_value(v), want);
}

static void test_encode_retry(void **state)
{
	_cleanup_(envelope_freep) struct envelope *e = decode_ok(original);
	struct result r;
	struct failure f = {
		.error_code = "UPSTREAM_THROTTLED",
		.error_class = ERROR_CLASS_TRANSIENT,
		.attempt = 3,
		.now_usec = T0 + 90 * USEC_PER_SEC + 123456,
		.next_retry_at_usec = T0 + 120 * USEC_PER_SEC + 250999,
		.result = &r,
	};
	_cleanup_free_ char *out = NULL, *p = NULL, *pay = NULL;
	json_t *j, *le, *errs;
	size_t len;

	result_init(&r, RESULT_HTTP);
	r.http_status = 429;
	r.retry_after_usec = 2500 * USEC_PER_MSEC;
	memcpy(r.evidence, "{\"error\":\"slow down\"}", 21);
	r.evidence_len = 21;
	r.duration_usec = 12345678;

	out = envelope_encode_failure(e, &f, &len);
	assert_non_null(out);
	assert_int_equal(strlen(out), len);
	j = parse_strict(out, len);

	/* Identity fields and unknown fields untouched, byte for byte. */
	get_str(j, "message_id", "evt_20260317_abc123");
	get_str(j, "trace_id", "trc_x8f");
	get_str(j, "schema_version", "v2");
	get_int(j, "max_attempt", 5);
	get_str(j, "first_seen_at", "2026-03-17T03:10:00Z");
	/* As the producer wrote them: escapes stay escapes. */
	assert_non_null(strstr(out, "\"x_custom\":{\"nested\":[1,\"\xc3\xa9\\u2028\",null,-0.5],"
				    "\"s\":\"\\\"q\\\"\"}"));
	assert_non_null(strstr(out,
			       "\"payload\":{\"order\":42,\"items\":[{\"sku\":\"A\",\"qty\":2}],"
			       "\"note\":\"caf\xc3\xa9\\n\"}"));
	pay = payload_dup(e, NULL);
	{
		json_t *pj = parse_strict(pay, strlen(pay));
		assert_true(json_equal(json_object_get(j, "payload"), pj));
		json_decref(pj);
	}

	/* What a failure updates. */
	get_int(j, "attempt", 3);
	get_str(j, "error_code", "UPSTREAM_THROTTLED");
	get_str(j, "error_class", "TRANSIENT");
	get_str(j, "next_retry_at", "2026-03-17T03:12:00.250Z");
	assert_null(json_object_get(j, "dead_lettered_at"));

	le = json_object_get(j, "last_error");
	assert_true(json_is_object(le));
	get_str(le, "error_code", "UPSTREAM_THROTTLED");
	get_str(le, "error_class", "TRANSIENT");
	get_str(le, "at", "2026-03-17T03:11:30Z");
	get_int(le, "attempt", 3);
	get_str(le, "kind", "http");
	get_int(le, "http_status", 429);
	get_int(le, "retry_after_ms", 2500);
	get_str(le, "evidence", "{\"error\":\"slow down\"}");
	assert_true(json_is_false(json_object_get(le, "evidence_truncated")));
	get_int(le, "duration_ms", 12345);
	assert_null(json_object_get(le, "cause_code"));
	assert_null(json_object_get(le, "cause_class"));
	assert_null(json_object_get(le, "transport"));
	assert_null(json_object_get(le, "handler_code"));
	assert_int_equal(json_object_size(le), 10);

	errs = json_object_get(j, "errors");
	assert_int_equal(json_array_size(errs), 1);
	assert_true(json_equal(json_array_get(errs, 0), le));

	/* The decoded document is untouched: payload and a second call agree. */
	p = payload_dup(e, NULL);
	assert_string_equal(p, pay);
	{
		_cleanup_free_ char *again = envelope_encode_failure(e, &f, NULL);
		assert_string_equal(again, out);
	}
	json_decref(j);
}

static void test_encode_dlq(void **state)
{
	/* Minimal body: first_seen_at comes from decode time; next_retry_at is dropped. */
	_cleanup_(envelope_freep) struct envelope *e =
		decode_ok("{\"payload\":{\"k\":[1,2]},\"message_id\":\"m9\",\"attempt\":5,"
			  "\"next_retry_at\":\"2026-03-17T03:11:00Z\",\"dead_lettered_at\":null}");
	struct result r;
	struct failure f = {
		.error_code = "RETRY_EXHAUSTED",
		.error_class = ERROR_CLASS_PERSISTENT,
		.cause_code = "TEMPFAIL",
		.cause_class = ERROR_CLASS_TRANSIENT,
		.attempt = 6,
		.now_usec = T0 + 3600 * USEC_PER_SEC + 999999,
		.result = &r,
	};
	_cleanup_free_ char *out = NULL;
	json_t *j, *le;
	size_t len;

	result_init(&r, RESULT_EXIT);
	r.exit_code = 75;
	memcpy(r.evidence, "disk full\n", 10);
	r.evidence_len = 10;
	r.evidence_truncated = true;
	r.duration_usec = 999;

	out = envelope_encode_failure(e, &f, &len);
	assert_non_null(out);
	j = parse_strict(out, len);
	assert_true(strncmp(out, "{\"payload\":{\"k\":[1,2]},\"message_id\":\"m9\",\"attempt\":6,",
			    53) == 0);
	get_int(j, "attempt", 6);
	get_str(j, "first_seen_at", "2026-03-17T03:10:00Z");
	assert_null(json_object_get(j, "next_retry_at"));
	get_str(j, "dead_lettered_at", "2026-03-17T04:10:00Z");
	get_str(j, "error_code", "RETRY_EXHAUSTED");
	get_str(j, "error_class", "PERSISTENT");
	assert_null(json_object_get(j, "max_attempt"));
	assert_null(json_object_get(j, "trace_id"));

	le = json_object_get(j, "last_error");
	get_str(le, "error_code", "RETRY_EXHAUSTED");
	get_str(le, "error_class", "PERSISTENT");
	get_str(le, "cause_code", "TEMPFAIL");
	get_str(le, "cause_class", "TRANSIENT");
	get_str(le, "at", "2026-03-17T04:10:00Z");
	get_int(le, "attempt", 6);
	get_str(le, "kind", "exit");
	get_int(le, "exit_code", 75);
	get_str(le, "evidence", "disk full\n");
	assert_true(json_is_true(json_object_get(le, "evidence_truncated")));
	get_int(le, "duration_ms", 0);
	assert_null(json_object_get(le, "http_status"));
	assert_null(json_object_get(le, "retry_after_ms"));
	assert_int_equal(json_object_size(le), 11);
	assert_int_equal(json_array_size(json_object_get(j, "errors")), 1);
	json_decref(j);
}

static void test_encode_no_result(void **state)
{
	_cleanup_(envelope_freep) struct envelope *e =
		decode_ok("{\"message_id\":\"m\",\"payload\":{}}");
	struct failure f = {
		.error_code = "INVALID_PAYLOAD",
		.error_class = ERROR_CLASS_NON_RETRYABLE,
		.attempt = 1,
		.now_usec = T0,
	};
	_cleanup_free_ char *out = envelope_encode_failure(e, &f, NULL);

	assert_string_equal(
		out,
		"{\"message_id\":\"m\",\"payload\":{},\"attempt\":1,"
		"\"first_seen_at\":\"2026-03-17T03:10:00Z\",\"error_code\":\"INVALID_PAYLOAD\","
		"\"error_class\":\"NON_RETRYABLE\",\"dead_lettered_at\":\"2026-03-17T03:10:00Z\","
		"\"last_error\":{\"error_code\":\"INVALID_PAYLOAD\",\"error_class\":\"NON_"
		"RETRYABLE\","
		"\"at\":\"2026-03-17T03:10:00Z\",\"attempt\":1},"
		"\"errors\":[{\"error_code\":\"INVALID_PAYLOAD\",\"error_class\":\"NON_RETRYABLE\","
		"\"at\":\"2026-03-17T03:10:00Z\",\"attempt\":1}]}");
}

static json_t *encode_one(const char *body, const struct failure *f)
{
	_cleanup_(envelope_freep) struct envelope *e = decode_ok(body);
	_cleanup_free_ char *out = NULL;
	json_t *j;
	size_t len;

	out = envelope_encode_failure(e, f, &len);
	assert_non_null(out);
	j = parse_strict(out, len);
	return j;
}

static void test_encode_result_kinds(void **state)
{
	static const char body[] = "{\"message_id\":\"m\",\"payload\":{}}";
	struct result r;
	struct failure f = { .error_code = "X",
			     .error_class = ERROR_CLASS_TRANSIENT,
			     .attempt = 1,
			     .now_usec = T0,
			     .next_retry_at_usec = T0,
			     .result = &r };
	json_t *j, *le;

	result_init(&r, RESULT_TRANSPORT);
	strscpy(r.transport, "COULDNT_CONNECT", sizeof(r.transport));
	strscpy(r.detail, "Failed to connect to 127.0.0.1 port 9: Connection refused",
		sizeof(r.detail));
	j = encode_one(body, &f);
	le = json_object_get(j, "last_error");
	get_str(le, "kind", "transport");
	get_str(le, "transport", "COULDNT_CONNECT");
	get_str(le, "detail", "Failed to connect to 127.0.0.1 port 9: Connection refused");
	assert_null(json_object_get(le, "evidence"));
	assert_null(json_object_get(le, "evidence_truncated"));
	get_str(j, "next_retry_at", "2026-03-17T03:10:00.000Z");
	json_decref(j);

	result_init(&r, RESULT_TIMEOUT);
	r.signal = SIGKILL;
	j = encode_one(body, &f);
	le = json_object_get(j, "last_error");
	get_str(le, "kind", "timeout");
	assert_true(json_is_true(json_object_get(le, "timeout")));
	json_decref(j);

	result_init(&r, RESULT_SIGNAL);
	r.signal = SIGSEGV;
	j = encode_one(body, &f);
	le = json_object_get(j, "last_error");
	get_str(le, "kind", "signal");
	get_int(le, "signal", SIGSEGV);
	get_str(le, "signal_name", "SIGSEGV");
	json_decref(j);

	r.signal = SIGRTMIN + 2;
	j = encode_one(body, &f);
	get_str(json_object_get(j, "last_error"), "signal_name", "SIGRTMIN+2");
	json_decref(j);

	result_init(&r, RESULT_INTERNAL);
	strscpy(r.detail, "fork: Resource temporarily unavailable", sizeof(r.detail));
	j = encode_one(body, &f);
	le = json_object_get(j, "last_error");
	get_str(le, "kind", "internal");
	get_str(le, "detail", "fork: Resource temporarily unavailable");
	json_decref(j);

	/* The handler classified itself; its strings are not trusted to be UTF-8. */
	result_init(&r, RESULT_HTTP);
	r.http_status = 500;
	strscpy(r.handler_code, "DB_DOWN\xff", sizeof(r.handler_code));
	strscpy(r.handler_class, "TRANSIENT", sizeof(r.handler_class));
	f.error_code = "DB_DOWN";
	f.next_retry_at_usec = T0 + 999999;
	j = encode_one(body, &f);
	le = json_object_get(j, "last_error");
	get_str(le, "handler_code", "DB_DOWN\xef\xbf\xbd");
	get_str(le, "handler_class", "TRANSIENT");
	get_str(j, "next_retry_at", "2026-03-17T03:10:00.999Z");
	json_decref(j);
}

static void test_encode_evidence_sanitized(void **state)
{
	static const char raw[] =
		"ok \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80|" /* valid 2, 3, 4 byte */
		"\xff|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|" /* bad byte, overlong, surrogate, >10FFFF */
		"\x00|\x80|\ttab\n|\xe2\x82";		       /* NUL, lone continuation, cut-off */
	static const char want[] =
		"ok \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80|"
		"\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
		"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
		"\xef\xbf\xbd|\xef\xbf\xbd|\ttab\n|\xef\xbf\xbd\xef\xbf\xbd";
	struct result r;
	struct failure f = { .error_code = "E",
			     .error_class = ERROR_CLASS_PERSISTENT,
			     .attempt = 1,
			     .now_usec = T0,
			     .result = &r };
	json_t *j, *ev;

	result_init(&r, RESULT_EXIT);
	r.exit_code = 1;
	memcpy(r.evidence, raw, sizeof(raw) - 1);
	r.evidence_len = sizeof(raw) - 1;
	j = encode_one("{\"message_id\":\"m\",\"payload\":{}}", &f);
	ev = json_object_get(json_object_get(j, "last_error"), "evidence");
	assert_int_equal(json_string_length(ev), sizeof(want) - 1);
	assert_memory_equal(json_string_value(ev), want, sizeof(want) - 1);
	json_decref(j);

	/* A full buffer of NULs: bounded (3 bytes each), never beyond the array. */
	result_init(&r, RESULT_EXIT);
	r.evidence_len = sizeof(r.evidence) + 100; /* lies: clamped to the array */
	j = encode_one("{\"message_id\":\"m\",\"payload\":{}}", &f);
	ev = json_object_get(json_object_get(j, "last_error"), "evidence");
	assert_int_equal(json_string_length(ev), 3 * RESULT_EVIDENCE_MAX);
	json_decref(j);

	/* Random bytes always give strict, NUL-free JSON strings. */
	srand(1);
	for (int round = 0; round < 2000; round++) {
		result_init(&r, RESULT_EXIT);
		r.evidence_len = (size_t)rand() % sizeof(r.evidence);
		for (size_t i = 0; i < r.evidence_len; i++)
			r.evidence[i] = (char)(round % 2 ? rand() : 0x80 + rand() % 0x80);
		j = encode_one("{\"message_id\":\"m\",\"payload\":{}}", &f);
		ev = json_object_get(json_object_get(j, "last_error"), "evidence");
		if (r.evidence_len == 0) {
			assert_null(ev);
		} else {
			assert_true(json_is_string(ev));
			assert_int_equal(strlen(json_string_value(ev)), json_string_length(ev));
			assert_true(json_string_length(ev) <= 3 * r.evidence_len);
		}
		json_decref(j);
	}
}

static void test_encode_errors_bounded(void **state)
{
	_cleanup_free_ char *body =
		strdup("{\"message_id\":\"m\",\"payload\":{\"v\":1},\"keep\":true}");
	struct result r;
	json_t *j, *errs;

	result_init(&r, RESULT_HTTP);
	r.http_status = 503;
	for (uint32_t i = 1; i <= 15; i++) {
		_cleanup_(envelope_freep) struct envelope *e = decode_ok(body);
		struct failure f = { .error_code = "UPSTREAM_THROTTLED",
				     .error_class = ERROR_CLASS_TRANSIENT,
				     .attempt = i,
				     .now_usec = T0 + i * USEC_PER_SEC,
				     .next_retry_at_usec = T0 + (i + 1) * USEC_PER_SEC,
				     .result = &r };

		char *next;

		assert_int_equal(e->attempt, i - 1);
		/* The envelope borrows body: encode before letting it go. */
		next = envelope_encode_failure(e, &f, NULL);
		assert_non_null(next);
		free(body);
		body = next;
	}
	j = parse_strict(body, strlen(body));
	errs = json_object_get(j, "errors");
	assert_int_equal(json_array_size(errs), ENVELOPE_ERRORS_KEPT);
	for (size_t k = 0; k < ENVELOPE_ERRORS_KEPT; k++)
		get_int(json_array_get(errs, k), "attempt", (json_int_t)(6 + k));
	get_int(json_object_get(j, "last_error"), "attempt", 15);
	get_int(j, "attempt", 15);
	get_str(j, "first_seen_at", "2026-03-17T03:10:00Z");
	assert_true(json_is_true(json_object_get(j, "keep")));
	assert_non_null(strstr(body, "\"payload\":{\"v\":1}"));
	json_decref(j);

	/* A foreign history longer than the bound is trimmed too, oldest first. */
	{
		_cleanup_(envelope_freep) struct envelope *e =
			decode_ok("{\"message_id\":\"m\",\"payload\":{},\"errors\":[0,1,2,3,4,5,6,"
				  "7,8,9,10,11,\"x\"]}");
		struct failure f = { .error_code = "E",
				     .error_class = ERROR_CLASS_TRANSIENT,
				     .attempt = 1,
				     .now_usec = T0 };
		_cleanup_free_ char *out = envelope_encode_failure(e, &f, NULL);

		assert_non_null(
			strstr(out, "\"errors\":[4,5,6,7,8,9,10,11,\"x\",{\"error_code\":\"E\""));
	}
}

static void test_encode_twice(void **state)
{
	_cleanup_(envelope_freep) struct envelope *e = decode_ok(original);
	struct failure retry = { .error_code = "A",
				 .error_class = ERROR_CLASS_TRANSIENT,
				 .attempt = 3,
				 .now_usec = T0,
				 .next_retry_at_usec = T0 + 1 };
	struct failure dlq = {
		.error_code = "B",
		.error_class = ERROR_CLASS_NON_RETRYABLE,
		.attempt = 3,
		.now_usec = T0,
	};
	_cleanup_free_ char *first = NULL, *second = NULL, *third = NULL;
	json_t *j;

	first = envelope_encode_failure(e, &retry, NULL);
	second = envelope_encode_failure(e, &dlq, NULL);
	third = envelope_encode_failure(e, &retry, NULL);
	assert_non_null(first);
	assert_non_null(second);
	assert_string_equal(first, third);

	j = parse_strict(second, strlen(second));
	assert_int_equal(json_array_size(json_object_get(j, "errors")), 1);
	get_str(json_object_get(j, "last_error"), "error_code", "B");
	assert_null(json_object_get(j, "next_retry_at"));
	get_str(j, "dead_lettered_at", "2026-03-17T03:10:00Z");
	json_decref(j);
}

/* ---- golden files ---- */

static char *data_path(const char *name)
{
	const char *dir = getenv("DLQD_TEST_DATA");
	char *p = NULL;

	if (dir)
		assert_true(asprintf(&p, "%s/envelope/%s", dir, name) > 0);
	else {
		_cleanup_free_ char *src = strdup(__FILE__);
		assert_true(asprintf(&p, "%s/../data/envelope/%s", dirname(src), name) > 0);
	}
	return p;
}

static void check_golden(const char *in_name, const char *out_name, const struct failure *f)
{
	_cleanup_free_ char *in_path = data_path(in_name), *out_path = data_path(out_name);
	_cleanup_free_ char *in = NULL, *want = NULL, *got = NULL;
	_cleanup_(envelope_freep) struct envelope *e = NULL;
	size_t in_len, want_len, got_len;
	char why[256] = "";

	assert_int_equal(read_file_max(in_path, 1 << 20, &in, &in_len), 0);
	if (envelope_decode(in, in_len, T0, &e, why, sizeof(why)) < 0)
		fail_msg("%s: %s", in_path, why);
	got = envelope_encode_failure(e, f, &got_len);
	assert_non_null(got);

	if (getenv("DLQD_UPDATE_GOLDEN")) {
		FILE *fp = fopen(out_path, "w");
		assert_non_null(fp);
		fprintf(fp, "%s\n", got);
		assert_int_equal(fclose(fp), 0);
	}
	/* The file ends with one newline so that editors leave it alone. */
	assert_int_equal(read_file_max(out_path, 1 << 20, &want, &want_len), 0);
	assert_true(want_len > 0 && want[want_len - 1] == '\n');
	want[--want_len] = '\0';
	if (got_len != want_len || memcmp(got, want, got_len) != 0)
		fail_msg("%s differs:\n got: %s\nwant: %s", out_path, got, want);
}

static void test_golden(void **state)
{
	struct result http, exec;
	struct failure retry = {
		.error_code = "UPSTREAM_THROTTLED",
		.error_class = ERROR_CLASS_TRANSIENT,
		.attempt = 3,
		.now_usec = T0 + 150 * USEC_PER_SEC,
		.next_retry_at_usec = T0 + 168 * USEC_PER_SEC + 250 * USEC_PER_MSEC,
		.result = &http,
	};
	struct failure dlq = {
		.error_code = "RETRY_EXHAUSTED",
		.error_class = ERROR_CLASS_PERSISTENT,
		.cause_code = "TEMPFAIL",
		.cause_class = ERROR_CLASS_TRANSIENT,
		.attempt = 6,
		.now_usec = T0 + 600 * USEC_PER_SEC,
		.result = &exec,
	};
	static const char stderr_tail[] = "backup: \xff\xfe write failed\x00\nretry later\n";

	result_init(&http, RESULT_HTTP);
	http.http_status = 429;
	http.retry_after_usec = 3 * USEC_PER_SEC;
	strscpy(http.handler_code, "RATE_LIMITED", sizeof(http.handler_code));
	memcpy(http.evidence, "{\"error_code\":\"RATE_LIMITED\",\"detail\":\"t", 40);
	http.evidence_len = 40;
	http.evidence_truncated = true;
	http.duration_usec = 85 * USEC_PER_MSEC + 400;

	result_init(&exec, RESULT_EXIT);
	exec.exit_code = 75;
	memcpy(exec.evidence, stderr_tail, sizeof(stderr_tail) - 1);
	exec.evidence_len = sizeof(stderr_tail) - 1;
	exec.duration_usec = 2 * USEC_PER_SEC;

	check_golden("full.in.json", "full.retry.out.json", &retry);
	check_golden("full.in.json", "full.dlq.out.json", &dlq);
	check_golden("minimal.in.json", "minimal.retry.out.json", &retry);
}

/* ---- complete copies: exchange, routing key, properties, headers, body ---- */

#define H(k, kind_, ...)                                                                      \
	{                                                                                     \
		.key = k, .key_len = sizeof(k) - 1, .kind = kind_, .raw = "orig", __VA_ARGS__ \
	}
#define HSTR(k, v) H(k, HEADER_STRING, .s = v, .s_len = sizeof(v) - 1)
#define HINT(k, v) H(k, HEADER_INT, .i = v)

/* What an earlier hop left on the message, plus the producer's own. */
static const struct header src_headers[] = {
	HSTR("tenant", "acme"),
	HINT("x-dlqd-attempt", 2),
	HINT("x-dlqd-publish-seq", 77),
	HSTR("x-dlqd-error-code", "UPSTREAM_TIMEOUT"),
	HSTR("x-dlqd-original-user-id", "svc-billing"),
	HSTR("x-dlqd-dead-lettered-at", "2026-03-17T03:00:00Z"),
	HINT("x-dlqd-replay-count", 1),
	HSTR("x-dlqd-error-detail", "body of 2000000 bytes exceeds [pipeline] max_message_size"),
	H("routing", HEADER_OTHER),
};

static void render_header(struct buf *b, const struct header *h)
{
	buf_printf(b, "header %s %.*s = ", h->raw ? "kept" : "set ", (int)h->key_len, h->key);
	if (h->kind == HEADER_INT)
		buf_printf(b, "int %" PRId64 "\n", h->i);
	else if (h->kind == HEADER_STRING)
		buf_printf(b, "string \"%.*s\"\n", (int)h->s_len, h->s);
	else
		buf_printf(b, "(kept as it came)\n");
}

/* The copy as text: one line per decision, then the body. */
static char *render(const struct copy *c)
{
	struct buf b;

	buf_init(&b, 1 << 20);
	buf_printf(&b, "exchange \"%s\"\nrouting_key \"%s\"\n", c->exchange, c->routing_key);
	buf_printf(&b, "drop_props%s%s\n",
		   c->drop_props & COPY_DROP_EXPIRATION ? " expiration" : "",
		   c->drop_props & COPY_DROP_USER_ID ? " user_id" : "");
	buf_printf(&b, "default_content_type %s\n", c->default_content_type ? "yes" : "no");
	for (size_t i = 0; i < c->n_headers; i++)
		render_header(&b, &c->headers[i]);
	buf_printf(&b, "body ");
	buf_append(&b, c->body, c->len);
	buf_printf(&b, "\n");
	return buf_steal(&b, NULL);
}

static void check_golden_copy(const char *name, const struct copy *c)
{
	_cleanup_free_ char *path = data_path(name), *want = NULL, *got = render(c);
	size_t want_len;

	if (getenv("DLQD_UPDATE_GOLDEN")) {
		FILE *fp = fopen(path, "w");
		assert_non_null(fp);
		fputs(got, fp);
		assert_int_equal(fclose(fp), 0);
	}
	assert_int_equal(read_file_max(path, 1 << 20, &want, &want_len), 0);
	if (strcmp(got, want) != 0)
		fail_msg("%s differs:\n got: %s\nwant: %s", path, got, want);
}

static char *read_data(const char *name, size_t *len)
{
	_cleanup_free_ char *path = data_path(name);
	char *text = NULL;

	assert_int_equal(read_file_max(path, 1 << 20, &text, len), 0);
	return text;
}

static void test_golden_copies(void **state)
{
	_cleanup_free_ char *full = NULL, *dlq = NULL;
	size_t full_len, dlq_len;
	_cleanup_(envelope_freep) struct envelope *e = NULL, *d = NULL;
	static const char invalid_body[] = "{\"message_id\": 7, \"payload\": [1e400]}";
	struct copy_source src = {
		.headers = src_headers,
		.n_headers = ARRAY_SIZE(src_headers),
		.expiration = "60000",
		.expiration_len = 5,
		.user_id = "svc-billing",
		.user_id_len = 11,
	};
	struct failure retry = { .error_code = "UPSTREAM_THROTTLED",
				 .error_class = ERROR_CLASS_TRANSIENT,
				 .attempt = 3,
				 .now_usec = T0 + 150 * USEC_PER_SEC,
				 .next_retry_at_usec = T0 + 168 * USEC_PER_SEC,
				 .lane_ms = 18000 };
	struct failure dead = { .error_code = "AUTH_REVOKED",
				.error_class = ERROR_CLASS_NON_RETRYABLE,
				.attempt = 3,
				.now_usec = T0 + 150 * USEC_PER_SEC };
	struct failure reject = { .error_code = ERROR_CODE_INVALID_ENVELOPE,
				  .error_class = ERROR_CLASS_NON_RETRYABLE,
				  .attempt = 1,
				  .now_usec = T0,
				  .detail = "message_id: expected string, got integer" };
	struct copy c;

	full = read_data("full.in.json", &full_len);
	e = decode_ok(full);
	src.body = full;
	src.len = full_len;
	assert_int_equal(copy_failure("jobs", &src, e, &retry, &c), 0);
	check_golden_copy("full.retry.copy", &c);
	copy_done(&c);
	assert_int_equal(copy_failure("jobs", &src, e, &dead, &c), 0);
	check_golden_copy("full.dlq.copy", &c);
	copy_done(&c);

	/* Not an envelope: the bytes go unchanged, the reason in a header. */
	src.body = invalid_body;
	src.len = sizeof(invalid_body) - 1;
	src.expiration = NULL;
	assert_int_equal(copy_failure("jobs", &src, NULL, &reject, &c), 0);
	assert_ptr_equal(c.body, invalid_body);
	check_golden_copy("invalid.dlq.copy", &c);
	copy_done(&c);
	assert_int_equal(copy_replay("jobs", &src, NULL, 1, T0, &c), 0);
	assert_ptr_equal(c.body, invalid_body);
	check_golden_copy("invalid.replay.copy", &c);
	copy_done(&c);

	/* A DLQ copy replayed: attempt 0, replay_count + 1, the history kept. */
	dlq = read_data("full.dlq.out.json", &dlq_len);
	d = decode_ok(dlq);
	src.body = dlq;
	src.len = dlq_len;
	src.user_id = NULL;
	assert_int_equal(copy_replay("jobs", &src, d, 4, T0 + 3600 * USEC_PER_SEC, &c), 0);
	check_golden_copy("full.replay.copy", &c);
	copy_done(&c);
}

/*
 * A retry the budget put back: to a delay lane, attempt and history
 * unchanged, only next_retry_at new, and x-dlqd-budget-deferred counting up.
 */
static void test_golden_defer(void **state)
{
	static const struct header deferred_headers[] = {
		HSTR("tenant", "acme"),
		HINT("x-dlqd-attempt", 3),
		HINT("x-dlqd-publish-seq", 78),
		HSTR("x-dlqd-error-code", "UPSTREAM_THROTTLED"),
		HSTR("x-dlqd-error-class", "TRANSIENT"),
		HINT("x-dlqd-budget-deferred", 2),
		H("routing", HEADER_OTHER),
	};
	_cleanup_free_ char *retry = NULL;
	_cleanup_(envelope_freep) struct envelope *e = NULL, *again = NULL;
	struct copy_source src = { .headers = src_headers, .n_headers = ARRAY_SIZE(src_headers) };
	struct copy c;
	size_t len;
	const char *old_at, *new_at;

	retry = read_data("full.retry.out.json", &len);
	while (len > 0 && retry[len - 1] == '\n') /* the file's last newline */
		retry[--len] = '\0';
	e = decode_ok(retry);
	src.body = retry;
	src.len = len;
	assert_int_equal(copy_defer("jobs", &src, e, 5000, T0 + 200 * USEC_PER_SEC, &c), 0);
	check_golden_copy("full.defer.copy", &c);
	/* Byte for byte the retry copy, but for next_retry_at's value. */
	assert_int_equal(c.len, len);
	old_at = strstr(retry, "\"next_retry_at\":\"");
	new_at = strstr(c.body, "\"next_retry_at\":\"");
	assert_non_null(old_at);
	assert_non_null(new_at);
	assert_int_equal(old_at - retry, new_at - c.body);
	assert_memory_equal(retry, c.body, (size_t)(old_at - retry));
	assert_string_equal(new_at + 42, old_at + 42);
	assert_memory_equal(new_at, "\"next_retry_at\":\"2026-03-17T03:13:20.000Z\"", 42);
	again = decode_ok(c.body);
	assert_int_equal(again->attempt, e->attempt);
	copy_done(&c);

	/* A second deferral counts up; the stale sequence number goes. */
	src.headers = deferred_headers;
	src.n_headers = ARRAY_SIZE(deferred_headers);
	assert_int_equal(copy_defer("jobs", &src, e, 5000, T0 + 200 * USEC_PER_SEC, &c), 0);
	assert_null(header_find(c.headers, c.n_headers, HDR_PUBLISH_SEQ));
	assert_int_equal(header_find(c.headers, c.n_headers, HDR_BUDGET_DEFERRED)->i, 3);
	assert_int_equal(header_find(c.headers, c.n_headers, HDR_ATTEMPT)->i, 3);
	assert_string_equal(c.routing_key, "jobs.retry.5000");
	copy_done(&c);
}

/* Numbers no double or int64 holds, escapes, key order and whitespace: the
 * payload and unknown members reach the handler and every copy as written. */
static void test_golden_fidelity(void **state)
{
	_cleanup_free_ char *in = NULL, *payload = NULL;
	size_t in_len, payload_len, n;
	_cleanup_(envelope_freep) struct envelope *e = NULL;
	struct copy_source src;
	struct failure retry = { .error_code = "E",
				 .error_class = ERROR_CLASS_TRANSIENT,
				 .attempt = 1,
				 .now_usec = T0,
				 .next_retry_at_usec = T0 + USEC_PER_SEC,
				 .lane_ms = 1000 };
	struct copy c;
	const char *p;

	in = read_data("fidelity.in.json", &in_len);
	payload = read_data("fidelity.payload.json", &payload_len);
	e = decode_ok(in);
	p = envelope_payload(e, &n);
	assert_int_equal(n, payload_len);
	assert_memory_equal(p, payload, n);

	src = (struct copy_source){ .body = in, .len = in_len };
	assert_int_equal(copy_failure("jobs", &src, e, &retry, &c), 0);
	check_golden_copy("fidelity.retry.copy", &c);
	assert_non_null(memmem(c.body, c.len, payload, payload_len));
	assert_non_null(memmem(c.body, c.len, "\"x_ext\":1.10", 12));
	copy_done(&c);
	retry.next_retry_at_usec = 0;
	assert_int_equal(copy_failure("jobs", &src, e, &retry, &c), 0);
	assert_non_null(memmem(c.body, c.len, payload, payload_len));
	copy_done(&c);
	assert_int_equal(copy_replay("jobs", &src, e, 0, T0, &c), 0);
	assert_non_null(memmem(c.body, c.len, payload, payload_len));
	copy_done(&c);
}

static void test_replay_count_saturates(void **state)
{
	static const char body[] =
		"{\"message_id\":\"a\",\"next_retry_at\":\"2026-01-01T00:00:00Z\","
		"\"payload\":{\"k\":1},\"replay_count\":99999999999999999999}";
	_cleanup_(envelope_freep) struct envelope *e = decode_ok(body);
	struct copy_source src = { .body = body, .len = strlen(body) };
	struct copy c;

	assert_int_equal(e->replay_count, ENVELOPE_REPLAY_COUNT_MAX);
	assert_int_equal(copy_replay("q", &src, e, e->replay_count, 0, &c), 0);
	assert_int_equal(c.n_headers, 3);
	assert_int_equal(c.headers[1].i, INT64_MAX);
	assert_string_equal(c.exchange, "");
	assert_string_equal(c.routing_key, "q");
	assert_memory_equal(c.body,
			    "{\"message_id\":\"a\",\"payload\":{\"k\":1},"
			    "\"replay_count\":9223372036854775807,\"attempt\":0,"
			    "\"replayed_at\":\"1970-01-01T00:00:00Z\"}",
			    c.len);
	copy_done(&c);
}

/* What a classic main queue redelivers: dlqd's count from an earlier
 * redelivery copy, a stale publish sequence, the producer's own headers. */
static const struct header redelivered_headers[] = {
	HSTR("tenant", "acme"),
	HINT("x-dlqd-publish-seq", 77),
	HINT("x-dlqd-redeliveries", 1),
	H("routing", HEADER_OTHER),
};

/*
 * The poison guard's copies (golden): the redelivery copy goes back to the
 * main queue as it came, with the new count; the POISON_MESSAGE copy keeps
 * the bytes unchanged (not decoded) with the count as evidence; every other
 * copy drops a stale count (it restarts once dlqd settled the message).
 */
static void test_golden_poison(void **state)
{
	_cleanup_free_ char *full = NULL;
	size_t full_len;
	_cleanup_(envelope_freep) struct envelope *e = NULL;
	struct copy_source src = {
		.headers = redelivered_headers,
		.n_headers = ARRAY_SIZE(redelivered_headers),
		.expiration = "60000",
		.expiration_len = 5,
		.user_id = "svc-billing",
		.user_id_len = 11,
	};
	struct failure poison = {
		.error_code = ERROR_CODE_POISON_MESSAGE,
		.error_class = ERROR_CLASS_NON_RETRYABLE,
		.attempt = 1,
		.now_usec = T0,
		.detail = "redelivered 3 times without dlqd settling it (x-dlqd-redeliveries 2); "
			  "[pipeline] max_redeliveries is 3",
		.redeliveries = 3,
	};
	struct failure retry = { .error_code = "UPSTREAM_THROTTLED",
				 .error_class = ERROR_CLASS_TRANSIENT,
				 .attempt = 1,
				 .now_usec = T0,
				 .next_retry_at_usec = T0 + 2 * USEC_PER_SEC,
				 .lane_ms = 2000 };
	struct copy c;

	full = read_data("full.in.json", &full_len);
	src.body = full;
	src.len = full_len;

	assert_int_equal(copy_redelivery("jobs", &src, 2, &c), 0);
	assert_ptr_equal(c.body, full); /* the bytes as they came */
	assert_int_equal(c.len, full_len);
	check_golden_copy("full.redelivery.copy", &c);
	copy_done(&c);

	assert_int_equal(copy_failure("jobs", &src, NULL, &poison, &c), 0);
	assert_ptr_equal(c.body, full);
	check_golden_copy("full.poison.copy", &c);
	copy_done(&c);

	/* Settled otherwise: no count travels on. */
	e = decode_ok(full);
	assert_int_equal(copy_failure("jobs", &src, e, &retry, &c), 0);
	assert_null(header_find(c.headers, c.n_headers, HDR_REDELIVERIES));
	copy_done(&c);
	assert_int_equal(copy_replay("jobs", &src, e, 0, T0, &c), 0);
	assert_null(header_find(c.headers, c.n_headers, HDR_REDELIVERIES));
	copy_done(&c);

	/* Without a user_id nothing moves; a huge count saturates. */
	src.user_id = NULL;
	assert_int_equal(copy_redelivery("q", &src, UINT64_MAX, &c), 0);
	assert_string_equal(c.exchange, "");
	assert_string_equal(c.routing_key, "q");
	assert_int_equal(c.drop_props, 0);
	assert_false(c.default_content_type);
	assert_int_equal(c.n_headers, 3);
	assert_null(header_find(c.headers, c.n_headers, HDR_PUBLISH_SEQ));
	assert_int_equal(header_find(c.headers, c.n_headers, HDR_REDELIVERIES)->i, INT64_MAX);
	copy_done(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_retry),
		cmocka_unit_test(test_encode_dlq),
		cmocka_unit_test(test_encode_no_result),
		cmocka_unit_test(test_encode_result_kinds),
		cmocka_unit_test(test_encode_evidence_sanitized),
		cmocka_unit_test(test_encode_errors_bounded),
		cmocka_unit_test(test_encode_twice),
		cmocka_unit_test(test_golden),
		cmocka_unit_test(test_golden_copies),
		cmocka_unit_test(test_golden_defer),
		cmocka_unit_test(test_replay_count_saturates),
		cmocka_unit_test(test_golden_poison),
		cmocka_unit_test(test_golden_fidelity),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
