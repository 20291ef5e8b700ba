/* cmectl vm migrate: check the request against the cluster, create migrations/<vm> with
 * phase "requested" (compare-and-swap on the record's mod_revision), then follow the
 * record with a watch while the nodes advance it. */
#include "cmectl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

struct mig_req {
	const char *vm, *to;
	/* what the operator asks of the VMMs (0: their defaults) */
	unsigned postcopy_after;
	uint64_t max_bandwidth, downtime_ms;
	char source[CL_NAME_MAX], target[CL_NAME_MAX];
	int64_t mig_rev; /* the existing record's mod_revision, 0 when there is none */
};

/* The target offers every CPU feature the VM sees (its template's, or on "host" its
 * node's): a destination without one would refuse the migration anyway. */
static int check_cpu(const struct ha_node *n, const struct ha_vm *vm, const struct cl_spec *s)
{
	char lacks[512];

	if (!ha_cpu_lacks(n, vm, lacks, sizeof(lacks)))
		return CTL_OK;
	if (!n->cpu_features)
		return ctl_fail("target %s publishes no CPU features (an older cme-clusterd): it "
				"cannot be shown to run vm %s's CPU",
				n->name, vm->name);
	return ctl_fail("target %s lacks CPU features %s that vm %s sees (cpu template %s)",
			n->name, lacks, vm->name, s->cpu_template[0] ? s->cpu_template : "host");
}

/* The target node named by --to: known, up, schedulable, not the source, offering the
 * VM's CPU features, with room. */
static int check_target(const struct cl_view *v, const struct cl_ha *h, long vi, struct mig_req *r)
{
	const struct cl_vm_view *vv = &v->vms[vi];
	long i = ctl_node_index(v, r->to);
	const char *no;
	uint32_t cpus;
	uint64_t mem, free_mem;
	uint32_t free_cpus;

	if (i < 0)
		return ctl_fail("unknown node %s", r->to);
	if ((no = ctl_node_refusal(&v->nodes[i])))
		return ctl_fail("target %s is %s", r->to, no);
	if (!strcmp(r->to, vv->owner.node))
		return ctl_fail("vm %s already runs on %s", vv->name, r->to);
	if (check_cpu(&h->nodes[i], &h->vms[vi], &vv->spec))
		return CTL_FAIL;
	ha_node_usage(&h->c, (size_t)i, &cpus, &mem);
	free_cpus = h->nodes[i].cpus > cpus ? h->nodes[i].cpus - cpus : 0;
	free_mem = h->nodes[i].mem_mb > mem ? h->nodes[i].mem_mb - mem : 0;
	if (free_cpus < vv->spec.vcpus || free_mem < vv->spec.mem_mb)
		return ctl_fail("not enough capacity on %s: it has %" PRIu64 " MiB/%" PRIu32
				" vCPUs free, vm %s needs %" PRIu64 " MiB/%" PRIu32 " vCPUs",
				r->to, free_mem, free_cpus, vv->name, vv->spec.mem_mb,
				vv->spec.vcpus);
	snprintf(r->target, sizeof(r->target), "%s", r->to);
	return CTL_OK;
}

/* Without --to: where ha would place the VM, its current node excluded. */
static int pick_target(const struct cl_view *v, const struct cl_ha *h, long vi, struct mig_req *r)
{
	char why[1024];
	int n = ha_place(&h->c, &h->vms[vi], v->vms[vi].owner.node, why, sizeof(why));

	if (n < 0)
		return ctl_fail("not enough capacity: %s", why);
	snprintf(r->target, sizeof(r->target), "%s", v->nodes[n].name);
	return CTL_OK;
}

