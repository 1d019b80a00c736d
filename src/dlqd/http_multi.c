/*
 * http_multi: libcurl's multi socket API inside the daemon's sd-event loop.
 * curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION, one I/O
 * source per socket) and when to wake it (CURLMOPT_TIMERFUNCTION, one
 * oneshot timer); sd-event tells curl when something happened; after each
 * wakeup the finished transfers are drained from curl_multi_info_read() and
 * handed to their jobs. Nothing here blocks or polls. Connection sockets
 * are opened and closed through us, so their sources can stay registered
 * while curl keeps them idle between jobs (struct curl_sock).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "http_int.h"

/* Hands every finished transfer's result to its job. */
static void drain_done(struct http_handler *hh)
{
	CURLMsg *msg;
	int left;

	http_dispatch_begin(hh);
	while (!hh->free_requested && (msg = curl_multi_info_read(hh->multi, &left))) {
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
		http_job_done(hh, x, &r);
	}
	http_dispatch_end(hh);
}

static void sock_free(struct http_handler *hh, struct curl_sock *cs);

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct curl_sock *cs = userdata;
	struct http_handler *hh = cs->hh;
	int action = 0, running;

	if (cs->parked) {
		/* An idle connection spoke (the server closed it, most likely):
		 * stop listening; curl finds out when it tries to reuse it. */
		log_debug("idle connection socket %d became ready (events 0x%x): no longer watched",
			  fd, revents);
		if (sd_event_source_set_enabled(s, SD_EVENT_OFF) < 0)
			sock_free(hh, cs);
		return 0;
	}
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

static struct conn_fd *conn_fd(struct http_handler *hh, curl_socket_t fd)
{
	return fd >= 0 && (size_t)fd < hh->n_conn_fds && hh->conn_fds[fd].ours ? &hh->conn_fds[fd]
									       : NULL;
}

static void sock_free(struct http_handler *hh, struct curl_sock *cs)
{
	struct conn_fd *c = conn_fd(hh, cs->fd);

	if (c)
		c->cs = NULL;
	if (cs->prev)
		cs->prev->next = cs->next;
	else
		hh->socks = cs->next;
	if (cs->next)
		cs->next->prev = cs->prev;
	sd_event_source_disable_unref(cs->src);
	free(cs);
}

static struct curl_sock *sock_new(struct http_handler *hh, curl_socket_t fd, uint32_t events)
{
	struct curl_sock *cs = calloc(1, sizeof(*cs));
	struct conn_fd *c = conn_fd(hh, fd);

	if (!cs)
		return NULL;
	cs->hh = hh;
	cs->fd = fd;
	if (sd_event_add_io(hh->base.event, &cs->src, fd, events, on_io, cs) < 0) {
		free(cs);
		return NULL;
	}
	cs->next = hh->socks;
	if (hh->socks)
		hh->socks->prev = cs;
	hh->socks = cs;
	if (c)
		c->cs = cs;
	return cs;
}

/* CURLMOPT_SOCKETFUNCTION: mirrors what curl wants to hear about into sd-event. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct http_handler *hh = userp;
	struct curl_sock *cs = socketp;
	struct conn_fd *c;
	uint32_t events = 0;

	if (what == CURL_POLL_REMOVE) {
		if (cs) {
			curl_multi_assign(hh->multi, fd, NULL);
			if (conn_fd(hh, fd))
				cs->parked = true; /* until curl closes or reuses it */
			else
				sock_free(hh, cs);
		}
		return 0;
	}
	if (what & CURL_POLL_IN)
		events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		events |= EPOLLOUT;

	if (!cs && (c = conn_fd(hh, fd)) && c->cs) {
		cs = c->cs; /* a cached connection back at work */
		cs->parked = false;
		if (curl_multi_assign(hh->multi, fd, cs) != CURLM_OK) {
			sock_free(hh, cs);
			return -1;
		}
	}
	if (!cs) {
		cs = sock_new(hh, fd, events);
		if (!cs)
			return -1;
		if (curl_multi_assign(hh->multi, fd, cs) != CURLM_OK) {
			sock_free(hh, cs);
			return -1;
		}
	}
	/* Enabled with no events it would report errors only, which curl
	 * learns about anyway; sd-event skips what is already so. */
	if (!events)
		return sd_event_source_set_enabled(cs->src, SD_EVENT_OFF) < 0 ? -1 : 0;
	if (sd_event_source_set_io_events(cs->src, events) < 0 ||
	    sd_event_source_set_enabled(cs->src, SD_EVENT_ON) < 0)
		return -1;
	return 0;
}

