/*
 * config: the INI file of the contract (design.md Part 1), parsed into a plain
 * struct. Loading never stops at the first error: every problem becomes a
 * "FILE:LINE: message" diagnostic so --check-config can list them all. A config
 * with any diagnostic is rejected as a whole (never half-applied).
 *
 * The module is four files: ini.c reads the syntax, config_keys.c knows every
 * key (type, bounds, default), config.c loads and runs the checks across
 * keys, and shellwords.c splits [handler] command into argv.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/util.h"

#define CONFIG_DEFAULT_PATH "/etc/dlqd/dlqd.conf"
/* Nodes [broker] url may list (one cluster). */
#define CONFIG_BROKER_URLS_MAX 16

enum queue_type {
	QUEUE_CLASSIC,
	QUEUE_QUORUM,
};

enum handler_type {
	HANDLER_HTTP,
	HANDLER_EXEC,
};

struct config {
	char *path; /* the file this was loaded from */

	struct {
		char *url;	     /* as written: one or more URLs, space separated */
		char **urls;	     /* url split: the nodes, in order, NULL-terminated */
		char *password_file; /* NULL when unset */
		uint32_t prefetch;   /* 1..65535, = max messages in flight */
		uint64_t heartbeat_usec;
		char *tls_ca_file;   /* amqps: CA bundle; NULL = system default */
		char *tls_cert_file; /* amqps: client certificate, optional */
		char *tls_key_file;
		bool tls_verify_peer;	  /* default true */
		bool tls_verify_hostname; /* default true */
	} broker;

	struct {
		char *queue; /* main queue; prefix of every other name */
		enum queue_type queue_type;
		bool declare;
		uint64_t max_message_size; /* bigger bodies go to the DLQ unread */
		/* A delivery the broker makes again this many times without dlqd
		 * having settled it goes to the DLQ as POISON_MESSAGE; 0 = off. */
		uint32_t max_redeliveries;
		/* Body bytes held at once; reading pauses above it (>= max_message_size). */
		uint64_t max_body_memory;
	} pipeline;

	struct {
		enum handler_type type;
		char *url;     /* http */
		char *command; /* exec: the raw command line */
		char **argv;   /* exec: command split by shellwords_split(), NULL-terminated */
		uint64_t timeout_usec;
		uint64_t max_output; /* bytes of response body / stderr kept as evidence */
	} handler;

	struct {
		char *taxonomy;		      /* path to the taxonomy JSON */
		double budget_ratio;	      /* retries per first attempt in a window */
		double budget_min_per_second; /* the budget's floor; 0 = no budget */
		uint64_t budget_window_usec;  /* 0 = no budget */
	} retry;

	struct {
		double failure_ratio; /* open at this share of tripping failures, (0, 1] */
		uint32_t min_calls;   /* ... out of at least this many calls */
		uint64_t window_usec; /* 0 = no breaker */
		uint64_t open_for_usec;
		uint64_t max_open_usec; /* >= open_for */
	} breaker;

	struct {
		char *listen;			 /* "host:port"; empty disables the endpoint */
		uint64_t dlq_poll_interval_usec; /* DLQ depth/age probe; 0 = off */
	} metrics;

	struct {
		uint64_t drain_timeout_usec;
	} shutdown;

	struct {
		char **block_schema_versions; /* NULL-terminated, may be empty */
	} replay;
};

/*
 * Loads and validates path. On success *out is a new config and 0 is returned.
 * On failure returns -EINVAL (or -errno when the file cannot be read) and every
 * problem is appended to diags as "FILE:LINE: message".
 */
int config_load(const char *path, struct config **out, struct diag *diags);

/*
 * The same for a tool that only talks to the broker (dlqctl): the taxonomy
 * and the handler's program need not exist where it runs, the broker's
 * password and TLS files must.
 */
int config_load_for_broker(const char *path, struct config **out, struct diag *diags);

/* Parses text as if read from `name` (for tests and reload). */
int config_parse(const char *name, const char *text, struct config **out, struct diag *diags);

/*
 * 1 when the file at path sets a non-empty [broker] url, 0 when it sets none,
 * -errno when it cannot be read. Nothing else of the file is checked: this is
 * the units' start condition (dlqd --has-broker-url), which the package's
 * config, shipped without a url, fails until the operator writes one; every
 * other mistake is left for the start to report.
 */
int config_has_broker_url(const char *path);

struct config *config_free(struct config *c);
void config_freep(struct config **c);

/* True when [broker] url carries a non-empty password (user:password@). */
bool config_url_has_password(const struct config *c);

/*
 * 1 with a warning in buf when the config file holds a password (in the URL)
 * and other users can read it; 0 otherwise. Not an error: the file may be
 * readable on purpose, and a config that loads must keep loading.
 */
int config_check_secrets(const struct config *c, char *buf, size_t size);

/*
 * The first key marked "restart" in docs/config.md whose value differs
 * between a and b, as "[section] key", or NULL when a reload can apply b
 * whole. Those keys describe the connection, the topology and the metrics
 * socket, which a running dlqd keeps.
 */
const char *config_restart_key_changed(const struct config *a, const struct config *b);
