/*
 * job: one message's life inside dlqd, from the broker's delivery to its
 * settlement: decode the envelope, run the handler, let the router decide,
 * build the copy, publish it and wait for the broker's confirm, and only
 * then ack (design.md Part 1: nothing is acked before its copy is safe).
 * A refused copy is published again with backoff; a delivery whose
 * connection is gone is dropped here and redelivered by the broker.
 *
 * A delivery the broker flagged redelivered meets the poison guard first
 * (router_poison()), before anything else touches its body: at
 * [pipeline] max_redeliveries it goes to the DLQ as POISON_MESSAGE, bytes
 * unchanged; below it a classic queue's delivery is published again to the
 * main queue with its count (copy_redelivery()) and acked once that copy is
 * confirmed. A delivery without the flag costs nothing more.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/backoff.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon_int.h"
#include "dlqd/metrics.h"

#define REPUBLISH_MIN_USEC (500 * USEC_PER_MSEC)
#define REPUBLISH_MAX_USEC (30 * USEC_PER_SEC)

static void job_publish(struct job *j);

/* The copy a failure publishes, made when one is needed: a success, the
 * common case, carries none. NULL when out of memory. */
static struct copy *job_copy(struct job *j)
{
	if (!j->copy)
		j->copy = calloc(1, sizeof(*j->copy));
	return j->copy;
}

struct job *job_free(struct job *j)
{
	struct daemon *d;

	if (!j)
		return NULL;
	d = j->d;
	if (j->state == JOB_HANDLING && j->handler)
		handler_cancel(j->handler, &j->hj);
	gate_forget(j);
	if (j->publish_pending)
		broker_publish_forget(d->broker, j->publish_id);
	sd_event_source_disable_unref(j->backoff);
	if (j->prev)
		j->prev->next = j->next;
	else
		d->jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
	d->n_jobs--;
	metrics_set_in_flight(d->metrics, d->n_jobs);
	broker_msg_free(j->msg);
	metrics_set_body_bytes(d->metrics, broker_body_bytes_held(d->broker));
	envelope_free(j->env);
	if (j->copy) {
		copy_done(j->copy);
		free(j->copy);
	}
	free(j->result);
	if (d->n_spare_jobs < d->config->broker.prefetch) {
		j->next = d->spare_jobs;
		d->spare_jobs = j;
		d->n_spare_jobs++;
	} else {
		free(j);
	}
	return NULL;
}

static struct job *job_new(struct daemon *d)
{
	struct job *j = d->spare_jobs;

	if (!j)
		return calloc(1, sizeof(*j));
	d->spare_jobs = j->next;
	d->n_spare_jobs--;
	memset(j, 0, sizeof(*j));
	return j;
}

void free_retired_handlers(struct daemon *d)
{
	struct retired_handler **p = &d->retired;

	while (*p) {
		struct retired_handler *r = *p;
		if (r->h->in_flight == 0) {
			*p = r->next;
			handler_free(r->h);
			free(r);
		} else {
			p = &r->next;
		}
	}
}

/* The job is over (acked, or given back to the broker). */
static void job_finish(struct job *j)
{
	struct daemon *d = j->d;

	job_free(j);
	free_retired_handlers(d);
	daemon_check_drained(d);
}

/* Hands the delivery back to the broker for another try, now. */
void job_requeue(struct job *j)
{
	broker_requeue(j->d->broker, j->msg);
	job_finish(j);
}

static struct log_ctx job_log_ctx(const struct job *j, const char *event, const char *extra)
{
	return (struct log_ctx){
		.message_id = j->env ? j->env->message_id : NULL,
		.trace_id = j->env ? j->env->trace_id : NULL,
		.attempt = (long)j->route.attempt,
		.error_code = j->error_code,
		.error_class = error_class_to_string(j->route.error_class),
		.event = event,
		.extra = extra,
	};
}

/* The journal fields of a retry or a deferred retry: where and when it waits. */
static const char *lane_extra(const struct job *j, char *extra, size_t size)
{
	char at[TIMESTAMP_MAX];

	snprintf(extra, size, "delay_ms=%" PRIu64 " lane_ms=%" PRIu64 " next_retry_at=%s",
		 j->route.delay_usec / USEC_PER_MSEC, j->route.lane_ms,
		 format_timestamp(j->next_retry_at_usec, at));
	return extra;
}

