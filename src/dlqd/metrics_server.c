/*
 * metrics_server: a deliberately small HTTP/1.1 server for scrapes.
 *
 * Each connection goes READING (the request head, at most
 * METRICS_SERVER_HEAD_MAX bytes) -> WRITING (the whole response, built at once
 * and sent as the socket takes it) -> LINGERING (our side shut down, reading
 * and dropping what the client still sends until it closes). The lingering
 * step is why a 431 reaches the client: closing a socket with unread input
 * makes the kernel send a reset that can destroy the response in flight.
 * One deadline timer per connection covers all three steps, so neither a
 * client that sends slowly nor one that does not read can hold a slot.
 *
 * Why not libmicrohttpd: it would be a new dependency on every host for three
 * GET routes, and it would not be smaller once tied to sd-event (its epoll fd
 * and MHD_get_timeout() polled from our loop, MHD_run() after each wakeup).
 * Its MHD_OPTION_CONNECTION_TIMEOUT is an idle timeout, which a client
 * dripping one byte at a time keeps resetting; the deadline here is for the
 * whole connection, which is what the slow-client tests hold us to. And the
 * bounded head, the 431 that still arrives, and the connection cap with the
 * kernel backlog holding the rest are each a few lines here, where they can
 * be read next to their tests.
 */
#include "dlqd/metrics_server.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/listen_addr.h"
#include "common/log.h"
#include "dlqd/status_page.h"

/* A response is the registry plus a few headers; this only stops runaways. */
#define RESPONSE_MAX (16u * 1024 * 1024)
#define BODY_MAX     (RESPONSE_MAX - 512)
/* What a lingering connection may still send before we stop being polite. */
#define LINGER_MAX (64u * 1024)
/* How long accepting pauses after running out of fds or memory. */
#define ACCEPT_RETRY_USEC (100 * USEC_PER_MSEC)

enum conn_state {
	CONN_READING,
	CONN_WRITING,
	CONN_LINGERING,
};

struct conn {
	struct metrics_server *s;
	struct conn *prev, *next;
	int fd;
	enum conn_state state;
	sd_event_source *io, *timer;
	struct buf out;
	size_t out_off;
	size_t lingered;
	size_t head_len;
	char head[METRICS_SERVER_HEAD_MAX];
};

struct metrics_server {
	sd_event *event;
	const struct metrics *m;
	int fd;
	int port;
	sd_event_source *listen_io, *accept_retry;
	struct conn *conns;
	unsigned n_conns;
	uint64_t timeout_usec;
};

static void update_accepting(struct metrics_server *s)
{
	bool on = s->n_conns < METRICS_SERVER_CONNECTIONS_MAX && !s->accept_retry;
	int r;

	if (!s->listen_io)
		return;
	/* Fails only without memory; the next connection that closes tries again. */
	r = sd_event_source_set_enabled(s->listen_io, on ? SD_EVENT_ON : SD_EVENT_OFF);
	if (r < 0)
		log_warning_errno(r, "cannot %s accepting metrics connections: %m, ignoring",
				  on ? "resume" : "pause");
}

static struct conn *conn_free(struct conn *c)
{
	struct metrics_server *s;

	if (!c)
		return NULL;
	s = c->s;
	sd_event_source_disable_unref(c->io);
	sd_event_source_disable_unref(c->timer);
	if (c->fd >= 0)
		close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->n_conns--;
	buf_done(&c->out);
	free(c);
	update_accepting(s);
	return NULL;
}

static int on_conn_timeout(sd_event_source *es, uint64_t usec, void *userdata)
{
	struct conn *c = userdata;
	struct linger abort_close = { .l_onoff = 1, .l_linger = 0 };

	/*
	 * Reset rather than close a request or response we give up on: a client
	 * that stopped reading would otherwise keep the unsent part in the kernel
	 * long after we let go of it. A lingering connection has its whole
	 * response queued already, and an orderly close still delivers it.
	 */
	if (c->state != CONN_LINGERING)
		(void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &abort_close, sizeof(abort_close));
	conn_free(c);
	return 0;
}

/* Done writing: half-close and drain the client's leftovers until it closes. */
static void conn_linger(struct conn *c)
{
	buf_done(&c->out);
	c->state = CONN_LINGERING;
	if (shutdown(c->fd, SHUT_WR) < 0 || sd_event_source_set_io_events(c->io, EPOLLIN) < 0)
		conn_free(c);
}

