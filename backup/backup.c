/* Live backup: rounds of chunks over the dirty log while the guest runs, a pause that only
 * copies, and the manifest last. */
#include "backup.h"
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUB	       "backup"
#define PAGE	       4096u
#define DEFAULT_PAUSE  50
#define DEFAULT_ROUNDS 8
/* Copies in the rounds go round a buffer this large, not one chunk's: a copy into memory
 * out of the caches and the TLB runs at the pause's speed, which is what it must predict. */
#define RING_BYTES (64u << 20)
/* The most the pause's copies may hold in the VMM's memory (beyond: written in the pause). */
#define HOLD_MAX (1ull << 30)
/* What a pause is planned with before copies of dirty chunks were timed: the first read of
 * pages the guest has just written costs far more than a plain memcpy (measured ~0.5 GB/s
 * on these hosts against 6 GB/s warm), and untouched memory read in round 0 says nothing
 * of that. */
#define GUESS_COPY_BPMS (256u << 10)

/* A chunk copied in the pause, written after it. */
struct held {
	unsigned area;
	uint64_t idx;
	size_t len;
	uint8_t *data;
};

struct backup {
	struct vm *vm;
	struct store *st;
	char *name;
	uint64_t pause_ms;
	unsigned max_rounds;
	pthread_t thread;
	pthread_mutex_t lock;
	struct backup_progress prog; /* under lock */
	atomic_bool cancel, finished;
	struct store_manifest m;
	unsigned nslots, nsrc;	   /* areas 0..nslots-1: RAM slots; then nsrc - nslots disks */
	int disk[STORE_AREAS_MAX]; /* area a's disk index, -1 for RAM */
	/* per area: what changed since the last round — pages (RAM) or chunks (a disk) */
	uint64_t *bitmap[STORE_AREAS_MAX];
	uint8_t *buf; /* RING_BYTES: chunks are copied into it in turn */
	size_t ring_at;
	uint64_t copy_ns, copy_bytes; /* memcpy's speed here, for planning the pause */
	uint64_t read_bytes;
	uint8_t *state;
	size_t state_len;
	struct held *held;
	size_t nheld;
	uint8_t *held_mem; /* touched before the pause: the pause only copies */
	uint64_t held_cap; /* chunks it has room for */
	bool paused_by_us, logging;
	int store_lock;	   /* the store's, shared: prune collects nothing under a running backup */
	unsigned tracking; /* disks whose writes are tracked */
	char err[512];
};

const char *backup_phase_name(enum backup_phase p)
{
	static const char *const names[] = { "copy", "pause", "write", "done", "failed" };

	return (unsigned)p < ARRAY_SIZE(names) ? names[p] : "?";
}

static void set_phase(struct backup *b, enum backup_phase ph, unsigned round)
{
	pthread_mutex_lock(&b->lock);
	b->prog.phase = ph;
	b->prog.round = round;
	pthread_mutex_unlock(&b->lock);
}

static int failf(struct backup *b, int rc, const char *fmt, ...) CME_PRINTF(3, 4);
static int failf(struct backup *b, int rc, const char *fmt, ...)
{
	va_list ap;

	if (b->err[0])
		return rc; /* the first reason is the one that counts */
	va_start(ap, fmt);
	vsnprintf(b->err, sizeof(b->err), fmt, ap);
	va_end(ap);
	return rc;
}

/* ---- chunks ------------------------------------------------------------------------- */

/* Hash and store len bytes as chunk idx of area a. */
static int put_chunk(struct backup *b, unsigned a, uint64_t idx, const void *data, size_t len)
{
	struct store_area *ar = &b->m.areas[a];
	struct store_id id;
	bool added = false;
	int rc;

	store_chunk_id(b->st, data, len, &id);
	rc = store_chunk_put(b->st, &id, data, len, &added, b->err, sizeof(b->err));
	if (rc)
		return rc;
	ar->chunks[idx] = id;
	if (store_id_is_zero(&id))
		b->m.zero_chunks++;
	else if (added)
		b->m.new_chunks++, b->m.new_bytes += len;
	else
		b->m.reused_chunks++;
	pthread_mutex_lock(&b->lock);
	b->prog.chunks_done++;
	pthread_mutex_unlock(&b->lock);
	return 0;
}

