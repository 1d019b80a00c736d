/*
 * handler_http: the http backend. Each job is one POST of its payload to
 * [handler] url, driven by libcurl's multi socket API inside the daemon's
 * sd-event loop: curl tells us which sockets to watch and when to wake it,
 * sd-event tells curl when something happened, and finished transfers are
 * drained from curl_multi_info_read() into results.
 *
 * Our side of the hot path allocates nothing: easy handles (with their buffers and
 * header lists) are kept in a pool and reused, the payload is sent without a
 * copy, and the multi handle keeps one keep-alive connection per concurrent
 * job. Every response body is bounded by [handler] max_output; what is over is
 * read and dropped.
 */
#include "dlqd/handler.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>

#include "common/log.h"
#include "common/util.h"
#include "common/version.h"

/* Idempotency-Key + X-Trace-Id + X-Attempt text; longer ids are refused. */
#define HEADER_TEXT_MAX	    (16 * 1024)
#define RETRY_AFTER_MAX_SEC (24 * 3600)
/* Body buffers that grew past this are given back when a transfer ends. */
#define BODY_KEEP_CAP (64 * 1024)
#define POOL_MIN      16

enum xfer_state {
	XFER_IDLE,
	XFER_ACTIVE,   /* added to the multi handle */
	XFER_DEFERRED, /* refused before it started; completes from the defer source */
};

/* One pooled transfer: an easy handle with everything a request needs. */
struct xfer {
	struct http_handler *hh;
	CURL *easy;
	enum xfer_state state;
	struct handler_job *job;
	struct xfer *prev, *next;

	uint64_t start_usec;
	char errbuf[CURL_ERROR_SIZE];
	struct buf body;
	uint64_t body_total;
	bool body_limit_set;
	const char *defer_reason;

	/*
	 * The request headers as curl_slist nodes we own, pointing into
	 * hdr_text: curl only walks the list, so building it costs no malloc.
	 */
	struct curl_slist hdr[5];
	struct buf hdr_text;
};

/* One socket curl asked us to watch. */
struct curl_sock {
	sd_event_source *src;
	struct curl_sock *prev, *next;
};

struct http_handler {
	struct handler base;
	CURLM *multi;
	char *url;
	CURLU *curlu; /* url parsed once, not per request */
	long timeout_ms;
	sd_event_source *timer;
	sd_event_source *defer;

	struct xfer *active;   /* in curl */
	struct xfer *deferred; /* waiting for the defer source */
	struct xfer *pool;     /* idle, singly linked through next */
	unsigned n_pool, pool_max;
	struct curl_sock *socks;

	/* done() may free the handler; the free then waits for the dispatch to unwind */
	unsigned dispatching;
	bool free_requested;
};

static char hdr_content_type[] = "Content-Type: application/json";
/* An empty Expect stops curl from waiting for "100 Continue" on big payloads. */
static char hdr_expect[] = "Expect:";

static struct http_handler *to_http(struct handler *h)
{
	return (struct http_handler *)h;
}

