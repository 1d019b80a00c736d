/*
 * copy: builds the retry, DLQ and replay copies (see include/common/copy.h).
 *
 * An envelope body is spliced: the members of the original are walked in
 * order; a member the copy does not touch is written as the producer's
 * exact bytes (name token and value token), a member it sets gets the new
 * value in its old place, a member it removes is skipped, and members the
 * original lacked are appended in a fixed order. Only values dlqd itself
 * writes are ever formatted here, so the payload, unknown members and the
 * earlier "errors" entries are byte-for-byte what arrived.
 *
 * What a copy sets in the body (docs/envelope.md): attempt, error_code,
 * error_class, first_seen_at (only when absent or null), next_retry_at
 * (UTC with milliseconds; removed from a DLQ copy), dead_lettered_at (DLQ),
 * last_error = {error_code, error_class, at, attempt, [cause_code,
 * cause_class], [kind, http_status | transport+detail | timeout |
 * exit_code | signal+signal_name | detail, handler_code, handler_class,
 * retry_after_ms, evidence, evidence_truncated, duration_ms]}, and errors =
 * the last ENVELOPE_ERRORS_KEPT - 1 earlier entries plus last_error. Text
 * taken from a handler result is made valid UTF-8 (bad bytes and NUL become
 * U+FFFD), so a hostile stderr cannot make the copy unparsable.
 */
#include "common/copy.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "common/jsonscan.h"

/* A member the copy writes: SET replaces or appends it, FILL only when the
 * original lacks it (or has null), DELETE removes it. */
enum edit_op { EDIT_SET, EDIT_FILL, EDIT_DELETE };

struct edit {
	const char *name;
	enum edit_op op;
	size_t off, len; /* the new value's text in the scratch buffer */
	bool done;
};

#define EDITS_MAX 10

struct edits {
	struct edit e[EDITS_MAX];
	size_t n;
	struct buf text; /* the new values, back to back */
};

/* Appends an edit whose value is what the caller writes next into text. */
static struct edit *edit_begin(struct edits *ed, const char *name, enum edit_op op)
{
	struct edit *e = &ed->e[ed->n++];

	*e = (struct edit){ .name = name, .op = op, .off = ed->text.len };
	return e;
}

static void edit_end(struct edits *ed, struct edit *e)
{
	e->len = ed->text.len - e->off;
}

static struct edit *edit_find(struct edits *ed, const struct jscan_member *m)
{
	for (size_t i = 0; i < ed->n; i++)
		if (strlen(ed->e[i].name) == m->name_len &&
		    memcmp(ed->e[i].name, m->name, m->name_len) == 0)
			return &ed->e[i];
	return NULL;
}

static int put_member(struct buf *b, bool *first, const char *name, const char *v, size_t n)
{
	int r = 0;

	if (!*first)
		r = buf_append(b, ",", 1);
	*first = false;
	if (r >= 0)
		r = buf_json_string(b, name);
	if (r >= 0)
		r = buf_append(b, ":", 1);
	return r < 0 ? r : buf_append(b, v, n);
}

/* The spliced body: see the file comment. */
static int splice(const struct envelope *env, struct edits *ed, struct buf *out)
{
	const struct jscan_doc *doc = env->doc;
	bool first = true;
	int r = buf_append(out, "{", 1);

	for (size_t i = 0; r >= 0 && i < doc->n_members; i++) {
		const struct jscan_member *m = &doc->members[i];
		struct edit *e = edit_find(ed, m);

		if (e)
			e->done = true;
		if (e && (e->op == EDIT_SET || (e->op == EDIT_FILL && m->kind == JSCAN_NULL))) {
			r = put_member(out, &first, e->name, ed->text.data + e->off, e->len);
		} else if (!e || e->op == EDIT_FILL) {
			/* The producer's name token and value, as written. */
			if (!first)
				r = buf_append(out, ",", 1);
			first = false;
			if (r >= 0)
				r = buf_append(out, env->body + m->key.off, m->key.len);
			if (r >= 0)
				r = buf_append(out, ":", 1);
			if (r >= 0)
				r = buf_append(out, env->body + m->value.off, m->value.len);
		}
	}
	for (size_t i = 0; r >= 0 && i < ed->n; i++)
		if (!ed->e[i].done && ed->e[i].op != EDIT_DELETE)
			r = put_member(out, &first, ed->e[i].name, ed->text.data + ed->e[i].off,
				       ed->e[i].len);
	return r < 0 ? r : buf_append(out, "}", 1);
}

