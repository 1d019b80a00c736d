/*
 * config: a small INI parser of our own (libinih gives no line numbers for
 * semantic errors) and the validation of every key of design.md Part 1.
 *
 * The parser never stops early: each problem becomes one "FILE:LINE: message"
 * diagnostic and parsing goes on, so `dlqd --check-config` lists every mistake
 * in one run. Any diagnostic rejects the whole config. This module is pure: it
 * never logs and only touches the file system in config_load().
 */
#include "common/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_MAX_LINE	 4096
#define CONFIG_MAX_SIZE	 (1024 * 1024)
#define QUEUE_NAME_MAX	 200
#define DEFAULT_TAXONOMY "/etc/dlqd/taxonomy.json"
#define DEFAULT_LISTEN	 "127.0.0.1:9464"

#define KIB	  UINT64_C(1024)
#define MIB	  (KIB * 1024)
#define GIB	  (MIB * 1024)
#define HOUR_USEC (UINT64_C(3600) * USEC_PER_SEC)

enum section {
	SEC_BROKER,
	SEC_PIPELINE,
	SEC_HANDLER,
	SEC_RETRY,
	SEC_METRICS,
	SEC_SHUTDOWN,
	SEC_REPLAY,
	_SEC_MAX,
	SEC_NONE = -1,	  /* before the first header */
	SEC_UNKNOWN = -2, /* inside a section we already complained about */
};

static const char *const section_names[_SEC_MAX] = {
	[SEC_BROKER] = "broker", [SEC_PIPELINE] = "pipeline", [SEC_HANDLER] = "handler",
	[SEC_RETRY] = "retry",	 [SEC_METRICS] = "metrics",   [SEC_SHUTDOWN] = "shutdown",
	[SEC_REPLAY] = "replay",
};

enum key_type {
	KT_STRING,  /* kept as written, may be empty */
	KT_PATH,    /* empty = unset; relative = next to the config file */
	KT_COMMAND, /* raw; shell-like quotes survive for the argv split */
	KT_UINT32,
	KT_DURATION,
	KT_SIZE,
	KT_BOOL,
	KT_QUEUE_TYPE,
	KT_HANDLER_TYPE,
	KT_LIST, /* comma-separated, NULL-terminated strv */
};

enum key_id {
	K_BROKER_URL,
	K_BROKER_PASSWORD_FILE,
	K_BROKER_PREFETCH,
	K_BROKER_HEARTBEAT,
	K_BROKER_TLS_CA_FILE,
	K_BROKER_TLS_CERT_FILE,
	K_BROKER_TLS_KEY_FILE,
	K_BROKER_TLS_VERIFY_PEER,
	K_BROKER_TLS_VERIFY_HOSTNAME,
	K_PIPELINE_QUEUE,
	K_PIPELINE_QUEUE_TYPE,
	K_PIPELINE_DECLARE,
	K_PIPELINE_MAX_MESSAGE_SIZE,
	K_HANDLER_TYPE,
	K_HANDLER_URL,
	K_HANDLER_COMMAND,
	K_HANDLER_TIMEOUT,
	K_HANDLER_MAX_OUTPUT,
	K_RETRY_TAXONOMY,
	K_METRICS_LISTEN,
	K_METRICS_DLQ_POLL_INTERVAL,
	K_SHUTDOWN_DRAIN_TIMEOUT,
	K_REPLAY_BLOCK_SCHEMA_VERSIONS,
	_K_MAX,
};

struct key_def {
	enum section section;
	const char *name;
	enum key_type type;
	size_t offset; /* into struct config */
	uint64_t min, max;
	const char *range; /* overrides the generated "min to max" text */
};

#define KEY(id, sec, n, t, field, lo, hi, txt)             \
	[id] = { .section = sec,                           \
		 .name = n,                                \
		 .type = t,                                \
		 .offset = offsetof(struct config, field), \
		 .min = lo,                                \
		 .max = hi,                                \
		 .range = txt }

