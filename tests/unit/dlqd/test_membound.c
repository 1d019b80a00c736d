/*
 * Unit tests for the body-memory bound: the threshold, pausing exactly
 * above it and resuming at it, one transition per crossing, the worst case
 * that proves the total stays under the limit, reloads, and clamping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dlqd/membound.h"

#define MIB (UINT64_C(1) << 20)

static void test_threshold(void **state)
{
	struct membound m;

	membound_init(&m, 8 * MIB, 1 * MIB);
	assert_int_equal(membound_threshold(&m), 7 * MIB);
	membound_init(&m, 1 * MIB, 1 * MIB);
	assert_int_equal(membound_threshold(&m), 0);
	/* Not allowed by the config, but never wraps. */
	membound_init(&m, 1 * MIB, 2 * MIB);
	assert_int_equal(membound_threshold(&m), 0);
}

static void test_pause_above_resume_at(void **state)
{
	struct membound m;

	membound_init(&m, 8 * MIB, 1 * MIB);
	assert_int_equal(membound_add(&m, 7 * MIB), MEMBOUND_SAME); /* at: still reading */
	assert_false(m.paused);
	assert_int_equal(membound_add(&m, 1), MEMBOUND_PAUSE);
	assert_true(m.paused);
	/* Only the crossing reports. */
	assert_int_equal(membound_add(&m, 100), MEMBOUND_SAME);
	assert_int_equal(membound_release(&m, 100), MEMBOUND_SAME);
	assert_int_equal(membound_release(&m, 1), MEMBOUND_RESUME);
	assert_false(m.paused);
	assert_int_equal(m.held, 7 * MIB);
	assert_int_equal(membound_release(&m, 7 * MIB), MEMBOUND_SAME);
	assert_int_equal(m.held, 0);
}

/* A reader that stops between deliveries when told, fed the largest bodies
 * it may hold, never holds more than the limit. */
static void test_worst_case_total(void **state)
{
	const uint64_t sizes[] = { 1 * MIB, 1, 512 * 1024, 1 * MIB - 1, 3, 1 * MIB };
	struct membound m;
	uint64_t peak = 0;

	for (uint64_t limit = 1 * MIB; limit <= 8 * MIB; limit += MIB / 2) {
		membound_init(&m, limit, 1 * MIB);
		for (unsigned i = 0; i < 1000; i++) {
			uint64_t sz = sizes[i % 6];
			if (m.paused) {
				/* Something finishes: a body of that size goes. */
				membound_release(&m, m.held >= sz ? sz : m.held);
				continue;
			}
			membound_add(&m, sz);
			assert_true(m.held <= limit);
			if (m.held > peak)
				peak = m.held;
		}
	}
	assert_true(peak > 7 * MIB); /* the loop did fill up */
}

/* limit == max_message: one delivery at a time, never a deadlock. */
static void test_one_at_a_time(void **state)
{
	struct membound m;

	membound_init(&m, 1 * MIB, 1 * MIB);
	assert_int_equal(membound_add(&m, 0), MEMBOUND_SAME);
	assert_int_equal(membound_add(&m, 10), MEMBOUND_PAUSE);
	assert_int_equal(membound_release(&m, 10), MEMBOUND_RESUME);
}

static void test_reload(void **state)
{
	struct membound m;

	membound_init(&m, 8 * MIB, 1 * MIB);
	assert_int_equal(membound_add(&m, 5 * MIB), MEMBOUND_SAME);
	assert_int_equal(membound_set_limits(&m, 4 * MIB, 1 * MIB), MEMBOUND_PAUSE);
	assert_int_equal(membound_set_limits(&m, 4 * MIB, 1 * MIB), MEMBOUND_SAME);
	assert_int_equal(membound_set_limits(&m, 16 * MIB, 1 * MIB), MEMBOUND_RESUME);
	assert_int_equal(m.held, 5 * MIB);
}

static void test_clamps(void **state)
{
	struct membound m;

	membound_init(&m, UINT64_MAX, 0);
	assert_int_equal(membound_add(&m, UINT64_MAX - 1), MEMBOUND_SAME);
	assert_int_equal(membound_add(&m, 10), MEMBOUND_SAME);
	assert_int_equal(m.held, UINT64_MAX);
	membound_init(&m, 8 * MIB, 1 * MIB);
	membound_add(&m, 5);
	assert_int_equal(membound_release(&m, 50), MEMBOUND_SAME);
	assert_int_equal(m.held, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_threshold),
		cmocka_unit_test(test_pause_above_resume_at),
		cmocka_unit_test(test_worst_case_total),
		cmocka_unit_test(test_one_at_a_time),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_clamps),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
