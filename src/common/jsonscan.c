/*
 * jsonscan: validates JSON in one pass over the bytes and reports spans of
 * the original text (see include/common/jsonscan.h for what is valid).
 *
 * The scanner is a loop over an explicit stack, never recursion, so hostile
 * nesting costs memory bounded by JSCAN_DEPTH_MAX, not stack. Names are
 * unescaped into an arena while their object is open: when the object
 * closes, its names are sorted and neighbours compared (duplicates), then
 * the arena is cut back to where the object began. Only the top-level
 * object's names are kept, for the caller's lookups.
 */
#include "common/jsonscan.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct frame {
	bool object;
	size_t first_name; /* index into names of this object's first name */
	size_t arena_mark; /* arena length when the object opened */
};

/* A name in the arena: offset and length of its unescaped bytes. */
struct name {
	size_t off, len;
	size_t at; /* where its token starts in the text, for messages */
};

struct scanner {
	const char *text;
	size_t len, pos;
	struct jscan_error *err;

	struct frame *stack;
	size_t depth, cap_stack;
	struct name *names;
	size_t n_names, cap_names;
	struct buf arena;
	struct jscan_member *members;
	size_t n_members, cap_members;
};

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_ws(struct scanner *s)
{
	while (s->pos < s->len && is_ws(s->text[s->pos]))
		s->pos++;
}

_printf_(3, 4) static int fail(struct scanner *s, size_t at, const char *fmt, ...)
{
	va_list ap;

	s->err->offset = at;
	va_start(ap, fmt);
	vsnprintf(s->err->text, sizeof(s->err->text), fmt, ap);
	va_end(ap);
	for (char *p = s->err->text; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	return -EINVAL;
}

/* What stands at pos, for "expected X, got Y" messages. */
static int unexpected(struct scanner *s, const char *expected)
{
	unsigned char c;

	if (s->pos >= s->len)
		return fail(s, s->pos, "%s expected, got the end of the text", expected);
	c = (unsigned char)s->text[s->pos];
	if (c >= 0x21 && c < 0x7f)
		return fail(s, s->pos, "%s expected, got '%c'", expected, c);
	return fail(s, s->pos, "%s expected, got byte 0x%02x", expected, c);
}

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
	size_t n;
	void *q;

	if (need <= *cap)
		return 0;
	n = MAX(*cap * 2, MAX(need, (size_t)8));
	q = realloc(*p, n * size);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = n;
	return 0;
}

