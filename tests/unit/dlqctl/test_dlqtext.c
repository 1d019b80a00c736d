/*
 * Unit tests for dlqtext: hostile message text (escape sequences, C1 and
 * bidi controls, bytes that are not UTF-8, NULs) kept as UTF-8, escaped for
 * the terminal and in JSON, and cut on a character boundary, never inside
 * a sequence or an escape.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "dlqctl/dlqtext.h"

static void test_utf8_keeps_text_escapes_bytes(void **state)
{
	char out[64];

	(void)state;
	assert_int_equal(dlqtext_utf8(out, sizeof(out), "caf\xc3\xa9 \xe2\x82\xac", 9), 9);
	assert_string_equal(out, "caf\xc3\xa9 \xe2\x82\xac");
	/* Not UTF-8: a lone continuation byte, an overlong, a NUL, a cut sequence. */
	dlqtext_utf8(out, sizeof(out),
		     "a\x80"
		     "b\xc0\xaf"
		     "c\0d\xe2\x82",
		     10);
	assert_string_equal(out, "a\\x80b\\xc0\\xafc\\x00d\\xe2\\x82");
	/* Controls stay: JSON escapes them, dlqtext_term does for terminals. */
	dlqtext_utf8(out, sizeof(out), "x\x1b[2Jy", 6);
	assert_string_equal(out, "x\x1b[2Jy");
}

static void test_utf8_cuts_on_boundary(void **state)
{
	char out[6];

	(void)state;
	/* 5 bytes of room: "ab" + the 3-byte euro sign fit, the next one not. */
	assert_int_equal(dlqtext_utf8(out, sizeof(out), "ab\xe2\x82\xac\xe2\x82\xac", 8), 5);
	assert_string_equal(out, "ab\xe2\x82\xac");
	/* Room for 4: the euro sign would be cut, so it goes whole. */
	assert_int_equal(dlqtext_utf8(out, 5, "ab\xe2\x82\xac", 5), 2);
	assert_string_equal(out, "ab");
	/* An escape is never cut either. */
	assert_int_equal(dlqtext_utf8(out, sizeof(out), "ab\xff", 3), 2);
	assert_string_equal(out, "ab");
	assert_int_equal(dlqtext_utf8(out, 1, "abc", 3), 0);
	assert_string_equal(out, "");
}

static void test_uncut(void **state)
{
	(void)state;
	assert_int_equal(dlqtext_uncut("ab\xe2\x82", 4), 2); /* euro sign cut after 2 of 3 */
	assert_int_equal(dlqtext_uncut("ab\xe2", 3), 2);
	assert_int_equal(dlqtext_uncut("ab\xf0\x9f\x98", 5), 2); /* 4-byte cut after 3 */
	assert_int_equal(dlqtext_uncut("ab\xe2\x82\xac", 5), 5); /* whole */
	assert_int_equal(dlqtext_uncut("ab\xc3\xa9", 4), 4);
	assert_int_equal(dlqtext_uncut("abc", 3), 3);
	assert_int_equal(dlqtext_uncut("", 0), 0);
	/* Not a cut character but bytes that were never UTF-8: kept, to be escaped. */
	assert_int_equal(dlqtext_uncut("ab\xff", 3), 3);
	assert_int_equal(dlqtext_uncut("ab\x80\x80", 4), 4);
	assert_int_equal(dlqtext_uncut("ab\xe2\x41", 4), 4);
}

static void test_term_escapes_controls(void **state)
{
	char out[DLQTEXT_TERM_SIZE(64)];
	const char *hostile = "id\x1b]0;pwned\x07\r\n\t\x7f"
			      "\xc2\x9b"
			      "31m" /* C1 CSI */
			      "\xe2\x80\xae"
			      "gpj.exe" /* RIGHT-TO-LEFT OVERRIDE */
			      "\xe2\x81\xa6\xff";

	(void)state;
	assert_string_equal(dlqtext_term(hostile, out, sizeof(out)),
			    "id\\x1b]0;pwned\\x07\\x0d\\x0a\\x09\\x7f\\u009b31m\\u202egpj.exe"
			    "\\u2066\\xff");
	for (const char *p = out; *p; p++)
		assert_true((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
	/* Ordinary text, non-ASCII included, is untouched. */
	assert_string_equal(dlqtext_term("evt_\xc3\xa9t\xc3\xa9 \xe2\x80\x94 ok", out, sizeof(out)),
			    "evt_\xc3\xa9t\xc3\xa9 \xe2\x80\x94 ok");
	/* Cut on a boundary: no half escape. */
	assert_string_equal(dlqtext_term("ab\x1b", out, 5), "ab");
	assert_string_equal(dlqtext_term("ab\xc3\xa9", out, 4), "ab");
}

static void test_json_escapes_what_jansson_leaves(void **state)
{
	json_t *o = json_pack("{s:s}", "id",
			      "a\x7f"
			      "b\xc2\x85"
			      "c\xe2\x80\xab\xc3\xa9\x1b");
	char *s = json_dumps(o, JSON_COMPACT);
	struct buf b;
	json_t *back;

	(void)state;
	buf_init(&b, 1024);
	assert_int_equal(buf_append(&b, s, strlen(s)), 0);
	assert_int_equal(dlqtext_json(&b), 0);
	assert_string_equal(b.data, "{\"id\":\"a\\u007fb\\u0085c\\u202b\xc3\xa9\\u001B\"}");
	/* Still the same JSON value. */
	back = json_loads(b.data, 0, NULL);
	assert_true(json_equal(back, o));
	json_decref(back);

	/* Nothing to escape: unchanged (the whitespace of pretty JSON too);
	 * over the maximum: -E2BIG, unchanged. */
	buf_reset(&b);
	assert_int_equal(buf_append(&b, "{\n\t\"a\": \"\xc3\xa9\"\r\n}\n", 16), 0);
	assert_int_equal(dlqtext_json(&b), 0);
	assert_string_equal(b.data, "{\n\t\"a\": \"\xc3\xa9\"\r\n}\n");
	buf_done(&b);
	buf_init(&b, 7);
	assert_int_equal(buf_append(&b, "\"\x7f\"", 3), 0);
	assert_int_equal(dlqtext_json(&b), -E2BIG);
	assert_memory_equal(b.data, "\"\x7f\"", 4);
	buf_done(&b);
	free(s);
	json_decref(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8_keeps_text_escapes_bytes),
		cmocka_unit_test(test_utf8_cuts_on_boundary),
		cmocka_unit_test(test_uncut),
		cmocka_unit_test(test_term_escapes_controls),
		cmocka_unit_test(test_json_escapes_what_jansson_leaves),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
