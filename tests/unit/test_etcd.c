/* clusterd's etcd client against a real etcd: KV, txn, leases, watch resume and resync,
 * failover, timeouts. Each test starts its own etcd on free loopback ports. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "etcd.h"
#include "etcd_priv.h"
#include "etcd_proc.h"
#include "etcd_test.h"
#include "harness.h"
#include "unit.h"

int client_open(struct etcd **c, const char *endpoints, int tmo, struct etcd_err *err)
{
	struct etcd_cfg cfg = { .endpoints = endpoints, .timeout_ms = tmo };

	return etcd_open(&cfg, c, err);
}

uint64_t ms_since(uint64_t t0_ns)
{
	return (now_ns() - t0_ns) / 1000000;
}

static bool kv_is(const struct etcd_kv *kv, const char *key, const char *val)
{
	return kv && !strcmp(kv->key, key) && kv->vlen == strlen(val) &&
	       !memcmp(kv->val, val, kv->vlen) && kv->val[kv->vlen] == 0;
}

int64_t put_s(struct etcd *c, const char *key, const char *val, int64_t lease)
{
	struct etcd_err err;
	int64_t rev = 0;
	int rc = etcd_put(c, key, val, strlen(val), lease, &rev, &err);

	if (rc)
		fprintf(stderr, "put %s: %s\n", key, err.msg);
	CU_ASSERT_EQUAL(rc, 0);
	return rev;
}

/* The value of key as a string ("" and absent distinguished: NULL when absent). */
static char *get_s(struct etcd *c, const char *key)
{
	struct etcd_kv *kv = NULL;
	char *s = NULL;

	CU_ASSERT_EQUAL(etcd_get(c, key, &kv, NULL), 0);
	if (kv)
		s = strdup((char *)kv->val);
	etcd_kv_free(kv);
	return s;
}

static bool key_exists(struct etcd *c, const char *key)
{
	char *s = get_s(c, key);

	free(s);
	return s != NULL;
}

/* ---- keys and values ---------------------------------------------------------------- */

static void check_range(struct etcd *c, const struct etcd_range_req *req, size_t n, bool more,
			const char *first)
{
	struct etcd_kvs kvs;
	struct etcd_err err;

	CU_ASSERT_EQUAL_FATAL(etcd_range(c, req, &kvs, &err), 0);
	CU_ASSERT_EQUAL(kvs.n, n);
	CU_ASSERT_EQUAL(kvs.more, more);
	CU_ASSERT_TRUE(kvs.header_rev > 0);
	if (first && kvs.n)
		CU_ASSERT_STRING_EQUAL(kvs.kv[0].key, first);
	for (size_t i = 1; i < kvs.n; i++)
		CU_ASSERT_TRUE(strcmp(kvs.kv[i - 1].key, kvs.kv[i].key) < 0);
	etcd_kvs_free(&kvs);
}

