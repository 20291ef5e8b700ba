/* cme-vmm's own pieces: option parsing, the control API and the ctl client. */
#ifndef CME_VMM_H
#define CME_VMM_H

#include <jansson.h>

#include "hypervisor.h"

/* Exit statuses of `cme-vmm run` beyond the guest's own exit code (README). */
enum {
	VMM_EXIT_OK = 0,
	VMM_EXIT_SETUP = 1, /* bad input or the VM could not be created */
	VMM_EXIT_USAGE = 2, /* unknown flag or missing argument */
	/* 3-63: the guest's own exit code (port 0x501) */
	VMM_EXIT_GUEST_OTHER = 64, /* the guest's code was 1, 2 or 64-255 (in the log) */
	VMM_EXIT_HOST = 70,	   /* a KVM call failed while running */
	VMM_EXIT_INTERNAL = 71,	   /* KVM internal error, failed entry, emulation failure */
	VMM_EXIT_TRIPLE = 72,	   /* guest triple fault */
	VMM_EXIT_REBOOT = 73,	   /* the guest asked for a reset: its supervisor restarts it */
	VMM_EXIT_POSTCOPY = 74,	   /* post-copy broke here: the guest could not go on */
	VMM_EXIT_SANDBOX = 75,	   /* --jail: a thread made a forbidden system call */
};

#define CG_PATH_MAX  512
#define CG_MAX_DEPTH 8 /* folders in a --cgroup PATH */

/* --cgroup PATH[,cpu=CPUS][,mem=SIZE] (cgroup.c). */
struct cg_opts {
	char path[CG_PATH_MAX]; /* relative to the hierarchy's root; "" when not asked */
	double cpus;		/* CPU limit in cores (0.5: half of one), 0: none */
	uint64_t mem;		/* memory limit in bytes, 0: none */
};

struct cgroup;

struct run_opts {
	uint64_t mem_bytes;
	unsigned vcpus;
	const char *image;
	const char *kernel; /* Linux: bzImage or ELF vmlinux */
	const char *initrd;
	const char *cmdline;
	const char *api_path;
	const char *name;
	const char *snapshot; /* restore: the snapshot file (with --store: the backup, VM[/ID]) */
	const char *store;    /* restore --store: the backup store's folder */
	bool eager;	      /* restore --store --eager: all memory read before the guest runs */
	const char *backup_stores[4]; /* --backup-store: folders its backups may be written to */
	unsigned nr_backup_stores;
	const char *listen; /* incoming: HOST:PORT to wait on */
	const char
		*tls_dir; /* this node's certificates (incoming; run/restore: migrate's default) */
	const char *peer_name; /* incoming --peer-name: the source's certificate name */
	int wait_ms;	       /* incoming: how long to wait for the source, -1 forever */
	const char *commit;    /* incoming: "direct" (NULL) or "external" (the cluster decides) */
	bool paused;	       /* restore: stay paused until `resume` */
	uint64_t fence_ns;     /* --fence-deadline: CLOCK_BOOTTIME ns the guest may run until */
	const char *exit_file; /* --exit-file: where the exit status is written at the end */
	struct console_cfg console;
	uint64_t console_max;		    /* --console-max */
	long api_gid;			    /* --api-group, -1: none */
	const char *key_file;		    /* restore --key */
	bool confidential;		    /* --confidential */
	bool jail;			    /* --jail: the seccomp sandbox */
	const char *jail_root;		    /* --jail-root DIR: pivot_root there (jail.c) */
	long jail_uid, jail_gid;	    /* --jail-user: the user it runs as (-1: root) */
	const char *trust, *boot_sig;	    /* run --trust KEYS --boot-sig SIG */
	const char *measurement;	    /* restore/incoming --measurement HEX */
	struct vm_disk disks[VM_MAX_DISKS]; /* --disk PATH[,ro]: virtio-blk, in order */
	unsigned nr_disks;
	struct vm_net nets[VM_MAX_NETS]; /* --net tap=NAME,...: virtio-net, in order */
	unsigned nr_nets;
	char net_args[VM_MAX_NETS][256]; /* the --net values, cut apart: nets[] point in */
	bool hugepages, ksm;		 /* --hugepages, --ksm */
	int pin[VM_MAX_VCPUS];		 /* --pin-vcpus CPU,CPU,...: host CPU of vCPU i */
	unsigned nr_pin;
	uint64_t epoch; /* --epoch N: the VM's owner epoch (guards its disks) */
	struct cg_opts cgroup;
	bool balloon; /* --balloon: a virtio memory balloon, the last virtio slot */
	/* --cpu-template NAME: what the guest sees (run), or the most this host offers an
	 * arriving guest (incoming); NULL: "host" */
	const char *cpu_template;
};

/* Parse `run`, `restore` or `incoming` options (argv[0] is the verb). On error returns -EINVAL and writes a one-line
 * reason into err. Checks syntax and limits only (host memory, files are checked later). */
int vmm_parse_run(int argc, char **argv, struct run_opts *o, char *err, size_t errlen);

/* --jail-root: the VMM is PID 1 of a PID namespace of its own, where it sees no other
 * process and no other process of the host's can be reached by PID. cme-clusterd starts it
 * in one; started otherwise (by hand) this process makes one and stays outside as a relay
 * (SIGTERM, SIGINT and SIGHUP passed on; it removes the control group folders the VMM made
 * and ends as the VMM did) while the VMM goes on in its child. Returns in the VMM. Before
 * any thread. Where no namespace can be made it says so and returns at once. */