static const struct key_def keys[_K_MAX] = {
	KEY(K_BROKER_URL, SEC_BROKER, "url", KT_STRING, broker.url, 0, 0, NULL),
	KEY(K_BROKER_PASSWORD_FILE, SEC_BROKER, "password_file", KT_PATH, broker.password_file, 0,
	    0, NULL),
	KEY(K_BROKER_PREFETCH, SEC_BROKER, "prefetch", KT_UINT32, broker.prefetch, 1, 65535, NULL),
	KEY(K_BROKER_HEARTBEAT, SEC_BROKER, "heartbeat", KT_DURATION, broker.heartbeat_usec, 0,
	    HOUR_USEC, "0 (off) to 1h, whole seconds"),
	KEY(K_BROKER_TLS_CA_FILE, SEC_BROKER, "tls_ca_file", KT_PATH, broker.tls_ca_file, 0, 0,
	    NULL),
	KEY(K_BROKER_TLS_CERT_FILE, SEC_BROKER, "tls_cert_file", KT_PATH, broker.tls_cert_file, 0,
	    0, NULL),
	KEY(K_BROKER_TLS_KEY_FILE, SEC_BROKER, "tls_key_file", KT_PATH, broker.tls_key_file, 0, 0,
	    NULL),
	KEY(K_BROKER_TLS_VERIFY_PEER, SEC_BROKER, "tls_verify_peer", KT_BOOL,
	    broker.tls_verify_peer, 0, 0, NULL),
	KEY(K_BROKER_TLS_VERIFY_HOSTNAME, SEC_BROKER, "tls_verify_hostname", KT_BOOL,
	    broker.tls_verify_hostname, 0, 0, NULL),
	KEY(K_PIPELINE_QUEUE, SEC_PIPELINE, "queue", KT_STRING, pipeline.queue, 0, 0, NULL),
	KEY(K_PIPELINE_QUEUE_TYPE, SEC_PIPELINE, "queue_type", KT_QUEUE_TYPE, pipeline.queue_type,
	    0, 0, NULL),
	KEY(K_PIPELINE_DECLARE, SEC_PIPELINE, "declare", KT_BOOL, pipeline.declare, 0, 0, NULL),
	KEY(K_PIPELINE_MAX_MESSAGE_SIZE, SEC_PIPELINE, "max_message_size", KT_SIZE,
	    pipeline.max_message_size, KIB, GIB, NULL),
	KEY(K_HANDLER_TYPE, SEC_HANDLER, "type", KT_HANDLER_TYPE, handler.type, 0, 0, NULL),
	KEY(K_HANDLER_URL, SEC_HANDLER, "url", KT_STRING, handler.url, 0, 0, NULL),
	KEY(K_HANDLER_COMMAND, SEC_HANDLER, "command", KT_COMMAND, handler.command, 0, 0, NULL),
	KEY(K_HANDLER_TIMEOUT, SEC_HANDLER, "timeout", KT_DURATION, handler.timeout_usec, 1,
	    24 * HOUR_USEC, "more than 0, at most 24h"),
	KEY(K_HANDLER_MAX_OUTPUT, SEC_HANDLER, "max_output", KT_SIZE, handler.max_output, KIB,
	    16 * MIB, NULL),
	KEY(K_RETRY_TAXONOMY, SEC_RETRY, "taxonomy", KT_PATH, retry.taxonomy, 0, 0, NULL),
	KEY(K_METRICS_LISTEN, SEC_METRICS, "listen", KT_STRING, metrics.listen, 0, 0, NULL),
	KEY(K_METRICS_DLQ_POLL_INTERVAL, SEC_METRICS, "dlq_poll_interval", KT_DURATION,
	    metrics.dlq_poll_interval_usec, 0, HOUR_USEC, "0 (off) to 1h"),
	KEY(K_SHUTDOWN_DRAIN_TIMEOUT, SEC_SHUTDOWN, "drain_timeout", KT_DURATION,
	    shutdown.drain_timeout_usec, 0, HOUR_USEC, NULL),
	KEY(K_REPLAY_BLOCK_SCHEMA_VERSIONS, SEC_REPLAY, "block_schema_versions", KT_LIST,
	    replay.block_schema_versions, 0, 0, NULL),
};

/* A diagnostic waiting to be sorted into file order. */
struct pending {
	unsigned line;
	size_t seq; /* keeps the order of equal lines: qsort is not stable */
	char *msg;
};

struct parser {
	const char *name; /* for diagnostics */
	char *dir;	  /* prefix for relative paths, NULL = keep them as written */
	struct config *c;
	struct diag *diags;
	unsigned errors; /* counted here: diag_add() may drop a line on OOM */
	struct pending *pending;
	size_t n_pending;
	bool oom;
	int section;
	unsigned section_line[_SEC_MAX]; /* first header, 0 = absent */
	unsigned key_line[_K_MAX];	 /* where the key was set, 0 = not set */
	bool bad[_K_MAX];		 /* set but rejected: already reported */
};

static void perr(struct parser *p, unsigned line, const char *fmt, ...) _printf_(3, 4);

/*
 * Semantic checks run after the whole file is read; collecting first and
 * sorting by line gives the operator one list in file order.
 */
static void perr(struct parser *p, unsigned line, const char *fmt, ...)
{
	struct pending *n;
	char *msg = NULL;
	va_list ap;
	int r;

	p->errors++;
	if (!p->diags)
		return;
	va_start(ap, fmt);
	r = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (r < 0) {
		p->oom = true;
		return;
	}
	n = realloc(p->pending, (p->n_pending + 1) * sizeof(*n));
	if (!n) {
		free(msg);
		p->oom = true;
		return;
	}
	p->pending = n;
	p->pending[p->n_pending] = (struct pending){ line, p->n_pending, msg };
	p->n_pending++;
}

