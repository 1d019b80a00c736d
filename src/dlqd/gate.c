/*
 * gate: decides when a decoded job calls the handler, from the circuit
 * breaker (breaker.h), its gentle resume and the retry budget (budget.h).
 * Those two are pure state machines; this file feeds them the loop's time
 * and the jobs, and turns their answers into actions, logs, metrics and a
 * timer.
 *
 *  - Every decoded job goes into a FIFO of held jobs (gate_offer()) and
 *    gate_pump() starts them in arrival order while the breaker allows:
 *    CLOSED, while fewer than breaker_limit(prefetch) handler calls are in
 *    flight (prefetch, or the ramp after a close); OPEN or HALF_OPEN, only
 *    the one message breaker_admit() lets through as the probe (the oldest
 *    held first attempt, else the oldest held retry). A held job
 *    is an unacked delivery that never started: it burns no attempt, and
 *    since it holds a prefetch slot the broker sends no more than prefetch.
 *  - A job that starts is a first attempt (attempt 0: budget_first_attempt())
 *    or a retry (budget_try_retry(), asked after the breaker admitted it, as
 *    budget.h wants). A retry the budget refuses is deferred (job_defer():
 *    a copy to a delay lane, attempt unchanged, acked once confirmed); if it
 *    was the probe, the probe is cancelled so the next message probes.
 *  - gate_record() runs once per finished handler call, success or not,
 *    with tripped = the taxonomy's verdict for this failure (route.trips).
 *  - gate_forget() (from job_free()): a held job leaves the FIFO; a running
 *    one gives its slot back; a probe that will never report (connection
 *    lost, drain deadline) is cancelled with breaker_cancel_probe().
 *  - After every change, gate_changed() logs the state transitions
 *    (breaker-open, breaker-half-open, breaker-close: journald events with
 *    their own MESSAGE_IDs) and each new in-flight limit (breaker-limit, the
 *    ramp's steps), updates the metrics and arms the one timer at
 *    breaker_next_change_usec(), when the pause ends and a probe may go.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "daemon_int.h"
#include "dlqd/metrics.h"

static void gate_changed(struct daemon *d);

static void params(const struct config *c, struct breaker_params *bp, struct budget_params *gp)
{
	*bp = (struct breaker_params){
		.failure_ratio = c->breaker.failure_ratio,
		.min_calls = c->breaker.min_calls,
		.window_usec = c->breaker.window_usec,
		.open_for_usec = c->breaker.open_for_usec,
		.max_open_usec = c->breaker.max_open_usec,
	};
	*gp = (struct budget_params){
		.ratio = c->retry.budget_ratio,
		.min_per_second = c->retry.budget_min_per_second,
		.window_usec = c->retry.budget_window_usec,
	};
}

void gate_init(struct daemon *d)
{
	struct breaker_params bp;
	struct budget_params gp;

	params(d->config, &bp, &gp);
	breaker_init(&d->breaker, &bp);
	budget_init(&d->budget, &gp);
	d->last_state = BREAKER_CLOSED;
	d->last_limit = breaker_limit(&d->breaker, d->config->broker.prefetch);
	metrics_set_breaker(d->metrics, BREAKER_CLOSED, 0);
}

void gate_reload(struct daemon *d)
{
	struct breaker_params bp;
	struct budget_params gp;

	params(d->config, &bp, &gp);
	breaker_set_params(&d->breaker, &bp);
	budget_set_params(&d->budget, &gp);
	gate_changed(d);
	gate_pump(d);
}

void gate_done(struct daemon *d)
{
	d->breaker_timer = sd_event_source_disable_unref(d->breaker_timer);
}

static void unhold(struct job *j)
{
	struct daemon *d = j->d;

	if (j->held_prev)
		j->held_prev->held_next = j->held_next;
	else
		d->held_head = j->held_next;
	if (j->held_next)
		j->held_next->held_prev = j->held_prev;
	else
		d->held_tail = j->held_prev;
	j->held_prev = j->held_next = NULL;
	d->n_held--;
}

void gate_forget(struct job *j)
{
	struct daemon *d = j->d;

	if (j->state == JOB_HELD) {
		unhold(j);
		j->state = JOB_PUBLISHING; /* anything but held: never unheld twice */
	}
	if (j->running) {
		j->running = false;
		d->n_running--;
		if (j->probe)
			breaker_cancel_probe(&d->breaker);
		j->probe = false;
		gate_changed(d);
	}
}

