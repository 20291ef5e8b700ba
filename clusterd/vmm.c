/* The VMMs of this node: start `cme-vmm run` or `cme-vmm incoming` in a session of their
 * own (they outlive the daemon), talk to their control sockets, stop them, and re-adopt
 * them after a restart of the daemon from the meta.json each one leaves in its folder. */
#include "cd_priv.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define SUB	      "vmm"
#define REPLY_MAX     (1 << 20)
#define REQ_TIMEOUT_S 5

struct lvm *cd_lvm_find(struct cd *cd, const char *name)
{
	for (size_t i = 0; i < cd->nvms; i++)
		if (!strcmp(cd->vms[i]->name, name))
			return cd->vms[i];
	return NULL;
}

struct lvm *cd_lvm_add(struct cd *cd, const char *name)
{
	struct lvm *l = calloc(1, sizeof(*l)), **arr;
	int n;

	if (!l)
		return NULL;
	n = snprintf(l->dir, sizeof(l->dir), "%s/vms/%s", cd->cfg->state_dir, name);
	/* The control socket's path must fit a sockaddr_un. */
	if (n < 0 ||
	    (size_t)n + sizeof("/vm/api.sock") > sizeof(((struct sockaddr_un *)0)->sun_path))
		goto fail;
	snprintf(l->vdir, sizeof(l->vdir), "%s/vm", l->dir);
	arr = realloc(cd->vms, (cd->nvms + 1) * sizeof(*arr));
	if (!arr)
		goto fail;
	cd->vms = arr;
	snprintf(l->name, sizeof(l->name), "%s", name);
	l->exit_code = -1;
	l->balloon_mb = -1;
	cd->vms[cd->nvms++] = l;
	return l;
fail:
	log_err(SUB, "vm=%s: state folder %s/vms/%s is too long for a socket path", name,
		cd->cfg->state_dir, name);
	free(l);
	return NULL;
}

void cd_lvm_remove(struct cd *cd, struct lvm *l)
{
	for (size_t i = 0; i < cd->nvms; i++) {
		if (cd->vms[i] != l)
			continue;
		cd->vms[i] = cd->vms[--cd->nvms];
		cd_fence_forget(cd, l->name);
		free(l);
		return;
	}
}

static void api_path(const struct lvm *l, char *buf, size_t len)
{
	snprintf(buf, len, "%s/api.sock", l->vdir);
}

static void exit_path(const struct lvm *l, char *buf, size_t len)
{
	snprintf(buf, len, "%s/exit.json", l->vdir);
}

/* The exit file a VMM leaves (NULL when there is none or it does not parse). */
static json_t *exit_file_load(const struct lvm *l)
{
	char path[CL_PATH_MAX + 32];

	exit_path(l, path, sizeof(path));
	return json_load_file(path, 0, NULL);
}

void cd_lvm_exit_why(const struct lvm *l, char *buf, size_t len)
{
	json_t *j = exit_file_load(l);
	const char *call, *thread, *error;

	call = json_string_value(json_object_get(j, "syscall"));
	thread = json_string_value(json_object_get(j, "thread"));
	error = json_string_value(json_object_get(j, "error"));
	buf[0] = 0;
	if (call && thread)
		snprintf(buf, len, "forbidden system call %.40s in a %.20s thread", call, thread);
	else if (error)
		snprintf(buf, len, "%s", error);
	json_decref(j);
}

/* How an adopted VMM (not our child) ended, from the exit file it writes: its status, or
 * -1 when it left none (killed by a signal, or an older VMM). */
static int adopted_exit_code(const struct lvm *l)
{
	json_t *j = exit_file_load(l);
	int code = -1;

	if (json_is_integer(json_object_get(j, "status")))
		code = (int)json_integer_value(json_object_get(j, "status"));
	json_decref(j);
	return code;
}

void cd_lvm_console_path(const struct lvm *l, char *buf, size_t len)
{
	snprintf(buf, len, "%s/console.log", l->vdir);
}

