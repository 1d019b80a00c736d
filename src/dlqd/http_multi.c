/*
 * http_multi: libcurl's multi socket API inside the daemon's sd-event loop.
 * curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when
 * to wake it (CURLMOPT_TIMERFUNCTION, one oneshot timer). The sockets live
 * in an epoll set of our own, which sd-event watches as one fd: a wakeup
 * hands curl every socket that is ready at once, the way curl's own
 * examples drive it (struct curl_sock says why it matters). After each
 * wakeup the finished transfers are drained from curl_multi_info_read()
 * and handed to their jobs. Nothing here blocks.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "http_int.h"

/* Ready sockets taken per wakeup; more wait for the next (epfd stays ready). */
#define EVENTS_PER_WAKEUP 256

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

/* The slot for fd, grown to hold it when grow is set; NULL if out of memory or unknown. */
static struct curl_sock *sock_at(struct http_handler *hh, int fd, bool grow)
{
	if (fd < 0)
		return NULL;
	if ((size_t)fd >= hh->n_socks) {
		size_t n = MAX((size_t)fd + 1, hh->n_socks * 2);
		struct curl_sock *p;

		if (!grow || !(p = realloc(hh->socks, n * sizeof(*p))))
			return NULL;
		memset(p + hh->n_socks, 0, (n - hh->n_socks) * sizeof(*p));
		hh->socks = p;
		hh->n_socks = n;
	}
	return &hh->socks[fd];
}

/*
 * Registers fd in epfd for events (0: not at all). Our sockets' slots are
 * always right, so nothing is called when nothing changes. Others may have
 * been closed (and their number reused) without a word to us, which takes
 * them out of epfd: for them the kernel's answer decides.
 */
static int sock_watch(struct http_handler *hh, int fd, struct curl_sock *cs, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.fd = fd };
	int r;

	if (cs->ours && cs->events == events)
		return 0;
	if (!events) {
		if (epoll_ctl(hh->epfd, EPOLL_CTL_DEL, fd, NULL) < 0 && errno != ENOENT &&
		    errno != EBADF)
			return -errno;
		cs->events = 0;
		return 0;
	}
	r = epoll_ctl(hh->epfd, cs->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
	if (r < 0 && (errno == ENOENT || errno == EEXIST))
		r = epoll_ctl(hh->epfd, errno == ENOENT ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
	if (r < 0)
		return -errno;
	cs->events = events;
	return 0;
}

static int on_epoll(sd_event_source *s, int epfd, uint32_t revents, void *userdata)
{
	struct http_handler *hh = userdata;
	struct epoll_event ev[EVENTS_PER_WAKEUP];
	int n, r, running;

	n = epoll_wait(epfd, ev, EVENTS_PER_WAKEUP, 0);
	if (n < 0) {
		if (errno != EINTR)
			log_warning_errno(-errno, "cannot read the http handler's epoll set: %m");
		return 0;
	}
	for (int i = 0; i < n; i++) {
		int fd = ev[i].data.fd, action = 0;
		struct curl_sock *cs = sock_at(hh, fd, false);

		/* By fd, not by pointer: curl may close a socket of this batch
		 * while it handles an earlier one. */
		if (!cs || !cs->watched) {
			/* An idle connection spoke (the server closed it, most
			 * likely): stop listening; curl finds out when it tries
			 * to reuse it. */
			log_debug("idle connection socket %d became ready (events 0x%x): "
				  "no longer watched",
				  fd, ev[i].events);
			if (cs && (r = sock_watch(hh, fd, cs, 0)) < 0)
				log_warning_errno(r, "cannot stop watching socket %d: %m", fd);
			continue;
		}
		if (ev[i].events & EPOLLIN)
			action |= CURL_CSELECT_IN;
		if (ev[i].events & EPOLLOUT)
			action |= CURL_CSELECT_OUT;
		if (ev[i].events & (EPOLLERR | EPOLLHUP))
			action |= CURL_CSELECT_ERR;
		curl_multi_socket_action(hh->multi, fd, action, &running);
	}
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

/* CURLMOPT_SOCKETFUNCTION: mirrors what curl wants to hear about into epfd. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct http_handler *hh = userp;
	struct curl_sock *cs = sock_at(hh, fd, true);
	uint32_t events = 0;

	if (!cs)
		return -1;
	if (what == CURL_POLL_REMOVE) {
		cs->watched = false;
		/* Ours stay registered while idle; curl closes them through us.
		 * Others (a resolver's) may be closed behind our back. */
		if (!cs->ours && sock_watch(hh, fd, cs, 0) < 0)
			return -1;
		return 0;
	}
	if (what & CURL_POLL_IN)
		events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		events |= EPOLLOUT;
	cs->watched = true;
	/* With no events registered at all it would still report errors,
	 * which curl learns about anyway; so 0 means not registered. */
	return sock_watch(hh, fd, cs, events) < 0 ? -1 : 0;
}

curl_socket_t http_open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
	struct http_handler *hh = clientp;
	struct curl_sock *cs;
	int fd;

	if (purpose != CURLSOCKTYPE_IPCXN)
		return CURL_SOCKET_BAD;
	fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
	if (fd < 0)
		return CURL_SOCKET_BAD;
	cs = sock_at(hh, fd, true);
	if (!cs) {
		close(fd);
		return CURL_SOCKET_BAD;
	}
	*cs = (struct curl_sock){ .ours = true };
	return fd;
}

int http_close_socket(void *clientp, curl_socket_t fd)
{
	struct http_handler *hh = clientp;
	struct curl_sock *cs = sock_at(hh, fd, false);

	/* Closing it takes it out of epfd: the fd number is then free for a
	 * new socket, which must find its slot empty. */
	if (cs)
		*cs = (struct curl_sock){ 0 };
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
	hh->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (hh->epfd < 0)
		return -errno;
	r = sd_event_add_io(hh->base.event, &hh->epfd_src, hh->epfd, EPOLLIN, on_epoll, hh);
	if (r < 0)
		return r;
	(void)sd_event_source_set_description(hh->epfd_src, "handler-http-sockets");
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
	/* Silence curl first; its cleanup then closes the connections
	 * through http_close_socket(), which still needs the table. */
	if (hh->multi) {
		curl_multi_setopt(hh->multi, CURLMOPT_SOCKETFUNCTION, NULL);
		curl_multi_setopt(hh->multi, CURLMOPT_TIMERFUNCTION, NULL);
		curl_multi_cleanup(hh->multi);
		hh->multi = NULL;
		curl_global_cleanup();
	}
	hh->timer = sd_event_source_disable_unref(hh->timer);
	hh->epfd_src = sd_event_source_disable_unref(hh->epfd_src);
	if (hh->epfd >= 0)
		close(hh->epfd);
	hh->epfd = -1;
	free(hh->socks);
	hh->socks = NULL;
	hh->n_socks = 0;
}
