/* virtio-balloon (virtio 1.x section 5.5, the traditional memory balloon) with free-page
 * reporting. The host sets a target (num_pages, 4 KiB pages); the guest inflates towards
 * it by giving page frame numbers on the inflate queue, which the device gives back to the
 * host's memory (vm_ram_release), or deflates by naming pages it takes back on the deflate
 * queue, and tells how many it holds in `actual`. With VIRTIO_BALLOON_F_PAGE_REPORTING the
 * guest also reports free ranges (queue 2 — the statistics and free-page-hint queues do
 * not exist, so the reporting queue is the next one), which are released the same way.
 *
 * Every PFN and range is checked against guest RAM before anything is done with it: one
 * outside RAM (or in the MMIO hole) marks the queue broken — DEVICE_NEEDS_RESET — and the
 * host touches nothing outside RAM. The queues are processed on the transport's thread,
 * never on a vCPU. */
#include "virtio_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUB		     "virtio-balloon"
#define QUEUE_MAX	     128
#define PFN_SHIFT	     12
#define PFN_BATCH	     256
#define MAX_PFNS_PER_REQUEST 4096 /* 16 KiB of PFNs: four times what Linux sends */
#define CONFIG_BYTES	     16	  /* num_pages, actual, free_page_hint_cmd_id, poison_val */

#define F_PAGE_REPORTING (1ull << 5)

#define Q_INFLATE 0
#define Q_DEFLATE 1
#define Q_REPORT  2

struct balloon {
	uint32_t target; /* num_pages */
	uint32_t actual;
	uint64_t inflated, deflated, reported, released;
	bool release_failed; /* logged once */
};

/* With hugepages the VM is refused before (vm_validate_config). */
static int bln_open(struct virtio_dev *v, char *why, size_t len)
{
	(void)why;
	(void)len;
	v->be_priv = calloc(1, sizeof(struct balloon));
	return v->be_priv ? 0 : -ENOMEM;
}

static void bln_close(struct virtio_dev *v)
{
	free(v->be_priv);
	v->be_priv = NULL;
}

static uint64_t bln_features(struct virtio_dev *v)
{
	(void)v;
	return F_PAGE_REPORTING;
}

static unsigned bln_queues(struct virtio_dev *v)
{
	return v->drv_features & F_PAGE_REPORTING ? 3 : 2;
}

static void bln_config_read(struct virtio_dev *v, uint64_t off, uint8_t *data, unsigned size)
{
	const struct balloon *b = v->be_priv;
	uint8_t cfg[CONFIG_BYTES] = { 0 };

	memcpy(cfg, &b->target, 4);
	memcpy(cfg + 4, &b->actual, 4);
	memset(data, 0, size);
	if (off < sizeof(cfg))
		memcpy(data, cfg + off, size < sizeof(cfg) - off ? size : sizeof(cfg) - off);
}

/* Only `actual` (bytes 4..7) is the driver's to write; a write may cover part of it. */
static void bln_config_write(struct virtio_dev *v, uint64_t off, const uint8_t *data, unsigned size)
{
	struct balloon *b = v->be_priv;
	uint8_t cfg[4];

	memcpy(cfg, &b->actual, 4);
	for (unsigned i = 0; i < size; i++)
		if (off + i >= 4 && off + i < 8)
			cfg[off + i - 4] = data[i];
	memcpy(&b->actual, cfg, 4);
}

static uint64_t bln_identity(struct virtio_dev *v)
{
	(void)v;
	return 0; /* nothing of the host's must match: RAM size is checked by the VM itself */
}

/* Give [gpa, gpa + len) back to the host; counts what was released. */
static void release(struct virtio_dev *v, uint64_t gpa, uint64_t len)
{
	struct balloon *b = v->be_priv;
	int err = vm_ram_release(v->vm, gpa, len);

	if (!err) {
		b->released += len;
		return;
	}
	if (!b->release_failed)
		log_warn(SUB, "vm=%s cannot release guest RAM at 0x%llx: %s (pages stay resident)",
			 v->vm->cfg.name, (unsigned long long)gpa, strerror(-err));
	b->release_failed = true;
}

