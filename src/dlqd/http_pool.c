/*
 * http_pool: the transfers. Each is an easy handle with its error buffer,
 * body buffer and header list, made once with every option that never
 * changes between jobs and then reused: a job only sets its payload and its
 * headers, which live in nodes and text the transfer owns, so a request
 * allocates nothing. The pool keeps up to pool_max idle transfers and gives
 * back body buffers that one large response grew.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "common/version.h"
#include "http_int.h"

/* Idempotency-Key + X-Trace-Id + X-Attempt text; longer ids are refused. */
#define HEADER_TEXT_MAX (16 * 1024)
/* Body buffers that grew past this are given back when a transfer ends. */
#define BODY_KEEP_CAP (64 * 1024)

static char hdr_content_type[] = "Content-Type: application/json";
/* An empty Expect stops curl from waiting for "100 Continue" on big payloads. */
static char hdr_expect[] = "Expect:";

void xfer_link(struct xfer **head, struct xfer *x, enum xfer_state state)
{
	x->state = state;
	x->prev = NULL;
	x->next = *head;
	if (*head)
		(*head)->prev = x;
	*head = x;
}

static void list_unlink(struct xfer **head, struct xfer *x)
{
	if (x->prev)
		x->prev->next = x->next;
	else
		*head = x->next;
	if (x->next)
		x->next->prev = x->prev;
	x->prev = x->next = NULL;
}

/* A header value must not smuggle in a line break or other control bytes. */
static bool header_value_ok(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

int xfer_set_headers(struct xfer *x, const struct handler_job *job)
{
	const char *trace = job->trace_id ? job->trace_id : "";
	size_t off_key, off_attempt, off_trace = 0;
	struct buf *t = &x->hdr_text;
	unsigned n = 0;
	int r;

	if (!job->message_id || !job->message_id[0] || !header_value_ok(job->message_id) ||
	    !header_value_ok(trace))
		return -EINVAL;

	buf_reset(t);
	off_key = t->len;
	r = buf_printf(t, "Idempotency-Key: %s", job->message_id);
	if (r >= 0)
		r = buf_append(t, "", 1);
	off_attempt = t->len;
	if (r >= 0)
		r = buf_printf(t, "X-Attempt: %" PRIu32, job->attempt);
	if (r >= 0)
		r = buf_append(t, "", 1);
	if (r >= 0 && trace[0]) {
		off_trace = t->len;
		r = buf_printf(t, "X-Trace-Id: %s", trace);
	}
	if (r < 0)
		return r == -ENOMEM ? -ENOMEM : -E2BIG;

	x->hdr[n++].data = hdr_content_type;
	x->hdr[n++].data = hdr_expect;
	x->hdr[n++].data = t->data + off_key;
	x->hdr[n++].data = t->data + off_attempt;
	if (trace[0])
		x->hdr[n++].data = t->data + off_trace;
	for (unsigned i = 0; i < n; i++)
		x->hdr[i].next = i + 1 < n ? &x->hdr[i + 1] : NULL;
	return 0;
}

int xfer_set_request(struct xfer *x, const struct handler_job *job)
{
	buf_reset(&x->body);
	x->body.max = x->hh->base.max_output;
	x->body_total = 0;
	x->body_limit_set = false;
	x->errbuf[0] = '\0';
	/* The size goes first: setting it clears a POSTFIELDS that curl copied. */
	if (curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE,
			     (curl_off_t)(job->payload ? job->payload_len : 0)) != CURLE_OK ||
	    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, job->payload ? job->payload : "") !=
		    CURLE_OK ||
	    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->hdr) != CURLE_OK)
		return -EINVAL;
	return 0;
}

static void xfer_destroy(struct xfer *x)
{
	if (!x)
		return;
	if (x->easy)
		curl_easy_cleanup(x->easy);
	buf_done(&x->body);
	buf_done(&x->hdr_text);
	free(x);
}

static struct xfer *xfer_new(struct http_handler *hh)
{
	struct xfer *x = calloc(1, sizeof(*x));
	CURL *e;
	bool ok;

	if (!x)
		return NULL;
	x->hh = hh;
	buf_init(&x->body, hh->base.max_output);
	buf_init(&x->hdr_text, HEADER_TEXT_MAX);
	x->easy = e = curl_easy_init();
	if (!e) {
		xfer_destroy(x);
		return NULL;
	}
	/* Options that never change between jobs are set once per pooled handle. */
	ok = curl_easy_setopt(e, CURLOPT_CURLU, hh->curlu) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_POST, 1L) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, hh->timeout_ms) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, xfer_on_body) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_WRITEDATA, x) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_PRIVATE, x) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_USERAGENT, "dlqd/" DLQD_VERSION) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, http_open_socket) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, hh) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, http_close_socket) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, hh) == CURLE_OK &&
	     /* Answers are small and bodies past max_output are dropped anyway;
	      * the 16 KiB default times prefetch handles would dominate RSS. */
	     curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 1024L) == CURLE_OK;
	if (!ok) {
		xfer_destroy(x);
		return NULL;
	}
	return x;
}

struct xfer *xfer_get(struct http_handler *hh)
{
	struct xfer *x = hh->pool;

	if (!x)
		return xfer_new(hh);
	hh->pool = x->next;
	hh->n_pool--;
	x->next = NULL;
	return x;
}

void xfer_release(struct http_handler *hh, struct xfer *x)
{
	if (x->state == XFER_ACTIVE)
		list_unlink(&hh->active, x);
	else if (x->state == XFER_DEFERRED)
		list_unlink(&hh->deferred, x);
	x->state = XFER_IDLE;
	x->job = NULL;
	x->defer_reason = NULL;
	if (x->body.cap > BODY_KEEP_CAP)
		buf_done(&x->body);
	if (hh->n_pool >= hh->pool_max) {
		xfer_destroy(x);
		return;
	}
	x->next = hh->pool;
	hh->pool = x;
	hh->n_pool++;
}

void xfer_pool_free(struct http_handler *hh)
{
	while (hh->pool) {
		struct xfer *x = hh->pool;

		hh->pool = x->next;
		xfer_destroy(x);
	}
}
