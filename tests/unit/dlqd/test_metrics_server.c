/*
 * test_metrics_server: the scrape endpoint on a real sd-event loop, with
 * nonblocking clients on loopback living in the same loop: routes and status
 * codes, the 8 KiB head bound, the per-connection deadline against a slow
 * client and one that never reads, 100 concurrent scrapes under the 64
 * connection limit, bad listen addresses, and no fd left behind.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <systemd/sd-event.h>

#include "dlqd/metrics.h"
#include "dlqd/metrics_server.h"
#include "dlqd/status_page.h"
#include "common/util.h"
#include "testutil.h"

/* Only guards against a hang; no assertion depends on it. */
#define SAFETY_USEC (30 * USEC_PER_SEC)

struct client {
	int fd;
	sd_event_source *io, *drip;
	char *req;
	size_t req_len, sent;
	size_t drip_bytes; /* 0: send the request at once */
	bool no_read;	   /* never reads: a client that stalls the server's writes */
	struct buf resp;
	bool done; /* the server closed (EOF or reset) */
};

/* The body of the last parsed response, so it outlives its client. */
static char *last_body;

struct fixture {
	int fds_before;
	sd_event *e;
	struct metrics *m;
	struct metrics_server *s;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->fds_before = count_fds();
	assert_int_equal(sd_event_new(&f->e), 0);
	assert_int_equal(metrics_new(&f->m), 0);
	metrics_consumed(f->m);
	metrics_retried(f->m, "UPSTREAM_TIMEOUT", "TRANSIENT");
	metrics_handler_duration(f->m, 12345);
	metrics_set_dlq(f->m, 3, 42);
	assert_int_equal(metrics_server_new(f->e, "127.0.0.1:0", f->m, &f->s), 0);
	assert_true(metrics_server_port(f->s) > 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	f->s = metrics_server_free(f->s);
	assert_null(f->s);
	metrics_free(f->m);
	sd_event_unref(f->e);
	free(last_body);
	last_body = NULL;
	/* Every socket, timer and epoll fd is gone again. */
	assert_int_equal(count_fds(), f->fds_before);
	free(f);
	return 0;
}

/* --- a nonblocking client in the same loop ----------------------------------- */

static void client_close(struct client *c)
{
	c->io = sd_event_source_disable_unref(c->io);
	c->drip = sd_event_source_disable_unref(c->drip);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static void client_free(struct client *c)
{
	if (!c)
		return;
	client_close(c);
	buf_done(&c->resp);
	free(c->req);
	free(c);
}

static void client_send(struct client *c, size_t max)
{
	while (c->sent < c->req_len && max > 0) {
		ssize_t n = send(c->fd, c->req + c->sent, MIN(max, c->req_len - c->sent),
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			/* The server may close on us mid-request (431, deadline). */
			assert_true(errno == EAGAIN || errno == EPIPE || errno == ECONNRESET);
			return;
		}
		c->sent += (size_t)n;
		max -= (size_t)n;
	}
}

static void client_update_events(struct client *c)
{
	uint32_t ev = 0;

	if (!c->drip_bytes && c->sent < c->req_len)
		ev |= EPOLLOUT;
	if (!c->no_read)
		ev |= EPOLLIN;
	if (ev) {
		assert_int_equal(sd_event_source_set_io_events(c->io, ev), 0);
		assert_int_equal(sd_event_source_set_enabled(c->io, SD_EVENT_ON), 0);
	} else {
		assert_int_equal(sd_event_source_set_enabled(c->io, SD_EVENT_OFF), 0);
	}
}

static int on_client_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct client *c = userdata;

	if (revents & EPOLLOUT)
		client_send(c, SIZE_MAX);
	if (!c->no_read && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
		for (;;) {
			char b[16384];
			ssize_t n = recv(c->fd, b, sizeof(b), MSG_DONTWAIT);

			if (n > 0) {
				assert_int_equal(buf_append(&c->resp, b, (size_t)n), 0);
				continue;
			}
			if (n < 0 && errno == EAGAIN)
				break;
			assert_true(n == 0 || errno == ECONNRESET || errno == EPIPE);
			c->done = true;
			client_close(c);
			return 0;
		}
	}
	client_update_events(c);
	return 0;
}

static int on_client_drip(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct client *c = userdata;

	client_send(c, c->drip_bytes);
	sd_event_source_set_time(s, usec + 50 * USEC_PER_MSEC);
	return 0;
}

static struct client *client_new(struct fixture *f, const char *req, size_t req_len,
				 size_t drip_bytes, int rcvbuf)
{
	struct client *c = calloc(1, sizeof(*c));
	struct sockaddr_in sa = {
		.sin_family = AF_INET,
		.sin_port = htons((uint16_t)metrics_server_port(f->s)),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};

	assert_non_null(c);
	buf_init(&c->resp, 4 << 20);
	c->req = malloc(req_len + 1);
	assert_non_null(c->req);
	memcpy(c->req, req, req_len);
	c->req_len = req_len;
	c->drip_bytes = drip_bytes;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(c->fd >= 0);
	if (rcvbuf > 0)
		assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)),
				 0);
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		assert_int_equal(errno, EINPROGRESS);
	assert_int_equal(sd_event_add_io(f->e, &c->io, c->fd, EPOLLOUT, on_client_io, c), 0);
	if (drip_bytes) {
		uint64_t now;
		sd_event_now(f->e, CLOCK_MONOTONIC, &now);
		assert_int_equal(sd_event_add_time(f->e, &c->drip, CLOCK_MONOTONIC, now, 1,
						   on_client_drip, c),
				 0);
		assert_int_equal(sd_event_source_set_enabled(c->drip, SD_EVENT_ON), 0);
		client_update_events(c);
	}
	return c;
}