static int check_vm(const struct cl_vm_view *vv, const char *vm)
{
	if (!vv || !vv->has_spec)
		return ctl_fail("unknown vm %s", vm);
	if (!vv->has_owner)
		return ctl_fail("vm %s is not placed on any node yet", vm);
	if (vv->spec.confidential)
		return ctl_fail("vm %s is confidential (AMD SEV): its memory cannot move live; "
				"stop it, drain its node (cmectl node drain), and start it: it "
				"boots afresh on another node that offers SEV",
				vm);
	if (!vv->has_status || strcmp(vv->status.state, "running"))
		return ctl_fail("vm %s is not running (%s%s%s); only a running VM migrates live",
				vm, vv->has_status ? vv->status.state : "no status",
				vv->has_status ? " on " : "",
				vv->has_status ? vv->status.node : "");
	if (vv->has_mig && cl_migration_pending(&vv->mig))
		return ctl_fail("migration of %s is already running (phase %s to %s)", vm,
				vv->mig.phase, vv->mig.target);
	return CTL_OK;
}

/* Every check, in the documented order; fills r->source, r->target and r->mig_rev. */
static int plan(struct ctl *c, struct mig_req *r)
{
	struct cl_view v;
	struct cl_ha h;
	long vi;
	int rc = ctl_view(c, &v);

	if (rc)
		return rc;
	vi = ctl_vm_index(&v, r->vm);
	rc = check_vm(vi >= 0 ? &v.vms[vi] : NULL, r->vm);
	if (!rc && !(rc = ctl_view_ha(&v, &h))) {
		rc = r->to ? check_target(&v, &h, vi, r) : pick_target(&v, &h, vi, r);
		cl_ha_free(&h);
	}
	if (!rc) {
		snprintf(r->source, sizeof(r->source), "%s", v.vms[vi].owner.node);
		r->mig_rev = v.vms[vi].has_mig ? v.vms[vi].mig.mod_rev : 0;
	}
	cl_view_free(&v);
	return rc;
}

static int new_id(char *buf, size_t len)
{
	uint8_t b[8];

	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
		return ctl_fail("no random bytes for a migration id: %s", strerror(errno));
	for (size_t i = 0; i < sizeof(b) && 2 * i + 2 < len; i++)
		snprintf(buf + 2 * i, 3, "%02x", b[i]);
	return CTL_OK;
}

/* Create the record unless another migration was created since plan() read it. */
static int request(struct ctl *c, const struct mig_req *r, struct cl_migration *m, int64_t *rev)
{
	struct etcd_err err = { "" };
	char key[CTL_KEY_MAX], *val;
	bool swapped = false;
	int rc;

	memset(m, 0, sizeof(*m));
	if ((rc = new_id(m->id, sizeof(m->id))))
		return rc;
	snprintf(m->vm, sizeof(m->vm), "%s", r->vm);
	snprintf(m->source, sizeof(m->source), "%s", r->source);
	snprintf(m->target, sizeof(m->target), "%s", r->target);
	snprintf(m->phase, sizeof(m->phase), "requested");
	snprintf(m->by, sizeof(m->by), "cmectl");
	m->postcopy_after = r->postcopy_after;
	m->max_bandwidth = r->max_bandwidth;
	m->downtime_ms = r->downtime_ms;
	m->requested_ms = m->updated_ms = wall_ms();
	if (!(val = cl_migration_json(m)))
		return ctl_fail("out of memory");
	if (ctl_put_if_mod(c->etcd, ctl_key(c, key, "migrations", r->vm, NULL), r->mig_rev, val,
			   &swapped, rev, &err))
		rc = ctl_fail("requesting the migration of %s: %s", r->vm, err.msg);
	else if (!swapped)
		rc = ctl_fail("a migration of %s was started concurrently", r->vm);
	free(val);
	return rc;
}

/* ---- following the record ----------------------------------------------------------- */

struct follow {
	struct ctl *c;
	const char *vm;
	char id[40];
	bool tty, drawn;
	struct cl_migration m; /* the last version seen */
	int result;
};

