/* The virtio-mmio transport (virtio 1.x, version 2 registers): feature negotiation, queue
 * setup, status, interrupts through an irqfd, notifications through ioeventfds, and the
 * device's own thread that processes its queues. See virtio_priv.h. */
#include "virtio_priv.h"
#include "proto.h"

#include <errno.h>
#include <linux/kvm.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define SUB	  "virtio"
#define LINGER_NS 50000 /* how long the thread looks for more work before it sleeps */

/* Registers (offsets in the device's 4 KiB window). */
#define R_MAGIC		 0x000
#define R_VERSION	 0x004
#define R_DEVICE_ID	 0x008
#define R_VENDOR_ID	 0x00c
#define R_DEV_FEATURES	 0x010
#define R_DEV_FEAT_SEL	 0x014
#define R_DRV_FEATURES	 0x020
#define R_DRV_FEAT_SEL	 0x024
#define R_QUEUE_SEL	 0x030
#define R_QUEUE_NUM_MAX	 0x034
#define R_QUEUE_NUM	 0x038
#define R_QUEUE_READY	 0x044
#define R_QUEUE_NOTIFY	 0x050
#define R_ISR		 0x060
#define R_ISR_ACK	 0x064
#define R_STATUS	 0x070
#define R_QUEUE_DESC_LO	 0x080
#define R_QUEUE_DESC_HI	 0x084
#define R_QUEUE_AVAIL_LO 0x090
#define R_QUEUE_AVAIL_HI 0x094
#define R_QUEUE_USED_LO	 0x0a0
#define R_QUEUE_USED_HI	 0x0a4
#define R_CONFIG_GEN	 0x0fc
#define R_CONFIG	 0x100

#define MAGIC	   0x74726976 /* "virt" */
#define VENDOR_CME 0x00454d43 /* "CME" */

static void *mem_map(void *opaque, uint64_t gpa, uint64_t len)
{
	return vm_gpa_to_hva(opaque, gpa, len);
}

/* What a device writes into guest RAM is sent again by a live migration. */
static void mem_dirty(void *opaque, uint64_t gpa, uint64_t len)
{
	vm_mark_dirty(opaque, gpa, len);
}

static uint64_t offered(const struct virtio_dev *v)
{
	return VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX | VIRTIO_F_INDIRECT_DESC |
	       v->be->features((struct virtio_dev *)v);
}

static void raise_irq(struct virtio_dev *v, unsigned bits)
{
	uint64_t one = 1;

	atomic_fetch_or(&v->isr, bits);
	v->irqs++;
	if (write(v->irqfd, &one, sizeof(one)) < 0)
		log_warn(SUB, "vm=%s %s: irqfd: %s", v->vm->cfg.name, v->be->name, strerror(errno));
}

void virtio_notify(struct virtio_dev *v, unsigned q)
{
	if (virtq_need_irq(&v->q[q], &v->mem))
		raise_irq(v, VIRTIO_ISR_USED);
}

void virtio_queue_broken(struct virtio_dev *v, unsigned q, const char *why)
{
	log_err(SUB, "vm=%s %s: queue %u is malformed (%s): device needs a reset", v->vm->cfg.name,
		v->be->name, q, why);
	__atomic_fetch_or(&v->status, VIRTIO_STATUS_NEEDS_RESET, __ATOMIC_RELEASE);
	raise_irq(v, VIRTIO_ISR_CONFIG);
}

bool virtio_process_chains(struct virtio_dev *v, unsigned qi, virtio_chain_fn fn)
{
	struct virtq *q = &v->q[qi];
	struct virtq_chain c;
	uint32_t written;
	char why[160];
	int rc;

	do {
		while ((rc = virtq_pop(q, &v->mem, &c, why, sizeof(why))) == 1) {
			written = 0;
			rc = fn(v, qi, &c, &written, why, sizeof(why));
			if (!rc && virtq_push(q, &v->mem, c.head, written)) {
				snprintf(why, sizeof(why), "the used ring is outside RAM");
				rc = -EINVAL;
			}
			if (rc) {
				q->broken = true;
				break;
			}
			v->requests++;
		}
		if (rc < 0) {
			virtio_queue_broken(v, qi, why);
			return false;
		}
		virtio_notify(v, qi);
	} while (virtq_arm_notify(q, &v->mem));
	return true;
}

void virtio_config_changed(struct virtio_dev *v)
{
	v->config_gen++;
	raise_irq(v, VIRTIO_ISR_CONFIG);
}

