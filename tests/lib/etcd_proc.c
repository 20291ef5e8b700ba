/* A real etcd for tests: free ports, fresh data dir, readiness by /health, kill and
 * restart by PID. Every etcd still running at exit is killed (and each dies with the
 * runner through PR_SET_PDEATHSIG). */
#include "etcd_proc.h"
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_LIVE 8
static pid_t live[MAX_LIVE];

static void kill_live(void)
{
	for (int i = 0; i < MAX_LIVE; i++) {
		if (live[i] > 0) {
			kill(live[i], SIGKILL);
			waitpid(live[i], NULL, 0);
			live[i] = 0;
		}
	}
}

static void live_set(pid_t old, pid_t new)
{
	static bool registered;

	if (!registered && atexit(kill_live) == 0)
		registered = true;
	for (int i = 0; i < MAX_LIVE; i++) {
		if (live[i] == old) {
			live[i] = new;
			return;
		}
	}
}

static uint64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int loopback_socket(int port, struct sockaddr_in *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
}

int test_free_port(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = loopback_socket(0, &sa), port = -errno;

	if (fd < 0)
		return port;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	else
		port = -errno;
	close(fd);
	return port;
}

/* True when GET /health says the member has a leader. */
static bool health_ok(int port)
{
	static const char req[] = "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
	struct sockaddr_in sa;
	int fd = loopback_socket(port, &sa);
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	char buf[1024];
	size_t len = 0;
	ssize_t n = 1;

	if (fd < 0)
		return false;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1)) {
		close(fd);
		return false;
	}
	while (n > 0 && len < sizeof(buf) - 1 && poll(&pfd, 1, 500) == 1) {
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		len += n > 0 ? (size_t)n : 0;
	}
	buf[len] = 0;
	close(fd);
	return strstr(buf, "\"health\":\"true\"") != NULL;
}

static void print_log_tail(const struct etcd_proc *p)
{
	char path[600], *log;
	size_t len;

	snprintf(path, sizeof(path), "%s/etcd.log", p->dir);
	log = test_read_file(path);
	len = strlen(log);
	fprintf(stderr, "etcd log (%s), tail:\n%s\n", path, log + (len > 2000 ? len - 2000 : 0));
	free(log);
}

/* The argument strings, built before fork() (the runner may have threads). */
struct etcd_args {
	char peer[64], data[600], log[600], cluster[128], listen[160];
	char cert[600], key[600], ca[600], metrics[64];
};

/* Exec etcd in the child; never returns. */
static void child_exec(const struct etcd_proc *p, const struct etcd_args *a)
{
	int fd;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	fd = open(a->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd >= 0) {
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
	}
	if (p->tls_dir[0])
		execl(ETCD_BIN, ETCD_BIN, "--name", "default", "--data-dir", a->data,
		      "--listen-client-urls", p->url, "--advertise-client-urls", p->url,
		      "--listen-peer-urls", a->peer, "--initial-advertise-peer-urls", a->peer,
		      "--initial-cluster", a->cluster, "--logger", "zap", "--log-level", "warn",
		      "--cert-file", a->cert, "--key-file", a->key, "--client-cert-auth",
		      "--trusted-ca-file", a->ca, "--listen-metrics-urls", a->metrics,
		      (char *)NULL);
	else
		execl(ETCD_BIN, ETCD_BIN, "--name", "default", "--data-dir", a->data,
		      "--listen-client-urls", a->listen, "--advertise-client-urls", p->url,
		      "--listen-peer-urls", a->peer, "--initial-advertise-peer-urls", a->peer,
		      "--initial-cluster", a->cluster, "--logger", "zap", "--log-level", "warn",
		      "--experimental-watch-progress-notify-interval", "1s", (char *)NULL);
	_exit(127);
}

/* Wait until etcd is healthy, or has exited, or 10 s passed. */
static int wait_ready(struct etcd_proc *p)
{
	uint64_t end = ms_now() + 10000;
	int st;

	while (ms_now() < end) {
		if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
			live_set(p->pid, 0);
			p->pid = 0;
			print_log_tail(p);
			return -ECHILD;
		}
		if (health_ok(p->tls_dir[0] ? p->metrics_port : p->client_port))
			return 0;
		usleep(50 * 1000);
	}
	print_log_tail(p);
	etcd_proc_kill(p);
	return -ETIMEDOUT;
}

