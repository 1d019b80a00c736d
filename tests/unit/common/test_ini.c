/*
 * test_ini: the INI reader on its own, with a handler that writes down every
 * call it gets: sections, keys, values as cut (comments, quotes, escapes, the
 * shell syntax that keeps quotes), line numbers with a BOM and CRLF, every
 * syntax error, skipped sections and keys, and the NUL byte that stops it.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/ini.h"
#include "common/util.h"

/*
 * The handler under test's rules: section [unknown] is unknown, key "skip"
 * is refused, key "command" is read with the shell syntax.
 */
static bool on_section(void *userdata, const char *name, unsigned line)
{
	buf_printf(userdata, "%u [%s]\n", line, name);
	return strcmp(name, "unknown") != 0;
}

static int on_key(void *userdata, const char *key, unsigned line)
{
	buf_printf(userdata, "%u key <%s>\n", line, key);
	if (strcmp(key, "skip") == 0)
		return -1;
	return strcmp(key, "command") == 0 ? INI_VALUE_SHELL : INI_VALUE_PLAIN;
}

static void on_value(void *userdata, const char *value, unsigned line)
{
	if (value)
		buf_printf(userdata, "%u value <%s>\n", line, value);
	else
		buf_printf(userdata, "%u no value\n", line);
}

static void on_error(void *userdata, unsigned line, const char *fmt, ...) _printf_(3, 4);

static void on_error(void *userdata, unsigned line, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	buf_printf(userdata, "%u error: %s\n", line, msg);
}

static const struct ini_handler handler = {
	.section = on_section,
	.key = on_key,
	.value = on_value,
	.error = on_error,
};

/* Reads the len bytes of text and compares the transcript with want. */
static void expect_len(const char *text, size_t len, int want_r, const char *want)
{
	struct buf got;

	buf_init(&got, 1 << 20);
	assert_int_equal(ini_parse(text, len, &handler, &got), want_r);
	assert_string_equal(got.data ? got.data : "", want);
	buf_done(&got);
}

static void expect(const char *text, const char *want)
{
	expect_len(text, strlen(text), 0, want);
}

static void test_structure(void **state)
{
	expect("", "");
	expect("\n\n  \n", "");
	expect("; comment\n# comment\n  ; indented\n\t# tab\n", "");
	expect("[a]\nx = 1\n[b] ; comment\ny=2\n",
	       "1 [a]\n2 key <x>\n2 value <1>\n3 [b]\n4 key <y>\n4 value <2>\n");
	/* Names are trimmed; an empty value is a value. */
	expect("  [ a b ]  \n  key name\t=   \n", "1 [a b]\n2 key <key name>\n2 value <>\n");
	/* Only the first '=' separates: the rest is the value's. */
	expect("[a]\nk = x=y\n", "1 [a]\n2 key <k>\n2 value <x=y>\n");
	/* No final newline; CRLF and a BOM do not count as text. */
	expect("\xef\xbb\xbf[a]\r\nk = v\r\n\r\nj = w",
	       "1 [a]\n2 key <k>\n2 value <v>\n4 key <j>\n4 value <w>\n");
	/* A BOM only counts at the very start. */
	expect("[a]\n\xef\xbb\xbfk = v\n", "1 [a]\n2 key <\xef\xbb\xbfk>\n2 value <v>\n");
}