/* ---- values dlqd writes ---- */

static const char *class_name(enum error_class c)
{
	const char *s = error_class_to_string(c);

	return s ? s : "UNKNOWN";
}

static int put_timestamp(struct buf *b, uint64_t usec, bool msec)
{
	char ts[TIMESTAMP_MAX];
	size_t n;

	format_timestamp(usec, ts);
	n = strlen(ts);
	/* Retries fire within ~100 ms of their time, so their time says ms. */
	if (msec && n > 0 && ts[n - 1] == 'Z')
		return buf_printf(b, "\"%.*s.%03uZ\"", (int)(n - 1), ts,
				  (unsigned)(usec / USEC_PER_MSEC % 1000));
	return buf_printf(b, "\"%s\"", ts);
}

/* ,"key": then a value written by the caller. */
static int key(struct buf *b, const char *k)
{
	return buf_printf(b, ",\"%s\":", k);
}

static int put_field(struct buf *b, const char *k, const char *s, size_t size)
{
	int r = key(b, k);

	return r < 0 ? r : buf_json_stringn(b, s, strnlen(s, size));
}

static int put_int(struct buf *b, const char *k, int64_t v)
{
	return buf_printf(b, ",\"%s\":%" PRId64, k, v);
}

static void signal_name(int sig, char name[32])
{
	const char *abbrev = sigabbrev_np(sig);

	if (abbrev)
		snprintf(name, 32, "SIG%s", abbrev);
	else if (sig >= SIGRTMIN && sig <= SIGRTMAX)
		snprintf(name, 32, "SIGRTMIN+%d", sig - SIGRTMIN);
	else
		snprintf(name, 32, "SIG%d", sig);
}

static int put_evidence(struct buf *b, const struct result *r)
{
	size_t n = MIN(r->evidence_len, sizeof(r->evidence));
	char sig[32];
	int k = buf_printf(b, ",\"kind\":\"%s\"", result_kind_to_string(r->kind));

	switch (r->kind) {
	case RESULT_HTTP:
		if (k >= 0)
			k = put_int(b, "http_status", r->http_status);
		break;
	case RESULT_TRANSPORT:
		if (k >= 0)
			k = put_field(b, "transport", r->transport, sizeof(r->transport));
		if (k >= 0)
			k = put_field(b, "detail", r->detail, sizeof(r->detail));
		break;
	case RESULT_TIMEOUT:
		if (k >= 0)
			k = buf_printf(b, ",\"timeout\":true");
		break;
	case RESULT_EXIT:
		if (k >= 0)
			k = put_int(b, "exit_code", r->exit_code);
		break;
	case RESULT_SIGNAL:
		signal_name(r->signal, sig);
		if (k >= 0)
			k = put_int(b, "signal", r->signal);
		if (k >= 0)
			k = put_field(b, "signal_name", sig, sizeof(sig));
		break;
	case RESULT_INTERNAL:
		if (k >= 0)
			k = put_field(b, "detail", r->detail, sizeof(r->detail));
		break;
	case RESULT_SUCCESS:
		break;
	}
	if (k >= 0 && r->handler_code[0])
		k = put_field(b, "handler_code", r->handler_code, sizeof(r->handler_code));
	if (k >= 0 && r->handler_class[0])
		k = put_field(b, "handler_class", r->handler_class, sizeof(r->handler_class));
	if (k >= 0 && r->retry_after_usec)
		k = put_int(b, "retry_after_ms", (int64_t)(r->retry_after_usec / USEC_PER_MSEC));
	if (k >= 0 && (n > 0 || r->evidence_truncated)) {
		k = key(b, "evidence");
		if (k >= 0)
			k = buf_json_stringn(b, r->evidence, n);
		if (k >= 0)
			k = buf_printf(b, ",\"evidence_truncated\":%s",
				       r->evidence_truncated ? "true" : "false");
	}
	if (k >= 0)
		k = put_int(b, "duration_ms", (int64_t)(r->duration_usec / USEC_PER_MSEC));
	return k;
}

