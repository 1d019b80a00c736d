/*
 * membound: the bound on the body bytes dlqd holds ([pipeline]
 * max_body_memory), as a pure decision: the broker adds a delivery's body
 * when it allocates it and releases it when the delivery is freed, and hears
 * back when to stop and when to resume reading the consumer link.
 *
 * The rule: stop reading while the bodies held exceed
 * limit - max_message, and read again once they no longer do. The reader
 * only stops between deliveries (never inside one, which would wait for
 * itself), and a body it reads is at most max_message bytes (a bigger one
 * is streamed, never held), so what is held never exceeds limit:
 * at most limit - max_message before the last delivery, plus that one.
 * Pure: no I/O, no logging, no clock.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct membound {
	uint64_t held;	      /* body bytes held now */
	uint64_t limit;	      /* [pipeline] max_body_memory */
	uint64_t max_message; /* [pipeline] max_message_size */
	bool paused;	      /* the reader is told to stop */
};

/* What the reader must do after a change. */
enum membound_change {
	MEMBOUND_SAME,
	MEMBOUND_PAUSE,	 /* stop reading (after the delivery being read) */
	MEMBOUND_RESUME, /* read again */
};

void membound_init(struct membound *m, uint64_t limit, uint64_t max_message);
/* New limits (a reload); held bytes stay. */
enum membound_change membound_set_limits(struct membound *m, uint64_t limit, uint64_t max_message);
enum membound_change membound_add(struct membound *m, uint64_t bytes);
/* Releasing more than is held clamps at 0. */
enum membound_change membound_release(struct membound *m, uint64_t bytes);
/* Above this many bytes held the reader pauses (limit - max_message, >= 0). */
uint64_t membound_threshold(const struct membound *m);
