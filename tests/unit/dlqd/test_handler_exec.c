/*
 * test_handler_exec: the exec handler against real child processes, run in a
 * real sd-event loop. Every test also checks that no fd leaked and no child
 * was left behind (fixture teardown).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/config.h"
#include "dlqd/handler.h"
#include "common/result.h"
#include "common/util.h"
#include "testutil.h"

/* Only a guard against hanging forever, not a performance assertion. */
#define SAFETY_USEC (60 * USEC_PER_SEC)

struct fx {
	int fds_before;
	sd_event *e;
	struct config cfg;
	struct handler *h;
	bool subreaper; /* orphans of our jobs come to this process */
	char exec_job[4096];
};

struct run {
	int calls;
	struct result r;
	struct handler_job job;
};

/* True while this process has any child, zombie or not (reaps nothing). */
static bool have_children(void)
{
	siginfo_t si = { 0 };

	return !(waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == ECHILD);
}

static void loop_until_no_children(sd_event *e)
{
	uint64_t deadline = now_monotonic_usec() + SAFETY_USEC;

	while (have_children()) {
		assert_true(now_monotonic_usec() < deadline);
		assert_true(sd_event_run(e, 20 * USEC_PER_MSEC) >= 0);
	}
}

static void loop_until(sd_event *e, const int *calls, int want)
{
	uint64_t deadline = now_monotonic_usec() + SAFETY_USEC;

	while (*calls < want) {
		assert_true(now_monotonic_usec() < deadline);
		assert_true(sd_event_run(e, 100 * USEC_PER_MSEC) >= 0);
	}
}

