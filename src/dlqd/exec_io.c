/*
 * exec_io: one job's three pipes, all non-blocking and driven by sd-event
 * I/O sources. The payload is written to stdin without a copy and stdin
 * closed once it is all in (or the child stopped reading). stdout and stderr
 * are read until EOF, each within a fixed bound whatever the child writes:
 * of stderr only the last tail_cap bytes are kept (the evidence), of stdout
 * only the last complete non-empty line, if short enough to be a report.
 * The end of either output pipe may complete the job.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "common/util.h"
#include "exec_int.h"

/* Bytes read per read() call, and read() calls per wakeup (fairness). */
#define READ_CHUNK	 16384
#define READS_PER_WAKEUP 8

static void pipe_close(sd_event_source **src, int *fd)
{
	*src = sd_event_source_disable_unref(*src);
	closep(fd);
}

void exec_io_close_stdin(struct exec_job *x)
{
	pipe_close(&x->stdin_src, &x->stdin_fd);
}

void exec_io_close(struct exec_job *x)
{
	exec_io_close_stdin(x);
	pipe_close(&x->stdout_src, &x->stdout_fd);
	pipe_close(&x->stderr_src, &x->stderr_fd);
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
	exec_io_close_stdin(x);
	return 0;
}

int exec_io_start(struct exec_job *x)
{
	sd_event *e = x->h->base.event;
	int r;

	if (x->job->payload_len == 0)
		exec_io_close_stdin(x);
	else if ((r = sd_event_add_io(e, &x->stdin_src, x->stdin_fd, EPOLLOUT, on_stdin, x)) < 0)
		return r;
	if ((r = sd_event_add_io(e, &x->stdout_src, x->stdout_fd, EPOLLIN, on_output, x)) < 0 ||
	    (r = sd_event_add_io(e, &x->stderr_src, x->stderr_fd, EPOLLIN, on_output, x)) < 0)
		return r;
	return 0;
}
