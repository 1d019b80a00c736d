/*
 * config: loads dlqd.conf into a struct config. ini.c reads the syntax,
 * config_keys.c turns each value into its field; this file ties them
 * together, runs the checks that relate several keys (what a handler type
 * requires, TLS files with an amqps:// URL, the files the daemon will open),
 * and answers questions about a loaded config.
 *
 * Loading never stops early: each problem becomes one "FILE:LINE: message"
 * diagnostic and parsing goes on, so `dlqd --check-config` lists every mistake
 * in one run. Any diagnostic rejects the whole config. This module is pure: it
 * never logs and only touches the file system in config_load().
 */
#include "common/config.h"

#include "common/amqpconn.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/amqpconn.h"
#include "common/ini.h"
#include "common/listen_addr.h"
#include "common/shellwords.h"
#include "common/strv.h"
#include "config_keys.h"

#define CONFIG_MAX_SIZE (1024 * 1024)
#define QUEUE_NAME_MAX	200

/* A diagnostic waiting to be sorted into file order. */
struct config_pending {
	unsigned line;
	size_t seq; /* keeps the order of equal lines: qsort is not stable */
	char *msg;
};

static void config_verror(struct config_parser *p, unsigned line, const char *fmt, va_list ap)
	_printf_(3, 0);

/*
 * Semantic checks run after the whole file is read; collecting first and
 * sorting by line gives the operator one list in file order.
 */
