/*
 * Tests for handler_http against the real dlqd-httpstub: the headers a job
 * sends, how every kind of answer maps into a result, bounds on the evidence,
 * concurrency, cancel and free with transfers in flight. The stub runs once
 * for the whole group on a kernel-chosen port.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dlqd/handler.h"
#include "common/util.h"
#include "testutil.h"

static struct {
	pid_t pid;
	char dir[64];
	char port_file[128];
	char log_path[128];
	int port;
	char url[64];
	unsigned next_id;
} stub;

struct ctx {
	sd_event *e;
	struct handler *h;
	unsigned done;
	bool free_in_done;
};

struct tjob {
	struct handler_job job; /* first, so done() finds its tjob */
	struct ctx *ctx;
	struct result r;
	unsigned calls;
	unsigned resubmit; /* done() submits the job again this many times */
	char mid[64];
	char payload[256];
};

static const char *stub_path(void)
{
	static const char *const fallbacks[] = { "./dlqd-httpstub", "./tests/dlqd-httpstub",
						 "../tests/dlqd-httpstub" };
	const char *p = getenv("DLQD_HTTPSTUB");

	if (p && *p)
		return p;
	for (size_t i = 0; i < ARRAY_SIZE(fallbacks); i++)
		if (access(fallbacks[i], X_OK) == 0)
			return fallbacks[i];
	return fallbacks[0];
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static int group_setup(void **state)
{
	const char *path = stub_path();
	uint64_t deadline;

	snprintf(stub.dir, sizeof(stub.dir), "/tmp/dlqd-test-http-XXXXXX");
	if (!mkdtemp(stub.dir))
		return -1;
	snprintf(stub.port_file, sizeof(stub.port_file), "%s/port", stub.dir);
	snprintf(stub.log_path, sizeof(stub.log_path), "%s/log", stub.dir);

	stub.pid = fork();
	if (stub.pid < 0)
		return -1;
	if (stub.pid == 0) {
		execl(path, path, "--listen", "127.0.0.1:0", "--port-file", stub.port_file, "--log",
		      stub.log_path, "--quiet", (char *)NULL);
		fprintf(stderr, "cannot run %s: %m\n", path);
		_exit(127);
	}

	/* The stub renames the port file into place once it listens. */
	deadline = now_monotonic_usec() + 10 * USEC_PER_SEC;
	while (now_monotonic_usec() < deadline) {
		char *text = NULL;
		size_t len;
		int status;

		if (waitpid(stub.pid, &status, WNOHANG) == stub.pid) {
			stub.pid = 0;
			return -1;
		}
		if (read_file_max(stub.port_file, 64, &text, &len) == 0) {
			stub.port = atoi(text);
			free(text);
			snprintf(stub.url, sizeof(stub.url), "http://127.0.0.1:%d/jobs", stub.port);
			return stub.port > 0 ? 0 : -1;
		}
		sleep_ms(10);
	}
	return -1;
}

static int group_teardown(void **state)
{
	int status = 0;

	if (stub.pid > 0) {
		kill(stub.pid, SIGTERM);
		if (waitpid(stub.pid, &status, 0) != stub.pid)
			return -1;
	}
	unlink(stub.port_file);
	unlink(stub.log_path);
	rmdir(stub.dir);
	/* SIGTERM is a clean stop for the stub. */
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static struct ctx *ctx_new(const char *url, uint64_t timeout_usec, uint64_t max_output,
			   uint32_t prefetch)
{
	struct config c = { 0 };
	struct ctx *x = calloc(1, sizeof(*x));

	assert_non_null(x);
	c.handler.type = HANDLER_HTTP;
	c.handler.url = (char *)(url ? url : stub.url);
	c.handler.timeout_usec = timeout_usec;
	c.handler.max_output = max_output;
	c.broker.prefetch = prefetch;
	assert_int_equal(sd_event_new(&x->e), 0);
	assert_int_equal(handler_new(x->e, &c, &x->h), 0);
	assert_non_null(x->h);
	assert_string_equal(x->h->ops->name, "http");
	return x;
}

static void ctx_free(struct ctx *x)
{
	if (x->h)
		assert_int_equal(x->h->in_flight, 0);
	handler_freep(&x->h);
	sd_event_unref(x->e);
	free(x);
}

static void on_done(struct handler_job *job, const struct result *r)
{
	struct tjob *t = (struct tjob *)job;

	t->r = *r;
	t->calls++;
	t->ctx->done++;
	assert_null(job->priv);
	if (t->ctx->free_in_done) {
		handler_freep(&t->ctx->h);
		return;
	}
	if (t->resubmit) {
		t->resubmit--;
		job->attempt++;
		assert_int_equal(handler_submit(t->ctx->h, job), 0);
	}
}

/* Fills t with a unique message id and a payload carrying the stub op. */
static void tjob_init(struct tjob *t, struct ctx *x, const char *stub_op, uint32_t attempt)
{
	memset(t, 0, sizeof(*t));
	t->ctx = x;
	snprintf(t->mid, sizeof(t->mid), "msg-%d-%u", (int)getpid(), ++stub.next_id);
	if (stub_op)
		snprintf(t->payload, sizeof(t->payload), "{\"n\":%u,\"stub\":%s}", stub.next_id,
			 stub_op);
	else
		snprintf(t->payload, sizeof(t->payload), "{\"n\":%u}", stub.next_id);
	t->job.message_id = t->mid;
	t->job.trace_id = "";
	t->job.attempt = attempt;
	t->job.max_attempt = 5;
	t->job.payload = t->payload;
	t->job.payload_len = strlen(t->payload);
	t->job.done = on_done;
}

/* Runs the loop until *counter reaches target; the deadline only guards against a hang. */
static void run_until(struct ctx *x, const unsigned *counter, unsigned target)
{
	uint64_t deadline = now_monotonic_usec() + 60 * USEC_PER_SEC;

	while (*counter < target) {
		assert_true(now_monotonic_usec() < deadline);
		assert_true(sd_event_run(x->e, 100 * USEC_PER_MSEC) >= 0);
	}
}

static struct tjob *run_one(struct ctx *x, const char *stub_op, uint32_t attempt)
{
	struct tjob *t = malloc(sizeof(*t));
	unsigned before = x->done;

	assert_non_null(t);
	tjob_init(t, x, stub_op, attempt);
	assert_int_equal(handler_submit(x->h, &t->job), 0);
	assert_int_equal(t->calls, 0);
	run_until(x, &x->done, before + 1);
	assert_int_equal(t->calls, 1);
	return t;
}

/*
 * One job against the stub and what its result must say. Every field is
 * checked: a NULL code or class means none was reported, a NULL evidence is
 * the one thing left unchecked.
 */
struct http_case {
	const char *op;
	uint32_t attempt;
	enum result_kind kind;
	long status;
	uint64_t retry_after; /* usec */
	const char *code, *class, *evidence;
};

static void check_cases(struct ctx *x, const struct http_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct http_case *c = &cases[i];
		struct tjob *t = run_one(x, c->op, c->attempt);

		print_message("case %zu: %s, attempt %u\n", i, c->op, c->attempt);
		assert_int_equal(t->r.kind, c->kind);
		assert_int_equal(t->r.http_status, c->status);
		assert_int_equal(t->r.retry_after_usec, c->retry_after);
		assert_string_equal(t->r.handler_code, c->code ? c->code : "");
		assert_string_equal(t->r.handler_class, c->class ? c->class : "");
		if (c->evidence)
			assert_string_equal(t->r.evidence, c->evidence);
		free(t);
	}
}

/* Finds the stub's log line for message_id; NULL if it did not answer it. */
static json_t *log_find(const char *message_id)
{
	_cleanup_free_ char *text = NULL;
	json_t *found = NULL;
	size_t len;
	char *line, *save = NULL;

	if (read_file_max(stub.log_path, 64 << 20, &text, &len) < 0)
		return NULL;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_t *o = json_loads(line, 0, NULL);

		assert_non_null(o); /* every line is one whole JSON object */
		if (json_is_string(json_object_get(o, "message_id")) &&
		    strcmp(json_string_value(json_object_get(o, "message_id")), message_id) == 0) {
			json_decref(found);
			found = o;
		} else
			json_decref(o);
	}
	return found;
}

