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
 * Requires SIGCHLD to be blocked (sd_event_add_child() does).
 */
#include "dlqd/handler.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/strv.h"
#include "common/util.h"

extern char **environ;

/* After the child exited, how long to wait for EOF on its output pipes. */
#define EOF_GRACE_USEC (100 * USEC_PER_MSEC)
/* Longest wait between SIGTERM and SIGKILL on timeout. */
#define KILL_GRACE_MAX_USEC USEC_PER_SEC
/* Timers fire within this much of their deadline. */
#define TIMER_ACCURACY_USEC USEC_PER_MSEC
/* Longest stdout line that can carry an error_code report. */
#define STDOUT_LINE_MAX 512
/* Bytes read per read() call, and read() calls per wakeup (fairness). */
#define READ_CHUNK	 16384
#define READS_PER_WAKEUP 8

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

static void pipe_close(sd_event_source **src, int *fd)
{
	*src = sd_event_source_disable_unref(*src);
	closep(fd);
}

static void exec_job_close_pipes(struct exec_job *x)
{
	pipe_close(&x->stdin_src, &x->stdin_fd);
	pipe_close(&x->stdout_src, &x->stdout_fd);
	pipe_close(&x->stderr_src, &x->stderr_fd);
}

/* Frees x and its sources; the child must be reaped or handed over first. */
static void exec_job_free(struct exec_job *x)
{
	if (x->prev)
		x->prev->next = x->next;
	else
		x->h->jobs = x->next;
	if (x->next)
		x->next->prev = x->prev;
	exec_job_close_pipes(x);
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

static void exec_job_maybe_complete(struct exec_job *x)
{
	if (x->exited && x->stdout_fd < 0 && x->stderr_fd < 0)
		exec_job_complete(x);
}

static void feed_stderr(struct exec_job *x, const char *p, size_t n)
{
	size_t cap = x->tail_cap;

	x->stderr_total += n;
	if (cap == 0)
		return;
	if (n >= cap) {
		memcpy(x->tail, p + n - cap, cap);
		x->tail_len = cap;
		return;
	}
	if (x->tail_len + n > cap) {
		size_t drop = x->tail_len + n - cap;

		memmove(x->tail, x->tail + drop, x->tail_len - drop);
		x->tail_len -= drop;
	}
	memcpy(x->tail + x->tail_len, p, n);
	x->tail_len += n;
}

static void stdout_end_line(struct exec_job *x)
{
	size_t n = x->line_len;

	while (n > 0 && (x->line[n - 1] == '\r' || x->line[n - 1] == ' ' || x->line[n - 1] == '\t'))
		n--;
	if (x->line_overflow) {
		/* The last line is too long to be a report: forget older ones. */
		x->last_len = 0;
	} else if (n > 0) {
		memcpy(x->last, x->line, n);
		x->last_len = n;
	}
	x->line_len = 0;
	x->line_overflow = false;
}

static void feed_stdout(struct exec_job *x, const char *p, size_t n)
{
	while (n > 0) {
		const char *nl = memchr(p, '\n', n);
		size_t seg = nl ? (size_t)(nl - p) : n;

		if (!x->line_overflow) {
			if (x->line_len + seg <= sizeof(x->line)) {
				memcpy(x->line + x->line_len, p, seg);
				x->line_len += seg;
			} else {
				x->line_overflow = true;
			}
		}
		if (!nl)
			return;
		stdout_end_line(x);
		p = nl + 1;
		n -= seg + 1;
	}
}

static int on_output(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct exec_job *x = userdata;
	bool is_stdout = fd == x->stdout_fd;
	char buf[READ_CHUNK];

	for (int i = 0; i < READS_PER_WAKEUP; i++) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0)
			goto eof; /* EOF, or an error we treat as one */
		if (is_stdout)
			feed_stdout(x, buf, (size_t)n);
		else
			feed_stderr(x, buf, (size_t)n);
	}
	return 0; /* level-triggered: the rest comes on the next wakeup */

eof:
	if (is_stdout) {
		if (x->line_len > 0 || x->line_overflow)
			stdout_end_line(x);
		pipe_close(&x->stdout_src, &x->stdout_fd);
	} else {
		pipe_close(&x->stderr_src, &x->stderr_fd);
	}
	exec_job_maybe_complete(x);
	return 0;
}

