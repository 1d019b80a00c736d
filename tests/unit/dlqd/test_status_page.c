/*
 * test_status_page: the page dlqd serves is src/dlqd/status_page.html byte
 * for byte, as embedded at build time: same length, same bytes, and a NUL
 * after them (none inside), so neither a stale build nor the embedding can
 * change what operators get. Its behaviour in a browser is
 * tests/integration/test_status_page.py's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/util.h"
#include "dlqd/status_page.h"

static void test_embedded_is_the_file(void **state)
{
	const char *dir = getenv("DLQD_SOURCE_DIR");
	char path[4096];
	char *text = NULL;
	size_t len = 0;

	if (!dir || !*dir)
		skip();
	snprintf(path, sizeof(path), "%s/src/dlqd/status_page.html", dir);
	assert_int_equal(read_file_max(path, 1 << 20, &text, &len), 0);
	assert_int_equal(status_page_html_len, len);
	assert_memory_equal(status_page_html, text, len);
	free(text);
}

static void test_terminated(void **state)
{
	assert_true(status_page_html_len > 0);
	assert_int_equal(strlen(status_page_html), status_page_html_len);
	assert_int_equal(status_page_html[status_page_html_len], '\0');
	assert_true(strncmp(status_page_html, "<!DOCTYPE html>\n", 16) == 0);
	assert_non_null(strstr(status_page_html, "</html>\n"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_embedded_is_the_file),
		cmocka_unit_test(test_terminated),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
