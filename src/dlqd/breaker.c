/*
 * breaker: whether dlqd may take new work from the main queue, and how much
 * at once, given how the downstream's recent handler calls ended.
 *
 *  - window = 0 turns the breaker off: always CLOSED, admits everything,
 *    limit = prefetch, records nothing.
 *  - Retries (messages that failed before) are not counted in the window,
 *    only first attempts and the probe: retries are the sample of messages
 *    that already failed, so a handful that fail whatever the downstream's
 *    state (the tail of a workload: exhausting retries, nothing new) would
 *    keep the share over the threshold and the breaker open on their own,
 *    each probe burning one of their attempts. A retry that succeeds still
 *    counts toward the gentle resume (breaker_record_retry()); one that
 *    fails neither trips nor slows it.
 *  - CLOSED: every finished handler call is counted in a tally over the last
 *    `window` (tally.h: 20 buckets, the window to within window/20), and so
 *    is every tripping failure. Success and non-tripping failures (the caller
 *    decides which class trips) count as calls that did not fail. It trips
 *    when a tripping failure lands and the window then holds calls >=
 *    min_calls (0 is taken as 1) and failed / calls >= failure_ratio,
 *    compared exactly in millionths (ratio NaN or above 1 is 1, below 0 is 0;
 *    a window without a tripping failure never trips, even at ratio 0).
 *  - Tripping: OPEN from now, for open_for; the window that tripped it is
 *    kept for STATUS= (breaker_info()) and the live window is cleared.
 *    opened_total counts every trip and every reopening after a failed probe.
 *  - OPEN admits nothing until the pause has passed: pause = open_for *
 *    2^failed_probes, capped at max_open (and at UINT64_MAX, the sum too).
 *    The first breaker_admit() at or after that turns it HALF_OPEN and
 *    admits one message, the probe.
 *  - HALF_OPEN admits nothing while the probe is out. Its outcome, recorded
 *    with was_probe: no tripping failure -> CLOSED, window cleared, pause
 *    back to open_for, gentle resume starts; tripping failure -> OPEN again
 *    from now, failed_probes + 1, so the pause doubles. A probe that will
 *    never be called (given back to the broker, undecodable) is cancelled
 *    with breaker_cancel_probe(): the next breaker_admit() takes another.
 *  - Calls recorded while OPEN, and calls without was_probe while HALF_OPEN,
 *    were taken before the trip and finished after it: they are ignored.
 *    Counting them would let a slow in-flight success close the breaker
 *    without a probe, or a slow failure lengthen the pause of an outage that
 *    is already known. was_probe outside HALF_OPEN is an ordinary call.
 *  - Gentle resume: after a probe closes it, breaker_limit() climbs from the
 *    probe's 1: 2, 4, 8, ... up to prefetch, doubling each time as many calls
 *    as the current limit finished in a row without a tripping failure. A
 *    tripping failure keeps the limit and restarts that count: whether the
 *    service is down again is the window's decision (it trips as usual), the
 *    ramp only sets how fast the load comes back. Past 2^31 the ramp ends.
 *    breaker_limit(): OPEN 0, HALF_OPEN 1, CLOSED MIN(ramp, prefetch).
 *  - Reload (breaker_set_params()) keeps the state. A new window size
 *    clears the window (counts cannot be re-bucketed); ratio and min_calls
 *    apply from the next recorded call; new open_for / max_open apply to
 *    the current pause at once (it ends at opened_at + the new pause, which
 *    may already have passed). window = 0 turns it off: CLOSED, no ramp.
 */
#include "dlqd/breaker.h"

#include <math.h>

#include "common/util.h"

#define PPM	      UINT32_C(1000000)
#define RAMP_NONE     UINT32_MAX
#define SLOT_CALLS    0
#define SLOT_TRIPPING 1

static bool enabled(const struct breaker *b)
{
	return b->p.window_usec > 0;
}

static uint32_t ratio_ppm(double r)
{
	if (!(r <= 1.0)) /* NaN too: only a window of failures trips */
		return PPM;
	if (!(r > 0.0))
		return 0;
	return (uint32_t)llround(r * PPM);
}

static uint64_t pause_usec(const struct breaker *b)
{
	uint64_t d = b->p.open_for_usec;
	uint32_t k = b->failed_probes;

	/* open_for * 2^k without overflow: anything past max_open is max_open. */
	if (k >= 64 || d > (UINT64_MAX >> k))
		d = UINT64_MAX;
	else
		d <<= k;
	return MIN(d, b->p.max_open_usec);
}

static uint64_t open_until(const struct breaker *b)
{
	uint64_t d = pause_usec(b);

	return b->opened_at_usec > UINT64_MAX - d ? UINT64_MAX : b->opened_at_usec + d;
}

static void set_closed(struct breaker *b, uint32_t ramp)
{
	b->state = BREAKER_CLOSED;
	b->failed_probes = 0;
	b->probe_out = false;
	b->ramp_limit = ramp;
	b->ramp_ok = 0;
	tally_clear(&b->calls);
}

static void set_open(struct breaker *b, uint64_t now)
{
	b->state = BREAKER_OPEN;
	b->opened_at_usec = now;
	b->probe_out = false;
	b->opened_total++;
	tally_clear(&b->calls);
}