static void test_success_headers(void **state)
{
	struct ctx *x = ctx_new(NULL, 5 * USEC_PER_SEC, 64 * 1024, 10);
	struct tjob a, b;
	json_t *l;

	tjob_init(&a, x, NULL, 3);
	a.job.trace_id = "trc-abc";
	tjob_init(&b, x, "{\"op\":\"ok\"}", 0);
	b.job.trace_id = NULL;
	assert_int_equal(handler_submit(x->h, &a.job), 0);
	assert_int_equal(handler_submit(x->h, &b.job), 0);
	assert_int_equal(x->h->in_flight, 2);
	assert_int_equal(a.calls + b.calls, 0); /* never from inside submit() */
	run_until(x, &x->done, 2);

	assert_int_equal(a.calls, 1);
	assert_int_equal(a.r.kind, RESULT_SUCCESS);
	assert_int_equal(a.r.http_status, 200);
	assert_string_equal(a.r.evidence, "{\"ok\":true}");
	assert_int_equal(a.r.evidence_len, 11);
	assert_false(a.r.evidence_truncated);
	assert_string_equal(a.r.transport, "");
	assert_int_equal(a.r.retry_after_usec, 0);
	assert_int_equal(b.r.kind, RESULT_SUCCESS);

	/* The stub answers 415 without Content-Type: application/json, so 200 proves it. */
	l = log_find(a.mid);
	assert_non_null(l);
	assert_string_equal(json_string_value(json_object_get(l, "trace_id")), "trc-abc");
	assert_int_equal(json_integer_value(json_object_get(l, "attempt")), 3);
	assert_int_equal(json_integer_value(json_object_get(l, "status")), 200);
	json_decref(l);
	l = log_find(b.mid);
	assert_non_null(l);
	assert_string_equal(json_string_value(json_object_get(l, "trace_id")), "");
	assert_int_equal(json_integer_value(json_object_get(l, "attempt")), 0);
	json_decref(l);
	ctx_free(x);
}

