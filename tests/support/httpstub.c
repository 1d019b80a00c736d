/*
 * dlqd-httpstub: the downstream service that tests and benchmarks talk to.
 *
 * A single-threaded epoll HTTP/1.1 server with keep-alive and pipelining.
 * Every POST body is a job payload; its optional "stub" object chooses the
 * answer (ok, fail, retry_after, error_code, sleep, hang, close, body), using
 * the X-Attempt header as the number of failures so far. Delayed answers wait
 * on a min-heap of deadlines that bounds the epoll_wait timeout, so nothing
 * ever blocks. With --log every answered request becomes one JSON line,
 * written with a single write() so concurrent readers never see half a line.
 * With --body-log every complete request also becomes one line there, its
 * body in base64, so tests can compare the bytes a client sent exactly.
 * With --fail-file FILE, every job is answered 503 while FILE exists: a test
 * starts and ends a downstream outage by creating and removing it.
 *
 * It depends on libc only, so it is built from this one file, and everything
 * a client sends is bounded: 64 KiB of header (431), 10 MiB of body (413),
 * 10000 connections.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADER   (64 * 1024)
#define MAX_BODY     (10 * 1024 * 1024)
#define MAX_CONNS    10000
#define RBUF_INITIAL (16 * 1024)
#define RBUF_MAX     (MAX_HEADER + MAX_BODY + 16 * 1024)
/* Past this much unsent output we stop answering pipelined requests. */
#define OUT_HIGH_WATER (1024 * 1024)
#define FILLER_SIZE    (64 * 1024)
#define MAX_FILLER     ((uint64_t)1 << 30)
/* How long a connection we shut down may linger to drain the peer's data. */
#define LINGER_USEC   (2 * 1000000ULL)
#define LOG_FIELD_MAX 256
#define STUB_STR_MAX  128
#define MAX_EVENTS    256
#define ACCEPT_BURST  128

static const char ok_body[] = "{\"ok\":true}";
static const char ok_response[] = "HTTP/1.1 200 OK\r\n"
				  "Content-Type: application/json\r\n"
				  "Content-Length: 11\r\n"
				  "\r\n"
				  "{\"ok\":true}";
static const char continue_response[] = "HTTP/1.1 100 Continue\r\n\r\n";
static char filler[FILLER_SIZE];

enum obj_kind {
	OBJ_LISTENER,
	OBJ_SIGNAL,
	OBJ_CONN,
};

struct obj {
	enum obj_kind kind;
};

enum action {
	ACT_RESPOND,
	ACT_HANG,
	ACT_CLOSE,
};

/* What to answer to one request; copied out of the read buffer. */
struct plan {
	enum action action;
	int status;
	long retry_after; /* -1: no Retry-After header */
	uint64_t filler;  /* body of this many filler bytes instead of body[] */
	size_t body_len;
	bool close;	/* Connection: close */
	bool keepalive; /* Connection: keep-alive, which HTTP/1.0 needs to hear */
	uint64_t delay_usec;
	long attempt;
	/* the arrays stay last: plan_reset() clears only what comes before */
	char body[2 * STUB_STR_MAX + 64];
	char message_id[LOG_FIELD_MAX];
	char trace_id[LOG_FIELD_MAX];
};

/* The parsed head of the request being received. Offsets are from its start. */
struct req {
	bool post;
	bool http10;
	bool conn_close;
	bool conn_keepalive;
	bool has_length;
	uint64_t length;
	bool json;
	bool chunked;
	bool expect_continue;
	size_t mid_off, mid_len;
	size_t trace_off, trace_len;
	long attempt;
};

enum conn_state {
	C_ACTIVE,
	C_WAIT,	  /* a delayed answer is pending on the timer */
	C_HANG,	  /* never answers again; input is discarded */
	C_LINGER, /* we sent FIN; discard input until EOF or the timer */
};

struct conn {
	struct obj obj;
	int fd;
	enum conn_state state;
	uint32_t events;

	char *rbuf;
	size_t rlen, rcap, roff;
	size_t scan; /* bytes after roff already searched for the header end */
	bool head_done;
	size_t head_len;
	struct req req;
	bool sent_continue;
	bool peer_eof;

	char *obuf;
	size_t olen, ooff, ocap;
	uint64_t filler_left;
	bool close_after; /* shut down once the output is flushed */

	struct plan pending;
	uint64_t deadline;
	size_t heap_idx; /* SIZE_MAX when not on the heap */

	struct conn *prev, *next;
};

struct server {
	int epfd;
	struct obj listener;
	int listen_fd;
	bool listen_paused;
	struct obj sig;
	int sig_fd;
	int log_fd;
	int body_log_fd;
	uint64_t delay_usec;
	bool quiet;
	const char *fail_file; /* --fail-file: while it exists, every job gets 503 */

	struct conn *conns;
	unsigned n_conns;
	struct conn **heap;
	size_t heap_len, heap_cap;
};

