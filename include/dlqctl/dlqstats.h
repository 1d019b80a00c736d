/*
 * dlqstats: the summary `dlqctl stats` prints: depth, counts by error_code
 * and error_class, the retry-exhausted / non-retryable shares, the oldest
 * and newest dead-letter times. Memory is bounded whatever the DLQ holds:
 * at most DLQSTATS_CODES_MAX distinct codes are counted by name, the rest
 * under "(other)". Pure: it renders into a struct buf.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dlqctl/dlqrecord.h"
#include "common/util.h"

#define DLQSTATS_CODES_MAX 512
#define DLQSTATS_OTHER	   "(other)"
#define DLQSTATS_NONE	   "(none)"

struct dlqstats_count {
	char name[DLQRECORD_STR_MAX];
	uint64_t n;
};

struct dlqstats {
	uint64_t depth;	  /* the queue's message count when the scan began */
	uint64_t scanned; /* messages read */
	uint64_t matched; /* messages that passed the filters (= counted below) */
	uint64_t retry_exhausted, non_retryable, invalid;
	uint64_t oldest_usec, newest_usec; /* realtime dead_lettered_at; 0 = none */
	uint64_t unknown_age;		   /* matched messages without a dead-letter time */
	struct dlqstats_count *codes;	   /* DLQSTATS_CODES_MAX + 1 slots, last = other */
	size_t n_codes;
	struct dlqstats_count classes[5]; /* 3 classes, "(none)", DLQSTATS_OTHER */
};

int dlqstats_init(struct dlqstats *s);
void dlqstats_done(struct dlqstats *s);
void dlqstats_add(struct dlqstats *s, const struct dlq_record *r);

/* Human table (sorted by count, descending) or one JSON object. */
int dlqstats_render(struct dlqstats *s, const char *queue, uint64_t now_usec, bool json,
		    struct buf *out);

/* "3d4h", "12m5s", "40s": compact age for tables. */
char *dlqstats_format_age(uint64_t usec, char *buf, size_t n);