static void test_http_fail(void **state)
{
	static const struct http_case cases[] = {
		{ .op = "{\"op\":\"fail\",\"status\":503}",
		  .kind = RESULT_HTTP,
		  .status = 503,
		  .evidence = "{\"ok\":false}" },
		/* "times" counts X-Attempt: fails while attempt < times. */
		{ .op = "{\"op\":\"fail\",\"status\":500,\"times\":2}",
		  .attempt = 1,
		  .kind = RESULT_HTTP,
		  .status = 500 },
		{ .op = "{\"op\":\"fail\",\"status\":500,\"times\":2}",
		  .attempt = 2,
		  .kind = RESULT_SUCCESS,
		  .status = 200 },
		{ .op = "{\"op\":\"fail\",\"status\":404}", .kind = RESULT_HTTP, .status = 404 },
	};
	struct ctx *x = ctx_new(NULL, 5 * USEC_PER_SEC, 64 * 1024, 10);

	check_cases(x, cases, ARRAY_SIZE(cases));
	ctx_free(x);
}

static void test_retry_after(void **state)
{
	static const struct http_case cases[] = {
		{ .op = "{\"op\":\"retry_after\",\"seconds\":7}",
		  .kind = RESULT_HTTP,
		  .status = 503,
		  .retry_after = 7 * USEC_PER_SEC },
		/* The pooled handle is reused: no stale Retry-After from the last transfer. */
		{ .op = "{\"op\":\"fail\",\"status\":503}", .kind = RESULT_HTTP, .status = 503 },
		{ .op = "{\"op\":\"retry_after\",\"seconds\":3600}",
		  .kind = RESULT_HTTP,
		  .status = 503,
		  .retry_after = 3600 * USEC_PER_SEC },
		/* Capped at a day. */
		{ .op = "{\"op\":\"retry_after\",\"seconds\":9999999}",
		  .kind = RESULT_HTTP,
		  .status = 503,
		  .retry_after = 24 * 3600 * USEC_PER_SEC },
		{ .op = "{\"op\":\"retry_after\",\"seconds\":7,\"times\":1}",
		  .attempt = 1,
		  .kind = RESULT_SUCCESS,
		  .status = 200 },
	};
	struct ctx *x = ctx_new(NULL, 5 * USEC_PER_SEC, 64 * 1024, 10);

	check_cases(x, cases, ARRAY_SIZE(cases));
	ctx_free(x);
}

