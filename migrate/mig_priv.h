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
	enum mig_phase end_phase; /* how it ended, published by mig_finish after cleanup */
	bool was_running;
	enum mig_decision decision; /* under lock */
	char decision_reason[256];
	bool leave_dest;  /* end without ABORT to the destination and without resuming */
	bool handed_over; /* the disks were released for the destination (VM_HANDOFF_RELEASE) */

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

/* switchover.c: pause, last pages, state, digest, (external mode: the decision,) commit.
 * Returns 0 when the destination acknowledged; otherwise the phase says where the guest
 * is. */
int mig_switchover(struct migration *m) CME_WUR;

#endif