static int hex4(const char *p, unsigned *out)
{
	unsigned v = 0;

	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static size_t utf8_put(unsigned cp, char out[4])
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/*
 * Reads the escape at p (just after the backslash) of text validated or
 * not: returns the number of bytes it takes after the backslash, its code
 * point in *cp, or 0 when it is not a valid escape (*why says why).
 */
static size_t escape(const char *p, size_t avail, unsigned *cp, const char **why)
{
	static const char simple[] = "\"\\/bfnrt";
	static const char value[] = "\"\\/\b\f\n\r\t";
	const char *k;
	unsigned hi, lo;

	*why = "invalid escape";
	if (avail < 1)
		return 0;
	if (p[0] != 'u') {
		k = memchr(simple, p[0], sizeof(simple) - 1);
		if (!k || p[0] == '\0')
			return 0;
		*cp = (unsigned char)value[k - simple];
		return 1;
	}
	if (avail < 5 || hex4(p + 1, &hi) < 0)
		return 0;
	if (hi >= 0xdc00 && hi <= 0xdfff) {
		*why = "lone low surrogate in \\u escape";
		return 0;
	}
	if (hi < 0xd800 || hi > 0xdbff) {
		*cp = hi;
		return 5;
	}
	*why = "high surrogate in \\u escape without its low surrogate";
	if (avail < 11 || p[5] != '\\' || p[6] != 'u' || hex4(p + 7, &lo) < 0 || lo < 0xdc00 ||
	    lo > 0xdfff)
		return 0;
	*cp = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
	return 11;
}

/*
 * Validates the string token at pos (on the opening quote). With name set,
 * its unescaped bytes are appended to the arena and *name describes them.
 */
static int scan_string(struct scanner *s, struct name *name)
{
	const unsigned char *t = (const unsigned char *)s->text;
	size_t start = s->pos, i = s->pos + 1, run = i;
	const char *why;
	unsigned cp;
	char u[4];
	size_t k;
	bool keep = name != NULL;

	if (keep)
		name->off = s->arena.len;
	for (;;) {
		if (i >= s->len)
			return fail(s, start, "string without its closing quote");
		if (t[i] == '"')
			break;
		if (t[i] == '\\') {
			if (keep && buf_append(&s->arena, s->text + run, i - run) < 0)
				return -ENOMEM;
			k = escape(s->text + i + 1, s->len - i - 1, &cp, &why);
			if (k == 0)
				return fail(s, i, "%s", why);
			if (keep) {
				if (cp == 0)
					return fail(s, i, "\\u0000 in an object name");
				if (buf_append(&s->arena, u, utf8_put(cp, u)) < 0)
					return -ENOMEM;
			}
			i += 1 + k;
			run = i;
			continue;
		}
		if (t[i] < 0x20)
			return fail(s, i, "control character 0x%02x in a string (must be escaped)",
				    t[i]);
		if (t[i] < 0x80) {
			i++;
			continue;
		}
		k = utf8_seq_len(t + i, s->len - i);
		if (k == 0)
			return fail(s, i, "invalid UTF-8 byte 0x%02x in a string", t[i]);
		i += k;
	}
	if (keep) {
		if (buf_append(&s->arena, s->text + run, i - run) < 0)
			return -ENOMEM;
		name->len = s->arena.len - name->off;
	}
	s->pos = i + 1;
	return 0;
}

static bool digit(const struct scanner *s, size_t i)
{
	return i < s->len && s->text[i] >= '0' && s->text[i] <= '9';
}

static int scan_number(struct scanner *s)
{
	size_t i = s->pos, start = s->pos;

	if (i < s->len && s->text[i] == '-')
		i++;
	if (!digit(s, i))
		return fail(s, i, "digit expected in a number");
	if (s->text[i] == '0')
		i++;
	else
		while (digit(s, i))
			i++;
	if (i < s->len && s->text[i] == '.') {
		if (!digit(s, ++i))
			return fail(s, i, "digit expected after the decimal point");
		while (digit(s, i))
			i++;
	}
	if (i < s->len && (s->text[i] == 'e' || s->text[i] == 'E')) {
		i++;
		if (i < s->len && (s->text[i] == '+' || s->text[i] == '-'))
			i++;
		if (!digit(s, i))
			return fail(s, i, "digit expected in the exponent");
		while (digit(s, i))
			i++;
	}
	(void)start;
	s->pos = i;
	return 0;
}

static int scan_literal(struct scanner *s, const char *word)
{
	size_t n = strlen(word);

	if (s->len - s->pos < n || memcmp(s->text + s->pos, word, n) != 0)
		return unexpected(s, "a value");
	s->pos += n;
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	const struct jscan_member *x = a, *y = b;
	int c = memcmp(x->name, y->name, MIN(x->name_len, y->name_len));

	if (c)
		return c;
	return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}

/* The object on top of the stack closes: refuse duplicate names, pop. */
static int close_object(struct scanner *s)
{
	struct frame *f = &s->stack[s->depth - 1];
	size_t n = s->n_names - f->first_name;
	_cleanup_free_ struct jscan_member *v = NULL;

	if (n > 1) {
		/* Small objects: compare every pair; larger ones: sort. */
		if (n <= 8) {
			for (size_t i = f->first_name; i < s->n_names; i++)
				for (size_t j = i + 1; j < s->n_names; j++)
					if (s->names[i].len == s->names[j].len &&
					    memcmp(s->arena.data + s->names[i].off,
						   s->arena.data + s->names[j].off,
						   s->names[i].len) == 0)
						return fail(s, s->names[j].at,
							    "duplicate name \"%.*s\" in an object",
							    (int)MIN(s->names[j].len, 40u),
							    s->arena.data + s->names[j].off);
		} else {
			v = malloc(n * sizeof(*v));
			if (!v)
				return -ENOMEM;
			for (size_t i = 0; i < n; i++)
				v[i] = (struct jscan_member){
					.name = s->arena.data + s->names[f->first_name + i].off,
					.name_len = s->names[f->first_name + i].len,
					.key.off = s->names[f->first_name + i].at,
				};
			qsort(v, n, sizeof(*v), cmp_names);
			for (size_t i = 1; i < n; i++)
				if (cmp_names(&v[i - 1], &v[i]) == 0)
					return fail(s, MAX(v[i - 1].key.off, v[i].key.off),
						    "duplicate name \"%.*s\" in an object",
						    (int)MIN(v[i].name_len, 40u), v[i].name);
		}
	}
	/* The top-level object keeps its names for the caller's lookups. */
	if (s->depth > 1) {
		s->n_names = f->first_name;
		s->arena.len = f->arena_mark;
	}
	s->depth--;
	return 0;
}

static enum jscan_kind kind_at(char c)
{
	switch (c) {
	case '{':
		return JSCAN_OBJECT;
	case '[':
		return JSCAN_ARRAY;
	case '"':
		return JSCAN_STRING;
	case 't':
		return JSCAN_TRUE;
	case 'f':
		return JSCAN_FALSE;
	case 'n':
		return JSCAN_NULL;
	default:
		return JSCAN_NUMBER;
	}
}

static int push(struct scanner *s, bool object)
{
	if (s->depth >= JSCAN_DEPTH_MAX)
		return fail(s, s->pos, "nested deeper than %d levels", JSCAN_DEPTH_MAX);
	if (grow((void **)&s->stack, &s->cap_stack, s->depth + 1, sizeof(*s->stack)) < 0)
		return -ENOMEM;
	s->stack[s->depth++] = (struct frame){
		.object = object,
		.first_name = s->n_names,
		.arena_mark = s->arena.len,
	};
	s->pos++;
	return 0;
}

/* Scans one value at pos; containers are pushed, not finished. */
static int scan_value(struct scanner *s, bool *opened)
{
	char c;

	skip_ws(s);
	*opened = false;
	if (s->pos >= s->len)
		return unexpected(s, "a value");
	c = s->text[s->pos];
	switch (kind_at(c)) {
	case JSCAN_OBJECT:
	case JSCAN_ARRAY:
		*opened = true;
		return push(s, c == '{');
	case JSCAN_STRING:
		return scan_string(s, NULL);
	case JSCAN_TRUE:
		return scan_literal(s, "true");
	case JSCAN_FALSE:
		return scan_literal(s, "false");
	case JSCAN_NULL:
		return scan_literal(s, "null");
	case JSCAN_NUMBER:
		if (c != '-' && (c < '0' || c > '9'))
			return unexpected(s, "a value");
		return scan_number(s);
	}
	return -EINVAL;
}

/* Reads a name and its colon inside the object on top of the stack. */
static int scan_name(struct scanner *s)
{
	struct name *n;
	size_t at;
	int r;

	skip_ws(s);
	if (s->pos >= s->len || s->text[s->pos] != '"')
		return unexpected(s, "a name in quotes");
	if (grow((void **)&s->names, &s->cap_names, s->n_names + 1, sizeof(*s->names)) < 0)
		return -ENOMEM;
	n = &s->names[s->n_names];
	at = s->pos;
	n->at = at;
	if ((r = scan_string(s, n)) < 0)
		return r;
	s->n_names++;
	if (s->depth == 1) {
		if (grow((void **)&s->members, &s->cap_members, s->n_members + 1,
			 sizeof(*s->members)) < 0)
			return -ENOMEM;
		s->members[s->n_members++] = (struct jscan_member){
			.key = { at, s->pos - at },
		};
	}
	skip_ws(s);
	if (s->pos >= s->len || s->text[s->pos] != ':')
		return unexpected(s, "':'");
	s->pos++;
	return 0;
}

/* A value directly inside the top-level object ends at pos. */
static void end_member(struct scanner *s)
{
	if (s->depth == 1 && s->stack[0].object && s->n_members > 0) {
		struct jscan_member *m = &s->members[s->n_members - 1];
		m->value.len = s->pos - m->value.off;
	}
}

static int close_container(struct scanner *s)
{
	int r;

	s->pos++;
	if (s->stack[s->depth - 1].object) {
		if ((r = close_object(s)) < 0)
			return r;
	} else {
		s->depth--;
	}
	end_member(s);
	return 0;
}

static int scan(struct scanner *s, enum jscan_kind *top)
{
	bool opened;
	int r;

	skip_ws(s);
	if (s->pos < s->len && (unsigned char)s->text[s->pos] == 0xef)
		return fail(s, s->pos, "byte order mark (not JSON)");
	if (s->pos < s->len)
		*top = kind_at(s->text[s->pos]);
	if ((r = scan_value(s, &opened)) < 0)
		return r;
	/* At the top of the loop a container was just opened or a value just
	 * ended, so its closing bracket is always allowed there; after a comma
	 * the next value is read at once ("[1,]" is refused). */
	while (s->depth > 0) {
		bool object = s->stack[s->depth - 1].object;
		char close = object ? '}' : ']';

		skip_ws(s);
		if (s->pos < s->len && s->text[s->pos] == close) {
			if ((r = close_container(s)) < 0)
				return r;
			opened = false;
			continue;
		}
		if (!opened) {
			if (s->pos >= s->len || s->text[s->pos] != ',')
				return unexpected(s, object ? "',' or '}'" : "',' or ']'");
			s->pos++;
		}
		if (object && (r = scan_name(s)) < 0)
			return r;
		skip_ws(s);
		if (s->depth == 1 && object && s->pos < s->len) {
			struct jscan_member *m = &s->members[s->n_members - 1];
			m->value.off = s->pos;
			m->kind = kind_at(s->text[s->pos]);
		}
		if ((r = scan_value(s, &opened)) < 0)
			return r;
		if (!opened)
			end_member(s);
	}
	skip_ws(s);
	if (s->pos != s->len)
		return unexpected(s, "the end of the text");
	return 0;
}

/* The top-level names, NUL-terminated, in one block the doc owns. */
static int keep_names(struct scanner *s, struct jscan_doc *doc)
{
	size_t total = 0, o = 0;

	for (size_t i = 0; i < s->n_members; i++)
		total += s->names[i].len + 1;
	doc->names = malloc(MAX(total, (size_t)1));
	if (!doc->names)
		return -ENOMEM;
	for (size_t i = 0; i < s->n_members; i++) {
		memcpy(doc->names + o, s->arena.data + s->names[i].off, s->names[i].len);
		doc->names[o + s->names[i].len] = '\0';
		s->members[i].name = doc->names + o;
		s->members[i].name_len = s->names[i].len;
		o += s->names[i].len + 1;
	}
	return 0;
}

int jscan_parse(const char *text, size_t len, struct jscan_doc *doc, struct jscan_error *err)
{
	struct scanner s = { .text = text, .len = len, .err = err };
	enum jscan_kind top = JSCAN_NULL;
	int r;

	*doc = (struct jscan_doc){ 0 };
	err->offset = 0;
	err->text[0] = '\0';
	buf_init(&s.arena, SIZE_MAX / 2);
	r = scan(&s, &top);
	if (r >= 0)
		r = keep_names(&s, doc);
	free(s.stack);
	free(s.names);
	buf_done(&s.arena);
	if (r < 0) {
		free(s.members);
		free(doc->names);
		*doc = (struct jscan_doc){ 0 };
		return r;
	}
	doc->kind = top;
	doc->n_members = s.n_members;
	doc->members = s.members;
	return 0;
}

void jscan_doc_done(struct jscan_doc *doc)
{
	free(doc->members);
	free(doc->names);
	*doc = (struct jscan_doc){ 0 };
}

const struct jscan_member *jscan_member(const struct jscan_doc *doc, const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < doc->n_members; i++)
		if (doc->members[i].name_len == n && memcmp(doc->members[i].name, name, n) == 0)
			return &doc->members[i];
	return NULL;
}

