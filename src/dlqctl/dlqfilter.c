/*
 * dlqfilter: option values are validated at parse time so that a typo
 * ("--error-class TRANSIENTT") is a usage error, not an empty selection
 * that looks like a clean DLQ.
 */
#include "dlqctl/dlqfilter.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/taxonomy.h"

static const char *const key_names[] = {
	[DLQFILTER_ERROR_CODE] = "--error-code", [DLQFILTER_ERROR_CLASS] = "--error-class",
	[DLQFILTER_MESSAGE_ID] = "--message-id", [DLQFILTER_SCHEMA_VERSION] = "--schema-version",
	[DLQFILTER_OLDER_THAN] = "--older-than", [DLQFILTER_NEWER_THAN] = "--newer-than",
};

/* Writes a one-line reason (err may be NULL) and returns -EINVAL. */
void dlqfilter_init(struct dlqfilter *f)
{
	*f = (struct dlqfilter){ .older_than_usec = USEC_INFINITY,
				 .newer_than_usec = USEC_INFINITY };
}

void dlqfilter_done(struct dlqfilter *f)
{
	for (size_t k = 0; k < _DLQFILTER_LISTS; k++)
		for (size_t i = 0; i < f->list[k].n; i++)
			free(f->list[k].v[i]);
	dlqfilter_init(f);
}

static int add_item(struct dlqfilter *f, enum dlqfilter_key key, const char *s, size_t n, char *err,
		    size_t errlen)
{
	char item[DLQRECORD_STR_MAX];

	while (n > 0 && (*s == ' ' || *s == '\t'))
		s++, n--;
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n == 0)
		return error_set(err, errlen, -EINVAL, "%s: empty value", key_names[key]);
	if (n >= sizeof(item))
		return error_set(err, errlen, -EINVAL, "%s: value longer than %zu bytes",
				 key_names[key], sizeof(item) - 1);
	memcpy(item, s, n);
	item[n] = '\0';
	if (key == DLQFILTER_ERROR_CLASS && error_class_from_string(item) == _ERROR_CLASS_INVALID)
		return error_set(
			err, errlen, -EINVAL,
			"--error-class: unknown class '%s' (expected TRANSIENT, PERSISTENT or "
			"NON_RETRYABLE)",
			item);
	if (f->list[key].n >= DLQFILTER_VALUES_MAX)
		return error_set(err, errlen, -EINVAL, "%s: more than %d values", key_names[key],
				 DLQFILTER_VALUES_MAX);
	f->list[key].v[f->list[key].n] = strdup(item);
	if (!f->list[key].v[f->list[key].n])
		return -ENOMEM;
	f->list[key].n++;
	return 0;
}

int dlqfilter_add(struct dlqfilter *f, enum dlqfilter_key key, const char *value, char *err,
		  size_t errlen)
{
	uint64_t usec;
	int r;

	if (key == DLQFILTER_OLDER_THAN || key == DLQFILTER_NEWER_THAN) {
		if (parse_duration_usec(value, &usec) < 0)
			return error_set(err, errlen, -EINVAL,
					 "%s: invalid duration '%s' (expected a number with a unit "
					 "like 90s, 15m, 2h or 7d)",
					 key_names[key], value);
		if (key == DLQFILTER_OLDER_THAN)
			f->older_than_usec = usec;
		else
			f->newer_than_usec = usec;
		return 0;
	}
	/* Message ids may contain commas: one id per option. */
	if (key == DLQFILTER_MESSAGE_ID)
		return add_item(f, key, value, strlen(value), err, errlen);
	for (const char *p = value;;) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		if ((r = add_item(f, key, p, n, err, errlen)) < 0)
			return r;
		if (!comma)
			return 0;
		p = comma + 1;
	}
}

bool dlqfilter_empty(const struct dlqfilter *f)
{
	for (size_t k = 0; k < _DLQFILTER_LISTS; k++)
		if (f->list[k].n)
			return false;
	return f->older_than_usec == USEC_INFINITY && f->newer_than_usec == USEC_INFINITY;
}

static bool in_list(const struct dlqfilter *f, enum dlqfilter_key key, const char *s)
{
	if (f->list[key].n == 0)
		return true;
	for (size_t i = 0; i < f->list[key].n; i++)
		if (strcmp(f->list[key].v[i], s) == 0)
			return true;
	return false;
}

bool dlqfilter_match(const struct dlqfilter *f, const struct dlq_record *r, uint64_t now_usec)
{
	const char *schema = r->schema_version;

	if (!in_list(f, DLQFILTER_ERROR_CODE, r->error_code) ||
	    !in_list(f, DLQFILTER_ERROR_CLASS, r->error_class) ||
	    !in_list(f, DLQFILTER_MESSAGE_ID, r->message_id))
		return false;
	if (f->list[DLQFILTER_SCHEMA_VERSION].n) {
		if (!r->envelope)
			return false;
		if (!schema[0])
			schema = "none";
		if (!in_list(f, DLQFILTER_SCHEMA_VERSION, schema))
			return false;
	}
	if (f->older_than_usec != USEC_INFINITY || f->newer_than_usec != USEC_INFINITY) {
		uint64_t age;
		if (!r->dead_lettered_at_usec)
			return false;
		age = now_usec > r->dead_lettered_at_usec ? now_usec - r->dead_lettered_at_usec : 0;
		if (f->older_than_usec != USEC_INFINITY && age < f->older_than_usec)
			return false;
		if (f->newer_than_usec != USEC_INFINITY && age >= f->newer_than_usec)
			return false;
	}
	return true;
}