static struct client *client_get(struct fixture *f, const char *req)
{
	return client_new(f, req, strlen(req), 0, 0);
}

/* Runs the loop until every client is done; fails after SAFETY_USEC. */
static unsigned run_until_done(struct fixture *f, struct client **cs, size_t n)
{
	uint64_t deadline = now_monotonic_usec() + SAFETY_USEC;
	unsigned max_conns = 0;

	for (;;) {
		size_t done = 0;

		for (size_t i = 0; i < n; i++)
			done += cs[i]->done;
		if (done == n)
			return max_conns;
		assert_true(now_monotonic_usec() < deadline);
		assert_true(sd_event_run(f->e, 100 * USEC_PER_MSEC) >= 0);
		if (f->s)
			max_conns = MAX(max_conns, metrics_server_connections(f->s));
	}
}

static void run_until_connections(struct fixture *f, unsigned n)
{
	uint64_t deadline = now_monotonic_usec() + SAFETY_USEC;

	while (metrics_server_connections(f->s) != n) {
		assert_true(now_monotonic_usec() < deadline);
		assert_true(sd_event_run(f->e, 100 * USEC_PER_MSEC) >= 0);
	}
}

/* Runs the loop for about usec: used only to show that nothing happens. */
static void run_for(struct fixture *f, uint64_t usec)
{
	uint64_t end = now_monotonic_usec() + usec;

	while (now_monotonic_usec() < end)
		assert_true(sd_event_run(f->e, 10 * USEC_PER_MSEC) >= 0);
}

struct response {
	int status;
	char head[4096];
	const char *body;
	size_t body_len;
};

