/*
 * handler: the interface between the daemon and the code that does the job.
 * Two backends implement it: handler_http (libcurl multi) and handler_exec
 * (child processes). Both run inside the daemon's sd-event loop, never block,
 * and accept up to [broker] prefetch jobs at once.
 */
#pragma once

#include <stdint.h>
#include <systemd/sd-event.h>

#include "common/config.h"
#include "common/result.h"

struct handler_job;
typedef void (*handler_done_fn)(struct handler_job *job, const struct result *r);

/*
 * One unit of work. The caller owns the struct and the strings it points to
 * and keeps them alive until done() runs or handler_cancel() returns.
 */
struct handler_job {
	const char *message_id;
	const char *trace_id; /* "" when none */
	uint32_t attempt;     /* failures so far (X-Attempt, DLQD_ATTEMPT) */
	uint32_t max_attempt; /* DLQD_MAX_ATTEMPT */
	const char *payload;  /* JSON text */
	size_t payload_len;
	handler_done_fn done; /* called exactly once, from the event loop */
	void *userdata;
	void *priv; /* the backend's per-job state */
};

struct handler;

struct handler_ops {
	const char *name;
	/* Starts job; done() is never called from inside submit(). */
	int (*submit)(struct handler *h, struct handler_job *job);
	/* Stops job (kills the child / aborts the request); done() is not called. */
	void (*cancel)(struct handler *h, struct handler_job *job);
	/* Cancels every job and frees the backend. */
	void (*free)(struct handler *h);
};

struct handler {
	const struct handler_ops *ops;
	sd_event *event;
	uint64_t timeout_usec;
	size_t max_output;
	unsigned in_flight;
};

/* Creates the backend that config->handler.type names. */
int handler_new(sd_event *e, const struct config *c, struct handler **out);
int handler_http_new(sd_event *e, const struct config *c, struct handler **out);
int handler_exec_new(sd_event *e, const struct config *c, struct handler **out);

int handler_submit(struct handler *h, struct handler_job *job);
void handler_cancel(struct handler *h, struct handler_job *job);
struct handler *handler_free(struct handler *h);
void handler_freep(struct handler **h);
