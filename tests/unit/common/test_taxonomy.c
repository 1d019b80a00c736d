/*
 * Unit tests for taxonomy.c: classification against the contract's table,
 * the shipped one and tables made to show each match key; loading and
 * validation are test_taxonomy_load.c's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "common/taxonomy.h"
#include "common/taxonomy_test.h"
#include "testutil.h"

/* The contract's example table (design.md, "Taxonomy table"). */
static const char contract_table[] = CONTRACT_TAXONOMY_HEAD
	"   {\"when\": {\"transport\": [\"COULDNT_CONNECT\", \"COULDNT_RESOLVE_HOST\"]}, "
	"\"error_code\": "
	"\"UPSTREAM_UNREACHABLE\", \"class\": \"TRANSIENT\"}" CONTRACT_TAXONOMY_TAIL;

/* A table with every match key, in an order that lets the tests see it. */
static const char kinds_table[] =
	"{\"version\": 1,\n"
	" \"policies\": {\n"
	"   \"fast\": {\"max_attempt\": 5, \"initial\": \"1s\", \"multiplier\": 2, \"max\": "
	"\"1m\", "
	"\"jitter\": [0, 0.5]},\n"
	"   \"slow\": {\"max_attempt\": 2, \"initial\": \"1m\", \"multiplier\": 2, \"max\": "
	"\"2h\", "
	"\"jitter\": [0.1, 0.2]},\n"
	"   \"special\": {\"max_attempt\": 9, \"initial\": \"3s\", \"multiplier\": 1, \"max\": "
	"\"3s\", "
	"\"jitter\": [0, 0]},\n"
	"   \"none\": {\"max_attempt\": 0}},\n"
	" \"classes\": {\"TRANSIENT\": \"fast\", \"PERSISTENT\": \"slow\", \"NON_RETRYABLE\": "
	"\"none\"},\n"
	" \"rules\": [\n"
	/* 0 */ "   {\"when\": {\"exit_code\": [1], \"handler_code\": [\"BUSY\"]}, \"error_code\": "
	"\"BUSY_EXIT\", \"class\": \"TRANSIENT\", \"policy\": \"special\"},\n"
	/* 1 */ "   {\"when\": {\"http_status\": [418]}, \"error_code\": \"TEAPOT\", \"class\": "
	"\"PERSISTENT\", \"escalate\": true},\n"
	/* 2 */ "   {\"when\": {\"http_status\": [\"4xx\", 501]}, \"error_code\": \"CLIENT\", "
	"\"class\": "
	"\"NON_RETRYABLE\"},\n"
	/* 3 */ "   {\"when\": {\"http_status\": [\"4xx\"]}, \"error_code\": \"NEVER\", \"class\": "
	"\"NON_RETRYABLE\"},\n"
	/* 4 */ "   {\"when\": {\"transport\": [\"COULDNT_CONNECT\"]}, \"error_code\": "
	"\"NO_CONN\", "
	"\"class\": \"TRANSIENT\"},\n"
	/* 5 */ "   {\"when\": {\"timeout\": true}, \"error_code\": \"TIMED_OUT\", \"class\": "
	"\"TRANSIENT\", \"policy\": \"slow\"},\n"
	/* 6 */ "   {\"when\": {\"exit_code\": [9, 65]}, \"error_code\": \"EXIT_9_65\", \"class\": "
	"\"NON_RETRYABLE\"},\n"
	/* 7 */ "   {\"when\": {\"signal\": [\"SIGKILL\", \"SEGV\", 6]}, \"error_code\": "
	"\"CRASHED\", "
	"\"class\": \"PERSISTENT\"},\n"
	/* 8 */ "   {\"when\": {\"handler_code\": [\"QUOTA\", \"lower.case\"]}, \"error_code\": "
	"\"OVER_QUOTA\", \"class\": \"TRANSIENT\"}],\n"
	" \"default\": {\"error_code\": \"UNKNOWN_ERROR\", \"class\": \"PERSISTENT\"}}\n";

static struct result res(enum result_kind kind)
{
	struct result r;

	result_init(&r, kind);
	return r;
}

static struct result http(long status)
{
	struct result r = res(RESULT_HTTP);