/* Parses a complete response and checks its framing. */
static void parse_response(const struct client *c, struct response *r, bool head_only)
{
	const char *data = c->resp.data, *end, *cl;
	size_t head_len;
	unsigned long len;

	assert_true(c->done);
	assert_non_null(data);
	assert_int_equal(sscanf(data, "HTTP/1.1 %d ", &r->status), 1);
	end = strstr(data, "\r\n\r\n");
	assert_non_null(end);
	head_len = (size_t)(end - data) + 2;
	assert_true(head_len < sizeof(r->head));
	memcpy(r->head, data, head_len);
	r->head[head_len] = '\0';
	r->body_len = c->resp.len - (size_t)(end + 4 - data);
	free(last_body);
	last_body = malloc(r->body_len + 1);
	assert_non_null(last_body);
	memcpy(last_body, end + 4, r->body_len);
	last_body[r->body_len] = '\0';
	r->body = last_body;
	assert_non_null(strstr(r->head, "\r\nConnection: close\r\n"));
	cl = strstr(r->head, "\r\nContent-Length: ");
	assert_non_null(cl);
	len = strtoul(cl + 18, NULL, 10);
	assert_int_equal(r->body_len, head_only ? 0 : len);
}

static void expect_status(struct fixture *f, const char *req, int status, struct response *r)
{
	struct client *c = client_get(f, req);

	run_until_done(f, &c, 1);
	parse_response(c, r, strncmp(req, "HEAD ", 5) == 0);
	if (r->status != status)
		fail_msg("%s -> %d, want %d", req, r->status, status);
	client_free(c);
}

/* --- tests ------------------------------------------------------------------- */

static void test_metrics_scrape(void **state)
{
	struct fixture *f = *state;
	struct response r;
	struct buf want;

	expect_status(f, "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", 200, &r);
	assert_non_null(strstr(r.head, "\r\nContent-Type: text/plain; version=0.0.4"));
	buf_init(&want, 1 << 20);
	assert_int_equal(metrics_render(f->m, &want), 0);
	assert_int_equal(r.body_len, want.len);
	assert_memory_equal(r.body, want.data, want.len);
	buf_done(&want);
	assert_non_null(strstr(r.body, "dlqd_messages_consumed_total 1\n"));

	/* Each scrape renders the registry as it is now. */
	metrics_consumed(f->m);
	expect_status(f, "GET /metrics HTTP/1.1\r\n\r\n", 200, &r);
	assert_non_null(strstr(r.body, "dlqd_messages_consumed_total 2\n"));
	run_until_connections(f, 0);
}

