/*
 * amqpconn: opens one AMQP connection the way [broker] describes it (URL,
 * password_file or a systemd credential, TLS), blocking with bounded
 * timeouts. Shared by the daemon's broker links and by dlqctl so that both
 * reach the broker exactly alike. It never logs: a failure comes back as
 * -errno plus a one-line reason for the caller to report.
 */
#pragma once

#include <amqp.h>
#include <stddef.h>

#include "common/config.h"

#define AMQPCONN_CONNECT_TIMEOUT_USEC (5 * USEC_PER_SEC)
#define AMQPCONN_RPC_TIMEOUT_USEC     (15 * USEC_PER_SEC)
#define AMQPCONN_FRAME_MAX	      131072
#define AMQPCONN_PASSWORD_MAX	      4096

/* Where to connect, resolved once from a config. */
struct amqpconn_target {
	const struct config *config;
	char *url; /* parsed copy; info points into it */
	struct amqp_connection_info info;
	char *password; /* from password_file, overrides the URL's */
};

/* Parses the URL and reads password_file (config.c resolved its path). */
int amqpconn_target_init(struct amqpconn_target *t, const struct config *c, char *err,
			 size_t errlen);
void amqpconn_target_done(struct amqpconn_target *t);

/*
 * Opens a socket (TLS for amqps://) and logs in. `name` becomes the
 * connection_name the management UI shows. The connection announces the
 * capabilities a long-lived client needs (connection.blocked,
 * consumer_cancel_notify, publisher confirms, basic.nack).
 */
int amqpconn_open(const struct amqpconn_target *t, const char *name, int heartbeat_s,
		  amqp_connection_state_t *out, char *err, size_t errlen);

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
