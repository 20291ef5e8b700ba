/* The switchover digest: BLAKE2b over every non-zero page of guest RAM with its address,
 * in 2 MiB chunks hashed on several threads; the digest is the hash of the chunk hashes in
 * address order. Both sides compute it the same way, so a page lost, stale or misplaced in
 * transit changes it. Pages that are not resident (never touched) are zero and skipped
 * without being read. */
#include "stream_priv.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define CHUNK_PAGES 512
#define MAX_THREADS 8

struct digest_job {
	struct vm *vm;
	unsigned threads, index;
	uint64_t nr_chunks;
	uint8_t (*sums)[MIG_DIGEST_BYTES];
};

/* Chunk number c counts across slots in order. */
static void digest_chunk(struct vm *vm, uint64_t c, uint8_t out[MIG_DIGEST_BYTES])
{
	crypto_generichash_state h;
	unsigned char res[CHUNK_PAGES];
	struct vm_slot s;
	unsigned idx = 0;

	for (vm_get_slot(vm, idx, &s); c >= s.size / VM_PAGE_SIZE / CHUNK_PAGES;) {
		c -= s.size / VM_PAGE_SIZE / CHUNK_PAGES;
		vm_get_slot(vm, ++idx, &s);
	}
	crypto_generichash_init(&h, NULL, 0, MIG_DIGEST_BYTES);
	uint8_t *base = s.hva + c * CHUNK_PAGES * VM_PAGE_SIZE;

	if (mincore(base, CHUNK_PAGES * VM_PAGE_SIZE, res) < 0)
		memset(res, 1, sizeof(res));
	for (unsigned i = 0; i < CHUNK_PAGES; i++) {
		const uint8_t *p = base + (size_t)i * VM_PAGE_SIZE;
		uint64_t gpa = s.gpa + (c * CHUNK_PAGES + i) * VM_PAGE_SIZE;

		if (!(res[i] & 1) || mem_is_zero(p, VM_PAGE_SIZE))
			continue;
		crypto_generichash_update(&h, (const uint8_t *)&gpa, sizeof(gpa));
		crypto_generichash_update(&h, p, VM_PAGE_SIZE);
	}
	crypto_generichash_final(&h, out, MIG_DIGEST_BYTES);
}

static void *digest_thread(void *arg)
{
	struct digest_job *j = arg;

	for (uint64_t c = j->index; c < j->nr_chunks; c += j->threads)
		digest_chunk(j->vm, c, j->sums[c]);
	return NULL;
}

int mig_ram_digest(struct vm *vm, unsigned threads, uint8_t out[MIG_DIGEST_BYTES])
{
	struct digest_job jobs[MAX_THREADS];
	pthread_t tid[MAX_THREADS];
	bool started[MAX_THREADS];
	uint64_t nr_chunks = 0;
	struct vm_slot s;

	threads = threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads;
	for (unsigned i = 0; i < vm_nr_slots(vm); i++) {
		vm_get_slot(vm, i, &s);
		nr_chunks += s.size / VM_PAGE_SIZE / CHUNK_PAGES;
	}
	uint8_t(*sums)[MIG_DIGEST_BYTES] = calloc(nr_chunks, MIG_DIGEST_BYTES);

	if (!sums)
		return -ENOMEM;
	for (unsigned t = 0; t < threads; t++) {
		jobs[t] = (struct digest_job){ vm, threads, t, nr_chunks, sums };
		started[t] = pthread_create(&tid[t], NULL, digest_thread, &jobs[t]) == 0;
		if (!started[t])
			digest_thread(&jobs[t]); /* no thread: do its share here */
	}
	for (unsigned t = 0; t < threads; t++)
		if (started[t])
			pthread_join(tid[t], NULL);
	crypto_generichash(out, MIG_DIGEST_BYTES, (const uint8_t *)sums,
			   nr_chunks * MIG_DIGEST_BYTES, NULL, 0);
	free(sums);
	return 0;
}