void breaker_init(struct breaker *b, const struct breaker_params *p)
{
	*b = (struct breaker){ .p = *p, .ratio_ppm = ratio_ppm(p->failure_ratio) };
	tally_init(&b->calls, p->window_usec);
	set_closed(b, RAMP_NONE);
}

void breaker_set_params(struct breaker *b, const struct breaker_params *p)
{
	bool new_window = p->window_usec != b->p.window_usec;

	b->p = *p;
	b->ratio_ppm = ratio_ppm(p->failure_ratio);
	if (!enabled(b))
		set_closed(b, RAMP_NONE);
	if (new_window)
		tally_init(&b->calls, p->window_usec);
}

bool breaker_admit(struct breaker *b, uint64_t now)
{
	if (!enabled(b))
		return true;
	switch (b->state) {
	case BREAKER_OPEN:
		if (now < open_until(b))
			return false;
		b->state = BREAKER_HALF_OPEN;
		b->probe_out = true;
		return true;
	case BREAKER_HALF_OPEN:
		if (b->probe_out)
			return false;
		b->probe_out = true;
		return true;
	default:
		return true;
	}
}

/* Gentle resume: one more call at the current limit; a full round doubles it. */
static void ramp_count(struct breaker *b, bool tripped)
{
	if (b->ramp_limit == RAMP_NONE)
		return;
	if (tripped) {
		b->ramp_ok = 0;
		return;
	}
	if (++b->ramp_ok < b->ramp_limit)
		return;
	b->ramp_limit = b->ramp_limit > UINT32_MAX / 2 ? RAMP_NONE : b->ramp_limit * 2;
	b->ramp_ok = 0;
}

static void record_closed(struct breaker *b, uint64_t now, bool tripped)
{
	uint64_t calls, failed;

	ramp_count(b, tripped);
	tally_add(&b->calls, now, SLOT_CALLS, 1);
	if (!tripped)
		return;
	tally_add(&b->calls, now, SLOT_TRIPPING, 1);
	calls = tally_sum(&b->calls, now, SLOT_CALLS);
	failed = tally_sum(&b->calls, now, SLOT_TRIPPING);
	/* Both sides stay below 2^64: calls <= 20 * 2^32, ratio <= 10^6. */
	if (calls < MAX(b->p.min_calls, UINT32_C(1)) || failed * PPM < calls * b->ratio_ppm)
		return;
	b->trip_calls = calls;
	b->trip_failed = failed;
	b->failed_probes = 0;
	set_open(b, now);
}

void breaker_record(struct breaker *b, uint64_t now, bool tripped, bool was_probe)
{
	if (!enabled(b))
		return;
	switch (b->state) {
	case BREAKER_CLOSED:
		record_closed(b, now, tripped);
		return;
	case BREAKER_HALF_OPEN:
		if (!was_probe || !b->probe_out)
			return; /* in flight since before the trip */
		if (!tripped) {
			set_closed(b, 2); /* the probe was the round of 1 */
			return;
		}
		if (b->failed_probes < UINT32_MAX)
			b->failed_probes++;
		set_open(b, now);
		return;
	default:
		return; /* OPEN: in flight since before the trip */
	}
}

void breaker_record_retry(struct breaker *b, bool tripped)
{
	if (enabled(b) && b->state == BREAKER_CLOSED && !tripped)
		ramp_count(b, false);
}

void breaker_cancel_probe(struct breaker *b)
{
	if (b->state == BREAKER_HALF_OPEN)
		b->probe_out = false;
}

uint32_t breaker_limit(const struct breaker *b, uint32_t prefetch)
{
	if (!enabled(b))
		return prefetch;
	switch (b->state) {
	case BREAKER_OPEN:
		return 0;
	case BREAKER_HALF_OPEN:
		return 1;
	default:
		return MIN(b->ramp_limit, prefetch);
	}
}

uint64_t breaker_next_change_usec(const struct breaker *b)
{
	if (!enabled(b) || b->state != BREAKER_OPEN)
		return USEC_INFINITY;
	return open_until(b);
}

enum breaker_state breaker_state(const struct breaker *b)
{
	return b->state;
}

void breaker_info(const struct breaker *b, uint64_t now, struct breaker_info *out)
{
	*out = (struct breaker_info){
		.state = b->state,
		.calls = b->trip_calls,
		.failed = b->trip_failed,
		.failed_probes = b->failed_probes,
		.opened_total = b->opened_total,
	};
	if (b->state == BREAKER_OPEN)
		out->open_until_usec = open_until(b);
	if (b->state == BREAKER_CLOSED) {
		out->calls = tally_sum(&b->calls, now, SLOT_CALLS);
		out->failed = tally_sum(&b->calls, now, SLOT_TRIPPING);
	}
}

const char *breaker_state_to_string(enum breaker_state s)
{
	switch (s) {
	case BREAKER_CLOSED:
		return "closed";
	case BREAKER_OPEN:
		return "open";
	case BREAKER_HALF_OPEN:
		return "half_open";
	default:
		return "unknown";
	}
}
