/* cme-vmm: one VM per process on Linux KVM.
 *   cme-vmm run --mem SIZE --vcpus N --image FILE [--cmdline S] [--console C] [--api P]
 *   cme-vmm restore FILE [--console C] [--api P] [--paused]
 *   cme-vmm ctl --api PATH CMD [JSON-ARGS]
 *   cme-vmm cpu-features */
#include "migrate.h"
#include "backup.h"
#include "vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define SUB "vmm"

#define CPU_TEMPLATE_LIST "host|x86-64-v1|x86-64-v2|x86-64-v3|x86-64-v4"
#define CPU_LIST_MAX	  4096

static void usage(FILE *f)
{
	fprintf(f,
		"usage:\n"
		"  cme-vmm run (--image FILE | --kernel FILE [--initrd FILE]) [--mem SIZE]\n"
		"              [--vcpus N] [--cmdline STR]\n"
		"              [--console stdout|none|file:PATH|socket:PATH] [--console-max SIZE]\n"
		"              [--api PATH]\n"
		"              [--name NAME] [--fence-deadline NS] [--exit-file PATH]\n"
		"              [--cpu-template " CPU_TEMPLATE_LIST "] [--confidential] [--jail]\n"
		"              [--trust KEYS-FILE --boot-sig SIG-FILE]\n"
		"  cme-vmm restore (FILE [--key KEYFILE] | --store DIR --key KEYFILE VM[/ID] "
		"[--eager])\n"
		"              [--console ...] [--api PATH] [--name NAME]\n"
		"              [--paused] [--fence-deadline NS] [--measurement HEX] [--jail]\n"
		"  cme-vmm incoming --listen HOST:PORT --tls-dir DIR [--wait SECONDS]\n"
		"              [--commit direct|external] [--console ...] [--api PATH]\n"
		"              [--name NAME] [--fence-deadline NS] [--cpu-template NAME]\n"
		"              [--peer-name SOURCE] [--measurement HEX] [--jail]\n"
		"  cme-vmm migrate --api PATH --to HOST:PORT --tls-dir DIR [--downtime-ms N]\n"
		"              [--postcopy | --postcopy-after ROUNDS]\n"
		"              [--max-bandwidth RATE] [--channels N] [--timeout SECONDS]\n"
		"              [--peer-name NAME] [--max-rounds N] [--no-auto-converge]\n"
		"              [--commit direct|external]\n"
		"  cme-vmm backup --api PATH --store DIR --key KEYFILE [--name NAME] [--pause-ms "
		"N]\n"
		"  cme-vmm ctl --api PATH CMD [JSON-ARGS]\n"
		"  cme-vmm cpu-features\n"
		"  cme-vmm keygen FILE\n"
		"  cme-vmm verify-snapshot FILE [--key KEYFILE]\n"
		"  cme-vmm measure (--image FILE | --kernel FILE [--initrd FILE]) [--cmdline STR]\n"
		"  cme-vmm signkey SECRET-FILE PUBLIC-FILE\n"
		"  cme-vmm sign --key SECRET-FILE (--image FILE | --kernel FILE [--initrd FILE])\n"
		"              [--cmdline STR] --out SIG-FILE\n"
		"  cme-vmm help\n");
}

/* The guest's own exit code keeps out of the VMM's statuses: 0 and 3-63 are passed on;
 * any other (1, 2 or from 64 up, where the VMM's own statuses are — a guest writing 73
 * must not ask its supervisor for a restart) becomes 64, the code itself in the log. */
static int guest_status(int code)
{
	if (code == 0 || (code >= 3 && code < VMM_EXIT_GUEST_OTHER))
		return code;
	log_info(SUB, "the guest's exit code %d is outside 3-63: exit status %d", code,
		 VMM_EXIT_GUEST_OTHER);
	return VMM_EXIT_GUEST_OTHER;
}

static int end_status(const struct vm_end *end)
{
	switch (end->reason) {
	case VM_END_GUEST_EXIT: return guest_status(end->code);
	case VM_END_TRIPLE_FAULT: return VMM_EXIT_TRIPLE;
	case VM_END_INTERNAL: return VMM_EXIT_INTERNAL;
	case VM_END_HOST_ERROR: return VMM_EXIT_HOST;
	case VM_END_REBOOT: return VMM_EXIT_REBOOT;
	default: return VMM_EXIT_OK;
	}
}

