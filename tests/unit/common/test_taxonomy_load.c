/*
 * Unit tests for taxonomy_load.c: every golden file under tests/data/taxonomy
 * (FILE:LINE of the first diagnostic), every error reported in file order,
 * read errors and size limits, the JSON Schema's keys, and the two ways
 * diagnostics once hung (a NUL byte; a rescan of the file per error).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/taxonomy.h"
#include "common/taxonomy_test.h"
#include "testutil.h"

static char *read_text(const char *path)
{
	char *text = NULL;
	size_t len;

	assert_int_equal(read_file_max(path, 65536, &text, &len), 0);
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		text[--len] = '\0';
	return text;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Every good-*.json loads without a diagnostic; every bad-*.json fails, and
 * its first diagnostic is the line in bad-*.err (FILE:LINE: message, with
 * FILE relative to the golden directory).
 */
static void test_goldens(void **state)
{
	char dir[4096];
	DIR *dp;
	struct dirent *de;
	char *names[512];
	size_t n = 0, good = 0, bad = 0;

	snprintf(dir, sizeof(dir), "%s/taxonomy", test_data_dir());
	dp = opendir(dir);
	assert_non_null(dp);
	while ((de = readdir(dp))) {
		size_t len = strlen(de->d_name);

		if (len > 5 && strcmp(de->d_name + len - 5, ".json") == 0) {
			assert_true(n < ARRAY_SIZE(names));
			names[n++] = strdup(de->d_name);
		}
	}
	closedir(dp);
	qsort(names, n, sizeof(*names), name_cmp);

	for (size_t i = 0; i < n; i++) {
		_cleanup_(taxonomy_freep) struct taxonomy *t = NULL;
		struct diag d = { 0 };
		char path[4096 + 256];
		int r;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		r = taxonomy_load(path, &t, &d);
		if (strncmp(names[i], "good-", 5) == 0) {
			for (size_t j = 0; j < d.n; j++)
				print_message("%s\n", d.lines[j]);
			assert_int_equal(r, 0);
			assert_int_equal(d.n, 0);
			assert_non_null(t);
			good++;
		} else {
			assert_true(strncmp(names[i], "bad-", 4) == 0);
			char errpath[4096 + 256], expected[8192];
			_cleanup_free_ char *want = NULL;

			snprintf(errpath, sizeof(errpath), "%.*s.err", (int)(strlen(path) - 5),
				 path);
			want = read_text(errpath);
			snprintf(expected, sizeof(expected), "%s/%s", dir, want);
			if (r >= 0 || d.n == 0)
				print_message("%s: accepted\n", names[i]);
			assert_true(r < 0);
			assert_null(t);
			assert_true(d.n >= 1);
			if (strcmp(d.lines[0], expected) != 0)
				print_message("%s:\n  got  %s\n  want %s\n", names[i], d.lines[0],
					      expected);
			assert_string_equal(d.lines[0], expected);
			bad++;
		}
		diag_done(&d);
		free(names[i]);
	}
	/* The directory is really there and has both kinds. */
	assert_true(good >= 3);
	assert_true(bad >= 30);
}

/* Every problem is reported, in file order, on its own line. */
static void test_all_errors_reported(void **state)
{
	static const char text[] =
		"{\n"
		"  \"rules\": [\n"
		"    {\"when\": {\"exit_code\": [300]},\n"
		"     \"error_code\": \"x\", \"class\": \"TRANSIENT\", \"policy\": \"nope\"}\n"
		"  ],\n"
		"  \"version\": 3,\n"
		"  \"policies\": {\"p\": {\"max_attempt\": -1}},\n"
		"  \"classes\": {\"TRANSIENT\": \"p\", \"PERSISTENT\": \"p\", \"NON_RETRYABLE\": "
		"\"p\"},\n"
		"  \"default\": {\"error_code\": \"D\", \"class\": \"PERSISTENT\", \"extra\": 1}\n"
		"}\n";
	static const char *const want[] = {
		"t.json:3: rules[0].when.exit_code[0]: 300 is out of range (0..255)",
		"t.json:4: rules[0].error_code: invalid error code \"x\" (1 to 63 characters of "
		"A-Z, "
		"0-9 and _)",
		"t.json:4: rules[0].policy: unknown policy \"nope\"",
		"t.json:6: version: unsupported version 3 (this dlqd reads version 1)",
		"t.json:7: policies.p.max_attempt: -1 is out of range (0..1000000)",
		"t.json:9: default.extra: unknown key",
	};
	struct taxonomy *t = NULL;
	struct diag d = { 0 };

	assert_int_equal(taxonomy_parse("t.json", text, strlen(text), &t, &d), -EINVAL);
	assert_null(t);
	assert_diags(&d, want, ARRAY_SIZE(want));
	diag_done(&d);

	/* Diagnostics are optional. */
	assert_int_equal(taxonomy_parse("t.json", text, strlen(text), &t, NULL), -EINVAL);
	assert_null(t);
}

