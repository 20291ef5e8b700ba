/* The same migrations as bench_migrate.c's (the same test guest, memory, one vCPU, dirty
 * rate, mutual TLS on loopback, downtime limit), done by QEMU, for comparison. The test
 * guest boots under QEMU through its multiboot entry (tests/guest/selfcheck/multiboot.c).
 * QEMU is driven over QMP (one JSON object per line on a Unix socket). The heartbeat gap is
 * measured as in bench_migrate.c: the largest gap between heartbeat lines arriving on the
 * two serial files, polled every 2 ms. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "common.h"
#include "harness.h"

#define QEMU_BIN  "qemu-system-x86_64"
#define QEMU_RUNS 3
/* -cpu host alone aborts on PVM hosts: KVM refuses QEMU's write of IA32_ARCH_CAPABILITIES
 * (MSR 0x10a). Tried first; the second model is used when the first dies that way. */
static const char *const cpu_models[] = { "host", "host,-arch-capabilities" };

struct qemu {
	pid_t pid;
	char serial[512], qmp[512], errlog[512];
	FILE *f; /* the QMP connection */
};

static char *qemu_path(void)
{
	const char *path = getenv("PATH");
	char *dup = strdup(path ? path : "/usr/bin:/bin"), *save = NULL, *found = NULL;

	for (char *d = strtok_r(dup, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		char p[1024];

		snprintf(p, sizeof(p), "%s/%s", d, QEMU_BIN);
		if (access(p, X_OK) == 0) {
			found = strdup(p);
			break;
		}
	}
	free(dup);
	return found;
}

static int qemu_start(struct qemu *q, const struct mig_workload *wl, const char *exe,
		      const char *cpu, const char *dir, const char *tag, bool incoming)
{
	char serial_arg[600], qmp_arg[600];

	memset(q, 0, sizeof(*q));
	snprintf(q->serial, sizeof(q->serial), "%s/%s.serial", dir, tag);
	snprintf(q->qmp, sizeof(q->qmp), "%s/%s.qmp", dir, tag);
	snprintf(q->errlog, sizeof(q->errlog), "%s/%s.err", dir, tag);
	snprintf(serial_arg, sizeof(serial_arg), "file:%s", q->serial);
	snprintf(qmp_arg, sizeof(qmp_arg), "unix:%s,server=on,wait=off", q->qmp);
	unlink(q->serial);
	unlink(q->qmp);
	const char *argv[] = {
		exe,	   "-enable-kvm", "-cpu",    cpu,	 "-m",
		wl->mem,   "-smp",	  "1",	     "-kernel",	 test_guest(),
		"-append", wl->cmdline,	  "-serial", serial_arg, "-display",
		"none",	   "-nodefaults", "-qmp",    qmp_arg,	 incoming ? "-incoming" : NULL,
		"defer",   NULL
	};
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd = open(q->errlog, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(exe, (char *const *)argv);
		_exit(127);
	}
	q->pid = pid;
	return 0;
}

static void qemu_kill(struct qemu *q)
{
	if (q->f) {
		fclose(q->f);
		q->f = NULL;
	}
	if (q->pid > 0) {
		kill(q->pid, SIGKILL);
		waitpid(q->pid, NULL, 0);
		q->pid = 0;
	}
}

static bool qemu_alive(struct qemu *q)
{
	return q->pid > 0 && waitpid(q->pid, NULL, WNOHANG) == 0;
}

/* Reads lines until one that is not an event; returns it parsed (caller decrefs). */
static json_t *qmp_read(struct qemu *q)
{
	char *line = NULL;
	size_t cap = 0;
	json_t *j = NULL;

	while (getline(&line, &cap, q->f) > 0) {
		j = json_loads(line, 0, NULL);
		if (j && !json_object_get(j, "event"))
			break;
		json_decref(j);
		j = NULL;
	}
	free(line);
	return j;
}

/* Sends {"execute":cmd,"arguments":args} (args is stolen, may be NULL); returns the
 * "return" value (caller decrefs) or NULL on "error", printing it to *err. */
static json_t *qmp_cmd(struct qemu *q, const char *cmd, json_t *args, char *err, size_t errlen)
{
	json_t *req = json_pack("{s:s}", "execute", cmd), *rep, *ret = NULL;
	char *s;

	if (args)
		json_object_set_new(req, "arguments", args);
	s = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	fprintf(q->f, "%s\n", s);
	fflush(q->f);
	free(s);
	rep = qmp_read(q);
	if (rep && (ret = json_object_get(rep, "return")))
		json_incref(ret);
	else if (err) {
		json_t *d = json_object_get(json_object_get(rep, "error"), "desc");

		snprintf(err, errlen, "QMP %s: %s", cmd,
			 json_is_string(d) ? json_string_value(d) : "no reply (QEMU gone?)");
	}
	json_decref(rep);
	return ret;
}

static int qmp_connect(struct qemu *q, char *err, size_t errlen)
{
	for (int i = 0; i < 1000; i++) {
		struct sockaddr_un a = { .sun_family = AF_UNIX };
		int fd;

		if (!qemu_alive(q))
			break;
		if (strlen(q->qmp) >= sizeof(a.sun_path)) {
			snprintf(err, errlen, "QMP socket path too long: %s", q->qmp);
			return -1;
		}
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		memcpy(a.sun_path, q->qmp, strlen(q->qmp) + 1);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
			struct timeval tv = { .tv_sec = 30 }; /* a hung QEMU fails the run */

			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
			q->f = fdopen(fd, "r+");
			json_t *greet = qmp_read(q), *ok;

			json_decref(greet);
			ok = qmp_cmd(q, "qmp_capabilities", NULL, err, errlen);
			if (!ok)
				return -1;
			json_decref(ok);
			return 0;
		}
		if (fd >= 0)
			close(fd);
		usleep(10000);
	}
	char *e = test_read_file(q->errlog);
	char *nl = e ? strchr(e, '\n') : NULL;

	if (nl)
		*nl = 0;
	snprintf(err, errlen, "QEMU exited before its QMP socket came up: %s", e && *e ? e : "?");
	free(e);
	return -1;
}