static void note(struct server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct server *s, const char *fmt, ...)
{
	va_list ap;

	if (s && s->quiet)
		return;
	va_start(ap, fmt);
	fputs("dlqd-httpstub: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static uint64_t now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000;
}

/* ---- timer heap: at most one deadline per connection ---- */

static bool heap_less(struct server *s, size_t a, size_t b)
{
	return s->heap[a]->deadline < s->heap[b]->deadline;
}

static void heap_swap(struct server *s, size_t a, size_t b)
{
	struct conn *t = s->heap[a];

	s->heap[a] = s->heap[b];
	s->heap[b] = t;
	s->heap[a]->heap_idx = a;
	s->heap[b]->heap_idx = b;
}

static void heap_up(struct server *s, size_t i)
{
	while (i > 0 && heap_less(s, i, (i - 1) / 2)) {
		heap_swap(s, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_down(struct server *s, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < s->heap_len && heap_less(s, l, m))
			m = l;
		if (r < s->heap_len && heap_less(s, r, m))
			m = r;
		if (m == i)
			return;
		heap_swap(s, i, m);
		i = m;
	}
}

static void heap_remove(struct server *s, struct conn *c)
{
	size_t i = c->heap_idx;

	if (i == SIZE_MAX)
		return;
	c->heap_idx = SIZE_MAX;
	s->heap_len--;
	if (i == s->heap_len)
		return;
	s->heap[i] = s->heap[s->heap_len];
	s->heap[i]->heap_idx = i;
	heap_up(s, i);
	heap_down(s, s->heap[i]->heap_idx);
}

static int heap_arm(struct server *s, struct conn *c, uint64_t deadline)
{
	heap_remove(s, c);
	if (s->heap_len == s->heap_cap) {
		size_t cap = s->heap_cap ? s->heap_cap * 2 : 64;
		struct conn **h = realloc(s->heap, cap * sizeof(*h));

		if (!h)
			return -ENOMEM;
		s->heap = h;
		s->heap_cap = cap;
	}
	c->deadline = deadline;
	c->heap_idx = s->heap_len;
	s->heap[s->heap_len++] = c;
	heap_up(s, c->heap_idx);
	return 0;
}

/* ---- a minimal JSON scanner: only what finding "stub" needs ---- */

struct scan {
	const char *p, *end;
	int depth;
};

struct stub {
	char op[32];
	bool has_status, has_times, has_seconds, has_ms, has_bytes;
	long long status, times, seconds, ms, bytes;
	/* raw JSON string contents, escapes kept, so they can be echoed as is */
	char error_code[STUB_STR_MAX];
	char error_class[STUB_STR_MAX];
	bool has_error_code, has_error_class;
};

static void scan_ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static int scan_string(struct scan *s, const char **start, size_t *len)
{
	if (s->p >= s->end || *s->p != '"')
		return -1;
	s->p++;
	*start = s->p;
	while (s->p < s->end) {
		unsigned char ch = (unsigned char)*s->p;

		if (ch == '"') {
			*len = (size_t)(s->p - *start);
			s->p++;
			return 0;
		}
		if (ch < 0x20)
			return -1;
		if (ch == '\\') {
			if (s->end - s->p < 2)
				return -1;
			if (s->p[1] == 'u') {
				if (s->end - s->p < 6)
					return -1;
				for (int i = 2; i < 6; i++) {
					char h = s->p[i];
					if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') ||
					      (h >= 'A' && h <= 'F')))
						return -1;
				}
				s->p += 6;
				continue;
			}
			if (!strchr("\"\\/bfnrt", s->p[1]))
				return -1;
			s->p += 2;
			continue;
		}
		s->p++;
	}
	return -1;
}

static int scan_digits(struct scan *s)
{
	const char *b = s->p;

	while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
		s->p++;
	return s->p > b ? 0 : -1;
}

/* Scans a JSON number; *integer is set when it has no fraction or exponent. */
static int scan_number(struct scan *s, long long *val, bool *integer)
{
	const char *b = s->p;
	bool neg = false;

	*integer = true;
	if (s->p < s->end && *s->p == '-') {
		neg = true;
		s->p++;
	}
	if (scan_digits(s) < 0)
		return -1;
	if (s->p < s->end && *s->p == '.') {
		s->p++;
		if (scan_digits(s) < 0)
			return -1;
		*integer = false;
	}
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
		s->p++;
		if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
			s->p++;
		if (scan_digits(s) < 0)
			return -1;
		*integer = false;
	}
	if (*integer) {
		long long v = 0;

		for (const char *q = b + neg; q < s->p; q++) {
			if (v > (LLONG_MAX - 9) / 10) {
				*integer = false;
				break;
			}
			v = v * 10 + (*q - '0');
		}
		*val = neg ? -v : v;
	}
	return 0;
}

static int scan_value(struct scan *s);

static int scan_literal(struct scan *s, const char *lit)
{
	size_t n = strlen(lit);

	if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
		return -1;
	s->p += n;
	return 0;
}

/*
 * Walks an object or array; for each member of an object calls member()
 * (which must consume the value) when given, else skips the value.
 */
typedef int (*member_fn)(struct scan *s, const char *key, size_t key_len, void *userdata);

static int scan_container(struct scan *s, member_fn member, void *userdata)
{
	char close = *s->p == '{' ? '}' : ']';
	bool object = close == '}';
	int r;

	if (++s->depth > 64)
		return -1;
	s->p++;
	scan_ws(s);
	if (s->p < s->end && *s->p == close) {
		s->p++;
		s->depth--;
		return 0;
	}
	for (;;) {
		scan_ws(s);
		if (object) {
			const char *k;
			size_t kl;

			if (scan_string(s, &k, &kl) < 0)
				return -1;
			scan_ws(s);
			if (s->p >= s->end || *s->p != ':')
				return -1;
			s->p++;
			scan_ws(s);
			r = member ? member(s, k, kl, userdata) : scan_value(s);
		} else
			r = scan_value(s);
		if (r < 0)
			return -1;
		scan_ws(s);
		if (s->p >= s->end)
			return -1;
		if (*s->p == ',') {
			s->p++;
			continue;
		}
		if (*s->p != close)
			return -1;
		s->p++;
		s->depth--;
		return 0;
	}
}

static int scan_value(struct scan *s)
{
	const char *str;
	size_t len;
	long long v;
	bool integer;

	if (s->p >= s->end)
		return -1;
	switch (*s->p) {
	case '{':
	case '[':
		return scan_container(s, NULL, NULL);
	case '"':
		return scan_string(s, &str, &len);
	case 't':
		return scan_literal(s, "true");
	case 'f':
		return scan_literal(s, "false");
	case 'n':
		return scan_literal(s, "null");
	default:
		return scan_number(s, &v, &integer);
	}
}