/* Chunk idx of area a as it is now: out of guest RAM, or read from the disk's image. */
static int read_src(struct backup *b, unsigned a, uint64_t idx, uint8_t *to, size_t len)
{
	uint64_t off = idx * b->m.chunk_size;
	struct vm_slot s;
	int rc;

	if (b->disk[a] < 0) {
		vm_get_slot(b->vm, a, &s);
		memcpy(to, s.hva + off, len);
		return 0;
	}
	rc = vm_disk_pread(b->vm, (unsigned)b->disk[a], to, len, off);
	return rc ? failf(b, rc, "reading %s at byte %llu: %s", b->m.areas[a].name,
			  (unsigned long long)off, strerror(-rc))
		  : 0;
}

/* Copy chunk idx of area a out of the running guest (its dirty bit was cleared before, so
 * a write during the copy is seen next round), then store it. timed: a dirty chunk, whose
 * copy tells how long the pause's copies will take. */
static int copy_chunk(struct backup *b, unsigned a, uint64_t idx, bool timed)
{
	size_t len = store_chunk_len(&b->m.areas[a], idx, b->m.chunk_size);
	uint64_t t0 = now_ns();
	uint8_t *to = b->buf + b->ring_at;
	int rc;

	b->ring_at = (b->ring_at + b->m.chunk_size) % RING_BYTES;
	if ((rc = read_src(b, a, idx, to, len)))
		return rc;
	if (timed) {
		b->copy_ns += now_ns() - t0;
		b->copy_bytes += len;
	}
	b->read_bytes += len;
	return put_chunk(b, a, idx, to, len);
}

/* Words of area a's bitmap: a bit per page of whole chunks (a slot may end inside its last
 * chunk) for RAM, a bit per chunk for a disk. */
static size_t bm_words(const struct backup *b, unsigned a)
{
	uint64_t per = b->disk[a] < 0 ? b->m.chunk_size / PAGE : 1;

	return (b->m.areas[a].nchunks * per + 63) / 64;
}

static bool chunk_dirty(const uint64_t *bm, uint64_t idx, uint32_t cs)
{
	uint64_t first = idx * (cs / PAGE), n = cs / PAGE;

	for (uint64_t p = first; p < first + n; p += 64) {
		uint64_t w = bm[p / 64];

		if (n < 64)
			w = (w >> (p % 64)) & ((1ull << n) - 1);
		if (w)
			return true;
	}
	return false;
}

static bool area_dirty(const struct backup *b, unsigned a, uint64_t idx)
{
	if (b->disk[a] < 0)
		return chunk_dirty(b->bitmap[a], idx, b->m.chunk_size);
	return b->bitmap[a][idx / 64] >> (idx % 64) & 1;
}

/* Get and clear the dirty log into the bitmaps (OR-ed into what they hold). */
static int fetch_dirty(struct backup *b, uint64_t *dirty_chunks)
{
	uint64_t cnt, *tmp;
	struct vm_slot s;
	int rc = 0;

	*dirty_chunks = 0;
	for (unsigned a = 0; !rc && a < b->nslots; a++) {
		size_t words;

		vm_get_slot(b->vm, a, &s);
		words = (s.size / PAGE + 63) / 64;
		tmp = calloc(words, sizeof(*tmp));
		rc = tmp ? vm_dirty_log_fetch(b->vm, a, tmp, &cnt) : -ENOMEM;
		for (size_t w = 0; !rc && w < words; w++)
			b->bitmap[a][w] |= tmp[w];
		free(tmp);
		for (uint64_t i = 0; !rc && i < b->m.areas[a].nchunks; i++)
			*dirty_chunks += chunk_dirty(b->bitmap[a], i, b->m.chunk_size);
	}
	for (unsigned a = b->nslots; !rc && a < b->nsrc; a++) {
		rc = vm_disk_track_fetch(b->vm, (unsigned)b->disk[a], b->bitmap[a], bm_words(b, a));
		for (uint64_t i = 0; !rc && i < b->m.areas[a].nchunks; i++)
			*dirty_chunks += area_dirty(b, a, i);
	}
	return rc ? failf(b, rc, "reading the dirty log: %s", strerror(-rc)) : 0;
}