/* A port on 127.0.0.2 that was free a moment ago. */
static unsigned free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	unsigned port = 0;

	inet_pton(AF_INET, "127.0.0.2", &a.sin_addr);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* QEMU's tls-creds-x509 file names, as links to a mkcerts.sh folder. */
static int tls_dir(const char *dir, const char *certs, const char *node, const char *role)
{
	static const char *const src[] = { "ca.crt", "tls.crt", "tls.key" };
	char from[1024], to[1024];

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -1;
	for (int i = 0; i < 3; i++) {
		snprintf(from, sizeof(from), "%s/%s/%s", certs, node, src[i]);
		if (i == 0)
			snprintf(to, sizeof(to), "%s/ca-cert.pem", dir);
		else
			snprintf(to, sizeof(to), "%s/%s-%s.pem", dir, role,
				 i == 1 ? "cert" : "key");
		unlink(to);
		if (symlink(from, to) < 0)
			return -1;
	}
	return 0;
}

static bool qmp_ok(struct qemu *q, const char *cmd, json_t *args, char *err, size_t errlen)
{
	json_t *r = qmp_cmd(q, cmd, args, err, errlen);

	json_decref(r);
	return r != NULL;
}

static bool tls_setup(struct qemu *q, const char *dir, const char *endpoint, char *err,
		      size_t errlen)
{
	return qmp_ok(q, "object-add",
		      json_pack("{s:s,s:s,s:s,s:s,s:b}", "qom-type", "tls-creds-x509", "id", "tls0",
				"dir", dir, "endpoint", endpoint, "verify-peer", 1),
		      err, errlen) &&
	       qmp_ok(q, "migrate-set-parameters",
		      json_pack("{s:s,s:i,s:s}", "tls-creds", "tls0", "downtime-limit",
				MIG_BENCH_DOWNTIME_MS, "tls-hostname", "127.0.0.2"),
		      err, errlen);
}

