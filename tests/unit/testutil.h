/*
 * testutil: helpers and fixtures shared by the unit tests. Every
 * tests/unit/test_*.c is its own executable, so everything here is static
 * inline or a macro; include it after <cmocka.h>.
 */
#pragma once

#include <dirent.h>

/* Open descriptors of this process, to prove a test leaked none. */
static inline int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the DIR's own fd */
}

/*
 * The contract's example taxonomy (design.md, "Taxonomy table"), cut after
 * its first five rules so a test can add rules of its own in between:
 * CONTRACT_TAXONOMY_HEAD "   {rule},\n" ... "   {last rule}" CONTRACT_TAXONOMY_TAIL.
 */
#define CONTRACT_TAXONOMY_HEAD                                                                    \
	"{\"version\": 1,\n"                                                                      \
	" \"policies\": {\n"                                                                      \
	"   \"fast\": {\"max_attempt\": 5, \"initial\": \"2s\", \"multiplier\": 3, \"max\": "     \
	"\"120s\", \"jitter\": [0.10, 0.30]},\n"                                                  \
	"   \"slow\": {\"max_attempt\": 3, \"initial\": \"5m\", \"multiplier\": 2, \"max\": "     \
	"\"1h\", "                                                                                \
	"\"jitter\": [0.10, 0.30]},\n"                                                            \
	"   \"none\": {\"max_attempt\": 0}},\n"                                                   \
	" \"classes\": {\"TRANSIENT\": \"fast\", \"PERSISTENT\": \"slow\", \"NON_RETRYABLE\": "   \
	"\"none\"},\n"                                                                            \
	" \"rules\": [\n"                                                                         \
	"   {\"when\": {\"http_status\": [429, 503]}, \"error_code\": \"UPSTREAM_THROTTLED\", "   \
	"\"class\": \"TRANSIENT\"},\n"                                                            \
	"   {\"when\": {\"http_status\": [\"401\", \"403\"]}, \"error_code\": \"AUTH_REVOKED\", " \
	"\"class\": \"NON_RETRYABLE\", \"escalate\": true},\n"                                    \
	"   {\"when\": {\"http_status\": [\"4xx\"]}, \"error_code\": \"INVALID_PAYLOAD\", "       \
	"\"class\": \"NON_RETRYABLE\"},\n"                                                        \
	"   {\"when\": {\"timeout\": true}, \"error_code\": \"UPSTREAM_TIMEOUT\", \"class\": "    \
	"\"TRANSIENT\"},\n"                                                                       \
	"   {\"when\": {\"exit_code\": [75]}, \"error_code\": \"TEMPFAIL\", \"class\": "          \
	"\"TRANSIENT\"},\n"

#define CONTRACT_TAXONOMY_TAIL                                                          \
	"],\n"                                                                          \
	" \"default\": {\"error_code\": \"UNKNOWN_ERROR\", \"class\": \"PERSISTENT\", " \
	"\"policy\": "                                                                  \
	"\"none\"}}\n"