static int pending_cmp(const void *a, const void *b)
{
	const struct pending *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void flush_diags(struct parser *p)
{
	if (p->n_pending)
		qsort(p->pending, p->n_pending, sizeof(*p->pending), pending_cmp);
	for (size_t i = 0; i < p->n_pending; i++) {
		diag_add(p->diags, p->name, p->pending[i].line, "%s", p->pending[i].msg);
		free(p->pending[i].msg);
	}
	free(p->pending);
	p->pending = NULL;
	p->n_pending = 0;
}

void config_strv_free(char **v)
{
	if (!v)
		return;
	for (char **s = v; *s; s++)
		free(*s);
	free(v);
}

struct config *config_free(struct config *c)
{
	if (!c)
		return NULL;
	free(c->path);
	free(c->broker.url);
	free(c->broker.password_file);
	free(c->broker.tls_ca_file);
	free(c->broker.tls_cert_file);
	free(c->broker.tls_key_file);
	free(c->pipeline.queue);
	free(c->handler.url);
	free(c->handler.command);
	config_strv_free(c->handler.argv);
	free(c->retry.taxonomy);
	free(c->metrics.listen);
	config_strv_free(c->replay.block_schema_versions);
	free(c);
	return NULL;
}

void config_freep(struct config **c)
{
	*c = config_free(*c);
}

static void strv_freep(char ***v)
{
	config_strv_free(*v);
	*v = NULL;
}

/* Appends s (taken over) to a NULL-terminated vector of n entries. */
static int strv_push(char ***v, size_t *n, char *s)
{
	char **nv = realloc(*v, (*n + 2) * sizeof(char *));

	if (!nv) {
		free(s);
		return -ENOMEM;
	}
	nv[(*n)++] = s;
	nv[*n] = NULL;
	*v = nv;
	return 0;
}

/*
 * The shell-like splitter behind config_split_command(); *err names the
 * problem for the diagnostic.
 */
static int split_command(const char *cmd, char ***argv, const char **err)
{
	_cleanup_(strv_freep) char **v = NULL;
	size_t n = 0;
	struct buf word;
	const char *s = cmd;

	*err = NULL;
	if (!cmd) {
		*err = "empty command";
		return -EINVAL;
	}
	buf_init(&word, strlen(cmd));
	for (;;) {
		bool have_word = false;

		while (*s && isspace((unsigned char)*s))
			s++;
		if (!*s)
			break;
		buf_reset(&word);
		while (*s && !isspace((unsigned char)*s)) {
			const char *start = s;
			size_t len;

			have_word = true;
			if (*s == '\'') {
				const char *end = strchr(s + 1, '\'');
				if (!end) {
					*err = "unbalanced single quote";
					goto einval;
				}
				start = s + 1;
				len = (size_t)(end - start);
				s = end + 1;
				if (buf_append(&word, start, len) < 0)
					goto enomem;
			} else if (*s == '"') {
				for (s++; *s != '"'; s++) {
					if (!*s) {
						*err = "unbalanced double quote";
						goto einval;
					}
					if (*s == '\\' && (s[1] == '"' || s[1] == '\\'))
						s++;
					if (buf_append(&word, s, 1) < 0)
						goto enomem;
				}
				s++;
			} else if (*s == '\\') {
				if (!s[1]) {
					*err = "backslash at the end of the command";
					goto einval;
				}
				if (buf_append(&word, s + 1, 1) < 0)
					goto enomem;
				s += 2;
			} else {
				if (buf_append(&word, s, 1) < 0)
					goto enomem;
				s++;
			}
		}
		if (have_word) {
			char *w = word.data ? buf_steal(&word, NULL) : strdup("");
			if (!w || strv_push(&v, &n, w) < 0)
				goto enomem;
			buf_init(&word, strlen(cmd));
		}
	}
	buf_done(&word);
	if (n == 0) {
		*err = "empty command";
		return -EINVAL;
	}
	*argv = TAKE_PTR(v);
	return 0;

einval:
	buf_done(&word);
	return -EINVAL;
enomem:
	buf_done(&word);
	*err = "out of memory";
	return -ENOMEM;
}

int config_split_command(const char *cmd, char ***argv)
{
	const char *err;

	return split_command(cmd, argv, &err);
}

/* Optimal string alignment distance: a transposition counts as one edit. */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t d[33][33];

	if (la > 32 || lb > 32)
		return SIZE_MAX;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			size_t cost = tolower((unsigned char)a[i - 1]) !=
				      tolower((unsigned char)b[j - 1]);
			size_t v = MIN(d[i - 1][j] + 1, d[i][j - 1] + 1);
			v = MIN(v, d[i - 1][j - 1] + cost);
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
				v = MIN(v, d[i - 2][j - 2] + 1);
			d[i][j] = v;
		}
	return d[la][lb];
}

/* A typo is close when a third of the word or less (1..3 edits) differs. */
static bool is_close(const char *typo, const char *known)
{
	size_t limit = MAX((size_t)1, MIN((size_t)3, strlen(known) / 3));

	return edit_distance(typo, known) <= limit;
}

static int find_section(const char *name)
{
	for (int i = 0; i < _SEC_MAX; i++)
		if (strcmp(section_names[i], name) == 0)
			return i;
	return -1;
}

static int find_key(int section, const char *name)
{
	for (int i = 0; i < _K_MAX; i++)
		if ((int)keys[i].section == section && strcmp(keys[i].name, name) == 0)
			return i;
	return -1;
}

static void unknown_key(struct parser *p, unsigned line, const char *key)
{
	const char *sec = section_names[p->section];
	size_t best_d = SIZE_MAX;
	int best = -1;

	for (int i = 0; i < _K_MAX; i++) {
		size_t d = edit_distance(key, keys[i].name);
		if ((int)keys[i].section == p->section && d < best_d &&
		    is_close(key, keys[i].name)) {
			best = i;
			best_d = d;
		}
	}
	if (best >= 0) {
		perr(p, line, "unknown key '%s' in [%s] (did you mean '%s'?)", key, sec,
		     keys[best].name);
		return;
	}
	for (int i = 0; i < _K_MAX; i++)
		if (strcmp(keys[i].name, key) == 0) {
			perr(p, line, "unknown key '%s' in [%s] (it belongs in [%s])", key, sec,
			     section_names[keys[i].section]);
			return;
		}
	perr(p, line, "unknown key '%s' in [%s]", key, sec);
}

static void unknown_section(struct parser *p, unsigned line, const char *name)
{
	for (int i = 0; i < _SEC_MAX; i++)
		if (is_close(name, section_names[i])) {
			perr(p, line, "unknown section [%s] (did you mean [%s]?)", name,
			     section_names[i]);
			return;
		}
	perr(p, line,
	     "unknown section [%s] (known: broker, pipeline, handler, retry, metrics, "
	     "shutdown, replay)",
	     name);
}

/* Writes the largest unit that states usec exactly: "24h", "250ms", "0". */
static const char *fmt_duration(uint64_t usec, char *buf, size_t n)
{
	static const struct {
		uint64_t f;
		const char *u;
	} units[] = {
		{ HOUR_USEC, "h" },    { 60 * USEC_PER_SEC, "m" },
		{ USEC_PER_SEC, "s" }, { USEC_PER_MSEC, "ms" },
		{ 1, "us" },
	};

	if (usec == 0)
		return strscpy(buf, "0", n);
	for (size_t i = 0; i < ARRAY_SIZE(units); i++)
		if (usec % units[i].f == 0) {
			snprintf(buf, n, "%llu%s", (unsigned long long)(usec / units[i].f),
				 units[i].u);
			break;
		}
	return buf;
}

static const char *fmt_size(uint64_t v, char *buf, size_t n)
{
	if (v && v % GIB == 0)
		snprintf(buf, n, "%lluGiB", (unsigned long long)(v / GIB));
	else if (v && v % MIB == 0)
		snprintf(buf, n, "%lluMiB", (unsigned long long)(v / MIB));
	else if (v && v % KIB == 0)
		snprintf(buf, n, "%lluKiB", (unsigned long long)(v / KIB));
	else
		snprintf(buf, n, "%llu", (unsigned long long)v);
	return buf;
}

