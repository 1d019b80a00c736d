/*
 * ctlexit: dlqctl's exit status (docs/dlqctl.md, "Exit status"), decided in
 * one place. Everything in dlqctl returns -errno; what an error means to a
 * script depends on where the run was when it happened, so the caller
 * passes that stage along and ctlexit_code() looks both up in one table.
 * Pure.
 */
#pragma once

#include <stdbool.h>

/* The documented codes; nothing else in dlqctl names them. */
enum ctlexit {
	CTLEXIT_OK = 0,
	CTLEXIT_FAILED = 1,	 /* failed mid-way (broker error, publish refused, archive) */
	CTLEXIT_USAGE = 2,	 /* bad option, bad filter, bad config */
	CTLEXIT_UNREACHABLE = 3, /* cannot connect or log in */
	CTLEXIT_NO_QUEUE = 4,	 /* the DLQ (or, for replay, the main queue) is missing */
	CTLEXIT_REFUSED = 5,	 /* no filter without --all, purge without --yes, blocked schema */
	CTLEXIT_NOT_FOUND = 6,	 /* show: no such message */
	CTLEXIT_INTERRUPTED = 130,
};

/* Where a run was when it stopped. */
enum ctlexit_stage {
	CTLEXIT_ARGS,	 /* options, filters, the config file */
	CTLEXIT_POLICY,	 /* refused before reaching the broker */
	CTLEXIT_CONNECT, /* connecting and logging in */
	CTLEXIT_QUEUE,	 /* sizing the DLQ and, for replay, the main queue */
	CTLEXIT_RUN,	 /* the scan: any error stopped it mid-way */
	/* The run finished; error names what it found: -ENOENT no message with
	 * the id (show), -EPERM blocked schema versions left in the DLQ,
	 * -EAGAIN the broker stopped delivering before the end. */
	CTLEXIT_RESULT,
};

/*
 * The exit status for a run that stopped at stage with error (0 or
 * -errno). A signal (interrupted) turns a clean stop into 130, but never
 * hides a failure: an error that stopped the run still exits non-zero.
 */
int ctlexit_code(enum ctlexit_stage stage, int error, bool interrupted);