static bool key_is(const char *k, size_t kl, const char *name)
{
	return kl == strlen(name) && memcmp(k, name, kl) == 0;
}

static int stub_member(struct scan *s, const char *k, size_t kl, void *userdata)
{
	struct stub *st = userdata;

	if (s->p < s->end && *s->p == '"') {
		const char *v;
		size_t vl;
		char *dst = NULL;
		size_t cap = 0;

		if (scan_string(s, &v, &vl) < 0)
			return -1;
		if (key_is(k, kl, "op")) {
			dst = st->op;
			cap = sizeof(st->op);
		} else if (key_is(k, kl, "error_code")) {
			dst = st->error_code;
			cap = sizeof(st->error_code);
			st->has_error_code = true;
		} else if (key_is(k, kl, "error_class")) {
			dst = st->error_class;
			cap = sizeof(st->error_class);
			st->has_error_class = true;
		}
		if (dst) {
			/* Cut at a whole escape so the echoed string stays valid JSON. */
			size_t n = 0;

			while (n < vl) {
				size_t step = v[n] == '\\' ? (v[n + 1] == 'u' ? 6 : 2) : 1;

				if (n + step >= cap)
					break;
				n += step;
			}
			memcpy(dst, v, n);
			dst[n] = '\0';
		}
		return 0;
	}
	if (s->p < s->end && (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))) {
		long long v = 0;
		bool integer;
		struct {
			const char *name;
			bool *has;
			long long *val;
		} fields[] = {
			{ "status", &st->has_status, &st->status },
			{ "times", &st->has_times, &st->times },
			{ "seconds", &st->has_seconds, &st->seconds },
			{ "ms", &st->has_ms, &st->ms },
			{ "bytes", &st->has_bytes, &st->bytes },
		};

		if (scan_number(s, &v, &integer) < 0)
			return -1;
		if (!integer)
			return 0;
		for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
			if (key_is(k, kl, fields[i].name)) {
				*fields[i].has = true;
				*fields[i].val = v;
			}
		return 0;
	}
	return scan_value(s);
}

static int top_member(struct scan *s, const char *k, size_t kl, void *userdata)
{
	struct stub *st = userdata;

	if (key_is(k, kl, "stub") && s->p < s->end && *s->p == '{') {
		memset(st, 0, sizeof(*st));
		return scan_container(s, stub_member, st);
	}
	return scan_value(s);
}

/* Parses the payload; returns -1 when it is not a JSON object. */
static int stub_parse(const char *body, size_t len, struct stub *st)
{
	struct scan s = { .p = body, .end = body + len };

	memset(st, 0, sizeof(*st));
	scan_ws(&s);
	if (s.p >= s.end || *s.p != '{')
		return -1;
	if (scan_container(&s, top_member, st) < 0)
		return -1;
	scan_ws(&s);
	return s.p == s.end ? 0 : -1;
}

/* ---- answers ---- */

static const char *reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 204:
		return "No Content";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 409:
		return "Conflict";
	case 411:
		return "Length Required";
	case 413:
		return "Content Too Large";
	case 415:
		return "Unsupported Media Type";
	case 422:
		return "Unprocessable Content";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	default:
		return "Status";
	}
}

static void plan_reset(struct plan *p)
{
	memset(p, 0, offsetof(struct plan, body));
	p->retry_after = -1;
	p->body[0] = p->message_id[0] = p->trace_id[0] = '\0';
}

static void plan_body(struct plan *p, const char *text)
{
	size_t n = strlen(text);

	if (n >= sizeof(p->body))
		n = sizeof(p->body) - 1;
	memcpy(p->body, text, n);
	p->body[n] = '\0';
	p->body_len = n;
}

static void plan_simple(struct plan *p, int status, const char *body)
{
	p->action = ACT_RESPOND;
	p->status = status;
	plan_body(p, body);
}

