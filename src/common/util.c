/*
 * util: clocks, unit parsing, bounded buffers, diagnostics and JSON type names
 * shared by every module. Nothing here logs; callers decide what an error means.
 */
#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

void freep(void *p)
{
	free(*(void **)p);
}

void closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static uint64_t clock_usec(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t now_monotonic_usec(void)
{
	return clock_usec(CLOCK_MONOTONIC);
}

uint64_t now_realtime_usec(void)
{
	return clock_usec(CLOCK_REALTIME);
}

static const char *skip_space(const char *s)
{
	while (*s && isspace((unsigned char)*s))
		s++;
	return s;
}

/* Parses a non-negative decimal with optional fraction; end points past it. */
static int parse_number(const char *s, double *out, const char **end)
{
	char *e;
	double v;

	s = skip_space(s);
	if (!isdigit((unsigned char)*s) && *s != '.')
		return -EINVAL;
	/* strtod() would also read C hex floats: "0x10s" is not a duration. */
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		return -EINVAL;
	errno = 0;
	v = strtod(s, &e);
	if (e == s)
		return -EINVAL;
	if (errno == ERANGE && v > 1) /* overflow; underflow ("1e-400") is ~0 */
		return -ERANGE;
	if (!isfinite(v) || v < 0)
		return -EINVAL;
	*out = v;
	*end = e;
	return 0;
}

struct unit {
	const char *name;
	double factor;
};

static int parse_with_units(const char *s, const struct unit *units, size_t n_units,
			    double default_factor, double limit, double *out)
{
	const char *end;
	double v;
	int r;

	if (!s)
		return -EINVAL;
	r = parse_number(s, &v, &end);
	if (r < 0)
		return r;
	end = skip_space(end);
	double factor = default_factor;
	if (*end) {
		size_t len = strlen(end);
		while (len > 0 && isspace((unsigned char)end[len - 1]))
			len--;
		factor = 0;
		for (size_t i = 0; i < n_units; i++)
			if (strlen(units[i].name) == len &&
			    strncasecmp(end, units[i].name, len) == 0) {
				factor = units[i].factor;
				break;
			}
		if (factor == 0)
			return -EINVAL;
	}
	v *= factor;
	if (v > limit)
		return -ERANGE;
	*out = v;
	return 0;
}

int parse_duration_usec(const char *s, uint64_t *out)
{
	static const struct unit units[] = {
		{ "us", 1 },   { "ms", 1e3 },	{ "s", 1e6 },	 { "sec", 1e6 },
		{ "m", 60e6 }, { "min", 60e6 }, { "h", 3600e6 }, { "d", 86400e6 },
	};
	double v;
	int r = parse_with_units(s, units, ARRAY_SIZE(units), 1e6, 1e17, &v);

	if (r < 0)
		return r;
	*out = (uint64_t)llround(v);
	return 0;
}

int parse_size(const char *s, uint64_t *out)
{
	static const struct unit units[] = {
		{ "B", 1 },
		{ "K", 1024.0 },
		{ "KiB", 1024.0 },
		{ "M", 1048576.0 },
		{ "MiB", 1048576.0 },
		{ "G", 1073741824.0 },
		{ "GiB", 1073741824.0 },
		{ "KB", 1e3 },
		{ "MB", 1e6 },
		{ "GB", 1e9 },
	};
	double v;
	int r = parse_with_units(s, units, ARRAY_SIZE(units), 1, 1e15, &v);

	if (r < 0)
		return r;
	*out = (uint64_t)llround(v);
	return 0;
}

int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s)
		return -EINVAL;
	s = skip_space(s);
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (*skip_space(end))
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off" };

	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

char *format_timestamp(uint64_t realtime_usec, char buf[static TIMESTAMP_MAX])
{
	time_t t = (time_t)(MIN(realtime_usec, TIMESTAMP_USEC_MAX) / USEC_PER_SEC);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, TIMESTAMP_MAX, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

static int parse_digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return -EINVAL;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

static int expect(const char **p, char c)
{
	if (**p != c && !(c == 'T' && (**p == 't' || **p == ' ')))
		return -EINVAL;
	(*p)++;
	return 0;
}

int parse_timestamp(const char *s, uint64_t *realtime_usec)
{
	int year, mon, day, hour, min, sec, off = 0;
	uint64_t frac = 0, scale = USEC_PER_SEC;
	struct tm tm = { 0 };
	const char *p = s;

	if (!s)
		return -EINVAL;
	if (parse_digits(&p, 4, &year) < 0 || expect(&p, '-') < 0 ||
	    parse_digits(&p, 2, &mon) < 0 || expect(&p, '-') < 0 || parse_digits(&p, 2, &day) < 0 ||
	    expect(&p, 'T') < 0 || parse_digits(&p, 2, &hour) < 0 || expect(&p, ':') < 0 ||
	    parse_digits(&p, 2, &min) < 0 || expect(&p, ':') < 0 || parse_digits(&p, 2, &sec) < 0)
		return -EINVAL;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		while (isdigit((unsigned char)*p)) {
			if (scale > 1) {
				scale /= 10;
				frac += (uint64_t)(*p - '0') * scale;
			}
			p++;
		}
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1, oh, om;
		p++;
		if (parse_digits(&p, 2, &oh) < 0 || expect(&p, ':') < 0 ||
		    parse_digits(&p, 2, &om) < 0 || oh > 23 || om > 59)
			return -EINVAL;
		off = sign * (oh * 3600 + om * 60);
	} else {
		return -EINVAL;
	}
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
	if (*p || mon < 1 || mon > 12 || day < 1 || day > mdays[mon - 1] ||
	    (mon == 2 && day == 29 && !leap) || hour > 23 || min > 59 || sec > 60 || year < 1970)
		return -EINVAL;
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	time_t t = timegm(&tm);
	if (t == (time_t)-1 || (int64_t)t - off < 0 ||
	    (int64_t)t - off > (int64_t)(TIMESTAMP_USEC_MAX / USEC_PER_SEC))
		return -EINVAL;
	*realtime_usec = (uint64_t)((int64_t)t - off) * USEC_PER_SEC + frac;
	return 0;
}