static void conn_flush(struct conn *c)
{
	while (c->out_off < c->out.len) {
		ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			conn_free(c);
			return;
		}
		c->out_off += (size_t)n;
	}
	conn_linger(c);
}

static int respond(struct conn *c, int status, const char *reason, const char *extra_headers,
		   const char *type, const char *body, size_t body_len, bool head_only)
{
	int r;

	buf_init(&c->out, RESPONSE_MAX);
	r = buf_printf(&c->out,
		       "HTTP/1.1 %d %s\r\n"
		       "Content-Type: %s\r\n"
		       "Content-Length: %zu\r\n"
		       "Cache-Control: no-store\r\n"
		       "Connection: close\r\n"
		       "%s"
		       "\r\n",
		       status, reason, type, body_len, extra_headers ? extra_headers : "");
	if (r >= 0 && !head_only)
		r = buf_append(&c->out, body, body_len);
	return r;
}

static int respond_text(struct conn *c, int status, const char *reason, const char *extra)
{
	char body[64];
	int n = snprintf(body, sizeof(body), "%d %s\n", status, reason);

	return respond(c, status, reason, extra, "text/plain; charset=utf-8", body,
		       (size_t)MAX(n, 0), false);
}

/* The page may run only its own inline script and talk only to us. */
#define PAGE_HEADERS                                                                   \
	"Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "    \
	"style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action " \
	"'none'; frame-ancestors 'none'\r\n"                                           \
	"X-Content-Type-Options: nosniff\r\n"

static bool is_token(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] >= 0x7f)
			return false;
	return true;
}

/* Whether the n bytes at s are exactly word. */
static bool span_is(const char *s, size_t n, const char *word)
{
	return strlen(word) == n && memcmp(s, word, n) == 0;
}

/* Answers 200 with body when rendering it worked (r >= 0), else 500. */
static int respond_rendered(struct conn *c, int r, struct buf *body, const char *extra_headers,
			    const char *type, bool head_only)
{
	if (r >= 0)
		r = respond(c, 200, "OK", extra_headers, type, body->data ? body->data : "",
			    body->len, head_only);
	else
		r = respond_text(c, 500, "Internal Server Error", NULL);
	buf_done(body);
	return r;
}

static int serve_metrics(struct conn *c, bool head_only)
{
	struct buf body;
	int r;

	buf_init(&body, BODY_MAX);
	r = metrics_render(c->s->m, &body);
	return respond_rendered(c, r, &body, NULL, "text/plain; version=0.0.4; charset=utf-8",
				head_only);
}

static int serve_status_json(struct conn *c, bool head_only)
{
	struct buf body;
	uint64_t now;
	int r;

	buf_init(&body, BODY_MAX);
	/* The page computes rates from this clock, so no answer beats a wrong one. */
	r = sd_event_now(c->s->event, CLOCK_MONOTONIC, &now);
	if (r >= 0)
		r = metrics_render_json(c->s->m, now, &body);
	return respond_rendered(c, r, &body, "X-Content-Type-Options: nosniff\r\n",
				"application/json", head_only);
}

static int serve_page(struct conn *c, bool head_only)
{
	return respond(c, 200, "OK", PAGE_HEADERS, "text/html; charset=utf-8", status_page_html,
		       status_page_html_len, head_only);
}

/* Every path the server answers; anything else is 404. */
static const struct route {
	const char *path; /* without query or fragment */
	int (*serve)(struct conn *c, bool head_only);
} routes[] = {
	{ "/", serve_page },
	{ "/metrics", serve_metrics },
	{ "/status.json", serve_status_json },
};

