/*
 * test_metrics: the registry and its text exposition: every metric with HELP
 * and TYPE, counters and labels, the histogram (cumulative buckets, exact
 * _sum, _count), label escaping, the cardinality bound and rendering into a
 * bounded buffer. Every render is also run through a small format checker.
 * The extensions (escalations, queue info) and the JSON for the status page
 * are checked the same way, the JSON with jansson.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "dlqd/metrics.h"
#include "common/util.h"
#include "common/version.h"

static const struct {
	const char *name, *type;
} all_metrics[] = {
	{ "dlqd_messages_consumed_total", "counter" },
	{ "dlqd_messages_succeeded_total", "counter" },
	{ "dlqd_messages_retried_total", "counter" },
	{ "dlqd_messages_dead_lettered_total", "counter" },
	{ "dlqd_handler_duration_seconds", "histogram" },
	{ "dlqd_messages_in_flight", "gauge" },
	{ "dlqd_body_bytes_held", "gauge" },
	{ "dlqd_lane_heads_moved_total", "counter" },
	{ "dlqd_dlq_messages", "gauge" },
	{ "dlqd_dlq_oldest_message_age_seconds", "gauge" },
	{ "dlqd_dlq_publish_failures_total", "counter" },
	{ "dlqd_broker_connected", "gauge" },
	{ "dlqd_broker_reconnects_total", "counter" },
	{ "dlqd_poison_messages_total", "counter" },
	{ "dlqd_build_info", "gauge" },
	{ "dlqd_escalations_total", "counter" },
	{ "dlqd_queue_info", "gauge" },
	{ "dlqd_broker_node_info", "gauge" },
	{ "dlqd_breaker_state", "gauge" },
	{ "dlqd_breaker_opened_total", "counter" },
	{ "dlqd_retry_budget_deferred_total", "counter" },
};

static bool has_prefix(const char *s, const char *p)
{
	return strncmp(s, p, strlen(p)) == 0;
}

/*
 * Checks the text format line by line: "# HELP name text", "# TYPE name type"
 * right after it, then samples of that family only, `name{l="v",...} value`,
 * with label values properly escaped; and every family exactly once.
 */
static void check_format(const char *text)
{
	char family[4096] = "", type[4096] = "";
	const char *p = text;
	size_t families = 0;

	assert_true(*text);
	assert_int_equal(text[strlen(text) - 1], '\n');
	while (*p) {
		const char *nl = strchr(p, '\n');
		char line[4096];
		size_t len;

		assert_non_null(nl);
		len = (size_t)(nl - p);
		assert_true(len > 0 && len < sizeof(line));
		memcpy(line, p, len);
		line[len] = '\0';
		p = nl + 1;

		if (has_prefix(line, "# HELP ")) {
			char *sp = strchr(line + 7, ' ');
			assert_non_null(sp);
			*sp = '\0';
			snprintf(family, sizeof(family), "%s", line + 7);
			/* Each family once: not seen before in the text before this line. */
			families++;
			continue;
		}
		if (has_prefix(line, "# TYPE ")) {
			char *sp = strchr(line + 7, ' ');
			assert_non_null(sp);
			*sp = '\0';
			assert_string_equal(line + 7, family);
			snprintf(type, sizeof(type), "%s", sp + 1);
			assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
				    strcmp(type, "histogram") == 0);
			continue;
		}
		assert_int_not_equal(line[0], '#');

		/* A sample: name of the family (plus a histogram suffix). */
		size_t fl = strlen(family);
		const char *q = line + fl;
		assert_true(fl > 0 && strncmp(line, family, fl) == 0);
		if (strcmp(type, "histogram") == 0) {
			if (has_prefix(q, "_bucket"))
				q += 7;
			else if (has_prefix(q, "_sum"))
				q += 4;
			else if (has_prefix(q, "_count"))
				q += 6;
			else
				fail_msg("bad histogram sample: %s", line);
		}
		if (*q == '{') {
			q++;
			for (;;) {
				while ((*q >= 'a' && *q <= 'z') || *q == '_')
					q++;
				assert_int_equal(*q++, '=');
				assert_int_equal(*q++, '"');
				while (*q != '"') {
					assert_true(*q && *q != '\n');
					if (*q == '\\') {
						q++;
						assert_true(*q == '\\' || *q == '"' || *q == 'n');
					}
					q++;
				}
				q++;
				if (*q == ',') {
					q++;
					continue;
				}
				assert_int_equal(*q++, '}');
				break;
			}
		}
		assert_int_equal(*q++, ' ');
		char *end;
		if (strcmp(q, "+Inf") != 0 && strcmp(q, "NaN") != 0) {
			strtod(q, &end);
			assert_true(end != q && *end == '\0');
		}
	}
	assert_int_equal(families, ARRAY_SIZE(all_metrics));
}