/* meta.json's fields but its "pid", which the daemon and the child write each their own. */
static json_t *meta_fields(const struct lvm *l)
{
	return json_pack("{s:s,s:I,s:s,s:s,s:s}", "role", l->role == LVM_RUN ? "run" : "incoming",
			 "epoch", (json_int_t)l->epoch, "mig_id", l->mig_id, "cgroup", l->cgroup,
			 "restore_id", l->restore_id);
}

void cd_lvm_save_meta(const struct lvm *l)
{
	char path[CL_PATH_MAX + 16], tmp[CL_PATH_MAX + 16];
	json_t *o = meta_fields(l);

	snprintf(path, sizeof(path), "%s/meta.json", l->dir);
	snprintf(tmp, sizeof(tmp), "%s/meta.tmp", l->dir);
	if (!o || json_object_set_new(o, "pid", json_integer(l->pid)) ||
	    json_dump_file(o, tmp, JSON_COMPACT) || rename(tmp, path))
		log_warn(SUB, "vm=%s: cannot write %s: %s", l->name, path, strerror(errno));
	json_decref(o);
}

/* meta.json written by the child itself, before exec, with async-signal-safe calls only:
 * a daemon killed right after fork() must still find (and adopt) the VMM it started. */
struct meta_tpl {
	char tmp[CL_PATH_MAX + 16], path[CL_PATH_MAX + 16], tail[CL_PATH_MAX + 256];
};

static void meta_tpl_init(const struct lvm *l, struct meta_tpl *t)
{
	snprintf(t->tmp, sizeof(t->tmp), "%s/meta.spawn", l->dir);
	snprintf(t->path, sizeof(t->path), "%s/meta.json", l->dir);
	/* The rest of the object after "pid", encoded by jansson: the migration id came from
	 * etcd and must not be able to add fields (a "pid" of its choice) to the file. */
	json_t *o = meta_fields(l);
	char *txt = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

	snprintf(t->tail, sizeof(t->tail), "}");
	if (txt && txt[0] == '{' && strlen(txt) < sizeof(t->tail))
		snprintf(t->tail, sizeof(t->tail), ",%s", txt + 1);
	free(txt);
	json_decref(o);
}

static void child_write_meta(const struct meta_tpl *t)
{
	static const char head[] = "{\"pid\":";
	char num[24];
	int i = sizeof(num), fd;
	unsigned long v = (unsigned long)proc_host_pid(); /* getpid() is 1 in a PID namespace */

	do
		num[--i] = (char)('0' + v % 10);
	while ((v /= 10) && i > 0);
	fd = open(t->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0)
		return;
	if (write(fd, head, sizeof(head) - 1) > 0 && write(fd, num + i, sizeof(num) - i) > 0 &&
	    write(fd, t->tail, strlen(t->tail)) > 0)
		rename(t->tmp, t->path);
	close(fd);
}

/* The child: own session, stdio, meta.json, no inherited descriptors (the daemon's etcd
 * connections must not leak into a VMM), then exec. Never returns. */
static void child_exec(char *const argv[], int logfd, const struct meta_tpl *t)
{
	static const char msg[] = "cme-clusterd: cannot execute the cme-vmm binary\n";
	int null = open("/dev/null", O_RDONLY);

	setsid(); /* a signal to the daemon's group must not reach the guest */
	dup2(null, 0);
	dup2(logfd, 1);
	dup2(logfd, 2);
	child_write_meta(t);
	close_range(3, ~0U, 0);
	execvp(argv[0], argv);
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(126);
	_exit(127);
}

/* fork + exec in a new session, stdout and stderr appended to vmm.log. A jailed VMM
 * (--jail-root) starts as PID 1 of a PID namespace of its own where the host lets us make
 * one. */
