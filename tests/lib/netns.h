/* A network namespace of the running test (tests/lib/netns.c). */
#ifndef CME_TEST_NETNS_H
#define CME_TEST_NETNS_H

#include <stdbool.h>
#include <stddef.h>

/* A network namespace of this test with a veth pair: host_ip on the host end, ns_ip
 * inside (a /30 of 10.213.0.0/16 chosen by PID). */
struct netns {
	char name[32], host_if[16], ns_if[16], host_ip[20], ns_ip[20];
	bool made;
};
/* Build it; returns 0, or -1 with why it cannot be done here (for test_skip). */
int netns_make(struct netns *n, char *why, size_t len) __attribute__((warn_unused_result));
/* Cut the link (the host end down), and restore it. Return 0 or -1. */
int netns_cut(struct netns *n) __attribute__((warn_unused_result));
int netns_restore(struct netns *n) __attribute__((warn_unused_result));
/* Make a tap device NAME inside the namespace (persistent: it outlives the process that
 * attaches to it, as `ip tuntap add` makes them) and bring it up. 0, or -1 with why. */
int netns_add_tap(struct netns *n, const char *tap, char *why, size_t len)
	__attribute__((warn_unused_result));
/* Whether interface NAME exists inside the namespace. */
bool netns_has_link(struct netns *n, const char *name);
/* Move the calling thread into the namespace: what it starts or opens from now on (a
 * VMM, a packet socket) lives there. Returns an fd of the namespace it left, for
 * netns_leave, or -1. */
int netns_enter(const struct netns *n);
void netns_leave(int saved);
/* Delete the namespace and the veth pair (safe to call twice). */
void netns_remove(struct netns *n);
/* The ip command's path, NULL when iproute2 is missing. */
const char *netns_ip_bin(void);

#endif
