/* The cluster of the "cluster" and "migrate" end-to-end suites, and what their tests ask
 * of it: VMs of the test guest, their owners, heartbeats and copies. */
#ifndef CME_CLUSTER_VM_H
#define CME_CLUSTER_VM_H
#include "e2e_cluster.h"

#define NODE_MEM_MB	1536
#define WAIT_MS		30000
#define CL_CPU_MAX_TEST 2048

extern struct cluster C;

#define START_CLUSTER(n)                                                                           \
	do {                                                                                       \
		REQUIRE_KVM();                                                                     \
		CU_ASSERT_FATAL(cluster_start(&C, n, NODE_MEM_MB) == 0);                           \
	} while (0)

/* vm create NAME of the test guest, one vCPU (asserts it succeeds). */
void create_vm(const char *name, const char *mem, const char *cmdline);

/* The node index the owner record names, -1 if none; *epoch (may be NULL) its epoch. */
int owner_of(const char *vm, long long *epoch);

/* Until vms/<vm>/status says running (WAIT_MS). */
bool wait_running(const char *vm);

/* How many nodes run a VMM of vm right now (must never exceed one). */
int copies(const char *vm);

/* The VMM processes of vm, once a source that handed the guest over has exited (it may
 * take a moment after "done" on a busy machine). */
int settled_copies(const char *vm);

/* vm's VMM on node has exited (waits for it): the source of a finished migration. */
bool gone_from(int node, const char *vm);

/* Until node's console of vm holds n heartbeats (WAIT_MS). */
bool wait_heartbeats(int node, const char *vm, int n);

/* The last heartbeat seq on a console (0 if none) and the count. */
int last_seq(int node, const char *vm, uint64_t *seq, uint64_t *first);

/* After a live migration src → dst: the guest's sequence went on, no reset, no damage. */
void assert_continued(const char *vm, int src, int dst);

/* Create vm1 (256 MiB, a small working set) and wait until it runs and beats; the node
 * index (-1: it did not) and its VMM's PID. */
int small_vm_running(pid_t *pid);

#endif