static void test_error_code(void **state)
{
	static const struct http_case cases[] = {
		{ .op = "{\"op\":\"error_code\",\"status\":422,\"error_code\":\"QUOTA_EXCEEDED\","
			"\"error_class\":\"PERSISTENT\"}",
		  .kind = RESULT_HTTP,
		  .status = 422,
		  .code = "QUOTA_EXCEEDED",
		  .class = "PERSISTENT" },
		{ .op = "{\"op\":\"error_code\",\"status\":500,\"error_code\":\"DB_DOWN_2\"}",
		  .kind = RESULT_HTTP,
		  .status = 500,
		  .code = "DB_DOWN_2" },
		/* Codes outside [A-Z0-9_] are not trusted. */
		{ .op = "{\"op\":\"error_code\",\"status\":500,\"error_code\":\"not valid\","
			"\"error_class\":\"TRANSIENT\"}",
		  .kind = RESULT_HTTP,
		  .status = 500 },
		{ .op = "{\"op\":\"error_code\",\"status\":500,\"error_code\":\"X\","
			"\"error_class\":\"bad-class\"}",
		  .kind = RESULT_HTTP,
		  .status = 500,
		  .code = "X" },
		/* Past "times" the same job succeeds and nothing is reported. */
		{ .op = "{\"op\":\"error_code\",\"status\":500,\"error_code\":\"X\",\"times\":1}",
		  .attempt = 1,
		  .kind = RESULT_SUCCESS,
		  .status = 200 },
	};
	struct ctx *x = ctx_new(NULL, 5 * USEC_PER_SEC, 64 * 1024, 10);
	struct tjob *t;

	check_cases(x, cases, ARRAY_SIZE(cases));
	ctx_free(x);

	/* A body cut at max_output is not parsed, and the evidence is cut with it. */
	x = ctx_new(NULL, 5 * USEC_PER_SEC, 16, 10);
	t = run_one(x, "{\"op\":\"error_code\",\"status\":500,\"error_code\":\"QUOTA_EXCEEDED\"}",
		    0);
	assert_int_equal(t->r.kind, RESULT_HTTP);
	assert_string_equal(t->r.handler_code, "");
	assert_int_equal(t->r.evidence_len, 16);
	assert_true(t->r.evidence_truncated);
	free(t);
	ctx_free(x);
}

static void test_timeout(void **state)
{
	struct ctx *x = ctx_new(NULL, 300 * USEC_PER_MSEC, 64 * 1024, 10);
	struct tjob *t;

	t = run_one(x, "{\"op\":\"hang\"}", 0);
	assert_int_equal(t->r.kind, RESULT_TIMEOUT);
	assert_string_equal(t->r.transport, "OPERATION_TIMEDOUT");
	assert_true(strlen(t->r.detail) > 0);
	assert_true(t->r.duration_usec > 0);
	assert_null(log_find(t->mid)); /* the stub never answered */
	free(t);

	/* The handle that timed out is reused for the next job. */
	t = run_one(x, NULL, 0);
	assert_int_equal(t->r.kind, RESULT_SUCCESS);
	free(t);
	ctx_free(x);
}

static void test_close(void **state)
{
	struct ctx *x = ctx_new(NULL, 5 * USEC_PER_SEC, 64 * 1024, 10);
	struct tjob *t;

	t = run_one(x, "{\"op\":\"close\"}", 0);
	assert_int_equal(t->r.kind, RESULT_TRANSPORT);
	assert_string_equal(t->r.transport, "GOT_NOTHING");
	assert_true(strlen(t->r.detail) > 0);
	assert_int_equal(t->r.http_status, 0);
	free(t);
	t = run_one(x, NULL, 0);
	assert_int_equal(t->r.kind, RESULT_SUCCESS);
	free(t);
	ctx_free(x);
}