static int put_last_error(struct buf *b, const struct failure *f)
{
	int r = buf_append(b, "{\"error_code\":", 14);

	if (r >= 0)
		r = buf_json_string(b, f->error_code ? f->error_code : "");
	if (r >= 0)
		r = buf_printf(b, ",\"error_class\":\"%s\",\"at\":", class_name(f->error_class));
	if (r >= 0)
		r = put_timestamp(b, f->now_usec, false);
	if (r >= 0)
		r = put_int(b, "attempt", f->attempt);
	if (r >= 0 && f->cause_code) {
		r = key(b, "cause_code");
		if (r >= 0)
			r = buf_json_string(b, f->cause_code);
		if (r >= 0)
			r = buf_printf(b, ",\"cause_class\":\"%s\"", class_name(f->cause_class));
	}
	if (r >= 0 && f->result)
		r = put_evidence(b, f->result);
	return r < 0 ? r : buf_append(b, "}", 1);
}

/* The last ENVELOPE_ERRORS_KEPT - 1 earlier entries, as written, then last. */
static int put_errors(struct buf *b, const struct envelope *env, const char *last, size_t n)
{
	const struct jscan_member *m = jscan_member(env->doc, "errors");
	_cleanup_free_ struct jscan_span *el = NULL;
	long count = 0, from;
	int r;

	if (m && m->kind == JSCAN_ARRAY && (count = jscan_elements(env->body, m->value, &el)) < 0)
		return -ENOMEM;
	from = count >= ENVELOPE_ERRORS_KEPT ? count - (ENVELOPE_ERRORS_KEPT - 1) : 0;
	r = buf_append(b, "[", 1);
	for (long i = from; r >= 0 && i < count; i++) {
		r = buf_append(b, env->body + el[i].off, el[i].len);
		if (r >= 0)
			r = buf_append(b, ",", 1);
	}
	if (r >= 0)
		r = buf_append(b, last, n);
	return r < 0 ? r : buf_append(b, "]", 1);
}

/* ---- headers ---- */

static bool key_is(const struct header *h, const char *k)
{
	return h->key_len == strlen(k) && memcmp(h->key, k, h->key_len) == 0;
}

const struct header *header_find(const struct header *h, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (key_is(&h[i], key))
			return &h[i];
	return NULL;
}

/* An integer header of src, 0 when absent, not an integer or negative. */
static uint64_t header_count(const struct copy_source *src, const char *key)
{
	const struct header *h = header_find(src->headers, src->n_headers, key);

	return h && h->kind == HEADER_INT && h->i > 0 ? (uint64_t)h->i : 0;
}

static void set_str(struct header *set, size_t *n, const char *key, const char *s, size_t len)
{
	set[(*n)++] = (struct header){
		.key = key, .key_len = strlen(key), .kind = HEADER_STRING, .s = s, .s_len = len
	};
}

static void set_int(struct header *set, size_t *n, const char *key, int64_t v)
{
	set[(*n)++] =
		(struct header){ .key = key, .key_len = strlen(key), .kind = HEADER_INT, .i = v };
}

/*
 * The complete header list: the original's in their order, minus those the
 * copy sets and those named in drop, then the set ones.
 */
