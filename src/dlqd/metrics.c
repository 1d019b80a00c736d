/*
 * metrics: counters, gauges and one histogram, rendered as Prometheus text.
 *
 * Labelled counters live in a fixed array of series found through a small
 * open-addressing hash (at most a quarter full, so probes stay short), with
 * the last hit checked first: a burst of one failure hits it every time. All
 * storage comes from metrics_new(), so counting never allocates or fails.
 */
#include "dlqd/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "common/version.h"

/*
 * Spare series for pairs over the bound: ("OTHER", class) while they last,
 * and the very last one is kept for ("OTHER", "OTHER"), so the overflow
 * always has a home.
 */
#define SERIES_SPARE 4
#define SERIES_MAX   (METRICS_LABEL_PAIRS_MAX + SERIES_SPARE)
#define SLOTS	     2048 /* power of two, >= 4 * SERIES_MAX */
_Static_assert(SLOTS >= 4 * SERIES_MAX && (SLOTS & (SLOTS - 1)) == 0, "hash too small");
_Static_assert(SERIES_MAX < UINT16_MAX, "slot indexes are uint16_t");

struct series {
	uint64_t count;
	uint32_t hash;
	char code[METRICS_LABEL_VALUE_MAX + 1];
	char class[METRICS_LABEL_VALUE_MAX + 1];
};

struct labelled {
	struct series series[SERIES_MAX];
	size_t n;
	size_t last;	      /* index + 1 of the last hit, 0 for none */
	uint16_t slot[SLOTS]; /* index + 1 into series, 0 for empty */
};

/* Upper bounds of dlqd_handler_duration_seconds, in microseconds. */
static const struct {
	uint64_t usec;
	const char *le;
} buckets[] = {
	{ 5 * USEC_PER_MSEC, "0.005" },	 { 10 * USEC_PER_MSEC, "0.01" },
	{ 25 * USEC_PER_MSEC, "0.025" }, { 50 * USEC_PER_MSEC, "0.05" },
	{ 100 * USEC_PER_MSEC, "0.1" },	 { 250 * USEC_PER_MSEC, "0.25" },
	{ 500 * USEC_PER_MSEC, "0.5" },	 { 1 * USEC_PER_SEC, "1" },
	{ 2500 * USEC_PER_MSEC, "2.5" }, { 5 * USEC_PER_SEC, "5" },
	{ 10 * USEC_PER_SEC, "10" },	 { 30 * USEC_PER_SEC, "30" },
	{ 60 * USEC_PER_SEC, "60" },
};

struct metrics {
	uint64_t consumed, succeeded, dlq_publish_failures, reconnects, poison;
	struct labelled retried, dead_lettered, escalations;

	/* Per bucket, not cumulative; the last one is +Inf. */
	uint64_t hist[ARRAY_SIZE(buckets) + 1];
	uint64_t hist_sum_usec, hist_count;

	uint64_t in_flight, body_bytes, lane_heads_moved;
	int64_t dlq_depth;
	double dlq_oldest_age; /* < 0: unknown */
	bool broker_connected;
	char queue[METRICS_QUEUE_MAX + 1];
	char node[METRICS_NODE_MAX]; /* "" while disconnected */
	enum breaker_state breaker;
	uint64_t breaker_opened, budget_deferred;
};

int metrics_new(struct metrics **out)
{
	struct metrics *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	m->dlq_depth = -1;
	*out = m;
	return 0;
}

struct metrics *metrics_free(struct metrics *m)
{
	free(m);
	return NULL;
}

void metrics_freep(struct metrics **m)
{
	*m = metrics_free(*m);
}

