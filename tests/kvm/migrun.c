/* Helpers of the live-migration tests (see migrun.h). */
#include "migrun.h"

#include "guestrun.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_HB 8192

/* ---- certificates ---------------------------------------------------------------------- */

/* The repository's mkcerts.sh: tests run from the top of the tree. */
static const char *mkcerts_path(void)
{
	static char path[600];
	const char *b = getenv("CME_BUILD");

	if (access("certs/mkcerts.sh", R_OK) == 0)
		return "certs/mkcerts.sh";
	snprintf(path, sizeof(path), "%s/../certs/mkcerts.sh", b ? b : "build");
	return path;
}

int mig_certs_add(const char *pki, const char *const *names)
{
	const char *argv[16] = { "/bin/sh", mkcerts_path(), pki };
	int n = 3, rc;
	char *out;

	while (*names && n < 15)
		argv[n++] = *names++;
	argv[n] = NULL;
	rc = test_run(argv, &out, 60000);
	CU_ASSERT_EQUAL(rc, 0);
	if (rc != 0)
		printf("\n    mkcerts failed (%d): %s\n", rc, out);
	free(out);
	return rc == 0 ? 0 : -1;
}

int mig_certs(char *pki, size_t len, const char *const *names)
{
	snprintf(pki, len, "%s/pki", test_tmpdir());
	return mig_certs_add(pki, names);
}

const char *net_tls_dir(char *out, size_t len, const char *pki, const char *name)
{
	snprintf(out, len, "%s/%s", pki, name);
	return out;
}

/* ---- destinations ---------------------------------------------------------------------- */

int mig_incoming_port(struct vmm_proc *p, const char *host, int timeout_ms)
{
	char needle[128];
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000ull;

	snprintf(needle, sizeof(needle), "waiting for a migration on %s:", host);
	do {
		char *e = test_read_file(p->errlog), *at = strstr(e, needle);
		int port = at ? atoi(at + strlen(needle)) : 0;

		free(e);
		if (port > 0)
			return port;
		if (vmm_wait(p, 0) == 0 && p->status >= 0)
			return -ESRCH;
		sleep_ms(10);
	} while (now_ns() < end);
	return -ETIMEDOUT;
}

static int incoming_ready(struct vmm_proc *p, const char *host)
{
	int port = mig_incoming_port(p, host, 10000);

	if (port < 0) {
		char *e = test_read_file(p->errlog);

		printf("\n    destination on %s did not listen (%s); stderr:\n%s\n", host,
		       strerror(-port), e);
		free(e);
		vmm_kill(p);
	}
	return port;
}

int mig_incoming(struct vmm_proc *p, const char *host, const char *tls_dir,
		 const char *const *extra)
{
	char listen[300];
	const char *args[32] = { "--listen", listen, "--tls-dir", tls_dir, "--name", "arrived" };
	int n = 6;

	snprintf(listen, sizeof(listen), "%s:0", host);
	while (extra && *extra && n < 31)
		args[n++] = *extra++;
	args[n] = NULL;
	if (vmm_start_verb(p, "incoming", args) < 0)
		return -errno;
	return incoming_ready(p, host);
}

/* ---- the migrate command ---------------------------------------------------------------- */

/* The last line of out that is a JSON object with "event". */
static json_t *final_line(const char *out)
{
	json_t *fin = NULL;

	for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		size_t len = strcspn(l, "\n");
		json_t *o = l[0] == '{' ? json_loadb(l, len, 0, NULL) : NULL;

		if (o && json_object_get(o, "event")) {
			json_decref(fin);
			fin = o;
		} else {
			json_decref(o);
		}
	}
	return fin;
}

void mig_cli(struct mig_run *r, struct vmm_proc *src, const char *host, int port,
	     const char *tls_dir, const char *const *extra, int timeout_ms)
{
	char to[300];
	const char *argv[40] = { test_bin("cme-vmm"), "migrate", "--api", src->api, "--to", to,
				 "--tls-dir",	      tls_dir };
	int n = 8;

	snprintf(to, sizeof(to), "%s:%d", host, port);
	while (extra && *extra && n < 39)
		argv[n++] = *extra++;
	argv[n] = NULL;
	r->status = test_run(argv, &r->out, timeout_ms);
	r->fin = final_line(r->out);
}