static int headers(const struct copy_source *src, const struct header *set, size_t n_set,
		   const char *const *drop, struct copy *out)
{
	size_t n = 0;

	out->headers = calloc(src->n_headers + n_set, sizeof(*out->headers));
	if (!out->headers && src->n_headers + n_set > 0)
		return -ENOMEM;
	for (size_t i = 0; i < src->n_headers; i++) {
		const struct header *h = &src->headers[i];
		bool skip = false;

		for (size_t j = 0; j < n_set && !skip; j++)
			skip = h->key_len == set[j].key_len &&
			       memcmp(h->key, set[j].key, h->key_len) == 0;
		for (size_t j = 0; drop[j] && !skip; j++)
			skip = key_is(h, drop[j]);
		if (!skip)
			out->headers[n++] = *h;
	}
	memcpy(out->headers + n, set, n_set * sizeof(*set));
	out->n_headers = n + n_set;
	return 0;
}

/* ---- the copies ---- */

/* Splices the body from ed (env NULL: a value failed to format) into out
 * and releases ed. */
static int finish(const struct envelope *env, struct edits *ed, struct copy *out)
{
	struct buf body;
	int r = -ENOMEM;

	buf_init(&body, SIZE_MAX / 2);
	if (env)
		r = splice(env, ed, &body);
	buf_done(&ed->text);
	if (r < 0) {
		buf_done(&body);
		return -ENOMEM;
	}
	out->owned_body = buf_steal(&body, &out->len);
	out->body = out->owned_body;
	return out->owned_body ? 0 : -ENOMEM;
}

static int failure_body(const struct envelope *env, const struct failure *f, struct copy *out)
{
	struct edits ed = { .n = 0 };
	struct edit *e, *last;
	bool dlq = f->next_retry_at_usec == 0;
	int r;

	buf_init(&ed.text, SIZE_MAX / 2);
	e = edit_begin(&ed, "attempt", EDIT_SET);
	r = buf_printf(&ed.text, "%" PRIu32, f->attempt);
	edit_end(&ed, e);
	e = edit_begin(&ed, "first_seen_at", EDIT_FILL);
	if (r >= 0)
		r = put_timestamp(&ed.text, env->first_seen_at_usec, false);
	edit_end(&ed, e);
	e = edit_begin(&ed, "next_retry_at", dlq ? EDIT_DELETE : EDIT_SET);
	if (r >= 0 && !dlq)
		r = put_timestamp(&ed.text, f->next_retry_at_usec, true);
	edit_end(&ed, e);
	e = edit_begin(&ed, "error_code", EDIT_SET);
	if (r >= 0)
		r = buf_json_string(&ed.text, f->error_code ? f->error_code : "");
	edit_end(&ed, e);
	e = edit_begin(&ed, "error_class", EDIT_SET);
	if (r >= 0)
		r = buf_printf(&ed.text, "\"%s\"", class_name(f->error_class));
	edit_end(&ed, e);
	if (dlq) {
		e = edit_begin(&ed, "dead_lettered_at", EDIT_SET);
		if (r >= 0)
			r = put_timestamp(&ed.text, f->now_usec, false);
		edit_end(&ed, e);
	}
	last = edit_begin(&ed, "last_error", EDIT_SET);
	if (r >= 0)
		r = put_last_error(&ed.text, f);
	edit_end(&ed, last);
	e = edit_begin(&ed, "errors", EDIT_SET);
	/* put_errors() reads last_error from the same buffer it appends to. */
	if (r >= 0) {
		_cleanup_free_ char *le = malloc(last->len ? last->len : 1);
		if (!le)
			r = -ENOMEM;
		else {
			memcpy(le, ed.text.data + last->off, last->len);
			r = put_errors(&ed.text, env, le, last->len);
		}
	}
	edit_end(&ed, e);
	return r < 0 ? finish(NULL, &ed, out) : finish(env, &ed, out);
}

/* The properties a copy cannot keep travel as headers instead. */
static void moved_props(const struct copy_source *src, struct header *set, size_t *n,
			const char **drop, size_t *nd, struct copy *out)
{
	if (src->expiration) {
		set_str(set, n, HDR_ORIGINAL_EXPIRATION, src->expiration, src->expiration_len);
		out->drop_props |= COPY_DROP_EXPIRATION;
		drop[(*nd)++] = HDR_ORIGINAL_EXPIRATION;
	}
	if (src->user_id) {
		set_str(set, n, HDR_ORIGINAL_USER_ID, src->user_id, src->user_id_len);
		out->drop_props |= COPY_DROP_USER_ID;
		drop[(*nd)++] = HDR_ORIGINAL_USER_ID;
	}
}

