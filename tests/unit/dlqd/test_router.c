/*
 * Unit tests for the router: ack / retry / DLQ over hand-built envelopes and
 * results, with the contract's taxonomy plus a few rules of its own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "common/backoff.h"
#include "dlqd/router.h"
#include "testutil.h"

#define SEC  USEC_PER_SEC
#define MSEC USEC_PER_MSEC

/* The contract's table plus rules of the router's own. */
static const char table[] =
	CONTRACT_TAXONOMY_HEAD "   {\"when\": {\"exit_code\": [70]}, \"error_code\": \"SOFTWARE\", "
			       "\"class\": \"PERSISTENT\"},\n"
			       "   {\"when\": {\"exit_code\": [71]}, \"error_code\": \"OS_SLOW\", "
			       "\"class\": \"TRANSIENT\", "
			       "\"policy\": \"slow\"},\n"
			       "   {\"when\": {\"exit_code\": [72]}, \"error_code\": \"OS_NEVER\", "
			       "\"class\": \"TRANSIENT\", "
			       "\"policy\": \"none\"},\n"
			       "   {\"when\": {\"exit_code\": [73]}, \"error_code\": \"PAGE_ME\", "
			       "\"class\": \"TRANSIENT\", "
			       "\"escalate\": true}" CONTRACT_TAXONOMY_TAIL;

static int setup(void **state)
{
	struct taxonomy *t = NULL;
	struct diag d = { 0 };
	int r = taxonomy_parse("router-test.json", table, strlen(table), &t, &d);

	for (size_t i = 0; i < d.n; i++)
		print_message("%s\n", d.lines[i]);
	diag_done(&d);
	if (r < 0)
		return -1;
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	taxonomy_free(*state);
	return 0;
}

static struct envelope env(uint32_t attempt)
{
	return (struct envelope){
		.message_id = "m1", .trace_id = "", .schema_version = "", .attempt = attempt
	};
}

static struct envelope env_max(uint32_t attempt, uint32_t max)
{
	struct envelope e = env(attempt);

	e.max_attempt = max;
	e.has_max_attempt = true;
	return e;
}

static struct result http(long status)
{
	struct result r;

	result_init(&r, RESULT_HTTP);
	r.http_status = status;
	return r;
}

static struct result exit_code(int code)
{
	struct result r;

	result_init(&r, RESULT_EXIT);
	r.exit_code = code;
	return r;
}

static struct route decide(void **state, const struct envelope *e, struct result r, double u)
{
	struct route out;

	memset(&out, 0xa5, sizeof(out)); /* every field must be set */
	router_decide(*state, e, &r, u, &out);
	return out;
}

static void assert_dlq(const struct route *o, const char *code, enum error_class cls,
		       uint32_t attempt, uint32_t max)
{
	assert_int_equal(o->action, ROUTE_DLQ);
	assert_string_equal(o->error_code, code);
	assert_int_equal(o->error_class, cls);
	assert_int_equal(o->attempt, attempt);
	assert_int_equal(o->max_attempt, max);
	assert_int_equal(o->delay_usec, 0);
	assert_int_equal(o->lane_ms, 0);
}

static void test_action_strings(void **state)
{
	assert_string_equal(route_action_to_string(ROUTE_ACK), "ack");
	assert_string_equal(route_action_to_string(ROUTE_RETRY), "retry");
	assert_string_equal(route_action_to_string(ROUTE_DLQ), "dlq");
	assert_string_equal(route_action_to_string((enum route_action)42), "unknown");
}

static void test_invalid_envelope(void **state)
{
	struct route o;

	memset(&o, 0xa5, sizeof(o));
	router_decide(*state, NULL, NULL, 0.5, &o);
	assert_dlq(&o, ERROR_CODE_INVALID_ENVELOPE, ERROR_CLASS_NON_RETRYABLE, 1, 0);
	assert_string_equal(o.cause_code, ERROR_CODE_INVALID_ENVELOPE);
	assert_int_equal(o.cause_class, ERROR_CLASS_NON_RETRYABLE);
	assert_int_equal(o.rule, -1);
	assert_false(o.escalate);
}

