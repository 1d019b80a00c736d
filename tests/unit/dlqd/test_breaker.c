/*
 * Unit tests for the circuit breaker: when it trips, how long it stays open,
 * the one probe, the doubling pause, calls that finish late, reloads, the
 * gentle resume, and an outage replayed tick by tick, all at exact times.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>

#include "common/util.h"
#include "dlqd/breaker.h"

#define SEC  USEC_PER_SEC
#define MSEC USEC_PER_MSEC

/* Monotonic clocks do not start at 0; a bucket boundary keeps counts exact. */
#define T0 (1000 * SEC)

/* The contract's [breaker] example. */
static struct breaker_params params(void)
{
	return (struct breaker_params){
		.failure_ratio = 0.5,
		.min_calls = 20,
		.window_usec = 10 * SEC,
		.open_for_usec = 5 * SEC,
		.max_open_usec = 5 * 60 * SEC,
	};
}

static void record_n(struct breaker *b, uint64_t now, unsigned n, bool tripped)
{
	for (unsigned i = 0; i < n; i++)
		breaker_record(b, now, tripped, false);
}

static void assert_window(const struct breaker *b, uint64_t now, uint64_t calls, uint64_t failed)
{
	struct breaker_info i;

	breaker_info(b, now, &i);
	assert_int_equal(i.calls, calls);
	assert_int_equal(i.failed, failed);
}

/* A breaker of params() opened at T0 by min_calls tripping failures. */
static void open_at_t0(struct breaker *b)
{
	struct breaker_params p = params();

	breaker_init(b, &p);
	record_n(b, T0, 20, true);
	assert_int_equal(breaker_state(b), BREAKER_OPEN);
}

static void test_state_strings(void **state)
{
	assert_string_equal(breaker_state_to_string(BREAKER_CLOSED), "closed");
	assert_string_equal(breaker_state_to_string(BREAKER_OPEN), "open");
	assert_string_equal(breaker_state_to_string(BREAKER_HALF_OPEN), "half_open");
	assert_string_equal(breaker_state_to_string(_BREAKER_STATE_MAX), "unknown");
}

static void test_off(void **state)
{
	struct breaker_params p = params();
	struct breaker b;
	struct breaker_info i;

	p.window_usec = 0;
	breaker_init(&b, &p);
	for (uint64_t k = 0; k < 1000; k++) {
		assert_true(breaker_admit(&b, T0 + k));
		breaker_record(&b, T0 + k, true, k % 2);
	}
	assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
	assert_int_equal(breaker_limit(&b, 64), 64);
	assert_int_equal(breaker_next_change_usec(&b), USEC_INFINITY);
	breaker_info(&b, T0 + 1000, &i);
	assert_int_equal(i.calls, 0);
	assert_int_equal(i.opened_total, 0);
}

static void test_fresh_start_takes_prefetch(void **state)
{
	struct breaker_params p = params();
	struct breaker b;

	breaker_init(&b, &p);
	assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
	assert_true(breaker_admit(&b, T0));
	assert_int_equal(breaker_limit(&b, 64), 64);
	assert_int_equal(breaker_next_change_usec(&b), USEC_INFINITY);
}

static void test_min_calls(void **state)
{
	struct breaker_params p = params();
	struct breaker b;
	struct breaker_info i;

	breaker_init(&b, &p);
	record_n(&b, T0, 19, true);
	assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
	assert_window(&b, T0, 19, 19);
	breaker_record(&b, T0 + MSEC, true, false);
	assert_int_equal(breaker_state(&b), BREAKER_OPEN);
	breaker_info(&b, T0 + SEC, &i);
	assert_int_equal(i.calls, 20);
	assert_int_equal(i.failed, 20);
	assert_int_equal(i.opened_total, 1);
	assert_int_equal(i.failed_probes, 0);
	assert_int_equal(i.open_until_usec, T0 + MSEC + 5 * SEC);
}

