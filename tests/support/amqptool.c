/*
 * dlqd-amqptool: a fast AMQP client for benchmarks and tests, built on
 * librabbitmq alone (no dlqd code, so it measures the broker, not us).
 *
 *   dlqd-amqptool [--url URL] publish --queue Q --count N [--kind success|mixed]
 *                 [--size BYTES] [--window W] [--transient] [--declare [--quorum]]
 *   dlqd-amqptool [--url URL] drain --queue Q [--prefetch P] [--count N] [--timeout S]
 *   dlqd-amqptool [--url URL] depth --queue Q [--until N] [--timeout S]
 *   dlqd-amqptool [--url URL] delete [--queue Q]... [--exchange X]...
 *
 * publish sends N envelopes to the default exchange with routing key Q,
 * mandatory, on a confirm-mode channel with at most W (default 1000)
 * unconfirmed at once; a nack, a basic.return (no such queue) or a channel
 * error fails the run. Messages are persistent unless --transient, because
 * production jobs are, and the retry/DLQ copies dlqd makes always are.
 * It declares nothing unless --declare, which declares Q exactly as dlqd does:
 * durable classic, no arguments (with --quorum: durable, x-queue-type quorum).
 *
 * Envelopes are {"message_id":"bench-<i>","trace_id":"t<i>","payload":{...}}.
 * The mixed kind assigns message i by i % 20, so the shares are exact:
 *   0..15 ok, 16..17 {"stub":{"op":"fail","status":503,"times":1}} (one retry),
 *   18 {"stub":{"op":"fail","status":400}} (DLQ), 19 no payload (invalid, DLQ).
 * The counts are printed on stdout as key=value so scripts need not redo them.
 *
 * drain consumes with manual acks, one basic.ack per delivery (as dlqd does),
 * and prints the rate: the broker's own consume+ack ceiling.
 * depth prints the ready-message count of Q (passive declare); with --until it
 * polls every 5 ms on one connection until the count equals N (a queue that
 * does not exist yet counts as 0 meanwhile).
 *
 * Exit status: 0 ok, 1 failure, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#define DEFAULT_URL	 "amqp://guest:guest@127.0.0.1:5672/%2f"
#define DEFAULT_WINDOW	 1000
#define DEFAULT_PREFETCH 200
#define MAX_BODY	 (16 * 1024 * 1024)
#define MAX_NAMES	 32
#define CH		 1
#define MAX(a, b)	 ((a) > (b) ? (a) : (b))

static const char *prog = "dlqd-amqptool";

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void usage(FILE *f)
{
	fputs("Usage: dlqd-amqptool [--url URL] COMMAND [OPTIONS]\n"
	      "  publish --queue Q --count N [--kind success|mixed] [--size BYTES]\n"
	      "          [--window W] [--transient] [--declare [--quorum]]\n"
	      "  drain   --queue Q [--prefetch P] [--count N] [--timeout SECONDS]\n"
	      "  depth   --queue Q [--until N] [--timeout SECONDS]\n"
	      "  delete  [--queue Q]... [--exchange X]...\n"
	      "URL defaults to $DLQD_TEST_AMQP_URL, then " DEFAULT_URL ".\n",
	      f);
}

static double now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_sec(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static uint64_t parse_num(const char *opt, const char *s, uint64_t min, uint64_t max)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
		fprintf(stderr, "%s: bad %s: '%s' (%" PRIu64 "..%" PRIu64 ")\n", prog, opt, s, min,
			max);
		exit(2);
	}
	return v;
}

/* --- connection ----------------------------------------------------------- */

static void check_reply(amqp_rpc_reply_t r, const char *what)
{
	switch (r.reply_type) {
	case AMQP_RESPONSE_NORMAL:
		return;
	case AMQP_RESPONSE_NONE:
		die("%s: missing RPC reply", what);
	case AMQP_RESPONSE_LIBRARY_EXCEPTION:
		die("%s: %s", what, amqp_error_string2(r.library_error));
	case AMQP_RESPONSE_SERVER_EXCEPTION:
		if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
			amqp_connection_close_t *m = r.reply.decoded;
			die("%s: connection closed by the broker: %u %.*s", what, m->reply_code,
			    (int)m->reply_text.len, (char *)m->reply_text.bytes);
		}
		if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
			amqp_channel_close_t *m = r.reply.decoded;
			die("%s: channel closed by the broker: %u %.*s", what, m->reply_code,
			    (int)m->reply_text.len, (char *)m->reply_text.bytes);
		}
		die("%s: unexpected server method 0x%08x", what, r.reply.id);
	}
	die("%s: unknown reply type %d", what, (int)r.reply_type);
}

