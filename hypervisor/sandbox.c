/* The VMM's seccomp sandbox (`--jail`): once armed, each thread loads the allow-list of
 * its kind (libseccomp) and from then on may make only those system calls; with
 * no_new_privs, for good. Anything else traps into one handler that names the call and
 * the thread in the log and the exit file, then ends the VMM with VMM_EXIT_SANDBOX: a
 * forbidden call costs this VM, never the host.
 *
 * The lists stack the way Linux stacks filters: a thread started by a filtered thread keeps
 * its parent's filter under its own. The control thread starts migrations (and, on a
 * destination, the VM and its vCPUs), so its list holds everything below it; vCPU and
 * device threads, the ones that handle what the guest writes, are the narrow ones. */
#include "hypervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SANDBOX_MAX_FILES 4096
#define SUB		  "sandbox"
#define SYSCALL_MAX	  512 /* above every x86-64 system call number */

static struct {
	bool armed;
	int exit_fd, exit_status;
	char name[64];
	char *names[SYSCALL_MAX]; /* resolved while armed: the handler may not allocate */
} sb = { .exit_fd = -1 };

static __thread int sb_kind = -1;

static const char *const kind_names[SANDBOX_KINDS] = { "control", "vcpu", "device", "console",
						       "migration" };

/* What every thread needs: memory, locks, time, its own exit, logging, signals. */
static const int base_calls[] = {
	SCMP_SYS(read),
	SCMP_SYS(write),
	SCMP_SYS(readv),
	SCMP_SYS(writev),
	SCMP_SYS(pread64),
	SCMP_SYS(pwrite64),
	SCMP_SYS(close),
	SCMP_SYS(futex),
	SCMP_SYS(mmap),
	SCMP_SYS(munmap),
	SCMP_SYS(mprotect),
	SCMP_SYS(madvise),
	SCMP_SYS(mremap),
	SCMP_SYS(brk),
	SCMP_SYS(exit),
	SCMP_SYS(exit_group),
	SCMP_SYS(rt_sigreturn),
	SCMP_SYS(rt_sigprocmask),
	SCMP_SYS(rt_sigaction),
	SCMP_SYS(sigaltstack),
	SCMP_SYS(clock_gettime),
	SCMP_SYS(clock_getres),
	SCMP_SYS(clock_nanosleep),
	SCMP_SYS(nanosleep),
	SCMP_SYS(gettid),
	SCMP_SYS(getpid),
	SCMP_SYS(sched_yield),
	SCMP_SYS(restart_syscall),
	SCMP_SYS(getrandom),
	SCMP_SYS(poll),
	SCMP_SYS(ppoll),
	SCMP_SYS(lseek),
	SCMP_SYS(fstat),
	SCMP_SYS(newfstatat),
	SCMP_SYS(fcntl),
	SCMP_SYS(timer_settime),
	SCMP_SYS(timer_gettime),
	SCMP_SYS(timerfd_settime),
	SCMP_SYS(timerfd_gettime),
	SCMP_SYS(getrusage),
	SCMP_SYS(sched_getaffinity),
};

/* vCPU threads: KVM (below), and writes to the console's socket clients. */
static const int vcpu_calls[] = { SCMP_SYS(sendto), SCMP_SYS(sendmsg) };

/* Device threads (virtio queues, the fencing timer): eventfds, tap and disk I/O. */
static const int device_calls[] = {
	SCMP_SYS(preadv),      SCMP_SYS(pwritev),   SCMP_SYS(preadv2),	 SCMP_SYS(pwritev2),
	SCMP_SYS(fsync),       SCMP_SYS(fdatasync), SCMP_SYS(fallocate), SCMP_SYS(epoll_wait),
	SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_ctl),
};

