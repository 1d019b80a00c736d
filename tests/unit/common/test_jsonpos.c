/*
 * Unit tests for jsonpos: the line of members and elements, the fallback to
 * the deepest step found, keys with escapes, many siblings, and texts that
 * are not JSON (a NUL, random bytes), which must never stop the walk.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/jsonpos.h"
#include "common/util.h"
#include "testutil.h"

#define K(k) ((struct jsonpos_step){ .key = (k) })
#define I(i) ((struct jsonpos_step){ .index = (i) })
#define LINE(p, ...)                                                        \
	jsonpos_line(p, (const struct jsonpos_step[]){ __VA_ARGS__ },       \
		     sizeof((const struct jsonpos_step[]){ __VA_ARGS__ }) / \
			     sizeof(struct jsonpos_step))

static struct jsonpos *index_of(const char *text, size_t len)
{
	struct jsonpos *p = NULL;

	assert_int_equal(jsonpos_index(text, len, &p), 0);
	assert_non_null(p);
	return p;
}

static const char doc[] = "{\n"					/* 1 */
			  "  \"a\": 1,\n"			/* 2 */
			  "  \"list\": [\n"			/* 3 */
			  "    10,\n"				/* 4 */
			  "    {\"x\": true,\n"			/* 5 */
			  "     \"y\": [[1, 2],\n"		/* 6 */
			  "           [3,\n"			/* 7 */
			  "            4]]},\n"			/* 8 */
			  "    \"s,:{}[]\\\"\"\n"		/* 9 */
			  "  ],\n"				/* 10 */
			  "  \"esc\\u0061ped\": {\"in\": 1},\n" /* 11 */
			  "  \"obj\":\n"			/* 12 */
			  "    {\"deep\": {\"er\": null}}\n"	/* 13 */
			  "}\n";

static void test_lines(void **state)
{
	_cleanup_(jsonpos_freep) struct jsonpos *p = index_of(doc, strlen(doc));

	assert_int_equal(jsonpos_line(p, NULL, 0), 1);
	assert_int_equal(LINE(p, K("a")), 2);
	/* A member is on its key's line, an element on its value's. */
	assert_int_equal(LINE(p, K("list")), 3);
	assert_int_equal(LINE(p, K("list"), I(0)), 4);
	assert_int_equal(LINE(p, K("list"), I(1)), 5);
	assert_int_equal(LINE(p, K("list"), I(1), K("x")), 5);
	assert_int_equal(LINE(p, K("list"), I(1), K("y")), 6);
	assert_int_equal(LINE(p, K("list"), I(1), K("y"), I(0), I(1)), 6);
	assert_int_equal(LINE(p, K("list"), I(1), K("y"), I(1)), 7);
	assert_int_equal(LINE(p, K("list"), I(1), K("y"), I(1), I(1)), 8);
	/* A string holding every token byte is one element. */
	assert_int_equal(LINE(p, K("list"), I(2)), 9);
	assert_int_equal(LINE(p, K("obj")), 12);
	assert_int_equal(LINE(p, K("obj"), K("deep")), 13);
	assert_int_equal(LINE(p, K("obj"), K("deep"), K("er")), 13);
}

static void test_fallback(void **state)
{
	_cleanup_(jsonpos_freep) struct jsonpos *p = index_of(doc, strlen(doc));

	/* The deepest step found. */
	assert_int_equal(LINE(p, K("nope")), 1);
	assert_int_equal(LINE(p, K("list"), I(3)), 3);
	assert_int_equal(LINE(p, K("list"), I(1), K("y"), I(1), I(2)), 7);
	assert_int_equal(LINE(p, K("list"), K("a")), 3);      /* a key in an array */
	assert_int_equal(LINE(p, K("obj"), I(0)), 12);	      /* an index in an object */
	assert_int_equal(LINE(p, K("a"), K("b"), K("c")), 2); /* below a scalar */
	/* Keys are looked up at their own level only. */
	assert_int_equal(LINE(p, K("x")), 1);
	assert_int_equal(LINE(p, K("obj"), K("er")), 12);
	/* A key written with escapes is not matched, by either spelling. */
	assert_int_equal(LINE(p, K("escaped")), 1);
	assert_int_equal(LINE(p, K("esc\\u0061ped")), 1);
	assert_int_equal(LINE(p, K("escaped"), K("in")), 1);
	/* Without an index (it could not be built) everything is on line 1. */
	assert_int_equal(LINE(NULL, K("a")), 1);
	assert_null(jsonpos_free(NULL));
}