void mig_run_free(struct mig_run *r)
{
	free(r->out);
	json_decref(r->fin);
	memset(r, 0, sizeof(*r));
}

long long mig_stat(const json_t *fin, const char *sub, const char *key)
{
	json_t *st = json_object_get(fin, "stats"), *v;

	if (sub)
		st = json_object_get(st, sub);
	v = json_object_get(st, key);
	if (json_is_integer(v))
		return json_integer_value(v);
	return json_is_real(v) ? (long long)json_real_value(v) : -1;
}

const char *mig_error(const json_t *fin)
{
	const char *e = json_string_value(json_object_get(fin, "error"));

	return e ? e : "";
}

/* ---- the control socket ----------------------------------------------------------------- */

bool mig_ctl_start(struct vmm_proc *src, const char *to, const char *tls_dir, const char *extra)
{
	char args[2048];
	json_t *r;
	bool ok;

	snprintf(args, sizeof(args), "{\"to\":\"%s\",\"tls_dir\":\"%s\"%s%s}", to, tls_dir,
		 extra && *extra ? "," : "", extra ? extra : "");
	r = vmm_request(src, "migrate", args);
	ok = r && json_is_true(json_object_get(r, "ok"));
	if (!ok)
		printf("\n    migrate %s refused: %s\n", args,
		       r ? json_string_value(json_object_get(r, "error")) : "no reply");
	json_decref(r);
	return ok;
}

static bool phase_is_end(const json_t *st)
{
	const char *ph = json_string_value(json_object_get(st, "phase"));

	return ph && (!strcmp(ph, "done") || !strcmp(ph, "failed") || !strcmp(ph, "in-doubt") ||
		      !strcmp(ph, "postcopy-broken"));
}

void mig_wait_pages(struct vmm_proc *p, uint64_t n)
{
	struct heartbeat at;

	if (!vmm_wait_pages(p, n, 60000, &at))
		CU_FAIL_FATAL("the guest did not touch its working set within 60 s");
}

bool mig_ctl_wait_phase(struct vmm_proc *src, const char *phase, int timeout_ms)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000ull;

	do {
		json_t *st = vmm_request(src, "migrate-status", NULL);
		const char *ph = json_string_value(json_object_get(st, "phase"));
		bool there = ph && !strcmp(ph, phase), ended = phase_is_end(st);

		json_decref(st);
		if (there || ended)
			return there;
		sleep_ms(20);
	} while (now_ns() < end);
	return false;
}

bool mig_ctl_wait_bytes(struct vmm_proc *src, uint64_t bytes, int timeout_ms)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000ull;

	do {
		json_t *st = vmm_request(src, "migrate-status", NULL);
		const char *ph = json_string_value(json_object_get(st, "phase"));
		bool there =
			ph && !strcmp(ph, "precopy") &&
			(uint64_t)json_integer_value(json_object_get(st, "bytes_sent")) >= bytes;
		bool ended = phase_is_end(st);

		json_decref(st);
		if (there || ended)
			return there;
		sleep_ms(50);
	} while (now_ns() < end);
	return false;
}

json_t *mig_ctl_wait_end(struct vmm_proc *src, int timeout_ms)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000ull;

	do {
		json_t *st = vmm_request(src, "migrate-status", NULL);

		if (phase_is_end(st))
			return st;
		json_decref(st);
		sleep_ms(50);
	} while (now_ns() < end);
	return NULL;
}

/* ---- heartbeats across consoles --------------------------------------------------------- */

/* The console a position of the joined text belongs to. */
static int console_of(const size_t *start, int n, size_t pos)
{
	int i = 0;

	while (i + 1 < n && pos >= start[i + 1])
		i++;
	return i;
}

static void check_step(const struct heartbeat *a, const struct heartbeat *b, int console)
{
	CU_ASSERT_EQUAL(b->seq, a->seq + 1);
	CU_ASSERT(b->ticks >= a->ticks);
	CU_ASSERT(b->ms > a->ms); /* guest time only moves forward, across migrations too */
	CU_ASSERT(b->pages >= a->pages);
	if (b->seq != a->seq + 1 || b->ms <= a->ms || b->ticks < a->ticks)
		printf("\n    console %d: HB seq=%lu ticks=%lu ms=%lu after seq=%lu ticks=%lu "
		       "ms=%lu\n",
		       console, b->seq, b->ticks, b->ms, a->seq, a->ticks, a->ms);
}