/* Console threads: socket clients come and go, the file rotates. */
static const int console_calls[] = {
	SCMP_SYS(accept4),   SCMP_SYS(accept),	  SCMP_SYS(rename),   SCMP_SYS(renameat),
	SCMP_SYS(renameat2), SCMP_SYS(unlink),	  SCMP_SYS(unlinkat), SCMP_SYS(fsync),
	SCMP_SYS(fdatasync), SCMP_SYS(ftruncate), SCMP_SYS(sendto),   SCMP_SYS(recvfrom),
	SCMP_SYS(shutdown),  SCMP_SYS(statx),
};

/* Migration threads that move pages (source channels, destination receivers, page
 * placement, post-copy's fault and urgent loops, digest workers): the sockets they were
 * given, guest memory, KVM's and userfaultfd's ioctls (below) — no socket, file or
 * thread of their own. */
static const int migration_calls[] = {
	SCMP_SYS(sendto),     SCMP_SYS(recvfrom),    SCMP_SYS(sendmsg),	 SCMP_SYS(recvmsg),
	SCMP_SYS(setsockopt), SCMP_SYS(getsockopt),  SCMP_SYS(shutdown), SCMP_SYS(mincore),
	SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait),
};

/* The control thread and what it starts (migrations both ways, snapshots, the arriving
 * VM on a destination): sockets, files, threads, KVM and userfaultfd setup. Never exec,
 * fork, ptrace, mount, namespaces, module or key calls, bpf or perf. */
static const int control_calls[] = {
	SCMP_SYS(socket),
	SCMP_SYS(connect),
	SCMP_SYS(bind),
	SCMP_SYS(listen),
	SCMP_SYS(accept4),
	SCMP_SYS(accept),
	SCMP_SYS(setsockopt),
	SCMP_SYS(getsockopt),
	SCMP_SYS(getsockname),
	SCMP_SYS(getpeername),
	SCMP_SYS(sendto),
	SCMP_SYS(recvfrom),
	SCMP_SYS(sendmsg),
	SCMP_SYS(recvmsg),
	SCMP_SYS(sendmmsg),
	SCMP_SYS(recvmmsg),
	SCMP_SYS(shutdown),
	SCMP_SYS(rename),
	SCMP_SYS(renameat),
	SCMP_SYS(renameat2),
	SCMP_SYS(unlink),
	SCMP_SYS(unlinkat),
	SCMP_SYS(mkdir),
	SCMP_SYS(rmdir),
	/* Backups into a store (backup/): its folders, chunks and manifests. */
	SCMP_SYS(mkdirat),
	SCMP_SYS(linkat),
	SCMP_SYS(utimensat),
	SCMP_SYS(syncfs),
	SCMP_SYS(mincore),
	SCMP_SYS(fsync),
	SCMP_SYS(fdatasync),
	SCMP_SYS(ftruncate),
	SCMP_SYS(fallocate),
	SCMP_SYS(statx),
	SCMP_SYS(readlink),
	SCMP_SYS(access),
	SCMP_SYS(faccessat2),
	SCMP_SYS(getdents64),
	SCMP_SYS(preadv),
	SCMP_SYS(pwritev),
	SCMP_SYS(preadv2),
	SCMP_SYS(pwritev2),
	SCMP_SYS(epoll_create1),
	SCMP_SYS(epoll_wait),
	SCMP_SYS(epoll_pwait),
	SCMP_SYS(epoll_ctl),
	SCMP_SYS(eventfd2),
	SCMP_SYS(timerfd_create),
	SCMP_SYS(timer_create),
	SCMP_SYS(timer_delete),
	SCMP_SYS(signalfd4),
	SCMP_SYS(pipe2),
	SCMP_SYS(dup),
	SCMP_SYS(dup3),
	SCMP_SYS(userfaultfd),
	SCMP_SYS(memfd_create),
	SCMP_SYS(mlock),
	SCMP_SYS(munlock),
	SCMP_SYS(set_robust_list),
	SCMP_SYS(rseq),
	SCMP_SYS(sched_setaffinity),
	SCMP_SYS(getuid),
	SCMP_SYS(geteuid),
	SCMP_SYS(getgid),
	SCMP_SYS(getegid),
	SCMP_SYS(sysinfo),
	SCMP_SYS(uname), /* glibc's resolver may ask for the host name */
	/* Threads it starts load their own, narrower lists: a filter can only take away. */
	SCMP_SYS(seccomp),
	/* Storage fencing: a disk image's lock and owner epoch (virtio_blk.c). */
	SCMP_SYS(flock),
	SCMP_SYS(fgetxattr),
	SCMP_SYS(fsetxattr),
};

