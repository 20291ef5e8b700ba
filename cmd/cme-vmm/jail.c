/* --jail-root DIR and --jail-user: the VMM's own mount namespace, before its first thread.
 * Its root is a fresh tmpfs (root's, read-only to the VMM) holding only:
 *   /vm      DIR, the VM's folder: console, control socket, exit file, snapshots;
 *   /dev     kvm, net/tun (with a tap) and userfaultfd, nodes owned by the VMM's user;
 *   /proc/self and /proc/meminfo, its cgroup's folders read-only (with --cgroup);
 *   and, at their usual paths, what its command line named: image, kernel, initrd,
 *   snapshot, key and trust files, a restore's store and the TLS folder read-only, its
 *   disks and its --backup-store folders read-write.
 * Paths inside DIR become /vm/...; nothing else of the host is there. The skeleton is made
 * fresh each time in the tmpfs, never in DIR, so nothing a VMM left in its folder (a link
 * planted to steer the next start) is followed by root. With --jail-user the VMM then
 * becomes that user for good: only /vm and the writable disks are its to write. */
#include "vmm.h"

#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SUB	"jail"
#define VMDIR	"/vm"
#define OLDROOT "/.old"

/* Paths rewritten into the jail outlive the process's options: kept here. */
static char jail_paths[48][PATH_MAX];
static unsigned jail_npaths;
static char jail_dir[PATH_MAX];

const char *jail_root(void)
{
	return jail_dir[0] ? jail_dir : NULL;
}

