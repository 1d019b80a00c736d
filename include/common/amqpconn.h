/*
 * amqpconn: opens one AMQP connection the way [broker] describes it (URL,
 * password_file or a systemd credential, TLS), blocking with bounded
 * timeouts. Shared by the daemon's broker links and by dlqctl so that both
 * reach the broker exactly alike. It never logs: a failure comes back as
 * -errno plus a one-line reason for the caller to report.
 */
#pragma once

#include <amqp.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/config.h"

#define AMQPCONN_CONNECT_TIMEOUT_USEC (5 * USEC_PER_SEC)
#define AMQPCONN_RPC_TIMEOUT_USEC     (15 * USEC_PER_SEC)
#define AMQPCONN_FRAME_MAX	      131072
#define AMQPCONN_PASSWORD_MAX	      4096

#define AMQPCONN_ENDPOINT_MAX 320

/* One node of [broker] url. */
struct amqpconn_node {
	char *url; /* parsed copy; info points into it */
	struct amqp_connection_info info;
	/* "host:port" as librabbitmq parsed it, for messages, STATUS= and the
	 * node label; an IPv6 host in brackets; never the credentials. */
	char endpoint[AMQPCONN_ENDPOINT_MAX];
};

/*
 * Where to connect and how, resolved once from a config and owning copies of
 * everything it needs: the config may be freed as soon as
 * amqpconn_target_init() returns. The nodes are those of one cluster, in the
 * order [broker] url lists them.
 */
struct amqpconn_target {
	struct amqpconn_node *nodes;
	size_t n_nodes; /* >= 1 */
	char *password; /* from password_file, overrides the URLs' */
	struct {
		char *ca_file; /* NULL: the system's trust store */
		char *cert_file;
		char *key_file; /* NULL: the key is in cert_file */
		bool verify_peer;
		bool verify_hostname;
	} tls;
};

/* Parses the URLs, reads password_file (config.c resolved its path) and
 * copies the TLS settings. */
int amqpconn_target_init(struct amqpconn_target *t, const struct config *c, char *err,
			 size_t errlen);
void amqpconn_target_done(struct amqpconn_target *t);

/*
 * Writes "host:port" of an amqp:// or amqps:// URL to out (the scheme's
 * default port when it names none; an IPv6 host in brackets), parsed by
 * librabbitmq, the parser that connects. -EINVAL when librabbitmq cannot
 * parse url.
 */
int amqpconn_url_endpoint(const char *url, char *out, size_t size);

/*
 * Opens a socket (TLS for amqps://) to node `node` and logs in, blocking:
 * the TCP connect for at most AMQPCONN_CONNECT_TIMEOUT_USEC, the handshake
 * and login for at most heartbeat_s (when > 0) or AMQPCONN_RPC_TIMEOUT_USEC,
 * whichever is shorter. `name` becomes the connection_name the management
 * UI shows. The connection
 * announces the capabilities a long-lived client needs (connection.blocked,
 * consumer_cancel_notify, publisher confirms, basic.nack).
 */
int amqpconn_open(const struct amqpconn_target *t, size_t node, const char *name, int heartbeat_s,
		  amqp_connection_state_t *out, char *err, size_t errlen);

/*
 * amqpconn_open() on each node in turn from *node (wrapping around) until
 * one answers; *node is then the one in use. When none does, err lists
 * every node's reason and the result is the first node's error (-EACCES
 * wins: a refused login is the operator's to fix, not the network's).
 */
int amqpconn_open_any(const struct amqpconn_target *t, size_t *node, const char *name,
		      int heartbeat_s, amqp_connection_state_t *out, char *err, size_t errlen);

/* Table entries for the headers and queue arguments dlqd and dlqctl send. */
amqp_table_entry_t amqpconn_entry_int(const char *key, int64_t v);
amqp_table_entry_t amqpconn_entry_str(const char *key, const char *v);
amqp_table_entry_t amqpconn_entry_bytes(amqp_bytes_t key, amqp_bytes_t v);

/* Maps a librabbitmq status (< 0) to -errno. */
int amqpconn_errno(int status);

/* A one-line reason for an RPC reply that is not AMQP_RESPONSE_NORMAL. */
const char *amqpconn_reply_text(amqp_rpc_reply_t r, char *buf, size_t n);

/*
 * Checks the last RPC on conn: 0, or -errno with the reason in err
 * ("what: reason"). A channel or connection close from the broker is -EPROTO
 * (-ENOENT for 404 NOT_FOUND, -EACCES for 403).
 */
int amqpconn_check_rpc(amqp_connection_state_t conn, const char *what, char *err, size_t errlen);