/* Queues that exist with the features negotiated so far. */
static unsigned nr_live_queues(struct virtio_dev *v)
{
	return v->be->queues ? v->be->queues(v) : v->be->nr_queues;
}

/* ---- the device's thread ---------------------------------------------------------------- */

bool virtio_queue_runnable(const struct virtio_dev *v, unsigned q)
{
	return (v->status & VIRTIO_STATUS_DRIVER_OK) && !(v->status & VIRTIO_STATUS_NEEDS_RESET) &&
	       v->q[q].ready && !v->q[q].broken;
}

/* The device runs: its backend's watches are waited on. */
static bool live(const struct virtio_dev *v)
{
	return (v->status & VIRTIO_STATUS_DRIVER_OK) && !(v->status & VIRTIO_STATUS_NEEDS_RESET) &&
	       !v->paused;
}

int virtio_watch_add(struct virtio_dev *v, int fd, short events)
{
	if (v->nr_watch == VIRTIO_MAX_WATCH)
		return -ENOSPC;
	v->watch[v->nr_watch] = (struct virtio_watch){ .fd = fd, .events = events };
	return (int)v->nr_watch++;
}

void virtio_watch_set(struct virtio_dev *v, unsigned w, bool on)
{
	v->watch[w].on = on;
}

/* What the thread waits on next: the kicks, the quit fd, and while the device runs the
 * watches that are on (which[] maps those entries of p back to their watch). */
static unsigned wait_set(struct virtio_dev *v, struct pollfd *p, unsigned *which)
{
	unsigned n = v->be->nr_queues, k = n + 1;

	for (unsigned i = 0; i < n; i++)
		p[i] = (struct pollfd){ .fd = v->kick[i], .events = POLLIN };
	p[n] = (struct pollfd){ .fd = v->quit_fd, .events = POLLIN };
	pthread_mutex_lock(&v->mu);
	for (unsigned w = 0; live(v) && w < v->nr_watch; w++) {
		if (!v->watch[w].on)
			continue;
		p[k] = (struct pollfd){ .fd = v->watch[w].fd, .events = v->watch[w].events };
		which[k++] = w;
	}
	v->watching = k > n + 1;
	pthread_cond_broadcast(&v->waited);
	pthread_mutex_unlock(&v->mu);
	return k;
}

/* Process queue q if it runs and has work; whether it had. */
static bool process_pending(struct virtio_dev *v, unsigned q)
{
	bool work;

	pthread_mutex_lock(&v->mu);
	work = virtio_queue_runnable(v, q) && !v->paused && virtq_pending(&v->q[q], &v->mem);
	if (work)
		v->be->process(v, q);
	pthread_mutex_unlock(&v->mu);
	return work;
}

/* Not while paused: a paused device writes nothing into guest RAM (the pause cleared the
 * flag; the resume's kick brings the thread back here). */
static void set_polling(struct virtio_dev *v, unsigned q, bool polling)
{
	pthread_mutex_lock(&v->mu);
	if (virtio_queue_runnable(v, q) && !v->paused)
		virtq_polling(&v->q[q], &v->mem, polling);
	pthread_mutex_unlock(&v->mu);
}

/* After work, keep looking at the queue a little before sleeping: a driver that posts its
 * next requests at once (a busy disk, a polling driver) finds the device awake instead of
 * paying a thread's wake-up per batch, and is told meanwhile that it need not notify (no
 * VM exit for it). Bounded, so an idle device sleeps, and with the mutex free in between,
 * so register accesses and pauses are not held up. */
static void linger(struct virtio_dev *v, unsigned q)
{
	bool again;

	do {
		uint64_t end = now_ns() + LINGER_NS;

		set_polling(v, q, true);
		for (;;) {
			if (process_pending(v, q))
				end = now_ns() + LINGER_NS;
			else if (now_ns() < end)
				__builtin_ia32_pause();
			else
				break;
		}
		set_polling(v, q, false);
		/* made available while the flag still said "polling": no notification came */
		again = process_pending(v, q);
	} while (again);
}

