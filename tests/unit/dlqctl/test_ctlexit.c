/*
 * Unit tests for ctlexit: every documented exit status comes out of the one
 * table for the situation docs/dlqctl.md names, and a signal turns clean
 * stops into 130 without hiding a failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>

#include "dlqctl/ctlexit.h"

static void test_documented_codes(void **state)
{
	(void)state;
	assert_int_equal(ctlexit_code(CTLEXIT_RESULT, 0, false), 0);
	assert_int_equal(ctlexit_code(CTLEXIT_RUN, -EPROTO, false), 1);
	assert_int_equal(ctlexit_code(CTLEXIT_RUN, -ENOENT, false), 1); /* a basic.return */
	assert_int_equal(ctlexit_code(CTLEXIT_RUN, -ETIMEDOUT, false), 1);
	assert_int_equal(ctlexit_code(CTLEXIT_RESULT, -EAGAIN, false), 1);
	assert_int_equal(ctlexit_code(CTLEXIT_ARGS, -EINVAL, false), 2);
	assert_int_equal(ctlexit_code(CTLEXIT_ARGS, -EBADMSG, false), 2);
	assert_int_equal(ctlexit_code(CTLEXIT_CONNECT, -ECONNREFUSED, false), 3);
	assert_int_equal(ctlexit_code(CTLEXIT_CONNECT, -EACCES, false), 3);
	assert_int_equal(ctlexit_code(CTLEXIT_CONNECT, -ETIMEDOUT, false), 3);
	assert_int_equal(ctlexit_code(CTLEXIT_QUEUE, -ENOENT, false), 4);
	assert_int_equal(ctlexit_code(CTLEXIT_QUEUE, -EPROTO, false), 1);
	assert_int_equal(ctlexit_code(CTLEXIT_POLICY, -EPERM, false), 5);
	assert_int_equal(ctlexit_code(CTLEXIT_RESULT, -EPERM, false), 5);
	assert_int_equal(ctlexit_code(CTLEXIT_RESULT, -ENOENT, false), 6);
}

static void test_out_of_memory_is_a_failure_anywhere(void **state)
{
	(void)state;
	for (int s = CTLEXIT_ARGS; s <= CTLEXIT_RESULT; s++)
		assert_int_equal(ctlexit_code(s, -ENOMEM, false), 1);
}

static void test_signal(void **state)
{
	(void)state;
	/* A clean stop after a signal: 130, whatever the run found. */
	assert_int_equal(ctlexit_code(CTLEXIT_RESULT, 0, true), 130);
	assert_int_equal(ctlexit_code(CTLEXIT_RUN, 0, true), 130);
	assert_int_equal(ctlexit_code(CTLEXIT_RESULT, -ENOENT, true), 130);
	assert_int_equal(ctlexit_code(CTLEXIT_RESULT, -EPERM, true), 130);
	assert_int_equal(ctlexit_code(CTLEXIT_RESULT, -EAGAIN, true), 130);
	/* A failure stays one. */
	assert_int_equal(ctlexit_code(CTLEXIT_RUN, -EPROTO, true), 1);
	assert_int_equal(ctlexit_code(CTLEXIT_QUEUE, -ENOENT, true), 4);
	assert_int_equal(ctlexit_code(CTLEXIT_CONNECT, -ECONNREFUSED, true), 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_documented_codes),
		cmocka_unit_test(test_out_of_memory_is_a_failure_anywhere),
		cmocka_unit_test(test_signal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
