/* migrate — live migration of a running VM from one cme-vmm to another over mutual TLS:
 * iterative dirty-page pre-copy on several page channels, a short final pause, the full
 * VM state, a digest of all guest RAM on both sides, and a commit handshake after which
 * only the destination runs the guest. On any failure before commit the source resumes;
 * if the channel breaks after commit was sent, the source stays paused ("in-doubt").
 *
 * The digest's cost in the pause: the source hashes all RAM while the last pages travel
 * (on the cores the page channels leave free); the destination hashes each 2 MiB chunk in
 * the background as pages arrive, so after the last pages only the chunks they changed are
 * left to hash before READY. Either way it is the same digest of the same memory.
 *
 * Who commits: in the direct mode the source sends COMMIT as soon as the destination says
 * READY. In the external mode someone else decides (cme-clusterd, with one etcd
 * transaction on the VM's owner record): the source waits paused in MIG_AWAIT_COMMIT, with
 * no time limit, for mig_decide(); the destination runs the guest on the source's COMMIT or
 * on mig_dest_commit(), whichever comes first, and never gives up on its own after READY. */
#ifndef CME_MIGRATE_H
#define CME_MIGRATE_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "hypervisor.h"

#define MIG_PROTOCOL_VERSION 2 /* 2: the digest is a sum of XXH3-128 page hashes */

enum mig_commit_mode {
	MIG_COMMIT_DIRECT,   /* the source commits as soon as the destination is ready */
	MIG_COMMIT_EXTERNAL, /* the commit is decided outside (mig_decide, mig_dest_commit) */
};

struct mig_params {
	const char *to;	       /* "host:port" of the destination */
	const char *tls_dir;   /* this node's ca.crt, tls.crt, tls.key */
	const char *peer_name; /* name the destination's certificate must carry; NULL: host of to */
	uint64_t downtime_ms;  /* switch over when the rest fits this (default 300) */
	uint64_t max_bandwidth; /* bytes/s over all channels, 0 = unlimited */
	unsigned channels;	/* page channels, each its own TLS session (default 2) */
	uint64_t timeout_ms;	/* hard limit; past it the migration is cancelled (default 600 s) */
	bool auto_converge;	/* throttle vCPUs when rounds stop shrinking (default on) */
	unsigned max_rounds;	/* give up after this many rounds (default 30) */
	enum mig_commit_mode commit; /* default MIG_COMMIT_DIRECT */
	/* Post-copy: when pre-copy has not converged after this many rounds, start the guest
	 * on the destination at once and bring the rest after it (0: never, the default; 1:
	 * after the first full round). See mig_switchover's post-copy in README. */
	unsigned postcopy_after;
};

/* Fill defaults (call before setting fields from the operator). */
void mig_params_defaults(struct mig_params *p);

enum mig_phase {
	MIG_SETUP,	/* connecting, handshake */
	MIG_PRECOPY,	/* rounds of pages while the guest runs */
	MIG_SWITCHOVER, /* guest paused on the source: last pages, state, digest */
	MIG_COMMIT,	/* waiting for the destination to take over */
	MIG_DONE,	/* the guest runs on the destination; the source VM has ended */
	MIG_FAILED,	/* aborted; the guest runs on the source */
	MIG_IN_DOUBT,	/* commit sent, no answer: the source stays paused */
	/* External mode: the destination is ready; the guest stays paused here, with no time
	 * limit, until mig_decide(). Even a broken channel to the destination does not end it. */
	MIG_AWAIT_COMMIT,
	/* Post-copy: the guest runs on the destination, which still fetches pages from here;
	 * the source stays paused with its whole state. Not an end. */
	MIG_POSTCOPY,
	/* Post-copy broke after the switch (the link, the destination, or its digest): the
	 * guest cannot go on there; here it stays paused with its state as of the switch. */
	MIG_POSTCOPY_BROKEN,
};

const char *mig_phase_name(enum mig_phase p);

