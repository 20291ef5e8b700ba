/* The host end of the test guest's network (tests/lib/netpeer.c): a packet socket on a tap
 * device that checks every frame the guest sends (netframe.h), answers each with a frame
 * of its own when asked to, and counts. */
#ifndef CME_TEST_NETPEER_H
#define CME_TEST_NETPEER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct netpeer_stats {
	uint64_t frames, bytes; /* the guest's frames received (Ethernet bytes) */
	uint64_t first_seq, last_seq;
	uint64_t gaps;	   /* sequence numbers skipped (frames lost on the way) */
	uint64_t bad;	   /* frames wrongly stamped or out of order */
	uint64_t answered; /* frames sent back */
	char why[160];	   /* the first bad frame */
	/* The window of netpeer_rate: the guest's frames the kernel took in during it. */
	uint64_t win_from, win_to, win_frames, win_bytes;
	uint64_t last_ts; /* the kernel's arrival time of the last frame (CLOCK_REALTIME ns) */
};

struct netpeer {
	int fd;
	bool answer;
	atomic_bool stop;
	pthread_t thread;
	bool started;
	pthread_mutex_t mu;
	struct netpeer_stats st;
	pthread_t flooder; /* netpeer_flood's */
	bool flooding;
	uint8_t flood_mac[6];
	uint64_t flooded; /* frames it sent */
};

/* A packet socket bound to interface ifname of the calling thread's network namespace
 * (call it inside: netns_enter), and the thread that reads it; with answer, every good
 * frame from the guest is answered with the host's frame of the same sequence number.
 * Returns 0, or -1 with why. */
int netpeer_start(struct netpeer *p, const char *ifname, bool answer, char *why, size_t len);
/* A copy of the counters so far. */
void netpeer_get(struct netpeer *p, struct netpeer_stats *st);
/* Wait until the guest's frame last_seq (or a later one) came; true if it did in time. */
bool netpeer_wait_seq(struct netpeer *p, uint64_t seq, int timeout_ms);
/* The guest's frames and bytes per second over len_ms from now, by the kernel's arrival
 * times (so the reader's own delays do not count). False when no frame came after the
 * window within timeout_ms. */
bool netpeer_rate(struct netpeer *p, int len_ms, int timeout_ms, double *frames_s, double *bytes_s);
/* From a thread of its own, send the host's frames (1514 bytes, sequence from 1) to mac as
 * fast as the socket takes them, until netpeer_stop. 0 or -1. */
int netpeer_flood(struct netpeer *p, const uint8_t *mac);
/* Stop the threads and close the socket (safe to call twice). */
void netpeer_stop(struct netpeer *p);

#endif
