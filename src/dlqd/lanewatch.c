/*
 * lanewatch: the stalled-lane rule (include/dlqd/lanewatch.h). Pure: the
 * caller reads the depths and the clock.
 */
#include "dlqd/lanewatch.h"

void lanewatch_reset(struct lane_seen *s, uint64_t now_usec)
{
	*s = (struct lane_seen){ .depth = 0, .since_usec = now_usec };
}

bool lanewatch_read(struct lane_seen *s, uint64_t now_usec, uint64_t depth, uint64_t ttl_usec)
{
	if (depth == 0 || depth != s->depth || now_usec < s->since_usec) {
		*s = (struct lane_seen){ .depth = depth, .since_usec = now_usec };
		return false;
	}
	if (s->same < UINT32_MAX)
		s->same++;
	/* Saturate: a 7-day lane plus the grace fits, but a clock near the top
	 * must not wrap into a verdict. */
	uint64_t quiet = ttl_usec > UINT64_MAX - LANEWATCH_GRACE_USEC
				 ? UINT64_MAX
				 : ttl_usec + LANEWATCH_GRACE_USEC;
	return s->same >= LANEWATCH_SAME_READINGS && now_usec - s->since_usec >= quiet;
}
