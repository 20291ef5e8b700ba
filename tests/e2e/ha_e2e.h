/* What the end-to-end HA suites share (test_ha.c): one cluster per test, and the steps
 * their tests are made of. */
#ifndef CME_E2E_HA_H
#define CME_E2E_HA_H

#include "e2e_cluster.h"

#define NODE_MEM_MB 1536
#define WAIT_MS	    30000

extern struct cluster C; /* cluster_vm.c: the one cluster of the test that runs */

#define START(n, extra) CU_ASSERT_FATAL(cluster_start_conf(&C, n, NODE_MEM_MB, extra) == 0)

/* A VM with a restart policy and priority; image NULL: the self-checking test guest. */
void create(const char *name, const char *restart, const char *prio, const char *image);
/* `cmectl node VERB` of node i ("drain", "undrain", ...), which must succeed. */
void admin(const char *verb, int node);
/* The node index vm's owner record comes to name (-1 after WAIT_MS). */
int wait_owner(const char *vm);
/* Wait until vm's owner is another node than from, at epoch: its index, or -1. */
int wait_moved(const char *vm, int from, long long epoch);
/* Wait up to ms until vm's status is state with text in its error (NULL: any). */
bool wait_status_has(const char *vm, const char *state, const char *text, int ms);
/* Put every listed VM on node `on` (the others are drained meanwhile). */
void create_on(int on, const char *const *names, const char *const *prios,
	       const char *const *images, size_t n);
/* The host of node i dies: its daemon and every VMM it started, kill -9. */
void kill_host(int i);
/* Every daemon has run longer than its peer channel's start hold. */
void wait_daemons_settled(void);

#endif
