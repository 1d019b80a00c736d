/*
 * test_config: dlqd.conf as a whole, through config_parse() and
 * config_load(): every key, every diagnostic kind (with exact
 * "FILE:LINE: message" text, INI syntax errors included), config_load's file
 * checks, and the shipped config/dlqd.conf. The INI reader and the argv split
 * on their own are test_ini.c's and test_shellwords.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/config.h"

/* The smallest valid config: everything else takes its default. */
#define MINIMAL                                         \
	"[broker]\n"                                    \
	"url = amqp://guest:guest@127.0.0.1:5672/%2f\n" \
	"[pipeline]\n"                                  \
	"queue = jobs\n"                                \
	"[handler]\n"                                   \
	"type = http\n"                                 \
	"url = http://127.0.0.1:8080/jobs\n"

static char *source_path(const char *rel)
{
	const char *dir = getenv("DLQD_SOURCE_DIR");
	char *p = NULL;

	if (dir && *dir) {
		assert_true(asprintf(&p, "%s/%s", dir, rel) > 0);
		return p;
	}
	/* __FILE__ is .../tests/unit/test_config.c */
	const char *f = __FILE__, *s = strstr(f, "tests/unit/test_config.c");
	assert_non_null(s);
	assert_true(asprintf(&p, "%.*s%s", (int)(s - f), f, rel) > 0);
	return p;
}

static char *data_path(const char *rel)
{
	const char *dir = getenv("DLQD_TEST_DATA");
	char *p = NULL, *r;

	if (dir && *dir) {
		assert_true(asprintf(&p, "%s/%s", dir, rel) > 0);
		return p;
	}
	assert_true(asprintf(&p, "tests/data/%s", rel) > 0);
	r = source_path(p);
	free(p);
	return r;
}

static char *slurp(const char *path)
{
	char *text = NULL;
	size_t len;

	assert_int_equal(read_file_max(path, 1 << 20, &text, &len), 0);
	return text;
}

/* Parses text as "t.conf", expecting failure and exactly the given lines. */
static void expect_diags(const char *text, ...)
{
	struct config *c = (struct config *)0x1; /* must stay untouched */
	struct diag d = { 0 };
	va_list ap;
	size_t n = 0;

	assert_int_equal(config_parse("t.conf", text, &c, &d), -EINVAL);
	assert_ptr_equal(c, (struct config *)0x1);
	va_start(ap, text);
	for (const char *want; (want = va_arg(ap, const char *)); n++) {
		if (n >= d.n)
			fail_msg("missing diagnostic #%zu: %s", n, want);
		assert_string_equal(d.lines[n], want);
	}
	va_end(ap);
	if (d.n != n)
		fail_msg("unexpected diagnostic: %s", d.lines[n]);
	diag_done(&d);
}

/* MINIMAL plus extra lines, expecting exactly one diagnostic. */
static void expect_one(const char *extra, const char *want)
{
	char *text = NULL;

	assert_true(asprintf(&text, "%s%s", MINIMAL, extra) > 0);
	expect_diags(text, want, NULL);
	free(text);
}

/* Parses text as file name, expecting no diagnostic at all. */
static struct config *parse_ok_as(const char *name, const char *text)
{
	struct config *c = NULL;
	struct diag d = { 0 };
	int r = config_parse(name, text, &c, &d);

	for (size_t i = 0; i < d.n; i++)
		print_error("%s\n", d.lines[i]);
	assert_int_equal(r, 0);
	assert_int_equal(d.n, 0);
	assert_non_null(c);
	diag_done(&d);
	return c;
}

static struct config *parse_ok(const char *text)
{
	return parse_ok_as("t.conf", text);
}

static struct config *parse_extra(const char *extra)
{
	char *text = NULL;
	struct config *c;

	assert_true(asprintf(&text, "%s%s", MINIMAL, extra) > 0);
	c = parse_ok(text);
	free(text);
	return c;
}

static void test_defaults(void **state)
{
	_cleanup_(config_freep) struct config *c = parse_ok(MINIMAL);

	assert_string_equal(c->path, "t.conf");
	assert_string_equal(c->broker.url, "amqp://guest:guest@127.0.0.1:5672/%2f");
	assert_null(c->broker.password_file);
	assert_int_equal(c->broker.prefetch, 100);
	assert_int_equal(c->broker.heartbeat_usec, 30 * USEC_PER_SEC);
	assert_null(c->broker.tls_ca_file);
	assert_null(c->broker.tls_cert_file);
	assert_null(c->broker.tls_key_file);
	assert_true(c->broker.tls_verify_peer);
	assert_true(c->broker.tls_verify_hostname);
	assert_string_equal(c->pipeline.queue, "jobs");
	assert_int_equal(c->pipeline.queue_type, QUEUE_CLASSIC);
	assert_true(c->pipeline.declare);
	assert_int_equal(c->pipeline.max_message_size, 16 * 1024 * 1024);
	assert_int_equal(c->pipeline.max_redeliveries, 3);
	assert_int_equal(c->pipeline.max_body_memory, 256 * 1024 * 1024);
	assert_int_equal(c->handler.type, HANDLER_HTTP);
	assert_string_equal(c->handler.url, "http://127.0.0.1:8080/jobs");
	assert_null(c->handler.command);
	assert_null(c->handler.argv);
	assert_int_equal(c->handler.timeout_usec, 30 * USEC_PER_SEC);
	assert_int_equal(c->handler.max_output, 64 * 1024);
	assert_string_equal(c->retry.taxonomy, "/etc/dlqd/taxonomy.json");
	assert_string_equal(c->metrics.listen, "127.0.0.1:9464");
	assert_int_equal(c->shutdown.drain_timeout_usec, 20 * USEC_PER_SEC);
	assert_non_null(c->replay.block_schema_versions);
	assert_null(c->replay.block_schema_versions[0]);
}

/* [pipeline] max_body_memory must hold one body of max_message_size; unset,
 * it follows a larger max_message_size. */
static void test_max_body_memory(void **state)
{
	struct config *c = parse_extra("[pipeline]\nmax_message_size = 1MiB\n"
				       "max_body_memory = 1MiB\n");
	assert_int_equal(c->pipeline.max_body_memory, 1024 * 1024);
	config_free(c);
	c = parse_extra("[pipeline]\nmax_message_size = 512MiB\n");
	assert_int_equal(c->pipeline.max_body_memory, 512 * 1024 * 1024);
	config_free(c);
	c = parse_extra("[pipeline]\nmax_body_memory = 20MiB\n");
	assert_int_equal(c->pipeline.max_body_memory, 20 * 1024 * 1024);
	config_free(c);
	expect_one("[pipeline]\nmax_body_memory = 8MiB\nmax_message_size = 9MiB\n",
		   "t.conf:9: max_body_memory in [pipeline] (8388608 bytes) must be at least "
		   "max_message_size (9437184 bytes)");
	/* The default 16MiB max_message_size counts too. */
	expect_one("[pipeline]\nmax_body_memory = 1MiB\n",
		   "t.conf:9: max_body_memory in [pipeline] (1048576 bytes) must be at least "
		   "max_message_size (16777216 bytes)");
	/* A bad max_message_size is reported once, not compared. */
	expect_one("[pipeline]\nmax_body_memory = 1MiB\nmax_message_size = 2GiB\n",
		   "t.conf:10: value '2GiB' for 'max_message_size' in [pipeline] is out of "
		   "range (allowed: 1KiB to 1GiB)");
}

