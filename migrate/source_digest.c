/* The source's digest, kept current while the guest runs (contract in mig_priv.h).
 *
 * It must not trust the dirty log it checks, so it has a change tracker of its own: guest
 * RAM is registered with userfaultfd for asynchronous write protection (Linux 6.7,
 * UFFD_FEATURE_WP_ASYNC). The kernel drops a page's protection itself on the first write
 * to it — by the guest through KVM, by a device thread, by anyone — and PAGEMAP_SCAN reads
 * those "written" pages and protects them again in one atomic step. A pass: scan (mark the
 * chunks of written pages, protection re-armed), then hash the marked chunks, clearing each
 * mark before reading its chunk. A page the VMM gives back (MADV_DONTNEED) becomes zero
 * without a write: vm_ram_release reports it and its chunk is marked too. Any change after
 * a chunk was read is therefore followed by a mark a later pass takes. */
#include "mig_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SUB "mig"

/* Linux 6.7 interfaces, absent from older headers. */
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef PAGEMAP_SCAN
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
struct page_region {
	uint64_t start, end, categories;
};
struct pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN	      _IOWR('f', 16, struct pm_scan_arg)
#define PM_SCAN_WP_MATCHING   (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#endif

#define SCAN_VEC 256
#define PASS_NS	 20000000ull /* a background pass every 20 ms */

struct wslot {
	uint8_t *hva;
	uint64_t gpa, size, first; /* first: the number of the slot's first chunk */
};

struct mig_wtrack {
	struct vm *vm;
	int uffd, pagemap;
	unsigned nr_slots;
	struct wslot slot[MIG_SLOTS];
	uint64_t nr_chunks;
	_Atomic uint32_t *mark;
	uint8_t (*sums)[MIG_SUM_BYTES];

	pthread_t thread;
	bool started;
	pthread_mutex_t lock; /* with cond: pass requests and completions */
	pthread_cond_t cond;
	bool want, busy, quit;
	atomic_bool stop;      /* the pause has come: a background pass gives up */
	int err;	       /* first scan error: the switchover falls back to a full digest */
	uint64_t ns_per_chunk; /* measured by the passes */
	struct mig_wtrack_stats st;
};

/* Mark the chunks of guest-physical [gpa, gpa + len), clipped to the digest's chunks. */
static void wt_mark_gpa(struct mig_wtrack *t, uint64_t gpa, uint64_t len)
{
	const uint64_t cb = MIG_DIGEST_CHUNK_PAGES * VM_PAGE_SIZE;

	for (unsigned i = 0; i < t->nr_slots && len; i++) {
		const struct wslot *s = &t->slot[i];
		uint64_t from, to, nr = s->size / cb;

		if (gpa >= s->gpa + s->size || gpa + len <= s->gpa)
			continue;
		from = ((gpa > s->gpa ? gpa : s->gpa) - s->gpa) / cb;
		to = ((gpa + len < s->gpa + s->size ? gpa + len : s->gpa + s->size) - s->gpa - 1) /
		     cb;
		for (uint64_t c = from; c <= to && c < nr; c++)
			atomic_store_explicit(&t->mark[s->first + c], 1, memory_order_release);
	}
}

static void wt_released(void *arg, uint64_t gpa, uint64_t len)
{
	wt_mark_gpa(arg, gpa, len);
}

/* Written pages of one slot since the last re-arm; rearm: protect them again (and mark
 * their chunks), else only count them. Returns the pages found, or -errno. */
static int64_t wt_scan_slot(struct mig_wtrack *t, const struct wslot *s, bool rearm)
{
	struct page_region vec[SCAN_VEC];
	struct pm_scan_arg a = {
		.size = sizeof(a),
		.flags = PM_SCAN_CHECK_WPASYNC | (rearm ? PM_SCAN_WP_MATCHING : 0),
		.start = (uintptr_t)s->hva,
		.end = (uintptr_t)s->hva + s->size,
		.vec = (uintptr_t)vec,
		.vec_len = SCAN_VEC,
		.category_mask = PAGE_IS_WRITTEN,
		/* A hole counts as written, and protecting it would leave a marker that
		 * /proc/self/pagemap shows as swapped: round 0 and the digest would take
		 * every untouched page for a touched one. Holes are zero and stay out. */
		.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
		.return_mask = PAGE_IS_WRITTEN,
	};
	int64_t pages = 0;

	while (a.start < a.end) {
		long n = ioctl(t->pagemap, PAGEMAP_SCAN, &a);

		if (n < 0)
			return -errno;
		for (long i = 0; i < n; i++) {
			uint64_t off = vec[i].start - (uintptr_t)s->hva;

			pages += (int64_t)((vec[i].end - vec[i].start) / VM_PAGE_SIZE);
			if (rearm)
				wt_mark_gpa(t, s->gpa + off, vec[i].end - vec[i].start);
		}
		if (a.walk_end <= a.start)
			return -EIO; /* no progress: never loop for ever */
		a.start = a.walk_end;
	}
	return pages;
}