static void loop_for(sd_event *e, uint64_t usec)
{
	uint64_t end = now_monotonic_usec() + usec;

	while (now_monotonic_usec() < end)
		assert_true(sd_event_run(e, 10 * USEC_PER_MSEC) >= 0);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	const char *src = getenv("DLQD_SOURCE_DIR");

	assert_non_null(f);
	f->fds_before = count_fds();
	assert_int_equal(sd_event_new(&f->e), 0);
	f->cfg.handler.type = HANDLER_EXEC;
	f->cfg.handler.timeout_usec = 30 * USEC_PER_SEC;
	f->cfg.handler.max_output = 4096;
	f->cfg.broker.prefetch = 100;
	if (src) {
		snprintf(f->exec_job, sizeof(f->exec_job), "%s/tests/support/exec_job.py", src);
	} else {
		/* __FILE__ is .../tests/unit/test_handler_exec.c */
		snprintf(f->exec_job, sizeof(f->exec_job), "%s", __FILE__);
		char *p = strrchr(f->exec_job, '/');
		assert_non_null(p);
		*p = '\0';
		p = strrchr(f->exec_job, '/');
		assert_non_null(p);
		strscpy(p, "/support/exec_job.py", sizeof(f->exec_job) - (size_t)(p - f->exec_job));
	}
	assert_int_equal(access(f->exec_job, R_OK), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	f->h = handler_free(f->h);
	if (f->subreaper) {
		/* A failed test may have left orphans with us: reap them so the
		 * next test starts clean. */
		uint64_t deadline = now_monotonic_usec() + SAFETY_USEC;

		prctl(PR_SET_CHILD_SUBREAPER, 0);
		loop_for(f->e, 200 * USEC_PER_MSEC);
		while (waitpid(-1, NULL, WNOHANG) >= 0 && now_monotonic_usec() < deadline)
			loop_for(f->e, 10 * USEC_PER_MSEC);
	}
	loop_until_no_children(f->e);
	f->e = sd_event_unref(f->e);
	assert_int_equal(count_fds(), f->fds_before);
	free(f);
	return 0;
}

static void on_done(struct handler_job *job, const struct result *r)
{
	struct run *run = job->userdata;

	assert_null(job->priv);
	run->calls++;
	run->r = *r;
}

/* Creates the handler for argv (NULL-terminated, borrowed until the call
 * returns: the handler keeps its own copy). */
static void make(struct fx *f, uint64_t timeout_usec, uint64_t max_output, char **argv)
{
	f->h = handler_free(f->h);
	f->cfg.handler.argv = argv;
	f->cfg.handler.timeout_usec = timeout_usec;
	f->cfg.handler.max_output = max_output;
	assert_int_equal(handler_exec_new(f->e, &f->cfg, &f->h), 0);
	f->cfg.handler.argv = NULL;
}

static void make_sh(struct fx *f, uint64_t timeout_usec, const char *script)
{
	char *argv[] = { "/bin/sh", "-c", (char *)script, NULL };

	make(f, timeout_usec, 4096, argv);
}

static void make_exec_job(struct fx *f, uint64_t timeout_usec)
{
	char *argv[] = { "/usr/bin/python3", f->exec_job, NULL };

	make(f, timeout_usec, 4096, argv);
}

static void job_init(struct run *run, const char *id, const char *payload, size_t len)
{
	memset(run, 0, sizeof(*run));
	run->job.message_id = id;
	run->job.trace_id = "trc-1";
	run->job.attempt = 0;
	run->job.max_attempt = 5;
	run->job.payload = payload;
	run->job.payload_len = len;
	run->job.done = on_done;
	run->job.userdata = run;
}

/* Submits one job and runs the loop until its done() fired once. */
static void run_one(struct fx *f, struct run *run, const char *payload)
{
	if (!run->job.done)
		job_init(run, "msg-1", payload, strlen(payload));
	assert_int_equal(handler_submit(f->h, &run->job), 0);
	/* done() never runs inside submit(). */
	assert_int_equal(run->calls, 0);
	assert_int_equal(f->h->in_flight, 1);
	loop_until(f->e, &run->calls, 1);
	assert_int_equal(run->calls, 1);
	assert_int_equal(f->h->in_flight, 0);
	/* And never twice. */
	loop_for(f->e, 20 * USEC_PER_MSEC);
	assert_int_equal(run->calls, 1);
}

static void test_exit_zero(void **state)
{
	struct fx *f = *state;
	struct run run = { 0 };

	make_sh(f, 30 * USEC_PER_SEC, "cat >/dev/null; exit 0");
	run_one(f, &run, "{}");
	assert_int_equal(run.r.kind, RESULT_SUCCESS);
	assert_string_equal(run.r.handler_code, "");
	assert_int_equal(run.r.evidence_len, 0);
	assert_true(run.r.duration_usec > 0);

	/* exec_job.py: no stub and {"op":"ok"} */
	make_exec_job(f, 30 * USEC_PER_SEC);
	run = (struct run){ 0 };
	run_one(f, &run, "{\"x\":1}");
	assert_int_equal(run.r.kind, RESULT_SUCCESS);
	run = (struct run){ 0 };
	run_one(f, &run, "{\"stub\":{\"op\":\"ok\"}}");
	assert_int_equal(run.r.kind, RESULT_SUCCESS);
}

static void test_exit_codes(void **state)
{
	struct fx *f = *state;
	struct run run = { 0 };

	make_exec_job(f, 30 * USEC_PER_SEC);
	run_one(f, &run, "{\"stub\":{\"op\":\"exit\",\"code\":75}}");
	assert_int_equal(run.r.kind, RESULT_EXIT);
	assert_int_equal(run.r.exit_code, 75);
	assert_non_null(strstr(run.r.detail, "75"));

	run = (struct run){ 0 };
	run_one(f, &run, "{\"stub\":{\"op\":\"exit\",\"code\":65}}");
	assert_int_equal(run.r.kind, RESULT_EXIT);
	assert_int_equal(run.r.exit_code, 65);

	/* "times": fails while attempt < times, then succeeds. */
	static const char times[] = "{\"stub\":{\"op\":\"exit\",\"code\":75,\"times\":2}}";
	run = (struct run){ 0 };
	job_init(&run, "msg-t", times, strlen(times));
	run.job.attempt = 1;
	run_one(f, &run, times);
	assert_int_equal(run.r.kind, RESULT_EXIT);
	assert_int_equal(run.r.exit_code, 75);
	run = (struct run){ 0 };
	job_init(&run, "msg-t", times, strlen(times));
	run.job.attempt = 2;
	run_one(f, &run, times);
	assert_int_equal(run.r.kind, RESULT_SUCCESS);

	/* Not JSON: EX_DATAERR; unknown op: EX_USAGE. */
	run = (struct run){ 0 };
	run_one(f, &run, "{not json");
	assert_int_equal(run.r.kind, RESULT_EXIT);
	assert_int_equal(run.r.exit_code, 65);
	assert_non_null(strstr(run.r.evidence, "not JSON"));
	run = (struct run){ 0 };
	run_one(f, &run, "{\"stub\":{\"op\":\"frobnicate\"}}");
	assert_int_equal(run.r.kind, RESULT_EXIT);
	assert_int_equal(run.r.exit_code, 64);
}

static void test_signal(void **state)
{
	struct fx *f = *state;
	struct run run = { 0 };

	make_exec_job(f, 30 * USEC_PER_SEC);
	run_one(f, &run, "{\"stub\":{\"op\":\"signal\",\"sig\":\"SEGV\"}}");
	assert_int_equal(run.r.kind, RESULT_SIGNAL);
	assert_int_equal(run.r.signal, SIGSEGV);
	assert_non_null(strstr(run.r.detail, "SEGV"));
}

/* Reaps every orphan re-parented to us (we are a subreaper) and checks that
 * both background sleeps were among them and killed by a signal. */
static void reap_orphans_killed(pid_t a, pid_t b)
{
	uint64_t deadline = now_monotonic_usec() + SAFETY_USEC;
	int n = 0, st;

	for (;;) {
		pid_t p = waitpid(-1, &st, WNOHANG);

		if (p < 0) {
			assert_int_equal(errno, ECHILD);
			break;
		}
		if (p == 0) {
			assert_true(now_monotonic_usec() < deadline);
			usleep(10000);
			continue;
		}
		assert_true(p == a || p == b);
		assert_true(WIFSIGNALED(st));
		n++;
	}
	assert_int_equal(n, 2);
}

static void check_timeout_kills_group(struct fx *f, const char *script, int want_signal)
{
	struct run run = { 0 };
	int leader = 0, a = 0, b = 0;

	/* Orphaned group members come to us, so we can see how they died. */
	assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	f->subreaper = true;
	make_sh(f, 2 * USEC_PER_SEC, script);
	run_one(f, &run, "{}");
	assert_int_equal(run.r.kind, RESULT_TIMEOUT);
	assert_int_equal(run.r.signal, want_signal);
	/* Printed once both sleeps exist, long before the timeout. */
	assert_int_equal(sscanf(run.r.evidence, "%d %d %d", &leader, &a, &b), 3);
	assert_true(leader > 0 && a > 0 && b > 0);

	reap_orphans_killed(a, b);
	assert_int_equal(kill(a, 0), -1);
	assert_int_equal(errno, ESRCH);
	assert_int_equal(kill(-leader, 0), -1);
	assert_int_equal(errno, ESRCH);
}

static void test_timeout_term(void **state)
{
	check_timeout_kills_group(
		*state, "sleep 100 & a=$!; sleep 100 & echo \"$$ $a $!\" >&2; wait", SIGTERM);
}

static void test_timeout_kill(void **state)
{
	/* Everything ignores SIGTERM: SIGKILL after the grace. */
	check_timeout_kills_group(
		*state, "trap '' TERM; sleep 100 & a=$!; sleep 100 & echo \"$$ $a $!\" >&2; wait",
		SIGKILL);
}

static void test_timeout_exec_job(void **state)
{
	struct fx *f = *state;
	struct run run = { 0 };

	make_exec_job(f, 500 * USEC_PER_MSEC);
	run_one(f, &run, "{\"stub\":{\"op\":\"hang\"}}");
	assert_int_equal(run.r.kind, RESULT_TIMEOUT);
	assert_int_equal(run.r.signal, SIGTERM);
	assert_non_null(strstr(run.r.detail, "timed out"));
}

static void test_env(void **state)
{
	struct fx *f = *state;
	struct run run = { 0 };
	struct sigaction ign = { .sa_handler = SIG_IGN }, old_usr1;
	sigset_t usr2, old_mask;

	/* Stale values of ours and systemd's handshake must not leak through;
	 * neither may our ignored or blocked signals. */
	setenv("DLQD_ATTEMPT", "999", 1);
	setenv("NOTIFY_SOCKET", "/run/nope", 1);
	setenv("DLQD_TEST_KEEP", "kept", 1);
	sigaction(SIGUSR1, &ign, &old_usr1);
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	sigprocmask(SIG_BLOCK, &usr2, &old_mask);

	make_sh(f, 30 * USEC_PER_SEC,
		"echo \"$DLQD_MESSAGE_ID|$DLQD_TRACE_ID|$DLQD_ATTEMPT|$DLQD_MAX_ATTEMPT|"
		"$(env | grep -c '^DLQD_ATTEMPT=')|${NOTIFY_SOCKET-unset}|$DLQD_TEST_KEEP\" >&2; "
		"[ \"$(cut -d' ' -f5 /proc/$$/stat)\" = \"$$\" ] && echo pgrp-ok >&2; "
		"grep -E '^Sig(Blk|Ign)' /proc/self/status >&2; "
		"ls /proc/self/fd | wc -l >&2; exit 3");
	job_init(&run, "msg-env", "{}", 2);
	run.job.attempt = 2;
	run_one(f, &run, "{}");

	sigprocmask(SIG_SETMASK, &old_mask, NULL);
	sigaction(SIGUSR1, &old_usr1, NULL);
	unsetenv("DLQD_ATTEMPT");
	unsetenv("NOTIFY_SOCKET");
	unsetenv("DLQD_TEST_KEEP");

	assert_int_equal(run.r.kind, RESULT_EXIT);
	assert_int_equal(run.r.exit_code, 3);
	unsigned long long sigblk = 1, sigign = 1;
	int nfds = 0;
	const char *p = run.r.evidence;

	assert_memory_equal(p, "msg-env|trc-1|2|5|1|unset|kept\npgrp-ok\n", 39);
	assert_int_equal(
		sscanf(p + 39, "SigBlk:\t%llx\nSigIgn:\t%llx\n%d\n", &sigblk, &sigign, &nfds), 3);
	assert_int_equal(sigblk, 0);
	/* Signals 32 and 33 are glibc's own, ignored by its posix_spawn in
	 * every child (and re-armed by a glibc program's start-up). */
	assert_int_equal(sigign & 0x7fffffffULL, 0);
	/* ls sees 0, 1, 2 and its own directory fd: nothing else inherited. */
	assert_int_equal(nfds, 4);
}

static void test_big_payload(void **state)
{
	struct fx *f = *state;
	size_t len = 2 * 1024 * 1024;
	char *payload = malloc(len + 1);
	struct run run = { 0 };

	assert_non_null(payload);
	memset(payload, 'x', len);
	payload[len] = '\0';
	make_sh(f, 60 * USEC_PER_SEC, "n=$(wc -c); [ \"$n\" -eq 2097152 ]");
	run_one(f, &run, payload);
	assert_int_equal(run.r.kind, RESULT_SUCCESS);

	/* A 2 MiB JSON document that only parses when complete. */
	static const char head[] = "{\"stub\":{\"op\":\"exit\",\"code\":7},\"pad\":\"";
	memcpy(payload, head, sizeof(head) - 1);
	payload[len - 2] = '"';
	payload[len - 1] = '}';
	make_exec_job(f, 60 * USEC_PER_SEC);
	run = (struct run){ 0 };
	run_one(f, &run, payload);
	assert_int_equal(run.r.kind, RESULT_EXIT);
	assert_int_equal(run.r.exit_code, 7);
	free(payload);
}

static void test_child_ignores_stdin(void **state)
{
	struct fx *f = *state;
	size_t len = 4 * 1024 * 1024;
	char *payload = malloc(len + 1);
	struct sigaction dfl = { .sa_handler = SIG_DFL }, old;
	struct run run = { 0 };
	sigset_t pending;

	/* With SIGPIPE at its default a leaked one would kill this test. */
	sigaction(SIGPIPE, &dfl, &old);
	assert_non_null(payload);
	memset(payload, 'y', len);
	payload[len] = '\0';
	make_sh(f, 30 * USEC_PER_SEC, "exec 0<&-; exit 0");
	run_one(f, &run, payload);
	assert_int_equal(run.r.kind, RESULT_SUCCESS);
	sigpending(&pending);
	assert_false(sigismember(&pending, SIGPIPE));
	sigaction(SIGPIPE, &old, NULL);
	free(payload);
}

static void test_stderr_tail(void **state)
{
	struct fx *f = *state;
	char *argv[] = { "/bin/sh", "-c",
			 "i=0; while [ $i -lt 1000 ]; do printf 'line %03d\\n' $i >&2; "
			 "i=$((i+1)); done; exit 1",
			 NULL };
	char expect[9001];
	struct run run = { 0 };

	for (unsigned i = 0; i < 1000; i++)
		snprintf(expect + i * 9, 10, "line %03u\n", i % 1000);

	make(f, 30 * USEC_PER_SEC, 100, argv);
	run_one(f, &run, "{}");
	assert_int_equal(run.r.kind, RESULT_EXIT);
	assert_int_equal(run.r.evidence_len, 100);
	assert_true(run.r.evidence_truncated);
	assert_memory_equal(run.r.evidence, expect + 9000 - 100, 100);
	assert_int_equal(run.r.evidence[100], '\0');

	/* A max_output above the evidence field: the field is the bound. */
	make(f, 30 * USEC_PER_SEC, 1024 * 1024, argv);
	run = (struct run){ 0 };
	run_one(f, &run, "{}");
	assert_int_equal(run.r.evidence_len, RESULT_EVIDENCE_MAX - 1);
	assert_true(run.r.evidence_truncated);
	assert_memory_equal(run.r.evidence, expect + 9000 - (RESULT_EVIDENCE_MAX - 1),
			    RESULT_EVIDENCE_MAX - 1);

	/* max_output = 0 keeps nothing. */
	make(f, 30 * USEC_PER_SEC, 0, argv);
	run = (struct run){ 0 };
	run_one(f, &run, "{}");
	assert_int_equal(run.r.evidence_len, 0);
	assert_true(run.r.evidence_truncated);

	/* Short stderr is kept whole; exec_job.py's stderr op. */
	make_exec_job(f, 30 * USEC_PER_SEC);
	run = (struct run){ 0 };
	run_one(f, &run, "{\"stub\":{\"op\":\"stderr\",\"text\":\"boom\\n\",\"code\":2}}");
	assert_int_equal(run.r.kind, RESULT_EXIT);
	assert_int_equal(run.r.exit_code, 2);
	assert_string_equal(run.r.evidence, "boom\n");
	assert_false(run.r.evidence_truncated);
}

static void test_stderr_tail_utf8(void **state)
{
	struct fx *f = *state;
	/* "é" is 2 bytes: a 5-byte tail of "éééé" would start mid-character. */
	char *argv[] = { "/bin/sh", "-c",
			 "printf '\\303\\251\\303\\251\\303\\251\\303\\251' >&2; exit 1", NULL };
	struct run run = { 0 };

	make(f, 30 * USEC_PER_SEC, 5, argv);
	run_one(f, &run, "{}");
	assert_int_equal(run.r.evidence_len, 4);
	assert_string_equal(run.r.evidence, "\303\251\303\251");
}

static void check_report(struct fx *f, const char *script, int code, const char *want_code,
			 const char *want_class)
{
	struct run run = { 0 };

	make_sh(f, 30 * USEC_PER_SEC, script);
	run_one(f, &run, "{}");
	if (code == 0) {
		assert_int_equal(run.r.kind, RESULT_SUCCESS);
	} else {
		assert_int_equal(run.r.kind, RESULT_EXIT);
		assert_int_equal(run.r.exit_code, code);
	}
	assert_string_equal(run.r.handler_code, want_code);
	assert_string_equal(run.r.handler_class, want_class);
}

static void test_error_code(void **state)
{
	struct fx *f = *state;
	struct run run = { 0 };

	make_exec_job(f, 30 * USEC_PER_SEC);
	run_one(f, &run,
		"{\"stub\":{\"op\":\"error_code\",\"error_code\":\"UPSTREAM_BUSY\","
		"\"error_class\":\"TRANSIENT\",\"code\":75}}");
	assert_int_equal(run.r.kind, RESULT_EXIT);
	assert_int_equal(run.r.exit_code, 75);
	assert_string_equal(run.r.handler_code, "UPSTREAM_BUSY");
	assert_string_equal(run.r.handler_class, "TRANSIENT");

	check_report(f, "echo noise; printf '{\"error_code\":\"NO_NEWLINE_1\"}'; exit 4", 4,
		     "NO_NEWLINE_1", "");
	/* Trailing blank lines and CR are not "the last line". */
	check_report(
		f,
		"printf '{\"error_code\":\"A_1\",\"error_class\":\"B_2\"}\\r\\n\\n  \\n'; exit 4",
		4, "A_1", "B_2");
	/* Only the last line counts. */
	check_report(f, "echo '{\"error_code\":\"EARLIER\"}'; echo later; exit 4", 4, "", "");
	/* Invalid characters: code rejected; class alone rejected. */
	check_report(f, "echo '{\"error_code\":\"bad code\",\"error_class\":\"OK\"}'; exit 4", 4,
		     "", "");
	check_report(f, "echo '{\"error_code\":\"OK_1\",\"error_class\":\"lower\"}'; exit 4", 4,
		     "OK_1", "");
	check_report(f, "echo '{\"error_code\":42}'; exit 4", 4, "", "");
	check_report(f, "echo '[\"error_code\"]'; exit 4", 4, "", "");
	/* Too long for handler_code (63 max). */
	check_report(
		f,
		"echo "
		"'{\"error_code\":"
		"\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}'; exit 4",
		4, "", "");
	/* A last line longer than the line bound hides the earlier report. */
	check_report(f,
		     "echo '{\"error_code\":\"EARLIER\"}'; head -c 2000 /dev/zero | tr '\\0' x; "
		     "echo; exit 4",
		     4, "", "");
	/* A long stdout before the report does not matter. */
	check_report(f,
		     "head -c 300000 /dev/zero | tr '\\0' x; echo; echo "
		     "'{\"error_code\":\"AFTER_BULK\"}'; exit 4",
		     4, "AFTER_BULK", "");
	/* Success ignores reports. */
	check_report(f, "echo '{\"error_code\":\"IGNORED\"}'", 0, "", "");
}

static void test_cannot_execute(void **state)
{
	struct fx *f = *state;
	char *missing[] = { "/nonexistent/dlqd-job", "--flag", NULL };
	char *unknown[] = { "dlqd-no-such-command-anywhere", NULL };
	char tmpl[] = "/tmp/dlqd-test-noexec-XXXXXX";
	struct run run = { 0 };
	int fd;

	make(f, 30 * USEC_PER_SEC, 4096, missing);
	run_one(f, &run, "{}");
	assert_int_equal(run.r.kind, RESULT_EXIT);
	assert_int_equal(run.r.exit_code, 127);
	assert_non_null(strstr(run.r.detail, "cannot execute /nonexistent/dlqd-job"));
	assert_non_null(strstr(run.r.evidence, "cannot execute /nonexistent/dlqd-job"));
	assert_int_equal(run.r.evidence_len, strlen(run.r.evidence));

	make(f, 30 * USEC_PER_SEC, 4096, unknown);
	run = (struct run){ 0 };
	run_one(f, &run, "{}");
	assert_int_equal(run.r.kind, RESULT_EXIT);
	assert_int_equal(run.r.exit_code, 127);

	/* Exists but is not executable: 126, like a shell. */
	fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "#!/bin/sh\n", 10), 10);
	close(fd);
	assert_int_equal(chmod(tmpl, 0644), 0);
	char *noexec[] = { tmpl, NULL };
	make(f, 30 * USEC_PER_SEC, 4096, noexec);
	run = (struct run){ 0 };
	run_one(f, &run, "{}");
	unlink(tmpl);
	/* No x bit at all: EACCES even for root. */
	assert_int_equal(run.r.kind, RESULT_EXIT);
	assert_int_equal(run.r.exit_code, 126);
	assert_non_null(strstr(run.r.detail, "cannot execute"));
}