static void test_every_key(void **state)
{
	_cleanup_free_ char *path = data_path("config/valid-full.conf");
	_cleanup_free_ char *text = slurp(path);
	struct config *c = NULL;
	struct diag d = { 0 };

	/* As if it lived in /srv/dlqd: relative paths land next to it. */
	assert_int_equal(config_parse("/srv/dlqd/dlqd.conf", text, &c, &d), 0);
	assert_int_equal(d.n, 0);
	assert_string_equal(c->path, "/srv/dlqd/dlqd.conf");
	assert_string_equal(c->broker.url, "amqps://dlqd@rabbit.example.com:5671/prod");
	assert_string_equal(c->broker.password_file, "/srv/dlqd/secrets/amqp-password");
	assert_int_equal(c->broker.prefetch, 250);
	assert_int_equal(c->broker.heartbeat_usec, 60 * USEC_PER_SEC);
	assert_string_equal(c->broker.tls_ca_file, "/etc/ssl/certs/ca.pem");
	assert_string_equal(c->broker.tls_cert_file, "/srv/dlqd/tls/client.pem");
	assert_string_equal(c->broker.tls_key_file, "/srv/dlqd/tls/client.key");
	assert_false(c->broker.tls_verify_peer);
	assert_false(c->broker.tls_verify_hostname);
	assert_string_equal(c->pipeline.queue, "billing.jobs:v2");
	assert_int_equal(c->pipeline.queue_type, QUEUE_QUORUM);
	assert_false(c->pipeline.declare);
	assert_int_equal(c->pipeline.max_message_size, 1024 * 1024);
	assert_int_equal(c->pipeline.max_redeliveries, 0);
	assert_int_equal(c->pipeline.max_body_memory, 64 * 1024 * 1024);
	assert_int_equal(c->handler.type, HANDLER_EXEC);
	assert_string_equal(c->handler.url, "https://ignored.example.com/");
	assert_string_equal(c->handler.command,
			    "/usr/local/bin/run-job --mode \"fast lane\" 'a;b' x\\ y");
	assert_non_null(c->handler.argv);
	assert_string_equal(c->handler.argv[0], "/usr/local/bin/run-job");
	assert_string_equal(c->handler.argv[1], "--mode");
	assert_string_equal(c->handler.argv[2], "fast lane");
	assert_string_equal(c->handler.argv[3], "a;b");
	assert_string_equal(c->handler.argv[4], "x y");
	assert_null(c->handler.argv[5]);
	assert_int_equal(c->handler.timeout_usec, 1500 * USEC_PER_MSEC);
	assert_int_equal(c->handler.max_output, 1024);
	assert_string_equal(c->retry.taxonomy, "/srv/dlqd/taxonomy.json");
	assert_string_equal(c->metrics.listen, "[::1]:9100");
	assert_int_equal(c->shutdown.drain_timeout_usec, 0);
	char **v = c->replay.block_schema_versions;
	assert_string_equal(v[0], "v1");
	assert_string_equal(v[1], "v1beta");
	assert_string_equal(v[2], "v0");
	assert_null(v[3]);
	assert_null(config_free(c));
	diag_done(&d);
}

static void test_sample_config(void **state)
{
	_cleanup_free_ char *path = source_path("config/dlqd.conf");
	_cleanup_free_ char *text = slurp(path);
	struct config *c = parse_ok_as("/etc/dlqd/dlqd.conf", text);

	/* The values of the contract's example. */
	assert_string_equal(c->broker.url, "amqp://guest:guest@127.0.0.1:5672/%2f");
	assert_null(c->broker.password_file);
	assert_int_equal(c->broker.prefetch, 100);
	assert_int_equal(c->broker.heartbeat_usec, 30 * USEC_PER_SEC);
	assert_null(c->broker.tls_ca_file);
	assert_string_equal(c->pipeline.queue, "jobs");
	assert_int_equal(c->pipeline.queue_type, QUEUE_CLASSIC);
	assert_true(c->pipeline.declare);
	assert_int_equal(c->pipeline.max_redeliveries, 3);
	assert_int_equal(c->handler.type, HANDLER_HTTP);
	assert_string_equal(c->handler.url, "http://127.0.0.1:8080/jobs");
	assert_string_equal(c->handler.command, "/usr/local/bin/run-job --flag");
	assert_int_equal(c->handler.timeout_usec, 30 * USEC_PER_SEC);
	assert_string_equal(c->retry.taxonomy, "/etc/dlqd/taxonomy.json");
	assert_string_equal(c->metrics.listen, "127.0.0.1:9464");
	assert_int_equal(c->shutdown.drain_timeout_usec, 20 * USEC_PER_SEC);
	assert_null(c->replay.block_schema_versions[0]);
	config_free(c);
}

/* The golden file: every kind of mistake in one file, all reported in order. */
static void test_all_errors_at_once(void **state)
{
	_cleanup_free_ char *in = data_path("config/errors.conf");
	_cleanup_free_ char *exp = data_path("config/errors.expected");
	_cleanup_free_ char *text = slurp(in);
	_cleanup_free_ char *want = slurp(exp);
	struct config *c = NULL;
	struct diag d = { 0 };
	struct buf got;

	assert_int_equal(config_parse("errors.conf", text, &c, &d), -EINVAL);
	assert_null(c);
	buf_init(&got, 1 << 20);
	for (size_t i = 0; i < d.n; i++)
		assert_int_equal(buf_printf(&got, "%s\n", d.lines[i]), 0);
	assert_string_equal(got.data, want);
	buf_done(&got);
	diag_done(&d);
}

/* config_load() of the same file: the file checks add nothing for bad keys. */
static void test_load_golden(void **state)
{
	_cleanup_free_ char *in = data_path("config/errors.conf");
	_cleanup_free_ char *exp = data_path("config/errors.expected");
	_cleanup_free_ char *want = slurp(exp);
	struct config *c = NULL;
	struct diag d = { 0 };
	struct buf got, w;

	assert_int_equal(config_load(in, &c, &d), -EINVAL);
	assert_null(c);
	buf_init(&got, 1 << 20);
	buf_init(&w, 1 << 20);
	for (size_t i = 0; i < d.n; i++)
		assert_int_equal(buf_printf(&got, "%s\n", d.lines[i]), 0);
	for (char *line = want, *nl; *line; line = nl + 1) {
		nl = strchr(line, '\n');
		assert_non_null(nl);
		assert_int_equal(strncmp(line, "errors.conf:", 12), 0);
		assert_int_equal(buf_printf(&w, "%s:%.*s\n", in, (int)(nl - line - 12), line + 12),
				 0);
	}
	assert_string_equal(got.data, w.data);
	buf_done(&got);
	buf_done(&w);
	diag_done(&d);
}

static void test_structure_diags(void **state)
{
	expect_diags(
		"url = x\n" MINIMAL,
		"t.conf:1: key 'url' is outside of any section (add a [section] header above it)",
		NULL);
	expect_one("[brokr]\nurl = x\nwhatever = 1\n",
		   "t.conf:8: unknown section [brokr] (did you mean [broker]?)");
	expect_one("[logging]\nlevel = debug\n",
		   "t.conf:8: unknown section [logging] (known: broker, pipeline, handler, "
		   "retry, metrics, shutdown, replay, breaker)");
	expect_one("[handler\n", "t.conf:8: malformed section header (expected [name])");
	expect_one("[]\n", "t.conf:8: malformed section header (empty name)");
	expect_one("[retry] x\n", "t.conf:8: unexpected text after section header: 'x'");
	expect_one("just words\n",
		   "t.conf:8: malformed line (expected 'key = value', '[section]' or a comment)");
	expect_one(" = 5\n", "t.conf:8: malformed line (missing key before '=')");
	expect_one("timeout = 1s\ntimeout = 2s\n",
		   "t.conf:9: duplicate key 'timeout' in [handler] (first set at line 8)");
	expect_one("timout = 1s\n",
		   "t.conf:8: unknown key 'timout' in [handler] (did you mean 'timeout'?)");
	expect_one("[broker]\nprefetc = 10\n",
		   "t.conf:9: unknown key 'prefetc' in [broker] (did you mean 'prefetch'?)");
	expect_one("[broker]\nhaertbeat = 10s\n",
		   "t.conf:9: unknown key 'haertbeat' in [broker] (did you mean 'heartbeat'?)");
	expect_one("queue = x\n",
		   "t.conf:8: unknown key 'queue' in [handler] (it belongs in [pipeline])");
	expect_one("colour = blue\n", "t.conf:8: unknown key 'colour' in [handler]");
	/* Keys are case-sensitive; the suggestion points at the right spelling. */
	expect_one("Timeout = 1s\n",
		   "t.conf:8: unknown key 'Timeout' in [handler] (did you mean 'timeout'?)");
}