static void test_read_errors(void **state)
{
	struct taxonomy *t = NULL;
	struct diag d = { 0 };
	size_t big = 1024 * 1024 + 1;
	char *text;

	assert_int_equal(taxonomy_load("/nonexistent/taxonomy.json", &t, &d), -ENOENT);
	assert_null(t);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.lines[0],
			    "/nonexistent/taxonomy.json:1: cannot read: No such file or "
			    "directory");
	diag_done(&d);

	/* 1 MiB of JSON is the most a table may be, read from a file or not. */
	char tmp[] = "/tmp/test_taxonomy.XXXXXX";
	int fd = mkstemp(tmp);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)big), 0);
	close(fd);
	assert_int_equal(taxonomy_load(tmp, &t, &d), -EFBIG);
	unlink(tmp);
	assert_int_equal(d.n, 1);
	assert_non_null(strstr(d.lines[0], ":1: cannot read: file too large (max 1 MiB)"));
	diag_done(&d);

	text = malloc(big);
	assert_non_null(text);
	memset(text, ' ', big);
	text[0] = '{';
	text[big - 1] = '}';
	assert_int_equal(taxonomy_parse("big.json", text, big, &t, &d), -EFBIG);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.lines[0], "big.json:1: cannot read: file too large (max 1 MiB)");
	diag_done(&d);
	/* One byte less is read (and then rejected for its content). */
	text[big - 2] = '}';
	assert_int_equal(taxonomy_parse("big.json", text, big - 1, &t, &d), -EINVAL);
	assert_string_equal(d.lines[0], "big.json:1: missing \"version\"");
	diag_done(&d);
	free(text);

	/* Bytes after the document, and a NUL inside it. */
	assert_int_equal(taxonomy_parse("x.json", "{} {}", 5, &t, &d), -EINVAL);
	assert_int_equal(d.n, 1);
	assert_non_null(strstr(d.lines[0], "x.json:1: invalid JSON: "));
	diag_done(&d);
	assert_int_equal(taxonomy_parse("x.json", "{\"version\"\0: 1}", 15, &t, &d), -EINVAL);
	assert_int_equal(d.n, 1);
	diag_done(&d);
}

/* A table with n rules, each with one key of v values. */
static char *table_with(size_t n_rules, size_t n_values)
{
	struct buf b;

	buf_init(&b, 4 * 1024 * 1024);
	buf_printf(&b, "{\"version\": 1, \"policies\": {\"n\": {\"max_attempt\": 0}}, \"classes\": "
		       "{\"TRANSIENT\": \"n\", \"PERSISTENT\": \"n\", \"NON_RETRYABLE\": \"n\"},\n"
		       "\"rules\": [\n");
	for (size_t i = 0; i < n_rules; i++) {
		buf_printf(&b, "%s{\"when\": {\"exit_code\": [", i ? ",\n" : "");
		for (size_t j = 0; j < n_values; j++)
			buf_printf(&b, "%s%zu", j ? "," : "", j % 256);
		buf_printf(&b, "]}, \"error_code\": \"R%zu\", \"class\": \"PERSISTENT\"}", i);
	}
	buf_printf(&b, "],\n\"default\": {\"error_code\": \"D\", \"class\": \"PERSISTENT\"}}\n");
	return buf_steal(&b, NULL);
}

