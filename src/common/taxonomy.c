/*
 * taxonomy: the shared failure table (design.md Part 1, "Taxonomy table"),
 * parsed once into flat match tables and then consulted for every failure.
 *
 * The table is shared with services written in other languages, so it is
 * validated strictly (docs/taxonomy.schema.json says the same in JSON Schema):
 * unknown keys, wrong types and out-of-range values are all errors, and every
 * problem is reported, not just the first. jansson does not expose node
 * positions, so the line of a semantic error is found by walking the text
 * along the error's JSON path (locate_line()); the path itself is always part
 * of the message ("rules[3].when.http_status[1]: ...").
 *
 * Classification: rules in order, first match wins. The keys of one "when"
 * must all match, any value of one key matches. Each key only looks at the
 * result kind it describes (http_status at RESULT_HTTP, exit_code at
 * RESULT_EXIT...), so a timeout matches only "timeout" rules and an internal
 * error (RESULT_INTERNAL) matches nothing but handler_code; handler_code
 * matches whatever error_code the handler reported.
 */
#include "common/taxonomy.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "common/backoff.h"

#define TAXONOMY_FILE_MAX     (1024 * 1024)
#define TAXONOMY_RULES_MAX    1000
#define TAXONOMY_POLICIES_MAX 256
#define TAXONOMY_VALUES_MAX   1000 /* values of one match key */
#define CODE_MAX	      63   /* error_code, handler_code, policy name */
#define TRANSPORT_MAX	      47   /* fits struct result.transport */
#define MAX_ATTEMPT_MAX	      1000000
#define JITTER_MAX	      10.0
#define DURATION_MAX_USEC     (LANE_MAX_MS * USEC_PER_MSEC)
#define PATH_DEPTH_MAX	      8

enum {
	MATCH_HTTP_STATUS = 1u << 0,
	MATCH_TRANSPORT = 1u << 1,
	MATCH_TIMEOUT = 1u << 2,
	MATCH_EXIT_CODE = 1u << 3,
	MATCH_SIGNAL = 1u << 4,
	MATCH_HANDLER_CODE = 1u << 5,
};

#define HTTP_MIN   100
#define HTTP_MAX   599
#define SIGNAL_MAX 64

struct strlist {
	char **v;
	size_t n;
};

struct rule {
	unsigned keys;
	uint64_t http[(HTTP_MAX - HTTP_MIN + 64) / 64]; /* bit status - HTTP_MIN */
	uint64_t exit_codes[256 / 64];
	uint64_t signals; /* bit signal - 1 */
	struct strlist transport;
	struct strlist handler_code;
	char error_code[CODE_MAX + 1];
	enum error_class error_class;
	const struct policy *policy; /* NULL: the class's policy */
	bool escalate;
};

struct taxonomy {
	struct policy *policies;
	size_t n_policies;
	const struct policy *class_policy[_ERROR_CLASS_MAX];
	struct rule *rules;
	size_t n_rules;
	char default_code[CODE_MAX + 1];
	enum error_class default_class;
	const struct policy *default_policy; /* NULL: the class's policy */
};

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

static void bit_set(uint64_t *bits, unsigned i)
{
	bits[i / 64] |= UINT64_C(1) << (i % 64);
}

static bool bit_test(const uint64_t *bits, unsigned i)
{
	return bits[i / 64] & (UINT64_C(1) << (i % 64));
}

static void strlist_done(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	*l = (struct strlist){ 0 };
}

static bool strlist_contains(const struct strlist *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], s) == 0)
			return true;
	return false;
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

/* ---- locating a JSON path in the text ---------------------------------- */

/* One step of a path: an object key, or an array index when key is NULL. */
struct path_elem {
	const char *key;
	size_t index;
};

struct scan {
	const char *p, *end;
	unsigned line;
};

static void scan_ws(struct scan *s)
{
	for (; s->p < s->end; s->p++) {
		if (*s->p == '\n')
			s->line++;
		else if (*s->p != ' ' && *s->p != '\t' && *s->p != '\r')
			break;
	}
}