static void test_etcd_kv(void)
{
	static const uint8_t bin[] = { 0, 0xff, 1, '=', 0 };
	struct etcd_proc p;
	struct etcd *c;
	struct etcd_kv *kv = NULL;
	struct etcd_kvs kvs;
	struct etcd_err err;
	int64_t ra, rb, rd, n = -1;

	ETCD_SETUP(&p, c, 3000);
	ra = put_s(c, "/r/a", "1", 0);
	rb = put_s(c, "/r/b", "2", 0);
	put_s(c, "/r/c", "3", 0);
	rd = put_s(c, "/r/d", "4", 0);
	put_s(c, "/rx", "x", 0);
	CU_ASSERT_TRUE(ra > 0 && rb == ra + 1 && rd == ra + 3);

	CU_ASSERT_EQUAL(etcd_get(c, "/r/a", &kv, &err), 0);
	CU_ASSERT_TRUE(kv_is(kv, "/r/a", "1"));
	CU_ASSERT_TRUE(kv && kv->create_rev == ra && kv->mod_rev == ra && kv->version == 1);
	etcd_kv_free(kv);
	put_s(c, "/r/a", "11", 0);
	CU_ASSERT_EQUAL(etcd_get(c, "/r/a", &kv, &err), 0);
	CU_ASSERT_TRUE(kv_is(kv, "/r/a", "11") && kv->version == 2 && kv->create_rev == ra);
	etcd_kv_free(kv);
	CU_ASSERT_EQUAL(etcd_get(c, "/r/none", &kv, &err), 0);
	CU_ASSERT_PTR_NULL(kv);

	/* Binary values round-trip, NULs included. */
	CU_ASSERT_EQUAL(etcd_put(c, "/bin", bin, sizeof(bin), 0, NULL, &err), 0);
	CU_ASSERT_EQUAL(etcd_get(c, "/bin", &kv, &err), 0);
	CU_ASSERT_TRUE(kv && kv->vlen == sizeof(bin) && !memcmp(kv->val, bin, sizeof(bin)));
	etcd_kv_free(kv);

	check_range(c, &(struct etcd_range_req){ .key = "/r/", .prefix = true }, 4, false, "/r/a");
	check_range(c, &(struct etcd_range_req){ .key = "/r/", .prefix = true, .limit = 2 }, 2,
		    true, "/r/a");
	check_range(c, &(struct etcd_range_req){ .key = "/r/b", .range_end = "/r/d" }, 2, false,
		    "/r/b");
	check_range(c, &(struct etcd_range_req){ .key = "", .prefix = true }, 6, false, "/bin");

	/* An old revision shows the old value and only the keys that existed then. */
	CU_ASSERT_EQUAL_FATAL(
		etcd_range(c,
			   &(struct etcd_range_req){ .key = "/r/", .prefix = true, .revision = rb },
			   &kvs, &err),
		0);
	CU_ASSERT_EQUAL(kvs.n, 2);
	CU_ASSERT_TRUE(kvs.n == 2 && kv_is(&kvs.kv[0], "/r/a", "1") &&
		       kv_is(&kvs.kv[1], "/r/b", "2"));
	etcd_kvs_free(&kvs);

	CU_ASSERT_EQUAL(etcd_delete(c, "/r/", true, &n, &err), 0);
	CU_ASSERT_EQUAL(n, 4);
	check_range(c, &(struct etcd_range_req){ .key = "/r/", .prefix = true }, 0, false, NULL);
	CU_ASSERT_TRUE(key_exists(c, "/rx"));
	CU_ASSERT_EQUAL(etcd_delete(c, "/rx", false, &n, &err), 0);
	CU_ASSERT_EQUAL(n, 1);
	CU_ASSERT_EQUAL(etcd_delete(c, "/rx", false, &n, &err), 0);
	CU_ASSERT_EQUAL(n, 0);

	/* Compacted and future revisions, and a refused request. */
	CU_ASSERT_EQUAL(etcd_compact(c, rd, true, &err), 0);
	CU_ASSERT_EQUAL(etcd_range(c, &(struct etcd_range_req){ .key = "/r/a", .revision = ra },
				   &kvs, &err),
			-ESTALE);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "was compacted"));
	CU_ASSERT_EQUAL(etcd_range(c, &(struct etcd_range_req){ .key = "/r/a", .revision = 1000 },
				   &kvs, &err),
			-ERANGE);
	CU_ASSERT_EQUAL(etcd_put(c, "", "v", 1, 0, NULL, &err), -EINVAL);

	etcd_close(c);
	etcd_proc_stop(&p);
}

/* ---- transactions ------------------------------------------------------------------- */

static bool cmp_holds(struct etcd *c, enum etcd_cmp_target target, enum etcd_cmp_result result,
		      int64_t num, const char *val)
{
	struct etcd_cmp cmp = { .key = "/t/k",
				.target = target,
				.result = result,
				.num = num,
				.val = val,
				.vlen = val ? strlen(val) : 0 };
	struct etcd_txn t = { .cmp = &cmp, .ncmp = 1 };
	struct etcd_txn_resp r;
	bool ok;

	CU_ASSERT_EQUAL_FATAL(etcd_txn(c, &t, &r, NULL), 0);
	ok = r.succeeded;
	etcd_txn_resp_free(&r);
	return ok;
}