int etcd_proc_restart(struct etcd_proc *p)
{
	struct etcd_args a;

	if (access(ETCD_BIN, X_OK) < 0) {
		fprintf(stderr, "%s missing: `make deps` installs etcd-server\n", ETCD_BIN);
		return -ENOENT;
	}
	snprintf(p->url, sizeof(p->url), "%s://127.0.0.1:%d", p->tls_dir[0] ? "https" : "http",
		 p->client_port);
	snprintf(a.cert, sizeof(a.cert), "%s/tls.crt", p->tls_dir);
	snprintf(a.key, sizeof(a.key), "%s/tls.key", p->tls_dir);
	snprintf(a.ca, sizeof(a.ca), "%s/ca.crt", p->tls_dir);
	snprintf(a.metrics, sizeof(a.metrics), "http://127.0.0.1:%d", p->metrics_port);
	snprintf(a.peer, sizeof(a.peer), "http://127.0.0.1:%d", p->peer_port);
	snprintf(a.data, sizeof(a.data), "%s/data", p->dir);
	snprintf(a.log, sizeof(a.log), "%s/etcd.log", p->dir);
	snprintf(a.cluster, sizeof(a.cluster), "default=%s", a.peer);
	if (p->also[0])
		snprintf(a.listen, sizeof(a.listen), "%s,http://%s:%d", p->url, p->also,
			 p->client_port);
	else
		snprintf(a.listen, sizeof(a.listen), "%s", p->url);
	p->pid = fork();
	if (p->pid < 0) {
		p->pid = 0;
		return -errno;
	}
	if (p->pid == 0)
		child_exec(p, &a);
	live_set(0, p->pid);
	return wait_ready(p);
}

static int start(struct etcd_proc *p, const char *tls_dir, const char *also)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->also, sizeof(p->also), "%s", also ? also : "");
	if (tls_dir) {
		snprintf(p->tls_dir, sizeof(p->tls_dir), "%s", tls_dir);
		p->metrics_port = test_free_port();
	}
	snprintf(p->dir, sizeof(p->dir), "%s", test_tmpdir());
	p->client_port = test_free_port();
	p->peer_port = test_free_port();
	while (p->peer_port == p->client_port && p->peer_port > 0)
		p->peer_port = test_free_port();
	if (p->client_port < 0 || p->peer_port < 0)
		return p->client_port < 0 ? p->client_port : p->peer_port;
	return etcd_proc_restart(p);
}

int etcd_proc_start(struct etcd_proc *p)
{
	return etcd_proc_start_tls(p, NULL);
}

int etcd_proc_start_also(struct etcd_proc *p, const char *also)
{
	return start(p, NULL, also);
}

int etcd_proc_start_tls(struct etcd_proc *p, const char *tls_dir)
{
	return start(p, tls_dir, NULL);
}

int etcd_proc_signal(struct etcd_proc *p, int sig)
{
	int st;

	if (p->pid <= 0)
		return -ESRCH;
	if (kill(p->pid, sig) < 0)
		return -errno;
	/* kill() does not wait for the stop: etcd could still answer a request. */
	if (sig == SIGSTOP && waitpid(p->pid, &st, WUNTRACED) != p->pid)
		return -errno;
	return 0;
}

static void reap(struct etcd_proc *p)
{
	waitpid(p->pid, NULL, 0);
	live_set(p->pid, 0);
	p->pid = 0;
}

void etcd_proc_kill(struct etcd_proc *p)
{
	if (p->pid <= 0)
		return;
	kill(p->pid, SIGKILL);
	reap(p);
}

void etcd_proc_stop(struct etcd_proc *p)
{
	uint64_t end = ms_now() + 5000;

	if (p->pid <= 0)
		return;
	kill(p->pid, SIGCONT); /* a stopped etcd cannot handle SIGTERM */
	kill(p->pid, SIGTERM);
	while (ms_now() < end) {
		if (waitpid(p->pid, NULL, WNOHANG) == p->pid) {
			live_set(p->pid, 0);
			p->pid = 0;
			return;
		}
		usleep(20 * 1000);
	}
	etcd_proc_kill(p);
}