/* Tens of thousands of siblings, each found on its own line. */
static void test_many(void **state)
{
	enum { N = 40000 };
	struct buf b;

	buf_init(&b, SIZE_MAX);
	buf_printf(&b, "{\"o\": {\n");
	for (size_t i = 0; i < N; i++)
		buf_printf(&b, "%s\"k%zu\": %zu\n", i ? "," : "", i, i);
	buf_printf(&b, "},\n\"a\": [\n");
	for (size_t i = 0; i < N; i++)
		buf_printf(&b, "%s%zu\n", i ? "," : "", i);
	buf_printf(&b, "]}\n");

	_cleanup_(jsonpos_freep) struct jsonpos *p = index_of(b.data, b.len);
	for (size_t i = 0; i < N; i++) {
		char key[32];

		snprintf(key, sizeof(key), "k%zu", i);
		assert_int_equal(LINE(p, K("o"), K(key)), 2 + i);
		assert_int_equal(LINE(p, K("a"), I(i)), 4 + N + i);
	}
	assert_int_equal(LINE(p, K("a"), I(N)), 3 + N);
	buf_done(&b);
}

/* A key that appears twice is found where it first appears. */
static void test_duplicate_keys(void **state)
{
	static const char text[] = "{\"a\": 1,\n\"a\": 2}";
	_cleanup_(jsonpos_freep) struct jsonpos *p = index_of(text, strlen(text));

	assert_int_equal(LINE(p, K("a")), 1);
}

/*
 * jansson skips a NUL after a number or a literal; the walk must get past it
 * (it once spun on it forever) and keep counting lines.
 */
static void test_nul(void **state)
{
	static const char text[] = "{\"a\": [1\0, true\0,\n"
				   "  null\0], \"b\":\n"
				   " {\"c\": 2\0}\0\0,\n"
				   "\"d\": 3}";
	_cleanup_(jsonpos_freep) struct jsonpos *p = NULL;

	alarm(20);
	p = index_of(text, sizeof(text) - 1);
	alarm(0);
	assert_int_equal(LINE(p, K("a"), I(0)), 1);
	assert_int_equal(LINE(p, K("a"), I(1)), 1);
	assert_int_equal(LINE(p, K("a"), I(2)), 2);
	assert_int_equal(LINE(p, K("b")), 2);
	assert_int_equal(LINE(p, K("b"), K("c")), 3);
	assert_int_equal(LINE(p, K("d")), 4);
}

/*
 * Any bytes at all: unbalanced brackets, unterminated strings, a backslash
 * at the end. The walk ends, and every line it gives is in the text.
 */
static void test_not_json(void **state)
{
	static const char alphabet[] = "{}[]\":,\\ \n\tax0\0\xff";
	static const char *const fixed[] = { "",      "\"",	"\"\\",	    "{\"a\":", "]]]]}}",
					     "[[[[[", "{\"a\"", "{\"a\\\"", "[1,,,,]", "\n\n\n" };
	char text[256];
	unsigned seed = 12345;

	alarm(20);
	for (size_t i = 0; i < ARRAY_SIZE(fixed); i++) {
		_cleanup_(jsonpos_freep) struct jsonpos *p = index_of(fixed[i], strlen(fixed[i]));

		assert_true(LINE(p, K("a")) >= 1);
		assert_true(LINE(p, I(0), I(0)) >= 1);
	}
	for (int round = 0; round < 20000; round++) {
		size_t len = (size_t)rand_r(&seed) % sizeof(text), lines = 1;

		for (size_t j = 0; j < len; j++) {
			text[j] = alphabet[(size_t)rand_r(&seed) % (sizeof(alphabet) - 1)];
			lines += text[j] == '\n';
		}
		_cleanup_(jsonpos_freep) struct jsonpos *p = index_of(text, len);
		unsigned l1 = LINE(p, K("a"), I(0), K("a")), l2 = LINE(p, I(1), I(0));

		assert_true(l1 >= 1 && l1 <= lines);
		assert_true(l2 >= 1 && l2 <= lines);
	}
	alarm(0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines), cmocka_unit_test(test_fallback),
		cmocka_unit_test(test_many),  cmocka_unit_test(test_duplicate_keys),
		cmocka_unit_test(test_nul),   cmocka_unit_test(test_not_json),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