/* failed / calls >= 0.5, exactly: 10 of 21 stays closed, 11 of 22 opens. */
static void test_ratio_exact(void **state)
{
	struct breaker_params p = params();
	struct breaker b;

	breaker_init(&b, &p);
	record_n(&b, T0, 11, false);
	record_n(&b, T0, 10, true);
	assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
	assert_window(&b, T0, 21, 10);
	breaker_record(&b, T0, true, false);
	assert_int_equal(breaker_state(&b), BREAKER_OPEN);
	assert_window(&b, T0, 22, 11);

	/* The STATUS= example: 96% of the last 50 calls (48 of 50), not 47 of 49. */
	p.failure_ratio = 0.96;
	breaker_init(&b, &p);
	record_n(&b, T0, 2, false);
	record_n(&b, T0, 47, true);
	assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
	breaker_record(&b, T0, true, false);
	assert_int_equal(breaker_state(&b), BREAKER_OPEN);
	assert_window(&b, T0, 50, 48);
}

static void test_ratio_edges(void **state)
{
	struct breaker_params p = params();
	struct breaker b;

	/* 1: only a window of nothing but failures. */
	p.failure_ratio = 1.0;
	breaker_init(&b, &p);
	breaker_record(&b, T0, false, false);
	record_n(&b, T0, 100, true);
	assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
	breaker_init(&b, &p);
	record_n(&b, T0, 20, true);
	assert_int_equal(breaker_state(&b), BREAKER_OPEN);

	/* NaN and above 1 are 1. */
	p.failure_ratio = NAN;
	breaker_init(&b, &p);
	breaker_record(&b, T0, false, false);
	record_n(&b, T0, 100, true);
	assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
	p.failure_ratio = 7;
	breaker_init(&b, &p);
	breaker_record(&b, T0, false, false);
	record_n(&b, T0, 100, true);
	assert_int_equal(breaker_state(&b), BREAKER_CLOSED);

	/* 0 (and below): the first tripping failure once min_calls are in. */
	p.failure_ratio = -1;
	breaker_init(&b, &p);
	record_n(&b, T0, 100, false);
	assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
	breaker_record(&b, T0, true, false);
	assert_int_equal(breaker_state(&b), BREAKER_OPEN);
	assert_window(&b, T0, 101, 1);

	/* min_calls 0 is 1: a single tripping failure decides. */
	p = params();
	p.min_calls = 0;
	breaker_init(&b, &p);
	breaker_record(&b, T0, true, false);
	assert_int_equal(breaker_state(&b), BREAKER_OPEN);
}

static void test_non_tripping_failures(void **state)
{
	struct breaker_params p = params();
	struct breaker b;

	breaker_init(&b, &p);
	/* NON_RETRYABLE answers are calls that did not fail, for the breaker. */
	record_n(&b, T0, 1000, false);
	assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
	assert_window(&b, T0, 1000, 0);
	/* They dilute the share: 999 tripping failures make 999 of 1999 < 0.5. */
	record_n(&b, T0, 999, true);
	assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
	breaker_record(&b, T0, true, false);
	assert_int_equal(breaker_state(&b), BREAKER_OPEN);
}

/* Calls leave the window after `window` (500 ms buckets for 10 s). */
static void test_window_slides(void **state)
{
	struct breaker_params p = params();
	struct breaker b;

	breaker_init(&b, &p);
	record_n(&b, T0, 19, true);
	breaker_record(&b, T0 + 10 * SEC, true, false);
	assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
	assert_window(&b, T0 + 10 * SEC, 1, 1);

	breaker_init(&b, &p);
	record_n(&b, T0, 19, true);
	breaker_record(&b, T0 + 10 * SEC - 1, true, false);
	assert_int_equal(breaker_state(&b), BREAKER_OPEN);

	/* Old successes stop diluting the share when they leave. */
	breaker_init(&b, &p);
	record_n(&b, T0, 100, false);
	record_n(&b, T0 + 5 * SEC, 19, true);
	assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
	breaker_record(&b, T0 + 10 * SEC, true, false);
	assert_int_equal(breaker_state(&b), BREAKER_OPEN);
	assert_window(&b, T0 + 10 * SEC, 20, 20);
}

