/*
 * daemon: the hub (see include/dlqd/daemon.h for the flow). It builds the
 * loop and everything on it, and owns what concerns the process as a whole:
 * the broker connection's ups and downs, sd_notify (READY, STATUS,
 * WATCHDOG, STOPPING), the drain under its deadline, SIGHUP reloads and
 * the DLQ gauges. One message's life is job.c's.
 *
 * The one rule everything here serves: a delivery is acked only after the
 * handler succeeded, or after the broker confirmed its retry or DLQ copy.
 * Every other path (publish refused, connection lost, drain deadline, crash)
 * leaves it unacked, so the broker delivers it again.
 */
#include "dlqd/daemon.h"

#include "daemon_int.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "common/backoff.h"
#include "dlqd/broker.h"
#include "common/config.h"
#include "common/copy.h"
#include "common/envelope.h"
#include "dlqd/handler.h"
#include "common/log.h"
#include "dlqd/metrics.h"
#include "dlqd/metrics_server.h"
#include "dlqd/router.h"
#include "common/taxonomy.h"
#include "common/util.h"
#include "common/version.h"

#define STATUS_INTERVAL_USEC (2 * USEC_PER_SEC)
/* What exiting takes after the drain deadline: nacks, closing both
 * connections. Added to EXTEND_TIMEOUT_USEC so systemd waits for it. */
#define DRAIN_EXIT_SLACK_USEC (10 * USEC_PER_SEC)

/* --- connection, status, drain, reload ----------------------------------- */

void daemon_check_drained(struct daemon *d)
{
	/* Once: giving the held jobs back at drain start may already end it. */
	if (d->draining && d->n_jobs == 0 && !d->drained) {
		d->drained = true;
		log_full(LOG_NOTICE, 0, &(struct log_ctx){ .event = "drain-done", .attempt = -1 },
			 "drained: every in-flight message settled");
		daemon_exit(d);
	}
}

void daemon_exit(struct daemon *d)
{
	int r = sd_event_exit(d->event, 0);

	if (r < 0)
		log_error_errno(r, "cannot stop the event loop: %m, ignoring");
}

uint64_t daemon_now(struct daemon *d)
{
	uint64_t now;

	/* Fails only on a loop that is not ours; the clock is as good. */
	return sd_event_now(d->event, CLOCK_MONOTONIC, &now) < 0 ? now_monotonic_usec() : now;
}

/* Re-arms a periodic timer from its own callback. A timer that cannot be
 * re-armed stops: what it feeds (STATUS=, WATCHDOG=1, the DLQ gauges) goes
 * stale, which the log says once; messages are not affected. */
static int rearm(sd_event_source *s, uint64_t at, const char *what)
{
	int r = sd_event_source_set_time(s, at);

	if (r < 0)
		log_error_errno(r, "cannot re-arm the %s timer: %m, ignoring", what);
	return 0;
}

/*
 * STATUS= is what `systemctl status dlqd` shows: what dlqd is doing now and
 * the counts since start. While draining it also keeps extending systemd's
 * stop timeout, a little at a time, so a stuck drain is still caught.
 */