static void copy_field(char *dst, const char *src, size_t len)
{
	if (len >= LOG_FIELD_MAX)
		len = LOG_FIELD_MAX - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

static bool valid_status(long long s)
{
	return s >= 200 && s <= 599;
}

/* Decides the answer to a complete request from its head and payload. */
static void plan_request(struct server *srv, struct conn *c, const char *start, const char *body,
			 size_t body_len, struct plan *p)
{
	const struct req *rq = &c->req;
	struct stub st;
	long long a;
	bool failing;

	plan_reset(p);
	p->close = rq->conn_close || (rq->http10 && !rq->conn_keepalive);
	p->keepalive = rq->http10 && !p->close;
	copy_field(p->message_id, start + rq->mid_off, rq->mid_len);
	copy_field(p->trace_id, start + rq->trace_off, rq->trace_len);
	p->attempt = rq->attempt;
	a = rq->attempt;

	if (!rq->post) {
		plan_simple(p, 405, "{\"error\":\"only POST is served\"}");
		return;
	}
	if (!rq->json) {
		plan_simple(p, 415, "{\"error\":\"Content-Type must be application/json\"}");
		return;
	}
	if (stub_parse(body, body_len, &st) < 0) {
		plan_simple(p, 400, "{\"error\":\"payload is not a JSON object\"}");
		return;
	}

	/* An outage the test switches on and off by creating and removing a file. */
	if (srv->fail_file && access(srv->fail_file, F_OK) == 0) {
		plan_simple(p, 503, "{\"ok\":false,\"outage\":true}");
		p->delay_usec += srv->delay_usec;
		return;
	}
	failing = !st.has_times || a < st.times;
	p->action = ACT_RESPOND;
	p->status = 200;
	plan_body(p, ok_body);

	if (st.op[0] == '\0' || strcmp(st.op, "ok") == 0) {
		/* the default answer */
	} else if (strcmp(st.op, "fail") == 0) {
		long long status = st.has_status ? st.status : 500;

		if (!valid_status(status))
			plan_simple(p, 400, "{\"error\":\"bad stub status\"}");
		else if (failing)
			plan_simple(p, (int)status, "{\"ok\":false}");
	} else if (strcmp(st.op, "retry_after") == 0) {
		if (failing) {
			plan_simple(p, 503, "{\"ok\":false}");
			p->retry_after =
				st.has_seconds && st.seconds >= 0
					? (long)(st.seconds > LONG_MAX ? LONG_MAX : st.seconds)
					: 1;
		}
	} else if (strcmp(st.op, "error_code") == 0) {
		long long status = st.has_status ? st.status : 500;

		if (!valid_status(status))
			plan_simple(p, 400, "{\"error\":\"bad stub status\"}");
		else if (failing) {
			int n;

			p->status = (int)status;
			if (st.has_error_code && st.has_error_class)
				n = snprintf(p->body, sizeof(p->body),
					     "{\"error_code\":\"%s\",\"error_class\":\"%s\"}",
					     st.error_code, st.error_class);
			else if (st.has_error_code)
				n = snprintf(p->body, sizeof(p->body), "{\"error_code\":\"%s\"}",
					     st.error_code);
			else
				n = snprintf(p->body, sizeof(p->body), "{\"ok\":false}");
			p->body_len = n < 0 ? 0 : (size_t)n;
		}
	} else if (strcmp(st.op, "sleep") == 0) {
		if (st.has_ms && st.ms > 0)
			p->delay_usec = (uint64_t)(st.ms > 86400000 ? 86400000 : st.ms) * 1000;
	} else if (strcmp(st.op, "hang") == 0) {
		p->action = ACT_HANG;
	} else if (strcmp(st.op, "close") == 0) {
		p->action = ACT_CLOSE;
	} else if (strcmp(st.op, "body") == 0) {
		long long status = st.has_status ? st.status : 200;

		if (!valid_status(status))
			plan_simple(p, 400, "{\"error\":\"bad stub status\"}");
		else {
			p->status = (int)status;
			p->body_len = 0;
			p->body[0] = '\0';
			p->filler = st.has_bytes && st.bytes > 0
					    ? ((uint64_t)st.bytes > MAX_FILLER ? MAX_FILLER
									       : (uint64_t)st.bytes)
					    : 0;
		}
	} else
		plan_simple(p, 400, "{\"error\":\"unknown stub op\"}");

	if (p->action == ACT_RESPOND)
		p->delay_usec += srv->delay_usec;
}

static size_t json_escape(char *dst, size_t cap, const char *src)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (const unsigned char *q = (const unsigned char *)src; *q; q++) {
		if (o + 7 > cap)
			break;
		if (*q == '"' || *q == '\\') {
			dst[o++] = '\\';
			dst[o++] = (char)*q;
		} else if (*q < 0x20 || *q >= 0x7f) {
			dst[o++] = '\\';
			dst[o++] = 'u';
			dst[o++] = '0';
			dst[o++] = '0';
			dst[o++] = hex[*q >> 4];
			dst[o++] = hex[*q & 15];
		} else
			dst[o++] = (char)*q;
	}
	return o;
}

static void log_answer(struct server *srv, const struct plan *p)
{
	char line[16 * LOG_FIELD_MAX];
	size_t o = 0;
	int n;

	if (srv->log_fd < 0)
		return;
	o += (size_t)snprintf(line + o, sizeof(line) - o, "{\"message_id\":\"");
	o += json_escape(line + o, sizeof(line) - o, p->message_id);
	o += (size_t)snprintf(line + o, sizeof(line) - o, "\",\"trace_id\":\"");
	o += json_escape(line + o, sizeof(line) - o, p->trace_id);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	n = snprintf(line + o, sizeof(line) - o,
		     "\",\"attempt\":%ld,\"status\":%d,\"t\":%lld.%06ld}\n", p->attempt, p->status,
		     (long long)ts.tv_sec, ts.tv_nsec / 1000);
	if (n < 0 || (size_t)n >= sizeof(line) - o)
		return;
	o += (size_t)n;
	if (write(srv->log_fd, line, o) != (ssize_t)o)
		note(srv, "short write to the log: %m");
}

static size_t base64_encode(char *dst, const unsigned char *src, size_t len)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;

	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)src[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t)src[i + 1] << 8;
		if (i + 2 < len)
			v |= src[i + 2];
		dst[o++] = tab[v >> 18 & 63];
		dst[o++] = tab[v >> 12 & 63];
		dst[o++] = i + 1 < len ? tab[v >> 6 & 63] : '=';
		dst[o++] = i + 2 < len ? tab[v & 63] : '=';
	}
	return o;
}

/* One --body-log line for a complete request: who sent it and its exact body. */
static void log_body(struct server *srv, const struct plan *p, const char *body, size_t len)
{
	size_t cap, o = 0;
	char *line;
	int n;

	if (srv->body_log_fd < 0)
		return;
	cap = 2 * 6 * LOG_FIELD_MAX + (len + 2) / 3 * 4 + 128;
	line = malloc(cap);
	if (!line) {
		note(srv, "no memory for a body-log line");
		return;
	}
	o += (size_t)snprintf(line + o, cap - o, "{\"message_id\":\"");
	o += json_escape(line + o, cap - o, p->message_id);
	o += (size_t)snprintf(line + o, cap - o, "\",\"trace_id\":\"");
	o += json_escape(line + o, cap - o, p->trace_id);
	o += (size_t)snprintf(line + o, cap - o, "\",\"attempt\":%ld,\"body_b64\":\"", p->attempt);
	o += base64_encode(line + o, (const unsigned char *)body, len);
	n = snprintf(line + o, cap - o, "\"}\n");
	if (n > 0 && (size_t)n < cap - o) {
		o += (size_t)n;
		if (write(srv->body_log_fd, line, o) != (ssize_t)o)
			note(srv, "short write to the body log: %m");
	}
	free(line);
}

