/*
 * budget: the retry budget, so retries cannot swamp a struggling downstream
 * on top of the new work. Over the last budget_window, the retries handled
 * may be at most budget_ratio x the first attempts handled in it, plus
 * budget_min_per_second x the window in seconds, rounded down. Pure: every
 * call takes now, microseconds of CLOCK_MONOTONIC; no clock, no logging.
 *
 * What 0 means, key by key (design.md puts "0 = no budget" on the floor's
 * line, and a budget without a floor would starve):
 *  - budget_min_per_second = 0 (or NaN, or below 1e-6): no budget, every
 *    retry is admitted. A budget with a floor of 0 would hold every retry
 *    as soon as first attempts stop (a quiet pipeline, or draining a retry
 *    backlog after the producers stopped): deferred retries would circle
 *    the delay lanes forever, and the contract says they are handled later.
 *  - budget_window = 0: no budget either (nothing to count over).
 *  - budget_ratio = 0 (or NaN, or negative): the floor alone is the budget.
 *    Above 10^6 it is 10^6. The floor is capped at 10^9 per second.
 *
 * The sums use the tally (tally.h): the window is the last budget_window to
 * within 1/20 of it. Shares are kept in millionths, so 0.29 x 100 first
 * attempts is 29 retries, not 28.999... -> 28; every product is clamped.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "dlqd/tally.h"

/* The [retry] budget_* keys. */
struct budget_params {
	double ratio;	       /* retries per first attempt */
	double min_per_second; /* the floor; 0: no budget */
	uint64_t window_usec;  /* 0: no budget */
};

struct budget {
	struct budget_params p;
	uint64_t ratio_ppm;	    /* ratio in millionths */
	uint64_t floor_micro_per_s; /* min_per_second in millionths of a retry */
	struct tally t;		    /* slot 0: first attempts, slot 1: retries handled */
	uint64_t deferred_total;    /* dlqd_retry_budget_deferred_total */
};

struct budget_info {
	bool enabled;
	uint64_t first_attempts; /* in the window */
	uint64_t retries;	 /* handled in the window */
	uint64_t allowed;	 /* retries the window allows now; UINT64_MAX when off */
	uint64_t deferred_total;
};

void budget_init(struct budget *b, const struct budget_params *p);
/*
 * Reload: every key may change. Counts are kept unless budget_window
 * changes (they cannot be re-bucketed: the window starts empty, so the floor
 * alone applies until it fills). deferred_total is never reset.
 */
void budget_set_params(struct budget *b, const struct budget_params *p);

/* A first attempt (attempt == 0) is about to be handled. */
void budget_first_attempt(struct budget *b, uint64_t now);
/*
 * A retry (attempt > 0) arrived. true: handle it now (it is counted as
 * spent). false: the budget is spent; the caller re-delays it without a
 * handler call and without counting an attempt, and deferred_total has been
 * incremented. Ask the breaker first: a retry admitted here is spent even if
 * the caller then does not call the handler.
 */
bool budget_try_retry(struct budget *b, uint64_t now);

void budget_info(const struct budget *b, uint64_t now, struct budget_info *out);
