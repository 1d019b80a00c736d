/*
 * ctlopts: the options of one dlqctl run (main.c fills them from the
 * command line) and the decisions that follow from the options alone:
 * which combinations are usage errors, what is refused before the broker
 * is reached, which messages replay must leave in place, when --limit is
 * reached. Pure: the reasons come back as text for the caller to print.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dlqctl/dlqfilter.h"
#include "dlqctl/dlqrecord.h"

#define CTLOPTS_DEFAULT_RATE	10
#define CTLOPTS_RATE_MAX	100000
#define CTLOPTS_DEFAULT_MAX_RUN (25 * 60 * USEC_PER_SEC)

enum ctl_command { CTL_STATS, CTL_LIST, CTL_SHOW, CTL_REPLAY, CTL_PURGE };

struct ctl_options {
	enum ctl_command cmd;
	const char *config_path;
	struct dlqfilter filter;
	bool json, all, dry_run, force, yes;
	bool rate_given; /* --rate was on the command line */
	uint64_t limit;	 /* 0 = none */
	uint64_t rate;	 /* replays per second */
	uint64_t max_run_usec;
	const char *archive_path; /* purge; NULL = none */
	const char *show_id;	  /* show */
};

/* -EINVAL and why when an option does not go with the command. */
int ctlopts_check(const struct ctl_options *o, char *why, size_t n);

/*
 * -EPERM and why when the run must not start: replay or purge without a
 * filter or --all, purge without --yes (unless --dry-run).
 */
int ctlopts_refusal(const struct ctl_options *o, char *why, size_t n);

/* Whether replay must leave r in the DLQ: a blocked schema_version without --force. */
bool ctlopts_schema_blocked(const struct ctl_options *o, char *const *blocked,
			    const struct dlq_record *r);

/*
 * Whether --limit is reached: replay counts what it replayed plus what
 * awaits a confirm (in_flight), the other commands what matched.
 */
bool ctlopts_limit_reached(const struct ctl_options *o, uint64_t matched, uint64_t replayed,
			   uint64_t in_flight);