static void test_limits(void **state)
{
	_cleanup_free_ char *ok = table_with(1000, 1), *too_many = table_with(1001, 1);
	_cleanup_free_ char *values_ok = table_with(1, 1000), *values_bad = table_with(1, 1001);
	struct taxonomy *t = NULL;
	struct diag d = { 0 };
	struct classification c;

	t = parse_ok(ok);
	taxonomy_classify(t, &(struct result){ .kind = RESULT_EXIT, .exit_code = 0 }, &c);
	assert_string_equal(c.error_code, "R0");
	t = taxonomy_free(t);
	t = parse_ok(values_ok);
	t = taxonomy_free(t);

	assert_int_equal(taxonomy_parse("t.json", too_many, strlen(too_many), &t, &d), -EINVAL);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.lines[0], "t.json:2: rules: at most 1000 rules (got 1001)");
	diag_done(&d);
	assert_int_equal(taxonomy_parse("t.json", values_bad, strlen(values_bad), &t, &d), -EINVAL);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.lines[0], "t.json:3: rules[0].when.exit_code: at most 1000 values");
	diag_done(&d);
	assert_null(taxonomy_free(NULL));
}

/* The keys the JSON Schema allows are the keys the validator allows. */
static void check_schema_keys(json_t *schema, const char *def, const char *const *keys)
{
	json_t *o = json_object_get(json_object_get(json_object_get(schema, "$defs"), def),
				    "properties");
	size_t n = 0;

	if (!def)
		o = json_object_get(schema, "properties");
	assert_non_null(o);
	for (; keys[n]; n++) {
		if (!json_object_get(o, keys[n]))
			print_message("schema %s lacks %s\n", def ? def : "(root)", keys[n]);
		assert_non_null(json_object_get(o, keys[n]));
	}
	assert_int_equal(json_object_size(o), n);
}

static void test_schema(void **state)
{
	char path[4096];
	json_error_t err;
	json_t *schema;

	snprintf(path, sizeof(path), "%s/docs/taxonomy.schema.json", source_dir());
	schema = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
	if (!schema)
		print_message("%s:%d: %s\n", path, err.line, err.text);
	assert_non_null(schema);
	assert_string_equal(json_string_value(json_object_get(schema, "$schema")),
			    "https://json-schema.org/draft/2020-12/schema");
	check_schema_keys(schema, NULL,
			  (const char *const[]){ "$schema", "version", "policies", "classes",
						 "rules", "default", NULL });
	check_schema_keys(schema, "policy",
			  (const char *const[]){ "max_attempt", "initial", "multiplier", "max",
						 "jitter", NULL });
	check_schema_keys(schema, "rule",
			  (const char *const[]){ "when", "error_code", "class", "policy",
						 "escalate", "breaker", NULL });
	check_schema_keys(schema, "when",
			  (const char *const[]){ "http_status", "transport", "timeout", "exit_code",
						 "signal", "handler_code", NULL });
	json_decref(schema);
}

/*
 * A NUL byte that jansson lets through (it skips one after a number or a
 * literal) once made the line locator spin forever on the first error after
 * it: dlqd hung at start, in --check-config and on reload. Here a NUL goes at
 * every offset of a table whose error comes last; wherever jansson accepts
 * the text, the error is reported on its line, promptly.
 */
