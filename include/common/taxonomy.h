/*
 * taxonomy: the shared failure table (design.md Part 1, "Taxonomy table").
 * Parses the JSON, validates it with FILE:LINE diagnostics (taxonomy_load.c,
 * with taxonomy_when.c for the rules' match keys), and classifies a handler
 * result into (error_code, error_class, policy) (taxonomy.c). Pure: no I/O
 * beyond reading the file in taxonomy_load(), no logging.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/result.h"
#include "common/util.h"

enum error_class {
	ERROR_CLASS_TRANSIENT,
	ERROR_CLASS_PERSISTENT,
	ERROR_CLASS_NON_RETRYABLE,
	_ERROR_CLASS_MAX,
	_ERROR_CLASS_INVALID = -1,
};

/* The codes dlqd assigns itself, whatever the table says. */
#define ERROR_CODE_INVALID_ENVELOPE  "INVALID_ENVELOPE"
#define ERROR_CODE_RETRY_EXHAUSTED   "RETRY_EXHAUSTED"
#define ERROR_CODE_MESSAGE_TOO_LARGE "MESSAGE_TOO_LARGE"
#define ERROR_CODE_POISON_MESSAGE    "POISON_MESSAGE"

const char *error_class_to_string(enum error_class c);
enum error_class error_class_from_string(const char *s); /* _INVALID if unknown */

struct policy {
	char name[64];
	uint32_t max_attempt; /* 0 = never retry */
	uint64_t initial_usec;
	double multiplier; /* >= 1 */
	uint64_t max_usec;
	double jitter_min, jitter_max; /* 0 <= min <= max */
};

struct classification {
	const char *error_code; /* points into the taxonomy or the result */
	enum error_class error_class;
	const struct policy *policy; /* never NULL */
	bool escalate;
	/*
	 * This failure counts against the circuit breaker: the rule's
	 * "breaker" when it says one, else TRANSIENT and PERSISTENT trip it and
	 * NON_RETRYABLE never does (a bad payload says nothing about the
	 * downstream's health).
	 */
	bool trips;
	int rule; /* index of the matching rule, -1 for the default */
};

struct taxonomy;

/* Reads and parses path (at most 1 MiB). Diagnostics as in config_load(). */
int taxonomy_load(const char *path, struct taxonomy **out, struct diag *diags);
int taxonomy_parse(const char *name, const char *text, size_t len, struct taxonomy **out,
		   struct diag *diags);
struct taxonomy *taxonomy_free(struct taxonomy *t);
void taxonomy_freep(struct taxonomy **t);

/*
 * Classifies a failed result (kind != RESULT_SUCCESS). Rules match in order,
 * first match wins; if none matches and the handler reported its own
 * error_code, that code is used with the handler's error_class when valid
 * (the class's policy applies); otherwise the table's default.
 */
void taxonomy_classify(const struct taxonomy *t, const struct result *r,
		       struct classification *out);

/* Whether a failure of class c trips the breaker when no rule says otherwise. */
bool taxonomy_class_trips(enum error_class c);

/* The policy of a class, or of a name; NULL if unknown. */
const struct policy *taxonomy_class_policy(const struct taxonomy *t, enum error_class c);
const struct policy *taxonomy_policy(const struct taxonomy *t, const char *name);
/* The largest delay any policy can produce, with jitter (for lane planning). */
uint64_t taxonomy_max_delay_usec(const struct taxonomy *t);
