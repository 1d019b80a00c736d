/*
 * shellwords: the argv split of [handler] command (see shellwords.h).
 *
 * Inside 'single quotes' every byte is literal; inside "double quotes" only
 * \" and \\ are escapes (any other backslash stays, as in sh); outside quotes
 * a backslash makes the next byte literal. Quoted pieces and plain ones join
 * into one word until unquoted whitespace, so '' is an empty argument.
 */
#include "common/shellwords.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "common/strv.h"
#include "common/util.h"

/* Appends the next word, which starts at *s, to word; moves *s past it. */
static int read_word(const char **s, struct buf *word, const char **why)
{
	const char *p = *s;

	while (*p && !isspace((unsigned char)*p)) {
		if (*p == '\'') {
			const char *end = strchr(p + 1, '\'');
			if (!end) {
				*why = "unbalanced single quote";
				return -EINVAL;
			}
			if (buf_append(word, p + 1, (size_t)(end - p - 1)) < 0)
				return -ENOMEM;
			p = end + 1;
		} else if (*p == '"') {
			for (p++; *p != '"'; p++) {
				if (!*p) {
					*why = "unbalanced double quote";
					return -EINVAL;
				}
				if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
					p++;
				if (buf_append(word, p, 1) < 0)
					return -ENOMEM;
			}
			p++;
		} else if (*p == '\\') {
			if (!p[1]) {
				*why = "backslash at the end of the command";
				return -EINVAL;
			}
			if (buf_append(word, p + 1, 1) < 0)
				return -ENOMEM;
			p += 2;
		} else {
			if (buf_append(word, p, 1) < 0)
				return -ENOMEM;
			p++;
		}
	}
	*s = p;
	return 0;
}

int shellwords_split(const char *cmd, char ***argv, const char **why)
{
	_cleanup_(strv_freep) char **v = NULL;
	const char *s = cmd, *ignored;
	size_t n = 0;
	int r;

	if (!why)
		why = &ignored;
	if (!cmd) {
		*why = "empty command";
		return -EINVAL;
	}
	for (;;) {
		struct buf word;
		char *w;

		while (*s && isspace((unsigned char)*s))
			s++;
		if (!*s)
			break;
		/* A word is never longer than the command it comes from. */
		buf_init(&word, strlen(cmd));
		r = read_word(&s, &word, why);
		if (r < 0) {
			buf_done(&word);
			if (r == -ENOMEM)
				*why = "out of memory";
			return r;
		}
		w = buf_steal(&word, NULL);
		if (!w || strv_push(&v, &n, w) < 0) {
			*why = "out of memory";
			return -ENOMEM;
		}
	}
	if (n == 0) {
		*why = "empty command";
		return -EINVAL;
	}
	*argv = TAKE_PTR(v);
	return 0;
}