static char *render(const struct metrics *m)
{
	struct buf b;

	buf_init(&b, 1 << 20);
	assert_int_equal(metrics_render(m, &b), 0);
	check_format(b.data);
	return buf_steal(&b, NULL);
}

static void assert_line(const char *text, const char *line)
{
	char want[512];

	snprintf(want, sizeof(want), "\n%s\n", line);
	if (!strstr(text, want))
		fail_msg("missing line '%s' in:\n%s", line, text);
}

static void assert_no_line_prefix(const char *text, const char *prefix)
{
	char want[512];

	snprintf(want, sizeof(want), "\n%s", prefix);
	if (strstr(text, want))
		fail_msg("unexpected '%s' in:\n%s", prefix, text);
}

static size_t count_lines_with_prefix(const char *text, const char *prefix)
{
	size_t n = 0;

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (has_prefix(p, prefix))
			n++;
	return n;
}

static void test_every_metric(void **state)
{
	_cleanup_(metrics_freep) struct metrics *m = NULL;
	_cleanup_free_ char *t = NULL;
	char line[256];

	assert_int_equal(metrics_new(&m), 0);
	t = render(m);
	for (size_t i = 0; i < ARRAY_SIZE(all_metrics); i++) {
		snprintf(line, sizeof(line), "# HELP %s ", all_metrics[i].name);
		assert_non_null(strstr(t, line));
		snprintf(line, sizeof(line), "# TYPE %s %s", all_metrics[i].name,
			 all_metrics[i].type);
		assert_line(t, line);
	}
	/* A fresh registry: zeros, no labelled series, the DLQ still unknown. */
	assert_true(has_prefix(t, "# HELP dlqd_messages_consumed_total "));
	assert_line(t, "dlqd_messages_consumed_total 0");
	assert_line(t, "dlqd_messages_succeeded_total 0");
	assert_no_line_prefix(t, "dlqd_messages_retried_total{");
	assert_no_line_prefix(t, "dlqd_messages_dead_lettered_total{");
	assert_line(t, "dlqd_handler_duration_seconds_bucket{le=\"+Inf\"} 0");
	assert_line(t, "dlqd_handler_duration_seconds_sum 0.000000");
	assert_line(t, "dlqd_handler_duration_seconds_count 0");
	assert_line(t, "dlqd_messages_in_flight 0");
	assert_line(t, "dlqd_body_bytes_held 0");
	assert_line(t, "dlqd_lane_heads_moved_total 0");
	assert_no_line_prefix(t, "dlqd_dlq_messages ");
	assert_no_line_prefix(t, "dlqd_dlq_oldest_message_age_seconds ");
	assert_line(t, "dlqd_dlq_publish_failures_total 0");
	assert_line(t, "dlqd_broker_connected 0");
	assert_line(t, "dlqd_broker_reconnects_total 0");
	assert_line(t, "dlqd_poison_messages_total 0");
	snprintf(line, sizeof(line), "dlqd_build_info{version=\"%s\"} 1", DLQD_VERSION);
	assert_line(t, line);
	assert_no_line_prefix(t, "dlqd_escalations_total{");
	assert_line(t, "dlqd_queue_info{queue=\"\"} 1");
	assert_no_line_prefix(t, "dlqd_broker_node_info{"); /* not connected yet */
	assert_int_equal(t[strlen(t) - 1], '\n');

	assert_null(metrics_free(NULL));
	m = metrics_free(m);
	assert_null(m);
}

