/*
 * Unit tests for the taxonomy: parsing and validation (with the golden files
 * under tests/data/taxonomy), the shipped default table, and classification.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/taxonomy.h"
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

static struct taxonomy *parse_ok(const char *text)
{
	struct diag d = { 0 };
	struct taxonomy *t = NULL;
	int r = taxonomy_parse("test.json", text, strlen(text), &t, &d);

	for (size_t i = 0; i < d.n; i++)
		print_message("unexpected diagnostic: %s\n", d.lines[i]);
	assert_int_equal(r, 0);
	assert_int_equal(d.n, 0);
	assert_non_null(t);
	diag_done(&d);
	return t;
}

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

static const char *test_data_dir(void)
{
	static char dir[4096];
	const char *env = getenv("DLQD_TEST_DATA");
	char file[4096];

	if (env && *env)
		return env;
	strscpy(file, __FILE__, sizeof(file));
	snprintf(dir, sizeof(dir), "%s/../data", dirname(file));
	return dir;
}

static const char *source_dir(void)
{
	static char dir[4096];
	const char *env = getenv("DLQD_SOURCE_DIR");
	char file[4096];

	if (env && *env)
		return env;
	strscpy(file, __FILE__, sizeof(file));
	snprintf(dir, sizeof(dir), "%s/../..", dirname(file));
	return dir;
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

static char *read_text(const char *path)
{
	char *text = NULL;
	size_t len;

	assert_int_equal(read_file_max(path, 65536, &text, &len), 0);
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		text[--len] = '\0';
	return text;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Every good-*.json loads without a diagnostic; every bad-*.json fails, and
 * its first diagnostic is the line in bad-*.err (FILE:LINE: message, with
 * FILE relative to the golden directory).
 */
static void test_goldens(void **state)
{
	char dir[4096];
	DIR *dp;
	struct dirent *de;
	char *names[512];
	size_t n = 0, good = 0, bad = 0;

	snprintf(dir, sizeof(dir), "%s/taxonomy", test_data_dir());
	dp = opendir(dir);
	assert_non_null(dp);
	while ((de = readdir(dp))) {
		size_t len = strlen(de->d_name);

		if (len > 5 && strcmp(de->d_name + len - 5, ".json") == 0) {
			assert_true(n < ARRAY_SIZE(names));
			names[n++] = strdup(de->d_name);
		}
	}
	closedir(dp);
	qsort(names, n, sizeof(*names), name_cmp);

	for (size_t i = 0; i < n; i++) {
		_cleanup_(taxonomy_freep) struct taxonomy *t = NULL;
		struct diag d = { 0 };
		char path[4096 + 256];
		int r;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		r = taxonomy_load(path, &t, &d);
		if (strncmp(names[i], "good-", 5) == 0) {
			for (size_t j = 0; j < d.n; j++)
				print_message("%s\n", d.lines[j]);
			assert_int_equal(r, 0);
			assert_int_equal(d.n, 0);
			assert_non_null(t);
			good++;
		} else {
			assert_true(strncmp(names[i], "bad-", 4) == 0);
			char errpath[4096 + 256], expected[8192];
			_cleanup_free_ char *want = NULL;

			snprintf(errpath, sizeof(errpath), "%.*s.err", (int)(strlen(path) - 5),
				 path);
			want = read_text(errpath);
			snprintf(expected, sizeof(expected), "%s/%s", dir, want);
			if (r >= 0 || d.n == 0)
				print_message("%s: accepted\n", names[i]);
			assert_true(r < 0);
			assert_null(t);
			assert_true(d.n >= 1);
			if (strcmp(d.lines[0], expected) != 0)
				print_message("%s:\n  got  %s\n  want %s\n", names[i], d.lines[0],
					      expected);
			assert_string_equal(d.lines[0], expected);
			bad++;
		}
		diag_done(&d);
		free(names[i]);
	}
	/* The directory is really there and has both kinds. */
	assert_true(good >= 3);
	assert_true(bad >= 30);
}