static amqp_connection_state_t connect_url(const char *url)
{
	struct amqp_connection_info ci;
	amqp_connection_state_t conn;
	amqp_socket_t *sock;
	char *copy;
	int r;

	copy = strdup(url);
	if (!copy)
		die("out of memory");
	amqp_default_connection_info(&ci);
	r = amqp_parse_url(copy, &ci);
	if (r != AMQP_STATUS_OK)
		die("bad URL '%s': %s", url, amqp_error_string2(r));
	if (ci.ssl)
		die("amqps:// is not supported by this tool");
	conn = amqp_new_connection();
	if (!conn)
		die("out of memory");
	sock = amqp_tcp_socket_new(conn);
	if (!sock)
		die("cannot create a socket");
	r = amqp_socket_open(sock, ci.host, ci.port);
	if (r != AMQP_STATUS_OK)
		die("cannot connect to %s:%d: %s", ci.host, ci.port, amqp_error_string2(r));
	check_reply(amqp_login(conn, ci.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, ci.user,
			       ci.password),
		    "login");
	amqp_channel_open(conn, CH);
	check_reply(amqp_get_rpc_reply(conn), "channel.open");
	free(copy);
	return conn;
}

static void disconnect(amqp_connection_state_t conn)
{
	/* Errors on the way out change nothing about what was measured. */
	amqp_channel_close(conn, CH, AMQP_REPLY_SUCCESS);
	amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(conn);
}

/*
 * Passive declare: the number of ready (not unacked) messages in q, or -1
 * when q does not exist (the channel is reopened so polling can go on).
 */
static int64_t queue_depth_try(amqp_connection_state_t conn, const char *q)
{
	amqp_queue_declare_ok_t *ok;
	amqp_rpc_reply_t r;

	ok = amqp_queue_declare(conn, CH, amqp_cstring_bytes(q), 1, 0, 0, 0, amqp_empty_table);
	if (ok)
		return ok->message_count;
	r = amqp_get_rpc_reply(conn);
	if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
	    r.reply.id == AMQP_CHANNEL_CLOSE_METHOD &&
	    ((amqp_channel_close_t *)r.reply.decoded)->reply_code == AMQP_NOT_FOUND) {
		amqp_channel_close_ok_t close_ok = { 0 };

		if (amqp_send_method(conn, CH, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok) !=
		    AMQP_STATUS_OK)
			die("channel.close-ok failed");
		amqp_channel_open(conn, CH);
		check_reply(amqp_get_rpc_reply(conn), "channel.open");
		return -1;
	}
	check_reply(r, "queue.declare (passive)");
	die("queue.declare (passive) %s failed", q);
}

static uint32_t queue_depth(amqp_connection_state_t conn, const char *q)
{
	int64_t n = queue_depth_try(conn, q);

	if (n < 0)
		die("no queue '%s'", q);
	return (uint32_t)n;
}

/*
 * A method that arrived on its own (not as an RPC reply) and ends the run:
 * channel.close / connection.close carry the broker's reason.
 */
static void die_on_close(const amqp_frame_t *f, const char *what)
{
	if (f->payload.method.id == AMQP_CHANNEL_CLOSE_METHOD) {
		amqp_channel_close_t *m = f->payload.method.decoded;
		die("%s: channel closed by the broker: %u %.*s", what, m->reply_code,
		    (int)m->reply_text.len, (char *)m->reply_text.bytes);
	}
	if (f->payload.method.id == AMQP_CONNECTION_CLOSE_METHOD) {
		amqp_connection_close_t *m = f->payload.method.decoded;
		die("%s: connection closed by the broker: %u %.*s", what, m->reply_code,
		    (int)m->reply_text.len, (char *)m->reply_text.bytes);
	}
}