static void test_counters_and_labels(void **state)
{
	_cleanup_(metrics_freep) struct metrics *m = NULL;
	_cleanup_free_ char *t = NULL, *t2 = NULL, *t3 = NULL;

	assert_int_equal(metrics_new(&m), 0);
	for (int i = 0; i < 3; i++)
		metrics_consumed(m);
	metrics_succeeded(m);
	metrics_succeeded(m);
	metrics_retried(m, "UPSTREAM_TIMEOUT", "TRANSIENT");
	metrics_retried(m, "UPSTREAM_THROTTLED", "TRANSIENT");
	metrics_retried(m, "UPSTREAM_TIMEOUT", "TRANSIENT");
	/* Same code, other class: its own series. */
	metrics_retried(m, "UPSTREAM_TIMEOUT", "PERSISTENT");
	metrics_dead_lettered(m, "INVALID_PAYLOAD", "NON_RETRYABLE");
	metrics_dlq_publish_failed(m);
	metrics_reconnected(m);
	metrics_reconnected(m);
	metrics_poison(m);
	metrics_set_in_flight(m, 17);
	metrics_set_body_bytes(m, 123456789);
	metrics_set_lane_heads_moved(m, 6);
	metrics_set_broker_connected(m, true);
	metrics_set_broker_node(m, "[::1]:5673");
	metrics_set_dlq(m, 5, 12.5);
	t = render(m);

	assert_line(t, "dlqd_messages_consumed_total 3");
	assert_line(t, "dlqd_messages_succeeded_total 2");
	assert_line(t, "dlqd_messages_retried_total{error_code=\"UPSTREAM_TIMEOUT\",error_class="
		       "\"TRANSIENT\"} 2");
	assert_line(t, "dlqd_messages_retried_total{error_code=\"UPSTREAM_THROTTLED\",error_class="
		       "\"TRANSIENT\"} 1");
	assert_line(t, "dlqd_messages_retried_total{error_code=\"UPSTREAM_TIMEOUT\",error_class="
		       "\"PERSISTENT\"} 1");
	assert_int_equal(count_lines_with_prefix(t, "dlqd_messages_retried_total{"), 3);
	assert_line(t, "dlqd_messages_dead_lettered_total{error_code=\"INVALID_PAYLOAD\",error_"
		       "class=\"NON_RETRYABLE\"} 1");
	assert_int_equal(count_lines_with_prefix(t, "dlqd_messages_dead_lettered_total{"), 1);
	/* The two labelled counters are separate registries. */
	assert_no_line_prefix(t,
			      "dlqd_messages_dead_lettered_total{error_code=\"UPSTREAM_TIMEOUT\"");
	assert_line(t, "dlqd_dlq_publish_failures_total 1");
	assert_line(t, "dlqd_broker_reconnects_total 2");
	assert_line(t, "dlqd_poison_messages_total 1");
	assert_line(t, "dlqd_messages_in_flight 17");
	assert_line(t, "dlqd_body_bytes_held 123456789");
	assert_line(t, "dlqd_lane_heads_moved_total 6");
	assert_line(t, "dlqd_broker_connected 1");
	assert_line(t, "dlqd_broker_node_info{node=\"[::1]:5673\"} 1");
	assert_line(t, "dlqd_dlq_messages 5");
	assert_line(t, "dlqd_dlq_oldest_message_age_seconds 12.5");

	/* Series appear in first-seen order, the same on every scrape. */
	assert_true(strstr(t, "\"UPSTREAM_TIMEOUT\",error_class=\"TRANSIENT\"") <
		    strstr(t, "\"UPSTREAM_THROTTLED\""));

	/* Gauges go down as well as up; an unknown DLQ leaves both samples out. */
	metrics_set_in_flight(m, 0);
	metrics_set_broker_connected(m, false);
	metrics_set_broker_node(m, NULL);
	metrics_set_dlq(m, -1, 99);
	t2 = render(m);
	assert_no_line_prefix(t2, "dlqd_broker_node_info{");
	assert_line(t2, "dlqd_messages_in_flight 0");
	assert_line(t2, "dlqd_broker_connected 0");
	assert_no_line_prefix(t2, "dlqd_dlq_messages ");
	assert_no_line_prefix(t2, "dlqd_dlq_oldest_message_age_seconds ");
	assert_line(t2, "# TYPE dlqd_dlq_messages gauge");

	metrics_set_dlq(m, 0, 0);
	t3 = render(m);
	assert_line(t3, "dlqd_dlq_messages 0");
	assert_line(t3, "dlqd_dlq_oldest_message_age_seconds 0");
}