static void *io_thread(void *arg)
{
	struct virtio_dev *v = arg;
	struct pollfd p[VIRTIO_MAX_QUEUES + 1 + VIRTIO_MAX_WATCH];
	unsigned which[VIRTIO_MAX_QUEUES + 1 + VIRTIO_MAX_WATCH];
	unsigned n = v->be->nr_queues, k;
	uint64_t cnt;

	pthread_setname_np(pthread_self(), "virtio");
	sandbox_enter(SANDBOX_DEVICE);
	for (;;) {
		k = wait_set(v, p, which);
		if (poll(p, k, -1) < 0 && errno != EINTR)
			break;
		if (p[n].revents)
			break;
		for (unsigned i = 0; i < k; i++) {
			if (i == n || !p[i].revents)
				continue;
			if (i < n && read(v->kick[i], &cnt, sizeof(cnt)) < 0)
				continue;
			pthread_mutex_lock(&v->mu);
			if (i < n && virtio_queue_runnable(v, i) && !v->paused)
				v->be->process(v, i);
			else if (i > n && live(v) && v->watch[which[i]].on)
				v->be->event(v, which[i]);
			pthread_mutex_unlock(&v->mu);
			if (i < n && v->be->linger)
				linger(v, i);
		}
	}
	return NULL;
}

/* ---- setup ---------------------------------------------------------------------------- */

static uint64_t base_of(const struct virtio_dev *v)
{
	return VIRTIO_MMIO_BASE + (uint64_t)v->index * VIRTIO_MMIO_SIZE;
}

static int kvm_fds(struct virtio_dev *v)
{
	struct kvm_irqfd irqfd = { .fd = (uint32_t)v->irqfd, .gsi = v->irq };

	if (ioctl(v->vm->vm_fd, KVM_IRQFD, &irqfd) < 0)
		return -errno;
	v->ioeventfd = true;
	for (unsigned i = 0; i < v->be->nr_queues; i++) {
		struct kvm_ioeventfd ev = { .datamatch = i,
					    .addr = base_of(v) + R_QUEUE_NOTIFY,
					    .len = 4,
					    .fd = v->kick[i],
					    .flags = KVM_IOEVENTFD_FLAG_DATAMATCH };

		if (ioctl(v->vm->vm_fd, KVM_IOEVENTFD, &ev) < 0)
			v->ioeventfd = false; /* the exit path signals kick[] instead */
	}
	return 0;
}

