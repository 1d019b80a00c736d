/*
 * fuzz_taxonomy: a taxonomy file through taxonomy_parse() (what
 * taxonomy_load() runs on the file's bytes), then, when it loads, a fixed
 * set of handler results through taxonomy_classify() and each class's
 * policy through the backoff arithmetic, as router.c would. Checks: a
 * refused file says why in at least one "FILE:LINE: message" line and a
 * loaded one in none; every classification names a code, a valid class and
 * a policy; delays stay within the table's own maximum.
 */
#include <errno.h>

#include "common/backoff.h"
#include "common/taxonomy.h"
#include "common/util.h"
#include "fuzz.h"

#define NAME "fuzz.json"

static void check_diags(const struct diag *d, int r)
{
	FUZZ_CHECK(r == 0 ? d->n == 0 : d->n > 0);
	for (size_t i = 0; i < d->n; i++)
		FUZZ_CHECK(strncmp(d->lines[i], NAME ":", sizeof(NAME)) == 0);
}

static void results(struct result *rs, size_t *n)
{
	static const long statuses[] = { 400, 401, 404, 429, 500, 503, 599 };
	static const int exits[] = { 1, 75, 126, 127, 255 };
	struct result *r;

	*n = 0;
	for (size_t i = 0; i < ARRAY_SIZE(statuses); i++) {
		r = &rs[(*n)++];
		result_init(r, RESULT_HTTP);
		r->http_status = statuses[i];
	}
	for (size_t i = 0; i < ARRAY_SIZE(exits); i++) {
		r = &rs[(*n)++];
		result_init(r, RESULT_EXIT);
		r->exit_code = exits[i];
	}
	r = &rs[(*n)++];
	result_init(r, RESULT_TRANSPORT);
	strscpy(r->transport, "COULDNT_CONNECT", sizeof(r->transport));
	r = &rs[(*n)++];
	result_init(r, RESULT_TIMEOUT);
	r->signal = 15;
	r = &rs[(*n)++];
	result_init(r, RESULT_SIGNAL);
	r->signal = 9;
	r = &rs[(*n)++];
	result_init(r, RESULT_INTERNAL);
	/* The handler's own verdict, with and without a class. */
	r = &rs[(*n)++];
	result_init(r, RESULT_HTTP);
	r->http_status = 422;
	strscpy(r->handler_code, "INVALID_PAYLOAD", sizeof(r->handler_code));
	strscpy(r->handler_class, "NON_RETRYABLE", sizeof(r->handler_class));
	r = &rs[(*n)++];
	result_init(r, RESULT_EXIT);
	r->exit_code = 3;
	strscpy(r->handler_code, "DB_LOCKED", sizeof(r->handler_code));
	r = &rs[(*n)++];
	result_init(r, RESULT_HTTP);
	r->http_status = 503;
	r->retry_after_usec = 120 * USEC_PER_SEC;
}

static void check_policy(const struct taxonomy *t, const struct policy *p, uint64_t retry_after)
{
	uint64_t max = taxonomy_max_delay_usec(t);

	FUZZ_CHECK(p->multiplier >= 1 && p->jitter_min >= 0 && p->jitter_min <= p->jitter_max);
	for (uint32_t k = 1; k <= 40 && k <= p->max_attempt; k += 3) {
		uint64_t d = backoff_delay_usec(p, k, 0.999, 0);

		FUZZ_CHECK(d <= max);
		FUZZ_CHECK(backoff_base_usec(p, k) <= p->max_usec);
		(void)backoff_lane_ms(backoff_delay_usec(p, k, 0.5, retry_after));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	_cleanup_(taxonomy_freep) struct taxonomy *t = NULL;
	struct diag d = { 0 };
	struct result rs[24];
	size_t n;
	int r = taxonomy_parse(NAME, (const char *)data, size, &t, &d);

	if (r == -ENOMEM) {
		diag_done(&d);
		return 0;
	}
	check_diags(&d, r);
	diag_done(&d);
	if (r < 0) {
		FUZZ_CHECK(t == NULL && (r == -EINVAL || r == -EFBIG));
		return 0;
	}
	FUZZ_CHECK(t != NULL);

	results(rs, &n);
	for (size_t i = 0; i < n; i++) {
		struct classification cl;

		taxonomy_classify(t, &rs[i], &cl);
		FUZZ_CHECK(cl.error_code && cl.error_code[0]);
		FUZZ_CHECK(cl.error_class >= 0 && cl.error_class < _ERROR_CLASS_MAX);
		FUZZ_CHECK(cl.policy != NULL);
		FUZZ_CHECK(cl.rule >= -1);
		check_policy(t, cl.policy, rs[i].retry_after_usec);
	}
	for (int c = 0; c < _ERROR_CLASS_MAX; c++) {
		const struct policy *p = taxonomy_class_policy(t, c);

		FUZZ_CHECK(p != NULL);
		FUZZ_CHECK(taxonomy_policy(t, p->name) != NULL);
	}
	return 0;
}