/* STATUS= and the exit line read their counts from the registry. */
static void test_totals(void **state)
{
	_cleanup_(metrics_freep) struct metrics *m = NULL;
	struct metrics_totals t;

	assert_int_equal(metrics_new(&m), 0);
	metrics_totals(m, &t);
	assert_int_equal(t.consumed + t.succeeded + t.retried + t.dead_lettered, 0);
	for (int i = 0; i < 5; i++)
		metrics_consumed(m);
	metrics_succeeded(m);
	metrics_retried(m, "UPSTREAM_TIMEOUT", "TRANSIENT");
	metrics_retried(m, "UPSTREAM_TIMEOUT", "TRANSIENT");
	metrics_retried(m, "UPSTREAM_THROTTLED", "TRANSIENT");
	metrics_dead_lettered(m, "AUTH_REVOKED", "NON_RETRYABLE");
	metrics_totals(m, &t);
	assert_int_equal(t.consumed, 5);
	assert_int_equal(t.succeeded, 1);
	assert_int_equal(t.retried, 3);
	assert_int_equal(t.dead_lettered, 1);
}

static void test_histogram(void **state)
{
	static const char *const les[] = {
		"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
		"1",	 "2.5",	 "5",	  "10",	  "30",	 "60",	 "+Inf"
	};
	/* Observations and the bucket each lands in first. */
	static const struct {
		uint64_t usec;
		size_t bucket;
	} obs[] = {
		{ 0, 0 },
		{ 5000, 0 }, /* on the bound: le is inclusive */
		{ 5001, 1 },
		{ 42000, 3 },
		{ 1000000, 7 },
		{ 1000001, 8 },
		{ 60000000, 12 },
		{ 60000001, 13 },
		{ UINT64_C(86400000000), 13 },
	};
	_cleanup_(metrics_freep) struct metrics *m = NULL;
	_cleanup_free_ char *t = NULL;
	uint64_t want[ARRAY_SIZE(les)] = { 0 }, sum = 0;
	char line[256];

	assert_int_equal(metrics_new(&m), 0);
	for (size_t i = 0; i < ARRAY_SIZE(obs); i++) {
		metrics_handler_duration(m, obs[i].usec);
		sum += obs[i].usec;
		for (size_t b = obs[i].bucket; b < ARRAY_SIZE(les); b++)
			want[b]++;
	}
	t = render(m);
	assert_int_equal(count_lines_with_prefix(t, "dlqd_handler_duration_seconds_bucket{"),
			 ARRAY_SIZE(les));
	for (size_t b = 0; b < ARRAY_SIZE(les); b++) {
		snprintf(line, sizeof(line), "dlqd_handler_duration_seconds_bucket{le=\"%s\"} %llu",
			 les[b], (unsigned long long)want[b]);
		assert_line(t, line);
	}
	/* Buckets appear in increasing order of le. */
	for (size_t b = 1; b < ARRAY_SIZE(les); b++) {
		char a[64], c[64];
		snprintf(a, sizeof(a), "{le=\"%s\"}", les[b - 1]);
		snprintf(c, sizeof(c), "{le=\"%s\"}", les[b]);
		assert_true(strstr(t, a) < strstr(t, c));
	}
	snprintf(line, sizeof(line), "dlqd_handler_duration_seconds_sum %llu.%06llu",
		 (unsigned long long)(sum / 1000000), (unsigned long long)(sum % 1000000));
	assert_line(t, line);
	assert_line(t, "dlqd_handler_duration_seconds_sum 86522.052003");
	snprintf(line, sizeof(line), "dlqd_handler_duration_seconds_count %zu", ARRAY_SIZE(obs));
	assert_line(t, line);
	assert_int_equal(want[ARRAY_SIZE(les) - 1], ARRAY_SIZE(obs));
}

static void test_escaping(void **state)
{
	_cleanup_(metrics_freep) struct metrics *m = NULL;
	_cleanup_free_ char *t = NULL;

	assert_int_equal(metrics_new(&m), 0);
	metrics_retried(m, "A\"B\\C\nD", "x\\\"");
	metrics_dead_lettered(m, NULL, NULL);
	metrics_dead_lettered(m, "", "");
	metrics_set_dlq(m, 1, 0.25);
	t = render(m);
	assert_line(t, "dlqd_messages_retried_total{error_code=\"A\\\"B\\\\C\\nD\",error_class="
		       "\"x\\\\\\\"\"} 1");
	/* NULL is "", so both calls land in the same series. */
	assert_line(t, "dlqd_messages_dead_lettered_total{error_code=\"\",error_class=\"\"} 2");
	assert_line(t, "dlqd_dlq_oldest_message_age_seconds 0.25");
}

