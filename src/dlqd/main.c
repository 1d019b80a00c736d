/*
 * dlqd: command line. Everything else lives in the daemon module.
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "dlqd/daemon.h"
#include "common/log.h"
#include "common/taxonomy.h"
#include "common/version.h"

static void help(void)
{
	printf("Usage: dlqd [--config PATH]\n"
	       "       dlqd --check-config [--config PATH]\n"
	       "       dlqd --has-broker-url [--config PATH]\n"
	       "       dlqd --version | --help\n\n"
	       "Consumes a RabbitMQ queue, runs each job through its handler and routes\n"
	       "failures to delay lanes or the dead letter queue. Never acks a message\n"
	       "before it succeeded or its copy was confirmed by the broker.\n\n"
	       "  -c, --config PATH    config file (default %s)\n"
	       "  -t, --check-config   validate the config and the taxonomy, print every\n"
	       "                       error as FILE:LINE: message, exit 0 or 1\n"
	       "      --has-broker-url exit 0 when the config sets [broker] url, 1 when\n"
	       "                       not yet (dlqd.service's ExecCondition=: the start\n"
	       "                       is skipped), 255 when the file cannot be read\n"
	       "  -V, --version        print the version\n"
	       "  -h, --help           print this help\n",
	       CONFIG_DEFAULT_PATH);
}

static int check_config(const char *path)
{
	_cleanup_(config_freep) struct config *c = NULL;
	_cleanup_(taxonomy_freep) struct taxonomy *t = NULL;
	struct diag diags = { 0 };
	int r;

	r = config_load(path, &c, &diags);
	if (r >= 0)
		r = taxonomy_load(c->retry.taxonomy, &t, &diags);
	for (size_t i = 0; i < diags.n; i++)
		fprintf(stderr, "%s\n", diags.lines[i]);
	diag_done(&diags);
	if (r < 0) {
		fprintf(stderr, "%s: configuration is invalid\n", path);
		return EXIT_FAILURE;
	}
	char warning[PATH_MAX + 256];
	if (config_check_secrets(c, warning, sizeof(warning)) > 0)
		fprintf(stderr, "%s: warning: %s\n", path, warning);
	printf("%s: configuration OK (taxonomy %s)\n", path, c->retry.taxonomy);
	return EXIT_SUCCESS;
}

/*
 * dlqd.service's ExecCondition=: the package ships dlqd.conf without a url, and
 * the enabled unit must not start (nor fail) before the operator wrote one.
 * systemd skips the start on exit 1..254 and fails the unit on 255, which is
 * right for a file that cannot be read. The rest of the file is left for the
 * start to check, so a broken config still fails loudly.
 */
static int has_broker_url(const char *path)
{
	int r = config_has_broker_url(path);

	if (r < 0) {
		fprintf(stderr, "%s: cannot read: %s\n", path, strerror(-r));
		return 255;
	}
	if (r == 0) {
		fprintf(stderr,
			"%s: no [broker] url set yet: dlqd does not start until one is written\n",
			path);
		return EXIT_FAILURE;
	}
	return EXIT_SUCCESS;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 't' },
		{ "has-broker-url", no_argument, NULL, 'U' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *path = CONFIG_DEFAULT_PATH;
	bool check = false, url_check = false;
	int c;

	while ((c = getopt_long(argc, argv, "c:tVh", opts, NULL)) >= 0) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 't':
			check = true;
			break;
		case 'U':
			url_check = true;
			break;
		case 'V':
			printf("dlqd %s\n", DLQD_VERSION);
			return EXIT_SUCCESS;
		case 'h':
			help();
			return EXIT_SUCCESS;
		default:
			fprintf(stderr, "Try 'dlqd --help'.\n");
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "dlqd: unexpected argument '%s'; try 'dlqd --help'.\n",
			argv[optind]);
		return 2;
	}
	if (check && url_check) {
		fprintf(stderr, "dlqd: --check-config and --has-broker-url exclude each other\n");
		return 2;
	}
	if (check)
		return check_config(path);
	if (url_check)
		return has_broker_url(path);

	log_setup(LOG_INFO);
	_cleanup_(daemon_freep) struct daemon *d = NULL;
	if (daemon_new(path, &d) < 0)
		return EXIT_FAILURE;
	return daemon_run(d) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