/* One round: every chunk (round 0) or the dirty ones. */
static int copy_round(struct backup *b, bool all)
{
	for (unsigned a = 0; a < b->nsrc; a++) {
		const struct store_area *ar = &b->m.areas[a];

		for (uint64_t i = 0; i < ar->nchunks; i++) {
			int rc;

			if (atomic_load(&b->cancel))
				return failf(b, -ECANCELED, "cancelled");
			if (!all && !area_dirty(b, a, i))
				continue;
			rc = copy_chunk(b, a, i, !all);
			if (rc)
				return rc;
		}
		memset(b->bitmap[a], 0, bm_words(b, a) * sizeof(uint64_t));
	}
	return 0;
}

/* ---- the pause ---------------------------------------------------------------------- */

/* Room for nchunks held chunks (and some to spare: the guest dirties more before the
 * pause), every page of it touched now, while the guest runs: a page fault per page in the
 * pause would cost more than the copy itself. */
static int hold_prepare(struct backup *b, uint64_t nchunks)
{
	uint64_t cap = 2 * nchunks + 64;

	/* At most HOLD_MAX: what is dirty beyond it is written in the pause itself. */
	if (cap > HOLD_MAX / b->m.chunk_size)
		cap = HOLD_MAX / b->m.chunk_size;

	b->held = calloc(cap, sizeof(*b->held));
	b->held_mem = malloc(cap * b->m.chunk_size);
	if (!b->held || !b->held_mem)
		return failf(b, -ENOMEM, "no memory to hold %llu dirty chunks for the pause",
			     (unsigned long long)cap);
	/* Not 0: the compiler may make malloc + memset(0) a calloc, which touches nothing. */
	memset(b->held_mem, 0xa5, cap * b->m.chunk_size);
	b->held_cap = cap;
	return 0;
}

/* Copy what is still dirty into the held memory. More than it has room for (a guest that
 * dirtied far more since the plan) is written in the pause itself: slower, still right. */
static int hold_dirty(struct backup *b)
{
	uint32_t cs = b->m.chunk_size;
	int rc = 0;

	for (unsigned a = 0; !rc && a < b->nsrc; a++) {
		for (uint64_t i = 0; !rc && i < b->m.areas[a].nchunks; i++) {
			struct held *h = &b->held[b->nheld];

			if (!area_dirty(b, a, i))
				continue;
			if (b->nheld == b->held_cap) {
				rc = copy_chunk(b, a, i, false);
				continue;
			}
			h->area = a;
			h->idx = i;
			h->len = store_chunk_len(&b->m.areas[a], i, cs);
			h->data = b->held_mem + b->nheld * cs;
			rc = read_src(b, a, i, h->data, h->len);
			b->read_bytes += h->len;
			b->nheld++;
		}
	}
	return rc;
}

static int pause_and_copy(struct backup *b)
{
	struct vm_info info;
	uint8_t meas[MEASURE_BYTES];
	uint64_t dirty = 0, t0 = now_ns();
	int rc;

	vm_get_info(b->vm, &info);
	if (info.state == VM_RUNNING) {
		rc = vm_pause(b->vm);
		if (rc)
			return failf(b, rc, "cannot pause the VM: %s", strerror(-rc));
		b->paused_by_us = true;
	}
	set_phase(b, BACKUP_PAUSE, (unsigned)b->m.rounds);
	rc = fetch_dirty(b, &dirty);
	if (!rc)
		rc = hold_dirty(b);
	if (!rc && (rc = vm_state_save(b->vm, &b->state, &b->state_len)))
		failf(b, rc, "cannot capture the VM's state: %s", strerror(-rc));
	if (!rc && vm_get_measurement(b->vm, meas))
		measure_hex(meas, b->m.measurement);
	if (b->paused_by_us && vm_resume(b->vm))
		log_warn(SUB, "vm=%s stays paused after the backup's pause (fenced or ended)",
			 b->name);
	b->paused_by_us = false;
	b->m.pause_ms = (now_ns() - t0 + 999999) / 1000000;
	return rc;
}