static int64_t wt_scan(struct mig_wtrack *t, bool rearm)
{
	int64_t total = 0;

	for (unsigned i = 0; i < t->nr_slots; i++) {
		int64_t n = wt_scan_slot(t, &t->slot[i], rearm);

		if (n < 0)
			return n;
		total += n;
	}
	return total;
}

static uint64_t wt_marked(struct mig_wtrack *t)
{
	uint64_t n = 0;

	for (uint64_t c = 0; c < t->nr_chunks; c++)
		n += atomic_load_explicit(&t->mark[c], memory_order_relaxed) != 0;
	return n;
}

/* The last pass, in the pause: scan, then hash what is marked on `threads` threads. */
static int wt_final(struct mig_wtrack *t, unsigned threads, uint8_t out[MIG_DIGEST_BYTES],
		    uint64_t *chunks)
{
	int64_t w = wt_scan(t, true);

	if (w < 0)
		return (int)w;
	*chunks = wt_marked(t);
	mig_digest_chunks(t->vm, threads, t->mark, t->sums, NULL, t->nr_chunks, out);
	return 0;
}

/* A background pass: scan and re-arm, then hash the marked chunks one by one on this
 * thread, giving up (the chunk marked again) as soon as the pause needs the work. */
static int wt_background(struct mig_wtrack *t, uint64_t *chunks)
{
	uint64_t t0 = now_ns(), n = 0;
	int64_t w = wt_scan(t, true);

	if (w < 0)
		return (int)w;
	for (uint64_t c = 0; c < t->nr_chunks && !atomic_load(&t->stop); c++) {
		if (!atomic_exchange(&t->mark[c], 0))
			continue;
		if (!mig_digest_chunk(t->vm, c, &t->stop, t->sums[c], NULL)) {
			atomic_store(&t->mark[c], 1);
			break;
		}
		n++;
	}
	if (n >= 64 && !atomic_load(&t->stop)) /* enough to measure the hash rate by */
		t->ns_per_chunk = (now_ns() - t0) / n;
	*chunks = n;
	return 0;
}

/* Wait on the tracker's condition (lock held) up to ns (0: until woken). */
static void wt_wait(struct mig_wtrack *t, uint64_t ns)
{
	struct timespec until;

	if (!ns) {
		pthread_cond_wait(&t->cond, &t->lock);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += (long)ns;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&t->cond, &t->lock, &until);
}

/* Passes every PASS_NS (at once when kicked), until the pause stops them. */
static void *wt_thread(void *arg)
{
	struct mig_wtrack *t = arg;

	pthread_mutex_lock(&t->lock);
	for (;;) {
		if (!t->want && !t->quit)
			wt_wait(t, atomic_load(&t->stop) ? 0 : PASS_NS);
		if (t->quit)
			break;
		if (atomic_load(&t->stop))
			continue;
		t->want = false;
		t->busy = true;
		pthread_mutex_unlock(&t->lock);
		uint64_t chunks = 0;
		int err = t->err ? t->err : wt_background(t, &chunks);

		pthread_mutex_lock(&t->lock);
		t->err = err;
		t->st.passes++;
		t->st.background_chunks += chunks;
		t->busy = false;
		pthread_cond_broadcast(&t->cond);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

/* userfaultfd with asynchronous write protection over every slot. */
static int wt_register(struct mig_wtrack *t)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC };

	t->uffd = uffd_create(O_CLOEXEC | O_NONBLOCK);
	if (t->uffd < 0)
		return -errno;
	if (ioctl(t->uffd, UFFDIO_API, &api) < 0)
		return -errno;
	for (unsigned i = 0; i < t->nr_slots; i++) {
		struct uffdio_register r = {
			.range = { (uintptr_t)t->slot[i].hva, t->slot[i].size },
			.mode = UFFDIO_REGISTER_MODE_WP,
		};

		if (ioctl(t->uffd, UFFDIO_REGISTER, &r) < 0)
			return -errno;
	}
	t->pagemap = proc_pagemap_fd(); /* shared: not ours to close */
	return t->pagemap < 0 ? -EACCES : 0;
}

