/*
 * Unit tests for dlqstats: counts by code and class, the retry-exhausted /
 * non-retryable shares, oldest and newest, the "(other)" bucket that caps
 * memory, and both renderings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "dlqctl/dlqstats.h"

#define SEC USEC_PER_SEC
#define NOW (1800000000 * SEC)

static void add(struct dlqstats *s, const char *code, const char *cls, uint64_t age, bool envelope)
{
	struct dlq_record r = { .attempt = 1, .envelope = envelope };

	strscpy(r.error_code, code, sizeof(r.error_code));
	strscpy(r.error_class, cls, sizeof(r.error_class));
	r.dead_lettered_at_usec = age == UINT64_MAX ? 0 : NOW - age;
	dlqstats_add(s, &r);
}

static json_t *render_json(struct dlqstats *s)
{
	struct buf b;
	json_t *j;

	buf_init(&b, 1 << 20);
	assert_int_equal(dlqstats_render(s, "jobs.dlq", NOW, true, &b), 0);
	j = json_loads(b.data, 0, NULL);
	assert_non_null(j);
	buf_done(&b);
	return j;
}

static long long get(json_t *j, const char *a, const char *b)
{
	json_t *v = json_object_get(j, a);

	if (b)
		v = json_object_get(v, b);
	assert_non_null(v);
	return json_integer_value(v);
}

static void test_counts(void **state)
{
	struct dlqstats s;
	struct buf b;
	json_t *j;

	(void)state;
	assert_int_equal(dlqstats_init(&s), 0);
	for (int i = 0; i < 6; i++)
		add(&s, "RETRY_EXHAUSTED", "PERSISTENT", (uint64_t)(i + 1) * 60 * SEC, true);
	for (int i = 0; i < 3; i++)
		add(&s, "AUTH_REVOKED", "NON_RETRYABLE", 3600 * SEC, true);
	add(&s, "INVALID_ENVELOPE", "NON_RETRYABLE", 86400 * SEC, false);
	add(&s, "UNKNOWN_ERROR", "PERSISTENT", UINT64_MAX, true);
	add(&s, "", "", 30 * SEC, true);
	add(&s, "X", "WEIRD", 30 * SEC, true);
	s.depth = 20;
	s.scanned = 13;

	j = render_json(&s);
	assert_int_equal(get(j, "depth", NULL), 20);
	assert_int_equal(get(j, "matched", NULL), 13);
	assert_int_equal(get(j, "retry_exhausted", NULL), 6);
	assert_int_equal(get(j, "non_retryable", NULL), 4);
	assert_int_equal(get(j, "other", NULL), 3);
	assert_int_equal(get(j, "invalid_envelope", NULL), 1);
	assert_int_equal(get(j, "unknown_age", NULL), 1);
	assert_int_equal(get(j, "by_error_code", "RETRY_EXHAUSTED"), 6);
	assert_int_equal(get(j, "by_error_code", "AUTH_REVOKED"), 3);
	assert_int_equal(get(j, "by_error_code", "(none)"), 1);
	assert_int_equal(get(j, "by_error_class", "PERSISTENT"), 7);
	assert_int_equal(get(j, "by_error_class", "NON_RETRYABLE"), 4);
	assert_int_equal(get(j, "by_error_class", "(none)"), 1);
	assert_int_equal(get(j, "by_error_class", "(other)"), 1);
	assert_null(json_object_get(json_object_get(j, "by_error_class"), "TRANSIENT"));
	assert_int_equal(get(j, "oldest_age_seconds", NULL), 86400);
	assert_int_equal(get(j, "newest_age_seconds", NULL), 30);
	assert_string_equal(json_string_value(json_object_get(j, "oldest")),
			    "2027-01-14T08:00:00Z");
	assert_true(json_real_value(json_object_get(j, "retry_exhausted_share")) >= 0.4615 &&
		    json_real_value(json_object_get(j, "retry_exhausted_share")) < 0.4616);
	json_decref(j);

	buf_init(&b, 1 << 20);
	assert_int_equal(dlqstats_render(&s, "jobs.dlq", NOW, false, &b), 0);
	assert_non_null(strstr(b.data, "queue jobs.dlq: 20 messages, 13 of 13 scanned match") ==
					NULL
				? strstr(b.data, "queue jobs.dlq: 20 messages (13 scanned)")
				: b.data);
	assert_non_null(strstr(b.data, "oldest   2027-01-14T08:00:00Z (1d0h ago)"));
	assert_non_null(strstr(b.data, "retry-exhausted 6 (46.2%), non-retryable 4 (30.8%)"));
	/* Sorted by count: RETRY_EXHAUSTED first. */
	assert_true(strstr(b.data, "RETRY_EXHAUSTED") < strstr(b.data, "AUTH_REVOKED"));
	buf_done(&b);
	dlqstats_done(&s);
}

