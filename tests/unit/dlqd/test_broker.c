/*
 * test_broker: what the broker does without a broker: it keeps its own
 * copies of the config (the daemon frees a config after a reload), names
 * the topology and the endpoint from them, refuses work while its links are
 * down, and reports why a connection failed. The AMQP paths themselves are
 * covered by the integration tests against a real RabbitMQ.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/config.h"
#include "common/topology.h"
#include "dlqd/broker.h"

static struct config *parse(const char *url, const char *pipeline_extra)
{
	struct config *c = NULL;
	struct diag d = { 0 };
	_cleanup_free_ char *text = NULL;

	assert_true(asprintf(&text,
			     "[broker]\nurl = %s\nheartbeat = 2s\nprefetch = 7\n"
			     "[pipeline]\nqueue = billing.jobs\n%s"
			     "[handler]\ntype = http\nurl = http://h/\n",
			     url, pipeline_extra) > 0);
	assert_int_equal(config_parse("/etc/dlqd/t.conf", text, &c, &d), 0);
	assert_int_equal(d.n, 0);
	return c;
}

/* Overwrites what broker_new() reads, then frees c: a broker that kept a
 * pointer into it would now see garbage (or, under ASan, a use after free). */
static void scribble_and_free(struct config *c)
{
	memset(c->broker.url, 'X', strlen(c->broker.url));
	memset(c->pipeline.queue, 'Y', strlen(c->pipeline.queue));
	c->broker.heartbeat_usec = 1;
	c->broker.prefetch = 60000;
	c->pipeline.queue_type = QUEUE_QUORUM;
	c->pipeline.declare = !c->pipeline.declare;
	config_free(c);
}

static void on_delivery(void *userdata, struct broker_msg *m)
{
	fail_msg("no delivery expected");
}

static void on_connection(void *userdata, bool up)
{
	fail_msg("no connection expected");
}

static const struct broker_callbacks callbacks = {
	.delivery = on_delivery,
	.connection = on_connection,
};

static void on_confirm(void *userdata, int r, const char *reason)
{
	fail_msg("no confirm expected");
}

static void on_dlq(void *userdata, int r, uint64_t depth, uint64_t oldest_usec)
{
	fail_msg("no probe result expected");
}

static void test_owns_config(void **state)
{
	sd_event *e = NULL;
	struct broker *b = NULL;
	char lane[TOPOLOGY_NAME_MAX];

	assert_int_equal(sd_event_new(&e), 0);
	struct config *c = parse("amqp://u:p@[::1]:5999/%2f", "");
	assert_int_equal(broker_new(e, c, &callbacks, NULL, &b), 0);
	scribble_and_free(c);

	assert_string_equal(broker_queue(b), "billing.jobs");
	assert_string_equal(broker_retry_exchange(b), "billing.jobs.retry");
	assert_string_equal(broker_dlx(b), "billing.jobs.dlx");
	assert_string_equal(broker_endpoint(b), "[::1]:5999");
	topology_lane(broker_queue(b), 1250, lane);
	assert_string_equal(lane, "billing.jobs.retry.1250");
	assert_false(broker_is_up(b));
	assert_string_equal(broker_last_error(b), "");
	assert_null(broker_free(b));
	assert_null(broker_free(NULL));
	sd_event_unref(e);
}

static void test_bad_url(void **state)
{
	sd_event *e = NULL;
	struct broker *b = NULL;

	assert_int_equal(sd_event_new(&e), 0);
	/* config.c refuses an empty port too (librabbitmq's parser); the
	 * broker must hold on its own. */
	struct config *c = parse("amqp://h/%2f", "");
	free(c->broker.urls[0]);
	c->broker.urls[0] = strdup("amqp://h:/%2f");
	assert_non_null(c->broker.urls[0]);
	assert_int_equal(broker_new(e, c, &callbacks, NULL, &b), -EINVAL);
	assert_null(b);
	config_free(c);
	sd_event_unref(e);
}

/* A loopback port nobody listens on (bound, then closed at once). */
static int closed_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void test_link_down(void **state)
{
	sd_event *e = NULL;
	struct broker *b = NULL;
	struct broker_msg m = { .tag = 1 };
	struct copy copy = { .exchange = "x", .routing_key = "k", .body = "{}", .len = 2 };
	char url[128], endpoint[64];
	uint64_t id = 0, deadline;
	int port = closed_port();

	snprintf(url, sizeof(url), "amqp://guest:guest@127.0.0.1:%d/%%2f", port);
	snprintf(endpoint, sizeof(endpoint), "127.0.0.1:%d", port);
	assert_int_equal(sd_event_new(&e), 0);
	struct config *c = parse(url, "declare = false\n");
	assert_int_equal(broker_new(e, c, &callbacks, NULL, &b), 0);
	scribble_and_free(c);
	assert_string_equal(broker_endpoint(b), endpoint);

	/* Nothing works while the links are down, and no callback runs. */
	assert_int_equal(broker_publish(b, &copy, NULL, on_confirm, NULL, &id), -ENOTCONN);
	assert_int_equal(broker_probe_dlq(b, on_dlq, NULL), -ENOTCONN);
	assert_int_equal(broker_ensure_lane(b, 1000), -ENOTCONN);
	assert_int_equal(broker_ack(b, &m), -ENOTCONN);
	assert_int_equal(broker_requeue(b, &m), -ENOTCONN);
	assert_int_equal(broker_stop_consuming(b), 0);

	/* The first attempt is immediate; its failure names the endpoint
	 * (the copied URL, not the config's scribbled one). */
	assert_int_equal(broker_start(b), 0);
	assert_int_equal(broker_start(b), 0);
	deadline = now_monotonic_usec() + 10 * USEC_PER_SEC;
	while (!broker_last_error(b)[0] && now_monotonic_usec() < deadline)
		assert_true(sd_event_run(e, 100 * USEC_PER_MSEC) >= 0);
	assert_non_null(strstr(broker_last_error(b), "consumer connection"));
	assert_non_null(strstr(broker_last_error(b), endpoint));
	assert_false(broker_is_up(b));
	/* It keeps trying, with backoff, until freed. */
	for (int i = 0; i < 5; i++)
		assert_true(sd_event_run(e, 100 * USEC_PER_MSEC) >= 0);
	assert_false(broker_is_up(b));
	assert_null(broker_free(b));
	sd_event_unref(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_owns_config),
		cmocka_unit_test(test_bad_url),
		cmocka_unit_test(test_link_down),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
