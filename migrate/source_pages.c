/* Page channels of the source: each thread sends its share of every round. Round 0 sends
 * every non-zero page; later rounds send what the dirty log reported, clearing each chunk's
 * dirty bits just before copying its pages so writes after the copy are caught again. */
#include "mig_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define SUB		"mig"
#define RESIDENCY_PAGES 512
#define INLINE_PAGES	128 /* a final round this small is sent without the channels' threads */

/* The bandwidth cap: a token bucket per channel filling at its share of the cap, holding at
 * most 50 ms of it, so time spent below the cap earns no burst beyond that. */
static void channel_shape(struct mig_channel *c, uint64_t bytes)
{
	double rate = (double)c->m->p.max_bandwidth / c->m->nch;
	uint64_t now;

	if (rate <= 0)
		return;
	now = now_ns();
	if (!c->bucket_ns)
		c->bucket_ns = now;
	c->tokens += rate * (double)(now - c->bucket_ns) / 1e9;
	if (c->tokens > rate * 0.05)
		c->tokens = rate * 0.05;
	c->bucket_ns = now;
	c->tokens -= (double)bytes;
	if (c->tokens < 0) {
		uint64_t wait = (uint64_t)(-c->tokens / rate * 1e9), end = now + wait;

		/* Sleep in slices, so a cancel is never held up by the cap. */
		while (now_ns() < end && !atomic_load(&c->m->cancel))
			sleep_ns(end - now_ns() < 20000000ull ? end - now_ns() : 20000000ull);
		c->bucket_ns = now + wait;
		c->tokens = 0;
	}
}

static int channel_flush(struct mig_channel *c)
{
	uint32_t n = c->batch.count;
	uint32_t data = c->batch.data_pages;
	int64_t sent = mig_batch_send(c->conn, &c->batch);

	if (sent < 0)
		return (int)sent;
	c->bytes += (uint64_t)sent;
	c->round_bytes += (uint64_t)sent;
	c->pages += data;
	c->zero_pages += n - data;
	channel_shape(c, (uint64_t)sent);
	return atomic_load(&c->m->cancel) ? -ECANCELED : 0;
}

static int channel_add(struct mig_channel *c, uint64_t gpa, const uint8_t *page)
{
	mig_batch_add(&c->batch, gpa, page);
	return mig_batch_full(&c->batch) ? channel_flush(c) : 0;
}

/* Round 0: every touched non-zero page of the chunk. Untouched pages are zero on both
 * sides and are not even read. */
static int round0_chunk(struct mig_channel *c, const struct vm_slot *s, uint64_t first, uint64_t n)
{
	unsigned char res[RESIDENCY_PAGES];
	int err = 0;

	for (uint64_t p = first; p < first + n && !err; p += RESIDENCY_PAGES) {
		uint8_t *base = s->hva + p * VM_PAGE_SIZE;

		mig_touched_pages(base, RESIDENCY_PAGES, res);
		for (unsigned i = 0; i < RESIDENCY_PAGES && !err; i++) {
			const uint8_t *page = base + (size_t)i * VM_PAGE_SIZE;

			if (res[i] & 1)
				err = channel_add(c, s->gpa + (p + i) * VM_PAGE_SIZE, page);
		}
	}
	return err;
}

/* Later rounds: the chunk's dirty pages. */
static int dirty_chunk(struct mig_channel *c, unsigned slot, const struct vm_slot *s,
		       uint64_t first, uint64_t n)
{
	uint64_t bits[MIG_CHUNK_PAGES / 64], any = 0;
	int err;

	memcpy(bits, c->m->bitmap[slot] + first / 64, n / 8);
	for (uint64_t w = 0; w < n / 64; w++)
		any |= bits[w];
	if (!any)
		return 0;
	/* In the pause nothing dirties them again, and the log ends with it: no clearing
	 * (on PVM each clear write-protects the pages again: the last round's biggest cost). */
	err = c->m->final ? 0 : vm_dirty_log_clear(c->m->vm, slot, first, n, bits);
	for (uint64_t i = 0; i < n && !err; i++)
		if (bits[i / 64] >> (i % 64) & 1)
			err = channel_add(c, s->gpa + (first + i) * VM_PAGE_SIZE,
					  s->hva + (first + i) * VM_PAGE_SIZE);
	return err;
}

