/*
 * handler_exec: runs [handler] command once per message as a child process
 * inside the daemon's sd-event loop. No threads, no blocking calls: the
 * payload is written to the child's stdin, stdout and stderr are read, the
 * exit is watched and the timeout is timed, all through event sources.
 *
 * Lifecycle of one job:
 *  - submit() spawns the command (posix_spawn: vfork speed, no shell) in its
 *    own process group, with an empty signal mask and default dispositions,
 *    stdin/stdout/stderr on pipes and every other fd closed;
 *  - the job completes when the child has exited AND both output pipes are at
 *    EOF, or at most EOF_GRACE_USEC after the exit, because a grandchild may
 *    keep the pipes open forever;
 *  - on timeout the process group gets SIGTERM, then SIGKILL after
 *    MIN(1s, timeout / 10); when the leader exits after a timeout the group is
 *    SIGKILLed again, so nothing that ignored SIGTERM survives the job;
 *  - a cancelled job gets SIGKILL at once and stays here, invisible to the
 *    caller, until its child is reaped: no done(), no zombie.
 *
 * This file holds the backend object, that life and the verdict: what the
 * exit, the timeout or a failed spawn mean as a result. exec_spawn.c starts
 * the child and exec_io.c runs its pipes (see exec_int.h).
 *
 * Requires SIGCHLD to be blocked (sd_event_add_child() does).
 */
#include "dlqd/handler.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "common/log.h"
#include "common/strv.h"
#include "common/util.h"
#include "exec_int.h"

/* After the child exited, how long to wait for EOF on its output pipes. */
#define EOF_GRACE_USEC (100 * USEC_PER_MSEC)
/* Longest wait between SIGTERM and SIGKILL on timeout. */
#define KILL_GRACE_MAX_USEC USEC_PER_SEC
/* Timers fire within this much of their deadline. */
#define TIMER_ACCURACY_USEC USEC_PER_MSEC

/* Frees x and its sources; the child must be reaped or handed over first. */
static void exec_job_free(struct exec_job *x)
{
	if (x->prev)
		x->prev->next = x->next;
	else
		x->h->jobs = x->next;
	if (x->next)
		x->next->prev = x->prev;
	exec_io_close(x);
	x->timer_src = sd_event_source_disable_unref(x->timer_src);
	x->defer_src = sd_event_source_disable_unref(x->defer_src);
	x->child_src = sd_event_source_disable_unref(x->child_src);
	free(x);
}

/* Signals the whole group; only valid while the leader is not yet reaped,
 * since only then is its pid guaranteed to still name our group. */
static void exec_job_kill(struct exec_job *x, int sig)
{
	if (x->pid > 0 && !x->exited)
		(void)kill(-x->pid, sig);
}

/* The handler's own verdict: {"error_code": "X", "error_class": "Y"} as the
 * last non-empty stdout line. Anything malformed is ignored, never fatal. */
static void parse_error_report(const struct exec_job *x, struct result *r)
{
	if (x->last_len > 0 && x->last[0] == '{')
		result_parse_report(r, x->last, x->last_len);
}

static void fill_evidence(const struct exec_job *x, struct result *r)
{
	const char *p = x->tail;
	size_t n = x->tail_len;

	r->evidence_truncated = x->stderr_total > n;
	/* A cut tail may start inside a UTF-8 sequence: drop the orphan bytes. */
	if (r->evidence_truncated)
		while (n > 0 && ((unsigned char)*p & 0xC0) == 0x80) {
			p++;
			n--;
		}
	memcpy(r->evidence, p, n);
	r->evidence[n] = '\0';
	r->evidence_len = n;
}

static void build_result(const struct exec_job *x, struct result *r)
{
	const char *path = x->h->argv[0];

	if (x->spawn_error) {
		int e = x->spawn_error;

		switch (e) {
		case ENOENT:
		case ENOTDIR:
		case ELOOP:
		case ENAMETOOLONG:
			/* Like a shell: 127 "not found", 126 "found but not
			 * runnable". A deploy problem that the taxonomy can
			 * classify, not a dlqd failure. */
			result_init(r, RESULT_EXIT);
			r->exit_code = 127;
			break;
		case EACCES:
		case EPERM:
		case ENOEXEC:
		case ETXTBSY:
		case EISDIR:
		case ELIBBAD:
			result_init(r, RESULT_EXIT);
			r->exit_code = 126;
			break;
		default:
			result_init(r, RESULT_INTERNAL);
			snprintf(r->detail, sizeof(r->detail), "cannot spawn %s: %s", path,
				 strerror(e));
			return;
		}
		snprintf(r->detail, sizeof(r->detail), "cannot execute %s: %s", path, strerror(e));
		/* What a shell would have printed on stderr. */
		strscpy(r->evidence, r->detail, sizeof(r->evidence));
		r->evidence_len = strlen(r->evidence);
		return;
	}

	if (x->timed_out) {
		result_init(r, RESULT_TIMEOUT);
		r->signal = x->kill_signal;
		snprintf(r->detail, sizeof(r->detail),
			 "timed out after %" PRIu64 "ms, process group sent SIG%s",
			 x->h->base.timeout_usec / USEC_PER_MSEC,
			 sigabbrev_np(x->kill_signal) ?: "?");
	} else if (x->si.si_code == CLD_EXITED && x->si.si_status == 0) {
		result_init(r, RESULT_SUCCESS);
	} else if (x->si.si_code == CLD_EXITED) {
		result_init(r, RESULT_EXIT);
		r->exit_code = x->si.si_status;
		snprintf(r->detail, sizeof(r->detail), "exited with status %d", r->exit_code);
	} else {
		result_init(r, RESULT_SIGNAL);
		r->signal = x->si.si_status;
		snprintf(r->detail, sizeof(r->detail), "killed by SIG%s%s",
			 sigabbrev_np(r->signal) ?: "?",
			 x->si.si_code == CLD_DUMPED ? " (core dumped)" : "");
	}
	fill_evidence(x, r);
	if (r->kind != RESULT_SUCCESS)
		parse_error_report(x, r);
}

