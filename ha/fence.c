/* Fencing deadlines: until when a node may run guests, from its lease or, while etcd is
 * unreachable for a majority of nodes, from its peers' confirmations. The reasoning is in
 * ha.h above ha_fence_cfg. */
#include "ha.h"

#include <errno.h>
#include <stdio.h>

#define NS_PER_MS  1000000ull
#define PPM	   1000000ull
#define DAY_MS	   (24ull * 3600 * 1000)
#define MIN_WINDOW (100 * NS_PER_MS)
#define MAX_DRIFT  100000u
#define MAX_PEERS  256

uint64_t ha_fence_window_ns(const struct ha_fence_cfg *cfg)
{
	unsigned __int128 ttl = (unsigned __int128)cfg->ttl_ms * NS_PER_MS;
	uint64_t margin = cfg->margin_ms * NS_PER_MS, scaled;

	if (cfg->drift_ppm >= PPM || cfg->ttl_ms > DAY_MS || cfg->margin_ms > DAY_MS)
		return 0;
	/* Rounded down: the window may only come out shorter than the exact one. */
	scaled = (uint64_t)(ttl * (PPM - cfg->drift_ppm) / (PPM + cfg->drift_ppm));
	return scaled > margin ? scaled - margin : 0;
}

int ha_fence_check(const struct ha_fence_cfg *cfg, char *why, size_t whylen)
{
	const char *bad = NULL;

	if (cfg->ttl_ms > DAY_MS)
		bad = "a lease TTL over one day";
	else if (cfg->drift_ppm > MAX_DRIFT)
		bad = "a clock drift over 100000 ppm (10%)";
	else if (ha_fence_window_ns(cfg) < MIN_WINDOW)
		bad = "no window: the margin (and drift) leave under 100 ms of the lease TTL";
	if (why && whylen)
		snprintf(why, whylen, "%s", bad ? bad : "");
	return bad ? -EINVAL : 0;
}

uint64_t ha_fence_deadline(const struct ha_fence_cfg *cfg, uint64_t sent_ns)
{
	return sent_ns + ha_fence_window_ns(cfg);
}

/* The k-th latest (1-based) of the non-zero times in t[0..n), or 0 when fewer than k. */
static uint64_t kth_latest(const uint64_t *t, size_t n, size_t k)
{
	uint64_t below = UINT64_MAX, found = 0;

	/* k passes of "the latest time below the previous one", counting repeats: n is small. */
	for (size_t seen = 0; seen < k;) {
		size_t same = 0;

		found = 0;
		for (size_t i = 0; i < n; i++)
			if (t[i] && t[i] < below && t[i] > found)
				found = t[i];
		if (!found)
			return 0;
		for (size_t i = 0; i < n; i++)
			same += t[i] == found;
		seen += same;
		below = found;
	}
	return found;
}

uint64_t ha_fence_quorum_deadline(const struct ha_fence_cfg *cfg, unsigned nodes,
				  const uint64_t *confirmed, size_t npeers)
{
	size_t need = nodes / 2; /* peers besides this node for a majority of nodes */
	uint64_t t;

	if (nodes < 2 || npeers > MAX_PEERS || npeers + 1 < nodes / 2 + 1)
		return 0;
	t = kth_latest(confirmed, npeers, need);
	return t ? ha_fence_deadline(cfg, t) : 0;
}