static void test_refused(void **state)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	char url[64];
	struct ctx *x;
	struct tjob *t;
	int fd;

	/* A port the kernel just handed out and that nobody listens on any more. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ntohs(sa.sin_port));

	x = ctx_new(url, 5 * USEC_PER_SEC, 64 * 1024, 10);
	t = run_one(x, NULL, 0);
	assert_int_equal(t->r.kind, RESULT_TRANSPORT);
	assert_string_equal(t->r.transport, "COULDNT_CONNECT");
	assert_true(strlen(t->r.detail) > 0);
	free(t);
	ctx_free(x);

	x = ctx_new("ftp://127.0.0.1/", 5 * USEC_PER_SEC, 64 * 1024, 10);
	t = run_one(x, NULL, 0);
	assert_int_equal(t->r.kind, RESULT_TRANSPORT);
	assert_string_equal(t->r.transport, "UNSUPPORTED_PROTOCOL");
	free(t);
	ctx_free(x);
}

static void test_body_bounded(void **state)
{
	struct ctx *x = ctx_new(NULL, 10 * USEC_PER_SEC, 4096, 10);
	struct tjob *t;

	t = run_one(x, "{\"op\":\"body\",\"status\":500,\"bytes\":3000000}", 0);
	assert_int_equal(t->r.kind, RESULT_HTTP);
	assert_int_equal(t->r.http_status, 500);
	assert_int_equal(t->r.evidence_len, RESULT_EVIDENCE_MAX - 1);
	assert_true(t->r.evidence_truncated);
	assert_int_equal(t->r.evidence[t->r.evidence_len], '\0');
	for (size_t i = 0; i < t->r.evidence_len; i++)
		assert_int_equal(t->r.evidence[i], 'x');
	free(t);

	t = run_one(x, "{\"op\":\"body\",\"bytes\":500000}", 0);
	assert_int_equal(t->r.kind, RESULT_SUCCESS);
	assert_int_equal(t->r.evidence_len, RESULT_EVIDENCE_MAX - 1);
	assert_true(t->r.evidence_truncated);
	free(t);

	t = run_one(x, "{\"op\":\"body\",\"status\":502,\"bytes\":10}", 0);
	assert_int_equal(t->r.http_status, 502);
	assert_int_equal(t->r.evidence_len, 10);
	assert_false(t->r.evidence_truncated);
	free(t);

	t = run_one(x, "{\"op\":\"body\",\"status\":500,\"bytes\":0}", 0);
	assert_int_equal(t->r.evidence_len, 0);
	assert_false(t->r.evidence_truncated);
	free(t);
	ctx_free(x);

	/* max_output below the evidence size bounds the evidence too. */
	x = ctx_new(NULL, 10 * USEC_PER_SEC, 100, 10);
	t = run_one(x, "{\"op\":\"body\",\"status\":500,\"bytes\":5000}", 0);
	assert_int_equal(t->r.evidence_len, 100);
	assert_true(t->r.evidence_truncated);
	free(t);
	ctx_free(x);
}

static void test_concurrent(void **state)
{
	enum { N = 200 };
	struct ctx *x = ctx_new(NULL, 10 * USEC_PER_SEC, 64 * 1024, N);
	struct tjob *jobs = calloc(N, sizeof(*jobs));

	assert_non_null(jobs);
	for (unsigned i = 0; i < N; i++) {
		const char *op = i % 4 == 0   ? "{\"op\":\"sleep\",\"ms\":50}"
				 : i % 4 == 1 ? "{\"op\":\"fail\",\"status\":503}"
				 : i % 4 == 2 ? "{\"op\":\"body\",\"bytes\":20000}"
					      : NULL;

		tjob_init(&jobs[i], x, op, 0);
		assert_int_equal(handler_submit(x->h, &jobs[i].job), 0);
	}
	assert_int_equal(x->h->in_flight, N);
	run_until(x, &x->done, N);
	/* Give a stray second done() the chance to show up. */
	for (int i = 0; i < 5; i++)
		assert_true(sd_event_run(x->e, 20 * USEC_PER_MSEC) >= 0);
	assert_int_equal(x->done, N);
	for (unsigned i = 0; i < N; i++) {
		assert_int_equal(jobs[i].calls, 1);
		if (i % 4 == 1) {
			assert_int_equal(jobs[i].r.kind, RESULT_HTTP);
			assert_int_equal(jobs[i].r.http_status, 503);
		} else
			assert_int_equal(jobs[i].r.kind, RESULT_SUCCESS);
	}

	/* A second wave reuses the pooled handles and their connections. */
	x->done = 0;
	for (unsigned i = 0; i < N; i++) {
		tjob_init(&jobs[i], x, NULL, 1);
		assert_int_equal(handler_submit(x->h, &jobs[i].job), 0);
	}
	run_until(x, &x->done, N);
	for (unsigned i = 0; i < N; i++) {
		assert_int_equal(jobs[i].calls, 1);
		assert_int_equal(jobs[i].r.kind, RESULT_SUCCESS);
	}
	assert_int_equal(x->h->in_flight, 0);
	free(jobs);
	ctx_free(x);
}