static void test_routes(void **state)
{
	struct fixture *f = *state;
	struct response r;

	expect_status(f, "GET / HTTP/1.1\r\n\r\n", 200, &r);
	assert_non_null(strstr(r.head, "Content-Type: text/html"));
	assert_non_null(strstr(r.body, "href=\"/metrics\""));
	/* The status page is the whole document: nothing loaded from elsewhere,
	 * and the browser is told so. */
	assert_int_equal(r.body_len, status_page_html_len);
	assert_memory_equal(r.body, status_page_html, r.body_len);
	assert_non_null(strstr(r.body, "/status.json"));
	assert_null(strstr(r.body, "src="));
	assert_null(strstr(r.body, "http://"));
	assert_null(strstr(r.body, "https://"));
	assert_null(strstr(r.body, "@import"));
	assert_non_null(strstr(r.head, "\r\nContent-Security-Policy: default-src 'none'; "));
	assert_non_null(strstr(r.head, "connect-src 'self'"));

	/* /status.json is metrics_render_json() of the registry. */
	expect_status(f, "GET /status.json HTTP/1.1\r\n\r\n", 200, &r);
	assert_non_null(strstr(r.head, "\r\nContent-Type: application/json\r\n"));
	assert_true(r.body_len > 2 && r.body[0] == '{' && r.body[r.body_len - 1] == '\n');
	assert_non_null(strstr(r.body, "\"consumed\":1,"));
	assert_non_null(strstr(r.body, "\"now_seconds\":"));
	expect_status(f, "HEAD /status.json HTTP/1.1\r\n\r\n", 200, &r);
	expect_status(f, "GET /status.json?x=1 HTTP/1.1\r\n\r\n", 200, &r);
	expect_status(f, "GET /status.jsonx HTTP/1.1\r\n\r\n", 404, &r);
	expect_status(f, "POST /status.json HTTP/1.1\r\n\r\n", 405, &r);

	expect_status(f, "GET /metrics?name[]=x HTTP/1.1\r\n\r\n", 200, &r);
	assert_non_null(strstr(r.body, "# TYPE dlqd_build_info gauge"));
	expect_status(f, "GET /metrics HTTP/1.0\r\n\r\n", 200, &r);
	expect_status(f, "GET /metrics HTTP/1.1\n\n", 200, &r); /* bare LF */
	expect_status(f, "HEAD /metrics HTTP/1.1\r\n\r\n", 200, &r);
	assert_int_equal(r.body_len, 0);
	assert_null(strstr(r.head, "Content-Length: 0\r\n"));

	expect_status(f, "GET /nope HTTP/1.1\r\n\r\n", 404, &r);
	expect_status(f, "GET /metricsx HTTP/1.1\r\n\r\n", 404, &r);
	expect_status(f, "GET /metrics/ HTTP/1.1\r\n\r\n", 404, &r);
	/* Routes match whole paths, never a prefix of one or of another route. */
	expect_status(f, "GET /metric HTTP/1.1\r\n\r\n", 404, &r);
	expect_status(f, "GET /status HTTP/1.1\r\n\r\n", 404, &r);
	expect_status(f, "GET // HTTP/1.1\r\n\r\n", 404, &r);
	expect_status(f, "GET metrics HTTP/1.1\r\n\r\n", 404, &r);
	expect_status(f, "GET /metrics#top HTTP/1.1\r\n\r\n", 200, &r);
	assert_non_null(strstr(r.body, "# TYPE dlqd_build_info gauge"));
	expect_status(f, "GET /?refresh=1 HTTP/1.1\r\n\r\n", 200, &r);
	assert_int_equal(r.body_len, status_page_html_len);
	expect_status(f, "GETS /metrics HTTP/1.1\r\n\r\n", 405, &r);
	expect_status(f, "GE /metrics HTTP/1.1\r\n\r\n", 405, &r);
	expect_status(f, "HEADER /metrics HTTP/1.1\r\n\r\n", 405, &r);
	expect_status(f, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405, &r);
	assert_non_null(strstr(r.head, "\r\nAllow: GET, HEAD\r\n"));
	expect_status(f, "DELETE / HTTP/1.1\r\n\r\n", 405, &r);
	expect_status(f, "get /metrics HTTP/1.1\r\n\r\n", 405, &r);

	expect_status(f, "hello\r\n\r\n", 400, &r);
	expect_status(f, "GET /metrics\r\n\r\n", 400, &r);
	expect_status(f, "GET /metrics HTTP/2.0\r\n\r\n", 400, &r);
	expect_status(f, "GET /metrics HTTP/1.1 x\r\n\r\n", 400, &r);
	expect_status(f, "GET  /metrics HTTP/1.1\r\n\r\n", 400, &r);
	expect_status(f, "\r\n\r\n", 400, &r);
	run_until_connections(f, 0);
}

/* A request that closes before its head is complete gets nothing. */
static void test_client_gives_up(void **state)
{
	struct fixture *f = *state;
	struct client *c = client_get(f, "GET /metrics HTTP/1.1\r\n");

	run_until_connections(f, 1);
	run_for(f, 50 * USEC_PER_MSEC);
	assert_int_equal(c->sent, c->req_len);
	assert_false(c->done);
	shutdown(c->fd, SHUT_WR);
	run_until_done(f, &c, 1);
	assert_int_equal(c->resp.len, 0);
	run_until_connections(f, 0);
	client_free(c);
}

static char *head_of_size(size_t size)
{
	static const char start[] = "GET /metrics HTTP/1.1\r\nX-Fill: ";
	char *req = malloc(size + 1);

	assert_non_null(req);
	assert_true(size > sizeof(start) + 4);
	memcpy(req, start, sizeof(start) - 1);
	memset(req + sizeof(start) - 1, 'a', size - (sizeof(start) - 1) - 4);
	memcpy(req + size - 4, "\r\n\r\n", 5);
	assert_int_equal(strlen(req), size);
	return req;
}