/*
 * Hands the result to the caller. Our state is gone before done() runs, so
 * done() may free the job, cancel others or even free the handler.
 */
static void exec_job_complete(struct exec_job *x)
{
	struct handler_job *job = x->job;
	struct result r;

	build_result(x, &r);
	r.duration_usec = now_monotonic_usec() - x->start_usec;
	job->priv = NULL;
	x->h->base.in_flight--;
	exec_job_free(x);
	job->done(job, &r);
}

void exec_job_maybe_complete(struct exec_job *x)
{
	if (x->exited && x->stdout_fd < 0 && x->stderr_fd < 0)
		exec_job_complete(x);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct exec_job *x = userdata;
	int r;

	if (x->exited) {
		/* EOF grace over: a grandchild holds the pipes, stop waiting. */
		exec_io_close(x);
		exec_job_complete(x);
		return 0;
	}
	x->timed_out = true;
	if (x->kill_signal == 0 && x->h->kill_grace_usec > 0) {
		x->kill_signal = SIGTERM;
		exec_job_kill(x, SIGTERM);
		r = sd_event_source_set_time_relative(s, x->h->kill_grace_usec);
		if (r >= 0)
			r = sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
		if (r >= 0)
			return 0;
		log_warning_errno(r,
				  "cannot arm the kill grace timer of job pid %d: %m, "
				  "sending SIGKILL at once",
				  (int)x->pid);
	}
	x->kill_signal = SIGKILL;
	exec_job_kill(x, SIGKILL);
	return 0;
}

static void reap(pid_t pid)
{
	siginfo_t si;

	/* sd-event would reap after this callback too; doing it here makes "no
	 * zombie" independent of when the source is released. */
	while (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG) < 0 && errno == EINTR)
		;
}

static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata)
{
	struct exec_job *x = userdata;
	int r;

	if (!x) {
		/* Orphaned by handler free(): only the reaping is left. */
		reap(si->si_pid);
		sd_event_source_disable_unref(s);
		return 0;
	}
	/* The leader is still unreaped, so its pid still names the group. */
	if (x->timed_out || !x->job)
		(void)kill(-x->pid, SIGKILL);
	x->si = *si;
	reap(x->pid);
	x->exited = true;
	if (!x->job) {
		exec_job_free(x);
		return 0;
	}
	/* Nobody is left to read the rest of the payload. */
	exec_io_close_stdin(x);
	if (x->stdout_fd >= 0 || x->stderr_fd >= 0) {
		x->timer_src = sd_event_source_disable_unref(x->timer_src);
		r = sd_event_add_time_relative(x->h->base.event, &x->timer_src, CLOCK_MONOTONIC,
					       EOF_GRACE_USEC, TIMER_ACCURACY_USEC, on_timer, x);
		if (r < 0) {
			log_warning_errno(r,
					  "cannot wait for the output of job pid %d: %m, "
					  "completing without it",
					  (int)x->pid);
			exec_io_close(x);
		}
	}
	exec_job_maybe_complete(x);
	return 0;
}

static int on_spawn_failed(sd_event_source *s, void *userdata)
{
	exec_job_complete(userdata);
	return 0;
}