static void test_value_diags(void **state)
{
	expect_one("[broker]\nprefetch = lots\n",
		   "t.conf:9: invalid number 'lots' for 'prefetch' in [broker]: expected an "
		   "integer from 1 to 65535");
	expect_one("[broker]\nprefetch = 0\n",
		   "t.conf:9: value '0' for 'prefetch' in [broker] is out of range (allowed: "
		   "1 to 65535)");
	expect_one("[broker]\nprefetch = 65536\n",
		   "t.conf:9: value '65536' for 'prefetch' in [broker] is out of range "
		   "(allowed: 1 to 65535)");
	expect_one("[broker]\nprefetch = 99999999999999999999999\n",
		   "t.conf:9: value '99999999999999999999999' for 'prefetch' in [broker] is "
		   "out of range (allowed: 1 to 65535)");
	expect_one("[broker]\nprefetch = -1\n",
		   "t.conf:9: invalid number '-1' for 'prefetch' in [broker]: expected an "
		   "integer from 1 to 65535");
	expect_one("[broker]\nheartbeat = 1 fortnight\n",
		   "t.conf:9: invalid duration '1 fortnight' for 'heartbeat' in [broker]: "
		   "expected a number with a unit (us, ms, s, m, h, d) like 250ms, 30s or 5m "
		   "(allowed: 0 (off) to 1h, whole seconds)");
	expect_one("[broker]\nheartbeat = 61m\n",
		   "t.conf:9: value '61m' for 'heartbeat' in [broker] is out of range "
		   "(allowed: 0 (off) to 1h, whole seconds)");
	expect_one("[broker]\nheartbeat = 1500ms\n",
		   "t.conf:9: value '1500ms' for 'heartbeat' in [broker] is not a whole number "
		   "of seconds (AMQP heartbeats are negotiated in seconds)");
	expect_one("timeout = 0\n",
		   "t.conf:8: value '0' for 'timeout' in [handler] is out of range (allowed: "
		   "more than 0, at most 24h)");
	expect_one("[shutdown]\ndrain_timeout = 2h\n",
		   "t.conf:9: value '2h' for 'drain_timeout' in [shutdown] is out of range "
		   "(allowed: 0 to 1h)");
	expect_one("max_output = 12XB\n",
		   "t.conf:8: invalid size '12XB' for 'max_output' in [handler]: expected "
		   "bytes or a number with a unit (KiB, MiB, GiB, KB, MB, GB) like 64KiB "
		   "(allowed: 1KiB to 16MiB)");
	expect_one("max_output = 1023\n",
		   "t.conf:8: value '1023' for 'max_output' in [handler] is out of range "
		   "(allowed: 1KiB to 16MiB)");
	expect_one("[pipeline]\nmax_message_size = 1025MiB\n",
		   "t.conf:9: value '1025MiB' for 'max_message_size' in [pipeline] is out of "
		   "range (allowed: 1KiB to 1GiB)");
	expect_one("[pipeline]\nmax_body_memory = 65GiB\n",
		   "t.conf:9: value '65GiB' for 'max_body_memory' in [pipeline] is out of "
		   "range (allowed: 1KiB to 64GiB)");
	expect_one("[pipeline]\nmax_redeliveries = 1001\n",
		   "t.conf:9: value '1001' for 'max_redeliveries' in [pipeline] is out of "
		   "range (allowed: 0 (off) to 1000)");
	expect_one("[pipeline]\nmax_redeliveries = three\n",
		   "t.conf:9: invalid number 'three' for 'max_redeliveries' in [pipeline]: "
		   "expected an integer from 0 (off) to 1000");
	expect_one("[pipeline]\nmax_redeliveries = -1\n",
		   "t.conf:9: invalid number '-1' for 'max_redeliveries' in [pipeline]: "
		   "expected an integer from 0 (off) to 1000");
	expect_one("[pipeline]\ndeclare = maybe\n",
		   "t.conf:9: invalid boolean 'maybe' for 'declare' in [pipeline]: expected "
		   "true or false (or yes/no, on/off, 1/0)");
	expect_one("[broker]\ntls_verify_peer =\n",
		   "t.conf:9: invalid boolean '' for 'tls_verify_peer' in [broker]: expected "
		   "true or false (or yes/no, on/off, 1/0)");
	expect_one("[pipeline]\nqueue_type = stream\n",
		   "t.conf:9: invalid queue_type 'stream' in [pipeline]: expected classic or "
		   "quorum");
	expect_one("[retry]\ntaxonomy =\n",
		   "t.conf:9: empty value for 'taxonomy' in [retry] (remove the line to use "
		   "the default /etc/dlqd/taxonomy.json)");
	expect_one("[retry]\ntaxonomy = \"/x\n",
		   "t.conf:9: unterminated quoted value for 'taxonomy' in [retry] (no "
		   "closing \")");
	expect_one("[retry]\ntaxonomy = \"/x\" y\n",
		   "t.conf:9: unexpected text after the quoted value of 'taxonomy' in "
		   "[retry]");
}

