/* Private to migrate/: the source side's migration and its page channels. */
#ifndef CME_MIG_PRIV_H
#define CME_MIG_PRIV_H

#include <pthread.h>
#include <stdatomic.h>

#include "stream_priv.h"

#define MIG_MAX_CHANNELS 8
#define MIG_CHUNK_PAGES	 4096 /* 16 MiB: the unit of channel assignment and dirty clearing */
#define MIG_SLOTS	 2

struct migration;

/* External mode: what ends MIG_AWAIT_COMMIT (under the migration's lock). */
enum mig_decision {
	MIG_DECIDE_NONE,
	MIG_DECIDE_COMMIT,
	MIG_DECIDE_ABORT,
	MIG_DECIDE_QUIT, /* mig_free: the VM ended; leave the destination to the cluster */
};

/* One page channel: its own TLS session and thread. A chunk of guest memory always
 * travels on the same channel, so a newer copy of a page can never overtake an older one. */
struct mig_channel {
	struct migration *m;
	unsigned index;
	struct tls_conn *conn;
	pthread_t thread;
	bool started;
	struct page_batch batch;
	uint64_t bytes, pages, zero_pages; /* totals, written by the channel thread */
	uint64_t round_bytes;
	uint64_t bucket_ns; /* bandwidth cap: token bucket, last refill */
	double tokens;	    /* bytes that may go now */
	int err;
};

struct migration {
	struct vm *vm;
	struct mig_params p;
	char host[256], peer_name[256], tls_dir[4096];
	uint16_t port;
	struct tls_ctx *ctx;
	struct tls_conn *ctl;
	struct mig_channel ch[MIG_MAX_CHANNELS];
	unsigned nch;
	uint8_t session[16];

	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct mig_progress prog;
	atomic_bool cancel;
	atomic_bool finished;
	int follow_fd;
	uint64_t t_start, t_pause, t_ack;
	uint64_t rtt_ms;	  /* the handshake's round trip: a commit costs two of them */
	enum mig_phase end_phase; /* how it ended, published by mig_finish after cleanup */
	bool was_running;
	enum mig_decision decision; /* under lock */
	char decision_reason[256];
	bool leave_dest;  /* end without ABORT to the destination and without resuming */
	bool handed_over; /* the disks were released for the destination (VM_HANDOFF_RELEASE) */
	struct mig_wtrack *wtrack; /* the source's digest; NULL: hashed whole in the pause */
	bool fault_untracked;	   /* test fault injection: see source.c */
	bool fault_outside;	   /* test fault injection: see source_pages.c */
	int64_t fault_omit;	   /* test fault injection (switchover.c): a page, or -1 */
	/* Post-copy. */
	struct tls_conn *urgent; /* p.postcopy_after: the destination's page requests */
	bool postcopy;		 /* switching to (or in) post-copy */
	bool pc_drop;		 /* the destination takes REC_PC_DROP (WELCOME) */
	bool skip_pages;	 /* a round that only ends the pre-copy on every channel */
	_Atomic uint64_t *served[MIG_SLOTS]; /* post-copy: pages already sent on request */
	_Atomic uint64_t pc_requested;

	/* Round hand-off to the channels, under lock. */
	unsigned round_seq, done_count;
	unsigned round;
	bool final, quit;
	uint64_t *bitmap[MIG_SLOTS]; /* dirty bits of the round (round >= 1) */

	/* Auto-converge. */
	pthread_t throttle_thread;
	bool throttle_started;
	atomic_uint throttle_pct;
	atomic_bool throttle_quit;
};

/* source_pages.c */
/* Start the channel threads (connected already). Returns 0 or -errno. */
int mig_channels_start(struct migration *m) CME_WUR;
/* Run one round on every channel and wait; progress is reported meanwhile. Returns 0, or
 * the first channel error (-ECANCELED when cancelled). */
