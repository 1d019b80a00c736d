/*
 * ini: the syntax of dlqd's INI files, with no knowledge of which sections
 * and keys exist. It reads lines ("[section]", "key = value", comments
 * starting with ; or #), cuts each value out of its line and hands the
 * pieces to a handler with their line numbers, so the handler can report
 * "FILE:LINE: message" for what it finds wrong in them. Pure: no I/O, no
 * logging, no allocation.
 *
 * The rules, which docs/config.md states for operators:
 *  - a UTF-8 byte order mark before the first line is skipped; lines end in
 *    LF or CRLF and hold at most INI_MAX_LINE bytes;
 *  - blank lines and lines whose first non-blank character is ; or # are
 *    comments; an inline comment starts at a blank followed by ; or #;
 *  - a value in double quotes is unquoted (\" and \\ are its escapes), so it
 *    can hold ; and # and keep blanks at either end;
 *  - a value read with INI_VALUE_SHELL keeps its quotes and backslashes for a
 *    later argv split (shellwords.h), and a ; or # inside quotes, or after a
 *    backslash, is not a comment.
 * A syntax error is reported and the reader goes on with the next line, so a
 * caller can list every mistake of a file in one run.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/util.h"

#define INI_MAX_LINE 4096

enum ini_value_syntax {
	INI_VALUE_PLAIN, /* "quoted" values are unquoted */
	INI_VALUE_SHELL, /* quotes and backslashes are kept as written */
};

struct ini_handler {
	/*
	 * A "[name]" header (name trimmed). Returns true when the section is
	 * known; for an unknown one the handler reports it, and the reader skips
	 * the keys that follow until the next header instead of reporting them.
	 */
	bool (*section)(void *userdata, const char *name, unsigned line);
	/*
	 * A key (trimmed) inside a known section. Returns how its value is
	 * written, or a negative number to skip the line (an unknown or duplicate
	 * key, which the handler has reported).
	 */
	int (*key)(void *userdata, const char *key, unsigned line);
	/*
	 * The value of the key that key() just accepted, or NULL when it could not
	 * be read (an unterminated quote...: reported through error()).
	 */
	void (*value)(void *userdata, const char *value, unsigned line);
	/* A syntax error on line. */
	void (*error)(void *userdata, unsigned line, const char *fmt, ...) _printf_(3, 4);
};

/*
 * Reads the len bytes of text (which need not be NUL-terminated) and calls h
 * for each line in order. Returns 0, or -EINVAL without reading any line when
 * text holds a NUL byte (reported at the line that holds it: not a text file).
 */
int ini_parse(const char *text, size_t len, const struct ini_handler *h, void *userdata);
