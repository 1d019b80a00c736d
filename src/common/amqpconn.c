/*
 * amqpconn: one blocking connect + login, shared by the daemon and dlqctl.
 * librabbitmq's defaults are not what a long-lived client wants (an empty
 * TLS trust store, few announced capabilities), so this is the one place
 * that fixes them.
 */
#include "common/amqpconn.h"

#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <errno.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "common/version.h"

amqp_table_entry_t amqpconn_entry_bytes(amqp_bytes_t key, amqp_bytes_t v)
{
	return (amqp_table_entry_t){ .key = key,
				     .value = { .kind = AMQP_FIELD_KIND_UTF8, .value.bytes = v } };
}

amqp_table_entry_t amqpconn_entry_str(const char *key, const char *v)
{
	return amqpconn_entry_bytes(amqp_cstring_bytes(key), amqp_cstring_bytes(v ? v : ""));
}

amqp_table_entry_t amqpconn_entry_int(const char *key, int64_t v)
{
	return (amqp_table_entry_t){ .key = amqp_cstring_bytes(key),
				     .value = { .kind = AMQP_FIELD_KIND_I64, .value.i64 = v } };
}

int amqpconn_errno(int status)
{
	switch (status) {
	case AMQP_STATUS_OK:
		return 0;
	case AMQP_STATUS_NO_MEMORY:
		return -ENOMEM;
	case AMQP_STATUS_TIMEOUT:
	case AMQP_STATUS_HEARTBEAT_TIMEOUT:
		return -ETIMEDOUT;
	case AMQP_STATUS_HOSTNAME_RESOLUTION_FAILED:
		return -EHOSTUNREACH;
	case AMQP_STATUS_BAD_URL:
	case AMQP_STATUS_INVALID_PARAMETER:
		return -EINVAL;
	case AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED:
	case AMQP_STATUS_SSL_PEER_VERIFY_FAILED:
		return -EPERM;
	default:
		return -ECONNRESET;
	}
}

const char *amqpconn_reply_text(amqp_rpc_reply_t r, char *buf, size_t n)
{
	switch (r.reply_type) {
	case AMQP_RESPONSE_NORMAL:
		return "ok";
	case AMQP_RESPONSE_NONE:
		return "missing RPC reply";
	case AMQP_RESPONSE_LIBRARY_EXCEPTION:
		return amqp_error_string2(r.library_error);
	case AMQP_RESPONSE_SERVER_EXCEPTION:
		if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
			amqp_connection_close_t *m = r.reply.decoded;
			snprintf(buf, n, "connection closed by broker: %u %.*s", m->reply_code,
				 (int)m->reply_text.len, (char *)m->reply_text.bytes);
		} else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
			amqp_channel_close_t *m = r.reply.decoded;
			snprintf(buf, n, "channel closed by broker: %u %.*s", m->reply_code,
				 (int)m->reply_text.len, (char *)m->reply_text.bytes);
		} else {
			snprintf(buf, n, "unexpected broker method 0x%08x", r.reply.id);
		}
		return buf;
	}
	return "unknown reply";
}

static int close_errno(amqp_rpc_reply_t r)
{
	uint16_t code = 0;

	if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD)
		code = ((amqp_channel_close_t *)r.reply.decoded)->reply_code;
	else if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD)
		code = ((amqp_connection_close_t *)r.reply.decoded)->reply_code;
	switch (code) {
	case AMQP_NOT_FOUND:
		return -ENOENT;
	case AMQP_ACCESS_REFUSED:
		return -EACCES;
	default:
		return -EPROTO;
	}
}

int amqpconn_check_rpc(amqp_connection_state_t conn, const char *what, char *err, size_t errlen)
{
	amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);
	char buf[256];

	if (r.reply_type == AMQP_RESPONSE_NORMAL)
		return 0;
	return error_set(err, errlen,
			 r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
				 ? amqpconn_errno(r.library_error)
			 : r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION ? close_errno(r)
									  : -EPROTO,
			 "AMQP %s failed: %s", what, amqpconn_reply_text(r, buf, sizeof(buf)));
}

void amqpconn_target_done(struct amqpconn_target *t)
{
	if (t->password) {
		explicit_bzero(t->password, strlen(t->password));
		free(t->password);
	}
	for (size_t i = 0; i < t->n_nodes; i++)
		free(t->nodes[i].url);
	free(t->nodes);
	free(t->tls.ca_file);
	free(t->tls.cert_file);
	free(t->tls.key_file);
	*t = (struct amqpconn_target){ 0 };
}

/* "host:port" of what librabbitmq parsed; brackets keep an IPv6 host's
 * colons apart from the port. */
static void format_endpoint(const struct amqp_connection_info *info, char *out, size_t size)
{
	bool v6 = strchr(info->host, ':') != NULL;

	snprintf(out, size, "%s%s%s:%d", v6 ? "[" : "", info->host, v6 ? "]" : "", info->port);
}

