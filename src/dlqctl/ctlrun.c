/*
 * ctlrun: a dlqctl command from the loaded config to the exit status: the
 * refusals, the connection, the sizes of the queues, the one pass over the
 * DLQ that hands each match to stats, list, show, replay.c or purge.c, and
 * the result. Every error is -errno plus a one-line reason; ctlexit turns
 * the stage it happened at into the exit status.
 */
#include "dlqctl/ctlrun.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "dlqctl/ctlout.h"
#include "dlqctl/purge.h"
#include "dlqctl/replay.h"

#define IDLE_TIMEOUT_USEC (15 * USEC_PER_SEC)
#define QUORUM_IDLE_USEC  (2 * USEC_PER_SEC)

static volatile sig_atomic_t interrupted;

bool ctlrun_interrupted(void)
{
	return interrupted != 0;
}

static void on_signal(int sig)
{
	/* A second Ctrl-C leaves at once: unacked messages are safe in the DLQ. */
	if (interrupted)
		_exit(ctlexit_code(CTLEXIT_RESULT, 0, true));
	interrupted = sig;
}

void ctlrun_fail(struct ctl *c, int r, const char *msg)
{
	if (c->fatal)
		return;
	c->fatal = r < 0 ? r : -EIO;
	strscpy(c->err, msg, sizeof(c->err));
}

static int on_delivery(struct ctl *c, const struct dlqscan_delivery *d)
{
	_cleanup_(envelope_freep) struct envelope *env = NULL;
	uint64_t now = now_realtime_usec();
	struct dlq_record r;
	int k;

	c->scanned++;
	k = dlqrecord_parse(&d->msg, now, &r, c->o->cmd == CTL_REPLAY ? &env : NULL);
	if (k < 0)
		return k;
	if (!dlqfilter_match(&c->o->filter, &r, now))
		return 0;
	c->matched++;
	switch (c->o->cmd) {
	case CTL_STATS:
		dlqstats_add(&c->stats, &r);
		return 0;
	case CTL_LIST:
		return ctlout_list_row(c, d, &r, now);
	case CTL_SHOW:
		return ctlout_show(c, d, &r, now);
	case CTL_REPLAY:
		replay_one(c, d, &r, env);
		return 0;
	case CTL_PURGE:
		purge_one(c, d, &r);
		return 0;
	}
	return 0;
}

/* One delivery, or a timeout; false when the scan must stop. */
static bool scan_step(struct ctl *c, uint64_t *last_delivery, uint64_t idle, bool quorum)
{
	uint64_t now = now_monotonic_usec();
	struct dlqscan_delivery *d;
	char err[256];
	int r;

	if (now >= c->t0 + c->o->max_run_usec) {
		ctlout_clear_progress(c);
		ctlout_say("stopped after --max-duration (%" PRIu64
			   "s) to stay below the broker's consumer_timeout; run again to go on",
			   c->o->max_run_usec / USEC_PER_SEC);
		return false;
	}
	r = dlqscan_next(c->scan, CTLRUN_READ_TIMEOUT_USEC, &d, err, sizeof(err));
	if (r < 0) {
		/* e.g. "406 PRECONDITION_FAILED - delivery acknowledgement on
		 * channel 1 timed out" once consumer_timeout passed */
		ctlrun_fail(c, r, err);
		return false;
	}
	if (r == 0) {
		if (now - *last_delivery <= idle)
			return true;
		ctlout_clear_progress(c);
		ctlout_say("warning: read %" PRIu64 " of %" PRIu64 " messages; %s", c->scanned,
			   c->depth,
			   quorum ? "RabbitMQ hands one consumer of a quorum queue at most 2000 "
				    "unacked messages (see docs/dlqctl.md)"
				  : "the rest are held by another consumer");
		c->stalled = true;
		return false;
	}
	*last_delivery = now;
	r = on_delivery(c, d);
	if (r == -EPIPE)
		return false; /* stdout closed (| head): stop quietly */
	if (r < 0) {
		ctlrun_fail(c, r, "out of memory");
		return false;
	}
	return true;
}

/* Reads depth messages of the DLQ in order, or until a limit or a signal. */
static int scan(struct ctl *c)
{
	bool quorum = c->config->pipeline.queue_type == QUEUE_QUORUM;
	/* A quorum queue stops delivering at its unacked cap at once: no need
	 * to wait as long as for a slow broker. */
	uint64_t idle = quorum ? QUORUM_IDLE_USEC : IDLE_TIMEOUT_USEC;
	uint64_t last_delivery = now_monotonic_usec();
	bool publishing = c->o->cmd == CTL_REPLAY && !c->o->dry_run;
	char err[256];
	int r;

	if ((r = dlqscan_start(c->scan, c->dlq, err, sizeof(err))) < 0) {
		ctlrun_fail(c, r, err);
		return r;
	}
	while (c->scanned < c->depth && !interrupted && !c->fatal &&
	       !ctlopts_limit_reached(c->o, c->matched, c->done, c->win.count)) {
		if (!scan_step(c, &last_delivery, idle, quorum))
			break;
		if (publishing)
			replay_pump(c, 0);
		if (c->o->cmd == CTL_PURGE)
			purge_tick(c);
		ctlout_progress(c, false);
	}
	if (publishing)
		replay_drain(c);
	if (c->o->cmd == CTL_PURGE && !c->fatal)
		purge_flush(c);
	ctlout_progress(c, true);
	ctlout_clear_progress(c);
	return c->fatal;
}