/* Post-copy's push: the chunk's stale pages, but those a request has taken already. The
 * guest is paused here: nothing changes, nothing is cleared. */
static int stale_chunk(struct mig_channel *c, unsigned slot, const struct vm_slot *s,
		       uint64_t first, uint64_t n)
{
	const uint64_t *bits = c->m->bitmap[slot] + first / 64;
	_Atomic uint64_t *served = c->m->served[slot] + first / 64;
	int err = 0;

	for (uint64_t w = 0; w < n / 64 && !err; w++) {
		uint64_t left = bits[w] & ~atomic_load(&served[w]);

		for (; left && !err; left &= left - 1) {
			uint64_t i = w * 64 + (uint64_t)__builtin_ctzll(left);

			err = channel_add(c, s->gpa + (first + i) * VM_PAGE_SIZE,
					  s->hva + (first + i) * VM_PAGE_SIZE);
		}
	}
	return err;
}

static int channel_chunk(struct mig_channel *c, unsigned round, unsigned si,
			 const struct vm_slot *s, uint64_t p, uint64_t n)
{
	struct migration *m = c->m;

	if (m->skip_pages)
		return 0;
	if (m->postcopy)
		return stale_chunk(c, si, s, p, n);
	return round ? dirty_chunk(c, si, s, p, n) : round0_chunk(c, s, p, n);
}

/* Fault injection for tests (CME_FAULT_PAGE_OUTSIDE_RAM=1): channel 0 sends one page
 * just past the end of guest RAM in round 0, as a broken or hostile source would. */
static int channel_fault_outside(struct mig_channel *c)
{
	struct vm_slot s;

	vm_get_slot(c->m->vm, vm_nr_slots(c->m->vm) - 1, &s);
	log_warn(SUB, "fault injection: sending a page at 0x%llx, outside guest RAM",
		 (unsigned long long)(s.gpa + s.size));
	return channel_add(c, s.gpa + s.size, s.hva);
}

static int channel_round(struct mig_channel *c, unsigned round)
{
	struct migration *m = c->m;
	uint64_t chunk = 0;
	int err = 0;

	if (round == 0 && c->index == 0 && m->fault_outside)
		err = channel_fault_outside(c);
	for (unsigned si = 0; si < vm_nr_slots(m->vm) && !err; si++) {
		struct vm_slot s;

		vm_get_slot(m->vm, si, &s);
		for (uint64_t p = 0; p < s.size / VM_PAGE_SIZE && !err; p += MIG_CHUNK_PAGES) {
			uint64_t n = s.size / VM_PAGE_SIZE - p;

			n = n < MIG_CHUNK_PAGES ? n : MIG_CHUNK_PAGES;
			if (chunk++ % m->nch != c->index)
				continue;
			err = channel_chunk(c, round, si, &s, p, n);
		}
	}
	return err ? err : channel_flush(c);
}

static int channel_end_round(struct mig_channel *c, unsigned round, bool final)
{
	Cme__MigRoundEnd e = CME__MIG_ROUND_END__INIT;

	e.round = round;
	e.final = final;
	e.pages = c->pages;
	return mig_rec_send_msg(c->conn, REC_ROUND_END, &e.base);
}