static void test_concurrent(void **state)
{
	struct fx *f = *state;
	enum { N = 50 };
	struct run runs[N];
	char ids[N][16];
	int total = 0;

	make_sh(f, 30 * USEC_PER_SEC,
		"cat >/dev/null; echo \"$DLQD_MESSAGE_ID\" >&2; exit $((DLQD_ATTEMPT % 4))");
	for (int i = 0; i < N; i++) {
		snprintf(ids[i], sizeof(ids[i]), "m%d", i);
		job_init(&runs[i], ids[i], "{\"n\":1}", 7);
		runs[i].job.attempt = (uint32_t)i;
		assert_int_equal(handler_submit(f->h, &runs[i].job), 0);
	}
	assert_int_equal(f->h->in_flight, N);

	uint64_t deadline = now_monotonic_usec() + SAFETY_USEC;
	for (;;) {
		total = 0;
		for (int i = 0; i < N; i++)
			total += runs[i].calls;
		if (total == N)
			break;
		assert_true(now_monotonic_usec() < deadline);
		assert_true(sd_event_run(f->e, 100 * USEC_PER_MSEC) >= 0);
	}
	loop_for(f->e, 50 * USEC_PER_MSEC);
	assert_int_equal(f->h->in_flight, 0);
	for (int i = 0; i < N; i++) {
		char want[20];

		assert_int_equal(runs[i].calls, 1);
		if (i % 4 == 0) {
			assert_int_equal(runs[i].r.kind, RESULT_SUCCESS);
		} else {
			assert_int_equal(runs[i].r.kind, RESULT_EXIT);
			assert_int_equal(runs[i].r.exit_code, i % 4);
		}
		snprintf(want, sizeof(want), "%s\n", ids[i]);
		assert_string_equal(runs[i].r.evidence, want);
	}
}