static void test_reject(void **state)
{
	struct route o;

	memset(&o, 0xa5, sizeof(o));
	router_reject(ERROR_CODE_MESSAGE_TOO_LARGE, &o);
	assert_dlq(&o, ERROR_CODE_MESSAGE_TOO_LARGE, ERROR_CLASS_NON_RETRYABLE, 1, 0);
	assert_string_equal(o.cause_code, ERROR_CODE_MESSAGE_TOO_LARGE);
	assert_int_equal(o.cause_class, ERROR_CLASS_NON_RETRYABLE);
	assert_int_equal(o.rule, -1);
	assert_false(o.escalate);
}

/* The poison guard: what a redelivered delivery's count means, per queue type. */
static void test_poison(void **state)
{
	static const struct {
		bool quorum;
		int64_t count; /* the header, -1 absent */
		uint32_t bound;
		enum poison_action want;
		uint64_t redeliveries;
	} cases[] = {
		/* Classic: dlqd's own header, plus this redelivery. */
		{ false, -1, 3, POISON_RECOUNT, 1 },
		{ false, 0, 3, POISON_RECOUNT, 1 },
		{ false, 1, 3, POISON_RECOUNT, 2 },
		{ false, 2, 3, POISON_DLQ, 3 },
		{ false, 7, 3, POISON_DLQ, 8 },
		{ false, -1, 1, POISON_DLQ, 1 },
		{ false, INT64_MAX, 3, POISON_DLQ, INT64_MAX }, /* saturates */
		{ false, 999, 1000, POISON_DLQ, 1000 },
		{ false, 998, 1000, POISON_RECOUNT, 999 },
		/* Quorum: the broker's x-delivery-count; a redelivery is at least 1. */
		{ true, -1, 3, POISON_HANDLE, 1 },
		{ true, 0, 3, POISON_HANDLE, 1 },
		{ true, 1, 3, POISON_HANDLE, 1 },
		{ true, 2, 3, POISON_HANDLE, 2 },
		{ true, 3, 3, POISON_DLQ, 3 },
		{ true, 4, 3, POISON_DLQ, 4 },
		{ true, -1, 1, POISON_DLQ, 1 },
		{ true, INT64_MAX, 1000, POISON_DLQ, INT64_MAX },
		/* 0 turns the guard off: handled as any delivery, never republished. */
		{ false, -1, 0, POISON_HANDLE, 1 },
		{ false, 1000000, 0, POISON_HANDLE, 1000001 },
		{ true, 1000000, 0, POISON_HANDLE, 1000000 },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		uint64_t n = 0xdeadbeef;
		enum poison_action got =
			router_poison(cases[i].quorum, cases[i].count, cases[i].bound, &n);

		if (got != cases[i].want || n != cases[i].redeliveries)
			fail_msg("case %zu: got action %d count %" PRIu64 ", want %d %" PRIu64, i,
				 got, n, cases[i].want, cases[i].redeliveries);
	}
}

/* A poison message's route: as a reject, NON_RETRYABLE at attempt 1. */
static void test_poison_route(void **state)
{
	struct route o;

	memset(&o, 0xa5, sizeof(o));
	router_reject(ERROR_CODE_POISON_MESSAGE, &o);
	assert_dlq(&o, ERROR_CODE_POISON_MESSAGE, ERROR_CLASS_NON_RETRYABLE, 1, 0);
	assert_string_equal(ERROR_CODE_POISON_MESSAGE, "POISON_MESSAGE");
	assert_int_equal(o.rule, -1);
	assert_false(o.escalate);
}

static void test_success(void **state)
{
	struct envelope e = env(3);
	struct result r;
	struct route o;

	result_init(&r, RESULT_SUCCESS);
	r.http_status = 200;
	o = decide(state, &e, r, 0.5);
	assert_int_equal(o.action, ROUTE_ACK);
	assert_null(o.error_code);
	assert_null(o.cause_code);
	assert_int_equal(o.attempt, 3);
	assert_int_equal(o.delay_usec, 0);
	assert_int_equal(o.rule, -1);
}

