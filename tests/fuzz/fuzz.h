/*
 * fuzz: what the libFuzzer targets under tests/fuzz share. Each target is
 * one fuzz_<what>.c that feeds the input to the real library code (linked
 * from the instrumented dlqd_common / dlqd_ctl of a -DDLQD_FUZZ=ON tree) and
 * checks cheap invariants on the result. A broken invariant aborts, which
 * libFuzzer records as a crash with its input.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                         \
	do {                                                                                     \
		if (!(cond)) {                                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                 \
		}                                                                                \
	} while (0)

/* data[0..size) as a NUL-terminated string the caller frees; an embedded
 * NUL simply ends the string early, as it would for a C reader. */
static inline char *fuzz_str(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}
