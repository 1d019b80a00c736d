/*
 * Unit tests for taxonomy_when: each match key compiled into the sets of a
 * struct rule, and each kind of bad value reported at its own path.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <string.h>

#include "common/taxonomy_table.h"
#include "common/taxonomy_test.h"
#include "testutil.h"

static void rule_done(struct rule *ru)
{
	struct strlist *lists[] = { &ru->transport, &ru->handler_code };

	for (size_t i = 0; i < ARRAY_SIZE(lists); i++) {
		for (size_t j = 0; j < lists[i]->n; j++)
			free(lists[i]->v[j]);
		free(lists[i]->v);
	}
}

/* Compiles the "when" in text into ru; its diagnostics go to d (file "w"). */
static int compile(const char *text, struct rule *ru, struct diag *d)
{
	json_error_t err;
	json_t *o = json_loads(text, JSON_DECODE_ANY, &err);
	struct jsoncheck c;
	int r;

	assert_non_null(o);
	*ru = (struct rule){ 0 };
	jsoncheck_init(&c, "w", text, strlen(text));
	r = taxonomy_when_parse(&c, o, ru);
	assert_int_equal(r, 0);
	r = jsoncheck_finish(&c, d);
	json_decref(o);
	return r;
}

static bool http_has(const struct rule *ru, unsigned status)
{
	return taxonomy_bit_test(ru->http, status - TAXONOMY_HTTP_MIN);
}

static void test_every_key(void **state)
{
	struct rule ru;
	struct diag d = { 0 };

	assert_int_equal(compile("{\"http_status\": [418, \"401\", \"5xx\", 100.0],"
				 " \"transport\": [\"COULDNT_CONNECT\", \"SSL_CACERT\"],"
				 " \"timeout\": true, \"exit_code\": [0, 75, 255.0],"
				 " \"signal\": [\"SIGKILL\", \"TERM\", 6, 64],"
				 " \"handler_code\": [\"lower.case\"]}",
				 &ru, &d),
			 0);
	assert_int_equal(d.n, 0);
	assert_int_equal(ru.keys, MATCH_HTTP_STATUS | MATCH_TRANSPORT | MATCH_TIMEOUT |
					  MATCH_EXIT_CODE | MATCH_SIGNAL | MATCH_HANDLER_CODE);
	for (unsigned s = TAXONOMY_HTTP_MIN; s <= TAXONOMY_HTTP_MAX; s++)
		assert_int_equal(http_has(&ru, s),
				 s == 418 || s == 401 || s == 100 || (s >= 500 && s <= 599));
	for (unsigned e = 0; e < 256; e++)
		assert_int_equal(taxonomy_bit_test(ru.exit_codes, e),
				 e == 0 || e == 75 || e == 255);
	assert_true(ru.signals == ((UINT64_C(1) << (SIGKILL - 1)) | (UINT64_C(1) << (SIGTERM - 1)) |
				   (UINT64_C(1) << (SIGABRT - 1)) | (UINT64_C(1) << 63)));
	assert_int_equal(ru.transport.n, 2);
	assert_string_equal(ru.transport.v[0], "COULDNT_CONNECT");
	assert_string_equal(ru.transport.v[1], "SSL_CACERT");
	assert_int_equal(ru.handler_code.n, 1);
	assert_string_equal(ru.handler_code.v[0], "lower.case");
	rule_done(&ru);
}