void gate_give_back(struct daemon *d)
{
	while (d->held_head)
		job_requeue(d->held_head);
}

static int on_breaker_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct daemon *d = userdata;

	gate_pump(d);
	gate_changed(d);
	return 0;
}

static void arm_timer(struct daemon *d)
{
	uint64_t at = breaker_next_change_usec(&d->breaker);
	int r;

	/* Due with nothing held: the next delivery is the probe (breaker_admit()
	 * turns it half-open then); a timer in the past would only spin. */
	if (at == USEC_INFINITY || (at <= daemon_now(d) && !d->held_head)) {
		if (d->breaker_timer)
			(void)sd_event_source_set_enabled(d->breaker_timer, SD_EVENT_OFF);
		return;
	}
	if (!d->breaker_timer) {
		r = sd_event_add_time(d->event, &d->breaker_timer, CLOCK_MONOTONIC, at, 0,
				      on_breaker_timer, d);
		if (r >= 0)
			(void)sd_event_source_set_description(d->breaker_timer, "breaker");
	} else if ((r = sd_event_source_set_time(d->breaker_timer, at)) >= 0) {
		r = sd_event_source_set_enabled(d->breaker_timer, SD_EVENT_ONESHOT);
	}
	/* Without the timer the probe waits for the next delivery instead. */
	if (r < 0)
		log_warning_errno(r, "cannot arm the circuit breaker's timer: %m, ignoring");
}

static void log_state(struct daemon *d, enum breaker_state s, uint64_t now)
{
	struct breaker_info bi;
	char extra[160];
	struct log_ctx ctx = { .attempt = -1, .extra = extra };

	breaker_info(&d->breaker, now, &bi);
	switch (s) {
	case BREAKER_OPEN:
		strscpy(d->open_code, d->trip_code, sizeof(d->open_code));
		/* in_flight: handler calls started before it opened and still
		 * running; they finish and settle normally. */
		snprintf(extra, sizeof(extra),
			 "calls=%" PRIu64 " failed=%" PRIu64 " failed_probes=%" PRIu32
			 " open_ms=%" PRIu64 " in_flight=%zu",
			 bi.calls, bi.failed, bi.failed_probes,
			 (bi.open_until_usec - MIN(now, bi.open_until_usec)) / USEC_PER_MSEC,
			 d->n_running);
		ctx.event = "breaker-open";
		ctx.error_code = d->open_code[0] ? d->open_code : NULL;
		if (bi.failed_probes)
			log_full(LOG_WARNING, 0, &ctx,
				 "circuit breaker open again: the probe failed (%s); "
				 "next probe in %" PRIu64 " ms",
				 d->open_code,
				 (bi.open_until_usec - MIN(now, bi.open_until_usec)) /
					 USEC_PER_MSEC);
		else
			log_full(LOG_WARNING, 0, &ctx,
				 "circuit breaker open: %" PRIu64 " of the last %" PRIu64
				 " calls failed (%s); taking no new work, probing in %" PRIu64
				 " ms",
				 bi.failed, bi.calls, d->open_code,
				 (bi.open_until_usec - MIN(now, bi.open_until_usec)) /
					 USEC_PER_MSEC);
		break;
	case BREAKER_HALF_OPEN:
		snprintf(extra, sizeof(extra), "failed_probes=%" PRIu32, bi.failed_probes);
		ctx.event = "breaker-half-open";
		log_full(LOG_NOTICE, 0, &ctx,
			 "circuit breaker half-open: one message goes through as the probe");
		break;
	default:
		snprintf(extra, sizeof(extra), "failed_probes=%" PRIu32, d->breaker.failed_probes);
		ctx.event = "breaker-close";
		log_full(LOG_NOTICE, 0, &ctx,
			 "circuit breaker closed: the probe succeeded; resuming gently");
		break;
	}
}

