/* The destination's running digest (contract in stream_priv.h). A chunk's mark holds the
 * tick (25 ms period, from 1) of the last write into it, 0 once hashed. Ordering: a writer
 * stores the mark with release after the page's bytes; the hasher takes the mark with an
 * exchange before reading the chunk. A write the hasher may have missed is therefore
 * followed by a mark it has not taken yet, and the chunk is hashed again later. */
#include "stream_priv.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TICK_NS	    10000000ull
#define QUIET_TICKS 2 /* hash a chunk not written for 10-20 ms: its batch has passed */
#define MAX_SLOTS   8

struct track_slot {
	uint64_t gpa, chunks, first; /* first: the number of the slot's first chunk */
};

struct mig_track {
	struct vm *vm;
	uint64_t nr_chunks;
	unsigned nr_slots, writers;
	struct track_slot slot[MAX_SLOTS];
	_Atomic uint32_t *mark;
	uint8_t (*sums)[MIG_SUM_BYTES];
	uint8_t (*pages)[MIG_SUM_BYTES]; /* each page's hash, as in its chunk's sum */
	_Atomic uint32_t tick;
	atomic_uint writers_done;
	atomic_bool stop;
	uint64_t t0, background; /* background: chunks the hasher did */

	pthread_t thread;
	bool started;
	pthread_mutex_t lock; /* with cond: wakes the hasher early (stop, all writers done) */
	pthread_cond_t cond;
};

static void track_slots(struct mig_track *t)
{
	uint64_t first = 0;

	for (unsigned i = 0; i < t->nr_slots; i++) {
		struct vm_slot s;

		vm_get_slot(t->vm, i, &s);
		t->slot[i].gpa = s.gpa;
		t->slot[i].chunks = s.size / VM_PAGE_SIZE / MIG_DIGEST_CHUNK_PAGES;
		t->slot[i].first = first;
		first += t->slot[i].chunks;
	}
	t->nr_chunks = first;
}

int mig_track_new(struct vm *vm, unsigned writers, struct mig_track **out)
{
	struct mig_track *t;
	pthread_condattr_t ca;
	int rc = -ENOMEM;

	if (vm_nr_slots(vm) > MAX_SLOTS)
		return -E2BIG;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->vm = vm;
	t->writers = writers;
	t->nr_slots = vm_nr_slots(vm);
	track_slots(t);
	t->mark = calloc(t->nr_chunks ? t->nr_chunks : 1, sizeof(*t->mark));
	if (!t->mark)
		goto fail_track;
	t->sums = calloc(t->nr_chunks ? t->nr_chunks : 1, MIG_SUM_BYTES);
	t->pages = calloc(t->nr_chunks * MIG_DIGEST_CHUNK_PAGES + 1, MIG_SUM_BYTES);
	if (!t->sums || !t->pages)
		goto fail_sums;
	if ((rc = -pthread_condattr_init(&ca)))
		goto fail_sums;
	rc = -pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (!rc)
		rc = -pthread_cond_init(&t->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (rc)
		goto fail_sums;
	pthread_mutex_init(&t->lock, NULL);
	/* A VM just made: all its memory is zero, and every chunk's sum is zero (calloc). Only
	 * what is written from now on is hashed. */
	atomic_init(&t->tick, 1);
	t->t0 = now_ns();
	*out = t;
	return 0;
fail_sums:
	free(t->pages);
	free(t->sums);
	free(t->mark);
fail_track:
	free(t);
	return rc;
}

void mig_track_mark(struct mig_track *t, uint64_t gpa)
{
	if (!t)
		return;
	for (unsigned i = 0; i < t->nr_slots; i++) {
		const struct track_slot *s = &t->slot[i];
		uint64_t c = (gpa - s->gpa) / (MIG_DIGEST_CHUNK_PAGES * VM_PAGE_SIZE);

		if (gpa < s->gpa || c >= s->chunks)
			continue;
		/* Always a store, never "already marked": the hasher may be taking the old
		 * mark right now, before this page's bytes are visible to it. */
		atomic_store_explicit(&t->mark[s->first + c],
				      atomic_load_explicit(&t->tick, memory_order_relaxed),
				      memory_order_release);
		return;
	}
}

static void track_wake(struct mig_track *t)
{
	pthread_mutex_lock(&t->lock);
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
}

void mig_track_writer_done(struct mig_track *t)
{
	if (t && atomic_fetch_add(&t->writers_done, 1) + 1 == t->writers)
		track_wake(t);
}

/* The tick writers stamp their marks with, advanced by the hasher (before each chunk: a
 * starved hasher must not make a chunk being written look quiet). */
static uint32_t track_tick(struct mig_track *t)
{
	uint32_t now = (uint32_t)((now_ns() - t->t0) / TICK_NS) + 1;

	atomic_store_explicit(&t->tick, now, memory_order_relaxed);
	return now;
}

/* One pass over the marks: hash the quiet chunks (every marked one once all writers are
 * done). Returns how many it hashed. */
static uint64_t track_pass(struct mig_track *t)
{
	bool eager = atomic_load(&t->writers_done) >= t->writers;
	uint32_t now = track_tick(t);
	uint64_t n = 0;

	for (uint64_t c = 0; c < t->nr_chunks && !atomic_load(&t->stop); c++) {
		uint32_t m = atomic_load_explicit(&t->mark[c], memory_order_relaxed);

		if (!eager && m)
			eager = atomic_load(&t->writers_done) >= t->writers;
		if (!m || (!eager && m + QUIET_TICKS > now))
			continue;
		if (!atomic_exchange(&t->mark[c], 0))
			continue;
		if (!mig_digest_chunk(t->vm, c, &t->stop, t->sums[c], t->pages)) {
			/* Stopped halfway: the switchover hashes this chunk. */
			atomic_store(&t->mark[c], now);
			break;
		}
		n++;
		now = track_tick(t);
	}
	return n;
}

static void track_sleep(struct mig_track *t)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_nsec += (long)TICK_NS;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&t->lock);
	if (!atomic_load(&t->stop))
		pthread_cond_timedwait(&t->cond, &t->lock, &until);
	pthread_mutex_unlock(&t->lock);
}

