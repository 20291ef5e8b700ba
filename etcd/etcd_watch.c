/* Watch: one streaming POST /v3/watch at a time, driven by a curl multi handle so the
 * stop flag is seen within 200 ms. The position (next_rev) survives reconnects, which is
 * what makes delivery exactly-once; a compacted position is recovered by re-reading. */
#include "etcd_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POLL_MS	       200
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define RESYNC_PAGE    1000

enum wstate {
	WS_RUN,	      /* connection open */
	WS_STOP,      /* *stop was set */
	WS_CB,	      /* the callback asked to stop (rc) */
	WS_FATAL,     /* retrying cannot help (rc, err) */
	WS_LOST,      /* connection ended or failed (why): reconnect */
	WS_COMPACTED, /* next_rev is compacted (compact_rev): resync */
	WS_OVERSIZED, /* a response over the line limit: resync (reconnecting at next_rev would
		       * only get the same response again) */
};

struct watch {
	struct etcd *e;
	const char *key;
	bool prefix;
	etcd_watch_cb cb;
	void *opaque;
	const atomic_bool *stop;
	struct etcd_err *err;
	int64_t next_rev;    /* first revision not yet delivered; 0: from "now" */
	int64_t conn_start;  /* start_revision of this connection */
	int64_t compact_rev; /* when WS_COMPACTED */
	/* This connection's order so far: an event below it would break revision order (the
	 * last event's revision, or a progress notification's + 1). */
	int64_t floor_rev;
	enum wstate state;
	int rc;
	bool created; /* this connection's watch was created */
	struct etcd_buf line;
	char why[200];
};

/* Retrying cannot fix these. */
static bool is_fatal(int rc)
{
	return rc == -EACCES || rc == -EPERM || rc == -EINVAL || rc == -ENOMEM;
}

static void set_lost(struct watch *w, const char *fmt, ...) CME_PRINTF(2, 3);
static void set_lost(struct watch *w, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(w->why, sizeof(w->why), fmt, ap);
	va_end(ap);
	w->state = WS_LOST;
}

/* An error from etcd (rc from etcd_map_error, reason in tmp): fatal or reconnect. */
static void set_error(struct watch *w, int rc, const struct etcd_err *tmp)
{
	if (is_fatal(rc)) {
		w->state = WS_FATAL;
		w->rc = rc;
		etcd_fail(w->err, rc, "watch %s: %s", w->key, tmp->msg);
		return;
	}
	set_lost(w, "%s", tmp->msg);
}

static bool deliver(struct watch *w, const struct etcd_event *ev)
{
	int rc = w->cb(w->opaque, ev);

	if (rc) {
		w->state = WS_CB;
		w->rc = rc;
	}
	return rc == 0;
}

/* One event of a result; false when the watch must stop or reconnect. */
static bool on_event(struct watch *w, const json_t *j)
{
	struct etcd_kv kv, prev;
	const json_t *pj = json_object_get(j, "prev_kv");
	const char *type = json_string_value(json_object_get(j, "type"));
	struct etcd_event ev = { .type = type && !strcmp(type, "DELETE") ? ETCD_EV_DELETE
									 : ETCD_EV_PUT,
				 .kv = &kv,
				 .prev_kv = pj ? &prev : NULL };
	bool ok;

	if (etcd_json_kv(json_object_get(j, "kv"), &kv) || (pj && etcd_json_kv(pj, &prev))) {
		etcd_json_kv_clear(&kv); /* etcd_json_kv leaves a failed kv cleared */
		set_lost(w, "bad event from etcd");
		return false;
	}
	if (kv.mod_rev < w->floor_rev) { /* never out of order: reconnect from next_rev */
		set_lost(w, "event at revision %lld after %lld from etcd: out of order",
			 (long long)kv.mod_rev, (long long)w->floor_rev);
		etcd_json_kv_clear(&kv);
		if (pj)
			etcd_json_kv_clear(&prev);
		return false;
	}
	w->floor_rev = kv.mod_rev; /* more of the same revision may follow (a txn) */
	ev.rev = kv.mod_rev;
	/* Older than what this connection asked for: already delivered, never twice. */
	ok = kv.mod_rev < w->conn_start || deliver(w, &ev);
	if (ok && kv.mod_rev >= w->next_rev)
		w->next_rev = kv.mod_rev + 1;
	etcd_json_kv_clear(&kv);
	if (pj)
		etcd_json_kv_clear(&prev);
	return ok;
}

static void on_canceled(struct watch *w, const json_t *res)
{
	const char *reason = json_string_value(json_object_get(res, "cancel_reason"));
	struct etcd_err tmp;

	if (!etcd_json_i64_get(res, "compact_revision", &w->compact_rev) && w->compact_rev > 0) {
		w->state = WS_COMPACTED;
		return;
	}
	set_error(w, etcd_map_error(0, reason ? reason : "watch canceled", &tmp), &tmp);
}

