/*
 * jsoncheck: the bookkeeping of a strict validator that walks a jansson tree
 * and reports every problem, not just the first, as "FILE:LINE: path:
 * message". The caller keeps the current path with jsoncheck_key(),
 * jsoncheck_index() and jsoncheck_pop(); jsoncheck_report() records a message
 * at that path, on the path's line in the text (found through a jsonpos index
 * built once, at the first error); jsoncheck_finish() hands the messages to a
 * struct diag in file order, like a compiler. The typed readers below cover
 * the common cases and report their own errors. Pure: no I/O, no logging.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/jsonpos.h"
#include "common/util.h"

#define JSONCHECK_DEPTH_MAX 8 /* deeper steps count, but are not printed */

struct jsoncheck_error;

struct jsoncheck {
	const char *name; /* FILE in the diagnostics */
	const char *text; /* the text the tree was parsed from */
	size_t len;
	struct jsonpos_step path[JSONCHECK_DEPTH_MAX];
	size_t depth;
	unsigned errors; /* reported so far; read it to see whether a part was valid */
	struct jsoncheck_error *pending;
	size_t n_pending, cap_pending;
	struct jsonpos *pos; /* built at the first report */
	bool pos_failed;
};

/* text must outlive c, and the keys pushed on the path must outlive their pop. */
void jsoncheck_init(struct jsoncheck *c, const char *name, const char *text, size_t len);
/*
 * Adds the errors to diags (may be NULL) in file order and frees what c
 * holds. Returns -EINVAL if any error was reported, else 0.
 */
int jsoncheck_finish(struct jsoncheck *c, struct diag *diags);

void jsoncheck_key(struct jsoncheck *c, const char *key);
void jsoncheck_index(struct jsoncheck *c, size_t index);
void jsoncheck_pop(struct jsoncheck *c);

/* Records "path: message" on the line of the current path. */
void jsoncheck_report(struct jsoncheck *c, const char *fmt, ...) _printf_(2, 3);

/*
 * The member key of o, with key pushed on the path (the caller pops it), or
 * NULL, reported as missing.
 */
json_t *jsoncheck_enter(struct jsoncheck *c, json_t *o, const char *key);
/* Reports every key of o not in allowed (NULL-terminated). */
void jsoncheck_keys(struct jsoncheck *c, json_t *o, const char *const *allowed);

/* Whether v is of type (object, array or string); reports "expected ..." if not. */
bool jsoncheck_type(struct jsoncheck *c, const json_t *v, json_type type);
/*
 * Whether v is an object (reported if not); if it is, every key of it not in
 * allowed (NULL-terminated) is reported.
 */
bool jsoncheck_object(struct jsoncheck *c, json_t *v, const char *const *allowed);
/* JSON Schema counts 5.0 as an integer, and so does this. */
bool jsoncheck_is_integer(const json_t *v);
/* An integer (see above) in min..max; -EINVAL, reported, otherwise. */
int jsoncheck_int(struct jsoncheck *c, json_t *v, json_int_t min, json_int_t max, json_int_t *out);
/* A number in min..max (max may be INFINITY); -EINVAL, reported, otherwise. */
int jsoncheck_number(struct jsoncheck *c, json_t *v, double min, double max, double *out);
