/*
 * strv: the owner of NULL-terminated string vectors (see strv.h).
 */
#include "common/strv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

char **strv_copy(char *const *v)
{
	size_t n = 0;
	char **c;

	while (v[n])
		n++;
	c = calloc(n + 1, sizeof(char *));
	if (!c)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!(c[i] = strdup(v[i])))
			return strv_free(c);
	return c;
}