	r.http_status = status;
	return r;
}

static struct result transport(const char *name)
{
	struct result r = res(RESULT_TRANSPORT);

	strscpy(r.transport, name, sizeof(r.transport));
	return r;
}

static struct result exit_code(int code)
{
	struct result r = res(RESULT_EXIT);

	r.exit_code = code;
	return r;
}

static struct result killed(int sig)
{
	struct result r = res(RESULT_SIGNAL);

	r.signal = sig;
	return r;
}

static struct result with_code(struct result r, const char *code, const char *cls)
{
	strscpy(r.handler_code, code, sizeof(r.handler_code));
	strscpy(r.handler_class, cls, sizeof(r.handler_class));
	return r;
}

/* Classifies r and checks code, class, policy name and rule index. */
static struct classification expect(const struct taxonomy *t, struct result r, const char *code,
				    enum error_class cls, const char *policy, int rule)
{
	struct classification c;

	taxonomy_classify(t, &r, &c);
	assert_non_null(c.error_code);
	assert_string_equal(c.error_code, code);
	assert_int_equal(c.error_class, cls);
	assert_non_null(c.policy);
	assert_string_equal(c.policy->name, policy);
	assert_int_equal(c.rule, rule);
	return c;
}

static void test_error_class_strings(void **state)
{
	for (int c = 0; c < _ERROR_CLASS_MAX; c++)
		assert_int_equal(error_class_from_string(error_class_to_string(c)), c);
	assert_string_equal(error_class_to_string(ERROR_CLASS_TRANSIENT), "TRANSIENT");
	assert_string_equal(error_class_to_string(ERROR_CLASS_PERSISTENT), "PERSISTENT");
	assert_string_equal(error_class_to_string(ERROR_CLASS_NON_RETRYABLE), "NON_RETRYABLE");
	assert_int_equal(error_class_from_string("transient"), _ERROR_CLASS_INVALID);
	assert_int_equal(error_class_from_string(""), _ERROR_CLASS_INVALID);
	assert_int_equal(error_class_from_string(NULL), _ERROR_CLASS_INVALID);
	assert_string_equal(error_class_to_string(_ERROR_CLASS_INVALID), "INVALID");
	assert_string_equal(error_class_to_string(_ERROR_CLASS_MAX), "INVALID");
}

