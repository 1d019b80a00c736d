/*
 * dlqtext: the one place that decides which characters of a DLQ message
 * dlqctl may hand to a terminal as they are, and how the others are
 * escaped (the rules are in dlqtext.h).
 */
#include "dlqctl/dlqtext.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The code point of a valid k-byte sequence when a terminal must not get it raw, else -1. */
static long unsafe_cp(const unsigned char *p, size_t k)
{
	uint32_t cp;

	switch (k) {
	case 1:
		return p[0] < 0x20 || p[0] == 0x7f ? p[0] : -1;
	case 2: /* U+0080 is the smallest: <= U+009F is C1 */
		cp = (uint32_t)(p[0] & 0x1f) << 6 | (p[1] & 0x3f);
		return cp <= 0x9f ? (long)cp : -1;
	case 3:
		cp = (uint32_t)(p[0] & 0x0f) << 12 | (uint32_t)(p[1] & 0x3f) << 6 | (p[2] & 0x3f);
		if ((cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069))
			return cp;
		return -1;
	default:
		return -1;
	}
}

/*
 * The piece of output for the character at p (k bytes; 0 = a byte that is
 * not UTF-8): either p itself or an escape written into esc. JSON has no
 * \x, so json escapes everything as \u.
 */
static const char *piece(const unsigned char *p, size_t k, bool controls, bool json, char esc[8],
			 size_t *len)
{
	long cp = k ? (controls ? unsafe_cp(p, k) : -1) : p[0];

	if (cp < 0) {
		*len = k;
		return (const char *)p;
	}
	*len = (size_t)snprintf(esc, 8, (cp < 0x80 || !k) && !json ? "\\x%02lx" : "\\u%04lx", cp);
	return esc;
}

static size_t render(char *dst, size_t n, const unsigned char *p, size_t len, bool controls)
{
	size_t o = 0, k, m;
	char esc[8];

	for (size_t i = 0; i < len; i += k ? k : 1) {
		k = utf8_seq_len(p + i, len - i);
		const char *s = piece(p + i, k, controls, false, esc, &m);
		if (o + m > n - 1)
			break;
		memcpy(dst + o, s, m);
		o += m;
	}
	dst[o] = '\0';
	return o;
}

size_t dlqtext_utf8(char *dst, size_t n, const void *src, size_t len)
{
	return render(dst, n, src, len, false);
}

size_t dlqtext_uncut(const void *s, size_t len)
{
	const unsigned char *p = s;

	/* The last lead byte within a sequence's reach, and what it needs. */
	for (size_t back = 1; back <= MIN(len, (size_t)4); back++) {
		unsigned char c = p[len - back];
		if ((c & 0xc0) == 0x80)
			continue;
		size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
		/* 0xc0, 0xc1 and above 0xf4 start no character: not a cut one. */
		return c >= 0xc2 && c <= 0xf4 && back < need ? len - back : len;
	}
	return len;
}

char *dlqtext_term(const char *s, char *dst, size_t n)
{
	render(dst, n, (const unsigned char *)s, strlen(s), true);
	return dst;
}

int dlqtext_json(struct buf *b)
{
	const unsigned char *p = (const unsigned char *)b->data;
	struct buf out;
	size_t k, m, start = 0;
	char esc[8];
	int r = 0;

	if (!p)
		return 0;
	buf_init(&out, b->max);
	for (size_t i = 0; i < b->len && r >= 0; i += k ? k : 1) {
		k = utf8_seq_len(p + i, b->len - i);
		/* C0 controls are JSON's whitespace outside strings, and
		 * escaped already inside them. */
		if (!k || p[i] < 0x7f || unsafe_cp(p + i, k) < 0)
			continue;
		/* Copy the safe run before it, then its escape. */
		const char *s = piece(p + i, k, true, true, esc, &m);
		if ((r = buf_append(&out, p + start, i - start)) >= 0)
			r = buf_append(&out, s, m);
		start = i + k;
	}
	if (start == 0) { /* nothing to escape */
		buf_done(&out);
		return r;
	}
	if (r >= 0)
		r = buf_append(&out, p + start, b->len - start);
	if (r < 0) {
		buf_done(&out);
		return r;
	}
	buf_done(b);
	*b = out;
	return 0;
}
