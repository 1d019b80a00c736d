/*
 * dlqfilter: dlqctl's message filters (design.md Part 1, "Commands"). Each
 * option may be repeated or take a comma-separated list; values of one
 * option are alternatives (OR), different options must all hold (AND).
 * Pure: parsing and matching only.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dlqctl/dlqrecord.h"

#define DLQFILTER_VALUES_MAX 64

enum dlqfilter_key {
	DLQFILTER_ERROR_CODE,
	DLQFILTER_ERROR_CLASS,
	DLQFILTER_MESSAGE_ID,
	DLQFILTER_SCHEMA_VERSION,
	DLQFILTER_OLDER_THAN,
	DLQFILTER_NEWER_THAN,
	_DLQFILTER_LISTS = DLQFILTER_OLDER_THAN, /* the keys before this hold lists */
};

struct dlqfilter {
	struct {
		char *v[DLQFILTER_VALUES_MAX];
		size_t n;
	} list[_DLQFILTER_LISTS];
	uint64_t older_than_usec; /* USEC_INFINITY when unset */
	uint64_t newer_than_usec; /* USEC_INFINITY when unset */
};

void dlqfilter_init(struct dlqfilter *f);
void dlqfilter_done(struct dlqfilter *f);

/*
 * Adds one option's value. -EINVAL with a one-line reason in err for a bad
 * value (empty item, unknown error class, bad duration, too many values),
 * -ENOMEM.
 */
int dlqfilter_add(struct dlqfilter *f, enum dlqfilter_key key, const char *value, char *err,
		  size_t errlen);

/* True when no filter was given (replay and purge then need --all). */
bool dlqfilter_empty(const struct dlqfilter *f);

/*
 * Whether r passes. Ages are measured from dead_lettered_at against
 * now_usec (realtime): --older-than D keeps age >= D, --newer-than D keeps
 * age < D; a message whose dead-letter time is unknown passes neither.
 * --schema-version "" never matches; "none" matches an envelope without a
 * schema_version. An invalid body has no schema version and matches no
 * --schema-version.
 */
bool dlqfilter_match(const struct dlqfilter *f, const struct dlq_record *r, uint64_t now_usec);
