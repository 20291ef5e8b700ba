/* The helpers of cluster_vm.h. */
#include "cluster_vm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cluster C;

void create_vm(const char *name, const char *mem, const char *cmdline)
{
	char *out = NULL, *err = NULL;
	int rc = cmectl(&C, &out, &err, "vm", "create", name, "--mem", mem, "--vcpus", "1",
			"--image", test_guest(), "--cmdline", cmdline, NULL);

	cluster_expect_ok("vm create", rc, out, err);
}

/* The node index the owner record names, -1 if none; *epoch (may be NULL) its epoch. */
int owner_of(const char *vm, long long *epoch)
{
	return cluster_owner(&C, vm, epoch);
}

bool wait_running(const char *vm)
{
	char key[128];

	snprintf(key, sizeof(key), "vms/%s/status", vm);
	return cluster_wait_field(&C, key, "state", "running", WAIT_MS);
}

/* How many nodes run a VMM of vm right now (must never exceed one). */
int copies(const char *vm)
{
	int n = 0;

	for (int i = 0; i < C.n; i++)
		n += cluster_vmm_pid(&C, i, vm) > 0;
	return n;
}

/* The VMM processes of vm, once a source that handed the guest over has exited (it may
 * take a moment after "done" on a busy machine). */
int settled_copies(const char *vm)
{
	for (int t = 0; t < WAIT_MS && copies(vm) > 1; t += 100)
		sleep_ms(100);
	return copies(vm);
}

/* vm's VMM on node has exited (waits for it): the source of a finished migration. */
bool gone_from(int node, const char *vm)
{
	for (int t = 0; t < WAIT_MS && cluster_vmm_pid(&C, node, vm) > 0; t += 100)
		sleep_ms(100);
	return cluster_vmm_pid(&C, node, vm) == 0;
}

bool wait_heartbeats(int node, const char *vm, int n)
{
	char con[700];

	cluster_console(&C, node, vm, con, sizeof(con));
	for (int t = 0; t < WAIT_MS; t += 100, sleep_ms(100))
		if (cluster_heartbeats(con, NULL, 0) >= n)
			return true;
	return false;
}

/* The last heartbeat seq on a console (0 if none) and the count. */
int last_seq(int node, const char *vm, uint64_t *seq, uint64_t *first)
{
	struct heartbeat *hb = calloc(8192, sizeof(*hb));
	char con[700];
	int n;

	cluster_console(&C, node, vm, con, sizeof(con));
	n = cluster_heartbeats(con, hb, 8192);
	n = n < 8192 ? n : 8192;
	*seq = n ? hb[n - 1].seq : 0;
	if (first)
		*first = n ? hb[0].seq : 0;
	free(hb);
	return n;
}

/* After a live migration src → dst: the guest's sequence went on, no reset, no damage. */
void assert_continued(const char *vm, int src, int dst)
{
	uint64_t src_last, dst_first, dst_last;
	char con[700];

	CU_ASSERT_TRUE(wait_heartbeats(dst, vm, 5));
	last_seq(src, vm, &src_last, NULL);
	last_seq(dst, vm, &dst_last, &dst_first);
	if (dst_first < src_last + 1 || dst_first > src_last + 2)
		printf("\n  %s: source ended at seq %lu, destination began at %lu\n", vm,
		       (unsigned long)src_last, (unsigned long)dst_first);
	CU_ASSERT_TRUE(src_last > 0);
	CU_ASSERT_TRUE(dst_first >= src_last + 1 && dst_first <= src_last + 2);
	CU_ASSERT_TRUE(dst_last > dst_first);
	cluster_console(&C, dst, vm, con, sizeof(con));
	CU_ASSERT_FALSE(cluster_console_corrupt(con));
	cluster_console(&C, src, vm, con, sizeof(con));
	CU_ASSERT_FALSE(cluster_console_corrupt(con));
}

/* Create vm1 (256 MiB, a small working set) and wait until it runs and beats; the node
 * index (-1: it did not) and its VMM's PID. */
int small_vm_running(pid_t *pid)
{
	int node;

	create_vm("vm1", "256M", "wss_mb=32");
	node = owner_of("vm1", NULL);
	if (node < 0 || !wait_running("vm1") || !wait_heartbeats(node, "vm1", 2))
		return -1;
	*pid = cluster_vmm_pid(&C, node, "vm1");
	return *pid > 0 ? node : -1;
}