/* Builds the response to the complete head in c->head[0..len). */
static int handle_request(struct conn *c, size_t len)
{
	const char *line = c->head, *end = memchr(line, '\n', len), *sp1, *sp2, *target;
	size_t line_len, method_len, target_len, path_len;
	bool head_only;

	line_len = (size_t)(end - line);
	if (line_len > 0 && line[line_len - 1] == '\r')
		line_len--;
	sp1 = memchr(line, ' ', line_len);
	sp2 = sp1 ? memchr(sp1 + 1, ' ', line_len - (size_t)(sp1 + 1 - line)) : NULL;
	if (!sp2)
		return respond_text(c, 400, "Bad Request", NULL);
	method_len = (size_t)(sp1 - line);
	target = sp1 + 1;
	target_len = (size_t)(sp2 - target);
	if (!is_token(line, method_len) || !is_token(target, target_len) ||
	    line_len - (size_t)(sp2 + 1 - line) != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
	    (sp2[8] != '0' && sp2[8] != '1'))
		return respond_text(c, 400, "Bad Request", NULL);

	if (span_is(line, method_len, "GET"))
		head_only = false;
	else if (span_is(line, method_len, "HEAD"))
		head_only = true;
	else
		return respond_text(c, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n");

	for (path_len = 0; path_len < target_len; path_len++)
		if (target[path_len] == '?' || target[path_len] == '#')
			break;
	for (size_t i = 0; i < ARRAY_SIZE(routes); i++)
		if (span_is(target, path_len, routes[i].path))
			return routes[i].serve(c, head_only);
	return respond_text(c, 404, "Not Found", NULL);
}

/* Whether the head is complete: CRLF CRLF, or bare LF LF. Scans only new bytes. */
static bool head_complete(const struct conn *c, size_t old_len)
{
	size_t from = old_len > 3 ? old_len - 3 : 0;

	for (size_t i = from; i + 1 < c->head_len; i++)
		if (c->head[i] == '\n' &&
		    (c->head[i + 1] == '\n' ||
		     (c->head[i + 1] == '\r' && i + 2 < c->head_len && c->head[i + 2] == '\n')))
			return true;
	return false;
}

static void conn_read(struct conn *c)
{
	int r;

	for (;;) {
		size_t old = c->head_len;
		ssize_t n;

		if (c->head_len == sizeof(c->head)) {
			r = respond_text(c, 431, "Request Header Fields Too Large", NULL);
			goto respond;
		}
		n = recv(c->fd, c->head + c->head_len, sizeof(c->head) - c->head_len, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			/* Gone before finishing its request: nobody to answer. */
			conn_free(c);
			return;
		}
		c->head_len += (size_t)n;
		if (head_complete(c, old)) {
			r = handle_request(c, c->head_len);
			goto respond;
		}
	}

respond:
	if (r < 0) {
		conn_free(c);
		return;
	}
	c->state = CONN_WRITING;
	if (sd_event_source_set_io_events(c->io, EPOLLOUT) < 0) {
		conn_free(c);
		return;
	}
	conn_flush(c);
}

static void conn_discard(struct conn *c)
{
	char sink[4096];

	for (;;) {
		ssize_t n = recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		c->lingered += n > 0 ? (size_t)n : 0;
		if (n <= 0 || c->lingered > LINGER_MAX) {
			conn_free(c);
			return;
		}
	}
}

static int on_conn_io(sd_event_source *es, int fd, uint32_t revents, void *userdata)
{
	struct conn *c = userdata;

	switch (c->state) {
	case CONN_READING:
		conn_read(c);
		break;
	case CONN_WRITING:
		conn_flush(c);
		break;
	case CONN_LINGERING:
		conn_discard(c);
		break;
	}
	return 0;
}

/* Takes fd on success. */
static int conn_new(struct metrics_server *s, int fd)
{
	struct conn *c;
	uint64_t now;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->s = s;
	c->fd = -1;
	r = sd_event_add_io(s->event, &c->io, fd, EPOLLIN, on_conn_io, c);
	if (r < 0)
		goto fail;
	r = sd_event_now(s->event, CLOCK_MONOTONIC, &now);
	if (r < 0)
		goto fail;
	r = sd_event_add_time(s->event, &c->timer, CLOCK_MONOTONIC,
			      now > UINT64_MAX - s->timeout_usec ? UINT64_MAX
								 : now + s->timeout_usec,
			      USEC_PER_MSEC, on_conn_timeout, c);
	if (r < 0)
		goto fail;
	c->fd = fd;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->n_conns++;
	return 0;

fail:
	sd_event_source_disable_unref(c->io);
	sd_event_source_disable_unref(c->timer);
	free(c);
	return r;
}

static int on_accept_retry(sd_event_source *es, uint64_t usec, void *userdata)
{
	struct metrics_server *s = userdata;

	s->accept_retry = sd_event_source_disable_unref(s->accept_retry);
	update_accepting(s);
	return 0;
}

/* Out of fds or memory: stop accepting for a moment instead of spinning. */
static void accept_pause(struct metrics_server *s)
{
	uint64_t now;
	int r;

	if (s->accept_retry)
		return;
	r = sd_event_now(s->event, CLOCK_MONOTONIC, &now);
	if (r >= 0)
		r = sd_event_add_time(s->event, &s->accept_retry, CLOCK_MONOTONIC,
				      now + ACCEPT_RETRY_USEC, USEC_PER_MSEC, on_accept_retry, s);
	if (r < 0)
		/* Then the next readiness of the listening socket tries again. */
		log_warning_errno(r, "cannot pause accepting metrics connections: %m, ignoring");
}

static int on_listen(sd_event_source *es, int fd, uint32_t revents, void *userdata)
{
	struct metrics_server *s = userdata;

	while (s->n_conns < METRICS_SERVER_CONNECTIONS_MAX) {
		int cfd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (cfd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			/* accept(2): errors of the one connection, try the next. */
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO ||
			    errno == ENETDOWN || errno == ENOPROTOOPT || errno == EHOSTDOWN ||
			    errno == ENONET || errno == EHOSTUNREACH || errno == EOPNOTSUPP ||
			    errno == ENETUNREACH || errno == EPERM)
				continue;
			accept_pause(s);
			break;
		}
		if (conn_new(s, cfd) < 0) {
			close(cfd);
			accept_pause(s);
			break;
		}
	}
	update_accepting(s);
	return 0;
}

