/* Lazy restore: the VM runs before its memory is back. Guest RAM is registered with
 * userfaultfd; a fault thread brings in the chunk of each page the guest (or KVM, or a
 * device) touches first, a prefetch thread brings in all the others in order, and once
 * every chunk is in, the registration ends. Each chunk is put in place once, whole, with
 * UFFDIO_COPY (or UFFDIO_ZEROPAGE for a zero chunk), which wakes whoever waits on it; it is
 * authenticated and hashed again first, like an eager restore's. A chunk that cannot be
 * read ends the VM: its memory would be wrong. */
#include "backup_priv.h"

#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define SUB "restore"

enum { CHUNK_MISSING, CHUNK_COMING, CHUNK_IN };

struct backup_lazy {
	struct vm *vm;
	struct store *st;
	struct store_manifest m;
	unsigned nslots;
	struct vm_slot slot[2];
	_Atomic unsigned char *state[2]; /* per slot, per chunk */
	atomic_uint_fast64_t left;	 /* chunks not in yet */
	int uffd, stop_fd;
	pthread_t fault_thread, fetch_thread;
	bool threads;
	atomic_bool stop; /* the prefetch thread: end now */
	atomic_bool failed;
	pthread_mutex_t err_mu; /* err, written once by the first failure */
	char err[512];
	int store_lock; /* the store's, shared, until every chunk is in */
	uint64_t t0_ns;
	atomic_uint_fast64_t done_ms, faults;
};

static void lazy_fail(struct backup_lazy *lz, const char *why)
{
	pthread_mutex_lock(&lz->err_mu);
	if (atomic_load(&lz->failed)) {
		pthread_mutex_unlock(&lz->err_mu);
		return;
	}
	snprintf(lz->err, sizeof(lz->err), "%s", why);
	atomic_store(&lz->failed, true);
	pthread_mutex_unlock(&lz->err_mu);
	log_err(SUB, "lazy restore: %s: the VM ends (its memory would be wrong)", why);
	vm_request_stop(lz->vm);
}

/* UFFDIO_COPY of a whole chunk; should a page of it be there already (it never is: only
 * this file fills registered memory), page by page around it. */
static int copy_in(struct backup_lazy *lz, uintptr_t hva, uint8_t *buf, uint64_t len)
{
	struct uffdio_copy c = { hva, (uintptr_t)buf, len, 0, 0 };

	if (!ioctl(lz->uffd, UFFDIO_COPY, &c))
		return 0;
	if (errno != EEXIST)
		return -errno;
	for (uint64_t off = 0; off < len; off += VM_PAGE_SIZE) {
		struct uffdio_copy p = { hva + off, (uintptr_t)buf + off, VM_PAGE_SIZE, 0, 0 };

		if (ioctl(lz->uffd, UFFDIO_COPY, &p) && errno != EEXIST)
			return -errno;
	}
	return 0;
}

/* Put chunk idx of slot a in place, unless another thread does it. */
static int install(struct backup_lazy *lz, unsigned a, uint64_t idx, uint8_t *buf)
{
	const struct store_area *ar = &lz->m.areas[a];
	uint32_t cs = lz->m.chunk_size;
	uint64_t off = idx * cs, len = store_chunk_len(ar, idx, cs);
	unsigned char expect = CHUNK_MISSING;
	uintptr_t hva = (uintptr_t)lz->slot[a].hva + off;
	char why[512];
	int rc = 0;

	if (!atomic_compare_exchange_strong(&lz->state[a][idx], &expect, CHUNK_COMING))
		return 0;
	if (store_id_is_zero(&ar->chunks[idx])) {
		struct uffdio_zeropage z = { { hva, len }, 0, 0 };

		rc = ioctl(lz->uffd, UFFDIO_ZEROPAGE, &z) && errno != EEXIST ? -errno : 0;
	} else if (!(rc = store_chunk_get(lz->st, &ar->chunks[idx], buf, len, why, sizeof(why)))) {
		rc = copy_in(lz, hva, buf, len);
	} else {
		lazy_fail(lz, why);
		return rc;
	}
	if (rc) {
		snprintf(why, sizeof(why), "putting chunk %llu of %s in place: %s",
			 (unsigned long long)idx, ar->name, strerror(-rc));
		lazy_fail(lz, why);
		return rc;
	}
	atomic_store(&lz->state[a][idx], CHUNK_IN);
	if (atomic_fetch_sub(&lz->left, 1) == 1)
		atomic_store(&lz->done_ms, (now_ns() - lz->t0_ns) / 1000000);
	return 0;
}

