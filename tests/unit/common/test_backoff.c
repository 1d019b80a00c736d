/*
 * Unit tests for backoff: the delay formula of the contract, its cap and
 * jitter bounds over many draws, Retry-After, and the delay-lane grid.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <math.h>
#include <stdio.h>

#include "common/backoff.h"

#define SEC  USEC_PER_SEC
#define MSEC USEC_PER_MSEC

/* The contract's "fast" and "slow" policies. */
static const struct policy fast = {
	.name = "fast",
	.max_attempt = 5,
	.initial_usec = 2 * SEC,
	.multiplier = 3,
	.max_usec = 120 * SEC,
	.jitter_min = 0.10,
	.jitter_max = 0.30,
};
static const struct policy slow = {
	.name = "slow",
	.max_attempt = 3,
	.initial_usec = 300 * SEC,
	.multiplier = 2,
	.max_usec = 3600 * SEC,
	.jitter_min = 0.10,
	.jitter_max = 0.30,
};

static void test_base(void **state)
{
	assert_int_equal(backoff_base_usec(&fast, 1), 2 * SEC);
	assert_int_equal(backoff_base_usec(&fast, 2), 6 * SEC);
	assert_int_equal(backoff_base_usec(&fast, 3), 18 * SEC);
	assert_int_equal(backoff_base_usec(&fast, 4), 54 * SEC);
	assert_int_equal(backoff_base_usec(&fast, 5), 120 * SEC); /* 162s, capped */
	assert_int_equal(backoff_base_usec(&fast, 0), 2 * SEC);	  /* k < 1 counts as 1 */
	assert_int_equal(backoff_base_usec(&slow, 1), 300 * SEC);
	assert_int_equal(backoff_base_usec(&slow, 2), 600 * SEC);
	assert_int_equal(backoff_base_usec(&slow, 3), 1200 * SEC);
	assert_int_equal(backoff_base_usec(&slow, 5), 3600 * SEC);

	struct policy flat = fast;
	flat.multiplier = 1;
	for (uint32_t k = 1; k < 50; k++)
		assert_int_equal(backoff_base_usec(&flat, k), 2 * SEC);
	struct policy frac = fast;
	frac.initial_usec = 1000;
	frac.multiplier = 1.5;
	frac.max_usec = 10 * SEC;
	assert_int_equal(backoff_base_usec(&frac, 3), 2250);
}

/* The cap holds for any retry number without overflow, even with huge growth. */
static void test_cap(void **state)
{
	struct policy p[] = {
		fast,
		slow,
		{ .initial_usec = 1,
		  .multiplier = 1e6,
		  .max_usec = 7 * 86400 * SEC,
		  .jitter_min = 0,
		  .jitter_max = 10 },
		{ .initial_usec = 7 * 86400 * SEC,
		  .multiplier = 1e300,
		  .max_usec = 7 * 86400 * SEC },
		{ .initial_usec = 1,
		  .multiplier = 1.0000001,
		  .max_usec = 5 * SEC,
		  .jitter_min = 0.5,
		  .jitter_max = 0.5 },
	};
	uint32_t ks[] = { 100, 999, 1000, 1000000, UINT32_MAX };

	for (size_t i = 0; i < ARRAY_SIZE(p); i++) {
		uint64_t prev = 0;

		for (uint32_t k = 1; k <= 1000; k++) {
			uint64_t b = backoff_base_usec(&p[i], k);

			assert_true(b <= p[i].max_usec);
			assert_true(b >= prev); /* never shrinks */
			prev = b;
			uint64_t d = backoff_delay_usec(&p[i], k, 0.999999, 0);
			assert_true(d <= LANE_MAX_MS * MSEC);
			assert_true(d >= b || d == LANE_MAX_MS * MSEC);
		}
		for (size_t j = 0; j < ARRAY_SIZE(ks); j++)
			assert_true(backoff_base_usec(&p[i], ks[j]) <= p[i].max_usec);
	}
	assert_int_equal(backoff_base_usec(&p[2], 1000), 7 * 86400 * SEC);
	assert_int_equal(backoff_base_usec(&p[3], UINT32_MAX), 7 * 86400 * SEC);
	/* 1.0000001^999 is about 1.0001: far from the cap, and not rounded to it. */
	assert_int_equal(backoff_base_usec(&p[4], 1000), 1);
	/* 7d * (1 + 10) would be 77 days: no lane holds that, so 7 days it is. */
	assert_int_equal(backoff_delay_usec(&p[2], 1000, 0.5, 0), LANE_MAX_MS * MSEC);
}

