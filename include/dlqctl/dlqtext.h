/*
 * dlqtext: how text taken from a DLQ message becomes safe to keep, to show
 * on the operator's terminal and to write as JSON. A message is hostile
 * input: its ids and codes may hold bytes that are not UTF-8, escape
 * sequences that would rewrite the screen, or bidi overrides that reorder a
 * table. dlqctl keeps such text as valid UTF-8 (dlqtext_utf8), escapes it
 * on every terminal line (dlqtext_term) and in every JSON text it prints
 * (dlqtext_json). The escapes: a byte that is not UTF-8, a C0 control (ESC
 * among them) or DEL becomes \xNN; a C1 control (U+0080..U+009F) or a bidi
 * control (U+202A..U+202E, U+2066..U+2069) becomes \uNNNN.
 * Pure: no I/O.
 */
#pragma once

#include <stddef.h>

#include "common/util.h"

/*
 * Copies len bytes of src into dst (size n >= 1) as valid UTF-8 without
 * NULs: each byte that starts no valid sequence becomes the text \xNN.
 * Controls are kept (JSON escapes them; dlqtext_term does for terminals).
 * What does not fit is cut at a character boundary, never inside a
 * sequence or an escape. Returns strlen(dst).
 */
size_t dlqtext_utf8(char *dst, size_t n, const void *src, size_t len);

/*
 * len without a last character that was cut short: for text that another
 * module already cut to a byte count (a sequence that merely ends early is
 * not UTF-8 and dlqtext_utf8 would show it as \xNN escapes).
 */
size_t dlqtext_uncut(const void *s, size_t len);

/* The size dlqtext_term needs to escape any text of len bytes whole. */
#define DLQTEXT_TERM_SIZE(len) (4 * (len) + 1)

/*
 * s escaped for a terminal line into dst (size n >= 1), cut at a character
 * boundary when it does not fit. Returns dst.
 */
char *dlqtext_term(const char *s, char *dst, size_t n);

/*
 * Makes JSON text that jansson or buf_json_string() wrote safe for a
 * terminal: they escape C0 controls but write DEL, C1 and bidi controls
 * raw. Outside strings JSON text is ASCII, so each such character is inside
 * a string and its \u escape is the same string. b is rewritten in place;
 * -ENOMEM or -E2BIG (b's maximum) leaves it unchanged.
 */
int dlqtext_json(struct buf *b);