/* After the pause: the held chunks and the state into the store. */
static int write_held(struct backup *b)
{
	uint32_t cs = b->m.chunk_size;
	const struct store_area *sa;
	int rc = 0;

	set_phase(b, BACKUP_WRITE, (unsigned)b->m.rounds);
	for (size_t i = 0; !rc && i < b->nheld; i++)
		rc = put_chunk(b, b->held[i].area, b->held[i].idx, b->held[i].data, b->held[i].len);
	if (!rc && (rc = store_area_add(&b->m, "state", 0, b->state_len)))
		return failf(b, rc, "the manifest: %s", strerror(-rc));
	sa = store_area_find(&b->m, "state");
	for (uint64_t i = 0; !rc && i < sa->nchunks; i++)
		rc = put_chunk(b, b->m.nareas - 1, i, b->state + i * cs,
			       store_chunk_len(sa, i, cs));
	return rc;
}

/* ---- the thread --------------------------------------------------------------------- */

/* Rounds until what is dirty can be copied within the pause aimed at (at the speed copies
 * ran so far), then room to hold it. */
static int run_rounds(struct backup *b)
{
	uint64_t dirty = 0;
	int rc = copy_round(b, true);

	for (b->m.rounds = 1; !rc; b->m.rounds++) {
		uint64_t bpms = b->copy_ns ? b->copy_bytes * 1000000 / b->copy_ns : GUESS_COPY_BPMS;
		uint64_t before = dirty;

		if (!bpms) /* copies slower than a byte a millisecond (a stalled disk) */
			bpms = 1;

		set_phase(b, BACKUP_COPY, (unsigned)b->m.rounds);
		rc = fetch_dirty(b, &dirty);
		if (rc || dirty * b->m.chunk_size / bpms <= b->pause_ms ||
		    b->m.rounds >= b->max_rounds)
			break;
		/* Not shrinking: the guest dirties as fast as rounds copy. More rounds would
		 * only write the same chunks again; the pause copies what is dirty, at memory
		 * speed, however much it is. */
		if (b->m.rounds >= 2 && dirty * 10 >= before * 9)
			break;
		rc = copy_round(b, false);
	}
	return rc ? rc : hold_prepare(b, dirty);
}

/* Disk writes recorded from now on, chunk by chunk (with the dirty log, before round 0). */
static int track_disks(struct backup *b)
{
	int rc = 0;

	for (unsigned a = b->nslots; !rc && a < b->nsrc; a++)
		if (!(rc = vm_disk_track_start(b->vm, (unsigned)b->disk[a], b->m.chunk_size)))
			b->tracking++;
	return rc;
}

/* The dirty log and the disks' tracking off (what was started). */
static void untrack(struct backup *b)
{
	for (unsigned a = b->nslots; a < b->nslots + b->tracking; a++)
		vm_disk_track_stop(b->vm, (unsigned)b->disk[a]);
	b->tracking = 0;
	if (b->logging && vm_dirty_log_stop(b->vm))
		log_warn(SUB, "vm=%s: dirty logging did not stop", b->name);
	b->logging = false; /* tried: a second stop would not do better */
}

