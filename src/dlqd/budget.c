/*
 * budget: decides whether a retry may call the downstream now, from the
 * first attempts and retries handled in the last budget_window. The
 * contract, and what 0 means for each key, is in budget.h.
 *
 * First attempts are counted whenever budget_window > 0, even with no floor
 * (the budget off): a reload that turns the budget on then starts from the
 * real share instead of an empty window. Retries are counted only when the
 * budget is on, since only then are they spent.
 */
#include "dlqd/budget.h"

#include <math.h>

#include "common/util.h"

#define MICRO	   UINT64_C(1000000)
#define RATIO_MAX  1e6
#define FLOOR_MAX  1e9
#define SLOT_FIRST 0
#define SLOT_RETRY 1

/* x in millionths, NaN and negatives 0, above max max: exact enough for config values. */
static uint64_t micro_units(double x, double max)
{
	if (!(x > 0))
		return 0;
	return (uint64_t)llround(MIN(x, max) * (double)MICRO);
}

static bool enabled(const struct budget *b)
{
	return b->p.window_usec > 0 && b->floor_micro_per_s > 0;
}

static bool counting(const struct budget *b)
{
	return b->p.window_usec > 0;
}

void budget_init(struct budget *b, const struct budget_params *p)
{
	*b = (struct budget){ 0 };
	tally_init(&b->t, p->window_usec);
	budget_set_params(b, p);
}

void budget_set_params(struct budget *b, const struct budget_params *p)
{
	if (p->window_usec != b->t.span_usec)
		tally_init(&b->t, p->window_usec);
	b->p = *p;
	b->ratio_ppm = micro_units(p->ratio, RATIO_MAX);
	b->floor_micro_per_s = micro_units(p->min_per_second, FLOOR_MAX);
}

/*
 * ratio x first + floor x window, in millionths of a retry: at most
 * 10^12 x 20 x 2^32 + 10^15 x 2^64 / 10^6, well inside 128 bits.
 */
static uint64_t allowed(const struct budget *b, uint64_t first)
{
	unsigned __int128 micro =
		(unsigned __int128)b->ratio_ppm * first +
		(unsigned __int128)b->floor_micro_per_s * b->p.window_usec / MICRO;

	micro /= MICRO;
	return micro > UINT64_MAX ? UINT64_MAX : (uint64_t)micro;
}

void budget_first_attempt(struct budget *b, uint64_t now)
{
	if (counting(b))
		tally_add(&b->t, now, SLOT_FIRST, 1);
}

bool budget_try_retry(struct budget *b, uint64_t now)
{
	if (!enabled(b))
		return true;
	if (tally_sum(&b->t, now, SLOT_RETRY) < allowed(b, tally_sum(&b->t, now, SLOT_FIRST))) {
		tally_add(&b->t, now, SLOT_RETRY, 1);
		return true;
	}
	if (b->deferred_total < UINT64_MAX)
		b->deferred_total++;
	return false;
}

void budget_info(const struct budget *b, uint64_t now, struct budget_info *out)
{
	*out = (struct budget_info){
		.enabled = enabled(b),
		.allowed = UINT64_MAX,
		.deferred_total = b->deferred_total,
	};
	if (counting(b))
		out->first_attempts = tally_sum(&b->t, now, SLOT_FIRST);
	if (out->enabled) {
		out->retries = tally_sum(&b->t, now, SLOT_RETRY);
		out->allowed = allowed(b, out->first_attempts);
	}
}
