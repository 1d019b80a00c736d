/*
 * replay: moving a matching message back to the main queue. The copy is
 * published in confirm mode at --rate and waits in the window; only once
 * the broker confirmed it is the DLQ copy acked. A nack or a return stops
 * the run; what the broker did confirm still leaves the DLQ, so nothing is
 * there twice. Blocked schema versions stay in the DLQ and are counted.
 */
#include "dlqctl/replay.h"

#include <errno.h>
#include <string.h>

#define DRAIN_TIMEOUT_USEC (30 * USEC_PER_SEC)

static void on_settle(void *userdata, const struct pending *p, bool ack)
{
	struct ctl *c = userdata;
	char err[256];
	int r;

	if (!ack) {
		ctlrun_fail(c, -EIO, "the broker refused (nacked) a replayed message; stopped");
		return;
	}
	if (c->stop_acking)
		return;
	/* Confirmed on the main queue: only now may the DLQ copy go. */
	if ((r = dlqscan_ack(c->scan, p->tag, err, sizeof(err))) < 0) {
		ctlrun_fail(c, r, err);
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
		ctlrun_fail(c, -ENOENT,
			    "the broker returned a replayed message as unroutable (main queue "
			    "deleted?); stopped, unconfirmed messages stay in the DLQ");
		return;
	}
	window_confirm(&c->win, seq, multiple, kind == DLQSCAN_ACK, on_settle, c);
}

int replay_pump(struct ctl *c, uint64_t timeout_usec)
{
	char err[256];
	int r = dlqscan_confirms(c->scan, timeout_usec, on_confirm, c, err, sizeof(err));

	if (r < 0)
		ctlrun_fail(c, r, err);
	return r;
}

void replay_drain(struct ctl *c)
{
	uint64_t deadline = now_monotonic_usec() + DRAIN_TIMEOUT_USEC;

	/* Even after a nack or a return: what the broker did confirm must still
	 * leave the DLQ, or it would be there twice. */
	while (c->win.count > 0 && now_monotonic_usec() < deadline)
		if (replay_pump(c, CTLRUN_READ_TIMEOUT_USEC) < 0)
			break;
	if (c->win.count > 0 && !c->fatal)
		ctlrun_fail(c, -ETIMEDOUT, "timed out waiting for publisher confirms");
}

/* Waits for room in the window and a token of the rate; false to skip the message. */
static bool replay_wait(struct ctl *c)
{
	uint64_t wait, deadline = now_monotonic_usec() + DRAIN_TIMEOUT_USEC;

	while (window_full(&c->win) && !c->fatal && !ctlrun_interrupted()) {
		if (now_monotonic_usec() > deadline) {
			ctlrun_fail(c, -ETIMEDOUT,
				    "no publisher confirms for 30s (is the broker blocked by a "
				    "resource alarm?)");
			return false;
		}
		replay_pump(c, CTLRUN_READ_TIMEOUT_USEC);
	}
	if (window_full(&c->win))
		return false;
	while ((wait = ratelimit_take(&c->rl, now_monotonic_usec())) > 0 && !c->fatal) {
		if (ctlrun_interrupted())
			return false; /* not taken: this one stays in the DLQ */
		replay_pump(c, MIN(wait, CTLRUN_READ_TIMEOUT_USEC));
	}
	return !c->fatal;
}

/* Publishes the replay copy; its publish sequence number or -errno (reason in err). */
static int64_t publish_copy(struct ctl *c, const struct dlqscan_delivery *d,
			    const struct dlq_record *r, const struct envelope *env, char *err,
			    size_t errlen)
{
	struct copy cp;
	int64_t seq;
	int k;

	k = copy_replay(c->config->pipeline.queue, &d->source, env, r->replay_count,
			now_realtime_usec(), &cp);
	if (k < 0)
		return error_set(err, errlen, k, "out of memory");
	seq = dlqscan_publish(c->scan, d, &cp, err, errlen);
	copy_done(&cp);
	return seq;
}

void replay_one(struct ctl *c, const struct dlqscan_delivery *d, const struct dlq_record *r,
		const struct envelope *env)
{
	struct pending *p;
	char err[256];
	int64_t seq;

	if (ctlopts_schema_blocked(c->o, c->config->replay.block_schema_versions, r)) {
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
		ctlrun_fail(c, (int)seq, err);
		return;
	}
	p = window_push(&c->win);
	if (!p) { /* not reached: replay_wait() made room */
		ctlrun_fail(c, -ENOBUFS, "replay window full");
		return;
	}
	p->seq = (uint64_t)seq;
	p->tag = d->tag;
	replay_pump(c, 0);
}