static void on_result(struct watch *w, const json_t *res)
{
	const json_t *events = json_object_get(res, "events");
	int64_t rev = etcd_json_header_rev(res);
	struct etcd_event ev = { .type = ETCD_EV_PROGRESS, .rev = rev };

	if (json_is_true(json_object_get(res, "canceled"))) {
		on_canceled(w, res);
		return;
	}
	if (json_is_true(json_object_get(res, "created"))) {
		w->created = true;
		if (!w->next_rev) /* "from now": everything after the creation's revision */
			w->next_rev = rev + 1;
		return;
	}
	for (size_t i = 0; i < json_array_size(events); i++)
		if (!on_event(w, json_array_get(events, i)))
			return;
	if (json_array_size(events) || !rev)
		return;
	/* A progress notification: the watch is synced up to rev. One older than an event
	 * this connection delivered, or than the position it resumed from (a member behind
	 * the one before it), says nothing new. */
	if (rev < w->floor_rev || rev + 1 < w->next_rev)
		return;
	if (rev >= w->next_rev)
		w->next_rev = rev + 1;
	w->floor_rev = rev + 1;
	deliver(w, &ev);
}

/* Error lines come in the streaming shape {"error":{"grpc_code":..,"message":..}} or, for
 * a request refused up front, the unary one {"error":"..","code":N,"message":..}. */
static void on_error(struct watch *w, const json_t *j)
{
	const json_t *er = json_object_get(j, "error");
	const json_t *o = json_is_object(er) ? er : j;
	const char *msg = json_string_value(json_object_get(o, "message"));
	int code = (int)json_integer_value(
		json_object_get(o, json_is_object(er) ? "grpc_code" : "code"));
	struct etcd_err tmp;

	set_error(w, etcd_map_error(code, msg ? msg : "watch error", &tmp), &tmp);
}

static void on_line(struct watch *w, const char *s, size_t n)
{
	json_t *j = json_loadb(s, n, 0, NULL);
	const json_t *res = json_object_get(j, "result");

	if (json_is_object(res))
		on_result(w, res);
	else if (json_object_get(j, "error"))
		on_error(w, j);
	else
		set_lost(w, "bad line from etcd's watch stream");
	json_decref(j);
}

/* libcurl's write callback: split the stream into lines (one response each). */
static size_t on_stream(char *p, size_t sz, size_t n, void *opaque)
{
	struct watch *w = opaque;
	size_t off = 0;
	char *nl;

	if (etcd_buf_add(&w->line, p, sz * n)) {
		w->line.len = 0;
		w->state = WS_OVERSIZED;
		return 0;
	}
	while (w->state == WS_RUN && (nl = memchr(w->line.p + off, '\n', w->line.len - off))) {
		if (nl > w->line.p + off)
			on_line(w, w->line.p + off, (size_t)(nl - w->line.p - off));
		off = (size_t)(nl - w->line.p) + 1;
	}
	memmove(w->line.p, w->line.p + off, w->line.len - off);
	w->line.len -= off;
	return w->state == WS_RUN ? sz * n : 0;
}

/* The create_request for the current position. */
static char *watch_body(struct watch *w)
{
	json_t *req = json_object(), *body;
	char *txt;

	if (!req || etcd_json_set_range(req, w->key, w->prefix, NULL) ||
	    (w->next_rev &&
	     json_object_set_new(req, "start_revision", etcd_json_i64(w->next_rev))) ||
	    json_object_set_new(req, "prev_kv", json_true()) ||
	    json_object_set_new(req, "progress_notify", json_true())) {
		json_decref(req);
		return NULL;
	}
	body = json_pack("{s:o}", "create_request", req);
	txt = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	return txt;
}

static void conn_setup(struct watch *w, CURL *h, const char *url, const char *body,
		       struct curl_slist *hdr)
{
	etcd_curl_common(w->e, h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)w->e->timeout_ms);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_stream);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, w);
}

/* Pump the transfer until it ends, *stop is set, or the watch is not created in time. */
static void conn_pump(struct watch *w, CURLM *m)
{
	uint64_t create_by = now_ns() + (uint64_t)w->e->timeout_ms * 1000000;
	int running = 1;

	while (w->state == WS_RUN) {
		if (curl_multi_perform(m, &running) != CURLM_OK || !running)
			break;
		if (atomic_load(w->stop)) {
			w->state = WS_STOP;
			break;
		}
		if (!w->created && now_ns() > create_by) {
			set_lost(w, "no answer within %d ms", w->e->timeout_ms);
			break;
		}
		curl_multi_poll(m, NULL, 0, POLL_MS, NULL);
	}
}