static void test_limit(void **state)
{
	struct fx *f = *state;
	struct run a = { 0 }, b = { 0 };

	f->cfg.broker.prefetch = 1;
	make_sh(f, 30 * USEC_PER_SEC, "exit 0");
	job_init(&a, "a", "{}", 2);
	job_init(&b, "b", "{}", 2);
	assert_int_equal(handler_submit(f->h, &a.job), 0);
	assert_int_equal(handler_submit(f->h, &b.job), -EBUSY);
	loop_until(f->e, &a.calls, 1);
	assert_int_equal(handler_submit(f->h, &b.job), 0);
	loop_until(f->e, &b.calls, 1);
	assert_int_equal(a.calls + b.calls, 2);

	/* A job without done() or with a NULL payload of non-zero length. */
	job_init(&b, "b", NULL, 3);
	assert_int_equal(handler_submit(f->h, &b.job), -EINVAL);
	job_init(&b, "b", "{}", 2);
	b.job.done = NULL;
	assert_int_equal(handler_submit(f->h, &b.job), -EINVAL);
	/* An empty payload is fine: stdin is at EOF at once. */
	job_init(&b, "b", "", 0);
	assert_int_equal(handler_submit(f->h, &b.job), 0);
	loop_until(f->e, &b.calls, 1);
	assert_int_equal(b.r.kind, RESULT_SUCCESS);
}

