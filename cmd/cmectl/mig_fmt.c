/* How cmectl words a migration: its progress while it streams, its summary when done. */
#include "cmectl.h"

#include <inttypes.h>
#include <string.h>

#define MIB (1024.0 * 1024.0)

double ctl_mig_stat(const struct cl_migration *m, const char *field)
{
	json_t *o = m->stats[0] ? json_loads(m->stats, 0, NULL) : NULL;
	json_t *v = json_object_get(o, field);
	double d = json_is_number(v) ? json_number_value(v) : 0;

	json_decref(o);
	return d;
}

/* stats.downtime.postcopy.<field>, 0 when the migration had no post-copy */
static double postcopy_stat(const struct cl_migration *m, const char *field)
{
	json_t *o = m->stats[0] ? json_loads(m->stats, 0, NULL) : NULL;
	json_t *v =
		json_object_get(json_object_get(json_object_get(o, "downtime"), "postcopy"), field);
	double d = json_is_number(v) ? json_number_value(v) : 0;

	json_decref(o);
	return d;
}

void ctl_mig_summary(const struct cl_migration *m, char *buf, size_t len)
{
	int n = snprintf(buf, len,
			 "total %.0f ms (cluster %" PRIu64 " ms), downtime %.0f ms, %.0f rounds, "
			 "%.1f MiB at %.1f Mbit/s",
			 ctl_mig_stat(m, "total_ms"), m->cluster_ms, ctl_mig_stat(m, "downtime_ms"),
			 ctl_mig_stat(m, "rounds"), ctl_mig_stat(m, "bytes") / MIB,
			 ctl_mig_stat(m, "throughput_mbps"));

	if (n > 0 && (size_t)n < len && postcopy_stat(m, "pages") > 0)
		snprintf(buf + n, len - (size_t)n,
			 ", post-copy %.0f pages (%.0f asked for) in %.0f ms",
			 postcopy_stat(m, "pages"), postcopy_stat(m, "requested"),
			 postcopy_stat(m, "ms"));
}

void ctl_mig_progress(const struct cl_migration *m, char *buf, size_t len)
{
	if (!m->round && !m->bytes_sent) {
		snprintf(buf, len, "phase %s", m->phase);
		return;
	}
	snprintf(buf, len,
		 "round %u  sent %.1f MiB  left %" PRIu64 " pages  rate %.1f Mbit/s  phase %s",
		 m->round, (double)m->bytes_sent / MIB, m->pages_left, m->rate_mbps, m->phase);
}