static void test_semantic_diags(void **state)
{
	/* Missing required keys: blamed on the section header, or line 1. */
	expect_diags("# nothing useful\n[pipeline]\ndeclare = true\n",
		     "t.conf:1: missing required key 'url' in [broker]",
		     "t.conf:1: missing required key 'type' in [handler]",
		     "t.conf:2: missing required key 'queue' in [pipeline]", NULL);
	expect_diags("", "t.conf:1: missing required key 'url' in [broker]",
		     "t.conf:1: missing required key 'queue' in [pipeline]",
		     "t.conf:1: missing required key 'type' in [handler]", NULL);

	expect_diags("[broker]\nurl = http://rabbit/\n[pipeline]\nqueue = jobs\n"
		     "[handler]\ntype = http\nurl = http://x/\n",
		     "t.conf:2: invalid url 'http://rabbit/' in [broker]: must start with "
		     "amqp:// or amqps://",
		     NULL);
	/* What librabbitmq, which connects, cannot parse fails here, not at start. */
	expect_diags("[broker]\nurl = amqp://h:/%2f\n[pipeline]\nqueue = jobs\n"
		     "[handler]\ntype = http\nurl = http://x/\n",
		     "t.conf:2: invalid url 'amqp://h:/%2f' in [broker]: librabbitmq cannot "
		     "parse it (expected amqp[s]://[user[:password]@]host[:port][/vhost])",
		     NULL);
	expect_diags("[broker]\nurl = amqp://u:p#w@h/\n[pipeline]\nqueue = jobs\n"
		     "[handler]\ntype = http\nurl = http://x/\n",
		     "t.conf:2: invalid url 'amqp://u:p#w@h/' in [broker]: librabbitmq cannot "
		     "parse it (expected amqp[s]://[user[:password]@]host[:port][/vhost])",
		     NULL);
	expect_diags("[broker]\nurl =\n[pipeline]\nqueue =\n[handler]\ntype = http\n",
		     "t.conf:2: empty value for 'url' in [broker] (expected an amqp:// or "
		     "amqps:// URL, or several separated by spaces)",
		     "t.conf:4: empty value for 'queue' in [pipeline] (expected a queue name)",
		     "t.conf:5: [handler] type = http needs 'url' (http:// or https://)", NULL);
	/* Several URLs (one cluster): each checked, the bad one named by place. */
	expect_diags("[broker]\nurl = amqp://a b\n[pipeline]\nqueue = amq.jobs\n"
		     "[handler]\ntype = http\nurl = ftp://x/\n",
		     "t.conf:2: invalid url #2 'b' in [broker]: must start with amqp:// or "
		     "amqps://",
		     "t.conf:4: invalid queue name 'amq.jobs' in [pipeline]: names starting "
		     "with 'amq.' are reserved by RabbitMQ",
		     "t.conf:7: invalid url 'ftp://x/' in [handler]: must start with http:// "
		     "or https:// and name a host",
		     NULL);
	expect_one("[pipeline]\nqueue = jobs/x\n",
		   "t.conf:9: duplicate key 'queue' in [pipeline] (first set at line 4)");
	expect_diags("[broker]\nurl = amqp://x\n[pipeline]\nqueue = jobs/x\n"
		     "[handler]\ntype = exec\n",
		     "t.conf:4: invalid queue name 'jobs/x' in [pipeline]: only letters, "
		     "digits and . _ : - are allowed",
		     "t.conf:5: [handler] type = exec needs 'command' (an absolute path and "
		     "its arguments)",
		     NULL);

	char longq[260], *text = NULL;
	memset(longq, 'q', 201);
	longq[201] = '\0';
	assert_true(asprintf(&text,
			     "[broker]\nurl = amqp://x\n[pipeline]\nqueue = %s\n"
			     "[handler]\ntype = exec\ncommand = run-job\n",
			     longq) > 0);
	expect_diags(text,
		     "t.conf:4: queue name in [pipeline] is too long (201 characters, max 200, "
		     "so that the derived .retry/.dlq names fit AMQP's 255)",
		     "t.conf:7: invalid command in [handler]: 'run-job' must be an absolute "
		     "path (no shell and no PATH lookup is used)",
		     NULL);
	free(text);
	longq[200] = '\0';
	assert_true(asprintf(&text,
			     "[broker]\nurl = amqp://x\n[pipeline]\nqueue = %s\n"
			     "[handler]\ntype = exec\ncommand = /bin/true\n",
			     longq) > 0);
	config_free(parse_ok(text));
	free(text);

	expect_one("type = exec\n",
		   "t.conf:8: duplicate key 'type' in [handler] (first set at line 6)");
	expect_diags("[broker]\nurl = amqp://x\n[pipeline]\nqueue = j\n[handler]\n"
		     "type = exec\ncommand = \"/bin/x\n",
		     "t.conf:7: invalid command in [handler]: unbalanced double quote", NULL);
	expect_diags("[broker]\nurl = amqp://x\n[pipeline]\nqueue = j\n[handler]\n"
		     "type = exec\ncommand = ; only a comment\n",
		     "t.conf:7: invalid command in [handler]: empty command", NULL);
	/* An unknown type: no guessing at url/command problems on top of it. */
	expect_diags("[broker]\nurl = amqp://x\n[pipeline]\nqueue = j\n[handler]\n"
		     "type = grpc\n",
		     "t.conf:6: invalid type 'grpc' in [handler]: expected http or exec", NULL);

	expect_one("[metrics]\nlisten = 9464\n",
		   "t.conf:9: invalid listen address '9464' in [metrics]: expected host:port, "
		   "[ipv6]:port (port 1-65535), or empty to disable the endpoint");
	static const char *const bad_listen[] = {
		":9464", "host:",	   "host:0", "host:65536", "::1:9464", "[::1]9464",
		"[]:80", "[127.0.0.1]:80", "a b:80", "host:80x",   "[::1]:",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad_listen); i++) {
		char *extra = NULL, *want = NULL;
		assert_true(asprintf(&extra, "[metrics]\nlisten = \"%s\"\n", bad_listen[i]) > 0);
		assert_true(asprintf(&want,
				     "t.conf:9: invalid listen address '%s' in [metrics]: "
				     "expected host:port, [ipv6]:port (port 1-65535), or empty "
				     "to disable the endpoint",
				     bad_listen[i]) > 0);
		expect_one(extra, want);
		free(extra);
		free(want);
	}

	/* TLS settings without amqps://, and half a client key pair. */
	expect_one("[broker]\ntls_ca_file = /ca.pem\n",
		   "t.conf:9: 'tls_ca_file' is set but a url in [broker] is not amqps:// (TLS "
		   "settings need amqps:// URLs)");
	expect_diags("[broker]\nurl = amqps://x\ntls_key_file = k.pem\n[pipeline]\n"
		     "queue = j\n[handler]\ntype = http\nurl = http://x\n",
		     "t.conf:3: 'tls_key_file' in [broker] needs 'tls_cert_file' as well", NULL);
}

/* [broker] url lists the nodes of one cluster, split on spaces and tabs. */
static void test_broker_urls(void **state)
{
	struct config *c =
		parse_ok("[broker]\nurl = \tamqp://a:5672/%2f  amqps://u:p@b/v\tamqp://[::1]:5673\n"
			 "[pipeline]\nqueue = j\n[handler]\ntype = http\nurl = http://x\n");

	assert_non_null(c->broker.urls);
	assert_string_equal(c->broker.urls[0], "amqp://a:5672/%2f");
	assert_string_equal(c->broker.urls[1], "amqps://u:p@b/v");
	assert_string_equal(c->broker.urls[2], "amqp://[::1]:5673");
	assert_null(c->broker.urls[3]);
	assert_true(config_url_has_password(c)); /* the second one has */
	config_free(c);

	c = parse_ok("[broker]\nurl = amqp://a\n[pipeline]\nqueue = j\n[handler]\ntype = "
		     "http\nurl = http://x\n");
	assert_string_equal(c->broker.urls[0], "amqp://a");
	assert_null(c->broker.urls[1]);
	assert_false(config_url_has_password(c));
	config_free(c);

	expect_diags("[broker]\nurl = amqp://a amqp://b amqp://a\n[pipeline]\nqueue = j\n"
		     "[handler]\ntype = http\nurl = http://x\n",
		     "t.conf:2: url 'amqp://a' is listed twice in [broker] url", NULL);
	expect_diags("[broker]\nurl = amqp://a amqp://h:/x\n[pipeline]\nqueue = j\n"
		     "[handler]\ntype = http\nurl = http://x\n",
		     "t.conf:2: invalid url #2 'amqp://h:/x' in [broker]: librabbitmq cannot "
		     "parse it (expected amqp[s]://[user[:password]@]host[:port][/vhost])",
		     NULL);

	char *many = NULL;
	assert_true(
		asprintf(&many,
			 "[broker]\nurl = %s%s\n[pipeline]\nqueue = j\n[handler]\ntype = "
			 "http\nurl = http://x\n",
			 "amqp://1 amqp://2 amqp://3 amqp://4 amqp://5 amqp://6 amqp://7 amqp://8 ",
			 "amqp://9 amqp://10 amqp://11 amqp://12 amqp://13 amqp://14 amqp://15 "
			 "amqp://16 amqp://17") > 0);
	expect_diags(many, "t.conf:2: too many URLs in [broker] url: at most 16", NULL);
	free(many);

	/* TLS files need every node on amqps://. */
	expect_diags("[broker]\nurl = amqps://a amqp://b\ntls_ca_file = /ca.pem\n[pipeline]\n"
		     "queue = j\n[handler]\ntype = http\nurl = http://x\n",
		     "t.conf:3: 'tls_ca_file' is set but a url in [broker] is not amqps:// (TLS "
		     "settings need amqps:// URLs)",
		     NULL);
}