static const char *range_text(const struct key_def *k, char *buf, size_t n)
{
	char lo[32], hi[32];

	if (k->range)
		return k->range;
	switch (k->type) {
	case KT_DURATION:
		snprintf(buf, n, "%s to %s", fmt_duration(k->min, lo, sizeof(lo)),
			 fmt_duration(k->max, hi, sizeof(hi)));
		break;
	case KT_SIZE:
		snprintf(buf, n, "%s to %s", fmt_size(k->min, lo, sizeof(lo)),
			 fmt_size(k->max, hi, sizeof(hi)));
		break;
	default:
		snprintf(buf, n, "%llu to %llu", (unsigned long long)k->min,
			 (unsigned long long)k->max);
		break;
	}
	return buf;
}

static char *dup_or_oom(struct parser *p, const char *s)
{
	char *d = strdup(s);

	if (!d)
		p->oom = true;
	return d;
}

static void set_string(char **field, char *value)
{
	free(*field);
	*field = value;
}

/*
 * Relative paths are relative to the directory of the config file, except
 * secrets under systemd: with LoadCredential= the unit hands them over in
 * $CREDENTIALS_DIRECTORY, and the config names the credential, so no secret
 * needs to sit in /etc or in the process arguments.
 */
static char *resolve_path(struct parser *p, int id, const char *v)
{
	const char *dir = p->dir, *creds = getenv("CREDENTIALS_DIRECTORY");
	char *s = NULL;

	if ((id == K_BROKER_PASSWORD_FILE || id == K_BROKER_TLS_KEY_FILE) && creds &&
	    creds[0] == '/')
		dir = creds;
	if (v[0] == '/' || !dir)
		return dup_or_oom(p, v);
	if (asprintf(&s, "%s/%s", dir, v) < 0) {
		p->oom = true;
		return NULL;
	}
	return s;
}

static int parse_list(const char *v, char ***out)
{
	_cleanup_(strv_freep) char **list = calloc(1, sizeof(char *));
	size_t n = 0;

	if (!list)
		return -ENOMEM;
	while (*v) {
		const char *comma = strchrnul(v, ',');
		const char *a = v, *b = comma;

		while (a < b && isspace((unsigned char)*a))
			a++;
		while (b > a && isspace((unsigned char)b[-1]))
			b--;
		if (b > a) {
			char *item = strndup(a, (size_t)(b - a));
			if (!item || strv_push(&list, &n, item) < 0)
				return -ENOMEM;
		}
		v = *comma ? comma + 1 : comma;
	}
	*out = TAKE_PTR(list);
	return 0;
}

/*
 * Parses the value of a number, duration or size key and checks it against
 * the key's bounds. Reports and returns false when it is not usable.
 */
static bool parse_number(struct parser *p, const struct key_def *k, const char *v, unsigned line,
			 uint64_t *out)
{
	const char *sec = section_names[k->section];
	char range[96];
	uint64_t u;
	int r;

	switch (k->type) {
	case KT_DURATION:
		r = parse_duration_usec(v, &u);
		break;
	case KT_SIZE:
		r = parse_size(v, &u);
		break;
	default:
		r = parse_uint(v, 0, UINT64_MAX, &u);
		break;
	}
	if (r == -EINVAL) {
		if (k->type == KT_DURATION)
			perr(p, line,
			     "invalid duration '%s' for '%s' in [%s]: expected a number with "
			     "a unit (us, ms, s, m, h, d) like 250ms, 30s or 5m (allowed: %s)",
			     v, k->name, sec, range_text(k, range, sizeof(range)));
		else if (k->type == KT_SIZE)
			perr(p, line,
			     "invalid size '%s' for '%s' in [%s]: expected bytes or a number "
			     "with a unit (KiB, MiB, GiB, KB, MB, GB) like 64KiB (allowed: %s)",
			     v, k->name, sec, range_text(k, range, sizeof(range)));
		else
			perr(p, line,
			     "invalid number '%s' for '%s' in [%s]: expected an integer from %s", v,
			     k->name, sec, range_text(k, range, sizeof(range)));
		return false;
	}
	if (r < 0 || u < k->min || u > k->max) {
		perr(p, line, "value '%s' for '%s' in [%s] is out of range (allowed: %s)", v,
		     k->name, sec, range_text(k, range, sizeof(range)));
		return false;
	}
	*out = u;
	return true;
}

