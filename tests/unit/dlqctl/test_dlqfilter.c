/*
 * Unit tests for dlqfilter: option parsing (lists, repeats, every error
 * with its message) and matching (OR within an option, AND across them,
 * ages against dead_lettered_at, schema "none", invalid bodies).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "dlqctl/dlqfilter.h"

#define SEC  USEC_PER_SEC
#define NOW  (1800000000 * SEC)
#define HOUR (3600 * SEC)

static struct dlq_record rec(const char *id, const char *code, const char *cls, const char *schema,
			     uint64_t age, bool envelope)
{
	struct dlq_record r = { .attempt = 1, .envelope = envelope };

	strscpy(r.message_id, id, sizeof(r.message_id));
	strscpy(r.error_code, code, sizeof(r.error_code));
	strscpy(r.error_class, cls, sizeof(r.error_class));
	strscpy(r.schema_version, schema, sizeof(r.schema_version));
	r.dead_lettered_at_usec = age == UINT64_MAX ? 0 : NOW - age;
	return r;
}

static void add_ok(struct dlqfilter *f, enum dlqfilter_key k, const char *v)
{
	char err[256] = "";

	assert_int_equal(dlqfilter_add(f, k, v, err, sizeof(err)), 0);
	assert_string_equal(err, "");
}

static void add_bad(enum dlqfilter_key k, const char *v, const char *msg)
{
	struct dlqfilter f;
	char err[256] = "";

	dlqfilter_init(&f);
	assert_int_equal(dlqfilter_add(&f, k, v, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, msg);
	dlqfilter_done(&f);
}

static void test_parse_errors(void **state)
{
	char many[DLQFILTER_VALUES_MAX * 3 + 8] = "";
	char long_id[DLQRECORD_STR_MAX + 2];

	(void)state;
	add_bad(DLQFILTER_ERROR_CODE, "", "--error-code: empty value");
	add_bad(DLQFILTER_ERROR_CODE, "A,,B", "--error-code: empty value");
	add_bad(DLQFILTER_ERROR_CODE, "A, ", "--error-code: empty value");
	add_bad(DLQFILTER_ERROR_CLASS, "TRANSIENTT",
		"--error-class: unknown class 'TRANSIENTT' (expected TRANSIENT, PERSISTENT or "
		"NON_RETRYABLE)");
	add_bad(DLQFILTER_ERROR_CLASS, "transient",
		"--error-class: unknown class 'transient' (expected TRANSIENT, PERSISTENT or "
		"NON_RETRYABLE)");
	add_bad(DLQFILTER_OLDER_THAN, "soon",
		"--older-than: invalid duration 'soon' (expected a number with a unit like 90s, "
		"15m, 2h or 7d)");
	add_bad(DLQFILTER_NEWER_THAN, "-5m",
		"--newer-than: invalid duration '-5m' (expected a number with a unit like 90s, "
		"15m, 2h or 7d)");
	for (int i = 0; i <= DLQFILTER_VALUES_MAX; i++)
		strcat(many, i ? ",X" : "X");
	add_bad(DLQFILTER_SCHEMA_VERSION, many, "--schema-version: more than 64 values");
	memset(long_id, 'a', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	add_bad(DLQFILTER_MESSAGE_ID, long_id, "--message-id: value longer than 256 bytes");
}

static void test_empty_and_lists(void **state)
{
	struct dlqfilter f;
	struct dlq_record r;

	(void)state;
	dlqfilter_init(&f);
	assert_true(dlqfilter_empty(&f));
	r = rec("a", "X", "PERSISTENT", "", HOUR, true);
	assert_true(dlqfilter_match(&f, &r, NOW));
	r = rec("", "", "", "", UINT64_MAX, false);
	assert_true(dlqfilter_match(&f, &r, NOW)); /* no filter: everything */

	add_ok(&f, DLQFILTER_ERROR_CODE, " AUTH_REVOKED , QUOTA_EXCEEDED");
	add_ok(&f, DLQFILTER_ERROR_CODE, "TEMPFAIL");
	assert_false(dlqfilter_empty(&f));
	r = rec("a", "AUTH_REVOKED", "NON_RETRYABLE", "", HOUR, true);
	assert_true(dlqfilter_match(&f, &r, NOW));
	r = rec("a", "QUOTA_EXCEEDED", "NON_RETRYABLE", "", HOUR, true);
	assert_true(dlqfilter_match(&f, &r, NOW));
	r = rec("a", "TEMPFAIL", "TRANSIENT", "", HOUR, true);
	assert_true(dlqfilter_match(&f, &r, NOW));
	r = rec("a", "AUTH_REVOKED_2", "NON_RETRYABLE", "", HOUR, true);
	assert_false(dlqfilter_match(&f, &r, NOW));

	/* AND across options. */
	add_ok(&f, DLQFILTER_ERROR_CLASS, "NON_RETRYABLE");
	r = rec("a", "TEMPFAIL", "TRANSIENT", "", HOUR, true);
	assert_false(dlqfilter_match(&f, &r, NOW));
	r = rec("a", "QUOTA_EXCEEDED", "NON_RETRYABLE", "", HOUR, true);
	assert_true(dlqfilter_match(&f, &r, NOW));
	dlqfilter_done(&f);
	assert_true(dlqfilter_empty(&f));
}