curl_socket_t http_open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
	struct http_handler *hh = clientp;
	int fd;

	if (purpose != CURLSOCKTYPE_IPCXN)
		return CURL_SOCKET_BAD;
	fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
	if (fd < 0)
		return CURL_SOCKET_BAD;
	if ((size_t)fd >= hh->n_conn_fds) {
		size_t n = MAX((size_t)fd + 1, hh->n_conn_fds * 2);
		struct conn_fd *p = realloc(hh->conn_fds, n * sizeof(*p));

		if (!p) {
			close(fd);
			return CURL_SOCKET_BAD;
		}
		memset(p + hh->n_conn_fds, 0, (n - hh->n_conn_fds) * sizeof(*p));
		hh->conn_fds = p;
		hh->n_conn_fds = n;
	}
	hh->conn_fds[fd] = (struct conn_fd){ .ours = true };
	return fd;
}

int http_close_socket(void *clientp, curl_socket_t fd)
{
	struct http_handler *hh = clientp;
	struct conn_fd *c = conn_fd(hh, fd);

	/* The source goes first: the fd number is free for reuse once closed. */
	if (c) {
		if (c->cs)
			sock_free(hh, c->cs);
		c->ours = false;
	}
	return close(fd);
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

int http_multi_new(struct http_handler *hh, uint32_t max_connections)
{
	int r;

	/* curl counts its global init, so each handler takes and drops one reference. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -EIO;
	hh->multi = curl_multi_init();
	if (!hh->multi) {
		curl_global_cleanup();
		return -ENOMEM;
	}
	/* One connection per job in flight, all kept alive between jobs. */
	if (curl_multi_setopt(hh->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
	    curl_multi_setopt(hh->multi, CURLMOPT_SOCKETDATA, hh) != CURLM_OK ||
	    curl_multi_setopt(hh->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
	    curl_multi_setopt(hh->multi, CURLMOPT_TIMERDATA, hh) != CURLM_OK ||
	    curl_multi_setopt(hh->multi, CURLMOPT_MAXCONNECTS, (long)max_connections) != CURLM_OK ||
	    curl_multi_setopt(hh->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)max_connections) !=
		    CURLM_OK)
		return -EINVAL;
	/* Accuracy 1us: curl asks for "now" a lot, and a coalescing window would add latency. */
	r = sd_event_add_time(hh->base.event, &hh->timer, CLOCK_MONOTONIC, 0, 1, on_timer, hh);
	if (r < 0)
		return r;
	r = sd_event_source_set_enabled(hh->timer, SD_EVENT_OFF);
	if (r < 0)
		return r;
	r = sd_event_source_set_description(hh->timer, "handler-http-timer");
	if (r < 0)
		log_debug("cannot name the handler-http-timer event source: %s, ignoring",
			  strerror(-r));
	return 0;
}

void http_multi_free(struct http_handler *hh)
{
	/* Let go of the sockets while curl still has them open, then silence curl. */
	while (hh->socks)
		sock_free(hh, hh->socks);
	if (hh->multi) {
		curl_multi_setopt(hh->multi, CURLMOPT_SOCKETFUNCTION, NULL);
		curl_multi_setopt(hh->multi, CURLMOPT_TIMERFUNCTION, NULL);
		curl_multi_cleanup(hh->multi);
		hh->multi = NULL;
		curl_global_cleanup();
	}
	hh->timer = sd_event_source_disable_unref(hh->timer);
	free(hh->conn_fds); /* after the cleanup: it closes through http_close_socket() */
	hh->conn_fds = NULL;
	hh->n_conn_fds = 0;
}
