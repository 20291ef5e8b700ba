/* `cme-vmm migrate`: start a live migration through a VMM's control socket, show its
 * progress (one live line on a terminal), and print the final statistics as the last line
 * of stdout. Ctrl-C cancels the migration (the guest keeps running on the source). */
#include <errno.h>
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
	fprintf(stderr, "cme-vmm migrate: %s%s\n", msg, arg ? arg : "");
	return VMM_EXIT_USAGE;
}

/* One option into the request; returns 0 or a usage error. */
static int migrate_opt(int c, const char *a, json_t *req)
{
	uint64_t v;

	switch (c) {
	case 't': json_object_set_new(req, "to", json_string(a)); return 0;
	case 'd': json_object_set_new(req, "tls_dir", json_string(a)); return 0;
	case 'p': json_object_set_new(req, "peer_name", json_string(a)); return 0;
	case 'b': json_object_set_new(req, "max_bandwidth", json_string(a)); return 0;
	case 'n': json_object_set_new(req, "auto_converge", json_false()); return 0;
	case 'C': json_object_set_new(req, "commit", json_string(a)); return 0;
	case 'P': json_object_set_new(req, "postcopy", json_true()); return 0;
	case 'D':
	case 'c':
	case 'T':
	case 'r':
	case 'A':
		if (parse_uint(a, 1, 86400000, &v) < 0)
			return usage_fail("not a positive number: ", a);
		json_object_set_new(req,
				    c == 'D'   ? "downtime_ms"
				    : c == 'c' ? "channels"
				    : c == 'T' ? "timeout_s"
				    : c == 'A' ? "postcopy_after"
					       : "max_rounds",
				    json_integer((json_int_t)v));
		return 0;
	default: return usage_fail("unknown option", NULL);
	}
}

static int migrate_parse(int argc, char **argv, const char **api, bool *wait, json_t *req)
{
	static const struct option opts[] = {
		{ "api", required_argument, NULL, 'a' },
		{ "to", required_argument, NULL, 't' },
		{ "tls-dir", required_argument, NULL, 'd' },
		{ "peer-name", required_argument, NULL, 'p' },
		{ "downtime-ms", required_argument, NULL, 'D' },
		{ "max-bandwidth", required_argument, NULL, 'b' },
		{ "channels", required_argument, NULL, 'c' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "max-rounds", required_argument, NULL, 'r' },
		{ "no-auto-converge", no_argument, NULL, 'n' },
		{ "no-wait", no_argument, NULL, 'w' },
		{ "commit", required_argument, NULL, 'C' },
		{ "postcopy", no_argument, NULL, 'P' },
		{ "postcopy-after", required_argument, NULL, 'A' },
		{ NULL, 0, NULL, 0 },
	};
	int c, rc;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		if (c == '?' || c == ':')
			return usage_fail(c == '?' ? "unknown option " : "option needs a value: ",
					  argv[optind - 1]);
		if (c == 'a')
			*api = optarg;
		else if (c == 'w')
			*wait = false;
		else if ((rc = migrate_opt(c, optarg, req)))
			return rc;
	}
	if (optind < argc)
		return usage_fail("unexpected argument ", argv[optind]);
	if (!*api || !json_object_get(req, "to") || !json_object_get(req, "tls_dir"))
		return usage_fail("needs --api PATH, --to HOST:PORT and --tls-dir DIR", NULL);
	return 0;
}

static void show_progress(json_t *ev, bool tty)
{
	if (!tty)
		return;
	json_t *eta = json_object_get(ev, "expected_downtime_ms");

	fprintf(stderr,
		"\r\033[Kmigrating: %s, round %lld, %.1f MiB sent, %lld pages left, "
		"%.0f Mbit/s, throttle %lld%%, expected downtime %s%lld ms",
		json_string_value(json_object_get(ev, "phase")) ?: "?",
		json_integer_value(json_object_get(ev, "round")),
		(double)json_integer_value(json_object_get(ev, "bytes_sent")) / (1 << 20),
		json_integer_value(json_object_get(ev, "pages_left")),
		json_real_value(json_object_get(ev, "rate_mbps")),
		json_integer_value(json_object_get(ev, "throttle_pct")),
		json_is_null(eta) ? "?" : "", json_integer_value(eta));
	fflush(stderr);
}

