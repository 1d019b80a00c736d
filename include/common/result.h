/*
 * result: the outcome of one handler run, as plain data. Handlers fill it in,
 * the taxonomy classifies it, the envelope records it as evidence. No I/O.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum result_kind {
	RESULT_SUCCESS,	  /* 2xx or exit 0 */
	RESULT_HTTP,	  /* a non-2xx HTTP response: http_status */
	RESULT_TRANSPORT, /* libcurl failed: transport names the CURLE_ code */
	RESULT_TIMEOUT,	  /* the handler ran past [handler] timeout */
	RESULT_EXIT,	  /* exec child exited non-zero: exit_code */
	RESULT_SIGNAL,	  /* exec child killed by a signal: signal */
	RESULT_INTERNAL,  /* dlqd could not run the handler (fork, OOM...) */
};

#define RESULT_EVIDENCE_MAX 1024 /* bytes of body / stderr kept */

struct result {
	enum result_kind kind;
	long http_status;		    /* RESULT_HTTP, also set on success */
	char transport[48];		    /* e.g. "COULDNT_CONNECT" (no CURLE_ prefix) */
	char detail[256];		    /* human-readable transport / internal error */
	int exit_code;			    /* RESULT_EXIT */
	int signal;			    /* RESULT_SIGNAL, or the signal used on timeout */
	char handler_code[64];		    /* error_code the handler reported, "" if none */
	char handler_class[32];		    /* error_class the handler reported, "" if none */
	uint64_t retry_after_usec;	    /* from Retry-After, 0 if none */
	char evidence[RESULT_EVIDENCE_MAX]; /* first bytes of body / tail of stderr */
	size_t evidence_len;
	bool evidence_truncated;
	uint64_t duration_usec;
};

void result_init(struct result *r, enum result_kind kind);
const char *result_kind_to_string(enum result_kind k);

/* An error code or class as the taxonomy spells them: [A-Z0-9_]+, shorter
 * than max bytes. */
bool result_code_valid(const char *s, size_t max);

/*
 * The handler's own verdict, a JSON object {"error_code": "X",
 * "error_class": "Y"} (the class optional): copied into handler_code and
 * handler_class when well-formed. Anything else is ignored, never fatal.
 */
void result_parse_report(struct result *r, const char *json, size_t len);
