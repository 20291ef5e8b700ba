/* The switchover digest: the sum (mod 2^128) of XXH3-128(page, seed = its address) over
 * every non-zero page of guest RAM. Pages are hashed in chunks of 64 on several threads,
 * and each chunk keeps its own sum, so each side can keep its chunk sums current while
 * pages move (source_digest.c, dest_digest.c) and the pause only hashes the chunks changed
 * last; and a sum can be finished page by page as pages arrive after the guest started
 * elsewhere (post-copy). A page lost, stale or misplaced in transit changes the digest;
 * untouched pages are zero and skipped without being read. It guards against bugs (dirty
 * tracking, transport, placement), not against a forger: the channels are mutually
 * authenticated TLS. */
#include "stream_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#define MAX_THREADS 8
#define SOLO_CHUNKS 16 /* fewer marked chunks than this: hashed by the calling thread */
#define STOP_PAGES  16 /* a stoppable chunk hash looks at its flag every 64 KiB */

struct digest_job {
	struct vm *vm;
	uint64_t nr_chunks;
	_Atomic uint64_t *next; /* the next chunk any thread may take */
	_Atomic uint32_t *mark; /* NULL: every chunk */
	uint8_t (*sums)[MIG_SUM_BYTES];
	uint8_t (*pages)[MIG_SUM_BYTES];
};

uint64_t mig_digest_nr_chunks(struct vm *vm)
{
	uint64_t n = 0;
	struct vm_slot s;

	for (unsigned i = 0; i < vm_nr_slots(vm); i++) {
		vm_get_slot(vm, i, &s);
		n += s.size / VM_PAGE_SIZE / MIG_DIGEST_CHUNK_PAGES;
	}
	return n;
}

#define PM_PRESENT (1ull << 63)
#define PM_SWAPPED (1ull << 62)

void mig_touched_pages(const uint8_t *base, unsigned n, unsigned char *res)
{
	uint64_t pm[MIG_TOUCHED_MAX];
	int pagemap_fd = proc_pagemap_fd();
	bool ok;

	n = n > MIG_TOUCHED_MAX ? MIG_TOUCHED_MAX : n;
	ok = pagemap_fd >= 0 && pread(pagemap_fd, pm, n * sizeof(pm[0]),
				      (off_t)((uintptr_t)base / VM_PAGE_SIZE * sizeof(pm[0]))) ==
					(ssize_t)(n * sizeof(pm[0]));
	for (unsigned i = 0; ok && i < n; i++)
		res[i] = (pm[i] & (PM_PRESENT | PM_SWAPPED)) != 0;
	if (!ok && mincore((void *)base, (size_t)n * VM_PAGE_SIZE, res) < 0)
		memset(res, 1, n);
}

static unsigned __int128 sum_get(const uint8_t in[MIG_SUM_BYTES])
{
	unsigned __int128 v;

	memcpy(&v, in, sizeof(v));
	return v;
}

static void sum_put(uint8_t out[MIG_SUM_BYTES], unsigned __int128 v)
{
	memcpy(out, &v, sizeof(v));
}

void mig_digest_add(uint8_t acc[MIG_SUM_BYTES], const uint8_t other[MIG_SUM_BYTES])
{
	sum_put(acc, sum_get(acc) + sum_get(other));
}

void mig_digest_page(uint8_t acc[MIG_SUM_BYTES], uint64_t gpa, const uint8_t *page)
{
	XXH128_hash_t h;

	if (mem_is_zero(page, VM_PAGE_SIZE))
		return;
	h = XXH3_128bits_withSeed(page, VM_PAGE_SIZE, gpa);
	sum_put(acc, sum_get(acc) + ((unsigned __int128)h.high64 << 64 | h.low64));
}

