/*
 * jsonpos: the line of every member and element of a JSON text, indexed in
 * one pass (include/common/jsonpos.h).
 *
 * Why an index: a validator reports its errors by path, and walking the text
 * from its start for each one made a 1 MiB table with thousands of errors
 * take minutes, long enough to block a reload. Here the text is walked once;
 * each member and element becomes a node (parent, key or index, line), and a
 * hash of (parent, step) finds a child in constant time.
 *
 * The walk trusts nothing: every byte is either a token it knows or is
 * skipped as part of a scalar, and every turn of the loop consumes at least
 * one byte, so no input (a NUL, an unterminated string, unbalanced brackets)
 * keeps it from reaching the end. jansson has refused a text that is not
 * JSON before anyone asks for a line; in one it accepted with odd bytes in it
 * (it skips a NUL after a number or a literal), the lines are still the
 * text's own.
 */
#include "common/jsonpos.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define NO_NODE	 UINT32_MAX
#define TEXT_MAX ((size_t)INT32_MAX) /* node ids and lines fit in 32 bits */

enum node_kind {
	NODE_ROOT,
	NODE_MEMBER,
	NODE_ELEMENT,
	NODE_UNMATCHED, /* a member whose key has escapes: never looked up */
};

struct node {
	const char *key; /* a member's raw key, in the text */
	uint32_t len;	 /* a member's key length, an element's index */
	uint32_t parent;
	uint32_t line;
	enum node_kind kind;
};

struct jsonpos {
	struct node *nodes;
	size_t n, cap;
	uint32_t *slots; /* open addressing: node id + 1, 0 for an empty slot */
	size_t mask;
};

/* An open container while walking: the node it belongs to, what comes next. */
struct frame {
	uint32_t node;
	uint32_t value; /* the member or element being read; NO_NODE before the first */
	uint32_t count; /* elements so far, in an array */
	bool object;
	bool want; /* a key (object) or an element (array) is next */
};

struct jsonpos *jsonpos_free(struct jsonpos *p)
{
	if (!p)
		return NULL;
	free(p->nodes);
	free(p->slots);
	free(p);
	return NULL;
}

void jsonpos_freep(struct jsonpos **p)
{
	*p = jsonpos_free(*p);
}

/* splitmix64's finalizer: every input bit reaches every output bit. */
static uint64_t mix(uint64_t h)
{
	h ^= h >> 30;
	h *= UINT64_C(0xbf58476d1ce4e5b9);
	h ^= h >> 27;
	h *= UINT64_C(0x94d049bb133111eb);
	return h ^ (h >> 31);
}

static uint64_t member_hash(uint32_t parent, const char *key, size_t len)
{
	uint64_t h = UINT64_C(0xcbf29ce484222325); /* FNV-1a */

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)key[i]) * UINT64_C(0x100000001b3);
	return mix(h ^ parent);
}

static uint64_t element_hash(uint32_t parent, size_t index)
{
	return mix(((uint64_t)parent << 32) ^ index ^ UINT64_C(0x9e3779b97f4a7c15));
}

static int add_node(struct jsonpos *p, struct node n, uint32_t *id)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 64;
		struct node *v = reallocarray(p->nodes, cap, sizeof(*v));

		if (!v)
			return -ENOMEM;
		p->nodes = v;
		p->cap = cap;
	}
	p->nodes[p->n] = n;
	*id = (uint32_t)p->n++;
	return 0;
}

/*
 * A value starts in f (NULL: the document itself): the node it belongs to.
 * In an array the first byte of a value opens a new element.
 */
static int value_begin(struct jsonpos *p, struct frame *f, uint32_t line, uint32_t *id)
{
	int r;

	if (!f) {
		*id = 0;
		return 0;
	}
	if (!f->object && f->want) {
		r = add_node(p,
			     (struct node){ .kind = NODE_ELEMENT,
					    .len = f->count++,
					    .parent = f->node,
					    .line = line },
			     &f->value);
		if (r < 0)
			return r;
		f->want = false;
	}
	*id = f->value != NO_NODE ? f->value : f->node;
	return 0;
}

static int build_hash(struct jsonpos *p)
{
	size_t cap = 16;

	while (cap < 2 * p->n)
		cap *= 2;
	p->slots = calloc(cap, sizeof(*p->slots));
	if (!p->slots)
		return -ENOMEM;
	p->mask = cap - 1;
	for (size_t id = 0; id < p->n; id++) {
		const struct node *n = &p->nodes[id];
		uint64_t h;

		if (n->kind == NODE_MEMBER)
			h = member_hash(n->parent, n->key, n->len);
		else if (n->kind == NODE_ELEMENT)
			h = element_hash(n->parent, n->len);
		else
			continue;
		size_t i = h & p->mask;
		while (p->slots[i])
			i = (i + 1) & p->mask;
		p->slots[i] = (uint32_t)id + 1;
	}
	return 0;
}

