/*
 * router: the one decision dlqd makes per message: ack, retry (which lane,
 * which attempt) or dead-letter (with which code and class). Pure function
 * over plain structs, unit-tested without a broker.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/envelope.h"
#include "common/result.h"
#include "common/taxonomy.h"

enum route_action {
	ROUTE_ACK,
	ROUTE_RETRY,
	ROUTE_DLQ,
};

struct route {
	enum route_action action;
	const char *error_code; /* the code the copy carries (RETRY_EXHAUSTED...) */
	enum error_class error_class;
	const char *cause_code; /* the classified code, even when exhausted */
	enum error_class cause_class;
	uint32_t attempt;     /* the copy's attempt (= old attempt + 1) */
	uint32_t max_attempt; /* the bound that was applied */
	uint64_t delay_usec;  /* ROUTE_RETRY: computed delay */
	uint64_t lane_ms;     /* ROUTE_RETRY: the delay lane chosen */
	bool escalate;	      /* the rule asked for escalation */
	bool trips;	      /* a failure that counts against the breaker (taxonomy.h) */
	int rule;	      /* matching taxonomy rule, -1 default/none */
};

/*
 * Decides what to do with e after its handler returned r. u01 is the jitter
 * draw in [0, 1). e is NULL for a body that failed to decode (DLQ at once as
 * INVALID_ENVELOPE / NON_RETRYABLE).
 */
void router_decide(const struct taxonomy *t, const struct envelope *e, const struct result *r,
		   double u01, struct route *out);

/*
 * A body dlqd could not take as an envelope: not decoded (INVALID_ENVELOPE,
 * what router_decide() does for e == NULL) or not even read
 * (MESSAGE_TOO_LARGE). DLQ at once, NON_RETRYABLE, attempt 1, its bytes kept.
 */
void router_reject(const char *error_code, struct route *out);

const char *route_action_to_string(enum route_action a);

/* What to do with a delivery the broker flagged redelivered. */
enum poison_action {
	POISON_HANDLE,	/* as any delivery: the guard is off, or the count is low */
	POISON_RECOUNT, /* classic: publish it again to the main queue with
			 * x-dlqd-redeliveries = *redeliveries, then ack it */
	POISON_DLQ,	/* POISON_MESSAGE / NON_RETRYABLE at once (router_reject) */
};

/*
 * The poison guard (design.md Part 1, "Poison"), for a delivery with the
 * redelivered flag only: a delivery without it is never looked at.
 *
 * count is the header the queue type offers, -1 when absent or not an
 * integer: on a quorum main queue the broker's x-delivery-count (the
 * deliveries before this one that were not settled; absent reads as 1),
 * on a classic one dlqd's own x-dlqd-redeliveries (the redeliveries
 * counted so far; absent reads as 0, and this redelivery adds one).
 * *redeliveries gets the redelivery count this delivery stands for (the
 * evidence). With max_redeliveries 0 the guard is off: POISON_HANDLE.
 * Otherwise a count that reached max_redeliveries is POISON_DLQ; below it,
 * quorum is POISON_HANDLE (the broker keeps counting) and classic is
 * POISON_RECOUNT (the count must travel with the message).
 */
enum poison_action router_poison(bool quorum, int64_t count, uint32_t max_redeliveries,
				 uint64_t *redeliveries);