static void list_link(struct xfer **head, struct xfer *x)
{
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

/*
 * The libcurl error name without its CURLE_ prefix, as the taxonomy's
 * "transport" rules spell it; codes this libcurl may add later get UNKNOWN_<n>.
 */
static const char *transport_name(CURLcode c, char buf[static 24])
{
#define N(x)            \
	case CURLE_##x: \
		return #x
	switch (c) {
		N(OK);
		N(UNSUPPORTED_PROTOCOL);
		N(FAILED_INIT);
		N(URL_MALFORMAT);
		N(NOT_BUILT_IN);
		N(COULDNT_RESOLVE_PROXY);
		N(COULDNT_RESOLVE_HOST);
		N(COULDNT_CONNECT);
		N(WEIRD_SERVER_REPLY);
		N(REMOTE_ACCESS_DENIED);
		N(HTTP2);
		N(PARTIAL_FILE);
		N(WRITE_ERROR);
		N(UPLOAD_FAILED);
		N(READ_ERROR);
		N(OUT_OF_MEMORY);
		N(OPERATION_TIMEDOUT);
		N(RANGE_ERROR);
		N(HTTP_POST_ERROR);
		N(SSL_CONNECT_ERROR);
		N(BAD_DOWNLOAD_RESUME);
		N(FUNCTION_NOT_FOUND);
		N(ABORTED_BY_CALLBACK);
		N(BAD_FUNCTION_ARGUMENT);
		N(INTERFACE_FAILED);
		N(TOO_MANY_REDIRECTS);
		N(UNKNOWN_OPTION);
		N(GOT_NOTHING);
		N(SSL_ENGINE_NOTFOUND);
		N(SSL_ENGINE_SETFAILED);
		N(SEND_ERROR);
		N(RECV_ERROR);
		N(SSL_CERTPROBLEM);
		N(SSL_CIPHER);
		N(PEER_FAILED_VERIFICATION);
		N(BAD_CONTENT_ENCODING);
		N(FILESIZE_EXCEEDED);
		N(USE_SSL_FAILED);
		N(SEND_FAIL_REWIND);
		N(SSL_ENGINE_INITFAILED);
		N(LOGIN_DENIED);
		N(SSL_CACERT_BADFILE);
		N(SSL_SHUTDOWN_FAILED);
		N(AGAIN);
		N(SSL_CRL_BADFILE);
		N(SSL_ISSUER_ERROR);
		N(CHUNK_FAILED);
		N(NO_CONNECTION_AVAILABLE);
		N(SSL_PINNEDPUBKEYNOTMATCH);
		N(SSL_INVALIDCERTSTATUS);
		N(HTTP2_STREAM);
		N(RECURSIVE_API_CALL);
		N(AUTH_ERROR);
		N(HTTP3);
		N(QUIC_CONNECT_ERROR);
		N(PROXY);
		N(SSL_CLIENTCERT);
		N(UNRECOVERABLE_POLL);
	default:
		break;
	}
#undef N
	snprintf(buf, 24, "UNKNOWN_%d", (int)c);
	return buf;
}

/* A header value must not smuggle in a line break or other control bytes. */
static bool header_value_ok(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* Builds the per-job header list; -EINVAL / -E2BIG for ids that cannot be sent. */
static int xfer_set_headers(struct xfer *x, const struct handler_job *job)
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

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct xfer *x = userdata;
	size_t n = size * nmemb;

	if (!x->body_limit_set) {
		long status = 0;
		size_t max = x->hh->base.max_output;

		/* A success body is only evidence; a failure body may carry error_code. */
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
		if (status >= 200 && status < 300)
			max = MIN(max, (size_t)RESULT_EVIDENCE_MAX);
		x->body.max = max;
		x->body_limit_set = true;
	}
	x->body_total += n;
	buf_append_trunc(&x->body, ptr, n);
	return n;
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
	     curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_WRITEDATA, x) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_PRIVATE, x) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_USERAGENT, "dlqd/" DLQD_VERSION) == CURLE_OK &&
	     /* Answers are small and bodies past max_output are dropped anyway;
	      * the 16 KiB default times prefetch handles would dominate RSS. */
	     curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 4096L) == CURLE_OK;
	if (!ok) {
		xfer_destroy(x);
		return NULL;
	}
	return x;
}

static struct xfer *xfer_get(struct http_handler *hh)
{
	struct xfer *x = hh->pool;

	if (!x)
		return xfer_new(hh);
	hh->pool = x->next;
	hh->n_pool--;
	x->next = NULL;
	return x;
}

/* Takes x off its list and back to the pool; the caller removed it from curl. */
static void xfer_release(struct http_handler *hh, struct xfer *x)
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

static void parse_handler_code(const struct xfer *x, struct result *r)
{
	const char *ct = NULL, *p = x->body.data;
	size_t len = x->body.len;

	if (!p || len == 0 || x->body_total != len)
		return;
	curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ct);
	while (len && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
		p++;
		len--;
	}
	if (!(ct && strncasecmp(ct, "application/json", 16) == 0) && !(len && *p == '{'))
		return;

	result_parse_report(r, p, len);
}

