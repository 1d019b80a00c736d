/*
 * taxonomy_table: the compiled form of a taxonomy, private to the files that
 * share it: taxonomy_load.c builds it from the JSON (with taxonomy_when.c for
 * the rules' match keys), taxonomy.c reads it to classify. Everyone else uses
 * common/taxonomy.h and sees an opaque struct taxonomy.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/jsoncheck.h"
#include "common/taxonomy.h"

#define TAXONOMY_CODE_MAX   63 /* error_code, handler_code, policy name */
#define TAXONOMY_HTTP_MIN   100
#define TAXONOMY_HTTP_MAX   599
#define TAXONOMY_SIGNAL_MAX 64

/* The keys of a rule's "when", as bits of struct rule.keys. */
enum {
	MATCH_HTTP_STATUS = 1u << 0,
	MATCH_TRANSPORT = 1u << 1,
	MATCH_TIMEOUT = 1u << 2,
	MATCH_EXIT_CODE = 1u << 3,
	MATCH_SIGNAL = 1u << 4,
	MATCH_HANDLER_CODE = 1u << 5,
};

struct strlist {
	char **v;
	size_t n;
};

struct rule {
	unsigned keys;							  /* MATCH_* */
	uint64_t http[(TAXONOMY_HTTP_MAX - TAXONOMY_HTTP_MIN + 64) / 64]; /* bit status - MIN */
	uint64_t exit_codes[256 / 64];
	uint64_t signals; /* bit signal - 1 */
	struct strlist transport;
	struct strlist handler_code;
	char error_code[TAXONOMY_CODE_MAX + 1];
	enum error_class error_class;
	const struct policy *policy; /* NULL: the class's policy */
	bool escalate;
	int breaker; /* -1: the class decides (TRANSIENT, PERSISTENT trip); 0 or 1: the rule's "breaker" */
};

struct taxonomy {
	struct policy *policies;
	size_t n_policies;
	const struct policy *class_policy[_ERROR_CLASS_MAX];
	struct rule *rules;
	size_t n_rules;
	char default_code[TAXONOMY_CODE_MAX + 1];
	enum error_class default_class;
	const struct policy *default_policy; /* NULL: the class's policy */
};

static inline void taxonomy_bit_set(uint64_t *bits, unsigned i)
{
	bits[i / 64] |= UINT64_C(1) << (i % 64);
}

static inline bool taxonomy_bit_test(const uint64_t *bits, unsigned i)
{
	return bits[i / 64] & (UINT64_C(1) << (i % 64));
}

/*
 * Validates the "when" object o of a rule into ru's match sets, reporting
 * errors at c's current path. Returns 0 (errors are counted in c) or -ENOMEM.
 */
int taxonomy_when_parse(struct jsoncheck *c, json_t *o, struct rule *ru);
