/*
 * taxonomy: classification. A handler's failed result goes through the rules
 * of a loaded table (taxonomy_load.c builds it, taxonomy_table.h is its
 * shape) to an (error_code, error_class, policy); nothing here can fail.
 *
 * Rules in order, first match wins. The keys of one "when" must all match,
 * any value of one key matches. Each key only looks at the result kind it
 * describes (http_status at RESULT_HTTP, exit_code at RESULT_EXIT...), so a
 * timeout matches only "timeout" rules and an internal error
 * (RESULT_INTERNAL) matches nothing but handler_code; handler_code matches
 * whatever error_code the handler reported.
 */
#include "common/taxonomy.h"

#include <math.h>
#include <string.h>

#include "common/taxonomy_table.h"

static const char *const class_names[_ERROR_CLASS_MAX] = {
	[ERROR_CLASS_TRANSIENT] = "TRANSIENT",
	[ERROR_CLASS_PERSISTENT] = "PERSISTENT",
	[ERROR_CLASS_NON_RETRYABLE] = "NON_RETRYABLE",
};

const char *error_class_to_string(enum error_class c)
{
	if ((int)c >= 0 && c < _ERROR_CLASS_MAX)
		return class_names[c];
	return "INVALID";
}

enum error_class error_class_from_string(const char *s)
{
	if (!s)
		return _ERROR_CLASS_INVALID;
	for (int i = 0; i < _ERROR_CLASS_MAX; i++)
		if (strcmp(s, class_names[i]) == 0)
			return (enum error_class)i;
	return _ERROR_CLASS_INVALID;
}

static bool strlist_contains(const struct strlist *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], s) == 0)
			return true;
	return false;
}

static bool rule_matches(const struct rule *ru, const struct result *r)
{
	if (ru->keys & MATCH_HTTP_STATUS)
		if (r->kind != RESULT_HTTP || r->http_status < TAXONOMY_HTTP_MIN ||
		    r->http_status > TAXONOMY_HTTP_MAX ||
		    !taxonomy_bit_test(ru->http, (unsigned)(r->http_status - TAXONOMY_HTTP_MIN)))
			return false;
	if (ru->keys & MATCH_TRANSPORT)
		if (r->kind != RESULT_TRANSPORT ||
		    strnlen(r->transport, sizeof(r->transport)) == sizeof(r->transport) ||
		    !strlist_contains(&ru->transport, r->transport))
			return false;
	if (ru->keys & MATCH_TIMEOUT)
		if (r->kind != RESULT_TIMEOUT)
			return false;
	if (ru->keys & MATCH_EXIT_CODE)
		if (r->kind != RESULT_EXIT || r->exit_code < 0 || r->exit_code > 255 ||
		    !taxonomy_bit_test(ru->exit_codes, (unsigned)r->exit_code))
			return false;
	if (ru->keys & MATCH_SIGNAL)
		if (r->kind != RESULT_SIGNAL || r->signal < 1 || r->signal > TAXONOMY_SIGNAL_MAX ||
		    !(ru->signals & (UINT64_C(1) << (r->signal - 1))))
			return false;
	if (ru->keys & MATCH_HANDLER_CODE)
		if (strnlen(r->handler_code, sizeof(r->handler_code)) == sizeof(r->handler_code) ||
		    !strlist_contains(&ru->handler_code, r->handler_code))
			return false;
	/*
	 * A timeout carries the signal that ended it but is not a crash, and is
	 * never matched by a rule that does not ask for timeouts.
	 */
	if (r->kind == RESULT_TIMEOUT && !(ru->keys & MATCH_TIMEOUT))
		return false;
	return true;
}

static bool handler_code_usable(const struct result *r)
{
	size_t n = strnlen(r->handler_code, sizeof(r->handler_code));

	return n > 0 && n < sizeof(r->handler_code);
}

void taxonomy_classify(const struct taxonomy *t, const struct result *r, struct classification *out)
{
	for (size_t i = 0; i < t->n_rules; i++) {
		const struct rule *ru = &t->rules[i];

		if (!rule_matches(ru, r))
			continue;
		*out = (struct classification){
			.error_code = ru->error_code,
			.error_class = ru->error_class,
			.policy = ru->policy ? ru->policy : t->class_policy[ru->error_class],
			.escalate = ru->escalate,
			.trips = ru->breaker < 0 ? taxonomy_class_trips(ru->error_class)
						 : ru->breaker > 0,
			.rule = (int)i,
		};
		return;
	}
	if (handler_code_usable(r)) {
		char cls[sizeof(r->handler_class) + 1];
		size_t n = strnlen(r->handler_class, sizeof(r->handler_class));
		enum error_class k;

		/* The result is plain data from a handler: do not trust a NUL. */
		memcpy(cls, r->handler_class, n);
		cls[n] = '\0';
		k = error_class_from_string(cls);
		if (k == _ERROR_CLASS_INVALID)
			k = t->default_class;
		*out = (struct classification){
			.error_code = r->handler_code,
			.error_class = k,
			.policy = t->class_policy[k],
			.trips = taxonomy_class_trips(k),
			.rule = -1,
		};
		return;
	}
	*out = (struct classification){
		.error_code = t->default_code,
		.error_class = t->default_class,
		.policy = t->default_policy ? t->default_policy : t->class_policy[t->default_class],
		.trips = taxonomy_class_trips(t->default_class),
		.rule = -1,
	};
}

bool taxonomy_class_trips(enum error_class c)
{
	return c == ERROR_CLASS_TRANSIENT || c == ERROR_CLASS_PERSISTENT;
}

const struct policy *taxonomy_class_policy(const struct taxonomy *t, enum error_class c)
{
	if ((int)c < 0 || c >= _ERROR_CLASS_MAX)
		return NULL;
	return t->class_policy[c];
}

const struct policy *taxonomy_policy(const struct taxonomy *t, const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < t->n_policies; i++)
		if (strcmp(t->policies[i].name, name) == 0)
			return &t->policies[i];
	return NULL;
}

uint64_t taxonomy_max_delay_usec(const struct taxonomy *t)
{
	double best = 0;

	for (size_t i = 0; i < t->n_policies; i++) {
		const struct policy *p = &t->policies[i];
		double d = (double)p->max_usec * (1.0 + p->jitter_max);

		if (p->max_attempt > 0 && d > best)
			best = d;
	}
	if (best >= 0x1p64)
		return UINT64_MAX;
	return (uint64_t)llround(best);
}