static void notify_status(struct daemon *d)
{
	struct metrics_totals t, *c = &t;
	uint64_t now = now_monotonic_usec();

	metrics_totals(d->metrics, &t);

	if (d->draining) {
		uint64_t left = d->drain_deadline > now ? d->drain_deadline - now : 0;
		sd_notifyf(0,
			   "EXTEND_TIMEOUT_USEC=%" PRIu64 "\n"
			   "STATUS=Draining %s: %zu in flight, %" PRIu64 " s left; %" PRIu64
			   " consumed, %" PRIu64 " succeeded, %" PRIu64 " retried, %" PRIu64
			   " dead-lettered",
			   left + DRAIN_EXIT_SLACK_USEC, broker_queue(d->broker), d->n_jobs,
			   (left + USEC_PER_SEC - 1) / USEC_PER_SEC, c->consumed, c->succeeded,
			   c->retried, c->dead_lettered);
		return;
	}
	if (breaker_state(&d->breaker) != BREAKER_CLOSED) {
		struct breaker_info bi;
		uint64_t mono = daemon_now(d);
		breaker_info(&d->breaker, mono, &bi);
		if (bi.state == BREAKER_OPEN)
			sd_notifyf(0,
				   "STATUS=Circuit open: %" PRIu64 "%% of the last %" PRIu64
				   " calls failed (%s); probing in %" PRIu64 " s; %zu held, %zu in "
				   "flight",
				   bi.calls ? bi.failed * 100 / bi.calls : 0, bi.calls,
				   d->open_code[0] ? d->open_code : "unknown",
				   (bi.open_until_usec - MIN(mono, bi.open_until_usec) +
				    USEC_PER_SEC - 1) /
					   USEC_PER_SEC,
				   d->n_held, d->n_jobs);
		else
			sd_notifyf(0,
				   "STATUS=Circuit half-open: probing %s with one message (%s); "
				   "%zu held, %zu in flight",
				   broker_queue(d->broker),
				   d->open_code[0] ? d->open_code : "unknown", d->n_held,
				   d->n_jobs);
		return;
	}
	if (!broker_is_up(d->broker)) {
		sd_notifyf(0,
			   "STATUS=Waiting for the broker at %s (%s); %zu in flight, %" PRIu64
			   " consumed",
			   broker_endpoint(d->broker),
			   broker_last_error(d->broker)[0] ? broker_last_error(d->broker)
							   : "connecting",
			   d->n_jobs, c->consumed);
		return;
	}
	sd_notifyf(0,
		   "STATUS=Consuming %s on %s: %zu in flight, %" PRIu64 " consumed, %" PRIu64
		   " succeeded, %" PRIu64 " retried, %" PRIu64 " dead-lettered",
		   broker_queue(d->broker), broker_endpoint(d->broker), d->n_jobs, c->consumed,
		   c->succeeded, c->retried, c->dead_lettered);
}

/*
 * WATCHDOG=1 at exactly half of WatchdogSec, from a timer of the loop itself:
 * a loop that stops dispatching stops pinging, and systemd kills it.
 */
static int on_watchdog(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct daemon *d = userdata;

	sd_notify(0, "WATCHDOG=1");
	return rearm(s, usec + d->watchdog_usec / 2, "watchdog");
}

static int setup_watchdog(struct daemon *d, uint64_t now)
{
	int r = sd_watchdog_enabled(false, &d->watchdog_usec);

	if (r <= 0) {
		d->watchdog_usec = 0;
		return r;
	}
	r = sd_event_add_time(d->event, &d->watchdog_timer, CLOCK_MONOTONIC,
			      now + d->watchdog_usec / 2, 1, on_watchdog, d);
	if (r < 0)
		return r;
	r = sd_event_source_set_priority(d->watchdog_timer, SD_EVENT_PRIORITY_IMPORTANT);
	if (r < 0)
		log_warning_errno(r, "cannot raise the watchdog timer's priority: %m, ignoring");
	(void)sd_event_source_set_description(d->watchdog_timer, "watchdog"); /* debug only */
	return sd_event_source_set_enabled(d->watchdog_timer, SD_EVENT_ON);
}

static int on_status_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct daemon *d = userdata;

	/* Rare events the broker counts by itself, copied at the status pace. */
	metrics_set_lane_heads_moved(d->metrics, broker_lanes_moved(d->broker));
	notify_status(d);
	return rearm(s, usec + STATUS_INTERVAL_USEC, "status");
}

/* Keeps the last reason the consumer link is down, for STATUS=. */
static void on_connection(void *userdata, bool up)
{
	struct daemon *d = userdata;

	metrics_set_broker_connected(d->metrics, up);
	metrics_set_broker_node(d->metrics, up ? broker_endpoint(d->broker) : NULL);
	if (up) {
		if (d->ready_sent)
			metrics_reconnected(d->metrics);
		if (!d->ready_sent) {
			sd_notify(0, "READY=1");
			d->ready_sent = true;
		}
		notify_status(d);
		return;
	}
	/* Every delivery of that connection goes back to the queue on the
	 * broker's side; stop working on them so they are not run twice at once. */
	while (d->jobs)
		job_free(d->jobs);
	free_retired_handlers(d);
	notify_status(d);
	daemon_check_drained(d);
}

/* Ends the drain now: what is still in flight goes back to the broker. */
static void give_back_and_exit(struct daemon *d)
{
	while (d->jobs)
		job_requeue(d->jobs);
	daemon_exit(d);
}

