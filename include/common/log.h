/*
 * log: one structured event per line. Under journald (JOURNAL_STREAM names our
 * stderr) events go through the native protocol with the contract's fields
 * (DLQD_MESSAGE_ID, TRACE_ID, ATTEMPT, ERROR_CODE, ERROR_CLASS, PRIORITY) and
 * a MESSAGE_ID per event kind, so `journalctl ERROR_CODE=UPSTREAM_TIMEOUT`
 * works; otherwise one line per
 * event on stderr: "LEVEL message key=value ...".
 */
#pragma once

#include <syslog.h>

#include "common/util.h"

/* Per-message context; any field may be NULL. attempt < 0 means unknown. */
struct log_ctx {
	const char *message_id;
	const char *trace_id;
	long attempt;
	const char *error_code;
	const char *error_class;
	const char *event; /* short event kind: "retry", "dead-letter"... */
	const char *extra; /* more "key=value" pairs, space separated */
};

void log_setup(int max_priority);
/* Whether an event of this priority is logged: to skip formatting its fields. */
bool log_enabled(int priority);

/* The journald MESSAGE_ID (32 hex digits) of an event kind, or NULL. */
const char *log_message_id(const char *event);

/* Returns -abs(err) so callers can `return log_error_errno(r, ...)`. */
int log_full(int priority, int err, const struct log_ctx *ctx, const char *fmt, ...) _printf_(4, 5);

#define log_debug(...)		    log_full(LOG_DEBUG, 0, NULL, __VA_ARGS__)
#define log_info(...)		    log_full(LOG_INFO, 0, NULL, __VA_ARGS__)
#define log_notice(...)		    log_full(LOG_NOTICE, 0, NULL, __VA_ARGS__)
#define log_warning(...)	    log_full(LOG_WARNING, 0, NULL, __VA_ARGS__)
#define log_error(...)		    log_full(LOG_ERR, 0, NULL, __VA_ARGS__)
#define log_error_errno(err, ...)   log_full(LOG_ERR, (err), NULL, __VA_ARGS__)
#define log_warning_errno(err, ...) log_full(LOG_WARNING, (err), NULL, __VA_ARGS__)
