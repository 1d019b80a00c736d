/*
 * util: the few helpers every module shares.
 *
 * Conventions used across dlqd, stated once here:
 *  - functions that can fail return >= 0 on success and -errno on failure;
 *  - times are uint64_t microseconds (monotonic unless a name says realtime);
 *  - destructors accept NULL and return NULL, so `p = foo_free(p);` both frees
 *    and clears, and `_cleanup_(foo_freep)` works for every type;
 *  - every buffer has a maximum (struct buf), going over it is -E2BIG.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_SEC  UINT64_C(1000000)
#define USEC_INFINITY UINT64_MAX

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b)     ((a) < (b) ? (a) : (b))
#define MAX(a, b)     ((a) > (b) ? (a) : (b))

#define _cleanup_(f)   __attribute__((cleanup(f)))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _unused_       __attribute__((unused))

/* Take ownership out of a _cleanup_ variable. */
#define TAKE_PTR(p)                  \
	({                           \
		typeof(p) _tp = (p); \
		(p) = NULL;          \
		_tp;                 \
	})

void freep(void *p);
void closep(int *fd);
#define _cleanup_free_	_cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

/* Clock readings in microseconds. */
uint64_t now_monotonic_usec(void);
uint64_t now_realtime_usec(void);

/*
 * Parses "250ms", "2s", "5m", "1h", "1d", "10us" or a bare number of seconds,
 * fractions allowed ("1.5s"). Returns 0 or -EINVAL / -ERANGE.
 */
int parse_duration_usec(const char *s, uint64_t *out);
/* Parses "512", "64KiB", "1MiB", "2GiB" (also KB/MB/GB as powers of 1000). */
int parse_size(const char *s, uint64_t *out);
/* Parses an unsigned decimal with bounds; -EINVAL or -ERANGE. */
int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* "true/false/yes/no/on/off/1/0". */
int parse_bool(const char *s, bool *out);

/*
 * Timestamps are instants from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z
 * (and its fraction), the range that RFC 3339's four-digit year can write in
 * UTC, so that whatever parse_timestamp() accepts, format_timestamp() writes
 * back as something parse_timestamp() accepts.
 */
#define TIMESTAMP_USEC_MAX (UINT64_C(253402300799) * USEC_PER_SEC + USEC_PER_SEC - 1)
/*
 * RFC 3339 UTC with second precision ("2026-03-17T03:10:00Z"), 21 bytes; an
 * instant past TIMESTAMP_USEC_MAX is written as 9999-12-31T23:59:59Z.
 */
#define TIMESTAMP_MAX 32
char *format_timestamp(uint64_t realtime_usec, char buf[static TIMESTAMP_MAX]);
/*
 * Parses RFC 3339 ("Z" or "+hh:mm" offsets, optional fraction). -EINVAL also
 * for an instant outside the range above once the offset is applied (e.g.
 * "9999-12-31T23:00:00-05:00", which is in the year 10000 in UTC).
 */
int parse_timestamp(const char *s, uint64_t *realtime_usec);

/*
 * A growable byte buffer with a hard maximum. Always NUL-terminated so text
 * can be used as a C string; len does not count the NUL.
 */
struct buf {
	char *data;
	size_t len;
	size_t cap;
	size_t max;
};
void buf_init(struct buf *b, size_t max);
/* Appends; -E2BIG when the maximum would be exceeded (nothing appended). */
int buf_append(struct buf *b, const void *p, size_t n);
/* Makes data[len .. len + extra) writable; the writer then adds to len
 * (keeping the NUL after it). -E2BIG or -ENOMEM. */
int buf_reserve(struct buf *b, size_t extra);
/* Appends as much as fits; returns the number of bytes dropped. */
size_t buf_append_trunc(struct buf *b, const void *p, size_t n);
int buf_printf(struct buf *b, const char *fmt, ...) _printf_(2, 3);
/* Appends s as a JSON string; bytes that are not UTF-8 become U+FFFD. */
int buf_json_string(struct buf *b, const char *s);
/* The same for n bytes that may hold NULs (they become U+FFFD too). */
int buf_json_stringn(struct buf *b, const char *s, size_t n);

/*
 * Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), 0 if the byte starts none. NUL
 * counts as invalid: C readers of the text would stop there.
 */
size_t utf8_seq_len(const unsigned char *p, size_t n);
void buf_reset(struct buf *b);
void buf_done(struct buf *b);
/* Hands the data to the caller (malloc'd, NUL-terminated) and resets b. */
char *buf_steal(struct buf *b, size_t *len);

/*
 * Diagnostics: a list of "FILE:LINE: message" lines collected while loading
 * config or taxonomy, printed by --check-config and logged on reload.
 */
struct diag {
	char **lines;
	size_t n;
};
/*
 * For functions that report -errno plus a one-line reason for the caller to
 * print or log: formats the reason into err (when given) and returns r.
 */
int error_set(char *err, size_t errlen, int r, const char *fmt, ...) _printf_(4, 5);

void diag_add(struct diag *d, const char *file, unsigned line, const char *fmt, ...) _printf_(4, 5);
void diag_addv(struct diag *d, const char *file, unsigned line, const char *fmt, va_list ap)
	_printf_(4, 0);
void diag_done(struct diag *d);

/* Reads a whole file, at most max bytes (-EFBIG beyond). */
int read_file_max(const char *path, size_t max, char **out, size_t *len);

/* strdup that aborts on OOM is not used: callers get -ENOMEM instead. */
char *strdup_or_null(const char *s);
/* Copies s into dst (size n), always terminated; returns dst. */
char *strscpy(char *dst, const char *s, size_t n);

/* Uniform double in [0, 1) from a per-process PRNG seeded from getrandom(). */
double random_unit(void);

/*
 * "object", "array", "string", "integer", "number", "boolean" or "null", for
 * "expected X, got Y" messages about JSON input. Declared on jansson's struct
 * tag so this header does not pull jansson into every module.
 */
struct json_t;
const char *util_json_type_name(const struct json_t *v);