/* --- publish -------------------------------------------------------------- */

enum kind {
	KIND_OK,
	KIND_RETRY,
	KIND_REJECT,
	KIND_INVALID,
	_KIND_MAX,
};

static enum kind kind_of(bool mixed, uint64_t i)
{
	unsigned k = (unsigned)(i % 20);

	if (!mixed || k < 16)
		return KIND_OK;
	if (k < 18)
		return KIND_RETRY;
	return k == 18 ? KIND_REJECT : KIND_INVALID;
}

/* Builds body i into buf (size cap); pads "payload" up to size bytes if asked. */
static size_t make_body(char *buf, size_t cap, uint64_t i, enum kind k, size_t size)
{
	static const char *const stub[] = {
		[KIND_OK] = "",
		[KIND_RETRY] = "\"stub\":{\"op\":\"fail\",\"status\":503,\"times\":1},",
		[KIND_REJECT] = "\"stub\":{\"op\":\"fail\",\"status\":400},",
		[KIND_INVALID] = "",
	};
	static const char fixed[] = "\"n\":";
	int n;

	if (k == KIND_INVALID) {
		/* Valid JSON, but no payload: INVALID_ENVELOPE, bytes kept. */
		n = snprintf(buf, cap,
			     "{\"message_id\":\"bench-%" PRIu64 "\",\"trace_id\":\"t%" PRIu64 "\"}",
			     i, i);
		return (size_t)n;
	}
	n = snprintf(buf, cap,
		     "{\"message_id\":\"bench-%" PRIu64 "\",\"trace_id\":\"t%" PRIu64
		     "\",\"payload\":{%s%s%" PRIu64,
		     i, i, stub[k], fixed, i);
	if (n < 0 || (size_t)n >= cap)
		die("body too large");
	/* ,"pad":"" costs 10 bytes, the closing }} two more. */
	if (size > (size_t)n + 12) {
		size_t pad = size - (size_t)n - 12;

		if ((size_t)n + pad + 13 > cap)
			die("--size too large");
		memcpy(buf + n, ",\"pad\":\"", 8);
		n += 8;
		memset(buf + n, 'x', pad);
		n += (int)pad;
		buf[n++] = '"';
	}
	if ((size_t)n + 3 > cap)
		die("body too large");
	buf[n++] = '}';
	buf[n++] = '}';
	buf[n] = '\0';
	return (size_t)n;
}

struct confirms {
	uint64_t published;
	uint64_t confirmed; /* every seq <= this is settled */
};

/*
 * Reads frames until the number of unconfirmed publishes is at most max.
 * RabbitMQ confirms in order (with "multiple"), so the highest tag acked
 * bounds what is settled.
 */
static void wait_confirms(amqp_connection_state_t conn, struct confirms *c, uint64_t max,
			  double deadline)
{
	while (c->published - c->confirmed > max) {
		struct timeval tv = { .tv_sec = 1 };
		amqp_frame_t f;
		int r;

		if (now_sec() > deadline)
			die("publish: no confirm for %" PRIu64 " messages before the timeout",
			    c->published - c->confirmed);
		r = amqp_simple_wait_frame_noblock(conn, &f, &tv);
		if (r == AMQP_STATUS_TIMEOUT)
			continue;
		if (r != AMQP_STATUS_OK)
			die("publish: reading confirms: %s", amqp_error_string2(r));
		if (f.frame_type != AMQP_FRAME_METHOD)
			continue;
		switch (f.payload.method.id) {
		case AMQP_BASIC_ACK_METHOD: {
			amqp_basic_ack_t *a = f.payload.method.decoded;
			if (a->delivery_tag > c->confirmed)
				c->confirmed = a->delivery_tag;
			break;
		}
		case AMQP_BASIC_NACK_METHOD: {
			amqp_basic_nack_t *a = f.payload.method.decoded;
			die("publish: the broker nacked message seq %" PRIu64, a->delivery_tag);
		}
		case AMQP_BASIC_RETURN_METHOD: {
			amqp_basic_return_t *m = f.payload.method.decoded;
			die("publish: message returned: %u %.*s (does the queue exist? try "
			    "--declare)",
			    m->reply_code, (int)m->reply_text.len, (char *)m->reply_text.bytes);
		}
		default:
			die_on_close(&f, "publish");
		}
		amqp_maybe_release_buffers(conn);
	}
}

