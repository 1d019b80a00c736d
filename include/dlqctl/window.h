/*
 * window: the messages dlqctl has read and acted on but not yet acked, in
 * DLQ order: replays awaiting their publisher confirm, purges awaiting the
 * archive's fsync. A FIFO ring of WINDOW_SIZE entries, so memory is bounded
 * by the window, never by the DLQ's depth. Pure: acking is the caller's.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dlqctl/dlqrecord.h"

#define WINDOW_SIZE 256

struct pending {
	uint64_t seq; /* replay: publish sequence number; purge: unused */
	uint64_t tag; /* the DLQ delivery to ack */
	char message_id[DLQRECORD_STR_MAX];
	char error_code[DLQRECORD_STR_MAX];
	char error_class[DLQRECORD_STR_MAX];
	int64_t attempt;
	bool settled; /* replay: confirmed (or refused) */
};

struct window {
	struct pending ring[WINDOW_SIZE];
	size_t head, count;
};

static inline bool window_full(const struct window *w)
{
	return w->count == WINDOW_SIZE;
}

/* The i-th oldest entry, i < count. */
struct pending *window_at(struct window *w, size_t i);
/* Appends a zeroed entry and returns it; NULL when the window is full. */
struct pending *window_push(struct window *w);
/* Drops the oldest entry (none when empty). */
void window_pop(struct window *w);

/*
 * A publisher confirm: ack (basic.ack) or not (basic.nack) for seq, or with
 * multiple for every sequence number <= seq. Confirms normally come in
 * order but a single one may overtake, so each unsettled entry it covers is
 * marked settled and passed to settle() (oldest first), then the settled
 * entries at the head leave the window. Returns how many it settled.
 */
typedef void (*window_settle_fn)(void *userdata, const struct pending *p, bool ack);
size_t window_confirm(struct window *w, uint64_t seq, bool multiple, bool ack,
		      window_settle_fn settle, void *userdata);