static void test_resubmit_from_done(void **state)
{
	struct ctx *x = ctx_new(NULL, 5 * USEC_PER_SEC, 64 * 1024, 4);
	struct tjob t;

	tjob_init(&t, x, "{\"op\":\"fail\",\"status\":503,\"times\":30}", 0);
	t.resubmit = 40;
	assert_int_equal(handler_submit(x->h, &t.job), 0);
	run_until(x, &t.calls, 41);
	assert_int_equal(t.job.attempt, 40);
	assert_int_equal(t.r.kind, RESULT_SUCCESS);
	ctx_free(x);
}

static void test_cancel(void **state)
{
	struct ctx *x = ctx_new(NULL, 5 * USEC_PER_SEC, 64 * 1024, 10);
	struct tjob a, b, c, d;

	tjob_init(&a, x, "{\"op\":\"sleep\",\"ms\":50}", 0);
	tjob_init(&b, x, "{\"op\":\"hang\"}", 0);
	tjob_init(&c, x, NULL, 0);
	tjob_init(&d, x, "{\"op\":\"sleep\",\"ms\":300}", 0);
	assert_int_equal(handler_submit(x->h, &a.job), 0);
	assert_int_equal(handler_submit(x->h, &b.job), 0);
	assert_int_equal(handler_submit(x->h, &c.job), 0);

	/* a is cancelled before it reaches the wire, b once it is there. */
	handler_cancel(x->h, &a.job);
	assert_null(a.job.priv);
	handler_cancel(x->h, &a.job); /* twice is harmless */
	assert_int_equal(x->h->in_flight, 2);
	run_until(x, &c.calls, 1);
	handler_cancel(x->h, &b.job);
	assert_int_equal(x->h->in_flight, 0);

	/* By the time d is answered, a would long have been. */
	assert_int_equal(handler_submit(x->h, &d.job), 0);
	run_until(x, &d.calls, 1);
	assert_int_equal(d.r.kind, RESULT_SUCCESS);
	assert_int_equal(a.calls, 0);
	assert_int_equal(b.calls, 0);
	assert_int_equal(x->done, 2);

	/* Cancelling a finished job does nothing either. */
	handler_cancel(x->h, &c.job);
	assert_int_equal(x->h->in_flight, 0);
	ctx_free(x);
}

static void test_free_in_flight(void **state)
{
	struct ctx *x = ctx_new(NULL, 5 * USEC_PER_SEC, 64 * 1024, 20);
	struct tjob jobs[10], probe;

	for (unsigned i = 0; i < ARRAY_SIZE(jobs); i++) {
		tjob_init(&jobs[i], x,
			  i % 2 ? "{\"op\":\"hang\"}" : "{\"op\":\"sleep\",\"ms\":200}", 0);
		assert_int_equal(handler_submit(x->h, &jobs[i].job), 0);
	}
	tjob_init(&probe, x, NULL, 0);
	assert_int_equal(handler_submit(x->h, &probe.job), 0);
	run_until(x, &probe.calls, 1);

	handler_freep(&x->h);
	assert_null(x->h);
	/* No source of the freed handler may fire later. */
	for (int i = 0; i < 5; i++)
		assert_true(sd_event_run(x->e, 100 * USEC_PER_MSEC) >= 0);
	for (unsigned i = 0; i < ARRAY_SIZE(jobs); i++)
		assert_int_equal(jobs[i].calls, 0);
	ctx_free(x);
}