static void test_cancel(void **state)
{
	struct fx *f = *state;
	char *argv[] = { "/bin/sleep", "100", NULL };
	struct run a = { 0 }, b = { 0 }, c = { 0 };

	make(f, 30 * USEC_PER_SEC, 4096, argv);

	/* Cancelled right after submit, and after it ran for a while. */
	job_init(&a, "a", "{}", 2);
	job_init(&b, "b", "{}", 2);
	job_init(&c, "c", "{}", 2);
	assert_int_equal(handler_submit(f->h, &a.job), 0);
	assert_int_equal(handler_submit(f->h, &b.job), 0);
	assert_int_equal(handler_submit(f->h, &c.job), 0);
	handler_cancel(f->h, &a.job);
	assert_null(a.job.priv);
	loop_for(f->e, 100 * USEC_PER_MSEC);
	handler_cancel(f->h, &b.job);
	/* A second cancel is harmless. */
	handler_cancel(f->h, &b.job);
	assert_int_equal(f->h->in_flight, 1);

	loop_for(f->e, 100 * USEC_PER_MSEC);
	handler_cancel(f->h, &c.job);
	assert_int_equal(f->h->in_flight, 0);
	loop_until_no_children(f->e);
	loop_for(f->e, 20 * USEC_PER_MSEC);
	assert_int_equal(a.calls + b.calls + c.calls, 0);
}

