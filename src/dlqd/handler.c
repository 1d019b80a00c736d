/*
 * handler: dispatch to the configured backend. The backends own their
 * mechanics; this file only keeps the one entry point the daemon uses.
 */
#include "dlqd/handler.h"

#include <errno.h>

int handler_new(sd_event *e, const struct config *c, struct handler **out)
{
	switch (c->handler.type) {
	case HANDLER_HTTP:
		return handler_http_new(e, c, out);
	case HANDLER_EXEC:
		return handler_exec_new(e, c, out);
	}
	return -EINVAL;
}

int handler_submit(struct handler *h, struct handler_job *job)
{
	return h->ops->submit(h, job);
}

void handler_cancel(struct handler *h, struct handler_job *job)
{
	h->ops->cancel(h, job);
}

struct handler *handler_free(struct handler *h)
{
	if (h)
		h->ops->free(h);
	return NULL;
}

void handler_freep(struct handler **h)
{
	*h = handler_free(*h);
}
