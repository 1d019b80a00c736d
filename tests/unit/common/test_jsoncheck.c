/*
 * Unit tests for jsoncheck: paths in messages, errors on their lines in file
 * order, the depth limit of a printed path, and the typed readers' messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <string.h>

#include "common/jsoncheck.h"
#include "testutil.h"

static const char doc[] = "{\"a\": {\"b\": [0,\n"
			  "                1.0,\n"
			  "                2.5]},\n"
			  " \"s\": \"text\",\n"
			  " \"x\": 1}\n";

struct fixture {
	json_t *root;
	struct jsoncheck c;
	struct diag d;
};

static int setup(void **state)
{
	static struct fixture f;
	json_error_t err;

	f = (struct fixture){ .root = json_loads(doc, 0, &err) };
	assert_non_null(f.root);
	jsoncheck_init(&f.c, "f.json", doc, strlen(doc));
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	jsoncheck_finish(&f->c, NULL);
	diag_done(&f->d);
	json_decref(f->root);
	return 0;
}

/* Errors come out sorted by line, in report order within a line. */
static void test_order_and_paths(void **state)
{
	struct fixture *f = *state;
	struct jsoncheck *c = &f->c;

	jsoncheck_key(c, "x");
	jsoncheck_report(c, "last line");
	jsoncheck_pop(c);
	jsoncheck_key(c, "a");
	jsoncheck_key(c, "b");
	jsoncheck_index(c, 2);
	jsoncheck_report(c, "third %s", "element");
	jsoncheck_pop(c);
	jsoncheck_index(c, 0);
	jsoncheck_report(c, "first");
	jsoncheck_pop(c);
	jsoncheck_pop(c);
	jsoncheck_report(c, "second on line 1");
	jsoncheck_pop(c);
	jsoncheck_report(c, "the document");
	assert_int_equal(c->errors, 5);
	assert_int_equal(jsoncheck_finish(c, &f->d), -EINVAL);
	assert_int_equal(f->d.n, 5);
	assert_string_equal(f->d.lines[0], "f.json:1: a.b[0]: first");
	assert_string_equal(f->d.lines[1], "f.json:1: a: second on line 1");
	assert_string_equal(f->d.lines[2], "f.json:1: the document");
	assert_string_equal(f->d.lines[3], "f.json:3: a.b[2]: third element");
	assert_string_equal(f->d.lines[4], "f.json:5: x: last line");
	/* Finished means empty: a second finish has nothing to add. */
	assert_int_equal(jsoncheck_finish(c, &f->d), -EINVAL);
	assert_int_equal(f->d.n, 5);
}

static void test_no_errors(void **state)
{
	struct fixture *f = *state;

	jsoncheck_key(&f->c, "a");
	jsoncheck_pop(&f->c);
	jsoncheck_pop(&f->c); /* one pop too many is harmless */
	assert_int_equal(jsoncheck_finish(&f->c, &f->d), 0);
	assert_int_equal(f->d.n, 0);
}

/* Past JSONCHECK_DEPTH_MAX steps the path is cut, and the line is the cut's. */
static void test_depth(void **state)
{
	struct fixture *f = *state;

	jsoncheck_key(&f->c, "a");
	jsoncheck_key(&f->c, "b");
	jsoncheck_index(&f->c, 1);
	for (int i = 0; i < JSONCHECK_DEPTH_MAX; i++)
		jsoncheck_key(&f->c, "k");
	jsoncheck_report(&f->c, "deep");
	for (int i = 0; i < JSONCHECK_DEPTH_MAX + 3; i++)
		jsoncheck_pop(&f->c);
	assert_int_equal(f->c.depth, 0);
	jsoncheck_finish(&f->c, &f->d);
	assert_int_equal(f->d.n, 1);
	assert_string_equal(f->d.lines[0], "f.json:2: a.b[1].k.k.k.k.k: deep");
}