static void test_good_values(void **state)
{
	static const struct {
		const char *extra;
		uint64_t timeout, max_output;
	} cases[] = {
		{ "timeout = 250ms\n", 250 * USEC_PER_MSEC, 64 * 1024 },
		{ "timeout = 2\n", 2 * USEC_PER_SEC, 64 * 1024 },
		{ "timeout = 1.5s\n", 1500 * USEC_PER_MSEC, 64 * 1024 },
		{ "timeout = 5m\n", 300 * USEC_PER_SEC, 64 * 1024 },
		{ "timeout = 24h\n", 86400 * USEC_PER_SEC, 64 * 1024 },
		{ "timeout = 1d\n", 86400 * USEC_PER_SEC, 64 * 1024 },
		{ "timeout = 1us\n", 1, 64 * 1024 },
		{ "max_output = 16MiB\n", 30 * USEC_PER_SEC, 16 * 1024 * 1024 },
		{ "max_output = 2048\n", 30 * USEC_PER_SEC, 2048 },
		{ "max_output = 10KB\n", 30 * USEC_PER_SEC, 10000 },
		{ "max_output = 1.5KiB\n", 30 * USEC_PER_SEC, 1536 },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct config *c = parse_extra(cases[i].extra);
		assert_int_equal(c->handler.timeout_usec, cases[i].timeout);
		assert_int_equal(c->handler.max_output, cases[i].max_output);
		config_free(c);
	}

	struct config *c = parse_extra("[broker]\nheartbeat = 0\nprefetch = 65535\n"
				       "[pipeline]\nmax_message_size = 1GiB\n"
				       "queue_type = Quorum\ndeclare = OFF\n"
				       "[metrics]\nlisten =\n");
	assert_int_equal(c->broker.heartbeat_usec, 0);
	assert_int_equal(c->broker.prefetch, 65535);
	assert_int_equal(c->pipeline.max_message_size, UINT64_C(1) << 30);
	assert_int_equal(c->pipeline.queue_type, QUEUE_QUORUM);
	assert_false(c->pipeline.declare);
	assert_string_equal(c->metrics.listen, "");
	config_free(c);

	static const char *const good_listen[] = {
		"0.0.0.0:9464",
		"[::]:9464",
		"localhost:1",
		"[fe80::1%eth0]:65535",
		"metrics.example.com:9100",
	};
	for (size_t i = 0; i < ARRAY_SIZE(good_listen); i++) {
		char *extra = NULL;
		assert_true(asprintf(&extra, "[metrics]\nlisten = %s\n", good_listen[i]) > 0);
		c = parse_extra(extra);
		assert_string_equal(c->metrics.listen, good_listen[i]);
		config_free(c);
		free(extra);
	}
}

static void test_comments_and_quotes(void **state)
{
	struct config *c =
		parse_ok("\xef\xbb\xbf; a BOM, then a comment\r\n"
			 "# hash comment\r\n"
			 "   ; indented comment\n"
			 "\n"
			 "  [ broker ]   ; comment after a header\n"
			 "url = amqp://u:p;w@h/%2f   # the ; without space before stays\n"
			 "\t[pipeline]\n"
			 "queue\t=\tjobs\t;tab before the comment\n"
			 "[handler]\n"
			 "type=http\n"
			 "url = http://h/a;b#c  ; the ; and # without space before stay\n"
			 "timeout = \"  5s\"\n"
			 "[retry]\n"
			 "taxonomy = \"/srv/my dir ;x #y/t.json\"\t# quoted keeps ; and #\n"
			 "[replay]\n"
			 "block_schema_versions = \"v1;x, v2 #y\" ; comment\n");

	assert_string_equal(c->broker.url, "amqp://u:p;w@h/%2f");
	assert_string_equal(c->pipeline.queue, "jobs");
	assert_string_equal(c->handler.url, "http://h/a;b#c");
	assert_string_equal(c->retry.taxonomy, "/srv/my dir ;x #y/t.json");
	assert_int_equal(c->handler.timeout_usec, 5 * USEC_PER_SEC);
	assert_string_equal(c->replay.block_schema_versions[0], "v1;x");
	assert_string_equal(c->replay.block_schema_versions[1], "v2 #y");
	assert_null(c->replay.block_schema_versions[2]);
	config_free(c);

	c = parse_extra("[retry]\ntaxonomy = \"/a\\\"b\\\\c\"\n");
	assert_string_equal(c->retry.taxonomy, "/a\"b\\c");
	config_free(c);

	/* In a command the quotes belong to argv; ; and # inside them stay. */
	c = parse_ok("[broker]\nurl = amqp://x\n[pipeline]\nqueue = j\n[handler]\n"
		     "type = exec\n"
		     "command = /bin/echo \"a ;b\" 'c #d' e\\ ;f ; real comment\n");
	assert_string_equal(c->handler.command, "/bin/echo \"a ;b\" 'c #d' e\\ ;f");
	assert_string_equal(c->handler.argv[1], "a ;b");
	assert_string_equal(c->handler.argv[2], "c #d");
	assert_string_equal(c->handler.argv[3], "e ;f");
	assert_null(c->handler.argv[4]);
	config_free(c);

	/* An escaped trailing blank is part of the value. */
	c = parse_ok("[broker]\nurl = amqp://x\n[pipeline]\nqueue = j\n[handler]\n"
		     "type = exec\ncommand = /bin/echo a\\ \n");
	assert_string_equal(c->handler.argv[1], "a ");
	config_free(c);
}

static void test_line_too_long(void **state)
{
	size_t n = 4200;
	char *text = malloc(strlen(MINIMAL) + n + 64), *p;

	assert_non_null(text);
	p = stpcpy(text, MINIMAL);
	p = stpcpy(p, "url2 = ");
	memset(p, 'x', n);
	p[n] = '\n';
	p[n + 1] = '\0';
	expect_diags(text, "t.conf:8: line too long (4207 bytes, max 4096)", NULL);

	/* Exactly 4096 bytes is fine (a comment here). */
	p = stpcpy(text, MINIMAL);
	*p++ = '#';
	memset(p, 'x', 4095);
	strcpy(p + 4095, "\r\n");
	config_free(parse_ok(text));
	free(text);
}

static void test_no_diags_list(void **state)
{
	struct config *c = NULL;

	/* diags may be NULL: the failure is still a failure. */
	assert_int_equal(config_parse("t.conf", "[x]\n", &c, NULL), -EINVAL);
	assert_null(c);
	assert_int_equal(config_parse(NULL, MINIMAL, &c, NULL), 0);
	assert_null(c->path);
	config_free(c);
	assert_null(config_free(NULL));
	c = NULL;
	config_freep(&c);
}

static void test_existing_diags_kept(void **state)
{
	struct diag d = { 0 };
	struct config *c = NULL;

	diag_add(&d, "taxonomy.json", 3, "earlier problem");
	assert_int_equal(config_parse("t.conf", MINIMAL, &c, &d), 0);
	assert_int_equal(d.n, 1);
	config_free(c);
	c = NULL;
	assert_int_equal(config_parse("t.conf", MINIMAL "[handler]\nbogus = 1\n", &c, &d), -EINVAL);
	assert_int_equal(d.n, 2);
	assert_string_equal(d.lines[0], "taxonomy.json:3: earlier problem");
	assert_string_equal(d.lines[1], "t.conf:9: unknown key 'bogus' in [handler]");
	diag_done(&d);
}

static void test_relative_paths(void **state)
{
	struct config *c;
	struct diag d = { 0 };
	const char *extra = "[retry]\ntaxonomy = tax.json\n[broker]\npassword_file = pw\n";
	char *text = NULL;

	assert_true(asprintf(&text, "%s%s", MINIMAL, extra) > 0);
	assert_int_equal(config_parse("conf/dlqd.conf", text, &c, &d), 0);
	assert_string_equal(c->retry.taxonomy, "conf/tax.json");
	assert_string_equal(c->broker.password_file, "conf/pw");
	config_free(c);
	assert_int_equal(config_parse("dlqd.conf", text, &c, &d), 0);
	assert_string_equal(c->retry.taxonomy, "tax.json");
	config_free(c);
	assert_int_equal(config_parse("/dlqd.conf", text, &c, &d), 0);
	assert_string_equal(c->retry.taxonomy, "/tax.json");
	config_free(c);
	assert_int_equal(d.n, 0);
	free(text);
}

/* Under systemd, secrets named relatively come from $CREDENTIALS_DIRECTORY
 * (LoadCredential=); every other relative path stays next to the config. */
