/*
 * fuzz_envelope: a message body through envelope_decode() and then through
 * every copy dlqd and dlqctl build from it (copy_failure as retry and as DLQ
 * copy, copy_defer, copy_replay, copy_redelivery), as broker_deliver.c and
 * dlqscan.c would. Checks: the reason for a refused body is printable
 * ASCII; the payload span lies inside the body; a copy of an envelope is an
 * envelope again with the same message id and the same payload bytes; a
 * copy of anything else is the body unchanged.
 */
#include <errno.h>

#include "common/copy.h"
#include "common/envelope.h"
#include "common/util.h"
#include "fuzz.h"

/* 2026-03-17T03:10:00Z, as in the unit tests. */
#define T0 (UINT64_C(1773717000) * USEC_PER_SEC)

#define HSTR(k, v)                                                                 \
	{                                                                          \
		.key = k, .key_len = sizeof(k) - 1, .kind = HEADER_STRING, .s = v, \
		.s_len = sizeof(v) - 1, .raw = ""                                  \
	}
#define HINT(k, v)                                                                        \
	{                                                                                 \
		.key = k, .key_len = sizeof(k) - 1, .kind = HEADER_INT, .i = v, .raw = "" \
	}

static const struct header src_headers[] = {
	HSTR("tenant", "acme"),		 HINT(HDR_ATTEMPT, 2),	       HINT(HDR_PUBLISH_SEQ, 77),
	HSTR(HDR_ERROR_DETAIL, "stale"), HINT(HDR_BUDGET_DEFERRED, 1), HINT(HDR_REDELIVERIES, 3),
};

static void check_why(const char *why)
{
	FUZZ_CHECK(why[0] != '\0');
	for (const char *p = why; *p; p++)
		FUZZ_CHECK(*p >= 0x20 && *p < 0x7f);
}

/* A copy of env: an envelope again, same id, payload byte for byte. */
static void check_envelope_copy(const struct envelope *env, const struct copy *c)
{
	_cleanup_(envelope_freep) struct envelope *again = NULL;
	const char *p, *q;
	size_t n, m;
	char why[256];
	int r = envelope_decode(c->body, c->len, T0, &again, why, sizeof(why));

	if (r == -ENOMEM)
		return;
	if (r != 0) {
		fprintf(stderr, "copy does not decode: %s\n%.*s\n", why, (int)c->len, c->body);
		abort();
	}
	FUZZ_CHECK(strcmp(again->message_id, env->message_id) == 0);
	FUZZ_CHECK(strcmp(again->trace_id, env->trace_id) == 0);
	p = envelope_payload(env, &n);
	q = envelope_payload(again, &m);
	FUZZ_CHECK(n == m && memcmp(p, q, n) == 0);
	FUZZ_CHECK(header_find(c->headers, c->n_headers, HDR_PUBLISH_SEQ) == NULL);
}

static void check_copy(int r, const struct envelope *env, const struct copy_source *src,
		       struct copy *c)
{
	if (r == -ENOMEM)
		return;
	FUZZ_CHECK(r == 0);
	if (env)
		check_envelope_copy(env, c);
	else
		FUZZ_CHECK(c->body == src->body && c->len == src->len);
	copy_done(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	_cleanup_(envelope_freep) struct envelope *env = NULL;
	struct copy_source src = {
		.body = data,
		.len = size,
		.headers = src_headers,
		.n_headers = ARRAY_SIZE(src_headers),
		.expiration = "60000",
		.expiration_len = 5,
		.user_id = "svc",
		.user_id_len = 3,
	};
	struct result res;
	struct failure f = { .error_code = "UPSTREAM_THROTTLED",
			     .error_class = ERROR_CLASS_TRANSIENT,
			     .now_usec = T0 + 150 * USEC_PER_SEC,
			     .next_retry_at_usec = T0 + 168 * USEC_PER_SEC,
			     .lane_ms = 18000,
			     .result = &res };
	struct copy c;
	char why[256] = "";
	int r = envelope_decode(data, size, T0, &env, why, sizeof(why));

	if (r == -ENOMEM)
		return 0;
	/* The input is the evidence too: a handler's body holds any bytes. */
	result_init(&res, RESULT_HTTP);
	res.http_status = 429;
	res.evidence_len = MIN(size, sizeof(res.evidence) - 1);
	memcpy(res.evidence, data, res.evidence_len);
	res.evidence_truncated = size > res.evidence_len;

	if (r < 0) {
		FUZZ_CHECK(r == -EINVAL && env == NULL);
		check_why(why);
		f = (struct failure){ .error_code = ERROR_CODE_INVALID_ENVELOPE,
				      .error_class = ERROR_CLASS_NON_RETRYABLE,
				      .attempt = 1,
				      .now_usec = T0,
				      .detail = why };
		check_copy(copy_failure("jobs", &src, NULL, &f, &c), NULL, &src, &c);
		check_copy(copy_replay("jobs", &src, NULL, 1, T0, &c), NULL, &src, &c);
		check_copy(copy_redelivery("jobs", &src, 4, &c), NULL, &src, &c);
		return 0;
	}

	{
		size_t n;
		const char *p = envelope_payload(env, &n);

		FUZZ_CHECK(p >= (const char *)data && n > 0 && n <= size &&
			   (size_t)(p - (const char *)data) <= size - n);
		FUZZ_CHECK(p[0] == '{' && p[n - 1] == '}');
		FUZZ_CHECK(env->message_id[0] != '\0');
		FUZZ_CHECK(strlen(env->message_id) <= ENVELOPE_ID_MAX);
	}

	/* The attempt as router.c counts it. */
	f.attempt = MIN(env->attempt, (uint32_t)ENVELOPE_ATTEMPT_MAX) + 1;
	check_copy(copy_failure("jobs", &src, env, &f, &c), env, &src, &c);
	f.next_retry_at_usec = 0; /* a DLQ copy */
	f.error_code = "AUTH_REVOKED";
	f.error_class = ERROR_CLASS_NON_RETRYABLE;
	check_copy(copy_failure("jobs", &src, env, &f, &c), env, &src, &c);
	check_copy(copy_defer("jobs", &src, env, 5000, T0 + 200 * USEC_PER_SEC, &c), env, &src, &c);
	check_copy(copy_replay("jobs", &src, env, env->replay_count, T0 + 3600 * USEC_PER_SEC, &c),
		   env, &src, &c);
	check_copy(copy_redelivery("jobs", &src, 4, &c), NULL, &src, &c);
	return 0;
}
