/*
 * Unit tests for ctlopts: the option combinations that are usage errors,
 * the refusals before the broker (no filter without --all, purge without
 * --yes), the blocked schema versions replay leaves in place, and --limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "dlqctl/ctlopts.h"

static struct ctl_options opts(enum ctl_command cmd)
{
	struct ctl_options o = { .cmd = cmd, .rate = CTLOPTS_DEFAULT_RATE };

	dlqfilter_init(&o.filter);
	return o;
}

static void with_filter(struct ctl_options *o)
{
	char err[128];

	assert_int_equal(dlqfilter_add(&o->filter, DLQFILTER_ERROR_CODE, "X", err, sizeof(err)), 0);
}

static void test_check(void **state)
{
	struct ctl_options o;
	char why[256];

	(void)state;
	for (int cmd = CTL_STATS; cmd <= CTL_PURGE; cmd++) {
		o = opts(cmd);
		assert_int_equal(ctlopts_check(&o, why, sizeof(why)), 0);
		o.rate_given = true;
		assert_int_equal(ctlopts_check(&o, why, sizeof(why)),
				 cmd == CTL_REPLAY ? 0 : -EINVAL);
		o = opts(cmd);
		o.archive_path = "a.jsonl";
		assert_int_equal(ctlopts_check(&o, why, sizeof(why)),
				 cmd == CTL_PURGE ? 0 : -EINVAL);
		o = opts(cmd);
		o.dry_run = true;
		assert_int_equal(ctlopts_check(&o, why, sizeof(why)),
				 cmd == CTL_REPLAY || cmd == CTL_PURGE ? 0 : -EINVAL);
	}
	o = opts(CTL_LIST);
	o.force = true;
	assert_int_equal(ctlopts_check(&o, why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "--rate and --force only apply to replay");
	o = opts(CTL_REPLAY);
	o.all = true;
	assert_int_equal(ctlopts_check(&o, why, sizeof(why)), 0);
	with_filter(&o);
	assert_int_equal(ctlopts_check(&o, why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "--all cannot be combined with filters");
	dlqfilter_done(&o.filter);
}

static void test_refusal(void **state)
{
	struct ctl_options o;
	char why[256];

	(void)state;
	o = opts(CTL_LIST);
	assert_int_equal(ctlopts_refusal(&o, why, sizeof(why)), 0);
	o = opts(CTL_REPLAY);
	assert_int_equal(ctlopts_refusal(&o, why, sizeof(why)), -EPERM);
	assert_non_null(strstr(why, "refusing to replay every message without --all"));
	o.all = true;
	assert_int_equal(ctlopts_refusal(&o, why, sizeof(why)), 0);

	o = opts(CTL_PURGE);
	with_filter(&o);
	assert_int_equal(ctlopts_refusal(&o, why, sizeof(why)), -EPERM);
	assert_non_null(strstr(why, "--yes"));
	o.dry_run = true;
	assert_int_equal(ctlopts_refusal(&o, why, sizeof(why)), 0);
	o.dry_run = false;
	o.yes = true;
	assert_int_equal(ctlopts_refusal(&o, why, sizeof(why)), 0);
	dlqfilter_done(&o.filter);
	o = opts(CTL_PURGE);
	o.yes = true;
	assert_int_equal(ctlopts_refusal(&o, why, sizeof(why)), -EPERM);
	assert_non_null(strstr(why, "refusing to purge"));
}

static void test_schema_blocked(void **state)
{
	char v1[] = "v1", none[] = "";
	char *blocked[] = { v1, none, NULL };
	struct ctl_options o = opts(CTL_REPLAY);
	struct dlq_record r = { .envelope = true };

	(void)state;
	strscpy(r.schema_version, "v1", sizeof(r.schema_version));
	assert_true(ctlopts_schema_blocked(&o, blocked, &r));
	assert_false(ctlopts_schema_blocked(&o, NULL, &r));
	strscpy(r.schema_version, "v2", sizeof(r.schema_version));
	assert_false(ctlopts_schema_blocked(&o, blocked, &r));
	/* An invalid body has no schema: never blocked. */
	r = (struct dlq_record){ .envelope = false };
	assert_false(ctlopts_schema_blocked(&o, blocked, &r));
	r.envelope = true; /* an envelope without schema_version, "" blocked */
	assert_true(ctlopts_schema_blocked(&o, blocked, &r));
	o.force = true;
	assert_false(ctlopts_schema_blocked(&o, blocked, &r));
}

static void test_limit(void **state)
{
	struct ctl_options o = opts(CTL_REPLAY);

	(void)state;
	assert_false(ctlopts_limit_reached(&o, 1000, 1000, 256));
	o.limit = 10;
	assert_false(ctlopts_limit_reached(&o, 50, 5, 4));
	assert_true(ctlopts_limit_reached(&o, 50, 5, 5)); /* in flight counts */
	o.cmd = CTL_LIST;
	assert_false(ctlopts_limit_reached(&o, 9, 100, 100));
	assert_true(ctlopts_limit_reached(&o, 10, 0, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_refusal),
		cmocka_unit_test(test_schema_blocked),
		cmocka_unit_test(test_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