/* Why a transfer that ended by itself ended. */
static void conn_ended(struct watch *w, CURLM *m, CURL *h)
{
	int left;
	CURLMsg *msg = curl_multi_info_read(m, &left);
	CURLcode cc = msg && msg->msg == CURLMSG_DONE ? msg->data.result : CURLE_OK;
	long http = 0;

	if (w->state != WS_RUN)
		return;
	if (w->line.len) /* an error body without a final newline */
		on_line(w, w->line.p, w->line.len);
	if (w->state != WS_RUN)
		return;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http);
	if (cc == CURLE_PARTIAL_FILE)
		set_lost(w, "etcd closed the stream");
	else if (cc != CURLE_OK)
		set_lost(w, "%s", curl_easy_strerror(cc));
	else
		set_lost(w, "stream ended (HTTP %ld)", http);
}

/* One connection to ep, from w->next_rev, until it ends one way or another. */
static void watch_conn(struct watch *w, const char *ep)
{
	struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
	char url[512], *body = watch_body(w);
	CURLM *m = curl_multi_init();
	CURL *h = curl_easy_init();

	/* Without it a watch on a member that lost quorum stays open silently forever. */
	hdr = hdr ? curl_slist_append(hdr, "Grpc-Metadata-hasleader: true") : NULL;
	w->state = WS_RUN;
	w->created = false;
	w->line.len = 0;
	w->conn_start = w->next_rev;
	w->floor_rev = 0;
	if (!hdr || !body || !m || !h) {
		w->state = WS_FATAL;
		w->rc = etcd_fail(w->err, -ENOMEM, "etcd watch: out of memory");
		goto out;
	}
	snprintf(url, sizeof(url), "%s/v3/watch", ep);
	conn_setup(w, h, url, body, hdr);
	curl_multi_add_handle(m, h);
	conn_pump(w, m);
	conn_ended(w, m, h);
	curl_multi_remove_handle(m, h);
out:
	curl_easy_cleanup(h);
	curl_multi_cleanup(m);
	curl_slist_free_all(hdr);
	free(body);
}

/* Read one page of the watched range, [from, end) at revision rev (0: latest). */
static int resync_page(struct watch *w, const char *from, size_t flen, const char *end, size_t elen,
		       int64_t rev, struct etcd_kvs *out, struct etcd_err *err)
{
	json_t *body = json_object(), *reply = NULL;
	int rc = -ENOMEM;

	if (!body || etcd_json_set_range_b(body, from, flen, end, elen) ||
	    json_object_set_new(body, "limit", etcd_json_i64(RESYNC_PAGE)) ||
	    (rev && json_object_set_new(body, "revision", etcd_json_i64(rev))))
		goto out;
	rc = etcd_call(w->e, "/v3/kv/range", body, &reply, err);
	if (!rc && (rc = etcd_json_kvs(reply, out)))
		etcd_fail(err, rc, "etcd: bad range reply");
out:
	json_decref(body);
	json_decref(reply);
	return rc;
}

/* Deliver every kv of a page as a resync PUT; *last becomes the page's last key, with all
 * its bytes: the next page starts right after it, and a key holding a NUL cut short there
 * would start it before — the same page again, for ever. */
static int resync_deliver(struct watch *w, struct etcd_kvs *kvs, char **last, size_t *last_len)
{
	struct etcd_event ev = { .type = ETCD_EV_PUT, .resync = true };
	const struct etcd_kv *k;

	for (size_t i = 0; i < kvs->n; i++) {
		ev.kv = &kvs->kv[i];
		ev.rev = kvs->kv[i].mod_rev;
		if (!deliver(w, &ev))
			return w->rc;
	}
	if (!kvs->n)
		return 0;
	k = &kvs->kv[kvs->n - 1];
	free(*last);
	if (!(*last = malloc(k->klen + 1)))
		return -ENOMEM;
	memcpy(*last, k->key, k->klen + 1); /* its NUL too: "last + \0" is the next page */
	*last_len = k->klen;
	return 0;
}

/* Re-read the range page by page, all pages at the first page's revision R; next_rev
 * becomes R + 1. */
static int resync_read(struct watch *w, const char *end, size_t elen, struct etcd_err *err)
{
	/* The first page starts at the key ("every key" is "\0"); the next ones right after
	 * the last key read: last + "\0", i.e. its NUL terminator included. */
	size_t klen = strlen(w->key), last_len = 0;
	char *last = NULL;
	struct etcd_kvs kvs;
	int64_t rev = 0;
	bool more = true;
	int rc = 0;

	while (!rc && more) {
		if (last)
			rc = resync_page(w, last, last_len + 1, end, elen, rev, &kvs, err);
		else
			rc = resync_page(w, klen || !w->prefix ? w->key : "",
					 klen + (!klen && w->prefix), end, elen, rev, &kvs, err);
		if (rc)
			break;
		rev = rev ? rev : kvs.header_rev;
		more = kvs.more && kvs.n;
		rc = resync_deliver(w, &kvs, &last, &last_len);
		etcd_kvs_free(&kvs);
	}
	if (!rc)
		w->next_rev = rev + 1;
	free(last);
	return rc;
}

