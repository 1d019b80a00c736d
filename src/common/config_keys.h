/*
 * config_keys: what config.c and config_keys.c share, and nothing outside
 * src/common/config*.c may include. The key table says which sections and
 * keys dlqd.conf has, the type, bounds and struct config field of each; the
 * parser state is the one load of one file, passed to both files.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/util.h"

#define CONFIG_DEFAULT_TAXONOMY "/etc/dlqd/taxonomy.json"

enum section {
	SEC_BROKER,
	SEC_PIPELINE,
	SEC_HANDLER,
	SEC_RETRY,
	SEC_METRICS,
	SEC_SHUTDOWN,
	SEC_REPLAY,
	SEC_BREAKER,
	_SEC_MAX,
};

enum key_type {
	KT_STRING,  /* kept as written, may be empty */
	KT_PATH,    /* empty = unset; relative = next to the config file */
	KT_COMMAND, /* raw; shell-like quotes survive for the argv split */
	KT_UINT32,
	KT_DURATION,
	KT_SIZE,
	KT_BOOL,
	KT_QUEUE_TYPE,
	KT_HANDLER_TYPE,
	KT_LIST,   /* comma-separated, NULL-terminated strv */
	KT_DOUBLE, /* a decimal number from min to max (whole numbers) */
};

enum key_id {
	K_BROKER_URL,
	K_BROKER_PASSWORD_FILE,
	K_BROKER_PREFETCH,
	K_BROKER_HEARTBEAT,
	K_BROKER_TLS_CA_FILE,
	K_BROKER_TLS_CERT_FILE,
	K_BROKER_TLS_KEY_FILE,
	K_BROKER_TLS_VERIFY_PEER,
	K_BROKER_TLS_VERIFY_HOSTNAME,
	K_PIPELINE_QUEUE,
	K_PIPELINE_QUEUE_TYPE,
	K_PIPELINE_DECLARE,
	K_PIPELINE_MAX_MESSAGE_SIZE,
	K_PIPELINE_MAX_REDELIVERIES,
	K_PIPELINE_MAX_BODY_MEMORY,
	K_HANDLER_TYPE,
	K_HANDLER_URL,
	K_HANDLER_COMMAND,
	K_HANDLER_TIMEOUT,
	K_HANDLER_MAX_OUTPUT,
	K_RETRY_TAXONOMY,
	K_METRICS_LISTEN,
	K_METRICS_DLQ_POLL_INTERVAL,
	K_SHUTDOWN_DRAIN_TIMEOUT,
	K_REPLAY_BLOCK_SCHEMA_VERSIONS,
	K_RETRY_BUDGET_RATIO,
	K_RETRY_BUDGET_MIN_PER_SECOND,
	K_RETRY_BUDGET_WINDOW,
	K_BREAKER_FAILURE_RATIO,
	K_BREAKER_MIN_CALLS,
	K_BREAKER_WINDOW,
	K_BREAKER_OPEN_FOR,
	K_BREAKER_MAX_OPEN,
	_K_MAX,
};

struct config_key {
	enum section section;
	const char *name;
	enum key_type type;
	size_t offset; /* into struct config */
	uint64_t min, max;
	const char *range; /* overrides the generated "min to max" text */
};

extern const char *const config_section_names[_SEC_MAX];
extern const struct config_key config_keys[_K_MAX];

/* One load of one file: what it has seen so far and what went wrong. */
struct config_parser {
	const char *name; /* for diagnostics */
	char *dir;	  /* prefix for relative paths, NULL = keep them as written */
	struct config *c;
	struct diag *diags;
	unsigned errors; /* counted here: diag_add() may drop a line on OOM */
	struct config_pending *pending;
	size_t n_pending;
	bool oom;
	int section;			 /* the section being read (ini.c skips unknown ones) */
	int key;			 /* the key whose value comes next, -1 = none */
	unsigned section_line[_SEC_MAX]; /* first header, 0 = absent */
	unsigned key_line[_K_MAX];	 /* where the key was set, 0 = not set */
	bool bad[_K_MAX];		 /* set but rejected: already reported */
};

/*
 * Records a diagnostic for line; config.c hands them to the caller sorted by
 * line, so checks that run after the whole file was read still appear in
 * file order. Counts it even when memory runs out (then p->oom is set).
 */
void config_error(struct config_parser *p, unsigned line, const char *fmt, ...) _printf_(3, 4);

/* A config with every default, or NULL when out of memory. */
struct config *config_keys_defaults(void);
/* The index of a section or key, or -1 when there is none of that name. */
int config_keys_find_section(const char *name);
int config_keys_find(int section, const char *name);
/* Reports an unknown section or key with the closest known name, if any. */
void config_keys_unknown_section(struct config_parser *p, unsigned line, const char *name);
void config_keys_unknown(struct config_parser *p, unsigned line, const char *key);
/*
 * Parses the value v of key id (set on line) into its field of p->c, or
 * reports why it cannot (with the allowed range) and leaves the field as it
 * was.
 */
void config_keys_set(struct config_parser *p, int id, const char *v, unsigned line);
