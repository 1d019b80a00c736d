/*
 * Unit tests for jsonscan: what is valid and why not (with the offset), the
 * spans of top-level members and array elements byte for byte, unescaping,
 * duplicate names (small and sorted objects, escaped spellings), the depth
 * bound, and a seeded differential run against jansson over thousands of
 * generated and mutated texts.
 */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/jsonscan.h"
#include "common/util.h"

static void valid(const char *text)
{
	struct jscan_doc d;
	struct jscan_error err;
	int r = jscan_parse(text, strlen(text), &d, &err);

	if (r != 0)
		fail_msg("%s: %d at %zu: %s", text, r, err.offset, err.text);
	jscan_doc_done(&d);
}

static void invalid(const char *text, size_t len, size_t offset, const char *why)
{
	struct jscan_doc d;
	struct jscan_error err;
	int r = jscan_parse(text, len, &d, &err);

	if (r != -EINVAL)
		fail_msg("%s: expected -EINVAL, got %d", text, r);
	if (err.offset != offset || strcmp(err.text, why) != 0)
		fail_msg("%s: got \"%s\" at %zu, want \"%s\" at %zu", text, err.text, err.offset,
			 why, offset);
	assert_null(d.members);
}

static void test_valid(void **state)
{
	static const char *const texts[] = {
		"{}",
		"[]",
		" \t\r\n{ } \n",
		"0",
		"-0",
		"123456789012345678901234567890",
		"-1.5e-7",
		"1E400",
		"0.1000000000000000055511151231257827",
		"\"\"",
		"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"",
		"\"caf\xc3\xa9 \xf0\x9f\x98\x80\"",
		"\"a\\u0000b\"",
		"true",
		"false",
		"null",
		"[1,[2,[3,{\"a\":[]}]],{}]",
		"{\"a\":{\"x\":1},\"b\":{\"x\":1}}",
		"{\"a\":1,\"A\":2,\"a \":3}",
	};

	for (size_t i = 0; i < ARRAY_SIZE(texts); i++)
		valid(texts[i]);
}

static void test_invalid(void **state)
{
	invalid("", 0, 0, "a value expected, got the end of the text");
	invalid(" ", 1, 1, "a value expected, got the end of the text");
	invalid("{", 1, 1, "a name in quotes expected, got the end of the text");
	invalid("[1,]", 4, 3, "a value expected, got ']'");
	invalid("[1 2]", 5, 3, "',' or ']' expected, got '2'");
	invalid("{\"a\" 1}", 7, 5, "':' expected, got '1'");
	invalid("{\"a\":1,}", 8, 7, "a name in quotes expected, got '}'");
	invalid("{a:1}", 5, 1, "a name in quotes expected, got 'a'");
	invalid("01", 2, 1, "the end of the text expected, got '1'");
	invalid("1.", 2, 2, "digit expected after the decimal point");
	invalid("1e+", 3, 3, "digit expected in the exponent");
	invalid("-", 1, 1, "digit expected in a number");
	invalid("+1", 2, 0, "a value expected, got '+'");
	invalid("tru", 3, 0, "a value expected, got 't'");
	invalid("nul1", 4, 0, "a value expected, got 'n'");
	invalid("\"abc", 4, 0, "string without its closing quote");
	invalid("\"a\nb\"", 5, 2, "control character 0x0a in a string (must be escaped)");
	invalid("\"\\x\"", 4, 1, "invalid escape");
	invalid("\"\\u12G4\"", 8, 1, "invalid escape");
	invalid("\"\\udc00\"", 8, 1, "lone low surrogate in \\u escape");
	invalid("\"\\ud800x\"", 9, 1, "high surrogate in \\u escape without its low surrogate");
	invalid("\"\\ud800\\u0041\"", 14, 1,
		"high surrogate in \\u escape without its low surrogate");
	invalid("\"\xc0\xaf\"", 4, 1, "invalid UTF-8 byte 0xc0 in a string");
	invalid("\"\xed\xa0\x80\"", 5, 1, "invalid UTF-8 byte 0xed in a string");
	invalid("\"\xe2\x82\"", 4, 1, "invalid UTF-8 byte 0xe2 in a string");
	invalid("\xef\xbb\xbf{}", 5, 0, "byte order mark (not JSON)");
	invalid("{}\x00", 3, 2, "the end of the text expected, got byte 0x00");
	invalid("[\xff]", 3, 1, "a value expected, got byte 0xff");
	invalid("{\"a\\u0000\":1}", 13, 3, "\\u0000 in an object name");
}