static void *channel_thread(void *arg)
{
	struct mig_channel *c = arg;
	struct migration *m = c->m;
	unsigned seen = 0;

	sandbox_enter(SANDBOX_MIGRATION);
	pthread_mutex_lock(&m->lock);
	for (;;) {
		while (m->round_seq == seen && !m->quit)
			pthread_cond_wait(&m->cond, &m->lock);
		if (m->quit)
			break;
		seen = m->round_seq;
		unsigned round = m->round;
		bool final = m->final;

		pthread_mutex_unlock(&m->lock);
		c->round_bytes = 0;
		if (!c->err)
			c->err = channel_round(c, round);
		if (!c->err)
			c->err = channel_end_round(c, round, final);
		pthread_mutex_lock(&m->lock);
		m->done_count++;
		pthread_cond_broadcast(&m->cond);
	}
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

int mig_channels_start(struct migration *m)
{
	for (unsigned i = 0; i < m->nch; i++) {
		struct mig_channel *c = &m->ch[i];

		if (mig_batch_init(&c->batch) ||
		    pthread_create(&c->thread, NULL, channel_thread, c))
			return -ENOMEM;
		c->started = true;
	}
	return 0;
}

void mig_channels_stop(struct migration *m)
{
	pthread_mutex_lock(&m->lock);
	m->quit = true;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	for (unsigned i = 0; i < m->nch; i++) {
		struct mig_channel *c = &m->ch[i];

		/* A channel blocked in a write to a dead peer is woken by the shutdown. */
		if (c->started && c->conn && atomic_load(&m->cancel))
			net_tls_shutdown(c->conn);
		if (c->started)
			pthread_join(c->thread, NULL);
		c->started = false;
		mig_batch_free(&c->batch);
	}
}

static int round_error(struct migration *m)
{
	for (unsigned i = 0; i < m->nch; i++)
		if (m->ch[i].err)
			return m->ch[i].err;
	return 0;
}

uint64_t mig_bitmap_pages(struct migration *m, uint64_t limit)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < vm_nr_slots(m->vm) && n <= limit; i++) {
		struct vm_slot s;

		vm_get_slot(m->vm, i, &s);
		n += bits_count(m->bitmap[i], s.size / VM_PAGE_SIZE / 64, limit - n);
	}
	return n;
}

/* A final round of a few pages, sent by the calling thread on every channel in turn:
 * waking the channels' threads and waiting for them took most of a millisecond of the
 * pause here. Their threads wait for the next round_seq meanwhile and touch nothing. */
static int run_final_inline(struct migration *m, unsigned round)
{
	pthread_mutex_lock(&m->lock);
	m->round = round;
	m->final = true;
	pthread_mutex_unlock(&m->lock);
	for (unsigned i = 0; i < m->nch; i++) {
		struct mig_channel *c = &m->ch[i];

		c->round_bytes = 0;
		if (!c->err)
			c->err = channel_round(c, round);
		if (!c->err)
			c->err = channel_end_round(c, round, true);
	}
	return round_error(m);
}

int mig_run_round(struct migration *m, unsigned round, bool final)
{
	struct timespec until;

	/* A final round that sends no page (post-copy's) or a few (pre-copy's). */
	if (final &&
	    (m->skip_pages || (!m->postcopy && mig_bitmap_pages(m, INLINE_PAGES) <= INLINE_PAGES)))
		return run_final_inline(m, round);
	pthread_mutex_lock(&m->lock);
	m->round = round;
	m->final = final;
	m->done_count = 0;
	m->round_seq++;
	pthread_cond_broadcast(&m->cond);
	while (m->done_count < m->nch) {
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 250000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&m->cond, &m->lock, &until);
		if (m->done_count < m->nch) {
			pthread_mutex_unlock(&m->lock);
			mig_report(m);
			pthread_mutex_lock(&m->lock);
		}
	}
	pthread_mutex_unlock(&m->lock);
	return round_error(m);
}

uint64_t mig_fetch_dirty(struct migration *m)
{
	uint64_t total = 0, n;

	for (unsigned i = 0; i < vm_nr_slots(m->vm); i++)
		if (vm_dirty_log_get(m->vm, i, m->bitmap[i], &n) == 0)
			total += n;
	return total;
}

/* ---- auto-converge --------------------------------------------------------------------- */

/* Each 100 ms period the vCPUs are parked for throttle_pct of it. */
static void *throttle_thread(void *arg)
{
	struct migration *m = arg;

	while (!atomic_load(&m->throttle_quit)) {
		unsigned pct = atomic_load(&m->throttle_pct);

		if (!pct) {
			sleep_ms(20);
			continue;
		}
		if (vm_pause(m->vm) < 0)
			break;
		sleep_ms(pct);
		if (vm_resume(m->vm) < 0)
			break;
		sleep_ms(100 - pct);
	}
	return NULL;
}

void mig_throttle_start(struct migration *m)
{
	atomic_store(&m->throttle_quit, false);
	m->throttle_started = pthread_create(&m->throttle_thread, NULL, throttle_thread, m) == 0;
	if (!m->throttle_started)
		log_warn(SUB, "cannot start the auto-converge thread");
}

void mig_throttle_stop(struct migration *m)
{
	if (!m->throttle_started)
		return;
	atomic_store(&m->throttle_quit, true);
	pthread_join(m->throttle_thread, NULL);
	m->throttle_started = false;
	atomic_store(&m->throttle_pct, 0);
}
