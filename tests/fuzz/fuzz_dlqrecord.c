/*
 * fuzz_dlqrecord: one DLQ message through dlqctl's model: dlqrecord_parse()
 * (headers, properties and the envelope in the body), dlqrecord_json() in
 * each of its forms and dlqtext_json() after it, the filters of the command
 * line (dlqfilter_add, dlqfilter_match) and every copy built from it with
 * its headers as they came: copy_replay as dlqctl builds it, copy_failure,
 * copy_defer and copy_redelivery as dlqd does (properties "expiration" and
 * "user_id" are the source's). The input is text, so seeds are easy to
 * write:
 *
 *   s KEY VALUE    a string header      p KEY VALUE   a string property
 *   i KEY INT      an integer header    P KEY INT     an integer property
 *   f KEY DOUBLE   a float header       b KEY 0|1     a boolean header
 *   o KEY          a header of another kind (a table...)
 *   F<n> VALUE     dlqfilter_add(key n % 6, VALUE)
 *   (empty line)   the rest of the input is the body
 *
 * Checks: the record's strings are valid UTF-8 that fits; the JSON is
 * complete and valid, and after dlqtext_json() holds no raw control; a
 * filter with nothing in it matches everything; a copy of an envelope is
 * an envelope with the same payload, of anything else the same bytes; a
 * header a copy sets is the only one of its name.
 */
#include <errno.h>
#include <jansson.h>

#include "common/copy.h"
#include "common/envelope.h"
#include "common/util.h"
#include "dlqctl/dlqfilter.h"
#include "dlqctl/dlqrecord.h"
#include "dlqctl/dlqtext.h"
#include "fuzz.h"

/* 2026-03-17T03:10:00Z, as in the unit tests. */
#define T0	       (UINT64_C(1773717000) * USEC_PER_SEC)
#define FIELDS_MAX     32
#define JSON_OUT_MAX   (4u << 20)
#define FILTER_ERR_MAX 256

struct input {
	struct header headers[FIELDS_MAX], props[FIELDS_MAX];
	size_t n_headers, n_props;
	struct dlqfilter filter;
	const char *body;
	size_t len;
};

/* Splits "KEY VALUE" (no newline inside) into the header h. */
static void field(struct header *h, char kind, const char *p, size_t n)
{
	const char *sp = memchr(p, ' ', n);
	size_t kl = sp ? (size_t)(sp - p) : n;
	const char *v = sp ? sp + 1 : p + n;
	size_t vl = sp ? n - kl - 1 : 0;
	char num[64];

	*h = (struct header){ .key = p, .key_len = kl, .s = v, .s_len = vl, .raw = "" };
	snprintf(num, sizeof(num), "%.*s", (int)MIN(vl, sizeof(num) - 1), v);
	switch (kind) {
	case 's':
	case 'p':
		h->kind = HEADER_STRING;
		break;
	case 'i':
	case 'P':
		h->kind = HEADER_INT;
		h->i = strtoll(num, NULL, 10);
		break;
	case 'b':
		h->kind = HEADER_BOOL;
		h->i = num[0] == '1';
		break;
	case 'f':
		h->kind = HEADER_FLOAT;
		h->f = strtod(num, NULL);
		break;
	default:
		h->kind = HEADER_OTHER;
		break;
	}
}

static void read_input(struct input *in, const char *p, size_t size)
{
	const char *end = p + size;

	dlqfilter_init(&in->filter);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char kind = n ? p[0] : 0;

		if (n == 0) { /* the blank line: the body follows */
			p = nl ? nl + 1 : end;
			break;
		}
		if (n >= 2 && strchr("sifbo", kind) && in->n_headers < FIELDS_MAX) {
			field(&in->headers[in->n_headers++], kind, p + 2, n - 2);
		} else if (n >= 2 && strchr("pP", kind) && in->n_props < FIELDS_MAX) {
			field(&in->props[in->n_props++], kind, p + 2, n - 2);
		} else if (n >= 3 && kind == 'F') {
			_cleanup_free_ char *v = strndup(p + 3, n - 3);
			char err[FILTER_ERR_MAX];

			if (!v)
				abort();
			(void)dlqfilter_add(&in->filter, (enum dlqfilter_key)((unsigned)p[1] % 6),
					    v, err, sizeof(err));
		}
		p = nl ? nl + 1 : end;
	}
	in->body = p;
	in->len = (size_t)(end - p);
}

static void check_text(const char *s)
{
	size_t n = strlen(s);

	FUZZ_CHECK(n < DLQRECORD_STR_MAX);
	for (size_t i = 0, k; i < n; i += k) {
		k = utf8_seq_len((const unsigned char *)s + i, n - i);
		FUZZ_CHECK(k > 0);
	}
}

static void check_record(const struct dlq_record *r)
{
	check_text(r->message_id);
	check_text(r->trace_id);
	check_text(r->error_code);
	check_text(r->error_class);
	check_text(r->schema_version);
	FUZZ_CHECK(r->attempt >= -1);
	FUZZ_CHECK(r->replay_count <= DLQRECORD_REPLAY_COUNT_MAX);
}

