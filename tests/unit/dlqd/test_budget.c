/*
 * Unit tests for the retry budget: the floor, the share, a burst cut at the
 * exact count, the window's edges, refilling, a steady failure share replayed
 * tick by tick, reloads, what 0 means, and clamped arithmetic.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>

#include "common/util.h"
#include "dlqd/budget.h"

#define SEC  USEC_PER_SEC
#define MSEC USEC_PER_MSEC

/* Monotonic clocks do not start at 0; a bucket boundary keeps counts exact. */
#define T0 (1000 * SEC)

/* The contract's example: 0.2 of first attempts plus 10/s over 10 s. */
static struct budget_params params(void)
{
	return (struct budget_params){ .ratio = 0.2,
				       .min_per_second = 10,
				       .window_usec = 10 * SEC };
}

static void first_n(struct budget *b, uint64_t now, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		budget_first_attempt(b, now);
}

/* How many of n retries at now the budget lets through. */
static unsigned retries(struct budget *b, uint64_t now, unsigned n)
{
	unsigned ok = 0;

	for (unsigned i = 0; i < n; i++)
		ok += budget_try_retry(b, now);
	return ok;
}

static struct budget_info info(const struct budget *b, uint64_t now)
{
	struct budget_info i;

	budget_info(b, now, &i);
	return i;
}

static void assert_off(struct budget_params p)
{
	struct budget b;

	budget_init(&b, &p);
	first_n(&b, T0, 3);
	assert_int_equal(retries(&b, T0, 100000), 100000);
	assert_false(info(&b, T0).enabled);
	assert_int_equal(info(&b, T0).allowed, UINT64_MAX);
	assert_int_equal(info(&b, T0).retries, 0);
	assert_int_equal(info(&b, T0).deferred_total, 0);
}

static void test_zero_means_no_budget(void **state)
{
	struct budget_params p = params();

	p.min_per_second = 0;
	assert_off(p);
	p.min_per_second = NAN;
	assert_off(p);
	p.min_per_second = -5;
	assert_off(p);
	p.min_per_second = 4e-7; /* rounds to 0 millionths */
	assert_off(p);
	p = params();
	p.window_usec = 0;
	assert_off(p);
	p.min_per_second = 0;
	p.ratio = 0;
	assert_off(p);
}

/* No first attempts at all: the floor, 10/s x 10 s, lets 100 through. */
static void test_floor_alone(void **state)
{
	struct budget_params p = params();
	struct budget b;

	budget_init(&b, &p);
	assert_true(info(&b, T0).enabled);
	assert_int_equal(info(&b, T0).allowed, 100);
	assert_int_equal(retries(&b, T0, 100), 100);
	assert_false(budget_try_retry(&b, T0));
	assert_int_equal(info(&b, T0).deferred_total, 1);

	/* A fractional floor: 0.5/s over 10 s is 5; ratio 0 is the floor alone. */
	p.min_per_second = 0.5;
	p.ratio = 0;
	budget_init(&b, &p);
	first_n(&b, T0, 1000);
	assert_int_equal(retries(&b, T0, 10), 5);
	assert_int_equal(info(&b, T0).first_attempts, 1000);
	assert_int_equal(info(&b, T0).allowed, 5);
}

/* 1000 retries at once behind 100 first attempts: 0.2 x 100 + 100 = 120 pass. */
static void test_burst_cut(void **state)
{
	struct budget_params p = params();
	struct budget b;
	struct budget_info i;

	budget_init(&b, &p);
	first_n(&b, T0, 100);
	assert_int_equal(retries(&b, T0 + SEC, 1000), 120);
	i = info(&b, T0 + SEC);
	assert_int_equal(i.first_attempts, 100);
	assert_int_equal(i.retries, 120);
	assert_int_equal(i.allowed, 120);
	assert_int_equal(i.deferred_total, 880);
	/* Five more first attempts buy exactly one more retry. */
	first_n(&b, T0 + SEC, 4);
	assert_false(budget_try_retry(&b, T0 + SEC));
	budget_first_attempt(&b, T0 + SEC);
	assert_true(budget_try_retry(&b, T0 + SEC));
	assert_false(budget_try_retry(&b, T0 + SEC));
	assert_int_equal(info(&b, T0 + SEC).deferred_total, 882);
}

/* Millionths, not doubles: 0.29 x 100 + 0.1 x 10 is 30 (in double, 29.999... -> 29). */
static void test_share_exact(void **state)
{
	struct budget_params p = { .ratio = 0.29, .min_per_second = 0.1, .window_usec = 10 * SEC };
	struct budget b;

	budget_init(&b, &p);
	first_n(&b, T0, 100);
	assert_int_equal(info(&b, T0).allowed, 30);
	assert_int_equal(retries(&b, T0, 50), 30);
	/* 0.0157 x 10^6 is 15699.99... in double: rounded to 15700, not truncated. */
	p.ratio = 0.0157;
	budget_set_params(&b, &p);
	first_n(&b, T0, 100000 - 100);
	assert_int_equal(info(&b, T0).allowed, 1570 + 1);
}