static int on_drain_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct daemon *d = userdata;

	log_full(LOG_WARNING, 0, &(struct log_ctx){ .event = "drain-timeout", .attempt = -1 },
		 "drain_timeout reached with %zu message(s) in flight; giving them back to the "
		 "broker",
		 d->n_jobs);
	give_back_and_exit(d);
	return 0;
}

static void drain_start(struct daemon *d)
{
	uint64_t now;
	int r;

	if (d->draining)
		return;
	d->draining = true;
	sd_notify(0, "STOPPING=1");
	log_full(LOG_NOTICE, 0, &(struct log_ctx){ .event = "drain-start", .attempt = -1 },
		 "draining %zu in-flight message(s), at most %" PRIu64 " ms", d->n_jobs,
		 d->config->shutdown.drain_timeout_usec / USEC_PER_MSEC);
	broker_stop_consuming(d->broker);
	/* Held deliveries never started: the broker gives them to another worker. */
	gate_give_back(d);
	/* Copies waiting to be published again will not make it before exit. */
	for (struct job *j = d->jobs, *next; j; j = next) {
		next = j->next;
		if (j->state == JOB_BACKOFF)
			job_requeue(j);
	}
	now = daemon_now(d);
	d->drain_deadline = now + d->config->shutdown.drain_timeout_usec;
	r = sd_event_add_time(d->event, &d->drain_timer, CLOCK_MONOTONIC, d->drain_deadline, 0,
			      on_drain_timeout, d);
	if (r < 0) {
		/* No deadline means no bound on the stop: give everything back now
		 * (the broker keeps it) rather than wait without one. */
		log_error_errno(r, "cannot arm the drain deadline: %m; giving the in-flight "
				   "messages back to the broker now");
		give_back_and_exit(d);
		return;
	}
	notify_status(d);
	daemon_check_drained(d);
}

static int on_terminate(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	drain_start(userdata);
	return 0;
}

static bool handler_config_changed(const struct config *a, const struct config *b)
{
	return a->handler.type != b->handler.type ||
	       a->handler.timeout_usec != b->handler.timeout_usec ||
	       a->handler.max_output != b->handler.max_output ||
	       strcmp(a->handler.url ? a->handler.url : "", b->handler.url ? b->handler.url : "") ||
	       strcmp(a->handler.command ? a->handler.command : "",
		      b->handler.command ? b->handler.command : "");
}

static void reload_failed(struct daemon *d, struct diag *diags, const char *what)
{
	/* One reload-failed event per failed reload, after its diagnostics. */
	for (size_t i = 0; i < diags->n; i++)
		log_full(LOG_ERR, 0, &(struct log_ctx){ .event = "reload-error", .attempt = -1 },
			 "reload: %s", diags->lines[i]);
	log_full(LOG_ERR, 0, &(struct log_ctx){ .event = "reload-failed", .attempt = -1 },
		 "reload failed: invalid %s; keeping the running configuration", what);
}

static void reload(struct daemon *d)
{
	_cleanup_(config_freep) struct config *c = NULL;
	_cleanup_(taxonomy_freep) struct taxonomy *t = NULL;
	struct diag diags = { 0 };
	/* RELOADING=1/READY=1 only while ready: a SIGHUP before the broker
	 * came up must not announce READY=1, nor one after STOPPING=1. */
	bool announce = d->ready_sent && !d->draining;
	const char *changed;

	if (announce)
		sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, now_monotonic_usec());
	if (config_load(d->config_path, &c, &diags) < 0) {
		reload_failed(d, &diags, "config");
		goto out;
	}
	if (taxonomy_load(c->retry.taxonomy, &t, &diags) < 0) {
		reload_failed(d, &diags, "taxonomy");
		goto out;
	}
	if ((changed = config_restart_key_changed(d->config, c)))
		log_warning("reload: %s changed; it takes effect at the next restart "
			    "(every [broker] key, [pipeline] queue, queue_type and declare, "
			    "[metrics] listen)",
			    changed);
	if (handler_config_changed(c, d->config)) {
		struct handler *h = NULL;
		struct retired_handler *old = calloc(1, sizeof(*old));
		int r = old ? handler_new(d->event, c, &h) : -ENOMEM;
		if (r < 0) {
			free(old);
			log_error_errno(
				r, "reload: cannot start the new handler: %m; keeping the old one");
			goto out;
		}
		old->h = d->handler;
		old->next = d->retired;
		d->retired = old;
		d->handler = h;
	}
	taxonomy_free(d->taxonomy);
	d->taxonomy = TAKE_PTR(t);
	/* Nothing keeps a pointer into a config (broker, handlers and the
	 * metrics server copy what they use), so the old one goes now. */
	config_free(d->config);
	d->config = TAKE_PTR(c);
	broker_set_limits(d->broker, d->config->pipeline.max_message_size,
			  d->config->pipeline.max_body_memory);
	gate_reload(d);
	free_retired_handlers(d);
	log_full(LOG_NOTICE, 0, &(struct log_ctx){ .event = "reload", .attempt = -1 },
		 "reloaded %s and %s", d->config_path, d->config->retry.taxonomy);
