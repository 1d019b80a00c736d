/*
 * fuzz_verdict: a handler's own verdict, {"error_code": "X", "error_class":
 * "Y"}, the way both handlers read it. The HTTP handler hands its response
 * body to result_parse_report() as it is; the exec handler reads the
 * child's stdout through exec_io.c's pipe reader, keeps the last non-empty
 * line (if short enough) and parses that (handler_exec.c). exec_io.c has no
 * pure entry point, so it is compiled into this target and driven through
 * a real pipe, with the job's completion stubbed out. Checks: a code or
 * class taken from a verdict is one the taxonomy could spell, and a class
 * never comes without a code; the kept line fits and ends in no blank.
 */
#include <fcntl.h>
#include <unistd.h>

#include "common/result.h"
#include "common/util.h"
#include "fuzz.h"

#include "../../src/dlqd/exec_io.c"

/* The pipe in the target is the job's only source: nothing to complete. */
void exec_job_maybe_complete(struct exec_job *x)
{
}

static void check_report(const struct result *r)
{
	FUZZ_CHECK(!r->handler_code[0] ||
		   result_code_valid(r->handler_code, sizeof(r->handler_code)));
	FUZZ_CHECK(!r->handler_class[0] ||
		   result_code_valid(r->handler_class, sizeof(r->handler_class)));
	FUZZ_CHECK(r->handler_code[0] || !r->handler_class[0]);
}

/* What handler_exec.c's parse_error_report() does with the kept line. */
static void exec_verdict(const struct exec_job *x, struct result *r)
{
	if (x->last_len > 0 && x->last[0] == '{')
		result_parse_report(r, x->last, x->last_len);
}

/* The first byte says how the child's writes are cut (1..128 bytes), so
 * lines also end and overflow across reads; the rest is its stdout. */
static void run_exec(const uint8_t *data, size_t size)
{
	struct exec_job x = { .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1 };
	struct result r;
	size_t step;
	int fd[2];

	if (size == 0 || pipe2(fd, O_CLOEXEC | O_NONBLOCK) < 0)
		return;
	step = 1 + data[0] % 128;
	x.stdout_fd = fd[0];
	for (size_t off = 1, n; off < size; off += n) {
		n = MIN(step, size - off);
		FUZZ_CHECK(write(fd[1], data + off, n) == (ssize_t)n);
		on_output(NULL, x.stdout_fd, EPOLLIN, &x);
		FUZZ_CHECK(x.stdout_fd >= 0); /* no EOF while the write end is open */
	}
	close(fd[1]);
	while (x.stdout_fd >= 0)
		on_output(NULL, x.stdout_fd, EPOLLIN, &x);

	FUZZ_CHECK(x.last_len <= sizeof(x.last));
	if (x.last_len > 0) {
		char end = x.last[x.last_len - 1];
		FUZZ_CHECK(end != ' ' && end != '\t' && end != '\r');
		FUZZ_CHECK(memchr(x.last, '\n', x.last_len) == NULL);
	}
	result_init(&r, RESULT_EXIT);
	exec_verdict(&x, &r);
	check_report(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct result r;

	result_init(&r, RESULT_HTTP);
	result_parse_report(&r, (const char *)data, size);
	check_report(&r);
	run_exec(data, size);
	return 0;
}