static void test_free_from_done(void **state)
{
	struct ctx *x = ctx_new(NULL, 5 * USEC_PER_SEC, 64 * 1024, 20);
	struct tjob first, others[5];

	tjob_init(&first, x, NULL, 0);
	for (unsigned i = 0; i < ARRAY_SIZE(others); i++) {
		tjob_init(&others[i], x, "{\"op\":\"hang\"}", 0);
		assert_int_equal(handler_submit(x->h, &others[i].job), 0);
	}
	assert_int_equal(handler_submit(x->h, &first.job), 0);
	x->free_in_done = true;
	run_until(x, &first.calls, 1);
	assert_null(x->h);
	for (int i = 0; i < 3; i++)
		assert_true(sd_event_run(x->e, 50 * USEC_PER_MSEC) >= 0);
	assert_int_equal(x->done, 1);
	ctx_free(x);
}

static void test_unsendable_id(void **state)
{
	struct ctx *x = ctx_new(NULL, 5 * USEC_PER_SEC, 64 * 1024, 10);
	struct tjob a, b, c, d;
	_cleanup_free_ char *long_id = malloc(20000);

	assert_non_null(long_id);
	memset(long_id, 'k', 19999);
	long_id[19999] = '\0';

	tjob_init(&a, x, NULL, 0);
	a.job.message_id = "evil\r\nX-Injected: 1";
	tjob_init(&b, x, NULL, 0);
	b.job.message_id = "";
	tjob_init(&c, x, NULL, 0);
	c.job.message_id = long_id;
	tjob_init(&d, x, NULL, 0);
	d.job.trace_id = "t\n";
	assert_int_equal(handler_submit(x->h, &a.job), 0);
	assert_int_equal(handler_submit(x->h, &b.job), 0);
	assert_int_equal(handler_submit(x->h, &c.job), 0);
	assert_int_equal(handler_submit(x->h, &d.job), 0);
	assert_int_equal(x->done, 0); /* deferred to the loop, never from submit() */
	handler_cancel(x->h, &d.job);
	run_until(x, &x->done, 3);
	assert_int_equal(a.r.kind, RESULT_INTERNAL);
	assert_int_equal(b.r.kind, RESULT_INTERNAL);
	assert_int_equal(c.r.kind, RESULT_INTERNAL);
	assert_true(strlen(a.r.detail) > 0);
	assert_true(strstr(c.r.detail, "long") != NULL);
	assert_int_equal(d.calls, 0);
	ctx_free(x);
}

/*
 * A server that answers one request per connection with keep-alive and
 * closes the connection 100 ms later, while it idles in curl's cache:
 * the socket dlqd kept watching (http_multi.c, struct curl_sock) hears
 * the close while curl is not looking, and the next job must still get
 * through on a new connection, with no source or fd left behind.
 */
static void serve_then_close(int lfd, unsigned conns)
{
	static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
				     "Content-Length: 2\r\n\r\n{}";

	for (unsigned i = 0; i < conns; i++) {
		char req[8192], *end;
		size_t got = 0;
		long clen;
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0)
			_exit(1);
		while (!(end = memmem(req, got, "\r\n\r\n", 4))) {
			ssize_t n = read(fd, req + got, sizeof(req) - 1 - got);
			if (n <= 0)
				_exit(2);
			got += (size_t)n;
		}
		req[got] = '\0';
		clen = strtol(strcasestr(req, "Content-Length:") + 15, NULL, 10);
		while ((long)got < end + 4 - req + clen) {
			ssize_t n = read(fd, req + got, sizeof(req) - 1 - got);
			if (n <= 0)
				_exit(3);
			got += (size_t)n;
		}
		if (write(fd, answer, sizeof(answer) - 1) != (ssize_t)sizeof(answer) - 1)
			_exit(4);
		sleep_ms(100);
		close(fd);
	}
	_exit(0);
}