static void log_settled(struct job *j)
{
	struct daemon *d = j->d;
	char extra[256];
	struct log_ctx ctx;

	if (j->guard == POISON_RECOUNT) {
		snprintf(extra, sizeof(extra), "redeliveries=%" PRIu64 " max_redeliveries=%" PRIu32,
			 j->redeliveries, d->config->pipeline.max_redeliveries);
		ctx = job_log_ctx(j, "redelivered", extra);
		ctx.attempt = -1;
		log_full(LOG_NOTICE, 0, &ctx,
			 "a message came back unsettled (redelivery %" PRIu64 " of at most %" PRIu32
			 "); published it again to the main queue with its count",
			 j->redeliveries, d->config->pipeline.max_redeliveries);
		return;
	}
	if (j->deferred) {
		if (!log_enabled(LOG_INFO))
			return;
		ctx = job_log_ctx(j, "retry-deferred", lane_extra(j, extra, sizeof(extra)));
		ctx.error_code = NULL;
		ctx.error_class = NULL;
		log_full(LOG_INFO, 0, &ctx,
			 "retry budget spent: %s goes back to a delay lane for %" PRIu64
			 " ms, no attempt counted (attempt %u)",
			 j->env->message_id, j->route.delay_usec / USEC_PER_MSEC, j->route.attempt);
		return;
	}
	if (j->route.action == ROUTE_RETRY) {
		metrics_retried(d->metrics, j->error_code,
				error_class_to_string(j->route.error_class));
		if (!log_enabled(LOG_INFO))
			return;
		ctx = job_log_ctx(j, "retry", lane_extra(j, extra, sizeof(extra)));
		log_full(LOG_INFO, 0, &ctx, "retrying %s in %" PRIu64 " ms (attempt %u of %u)",
			 j->env->message_id, j->route.delay_usec / USEC_PER_MSEC, j->route.attempt,
			 j->route.max_attempt);
		return;
	}
	metrics_dead_lettered(d->metrics, j->error_code,
			      error_class_to_string(j->route.error_class));
	snprintf(extra, sizeof(extra), "cause_code=%s", j->cause_code);
	ctx = job_log_ctx(j, "dead-letter", j->cause_code[0] ? extra : NULL);
	if (j->guard == POISON_DLQ) {
		metrics_poison(d->metrics);
		snprintf(extra, sizeof(extra), "redeliveries=%" PRIu64, j->redeliveries);
		ctx.event = "poison";
		ctx.extra = extra;
		log_full(LOG_ERR, 0, &ctx, "dead-lettered a poison message (%s): %s", j->error_code,
			 j->detail);
	} else if (!j->env) {
		ctx.event = "invalid-envelope";
		log_full(LOG_WARNING, 0, &ctx, "dead-lettered a body dlqd could not take (%s): %s",
			 j->error_code, j->detail);
	} else {
		log_full(LOG_WARNING, 0, &ctx, "dead-lettered %s: %s after %u attempt(s)",
			 j->env->message_id, j->error_code, j->route.attempt);
	}
	if (j->route.escalate) {
		metrics_escalated(d->metrics, j->error_code,
				  error_class_to_string(j->route.error_class));
		ctx.event = "escalation";
		log_full(LOG_CRIT, 0, &ctx, "escalation: %s failed with %s and needs a human",
			 j->env ? j->env->message_id : "(invalid body)", j->error_code);
	}
}

static int on_republish(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct job *j = userdata;

	if (j->msg->generation != broker_generation(j->d->broker)) {
		/* The connection it came on is gone; the broker redelivers it. */
		job_finish(j);
		return 0;
	}
	if (j->msg->streamed) {
		job_requeue(j); /* its body went by: the broker sends it again */
		return 0;
	}
	job_publish(j);
	return 0;
}