/*
 * write() to a pipe whose reader is gone raises SIGPIPE, which would kill the
 * daemon unless it ignores it. Block it around the call and swallow the one we
 * caused, so this works whatever the process's disposition is.
 */
static ssize_t write_nosigpipe(int fd, const void *p, size_t n)
{
	static const struct timespec zero = { 0 };
	sigset_t pipe_set, old, pending;
	bool was_pending;
	ssize_t k;
	int saved;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigpending(&pending);
	was_pending = sigismember(&pending, SIGPIPE);
	sigprocmask(SIG_BLOCK, &pipe_set, &old);
	k = write(fd, p, n);
	saved = errno;
	if (k < 0 && saved == EPIPE && !was_pending)
		(void)sigtimedwait(&pipe_set, NULL, &zero);
	sigprocmask(SIG_SETMASK, &old, NULL);
	errno = saved;
	return k;
}

static int on_stdin(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct exec_job *x = userdata;
	const struct handler_job *job = x->job;

	while (x->written < job->payload_len) {
		ssize_t n = write_nosigpipe(fd, job->payload + x->written,
					    job->payload_len - x->written);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n < 0)
			break; /* EPIPE: the child does not want it, its exit decides */
		x->written += (size_t)n;
	}
	pipe_close(&x->stdin_src, &x->stdin_fd);
	return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct exec_job *x = userdata;
	int r;

	if (x->exited) {
		/* EOF grace over: a grandchild holds the pipes, stop waiting. */
		exec_job_close_pipes(x);
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
	pipe_close(&x->stdin_src, &x->stdin_fd);
	if (x->stdout_fd >= 0 || x->stderr_fd >= 0) {
		x->timer_src = sd_event_source_disable_unref(x->timer_src);
		r = sd_event_add_time_relative(x->h->base.event, &x->timer_src, CLOCK_MONOTONIC,
					       EOF_GRACE_USEC, TIMER_ACCURACY_USEC, on_timer, x);
		if (r < 0) {
			log_warning_errno(r,
					  "cannot wait for the output of job pid %d: %m, "
					  "completing without it",
					  (int)x->pid);
			exec_job_close_pipes(x);
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

/* Moves fd above 0..2 so the dup2() onto stdio in the child cannot clash. */
static int fd_above_stdio(int *fd)
{
	int n;

	if (*fd > 2)
		return 0;
	n = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
	if (n < 0)
		return -errno;
	close(*fd);
	*fd = n;
	return 0;
}

/* Two pipes ends: [0] read, [1] write; only ours is made non-blocking. */
static int make_pipe(int p[2], int ours)
{
	int r;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	r = fd_above_stdio(&p[0]);
	if (r >= 0)
		r = fd_above_stdio(&p[1]);
	if (r >= 0 && fcntl(p[ours], F_SETFL, O_NONBLOCK) < 0)
		r = -errno;
	if (r < 0) {
		closep(&p[0]);
		closep(&p[1]);
	}
	return r;
}

static bool env_is_replaced(const char *e)
{
	/* Ours, plus the service manager's handshakes that belong to dlqd
	 * alone: a job must not be able to send READY=1 or steal sockets. */
	static const char *const names[] = {
		"DLQD_MESSAGE_ID", "DLQD_TRACE_ID",  "DLQD_ATTEMPT",  "DLQD_MAX_ATTEMPT",
		"NOTIFY_SOCKET",   "WATCHDOG_PID",   "WATCHDOG_USEC", "LISTEN_PID",
		"LISTEN_FDS",	   "LISTEN_FDNAMES",
	};

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		size_t n = strlen(names[i]);

		if (strncmp(e, names[i], n) == 0 && e[n] == '=')
			return true;
	}
	return false;
}

/*
 * The child's environment: ours minus the replaced names, plus the job's
 * variables. envp[0..3] are the job's own strings (freed by the caller with
 * free_envp); the rest point into environ.
 */
static char **build_envp(const struct handler_job *job)
{
	size_t n = 0, k = 0;
	char **envp;

	for (char **e = environ; e && *e; e++)
		n++;
	envp = calloc(n + 5, sizeof(char *));
	if (!envp)
		return NULL;
	if (asprintf(&envp[k++], "DLQD_MESSAGE_ID=%s", job->message_id) < 0 ||
	    asprintf(&envp[k++], "DLQD_TRACE_ID=%s", job->trace_id ? job->trace_id : "") < 0 ||
	    asprintf(&envp[k++], "DLQD_ATTEMPT=%" PRIu32, job->attempt) < 0 ||
	    asprintf(&envp[k++], "DLQD_MAX_ATTEMPT=%" PRIu32, job->max_attempt) < 0) {
		envp[k - 1] = NULL;
		strv_free(envp);
		return NULL;
	}
	for (char **e = environ; e && *e; e++)
		if (!env_is_replaced(*e))
			envp[k++] = *e;
	envp[k] = NULL;
	return envp;
}

static void free_envp(char **envp)
{
	for (size_t i = 0; envp && i < 4; i++)
		free(envp[i]);
	free(envp);
}

/* Returns 0 or a positive errno (posix_spawn's convention). */
static int spawn(struct exec_handler *h, const struct handler_job *job, int in_r, int out_w,
		 int err_w, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	char **envp;
	int r;

	envp = build_envp(job);
	if (!envp)
		return ENOMEM;
	r = posix_spawnattr_init(&attr);
	if (r) {
		free_envp(envp);
		return r;
	}
	r = posix_spawn_file_actions_init(&fa);
	if (r) {
		posix_spawnattr_destroy(&attr);
		free_envp(envp);
		return r;
	}
	sigemptyset(&none);
	sigfillset(&all);
	/* The daemon blocks SIGCHLD/SIGTERM/... for signalfd and may ignore
	 * SIGPIPE; the job must start with a clean slate. Its own process
	 * group lets a timeout kill everything it started. */
	if (!(r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
							  POSIX_SPAWN_SETSIGDEF)) &&
	    !(r = posix_spawnattr_setpgroup(&attr, 0)) &&
	    !(r = posix_spawnattr_setsigmask(&attr, &none)) &&
	    !(r = posix_spawnattr_setsigdefault(&attr, &all)) &&
	    !(r = posix_spawn_file_actions_adddup2(&fa, in_r, STDIN_FILENO)) &&
	    !(r = posix_spawn_file_actions_adddup2(&fa, out_w, STDOUT_FILENO)) &&
	    !(r = posix_spawn_file_actions_adddup2(&fa, err_w, STDERR_FILENO)) &&
	    !(r = posix_spawn_file_actions_addclosefrom_np(&fa, 3)))
		r = posix_spawnp(pid, h->argv[0], &fa, &attr, h->argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	free_envp(envp);
	return r;
}

static int exec_job_start(struct exec_handler *h, struct exec_job *x)
{
	sd_event *e = h->base.event;
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 };
	int r;

	r = make_pipe(in, 1);
	if (r >= 0)
		r = make_pipe(out, 0);
	if (r >= 0)
		r = make_pipe(err, 0);
	if (r >= 0)
		r = -spawn(h, x->job, in[0], out[1], err[1], &x->pid);
	/* The child has its copies now (or never will). */
	closep(&in[0]);
	closep(&out[1]);
	closep(&err[1]);
	x->stdin_fd = in[1];
	x->stdout_fd = out[0];
	x->stderr_fd = err[0];
	if (r < 0) {
		exec_job_close_pipes(x);
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
	if (x->job->payload_len == 0)
		pipe_close(&x->stdin_src, &x->stdin_fd);
	else if ((r = sd_event_add_io(e, &x->stdin_src, x->stdin_fd, EPOLLOUT, on_stdin, x)) < 0)
		goto fail;
	if ((r = sd_event_add_io(e, &x->stdout_src, x->stdout_fd, EPOLLIN, on_output, x)) < 0 ||
	    (r = sd_event_add_io(e, &x->stderr_src, x->stderr_fd, EPOLLIN, on_output, x)) < 0)
		goto fail;
	if (h->base.timeout_usec > 0 && h->base.timeout_usec != USEC_INFINITY &&
	    (r = sd_event_add_time_relative(e, &x->timer_src, CLOCK_MONOTONIC, h->base.timeout_usec,
					    TIMER_ACCURACY_USEC, on_timer, x)) < 0)
		goto fail;
	return 0;

fail:
	/* Let the child watch reap it; the caller sees only the error. */
	exec_job_close_pipes(x);
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
	exec_job_close_pipes(x);
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