/* FNV-1a over code, a separator no label byte equals in practice, class. */
static uint32_t pair_hash(const char *code, const char *class, size_t *code_len, size_t *class_len)
{
	uint32_t h = 2166136261u;
	const char *p;

	for (p = code; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	*code_len = (size_t)(p - code);
	h = (h ^ 0xffu) * 16777619u;
	for (p = class; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	*class_len = (size_t)(p - class);
	return h;
}

static struct series *find(struct labelled *l, const char *code, const char *class, uint32_t h,
			   uint16_t **slot)
{
	for (size_t i = h & (SLOTS - 1);; i = (i + 1) & (SLOTS - 1)) {
		struct series *s;

		if (!l->slot[i]) {
			*slot = &l->slot[i];
			return NULL;
		}
		s = &l->series[l->slot[i] - 1];
		if (s->hash == h && strcmp(s->code, code) == 0 && strcmp(s->class, class) == 0)
			return s;
	}
}

/* Finds or adds (code, class) while fewer than limit series exist. */
static struct series *get(struct labelled *l, const char *code, const char *class, size_t limit)
{
	size_t code_len, class_len;
	uint32_t h = pair_hash(code, class, &code_len, &class_len);
	uint16_t *slot;
	struct series *s = find(l, code, class, h, &slot);

	if (s || l->n >= limit || code_len > METRICS_LABEL_VALUE_MAX ||
	    class_len > METRICS_LABEL_VALUE_MAX)
		return s;
	s = &l->series[l->n++];
	s->hash = h;
	memcpy(s->code, code, code_len + 1);
	memcpy(s->class, class, class_len + 1);
	*slot = (uint16_t)l->n;
	return s;
}

static void count(struct labelled *l, const char *code, const char *class)
{
	struct series *s;

	if (!code)
		code = "";
	if (!class)
		class = "";
	if (l->last) {
		s = &l->series[l->last - 1];
		if (strcmp(s->code, code) == 0 && strcmp(s->class, class) == 0)
			goto hit;
	}
	s = get(l, code, class, METRICS_LABEL_PAIRS_MAX);
	if (!s) {
		if (strlen(class) > METRICS_LABEL_VALUE_MAX)
			class = METRICS_OTHER;
		s = get(l, METRICS_OTHER, class, SERIES_MAX - 1);
	}
	if (!s)
		s = get(l, METRICS_OTHER, METRICS_OTHER, SERIES_MAX);
	/* Not reached: the last spare series is reserved for OTHER/OTHER. */
	if (!s)
		return;
hit:
	s->count++;
	l->last = (size_t)(s - l->series) + 1;
}

void metrics_consumed(struct metrics *m)
{
	m->consumed++;
}

void metrics_succeeded(struct metrics *m)
{
	m->succeeded++;
}

static uint64_t series_total(const struct labelled *l)
{
	uint64_t t = 0;

	for (size_t i = 0; i < l->n; i++)
		t += l->series[i].count;
	return t;
}

void metrics_totals(const struct metrics *m, struct metrics_totals *out)
{
	*out = (struct metrics_totals){
		.consumed = m->consumed,
		.succeeded = m->succeeded,
		.retried = series_total(&m->retried),
		.dead_lettered = series_total(&m->dead_lettered),
	};
}

void metrics_retried(struct metrics *m, const char *error_code, const char *error_class)
{
	count(&m->retried, error_code, error_class);
}

void metrics_dead_lettered(struct metrics *m, const char *error_code, const char *error_class)
{
	count(&m->dead_lettered, error_code, error_class);
}

void metrics_escalated(struct metrics *m, const char *error_code, const char *error_class)
{
	count(&m->escalations, error_code, error_class);
}

void metrics_dlq_publish_failed(struct metrics *m)
{
	m->dlq_publish_failures++;
}

void metrics_poison(struct metrics *m)
{
	m->poison++;
}

void metrics_reconnected(struct metrics *m)
{
	m->reconnects++;
}

void metrics_handler_duration(struct metrics *m, uint64_t usec)
{
	size_t i = 0;

	while (i < ARRAY_SIZE(buckets) && usec > buckets[i].usec)
		i++;
	m->hist[i]++;
	m->hist_sum_usec += usec;
	m->hist_count++;
}

void metrics_set_in_flight(struct metrics *m, uint64_t n)
{
	m->in_flight = n;
}

void metrics_set_body_bytes(struct metrics *m, uint64_t n)
{
	m->body_bytes = n;
}

void metrics_set_lane_heads_moved(struct metrics *m, uint64_t n)
{
	m->lane_heads_moved = n;
}

void metrics_set_dlq(struct metrics *m, int64_t depth, double oldest_age_seconds)
{
	m->dlq_depth = depth < 0 ? -1 : depth;
	m->dlq_oldest_age = isnan(oldest_age_seconds) ? -1 : oldest_age_seconds;
}

void metrics_set_queue(struct metrics *m, const char *queue)
{
	strscpy(m->queue, queue ? queue : "", sizeof(m->queue));
}

void metrics_set_broker_connected(struct metrics *m, bool up)
{
	m->broker_connected = up;
}

void metrics_set_broker_node(struct metrics *m, const char *node)
{
	strscpy(m->node, node ? node : "", sizeof(m->node));
}

void metrics_set_breaker(struct metrics *m, enum breaker_state s, uint64_t opened_total)
{
	m->breaker = s;
	m->breaker_opened = opened_total;
}

void metrics_set_budget_deferred(struct metrics *m, uint64_t total)
{
	m->budget_deferred = total;
}

/* --- rendering -------------------------------------------------------------- */

static int header(struct buf *b, const char *name, const char *type, const char *help)
{
	return buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value between quotes: backslash, double quote and newline escaped. */
static int label_value(struct buf *b, const char *v)
{
	int r;

	if ((r = buf_append(b, "\"", 1)) < 0)
		return r;
	for (;;) {
		size_t n = strcspn(v, "\\\"\n");

		if ((r = buf_append(b, v, n)) < 0)
			return r;
		v += n;
		if (!*v)
			break;
		if ((r = buf_append(b, *v == '\n' ? "\\n" : *v == '"' ? "\\\"" : "\\\\", 2)) < 0)
			return r;
		v++;
	}
	return buf_append(b, "\"", 1);
}

static int counter(struct buf *b, const char *name, const char *help, uint64_t v)
{
	int r = header(b, name, "counter", help);

	return r < 0 ? r : buf_printf(b, "%s %" PRIu64 "\n", name, v);
}

static int labelled_counter(struct buf *b, const char *name, const char *help,
			    const struct labelled *l)
{
	int r = header(b, name, "counter", help);

	for (size_t i = 0; r >= 0 && i < l->n; i++) {
		const struct series *s = &l->series[i];

		if ((r = buf_printf(b, "%s{error_code=", name)) < 0 ||
		    (r = label_value(b, s->code)) < 0 ||
		    (r = buf_append(b, ",error_class=", 13)) < 0 ||
		    (r = label_value(b, s->class)) < 0)
			break;
		r = buf_printf(b, "} %" PRIu64 "\n", s->count);
	}
	return r;
}

static int histogram(struct buf *b, const struct metrics *m)
{
	static const char name[] = "dlqd_handler_duration_seconds";
	uint64_t cum = 0;
	int r = header(b, name, "histogram",
		       "Time from handing a message to the handler until its result, in seconds.");

	for (size_t i = 0; r >= 0 && i <= ARRAY_SIZE(buckets); i++) {
		cum += m->hist[i];
		r = buf_printf(b, "%s_bucket{le=\"%s\"} %" PRIu64 "\n", name,
			       i < ARRAY_SIZE(buckets) ? buckets[i].le : "+Inf", cum);
	}
	if (r < 0)
		return r;
	/* Integer seconds and microseconds: exact, whatever the sum. */
	r = buf_printf(b, "%s_sum %" PRIu64 ".%06" PRIu64 "\n", name,
		       m->hist_sum_usec / USEC_PER_SEC, m->hist_sum_usec % USEC_PER_SEC);
	return r < 0 ? r : buf_printf(b, "%s_count %" PRIu64 "\n", name, m->hist_count);
}

static int gauge_double(struct buf *b, const char *name, double v)
{
	if (isnan(v))
		return buf_printf(b, "%s NaN\n", name);
	if (isinf(v))
		return buf_printf(b, "%s %s\n", name, v > 0 ? "+Inf" : "-Inf");
	return buf_printf(b, "%s %.15g\n", name, v);
}

static int render(const struct metrics *m, struct buf *b)
{
	int r;

	if ((r = counter(b, "dlqd_messages_consumed_total",
			 "Messages delivered to dlqd from the work queue.", m->consumed)) < 0 ||
	    (r = counter(b, "dlqd_messages_succeeded_total",
			 "Messages whose handler succeeded and that were acked.", m->succeeded)) <
		    0 ||
	    (r = labelled_counter(b, "dlqd_messages_retried_total",
				  "Messages scheduled for another attempt, by error.",
				  &m->retried)) < 0 ||
	    (r = labelled_counter(b, "dlqd_messages_dead_lettered_total",
				  "Messages published to the dead-letter queue, by error.",
				  &m->dead_lettered)) < 0 ||
	    (r = histogram(b, m)) < 0)
		return r;

	if ((r = header(b, "dlqd_messages_in_flight", "gauge",
			"Messages delivered and not yet settled.")) < 0 ||
	    (r = buf_printf(b, "dlqd_messages_in_flight %" PRIu64 "\n", m->in_flight)) < 0)
		return r;
	if ((r = header(b, "dlqd_body_bytes_held", "gauge",
			"Body bytes of deliveries held in memory ([pipeline] max_body_memory).")) <
		    0 ||
	    (r = buf_printf(b, "dlqd_body_bytes_held %" PRIu64 "\n", m->body_bytes)) < 0)
		return r;
	if ((r = header(b, "dlqd_lane_heads_moved_total", "counter",
			"Overdue heads moved from stalled delay lanes to the main queue.")) < 0 ||
	    (r = buf_printf(b, "dlqd_lane_heads_moved_total %" PRIu64 "\n", m->lane_heads_moved)) <
		    0)
		return r;

	if ((r = header(b, "dlqd_dlq_messages", "gauge",
			"Messages in the dead-letter queue, as last seen by dlqd.")) < 0 ||
	    (m->dlq_depth >= 0 &&
	     (r = buf_printf(b, "dlqd_dlq_messages %" PRId64 "\n", m->dlq_depth)) < 0))
		return r;
	if ((r = header(b, "dlqd_dlq_oldest_message_age_seconds", "gauge",
			"Age of the oldest message in the dead-letter queue, in seconds.")) < 0 ||
	    (m->dlq_depth >= 0 && m->dlq_oldest_age >= 0 &&
	     (r = gauge_double(b, "dlqd_dlq_oldest_message_age_seconds", m->dlq_oldest_age)) < 0))
		return r;

	if ((r = counter(b, "dlqd_dlq_publish_failures_total",
			 "Dead-letter publishes the broker refused or did not confirm.",
			 m->dlq_publish_failures)) < 0 ||
	    (r = header(b, "dlqd_broker_connected", "gauge",
			"1 while the broker connection is up, else 0.")) < 0 ||
	    (r = buf_printf(b, "dlqd_broker_connected %d\n", m->broker_connected ? 1 : 0)) < 0 ||
	    (r = counter(b, "dlqd_broker_reconnects_total",
			 "Broker connections re-established after a loss.", m->reconnects)) < 0 ||
	    (r = counter(b, "dlqd_poison_messages_total",
			 "Messages dead-lettered as POISON_MESSAGE: redelivered [pipeline] "
			 "max_redeliveries times without dlqd settling them.",
			 m->poison)) < 0)
		return r;

	if ((r = header(b, "dlqd_breaker_state", "gauge",
			"The circuit breaker's state: 1 for the current one, 0 for the others.")) <
	    0)
		return r;
	for (enum breaker_state s = 0; s < _BREAKER_STATE_MAX; s++)
		if ((r = buf_printf(b, "dlqd_breaker_state{state=\"%s\"} %d\n",
				    breaker_state_to_string(s), s == m->breaker ? 1 : 0)) < 0)
			return r;
	if ((r = counter(b, "dlqd_breaker_opened_total",
			 "Times the circuit breaker opened (trips and failed probes).",
			 m->breaker_opened)) < 0 ||
	    (r = counter(b, "dlqd_retry_budget_deferred_total",
			 "Retries put back to a delay lane because the retry budget was spent, "
			 "without a handler call or an attempt.",
			 m->budget_deferred)) < 0)
		return r;

	/* Extensions (docs/metrics.md): not in the contract, named to not clash. */
	if ((r = labelled_counter(b, "dlqd_escalations_total",
				  "Dead-lettered messages whose taxonomy rule asks for a human "
				  "(escalate), by error.",
				  &m->escalations)) < 0 ||
	    (r = header(b, "dlqd_queue_info", "gauge",
			"The main queue this dlqd consumes, as a label; always 1.")) < 0 ||
	    (r = buf_append(b, "dlqd_queue_info{queue=", 22)) < 0 ||
	    (r = label_value(b, m->queue)) < 0 || (r = buf_append(b, "} 1\n", 4)) < 0 ||
	    (r = header(b, "dlqd_broker_node_info", "gauge",
			"The [broker] url node the consumer connection uses, as a label; "
			"always 1, absent while disconnected.")) < 0 ||
	    (m->node[0] &&
	     ((r = buf_append(b, "dlqd_broker_node_info{node=", 27)) < 0 ||
	      (r = label_value(b, m->node)) < 0 || (r = buf_append(b, "} 1\n", 4)) < 0)))
		return r;

	if ((r = header(b, "dlqd_build_info", "gauge", "The running dlqd version; always 1.")) <
		    0 ||
	    (r = buf_append(b, "dlqd_build_info{version=", 24)) < 0 ||
	    (r = label_value(b, DLQD_VERSION)) < 0)
		return r;
	return buf_append(b, "} 1\n", 4);
}

/* On failure, leaves out as it was before the render that started at start. */
static int rollback_on_error(struct buf *out, size_t start, int r)
{
	if (r < 0) {
		out->len = start;
		if (out->data)
			out->data[start] = '\0';
	}
	return r;
}

int metrics_render(const struct metrics *m, struct buf *out)
{
	size_t start = out->len;

	return rollback_on_error(out, start, render(m, out));
}

/* --- JSON for the status page ------------------------------------------------ */

/* A JSON string: quote, backslash and control bytes escaped; other bytes
 * pass through (label values are whatever the taxonomy or handler said). */
static int json_series(struct buf *b, const char *key, const struct labelled *l)
{
	int r = buf_printf(b, ",\"%s\":[", key);

	for (size_t i = 0; r >= 0 && i < l->n; i++) {
		const struct series *s = &l->series[i];

		if ((r = buf_printf(b, "%s{\"error_code\":", i ? "," : "")) < 0 ||
		    (r = buf_json_string(b, s->code)) < 0 ||
		    (r = buf_append(b, ",\"error_class\":", 15)) < 0 ||
		    (r = buf_json_string(b, s->class)) < 0)
			break;
		r = buf_printf(b, ",\"count\":%" PRIu64 "}", s->count);
	}
	return r < 0 ? r : buf_append(b, "]", 1);
}

static int render_json(const struct metrics *m, uint64_t now_usec, struct buf *b)
{
	int r;

	if ((r = buf_append(b, "{\"version\":", 11)) < 0 ||
	    (r = buf_json_string(b, DLQD_VERSION)) < 0 ||
	    (r = buf_append(b, ",\"queue\":", 9)) < 0 || (r = buf_json_string(b, m->queue)) < 0 ||
	    (r = buf_append(b, ",\"broker_node\":", 15)) < 0 ||
	    (r = m->node[0] ? buf_json_string(b, m->node) : buf_append(b, "null", 4)) < 0)
		return r;
	r = buf_printf(
		b,
		",\"now_seconds\":%" PRIu64 ".%06" PRIu64 ",\"consumed\":%" PRIu64
		",\"succeeded\":%" PRIu64 ",\"retried\":%" PRIu64 ",\"dead_lettered\":%" PRIu64
		",\"escalations\":%" PRIu64 ",\"dlq_publish_failures\":%" PRIu64
		",\"in_flight\":%" PRIu64 ",\"broker_connected\":%s,\"broker_reconnects\":%" PRIu64
		",\"handler_count\":%" PRIu64 ",\"handler_sum_seconds\":%" PRIu64 ".%06" PRIu64,
		now_usec / USEC_PER_SEC, now_usec % USEC_PER_SEC, m->consumed, m->succeeded,
		series_total(&m->retried), series_total(&m->dead_lettered),
		series_total(&m->escalations), m->dlq_publish_failures, m->in_flight,
		m->broker_connected ? "true" : "false", m->reconnects, m->hist_count,
		m->hist_sum_usec / USEC_PER_SEC, m->hist_sum_usec % USEC_PER_SEC);
	if (r < 0)
		return r;
	/* null: not known yet (probe off, broker down, no timestamp). */
	if (m->dlq_depth >= 0)
		r = buf_printf(b, ",\"dlq_messages\":%" PRId64, m->dlq_depth);
	else
		r = buf_append(b, ",\"dlq_messages\":null", 20);
	if (r < 0)
		return r;
	if (m->dlq_depth >= 0 && m->dlq_oldest_age >= 0 && isfinite(m->dlq_oldest_age))
		r = buf_printf(b, ",\"dlq_oldest_message_age_seconds\":%.3f", m->dlq_oldest_age);
	else
		r = buf_append(b, ",\"dlq_oldest_message_age_seconds\":null", 38);
	if (r >= 0)
		r = buf_printf(b,
			       ",\"breaker_state\":\"%s\",\"breaker_opened_total\":%" PRIu64
			       ",\"retry_budget_deferred_total\":%" PRIu64,
			       breaker_state_to_string(m->breaker), m->breaker_opened,
			       m->budget_deferred);
	if (r < 0 || (r = json_series(b, "dead_lettered_by_error", &m->dead_lettered)) < 0 ||
	    (r = json_series(b, "retried_by_error", &m->retried)) < 0)
		return r;
	return buf_append(b, "}\n", 2);
}

int metrics_render_json(const struct metrics *m, uint64_t now_usec, struct buf *out)
{
	size_t start = out->len;

	return rollback_on_error(out, start, render_json(m, now_usec, out));
}