static int cmd_publish(const char *url, const char *queue, uint64_t count, bool mixed, size_t size,
		       uint64_t window, bool persistent, bool declare, bool quorum)
{
	amqp_connection_state_t conn = connect_url(url);
	amqp_basic_properties_t props = {
		._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG,
		.content_type = amqp_cstring_bytes("application/json"),
		.delivery_mode = persistent ? 2 : 1,
	};
	uint64_t kinds[_KIND_MAX] = { 0 };
	struct confirms c = { 0 };
	size_t cap = size + 512;
	double t0, t1;
	char *buf;

	buf = malloc(cap);
	if (!buf)
		die("out of memory");
	if (declare) {
		amqp_table_entry_t qt = {
			.key = amqp_cstring_bytes("x-queue-type"),
			.value = { .kind = AMQP_FIELD_KIND_UTF8,
				   .value.bytes = amqp_cstring_bytes("quorum") },
		};
		amqp_table_t args = { .num_entries = quorum ? 1 : 0, .entries = &qt };
		amqp_queue_declare(conn, CH, amqp_cstring_bytes(queue), 0, 1, 0, 0, args);
		check_reply(amqp_get_rpc_reply(conn), "queue.declare");
	}
	amqp_confirm_select(conn, CH);
	check_reply(amqp_get_rpc_reply(conn), "confirm.select");

	t0 = now_sec();
	for (uint64_t i = 0; i < count; i++) {
		enum kind k = kind_of(mixed, i);
		size_t len = make_body(buf, cap, i, k, size);
		int r;

		kinds[k]++;
		r = amqp_basic_publish(conn, CH, amqp_empty_bytes, amqp_cstring_bytes(queue), 1, 0,
				       &props, (amqp_bytes_t){ .len = len, .bytes = buf });
		if (r != AMQP_STATUS_OK)
			die("publish: %s", amqp_error_string2(r));
		c.published++;
		if (c.published - c.confirmed >= window)
			wait_confirms(conn, &c, window - 1, now_sec() + 60);
	}
	wait_confirms(conn, &c, 0, now_sec() + 60);
	t1 = now_sec();
	disconnect(conn);
	free(buf);

	fprintf(stderr, "%s: published %" PRIu64 " messages to %s in %.3f s (%.0f msgs/s)\n", prog,
		count, queue, t1 - t0, count / (t1 - t0 > 0 ? t1 - t0 : 1e-9));
	printf("published=%" PRIu64 " ok=%" PRIu64 " retry=%" PRIu64 " reject=%" PRIu64
	       " invalid=%" PRIu64 " seconds=%.6f\n",
	       count, kinds[KIND_OK], kinds[KIND_RETRY], kinds[KIND_REJECT], kinds[KIND_INVALID],
	       t1 - t0);
	return 0;
}

/* --- drain ---------------------------------------------------------------- */

