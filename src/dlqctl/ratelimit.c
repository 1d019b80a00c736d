/*
 * ratelimit: token bucket. Tokens are refilled lazily from the elapsed
 * time at each take, so no timer is needed.
 */
#include "dlqctl/ratelimit.h"

#include <math.h>

void ratelimit_init(struct ratelimit *rl, double rate, double burst, uint64_t now_usec)
{
	rl->rate = rate > 0 ? rate : 1;
	rl->burst = burst >= 1 ? burst : 1;
	rl->tokens = 1;
	rl->last_usec = now_usec;
}

uint64_t ratelimit_take(struct ratelimit *rl, uint64_t now_usec)
{
	double wait;

	/* A clock that goes back (it should not: monotonic) refills nothing. */
	if (now_usec > rl->last_usec) {
		rl->tokens += (double)(now_usec - rl->last_usec) * rl->rate / (double)USEC_PER_SEC;
		/* Idle time banks at most burst tokens; the extra 1 µs worth keeps
		 * what a rounded-up wait overshot, or high rates would drift low. */
		double cap = rl->burst + rl->rate / (double)USEC_PER_SEC;
		if (rl->tokens > cap)
			rl->tokens = cap;
		rl->last_usec = now_usec;
	}
	if (rl->tokens >= 1) {
		rl->tokens -= 1;
		return 0;
	}
	wait = ceil((1 - rl->tokens) * (double)USEC_PER_SEC / rl->rate);
	return wait < 1 ? 1 : (uint64_t)wait;
}