static void set_value(struct parser *p, int id, const char *v, unsigned line)
{
	const struct key_def *k = &keys[id];
	const char *sec = section_names[k->section];
	void *field = (char *)p->c + k->offset;
	uint64_t u;
	bool b;

	switch (k->type) {
	case KT_STRING:
	case KT_COMMAND:
		set_string(field, dup_or_oom(p, v));
		return;
	case KT_PATH:
		if (!*v) {
			if (id == K_RETRY_TAXONOMY) {
				perr(p, line,
				     "empty value for 'taxonomy' in [retry] (remove the line to "
				     "use the default %s)",
				     DEFAULT_TAXONOMY);
				return;
			}
			set_string(field, NULL);
			return;
		}
		set_string(field, resolve_path(p, id, v));
		return;
	case KT_UINT32:
		if (parse_number(p, k, v, line, &u))
			*(uint32_t *)field = (uint32_t)u;
		return;
	case KT_DURATION:
		if (!parse_number(p, k, v, line, &u))
			return;
		/* AMQP negotiates whole seconds: 500ms would silently mean "off". */
		if (id == K_BROKER_HEARTBEAT && u % USEC_PER_SEC != 0) {
			perr(p, line,
			     "value '%s' for 'heartbeat' in [broker] is not a whole number of "
			     "seconds (AMQP heartbeats are negotiated in seconds)",
			     v);
			return;
		}
		*(uint64_t *)field = u;
		return;
	case KT_SIZE:
		if (parse_number(p, k, v, line, &u))
			*(uint64_t *)field = u;
		return;
	case KT_BOOL:
		if (parse_bool(v, &b) < 0) {
			perr(p, line,
			     "invalid boolean '%s' for '%s' in [%s]: expected true or false "
			     "(or yes/no, on/off, 1/0)",
			     v, k->name, sec);
			return;
		}
		*(bool *)field = b;
		return;
	case KT_QUEUE_TYPE:
		if (strcasecmp(v, "classic") == 0)
			p->c->pipeline.queue_type = QUEUE_CLASSIC;
		else if (strcasecmp(v, "quorum") == 0)
			p->c->pipeline.queue_type = QUEUE_QUORUM;
		else
			perr(p, line,
			     "invalid queue_type '%s' in [pipeline]: expected classic or quorum",
			     v);
		return;
	case KT_HANDLER_TYPE:
		if (strcasecmp(v, "http") == 0)
			p->c->handler.type = HANDLER_HTTP;
		else if (strcasecmp(v, "exec") == 0)
			p->c->handler.type = HANDLER_EXEC;
		else
			perr(p, line, "invalid type '%s' in [handler]: expected http or exec", v);
		return;
	case KT_LIST: {
		char **list = NULL;
		if (parse_list(v, &list) < 0) {
			p->oom = true;
			return;
		}
		config_strv_free(*(char ***)field);
		*(char ***)field = list;
		return;
	}
	}
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

enum cut_error {
	CUT_OK,
	CUT_UNTERMINATED, /* "... without the closing quote */
	CUT_TRAILING,	  /* "..." followed by more than a comment */
};

/*
 * Cuts the value that starts at v (just after '=') out of its line, in place:
 * an inline comment starts at whitespace followed by ';' or '#'. A value in
 * double quotes is unquoted (\" and \\ escapes) so it can hold ; or #. For
 * `command` the quotes belong to the argv syntax and are kept; a ; or #
 * inside them is not a comment.
 */
static const char *cut_value(char *v, bool shell, enum cut_error *err)
{
	char *s, *end;

	*err = CUT_OK;
	s = v;
	while (is_blank(*s))
		s++;

	if (!shell && *s == '"') {
		char *in = s + 1, *out = s;

		for (;; in++) {
			if (!*in) {
				*err = CUT_UNTERMINATED;
				return NULL;
			}
			if (*in == '"')
				break;
			if (*in == '\\' && (in[1] == '"' || in[1] == '\\'))
				in++;
			*out++ = *in;
		}
		*out = '\0';
		for (in++; is_blank(*in); in++)
			;
		if (*in && *in != ';' && *in != '#') {
			*err = CUT_TRAILING;
			return NULL;
		}
		return s;
	}

	/* end: just past the last character that belongs to the value */
	end = s;
	char quote = 0;
	for (char *q = v; *q; q++) {
		if (quote) {
			if (*q == quote)
				quote = 0;
			else if (quote == '"' && *q == '\\' && q[1])
				q++;
			end = q + 1;
		} else if (shell && (*q == '"' || *q == '\'')) {
			quote = *q;
			end = q + 1;
		} else if (shell && *q == '\\' && q[1]) {
			q++;
			end = q + 1;
		} else if (is_blank(*q)) {
			if (q[1] == ';' || q[1] == '#')
				break;
		} else {
			end = q + 1;
		}
	}
	if (end < s)
		end = s;
	*end = '\0';
	return s;
}

static char *trim(char *s)
{
	char *e;

	while (is_blank(*s))
		s++;
	e = s + strlen(s);
	while (e > s && is_blank(e[-1]))
		e--;
	*e = '\0';
	return s;
}

static void parse_line(struct parser *p, char *l, unsigned line)
{
	char *s = l, *eq, *key;

	/* No right trim here: cut_value() knows which trailing blanks are escaped. */
	while (is_blank(*s))
		s++;
	if (!*s || *s == ';' || *s == '#')
		return;

	if (*s == '[') {
		char *close = strchr(s, ']'), *rest, *name;
		int sec;

		if (!close) {
			perr(p, line, "malformed section header (expected [name])");
			p->section = SEC_UNKNOWN;
			return;
		}
		rest = close + 1;
		while (is_blank(*rest))
			rest++;
		if (*rest && *rest != ';' && *rest != '#') {
			perr(p, line, "unexpected text after section header: '%s'", rest);
			p->section = SEC_UNKNOWN;
			return;
		}
		*close = '\0';
		name = trim(s + 1);
		if (!*name) {
			perr(p, line, "malformed section header (empty name)");
			p->section = SEC_UNKNOWN;
			return;
		}
		sec = find_section(name);
		if (sec < 0) {
			unknown_section(p, line, name);
			p->section = SEC_UNKNOWN;
			return;
		}
		p->section = sec;
		if (!p->section_line[sec])
			p->section_line[sec] = line;
		return;
	}

	eq = strchr(s, '=');
	if (!eq) {
		perr(p, line, "malformed line (expected 'key = value', '[section]' or a comment)");
		return;
	}
	*eq = '\0';
	key = trim(s);
	if (!*key) {
		perr(p, line, "malformed line (missing key before '=')");
		return;
	}
	if (p->section == SEC_NONE) {
		perr(p, line,
		     "key '%s' is outside of any section (add a [section] header above it)", key);
		return;
	}
	if (p->section == SEC_UNKNOWN)
		return; /* the header was reported; its keys would only add noise */

	int id = find_key(p->section, key);
	if (id < 0) {
		unknown_key(p, line, key);
		return;
	}

	if (p->key_line[id]) {
		perr(p, line, "duplicate key '%s' in [%s] (first set at line %u)", key,
		     section_names[p->section], p->key_line[id]);
		return;
	}
	p->key_line[id] = line;

	enum cut_error err;
	const char *value = cut_value(eq + 1, keys[id].type == KT_COMMAND, &err);
	unsigned errors = p->errors;
	if (err == CUT_UNTERMINATED)
		perr(p, line, "unterminated quoted value for '%s' in [%s] (no closing \")", key,
		     section_names[p->section]);
	else if (err == CUT_TRAILING)
		perr(p, line, "unexpected text after the quoted value of '%s' in [%s]", key,
		     section_names[p->section]);
	else
		set_value(p, id, value, line);
	p->bad[id] = p->errors != errors;
}

static void parse_text(struct parser *p, const char *text)
{
	const char *s = text;
	unsigned line = 0;
	char l[CONFIG_MAX_LINE + 2];

	/* An editor's UTF-8 byte order mark is not part of the first line. */
	if (strncmp(s, "\xef\xbb\xbf", 3) == 0)
		s += 3;
	while (*s) {
		const char *eol = strchrnul(s, '\n');
		size_t len = (size_t)(eol - s);

		line++;
		if (len > 0 && s[len - 1] == '\r')
			len--;
		if (len > CONFIG_MAX_LINE) {
			perr(p, line, "line too long (%zu bytes, max %d)", len, CONFIG_MAX_LINE);
		} else {
			memcpy(l, s, len);
			l[len] = '\0';
			parse_line(p, l, line);
		}
		s = *eol ? eol + 1 : eol;
	}
}

/* The line to blame for a key: where it was set, else its section, else 1. */
static unsigned key_line(struct parser *p, int id)
{
	if (p->key_line[id])
		return p->key_line[id];
	if (p->section_line[keys[id].section])
		return p->section_line[keys[id].section];
	return 1;
}

static bool has_prefix_nocase(const char *s, const char *prefix)
{
	return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

static bool has_space(const char *s)
{
	for (; *s; s++)
		if (isspace((unsigned char)*s))
			return true;
	return false;
}

static bool valid_port(const char *s)
{
	uint64_t port;

	return parse_uint(s, 1, 65535, &port) == 0;
}

/* "host:port", "[v6]:port", or "" (endpoint disabled). */
static bool valid_listen(const char *s)
{
	const char *colon;

	if (!*s)
		return true;
	if (has_space(s))
		return false;
	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (!close || close == s + 1 || close[1] != ':' ||
		    !memchr(s + 1, ':', (size_t)(close - s - 1)))
			return false;
		return valid_port(close + 2);
	}
	colon = strchr(s, ':');
	if (!colon || colon == s || strchr(colon + 1, ':') || memchr(s, ']', (size_t)(colon - s)))
		return false;
	return valid_port(colon + 1);
}

static void check_missing(struct parser *p, int id)
{
	perr(p, key_line(p, id), "missing required key '%s' in [%s]", keys[id].name,
	     section_names[keys[id].section]);
}

static void check_broker(struct parser *p)
{
	struct config *c = p->c;
	const char *url = c->broker.url;
	bool url_ok = false;

	if (!p->key_line[K_BROKER_URL]) {
		check_missing(p, K_BROKER_URL);
	} else if (url && !p->bad[K_BROKER_URL]) {
		unsigned line = p->key_line[K_BROKER_URL];

		if (!*url)
			perr(p, line,
			     "empty value for 'url' in [broker] (expected an amqp:// or amqps:// "
			     "URL)");
		else if (!has_prefix_nocase(url, "amqp://") && !has_prefix_nocase(url, "amqps://"))
			perr(p, line,
			     "invalid url '%s' in [broker]: must start with amqp:// or amqps://",
			     url);
		else if (has_space(url))
			perr(p, line, "invalid url '%s' in [broker]: must not contain whitespace",
			     url);
		else
			url_ok = true;
	}

	/* TLS files with a plain URL: the operator believes in TLS that isn't. */
	if (url_ok && !has_prefix_nocase(url, "amqps://")) {
		static const int tls_keys[] = { K_BROKER_TLS_CA_FILE, K_BROKER_TLS_CERT_FILE,
						K_BROKER_TLS_KEY_FILE };
		for (size_t i = 0; i < ARRAY_SIZE(tls_keys); i++) {
			int id = tls_keys[i];
			if (*(char **)((char *)c + keys[id].offset))
				perr(p, p->key_line[id],
				     "'%s' is set but url in [broker] is not amqps:// (TLS "
				     "settings need an amqps:// URL)",
				     keys[id].name);
		}
	}
	if (c->broker.tls_cert_file && !c->broker.tls_key_file)
		perr(p, p->key_line[K_BROKER_TLS_CERT_FILE],
		     "'tls_cert_file' in [broker] needs 'tls_key_file' as well");
	if (c->broker.tls_key_file && !c->broker.tls_cert_file)
		perr(p, p->key_line[K_BROKER_TLS_KEY_FILE],
		     "'tls_key_file' in [broker] needs 'tls_cert_file' as well");
}

static void check_pipeline(struct parser *p)
{
	const char *q = p->c->pipeline.queue;
	unsigned line = p->key_line[K_PIPELINE_QUEUE];
	size_t len;

	if (!line) {
		check_missing(p, K_PIPELINE_QUEUE);
		return;
	}
	if (!q || p->bad[K_PIPELINE_QUEUE])
		return;
	len = strlen(q);
	if (len == 0) {
		perr(p, line, "empty value for 'queue' in [pipeline] (expected a queue name)");
		return;
	}
	if (len > QUEUE_NAME_MAX) {
		perr(p, line,
		     "queue name in [pipeline] is too long (%zu characters, max %d, so that "
		     "the derived .retry/.dlq names fit AMQP's 255)",
		     len, QUEUE_NAME_MAX);
		return;
	}
	for (const char *s = q; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("._:-", *s)) {
			perr(p, line,
			     "invalid queue name '%s' in [pipeline]: only letters, digits and "
			     ". _ : - are allowed",
			     q);
			return;
		}
	if (strncmp(q, "amq.", 4) == 0)
		perr(p, line,
		     "invalid queue name '%s' in [pipeline]: names starting with 'amq.' are "
		     "reserved by RabbitMQ",
		     q);
}

static void check_handler(struct parser *p)
{
	struct config *c = p->c;

	if (!p->key_line[K_HANDLER_TYPE]) {
		check_missing(p, K_HANDLER_TYPE);
		return;
	}
	if (p->bad[K_HANDLER_TYPE])
		return; /* http or exec unknown: their checks would only guess */
	if (c->handler.type == HANDLER_HTTP) {
		const char *url = c->handler.url;
		unsigned line = key_line(p, K_HANDLER_URL);

		if (p->bad[K_HANDLER_URL])
			return;
		if (!p->key_line[K_HANDLER_URL] || !url || !*url)
			perr(p, line, "[handler] type = http needs 'url' (http:// or https://)");
		else if ((!has_prefix_nocase(url, "http://") &&
			  !has_prefix_nocase(url, "https://")) ||
			 !*(strstr(url, "//") + 2))
			perr(p, line,
			     "invalid url '%s' in [handler]: must start with http:// or https:// "
			     "and name a host",
			     url);
		else if (has_space(url))
			perr(p, line, "invalid url '%s' in [handler]: must not contain whitespace",
			     url);
		return;
	}

	/* exec */
	const char *cmd = c->handler.command, *err;
	unsigned line = key_line(p, K_HANDLER_COMMAND);
	char **argv = NULL;
	int r;

	if (p->bad[K_HANDLER_COMMAND])
		return;
	if (!p->key_line[K_HANDLER_COMMAND] || !cmd) {
		perr(p, line,
		     "[handler] type = exec needs 'command' (an absolute path and its arguments)");
		return;
	}
	r = split_command(cmd, &argv, &err);
	if (r == -ENOMEM) {
		p->oom = true;
		return;
	}
	if (r < 0) {
		perr(p, line, "invalid command in [handler]: %s", err);
		return;
	}
	if (argv[0][0] != '/') {
		perr(p, line,
		     "invalid command in [handler]: '%s' must be an absolute path (no shell "
		     "and no PATH lookup is used)",
		     argv[0]);
		config_strv_free(argv);
		return;
	}
	c->handler.argv = argv;
}

static void check_metrics(struct parser *p)
{
	const char *l = p->c->metrics.listen;

	if (l && !p->bad[K_METRICS_LISTEN] && !valid_listen(l))
		perr(p, key_line(p, K_METRICS_LISTEN),
		     "invalid listen address '%s' in [metrics]: expected host:port, "
		     "[ipv6]:port (port 1-65535), or empty to disable the endpoint",
		     l);
}

/* config_load() only: the files the daemon will open must be readable now. */
static void check_readable(struct parser *p, int id, const char *path)
{
	int fd;
	struct stat st;

	if (!path || p->bad[id])
		return;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		perr(p, key_line(p, id), "cannot read %s %s: %s", keys[id].name, path,
		     strerror(errno));
		return;
	}
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
		perr(p, key_line(p, id), "cannot read %s %s: %s", keys[id].name, path,
		     strerror(EISDIR));
	close(fd);
}

