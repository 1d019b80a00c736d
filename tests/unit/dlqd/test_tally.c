/*
 * Unit tests for the tally: when a count enters and leaves the window, to the
 * microsecond; bounded memory under any rate; clamped time and counts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/util.h"
#include "dlqd/tally.h"

#define SEC  USEC_PER_SEC
#define MSEC USEC_PER_MSEC

static void test_bucket_width(void **state)
{
	struct tally t;

	tally_init(&t, 10 * SEC);
	assert_int_equal(t.span_usec, 10 * SEC);
	assert_int_equal(t.width_usec, 500 * MSEC);
	tally_init(&t, 21); /* rounded up: 20 buckets of 2 us cover 21 us */
	assert_int_equal(t.width_usec, 2);
	tally_init(&t, 0);
	assert_int_equal(t.span_usec, 1);
	assert_int_equal(t.width_usec, 1);
	tally_init(&t, UINT64_MAX);
	assert_int_equal(t.width_usec, UINT64_MAX / 20 + 1);
}

/* A count added anywhere in bucket 0 is gone exactly when bucket 20 starts. */
static void test_count_leaves_after_span(void **state)
{
	const uint64_t t0 =
		1000 * SEC; /* a bucket boundary, as monotonic clocks do not start at 0 */
	struct tally t;

	tally_init(&t, 10 * SEC);
	tally_add(&t, t0, 0, 1);
	tally_add(&t, t0 + 499999, 0, 2);
	tally_add(&t, t0 + 500 * MSEC, 0, 4);
	assert_int_equal(tally_sum(&t, t0, 0), 7); /* the sum reads with the newest time seen */
	assert_int_equal(tally_sum(&t, t0 + 10 * SEC - 1, 0), 7);
	assert_int_equal(tally_sum(&t, t0 + 10 * SEC, 0), 4);
	assert_int_equal(tally_sum(&t, t0 + 10 * SEC + 499999, 0), 4);
	assert_int_equal(tally_sum(&t, t0 + 10 * SEC + 500 * MSEC, 0), 0);
	assert_int_equal(tally_sum(&t, UINT64_MAX, 0), 0);
	/* Reading does not advance time: the counts are still there at t0. */
	assert_int_equal(tally_sum(&t, t0 + SEC, 0), 7);
}

static void test_slots_independent(void **state)
{
	struct tally t;

	tally_init(&t, 10 * SEC);
	tally_add(&t, 5 * SEC, 0, 3);
	tally_add(&t, 5 * SEC, 1, 5);
	tally_add(&t, 5 * SEC, 2, 100); /* no such slot: ignored */
	assert_int_equal(tally_sum(&t, 5 * SEC, 0), 3);
	assert_int_equal(tally_sum(&t, 5 * SEC, 1), 5);
	assert_int_equal(tally_sum(&t, 5 * SEC, 2), 0);
}

/* A bucket reused a lap later starts from zero, not from the old counts. */
static void test_bucket_reused(void **state)
{
	struct tally t;

	tally_init(&t, 2 * SEC); /* 100 ms buckets */
	tally_add(&t, 0, 0, 9);
	tally_add(&t, 2 * SEC, 0, 1); /* same ring slot, next lap */
	assert_int_equal(tally_sum(&t, 2 * SEC, 0), 1);
	/* Several laps skipped at once. */
	tally_add(&t, 60 * SEC + 50 * MSEC, 1, 2);
	assert_int_equal(tally_sum(&t, 60 * SEC + 50 * MSEC, 0), 0);
	assert_int_equal(tally_sum(&t, 60 * SEC + 50 * MSEC, 1), 2);
}

/* One count per microsecond for a minute: the sum is always the last span. */
static void test_steady_rate(void **state)
{
	struct tally t;

	tally_init(&t, SEC); /* 50 ms buckets */
	for (uint64_t now = 0; now < 60 * SEC; now += 1000) {
		tally_add(&t, now, 0, 1);
		if (now >= SEC && now % (50 * MSEC) == 0)
			/* A bucket has just started: the 19 full ones before it and its first count. */
			assert_int_equal(tally_sum(&t, now, 0), 19 * 50 + 1);
	}
	assert_int_equal(sizeof(t.b) / sizeof(t.b[0]), TALLY_BUCKETS);
}

static void test_time_backwards_clamped(void **state)
{
	struct tally t;

	tally_init(&t, 10 * SEC);
	tally_add(&t, 100 * SEC, 0, 1);
	/* Earlier than seen: counted at 100 s, not in a bucket of a past lap. */
	tally_add(&t, 3 * SEC, 0, 1);
	assert_int_equal(tally_sum(&t, 0, 0), 2);
	assert_int_equal(tally_sum(&t, 110 * SEC - 1, 0), 2);
	assert_int_equal(tally_sum(&t, 110 * SEC, 0), 0);
}

static void test_counts_saturate(void **state)
{
	struct tally t;

	tally_init(&t, 2 * SEC);
	tally_add(&t, 0, 0, UINT32_MAX - 1);
	tally_add(&t, 0, 0, 5);
	assert_int_equal(tally_sum(&t, 0, 0), UINT32_MAX);
	for (uint64_t i = 0; i < TALLY_BUCKETS; i++)
		tally_add(&t, i * 100 * MSEC, 1, UINT32_MAX);
	/* 20 saturated buckets still sum exactly in 64 bits. */
	assert_int_equal(tally_sum(&t, SEC, 1), (uint64_t)TALLY_BUCKETS * UINT32_MAX);
}

static void test_clear(void **state)
{
	struct tally t;

	tally_init(&t, 10 * SEC);
	tally_add(&t, 7 * SEC, 0, 3);
	tally_clear(&t);
	assert_int_equal(t.span_usec, 10 * SEC);
	assert_int_equal(tally_sum(&t, 7 * SEC, 0), 0);
	tally_add(&t, 7 * SEC, 0, 1);
	assert_int_equal(tally_sum(&t, 7 * SEC, 0), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bucket_width),
		cmocka_unit_test(test_count_leaves_after_span),
		cmocka_unit_test(test_slots_independent),
		cmocka_unit_test(test_bucket_reused),
		cmocka_unit_test(test_steady_rate),
		cmocka_unit_test(test_time_backwards_clamped),
		cmocka_unit_test(test_counts_saturate),
		cmocka_unit_test(test_clear),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
