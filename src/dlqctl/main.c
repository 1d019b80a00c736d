/*
 * dlqctl: the operator's tool for the DLQ (docs/dlqctl.md). This file only
 * reads the command line into struct ctl_options; ctlrun runs the command
 * and ctlexit decides the exit status.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "common/version.h"
#include "dlqctl/ctlout.h"
#include "dlqctl/ctlrun.h"

static void help(void)
{
	printf("Usage: dlqctl [--config PATH] [--json] COMMAND [FILTERS] [OPTIONS]\n\n"
	       "Commands (on <queue>.dlq of the config's [pipeline] queue):\n"
	       "  stats                 depth, counts by error code and class, ages\n"
	       "  list [--limit N]      one line per matching message, in queue order\n"
	       "  show MESSAGE_ID       the whole message: headers, envelope, error history\n"
	       "  replay (FILTERS|--all) [--rate N] [--limit N] [--dry-run] [--force]\n"
	       "                        move matching messages back to the main queue\n"
	       "  purge (FILTERS|--all) --yes [--archive FILE] [--limit N] [--dry-run]\n"
	       "                        delete matching messages (archived first as JSON lines)\n\n"
	       "Filters (repeat an option or separate values by commas to accept several):\n"
	       "  --error-code CODE     --error-class CLASS     --message-id ID\n"
	       "  --schema-version V (none = no schema_version)\n"
	       "  --older-than DUR      --newer-than DUR   (age since dead_lettered_at)\n\n"
	       "Options:\n"
	       "  -c, --config PATH     config file (default %s)\n"
	       "      --json            machine output (stats: one object; list/show: JSON lines)\n"
	       "      --rate N          replay at most N messages per second (default %d)\n"
	       "      --limit N         act on at most N matching messages\n"
	       "      --max-duration D  stop a run after D (default 25m, below RabbitMQ's\n"
	       "                        30 min consumer_timeout)\n"
	       "  -V, --version, -h, --help\n\n"
	       "Exit status: 0 ok, 1 error, 2 usage or bad filter/config, 3 broker unreachable,\n"
	       "4 queue missing, 5 refused, 6 message not found, 130 interrupted.\n",
	       CONFIG_DEFAULT_PATH, CTLOPTS_DEFAULT_RATE);
}

enum {
	OPT_JSON = 0x100,
	OPT_ALL,
	OPT_RATE,
	OPT_LIMIT,
	OPT_DRY_RUN,
	OPT_FORCE,
	OPT_YES,
	OPT_ARCHIVE,
	OPT_MAX_DURATION,
	OPT_FILTER = 0x200, /* + enum dlqfilter_key */
};

static const struct option opts[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "all", no_argument, NULL, OPT_ALL },
	{ "rate", required_argument, NULL, OPT_RATE },
	{ "limit", required_argument, NULL, OPT_LIMIT },
	{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
	{ "force", no_argument, NULL, OPT_FORCE },
	{ "yes", no_argument, NULL, OPT_YES },
	{ "archive", required_argument, NULL, OPT_ARCHIVE },
	{ "max-duration", required_argument, NULL, OPT_MAX_DURATION },
	{ "error-code", required_argument, NULL, OPT_FILTER + DLQFILTER_ERROR_CODE },
	{ "error-class", required_argument, NULL, OPT_FILTER + DLQFILTER_ERROR_CLASS },
	{ "message-id", required_argument, NULL, OPT_FILTER + DLQFILTER_MESSAGE_ID },
	{ "schema-version", required_argument, NULL, OPT_FILTER + DLQFILTER_SCHEMA_VERSION },
	{ "older-than", required_argument, NULL, OPT_FILTER + DLQFILTER_OLDER_THAN },
	{ "newer-than", required_argument, NULL, OPT_FILTER + DLQFILTER_NEWER_THAN },
	{ "version", no_argument, NULL, 'V' },
	{ "help", no_argument, NULL, 'h' },
	{ 0 },
};

static int add_filter(struct ctl_options *o, enum dlqfilter_key key, const char *value)
{
	char err[256];
	int r = dlqfilter_add(&o->filter, key, value, err, sizeof(err));

	if (r < 0)
		ctlout_say("%s", err);
	return r;
}

