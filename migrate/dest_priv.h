/* Private to migrate/: the destination side. dest.c speaks the protocol up to READY;
 * dest_run.c runs it in a thread, waits for the commit, starts the guest and serves the
 * control socket's decisions (mig_dest_*); dest_state.c, below both, keeps the phase, the
 * failure reason and the stop request they share. */
#ifndef CME_DEST_PRIV_H
#define CME_DEST_PRIV_H

#include <pthread.h>

#include "stream_priv.h"

#define IN_MAX_CHANNELS	   8
#define IN_MAX_SLOTS	   4
#define IN_CHANNEL_TIMEOUT 10000 /* ms: a handshake, a record that began arriving */

struct rx_channel {
	struct tls_conn *conn;
	struct tls_conn *ctl; /* shut down on error, to wake the control thread */
	struct vm *vm;
	struct mig_track *track; /* marks every page this channel writes */
	/* Post-copy: each page through page_fn instead of in place; fail_fn on an error
	 * (instead of waking the control thread). */
	mig_page_fn page_fn;
	void *page_arg;
	struct mig_place *place; /* pre-copy: pages placed with userfaultfd (NULL: in place) */
	void (*fail_fn)(void *arg, int err);
	pthread_t thread;
	bool started;
	atomic_bool done;   /* the thread has ended (final round or error) */
	atomic_uint rounds; /* round ends taken (their pages are in place) */
	uint64_t pages, zero, bytes;
	int err;
};

struct mig_dest {
	struct mig_incoming in;
	struct tls_ctx *ctx;
	int listen_fd;
	uint16_t port;
	struct mig_acceptor *acc; /* handshakes side by side, until every channel is in */
	char source[256];	  /* the source's certificate name: every channel's too */
	struct tls_conn *ctl;	  /* set and cleared under lock: mig_dest_abort shuts it down */
	struct rx_channel ch[IN_MAX_CHANNELS];
	unsigned nch;
	uint8_t session[16];
	struct vm *vm;
	struct mig_track *track; /* the running digest, from the page channels' start */
	bool postcopy_offer;	 /* HELLO: the source may switch to post-copy */
	struct tls_conn *urgent; /* post-copy's requests and their pages */
	struct pc_dest *pc;	 /* after a post-copy switch (dest_postcopy.c) */
	struct mig_place *place; /* pre-copy's placement, until the switchover */
	struct mig_stats st;
	uint64_t t0;   /* the source connected */
	char err[512]; /* why it failed (the receiving thread's, final once phase is FAILED) */
	int rc;

	pthread_t thread;
	bool started;
	int wake_fd;  /* eventfd: a decision was asked, or mig_dest_free */
	int event_fd; /* eventfd: running or failed */

	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* Under lock. */
	enum mig_in_phase phase;
	bool commit_asked, abort_asked, quit, source_lost, taken;
	bool committing;   /* past the point of no return: the guest starts, abort is refused */
	uint64_t fence_ns; /* the deadline for the guest (in.fence_ns, then mig_dest_set_fence) */
	bool fence_given;  /* the VM has it: later ones go to the VM at once */
	char abort_reason[200];
};

/* dest_accept.c: every TCP connection to the listener gets its TLS handshake in a thread
 * of its own (16 at most at once), so that a peer that stalls, is not TLS or holds no node
 * certificate holds up no one; node connections queue until taken. */
struct mig_acceptor;
int mig_acceptor_start(struct tls_ctx *ctx, int listen_fd, struct mig_acceptor **out) CME_WUR;
/* The next node connection, waiting until end (ns; UINT64_MAX: forever) or until stop(arg)
 * (looked at every 100 ms): 0 with *out, -ETIMEDOUT or -ECANCELED. */
int mig_acceptor_take(struct mig_acceptor *a, uint64_t end, bool (*stop)(void *), void *arg,
		      struct tls_conn **out) CME_WUR;
/* Cut the handshakes under way, close what was not taken, free. NULL: nothing. */
void mig_acceptor_stop(struct mig_acceptor *a);