/* s->p at the opening quote; leaves it past the closing one. */
static void scan_string(struct scan *s, const char **start, size_t *len)
{
	const char *b = ++s->p;

	while (s->p < s->end && *s->p != '"') {
		if (*s->p == '\\' && s->p + 1 < s->end)
			s->p++;
		s->p++;
	}
	if (start)
		*start = b;
	if (len)
		*len = (size_t)(s->p - b);
	if (s->p < s->end)
		s->p++;
}

/* Skips one value. The text is known to be valid JSON (jansson parsed it). */
static void scan_value(struct scan *s)
{
	size_t depth = 0;

	do {
		scan_ws(s);
		if (s->p >= s->end)
			return;
		switch (*s->p) {
		case '"':
			scan_string(s, NULL, NULL);
			break;
		case '{':
		case '[':
			depth++;
			s->p++;
			break;
		case '}':
		case ']':
			if (depth == 0)
				return;
			depth--;
			s->p++;
			break;
		case ',':
		case ':':
			s->p++;
			break;
		default:
			while (s->p < s->end && !strchr(",:{}[]\" \t\r\n", *s->p))
				s->p++;
			break;
		}
	} while (depth > 0);
}

/* Skips a value and the comma after it; false at the end of its container. */
static bool scan_past_value(struct scan *s)
{
	scan_value(s);
	scan_ws(s);
	if (s->p >= s->end || *s->p != ',')
		return false;
	s->p++;
	return true;
}

/*
 * The line of the last element of path: the line of the key for an object
 * member, of the value for an array element. Stops at the deepest element it
 * can find (a key with escapes in it is not matched), so a line is always
 * returned.
 */
static unsigned locate_line(const char *text, size_t len, const struct path_elem *path,
			    size_t depth)
{
	struct scan s = { .p = text, .end = text + len, .line = 1 };
	unsigned best = 1;

	for (size_t i = 0; i < depth; i++) {
		bool found = false;

		scan_ws(&s);
		if (s.p >= s.end)
			return best;
		if (path[i].key) {
			if (*s.p != '{')
				return best;
			s.p++;
			for (;;) {
				const char *k;
				size_t klen;
				unsigned kline;

				scan_ws(&s);
				if (s.p >= s.end || *s.p != '"')
					return best;
				kline = s.line;
				scan_string(&s, &k, &klen);
				scan_ws(&s);
				if (s.p < s.end && *s.p == ':')
					s.p++;
				if (klen == strlen(path[i].key) &&
				    memcmp(k, path[i].key, klen) == 0) {
					best = kline;
					found = true;
					break;
				}
				if (!scan_past_value(&s))
					return best;
			}
		} else {
			if (*s.p != '[')
				return best;
			s.p++;
			for (size_t j = 0;; j++) {
				scan_ws(&s);
				if (s.p >= s.end || *s.p == ']')
					return best;
				if (j == path[i].index) {
					best = s.line;
					found = true;
					break;
				}
				if (!scan_past_value(&s))
					return best;
			}
		}
		if (!found)
			return best;
	}
	return best;
}

/* ---- diagnostics --------------------------------------------------------- */

struct pending {
	unsigned line;
	size_t seq;
	char *msg;
};

struct ctx {
	const char *name;
	const char *text;
	size_t len;
	struct path_elem path[PATH_DEPTH_MAX];
	size_t depth;
	struct pending *pending;
	size_t n_pending;
	unsigned errors;
};

static void path_key(struct ctx *c, const char *key)
{
	if (c->depth < PATH_DEPTH_MAX)
		c->path[c->depth] = (struct path_elem){ .key = key };
	c->depth++;
}

static void path_index(struct ctx *c, size_t index)
{
	if (c->depth < PATH_DEPTH_MAX)
		c->path[c->depth] = (struct path_elem){ .index = index };
	c->depth++;
}

static void path_pop(struct ctx *c)
{
	c->depth--;
}

static void path_format(const struct ctx *c, struct buf *b)
{
	for (size_t i = 0; i < MIN(c->depth, (size_t)PATH_DEPTH_MAX); i++) {
		if (c->path[i].key)
			buf_printf(b, "%s%s", i > 0 ? "." : "", c->path[i].key);
		else
			buf_printf(b, "[%zu]", c->path[i].index);
	}
}