static uint64_t lo_bound(const struct policy *p, uint32_t k)
{
	return (uint64_t)llround((double)backoff_base_usec(p, k) * (1.0 + p->jitter_min));
}

static uint64_t hi_bound(const struct policy *p, uint32_t k)
{
	return (uint64_t)llround((double)backoff_base_usec(p, k) * (1.0 + p->jitter_max));
}

/*
 * delay = base * (1 + u), u uniform in [jitter_min, jitter_max]: every draw
 * lands in the range, and the draws really spread over it.
 */
static void test_jitter_range(void **state)
{
	const struct policy *ps[] = { &fast, &slow };
	struct policy wide = fast;

	wide.jitter_min = 0;
	wide.jitter_max = 10;
	for (size_t i = 0; i < 3; i++) {
		const struct policy *p = i < 2 ? ps[i] : &wide;

		for (uint32_t k = 1; k <= 6; k++) {
			uint64_t lo = lo_bound(p, k), hi = hi_bound(p, k), min = UINT64_MAX,
				 max = 0;
			double sum = 0;

			for (int n = 0; n < 100000; n++) {
				uint64_t d = backoff_delay_usec(p, k, random_unit(), 0);

				if (d < lo || d > hi)
					fail_msg("k=%u delay %" PRIu64 " outside [%" PRIu64
						 ", %" PRIu64 "]",
						 k, d, lo, hi);
				min = MIN(min, d);
				max = MAX(max, d);
				sum += (double)d;
			}
			/* 100000 uniform draws: the extremes come within 0.1% of the
			 * range, the mean within 1% of its middle. */
			double range = (double)(hi - lo);
			assert_true((double)(min - lo) < range * 0.001);
			assert_true((double)(hi - max) < range * 0.001);
			assert_true(fabs(sum / 100000 - (double)(lo + hi) / 2) < range * 0.01);
		}
	}
}

static void test_pinned_draws(void **state)
{
	/* u01 = 0 is the bottom of the jitter range; just below 1 is the top. */
	assert_int_equal(backoff_delay_usec(&fast, 1, 0, 0), 2200 * MSEC);
	assert_int_equal(backoff_delay_usec(&fast, 1, 0.5, 0), 2400 * MSEC);
	assert_int_equal(backoff_delay_usec(&fast, 1, nextafter(1.0, 0), 0), 2600 * MSEC);
	assert_int_equal(backoff_delay_usec(&fast, 5, 0, 0), 132 * SEC);
	assert_int_equal(backoff_delay_usec(&slow, 2, 0.5, 0), 720 * SEC);
	/* Draws outside [0, 1) are clamped, never extrapolated. */
	assert_int_equal(backoff_delay_usec(&fast, 1, -3, 0), 2200 * MSEC);
	assert_int_equal(backoff_delay_usec(&fast, 1, NAN, 0), 2200 * MSEC);
	assert_int_equal(backoff_delay_usec(&fast, 1, 7, 0), 2600 * MSEC);

	struct policy none = { .jitter_min = 0.2,
			       .jitter_max = 0.2,
			       .initial_usec = 1 * SEC,
			       .multiplier = 2,
			       .max_usec = 8 * SEC };
	for (uint32_t k = 1; k <= 5; k++)
		assert_int_equal(backoff_delay_usec(&none, k, random_unit(), 0),
				 (uint64_t)llround((double)backoff_base_usec(&none, k) * 1.2));
}