static int cmd_drain(const char *url, const char *queue, uint64_t prefetch, uint64_t count,
		     bool have_count, double timeout)
{
	amqp_connection_state_t conn = connect_url(url);
	uint64_t got = 0;
	double t0, t1, c0, c1, deadline;

	if (!have_count)
		count = queue_depth(conn, queue);
	if (count == 0) {
		disconnect(conn);
		printf("count=0 seconds=0 rate=0 cpu_us_per_msg=0\n");
		return 0;
	}
	amqp_basic_qos(conn, CH, 0, (uint16_t)prefetch, 0);
	check_reply(amqp_get_rpc_reply(conn), "basic.qos");

	c0 = cpu_sec();
	t0 = now_sec();
	deadline = t0 + timeout;
	amqp_basic_consume(conn, CH, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0,
			   amqp_empty_table);
	check_reply(amqp_get_rpc_reply(conn), "basic.consume");

	while (got < count) {
		struct timeval tv = { .tv_sec = 1 };
		amqp_envelope_t env;
		amqp_rpc_reply_t r;

		if (now_sec() > deadline)
			die("drain: only %" PRIu64 " of %" PRIu64 " messages before the timeout",
			    got, count);
		amqp_maybe_release_buffers(conn);
		r = amqp_consume_message(conn, &env, &tv, 0);
		if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
		    r.library_error == AMQP_STATUS_TIMEOUT)
			continue;
		if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
		    r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
			amqp_frame_t f;
			int s = amqp_simple_wait_frame(conn, &f);

			if (s != AMQP_STATUS_OK)
				die("drain: %s", amqp_error_string2(s));
			if (f.frame_type == AMQP_FRAME_METHOD)
				die_on_close(&f, "drain");
			continue;
		}
		check_reply(r, "drain");
		if (amqp_basic_ack(conn, CH, env.delivery_tag, 0) != AMQP_STATUS_OK)
			die("drain: basic.ack failed");
		amqp_destroy_envelope(&env);
		got++;
	}
	/* A synchronous call behind the acks: they have reached the broker. */
	(void)queue_depth(conn, queue);
	t1 = now_sec();
	c1 = cpu_sec();
	disconnect(conn);

	fprintf(stderr, "%s: drained %" PRIu64 " messages from %s in %.3f s (%.0f msgs/s)\n", prog,
		got, queue, t1 - t0, got / (t1 - t0));
	printf("count=%" PRIu64 " seconds=%.6f rate=%.1f cpu_us_per_msg=%.2f\n", got, t1 - t0,
	       got / (t1 - t0), (c1 - c0) * 1e6 / got);
	return 0;
}

/* --- depth, delete -------------------------------------------------------- */

static int cmd_depth(const char *url, const char *queue, uint64_t until, bool have_until,
		     double timeout)
{
	amqp_connection_state_t conn = connect_url(url);
	double deadline = now_sec() + timeout;
	int64_t n;

	for (;;) {
		/* While waiting, a queue that is not there yet counts as empty. */
		n = have_until ? queue_depth_try(conn, queue) : queue_depth(conn, queue);
		if (!have_until || (uint64_t)MAX(n, 0) == until)
			break;
		if (now_sec() > deadline) {
			disconnect(conn);
			fprintf(stderr, "%s: %s holds %" PRId64 ", not %" PRIu64 ", after %.0f s\n",
				prog, queue, MAX(n, 0), until, timeout);
			printf("%" PRId64 "\n", MAX(n, 0));
			return 1;
		}
		usleep(5000);
	}
	disconnect(conn);
	printf("%" PRId64 "\n", MAX(n, 0));
	return 0;
}

static int cmd_delete(const char *url, char **queues, size_t nq, char **exchanges, size_t nx)
{
	amqp_connection_state_t conn = connect_url(url);

	for (size_t i = 0; i < nq; i++) {
		amqp_queue_delete(conn, CH, amqp_cstring_bytes(queues[i]), 0, 0);
		check_reply(amqp_get_rpc_reply(conn), "queue.delete");
	}
	for (size_t i = 0; i < nx; i++) {
		amqp_exchange_delete(conn, CH, amqp_cstring_bytes(exchanges[i]), 0);
		check_reply(amqp_get_rpc_reply(conn), "exchange.delete");
	}
	disconnect(conn);
	return 0;
}

/* --- main ----------------------------------------------------------------- */