static void test_open_then_one_probe(void **state)
{
	struct breaker b;

	open_at_t0(&b);
	assert_int_equal(breaker_next_change_usec(&b), T0 + 5 * SEC);
	assert_int_equal(breaker_limit(&b, 10), 0);
	assert_false(breaker_admit(&b, T0));
	assert_false(breaker_admit(&b, T0 + 5 * SEC - 1));
	assert_int_equal(breaker_state(&b), BREAKER_OPEN);
	assert_true(breaker_admit(&b, T0 + 5 * SEC));
	assert_int_equal(breaker_state(&b), BREAKER_HALF_OPEN);
	assert_int_equal(breaker_limit(&b, 10), 1);
	assert_int_equal(breaker_next_change_usec(&b), USEC_INFINITY);
	/* Exactly one: no time makes a second probe. */
	assert_false(breaker_admit(&b, T0 + 5 * SEC));
	assert_false(breaker_admit(&b, T0 + 3600 * SEC));
	assert_int_equal(breaker_state(&b), BREAKER_HALF_OPEN);
}

static void test_probe_success_closes(void **state)
{
	struct breaker b;
	struct breaker_info i;

	open_at_t0(&b);
	assert_true(breaker_admit(&b, T0 + 6 * SEC));
	breaker_record(&b, T0 + 7 * SEC, false, true);
	assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
	assert_true(breaker_admit(&b, T0 + 7 * SEC));
	breaker_info(&b, T0 + 7 * SEC, &i);
	assert_int_equal(i.calls, 0); /* the window starts afresh */
	assert_int_equal(i.failed_probes, 0);
	assert_int_equal(i.open_until_usec, 0);
	assert_int_equal(i.opened_total, 1);
	/* The next trip pauses for open_for again. */
	record_n(&b, T0 + 8 * SEC, 20, true);
	assert_int_equal(breaker_state(&b), BREAKER_OPEN);
	assert_int_equal(breaker_next_change_usec(&b), T0 + 13 * SEC);
}

/* 5, 10, 20, 40, 80, 160 s, then max_open (300 s) for good. */
static void test_failed_probes_double_the_pause(void **state)
{
	static const uint64_t pauses[] = { 5, 10, 20, 40, 80, 160, 300, 300, 300 };
	struct breaker b;
	struct breaker_info i;
	uint64_t now = T0;

	open_at_t0(&b);
	for (size_t k = 0; k < ARRAY_SIZE(pauses); k++) {
		uint64_t due = now + pauses[k] * SEC;

		assert_int_equal(breaker_next_change_usec(&b), due);
		assert_false(breaker_admit(&b, due - 1));
		assert_true(breaker_admit(&b, due));
		/* The probe takes 2 s to fail; the next pause runs from its failure. */
		now = due + 2 * SEC;
		breaker_record(&b, now, true, true);
		assert_int_equal(breaker_state(&b), BREAKER_OPEN);
		breaker_info(&b, now, &i);
		assert_int_equal(i.failed_probes, k + 1);
		assert_int_equal(i.opened_total, k + 2);
		/* The window that tripped it stays the STATUS= figure. */
		assert_int_equal(i.calls, 20);
		assert_int_equal(i.failed, 20);
	}
	assert_true(breaker_admit(&b, now + 300 * SEC));
	breaker_record(&b, now + 300 * SEC, false, true);
	record_n(&b, now + 300 * SEC, 20, true);
	assert_int_equal(breaker_next_change_usec(&b), now + 305 * SEC);
}