static void test_bad_values(void **state)
{
	static const char text[] =
		"{\"http_status\": [99, \"6xx\", \"40x\", true, 404.5],\n"
		" \"transport\": [\"CURLE_COULDNT_CONNECT\", \"\", \"lower\", 5],\n"
		" \"exit_code\": [256, -1, \"1\"],\n"
		" \"signal\": [0, 65, \"SIGFOO\"],\n"
		" \"handler_code\": [\"\", 5],\n"
		" \"timeout\": false,\n"
		" \"bogus\": [1]}";
	static const char *const want[] = {
		"w:1: http_status[0]: 99 is out of range (100..599)",
		"w:1: http_status[1]: expected an HTTP status 100..599, as a number, a string like "
		"\"401\" or a class like \"4xx\"",
		"w:1: http_status[2]: expected an HTTP status 100..599, as a number, a string like "
		"\"401\" or a class like \"4xx\"",
		"w:1: http_status[3]: expected an HTTP status 100..599, as a number, a string like "
		"\"401\" or a class like \"4xx\"",
		"w:1: http_status[4]: expected an HTTP status 100..599, as a number, a string like "
		"\"401\" or a class like \"4xx\"",
		"w:2: transport[0]: write \"CURLE_COULDNT_CONNECT\" without the CURLE_ prefix",
		"w:2: transport[1]: invalid libcurl error name \"\" (1 to 47 characters of A-Z, "
		"0-9 "
		"and _, e.g. \"COULDNT_CONNECT\")",
		"w:2: transport[2]: invalid libcurl error name \"lower\" (1 to 47 characters of "
		"A-Z, "
		"0-9 and _, e.g. \"COULDNT_CONNECT\")",
		"w:2: transport[3]: expected a string, got integer",
		"w:3: exit_code[0]: 256 is out of range (0..255)",
		"w:3: exit_code[1]: -1 is out of range (0..255)",
		"w:3: exit_code[2]: expected an integer, got string",
		"w:4: signal[0]: 0 is out of range (1..64)",
		"w:4: signal[1]: 65 is out of range (1..64)",
		"w:4: signal[2]: expected a signal number 1..64 or a name like \"SIGKILL\" or "
		"\"KILL\"",
		"w:5: handler_code[0]: handler codes are 1 to 63 characters",
		"w:5: handler_code[1]: expected a string, got integer",
		"w:6: timeout: expected true",
		"w:7: bogus: unknown match key (expected http_status, transport, timeout, "
		"exit_code, signal or handler_code)",
	};
	struct rule ru;
	struct diag d = { 0 };

	assert_int_equal(compile(text, &ru, &d), -EINVAL);
	assert_diags(&d, want, ARRAY_SIZE(want));
	diag_done(&d);
	rule_done(&ru);
}

static void test_shapes(void **state)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "[]", "w:1: expected an object, got array" },
		{ "{}", "w:1: needs at least one of http_status, transport, timeout, exit_code, "
			"signal, handler_code" },
		{ "{\"exit_code\": 1}", "w:1: exit_code: expected an array, got integer" },
		{ "{\"exit_code\": []}", "w:1: exit_code: must not be empty" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct rule ru;
		struct diag d = { 0 };

		assert_int_equal(compile(cases[i].text, &ru, &d), -EINVAL);
		assert_int_equal(d.n, 1);
		assert_string_equal(d.lines[0], cases[i].want);
		diag_done(&d);
		rule_done(&ru);
	}
}

/* At most 1000 values for one key. */
static void test_values_max(void **state)
{
	struct buf b;
	struct rule ru;
	struct diag d = { 0 };

	for (size_t n = 1000; n <= 1001; n++) {
		buf_init(&b, SIZE_MAX);
		buf_printf(&b, "{\"handler_code\": [");
		for (size_t i = 0; i < n; i++)
			buf_printf(&b, "%s\"C%zu\"", i ? "," : "", i);
		buf_printf(&b, "]}");
		assert_int_equal(compile(b.data, &ru, &d), n == 1000 ? 0 : -EINVAL);
		assert_int_equal(ru.handler_code.n, n == 1000 ? 1000 : 0);
		if (n > 1000)
			assert_string_equal(d.lines[0], "w:1: handler_code: at most 1000 values");
		diag_done(&d);
		rule_done(&ru);
		buf_done(&b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_key),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_shapes),
		cmocka_unit_test(test_values_max),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