/* Release a batch of checked PFNs, one madvise per run of consecutive frames. */
static void release_pfns(struct virtio_dev *v, const uint32_t *pfn, size_t n)
{
	for (size_t i = 0, j; i < n; i = j) {
		for (j = i + 1; j < n && pfn[j] == pfn[j - 1] + 1; j++)
			;
		release(v, (uint64_t)pfn[i] << PFN_SHIFT, (uint64_t)(j - i) << PFN_SHIFT);
	}
}

/* The PFN array of an inflate or deflate request, batch by batch: each batch is copied
 * out of guest RAM once, then checked, then used, so the guest cannot change a PFN between
 * the check and the release. Returns 0 or -EINVAL with why (a PFN outside RAM). */
static int take_pfns(struct virtio_dev *v, const struct virtq_chain *c, bool inflate, char *why,
		     size_t whylen)
{
	struct balloon *b = v->be_priv;
	uint32_t pfn[PFN_BATCH];
	uint64_t n = c->read_len / 4;

	/* Descriptors may overlap, so a chain can name billions of PFNs; a driver sends a
	 * page's worth at most (Linux: 256). Bounded, the device thread cannot be kept busy
	 * for hours by one request. */
	if (n > MAX_PFNS_PER_REQUEST)
		return snprintf(why, whylen, "a request of %llu PFNs (at most %d)",
				(unsigned long long)n, MAX_PFNS_PER_REQUEST),
		       -EINVAL;
	for (uint64_t at = 0; at < n;) {
		size_t k = n - at < PFN_BATCH ? (size_t)(n - at) : PFN_BATCH;

		virtq_read(c, at * 4, pfn, k * 4);
		for (size_t i = 0; i < k; i++)
			if (!vm_gpa_to_hva(v->vm, (uint64_t)pfn[i] << PFN_SHIFT, VM_PAGE_SIZE))
				return snprintf(why, whylen, "PFN 0x%x is outside guest RAM",
						pfn[i]),
				       -EINVAL;
		if (inflate) {
			release_pfns(v, pfn, k);
			b->inflated += k;
		} else {
			b->deflated += k; /* the guest's touch backs them again: nothing to do */
		}
		at += k;
	}
	return 0;
}

/* A free-page report: each buffer is a free guest range (2^order pages), already checked
 * to lie in RAM by virtq_pop; its whole pages are released. Returns 0. */
static int take_report(struct virtio_dev *v, const struct virtq_chain *c)
{
	struct balloon *b = v->be_priv;

	for (unsigned i = 0; i < c->nseg; i++) {
		uint64_t start = (c->seg[i].gpa + VM_PAGE_SIZE - 1) & ~(VM_PAGE_SIZE - 1),
			 end = (c->seg[i].gpa + c->seg[i].len) & ~(VM_PAGE_SIZE - 1);

		if (end <= start)
			continue;
		release(v, start, end - start);
		b->reported += (end - start) / VM_PAGE_SIZE;
	}
	return 0;
}

/* The device writes nothing into the guest's buffers (used length 0). */
static int bln_chain(struct virtio_dev *v, unsigned qi, const struct virtq_chain *c,
		     uint32_t *written, char *why, size_t whylen)
{
	*written = 0;
	return qi == Q_REPORT ? take_report(v, c) : take_pfns(v, c, qi == Q_INFLATE, why, whylen);
}

static bool bln_process(struct virtio_dev *v, unsigned qi)
{
	return virtio_process_chains(v, qi, bln_chain);
}

