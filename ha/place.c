/* ha: where a VM should run, and why nowhere when it cannot. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "ha_priv.h"

enum refusal { FITS, DOWN, ADMIN, EXCLUDED, CPU, SEV, FULL, RIVAL };

/* What one node offers the VM being placed. */
struct verdict {
	enum refusal no;
	uint32_t free_cpus;
	uint64_t free_mem;
	const struct ha_vm *rival; /* RIVAL: the group member already there */
};

/* The reason line, built as nodes are judged; truncated at its size, never overrun. */
struct line {
	char *buf;
	size_t len, off;
	unsigned parts;
};

static void line_add(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void line_add(struct line *l, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!l->buf || l->off + 1 >= l->len)
		return;
	va_start(ap, fmt);
	n = vsnprintf(l->buf + l->off, l->len - l->off, fmt, ap);
	va_end(ap);
	if (n > 0)
		l->off = (size_t)n < l->len - l->off ? l->off + (size_t)n : l->len - 1;
}

static void line_clear(struct line *l)
{
	if (l->buf && l->len)
		l->buf[0] = '\0';
}

static const struct ha_vm *group_rival(const struct ha_view *v, const struct ha_vm *vm, size_t node)
{
	if (!vm->group || !vm->group[0])
		return NULL;
	for (size_t i = 0; i < v->c->nvms; i++) {
		const struct ha_vm *o = &v->c->vms[i];

		if (!ha_same_vm(o, vm) && ha_same(o->group, vm->group) && ha_vm_on(v, i, node))
			return o;
	}
	return NULL;
}

unsigned ha_cpu_lacks(const struct ha_node *n, const struct ha_vm *vm, char *out, size_t len)
{
	return cpu_list_lacks(n->cpu_features, vm->cpu_need, out, len);
}

static struct verdict judge(const struct ha_view *v, const struct ha_vm *vm, size_t node,
			    const char *exclude)
{
	const struct ha_node *n = &v->c->nodes[node];
	struct verdict d = { .no = FITS };
	uint32_t cpus;
	uint64_t mem;

	ha_usage_in(v, node, vm, &cpus, &mem);
	d.free_cpus = n->cpus > cpus ? n->cpus - cpus : 0;
	d.free_mem = n->mem_mb > mem ? n->mem_mb - mem : 0;
	if (!n->alive || ha_same(n->name, v->failed))
		d.no = DOWN;
	else if (n->admin != HA_SCHEDULABLE)
		d.no = ADMIN;
	else if (ha_same(n->name, exclude))
		d.no = EXCLUDED;
	else if (ha_cpu_lacks(n, vm, NULL, 0))
		d.no = CPU;
	else if (vm->confidential && !n->sev)
		d.no = SEV;
	else if (d.free_cpus < vm->vcpus || d.free_mem < vm->mem_mb)
		d.no = FULL;
	else if ((d.rival = group_rival(v, vm, node)))
		d.no = RIVAL;
	return d;
}

static const char *admin_phrase(enum ha_admin a)
{
	switch (a) {
	case HA_DRAINING: return "draining";
	case HA_MAINTENANCE: return "in maintenance";
	default: return "not schedulable";
	}
}

/* "node-b lacks CPU features avx2, bmi2" (or that it publishes none). */
static void say_cpu(struct line *l, const struct ha_node *n, const struct ha_vm *vm)
{
	char lacks[256];

	if (!n->cpu_features) {
		line_add(l, "%s publishes no CPU features (an older cme-clusterd)", n->name);
		return;
	}
	ha_cpu_lacks(n, vm, lacks, sizeof(lacks));
	line_add(l, "%s lacks CPU features %s", n->name, lacks);
}

static void say_refusal(struct line *l, const struct ha_node *n, const struct ha_vm *vm,
			const struct verdict *d)
{
	line_add(l, "%s", l->parts++ ? "; " : "");
	switch (d->no) {
	case DOWN: line_add(l, "%s is down", n->name); break;
	case ADMIN: line_add(l, "%s is %s", n->name, admin_phrase(n->admin)); break;
	case EXCLUDED: line_add(l, "%s is the node it leaves", n->name); break;
	case CPU: say_cpu(l, n, vm); break;
	case SEV: line_add(l, "%s offers no AMD SEV (confidential VMs)", n->name); break;
	case FULL:
		line_add(l, "%s has %" PRIu64 " MiB/%" PRIu32 " vCPUs free", n->name, d->free_mem,
			 d->free_cpus);
		break;
	case RIVAL:
		line_add(l, "%s already runs %s of anti-affinity group \"%s\"", n->name,
			 d->rival->name, d->rival->group);
		break;
	case FITS: break;
	}
}

/* Most MiB free after placement, then most vCPUs, then the smallest name. */
static bool better(const struct ha_cluster *c, size_t a, const struct verdict *da, size_t b,
		   const struct verdict *db)
{
	if (da->free_mem != db->free_mem)
		return da->free_mem > db->free_mem;
	if (da->free_cpus != db->free_cpus)
		return da->free_cpus > db->free_cpus;
	return strcmp(c->nodes[a].name, c->nodes[b].name) < 0;
}

int ha_place_in(const struct ha_view *v, const struct ha_vm *vm, const char *exclude, char *why,
		size_t whylen)
{
	struct line l = { .buf = why, .len = whylen };
	struct verdict best = { .no = FITS }, d;
	int pick = -1;

	/* The reason is written while judging; a success throws it away. */
	line_clear(&l);
	line_add(&l, "no node can take vm %s (%" PRIu32 " vCPUs, %" PRIu64 " MiB): ", vm->name,
		 vm->vcpus, vm->mem_mb);
	if (v->c->nnodes == 0)
		line_add(&l, "the cluster has no nodes");
	for (size_t i = 0; i < v->c->nnodes; i++) {
		d = judge(v, vm, i, exclude);
		if (d.no != FITS)
			say_refusal(&l, &v->c->nodes[i], vm, &d);
		else if (pick < 0 || better(v->c, i, &d, (size_t)pick, &best)) {
			pick = (int)i;
			best = d;
		}
	}
	if (pick >= 0)
		line_clear(&l);
	return pick;
}

int ha_place(const struct ha_cluster *c, const struct ha_vm *vm, const char *exclude, char *why,
	     size_t whylen)
{
	const struct ha_view v = { .c = c };

	return ha_place_in(&v, vm, exclude, why, whylen);
}