/* The contract's examples, against the contract's table and the shipped one. */
static void check_contract_examples(const struct taxonomy *t)
{
	struct classification c;

	expect(t, http(429), "UPSTREAM_THROTTLED", ERROR_CLASS_TRANSIENT, "fast", 0);
	expect(t, http(503), "UPSTREAM_THROTTLED", ERROR_CLASS_TRANSIENT, "fast", 0);
	c = expect(t, http(401), "AUTH_REVOKED", ERROR_CLASS_NON_RETRYABLE, "none", 1);
	assert_true(c.escalate);
	c = expect(t, http(403), "AUTH_REVOKED", ERROR_CLASS_NON_RETRYABLE, "none", 1);
	assert_true(c.escalate);
	taxonomy_classify(t, &(struct result){ .kind = RESULT_HTTP, .http_status = 404 }, &c);
	assert_string_equal(c.error_code, "INVALID_PAYLOAD");
	assert_int_equal(c.error_class, ERROR_CLASS_NON_RETRYABLE);
	assert_false(c.escalate);
	taxonomy_classify(t, &(struct result){ .kind = RESULT_TIMEOUT, .signal = SIGKILL }, &c);
	assert_string_equal(c.error_code, "UPSTREAM_TIMEOUT");
	assert_string_equal(c.policy->name, "fast");
	taxonomy_classify(t, &(struct result){ .kind = RESULT_EXIT, .exit_code = 75 }, &c);
	assert_string_equal(c.error_code, "TEMPFAIL");
	assert_int_equal(c.error_class, ERROR_CLASS_TRANSIENT);
	taxonomy_classify(
		t, &(struct result){ .kind = RESULT_TRANSPORT, .transport = "COULDNT_CONNECT" },
		&c);
	assert_string_equal(c.error_code, "UPSTREAM_UNREACHABLE");
	taxonomy_classify(
		t,
		&(struct result){ .kind = RESULT_TRANSPORT, .transport = "COULDNT_RESOLVE_HOST" },
		&c);
	assert_string_equal(c.error_code, "UPSTREAM_UNREACHABLE");
	/* The unknown default goes to the DLQ at once: its policy never retries. */
	c = expect(t, exit_code(1), "UNKNOWN_ERROR", ERROR_CLASS_PERSISTENT, "none", -1);
	assert_int_equal(c.policy->max_attempt, 0);
	expect(t, transport("SSL_CACERT"), "UNKNOWN_ERROR", ERROR_CLASS_PERSISTENT, "none", -1);
	expect(t, res(RESULT_INTERNAL), "UNKNOWN_ERROR", ERROR_CLASS_PERSISTENT, "none", -1);

	const struct policy *p = taxonomy_policy(t, "fast");
	assert_non_null(p);
	assert_int_equal(p->max_attempt, 5);
	assert_int_equal(p->initial_usec, 2 * USEC_PER_SEC);
	assert_true(p->multiplier == 3.0);
	assert_int_equal(p->max_usec, 120 * USEC_PER_SEC);
	assert_true(p->jitter_min == 0.10 && p->jitter_max == 0.30);
	p = taxonomy_policy(t, "slow");
	assert_int_equal(p->initial_usec, 300 * USEC_PER_SEC);
	assert_int_equal(p->max_usec, 3600 * USEC_PER_SEC);
	assert_int_equal(taxonomy_policy(t, "none")->max_attempt, 0);
	assert_ptr_equal(taxonomy_class_policy(t, ERROR_CLASS_TRANSIENT),
			 taxonomy_policy(t, "fast"));
	assert_ptr_equal(taxonomy_class_policy(t, ERROR_CLASS_PERSISTENT),
			 taxonomy_policy(t, "slow"));
	assert_ptr_equal(taxonomy_class_policy(t, ERROR_CLASS_NON_RETRYABLE),
			 taxonomy_policy(t, "none"));
	/* 1h * (1 + 0.30) from "slow"; "none" does not count. */
	assert_int_equal(taxonomy_max_delay_usec(t), 4680 * USEC_PER_SEC);
}

static void test_contract_table(void **state)
{
	_cleanup_(taxonomy_freep) struct taxonomy *t = parse_ok(contract_table);

	check_contract_examples(t);
	/* The contract's table has no 5xx rule: the default takes 500. */
	expect(t, http(500), "UNKNOWN_ERROR", ERROR_CLASS_PERSISTENT, "none", -1);
	expect(t, http(408), "INVALID_PAYLOAD", ERROR_CLASS_NON_RETRYABLE, "none", 2);
}

static void test_shipped_table(void **state)
{
	_cleanup_(taxonomy_freep) struct taxonomy *t = NULL;
	struct diag d = { 0 };
	char path[4096];

	snprintf(path, sizeof(path), "%s/config/taxonomy.json", source_dir());
	assert_int_equal(taxonomy_load(path, &t, &d), 0);
	assert_int_equal(d.n, 0);
	diag_done(&d);
	check_contract_examples(t);

	/* What the shipped table adds to the contract's example. */
	expect(t, http(408), "UPSTREAM_TIMEOUT", ERROR_CLASS_TRANSIENT, "fast", 2);
	expect(t, http(404), "INVALID_PAYLOAD", ERROR_CLASS_NON_RETRYABLE, "none", 3);
	expect(t, http(500), "UPSTREAM_ERROR", ERROR_CLASS_TRANSIENT, "fast", 7);
	expect(t, http(502), "UPSTREAM_ERROR", ERROR_CLASS_TRANSIENT, "fast", 7);
	expect(t, transport("OPERATION_TIMEDOUT"), "UPSTREAM_TIMEOUT", ERROR_CLASS_TRANSIENT,
	       "fast", 8);
	expect(t, transport("RECV_ERROR"), "UPSTREAM_CONNECTION_LOST", ERROR_CLASS_TRANSIENT,
	       "fast", 9);
	expect(t, exit_code(65), "DATA_ERROR", ERROR_CLASS_NON_RETRYABLE, "none", 10);
	expect(t, exit_code(75), "TEMPFAIL", ERROR_CLASS_TRANSIENT, "fast", 5);
	expect(t, killed(SIGSEGV), "HANDLER_CRASHED", ERROR_CLASS_PERSISTENT, "slow", 11);
	expect(t, killed(SIGKILL), "HANDLER_CRASHED", ERROR_CLASS_PERSISTENT, "slow", 11);
	expect(t, killed(SIGTERM), "UNKNOWN_ERROR", ERROR_CLASS_PERSISTENT, "none", -1);
	/* A timeout kills with SIGKILL, but it is a timeout, not a crash. */
	struct result r = res(RESULT_TIMEOUT);
	r.signal = SIGKILL;
	expect(t, r, "UPSTREAM_TIMEOUT", ERROR_CLASS_TRANSIENT, "fast", 4);
	/* A handler's own code applies when no rule matched... */
	expect(t, with_code(exit_code(1), "QUOTA_EXCEEDED", "TRANSIENT"), "QUOTA_EXCEEDED",
	       ERROR_CLASS_TRANSIENT, "fast", -1);
	/* ...but never overrides one that did. */
	expect(t, with_code(http(429), "QUOTA_EXCEEDED", "NON_RETRYABLE"), "UPSTREAM_THROTTLED",
	       ERROR_CLASS_TRANSIENT, "fast", 0);
}

