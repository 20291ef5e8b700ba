/* What the etcd client's unit tests share: a real etcd per test, a client on it. */
#ifndef CME_UNIT_ETCD_TEST_H
#define CME_UNIT_ETCD_TEST_H

#include "etcd.h"
#include "etcd_proc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Start etcd and open a client on it, or fail the test naming the call. */
#define ETCD_SETUP(proc, cli, tmo)                                                                 \
	do {                                                                                       \
		struct etcd_err e_;                                                                \
		CU_ASSERT_FATAL(etcd_proc_start(proc) == 0);                                       \
		if (client_open(&(cli), (proc)->url, (tmo), &e_)) {                                \
			etcd_proc_stop(proc);                                                      \
			CU_FAIL_FATAL("etcd_open");                                                \
		}                                                                                  \
	} while (0)

int client_open(struct etcd **c, const char *endpoints, int tmo, struct etcd_err *err);
uint64_t ms_since(uint64_t t0_ns);
/* Put a string value; fails the test naming the key. The revision written. */
int64_t put_s(struct etcd *c, const char *key, const char *val, int64_t lease);

/* ---- a watcher and its record (test_etcd_watch.c) ---- */
#define REC_MAX 64

/* What the watcher delivered, and the state a client would rebuild from it. */
struct rec {
	pthread_mutex_t lock;
	struct {
		enum etcd_event_type type;
		char key[32], val[32];
		int64_t rev;
		bool resync;
	} ev[REC_MAX];
	int n, changes; /* all events; PUT/DELETE only */
	char state[8][2][32];
	int nstate;
};

struct watcher {
	pthread_t th;
	struct etcd *c;
	const char *prefix;
	int64_t start;
	atomic_bool stop;
	struct rec rec;
	int rc;
};

/* Wait until r has seen that many PUT/DELETE events, at most timeout_ms. */
bool rec_wait(struct rec *r, int changes, int timeout_ms);
/* The watcher's thread: etcd_watch(w->c, w->prefix, from w->start) into w->rec. */
void *watch_main(void *opaque);
/* Watch prefix from the revision after the current one. */
void watcher_start(struct watcher *w, struct etcd *c, const char *prefix);
/* Stop the watcher; it must return 0 within a second. */
void watcher_stop(struct watcher *w);

#endif
