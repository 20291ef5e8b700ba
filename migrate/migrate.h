/* migrate — live migration of a running VM from one cme-vmm to another over mutual TLS:
 * iterative dirty-page pre-copy on several page channels, a short final pause, the full
 * VM state, a digest of all guest RAM on both sides, and a commit handshake after which
 * only the destination runs the guest. On any failure before commit the source resumes;
 * if the channel breaks after commit was sent, the source stays paused ("in-doubt"). */
#ifndef CME_MIGRATE_H
#define CME_MIGRATE_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "hypervisor.h"

#define MIG_PROTOCOL_VERSION 1

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
};

struct mig_progress {
	enum mig_phase phase;
	unsigned round;
	uint64_t pages_left; /* dirty pages not yet sent */
	double rate_mbps;    /* Mbit/s of the last round */
	uint64_t bytes_sent;
	uint64_t expected_downtime_ms;
	unsigned throttle_pct;
	char error[256];	/* why it failed (MIG_FAILED, MIG_IN_DOUBT) */
	struct mig_stats stats; /* final when MIG_DONE */
};

struct migration;

/* Start migrating vm (running or paused) in a thread of its own. Returns 0 with *out, or
 * -errno with a reason (bad parameters, TLS files unreadable). Connection problems come
 * later, as MIG_FAILED. */
int mig_start(struct vm *vm, const struct mig_params *p, struct migration **out, char *err,
	      size_t errlen) CME_WUR;
void mig_get_progress(struct migration *m, struct mig_progress *out);
/* Ask to cancel; before commit the guest keeps running on the source. */
void mig_cancel(struct migration *m);
/* Hand over a connected client fd that receives a JSON line of progress every 250 ms and
 * a final line; the migration closes it. */
void mig_follow(struct migration *m, int fd);
/* True once the migration has ended (done, failed or in doubt). */
bool mig_finished(struct migration *m);
/* Wait for the thread and free. */
void mig_free(struct migration *m);

/* Progress (and, when done, statistics) as one JSON object string (malloc'd). */
char *mig_progress_json(const struct mig_progress *p);

/* ---- destination ------------------------------------------------------------------- */

struct mig_incoming {
	const char *listen; /* "host:port" (port 0: any; the bound port is logged) */
	const char *tls_dir;
	const char *name; /* VM name for logs */
	struct console_cfg console;
	int timeout_ms; /* how long to wait for the source to connect, -1 forever */
	/* Called once the listening socket is bound, with its port (tests pick port 0). */
	void (*on_listening)(uint16_t port, void *opaque);
	void *opaque;
};

/* Wait for one incoming migration and receive it. On success the VM is running here
 * (*out, caller owns) and st has the destination's statistics. On any failure no guest
 * ran here; returns -errno with the reason in err. */
int mig_receive(const struct mig_incoming *in, struct vm **out, struct mig_stats *st, char *err,
		size_t errlen) CME_WUR;

#endif