struct mig_stats {
	uint64_t setup_ms, total_ms, downtime_ms;
	uint64_t rounds, bytes, pages, zero_pages;
	double dirty_rate_mbps; /* MiB/s the guest dirtied in the last round */
	double throughput_mbps; /* Mbit/s of pages on the wire over the whole migration */
	unsigned throttle_pct;	/* highest auto-converge throttle applied */
	/* The guest's pause, by phase (the source's view; resume is the destination's). */
	uint64_t pause_ms, last_pages_ms, state_ms, digest_ms, commit_ms, resume_ms;
	uint64_t drain_us; /* destination: SWITCHOVER to its last page in (in last_pages_ms) */
	/* The pause until this side had sent everything (last pages, state, digest): what
	 * QEMU reports as its downtime, for comparison; downtime_ms also waits for the
	 * destination to load it all and run the guest. */
	uint64_t sent_ms, sent_us; /* the same in microseconds: idle guests take ~1 ms */
	uint64_t decision_ms;	/* external mode: paused in MIG_AWAIT_COMMIT (not in commit_ms) */
	uint64_t digest_chunks; /* 256 KiB chunks the source hashed in the pause */
	/* Post-copy (0 when it was not used): pages left behind at the switch, of them sent
	 * because a fault asked for them, and switch to the destination's last page. */
	uint64_t postcopy_pages, postcopy_requested, postcopy_ms;
	/* Of postcopy_pages, those the destination dropped before the pause (while the guest
	 * still ran here), and how long that took; the switch drops only the rest. */
	uint64_t postcopy_early, postcopy_early_ms;
};

struct mig_progress {
	enum mig_phase phase;
	unsigned round;
	uint64_t pages_left; /* dirty pages not yet sent */
	double rate_mbps;    /* Mbit/s of the last round */
	uint64_t bytes_sent;
	uint64_t expected_downtime_ms;
	unsigned throttle_pct;
	char error[512];	/* why it failed (MIG_FAILED, MIG_IN_DOUBT, MIG_POSTCOPY_BROKEN) */
	struct mig_stats stats; /* final when MIG_DONE */
};

struct migration;

/* Start migrating vm (running or paused) in a thread of its own. Returns 0 with *out, or
 * -errno with a reason (bad parameters, TLS files unreadable). Connection problems come
 * later, as MIG_FAILED. */
int mig_start(struct vm *vm, const struct mig_params *p, struct migration **out, char *err,
	      size_t errlen) CME_WUR;
void mig_get_progress(struct migration *m, struct mig_progress *out);
/* Ask to cancel; before commit the guest keeps running on the source. Returns 0, or
 * -EBUSY in MIG_AWAIT_COMMIT (or once a decision was taken): only mig_decide ends that. */
int mig_cancel(struct migration *m) CME_WUR;
/* External mode: the decision that ends MIG_AWAIT_COMMIT, taken by the migration's thread.
 * commit: send COMMIT and wait for ACK as in the direct mode (MIG_DONE, or MIG_IN_DOUBT
 * with the guest still paused). abort: send ABORT (a failed send is ignored), resume the
 * guest here, MIG_FAILED with reason (NULL: "commit refused by the cluster"). Safe even
 * when the channel broke: the destination runs the guest only on COMMIT or its own
 * mig_dest_commit(). Returns 0, -EAGAIN when not in MIG_AWAIT_COMMIT, -EALREADY when a
 * decision was already taken. */
int mig_decide(struct migration *m, bool commit, const char *reason) CME_WUR;
/* Hand over a connected client fd that receives a JSON line of progress every 250 ms and
 * a final line; the migration closes it. */
void mig_follow(struct migration *m, int fd);
/* True once the migration has ended (done, failed or in doubt). */
bool mig_finished(struct migration *m);
/* Wait for the thread and free. Call it once the VM has ended or the migration finished:
 * a migration still in MIG_AWAIT_COMMIT then ends as MIG_FAILED without telling the
 * destination anything (the cluster's decision stands) and without resuming. */
void mig_free(struct migration *m);

/* Progress (and, when done, statistics) as one JSON object string (malloc'd). */
char *mig_progress_json(const struct mig_progress *p);

/* ---- destination ------------------------------------------------------------------- */

