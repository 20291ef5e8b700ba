/* ha: what each VM uses on which node. */
#include <string.h>

#include "ha_priv.h"

bool ha_same(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

bool ha_same_vm(const struct ha_vm *a, const struct ha_vm *b)
{
	return a == b || ha_same(a->name, b->name);
}

size_t ha_node_index(const struct ha_cluster *c, const char *name)
{
	for (size_t i = 0; i < c->nnodes; i++)
		if (ha_same(c->nodes[i].name, name))
			return i;
	return SIZE_MAX;
}

bool ha_before(const struct ha_vm *vms, size_t a, size_t b)
{
	int cmp;

	if (vms[a].priority != vms[b].priority)
		return vms[a].priority > vms[b].priority;
	cmp = strcmp(vms[a].name, vms[b].name);
	return cmp ? cmp < 0 : a < b;
}

static bool planned_onto(const struct ha_view *v, size_t vm, size_t node)
{
	for (size_t i = 0; i < v->nplanned; i++)
		if (v->planned[i].vm == vm && v->planned[i].node == node)
			return true;
	return false;
}

bool ha_vm_on(const struct ha_view *v, size_t vm, size_t node)
{
	const struct ha_vm *m = &v->c->vms[vm];
	const char *name = v->c->nodes[node].name;

	if (!m->wanted)
		return false;
	return ha_same(m->owner, name) || ha_same(m->target, name) || planned_onto(v, vm, node);
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

void ha_usage_in(const struct ha_view *v, size_t node, const struct ha_vm *skip, uint32_t *cpus,
		 uint64_t *mem_mb)
{
	uint64_t c = 0, m = 0;

	for (size_t i = 0; i < v->c->nvms; i++) {
		const struct ha_vm *vm = &v->c->vms[i];

		if (skip && ha_same_vm(vm, skip))
			continue;
		if (!ha_vm_on(v, i, node))
			continue;
		c = add_sat(c, vm->vcpus);
		m = add_sat(m, vm->mem_mb);
	}
	*cpus = c > UINT32_MAX ? UINT32_MAX : (uint32_t)c;
	*mem_mb = m;
}

void ha_node_usage(const struct ha_cluster *c, size_t node, uint32_t *cpus_used,
		   uint64_t *mem_used_mb)
{
	const struct ha_view v = { .c = c };

	ha_usage_in(&v, node, NULL, cpus_used, mem_used_mb);
}