static void test_duplicates(void **state)
{
	char big[2048];
	size_t o = 0;

	invalid("{\"a\":1,\"a\":2}", 13, 7, "duplicate name \"a\" in an object");
	/* Equal once unescaped. */
	invalid("{\"a\":1,\"\\u0061\":2}", 18, 7, "duplicate name \"a\" in an object");
	/* Messages are printable ASCII: other bytes show as '?'. */
	invalid("{\"\xc3\xa9\":1,\"\\u00e9\":2}", 21, 8, "duplicate name \"??\" in an object");
	invalid("[{\"p\":{\"k\":1,\"k\":2}}]", 21, 13, "duplicate name \"k\" in an object");
	/* More than eight names: the sorted path. */
	o += (size_t)snprintf(big + o, sizeof(big) - o, "{");
	for (int i = 0; i < 50; i++)
		o += (size_t)snprintf(big + o, sizeof(big) - o, "\"k%d\":%d,", i, i);
	o += (size_t)snprintf(big + o, sizeof(big) - o, "\"k17\":0}");
	invalid(big, o, o - 8, "duplicate name \"k17\" in an object");
	big[o - 6] = '9';
	big[o - 5] = '8';
	valid(big);
}

static void test_depth(void **state)
{
	size_t n = JSCAN_DEPTH_MAX;
	char *t = malloc(2 * n + 3);

	assert_non_null(t);
	memset(t, '[', n);
	memset(t + n, ']', n);
	t[2 * n] = '\0';
	valid(t);
	memset(t, '[', n + 1);
	memset(t + n + 1, ']', n + 1);
	t[2 * n + 2] = '\0';
	invalid(t, 2 * n + 2, n, "nested deeper than 2048 levels");
	free(t);
}

static void test_members(void **state)
{
	static const char text[] = " { \"b\" : [1, {\"x\":\"}\"}] ,\n\"a\\u0041\":\t-0.50e+3 , "
				   "\"n\":null,\"s\":\"q\\\"\",\"o\":{} }  ";
	static const struct {
		const char *name, *value;
		enum jscan_kind kind;
	} want[] = {
		{ "b", "[1, {\"x\":\"}\"}]", JSCAN_ARRAY },
		{ "aA", "-0.50e+3", JSCAN_NUMBER },
		{ "n", "null", JSCAN_NULL },
		{ "s", "\"q\\\"\"", JSCAN_STRING },
		{ "o", "{}", JSCAN_OBJECT },
	};
	struct jscan_doc d;
	struct jscan_error err;

	assert_int_equal(jscan_parse(text, strlen(text), &d, &err), 0);
	assert_int_equal(d.kind, JSCAN_OBJECT);
	assert_int_equal(d.n_members, ARRAY_SIZE(want));
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		const struct jscan_member *m = &d.members[i];
		assert_string_equal(m->name, want[i].name);
		assert_int_equal(m->kind, want[i].kind);
		assert_int_equal(m->value.len, strlen(want[i].value));
		assert_memory_equal(text + m->value.off, want[i].value, m->value.len);
		assert_int_equal(text[m->key.off], '"');
		assert_int_equal(text[m->key.off + m->key.len - 1], '"');
	}
	assert_ptr_equal(jscan_member(&d, "aA"), &d.members[1]);
	assert_null(jscan_member(&d, "a"));
	assert_string_equal(jscan_kind_name(jscan_member(&d, "n")->kind), "null");

	/* The elements of "b", as written. */
	{
		struct jscan_span *el = NULL;
		long n = jscan_elements(text, d.members[0].value, &el);

		assert_int_equal(n, 2);
		assert_memory_equal(text + el[0].off, "1", el[0].len);
		assert_int_equal(el[1].len, strlen("{\"x\":\"}\"}"));
		assert_memory_equal(text + el[1].off, "{\"x\":\"}\"}", el[1].len);
		free(el);
		assert_int_equal(jscan_elements("[ ]", (struct jscan_span){ 0, 3 }, &el), 0);
		assert_null(el);
	}
	jscan_doc_done(&d);

	/* Not an object: no members. */
	assert_int_equal(jscan_parse("[1]", 3, &d, &err), 0);
	assert_int_equal(d.kind, JSCAN_ARRAY);
	assert_int_equal(d.n_members, 0);
	jscan_doc_done(&d);
}