static int exec_job_start(struct exec_handler *h, struct exec_job *x)
{
	sd_event *e = h->base.event;
	int fd[3];
	int r;

	r = exec_spawn(h->argv, x->job, fd, &x->pid);
	x->stdin_fd = fd[0];
	x->stdout_fd = fd[1];
	x->stderr_fd = fd[2];
	if (r < 0) {
		x->spawn_error = -r;
		x->exited = true;
		x->pid = 0;
		return sd_event_add_defer(e, &x->defer_src, on_spawn_failed, x);
	}

	r = sd_event_add_child(e, &x->child_src, x->pid, WEXITED, on_child, x);
	if (r < 0) {
		/* Without a watch we cannot reap asynchronously; the child was
		 * just born, so killing and waiting is short. */
		(void)kill(-x->pid, SIGKILL);
		while (waitpid(x->pid, NULL, 0) < 0 && errno == EINTR)
			;
		x->exited = true;
		return r;
	}
	if ((r = exec_io_start(x)) < 0)
		goto fail;
	if (h->base.timeout_usec > 0 && h->base.timeout_usec != USEC_INFINITY &&
	    (r = sd_event_add_time_relative(e, &x->timer_src, CLOCK_MONOTONIC, h->base.timeout_usec,
					    TIMER_ACCURACY_USEC, on_timer, x)) < 0)
		goto fail;
	return 0;

fail:
	/* Let the child watch reap it; the caller sees only the error. */
	exec_io_close(x);
	exec_job_kill(x, SIGKILL);
	x->job = NULL;
	return r;
}

static int exec_submit(struct handler *base, struct handler_job *job)
{
	struct exec_handler *h = (struct exec_handler *)base;
	struct exec_job *x;
	size_t cap;
	int r;

	if (!job || !job->done || !job->message_id || (!job->payload && job->payload_len))
		return -EINVAL;
	if (base->in_flight >= h->max_jobs)
		return -EBUSY;

	/* The evidence field bounds the tail whatever max_output says. */
	cap = MIN(base->max_output, sizeof(((struct result *)0)->evidence) - 1);
	x = calloc(1, sizeof(*x) + cap);
	if (!x)
		return -ENOMEM;
	x->h = h;
	x->job = job;
	x->tail_cap = cap;
	x->stdin_fd = x->stdout_fd = x->stderr_fd = -1;
	x->start_usec = now_monotonic_usec();
	x->next = h->jobs;
	if (h->jobs)
		h->jobs->prev = x;
	h->jobs = x;

	r = exec_job_start(h, x);
	if (r < 0) {
		/* A child that is still running stays listed until reaped. */
		if (x->exited)
			exec_job_free(x);
		else
			x->job = NULL;
		return r;
	}
	job->priv = x;
	base->in_flight++;
	return 0;
}

static void exec_cancel(struct handler *base, struct handler_job *job)
{
	struct exec_job *x = job ? job->priv : NULL;

	if (!x || x->job != job)
		return;
	job->priv = NULL;
	base->in_flight--;
	x->job = NULL;
	exec_io_close(x);
	x->timer_src = sd_event_source_disable_unref(x->timer_src);
	if (x->exited) {
		exec_job_free(x);
		return;
	}
	/* Keep the child watch: on_child reaps and frees, without done(). */
	exec_job_kill(x, SIGKILL);
}

static void exec_free(struct handler *base)
{
	struct exec_handler *h = (struct exec_handler *)base;

	while (h->jobs) {
		struct exec_job *x = h->jobs;

		if (x->job) {
			bool gone = x->exited; /* then cancel frees it */

			exec_cancel(base, x->job);
			if (gone)
				continue;
		}
		if (!x->exited && x->child_src) {
			/* SIGKILL was sent; hand the watch to the loop so the
			 * child is reaped later without blocking here. (Setting
			 * the userdata returns the old one, not an error.) */
			(void)sd_event_source_set_userdata(x->child_src, NULL);
			if (sd_event_source_set_floating(x->child_src, true) >= 0) {
				x->child_src = sd_event_source_unref(x->child_src);
			} else {
				while (waitpid(x->pid, NULL, 0) < 0 && errno == EINTR)
					;
			}
		}
		exec_job_free(x);
	}
	strv_free(h->argv);
	sd_event_unref(base->event);
	free(h);
}

static const struct handler_ops exec_ops = {
	.name = "exec",
	.submit = exec_submit,
	.cancel = exec_cancel,
	.free = exec_free,
};

int handler_exec_new(sd_event *e, const struct config *c, struct handler **out)
{
	struct exec_handler *h;
	sigset_t mask;

	if (!e || !c || !out || !c->handler.argv || !c->handler.argv[0] || !c->handler.argv[0][0])
		return -EINVAL;
	/* sd-event can only watch children while SIGCHLD is blocked; say so
	 * now rather than on the first message. */
	if (sigprocmask(SIG_SETMASK, NULL, &mask) < 0)
		return -errno;
	if (!sigismember(&mask, SIGCHLD))
		return -EBUSY;

	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->argv = strv_copy(c->handler.argv);
	if (!h->argv) {
		free(h);
		return -ENOMEM;
	}
	h->base.ops = &exec_ops;
	h->base.event = sd_event_ref(e);
	h->base.timeout_usec = c->handler.timeout_usec;
	h->base.max_output = (size_t)MIN(c->handler.max_output, (uint64_t)SIZE_MAX);
	h->max_jobs = c->broker.prefetch > 0 ? c->broker.prefetch : UINT32_MAX;
	h->kill_grace_usec = MIN(KILL_GRACE_MAX_USEC, c->handler.timeout_usec / 10);
	*out = &h->base;
	return 0;
}