out:
	diag_done(&diags);
	if (announce)
		sd_notify(0, "READY=1");
	notify_status(d);
}

static int on_reload(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	reload(userdata);
	return 0;
}

/* --- DLQ gauges ------------------------------------------------------------- */

static void on_dlq_probe(void *userdata, int r, uint64_t depth, uint64_t oldest_usec)
{
	struct daemon *d = userdata;
	uint64_t now = now_realtime_usec();
	double age = -1; /* unknown: a head without a timestamp, or a quorum DLQ */

	/* -EBUSY: dlqctl is reading the DLQ; the last reading stays. */
	if (r == -EBUSY || r == -EAGAIN)
		return;
	if (r < 0) {
		metrics_set_dlq(d->metrics, -1, 0);
		return;
	}
	if (depth == 0)
		age = 0;
	else if (oldest_usec > 0)
		age = oldest_usec >= now ? 0 : (double)(now - oldest_usec) / USEC_PER_SEC;
	metrics_set_dlq(d->metrics, (int64_t)MIN(depth, (uint64_t)INT64_MAX), age);
}

/* Probes the DLQ every [metrics] dlq_poll_interval (read at each tick, so a
 * reload applies from the next one); 0 leaves the DLQ gauges unknown. */
static int on_dlq_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct daemon *d = userdata;
	uint64_t interval = d->config->metrics.dlq_poll_interval_usec;
	int r = interval ? broker_probe_dlq(d->broker, on_dlq_probe, d) : -ECANCELED;

	/* Busy (a probe or dlqctl) or blocked (resource alarm): keep the last
	 * reading. Anything else: the gauges are unknown. */
	if (r < 0 && r != -EBUSY && r != -EAGAIN)
		metrics_set_dlq(d->metrics, -1, 0);
	return rearm(s, usec + (interval ? interval : 15 * USEC_PER_SEC), "DLQ probe");
}

/* --- setup ------------------------------------------------------------------ */

static int load(const char *path, struct config **c, struct taxonomy **t)
{
	struct diag diags = { 0 };
	int r;

	r = config_load(path, c, &diags);
	if (r >= 0)
		r = taxonomy_load((*c)->retry.taxonomy, t, &diags);
	for (size_t i = 0; i < diags.n; i++)
		log_error("%s", diags.lines[i]);
	diag_done(&diags);
	return r;
}

