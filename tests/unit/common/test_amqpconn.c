/*
 * test_amqpconn: what a connection target takes from a config without a
 * broker: the URL as librabbitmq parses it, the "host:port" shown in
 * STATUS=, password_file, the TLS settings, and that the target owns copies
 * of all of them so the config can be freed at once (reload frees the old
 * one).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/amqpconn.h"
#include "common/config.h"

static struct config *parse(const char *broker_lines)
{
	struct config *c = NULL;
	struct diag d = { 0 };
	_cleanup_free_ char *text = NULL;

	assert_true(asprintf(&text,
			     "[broker]\n%s[pipeline]\nqueue = j\n"
			     "[handler]\ntype = http\nurl = http://h/\n",
			     broker_lines) > 0);
	assert_int_equal(config_parse("/etc/dlqd/t.conf", text, &c, &d), 0);
	assert_int_equal(d.n, 0);
	return c;
}

/* Overwrites every string of c's [broker] section, then frees c: a target
 * that still pointed into it would now read garbage. */
static void scribble_and_free(struct config *c)
{
	char *s[] = { c->broker.url, c->broker.password_file, c->broker.tls_ca_file,
		      c->broker.tls_cert_file, c->broker.tls_key_file };

	for (size_t i = 0; i < ARRAY_SIZE(s); i++)
		if (s[i])
			memset(s[i], 'X', strlen(s[i]));
	c->broker.tls_verify_peer = !c->broker.tls_verify_peer;
	c->broker.tls_verify_hostname = !c->broker.tls_verify_hostname;
	config_free(c);
}

static void test_endpoint(void **state)
{
	static const struct {
		const char *url;
		const char *endpoint; /* NULL: librabbitmq refuses the URL */
	} cases[] = {
		{ "amqp://guest:guest@127.0.0.1:5672/%2f", "127.0.0.1:5672" },
		{ "amqp://rabbit.example/%2f", "rabbit.example:5672" },
		{ "amqps://u@rabbit.example", "rabbit.example:5671" },
		{ "amqps://u:@rabbit.example:5999/v", "rabbit.example:5999" },
		{ "amqp://u:p%40ss@[::1]:5673/%2f", "[::1]:5673" },
		{ "amqp://u:p@[::1]/%2f", "[::1]:5672" },
		{ "amqp:///%2f", "localhost:5672" },
		{ "amqp://h:/%2f", NULL },
		{ "amqp://h:99999999999/%2f", NULL },
		{ "http://h/", NULL },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char buf[AMQPCONN_ENDPOINT_MAX] = "";
		int r = amqpconn_url_endpoint(cases[i].url, buf, sizeof(buf));

		if (!cases[i].endpoint) {
			assert_int_equal(r, -EINVAL);
			continue;
		}
		assert_int_equal(r, 0);
		assert_string_equal(buf, cases[i].endpoint);
		/* The target says the same, with no credentials in it. */
		struct amqpconn_target t;
		char err[256];
		_cleanup_free_ char *line = NULL;
		assert_true(asprintf(&line, "url = %s\n", cases[i].url) > 0);
		struct config *c = parse(line);
		assert_int_equal(amqpconn_target_init(&t, c, err, sizeof(err)), 0);
		scribble_and_free(c);
		assert_int_equal(t.n_nodes, 1);
		assert_string_equal(t.nodes[0].endpoint, cases[i].endpoint);
		assert_null(strchr(t.nodes[0].endpoint, '@'));
		amqpconn_target_done(&t);
	}
}

