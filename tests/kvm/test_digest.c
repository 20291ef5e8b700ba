/* The destination's running digest, in-process: writers change guest memory in bursts
 * (marking each page, as the page channels do) while the background hasher runs, and at
 * the end the digest from the chunk hashes kept up to date must be the full digest, bit for
 * bit. A VM of 3 GiB + 64 MiB has two memory slots, so chunk numbering across slots is
 * covered too. Untouched memory is never read (mincore), so the size costs nothing. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "hypervisor.h"
#include "kvmtests.h"
#include "stream_priv.h"

#define MEM_BYTES ((3ull << 30) + (64ull << 20))
#define HOT_PAGES 2048 /* pages each writer keeps rewriting (8 MiB) */
#define BURSTS	  12

struct writer {
	struct vm *vm;
	struct mig_track *track;
	unsigned index;
	uint64_t seed;
};

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* A page of one writer's hot set: spread over both slots, some pages written as zero. */
static uint64_t hot_gpa(const struct writer *w, uint64_t i)
{
	struct vm_slot s;

	vm_get_slot(w->vm, (unsigned)(i % vm_nr_slots(w->vm)), &s);
	return s.gpa + ((i * 7919 + w->index * 4099) % (s.size / VM_PAGE_SIZE)) * VM_PAGE_SIZE;
}

static void write_page(struct writer *w, uint64_t gpa)
{
	uint8_t *p = vm_gpa_hva(w->vm, gpa, VM_PAGE_SIZE);
	uint64_t v = rnd(&w->seed);

	if (v % 8 == 0)
		memset(p, 0, VM_PAGE_SIZE);
	else
		for (unsigned k = 0; k < 16; k++)
			memcpy(p + (v + k * 251) % (VM_PAGE_SIZE - 8), &v, sizeof(v));
	mig_track_mark(w->track, gpa);
}

/* Bursts with pauses: the quiet chunks get hashed in the background, then written again. */
static void *writer_thread(void *arg)
{
	struct writer *w = arg;

	for (unsigned b = 0; b < BURSTS; b++) {
		for (uint64_t n = 0; n < HOT_PAGES / 2; n++)
			write_page(w, hot_gpa(w, rnd(&w->seed) % HOT_PAGES));
		sleep_ms(b % 3 == 2 ? 70 : 5);
	}
	mig_track_writer_done(w->track);
	return NULL;
}

static struct vm *make_vm(void)
{
	struct vm_config cfg = { .name = "digest", .mem_bytes = MEM_BYTES, .nr_vcpus = 1 };
	struct vm *vm = NULL;

	CU_ASSERT_EQUAL_FATAL(vm_create(&cfg, &vm), 0);
	CU_ASSERT_EQUAL(vm_nr_slots(vm), 2);
	return vm;
}

static void expect_full(struct vm *vm, const uint8_t got[MIG_DIGEST_BYTES], bool same)
{
	uint8_t full[MIG_DIGEST_BYTES];

	CU_ASSERT_EQUAL(mig_ram_digest(vm, 2, full), 0);
	CU_ASSERT_EQUAL(memcmp(got, full, sizeof(full)) == 0, same);
}

/* Writers and the background hasher race for a second; the result must not depend on it. */
static void test_running_equals_full(void)
{
	struct writer w[2];
	pthread_t tid[2];
	struct mig_track *t = NULL;
	uint8_t got[MIG_DIGEST_BYTES];
	struct mig_track_counts n;
	struct vm *vm;

	REQUIRE_KVM();
	vm = make_vm();
	CU_ASSERT_EQUAL_FATAL(mig_track_new(vm, 2, &t), 0);
	CU_ASSERT_EQUAL(mig_track_start(t), 0);
	for (unsigned i = 0; i < 2; i++) {
		w[i] = (struct writer){ vm, t, i, 0x9e3779b97f4a7c15ull * (i + 1) };
		CU_ASSERT_EQUAL_FATAL(pthread_create(&tid[i], NULL, writer_thread, &w[i]), 0);
	}
	for (unsigned i = 0; i < 2; i++)
		pthread_join(tid[i], NULL);
	mig_track_digest(t, 2, got, &n);
	printf("\n    %llu of %llu chunks left for the final pass, %llu hashed in the background",
	       (unsigned long long)n.final, (unsigned long long)n.chunks,
	       (unsigned long long)n.background);
	expect_full(vm, got, true);
	mig_track_free(t);
	vm_destroy(vm);
}

/* The contract's other half: a write nobody marks is not seen (which is why every write
 * to the destination's memory marks), and marking it makes the digests agree again. */
static void test_unmarked_write_unseen(void)
{
	struct writer w;
	struct mig_track *t = NULL;
	uint8_t got[MIG_DIGEST_BYTES];
	struct mig_track_counts n;
	uint64_t gpa;
	struct vm *vm;
	uint8_t *p;

	REQUIRE_KVM();
	vm = make_vm();
	CU_ASSERT_EQUAL_FATAL(mig_track_new(vm, 0, &t), 0);
	w = (struct writer){ vm, t, 0, 42 };
	for (uint64_t i = 0; i < 64; i++)
		write_page(&w, hot_gpa(&w, i));
	mig_track_digest(t, 1, got, &n);
	/* Never started: the written chunks at the end, and nothing else (a new VM's memory
	 * is all zero: its chunks' sums start at zero, as the full digest has them). */
	CU_ASSERT(n.final >= 1 && n.final <= 64);
	CU_ASSERT_EQUAL(n.chunks, mig_digest_nr_chunks(vm));
	expect_full(vm, got, true);
	gpa = hot_gpa(&w, 5);
	p = vm_gpa_hva(vm, gpa, VM_PAGE_SIZE);
	p[100] ^= 0x80;
	mig_track_digest(t, 1, got, &n);
	CU_ASSERT_EQUAL(n.final, 0);
	expect_full(vm, got, false);
	mig_track_mark(t, gpa);
	mig_track_digest(t, 1, got, &n);
	CU_ASSERT_EQUAL(n.final, 1);
	expect_full(vm, got, true);
	mig_track_free(t);
	vm_destroy(vm);
}

void suite_digest(void)
{
	static const struct test_case cases[] = {
		{ "running digest equals the full one while writers race the hasher",
		  test_running_equals_full },
		{ "running digest: an unmarked write is unseen, a marked one seen",
		  test_unmarked_write_unseen },
		{ NULL, NULL },
	};
	test_add_suite("digest", cases);
}
