/* Post-copy on the source. After the commit the guest runs on the destination with the
 * stale pages (dirtied since they were last sent) missing there. Two things bring them:
 * the page channels push every stale page in address order, skipping those already sent
 * on request, and a thread on the urgent channel answers the destination's requests —
 * pages a vCPU or a device is waiting for — ahead of the push. The guest stays paused
 * here with its memory and state intact until the destination says it has every page;
 * if anything breaks before that, it stays so (MIG_POSTCOPY_BROKEN). */
#include "mig_priv.h"
#include "proto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUB		"mig"
#define REQ_MAX		512   /* pages in one request */
#define DONE_TIMEOUT_MS 60000 /* every page pushed: the destination confirms well before */

int mig_pc_stale_bitmap(struct migration *m, uint8_t **out, size_t *len)
{
	size_t total = 0, off = 0;
	uint8_t *b;

	for (unsigned i = 0; i < vm_nr_slots(m->vm); i++) {
		struct vm_slot s;

		vm_get_slot(m->vm, i, &s);
		total += s.size / VM_PAGE_SIZE / 8;
	}
	b = malloc(total ? total : 1);
	if (!b)
		return -ENOMEM;
	for (unsigned i = 0; i < vm_nr_slots(m->vm); i++) {
		struct vm_slot s;

		vm_get_slot(m->vm, i, &s);
		memcpy(b + off, m->bitmap[i], s.size / VM_PAGE_SIZE / 8);
		off += s.size / VM_PAGE_SIZE / 8;
	}
	*out = b;
	*len = total;
	return 0;
}

/* Mark gpa served (the push skips it). False when it is not a page of RAM. */
static bool mark_served(struct migration *m, uint64_t gpa)
{
	for (unsigned i = 0; i < vm_nr_slots(m->vm); i++) {
		struct vm_slot s;

		vm_get_slot(m->vm, i, &s);
		if (gpa >= s.gpa && gpa - s.gpa < s.size) {
			uint64_t p = (gpa - s.gpa) / VM_PAGE_SIZE;

			atomic_fetch_or(&m->served[i][p / 64], 1ull << (p % 64));
			return true;
		}
	}
	return false;
}

/* One request: its pages in one or more page records on the urgent channel. */
static int serve_request(struct migration *m, struct page_batch *b, const uint64_t *gpa, uint32_t n)
{
	int64_t sent = 0;

	for (uint32_t i = 0; i < n && sent >= 0; i++) {
		const uint8_t *hva = vm_gpa_hva(m->vm, gpa[i], VM_PAGE_SIZE);

		if (!hva || gpa[i] % VM_PAGE_SIZE || !mark_served(m, gpa[i]))
			return -EPROTO;
		mig_batch_add(b, gpa[i], hva);
		if (mig_batch_full(b))
			sent = mig_batch_send(m->urgent, b);
	}
	if (sent >= 0)
		sent = mig_batch_send(m->urgent, b);
	atomic_fetch_add(&m->pc_requested, n);
	return sent < 0 ? (int)sent : 0;
}

struct urgent {
	struct migration *m;
	pthread_t thread;
	bool started;
	int err;
};

/* Requests until the destination closes the channel (it has every page) or it breaks. */
static void *urgent_thread(void *arg)
{
	struct urgent *u = arg;
	struct page_batch b;
	uint8_t *payload = NULL;
	uint32_t type, len;

	sandbox_enter(SANDBOX_MIGRATION);
	if (mig_batch_init(&b)) {
		u->err = -ENOMEM;
		return NULL;
	}
	while (!u->err) {
		u->err = mig_rec_recv(u->m->urgent, &type, &payload, &len);
		if (!u->err && (type != REC_PAGE_REQ || len % 8 || !len || len / 8 > REQ_MAX))
			u->err = -EPROTO;
		if (!u->err)
			u->err = serve_request(u->m, &b, (const uint64_t *)payload, len / 8);
		free(payload);
		payload = NULL;
	}
	mig_batch_free(&b);
	return NULL;
}