/* A fault at hva: its chunk, or (chunk in already: a page given back since, by the
 * balloon) a zero page, as it reads without userfaultfd. */
static void on_fault(struct backup_lazy *lz, uint64_t hva, uint8_t *buf)
{
	for (unsigned a = 0; a < lz->nslots; a++) {
		uintptr_t base = (uintptr_t)lz->slot[a].hva;
		uint64_t idx;

		if (hva < base || hva >= base + lz->slot[a].size)
			continue;
		idx = (hva - base) / lz->m.chunk_size;
		if (atomic_load(&lz->state[a][idx]) == CHUNK_IN) {
			struct uffdio_zeropage z = {
				{ hva & ~(uint64_t)(VM_PAGE_SIZE - 1), VM_PAGE_SIZE }, 0, 0
			};
			struct uffdio_range r = z.range;

			if (ioctl(lz->uffd, UFFDIO_ZEROPAGE, &z) && errno == EEXIST)
				ioctl(lz->uffd, UFFDIO_WAKE, &r);
			return;
		}
		install(lz, a, idx, buf); /* COMING: the other thread's copy wakes it */
		atomic_fetch_add(&lz->faults, 1);
		return;
	}
}

static void *fault_main(void *arg)
{
	struct backup_lazy *lz = arg;
	uint8_t *buf = malloc(lz->m.chunk_size);
	struct uffd_msg msg[16];

	sandbox_enter(SANDBOX_CONTROL); /* it reads the store's files */
	if (!buf)
		lazy_fail(lz, "no memory for the fault thread");
	while (buf && !atomic_load(&lz->failed)) {
		struct pollfd p[2] = { { lz->uffd, POLLIN, 0 }, { lz->stop_fd, POLLIN, 0 } };
		ssize_t got;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		got = read(lz->uffd, msg, sizeof(msg));
		for (ssize_t i = 0; got > 0 && i < got / (ssize_t)sizeof(msg[0]); i++)
			if (msg[i].event == UFFD_EVENT_PAGEFAULT)
				on_fault(lz, msg[i].arg.pagefault.address, buf);
	}
	free(buf);
	return NULL;
}

/* Every chunk in order; then the registration ends (and the fault thread with it). */
static void *fetch_main(void *arg)
{
	struct backup_lazy *lz = arg;
	uint8_t *buf = malloc(lz->m.chunk_size);

	sandbox_enter(SANDBOX_CONTROL);
	if (!buf)
		lazy_fail(lz, "no memory for the prefetch thread");
	for (unsigned a = 0; buf && a < lz->nslots && !atomic_load(&lz->failed); a++)
		for (uint64_t i = 0; i < lz->m.areas[a].nchunks && !atomic_load(&lz->failed); i++) {
			if (atomic_load(&lz->stop))
				goto out;
			if (atomic_load(&lz->state[a][i]) == CHUNK_MISSING)
				install(lz, a, i, buf);
		}
	/* The fault thread may still be putting a chunk in: wait until all are. */
	while (buf && !atomic_load(&lz->failed) && !atomic_load(&lz->stop) &&
	       atomic_load(&lz->left))
		sleep_ms(1);
	if (buf && !atomic_load(&lz->failed) && !atomic_load(&lz->left)) {
		for (unsigned a = 0; a < lz->nslots; a++) {
			struct uffdio_range r = { (uintptr_t)lz->slot[a].hva, lz->slot[a].size };

			if (ioctl(lz->uffd, UFFDIO_UNREGISTER, &r))
				log_warn(SUB, "lazy restore: unregistering: %s", strerror(errno));
		}
		log_info(SUB, "lazy restore: all memory in after %llu ms (%llu chunks on a fault)",
			 (unsigned long long)atomic_load(&lz->done_ms),
			 (unsigned long long)atomic_load(&lz->faults));
		store_unlock(lz->store_lock); /* prune may collect again */
		lz->store_lock = -1;
	}
out:
	eventfd_write(lz->stop_fd, 1); /* the fault thread ends too */
	free(buf);
	return NULL;
}