static void test_string(void **state)
{
	static const char t[] = "\"a\\u00e9\\ud83d\\ude00\\n\\u0000z\"";
	char out[64], small[4];
	bool nul;
	size_t n = jscan_string(t, (struct jscan_span){ 0, strlen(t) }, out, sizeof(out), &nul);

	assert_int_equal(n, 1 + 2 + 4 + 1 + 1 + 1);
	assert_memory_equal(out, "a\xc3\xa9\xf0\x9f\x98\x80\n\0z", n);
	assert_true(nul);
	/* Cut, but the full length is reported. */
	assert_int_equal(
		jscan_string(t, (struct jscan_span){ 0, strlen(t) }, small, sizeof(small), NULL),
		n);
	assert_string_equal(small, "a\xc3\xa9");
}

static void test_position(void **state)
{
	unsigned line, col;

	jscan_position("ab\ncd\n\nx", 8, 7, &line, &col);
	assert_int_equal(line, 4);
	assert_int_equal(col, 1);
	jscan_position("ab", 2, 1, &line, &col);
	assert_int_equal(line, 1);
	assert_int_equal(col, 2);
}

/* ---- differential run against jansson ---- */

static unsigned long long rng = 0x9e3779b97f4a7c15ULL;

static unsigned rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

static void ws(struct buf *b)
{
	static const char *const w[] = { "", "", "", " ", "\n", "\t", "\r\n  " };

	buf_printf(b, "%s", w[rnd(ARRAY_SIZE(w))]);
}

static void gen(struct buf *b, int depth)
{
	static const char *const scalars[] = {
		"0",
		"-0",
		"12",
		"-7.25",
		"1e5",
		"2E-3",
		"true",
		"false",
		"null",
		"\"\"",
		"\"x\"",
		"\"\\u00e9\"",
		"\"\\ud83d\\ude00\"",
		"\"a\\nb\"",
		"\"caf\xc3\xa9\"",
	};
	unsigned k = depth > 5 ? 2 : rnd(4);

	if (k == 0) {
		unsigned n = rnd(5);
		buf_printf(b, "{");
		for (unsigned i = 0; i < n; i++) {
			ws(b);
			/* Unique names: a duplicate is tested apart. */
			buf_printf(b, "%s\"k%u\"", i ? "," : "", i);
			ws(b);
			buf_printf(b, ":");
			ws(b);
			gen(b, depth + 1);
			ws(b);
		}
		buf_printf(b, "}");
	} else if (k == 1) {
		unsigned n = rnd(5);
		buf_printf(b, "[");
		for (unsigned i = 0; i < n; i++) {
			buf_printf(b, "%s", i ? "," : "");
			ws(b);
			gen(b, depth + 1);
			ws(b);
		}
		buf_printf(b, "]");
	} else {
		buf_printf(b, "%s", scalars[rnd(ARRAY_SIZE(scalars))]);
	}
}

static void test_differential(void **state)
{
	/* No NUL: jansson reads one outside a string as the end of its input;
	 * test_invalid covers it. */
	static const char bytes[] = "{}[]\",:\\ 0-1e.tnu\x80\xc3\xa9";
	unsigned agreed = 0, mutated_valid = 0;

	for (int i = 0; i < 6000; i++) {
		struct buf b;
		struct jscan_doc d;
		struct jscan_error err;
		json_error_t jerr;
		json_t *j;
		int r;

		buf_init(&b, 1 << 20);
		gen(&b, 0);
		/* Every second text gets one to three random byte edits. */
		if (i % 2 && b.len > 0)
			for (unsigned m = 1 + rnd(3); m > 0; m--)
				b.data[rnd((unsigned)b.len)] = bytes[rnd(sizeof(bytes) - 1)];
		r = jscan_parse(b.data, b.len, &d, &err);
		j = json_loadb(b.data, b.len,
			       JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
		/* jansson converts numbers, so it refuses huge ones we keep. */
		if (!j && strstr(jerr.text, "too big")) {
			jscan_doc_done(&d);
			buf_done(&b);
			continue;
		}
		if ((r == 0) != (j != NULL))
			fail_msg("disagree on %zu bytes \"%.*s\": jsonscan %d (%s), jansson %s",
				 b.len, (int)b.len, b.data, r, err.text, j ? "valid" : jerr.text);
		if (i % 2 && r == 0)
			mutated_valid++;
		agreed++;
		json_decref(j);
		jscan_doc_done(&d);
		buf_done(&b);
	}
	assert_true(agreed > 5900);
	assert_true(mutated_valid > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),	   cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_duplicates), cmocka_unit_test(test_depth),
		cmocka_unit_test(test_members),	   cmocka_unit_test(test_string),
		cmocka_unit_test(test_position),   cmocka_unit_test(test_differential),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