/* SIGINT/SIGTERM arrive through a signalfd so the API loop can stop the VM cleanly. */
static void stop_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
}

/* Blocked from the start, read through a signalfd once the VM runs: as its PID namespace's
 * PID 1 the VMM would otherwise drop these signals (it has no handler) until then. */
static int block_stop_signals(void)
{
	sigset_t set;

	stop_signals(&set);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	return signalfd(-1, &set, SFD_CLOEXEC);
}

static int check_host(const struct run_opts *o)
{
	uint64_t host = host_mem_bytes();

	if (host && o->mem_bytes > host) {
		log_err(SUB, "--mem %llu MiB exceeds this host's memory (%llu MiB)",
			(unsigned long long)(o->mem_bytes >> 20), (unsigned long long)(host >> 20));
		return -ENOMEM;
	}
	if (o->image && access(o->image, R_OK) < 0) {
		log_err(SUB, "--image %s: %s", o->image, strerror(errno));
		return -errno;
	}
	if (o->kernel && access(o->kernel, R_OK) < 0) {
		log_err(SUB, "--kernel %s: %s", o->kernel, strerror(errno));
		return -errno;
	}
	if (o->initrd && access(o->initrd, R_OK) < 0) {
		log_err(SUB, "--initrd %s: %s", o->initrd, strerror(errno));
		return -errno;
	}
	return 0;
}

static void log_run_start(struct vm *vm, const struct run_opts *o)
{
	struct vm_info info;

	vm_get_info(vm, &info);
	log_info(SUB, "vm=%s %s: %u vCPUs, %llu MiB, TSC %llu kHz%s%s", o->name,
		 vm_state_name(info.state), info.nr_vcpus,
		 (unsigned long long)(info.mem_bytes >> 20), (unsigned long long)info.tsc_khz,
		 o->api_path ? ", api " : "", o->api_path ? o->api_path : "");
}

static void log_arrived(const struct run_opts *o, const struct mig_stats *st)
{
	log_info(SUB,
		 "vm=%s arrived: %llu pages, %llu MiB in %llu ms; digest %llu ms, state %llu "
		 "ms, resume %llu ms",
		 o->name, (unsigned long long)st->pages, (unsigned long long)(st->bytes >> 20),
		 (unsigned long long)st->total_ms, (unsigned long long)st->digest_ms,
		 (unsigned long long)st->state_ms, (unsigned long long)st->resume_ms);
}

/* --pin-vcpus: every CPU must be one this process may run on. */
static int pin_check(const struct run_opts *o)
{
	cpu_set_t allowed;

	if (!o->nr_pin)
		return 0;
	if (sched_getaffinity(0, sizeof(allowed), &allowed) < 0)
		CPU_ZERO(&allowed);
	for (unsigned i = 0; i < o->nr_pin; i++) {
		if (!CPU_ISSET(o->pin[i], &allowed)) {
			log_err(SUB,
				"--pin-vcpus: CPU %d is not one this host lets the VMM use "
				"(%d online)",
				o->pin[i], (int)sysconf(_SC_NPROCESSORS_ONLN));
			return -EINVAL;
		}
	}
	return 0;
}

/* The VM the options describe (restore and incoming take memory and vCPUs from the
 * snapshot or the source). */
static void opts_vm_config(const struct run_opts *o, struct vm_config *cfg)
{
	*cfg = (struct vm_config){ .name = o->name,
				   .mem_bytes = o->mem_bytes,
				   .nr_vcpus = o->vcpus,
				   .console = o->console,
				   .nr_disks = o->nr_disks,
				   .nr_nets = o->nr_nets,
				   .hugepages = o->hugepages,
				   .ksm = o->ksm,
				   .nr_pin = o->nr_pin,
				   .epoch = o->epoch,
				   .balloon = o->balloon,
				   .cpu_template = o->cpu_template,
				   .confidential = o->confidential };
	memcpy(cfg->disks, o->disks, sizeof(cfg->disks));
	memcpy(cfg->nets, o->nets, sizeof(cfg->nets));
	memcpy(cfg->pin, o->pin, sizeof(cfg->pin));
}