static void cancel_migration(const char *api)
{
	int fd = unix_connect(api);
	json_t *req = json_pack("{s:s}", "cmd", "migrate-cancel"), *reply = NULL;

	if (fd >= 0 && jsonl_send(fd, req) == 0 && jsonl_recv(fd, REPLY_MAX, &reply) == 0)
		fprintf(stderr, "\ncme-vmm migrate: %s\n",
			json_is_true(json_object_get(reply, "ok"))
				? "cancel requested"
				: json_string_value(json_object_get(reply, "error")) ?: "cancel refused");
	json_decref(reply);
	json_decref(req);
	if (fd >= 0)
		close(fd);
}

/* The first line answers the request; with wait, progress lines follow until the final
 * one, which is printed. Exit 0 only on success. */
static int handle_line(const char *line, bool *first, bool wait, bool tty, bool *done)
{
	json_t *ev = json_loads(line, 0, NULL);
	int rc = 0;

	if (*first) {
		*first = false;
		if (!json_is_true(json_object_get(ev, "ok"))) {
			fprintf(stderr, "cme-vmm migrate: %s\n",
				ev ? json_string_value(json_object_get(ev, "error")) ?: "refused"
				   : "bad reply");
			rc = 1;
		}
		*done = rc || !wait;
		json_decref(ev);
		return rc;
	}
	*done = ev && !strcmp(json_string_value(json_object_get(ev, "event")) ?: "", "done");
	if (!*done) {
		show_progress(ev, tty);
	} else {
		rc = json_is_true(json_object_get(ev, "ok")) ? 0 : 1;
		if (tty)
			fprintf(stderr, "\n");
		if (rc)
			fprintf(stderr, "cme-vmm migrate: %s: %s\n",
				json_string_value(json_object_get(ev, "phase")) ?: "?",
				json_string_value(json_object_get(ev, "error")) ?: "?");
		printf("%s\n", line);
	}
	json_decref(ev);
	return rc;
}

static int follow(int fd, const char *api, bool wait)
{
	struct linebuf lb;
	bool tty = isatty(STDERR_FILENO), first = true, done = false;
	int rc = 1;

	linebuf_init(&lb, REPLY_MAX);
	for (;;) {
		char *line;
		ssize_t n = linebuf_fill(&lb, fd);

		if (interrupted == 1) {
			interrupted = 2;
			cancel_migration(api);
		}
		if (n == -EINTR || (n < 0 && errno == EINTR))
			continue;
		if (n <= 0) {
			fprintf(stderr, "%scme-vmm migrate: lost contact with the VMM\n",
				tty ? "\n" : "");
			break;
		}
		while ((line = linebuf_take(&lb))) {
			rc = handle_line(line, &first, wait, tty, &done);
			free(line);
			if (done) {
				linebuf_free(&lb);
				return rc;
			}
		}
	}
	linebuf_free(&lb);
	return rc;
}

int vmm_migrate_main(int argc, char **argv)
{
	json_t *req = json_pack("{s:s}", "cmd", "migrate");
	const char *api = NULL;
	bool wait = true;
	struct sigaction sa = { .sa_handler = on_sigint };
	int rc = migrate_parse(argc, argv, &api, &wait, req), fd;

	if (rc) {
		json_decref(req);
		return rc;
	}
	json_object_set_new(req, "follow", json_boolean(wait));
	fd = unix_connect(api);
	if (fd < 0) {
		fprintf(stderr, "cme-vmm migrate: cannot connect to %s: %s\n", api, strerror(-fd));
		json_decref(req);
		return 1;
	}
	sigaction(SIGINT, &sa, NULL);
	rc = jsonl_send(fd, req) ? 1 : follow(fd, api, wait);
	json_decref(req);
	close(fd);
	return rc;
}