int copy_failure(const char *queue, const struct copy_source *src, const struct envelope *env,
		 const struct failure *f, struct copy *out)
{
	/* A stale x-dlqd-error-detail (a body that was too large, replayed
	 * since) would contradict this copy's code: only a reject sets one. */
	/* The redelivery count restarts once dlqd settled the message: only a
	 * POISON_MESSAGE copy carries one, as evidence. */
	const char *drop[6] = {
		HDR_PUBLISH_SEQ, HDR_ERROR_DETAIL, HDR_REDELIVERIES, NULL, NULL, NULL
	};
	struct header set[COPY_HEADERS_SET];
	bool dlq = f->next_retry_at_usec == 0;
	const char *cls = class_name(f->error_class), *code = f->error_code ? f->error_code : "";
	struct topology t;
	size_t n = 0, nd = 3;
	int r;

	*out = (struct copy){ .body = src->body, .len = src->len, .default_content_type = true };
	topology_init(&t, queue);
	if (dlq) {
		strscpy(out->exchange, t.dlx, sizeof(out->exchange));
		snprintf(out->routing_key, sizeof(out->routing_key), "%.32s.%.63s", cls, code);
	} else {
		strscpy(out->exchange, t.retry_x, sizeof(out->exchange));
		topology_lane(queue, f->lane_ms, out->routing_key);
	}

	if (env) {
		set_str(set, &n, HDR_MESSAGE_ID, env->message_id, strlen(env->message_id));
		if (env->trace_id[0])
			set_str(set, &n, HDR_TRACE_ID, env->trace_id, strlen(env->trace_id));
	}
	set_int(set, &n, HDR_ATTEMPT, f->attempt);
	set_str(set, &n, HDR_ERROR_CODE, code, strlen(code));
	set_str(set, &n, HDR_ERROR_CLASS, cls, strlen(cls));
	if (dlq) {
		format_timestamp(f->now_usec, out->stamp);
		set_str(set, &n, HDR_DEAD_LETTERED_AT, out->stamp, strlen(out->stamp));
	}
	if (f->detail && f->detail[0])
		set_str(set, &n, HDR_ERROR_DETAIL, f->detail, strlen(f->detail));
	if (f->redeliveries)
		set_int(set, &n, HDR_REDELIVERIES,
			(int64_t)MIN(f->redeliveries, (uint64_t)INT64_MAX));
	moved_props(src, set, &n, drop, &nd, out);
	if ((r = headers(src, set, n, drop, out)) < 0 ||
	    (env && (r = failure_body(env, f, out)) < 0)) {
		copy_done(out);
		return r;
	}
	return 0;
}

static int defer_body(const struct envelope *env, uint64_t next_retry_at_usec, struct copy *out)
{
	struct edits ed = { .n = 0 };
	struct edit *e;
	int r;

	buf_init(&ed.text, 256);
	e = edit_begin(&ed, "next_retry_at", EDIT_SET);
	r = put_timestamp(&ed.text, next_retry_at_usec, true);
	edit_end(&ed, e);
	return r < 0 ? finish(NULL, &ed, out) : finish(env, &ed, out);
}

int copy_defer(const char *queue, const struct copy_source *src, const struct envelope *env,
	       uint64_t lane_ms, uint64_t next_retry_at_usec, struct copy *out)
{
	const char *drop[5] = { HDR_PUBLISH_SEQ, HDR_ERROR_DETAIL, NULL, NULL, NULL };
	struct header set[COPY_HEADERS_SET];
	struct topology t;
	size_t n = 0, nd = 2;
	int r;

	*out = (struct copy){ .body = src->body, .len = src->len, .default_content_type = true };
	topology_init(&t, queue);
	strscpy(out->exchange, t.retry_x, sizeof(out->exchange));
	topology_lane(queue, lane_ms, out->routing_key);
	set_str(set, &n, HDR_MESSAGE_ID, env->message_id, strlen(env->message_id));
	if (env->trace_id[0])
		set_str(set, &n, HDR_TRACE_ID, env->trace_id, strlen(env->trace_id));
	set_int(set, &n, HDR_ATTEMPT, env->attempt);
	set_int(set, &n, HDR_BUDGET_DEFERRED,
		(int64_t)MIN(header_count(src, HDR_BUDGET_DEFERRED), (uint64_t)INT32_MAX) + 1);
	moved_props(src, set, &n, drop, &nd, out);
	if ((r = headers(src, set, n, drop, out)) < 0 ||
	    (r = defer_body(env, next_retry_at_usec, out)) < 0) {
		copy_done(out);
		return r;
	}
	return 0;
}

