/* cme-clusterd: the per-host cluster daemon. Thin: options, signals, then cd_run. */
#include "clusterd.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_bool stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	atomic_store(&stop_flag, true);
}

static int usage(int rc)
{
	fprintf(rc ? stderr : stdout,
		"usage: cme-clusterd --config FILE [--verbose]\n"
		"  Joins this host to the cluster described by FILE (see README,\n"
		"  \"cme-clusterd configuration\"). SIGTERM/SIGINT stop the daemon; the VMs keep\n"
		"  running and a restarted daemon re-adopts them.\n");
	return rc;
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_signal };
	struct cd_config cfg;
	const char *path = NULL;
	bool verbose = false;
	char err[512] = "";
	int rc;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--config") && i + 1 < argc)
			path = argv[++i];
		else if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v"))
			verbose = true;
		else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return usage(0);
		else {
			fprintf(stderr, "cme-clusterd: unknown argument %s\n", argv[i]);
			return usage(2);
		}
	}
	if (!path)
		return usage(2);
	log_init("cme-clusterd", verbose ? LOG_DEBUG : LOG_INFO);
	if (cd_config_load(path, &cfg, err, sizeof(err))) {
		fprintf(stderr, "cme-clusterd: %s\n", err);
		return 1;
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	rc = cd_run(&cfg, &stop_flag, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "cme-clusterd: %s\n", err);
		return 1;
	}
	return 0;
}
