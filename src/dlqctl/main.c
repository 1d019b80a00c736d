/*
 * dlqctl: the operator's tool for the DLQ (docs/dlqctl.md). One pass over
 * <queue>.dlq in order per command: stats, list and show only read (the
 * messages go back in place when the connection closes), replay and purge
 * ack exactly the messages they moved or deleted. Memory is bounded by the
 * replay window and the purge batch, never by the DLQ's depth.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "dlqctl/dlqfilter.h"
#include "dlqctl/dlqrecord.h"
#include "dlqctl/dlqscan.h"
#include "dlqctl/dlqstats.h"
#include "common/log.h"
#include "dlqctl/ratelimit.h"
#include "common/util.h"
#include "common/version.h"

enum {
	EXIT_OK = 0,
	EXIT_ERROR = 1,	      /* failed mid-way (broker error, publish refused) */
	EXIT_USAGE = 2,	      /* bad option, bad filter, bad config */
	EXIT_UNREACHABLE = 3, /* cannot connect or log in */
	EXIT_NO_QUEUE = 4,    /* the DLQ (or, for replay, the main queue) is missing */
	EXIT_REFUSED = 5,     /* no filter without --all, purge without --yes, blocked schema */
	EXIT_NOT_FOUND = 6,   /* show: no such message */
	EXIT_INTERRUPTED = 130,
};

#define WINDOW		   256 /* replays awaiting confirms; purges awaiting fsync */
#define READ_TIMEOUT_USEC  (200 * USEC_PER_MSEC)
#define IDLE_TIMEOUT_USEC  (15 * USEC_PER_SEC)
#define QUORUM_IDLE_USEC   (2 * USEC_PER_SEC)
#define DRAIN_TIMEOUT_USEC (30 * USEC_PER_SEC)
#define PROGRESS_USEC	   (500 * USEC_PER_MSEC)
#define ARCHIVE_FLUSH_USEC (500 * USEC_PER_MSEC)
#define ARCHIVE_BATCH_MAX  (8 * 1024 * 1024) /* text written per fsync */
#define DEFAULT_MAX_RUN	   (25 * 60 * USEC_PER_SEC)
#define DEFAULT_RATE	   10
#define RATE_MAX	   100000

enum command { CMD_STATS, CMD_LIST, CMD_SHOW, CMD_REPLAY, CMD_PURGE };

struct pending {
	uint64_t seq; /* replay: publish sequence number; purge: unused */
	uint64_t tag; /* the DLQ delivery to ack */
	char message_id[DLQRECORD_STR_MAX];
	char error_code[DLQRECORD_STR_MAX];
	char error_class[DLQRECORD_STR_MAX];
	int64_t attempt;
	bool settled; /* replay: confirmed (or refused) */
};

struct ctl {
	enum command cmd;
	const char *config_path;
	struct config *config;
	struct dlqfilter filter;
	bool json, all, dry_run, force, yes;
	uint64_t limit; /* 0 = none */
	uint64_t rate;
	uint64_t max_run_usec;
	const char *archive_path;
	const char *show_id;
	char dlq[256];
	struct dlqscan *scan;
	struct ratelimit rl;
	struct dlqstats stats;

	/* progress */
	bool tty;
	uint64_t t0, last_progress;
	uint64_t depth, scanned, matched, done, refused;

	/* replay / purge window, a FIFO ring */
	struct pending ring[WINDOW];
	size_t head, count;
	bool stop_acking; /* after a basic.return: which publish it was is unknown */
	bool stalled;	  /* the broker stopped delivering before the end */
	int fatal;	  /* first error, -errno */
	char err[512];

	int archive_fd;
	struct buf archive;
	uint64_t archive_flushed_at;
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	/* A second Ctrl-C leaves at once: unacked messages are safe in the DLQ. */
	if (interrupted)
		_exit(EXIT_INTERRUPTED);
	interrupted = sig;
}