static int make_fds(struct virtio_dev *v)
{
	v->irqfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	v->quit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (v->irqfd < 0 || v->quit_fd < 0)
		return -errno;
	for (unsigned i = 0; i < v->be->nr_queues; i++) {
		v->kick[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (v->kick[i] < 0)
			return -errno;
	}
	return 0;
}

int virtio_mmio_create(struct vm_device *d, const struct virtio_backend *be)
{
	struct virtio_dev *v = calloc(1, sizeof(*v));
	const struct vm_dev_arg *arg = d->priv;
	char why[256] = "";
	int err;

	if (!v)
		return -ENOMEM;
	v->vm = d->vm;
	v->be = be;
	v->be_arg = arg->arg;
	v->index = arg->slot;
	v->irq = virtio_irq(arg->slot);
	v->irqfd = v->quit_fd = -1;
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		v->kick[i] = -1;
	v->mem = (struct virtq_mem){ mem_map, mem_dirty, d->vm };
	pthread_mutex_init(&v->mu, NULL);
	pthread_cond_init(&v->waited, NULL);
	d->priv = v;
	err = be->open(v, why, sizeof(why));
	if (err) {
		log_err(SUB, "vm=%s %s", d->vm->cfg.name, why);
		goto fail;
	}
	err = make_fds(v);
	if (!err)
		err = kvm_fds(v);
	if (!err)
		err = -pthread_create(&v->thread, NULL, io_thread, v);
	if (err) {
		log_err(SUB, "vm=%s %s: cannot set up: %s", d->vm->cfg.name, be->name,
			strerror(-err));
		goto fail;
	}
	v->thread_started = true;
	return 0;
fail:
	virtio_mmio_destroy(d);
	return err;
}

void virtio_mmio_destroy(struct vm_device *d)
{
	struct virtio_dev *v = d->priv;
	uint64_t one = 1;

	if (!v)
		return;
	if (v->thread_started) {
		if (write(v->quit_fd, &one, sizeof(one)) < 0)
			log_warn(SUB, "vm=%s %s: quit: %s", v->vm->cfg.name, v->be->name,
				 strerror(errno));
		pthread_join(v->thread, NULL);
	}
	if (v->be_priv)
		v->be->close(v);
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		if (v->kick[i] >= 0)
			close(v->kick[i]);
	if (v->irqfd >= 0)
		close(v->irqfd);
	if (v->quit_fd >= 0)
		close(v->quit_fd);
	pthread_mutex_destroy(&v->mu);
	pthread_cond_destroy(&v->waited);
	free(v);
	d->priv = NULL;
}

/* Device reset (status 0, or power-on): registers, queues, interrupt status. */
static void reset_locked(struct virtio_dev *v)
{
	__atomic_store_n(&v->status, 0, __ATOMIC_RELEASE);
	v->dev_sel = v->drv_sel = v->queue_sel = 0;
	v->drv_features = 0;
	atomic_store(&v->isr, 0);
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		virtq_reset(&v->q[i]);
}

void virtio_mmio_reset(struct vm_device *d)
{
	struct virtio_dev *v = d->priv;

	pthread_mutex_lock(&v->mu);
	reset_locked(v);
	pthread_mutex_unlock(&v->mu);
}

static void kick(struct virtio_dev *v, uint32_t q)
{
	uint64_t one = 1;

	if (q < v->be->nr_queues && write(v->kick[q], &one, sizeof(one)) < 0)
		log_warn(SUB, "vm=%s %s: kick: %s", v->vm->cfg.name, v->be->name, strerror(errno));
}

void virtio_kick(struct virtio_dev *v, unsigned q)
{
	kick(v, q);
}

/* Paused: the thread polls no backend descriptor any more (see virtio_dev.watching), and
 * no queue says "polling" (the driver notifies again; the flag is not left in a snapshot). */
static void quiesce(struct virtio_dev *v)
{
	struct timespec until;

	for (unsigned i = 0; i < v->be->nr_queues; i++)
		if (virtio_queue_runnable(v, i))
			virtq_polling(&v->q[i], &v->mem, false);
	if (!v->watching || !v->thread_started)
		return;
	kick(v, 0); /* the thread wakes, takes nothing (paused) and waits again without them */
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 2;
	while (v->watching)
		if (pthread_cond_timedwait(&v->waited, &v->mu, &until) == ETIMEDOUT) {
			log_warn(SUB, "vm=%s %s: the device's thread did not come round in 2 s",
				 v->vm->cfg.name, v->be->name);
			break;
		}
}

struct virtio_dev *virtio_find(struct vm *vm, const struct dev_ops *ops, unsigned index)
{
	for (unsigned i = 0; i < vm->nr_devices; i++) {
		struct virtio_dev *v = vm->devices[i]->priv;

		if (vm->devices[i]->ops == ops && (index == VIRTIO_ANY || v->index == index))
			return v;
	}
	return NULL;
}

void virtio_mmio_pause(struct vm_device *d, bool pause)
{
	struct virtio_dev *v = d->priv;

	pthread_mutex_lock(&v->mu); /* waits for the queue being processed */
	v->paused = pause;
	if (pause)
		quiesce(v);
	pthread_mutex_unlock(&v->mu);
	for (unsigned i = 0; !pause && i < v->be->nr_queues; i++)
		kick(v, i); /* what the guest posted meanwhile */
}

static int queue_xfer(struct virtio_dev *v, struct virtq *q, Cme__VirtqState *m, struct dev_xfer *x)
{
	char why[160];

	DEV_XFER(x, q->num, m->num);
	DEV_XFER(x, q->desc, m->desc);
	DEV_XFER(x, q->avail, m->avail);
	DEV_XFER(x, q->used, m->used);
	DEV_XFER(x, q->ready, m->ready);
	DEV_XFER(x, q->event_idx, m->event_idx);
	DEV_XFER(x, q->broken, m->broken);
	DEV_XFER(x, q->last_avail, m->last_avail);
	DEV_XFER(x, q->used_idx, m->used_idx);
	DEV_XFER(x, q->signalled, m->signalled);
	DEV_XFER(x, q->signal_valid, m->signal_valid);
	if (!x->save && q->ready && virtq_validate(q, &v->mem, why, sizeof(why)))
		return dev_state_fail(x, "queue: %s", why);
	return 0;
}

static int transport_xfer(struct virtio_dev *v, Cme__VirtioState *m, Cme__VirtqState **qs,
			  struct dev_xfer *x)
{
	uint64_t id = v->be->identity(v);

	DEV_CMP(x, (uint64_t)v->be->device_id, m->device_id);
	DEV_CMP(x, id, m->capacity);
	if (!x->save && m->n_queues > v->be->nr_queues)
		return dev_state_fail(x, "%zu queues, the device has %u", m->n_queues,
				      v->be->nr_queues);
	DEV_XFER(x, v->status, m->status);
	DEV_XFER(x, v->dev_sel, m->dev_sel);
	DEV_XFER(x, v->drv_sel, m->drv_sel);
	DEV_XFER(x, v->queue_sel, m->queue_sel);
	DEV_XFER(x, v->drv_features, m->drv_features);
	DEV_XFER(x, v->config_gen, m->config_gen);
	if (x->save) {
		m->isr = atomic_load(&v->isr);
		m->n_queues = v->be->nr_queues;
		m->queues = qs;
	} else {
		atomic_store(&v->isr, m->isr);
	}
	for (unsigned i = 0; i < m->n_queues; i++)
		if (queue_xfer(v, &v->q[i], m->queues[i], x))
			return -EINVAL;
	return v->be->state ? v->be->state(v, m, x) : 0;
}

int virtio_mmio_state(struct vm_device *d, struct dev_xfer *x)
{
	struct virtio_dev *v = d->priv;
	Cme__VirtioState saved = CME__VIRTIO_STATE__INIT, *m = &saved;
	Cme__VirtqState qsaved[VIRTIO_MAX_QUEUES], *qs[VIRTIO_MAX_QUEUES];
	int err;

	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		cme__virtq_state__init(&qsaved[i]);
		qs[i] = &qsaved[i];
	}
	if (!x->save) {
		m = PB_UNPACK(cme__virtio_state__unpack, x->bytes.len, x->bytes.data);
		if (!m)
			return dev_state_fail(x, "malformed");
	}
	pthread_mutex_lock(&v->mu);
	err = transport_xfer(v, m, qs, x);
	pthread_mutex_unlock(&v->mu);
	if (x->save && !err)
		err = dev_state_pack(x, &m->base);
	if (!x->save)
		cme__virtio_state__free_unpacked(m, NULL);
	return err;
}