static void test_free_with_jobs_running(void **state)
{
	struct fx *f = *state;
	struct run runs[3];

	make_sh(f, 30 * USEC_PER_SEC, "sleep 100 & sleep 100");
	for (int i = 0; i < 3; i++) {
		job_init(&runs[i], "x", "{}", 2);
		assert_int_equal(handler_submit(f->h, &runs[i].job), 0);
	}
	loop_for(f->e, 50 * USEC_PER_MSEC);
	f->h = handler_free(f->h);
	/* The loop still reaps what the handler left behind. */
	loop_until_no_children(f->e);
	for (int i = 0; i < 3; i++)
		assert_int_equal(runs[i].calls, 0);
}

static void test_grandchild_holds_pipes(void **state)
{
	struct fx *f = *state;
	struct run run = { 0 };
	int bg = 0;

	/* The leader exits at once; its background child keeps stdout and
	 * stderr open. The job completes anyway, with the leader's status. */
	make_sh(f, 30 * USEC_PER_SEC, "sleep 30 & echo \"$!\" >&2; exit 4");
	run_one(f, &run, "{}");
	assert_int_equal(run.r.kind, RESULT_EXIT);
	assert_int_equal(run.r.exit_code, 4);
	assert_int_equal(sscanf(run.r.evidence, "%d", &bg), 1);
	assert_int_equal(kill(bg, SIGKILL), 0);

	/* Cancelled while (most likely) waiting for that EOF: still silent. */
	run = (struct run){ 0 };
	job_init(&run, "msg-2", "{}", 2);
	make_sh(f, 30 * USEC_PER_SEC, "sleep 2 & exit 4");
	assert_int_equal(handler_submit(f->h, &run.job), 0);
	loop_for(f->e, 50 * USEC_PER_MSEC);
	if (run.calls == 0)
		handler_cancel(f->h, &run.job);
	loop_until_no_children(f->e);
	loop_for(f->e, 150 * USEC_PER_MSEC);
	assert_true(run.calls == 0 || run.r.exit_code == 4);
	assert_int_equal(f->h->in_flight, 0);
}