static int obuf_append(struct conn *c, const void *data, size_t len)
{
	if (c->ocap - c->olen < len) {
		size_t cap = c->ocap ? c->ocap : 4096;
		char *b;

		while (cap - c->olen < len)
			cap *= 2;
		b = realloc(c->obuf, cap);
		if (!b)
			return -ENOMEM;
		c->obuf = b;
		c->ocap = cap;
	}
	memcpy(c->obuf + c->olen, data, len);
	c->olen += len;
	return 0;
}

static void start_close(struct conn *c)
{
	c->close_after = true;
}

/* Queues the answer (or the hang / close) that p describes. */
static int emit(struct server *srv, struct conn *c, const struct plan *p)
{
	char head[512];
	int n;

	switch (p->action) {
	case ACT_HANG:
		c->state = C_HANG;
		return 0;
	case ACT_CLOSE:
		start_close(c);
		return 0;
	case ACT_RESPOND:
		break;
	}

	log_answer(srv, p);
	if (p->status == 200 && !p->close && !p->keepalive && p->retry_after < 0 && !p->filler &&
	    p->body_len == sizeof(ok_body) - 1 && memcmp(p->body, ok_body, p->body_len) == 0)
		return obuf_append(c, ok_response, sizeof(ok_response) - 1);

	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
		     "Content-Length: %llu\r\n",
		     p->status, reason(p->status),
		     (unsigned long long)(p->filler ? p->filler : p->body_len));
	if (p->retry_after >= 0)
		n += snprintf(head + n, sizeof(head) - (size_t)n, "Retry-After: %ld\r\n",
			      p->retry_after);
	if (p->close)
		n += snprintf(head + n, sizeof(head) - (size_t)n, "Connection: close\r\n");
	else if (p->keepalive)
		n += snprintf(head + n, sizeof(head) - (size_t)n, "Connection: keep-alive\r\n");
	n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");
	if (obuf_append(c, head, (size_t)n) < 0 || obuf_append(c, p->body, p->body_len) < 0)
		return -ENOMEM;
	c->filler_left = p->filler;
	if (p->close)
		start_close(c);
	return 0;
}

/* An answer for a request whose head is unusable: sent, then the connection closes. */
static int emit_error_close(struct server *srv, struct conn *c, int status, const char *body)
{
	struct plan p;

	plan_reset(&p);
	if (c->head_done) {
		const char *start = c->rbuf + c->roff;

		copy_field(p.message_id, start + c->req.mid_off, c->req.mid_len);
		copy_field(p.trace_id, start + c->req.trace_off, c->req.trace_len);
		p.attempt = c->req.attempt;
	}
	plan_simple(&p, status, body);
	p.close = true;
	return emit(srv, c, &p);
}

/* ---- request head parsing ---- */

static bool hdr_is(const char *name, size_t len, const char *want)
{
	return len == strlen(want) && strncasecmp(name, want, len) == 0;
}

static bool token_in(const char *v, size_t len, const char *tok)
{
	size_t tl = strlen(tok);

	for (size_t i = 0; i + tl <= len; i++)
		if (strncasecmp(v + i, tok, tl) == 0)
			return true;
	return false;
}

/* Parses the head [start, start + len); returns an HTTP status on error, else 0. */
static int parse_head(const char *start, size_t len, struct req *rq)
{
	const char *p = start, *end = start + len - 2; /* stop before the final CRLF */
	const char *eol, *sp1, *sp2;

	memset(rq, 0, sizeof(*rq));
	eol = memmem(p, (size_t)(end - p), "\r\n", 2);
	if (!eol)
		return 400;
	sp1 = memchr(p, ' ', (size_t)(eol - p));
	if (!sp1)
		return 400;
	sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
	if (!sp2)
		return 400;
	rq->post = sp1 - p == 4 && memcmp(p, "POST", 4) == 0;
	if (eol - sp2 - 1 != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0)
		return 400;
	if (sp2[8] == '0')
		rq->http10 = true;
	else if (sp2[8] != '1')
		return 505;

	for (p = eol + 2; p < end; p = eol + 2) {
		const char *colon, *v, *ve;
		size_t nl;

		eol = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
		if (!eol)
			return 400;
		colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon || colon == p)
			return 400;
		nl = (size_t)(colon - p);
		for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
			;
		for (ve = eol; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
			;

		switch (p[0] | 0x20) {
		case 'c':
			if (hdr_is(p, nl, "Content-Length")) {
				uint64_t n = 0;

				if (v == ve || ve - v > 18)
					return 400;
				for (const char *q = v; q < ve; q++) {
					if (*q < '0' || *q > '9')
						return 400;
					n = n * 10 + (uint64_t)(*q - '0');
				}
				if (rq->has_length && rq->length != n)
					return 400;
				rq->has_length = true;
				rq->length = n;
			} else if (hdr_is(p, nl, "Content-Type")) {
				const char *mt_end = memchr(v, ';', (size_t)(ve - v));

				if (!mt_end)
					mt_end = ve;
				while (mt_end > v && (mt_end[-1] == ' ' || mt_end[-1] == '\t'))
					mt_end--;
				rq->json = hdr_is(v, (size_t)(mt_end - v), "application/json");
			} else if (hdr_is(p, nl, "Connection")) {
				if (token_in(v, (size_t)(ve - v), "close"))
					rq->conn_close = true;
				if (token_in(v, (size_t)(ve - v), "keep-alive"))
					rq->conn_keepalive = true;
			}
			break;
		case 't':
			if (hdr_is(p, nl, "Transfer-Encoding"))
				rq->chunked = true;
			break;
		case 'e':
			if (hdr_is(p, nl, "Expect") &&
			    token_in(v, (size_t)(ve - v), "100-continue"))
				rq->expect_continue = true;
			break;
		case 'i':
			if (hdr_is(p, nl, "Idempotency-Key")) {
				rq->mid_off = (size_t)(v - start);
				rq->mid_len = (size_t)(ve - v);
			}
			break;
		case 'x':
			if (hdr_is(p, nl, "X-Trace-Id")) {
				rq->trace_off = (size_t)(v - start);
				rq->trace_len = (size_t)(ve - v);
			} else if (hdr_is(p, nl, "X-Attempt")) {
				long n = 0;

				for (const char *q = v; q < ve && n < 1000000000; q++) {
					if (*q < '0' || *q > '9') {
						n = 0;
						break;
					}
					n = n * 10 + (*q - '0');
				}
				rq->attempt = n;
			}
			break;
		default:
			break;
		}
	}
	return 0;
}