static void finish(struct backup *b, int rc, uint64_t t0)
{
	struct backup_stats *s = &b->prog.stats;

	untrack(b);
	b->m.total_ms = (now_ns() - t0) / 1000000;
	b->m.stored_bytes = b->read_bytes;
	if (!rc)
		rc = store_manifest_write(b->st, &b->m, b->err, sizeof(b->err));
	store_unlock(b->store_lock);
	b->store_lock = -1;
	pthread_mutex_lock(&b->lock);
	snprintf(s->id, sizeof(s->id), "%s", b->m.id);
	snprintf(s->parent, sizeof(s->parent), "%s", b->m.parent);
	s->total_ms = b->m.total_ms;
	s->pause_ms = b->m.pause_ms;
	s->rounds = b->m.rounds;
	s->new_chunks = b->m.new_chunks;
	s->reused_chunks = b->m.reused_chunks;
	s->zero_chunks = b->m.zero_chunks;
	s->chunks = s->new_chunks + s->reused_chunks + s->zero_chunks;
	s->new_bytes = b->m.new_bytes;
	s->mem_bytes = b->m.mem_bytes;
	s->throughput_mbps =
		s->total_ms ? (double)b->read_bytes / (1 << 20) * 1000 / s->total_ms : 0;
	b->prog.phase = rc ? BACKUP_FAILED : BACKUP_DONE;
	snprintf(b->prog.error, sizeof(b->prog.error), "%s", rc ? b->err : "");
	pthread_mutex_unlock(&b->lock);
	if (rc)
		log_err(SUB, "vm=%s backup failed: %s", b->name, b->err);
	else
		log_info(SUB,
			 "vm=%s backup %s/%s done: %llu new chunks (%llu MiB), %llu reused, "
			 "pause %llu ms, %llu ms in all",
			 b->name, b->m.vm, b->m.id, (unsigned long long)s->new_chunks,
			 (unsigned long long)(s->new_bytes >> 20),
			 (unsigned long long)s->reused_chunks, (unsigned long long)s->pause_ms,
			 (unsigned long long)s->total_ms);
}

static void *backup_thread(void *arg)
{
	struct backup *b = arg;
	uint64_t t0 = now_ns();
	int rc = run_rounds(b);

	if (!rc)
		rc = pause_and_copy(b);
	if (!rc)
		rc = write_held(b);
	finish(b, rc, t0);
	atomic_store(&b->finished, true);
	return NULL;
}

/* ---- setup -------------------------------------------------------------------------- */

static int manifest_init(struct backup *b, struct vm *vm)
{
	struct store_entry *e = NULL;
	struct vm_info info;
	struct vm_slot s;
	size_t n = 0;
	char name[16];
	int rc = 0;

	vm_get_info(vm, &info);
	snprintf(b->m.vm, sizeof(b->m.vm), "%s", b->name);
	store_backup_id(b->m.id);
	b->m.created_ms = wall_ms();
	b->m.mem_bytes = info.mem_bytes;
	b->m.vcpus = info.nr_vcpus;
	b->m.chunk_size = store_chunk_size(b->st);
	if (!store_list(b->st, b->name, &e, &n, b->err, sizeof(b->err)) && n)
		snprintf(b->m.parent, sizeof(b->m.parent), "%s", e[n - 1].id);
	free(e);
	b->nslots = vm_nr_slots(vm);
	for (unsigned a = 0; !rc && a < b->nslots; a++) {
		vm_get_slot(vm, a, &s);
		snprintf(name, sizeof(name), "ram%u", a);
		b->disk[a] = -1;
		rc = store_area_add(&b->m, name, s.gpa, s.size);
		b->bitmap[a] = rc ? NULL : calloc(bm_words(b, a), sizeof(uint64_t));
		if (!rc && !b->bitmap[a])
			rc = -ENOMEM;
	}
	/* Every writable disk (read-only ones are given again on restore, unchanged). */
	for (unsigned i = 0; !rc && i < info.nr_disks; i++) {
		uint64_t bytes = 0;
		bool ro = true;
		unsigned a = b->m.nareas;

		if (vm_disk_info(vm, i, &bytes, &ro) || ro)
			continue;
		snprintf(name, sizeof(name), "disk%u", i);
		rc = a + 1 >= STORE_AREAS_MAX ? -E2BIG : store_area_add(&b->m, name, 0, bytes);
		b->disk[a] = (int)i;
		b->bitmap[a] = rc ? NULL : calloc(bm_words(b, a), sizeof(uint64_t));
		if (!rc && !b->bitmap[a])
			rc = -ENOMEM;
	}
	b->nsrc = b->m.nareas;
	b->buf = rc || b->m.chunk_size > RING_BYTES ? NULL : malloc(RING_BYTES);
	return rc ? rc : b->buf ? 0 : -ENOMEM;
}

