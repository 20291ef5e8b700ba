/* Post-copy on the destination. At the switch the source says which pages are stale here
 * (dirtied since they were sent): they are dropped, so that they read as missing, and
 * guest RAM is registered with userfaultfd. Once the guest runs, a touch of a missing
 * page — by a vCPU through KVM or by a device thread — blocks in the kernel and reaches
 * the fault thread: a stale page is asked of the source on the urgent channel, any other
 * (never touched on the source, or given back since) is zero. Pages come on the urgent
 * channel and, pushed in address order, on the page channels; each is placed with
 * UFFDIO_COPY, which never overwrites a page already there and wakes whoever waits.
 *
 * The digest: the chunk sums of what was here at the switch (stale pages dropped) plus the
 * hash of each stale page as it arrives, before the guest can touch it, must equal the
 * source's digest at its pause. The fault thread never touches guest memory itself. */
#include "dest_priv.h"
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SUB		 "incoming"
#define REQ_MAX		 512 /* pages in one request (the source's limit too) */
#define FAULT_BATCH	 32
#define EARLY_TIMEOUT_MS 60000 /* the page channels catch up with an early drop */

struct pc_slot {
	uint8_t *hva;
	uint64_t gpa, pages, first; /* first: the slot's first page in the bitmaps */
};

struct pc_dest {
	struct mig_dest *c;
	struct vm *vm;
	int uffd, event_fd, stop_fd;
	unsigned nr_slots;
	struct pc_slot slot[IN_MAX_SLOTS];
	uint64_t *stale, *asked;  /* asked: only the fault thread */
	uint64_t *early;	  /* dropped before the switch (REC_PC_DROP); NULL: none */
	_Atomic uint64_t *got;	  /* claimed by the thread placing it */
	_Atomic uint64_t *placed; /* in guest memory (a fault on it now: given back since) */
	uint64_t nr_stale, words;
	_Atomic uint64_t nr_got, nr_asked, faults;
	pthread_mutex_t sum_lock;
	uint8_t sum[MIG_DIGEST_BYTES]; /* what was here at the switch, then each arrival */
	uint8_t want[MIG_DIGEST_BYTES];
	pthread_t fault_thread;
	bool fault_started;
	atomic_int err;
	uint64_t t0;
};

static bool pc_index(const struct pc_dest *p, uint64_t gpa, uint64_t *idx, uint8_t **hva)
{
	for (unsigned i = 0; i < p->nr_slots; i++) {
		const struct pc_slot *s = &p->slot[i];

		if (gpa >= s->gpa && (gpa - s->gpa) / VM_PAGE_SIZE < s->pages) {
			*idx = s->first + (gpa - s->gpa) / VM_PAGE_SIZE;
			*hva = s->hva + (gpa - s->gpa);
			return true;
		}
	}
	return false;
}

static bool bit(const uint64_t *map, uint64_t i)
{
	return map[i / 64] >> (i % 64) & 1;
}

static void pc_signal(struct pc_dest *p)
{
	uint64_t one = 1;

	if (write(p->event_fd, &one, sizeof(one)) < 0)
		log_debug(SUB, "post-copy event counter full");
}

static void pc_set_err(struct pc_dest *p, int err)
{
	int none = 0;

	if (atomic_compare_exchange_strong(&p->err, &none, err))
		pc_signal(p);
}

