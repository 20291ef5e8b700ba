/* Private to hypervisor/: token-bucket rate limits, one per direction of a net device
 * (bytes and frames per second), after Firecracker's rate limiter, in our own terms.
 *
 * Each bucket earns `rate` tokens a second up to its size, RL_BURST_NS (50 ms) of its rate:
 * the burst a limit lets through after an idle spell, and the most a busy sender can ever
 * get above the rate in any window. A frame may go while no bucket is in debt; it then
 * costs its bytes and one frame, which may leave a bucket in debt by less than one frame.
 * So the long-run rate is exact without knowing a frame's size before it goes — a received
 * frame stays in the tap until the limit lets it go, and is only then read.
 *
 * While in debt the queue waits: the limiter's timerfd is armed for when the buckets will
 * again hold RL_QUANTUM_NS (1 ms) of their rate (or their size, if smaller), and the
 * device's thread sleeps until then instead of polling; the quantum keeps a fast limit to
 * at most a thousand wake-ups a second.
 *
 * Credit is counted in token-nanoseconds (a token is 1e9 of them), so refills are exact in
 * integers. The pure part (rl_bucket_*, rl_ready, rl_charge) takes the time as an
 * argument: the unit tests drive it with a fake clock. One thread uses a limiter. */
#ifndef CME_RATELIMIT_PRIV_H
#define CME_RATELIMIT_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include "hypervisor.h"

#define RL_BURST_NS   50000000ull  /* the bucket: 50 ms of the rate */
#define RL_QUANTUM_NS 1000000ull   /* a wait lasts until 1 ms of the rate is back */
#define RL_MAX_RATE   (1ull << 36) /* per second (64 Gi): keeps the arithmetic in 63 bits */

struct rl_bucket {
	uint64_t rate;	  /* tokens a second; 0: no limit */
	int64_t size;	  /* the most credit, in token-ns */
	int64_t credit;	  /* in token-ns; negative: in debt */
	uint64_t last_ns; /* when credit was last brought up to date */
};

struct ratelimit {
	struct rl_bucket bytes, frames;
	int timer_fd;	    /* CLOCK_MONOTONIC; -1 without a limit (or in unit tests) */
	bool waiting;	    /* held back since the last rl_ready that said yes */
	uint64_t wake_ns;   /* after rl_ready said no: when the wait should end */
	uint64_t throttled; /* waits so far (each time the limit held a queue back) */
};

/* A full bucket of rate tokens a second (0: no limit, rate at most RL_MAX_RATE) at now. */
void rl_bucket_init(struct rl_bucket *b, uint64_t rate, uint64_t now);
/* Bring the credit up to date at now (never over the size); returns the nanoseconds until
 * it holds want token-ns (0: it does now; always 0 without a limit). */
uint64_t rl_bucket_due(struct rl_bucket *b, uint64_t now, int64_t want);
/* Spend tokens (at most a frame's worth: 65535), into debt if need be. */
void rl_bucket_take(struct rl_bucket *b, uint64_t tokens);

/* Buckets for lim at now, and with timer a timerfd when lim limits anything (rl_destroy
 * closes it). Returns 0 or -errno. */
int rl_init(struct ratelimit *rl, const struct vm_net_limit *lim, uint64_t now, bool timer) CME_WUR;
void rl_destroy(struct ratelimit *rl);
/* May a frame go at now (no bucket in debt)? When not, rl->wake_ns is when it should try
 * again (the quantum back). */
bool rl_ready(struct ratelimit *rl, uint64_t now);
/* A frame of bytes went. */
void rl_charge(struct ratelimit *rl, uint64_t bytes);
/* After rl_ready said no and work waits: arm the timer at wake_ns; a new wait counts in
 * throttled. */
void rl_wait(struct ratelimit *rl);
/* The timer fired: clear it (its fd is level-triggered until read). */
void rl_timer_ack(struct ratelimit *rl);

#endif
