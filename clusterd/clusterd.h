/* clusterd — the cluster daemon (cme-clusterd): node registration, leader election,
 * reconcile, migration orchestration and HA on the cluster records (cluster.h). What the
 * program's main needs: the configuration and the daemon's run. */
#ifndef CME_CLUSTERD_H
#define CME_CLUSTERD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster.h"
#include "common.h"

/* The daemon's configuration file: one "key = value" per line, '#' comments. Keys and
 * defaults are in README ("cme-clusterd configuration"). */
struct cd_config {
	char node[CL_NAME_MAX];
	char etcd[1024];
	char etcd_ca[CL_PATH_MAX], etcd_cert[CL_PATH_MAX], etcd_key[CL_PATH_MAX];
	char prefix[128];
	char address[128];	   /* host this node's VMMs listen on for migrations */
	char tls_dir[CL_PATH_MAX]; /* this node's ca.crt, tls.crt, tls.key */
	char state_dir[CL_PATH_MAX];
	char vmm[CL_PATH_MAX]; /* the cme-vmm binary */
	char image_dirs[1024]; /* ':'-separated folders VMs' files may come from */
	unsigned lease_ttl_s;
	uint32_t cpus;
	uint64_t mem_mb;
	unsigned max_migrations, max_migrations_per_node;
	unsigned progress_interval_ms;
	unsigned etcd_timeout_ms;
	unsigned prepare_timeout_s; /* how long a target may take to listen */
	/* High availability (README "High availability"). */
	bool fence;			 /* pause guests at the lease-derived deadline */
	bool jail;			 /* start VMMs with --jail (the seccomp sandbox) */
	bool jail_root;			 /* and --jail-root: each in its VM's folder (pivot_root) */
	char jail_user[64];		 /* and --jail-user (a user, or UID[:GID]); "": root */
	char operator_keys[CL_PATH_MAX]; /* signed boot only, trust records of these keys */
	unsigned fence_margin_ms;   /* stop guests this long before the earliest lease expiry */
	unsigned clock_drift_ppm;   /* the most any clock runs from real time */
	unsigned ha_tier_timeout_s; /* a restart tier waits at most this for the one above */
	bool admission_control;	    /* keep room to restart HA VMs after one node's loss */
	bool ride_through;	    /* keep guests running through an etcd outage on peers' word */
	char peer[160];		    /* host:port of the peer channel ("": address:7410) */
	/* Backups (README "Backups in the cluster"): "NAME:/folder,..." the stores this node
	 * writes to (the first is the default), and the file holding their key. */
	char backup_stores[1024];
	char backup_key[CL_PATH_MAX];
};

/* The folder of backup store name ("": the first) in c's backup_stores into out: 0, or
 * -ENOENT when the node has no such store. */
int cd_config_store(const struct cd_config *c, const char *name, char *out, size_t len) CME_WUR;

/* Fill defaults, then read path. 0, or -errno with "path:line: reason" in err. */
int cd_config_load(const char *path, struct cd_config *c, char *err, size_t errlen) CME_WUR;

/* Run the daemon until *stop becomes true: register, elect, reconcile, orchestrate. VMMs
 * keep running when it returns (a restarted daemon re-adopts them). Returns 0, or -errno
 * when it could not start (state dir unusable, bad etcd settings) with the reason in err. */
int cd_run(const struct cd_config *c, const atomic_bool *stop, char *err, size_t errlen) CME_WUR;

#endif