static void test_etcd_txn_cas(void)
{
	struct etcd_proc p;
	struct etcd *c;
	struct etcd_kv *kv = NULL;
	struct etcd_err err;
	int64_t r1, r2 = 0, create_rev;
	bool ok;

	ETCD_SETUP(&p, c, 3000);
	r1 = put_s(c, "/t/k", "v1", 0);
	CU_ASSERT_EQUAL(etcd_cas_mod(c, "/t/k", r1, "v2", 2, 0, &ok, &r2, &err), 0);
	CU_ASSERT_TRUE(ok);
	CU_ASSERT_TRUE(r2 > r1);
	CU_ASSERT_EQUAL(etcd_cas_mod(c, "/t/k", r1, "v3", 2, 0, &ok, NULL, &err), 0);
	CU_ASSERT_FALSE(ok); /* the stale revision loses */
	CU_ASSERT_EQUAL(etcd_get(c, "/t/k", &kv, &err), 0);
	CU_ASSERT_TRUE(kv_is(kv, "/t/k", "v2") && kv->mod_rev == r2);
	etcd_kv_free(kv);
	CU_ASSERT_EQUAL(etcd_cas_mod(c, "/t/new", 0, "x", 1, 0, &ok, NULL, &err), 0);
	CU_ASSERT_TRUE(ok); /* mod_rev 0: only if absent */
	CU_ASSERT_EQUAL(etcd_cas_mod(c, "/t/new", 0, "y", 1, 0, &ok, NULL, &err), 0);
	CU_ASSERT_FALSE(ok);

	/* Create-if-absent: once, then the existing value comes back. */
	CU_ASSERT_EQUAL(etcd_create(c, "/t/c", "a", 1, 0, &ok, &kv, &err), 0);
	CU_ASSERT_TRUE(ok);
	CU_ASSERT_TRUE(kv_is(kv, "/t/c", "a") && kv->create_rev > r2 && kv->version == 1);
	create_rev = kv ? kv->create_rev : -1;
	etcd_kv_free(kv);
	kv = NULL;
	CU_ASSERT_EQUAL(etcd_create(c, "/t/c", "b", 1, 0, &ok, &kv, &err), 0);
	CU_ASSERT_FALSE(ok);
	CU_ASSERT_TRUE(kv_is(kv, "/t/c", "a") && kv->create_rev == create_rev);
	etcd_kv_free(kv);
	CU_ASSERT_EQUAL(etcd_create(c, "/t/c", "b", 1, 0, &ok, NULL, &err), 0);
	CU_ASSERT_FALSE(ok);

	/* /t/k holds "v2" at version 2, mod_revision r2. */
	CU_ASSERT_TRUE(cmp_holds(c, ETCD_CMP_VALUE, ETCD_CMP_EQUAL, 0, "v2"));
	CU_ASSERT_FALSE(cmp_holds(c, ETCD_CMP_VALUE, ETCD_CMP_EQUAL, 0, "v1"));
	CU_ASSERT_TRUE(cmp_holds(c, ETCD_CMP_VALUE, ETCD_CMP_NOT_EQUAL, 0, "v1"));
	CU_ASSERT_TRUE(cmp_holds(c, ETCD_CMP_VERSION, ETCD_CMP_EQUAL, 2, NULL));
	CU_ASSERT_FALSE(cmp_holds(c, ETCD_CMP_VERSION, ETCD_CMP_GREATER, 2, NULL));
	CU_ASSERT_TRUE(cmp_holds(c, ETCD_CMP_VERSION, ETCD_CMP_LESS, 3, NULL));
	CU_ASSERT_TRUE(cmp_holds(c, ETCD_CMP_MOD, ETCD_CMP_GREATER, r1, NULL));
	CU_ASSERT_FALSE(cmp_holds(c, ETCD_CMP_MOD, ETCD_CMP_LESS, r2, NULL));
	CU_ASSERT_TRUE(cmp_holds(c, ETCD_CMP_CREATE, ETCD_CMP_EQUAL, r1, NULL));
	etcd_close(c);
	etcd_proc_stop(&p);
}