static void job_publish_failed(struct job *j, int r, const char *reason)
{
	struct daemon *d = j->d;
	bool dlq = j->route.action == ROUTE_DLQ;
	const char *what = dlq ? "DLQ" : j->guard == POISON_RECOUNT ? "redelivery" : "retry";
	uint64_t delay, now;
	int k;
	struct log_ctx ctx = job_log_ctx(j, dlq ? "dlq-publish-failed" : "publish-failed", NULL);

	/* Our publisher link was down, lost or blocked: not the broker's verdict
	 * on this copy, so try again soon and log less loudly. */
	bool link_trouble = r == -EAGAIN || r == -ENOTCONN || r == -ECONNRESET;

	j->publish_pending = false;
	if (j->msg->generation != broker_generation(d->broker) || !broker_is_up(d->broker)) {
		job_finish(j); /* its delivery is void; the broker still has the original */
		return;
	}
	/* The metric counts the broker's refusals (docs/metrics.md), not the
	 * seconds a copy waited for our link. */
	if (dlq && !link_trouble)
		metrics_dlq_publish_failed(d->metrics);
	/* A DLQ copy the broker refused means a human must look (crit); one
	 * that waits for our link to come back is still an error. */
	log_full(dlq ? (link_trouble ? LOG_ERR : LOG_CRIT) : (link_trouble ? LOG_WARNING : LOG_ERR),
		 r, &ctx,
		 "%s copy of %s was not accepted by the broker (%s); keeping the message unacked",
		 what, j->env ? j->env->message_id : "(not decoded)",
		 reason		? reason
		 : r == -EAGAIN ? "the broker blocks publishing (resource alarm)"
				: strerror(-r));
	if (d->draining) {
		job_requeue(j);
		return;
	}
	j->state = JOB_BACKOFF;
	delay = link_trouble ? USEC_PER_SEC
			     : MIN(REPUBLISH_MAX_USEC,
				   REPUBLISH_MIN_USEC << MIN(j->publish_failures, 10u));
	j->publish_failures++;
	now = daemon_now(d);
	if (!j->backoff)
		k = sd_event_add_time(d->event, &j->backoff, CLOCK_MONOTONIC, now + delay, 0,
				      on_republish, j);
	else if ((k = sd_event_source_set_time(j->backoff, now + delay)) >= 0)
		k = sd_event_source_set_enabled(j->backoff, SD_EVENT_ONESHOT);
	if (k < 0) {
		/* Without a timer it would wait forever: the broker tries again. */
		log_error("cannot arm the republish timer of %s; giving it back to the broker",
			  j->env ? j->env->message_id : "(invalid body)");
		job_requeue(j);
	}
}

static void on_confirm(void *userdata, int r, const char *reason)
{
	struct job *j = userdata;

	j->publish_pending = false;
	if (r < 0) {
		job_publish_failed(j, r, reason);
		return;
	}
	/* The copy is safe on the broker; only now may the original go. */
	broker_ack(j->d->broker, j->msg);
	log_settled(j);
	job_finish(j);
}

static void job_publish(struct job *j)
{
	struct daemon *d = j->d;
	int r;

	j->state = JOB_PUBLISHING;
	if (j->route.action == ROUTE_RETRY) {
		r = broker_ensure_lane(d->broker, j->route.lane_ms);
		if (r < 0) {
			job_publish_failed(j, r,
					   r == -EAGAIN ? NULL : "cannot declare the delay lane");
			return;
		}
	}
	r = broker_publish(d->broker, j->copy, j->msg, on_confirm, j, &j->publish_id);
	if (r < 0) {
		job_publish_failed(j, r, NULL);
		return;
	}
	j->publish_pending = true;
}

/* Applies the router's decision to a job whose handler finished (or that
 * never reached one). */
