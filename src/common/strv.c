/*
 * strv: the owner of NULL-terminated string vectors (see strv.h).
 */
#include "common/strv.h"

#include <errno.h>
#include <stdlib.h>

char **strv_free(char **v)
{
	if (!v)
		return NULL;
	for (char **s = v; *s; s++)
		free(*s);
	free(v);
	return NULL;
}

void strv_freep(char ***v)
{
	*v = strv_free(*v);
}

int strv_push(char ***v, size_t *n, char *s)
{
	char **nv = realloc(*v, (*n + 2) * sizeof(char *));

	if (!nv) {
		free(s);
		return -ENOMEM;
	}
	nv[(*n)++] = s;
	nv[*n] = NULL;
	*v = nv;
	return 0;
}