/* {"status":N} in the --exit-file, so that whoever adopted this VMM without being its
 * parent (a restarted cme-clusterd) learns how it ended: a guest that powered off is not a
 * crash. */
/* Why setup failed, for the exit file (a supervisor shows it: cme-clusterd's status). */
static char exit_reason[600];

/* {"status":N} and, for a failure with one, its "error": malloc'd text (NULL: no memory). */
static char *exit_json(int status)
{
	json_t *j = json_pack("{s:i}", "status", status);
	char *txt;

	if (j && exit_reason[0] && status)
		json_object_set_new(j, "error", json_string(exit_reason));
	txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	return txt;
}

static void write_exit_file(const struct run_opts *o, int status)
{
	char *txt;

	if (!o->exit_file)
		return;
	txt = exit_json(status);
	if (!txt || write_file_atomic(o->exit_file, txt, strlen(txt)))
		log_warn(SUB, "cannot write the exit status to %s", o->exit_file);
	free(txt);
}

/* The exit file through the descriptor --jail opened (a failed jail's setup: the path may
 * already be rewritten for a root it never reached). */
static void write_exit_fd(int fd, int status)
{
	char *txt;

	if (fd < 0)
		return;
	txt = exit_json(status);
	if (!txt || ftruncate(fd, 0) < 0 || pwrite(fd, txt, strlen(txt), 0) < 0)
		log_warn(SUB, "cannot write the exit status");
	free(txt);
}

/* Post-copy broke after the guest started here: it lacks memory only the source has. Not
 * one more instruction, and no device may finish an I/O with a page it never got: the
 * process ends at once (its threads die with it; nothing is zero-filled for them). */
static void postcopy_fail(void *arg, const char *why)
{
	const struct run_opts *o = arg;

	log_err(SUB, "vm=%s %s", o->name, why);
	write_exit_file(o, VMM_EXIT_POSTCOPY);
	_exit(VMM_EXIT_POSTCOPY);
}

/* Receive a live migration, serving the control socket meanwhile; on success the guest
 * already runs here and api serves it. */
static int receive_vm(const struct run_opts *o, int sfd, struct api **api, struct mig_dest **d,
		      struct vm **vm)
{
	uint8_t want[MEASURE_BYTES];
	bool expect = o->measurement && !measure_parse(o->measurement, want);
	struct vm_config cfg;
	struct mig_incoming in = { .listen = o->listen,
				   .tls_dir = o->tls_dir,
				   .name = o->name,
				   .peer_name = o->peer_name,
				   .measurement = expect ? want : NULL,
				   .trust = o->trust,
				   .boot_sig = o->boot_sig,
				   .console = o->console,
				   .timeout_ms = o->wait_ms,
				   .commit = o->commit && !strcmp(o->commit, "external")
						     ? MIG_COMMIT_EXTERNAL
						     : MIG_COMMIT_DIRECT,
				   .fence_ns = o->fence_ns,
				   .vm = &cfg,
				   .postcopy_fail = postcopy_fail,
				   .postcopy_arg = (void *)o };
	struct mig_stats st;
	char err[512] = "";
	int rc;

	opts_vm_config(o, &cfg);
	/* A template this host cannot offer at all is refused at start, as run refuses it. */
	rc = pin_check(o) || vm_host_cpu_check(o->cpu_template)
		     ? -EINVAL
		     : api_open(o->api_path, o->api_gid, NULL, api);

	if (!rc)
		rc = mig_dest_start(&in, d, err, sizeof(err));
	if (!rc) {
		api_set_incoming(*api, *d);
		api_serve(*api, sfd);
		rc = mig_dest_take(*d, vm, &st, err, sizeof(err));
	}
	if (rc) {
		if (err[0])
			log_err(SUB, "vm=%s incoming migration failed: %s", o->name, err);
		snprintf(exit_reason, sizeof(exit_reason), "incoming migration failed: %s", err);
		return rc;
	}
	api_set_arrived(*api, *vm);
	log_arrived(o, &st);
	if (api_stop_requested(*api)) /* asked while the guest was starting */
		vm_request_stop(*vm);
	return 0;
}

/* Build the VM: boot a fresh guest, restore one from a snapshot, or receive one. */
/* Log the boot measurement; with --trust it must be signed by a trusted key, with
 * --measurement (restore, incoming) it must be that one — or no guest instruction runs. */