int daemon_new(const char *config_path, struct daemon **out)
{
	_cleanup_(daemon_freep) struct daemon *d = NULL;
	static const struct broker_callbacks cb = {
		.delivery = job_on_delivery,
		.connection = on_connection,
	};
	sigset_t mask;
	uint64_t now;
	int r;

	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->config_path = strdup(config_path);
	if (!d->config_path)
		return -ENOMEM;
	r = load(config_path, &d->config, &d->taxonomy);
	if (r < 0)
		return r;
	{
		char warning[PATH_MAX + 256];
		if (config_check_secrets(d->config, warning, sizeof(warning)) > 0)
			log_warning("%s", warning);
	}

	r = sd_event_default(&d->event);
	if (r < 0)
		return log_error_errno(r, "cannot create the event loop: %m");
	/* signalfd and child sources need these blocked; children unblock them. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	if ((r = sd_event_add_signal(d->event, NULL, SIGTERM, on_terminate, d)) < 0 ||
	    (r = sd_event_add_signal(d->event, NULL, SIGINT, on_terminate, d)) < 0 ||
	    (r = sd_event_add_signal(d->event, NULL, SIGHUP, on_reload, d)) < 0)
		return log_error_errno(r, "cannot watch signals: %m");
	now = daemon_now(d);
	r = setup_watchdog(d, now);
	if (r < 0)
		log_warning_errno(r, "cannot set up the watchdog: %m, ignoring");
	r = sd_event_add_time(d->event, &d->status_timer, CLOCK_MONOTONIC,
			      now + STATUS_INTERVAL_USEC, USEC_PER_SEC, on_status_timer, d);
	if (r < 0 || (r = sd_event_source_set_enabled(d->status_timer, SD_EVENT_ON)) < 0)
		return log_error_errno(r, "cannot arm the status timer: %m");

	r = metrics_new(&d->metrics);
	if (r < 0)
		return r;
	if (d->config->metrics.listen[0]) {
		r = metrics_server_new(d->event, d->config->metrics.listen, d->metrics,
				       &d->metrics_server);
		if (r < 0)
			return log_error_errno(r, "cannot serve metrics on %s: %m",
					       d->config->metrics.listen);
		log_info("serving metrics on %s (port %d)", d->config->metrics.listen,
			 metrics_server_port(d->metrics_server));
	}
	r = handler_new(d->event, d->config, &d->handler);
	if (r < 0)
		return log_error_errno(r, "cannot set up the %s handler: %m",
				       d->config->handler.type == HANDLER_HTTP ? "http" : "exec");
	r = broker_new(d->event, d->config, &cb, d, &d->broker);
	if (r < 0)
		return log_error_errno(r, "cannot set up the broker connection: %m");
	metrics_set_queue(d->metrics, d->config->pipeline.queue);
	gate_init(d);
	/* The first probe a second in, once the publisher link is likely up. */
	r = sd_event_add_time(d->event, &d->dlq_timer, CLOCK_MONOTONIC, now + USEC_PER_SEC,
			      100 * USEC_PER_MSEC, on_dlq_timer, d);
	if (r < 0 || (r = sd_event_source_set_enabled(d->dlq_timer, SD_EVENT_ON)) < 0)
		return log_error_errno(r, "cannot arm the DLQ probe timer: %m");
	*out = TAKE_PTR(d);
	return 0;
}

int daemon_run(struct daemon *d)
{
	struct metrics_totals t;
	int r;

	log_full(LOG_NOTICE, 0, &(struct log_ctx){ .event = "start", .attempt = -1 },
		 "dlqd %s starting: queue %s, %s handler, prefetch %u", DLQD_VERSION,
		 d->config->pipeline.queue,
		 d->config->handler.type == HANDLER_HTTP ? "http" : "exec",
		 d->config->broker.prefetch);
	sd_notifyf(0, "STATUS=Connecting to the broker at %s", broker_endpoint(d->broker));
	r = broker_start(d->broker);
	if (r < 0)
		return r;
	r = sd_event_loop(d->event);
	if (r < 0)
		return log_error_errno(r, "event loop failed: %m");
	metrics_totals(d->metrics, &t);
	log_full(LOG_NOTICE, 0, &(struct log_ctx){ .event = "stop", .attempt = -1 },
		 "stopped: %" PRIu64 " consumed, %" PRIu64 " succeeded, %" PRIu64
		 " retried, %" PRIu64 " dead-lettered",
		 t.consumed, t.succeeded, t.retried, t.dead_lettered);
	return r;
}

struct daemon *daemon_free(struct daemon *d)
{
	if (!d)
		return NULL;
	while (d->jobs)
		job_free(d->jobs);
	while (d->spare_jobs) {
		struct job *j = d->spare_jobs;
		d->spare_jobs = j->next;
		free(j);
	}
	/* Closing the connection hands every unacked delivery back. */
	d->broker = broker_free(d->broker);
	d->handler = handler_free(d->handler);
	while (d->retired) {
		struct retired_handler *r = d->retired;
		d->retired = r->next;
		handler_free(r->h);
		free(r);
	}
	d->metrics_server = metrics_server_free(d->metrics_server);
	d->metrics = metrics_free(d->metrics);
	gate_done(d);
	sd_event_source_disable_unref(d->drain_timer);
	sd_event_source_disable_unref(d->status_timer);
	sd_event_source_disable_unref(d->dlq_timer);
	sd_event_source_disable_unref(d->watchdog_timer);
	taxonomy_free(d->taxonomy);
	config_free(d->config);
	sd_event_unref(d->event);
	free(d->config_path);
	free(d);
	return NULL;
}

void daemon_freep(struct daemon **d)
{
	*d = daemon_free(*d);
}