static void test_etcd_txn_branches(void)
{
	struct etcd_cmp cmp = { .key = "/t/k", .target = ETCD_CMP_VALUE, .val = "v1", .vlen = 2 };
	struct etcd_op ok_ops[] = {
		{ .type = ETCD_OP_RANGE, .key = "/t/", .prefix = true },
		{ .type = ETCD_OP_DELETE, .key = "/t/j" },
		{ .type = ETCD_OP_PUT, .key = "/t/k", .val = "v2", .vlen = 2 }
	};
	struct etcd_op fail_op = { .type = ETCD_OP_RANGE, .key = "/t/k" };
	struct etcd_txn t = { &cmp, 1, ok_ops, 3, &fail_op, 1 };
	struct etcd_txn_resp r;
	struct etcd_proc p;
	struct etcd *c;
	int64_t rev;

	ETCD_SETUP(&p, c, 3000);
	put_s(c, "/t/j", "j", 0);
	rev = put_s(c, "/t/k", "v1", 0);
	CU_ASSERT_EQUAL_FATAL(etcd_txn(c, &t, &r, NULL), 0);
	CU_ASSERT_TRUE(r.succeeded);
	CU_ASSERT_EQUAL_FATAL(r.n, 3);
	CU_ASSERT_TRUE(r.resp[0].type == ETCD_OP_RANGE && r.resp[0].kvs.n == 2);
	CU_ASSERT_TRUE(r.resp[1].type == ETCD_OP_DELETE && r.resp[1].deleted == 1);
	CU_ASSERT_EQUAL(r.resp[2].type, ETCD_OP_PUT);
	CU_ASSERT_EQUAL(r.header_rev, rev + 1); /* one txn, one revision */
	etcd_txn_resp_free(&r);
	CU_ASSERT_FALSE(key_exists(c, "/t/j"));

	/* The value is "v2" now: the failure branch runs and reads it. */
	CU_ASSERT_EQUAL_FATAL(etcd_txn(c, &t, &r, NULL), 0);
	CU_ASSERT_FALSE(r.succeeded);
	CU_ASSERT_EQUAL_FATAL(r.n, 1);
	CU_ASSERT_TRUE(r.resp[0].kvs.n == 1 && kv_is(&r.resp[0].kvs.kv[0], "/t/k", "v2"));
	CU_ASSERT_TRUE(r.resp[0].kvs.n == 1 && r.resp[0].kvs.kv[0].mod_rev == rev + 1);
	etcd_txn_resp_free(&r);
	etcd_close(c);
	etcd_proc_stop(&p);
}

/* ---- leases ------------------------------------------------------------------------- */

static void test_etcd_lease_expiry(void)
{
	struct etcd_proc p;
	struct etcd *c;
	struct etcd_kv *kv = NULL;
	struct etcd_err err;
	int64_t id = 0, ttl = 0, left = 0, granted = 0;
	uint64_t t0, last_ka;

	ETCD_SETUP(&p, c, 3000);
	CU_ASSERT_EQUAL_FATAL(etcd_lease_grant(c, 1, &id, &ttl, &err), 0);
	CU_ASSERT_EQUAL(ttl, 2); /* etcd's minimum */
	put_s(c, "/l/k", "v", id);
	CU_ASSERT_EQUAL(etcd_get(c, "/l/k", &kv, &err), 0);
	CU_ASSERT_TRUE(kv && kv->lease == id);
	etcd_kv_free(kv);

	/* Keepalives carry the key well past its TTL. */
	t0 = now_ns();
	last_ka = t0;
	while (ms_since(t0) < 3500) {
		CU_ASSERT_EQUAL(etcd_lease_keepalive(c, id, &left, &err), 0);
		CU_ASSERT_EQUAL(left, 2);
		last_ka = now_ns();
		sleep_ms(500);
	}
	CU_ASSERT_TRUE(key_exists(c, "/l/k"));
	CU_ASSERT_EQUAL(etcd_lease_ttl(c, id, &left, &granted, &err), 0);
	CU_ASSERT_TRUE(left >= 0 && left <= 2);
	CU_ASSERT_EQUAL(granted, 2);

	/* Without them the key goes, never before the TTL. */
	while (key_exists(c, "/l/k") && ms_since(t0) < 3500 + 10000)
		sleep_ms(100);
	CU_ASSERT_FALSE(key_exists(c, "/l/k"));
	CU_ASSERT_TRUE(ms_since(last_ka) >= 1500);
	CU_ASSERT_EQUAL(etcd_lease_keepalive(c, id, &left, &err), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "expired"));
	CU_ASSERT_EQUAL(etcd_lease_ttl(c, id, &left, &granted, &err), -ENOENT);
	etcd_close(c);
	etcd_proc_stop(&p);
}