bool mig_digest_chunk(struct vm *vm, uint64_t c, const atomic_bool *stop,
		      uint8_t out[MIG_SUM_BYTES], uint8_t (*pages)[MIG_SUM_BYTES])
{
	unsigned char res[MIG_DIGEST_CHUNK_PAGES];
	uint8_t acc[MIG_SUM_BYTES] = { 0 };
	struct vm_slot s;
	unsigned idx = 0;
	uint64_t first = c * MIG_DIGEST_CHUNK_PAGES; /* the chunk's first page, over all slots */

	for (vm_get_slot(vm, idx, &s); c >= s.size / VM_PAGE_SIZE / MIG_DIGEST_CHUNK_PAGES;) {
		c -= s.size / VM_PAGE_SIZE / MIG_DIGEST_CHUNK_PAGES;
		vm_get_slot(vm, ++idx, &s);
	}
	uint8_t *base = s.hva + c * MIG_DIGEST_CHUNK_PAGES * VM_PAGE_SIZE;

	mig_touched_pages(base, MIG_DIGEST_CHUNK_PAGES, res);
	for (unsigned i = 0; i < MIG_DIGEST_CHUNK_PAGES; i++) {
		uint8_t one[MIG_SUM_BYTES] = { 0 };

		if (stop && i % STOP_PAGES == 0 && atomic_load(stop))
			return false;
		if (res[i])
			mig_digest_page(one,
					s.gpa + (c * MIG_DIGEST_CHUNK_PAGES + i) * VM_PAGE_SIZE,
					base + (size_t)i * VM_PAGE_SIZE);
		mig_digest_add(acc, one);
		if (pages)
			memcpy(pages[first + i], one, MIG_SUM_BYTES);
	}
	memcpy(out, acc, MIG_SUM_BYTES);
	return true;
}

/* Chunks are handed out one at a time, so threads stay busy even when the marked chunks
 * bunch together. A mark is cleared before its chunk is read (see dest_digest.c). */
static void *digest_share(void *arg)
{
	struct digest_job *j = arg;
	uint64_t c;

	while ((c = atomic_fetch_add(j->next, 1)) < j->nr_chunks)
		if (!j->mark || atomic_exchange(&j->mark[c], 0))
			mig_digest_chunk(j->vm, c, NULL, j->sums[c], j->pages);
	return NULL;
}

/* A worker of its own: the migration list (the caller's share runs under the caller's). */
static void *digest_thread(void *arg)
{
	sandbox_enter(SANDBOX_MIGRATION);
	return digest_share(arg);
}

void mig_digest_chunks(struct vm *vm, unsigned threads, _Atomic uint32_t *mark,
		       uint8_t (*sums)[MIG_SUM_BYTES], uint8_t (*pages)[MIG_SUM_BYTES],
		       uint64_t nr_chunks, uint8_t out[MIG_DIGEST_BYTES])
{
	_Atomic uint64_t next = 0;
	struct digest_job job = { vm, nr_chunks, &next, mark, sums, pages };
	pthread_t tid[MAX_THREADS];
	bool started[MAX_THREADS];

	threads = threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads;
	/* A few marked chunks are quicker hashed than another thread is started (in the
	 * pause, on an idle guest, that start was most of the digest's time). */
	if (mark && threads > 1) {
		uint64_t marked = 0;

		for (uint64_t c = 0; c < nr_chunks && marked < SOLO_CHUNKS; c++)
			marked += atomic_load_explicit(&mark[c], memory_order_relaxed) != 0;
		if (marked < SOLO_CHUNKS)
			threads = 1;
	}
	/* This thread takes a share too: one thread needs no other. */
	for (unsigned t = 1; t < threads; t++)
		started[t] = pthread_create(&tid[t], NULL, digest_thread, &job) == 0;
	digest_share(&job);
	for (unsigned t = 1; t < threads; t++)
		if (started[t])
			pthread_join(tid[t], NULL);
	if (out) {
		memset(out, 0, MIG_DIGEST_BYTES);
		for (uint64_t c = 0; c < nr_chunks; c++)
			mig_digest_add(out, sums[c]);
	}
}

int mig_ram_digest(struct vm *vm, unsigned threads, uint8_t out[MIG_DIGEST_BYTES])
{
	uint64_t nr_chunks = mig_digest_nr_chunks(vm);
	uint8_t(*sums)[MIG_SUM_BYTES] = calloc(nr_chunks ? nr_chunks : 1, MIG_SUM_BYTES);

	if (!sums)
		return -ENOMEM;
	mig_digest_chunks(vm, threads, NULL, sums, NULL, nr_chunks, out);
	free(sums);
	return 0;
}