static void test_errors(void **state)
{
	expect("k = v\n[a]\n",
	       "1 error: key 'k' is outside of any section (add a [section] header above it)\n"
	       "2 [a]\n");
	expect("[a\nk = v\n", "1 error: malformed section header (expected [name])\n");
	expect("[]\nk = v\n", "1 error: malformed section header (empty name)\n");
	expect("[ \t]\n", "1 error: malformed section header (empty name)\n");
	expect("[a] x\nk = v\n", "1 error: unexpected text after section header: 'x'\n");
	expect("[a]\njust words\n = 5\n",
	       "1 [a]\n"
	       "2 error: malformed line (expected 'key = value', '[section]' or a comment)\n"
	       "3 error: malformed line (missing key before '=')\n");
	/* After a bad or unknown header, its keys are skipped until the next one. */
	expect("[unknown]\nk = v\n[b\nk = v\n[a]\nk = v\n",
	       "1 [unknown]\n3 error: malformed section header (expected [name])\n"
	       "5 [a]\n6 key <k>\n6 value <v>\n");
	/* A refused key gets no value call. */
	expect("[a]\nskip = \"unterminated\n", "1 [a]\n2 key <skip>\n");
	expect("[a]\nk = \"open\n",
	       "1 [a]\n2 key <k>\n"
	       "2 error: unterminated quoted value for 'k' in [a] (no closing \")\n"
	       "2 no value\n");
	expect("[a]\nk = \"x\" y\n",
	       "1 [a]\n2 key <k>\n"
	       "2 error: unexpected text after the quoted value of 'k' in [a]\n"
	       "2 no value\n");
}

static void test_values(void **state)
{
	expect("[a]\n"
	       "u = amqp://u:p;w#d@h/%2f   # the ; and # without a blank before stay\n"
	       "q\t=\tjobs\t;tab before the comment\n"
	       "s = \"  5s ;x #y\"  ; quoted keeps blanks, ; and #\n"
	       "e = \"a\\\"b\\\\c\\n\"\n"
	       "t = a b  \n"
	       /* A blank then ; or # starts a comment, also right after '='. */
	       "h = #x\n"
	       "i = x#y;z\n",
	       "1 [a]\n"
	       "2 key <u>\n2 value <amqp://u:p;w#d@h/%2f>\n"
	       "3 key <q>\n3 value <jobs>\n"
	       "4 key <s>\n4 value <  5s ;x #y>\n"
	       "5 key <e>\n5 value <a\"b\\c\\n>\n"
	       "6 key <t>\n6 value <a b>\n"
	       "7 key <h>\n7 value <>\n"
	       "8 key <i>\n8 value <x#y;z>\n");
	/* The shell syntax keeps quotes and escapes; ; and # in them are text. */
	expect("[a]\ncommand = /bin/echo \"a ;b\" 'c #d' e\\ ;f ; real comment\n"
	       "command = /bin/echo a\\ \n"
	       "command = \"/bin/x\" ; c\n",
	       "1 [a]\n"
	       "2 key <command>\n2 value </bin/echo \"a ;b\" 'c #d' e\\ ;f>\n"
	       "3 key <command>\n3 value </bin/echo a\\ >\n"
	       "4 key <command>\n4 value <\"/bin/x\">\n");
}

static void test_line_length(void **state)
{
	size_t n = INI_MAX_LINE + 1;
	char *text = malloc(n + 64), *p;
	char want[128];

	assert_non_null(text);
	p = stpcpy(text, "[a]\n");
	memset(p, 'x', n);
	strcpy(p + n, "\n[b]\n");
	snprintf(want, sizeof(want), "1 [a]\n2 error: line too long (%zu bytes, max %d)\n3 [b]\n",
		 n, INI_MAX_LINE);
	expect(text, want);

	/* Exactly INI_MAX_LINE bytes, not counting the CR, is fine. */
	p = stpcpy(text, "[a]\n");
	*p++ = '#';
	memset(p, 'x', INI_MAX_LINE - 1);
	strcpy(p + INI_MAX_LINE - 1, "\r\n[b]\n");
	expect(text, "1 [a]\n3 [b]\n");
	free(text);
}

static void test_nul(void **state)
{
	static const char text[] = "[a]\nk = v\nj = \0\n[b]\n";

	/* Nothing is read: a file with a NUL is not text. */
	expect_len(text, sizeof(text) - 1, -EINVAL,
		   "3 error: file contains a NUL byte (not a text file?)\n");
	expect_len("\0", 1, -EINVAL, "1 error: file contains a NUL byte (not a text file?)\n");
	/* len bounds the text: what follows is not read. */
	expect_len("[a]\nk = v\n[b]", 10, 0, "1 [a]\n2 key <k>\n2 value <v>\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_structure), cmocka_unit_test(test_errors),
		cmocka_unit_test(test_values),	  cmocka_unit_test(test_line_length),
		cmocka_unit_test(test_nul),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