static void wt_slots(struct mig_wtrack *t)
{
	uint64_t first = 0;

	t->nr_slots = vm_nr_slots(t->vm) < MIG_SLOTS ? vm_nr_slots(t->vm) : MIG_SLOTS;
	for (unsigned i = 0; i < t->nr_slots; i++) {
		struct vm_slot s;

		vm_get_slot(t->vm, i, &s);
		t->slot[i] = (struct wslot){ s.hva, s.gpa, s.size, first };
		first += s.size / VM_PAGE_SIZE / MIG_DIGEST_CHUNK_PAGES;
	}
	t->nr_chunks = first;
}

static void wt_close(struct mig_wtrack *t)
{
	if (t->uffd >= 0)
		close(t->uffd); /* unregisters, and drops every page's protection */
	free(t->mark);
	free(t->sums);
	free(t);
}

int mig_wtrack_new(struct vm *vm, struct mig_wtrack **out, char *why, size_t len)
{
	struct mig_wtrack *t = calloc(1, sizeof(*t));
	int rc;

	if (!t)
		return -ENOMEM;
	t->vm = vm;
	t->uffd = t->pagemap = -1;
	wt_slots(t);
	t->mark = calloc(t->nr_chunks ? t->nr_chunks : 1, sizeof(*t->mark));
	t->sums = calloc(t->nr_chunks ? t->nr_chunks : 1, MIG_SUM_BYTES);
	rc = t->mark && t->sums && vm_nr_slots(vm) <= MIG_SLOTS ? wt_register(t) : -ENOMEM;
	if (rc) {
		snprintf(why, len, "no write tracking of guest memory (%s)", strerror(-rc));
		wt_close(t);
		return rc;
	}
	/* The first scan finds every page in use (none is protected yet) and marks its chunk;
	 * a chunk with none has the sum of nothing, zero, as calloc left it. */
	rc = (int)wt_scan(t, true);
	if (rc < 0) {
		snprintf(why, len, "no write tracking of guest memory (%s)", strerror(-rc));
		wt_close(t);
		return rc;
	}
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	vm_set_release_watch(vm, wt_released, t);
	t->started = pthread_create(&t->thread, NULL, wt_thread, t) == 0;
	*out = t;
	return 0;
}

void mig_wtrack_kick(struct mig_wtrack *t)
{
	pthread_mutex_lock(&t->lock);
	if (!t->busy && !atomic_load(&t->stop)) {
		t->want = true;
		pthread_cond_broadcast(&t->cond);
	}
	pthread_mutex_unlock(&t->lock);
}

uint64_t mig_wtrack_estimate_ms(struct mig_wtrack *t, unsigned threads)
{
	int64_t pages = wt_scan(t, false);
	uint64_t chunks = wt_marked(t), per = t->ns_per_chunk;

	if (pages < 0)
		return UINT64_MAX;
	/* At most a chunk per written page, plus what is marked already. */
	chunks += (uint64_t)pages < t->nr_chunks ? (uint64_t)pages : t->nr_chunks;
	if (!per)
		per = 40000; /* 256 KiB at ~6.5 GB/s, until a pass measured it */
	return chunks * per / (threads ? threads : 1) / 1000000;
}

/* Stop a background pass and wait until it has; none starts after this. */
static void wt_idle(struct mig_wtrack *t)
{
	atomic_store(&t->stop, true);
	pthread_mutex_lock(&t->lock);
	t->want = false;
	while (t->busy)
		pthread_cond_wait(&t->cond, &t->lock);
	pthread_mutex_unlock(&t->lock);
}

int mig_wtrack_digest(struct mig_wtrack *t, unsigned threads, uint8_t out[MIG_DIGEST_BYTES],
		      struct mig_wtrack_stats *st)
{
	uint64_t chunks = 0, t0;
	int err;

	wt_idle(t);
	t0 = now_ns();
	err = t->err ? t->err : wt_final(t, threads, out, &chunks);
	pthread_mutex_lock(&t->lock);
	t->st.final_chunks = chunks;
	t->st.chunks = t->nr_chunks;
	t->st.final_ms = (now_ns() - t0) / 1000000;
	*st = t->st;
	pthread_mutex_unlock(&t->lock);
	return err;
}

void mig_wtrack_free(struct mig_wtrack *t)
{
	if (!t)
		return;
	vm_set_release_watch(t->vm, NULL, NULL);
	pthread_mutex_lock(&t->lock);
	t->quit = true;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	if (t->started)
		pthread_join(t->thread, NULL);
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->cond);
	wt_close(t);
}
