/*
 * log: structured events to journald (native protocol) or to stderr.
 *
 * Under systemd our stderr is connected to the journal and JOURNAL_STREAM
 * names it; then events go through sd_journal_send() so their fields are
 * queryable, each with the MESSAGE_ID of its kind (the catalog in
 * packaging/systemd/catalog explains them). Anywhere else, or when the
 * journal socket is missing, each event is one line on stderr:
 *     <level> <message> key=value key="value with spaces" ...
 * which tests and humans both read.
 */
#include "common/log.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#define JOURNAL_SOCKET "/run/systemd/journal/socket"

/* Set once in log_setup() before the loop starts; read-only afterwards. */
static struct {
	int max_priority;
	bool journal;
} log_state = { LOG_INFO, false };

/*
 * One journald MESSAGE_ID per event kind, so `journalctl MESSAGE_ID=...`
 * finds every occurrence whatever the wording, and the catalog
 * (packaging/systemd/catalog/dlqd.catalog, same ids) explains each one.
 * Never change an id: operators' queries and alerts depend on them.
 */
static const struct {
	const char *event;
	const char *id;
} message_ids[] = {
	{ "start", "fd54a439f296484ba14ecd0c77bdbfcb" },
	{ "stop", "72acda44c56c49dc91cea5314a6e7e2f" },
	{ "broker-connected", "a4fd16afc033401086986df24fd1c4bf" },
	{ "broker-lost", "6f964c0704a04d27beb33e4caf0136b7" },
	{ "broker-connect-failed", "1d7a15bd332d4f77b79bbf4ad76f140c" },
	{ "publisher-connected", "e8e8ad837a5743d78818a776def5b0b5" },
	{ "publisher-lost", "8a6e4becd3204ffda85c635bcd2a6171" },
	{ "publisher-connect-failed", "42ff950cf8264dc5b99861e22421b5f0" },
	{ "broker-blocked", "efa1112c60ab4b4f89c8202f376c9be9" },
	{ "broker-unblocked", "3c605a7f5bee447e9e551617fc1dc6fc" },
	{ "retry", "080308104eaa437aa2df4b69d9a5a274" },
	{ "dead-letter", "a6c8d65bca5948768157b4a6e3f0fa8c" },
	{ "invalid-envelope", "8e506a84fa9140c7a9a386df7bc90c5d" },
	{ "escalation", "fa5942a1b5074b94a88a401a7c72473b" },
	{ "poison", "fd1cdff84a874b96b50126ff7e8e1c10" },
	{ "redelivered", "6a55a48e50964de6b284b505f16fb551" },
	{ "dlq-publish-failed", "b56b7cb86bfc41b396160096f95baffb" },
	{ "publish-failed", "6c1c677df523489382ccc28366307619" },
	{ "reload", "c0305c90343c4144aa5819cf0e9138f7" },
	{ "reload-error", "19532dfc52da472aac55fa814d7c231c" },
	{ "reload-failed", "3d3e3e438875464b829583c5dfe9432d" },
	{ "drain-start", "c07e90c26fc54390a3c4b1f630b30ef4" },
	{ "drain-done", "5e17add74ca64fcd8a13cf787e5bf33d" },
	{ "drain-timeout", "10ceb56b425f418d8900aad74986d713" },
	{ "purge", "7b9f8f9e9895431996a9e689b86ee5c3" }, /* dlqctl purge: the audit trail */
	{ "breaker-open", "17651a2105f844e18723e361768d2161" },
	{ "breaker-half-open", "97407da1b487444cab658d8aff065493" },
	{ "breaker-close", "b05cf3f9f7ad44858c77b10197255508" },
	{ "breaker-limit", "6db2e9218e5944b3a8a3f1080af27c22" },
	{ "retry-deferred", "437514edef2e41bb83cd79a04e094cf8" },
	{ "lane-stalled", "542c9cf01bb94035b510b0e62f321708" },
};

const char *log_message_id(const char *event)
{
	if (!event)
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(message_ids); i++)
		if (strcmp(message_ids[i].event, event) == 0)
			return message_ids[i].id;
	return NULL;
}

static bool stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return false;
	if (fstat(STDERR_FILENO, &st) < 0 || st.st_dev != dev || st.st_ino != ino)
		return false;
	/* sd_journal_send() drops entries silently when the socket is missing;
	 * then our stderr (the same journal stream) is the better way in. */
	return access(JOURNAL_SOCKET, W_OK) == 0;
}

static const char *const priority_names[] = { "emerg",	 "alert",  "crit", "error",
					      "warning", "notice", "info", "debug" };

void log_setup(int max_priority)
{
	const char *lvl = getenv("DLQD_LOG_LEVEL");

	log_state.max_priority = max_priority;
	/* The names the stderr lines carry; syslog's "err" is accepted too. */
	for (int i = 0; lvl && i < (int)ARRAY_SIZE(priority_names); i++)
		if (strcmp(lvl, priority_names[i]) == 0 ||
		    (i == LOG_ERR && strcmp(lvl, "err") == 0))
			log_state.max_priority = i;
	log_state.journal = stderr_is_journal();
}

bool log_enabled(int priority)
{
	return priority <= log_state.max_priority;
}