static void test_readers(void **state)
{
	struct fixture *f = *state;
	struct jsoncheck *c = &f->c;
	json_t *a, *b, *s;
	json_int_t n = -1;
	double d = -1;

	assert_true(jsoncheck_object(c, f->root, (const char *const[]){ "a", "s", NULL }));
	a = jsoncheck_enter(c, f->root, "a");
	assert_non_null(a);
	/* Not an object: reported once, its keys are not looked at. */
	assert_false(
		jsoncheck_object(c, json_object_get(f->root, "x"), (const char *const[]){ NULL }));
	jsoncheck_keys(c, a, (const char *const[]){ "b", NULL });
	assert_null(jsoncheck_enter(c, a, "missing"));
	b = jsoncheck_enter(c, a, "b");
	assert_true(jsoncheck_type(c, b, JSON_ARRAY));
	assert_false(jsoncheck_type(c, b, JSON_OBJECT));
	/* 1.0 is an integer, 2.5 is not. */
	jsoncheck_index(c, 1);
	assert_int_equal(jsoncheck_int(c, json_array_get(b, 1), 0, 5, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(jsoncheck_int(c, json_array_get(b, 1), 2, 5, &n), -EINVAL);
	jsoncheck_pop(c);
	jsoncheck_index(c, 2);
	assert_int_equal(jsoncheck_int(c, json_array_get(b, 2), 0, 5, &n), -EINVAL);
	assert_int_equal(jsoncheck_number(c, json_array_get(b, 2), 0, INFINITY, &d), 0);
	assert_true(d == 2.5);
	assert_int_equal(jsoncheck_number(c, json_array_get(b, 2), 3, INFINITY, &d), -EINVAL);
	assert_int_equal(jsoncheck_number(c, json_array_get(b, 2), 0, 1, &d), -EINVAL);
	jsoncheck_pop(c);
	jsoncheck_pop(c);
	jsoncheck_pop(c);
	s = jsoncheck_enter(c, f->root, "s");
	assert_true(jsoncheck_type(c, s, JSON_STRING));
	assert_int_equal(jsoncheck_number(c, s, 0, 1, &d), -EINVAL);
	assert_false(jsoncheck_type(c, s, JSON_ARRAY));
	jsoncheck_pop(c);
	assert_false(jsoncheck_type(c, NULL, JSON_OBJECT));

	assert_true(jsoncheck_is_integer(json_array_get(b, 0)));
	assert_true(jsoncheck_is_integer(json_array_get(b, 1)));
	assert_false(jsoncheck_is_integer(json_array_get(b, 2)));
	assert_false(jsoncheck_is_integer(s));

	static const char *const want[] = {
		"f.json:1: a: expected an object, got integer",
		"f.json:1: a: missing \"missing\"",
		"f.json:1: a.b: expected an object, got array",
		"f.json:2: a.b[1]: 1 is out of range (2..5)",
		"f.json:3: a.b[2]: expected an integer, got number",
		"f.json:3: a.b[2]: 2.5 is out of range (at least 3)",
		"f.json:3: a.b[2]: 2.5 is out of range (0..1)",
		"f.json:4: s: expected a number, got string",
		"f.json:4: s: expected an array, got string",
		"f.json:5: x: unknown key",
	};
	jsoncheck_finish(c, &f->d);
	if (f->d.n != ARRAY_SIZE(want) + 1)
		for (size_t i = 0; i < f->d.n; i++)
			print_message("%s\n", f->d.lines[i]);
	/* The last report, at the root, is the last on line 1 (fourth). */
	assert_int_equal(f->d.n, ARRAY_SIZE(want) + 1);
	for (size_t i = 0; i < ARRAY_SIZE(want); i++)
		assert_string_equal(f->d.lines[i + (i >= 3)], want[i]);
	assert_string_equal(f->d.lines[3], "f.json:1: expected an object, got nothing");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_order_and_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_depth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readers, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
