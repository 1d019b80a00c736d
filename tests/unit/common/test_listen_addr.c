/*
 * test_listen_addr: the one parser of [metrics] listen: the host and port it
 * yields for every accepted shape, port 0 (taken here, refused by config),
 * and every malformed address left untouched.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/listen_addr.h"
#include "common/util.h"

static void test_good(void **state)
{
	static const struct {
		const char *in, *host;
		uint16_t port;
		bool ipv6;
	} ok[] = {
		{ "127.0.0.1:9464", "127.0.0.1", 9464, false },
		{ "0.0.0.0:0", "0.0.0.0", 0, false },
		{ "localhost:1", "localhost", 1, false },
		{ "metrics.example.com:09100", "metrics.example.com", 9100, false },
		{ "[::]:9464", "::", 9464, true },
		{ "[::1]:0", "::1", 0, true },
		{ "[fe80::1%eth0]:65535", "fe80::1%eth0", 65535, true },
	};

	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		struct listen_addr a;

		memset(&a, 0xff, sizeof(a));
		if (listen_addr_parse(ok[i].in, &a) != 0)
			fail_msg("'%s' refused", ok[i].in);
		assert_string_equal(a.host, ok[i].host);
		assert_int_equal(a.port, ok[i].port);
		assert_int_equal(a.ipv6, ok[i].ipv6);
	}
}

static void test_bad(void **state)
{
	static const char *const bad[] = {
		"",
		"127.0.0.1",
		":9464",
		"127.0.0.1:",
		"127.0.0.1:65536",
		"127.0.0.1:99999999999999999999999",
		"127.0.0.1:-1",
		"127.0.0.1:x",
		"127.0.0.1:80x",
		"127.0.0.1:1:2",
		"::1:9464",
		"[::1]",
		"[::1]9464",
		"[]:9464",
		"[::1:9464",
		"[::1]:",
		"[127.0.0.1]:0",
		"127.0.0.1: 80",
		"127.0.0.1:80 ",
		" 127.0.0.1:80",
		"127.0.0.1:+80",
		"a b:80",
		"a]:80",
		"a\t:80",
	};
	struct listen_addr a = { .host = "keep", .port = 7 };
	char long_host[LISTEN_ADDR_HOST_MAX + 8];

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (listen_addr_parse(bad[i], &a) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
	assert_int_equal(listen_addr_parse(NULL, &a), -EINVAL);
	assert_string_equal(a.host, "keep");
	assert_int_equal(a.port, 7);

	/* The longest host that fits, and one byte more. */
	memset(long_host, 'h', LISTEN_ADDR_HOST_MAX - 1);
	strcpy(long_host + LISTEN_ADDR_HOST_MAX - 1, ":80");
	assert_int_equal(listen_addr_parse(long_host, &a), 0);
	assert_int_equal(strlen(a.host), LISTEN_ADDR_HOST_MAX - 1);
	memset(long_host, 'h', LISTEN_ADDR_HOST_MAX);
	strcpy(long_host + LISTEN_ADDR_HOST_MAX, ":80");
	assert_int_equal(listen_addr_parse(long_host, &a), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_bad),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