struct mig_incoming {
	const char *listen; /* "host:port" (port 0: any; the bound port is logged) */
	const char *tls_dir;
	const char *name;	      /* VM name for logs */
	const char *peer_name;	      /* the source's certificate name (NULL: any node) */
	const uint8_t *measurement;   /* MEASURE_BYTES the guest's must equal (NULL: any) */
	const char *trust, *boot_sig; /* or: signed so by a key of that file (NULL: any) */
	struct console_cfg console;
	int timeout_ms; /* how long to wait for the source to connect, -1 forever */
	enum mig_commit_mode commit;
	uint64_t fence_ns; /* the guest may run here until this CLOCK_BOOTTIME time; 0: none */
	/* This host's side of the VM (NULL: none): its devices' backing (disk images, ...)
	 * and resource options, the epoch; memory, vCPUs, name and console come from above. */
	const struct vm_config *vm;
	/* Post-copy broke after the guest started here (or its digest did not match): the
	 * guest lacks memory only the source has and must not run one more instruction, nor
	 * may its devices finish what they began. Called with why; expected to end the
	 * process at once (cme-vmm exits). NULL: this VMM refuses post-copy. */
	void (*postcopy_fail)(void *arg, const char *why);
	void *postcopy_arg;
};

enum mig_in_phase {
	MIG_IN_LISTENING, /* bound; waiting for the source */
	MIG_IN_RECEIVING, /* handshake, pages, state, digest */
	MIG_IN_READY,	  /* READY sent: waiting for the commit */
	MIG_IN_RUNNING,	  /* committed: the guest runs here */
	MIG_IN_FAILED,	  /* ended; the guest never ran here */
};

const char *mig_in_phase_name(enum mig_in_phase p);

struct mig_in_status {
	enum mig_in_phase phase;
	enum mig_commit_mode commit;
	uint16_t port;	  /* the bound TCP port */
	bool source_lost; /* MIG_IN_READY: the channel to the source broke */
	char error[512];  /* MIG_IN_FAILED: why */
};

struct mig_dest;

/* Bind in->listen (logs "waiting for a migration on HOST:PORT") and receive one migration
 * in a thread of its own. in's strings must outlive *out. Returns 0 with *out (free with
 * mig_dest_free), or -errno with the reason in err (bad address, TLS files, bind). */
int mig_dest_start(const struct mig_incoming *in, struct mig_dest **out, char *err,
		   size_t errlen) CME_WUR;
/* Readable (level-triggered) once the phase is MIG_IN_RUNNING or MIG_IN_FAILED. */
int mig_dest_event_fd(const struct mig_dest *d);
void mig_dest_get_status(struct mig_dest *d, struct mig_in_status *out);
/* External mode, MIG_IN_READY: start the guest here (at most once, all vCPUs released
 * together) and return once it runs. Returns 0 (also when it runs already), or -errno
 * with a one-line reason: -EAGAIN before READY, -EPERM in the direct mode, -ECANCELED
 * when aborted or failed, -EIO when the vCPUs did not start. */
int mig_dest_commit(struct mig_dest *d, char *err, size_t errlen) CME_WUR;
/* A new fencing deadline (see vm_fence_set): kept for the guest until it starts here,
 * given to it before its first instruction, and to the running guest after. 0 or -errno
 * from vm_fence_set. */
int mig_dest_set_fence(struct mig_dest *d, uint64_t deadline_ns) CME_WUR;
/* Give up before the guest runs: it never will run here; the source (if still there) is
 * told ABORT and the phase becomes MIG_IN_FAILED soon after. Returns 0, or -EALREADY (with
 * the reason in err) once the guest runs or is being started. */
int mig_dest_abort(struct mig_dest *d, const char *reason, char *err, size_t errlen) CME_WUR;
/* Wait until the guest runs here or the migration failed. On success the VM runs (*out,
 * caller owns; the statistics in st) and returns 0; otherwise -errno with the reason in err
 * and no guest ever ran here. */
int mig_dest_take(struct mig_dest *d, struct vm **out, struct mig_stats *st, char *err,
		  size_t errlen) CME_WUR;
/* Stop the receiving thread (it may still be answering the source's COMMIT after
 * mig_dest_commit) and free. A VM that was not taken is destroyed. NULL ok. */
void mig_dest_free(struct mig_dest *d);

#endif
