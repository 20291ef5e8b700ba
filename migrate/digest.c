/* The switchover digest: BLAKE2b over every non-zero page of guest RAM with its address,
 * in 2 MiB chunks hashed on several threads; the digest is the hash of the chunk hashes in
 * address order. Both sides compute it the same way, so a page lost, stale or misplaced in
 * transit changes it. Pages that are not resident (never touched) are zero and skipped
 * without being read. The destination keeps its chunk hashes up to date while pages arrive
 * (dest_digest.c) and only finishes the chunks still marked here. */
#include "stream_priv.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MAX_THREADS 8
#define STOP_PAGES  64 /* a stoppable chunk hash looks at its flag every 256 KiB */

struct digest_job {
	struct vm *vm;
	uint64_t nr_chunks;
	_Atomic uint64_t *next; /* the next chunk any thread may take */
	_Atomic uint32_t *mark; /* NULL: every chunk */
	uint8_t (*sums)[MIG_DIGEST_BYTES];
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

bool mig_digest_chunk(struct vm *vm, uint64_t c, const atomic_bool *stop,
		      uint8_t out[MIG_DIGEST_BYTES])
{
	crypto_generichash_state h;
	unsigned char res[MIG_DIGEST_CHUNK_PAGES];
	struct vm_slot s;
	unsigned idx = 0;

	for (vm_get_slot(vm, idx, &s); c >= s.size / VM_PAGE_SIZE / MIG_DIGEST_CHUNK_PAGES;) {
		c -= s.size / VM_PAGE_SIZE / MIG_DIGEST_CHUNK_PAGES;
		vm_get_slot(vm, ++idx, &s);
	}
	crypto_generichash_init(&h, NULL, 0, MIG_DIGEST_BYTES);
	uint8_t *base = s.hva + c * MIG_DIGEST_CHUNK_PAGES * VM_PAGE_SIZE;

	if (mincore(base, MIG_DIGEST_CHUNK_PAGES * VM_PAGE_SIZE, res) < 0)
		memset(res, 1, sizeof(res));
	for (unsigned i = 0; i < MIG_DIGEST_CHUNK_PAGES; i++) {
		const uint8_t *p = base + (size_t)i * VM_PAGE_SIZE;
		uint64_t gpa = s.gpa + (c * MIG_DIGEST_CHUNK_PAGES + i) * VM_PAGE_SIZE;

		if (stop && i % STOP_PAGES == 0 && atomic_load(stop))
			return false;
		if (!(res[i] & 1) || mem_is_zero(p, VM_PAGE_SIZE))
			continue;
		crypto_generichash_update(&h, (const uint8_t *)&gpa, sizeof(gpa));
		crypto_generichash_update(&h, p, VM_PAGE_SIZE);
	}
	crypto_generichash_final(&h, out, MIG_DIGEST_BYTES);
	return true;
}

/* Chunks are handed out one at a time, so threads stay busy even when the marked chunks
 * bunch together. A mark is cleared before its chunk is read (see dest_digest.c). */
static void *digest_thread(void *arg)
{
	struct digest_job *j = arg;
	uint64_t c;

	while ((c = atomic_fetch_add(j->next, 1)) < j->nr_chunks)
		if (!j->mark || atomic_exchange(&j->mark[c], 0))
			mig_digest_chunk(j->vm, c, NULL, j->sums[c]);
	return NULL;
}

void mig_digest_chunks(struct vm *vm, unsigned threads, _Atomic uint32_t *mark,
		       uint8_t (*sums)[MIG_DIGEST_BYTES], uint64_t nr_chunks,
		       uint8_t out[MIG_DIGEST_BYTES])
{
	_Atomic uint64_t next = 0;
	struct digest_job job = { vm, nr_chunks, &next, mark, sums };
	pthread_t tid[MAX_THREADS];
	bool started[MAX_THREADS];

	threads = threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads;
	/* This thread takes a share too: one thread needs no other. */
	for (unsigned t = 1; t < threads; t++)
		started[t] = pthread_create(&tid[t], NULL, digest_thread, &job) == 0;
	digest_thread(&job);
	for (unsigned t = 1; t < threads; t++)
		if (started[t])
			pthread_join(tid[t], NULL);
	crypto_generichash(out, MIG_DIGEST_BYTES, (const uint8_t *)sums,
			   nr_chunks * MIG_DIGEST_BYTES, NULL, 0);
}

int mig_ram_digest(struct vm *vm, unsigned threads, uint8_t out[MIG_DIGEST_BYTES])
{
	uint64_t nr_chunks = mig_digest_nr_chunks(vm);
	uint8_t(*sums)[MIG_DIGEST_BYTES] = calloc(nr_chunks ? nr_chunks : 1, MIG_DIGEST_BYTES);

	if (!sums)
		return -ENOMEM;
	mig_digest_chunks(vm, threads, NULL, sums, nr_chunks, out);
	free(sums);
	return 0;
}