void jail_enter_pidns(const struct run_opts *o);
/* --jail-root: a mount namespace of the VMM's own with o->jail_root as its root
 * (pivot_root), what o names bound in at its usual path and o's paths inside the root
 * rewritten. Root only, single-threaded. 0, or -errno with the reason in err. */
int jail_enter_root(struct run_opts *o, const struct cgroup *cg, char *err, size_t len);
/* --jail-user, inside the jail: preload what only root may read (the TLS contexts,
 * /dev/userfaultfd), give the jail's folder, console, exit file and writable disks to the
 * user, and become it for good. 0, or -errno with the reason in err. */
int jail_drop_user(const struct run_opts *o, char *err, size_t len);
/* The host folder the VMM is jailed in, NULL when it is not. */
const char *jail_root(void);

/* Control protocol: a request is one JSON object per line with a string "cmd" and
 * optional arguments beside it. Returns 0 and sets *cmd (points into *req, which the
 * caller decrefs), or -EINVAL with a reason in err. */
int api_parse_request(const char *line, json_t **req, const char **cmd, char *err, size_t errlen);

/* Build a reply: {"ok":false,"error":msg}. */
json_t *api_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

struct api;
struct migration;
struct mig_dest;
/* Listen on path (NULL: no socket), mode 0600, or 0660 with group gid (-1: none); only
 * root, this process's uid and (with a group) its members are served. vm may be NULL
 * while a migration arrives: then call api_set_incoming before api_serve. Returns 0 with
 * *out, or -errno (logged). */
int api_open(const char *path, long gid, struct vm *vm, struct api **out);
/* Serve an arriving migration: status, incoming-commit, incoming-abort, stop; api_serve
 * then returns once the guest runs here or the migration failed (or a stop signal came,
 * which aborts it). */
void api_set_incoming(struct api *api, struct mig_dest *d);
/* The arrived VM runs here: serve it as any other (incoming-commit stays an ok). */
void api_set_arrived(struct api *api, struct vm *vm);
/* The VMM's control group (--cgroup), shown in status; NULL: none. */
void api_set_cgroup(struct api *api, const struct cgroup *cg);
/* The VMM's --tls-dir: what migrate uses when the request names none (NULL: none). */
void api_set_tls_dir(struct api *api, const char *dir);
/* True when a stop was asked (request or signal) while the migration arrived. */
bool api_stop_requested(const struct api *api);
/* The migration the API started, if any (the caller frees it after api_close()). */
struct migration *api_migration(struct api *api);
/* Serve requests until the VM ends or a stop signal arrives; then returns. */
void api_serve(struct api *api, int signal_fd);
void api_close(struct api *api);

/* `cme-vmm ctl --api PATH CMD [JSON]`: returns the process exit status. */
int vmm_ctl_main(int argc, char **argv);
/* keyfile.c: `cme-vmm keygen FILE` writes a new key file (common's key_file_create).
 * vmm_key_preload reads --key while the VMM is root (before --jail-user); vmm_key_load
 * then hands that copy over once, else reads the file. 0, or -errno with the reason. */
int vmm_key_preload(const char *path, char *err, size_t len);
int vmm_key_load(const char *path, uint8_t key[KEY_FILE_BYTES], char *err, size_t len);
int vmm_keygen_main(int argc, char **argv);
int vmm_verify_snapshot_main(int argc, char **argv);
/* `cme-vmm backup --api PATH --store DIR --key FILE ...`: exit status. */
int vmm_backup_main(int argc, char **argv);
/* `cme-vmm migrate --api PATH --to ADDR:PORT --tls-dir DIR ...`: exit status. */
int vmm_migrate_main(int argc, char **argv);

/* cgroup.c: the VMM in a control group of its own (README "Resource control"). */
/* Create the group (cgroup v2 when it offers the controllers the limits need, else the v1
 * cpu and memory hierarchies), set its limits and move this process in. Returns 0 with
 * *out, or -errno with a one-line reason in err and nothing left behind. */
int cg_enter(const struct cg_opts *o, struct cgroup **out, char *err, size_t len) CME_WUR;
/* Move back to the root and remove the folders cg_enter created. NULL is ignored. */
void cg_leave(struct cgroup *cg);
/* For a VMM about to give up root (--jail-user), which then can neither leave its group
 * nor remove it: a child that stays root, outside the group, removes the folders once the
 * VMM has ended (its pipe closes); cg_leave then leaves them to it. NULL is ignored. */
int cg_reaper(struct cgroup *cg) CME_WUR;
/* The same for a VMM that is PID 1 of its own PID namespace, where a child would end with
 * it: the folders it made go into DIR/CG_MADE_FILE for its starter (cg_remove_made), and
 * cg_leave leaves them alone. NULL is ignored. */
int cg_hand_off(struct cgroup *cg, const char *dir) CME_WUR;
/* The group's folders (one for v2, the cpu and memory ones for v1) into paths: how many. */
unsigned cg_dirs(const struct cgroup *cg, const char **paths, unsigned max);
/* {"path","version","dir","cpu_limit","mem_limit_bytes","mem_used_bytes"} for status. */
json_t *cg_json(const struct cgroup *cg);

#endif
