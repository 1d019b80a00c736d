/*
 * Unit tests for the stalled-lane rule: a steady non-zero depth over the
 * TTL plus the grace and several readings is a stall; any change, an empty
 * lane, too few readings or too short a time is not; reset starts over.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dlqd/lanewatch.h"

#define SEC   UINT64_C(1000000)
#define TTL   (2 * SEC)
#define QUIET (TTL + LANEWATCH_GRACE_USEC)
#define START (1000 * SEC)

/* Reads depth every step from START until `until` (inclusive of the last
 * step before it), and returns whether any reading said stalled. */
static bool read_steady(struct lane_seen *s, uint64_t depth, uint64_t step, uint64_t until)
{
	bool stalled = false;

	for (uint64_t t = START; t < until; t += step)
		stalled |= lanewatch_read(s, t, depth, TTL);
	return stalled;
}

static void test_steady_depth_is_a_stall(void **state)
{
	struct lane_seen s = { 0 };

	assert_false(read_steady(&s, 7, SEC, START + QUIET));
	assert_true(lanewatch_read(&s, START + QUIET, 7, TTL));
}

static void test_empty_lane_never_stalls(void **state)
{
	struct lane_seen s = { 0 };

	assert_false(read_steady(&s, 0, SEC, START + 10 * QUIET));
}

static void test_a_change_starts_over(void **state)
{
	struct lane_seen s = { 0 };

	assert_false(read_steady(&s, 7, SEC, START + QUIET - SEC));
	/* One message expired (or one entered): the lane moves. */
	assert_false(lanewatch_read(&s, START + QUIET - SEC, 6, TTL));
	assert_false(lanewatch_read(&s, START + QUIET + SEC, 6, TTL));
	assert_false(lanewatch_read(&s, START + 2 * QUIET - 2 * SEC, 6, TTL));
	assert_true(lanewatch_read(&s, START + 2 * QUIET - SEC, 6, TTL));
}

static void test_needs_several_readings(void **state)
{
	struct lane_seen s = { 0 };

	/* Two readings far apart are not enough: the depth may have moved
	 * away and back in between. */
	assert_false(lanewatch_read(&s, START, 5, TTL));
	assert_false(lanewatch_read(&s, START + 10 * QUIET, 5, TTL));
	assert_false(lanewatch_read(&s, START + 11 * QUIET, 5, TTL));
	assert_true(lanewatch_read(&s, START + 12 * QUIET, 5, TTL));
}

static void test_long_lane_waits_its_ttl(void **state)
{
	struct lane_seen s = { 0 };
	uint64_t day = 24 * 3600 * SEC;

	for (int i = 0; i < 10; i++)
		assert_false(lanewatch_read(&s, START + (uint64_t)i * 3600 * SEC, 3, day));
	assert_true(lanewatch_read(&s, START + day + LANEWATCH_GRACE_USEC, 3, day));
	/* A TTL near the top saturates instead of wrapping. */
	assert_false(lanewatch_read(&s, START + 2 * day, 3, UINT64_MAX - 1));
}

static void test_reset_starts_over(void **state)
{
	struct lane_seen s = { 0 };

	assert_false(read_steady(&s, 4, SEC, START + QUIET));
	assert_true(lanewatch_read(&s, START + QUIET, 4, TTL));
	lanewatch_reset(&s, START + QUIET);
	assert_false(lanewatch_read(&s, START + QUIET + SEC, 4, TTL));
	assert_false(lanewatch_read(&s, START + QUIET + 2 * SEC, 4, TTL));
	assert_false(lanewatch_read(&s, START + QUIET + 3 * SEC, 4, TTL));
	assert_true(lanewatch_read(&s, START + 2 * QUIET + 2 * SEC, 4, TTL));
}

static void test_clock_going_back_starts_over(void **state)
{
	struct lane_seen s = { 0 };

	assert_false(read_steady(&s, 4, SEC, START + QUIET));
	assert_false(lanewatch_read(&s, START - SEC, 4, TTL));
	assert_false(lanewatch_read(&s, START + QUIET - 2 * SEC, 4, TTL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_steady_depth_is_a_stall),
		cmocka_unit_test(test_empty_lane_never_stalls),
		cmocka_unit_test(test_a_change_starts_over),
		cmocka_unit_test(test_needs_several_readings),
		cmocka_unit_test(test_long_lane_waits_its_ttl),
		cmocka_unit_test(test_reset_starts_over),
		cmocka_unit_test(test_clock_going_back_starts_over),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