/* Retry-After raises the delay and never lowers it. */
static void test_retry_after(void **state)
{
	assert_int_equal(backoff_delay_usec(&fast, 1, 0, 30 * SEC), 30 * SEC);
	assert_int_equal(backoff_delay_usec(&fast, 1, 0, 1 * SEC), 2200 * MSEC);
	assert_int_equal(backoff_delay_usec(&fast, 1, 0, 2200 * MSEC), 2200 * MSEC);
	assert_int_equal(backoff_delay_usec(&fast, 1, 0, 2200 * MSEC + 1), 2200 * MSEC + 1);
	assert_int_equal(backoff_delay_usec(&slow, 3, 0.5, 60 * SEC), 1440 * SEC);
	for (int n = 0; n < 1000; n++) {
		double u = random_unit();
		uint64_t plain = backoff_delay_usec(&fast, 3, u, 0);
		uint64_t ra = (uint64_t)(random_unit() * 60 * SEC);

		assert_int_equal(backoff_delay_usec(&fast, 3, u, ra), MAX(plain, ra));
	}
	/* Nor beyond the longest lane. */
	assert_int_equal(backoff_delay_usec(&fast, 1, 0, 30 * 86400 * SEC), LANE_MAX_MS * MSEC);
	assert_int_equal(backoff_delay_usec(&fast, 1, 0, UINT64_MAX), LANE_MAX_MS * MSEC);
}

/* The grid as the header defines it, computed independently with pow(). */
static size_t grid(uint64_t *out, size_t max)
{
	size_t n = 0;

	for (int k = 0;; k++) {
		uint64_t v = (uint64_t)llround((double)LANE_MIN_MS * pow(LANE_STEP, k));

		if (v >= LANE_MAX_MS)
			break;
		assert_true(n < max);
		out[n++] = v;
	}
	assert_true(n < max);
	out[n++] = LANE_MAX_MS;
	return n;
}

static void test_lane_grid(void **state)
{
	uint64_t g[1000];
	size_t n = grid(g, ARRAY_SIZE(g));

	/* A bounded number of queues: about 400 for 100 ms .. 7 days. */
	assert_true(n > 300 && n < 500);
	assert_int_equal(g[0], LANE_MIN_MS);
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			assert_true(g[i] > g[i - 1]);
		/* Every lane is its own best lane. */
		assert_int_equal(backoff_lane_ms(g[i] * MSEC), g[i]);
	}
	assert_int_equal(backoff_lane_ms(0), LANE_MIN_MS);
	assert_int_equal(backoff_lane_ms(1), LANE_MIN_MS);
	assert_int_equal(backoff_lane_ms(LANE_MIN_MS * MSEC), LANE_MIN_MS);
	assert_int_equal(backoff_lane_ms(LANE_MAX_MS * MSEC), LANE_MAX_MS);
	assert_int_equal(backoff_lane_ms(LANE_MAX_MS * MSEC * 2), LANE_MAX_MS);
	assert_int_equal(backoff_lane_ms(UINT64_MAX), LANE_MAX_MS);
	/* Worked examples: fast's first retries (2.2 s, 132 s), a minute, an hour. */
	assert_int_equal(backoff_lane_ms(150 * MSEC), 148);
	assert_int_equal(backoff_lane_ms(2 * SEC), 1970);
	assert_int_equal(backoff_lane_ms(2200 * MSEC), 2216);
	assert_int_equal(backoff_lane_ms(60 * SEC), 59763);
	assert_int_equal(backoff_lane_ms(132 * SEC), 130949);
	assert_int_equal(backoff_lane_ms(3600 * SEC), 3531032);

	/*
	 * The switch between neighbours sits at their geometric mean: just below
	 * it the lower lane wins, just above it the upper one.
	 */
	for (size_t i = 0; i + 1 < n; i++) {
		double mid = sqrt((double)(g[i] * MSEC) * (double)(g[i + 1] * MSEC));
		uint64_t below = (uint64_t)floor(mid) - 1, above = (uint64_t)ceil(mid) + 1;

		assert_int_equal(backoff_lane_ms(below), g[i]);
		assert_int_equal(backoff_lane_ms(above), g[i + 1]);
	}
}