/* A stale page arrived (data NULL: zero): place it unless it is here already. */
static int pc_install(void *arg, uint64_t gpa, const uint8_t *data)
{
	struct pc_dest *p = arg;
	uint64_t i;
	uint8_t *hva;
	int rc;

	if (!pc_index(p, gpa, &i, &hva) || !bit(p->stale, i))
		return -EPROTO; /* the source sends stale pages only */
	if (atomic_fetch_or(&p->got[i / 64], 1ull << (i % 64)) & (1ull << (i % 64)))
		return 0;
	if (data) {
		struct uffdio_copy c = { (uintptr_t)hva, (uintptr_t)data, VM_PAGE_SIZE, 0, 0 };

		rc = ioctl(p->uffd, UFFDIO_COPY, &c);
	} else {
		struct uffdio_zeropage z = { { (uintptr_t)hva, VM_PAGE_SIZE }, 0, 0 };

		rc = ioctl(p->uffd, UFFDIO_ZEROPAGE, &z);
	}
	if (rc < 0 && errno != EEXIST)
		return -errno;
	atomic_fetch_or(&p->placed[i / 64], 1ull << (i % 64));
	if (data) {
		pthread_mutex_lock(&p->sum_lock);
		mig_digest_page(p->sum, gpa, data);
		pthread_mutex_unlock(&p->sum_lock);
	}
	if (atomic_fetch_add(&p->nr_got, 1) + 1 == p->nr_stale)
		pc_signal(p);
	return 0;
}

/* ---- the fault thread ------------------------------------------------------------------ */

/* A page nobody will send: never touched on the source, or given back here since. */
static int pc_zero(struct pc_dest *p, uint8_t *hva)
{
	struct uffdio_zeropage z = { { (uintptr_t)hva, VM_PAGE_SIZE }, 0, 0 };
	struct uffdio_range r = { (uintptr_t)hva, VM_PAGE_SIZE };

	if (ioctl(p->uffd, UFFDIO_ZEROPAGE, &z) == 0)
		return 0;
	/* There already: placed meanwhile. Wake the waiter in case it missed that. */
	return errno == EEXIST && ioctl(p->uffd, UFFDIO_WAKE, &r) == 0 ? 0 : -errno;
}

/* One fault: ask for a stale page (once), or zero any other. */
static int pc_fault(struct pc_dest *p, uint64_t addr, uint64_t *req, uint32_t *n)
{
	for (unsigned s = 0; s < p->nr_slots; s++) {
		const struct pc_slot *sl = &p->slot[s];
		uint64_t off = (addr & ~(VM_PAGE_SIZE - 1)) - (uintptr_t)sl->hva, i;

		if (addr < (uintptr_t)sl->hva || off / VM_PAGE_SIZE >= sl->pages)
			continue;
		i = sl->first + off / VM_PAGE_SIZE;
		atomic_fetch_add(&p->faults, 1);
		/* Zero only what nobody sends: a stale page being placed right now is waited
		 * for (UFFDIO_COPY wakes the faulting thread). */
		if (!bit(p->stale, i) || bit((const uint64_t *)p->placed, i))
			return pc_zero(p, sl->hva + off);
		if (bit((const uint64_t *)p->got, i))
			return 0;
		if (!bit(p->asked, i) && *n < REQ_MAX) {
			p->asked[i / 64] |= 1ull << (i % 64);
			req[(*n)++] = sl->gpa + off;
		}
		return 0;
	}
	return -EFAULT; /* not guest RAM: nothing else is registered */
}

