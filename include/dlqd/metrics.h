/*
 * metrics: the Prometheus registry of one dlqd process, and its rendering in
 * the text exposition format 0.0.4. Pure: no I/O, no logging; the metrics
 * server (metrics_server.h) serves what metrics_render() produces.
 *
 * The update functions run once or more per message, so they never allocate
 * and never fail: every storage is sized by metrics_new(). Labelled counters
 * keep at most METRICS_LABEL_PAIRS_MAX distinct (error_code, error_class)
 * pairs per metric; later pairs, and codes or classes longer than
 * METRICS_LABEL_VALUE_MAX bytes, are counted under error_code="OTHER" (with
 * their class while a few spare series last, then error_class="OTHER" too),
 * so a downstream inventing codes cannot grow the scrape without bound.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/util.h"
#include "dlqd/breaker.h"

#define METRICS_LABEL_PAIRS_MAX 256
#define METRICS_LABEL_VALUE_MAX 127
#define METRICS_QUEUE_MAX	255
#define METRICS_NODE_MAX	320 /* a [broker] url node, "host:port" */
/* The error_code that collects pairs over the bound. */
#define METRICS_OTHER "OTHER"

struct metrics;

/* Returns 0 or -ENOMEM. */
int metrics_new(struct metrics **out);
struct metrics *metrics_free(struct metrics *m);
void metrics_freep(struct metrics **m);

/* Counters. NULL error_code or error_class count as "". */
void metrics_consumed(struct metrics *m);
void metrics_succeeded(struct metrics *m);
void metrics_retried(struct metrics *m, const char *error_code, const char *error_class);
void metrics_dead_lettered(struct metrics *m, const char *error_code, const char *error_class);
/* A dead-lettered message whose rule says escalate (dlqd_escalations_total). */
void metrics_escalated(struct metrics *m, const char *error_code, const char *error_class);
void metrics_dlq_publish_failed(struct metrics *m);
void metrics_reconnected(struct metrics *m);
/* A POISON_MESSAGE DLQ copy was confirmed (dlqd_poison_messages_total). */
void metrics_poison(struct metrics *m);

/* One handler run took usec microseconds (dlqd_handler_duration_seconds). */
void metrics_handler_duration(struct metrics *m, uint64_t usec);

/* Gauges. */
void metrics_set_in_flight(struct metrics *m, uint64_t n);
/* Body bytes held (dlqd_body_bytes_held), see broker_body_bytes_held(). */
void metrics_set_body_bytes(struct metrics *m, uint64_t n);
/* dlqd_lane_heads_moved_total, see broker_lanes_moved(). */
void metrics_set_lane_heads_moved(struct metrics *m, uint64_t n);
/*
 * depth < 0: unknown, both DLQ samples are left out of the scrape. An age
 * that is negative or NaN is unknown (a head message without a timestamp):
 * only the age sample is left out. An empty DLQ has age 0.
 */
void metrics_set_dlq(struct metrics *m, int64_t depth, double oldest_age_seconds);
/* The main queue's name, exported as dlqd_queue_info{queue}. Truncated to
 * METRICS_QUEUE_MAX bytes. */
void metrics_set_queue(struct metrics *m, const char *queue);

/* The totals STATUS= and the exit line show, summed over the labels. */
struct metrics_totals {
	uint64_t consumed, succeeded, retried, dead_lettered;
};
void metrics_totals(const struct metrics *m, struct metrics_totals *out);
void metrics_set_broker_connected(struct metrics *m, bool up);
/* "host:port" of the node in use (dlqd_broker_node_info); NULL when none. */
void metrics_set_broker_node(struct metrics *m, const char *node);
/* dlqd_breaker_state{state} (1 for s, 0 for the others), dlqd_breaker_opened_total. */
void metrics_set_breaker(struct metrics *m, enum breaker_state s, uint64_t opened_total);
/* dlqd_retry_budget_deferred_total: kept by the budget, mirrored here. */
void metrics_set_budget_deferred(struct metrics *m, uint64_t total);

/*
 * Appends the whole exposition (text format 0.0.4) to out. Returns 0, or
 * -E2BIG / -ENOMEM with out as it was before the call.
 */
int metrics_render(const struct metrics *m, struct buf *out);

/*
 * Appends the same numbers as one JSON object for the status page (see
 * docs/metrics.md, "/status.json"); now_usec (CLOCK_MONOTONIC) is echoed as
 * "now_seconds" so that the page computes rates on the server's clock. Same
 * return values as metrics_render().
 */
int metrics_render_json(const struct metrics *m, uint64_t now_usec, struct buf *out);
