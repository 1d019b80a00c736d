/*
 * strv: NULL-terminated vectors of malloc'ed strings (an argv, a list from
 * the config), owned as a whole: freeing the vector frees every string.
 */
#pragma once

#include <stddef.h>

/* Frees v and its strings; accepts NULL, returns NULL. */
char **strv_free(char **v);
void strv_freep(char ***v);
/*
 * Appends s to *v, which holds *n strings (0 and NULL for a new vector), and
 * keeps it NULL-terminated. Takes s, also on failure (-ENOMEM).
 */
int strv_push(char ***v, size_t *n, char *s);
/* Returns a copy of v, strings included, or NULL when out of memory. */
char **strv_copy(char *const *v);
