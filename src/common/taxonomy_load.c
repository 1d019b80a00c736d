/*
 * taxonomy_load: reads a taxonomy file and validates it into the compiled
 * table (taxonomy_table.h) that taxonomy.c classifies with.
 *
 * The table is shared with services written in other languages, so it is
 * validated strictly (docs/taxonomy.schema.json says the same in JSON Schema):
 * unknown keys, wrong types and out-of-range values are all errors, and every
 * problem is reported, not just the first, as FILE:LINE with the error's JSON
 * path in the message ("rules[3].when.http_status[1]: ..."). jsoncheck keeps
 * the path and finds the lines; this file knows what a taxonomy must say.
 */
#include "common/taxonomy.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/backoff.h"
#include "common/jsoncheck.h"
#include "common/taxonomy_table.h"

#define TAXONOMY_FILE_MAX     (1024 * 1024)
#define TAXONOMY_RULES_MAX    1000
#define TAXONOMY_POLICIES_MAX 256
#define MAX_ATTEMPT_MAX	      1000000
#define JITTER_MAX	      10.0
#define DURATION_MAX_USEC     (LANE_MAX_MS * USEC_PER_MSEC)

static void strlist_done(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	*l = (struct strlist){ 0 };
}

struct taxonomy *taxonomy_free(struct taxonomy *t)
{
	if (!t)
		return NULL;
	for (size_t i = 0; i < t->n_rules; i++) {
		strlist_done(&t->rules[i].transport);
		strlist_done(&t->rules[i].handler_code);
	}
	free(t->rules);
	free(t->policies);
	free(t);
	return NULL;
}

void taxonomy_freep(struct taxonomy **t)
{
	*t = taxonomy_free(*t);
}

/* Each reader below reports its own errors at the current path. */

static bool valid_code(const char *s)
{
	return result_code_valid(s, TAXONOMY_CODE_MAX + 1);
}

static int get_code(struct jsoncheck *c, json_t *v, char out[static TAXONOMY_CODE_MAX + 1])
{
	if (!jsoncheck_type(c, v, JSON_STRING))
		return -EINVAL;
	if (!valid_code(json_string_value(v))) {
		jsoncheck_report(
			c, "invalid error code \"%.80s\" (1 to %d characters of A-Z, 0-9 and _)",
			json_string_value(v), TAXONOMY_CODE_MAX);
		return -EINVAL;
	}
	strscpy(out, json_string_value(v), TAXONOMY_CODE_MAX + 1);
	return 0;
}

static int get_class(struct jsoncheck *c, json_t *v, enum error_class *out)
{
	if (!jsoncheck_type(c, v, JSON_STRING))
		return -EINVAL;
	*out = error_class_from_string(json_string_value(v));
	if (*out == _ERROR_CLASS_INVALID) {
		jsoncheck_report(
			c,
			"unknown class \"%.80s\" (expected TRANSIENT, PERSISTENT or NON_RETRYABLE)",
			json_string_value(v));
		return -EINVAL;
	}
	return 0;
}

static int get_policy_ref(struct jsoncheck *c, const struct taxonomy *t, json_t *v,
			  const struct policy **out)
{
	if (!jsoncheck_type(c, v, JSON_STRING))
		return -EINVAL;
	*out = taxonomy_policy(t, json_string_value(v));
	if (!*out) {
		jsoncheck_report(c, "unknown policy \"%.80s\"", json_string_value(v));
		return -EINVAL;
	}
	return 0;
}

/*
 * "2s", "250ms", "1.5h" (the units of parse_duration_usec(), lowercase, no
 * spaces, so the schema's pattern can say the same) or a number of seconds.
 */
static bool duration_syntax_ok(const char *s)
{
	static const char *const units[] = { "", "us", "ms", "s", "sec", "m", "min", "h", "d" };
	size_t n = strspn(s, "0123456789");

	if (n == 0)
		return false;
	s += n;
	if (*s == '.') {
		n = strspn(++s, "0123456789");
		if (n == 0)
			return false;
		s += n;
	}
	for (size_t i = 0; i < ARRAY_SIZE(units); i++)
		if (strcmp(s, units[i]) == 0)
			return true;
	return false;
}

