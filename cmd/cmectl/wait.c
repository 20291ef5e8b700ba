/* Waiting for the cluster: poll a VM's status record until it says what the operator
 * asked for, and run a watch that gives up after a timeout. */
#include "cmectl.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#define STATUS_POLL_MS 250

int ctl_read_status(struct ctl *c, const char *vm, struct cl_status *st, bool *present,
		    int64_t *mod_rev)
{
	struct etcd_err err = { "" };
	char key[CTL_KEY_MAX];
	struct etcd_kv *kv = NULL;

	memset(st, 0, sizeof(*st));
	*present = false;
	if (etcd_get(c->etcd, ctl_key(c, key, "vms", vm, "status"), &kv, &err))
		return ctl_fail("reading the status of vm %s: %s", vm, err.msg);
	if (kv && !cl_status_parse((const char *)kv->val, kv->vlen, st, &err)) {
		*present = true;
		if (mod_rev)
			*mod_rev = kv->mod_rev;
	}
	etcd_kv_free(kv);
	return CTL_OK;
}

/* 1: reached; 0: not yet; -1: failed (line printed). */
static int judge(const char *vm, enum vm_want want, const struct cl_status *st, bool present,
		 bool fresh)
{
	switch (want) {
	case WANT_RUNNING:
		if (present && !strcmp(st->state, "running"))
			return 1;
		if (present && fresh && !strcmp(st->state, "failed"))
			return ctl_fail("vm %s failed%s%s: %s", vm, st->node[0] ? " on " : "",
					st->node, st->error[0] ? st->error : "no reason given"),
			       -1;
		if (present && fresh && !strcmp(st->state, "pending"))
			return ctl_fail("vm %s is pending: %s", vm,
					st->error[0] ? st->error : "no reason given"),
			       -1;
		return 0;
	case WANT_STOPPED: return !present || !strcmp(st->state, "stopped");
	case WANT_GONE: return !present;
	}
	return 0;
}

static int timed_out(struct ctl *c, const char *vm, enum vm_want want, const struct cl_status *st,
		     bool present)
{
	const char *state = present ? st->state : "no status yet";
	const char *on = present && st->node[0] ? " on " : "";

	switch (want) {
	case WANT_RUNNING:
		return ctl_fail("vm %s is not running after %u s (%s%s%s); it may still start", vm,
				c->timeout_s, state, on, present ? st->node : "");
	case WANT_STOPPED:
		return ctl_fail("vm %s has not stopped after %u s (%s%s%s)", vm, c->timeout_s,
				state, on, st->node);
	case WANT_GONE:
		return ctl_fail("vm %s is deleted, but its VMM%s%s has not stopped after %u s "
				"(status %s)",
				vm, on, st->node, c->timeout_s, state);
	}
	return CTL_FAIL;
}

int ctl_wait_vm(struct ctl *c, const char *vm, enum vm_want want, int64_t after_rev,
		struct cl_status *st)
{
	uint64_t deadline = now_ns() + (uint64_t)c->timeout_s * 1000000000ull;
	struct cl_status cur;
	int64_t rev = 0;
	bool present;
	int r;

	for (;;) {
		if (ctl_read_status(c, vm, &cur, &present, &rev))
			return CTL_FAIL;
		r = judge(vm, want, &cur, present, rev > after_rev);
		if (r < 0)
			return CTL_FAIL;
		if (r > 0)
			break;
		if (now_ns() >= deadline)
			return timed_out(c, vm, want, &cur, present);
		sleep_ms(STATUS_POLL_MS);
	}
	if (st)
		*st = cur;
	return CTL_OK;
}

void ctl_wait_vm_report(const struct ctl *c, const char *vm, enum vm_want want,
			const struct cl_status *st)
{
	static const char *const done[] = { "running", "stopped", "deleted" };

	if (c->json) {
		ctl_out_json(
			json_pack("{s:s, s:s, s:o}", "vm", vm, "result", done[want], "status",
				  st->state[0] ? ctl_out_rec(cl_status_json(st)) : json_null()));
		return;
	}
	if (want == WANT_RUNNING)
		printf("vm %s running on %s (pid %d)\n", vm, ctl_out_dash(st->node), st->pid);
	else
		printf("vm %s %s\n", vm, done[want]);
}

/* ---- a watch with a deadline -------------------------------------------------------- */

struct timer {
	atomic_bool stop, done;
	uint64_t deadline;
};

static void *timer_main(void *arg)
{
	struct timer *t = arg;

	while (!atomic_load(&t->done) && now_ns() < t->deadline)
		sleep_ms(50);
	atomic_store(&t->stop, true);
	return NULL;
}

int ctl_wait_watch(struct ctl *c, const char *key, bool prefix, int64_t rev, etcd_watch_cb cb,
		   void *opaque, unsigned timeout_s, bool *timed_out_p, struct etcd_err *err)
{
	struct timer t = { .deadline = now_ns() + (uint64_t)timeout_s * 1000000000ull };
	pthread_t th;
	bool timer = timeout_s > 0;
	int rc;

	atomic_init(&t.stop, false);
	atomic_init(&t.done, false);
	*timed_out_p = false;
	if (timer && pthread_create(&th, NULL, timer_main, &t))
		return -EAGAIN;
	rc = etcd_watch(c->etcd, key, prefix, rev, cb, opaque, &t.stop, err);
	if (timer) {
		atomic_store(&t.done, true);
		pthread_join(th, NULL);
	}
	if (rc == 0)
		*timed_out_p = true;
	return rc;
}
