/*
 * ctlrun: one dlqctl command, run to its end (docs/dlqctl.md). main.c
 * parses the options into struct ctl_options (ctlopts.h); ctlrun() loads the config,
 * refuses what needs --all or --yes, connects, and makes one pass over
 * <queue>.dlq in order: stats, list and show only read (the messages go
 * back in place when the connection closes), replay and purge ack exactly
 * the messages they moved or deleted. Memory is bounded by the window
 * (window.h), never by the DLQ's depth. replay.c and purge.c act on each
 * match, ctlout.c prints what a run shows; struct ctl is the state they
 * share.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/config.h"
#include "dlqctl/archive.h"
#include "dlqctl/ctlexit.h"
#include "dlqctl/ctlopts.h"
#include "dlqctl/dlqscan.h"
#include "dlqctl/dlqstats.h"
#include "dlqctl/ratelimit.h"
#include "dlqctl/window.h"

/* How long one wait for a delivery or a confirm may block. */
#define CTLRUN_READ_TIMEOUT_USEC (200 * USEC_PER_MSEC)

/* Runs the command; returns its exit status (ctlexit.h). */
int ctlrun(const struct ctl_options *o);

/* ---- the state of a run, shared with ctlout.c ---- */
struct ctl {
	const struct ctl_options *o;
	struct config *config;
	char dlq[256];
	struct dlqscan *scan;
	struct ratelimit rl;
	struct dlqstats stats;

	/* progress */
	bool tty;
	uint64_t t0, last_progress;
	uint64_t depth, scanned, matched, done, refused;

	struct window win;
	bool stop_acking; /* after a basic.return: which publish it was is unknown */
	bool stalled;	  /* the broker stopped delivering before the end */
	int fatal;	  /* first error, -errno */
	char err[512];

	struct archive archive; /* fd -1 without --archive */
	uint64_t archive_flushed_at;
};

/* True once SIGINT or SIGTERM asked the run to stop. */
bool ctlrun_interrupted(void);
/* Records the first error (-errno and its one-line reason); it stops the run. */
void ctlrun_fail(struct ctl *c, int r, const char *msg);