static void test_special_floats(void **state)
{
	_cleanup_(metrics_freep) struct metrics *m = NULL;
	_cleanup_free_ char *a = NULL, *b = NULL;

	assert_int_equal(metrics_new(&m), 0);
	metrics_set_dlq(m, 3, 1.0 / 0.0);
	a = render(m);
	assert_line(a, "dlqd_dlq_oldest_message_age_seconds +Inf");
	/* NaN or a negative age is "unknown": the depth stays, the age goes. */
	metrics_set_dlq(m, 3, 0.0 / 0.0);
	b = render(m);
	assert_line(b, "dlqd_dlq_messages 3");
	assert_no_line_prefix(b, "dlqd_dlq_oldest_message_age_seconds ");
	free(b);
	metrics_set_dlq(m, 4, -1);
	b = render(m);
	assert_line(b, "dlqd_dlq_messages 4");
	assert_no_line_prefix(b, "dlqd_dlq_oldest_message_age_seconds ");
}

static void test_extensions(void **state)
{
	_cleanup_(metrics_freep) struct metrics *m = NULL;
	_cleanup_free_ char *t = NULL, *t2 = NULL;
	char longq[METRICS_QUEUE_MAX + 50], line[METRICS_QUEUE_MAX + 64];

	assert_int_equal(metrics_new(&m), 0);
	metrics_escalated(m, "AUTH_REVOKED", "NON_RETRYABLE");
	metrics_escalated(m, "AUTH_REVOKED", "NON_RETRYABLE");
	metrics_escalated(m, NULL, NULL);
	metrics_set_queue(m, "jobs\"x");
	t = render(m);
	assert_line(t, "dlqd_escalations_total{error_code=\"AUTH_REVOKED\",error_class="
		       "\"NON_RETRYABLE\"} 2");
	assert_line(t, "dlqd_escalations_total{error_code=\"\",error_class=\"\"} 1");
	assert_line(t, "dlqd_queue_info{queue=\"jobs\\\"x\"} 1");
	/* Escalations are their own registry, not dead letters. */
	assert_no_line_prefix(t, "dlqd_messages_dead_lettered_total{");

	memset(longq, 'q', sizeof(longq) - 1);
	longq[sizeof(longq) - 1] = '\0';
	metrics_set_queue(m, longq);
	t2 = render(m);
	snprintf(line, sizeof(line), "dlqd_queue_info{queue=\"%.*s\"} 1", METRICS_QUEUE_MAX, longq);
	assert_line(t2, line);
}

static json_t *render_json(const struct metrics *m, uint64_t now)
{
	struct buf b;
	json_error_t err;
	json_t *j;

	buf_init(&b, 1 << 20);
	assert_int_equal(metrics_render_json(m, now, &b), 0);
	j = json_loads(b.data, 0, &err);
	if (!j)
		fail_msg("invalid JSON (%s): %s", err.text, b.data);
	buf_done(&b);
	return j;
}

static void test_breaker_and_budget(void **state)
{
	_cleanup_(metrics_freep) struct metrics *m = NULL;
	_cleanup_free_ char *t = NULL, *t2 = NULL;
	json_t *j;

	assert_int_equal(metrics_new(&m), 0);
	t = render(m);
	assert_non_null(strstr(t, "dlqd_breaker_state{state=\"closed\"} 1\n"
				  "dlqd_breaker_state{state=\"open\"} 0\n"
				  "dlqd_breaker_state{state=\"half_open\"} 0\n"));
	assert_non_null(strstr(t, "\ndlqd_breaker_opened_total 0\n"));
	assert_non_null(strstr(t, "\ndlqd_retry_budget_deferred_total 0\n"));
	metrics_set_breaker(m, BREAKER_HALF_OPEN, 3);
	metrics_set_budget_deferred(m, 17);
	t2 = render(m);
	assert_non_null(strstr(t2, "dlqd_breaker_state{state=\"closed\"} 0\n"
				   "dlqd_breaker_state{state=\"open\"} 0\n"
				   "dlqd_breaker_state{state=\"half_open\"} 1\n"));
	assert_non_null(strstr(t2, "\ndlqd_breaker_opened_total 3\n"));
	assert_non_null(strstr(t2, "\ndlqd_retry_budget_deferred_total 17\n"));
	j = render_json(m, 1);
	assert_string_equal(json_string_value(json_object_get(j, "breaker_state")), "half_open");
	assert_int_equal(json_integer_value(json_object_get(j, "breaker_opened_total")), 3);
	assert_int_equal(json_integer_value(json_object_get(j, "retry_budget_deferred_total")), 17);
	json_decref(j);
}