static int walk(struct jsonpos *p, const char *s, const char *end)
{
	_cleanup_free_ struct frame *stack = NULL;
	size_t depth = 0, cap = 0;
	uint32_t line = 1, id;
	int r;

	while (s < end) {
		struct frame *f = depth > 0 ? &stack[depth - 1] : NULL;

		switch (*s) {
		case '\n':
			line++;
			s++;
			break;
		case ' ':
		case '\t':
		case '\r':
		case ':':
			s++;
			break;
		case ',':
			if (f)
				f->want = true;
			s++;
			break;
		case '"': {
			const char *k = ++s;
			uint32_t at = line;
			bool esc = false, escapes = false;

			for (; s < end && (esc || *s != '"'); s++) {
				if (*s == '\n')
					line++;
				escapes |= *s == '\\';
				esc = !esc && *s == '\\';
			}
			size_t klen = (size_t)(s - k);
			if (s < end)
				s++;
			if (f && f->object && f->want) {
				r = add_node(p,
					     (struct node){ .kind = escapes ? NODE_UNMATCHED
									    : NODE_MEMBER,
							    .key = k,
							    .len = (uint32_t)klen,
							    .parent = f->node,
							    .line = at },
					     &f->value);
				f->want = false;
			} else {
				r = value_begin(p, f, at, &id);
			}
			if (r < 0)
				return r;
			break;
		}
		case '{':
		case '[':
			r = value_begin(p, f, line, &id);
			if (r < 0)
				return r;
			if (depth == cap) {
				size_t n = cap ? 2 * cap : 16;
				struct frame *v = reallocarray(stack, n, sizeof(*v));

				if (!v)
					return -ENOMEM;
				stack = v;
				cap = n;
			}
			stack[depth++] = (struct frame){
				.node = id,
				.value = NO_NODE,
				.object = *s == '{',
				.want = true,
			};
			s++;
			break;
		case '}':
		case ']':
			if (depth > 0)
				depth--;
			s++;
			break;
		default:
			/* Part of a number, a literal, or a byte that is not JSON. */
			r = value_begin(p, f, line, &id);
			if (r < 0)
				return r;
			s++;
			break;
		}
	}
	return 0;
}

int jsonpos_index(const char *text, size_t len, struct jsonpos **out)
{
	_cleanup_(jsonpos_freep) struct jsonpos *p = NULL;
	uint32_t root;
	int r;

	if (len >= TEXT_MAX)
		return -E2BIG;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	r = add_node(p, (struct node){ .kind = NODE_ROOT, .parent = NO_NODE, .line = 1 }, &root);
	if (r < 0)
		return r;
	r = walk(p, text, text + len);
	if (r < 0)
		return r;
	r = build_hash(p);
	if (r < 0)
		return r;
	*out = TAKE_PTR(p);
	return 0;
}

static uint32_t find_child(const struct jsonpos *p, uint32_t parent, const struct jsonpos_step *st)
{
	size_t klen = st->key ? strlen(st->key) : 0;
	uint64_t h;

	if (st->key ? klen >= TEXT_MAX : st->index >= TEXT_MAX)
		return NO_NODE;
	h = st->key ? member_hash(parent, st->key, klen) : element_hash(parent, st->index);
	for (size_t i = h & p->mask; p->slots[i]; i = (i + 1) & p->mask) {
		uint32_t id = p->slots[i] - 1;
		const struct node *n = &p->nodes[id];

		if (n->parent != parent)
			continue;
		if (st->key ? n->kind == NODE_MEMBER && n->len == klen &&
				      memcmp(n->key, st->key, klen) == 0
			    : n->kind == NODE_ELEMENT && n->len == st->index)
			return id;
	}
	return NO_NODE;
}

unsigned jsonpos_line(const struct jsonpos *p, const struct jsonpos_step *path, size_t depth)
{
	uint32_t cur = 0;
	unsigned line = 1;

	if (!p)
		return line;
	for (size_t i = 0; i < depth; i++) {
		cur = find_child(p, cur, &path[i]);
		if (cur == NO_NODE)
			break;
		line = p->nodes[cur].line;
	}
	return line;
}