static void test_credentials_directory(void **state)
{
	struct config *c;
	struct diag d = { 0 };
	const char *text = "[broker]\nurl = amqps://dlqd@broker.example/%2f\n"
			   "password_file = amqp-password\ntls_ca_file = ca.pem\n"
			   "tls_cert_file = client.pem\ntls_key_file = client.key\n"
			   "[pipeline]\nqueue = jobs\n[handler]\ntype = http\n"
			   "url = http://127.0.0.1:8080/jobs\n[retry]\ntaxonomy = tax.json\n";

	assert_int_equal(setenv("CREDENTIALS_DIRECTORY", "/run/credentials/dlqd.service", 1), 0);
	assert_int_equal(config_parse("/etc/dlqd/dlqd.conf", text, &c, &d), 0);
	assert_string_equal(c->broker.password_file, "/run/credentials/dlqd.service/amqp-password");
	assert_string_equal(c->broker.tls_key_file, "/run/credentials/dlqd.service/client.key");
	assert_string_equal(c->broker.tls_cert_file, "/etc/dlqd/client.pem");
	assert_string_equal(c->broker.tls_ca_file, "/etc/dlqd/ca.pem");
	assert_string_equal(c->retry.taxonomy, "/etc/dlqd/tax.json");
	config_free(c);

	/* Not an absolute directory: ignored, like no credentials at all. */
	assert_int_equal(setenv("CREDENTIALS_DIRECTORY", "creds", 1), 0);
	assert_int_equal(config_parse("/etc/dlqd/dlqd.conf", text, &c, &d), 0);
	assert_string_equal(c->broker.password_file, "/etc/dlqd/amqp-password");
	config_free(c);
	assert_int_equal(unsetenv("CREDENTIALS_DIRECTORY"), 0);
	assert_int_equal(config_parse("/etc/dlqd/dlqd.conf", text, &c, &d), 0);
	assert_string_equal(c->broker.password_file, "/etc/dlqd/amqp-password");
	assert_string_equal(c->broker.tls_key_file, "/etc/dlqd/client.key");
	config_free(c);
	assert_int_equal(d.n, 0);
}

/* The endpoint shown in STATUS= is amqpconn's (test_amqpconn.c). */
static void test_url_password(void **state)
{
	static const struct {
		const char *url;
		bool password;
	} cases[] = {
		{ "amqp://guest:guest@127.0.0.1:5672/%2f", true },
		{ "amqp://rabbit.example/%2f", false },
		{ "amqps://u@rabbit.example", false },
		{ "amqps://u:@rabbit.example:5999/v", false },
		{ "amqp://u:p%40ss@[::1]:5673/%2f", true },
		{ "amqp://u:p@[::1]/%2f", true },
		{ "amqp:///%2f", false },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct config *c;
		struct diag d = { 0 };
		char *text = NULL;

		assert_true(asprintf(&text,
				     "[broker]\nurl = %s\n[pipeline]\nqueue = j\n"
				     "[handler]\ntype = http\nurl = http://h/\n",
				     cases[i].url) > 0);
		assert_int_equal(config_parse("t.conf", text, &c, &d), 0);
		assert_int_equal(config_url_has_password(c), cases[i].password);
		config_free(c);
		free(text);
	}
}

/* config_load: reading, file checks, relative resolution on disk. */
static char tmpdir[PATH_MAX];

static int setup_tmp(void **state)
{
	strscpy(tmpdir, "/tmp/dlqd-test-config-XXXXXX", sizeof(tmpdir));
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
	char *cmd = NULL;

	if (asprintf(&cmd, "rm -rf '%s'", tmpdir) < 0)
		return -1;
	int r = system(cmd);
	free(cmd);
	return r == 0 ? 0 : -1;
}

static char *write_tmp(const char *name, const char *content)
{
	char *p = NULL;
	FILE *f;

	assert_true(asprintf(&p, "%s/%s", tmpdir, name) > 0);
	f = fopen(p, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(content, 1, strlen(content), f), strlen(content));
	assert_int_equal(fclose(f), 0);
	return p;
}

/* The units' start condition: only a non-empty [broker] url counts, however
 * broken the rest is; the handler's url does not. */