static void test_bad_url(void **state)
{
	struct config *c = parse("url = amqp://h/%2f\n");
	struct amqpconn_target t;
	char err[256] = "";

	/* config.c refuses such a URL; the adapter must hold on its own. */
	free(c->broker.urls[0]);
	c->broker.urls[0] = strdup("amqp://h:/%2f");
	assert_non_null(c->broker.urls[0]);

	assert_int_equal(amqpconn_target_init(&t, c, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "invalid broker url #1");
	assert_null(t.nodes);
	config_free(c);
}

static void test_owns_copies(void **state)
{
	char dir[] = "/tmp/test-amqpconn-XXXXXX", pw[64], *lines = NULL;
	struct amqpconn_target t;
	char err[256];
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(pw, sizeof(pw), "%s/pw", dir);
	assert_non_null(f = fopen(pw, "w"));
	fputs("s3cret\r\n", f);
	fclose(f);
	assert_true(asprintf(&lines,
			     "url = amqps://dlqd:urlpw@rabbit.example:5999/prod\n"
			     "password_file = %s\n"
			     "tls_ca_file = /etc/ssl/ca.pem\n"
			     "tls_cert_file = /etc/dlqd/client.pem\n"
			     "tls_key_file = /etc/dlqd/client.key\n"
			     "tls_verify_peer = false\n",
			     pw) > 0);
	struct config *c = parse(lines);
	free(lines);
	assert_int_equal(amqpconn_target_init(&t, c, err, sizeof(err)), 0);
	scribble_and_free(c);

	assert_string_equal(t.nodes[0].info.host, "rabbit.example");
	assert_int_equal(t.nodes[0].info.port, 5999);
	assert_true(t.nodes[0].info.ssl);
	assert_string_equal(t.nodes[0].info.user, "dlqd");
	assert_string_equal(t.nodes[0].info.vhost, "prod");
	assert_string_equal(t.password, "s3cret"); /* the file wins, line end cut */
	assert_string_equal(t.nodes[0].endpoint, "rabbit.example:5999");
	assert_string_equal(t.tls.ca_file, "/etc/ssl/ca.pem");
	assert_string_equal(t.tls.cert_file, "/etc/dlqd/client.pem");
	assert_string_equal(t.tls.key_file, "/etc/dlqd/client.key");
	assert_false(t.tls.verify_peer);
	assert_true(t.tls.verify_hostname);
	amqpconn_target_done(&t);
	assert_null(t.password);
	assert_null(t.tls.ca_file);

	assert_int_equal(unlink(pw), 0);
	assert_int_equal(rmdir(dir), 0);
}

static void test_password_file_missing(void **state)
{
	struct config *c = parse("url = amqp://u@h/%2f\npassword_file = /nonexistent/pw\n");
	struct amqpconn_target t;
	char err[256] = "";

	assert_int_equal(amqpconn_target_init(&t, c, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/pw"));
	assert_null(t.nodes);
	config_free(c);
}

/* A loopback port nothing listens on: bound, then closed. */
static int closed_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* Several nodes: kept in order, each with its own endpoint; open_any tries
 * every one from the given node and names each in the error. */
static void test_several_nodes(void **state)
{
	int p1 = closed_port(), p2 = closed_port();
	_cleanup_free_ char *line = NULL;
	struct amqpconn_target t;
	amqp_connection_state_t conn = NULL;
	char err[1024] = "", want[64];
	size_t node = 1;

	assert_true(asprintf(&line, "url = amqp://u:p@127.0.0.1:%d/%%2f  amqp://127.0.0.1:%d/v\n",
			     p1, p2) > 0);
	struct config *c = parse(line);
	assert_int_equal(amqpconn_target_init(&t, c, err, sizeof(err)), 0);
	scribble_and_free(c);
	assert_int_equal(t.n_nodes, 2);
	snprintf(want, sizeof(want), "127.0.0.1:%d", p1);
	assert_string_equal(t.nodes[0].endpoint, want);
	assert_string_equal(t.nodes[0].info.vhost, "/");
	snprintf(want, sizeof(want), "127.0.0.1:%d", p2);
	assert_string_equal(t.nodes[1].endpoint, want);
	assert_string_equal(t.nodes[1].info.vhost, "v");

	assert_int_equal(amqpconn_open_any(&t, &node, "test", 0, &conn, err, sizeof(err)),
			 -ECONNRESET);
	assert_null(conn);
	assert_int_equal(node, 1); /* unchanged when none answered */
	/* Both reasons, the start node's first. */
	char *a = strstr(err, want);
	snprintf(want, sizeof(want), "127.0.0.1:%d", p1);
	char *b = strstr(err, want);
	assert_non_null(a);
	assert_non_null(b);
	assert_true(a < b);
	assert_non_null(strstr(err, "; "));
	amqpconn_target_done(&t);
	assert_null(t.nodes);
	assert_int_equal(t.n_nodes, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_endpoint),      cmocka_unit_test(test_bad_url),
		cmocka_unit_test(test_owns_copies),   cmocka_unit_test(test_password_file_missing),
		cmocka_unit_test(test_several_nodes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