/* next_rev was compacted, or what follows it does not fit a response: RESET, the current
 * contents as resync PUTs, then PROGRESS. */
static void watch_resync(struct watch *w)
{
	struct etcd_event ev = { .type = ETCD_EV_RESET,
				 .rev = w->state == WS_COMPACTED ? w->compact_rev : w->next_rev };
	size_t elen = 0;
	char *end = w->prefix ? etcd_json_prefix_end(w->key, strlen(w->key), &elen) : NULL;
	struct etcd_err tmp = { "out of memory" };
	int rc;

	if (w->state == WS_COMPACTED)
		log_warn("etcd", "watch key=%s: revision %lld was compacted (now %lld), re-reading",
			 w->key, (long long)w->next_rev, (long long)w->compact_rev);
	else
		log_warn("etcd",
			 "watch key=%s: the changes from revision %lld come in a response over %zu "
			 "bytes; re-reading the current contents instead",
			 w->key, (long long)w->next_rev, w->line.max);
	w->state = WS_RUN;
	if (w->prefix && !end)
		rc = -ENOMEM;
	else if (!deliver(w, &ev))
		goto out;
	else
		rc = resync_read(w, end, elen, &tmp);
	if (w->state == WS_CB)
		goto out;
	if (rc)
		set_error(w, rc, &tmp);
	ev = (struct etcd_event){ .type = ETCD_EV_PROGRESS,
				  .rev = w->next_rev - 1,
				  .resync = true };
	if (!rc)
		deliver(w, &ev);
out:
	free(end);
}

/* Sleep ms unless *stop becomes true; returns true when it did. */
static bool sleep_or_stop(const atomic_bool *stop, int ms)
{
	for (; ms > 0 && !atomic_load(stop); ms -= 50)
		sleep_ms(ms < 50 ? (unsigned)ms : 50);
	return atomic_load(stop);
}

int etcd_watch_read(const char *data, size_t len, size_t chunk, int64_t start_rev, etcd_watch_cb cb,
		    void *opaque, int64_t *next_rev)
{
	static const atomic_bool never;
	struct etcd_err err = { "" };
	struct watch w = { .key = "(stream)",
			   .cb = cb,
			   .opaque = opaque,
			   .stop = &never,
			   .err = &err,
			   .next_rev = start_rev > 0 ? start_rev : 0,
			   .conn_start = start_rev > 0 ? start_rev : 0,
			   .state = WS_RUN,
			   .line = { .max = ETCD_REPLY_MAX } };
	size_t off = 0;

	chunk = chunk ? chunk : 1;
	while (off < len && w.state == WS_RUN) {
		size_t n = len - off < chunk ? len - off : chunk;

		if (on_stream((char *)data + off, 1, n, &w) != n && w.state == WS_RUN)
			set_lost(&w, "stream refused");
		off += n;
	}
	etcd_buf_free(&w.line);
	*next_rev = w.next_rev;
	return (int)w.state;
}

int etcd_watch(struct etcd *e, const char *key, bool prefix, int64_t start_rev, etcd_watch_cb cb,
	       void *opaque, const atomic_bool *stop, struct etcd_err *err)
{
	struct watch w = { .e = e,
			   .key = key,
			   .prefix = prefix,
			   .cb = cb,
			   .opaque = opaque,
			   .stop = stop,
			   .err = err,
			   .next_rev = start_rev > 0 ? start_rev : 0,
			   .line = { .max = e->watch_line_max ? e->watch_line_max
							      : ETCD_REPLY_MAX } };
	unsigned ep = atomic_load(&e->cur) % e->nep;
	int backoff = BACKOFF_MIN_MS, rc = 0;

	while (!atomic_load(stop)) {
		watch_conn(&w, e->ep[ep]);
		if (w.state == WS_COMPACTED || w.state == WS_OVERSIZED)
			watch_resync(&w); /* RUN when done: reconnect at once */
		if (w.state == WS_STOP)
			break;
		if (w.state == WS_CB || w.state == WS_FATAL) {
			rc = w.rc;
			break;
		}
		if (w.state == WS_RUN)
			continue;
		if (w.created)
			backoff = BACKOFF_MIN_MS;
		log_msg(backoff == BACKOFF_MIN_MS ? LOG_WARN : LOG_DEBUG, "etcd",
			"watch key=%s rev=%lld: %s: %s; reconnecting", key, (long long)w.next_rev,
			e->ep[ep], w.why);
		ep = (ep + 1) % e->nep;
		if (sleep_or_stop(stop, backoff))
			break;
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
	}
	etcd_buf_free(&w.line);
	return rc;
}