static void job_route(struct job *j)
{
	struct daemon *d = j->d;
	uint64_t now = now_realtime_usec();

	if (j->route.action == ROUTE_ACK) {
		broker_ack(d->broker, j->msg);
		metrics_succeeded(d->metrics);
		log_full(LOG_DEBUG, 0,
			 &(struct log_ctx){ .message_id = j->env->message_id,
					    .trace_id = j->env->trace_id,
					    .attempt = j->env->attempt,
					    .event = "success" },
			 "handled %s", j->env->message_id);
		job_finish(j);
		return;
	}
	strscpy(j->error_code, j->route.error_code, sizeof(j->error_code));
	if (j->route.cause_code && strcmp(j->route.cause_code, j->route.error_code) != 0)
		strscpy(j->cause_code, j->route.cause_code, sizeof(j->cause_code));
	struct failure f = {
		.error_code = j->error_code,
		.error_class = j->route.error_class,
		.cause_code = j->cause_code[0] ? j->cause_code : NULL,
		.cause_class = j->route.cause_class,
		.attempt = j->route.attempt,
		.now_usec = now,
		.lane_ms = j->route.lane_ms,
		.result = j->result,
		.detail = j->detail,
		.redeliveries = j->guard == POISON_DLQ ? j->redeliveries : 0,
	};
	if (j->route.action == ROUTE_RETRY) {
		j->next_retry_at_usec = now + j->route.delay_usec;
		f.next_retry_at_usec = j->next_retry_at_usec;
	}
	/* The copy goes where the running connections declared the topology,
	 * whatever a reload says about [pipeline] queue. */
	if (!job_copy(j) ||
	    copy_failure(broker_queue(d->broker), &j->msg->source, j->env, &f, j->copy) < 0) {
		log_error("out of memory building the copy of %s; giving it back to the broker",
			  j->env ? j->env->message_id : "(invalid body)");
		job_requeue(j);
		return;
	}
	job_publish(j);
}

/*
 * Classifies the outcome of a job's handler (or of failing to start one),
 * tells the gate how the call went, and lets the next held job start.
 */
static void job_handled(struct job *j, const struct result *r)
{
	struct daemon *d = j->d;

	j->state = JOB_PUBLISHING;
	/* A failure's route and copy quote its result (copy.h), so the job
	 * keeps one; a success, the common case, needs none of its kilobyte. */
	if (r->kind != RESULT_SUCCESS && (j->result = malloc(sizeof(*j->result))))
		r = memcpy(j->result, r, sizeof(*r));
	router_decide(d->taxonomy, j->env, r, random_unit(), &j->route);
	gate_record(j);
	if (r->kind != RESULT_SUCCESS && !j->result) {
		log_error("out of memory keeping the outcome of %s; giving it back to the broker",
			  j->env ? j->env->message_id : "(invalid body)");
		job_requeue(j);
	} else {
		job_route(j);
	}
	gate_pump(d);
}

/*
 * The retry budget is spent: the delivery goes back to a delay lane as it
 * is (copy_defer(): attempt, history and payload unchanged, only
 * next_retry_at new), without a handler call, and is acked once the broker
 * confirmed the copy, like any retry. The delay is half the budget window,
 * jittered up to three quarters of it, so deferred retries come back spread
 * out and in a later window; the lane is backoff's nearest one.
 */
void job_defer(struct job *j)
{
	struct daemon *d = j->d;
	uint64_t now = now_realtime_usec();
	uint64_t half = d->config->retry.budget_window_usec / 2;
	uint64_t delay = half + (uint64_t)((double)half * 0.5 * random_unit());

	j->deferred = true;
	j->state = JOB_PUBLISHING;
	j->route = (struct route){
		.action = ROUTE_RETRY,
		.error_class = _ERROR_CLASS_INVALID,
		.cause_class = _ERROR_CLASS_INVALID,
		.attempt = j->env->attempt,
		.delay_usec = delay,
		.lane_ms = backoff_lane_ms(delay),
		.rule = -1,
	};
	j->next_retry_at_usec = now + delay;
	if (!job_copy(j) || copy_defer(broker_queue(d->broker), &j->msg->source, j->env,
				       j->route.lane_ms, j->next_retry_at_usec, j->copy) < 0) {
		log_error("out of memory building the deferred copy of %s; giving it back to the "
			  "broker",
			  j->env->message_id);
		job_requeue(j);
		return;
	}
	job_publish(j);
}

static void on_handler_done(struct handler_job *hj, const struct result *r)
{
	struct job *j = hj->userdata;

	metrics_handler_duration(j->d->metrics, r->duration_usec);
	job_handled(j, r);
}

/*
 * The poison guard for a delivery the broker flagged redelivered (see the
 * file comment and router_poison()). Returns true when it took the job
 * over, false when the delivery is to be handled as usual.
 */