static void check_text(const char *all, const size_t *start, int n)
{
	for (int i = 0; i < n; i++) {
		const char *t = all + start[i];
		size_t len = (i + 1 < n ? start[i + 1] : strlen(all)) - start[i];
		char *own = strndup(t, len);

		CU_ASSERT_PTR_NULL(strstr(own, "CORRUPT"));
		CU_ASSERT_PTR_NULL(strstr(own, "FAULT vec="));
		CU_ASSERT_PTR_NULL(strstr(own, "ERROR "));
		/* The guest booted once: a destination continues it, never starts it again. */
		if (i > 0)
			CU_ASSERT_PTR_NULL(strstr(own, "READY"));
		if (strstr(own, "CORRUPT") || strstr(own, "FAULT vec=") || strstr(own, "ERROR ") ||
		    (i > 0 && strstr(own, "READY")))
			printf("\n    console %d:\n%s\n", i, own);
		free(own);
	}
}

int mig_check_chain(const char *const *texts, int n, struct hb_chain *c)
{
	static struct heartbeat hb[MAX_HB];
	size_t start[MIG_MAX_CONSOLES], len = 0;
	char *all, *line;
	int k = 0;

	memset(c, 0, sizeof(*c));
	CU_ASSERT_FATAL(n >= 1 && n <= MIG_MAX_CONSOLES);
	for (int i = 0; i < n; i++)
		len += strlen(texts[i]);
	all = calloc(1, len + 1);
	len = 0;
	for (int i = 0; i < n; i++) {
		start[i] = len;
		memcpy(all + len, texts[i], strlen(texts[i]));
		len += strlen(texts[i]);
	}
	check_text(all, start, n);
	for (line = all; (line = strstr(line, "HB seq=")) && k < MAX_HB; line++) {
		struct heartbeat h;
		int i = console_of(start, n, (size_t)(line - all));

		if (!strchr(line, '\n')) /* the last line may still be arriving */
			break;
		if (sscanf(line, "HB seq=%lu pages=%lu ticks=%lu ms=%lu", &h.seq, &h.pages,
			   &h.ticks, &h.ms) != 4)
			continue;
		if (k > 0)
			check_step(&hb[k - 1], &h, i);
		if (!c->n[i]++)
			c->first[i] = h;
		c->last[i] = h;
		hb[k++] = h;
	}
	if (k > 1)
		CU_ASSERT(hb[k - 1].ticks > hb[0].ticks);
	free(all);
	c->total = k;
	return k;
}

int mig_check_consoles(struct vmm_proc *const *procs, int n, struct hb_chain *c)
{
	char *texts[MIG_MAX_CONSOLES] = { NULL };
	int k;

	CU_ASSERT_FATAL(n >= 1 && n <= MIG_MAX_CONSOLES);
	for (int i = 0; i < n; i++)
		texts[i] = test_read_file(procs[i]->console);
	k = mig_check_chain((const char *const *)texts, n, c);
	for (int i = 0; i < n; i++)
		free(texts[i]);
	return k;
}

/* ---- outcomes --------------------------------------------------------------------------- */

void mig_expect_source_migrated(struct vmm_proc *src)
{
	char *e;

	CU_ASSERT_EQUAL(vmm_wait(src, 20000), 0);
	CU_ASSERT_EQUAL(src->status, 0);
	e = test_read_file(src->errlog);
	CU_ASSERT_PTR_NOT_NULL(strstr(e, "ended: migrated"));
	if (src->status != 0 || !strstr(e, "ended: migrated"))
		printf("\n    source status %d, stderr:\n%s\n", src->status, e);
	free(e);
}

void mig_expect_source_runs(struct vmm_proc *src)
{
	json_t *r = vmm_request(src, "status", NULL);
	const char *state = json_string_value(json_object_get(r, "state"));
	int n = vmm_heartbeats(src, NULL, 0);

	CU_ASSERT_STRING_EQUAL(state ? state : "(no reply)", "running");
	json_decref(r);
	CU_ASSERT(vmm_wait_heartbeats(src, n + 3, 10000));
	CU_ASSERT_EQUAL(vmm_wait(src, 0), -ETIMEDOUT); /* the process is alive */
	guest_check_console(src);
}