static int gai_to_errno(int e)
{
	switch (e) {
	case EAI_SYSTEM:
		return errno > 0 ? -errno : -EIO;
	case EAI_MEMORY:
		return -ENOMEM;
	case EAI_NONAME:
	case EAI_NODATA:
	case EAI_AGAIN:
	case EAI_FAIL:
	case EAI_ADDRFAMILY:
		return -EADDRNOTAVAIL;
	default:
		return -EINVAL;
	}
}

static int listen_on(const struct addrinfo *ai, int *out_fd, int *out_port)
{
	_cleanup_close_ int fd = -1;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int one = 1;

	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		return -errno;
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		return -errno;
	if (listen(fd, SOMAXCONN) < 0)
		return -errno;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		return -errno;
	*out_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
					     : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	*out_fd = fd;
	fd = -1;
	return 0;
}

int metrics_server_new(sd_event *e, const char *listen, const struct metrics *m,
		       struct metrics_server **out)
{
	_cleanup_(metrics_server_freep) struct metrics_server *s = NULL;
	struct addrinfo hints = {
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	};
	struct addrinfo *res = NULL;
	struct listen_addr addr;
	char port[8];
	int r;

	/* The parser config.c validated [metrics] listen with, so the two agree. */
	r = listen_addr_parse(listen, &addr);
	if (r < 0)
		return r;
	snprintf(port, sizeof(port), "%u", (unsigned)addr.port);
	if (addr.ipv6) {
		hints.ai_family = AF_INET6;
		hints.ai_flags |= AI_NUMERICHOST;
	}

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->fd = -1;
	s->m = m;
	s->timeout_usec = METRICS_SERVER_TIMEOUT_USEC;
	s->event = sd_event_ref(e);

	r = getaddrinfo(addr.host, port, &hints, &res);
	if (r != 0)
		/* Brackets hold a numeric IPv6 address or nothing valid. */
		return addr.ipv6 && r != EAI_MEMORY && r != EAI_SYSTEM ? -EINVAL : gai_to_errno(r);
	r = -EADDRNOTAVAIL;
	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		r = listen_on(ai, &s->fd, &s->port);
		if (r >= 0)
			break;
	}
	freeaddrinfo(res);
	if (r < 0)
		return r;

	r = sd_event_add_io(e, &s->listen_io, s->fd, EPOLLIN, on_listen, s);
	if (r < 0)
		return r;
	*out = TAKE_PTR(s);
	return 0;
}

int metrics_server_port(const struct metrics_server *s)
{
	return s->port;
}

unsigned metrics_server_connections(const struct metrics_server *s)
{
	return s->n_conns;
}

void metrics_server_set_timeout_usec(struct metrics_server *s, uint64_t usec)
{
	s->timeout_usec = usec;
}

struct metrics_server *metrics_server_free(struct metrics_server *s)
{
	if (!s)
		return NULL;
	s->listen_io = sd_event_source_disable_unref(s->listen_io);
	s->accept_retry = sd_event_source_disable_unref(s->accept_retry);
	while (s->conns)
		conn_free(s->conns);
	if (s->fd >= 0)
		close(s->fd);
	sd_event_unref(s->event);
	free(s);
	return NULL;
}

void metrics_server_freep(struct metrics_server **s)
{
	*s = metrics_server_free(*s);
}
