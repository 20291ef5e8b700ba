/* The daemon's state that its files share: the lease it holds, the main loop's wake-up, and
 * when a migration phase was first seen here. Below every other file of clusterd. */
#include "cd_priv.h"

#include <stdio.h>
#include <string.h>

void cd_wake(struct cd *cd)
{
	pthread_mutex_lock(&cd->mu);
	cd->wake = true;
	pthread_cond_signal(&cd->cond);
	pthread_mutex_unlock(&cd->mu);
}

int64_t cd_lease(struct cd *cd)
{
	return atomic_load(&cd->lease);
}

uint64_t cd_seen_ms(struct cd *cd, const char *id, const char *phase)
{
	uint64_t now = now_ns();
	size_t oldest = 0;
	char key[64];

	snprintf(key, sizeof(key), "%s/%s", id, phase);
	for (size_t i = 0; i < ARRAY_SIZE(cd->seen); i++) {
		if (!strcmp(cd->seen[i].key, key)) {
			cd->seen[i].last_ns = now;
			return (now - cd->seen[i].first_ns) / 1000000;
		}
		if (cd->seen[i].last_ns < cd->seen[oldest].last_ns)
			oldest = i;
	}
	snprintf(cd->seen[oldest].key, sizeof(cd->seen[oldest].key), "%s", key);
	cd->seen[oldest].first_ns = cd->seen[oldest].last_ns = now;
	return 0;
}