/* Work taken before the trip that finishes after it changes nothing. */
static void test_late_calls_ignored(void **state)
{
	struct breaker b;
	struct breaker_info i;

	open_at_t0(&b);
	record_n(&b, T0 + SEC, 50, false);
	record_n(&b, T0 + SEC, 50, true);
	assert_int_equal(breaker_state(&b), BREAKER_OPEN);
	breaker_info(&b, T0 + SEC, &i);
	assert_int_equal(i.opened_total, 1);
	assert_int_equal(i.open_until_usec, T0 + 5 * SEC);
	assert_int_equal(i.calls, 20);

	assert_true(breaker_admit(&b, T0 + 5 * SEC));
	/* Half-open: a late success does not close it, nor free the probe's slot. */
	breaker_record(&b, T0 + 6 * SEC, false, false);
	assert_int_equal(breaker_state(&b), BREAKER_HALF_OPEN);
	assert_false(breaker_admit(&b, T0 + 6 * SEC));
	breaker_record(&b, T0 + 6 * SEC, true, false);
	assert_int_equal(breaker_state(&b), BREAKER_HALF_OPEN);
	breaker_info(&b, T0 + 6 * SEC, &i);
	assert_int_equal(i.failed_probes, 0);
	assert_int_equal(i.opened_total, 1);
	/* The probe itself still decides. */
	breaker_record(&b, T0 + 7 * SEC, false, true);
	assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
	/* was_probe outside half-open is an ordinary call. */
	breaker_record(&b, T0 + 7 * SEC, true, true);
	assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
	assert_window(&b, T0 + 7 * SEC, 1, 1);
}

static void test_cancel_probe(void **state)
{
	struct breaker b;

	open_at_t0(&b);
	breaker_cancel_probe(&b); /* not half-open: nothing to cancel */
	assert_false(breaker_admit(&b, T0 + SEC));
	assert_true(breaker_admit(&b, T0 + 5 * SEC));
	breaker_cancel_probe(&b);
	assert_int_equal(breaker_state(&b), BREAKER_HALF_OPEN);
	/* A cancelled probe's late outcome is ignored; the next message is the probe. */
	breaker_record(&b, T0 + 6 * SEC, false, true);
	assert_int_equal(breaker_state(&b), BREAKER_HALF_OPEN);
	assert_true(breaker_admit(&b, T0 + 6 * SEC));
	assert_false(breaker_admit(&b, T0 + 6 * SEC));
	breaker_record(&b, T0 + 7 * SEC, true, true);
	assert_int_equal(breaker_state(&b), BREAKER_OPEN);
	assert_int_equal(breaker_next_change_usec(&b), T0 + 17 * SEC);
}

/* A closed breaker after a probe climbs 1 (the probe), 2, 4, ... prefetch. */
static void test_gentle_resume(void **state)
{
	static const uint32_t limits[] = { 1, 2, 4, 8, 16, 32, 50, 50 };
	struct breaker b;
	uint64_t now = T0 + 5 * SEC;

	open_at_t0(&b);
	assert_int_equal(breaker_limit(&b, 50), 0);
	assert_true(breaker_admit(&b, now));
	for (size_t k = 0; k < ARRAY_SIZE(limits); k++) {
		uint32_t lim = breaker_limit(&b, 50);

		assert_int_equal(lim, limits[k]);
		/* Until lim calls succeed, the limit holds. */
		for (uint32_t c = 0; c < lim; c++) {
			assert_int_equal(breaker_limit(&b, 50), lim);
			breaker_record(&b, now, false, k == 0);
		}
		now += 100 * MSEC;
	}
	assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
}

/* Retries never fill the window: failing ones neither trip it nor slow the
 * ramp; succeeding ones climb it like first attempts. */
