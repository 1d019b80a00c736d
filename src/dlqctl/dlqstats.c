/*
 * dlqstats: counters only, no per-message state, so a stats run over a
 * million messages costs the same memory as one over ten.
 */
#include "dlqctl/dlqstats.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/taxonomy.h"
#include "dlqctl/dlqtext.h"

int dlqstats_init(struct dlqstats *s)
{
	*s = (struct dlqstats){ 0 };
	s->codes = calloc(DLQSTATS_CODES_MAX + 1, sizeof(*s->codes));
	if (!s->codes)
		return -ENOMEM;
	for (int c = 0; c < _ERROR_CLASS_MAX; c++)
		strscpy(s->classes[c].name, error_class_to_string(c), sizeof(s->classes[c].name));
	strscpy(s->classes[3].name, DLQSTATS_NONE, sizeof(s->classes[3].name));
	strscpy(s->classes[4].name, DLQSTATS_OTHER, sizeof(s->classes[4].name));
	return 0;
}

void dlqstats_done(struct dlqstats *s)
{
	free(s->codes);
	s->codes = NULL;
}

static void count_code(struct dlqstats *s, const char *code)
{
	if (!code[0])
		code = DLQSTATS_NONE;
	/* Linear: the codes of a taxonomy are a few dozen; the cap bounds the worst case. */
	for (size_t i = 0; i < s->n_codes; i++)
		if (strcmp(s->codes[i].name, code) == 0) {
			s->codes[i].n++;
			return;
		}
	if (s->n_codes < DLQSTATS_CODES_MAX) {
		strscpy(s->codes[s->n_codes].name, code, sizeof(s->codes[0].name));
		s->codes[s->n_codes++].n = 1;
		return;
	}
	strscpy(s->codes[DLQSTATS_CODES_MAX].name, DLQSTATS_OTHER, sizeof(s->codes[0].name));
	s->codes[DLQSTATS_CODES_MAX].n++;
}

void dlqstats_add(struct dlqstats *s, const struct dlq_record *r)
{
	enum error_class c =
		r->error_class[0] ? error_class_from_string(r->error_class) : _ERROR_CLASS_INVALID;

	s->matched++;
	count_code(s, r->error_code);
	if (!r->error_class[0])
		s->classes[3].n++;
	else if (c == _ERROR_CLASS_INVALID)
		s->classes[4].n++;
	else
		s->classes[c].n++;
	if (strcmp(r->error_code, ERROR_CODE_RETRY_EXHAUSTED) == 0)
		s->retry_exhausted++;
	else if (c == ERROR_CLASS_NON_RETRYABLE)
		s->non_retryable++;
	if (!r->envelope)
		s->invalid++;
	if (!r->dead_lettered_at_usec) {
		s->unknown_age++;
		return;
	}
	if (!s->oldest_usec || r->dead_lettered_at_usec < s->oldest_usec)
		s->oldest_usec = r->dead_lettered_at_usec;
	if (r->dead_lettered_at_usec > s->newest_usec)
		s->newest_usec = r->dead_lettered_at_usec;
}

char *dlqstats_format_age(uint64_t usec, char *buf, size_t n)
{
	uint64_t s = usec / USEC_PER_SEC;

	if (s >= 86400)
		snprintf(buf, n, "%" PRIu64 "d%" PRIu64 "h", s / 86400, s % 86400 / 3600);
	else if (s >= 3600)
		snprintf(buf, n, "%" PRIu64 "h%" PRIu64 "m", s / 3600, s % 3600 / 60);
	else if (s >= 60)
		snprintf(buf, n, "%" PRIu64 "m%" PRIu64 "s", s / 60, s % 60);
	else
		snprintf(buf, n, "%" PRIu64 "s", s);
	return buf;
}

static int by_count(const void *a, const void *b)
{
	const struct dlqstats_count *x = a, *y = b;

	if (x->n != y->n)
		return x->n > y->n ? -1 : 1;
	return strcmp(x->name, y->name);
}

static double share(uint64_t n, uint64_t total)
{
	return total ? 100.0 * (double)n / (double)total : 0.0;
}

static uint64_t age_of(uint64_t at, uint64_t now)
{
	return now > at ? now - at : 0;
}

static void json_counts(struct buf *out, const char *key, const struct dlqstats_count *c, size_t n)
{
	bool first = true;

	buf_printf(out, ",\"%s\":{", key);
	for (size_t i = 0; i < n; i++) {
		if (!c[i].n)
			continue;
		if (!first)
			buf_append(out, ",", 1);
		first = false;
		buf_json_string(out, c[i].name);
		buf_printf(out, ":%" PRIu64, c[i].n);
	}
	buf_append(out, "}", 1);
}