static int get_duration(struct jsoncheck *c, json_t *v, uint64_t *out)
{
	if (json_is_string(v)) {
		const char *s = json_string_value(v);

		if (!duration_syntax_ok(s) || parse_duration_usec(s, out) < 0) {
			jsoncheck_report(
				c,
				"invalid duration \"%.80s\" (expected e.g. \"250ms\", \"2s\", "
				"\"5m\", "
				"\"1h\", \"1d\" or a number of seconds)",
				s);
			return -EINVAL;
		}
	} else if (json_is_number(v)) {
		double sec = json_number_value(v);

		if (!(sec >= 0) || sec > (double)DURATION_MAX_USEC / USEC_PER_SEC) {
			jsoncheck_report(c, "duration must be between 0 and 7d (604800 seconds)");
			return -EINVAL;
		}
		*out = (uint64_t)llround(sec * USEC_PER_SEC);
	} else {
		jsoncheck_report(c, "expected a duration string or a number of seconds, got %s",
				 util_json_type_name(v));
		return -EINVAL;
	}
	if (*out > DURATION_MAX_USEC) {
		jsoncheck_report(c, "duration must be at most 7d, the longest delay lane");
		return -EINVAL;
	}
	return 0;
}

static int parse_policy(struct jsoncheck *c, json_t *o, struct policy *p)
{
	static const char *const keys[] = { "max_attempt", "initial", "multiplier",
					    "max",	   "jitter",  NULL };
	static const char *const needed[] = { "initial", "multiplier", "max", "jitter" };
	unsigned before = c->errors;
	json_int_t n;
	json_t *v;

	if (!jsoncheck_object(c, o, keys))
		return -EINVAL;

	v = json_object_get(o, "max_attempt");
	if (!v) {
		jsoncheck_report(c, "missing \"max_attempt\"");
	} else {
		jsoncheck_key(c, "max_attempt");
		if (jsoncheck_int(c, v, 0, MAX_ATTEMPT_MAX, &n) >= 0)
			p->max_attempt = (uint32_t)n;
		jsoncheck_pop(c);
		/* A policy that never retries needs nothing else. */
		if (p->max_attempt > 0)
			for (size_t i = 0; i < ARRAY_SIZE(needed); i++)
				if (!json_object_get(o, needed[i]))
					jsoncheck_report(
						c, "missing \"%s\" (required when max_attempt > 0)",
						needed[i]);
	}

	bool have_initial = false, have_max = false;
	if ((v = json_object_get(o, "initial"))) {
		jsoncheck_key(c, "initial");
		if (get_duration(c, v, &p->initial_usec) >= 0) {
			if (p->initial_usec == 0)
				jsoncheck_report(c, "must be greater than 0");
			else
				have_initial = true;
		}
		jsoncheck_pop(c);
	}
	if ((v = json_object_get(o, "max"))) {
		jsoncheck_key(c, "max");
		have_max = get_duration(c, v, &p->max_usec) >= 0;
		if (have_max && have_initial && p->max_usec < p->initial_usec)
			jsoncheck_report(c, "must not be less than \"initial\"");
		jsoncheck_pop(c);
	}
	p->multiplier = 1;
	if ((v = json_object_get(o, "multiplier"))) {
		jsoncheck_key(c, "multiplier");
		jsoncheck_number(c, v, 1, INFINITY, &p->multiplier);
		jsoncheck_pop(c);
	}
	if ((v = json_object_get(o, "jitter"))) {
		jsoncheck_key(c, "jitter");
		if (!json_is_array(v) || json_array_size(v) != 2) {
			jsoncheck_report(c, "expected an array [min, max] of two numbers");
		} else {
			double lo = 0, hi = 0;
			bool ok = true;

			jsoncheck_index(c, 0);
			ok = jsoncheck_number(c, json_array_get(v, 0), 0, JITTER_MAX, &lo) >= 0 &&
			     ok;
			jsoncheck_pop(c);
			jsoncheck_index(c, 1);
			ok = jsoncheck_number(c, json_array_get(v, 1), 0, JITTER_MAX, &hi) >= 0 &&
			     ok;
			if (ok && hi < lo)
				jsoncheck_report(c, "jitter max %g is less than jitter min %g", hi,
						 lo);
			jsoncheck_pop(c);
			p->jitter_min = lo;
			p->jitter_max = hi;
		}
		jsoncheck_pop(c);
	}
	return c->errors == before ? 0 : -EINVAL;
}