/* The destination's word that every page is there, and whether the digest matched. */
static int wait_done(struct migration *m)
{
	uint8_t *payload = NULL;
	uint32_t type = 0, len = 0;
	Cme__MigPostcopyDone *d;
	int err;

	if (net_tls_set_timeout(m->ctl, DONE_TIMEOUT_MS) < 0)
		log_debug(SUB, "cannot set the post-copy timeout");
	err = mig_rec_recv(m->ctl, &type, &payload, &len);
	d = !err && type == REC_POSTCOPY_DONE
		    ? PB_UNPACK(cme__mig_postcopy_done__unpack, len, payload)
		    : NULL;
	free(payload);
	if (err)
		return mig_fail(m, MIG_POSTCOPY_BROKEN, err, "no word from %s after the push (%s)",
				m->p.to, strerror(-err));
	if (!d)
		return mig_fail(m, MIG_POSTCOPY_BROKEN, -EPROTO, "%s answered nonsense", m->p.to);
	if (!d->ok)
		err = mig_fail(m, MIG_POSTCOPY_BROKEN, -EBADMSG, "%s: %s", m->p.to, d->reason);
	cme__mig_postcopy_done__free_unpacked(d, NULL);
	return err;
}

static void broken_advice(struct migration *m)
{
	struct mig_progress *p = &m->prog;
	size_t n = strlen(p->error);

	snprintf(p->error + n, sizeof(p->error) - n,
		 " — post-copy broke after the switch: the guest ran on %s since and cannot go "
		 "on there; here it stays paused with its state as of the switch. resume "
		 "{\"force\":true} runs it from that point (what it did on %s is lost; with a "
		 "writable disk stop it and start afresh instead: the disk holds writes this "
		 "state does not know), or stop",
		 m->p.to, m->p.to);
}

/* Fault injection for tests (CME_FAULT_POSTCOPY_HOLD_MS=N, at most 10 s): the push starts
 * N ms after the switch (requests are served meanwhile), so that a test sees the phase
 * postcopy however few pages a starved guest left behind. */
static void mig_fault_hold(void)
{
	const char *f = getenv("CME_FAULT_POSTCOPY_HOLD_MS");
	int ms = f ? atoi(f) : 0;

	if (ms <= 0)
		return;
	log_warn(SUB, "fault injection: the post-copy push waits %d ms", ms > 10000 ? 10000 : ms);
	sleep_ms(ms > 10000 ? 10000 : ms);
}

int mig_postcopy_run(struct migration *m)
{
	struct urgent u = { .m = m };
	uint64_t t0 = now_ns();
	int err;

	m->prog.stats.postcopy_pages = mig_bitmap_pages(m, UINT64_MAX);
	mig_set_phase(m, MIG_POSTCOPY);
	log_info(SUB, "post-copy: the guest runs on %s; %llu pages follow it", m->p.to,
		 (unsigned long long)m->prog.stats.postcopy_pages);
	u.started = pthread_create(&u.thread, NULL, urgent_thread, &u) == 0;
	if (u.started)
		mig_fault_hold();
	err = u.started ? mig_run_round(m, m->prog.round + 1, true) : -EAGAIN;
	if (err)
		mig_fail(m, MIG_POSTCOPY_BROKEN, err, "pushing pages to %s failed (%s)", m->p.to,
			 strerror(-err));
	if (!err)
		err = wait_done(m);
	net_tls_shutdown(m->urgent); /* ends the request thread */
	if (u.started)
		pthread_join(u.thread, NULL);
	pthread_mutex_lock(&m->lock);
	m->prog.stats.postcopy_requested = atomic_load(&m->pc_requested);
	m->prog.stats.postcopy_ms = (now_ns() - t0) / 1000000;
	if (err)
		broken_advice(m);
	pthread_mutex_unlock(&m->lock);
	if (!err)
		log_info(SUB, "post-copy done: %llu pages (%llu on request) in %llu ms",
			 (unsigned long long)m->prog.stats.postcopy_pages,
			 (unsigned long long)m->prog.stats.postcopy_requested,
			 (unsigned long long)m->prog.stats.postcopy_ms);
	return err;
}