static int load_config(struct ctl *c)
{
	struct diag diags = { 0 };
	int r;

	r = config_load_for_broker(c->o->config_path, &c->config, &diags);
	for (size_t i = 0; i < diags.n; i++)
		fprintf(stderr, "%s\n", diags.lines[i]);
	diag_done(&diags);
	if (r < 0) {
		ctlout_say("%s: configuration is invalid", c->o->config_path);
		return r == -ENOMEM ? r : -EINVAL;
	}
	snprintf(c->dlq, sizeof(c->dlq), "%s.dlq", c->config->pipeline.queue);
	return 0;
}

/* Sizes the DLQ (and for replay checks the main queue); -ENOENT when one is missing. */
static int size_queues(struct ctl *c)
{
	uint32_t consumers = 0;
	uint64_t main_depth;
	char err[512];
	int r;

	r = dlqscan_depth(c->scan, c->dlq, &c->depth, &consumers, err, sizeof(err));
	if (r < 0) {
		ctlout_say("%s%s", err,
			   r == -ENOENT ? " (is [pipeline] queue right, and has dlqd declared its "
					  "topology?)"
					: "");
		return r;
	}
	if (consumers > 0)
		ctlout_say("warning: %s has %u other consumer(s); messages they hold are not seen",
			   c->dlq, consumers);
	if (c->o->cmd != CTL_REPLAY)
		return 0;
	r = dlqscan_depth(c->scan, c->config->pipeline.queue, &main_depth, NULL, err, sizeof(err));
	if (r < 0)
		ctlout_say("%s%s%s", r == -ENOENT ? "main " : "", err,
			   r == -ENOENT ? "; nothing replayed" : "");
	return r;
}

/* The run up to its result; *stage says where it stopped. */
static int run(struct ctl *c, enum ctlexit_stage *stage)
{
	const struct ctl_options *o = c->o;
	struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESTART };
	char err[512];
	int r;

	*stage = CTLEXIT_POLICY;
	if ((r = ctlopts_refusal(o, err, sizeof(err))) < 0) {
		ctlout_say("%s", err);
		return r;
	}
	*stage = CTLEXIT_ARGS;
	if ((r = load_config(c)) < 0)
		return r;
	*stage = CTLEXIT_RUN;
	if (o->archive_path && (r = archive_open(&c->archive, o->archive_path)) < 0) {
		ctlout_say("cannot open the archive %s: %s", o->archive_path, strerror(-r));
		return r;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	*stage = CTLEXIT_CONNECT;
	r = dlqscan_open(c->config, o->cmd == CTL_REPLAY && !o->dry_run, &c->scan, err,
			 sizeof(err));
	if (r < 0) {
		ctlout_say("cannot reach the broker: %s", err);
		return r;
	}
	*stage = CTLEXIT_QUEUE;
	if ((r = size_queues(c)) < 0)
		return r;
	*stage = CTLEXIT_RUN;
	c->t0 = now_monotonic_usec();
	ratelimit_init(&c->rl, (double)o->rate, 1, c->t0);
	if (c->depth > 0 && (r = scan(c)) < 0) {
		ctlout_summary(c);
		return r;
	}
	ctlout_summary(c);
	*stage = CTLEXIT_RESULT;
	if (o->cmd == CTL_SHOW && c->matched == 0)
		return -ENOENT;
	if (c->stalled && (o->cmd == CTL_REPLAY || o->cmd == CTL_PURGE))
		return -EAGAIN;
	if (c->refused)
		return -EPERM;
	return 0;
}

int ctlrun(const struct ctl_options *o)
{
	_cleanup_free_ struct ctl *c = calloc(1, sizeof(*c));
	enum ctlexit_stage stage = CTLEXIT_RUN;
	int r;

	if (!c)
		return ctlexit_code(stage, -ENOMEM, false);
	c->o = o;
	c->tty = isatty(STDERR_FILENO);
	c->archive.fd = -1;
	if (dlqstats_init(&c->stats) < 0) {
		ctlout_say("out of memory");
		return ctlexit_code(stage, -ENOMEM, false);
	}
	r = run(c, &stage);
	c->scan = dlqscan_free(c->scan); /* closing returns every unacked message */
	archive_close(&c->archive);
	dlqstats_done(&c->stats);
	config_free(c->config);
	return ctlexit_code(stage, r, interrupted);
}
