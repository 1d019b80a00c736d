/* result: helpers for the plain handler-outcome struct. */
#include "dlqd/result.h"

#include <string.h>

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