static void test_every_match_kind(void **state)
{
	_cleanup_(taxonomy_freep) struct taxonomy *t = parse_ok(kinds_table);

	/* http_status: a code, a class, and a code next to a class. */
	expect(t, http(418), "TEAPOT", ERROR_CLASS_PERSISTENT, "slow", 1);
	expect(t, http(400), "CLIENT", ERROR_CLASS_NON_RETRYABLE, "none", 2);
	expect(t, http(499), "CLIENT", ERROR_CLASS_NON_RETRYABLE, "none", 2);
	expect(t, http(501), "CLIENT", ERROR_CLASS_NON_RETRYABLE, "none", 2);
	expect(t, http(500), "UNKNOWN_ERROR", ERROR_CLASS_PERSISTENT, "slow", -1);
	expect(t, http(399), "UNKNOWN_ERROR", ERROR_CLASS_PERSISTENT, "slow", -1);
	expect(t, http(700), "UNKNOWN_ERROR", ERROR_CLASS_PERSISTENT, "slow", -1);
	expect(t, http(-1), "UNKNOWN_ERROR", ERROR_CLASS_PERSISTENT, "slow", -1);
	/* transport */
	expect(t, transport("COULDNT_CONNECT"), "NO_CONN", ERROR_CLASS_TRANSIENT, "fast", 4);
	expect(t, transport("COULDNT_CONNECTX"), "UNKNOWN_ERROR", ERROR_CLASS_PERSISTENT, "slow",
	       -1);
	expect(t, transport(""), "UNKNOWN_ERROR", ERROR_CLASS_PERSISTENT, "slow", -1);
	/* timeout, with a per-rule policy */
	expect(t, res(RESULT_TIMEOUT), "TIMED_OUT", ERROR_CLASS_TRANSIENT, "slow", 5);
	/* exit_code and signal are different keys even for the same number. */
	expect(t, exit_code(9), "EXIT_9_65", ERROR_CLASS_NON_RETRYABLE, "none", 6);
	expect(t, exit_code(65), "EXIT_9_65", ERROR_CLASS_NON_RETRYABLE, "none", 6);
	expect(t, killed(9), "CRASHED", ERROR_CLASS_PERSISTENT, "slow", 7);
	expect(t, killed(SIGSEGV), "CRASHED", ERROR_CLASS_PERSISTENT, "slow", 7);
	expect(t, killed(SIGABRT), "CRASHED", ERROR_CLASS_PERSISTENT, "slow", 7);
	expect(t, killed(SIGTERM), "UNKNOWN_ERROR", ERROR_CLASS_PERSISTENT, "slow", -1);
	expect(t, killed(0), "UNKNOWN_ERROR", ERROR_CLASS_PERSISTENT, "slow", -1);
	expect(t, killed(65), "UNKNOWN_ERROR", ERROR_CLASS_PERSISTENT, "slow", -1);
	expect(t, exit_code(6), "UNKNOWN_ERROR", ERROR_CLASS_PERSISTENT, "slow", -1);
	expect(t, exit_code(300), "UNKNOWN_ERROR", ERROR_CLASS_PERSISTENT, "slow", -1);
	/* handler_code, whatever the kind of the failure, compared exactly */
	expect(t, with_code(http(500), "QUOTA", ""), "OVER_QUOTA", ERROR_CLASS_TRANSIENT, "fast",
	       8);
	expect(t, with_code(exit_code(3), "lower.case", ""), "OVER_QUOTA", ERROR_CLASS_TRANSIENT,
	       "fast", 8);
	expect(t, with_code(exit_code(3), "quota", ""), "quota", ERROR_CLASS_PERSISTENT, "slow",
	       -1);
	/* ...but a rule before it still wins. */
	expect(t, with_code(http(404), "QUOTA", ""), "CLIENT", ERROR_CLASS_NON_RETRYABLE, "none",
	       2);
}