/* Every problem is reported, in file order, on its own line. */
static void test_all_errors_reported(void **state)
{
	static const char text[] =
		"{\n"
		"  \"rules\": [\n"
		"    {\"when\": {\"exit_code\": [300]},\n"
		"     \"error_code\": \"x\", \"class\": \"TRANSIENT\", \"policy\": \"nope\"}\n"
		"  ],\n"
		"  \"version\": 3,\n"
		"  \"policies\": {\"p\": {\"max_attempt\": -1}},\n"
		"  \"classes\": {\"TRANSIENT\": \"p\", \"PERSISTENT\": \"p\", \"NON_RETRYABLE\": "
		"\"p\"},\n"
		"  \"default\": {\"error_code\": \"D\", \"class\": \"PERSISTENT\", \"extra\": 1}\n"
		"}\n";
	static const char *const want[] = {
		"t.json:3: rules[0].when.exit_code[0]: 300 is out of range (0..255)",
		"t.json:4: rules[0].error_code: invalid error code \"x\" (1 to 63 characters of "
		"A-Z, "
		"0-9 and _)",
		"t.json:4: rules[0].policy: unknown policy \"nope\"",
		"t.json:6: version: unsupported version 3 (this dlqd reads version 1)",
		"t.json:7: policies.p.max_attempt: -1 is out of range (0..1000000)",
		"t.json:9: default.extra: unknown key",
	};
	struct taxonomy *t = NULL;
	struct diag d = { 0 };

	assert_int_equal(taxonomy_parse("t.json", text, strlen(text), &t, &d), -EINVAL);
	assert_null(t);
	if (d.n != ARRAY_SIZE(want))
		for (size_t i = 0; i < d.n; i++)
			print_message("%s\n", d.lines[i]);
	assert_int_equal(d.n, ARRAY_SIZE(want));
	for (size_t i = 0; i < ARRAY_SIZE(want); i++)
		assert_string_equal(d.lines[i], want[i]);
	diag_done(&d);

	/* Diagnostics are optional. */
	assert_int_equal(taxonomy_parse("t.json", text, strlen(text), &t, NULL), -EINVAL);
	assert_null(t);
}

static void test_read_errors(void **state)
{
	struct taxonomy *t = NULL;
	struct diag d = { 0 };
	size_t big = 1024 * 1024 + 1;
	char *text;

	assert_int_equal(taxonomy_load("/nonexistent/taxonomy.json", &t, &d), -ENOENT);
	assert_null(t);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.lines[0],
			    "/nonexistent/taxonomy.json:1: cannot read: No such file or "
			    "directory");
	diag_done(&d);

	/* 1 MiB of JSON is the most a table may be, read from a file or not. */
	char tmp[] = "/tmp/test_taxonomy.XXXXXX";
	int fd = mkstemp(tmp);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)big), 0);
	close(fd);
	assert_int_equal(taxonomy_load(tmp, &t, &d), -EFBIG);
	unlink(tmp);
	assert_int_equal(d.n, 1);
	assert_non_null(strstr(d.lines[0], ":1: cannot read: file too large (max 1 MiB)"));
	diag_done(&d);

	text = malloc(big);
	assert_non_null(text);
	memset(text, ' ', big);
	text[0] = '{';
	text[big - 1] = '}';
	assert_int_equal(taxonomy_parse("big.json", text, big, &t, &d), -EFBIG);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.lines[0], "big.json:1: cannot read: file too large (max 1 MiB)");
	diag_done(&d);
	/* One byte less is read (and then rejected for its content). */
	text[big - 2] = '}';
	assert_int_equal(taxonomy_parse("big.json", text, big - 1, &t, &d), -EINVAL);
	assert_string_equal(d.lines[0], "big.json:1: missing \"version\"");
	diag_done(&d);
	free(text);

	/* Bytes after the document, and a NUL inside it. */
	assert_int_equal(taxonomy_parse("x.json", "{} {}", 5, &t, &d), -EINVAL);
	assert_int_equal(d.n, 1);
	assert_non_null(strstr(d.lines[0], "x.json:1: invalid JSON: "));
	diag_done(&d);
	assert_int_equal(taxonomy_parse("x.json", "{\"version\"\0: 1}", 15, &t, &d), -EINVAL);
	assert_int_equal(d.n, 1);
	diag_done(&d);
}

