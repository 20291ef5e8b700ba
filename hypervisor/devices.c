/* The VM's devices: the board table that registers them, the dispatch of guest accesses
 * to them, and their state sections. The device model is described in dev_priv.h. */
#include "dev_priv.h"
#include "uart_priv.h"
#include "virtio_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUB "dev"

struct dev_entry {
	const struct dev_ops *ops;
	struct dev_range range[DEV_MAX_RANGES]; /* unused ranges have len 0 */
	bool console;				/* console input goes to this device */
	struct vm_dev_arg arg;			/* for devices a VM may have several of */
};

/* What every VM has, in the order of their state sections. */
static const struct dev_entry vm_board[] = {
	{ .ops = &dev_uart_ops, .range = { { DEV_PIO, UART_COM1_BASE, 8 } }, .console = true },
	{ .ops = &dev_exit_ops, .range = { { DEV_PIO, VM_EXIT_PORT, 1 } } },
	{ .ops = &dev_reset_ops, .range = { { DEV_PIO, VM_RESET_PORT, 1 } } },
	{ .ops = &dev_i8042_ops,
	  .range = { { DEV_PIO, VM_I8042_PORT - 4, 1 }, { DEV_PIO, VM_I8042_PORT, 1 } } },
	{ .ops = &dev_acpi_pm_ops, .range = { { DEV_PIO, VM_SLEEP_PORT, 2 } } },
};

static bool ranges_overlap(const struct dev_range *a, const struct dev_range *b)
{
	return a->space == b->space && a->base < b->base + b->len && b->base < a->base + a->len;
}

/* The device already registered that claims part of r, or NULL. */
static struct vm_device *dev_claimed(struct vm *vm, const struct dev_range *r)
{
	for (unsigned i = 0; i < vm->nr_devices; i++)
		for (unsigned j = 0; j < vm->devices[i]->nr_ranges; j++)
			if (ranges_overlap(&vm->devices[i]->range[j], r))
				return vm->devices[i];
	return NULL;
}

static int dev_register(struct vm *vm, const struct dev_entry *e)
{
	struct vm_device *d, *other;
	int err;

	if (vm->nr_devices == VM_MAX_DEVICES)
		return -ENOSPC;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->ops = e->ops;
	d->vm = vm;
	if (e->arg.arg) /* one of several: each its own state section */
		snprintf(d->state_name, sizeof(d->state_name), "%s.%u", e->ops->name, e->arg.index);
	else
		snprintf(d->state_name, sizeof(d->state_name), "%s", e->ops->name);
	d->priv = (void *)&e->arg; /* create replaces it with the device's own data */
	for (unsigned i = 0; i < DEV_MAX_RANGES && e->range[i].len; i++) {
		other = dev_claimed(vm, &e->range[i]);
		if (other) {
			log_err(SUB, "vm=%s %s: range 0x%llx overlaps %s", vm->cfg.name,
				e->ops->name, (unsigned long long)e->range[i].base,
				other->ops->name);
			free(d);
			return -EEXIST;
		}
		d->range[d->nr_ranges++] = e->range[i];
	}
	err = d->ops->create ? d->ops->create(d) : 0;
	if (!d->ops->create)
		d->priv = NULL;
	if (err) {
		free(d);
		return err;
	}
	if (d->ops->reset)
		d->ops->reset(d);
	vm->devices[vm->nr_devices++] = d;
	if (e->console)
		vm->console_dev = d;
	return 0;
}

/* One virtio device in its slot of the MMIO window: index among its kind, argument arg. */
static int add_virtio_one(struct vm *vm, const struct dev_ops *ops, const void *arg, unsigned index,
			  unsigned slot)
{
	struct dev_entry e = {
		.ops = ops,
		.range = { { DEV_MMIO, VIRTIO_MMIO_BASE + slot * VIRTIO_MMIO_SIZE,
			     VIRTIO_MMIO_SIZE } },
		.arg = { arg, index, slot },
	};

	return dev_register(vm, &e);
}

/* The virtio devices of vm's configuration, one 4 KiB MMIO window each, in the fixed slot
 * order: the disks, then the nets. */
static int add_virtio(struct vm *vm)
{
	unsigned disks = vm->cfg.nr_disks;
	int err = 0;

	for (unsigned i = 0; !err && i < disks; i++)
		err = add_virtio_one(vm, &dev_virtio_blk_ops, &vm->cfg.disks[i], i, i);
	for (unsigned i = 0; !err && i < vm->cfg.nr_nets; i++)
		err = add_virtio_one(vm, &dev_virtio_net_ops, &vm->cfg.nets[i], i, disks + i);
	if (!err && vm->cfg.balloon) /* the last slot; one balloon, so no index in its name */
		err = add_virtio_one(vm, &dev_virtio_balloon_ops, NULL, 0,
				     vm_virtio_count(&vm->cfg) - 1);
	return err;
}

