/* cmectl vm create: write a VM's spec (create-if-absent) after checking it, its files and
 * the cluster's capacity; then wait until a node runs it. */
#include "cmectl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define CMD "vm create"

struct create_args {
	const char *name, *mem, *vcpus, *image, *kernel, *initrd, *cmdline, *restart, *group,
		*priority, *disk, *pin_vcpus, *cgroup, *cpu_template, *boot_sig;
	bool stopped, no_wait, hugepages, ksm, balloon, confidential;
};

static int copy_str(char *dst, size_t len, const char *src, const char *flag)
{
	if (!src)
		return CTL_OK;
	if (strlen(src) >= len)
		return ctl_usage(CMD ": %s: longer than %zu bytes", flag, len - 1);
	memcpy(dst, src, strlen(src) + 1);
	return CTL_OK;
}

static int parse_priority(const char *s, int *out)
{
	char *end;
	long v;

	if (!s)
		return CTL_OK;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || !*s || *end || v < -1000000 || v > 1000000)
		return ctl_usage(CMD ": --priority %s: expected a whole number from -1000000 to "
				     "1000000",
				 s);
	*out = (int)v;
	return CTL_OK;
}

static int parse_mem(const char *s, uint64_t *mb)
{
	uint64_t bytes;

	if (!s)
		return ctl_usage(CMD ": --mem SIZE is required (e.g. --mem 512M)");
	if (parse_size(s, &bytes))
		return ctl_usage(CMD ": --mem %s: expected a size like 512M or 2G", s);
	if (bytes % (1 << 20))
		return ctl_usage(CMD ": --mem %s: not a whole number of MiB (512M is 512 MiB)", s);
	*mb = bytes >> 20;
	return CTL_OK;
}

/* The spec the arguments describe, before its files are resolved. */
/* --boot-sig FILE (cmectl image sign's): its line "PUBKEY SIG" into the spec. */
static int read_boot_sig(const char *path, struct cl_spec *s)
{
	FILE *f = fopen(path, "r");
	char line[sizeof(s->boot_sig) + 2] = "";
	bool ok = f && fgets(line, sizeof(line), f);

	if (f)
		fclose(f);
	line[strcspn(line, "\r\n")] = 0;
	ok = ok && strlen(line) == 64 + 1 + 128 && line[64] == ' ' &&
	     strspn(line, "0123456789abcdef") == 64 && strspn(line + 65, "0123456789abcdef") == 128;
	if (!ok)
		return ctl_usage(CMD ": --boot-sig %s: %s", path,
				 f ? "not a boot signature (cmectl image sign writes them)"
				   : strerror(errno));
	snprintf(s->boot_sig, sizeof(s->boot_sig), "%s", line);
	return CTL_OK;
}

static int fill_spec(const struct create_args *a, struct cl_spec *s)
{
	struct etcd_err err = { "" };
	uint64_t n;

	memset(s, 0, sizeof(*s));
	if (parse_mem(a->mem, &s->mem_mb))
		return CTL_USAGE;
	if (!a->vcpus)
		return ctl_usage(CMD ": --vcpus N is required");
	if (ctl_args_uint(CMD, "--vcpus", a->vcpus, 1, 1024, &n))
		return CTL_USAGE;
	s->vcpus = (uint32_t)n;
	if (copy_str(s->name, sizeof(s->name), a->name, "NAME") ||
	    copy_str(s->image, sizeof(s->image), a->image, "--image") ||
	    copy_str(s->kernel, sizeof(s->kernel), a->kernel, "--kernel") ||
	    copy_str(s->initrd, sizeof(s->initrd), a->initrd, "--initrd") ||
	    copy_str(s->cmdline, sizeof(s->cmdline), a->cmdline, "--cmdline") ||
	    copy_str(s->restart, sizeof(s->restart), a->restart ? a->restart : "on-failure",
		     "--restart") ||
	    copy_str(s->group, sizeof(s->group), a->group, "--group") ||
	    copy_str(s->disk, sizeof(s->disk), a->disk, "--disk") ||
	    copy_str(s->pin_vcpus, sizeof(s->pin_vcpus), a->pin_vcpus, "--pin-vcpus") ||
	    copy_str(s->cgroup, sizeof(s->cgroup), a->cgroup, "--cgroup") ||
	    parse_priority(a->priority, &s->priority))
		return CTL_USAGE;
	if (a->cpu_template &&
	    (!a->cpu_template[0] || cpu_template_level(a->cpu_template) < 0 ||
	     copy_str(s->cpu_template, sizeof(s->cpu_template), a->cpu_template, "--cpu-template")))
		return ctl_usage(
			CMD ": --cpu-template %s: unknown CPU template (one of " CPU_TEMPLATE_NAMES
			    ")",
			a->cpu_template);
	if (a->boot_sig && read_boot_sig(a->boot_sig, s))
		return CTL_USAGE;
	s->running = !a->stopped;
	s->hugepages = a->hugepages;
	s->ksm = a->ksm;
	s->balloon = a->balloon;
	s->confidential = a->confidential;
	s->created_ms = wall_ms();
	if (cl_spec_check(s, &err))
		return ctl_usage(CMD " %s: %s", a->name, err.msg);
	return CTL_OK;
}