static void test_first_retry(void **state)
{
	struct envelope e = env(0);
	struct route o = decide(state, &e, http(503), 0);

	assert_int_equal(o.action, ROUTE_RETRY);
	assert_string_equal(o.error_code, "UPSTREAM_THROTTLED");
	assert_int_equal(o.error_class, ERROR_CLASS_TRANSIENT);
	assert_string_equal(o.cause_code, "UPSTREAM_THROTTLED");
	assert_int_equal(o.cause_class, ERROR_CLASS_TRANSIENT);
	assert_int_equal(o.attempt, 1);
	assert_int_equal(o.max_attempt, 5);
	assert_int_equal(o.delay_usec, 2200 * MSEC); /* 2s * (1 + 0.10) */
	assert_int_equal(o.lane_ms, 2216);
	assert_int_equal(o.rule, 0);
	assert_false(o.escalate);
}

/* attempt' == max_attempt retries; attempt' == max_attempt + 1 is exhausted. */
static void test_max_attempt_boundary(void **state)
{
	for (uint32_t a = 0; a < 4; a++) {
		struct envelope e = env(a);
		struct route o = decide(state, &e, http(429), 0.5);

		assert_int_equal(o.action, ROUTE_RETRY);
		assert_int_equal(o.attempt, a + 1);
	}
	struct envelope e = env(4);
	struct route o = decide(state, &e, http(429), 0);
	assert_int_equal(o.action, ROUTE_RETRY);
	assert_int_equal(o.attempt, 5);
	assert_int_equal(o.max_attempt, 5);
	assert_int_equal(o.delay_usec, 132 * SEC); /* min(120s, 2s*3^4) * 1.1 */
	assert_int_equal(o.lane_ms, backoff_lane_ms(132 * SEC));

	e = env(5);
	o = decide(state, &e, http(429), 0);
	assert_dlq(&o, ERROR_CODE_RETRY_EXHAUSTED, ERROR_CLASS_PERSISTENT, 6, 5);
	assert_string_equal(o.cause_code, "UPSTREAM_THROTTLED");
	assert_int_equal(o.cause_class, ERROR_CLASS_TRANSIENT);
	assert_int_equal(o.rule, 0);

	/* A body that claims more failures than allowed is exhausted too. */
	e = env(40);
	o = decide(state, &e, http(429), 0);
	assert_dlq(&o, ERROR_CODE_RETRY_EXHAUSTED, ERROR_CLASS_PERSISTENT, 41, 5);

	/* The slow policy of PERSISTENT: 3 retries. */
	e = env(2);
	o = decide(state, &e, exit_code(70), 0);
	assert_int_equal(o.action, ROUTE_RETRY);
	assert_int_equal(o.attempt, 3);
	assert_int_equal(o.max_attempt, 3);
	assert_int_equal(o.delay_usec, 1320 * SEC); /* 5m * 2^2 * 1.1 */
	e = env(3);
	o = decide(state, &e, exit_code(70), 0);
	assert_dlq(&o, ERROR_CODE_RETRY_EXHAUSTED, ERROR_CLASS_PERSISTENT, 4, 3);
	assert_string_equal(o.cause_code, "SOFTWARE");
	assert_int_equal(o.cause_class, ERROR_CLASS_PERSISTENT);
}

/* The envelope's max_attempt overrides the policy's, in both directions. */
static void test_envelope_max_attempt(void **state)
{
	struct envelope e = env_max(1, 2);
	struct route o = decide(state, &e, http(503), 0);

	assert_int_equal(o.action, ROUTE_RETRY);
	assert_int_equal(o.attempt, 2);
	assert_int_equal(o.max_attempt, 2);
	e = env_max(2, 2);
	o = decide(state, &e, http(503), 0);
	assert_dlq(&o, ERROR_CODE_RETRY_EXHAUSTED, ERROR_CLASS_PERSISTENT, 3, 2);

	e = env_max(8, 10);
	o = decide(state, &e, http(503), 0);
	assert_int_equal(o.action, ROUTE_RETRY);
	assert_int_equal(o.attempt, 9);
	assert_int_equal(o.max_attempt, 10);
	assert_int_equal(o.delay_usec, 132 * SEC); /* capped: 120s * 1.1 */

	e = env_max(0, 0);
	o = decide(state, &e, http(503), 0);
	assert_dlq(&o, ERROR_CODE_RETRY_EXHAUSTED, ERROR_CLASS_PERSISTENT, 1, 0);
	assert_string_equal(o.cause_code, "UPSTREAM_THROTTLED");

	/* It does not make a non-retryable failure retryable. */
	e = env_max(0, 10);
	o = decide(state, &e, http(404), 0);
	assert_dlq(&o, "INVALID_PAYLOAD", ERROR_CLASS_NON_RETRYABLE, 1, 0);
	e = env_max(0, 10);
	o = decide(state, &e, exit_code(1), 0);
	assert_dlq(&o, "UNKNOWN_ERROR", ERROR_CLASS_PERSISTENT, 1, 0);
}