static int parse_policies(struct jsoncheck *c, struct taxonomy *t, json_t *o)
{
	const char *name;
	json_t *v;

	if (!jsoncheck_type(c, o, JSON_OBJECT))
		return -EINVAL;
	if (json_object_size(o) == 0) {
		jsoncheck_report(c, "at least one policy is required");
		return -EINVAL;
	}
	if (json_object_size(o) > TAXONOMY_POLICIES_MAX) {
		jsoncheck_report(c, "at most %d policies (got %zu)", TAXONOMY_POLICIES_MAX,
				 json_object_size(o));
		return -EINVAL;
	}
	t->policies = calloc(json_object_size(o), sizeof(*t->policies));
	if (!t->policies)
		return -ENOMEM;
	json_object_foreach(o, name, v)
	{
		/* Registered even when invalid, so references to it do not cascade. */
		struct policy *p = &t->policies[t->n_policies++];

		jsoncheck_key(c, name);
		if (strlen(name) == 0 || strlen(name) > TAXONOMY_CODE_MAX)
			jsoncheck_report(c, "policy names are 1 to %d characters",
					 TAXONOMY_CODE_MAX);
		strscpy(p->name, name, sizeof(p->name));
		parse_policy(c, v, p);
		jsoncheck_pop(c);
	}
	return 0;
}

static void parse_classes(struct jsoncheck *c, struct taxonomy *t, json_t *o)
{
	const char *name;
	json_t *v;

	if (!jsoncheck_type(c, o, JSON_OBJECT))
		return;
	json_object_foreach(o, name, v)
	{
		enum error_class k = error_class_from_string(name);

		jsoncheck_key(c, name);
		if (k == _ERROR_CLASS_INVALID)
			jsoncheck_report(
				c,
				"unknown class (expected TRANSIENT, PERSISTENT or NON_RETRYABLE)");
		else
			get_policy_ref(c, t, v, &t->class_policy[k]);
		jsoncheck_pop(c);
	}
	for (int k = 0; k < _ERROR_CLASS_MAX; k++)
		if (!json_object_get(o, error_class_to_string(k)))
			jsoncheck_report(c, "missing \"%s\"", error_class_to_string(k));
}

/*
 * The outcome part shared by a rule and "default": the required "error_code"
 * and "class" and the optional "policy" override.
 */
static void parse_outcome(struct jsoncheck *c, const struct taxonomy *t, json_t *o,
			  char code[static TAXONOMY_CODE_MAX + 1], enum error_class *class,
			  const struct policy **policy)
{
	json_t *v;

	if ((v = jsoncheck_enter(c, o, "error_code"))) {
		get_code(c, v, code);
		jsoncheck_pop(c);
	}
	if ((v = jsoncheck_enter(c, o, "class"))) {
		get_class(c, v, class);
		jsoncheck_pop(c);
	}
	if ((v = json_object_get(o, "policy"))) {
		jsoncheck_key(c, "policy");
		get_policy_ref(c, t, v, policy);
		jsoncheck_pop(c);
	}
}

static int parse_rule(struct jsoncheck *c, struct taxonomy *t, json_t *o, struct rule *ru)
{
	static const char *const keys[] = { "when",	"error_code", "class", "policy",
					    "escalate", "breaker",    NULL };
	json_t *v;
	int r;

	ru->breaker = -1;
	if (!jsoncheck_object(c, o, keys))
		return 0;
	if ((v = jsoncheck_enter(c, o, "when"))) {
		r = taxonomy_when_parse(c, v, ru);
		jsoncheck_pop(c);
		if (r < 0)
			return r;
	}
	parse_outcome(c, t, o, ru->error_code, &ru->error_class, &ru->policy);
	if ((v = json_object_get(o, "escalate"))) {
		jsoncheck_key(c, "escalate");
		if (!json_is_boolean(v))
			jsoncheck_report(c, "expected true or false, got %s",
					 util_json_type_name(v));
		else
			ru->escalate = json_is_true(v);
		jsoncheck_pop(c);
	}
	if ((v = json_object_get(o, "breaker"))) {
		jsoncheck_key(c, "breaker");
		if (!json_is_boolean(v))
			jsoncheck_report(c, "expected true or false, got %s",
					 util_json_type_name(v));
		else
			ru->breaker = json_is_true(v);
		jsoncheck_pop(c);
	}
	return 0;
}