static void test_first_match_wins(void **state)
{
	_cleanup_(taxonomy_freep) struct taxonomy *t = parse_ok(kinds_table);
	struct classification c;

	/* 418 is in rule 1 and in rules 2 and 3 ("4xx"); rule 3 never wins. */
	expect(t, http(418), "TEAPOT", ERROR_CLASS_PERSISTENT, "slow", 1);
	for (long s = 400; s < 500; s++) {
		struct result r = http(s);

		taxonomy_classify(t, &r, &c);
		assert_int_equal(c.rule, s == 418 ? 1 : 2);
	}
	/* The same table with the two rules swapped. */
	const char *a = strstr(kinds_table, "   {\"when\": {\"http_status\": [418]}");
	const char *b = strstr(kinds_table, "   {\"when\": {\"http_status\": [\"4xx\", 501]}");
	const char *e = strstr(kinds_table, "   {\"when\": {\"http_status\": [\"4xx\"]}");
	assert_true(a && b && e && a < b && b < e);
	char swapped[sizeof(kinds_table)];
	size_t n = 0;
	memcpy(swapped + n, kinds_table, (size_t)(a - kinds_table)), n += (size_t)(a - kinds_table);
	memcpy(swapped + n, b, (size_t)(e - b)), n += (size_t)(e - b);
	memcpy(swapped + n, a, (size_t)(b - a)), n += (size_t)(b - a);
	strcpy(swapped + n, e);
	_cleanup_(taxonomy_freep) struct taxonomy *t2 = parse_ok(swapped);
	expect(t2, http(418), "CLIENT", ERROR_CLASS_NON_RETRYABLE, "none", 1);
}

static void test_and_of_keys(void **state)
{
	_cleanup_(taxonomy_freep) struct taxonomy *t = parse_ok(kinds_table);
	struct classification c;

	/* Rule 0 needs exit 1 AND handler code BUSY, and names its policy. */
	c = expect(t, with_code(exit_code(1), "BUSY", "NON_RETRYABLE"), "BUSY_EXIT",
		   ERROR_CLASS_TRANSIENT, "special", 0);
	assert_int_equal(c.policy->max_attempt, 9);
	expect(t, exit_code(1), "UNKNOWN_ERROR", ERROR_CLASS_PERSISTENT, "slow", -1);
	expect(t, with_code(exit_code(2), "BUSY", ""), "BUSY", ERROR_CLASS_PERSISTENT, "slow", -1);
	expect(t, with_code(http(1), "BUSY", ""), "BUSY", ERROR_CLASS_PERSISTENT, "slow", -1);
}

static void test_escalate(void **state)
{
	_cleanup_(taxonomy_freep) struct taxonomy *t = parse_ok(kinds_table);
	struct classification c;

	c = expect(t, http(418), "TEAPOT", ERROR_CLASS_PERSISTENT, "slow", 1);
	assert_true(c.escalate);
	c = expect(t, http(417), "CLIENT", ERROR_CLASS_NON_RETRYABLE, "none", 2);
	assert_false(c.escalate);
	c = expect(t, exit_code(77), "UNKNOWN_ERROR", ERROR_CLASS_PERSISTENT, "slow", -1);
	assert_false(c.escalate);
}

