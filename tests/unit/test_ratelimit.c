/* Token-bucket rate limits (hypervisor/ratelimit.c) on a fake clock: the burst a bucket
 * lets through, the long-run rate of a greedy sender that sleeps exactly as the limiter
 * says, frames and bytes together, idle time that does not pile up, the quantum of a wait,
 * waits counted once, and no overflow at the extremes. */
#include <stdio.h>
#include <unistd.h>

#include "harness.h"
#include "ratelimit_priv.h"
#include "unit.h"

#define SEC   1000000000ull
#define FRAME 1514

/* A sender that sends frames of len bytes whenever the limiter lets it and otherwise
 * sleeps until its wake time, from *now until end. Returns the bytes sent; *waits counts
 * the times it slept. */
static uint64_t greedy(struct ratelimit *rl, uint64_t *now, uint64_t end, uint64_t len,
		       uint64_t *waits)
{
	uint64_t sent = 0;

	*waits = 0;
	while (*now < end) {
		if (rl_ready(rl, *now)) {
			rl_charge(rl, len);
			sent += len;
			continue;
		}
		CU_ASSERT_FATAL(rl->wake_ns > *now); /* a wait always moves time on */
		rl_wait(rl);
		*now = rl->wake_ns;
		(*waits)++;
	}
	return sent;
}

/* One bucket: a full one lets 50 ms of its rate through at once (and one frame more, as
 * the frame that empties it goes whole), then it owes; the debt is paid at the rate. */
static void test_bucket(void)
{
	struct rl_bucket b;

	rl_bucket_init(&b, 1000, 5 * SEC); /* 1000 bytes/s: 50 bytes of burst */
	CU_ASSERT_EQUAL(b.credit, 50ll * SEC);
	CU_ASSERT_EQUAL(rl_bucket_due(&b, 5 * SEC, 0), 0);
	rl_bucket_take(&b, FRAME);
	CU_ASSERT_EQUAL(b.credit, (50ll - FRAME) * (long long)SEC);
	/* Out of debt after (1514 - 50) / 1000 s. */
	CU_ASSERT_EQUAL(rl_bucket_due(&b, 5 * SEC, 0), 1464000000ull);
	CU_ASSERT_EQUAL(rl_bucket_due(&b, 5 * SEC + 1000000000ull, 0), 464000000ull);
	CU_ASSERT_EQUAL(rl_bucket_due(&b, 5 * SEC + 1464000000ull, 0), 0);
	CU_ASSERT_EQUAL(b.credit, 0);
	/* An hour idle fills it to its size, no more. */
	CU_ASSERT_EQUAL(rl_bucket_due(&b, 3605 * SEC, 0), 0);
	CU_ASSERT_EQUAL(b.credit, b.size);
	/* Time going back (it never should) changes nothing. */
	CU_ASSERT_EQUAL(rl_bucket_due(&b, 1 * SEC, 0), 0);
	CU_ASSERT_EQUAL(b.credit, b.size);
}

/* No limit: always ready, never a wait, no timer. */
static void test_unlimited(void)
{
	struct vm_net_limit none = { 0, 0 };
	struct ratelimit rl;

	CU_ASSERT_EQUAL_FATAL(rl_init(&rl, &none, 0, true), 0);
	CU_ASSERT_EQUAL(rl.timer_fd, -1);
	for (int i = 0; i < 100000; i++)
		CU_ASSERT_TRUE_FATAL(rl_ready(&rl, 0));
	rl_charge(&rl, 1ull << 16);
	CU_ASSERT_TRUE(rl_ready(&rl, 0));
	rl_destroy(&rl);
}

/* 2 MiB/s for 10 s of a greedy sender: within one burst and one frame of the rate, never
 * above it; each wait brings back at least 1 ms of the rate (so at most ~1000 waits a
 * second), and each one is counted. */
static void test_long_run_bytes(void)
{
	struct vm_net_limit lim = { 2u << 20, 0 };
	struct ratelimit rl;
	uint64_t now = 7 * SEC, waits, sent, rate = 2u << 20;

	CU_ASSERT_EQUAL_FATAL(rl_init(&rl, &lim, now, false), 0);
	sent = greedy(&rl, &now, 17 * SEC, FRAME, &waits);
	CU_ASSERT(sent <= rate * 10 + rate / 20 + FRAME);
	CU_ASSERT(sent >= rate * 10 - FRAME);
	CU_ASSERT(waits <= 10 * 1000 + 1);
	CU_ASSERT(waits >= 10 * 1000 / 2); /* 1 ms of 2 MiB/s is 1.4 frames: a wait per two */
	CU_ASSERT_EQUAL(rl.throttled, waits);
	/* A later window alone (no burst left): the rate to within a frame. */
	sent = greedy(&rl, &now, 20 * SEC, FRAME, &waits);
	CU_ASSERT(sent <= rate * 3 + FRAME && sent + FRAME >= rate * 3);
}