/* A table with n rules, each with one key of v values. */
static char *table_with(size_t n_rules, size_t n_values)
{
	struct buf b;

	buf_init(&b, 4 * 1024 * 1024);
	buf_printf(&b, "{\"version\": 1, \"policies\": {\"n\": {\"max_attempt\": 0}}, \"classes\": "
		       "{\"TRANSIENT\": \"n\", \"PERSISTENT\": \"n\", \"NON_RETRYABLE\": \"n\"},\n"
		       "\"rules\": [\n");
	for (size_t i = 0; i < n_rules; i++) {
		buf_printf(&b, "%s{\"when\": {\"exit_code\": [", i ? ",\n" : "");
		for (size_t j = 0; j < n_values; j++)
			buf_printf(&b, "%s%zu", j ? "," : "", j % 256);
		buf_printf(&b, "]}, \"error_code\": \"R%zu\", \"class\": \"PERSISTENT\"}", i);
	}
	buf_printf(&b, "],\n\"default\": {\"error_code\": \"D\", \"class\": \"PERSISTENT\"}}\n");
	return buf_steal(&b, NULL);
}

static void test_limits(void **state)
{
	_cleanup_free_ char *ok = table_with(1000, 1), *too_many = table_with(1001, 1);
	_cleanup_free_ char *values_ok = table_with(1, 1000), *values_bad = table_with(1, 1001);
	struct taxonomy *t = NULL;
	struct diag d = { 0 };
	struct classification c;

	t = parse_ok(ok);
	taxonomy_classify(t, &(struct result){ .kind = RESULT_EXIT, .exit_code = 0 }, &c);
	assert_string_equal(c.error_code, "R0");
	t = taxonomy_free(t);
	t = parse_ok(values_ok);
	t = taxonomy_free(t);

	assert_int_equal(taxonomy_parse("t.json", too_many, strlen(too_many), &t, &d), -EINVAL);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.lines[0], "t.json:2: rules: at most 1000 rules (got 1001)");
	diag_done(&d);
	assert_int_equal(taxonomy_parse("t.json", values_bad, strlen(values_bad), &t, &d), -EINVAL);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.lines[0], "t.json:3: rules[0].when.exit_code: at most 1000 values");
	diag_done(&d);
	assert_null(taxonomy_free(NULL));
}

/* The keys the JSON Schema allows are the keys the validator allows. */
static void check_schema_keys(json_t *schema, const char *def, const char *const *keys)
{
	json_t *o = json_object_get(json_object_get(json_object_get(schema, "$defs"), def),
				    "properties");
	size_t n = 0;

	if (!def)
		o = json_object_get(schema, "properties");
	assert_non_null(o);
	for (; keys[n]; n++) {
		if (!json_object_get(o, keys[n]))
			print_message("schema %s lacks %s\n", def ? def : "(root)", keys[n]);
		assert_non_null(json_object_get(o, keys[n]));
	}
	assert_int_equal(json_object_size(o), n);
}

static void test_schema(void **state)
{
	char path[4096];
	json_error_t err;
	json_t *schema;

	snprintf(path, sizeof(path), "%s/docs/taxonomy.schema.json", source_dir());
	schema = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
	if (!schema)
		print_message("%s:%d: %s\n", path, err.line, err.text);
	assert_non_null(schema);
	assert_string_equal(json_string_value(json_object_get(schema, "$schema")),
			    "https://json-schema.org/draft/2020-12/schema");
	check_schema_keys(schema, NULL,
			  (const char *const[]){ "$schema", "version", "policies", "classes",
						 "rules", "default", NULL });
	check_schema_keys(schema, "policy",
			  (const char *const[]){ "max_attempt", "initial", "multiplier", "max",
						 "jitter", NULL });
	check_schema_keys(
		schema, "rule",
		(const char *const[]){ "when", "error_code", "class", "policy", "escalate", NULL });
	check_schema_keys(schema, "when",
			  (const char *const[]){ "http_status", "transport", "timeout", "exit_code",
						 "signal", "handler_code", NULL });
	json_decref(schema);
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
		cmocka_unit_test(test_handler_code_fallback),
		cmocka_unit_test(test_default),
		cmocka_unit_test(test_timeout_and_internal),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_goldens),
		cmocka_unit_test(test_all_errors_reported),
		cmocka_unit_test(test_read_errors),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_schema),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
