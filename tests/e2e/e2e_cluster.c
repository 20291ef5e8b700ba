/* The end-to-end tier's cluster: etcd + N cme-clusterd on loopback, owned by PID. */
#include "e2e_cluster.h"

#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

static struct cluster *running; /* the test's cluster, for the teardown */

static uint64_t ms_now(void)
{
	return now_ns() / 1000000;
}

int cluster_node_index(struct cluster *c, const char *name)
{
	for (int i = 0; i < c->n; i++)
		if (!strcmp(c->node[i].name, name))
			return i;
	return -1;
}

/* The folders VMs' files may come from: the test guest's, and the tests' temporary root
 * (disk images, broken images). */
static void image_dirs(char *buf, size_t len)
{
	char guest[PATH_MAX], tmp[600];

	if (!realpath(test_guest(), guest)) /* absolute: the build folder may be relative */
		snprintf(guest, sizeof(guest), "%s", test_guest());
	snprintf(tmp, sizeof(tmp), "%s", test_tmpdir());
	snprintf(buf, len, "%s:%s", dirname(guest), dirname(tmp));
}

static int write_conf_at(struct cluster *c, int i, const char *path, const char *state)
{
	struct node_proc *n = &c->node[i];
	FILE *f = fopen(path, "w");
	char dirs[PATH_MAX + 700];

	if (!f)
		return -errno;
	image_dirs(dirs, sizeof(dirs));
	fprintf(f,
		"# written by the e2e tests\nnode = %s\netcd = %s\naddress = %s\npeer = %s:0\n"
		"tls_dir = %s/%s\nstate_dir = %s\nvmm = %s\ncpus = 2\nmem = %uM\n"
		"lease_ttl = 3\nprogress_interval_ms = 200\nprepare_timeout = 20\n"
		"jail_user = nobody\nimage_dirs = %s\n%s",
		n->name, n->etcd_url[0] ? n->etcd_url : c->etcd.url, n->addr,
		n->peer_host[0] ? n->peer_host : n->addr, c->certs, n->name, state,
		n->vmm[0] ? n->vmm : test_bin("cme-vmm"), n->mem_mb ? n->mem_mb : c->mem_mb, dirs,
		c->extra_conf);
	return fclose(f) ? -errno : 0;
}

static int write_conf(struct cluster *c, int i)
{
	return write_conf_at(c, i, c->node[i].conf, c->node[i].state);
}

int cluster_twin_start(struct cluster *c, int i)
{
	char conf[600], log[600];
	int fd;

	snprintf(conf, sizeof(conf), "%s/twin.conf", c->dir);
	snprintf(log, sizeof(log), "%s/twin.log", c->dir);
	snprintf(c->twin_state, sizeof(c->twin_state), "%s/twin-state", c->dir);
	if (write_conf_at(c, i, conf, c->twin_state))
		return -EIO;
	fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	c->twin_pid = fork();
	if (c->twin_pid == 0) {
		dup2(fd, 1);
		dup2(fd, 2);
		execl(test_bin("cme-clusterd"), "cme-clusterd", "--config", conf, (char *)NULL);
		_exit(127);
	}
	close(fd);
	return c->twin_pid < 0 ? -errno : 0;
}