/* ---- the violation handler: async-signal-safe only -------------------------------------- */

static size_t put_str(char *buf, size_t at, size_t cap, const char *s)
{
	while (*s && at + 1 < cap)
		buf[at++] = *s++;
	return at;
}

static size_t put_num(char *buf, size_t at, size_t cap, long v)
{
	char tmp[24];
	int i = sizeof(tmp);
	unsigned long u = v < 0 ? (unsigned long)-v : (unsigned long)v;

	tmp[--i] = 0;
	do
		tmp[--i] = (char)('0' + u % 10);
	while ((u /= 10) && i > 1);
	if (v < 0)
		tmp[--i] = '-';
	return put_str(buf, at, cap, tmp + i);
}

static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	int nr = si->si_syscall;
	const char *call = nr >= 0 && nr < SYSCALL_MAX && sb.names[nr] ? sb.names[nr] : "?";
	/* A thread that has not loaded a list of its own runs under its parent's: the
	 * control thread's (migration threads, and threads just started). */
	const char *kind = sb_kind >= 0 ? kind_names[sb_kind] : "control";
	char line[384];
	size_t n = 0;

	(void)sig;
	(void)uc;
	n = put_str(line, n, sizeof(line), "cme-vmm: [sandbox] error: vm=");
	n = put_str(line, n, sizeof(line), sb.name);
	n = put_str(line, n, sizeof(line), " forbidden system call ");
	n = put_str(line, n, sizeof(line), call);
	n = put_str(line, n, sizeof(line), " (");
	n = put_num(line, n, sizeof(line), nr);
	n = put_str(line, n, sizeof(line), ") in a ");
	n = put_str(line, n, sizeof(line), kind);
	n = put_str(line, n, sizeof(line), " thread: the VMM ends (status ");
	n = put_num(line, n, sizeof(line), sb.exit_status);
	n = put_str(line, n, sizeof(line), ")\n");
	if (write(2, line, n) < 0)
		n = 0;
	if (sb.exit_fd >= 0) {
		n = put_str(line, 0, sizeof(line), "{\"status\":");
		n = put_num(line, n, sizeof(line), sb.exit_status);
		n = put_str(line, n, sizeof(line), ",\"syscall\":\"");
		n = put_str(line, n, sizeof(line), call);
		n = put_str(line, n, sizeof(line), "\",\"thread\":\"");
		n = put_str(line, n, sizeof(line), kind);
		n = put_str(line, n, sizeof(line), "\"}\n");
		if (pwrite(sb.exit_fd, line, n, 0) < 0)
			n = 0;
	}
	_exit(sb.exit_status);
}

/* ---- arming and loading --------------------------------------------------------------- */

/* The rest of the jail that costs nothing to what the VMM does: no core dumps (they would
 * hold its keys), and a System V IPC namespace of its own (it uses none: nothing to share
 * with another process). Without the right to make one, it goes on without, logged. */
