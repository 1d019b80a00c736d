/*
 * jsonpos: where the members and elements of a JSON text are. jansson keeps no
 * positions in its tree, so a validator that works on the tree asks this
 * index for the line of a path ("rules[3].when.http_status[1]") to print
 * FILE:LINE. The text is read once, whatever it holds (a NUL, bytes that are
 * not JSON): building the index is linear in the text and every lookup is
 * linear in the path, however many are made. Pure: no I/O, no logging.
 */
#pragma once

#include <stddef.h>

/* One step of a path: an object member by key, or an array element by index. */
struct jsonpos_step {
	const char *key; /* NUL-terminated, unescaped; NULL for an array element */
	size_t index;
};

struct jsonpos;

/*
 * Indexes text (len bytes; need not be NUL-terminated, must outlive the
 * index). Returns 0, -ENOMEM, or -E2BIG for a text of 2 GiB or more.
 */
int jsonpos_index(const char *text, size_t len, struct jsonpos **out);
struct jsonpos *jsonpos_free(struct jsonpos *p);
void jsonpos_freep(struct jsonpos **p);

/*
 * The 1-based line of the last step of path: of the key for an object member,
 * of the value for an array element; 1 for the empty path. A step that is not
 * in the text (or a key written with escapes, which is not matched) ends the
 * walk, and the line of the deepest step found is returned, so there is
 * always a line to print.
 */
unsigned jsonpos_line(const struct jsonpos *p, const struct jsonpos_step *path, size_t depth);