static void test_head_bound(void **state)
{
	struct fixture *f = *state;
	struct response r;
	char *req;

	/* Exactly the bound is fine... */
	req = head_of_size(METRICS_SERVER_HEAD_MAX);
	expect_status(f, req, 200, &r);
	free(req);
	/* ...one byte more is not... */
	req = head_of_size(METRICS_SERVER_HEAD_MAX + 1);
	expect_status(f, req, 431, &r);
	free(req);
	/* ...and a huge one gets its 431 too, while still sending. */
	req = head_of_size(1 << 20);
	expect_status(f, req, 431, &r);
	free(req);
	run_until_connections(f, 0);
}

static void test_slow_client(void **state)
{
	struct fixture *f = *state;
	static const char req[] = "GET /metrics HTTP/1.1\r\nUser-Agent: one byte at a time, "
				  "never finishing within the deadline\r\n\r\n";
	struct client *c, *ok;
	struct response r;

	metrics_server_set_timeout_usec(f->s, 300 * USEC_PER_MSEC);
	c = client_new(f, req, sizeof(req) - 1, 1, 0);
	/* A normal scrape is served meanwhile. */
	ok = client_get(f, "GET /metrics HTTP/1.1\r\n\r\n");
	run_until_done(f, &ok, 1);
	parse_response(ok, &r, false);
	assert_int_equal(r.status, 200);
	assert_false(c->done);

	run_until_done(f, &c, 1);
	/* Closed although it kept sending, without an answer. */
	assert_true(c->sent >= 2);
	assert_true(c->sent < c->req_len);
	assert_int_equal(c->resp.len, 0);
	run_until_connections(f, 0);
	client_free(c);
	client_free(ok);
}

static void test_idle_client(void **state)
{
	struct fixture *f = *state;
	struct client *c;

	metrics_server_set_timeout_usec(f->s, 200 * USEC_PER_MSEC);
	c = client_new(f, "", 0, 0, 0);
	run_until_done(f, &c, 1);
	assert_int_equal(c->resp.len, 0);
	run_until_connections(f, 0);
	client_free(c);
}

/*
 * The server's end of client c's connection, found among our own fds, so a
 * test can shrink its send buffer: loopback autotuning would otherwise take
 * a whole response in one send() and never exercise the EPOLLOUT path.
 */
static void shrink_server_sndbuf(struct fixture *f, const struct client *c)
{
	struct sockaddr_in local, peer, mine;
	socklen_t sl = sizeof(local);
	int found = -1, size = 4096;
	DIR *d;
	struct dirent *de;

	assert_int_equal(getsockname(c->fd, (struct sockaddr *)&local, &sl), 0);
	d = opendir("/proc/self/fd");
	assert_non_null(d);
	while ((de = readdir(d))) {
		int fd = atoi(de->d_name);
		socklen_t pl = sizeof(peer), ml = sizeof(mine);

		if (de->d_name[0] == '.' || fd == c->fd ||
		    getpeername(fd, (struct sockaddr *)&peer, &pl) < 0 ||
		    getsockname(fd, (struct sockaddr *)&mine, &ml) < 0 ||
		    peer.sin_family != AF_INET)
			continue;
		if (peer.sin_port == local.sin_port &&
		    peer.sin_addr.s_addr == local.sin_addr.s_addr &&
		    ntohs(mine.sin_port) == metrics_server_port(f->s))
			found = fd;
	}
	closedir(d);
	assert_true(found >= 0);
	assert_int_equal(setsockopt(found, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)), 0);
}

/* Sends req now (the client was created with an empty one). */
static void client_request(struct client *c, const char *req)
{
	free(c->req);
	c->req = strdup(req);
	assert_non_null(c->req);
	c->req_len = strlen(req);
	c->sent = 0;
	client_update_events(c);
}