static int confine(char *err, size_t errlen)
{
	const struct rlimit none = { 0, 0 }, files = { SANDBOX_MAX_FILES, SANDBOX_MAX_FILES };
	struct rlimit now;

	if (setrlimit(RLIMIT_CORE, &none) < 0) {
		snprintf(err, errlen, "cannot turn core dumps off: %s", strerror(errno));
		return -errno;
	}
	/* Descriptors: a VMM needs a few hundred at most (vCPUs, queues' eventfds, disks,
	 * channels, clients); no POSIX message queues (it has none). Never raised. */
	if (getrlimit(RLIMIT_NOFILE, &now) == 0 && now.rlim_max > SANDBOX_MAX_FILES &&
	    setrlimit(RLIMIT_NOFILE, &files) < 0) {
		snprintf(err, errlen, "cannot limit open files: %s", strerror(errno));
		return -errno;
	}
	if (setrlimit(RLIMIT_MSGQUEUE, &none) < 0)
		log_warn(SUB, "vm=%s cannot forbid message queues: %s", sb.name, strerror(errno));
	if (unshare(CLONE_NEWIPC) < 0)
		log_warn(SUB, "vm=%s no IPC namespace of its own: %s", sb.name, strerror(errno));
	return 0;
}

int sandbox_arm(const struct sandbox_cfg *cfg, char *err, size_t errlen)
{
	struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO };
	int rc;

	snprintf(sb.name, sizeof(sb.name), "%s", cfg->name ? cfg->name : "");
	sb.exit_fd = cfg->exit_fd;
	sb.exit_status = cfg->exit_status;
	for (int nr = 0; nr < SYSCALL_MAX; nr++)
		if (!sb.names[nr])
			sb.names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
	rc = confine(err, errlen);
	if (rc)
		return rc;
#ifdef __SANITIZE_ADDRESS__
	/* The sanitizers' runtime stops the world with a ptraced clone and reads /proc from
	 * any thread: no list here fits it. `make check-all` runs such builds. */
	log_warn(SUB,
		 "vm=%s sanitizer build: no seccomp filters (the sanitizer's runtime "
		 "needs ptrace and processes)",
		 sb.name);
	return 0;
#endif
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		snprintf(err, errlen, "cannot set up the sandbox: %s", strerror(errno));
		return -errno;
	}
	sb.armed = true;
	return 0;
}

bool sandbox_armed(void)
{
	return sb.armed;
}

static int allow_all(scmp_filter_ctx f, const int *calls, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, calls[i], 0);

		if (rc < 0 && rc != -EDOM) /* -EDOM: not a call on this architecture */
			return rc;
	}
	return 0;
}

/* ioctl by its request's type byte: KVM's (KVMIO), and for migration threads
 * userfaultfd's (UFFDIO); the control thread any. */
static int allow_ioctl(scmp_filter_ctx f, enum sandbox_kind kind)
{
	int rc;

	if (kind == SANDBOX_CONTROL)
		return seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 0);
	rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
			      SCMP_A1(SCMP_CMP_MASKED_EQ, 0xff00, KVMIO << 8));
	if (!rc && kind == SANDBOX_MIGRATION)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				      SCMP_A1(SCMP_CMP_MASKED_EQ, 0xff00, UFFDIO << 8));
	return rc;
}

/* Threads, never processes: clone only with CLONE_THREAD; clone3 (whose flags a filter
 * cannot see) answers ENOSYS, and the C library falls back to clone. */
static int allow_threads(scmp_filter_ctx f)
{
	int rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				  SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));

	return rc ? rc : seccomp_rule_add(f, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
}

/* Files, but never a set-user-ID or set-group-ID one: no open that creates one, no chmod
 * that makes one, no chown to another user (the control socket changes only its group). */
static int allow_files(scmp_filter_ctx f)
{
	const scmp_datum_t ids = S_ISUID | S_ISGID;
	int rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(openat), 1,
				  SCMP_A3_32(SCMP_CMP_MASKED_EQ, ids, 0));

	if (!rc)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(chmod), 1,
				      SCMP_A1_32(SCMP_CMP_MASKED_EQ, ids, 0));
	if (!rc)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(fchmod), 1,
				      SCMP_A1_32(SCMP_CMP_MASKED_EQ, ids, 0));
	if (!rc)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(chown), 1,
				      SCMP_A1_32(SCMP_CMP_EQ, (uint32_t)-1, 0));
	if (!rc)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(fchown), 1,
				      SCMP_A1_32(SCMP_CMP_EQ, (uint32_t)-1, 0));
	return rc;
}

