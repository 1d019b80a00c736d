/*
 * membound: when to stop reading the consumer link so that the body bytes
 * dlqd holds stay under [pipeline] max_body_memory (see
 * include/dlqd/membound.h for the rule and why it bounds the total).
 */
#include "dlqd/membound.h"

uint64_t membound_threshold(const struct membound *m)
{
	/* The config enforces limit >= max_message; a bound of 0 still lets
	 * one delivery at a time through. */
	return m->limit > m->max_message ? m->limit - m->max_message : 0;
}

/* Compares the state with the rule and reports a transition. */
static enum membound_change settle(struct membound *m)
{
	bool over = m->held > membound_threshold(m);

	if (over == m->paused)
		return MEMBOUND_SAME;
	m->paused = over;
	return over ? MEMBOUND_PAUSE : MEMBOUND_RESUME;
}

void membound_init(struct membound *m, uint64_t limit, uint64_t max_message)
{
	*m = (struct membound){ .limit = limit, .max_message = max_message };
}

enum membound_change membound_set_limits(struct membound *m, uint64_t limit, uint64_t max_message)
{
	m->limit = limit;
	m->max_message = max_message;
	return settle(m);
}

enum membound_change membound_add(struct membound *m, uint64_t bytes)
{
	m->held = bytes > UINT64_MAX - m->held ? UINT64_MAX : m->held + bytes;
	return settle(m);
}

enum membound_change membound_release(struct membound *m, uint64_t bytes)
{
	m->held = bytes > m->held ? 0 : m->held - bytes;
	return settle(m);
}