static void help(void)
{
	printf("Usage: dlqctl [--config PATH] [--json] COMMAND [FILTERS] [OPTIONS]\n\n"
	       "Commands (on <queue>.dlq of the config's [pipeline] queue):\n"
	       "  stats                 depth, counts by error code and class, ages\n"
	       "  list [--limit N]      one line per matching message, in queue order\n"
	       "  show MESSAGE_ID       the whole message: headers, envelope, error history\n"
	       "  replay (FILTERS|--all) [--rate N] [--limit N] [--dry-run] [--force]\n"
	       "                        move matching messages back to the main queue\n"
	       "  purge (FILTERS|--all) --yes [--archive FILE] [--limit N] [--dry-run]\n"
	       "                        delete matching messages (archived first as JSON lines)\n\n"
	       "Filters (repeat an option or separate values by commas to accept several):\n"
	       "  --error-code CODE     --error-class CLASS     --message-id ID\n"
	       "  --schema-version V (none = no schema_version)\n"
	       "  --older-than DUR      --newer-than DUR   (age since dead_lettered_at)\n\n"
	       "Options:\n"
	       "  -c, --config PATH     config file (default %s)\n"
	       "      --json            machine output (stats: one object; list/show: JSON lines)\n"
	       "      --rate N          replay at most N messages per second (default %d)\n"
	       "      --limit N         act on at most N matching messages\n"
	       "      --max-duration D  stop a run after D (default 25m, below RabbitMQ's\n"
	       "                        30 min consumer_timeout)\n"
	       "  -V, --version, -h, --help\n\n"
	       "Exit status: 0 ok, 1 error, 2 usage or bad filter/config, 3 broker unreachable,\n"
	       "4 queue missing, 5 refused, 6 message not found, 130 interrupted.\n",
	       CONFIG_DEFAULT_PATH, DEFAULT_RATE);
}