void buf_init(struct buf *b, size_t max)
{
	*b = (struct buf){ .max = max };
}

int buf_reserve(struct buf *b, size_t extra)
{
	size_t need = b->len + extra + 1, cap;
	char *p;

	if (extra > b->max || b->len + extra > b->max)
		return -E2BIG;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	if (cap - 1 > b->max) /* not cap > max + 1: max may be SIZE_MAX */
		cap = b->max + 1;
	p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	int r = buf_reserve(b, n);

	if (r < 0)
		return r;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

size_t buf_append_trunc(struct buf *b, const void *p, size_t n)
{
	size_t room = b->max - b->len, take = MIN(room, n);

	if (take > 0 && buf_append(b, p, take) < 0)
		return n;
	return n - take;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n < sizeof(small))
		return buf_append(b, small, (size_t)n);

	int r = buf_reserve(b, (size_t)n);
	if (r < 0)
		return r;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void buf_done(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

char *buf_steal(struct buf *b, size_t *len)
{
	char *p = b->data;

	if (!p)
		p = calloc(1, 1);
	if (len)
		*len = b->len;
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}

void diag_addv(struct diag *d, const char *file, unsigned line, const char *fmt, va_list ap)
{
	char msg[512], *s = NULL, **n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (asprintf(&s, "%s:%u: %s", file ? file : "-", line, msg) < 0)
		return;
	/* The array doubles at each power of two (from 8): a file with tens of
	 * thousands of errors must not cost a copy of the list per error. */
	if (d->n < 8 ? d->n == 0 : (d->n & (d->n - 1)) == 0) {
		n = realloc(d->lines, MAX(d->n * 2, (size_t)8) * sizeof(*n));
		if (!n) {
			free(s);
			return;
		}
		d->lines = n;
	}
	d->lines[d->n++] = s;
}

void diag_add(struct diag *d, const char *file, unsigned line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_addv(d, file, line, fmt, ap);
	va_end(ap);
}

void diag_done(struct diag *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->lines[i]);
	free(d->lines);
	d->lines = NULL;
	d->n = 0;
}

int read_file_max(const char *path, size_t max, char **out, size_t *len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct buf b;
	char chunk[8192];
	ssize_t n;

	if (fd < 0)
		return -errno;
	buf_init(&b, max);
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int r = -errno;
			buf_done(&b);
			return r;
		}
		int r = buf_append(&b, chunk, (size_t)n);
		if (r < 0) {
			buf_done(&b);
			return r == -E2BIG ? -EFBIG : r;
		}
	}
	*out = buf_steal(&b, len);
	return *out ? 0 : -ENOMEM;
}

char *strdup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

char *strscpy(char *dst, const char *s, size_t n)
{
	if (n == 0)
		return dst;
	snprintf(dst, n, "%s", s ? s : "");
	return dst;
}

/* xoshiro256** seeded once; jitter needs speed and spread, not secrecy. */
static uint64_t rng_state[4];
static bool rng_seeded;

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

double random_unit(void)
{
	if (!rng_seeded) {
		if (getrandom(rng_state, sizeof(rng_state), 0) != sizeof(rng_state))
			rng_state[0] = now_monotonic_usec() | 1;
		rng_seeded = true;
	}
	uint64_t *s = rng_state;
	uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return (double)(result >> 11) * 0x1.0p-53;
}

const char *util_json_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "object";
	case JSON_ARRAY:
		return "array";
	case JSON_STRING:
		return "string";
	case JSON_INTEGER:
		return "integer";
	case JSON_REAL:
		return "number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "boolean";
	case JSON_NULL:
		return "null";
	}
	return "value";
}

int error_set(char *err, size_t errlen, int r, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return r;
}

size_t utf8_seq_len(const unsigned char *p, size_t n)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	size_t need;

	if (c == 0)
		return 0;
	if (c < 0x80)
		return 1;
	if (c < 0xc2 || c > 0xf4)
		return 0;
	need = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
	if (n < need)
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < need; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return need;
}

int buf_json_string(struct buf *b, const char *s)
{
	return buf_json_stringn(b, s, strlen(s));
}

int buf_json_stringn(struct buf *b, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t k;
	int r = buf_append(b, "\"", 1);

	for (size_t i = 0; r >= 0 && i < n; i += k ? k : 1) {
		k = utf8_seq_len(p + i, n - i);
		if (k == 0)
			r = buf_append(b, "\\ufffd", 6);
		else if (p[i] == '"' || p[i] == '\\')
			r = buf_printf(b, "\\%c", p[i]);
		else if (p[i] == '\n' || p[i] == '\r' || p[i] == '\t')
			r = buf_printf(b, "\\%c", p[i] == '\n' ? 'n' : p[i] == '\r' ? 'r' : 't');
		else if (p[i] < 0x20 || p[i] == 0x7f)
			r = buf_printf(b, "\\u%04x", p[i]);
		else
			r = buf_append(b, p + i, k);
	}
	return r < 0 ? r : buf_append(b, "\"", 1);
}
