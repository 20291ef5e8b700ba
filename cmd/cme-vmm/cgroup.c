/* --cgroup PATH[,cpu=CPUS][,mem=SIZE]: the VMM process (every thread, and so its guest)
 * runs in a control group of its own with a CPU limit (CFS quota: CPUS cores' worth of
 * time per 100 ms) and a memory limit.
 *
 * cgroup v2 when its hierarchy offers the controllers the limits need (enabled in each
 * ancestor's cgroup.subtree_control on the way down if they are not yet); otherwise the
 * cgroup v1 "cpu" and "memory" hierarchies, as on hosts that still mount them (this is
 * what lets the test run on such hosts too). PATH is relative to the hierarchy's root; the
 * folders the VMM creates are removed again when it exits (after it has moved itself back
 * to the root), so a bad limit or an exit leaves nothing behind. */
#include "vmm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define SUB	   "cgroup"
#define CPU_PERIOD 100000 /* µs: the CFS period the quota is a share of */
#define MAX_DEPTH  CG_MAX_DEPTH

struct cg_dir {
	char root[256];			   /* the hierarchy's mount point */
	char path[CG_PATH_MAX];		   /* root + "/" + PATH */
	char made[MAX_DEPTH][CG_PATH_MAX]; /* folders created, outermost first */
	unsigned nr_made;
};

struct cgroup {
	int version;	      /* 1 or 2 */
	struct cg_dir dir[2]; /* v2: dir[0]; v1: the cpu and the memory hierarchy */
	unsigned nr_dirs;
	struct cg_opts opts;
	int reaper_fd; /* cg_reaper: its pipe, open while the VMM lives (0: no reaper; -1:
			* cg_hand_off, the starter removes the folders) */
};

/* The mount point of the cgroup hierarchy of fstype ("cgroup2"), or of the v1 hierarchy
 * whose super options name controller; false when there is none. */
static bool find_mount(const char *fstype, const char *controller, char *out, size_t len)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[1024];
	bool found = false;

	while (f && !found && fgets(line, sizeof(line), f)) {
		char mnt[256], type[32], super[512], *dash = strstr(line, " - ");

		if (!dash || sscanf(line, "%*s %*s %*s %*s %255s", mnt) != 1 ||
		    sscanf(dash + 3, "%31s %*s %511s", type, super) != 2 || strcmp(type, fstype))
			continue;
		if (controller) { /* the super options: rw,cpu,... */
			char *tok, *save = NULL;

			for (tok = strtok_r(super, ",", &save); tok && !found;
			     tok = strtok_r(NULL, ",", &save))
				found = !strcmp(tok, controller);
		} else {
			found = true;
		}
		if (found)
			snprintf(out, len, "%s", mnt);
	}
	if (f)
		fclose(f);
	return found;
}

static int write_str(const char *dir, const char *file, const char *val)
{
	char p[CG_PATH_MAX + 64];
	int rc;
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, file);
	f = fopen(p, "w");
	if (!f)
		return -errno;
	rc = fputs(val, f) < 0 ? -EIO : 0;
	if (fclose(f) && !rc)
		rc = -errno;
	return rc;
}

static bool read_str(const char *dir, const char *file, char *out, size_t len)
{
	char p[CG_PATH_MAX + 64];
	FILE *f;
	bool ok;

	snprintf(p, sizeof(p), "%s/%s", dir, file);
	f = fopen(p, "r");
	ok = f && fgets(out, (int)len, f);
	if (f)
		fclose(f);
	if (ok)
		out[strcspn(out, "\n")] = 0;
	return ok;
}

/* mkdir -p root/PATH, remembering what it created. */
static int make_dirs(struct cg_dir *d, const char *root, const char *rel)
{
	char *p;

	snprintf(d->root, sizeof(d->root), "%s", root);
	if ((size_t)snprintf(d->path, sizeof(d->path), "%s/%s", root, rel) >= sizeof(d->path))
		return -ENAMETOOLONG;
	for (p = d->path + strlen(root) + 1;; p++) {
		bool end = !*p;

		if (*p != '/' && !end)
			continue;
		*p = 0;
		if (mkdir(d->path, 0755) == 0 && d->nr_made < MAX_DEPTH)
			snprintf(d->made[d->nr_made++], CG_PATH_MAX, "%s", d->path);
		else if (errno != EEXIST)
			return -errno;
		if (end)
			return 0;
		*p = '/';
	}
}

/* Back to the hierarchy's root, and the folders it created gone (innermost first). */
static void leave_dir(struct cg_dir *d)
{
	char pid[24];

	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	if (d->root[0] && write_str(d->root, "cgroup.procs", pid))
		log_warn(SUB, "cannot move back to %s", d->root);
	while (d->nr_made)
		if (rmdir(d->made[--d->nr_made]) < 0 && errno != ENOENT)
			log_warn(SUB, "cannot remove %s: %s", d->made[d->nr_made], strerror(errno));
}