static void backup_release(struct backup *b)
{
	store_unlock(b->store_lock);
	store_manifest_free(&b->m);
	store_close(b->st);
	for (unsigned a = 0; a < ARRAY_SIZE(b->bitmap); a++)
		free(b->bitmap[a]);
	free(b->buf);
	free(b->state);
	free(b->held);
	free(b->held_mem);
	free(b->name);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

int backup_start(struct vm *vm, const struct backup_params *p, struct backup **out, char *err,
		 size_t len)
{
	struct backup *b = calloc(1, sizeof(*b));
	int rc;

	*out = NULL;
	if (!b)
		return -ENOMEM;
	pthread_mutex_init(&b->lock, NULL);
	b->store_lock = -1;
	b->vm = vm;
	b->pause_ms = p->pause_ms ? p->pause_ms : DEFAULT_PAUSE;
	b->max_rounds = p->max_rounds ? p->max_rounds : DEFAULT_ROUNDS;
	b->name = strdup(p->name ? p->name : "");
	if (!b->name || !store_name_ok(b->name)) {
		snprintf(err, len, "\"%s\" cannot name a VM in a backup store",
			 p->name ? p->name : "");
		backup_release(b);
		return -EINVAL;
	}
	rc = store_open(p->store, p->key, &b->st, err, len);
	if (!rc && (b->store_lock = store_lock(b->st, false, false)) < 0) {
		rc = b->store_lock;
		snprintf(err, len,
			 rc == -EBUSY ? "the store is being pruned: try again in a moment"
				      : "the store's lock: %s",
			 strerror(-rc));
	}
	if (!rc && vm_nr_slots(vm) > ARRAY_SIZE(b->bitmap))
		rc = -ENOTSUP;
	if (!rc && (rc = manifest_init(b, vm)))
		snprintf(err, len, "cannot set the backup up: %s", strerror(-rc));
	if (!rc && (rc = vm_dirty_log_start(vm)))
		snprintf(err, len,
			 rc == -EALREADY ? "the dirty log is in use (a migration?): try later"
					 : "cannot start dirty logging: %s",
			 strerror(-rc));
	if (!rc)
		b->logging = true;
	if (!rc && (rc = track_disks(b)))
		snprintf(err, len, "cannot track the disks' writes: %s", strerror(-rc));
	if (rc) {
		untrack(b);
		backup_release(b);
		return rc == -EALREADY ? -EBUSY : rc;
	}
	rc = pthread_create(&b->thread, NULL, backup_thread, b);
	if (rc) {
		untrack(b);
		backup_release(b);
		snprintf(err, len, "cannot start the backup's thread: %s", strerror(rc));
		return -rc;
	}
	log_info(SUB, "vm=%s backup %s/%s to %s started", b->name, b->m.vm, b->m.id, p->store);
	*out = b;
	return 0;
}

void backup_get_progress(struct backup *b, struct backup_progress *out)
{
	pthread_mutex_lock(&b->lock);
	*out = b->prog;
	snprintf(out->stats.id, sizeof(out->stats.id), "%s", b->m.id);
	pthread_mutex_unlock(&b->lock);
}

bool backup_finished(struct backup *b)
{
	return atomic_load(&b->finished);
}

void backup_cancel(struct backup *b)
{
	atomic_store(&b->cancel, true);
}

void backup_free(struct backup *b)
{
	if (!b)
		return;
	backup_cancel(b);
	pthread_join(b->thread, NULL);
	backup_release(b);
}