/* Fills the registry so a scrape is well over 100 KB. */
static void big_registry(struct metrics *m)
{
	char code[METRICS_LABEL_VALUE_MAX + 1];

	for (int i = 0; i < METRICS_LABEL_PAIRS_MAX; i++) {
		snprintf(code, sizeof(code), "%0*d", METRICS_LABEL_VALUE_MAX, i);
		metrics_retried(m, code, "TRANSIENT");
		metrics_dead_lettered(m, code, "NON_RETRYABLE");
	}
}

/* A client reading slowly through small buffers still gets every byte. */
static void test_slow_reader(void **state)
{
	struct fixture *f = *state;
	struct client *c;
	struct response r;
	struct buf want;

	big_registry(f->m);
	buf_init(&want, 1 << 20);
	assert_int_equal(metrics_render(f->m, &want), 0);
	assert_true(want.len > 100000);
	c = client_new(f, "", 0, 0, 1024);
	run_until_connections(f, 1);
	shrink_server_sndbuf(f, c);
	client_request(c, "GET /metrics HTTP/1.1\r\n\r\n");
	run_until_done(f, &c, 1);
	parse_response(c, &r, false);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, want.len);
	assert_memory_equal(r.body, want.data, want.len);
	buf_done(&want);
	run_until_connections(f, 0);
	client_free(c);
}

/* A client that never reads a large response cannot stall the loop. */
static void test_client_not_reading(void **state)
{
	struct fixture *f = *state;
	struct client *stuck, *ok;
	struct response r;

	big_registry(f->m);
	metrics_server_set_timeout_usec(f->s, 500 * USEC_PER_MSEC);
	stuck = client_new(f, "", 0, 0, 1024);
	stuck->no_read = true;
	run_until_connections(f, 1);
	shrink_server_sndbuf(f, stuck);
	client_request(stuck, "GET /metrics HTTP/1.1\r\n\r\n");
	while (stuck->sent < stuck->req_len)
		assert_true(sd_event_run(f->e, 100 * USEC_PER_MSEC) >= 0);

	/* Meanwhile other scrapes are answered. */
	ok = client_get(f, "GET /metrics HTTP/1.1\r\n\r\n");
	run_until_done(f, &ok, 1);
	parse_response(ok, &r, false);
	assert_int_equal(r.status, 200);
	assert_true(r.body_len > 100000);
	/* The stuck one still holds its connection, then the deadline ends it. */
	run_until_connections(f, 1);
	assert_false(stuck->done);
	run_until_connections(f, 0);
	/*
	 * The server wrote only what the buffers took and the deadline reset the
	 * connection: reading now yields part of the response, never all of it.
	 */
	stuck->no_read = false;
	client_update_events(stuck);
	run_until_done(f, &stuck, 1);
	assert_true(stuck->resp.len < r.body_len);
	client_free(stuck);
	client_free(ok);
}

static void test_concurrent(void **state)
{
	struct fixture *f = *state;
	struct client *cs[100];
	struct buf want;
	unsigned max_conns;

	buf_init(&want, 1 << 20);
	assert_int_equal(metrics_render(f->m, &want), 0);
	for (size_t i = 0; i < ARRAY_SIZE(cs); i++)
		cs[i] = client_get(f, i % 2 ? "GET /metrics HTTP/1.1\r\n\r\n"
					    : "GET /metrics HTTP/1.0\r\nHost: a\r\n\r\n");
	max_conns = run_until_done(f, cs, ARRAY_SIZE(cs));
	assert_true(max_conns <= METRICS_SERVER_CONNECTIONS_MAX);
	for (size_t i = 0; i < ARRAY_SIZE(cs); i++) {
		struct response r;
		parse_response(cs[i], &r, false);
		assert_int_equal(r.status, 200);
		assert_int_equal(r.body_len, want.len);
		assert_memory_equal(r.body, want.data, want.len);
		client_free(cs[i]);
	}
	buf_done(&want);
	run_until_connections(f, 0);
}

