/*
 * fuzz_config: a config file through config_parse() (ini.c, config_keys.c,
 * config.c and shellwords.c, without the checks that open the files it
 * names), and the same bytes through ini_parse() alone, which reads a
 * length-bounded buffer that need not end in a NUL (as the file reader
 * hands it over). Checks: a refused file says why in "FILE:LINE: message"
 * lines, a loaded one in none; a loaded config keeps the bounds
 * docs/config.md promises; ini hands out only NUL-free values on lines in
 * order.
 */
#include <errno.h>

#include "common/config.h"
#include "common/ini.h"
#include "common/strv.h"
#include "common/util.h"
#include "fuzz.h"

#define NAME "fuzz.conf"

static void check_loaded(const struct config *c)
{
	FUZZ_CHECK(c->broker.url && c->broker.url[0]);
	FUZZ_CHECK(c->broker.prefetch >= 1 && c->broker.prefetch <= 65535);
	FUZZ_CHECK(c->pipeline.queue && c->pipeline.queue[0]);
	FUZZ_CHECK(c->pipeline.max_message_size > 0);
	if (c->handler.type == HANDLER_EXEC)
		FUZZ_CHECK(c->handler.argv && c->handler.argv[0] && c->handler.argv[0][0]);
	else
		FUZZ_CHECK(c->handler.url && c->handler.url[0]);
	FUZZ_CHECK(c->retry.taxonomy && c->retry.taxonomy[0]);
	FUZZ_CHECK(c->breaker.max_open_usec >= c->breaker.open_for_usec ||
		   c->breaker.window_usec == 0);
	FUZZ_CHECK(c->replay.block_schema_versions != NULL);
	FUZZ_CHECK(config_restart_key_changed(c, c) == NULL);
	(void)config_url_has_password(c);
}

struct ini_state {
	unsigned line;
	bool expect_value;
};

static void ini_seen(struct ini_state *s, unsigned line)
{
	FUZZ_CHECK(line >= 1 && line >= s->line);
	s->line = line;
}

static bool ini_section(void *userdata, const char *name, unsigned line)
{
	struct ini_state *s = userdata;

	ini_seen(s, line);
	FUZZ_CHECK(!s->expect_value);
	return name[0] != 'x'; /* so that the skip of unknown sections runs too */
}

static int ini_key(void *userdata, const char *key, unsigned line)
{
	struct ini_state *s = userdata;

	ini_seen(s, line);
	FUZZ_CHECK(!s->expect_value && key[0]);
	if (key[0] == 'x')
		return -1;
	s->expect_value = true;
	return strlen(key) % 2 ? INI_VALUE_SHELL : INI_VALUE_PLAIN;
}

static void ini_value(void *userdata, const char *value, unsigned line)
{
	struct ini_state *s = userdata;

	ini_seen(s, line);
	FUZZ_CHECK(s->expect_value);
	s->expect_value = false;
	if (value)
		FUZZ_CHECK(strlen(value) < INI_MAX_LINE);
}

_printf_(3, 4) static void ini_error(void *userdata, unsigned line, const char *fmt, ...)
{
	ini_seen(userdata, line);
}

static const struct ini_handler ini_check = {
	.section = ini_section,
	.key = ini_key,
	.value = ini_value,
	.error = ini_error,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	_cleanup_(config_freep) struct config *c = NULL;
	_cleanup_free_ char *text = fuzz_str(data, size);
	struct ini_state st = { 0 };
	struct diag d = { 0 };
	int r;

	r = config_parse(NAME, text, &c, &d);
	if (r != -ENOMEM) {
		FUZZ_CHECK(r == 0 || r == -EINVAL);
		FUZZ_CHECK(r == 0 ? d.n == 0 && c != NULL : d.n > 0 && c == NULL);
		for (size_t i = 0; i < d.n; i++)
			FUZZ_CHECK(strncmp(d.lines[i], NAME ":", sizeof(NAME)) == 0);
		if (c)
			check_loaded(c);
	}
	diag_done(&d);

	r = ini_parse((const char *)data, size, &ini_check, &st);
	FUZZ_CHECK(r == 0 || r == -EINVAL);
	FUZZ_CHECK(r == 0 || memchr(data, '\0', size) != NULL);
	return 0;
}
