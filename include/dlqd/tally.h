/*
 * tally: counts of events over the last `span` of monotonic time, in fixed
 * memory whatever the event rate. The shared window of the circuit breaker
 * (calls, tripping failures) and the retry budget (first attempts, retries).
 * Pure: time is passed in, nothing here reads a clock.
 *
 * The span is cut into TALLY_BUCKETS buckets of width ceil(span /
 * TALLY_BUCKETS) (at least 1 us). A count added at time t belongs to bucket
 * t / width and is part of every sum until the bucket TALLY_BUCKETS - 1 after
 * it ends: it stays between span - width and span (exactly span when width
 * divides it), so the window is the last `span` to within one bucket.
 *
 * Time never runs backwards here: a `now` older than the newest one seen is
 * taken as that newest one, so a caller's mistake can neither bring expired
 * counts back nor write into a bucket that was reused. Per-bucket counts
 * saturate at UINT32_MAX; sums are uint64_t and cannot overflow.
 */
#pragma once

#include <stdint.h>

#define TALLY_BUCKETS 20
#define TALLY_SLOTS   2

struct tally_bucket {
	uint64_t epoch; /* now / width of the counts below */
	uint32_t n[TALLY_SLOTS];
};

struct tally {
	uint64_t span_usec;
	uint64_t width_usec;
	uint64_t newest_epoch;
	struct tally_bucket b[TALLY_BUCKETS];
};

/* Empty tally over span_usec (0 is taken as 1 us; callers treat 0 as "off"). */
void tally_init(struct tally *t, uint64_t span_usec);
/* Forgets every count, keeps the span. */
void tally_clear(struct tally *t);
/* Adds n events of slot (< TALLY_SLOTS) at now. */
void tally_add(struct tally *t, uint64_t now, unsigned slot, uint32_t n);
/* Events of slot in the window that ends at now (read-only: now is not kept). */
uint64_t tally_sum(const struct tally *t, uint64_t now, unsigned slot);