static bool job_poison_guard(struct job *j)
{
	struct daemon *d = j->d;
	const struct copy_source *src = &j->msg->source;
	bool quorum = broker_quorum(d->broker);
	const char *name = quorum ? HDR_DELIVERY_COUNT : HDR_REDELIVERIES;
	const struct header *h = header_find(src->headers, src->n_headers, name);
	uint32_t bound = d->config->pipeline.max_redeliveries;
	int64_t count = h && h->kind == HEADER_INT && h->i >= 0 ? h->i : -1;

	j->guard = router_poison(quorum, count, bound, &j->redeliveries);
	switch (j->guard) {
	case POISON_HANDLE:
		return false;
	case POISON_DLQ:
		router_reject(ERROR_CODE_POISON_MESSAGE, &j->route);
		snprintf(j->detail, sizeof(j->detail),
			 "redelivered %" PRIu64 " times without dlqd settling it (%s %" PRIu64
			 "); [pipeline] max_redeliveries is %" PRIu32,
			 j->redeliveries, name, quorum ? j->redeliveries : j->redeliveries - 1,
			 bound);
		job_route(j);
		return true;
	case POISON_RECOUNT:
		if (!job_copy(j) ||
		    copy_redelivery(broker_queue(d->broker), src, j->redeliveries, j->copy) < 0) {
			log_error("out of memory building a redelivery copy; giving it back to "
				  "the broker");
			job_requeue(j);
			return true;
		}
		job_publish(j);
		return true;
	}
	return false;
}

void job_on_delivery(void *userdata, struct broker_msg *m)
{
	struct daemon *d = userdata;
	struct job *j = job_new(d);
	char why[200];
	int r;

	if (!j) {
		broker_requeue(d->broker, m);
		broker_msg_free(m);
		return;
	}
	j->d = d;
	j->msg = m;
	j->next = d->jobs;
	if (d->jobs)
		d->jobs->prev = j;
	d->jobs = j;
	d->n_jobs++;
	metrics_consumed(d->metrics);
	metrics_set_in_flight(d->metrics, d->n_jobs);
	metrics_set_body_bytes(d->metrics, broker_body_bytes_held(d->broker));

	if (m->redelivered && !m->streamed && job_poison_guard(j))
		return;
	if (m->streamed || m->len > d->config->pipeline.max_message_size) {
		router_reject(ERROR_CODE_MESSAGE_TOO_LARGE, &j->route);
		snprintf(j->detail, sizeof(j->detail),
			 "body of %zu bytes exceeds [pipeline] max_message_size %" PRIu64, m->len,
			 d->config->pipeline.max_message_size);
		job_route(j);
		return;
	}
	r = envelope_decode(m->body, m->len, now_realtime_usec(), &j->env, why, sizeof(why));
	if (r == -ENOMEM) {
		/* Not the body's fault: a valid job must not land in the DLQ for it. */
		log_error("out of memory decoding a %zu-byte body; giving it back to the broker",
			  m->len);
		job_requeue(j);
		return;
	}
	if (r < 0) {
		router_reject(ERROR_CODE_INVALID_ENVELOPE, &j->route);
		snprintf(j->detail, sizeof(j->detail), "%s", why);
		job_route(j);
		return;
	}
	j->payload = envelope_payload(j->env, &j->payload_len);
	const struct policy *p = taxonomy_class_policy(d->taxonomy, ERROR_CLASS_TRANSIENT);
	j->hj = (struct handler_job){
		.message_id = j->env->message_id,
		.trace_id = j->env->trace_id,
		.attempt = j->env->attempt,
		.max_attempt =
			j->env->has_max_attempt ? j->env->max_attempt : (p ? p->max_attempt : 0),
		.payload = j->payload,
		.payload_len = j->payload_len,
		.done = on_handler_done,
		.userdata = j,
	};
	gate_offer(j);
}

void job_start(struct job *j)
{
	struct daemon *d = j->d;
	int r;

	j->handler = d->handler;
	j->state = JOB_HANDLING;
	r = handler_submit(d->handler, &j->hj);
	if (r < 0) {
		struct result res;
		result_init(&res, RESULT_INTERNAL);
		snprintf(res.detail, sizeof(res.detail), "cannot start the handler: %s",
			 strerror(-r));
		j->handler = NULL;
		/* Not the downstream's answer: the breaker does not count it. */
		gate_forget(j);
		job_handled(j, &res); /* no handler ran: no duration to record */
	}
}
