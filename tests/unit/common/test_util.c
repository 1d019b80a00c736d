/*
 * test_util: the unit parsers (durations, sizes, integers, booleans), RFC 3339
 * timestamps both ways, the bounded buffer, diagnostics, read_file_max and
 * JSON type names.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/util.h"

/* The parsers that turn text into a uint64_t share one table checker. */
struct ok_case {
	const char *in;
	uint64_t v;
};
struct bad_case {
	const char *in;
	int r;
};

/*
 * Every ok case parses to its value; every bad case fails with its error and
 * leaves the output untouched.
 */
static void check_parser(const char *name, int (*parse)(const char *, uint64_t *),
			 const struct ok_case *ok, size_t n_ok, const struct bad_case *bad,
			 size_t n_bad)
{
	uint64_t v;

	for (size_t i = 0; i < n_ok; i++) {
		v = 12345;
		if (parse(ok[i].in, &v) != 0)
			fail_msg("%s(\"%s\") failed", name, ok[i].in);
		if (v != ok[i].v)
			fail_msg("%s(\"%s\") = %llu, want %llu", name, ok[i].in,
				 (unsigned long long)v, (unsigned long long)ok[i].v);
	}
	for (size_t i = 0; i < n_bad; i++) {
		int r;

		v = 12345;
		r = parse(bad[i].in, &v);
		if (r != bad[i].r)
			fail_msg("%s(\"%s\") = %d, want %d", name, bad[i].in, r, bad[i].r);
		assert_int_equal(v, 12345); /* untouched on failure */
	}
	assert_int_equal(parse(NULL, &v), -EINVAL);
}
#define CHECK_PARSER(parse, ok, bad) \
	check_parser(#parse, parse, ok, ARRAY_SIZE(ok), bad, ARRAY_SIZE(bad))

static void test_parse_duration(void **state)
{
	static const struct ok_case ok[] = {
		{ "0", 0 },
		{ "250ms", 250 * USEC_PER_MSEC },
		{ "2s", 2 * USEC_PER_SEC },
		{ "2", 2 * USEC_PER_SEC }, /* bare number = seconds */
		{ "1.5s", 1500 * USEC_PER_MSEC },
		{ ".5s", 500 * USEC_PER_MSEC },
		{ "5m", 300 * USEC_PER_SEC },
		{ "5min", 300 * USEC_PER_SEC },
		{ "1h", 3600 * USEC_PER_SEC },
		{ "1d", 86400 * USEC_PER_SEC },
		{ "10us", 10 },
		{ "3sec", 3 * USEC_PER_SEC },
		{ " 7s ", 7 * USEC_PER_SEC },
		{ "7 s", 7 * USEC_PER_SEC },
		{ "1MS", 1000 },   /* units are case-insensitive */
		{ "0.0004ms", 0 }, /* rounds to the nearest microsecond */
		{ "1.0006ms", 1001 },
		{ "100000000000s", UINT64_C(100000000000) * USEC_PER_SEC }, /* 1e17 us */
	};
	static const struct bad_case bad[] = {
		{ "", -EINVAL },
		{ "   ", -EINVAL },
		{ "s", -EINVAL },
		{ "ms", -EINVAL },
		{ "-1s", -EINVAL },
		{ "+1s", -EINVAL },
		{ "1x", -EINVAL },
		{ "1 fortnight", -EINVAL },
		{ "1s2", -EINVAL },
		{ "1s 2s", -EINVAL },
		{ "nan", -EINVAL },
		{ "inf", -EINVAL },
		{ "1.2.3s", -EINVAL },
		{ "0x10", -EINVAL },
		{ "0x1p4s", -EINVAL },
		{ "1,5s", -EINVAL },
		{ "100000000001s", -ERANGE }, /* just over 1e17 us */
		{ "99999999999999999999h", -ERANGE },
		{ "1e400s", -ERANGE },
	};

	CHECK_PARSER(parse_duration_usec, ok, bad);
}

static void test_parse_size(void **state)
{
	static const struct ok_case ok[] = {
		{ "0", 0 },
		{ "512", 512 },
		{ "512B", 512 },
		{ "64KiB", 64 * 1024 },
		{ "64K", 64 * 1024 },
		{ "1MiB", 1024 * 1024 },
		{ "1M", 1024 * 1024 },
		{ "2GiB", UINT64_C(2) << 30 },
		{ "1.5KiB", 1536 },
		{ "10KB", 10000 },
		{ "3MB", 3000000 },
		{ "1GB", 1000000000 },
		{ "1kib", 1024 },
		{ " 8 MiB ", 8 * 1024 * 1024 },
		{ "1000000000000000", UINT64_C(1000000000000000) }, /* 1e15, the limit */
	};
	static const struct bad_case bad[] = {
		{ "", -EINVAL },	   { "KiB", -EINVAL },	 { "-1", -EINVAL },
		{ "12XB", -EINVAL },	   { "1TiB", -EINVAL },	 { "1 2", -EINVAL },
		{ "1MiBs", -EINVAL },	   { "0x100", -EINVAL }, { "1000000000000001", -ERANGE },
		{ "1000000GiB", -ERANGE }, { "1e30", -ERANGE },
	};

	CHECK_PARSER(parse_size, ok, bad);
}

static void test_parse_uint_bool(void **state)
{
	uint64_t v = 0;
	bool b = false;

	assert_int_equal(parse_uint("42", 0, 100, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(parse_uint(" 7 ", 0, 100, &v), 0);
	assert_int_equal(v, 7);
	assert_int_equal(parse_uint("18446744073709551615", 0, UINT64_MAX, &v), 0);
	assert_int_equal(v, UINT64_MAX);
	assert_int_equal(parse_uint("18446744073709551616", 0, UINT64_MAX, &v), -ERANGE);
	assert_int_equal(parse_uint("101", 0, 100, &v), -ERANGE);
	assert_int_equal(parse_uint("0", 1, 100, &v), -ERANGE);
	assert_int_equal(parse_uint("-1", 0, 100, &v), -EINVAL);
	assert_int_equal(parse_uint("+1", 0, 100, &v), -EINVAL);
	assert_int_equal(parse_uint("1.5", 0, 100, &v), -EINVAL);
	assert_int_equal(parse_uint("", 0, 100, &v), -EINVAL);
	assert_int_equal(parse_uint("12a", 0, 100, &v), -EINVAL);
	assert_int_equal(parse_uint(NULL, 0, 100, &v), -EINVAL);
	assert_int_equal(v, UINT64_MAX); /* untouched by the failures */

	static const char *const yes[] = { "1", "true", "yes", "on", "TRUE", "Yes" };
	static const char *const no[] = { "0", "false", "no", "off", "OFF" };
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		b = false;
		assert_int_equal(parse_bool(yes[i], &b), 0);
		assert_true(b);
	}
	for (size_t i = 0; i < ARRAY_SIZE(no); i++) {
		b = true;
		assert_int_equal(parse_bool(no[i], &b), 0);
		assert_false(b);
	}
	assert_int_equal(parse_bool("y", &b), -EINVAL);
	assert_int_equal(parse_bool("", &b), -EINVAL);
	assert_int_equal(parse_bool("2", &b), -EINVAL);
	assert_int_equal(parse_bool(NULL, &b), -EINVAL);
}

static void test_timestamps(void **state)
{
	static const struct ok_case ok[] = {
		{ "1970-01-01T00:00:00Z", 0 },
		{ "2026-03-17T03:10:00Z", UINT64_C(1773717000) * USEC_PER_SEC },
		{ "2026-03-17t03:10:00z", UINT64_C(1773717000) * USEC_PER_SEC },
		{ "2026-03-17 03:10:00Z", UINT64_C(1773717000) * USEC_PER_SEC },
		{ "2026-03-17T05:10:00+02:00", UINT64_C(1773717000) * USEC_PER_SEC },
		{ "2026-03-16T22:40:00-04:30", UINT64_C(1773717000) * USEC_PER_SEC },
		{ "2026-03-17T03:10:00.5Z", UINT64_C(1773717000) * USEC_PER_SEC + 500000 },
		{ "2026-03-17T03:10:00.123456789Z", UINT64_C(1773717000) * USEC_PER_SEC + 123456 },
		{ "2024-02-29T00:00:00Z", UINT64_C(1709164800) * USEC_PER_SEC },
		{ "2038-01-19T03:14:08Z", UINT64_C(2147483648) * USEC_PER_SEC },
		/* The last instant with a four-digit year in UTC, however written. */
		{ "9999-12-31T23:59:59Z", UINT64_C(253402300799) * USEC_PER_SEC },
		{ "9999-12-31T23:59:59.999999999Z", TIMESTAMP_USEC_MAX },
		{ "9999-12-31T18:59:59-05:00", UINT64_C(253402300799) * USEC_PER_SEC },
		{ "9999-12-31T23:59:58+23:59", (UINT64_C(253402300798) - 86340) * USEC_PER_SEC },
	};
	static const struct bad_case bad[] = {
		{ "", -EINVAL },
		{ "2026-03-17", -EINVAL },
		{ "2026-03-17T03:10Z", -EINVAL },
		{ "2026-03-17T03:10:00", -EINVAL }, /* no zone: ambiguous */
		{ "2026-03-17T03:10:00+0200", -EINVAL },
		{ "2026-3-17T03:10:00Z", -EINVAL },
		{ "2026-13-01T00:00:00Z", -EINVAL },
		{ "2026-00-01T00:00:00Z", -EINVAL },
		{ "2026-01-32T00:00:00Z", -EINVAL },
		{ "2026-02-29T00:00:00Z", -EINVAL }, /* not a leap year */
		{ "2026-04-31T00:00:00Z", -EINVAL },
		{ "2026-03-17T24:00:00Z", -EINVAL },
		{ "2026-03-17T03:60:00Z", -EINVAL },
		{ "2026-03-17T03:10:00.Z", -EINVAL },
		{ "2026-03-17T03:10:00Zjunk", -EINVAL },
		{ "2026-03-17T03:10:00+24:00", -EINVAL },
		{ "1969-12-31T23:59:59Z", -EINVAL },
		{ "1970-01-01T00:00:00+00:01", -EINVAL }, /* before the epoch */
		{ "2026-03-17X03:10:00Z", -EINVAL },
		/* In the year 10000 once in UTC: it would be written back with five digits. */
		{ "9999-12-31T23:00:00-05:00", -EINVAL },
		{ "9999-12-31T19:00:00-05:00", -EINVAL },
		{ "9999-12-31T23:59:60Z", -EINVAL },
		{ "9999-12-31T23:59:59-00:01", -EINVAL },
	};
	char buf[TIMESTAMP_MAX];

	CHECK_PARSER(parse_timestamp, ok, bad);

	assert_string_equal(format_timestamp(0, buf), "1970-01-01T00:00:00Z");
	/* Second precision: the fraction is cut, not rounded. */
	assert_string_equal(format_timestamp(UINT64_C(1773717000) * USEC_PER_SEC + 999999, buf),
			    "2026-03-17T03:10:00Z");
	assert_ptr_equal(format_timestamp(UINT64_C(1709164800) * USEC_PER_SEC, buf), buf);
	assert_string_equal(buf, "2024-02-29T00:00:00Z");
	assert_int_equal(strlen(buf), 20);

	/* Past the last four-digit year, formatting stops at it. */
	assert_string_equal(format_timestamp(TIMESTAMP_USEC_MAX, buf), "9999-12-31T23:59:59Z");
	assert_string_equal(format_timestamp(TIMESTAMP_USEC_MAX + 1, buf), "9999-12-31T23:59:59Z");
	assert_string_equal(format_timestamp(UINT64_MAX, buf), "9999-12-31T23:59:59Z");

	/* Round trip through both directions. */
	for (uint64_t t = 0; t < UINT64_C(4102444800); t += UINT64_C(86399) * 397) {
		uint64_t back = 0;
		format_timestamp(t * USEC_PER_SEC, buf);
		assert_int_equal(parse_timestamp(buf, &back), 0);
		assert_int_equal(back, t * USEC_PER_SEC);
	}
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian), without the libc. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + (int64_t)doe - 719468;
}

static unsigned pick(unsigned *seed, unsigned lo, unsigned hi)
{
	return lo + (unsigned)rand_r(seed) % (hi - lo + 1);
}

/*
 * Random valid RFC 3339 text (offsets, fractions, leap seconds, both ends of
 * the range made likely): parse_timestamp() accepts it exactly when its
 * instant is in range, to the microsecond, and whatever it accepts formats
 * back to text it parses to the same second.
 */
static void test_timestamp_round_trip(void **state)
{
	static const unsigned mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	unsigned seed = 20261205;
	size_t accepted = 0, refused = 0;

	for (int i = 0; i < 200000; i++) {
		unsigned edge = pick(&seed, 0, 3);
		unsigned year = edge == 0 ? 9999 : edge == 1 ? 1970 : pick(&seed, 1970, 9999);
		unsigned mon = edge <= 1 ? (edge == 0 ? 12 : 1) : pick(&seed, 1, 12);
		bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
		unsigned dmax = mdays[mon - 1] + (mon == 2 && leap);
		unsigned day = edge <= 1 ? (edge == 0 ? dmax : 1) : pick(&seed, 1, dmax);
		unsigned hour = pick(&seed, 0, 23), min = pick(&seed, 0, 59),
			 sec = pick(&seed, 0, 60);
		unsigned oh = pick(&seed, 0, 23), om = pick(&seed, 0, 59);
		int sign = pick(&seed, 0, 2) == 0 ? 0 : pick(&seed, 0, 1) ? 1 : -1;
		char text[80], frac[16] = "", zone[8], buf[TIMESTAMP_MAX];
		uint64_t frac_usec = 0, got = 0, back = 0;
		int n = pick(&seed, 0, 12);

		for (int j = 0; j < n; j++) {
			unsigned digit = pick(&seed, 0, 9);

			frac[j] = (char)('0' + digit);
			if (j < 6)
				frac_usec = frac_usec * 10 + digit;
		}
		for (int j = n; j < 6; j++)
			frac_usec *= 10;
		if (sign == 0)
			snprintf(zone, sizeof(zone), "%c", pick(&seed, 0, 1) ? 'Z' : 'z');
		else
			snprintf(zone, sizeof(zone), "%c%02u:%02u", sign > 0 ? '+' : '-', oh, om);
		snprintf(text, sizeof(text), "%04u-%02u-%02u%c%02u:%02u:%02u%s%s%s", year, mon, day,
			 "Tt "[pick(&seed, 0, 2)], hour, min, sec, n ? "." : "", frac, zone);

		int64_t utc = days_from_civil(year, mon, day) * 86400 + hour * 3600 + min * 60 +
			      sec - sign * (int64_t)(oh * 3600 + om * 60);
		bool in_range = utc >= 0 && utc <= (int64_t)(TIMESTAMP_USEC_MAX / USEC_PER_SEC);
		int r = parse_timestamp(text, &got);

		if ((r == 0) != in_range)
			print_message("%s: %d, instant %lld\n", text, r, (long long)utc);
		assert_int_equal(r == 0, in_range);
		if (r < 0) {
			refused++;
			continue;
		}
		accepted++;
		assert_int_equal(got, (uint64_t)utc * USEC_PER_SEC + frac_usec);
		format_timestamp(got, buf);
		assert_int_equal(strlen(buf), 20);
		if (parse_timestamp(buf, &back) < 0)
			print_message("%s -> %s does not parse\n", text, buf);
		assert_int_equal(parse_timestamp(buf, &back), 0);
		assert_int_equal(back, (uint64_t)utc * USEC_PER_SEC);
	}
	/* Both outcomes were really tried. */
	assert_true(accepted > 100000 && refused > 1000);
}

static void test_buf(void **state)
{
	struct buf b;
	char *s;
	size_t len = 99;

	buf_init(&b, 10);
	assert_null(b.data);
	assert_int_equal(buf_append(&b, "hello", 5), 0);
	assert_string_equal(b.data, "hello");
	assert_int_equal(b.len, 5);
	assert_int_equal(buf_append(&b, "world", 5), 0);
	assert_string_equal(b.data, "helloworld");
	/* Full: nothing is appended past the maximum. */
	assert_int_equal(buf_append(&b, "!", 1), -E2BIG);
	assert_string_equal(b.data, "helloworld");
	assert_int_equal(buf_append(&b, "", 0), 0);
	assert_int_equal(buf_append_trunc(&b, "abc", 3), 3);
	buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.data, "");
	assert_int_equal(buf_append_trunc(&b, "0123456789abc", 13), 3);
	assert_string_equal(b.data, "0123456789");
	buf_reset(&b);
	assert_int_equal(buf_printf(&b, "%d-%s", 42, "x"), 0);
	assert_string_equal(b.data, "42-x");
	assert_int_equal(buf_printf(&b, "%s", "1234567"), -E2BIG);
	assert_string_equal(b.data, "42-x");
	s = buf_steal(&b, &len);
	assert_string_equal(s, "42-x");
	assert_int_equal(len, 4);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	free(s);

	/* A never-written buffer still steals as an empty string. */
	buf_init(&b, 10);
	s = buf_steal(&b, NULL);
	assert_non_null(s);
	assert_string_equal(s, "");
	free(s);
	buf_done(&b);
	buf_done(&b); /* twice is harmless */

	/* buf_printf beyond its stack buffer, and growth past the first chunk. */
	buf_init(&b, 100000);
	char big[1000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(buf_printf(&b, "<%s>", big), 0);
	assert_int_equal(b.len, 1001);
	assert_int_equal(b.data[0], '<');
	assert_int_equal(b.data[1000], '>');
	assert_int_equal(b.data[1001], '\0');
	int n = 0;
	while (buf_append(&b, big, 999) == 0)
		n++;
	assert_int_equal(n, (100000 - 1001) / 999);
	assert_int_equal(b.len, 1001 + (size_t)n * 999);
	assert_true(b.cap <= 100001); /* never more than max + the NUL */
	assert_int_equal(buf_append(&b, big, 100000 - b.len), 0);
	assert_int_equal(b.len, 100000);
	assert_int_equal(b.data[100000], '\0');
	buf_done(&b);

	/* max = 0 holds only the empty string. */
	buf_init(&b, 0);
	assert_int_equal(buf_append(&b, "a", 1), -E2BIG);
	assert_int_equal(buf_append_trunc(&b, "a", 1), 1);
	assert_int_equal(buf_append(&b, "", 0), 0);
	assert_string_equal(b.data, "");
	buf_done(&b);

	/* A huge maximum must not wrap the capacity computation. */
	buf_init(&b, SIZE_MAX);
	assert_int_equal(buf_append(&b, "abc", 3), 0);
	assert_string_equal(b.data, "abc");
	assert_true(b.cap >= 4);
	buf_done(&b);
}

static void test_diag(void **state)
{
	struct diag d = { 0 };

	diag_add(&d, "a.conf", 3, "bad %s", "thing");
	diag_add(&d, NULL, 0, "no file");
	assert_int_equal(d.n, 2);
	assert_string_equal(d.lines[0], "a.conf:3: bad thing");
	assert_string_equal(d.lines[1], "-:0: no file");
	diag_done(&d);
	assert_int_equal(d.n, 0);
	assert_null(d.lines);
	diag_done(&d);
}

static void test_read_file_max(void **state)
{
	char path[] = "/tmp/dlqd-test-util-XXXXXX";
	int fd = mkstemp(path);
	char *text = NULL;
	size_t len = 0;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "0123456789", 10), 10);
	close(fd);
	assert_int_equal(read_file_max(path, 10, &text, &len), 0);
	assert_int_equal(len, 10);
	assert_string_equal(text, "0123456789");
	free(text);
	text = NULL;
	assert_int_equal(read_file_max(path, 9, &text, &len), -EFBIG);
	assert_null(text);
	unlink(path);
	assert_int_equal(read_file_max(path, 9, &text, &len), -ENOENT);
	assert_int_equal(read_file_max("/", 100, &text, &len), -EISDIR);
	assert_null(text);

	strcpy(path, "/tmp/dlqd-test-util-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(read_file_max(path, 10, &text, &len), 0);
	assert_int_equal(len, 0);
	assert_string_equal(text, "");
	free(text);
	unlink(path);
}