static void xfer_result(struct xfer *x, CURLcode code, struct result *r)
{
	char name[24];
	long status = 0;
	size_t n;

	result_init(r, RESULT_SUCCESS);
	r->duration_usec = now_monotonic_usec() - x->start_usec;
	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	r->http_status = status;

	/* Evidence stays a C string too, so one byte is kept for the NUL. */
	n = MIN(x->body.len, sizeof(r->evidence) - 1);
	if (n)
		memcpy(r->evidence, x->body.data, n);
	r->evidence[n] = '\0';
	r->evidence_len = n;
	r->evidence_truncated = x->body_total > n;

	if (code == CURLE_OK) {
		curl_off_t after = 0;

		if (status >= 200 && status < 300)
			return;
		r->kind = RESULT_HTTP;
		if (curl_easy_getinfo(x->easy, CURLINFO_RETRY_AFTER, &after) == CURLE_OK &&
		    after > 0)
			r->retry_after_usec =
				(uint64_t)MIN(after, (curl_off_t)RETRY_AFTER_MAX_SEC) *
				USEC_PER_SEC;
		parse_handler_code(x, r);
		return;
	}

	r->kind = code == CURLE_OPERATION_TIMEDOUT ? RESULT_TIMEOUT : RESULT_TRANSPORT;
	strscpy(r->transport, transport_name(code, name), sizeof(r->transport));
	strscpy(r->detail, x->errbuf[0] ? x->errbuf : curl_easy_strerror(code), sizeof(r->detail));
}

static void http_free_now(struct http_handler *hh);

static void dispatch_begin(struct http_handler *hh)
{
	hh->dispatching++;
}

/* Finishes a free() that done() asked for; hh is gone afterwards if so. */
static void dispatch_end(struct http_handler *hh)
{
	if (--hh->dispatching == 0 && hh->free_requested)
		http_free_now(hh);
}

/* Hands every finished transfer's result to its job. */
static void drain_done(struct http_handler *hh)
{
	CURLMsg *msg;
	int left;

	dispatch_begin(hh);
	while (!hh->free_requested && (msg = curl_multi_info_read(hh->multi, &left))) {
		struct handler_job *job;
		struct result r;
		struct xfer *x = NULL;
		CURL *easy = msg->easy_handle;
		CURLcode code = msg->data.result;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
		curl_multi_remove_handle(hh->multi, easy);
		if (!x || x->state != XFER_ACTIVE)
			continue;
		xfer_result(x, code, &r);
		job = x->job;
		xfer_release(hh, x);
		job->priv = NULL;
		hh->base.in_flight--;
		job->done(job, &r);
	}
	dispatch_end(hh);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct http_handler *hh = userdata;
	int action = 0, running;

	if (revents & EPOLLIN)
		action |= CURL_CSELECT_IN;
	if (revents & EPOLLOUT)
		action |= CURL_CSELECT_OUT;
	if (revents & (EPOLLERR | EPOLLHUP))
		action |= CURL_CSELECT_ERR;
	curl_multi_socket_action(hh->multi, fd, action, &running);
	drain_done(hh);
	return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct http_handler *hh = userdata;
	int running;

	curl_multi_socket_action(hh->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	drain_done(hh);
	return 0;
}

static void sock_free(struct http_handler *hh, struct curl_sock *cs)
{
	if (cs->prev)
		cs->prev->next = cs->next;
	else
		hh->socks = cs->next;
	if (cs->next)
		cs->next->prev = cs->prev;
	sd_event_source_disable_unref(cs->src);
	free(cs);
}

/* CURLMOPT_SOCKETFUNCTION: mirrors what curl wants to hear about into sd-event. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct http_handler *hh = userp;
	struct curl_sock *cs = socketp;
	uint32_t events = 0;
	int r;

	if (what == CURL_POLL_REMOVE) {
		if (cs) {
			curl_multi_assign(hh->multi, fd, NULL);
			sock_free(hh, cs);
		}
		return 0;
	}
	if (what & CURL_POLL_IN)
		events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		events |= EPOLLOUT;

	if (!cs) {
		cs = calloc(1, sizeof(*cs));
		if (!cs)
			return -1;
		if (sd_event_add_io(hh->base.event, &cs->src, fd, events, on_io, hh) < 0) {
			free(cs);
			return -1;
		}
		cs->next = hh->socks;
		if (hh->socks)
			hh->socks->prev = cs;
		hh->socks = cs;
		if (curl_multi_assign(hh->multi, fd, cs) != CURLM_OK) {
			sock_free(hh, cs);
			return -1;
		}
		/* Enabled with no events it reports only errors, which curl handles. */
		if (!events && (r = sd_event_source_set_enabled(cs->src, SD_EVENT_OFF)) < 0)
			log_warning_errno(
				r,
				"cannot disable the event source of curl socket %d: %m, ignoring",
				(int)fd);
		return 0;
	}
	if (!events)
		return sd_event_source_set_enabled(cs->src, SD_EVENT_OFF) < 0 ? -1 : 0;
	if (sd_event_source_set_io_events(cs->src, events) < 0 ||
	    sd_event_source_set_enabled(cs->src, SD_EVENT_ON) < 0)
		return -1;
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: one oneshot CLOCK_MONOTONIC source stands for curl's timer. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct http_handler *hh = userp;

	if (timeout_ms < 0)
		return sd_event_source_set_enabled(hh->timer, SD_EVENT_OFF) < 0 ? -1 : 0;
	/* The real clock, not the loop's cached one, or curl is woken early and re-arms. */
	if (sd_event_source_set_time(hh->timer, now_monotonic_usec() +
							(uint64_t)timeout_ms * USEC_PER_MSEC) < 0 ||
	    sd_event_source_set_enabled(hh->timer, SD_EVENT_ONESHOT) < 0)
		return -1;
	return 0;
}

