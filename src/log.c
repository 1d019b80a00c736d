/*
 * log: structured events to journald (native protocol) or to stderr.
 *
 * Under systemd our stderr is connected to the journal and JOURNAL_STREAM
 * names it; then events go through sd_journal_send() so their fields are
 * queryable. Anywhere else each event is one line on stderr:
 *     <level> <message> key=value key="value with spaces" ...
 * which tests and humans both read.
 */
#include "dlqd/log.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

/* Set once in log_setup() before the loop starts; read-only afterwards. */
static struct {
	int max_priority;
	bool journal;
} log_state = { LOG_INFO, false };

static bool stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return false;
	if (fstat(STDERR_FILENO, &st) < 0)
		return false;
	return st.st_dev == dev && st.st_ino == ino;
}

void log_setup(int max_priority)
{
	const char *lvl = getenv("DLQD_LOG_LEVEL");

	log_state.max_priority = max_priority;
	if (lvl) {
		static const char *const names[] = { "emerg",	"alert",  "crit", "err",
						     "warning", "notice", "info", "debug" };
		for (int i = 0; i < 8; i++)
			if (strcmp(lvl, names[i]) == 0)
				log_state.max_priority = i;
	}
	log_state.journal = stderr_is_journal();
}

static const char *priority_name(int p)
{
	static const char *const names[] = { "emerg",	"alert",  "crit", "error",
					     "warning", "notice", "info", "debug" };
	return (p >= 0 && p < 8) ? names[p] : "info";
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

static void log_journal(int priority, const char *msg, const struct log_ctx *c)
{
	char f[16][512], attempt[24], prio[4], extra[512];
	struct iovec iov[16];
	size_t n = 0;

	snprintf(prio, sizeof(prio), "%d", priority);
	add_field(iov, &n, f[n], sizeof(f[0]), "MESSAGE", msg);
	add_field(iov, &n, f[n], sizeof(f[0]), "PRIORITY", prio);
	add_field(iov, &n, f[n], sizeof(f[0]), "SYSLOG_IDENTIFIER", program_invocation_short_name);
	if (c) {
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
	sd_journal_sendv(iov, (int)n);
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
	if (log_state.journal)
		log_journal(priority, msg, ctx);
	else
		log_stderr(priority, msg, ctx);
	errno = saved;
	return -err;
}
