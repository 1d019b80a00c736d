/*
 * taxonomy_when: the "when" of a taxonomy rule, validated and compiled into
 * the match sets of a struct rule (taxonomy_table.h) that taxonomy.c tests a
 * result against: bitsets for HTTP statuses, exit codes and signals, lists
 * for libcurl error names and handler codes. Part of loading a taxonomy
 * (taxonomy_load.c); its errors are reported like the rest of the file's.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsoncheck.h"
#include "common/taxonomy_table.h"

#define TAXONOMY_VALUES_MAX 1000 /* values of one match key */
#define TRANSPORT_MAX	    47	 /* fits struct result.transport */

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
static int parse_match_value(struct jsoncheck *c, unsigned key, json_t *v, struct rule *ru)
{
	const char *s = json_is_string(v) ? json_string_value(v) : NULL;
	json_int_t n;

	switch (key) {
	case MATCH_HTTP_STATUS:
		if (jsoncheck_is_integer(v)) {
			if (jsoncheck_int(c, v, TAXONOMY_HTTP_MIN, TAXONOMY_HTTP_MAX, &n) < 0)
				return -EINVAL;
			taxonomy_bit_set(ru->http, (unsigned)(n - TAXONOMY_HTTP_MIN));
			return 0;
		}
		if (s && strlen(s) == 3 && s[0] >= '1' && s[0] <= '5' && strcmp(s + 1, "xx") == 0) {
			unsigned base = (unsigned)(s[0] - '0') * 100;

			for (unsigned i = base; i < base + 100; i++)
				taxonomy_bit_set(ru->http, i - TAXONOMY_HTTP_MIN);
			return 0;
		}
		if (s && strlen(s) == 3 && s[0] >= '1' && s[0] <= '5' &&
		    strspn(s, "0123456789") == 3) {
			taxonomy_bit_set(ru->http, (unsigned)atoi(s) - TAXONOMY_HTTP_MIN);
			return 0;
		}
		jsoncheck_report(
			c, "expected an HTTP status 100..599, as a number, a string like \"401\" "
			   "or a class like \"4xx\"");
		return -EINVAL;
	case MATCH_TRANSPORT:
		if (!jsoncheck_type(c, v, JSON_STRING))
			return -EINVAL;
		if (strncmp(s, "CURLE_", 6) == 0) {
			jsoncheck_report(c, "write \"%.60s\" without the CURLE_ prefix", s);
			return -EINVAL;
		}
		if (strlen(s) == 0 || strlen(s) > TRANSPORT_MAX ||
		    strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != strlen(s)) {
			jsoncheck_report(
				c,
				"invalid libcurl error name \"%.80s\" (1 to %d characters of A-Z, "
				"0-9 "
				"and _, e.g. \"COULDNT_CONNECT\")",
				s, TRANSPORT_MAX);
			return -EINVAL;
		}
		return add_string(&ru->transport, s);
	case MATCH_EXIT_CODE:
		if (jsoncheck_int(c, v, 0, 255, &n) < 0)
			return -EINVAL;
		taxonomy_bit_set(ru->exit_codes, (unsigned)n);
		return 0;
	case MATCH_SIGNAL:
		if (jsoncheck_is_integer(v)) {
			if (jsoncheck_int(c, v, 1, TAXONOMY_SIGNAL_MAX, &n) < 0)
				return -EINVAL;
		} else if (s && (n = signal_from_name(s)) > 0) {
			;
		} else {
			jsoncheck_report(
				c, "expected a signal number 1..64 or a name like \"SIGKILL\" or "
				   "\"KILL\"");
			return -EINVAL;
		}
		ru->signals |= UINT64_C(1) << (n - 1);
		return 0;
	case MATCH_HANDLER_CODE:
		if (!jsoncheck_type(c, v, JSON_STRING))
			return -EINVAL;
		if (strlen(s) == 0 || strlen(s) > TAXONOMY_CODE_MAX) {
			jsoncheck_report(c, "handler codes are 1 to %d characters",
					 TAXONOMY_CODE_MAX);
			return -EINVAL;
		}
		return add_string(&ru->handler_code, s);
	}
	return -EINVAL;
}

/* The values of one match key; -ENOMEM, or 0 with the errors reported. */
static int parse_match_values(struct jsoncheck *c, unsigned key, json_t *a, struct rule *ru)
{
	if (json_array_size(a) == 0) {
		jsoncheck_report(c, "must not be empty");
		return 0;
	}
	if (json_array_size(a) > TAXONOMY_VALUES_MAX) {
		jsoncheck_report(c, "at most %d values", TAXONOMY_VALUES_MAX);
		return 0;
	}
	for (size_t i = 0; i < json_array_size(a); i++) {
		int r;

		jsoncheck_index(c, i);
		r = parse_match_value(c, key, json_array_get(a, i), ru);
		jsoncheck_pop(c);
		if (r == -ENOMEM)
			return r;
	}
	return 0;
}

int taxonomy_when_parse(struct jsoncheck *c, json_t *o, struct rule *ru)
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

	if (!jsoncheck_type(c, o, JSON_OBJECT))
		return 0;
	if (json_object_size(o) == 0) {
		jsoncheck_report(
			c,
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
		jsoncheck_key(c, name);
		if (key == 0) {
			jsoncheck_report(
				c, "unknown match key (expected http_status, transport, timeout, "
				   "exit_code, signal or handler_code)");
		} else if (key == MATCH_TIMEOUT) {
			if (!json_is_true(v))
				jsoncheck_report(c, "expected true");
		} else if (jsoncheck_type(c, v, JSON_ARRAY)) {
			r = parse_match_values(c, key, v, ru);
			if (r < 0)
				return r;
		}
		jsoncheck_pop(c);
		ru->keys |= key;
	}
	return 0;
}