struct qresult {
	double total_ms, downtime_ms, mbps, gap_ms;
};

/* Waits for the guest to have written wl->wait_pages (and printed 5 heartbeats). */
static bool wait_written(struct qemu *q, const struct mig_workload *wl, int timeout_ms)
{
	for (int t = 0; t < timeout_ms; t += 20) {
		unsigned long pages = 0;

		if (bench_count_hb(q->serial, &pages) >= 5 && pages >= wl->wait_pages)
			return true;
		if (!qemu_alive(q))
			return false;
		usleep(20000);
	}
	return false;
}

/* One migration. Returns 0, or -1 with the reason in err; *cpu_bad when QEMU died on the
 * CPU model (so the caller can try the next one). */
static int qemu_migrate_once(const struct mig_workload *wl, const char *exe, const char *cpu,
			     const char *certs, struct qresult *r, bool *cpu_bad, char *err,
			     size_t errlen)
{
	const char *dir = test_tmpdir();
	char srv[600], cli[600], uri[64];
	struct qemu src = { 0 }, dst = { 0 };
	struct hb_watch w;
	bool watching = false;
	int rc = -1;
	unsigned port;

	*cpu_bad = false;
	snprintf(srv, sizeof(srv), "%s/tls-server", dir);
	snprintf(cli, sizeof(cli), "%s/tls-client", dir);
	if (tls_dir(srv, certs, "127.0.0.2", "server") < 0 ||
	    tls_dir(cli, certs, "127.0.0.1", "client") < 0) {
		snprintf(err, errlen, "cannot link the certificates from %s", certs);
		return -1;
	}
	if (qemu_start(&src, wl, exe, cpu, dir, "src", false) < 0 ||
	    qemu_start(&dst, wl, exe, cpu, dir, "dst", true) < 0) {
		snprintf(err, errlen, "cannot start %s", exe);
		goto out;
	}
	if (qmp_connect(&src, err, errlen) < 0 || qmp_connect(&dst, err, errlen) < 0) {
		*cpu_bad = strstr(err, "MSR 0x10a") != NULL;
		goto out;
	}
	if (!tls_setup(&src, cli, "client", err, errlen) ||
	    !tls_setup(&dst, srv, "server", err, errlen))
		goto out;
	port = free_port();
	snprintf(uri, sizeof(uri), "tcp:127.0.0.2:%u", port);
	if (!qmp_ok(&dst, "migrate-incoming", json_pack("{s:s}", "uri", uri), err, errlen))
		goto out;
	/* Without auto-converge QEMU never finishes: the guest dirties its 256 MiB faster than
	 * TLS moves it, and the downtime estimate never drops under 300 ms. Auto-converge
	 * throttles the vCPU (20% first, +10% a round) until it does. */
	if (!qmp_ok(&src, "migrate-set-capabilities",
		    json_pack("{s:[{s:s,s:b}]}", "capabilities", "capability", "auto-converge",
			      "state", 1),
		    err, errlen))
		goto out;
	if (!wait_written(&src, wl, 120000)) {
		char *e = test_read_file(src.errlog);

		*cpu_bad = e && strstr(e, "MSR 0x10a");
		snprintf(err, errlen,
			 "the guest never wrote what it should under QEMU (serial %s, "
			 "stderr: %.200s)",
			 src.serial, e ? e : "");
		free(e);
		goto out;
	}
	watching = bench_hb_watch_start(&w, src.serial, dst.serial) == 0;
	if (!qmp_ok(&src, "migrate", json_pack("{s:s}", "uri", uri), err, errlen))
		goto out;
	for (int t = 0;; t += 20) {
		json_t *m = qmp_cmd(&src, "query-migrate", NULL, err, errlen);
		const char *st = m ? json_string_value(json_object_get(m, "status")) : NULL;

		if (!m)
			goto out;
		if (st && !strcmp(st, "completed")) {
			json_t *ram = json_object_get(m, "ram");

			r->total_ms = json_number_value(json_object_get(m, "total-time"));
			r->downtime_ms = json_number_value(json_object_get(m, "downtime"));
			r->mbps = json_number_value(json_object_get(ram, "mbps"));
			json_decref(m);
			break;
		}
		if (!st || !strcmp(st, "failed") || !strcmp(st, "cancelled") || t > 300000) {
			json_t *d = json_object_get(m, "error-desc");

			snprintf(err, errlen, "QEMU migration %s: %s", st ? st : "?",
				 json_is_string(d) ? json_string_value(d)
						   : "timed out or no detail");
			json_decref(m);
			goto out;
		}
		json_decref(m);
		usleep(20000);
	}
	/* The destination runs on its own once the migration completes: wait for its heartbeats. */
	for (int t = 0; t < 10000 && bench_count_hb(dst.serial, NULL) < 3; t += 10)
		usleep(10000);
	if (bench_count_hb(dst.serial, NULL) < 3) {
		snprintf(err, errlen, "the destination printed no heartbeats after the migration");
		goto out;
	}
	char *console = test_read_file(dst.serial);
	bool corrupt = console && strstr(console, "CORRUPT");

	free(console);
	if (corrupt) {
		snprintf(err, errlen, "the guest reported CORRUPT after QEMU's migration");
		goto out;
	}
	rc = 0;
out:
	if (rc < 0) {
		char *e1 = test_read_file(src.errlog), *e2 = test_read_file(dst.errlog);

		*cpu_bad = (e1 && strstr(e1, "MSR 0x10a")) || (e2 && strstr(e2, "MSR 0x10a"));
		free(e1);
		free(e2);
	}
	if (watching) {
		r->gap_ms = bench_hb_watch_stop(&w);
	}
	qemu_kill(&src);
	qemu_kill(&dst);
	return rc;
}