static void show(struct follow *f, const struct cl_migration *m, bool phase_changed)
{
	char line[256];

	if (f->c->json)
		return;
	if (f->tty) {
		ctl_mig_progress(m, line, sizeof(line));
		printf("\r%s\033[K", line);
		f->drawn = true;
	} else if (phase_changed && !strcmp(m->phase, "ready") && m->dest_addr[0]) {
		printf("vm %s: ready (destination listens at %s)\n", f->vm, m->dest_addr);
	} else if (phase_changed && !strcmp(m->phase, "postcopy")) {
		printf("vm %s: postcopy (it runs on %s; the pages it left behind follow from %s)\n",
		       f->vm, m->target, m->source);
	} else if (phase_changed) {
		printf("vm %s: %s\n", f->vm, m->phase);
	}
	fflush(stdout);
}

static int finish(struct follow *f, int result, const char *fmt, ...) CME_PRINTF(3, 4);
static int finish(struct follow *f, int result, const char *fmt, ...)
{
	char msg[600];
	va_list ap;

	if (f->drawn)
		printf("\n");
	f->drawn = false;
	f->result = result;
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		ctl_fail("%s", msg);
	}
	return 1;
}

static int on_event(void *opaque, const struct etcd_event *ev)
{
	struct follow *f = opaque;
	struct etcd_err err = { "" };
	struct cl_migration m;
	bool changed;

	if (ev->type == ETCD_EV_DELETE)
		return finish(f, CTL_FAIL, "the migration record of %s was deleted (the VM too?)",
			      f->vm);
	if (ev->type != ETCD_EV_PUT ||
	    cl_migration_parse((const char *)ev->kv->val, ev->kv->vlen, &m, &err))
		return 0;
	if (strcmp(m.id, f->id))
		return finish(f, CTL_FAIL, "migration of %s was replaced by another (id %s, %s)",
			      f->vm, m.id, m.phase);
	changed = strcmp(m.phase, f->m.phase) != 0;
	f->m = m;
	show(f, &m, changed);
	if (!strcmp(m.phase, "failed"))
		return finish(f, CTL_FAIL, "migration of %s from %s to %s failed: %s", f->vm,
			      m.source, m.target, m.error[0] ? m.error : "no reason given");
	if (!strcmp(m.phase, "postcopy-broken"))
		return finish(f, CTL_FAIL,
			      "migration of %s from %s to %s broke in post-copy, after the switch: "
			      "%s; the guest is paused on %s as of the switch, and the cluster "
			      "takes it back there once %s's VMM is known to be gone (cmectl vm "
			      "show %s)",
			      f->vm, m.source, m.target, m.error[0] ? m.error : "no reason given",
			      m.source, m.target, f->vm);
	if (!strcmp(m.phase, "done"))
		return finish(f, CTL_OK, NULL);
	return 0;
}

static void report_done(const struct follow *f)
{
	char line[256];

	if (f->c->json) {
		ctl_out_json(ctl_out_rec(cl_migration_json(&f->m)));
		return;
	}
	ctl_mig_summary(&f->m, line, sizeof(line));
	printf("vm %s migrated %s → %s: %s\n", f->vm, f->m.source, f->m.target, line);
}

/* After a timeout: the record as it stands (a watch retries a dead etcd silently). */
static int reread(struct ctl *c, struct follow *f, struct etcd_err *err)
{
	char key[CTL_KEY_MAX];
	struct etcd_kv *kv = NULL;
	struct cl_migration m;
	int rc = etcd_get(c->etcd, ctl_key(c, key, "migrations", f->vm, NULL), &kv, err);

	if (!rc && kv && !cl_migration_parse((const char *)kv->val, kv->vlen, &m, err) &&
	    !strcmp(m.id, f->id))
		f->m = m;
	etcd_kv_free(kv);
	return rc;
}

