/*
 * jsoncheck: the path, the error list and the typed readers of a strict JSON
 * validator (include/common/jsoncheck.h).
 *
 * An error's line is found when it is reported, while the keys on the path
 * (which point into the caller's tree) are still alive; the index that finds
 * it is built once, at the first error, so a valid document costs nothing
 * and a document with thousands of errors costs one pass over its text.
 * Errors are kept with their line and report order and sorted at the end:
 * the validator visits members in the order it needs, not the file's.
 */
#include "common/jsoncheck.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct jsoncheck_error {
	unsigned line;
	size_t seq;
	char *msg;
};

void jsoncheck_init(struct jsoncheck *c, const char *name, const char *text, size_t len)
{
	*c = (struct jsoncheck){ .name = name, .text = text, .len = len };
}

void jsoncheck_key(struct jsoncheck *c, const char *key)
{
	if (c->depth < JSONCHECK_DEPTH_MAX)
		c->path[c->depth] = (struct jsonpos_step){ .key = key };
	c->depth++;
}

void jsoncheck_index(struct jsoncheck *c, size_t index)
{
	if (c->depth < JSONCHECK_DEPTH_MAX)
		c->path[c->depth] = (struct jsonpos_step){ .index = index };
	c->depth++;
}

void jsoncheck_pop(struct jsoncheck *c)
{
	if (c->depth > 0)
		c->depth--;
}

static void path_format(const struct jsoncheck *c, struct buf *b)
{
	for (size_t i = 0; i < MIN(c->depth, (size_t)JSONCHECK_DEPTH_MAX); i++) {
		if (c->path[i].key)
			buf_printf(b, "%s%s", i > 0 ? "." : "", c->path[i].key);
		else
			buf_printf(b, "[%zu]", c->path[i].index);
	}
}

static unsigned current_line(struct jsoncheck *c)
{
	/* Without the index (out of memory) every error is still reported, on line 1. */
	if (!c->pos && !c->pos_failed)
		c->pos_failed = jsonpos_index(c->text, c->len, &c->pos) < 0;
	return jsonpos_line(c->pos, c->path, MIN(c->depth, (size_t)JSONCHECK_DEPTH_MAX));
}

void jsoncheck_report(struct jsoncheck *c, const char *fmt, ...)
{
	struct jsoncheck_error *n;
	char msg[512];
	struct buf b;
	va_list ap;

	c->errors++;
	buf_init(&b, 1024);
	path_format(c, &b);
	if (b.len > 0)
		buf_printf(&b, ": ");
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	buf_append_trunc(&b, msg, strlen(msg));

	if (c->n_pending == c->cap_pending) {
		size_t cap = c->cap_pending ? 2 * c->cap_pending : 16;

		n = reallocarray(c->pending, cap, sizeof(*n));
		if (!n) {
			buf_done(&b);
			return;
		}
		c->pending = n;
		c->cap_pending = cap;
	}
	c->pending[c->n_pending] = (struct jsoncheck_error){
		.line = current_line(c),
		.seq = c->n_pending,
		.msg = buf_steal(&b, NULL),
	};
	c->n_pending++;
}

static int error_cmp(const void *a, const void *b)
{
	const struct jsoncheck_error *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int jsoncheck_finish(struct jsoncheck *c, struct diag *diags)
{
	if (c->n_pending > 1)
		qsort(c->pending, c->n_pending, sizeof(*c->pending), error_cmp);
	for (size_t i = 0; i < c->n_pending; i++) {
		if (diags && c->pending[i].msg)
			diag_add(diags, c->name, c->pending[i].line, "%s", c->pending[i].msg);
		free(c->pending[i].msg);
	}
	free(c->pending);
	c->pending = NULL;
	c->n_pending = c->cap_pending = 0;
	c->pos = jsonpos_free(c->pos);
	return c->errors > 0 ? -EINVAL : 0;
}

json_t *jsoncheck_enter(struct jsoncheck *c, json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	if (!v) {
		jsoncheck_report(c, "missing \"%s\"", key);
		return NULL;
	}
	jsoncheck_key(c, key);
	return v;
}

void jsoncheck_keys(struct jsoncheck *c, json_t *o, const char *const *allowed)
{
	const char *key;
	json_t *v;

	json_object_foreach(o, key, v)
	{
		bool ok = false;

		for (const char *const *a = allowed; *a && !ok; a++)
			ok = strcmp(key, *a) == 0;
		if (!ok) {
			jsoncheck_key(c, key);
			jsoncheck_report(c, "unknown key");
			jsoncheck_pop(c);
		}
	}
}

bool jsoncheck_type(struct jsoncheck *c, const json_t *v, json_type type)
{
	static const char *const names[] = {
		[JSON_OBJECT] = "an object",
		[JSON_ARRAY] = "an array",
		[JSON_STRING] = "a string",
	};

	if (v && json_typeof(v) == type)
		return true;
	jsoncheck_report(c, "expected %s, got %s",
			 (size_t)type < ARRAY_SIZE(names) && names[type] ? names[type] : "a value",
			 v ? util_json_type_name(v) : "nothing");
	return false;
}

bool jsoncheck_object(struct jsoncheck *c, json_t *v, const char *const *allowed)
{
	if (!jsoncheck_type(c, v, JSON_OBJECT))
		return false;
	jsoncheck_keys(c, v, allowed);
	return true;
}

bool jsoncheck_is_integer(const json_t *v)
{
	double d;

	if (json_is_integer(v))
		return true;
	if (!json_is_real(v))
		return false;
	d = json_real_value(v);
	return d == floor(d) && fabs(d) < 0x1p53;
}

int jsoncheck_int(struct jsoncheck *c, json_t *v, json_int_t min, json_int_t max, json_int_t *out)
{
	if (!jsoncheck_is_integer(v)) {
		jsoncheck_report(c, "expected an integer, got %s", util_json_type_name(v));
		return -EINVAL;
	}
	*out = json_is_integer(v) ? json_integer_value(v) : (json_int_t)json_real_value(v);
	if (*out < min || *out > max) {
		jsoncheck_report(c, "%lld is out of range (%lld..%lld)", (long long)*out,
				 (long long)min, (long long)max);
		return -EINVAL;
	}
	return 0;
}

int jsoncheck_number(struct jsoncheck *c, json_t *v, double min, double max, double *out)
{
	if (!json_is_number(v)) {
		jsoncheck_report(c, "expected a number, got %s", util_json_type_name(v));
		return -EINVAL;
	}
	*out = json_number_value(v);
	if (!(*out >= min && *out <= max)) {
		if (isinf(max))
			jsoncheck_report(c, "%g is out of range (at least %g)", *out, min);
		else
			jsoncheck_report(c, "%g is out of range (%g..%g)", *out, min, max);
		return -EINVAL;
	}
	return 0;
}