/* Which failures count against the circuit breaker: the class by default,
 * a rule's "breaker" when it says so. */
static void test_breaker_flag(void **state)
{
	static const char table[] =
		"{\"version\": 1,\n"
		" \"policies\": {\"fast\": {\"max_attempt\": 5, \"initial\": \"1s\", "
		"\"multiplier\": 2, \"max\": \"1m\", \"jitter\": [0, 0.5]},\n"
		"   \"none\": {\"max_attempt\": 0}},\n"
		" \"classes\": {\"TRANSIENT\": \"fast\", \"PERSISTENT\": \"fast\", "
		"\"NON_RETRYABLE\": \"none\"},\n"
		" \"rules\": [\n"
		"   {\"when\": {\"http_status\": [429]}, \"error_code\": \"THROTTLED\", "
		"\"class\": \"TRANSIENT\", \"breaker\": false},\n"
		"   {\"when\": {\"http_status\": [503]}, \"error_code\": \"DOWN\", "
		"\"class\": \"TRANSIENT\"},\n"
		"   {\"when\": {\"http_status\": [500]}, \"error_code\": \"BROKEN\", "
		"\"class\": \"PERSISTENT\", \"breaker\": true},\n"
		"   {\"when\": {\"http_status\": [409]}, \"error_code\": \"GONE\", "
		"\"class\": \"NON_RETRYABLE\", \"breaker\": true},\n"
		"   {\"when\": {\"http_status\": [\"4xx\"]}, \"error_code\": \"BAD\", "
		"\"class\": \"NON_RETRYABLE\"}],\n"
		" \"default\": {\"error_code\": \"UNKNOWN_ERROR\", \"class\": \"PERSISTENT\", "
		"\"policy\": \"none\"}}\n";
	_cleanup_(taxonomy_freep) struct taxonomy *t = parse_ok(table);
	struct classification c;

	c = expect(t, http(429), "THROTTLED", ERROR_CLASS_TRANSIENT, "fast", 0);
	assert_false(c.trips);
	c = expect(t, http(503), "DOWN", ERROR_CLASS_TRANSIENT, "fast", 1);
	assert_true(c.trips);
	c = expect(t, http(500), "BROKEN", ERROR_CLASS_PERSISTENT, "fast", 2);
	assert_true(c.trips);
	c = expect(t, http(409), "GONE", ERROR_CLASS_NON_RETRYABLE, "none", 3);
	assert_true(c.trips);
	c = expect(t, http(400), "BAD", ERROR_CLASS_NON_RETRYABLE, "none", 4);
	assert_false(c.trips);
	/* The default and a handler's own code: their class decides. */
	c = expect(t, exit_code(3), "UNKNOWN_ERROR", ERROR_CLASS_PERSISTENT, "none", -1);
	assert_true(c.trips);
	c = expect(t, with_code(exit_code(1), "BAD_ROW", "NON_RETRYABLE"), "BAD_ROW",
		   ERROR_CLASS_NON_RETRYABLE, "none", -1);
	assert_false(c.trips);
	c = expect(t, with_code(exit_code(1), "DB_LOCKED", "TRANSIENT"), "DB_LOCKED",
		   ERROR_CLASS_TRANSIENT, "fast", -1);
	assert_true(c.trips);
	assert_true(taxonomy_class_trips(ERROR_CLASS_TRANSIENT));
	assert_true(taxonomy_class_trips(ERROR_CLASS_PERSISTENT));
	assert_false(taxonomy_class_trips(ERROR_CLASS_NON_RETRYABLE));
}