static void config_verror(struct config_parser *p, unsigned line, const char *fmt, va_list ap)
{
	struct config_pending *n;
	char *msg = NULL;

	p->errors++;
	if (!p->diags)
		return;
	if (vasprintf(&msg, fmt, ap) < 0) {
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
	p->pending[p->n_pending] = (struct config_pending){ line, p->n_pending, msg };
	p->n_pending++;
}

void config_error(struct config_parser *p, unsigned line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	config_verror(p, line, fmt, ap);
	va_end(ap);
}

static int pending_cmp(const void *a, const void *b)
{
	const struct config_pending *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void flush_diags(struct config_parser *p)
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
	strv_free(c->handler.argv);
	strv_free(c->broker.urls);
	free(c->retry.taxonomy);
	free(c->metrics.listen);
	strv_free(c->replay.block_schema_versions);
	free(c);
	return NULL;
}

void config_freep(struct config **c)
{
	*c = config_free(*c);
}

static bool on_section(void *userdata, const char *name, unsigned line)
{
	struct config_parser *p = userdata;
	int sec = config_keys_find_section(name);

	if (sec < 0) {
		config_keys_unknown_section(p, line, name);
		return false;
	}
	p->section = sec;
	if (!p->section_line[sec])
		p->section_line[sec] = line;
	return true;
}

static int on_key(void *userdata, const char *key, unsigned line)
{
	struct config_parser *p = userdata;
	int id = config_keys_find(p->section, key);

	p->key = -1;
	if (id < 0) {
		config_keys_unknown(p, line, key);
		return -1;
	}
	if (p->key_line[id]) {
		config_error(p, line, "duplicate key '%s' in [%s] (first set at line %u)", key,
			     config_section_names[p->section], p->key_line[id]);
		return -1;
	}
	p->key_line[id] = line;
	p->key = id;
	return config_keys[id].type == KT_COMMAND ? INI_VALUE_SHELL : INI_VALUE_PLAIN;
}

static void on_value(void *userdata, const char *value, unsigned line)
{
	struct config_parser *p = userdata;
	unsigned errors = p->errors;

	if (value)
		config_keys_set(p, p->key, value, line);
	p->bad[p->key] = !value || p->errors != errors;
}

static void on_error(void *userdata, unsigned line, const char *fmt, ...) _printf_(3, 4);

static void on_error(void *userdata, unsigned line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	config_verror(userdata, line, fmt, ap);
	va_end(ap);
}

static const struct ini_handler ini_handler = {
	.section = on_section,
	.key = on_key,
	.value = on_value,
	.error = on_error,
};

/* The line to blame for a key: where it was set, else its section, else 1. */
static unsigned key_line(struct config_parser *p, int id)
{
	if (p->key_line[id])
		return p->key_line[id];
	if (p->section_line[config_keys[id].section])
		return p->section_line[config_keys[id].section];
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

static void check_missing(struct config_parser *p, int id)
{
	config_error(p, key_line(p, id), "missing required key '%s' in [%s]", config_keys[id].name,
		     config_section_names[config_keys[id].section]);
}

/* One URL of [broker] url; why it is refused, or NULL. librabbitmq's parser
 * is the one that connects: what it refuses must fail --check-config, not
 * the start. */
static const char *broker_url_problem(const char *url)
{
	if (!has_prefix_nocase(url, "amqp://") && !has_prefix_nocase(url, "amqps://"))
		return "must start with amqp:// or amqps://";
	if (amqpconn_url_endpoint(url, NULL, 0) < 0)
		return "librabbitmq cannot parse it "
		       "(expected amqp[s]://[user[:password]@]host[:port][/vhost])";
	return NULL;
}

/* [broker] url: the nodes of one cluster, separated by whitespace, into
 * c->broker.urls. Each is checked on its own, and named when refused. */
static bool split_broker_urls(struct config_parser *p, const char *url, unsigned line)
{
	struct config *c = p->c;
	size_t n = 0;
	bool ok = true;

	for (const char *s = url;;) {
		s += strspn(s, " \t");
		if (!*s)
			break;
		size_t len = strcspn(s, " \t");
		char *one = strndup(s, len);
		const char *why;

		s += len;
		if (!one || strv_push(&c->broker.urls, &n, one) < 0) {
			config_error(p, line, "out of memory");
			return false;
		}
		if (n > CONFIG_BROKER_URLS_MAX) {
			config_error(p, line, "too many URLs in [broker] url: at most %d",
				     CONFIG_BROKER_URLS_MAX);
			return false;
		}
		if ((why = broker_url_problem(one))) {
			if (n > 1 || *s)
				config_error(p, line, "invalid url #%zu '%s' in [broker]: %s", n,
					     one, why);
			else
				config_error(p, line, "invalid url '%s' in [broker]: %s", one, why);
			ok = false;
			continue;
		}
		for (size_t i = 0; i + 1 < n; i++)
			if (strcmp(c->broker.urls[i], one) == 0) {
				config_error(p, line, "url '%s' is listed twice in [broker] url",
					     one);
				ok = false;
			}
	}
	if (n == 0) {
		config_error(p, line,
			     "empty value for 'url' in [broker] (expected an amqp:// or amqps:// "
			     "URL, or several separated by spaces)");
		return false;
	}
	return ok;
}

static bool any_url_plain(char *const *urls)
{
	for (size_t i = 0; urls && urls[i]; i++)
		if (!has_prefix_nocase(urls[i], "amqps://"))
			return true;
	return false;
}

static void check_broker(struct config_parser *p)
{
	struct config *c = p->c;
	const char *url = c->broker.url;
	bool url_ok = false;

	if (!p->key_line[K_BROKER_URL])
		check_missing(p, K_BROKER_URL);
	else if (url && !p->bad[K_BROKER_URL])
		url_ok = split_broker_urls(p, url, p->key_line[K_BROKER_URL]);

	/* TLS files with a plain URL: the operator believes in TLS that isn't. */
	if (url_ok && any_url_plain(c->broker.urls)) {
		static const int tls_keys[] = { K_BROKER_TLS_CA_FILE, K_BROKER_TLS_CERT_FILE,
						K_BROKER_TLS_KEY_FILE };
		for (size_t i = 0; i < ARRAY_SIZE(tls_keys); i++) {
			int id = tls_keys[i];
			if (*(char **)((char *)c + config_keys[id].offset))
				config_error(
					p, p->key_line[id],
					"'%s' is set but a url in [broker] is not amqps:// (TLS "
					"settings need amqps:// URLs)",
					config_keys[id].name);
		}
	}
	if (c->broker.tls_cert_file && !c->broker.tls_key_file)
		config_error(p, p->key_line[K_BROKER_TLS_CERT_FILE],
			     "'tls_cert_file' in [broker] needs 'tls_key_file' as well");
	if (c->broker.tls_key_file && !c->broker.tls_cert_file)
		config_error(p, p->key_line[K_BROKER_TLS_KEY_FILE],
			     "'tls_key_file' in [broker] needs 'tls_cert_file' as well");
}

static void check_pipeline(struct config_parser *p)
{
	const char *q = p->c->pipeline.queue;
	unsigned line = p->key_line[K_PIPELINE_QUEUE];
	size_t len;

	/* A body up to max_message_size is read whole: the bound must hold one.
	 * Unset, it follows a max_message_size above its default. */
	if (!p->key_line[K_PIPELINE_MAX_BODY_MEMORY])
		p->c->pipeline.max_body_memory =
			MAX(p->c->pipeline.max_body_memory, p->c->pipeline.max_message_size);
	else if (p->c->pipeline.max_body_memory < p->c->pipeline.max_message_size &&
		 !p->bad[K_PIPELINE_MAX_BODY_MEMORY] && !p->bad[K_PIPELINE_MAX_MESSAGE_SIZE])
		config_error(p, p->key_line[K_PIPELINE_MAX_BODY_MEMORY],
			     "max_body_memory in [pipeline] (%" PRIu64
			     " bytes) must be at least max_message_size (%" PRIu64 " bytes)",
			     p->c->pipeline.max_body_memory, p->c->pipeline.max_message_size);
	if (!line) {
		check_missing(p, K_PIPELINE_QUEUE);
		return;
	}
	if (!q || p->bad[K_PIPELINE_QUEUE])
		return;
	len = strlen(q);
	if (len == 0) {
		config_error(p, line,
			     "empty value for 'queue' in [pipeline] (expected a queue name)");
		return;
	}
	if (len > QUEUE_NAME_MAX) {
		config_error(
			p, line,
			"queue name in [pipeline] is too long (%zu characters, max %d, so that "
			"the derived .retry/.dlq names fit AMQP's 255)",
			len, QUEUE_NAME_MAX);
		return;
	}
	for (const char *s = q; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("._:-", *s)) {
			config_error(
				p, line,
				"invalid queue name '%s' in [pipeline]: only letters, digits and "
				". _ : - are allowed",
				q);
			return;
		}
	if (strncmp(q, "amq.", 4) == 0)
		config_error(
			p, line,
			"invalid queue name '%s' in [pipeline]: names starting with 'amq.' are "
			"reserved by RabbitMQ",
			q);
}

static void check_handler(struct config_parser *p)
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
			config_error(p, line,
				     "[handler] type = http needs 'url' (http:// or https://)");
		else if ((!has_prefix_nocase(url, "http://") &&
			  !has_prefix_nocase(url, "https://")) ||
			 !*(strstr(url, "//") + 2))
			config_error(p, line,
				     "invalid url '%s' in [handler]: must start with http:// or "
				     "https:// "
				     "and name a host",
				     url);
		else if (has_space(url))
			config_error(p, line,
				     "invalid url '%s' in [handler]: must not contain whitespace",
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
		config_error(p, line,
			     "[handler] type = exec needs 'command' (an absolute path and its "
			     "arguments)");
		return;
	}
	r = shellwords_split(cmd, &argv, &err);
	if (r == -ENOMEM) {
		p->oom = true;
		return;
	}
	if (r < 0) {
		config_error(p, line, "invalid command in [handler]: %s", err);
		return;
	}
	if (argv[0][0] != '/') {
		config_error(
			p, line,
			"invalid command in [handler]: '%s' must be an absolute path (no shell "
			"and no PATH lookup is used)",
			argv[0]);
		strv_free(argv);
		return;
	}
	c->handler.argv = argv;
}

/* The cap of the breaker's pauses cannot be shorter than the first one. */
static void check_breaker(struct config_parser *p)
{
	const struct config *c = p->c;

	if (p->bad[K_BREAKER_OPEN_FOR] || p->bad[K_BREAKER_MAX_OPEN])
		return;
	if (c->breaker.max_open_usec < c->breaker.open_for_usec)
		config_error(p,
			     key_line(p, p->key_line[K_BREAKER_MAX_OPEN] ? K_BREAKER_MAX_OPEN
									 : K_BREAKER_OPEN_FOR),
			     "'max_open' in [breaker] must be at least 'open_for' (the first pause "
			     "is doubled up to max_open)");
}

static void check_metrics(struct config_parser *p)
{
	const char *l = p->c->metrics.listen;

	struct listen_addr a;

	/* The server also takes port 0 (any free port), which an operator
	 * could not find: the config asks for a real one. */
	if (l && *l && !p->bad[K_METRICS_LISTEN] && (listen_addr_parse(l, &a) < 0 || a.port == 0))
		config_error(p, key_line(p, K_METRICS_LISTEN),
			     "invalid listen address '%s' in [metrics]: expected host:port, "
			     "[ipv6]:port (port 1-65535), or empty to disable the endpoint",
			     l);
}

/* config_load() only: the files the daemon will open must be readable now. */
static void check_readable(struct config_parser *p, int id, const char *path)
{
	int fd;
	struct stat st;

	if (!path || p->bad[id])
		return;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		config_error(p, key_line(p, id), "cannot read %s %s: %s", config_keys[id].name,
			     path, strerror(errno));
		return;
	}
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
		config_error(p, key_line(p, id), "cannot read %s %s: %s", config_keys[id].name,
			     path, strerror(EISDIR));
	close(fd);
}

