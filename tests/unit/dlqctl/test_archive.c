/*
 * Unit tests for archive: lines appended whole with their newlines, the
 * file created 0600 and never truncated, and a batch that cannot be written
 * whole (here: RLIMIT_FSIZE cuts the write short with EFBIG, as a full disk
 * would with ENOSPC) leaves the file cut back to its last complete line and
 * the batch kept.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dlqctl/archive.h"

static char dir[] = "/tmp/dlqctl-archive-XXXXXX";
static char path[sizeof(dir) + 32];

static int setup(void **state)
{
	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/purged.jsonl", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	rmdir(dir);
	return 0;
}

static char *contents(void)
{
	char *s = NULL;
	size_t len;

	assert_int_equal(read_file_max(path, 1 << 20, &s, &len), 0);
	return s;
}

static void test_append_and_reopen(void **state)
{
	struct archive a;
	struct stat st;
	char *s;

	(void)state;
	assert_int_equal(archive_open(&a, path), 0);
	assert_int_equal(archive_add(&a, "{\"a\":1}", 7), 0);
	assert_int_equal(archive_add(&a, "{\"b\":2}", 7), 0);
	assert_int_equal(archive_pending(&a), 16);
	assert_int_equal(archive_flush(&a), 0);
	assert_int_equal(archive_pending(&a), 0);
	archive_close(&a);
	archive_close(&a); /* twice is fine */
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	/* A second run appends, it never truncates. */
	assert_int_equal(archive_open(&a, path), 0);
	assert_int_equal(archive_add(&a, "{\"c\":3}", 7), 0);
	assert_int_equal(archive_flush(&a), 0);
	archive_close(&a);
	s = contents();
	assert_string_equal(s, "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
	free(s);
}

static void test_failed_flush_cuts_back(void **state)
{
	struct rlimit old, small;
	struct archive a;
	char line[100];
	char *s;

	(void)state;
	unlink(path);
	assert_int_equal(archive_open(&a, path), 0);
	assert_int_equal(archive_add(&a, "first", 5), 0);
	assert_int_equal(archive_flush(&a), 0);

	/* 3 lines of 100 bytes, but the file may only grow to 150 bytes:
	 * the write stops part way, inside the second line. */
	memset(line, 'x', sizeof(line));
	for (int i = 0; i < 3; i++)
		assert_int_equal(archive_add(&a, line, sizeof(line) - 1), 0);
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	small = (struct rlimit){ .rlim_cur = 150, .rlim_max = old.rlim_max };
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
	assert_int_equal(archive_flush(&a), -EFBIG);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	s = contents();
	assert_string_equal(s, "first\n");
	free(s);
	/* The batch is still there: flushed again, it goes out whole. */
	assert_int_equal(archive_pending(&a), 300);
	assert_int_equal(archive_flush(&a), 0);
	s = contents();
	assert_int_equal(strlen(s), 6 + 300);
	assert_int_equal(s[strlen(s) - 1], '\n');
	free(s);
	archive_close(&a);
}

static void test_errors(void **state)
{
	struct archive a;
	char missing[sizeof(dir) + 32];

	(void)state;
	snprintf(missing, sizeof(missing), "%s/no/such/dir.jsonl", dir);
	assert_int_equal(archive_open(&a, missing), -ENOENT);
	archive_close(&a);
	/* A closed file: the flush fails and nothing is claimed written. */
	assert_int_equal(archive_open(&a, path), 0);
	assert_int_equal(archive_add(&a, "x", 1), 0);
	close(a.fd);
	assert_int_equal(archive_flush(&a), -EBADF);
	assert_int_equal(archive_pending(&a), 2);
	a.fd = -1;
	archive_close(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_append_and_reopen),
		cmocka_unit_test(test_failed_flush_cuts_back),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
