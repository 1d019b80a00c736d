/*
 * ctlexit: the table from (stage, -errno) to dlqctl's exit status.
 */
#include "dlqctl/ctlexit.h"

#include <errno.h>
#include <stddef.h>

#include "common/util.h"

#define ANY_STAGE (-1)
#define ANY_ERROR 1 /* matches every error (errors are negative) */

/* Looked up in order: the first matching rule decides. */
static const struct rule {
	int stage;
	int error;
	enum ctlexit code;
	bool clean; /* a clean stop: a signal makes it 130 */
} rules[] = {
	{ ANY_STAGE, 0, CTLEXIT_OK, true },
	{ ANY_STAGE, -ENOMEM, CTLEXIT_FAILED, false },
	{ CTLEXIT_ARGS, ANY_ERROR, CTLEXIT_USAGE, false },
	{ CTLEXIT_POLICY, ANY_ERROR, CTLEXIT_REFUSED, false },
	{ CTLEXIT_CONNECT, ANY_ERROR, CTLEXIT_UNREACHABLE, false },
	{ CTLEXIT_QUEUE, -ENOENT, CTLEXIT_NO_QUEUE, false },
	{ CTLEXIT_RESULT, -ENOENT, CTLEXIT_NOT_FOUND, true },
	{ CTLEXIT_RESULT, -EPERM, CTLEXIT_REFUSED, true },
	/* A script must not read "all replayed" into a run the broker stopped
	 * feeding: that is a failure, even though nothing went wrong here. */
	{ CTLEXIT_RESULT, -EAGAIN, CTLEXIT_FAILED, true },
	{ ANY_STAGE, ANY_ERROR, CTLEXIT_FAILED, false },
};

int ctlexit_code(enum ctlexit_stage stage, int error, bool interrupted)
{
	for (size_t i = 0; i < ARRAY_SIZE(rules); i++) {
		const struct rule *r = &rules[i];
		if (r->stage != ANY_STAGE && r->stage != (int)stage)
			continue;
		if (r->error == ANY_ERROR ? error >= 0 : r->error != error)
			continue;
		return r->clean && interrupted ? CTLEXIT_INTERRUPTED : r->code;
	}
	return CTLEXIT_FAILED; /* not reached: the last rule takes every error */
}