/* Which files must be readable now: what connects to the broker always;
 * the taxonomy and the handler's program only for the daemon. */
enum check_files {
	CHECK_NO_FILES,
	CHECK_BROKER_FILES,
	CHECK_ALL_FILES,
};

static void check_files(struct parser *p, enum check_files which)
{
	struct config *c = p->c;

	if (which == CHECK_NO_FILES)
		return;
	check_readable(p, K_BROKER_PASSWORD_FILE, c->broker.password_file);
	check_readable(p, K_BROKER_TLS_CA_FILE, c->broker.tls_ca_file);
	check_readable(p, K_BROKER_TLS_CERT_FILE, c->broker.tls_cert_file);
	check_readable(p, K_BROKER_TLS_KEY_FILE, c->broker.tls_key_file);
	if (which != CHECK_ALL_FILES)
		return;
	check_readable(p, K_RETRY_TAXONOMY, c->retry.taxonomy);
	if (c->handler.type == HANDLER_EXEC && c->handler.argv &&
	    access(c->handler.argv[0], X_OK) < 0)
		perr(p, key_line(p, K_HANDLER_COMMAND), "cannot execute command %s: %s",
		     c->handler.argv[0], strerror(errno));
}

static struct config *config_new_defaults(void)
{
	struct config *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->broker.prefetch = 100;
	c->broker.heartbeat_usec = 30 * USEC_PER_SEC;
	c->broker.tls_verify_peer = true;
	c->broker.tls_verify_hostname = true;
	c->pipeline.queue_type = QUEUE_CLASSIC;
	c->pipeline.declare = true;
	c->pipeline.max_message_size = 16 * MIB;
	c->handler.type = HANDLER_HTTP;
	c->handler.timeout_usec = 30 * USEC_PER_SEC;
	c->handler.max_output = 64 * KIB;
	c->shutdown.drain_timeout_usec = 20 * USEC_PER_SEC;
	c->retry.taxonomy = strdup(DEFAULT_TAXONOMY);
	c->metrics.listen = strdup(DEFAULT_LISTEN);
	c->metrics.dlq_poll_interval_usec = 15 * USEC_PER_SEC;
	c->replay.block_schema_versions = calloc(1, sizeof(char *));
	if (!c->retry.taxonomy || !c->metrics.listen || !c->replay.block_schema_versions)
		return config_free(c);
	return c;
}

