/*
 * exec_spawn: starts one job's child. posix_spawn gives vfork speed and no
 * shell; the child gets its own process group (so a timeout can kill all it
 * started), an empty signal mask and default dispositions whatever the
 * daemon blocks or ignores, stdin/stdout/stderr on fresh pipes and every
 * other fd closed, and the daemon's environment minus what belongs to the
 * daemon alone, plus the job's DLQD_* variables.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/strv.h"
#include "common/util.h"
#include "exec_int.h"

extern char **environ;

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
static int spawn(char *const *argv, const struct handler_job *job, int in_r, int out_w, int err_w,
		 pid_t *pid)
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
		r = posix_spawnp(pid, argv[0], &fa, &attr, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	free_envp(envp);
	return r;
}

int exec_spawn(char *const *argv, const struct handler_job *job, int fd[3], pid_t *pid)
{
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 };
	int r;

	r = make_pipe(in, 1);
	if (r >= 0)
		r = make_pipe(out, 0);
	if (r >= 0)
		r = make_pipe(err, 0);
	if (r >= 0)
		r = -spawn(argv, job, in[0], out[1], err[1], pid);
	/* The child has its copies now (or never will). */
	closep(&in[0]);
	closep(&out[1]);
	closep(&err[1]);
	if (r < 0) {
		closep(&in[1]);
		closep(&out[0]);
		closep(&err[0]);
	}
	fd[0] = in[1];
	fd[1] = out[0];
	fd[2] = err[0];
	return r;
}
