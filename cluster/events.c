/* events/<ts>-<node>-<seq>: the cluster's log for `cmectl events`, kept about a day by a
 * lease. Posting is best effort: an event that cannot be written is logged locally. */
#include "cluster.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SUB	    "events"
#define EVENT_TTL_S 86400

void cl_event_post(struct etcd *e, const char *prefix, int64_t lease, const char *node,
		   const char *vm, const char *kind, const char *fmt, ...)
{
	static atomic_uint seq;
	struct cl_event ev = { .ts_ms = wall_ms() };
	struct etcd_err err = { "" };
	char key[256], id[64];
	char *val;
	va_list ap;
	int rc = 0;

	snprintf(ev.node, sizeof(ev.node), "%s", node ? node : "");
	snprintf(ev.vm, sizeof(ev.vm), "%s", vm ? vm : "");
	snprintf(ev.kind, sizeof(ev.kind), "%s", kind);
	va_start(ap, fmt);
	vsnprintf(ev.msg, sizeof(ev.msg), fmt, ap);
	va_end(ap);
	log_info(SUB, "%s%s%s: %s", kind, vm ? " vm=" : "", vm ? vm : "", ev.msg);
	/* Time first (keys sort by it); the PID keeps two cmectl runs in the same ms apart. */
	snprintf(id, sizeof(id), "%013llu-%s-%d-%u", (unsigned long long)ev.ts_ms,
		 node ? node : "cmectl", (int)getpid(), atomic_fetch_add(&seq, 1));
	val = cl_event_json(&ev);
	if (!val || !cl_key(key, sizeof(key), prefix, "events", id, NULL)) {
		free(val);
		return;
	}
	if (!lease)
		rc = etcd_lease_grant(e, EVENT_TTL_S, &lease, NULL, &err);
	if (!rc)
		rc = etcd_put(e, key, val, strlen(val), lease, NULL, &err);
	if (rc)
		log_warn(SUB, "event not recorded: %s", err.msg);
	free(val);
}