static void test_retries_not_in_window(void **state)
{
	struct breaker_params p = params();
	struct breaker b;
	uint64_t now = T0;

	breaker_init(&b, &p);
	for (int i = 0; i < 1000; i++)
		breaker_record_retry(&b, true);
	assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
	assert_window(&b, now, 0, 0);
	/* First attempts still trip it, retries mixed in or not. */
	record_n(&b, now, 19, true);
	breaker_record_retry(&b, false);
	assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
	breaker_record(&b, now, true, false);
	assert_int_equal(breaker_state(&b), BREAKER_OPEN);
	/* While open, a late retry is ignored; a retry probe decides. */
	now += 5 * SEC;
	breaker_record_retry(&b, false);
	assert_int_equal(breaker_state(&b), BREAKER_OPEN);
	assert_true(breaker_admit(&b, now));
	breaker_record(&b, now, false, true);
	assert_int_equal(breaker_limit(&b, 50), 2);
	breaker_record_retry(&b, true);
	breaker_record_retry(&b, false);
	assert_int_equal(breaker_limit(&b, 50), 2);
	breaker_record_retry(&b, false);
	assert_int_equal(breaker_limit(&b, 50), 4);
	assert_window(&b, now, 0, 0);
}

static void test_gentle_resume_failure_keeps_limit(void **state)
{
	struct breaker b;

	open_at_t0(&b);
	assert_true(breaker_admit(&b, T0 + 5 * SEC));
	breaker_record(&b, T0 + 5 * SEC, false, true);
	record_n(&b, T0 + 5 * SEC, 2, false);
	assert_int_equal(breaker_limit(&b, 100), 4);
	/* 3 successes, a failure, 3 successes: the round of 4 starts again. */
	record_n(&b, T0 + 5 * SEC, 3, false);
	breaker_record(&b, T0 + 5 * SEC, true, false);
	record_n(&b, T0 + 5 * SEC, 3, false);
	assert_int_equal(breaker_limit(&b, 100), 4);
	breaker_record(&b, T0 + 5 * SEC, false, false);
	assert_int_equal(breaker_limit(&b, 100), 8);
	/* Still a breaker: a failure share over the threshold opens it. */
	record_n(&b, T0 + 6 * SEC, 20, true);
	assert_int_equal(breaker_state(&b), BREAKER_OPEN);
	assert_int_equal(breaker_limit(&b, 100), 0);
	/* The next close ramps from the start again. */
	assert_true(breaker_admit(&b, T0 + 16 * SEC));
	breaker_record(&b, T0 + 16 * SEC, false, true);
	assert_int_equal(breaker_limit(&b, 100), 2);
	/* prefetch below the ramp caps it, prefetch 1 stays 1. */
	assert_int_equal(breaker_limit(&b, 1), 1);
}

/* The ramp ends past 2^31 instead of wrapping (internals set to get there). */
static void test_gentle_resume_saturates(void **state)
{
	struct breaker b;

	open_at_t0(&b);
	assert_true(breaker_admit(&b, T0 + 5 * SEC));
	breaker_record(&b, T0 + 5 * SEC, false, true);
	b.ramp_limit = UINT32_C(1) << 31;
	b.ramp_ok = (UINT32_C(1) << 31) - 1;
	assert_int_equal(breaker_limit(&b, 65535), 65535);
	breaker_record(&b, T0 + 5 * SEC, false, false);
	assert_int_equal(b.ramp_limit, UINT32_MAX);
	assert_int_equal(b.ramp_ok, 0);
	breaker_record(&b, T0 + 5 * SEC, false, false);
	assert_int_equal(b.ramp_limit, UINT32_MAX);
	assert_int_equal(breaker_limit(&b, UINT32_MAX), UINT32_MAX);
}