static int spawn(struct cd *cd, struct lvm *l, char *const argv[])
{
	static bool said;
	char logp[CL_PATH_MAX + 16];
	struct meta_tpl t;
	pid_t pid = -1;
	int fd;

	if ((mkdir(l->dir, 0750) && errno != EEXIST) || (mkdir(l->vdir, 0750) && errno != EEXIST))
		return -errno;
	snprintf(logp, sizeof(logp), "%s/vmm.log", l->dir);
	fd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	meta_tpl_init(l, &t);
	if (cd->cfg->jail && cd->cfg->jail_root && (pid = proc_clone_pidns()) < 0 && !said) {
		log_warn(SUB, "no PID namespaces here (%s): jailed VMMs see the host's processes",
			 strerror(errno));
		said = true;
	}
	if (pid < 0)
		pid = fork();
	if (pid == 0)
		child_exec(argv, fd, &t);
	close(fd);
	if (pid < 0)
		return -errno;
	l->pid = pid;
	l->child = true;
	l->exited = false;
	l->exit_code = -1;
	l->running_seen = false;
	l->started_ms = now_ns() / 1000000;
	cd_lvm_save_meta(l);
	return 0;
}

/* The strings the arguments of every VMM point into. */
struct argbuf {
	char api[CL_PATH_MAX + 32], con[CL_PATH_MAX + 40], fence[24], exit[CL_PATH_MAX + 32];
	char trust[CL_PATH_MAX + 16], sig[CL_PATH_MAX + 16];
	char epoch[24];
	char boot[PATH_MAX], initrd[PATH_MAX], disk[PATH_MAX + 32]; /* real paths */
	char stores[4][CL_PATH_MAX];
};

/* --backup-store for each store of the node's config: a jailed VMM sees them. */
static void store_args(struct cd *cd, struct argbuf *b, char **argv, int *n)
{
	const char *p = cd->cfg->backup_stores;

	for (unsigned i = 0; *p && i < ARRAY_SIZE(b->stores); i++) {
		size_t len = strcspn(p, ","), colon = strcspn(p, ":");

		snprintf(b->stores[i], sizeof(b->stores[i]), "%.*s", (int)(len - colon - 1),
			 p + colon + 1);
		argv[(*n)++] = "--backup-store";
		argv[(*n)++] = b->stores[i];
		p += len + (p[len] == ',');
	}
}

#define NO_DEADLINE                                                                                \
	"this node holds no fencing deadline (its lease was not renewed in time, or it is not "    \
	"registered yet)"

/* --api, --console, --name and, with fencing on, --fence-deadline: the guest must not
 * run one instruction without one. -ETIME when there is none (or it has passed). */
static int common_args(struct cd *cd, struct lvm *l, struct argbuf *b, char **argv, int *n)
{
	api_path(l, b->api, sizeof(b->api));
	snprintf(b->con, sizeof(b->con), "file:%s/console.log", l->vdir);
	argv[(*n)++] = "--api";
	argv[(*n)++] = b->api;
	argv[(*n)++] = "--console";
	argv[(*n)++] = b->con;
	argv[(*n)++] = "--name";
	argv[(*n)++] = l->name;
	exit_path(l, b->exit, sizeof(b->exit));
	unlink(b->exit); /* a previous VMM's */
	argv[(*n)++] = "--exit-file";
	argv[(*n)++] = b->exit;
	if (cd->cfg->jail)
		argv[(*n)++] = "--jail";
	if (cd->cfg->jail && cd->cfg->jail_root) {
		argv[(*n)++] = "--jail-root";
		argv[(*n)++] = l->vdir;
	}
	if (cd->cfg->jail && cd->cfg->jail_root && cd->cfg->jail_user[0]) {
		argv[(*n)++] = "--jail-user";
		argv[(*n)++] = (char *)cd->cfg->jail_user;
	}
	store_args(cd, b, argv, n);
	if (cd->cfg->fence) {
		uint64_t deadline = cd_fence_deadline(cd, NULL);

		if (deadline <= boottime_ns())
			return -ETIME;
		snprintf(b->fence, sizeof(b->fence), "%llu", (unsigned long long)deadline);
		argv[(*n)++] = "--fence-deadline";
		argv[(*n)++] = b->fence;
	}
	return 0;
}