static int parse_into(struct parser *p, const char *text, size_t len, enum check_files which,
		      struct config **out)
{
	_cleanup_(config_freep) struct config *c = NULL;
	const char *slash;

	if (len > CONFIG_MAX_SIZE) {
		perr(p, 1, "file too large (%zu bytes, max 1 MiB)", len);
		return -EINVAL;
	}
	if (strlen(text) != len) {
		unsigned line = 1;
		for (const char *s = text; *s; s++)
			line += *s == '\n';
		perr(p, line, "file contains a NUL byte (not a text file?)");
		return -EINVAL;
	}

	c = p->c = config_new_defaults();
	if (!c)
		return -ENOMEM;
	if (p->name && !(c->path = strdup(p->name)))
		return -ENOMEM;
	slash = p->name ? strrchr(p->name, '/') : NULL;
	if (slash && !(p->dir = strndup(p->name, (size_t)(slash - p->name))))
		return -ENOMEM;

	parse_text(p, text);
	check_broker(p);
	check_pipeline(p);
	check_handler(p);
	check_metrics(p);
	check_files(p, which);

	if (p->oom)
		return -ENOMEM;
	if (p->errors > 0)
		return -EINVAL;
	*out = TAKE_PTR(c);
	return 0;
}

static int parse_full(const char *name, const char *text, size_t len, enum check_files which,
		      struct config **out, struct diag *diags)
{
	struct parser p = {
		.name = name,
		.diags = diags,
		.section = SEC_NONE,
	};
	int r = parse_into(&p, text, len, which, out);