_printf_(1, 2) static void say(const char *fmt, ...)
{
	va_list ap;

	fputs("dlqctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void clear_progress(struct ctl *c)
{
	if (c->tty && c->last_progress)
		fputs("\r\033[K", stderr);
}

static void progress(struct ctl *c, bool force)
{
	uint64_t now = now_monotonic_usec(), el = now - c->t0;
	double secs = (double)el / USEC_PER_SEC, rate, eta = -1;
	bool moving = c->cmd == CMD_REPLAY || c->cmd == CMD_PURGE;
	char e[32] = "-";

	if (!c->tty || (!force && now - c->last_progress < PROGRESS_USEC) || el < PROGRESS_USEC)
		return;
	c->last_progress = now;
	rate = secs > 0 ? (double)(moving ? c->done : c->scanned) / secs : 0;
	if (moving && c->limit && rate > 0)
		eta = (double)(c->limit - MIN(c->limit, c->done)) / rate;
	else if (c->scanned && c->depth > c->scanned)
		eta = (double)(c->depth - c->scanned) * secs / (double)c->scanned;
	if (eta >= 0)
		dlqstats_format_age((uint64_t)(eta * USEC_PER_SEC), e, sizeof(e));
	fprintf(stderr, "\r\033[Kscanned %" PRIu64 "/%" PRIu64 ", matched %" PRIu64, c->scanned,
		c->depth, c->matched);
	if (moving)
		fprintf(stderr, ", %s %" PRIu64, c->cmd == CMD_REPLAY ? "replayed" : "purged",
			c->done);
	fprintf(stderr, "  %.1f msg/s  ETA %s", rate, e);
}

/* ---- replay window ---------------------------------------------------- */

static struct pending *ring_at(struct ctl *c, size_t i)
{
	return &c->ring[(c->head + i) % WINDOW];
}

static void set_fatal(struct ctl *c, int r, const char *msg)
{
	if (c->fatal)
		return;
	c->fatal = r < 0 ? r : -EIO;
	strscpy(c->err, msg, sizeof(c->err));
}

static void on_confirm(void *userdata, enum dlqscan_confirm kind, uint64_t seq, bool multiple)
{
	struct ctl *c = userdata;
	char err[256];
	int r;

	if (kind == DLQSCAN_RETURN) {
		c->stop_acking = true;
		set_fatal(c, -ENOENT,
			  "the broker returned a replayed message as unroutable (main queue "
			  "deleted?); stopped, unconfirmed messages stay in the DLQ");
		return;
	}
	/* Confirms normally come in order, but a single ack may overtake: mark
	 * each entry it covers, settle its DLQ copy, then drop the settled head. */
	for (size_t i = 0; i < c->count; i++) {
		struct pending *p = ring_at(c, i);
		if (p->settled || (multiple ? p->seq > seq : p->seq != seq))
			continue;
		p->settled = true;
		if (kind == DLQSCAN_NACK) {
			set_fatal(c, -EIO,
				  "the broker refused (nacked) a replayed message; stopped");
			continue;
		}
		if (c->stop_acking)
			continue;
		/* Confirmed on the main queue: only now may the DLQ copy go. */
		r = dlqscan_ack(c->scan, p->tag, err, sizeof(err));
		if (r < 0) {
			set_fatal(c, r, err);
			c->stop_acking = true;
			continue;
		}
		c->done++;
	}
	while (c->count > 0 && ring_at(c, 0)->settled) {
		c->head = (c->head + 1) % WINDOW;
		c->count--;
	}
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
	while (c->count > 0 && now_monotonic_usec() < deadline)
		if (pump_confirms(c, READ_TIMEOUT_USEC) < 0)
			break;
	if (c->count > 0 && !c->fatal)
		set_fatal(c, -ETIMEDOUT, "timed out waiting for publisher confirms");
}

static bool schema_blocked(const struct ctl *c, const struct dlq_record *r)
{
	if (!r->envelope || c->force)
		return false;
	for (char **v = c->config->replay.block_schema_versions; v && *v; v++)
		if (strcmp(*v, r->schema_version) == 0)
			return true;
	return false;
}

static void replay_one(struct ctl *c, const struct dlqscan_delivery *d, const struct dlq_record *r,
		       const struct envelope *env)
{
	struct dlq_replay rp;
	char err[256];
	uint64_t wait, deadline;
	int64_t seq;
	int k;

	if (schema_blocked(c, r)) {
		c->refused++;
		return;
	}
	if (c->dry_run) {
		c->done++;
		return;
	}
	deadline = now_monotonic_usec() + DRAIN_TIMEOUT_USEC;
	while (c->count >= WINDOW && !c->fatal && !interrupted) {
		if (now_monotonic_usec() > deadline) {
			set_fatal(c, -ETIMEDOUT,
				  "no publisher confirms for 30s (is the broker blocked by a "
				  "resource alarm?)");
			return;
		}
		pump_confirms(c, READ_TIMEOUT_USEC);
	}
	if (c->count >= WINDOW)
		return;
	while ((wait = ratelimit_take(&c->rl, now_monotonic_usec())) > 0 && !c->fatal) {
		if (interrupted)
			return; /* not taken: this one stays in the DLQ */
		pump_confirms(c, MIN(wait, READ_TIMEOUT_USEC));
	}
	if (c->fatal)
		return;
	k = dlqrecord_replay(env, r, now_realtime_usec(), &rp);
	if (k < 0) {
		set_fatal(c, k, "out of memory");
		return;
	}
	seq = dlqscan_publish(c->scan, c->config->pipeline.queue, d, rp.body, rp.len, rp.set,
			      rp.n_set, dlqrecord_replay_drops, err, sizeof(err));
	dlqrecord_replay_done(&rp);
	if (seq < 0) {
		set_fatal(c, (int)seq, err);
		return;
	}
	*ring_at(c, c->count) = (struct pending){ .seq = (uint64_t)seq, .tag = d->tag };
	c->count++;
	pump_confirms(c, 0);
}

/* ---- purge ------------------------------------------------------------ */

static void log_purged(struct ctl *c, const struct pending *p)
{
	char extra[300];

	snprintf(extra, sizeof(extra), "queue=%s", c->dlq);
	log_full(LOG_NOTICE, 0,
		 &(struct log_ctx){ .message_id = p->message_id[0] ? p->message_id : NULL,
				    .attempt = p->attempt,
				    .error_code = p->error_code,
				    .error_class = p->error_class,
				    .event = "purge",
				    .extra = extra },
		 "purged %s (%s)", p->message_id[0] ? p->message_id : "(no message id)",
		 p->error_code[0] ? p->error_code : "no error code");
}

/*
 * Appends the batch and fsyncs it. On failure the file is cut back to where
 * the batch began, so no half line is left for the next run to append to;
 * nothing of the batch is acked then.
 */
static int archive_write(struct ctl *c)
{
	off_t start = lseek(c->archive_fd, 0, SEEK_END);
	int r = 0;

	if (start < 0)
		return -errno;
	for (size_t off = 0; off < c->archive.len && r == 0;) {
		ssize_t n = write(c->archive_fd, c->archive.data + off, c->archive.len - off);
		if (n < 0) {
			if (errno != EINTR)
				r = -errno;
		} else if (n == 0) {
			r = -EIO;
		} else {
			off += (size_t)n;
		}
	}
	if (r == 0 && fsync(c->archive_fd) < 0)
		r = -errno;
	if (r < 0) {
		(void)!ftruncate(c->archive_fd, start);
		return r;
	}
	buf_reset(&c->archive);
	return 0;
}

/* Makes the archive's directory entry durable too: fsyncing a new file
 * alone does not survive a power loss. */
static int archive_open(struct ctl *c)
{
	_cleanup_free_ char *dir = strdup(c->archive_path);
	char *slash = dir ? strrchr(dir, '/') : NULL;
	_cleanup_close_ int dfd = -1;

	if (!dir)
		return -ENOMEM;
	c->archive_fd = open(c->archive_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (c->archive_fd < 0)
		return -errno;
	if (slash)
		*(slash == dir ? slash + 1 : slash) = '\0';
	dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) < 0)
		return -errno;
	return 0;
}

/* Writes and fsyncs the archive, then acks and logs the batch. */
static void purge_flush(struct ctl *c)
{
	char err[256];
	int r;

	if (c->count == 0)
		return;
	c->archive_flushed_at = now_monotonic_usec();
	if (c->archive_fd >= 0 && (r = archive_write(c)) < 0) {
		snprintf(err, sizeof(err), "writing the archive %s: %s", c->archive_path,
			 strerror(-r));
		set_fatal(c, r, err);
		return;
	}
	clear_progress(c); /* the log lines go to the same terminal */
	for (; c->count > 0; c->count--, c->head = (c->head + 1) % WINDOW) {
		struct pending *p = ring_at(c, 0);
		if ((r = dlqscan_ack(c->scan, p->tag, err, sizeof(err))) < 0) {
			set_fatal(c, r, err);
			return;
		}
		log_purged(c, p);
		c->done++;
	}
}

static void purge_one(struct ctl *c, const struct dlqscan_delivery *d, const struct dlq_record *r)
{
	struct pending *p;

	if (c->dry_run) {
		c->done++;
		return;
	}
	if (c->archive_fd >= 0) {
		size_t len;
		_cleanup_free_ char *line =
			dlqrecord_json(&d->msg, r, now_realtime_usec(),
				       DLQRECORD_JSON_FULL | DLQRECORD_JSON_RAW_BODY, &len);
		/* The batch goes out before a line that would push it past its
		 * size, so only one line larger than the buffer fails. */
		if (line && c->count > 0 && c->archive.len + len + 1 > ARCHIVE_BATCH_MAX) {
			purge_flush(c);
			if (c->fatal)
				return;
		}
		if (!line || buf_append(&c->archive, line, len) < 0 ||
		    buf_append(&c->archive, "\n", 1) < 0) {
			set_fatal(c, -ENOMEM, "archive line too large or out of memory");
			return;
		}
	}
	p = ring_at(c, c->count++);
	*p = (struct pending){ .tag = d->tag, .attempt = r->attempt };
	strscpy(p->message_id, r->message_id, sizeof(p->message_id));
	strscpy(p->error_code, r->error_code, sizeof(p->error_code));
	strscpy(p->error_class, r->error_class, sizeof(p->error_class));
	if (c->count == WINDOW || c->archive.len > ARCHIVE_BATCH_MAX)
		purge_flush(c);
}

/* ---- list / show -------------------------------------------------------- */

static int print_list_row(struct ctl *c, const struct dlqscan_delivery *d,
			  const struct dlq_record *r, uint64_t now)
{
	char age[32] = "-", attempt[24] = "-";

	if (c->json) {
		_cleanup_free_ char *s = dlqrecord_json(&d->msg, r, now, 0, NULL);
		if (!s)
			return -ENOMEM;
		return puts(s) < 0 ? -EPIPE : 0;
	}
	if (c->matched == 1)
		printf("%-40s %-24s %-14s %7s %7s %8s %s\n", "MESSAGE_ID", "ERROR_CODE",
		       "ERROR_CLASS", "ATTEMPT", "REPLAYS", "AGE", "SCHEMA");
	if (r->dead_lettered_at_usec)
		dlqstats_format_age(now > r->dead_lettered_at_usec ? now - r->dead_lettered_at_usec
								   : 0,
				    age, sizeof(age));
	if (r->attempt >= 0)
		snprintf(attempt, sizeof(attempt), "%" PRId64, r->attempt);
	return printf("%-40s %-24s %-14s %7s %7" PRIu64 " %8s %s\n",
		      r->message_id[0] ? r->message_id : "-",
		      r->error_code[0] ? r->error_code : "-",
		      r->error_class[0] ? r->error_class : "-", attempt, r->replay_count, age,
		      r->schema_version[0] ? r->schema_version
					   : (r->envelope ? "-" : "(invalid)")) < 0
		       ? -EPIPE
		       : 0;
}

static int print_show(struct ctl *c, const struct dlqscan_delivery *d, const struct dlq_record *r,
		      uint64_t now)
{
	_cleanup_free_ char *s = dlqrecord_json(
		&d->msg, r, now, DLQRECORD_JSON_FULL | (c->json ? 0 : DLQRECORD_JSON_PRETTY), NULL);

	if (!s)
		return -ENOMEM;
	if (!c->json && c->matched > 1)
		putchar('\n');
	return puts(s) < 0 ? -EPIPE : 0;
}

/* ---- the scan ------------------------------------------------------------ */

static bool limit_reached(const struct ctl *c)
{
	if (!c->limit)
		return false;
	if (c->cmd == CMD_REPLAY)
		return c->done + c->count >= c->limit;
	return c->matched >= c->limit;
}

static int on_delivery(struct ctl *c, const struct dlqscan_delivery *d)
{
	_cleanup_(envelope_freep) struct envelope *env = NULL;
	uint64_t now = now_realtime_usec();
	struct dlq_record r;
	int k;

	c->scanned++;
	k = dlqrecord_parse(&d->msg, now, &r, c->cmd == CMD_REPLAY ? &env : NULL);
	if (k < 0)
		return k;
	if (!dlqfilter_match(&c->filter, &r, now))
		return 0;
	c->matched++;
	switch (c->cmd) {
	case CMD_STATS:
		dlqstats_add(&c->stats, &r);
		return 0;
	case CMD_LIST:
		return print_list_row(c, d, &r, now);
	case CMD_SHOW:
		return print_show(c, d, &r, now);
	case CMD_REPLAY:
		replay_one(c, d, &r, env);
		return 0;
	case CMD_PURGE:
		purge_one(c, d, &r);
		return 0;
	}
	return 0;
}

/* Reads depth messages of the DLQ in order, or until a limit or a signal. */
static int scan(struct ctl *c)
{
	uint64_t last_delivery = now_monotonic_usec(), deadline = c->t0 + c->max_run_usec;
	bool quorum = c->config->pipeline.queue_type == QUEUE_QUORUM;
	/* A quorum queue stops delivering at its unacked cap at once: no need
	 * to wait as long as for a slow broker. */
	uint64_t idle = quorum ? QUORUM_IDLE_USEC : IDLE_TIMEOUT_USEC;
	struct dlqscan_delivery *d;
	char err[256];
	int r;

	if ((r = dlqscan_start(c->scan, c->dlq, err, sizeof(err))) < 0) {
		set_fatal(c, r, err);
		return r;
	}
	while (c->scanned < c->depth && !interrupted && !c->fatal && !limit_reached(c)) {
		uint64_t now = now_monotonic_usec();
		if (now >= deadline) {
			clear_progress(c);
			say("stopped after --max-duration (%" PRIu64
			    "s) to stay below the broker's consumer_timeout; run again to go on",
			    c->max_run_usec / USEC_PER_SEC);
			break;
		}
		r = dlqscan_next(c->scan, READ_TIMEOUT_USEC, &d, err, sizeof(err));
		if (r < 0) {
			/* e.g. "406 PRECONDITION_FAILED - delivery acknowledgement on
			 * channel 1 timed out" once consumer_timeout passed */
			set_fatal(c, r, err);
			break;
		}
		if (r == 0) {
			if (now - last_delivery > idle) {
				clear_progress(c);
				say("warning: read %" PRIu64 " of %" PRIu64 " messages; %s",
				    c->scanned, c->depth,
				    quorum ? "RabbitMQ hands one consumer of a quorum queue at "
					     "most "
					     "2000 unacked messages (see docs/dlqctl.md)"
					   : "the rest are held by another consumer");
				c->stalled = true;
				break;
			}
		} else {
			last_delivery = now;
			r = on_delivery(c, d);
			if (r == -EPIPE)
				break; /* stdout closed (| head): stop quietly */
			if (r < 0) {
				set_fatal(c, r, "out of memory");
				break;
			}
		}
		if (c->cmd == CMD_REPLAY && !c->dry_run)
			pump_confirms(c, 0);
		if (c->cmd == CMD_PURGE && c->count &&
		    now_monotonic_usec() - c->archive_flushed_at > ARCHIVE_FLUSH_USEC)
			purge_flush(c);
		progress(c, false);
	}
	if (c->cmd == CMD_REPLAY && !c->dry_run)
		drain_confirms(c);
	if (c->cmd == CMD_PURGE && !c->fatal)
		purge_flush(c);
	progress(c, true);
	clear_progress(c);
	return c->fatal;
}

/* ---- command line ------------------------------------------------------- */

enum {
	OPT_JSON = 0x100,
	OPT_ALL,
	OPT_RATE,
	OPT_LIMIT,
	OPT_DRY_RUN,
	OPT_FORCE,
	OPT_YES,
	OPT_ARCHIVE,
	OPT_MAX_DURATION,
	OPT_FILTER = 0x200, /* + enum dlqfilter_key */
};

static int parse_args(struct ctl *c, int argc, char **argv)
{
	bool rate_given = false;
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "all", no_argument, NULL, OPT_ALL },
		{ "rate", required_argument, NULL, OPT_RATE },
		{ "limit", required_argument, NULL, OPT_LIMIT },
		{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "yes", no_argument, NULL, OPT_YES },
		{ "archive", required_argument, NULL, OPT_ARCHIVE },
		{ "max-duration", required_argument, NULL, OPT_MAX_DURATION },
		{ "error-code", required_argument, NULL, OPT_FILTER + DLQFILTER_ERROR_CODE },
		{ "error-class", required_argument, NULL, OPT_FILTER + DLQFILTER_ERROR_CLASS },
		{ "message-id", required_argument, NULL, OPT_FILTER + DLQFILTER_MESSAGE_ID },
		{ "schema-version", required_argument, NULL,
		  OPT_FILTER + DLQFILTER_SCHEMA_VERSION },
		{ "older-than", required_argument, NULL, OPT_FILTER + DLQFILTER_OLDER_THAN },
		{ "newer-than", required_argument, NULL, OPT_FILTER + DLQFILTER_NEWER_THAN },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static const char *const names[] = { "stats", "list", "show", "replay", "purge" };
	const char *cmd = NULL;
	char err[256];
	uint64_t v;
	int o;

	/* Options may come before or after the command (permuting getopt). */
	while ((o = getopt_long(argc, argv, "c:Vh", opts, NULL)) >= 0) {
		switch (o) {
		case 'c':
			c->config_path = optarg;
			break;
		case OPT_JSON:
			c->json = true;
			break;
		case OPT_ALL:
			c->all = true;
			break;
		case OPT_RATE:
			if (parse_uint(optarg, 1, RATE_MAX, &c->rate) < 0) {
				say("--rate: expected messages per second, 1 to %d, got '%s'",
				    RATE_MAX, optarg);
				return -EINVAL;
			}
			rate_given = true;
			break;
		case OPT_LIMIT:
			if (parse_uint(optarg, 1, UINT64_MAX / 2, &c->limit) < 0) {
				say("--limit: expected a positive number, got '%s'", optarg);
				return -EINVAL;
			}
			break;
		case OPT_DRY_RUN:
			c->dry_run = true;
			break;
		case OPT_FORCE:
			c->force = true;
			break;
		case OPT_YES:
			c->yes = true;
			break;
		case OPT_ARCHIVE:
			c->archive_path = optarg;
			break;
		case OPT_MAX_DURATION:
			if (parse_duration_usec(optarg, &v) < 0 || v == 0) {
				say("--max-duration: invalid duration '%s'", optarg);
				return -EINVAL;
			}
			c->max_run_usec = v;
			break;
		case 'V':
			printf("dlqctl %s\n", DLQD_VERSION);
			return 1;
		case 'h':
			help();
			return 1;
		default:
			if (o >= OPT_FILTER && o < OPT_FILTER + 16) {
				if (dlqfilter_add(&c->filter, o - OPT_FILTER, optarg, err,
						  sizeof(err)) < 0) {
					say("%s", err);
					return -EINVAL;
				}
				break;
			}
			fprintf(stderr, "Try 'dlqctl --help'.\n");
			return -EINVAL;
		}
	}
	if (optind >= argc) {
		say("missing command (stats, list, show, replay or purge); try 'dlqctl --help'");
		return -EINVAL;
	}
	cmd = argv[optind++];
	for (o = 0; o < (int)ARRAY_SIZE(names); o++)
		if (strcmp(cmd, names[o]) == 0)
			break;
	if (o == (int)ARRAY_SIZE(names)) {
		say("unknown command '%s' (expected stats, list, show, replay or purge)", cmd);
		return -EINVAL;
	}
	c->cmd = o;
	if (c->cmd == CMD_SHOW) {
		if (optind >= argc) {
			say("show needs a MESSAGE_ID");
			return -EINVAL;
		}
		c->show_id = argv[optind++];
		if (dlqfilter_add(&c->filter, DLQFILTER_MESSAGE_ID, c->show_id, err, sizeof(err)) <
		    0) {
			say("%s", err);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		say("unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	if ((rate_given || c->force) && c->cmd != CMD_REPLAY) {
		say("--rate and --force only apply to replay");
		return -EINVAL;
	}
	if ((c->yes || c->archive_path) && c->cmd != CMD_PURGE) {
		say("--yes and --archive only apply to purge");
		return -EINVAL;
	}
	if (c->dry_run && c->cmd != CMD_REPLAY && c->cmd != CMD_PURGE) {
		say("--dry-run only applies to replay and purge");
		return -EINVAL;
	}
	if (c->all && !dlqfilter_empty(&c->filter)) {
		say("--all cannot be combined with filters");
		return -EINVAL;
	}
	return 0;
}

/* Refusals that need no broker. */
static int check_refusals(struct ctl *c)
{
	if ((c->cmd == CMD_REPLAY || c->cmd == CMD_PURGE) && !c->all &&
	    dlqfilter_empty(&c->filter)) {
		say("refusing to %s every message without --all; give a filter (--error-code, "
		    "--error-class, --older-than, --newer-than, --message-id, --schema-version)",
		    c->cmd == CMD_REPLAY ? "replay" : "purge");
		return EXIT_REFUSED;
	}
	if (c->cmd == CMD_PURGE && !c->yes && !c->dry_run) {
		say("purge deletes messages for good: add --yes (and --archive FILE to keep a "
		    "copy), or try --dry-run");
		return EXIT_REFUSED;
	}
	return EXIT_OK;
}

static int connect_and_size(struct ctl *c)
{
	bool publish = c->cmd == CMD_REPLAY && !c->dry_run;
	uint32_t consumers = 0;
	uint64_t main_depth;
	char err[512];
	int r;

	r = dlqscan_open(c->config, publish, &c->scan, err, sizeof(err));
	if (r < 0) {
		say("cannot reach the broker: %s", err);
		return EXIT_UNREACHABLE;
	}
	r = dlqscan_depth(c->scan, c->dlq, &c->depth, &consumers, err, sizeof(err));
	if (r == -ENOENT) {
		say("%s (is [pipeline] queue right, and has dlqd declared its topology?)", err);
		return EXIT_NO_QUEUE;
	}
	if (r < 0) {
		say("%s", err);
		return EXIT_ERROR;
	}
	if (consumers > 0)
		say("warning: %s has %u other consumer(s); messages they hold are not seen", c->dlq,
		    consumers);
	if (c->cmd == CMD_REPLAY) {
		r = dlqscan_depth(c->scan, c->config->pipeline.queue, &main_depth, NULL, err,
				  sizeof(err));
		if (r == -ENOENT) {
			say("main %s; nothing replayed", err);
			return EXIT_NO_QUEUE;
		}
		if (r < 0) {
			say("%s", err);
			return EXIT_ERROR;
		}
	}
	return EXIT_OK;
}

static int finish(struct ctl *c)
{
	uint64_t now = now_realtime_usec();
	struct buf out;
	int r;

	if (c->fatal) {
		say("%s", c->err);
		if (c->cmd == CMD_REPLAY || c->cmd == CMD_PURGE)
			say("%s %" PRIu64 " message(s) before the error; the rest are still in %s",
			    c->cmd == CMD_REPLAY ? "replayed" : "purged", c->done, c->dlq);
		return EXIT_ERROR;
	}
	switch (c->cmd) {
	case CMD_STATS:
		buf_init(&out, 16 * 1024 * 1024);
		c->stats.depth = c->depth;
		c->stats.scanned = c->scanned;
		r = dlqstats_render(&c->stats, c->dlq, now, c->json, &out);
		if (r >= 0)
			fwrite(out.data, 1, out.len, stdout);
		buf_done(&out);
		break;
	case CMD_LIST:
		if (!c->json)
			fprintf(stderr, "%" PRIu64 " of %" PRIu64 " messages listed\n", c->matched,
				c->depth);
		break;
	case CMD_SHOW:
		if (c->matched == 0) {
			say("no message with id '%s' in %s", c->show_id, c->dlq);
			return interrupted ? EXIT_INTERRUPTED : EXIT_NOT_FOUND;
		}
		break;
	case CMD_REPLAY:
	case CMD_PURGE: {
		const char *verb = c->cmd == CMD_REPLAY ? (c->dry_run ? "would replay" : "replayed")
							: (c->dry_run ? "would purge" : "purged");
		if (c->json)
			printf("{\"queue\":\"%s\",\"scanned\":%" PRIu64 ",\"matched\":%" PRIu64
			       ",\"%s\":%" PRIu64 ",\"refused_schema\":%" PRIu64
			       ",\"dry_run\":%s,\"interrupted\":%s}\n",
			       c->dlq, c->scanned, c->matched,
			       c->cmd == CMD_REPLAY ? "replayed" : "purged", c->done, c->refused,
			       c->dry_run ? "true" : "false", interrupted ? "true" : "false");
		else
			fprintf(stderr,
				"%s %" PRIu64 " of %" PRIu64 " matching message(s) (%" PRIu64
				" scanned)%s\n",
				verb, c->done, c->matched, c->scanned,
				interrupted ? "; interrupted, the rest stay in the DLQ" : "");
		if (c->stalled) {
			/* A script must not read "all replayed" into this. */
			say("stopped before the end of %s: the messages not read are still there",
			    c->dlq);
			return interrupted ? EXIT_INTERRUPTED : EXIT_ERROR;
		}
		if (c->refused) {
			say("refused %" PRIu64
			    " message(s) with a schema_version listed in [replay] "
			    "block_schema_versions; they stay in %s (use --force to replay them)",
			    c->refused, c->dlq);
			return interrupted ? EXIT_INTERRUPTED : EXIT_REFUSED;
		}
		break;
	}
	}
	fflush(stdout);
	return interrupted ? EXIT_INTERRUPTED : EXIT_OK;
}

static int run(struct ctl *c, int argc, char **argv)
{
	struct diag diags = { 0 };
	struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESTART };
	int r;

	r = parse_args(c, argc, argv);
	if (r != 0)
		return r > 0 ? EXIT_OK : EXIT_USAGE;
	if ((r = check_refusals(c)) != EXIT_OK)
		return r;
	r = config_load_for_broker(c->config_path, &c->config, &diags);
	for (size_t i = 0; i < diags.n; i++)
		fprintf(stderr, "%s\n", diags.lines[i]);
	diag_done(&diags);
	if (r < 0) {
		say("%s: configuration is invalid", c->config_path);
		return EXIT_USAGE;
	}
	snprintf(c->dlq, sizeof(c->dlq), "%s.dlq", c->config->pipeline.queue);
	if (c->archive_path && (r = archive_open(c)) < 0) {
		say("cannot open the archive %s: %s", c->archive_path, strerror(-r));
		return EXIT_ERROR;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if ((r = connect_and_size(c)) != EXIT_OK)
		return r;
	c->t0 = now_monotonic_usec();
	ratelimit_init(&c->rl, (double)c->rate, 1, c->t0);
	if (c->depth > 0)
		scan(c);
	return finish(c);
}

int main(int argc, char **argv)
{
	struct ctl c = {
		.config_path = CONFIG_DEFAULT_PATH,
		.rate = DEFAULT_RATE,
		.max_run_usec = DEFAULT_MAX_RUN,
		.archive_fd = -1,
		.tty = isatty(STDERR_FILENO),
	};
	int r;

	log_setup(LOG_INFO);
	dlqfilter_init(&c.filter);
	buf_init(&c.archive, 64 * 1024 * 1024);
	if (dlqstats_init(&c.stats) < 0) {
		say("out of memory");
		return EXIT_ERROR;
	}
	r = run(&c, argc, argv);
	c.scan = dlqscan_free(c.scan); /* closing returns every unacked message */
	if (c.archive_fd >= 0)
		close(c.archive_fd);
	buf_done(&c.archive);
	dlqstats_done(&c.stats);
	dlqfilter_done(&c.filter);
	config_free(c.config);
	return r;
}