static void test_handler_code_fallback(void **state)
{
	_cleanup_(taxonomy_freep) struct taxonomy *t = parse_ok(contract_table);
	struct classification c;
	struct result r;

	/* The handler's code and class; the class's policy. */
	r = with_code(http(500), "DB_LOCKED", "TRANSIENT");
	taxonomy_classify(t, &r, &c);
	assert_ptr_equal(c.error_code, r.handler_code); /* points into the result */
	assert_int_equal(c.error_class, ERROR_CLASS_TRANSIENT);
	assert_string_equal(c.policy->name, "fast");
	assert_int_equal(c.rule, -1);
	assert_false(c.escalate);
	expect(t, with_code(exit_code(1), "BAD_ROW", "NON_RETRYABLE"), "BAD_ROW",
	       ERROR_CLASS_NON_RETRYABLE, "none", -1);
	/* Without a valid class: the default's class, and that class's policy
	 * (not the default's own policy, which is for unknown failures). */
	expect(t, with_code(exit_code(1), "BAD_ROW", ""), "BAD_ROW", ERROR_CLASS_PERSISTENT, "slow",
	       -1);
	expect(t, with_code(exit_code(1), "BAD_ROW", "transient"), "BAD_ROW",
	       ERROR_CLASS_PERSISTENT, "slow", -1);
	expect(t, with_code(exit_code(1), "BAD_ROW", "FLAKY"), "BAD_ROW", ERROR_CLASS_PERSISTENT,
	       "slow", -1);
	/* No code: the default. */
	expect(t, with_code(exit_code(1), "", "TRANSIENT"), "UNKNOWN_ERROR", ERROR_CLASS_PERSISTENT,
	       "none", -1);
	/* A result whose strings lack their NUL is not read past its end. */
	r = exit_code(1);
	memset(r.handler_code, 'A', sizeof(r.handler_code));
	memset(r.handler_class, 'B', sizeof(r.handler_class));
	taxonomy_classify(t, &r, &c);
	assert_string_equal(c.error_code, "UNKNOWN_ERROR");
	r = with_code(exit_code(1), "X", "");
	memset(r.handler_class, 'B', sizeof(r.handler_class));
	taxonomy_classify(t, &r, &c);
	assert_int_equal(c.error_class, ERROR_CLASS_PERSISTENT);
}

static void test_default(void **state)
{
	/* A default without a policy uses its class's policy. */
	static const char table[] =
		"{\"version\": 1, \"policies\": {\"p\": {\"max_attempt\": 2, \"initial\": 1, "
		"\"multiplier\": 1, \"max\": 1, \"jitter\": [0, 0]}, \"n\": {\"max_attempt\": 0}},"
		" \"classes\": {\"TRANSIENT\": \"p\", \"PERSISTENT\": \"p\", \"NON_RETRYABLE\": "
		"\"n\"},"
		" \"rules\": [], \"default\": {\"error_code\": \"WHO_KNOWS\", \"class\": "
		"\"TRANSIENT\"}}";
	_cleanup_(taxonomy_freep) struct taxonomy *t = parse_ok(table);

	expect(t, http(500), "WHO_KNOWS", ERROR_CLASS_TRANSIENT, "p", -1);
	expect(t, res(RESULT_TIMEOUT), "WHO_KNOWS", ERROR_CLASS_TRANSIENT, "p", -1);
	expect(t, res(RESULT_INTERNAL), "WHO_KNOWS", ERROR_CLASS_TRANSIENT, "p", -1);
	assert_int_equal(taxonomy_max_delay_usec(t), USEC_PER_SEC);
	assert_null(taxonomy_policy(t, "q"));
	assert_null(taxonomy_policy(t, NULL));
	assert_null(taxonomy_class_policy(t, _ERROR_CLASS_INVALID));
	assert_null(taxonomy_class_policy(t, _ERROR_CLASS_MAX));
}