static void test_json(void **state)
{
	_cleanup_(metrics_freep) struct metrics *m = NULL;
	json_t *j, *dl, *e;
	struct buf b;

	assert_int_equal(metrics_new(&m), 0);
	j = render_json(m, 1500000);
	assert_string_equal(json_string_value(json_object_get(j, "version")), DLQD_VERSION);
	assert_true(json_is_null(json_object_get(j, "dlq_messages")));
	assert_true(json_is_null(json_object_get(j, "dlq_oldest_message_age_seconds")));
	assert_true(json_real_value(json_object_get(j, "now_seconds")) == 1.5);
	assert_int_equal(json_array_size(json_object_get(j, "dead_lettered_by_error")), 0);
	assert_true(json_is_false(json_object_get(j, "broker_connected")));
	json_decref(j);

	metrics_set_queue(m, "jobs");
	for (int i = 0; i < 4; i++)
		metrics_consumed(m);
	metrics_succeeded(m);
	metrics_retried(m, "UPSTREAM_TIMEOUT", "TRANSIENT");
	metrics_dead_lettered(m, "RETRY_EXHAUSTED", "PERSISTENT");
	metrics_dead_lettered(m, "INVALID_PAYLOAD", "NON_RETRYABLE");
	metrics_dead_lettered(m, "INVALID_PAYLOAD", "NON_RETRYABLE");
	/* Whatever bytes a handler put in its code stay valid JSON. */
	metrics_dead_lettered(m, "A\"\\\n\x01\x7f\xc3\xa9", "PERSISTENT");
	metrics_escalated(m, "INVALID_PAYLOAD", "NON_RETRYABLE");
	metrics_dlq_publish_failed(m);
	metrics_set_in_flight(m, 2);
	metrics_set_broker_connected(m, true);
	metrics_reconnected(m);
	metrics_handler_duration(m, 2500000);
	metrics_set_dlq(m, 7, 42.25);
	j = render_json(m, 3000001);
	assert_string_equal(json_string_value(json_object_get(j, "queue")), "jobs");
	assert_int_equal(json_integer_value(json_object_get(j, "consumed")), 4);
	assert_int_equal(json_integer_value(json_object_get(j, "succeeded")), 1);
	assert_int_equal(json_integer_value(json_object_get(j, "retried")), 1);
	assert_int_equal(json_integer_value(json_object_get(j, "dead_lettered")), 4);
	assert_int_equal(json_integer_value(json_object_get(j, "escalations")), 1);
	assert_int_equal(json_integer_value(json_object_get(j, "dlq_publish_failures")), 1);
	assert_int_equal(json_integer_value(json_object_get(j, "in_flight")), 2);
	assert_int_equal(json_integer_value(json_object_get(j, "broker_reconnects")), 1);
	assert_int_equal(json_integer_value(json_object_get(j, "handler_count")), 1);
	assert_true(json_real_value(json_object_get(j, "handler_sum_seconds")) == 2.5);
	assert_true(json_is_true(json_object_get(j, "broker_connected")));
	assert_int_equal(json_integer_value(json_object_get(j, "dlq_messages")), 7);
	assert_true(json_real_value(json_object_get(j, "dlq_oldest_message_age_seconds")) == 42.25);
	assert_true(json_real_value(json_object_get(j, "now_seconds")) == 3.000001);
	dl = json_object_get(j, "dead_lettered_by_error");
	assert_int_equal(json_array_size(dl), 3);
	e = json_array_get(dl, 1);
	assert_string_equal(json_string_value(json_object_get(e, "error_code")), "INVALID_PAYLOAD");
	assert_string_equal(json_string_value(json_object_get(e, "error_class")), "NON_RETRYABLE");
	assert_int_equal(json_integer_value(json_object_get(e, "count")), 2);
	e = json_array_get(dl, 2);
	assert_string_equal(json_string_value(json_object_get(e, "error_code")),
			    "A\"\\\n\x01\x7f\xc3\xa9");
	assert_int_equal(json_array_size(json_object_get(j, "retried_by_error")), 1);
	json_decref(j);

	/* A known depth with an unknown age. */
	metrics_set_dlq(m, 3, -1);
	j = render_json(m, 0);
	assert_int_equal(json_integer_value(json_object_get(j, "dlq_messages")), 3);
	assert_true(json_is_null(json_object_get(j, "dlq_oldest_message_age_seconds")));
	json_decref(j);

	/* Bounded like the text: too small fails and leaves the buffer alone. */
	buf_init(&b, 64);
	assert_int_equal(buf_append(&b, "ab", 2), 0);
	assert_int_equal(metrics_render_json(m, 0, &b), -E2BIG);
	assert_string_equal(b.data, "ab");
	buf_done(&b);
}

