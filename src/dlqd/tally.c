/*
 * tally: a ring of time buckets holding event counts, so a sliding window
 * costs the same memory at 1 event a minute and at 100 000 a second. The
 * contract (bucket width, how long a count stays, clamped time and counts)
 * is in tally.h.
 */
#include "dlqd/tally.h"

#include <string.h>

#include "common/util.h"

void tally_init(struct tally *t, uint64_t span_usec)
{
	span_usec = MAX(span_usec, UINT64_C(1));
	*t = (struct tally){
		.span_usec = span_usec,
		/* Rounded up so the buckets cover the whole span; no overflow for any span. */
		.width_usec = span_usec / TALLY_BUCKETS + (span_usec % TALLY_BUCKETS != 0),
	};
}

void tally_clear(struct tally *t)
{
	tally_init(t, t->span_usec);
}

/* The bucket number of now, never older than the newest already seen. */
static uint64_t epoch_of(const struct tally *t, uint64_t now)
{
	return MAX(now / t->width_usec, t->newest_epoch);
}

void tally_add(struct tally *t, uint64_t now, unsigned slot, uint32_t n)
{
	uint64_t e = epoch_of(t, now);
	struct tally_bucket *b = &t->b[e % TALLY_BUCKETS];

	if (slot >= TALLY_SLOTS)
		return;
	t->newest_epoch = e;
	if (b->epoch != e) {
		/* The bucket last held counts of TALLY_BUCKETS or more buckets ago. */
		memset(b->n, 0, sizeof(b->n));
		b->epoch = e;
	}
	b->n[slot] = n > UINT32_MAX - b->n[slot] ? UINT32_MAX : b->n[slot] + n;
}

uint64_t tally_sum(const struct tally *t, uint64_t now, unsigned slot)
{
	uint64_t e = epoch_of(t, now), sum = 0;

	if (slot >= TALLY_SLOTS)
		return 0;
	for (size_t i = 0; i < TALLY_BUCKETS; i++)
		/* Every stored epoch is <= e, so the subtraction cannot wrap. */
		if (e - t->b[i].epoch < TALLY_BUCKETS)
			sum += t->b[i].n[slot];
	return sum;
}