/* The options that only switch something on; NULL for the others. */
static bool *flag_of(struct ctl_options *o, int opt)
{
	switch (opt) {
	case OPT_JSON:
		return &o->json;
	case OPT_ALL:
		return &o->all;
	case OPT_DRY_RUN:
		return &o->dry_run;
	case OPT_FORCE:
		return &o->force;
	case OPT_YES:
		return &o->yes;
	default:
		return NULL;
	}
}

/* One option; 1 when it was --help or --version (done), -EINVAL for a bad one. */
static int parse_option(struct ctl_options *o, int opt)
{
	bool *flag = flag_of(o, opt);
	uint64_t v;

	if (flag) {
		*flag = true;
		return 0;
	}
	switch (opt) {
	case 'c':
		o->config_path = optarg;
		return 0;
	case OPT_RATE:
		if (parse_uint(optarg, 1, CTLOPTS_RATE_MAX, &o->rate) < 0) {
			ctlout_say("--rate: expected messages per second, 1 to %d, got '%s'",
				   CTLOPTS_RATE_MAX, optarg);
			return -EINVAL;
		}
		o->rate_given = true;
		return 0;
	case OPT_LIMIT:
		if (parse_uint(optarg, 1, UINT64_MAX / 2, &o->limit) < 0) {
			ctlout_say("--limit: expected a positive number, got '%s'", optarg);
			return -EINVAL;
		}
		return 0;
	case OPT_ARCHIVE:
		o->archive_path = optarg;
		return 0;
	case OPT_MAX_DURATION:
		if (parse_duration_usec(optarg, &v) < 0 || v == 0) {
			ctlout_say("--max-duration: invalid duration '%s'", optarg);
			return -EINVAL;
		}
		o->max_run_usec = v;
		return 0;
	case 'V':
		printf("dlqctl %s\n", DLQD_VERSION);
		return 1;
	case 'h':
		help();
		return 1;
	default:
		if (opt >= OPT_FILTER && opt < OPT_FILTER + 16)
			return add_filter(o, opt - OPT_FILTER, optarg);
		fprintf(stderr, "Try 'dlqctl --help'.\n");
		return -EINVAL;
	}
}

/* The command and its operand. */
static int parse_command(struct ctl_options *o, int argc, char **argv)
{
	static const char *const names[] = { "stats", "list", "show", "replay", "purge" };
	const char *cmd;
	size_t i;

	if (optind >= argc) {
		ctlout_say("missing command (stats, list, show, replay or purge); try 'dlqctl "
			   "--help'");
		return -EINVAL;
	}
	cmd = argv[optind++];
	for (i = 0; i < ARRAY_SIZE(names); i++)
		if (strcmp(cmd, names[i]) == 0)
			break;
	if (i == ARRAY_SIZE(names)) {
		ctlout_say("unknown command '%s' (expected stats, list, show, replay or purge)",
			   cmd);
		return -EINVAL;
	}
	o->cmd = (enum ctl_command)i;
	if (o->cmd == CTL_SHOW) {
		if (optind >= argc) {
			ctlout_say("show needs a MESSAGE_ID");
			return -EINVAL;
		}
		o->show_id = argv[optind++];
		if (add_filter(o, DLQFILTER_MESSAGE_ID, o->show_id) < 0)
			return -EINVAL;
	}
	if (optind < argc) {
		ctlout_say("unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

static int parse_args(struct ctl_options *o, int argc, char **argv)
{
	char why[256];
	int opt, r;

	/* Options may come before or after the command (permuting getopt). */
	while ((opt = getopt_long(argc, argv, "c:Vh", opts, NULL)) >= 0)
		if ((r = parse_option(o, opt)) != 0)
			return r;
	if ((r = parse_command(o, argc, argv)) < 0)
		return r;
	if ((r = ctlopts_check(o, why, sizeof(why))) < 0)
		ctlout_say("%s", why);
	return r;
}

int main(int argc, char **argv)
{
	struct ctl_options o = {
		.config_path = CONFIG_DEFAULT_PATH,
		.rate = CTLOPTS_DEFAULT_RATE,
		.max_run_usec = CTLOPTS_DEFAULT_MAX_RUN,
	};
	int r;

	log_setup(LOG_INFO);
	dlqfilter_init(&o.filter);
	r = parse_args(&o, argc, argv);
	if (r == 0)
		r = ctlrun(&o);
	else
		r = ctlexit_code(CTLEXIT_ARGS, r > 0 ? 0 : r, false);
	dlqfilter_done(&o.filter);
	return r;
}
