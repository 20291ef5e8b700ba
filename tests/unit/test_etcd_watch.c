/* The etcd client's watch against a real etcd: resume after a broken stream, resync after
 * a compaction or an oversized response, paging of the re-read; and its stream reader alone
 * (etcd's answers as bytes): never out of revision order. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "etcd.h"
#include "etcd_priv.h"
#include "etcd_proc.h"
#include "etcd_test.h"
#include "harness.h"
#include "unit.h"

/* ---- watch -------------------------------------------------------------------------- */

static void rec_apply(struct rec *r, const struct etcd_event *ev)
{
	int i;

	if (ev->type == ETCD_EV_RESET)
		r->nstate = 0;
	if (ev->type != ETCD_EV_PUT && ev->type != ETCD_EV_DELETE)
		return;
	for (i = 0; i < r->nstate && strcmp(r->state[i][0], ev->kv->key); i++)
		;
	if (ev->type == ETCD_EV_DELETE) {
		if (i < r->nstate)
			memcpy(r->state[i], r->state[--r->nstate], sizeof(r->state[i]));
		return;
	}
	if (i == r->nstate && r->nstate == 8)
		return; /* the state keeps 8 keys: the tests that look at it have fewer */
	if (i == r->nstate)
		r->nstate++;
	snprintf(r->state[i][0], 32, "%s", ev->kv->key);
	snprintf(r->state[i][1], 32, "%s", (const char *)ev->kv->val);
}