static int build(scmp_filter_ctx f, enum sandbox_kind kind)
{
	int rc = allow_all(f, base_calls, ARRAY_SIZE(base_calls));

	/* Signals only to this process's own threads (the vCPU kick); of prctl only
	 * naming a thread. */
	if (!rc)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
				      SCMP_A0_32(SCMP_CMP_EQ, PR_SET_NAME, 0));
	if (!rc)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
				      SCMP_A0_32(SCMP_CMP_EQ, (scmp_datum_t)getpid(), 0));
	/* Limits may be read, never raised again (getrlimit is prlimit64 with no new one). */
	if (!rc)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 1,
				      SCMP_A2(SCMP_CMP_EQ, 0, 0));
	if (!rc)
		rc = allow_ioctl(f, kind);
	/* The narrow kinds open no file; one call they meet anyway is glibc's malloc looking
	 * at /proc/sys/vm/overcommit_memory the first time a thread's heap shrinks — it
	 * copes with a refusal, so refuse rather than end the VMM. */
	if (!rc && kind != SANDBOX_CONTROL && kind != SANDBOX_CONSOLE)
		rc = seccomp_rule_add(f, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(openat), 0);
	if (!rc && (kind == SANDBOX_CONTROL || kind == SANDBOX_CONSOLE))
		rc = allow_files(f);
	/* No thread of their own either: refused, not trapped — the C library blocks every
	 * signal around clone, so a trap there would end the VMM without a word. */
	if (!rc && kind != SANDBOX_CONTROL)
		rc = seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 0);
	if (!rc && kind != SANDBOX_CONTROL)
		rc = seccomp_rule_add(f, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	if (rc)
		return rc;
	switch (kind) {
	case SANDBOX_CONTROL:
		rc = allow_all(f, control_calls, ARRAY_SIZE(control_calls));
		rc = rc ? rc : allow_all(f, vcpu_calls, ARRAY_SIZE(vcpu_calls));
		rc = rc ? rc : allow_all(f, device_calls, ARRAY_SIZE(device_calls));
		rc = rc ? rc : allow_all(f, console_calls, ARRAY_SIZE(console_calls));
		rc = rc ? rc : allow_all(f, migration_calls, ARRAY_SIZE(migration_calls));
		return rc ? rc : allow_threads(f);
	case SANDBOX_VCPU: return allow_all(f, vcpu_calls, ARRAY_SIZE(vcpu_calls));
	case SANDBOX_DEVICE: return allow_all(f, device_calls, ARRAY_SIZE(device_calls));
	case SANDBOX_CONSOLE: return allow_all(f, console_calls, ARRAY_SIZE(console_calls));
	case SANDBOX_MIGRATION: return allow_all(f, migration_calls, ARRAY_SIZE(migration_calls));
	default: return 0;
	}
}

void sandbox_enter(enum sandbox_kind kind)
{
	scmp_filter_ctx f;
	int rc = -ENOMEM;

	if (!sb.armed || sb_kind == (int)kind) /* this list holds already */
		return;
	f = seccomp_init(SCMP_ACT_TRAP);
	/* no_new_privs is set since sandbox_arm: no prctl for it (the parent's list may not
	 * have it). */
	if (f)
		rc = seccomp_attr_set(f, SCMP_FLTATR_CTL_NNP, 0);
	if (!rc)
		rc = build(f, kind);
	if (!rc)
		rc = seccomp_load(f);
	seccomp_release(f);
	if (rc) {
		/* Asked to run sandboxed, it must not run at all otherwise. */
		log_err(SUB, "vm=%s cannot load the %s thread's filter: %s", sb.name,
			kind_names[kind], strerror(-rc));
		_exit(sb.exit_status);
	}
	sb_kind = (int)kind;
}

long sandbox_probe(void)
{
	return syscall(SYS_getppid); /* harmless, and on no list */
}
