/* result: helpers for the plain handler-outcome struct, and the one reader
 * of a handler's own {"error_code", "error_class"} verdict. */
#include "common/result.h"

#include <jansson.h>
#include <string.h>

#include "common/util.h"

void result_init(struct result *r, enum result_kind kind)
{
	memset(r, 0, sizeof(*r));
	r->kind = kind;
}

const char *result_kind_to_string(enum result_kind k)
{
	static const char *const names[] = {
		[RESULT_SUCCESS] = "success",	  [RESULT_HTTP] = "http",
		[RESULT_TRANSPORT] = "transport", [RESULT_TIMEOUT] = "timeout",
		[RESULT_EXIT] = "exit",		  [RESULT_SIGNAL] = "signal",
		[RESULT_INTERNAL] = "internal",
	};

	if ((unsigned)k < sizeof(names) / sizeof(names[0]) && names[k])
		return names[k];
	return "unknown";
}

bool result_code_valid(const char *s, size_t max)
{
	size_t n = strlen(s);

	return n > 0 && n < max && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == n;
}

void result_parse_report(struct result *r, const char *json, size_t len)
{
	json_t *root = json_loadb(json, len, 0, NULL);
	const char *code, *cls;

	if (!json_is_object(root)) {
		json_decref(root);
		return;
	}
	code = json_string_value(json_object_get(root, "error_code"));
	cls = json_string_value(json_object_get(root, "error_class"));
	if (code && result_code_valid(code, sizeof(r->handler_code))) {
		strscpy(r->handler_code, code, sizeof(r->handler_code));
		if (cls && result_code_valid(cls, sizeof(r->handler_class)))
			strscpy(r->handler_class, cls, sizeof(r->handler_class));
	}
	json_decref(root);
}