static void join(struct cg_dir *d, char *err, size_t len, int *rc)
{
	char pid[24];

	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	if (!*rc && (*rc = write_str(d->path, "cgroup.procs", pid)))
		snprintf(err, len, "--cgroup: cannot join %s: %s", d->path, strerror(-*rc));
}

/* Whether the v2 group offers controller: enabled in the subtree_control of the root and
 * of every folder above the group first (a write that fails shows in the group's
 * cgroup.controllers, read after). */
static bool v2_offers(const struct cg_dir *d, const char *controller)
{
	char have[256] = "", dir[CG_PATH_MAX], want[32], *save = NULL;
	const char *slash = d->path + strlen(d->root);

	snprintf(want, sizeof(want), "+%s", controller);
	while (slash) {
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - d->path), d->path);
		if (write_str(dir, "cgroup.subtree_control", want))
			log_debug(SUB, "cannot enable %s in %s", controller, dir);
		slash = strchr(slash + 1, '/');
	}
	if (!read_str(d->path, "cgroup.controllers", have, sizeof(have)))
		return false;
	for (char *tok = strtok_r(have, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
		if (!strcmp(tok, controller))
			return true;
	return false;
}

static int enter_v2(struct cgroup *cg, const char *root, char *err, size_t len)
{
	struct cg_dir *d = &cg->dir[0];
	char val[64];
	int rc = make_dirs(d, root, cg->opts.path);

	cg->version = 2;
	cg->nr_dirs = 1;
	if (rc)
		return snprintf(err, len, "--cgroup: cannot create %s: %s", d->path, strerror(-rc)),
		       rc;
	if ((cg->opts.cpus && !v2_offers(d, "cpu")) || (cg->opts.mem && !v2_offers(d, "memory")))
		return -ENOTSUP; /* the caller tries v1 */
	if (cg->opts.cpus) {
		snprintf(val, sizeof(val), "%llu %d",
			 (unsigned long long)(cg->opts.cpus * CPU_PERIOD), CPU_PERIOD);
		rc = write_str(d->path, "cpu.max", val);
	}
	if (!rc && cg->opts.mem) {
		snprintf(val, sizeof(val), "%llu", (unsigned long long)cg->opts.mem);
		rc = write_str(d->path, "memory.max", val);
	}
	if (rc)
		snprintf(err, len, "--cgroup: cannot set the limits in %s: %s", d->path,
			 strerror(-rc));
	join(d, err, len, &rc);
	return rc;
}

/* One v1 hierarchy (the cpu or the memory one): the group, its limit, the VMM in it. */
static int enter_v1_one(struct cgroup *cg, const char *controller, char *err, size_t len)
{
	struct cg_dir *d = &cg->dir[cg->nr_dirs];
	char root[256], val[64];
	bool cpu = !strcmp(controller, "cpu");
	int rc;

	if (!find_mount("cgroup", controller, root, sizeof(root)))
		return snprintf(err, len,
				"--cgroup: no cgroup hierarchy here offers the %s controller",
				controller),
		       -ENOTSUP;
	cg->nr_dirs++;
	rc = make_dirs(d, root, cg->opts.path);
	if (rc)
		return snprintf(err, len, "--cgroup: cannot create %s: %s", d->path, strerror(-rc)),
		       rc;
	if (cpu && cg->opts.cpus) {
		snprintf(val, sizeof(val), "%llu",
			 (unsigned long long)(cg->opts.cpus * CPU_PERIOD));
		rc = write_str(d->path, "cpu.cfs_period_us", "100000");
		if (!rc)
			rc = write_str(d->path, "cpu.cfs_quota_us", val);
	} else if (!cpu && cg->opts.mem) {
		snprintf(val, sizeof(val), "%llu", (unsigned long long)cg->opts.mem);
		rc = write_str(d->path, "memory.limit_in_bytes", val);
	}
	if (rc)
		snprintf(err, len, "--cgroup: cannot set the limits in %s: %s", d->path,
			 strerror(-rc));
	join(d, err, len, &rc);
	return rc;
}

static int enter_v1(struct cgroup *cg, char *err, size_t len)
{
	int rc;

	cg->version = 1;
	cg->nr_dirs = 0;
	rc = enter_v1_one(cg, "cpu", err, len);
	return rc ? rc : enter_v1_one(cg, "memory", err, len);
}

void cg_leave(struct cgroup *cg)
{
	if (!cg)
		return;
	for (unsigned i = cg->nr_dirs; i-- > 0 && !cg->reaper_fd;)
		leave_dir(&cg->dir[i]);
	free(cg); /* a reaper's pipe closes with the process */
}

/* The reaper: out of the group at once (the VMM alone is charged), then, once the pipe
 * says the VMM has ended, the folders it made are removed. Never returns. */
static void reap(struct cgroup *cg, int fd)
{
	char pid[24], c;

	prctl(PR_SET_NAME, "cme-cg-reaper");
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	for (unsigned i = 0; i < cg->nr_dirs; i++)
		if (write_str(cg->dir[i].root, "cgroup.procs", pid))
			log_warn(SUB, "reaper: cannot leave %s", cg->dir[i].path);
	while (read(fd, &c, 1) < 0 && errno == EINTR)
		;
	/* The pipe closes before the kernel has taken the VMM out of its group: a removal
	 * may find it busy for a moment. */
	for (unsigned i = cg->nr_dirs; i-- > 0;)
		for (unsigned k = cg->dir[i].nr_made; k-- > 0;)
			for (int t = 0; t < 250 && rmdir(cg->dir[i].made[k]) < 0 && errno == EBUSY;
			     t++)
				sleep_ms(20);
	for (unsigned i = cg->nr_dirs; i-- > 0;)
		leave_dir(&cg->dir[i]); /* says what still could not go */
	_exit(0);
}

unsigned cg_dirs(const struct cgroup *cg, const char **paths, unsigned max)
{
	unsigned n = 0;

	for (unsigned i = 0; cg && i < cg->nr_dirs && n < max; i++)
		paths[n++] = cg->dir[i].path;
	return n;
}

int cg_reaper(struct cgroup *cg)
{
	int p[2];
	pid_t pid;

	if (!cg)
		return 0;
	if (pipe2(p, O_CLOEXEC))
		return -errno;
	pid = fork();
	if (pid == 0) {
		close(p[1]);
		close_range(3, (unsigned)p[0] - 1, 0);
		close_range((unsigned)p[0] + 1, ~0U, 0);
		reap(cg, p[0]);
	}
	close(p[0]);
	if (pid < 0) {
		close(p[1]);
		return -errno;
	}
	cg->reaper_fd = p[1];
	return 0;
}

int cg_hand_off(struct cgroup *cg, const char *dir)
{
	char path[PATH_MAX], list[2 * MAX_DEPTH * (CG_PATH_MAX + 1)];
	size_t n = 0;
	int rc;

	if (!cg)
		return 0;
	for (unsigned i = 0; i < cg->nr_dirs; i++)
		for (unsigned k = 0; k < cg->dir[i].nr_made; k++)
			n += (size_t)snprintf(list + n, sizeof(list) - n, "%s\n",
					      cg->dir[i].made[k]);
	snprintf(path, sizeof(path), "%s/%s", dir, CG_MADE_FILE);
	rc = write_file_atomic(path, list, n);
	if (!rc)
		cg->reaper_fd = -1; /* not ours to remove any more */
	return rc;
}

int cg_enter(const struct cg_opts *o, struct cgroup **out, char *err, size_t len)
{
	struct cgroup *cg = calloc(1, sizeof(*cg));
	char root[256];
	int rc = -ENOTSUP;

	if (!cg)
		return -ENOMEM;
	cg->opts = *o;
	snprintf(cg->opts.path, sizeof(cg->opts.path), "%s", o->path);
	if (find_mount("cgroup2", NULL, root, sizeof(root))) {
		rc = enter_v2(cg, root, err, len);
		if (rc == -ENOTSUP) { /* the v2 hierarchy lacks a controller: undo, try v1 */
			leave_dir(&cg->dir[0]);
			memset(cg->dir, 0, sizeof(cg->dir));
		}
	}
	if (rc == -ENOTSUP)
		rc = enter_v1(cg, err, len);
	if (rc) {
		cg_leave(cg);
		return rc;
	}
	log_info(SUB, "in cgroup v%d %s (cpu %.2f, memory %llu MiB)", cg->version, cg->dir[0].path,
		 cg->opts.cpus, (unsigned long long)(cg->opts.mem >> 20));
	*out = cg;
	return 0;
}

/* How many CFS periods the group was throttled in (cpu.stat nr_throttled, both versions). */
static long long throttled(const struct cg_dir *d)
{
	char p[CG_PATH_MAX + 16], line[128];
	long long n = 0;
	FILE *f;

	snprintf(p, sizeof(p), "%s/cpu.stat", d->path);
	f = fopen(p, "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "nr_throttled %lld", &n) == 1)
			break;
	if (f)
		fclose(f);
	return n;
}

/* The limits as set, and what the group uses now. */
json_t *cg_json(const struct cgroup *cg)
{
	const struct cg_dir *mem = &cg->dir[cg->version == 1 ? 1 : 0];
	char used[32] = "0";

	read_str(mem->path, cg->version == 1 ? "memory.usage_in_bytes" : "memory.current", used,
		 sizeof(used));
	return json_pack("{s:s,s:i,s:s,s:f,s:I,s:I,s:I}", "path", cg->opts.path, "version",
			 cg->version, "dir", cg->dir[0].path, "cpu_limit", cg->opts.cpus,
			 "mem_limit_bytes", (json_int_t)cg->opts.mem, "mem_used_bytes",
			 (json_int_t)strtoll(used, NULL, 10), "cpu_throttled",
			 (json_int_t)throttled(&cg->dir[0]));
}