static int check_measurement(const struct run_opts *o, struct vm *vm)
{
	uint8_t m[MEASURE_BYTES], want[MEASURE_BYTES];
	char hex[2 * MEASURE_BYTES + 1] = "none", err[512];
	bool have = vm_get_measurement(vm, m);

	if (have)
		measure_hex(m, hex);
	log_info(SUB, "vm=%s measurement %s", o->name, hex);
	if (o->trust && boot_verify(m, o->trust, o->boot_sig, err, sizeof(err))) {
		log_err(SUB, "vm=%s %s", o->name, err);
		snprintf(exit_reason, sizeof(exit_reason), "%s", err);
		return -EACCES;
	}
	if (o->trust)
		log_info(SUB, "vm=%s boot signed by a trusted key (%s)", o->name, o->boot_sig);
	if (o->measurement && (measure_parse(o->measurement, want) || !have ||
			       sodium_memcmp(m, want, MEASURE_BYTES))) {
		log_err(SUB, "vm=%s refused: its measurement %s is not the expected %s", o->name,
			hex, o->measurement);
		return -EACCES;
	}
	return 0;
}

/* A lazy restore's memory, coming in behind the guest (freed before the VM). */
static struct backup_lazy *lazy_mem;

/* restore --store DIR VM[/ID]: the guest from a backup, its memory lazily unless --eager. */
static int restore_backup(const struct run_opts *o, const struct vm_config *cfg, const uint8_t *key,
			  struct vm **vm)
{
	struct backup_restore_stats st;
	char err[512] = "";
	int rc = backup_restore(o->store, key, o->snapshot, cfg, vm, &st,
				o->eager ? NULL : &lazy_mem, err, sizeof(err));

	if (rc) {
		log_err(SUB, "restore %s from %s: %s", o->snapshot, o->store, err);
		snprintf(exit_reason, sizeof(exit_reason), "%s", err);
		return rc;
	}
	log_info(SUB,
		 "vm=%s restored from backup %s/%s in %s (%s): %llu chunks, %llu MiB in %llu ms",
		 o->name, st.vm, st.id, o->store, o->eager ? "eager" : "lazy: memory follows",
		 (unsigned long long)st.chunks, (unsigned long long)(st.bytes >> 20),
		 (unsigned long long)st.ms);
	return 0;
}

static int restore_snapshot(const struct run_opts *o, const struct vm_config *cfg,
			    const uint8_t *key, struct vm **vm)
{
	struct vm_snapshot_stats st;
	char err[512] = "";
	int rc = vm_snapshot_restore(o->snapshot, key, cfg, vm, &st, err, sizeof(err));

	if (rc) {
		log_err(SUB, "restore %s: %s", o->snapshot, err);
		return rc;
	}
	log_info(SUB, "vm=%s restored from %s: %llu pages, %llu MiB in %llu ms", o->name,
		 o->snapshot, (unsigned long long)st.pages, (unsigned long long)(st.bytes >> 20),
		 (unsigned long long)st.ms);
	return 0;
}

static int setup_vm(const struct run_opts *o, struct vm **vm)
{
	uint8_t key[KEY_FILE_BYTES];
	struct vm_config cfg;
	char err[512] = "";
	int rc;

	opts_vm_config(o, &cfg);
	if (pin_check(o))
		return -EINVAL;
	if (!o->snapshot) {
		rc = vm_create(&cfg, vm);
		if (!rc)
			rc = o->kernel ? vm_load_linux(*vm, o->kernel, o->initrd, o->cmdline)
				       : vm_load_flat(*vm, o->image, o->cmdline);
		return rc ? rc : check_measurement(o, *vm);
	}
	if (o->key_file && vmm_key_load(o->key_file, key, err, sizeof(err))) {
		log_err(SUB, "restore %s: %s", o->snapshot, err);
		return -EACCES;
	}
	rc = o->store ? restore_backup(o, &cfg, key, vm)
		      : restore_snapshot(o, &cfg, o->key_file ? key : NULL, vm);
	sodium_memzero(key, sizeof(key));
	return rc ? rc : check_measurement(o, *vm);
}