/* Which files must be readable now: what connects to the broker always;
 * the taxonomy and the handler's program only for the daemon. */
enum check_files {
	CHECK_NO_FILES,
	CHECK_BROKER_FILES,
	CHECK_ALL_FILES,
};

static void check_files(struct config_parser *p, enum check_files which)
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
		config_error(p, key_line(p, K_HANDLER_COMMAND), "cannot execute command %s: %s",
			     c->handler.argv[0], strerror(errno));
}

static int parse_into(struct config_parser *p, const char *text, size_t len, enum check_files which,
		      struct config **out)
{
	_cleanup_(config_freep) struct config *c = NULL;
	const char *slash;
	int r;

	if (len > CONFIG_MAX_SIZE) {
		config_error(p, 1, "file too large (%zu bytes, max 1 MiB)", len);
		return -EINVAL;
	}

	c = p->c = config_keys_defaults();
	if (!c)
		return -ENOMEM;
	if (p->name && !(c->path = strdup(p->name)))
		return -ENOMEM;
	slash = p->name ? strrchr(p->name, '/') : NULL;
	if (slash && !(p->dir = strndup(p->name, (size_t)(slash - p->name))))
		return -ENOMEM;

	r = ini_parse(text, len, &ini_handler, p);
	if (r < 0)
		return r;
	check_broker(p);
	check_pipeline(p);
	check_handler(p);
	check_metrics(p);
	check_breaker(p);
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
	struct config_parser p = {
		.name = name,
		.diags = diags,
		.key = -1,
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

/* config_has_broker_url() reads only [broker] url and judges nothing else. */
struct url_probe {
	int section;
	bool in_url;
	bool found;
};

static bool probe_section(void *userdata, const char *name, unsigned line)
{
	struct url_probe *u = userdata;

	u->section = config_keys_find_section(name);
	return u->section >= 0;
}

static int probe_key(void *userdata, const char *key, unsigned line)
{
	struct url_probe *u = userdata;

	u->in_url = config_keys_find(u->section, key) == K_BROKER_URL;
	return u->in_url ? INI_VALUE_PLAIN : -1;
}

static void probe_value(void *userdata, const char *value, unsigned line)
{
	struct url_probe *u = userdata;

	if (u->in_url && value && *value)
		u->found = true;
}

static void probe_error(void *userdata, unsigned line, const char *fmt, ...)
{
}

int config_has_broker_url(const char *path)
{
	static const struct ini_handler probe = {
		.section = probe_section,
		.key = probe_key,
		.value = probe_value,
		.error = probe_error,
	};
	struct url_probe u = { .section = -1 };
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	int r;

	r = read_file_max(path, CONFIG_MAX_SIZE, &text, &len);
	if (r < 0)
		return r;
	r = ini_parse(text, len, &probe, &u);
	if (r < 0)
		return r;
	return u.found;
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

static bool url_has_password(const char *url)
{
	size_t len;
	const char *a = url_authority(url, &len);
	const char *at = memrchr(a, '@', len), *colon;

	if (!at)
		return false;
	colon = memchr(a, ':', (size_t)(at - a));
	return colon && colon + 1 < at;
}

/* RabbitMQ's default account only logs in from localhost and its password
 * is public: nothing to protect. */
static bool url_has_secret(const char *url)
{
	size_t len;
	const char *a = url_authority(url, &len);

	return url_has_password(url) && !(len > 12 && strncmp(a, "guest:guest@", 12) == 0);
}

bool config_url_has_password(const struct config *c)
{
	for (size_t i = 0; c->broker.urls && c->broker.urls[i]; i++)
		if (url_has_password(c->broker.urls[i]))
			return true;
	return false;
}

int config_check_secrets(const struct config *c, char *buf, size_t size)
{
	struct stat st;
	bool secret = false;

	for (size_t i = 0; c->broker.urls && c->broker.urls[i]; i++)
		secret = secret || url_has_secret(c->broker.urls[i]);
	if (!c->path || !secret || stat(c->path, &st) < 0 || !(st.st_mode & S_IROTH))
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