int vm_setup_devices(struct vm *vm)
{
	int err = 0;

	for (size_t i = 0; !err && i < ARRAY_SIZE(vm_board); i++)
		err = dev_register(vm, &vm_board[i]);
	if (!err)
		err = add_virtio(vm);
	if (err)
		vm_devices_destroy(vm);
	return err;
}

void vm_devices_destroy(struct vm *vm)
{
	while (vm->nr_devices) {
		struct vm_device *d = vm->devices[--vm->nr_devices];

		if (d->ops->destroy)
			d->ops->destroy(d);
		free(d);
	}
	vm->console_dev = NULL;
}

static bool dev_hit(const struct dev_range *r, enum dev_space space, const struct dev_access *a)
{
	if (r->space != space)
		return false;
	if (space == DEV_PIO) /* a port device answers for the access's first port */
		return a->addr - r->base < r->len;
	return range_within(a->addr, a->size, r->base, r->len);
}

bool dev_dispatch(struct vm *vm, enum dev_space space, struct dev_access *a)
{
	for (unsigned i = 0; i < vm->nr_devices; i++) {
		struct vm_device *d = vm->devices[i];

		for (unsigned j = 0; j < d->nr_ranges; j++) {
			if (!dev_hit(&d->range[j], space, a))
				continue;
			a->off = a->addr - d->range[j].base;
			if (!d->ops->lockless)
				pthread_mutex_lock(&vm->dev_lock);
			d->ops->io(d, a);
			if (!d->ops->lockless)
				pthread_mutex_unlock(&vm->dev_lock);
			return true;
		}
	}
	return false;
}

void dev_pause_all(struct vm *vm, bool pause)
{
	for (unsigned i = 0; i < vm->nr_devices; i++)
		if (vm->devices[i]->ops->pause)
			vm->devices[i]->ops->pause(vm->devices[i], pause);
}

int vm_devices_handoff(struct vm *vm, enum vm_handoff step, int timeout_ms, char *err,
		       size_t errlen)
{
	int rc = 0;

	for (unsigned i = 0; i < vm->nr_devices; i++) {
		struct vm_device *d = vm->devices[i];
		int one = d->ops->handoff ? d->ops->handoff(d, step, timeout_ms, err, errlen) : 0;

		if (one && !rc)
			rc = one;
		if (rc && step != VM_HANDOFF_RECLAIM) /* reclaim every image it can */
			break;
	}
	return rc;
}

/* ---- state sections -------------------------------------------------------------------- */

static int dev_section_save(struct vm_device *d, struct arena *a, Cme__DeviceState **out)
{
	struct dev_xfer x = { .name = d->state_name, .save = true, .arena = a };
	Cme__DeviceState *s = arena_alloc(a, sizeof(*s));
	int err;

	if (!s)
		return -ENOMEM;
	cme__device_state__init(s);
	err = d->ops->state(d, &x);
	if (err)
		return err;
	s->name = d->state_name;
	s->version = d->ops->state_version;
	s->state = x.bytes;
	*out = s;
	return 0;
}

int dev_state_save_all(struct vm *vm, struct arena *a, size_t *n, Cme__DeviceState ***out)
{
	Cme__DeviceState **secs = arena_alloc(a, vm->nr_devices * sizeof(*secs));
	size_t k = 0;
	int err = secs ? 0 : -ENOMEM;

	for (unsigned i = 0; !err && i < vm->nr_devices; i++)
		if (vm->devices[i]->ops->state)
			err = dev_section_save(vm->devices[i], a, &secs[k++]);
	if (err)
		return err;
	*n = k;
	*out = secs;
	return 0;
}

static struct vm_device *dev_by_state_name(struct vm *vm, const char *name)
{
	for (unsigned i = 0; i < vm->nr_devices; i++)
		if (vm->devices[i]->ops->state && !strcmp(vm->devices[i]->state_name, name))
			return vm->devices[i];
	return NULL;
}

int dev_state_load_all(struct vm *vm, Cme__DeviceState *const *secs, size_t n, char *err,
		       size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		const Cme__DeviceState *s = secs[i];
		struct vm_device *d = dev_by_state_name(vm, s->name);
		struct dev_xfer x = { .name = s->name,
				      .version = s->version,
				      .bytes = s->state,
				      .err = err,
				      .errlen = errlen };

		if (!d) {
			snprintf(err, errlen, "state has a device \"%s\" this VM lacks", s->name);
			return -EINVAL;
		}
		if (s->version == 0 || s->version > d->ops->state_version) {
			snprintf(err, errlen, "%s state version %u unknown", s->name, s->version);
			return -EINVAL;
		}
		if (d->ops->state(d, &x))
			return -EINVAL;
	}
	return 0;
}
