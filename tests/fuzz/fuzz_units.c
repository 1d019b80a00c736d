/*
 * fuzz_units: one string through every small value parser of util.c and
 * listen_addr.c, the ones config_keys.c, taxonomy_load.c, envelope.c and
 * dlqctl's options call: durations ("250ms", "1.5h"), sizes ("16MiB"),
 * bounded integers, booleans, RFC 3339 timestamps and listen addresses.
 * Checks: results stay within the documented limits, and a timestamp that
 * parses is written back by format_timestamp() as one that parses to the
 * same second.
 */
#include <ctype.h>
#include <errno.h>

#include "common/listen_addr.h"
#include "common/util.h"
#include "fuzz.h"

static void check_timestamp(const char *s)
{
	char buf[TIMESTAMP_MAX];
	uint64_t t, again;

	if (parse_timestamp(s, &t) < 0)
		return;
	FUZZ_CHECK(t <= TIMESTAMP_USEC_MAX);
	format_timestamp(t, buf);
	FUZZ_CHECK(parse_timestamp(buf, &again) == 0);
	FUZZ_CHECK(again == t - t % USEC_PER_SEC);
}

static void check_listen(const char *s)
{
	struct listen_addr a;

	if (listen_addr_parse(s, &a) < 0)
		return;
	FUZZ_CHECK(a.host[0] && strlen(a.host) < LISTEN_ADDR_HOST_MAX);
	for (const char *p = a.host; *p; p++)
		FUZZ_CHECK(!isspace((unsigned char)*p));
	FUZZ_CHECK(a.ipv6 == (strchr(a.host, ':') != NULL));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	_cleanup_free_ char *s = fuzz_str(data, size);
	uint64_t v;
	bool b;
	int r;

	r = parse_duration_usec(s, &v);
	FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
	if (r == 0)
		FUZZ_CHECK(v <= UINT64_C(100000000000000000));
	r = parse_size(s, &v);
	FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
	if (r == 0)
		FUZZ_CHECK(v <= UINT64_C(1000000000000000));
	r = parse_uint(s, 1, 65535, &v);
	FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
	if (r == 0)
		FUZZ_CHECK(v >= 1 && v <= 65535);
	(void)parse_uint(s, 0, UINT64_MAX, &v);
	r = parse_bool(s, &b);
	FUZZ_CHECK(r == 0 || r == -EINVAL);
	check_timestamp(s);
	check_listen(s);
	return 0;
}
