/* ha/fence.c: the fencing window and deadlines, its safety against clock drift, and the
 * deadline a majority of peers' confirmations gives during an etcd outage. */
#include <errno.h>
#include <string.h>

#include "common.h"
#include "ha.h"
#include "harness.h"
#include "unit.h"

#define MS 1000000ull

static void test_window(void)
{
	struct ha_fence_cfg c = { .ttl_ms = 5000, .margin_ms = 500, .drift_ppm = 0 };

	CU_ASSERT_EQUAL(ha_fence_window_ns(&c), 4500 * MS);
	c.drift_ppm = 1000; /* 5 s * 999000 / 1001000, rounded down, less the margin */
	CU_ASSERT_EQUAL(ha_fence_window_ns(&c), 4990009990ull - 500 * MS);
	CU_ASSERT_EQUAL(ha_fence_deadline(&c, 7 * MS), 7 * MS + ha_fence_window_ns(&c));
	c.margin_ms = 5000; /* nothing left */
	CU_ASSERT_EQUAL(ha_fence_window_ns(&c), 0);
}

/* Whatever the clocks do within drift_ppm, a host that stops its guests at the deadline
 * of its own clock does so at least margin before etcd's earliest possible expiry. */
static void test_window_is_safe(void)
{
	static const uint64_t ttls[] = { 2000, 3000, 5000, 10000, 60000 };
	static const uint64_t margins[] = { 100, 500, 1000 };
	static const uint32_t drifts[] = { 0, 50, 500, 5000, 100000 };
	unsigned checked = 0;

	for (size_t t = 0; t < ARRAY_SIZE(ttls); t++)
		for (size_t m = 0; m < ARRAY_SIZE(margins); m++)
			for (size_t d = 0; d < ARRAY_SIZE(drifts); d++) {
				struct ha_fence_cfg c = { ttls[t], margins[m], drifts[d] };
				long double rho = drifts[d] / 1e6L;
				long double w = (long double)ha_fence_window_ns(&c);
				/* This clock slow by rho; etcd's fast by rho. */
				long double stop_real = w / (1 - rho);
				long double expiry = (long double)ttls[t] * MS / (1 + rho);

				if (w == 0)
					continue;
				CU_ASSERT(stop_real + (long double)margins[m] * MS <= expiry + 1);
				checked++;
			}
	CU_ASSERT(checked > 60);
}

static void test_check(void)
{
	struct ha_fence_cfg c = { .ttl_ms = 3000, .margin_ms = 500, .drift_ppm = 500 };
	char why[128] = "x";

	CU_ASSERT_EQUAL(ha_fence_check(&c, why, sizeof(why)), 0);
	CU_ASSERT_STRING_EQUAL(why, "");
	c.margin_ms = 2950;
	CU_ASSERT_EQUAL(ha_fence_check(&c, why, sizeof(why)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "no window"));
	c.margin_ms = 500;
	c.drift_ppm = 200000;
	CU_ASSERT_EQUAL(ha_fence_check(&c, why, sizeof(why)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "clock drift"));
	c.drift_ppm = 0;
	c.ttl_ms = 2ull * 24 * 3600 * 1000;
	CU_ASSERT_EQUAL(ha_fence_check(&c, NULL, 0), -EINVAL);
}

static void test_quorum(void)
{
	struct ha_fence_cfg c = { .ttl_ms = 3000, .margin_ms = 500, .drift_ppm = 0 };
	uint64_t w = ha_fence_window_ns(&c);
	const uint64_t none[2] = { 0, 0 }, one[2] = { 7 * MS, 0 }, both[2] = { 10 * MS, 30 * MS };
	const uint64_t five[4] = { 10 * MS, 30 * MS, 0, 20 * MS },
		       tie[4] = { 30 * MS, 30 * MS, 0, 0 };
	const uint64_t alone[4] = { 30 * MS, 0, 0, 0 };

	/* Three nodes: this one and one peer are a majority. */
	CU_ASSERT_EQUAL(ha_fence_quorum_deadline(&c, 3, none, 2), 0);
	CU_ASSERT_EQUAL(ha_fence_quorum_deadline(&c, 3, one, 2), 7 * MS + w);
	CU_ASSERT_EQUAL(ha_fence_quorum_deadline(&c, 3, both, 2), 30 * MS + w);
	/* Five nodes: two peers needed; the second latest confirmation counts. */
	CU_ASSERT_EQUAL(ha_fence_quorum_deadline(&c, 5, five, 4), 20 * MS + w);
	CU_ASSERT_EQUAL(ha_fence_quorum_deadline(&c, 5, tie, 4), 30 * MS + w);
	CU_ASSERT_EQUAL(ha_fence_quorum_deadline(&c, 5, alone, 4), 0);
	/* Two nodes: the one peer; a lone node has no peers to ask. */
	CU_ASSERT_EQUAL(ha_fence_quorum_deadline(&c, 2, one, 1), 7 * MS + w);
	CU_ASSERT_EQUAL(ha_fence_quorum_deadline(&c, 1, one, 0), 0);
	/* Seven nodes but two peers known: never a majority. */
	CU_ASSERT_EQUAL(ha_fence_quorum_deadline(&c, 7, both, 2), 0);
}

void suite_fence(void)
{
	static const struct test_case cases[] = {
		{ "fencing window: TTL, drift and margin", test_window },
		{ "fencing window stops guests before any possible expiry", test_window_is_safe },
		{ "fencing settings refused with a reason", test_check },
		{ "a majority of peers' confirmations extends the deadline", test_quorum },
		{ NULL, NULL },
	};
	test_add_suite("fence", cases);
}