	/* diag_add() turns a NULL name into "-" */
	flush_diags(&p);
	free(p.dir);
	return r;
}

int config_parse(const char *name, const char *text, struct config **out, struct diag *diags)
{
	if (!text || !out)
		return -EINVAL;
	return parse_full(name, text, strlen(text), CHECK_NO_FILES, out, diags);
}

static int load(const char *path, enum check_files which, struct config **out, struct diag *diags)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	int r;

	if (!path || !out)
		return -EINVAL;
	r = read_file_max(path, CONFIG_MAX_SIZE, &text, &len);
	if (r == -EFBIG) {
		if (diags)
			diag_add(diags, path, 1, "cannot read: file too large (max 1 MiB)");
		return r;
	}
	if (r < 0) {
		if (diags)
			diag_add(diags, path, 1, "cannot read: %s", strerror(-r));
		return r;
	}
	return parse_full(path, text, len, which, out, diags);
}

int config_load(const char *path, struct config **out, struct diag *diags)
{
	return load(path, CHECK_ALL_FILES, out, diags);
}

int config_load_for_broker(const char *path, struct config **out, struct diag *diags)
{
	return load(path, CHECK_BROKER_FILES, out, diags);
}

/* The authority of [broker] url: what lies between "://" and the path. */
static const char *url_authority(const char *url, size_t *len)
{
	const char *a = strstr(url, "://");

	if (!a) {
		*len = 0;
		return url;
	}
	a += 3;
	*len = strcspn(a, "/?#");
	return a;
}

bool config_url_has_password(const struct config *c)
{
	size_t len;
	const char *a = url_authority(c->broker.url, &len);
	const char *at = memrchr(a, '@', len), *colon;

	if (!at)
		return false;
	colon = memchr(a, ':', (size_t)(at - a));
	return colon && colon + 1 < at;
}

void config_broker_endpoint(const struct config *c, char *buf, size_t size)
{
	size_t len;
	const char *a = url_authority(c->broker.url, &len);
	const char *at = memrchr(a, '@', len);
	const char *host, *end = a + len, *port = NULL;

	host = at ? at + 1 : a;
	if (*host == '[') { /* [ipv6]:port */
		const char *close = memchr(host, ']', (size_t)(end - host));
		if (close && close + 1 < end && close[1] == ':')
			port = close + 2;
	} else {
		const char *colon = memchr(host, ':', (size_t)(end - host));
		if (colon)
			port = colon + 1;
	}
	if (port && port < end) {
		snprintf(buf, size, "%.*s", (int)(end - host), host);
		return;
	}
	int host_len = (int)(end - host - (port ? 1 : 0));
	snprintf(buf, size, "%.*s:%d", host_len ? host_len : 9, host_len ? host : "localhost",
		 has_prefix_nocase(c->broker.url, "amqps://") ? 5671 : 5672);
}

int config_check_secrets(const struct config *c, char *buf, size_t size)
{
	struct stat st;

	size_t len;
	const char *a = url_authority(c->broker.url, &len);

	/* RabbitMQ's default account only logs in from localhost and its
	 * password is public: nothing to protect. */
	if (len > 12 && strncmp(a, "guest:guest@", 12) == 0)
		return 0;
	if (!c->path || !config_url_has_password(c) || stat(c->path, &st) < 0 ||
	    !(st.st_mode & S_IROTH))
		return 0;
	snprintf(buf, size,
		 "%s holds a password in [broker] url and is readable by every user (mode %04o); "
		 "move the password to password_file (a systemd credential) or chmod o-r %s",
		 c->path, (unsigned)(st.st_mode & 07777), c->path);
	return 1;
}

static bool str_differs(const char *a, const char *b)
{
	return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

const char *config_restart_key_changed(const struct config *a, const struct config *b)
{
	const struct {
		bool changed;
		const char *name;
	} keys_[] = {
		{ str_differs(a->broker.url, b->broker.url), "[broker] url" },
		{ str_differs(a->broker.password_file, b->broker.password_file),
		  "[broker] password_file" },
		{ a->broker.prefetch != b->broker.prefetch, "[broker] prefetch" },
		{ a->broker.heartbeat_usec != b->broker.heartbeat_usec, "[broker] heartbeat" },
		{ str_differs(a->broker.tls_ca_file, b->broker.tls_ca_file),
		  "[broker] tls_ca_file" },
		{ str_differs(a->broker.tls_cert_file, b->broker.tls_cert_file),
		  "[broker] tls_cert_file" },
		{ str_differs(a->broker.tls_key_file, b->broker.tls_key_file),
		  "[broker] tls_key_file" },
		{ a->broker.tls_verify_peer != b->broker.tls_verify_peer,
		  "[broker] tls_verify_peer" },
		{ a->broker.tls_verify_hostname != b->broker.tls_verify_hostname,
		  "[broker] tls_verify_hostname" },
		{ str_differs(a->pipeline.queue, b->pipeline.queue), "[pipeline] queue" },
		{ a->pipeline.queue_type != b->pipeline.queue_type, "[pipeline] queue_type" },
		{ a->pipeline.declare != b->pipeline.declare, "[pipeline] declare" },
		{ str_differs(a->metrics.listen, b->metrics.listen), "[metrics] listen" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(keys_); i++)
		if (keys_[i].changed)
			return keys_[i].name;
	return NULL;
}
