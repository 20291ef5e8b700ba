/* Test helpers around a real cme-vmm process: start, wait, kill, console, control. */
#include "common.h"
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ARGS 48

static uint64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int decode_status(int st)
{
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

#define MAX_LIVE 64
static pid_t live[MAX_LIVE]; /* every child started and not yet reaped */

static void live_set(pid_t old, pid_t new)
{
	for (int i = 0; i < MAX_LIVE; i++) {
		if (live[i] == old) {
			live[i] = new;
			return;
		}
	}
}

void vmm_kill_all(void)
{
	for (int i = 0; i < MAX_LIVE; i++) {
		if (live[i] > 0) {
			kill(live[i], SIGKILL);
			waitpid(live[i], NULL, 0);
			live[i] = 0;
		}
	}
}

/* Fork and exec argv with stdout to out_fd and stderr to err_fd (-1: inherit). A VMM with
 * --jail-root starts as PID 1 of a PID namespace of its own, as cme-clusterd starts it. */
static pid_t spawn(const char *const *argv, int out_fd, int err_fd)
{
	bool pidns = false;
	pid_t pid = -1;

	for (int i = 0; argv[i]; i++)
		pidns |= !strcmp(argv[i], "--jail-root");
	if (pidns)
		pid = proc_clone_pidns();
	if (pid < 0)
		pid = fork();

	if (pid > 0)
		live_set(0, pid);
	if (pid != 0)
		return pid;
	if (out_fd >= 0)
		dup2(out_fd, STDOUT_FILENO);
	if (err_fd >= 0)
		dup2(err_fd, STDERR_FILENO);
	execv(argv[0], (char *const *)argv);
	fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

int vmm_start(struct vmm_proc *p, const char *const *args)
{
	return vmm_start_verb(p, "run", args);
}

static int start(struct vmm_proc *p, const char *verb, const char *const *args, int out_fd)
{
	const char *dir = test_tmpdir();
	const char *argv[MAX_ARGS];
	char console_arg[600];
	int n = 0, err_fd;

	memset(p, 0, sizeof(*p));
	p->status = -1;
	snprintf(p->console, sizeof(p->console), "%s/console", dir);
	snprintf(p->api, sizeof(p->api), "%s/api.sock", dir);
	snprintf(p->errlog, sizeof(p->errlog), "%s/stderr", dir);
	snprintf(console_arg, sizeof(console_arg), "file:%s", p->console);
	argv[n++] = test_bin("cme-vmm");
	argv[n++] = verb;
	bool own_console = false;

	/* Every VMM of the tests runs sandboxed, as cme-clusterd starts them: the whole
	 * suite shows that the allow-lists hold (CME_TEST_NO_JAIL=1 runs them without). */
	if (!getenv("CME_TEST_NO_JAIL"))
		argv[n++] = "--jail";
	for (; *args && n < MAX_ARGS - 6; args++) {
		own_console |= !strcmp(*args, "--console");
		argv[n++] = strcmp(*args, VMM_OWN_DIR) ? *args : dir;
	}
	if (!own_console) {
		argv[n++] = "--console";
		argv[n++] = console_arg;
	}
	argv[n++] = "--api";
	argv[n++] = p->api;
	argv[n] = NULL;
	err_fd = open(p->errlog, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	p->pid = spawn(argv, out_fd, err_fd);
	close(err_fd);
	return p->pid < 0 ? -errno : 0;
}

int vmm_start_verb(struct vmm_proc *p, const char *verb, const char *const *args)
{
	return start(p, verb, args, -1);
}

int vmm_start_out(struct vmm_proc *p, const char *const *args, int out_fd)
{
	return start(p, "run", args, out_fd);
}

int vmm_wait(struct vmm_proc *p, int timeout_ms)
{
	uint64_t end = ms_now() + (uint64_t)timeout_ms;
	int st;

	if (p->status >= 0 || p->pid <= 0)
		return 0;
	do {
		pid_t r = waitpid(p->pid, &st, WNOHANG);

		if (r == p->pid) {
			p->status = decode_status(st);
			live_set(p->pid, 0);
			return 0;
		}
		usleep(10000);
	} while (ms_now() < end);
	return -ETIMEDOUT;
}

void vmm_kill(struct vmm_proc *p)
{
	if (p->pid > 0 && p->status < 0) {
		kill(p->pid, SIGKILL);
		if (vmm_wait(p, 10000) < 0)
			fprintf(stderr, "pid %d did not die\n", (int)p->pid);
	}
}

bool vmm_console_wait(struct vmm_proc *p, const char *needle, int timeout_ms)
{
	uint64_t end = ms_now() + (uint64_t)timeout_ms;

	do {
		char *c = test_read_file(p->console);
		bool found = strstr(c, needle) != NULL;

		free(c);
		if (found)
			return true;
		usleep(20000);
	} while (ms_now() < end);
	return false;
}

/* Every whole heartbeat line: the first max into hb (may be NULL), the last into *last
 * (may be NULL). Returns the count. */
static int hb_scan(struct vmm_proc *p, struct heartbeat *hb, int max, struct heartbeat *last)
{
	char *c = test_read_file(p->console), *line = c;
	int n = 0;

	while ((line = strstr(line, "HB seq="))) {
		struct heartbeat h;
		char *eol = strchr(line, '\n');

		/* Only whole lines: the last one may still be arriving. */
		if (!eol)
			break;
		if (sscanf(line, "HB seq=%lu pages=%lu ticks=%lu ms=%lu", &h.seq, &h.pages,
			   &h.ticks, &h.ms) == 4) {
			if (n < max)
				hb[n] = h;
			if (last)
				*last = h;
			n++;
		}
		line = eol;
	}
	free(c);
	return n;
}

int vmm_heartbeats(struct vmm_proc *p, struct heartbeat *hb, int max)
{
	return hb_scan(p, hb, max, NULL);
}

bool vmm_last_heartbeat(struct vmm_proc *p, struct heartbeat *last)
{
	return hb_scan(p, NULL, 0, last) > 0;
}

bool vmm_wait_pages(struct vmm_proc *p, uint64_t pages, int timeout_ms, struct heartbeat *at)
{
	uint64_t end = ms_now() + (uint64_t)timeout_ms;

	do {
		if (vmm_last_heartbeat(p, at) && at->pages >= pages)
			return true;
		usleep(20000);
	} while (ms_now() < end);
	return false;
}

bool vmm_wait_heartbeats(struct vmm_proc *p, int n, int timeout_ms)
{
	uint64_t end = ms_now() + (uint64_t)timeout_ms;
	struct heartbeat hb;

	do {
		if (vmm_heartbeats(p, &hb, 1) >= n)
			return true;
		usleep(20000);
	} while (ms_now() < end);
	return false;
}

bool vmm_wait_status(struct vmm_proc *p, const char *field, const char *want, int timeout_ms)
{
	uint64_t end = ms_now() + (uint64_t)timeout_ms;
	json_t *w = json_loads(want, JSON_DECODE_ANY, NULL);
	bool there = false;

	do {
		json_t *st = vmm_request(p, "status", NULL);

		there = w && json_equal(json_object_get(st, field), w);
		json_decref(st);
		if (!there)
			usleep(20000);
	} while (!there && ms_now() < end);
	json_decref(w);
	return there;
}

char *vmm_request_raw(struct vmm_proc *p, const char *line)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char buf[65536];
	size_t len = 0;

	if (strlen(p->api) >= sizeof(sa.sun_path)) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	memcpy(sa.sun_path, p->api, strlen(p->api) + 1);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    write(fd, line, strlen(line)) != (ssize_t)strlen(line) || write(fd, "\n", 1) != 1) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	while (len < sizeof(buf) - 1) {
		struct pollfd pf = { fd, POLLIN, 0 };
		ssize_t r;

		if (poll(&pf, 1, 10000) <= 0)
			break;
		r = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (r <= 0)
			break;
		len += (size_t)r;
		if (memchr(buf, '\n', len))
			break;
	}
	close(fd);
	buf[len] = 0;
	return len ? strndup(buf, strcspn(buf, "\n")) : NULL;
}

json_t *vmm_request(struct vmm_proc *p, const char *cmd, const char *args)
{
	json_t *req = args ? json_loads(args, 0, NULL) : json_object(), *reply;
	char *line, *raw;

	if (!req)
		return NULL;
	json_object_set_new(req, "cmd", json_string(cmd));
	line = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	raw = line ? vmm_request_raw(p, line) : NULL;
	free(line);
	reply = raw ? json_loads(raw, 0, NULL) : NULL;
	free(raw);
	return reply;
}

int test_run(const char *const *argv, char **out, int timeout_ms)
{
	char path[600];
	struct vmm_proc p = { .status = -1 };
	int fd;

	snprintf(path, sizeof(path), "%s/out", test_tmpdir());
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	p.pid = spawn(argv, fd, fd);
	close(fd);
	if (p.pid < 0)
		return -errno;
	if (vmm_wait(&p, timeout_ms) < 0) {
		vmm_kill(&p);
		*out = test_read_file(path);
		return -ETIMEDOUT;
	}
	*out = test_read_file(path);
	return p.status;
}

/* How many threads of pid show "Seccomp: 2" and "NoNewPrivs: 1" in their status, out of
 * *total (the kernel's own helper threads in the process are not counted). */
int test_filtered_threads(pid_t pid, int *total)
{
	char path[128];
	struct dirent *e;
	DIR *d;
	int n = 0;

	*total = 0;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return -1;
	while ((e = readdir(d))) {
		char file[300], *st, *comm;

		if (e->d_name[0] == '.')
			continue;
		snprintf(file, sizeof(file), "/proc/%d/task/%s/comm", (int)pid, e->d_name);
		comm = test_read_file(file);
		if (!strncmp(comm, "kvm-", 4)) { /* a kernel worker KVM adds to the process */
			free(comm);
			continue;
		}
		snprintf(file, sizeof(file), "/proc/%d/task/%s/status", (int)pid, e->d_name);
		st = test_read_file(file);
		(*total)++;
		if (strstr(st, "\nSeccomp:\t2\n") && strstr(st, "\nNoNewPrivs:\t1\n"))
			n++;
		free(st);
		free(comm);
	}
	closedir(d);
	return n;
}