static void test_code_cap(void **state)
{
	struct dlqstats s;
	char code[32];
	json_t *j;

	(void)state;
	assert_int_equal(dlqstats_init(&s), 0);
	for (int i = 0; i < DLQSTATS_CODES_MAX + 100; i++) {
		snprintf(code, sizeof(code), "CODE_%d", i);
		add(&s, code, "PERSISTENT", SEC, true);
	}
	add(&s, "CODE_0", "PERSISTENT", SEC, true);
	j = render_json(&s);
	assert_int_equal(json_object_size(json_object_get(j, "by_error_code")),
			 DLQSTATS_CODES_MAX + 1);
	assert_int_equal(get(j, "by_error_code", "(other)"), 100);
	assert_int_equal(get(j, "by_error_code", "CODE_0"), 2);
	json_decref(j);
	dlqstats_done(&s);
}

static void test_empty_and_ages(void **state)
{
	struct dlqstats s;
	char buf[32];
	json_t *j;

	(void)state;
	assert_int_equal(dlqstats_init(&s), 0);
	j = render_json(&s);
	assert_true(json_is_null(json_object_get(j, "oldest")));
	assert_int_equal(get(j, "matched", NULL), 0);
	json_decref(j);
	dlqstats_done(&s);

	assert_string_equal(dlqstats_format_age(59 * SEC, buf, sizeof(buf)), "59s");
	assert_string_equal(dlqstats_format_age(61 * SEC, buf, sizeof(buf)), "1m1s");
	assert_string_equal(dlqstats_format_age(7322 * SEC, buf, sizeof(buf)), "2h2m");
	assert_string_equal(dlqstats_format_age(3 * 86400 * SEC + 3600 * SEC, buf, sizeof(buf)),
			    "3d1h");
}

/* Codes are the messages' text: escaped in the table, safe in the JSON. */
static void test_hostile_codes(void **state)
{
	struct dlqstats s;
	struct buf b;
	json_t *j;

	(void)state;
	assert_int_equal(dlqstats_init(&s), 0);
	add(&s, "E\x1b[2J\xc2\x9b", "TRANSIENT", 10 * SEC, true);
	buf_init(&b, 1 << 20);
	assert_int_equal(dlqstats_render(&s, "jobs.dlq", NOW, false, &b), 0);
	assert_non_null(strstr(b.data, "E\\x1b[2J\\u009b "));
	assert_null(strchr(b.data, '\x1b'));
	buf_done(&b);
	j = render_json(&s);
	assert_int_equal(get(j, "by_error_code", "E\x1b[2J\xc2\x9b"), 1);
	json_decref(j);
	buf_init(&b, 1 << 20);
	assert_int_equal(dlqstats_render(&s, "jobs.dlq", NOW, true, &b), 0);
	assert_null(strchr(b.data, '\x1b'));
	assert_null(strstr(b.data, "\xc2\x9b"));
	buf_done(&b);
	dlqstats_done(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counts),
		cmocka_unit_test(test_code_cap),
		cmocka_unit_test(test_empty_and_ages),
		cmocka_unit_test(test_hostile_codes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
