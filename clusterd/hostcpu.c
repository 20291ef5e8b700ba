/* What this host's KVM offers guests, asked once at start the way an operator would:
 * `cme-vmm cpu-features` (the daemon never opens /dev/kvm itself). The node's record
 * publishes the answer, and placement compares VMs' CPU templates (and confidential VMs'
 * need of AMD SEV) with it. */
#include "cd_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SUB	   "cpu"
#define ASK_MS	   10000
#define ANSWER_MAX 16384

/* Read the child's whole answer from fd (until EOF) within ASK_MS. Returns its length or
 * -errno. */
static ssize_t read_answer(int fd, char *buf, size_t cap)
{
	uint64_t end = now_ns() + ASK_MS * 1000000ull;
	size_t n = 0;

	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		uint64_t now = now_ns();
		ssize_t r;

		if (now >= end)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)((end - now) / 1000000ull) + 1) < 0 && errno != EINTR)
			return -errno;
		r = read(fd, buf + n, cap - 1 - n);
		if (r == 0)
			break;
		if (r < 0 && errno != EINTR && errno != EAGAIN)
			return -errno;
		n += r > 0 ? (size_t)r : 0;
		if (n == cap - 1)
			return -EMSGSIZE;
	}
	buf[n] = 0;
	return (ssize_t)n;
}

/* Run `vmm cpu-features` with stdout into buf. Returns 0 or -errno. */
static int ask_vmm(const char *vmm, char *buf, size_t cap)
{
	int p[2], st = 0;
	ssize_t n;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid == 0) {
		dup2(p[1], STDOUT_FILENO);
		execl(vmm, vmm, "cpu-features", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	n = pid < 0 ? -errno : read_answer(p[0], buf, cap);
	close(p[0]);
	if (pid > 0 && n < 0)
		kill(pid, SIGKILL);
	if (pid > 0 && waitpid(pid, &st, 0) == pid && n >= 0 && (!WIFEXITED(st) || WEXITSTATUS(st)))
		n = -EIO;
	return n < 0 ? (int)n : 0;
}

/* The answer's array key ({"features":[names...]}) into a comma-separated list; -EINVAL
 * when it is not that. */
static int join_names(const char *answer, const char *key, char *out, size_t len)
{
	json_t *o = json_loads(answer, 0, NULL), *a = json_object_get(o, key), *v;
	size_t i, off = 0;
	int rc = json_is_array(a) ? 0 : -EINVAL;

	out[0] = 0;
	json_array_foreach(a, i, v)
	{
		const char *s = json_string_value(v);
		int w;

		if (!s || strchr(s, ',')) {
			rc = -EINVAL;
			break;
		}
		w = snprintf(out + off, len - off, "%s%s", off ? "," : "", s);
		if (w < 0 || (size_t)w >= len - off) {
			rc = -ENOSPC;
			break;
		}
		off += (size_t)w;
	}
	json_decref(o);
	if (rc)
		out[0] = 0;
	return rc;
}

void cd_host_cpu(struct cd *cd)
{
	char answer[ANSWER_MAX];
	int rc = ask_vmm(cd->cfg->vmm, answer, sizeof(answer));

	if (!rc)
		rc = join_names(answer, "features", cd->cpu_features, sizeof(cd->cpu_features));
	/* An older cme-vmm says nothing of it: none. */
	if (!rc &&
	    join_names(answer, "memory_encryption", cd->mem_encryption, sizeof(cd->mem_encryption)))
		cd->mem_encryption[0] = 0;
	if (rc)
		log_warn(SUB,
			 "node=%s: %s cpu-features: %s; this node publishes no CPU features (VMs "
			 "with a CPU template are not placed here)",
			 cd->cfg->node, cd->cfg->vmm, strerror(-rc));
	else
		log_info(SUB, "node=%s: CPU features %s; guest memory encryption: %s",
			 cd->cfg->node, cd->cpu_features,
			 cd->mem_encryption[0] ? cd->mem_encryption : "none");
}
