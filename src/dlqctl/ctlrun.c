/*
 * ctlrun: a dlqctl command from the loaded config to the exit status: the
 * refusals, the connection, the pass over the DLQ, and what replay and
 * purge do with each match. Replays wait in the window for their publisher
 * confirm and only then is the DLQ copy acked; purges wait in the window
 * for the archive's fsync. Every error is -errno plus a one-line reason;
 * ctlexit turns the stage it happened at into the exit status.
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

#define READ_TIMEOUT_USEC  (200 * USEC_PER_MSEC)
#define IDLE_TIMEOUT_USEC  (15 * USEC_PER_SEC)
#define QUORUM_IDLE_USEC   (2 * USEC_PER_SEC)
#define DRAIN_TIMEOUT_USEC (30 * USEC_PER_SEC)
#define ARCHIVE_FLUSH_USEC (500 * USEC_PER_MSEC)
#define ARCHIVE_BATCH_MAX  (8 * 1024 * 1024) /* text written per fsync */

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

static void set_fatal(struct ctl *c, int r, const char *msg)
{
	if (c->fatal)
		return;
	c->fatal = r < 0 ? r : -EIO;
	strscpy(c->err, msg, sizeof(c->err));
}

/* ---- replay ---- */

static void on_settle(void *userdata, const struct pending *p, bool ack)
{
	struct ctl *c = userdata;
	char err[256];
	int r;

	if (!ack) {
		set_fatal(c, -EIO, "the broker refused (nacked) a replayed message; stopped");
		return;
	}
	if (c->stop_acking)
		return;
	/* Confirmed on the main queue: only now may the DLQ copy go. */
	if ((r = dlqscan_ack(c->scan, p->tag, err, sizeof(err))) < 0) {
		set_fatal(c, r, err);
		c->stop_acking = true;
		return;
	}
	c->done++;
}

static void on_confirm(void *userdata, enum dlqscan_confirm kind, uint64_t seq, bool multiple)
{
	struct ctl *c = userdata;

	if (kind == DLQSCAN_RETURN) {
		c->stop_acking = true;
		set_fatal(c, -ENOENT,
			  "the broker returned a replayed message as unroutable (main queue "
			  "deleted?); stopped, unconfirmed messages stay in the DLQ");
		return;
	}
	window_confirm(&c->win, seq, multiple, kind == DLQSCAN_ACK, on_settle, c);
}

static int pump_confirms(struct ctl *c, uint64_t timeout_usec)
{
	char err[256];
	int r = dlqscan_confirms(c->scan, timeout_usec, on_confirm, c, err, sizeof(err));

	if (r < 0)
		set_fatal(c, r, err);
	return r;
}

static void drain_confirms(struct ctl *c)
{
	uint64_t deadline = now_monotonic_usec() + DRAIN_TIMEOUT_USEC;

	/* Even after a nack or a return: what the broker did confirm must still
	 * leave the DLQ, or it would be there twice. */
	while (c->win.count > 0 && now_monotonic_usec() < deadline)
		if (pump_confirms(c, READ_TIMEOUT_USEC) < 0)
			break;
	if (c->win.count > 0 && !c->fatal)
		set_fatal(c, -ETIMEDOUT, "timed out waiting for publisher confirms");
}

static bool schema_blocked(const struct ctl *c, const struct dlq_record *r)
{
	if (!r->envelope || c->o->force)
		return false;
	for (char **v = c->config->replay.block_schema_versions; v && *v; v++)
		if (strcmp(*v, r->schema_version) == 0)
			return true;
	return false;
}

/* Waits for room in the window and a token of the rate; false to skip the message. */
static bool replay_wait(struct ctl *c)
{
	uint64_t wait, deadline = now_monotonic_usec() + DRAIN_TIMEOUT_USEC;

	while (window_full(&c->win) && !c->fatal && !interrupted) {
		if (now_monotonic_usec() > deadline) {
			set_fatal(c, -ETIMEDOUT,
				  "no publisher confirms for 30s (is the broker blocked by a "
				  "resource alarm?)");
			return false;
		}
		pump_confirms(c, READ_TIMEOUT_USEC);
	}
	if (window_full(&c->win))
		return false;
	while ((wait = ratelimit_take(&c->rl, now_monotonic_usec())) > 0 && !c->fatal) {
		if (interrupted)
			return false; /* not taken: this one stays in the DLQ */
		pump_confirms(c, MIN(wait, READ_TIMEOUT_USEC));
	}
	return !c->fatal;
}

/* Publishes the replay copy; its publish sequence number or -errno (reason in err). */
static int64_t publish_copy(struct ctl *c, const struct dlqscan_delivery *d,
			    const struct dlq_record *r, const struct envelope *env, char *err,
			    size_t errlen)
{
	struct dlq_replay rp;
	int64_t seq;
	int k;

	k = dlqrecord_replay(env, r, now_realtime_usec(), &rp);
	if (k < 0)
		return error_set(err, errlen, k, "out of memory");
	seq = dlqscan_publish(c->scan, c->config->pipeline.queue, d, rp.body, rp.len, rp.set,
			      rp.n_set, dlqrecord_replay_drops, err, errlen);
	dlqrecord_replay_done(&rp);
	return seq;
}

