/* Processes in PID namespaces of their own: starting one (its PID 1), knowing a process's
 * PID as the host sees it, and removing the control groups a VMM made once it has ended
 * (from inside a namespace it cannot leave a helper behind to do it). */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

pid_t proc_clone_pidns(void)
{
	/* clone with no new stack behaves as fork (the child continues on a copy of this
	 * stack); glibc offers no fork with flags. */
	return (pid_t)syscall(SYS_clone, (unsigned long)(CLONE_NEWPID | SIGCHLD), NULL, NULL, NULL,
			      NULL);
}

pid_t proc_host_pid(void)
{
	char buf[24];
	ssize_t n = readlink("/proc/self", buf, sizeof(buf) - 1);
	long v = 0;

	if (n <= 0)
		return getpid();
	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] < '0' || buf[i] > '9')
			return getpid();
		v = v * 10 + (buf[i] - '0');
	}
	return (pid_t)v;
}

static bool is_cgroup_fs(const char *path)
{
	struct statfs fs;

	return !statfs(path, &fs) &&
	       (fs.f_type == CGROUP_SUPER_MAGIC || fs.f_type == CGROUP2_SUPER_MAGIC);
}

/* How many leading parts of rel ("a/b/c": 1 for "a", 3 for all) path is, below the root of a
 * control group hierarchy; 0 when it is not exactly that: "<mount>/a" or "<mount>/a/b",
 * <mount> the top of a control group file system, no link anywhere on the way. What a VMM
 * asked --cgroup rel can have made, and nothing else the file may say. */
static unsigned made_by(const char *path, const char *rel)
{
	size_t plen = strlen(path), rlen = strcspn(rel, ",");
	char real[PATH_MAX], mount[PATH_MAX], *slash;
	unsigned parts = 0;

	if (path[0] != '/' || plen >= PATH_MAX || !realpath(path, real) || strcmp(real, path))
		return 0; /* a link on the way, "..", "//": not a folder it made */
	for (size_t k = 1; k <= rlen; k++) {
		if (k < rlen && rel[k] != '/')
			continue;
		parts++;
		if (plen <= k || path[plen - k - 1] != '/' || strncmp(path + plen - k, rel, k))
			continue;
		snprintf(mount, sizeof(mount), "%.*s", (int)(plen - k - 1), path);
		slash = strrchr(mount, '/');
		if (!slash || slash == mount || !is_cgroup_fs(mount) || !is_cgroup_fs(path))
			continue;
		*slash = 0; /* the hierarchy's top: the folder above it is not a control group */
		if (!is_cgroup_fs(mount))
			return parts;
	}
	return 0;
}

/* The made file, read without following a link, nor blocking on a FIFO, nor without end:
 * the VMM (no longer root) could have replaced it. */
static size_t read_made(const char *made_file, char *buf, size_t len)
{
	int fd = open(made_file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	ssize_t n = -1;

	if (fd >= 0 && !fstat(fd, &st) && S_ISREG(st.st_mode))
		n = read(fd, buf, len - 1);
	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = 0;
	return n > 0 ? (size_t)n : 0;
}

void cg_remove_made(const char *made_file, const char *rel)
{
	char txt[4096], *lines[16], *save = NULL;
	uint64_t until = now_ns() + 2000000000ull; /* for all the folders together */
	unsigned n = 0, parts, all = 1;

	for (const char *p = rel; *p && *p != ','; p++)
		all += *p == '/';
	if (read_made(made_file, txt, sizeof(txt)))
		for (char *l = strtok_r(txt, "\n", &save); l && n < ARRAY_SIZE(lines);
		     l = strtok_r(NULL, "\n", &save))
			lines[n++] = l;
	/* The deepest first. The kernel may call the VMM's own group busy a moment after
	 * its last task was reaped: that one is tried again for a while; a folder above it
	 * that other groups still use is busy for good, tried once. */
	while (n-- > 0) {
		if (!(parts = made_by(lines[n], rel))) {
			log_warn("cgroup", "%s: %s is not a control group --cgroup %s made: left",
				 made_file, lines[n], rel);
			continue;
		}
		while (rmdir(lines[n]) < 0 && errno == EBUSY && parts == all && now_ns() < until)
			sleep_ms(20);
		if (!access(lines[n], F_OK) && parts == all)
			log_warn("cgroup", "cannot remove %s: %s", lines[n], strerror(errno));
	}
	unlink(made_file);
}