static void test_has_broker_url(void **state)
{
	static const struct {
		const char *text;
		int want;
	} cases[] = {
		{ MINIMAL, 1 },
		{ "[broker]\n# url = amqp://x/\n[handler]\nurl = http://h/\n", 0 },
		{ "[broker]\nurl =\n", 0 },
		{ "[broker]\nurl = \"\"\n", 0 },
		{ "", 0 },
		{ "[nosuch]\nurl = amqp://x/\n[broker]\nprefetch = lots\n", 0 },
		{ "junk line\n[broker]\nprefetch = lots\nurl = amqp://x/ ; note\n", 1 },
		{ "[pipeline]\nqueue = q\n[broker]\nurl = not-a-url\n", 1 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		_cleanup_free_ char *path = write_tmp("url.conf", cases[i].text);
		print_message("case %zu\n", i);
		assert_int_equal(config_has_broker_url(path), cases[i].want);
	}
	_cleanup_free_ char *missing = NULL;
	assert_true(asprintf(&missing, "%s/nosuch.conf", tmpdir) > 0);
	assert_int_equal(config_has_broker_url(missing), -ENOENT);
	/* The shipped sample names the contract's broker. */
	_cleanup_free_ char *sample = source_path("config/dlqd.conf");
	assert_int_equal(config_has_broker_url(sample), 1);
}

static void test_load_ok(void **state)
{
	_cleanup_free_ char *tax = write_tmp("taxonomy.json", "{}");
	_cleanup_free_ char *pw = write_tmp("pw", "secret\n");
	_cleanup_free_ char *path =
		write_tmp("ok.conf", MINIMAL "[retry]\ntaxonomy = taxonomy.json\n"
					     "[broker]\npassword_file = ./pw\n");
	struct config *c = NULL;
	struct diag d = { 0 };
	_cleanup_free_ char *want_pw = NULL;

	assert_int_equal(config_load(path, &c, &d), 0);
	assert_int_equal(d.n, 0);
	assert_string_equal(c->path, path);
	assert_string_equal(c->retry.taxonomy, tax);
	assert_true(asprintf(&want_pw, "%s/./pw", tmpdir) > 0);
	assert_string_equal(c->broker.password_file, want_pw);
	config_free(c);
}

static void test_load_file_errors(void **state)
{
	_cleanup_free_ char *path = write_tmp(
		"bad-files.conf", "[broker]\nurl = amqps://x\npassword_file = missing-pw\n"
				  "tls_ca_file = .\n"
				  "[pipeline]\nqueue = j\n"
				  "[handler]\ntype = exec\ncommand = /nonexistent/run-job --x\n"
				  "[retry]\ntaxonomy = nope.json\n");
	struct config *c = (struct config *)0x1;
	struct diag d = { 0 };
	char *want = NULL;

	assert_int_equal(config_load(path, &c, &d), -EINVAL);
	assert_ptr_equal(c, (struct config *)0x1);
	assert_int_equal(d.n, 4);
	/* In file order, like every other diagnostic. */
	assert_true(
		asprintf(&want,
			 "%s:3: cannot read password_file %s/missing-pw: No such file or directory",
			 path, tmpdir) > 0);
	assert_string_equal(d.lines[0], want);
	free(want);
	assert_true(asprintf(&want, "%s:4: cannot read tls_ca_file %s/.: Is a directory", path,
			     tmpdir) > 0);
	assert_string_equal(d.lines[1], want);
	free(want);
	assert_true(asprintf(&want,
			     "%s:9: cannot execute command /nonexistent/run-job: No such file or "
			     "directory",
			     path) > 0);
	assert_string_equal(d.lines[2], want);
	free(want);
	assert_true(asprintf(&want,
			     "%s:11: cannot read taxonomy %s/nope.json: No such file or directory",
			     path, tmpdir) > 0);
	assert_string_equal(d.lines[3], want);
	free(want);
	diag_done(&d);

	/* The default taxonomy is blamed on [retry] or, without one, on line 1. */
	if (access("/etc/dlqd/taxonomy.json", F_OK) == 0)
		return; /* installed on this machine: nothing to report */
	_cleanup_free_ char *p2 = write_tmp("no-retry.conf", MINIMAL);
	c = NULL;
	assert_int_equal(config_load(p2, &c, &d), -EINVAL);
	assert_null(c);
	assert_int_equal(d.n, 1);
	assert_true(asprintf(&want,
			     "%s:1: cannot read taxonomy /etc/dlqd/taxonomy.json: No such file or "
			     "directory",
			     p2) > 0);
	assert_string_equal(d.lines[0], want);
	free(want);
	diag_done(&d);
}

/* dlqctl needs what reaches the broker, not the daemon's taxonomy or program. */
static void test_load_for_broker(void **state)
{
	_cleanup_free_ char *path = write_tmp(
		"broker-only.conf", "[broker]\nurl = amqp://x\n"
				    "[pipeline]\nqueue = j\n"
				    "[handler]\ntype = exec\ncommand = /nonexistent/run-job\n"
				    "[retry]\ntaxonomy = nope.json\n");
	_cleanup_free_ char *bad_pw = write_tmp(
		"broker-only-pw.conf", "[broker]\nurl = amqp://x\npassword_file = missing\n"
				       "[pipeline]\nqueue = j\n"
				       "[handler]\ntype = http\nurl = http://127.0.0.1:1/\n");
	struct config *c = NULL;
	struct diag d = { 0 };
	char *want = NULL;

	assert_int_equal(config_load_for_broker(path, &c, &d), 0);
	assert_int_equal(d.n, 0);
	assert_string_equal(c->pipeline.queue, "j");
	c = config_free(c);
	assert_int_equal(config_load(path, &c, &d), -EINVAL);
	assert_int_equal(d.n, 2);
	diag_done(&d);

	assert_int_equal(config_load_for_broker(bad_pw, &c, &d), -EINVAL);
	assert_null(c);
	assert_int_equal(d.n, 1);
	assert_true(
		asprintf(&want,
			 "%s:3: cannot read password_file %s/missing: No such file or directory",
			 bad_pw, tmpdir) > 0);
	assert_string_equal(d.lines[0], want);
	free(want);
	diag_done(&d);
}

static void test_load_unreadable(void **state)
{
	struct config *c = (struct config *)0x1;
	struct diag d = { 0 };
	char *p = NULL, *want = NULL;

	assert_true(asprintf(&p, "%s/does-not-exist.conf", tmpdir) > 0);
	assert_int_equal(config_load(p, &c, &d), -ENOENT);
	assert_ptr_equal(c, (struct config *)0x1);
	assert_int_equal(d.n, 1);
	assert_true(asprintf(&want, "%s:1: cannot read: No such file or directory", p) > 0);
	assert_string_equal(d.lines[0], want);
	free(want);
	free(p);
	diag_done(&d);

	/* Over 1 MiB. */
	p = malloc((1 << 20) + 2);
	assert_non_null(p);
	memset(p, '#', (1 << 20) + 1);
	p[(1 << 20) + 1] = '\0';
	char *big = write_tmp("big.conf", p);
	free(p);
	assert_int_equal(config_load(big, &c, &d), -EFBIG);
	assert_ptr_equal(c, (struct config *)0x1);
	assert_true(asprintf(&want, "%s:1: cannot read: file too large (max 1 MiB)", big) > 0);
	assert_string_equal(d.lines[0], want);
	free(want);
	free(big);
	diag_done(&d);

	/* A NUL byte: the file is not what the operator thinks it is. */
	assert_true(asprintf(&p, "%s/nul.conf", tmpdir) > 0);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	assert_int_equal(fwrite("[broker]\n\nurl\0x\n", 1, 16, f), 16);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(config_load(p, &c, &d), -EINVAL);
	assert_ptr_equal(c, (struct config *)0x1);
	assert_int_equal(d.n, 1);
	assert_true(asprintf(&want, "%s:3: file contains a NUL byte (not a text file?)", p) > 0);
	assert_string_equal(d.lines[0], want);
	free(want);
	free(p);
	diag_done(&d);

	/* A directory. */
	assert_true(config_load(tmpdir, &c, &d) < 0);
	assert_ptr_equal(c, (struct config *)0x1);
	assert_int_equal(d.n, 1);
	diag_done(&d);
}

static void test_parse_too_large(void **state)
{
	size_t n = (1 << 20) + 1;
	char *text = malloc(n + 1);
	struct config *c = NULL;
	struct diag d = { 0 };

	assert_non_null(text);
	memset(text, '\n', n);
	text[n] = '\0';
	assert_int_equal(config_parse("t.conf", text, &c, &d), -EINVAL);
	assert_null(c);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.lines[0], "t.conf:1: file too large (1048577 bytes, max 1 MiB)");
	diag_done(&d);
	free(text);
}

static void test_check_secrets(void **state)
{
	_cleanup_free_ char *tax = write_tmp("taxonomy.json", "{}");
	_cleanup_free_ char *secret =
		write_tmp("secret.conf", "[broker]\nurl = amqp://dlqd:s3cret@h/%2f\n"
					 "[pipeline]\nqueue = j\n[handler]\ntype = http\n"
					 "url = http://h/\n[retry]\ntaxonomy = taxonomy.json\n");
	_cleanup_free_ char *guest = write_tmp("guest.conf", MINIMAL "[retry]\ntaxonomy = "
								     "taxonomy.json\n");
	struct config *c = NULL, *g = NULL;
	struct diag d = { 0 };
	char buf[PATH_MAX + 256];

	assert_int_equal(config_load(secret, &c, &d), 0);
	assert_int_equal(chmod(secret, 0644), 0);
	assert_int_equal(config_check_secrets(c, buf, sizeof(buf)), 1);
	assert_non_null(strstr(buf, "readable by every user (mode 0644)"));
	assert_non_null(strstr(buf, secret));
	assert_null(strstr(buf, "s3cret"));
	assert_int_equal(chmod(secret, 0640), 0);
	assert_int_equal(config_check_secrets(c, buf, sizeof(buf)), 0);
	config_free(c);

	/* guest:guest is RabbitMQ's public default, not a secret. */
	assert_int_equal(config_load(guest, &g, &d), 0);
	assert_int_equal(chmod(guest, 0644), 0);
	assert_int_equal(config_check_secrets(g, buf, sizeof(buf)), 0);
	config_free(g);
	assert_int_equal(d.n, 0);
}

/* Reload applies everything except what describes the connection, the
 * topology and the metrics socket; those are named, the rest is not. */