static void test_etcd_lease_revoke_ids(void)
{
	/* Above 2^53: a parse through a double would change it. */
	const int64_t big = ((int64_t)1 << 62) + 12345;
	struct etcd_proc p;
	struct etcd *c;
	struct etcd_kv *kv = NULL;
	struct etcd_err err;
	int64_t id = 0, granted = 0;

	ETCD_SETUP(&p, c, 3000);
	CU_ASSERT_EQUAL_FATAL(etcd_lease_grant_id(c, big, 30, &granted, &err), 0);
	CU_ASSERT_EQUAL(granted, 30);
	CU_ASSERT_EQUAL(etcd_lease_grant_id(c, big, 30, &granted, &err), -EEXIST);
	put_s(c, "/l/big", "v", big);
	CU_ASSERT_EQUAL(etcd_get(c, "/l/big", &kv, &err), 0);
	CU_ASSERT_TRUE(kv && kv->lease == big);
	etcd_kv_free(kv);
	CU_ASSERT_EQUAL(etcd_lease_ttl(c, big, NULL, &granted, &err), 0);
	CU_ASSERT_EQUAL(granted, 30);

	/* An ID etcd chooses round-trips the same way. */
	CU_ASSERT_EQUAL_FATAL(etcd_lease_grant(c, 30, &id, NULL, &err), 0);
	CU_ASSERT_TRUE(id > 0);
	put_s(c, "/l/own", "v", id);
	CU_ASSERT_EQUAL(etcd_get(c, "/l/own", &kv, &err), 0);
	CU_ASSERT_TRUE(kv && kv->lease == id);
	etcd_kv_free(kv);

	/* Revoke deletes the keys at once. */
	CU_ASSERT_EQUAL(etcd_lease_revoke(c, big, &err), 0);
	CU_ASSERT_FALSE(key_exists(c, "/l/big"));
	CU_ASSERT_TRUE(key_exists(c, "/l/own"));
	CU_ASSERT_EQUAL(etcd_lease_revoke(c, big, &err), -ENOENT);
	CU_ASSERT_EQUAL(etcd_put(c, "/l/x", "v", 1, big, NULL, &err), -ENOENT);
	etcd_close(c);
	etcd_proc_stop(&p);
}

/* ---- failover and timeouts ---------------------------------------------------------- */

