/*
 * What test_envelope.c and test_copy.c share: a fixed "now" and helpers that
 * fail the test on an unexpected decode. Include after <cmocka.h>.
 */
#pragma once

#include <string.h>

#include "common/envelope.h"
#include "common/util.h"

/* 2026-03-17T03:10:00Z */
#define T0 (UINT64_C(1773717000) * USEC_PER_SEC)

static inline struct envelope *decode_ok(const char *body)
{
	struct envelope *e = NULL;
	char why[256] = "";
	int r = envelope_decode(body, strlen(body), T0, &e, why, sizeof(why));

	if (r != 0)
		fail_msg("decode of %s failed: %d %s", body, r, why);
	assert_non_null(e);
	return e;
}

/* The payload span as a C string the test owns. */
static inline char *payload_dup(const struct envelope *e, size_t *len)
{
	size_t n;
	const char *p = envelope_payload(e, &n);

	if (len)
		*len = n;
	return strndup(p, n);
}
