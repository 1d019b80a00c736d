/*
 * listen_addr: splits a listening address into host and port (see
 * listen_addr.h). Names are not resolved here: the server resolves them when
 * it binds, and config checks only the shape, so a config written for
 * another host still passes --check-config.
 */
#include "common/listen_addr.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "common/util.h"

int listen_addr_parse(const char *s, struct listen_addr *out)
{
	const char *host, *host_end, *port;
	uint64_t p;
	size_t n;

	if (!s)
		return -EINVAL;
	for (const char *c = s; *c; c++)
		if (isspace((unsigned char)*c))
			return -EINVAL;
	if (*s == '[') {
		host = s + 1;
		host_end = strchr(host, ']');
		if (!host_end || host_end[1] != ':' ||
		    !memchr(host, ':', (size_t)(host_end - host)))
			return -EINVAL;
		port = host_end + 2;
	} else {
		host = s;
		host_end = strchr(s, ':');
		if (!host_end || strchr(host_end + 1, ':') ||
		    memchr(s, ']', (size_t)(host_end - s)))
			return -EINVAL;
		port = host_end + 1;
	}
	n = (size_t)(host_end - host);
	if (n == 0 || n >= sizeof(out->host))
		return -EINVAL;
	/* parse_uint() alone would take a sign or blanks; a port is digits. */
	if (!isdigit((unsigned char)*port) || parse_uint(port, 0, 65535, &p) < 0)
		return -EINVAL;
	memcpy(out->host, host, n);
	out->host[n] = '\0';
	out->port = (uint16_t)p;
	out->ipv6 = *s == '[';
	return 0;
}