int mig_run_round(struct migration *m, unsigned round, bool final) CME_WUR;
/* Stop and join the channel threads. */
void mig_channels_stop(struct migration *m);
/* Auto-converge throttle thread. */
void mig_throttle_start(struct migration *m);
void mig_throttle_stop(struct migration *m);
/* Read every slot's dirty bitmap into m->bitmap; returns the dirty page count. */
uint64_t mig_fetch_dirty(struct migration *m);
/* The pages marked in m->bitmap over every slot, counted until past limit (bits_count). */
uint64_t mig_bitmap_pages(struct migration *m, uint64_t limit);

/* source_digest.c: the source's digest kept current while the guest runs, by a change
 * tracker of its own (userfaultfd write protection read through PAGEMAP_SCAN), not by the
 * dirty log the page channels follow — a page the log misses still changes the digest.
 * Background passes (mig_wtrack_kick) hash what was written since the last; with the
 * guest paused, mig_wtrack_digest hashes only what is left and gives the same digest as
 * mig_ram_digest. */
struct mig_wtrack;
struct mig_wtrack_stats {
	uint64_t chunks;		    /* in the VM */
	uint64_t passes, background_chunks; /* background passes and the chunks they hashed */
	uint64_t final_chunks, final_ms;    /* the last pass, in the pause */
};
/* Register guest RAM and start the background hasher. Returns 0 with *out, or -errno with
 * why (a kernel before 6.7, hugetlb RAM, no userfaultfd): then the pause hashes all RAM. */
int mig_wtrack_new(struct vm *vm, struct mig_wtrack **out, char *why, size_t len) CME_WUR;
/* Start a background pass unless one is running. */
void mig_wtrack_kick(struct mig_wtrack *t);
/* What the last pass would take now on `threads` threads, in ms (from the pages written
 * since the last pass and the measured hash rate); UINT64_MAX when unknown. */
uint64_t mig_wtrack_estimate_ms(struct mig_wtrack *t, unsigned threads);
/* The guest and its devices are paused: wait for a background pass, hash what is left on
 * `threads` threads, give the digest. Returns 0, or -errno (the tracker failed: use
 * mig_ram_digest). */
int mig_wtrack_digest(struct mig_wtrack *t, unsigned threads, uint8_t out[MIG_DIGEST_BYTES],
		      struct mig_wtrack_stats *st) CME_WUR;
/* Unregister guest RAM and free. NULL ok. */
void mig_wtrack_free(struct mig_wtrack *t);

/* source_state.c (below source.c, switchover.c and report.c) */
/* Publish the phase (takes the lock). */
void mig_set_phase(struct migration *m, enum mig_phase ph);
/* Record why the migration stops (first reason wins) and how it ends: MIG_FAILED (the
 * guest runs here) or MIG_IN_DOUBT. The phase is published only once cleanup is done.
 * Returns err (or -EIO). */
int mig_fail(struct migration *m, enum mig_phase ph, int err, const char *fmt, ...)
	CME_PRINTF(4, 5);

/* report.c */
/* Write a progress line to the follower (if any); lock not held. */
void mig_report(struct migration *m);

/* switchover.c: the threads the digest takes in the pause (the cores the page channels
 * leave, at least one, at most four). */
unsigned mig_digest_threads(void);
/* switchover.c: pause, last pages, state, digest, (external mode: the decision,) commit.
 * With m->postcopy: no last pages (the stale ones go as a bitmap with the state), and
 * after the commit the post-copy below. Returns 0 when the destination acknowledged (and,
 * post-copy, has every page); otherwise the phase says where the guest is. */
int mig_switchover(struct migration *m) CME_WUR;

/* source_postcopy.c (below switchover.c) */
/* The stale pages (m->bitmap, every slot in order) as one little-endian bitmap: malloc'd
 * into *out, or -ENOMEM. */
int mig_pc_stale_bitmap(struct migration *m, uint8_t **out, size_t *len) CME_WUR;
/* After the commit: serve the destination's requests, push every stale page, wait for its
 * POSTCOPY_DONE. Returns 0, or -errno with the phase MIG_POSTCOPY_BROKEN. */
int mig_postcopy_run(struct migration *m) CME_WUR;

#endif