static int run_vm(const struct run_opts *o, struct cgroup *cg, int sfd)
{
	struct vm *vm = NULL;
	struct api *api = NULL;
	struct mig_dest *dest = NULL;
	struct migration *mig;
	struct vm_end end;
	int err;

	if (o->listen) /* the migration's threads, and the VM they build, start filtered */
		sandbox_enter(SANDBOX_CONTROL);
	err = o->listen ? receive_vm(o, sfd, &api, &dest, &vm) : setup_vm(o, &vm);

	if (!err && !o->listen)
		err = api_open(o->api_path, o->api_gid, vm, &api);
	if (api) {
		api_set_cgroup(api, cg);
		api_set_tls_dir(api, o->tls_dir);
	}
	if (!err && !o->listen && o->fence_ns) /* before any guest instruction */
		err = vm_fence_set(vm, o->fence_ns);
	if (!err && !o->listen) /* a received VM runs already */
		err = vm_start(vm, o->paused);
	if (err) {
		api_close(api);
		mig_dest_free(dest);
		backup_lazy_free(lazy_mem);
		vm_destroy(vm);
		return VMM_EXIT_SETUP;
	}
	log_run_start(vm, o);
	sandbox_enter(SANDBOX_CONTROL); /* set up: from here on only the control list */
	api_serve(api, sfd);
	mig = api_migration(api);
	api_close(api);
	mig_free(mig); /* it has finished: the VM ended */
	vm_request_stop(vm);
	mig_dest_free(dest); /* it may still be answering the source's COMMIT */
	vm_get_end(vm, &end);
	if (backup_lazy_error(lazy_mem, exit_reason, sizeof(exit_reason))) {
		log_err(SUB, "vm=%s ended: its restore failed: %s", o->name, exit_reason);
		backup_lazy_free(lazy_mem);
		vm_destroy(vm);
		return VMM_EXIT_SETUP;
	}
	backup_lazy_free(lazy_mem); /* its threads write into the guest's memory */
	vm_destroy(vm);
	log_info(SUB, "vm=%s ended: %s", o->name, end.detail);
	return end_status(&end);
}

/* --confidential: the guest's memory encrypted by the CPU, or no guest at all. Where the
 * host offers no AMD SEV it is refused by name (TDX hosts too: CME launches SEV guests
 * only); a snapshot or a migration cannot carry such a guest (its memory is ciphertext
 * under this processor's key), so restore and incoming refuse it as well. */
static int check_confidential(const struct run_opts *o)
{
	char have[64];

	if (!o->confidential)
		return 0;
	if (vm_host_memory_encryption(have, sizeof(have)) == 0) {
		log_err(SUB, "--confidential: this host offers no guest memory encryption (AMD "
			     "SEV/SEV-ES/SEV-SNP: kvm_amd's sev parameters; Intel TDX: kvm_intel's "
			     "tdx): "
			     "the guest would run in clear");
		return -ENOTSUP;
	}
	if (!list_has(have, "sev")) {
		log_err(SUB,
			"--confidential: this host offers %s; CME launches AMD SEV guests "
			"only: refused rather than run in clear",
			have);
		return -ENOTSUP;
	}
	if (o->snapshot || o->listen) {
		log_err(SUB,
			"--confidential: a %s cannot carry an encrypted guest (its memory "
			"is sealed to the processor it was launched on)",
			o->listen ? "migration" : "snapshot");
		return -ENOTSUP;
	}
	return 0;
}

/* A confidential guest's RAM is pinned by KVM for its life (SEV's registered regions),
 * and what the launch encrypts is pinned once more while it does, both charged to the
 * VMM's RLIMIT_MEMLOCK unless it holds CAP_IPC_LOCK (which a jailed VMM gives up): the
 * limit is raised to cover them (the loaded bytes lie in RAM: twice RAM, and a little)
 * before any of that. */
static int memlock_ram(const struct run_opts *o)
{
	rlim_t need = 2 * o->mem_bytes + (64ull << 20);
	struct rlimit now = { 0, 0 };

	if (!o->confidential || (getrlimit(RLIMIT_MEMLOCK, &now) == 0 && now.rlim_cur >= need))
		return 0; /* RLIM_INFINITY included */
	if (setrlimit(RLIMIT_MEMLOCK,
		      &(struct rlimit){ need, now.rlim_max > need ? now.rlim_max : need }) == 0)
		return 0;
	log_err(SUB,
		"--confidential: RLIMIT_MEMLOCK is %llu MiB and cannot be raised to %llu: KVM "
		"pins a confidential guest's RAM (ulimit -l, or start it as root)",
		(unsigned long long)(now.rlim_cur >> 20), (unsigned long long)(need >> 20));
	return -ENOMEM;
}