static void test_etcd_failover(void)
{
	char eps[256], dead[2][64];
	struct etcd_proc p;
	struct etcd *c;
	struct etcd_err err;
	struct watcher w;
	struct etcd_kv *kv = (struct etcd_kv *)1;
	uint64_t t0;

	CU_ASSERT_FATAL(etcd_proc_start(&p) == 0);
	for (int i = 0; i < 2; i++)
		snprintf(dead[i], sizeof(dead[i]), "http://127.0.0.1:%d", test_free_port());
	snprintf(eps, sizeof(eps), "%s,%s", dead[0], p.url);
	CU_ASSERT_EQUAL_FATAL(client_open(&c, eps, 2000, &err), 0);
	put_s(c, "/f/k", "v", 0);
	CU_ASSERT_TRUE(key_exists(c, "/f/k"));
	/* The watch finds the live endpoint too. */
	watcher_start(&w, c, "/f/");
	put_s(c, "/f/k", "v2", 0);
	CU_ASSERT(rec_wait(&w.rec, 1, 5000));
	watcher_stop(&w);
	etcd_close(c);

	snprintf(eps, sizeof(eps), "%s, %s", dead[0], dead[1]);
	CU_ASSERT_EQUAL_FATAL(client_open(&c, eps, 2000, &err), 0);
	t0 = now_ns();
	CU_ASSERT_EQUAL(etcd_get(c, "/f/k", &kv, &err), -EHOSTUNREACH);
	CU_ASSERT_TRUE(ms_since(t0) < 1000);
	CU_ASSERT_PTR_EQUAL(kv, (struct etcd_kv *)1); /* untouched */
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "etcd unreachable: "));
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, dead[0]));
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, dead[1]));
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "Connection refused"));
	etcd_close(c);

	CU_ASSERT_EQUAL(client_open(&c, "127.0.0.1:2379", 0, &err), -EINVAL);
	CU_ASSERT_EQUAL(client_open(&c, " , ", 0, &err), -EINVAL);
	etcd_proc_stop(&p);
}

/* A member that takes connections but never answers (a stalled process: the kernel still
 * completes the handshake). A write that meets it times out with its outcome unknown and
 * is not sent on to another member; the calls after it start at the next member instead of
 * staying on the stalled one (a node's lease keepalives would fail for ever there). */