static void test_nul_byte(void **state)
{
	static const char table[] =
		"{\"version\": 1,\n"
		" \"policies\": {\"p\": {\"max_attempt\": 2, \"initial\": 1, \"multiplier\": 2.5,\n"
		"                      \"max\": 10, \"jitter\": [0, 0.5]},\n"
		"              \"n\": {\"max_attempt\": 0}},\n"
		" \"classes\": {\"TRANSIENT\": \"p\", \"PERSISTENT\": \"p\", \"NON_RETRYABLE\": "
		"\"n\"},\n"
		" \"rules\": [{\"when\": {\"exit_code\": [1, 2], \"signal\": [9]}, \"error_code\": "
		"\"E\",\n"
		"            \"class\": \"TRANSIENT\", \"escalate\": true},\n"
		"           {\"when\": {\"timeout\": true}, \"error_code\": \"T\", \"class\": "
		"\"TRANSIENT\"}],\n"
		" \"default\": {\"error_code\": \"D\", \"class\": \"PERSISTENT\",\n"
		"             \"bogus\": null}}\n";
	const size_t len = sizeof(table) - 1;
	char text[sizeof(table) + 1];
	size_t accepted = 0;

	alarm(20);
	for (size_t at = 0; at <= len; at++) {
		struct taxonomy *t = NULL;
		struct diag d = { 0 };
		int r;

		memcpy(text, table, at);
		text[at] = '\0';
		memcpy(text + at + 1, table + at, len - at);
		r = taxonomy_parse("t.json", text, len + 1, &t, &d);
		assert_int_equal(r, -EINVAL);
		assert_null(t);
		assert_true(d.n >= 1);
		if (!strstr(d.lines[0], ": invalid JSON: ")) {
			if (d.n != 1 || strcmp(d.lines[0], "t.json:10: default.bogus: unknown key"))
				print_message("NUL at %zu: %s\n", at, d.lines[0]);
			assert_int_equal(d.n, 1);
			assert_string_equal(d.lines[0], "t.json:10: default.bogus: unknown key");
			accepted++;
		}
		diag_done(&d);
	}
	alarm(0);
	/* After 1, 2.5, 10, 0, 0.5, 0, 1, 2, 9, true, true and null at least. */
	assert_true(accepted >= 12);
}

/*
 * ~1 MiB with tens of thousands of unknown keys, nested and at the top: every
 * one is reported on its own line. Finding lines by rescanning the text per
 * error took minutes here (and blocked a reload); the alarm is a generous
 * bound against that, not a timing test.
 */
static void test_many_errors(void **state)
{
	enum { RULES = 1000 };
	struct taxonomy *t = NULL;
	struct diag d = { 0 };
	struct buf b;
	size_t keys = 0;
	unsigned line;
	char want[128];

	buf_init(&b, 1024 * 1024);
	buf_printf(&b, "{\"version\": 1, \"policies\": {\"n\": {\"max_attempt\": 0}},\n"
		       " \"classes\": {\"TRANSIENT\": \"n\", \"PERSISTENT\": \"n\", "
		       "\"NON_RETRYABLE\": \"n\"},\n"
		       " \"default\": {\"error_code\": \"D\", \"class\": \"PERSISTENT\"},\n"
		       " \"rules\": [\n");
	for (size_t i = 0; i < RULES; i++)
		buf_printf(&b,
			   "  %s{\"when\": {\"exit_code\": [%zu]}, \"error_code\": \"R%zu\", "
			   "\"class\": \"TRANSIENT\", \"extra%zu\": 0}\n",
			   i ? "," : "", i % 256, i, i);
	buf_printf(&b, " ]");
	/* Unknown keys at the top until the file is close to its 1 MiB limit. */
	while (b.len + 64 < 1024 * 1024)
		buf_printf(&b, ",\n \"k%07zu\": [1, {\"x\": 2}]", keys++);
	buf_printf(&b, "}\n");
	assert_true(keys > 30000);

	alarm(20);
	assert_int_equal(taxonomy_parse("big.json", b.data, b.len, &t, &d), -EINVAL);
	alarm(0);
	assert_null(t);
	assert_int_equal(d.n, RULES + keys);
	line = 5;
	for (size_t i = 0; i < RULES; i++, line++) {
		snprintf(want, sizeof(want), "big.json:%u: rules[%zu].extra%zu: unknown key", line,
			 i, i);
		assert_string_equal(d.lines[i], want);
	}
	line++; /* " ]" */
	for (size_t i = 0; i < keys; i++, line++) {
		snprintf(want, sizeof(want), "big.json:%u: k%07zu: unknown key", line, i);
		assert_string_equal(d.lines[RULES + i], want);
	}
	diag_done(&d);
	buf_done(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_goldens),	    cmocka_unit_test(test_all_errors_reported),
		cmocka_unit_test(test_read_errors), cmocka_unit_test(test_limits),
		cmocka_unit_test(test_schema),	    cmocka_unit_test(test_nul_byte),
		cmocka_unit_test(test_many_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
