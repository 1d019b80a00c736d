/*
 * exec_int: what the exec backend's files share and nothing else sees: the
 * handler object, one job's state, and what each concern offers the others.
 * The contract with the daemon is include/dlqd/handler.h.
 *
 *   handler_exec.c  the backend object and a job's life: submit, timeout,
 *                   SIGTERM then SIGKILL, reap, cancel, and the verdict
 *   exec_spawn.c    starting the child: pipes, environment, posix_spawn in
 *                   its own process group
 *   exec_io.c       the pipes: the payload into stdin, stdout and stderr
 *                   read within their bounds
 */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "dlqd/handler.h"

/* Longest stdout line that can carry an error_code report. */
#define STDOUT_LINE_MAX 512

struct exec_handler;

struct exec_job {
	struct exec_handler *h;
	struct handler_job *job; /* NULL once cancelled */
	struct exec_job *prev, *next;

	pid_t pid; /* also the process group id */
	sd_event_source *child_src;
	sd_event_source *timer_src;
	sd_event_source *defer_src;
	sd_event_source *stdin_src, *stdout_src, *stderr_src;
	int stdin_fd, stdout_fd, stderr_fd;
	size_t written;
	uint64_t start_usec;

	bool exited; /* reaped (or never started) */
	bool timed_out;
	int kill_signal; /* last signal sent to the group on timeout */
	siginfo_t si;
	int spawn_error; /* errno of a failed spawn, 0 if none */

	/* The last bytes of stderr: a sliding window of tail_cap bytes. */
	uint64_t stderr_total;
	size_t tail_len, tail_cap;

	/* stdout: the line being read and the last complete non-empty one. */
	char line[STDOUT_LINE_MAX];
	size_t line_len;
	bool line_overflow;
	char last[STDOUT_LINE_MAX];
	size_t last_len;

	char tail[]; /* tail_cap bytes */
};

struct exec_handler {
	struct handler base; /* first: handler_* casts between the two */
	char **argv;
	unsigned max_jobs;
	uint64_t kill_grace_usec;
	struct exec_job *jobs; /* running and cancelled-but-unreaped jobs */
};

/* handler_exec.c: completes x (done()) once the child is reaped and both
 * output pipes are closed; x may be gone afterwards. */
void exec_job_maybe_complete(struct exec_job *x);

/*
 * exec_spawn.c: starts argv for job on three fresh pipes. On success *pid is
 * the child (and its process group) and fd[0..2] are our ends: stdin's write
 * end (non-blocking), stdout's and stderr's read ends. On failure returns
 * -errno (of the spawn itself, or of making the pipes) and fd[0..2] are -1.
 */
int exec_spawn(char *const *argv, const struct handler_job *job, int fd[3], pid_t *pid);

/* exec_io.c: watches x's three pipes; the payload is written, the output
 * read, and each pipe closed at its end. 0 or -errno (pipes left open). */
int exec_io_start(struct exec_job *x);
/* Stops watching and closes all three pipes; idempotent. */
void exec_io_close(struct exec_job *x);
/* Stops watching and closes stdin alone: nobody is left to read it. */
void exec_io_close_stdin(struct exec_job *x);