/* A node that runs only signed boots: --trust (the keys it took from the cluster's trust
 * record) and --boot-sig (the spec's signature, as a file in the VM's folder). */
static int trust_args(struct cd *cd, const struct lvm *l, const struct cl_spec *s, struct argbuf *b,
		      char **argv, int *n, char *why, size_t whylen)
{
	char line[sizeof(s->boot_sig) + 2];

	if (!cd_trust_required(cd))
		return 0;
	if (cd_trust_file(cd, b->trust, sizeof(b->trust)))
		return snprintf(why, whylen,
				"node %s runs only signed boots and holds no trusted keys yet "
				"(cmectl trust set)",
				cd->cfg->node),
		       -EACCES;
	if (!s->boot_sig[0])
		return snprintf(why, whylen,
				"vm %s has no boot signature (cmectl vm create --boot-sig): node "
				"%s runs only signed boots",
				s->name, cd->cfg->node),
		       -EACCES;
	snprintf(b->sig, sizeof(b->sig), "%s/boot.sig", l->dir);
	snprintf(line, sizeof(line), "%s\n", s->boot_sig);
	if ((mkdir(l->dir, 0750) && errno != EEXIST) ||
	    write_file_atomic(b->sig, line, strlen(line)) || chmod(b->sig, 0644))
		return snprintf(why, whylen, "%s: %s", b->sig, strerror(errno)), -errno;
	argv[(*n)++] = "--trust";
	argv[(*n)++] = b->trust;
	argv[(*n)++] = "--boot-sig";
	argv[(*n)++] = b->sig;
	return 0;
}

/* The boot arguments of a spec, appended to argv from index *n: the image or kernel and
 * initrd by their real paths, inside the node's image_dirs (images.c). */
static int boot_args(struct cd *cd, const struct cl_spec *s, char mem[32], char cpus[16],
		     struct argbuf *b, char **argv, int *n, char *why, size_t whylen)
{
	int rc = cd_image_path(cd->cfg, s->image[0] ? "image" : "kernel",
			       s->image[0] ? s->image : s->kernel, false, b->boot, sizeof(b->boot),
			       why, whylen);

	if (!rc && s->initrd[0])
		rc = cd_image_path(cd->cfg, "initrd", s->initrd, false, b->initrd,
				   sizeof(b->initrd), why, whylen);
	if (rc)
		return rc;
	snprintf(mem, 32, "%lluM", (unsigned long long)s->mem_mb);
	snprintf(cpus, 16, "%u", s->vcpus);
	argv[(*n)++] = "--mem";
	argv[(*n)++] = mem;
	argv[(*n)++] = "--vcpus";
	argv[(*n)++] = cpus;
	argv[(*n)++] = s->image[0] ? "--image" : "--kernel";
	argv[(*n)++] = b->boot;
	if (s->initrd[0]) {
		argv[(*n)++] = "--initrd";
		argv[(*n)++] = b->initrd;
	}
	if (s->cmdline[0]) {
		argv[(*n)++] = "--cmdline";
		argv[(*n)++] = (char *)s->cmdline;
	}
	return 0;
}

/* --balloon (a device: the source's and the target's must match), --pin-vcpus, --cgroup,
 * --hugepages, --ksm, --cpu-template (a migration's target: the most it offers the guest,
 * which brings its own), --confidential (a restore or an incoming VMM refuses it by name:
 * a confidential guest's memory never leaves its host, so it is never brought back in
 * clear). */