static int parse_rules(struct jsoncheck *c, struct taxonomy *t, json_t *a)
{
	size_t n;
	int r;

	if (!jsoncheck_type(c, a, JSON_ARRAY))
		return 0;
	n = json_array_size(a);
	if (n > TAXONOMY_RULES_MAX) {
		jsoncheck_report(c, "at most %d rules (got %zu)", TAXONOMY_RULES_MAX, n);
		return 0;
	}
	if (n == 0)
		return 0;
	t->rules = calloc(n, sizeof(*t->rules));
	if (!t->rules)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		/* Counted first so taxonomy_free() releases a half-parsed rule. */
		t->n_rules++;
		jsoncheck_index(c, i);
		r = parse_rule(c, t, json_array_get(a, i), &t->rules[i]);
		jsoncheck_pop(c);
		if (r < 0)
			return r;
	}
	return 0;
}

static void parse_default(struct jsoncheck *c, struct taxonomy *t, json_t *o)
{
	static const char *const keys[] = { "error_code", "class", "policy", NULL };

	if (!jsoncheck_object(c, o, keys))
		return;
	parse_outcome(c, t, o, t->default_code, &t->default_class, &t->default_policy);
}

static int parse_root(struct jsoncheck *c, struct taxonomy *t, json_t *root)
{
	/* "$schema" lets editors find docs/taxonomy.schema.json. */
	static const char *const keys[] = { "$schema", "version", "policies", "classes",
					    "rules",   "default", NULL };
	json_t *v;
	int r;

	if (!jsoncheck_object(c, root, keys))
		return 0;
	if ((v = json_object_get(root, "$schema"))) {
		jsoncheck_key(c, "$schema");
		jsoncheck_type(c, v, JSON_STRING);
		jsoncheck_pop(c);
	}
	if ((v = jsoncheck_enter(c, root, "version"))) {
		if (!jsoncheck_is_integer(v))
			jsoncheck_report(c, "expected an integer, got %s", util_json_type_name(v));
		else if (json_number_value(v) != 1)
			jsoncheck_report(c, "unsupported version %g (this dlqd reads version 1)",
					 json_number_value(v));
		jsoncheck_pop(c);
	}
	/* Without policies nothing can reference one; say so once, not per reference. */
	if (!(v = jsoncheck_enter(c, root, "policies")))
		return 0;
	r = parse_policies(c, t, v);
	jsoncheck_pop(c);
	if (r < 0 || !t->n_policies)
		return r;

	if ((v = jsoncheck_enter(c, root, "classes"))) {
		parse_classes(c, t, v);
		jsoncheck_pop(c);
	}
	if ((v = jsoncheck_enter(c, root, "rules"))) {
		r = parse_rules(c, t, v);
		jsoncheck_pop(c);
		if (r < 0)
			return r;
	}
	if ((v = jsoncheck_enter(c, root, "default"))) {
		parse_default(c, t, v);
		jsoncheck_pop(c);
	}
	return 0;
}

int taxonomy_parse(const char *name, const char *text, size_t len, struct taxonomy **out,
		   struct diag *diags)
{
	_cleanup_(taxonomy_freep) struct taxonomy *t = NULL;
	struct jsoncheck c;
	json_error_t jerr;
	json_t *root;
	int r, r2;

	if (len > TAXONOMY_FILE_MAX) {
		if (diags)
			diag_add(diags, name, 1, "cannot read: file too large (max 1 MiB)");
		return -EFBIG;
	}
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		if (diags)
			diag_add(diags, name, jerr.line > 0 ? (unsigned)jerr.line : 1,
				 "invalid JSON: %s", jerr.text);
		return -EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		json_decref(root);
		return -ENOMEM;
	}
	jsoncheck_init(&c, name, text, len);
	r = parse_root(&c, t, root);
	r2 = jsoncheck_finish(&c, diags);
	json_decref(root);
	if (r < 0)
		return r;
	if (r2 < 0)
		return r2;
	*out = TAKE_PTR(t);
	return 0;
}

int taxonomy_load(const char *path, struct taxonomy **out, struct diag *diags)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	int r;

	r = read_file_max(path, TAXONOMY_FILE_MAX, &text, &len);
	if (r < 0) {
		if (diags) {
			if (r == -EFBIG)
				diag_add(diags, path, 1, "cannot read: file too large (max 1 MiB)");
			else
				diag_add(diags, path, 1, "cannot read: %s", strerror(-r));
		}
		return r;
	}
	return taxonomy_parse(path, text, len, out, diags);
}
