/*
 * config_keys: the key table of dlqd.conf (design.md Part 1 and the keys of
 * our own in docs/config.md) and everything that concerns one key alone: its
 * default, how its value is written (number, duration, size, path, list...),
 * the allowed range named in the diagnostic, and a suggestion when a key or
 * section name is misspelt. Checks that relate several keys, and the load
 * itself, are config.c's.
 */
#include "config_keys.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strv.h"

#define DEFAULT_LISTEN "127.0.0.1:9464"

#define KIB	  UINT64_C(1024)
#define MIB	  (KIB * 1024)
#define GIB	  (MIB * 1024)
#define HOUR_USEC (UINT64_C(3600) * USEC_PER_SEC)

const char *const config_section_names[_SEC_MAX] = {
	[SEC_BROKER] = "broker", [SEC_PIPELINE] = "pipeline", [SEC_HANDLER] = "handler",
	[SEC_RETRY] = "retry",	 [SEC_METRICS] = "metrics",   [SEC_SHUTDOWN] = "shutdown",
	[SEC_REPLAY] = "replay", [SEC_BREAKER] = "breaker",
};

#define KEY(id, sec, n, t, field, lo, hi, txt)             \
	[id] = { .section = sec,                           \
		 .name = n,                                \
		 .type = t,                                \
		 .offset = offsetof(struct config, field), \
		 .min = lo,                                \
		 .max = hi,                                \
		 .range = txt }

const struct config_key config_keys[_K_MAX] = {
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
	KEY(K_PIPELINE_MAX_REDELIVERIES, SEC_PIPELINE, "max_redeliveries", KT_UINT32,
	    pipeline.max_redeliveries, 0, 1000, "0 (off) to 1000"),
	KEY(K_PIPELINE_MAX_BODY_MEMORY, SEC_PIPELINE, "max_body_memory", KT_SIZE,
	    pipeline.max_body_memory, KIB, 64 * GIB, NULL),
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
	KEY(K_RETRY_BUDGET_RATIO, SEC_RETRY, "budget_ratio", KT_DOUBLE, retry.budget_ratio, 0, 1000,
	    "0 to 1000"),
	KEY(K_RETRY_BUDGET_MIN_PER_SECOND, SEC_RETRY, "budget_min_per_second", KT_DOUBLE,
	    retry.budget_min_per_second, 0, 1000000, "0 (no budget) to 1000000"),
	KEY(K_RETRY_BUDGET_WINDOW, SEC_RETRY, "budget_window", KT_DURATION,
	    retry.budget_window_usec, 0, HOUR_USEC, "0 (no budget), or 100ms to 1h"),
	KEY(K_BREAKER_FAILURE_RATIO, SEC_BREAKER, "failure_ratio", KT_DOUBLE, breaker.failure_ratio,
	    0, 1, "more than 0, at most 1"),
	KEY(K_BREAKER_MIN_CALLS, SEC_BREAKER, "min_calls", KT_UINT32, breaker.min_calls, 1, 1000000,
	    NULL),
	KEY(K_BREAKER_WINDOW, SEC_BREAKER, "window", KT_DURATION, breaker.window_usec, 0, HOUR_USEC,
	    "0 (no breaker), or 100ms to 1h"),
	KEY(K_BREAKER_OPEN_FOR, SEC_BREAKER, "open_for", KT_DURATION, breaker.open_for_usec,
	    100 * USEC_PER_MSEC, HOUR_USEC, NULL),
	KEY(K_BREAKER_MAX_OPEN, SEC_BREAKER, "max_open", KT_DURATION, breaker.max_open_usec,
	    100 * USEC_PER_MSEC, 24 * HOUR_USEC, NULL),
};

