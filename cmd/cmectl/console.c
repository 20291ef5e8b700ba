/* cmectl vm console: the VM's console log is a file on the node that runs it (its status
 * record names it). When that file is readable here, print it, or follow it like tail -f,
 * switching files when the VM moves to another node. */
#include "cmectl.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FOLLOW_POLL_MS	200
#define STATUS_EVERY_MS 1000

/* The line for a console that is not on this host. */
static int elsewhere(struct ctl *c, const char *vm, const struct cl_status *st)
{
	struct etcd_err err = { "" };
	char key[CTL_KEY_MAX];
	struct etcd_kv *kv = NULL;
	struct cl_node n = { .addr = "node down" };

	if (!etcd_get(c->etcd, ctl_key(c, key, "nodes", st->node, NULL), &kv, &err) && kv &&
	    cl_node_parse((const char *)kv->val, kv->vlen, &n, &err))
		snprintf(n.addr, sizeof(n.addr), "address unknown");
	etcd_kv_free(kv);
	return ctl_fail("console of vm %s is on node %s (%s); run cmectl there", vm,
			ctl_out_dash(st->node), n.addr);
}

/* No status record: an unknown VM, or one no node runs. */
static int no_status(struct ctl *c, const char *vm)
{
	struct etcd_err err = { "" };
	char key[CTL_KEY_MAX];
	struct etcd_kv *kv = NULL;
	int rc;

	if (etcd_get(c->etcd, ctl_key(c, key, "vms", vm, "spec"), &kv, &err))
		return ctl_fail("reading vm %s: %s", vm, err.msg);
	rc = kv ? ctl_fail("vm %s is not running on any node: no console to show", vm)
		: ctl_fail("unknown vm %s", vm);
	etcd_kv_free(kv);
	return rc;
}

/* Open the console named by the status, or say why it cannot be read here. */
static int open_console(struct ctl *c, const char *vm, const struct cl_status *st, int *fd)
{
	if (!st->console[0])
		return ctl_fail("vm %s has no console log (%s on %s)", vm, st->state,
				ctl_out_dash(st->node));
	*fd = open(st->console, O_RDONLY | O_CLOEXEC);
	if (*fd < 0)
		return elsewhere(c, vm, st);
	return CTL_OK;
}

/* Copy what fd has from its position to stdout; 0 at EOF, -1 on a read error. */
static int drain_fd(int fd)
{
	char buf[65536];
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
			return -1;
	fflush(stdout);
	return n < 0 && errno != EINTR ? -1 : 0;
}

/* A file cut shorter than what was read (rotated or restarted): read it from the top. */
static void rewind_if_truncated(int fd)
{
	struct stat sb;
	off_t pos = lseek(fd, 0, SEEK_CUR);

	if (pos > 0 && !fstat(fd, &sb) && sb.st_size < pos)
		(void)lseek(fd, 0, SEEK_SET);
}

/* Follow until killed: new bytes every 200 ms, the status every second. */
static int follow(struct ctl *c, const char *vm, struct cl_status *st, int *fd)
{
	unsigned waited = 0;
	int rc = CTL_OK;

	for (;;) {
		struct cl_status now;
		bool present;

		if (drain_fd(*fd))
			return ctl_fail("reading %s: %s", st->console, strerror(errno));
		sleep_ms(FOLLOW_POLL_MS);
		rewind_if_truncated(*fd);
		if ((waited += FOLLOW_POLL_MS) < STATUS_EVERY_MS)
			continue;
		waited = 0;
		if (ctl_read_status(c, vm, &now, &present, NULL))
			return CTL_FAIL;
		if (!present || !now.console[0] || !strcmp(now.console, st->console))
			continue;
		(void)drain_fd(*fd); /* the old VMM's last words first */
		close(*fd);
		*fd = -1;
		fprintf(stderr, "--- vm %s is now on %s: %s ---\n", vm, ctl_out_dash(now.node),
			now.console);
		*st = now;
		if ((rc = open_console(c, vm, st, fd)))
			return rc;
	}
}

int ctl_cmd_vm_console(struct ctl *c, int argc, char **argv)
{
	const char *name = NULL;
	bool follow_on = false;
	const struct flag flags[] = { { "--follow", "-f", FL_BOOL, &follow_on, NULL }, { 0 } };
	struct cl_status st;
	bool present = false;
	int fd = -1;
	int rc = ctl_args_parse(c, "vm console", argc, argv, flags, "NAME", &name);

	if (rc || (rc = ctl_connect(c)) || (rc = ctl_read_status(c, name, &st, &present, NULL)))
		return rc;
	if (!present)
		return no_status(c, name);
	if ((rc = open_console(c, name, &st, &fd)))
		return rc;
	if (follow_on)
		rc = follow(c, name, &st, &fd);
	else if (drain_fd(fd))
		rc = ctl_fail("reading %s: %s", st.console, strerror(errno));
	if (fd >= 0)
		close(fd);
	return rc;
}