static void test_new_errors(void **state)
{
	struct fx *f = *state;
	struct handler *h = NULL;
	char *argv[] = { "/bin/true", NULL };
	char *empty[] = { NULL };
	sigset_t chld, old;

	f->cfg.handler.argv = NULL;
	assert_int_equal(handler_exec_new(f->e, &f->cfg, &h), -EINVAL);
	f->cfg.handler.argv = empty;
	assert_int_equal(handler_exec_new(f->e, &f->cfg, &h), -EINVAL);

	/* sd-event cannot watch children unless SIGCHLD is blocked. */
	f->cfg.handler.argv = argv;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_UNBLOCK, &chld, &old);
	assert_int_equal(handler_exec_new(f->e, &f->cfg, &h), -EBUSY);
	sigprocmask(SIG_SETMASK, &old, NULL);
	assert_null(h);

	/* handler_new() dispatches on the type. */
	f->cfg.handler.type = HANDLER_EXEC;
	assert_int_equal(handler_new(f->e, &f->cfg, &h), 0);
	assert_string_equal(h->ops->name, "exec");
	h = handler_free(h);
	f->cfg.handler.argv = NULL;
}

static void test_exec_job_log(void **state)
{
	struct fx *f = *state;
	char tmpl[] = "/tmp/dlqd-test-execlog-XXXXXX";
	char *text = NULL;
	size_t len;
	json_t *line;
	struct run run = { 0 };
	int fd = mkstemp(tmpl);

	assert_true(fd >= 0);
	close(fd);
	setenv("DLQD_TEST_LOG", tmpl, 1);
	make_exec_job(f, 30 * USEC_PER_SEC);
	static const char payload[] = "{\"stub\":{\"op\":\"exit\",\"code\":9}}";

	job_init(&run, "msg-log", payload, strlen(payload));
	run.job.attempt = 3;
	run_one(f, &run, run.job.payload);
	unsetenv("DLQD_TEST_LOG");
	assert_int_equal(run.r.exit_code, 9);

	assert_int_equal(read_file_max(tmpl, 4096, &text, &len), 0);
	unlink(tmpl);
	assert_non_null(strchr(text, '\n'));
	assert_ptr_equal(strchr(text, '\n'), text + len - 1); /* one line */
	line = json_loads(text, 0, NULL);
	assert_non_null(line);
	assert_string_equal(json_string_value(json_object_get(line, "message_id")), "msg-log");
	assert_int_equal(json_integer_value(json_object_get(line, "attempt")), 3);
	assert_int_equal(json_integer_value(json_object_get(line, "exit")), 9);
	json_decref(line);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_exit_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exit_codes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_signal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_term, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_kill, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_exec_job, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_payload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_child_ignores_stdin, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stderr_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stderr_tail_utf8, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_code, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cannot_execute, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_with_jobs_running, setup, teardown),
		cmocka_unit_test_setup_teardown(test_grandchild_holds_pipes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exec_job_log, setup, teardown),
	};
	sigset_t chld;

	/* As the daemon does: sd_event_add_child() needs SIGCHLD blocked. */
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