static void replay_one(struct ctl *c, const struct dlqscan_delivery *d, const struct dlq_record *r,
		       const struct envelope *env)
{
	struct pending *p;
	char err[256];
	int64_t seq;

	if (schema_blocked(c, r)) {
		c->refused++;
		return;
	}
	if (c->o->dry_run) {
		c->done++;
		return;
	}
	if (!replay_wait(c))
		return;
	seq = publish_copy(c, d, r, env, err, sizeof(err));
	if (seq < 0) {
		set_fatal(c, (int)seq, err);
		return;
	}
	p = window_push(&c->win);
	if (!p) { /* not reached: replay_wait() made room */
		set_fatal(c, -ENOBUFS, "replay window full");
		return;
	}
	p->seq = (uint64_t)seq;
	p->tag = d->tag;
	pump_confirms(c, 0);
}

/* ---- purge ---- */

/* Writes and fsyncs the archive, then acks and logs the batch. */
static void purge_flush(struct ctl *c)
{
	char err[256];
	int r;

	if (c->win.count == 0)
		return;
	c->archive_flushed_at = now_monotonic_usec();
	if (c->archive.fd >= 0 && (r = archive_flush(&c->archive)) < 0) {
		snprintf(err, sizeof(err), "writing the archive %s: %s", c->o->archive_path,
			 strerror(-r));
		set_fatal(c, r, err);
		return;
	}
	ctlout_clear_progress(c); /* the log lines go to the same terminal */
	for (; c->win.count > 0; window_pop(&c->win)) {
		struct pending *p = window_at(&c->win, 0);
		if ((r = dlqscan_ack(c->scan, p->tag, err, sizeof(err))) < 0) {
			set_fatal(c, r, err);
			return;
		}
		ctlout_purged(c, p);
		c->done++;
	}
}

static void purge_one(struct ctl *c, const struct dlqscan_delivery *d, const struct dlq_record *r)
{
	struct pending *p;
	struct buf line;
	int k;

	if (c->o->dry_run) {
		c->done++;
		return;
	}
	if (c->archive.fd >= 0) {
		buf_init(&line, ARCHIVE_LINE_MAX);
		k = dlqrecord_json(&d->msg, r, now_realtime_usec(),
				   DLQRECORD_JSON_FULL | DLQRECORD_JSON_RAW_BODY, &line);
		/* The batch goes out before a line that would push it past its
		 * size, so only one line larger than the buffer fails. */
		if (k >= 0 && c->win.count > 0 &&
		    archive_pending(&c->archive) + line.len + 1 > ARCHIVE_BATCH_MAX)
			purge_flush(c);
		if (k >= 0 && !c->fatal)
			k = archive_add(&c->archive, line.data, line.len);
		buf_done(&line);
		if (c->fatal)
			return;
		if (k < 0) {
			set_fatal(c, k, "archive line too large or out of memory");
			return;
		}
	}
	p = window_push(&c->win);
	if (!p) { /* not reached: the push that fills the window flushes it */
		set_fatal(c, -ENOBUFS, "purge window full");
		return;
	}
	p->tag = d->tag;
	p->attempt = r->attempt;
	strscpy(p->message_id, r->message_id, sizeof(p->message_id));
	strscpy(p->error_code, r->error_code, sizeof(p->error_code));
	strscpy(p->error_class, r->error_class, sizeof(p->error_class));
	if (window_full(&c->win) || archive_pending(&c->archive) > ARCHIVE_BATCH_MAX)
		purge_flush(c);
}

/* ---- the scan ---- */

static bool limit_reached(const struct ctl *c)
{
	if (!c->o->limit)
		return false;
	if (c->o->cmd == CTL_REPLAY)
		return c->done + c->win.count >= c->o->limit;
	return c->matched >= c->o->limit;
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
	r = dlqscan_next(c->scan, READ_TIMEOUT_USEC, &d, err, sizeof(err));
	if (r < 0) {
		/* e.g. "406 PRECONDITION_FAILED - delivery acknowledgement on
		 * channel 1 timed out" once consumer_timeout passed */
		set_fatal(c, r, err);
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
		set_fatal(c, r, "out of memory");
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
		set_fatal(c, r, err);
		return r;
	}
	while (c->scanned < c->depth && !interrupted && !c->fatal && !limit_reached(c)) {
		if (!scan_step(c, &last_delivery, idle, quorum))
			break;
		if (publishing)
			pump_confirms(c, 0);
		if (c->o->cmd == CTL_PURGE && c->win.count &&
		    now_monotonic_usec() - c->archive_flushed_at > ARCHIVE_FLUSH_USEC)
			purge_flush(c);
		ctlout_progress(c, false);
	}
	if (publishing)
		drain_confirms(c);
	if (c->o->cmd == CTL_PURGE && !c->fatal)
		purge_flush(c);
	ctlout_progress(c, true);
	ctlout_clear_progress(c);
	return c->fatal;
}

/* ---- before the scan ---- */

/* Refusals that need no broker. */
static int check_refusals(const struct ctl_options *o)
{
	if ((o->cmd == CTL_REPLAY || o->cmd == CTL_PURGE) && !o->all &&
	    dlqfilter_empty(&o->filter)) {
		ctlout_say("refusing to %s every message without --all; give a filter "
			   "(--error-code, --error-class, --older-than, --newer-than, "
			   "--message-id, --schema-version)",
			   o->cmd == CTL_REPLAY ? "replay" : "purge");
		return -EPERM;
	}
	if (o->cmd == CTL_PURGE && !o->yes && !o->dry_run) {
		ctlout_say("purge deletes messages for good: add --yes (and --archive FILE to "
			   "keep a copy), or try --dry-run");
		return -EPERM;
	}
	return 0;
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
	if ((r = check_refusals(o)) < 0)
		return r;
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