static void test_message_id_keeps_commas(void **state)
{
	struct dlqfilter f;
	struct dlq_record r;

	(void)state;
	dlqfilter_init(&f);
	add_ok(&f, DLQFILTER_MESSAGE_ID, "evt,1");
	r = rec("evt,1", "X", "PERSISTENT", "", HOUR, true);
	assert_true(dlqfilter_match(&f, &r, NOW));
	r = rec("evt", "X", "PERSISTENT", "", HOUR, true);
	assert_false(dlqfilter_match(&f, &r, NOW));
	/* An invalid body's id comes from its AMQP message_id, when any. */
	r = rec("evt,1", "INVALID_ENVELOPE", "NON_RETRYABLE", "", HOUR, false);
	assert_true(dlqfilter_match(&f, &r, NOW));
	dlqfilter_done(&f);
}

static void test_ages(void **state)
{
	struct dlqfilter f;
	struct dlq_record r;

	(void)state;
	dlqfilter_init(&f);
	add_ok(&f, DLQFILTER_OLDER_THAN, "1h");
	r = rec("a", "X", "PERSISTENT", "", HOUR, true);
	assert_true(dlqfilter_match(&f, &r, NOW)); /* age >= D */
	r = rec("a", "X", "PERSISTENT", "", HOUR - 1, true);
	assert_false(dlqfilter_match(&f, &r, NOW));
	r = rec("a", "X", "PERSISTENT", "", UINT64_MAX, true);
	assert_false(dlqfilter_match(&f, &r, NOW)); /* unknown age */

	add_ok(&f, DLQFILTER_NEWER_THAN, "2h");
	r = rec("a", "X", "PERSISTENT", "", 2 * HOUR - 1, true);
	assert_true(dlqfilter_match(&f, &r, NOW));
	r = rec("a", "X", "PERSISTENT", "", 2 * HOUR, true);
	assert_false(dlqfilter_match(&f, &r, NOW)); /* age < D */
	dlqfilter_done(&f);

	/* A dead-letter time in the future (clock skew) is age 0. */
	dlqfilter_init(&f);
	add_ok(&f, DLQFILTER_NEWER_THAN, "1s");
	r = rec("a", "X", "PERSISTENT", "", 0, true);
	r.dead_lettered_at_usec = NOW + HOUR;
	assert_true(dlqfilter_match(&f, &r, NOW));
	dlqfilter_done(&f);
}

static void test_schema(void **state)
{
	struct dlqfilter f;
	struct dlq_record r;

	(void)state;
	dlqfilter_init(&f);
	add_ok(&f, DLQFILTER_SCHEMA_VERSION, "v1,none");
	r = rec("a", "X", "PERSISTENT", "v1", HOUR, true);
	assert_true(dlqfilter_match(&f, &r, NOW));
	r = rec("a", "X", "PERSISTENT", "", HOUR, true);
	assert_true(dlqfilter_match(&f, &r, NOW)); /* "none" */
	r = rec("a", "X", "PERSISTENT", "v2", HOUR, true);
	assert_false(dlqfilter_match(&f, &r, NOW));
	r = rec("a", "INVALID_ENVELOPE", "NON_RETRYABLE", "", HOUR, false);
	assert_false(dlqfilter_match(&f, &r, NOW)); /* invalid bodies have no schema */
	dlqfilter_done(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_empty_and_lists),
		cmocka_unit_test(test_message_id_keeps_commas),
		cmocka_unit_test(test_ages),
		cmocka_unit_test(test_schema),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