static void gate_changed(struct daemon *d)
{
	enum breaker_state s = breaker_state(&d->breaker);
	uint32_t limit = breaker_limit(&d->breaker, d->config->broker.prefetch);
	uint64_t now = daemon_now(d);

	if (s != d->last_state) {
		/* OPEN -> HALF_OPEN -> OPEN within one call still logs both. */
		log_state(d, s, now);
		d->last_state = s;
	}
	if (limit != d->last_limit) {
		char extra[64];
		snprintf(extra, sizeof(extra), "limit=%" PRIu32 " prefetch=%" PRIu32, limit,
			 d->config->broker.prefetch);
		log_full(LOG_INFO, 0,
			 &(struct log_ctx){
				 .event = "breaker-limit", .attempt = -1, .extra = extra },
			 "handler calls in flight limited to %" PRIu32 " (prefetch %" PRIu32 ")",
			 limit, d->config->broker.prefetch);
		d->last_limit = limit;
	}
	metrics_set_breaker(d->metrics, s, d->breaker.opened_total);
	metrics_set_budget_deferred(d->metrics, d->budget.deferred_total);
	arm_timer(d);
}

void gate_record(struct job *j)
{
	struct daemon *d = j->d;
	bool tripped = j->route.action != ROUTE_ACK && j->route.trips;

	if (!j->running)
		return;
	j->running = false;
	d->n_running--;
	if (tripped && j->route.cause_code)
		strscpy(d->trip_code, j->route.cause_code, sizeof(d->trip_code));
	if (j->env->attempt > 0 && !j->probe)
		breaker_record_retry(&d->breaker, tripped);
	else
		breaker_record(&d->breaker, daemon_now(d), tripped, j->probe);
	j->probe = false;
	gate_changed(d);
}

/*
 * The probe: the oldest held first attempt, else the head. A retry already
 * failed at least once, so it says less about the downstream's health than
 * a fresh message (one that fails whatever the downstream's state would keep
 * the breaker open by itself).
 */
static struct job *probe_candidate(struct daemon *d)
{
	for (struct job *j = d->held_head; j; j = j->held_next)
		if (j->env->attempt == 0)
			return j;
	return d->held_head;
}

/* Starts, defers or keeps a held job (the FIFO's head, or the probe); false
 * when it must wait. */
static bool start_one(struct daemon *d, uint64_t now)
{
	struct job *j = d->held_head;
	bool probe = false;

	if (breaker_state(&d->breaker) != BREAKER_CLOSED) {
		if (!breaker_admit(&d->breaker, now))
			return false;
		probe = breaker_state(&d->breaker) == BREAKER_HALF_OPEN;
		if (probe)
			j = probe_candidate(d);
	} else {
		if (d->n_running >= breaker_limit(&d->breaker, d->config->broker.prefetch))
			return false;
		(void)breaker_admit(&d->breaker, now);
	}
	unhold(j);
	j->state = JOB_HANDLING;
	if (j->env->attempt > 0 && !budget_try_retry(&d->budget, now)) {
		if (probe)
			breaker_cancel_probe(&d->breaker);
		job_defer(j);
		return true;
	}
	if (j->env->attempt == 0)
		budget_first_attempt(&d->budget, now);
	j->probe = probe;
	j->running = true;
	d->n_running++;
	job_start(j);
	return true;
}

void gate_pump(struct daemon *d)
{
	if (d->pumping) {
		/* A job that finished at once (a handler that cannot start). */
		d->pump_again = true;
		return;
	}
	d->pumping = true;
	do {
		d->pump_again = false;
		while (d->held_head && !d->draining && start_one(d, daemon_now(d)))
			;
	} while (d->pump_again);
	d->pumping = false;
	gate_changed(d);
}

void gate_offer(struct job *j)
{
	struct daemon *d = j->d;

	if (d->draining) {
		job_requeue(j);
		return;
	}
	j->state = JOB_HELD;
	j->held_next = NULL;
	j->held_prev = d->held_tail;
	if (d->held_tail)
		d->held_tail->held_next = j;
	else
		d->held_head = j;
	d->held_tail = j;
	d->n_held++;
	gate_pump(d);
}