/* Pauses and their ends clamp instead of wrapping. */
static void test_pause_overflow(void **state)
{
	struct breaker_params p = params();
	struct breaker b;

	p.min_calls = 1;
	p.open_for_usec = UINT64_MAX / 3;
	p.max_open_usec = UINT64_MAX;
	breaker_init(&b, &p);
	breaker_record(&b, 10 * SEC, true, false);
	assert_int_equal(breaker_next_change_usec(&b), 10 * SEC + UINT64_MAX / 3);
	assert_true(breaker_admit(&b, UINT64_MAX - 10));
	breaker_record(&b, UINT64_MAX - 10, true, true);
	/* 2 * open_for from UINT64_MAX - 10 is past the end of time. */
	assert_int_equal(breaker_next_change_usec(&b), UINT64_MAX);
	assert_false(breaker_admit(&b, UINT64_MAX - 1));
	assert_true(breaker_admit(&b, UINT64_MAX));
	breaker_record(&b, UINT64_MAX, true, true);
	/* open_for * 4 overflows: the pause is max_open. */
	assert_int_equal(b.failed_probes, 2);
	assert_int_equal(breaker_next_change_usec(&b), UINT64_MAX);

	/* 70 failed probes: 2^70 is past every cap. */
	p.open_for_usec = 5 * SEC;
	p.max_open_usec = 300 * SEC;
	breaker_init(&b, &p);
	breaker_record(&b, T0, true, false);
	b.failed_probes = 70;
	assert_int_equal(breaker_next_change_usec(&b), T0 + 300 * SEC);
	b.failed_probes = UINT32_MAX;
	assert_true(breaker_admit(&b, T0 + 300 * SEC));
	breaker_record(&b, T0 + 300 * SEC, true, true);
	assert_int_equal(b.failed_probes, UINT32_MAX);
	assert_int_equal(breaker_next_change_usec(&b), T0 + 600 * SEC);

	/* max_open below open_for caps the first pause too. */
	p.max_open_usec = 2 * SEC;
	breaker_init(&b, &p);
	breaker_record(&b, T0, true, false);
	assert_int_equal(breaker_next_change_usec(&b), T0 + 2 * SEC);
}

static void test_reload_thresholds_keep_window(void **state)
{
	struct breaker_params p = params();
	struct breaker b;

	breaker_init(&b, &p);
	record_n(&b, T0, 15, true);
	p.min_calls = 10;
	breaker_set_params(&b, &p);
	assert_int_equal(breaker_state(&b), BREAKER_CLOSED); /* applies from the next call */
	assert_window(&b, T0, 15, 15);
	breaker_record(&b, T0, true, false);
	assert_int_equal(breaker_state(&b), BREAKER_OPEN);
	assert_window(&b, T0, 16, 16);
}

static void test_reload_window_clears(void **state)
{
	struct breaker_params p = params();
	struct breaker b;

	breaker_init(&b, &p);
	record_n(&b, T0, 19, true);
	p.window_usec = 20 * SEC;
	breaker_set_params(&b, &p);
	assert_window(&b, T0, 0, 0);
	breaker_record(&b, T0, true, false);
	assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
	/* The new window is 20 s long. */
	record_n(&b, T0 + 19 * SEC, 19, true);
	assert_int_equal(breaker_state(&b), BREAKER_OPEN);
	assert_window(&b, T0 + 19 * SEC, 20, 20);
}

static void test_reload_pause(void **state)
{
	struct breaker_params p = params();
	struct breaker b;

	open_at_t0(&b);
	/* Shorter: the current pause ends earlier, even in the past. */
	p.open_for_usec = SEC;
	breaker_set_params(&b, &p);
	assert_int_equal(breaker_state(&b), BREAKER_OPEN);
	assert_int_equal(breaker_next_change_usec(&b), T0 + SEC);
	/* Longer. */
	p.open_for_usec = 60 * SEC;
	breaker_set_params(&b, &p);
	assert_int_equal(breaker_next_change_usec(&b), T0 + 60 * SEC);
	/* A lower max_open caps it. */
	p.max_open_usec = 30 * SEC;
	breaker_set_params(&b, &p);
	assert_int_equal(breaker_next_change_usec(&b), T0 + 30 * SEC);
	assert_false(breaker_admit(&b, T0 + 30 * SEC - 1));
	assert_true(breaker_admit(&b, T0 + 30 * SEC));
	/* Half-open survives a reload with its probe out. */
	p.failure_ratio = 0.9;
	breaker_set_params(&b, &p);
	assert_int_equal(breaker_state(&b), BREAKER_HALF_OPEN);
	assert_false(breaker_admit(&b, T0 + 31 * SEC));
	breaker_record(&b, T0 + 31 * SEC, true, true);
	assert_int_equal(breaker_next_change_usec(&b), T0 + 61 * SEC); /* 2 * 60 s, capped */
}