int lazy_begin(struct vm *vm, struct store *st, struct store_manifest *m, struct backup_lazy **out,
	       char *err, size_t len)
{
	struct backup_lazy *lz = calloc(1, sizeof(*lz));
	struct uffdio_api api = { .api = UFFD_API };
	int rc = 0;

	*out = NULL;
	if (!lz)
		return -ENOMEM;
	pthread_mutex_init(&lz->err_mu, NULL);
	lz->store_lock = -1;
	lz->vm = vm;
	lz->st = st;
	lz->m = *m; /* the areas' chunks are ours now */
	m->nareas = 0;
	lz->t0_ns = now_ns();
	lz->uffd = uffd_create(O_CLOEXEC | O_NONBLOCK);
	lz->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	lz->nslots = vm_nr_slots(vm);
	if (lz->uffd < 0 || lz->stop_fd < 0 || ioctl(lz->uffd, UFFDIO_API, &api))
		rc = -errno;
	for (unsigned a = 0; !rc && a < lz->nslots; a++) {
		struct uffdio_register r = { .mode = UFFDIO_REGISTER_MODE_MISSING };

		vm_get_slot(vm, a, &lz->slot[a]);
		r.range.start = (uintptr_t)lz->slot[a].hva;
		r.range.len = lz->slot[a].size;
		lz->state[a] = calloc(lz->m.areas[a].nchunks, 1);
		atomic_fetch_add(&lz->left, lz->m.areas[a].nchunks);
		if (!lz->state[a])
			rc = -ENOMEM;
		else if (ioctl(lz->uffd, UFFDIO_REGISTER, &r))
			rc = -errno;
	}
	if (!rc && (rc = -pthread_create(&lz->fault_thread, NULL, fault_main, lz)) == 0) {
		if ((rc = -pthread_create(&lz->fetch_thread, NULL, fetch_main, lz))) {
			eventfd_write(lz->stop_fd, 1);
			pthread_join(lz->fault_thread, NULL);
		} else {
			lz->threads = true;
		}
	}
	if (rc) {
		snprintf(err, len, "lazy restore: userfaultfd: %s (restore with --eager)",
			 strerror(-rc));
		lz->st = NULL; /* the caller's still */
		backup_lazy_free(lz);
		return rc;
	}
	*out = lz;
	return 0;
}

void backup_lazy_free(struct backup_lazy *lz)
{
	if (!lz)
		return;
	if (lz->threads) {
		atomic_store(&lz->stop, true);
		pthread_join(lz->fetch_thread, NULL); /* which tells the fault thread to end */
		pthread_join(lz->fault_thread, NULL);
	}
	if (lz->uffd >= 0)
		close(lz->uffd);
	if (lz->stop_fd >= 0)
		close(lz->stop_fd);
	store_unlock(lz->store_lock);
	pthread_mutex_destroy(&lz->err_mu);
	for (unsigned a = 0; a < 2; a++)
		free((void *)lz->state[a]);
	store_manifest_free(&lz->m);
	store_close(lz->st);
	free(lz);
}

bool backup_lazy_error(struct backup_lazy *lz, char *buf, size_t len)
{
	bool failed;

	if (!lz)
		return false;
	pthread_mutex_lock(&lz->err_mu);
	failed = atomic_load(&lz->failed);
	if (failed)
		snprintf(buf, len, "%s", lz->err);
	pthread_mutex_unlock(&lz->err_mu);
	return failed;
}

void lazy_hold_lock(struct backup_lazy *lz, int fd)
{
	lz->store_lock = fd;
}

uint64_t backup_lazy_done_ms(struct backup_lazy *lz)
{
	return lz ? atomic_load(&lz->done_ms) : 0;
}