static int rec_cb(void *opaque, const struct etcd_event *ev)
{
	struct rec *r = opaque;

	pthread_mutex_lock(&r->lock);
	if (r->n < REC_MAX) {
		r->ev[r->n].type = ev->type;
		snprintf(r->ev[r->n].key, 32, "%s", ev->kv ? ev->kv->key : "");
		snprintf(r->ev[r->n].val, 32, "%s", ev->kv ? (const char *)ev->kv->val : "");
		r->ev[r->n].rev = ev->rev;
		r->ev[r->n].resync = ev->resync;
		r->n++;
	}
	r->changes += ev->type == ETCD_EV_PUT || ev->type == ETCD_EV_DELETE;
	rec_apply(r, ev);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static int rec_changes(struct rec *r)
{
	int n;

	pthread_mutex_lock(&r->lock);
	n = r->changes;
	pthread_mutex_unlock(&r->lock);
	return n;
}

bool rec_wait(struct rec *r, int changes, int timeout_ms)
{
	uint64_t t0 = now_ns();

	while (rec_changes(r) < changes && ms_since(t0) < (uint64_t)timeout_ms)
		sleep_ms(20);
	return rec_changes(r) >= changes;
}

/* The state's value of key, "" when absent (call with the watcher stopped). */
static const char *rec_value(struct rec *r, const char *key)
{
	for (int i = 0; i < r->nstate; i++)
		if (!strcmp(r->state[i][0], key))
			return r->state[i][1];
	return "";
}

void *watch_main(void *opaque)
{
	struct watcher *w = opaque;

	w->rc = etcd_watch(w->c, w->prefix, true, w->start, rec_cb, &w->rec, &w->stop, NULL);
	return NULL;
}

/* Watch prefix from the revision after the current one. */
void watcher_start(struct watcher *w, struct etcd *c, const char *prefix)
{
	struct etcd_kvs kvs;

	memset(w, 0, sizeof(*w));
	pthread_mutex_init(&w->rec.lock, NULL);
	w->c = c;
	w->prefix = prefix;
	CU_ASSERT_EQUAL_FATAL(etcd_range(c,
					 &(struct etcd_range_req){ .key = prefix, .prefix = true },
					 &kvs, NULL),
			      0);
	w->start = kvs.header_rev + 1;
	etcd_kvs_free(&kvs);
	atomic_store(&w->stop, false);
	CU_ASSERT_FATAL(pthread_create(&w->th, NULL, watch_main, w) == 0);
}

/* Stop the watcher; it must return 0 within a second. */
void watcher_stop(struct watcher *w)
{
	uint64_t t0 = now_ns();

	atomic_store(&w->stop, true);
	pthread_join(w->th, NULL);
	CU_ASSERT_TRUE(ms_since(t0) < 1000);
	CU_ASSERT_EQUAL(w->rc, 0);
}

static void test_etcd_watch_resume(void)
{
	struct etcd_proc p;
	struct etcd *c;
	struct watcher w;
	int k = 0;

	ETCD_SETUP(&p, c, 2000);
	watcher_start(&w, c, "/w/");
	put_s(c, "/w/k1", "v1", 0);
	CU_ASSERT(rec_wait(&w.rec, 1, 5000));
	etcd_proc_kill(&p); /* SIGKILL: the stream breaks mid-watch */
	CU_ASSERT_EQUAL(etcd_proc_restart(&p), 0);
	put_s(c, "/w/k2", "v2", 0);
	CU_ASSERT(rec_wait(&w.rec, 2, 10000));
	sleep_ms(1500); /* room for a duplicate to show up, progress notifications too */
	watcher_stop(&w);

	CU_ASSERT_EQUAL(w.rec.changes, 2);
	for (int i = 0; i < w.rec.n; i++) {
		if (w.rec.ev[i].type == ETCD_EV_PROGRESS)
			continue;
		CU_ASSERT_EQUAL(w.rec.ev[i].type, ETCD_EV_PUT);
		CU_ASSERT_STRING_EQUAL(w.rec.ev[i].key, k == 0 ? "/w/k1" : "/w/k2");
		CU_ASSERT_FALSE(w.rec.ev[i].resync);
		k++;
	}
	CU_ASSERT_EQUAL(k, 2);
	etcd_close(c);
	etcd_proc_stop(&p);
}

/* While the watcher is cut off, etcd runs on another port where history is rewritten and
 * compacted; back on its port, the watcher must resync to the current contents. */
static void test_etcd_watch_compacted(void)
{
	struct etcd_proc p;
	struct etcd *c, *c2;
	struct watcher w;
	bool reset = false, resync_put = false, resync_done = false;
	int port, after;
	int64_t rev;

	ETCD_SETUP(&p, c, 2000);
	watcher_start(&w, c, "/c/");
	put_s(c, "/c/a", "1", 0);
	put_s(c, "/c/d", "1", 0);
	CU_ASSERT(rec_wait(&w.rec, 2, 5000));

	etcd_proc_kill(&p);
	port = p.client_port;
	p.client_port = test_free_port();
	CU_ASSERT_EQUAL_FATAL(etcd_proc_restart(&p), 0);
	CU_ASSERT_EQUAL_FATAL(client_open(&c2, p.url, 2000, NULL), 0);
	put_s(c2, "/c/a", "2", 0);
	put_s(c2, "/c/b", "1", 0);
	CU_ASSERT_EQUAL(etcd_delete(c2, "/c/d", false, NULL, NULL), 0);
	rev = put_s(c2, "/c/a", "3", 0);
	CU_ASSERT_EQUAL(etcd_compact(c2, rev, true, NULL), 0);
	etcd_close(c2);
	etcd_proc_stop(&p);
	p.client_port = port;
	CU_ASSERT_EQUAL_FATAL(etcd_proc_restart(&p), 0);

	CU_ASSERT(rec_wait(&w.rec, 4, 10000)); /* 2 before + the resync of a and b */
	put_s(c, "/c/b", "2", 0);
	CU_ASSERT(rec_wait(&w.rec, 5, 5000));
	watcher_stop(&w);

	for (int i = 0; i < w.rec.n; i++) {
		reset |= w.rec.ev[i].type == ETCD_EV_RESET;
		resync_put |= reset && w.rec.ev[i].type == ETCD_EV_PUT && w.rec.ev[i].resync;
		resync_done |= resync_put && w.rec.ev[i].type == ETCD_EV_PROGRESS &&
			       w.rec.ev[i].resync && w.rec.ev[i].rev == rev;
	}
	CU_ASSERT_TRUE(reset && resync_put && resync_done);
	after = w.rec.n - 1;
	CU_ASSERT_TRUE(after >= 0 && w.rec.ev[after].type == ETCD_EV_PUT &&
		       !w.rec.ev[after].resync);
	CU_ASSERT_EQUAL(w.rec.nstate, 2);
	CU_ASSERT_STRING_EQUAL(rec_value(&w.rec, "/c/a"), "3");
	CU_ASSERT_STRING_EQUAL(rec_value(&w.rec, "/c/b"), "2");
	etcd_close(c);
	etcd_proc_stop(&p);
}

/* The changes a watcher has to catch up on come in one response over its line limit
 * (lowered here to 16 KiB; 64 MiB in production): reconnecting at the same revision would
 * only get the same response again, for ever. It re-reads the current contents instead,
 * and then follows the changes after them. */
static void test_etcd_watch_oversized(void)
{
	static char big[4096];
	char keys[20][16];
	struct etcd_op ops[20];
	struct etcd_txn t = { NULL, 0, ops, 20, NULL, 0 };
	struct etcd_txn_resp r = { 0 };
	struct etcd_proc p;
	struct etcd *c;
	struct watcher w;
	bool reset = false;
	int resynced = 0, last;

	ETCD_SETUP(&p, c, 2000);
	memset(big, 'v', sizeof(big) - 1);
	/* The watcher starts behind one transaction of 20 keys of 4 KiB each: ~110 KiB in
	 * one response (one revision). */
	memset(&w, 0, sizeof(w));
	pthread_mutex_init(&w.rec.lock, NULL);
	w.c = c;
	w.prefix = "/o/";
	w.start = put_s(c, "/o/first", "1", 0) + 1;
	for (int i = 0; i < 20; i++) {
		snprintf(keys[i], sizeof(keys[i]), "/o/k%02d", i);
		ops[i] = (struct etcd_op){
			.type = ETCD_OP_PUT, .key = keys[i], .val = big, .vlen = strlen(big)
		};
	}
	CU_ASSERT_EQUAL_FATAL(etcd_txn(c, &t, &r, NULL), 0);
	etcd_txn_resp_free(&r);
	c->watch_line_max = 16384;
	CU_ASSERT_FATAL(pthread_create(&w.th, NULL, watch_main, &w) == 0);
	CU_ASSERT(rec_wait(&w.rec, 21, 10000)); /* /o/first and the 20, re-read */
	put_s(c, "/o/after", "2", 0);
	CU_ASSERT(rec_wait(&w.rec, 22, 5000));
	watcher_stop(&w);

	for (int i = 0; i < w.rec.n; i++) {
		reset |= w.rec.ev[i].type == ETCD_EV_RESET;
		resynced += reset && w.rec.ev[i].type == ETCD_EV_PUT && w.rec.ev[i].resync;
	}
	CU_ASSERT_TRUE(reset);
	CU_ASSERT_EQUAL(resynced, 21);
	last = w.rec.n - 1;
	CU_ASSERT_TRUE(last >= 0 && w.rec.ev[last].type == ETCD_EV_PUT && !w.rec.ev[last].resync &&
		       !strcmp(w.rec.ev[last].key, "/o/after"));
	etcd_close(c);
	etcd_proc_stop(&p);
}

/* Re-reading after a compaction goes in pages of 1000 keys, each starting right after the
 * last key read. A key holding a NUL byte (written by hand: our own keys never do) that
 * ends a page must be passed whole: cut at its NUL, the next page started before it and
 * delivered it twice. */
static void test_etcd_resync_nul_key(void)
{
	static const char nul_key[] = "/z/a999\0x";
	char keys[111][16];
	struct etcd_op ops[111];
	struct etcd_txn t = { NULL, 0, ops, 111, NULL, 0 };
	struct etcd_txn_resp r = { 0 };
	json_t *body, *reply = NULL;
	struct etcd_proc p;
	struct etcd *c;
	struct watcher w;
	int64_t rev;

	ETCD_SETUP(&p, c, 5000);
	for (int b = 0; b < 9; b++) { /* /z/a000 ... /z/a998 */
		for (int i = 0; i < 111; i++) {
			snprintf(keys[i], sizeof(keys[i]), "/z/a%03d", b * 111 + i);
			ops[i] = (struct etcd_op){
				.type = ETCD_OP_PUT, .key = keys[i], .val = "1", .vlen = 1
			};
		}
		CU_ASSERT_EQUAL_FATAL(etcd_txn(c, &t, &r, NULL), 0);
		etcd_txn_resp_free(&r);
	}
	body = json_pack("{s:o,s:o}", "key", etcd_json_b64(nul_key, sizeof(nul_key) - 1), "value",
			 etcd_json_b64("1", 1));
	CU_ASSERT_EQUAL_FATAL(etcd_call(c, "/v3/kv/put", body, &reply, NULL), 0);
	json_decref(body);
	json_decref(reply);
	rev = put_s(c, "/z/b", "1", 0);
	CU_ASSERT_EQUAL_FATAL(etcd_compact(c, rev, true, NULL), 0);

	memset(&w, 0, sizeof(w));
	pthread_mutex_init(&w.rec.lock, NULL);
	w.c = c;
	w.prefix = "/z/";
	w.start = 2; /* compacted: the watcher re-reads the 1001 keys */
	CU_ASSERT_FATAL(pthread_create(&w.th, NULL, watch_main, &w) == 0);
	CU_ASSERT(rec_wait(&w.rec, 1001, 20000));
	put_s(c, "/z/c", "1", 0);
	CU_ASSERT(rec_wait(&w.rec, 1002, 5000));
	watcher_stop(&w);
	CU_ASSERT_EQUAL(w.rec.changes, 1002); /* each key once, then /z/c */
	etcd_close(c);
	etcd_proc_stop(&p);
}

/* ---- the watch's stream reader alone (no etcd: its answers as bytes) ------------------ */

struct got {
	unsigned n;
	int64_t rev[8];
	int type[8];
};

static int got_event(void *opaque, const struct etcd_event *ev)
{
	struct got *g = opaque;

	if (g->n < 8) {
		g->rev[g->n] = ev->rev;
		g->type[g->n] = (int)ev->type;
	}
	g->n++;
	return 0;
}

#define KV(key, rev)                                                                               \
	"{\"kv\":{\"key\":\"" key "\",\"value\":\"MQ==\",\"mod_revision\":\"" rev "\"}}"
#define RESULT(rev, events)                                                                        \
	"{\"result\":{\"header\":{\"revision\":\"" rev "\"},\"events\":[" events "]}}\n"

/* Events come in revision order, a txn's several at one revision: an event older than one
 * delivered (or than a progress notification) on the same connection is never delivered;
 * the connection is given up and resumes after the last one delivered. A stream cut at
 * any byte delivers the same. */
static void test_etcd_watch_order(void)
{
	static const char created[] =
		"{\"result\":{\"header\":{\"revision\":\"4\"},\"created\":true}}\n";
	static const char txn[] = RESULT("8", KV("YQ==", "8") "," KV("Yg==", "8"));
	static const char late[] = RESULT("9", KV("Yw==", "7"));
	static const char progress[] = "{\"result\":{\"header\":{\"revision\":\"9\"}}}\n";
	static const char at9[] = RESULT("10", KV("ZA==", "9"));
	char buf[1024];
	struct got g = { 0 };
	int64_t next;

	snprintf(buf, sizeof(buf), "%s%s%s", created, txn, late);
	for (size_t chunk = 1; chunk <= strlen(buf); chunk += 7) {
		memset(&g, 0, sizeof(g));
		CU_ASSERT_EQUAL(etcd_watch_read(buf, strlen(buf), chunk, 0, got_event, &g, &next),
				4);	 /* lost: reconnect */
		CU_ASSERT_EQUAL(g.n, 2); /* both of the txn's, not the late one */
		CU_ASSERT(g.rev[0] == 8 && g.rev[1] == 8);
		CU_ASSERT_EQUAL(next, 9);
	}
	/* A progress notification at 9, then a change at 9: out of order too. */
	snprintf(buf, sizeof(buf), "%s%s%s%s", created, txn, progress, at9);
	memset(&g, 0, sizeof(g));
	CU_ASSERT_EQUAL(etcd_watch_read(buf, strlen(buf), 5, 0, got_event, &g, &next), 4);
	CU_ASSERT_EQUAL(g.n, 3);
	CU_ASSERT_EQUAL(g.type[2], ETCD_EV_PROGRESS);
	CU_ASSERT_EQUAL(g.rev[2], 9);
	CU_ASSERT_EQUAL(next, 10);
	/* A member behind the one before it: its progress notification older than where the
	 * watch resumed is not passed on. */
	snprintf(buf, sizeof(buf), "%s", progress);
	memset(&g, 0, sizeof(g));
	CU_ASSERT_EQUAL(etcd_watch_read(buf, strlen(buf), 4, 12, got_event, &g, &next), 0);
	CU_ASSERT_EQUAL(g.n, 0);
	CU_ASSERT_EQUAL(next, 12);
	/* In order it all goes through, and the connection stays up. */
	snprintf(buf, sizeof(buf), "%s%s%s", created, txn, RESULT("9", KV("Yw==", "9")));
	memset(&g, 0, sizeof(g));
	CU_ASSERT_EQUAL(etcd_watch_read(buf, strlen(buf), 3, 0, got_event, &g, &next), 0);
	CU_ASSERT(g.n == 3 && g.rev[2] == 9);
	CU_ASSERT_EQUAL(next, 10);
}

void suite_etcd_watch(void)
{
	static const struct test_case cases[] = {
		{ "etcd_watch_resume", test_etcd_watch_resume },
		{ "etcd_watch_compacted", test_etcd_watch_compacted },
		{ "etcd_watch_oversized", test_etcd_watch_oversized },
		{ "etcd_resync_nul_key", test_etcd_resync_nul_key },
		{ "etcd_watch_order: never out of revision order", test_etcd_watch_order },
		{ NULL, NULL },
	};

	test_add_suite("etcd_watch", cases);
}