static int follow(struct ctl *c, const struct cl_migration *m, int64_t rev)
{
	struct follow f = { .c = c, .vm = m->vm, .tty = isatty(1) };
	struct etcd_err err = { "" };
	char key[CTL_KEY_MAX];
	bool timed_out;
	int rc;

	snprintf(f.id, sizeof(f.id), "%s", m->id);
	if (!c->json)
		printf("migration %s of vm %s: %s → %s\n", m->id, m->vm, m->source, m->target);
	rc = ctl_wait_watch(c, ctl_key(c, key, "migrations", m->vm, NULL), false, rev, on_event, &f,
			    c->timeout_s, &timed_out, &err);
	if (rc == 1) {
		if (f.result == CTL_OK)
			report_done(&f);
		return f.result;
	}
	finish(&f, CTL_FAIL, NULL);
	if (timed_out && reread(c, &f, &err))
		return ctl_fail("following the migration of %s: %s", m->vm, err.msg);
	if (timed_out && (!strcmp(f.m.phase, "committed") || !strcmp(f.m.phase, "postcopy")))
		return ctl_fail("migration of %s is committed (it runs on %s now) but %s has not "
				"reported done after %u s (cmectl vm show %s)",
				m->vm, m->target, m->source, c->timeout_s, m->vm);
	if (timed_out)
		return ctl_fail("migration of %s is still %s after %u s; it goes on in the "
				"background (cmectl vm show %s)",
				m->vm, f.m.phase[0] ? f.m.phase : "requested", c->timeout_s, m->vm);
	return ctl_fail("following the migration of %s: %s", m->vm, err.msg);
}

/* --postcopy, --postcopy-after N, --max-bandwidth RATE, --downtime-ms MS into r. */
static int tuning(struct mig_req *r, bool postcopy, const char *after, const char *bw,
		  const char *downtime)
{
	const char *cmd = "vm migrate";
	uint64_t n = 0;

	if (after && ctl_args_uint(cmd, "--postcopy-after", after, 1, 1000, &n))
		return CTL_USAGE;
	r->postcopy_after = (unsigned)(n ? n : postcopy ? 1 : 0);
	if (bw && (parse_size(bw, &r->max_bandwidth) || !r->max_bandwidth))
		return ctl_usage("%s: --max-bandwidth %s: expected bytes per second, like 100M",
				 cmd, bw);
	if (downtime && ctl_args_uint(cmd, "--downtime-ms", downtime, 1, 600000, &r->downtime_ms))
		return CTL_USAGE;
	return CTL_OK;
}

int ctl_cmd_vm_migrate(struct ctl *c, int argc, char **argv)
{
	struct mig_req r = { 0 };
	bool no_wait = false, postcopy = false;
	const char *after = NULL, *bw = NULL, *downtime = NULL;
	const struct flag flags[] = { { "--to", NULL, FL_STR, NULL, &r.to },
				      { "--no-wait", NULL, FL_BOOL, &no_wait, NULL },
				      { "--postcopy", NULL, FL_BOOL, &postcopy, NULL },
				      { "--postcopy-after", NULL, FL_STR, NULL, &after },
				      { "--max-bandwidth", NULL, FL_STR, NULL, &bw },
				      { "--downtime-ms", NULL, FL_STR, NULL, &downtime },
				      { 0 } };
	struct cl_migration m;
	int64_t rev = 0;
	int rc = ctl_args_parse(c, "vm migrate", argc, argv, flags, "NAME", &r.vm);

	if (rc || (rc = tuning(&r, postcopy, after, bw, downtime)) || (rc = plan(c, &r)) ||
	    (rc = request(c, &r, &m, &rev)))
		return rc;
	ctl_event(c, r.vm, "migrate", "migration %s of vm %s from %s to %s requested by cmectl",
		  m.id, r.vm, r.source, r.target);
	if (!no_wait)
		return follow(c, &m, rev);
	if (c->json)
		ctl_out_json(ctl_out_rec(cl_migration_json(&m)));
	else
		printf("%s\n", m.id);
	return CTL_OK;
}