static void test_idle_connection_closed(void **state)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int lfd, fds, status;
	char url[64];
	struct ctx *x;
	pid_t pid;

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
	assert_int_equal(listen(lfd, 8), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		serve_then_close(lfd, 3);
	close(lfd);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ntohs(sa.sin_port));

	fds = count_fds();
	x = ctx_new(url, 5 * USEC_PER_SEC, 64 * 1024, 4);
	for (int i = 0; i < 3; i++) {
		struct tjob *t = run_one(x, NULL, 0);

		assert_int_equal(t->r.kind, RESULT_SUCCESS);
		free(t);
		/* Long enough for the close to arrive while the connection idles. */
		for (int k = 0; k < 6; k++)
			assert_true(sd_event_run(x->e, 50 * USEC_PER_MSEC) >= 0);
	}
	ctx_free(x);
	assert_int_equal(count_fds(), fds);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- the stub itself, spoken to over a raw socket ---- */

static int raw_connect(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)stub.port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval tv = { .tv_sec = 10 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void raw_request(struct buf *out, const char *ctype, const char *body, const char *extra)
{
	assert_int_equal(buf_printf(out,
				    "POST /x HTTP/1.1\r\nHost: t\r\nContent-Type: %s\r\n%s"
				    "Content-Length: %zu\r\n\r\n%s",
				    ctype, extra, strlen(body), body),
			 0);
}

/* Reads until EOF; the last request asks the stub to close. */
static char *raw_read_all(int fd)
{
	struct buf b;
	char chunk[4096];
	ssize_t n;

	buf_init(&b, 1 << 20);
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		assert_int_equal(buf_append(&b, chunk, (size_t)n), 0);
	assert_int_equal(n, 0);
	return buf_steal(&b, NULL);
}

static void test_stub_pipelining(void **state)
{
	const char *want[] = { "HTTP/1.1 200", "HTTP/1.1 415", "HTTP/1.1 400", "HTTP/1.1 503",
			       "HTTP/1.1 200" };
	_cleanup_free_ char *text = NULL;
	struct buf req;
	const char *p;
	int fd = raw_connect();

	/* One write with five requests; a delayed answer must not reorder the rest. */
	buf_init(&req, 1 << 16);
	raw_request(&req, "application/json", "{\"stub\":{\"op\":\"sleep\",\"ms\":100}}", "");
	raw_request(&req, "text/plain", "{}", "");
	raw_request(&req, "application/json; charset=utf-8", "{not json", "");
	raw_request(&req, "application/json", "{\"stub\":{\"op\":\"fail\",\"status\":503}}", "");
	raw_request(&req, "application/json", "{}", "Connection: close\r\n");
	assert_int_equal(write(fd, req.data, req.len), (ssize_t)req.len);
	buf_done(&req);

	text = raw_read_all(fd);
	close(fd);
	p = text;
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		p = strstr(p, want[i]);
		assert_non_null(p);
		p++;
	}
	assert_null(strstr(p, "HTTP/1.1"));
}

static void test_stub_limits(void **state)
{
	_cleanup_free_ char *text = NULL;
	struct buf req;
	int fd = raw_connect();

	buf_init(&req, 1 << 10);
	assert_int_equal(buf_printf(&req,
				    "POST / HTTP/1.1\r\nContent-Type: application/json\r\n"
				    "Content-Length: %d\r\n\r\n",
				    11 * 1024 * 1024),
			 0);
	assert_int_equal(write(fd, req.data, req.len), (ssize_t)req.len);
	buf_done(&req);
	text = raw_read_all(fd);
	close(fd);
	assert_true(strncmp(text, "HTTP/1.1 413", 12) == 0);
	free(text);

	fd = raw_connect();
	text = calloc(1, 70 * 1024);
	assert_non_null(text);
	memcpy(text, "POST / HTTP/1.1\r\nX-Pad: ", 24);
	memset(text + 24, 'p', 70 * 1024 - 25);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	free(text);
	text = raw_read_all(fd);
	close(fd);
	assert_true(strncmp(text, "HTTP/1.1 431", 12) == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_success_headers),
		cmocka_unit_test(test_http_fail),
		cmocka_unit_test(test_retry_after),
		cmocka_unit_test(test_error_code),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_close),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_body_bounded),
		cmocka_unit_test(test_concurrent),
		cmocka_unit_test(test_resubmit_from_done),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_free_in_flight),
		cmocka_unit_test(test_free_from_done),
		cmocka_unit_test(test_unsendable_id),
		cmocka_unit_test(test_idle_connection_closed),
		cmocka_unit_test(test_stub_pipelining),
		cmocka_unit_test(test_stub_limits),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
