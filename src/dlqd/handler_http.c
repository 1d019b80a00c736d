/*
 * handler_http: the http backend. Each job is one POST of its payload to
 * [handler] url, driven by libcurl's multi socket API inside the daemon's
 * sd-event loop. Our side of the hot path allocates nothing: transfers (easy
 * handles with their buffers and header lists) are pooled and reused, the
 * payload is sent without a copy, and the multi handle keeps one keep-alive
 * connection per concurrent job. Every response body is bounded by
 * [handler] max_output; what is over is read and dropped.
 *
 * This file holds the backend object and a job's life: submit, the deferred
 * done() of a job that can never be sent, cancel, free, and the dispatch of
 * done(), which may free the handler under our feet. http_multi.c is the
 * glue to sd-event, http_pool.c the transfers, http_response.c the result
 * (see http_int.h).
 */
#include "dlqd/handler.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "http_int.h"

#define POOL_MIN 16

static struct http_handler *to_http(struct handler *h)
{
	return (struct http_handler *)h;
}

static void http_free_now(struct http_handler *hh);

void http_dispatch_begin(struct http_handler *hh)
{
	hh->dispatching++;
}

void http_dispatch_end(struct http_handler *hh)
{
	if (--hh->dispatching == 0 && hh->free_requested)
		http_free_now(hh);
}

void http_job_done(struct http_handler *hh, struct xfer *x, const struct result *r)
{
	struct handler_job *job = x->job;

	xfer_release(hh, x);
	job->priv = NULL;
	hh->base.in_flight--;
	job->done(job, r);
}

static int on_defer(sd_event_source *s, void *userdata)
{
	struct http_handler *hh = userdata;

	http_dispatch_begin(hh);
	while (!hh->free_requested && hh->deferred) {
		struct xfer *x = hh->deferred;
		struct result r;

		result_init(&r, RESULT_INTERNAL);
		strscpy(r.detail, x->defer_reason, sizeof(r.detail));
		http_job_done(hh, x, &r);
	}
	http_dispatch_end(hh);
	return 0;
}

/*
 * A job that can never be sent (an id with a line break in it) still gets
 * its done(), from the loop, so the router can dead-letter it.
 */
static int xfer_defer(struct http_handler *hh, struct xfer *x, const char *reason)
{
	int r;

	if (!hh->defer) {
		r = sd_event_add_defer(hh->base.event, &hh->defer, on_defer, hh);
		if (r < 0)
			return r;
	}
	r = sd_event_source_set_enabled(hh->defer, SD_EVENT_ONESHOT);
	if (r < 0)
		return r;
	x->defer_reason = reason;
	xfer_link(&hh->deferred, x, XFER_DEFERRED);
	return 0;
}

static int http_submit(struct handler *h, struct handler_job *job)
{
	struct http_handler *hh = to_http(h);
	struct xfer *x;
	CURLMcode mc;
	int r;

	if (hh->free_requested)
		return -ESHUTDOWN;
	x = xfer_get(hh);
	if (!x)
		return -ENOMEM;
	x->job = job;
	x->start_usec = now_monotonic_usec();

	r = xfer_set_headers(x, job);
	if (r == -ENOMEM)
		goto fail;
	if (r < 0) {
		r = xfer_defer(hh, x,
			       r == -E2BIG ? "message_id or trace_id too long for a header"
					   : "message_id or trace_id cannot be sent as a header");
		if (r < 0)
			goto fail;
		goto started;
	}

	r = xfer_set_request(x, job);
	if (r < 0)
		goto fail;
	mc = curl_multi_add_handle(hh->multi, x->easy);
	if (mc != CURLM_OK) {
		r = mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
		goto fail;
	}
	xfer_link(&hh->active, x, XFER_ACTIVE);
started:
	job->priv = x;
	h->in_flight++;
	return 0;
fail:
	x->state = XFER_IDLE;
	xfer_release(hh, x);
	return r;
}

static void http_cancel(struct handler *h, struct handler_job *job)
{
	struct http_handler *hh = to_http(h);
	struct xfer *x = job->priv;

	if (!x || x->job != job)
		return;
	if (x->state == XFER_ACTIVE)
		curl_multi_remove_handle(hh->multi, x->easy);
	xfer_release(hh, x);
	job->priv = NULL;
	h->in_flight--;
}

static void http_free_now(struct http_handler *hh)
{
	xfer_pool_free(hh);
	http_multi_free(hh);
	sd_event_source_disable_unref(hh->defer);
	sd_event_unref(hh->base.event);
	curl_url_cleanup(hh->curlu);
	free(hh->url);
	free(hh);
}

static void http_free(struct handler *h)
{
	struct http_handler *hh = to_http(h);

	while (hh->active)
		http_cancel(h, hh->active->job);
	while (hh->deferred)
		http_cancel(h, hh->deferred->job);
	if (hh->dispatching) {
		hh->free_requested = true;
		return;
	}
	http_free_now(hh);
}

static const struct handler_ops http_ops = {
	.name = "http",
	.submit = http_submit,
	.cancel = http_cancel,
	.free = http_free,
};

int handler_http_new(sd_event *e, const struct config *c, struct handler **out)
{
	struct http_handler *hh;
	uint32_t prefetch;
	int r;

	if (!e || !c || !out || !c->handler.url || !c->handler.url[0])
		return -EINVAL;
	hh = calloc(1, sizeof(*hh));
	if (!hh)
		return -ENOMEM;
	hh->epfd = -1;
	hh->base.ops = &http_ops;
	hh->base.event = sd_event_ref(e);
	hh->base.timeout_usec = c->handler.timeout_usec;
	hh->base.max_output = (size_t)MIN(c->handler.max_output, (uint64_t)SIZE_MAX / 2);
	/* 0 means no limit to curl; round up so a sub-millisecond timeout still is one. */
	hh->timeout_ms = c->handler.timeout_usec
				 ? (long)MIN((c->handler.timeout_usec + 999) / USEC_PER_MSEC,
					     (uint64_t)LONG_MAX)
				 : 0;
	prefetch = c->broker.prefetch ? c->broker.prefetch : 100;
	hh->pool_max = MAX(prefetch, (uint32_t)POOL_MIN);

	hh->url = strdup(c->handler.url);
	hh->curlu = curl_url();
	if (!hh->url || !hh->curlu) {
		r = -ENOMEM;
		goto fail;
	}
	if (curl_url_set(hh->curlu, CURLUPART_URL, hh->url, 0) != CURLUE_OK) {
		r = -EINVAL;
		goto fail;
	}
	r = http_multi_new(hh, prefetch);
	if (r < 0)
		goto fail;

	*out = &hh->base;
	return 0;
fail:
	hh->pool_max = 0;
	http_free_now(hh);
	return r;
}
