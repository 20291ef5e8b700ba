/* cmectl events: the cluster's event log (events/<ts>-<node>-<seq>, sorted by key, which
 * is by time), the last N of it, and with -f what comes next. */
#include "cmectl.h"

#include <stdlib.h>
#include <string.h>

#define PAGE	  1000
#define DEFAULT_N 50
#define EVENT_FMT "%-24s  %-12s  %-16s  %-16s  %s\n"

struct evlist {
	struct ctl *c;
	const char *vm; /* filter, NULL: all */
	struct cl_event *ev;
	size_t n, cap;
	char last_key[CTL_KEY_MAX]; /* newest key printed (-f skips older resync copies) */
};

static bool wanted(const struct evlist *l, const struct cl_event *ev)
{
	return !l->vm || !strcmp(l->vm, ev->vm);
}

static void print_event(const struct ctl *c, const struct cl_event *ev)
{
	char tb[32];

	if (c->json) {
		ctl_out_json_line(ctl_out_rec(cl_event_json(ev)));
		return;
	}
	printf(EVENT_FMT, ctl_out_time(ev->ts_ms, tb), ctl_out_dash(ev->node), ctl_out_dash(ev->vm),
	       ev->kind, ev->msg);
	fflush(stdout);
}

/* Keep one event (malformed ones are skipped). */
static int keep(struct evlist *l, const struct etcd_kv *kv)
{
	struct etcd_err err = { "" };
	struct cl_event ev;

	if (cl_event_parse((const char *)kv->val, kv->vlen, &ev, &err) || !wanted(l, &ev))
		return CTL_OK;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 256;
		struct cl_event *n = realloc(l->ev, cap * sizeof(*n));

		if (!n)
			return ctl_fail("out of memory");
		l->ev = n;
		l->cap = cap;
	}
	l->ev[l->n++] = ev;
	return CTL_OK;
}

/* Read every event (in pages, all at one revision) into l; *rev gets that revision. */
static int read_events(struct evlist *l, int64_t *rev)
{
	char key[CTL_KEY_MAX], end[CTL_KEY_MAX], from[CTL_KEY_MAX + 2];
	struct etcd_err err = { "" };
	bool more = true;
	int rc = CTL_OK;

	ctl_key(l->c, key, "events", "", NULL); /* "<prefix>/events/" */
	snprintf(end, sizeof(end), "%s", key);
	end[strlen(end) - 1]++;
	snprintf(from, sizeof(from), "%s", key);
	*rev = 0;
	while (more && !rc) {
		struct etcd_range_req req = {
			.key = from, .range_end = end, .revision = *rev, .limit = PAGE
		};
		struct etcd_kvs kvs = { 0 };

		if (etcd_range(l->c->etcd, &req, &kvs, &err))
			return ctl_fail("reading events: %s", err.msg);
		if (!*rev)
			*rev = kvs.header_rev;
		for (size_t i = 0; i < kvs.n && !rc; i++)
			rc = keep(l, &kvs.kv[i]);
		more = kvs.more && kvs.n;
		if (more)
			snprintf(from, sizeof(from), "%s\x01", kvs.kv[kvs.n - 1].key);
		if (kvs.n)
			snprintf(l->last_key, sizeof(l->last_key), "%s", kvs.kv[kvs.n - 1].key);
		etcd_kvs_free(&kvs);
	}
	return rc;
}

static int on_event(void *opaque, const struct etcd_event *ev)
{
	struct evlist *l = opaque;
	struct etcd_err err = { "" };
	struct cl_event e;

	if (ev->type != ETCD_EV_PUT)
		return 0;
	/* After a compaction the watch replays what exists: skip what was printed. */
	if (ev->resync && strcmp(ev->kv->key, l->last_key) <= 0)
		return 0;
	if (strcmp(ev->kv->key, l->last_key) > 0)
		snprintf(l->last_key, sizeof(l->last_key), "%s", ev->kv->key);
	if (!cl_event_parse((const char *)ev->kv->val, ev->kv->vlen, &e, &err) && wanted(l, &e))
		print_event(l->c, &e);
	return 0;
}

static int follow(struct evlist *l, int64_t rev)
{
	char key[CTL_KEY_MAX];
	struct etcd_err err = { "" };
	bool timed_out;
	int rc;

	ctl_key(l->c, key, "events", "", NULL);
	rc = ctl_wait_watch(l->c, key, true, rev + 1, on_event, l, 0, &timed_out, &err);
	return rc ? ctl_fail("following events: %s", err.msg) : CTL_OK;
}

int ctl_cmd_events(struct ctl *c, int argc, char **argv)
{
	const char *count = NULL;
	bool follow_on = false;
	struct evlist l = { .c = c };
	const struct flag flags[] = { { "--vm", NULL, FL_STR, NULL, &l.vm },
				      { "-n", NULL, FL_STR, NULL, &count },
				      { "--follow", "-f", FL_BOOL, &follow_on, NULL },
				      { 0 } };
	uint64_t n = DEFAULT_N;
	int64_t rev = 0;
	int rc = ctl_args_parse(c, "events", argc, argv, flags, NULL, NULL);

	if (rc || (count && (rc = ctl_args_uint("events", "-n", count, 0, 1000000, &n))))
		return rc;
	if ((rc = ctl_connect(c)) || (rc = read_events(&l, &rev)))
		goto out;
	if (!c->json)
		printf(EVENT_FMT, "TIME", "NODE", "VM", "KIND", "MESSAGE");
	for (size_t i = l.n > n ? l.n - n : 0; i < l.n; i++)
		print_event(c, &l.ev[i]);
	if (follow_on)
		rc = follow(&l, rev);
out:
	free(l.ev);
	return rc;
}
