/* `cme-vmm backup`: start a live backup through a VMM's control socket, follow it (one live
 * line on a terminal), and print the final status as the last line of stdout. Ctrl-C
 * cancels it: no backup is listed, the guest runs on. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm.h"

#define REPLY_MAX (1u << 20)

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

static int usage_fail(const char *msg, const char *arg)
{
	fprintf(stderr, "cme-vmm backup: %s%s\n", msg, arg ? arg : "");
	return VMM_EXIT_USAGE;
}

static int backup_parse(int argc, char **argv, const char **api, json_t *req)
{
	static const struct option opts[] = {
		{ "api", required_argument, NULL, 'a' },
		{ "store", required_argument, NULL, 's' },
		{ "key", required_argument, NULL, 'k' },
		{ "name", required_argument, NULL, 'n' },
		{ "pause-ms", required_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		if (c == '?' || c == ':')
			return usage_fail(c == '?' ? "unknown option " : "option needs a value: ",
					  argv[optind - 1]);
		if (c == 'a')
			*api = optarg;
		else if (c == 'p' && parse_uint(optarg, 1, 60000, &v))
			return usage_fail("--pause-ms: a whole number from 1 to 60000, not ",
					  optarg);
		else if (c == 'p')
			json_object_set_new(req, "pause_ms", json_integer((json_int_t)v));
		else
			json_object_set_new(req,
					    c == 's'   ? "store"
					    : c == 'k' ? "key_file"
						       : "name",
					    json_string(optarg));
	}
	if (optind < argc)
		return usage_fail("unexpected argument ", argv[optind]);
	if (!*api || !json_object_get(req, "store") || !json_object_get(req, "key_file"))
		return usage_fail("needs --api PATH, --store DIR and --key FILE", NULL);
	return 0;
}

/* One request on fd; the reply, or NULL when the VMM went away. */
static json_t *ask(int fd, const char *cmd)
{
	json_t *req = json_pack("{s:s}", "cmd", cmd), *reply = NULL;

	if (jsonl_send(fd, req) || jsonl_recv(fd, REPLY_MAX, &reply))
		reply = NULL;
	json_decref(req);
	return reply;
}

static const char *phase_of(json_t *st)
{
	return json_string_value(json_object_get(st, "phase")) ?: "?";
}

/* Poll backup-status until it is done or failed; returns the last status. */
static json_t *follow(int fd, bool tty)
{
	json_t *st = NULL;

	for (;;) {
		if (interrupted == 1) {
			interrupted = 2;
			json_decref(ask(fd, "backup-cancel"));
		}
		json_decref(st);
		st = ask(fd, "backup-status");
		if (!st || !strcmp(phase_of(st), "done") || !strcmp(phase_of(st), "failed"))
			return st;
		if (tty)
			fprintf(stderr, "\r\033[Kbacking up: %s, round %lld, %lld chunks",
				phase_of(st), json_integer_value(json_object_get(st, "round")),
				json_integer_value(json_object_get(st, "chunks_done")));
		sleep_ms(100);
	}
}

int vmm_backup_main(int argc, char **argv)
{
	const char *api = NULL;
	json_t *req = json_object(), *reply = NULL, *st;
	bool tty = isatty(STDERR_FILENO);
	int fd = -1, rc;
	char *line;

	json_object_set_new(req, "cmd", json_string("backup"));
	rc = backup_parse(argc, argv, &api, req);
	if (!rc && (fd = unix_connect(api)) < 0) {
		fprintf(stderr, "cme-vmm backup: cannot reach %s\n", api);
		rc = VMM_EXIT_SETUP;
	}
	if (!rc && (jsonl_send(fd, req) || jsonl_recv(fd, REPLY_MAX, &reply) || !reply)) {
		fprintf(stderr, "cme-vmm backup: no answer from %s\n", api);
		rc = VMM_EXIT_SETUP;
	}
	json_decref(req);
	if (!rc && !json_is_true(json_object_get(reply, "ok"))) {
		fprintf(stderr, "cme-vmm backup: %s\n",
			json_string_value(json_object_get(reply, "error")) ?: "refused");
		rc = 1;
	}
	json_decref(reply);
	if (rc) {
		if (fd >= 0)
			close(fd);
		return rc;
	}
	signal(SIGINT, on_sigint);
	st = follow(fd, tty);
	close(fd);
	if (tty)
		fprintf(stderr, "\n");
	if (!st) {
		fprintf(stderr, "cme-vmm backup: lost contact with the VMM\n");
		return 1;
	}
	rc = strcmp(phase_of(st), "done") ? 1 : 0;
	if (rc)
		fprintf(stderr, "cme-vmm backup: failed: %s\n",
			json_string_value(json_object_get(st, "error")) ?: "?");
	line = json_dumps(st, JSON_COMPACT);
	printf("%s\n", line ? line : "{}");
	free(line);
	json_decref(st);
	return rc;
}