static void test_reload_off_and_on(void **state)
{
	struct breaker_params p = params();
	struct breaker b;
	struct breaker_info i;

	open_at_t0(&b);
	p.window_usec = 0;
	breaker_set_params(&b, &p);
	assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
	assert_true(breaker_admit(&b, T0));
	assert_int_equal(breaker_limit(&b, 64), 64); /* no ramp: the operator turned it off */
	assert_int_equal(breaker_next_change_usec(&b), USEC_INFINITY);
	record_n(&b, T0, 100, true);
	assert_int_equal(breaker_state(&b), BREAKER_CLOSED);

	p.window_usec = 10 * SEC;
	breaker_set_params(&b, &p);
	assert_int_equal(breaker_limit(&b, 64), 64);
	breaker_info(&b, T0, &i);
	assert_int_equal(i.calls, 0);
	assert_int_equal(i.opened_total, 1); /* a counter never goes back */
	record_n(&b, T0, 20, true);
	assert_int_equal(breaker_state(&b), BREAKER_OPEN);
}

/*
 * The outage: 40 jobs/s, every call fails for 60 s, then the
 * downstream recovers. Handler calls take 0 s here, so prefetch does not
 * matter; what does: calls into the outage are min_calls plus one per probe.
 */
static void test_outage(void **state)
{
	const uint64_t tick = 25 * MSEC, outage_end = T0 + 60 * SEC;
	struct breaker_params p = params();
	struct breaker b;
	struct breaker_info i;
	unsigned backlog = 0, calls_in_outage = 0, probes = 0;
	uint64_t now;

	breaker_init(&b, &p);
	for (now = T0; now < T0 + 120 * SEC; now += tick) {
		bool down = now < outage_end;

		backlog++;
		while (backlog > 0) {
			bool probe = breaker_state(&b) != BREAKER_CLOSED;

			if (!breaker_admit(&b, now))
				break;
			backlog--;
			probes += probe;
			calls_in_outage += down;
			breaker_record(&b, now, down, probe);
		}
	}
	/* Trips at T0 + 475 ms; probes at +5, +15, +35 s fail; the one at +75 s closes. */
	assert_int_equal(calls_in_outage, 20 + 3);
	assert_int_equal(probes, 4);
	assert_int_equal(backlog, 0); /* the backlog drains after recovery */
	breaker_info(&b, now, &i);
	assert_int_equal(i.state, BREAKER_CLOSED);
	assert_int_equal(i.opened_total, 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state_strings),
		cmocka_unit_test(test_off),
		cmocka_unit_test(test_fresh_start_takes_prefetch),
		cmocka_unit_test(test_min_calls),
		cmocka_unit_test(test_ratio_exact),
		cmocka_unit_test(test_ratio_edges),
		cmocka_unit_test(test_non_tripping_failures),
		cmocka_unit_test(test_window_slides),
		cmocka_unit_test(test_open_then_one_probe),
		cmocka_unit_test(test_probe_success_closes),
		cmocka_unit_test(test_failed_probes_double_the_pause),
		cmocka_unit_test(test_late_calls_ignored),
		cmocka_unit_test(test_cancel_probe),
		cmocka_unit_test(test_gentle_resume),
		cmocka_unit_test(test_retries_not_in_window),
		cmocka_unit_test(test_gentle_resume_failure_keeps_limit),
		cmocka_unit_test(test_gentle_resume_saturates),
		cmocka_unit_test(test_pause_overflow),
		cmocka_unit_test(test_reload_thresholds_keep_window),
		cmocka_unit_test(test_reload_window_clears),
		cmocka_unit_test(test_reload_pause),
		cmocka_unit_test(test_reload_off_and_on),
		cmocka_unit_test(test_outage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
