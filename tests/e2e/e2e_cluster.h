/* A real cluster for end-to-end tests: etcd on run-time loopback ports, certificates made
 * by certs/mkcerts.sh, and N cme-clusterd processes on 127.0.1.1..N, each with its own
 * state dir. Every process is owned by PID: cluster_teardown() (run after every test)
 * kills the daemons, the VMMs they started (PIDs from their meta.json) and etcd. */
#ifndef CME_E2E_CLUSTER_H
#define CME_E2E_CLUSTER_H

#include "etcd.h"
#include "etcd_proc.h"
#include "harness.h"
#include "netns.h"

#define CL_MAX_NODES 4

struct node_proc {
	char name[16];
	char addr[32];
	char conf[512];
	char state[512];
	char log[512];
	char etcd_url[64];  /* "" : the cluster's */
	char peer_host[32]; /* "" : addr */
	char vmm[512];	    /* "" : the built cme-vmm */
	unsigned mem_mb;    /* 0 : the cluster's */
	pid_t pid;
};

struct cluster {
	struct etcd_proc etcd;
	char dir[400];
	char certs[512];
	struct node_proc node[CL_MAX_NODES];
	int n;
	int held; /* the last `held` nodes are made (certificates, configuration), not started */
	unsigned mem_mb;
	struct etcd *cli;
	pid_t twin_pid; /* cluster_twin_start */
	char twin_state[512];
	char extra_conf[512]; /* more configuration lines for every daemon */
	int ns_node;	      /* the node in a network namespace, -1 none */
	struct netns ns;
};

/* Start etcd and n daemons (each offering 2 vCPUs and mem_mb MiB) and wait until every
 * node is registered and a member, and a leader is elected. Returns 0 or -errno (reason printed). */
int cluster_start(struct cluster *c, int n, unsigned mem_mb);
/* The same with extra configuration lines (e.g. "ha_tier_timeout = 4\n") for every daemon. */
int cluster_start_conf(struct cluster *c, int n, unsigned mem_mb, const char *extra);
/* The same, but the last `held` of the n nodes are only made ready: a test starts them
 * later with cluster_node_start. */
int cluster_start_held(struct cluster *c, int n, int held, unsigned mem_mb, const char *extra);
/* The same with node ns_node (its daemon and VMMs) in a network namespace of its own,
 * linked to the host by a veth pair that netns_cut(&c->ns) cuts: etcd and the other
 * daemons' peer channels listen on the host's end too. -EPERM with why when no namespace
 * can be made here (not root, no iproute2): skip. */
int cluster_start_netns(struct cluster *c, int n, unsigned mem_mb, const char *extra, int ns_node,
			char *why, size_t whylen);
/* (Re)start daemon i; env "NAME=VALUE" (may be NULL) is added to its environment. */
int cluster_node_start(struct cluster *c, int i, const char *env);
/* Restart daemon i (kill -9, then start) with a configuration written again from its
 * node_proc: how a test gives one node another vmm or mem. 0 or -errno. */
int cluster_node_reconfigure(struct cluster *c, int i);
/* Start a second daemon with node i's name (and its own state dir, c->twin_state): a
 * copied configuration. Killed by the teardown. */
int cluster_twin_start(struct cluster *c, int i);
/* Put raw bytes at key (under /cme). 0 or -errno. */
int cluster_put(struct cluster *c, const char *key, const char *val);
/* kill -9 daemon i and reap it (its VMMs keep running). */
void cluster_node_kill(struct cluster *c, int i);
/* kill -9 every VMM daemon i started (PIDs from their meta.json). */
void cluster_node_kill_vmms(struct cluster *c, int i);
/* Signal daemon i and every VMM it started (SIGSTOP, SIGCONT: a frozen host). */
void cluster_node_signal_all(struct cluster *c, int i, int sig);
/* The node index vm's owner record names (-1: none); *epoch (may be NULL) its epoch. */
int cluster_owner(struct cluster *c, const char *vm, long long *epoch);
/* The node index the leader record names, -1 if none. */
int cluster_leader(struct cluster *c);
/* True when `cmectl events` lists an event of kind (about vm, if not NULL). */
bool cluster_has_event(struct cluster *c, const char *kind, const char *vm);
/* Wait up to ms for daemon i to exit by itself; its exit status, or -1. */
int cluster_node_wait(struct cluster *c, int i, int ms);
/* Index of the node called name, -1 if none. */
int cluster_node_index(struct cluster *c, const char *name);

/* Run cmectl with the cluster's etcd and the given arguments (NULL-terminated); stdout
 * into *out, stderr into *err (both malloc'd, may be NULL to discard). Exit status. */
int cmectl(struct cluster *c, char **out, char **err, const char *arg, ...)
	__attribute__((sentinel));

/* A cmectl run that must have succeeded (rc 0); prints what it said otherwise; frees out
 * and err. */
void cluster_expect_ok(const char *what, int rc, char *out, char *err);
/* A cmectl run that must have ended with status want, its stderr saying text; frees out
 * and err. */
void cluster_expect_said(int rc, int want, const char *text, char *out, char *err);

/* Read one record (key under /cme, e.g. "vms/vm1/owner") as JSON; NULL when absent. */
json_t *cluster_get(struct cluster *c, const char *key);
/* Poll until record key's field equals want (string) or ms pass. */
bool cluster_wait_field(struct cluster *c, const char *key, const char *field, const char *want,
			int ms);

/* The PID of the VMM of vm on node i from its meta.json if that process still runs, else 0. */
pid_t cluster_vmm_pid(struct cluster *c, int i, const char *vm);
/* vm's VMM on node i answers "status" (its control socket): the reply, or NULL when it
 * does not answer within 2 s. Caller decrefs. */
json_t *cluster_vmm_status(struct cluster *c, int i, const char *vm);
/* The same with another command (no arguments); NULL when the VMM did not answer. */
json_t *cluster_vmm_request(struct cluster *c, int i, const char *vm, const char *cmd);
/* The console file of vm on node i. */
void cluster_console(struct cluster *c, int i, const char *vm, char *buf, size_t len);
/* The whole heartbeat lines of a console file (vmm_heartbeats): returns how many there
 * are, at most max of them stored in hb. */
int cluster_heartbeats(const char *console, struct heartbeat *hb, int max);
/* True when the console file contains "CORRUPT". */
bool cluster_console_corrupt(const char *console);
/* An empty 8 MiB disk image in the test's folder, path in path. False (the test skipped
 * with the reason) when its file system takes no user extended attributes, which the
 * owner epoch on an image (--epoch) needs. */
bool cluster_disk_image(char *path, size_t len);

/* Kill everything the running test's cluster started (registered by cluster_start). */
void cluster_teardown(void);

#endif