/* ---- connections ---- */

static void conn_free(struct server *srv, struct conn *c)
{
	heap_remove(srv, c);
	epoll_ctl(srv->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv->n_conns--;
	free(c->rbuf);
	free(c->obuf);
	free(c);

	if (srv->listen_paused) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &srv->listener };

		if (epoll_ctl(srv->epfd, EPOLL_CTL_MOD, srv->listen_fd, &ev) == 0)
			srv->listen_paused = false;
	}
}

static void conn_update_events(struct server *srv, struct conn *c)
{
	uint32_t want = 0;

	if (c->state == C_HANG || c->state == C_LINGER)
		want = EPOLLIN;
	else if (!c->peer_eof && c->rlen < RBUF_MAX)
		want = EPOLLIN;
	if (c->ooff < c->olen || c->filler_left)
		want |= EPOLLOUT;
	if (want != c->events) {
		struct epoll_event ev = { .events = want, .data.ptr = &c->obj };

		if (epoll_ctl(srv->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
			c->events = want;
	}
}

/* Writes what is queued; returns -1 when the connection is dead. */
static int conn_flush(struct conn *c)
{
	while (c->ooff < c->olen || c->filler_left) {
		struct iovec iov[2];
		int n_iov = 0;
		ssize_t n;

		if (c->ooff < c->olen)
			iov[n_iov++] = (struct iovec){ c->obuf + c->ooff, c->olen - c->ooff };
		if (c->filler_left)
			iov[n_iov++] = (struct iovec){ filler, c->filler_left < FILLER_SIZE
								       ? (size_t)c->filler_left
								       : FILLER_SIZE };
		n = writev(c->fd, iov, n_iov);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -1;
		}
		if (c->ooff < c->olen) {
			size_t take = (size_t)n < c->olen - c->ooff ? (size_t)n : c->olen - c->ooff;

			c->ooff += take;
			n -= (ssize_t)take;
		}
		c->filler_left -= (uint64_t)n;
	}
	if (c->ooff == c->olen) {
		c->ooff = c->olen = 0;
		if (c->ocap > 4 * OUT_HIGH_WATER) {
			free(c->obuf);
			c->obuf = NULL;
			c->ocap = 0;
		}
	}
	return 0;
}

static bool conn_output_pending(const struct conn *c)
{
	return c->ooff < c->olen || c->filler_left;
}

/*
 * Answers every complete request in the read buffer, in order, until one has
 * to wait (sleep, hang, close). Returns 1 when it stopped only because of
 * unsent output (a big body, too much pipelined output), 0 when it needs more
 * input or the state changed, -ENOMEM.
 */
static int conn_process(struct server *srv, struct conn *c)
{
	int ret = 0;

	while (c->state == C_ACTIVE && !c->close_after) {
		char *start = c->rbuf + c->roff;
		size_t avail = c->rlen - c->roff;
		struct plan p;
		int r;

		if (c->filler_left || c->olen - c->ooff >= OUT_HIGH_WATER) {
			ret = 1;
			break;
		}
		if (!c->head_done) {
			size_t from = c->scan > 3 ? c->scan - 3 : 0;
			char *e = avail > from ? memmem(start + from, avail - from, "\r\n\r\n", 4)
					       : NULL;

			if (!e) {
				c->scan = avail;
				if (avail > MAX_HEADER)
					return emit_error_close(srv, c, 431,
								"{\"error\":\"header too large\"}");
				break;
			}
			c->head_len = (size_t)(e - start) + 4;
			if (c->head_len > MAX_HEADER)
				return emit_error_close(srv, c, 431,
							"{\"error\":\"header too large\"}");
			r = parse_head(start, c->head_len, &c->req);
			c->head_done = true;
			if (r > 0)
				return emit_error_close(srv, c, r, "{\"error\":\"bad request\"}");
			if (c->req.chunked)
				return emit_error_close(
					srv, c, 501,
					"{\"error\":\"chunked bodies are not supported\"}");
			if (c->req.length > MAX_BODY)
				return emit_error_close(srv, c, 413,
							"{\"error\":\"body too large\"}");
		}
		if (avail - c->head_len < c->req.length) {
			if (c->req.expect_continue && !c->sent_continue) {
				c->sent_continue = true;
				if (obuf_append(c, continue_response,
						sizeof(continue_response) - 1) < 0)
					return -ENOMEM;
			}
			break;
		}

		plan_request(srv, c, start, start + c->head_len, (size_t)c->req.length, &p);
		log_body(srv, &p, start + c->head_len, (size_t)c->req.length);
		c->roff += c->head_len + (size_t)c->req.length;
		c->head_done = false;
		c->scan = 0;
		c->sent_continue = false;

		if (p.delay_usec) {
			c->pending = p;
			c->state = C_WAIT;
			if (heap_arm(srv, c, now_usec() + p.delay_usec) < 0)
				return -ENOMEM;
			break;
		}
		if (emit(srv, c, &p) < 0)
			return -ENOMEM;
	}

	if (c->roff == c->rlen) {
		c->roff = c->rlen = 0;
		if (c->rcap > 4 * RBUF_INITIAL) {
			free(c->rbuf);
			c->rbuf = NULL;
			c->rcap = 0;
		}
	} else if (c->roff > 0) {
		memmove(c->rbuf, c->rbuf + c->roff, c->rlen - c->roff);
		c->rlen -= c->roff;
		c->roff = 0;
	}
	return ret;
}

/*
 * Answers what can be answered, flushes, moves a finished connection on and
 * updates the epoll interest. Frees c and returns -1 when the connection is over.
 */
static int conn_settle(struct server *srv, struct conn *c)
{
	for (;;) {
		int r = 0;

		if (c->state == C_ACTIVE) {
			r = conn_process(srv, c);
			if (r < 0)
				goto dead;
		}
		if (conn_flush(c) < 0)
			goto dead;
		if (conn_output_pending(c))
			break;
		if (c->close_after) {
			if (c->state != C_LINGER) {
				/* Half-close, then drain, so the peer reads our answer, not a reset. */
				shutdown(c->fd, SHUT_WR);
				c->state = C_LINGER;
				if (heap_arm(srv, c, now_usec() + LINGER_USEC) < 0)
					goto dead;
			}
			break;
		}
		if (c->state != C_ACTIVE)
			break;
		if (r == 0) {
			/* Everything complete is answered; a peer that is gone sends no more. */
			if (c->peer_eof)
				goto dead;
			break;
		}
		/* The output that held requests back has drained: go on. */
	}
	conn_update_events(srv, c);
	return 0;
dead:
	conn_free(srv, c);
	return -1;
}

/* Returns -1 when c was freed. */
static int conn_readable(struct server *srv, struct conn *c)
{
	ssize_t n;

	if (c->state == C_HANG || c->state == C_LINGER) {
		char scratch[16384];

		n = read(c->fd, scratch, sizeof(scratch));
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			conn_free(srv, c);
			return -1;
		}
		return 0;
	}

	if (c->rcap - c->rlen < 4096 && c->rcap < RBUF_MAX) {
		size_t cap = c->rcap ? c->rcap * 2 : RBUF_INITIAL;
		char *b;

		if (cap > RBUF_MAX)
			cap = RBUF_MAX;
		b = realloc(c->rbuf, cap);
		if (!b) {
			conn_free(srv, c);
			return -1;
		}
		c->rbuf = b;
		c->rcap = cap;
	}
	if (c->rcap == c->rlen || c->peer_eof) {
		conn_update_events(srv, c);
		return 0;
	}
	n = read(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		conn_free(srv, c);
		return -1;
	}
	if (n == 0)
		c->peer_eof = true;
	c->rlen += (size_t)n;
	return conn_settle(srv, c);
}