struct config *config_keys_defaults(void)
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
	c->pipeline.max_redeliveries = 3;
	c->pipeline.max_body_memory = 256 * MIB;
	c->handler.type = HANDLER_HTTP;
	c->handler.timeout_usec = 30 * USEC_PER_SEC;
	c->handler.max_output = 64 * KIB;
	c->shutdown.drain_timeout_usec = 20 * USEC_PER_SEC;
	c->retry.taxonomy = strdup(CONFIG_DEFAULT_TAXONOMY);
	c->metrics.listen = strdup(DEFAULT_LISTEN);
	c->metrics.dlq_poll_interval_usec = 15 * USEC_PER_SEC;
	c->retry.budget_ratio = 0.2;
	c->retry.budget_min_per_second = 10;
	c->retry.budget_window_usec = 10 * USEC_PER_SEC;
	c->breaker.failure_ratio = 0.5;
	c->breaker.min_calls = 20;
	c->breaker.window_usec = 10 * USEC_PER_SEC;
	c->breaker.open_for_usec = 5 * USEC_PER_SEC;
	c->breaker.max_open_usec = 5 * 60 * USEC_PER_SEC;
	c->replay.block_schema_versions = calloc(1, sizeof(char *));
	if (!c->retry.taxonomy || !c->metrics.listen || !c->replay.block_schema_versions)
		return config_free(c);
	return c;
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

int config_keys_find_section(const char *name)
{
	for (int i = 0; i < _SEC_MAX; i++)
		if (strcmp(config_section_names[i], name) == 0)
			return i;
	return -1;
}

int config_keys_find(int section, const char *name)
{
	for (int i = 0; i < _K_MAX; i++)
		if ((int)config_keys[i].section == section &&
		    strcmp(config_keys[i].name, name) == 0)
			return i;
	return -1;
}

void config_keys_unknown(struct config_parser *p, unsigned line, const char *key)
{
	const char *sec = config_section_names[p->section];
	size_t best_d = SIZE_MAX;
	int best = -1;

	for (int i = 0; i < _K_MAX; i++) {
		size_t d = edit_distance(key, config_keys[i].name);
		if ((int)config_keys[i].section == p->section && d < best_d &&
		    is_close(key, config_keys[i].name)) {
			best = i;
			best_d = d;
		}
	}
	if (best >= 0) {
		config_error(p, line, "unknown key '%s' in [%s] (did you mean '%s'?)", key, sec,
			     config_keys[best].name);
		return;
	}
	for (int i = 0; i < _K_MAX; i++)
		if (strcmp(config_keys[i].name, key) == 0) {
			config_error(p, line, "unknown key '%s' in [%s] (it belongs in [%s])", key,
				     sec, config_section_names[config_keys[i].section]);
			return;
		}
	config_error(p, line, "unknown key '%s' in [%s]", key, sec);
}