static int bln_state(struct virtio_dev *v, Cme__VirtioState *m, struct dev_xfer *x)
{
	struct balloon *b = v->be_priv;
	Cme__BalloonState *s = m->balloon;

	if (x->save) {
		s = arena_alloc(x->arena, sizeof(*s));
		if (!s)
			return -ENOMEM;
		cme__balloon_state__init(s);
		m->balloon = s;
	} else if (!s) {
		return 0; /* a stream without it: the reset state */
	}
	DEV_XFER(x, b->target, s->target_pages);
	DEV_XFER(x, b->actual, s->actual_pages);
	DEV_XFER(x, b->inflated, s->inflated_pages);
	DEV_XFER(x, b->deflated, s->deflated_pages);
	DEV_XFER(x, b->reported, s->reported_pages);
	DEV_XFER(x, b->released, s->released_bytes);
	return 0;
}

static const struct virtio_backend virtio_balloon_backend = {
	.name = "virtio-balloon",
	.device_id = VIRTIO_ID_BALLOON,
	.nr_queues = 3,
	.queue_max = QUEUE_MAX,
	.open = bln_open,
	.close = bln_close,
	.features = bln_features,
	.queues = bln_queues,
	.config_read = bln_config_read,
	.config_write = bln_config_write,
	.identity = bln_identity,
	.process = bln_process,
	.state = bln_state,
};

static int bln_create(struct vm_device *d)
{
	return virtio_mmio_create(d, &virtio_balloon_backend);
}

/* Running again — maybe on a migration's destination or after a restore, where an
 * interrupt raised after the interrupt controller's state was taken never arrived: while
 * the guest has not reached the target, tell it once more (a spurious configuration
 * interrupt is harmless: the driver reads the target again). */
static void bln_pause(struct vm_device *d, bool pause)
{
	struct virtio_dev *v = d->priv;
	struct balloon *b = v->be_priv;

	virtio_mmio_pause(d, pause);
	pthread_mutex_lock(&v->mu);
	if (!pause && b && b->target != b->actual && (v->status & VIRTIO_STATUS_DRIVER_OK))
		virtio_config_changed(v);
	pthread_mutex_unlock(&v->mu);
}

const struct dev_ops dev_virtio_balloon_ops = {
	.name = "virtio-balloon",
	.state_version = 1,
	.create = bln_create,
	.destroy = virtio_mmio_destroy,
	.reset = virtio_mmio_reset,
	.io = virtio_mmio_io,
	.pause = bln_pause,
	.state = virtio_mmio_state,
};

/* ---- the host's side: target and counters ---------------------------------------------- */

static struct virtio_dev *find_balloon(struct vm *vm)
{
	return virtio_find(vm, &dev_virtio_balloon_ops, VIRTIO_ANY);
}

int vm_balloon_set(struct vm *vm, uint64_t target_pages)
{
	struct virtio_dev *v = find_balloon(vm);
	struct balloon *b;

	if (!v)
		return -ENODEV;
	if (target_pages > vm->cfg.mem_bytes / VM_PAGE_SIZE)
		return -ERANGE;
	pthread_mutex_lock(&v->mu);
	b = v->be_priv;
	b->target = (uint32_t)target_pages; /* 64 GiB of RAM at most: 2^24 pages */
	virtio_config_changed(v);
	pthread_mutex_unlock(&v->mu);
	log_info(SUB, "vm=%s target %llu MiB", vm->cfg.name,
		 (unsigned long long)(target_pages * VM_PAGE_SIZE >> 20));
	return 0;
}

bool vm_balloon_get(struct vm *vm, struct vm_balloon *out)
{
	struct virtio_dev *v = find_balloon(vm);
	const struct balloon *b;

	*out = (struct vm_balloon){ 0 };
	if (!v)
		return false;
	pthread_mutex_lock(&v->mu);
	b = v->be_priv;
	*out = (struct vm_balloon){ .target_pages = b->target,
				    .actual_pages = b->actual,
				    .inflated_pages = b->inflated,
				    .deflated_pages = b->deflated,
				    .reported_pages = b->reported,
				    .released_bytes = b->released };
	pthread_mutex_unlock(&v->mu);
	return true;
}