int amqpconn_url_endpoint(const char *url, char *out, size_t size)
{
	_cleanup_free_ char *copy = strdup(url);
	struct amqp_connection_info info;

	if (!copy)
		return -ENOMEM;
	amqp_default_connection_info(&info);
	if (amqp_parse_url(copy, &info) != AMQP_STATUS_OK)
		return -EINVAL;
	format_endpoint(&info, out, size);
	return 0;
}

/* A copy of an optional string: NULL stays NULL. */
static int dup_optional(const char *s, char **out)
{
	*out = NULL;
	if (!s)
		return 0;
	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

int amqpconn_target_init(struct amqpconn_target *t, const struct config *c, char *err,
			 size_t errlen)
{
	size_t len;
	int r;

	*t = (struct amqpconn_target){
		.tls = { .verify_peer = c->broker.tls_verify_peer,
			 .verify_hostname = c->broker.tls_verify_hostname },
	};
	for (size_t n = 0; c->broker.urls && c->broker.urls[n]; n++)
		t->n_nodes = n + 1;
	t->nodes = calloc(MAX(t->n_nodes, (size_t)1), sizeof(*t->nodes));
	if (!t->nodes || dup_optional(c->broker.tls_ca_file, &t->tls.ca_file) < 0 ||
	    dup_optional(c->broker.tls_cert_file, &t->tls.cert_file) < 0 ||
	    dup_optional(c->broker.tls_key_file, &t->tls.key_file) < 0) {
		amqpconn_target_done(t);
		return error_set(err, errlen, -ENOMEM, "out of memory");
	}
	if (t->n_nodes == 0) {
		amqpconn_target_done(t);
		return error_set(err, errlen, -EINVAL, "no broker url");
	}
	for (size_t i = 0; i < t->n_nodes; i++) {
		struct amqpconn_node *nd = &t->nodes[i];

		if (!(nd->url = strdup(c->broker.urls[i]))) {
			amqpconn_target_done(t);
			return error_set(err, errlen, -ENOMEM, "out of memory");
		}
		amqp_default_connection_info(&nd->info);
		if (amqp_parse_url(nd->url, &nd->info) != AMQP_STATUS_OK) {
			amqpconn_target_done(t);
			return error_set(err, errlen, -EINVAL, "invalid broker url #%zu", i + 1);
		}
		format_endpoint(&nd->info, nd->endpoint, sizeof(nd->endpoint));
	}
	if (!c->broker.password_file)
		return 0;
	r = read_file_max(c->broker.password_file, AMQPCONN_PASSWORD_MAX, &t->password, &len);
	if (r < 0) {
		amqpconn_target_done(t);
		return error_set(err, errlen, r, "cannot read password_file %s: %s",
				 c->broker.password_file, strerror(-r));
	}
	while (len > 0 && (t->password[len - 1] == '\n' || t->password[len - 1] == '\r'))
		t->password[--len] = '\0';
	return 0;
}

static int open_socket(const struct amqpconn_target *t, const struct amqp_connection_info *info,
		       amqp_connection_state_t conn, char *err, size_t errlen)
{
	struct timeval tv = { AMQPCONN_CONNECT_TIMEOUT_USEC / USEC_PER_SEC, 0 };
	amqp_socket_t *sock;
	int r;

	if (info->ssl) {
		sock = amqp_ssl_socket_new(conn);
		if (!sock)
			return -ENOMEM;
		amqp_ssl_socket_set_verify_peer(sock, t->tls.verify_peer);
		amqp_ssl_socket_set_verify_hostname(sock, t->tls.verify_hostname);
		if (t->tls.ca_file) {
			r = amqp_ssl_socket_set_cacert(sock, t->tls.ca_file);
			if (r != 0)
				return error_set(err, errlen, amqpconn_errno(r),
						 "cannot load CA file %s: %s", t->tls.ca_file,
						 amqp_error_string2(r));
		} else if (SSL_CTX_set_default_verify_paths(amqp_ssl_socket_get_context(sock)) !=
			   1) {
			/* librabbitmq starts with an empty trust store; without a
			 * tls_ca_file the system's is what operators expect. */
			return error_set(err, errlen, -EIO,
					 "cannot load the system CA certificates");
		}
		if (t->tls.cert_file &&
		    (r = amqp_ssl_socket_set_key(sock, t->tls.cert_file,
						 t->tls.key_file ? t->tls.key_file
								 : t->tls.cert_file)) != 0)
			return error_set(err, errlen, amqpconn_errno(r),
					 "cannot load client certificate %s: %s", t->tls.cert_file,
					 amqp_error_string2(r));
	} else {
		sock = amqp_tcp_socket_new(conn);
		if (!sock)
			return -ENOMEM;
	}
	r = amqp_socket_open_noblock(sock, info->host, info->port, &tv);
	if (r != AMQP_STATUS_OK)
		return error_set(err, errlen, amqpconn_errno(r), "cannot connect to %s:%d: %s",
				 info->host, info->port, amqp_error_string2(r));
	return 0;
}

static int login(const struct amqpconn_target *t, const struct amqp_connection_info *info,
		 amqp_connection_state_t conn, const char *name, int heartbeat_s, char *err,
		 size_t errlen)
{
	amqp_rpc_reply_t reply;
	char buf[256];

	/* librabbitmq announces few capabilities by default; without these the
	 * broker never says it blocked us, nor that it cancelled our consumer. */
	amqp_table_entry_t caps[] = {
		{ .key = amqp_cstring_bytes("connection.blocked"),
		  .value = { .kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1 } },
		{ .key = amqp_cstring_bytes("consumer_cancel_notify"),
		  .value = { .kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1 } },
		{ .key = amqp_cstring_bytes("basic.nack"),
		  .value = { .kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1 } },
		{ .key = amqp_cstring_bytes("publisher_confirms"),
		  .value = { .kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1 } },
	};
	amqp_table_entry_t props[] = {
		{ .key = amqp_cstring_bytes("connection_name"),
		  .value = { .kind = AMQP_FIELD_KIND_UTF8,
			     .value.bytes = amqp_cstring_bytes(name) } },
		{ .key = amqp_cstring_bytes("product"),
		  .value = { .kind = AMQP_FIELD_KIND_UTF8,
			     .value.bytes = amqp_cstring_bytes("dlqd") } },
		{ .key = amqp_cstring_bytes("version"),
		  .value = { .kind = AMQP_FIELD_KIND_UTF8,
			     .value.bytes = amqp_cstring_bytes(DLQD_VERSION) } },
		{ .key = amqp_cstring_bytes("capabilities"),
		  .value = { .kind = AMQP_FIELD_KIND_TABLE,
			     .value.table = { .num_entries = (int)ARRAY_SIZE(caps),
					      .entries = caps } } },
	};
	amqp_table_t client_props = { .num_entries = (int)ARRAY_SIZE(props), .entries = props };

	reply = amqp_login_with_properties(conn, info->vhost, 0, AMQPCONN_FRAME_MAX, heartbeat_s,
					   &client_props, AMQP_SASL_METHOD_PLAIN, info->user,
					   t->password ? t->password : info->password);
	if (reply.reply_type != AMQP_RESPONSE_NORMAL)
		return error_set(err, errlen, -EACCES, "AMQP login to %s:%d as %s failed: %s",
				 info->host, info->port, info->user,
				 amqpconn_reply_text(reply, buf, sizeof(buf)));
	return 0;
}

int amqpconn_open(const struct amqpconn_target *t, size_t node, const char *name, int heartbeat_s,
		  amqp_connection_state_t *out, char *err, size_t errlen)
{
	struct timeval rpc_tv = { AMQPCONN_RPC_TIMEOUT_USEC / USEC_PER_SEC, 0 };
	/* Connecting blocks the caller's loop (dlqd's other link, its
	 * watchdog): a node that does not finish the handshake within one
	 * heartbeat interval would be declared dead by heartbeats anyway. */
	struct timeval hs_tv = { heartbeat_s > 0 ? MIN(MAX(heartbeat_s, 1), rpc_tv.tv_sec)
						 : rpc_tv.tv_sec,
				 0 };
	const struct amqp_connection_info *info = &t->nodes[node % t->n_nodes].info;
	amqp_connection_state_t conn;
	int r;

	conn = amqp_new_connection();
	if (!conn)
		return error_set(err, errlen, -ENOMEM, "out of memory");
	amqp_set_rpc_timeout(conn, &rpc_tv);
	amqp_set_handshake_timeout(conn, &hs_tv);
	if ((r = open_socket(t, info, conn, err, errlen)) < 0 ||
	    (r = login(t, info, conn, name, heartbeat_s, err, errlen)) < 0) {
		amqp_destroy_connection(conn);
		return r;
	}
	*out = conn;
	return 0;
}

int amqpconn_open_any(const struct amqpconn_target *t, size_t *node, const char *name,
		      int heartbeat_s, amqp_connection_state_t *out, char *err, size_t errlen)
{
	char one[320];
	size_t used = 0;
	int first = 0;

	if (errlen)
		err[0] = '\0';
	for (size_t k = 0; k < t->n_nodes; k++) {
		size_t i = (*node + k) % t->n_nodes;
		int r = amqpconn_open(t, i, name, heartbeat_s, out, one, sizeof(one));

		if (r >= 0) {
			*node = i;
			return r;
		}
		if (!first || r == -EACCES)
			first = first == -EACCES ? first : r;
		if (t->n_nodes == 1)
			return error_set(err, errlen, r, "%s", one);
		/* Every node's reason: the operator sees the whole cluster. */
		if (used < errlen) {
			int w = snprintf(err + used, errlen - used, "%s%s", used ? "; " : "", one);
			used += w > 0 ? (size_t)w : 0;
		}
	}
	return first;
}