static void test_non_retryable(void **state)
{
	struct envelope e = env(0);
	struct route o = decide(state, &e, http(401), 0.3);

	assert_dlq(&o, "AUTH_REVOKED", ERROR_CLASS_NON_RETRYABLE, 1, 0);
	assert_string_equal(o.cause_code, "AUTH_REVOKED");
	assert_int_equal(o.cause_class, ERROR_CLASS_NON_RETRYABLE);
	assert_true(o.escalate);
	assert_int_equal(o.rule, 1);
	/* A later failure keeps counting. */
	e = env(3);
	o = decide(state, &e, http(422), 0.3);
	assert_dlq(&o, "INVALID_PAYLOAD", ERROR_CLASS_NON_RETRYABLE, 4, 0);
	assert_false(o.escalate);
}

/* A policy that never retries dead-letters with the real code, not RETRY_EXHAUSTED. */
static void test_policy_none(void **state)
{
	struct envelope e = env(0);
	struct route o = decide(state, &e, exit_code(1), 0.3);

	/* The unknown default: PERSISTENT with policy "none". */
	assert_dlq(&o, "UNKNOWN_ERROR", ERROR_CLASS_PERSISTENT, 1, 0);
	assert_string_equal(o.cause_code, "UNKNOWN_ERROR");
	assert_int_equal(o.rule, -1);
	/* A TRANSIENT rule whose own policy is "none". */
	o = decide(state, &e, exit_code(72), 0.3);
	assert_dlq(&o, "OS_NEVER", ERROR_CLASS_TRANSIENT, 1, 0);
	assert_int_equal(o.rule, 7);
	/* A TRANSIENT rule with the slow policy: its bound and delays. */
	e = env(2);
	o = decide(state, &e, exit_code(71), 0);
	assert_int_equal(o.action, ROUTE_RETRY);
	assert_int_equal(o.max_attempt, 3);
	assert_int_equal(o.delay_usec, 1320 * SEC);
	assert_int_equal(o.error_class, ERROR_CLASS_TRANSIENT);
}

static void test_retry_after(void **state)
{
	struct envelope e = env(0);
	struct result r = http(503);
	struct route o;

	r.retry_after_usec = 60 * SEC;
	o = decide(state, &e, r, 0.9);
	assert_int_equal(o.action, ROUTE_RETRY);
	assert_int_equal(o.delay_usec, 60 * SEC);
	assert_int_equal(o.lane_ms, 59763);
	/* Shorter than the backoff: ignored. */
	r.retry_after_usec = 1 * SEC;
	o = decide(state, &e, r, 0);
	assert_int_equal(o.delay_usec, 2200 * MSEC);
	/* It never turns a dead letter into a retry. */
	e = env(5);
	r.retry_after_usec = 5 * SEC;
	o = decide(state, &e, r, 0);
	assert_dlq(&o, ERROR_CODE_RETRY_EXHAUSTED, ERROR_CLASS_PERSISTENT, 6, 5);
}

static void test_escalate_kept(void **state)
{
	struct envelope e = env(0);
	struct route o = decide(state, &e, exit_code(73), 0);

	assert_int_equal(o.action, ROUTE_RETRY);
	assert_true(o.escalate);
	assert_int_equal(o.rule, 8);
	e = env(5);
	o = decide(state, &e, exit_code(73), 0);
	assert_dlq(&o, ERROR_CODE_RETRY_EXHAUSTED, ERROR_CLASS_PERSISTENT, 6, 5);
	assert_true(o.escalate);
	assert_string_equal(o.cause_code, "PAGE_ME");
}