static void test_etcd_stalled_member(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct etcd_proc p;
	struct etcd_err err;
	struct etcd *c;
	char eps[256];

	CU_ASSERT_FATAL(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
			listen(fd, 16) == 0 && getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
	CU_ASSERT_FATAL(etcd_proc_start(&p) == 0);
	snprintf(eps, sizeof(eps), "http://127.0.0.1:%d,%s", ntohs(sa.sin_port), p.url);
	CU_ASSERT_EQUAL_FATAL(client_open(&c, eps, 5000, &err), 0);
	CU_ASSERT_EQUAL(etcd_put(c, "/s/k", "v", 1, 0, NULL, &err), -ETIMEDOUT);
	CU_ASSERT_FALSE(key_exists(c, "/s/k")); /* read from the live member: never written */
	put_s(c, "/s/k", "v2", 0);
	CU_ASSERT_TRUE(key_exists(c, "/s/k"));
	etcd_close(c);
	close(fd);
	etcd_proc_stop(&p);
}

/* A member that answers one request on a connection, then reads the next and closes it
 * without a word, and takes no new connection after that: it died mid-request. */
struct dying {
	int fd;
	pthread_t th;
};

/* One whole request (its JSON body ends it). */
static bool read_request(int c, char *buf, size_t len)
{
	size_t n = 0;
	ssize_t r;

	while (n < len - 1 && (r = read(c, buf + n, len - 1 - n)) > 0) {
		n += (size_t)r;
		buf[n] = 0;
		if (strstr(buf, "\r\n\r\n") && buf[n - 1] == '}')
			return true;
	}
	return false;
}

static void *dying_main(void *arg)
{
	static const char ok[] =
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
		"Content-Length: 36\r\n\r\n{\"header\":{\"revision\":\"1\"},\"kvs\":[]}";
	struct dying *d = arg;
	char buf[4096];
	int c = accept(d->fd, NULL, NULL);

	close(d->fd); /* no connection after this one */
	if (c < 0)
		return NULL;
	if (read_request(c, buf, sizeof(buf)) && write(c, ok, sizeof(ok) - 1) > 0)
		read_request(c, buf, sizeof(buf)); /* the second, taken and never answered */
	close(c);
	return NULL;
}

/* libcurl re-sends a request by itself when a reused connection closes under it, on a
 * fresh connect; refused, that once looked like a member never reached, and the write
 * went on to the next member — applied twice where the first had applied it. A write
 * whose bytes left is now reported with its outcome unknown and sent nowhere else; a read
 * may go on. */
static void test_etcd_write_not_resent(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	struct dying d = { .fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0) };
	struct etcd_kv *kv = NULL;
	struct etcd_proc p;
	struct etcd_err err;
	struct etcd *c;
	char eps[256];

	CU_ASSERT_FATAL(d.fd >= 0 && bind(d.fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
			listen(d.fd, 4) == 0 &&
			getsockname(d.fd, (struct sockaddr *)&sa, &sl) == 0);
	CU_ASSERT_FATAL(etcd_proc_start(&p) == 0);
	snprintf(eps, sizeof(eps), "http://127.0.0.1:%d,%s", ntohs(sa.sin_port), p.url);
	CU_ASSERT_EQUAL_FATAL(client_open(&c, eps, 5000, &err), 0);
	CU_ASSERT_FATAL(pthread_create(&d.th, NULL, dying_main, &d) == 0);
	CU_ASSERT_EQUAL(etcd_get(c, "/r/k", &kv, &err), 0); /* answered by the dying one */
	CU_ASSERT_PTR_NULL(kv);
	CU_ASSERT_EQUAL(etcd_put(c, "/r/k", "v", 1, 0, NULL, &err), -ECONNRESET);
	pthread_join(d.th, NULL);
	CU_ASSERT_FALSE(key_exists(c, "/r/k")); /* not written by the live member either */
	etcd_close(c);
	etcd_proc_stop(&p);
}

/* etcd's errors by code and by message: a watch canceled for a permission says so with no
 * code; a busy server is not a full one. */
static void test_etcd_error_map(void)
{
	struct etcd_err err;

	CU_ASSERT_EQUAL(etcd_map_error(0, "etcdserver: permission denied", &err), -EACCES);
	CU_ASSERT_EQUAL(etcd_map_error(7, "etcdserver: permission denied", &err), -EACCES);
	CU_ASSERT_EQUAL(etcd_map_error(0, "etcdserver: invalid auth token", &err), -EPERM);
	CU_ASSERT_EQUAL(etcd_map_error(8, "etcdserver: too many requests", &err), -EAGAIN);
	CU_ASSERT_EQUAL(etcd_map_error(8, "etcdserver: mvcc: database space exceeded", &err),
			-ENOSPC);
	CU_ASSERT_EQUAL(etcd_map_error(14, "etcdserver: no leader", &err), -EAGAIN);
	CU_ASSERT_EQUAL(etcd_map_error(0, "mvcc: required revision has been compacted", &err),
			-ESTALE);
	CU_ASSERT_EQUAL(etcd_map_error(0, "watch canceled", &err), -EIO);
}

static void test_etcd_timeout(void)
{
	struct etcd_proc p;
	struct etcd *c;
	struct etcd_kv *kv = NULL;
	struct etcd_err err;
	uint64_t t0;
	int rc;

	ETCD_SETUP(&p, c, 1000);
	put_s(c, "/s/k", "v", 0); /* a pooled connection exists now */
	CU_ASSERT_EQUAL_FATAL(etcd_proc_signal(&p, SIGSTOP), 0);
	t0 = now_ns();
	rc = etcd_get(c, "/s/k", &kv, &err);
	if (rc != -ETIMEDOUT)
		fprintf(stderr, "etcd_get on a stopped etcd: %d %s\n", rc, err.msg);
	CU_ASSERT_EQUAL(rc, -ETIMEDOUT);
	CU_ASSERT_TRUE(ms_since(t0) < 2000);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "etcd timed out after 1000 ms"));
	t0 = now_ns();
	CU_ASSERT_EQUAL(etcd_put(c, "/s/k", "w", 1, 0, NULL, &err), -ETIMEDOUT);
	CU_ASSERT_TRUE(ms_since(t0) < 2000);
	CU_ASSERT_EQUAL(etcd_proc_signal(&p, SIGCONT), 0);
	CU_ASSERT_EQUAL(etcd_get(c, "/s/k", &kv, &err), 0);
	CU_ASSERT_PTR_NOT_NULL(kv);
	etcd_kv_free(kv);
	etcd_close(c);
	etcd_proc_stop(&p);
}

