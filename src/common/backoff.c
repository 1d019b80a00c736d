/*
 * backoff: retry delays and the delay-lane grid, as pure arithmetic.
 *
 * Delays are computed in double and clamped, so no policy and no retry number
 * can overflow: multiplier^(k-1) may become infinite, the cap does not.
 *
 * The lane grid is lane_k = round(LANE_MIN_MS * LANE_STEP^k) for every k
 * whose value stays below LANE_MAX_MS, plus LANE_MAX_MS itself. Lane names
 * are queue names shared by every dlqd on the broker, so the grid is computed
 * in integer fixed point rather than with pow(): the same delay maps to the
 * same lane on any machine and libm.
 */
#include "common/backoff.h"

#include <math.h>

#define DELAY_MAX_USEC (LANE_MAX_MS * USEC_PER_MSEC)

uint64_t backoff_base_usec(const struct policy *p, uint32_t k)
{
	double d;

	if (k < 1)
		k = 1;
	d = (double)p->initial_usec * pow(p->multiplier, (double)(k - 1));
	/* NaN cannot happen for multiplier >= 1, but would fail safe to the cap. */
	if (!(d < (double)p->max_usec))
		return p->max_usec;
	return (uint64_t)llround(d);
}

uint64_t backoff_delay_usec(const struct policy *p, uint32_t k, double u01,
			    uint64_t retry_after_usec)
{
	double base = (double)backoff_base_usec(p, k);
	double lo = 1.0 + p->jitter_min, hi = 1.0 + p->jitter_max, f, d;
	uint64_t delay;

	if (!(u01 >= 0))
		u01 = 0;
	if (u01 > 1)
		u01 = 1;
	/* Clamped so rounding can never leave [base*(1+min), base*(1+max)]. */
	f = 1.0 + p->jitter_min + u01 * (p->jitter_max - p->jitter_min);
	f = f < lo ? lo : f > hi ? hi : f;
	d = base * f;
	delay = d >= (double)DELAY_MAX_USEC ? DELAY_MAX_USEC : (uint64_t)llround(d);
	/* Retry-After only ever raises the delay: the downstream knows best when to come back. */
	if (retry_after_usec > delay)
		delay = retry_after_usec;
	/* No lane holds a message longer, so a longer delay would be a lie. */
	return MIN(delay, DELAY_MAX_USEC);
}

/*
 * Walks the grid upwards in 64.64 fixed point (x_{k+1} = x_k * NUM / DEN),
 * stopping at the first lane >= delay; *below is the lane before it.
 * At most ~400 steps for a 7-day range.
 */
static uint64_t lane_at_or_above(uint64_t delay_ms_ceil, uint64_t *below)
{
	unsigned __int128 x = (unsigned __int128)LANE_MIN_MS << 64;
	const unsigned __int128 half = (unsigned __int128)1 << 63;
	uint64_t prev = LANE_MIN_MS, lane = LANE_MIN_MS;

	for (;;) {
		lane = (uint64_t)((x + half) >> 64);
		if (lane >= LANE_MAX_MS) {
			lane = LANE_MAX_MS;
			break;
		}
		if (lane >= delay_ms_ceil)
			break;
		prev = lane;
		x = x * LANE_STEP_NUM / LANE_STEP_DEN;
	}
	*below = prev;
	return lane;
}

uint64_t backoff_lane_ms(uint64_t delay_usec)
{
	uint64_t lo, hi;

	if (delay_usec <= LANE_MIN_MS * USEC_PER_MSEC)
		return LANE_MIN_MS;
	if (delay_usec >= LANE_MAX_MS * USEC_PER_MSEC)
		return LANE_MAX_MS;
	hi = lane_at_or_above((delay_usec + USEC_PER_MSEC - 1) / USEC_PER_MSEC, &lo);
	/*
	 * lo < delay <= hi: pick the nearer in ratio, delay/lo against hi/delay,
	 * compared exactly as delay^2 against lo*hi (ties go to the shorter).
	 */
	unsigned __int128 d2 = (unsigned __int128)delay_usec * delay_usec;
	unsigned __int128 lh = (unsigned __int128)(lo * USEC_PER_MSEC) * (hi * USEC_PER_MSEC);

	return d2 <= lh ? lo : hi;
}