static void test_strings(void **state)
{
	char small[4];

	assert_null(strdup_or_null(NULL));
	char *s = strdup_or_null("x");
	assert_string_equal(s, "x");
	free(s);
	assert_string_equal(strscpy(small, "abcdef", sizeof(small)), "abc");
	assert_string_equal(strscpy(small, NULL, sizeof(small)), "");
	small[0] = 'z';
	strscpy(small, "q", 0);
	assert_int_equal(small[0], 'z');

	for (int i = 0; i < 1000; i++) {
		double u = random_unit();
		assert_true(u >= 0.0 && u < 1.0);
	}
}

static void test_json_type_name(void **state)
{
	static const struct {
		const char *json;
		const char *name;
	} cases[] = {
		{ "{}", "object" },	{ "[]", "array" },   { "\"s\"", "string" },
		{ "1", "integer" },	{ "1.5", "number" }, { "true", "boolean" },
		{ "false", "boolean" }, { "null", "null" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		json_t *v = json_loads(cases[i].json, JSON_DECODE_ANY, NULL);

		assert_non_null(v);
		assert_string_equal(util_json_type_name(v), cases[i].name);
		json_decref(v);
	}
}

/* One JSON string writer for metrics, status and dlqctl: escapes, and
 * U+FFFD for bytes that are not UTF-8 (a header can hold anything). */
static void test_buf_json_string(void **state)
{
	struct buf b;

	buf_init(&b, 1024);
	assert_int_equal(buf_json_string(&b, "a\"b\\c\n\x01\x7f\xc3\xa9"), 0);
	assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\u0001\\u007f\xc3\xa9\"");
	buf_reset(&b);
	assert_int_equal(buf_json_string(&b, "x\xffy\xc3"), 0);
	assert_string_equal(b.data, "\"x\\ufffdy\\ufffd\"");
	buf_reset(&b);
	assert_int_equal(buf_json_string(&b, "\xed\xa0\x80"), 0); /* a surrogate */
	assert_string_equal(b.data, "\"\\ufffd\\ufffd\\ufffd\"");
	buf_done(&b);

	buf_init(&b, 4);
	assert_true(buf_json_string(&b, "too long") < 0);
	buf_done(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_json_string),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_uint_bool),
		cmocka_unit_test(test_timestamps),
		cmocka_unit_test(test_timestamp_round_trip),
		cmocka_unit_test(test_buf),
		cmocka_unit_test(test_diag),
		cmocka_unit_test(test_read_file_max),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_json_type_name),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
