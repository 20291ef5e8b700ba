/* A network namespace a test makes for itself: a veth pair to the host, cut and restored
 * by taking the host end down and up. Needs root and iproute2. */
#include "netns.h"
#include "harness.h"

#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *netns_ip_bin(void)
{
	static const char *const paths[] = { "/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip" };

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (access(paths[i], X_OK) == 0)
			return paths[i];
	return NULL;
}

/* Run `ip ARGS...` (NULL-terminated); returns its status, its output in why on failure. */
static int ip_cmd(char *why, size_t len, ...)
{
	const char *argv[16] = { netns_ip_bin() };
	va_list ap;
	int n = 1, rc;
	char *out;

	va_start(ap, len);
	while (n < 15 && (argv[n] = va_arg(ap, const char *)))
		n++;
	va_end(ap);
	argv[n] = NULL;
	rc = test_run(argv, &out, 20000);
	if (rc != 0 && why)
		snprintf(why, len, "ip %s %s: %s", argv[1], argv[2] ? argv[2] : "",
			 out[0] ? out : "failed");
	free(out);
	return rc;
}

static int netns_links(struct netns *n, char *why, size_t len)
{
	char host_cidr[32], ns_cidr[32];

	snprintf(host_cidr, sizeof(host_cidr), "%s/30", n->host_ip);
	snprintf(ns_cidr, sizeof(ns_cidr), "%s/30", n->ns_ip);
	if (ip_cmd(why, len, "link", "add", n->host_if, "type", "veth", "peer", "name", n->ns_if,
		   NULL) ||
	    ip_cmd(why, len, "link", "set", n->ns_if, "netns", n->name, NULL) ||
	    ip_cmd(why, len, "addr", "add", host_cidr, "dev", n->host_if, NULL) ||
	    ip_cmd(why, len, "link", "set", n->host_if, "up", NULL) ||
	    ip_cmd(why, len, "-n", n->name, "addr", "add", ns_cidr, "dev", n->ns_if, NULL) ||
	    ip_cmd(why, len, "-n", n->name, "link", "set", n->ns_if, "up", NULL) ||
	    ip_cmd(why, len, "-n", n->name, "link", "set", "lo", "up", NULL))
		return -1;
	return 0;
}

int netns_make(struct netns *n, char *why, size_t len)
{
	int pid = (int)getpid();

	memset(n, 0, sizeof(*n));
	if (geteuid() != 0)
		return snprintf(why, len, "needs root to make a network namespace"), -1;
	if (!netns_ip_bin())
		return snprintf(why, len, "needs the ip command (iproute2)"), -1;
	snprintf(n->name, sizeof(n->name), "cme-t-%d", pid);
	snprintf(n->host_if, sizeof(n->host_if), "cmeh%d", pid);
	snprintf(n->ns_if, sizeof(n->ns_if), "cmen%d", pid);
	snprintf(n->host_ip, sizeof(n->host_ip), "10.213.%d.1", pid % 250);
	snprintf(n->ns_ip, sizeof(n->ns_ip), "10.213.%d.2", pid % 250);
	if (ip_cmd(why, len, "netns", "add", n->name, NULL))
		return -1;
	n->made = true;
	if (netns_links(n, why, len) < 0) {
		netns_remove(n);
		return -1;
	}
	return 0;
}

int netns_cut(struct netns *n)
{
	return ip_cmd(NULL, 0, "link", "set", n->host_if, "down", NULL) ? -1 : 0;
}

int netns_restore(struct netns *n)
{
	return ip_cmd(NULL, 0, "link", "set", n->host_if, "up", NULL) ? -1 : 0;
}

int netns_add_tap(struct netns *n, const char *tap, char *why, size_t len)
{
	if (ip_cmd(why, len, "-n", n->name, "tuntap", "add", "dev", tap, "mode", "tap", NULL) ||
	    ip_cmd(why, len, "-n", n->name, "link", "set", tap, "up", NULL))
		return -1;
	return 0;
}

bool netns_has_link(struct netns *n, const char *name)
{
	return ip_cmd(NULL, 0, "-n", n->name, "link", "show", name, NULL) == 0;
}

int netns_enter(const struct netns *n)
{
	char path[96];
	int saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC), fd;

	snprintf(path, sizeof(path), "/run/netns/%s", n->name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (saved < 0 || fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
		if (saved >= 0)
			close(saved);
		saved = -1;
	}
	if (fd >= 0)
		close(fd);
	return saved;
}

void netns_leave(int saved)
{
	if (saved < 0)
		return;
	if (setns(saved, CLONE_NEWNET) < 0)
		perror("setns back to the test's network namespace");
	close(saved);
}

void netns_remove(struct netns *n)
{
	if (!n->made)
		return;
	/* Deleting the namespace destroys its veth end, and with it the host's. */
	if (ip_cmd(NULL, 0, "netns", "del", n->name, NULL))
		printf("\n    cannot delete network namespace %s\n", n->name);
	(void)ip_cmd(NULL, 0, "link", "del", n->host_if, NULL);
	n->made = false;
}
