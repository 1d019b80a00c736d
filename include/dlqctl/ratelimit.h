/*
 * ratelimit: a token bucket that paces dlqctl replay to `--rate N`
 * messages per second. Pure: the caller passes the monotonic clock, so the
 * unit tests drive it with a fake one.
 */
#pragma once

#include <stdint.h>

#include "common/util.h"

struct ratelimit {
	double rate;   /* tokens per second, > 0 */
	double burst;  /* bucket size, >= 1 */
	double tokens; /* available now */
	uint64_t last_usec;
};

/*
 * Starts with one token, so the first message goes at once and N messages
 * take (N - 1) / rate seconds with burst 1: the cap holds over any window
 * longer than burst / rate.
 */
void ratelimit_init(struct ratelimit *rl, double rate, double burst, uint64_t now_usec);

/* Takes a token and returns 0, or returns the µs until one is available. */
uint64_t ratelimit_take(struct ratelimit *rl, uint64_t now_usec);