int cluster_node_start(struct cluster *c, int i, const char *env)
{
	struct node_proc *n = &c->node[i];
	pid_t pid;
	int fd = open(n->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

	if (fd < 0)
		return -errno;
	pid = fork();
	if (pid == 0) {
		dup2(fd, 1);
		dup2(fd, 2);
		if (env)
			putenv((char *)env);
		if (i == c->ns_node) /* `ip netns exec` execs: the PID stays the daemon's */
			execl(netns_ip_bin(), "ip", "netns", "exec", c->ns.name,
			      test_bin("cme-clusterd"), "--config", n->conf, (char *)NULL);
		else
			execl(test_bin("cme-clusterd"), "cme-clusterd", "--config", n->conf,
			      (char *)NULL);
		_exit(127);
	}
	close(fd);
	if (pid < 0)
		return -errno;
	n->pid = pid;
	return 0;
}

int cluster_node_reconfigure(struct cluster *c, int i)
{
	int rc;

	cluster_node_kill(c, i);
	rc = write_conf(c, i);
	return rc ? rc : cluster_node_start(c, i, NULL);
}

void cluster_node_kill(struct cluster *c, int i)
{
	if (c->node[i].pid > 0) {
		kill(c->node[i].pid, SIGKILL);
		waitpid(c->node[i].pid, NULL, 0);
		c->node[i].pid = 0;
	}
}

int cluster_node_wait(struct cluster *c, int i, int ms)
{
	int st;

	for (int t = 0; t < ms; t += 20) {
		if (c->node[i].pid > 0 && waitpid(c->node[i].pid, &st, WNOHANG) == c->node[i].pid) {
			c->node[i].pid = 0;
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		}
		sleep_ms(20);
	}
	return -1;
}

static int make_certs(struct cluster *c)
{
	const char *argv[8] = { "/bin/sh", "certs/mkcerts.sh", c->certs };
	char *out = NULL;
	int rc;

	for (int i = 0; i < c->n; i++)
		argv[3 + i] = c->node[i].name;
	rc = test_run(argv, &out, 60000);
	if (rc)
		printf("\n  mkcerts failed (%d): %s\n", rc, out ? out : "");
	free(out);
	return rc ? -EIO : 0;
}

static bool all_registered(struct cluster *c)
{
	char key[64];
	json_t *j = cluster_get(c, "leader");
	bool ok = j != NULL;

	json_decref(j);
	for (int i = 0; ok && i < c->n - c->held; i++) {
		snprintf(key, sizeof(key), "nodes/%s", c->node[i].name);
		j = cluster_get(c, key);
		ok = j != NULL;
		json_decref(j);
		/* A member too: HA's majorities count members (they join one at a time). */
		snprintf(key, sizeof(key), "members/%s", c->node[i].name);
		j = ok ? cluster_get(c, key) : NULL;
		ok = j != NULL;
		json_decref(j);
	}
	return ok;
}

static int open_client(struct cluster *c)
{
	struct etcd_cfg ec = { .endpoints = c->etcd.url, .timeout_ms = 5000 };
	struct etcd_err err;

	return etcd_open(&ec, &c->cli, &err);
}

int cluster_start(struct cluster *c, int n, unsigned mem_mb)
{
	return cluster_start_conf(c, n, mem_mb, NULL);
}

/* Node i in the namespace (ns_ip), reaching etcd and the others through the veth; the
 * others' peer channels listen on the host's end so that it can reach them. */
static void netns_addrs(struct cluster *c)
{
	for (int i = 0; i < c->n; i++) {
		struct node_proc *p = &c->node[i];

		if (i == c->ns_node) {
			snprintf(p->addr, sizeof(p->addr), "%s", c->ns.ns_ip);
			snprintf(p->etcd_url, sizeof(p->etcd_url), "http://%s:%d", c->ns.host_ip,
				 c->etcd.client_port);
		} else {
			snprintf(p->peer_host, sizeof(p->peer_host), "%s", c->ns.host_ip);
		}
	}
}

static int start(struct cluster *c, int n, int held, unsigned mem_mb, const char *extra,
		 int ns_node, char *why, size_t whylen);

int cluster_start_conf(struct cluster *c, int n, unsigned mem_mb, const char *extra)
{
	return start(c, n, 0, mem_mb, extra, -1, NULL, 0);
}

int cluster_start_held(struct cluster *c, int n, int held, unsigned mem_mb, const char *extra)
{
	return start(c, n, held, mem_mb, extra, -1, NULL, 0);
}

int cluster_start_netns(struct cluster *c, int n, unsigned mem_mb, const char *extra, int ns_node,
			char *why, size_t whylen)
{
	return start(c, n, 0, mem_mb, extra, ns_node, why, whylen);
}

static int start(struct cluster *c, int n, int held, unsigned mem_mb, const char *extra,
		 int ns_node, char *why, size_t whylen)
{
	int rc;

	memset(c, 0, sizeof(*c));
	c->ns_node = ns_node;
	if (ns_node >= 0 && netns_make(&c->ns, why, whylen) < 0)
		return -EPERM;
	snprintf(c->extra_conf, sizeof(c->extra_conf), "%s", extra ? extra : "");
	running = c;
	c->n = n;
	c->held = held;
	c->mem_mb = mem_mb;
	snprintf(c->dir, sizeof(c->dir), "%s", test_tmpdir());
	snprintf(c->certs, sizeof(c->certs), "%s/certs", c->dir);
	for (int i = 0; i < n; i++) {
		struct node_proc *p = &c->node[i];

		snprintf(p->name, sizeof(p->name), "node-%c", 'a' + i);
		snprintf(p->addr, sizeof(p->addr), "127.0.1.%d", i + 1);
		snprintf(p->conf, sizeof(p->conf), "%s/%s.conf", c->dir, p->name);
		snprintf(p->state, sizeof(p->state), "%s/%s", c->dir, p->name);
		snprintf(p->log, sizeof(p->log), "%s/%s.log", c->dir, p->name);
	}
	rc = make_certs(c);
	if (!rc)
		rc = ns_node >= 0 ? etcd_proc_start_also(&c->etcd, c->ns.host_ip)
				  : etcd_proc_start(&c->etcd);
	if (!rc && ns_node >= 0)
		netns_addrs(c);
	if (!rc)
		rc = open_client(c);
	for (int i = 0; !rc && i < n; i++) {
		rc = write_conf(c, i);
		if (!rc && i < n - held)
			rc = cluster_node_start(c, i, NULL);
	}
	for (int t = 0; !rc && !all_registered(c); t += 100) {
		if (t > 30000) {
			printf("\n  cluster did not come up; see %s/node-*.log\n", c->dir);
			return -ETIMEDOUT;
		}
		sleep_ms(100);
	}
	return rc;
}

static char *slurp_fd_file(const char *path)
{
	char *s = test_read_file(path);

	return s ? s : strdup("");
}

int cmectl(struct cluster *c, char **out, char **err, const char *arg, ...)
{
	const char *argv[40] = { test_bin("cmectl"), "--etcd", c->etcd.url };
	char op[600], ep[600];
	int n = 3, st = -1, ofd, efd;
	va_list ap;
	pid_t pid;

	va_start(ap, arg);
	for (const char *a = arg; a && n < 39; a = va_arg(ap, const char *))
		argv[n++] = a;
	va_end(ap);
	snprintf(op, sizeof(op), "%s/cmectl.out", c->dir);
	snprintf(ep, sizeof(ep), "%s/cmectl.err", c->dir);
	ofd = open(op, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	efd = open(ep, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	pid = fork();
	if (pid == 0) {
		dup2(ofd, 1);
		dup2(efd, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(ofd);
	close(efd);
	for (uint64_t t0 = ms_now(); pid > 0;) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			break;
		if (ms_now() - t0 > 240000) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			break;
		}
		sleep_ms(20);
	}
	if (out)
		*out = slurp_fd_file(op);
	if (err)
		*err = slurp_fd_file(ep);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void cluster_expect_ok(const char *what, int rc, char *out, char *err)
{
	if (rc)
		printf("\n  %s: exit %d\n  stdout: %s\n  stderr: %s\n", what, rc, out, err);
	CU_ASSERT_EQUAL(rc, 0);
	free(out);
	free(err);
}

void cluster_expect_said(int rc, int want, const char *text, char *out, char *err)
{
	CU_ASSERT_EQUAL(rc, want);
	CU_ASSERT_PTR_NOT_NULL(err && strstr(err, text));
	free(out);
	free(err);
}

json_t *cluster_get(struct cluster *c, const char *key)
{
	struct etcd_kv *kv = NULL;
	struct etcd_err err;
	char full[256];
	json_t *j = NULL;

	snprintf(full, sizeof(full), "/cme/%s", key);
	if (etcd_get(c->cli, full, &kv, &err) == 0 && kv)
		j = json_loadb((const char *)kv->val, kv->vlen, 0, NULL);
	etcd_kv_free(kv);
	return j;
}

int cluster_put(struct cluster *c, const char *key, const char *val)
{
	struct etcd_err err;
	char full[256];

	snprintf(full, sizeof(full), "/cme/%s", key);
	return etcd_put(c->cli, full, val, strlen(val), 0, NULL, &err);
}

bool cluster_wait_field(struct cluster *c, const char *key, const char *field, const char *want,
			int ms)
{
	for (uint64_t t0 = ms_now(); ms_now() - t0 < (uint64_t)ms; sleep_ms(100)) {
		json_t *j = cluster_get(c, key);
		const char *v = json_string_value(json_object_get(j, field));
		bool ok = v && !strcmp(v, want);

		json_decref(j);
		if (ok)
			return true;
	}
	return false;
}

static bool pid_runs_vm(pid_t pid, const char *vm)
{
	char path[64], buf[4096];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	for (ssize_t i = 0; i + 1 < n; i += (ssize_t)strlen(buf + i) + 1)
		if (!strcmp(buf + i, "--name") && !strcmp(buf + i + strlen(buf + i) + 1, vm))
			return true;
	return false;
}

json_t *cluster_vmm_status(struct cluster *c, int i, const char *vm)
{
	return cluster_vmm_request(c, i, vm, "status");
}

json_t *cluster_vmm_request(struct cluster *c, int i, const char *vm, const char *cmd)
{
	struct timeval tv = { .tv_sec = 2 };
	json_t *req = json_pack("{s:s}", "cmd", cmd), *r = NULL;
	char path[700];
	int fd;

	snprintf(path, sizeof(path), "%s/vms/%s/vm/api.sock", c->node[i].state, vm);
	fd = unix_connect(path);
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (jsonl_send(fd, req) || jsonl_recv(fd, 1 << 16, &r))
			r = NULL;
		close(fd);
	}
	json_decref(req);
	return r;
}

pid_t cluster_vmm_pid(struct cluster *c, int i, const char *vm)
{
	char path[700];
	json_t *m;
	pid_t pid;
	int st;

	snprintf(path, sizeof(path), "%s/vms/%s/meta.json", c->node[i].state, vm);
	m = json_load_file(path, 0, NULL);
	pid = (pid_t)json_integer_value(json_object_get(m, "pid"));
	json_decref(m);
	if (pid <= 0)
		return 0;
	waitpid(pid, &st, WNOHANG); /* reap it if it was ours (it is not: the daemon's) */
	if (!pid_runs_vm(pid, vm))
		return 0;
	/* A zombie still has a cmdline until reaped by its parent: check its state. */
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	{
		char *s = test_read_file(path), *p = s ? strrchr(s, ')') : NULL;
		bool zombie = p && p[1] == ' ' && p[2] == 'Z';

		free(s);
		return zombie ? 0 : pid;
	}
}

void cluster_console(struct cluster *c, int i, const char *vm, char *buf, size_t len)
{
	snprintf(buf, len, "%s/vms/%s/vm/console.log", c->node[i].state, vm);
}

int cluster_heartbeats(const char *console, struct heartbeat *hb, int max)
{
	struct vmm_proc p = { .pid = 0 };

	snprintf(p.console, sizeof(p.console), "%s", console);
	return vmm_heartbeats(&p, hb, max);
}

bool cluster_console_corrupt(const char *console)
{
	char *s = test_read_file(console);
	bool bad = s && strstr(s, "CORRUPT");

	free(s);
	return bad;
}

/* Send sig to every VMM daemon i started, by the PIDs in their meta.json. */
static void signal_vmms(struct cluster *c, int i, int sig)
{
	char path[600];
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "%s/vms", c->node[i].state);
	d = opendir(path);
	while (d && (de = readdir(d))) {
		pid_t pid = de->d_name[0] != '.' ? cluster_vmm_pid(c, i, de->d_name) : 0;

		if (pid > 0)
			kill(pid, sig);
	}
	if (d)
		closedir(d);
}

void cluster_node_kill_vmms(struct cluster *c, int i)
{
	signal_vmms(c, i, SIGKILL);
}

void cluster_node_signal_all(struct cluster *c, int i, int sig)
{
	if (c->node[i].pid > 0)
		kill(c->node[i].pid, sig);
	signal_vmms(c, i, sig);
}

static void kill_vmms(struct cluster *c)
{
	for (int i = 0; i < c->n; i++)
		signal_vmms(c, i, SIGKILL);
}

int cluster_owner(struct cluster *c, const char *vm, long long *epoch)
{
	char key[128];
	json_t *o;
	int i;

	snprintf(key, sizeof(key), "vms/%s/owner", vm);
	o = cluster_get(c, key);
	i = o ? cluster_node_index(c, json_string_value(json_object_get(o, "node")) ?: "") : -1;
	if (epoch)
		*epoch = json_integer_value(json_object_get(o, "epoch"));
	json_decref(o);
	return i;
}

int cluster_leader(struct cluster *c)
{
	json_t *o = cluster_get(c, "leader");
	int i = o ? cluster_node_index(c, json_string_value(json_object_get(o, "node")) ?: "") : -1;

	json_decref(o);
	return i;
}

bool cluster_has_event(struct cluster *c, const char *kind, const char *vm)
{
	char *out = NULL, pat[64];
	bool found;

	if (cmectl(c, &out, NULL, "events", "-n", "1000", NULL) != 0) {
		free(out);
		return false;
	}
	snprintf(pat, sizeof(pat), "  %s  ", kind);
	found = false;
	for (char *line = out ? strtok(out, "\n") : NULL; line && !found; line = strtok(NULL, "\n"))
		found = strstr(line, pat) && (!vm || strstr(line, vm));
	free(out);
	return found;
}

void cluster_teardown(void)
{
	struct cluster *c = running;

	if (!c)
		return;
	running = NULL;
	for (int i = 0; i < c->n; i++)
		cluster_node_kill(c, i);
	if (c->twin_pid > 0) {
		kill(c->twin_pid, SIGKILL);
		waitpid(c->twin_pid, NULL, 0);
	}
	kill_vmms(c);
	etcd_close(c->cli);
	c->cli = NULL;
	etcd_proc_kill(&c->etcd);
	if (c->ns_node >= 0)
		netns_remove(&c->ns);
}

bool cluster_disk_image(char *path, size_t len)
{
	FILE *f;

	snprintf(path, len, "%s/disk.img", test_tmpdir());
	f = fopen(path, "w");
	CU_ASSERT_FATAL(f && ftruncate(fileno(f), 8 << 20) == 0 && fclose(f) == 0);
	if (setxattr(path, "user.cme.probe", "1", 1, 0) < 0) {
		test_skip("the file system of %s takes no user extended attributes (--epoch)",
			  path);
		return false;
	}
	return true;
}