static const char *priority_name(int p)
{
	return (p >= 0 && p < (int)ARRAY_SIZE(priority_names)) ? priority_names[p] : "info";
}

static void kv(struct buf *b, const char *key, const char *value)
{
	bool quote;

	if (!value || !*value)
		return;
	quote = strpbrk(value, " \t\"=") != NULL;
	buf_printf(b, " %s=", key);
	if (!quote) {
		buf_append(b, value, strlen(value));
		return;
	}
	buf_append(b, "\"", 1);
	for (const char *p = value; *p; p++) {
		if (*p == '"' || *p == '\\')
			buf_append(b, "\\", 1);
		if (*p == '\n')
			buf_append(b, "\\n", 2);
		else
			buf_append(b, p, 1);
	}
	buf_append(b, "\"", 1);
}

static void log_stderr(int priority, const char *msg, const struct log_ctx *c)
{
	struct buf b;
	char attempt[24];

	buf_init(&b, 16384);
	buf_printf(&b, "%s %s", priority_name(priority), msg);
	if (c) {
		kv(&b, "event", c->event);
		kv(&b, "message_id", c->message_id);
		kv(&b, "trace_id", c->trace_id);
		if (c->attempt >= 0) {
			snprintf(attempt, sizeof(attempt), "%ld", c->attempt);
			kv(&b, "attempt", attempt);
		}
		kv(&b, "error_code", c->error_code);
		kv(&b, "error_class", c->error_class);
		if (c->extra && *c->extra)
			buf_printf(&b, " %s", c->extra);
	}
	buf_append(&b, "\n", 1);
	/* One write() per event so lines from a crash are never interleaved. */
	if (b.data && write(STDERR_FILENO, b.data, b.len) < 0) {
		/* nowhere left to report it */
	}
	buf_done(&b);
}

static void add_field(struct iovec *iov, size_t *n, char *store, size_t size, const char *key,
		      const char *value)
{
	if (!value || !*value)
		return;
	int len = snprintf(store, size, "%s=%s", key, value);
	if (len < 0)
		return;
	iov[*n].iov_base = store;
	iov[*n].iov_len = MIN((size_t)len, size - 1);
	(*n)++;
}

/* Returns < 0 when journald did not take the entry (then stderr does). */
static int log_journal(int priority, const char *msg, const struct log_ctx *c)
{
	char f[20][512], attempt[24], prio[4], extra[512];
	struct iovec iov[20];
	size_t n = 0;

	snprintf(prio, sizeof(prio), "%d", priority);
	add_field(iov, &n, f[n], sizeof(f[0]), "MESSAGE", msg);
	add_field(iov, &n, f[n], sizeof(f[0]), "PRIORITY", prio);
	add_field(iov, &n, f[n], sizeof(f[0]), "SYSLOG_IDENTIFIER", program_invocation_short_name);
	if (c) {
		add_field(iov, &n, f[n], sizeof(f[0]), "MESSAGE_ID", log_message_id(c->event));
		add_field(iov, &n, f[n], sizeof(f[0]), "DLQD_EVENT", c->event);
		add_field(iov, &n, f[n], sizeof(f[0]), "DLQD_MESSAGE_ID", c->message_id);
		add_field(iov, &n, f[n], sizeof(f[0]), "TRACE_ID", c->trace_id);
		if (c->attempt >= 0) {
			snprintf(attempt, sizeof(attempt), "%ld", c->attempt);
			add_field(iov, &n, f[n], sizeof(f[0]), "ATTEMPT", attempt);
		}
		add_field(iov, &n, f[n], sizeof(f[0]), "ERROR_CODE", c->error_code);
		add_field(iov, &n, f[n], sizeof(f[0]), "ERROR_CLASS", c->error_class);
		if (c->extra) {
			/* "delay_ms=5 lane_ms=4" becomes DLQD_DELAY_MS=5, DLQD_LANE_MS=4. */
			strscpy(extra, c->extra, sizeof(extra));
			char *save = NULL;
			for (char *t = strtok_r(extra, " ", &save); t && n < ARRAY_SIZE(iov);
			     t = strtok_r(NULL, " ", &save)) {
				char *eq = strchr(t, '=');
				if (!eq)
					continue;
				*eq = '\0';
				char key[64] = "DLQD_";
				size_t k = 5;
				for (char *p = t; *p && k < sizeof(key) - 1; p++)
					key[k++] = (char)toupper((unsigned char)*p);
				key[k] = '\0';
				add_field(iov, &n, f[n], sizeof(f[0]), key, eq + 1);
			}
		}
	}
	return sd_journal_sendv(iov, (int)n);
}

int log_full(int priority, int err, const struct log_ctx *ctx, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	int saved = errno;

	if (err < 0)
		err = -err;
	if (priority > log_state.max_priority)
		return -err;
	va_start(ap, fmt);
	if (err)
		errno = err; /* so that %m in fmt names err */
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* journald gone (restarted, or the socket is not there): say it on
	 * stderr rather than lose the event. */
	if (!log_state.journal || log_journal(priority, msg, ctx) < 0)
		log_stderr(priority, msg, ctx);
	errno = saved;
	return -err;
}