/* dest_state.c */
/* Record why the migration fails (first reason wins); returns rc (or -EIO). */
int mig_in_fail(struct mig_dest *c, int rc, const char *fmt, ...) CME_PRINTF(3, 4);
/* Why a page channel failed when the source sent what no source should (NULL: it did
 * not, the link failed). */
const char *mig_in_rx_why(const struct mig_dest *c);
/* True once mig_dest_abort or mig_dest_free asked the receiving to stop. */
bool mig_in_stopping(struct mig_dest *c);
/* Empty the wake eventfd after poll() saw it. */
void mig_in_drain_wake(struct mig_dest *c);
/* Publish the phase (takes the lock) and wake its waiters; MIG_IN_RUNNING and
 * MIG_IN_FAILED also make event_fd readable. */
void mig_in_set_phase(struct mig_dest *c, enum mig_in_phase ph);

/* dest_rx.c */
/* The records of a page channel until its final round ends (the body of its thread, and
 * what the stream's fuzz target runs): 0, or -errno, also in ch->err. */
int mig_rx_run(struct rx_channel *ch);
/* Start ch's receiving thread. Returns 0 or -errno. */
int mig_rx_start(struct rx_channel *ch) CME_WUR;
/* Join every receiving thread; returns the first channel's error (0: none). */
int mig_in_join(struct mig_dest *c);

/* dest_postcopy.c */
/* Whether this VMM can take a post-copy (a hook that ends it, 4 KiB pages, userfaultfd):
 * 0, or -errno with why. */
int mig_pc_check(const struct mig_dest *c, char *why, size_t len) CME_WUR;
/* REC_PC_DROP before the switch (payload, len: its record): once every page channel has
 * ended the rounds it names, drop its pages and answer REC_PC_DROPPED. 0 or -errno (the
 * failure recorded). */
int mig_pc_drop_early(struct mig_dest *c, const uint8_t *payload, uint32_t len) CME_WUR;
/* At the switch, the receivers joined: drop the stale pages (len bytes of bitmap) not
 * dropped before, keep the source's digest. 0 or -errno (the failure recorded). */
int mig_pc_prepare(struct mig_dest *c, const uint8_t *stale, size_t len,
		   const uint8_t *want) CME_WUR;
/* The digest of what is here after the drop: the arrivals are added to it. */
void mig_pc_set_base(struct mig_dest *c, const uint8_t sum[MIG_DIGEST_BYTES]);
/* Before READY: register guest RAM, start the fault thread and the receivers. */
int mig_pc_start(struct mig_dest *c) CME_WUR;
/* The guest runs: wait for every stale page (or a failure: then in.postcopy_fail), check
 * the digest, tell the source. 0 or -errno. */
int mig_pc_run(struct mig_dest *c) CME_WUR;
/* Stop the fault thread and unregister (after the receivers are joined). NULL pc ok. */
void mig_pc_free(struct mig_dest *c);

/* dest.c */
/* Load the certificates and bind in.listen; logs the bound address. Returns 0 or -errno. */
int mig_in_listen(struct mig_dest *c) CME_WUR;
/* Accept the source, check its offer, build the VM, take every page, compare digests and
 * load the state. Returns 0 with the VM complete (it has not run), or -errno. */
int mig_in_receive(struct mig_dest *c) CME_WUR;
/* Send READY (with the digest and load times). Returns 0 or -errno. */
int mig_in_send_ready(struct mig_dest *c) CME_WUR;
/* Wait for the control record want; an ABORT or anything else fails. Returns 0 or -errno. */
int mig_in_expect(struct mig_dest *c, uint32_t want, uint8_t **payload, uint32_t *len,
		  const char *what) CME_WUR;
/* Close every connection and the listening socket (the VM is left alone). */
void mig_in_cleanup(struct mig_dest *c);
/* Bytes received, and pages (non-zero and zero) into st. */
void mig_in_count(struct mig_dest *c);

#endif
