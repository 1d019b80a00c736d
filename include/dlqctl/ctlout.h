/*
 * ctlout: what a dlqctl run prints. Results go to stdout; errors, warnings
 * and summaries to stderr, one line each, prefixed "dlqctl: "; a progress
 * line on stderr when it is a terminal. Every text taken from a message
 * goes through dlqtext first, so a hostile message cannot reach the
 * operator's terminal raw.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "dlqctl/ctlrun.h"

/* "dlqctl: <message>\n" on stderr. */
void ctlout_say(const char *fmt, ...) _printf_(1, 2);

/* Redraws the progress line (at most every 0.5 s unless force); tty only. */
void ctlout_progress(struct ctl *c, bool force);
/* Clears the progress line so a full line can follow. */
void ctlout_clear_progress(struct ctl *c);

/* One list row (the header before the first), or one JSON line; -EPIPE, -ENOMEM. */
int ctlout_list_row(struct ctl *c, const struct dlqscan_delivery *d, const struct dlq_record *r,
		    uint64_t now_usec);
/* One show document; -EPIPE, -ENOMEM. */
int ctlout_show(struct ctl *c, const struct dlqscan_delivery *d, const struct dlq_record *r,
		uint64_t now_usec);
/* The audit line of one purged message (journald or stderr). */
void ctlout_purged(struct ctl *c, const struct pending *p);

/* The end of a run: the stats, the listed count, the replay/purge summary. */
void ctlout_summary(struct ctl *c);