/* Index of lane v in the grid. */
static size_t grid_index(const uint64_t *g, size_t n, uint64_t v)
{
	for (size_t i = 0; i < n; i++)
		if (g[i] == v)
			return i;
	fail_msg("%" PRIu64 " is not a lane", v);
	return 0;
}

static void check_lane(const uint64_t *g, size_t n, uint64_t d)
{
	uint64_t lane = backoff_lane_ms(d);
	size_t i = grid_index(g, n, lane);
	double err = fabs(log((double)(lane * MSEC) / (double)d));

	/* The nearest lane in ratio: neither neighbour is closer. */
	if (d > LANE_MIN_MS * MSEC && d < LANE_MAX_MS * MSEC) {
		if (i > 0)
			assert_true(err <=
				    fabs(log((double)(g[i - 1] * MSEC) / (double)d)) + 1e-12);
		if (i + 1 < n)
			assert_true(err <=
				    fabs(log((double)(g[i + 1] * MSEC) / (double)d)) + 1e-12);
	}
	if (d >= SEC && d <= 2 * 3600 * SEC) {
		double rel = fabs((double)(lane * MSEC) - (double)d) / (double)d;

		if (rel > 0.025)
			fail_msg("delay %" PRIu64 " us -> lane %" PRIu64 " ms (%.2f%%)", d, lane,
				 rel * 100);
	}
	if (d < 2 * SEC) {
		uint64_t l = lane * MSEC, diff = l > d ? l - d : d - l;

		if (diff > 100 * MSEC)
			fail_msg("delay %" PRIu64 " us -> lane %" PRIu64 " ms", d, lane);
	}
}

static void test_lane_accuracy(void **state)
{
	uint64_t g[1000];
	size_t n = grid(g, ARRAY_SIZE(g));

	/* Every millisecond below 10 s, then steps of 0.05% up to past 7 days. */
	for (uint64_t d = 0; d <= 10 * SEC; d += MSEC / 4)
		check_lane(g, n, d);
	for (double d = 10 * SEC; d < 8.0 * 86400 * SEC; d *= 1.0005)
		check_lane(g, n, (uint64_t)d);
	/* And random delays between 1 s and 2 h, at microsecond resolution. */
	for (int i = 0; i < 100000; i++)
		check_lane(g, n, SEC + (uint64_t)(random_unit() * (double)(2 * 3600 * SEC - SEC)));
}

static void test_lane_monotonic(void **state)
{
	uint64_t prev = 0;

	for (uint64_t d = 0; d <= 5 * SEC; d += 100) {
		uint64_t l = backoff_lane_ms(d);

		assert_true(l >= prev);
		prev = l;
	}
	for (double d = 5 * SEC; d < 8.0 * 86400 * SEC; d *= 1.0001) {
		uint64_t l = backoff_lane_ms((uint64_t)d);

		assert_true(l >= prev);
		prev = l;
	}
	assert_int_equal(prev, LANE_MAX_MS);
	/* Random pairs. */
	for (int i = 0; i < 100000; i++) {
		uint64_t a = (uint64_t)(random_unit() * 3600 * SEC),
			 b = a + (uint64_t)(random_unit() * SEC);

		assert_true(backoff_lane_ms(a) <= backoff_lane_ms(b));
		/* The same delay always gets the same lane. */
		assert_int_equal(backoff_lane_ms(a), backoff_lane_ms(a));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base),	      cmocka_unit_test(test_cap),
		cmocka_unit_test(test_jitter_range),  cmocka_unit_test(test_pinned_draws),
		cmocka_unit_test(test_retry_after),   cmocka_unit_test(test_lane_grid),
		cmocka_unit_test(test_lane_accuracy), cmocka_unit_test(test_lane_monotonic),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