static uint64_t sum_series(const char *t, const char *prefix)
{
	uint64_t sum = 0;
	size_t pl = strlen(prefix);

	for (const char *p = t; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, prefix, pl) == 0) {
			const char *sp = strchr(p, '}');
			assert_non_null(sp);
			sum += strtoull(sp + 2, NULL, 10);
		}
	return sum;
}

/* No two series of one family may carry the same labels. */
static void assert_unique_series(const char *t, const char *prefix)
{
	size_t pl = strlen(prefix), n = 0, cap = 1024;
	char **seen = calloc(cap, sizeof(*seen));

	assert_non_null(seen);
	for (const char *p = t; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, prefix, pl) != 0)
			continue;
		const char *end = strchr(p, '}');
		char *labels = strndup(p, (size_t)(end - p));
		for (size_t i = 0; i < n; i++)
			if (strcmp(seen[i], labels) == 0)
				fail_msg("duplicate series %s", labels);
		assert_true(n < cap);
		seen[n++] = labels;
	}
	for (size_t i = 0; i < n; i++)
		free(seen[i]);
	free(seen);
}

static void test_cardinality_bound(void **state)
{
	_cleanup_(metrics_freep) struct metrics *m = NULL;
	_cleanup_free_ char *t = NULL;
	char code[64], longcode[METRICS_LABEL_VALUE_MAX + 2];
	uint64_t calls = 0;
	const char *p = "dlqd_messages_retried_total{";

	assert_int_equal(metrics_new(&m), 0);
	/* A code the caller really uses, seen first, keeps counting when full. */
	metrics_retried(m, "KNOWN", "TRANSIENT");
	calls++;
	for (int i = 0; i < 300; i++) {
		snprintf(code, sizeof(code), "CODE_%03d", i);
		metrics_retried(m, code, "TRANSIENT");
		calls++;
	}
	metrics_retried(m, "KNOWN", "TRANSIENT");
	calls++;
	/*
	 * Over the bound with other classes: OTHER per class while the spare
	 * series last (TRANSIENT took one, these two the next), then the last
	 * spare, OTHER/OTHER, takes everything.
	 */
	metrics_retried(m, "NEW_1", "PERSISTENT");
	metrics_retried(m, "NEW_2", "NON_RETRYABLE");
	metrics_retried(m, "NEW_3", "WEIRD_1");
	metrics_retried(m, "NEW_4", "WEIRD_2");
	metrics_retried(m, "NEW_5", "PERSISTENT");
	calls += 5;
	/* A code longer than a label may be is never stored, even with room. */
	memset(longcode, 'L', sizeof(longcode) - 1);
	longcode[sizeof(longcode) - 1] = '\0';
	metrics_dead_lettered(m, longcode, "TRANSIENT");
	metrics_dead_lettered(m, "SHORT", longcode);

	t = render(m);
	assert_int_equal(count_lines_with_prefix(t, p), METRICS_LABEL_PAIRS_MAX + 4);
	assert_int_equal(sum_series(t, p), calls);
	assert_unique_series(t, p);
	assert_line(
		t, "dlqd_messages_retried_total{error_code=\"KNOWN\",error_class=\"TRANSIENT\"} 2");
	assert_line(
		t,
		"dlqd_messages_retried_total{error_code=\"CODE_254\",error_class=\"TRANSIENT\"} 1");
	assert_no_line_prefix(t, "dlqd_messages_retried_total{error_code=\"CODE_255\"");
	/* 1 + 255 stored; CODE_255..CODE_299 (45) overflow. */
	assert_line(
		t,
		"dlqd_messages_retried_total{error_code=\"OTHER\",error_class=\"TRANSIENT\"} 45");
	assert_line(
		t,
		"dlqd_messages_retried_total{error_code=\"OTHER\",error_class=\"PERSISTENT\"} 2");
	assert_line(t, "dlqd_messages_retried_total{error_code=\"OTHER\",error_class=\"NON_"
		       "RETRYABLE\"} 1");
	assert_line(t, "dlqd_messages_retried_total{error_code=\"OTHER\",error_class=\"OTHER\"} 2");
	assert_null(strstr(t, "WEIRD"));

	assert_line(t, "dlqd_messages_dead_lettered_total{error_code=\"OTHER\",error_class="
		       "\"TRANSIENT\"} 1");
	assert_line(
		t,
		"dlqd_messages_dead_lettered_total{error_code=\"OTHER\",error_class=\"OTHER\"} 1");
	assert_null(strstr(t, "LLLL"));

	/* Thousands more distinct pairs change counts, never the series. */
	for (int i = 0; i < 5000; i++) {
		snprintf(code, sizeof(code), "FLOOD_%d", i);
		metrics_retried(m, code, i % 2 ? "TRANSIENT" : "FLOOD");
		calls++;
	}
	free(t);
	t = render(m);
	assert_int_equal(count_lines_with_prefix(t, p), METRICS_LABEL_PAIRS_MAX + 4);
	assert_int_equal(sum_series(t, p), calls);
	assert_unique_series(t, p);
}

