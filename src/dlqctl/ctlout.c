/*
 * ctlout: dlqctl's terminal and JSON output for a run: the progress line,
 * list rows, show documents, purge audit lines and the closing summary.
 */
#include "dlqctl/ctlout.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "dlqctl/dlqtext.h"

#define PROGRESS_USEC (500 * USEC_PER_MSEC)

/* A record field as a terminal may show it. */
#define TERM(s)                                                              \
	dlqtext_term((s), (char[DLQTEXT_TERM_SIZE(DLQRECORD_STR_MAX)]){ 0 }, \
		     DLQTEXT_TERM_SIZE(DLQRECORD_STR_MAX))
#define OR_DASH(s) ((s)[0] ? TERM(s) : "-")

void ctlout_say(const char *fmt, ...)
{
	va_list ap;

	fputs("dlqctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void ctlout_clear_progress(struct ctl *c)
{
	if (c->tty && c->last_progress)
		fputs("\r\033[K", stderr);
}

static bool moving(const struct ctl *c)
{
	return c->o->cmd == CTL_REPLAY || c->o->cmd == CTL_PURGE;
}

void ctlout_progress(struct ctl *c, bool force)
{
	uint64_t now = now_monotonic_usec(), el = now - c->t0, limit = c->o->limit;
	double secs = (double)el / USEC_PER_SEC, rate, eta = -1;
	char e[32] = "-";

	if (!c->tty || (!force && now - c->last_progress < PROGRESS_USEC) || el < PROGRESS_USEC)
		return;
	c->last_progress = now;
	rate = secs > 0 ? (double)(moving(c) ? c->done : c->scanned) / secs : 0;
	if (moving(c) && limit && rate > 0)
		eta = (double)(limit - MIN(limit, c->done)) / rate;
	else if (c->scanned && c->depth > c->scanned)
		eta = (double)(c->depth - c->scanned) * secs / (double)c->scanned;
	if (eta >= 0)
		dlqstats_format_age((uint64_t)(eta * USEC_PER_SEC), e, sizeof(e));
	fprintf(stderr, "\r\033[Kscanned %" PRIu64 "/%" PRIu64 ", matched %" PRIu64, c->scanned,
		c->depth, c->matched);
	if (moving(c))
		fprintf(stderr, ", %s %" PRIu64, c->o->cmd == CTL_REPLAY ? "replayed" : "purged",
			c->done);
	fprintf(stderr, "  %.1f msg/s  ETA %s", rate, e);
}

/* JSON of a message, made safe for a terminal, on its own line. */
static int put_json(const struct dlqscan_delivery *d, const struct dlq_record *r, uint64_t now,
		    unsigned flags)
{
	struct buf b;
	int k;

	buf_init(&b, SIZE_MAX);
	k = dlqrecord_json(&d->msg, r, now, flags, &b);
	if (k >= 0)
		k = dlqtext_json(&b);
	if (k >= 0 && puts(b.data) < 0)
		k = -EPIPE;
	buf_done(&b);
	return k;
}

int ctlout_list_row(struct ctl *c, const struct dlqscan_delivery *d, const struct dlq_record *r,
		    uint64_t now)
{
	char age[32] = "-", attempt[24] = "-";

	if (c->o->json)
		return put_json(d, r, now, 0);
	if (c->matched == 1)
		printf("%-40s %-24s %-14s %7s %7s %8s %s\n", "MESSAGE_ID", "ERROR_CODE",
		       "ERROR_CLASS", "ATTEMPT", "REPLAYS", "AGE", "SCHEMA");
	if (r->dead_lettered_at_usec)
		dlqstats_format_age(now > r->dead_lettered_at_usec ? now - r->dead_lettered_at_usec
								   : 0,
				    age, sizeof(age));
	if (r->attempt >= 0)
		snprintf(attempt, sizeof(attempt), "%" PRId64, r->attempt);
	return printf("%-40s %-24s %-14s %7s %7" PRIu64 " %8s %s\n", OR_DASH(r->message_id),
		      OR_DASH(r->error_code), OR_DASH(r->error_class), attempt, r->replay_count,
		      age,
		      r->schema_version[0] ? TERM(r->schema_version)
					   : (r->envelope ? "-" : "(invalid)")) < 0
		       ? -EPIPE
		       : 0;
}

int ctlout_show(struct ctl *c, const struct dlqscan_delivery *d, const struct dlq_record *r,
		uint64_t now)
{
	if (!c->o->json && c->matched > 1)
		putchar('\n');
	return put_json(d, r, now, DLQRECORD_JSON_FULL | (c->o->json ? 0 : DLQRECORD_JSON_PRETTY));
}

void ctlout_purged(struct ctl *c, const struct pending *p)
{
	char extra[300];
	const char *id = TERM(p->message_id), *code = TERM(p->error_code);

	snprintf(extra, sizeof(extra), "queue=%s", c->dlq);
	log_full(LOG_NOTICE, 0,
		 &(struct log_ctx){ .message_id = id[0] ? id : NULL,
				    .attempt = p->attempt,
				    .error_code = code,
				    .error_class = TERM(p->error_class),
				    .event = "purge",
				    .extra = extra },
		 "purged %s (%s)", id[0] ? id : "(no message id)",
		 code[0] ? code : "no error code");
}

static void summary_json(struct ctl *c)
{
	struct buf b;

	buf_init(&b, 4096);
	buf_append(&b, "{\"queue\":", 9);
	buf_json_string(&b, c->dlq);
	buf_printf(&b,
		   ",\"scanned\":%" PRIu64 ",\"matched\":%" PRIu64 ",\"%s\":%" PRIu64
		   ",\"refused_schema\":%" PRIu64 ",\"dry_run\":%s,\"interrupted\":%s}",
		   c->scanned, c->matched, c->o->cmd == CTL_REPLAY ? "replayed" : "purged", c->done,
		   c->refused, c->o->dry_run ? "true" : "false",
		   ctlrun_interrupted() ? "true" : "false");
	if (b.data)
		puts(b.data);
	buf_done(&b);
}

static void summary_moved(struct ctl *c)
{
	const char *verb = c->o->cmd == CTL_REPLAY ? (c->o->dry_run ? "would replay" : "replayed")
						   : (c->o->dry_run ? "would purge" : "purged");

	if (c->o->json)
		summary_json(c);
	else
		fprintf(stderr,
			"%s %" PRIu64 " of %" PRIu64 " matching message(s) (%" PRIu64
			" scanned)%s\n",
			verb, c->done, c->matched, c->scanned,
			ctlrun_interrupted() ? "; interrupted, the rest stay in the DLQ" : "");
	if (c->stalled)
		ctlout_say("stopped before the end of %s: the messages not read are still there",
			   c->dlq);
	else if (c->refused)
		ctlout_say("refused %" PRIu64
			   " message(s) with a schema_version listed in [replay] "
			   "block_schema_versions; they stay in %s (use --force to replay them)",
			   c->refused, c->dlq);
}

void ctlout_summary(struct ctl *c)
{
	struct buf out;

	if (c->fatal) {
		ctlout_say("%s", c->err);
		if (moving(c))
			ctlout_say("%s %" PRIu64
				   " message(s) before the error; the rest are still in %s",
				   c->o->cmd == CTL_REPLAY ? "replayed" : "purged", c->done,
				   c->dlq);
		return;
	}
	switch (c->o->cmd) {
	case CTL_STATS:
		buf_init(&out, 16 * 1024 * 1024);
		c->stats.depth = c->depth;
		c->stats.scanned = c->scanned;
		if (dlqstats_render(&c->stats, c->dlq, now_realtime_usec(), c->o->json, &out) >= 0)
			fwrite(out.data, 1, out.len, stdout);
		buf_done(&out);
		break;
	case CTL_LIST:
		if (!c->o->json)
			fprintf(stderr, "%" PRIu64 " of %" PRIu64 " messages listed\n", c->matched,
				c->depth);
		break;
	case CTL_SHOW:
		if (c->matched == 0)
			ctlout_say("no message with id '%s' in %s", TERM(c->o->show_id), c->dlq);
		break;
	case CTL_REPLAY:
	case CTL_PURGE:
		summary_moved(c);
		break;
	}
	fflush(stdout);
}