static void conn_timer(struct server *srv, struct conn *c)
{
	if (c->state == C_LINGER) {
		conn_free(srv, c);
		return;
	}
	if (c->state != C_WAIT)
		return;
	c->state = C_ACTIVE;
	if (emit(srv, c, &c->pending) < 0) {
		conn_free(srv, c);
		return;
	}
	conn_settle(srv, c);
}

static void accept_conns(struct server *srv)
{
	for (int i = 0; i < ACCEPT_BURST; i++) {
		struct epoll_event ev;
		struct conn *c;
		int fd, one = 1;

		if (srv->n_conns >= MAX_CONNS)
			goto pause;
		fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				note(srv, "accept: %m; pausing until a connection closes");
				goto pause;
			}
			return; /* EAGAIN, ECONNABORTED, EINTR... */
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			return;
		}
		c->obj.kind = OBJ_CONN;
		c->fd = fd;
		c->heap_idx = SIZE_MAX;
		c->events = EPOLLIN;
		ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &c->obj };
		if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
			return;
		}
		c->next = srv->conns;
		if (srv->conns)
			srv->conns->prev = c;
		srv->conns = c;
		srv->n_conns++;
	}
	return;
pause:
	if (srv->n_conns > 0) {
		struct epoll_event ev = { .events = 0, .data.ptr = &srv->listener };

		if (epoll_ctl(srv->epfd, EPOLL_CTL_MOD, srv->listen_fd, &ev) == 0)
			srv->listen_paused = true;
	}
}

/* ---- setup ---- */

static int open_listener(struct server *srv, const char *spec, int *port)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *ai, *a;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	size_t hl;
	int fd = -1, r, one = 1;

	if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof(host))
		return -EINVAL;
	hl = (size_t)(colon - spec);
	if (spec[0] == '[' && hl >= 2 && spec[hl - 1] == ']') {
		memcpy(host, spec + 1, hl - 2);
		host[hl - 2] = '\0';
	} else {
		memcpy(host, spec, hl);
		host[hl] = '\0';
	}
	r = getaddrinfo(host, colon + 1, &hints, &ai);
	if (r != 0) {
		note(srv, "cannot resolve %s: %s", spec, gai_strerror(r));
		return -EINVAL;
	}
	for (a = ai; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 4096) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0)
		return -errno;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	*port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					       : ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

/* Writes the port next to path and renames it, so readers never see a partial file. */
static int write_port_file(const char *path, int port)
{
	char tmp[PATH_MAX], text[16];
	int fd, n;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	n = snprintf(text, sizeof(text), "%d\n", port);
	if (write(fd, text, (size_t)n) != n || close(fd) < 0) {
		unlink(tmp);
		return -EIO;
	}
	if (rename(tmp, path) < 0) {
		int r = -errno;

		unlink(tmp);
		return r;
	}
	return 0;
}

