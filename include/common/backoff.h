/*
 * backoff: retry delays and delay lanes, as pure arithmetic.
 *
 * The delay before retry number k (k >= 1) is
 *     min(max, initial * multiplier^(k-1)) * (1 + u),  u in [jitter_min, jitter_max]
 * raised to Retry-After when the downstream asked for longer.
 *
 * Delay lanes are queues with a queue-level TTL. A delay is rounded to the
 * nearest lane on a geometric grid, so the lane fires within LANE_STEP/2 of
 * the computed delay (about 2%), and bursts keep their jitter because each
 * lane is FIFO with one TTL.
 */
#pragma once

#include <stdint.h>

#include "common/taxonomy.h"

/* Shortest lane; shorter delays use it (the contract allows +100 ms). */
#define LANE_MIN_MS UINT64_C(100)
/* Ratio between neighbouring lanes, 1.04: an exact fraction, so the lane
 * grid can be computed in integers (backoff.c). */
#define LANE_STEP_NUM 26
#define LANE_STEP_DEN 25
#define LANE_STEP     ((double)LANE_STEP_NUM / LANE_STEP_DEN)
/* Longest lane: 7 days. Longer delays are capped to it. */
#define LANE_MAX_MS (UINT64_C(7) * 24 * 3600 * 1000)

/* The un-jittered delay of retry k. */
uint64_t backoff_base_usec(const struct policy *p, uint32_t k);
/*
 * The jittered delay of retry k; u01 is uniform in [0, 1) (the caller draws it,
 * so tests can pin it). retry_after_usec of 0 means none.
 */
uint64_t backoff_delay_usec(const struct policy *p, uint32_t k, double u01,
			    uint64_t retry_after_usec);
/* The lane (its TTL in ms) that best approximates delay_usec. */
uint64_t backoff_lane_ms(uint64_t delay_usec);
