/*
 * router: the one decision dlqd makes per message, as a pure function.
 *
 *  - e == NULL (the body did not decode): router_reject(INVALID_ENVELOPE):
 *    ROUTE_DLQ, NON_RETRYABLE, attempt 1, rule -1. MESSAGE_TOO_LARGE (a body
 *    not read at all) takes the same route with its own code.
 *  - success: ROUTE_ACK.
 *  - any failure is classified by the taxonomy into (code, class, policy,
 *    escalate) and counted: attempt' = attempt + 1, saturating at
 *    ENVELOPE_ATTEMPT_MAX + 1. cause_code/cause_class always carry the
 *    classification.
 *  - NON_RETRYABLE, or a policy with max_attempt 0: ROUTE_DLQ with the
 *    classified code and class (this is not an exhausted retry), max_attempt 0.
 *  - otherwise the bound is the envelope's max_attempt when it has one, else
 *    the policy's. attempt' <= bound: ROUTE_RETRY after
 *    backoff_delay_usec(policy, attempt', u01, Retry-After) in the lane
 *    backoff_lane_ms() picks. attempt' > bound: ROUTE_DLQ as RETRY_EXHAUSTED /
 *    PERSISTENT, so an exhausted copy has attempt = bound + 1.
 *  - escalate, trips (does it count against the circuit breaker) and rule
 *    come from the classification; a success or a reject never trips.
 *
 * router_poison() is the poison guard, asked only for a delivery the broker
 * flagged redelivered, before anything else (even decoding) touches it: a
 * message that crashed dlqd max_redeliveries times is not run again. Its
 * route is router_reject(POISON_MESSAGE): NON_RETRYABLE, attempt 1, the
 * bytes unchanged.
 */
#include "dlqd/router.h"

#include "common/backoff.h"

const char *route_action_to_string(enum route_action a)
{
	switch (a) {
	case ROUTE_ACK:
		return "ack";
	case ROUTE_RETRY:
		return "retry";
	case ROUTE_DLQ:
		return "dlq";
	}
	return "unknown";
}

void router_reject(const char *error_code, struct route *out)
{
	*out = (struct route){
		.action = ROUTE_DLQ,
		.error_code = error_code,
		.error_class = ERROR_CLASS_NON_RETRYABLE,
		.cause_code = error_code,
		.cause_class = ERROR_CLASS_NON_RETRYABLE,
		.attempt = 1,
		.rule = -1,
	};
}

void router_decide(const struct taxonomy *t, const struct envelope *e, const struct result *r,
		   double u01, struct route *out)
{
	struct classification cl;
	uint32_t attempt, bound;

	if (!e) {
		router_reject(ERROR_CODE_INVALID_ENVELOPE, out);
		return;
	}
	if (r->kind == RESULT_SUCCESS) {
		*out = (struct route){
			.action = ROUTE_ACK,
			.error_class = _ERROR_CLASS_INVALID,
			.cause_class = _ERROR_CLASS_INVALID,
			.attempt = e->attempt,
			.rule = -1,
		};
		return;
	}

	taxonomy_classify(t, r, &cl);
	attempt = MIN(e->attempt, (uint32_t)ENVELOPE_ATTEMPT_MAX) + 1;
	*out = (struct route){
		.action = ROUTE_DLQ,
		.error_code = cl.error_code,
		.error_class = cl.error_class,
		.cause_code = cl.error_code,
		.cause_class = cl.error_class,
		.attempt = attempt,
		.escalate = cl.escalate,
		.trips = cl.trips,
		.rule = cl.rule,
	};
	if (cl.error_class == ERROR_CLASS_NON_RETRYABLE || cl.policy->max_attempt == 0)
		return;

	bound = e->has_max_attempt ? e->max_attempt : cl.policy->max_attempt;
	out->max_attempt = bound;
	if (attempt > bound) {
		out->error_code = ERROR_CODE_RETRY_EXHAUSTED;
		out->error_class = ERROR_CLASS_PERSISTENT;
		return;
	}
	out->action = ROUTE_RETRY;
	out->delay_usec = backoff_delay_usec(cl.policy, attempt, u01, r->retry_after_usec);
	out->lane_ms = backoff_lane_ms(out->delay_usec);
}

enum poison_action router_poison(bool quorum, int64_t count, uint32_t max_redeliveries,
				 uint64_t *redeliveries)
{
	uint64_t n;

	if (quorum)
		/* The broker's own count; a redelivery is at least the first. */
		n = count < 1 ? 1 : (uint64_t)count;
	else
		/* Ours, plus this redelivery; saturating, never wrapping. */
		n = count < 0 ? 1 : (uint64_t)count + (count < INT64_MAX ? 1 : 0);
	*redeliveries = n;
	if (max_redeliveries == 0)
		return POISON_HANDLE;
	if (n >= max_redeliveries)
		return POISON_DLQ;
	return quorum ? POISON_HANDLE : POISON_RECOUNT;
}