static int replay_body(const struct envelope *env, uint64_t count, const char *stamp,
		       struct copy *out)
{
	struct edits ed = { .n = 0 };
	struct edit *e;
	int r;

	buf_init(&ed.text, 256);
	e = edit_begin(&ed, "attempt", EDIT_SET);
	r = buf_append(&ed.text, "0", 1);
	edit_end(&ed, e);
	e = edit_begin(&ed, "replay_count", EDIT_SET);
	if (r >= 0)
		r = buf_printf(&ed.text, "%" PRIu64, count);
	edit_end(&ed, e);
	e = edit_begin(&ed, "replayed_at", EDIT_SET);
	if (r >= 0)
		r = buf_printf(&ed.text, "\"%s\"", stamp);
	edit_end(&ed, e);
	(void)edit_begin(&ed, "next_retry_at", EDIT_DELETE);
	return r < 0 ? finish(NULL, &ed, out) : finish(env, &ed, out);
}

int copy_replay(const char *queue, const struct copy_source *src, const struct envelope *env,
		uint64_t replay_count, uint64_t now_usec, struct copy *out)
{
	/* Stale once the message leaves the DLQ; dlqd sets them anew. */
	static const char *const drop[] = { HDR_DEAD_LETTERED_AT, HDR_PUBLISH_SEQ, HDR_ERROR_DETAIL,
					    HDR_REDELIVERIES, NULL };
	uint64_t count = MIN(replay_count, (uint64_t)ENVELOPE_REPLAY_COUNT_MAX) + 1;
	struct header set[3];
	size_t n = 0;
	int r;

	*out = (struct copy){ .body = src->body, .len = src->len };
	snprintf(out->routing_key, sizeof(out->routing_key), "%s", queue);
	format_timestamp(now_usec, out->stamp);
	set_int(set, &n, HDR_ATTEMPT, 0);
	set_int(set, &n, HDR_REPLAY_COUNT, (int64_t)count);
	set_str(set, &n, HDR_REPLAYED_AT, out->stamp, strlen(out->stamp));
	if ((r = headers(src, set, n, drop, out)) < 0 ||
	    (env && (r = replay_body(env, count, out->stamp, out)) < 0)) {
		copy_done(out);
		return r;
	}
	return 0;
}

int copy_redelivery(const char *queue, const struct copy_source *src, uint64_t redeliveries,
		    struct copy *out)
{
	/* A header the copy sets replaces the original's of that name. */
	static const char *const drop[] = { HDR_PUBLISH_SEQ, NULL };
	struct header set[2];
	size_t n = 0;
	int r;

	*out = (struct copy){ .body = src->body, .len = src->len };
	snprintf(out->routing_key, sizeof(out->routing_key), "%s", queue);
	set_int(set, &n, HDR_REDELIVERIES, (int64_t)MIN(redeliveries, (uint64_t)INT64_MAX));
	if (src->user_id) {
		set_str(set, &n, HDR_ORIGINAL_USER_ID, src->user_id, src->user_id_len);
		out->drop_props |= COPY_DROP_USER_ID;
	}
	if ((r = headers(src, set, n, drop, out)) < 0) {
		copy_done(out);
		return r;
	}
	return 0;
}

void copy_done(struct copy *c)
{
	free(c->headers);
	free(c->owned_body);
	*c = (struct copy){ 0 };
}