static void resource_args(struct lvm *l, const struct cl_spec *s, char **argv, int *n,
			  bool template)
{
	/* its group's folders: removed once it has ended, if it leaves them to us */
	snprintf(l->cgroup, sizeof(l->cgroup), "%.*s", (int)strcspn(s->cgroup, ","), s->cgroup);
	if (template && s->cpu_template[0]) {
		argv[(*n)++] = "--cpu-template";
		argv[(*n)++] = (char *)s->cpu_template;
	}
	if (s->balloon)
		argv[(*n)++] = "--balloon";
	if (s->pin_vcpus[0]) {
		argv[(*n)++] = "--pin-vcpus";
		argv[(*n)++] = (char *)s->pin_vcpus;
	}
	if (s->cgroup[0]) {
		argv[(*n)++] = "--cgroup";
		argv[(*n)++] = (char *)s->cgroup;
	}
	if (s->hugepages)
		argv[(*n)++] = "--hugepages";
	if (s->ksm)
		argv[(*n)++] = "--ksm";
	if (s->confidential)
		argv[(*n)++] = "--confidential";
}

/* --disk by its real path (inside image_dirs, its options kept), with the owner epoch
 * that guards the image (storage fencing). */
static int disk_args(struct cd *cd, const struct cl_spec *spec, uint64_t epoch, struct argbuf *b,
		     char **argv, int *n, char *why, size_t whylen)
{
	char path[CL_PATH_MAX];
	size_t plen = strcspn(spec->disk, ",");
	int rc;

	if (!spec->disk[0])
		return 0;
	/* After the path only the options the VMM knows: it splits on them, not on the
	 * first comma. */
	for (const char *o = spec->disk + plen; *o;) {
		size_t k = strcspn(o + 1, ",");

		if ((k != 2 || strncmp(o + 1, "ro", 2)) &&
		    (k != 6 || strncmp(o + 1, "direct", 6))) {
			snprintf(why, whylen, "disk %s: after its path only ,ro and ,direct",
				 spec->disk);
			return -EINVAL;
		}
		o += 1 + k;
	}
	snprintf(path, sizeof(path), "%.*s", (int)plen, spec->disk);
	rc = cd_image_path(cd->cfg, "disk", path, true, b->disk, PATH_MAX, why, whylen);
	if (rc)
		return rc;
	snprintf(b->disk + strlen(b->disk), sizeof(b->disk) - strlen(b->disk), "%s",
		 spec->disk + plen);
	snprintf(b->epoch, sizeof(b->epoch), "%llu", (unsigned long long)epoch);
	argv[(*n)++] = "--disk";
	argv[(*n)++] = b->disk;
	argv[(*n)++] = "--epoch";
	argv[(*n)++] = b->epoch;
	return 0;
}

/* The arguments every started VMM gets, then the process. */
static int start_common(struct cd *cd, struct lvm *l, uint64_t epoch, struct argbuf *b, char **argv,
			int n, char *why, size_t whylen)
{
	int rc;

	argv[n++] = "--tls-dir"; /* its migrations' certificates (inside a jail too) */
	argv[n++] = (char *)cd->cfg->tls_dir;
	if (common_args(cd, l, b, argv, &n)) {
		snprintf(why, whylen, "%s", NO_DEADLINE);
		log_err(SUB, "vm=%s: not starting it: %s", l->name, NO_DEADLINE);
		return -ETIME;
	}
	l->role = LVM_RUN;
	l->balloon_mb = -1; /* a new VMM: give it the target again */
	l->epoch = epoch;
	l->mig_id[0] = 0;
	unlink(b->api);
	rc = spawn(cd, l, argv);
	if (rc) {
		snprintf(why, whylen, "cannot start %s: %s; see the daemon log", argv[0],
			 strerror(-rc));
		log_err(SUB, "vm=%s: cannot start %s: %s", l->name, argv[0], strerror(-rc));
	} else
		log_info(SUB, "vm=%s: started VMM pid %d (epoch %llu)", l->name, (int)l->pid,
			 (unsigned long long)epoch);
	return rc;
}

