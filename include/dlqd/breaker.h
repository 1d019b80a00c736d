/*
 * breaker: the circuit breaker that stops dlqd from taking new work while
 * the downstream is known to be down, and the gentle resume after it comes
 * back. A state machine over plain structs: every call takes now, microseconds
 * of CLOCK_MONOTONIC; nothing here reads a clock, logs or does I/O. The whole
 * contract is in breaker.c's opening comment.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "dlqd/tally.h"

/* The [breaker] keys. */
struct breaker_params {
	double failure_ratio;	/* open at this share of tripping failures, 0..1 */
	uint32_t min_calls;	/* ... out of at least this many calls (0 is taken as 1) */
	uint64_t window_usec;	/* 0: no breaker, always closed, never trips */
	uint64_t open_for_usec; /* the first pause */
	uint64_t max_open_usec; /* the cap of every pause, doubled ones included */
};

enum breaker_state {
	BREAKER_CLOSED,
	BREAKER_OPEN,
	BREAKER_HALF_OPEN,
	_BREAKER_STATE_MAX,
};

struct breaker {
	struct breaker_params p;
	uint32_t ratio_ppm; /* failure_ratio in millionths, so the test is exact */
	enum breaker_state state;
	struct tally calls;	 /* slot 0: calls, slot 1: tripping failures; CLOSED only */
	uint64_t opened_at_usec; /* OPEN, HALF_OPEN: when the current pause began */
	uint32_t failed_probes;	 /* since the trip: each one doubles the pause */
	bool probe_out;		 /* HALF_OPEN: the one probe was admitted */
	uint64_t trip_calls, trip_failed; /* the window that tripped it, for STATUS= */
	uint64_t opened_total;		  /* trips and reopenings */
	uint32_t ramp_limit;		  /* CLOSED: in-flight limit, UINT32_MAX when not ramping */
	uint32_t ramp_ok;		  /* calls without a tripping failure at ramp_limit */
};

/* A snapshot for STATUS=, the status page and the metrics. */
struct breaker_info {
	enum breaker_state state;
	/*
	 * CLOSED: the live window (calls and tripping failures in the last
	 * `window`). OPEN and HALF_OPEN: the window that tripped it.
	 */
	uint64_t calls, failed;
	uint32_t failed_probes;	  /* failed probes since the trip */
	uint64_t open_until_usec; /* OPEN: when the probe is due; else 0 */
	uint64_t opened_total;	  /* dlqd_breaker_opened_total */
};

/* A closed breaker with p, no ramp (a fresh start takes prefetch at once). */
void breaker_init(struct breaker *b, const struct breaker_params *p);
/* Reload: every key may change; what is kept is stated in breaker.c. */
void breaker_set_params(struct breaker *b, const struct breaker_params *p);

/*
 * May one NEW message be taken from the main queue now? CLOSED: yes. OPEN:
 * no, until open_for (doubled per failed probe, capped at max_open) has
 * passed; then it turns HALF_OPEN and says yes once: that message is the
 * probe. HALF_OPEN: no while the probe is out.
 */
bool breaker_admit(struct breaker *b, uint64_t now);
/*
 * A handler call finished at now. tripped: its failure class trips the
 * breaker (the caller decides: TRANSIENT and PERSISTENT unless a taxonomy
 * rule says otherwise). was_probe: this is the message breaker_admit() let
 * through as the probe.
 */
void breaker_record(struct breaker *b, uint64_t now, bool tripped, bool was_probe);
/* A handler call of a retry (attempt > 0) that was not the probe finished:
 * it feeds the gentle resume only, never the window (see breaker.c). */
void breaker_record_retry(struct breaker *b, bool tripped);
/* The probe was admitted but will never be called (given back, undecodable). */
void breaker_cancel_probe(struct breaker *b);
/* How many messages may be in flight now: 0 open, 1 half-open, the ramp, prefetch. */
uint32_t breaker_limit(const struct breaker *b, uint32_t prefetch);
/* When breaker_admit() may answer differently by time alone; USEC_INFINITY if never. */
uint64_t breaker_next_change_usec(const struct breaker *b);

enum breaker_state breaker_state(const struct breaker *b);
void breaker_info(const struct breaker *b, uint64_t now, struct breaker_info *out);
/* "closed", "open", "half_open": the metric label values. */
const char *breaker_state_to_string(enum breaker_state s);