static void json_time(struct buf *out, const char *key, uint64_t at, uint64_t now)
{
	char ts[TIMESTAMP_MAX];

	if (!at) {
		buf_printf(out, ",\"%s\":null,\"%s_age_seconds\":null", key, key);
		return;
	}
	buf_printf(out, ",\"%s\":\"%s\",\"%s_age_seconds\":%" PRIu64, key, format_timestamp(at, ts),
		   key, age_of(at, now) / USEC_PER_SEC);
}

static void text_counts(struct buf *out, const char *title, const struct dlqstats_count *c,
			size_t n, uint64_t total)
{
	char name[DLQTEXT_TERM_SIZE(DLQRECORD_STR_MAX)];

	buf_printf(out, "\n%-32s %10s %7s\n", title, "COUNT", "SHARE");
	for (size_t i = 0; i < n; i++)
		if (c[i].n) /* a code is the message's text: escaped */
			buf_printf(out, "%-32s %10" PRIu64 " %6.1f%%\n",
				   dlqtext_term(c[i].name, name, sizeof(name)), c[i].n,
				   share(c[i].n, total));
}

int dlqstats_render(struct dlqstats *s, const char *queue, uint64_t now_usec, bool json,
		    struct buf *out)
{
	size_t n_codes = s->n_codes + (s->codes[DLQSTATS_CODES_MAX].n ? 1 : 0);
	uint64_t other = s->matched - s->retry_exhausted - s->non_retryable;
	char a[32], b[32], ts[TIMESTAMP_MAX], ts2[TIMESTAMP_MAX];

	if (s->codes[DLQSTATS_CODES_MAX].n)
		s->codes[s->n_codes] = s->codes[DLQSTATS_CODES_MAX];
	qsort(s->codes, n_codes, sizeof(*s->codes), by_count);
	if (json) {
		buf_append(out, "{\"queue\":", 9);
		buf_json_string(out, queue);
		buf_printf(out,
			   ",\"depth\":%" PRIu64 ",\"scanned\":%" PRIu64 ",\"matched\":%" PRIu64
			   ",\"retry_exhausted\":%" PRIu64 ",\"non_retryable\":%" PRIu64
			   ",\"other\":%" PRIu64 ",\"invalid_envelope\":%" PRIu64
			   ",\"retry_exhausted_share\":%.4f,\"non_retryable_share\":%.4f"
			   ",\"unknown_age\":%" PRIu64,
			   s->depth, s->scanned, s->matched, s->retry_exhausted, s->non_retryable,
			   other, s->invalid,
			   s->matched ? share(s->retry_exhausted, s->matched) / 100 : 0,
			   s->matched ? share(s->non_retryable, s->matched) / 100 : 0,
			   s->unknown_age);
		json_time(out, "oldest", s->oldest_usec, now_usec);
		json_time(out, "newest", s->newest_usec, now_usec);
		json_counts(out, "by_error_code", s->codes, n_codes);
		json_counts(out, "by_error_class", s->classes, ARRAY_SIZE(s->classes));
		buf_append(out, "}\n", 2);
		return out->data ? dlqtext_json(out) : -ENOMEM;
	}
	buf_printf(out, "queue %s: %" PRIu64 " messages", queue, s->depth);
	if (s->matched != s->scanned)
		buf_printf(out, ", %" PRIu64 " of %" PRIu64 " scanned match the filters",
			   s->matched, s->scanned);
	else if (s->scanned != s->depth)
		buf_printf(out, " (%" PRIu64 " scanned)", s->scanned);
	buf_append(out, "\n", 1);
	if (s->oldest_usec)
		buf_printf(out, "oldest   %s (%s ago)\nnewest   %s (%s ago)\n",
			   format_timestamp(s->oldest_usec, ts),
			   dlqstats_format_age(age_of(s->oldest_usec, now_usec), a, sizeof(a)),
			   format_timestamp(s->newest_usec, ts2),
			   dlqstats_format_age(age_of(s->newest_usec, now_usec), b, sizeof(b)));
	if (s->unknown_age)
		buf_printf(out, "unknown dead-letter time: %" PRIu64 "\n", s->unknown_age);
	buf_printf(out,
		   "retry-exhausted %" PRIu64 " (%.1f%%), non-retryable %" PRIu64
		   " (%.1f%%), other %" PRIu64 " (%.1f%%); invalid envelopes %" PRIu64 "\n",
		   s->retry_exhausted, share(s->retry_exhausted, s->matched), s->non_retryable,
		   share(s->non_retryable, s->matched), other, share(other, s->matched),
		   s->invalid);
	text_counts(out, "ERROR_CODE", s->codes, n_codes, s->matched);
	text_counts(out, "ERROR_CLASS", s->classes, ARRAY_SIZE(s->classes), s->matched);
	return out->data ? 0 : -ENOMEM;
}