int bench_qemu_run(const char *certs, const struct mig_workload *wl, struct mig_result *out,
		   char *err, size_t errlen)
{
	static size_t model; /* the CPU model that works here, found once */
	double total[QEMU_RUNS], down[QEMU_RUNS], gap[QEMU_RUNS], thr[QEMU_RUNS];
	char *exe = qemu_path();
	int n = 0;

	memset(out, 0, sizeof(*out));
	if (getenv("CME_BENCH_QEMU") && !strcmp(getenv("CME_BENCH_QEMU"), "0"))
		return free(exe), snprintf(err, errlen, "left out (CME_BENCH_QEMU=0)"), -1;
	if (!exe)
		return snprintf(err, errlen, QEMU_BIN " is not installed"), -1;
	for (int i = 0; i < QEMU_RUNS; i++) {
		struct qresult r = { 0 };
		bool cpu_bad;

		if (qemu_migrate_once(wl, exe, cpu_models[model], certs, &r, &cpu_bad, err,
				      errlen) < 0) {
			if (cpu_bad && model + 1 < sizeof(cpu_models) / sizeof(cpu_models[0])) {
				model++;
				i--; /* the same run again with the next CPU model */
			}
			continue;
		}
		total[n] = r.total_ms;
		down[n] = r.downtime_ms;
		thr[n] = r.mbps;
		gap[n++] = r.gap_ms;
	}
	free(exe);
	if (!n)
		return -1;
	*out = (struct mig_result){ .n = n,
				    .total_ms = bench_median(total, n),
				    .downtime_ms = bench_median(down, n),
				    .gap_ms = bench_median(gap, n),
				    .mbps = bench_median(thr, n) };
	return 0;
}