static void test_timeout_and_internal(void **state)
{
	/* Rules that could catch a timeout or an internal error by accident. */
	static const char table[] =
		"{\"version\": 1, \"policies\": {\"n\": {\"max_attempt\": 0}},"
		" \"classes\": {\"TRANSIENT\": \"n\", \"PERSISTENT\": \"n\", \"NON_RETRYABLE\": "
		"\"n\"},"
		" \"rules\": [{\"when\": {\"signal\": [9, 15]}, \"error_code\": \"SIG\", "
		"\"class\": "
		"\"PERSISTENT\"},"
		" {\"when\": {\"exit_code\": [0, 124, 137]}, \"error_code\": \"EXIT\", \"class\": "
		"\"PERSISTENT\"},"
		" {\"when\": {\"handler_code\": [\"T\"]}, \"error_code\": \"HC\", \"class\": "
		"\"PERSISTENT\"}],"
		" \"default\": {\"error_code\": \"DEF\", \"class\": \"NON_RETRYABLE\"}}";
	_cleanup_(taxonomy_freep) struct taxonomy *t = parse_ok(table);
	struct result r = res(RESULT_TIMEOUT);

	r.signal = SIGKILL;
	r.exit_code = 137;
	expect(t, r, "DEF", ERROR_CLASS_NON_RETRYABLE, "n", -1);
	/* Not even a handler_code rule matches a timeout. */
	strscpy(r.handler_code, "T", sizeof(r.handler_code));
	expect(t, r, "T", ERROR_CLASS_NON_RETRYABLE, "n", -1);

	r = res(RESULT_INTERNAL);
	r.signal = 9;
	expect(t, r, "DEF", ERROR_CLASS_NON_RETRYABLE, "n", -1);
	/* The kind decides which field counts: exit 9 is not signal 9. */
	expect(t, exit_code(9), "DEF", ERROR_CLASS_NON_RETRYABLE, "n", -1);
	expect(t, killed(15), "SIG", ERROR_CLASS_PERSISTENT, "n", 0);
	expect(t, exit_code(124), "EXIT", ERROR_CLASS_PERSISTENT, "n", 1);
	/* No policy retries here, so no lane is needed. */
	assert_int_equal(taxonomy_max_delay_usec(t), 0);
}

static void test_durations(void **state)
{
	_cleanup_(taxonomy_freep) struct taxonomy *t = NULL;
	struct diag d = { 0 };
	char path[4096];
	const struct policy *p;

	snprintf(path, sizeof(path), "%s/taxonomy/good-every-key.json", test_data_dir());
	assert_int_equal(taxonomy_load(path, &t, &d), 0);
	diag_done(&d);
	p = taxonomy_policy(t, "numbers");
	assert_int_equal(p->max_attempt, 10);
	assert_int_equal(p->initial_usec, 250 * USEC_PER_MSEC);
	assert_int_equal(p->max_usec, 3600 * USEC_PER_SEC);
	p = taxonomy_policy(t, "units");
	assert_int_equal(p->max_attempt, 1000000);
	assert_int_equal(p->initial_usec, 10);
	assert_int_equal(p->max_usec, UINT64_C(7) * 86400 * USEC_PER_SEC);
	assert_true(p->jitter_min == 10 && p->jitter_max == 10);
	p = taxonomy_policy(t, "spelled");
	assert_int_equal(p->initial_usec, 1500 * USEC_PER_MSEC);
	assert_int_equal(p->max_usec, 120 * USEC_PER_SEC);
	/* 7d * (1 + 10) */
	assert_int_equal(taxonomy_max_delay_usec(t), UINT64_C(77) * 86400 * USEC_PER_SEC);
	/* Values written as 75.0 or 1.0 are integers. */
	expect(t, exit_code(75), "D", ERROR_CLASS_TRANSIENT, "numbers", 3);
	expect(t, killed(64), "E", ERROR_CLASS_PERSISTENT, "units", 4);
	expect(t, killed(SIGTERM), "E", ERROR_CLASS_PERSISTENT, "units", 4);
	expect(t, http(200), "A", ERROR_CLASS_TRANSIENT, "spelled", 0);
	expect(t, http(150), "A", ERROR_CLASS_TRANSIENT, "spelled", 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_error_class_strings),
		cmocka_unit_test(test_contract_table),
		cmocka_unit_test(test_shipped_table),
		cmocka_unit_test(test_every_match_kind),
		cmocka_unit_test(test_first_match_wins),
		cmocka_unit_test(test_and_of_keys),
		cmocka_unit_test(test_escalate),
		cmocka_unit_test(test_breaker_flag),
		cmocka_unit_test(test_handler_code_fallback),
		cmocka_unit_test(test_default),
		cmocka_unit_test(test_timeout_and_internal),
		cmocka_unit_test(test_durations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