static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < MAX_CONNS + 64) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > MAX_CONNS + 64
				      ? MAX_CONNS + 64
				      : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void usage(FILE *f)
{
	fputs("Usage: dlqd-httpstub [--listen HOST:PORT] [--port-file FILE] [--log FILE]\n"
	      "                     [--body-log FILE] [--delay-ms N] [--quiet]\n"
	      "                     [--fail-file FILE]\n"
	      "Test HTTP server for dlqd. The POST payload's \"stub\" object picks the answer;\n"
	      "while FILE exists every job is answered 503 (an outage).\n",
	      f);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = { { "listen", required_argument, NULL, 'l' },
					      { "port-file", required_argument, NULL, 'p' },
					      { "log", required_argument, NULL, 'L' },
					      { "body-log", required_argument, NULL, 'B' },
					      { "delay-ms", required_argument, NULL, 'd' },
					      { "quiet", no_argument, NULL, 'q' },
					      { "fail-file", required_argument, NULL, 'F' },
					      { "help", no_argument, NULL, 'h' },
					      {} };
	struct server srv = {
		.epfd = -1, .listen_fd = -1, .sig_fd = -1, .log_fd = -1, .body_log_fd = -1
	};
	const char *listen_spec = "127.0.0.1:0", *port_file = NULL, *log_path = NULL;
	const char *body_log_path = NULL;
	struct epoll_event ev, events[MAX_EVENTS];
	sigset_t mask;
	bool running = true;
	int opt, port = 0, ret = 1;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			listen_spec = optarg;
			break;
		case 'p':
			port_file = optarg;
			break;
		case 'L':
			log_path = optarg;
			break;
		case 'B':
			body_log_path = optarg;
			break;
		case 'd': {
			char *end;
			unsigned long ms;

			errno = 0;
			ms = strtoul(optarg, &end, 10);
			if (errno || *end || end == optarg || ms > 86400000UL) {
				note(NULL, "bad --delay-ms: %s", optarg);
				return 2;
			}
			srv.delay_usec = (uint64_t)ms * 1000;
			break;
		}
		case 'q':
			srv.quiet = true;
			break;
		case 'F':
			srv.fail_file = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	memset(filler, 'x', sizeof(filler));
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);

	srv.listener.kind = OBJ_LISTENER;
	srv.sig.kind = OBJ_SIGNAL;
	srv.epfd = epoll_create1(EPOLL_CLOEXEC);
	srv.sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (srv.epfd < 0 || srv.sig_fd < 0) {
		note(NULL, "epoll/signalfd: %m");
		goto out;
	}
	if (log_path) {
		srv.log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (srv.log_fd < 0) {
			note(NULL, "cannot open %s: %m", log_path);
			goto out;
		}
	}
	if (body_log_path) {
		srv.body_log_fd =
			open(body_log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (srv.body_log_fd < 0) {
			note(NULL, "cannot open %s: %m", body_log_path);
			goto out;
		}
	}
	srv.listen_fd = open_listener(&srv, listen_spec, &port);
	if (srv.listen_fd < 0) {
		errno = -srv.listen_fd;
		note(NULL, "cannot listen on %s: %m", listen_spec);
		goto out;
	}
	ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &srv.listener };
	if (epoll_ctl(srv.epfd, EPOLL_CTL_ADD, srv.listen_fd, &ev) < 0)
		goto out;
	ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &srv.sig };
	if (epoll_ctl(srv.epfd, EPOLL_CTL_ADD, srv.sig_fd, &ev) < 0)
		goto out;
	if (port_file) {
		int r = write_port_file(port_file, port);

		if (r < 0) {
			errno = -r;
			note(NULL, "cannot write %s: %m", port_file);
			goto out;
		}
	}
	note(&srv, "listening on port %d", port);

	while (running) {
		int timeout = -1, n;

		if (srv.heap_len) {
			uint64_t now = now_usec(), d = srv.heap[0]->deadline;

			timeout = d <= now ? 0 : (int)((d - now + 999) / 1000);
		}
		n = epoll_wait(srv.epfd, events, MAX_EVENTS, timeout);
		if (n < 0 && errno != EINTR) {
			note(NULL, "epoll_wait: %m");
			goto out;
		}
		for (int i = 0; i < n; i++) {
			struct obj *o = events[i].data.ptr;
			struct conn *c;

			switch (o->kind) {
			case OBJ_LISTENER:
				accept_conns(&srv);
				break;
			case OBJ_SIGNAL: {
				struct signalfd_siginfo si;

				if (read(srv.sig_fd, &si, sizeof(si)) == sizeof(si))
					running = false;
				break;
			}
			case OBJ_CONN:
				c = (struct conn *)o;
				if (events[i].events & EPOLLERR) {
					conn_free(&srv, c);
					break;
				}
				/* A conn is reported at most once per batch, so freeing it is safe. */
				if ((events[i].events & (EPOLLIN | EPOLLHUP)) &&
				    conn_readable(&srv, c) < 0)
					break;
				if (events[i].events & EPOLLOUT)
					conn_settle(&srv, c);
				break;
			}
		}
		if (srv.heap_len) {
			uint64_t now = now_usec();

			while (srv.heap_len && srv.heap[0]->deadline <= now) {
				struct conn *c = srv.heap[0];

				heap_remove(&srv, c);
				conn_timer(&srv, c);
			}
		}
	}
	ret = 0;
out:
	while (srv.conns)
		conn_free(&srv, srv.conns);
	free(srv.heap);
	if (srv.listen_fd >= 0)
		close(srv.listen_fd);
	if (srv.sig_fd >= 0)
		close(srv.sig_fd);
	if (srv.epfd >= 0)
		close(srv.epfd);
	if (srv.log_fd >= 0)
		close(srv.log_fd);
	if (srv.body_log_fd >= 0)
		close(srv.body_log_fd);
	return ret;
}
