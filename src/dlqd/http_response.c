/*
 * http_response: what a finished transfer says. The body is kept up to
 * [handler] max_output (a success body only as evidence, so at most
 * RESULT_EVIDENCE_MAX) and the rest read and dropped; then the status, a
 * Retry-After, the handler's own {"error_code": ...} report or the transport
 * error become the job's result.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http_int.h"

#define RETRY_AFTER_MAX_SEC (24 * 3600)

/*
 * The libcurl error name without its CURLE_ prefix, as the taxonomy's
 * "transport" rules spell it; codes this libcurl may add later get UNKNOWN_<n>.
 */
static const char *transport_name(CURLcode c, char buf[static 24])
{
#define N(x)            \
	case CURLE_##x: \
		return #x
	switch (c) {
		N(OK);
		N(UNSUPPORTED_PROTOCOL);
		N(FAILED_INIT);
		N(URL_MALFORMAT);
		N(NOT_BUILT_IN);
		N(COULDNT_RESOLVE_PROXY);
		N(COULDNT_RESOLVE_HOST);
		N(COULDNT_CONNECT);
		N(WEIRD_SERVER_REPLY);
		N(REMOTE_ACCESS_DENIED);
		N(HTTP2);
		N(PARTIAL_FILE);
		N(WRITE_ERROR);
		N(UPLOAD_FAILED);
		N(READ_ERROR);
		N(OUT_OF_MEMORY);
		N(OPERATION_TIMEDOUT);
		N(RANGE_ERROR);
		N(HTTP_POST_ERROR);
		N(SSL_CONNECT_ERROR);
		N(BAD_DOWNLOAD_RESUME);
		N(FUNCTION_NOT_FOUND);
		N(ABORTED_BY_CALLBACK);
		N(BAD_FUNCTION_ARGUMENT);
		N(INTERFACE_FAILED);
		N(TOO_MANY_REDIRECTS);
		N(UNKNOWN_OPTION);
		N(GOT_NOTHING);
		N(SSL_ENGINE_NOTFOUND);
		N(SSL_ENGINE_SETFAILED);
		N(SEND_ERROR);
		N(RECV_ERROR);
		N(SSL_CERTPROBLEM);
		N(SSL_CIPHER);
		N(PEER_FAILED_VERIFICATION);
		N(BAD_CONTENT_ENCODING);
		N(FILESIZE_EXCEEDED);
		N(USE_SSL_FAILED);
		N(SEND_FAIL_REWIND);
		N(SSL_ENGINE_INITFAILED);
		N(LOGIN_DENIED);
		N(SSL_CACERT_BADFILE);
		N(SSL_SHUTDOWN_FAILED);
		N(AGAIN);
		N(SSL_CRL_BADFILE);
		N(SSL_ISSUER_ERROR);
		N(CHUNK_FAILED);
		N(NO_CONNECTION_AVAILABLE);
		N(SSL_PINNEDPUBKEYNOTMATCH);
		N(SSL_INVALIDCERTSTATUS);
		N(HTTP2_STREAM);
		N(RECURSIVE_API_CALL);
		N(AUTH_ERROR);
		N(HTTP3);
		N(QUIC_CONNECT_ERROR);
		N(PROXY);
		N(SSL_CLIENTCERT);
		N(UNRECOVERABLE_POLL);
	default:
		break;
	}
#undef N
	snprintf(buf, 24, "UNKNOWN_%d", (int)c);
	return buf;
}

size_t xfer_on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct xfer *x = userdata;
	size_t n = size * nmemb;

	if (!x->body_limit_set) {
		long status = 0;
		size_t max = x->hh->base.max_output;

		/* A success body is only evidence; a failure body may carry error_code. */
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
		if (status >= 200 && status < 300)
			max = MIN(max, (size_t)RESULT_EVIDENCE_MAX);
		x->body.max = max;
		x->body_limit_set = true;
	}
	x->body_total += n;
	buf_append_trunc(&x->body, ptr, n);
	return n;
}

static void parse_handler_code(const struct xfer *x, struct result *r)
{
	const char *ct = NULL, *p = x->body.data;
	size_t len = x->body.len;

	if (!p || len == 0 || x->body_total != len)
		return;
	curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ct);
	while (len && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
		p++;
		len--;
	}
	if (!(ct && strncasecmp(ct, "application/json", 16) == 0) && !(len && *p == '{'))
		return;

	result_parse_report(r, p, len);
}

void xfer_result(struct xfer *x, CURLcode code, struct result *r)
{
	char name[24];
	long status = 0;
	size_t n;

	result_init(r, RESULT_SUCCESS);
	r->duration_usec = now_monotonic_usec() - x->start_usec;
	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	r->http_status = status;

	/* Evidence stays a C string too, so one byte is kept for the NUL. */
	n = MIN(x->body.len, sizeof(r->evidence) - 1);
	if (n)
		memcpy(r->evidence, x->body.data, n);
	r->evidence[n] = '\0';
	r->evidence_len = n;
	r->evidence_truncated = x->body_total > n;

	if (code == CURLE_OK) {
		curl_off_t after = 0;

		if (status >= 200 && status < 300)
			return;
		r->kind = RESULT_HTTP;
		if (curl_easy_getinfo(x->easy, CURLINFO_RETRY_AFTER, &after) == CURLE_OK &&
		    after > 0)
			r->retry_after_usec =
				(uint64_t)MIN(after, (curl_off_t)RETRY_AFTER_MAX_SEC) *
				USEC_PER_SEC;
		parse_handler_code(x, r);
		return;
	}

	r->kind = code == CURLE_OPERATION_TIMEDOUT ? RESULT_TIMEOUT : RESULT_TRANSPORT;
	strscpy(r->transport, transport_name(code, name), sizeof(r->transport));
	strscpy(r->detail, x->errbuf[0] ? x->errbuf : curl_easy_strerror(code), sizeof(r->detail));
}