static void test_handler_code(void **state)
{
	struct envelope e = env(1);
	struct result r = exit_code(1);
	struct route o;

	strscpy(r.handler_code, "LOCKED", sizeof(r.handler_code));
	strscpy(r.handler_class, "TRANSIENT", sizeof(r.handler_class));
	router_decide(*state, &e, &r, 0, &o);
	assert_int_equal(o.action, ROUTE_RETRY);
	assert_ptr_equal(o.error_code, r.handler_code);
	assert_int_equal(o.error_class, ERROR_CLASS_TRANSIENT);
	assert_int_equal(o.attempt, 2);
	assert_int_equal(o.max_attempt, 5);
	assert_int_equal(o.delay_usec, 6600 * MSEC);
	assert_int_equal(o.rule, -1);

	strscpy(r.handler_class, "NON_RETRYABLE", sizeof(r.handler_class));
	router_decide(*state, &e, &r, 0, &o);
	assert_dlq(&o, "LOCKED", ERROR_CLASS_NON_RETRYABLE, 2, 0);
}

static void test_timeout(void **state)
{
	struct envelope e = env(0);
	struct result r;
	struct route o;

	result_init(&r, RESULT_TIMEOUT);
	r.signal = 9;
	router_decide(*state, &e, &r, 0, &o);
	assert_int_equal(o.action, ROUTE_RETRY);
	assert_string_equal(o.error_code, "UPSTREAM_TIMEOUT");
}

static void test_attempt_saturates(void **state)
{
	struct envelope e = env(UINT32_MAX);
	struct route o = decide(state, &e, http(503), 0);

	assert_dlq(&o, ERROR_CODE_RETRY_EXHAUSTED, ERROR_CLASS_PERSISTENT, ENVELOPE_ATTEMPT_MAX + 1,
		   5);
	e = env_max(ENVELOPE_ATTEMPT_MAX, ENVELOPE_ATTEMPT_MAX);
	o = decide(state, &e, http(503), 0);
	assert_dlq(&o, ERROR_CODE_RETRY_EXHAUSTED, ERROR_CLASS_PERSISTENT, ENVELOPE_ATTEMPT_MAX + 1,
		   ENVELOPE_ATTEMPT_MAX);
	e = env_max(ENVELOPE_ATTEMPT_MAX - 1, ENVELOPE_ATTEMPT_MAX);
	o = decide(state, &e, http(503), 0);
	assert_int_equal(o.action, ROUTE_RETRY);
	assert_int_equal(o.attempt, ENVELOPE_ATTEMPT_MAX);
	assert_int_equal(o.delay_usec, 132 * SEC);
}

/* A retry's delay and lane are exactly backoff's, for any draw. */
static void test_delay_matches_backoff(void **state)
{
	const struct policy *fast = taxonomy_policy(*state, "fast");

	for (int i = 0; i < 10000; i++) {
		uint32_t a = (uint32_t)(random_unit() * 5);
		double u = random_unit();
		struct envelope e = env(a);
		struct result r = http(429);
		struct route o;

		r.retry_after_usec = i % 3 ? 0 : (uint64_t)(random_unit() * 200 * SEC);
		router_decide(*state, &e, &r, u, &o);
		assert_int_equal(o.action, ROUTE_RETRY);
		assert_int_equal(o.delay_usec,
				 backoff_delay_usec(fast, a + 1, u, r.retry_after_usec));
		assert_int_equal(o.lane_ms, backoff_lane_ms(o.delay_usec));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_action_strings),
		cmocka_unit_test(test_invalid_envelope),
		cmocka_unit_test(test_reject),
		cmocka_unit_test(test_success),
		cmocka_unit_test(test_first_retry),
		cmocka_unit_test(test_max_attempt_boundary),
		cmocka_unit_test(test_envelope_max_attempt),
		cmocka_unit_test(test_non_retryable),
		cmocka_unit_test(test_policy_none),
		cmocka_unit_test(test_retry_after),
		cmocka_unit_test(test_escalate_kept),
		cmocka_unit_test(test_handler_code),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_attempt_saturates),
		cmocka_unit_test(test_delay_matches_backoff),
		cmocka_unit_test(test_poison),
		cmocka_unit_test(test_poison_route),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
