/*
 * window: the FIFO ring of read-but-unacked messages and how a publisher
 * confirm settles its entries.
 */
#include "dlqctl/window.h"

struct pending *window_at(struct window *w, size_t i)
{
	return &w->ring[(w->head + i) % WINDOW_SIZE];
}

struct pending *window_push(struct window *w)
{
	struct pending *p;

	if (window_full(w))
		return NULL;
	p = window_at(w, w->count++);
	*p = (struct pending){ 0 };
	return p;
}

void window_pop(struct window *w)
{
	if (w->count == 0)
		return;
	w->head = (w->head + 1) % WINDOW_SIZE;
	w->count--;
}

size_t window_confirm(struct window *w, uint64_t seq, bool multiple, bool ack,
		      window_settle_fn settle, void *userdata)
{
	size_t n = 0;

	for (size_t i = 0; i < w->count; i++) {
		struct pending *p = window_at(w, i);
		if (p->settled || (multiple ? p->seq > seq : p->seq != seq))
			continue;
		p->settled = true;
		settle(userdata, p, ack);
		n++;
	}
	while (w->count > 0 && window_at(w, 0)->settled)
		window_pop(w);
	return n;
}
