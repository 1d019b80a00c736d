/*
 * ctlopts: what dlqctl decides from its options alone, before and during a
 * run, kept apart from the I/O so the tests can drive each rule.
 */
#include "dlqctl/ctlopts.h"

#include <errno.h>
#include <string.h>

int ctlopts_check(const struct ctl_options *o, char *why, size_t n)
{
	const char *bad = NULL;

	if ((o->rate_given || o->force) && o->cmd != CTL_REPLAY)
		bad = "--rate and --force only apply to replay";
	else if ((o->yes || o->archive_path) && o->cmd != CTL_PURGE)
		bad = "--yes and --archive only apply to purge";
	else if (o->dry_run && o->cmd != CTL_REPLAY && o->cmd != CTL_PURGE)
		bad = "--dry-run only applies to replay and purge";
	else if (o->all && !dlqfilter_empty(&o->filter))
		bad = "--all cannot be combined with filters";
	return bad ? error_set(why, n, -EINVAL, "%s", bad) : 0;
}

int ctlopts_refusal(const struct ctl_options *o, char *why, size_t n)
{
	if ((o->cmd == CTL_REPLAY || o->cmd == CTL_PURGE) && !o->all && dlqfilter_empty(&o->filter))
		return error_set(why, n, -EPERM,
				 "refusing to %s every message without --all; give a filter "
				 "(--error-code, --error-class, --older-than, --newer-than, "
				 "--message-id, --schema-version)",
				 o->cmd == CTL_REPLAY ? "replay" : "purge");
	if (o->cmd == CTL_PURGE && !o->yes && !o->dry_run)
		return error_set(why, n, -EPERM,
				 "purge deletes messages for good: add --yes (and --archive FILE "
				 "to keep a copy), or try --dry-run");
	return 0;
}

bool ctlopts_schema_blocked(const struct ctl_options *o, char *const *blocked,
			    const struct dlq_record *r)
{
	/* An invalid body has no schema version: its bytes go back as they are. */
	if (!r->envelope || o->force)
		return false;
	for (char *const *v = blocked; v && *v; v++)
		if (strcmp(*v, r->schema_version) == 0)
			return true;
	return false;
}

bool ctlopts_limit_reached(const struct ctl_options *o, uint64_t matched, uint64_t replayed,
			   uint64_t in_flight)
{
	if (!o->limit)
		return false;
	if (o->cmd == CTL_REPLAY)
		return replayed + in_flight >= o->limit;
	return matched >= o->limit;
}