/* At normal priority, on purpose: on a host whose CPUs were all busy, a lower one (nice 10,
 * SCHED_IDLE) left the hasher starved until the switchover, which then had all the work,
 * and made stopping it wait up to a second for a CPU. Only quiet chunks are taken, so it
 * does not chase the pages the channels are writing. */
static void *track_thread(void *arg)
{
	struct mig_track *t = arg;

	while (!atomic_load(&t->stop)) {
		uint64_t n = track_pass(t);

		t->background += n;
		/* A pass that found work goes round again at once: what it skipped as not
		 * yet quiet may be by now, and all writers may have finished meanwhile. */
		if (!n)
			track_sleep(t);
	}
	return NULL;
}

int mig_track_start(struct mig_track *t)
{
	int rc;

	atomic_store(&t->stop, false); /* again after mig_track_stop */
	rc = pthread_create(&t->thread, NULL, track_thread, t);

	t->started = rc == 0;
	return -rc;
}

/* Stop and join the hasher (safe twice, or when it never started). */
static void track_stop(struct mig_track *t)
{
	if (!t || !t->started)
		return;
	pthread_mutex_lock(&t->lock);
	atomic_store(&t->stop, true);
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	pthread_join(t->thread, NULL);
	t->started = false;
}

void mig_track_digest(struct mig_track *t, unsigned threads, uint8_t out[MIG_DIGEST_BYTES],
		      struct mig_track_counts *n)
{
	track_stop(t);
	n->chunks = t->nr_chunks;
	n->background = t->background;
	n->final = 0;
	for (uint64_t c = 0; c < t->nr_chunks; c++)
		n->final += atomic_load(&t->mark[c]) != 0;
	mig_digest_chunks(t->vm, threads, t->mark, t->sums, t->pages, t->nr_chunks, out);
}

void mig_track_stop(struct mig_track *t)
{
	track_stop(t);
}

void mig_track_forget(struct mig_track *t, uint64_t gpa)
{
	for (unsigned i = 0; t && i < t->nr_slots; i++) {
		const struct track_slot *s = &t->slot[i];
		uint64_t p = (gpa - s->gpa) / VM_PAGE_SIZE, c = p / MIG_DIGEST_CHUNK_PAGES;
		uint8_t *ph, neg[MIG_SUM_BYTES];
		unsigned __int128 v;

		if (gpa < s->gpa || c >= s->chunks)
			continue;
		if (atomic_load(&t->mark[s->first + c]))
			return; /* hashed whole at the end: the dropped page reads as absent */
		ph = t->pages[(s->first + c) * MIG_DIGEST_CHUNK_PAGES + p % MIG_DIGEST_CHUNK_PAGES];
		memcpy(&v, ph, sizeof(v));
		v = -v; /* adding the negation subtracts, mod 2^128 */
		memcpy(neg, &v, sizeof(neg));
		mig_digest_add(t->sums[s->first + c], neg);
		memset(ph, 0, MIG_SUM_BYTES);
		return;
	}
}

void mig_track_free(struct mig_track *t)
{
	if (!t)
		return;
	track_stop(t);
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->cond);
	free(t->mark);
	free(t->sums);
	free(t->pages);
	free(t);
}