/* Spent retries and first attempts leave the window after exactly 10 s. */
static void test_window_edges_and_refill(void **state)
{
	struct budget_params p = params();
	struct budget b;

	budget_init(&b, &p);
	first_n(&b, T0, 500);
	assert_int_equal(retries(&b, T0, 1000), 200);
	assert_int_equal(retries(&b, T0 + 10 * SEC - 1, 1000), 0);
	assert_int_equal(info(&b, T0 + 10 * SEC - 1).allowed, 200);
	/* The window has moved past T0: spent retries and first attempts are gone. */
	assert_int_equal(info(&b, T0 + 10 * SEC).allowed, 100);
	assert_int_equal(info(&b, T0 + 10 * SEC).retries, 0);
	assert_int_equal(retries(&b, T0 + 10 * SEC, 1000), 100);
	assert_int_equal(info(&b, T0 + 10 * SEC).deferred_total, 800 + 1000 + 900);

	/* Spent half a window ago: those retries still count until they leave. */
	budget_init(&b, &p);
	assert_int_equal(retries(&b, T0, 60), 60);
	assert_int_equal(retries(&b, T0 + 5 * SEC, 60), 40);
	assert_int_equal(retries(&b, T0 + 10 * SEC, 100), 60);
	assert_int_equal(retries(&b, T0 + 15 * SEC, 100), 40);
}

/*
 * A downstream failing 30% of 50 jobs/s: 15 retries/s wanted, the budget
 * allows 0.2 x 500 + 1/s x 10 = 110 per 10 s window. Deferred retries come
 * back on the next tick (a delay lane). Every aligned window handles exactly
 * 110 while the failures last; after they stop, the backlog drains and every
 * retry wanted was handled.
 */
static void test_steady_share(void **state)
{
	const struct budget_params p = { .ratio = 0.2,
					 .min_per_second = 1,
					 .window_usec = 10 * SEC };
	const uint64_t tick = 20 * MSEC, failing_until = T0 + 60 * SEC;
	struct budget b;
	uint64_t now, wanted = 0, handled = 0, pending = 0, in_window = 0;

	budget_init(&b, &p);
	for (now = T0; now < T0 + 120 * SEC; now += tick) {
		uint64_t k = (now - T0) / tick;

		budget_first_attempt(&b, now);
		if (now < failing_until && k % 10 < 3) {
			pending++;
			wanted++;
		}
		while (pending > 0 && budget_try_retry(&b, now)) {
			pending--;
			handled++;
			in_window++;
		}
		if ((now + tick - T0) % (10 * SEC) == 0) {
			if (now < failing_until)
				assert_int_equal(in_window, 110);
			else
				assert_true(in_window <= 110);
			in_window = 0;
		}
	}
	assert_int_equal(wanted, 900);
	assert_int_equal(pending, 0);
	assert_int_equal(handled, 900);
	assert_true(info(&b, now).deferred_total > 0);
}

static void test_reload(void **state)
{
	struct budget_params p = params();
	struct budget b;

	budget_init(&b, &p);
	first_n(&b, T0, 100);
	assert_int_equal(retries(&b, T0, 100), 100);
	/* A new ratio keeps the counts: 0.5 x 100 + 100 = 150, 100 spent. */
	p.ratio = 0.5;
	budget_set_params(&b, &p);
	assert_int_equal(retries(&b, T0, 100), 50);
	/* Off: everything passes, nothing is counted as spent. */
	p.min_per_second = 0;
	budget_set_params(&b, &p);
	assert_int_equal(retries(&b, T0, 1000), 1000);
	first_n(&b, T0, 100); /* still counted, for when it comes back */
	/* On again: 0.5 x 200 + 100 = 200, 150 spent. */
	p.min_per_second = 10;
	budget_set_params(&b, &p);
	assert_int_equal(info(&b, T0).first_attempts, 200);
	assert_int_equal(retries(&b, T0, 100), 50);
	/* A new window starts empty: 10/s x 20 s = 200 from the floor alone. */
	p.window_usec = 20 * SEC;
	budget_set_params(&b, &p);
	assert_int_equal(info(&b, T0).first_attempts, 0);
	assert_int_equal(info(&b, T0).allowed, 200);
	assert_int_equal(retries(&b, T0, 300), 200);
	assert_int_equal(info(&b, T0).deferred_total, 50 + 50 + 100);
}

static void test_clamps(void **state)
{
	struct budget_params p = { .ratio = NAN, .min_per_second = 1, .window_usec = 10 * SEC };
	struct budget b;

	/* NaN and negative ratios are 0: the floor alone. */
	budget_init(&b, &p);
	first_n(&b, T0, 1000);
	assert_int_equal(info(&b, T0).allowed, 10);
	p.ratio = -3;
	budget_set_params(&b, &p);
	assert_int_equal(info(&b, T0).allowed, 10);

	/* Saturated counts times the largest ratio: exact, no wrap. */
	p.ratio = 1e300;
	budget_set_params(&b, &p);
	for (uint64_t i = 0; i < TALLY_BUCKETS; i++)
		tally_add(&b.t, T0 + i * 500 * MSEC, 0, UINT32_MAX);
	assert_int_equal(info(&b, T0).first_attempts, 20 * (uint64_t)UINT32_MAX);
	assert_int_equal(info(&b, T0).allowed, UINT64_C(1000000) * 20 * UINT32_MAX + 10);

	/* The largest floor over the longest window is more than 2^64 retries. */
	p.min_per_second = INFINITY;
	p.window_usec = UINT64_MAX;
	budget_set_params(&b, &p);
	assert_int_equal(info(&b, UINT64_MAX).allowed, UINT64_MAX);
	assert_true(budget_try_retry(&b, UINT64_MAX));
	assert_int_equal(info(&b, UINT64_MAX).retries, 1);

	/* The deferral counter saturates. */
	p = params();
	budget_set_params(&b, &p);
	b.deferred_total = UINT64_MAX - 1;
	assert_int_equal(retries(&b, T0, 200), 100);
	assert_int_equal(b.deferred_total, UINT64_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zero_means_no_budget),
		cmocka_unit_test(test_floor_alone),
		cmocka_unit_test(test_burst_cut),
		cmocka_unit_test(test_share_exact),
		cmocka_unit_test(test_window_edges_and_refill),
		cmocka_unit_test(test_steady_share),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_clamps),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