/* --jail: armed before the first thread, so that every thread loads its list. A
 * forbidden call writes its status and name to the exit file, opened now: the handler
 * may not open files. */
static int arm_jail(struct run_opts *o, struct cgroup *cg, int *exit_fd)
{
	struct sandbox_cfg cfg = { .name = o->name,
				   .exit_fd = -1,
				   .exit_status = VMM_EXIT_SANDBOX };
	char err[PATH_MAX + 128];

	*exit_fd = -1;
	if (!o->jail)
		return 0;
	/* Only the descriptors it opens itself: none a careless parent left open. */
	if (close_range(3, ~0U, 0) < 0)
		log_warn(SUB, "vm=%s cannot close inherited descriptors: %s", o->name,
			 strerror(errno));
	if (o->exit_file) {
		*exit_fd = open(o->exit_file,
				O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK,
				0640);
		if (*exit_fd < 0) {
			log_err(SUB, "--exit-file %s: %s", o->exit_file, strerror(errno));
			return -errno;
		}
	}
	cfg.exit_fd = *exit_fd;
	/* Jailed, it can neither leave its group nor remove it. As its namespace's PID 1
	 * any helper would end with it: its starter removes the folders then. */
	if (o->jail_root && (getpid() == 1 ? cg_hand_off(cg, o->jail_root) : cg_reaper(cg))) {
		log_err(SUB, "--jail-root: no helper to remove the cgroup at the end: %s",
			strerror(errno));
		return -EPERM;
	}
	if (o->jail_root && getpid() == 1)
		log_info(SUB, "vm=%s is PID 1 of a PID namespace of its own (host PID %d)", o->name,
			 (int)proc_host_pid());
	if (o->jail_root && jail_enter_root(o, cg, err, sizeof(err))) {
		log_err(SUB, "--jail-root: %s", err);
		snprintf(exit_reason, sizeof(exit_reason), "--jail-root: %.500s", err);
		return -EPERM;
	}
	if (o->jail_root)
		log_info(SUB,
			 "vm=%s jailed: a mount namespace of its own, %s as /vm and nothing else "
			 "of the host's beyond what it was given",
			 o->name, jail_root());
	if (sandbox_arm(&cfg, err, sizeof(err))) {
		log_err(SUB, "--jail: %s", err);
		return -EPERM;
	}
	if (o->jail_uid >= 0 && jail_drop_user(o, err, sizeof(err))) {
		log_err(SUB, "--jail-user: %s", err);
		snprintf(exit_reason, sizeof(exit_reason), "--jail-user: %.500s", err);
		return -EPERM;
	}
	if (o->jail_uid >= 0)
		log_info(SUB, "vm=%s runs as uid %ld gid %ld, without privileges", o->name,
			 o->jail_uid, o->jail_gid);
	if (sandbox_armed())
		log_info(SUB,
			 "vm=%s runs sandboxed: a seccomp allow-list per thread kind, no new "
			 "privileges",
			 o->name);
	return 0;
}