/* ---- registers ------------------------------------------------------------------------ */

static uint32_t reg_read(struct virtio_dev *v, uint64_t off)
{
	const struct virtq *q = &v->q[v->queue_sel % VIRTIO_MAX_QUEUES];
	bool qok = v->queue_sel < nr_live_queues(v);

	switch (off) {
	case R_MAGIC: return MAGIC;
	case R_VERSION: return 2;
	case R_DEVICE_ID: return v->be->device_id;
	case R_VENDOR_ID: return VENDOR_CME;
	case R_DEV_FEATURES:
		return v->dev_sel < 2 ? (uint32_t)(offered(v) >> (32 * v->dev_sel)) : 0;
	case R_QUEUE_NUM_MAX: return qok ? v->be->queue_max : 0;
	case R_QUEUE_READY: return qok && q->ready;
	case R_ISR: return atomic_load(&v->isr);
	case R_STATUS: return v->status;
	case R_CONFIG_GEN: return v->config_gen;
	default: return 0;
	}
}

/* Write the low or high half of a 64-bit queue address. */
static void set_half(uint64_t *addr, uint32_t val, bool high)
{
	*addr = high ? (*addr & 0xffffffffull) | ((uint64_t)val << 32)
		     : (*addr & ~0xffffffffull) | val;
}

static void queue_ready(struct virtio_dev *v, struct virtq *q, uint32_t val)
{
	char why[160];

	if (!val) {
		q->ready = false;
		return;
	}
	q->event_idx = v->drv_features & VIRTIO_F_EVENT_IDX;
	if (virtq_validate(q, &v->mem, why, sizeof(why))) {
		virtio_queue_broken(v, v->queue_sel, why);
		return;
	}
	q->ready = true;
}

/* Registers of the selected queue; false when off is not one. */
static bool queue_write(struct virtio_dev *v, uint64_t off, uint32_t val)
{
	struct virtq *q = &v->q[v->queue_sel];

	if (v->queue_sel >= nr_live_queues(v))
		return off >= R_QUEUE_NUM && off <= R_QUEUE_USED_HI; /* ignored */
	switch (off) {
	case R_QUEUE_NUM: q->num = val <= v->be->queue_max ? (uint16_t)val : 0; return true;
	case R_QUEUE_READY: queue_ready(v, q, val); return true;
	case R_QUEUE_DESC_LO:
	case R_QUEUE_DESC_HI: set_half(&q->desc, val, off == R_QUEUE_DESC_HI); return true;
	case R_QUEUE_AVAIL_LO:
	case R_QUEUE_AVAIL_HI: set_half(&q->avail, val, off == R_QUEUE_AVAIL_HI); return true;
	case R_QUEUE_USED_LO:
	case R_QUEUE_USED_HI: set_half(&q->used, val, off == R_QUEUE_USED_HI); return true;
	default: return false;
	}
}