/* mkdir -p of path's parents; path lies in the fresh tmpfs. */
static int make_parents(const char *path)
{
	char buf[PATH_MAX];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; (p = strchr(p, '/')); p++) {
		*p = 0;
		if (mkdir(buf, 0755) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return 0;
}

/* A bound file runs nothing and makes no one root; only a device (a disk on a block
 * device) stays a device. */
static int remount(const char *dst, bool ro, bool dev)
{
	unsigned long f = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NOEXEC | (dev ? 0 : MS_NODEV);

	return mount(NULL, dst, NULL, f | (ro ? MS_RDONLY : 0), NULL) ? -errno : 0;
}

/* Bind src (a host path, or /proc/self/fd/N) at dst in the tmpfs, alone (nothing mounted
 * below it comes along). */
static int bind_at(const char *src, const char *dst, bool dir, bool ro, bool dev)
{
	unsigned long rec = 0;
	int fd, rc = make_parents(dst);

	if (!rc && dir)
		rc = mkdir(dst, 0755) && errno != EEXIST ? -errno : 0;
	else if (!rc && (fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) >= 0)
		close(fd);
	else if (!rc && errno != EEXIST)
		rc = -errno;
	if (!rc && mount(src, dst, NULL, MS_BIND | rec, NULL))
		rc = -errno;
	return rc ? rc : remount(dst, ro, dev);
}

/* Bind host path src at the same path under root. */
static int bind_in(const char *root, const char *src, bool ro, char *err, size_t len)
{
	char dst[PATH_MAX];
	struct stat st;
	int rc;

	if (stat(src, &st))
		return snprintf(err, len, "%s: %s", src, strerror(errno)), -errno;
	if ((size_t)snprintf(dst, sizeof(dst), "%s%s", root, src) >= sizeof(dst))
		return snprintf(err, len, "%s: path too long in the jail", src), -ENAMETOOLONG;
	rc = bind_at(src, dst, S_ISDIR(st.st_mode), ro, S_ISBLK(st.st_mode) || S_ISCHR(st.st_mode));
	if (rc)
		snprintf(err, len, "binding %s into the jail: %s", src, strerror(-rc));
	return rc;
}

/* The host paths to bind in, noted while the options are rewritten (before the tmpfs
 * root exists) and bound once it does. */
static struct {
	char path[PATH_MAX];
	bool ro;
} binds[32];
static unsigned nbinds;

static int to_bind(const char *path, bool ro, char *err, size_t len)
{
	if (nbinds == sizeof(binds) / sizeof(binds[0]))
		return snprintf(err, len, "%s: too many paths for the jail", path), -E2BIG;
	snprintf(binds[nbinds].path, sizeof(binds[nbinds].path), "%s", path);
	binds[nbinds++].ro = ro;
	return 0;
}

static int do_binds(const char *root, char *err, size_t len)
{
	int rc = 0;

	for (unsigned i = 0; !rc && i < nbinds; i++)
		rc = bind_in(root, binds[i].path, binds[i].ro, err, len);
	return rc;
}

/* A rewritten path, kept for the process's lifetime. */
static int keep(const char **path, const char *a, const char *b, char *err, size_t len)
{
	char *slot;

	if (jail_npaths == sizeof(jail_paths) / sizeof(jail_paths[0]))
		return snprintf(err, len, "%s: too many paths for the jail", *path), -E2BIG;
	slot = jail_paths[jail_npaths++];
	if ((size_t)snprintf(slot, PATH_MAX, "%s%s", a, b) >= PATH_MAX)
		return snprintf(err, len, "%s: path too long", *path), -ENAMETOOLONG;
	*path = slot;
	return 0;
}

/* An absolute form of *path (relative ones from the working directory). */
static int absolute(const char **path, char *err, size_t len)
{
	char cwd[PATH_MAX];

	if ((*path)[0] == '/')
		return 0;
	if (!getcwd(cwd, sizeof(cwd) - 1))
		return snprintf(err, len, "%s: cannot make it absolute", *path), -EINVAL;
	strcat(cwd, "/");
	return keep(path, cwd, *path, err, len);
}

/* A file the VMM makes (console, control socket, exit file) named through another path
 * to DIR (a link, "..", a doubled slash): its folder's real path decides. */
static int own_inside(const char *dir, const char **path, char *err, size_t len)
{
	char parent[PATH_MAX], real[PATH_MAX], rel[PATH_MAX];
	size_t n = strlen(dir);
	char *slash;

	snprintf(parent, sizeof(parent), "%s", *path);
	slash = strrchr(parent, '/');
	*slash = 0;
	if (!realpath(parent[0] ? parent : "/", real) || strncmp(real, dir, n) ||
	    (real[n] != '/' && real[n]))
		return snprintf(err, len,
				"%s: the control socket, a console file or socket and the exit "
				"file must be inside the jail's folder %s",
				*path, dir),
		       -EINVAL;
	if ((size_t)snprintf(rel, sizeof(rel), "%s/%s", real + n, slash + 1) >= sizeof(rel))
		return snprintf(err, len, "%s: path too long", *path), -ENAMETOOLONG;
	return keep(path, VMDIR, rel, err, len);
}

/* A file the VMM opens later: inside DIR it becomes /vm/...; elsewhere it is bound in at
 * its path. A file it creates or renames (console, control socket, exit file: own) must
 * be inside DIR: binding its folder would open that whole folder to the VMM. */
static int give(const char *dir, const char **path, bool ro, bool own, char *err, size_t len)
{
	size_t n = strlen(dir);
	int rc;

	if (!*path)
		return 0;
	if ((rc = absolute(path, err, len)))
		return rc;
	if (!strncmp(*path, dir, n) && ((*path)[n] == '/' || !(*path)[n]))
		return keep(path, VMDIR, *path + n, err, len);
	if (own)
		return own_inside(dir, path, err, len);
	return to_bind(*path, ro, err, len);
}

static int give_all(const char *dir, struct run_opts *o, char *err, size_t len)
{
	int rc = give(dir, &o->image, true, false, err, len);

	rc = rc ? rc : give(dir, &o->kernel, true, false, err, len);
	rc = rc ? rc : give(dir, &o->initrd, true, false, err, len);
	if (!o->store) /* with --store it names a backup, not a file */
		rc = rc ? rc : give(dir, &o->snapshot, true, false, err, len);
	rc = rc ? rc : give(dir, &o->key_file, true, false, err, len);
	rc = rc ? rc : give(dir, &o->trust, true, false, err, len);
	rc = rc ? rc : give(dir, &o->boot_sig, true, false, err, len);
	rc = rc ? rc : give(dir, &o->tls_dir, true, false, err, len);
	rc = rc ? rc : give(dir, &o->api_path, false, true, err, len);
	rc = rc ? rc : give(dir, &o->exit_file, false, true, err, len);
	if (!rc && (o->console.kind == CONSOLE_FILE || o->console.kind == CONSOLE_SOCKET))
		rc = give(dir, &o->console.path, false, true, err, len);
	for (unsigned i = 0; !rc && i < o->nr_disks; i++)
		rc = give(dir, &o->disks[i].path, o->disks[i].ro, false, err, len);
	rc = rc ? rc : give(dir, &o->store, true, false, err, len);
	/* A backup store is written to: bound read-write at its own path. */
	for (unsigned i = 0; !rc && i < o->nr_backup_stores; i++)
		rc = give(dir, &o->backup_stores[i], false, false, err, len);
	return rc;
}

/* A node for host device path in the jail's /dev, owned by the VMM's user. */
static int make_dev(const char *root, const char *path, const struct run_opts *o, char *err,
		    size_t len)
{
	char dst[PATH_MAX + 8];
	struct stat st;

	if (stat(path, &st) || !S_ISCHR(st.st_mode))
		return snprintf(err, len, "%s: %s", path, errno ? strerror(errno) : "no device"),
		       -ENODEV;
	snprintf(dst, sizeof(dst), "%s%s", root, path);
	if (make_parents(dst) || mknod(dst, S_IFCHR | 0600, st.st_rdev) ||
	    (o->jail_uid >= 0 && chown(dst, (uid_t)o->jail_uid, (gid_t)o->jail_gid)))
		return snprintf(err, len, "%s in the jail: %s", path, strerror(errno)), -errno;
	return 0;
}

/* The jail's /dev: a small tmpfs of its own (the root's has no devices) with only the
 * devices the VMM uses. */
static int make_devs(const char *root, const struct run_opts *o, char *err, size_t len)
{
	char dev[PATH_MAX + 8];
	int rc;

	snprintf(dev, sizeof(dev), "%s/dev", root);
	if ((mkdir(dev, 0755) && errno != EEXIST) ||
	    mount("cme-dev", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755"))
		return snprintf(err, len, "a /dev for the jail: %s", strerror(errno)), -errno;
	rc = make_dev(root, "/dev/kvm", o, err, len);
	if (!rc && o->nr_nets)
		rc = make_dev(root, "/dev/net/tun", o, err, len);
	if (!rc && o->confidential) /* the PSP, for the SEV launch */
		rc = make_dev(root, "/dev/sev", o, err, len);
	if (!rc && !access("/dev/userfaultfd", F_OK))
		rc = make_dev(root, "/dev/userfaultfd", o, err, len);
	return rc;
}

/* /vm, the devices, the VMM's own /proc entry (as /proc/self), its cgroup's folders
 * (read-only: status reads its limits and counters; no other group is there). */
static int give_host(const char *root, int dirfd, const struct run_opts *o, const struct cgroup *cg,
		     char *err, size_t len)
{
	const char *groups[4];
	unsigned ng = cg_dirs(cg, groups, 4);
	char src[64], dst[PATH_MAX + 16];
	int rc;

	snprintf(src, sizeof(src), "/proc/self/fd/%d", dirfd);
	snprintf(dst, sizeof(dst), "%s%s", root, VMDIR);
	if ((rc = bind_at(src, dst, true, false, false)))
		return snprintf(err, len, "binding the VM's folder as %s: %s", VMDIR,
				strerror(-rc)),
		       rc;
	rc = make_devs(root, o, err, len);
	for (unsigned i = 0; !rc && i < ng; i++)
		rc = bind_in(root, groups[i], true, err, len);
	if (!rc)
		rc = bind_in(root, "/proc/meminfo", true, err, len);
	if (rc)
		return rc;
	/* The host's /proc names this process by its host PID (getpid() says 1 as the PID 1
	 * of a namespace of its own). */
	snprintf(src, sizeof(src), "/proc/%d", (int)proc_host_pid());
	snprintf(dst, sizeof(dst), "%s/proc/self", root);
	if ((rc = bind_at(src, dst, true, false, false)))
		return snprintf(err, len, "binding %s as /proc/self: %s", src, strerror(-rc)), rc;
	return 0;
}

static int pivot(const char *root, char *err, size_t len)
{
	char old[PATH_MAX + 8];

	snprintf(old, sizeof(old), "%s%s", root, OLDROOT);
	if (mkdir(old, 0700) && errno != EEXIST)
		return snprintf(err, len, "%s: %s", old, strerror(errno)), -errno;
	if (syscall(SYS_pivot_root, root, old))
		return snprintf(err, len, "pivot_root to %s: %s", root, strerror(errno)), -errno;
	if (chdir("/") || umount2(OLDROOT, MNT_DETACH) || rmdir(OLDROOT))
		return snprintf(err, len, "leaving the old root: %s", strerror(errno)), -errno;
	/* The skeleton is made: the root stays as it is (the VMM writes only in /vm). */
	if (mount(NULL, "/", NULL,
		  MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
		log_debug(SUB, "cannot make the jail's root read-only: %s", strerror(errno));
	return 0;
}

/* The tmpfs root, mounted over DIR in this namespace (DIR itself stays reachable through
 * dirfd, and becomes /vm). */
static int make_root(const char *root, char *err, size_t len)
{
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		return snprintf(err, len, "private mounts: %s", strerror(errno)), -errno;
	if (mount("cme-jail", root, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=1m,mode=0755"))
		return snprintf(err, len, "a root for the jail: %s", strerror(errno)), -errno;
	return 0;
}

int jail_enter_root(struct run_opts *o, const struct cgroup *cg, char *err, size_t len)
{
	char dir[PATH_MAX];
	struct stat st;
	int dirfd, rc;

	if (!realpath(o->jail_root, dir) || stat(dir, &st) || !S_ISDIR(st.st_mode))
		return snprintf(err, len, "--jail-root %s: %s", o->jail_root,
				errno ? strerror(errno) : "not a folder"),
		       -ENOTDIR;
	if (!strcmp(dir, "/"))
		return snprintf(err, len, "--jail-root /: the jail must be a folder of its own"),
		       -EINVAL;
	if (unshare(CLONE_NEWNS))
		return snprintf(err, len, "a mount namespace of its own: %s", strerror(errno)),
		       -errno;
	dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC); /* in the new namespace */
	if (dirfd < 0)
		return snprintf(err, len, "--jail-root %s: %s", dir, strerror(errno)), -errno;
	/* Paths resolve before the tmpfs hides DIR's contents. */
	rc = give_all(dir, o, err, len);
	rc = rc ? rc : make_root(dir, err, len);
	rc = rc ? rc : give_host(dir, dirfd, o, cg, err, len); /* /dev first: a disk may be in it */
	rc = rc ? rc : do_binds(dir, err, len);
	rc = rc ? rc : pivot(dir, err, len);
	close(dirfd);
	if (!rc)
		snprintf(jail_dir, sizeof(jail_dir), "%s", dir);
	return rc;
}

/* The relay outside the VMM's PID namespace (jail_enter_pidns). Never returns. */
static void relay(const struct run_opts *o, pid_t vmm, const sigset_t *set)
{
	struct rlimit none = { 0, 0 };
	char made[PATH_MAX + 32];
	int sig, st = 0;
	pid_t r = 0;

	prctl(PR_SET_NAME, "cme-vmm-relay");
	while (r != vmm) {
		if (sigwait(set, &sig))
			continue;
		if (sig != SIGCHLD)
			kill(vmm, sig);
		else if ((r = waitpid(vmm, &st, WNOHANG)) < 0)
			break; /* ECHILD: reaped already; how it ended is not known */
	}
	if (o->cgroup.path[0]) {
		snprintf(made, sizeof(made), "%s/%s", o->jail_root, CG_MADE_FILE);
		cg_remove_made(made, o->cgroup.path);
	}
	if (r == vmm && WIFSIGNALED(st)) { /* end the same way: our starter sees the same */
		sigset_t all;

		setrlimit(RLIMIT_CORE, &none); /* the VMM's end, not ours: no core of the relay */
		signal(WTERMSIG(st), SIG_DFL);
		sigfillset(&all);
		sigprocmask(SIG_UNBLOCK, &all, NULL);
		raise(WTERMSIG(st));
	}
	_exit(r == vmm && WIFEXITED(st) ? WEXITSTATUS(st) : VMM_EXIT_INTERNAL);
}

/* Set when the VMM runs behind a relay: its death signal is armed again after a change of
 * user, which clears it. */
static bool behind_relay;

/* SIGKILL when the relay ends (kill -9 of the process the operator started). Then, if the
 * relay ended before that (a race with the clone), end now: nobody would be left to. */
static void arm_relay_death(int relay_fd)
{
	struct pollfd p = { .fd = relay_fd, .events = POLLIN };

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (relay_fd >= 0 && poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR)))
		_exit(VMM_EXIT_SETUP);
}

void jail_enter_pidns(const struct run_opts *o)
{
	sigset_t set, old;
	int alive[2] = { -1, -1 }, err;
	pid_t vmm;

	if (getpid() == 1)
		return; /* its starter made it one */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGCHLD);
	signal(SIGCHLD, SIG_DFL); /* an ignored SIGCHLD would reap the VMM behind our back */
	fflush(NULL);
	if (pipe2(alive, O_CLOEXEC)) /* its write end lives as long as the relay */
		alive[0] = alive[1] = -1;
	sigprocmask(SIG_BLOCK, &set, &old); /* none lost between the clone and the relay */
	vmm = proc_clone_pidns();
	err = errno;
	if (vmm > 0) {
		close(alive[0]);
		relay(o, vmm, &set);
	}
	sigprocmask(SIG_SETMASK, &old, NULL); /* the stop signals stay blocked (run_main) */
	close(alive[1]);
	if (vmm < 0) {
		close(alive[0]);
		log_warn(SUB, "vm=%s: no PID namespace of its own here (%s): it sees the host's",
			 o->name, strerror(err));
		return;
	}
	behind_relay = true;
	arm_relay_death(alive[0]);
	close(alive[0]);
}

/* A file in /vm the VMM writes again (console, exit file) that an earlier VMM made as
 * root: its user's now — a regular file with one link only, never through a link. */
static void hand_over(const char *path, const struct run_opts *o)
{
	char older[PATH_MAX + 4];
	const char *p[2] = { path, older };
	struct stat st;

	if (!path || strncmp(path, VMDIR "/", sizeof(VMDIR)))
		return;
	snprintf(older, sizeof(older), "%s.1", path);
	for (int i = 0; i < 2; i++) {
		if (lstat(p[i], &st) || !S_ISREG(st.st_mode) || st.st_nlink != 1)
			continue;
		if (fchownat(AT_FDCWD, p[i], (uid_t)o->jail_uid, (gid_t)o->jail_gid,
			     AT_SYMLINK_NOFOLLOW))
			log_warn(SUB, "vm=%s cannot give %s to uid %ld: %s", o->name, p[i],
				 o->jail_uid, strerror(errno));
	}
}

/* A writable disk: its user's, as libvirt hands a guest's images to its qemu user. */
static int give_disk(const char *path, uid_t uid, gid_t gid, char *err, size_t len)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	int rc = fd < 0 || fstat(fd, &st) ? -errno : 0;

	if (!rc && !S_ISBLK(st.st_mode) && (!S_ISREG(st.st_mode) || st.st_nlink != 1))
		rc = -EPERM;
	if (!rc && fchown(fd, uid, gid))
		rc = -errno;
	if (fd >= 0)
		close(fd);
	if (rc)
		snprintf(err, len, "giving disk %s to uid %u: %s", path, uid,
			 rc == -EPERM ? "not a block device or a plain file with one link"
				      : strerror(-rc));
	return rc;
}

int jail_drop_user(const struct run_opts *o, char *err, size_t len)
{
	uid_t uid = (uid_t)o->jail_uid;
	gid_t gid = (gid_t)o->jail_gid;
	int fd;

	/* What only root may open, opened now: userfaultfd's device, the TLS key, its page
	 * map (its /proc entry is root's once it is another user). */
	fd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (fd >= 0)
		uffd_use_device(fd);
	if (proc_pagemap_fd() < 0)
		log_warn(SUB, "vm=%s no page map: %s", o->name, strerror(errno));
	if (o->tls_dir && net_tls_ctx_preload(o->tls_dir, err, len))
		return -EACCES;
	if (o->key_file && vmm_key_preload(o->key_file, err, len))
		return -EACCES;
	if (chown(VMDIR, uid, gid))
		return snprintf(err, len, "giving %s to uid %u: %s", VMDIR, uid, strerror(errno)),
		       -errno;
	if (o->console.kind == CONSOLE_FILE)
		hand_over(o->console.path, o);
	hand_over(o->exit_file, o);
	for (unsigned i = 0; i < o->nr_disks; i++)
		if (!o->disks[i].ro && give_disk(o->disks[i].path, uid, gid, err, len))
			return -EPERM;
	if (setgroups(0, NULL) || setresgid(gid, gid, gid) || setresuid(uid, uid, uid))
		return snprintf(err, len, "becoming uid %u gid %u: %s", uid, gid, strerror(errno)),
		       -errno;
	if (setresuid(0, 0, 0) == 0) /* no way back */
		return snprintf(err, len, "uid %u could become root again", uid), -EPERM;
	if (behind_relay) /* the change of user cleared it */
		arm_relay_death(-1);
	return 0;
}