/* Records an error at the current path: "path: message" on the path's line. */
_printf_(2, 3) static void report(struct ctx *c, const char *fmt, ...)
{
	struct buf b;
	struct pending *n;
	va_list ap;

	c->errors++;
	buf_init(&b, 1024);
	path_format(c, &b);
	if (b.len > 0)
		buf_printf(&b, ": ");
	va_start(ap, fmt);
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	buf_append_trunc(&b, msg, strlen(msg));

	n = realloc(c->pending, (c->n_pending + 1) * sizeof(*n));
	if (!n) {
		buf_done(&b);
		return;
	}
	c->pending = n;
	c->pending[c->n_pending] = (struct pending){
		.line = locate_line(c->text, c->len, c->path,
				    MIN(c->depth, (size_t)PATH_DEPTH_MAX)),
		.seq = c->n_pending,
		.msg = buf_steal(&b, NULL),
	};
	c->n_pending++;
}

static int pending_cmp(const void *a, const void *b)
{
	const struct pending *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Hands the errors to diags in file order, like a compiler would. */
static void flush_errors(struct ctx *c, struct diag *diags)
{
	if (c->n_pending > 1)
		qsort(c->pending, c->n_pending, sizeof(*c->pending), pending_cmp);
	for (size_t i = 0; i < c->n_pending; i++) {
		if (diags && c->pending[i].msg)
			diag_add(diags, c->name, c->pending[i].line, "%s", c->pending[i].msg);
		free(c->pending[i].msg);
	}
	free(c->pending);
	c->pending = NULL;
	c->n_pending = 0;
}

/*
 * Descends into the required member key of o (the caller pops the path);
 * NULL, reported, when it is missing.
 */
static json_t *enter_required(struct ctx *c, json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	if (!v) {
		report(c, "missing \"%s\"", key);
		return NULL;
	}
	path_key(c, key);
	return v;
}

/* Reports every key of o not in allowed (NULL-terminated). */
static void check_keys(struct ctx *c, json_t *o, const char *const *allowed)
{
	const char *key;
	json_t *v;

	json_object_foreach(o, key, v)
	{
		bool ok = false;

		for (const char *const *a = allowed; *a; a++)
			if (strcmp(key, *a) == 0)
				ok = true;
		if (!ok) {
			path_key(c, key);
			report(c, "unknown key");
			path_pop(c);
		}
	}
}

/* ---- value parsers; each reports its own errors at the current path ---- */

static bool valid_code(const char *s)
{
	return result_code_valid(s, CODE_MAX + 1);
}

static int get_code(struct ctx *c, json_t *v, char out[static CODE_MAX + 1])
{
	if (!json_is_string(v)) {
		report(c, "expected a string, got %s", util_json_type_name(v));
		return -EINVAL;
	}
	if (!valid_code(json_string_value(v))) {
		report(c, "invalid error code \"%.80s\" (1 to %d characters of A-Z, 0-9 and _)",
		       json_string_value(v), CODE_MAX);
		return -EINVAL;
	}
	strscpy(out, json_string_value(v), CODE_MAX + 1);
	return 0;
}

static int get_class(struct ctx *c, json_t *v, enum error_class *out)
{
	if (!json_is_string(v)) {
		report(c, "expected a string, got %s", util_json_type_name(v));
		return -EINVAL;
	}
	*out = error_class_from_string(json_string_value(v));
	if (*out == _ERROR_CLASS_INVALID) {
		report(c,
		       "unknown class \"%.80s\" (expected TRANSIENT, PERSISTENT or NON_RETRYABLE)",
		       json_string_value(v));
		return -EINVAL;
	}
	return 0;
}

static const struct policy *find_policy(const struct taxonomy *t, const char *name)
{
	for (size_t i = 0; i < t->n_policies; i++)
		if (strcmp(t->policies[i].name, name) == 0)
			return &t->policies[i];
	return NULL;
}

static int get_policy_ref(struct ctx *c, const struct taxonomy *t, json_t *v,
			  const struct policy **out)
{
	if (!json_is_string(v)) {
		report(c, "expected a string, got %s", util_json_type_name(v));
		return -EINVAL;
	}
	*out = find_policy(t, json_string_value(v));
	if (!*out) {
		report(c, "unknown policy \"%.80s\"", json_string_value(v));
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

static int get_duration(struct ctx *c, json_t *v, uint64_t *out)
{
	if (json_is_string(v)) {
		const char *s = json_string_value(v);

		if (!duration_syntax_ok(s) || parse_duration_usec(s, out) < 0) {
			report(c,
			       "invalid duration \"%.80s\" (expected e.g. \"250ms\", \"2s\", "
			       "\"5m\", "
			       "\"1h\", \"1d\" or a number of seconds)",
			       s);
			return -EINVAL;
		}
	} else if (json_is_number(v)) {
		double sec = json_number_value(v);

		if (!(sec >= 0) || sec > (double)DURATION_MAX_USEC / USEC_PER_SEC) {
			report(c, "duration must be between 0 and 7d (604800 seconds)");
			return -EINVAL;
		}
		*out = (uint64_t)llround(sec * USEC_PER_SEC);
	} else {
		report(c, "expected a duration string or a number of seconds, got %s",
		       util_json_type_name(v));
		return -EINVAL;
	}
	if (*out > DURATION_MAX_USEC) {
		report(c, "duration must be at most 7d, the longest delay lane");
		return -EINVAL;
	}
	return 0;
}

/* JSON Schema counts 5.0 as an integer, so dlqd does too. */
static bool is_integral(json_t *v)
{
	double d;

	if (json_is_integer(v))
		return true;
	if (!json_is_real(v))
		return false;
	d = json_real_value(v);
	return d == floor(d) && fabs(d) < 0x1p53;
}

static int get_int(struct ctx *c, json_t *v, json_int_t min, json_int_t max, json_int_t *out)
{
	if (!is_integral(v)) {
		report(c, "expected an integer, got %s", util_json_type_name(v));
		return -EINVAL;
	}
	*out = json_is_integer(v) ? json_integer_value(v) : (json_int_t)json_real_value(v);
	if (*out < min || *out > max) {
		report(c, "%lld is out of range (%lld..%lld)", (long long)*out, (long long)min,
		       (long long)max);
		return -EINVAL;
	}
	return 0;
}

static int get_number(struct ctx *c, json_t *v, double min, double max, double *out)
{
	if (!json_is_number(v)) {
		report(c, "expected a number, got %s", util_json_type_name(v));
		return -EINVAL;
	}
	*out = json_number_value(v);
	if (!(*out >= min && *out <= max)) {
		if (isinf(max))
			report(c, "%g is out of range (at least %g)", *out, min);
		else
			report(c, "%g is out of range (%g..%g)", *out, min, max);
		return -EINVAL;
	}
	return 0;
}

/* ---- policies ------------------------------------------------------------- */

static int parse_policy(struct ctx *c, json_t *o, struct policy *p)
{
	static const char *const keys[] = { "max_attempt", "initial", "multiplier",
					    "max",	   "jitter",  NULL };
	static const char *const needed[] = { "initial", "multiplier", "max", "jitter" };
	unsigned before = c->errors;
	json_int_t n;
	json_t *v;

	if (!json_is_object(o)) {
		report(c, "expected an object, got %s", util_json_type_name(o));
		return -EINVAL;
	}
	check_keys(c, o, keys);

	v = json_object_get(o, "max_attempt");
	if (!v) {
		report(c, "missing \"max_attempt\"");
	} else {
		path_key(c, "max_attempt");
		if (get_int(c, v, 0, MAX_ATTEMPT_MAX, &n) >= 0)
			p->max_attempt = (uint32_t)n;
		path_pop(c);
		/* A policy that never retries needs nothing else. */
		if (p->max_attempt > 0)
			for (size_t i = 0; i < ARRAY_SIZE(needed); i++)
				if (!json_object_get(o, needed[i]))
					report(c, "missing \"%s\" (required when max_attempt > 0)",
					       needed[i]);
	}

	bool have_initial = false, have_max = false;
	if ((v = json_object_get(o, "initial"))) {
		path_key(c, "initial");
		if (get_duration(c, v, &p->initial_usec) >= 0) {
			if (p->initial_usec == 0)
				report(c, "must be greater than 0");
			else
				have_initial = true;
		}
		path_pop(c);
	}
	if ((v = json_object_get(o, "max"))) {
		path_key(c, "max");
		have_max = get_duration(c, v, &p->max_usec) >= 0;
		if (have_max && have_initial && p->max_usec < p->initial_usec)
			report(c, "must not be less than \"initial\"");
		path_pop(c);
	}
	p->multiplier = 1;
	if ((v = json_object_get(o, "multiplier"))) {
		path_key(c, "multiplier");
		get_number(c, v, 1, INFINITY, &p->multiplier);
		path_pop(c);
	}
	if ((v = json_object_get(o, "jitter"))) {
		path_key(c, "jitter");
		if (!json_is_array(v) || json_array_size(v) != 2) {
			report(c, "expected an array [min, max] of two numbers");
		} else {
			double lo = 0, hi = 0;
			bool ok = true;

			path_index(c, 0);
			ok = get_number(c, json_array_get(v, 0), 0, JITTER_MAX, &lo) >= 0 && ok;
			path_pop(c);
			path_index(c, 1);
			ok = get_number(c, json_array_get(v, 1), 0, JITTER_MAX, &hi) >= 0 && ok;
			if (ok && hi < lo)
				report(c, "jitter max %g is less than jitter min %g", hi, lo);
			path_pop(c);
			p->jitter_min = lo;
			p->jitter_max = hi;
		}
		path_pop(c);
	}
	return c->errors == before ? 0 : -EINVAL;
}

static int parse_policies(struct ctx *c, struct taxonomy *t, json_t *o)
{
	const char *name;
	json_t *v;

	if (!json_is_object(o)) {
		report(c, "expected an object, got %s", util_json_type_name(o));
		return -EINVAL;
	}
	if (json_object_size(o) == 0) {
		report(c, "at least one policy is required");
		return -EINVAL;
	}
	if (json_object_size(o) > TAXONOMY_POLICIES_MAX) {
		report(c, "at most %d policies (got %zu)", TAXONOMY_POLICIES_MAX,
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

		path_key(c, name);
		if (strlen(name) == 0 || strlen(name) > CODE_MAX)
			report(c, "policy names are 1 to %d characters", CODE_MAX);
		strscpy(p->name, name, sizeof(p->name));
		parse_policy(c, v, p);
		path_pop(c);
	}
	return 0;
}

static void parse_classes(struct ctx *c, struct taxonomy *t, json_t *o)
{
	const char *name;
	json_t *v;

	if (!json_is_object(o)) {
		report(c, "expected an object, got %s", util_json_type_name(o));
		return;
	}
	json_object_foreach(o, name, v)
	{
		enum error_class k = error_class_from_string(name);

		path_key(c, name);
		if (k == _ERROR_CLASS_INVALID)
			report(c,
			       "unknown class (expected TRANSIENT, PERSISTENT or NON_RETRYABLE)");
		else
			get_policy_ref(c, t, v, &t->class_policy[k]);
		path_pop(c);
	}
	for (int k = 0; k < _ERROR_CLASS_MAX; k++)
		if (!json_object_get(o, class_names[k]))
			report(c, "missing \"%s\"", class_names[k]);
}

/* ---- rules ------------------------------------------------------------------ */

static const struct {
	const char *name;
	int number;
} signal_names[] = {
	{ "HUP", SIGHUP },	 { "INT", SIGINT },   { "QUIT", SIGQUIT },     { "ILL", SIGILL },
	{ "TRAP", SIGTRAP },	 { "ABRT", SIGABRT }, { "IOT", SIGIOT },       { "BUS", SIGBUS },
	{ "FPE", SIGFPE },	 { "KILL", SIGKILL }, { "USR1", SIGUSR1 },     { "SEGV", SIGSEGV },
	{ "USR2", SIGUSR2 },	 { "PIPE", SIGPIPE }, { "ALRM", SIGALRM },     { "TERM", SIGTERM },
	{ "STKFLT", SIGSTKFLT }, { "CHLD", SIGCHLD }, { "CONT", SIGCONT },     { "STOP", SIGSTOP },
	{ "TSTP", SIGTSTP },	 { "TTIN", SIGTTIN }, { "TTOU", SIGTTOU },     { "URG", SIGURG },
	{ "XCPU", SIGXCPU },	 { "XFSZ", SIGXFSZ }, { "VTALRM", SIGVTALRM }, { "PROF", SIGPROF },
	{ "WINCH", SIGWINCH },	 { "IO", SIGIO },     { "POLL", SIGPOLL },     { "PWR", SIGPWR },
	{ "SYS", SIGSYS },
};

static int signal_from_name(const char *s)
{
	if (strncmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; i < ARRAY_SIZE(signal_names); i++)
		if (strcmp(s, signal_names[i].name) == 0)
			return signal_names[i].number;
	return -EINVAL;
}

static int add_string(struct strlist *l, const char *s)
{
	char **n = realloc(l->v, (l->n + 1) * sizeof(*n));

	if (!n)
		return -ENOMEM;
	l->v = n;
	if (!(l->v[l->n] = strdup(s)))
		return -ENOMEM;
	l->n++;
	return 0;
}

/* One value of a match key; errors are reported at the value's path. */
static int parse_match_value(struct ctx *c, unsigned key, json_t *v, struct rule *ru)
{
	const char *s = json_is_string(v) ? json_string_value(v) : NULL;
	json_int_t n;

	switch (key) {
	case MATCH_HTTP_STATUS:
		if (is_integral(v)) {
			if (get_int(c, v, HTTP_MIN, HTTP_MAX, &n) < 0)
				return -EINVAL;
			bit_set(ru->http, (unsigned)(n - HTTP_MIN));
			return 0;
		}
		if (s && strlen(s) == 3 && s[0] >= '1' && s[0] <= '5' && strcmp(s + 1, "xx") == 0) {
			unsigned base = (unsigned)(s[0] - '0') * 100;

			for (unsigned i = base; i < base + 100; i++)
				bit_set(ru->http, i - HTTP_MIN);
			return 0;
		}
		if (s && strlen(s) == 3 && s[0] >= '1' && s[0] <= '5' &&
		    strspn(s, "0123456789") == 3) {
			bit_set(ru->http, (unsigned)atoi(s) - HTTP_MIN);
			return 0;
		}
		report(c, "expected an HTTP status 100..599, as a number, a string like \"401\" "
			  "or a class like \"4xx\"");
		return -EINVAL;
	case MATCH_TRANSPORT:
		if (!s) {
			report(c, "expected a string, got %s", util_json_type_name(v));
			return -EINVAL;
		}
		if (strncmp(s, "CURLE_", 6) == 0) {
			report(c, "write \"%.60s\" without the CURLE_ prefix", s);
			return -EINVAL;
		}
		if (strlen(s) == 0 || strlen(s) > TRANSPORT_MAX ||
		    strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != strlen(s)) {
			report(c,
			       "invalid libcurl error name \"%.80s\" (1 to %d characters of A-Z, "
			       "0-9 "
			       "and _, e.g. \"COULDNT_CONNECT\")",
			       s, TRANSPORT_MAX);
			return -EINVAL;
		}
		return add_string(&ru->transport, s);
	case MATCH_EXIT_CODE:
		if (get_int(c, v, 0, 255, &n) < 0)
			return -EINVAL;
		bit_set(ru->exit_codes, (unsigned)n);
		return 0;
	case MATCH_SIGNAL:
		if (is_integral(v)) {
			if (get_int(c, v, 1, SIGNAL_MAX, &n) < 0)
				return -EINVAL;
		} else if (s && (n = signal_from_name(s)) > 0) {
			;
		} else {
			report(c, "expected a signal number 1..64 or a name like \"SIGKILL\" or "
				  "\"KILL\"");
			return -EINVAL;
		}
		ru->signals |= UINT64_C(1) << (n - 1);
		return 0;
	case MATCH_HANDLER_CODE:
		if (!s) {
			report(c, "expected a string, got %s", util_json_type_name(v));
			return -EINVAL;
		}
		if (strlen(s) == 0 || strlen(s) > CODE_MAX) {
			report(c, "handler codes are 1 to %d characters", CODE_MAX);
			return -EINVAL;
		}
		return add_string(&ru->handler_code, s);
	}
	return -EINVAL;
}

static int parse_when(struct ctx *c, json_t *o, struct rule *ru)
{
	static const struct {
		const char *name;
		unsigned key;
	} match_keys[] = {
		{ "http_status", MATCH_HTTP_STATUS }, { "transport", MATCH_TRANSPORT },
		{ "timeout", MATCH_TIMEOUT },	      { "exit_code", MATCH_EXIT_CODE },
		{ "signal", MATCH_SIGNAL },	      { "handler_code", MATCH_HANDLER_CODE },
	};
	const char *name;
	json_t *v;
	int r;

	if (!json_is_object(o)) {
		report(c, "expected an object, got %s", util_json_type_name(o));
		return 0;
	}
	if (json_object_size(o) == 0) {
		report(c,
		       "needs at least one of http_status, transport, timeout, exit_code, signal, "
		       "handler_code");
		return 0;
	}
	json_object_foreach(o, name, v)
	{
		unsigned key = 0;

		for (size_t i = 0; i < ARRAY_SIZE(match_keys); i++)
			if (strcmp(name, match_keys[i].name) == 0)
				key = match_keys[i].key;
		path_key(c, name);
		if (key == 0) {
			report(c, "unknown match key (expected http_status, transport, timeout, "
				  "exit_code, signal or handler_code)");
		} else if (key == MATCH_TIMEOUT) {
			if (!json_is_true(v))
				report(c, "expected true");
		} else if (!json_is_array(v)) {
			report(c, "expected an array, got %s", util_json_type_name(v));
		} else if (json_array_size(v) == 0) {
			report(c, "must not be empty");
		} else if (json_array_size(v) > TAXONOMY_VALUES_MAX) {
			report(c, "at most %d values", TAXONOMY_VALUES_MAX);
		} else {
			for (size_t i = 0; i < json_array_size(v); i++) {
				path_index(c, i);
				r = parse_match_value(c, key, json_array_get(v, i), ru);
				path_pop(c);
				if (r == -ENOMEM)
					return r;
			}
		}
		path_pop(c);
		ru->keys |= key;
	}
	return 0;
}

/*
 * The outcome part shared by a rule and "default": the required "error_code"
 * and "class" and the optional "policy" override.
 */
static void parse_outcome(struct ctx *c, const struct taxonomy *t, json_t *o,
			  char code[static CODE_MAX + 1], enum error_class *class,
			  const struct policy **policy)
{
	json_t *v;

	if ((v = enter_required(c, o, "error_code"))) {
		get_code(c, v, code);
		path_pop(c);
	}
	if ((v = enter_required(c, o, "class"))) {
		get_class(c, v, class);
		path_pop(c);
	}
	if ((v = json_object_get(o, "policy"))) {
		path_key(c, "policy");
		get_policy_ref(c, t, v, policy);
		path_pop(c);
	}
}

static int parse_rule(struct ctx *c, struct taxonomy *t, json_t *o, struct rule *ru)
{
	static const char *const keys[] = { "when",   "error_code", "class",
					    "policy", "escalate",   NULL };
	json_t *v;
	int r;

	if (!json_is_object(o)) {
		report(c, "expected an object, got %s", util_json_type_name(o));
		return 0;
	}
	check_keys(c, o, keys);
	if ((v = enter_required(c, o, "when"))) {
		r = parse_when(c, v, ru);
		path_pop(c);
		if (r < 0)
			return r;
	}
	parse_outcome(c, t, o, ru->error_code, &ru->error_class, &ru->policy);
	if ((v = json_object_get(o, "escalate"))) {
		path_key(c, "escalate");
		if (!json_is_boolean(v))
			report(c, "expected true or false, got %s", util_json_type_name(v));
		else
			ru->escalate = json_is_true(v);
		path_pop(c);
	}
	return 0;
}

static int parse_rules(struct ctx *c, struct taxonomy *t, json_t *a)
{
	size_t n;
	int r;

	if (!json_is_array(a)) {
		report(c, "expected an array, got %s", util_json_type_name(a));
		return 0;
	}
	n = json_array_size(a);
	if (n > TAXONOMY_RULES_MAX) {
		report(c, "at most %d rules (got %zu)", TAXONOMY_RULES_MAX, n);
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
		path_index(c, i);
		r = parse_rule(c, t, json_array_get(a, i), &t->rules[i]);
		path_pop(c);
		if (r < 0)
			return r;
	}
	return 0;
}

static void parse_default(struct ctx *c, struct taxonomy *t, json_t *o)
{
	static const char *const keys[] = { "error_code", "class", "policy", NULL };

	if (!json_is_object(o)) {
		report(c, "expected an object, got %s", util_json_type_name(o));
		return;
	}
	check_keys(c, o, keys);
	parse_outcome(c, t, o, t->default_code, &t->default_class, &t->default_policy);
}

static int parse_root(struct ctx *c, struct taxonomy *t, json_t *root)
{
	/* "$schema" lets editors find docs/taxonomy.schema.json. */
	static const char *const keys[] = { "$schema", "version", "policies", "classes",
					    "rules",   "default", NULL };
	json_t *v;
	int r;

	if (!json_is_object(root)) {
		report(c, "expected an object, got %s", util_json_type_name(root));
		return 0;
	}
	check_keys(c, root, keys);
	if ((v = json_object_get(root, "$schema")) && !json_is_string(v)) {
		path_key(c, "$schema");
		report(c, "expected a string, got %s", util_json_type_name(v));
		path_pop(c);
	}
	if ((v = enter_required(c, root, "version"))) {
		if (!is_integral(v))
			report(c, "expected an integer, got %s", util_json_type_name(v));
		else if (json_number_value(v) != 1)
			report(c, "unsupported version %g (this dlqd reads version 1)",
			       json_number_value(v));
		path_pop(c);
	}
	/* Without policies nothing can reference one; say so once, not per reference. */
	if (!(v = enter_required(c, root, "policies")))
		return 0;
	r = parse_policies(c, t, v);
	path_pop(c);
	if (r < 0 || !t->n_policies)
		return r;

	if ((v = enter_required(c, root, "classes"))) {
		parse_classes(c, t, v);
		path_pop(c);
	}
	if ((v = enter_required(c, root, "rules"))) {
		r = parse_rules(c, t, v);
		path_pop(c);
		if (r < 0)
			return r;
	}
	if ((v = enter_required(c, root, "default"))) {
		parse_default(c, t, v);
		path_pop(c);
	}
	return 0;
}

int taxonomy_parse(const char *name, const char *text, size_t len, struct taxonomy **out,
		   struct diag *diags)
{
	_cleanup_(taxonomy_freep) struct taxonomy *t = NULL;
	struct ctx c = { .name = name, .text = text, .len = len };
	json_error_t jerr;
	json_t *root;
	int r;

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
	r = parse_root(&c, t, root);
	json_decref(root);
	flush_errors(&c, diags);
	if (r < 0)
		return r;
	if (c.errors > 0)
		return -EINVAL;
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

/* ---- classification ------------------------------------------------------- */

static bool rule_matches(const struct rule *ru, const struct result *r)
{
	if (ru->keys & MATCH_HTTP_STATUS)
		if (r->kind != RESULT_HTTP || r->http_status < HTTP_MIN ||
		    r->http_status > HTTP_MAX ||
		    !bit_test(ru->http, (unsigned)(r->http_status - HTTP_MIN)))
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
		    !bit_test(ru->exit_codes, (unsigned)r->exit_code))
			return false;
	if (ru->keys & MATCH_SIGNAL)
		if (r->kind != RESULT_SIGNAL || r->signal < 1 || r->signal > SIGNAL_MAX ||
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
			.rule = -1,
		};
		return;
	}
	*out = (struct classification){
		.error_code = t->default_code,
		.error_class = t->default_class,
		.policy = t->default_policy ? t->default_policy : t->class_policy[t->default_class],
		.rule = -1,
	};
}

const struct policy *taxonomy_class_policy(const struct taxonomy *t, enum error_class c)
{
	if ((int)c < 0 || c >= _ERROR_CLASS_MAX)
		return NULL;
	return t->class_policy[c];
}

const struct policy *taxonomy_policy(const struct taxonomy *t, const char *name)
{
	return name ? find_policy(t, name) : NULL;
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