int main(int argc, char **argv)
{
	enum {
		OPT_URL = 256,
		OPT_QUEUE,
		OPT_COUNT,
		OPT_KIND,
		OPT_SIZE,
		OPT_WINDOW,
		OPT_TRANSIENT,
		OPT_DECLARE,
		OPT_PREFETCH,
		OPT_UNTIL,
		OPT_TIMEOUT,
		OPT_EXCHANGE,
		OPT_QUORUM,
		OPT_HELP,
	};
	static const struct option opts[] = {
		{ "url", required_argument, NULL, OPT_URL },
		{ "queue", required_argument, NULL, OPT_QUEUE },
		{ "count", required_argument, NULL, OPT_COUNT },
		{ "kind", required_argument, NULL, OPT_KIND },
		{ "size", required_argument, NULL, OPT_SIZE },
		{ "window", required_argument, NULL, OPT_WINDOW },
		{ "transient", no_argument, NULL, OPT_TRANSIENT },
		{ "declare", no_argument, NULL, OPT_DECLARE },
		{ "quorum", no_argument, NULL, OPT_QUORUM },
		{ "prefetch", required_argument, NULL, OPT_PREFETCH },
		{ "until", required_argument, NULL, OPT_UNTIL },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "exchange", required_argument, NULL, OPT_EXCHANGE },
		{ "help", no_argument, NULL, OPT_HELP },
		{ 0 },
	};
	const char *url = getenv("DLQD_TEST_AMQP_URL");
	char *queues[MAX_NAMES], *exchanges[MAX_NAMES];
	size_t nq = 0, nx = 0;
	uint64_t count = 0, size = 0, window = DEFAULT_WINDOW, prefetch = DEFAULT_PREFETCH;
	uint64_t until = 0, timeout = 120;
	bool have_count = false, have_until = false, mixed = false, persistent = true;
	bool declare = false, quorum = false;
	const char *cmd = NULL;
	int opt;

	if (!url || !*url)
		url = DEFAULT_URL;
	/* Options may come before or after the command word. */
	while (optind < argc) {
		opt = getopt_long(argc, argv, "+", opts, NULL);
		if (opt == -1) {
			if (cmd) {
				fprintf(stderr, "%s: unexpected argument '%s'\n", prog,
					argv[optind]);
				return 2;
			}
			cmd = argv[optind++];
			continue;
		}
		switch (opt) {
		case OPT_URL:
			url = optarg;
			break;
		case OPT_QUEUE:
			if (nq >= MAX_NAMES)
				die("too many --queue");
			queues[nq++] = optarg;
			break;
		case OPT_EXCHANGE:
			if (nx >= MAX_NAMES)
				die("too many --exchange");
			exchanges[nx++] = optarg;
			break;
		case OPT_COUNT:
			count = parse_num("--count", optarg, 0, UINT32_MAX);
			have_count = true;
			break;
		case OPT_KIND:
			if (strcmp(optarg, "mixed") == 0)
				mixed = true;
			else if (strcmp(optarg, "success") == 0)
				mixed = false;
			else {
				fprintf(stderr, "%s: --kind is success or mixed\n", prog);
				return 2;
			}
			break;
		case OPT_SIZE:
			size = parse_num("--size", optarg, 0, MAX_BODY);
			break;
		case OPT_WINDOW:
			window = parse_num("--window", optarg, 1, 1000000);
			break;
		case OPT_TRANSIENT:
			persistent = false;
			break;
		case OPT_DECLARE:
			declare = true;
			break;
		case OPT_QUORUM:
			quorum = true;
			break;
		case OPT_PREFETCH:
			prefetch = parse_num("--prefetch", optarg, 1, 65535);
			break;
		case OPT_UNTIL:
			until = parse_num("--until", optarg, 0, UINT32_MAX);
			have_until = true;
			break;
		case OPT_TIMEOUT:
			timeout = parse_num("--timeout", optarg, 1, 86400);
			break;
		case OPT_HELP:
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!cmd) {
		usage(stderr);
		return 2;
	}
	if (strcmp(cmd, "delete") == 0)
		return cmd_delete(url, queues, nq, exchanges, nx);
	if (nq != 1) {
		fprintf(stderr, "%s: %s needs exactly one --queue\n", prog, cmd);
		return 2;
	}
	if (strcmp(cmd, "publish") == 0) {
		if (!have_count) {
			fprintf(stderr, "%s: publish needs --count\n", prog);
			return 2;
		}
		return cmd_publish(url, queues[0], count, mixed, (size_t)size, window, persistent,
				   declare, quorum);
	}
	if (strcmp(cmd, "drain") == 0)
		return cmd_drain(url, queues[0], prefetch, count, have_count, (double)timeout);
	if (strcmp(cmd, "depth") == 0)
		return cmd_depth(url, queues[0], until, have_until, (double)timeout);
	fprintf(stderr, "%s: unknown command '%s'\n", prog, cmd);
	usage(stderr);
	return 2;
}