void mig_expect_no_guest(struct vmm_proc *dst)
{
	char *c = test_read_file(dst->console);

	CU_ASSERT_PTR_NULL(strstr(c, "HB seq="));
	CU_ASSERT_PTR_NULL(strstr(c, "READY"));
	if (strstr(c, "HB seq=") || strstr(c, "READY"))
		printf("\n    a guest ran on the destination:\n%s\n", c);
	free(c);
}

/* ---- a plain TCP server ----------------------------------------------------------------- */

static void *sink_thread(void *arg)
{
	static const char banner[] = "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n";
	struct tcp_sink *s = arg;
	struct pollfd p = { s->fd, POLLIN, 0 };
	int fd;

	if (poll(&p, 1, 30000) <= 0 || (fd = accept(s->fd, NULL, NULL)) < 0)
		return NULL;
	s->conn = fd;
	for (;;) {
		char buf[4096];
		struct pollfd q = { fd, POLLIN, 0 };
		ssize_t n = poll(&q, 1, 30000) > 0 ? read(fd, buf, sizeof(buf)) : 0;

		if (n <= 0)
			break;
		if (s->talk && !s->got && write(fd, banner, sizeof(banner) - 1) < 0)
			break;
		s->got += (size_t)n;
	}
	s->conn = -1;
	close(fd);
	return NULL;
}

int tcp_sink_start(struct tcp_sink *s, const char *host, bool talk)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);

	memset(s, 0, sizeof(*s));
	s->conn = -1;
	s->talk = talk;
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->fd < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
	    bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s->fd, 4) < 0 ||
	    getsockname(s->fd, (struct sockaddr *)&sa, &sl) < 0)
		goto fail;
	s->port = ntohs(sa.sin_port);
	if (pthread_create(&s->thread, NULL, sink_thread, s))
		goto fail;
	s->started = true;
	return 0;
fail:
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	return -1;
}

void tcp_sink_stop(struct tcp_sink *s)
{
	if (s->fd >= 0)
		shutdown(s->fd, SHUT_RDWR); /* wakes an accept that never came */
	if (s->conn >= 0)
		shutdown(s->conn, SHUT_RDWR); /* and a read the peer never ends */
	if (s->started)
		pthread_join(s->thread, NULL);
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	s->started = false;
}

int netns_incoming(struct vmm_proc *p, const struct netns *n, const char *tls_dir)
{
	const char *dir = test_tmpdir();
	char listen[64], console[600];
	int fd;

	memset(p, 0, sizeof(*p));
	p->status = -1;
	snprintf(p->console, sizeof(p->console), "%s/console", dir);
	snprintf(p->api, sizeof(p->api), "%s/api.sock", dir);
	snprintf(p->errlog, sizeof(p->errlog), "%s/stderr", dir);
	snprintf(console, sizeof(console), "file:%s", p->console);
	snprintf(listen, sizeof(listen), "%s:0", n->ns_ip);
	/* `ip netns exec` enters the namespace and execs: the PID is the VMM's. */
	const char *argv[] = {
		netns_ip_bin(), "netns",    "exec",  n->name,	  test_bin("cme-vmm"),
		"incoming",	"--listen", listen,  "--tls-dir", tls_dir,
		"--console",	console,    "--api", p->api,	  NULL
	};

	fd = open(p->errlog, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	p->pid = fork();
	if (p->pid == 0) {
		dup2(fd, STDERR_FILENO);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(fd);
	if (p->pid < 0)
		return -errno;
	return incoming_ready(p, n->ns_ip);
}

int mig_netns_dest(struct netns *ns, struct vmm_proc *dst, const char *src_name, char tls_src[700],
		   char to[64])
{
	char pki[600], tls_dst[700], why[512];
	int port;

	if (netns_make(ns, why, sizeof(why)) < 0) {
		test_skip("%s", why);
		return 0;
	}
	const char *names[] = { src_name, ns->ns_ip, NULL };

	if (mig_certs(pki, sizeof(pki), names) < 0)
		return -1;
	net_tls_dir(tls_src, 700, pki, src_name);
	net_tls_dir(tls_dst, sizeof(tls_dst), pki, ns->ns_ip);
	port = netns_incoming(dst, ns, tls_dst);
	CU_ASSERT(port > 0);
	snprintf(to, 64, "%s:%d", ns->ns_ip, port);
	return port > 0 ? 1 : -1;
}
