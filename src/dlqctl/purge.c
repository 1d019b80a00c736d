/*
 * purge: deleting a matching message. With --archive its JSON line goes to
 * the archive batch first; a batch (at most the window, ARCHIVE_BATCH_MAX
 * bytes or ARCHIVE_FLUSH_USEC old) is written and fsynced, and only then
 * are its messages acked and logged, one audit line each.
 */
#include "dlqctl/purge.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "dlqctl/ctlout.h"

#define ARCHIVE_BATCH_MAX  (8 * 1024 * 1024) /* text written per fsync */
#define ARCHIVE_FLUSH_USEC (500 * USEC_PER_MSEC)

/* Writes and fsyncs the archive, then acks and logs the batch. */
void purge_flush(struct ctl *c)
{
	char err[256];
	int r;

	if (c->win.count == 0)
		return;
	c->archive_flushed_at = now_monotonic_usec();
	if (c->archive.fd >= 0 && (r = archive_flush(&c->archive)) < 0) {
		snprintf(err, sizeof(err), "writing the archive %s: %s", c->o->archive_path,
			 strerror(-r));
		ctlrun_fail(c, r, err);
		return;
	}
	ctlout_clear_progress(c); /* the log lines go to the same terminal */
	for (; c->win.count > 0; window_pop(&c->win)) {
		struct pending *p = window_at(&c->win, 0);
		if ((r = dlqscan_ack(c->scan, p->tag, err, sizeof(err))) < 0) {
			ctlrun_fail(c, r, err);
			return;
		}
		ctlout_purged(c, p);
		c->done++;
	}
}

void purge_one(struct ctl *c, const struct dlqscan_delivery *d, const struct dlq_record *r)
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
			ctlrun_fail(c, k, "archive line too large or out of memory");
			return;
		}
	}
	p = window_push(&c->win);
	if (!p) { /* not reached: the push that fills the window flushes it */
		ctlrun_fail(c, -ENOBUFS, "purge window full");
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

void purge_tick(struct ctl *c)
{
	if (c->win.count && now_monotonic_usec() - c->archive_flushed_at > ARCHIVE_FLUSH_USEC)
		purge_flush(c);
}
