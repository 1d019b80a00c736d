/*
 * ini: reads the lines of an INI file and cuts them into sections, keys and
 * values (the rules are in ini.h). What the names mean, and whether a value
 * is valid, is the handler's business: config.c for dlqd.conf.
 *
 * A line is copied into a buffer of its own before it is cut, so the text is
 * never written to and a value handed to the handler is NUL-terminated.
 */
#include "common/ini.h"

#include <errno.h>
#include <string.h>

struct reader {
	const struct ini_handler *h;
	void *userdata;
	enum {
		IN_NONE,    /* before the first header */
		IN_KNOWN,   /* a section the handler knows */
		IN_UNKNOWN, /* a section already reported: its keys are skipped */
	} in;
	char section[INI_MAX_LINE + 1]; /* the name of the known section */
	char line[INI_MAX_LINE + 1];
};

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

enum cut_error {
	CUT_OK,
	CUT_UNTERMINATED, /* "... without the closing quote */
	CUT_TRAILING,	  /* "..." followed by more than a comment */
};

/*
 * Cuts the value that starts at v (just after '=') out of its line, in place:
 * an inline comment starts at whitespace followed by ';' or '#'. A value in
 * double quotes is unquoted (\" and \\ escapes) so it can hold ; or #. For
 * INI_VALUE_SHELL the quotes belong to the argv syntax and are kept; a ; or #
 * inside them is not a comment.
 */
static const char *cut_value(char *v, bool shell, enum cut_error *err)
{
	char *s, *end;

	*err = CUT_OK;
	s = v;
	while (is_blank(*s))
		s++;

	if (!shell && *s == '"') {
		char *in = s + 1, *out = s;

		for (;; in++) {
			if (!*in) {
				*err = CUT_UNTERMINATED;
				return NULL;
			}
			if (*in == '"')
				break;
			if (*in == '\\' && (in[1] == '"' || in[1] == '\\'))
				in++;
			*out++ = *in;
		}
		*out = '\0';
		for (in++; is_blank(*in); in++)
			;
		if (*in && *in != ';' && *in != '#') {
			*err = CUT_TRAILING;
			return NULL;
		}
		return s;
	}

	/* end: just past the last character that belongs to the value */
	end = s;
	char quote = 0;
	for (char *q = v; *q; q++) {
		if (quote) {
			if (*q == quote)
				quote = 0;
			else if (quote == '"' && *q == '\\' && q[1])
				q++;
			end = q + 1;
		} else if (shell && (*q == '"' || *q == '\'')) {
			quote = *q;
			end = q + 1;
		} else if (shell && *q == '\\' && q[1]) {
			q++;
			end = q + 1;
		} else if (is_blank(*q)) {
			if (q[1] == ';' || q[1] == '#')
				break;
		} else {
			end = q + 1;
		}
	}
	if (end < s)
		end = s;
	*end = '\0';
	return s;
}

static char *trim(char *s)
{
	char *e;

	while (is_blank(*s))
		s++;
	e = s + strlen(s);
	while (e > s && is_blank(e[-1]))
		e--;
	*e = '\0';
	return s;
}

static void read_header(struct reader *rd, char *s, unsigned line)
{
	const struct ini_handler *h = rd->h;
	char *close = strchr(s, ']'), *rest, *name;

	rd->in = IN_UNKNOWN;
	if (!close) {
		h->error(rd->userdata, line, "malformed section header (expected [name])");
		return;
	}
	rest = close + 1;
	while (is_blank(*rest))
		rest++;
	if (*rest && *rest != ';' && *rest != '#') {
		h->error(rd->userdata, line, "unexpected text after section header: '%s'", rest);
		return;
	}
	*close = '\0';
	name = trim(s + 1);
	if (!*name) {
		h->error(rd->userdata, line, "malformed section header (empty name)");
		return;
	}
	if (!h->section(rd->userdata, name, line))
		return;
	rd->in = IN_KNOWN;
	strscpy(rd->section, name, sizeof(rd->section));
}

static void read_key(struct reader *rd, char *s, unsigned line)
{
	const struct ini_handler *h = rd->h;
	char *eq = strchr(s, '='), *key;
	enum cut_error err;
	const char *value;
	int syntax;

	if (!eq) {
		h->error(rd->userdata, line,
			 "malformed line (expected 'key = value', '[section]' or a comment)");
		return;
	}
	*eq = '\0';
	key = trim(s);
	if (!*key) {
		h->error(rd->userdata, line, "malformed line (missing key before '=')");
		return;
	}
	if (rd->in == IN_NONE) {
		h->error(rd->userdata, line,
			 "key '%s' is outside of any section (add a [section] header above it)",
			 key);
		return;
	}
	if (rd->in == IN_UNKNOWN)
		return; /* the header was reported; its keys would only add noise */

	syntax = h->key(rd->userdata, key, line);
	if (syntax < 0)
		return;
	value = cut_value(eq + 1, syntax == INI_VALUE_SHELL, &err);
	if (err == CUT_UNTERMINATED)
		h->error(rd->userdata, line,
			 "unterminated quoted value for '%s' in [%s] (no closing \")", key,
			 rd->section);
	else if (err == CUT_TRAILING)
		h->error(rd->userdata, line,
			 "unexpected text after the quoted value of '%s' in [%s]", key,
			 rd->section);
	h->value(rd->userdata, value, line);
}

static void read_line(struct reader *rd, unsigned line)
{
	/* No right trim here: cut_value() knows which trailing blanks are escaped. */
	char *s = rd->line;

	while (is_blank(*s))
		s++;
	if (!*s || *s == ';' || *s == '#')
		return;
	if (*s == '[')
		read_header(rd, s, line);
	else
		read_key(rd, s, line);
}

int ini_parse(const char *text, size_t len, const struct ini_handler *h, void *userdata)
{
	struct reader rd = { .h = h, .userdata = userdata, .in = IN_NONE };
	const char *s = text, *end = text + len, *nul = memchr(text, '\0', len);
	unsigned line = 0;

	if (nul) {
		line = 1;
		for (const char *p = text; p < nul; p++)
			line += *p == '\n';
		h->error(userdata, line, "file contains a NUL byte (not a text file?)");
		return -EINVAL;
	}
	/* An editor's UTF-8 byte order mark is not part of the first line. */
	if (len >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0)
		s += 3;
	while (s < end) {
		const char *eol = memchr(s, '\n', (size_t)(end - s));
		size_t n;

		if (!eol)
			eol = end;
		n = (size_t)(eol - s);
		line++;
		if (n > 0 && s[n - 1] == '\r')
			n--;
		if (n > INI_MAX_LINE) {
			h->error(userdata, line, "line too long (%zu bytes, max %d)", n,
				 INI_MAX_LINE);
		} else {
			memcpy(rd.line, s, n);
			rd.line[n] = '\0';
			read_line(&rd, line);
		}
		s = eol < end ? eol + 1 : end;
	}
	return 0;
}