static int pc_read_faults(struct pc_dest *p)
{
	struct uffd_msg msg[FAULT_BATCH];
	uint64_t req[REQ_MAX];
	uint32_t n = 0;
	ssize_t got = read(p->uffd, msg, sizeof(msg));
	int err = 0;

	if (got < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	for (ssize_t i = 0; !err && i < got / (ssize_t)sizeof(msg[0]); i++)
		if (msg[i].event == UFFD_EVENT_PAGEFAULT)
			err = pc_fault(p, msg[i].arg.pagefault.address, req, &n);
	if (!err && n) {
		err = mig_rec_send_raw(p->c->urgent, REC_PAGE_REQ, req, n * sizeof(req[0]));
		atomic_fetch_add(&p->nr_asked, n);
	}
	return err;
}

/* One record of requested pages from the urgent channel. */
static int pc_read_urgent(struct pc_dest *p, uint8_t *scratch, uint8_t *page)
{
	uint32_t type, len;
	int err = mig_rec_recv_header(p->c->urgent, &type, &len);

	if (!err && type != REC_PAGES)
		err = -EPROTO;
	if (!err) {
		int64_t n =
			mig_batch_recv_each(p->c->urgent, p->vm, len, scratch, page, pc_install, p);

		err = n < 0 ? (int)n : 0;
	}
	return err;
}

static void *pc_fault_loop(void *arg)
{
	struct pc_dest *p = arg;
	uint8_t *scratch = malloc(MIG_BATCH_PAGES * sizeof(uint64_t));
	uint8_t *page = malloc(VM_PAGE_SIZE);
	int err = scratch && page ? 0 : -ENOMEM;

	sandbox_enter(SANDBOX_MIGRATION);
	while (!err) {
		struct pollfd f[3] = { { p->stop_fd, POLLIN, 0 },
				       { p->uffd, POLLIN, 0 },
				       { net_tls_fd(p->c->urgent), POLLIN, 0 } };

		if (!net_tls_pending(p->c->urgent) && poll(f, 3, -1) < 0 && errno != EINTR)
			err = -errno;
		if (f[0].revents)
			break;
		if (!err && (f[2].revents || net_tls_pending(p->c->urgent)))
			err = pc_read_urgent(p, scratch, page);
		if (!err && f[1].revents)
			err = pc_read_faults(p);
	}
	if (err)
		pc_set_err(p, err);
	free(scratch);
	free(page);
	return NULL;
}

/* ---- setup, the wait, the end ---------------------------------------------------------- */

static void pc_slots(struct pc_dest *p)
{
	uint64_t first = 0;

	p->nr_slots = vm_nr_slots(p->vm);
	for (unsigned i = 0; i < p->nr_slots; i++) {
		struct vm_slot s;

		vm_get_slot(p->vm, i, &s);
		p->slot[i] = (struct pc_slot){ s.hva, s.gpa, s.size / VM_PAGE_SIZE, first };
		first += s.size / VM_PAGE_SIZE;
	}
	p->words = first / 64;
}

static bool to_drop(const struct pc_dest *p, uint64_t i)
{
	return bit(p->stale, i) && !(p->early && bit(p->early, i));
}

/* Drop every stale page not dropped before (runs of them at once), taking it out of the
 * digest first. The digest's hasher is stopped: it must not read a page between its check
 * that the page is there and the drop (its read would put a zero page there, which a
 * fault would then never ask for). */
static int pc_drop_stale(struct pc_dest *p)
{
	mig_track_stop(p->c->track);
	for (unsigned s = 0; s < p->nr_slots; s++) {
		const struct pc_slot *sl = &p->slot[s];

		for (uint64_t i = 0; i < sl->pages;) {
			uint64_t j = i;

			while (j < sl->pages && to_drop(p, sl->first + j))
				mig_track_forget(p->c->track, sl->gpa + j++ * VM_PAGE_SIZE);
			if (j > i && madvise(sl->hva + i * VM_PAGE_SIZE, (j - i) * VM_PAGE_SIZE,
					     MADV_DONTNEED) < 0)
				return -errno;
			i = j > i ? j : i + 1;
		}
	}
	return 0;
}

static int pc_register(struct pc_dest *p)
{
	struct uffdio_api api = { .api = UFFD_API };

	p->uffd = uffd_create(O_CLOEXEC | O_NONBLOCK);
	if (p->uffd < 0 || ioctl(p->uffd, UFFDIO_API, &api) < 0)
		return -errno;
	for (unsigned i = 0; i < p->nr_slots; i++) {
		struct uffdio_register r = {
			.range = { (uintptr_t)p->slot[i].hva, p->slot[i].pages * VM_PAGE_SIZE },
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};

		if (ioctl(p->uffd, UFFDIO_REGISTER, &r) < 0)
			return -errno;
	}
	return 0;
}

static void pc_free(struct pc_dest *p)
{
	if (!p)
		return;
	if (p->uffd >= 0)
		close(p->uffd);
	if (p->event_fd >= 0)
		close(p->event_fd);
	if (p->stop_fd >= 0)
		close(p->stop_fd);
	pthread_mutex_destroy(&p->sum_lock);
	free(p->stale);
	free(p->early);
	free(p->asked);
	free((void *)p->got);
	free((void *)p->placed);
	free(p);
}

static struct pc_dest *pc_alloc(struct mig_dest *c)
{
	struct pc_dest *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->c = c;
	p->vm = c->vm;
	p->uffd = -1;
	pthread_mutex_init(&p->sum_lock, NULL);
	pc_slots(p);
	p->stale = calloc(p->words + 1, sizeof(uint64_t));
	p->asked = calloc(p->words + 1, sizeof(uint64_t));
	p->got = calloc(p->words + 1, sizeof(uint64_t));
	p->placed = calloc(p->words + 1, sizeof(uint64_t));
	p->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	p->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!p->stale || !p->asked || !p->got || !p->placed || p->event_fd < 0 || p->stop_fd < 0) {
		pc_free(p);
		return NULL;
	}
	return p;
}

