/*
 * Unit tests for ratelimit: the token bucket paces exactly N per second
 * over a long run, never bursts above its size, and reports the wait.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dlqctl/ratelimit.h"

#define SEC USEC_PER_SEC

static void test_first_is_free_then_paced(void **state)
{
	struct ratelimit rl;
	uint64_t t = 1000 * SEC;

	(void)state;
	ratelimit_init(&rl, 10, 1, t);
	assert_int_equal(ratelimit_take(&rl, t), 0);
	assert_int_equal(ratelimit_take(&rl, t), SEC / 10);
	assert_int_equal(ratelimit_take(&rl, t + SEC / 20), SEC / 20);
	assert_int_equal(ratelimit_take(&rl, t + SEC / 10), 0);
}

/* Takes as fast as allowed for a simulated minute: count = 1 + rate * T. */
static void run(double rate, double burst, uint64_t span, uint64_t *count)
{
	struct ratelimit rl;
	uint64_t t0 = 5 * SEC, t = t0, w;

	*count = 0;
	ratelimit_init(&rl, rate, burst, t0);
	while (t <= t0 + span) {
		w = ratelimit_take(&rl, t);
		if (w == 0)
			(*count)++;
		else
			t += w;
	}
}

static void test_long_run_rate(void **state)
{
	static const double rates[] = { 1, 7, 10, 333, 5000, 100000 };
	uint64_t n;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(rates); i++) {
		run(rates[i], 1, 60 * SEC, &n);
		assert_true(n >= (uint64_t)(rates[i] * 60));
		assert_true(n <= (uint64_t)(rates[i] * 60) + 1);
	}
}

static void test_idle_does_not_bank_tokens(void **state)
{
	struct ratelimit rl;
	uint64_t t = SEC;

	(void)state;
	ratelimit_init(&rl, 100, 1, t);
	t += 3600 * SEC; /* an hour idle: still one token, not 360,000 */
	assert_int_equal(ratelimit_take(&rl, t), 0);
	assert_true(ratelimit_take(&rl, t) > 0);

	ratelimit_init(&rl, 100, 5, t);
	t += 3600 * SEC;
	for (int i = 0; i < 5; i++)
		assert_int_equal(ratelimit_take(&rl, t), 0);
	assert_true(ratelimit_take(&rl, t) > 0);
}

static void test_clock_going_back(void **state)
{
	struct ratelimit rl;

	(void)state;
	ratelimit_init(&rl, 2, 1, 10 * SEC);
	assert_int_equal(ratelimit_take(&rl, 10 * SEC), 0);
	assert_int_equal(ratelimit_take(&rl, 9 * SEC), SEC / 2);
	assert_int_equal(ratelimit_take(&rl, 10 * SEC + SEC / 2), 0);
}

static void test_bad_parameters(void **state)
{
	struct ratelimit rl;

	(void)state;
	ratelimit_init(&rl, 0, 0, 0); /* clamped to 1/s, burst 1 */
	assert_int_equal(ratelimit_take(&rl, 0), 0);
	assert_int_equal(ratelimit_take(&rl, 0), SEC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_is_free_then_paced),
		cmocka_unit_test(test_long_run_rate),
		cmocka_unit_test(test_idle_does_not_bank_tokens),
		cmocka_unit_test(test_clock_going_back),
		cmocka_unit_test(test_bad_parameters),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