int cd_lvm_start_run(struct cd *cd, struct lvm *l, const struct cl_spec *spec, uint64_t epoch,
		     char *why, size_t whylen)
{
	char mem[32], cpus[16];
	struct argbuf b;
	char *argv[80] = { (char *)cd->cfg->vmm, "run" };
	int n = 2, rc;

	snprintf(l->vdir, sizeof(l->vdir), "%s/vm", l->dir); /* a new VMM: today's layout */
	rc = boot_args(cd, spec, mem, cpus, &b, argv, &n, why, whylen);

	if (!rc)
		rc = disk_args(cd, spec, epoch, &b, argv, &n, why, whylen);
	if (!rc)
		rc = trust_args(cd, l, spec, &b, argv, &n, why, whylen);
	if (rc) {
		log_err(SUB, "vm=%s: not starting it: %s", l->name, why);
		return rc;
	}
	resource_args(l, spec, argv, &n, true);
	return start_common(cd, l, epoch, &b, argv, n, why, whylen);
}

int cd_lvm_start_restore(struct cd *cd, struct lvm *l, const struct cl_spec *spec, uint64_t epoch,
			 const char *store, const char *ref, char *why, size_t whylen)
{
	char mem[32], cpus[16];
	struct argbuf b;
	char *argv[80] = { (char *)cd->cfg->vmm, "restore", "--store",
			   (char *)store,	 "--key",   (char *)cd->cfg->backup_key,
			   (char *)ref };
	int n = 7, rc = 0;

	snprintf(l->vdir, sizeof(l->vdir), "%s/vm", l->dir);
	if (cd_trust_required(cd)) {
		snprintf(why, whylen, "node %s runs only signed boots, and a restore is not one",
			 cd->cfg->node);
		return -EPERM;
	}
	snprintf(mem, sizeof(mem), "%lluM", (unsigned long long)spec->mem_mb);
	snprintf(cpus, sizeof(cpus), "%u", spec->vcpus);
	argv[n++] = "--mem"; /* the backup's must be the spec's */
	argv[n++] = mem;
	argv[n++] = "--vcpus";
	argv[n++] = cpus;
	rc = disk_args(cd, spec, epoch, &b, argv, &n, why, whylen);
	if (rc) {
		log_err(SUB, "vm=%s: not restoring it: %s", l->name, why);
		return rc;
	}
	resource_args(l, spec, argv, &n, false); /* the CPU template comes with the state */
	return start_common(cd, l, epoch, &b, argv, n, why, whylen);
}

int cd_lvm_incoming_port(struct lvm *l, uint16_t *port)
{
	json_t *r = NULL;
	json_int_t p = 0;

	if (!cd_lvm_alive(l))
		return -ECHILD;
	if (cd_lvm_request(l, "status", NULL, &r) == 0)
		p = json_integer_value(json_object_get(r, "port"));
	json_decref(r);
	if (p <= 0 || p >= 65536)
		return -EAGAIN; /* not listening yet (or its socket is not there yet) */
	*port = (uint16_t)p;
	return 0;
}

int cd_lvm_start_incoming(struct cd *cd, struct lvm *l, const struct cl_spec *spec, uint64_t epoch,
			  const char *mig_id, const char *source, char *why, size_t whylen)
{
	char listen[160], wait[16];
	struct argbuf b;
	/* Only the source node may send it: its certificate carries its node name. */
	char *argv[80] = { (char *)cd->cfg->vmm,
			   "incoming",
			   "--listen",
			   listen,
			   "--tls-dir",
			   (char *)cd->cfg->tls_dir,
			   "--commit",
			   "external",
			   "--wait",
			   wait,
			   "--peer-name",
			   (char *)source };
	int n = 12, rc;

	snprintf(l->vdir, sizeof(l->vdir), "%s/vm", l->dir); /* a new VMM: today's layout */
	snprintf(listen, sizeof(listen), "%s:0", cd->cfg->address);
	rc = disk_args(cd, spec, epoch, &b, argv, &n, why, whylen);
	if (!rc)
		rc = trust_args(cd, l, spec, &b, argv, &n, why, whylen);
	if (rc)
		return rc;
	resource_args(l, spec, argv, &n, true);
	snprintf(wait, sizeof(wait), "%u", cd->cfg->prepare_timeout_s * 2);
	if (common_args(cd, l, &b, argv, &n)) {
		snprintf(why, whylen, "%s", NO_DEADLINE);
		return -ETIME;
	}
	l->role = LVM_INCOMING;
	l->balloon_mb = -1;
	snprintf(l->mig_id, sizeof(l->mig_id), "%s", mig_id);
	unlink(b.api);
	rc = spawn(cd, l, argv);
	if (rc)
		snprintf(why, whylen, "incoming VMM on %s: %s (see %s/vmm.log)", cd->cfg->node,
			 strerror(-rc), l->dir);
	return rc;
}

