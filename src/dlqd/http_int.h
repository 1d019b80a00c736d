/*
 * http_int: what the http backend's files share and nothing else sees: the
 * handler object, one pooled transfer, and what each concern offers the
 * others. The contract with the daemon is include/dlqd/handler.h.
 *
 *   handler_http.c   the backend object and a job's life: submit, refuse
 *                    (deferred done()), cancel, free, and the done() dispatch
 *   http_multi.c     curl's multi socket API inside sd-event: socket and
 *                    timer callbacks, finished transfers drained to done()
 *   http_pool.c      pooled easy handles with their fixed options, the
 *                    per-job request and its header list
 *   http_response.c  the response: a bounded body, then the result
 */
#pragma once

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "common/result.h"
#include "common/util.h"
#include "dlqd/handler.h"

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

/*
 * One socket curl asked us to watch, by fd in http_handler.socks. Every
 * one is in the handler's own epoll set (epfd), and sd-event watches that
 * one fd: sd-event polls its whole set before each dispatch, and with a
 * hundred responses ready at once, one source per socket made each of
 * those polls walk them all again (quadratic in the sockets ready).
 * A connection's socket (one we opened for curl) stays registered while
 * it idles in curl's cache between jobs, which saves two epoll_ctl() per
 * job; it is let go when curl closes it through us.
 */
struct curl_sock {
	uint32_t events; /* registered in epfd; 0: not registered */
	bool watched;	 /* curl wants to hear about it (until CURL_POLL_REMOVE) */
	bool ours;	 /* opened by http_open_socket(): closed through us */
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
	int epfd;		   /* the sockets curl watches */
	sd_event_source *epfd_src; /* epfd in the daemon's loop */
	struct curl_sock *socks;   /* by fd */
	size_t n_socks;

	/* done() may free the handler; the free then waits for the dispatch to unwind */
	unsigned dispatching;
	bool free_requested;
};

/* handler_http.c */
/* Hands x's result to its job and x back to the pool; done() may free hh,
 * so only a caller inside http_dispatch_begin() / _end() may call it. */
void http_job_done(struct http_handler *hh, struct xfer *x, const struct result *r);
void http_dispatch_begin(struct http_handler *hh);
/* Ends a dispatch; finishes a free() that done() asked for, so hh may be gone. */
void http_dispatch_end(struct http_handler *hh);

/* http_multi.c */
/* Creates hh->multi (one curl global reference) wired to hh's event loop;
 * on failure what was made is left for http_multi_free(). 0 or -errno. */
int http_multi_new(struct http_handler *hh, uint32_t max_connections);
/* Lets go of the sockets, the multi handle and its global reference, and
 * the timer; accepts a half-made one. */
void http_multi_free(struct http_handler *hh);
/* CURLOPT_OPENSOCKETFUNCTION and CURLOPT_CLOSESOCKETFUNCTION, clientp hh. */
curl_socket_t http_open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr);
int http_close_socket(void *clientp, curl_socket_t fd);

/* http_pool.c */
/* An idle transfer from the pool, or a new one; NULL when out of memory. */
struct xfer *xfer_get(struct http_handler *hh);
/* Builds x's header list for job; -EINVAL / -E2BIG for ids that cannot be
 * sent as a header, -ENOMEM. */
int xfer_set_headers(struct xfer *x, const struct handler_job *job);
/* Readies x's easy handle for job's POST: the payload (sent without a
 * copy), the header list and an empty body. -EINVAL when curl refuses. */
int xfer_set_request(struct xfer *x, const struct handler_job *job);
/* Puts x on a list (active or deferred) and records its state. */
void xfer_link(struct xfer **head, struct xfer *x, enum xfer_state state);
/* Takes x off its list and back to the pool; the caller removed it from curl. */
void xfer_release(struct http_handler *hh, struct xfer *x);
/* Destroys every idle transfer. */
void xfer_pool_free(struct http_handler *hh);

/* http_response.c */
/* CURLOPT_WRITEFUNCTION: keeps the body within its bound, drops the rest. */
size_t xfer_on_body(char *ptr, size_t size, size_t nmemb, void *userdata);
/* The result of x's finished transfer, which ended with code. */
void xfer_result(struct xfer *x, CURLcode code, struct result *r);
