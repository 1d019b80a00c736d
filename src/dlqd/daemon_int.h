/*
 * daemon_int: what daemon.c (the loop, signals, drain, reload, status) and
 * job.c (one message's life) share: the daemon object and the job. Private
 * to src/dlqd.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "common/config.h"
#include "common/copy.h"
#include "common/envelope.h"
#include "common/result.h"
#include "common/taxonomy.h"
#include "dlqd/breaker.h"
#include "dlqd/broker.h"
#include "dlqd/budget.h"
#include "dlqd/handler.h"
#include "dlqd/router.h"

enum job_state {
	JOB_HELD,	/* decoded, waiting for the gate (breaker, ramp) to start it */
	JOB_HANDLING,	/* the handler runs */
	JOB_PUBLISHING, /* waiting for the broker to confirm the copy */
	JOB_BACKOFF,	/* the copy was refused; trying again later */
};

struct job {
	struct daemon *d;
	struct job *prev, *next;
	struct job *held_prev, *held_next; /* JOB_HELD: the gate's FIFO */
	enum job_state state;
	bool running;  /* a handler call counted in d->n_running */
	bool probe;    /* the breaker's half-open probe */
	bool deferred; /* the retry budget put it back: a deferred copy, no attempt */
	struct broker_msg *msg;
	struct envelope *env; /* NULL when the body is not a valid envelope */
	const char *payload;  /* into msg->body */
	size_t payload_len;
	struct handler *handler;
	struct handler_job hj;
	/* A failure's outcome, which its copy quotes (copy.h); NULL after a
	 * success, the common case, which needs none of its kilobyte. */
	struct result *result;
	struct route route;
	char error_code[64];
	char cause_code[64];
	char detail[256]; /* why the body is not an envelope, or is poison */
	/* The poison guard's verdict on a redelivered delivery (router.h);
	 * POISON_HANDLE for every other one. */
	enum poison_action guard;
	uint64_t redeliveries; /* the count router_poison() read, when redelivered */
	struct copy *copy;     /* what to publish after a failure (copy.h); job_copy() */
	uint64_t next_retry_at_usec;
	uint64_t publish_id;
	bool publish_pending;
	unsigned publish_failures;
	sd_event_source *backoff;
};

/* A handler replaced by a reload; freed once its last job finished. */
struct retired_handler {
	struct handler *h;
	struct retired_handler *next;
};

struct daemon {
	sd_event *event;
	char *config_path;
	struct config *config; /* current */
	struct taxonomy *taxonomy;
	struct broker *broker;
	struct handler *handler;
	struct retired_handler *retired;

	struct job *jobs;
	size_t n_jobs;
	/* Finished jobs kept for reuse, at most prefetch of them: a job is
	 * larger than malloc's small chunks, and allocating one per message made
	 * glibc consolidate its fastbins on every delivery (measured, bench/). */
	struct job *spare_jobs;
	size_t n_spare_jobs;
	bool ready_sent;
	bool draining;
	bool drained;		 /* drain-done was logged and the loop told to exit */
	uint64_t drain_deadline; /* CLOCK_MONOTONIC */
	sd_event_source *drain_timer, *status_timer;
	struct metrics *metrics;
	struct metrics_server *metrics_server;
	sd_event_source *dlq_timer; /* [metrics] dlq_poll_interval */
	sd_event_source *watchdog_timer;
	uint64_t watchdog_usec; /* WatchdogSec=, 0 when off */

	/* gate.c: the circuit breaker, the gentle resume and the retry budget. */
	struct breaker breaker;
	struct budget budget;
	struct job *held_head, *held_tail; /* decoded, not started, in arrival order */
	size_t n_held;
	size_t n_running; /* handler calls in flight */
	bool pumping, pump_again;
	sd_event_source *breaker_timer;
	enum breaker_state last_state;
	uint32_t last_limit;
	char trip_code[64]; /* the code of the last tripping failure */
	char open_code[64]; /* ... when the breaker last opened */
};

/* job.c: the broker's delivery callback; the job owns m from here. */
void job_on_delivery(void *userdata, struct broker_msg *m);
/* Hands the delivery back to the broker for another try, now, and ends the job. */
void job_requeue(struct job *j);
/* Frees j without settling it (at exit: the broker keeps the message). */
struct job *job_free(struct job *j);
/* Frees the handlers a reload replaced once their last job is over. */
void free_retired_handlers(struct daemon *d);

/* job.c: calls the handler for a job the gate started (d->n_running counts it). */
void job_start(struct job *j);
/* job.c: publishes the deferred copy of a retry the budget did not admit. */
void job_defer(struct job *j);

/*
 * gate.c: which decoded job calls the handler when. gate_init() and
 * gate_reload() take the [breaker] and [retry] budget_* keys of d->config.
 * gate_offer() takes a decoded job (it may start, hold or defer it at once);
 * gate_record() counts a finished handler call (after the router decided);
 * gate_forget() is job_free()'s: a held job leaves the FIFO, a running one
 * its slot, a probe is cancelled. gate_give_back() requeues every held job
 * (drain). gate_pump() starts what may start now.
 */
void gate_init(struct daemon *d);
void gate_reload(struct daemon *d);
void gate_offer(struct job *j);
void gate_record(struct job *j);
void gate_forget(struct job *j);
void gate_give_back(struct daemon *d);
void gate_pump(struct daemon *d);
void gate_done(struct daemon *d);

/* daemon.c: ends the loop once a drain has no job left. */
void daemon_check_drained(struct daemon *d);
/* Ends the loop (logged if it cannot). */
void daemon_exit(struct daemon *d);
/* The loop's CLOCK_MONOTONIC time of this iteration. */
uint64_t daemon_now(struct daemon *d);
