/*
 * test_shellwords: the argv split of [handler] command: quoting, escapes,
 * empty words, no expansion, and every malformed command with its reason.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/shellwords.h"
#include "common/strv.h"
#include "common/util.h"

static void test_split(void **state)
{
	static const struct {
		const char *in;
		const char *out[6];
	} ok[] = {
		{ "/bin/a", { "/bin/a" } },
		{ "  /bin/a   b\tc\n", { "/bin/a", "b", "c" } },
		{ "a 'b c' \"d e\"", { "a", "b c", "d e" } },
		{ "a 'x\\y' \"p\\\"q\\\\r\\n\"", { "a", "x\\y", "p\"q\\r\\n" } },
		{ "a b\\ c \\'d", { "a", "b c", "'d" } },
		{ "a '' \"\"", { "a", "", "" } },
		{ "pre'mid'\"post\"", { "premidpost" } },
		{ "a \"it's\" 'say \"hi\"'", { "a", "it's", "say \"hi\"" } },
		{ "a $HOME `x` *", { "a", "$HOME", "`x`", "*" } },
		{ "a ;b #c", { "a", ";b", "#c" } },
	};

	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		char **argv = NULL;
		const char *why = NULL;
		size_t n = 0;

		assert_int_equal(shellwords_split(ok[i].in, &argv, &why), 0);
		for (; ok[i].out[n]; n++) {
			assert_non_null(argv[n]);
			assert_string_equal(argv[n], ok[i].out[n]);
		}
		assert_null(argv[n]);
		argv = strv_free(argv);
		assert_null(argv);
		/* why is optional */
		assert_int_equal(shellwords_split(ok[i].in, &argv, NULL), 0);
		strv_freep(&argv);
		assert_null(argv);
	}
}

static void test_bad(void **state)
{
	static const struct {
		const char *in, *why;
	} bad[] = {
		{ "", "empty command" },
		{ "   ", "empty command" },
		{ "\t\n", "empty command" },
		{ NULL, "empty command" },
		{ "a 'b", "unbalanced single quote" },
		{ "'", "unbalanced single quote" },
		{ "a \"b", "unbalanced double quote" },
		{ "a \"b\\\"", "unbalanced double quote" },
		{ "a \\", "backslash at the end of the command" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char **argv = (char **)0x1;
		const char *why = NULL;

		assert_int_equal(shellwords_split(bad[i].in, &argv, &why), -EINVAL);
		assert_ptr_equal(argv, (char **)0x1);
		assert_non_null(why);
		assert_string_equal(why, bad[i].why);
		assert_int_equal(shellwords_split(bad[i].in, &argv, NULL), -EINVAL);
	}
	assert_null(strv_free(NULL));
}

static void test_strv_push(void **state)
{
	char **v = NULL;
	size_t n = 0;

	assert_int_equal(strv_push(&v, &n, strdup("a")), 0);
	assert_int_equal(strv_push(&v, &n, strdup("b")), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0], "a");
	assert_string_equal(v[1], "b");
	assert_null(v[2]);
	strv_freep(&v);
	assert_null(v);
}

static void test_strv_copy(void **state)
{
	char *const src[] = { "/bin/echo", "", "two words", NULL };
	char *const empty[] = { NULL };
	_cleanup_(strv_freep) char **c = strv_copy(src);
	_cleanup_(strv_freep) char **e = strv_copy(empty);

	assert_non_null(c);
	for (size_t i = 0; i < 3; i++) {
		assert_ptr_not_equal(c[i], src[i]);
		assert_string_equal(c[i], src[i]);
	}
	assert_null(c[3]);
	assert_non_null(e);
	assert_null(e[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_strv_push),
		cmocka_unit_test(test_strv_copy),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