/* At the limit the server stops accepting; a freed slot lets the next in. */
static void test_connection_limit(void **state)
{
	struct fixture *f = *state;
	struct client *idle[METRICS_SERVER_CONNECTIONS_MAX], *extra;
	struct response r;

	for (size_t i = 0; i < ARRAY_SIZE(idle); i++)
		idle[i] = client_new(f, "", 0, 0, 0);
	run_until_connections(f, METRICS_SERVER_CONNECTIONS_MAX);
	extra = client_get(f, "GET /metrics HTTP/1.1\r\n\r\n");
	run_for(f, 100 * USEC_PER_MSEC);
	assert_int_equal(metrics_server_connections(f->s), METRICS_SERVER_CONNECTIONS_MAX);
	assert_false(extra->done);
	assert_int_equal(extra->resp.len, 0);

	/* One idle client leaves: the waiting one is accepted and served. */
	client_free(idle[0]);
	idle[0] = NULL;
	run_until_done(f, &extra, 1);
	parse_response(extra, &r, false);
	assert_int_equal(r.status, 200);
	for (size_t i = 1; i < ARRAY_SIZE(idle); i++)
		assert_false(idle[i]->done);

	/* Freeing the server closes every connection it holds. */
	f->s = metrics_server_free(f->s);
	run_until_done(f, idle + 1, ARRAY_SIZE(idle) - 1);
	for (size_t i = 1; i < ARRAY_SIZE(idle); i++)
		client_free(idle[i]);
	client_free(extra);
}

static void test_listen_addresses(void **state)
{
	struct fixture *f = *state;
	static const char *const bad[] = {
		"",
		"127.0.0.1",
		":9464",
		"127.0.0.1:",
		"127.0.0.1:65536",
		"127.0.0.1:-1",
		"127.0.0.1:x",
		"127.0.0.1:1:2",
		"::1:9464",
		"[::1]",
		"[::1]9464",
		"[]:9464",
		"[::1:9464",
		"[127.0.0.1]:0",
		"127.0.0.1: 80",
		"127.0.0.1:+80",
	};
	struct metrics_server *s = NULL;
	char addr[64];
	int r;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		r = metrics_server_new(f->e, bad[i], f->m, &s);
		if (r != -EINVAL)
			fail_msg("'%s' -> %d, want -EINVAL", bad[i], r);
		assert_null(s);
	}
	assert_int_equal(metrics_server_new(f->e, NULL, f->m, &s), -EINVAL);

	/* The port is taken (by the fixture's server). */
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", metrics_server_port(f->s));
	assert_int_equal(metrics_server_new(f->e, addr, f->m, &s), -EADDRINUSE);
	assert_null(s);
	/* An address this host does not have (TEST-NET-1). */
	assert_int_equal(metrics_server_new(f->e, "192.0.2.1:0", f->m, &s), -EADDRNOTAVAIL);

	/* IPv6 loopback, where the host has it. */
	r = metrics_server_new(f->e, "[::1]:0", f->m, &s);
	if (r >= 0) {
		assert_true(metrics_server_port(s) > 0);
		s = metrics_server_free(s);
	} else {
		assert_true(r == -EADDRNOTAVAIL || r == -EAFNOSUPPORT);
	}
	/* A name that resolves locally. */
	r = metrics_server_new(f->e, "localhost:0", f->m, &s);
	assert_int_equal(r, 0);
	s = metrics_server_free(s);
	assert_null(metrics_server_free(NULL));
	metrics_server_freep(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_metrics_scrape, setup, teardown),
		cmocka_unit_test_setup_teardown(test_routes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_gives_up, setup, teardown),
		cmocka_unit_test_setup_teardown(test_head_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slow_client, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_client, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slow_reader, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_not_reading, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listen_addresses, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