static int run_main(int argc, char **argv)
{
	struct run_opts o;
	struct cgroup *cg = NULL;
	char err[CG_PATH_MAX + 128];
	int sfd, rc, exit_fd;
	sigset_t stop;

	if (vmm_parse_run(argc, argv, &o, err, sizeof(err)) < 0) {
		fprintf(stderr, "cme-vmm %s: %s\n", argv[0], err);
		return VMM_EXIT_USAGE;
	}
	stop_signals(&stop);
	sigprocmask(SIG_BLOCK, &stop, NULL); /* kept pending until block_stop_signals */
	if (o.jail_root)
		jail_enter_pidns(&o); /* before anything else: the relay stays outside */
	if (check_confidential(&o) < 0 || memlock_ram(&o) < 0 ||
	    (!o.snapshot && !o.listen && check_host(&o) < 0)) {
		write_exit_file(&o, VMM_EXIT_SETUP);
		return VMM_EXIT_SETUP;
	}
	if (o.cgroup.path[0] && cg_enter(&o.cgroup, &cg, err, sizeof(err))) {
		log_err(SUB, "%s", err); /* before any thread or guest memory: all of it counts */
		write_exit_file(&o, VMM_EXIT_SETUP);
		return VMM_EXIT_SETUP;
	}
	if (arm_jail(&o, cg, &exit_fd)) {
		cg_leave(cg);
		write_exit_fd(exit_fd, VMM_EXIT_SETUP); /* its path may be the jail's by now */
		if (exit_fd < 0)
			write_exit_file(&o, VMM_EXIT_SETUP);
		return VMM_EXIT_SETUP;
	}
	/* The page map, opened before any thread (a sandboxed one may not open it), after the
	 * jail closed what was inherited (--jail-user opened it before giving up root). */
	if (proc_pagemap_fd() < 0)
		log_debug(SUB, "no page map: %s", strerror(errno));
	sfd = block_stop_signals();
	rc = run_vm(&o, cg, sfd);
	cg_leave(cg);
	write_exit_file(&o, rc);
	close(sfd);
	if (exit_fd >= 0)
		close(exit_fd);
	return rc;
}

/* The end of run/restore/incoming. In a sanitizer build (make check-all) a jailed VMM
 * skips LeakSanitizer's check at exit: it stops the world with ptrace and reads the
 * threads from /proc by number, neither of which the jail offers, and would report the
 * memory of every thread it cannot see. The same paths unjailed are checked. */
static int end_run(int rc)
{
#ifdef __SANITIZE_ADDRESS__
	if (jail_root()) {
		fflush(NULL);
		_exit(rc);
	}
#endif
	return rc;
}

/* `cme-vmm cpu-features`: what this host's KVM offers, one JSON object on stdout:
 * {"features":[names],"templates":[the CPU templates it can run],"memory_encryption":
 * ["sev",...]}. cme-clusterd publishes the features and the encryption in its node's
 * record. Exit 0, or 1 when KVM cannot be asked. */
static int cpu_features_main(void)
{
	char have[CPU_LIST_MAX], tmpls[256], enc[64];
	int rc = vm_host_cpu_features(have, sizeof(have));
	json_t *o;

	if (rc < 0)
		return VMM_EXIT_SETUP;
	vm_host_memory_encryption(enc, sizeof(enc));
	o = json_pack("{s:o,s:o,s:o}", "features", jsonl_names(have), "templates",
		      jsonl_names(cpu_templates_offered(have, ",", tmpls, sizeof(tmpls))),
		      "memory_encryption", jsonl_names(enc));
	rc = o && json_dumpf(o, stdout, JSON_COMPACT) == 0 ? 0 : -EIO;
	json_decref(o);
	if (rc < 0)
		return VMM_EXIT_SETUP;
	putchar('\n');
	return VMM_EXIT_OK;
}

int main(int argc, char **argv)
{
	log_init("cme-vmm", getenv("CME_DEBUG") ? LOG_DEBUG : LOG_INFO);
	/* A control client or console reader that goes away must cost a write its EPIPE, never
	 * the VMM (and its guest) its life. */
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		usage(stderr);
		return VMM_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "run") || !strcmp(argv[1], "restore") || !strcmp(argv[1], "incoming"))
		return end_run(run_main(argc - 1, argv + 1));
	if (!strcmp(argv[1], "migrate"))
		return vmm_migrate_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "backup"))
		return vmm_backup_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "ctl"))
		return vmm_ctl_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "keygen"))
		return vmm_keygen_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "verify-snapshot"))
		return vmm_verify_snapshot_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "measure"))
		return argv[1] = (char *)"cme-vmm measure", boot_cmd_measure(argc - 1, argv + 1);
	if (!strcmp(argv[1], "signkey"))
		return argv[1] = (char *)"cme-vmm signkey", boot_cmd_keygen(argc - 1, argv + 1);
	if (!strcmp(argv[1], "sign"))
		return argv[1] = (char *)"cme-vmm sign", boot_cmd_sign(argc - 1, argv + 1);
	if (!strcmp(argv[1], "cpu-features") && argc == 2)
		return cpu_features_main();
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "cme-vmm: unknown command \"%s\" (try: cme-vmm help)\n", argv[1]);
	return VMM_EXIT_USAGE;
}