int mig_pc_check(const struct mig_dest *c, char *why, size_t len)
{
	int fd;

	if (!c->in.postcopy_fail)
		return snprintf(why, len,
				"this VMM cannot stop a guest that post-copy leaves "
				"without memory"),
		       -ENOTSUP;
	if (c->in.vm && c->in.vm->hugepages)
		return snprintf(why, len, "post-copy needs 4 KiB pages (this VM has --hugepages)"),
		       -ENOTSUP;
	fd = uffd_create(O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return snprintf(why, len, "userfaultfd: %s", strerror(errno)), -errno;
	close(fd);
	return 0;
}

/* Every page channel has ended `rounds` rounds: the pages sent before are in place. */
static int pc_wait_rounds(struct mig_dest *c, uint32_t rounds)
{
	uint64_t until = now_ns() + EARLY_TIMEOUT_MS * 1000000ull;

	for (;;) {
		bool all = true;

		for (unsigned i = 0; i < c->nch; i++) {
			if (atomic_load(&c->ch[i].done))
				return mig_in_fail(c, -EPROTO,
						   "a page channel ended before the post-copy "
						   "switch");
			all &= atomic_load(&c->ch[i].rounds) >= rounds;
		}
		if (all)
			return 0;
		if (now_ns() > until)
			return mig_in_fail(c, -ETIMEDOUT,
					   "the page channels did not end round %u in %d s", rounds,
					   EARLY_TIMEOUT_MS / 1000);
		sleep_ns(200000);
	}
}

static int pc_map_len_ok(struct mig_dest *c, const struct pc_dest *p, size_t len)
{
	if (len == p->words * sizeof(uint64_t))
		return 0;
	return mig_in_fail(c, -EPROTO, "post-copy: a stale map of %zu bytes for %llu pages", len,
			   (unsigned long long)(p->words * 64));
}

/* REC_PC_DROP: the pages stale so far go now, while the guest still runs on the source. */
static int pc_drop_early(struct mig_dest *c, struct pc_dest *p, const Cme__MigPostcopyDrop *d)
{
	Cme__MigPostcopyDropped r = CME__MIG_POSTCOPY_DROPPED__INIT;
	uint64_t t0 = now_ns();
	int rc = pc_map_len_ok(c, p, d->stale.len);

	if (!rc)
		rc = pc_wait_rounds(c, d->round);
	if (rc)
		return rc;
	memcpy(p->stale, d->stale.data, d->stale.len);
	rc = pc_drop_stale(p);
	if (!rc && mig_track_start(c->track))
		log_debug(SUB,
			  "vm=%s the digest's hasher did not restart: the switch hashes "
			  "the rest",
			  c->in.name);
	if (rc)
		return mig_in_fail(c, rc, "post-copy: dropping stale pages: %s", strerror(-rc));
	p->early = malloc(p->words * sizeof(uint64_t) + sizeof(uint64_t));
	if (!p->early)
		return mig_in_fail(c, -ENOMEM, "post-copy: out of memory");
	memcpy(p->early, p->stale, (p->words + 1) * sizeof(uint64_t));
	r.pages = bits_count(p->early, p->words, UINT64_MAX);
	r.us = (now_ns() - t0) / 1000;
	log_info(SUB, "vm=%s post-copy: %llu stale pages dropped before the switch in %llu us",
		 c->in.name, (unsigned long long)r.pages, (unsigned long long)r.us);
	return mig_rec_send_msg(c->ctl, REC_PC_DROPPED, &r.base);
}

int mig_pc_drop_early(struct mig_dest *c, const uint8_t *payload, uint32_t len)
{
	Cme__MigPostcopyDrop *d = PB_UNPACK(cme__mig_postcopy_drop__unpack, len, payload);
	struct pc_dest *p = d && c->postcopy_offer && !c->pc ? pc_alloc(c) : NULL;
	int rc;

	if (!d || !c->postcopy_offer || c->pc)
		rc = mig_in_fail(c, -EPROTO, "an unexpected or malformed post-copy drop");
	else if (!p)
		rc = mig_in_fail(c, -ENOMEM, "post-copy: out of memory");
	else
		rc = pc_drop_early(c, p, d);
	if (d)
		cme__mig_postcopy_drop__free_unpacked(d, NULL);
	if (p)
		c->pc = p; /* freed with the migration, on failure too */
	return rc;
}

int mig_pc_prepare(struct mig_dest *c, const uint8_t *stale, size_t len, const uint8_t *want)
{
	struct pc_dest *p = c->pc ? c->pc : pc_alloc(c);
	uint64_t t0 = now_ns();
	int rc;

	if (!p)
		return mig_in_fail(c, -ENOMEM, "post-copy: out of memory");
	c->pc = p; /* freed with the migration, on failure too */
	if ((rc = pc_map_len_ok(c, p, len)))
		return rc;
	memcpy(p->stale, stale, len);
	memcpy(p->want, want, MIG_DIGEST_BYTES);
	/* A page dropped before and left out now would never come: refuse before the guest
	 * runs. */
	for (uint64_t w = 0; p->early && w < p->words; w++)
		if (p->early[w] & ~p->stale[w])
			return mig_in_fail(c, -EPROTO,
					   "post-copy: the switch leaves out pages dropped "
					   "before it");
	p->nr_stale = bits_count(p->stale, p->words, UINT64_MAX);
	rc = pc_drop_stale(p);
	log_debug(SUB, "vm=%s post-copy: %llu stale pages (%llu dropped before) in %llu us",
		  c->in.name, (unsigned long long)p->nr_stale,
		  (unsigned long long)(p->early ? bits_count(p->early, p->words, UINT64_MAX) : 0),
		  (unsigned long long)(now_ns() - t0) / 1000);
	if (rc)
		return mig_in_fail(c, rc, "post-copy: dropping stale pages: %s", strerror(-rc));
	return 0;
}

void mig_pc_set_base(struct mig_dest *c, const uint8_t sum[MIG_DIGEST_BYTES])
{
	memcpy(c->pc->sum, sum, MIG_DIGEST_BYTES);
}

static void pc_channel_failed(void *arg, int err)
{
	pc_set_err(arg, err);
}

int mig_pc_start(struct mig_dest *c)
{
	struct pc_dest *p = c->pc;
	int rc = pc_register(p);

	if (rc)
		return mig_in_fail(c, rc, "post-copy: userfaultfd: %s", strerror(-rc));
	if (net_tls_set_timeout(c->urgent, 0) < 0)
		log_debug(SUB, "cannot clear the urgent channel's timeout");
	p->fault_started = pthread_create(&p->fault_thread, NULL, pc_fault_loop, p) == 0;
	if (!p->fault_started)
		return mig_in_fail(c, -EAGAIN, "post-copy: cannot start the fault thread");
	for (unsigned i = 0; i < c->nch; i++) {
		c->ch[i].page_fn = pc_install;
		c->ch[i].page_arg = p;
		c->ch[i].fail_fn = pc_channel_failed;
		c->ch[i].track = NULL;
		c->ch[i].err = 0;
		if (mig_rx_start(&c->ch[i]))
			return mig_in_fail(c, -EAGAIN, "post-copy: cannot start receivers");
	}
	log_info(SUB, "vm=%s post-copy: %llu pages to come after the guest starts", c->in.name,
		 (unsigned long long)p->nr_stale);
	return 0;
}

/* Every stale page here, a failure, or the VMM ending (quit). */
static int pc_wait(struct mig_dest *c)
{
	struct pc_dest *p = c->pc;

	while (atomic_load(&p->nr_got) < p->nr_stale && !atomic_load(&p->err)) {
		struct pollfd f[2] = { { p->event_fd, POLLIN, 0 }, { c->wake_fd, POLLIN, 0 } };
		uint64_t v;

		if (poll(f, 2, -1) < 0 && errno != EINTR)
			return -errno;
		if (f[0].revents && read(p->event_fd, &v, sizeof(v)) < 0)
			log_debug(SUB, "post-copy event already read");
		if (f[1].revents)
			mig_in_drain_wake(c);
		if (mig_in_stopping(c))
			return -ECANCELED;
	}
	return atomic_load(&p->err);
}

static void pc_send_done(struct mig_dest *c, bool ok, const char *reason)
{
	Cme__MigPostcopyDone d = CME__MIG_POSTCOPY_DONE__INIT;
	struct pc_dest *p = c->pc;

	d.ok = ok;
	d.reason = (char *)reason;
	d.pages = p->nr_stale;
	d.requested = atomic_load(&p->nr_asked);
	d.ms = (now_ns() - p->t0) / 1000000;
	if (mig_rec_send_msg(c->ctl, REC_POSTCOPY_DONE, &d.base) < 0)
		log_warn(SUB, "vm=%s could not tell the source post-copy is over", c->in.name);
}

/* Stop the fault thread and give every page back to the kernel's own faults. */
static void pc_stop(struct pc_dest *p)
{
	uint64_t one = 1;

	if (p->fault_started && write(p->stop_fd, &one, sizeof(one)) == sizeof(one))
		pthread_join(p->fault_thread, NULL);
	p->fault_started = false;
}

int mig_pc_run(struct mig_dest *c)
{
	struct pc_dest *p = c->pc;
	int rc;

	p->t0 = now_ns();
	rc = pc_wait(c);
	if (!rc && mig_in_join(c))
		rc = -EIO;
	if (rc) {
		/* The guest ran here and lacks pages that only the source has: it must not
		 * run one more instruction, nor may its devices finish what they began. */
		snprintf(c->err, sizeof(c->err),
			 "post-copy broke with %llu of %llu pages still at the source (%s): the "
			 "guest cannot continue here; the source keeps it paused as of the switch",
			 (unsigned long long)(p->nr_stale - atomic_load(&p->nr_got)),
			 (unsigned long long)p->nr_stale,
			 rc == -ECANCELED ? "stopped here" : strerror(-rc));
		c->in.postcopy_fail(c->in.postcopy_arg, c->err);
		return rc; /* only without a hook that ends the process */
	}
	pc_stop(p);
	bool ok = !sodium_memcmp(p->sum, p->want, MIG_DIGEST_BYTES);

	log_info(SUB,
		 "vm=%s post-copy done: %llu pages (%llu asked for by %llu faults) in %llu "
		 "ms; digest %s",
		 c->in.name, (unsigned long long)p->nr_stale,
		 (unsigned long long)atomic_load(&p->nr_asked),
		 (unsigned long long)atomic_load(&p->faults),
		 (unsigned long long)((now_ns() - p->t0) / 1000000), ok ? "matches" : "MISMATCH");
	pc_send_done(c, ok, ok ? "" : "memory digest mismatch after post-copy");
	if (!ok)
		c->in.postcopy_fail(
			c->in.postcopy_arg,
			"memory digest mismatch after post-copy: pages were lost or "
			"corrupted; the source keeps the guest paused as of the switch");
	return ok ? 0 : -EBADMSG;
}

void mig_pc_free(struct mig_dest *c)
{
	if (!c->pc)
		return;
	pc_stop(c->pc);
	pc_free(c->pc);
	c->pc = NULL;
}