/* A caller's own "OTHER" code and the overflow share one series. */
static void test_cardinality_other_shared(void **state)
{
	_cleanup_(metrics_freep) struct metrics *m = NULL;
	_cleanup_free_ char *t = NULL;
	char code[32];

	assert_int_equal(metrics_new(&m), 0);
	metrics_dead_lettered(m, "OTHER", "TRANSIENT");
	for (int i = 0; i < 400; i++) {
		snprintf(code, sizeof(code), "C%d", i);
		metrics_dead_lettered(m, code, "TRANSIENT");
	}
	t = render(m);
	assert_unique_series(t, "dlqd_messages_dead_lettered_total{");
	assert_int_equal(count_lines_with_prefix(t, "dlqd_messages_dead_lettered_total{"),
			 METRICS_LABEL_PAIRS_MAX);
	/* 255 C codes stored, 145 overflow, plus the caller's own one. */
	assert_line(t, "dlqd_messages_dead_lettered_total{error_code=\"OTHER\",error_class="
		       "\"TRANSIENT\"} 146");
}

static void test_render_bounded(void **state)
{
	_cleanup_(metrics_freep) struct metrics *m = NULL;
	struct buf b;
	size_t full;
	char *text;

	assert_int_equal(metrics_new(&m), 0);
	metrics_retried(m, "X", "TRANSIENT");
	metrics_handler_duration(m, 1234);

	buf_init(&b, SIZE_MAX);
	assert_int_equal(metrics_render(m, &b), 0);
	full = b.len;
	text = buf_steal(&b, NULL);

	/* Exactly enough room. */
	buf_init(&b, full);
	assert_int_equal(metrics_render(m, &b), 0);
	assert_int_equal(b.len, full);
	assert_string_equal(b.data, text);
	buf_done(&b);

	/* One byte short fails, for every short size, and leaves the buffer as it was. */
	for (size_t max = 0; max < full; max += max < 64 ? 1 : 97) {
		buf_init(&b, max);
		if (max >= 3)
			assert_int_equal(buf_append(&b, "ab\n", 3), 0);
		assert_int_equal(metrics_render(m, &b), -E2BIG);
		assert_int_equal(b.len, max >= 3 ? 3 : 0);
		if (max >= 3)
			assert_string_equal(b.data, "ab\n");
		buf_done(&b);
	}
	buf_init(&b, full - 1);
	assert_int_equal(metrics_render(m, &b), -E2BIG);
	assert_int_equal(b.len, 0);
	buf_done(&b);

	/* Rendering appends to what the buffer holds. */
	buf_init(&b, full + 3);
	assert_int_equal(buf_append(&b, "ab\n", 3), 0);
	assert_int_equal(metrics_render(m, &b), 0);
	assert_int_equal(b.len, full + 3);
	assert_memory_equal(b.data, "ab\n", 3);
	assert_string_equal(b.data + 3, text);
	buf_done(&b);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_metric),
		cmocka_unit_test(test_counters_and_labels),
		cmocka_unit_test(test_totals),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_special_floats),
		cmocka_unit_test(test_extensions),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_breaker_and_budget),
		cmocka_unit_test(test_cardinality_bound),
		cmocka_unit_test(test_cardinality_other_shared),
		cmocka_unit_test(test_render_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
