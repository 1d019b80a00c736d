/*
 * listen_addr: the one parser of a listening address, "host:port" or
 * "[ipv6]:port", as written in [metrics] listen. config.c validates the key
 * with it and metrics_server.c binds what it yields, so the two can never
 * disagree about what an address means. Pure: no resolution, no I/O.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* The longest host name DNS allows (253) fits, with room to spare. */
#define LISTEN_ADDR_HOST_MAX 256

struct listen_addr {
	char host[LISTEN_ADDR_HOST_MAX]; /* a name or numeric address, no brackets */
	uint16_t port;			 /* 0 = any free port (config refuses it) */
	bool ipv6;			 /* written in brackets: a numeric IPv6 address */
};

/*
 * Parses s into *out. The host is non-empty and shorter than
 * LISTEN_ADDR_HOST_MAX; in brackets it must contain a ':' (an IPv6 address),
 * outside them it must not contain another ':' or a ']'; the port is decimal
 * digits only, 0 to 65535; no whitespace anywhere. Returns 0, or -EINVAL
 * (also for NULL) with *out untouched.
 */
int listen_addr_parse(const char *s, struct listen_addr *out);