static void check_json(const struct dlq_message *m, const struct dlq_record *r, unsigned flags)
{
	struct buf b;
	json_t *j;
	int k;

	buf_init(&b, JSON_OUT_MAX);
	k = dlqrecord_json(m, r, T0, flags, &b);
	if (k < 0) {
		FUZZ_CHECK(k == -ENOMEM && b.len == 0);
		buf_done(&b);
		return;
	}
	j = json_loadb(b.data, b.len, JSON_ALLOW_NUL, NULL);
	FUZZ_CHECK(json_is_object(j));
	json_decref(j);
	if (dlqtext_json(&b) == 0)
		for (size_t i = 0; i < b.len; i++) {
			unsigned char c = (unsigned char)b.data[i];
			FUZZ_CHECK((c >= 0x20 || c == '\n') && c != 0x7f);
		}
	buf_done(&b);
}

/* Each header a copy sets (raw NULL) is the only one of its name. */
static void check_headers(const struct copy *c)
{
	for (size_t i = 0; i < c->n_headers; i++) {
		if (c->headers[i].raw)
			continue;
		for (size_t j = 0; j < c->n_headers; j++)
			FUZZ_CHECK(j == i || c->headers[j].key_len != c->headers[i].key_len ||
				   memcmp(c->headers[j].key, c->headers[i].key,
					  c->headers[i].key_len) != 0);
	}
}

/* A copy of env is an envelope with its payload; of anything else, the
 * body unchanged. Returns the decoded copy (or NULL) for more checks. */
static struct envelope *check_copy(int k, const struct dlq_message *m, const struct envelope *env,
				   struct copy *c)
{
	struct envelope *again = NULL;
	const char *p, *q;
	size_t n, l;

	if (k == -ENOMEM)
		return NULL;
	FUZZ_CHECK(k == 0);
	check_headers(c);
	if (!env) {
		FUZZ_CHECK(c->body == m->body && c->len == m->len);
	} else {
		k = envelope_decode(c->body, c->len, T0, &again, NULL, 0);
		FUZZ_CHECK(k == 0 || k == -ENOMEM);
		if (k == 0) {
			p = envelope_payload(env, &n);
			q = envelope_payload(again, &l);
			FUZZ_CHECK(n == l && memcmp(p, q, n) == 0);
		}
	}
	copy_done(c);
	return again;
}

static void prop(const struct dlq_message *m, const char *key, const char **s, size_t *len)
{
	const struct header *h = header_find(m->props, m->n_props, key);

	if (h && h->kind == HEADER_STRING) {
		*s = h->s;
		*len = h->s_len;
	}
}

/* The copies dlqctl (replay) and dlqd (the others) build from such a
 * message, with its headers as they came. */
static void check_copies(const struct dlq_message *m, const struct envelope *env,
			 const struct dlq_record *r)
{
	_cleanup_(envelope_freep) struct envelope *again = NULL;
	struct copy_source src = {
		.body = m->body, .len = m->len, .headers = m->headers, .n_headers = m->n_headers
	};
	struct failure f = { .error_code = "E",
			     .error_class = ERROR_CLASS_TRANSIENT,
			     .attempt = env ? MIN(env->attempt, (uint32_t)ENVELOPE_ATTEMPT_MAX) + 1
					    : 1,
			     .now_usec = T0,
			     .next_retry_at_usec = env ? T0 + USEC_PER_SEC : 0,
			     .lane_ms = 1000,
			     .detail = env ? NULL : "not an envelope",
			     .redeliveries = 2 };
	struct copy c;

	prop(m, "expiration", &src.expiration, &src.expiration_len);
	prop(m, "user_id", &src.user_id, &src.user_id_len);
	again = check_copy(copy_replay("jobs", &src, env, r->replay_count, T0, &c), m, env, &c);
	if (again) {
		/* The copy counts one more; a reader saturates at the maximum. */
		FUZZ_CHECK(again->attempt == 0);
		FUZZ_CHECK(again->replay_count ==
			   MIN(r->replay_count + 1, (uint64_t)ENVELOPE_REPLAY_COUNT_MAX));
	}
	envelope_free(check_copy(copy_failure("jobs", &src, env, &f, &c), m, env, &c));
	envelope_free(check_copy(copy_redelivery("jobs", &src, 3, &c), m, NULL, &c));
	if (env)
		envelope_free(check_copy(copy_defer("jobs", &src, env, 1000, T0, &c), m, env, &c));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	_cleanup_(envelope_freep) struct envelope *env = NULL;
	struct input in = { 0 };
	struct dlq_message m;
	struct dlq_record r;
	bool match;

	read_input(&in, (const char *)data, size);
	m = (struct dlq_message){ .body = in.body,
				  .len = in.len,
				  .headers = in.headers,
				  .n_headers = in.n_headers,
				  .props = in.props,
				  .n_props = in.n_props };
	if (dlqrecord_parse(&m, T0, &r, &env) < 0)
		goto out;
	check_record(&r);
	FUZZ_CHECK(r.envelope == (env != NULL));
	check_json(&m, &r, 0);
	check_json(&m, &r, DLQRECORD_JSON_FULL);
	check_json(&m, &r, DLQRECORD_JSON_FULL | DLQRECORD_JSON_RAW_BODY | DLQRECORD_JSON_PRETTY);
	match = dlqfilter_match(&in.filter, &r, T0);
	FUZZ_CHECK(match || !dlqfilter_empty(&in.filter));
	check_copies(&m, env, &r);
out:
	dlqfilter_done(&in.filter);
	return 0;
}