/* Make path absolute; it must exist here (and, the operator's promise, on every node). */
static int resolve(char *path, const char *flag)
{
	char *abs;

	if (!path[0])
		return CTL_OK;
	abs = realpath(path, NULL);
	if (!abs)
		return ctl_fail(CMD ": %s %s: %s", flag, path, strerror(errno));
	if (strlen(abs) >= CL_PATH_MAX) {
		free(abs);
		return ctl_fail(CMD ": %s %s: the absolute path is too long", flag, path);
	}
	strcpy(path, abs);
	free(abs);
	return CTL_OK;
}

/* The disk's image path made absolute, its options (,ro ,direct) kept. */
static int resolve_disk(char *disk)
{
	char path[CL_PATH_MAX], *opts = strchr(disk, ',');
	size_t plen = opts ? (size_t)(opts - disk) : strlen(disk);
	int rc;

	if (!disk[0])
		return CTL_OK;
	snprintf(path, sizeof(path), "%.*s", (int)plen, disk);
	rc = resolve(path, "--disk");
	if (rc)
		return rc;
	if (strlen(path) + strlen(opts ? opts : "") >= CL_PATH_MAX)
		return ctl_fail(CMD ": --disk %s: the absolute path is too long", disk);
	memmove(disk + strlen(path), disk + plen, strlen(disk + plen) + 1);
	memcpy(disk, path, strlen(path));
	return CTL_OK;
}

/* A confidential VM only in a cluster whose every node knows the key: an older node would
 * place and start it unencrypted. NULL, or the node that does not. */
static const struct cl_node_view *unaware_node(const struct cl_view *v)
{
	for (size_t i = 0; i < v->nnodes; i++)
		if (v->nodes[i].alive && !cl_node_knows_confidential(&v->nodes[i].node))
			return &v->nodes[i];
	return NULL;
}

/* Refuse a name in use, and check that some node can run the VM now (its CPU template
 * included). */
static int check_cluster(struct ctl *c, const struct cl_spec *s)
{
	char need[1024];
	struct ha_vm vm = { .name = s->name,
			    .vcpus = s->vcpus,
			    .mem_mb = s->mem_mb,
			    .group = s->group,
			    .priority = s->priority,
			    .wanted = true,
			    .cpu_need = cl_spec_cpu_need(s, need, sizeof(need)),
			    .confidential = s->confidential };
	struct cl_view v;
	struct cl_ha h;
	char why[1024];
	const struct cl_node_view *old;
	long i;
	int rc = ctl_view(c, &v);

	if (rc)
		return rc;
	i = ctl_vm_index(&v, s->name);
	if (s->confidential && (old = unaware_node(&v)))
		rc = ctl_fail("node %s runs cme-clusterd %s, which does not know confidential VMs "
			      "(it would start one unencrypted): upgrade it first",
			      old->name, old->node.version[0] ? old->node.version : "(unknown)");
	else if (i >= 0 && v.vms[i].has_spec)
		rc = ctl_fail("vm %s already exists", s->name);
	else if (i >= 0 && ctl_vm_exists(&v.vms[i]))
		rc = ctl_fail("vm %s is still being deleted (its VMM%s%s is stopping); try again "
			      "shortly",
			      s->name, v.vms[i].has_status ? " on " : "", v.vms[i].status.node);
	else if (s->running && !(rc = ctl_view_ha(&v, &h))) {
		if (ha_place(&h.c, &vm, NULL, why, sizeof(why)) < 0)
			rc = ctl_fail("not enough capacity: %s", why);
		cl_ha_free(&h);
	}
	cl_view_free(&v);
	return rc;
}