/* [breaker] and the retry budget: defaults, values, ranges, reloadable. */
static void test_protection_keys(void **state)
{
	_cleanup_(config_freep) struct config *d = parse_ok(MINIMAL);
	_cleanup_(config_freep) struct config *c =
		parse_extra("[breaker]\nfailure_ratio = 0.25\nmin_calls = 50\nwindow = 30s\n"
			    "open_for = 2s\nmax_open = 1h\n"
			    "[retry]\nbudget_ratio = 1.5\nbudget_min_per_second = 0.5\n"
			    "budget_window = 1m\n");
	_cleanup_(config_freep) struct config *off =
		parse_extra("[breaker]\nwindow = 0\n[retry]\nbudget_min_per_second = 0\n"
			    "budget_window = 0\n");

	/* design.md's defaults. */
	assert_true(d->breaker.failure_ratio == 0.5);
	assert_int_equal(d->breaker.min_calls, 20);
	assert_int_equal(d->breaker.window_usec, 10 * USEC_PER_SEC);
	assert_int_equal(d->breaker.open_for_usec, 5 * USEC_PER_SEC);
	assert_int_equal(d->breaker.max_open_usec, 300 * USEC_PER_SEC);
	assert_true(d->retry.budget_ratio == 0.2);
	assert_true(d->retry.budget_min_per_second == 10);
	assert_int_equal(d->retry.budget_window_usec, 10 * USEC_PER_SEC);

	assert_true(c->breaker.failure_ratio == 0.25);
	assert_int_equal(c->breaker.min_calls, 50);
	assert_int_equal(c->breaker.window_usec, 30 * USEC_PER_SEC);
	assert_int_equal(c->breaker.open_for_usec, 2 * USEC_PER_SEC);
	assert_int_equal(c->breaker.max_open_usec, 3600 * USEC_PER_SEC);
	assert_true(c->retry.budget_ratio == 1.5);
	assert_true(c->retry.budget_min_per_second == 0.5);
	assert_int_equal(c->retry.budget_window_usec, 60 * USEC_PER_SEC);
	assert_int_equal(off->breaker.window_usec, 0);
	assert_true(off->retry.budget_min_per_second == 0);
	assert_int_equal(off->retry.budget_window_usec, 0);

	/* Every one of them is reloadable. */
	assert_null(config_restart_key_changed(d, c));
	assert_null(config_restart_key_changed(d, off));

	expect_one("[breaker]\nfailure_ratio = 0\n",
		   "t.conf:9: value '0' for 'failure_ratio' in [breaker] is out of range "
		   "(allowed: more than 0, at most 1)");
	expect_one("[breaker]\nfailure_ratio = 1.01\n",
		   "t.conf:9: value '1.01' for 'failure_ratio' in [breaker] is out of range "
		   "(allowed: more than 0, at most 1)");
	expect_one("[breaker]\nfailure_ratio = half\n",
		   "t.conf:9: invalid number 'half' for 'failure_ratio' in [breaker]: expected "
		   "a decimal number like 0.5 (allowed: more than 0, at most 1)");
	expect_one("[breaker]\nfailure_ratio = nan\n",
		   "t.conf:9: invalid number 'nan' for 'failure_ratio' in [breaker]: expected "
		   "a decimal number like 0.5 (allowed: more than 0, at most 1)");
	expect_one("[breaker]\nfailure_ratio = 0.5x\n",
		   "t.conf:9: invalid number '0.5x' for 'failure_ratio' in [breaker]: expected "
		   "a decimal number like 0.5 (allowed: more than 0, at most 1)");
	expect_one("[breaker]\nmin_calls = 0\n",
		   "t.conf:9: value '0' for 'min_calls' in [breaker] is out of range (allowed: "
		   "1 to 1000000)");
	expect_one("[breaker]\nwindow = 50ms\n",
		   "t.conf:9: value '50ms' for 'window' in [breaker] is out of range (allowed: 0 "
		   "(no breaker), or 100ms to 1h)");
	expect_one("[breaker]\nwindow = 2h\n",
		   "t.conf:9: value '2h' for 'window' in [breaker] is out of range (allowed: 0 "
		   "(no breaker), or 100ms to 1h)");
	expect_one("[breaker]\nopen_for = 0\n",
		   "t.conf:9: value '0' for 'open_for' in [breaker] is out of range (allowed: "
		   "100ms to 1h)");
	expect_one("[breaker]\nmax_open = 25h\n",
		   "t.conf:9: value '25h' for 'max_open' in [breaker] is out of range (allowed: "
		   "100ms to 24h)");
	expect_one("[breaker]\nopen_for = 10m\n",
		   "t.conf:9: 'max_open' in [breaker] must be at least 'open_for' (the first "
		   "pause is doubled up to max_open)");
	expect_one("[breaker]\nopen_for = 10s\nmax_open = 9s\n",
		   "t.conf:10: 'max_open' in [breaker] must be at least 'open_for' (the first "
		   "pause is doubled up to max_open)");
	expect_one("[retry]\nbudget_ratio = -0.1\n",
		   "t.conf:9: value '-0.1' for 'budget_ratio' in [retry] is out of range "
		   "(allowed: 0 to 1000)");
	expect_one("[retry]\nbudget_min_per_second = 1e7\n",
		   "t.conf:9: value '1e7' for 'budget_min_per_second' in [retry] is out of range "
		   "(allowed: 0 (no budget) to 1000000)");
	expect_one("[retry]\nbudget_min_per_second = inf\n",
		   "t.conf:9: invalid number 'inf' for 'budget_min_per_second' in [retry]: "
		   "expected a decimal number like 0.5 (allowed: 0 (no budget) to 1000000)");
	expect_one("[retry]\nbudget_window = 10 parsecs\n",
		   "t.conf:9: invalid duration '10 parsecs' for 'budget_window' in [retry]: "
		   "expected a "
		   "number with a unit (us, ms, s, m, h, d) like 250ms, 30s or 5m (allowed: 0 "
		   "(no budget), or 100ms to 1h)");
	expect_one("[breaker]\nthreshold = 3\n", "t.conf:9: unknown key 'threshold' in [breaker]");
	expect_one("[breaker]\nbudget_ratio = 3\n",
		   "t.conf:9: unknown key 'budget_ratio' in [breaker] (it belongs in [retry])");
}

static void test_restart_key_changed(void **state)
{
	static const struct {
		const char *extra, *key;
	} cases[] = {
		{ "", NULL },
		{ "[handler]\ntimeout = 3s\n", NULL },
		{ "[shutdown]\ndrain_timeout = 1s\n", NULL },
		{ "[metrics]\ndlq_poll_interval = 1s\n", NULL },
		{ "[pipeline]\nmax_redeliveries = 0\n", NULL },
		{ "[pipeline]\nmax_redeliveries = 10\n", NULL },
		{ "[broker]\nprefetch = 7\n", "[broker] prefetch" },
		{ "[broker]\nheartbeat = 7s\n", "[broker] heartbeat" },
		{ "[broker]\ntls_verify_peer = false\n", "[broker] tls_verify_peer" },
		{ "[pipeline]\nqueue_type = quorum\n", "[pipeline] queue_type" },
		{ "[pipeline]\ndeclare = false\n", "[pipeline] declare" },
		{ "[metrics]\nlisten = 127.0.0.1:1\n", "[metrics] listen" },
		{ "[metrics]\nlisten =\n", "[metrics] listen" },
	};
	_cleanup_(config_freep) struct config *base = parse_ok(MINIMAL);

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		_cleanup_(config_freep) struct config *c = parse_extra(cases[i].extra);
		const char *got = config_restart_key_changed(base, c);

		if (!cases[i].key) {
			assert_null(got);
		} else {
			assert_non_null(got);
			assert_string_equal(got, cases[i].key);
			assert_string_equal(config_restart_key_changed(c, base), cases[i].key);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_every_key),
		cmocka_unit_test(test_sample_config),
		cmocka_unit_test(test_all_errors_at_once),
		cmocka_unit_test(test_load_golden),
		cmocka_unit_test(test_structure_diags),
		cmocka_unit_test(test_value_diags),
		cmocka_unit_test(test_semantic_diags),
		cmocka_unit_test(test_broker_urls),
		cmocka_unit_test(test_good_values),
		cmocka_unit_test(test_comments_and_quotes),
		cmocka_unit_test(test_line_too_long),
		cmocka_unit_test(test_no_diags_list),
		cmocka_unit_test(test_existing_diags_kept),
		cmocka_unit_test(test_relative_paths),
		cmocka_unit_test(test_parse_too_large),
		cmocka_unit_test(test_load_ok),
		cmocka_unit_test(test_load_file_errors),
		cmocka_unit_test(test_load_for_broker),
		cmocka_unit_test(test_load_unreadable),
		cmocka_unit_test(test_credentials_directory),
		cmocka_unit_test(test_url_password),
		cmocka_unit_test(test_check_secrets),
		cmocka_unit_test(test_restart_key_changed),
		cmocka_unit_test(test_protection_keys),
		cmocka_unit_test(test_max_body_memory),
		cmocka_unit_test(test_has_broker_url),
	};

	return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