size_t jscan_string(const char *text, struct jscan_span s, char *out, size_t size, bool *has_nul)
{
	const char *p = text + s.off + 1, *end = text + s.off + s.len - 1;
	size_t o = 0;
	const char *why;
	unsigned cp;
	char u[4];

	if (has_nul)
		*has_nul = false;
	while (p < end) {
		size_t k = 1, n;
		const char *src = p;

		if (*p == '\\') {
			k = 1 + escape(p + 1, (size_t)(end - p - 1), &cp, &why);
			n = utf8_put(cp, u);
			src = u;
			if (cp == 0 && has_nul)
				*has_nul = true;
		} else {
			n = 1;
		}
		for (size_t i = 0; i < n; i++, o++)
			if (size > 0 && o < size - 1)
				out[o] = src[i];
		p += k;
	}
	if (size > 0)
		out[MIN(o, size - 1)] = '\0';
	return o;
}

/* Skips the value at i of validated text; returns the offset after it. */
static size_t skip_value(const char *t, size_t i, size_t end)
{
	size_t depth = 0;

	do {
		char c = t[i];
		if (c == '"') {
			for (i++; t[i] != '"'; i++)
				if (t[i] == '\\')
					i++;
			i++;
		} else if (c == '{' || c == '[') {
			depth++;
			i++;
		} else if (c == '}' || c == ']') {
			depth--;
			i++;
		} else if (depth > 0) {
			i++; /* punctuation, whitespace, scalars inside a container */
		} else {
			while (i < end && !is_ws(t[i]) && t[i] != ',' && t[i] != ']' && t[i] != '}')
				i++;
		}
	} while (depth > 0 && i < end);
	return i;
}