/* Frames and bytes together: the tighter rules. 1000 frames/s of 64 bytes is far below 1
 * MiB/s; 1000 frames/s of 1514 bytes is above it. */
static void test_both(void)
{
	struct vm_net_limit lim = { 1u << 20, 1000 };
	struct ratelimit rl;
	uint64_t now = 0, waits, sent;

	CU_ASSERT_EQUAL_FATAL(rl_init(&rl, &lim, now, false), 0);
	sent = greedy(&rl, &now, 5 * SEC, 64, &waits);
	CU_ASSERT(sent / 64 <= 5 * 1000 + 50 + 1 && sent / 64 + 1 >= 5 * 1000);
	now += SEC; /* idle: both refill */
	sent = greedy(&rl, &now, now + 5 * SEC, FRAME, &waits);
	CU_ASSERT(sent <= 5 * (1u << 20) + (1u << 20) / 20 + FRAME);
	CU_ASSERT(sent + FRAME >= 5 * (1u << 20));
	CU_ASSERT(sent / FRAME < 5 * 1000);
}

/* A wait is counted once however often the queue looks while it lasts (a guest that keeps
 * notifying), and a new one after the limiter said yes. */
static void test_wait_counted_once(void)
{
	struct vm_net_limit lim = { 0, 10 };
	struct ratelimit rl;

	CU_ASSERT_EQUAL_FATAL(rl_init(&rl, &lim, 0, false), 0);
	CU_ASSERT_TRUE(rl_ready(&rl, 0));
	rl_charge(&rl, 100);
	for (int i = 0; i < 5; i++) {
		CU_ASSERT_FALSE(rl_ready(&rl, 1000));
		rl_wait(&rl);
	}
	CU_ASSERT_EQUAL(rl.throttled, 1);
	/* 0.5 frame of debt (1 frame less the 0.5 of burst) and the quantum (0.01 frame) at 10
	 * frames a second: 51 ms. */
	CU_ASSERT_EQUAL(rl.wake_ns, 51000000ull);
	CU_ASSERT_TRUE(rl_ready(&rl, rl.wake_ns));
	rl_charge(&rl, 100);
	CU_ASSERT_FALSE(rl_ready(&rl, rl.wake_ns));
	rl_wait(&rl);
	CU_ASSERT_EQUAL(rl.throttled, 2);
}

/* The extremes: the largest rate after the longest idle, the smallest rate with the
 * largest frame; nothing overflows (UBSan watches) and the waits stay sane. */
static void test_extremes(void)
{
	struct vm_net_limit big = { RL_MAX_RATE, RL_MAX_RATE }, small = { 1, 1 };
	struct ratelimit rl;

	CU_ASSERT_EQUAL_FATAL(rl_init(&rl, &big, 0, false), 0);
	CU_ASSERT_TRUE(rl_ready(&rl, UINT64_MAX / 2));
	rl_charge(&rl, 65535);
	CU_ASSERT_TRUE(rl_ready(&rl, UINT64_MAX / 2));
	CU_ASSERT_EQUAL_FATAL(rl_init(&rl, &small, 0, false), 0);
	CU_ASSERT_TRUE(rl_ready(&rl, 0));
	rl_charge(&rl, 65535);
	CU_ASSERT_FALSE(rl_ready(&rl, 0));
	CU_ASSERT(rl.wake_ns > 65534 * SEC && rl.wake_ns < 65536 * SEC);
	CU_ASSERT_TRUE(rl_ready(&rl, rl.wake_ns));
}

/* With a limit, a timer: arming it at a past time makes it fire at once. */
static void test_timer(void)
{
	struct vm_net_limit lim = { 1000, 0 };
	struct ratelimit rl;
	uint64_t n;

	CU_ASSERT_EQUAL_FATAL(rl_init(&rl, &lim, 0, true), 0);
	CU_ASSERT_FATAL(rl.timer_fd >= 0);
	rl.wake_ns = 1; /* long past on CLOCK_MONOTONIC */
	rl_wait(&rl);
	for (int i = 0; i < 1000 && read(rl.timer_fd, &n, sizeof(n)) != sizeof(n); i++)
		usleep(1000);
	CU_ASSERT_EQUAL(n, 1);
	rl_timer_ack(&rl); /* nothing left to read: no harm */
	rl_destroy(&rl);
	CU_ASSERT_EQUAL(rl.timer_fd, -1);
}

void suite_ratelimit(void)
{
	static const struct test_case cases[] = {
		{ "a bucket: burst, debt, refill, idle", test_bucket },
		{ "no limit: always ready", test_unlimited },
		{ "a greedy sender gets the rate, never more", test_long_run_bytes },
		{ "frames and bytes: the tighter rules", test_both },
		{ "a wait is counted once", test_wait_counted_once },
		{ "extremes do not overflow", test_extremes },
		{ "the timer fires at the wake time", test_timer },
		{ NULL, NULL },
	};

	test_add_suite("ratelimit", cases);
}
