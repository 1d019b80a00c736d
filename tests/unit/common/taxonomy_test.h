/*
 * taxonomy_test: fixtures shared by the taxonomy tests (test_taxonomy.c for
 * classification, test_taxonomy_load.c for loading and validation). Static
 * inline, like testutil.h; include it after <cmocka.h>.
 */
#pragma once

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/taxonomy.h"

/* tests/data, from the environment ctest sets or next to this source. */
static inline const char *test_data_dir(void)
{
	static char dir[4096];
	const char *env = getenv("DLQD_TEST_DATA");
	char file[4096];

	if (env && *env)
		return env;
	strscpy(file, __FILE__, sizeof(file));
	snprintf(dir, sizeof(dir), "%s/../../data", dirname(file));
	return dir;
}

/* The top of the source tree (config/, docs/). */
static inline const char *source_dir(void)
{
	static char dir[4096];
	const char *env = getenv("DLQD_SOURCE_DIR");
	char file[4096];

	if (env && *env)
		return env;
	strscpy(file, __FILE__, sizeof(file));
	snprintf(dir, sizeof(dir), "%s/../../..", dirname(file));
	return dir;
}

/* A table that must load without a single diagnostic. */
static inline struct taxonomy *parse_ok(const char *text)
{
	struct diag d = { 0 };
	struct taxonomy *t = NULL;
	int r = taxonomy_parse("test.json", text, strlen(text), &t, &d);

	for (size_t i = 0; i < d.n; i++)
		print_message("unexpected diagnostic: %s\n", d.lines[i]);
	assert_int_equal(r, 0);
	assert_int_equal(d.n, 0);
	assert_non_null(t);
	diag_done(&d);
	return t;
}

/* d holds exactly the n lines of want, in order (all printed if not). */
static inline void assert_diags(const struct diag *d, const char *const *want, size_t n)
{
	if (d->n != n)
		for (size_t i = 0; i < d->n; i++)
			print_message("%s\n", d->lines[i]);
	assert_int_equal(d->n, n);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(d->lines[i], want[i]);
}