static int put_spec(struct ctl *c, const struct cl_spec *s, int64_t *rev)
{
	struct etcd_err err = { "" };
	char key[CTL_KEY_MAX], *val = cl_spec_json(s);
	struct etcd_kv *kv = NULL;
	bool created = false;
	int rc = CTL_OK;

	if (!val)
		return ctl_fail("out of memory");
	if (etcd_create(c->etcd, ctl_key(c, key, "vms", s->name, "spec"), val, strlen(val), 0,
			&created, &kv, &err))
		rc = ctl_fail("creating vm %s: %s", s->name, err.msg);
	else if (!created)
		rc = ctl_fail("vm %s already exists", s->name);
	else
		*rev = kv ? kv->mod_rev : 0;
	etcd_kv_free(kv);
	free(val);
	return rc;
}

static int create(struct ctl *c, const struct create_args *a)
{
	struct cl_status st;
	struct cl_spec s;
	int64_t rev = 0;
	int rc = fill_spec(a, &s);

	if (rc || (rc = resolve(s.image, "--image")) || (rc = resolve(s.kernel, "--kernel")) ||
	    (rc = resolve(s.initrd, "--initrd")) || (rc = resolve_disk(s.disk)) ||
	    (rc = check_cluster(c, &s)) || (rc = put_spec(c, &s, &rev)))
		return rc;
	ctl_event(c, s.name, "created",
		  "vm %s created by cmectl: %" PRIu32 " vCPUs, %" PRIu64 " MiB%s", s.name, s.vcpus,
		  s.mem_mb, s.running ? "" : ", stopped");
	if (a->stopped || a->no_wait) {
		if (c->json)
			ctl_out_json(json_pack("{s:s, s:s, s:n}", "vm", s.name, "result", "created",
					       "status"));
		else
			printf("vm %s created%s\n", s.name, a->stopped ? " (stopped)" : "");
		return CTL_OK;
	}
	if (!c->json)
		printf("vm %s created; waiting for it to run\n", s.name);
	rc = ctl_wait_vm(c, s.name, WANT_RUNNING, rev, &st);
	if (!rc)
		ctl_wait_vm_report(c, s.name, WANT_RUNNING, &st);
	return rc;
}

int ctl_cmd_vm_create(struct ctl *c, int argc, char **argv)
{
	struct create_args a = { 0 };
	const struct flag flags[] = {
		{ "--mem", NULL, FL_STR, NULL, &a.mem },
		{ "--vcpus", NULL, FL_STR, NULL, &a.vcpus },
		{ "--image", NULL, FL_STR, NULL, &a.image },
		{ "--kernel", NULL, FL_STR, NULL, &a.kernel },
		{ "--initrd", NULL, FL_STR, NULL, &a.initrd },
		{ "--cmdline", NULL, FL_STR, NULL, &a.cmdline },
		{ "--restart", NULL, FL_STR, NULL, &a.restart },
		{ "--group", NULL, FL_STR, NULL, &a.group },
		{ "--priority", NULL, FL_STR, NULL, &a.priority },
		{ "--disk", NULL, FL_STR, NULL, &a.disk },
		{ "--pin-vcpus", NULL, FL_STR, NULL, &a.pin_vcpus },
		{ "--cgroup", NULL, FL_STR, NULL, &a.cgroup },
		{ "--cpu-template", NULL, FL_STR, NULL, &a.cpu_template },
		{ "--boot-sig", NULL, FL_STR, NULL, &a.boot_sig },
		{ "--hugepages", NULL, FL_BOOL, &a.hugepages, NULL },
		{ "--ksm", NULL, FL_BOOL, &a.ksm, NULL },
		{ "--balloon", NULL, FL_BOOL, &a.balloon, NULL },
		{ "--confidential", NULL, FL_BOOL, &a.confidential, NULL },
		{ "--stopped", NULL, FL_BOOL, &a.stopped, NULL },
		{ "--no-wait", NULL, FL_BOOL, &a.no_wait, NULL },
		{ 0 },
	};
	int rc = ctl_args_parse(c, CMD, argc, argv, flags, "NAME", &a.name);

	return rc ? rc : create(c, &a);
}