void config_keys_unknown_section(struct config_parser *p, unsigned line, const char *name)
{
	for (int i = 0; i < _SEC_MAX; i++)
		if (is_close(name, config_section_names[i])) {
			config_error(p, line, "unknown section [%s] (did you mean [%s]?)", name,
				     config_section_names[i]);
			return;
		}
	config_error(p, line,
		     "unknown section [%s] (known: broker, pipeline, handler, retry, metrics, "
		     "shutdown, replay, breaker)",
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

static const char *range_text(const struct config_key *k, char *buf, size_t n)
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

static char *dup_or_oom(struct config_parser *p, const char *s)
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
static char *resolve_path(struct config_parser *p, int id, const char *v)
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

/* The names of the values of the two enum keys, in enum order. */
static const char *const queue_type_names[] = {
	[QUEUE_CLASSIC] = "classic",
	[QUEUE_QUORUM] = "quorum",
};
static const char *const handler_type_names[] = {
	[HANDLER_HTTP] = "http",
	[HANDLER_EXEC] = "exec",
};
_Static_assert(ARRAY_SIZE(queue_type_names) == 2 && ARRAY_SIZE(handler_type_names) == 2,
	       "config_keys_set() reads two names per enum key");

/*
 * Parses the value of a number, duration or size key and checks it against
 * the key's bounds. Reports and returns false when it is not usable.
 */
static bool parse_number(struct config_parser *p, const struct config_key *k, const char *v,
			 unsigned line, uint64_t *out)
{
	const char *sec = config_section_names[k->section];
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
			config_error(
				p, line,
				"invalid duration '%s' for '%s' in [%s]: expected a number with "
				"a unit (us, ms, s, m, h, d) like 250ms, 30s or 5m (allowed: %s)",
				v, k->name, sec, range_text(k, range, sizeof(range)));
		else if (k->type == KT_SIZE)
			config_error(
				p, line,
				"invalid size '%s' for '%s' in [%s]: expected bytes or a number "
				"with a unit (KiB, MiB, GiB, KB, MB, GB) like 64KiB (allowed: %s)",
				v, k->name, sec, range_text(k, range, sizeof(range)));
		else
			config_error(
				p, line,
				"invalid number '%s' for '%s' in [%s]: expected an integer from %s",
				v, k->name, sec, range_text(k, range, sizeof(range)));
		return false;
	}
	if (r < 0 || u < k->min || u > k->max) {
		config_error(p, line, "value '%s' for '%s' in [%s] is out of range (allowed: %s)",
			     v, k->name, sec, range_text(k, range, sizeof(range)));
		return false;
	}
	*out = u;
	return true;
}

/*
 * A decimal number ("0.5", "10", "1e-3") within the key's whole-number
 * bounds; NaN, infinities and trailing text are refused. failure_ratio must
 * be more than 0: at 0 the first tripping failure would open the breaker.
 */
static bool parse_double(struct config_parser *p, int id, const char *v, unsigned line, double *out)
{
	const struct config_key *k = &config_keys[id];
	const char *sec = config_section_names[k->section];
	char range[96], *end;
	double d;

	errno = 0;
	d = *v && !isspace((unsigned char)*v) ? strtod(v, &end) : 0;
	if (!*v || isspace((unsigned char)*v) || *end || errno == ERANGE || !isfinite(d) ||
	    strpbrk(v, "xXnN")) {
		config_error(p, line,
			     "invalid number '%s' for '%s' in [%s]: expected a decimal number "
			     "like 0.5 (allowed: %s)",
			     v, k->name, sec, range_text(k, range, sizeof(range)));
		return false;
	}
	if (d < (double)k->min || d > (double)k->max ||
	    (id == K_BREAKER_FAILURE_RATIO && !(d > 0))) {
		config_error(p, line, "value '%s' for '%s' in [%s] is out of range (allowed: %s)",
			     v, k->name, sec, range_text(k, range, sizeof(range)));
		return false;
	}
	*out = d;
	return true;
}

void config_keys_set(struct config_parser *p, int id, const char *v, unsigned line)
{
	const struct config_key *k = &config_keys[id];
	const char *sec = config_section_names[k->section];
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
				config_error(
					p, line,
					"empty value for 'taxonomy' in [retry] (remove the line to "
					"use the default %s)",
					CONFIG_DEFAULT_TAXONOMY);
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
			config_error(
				p, line,
				"value '%s' for 'heartbeat' in [broker] is not a whole number of "
				"seconds (AMQP heartbeats are negotiated in seconds)",
				v);
			return;
		}
		/* Below 100 ms the breaker's and the budget's buckets (a
		 * twentieth each) would be finer than the loop's timers. */
		if ((id == K_BREAKER_WINDOW || id == K_RETRY_BUDGET_WINDOW) && u > 0 &&
		    u < 100 * USEC_PER_MSEC) {
			config_error(p, line,
				     "value '%s' for '%s' in [%s] is out of range (allowed: %s)", v,
				     k->name, sec, k->range);
			return;
		}
		*(uint64_t *)field = u;
		return;
	case KT_SIZE:
		if (parse_number(p, k, v, line, &u))
			*(uint64_t *)field = u;
		return;
	case KT_DOUBLE: {
		double d;
		if (parse_double(p, id, v, line, &d))
			*(double *)field = d;
		return;
	}
	case KT_BOOL:
		if (parse_bool(v, &b) < 0) {
			config_error(
				p, line,
				"invalid boolean '%s' for '%s' in [%s]: expected true or false "
				"(or yes/no, on/off, 1/0)",
				v, k->name, sec);
			return;
		}
		*(bool *)field = b;
		return;
	case KT_QUEUE_TYPE:
	case KT_HANDLER_TYPE: {
		const char *const *names =
			k->type == KT_QUEUE_TYPE ? queue_type_names : handler_type_names;

		for (unsigned i = 0; i < 2; i++) {
			if (strcasecmp(v, names[i]) != 0)
				continue;
			if (k->type == KT_QUEUE_TYPE)
				p->c->pipeline.queue_type = (enum queue_type)i;
			else
				p->c->handler.type = (enum handler_type)i;
			return;
		}
		config_error(p, line, "invalid %s '%s' in [%s]: expected %s or %s", k->name, v, sec,
			     names[0], names[1]);
		return;
	}
	case KT_LIST: {
		char **list = NULL;
		if (parse_list(v, &list) < 0) {
			p->oom = true;
			return;
		}
		strv_free(*(char ***)field);
		*(char ***)field = list;
		return;
	}
	}
}