static int on_defer(sd_event_source *s, void *userdata)
{
	struct http_handler *hh = userdata;

	dispatch_begin(hh);
	while (!hh->free_requested && hh->deferred) {
		struct xfer *x = hh->deferred;
		struct handler_job *job = x->job;
		struct result r;

		result_init(&r, RESULT_INTERNAL);
		strscpy(r.detail, x->defer_reason, sizeof(r.detail));
		xfer_release(hh, x);
		job->priv = NULL;
		hh->base.in_flight--;
		job->done(job, &r);
	}
	dispatch_end(hh);
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
	x->state = XFER_DEFERRED;
	list_link(&hh->deferred, x);
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

	buf_reset(&x->body);
	x->body.max = h->max_output;
	x->body_total = 0;
	x->body_limit_set = false;
	x->errbuf[0] = '\0';
	/* The size goes first: setting it clears a POSTFIELDS that curl copied. */
	if (curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE,
			     (curl_off_t)(job->payload ? job->payload_len : 0)) != CURLE_OK ||
	    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, job->payload ? job->payload : "") !=
		    CURLE_OK ||
	    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->hdr) != CURLE_OK) {
		r = -EINVAL;
		goto fail;
	}
	mc = curl_multi_add_handle(hh->multi, x->easy);
	if (mc != CURLM_OK) {
		r = mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
		goto fail;
	}
	x->state = XFER_ACTIVE;
	list_link(&hh->active, x);
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
	while (hh->pool) {
		struct xfer *x = hh->pool;

		hh->pool = x->next;
		xfer_destroy(x);
	}
	/* Let go of the sockets while curl still has them open, then silence curl. */
	while (hh->socks)
		sock_free(hh, hh->socks);
	if (hh->multi) {
		curl_multi_setopt(hh->multi, CURLMOPT_SOCKETFUNCTION, NULL);
		curl_multi_setopt(hh->multi, CURLMOPT_TIMERFUNCTION, NULL);
		curl_multi_cleanup(hh->multi);
		curl_global_cleanup();
	}
	sd_event_source_disable_unref(hh->timer);
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
	/* curl counts its global init, so each handler takes and drops one reference. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		r = -EIO;
		goto fail;
	}
	hh->multi = curl_multi_init();
	if (!hh->multi) {
		curl_global_cleanup();
		r = -ENOMEM;
		goto fail;
	}
	/* One connection per job in flight, all kept alive between jobs. */
	if (curl_multi_setopt(hh->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
	    curl_multi_setopt(hh->multi, CURLMOPT_SOCKETDATA, hh) != CURLM_OK ||
	    curl_multi_setopt(hh->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
	    curl_multi_setopt(hh->multi, CURLMOPT_TIMERDATA, hh) != CURLM_OK ||
	    curl_multi_setopt(hh->multi, CURLMOPT_MAXCONNECTS, (long)prefetch) != CURLM_OK ||
	    curl_multi_setopt(hh->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)prefetch) !=
		    CURLM_OK) {
		r = -EINVAL;
		goto fail;
	}
	/* Accuracy 1us: curl asks for "now" a lot, and a coalescing window would add latency. */
	r = sd_event_add_time(e, &hh->timer, CLOCK_MONOTONIC, 0, 1, on_timer, hh);
	if (r < 0)
		goto fail;
	r = sd_event_source_set_enabled(hh->timer, SD_EVENT_OFF);
	if (r < 0)
		goto fail;
	r = sd_event_source_set_description(hh->timer, "handler-http-timer");
	if (r < 0)
		log_debug("cannot name the handler-http-timer event source: %s, ignoring",
			  strerror(-r));

	*out = &hh->base;
	return 0;
fail:
	hh->pool_max = 0;
	http_free_now(hh);
	return r;
}