static void status_write(struct virtio_dev *v, uint32_t val)
{
	if (!val) {
		reset_locked(v);
		return;
	}
	/* FEATURES_OK only for features we offered; otherwise the driver sees it unset. */
	if ((val & VIRTIO_STATUS_FEATURES_OK) && (v->drv_features & ~offered(v)))
		val &= ~VIRTIO_STATUS_FEATURES_OK;
	if ((val & VIRTIO_STATUS_FEATURES_OK) && !(v->drv_features & VIRTIO_F_VERSION_1))
		val &= ~VIRTIO_STATUS_FEATURES_OK; /* modern only */
	/* Driver ready: the thread looks at every queue once, so buffers posted (and notified,
	 * which it then ignored) before DRIVER_OK are taken — a tap may have frames waiting. */
	if ((val & ~v->status) & VIRTIO_STATUS_DRIVER_OK)
		for (unsigned i = 0; i < v->be->nr_queues; i++)
			kick(v, i);
	__atomic_store_n(&v->status,
			 (v->status & VIRTIO_STATUS_NEEDS_RESET) |
				 (val & ~VIRTIO_STATUS_NEEDS_RESET),
			 __ATOMIC_RELEASE);
}

static void reg_write(struct virtio_dev *v, uint64_t off, uint32_t val)
{
	if (queue_write(v, off, val))
		return;
	switch (off) {
	case R_DEV_FEAT_SEL: v->dev_sel = val; break;
	case R_DRV_FEAT_SEL: v->drv_sel = val; break;
	case R_DRV_FEATURES:
		if (v->drv_sel < 2 && !(v->status & VIRTIO_STATUS_FEATURES_OK))
			set_half(&v->drv_features, val, v->drv_sel == 1);
		break;
	case R_QUEUE_SEL: v->queue_sel = val; break;
	case R_QUEUE_NOTIFY: kick(v, val); break; /* when KVM did not take it (no ioeventfd) */
	case R_ISR_ACK: atomic_fetch_and(&v->isr, ~val); break;
	case R_STATUS: status_write(v, val); break;
	default: break; /* read-only or unknown: ignored */
	}
}

void virtio_mmio_io(struct vm_device *d, struct dev_access *a)
{
	struct virtio_dev *v = d->priv;
	uint32_t val = 0;

	if (a->off >= R_CONFIG) { /* device configuration: accesses of any width */
		pthread_mutex_lock(&v->mu);
		if (!a->write)
			v->be->config_read(v, a->off - R_CONFIG, a->data, a->size);
		else if (v->be->config_write)
			v->be->config_write(v, a->off - R_CONFIG, a->data, a->size);
		pthread_mutex_unlock(&v->mu);
		return;
	}
	if (a->size != 4 || a->off % 4) { /* the registers are 32-bit */
		if (!a->write)
			memset(a->data, 0xff, a->size);
		return;
	}
	/* Never wait for the queue's work: notifications, the interrupt status, the status. */
	if (a->off == R_QUEUE_NOTIFY && a->write) {
		memcpy(&val, a->data, 4);
		kick(v, val);
		return;
	}
	if (a->off == R_ISR && !a->write) {
		val = atomic_load(&v->isr);
		memcpy(a->data, &val, 4);
		return;
	}
	/* Nor a status read (a driver polls it for DEVICE_NEEDS_RESET): written only under the
	 * mutex, each store whole. */
	if (a->off == R_STATUS && !a->write) {
		val = __atomic_load_n(&v->status, __ATOMIC_ACQUIRE);
		memcpy(a->data, &val, 4);
		return;
	}
	if (a->off == R_ISR_ACK && a->write) {
		memcpy(&val, a->data, 4);
		atomic_fetch_and(&v->isr, ~val);
		return;
	}
	pthread_mutex_lock(&v->mu);
	if (a->write) {
		memcpy(&val, a->data, 4);
		reg_write(v, a->off, val);
	} else {
		val = reg_read(v, a->off);
		memcpy(a->data, &val, 4);
	}
	pthread_mutex_unlock(&v->mu);
}