long jscan_elements(const char *text, struct jscan_span s, struct jscan_span **out)
{
	size_t i = s.off + 1, end = s.off + s.len - 1, n = 0, cap = 0;
	struct jscan_span *v = NULL;

	*out = NULL;
	for (;;) {
		size_t at;

		while (i < end && (is_ws(text[i]) || text[i] == ','))
			i++;
		if (i >= end)
			break;
		at = i;
		i = skip_value(text, i, end);
		if (grow((void **)&v, &cap, n + 1, sizeof(*v)) < 0) {
			free(v);
			return -ENOMEM;
		}
		v[n++] = (struct jscan_span){ at, i - at };
	}
	*out = v;
	return (long)n;
}

const char *jscan_kind_name(enum jscan_kind k)
{
	static const char *const names[] = {
		[JSCAN_OBJECT] = "object", [JSCAN_ARRAY] = "array",  [JSCAN_STRING] = "string",
		[JSCAN_NUMBER] = "number", [JSCAN_TRUE] = "boolean", [JSCAN_FALSE] = "boolean",
		[JSCAN_NULL] = "null",
	};

	return (unsigned)k < ARRAY_SIZE(names) ? names[k] : "value";
}

void jscan_position(const char *text, size_t len, size_t offset, unsigned *line, unsigned *col)
{
	size_t start = 0;

	*line = 1;
	for (size_t i = 0; i < offset && i < len; i++)
		if (text[i] == '\n') {
			(*line)++;
			start = i + 1;
		}
	*col = (unsigned)(offset - start + 1);
}