static int tls_client(struct etcd **c, const char *url, const char *dir, bool with_cert,
		      struct etcd_err *err)
{
	char ca[600], crt[600], key[600];
	struct etcd_cfg cfg = { .endpoints = url, .ca = ca, .timeout_ms = 3000 };

	snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
	snprintf(crt, sizeof(crt), "%s/tls.crt", dir);
	snprintf(key, sizeof(key), "%s/tls.key", dir);
	if (with_cert) {
		cfg.cert = crt;
		cfg.key = key;
	}
	return etcd_open(&cfg, c, err);
}

/* HTTPS with client-certificate auth: a certificate of the cluster CA works; none, or one
 * of another CA, is refused with a line naming the endpoint; plain HTTP is refused. */
static void test_etcd_tls(void)
{
	char good[600], evil[600], srv[700], cli[700], bad[700], cmd[2048];
	struct etcd_proc p;
	struct etcd *c = NULL;
	struct etcd_kv *kv = NULL;
	struct etcd_err err = { "" };
	char plain[80];

	snprintf(good, sizeof(good), "%s/good", test_tmpdir());
	snprintf(evil, sizeof(evil), "%s/evil", test_tmpdir());
	snprintf(cmd, sizeof(cmd),
		 "sh certs/mkcerts.sh %s 127.0.0.1 node-a >/dev/null && "
		 "sh certs/mkcerts.sh %s node-a >/dev/null",
		 good, evil);
	CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
	snprintf(srv, sizeof(srv), "%s/127.0.0.1", good);
	snprintf(cli, sizeof(cli), "%s/node-a", good);
	snprintf(bad, sizeof(bad), "%s/node-a", evil);
	CU_ASSERT_EQUAL_FATAL(etcd_proc_start_tls(&p, srv), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(p.url, "https://"));

	CU_ASSERT_EQUAL_FATAL(tls_client(&c, p.url, cli, true, &err), 0);
	CU_ASSERT_EQUAL(etcd_put(c, "/tls/k", "v", 1, 0, NULL, &err), 0);
	CU_ASSERT_EQUAL(etcd_get(c, "/tls/k", &kv, &err), 0);
	CU_ASSERT_TRUE(kv && kv_is(kv, "/tls/k", "v"));
	etcd_kv_free(kv);
	etcd_close(c);

	CU_ASSERT_EQUAL_FATAL(tls_client(&c, p.url, cli, false, &err), 0);
	CU_ASSERT_NOT_EQUAL(etcd_get(c, "/tls/k", &kv, &err), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, p.url));
	etcd_close(c);

	CU_ASSERT_EQUAL_FATAL(tls_client(&c, p.url, bad, true, &err), 0);
	CU_ASSERT_NOT_EQUAL(etcd_get(c, "/tls/k", &kv, &err), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, p.url));
	etcd_close(c);

	snprintf(plain, sizeof(plain), "http://127.0.0.1:%d", p.client_port);
	CU_ASSERT_EQUAL_FATAL(client_open(&c, plain, 3000, &err), 0);
	CU_ASSERT_NOT_EQUAL(etcd_get(c, "/tls/k", &kv, &err), 0);
	etcd_close(c);
	etcd_proc_stop(&p);
}

void suite_etcd(void)
{
	static const struct test_case cases[] = {
		{ "etcd_kv", test_etcd_kv },
		{ "etcd_txn_cas", test_etcd_txn_cas },
		{ "etcd_txn_branches", test_etcd_txn_branches },
		{ "etcd_lease_expiry", test_etcd_lease_expiry },
		{ "etcd_lease_revoke_ids", test_etcd_lease_revoke_ids },
		{ "etcd_failover", test_etcd_failover },
		{ "etcd_timeout", test_etcd_timeout },
		{ "etcd_tls", test_etcd_tls },
		{ "etcd_stalled_member: a write is not sent twice, calls move on",
		  test_etcd_stalled_member },
		{ "etcd_error_map: by code and by message", test_etcd_error_map },
		{ "etcd_write_not_resent: a write that left goes to no second member",
		  test_etcd_write_not_resent },
		{ NULL, NULL },
	};

	test_add_suite("etcd", cases);
}
