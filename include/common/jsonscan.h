/*
 * jsonscan: a strict, one-pass JSON validator that never builds a tree and
 * never converts a number. dlqd must hand on a producer's payload as the
 * exact bytes it was written in (design.md Part 1, "Payload fidelity"), so
 * instead of decoding the body into values and encoding it again, it checks
 * the body here and then works with byte ranges ("spans") of the original
 * text: the top-level members of an object, the elements of an array.
 *
 * What is valid (RFC 8259, with the limits dlqd promises in docs/envelope.md):
 *  - UTF-8 text without a byte order mark; strings hold valid UTF-8 only
 *    (no overlongs, no surrogates, nothing above U+10FFFF) and no raw
 *    control characters; "\u" escapes must pair surrogates correctly;
 *  - numbers by the grammar, of any length: 1e400 and a 40-digit integer
 *    are valid, they are only ever copied;
 *  - at most JSCAN_DEPTH_MAX nested arrays and objects;
 *  - no two names in one object that are equal once unescaped ("a" and
 *    "\u0061" are the same name): parsers disagree on which one wins, and a
 *    handler must see what dlqd saw; "\u0000" is refused inside names;
 *  - nothing but whitespace after the value.
 *
 * Pure: no I/O, no logging. Errors are -EINVAL with a printable-ASCII reason
 * and the byte offset where the text went wrong, -ENOMEM on allocation
 * failure.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define JSCAN_DEPTH_MAX 2048

enum jscan_kind {
	JSCAN_OBJECT,
	JSCAN_ARRAY,
	JSCAN_STRING,
	JSCAN_NUMBER,
	JSCAN_TRUE,
	JSCAN_FALSE,
	JSCAN_NULL,
};

/* A byte range of the scanned text. */
struct jscan_span {
	size_t off, len;
};

/* One member of the top-level object, in the order of the text. */
struct jscan_member {
	const char *name; /* unescaped, NUL-terminated (owned by the doc) */
	size_t name_len;
	struct jscan_span key;	 /* the name token, quotes included */
	struct jscan_span value; /* the value token, exactly as written */
	enum jscan_kind kind;
};

struct jscan_doc {
	enum jscan_kind kind;	      /* of the whole value */
	struct jscan_member *members; /* top-level object members (else none) */
	size_t n_members;
	char *names; /* storage for the members' names */
};

struct jscan_error {
	size_t offset; /* where the text stopped being valid */
	char text[128];
};

/*
 * Validates text[0..len) as one JSON value and, for an object, records its
 * members. Returns 0 (doc filled; release with jscan_doc_done()), -EINVAL
 * with err filled, or -ENOMEM.
 */
int jscan_parse(const char *text, size_t len, struct jscan_doc *doc, struct jscan_error *err);
void jscan_doc_done(struct jscan_doc *doc);

/* The member called name, or NULL. */
const struct jscan_member *jscan_member(const struct jscan_doc *doc, const char *name);

/*
 * Unescapes the string token at s (from validated text) into out, at most
 * size - 1 bytes plus a NUL. Returns the full unescaped length (which may
 * exceed size - 1: the output is then cut) and sets *has_nul when the
 * string holds U+0000.
 */
size_t jscan_string(const char *text, struct jscan_span s, char *out, size_t size, bool *has_nul);

/*
 * The spans of the elements of the array token at s (from validated text),
 * in *out (malloc'd; NULL for an empty array). Returns the count or -ENOMEM.
 */
long jscan_elements(const char *text, struct jscan_span s, struct jscan_span **out);

/* "object", "array", "string", "number", "boolean" or "null". */
const char *jscan_kind_name(enum jscan_kind k);

/* 1-based line and column (in bytes) of offset, for messages. */
void jscan_position(const char *text, size_t len, size_t offset, unsigned *line, unsigned *col);