/* Is pid the VMM of this VM's folder vdir? Its command line must carry "--api
 * <vdir>/api.sock" (guards against a recycled PID). A /proc we cannot read for another
 * reason than the process being gone counts as alive: wrongly thinking a VMM dead would
 * start a second. */
static bool pid_is_vmm(pid_t pid, const char *vdir)
{
	char path[64], buf[8192], api[CL_PATH_MAX + 32];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	snprintf(api, sizeof(api), "%s/api.sock", vdir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno != ENOENT && errno != ESRCH;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false; /* a zombie, or gone */
	buf[n] = 0;
	for (ssize_t i = 0; i + 1 < n; i += (ssize_t)strlen(buf + i) + 1)
		if (!strcmp(buf + i, "--api") && !strcmp(buf + i + strlen(buf + i) + 1, api))
			return true;
	return false;
}

/* A VMM has ended. One that was its PID namespace's PID 1 left the control group folders
 * it made to us (a helper of its own would have ended with it). */
static void vmm_ended(const struct lvm *l)
{
	char made[CL_PATH_MAX + 32];

	if (!l->cgroup[0])
		return;
	snprintf(made, sizeof(made), "%s/%s", l->vdir, CG_MADE_FILE);
	cg_remove_made(made, l->cgroup);
}

bool cd_lvm_alive(struct lvm *l)
{
	int st;

	if (l->exited || l->pid <= 0)
		return false;
	if (l->child) {
		pid_t r = waitpid(l->pid, &st, WNOHANG);

		if (r == 0)
			return true;
		l->exited = true;
		l->exit_code = r == l->pid && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		vmm_ended(l);
		return false;
	}
	if (pid_is_vmm(l->pid, l->vdir))
		return true;
	l->exited = true;
	l->exit_code = adopted_exit_code(l);
	vmm_ended(l);
	return false;
}

int cd_lvm_request(const struct lvm *l, const char *cmd, json_t *args, json_t **reply)
{
	struct timeval tv = { .tv_sec = REQ_TIMEOUT_S };
	char api[CL_PATH_MAX + 32];
	json_t *req = args ? json_deep_copy(args) : json_object(), *r = NULL;
	int fd, rc;

	if (reply)
		*reply = NULL;
	api_path(l, api, sizeof(api));
	fd = unix_connect(api);
	if (fd < 0 || !req) {
		json_decref(req);
		return fd < 0 ? fd : -ENOMEM;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	json_object_set_new(req, "cmd", json_string(cmd));
	rc = jsonl_send(fd, req);
	if (!rc)
		rc = jsonl_recv(fd, REPLY_MAX, &r);
	close(fd);
	json_decref(req);
	if (!rc && !json_is_true(json_object_get(r, "ok")))
		rc = -EREMOTEIO;
	if (reply)
		*reply = r;
	else
		json_decref(r);
	return rc;
}

void cd_lvm_stop(struct lvm *l, unsigned grace_ms)
{
	if (!cd_lvm_alive(l))
		return;
	if (grace_ms && cd_lvm_request(l, "stop", NULL, NULL) == 0)
		for (unsigned t = 0; t < grace_ms && cd_lvm_alive(l); t += 20)
			sleep_ms(20);
	if (cd_lvm_alive(l)) {
		kill(l->pid, SIGKILL);
		/* Bounded: a VMM stuck in the kernel (hung storage) must not freeze the daemon.
		 * With SIGKILL pending it never runs guest code again. */
		for (int t = 0; t < 1000 && cd_lvm_alive(l); t++)
			sleep_ms(10);
		if (cd_lvm_alive(l))
			log_err(SUB, "vm=%s: VMM pid %d does not die (stuck in the kernel?)",
				l->name, (int)l->pid);
	}
	log_info(SUB, "vm=%s: VMM pid %d stopped", l->name, (int)l->pid);
}

/* One folder of a previous life: adopt its VMM if it still runs. */
static void adopt_one(struct cd *cd, const char *name)
{
	char path[CL_PATH_MAX + 320], dir[CL_PATH_MAX + 320];
	json_t *m;
	struct lvm *l;
	const char *role, *mig, *cg, *rid;
	json_int_t pid;
	bool legacy;

	snprintf(path, sizeof(path), "%s/vms/%s/meta.json", cd->cfg->state_dir, name);
	m = json_load_file(path, 0, NULL);
	pid = json_integer_value(json_object_get(m, "pid"));
	role = json_string_value(json_object_get(m, "role"));
	mig = json_string_value(json_object_get(m, "mig_id"));
	cg = json_string_value(json_object_get(m, "cgroup"));
	rid = json_string_value(json_object_get(m, "restore_id"));
	snprintf(dir, sizeof(dir), "%s/vms/%s/vm", cd->cfg->state_dir, name);
	/* A VMM an older daemon started keeps its files in the VM's folder itself. */
	legacy = pid > 1 && !pid_is_vmm((pid_t)pid, dir) && (*strrchr(dir, '/') = 0, true) &&
		 pid_is_vmm((pid_t)pid, dir);
	if (!legacy)
		snprintf(dir, sizeof(dir), "%s/vms/%s/vm", cd->cfg->state_dir, name);
	if (pid > 1 && role && pid_is_vmm((pid_t)pid, dir) && (l = cd_lvm_add(cd, name))) {
		if (legacy)
			snprintf(l->vdir, sizeof(l->vdir), "%s", l->dir);
		l->pid = (pid_t)pid;
		l->child = false;
		l->role = strcmp(role, "run") ? LVM_INCOMING : LVM_RUN;
		l->check_mig = l->role == LVM_RUN;
		l->epoch = (uint64_t)json_integer_value(json_object_get(m, "epoch"));
		snprintf(l->mig_id, sizeof(l->mig_id), "%s", mig ? mig : "");
		snprintf(l->cgroup, sizeof(l->cgroup), "%s", cg ? cg : "");
		snprintf(l->restore_id, sizeof(l->restore_id), "%s", rid ? rid : "");
		log_info(SUB, "vm=%s: re-adopted running VMM pid %d (%s, epoch %llu)", name,
			 (int)l->pid, role, (unsigned long long)l->epoch);
	} else if (pid > 1 && role && !strcmp(role, "run") && (l = cd_lvm_add(cd, name))) {
		/* It ended while no daemon watched: how, its exit file says (a guest that
		 * powered off meanwhile must not count as a crash). */
		l->pid = (pid_t)pid;
		l->child = false;
		l->role = LVM_RUN;
		l->epoch = (uint64_t)json_integer_value(json_object_get(m, "epoch"));
		l->exited = true;
		l->exit_code = adopted_exit_code(l);
		snprintf(l->cgroup, sizeof(l->cgroup), "%s", cg ? cg : "");
		snprintf(l->restore_id, sizeof(l->restore_id), "%s", rid ? rid : "");
		vmm_ended(l);
		log_info(SUB, "vm=%s: its VMM pid %d ended while the daemon was away (status %d)",
			 name, (int)l->pid, l->exit_code);
	}
	json_decref(m);
}

void cd_lvm_adopt_all(struct cd *cd)
{
	char path[CL_PATH_MAX + 8];
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "%s/vms", cd->cfg->state_dir);
	d = opendir(path);
	if (!d)
		return;
	while ((de = readdir(d)))
		if (cl_name_ok(de->d_name) && !cd_lvm_find(cd, de->d_name))
			adopt_one(cd, de->d_name);
	closedir(d);
}
