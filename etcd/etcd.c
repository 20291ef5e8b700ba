/* etcd client: endpoints, a pool of libcurl handles, one POST with failover and a
 * deadline, and etcd's errors turned into -errno with a readable reason. */
#include "etcd_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int etcd_fail(struct etcd_err *err, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err) {
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return rc;
}

int etcd_buf_add(struct etcd_buf *b, const void *p, size_t n)
{
	size_t cap = b->cap ? b->cap : 1024;
	char *np;

	if (n > b->max || b->len + n > b->max)
		return -EMSGSIZE;
	while (cap < b->len + n + 1)
		cap *= 2;
	if (cap != b->cap) {
		np = realloc(b->p, cap);
		if (!np)
			return -ENOMEM;
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = 0;
	return 0;
}

void etcd_buf_free(struct etcd_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* Split the comma-separated list into e->ep; each must be http:// or https://. */
static int parse_endpoints(struct etcd *e, const char *list, struct etcd_err *err)
{
	char *copy = strdup(list), *save = NULL, *tok;
	size_t n;
	int rc = 0;

	if (!copy)
		return -ENOMEM;
	e->ep = calloc(strlen(list) / 8 + 1, sizeof(*e->ep)); /* >= 8 chars per endpoint */
	for (tok = strtok_r(copy, ", ", &save); e->ep && tok; tok = strtok_r(NULL, ", ", &save)) {
		if (strncmp(tok, "http://", 7) && strncmp(tok, "https://", 8)) {
			rc = etcd_fail(err, -EINVAL, "etcd endpoint %s: not http(s)://host:port",
				       tok);
			break;
		}
		n = strlen(tok);
		while (n && tok[n - 1] == '/')
			tok[--n] = 0;
		if (!(e->ep[e->nep] = strdup(tok)))
			break;
		e->nep++;
	}
	if (!rc && (!e->ep || tok))
		rc = -ENOMEM;
	else if (!rc && !e->nep)
		rc = etcd_fail(err, -EINVAL, "etcd: no endpoint given");
	free(copy);
	return rc;
}

static int dup_opt(const char *s, char **out)
{
	*out = NULL;
	if (s && !(*out = strdup(s)))
		return -ENOMEM;
	return 0;
}

int etcd_open(const struct etcd_cfg *cfg, struct etcd **out, struct etcd_err *err)
{
	struct etcd *e;
	int rc;

	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return etcd_fail(err, -ENOMEM, "etcd: libcurl init failed");
	if (!cfg || !cfg->endpoints)
		return etcd_fail(err, -EINVAL, "etcd: no endpoint given");
	e = calloc(1, sizeof(*e));
	if (!e)
		return etcd_fail(err, -ENOMEM, "etcd: out of memory");
	pthread_mutex_init(&e->lock, NULL);
	e->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : ETCD_DEFAULT_TMO;
	rc = parse_endpoints(e, cfg->endpoints, err);
	if (!rc && (dup_opt(cfg->ca, &e->ca) || dup_opt(cfg->cert, &e->cert) ||
		    dup_opt(cfg->key, &e->key)))
		rc = -ENOMEM;
	if (rc) {
		etcd_close(e);
		return rc == -ENOMEM ? etcd_fail(err, rc, "etcd: out of memory") : rc;
	}
	*out = e;
	return 0;
}

void etcd_close(struct etcd *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < e->npool; i++)
		curl_easy_cleanup(e->pool[i]);
	for (size_t i = 0; i < e->nep; i++)
		free(e->ep[i]);
	free(e->ep);
	free(e->ca);
	free(e->cert);
	free(e->key);
	pthread_mutex_destroy(&e->lock);
	free(e);
}

void etcd_curl_common(struct etcd *e, CURL *h)
{
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 5L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 2L);
	if (e->ca)
		curl_easy_setopt(h, CURLOPT_CAINFO, e->ca);
	if (e->cert)
		curl_easy_setopt(h, CURLOPT_SSLCERT, e->cert);
	if (e->key)
		curl_easy_setopt(h, CURLOPT_SSLKEY, e->key);
}

/* Borrow an idle handle (its connection may be reused) or make a new one. */
static CURL *handle_get(struct etcd *e)
{
	CURL *h = NULL;

	pthread_mutex_lock(&e->lock);
	if (e->npool)
		h = e->pool[--e->npool];
	pthread_mutex_unlock(&e->lock);
	if (!h && (h = curl_easy_init()))
		etcd_curl_common(e, h);
	return h;
}

/* Give a handle back (libcurl has already closed a connection that failed). */
static void handle_put(struct etcd *e, CURL *h)
{
	pthread_mutex_lock(&e->lock);
	if (e->npool < ETCD_POOL_MAX) {
		e->pool[e->npool++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&e->lock);
	if (h)
		curl_easy_cleanup(h);
}

static size_t on_data(char *p, size_t sz, size_t n, void *opaque)
{
	return etcd_buf_add(opaque, p, sz * n) ? 0 : sz * n;
}

/* The request body, handed to libcurl as it sends: so the call knows whether any of it
 * left, and libcurl re-sends it by itself (a reused connection that closed under it)
 * only where sending twice does no harm. */
struct body_src {
	const char *p;
	size_t len, off;
	bool sent;	 /* libcurl took bytes of it to send */
	bool idempotent; /* a read or a keepalive: may go twice */
};

static size_t body_read(char *buf, size_t sz, size_t n, void *opaque)
{
	struct body_src *b = opaque;
	size_t k = b->len - b->off < sz * n ? b->len - b->off : sz * n;

	memcpy(buf, b->p + b->off, k);
	b->off += k;
	b->sent |= k > 0;
	return k;
}

/* libcurl rewinds the body to send it again: refused for a write, which may have been
 * applied already (the call then says the outcome is unknown). */
static int body_seek(void *opaque, curl_off_t off, int origin)
{
	struct body_src *b = opaque;

	if (!b->idempotent || origin != SEEK_SET || off < 0 || (size_t)off > b->len)
		return CURL_SEEKFUNC_CANTSEEK;
	b->off = (size_t)off;
	return CURL_SEEKFUNC_OK;
}

/* Reads, lease lookups and keepalives: harmless twice. */
static bool path_idempotent(const char *path)
{
	return !strcmp(path, "/v3/kv/range") || !strcmp(path, "/v3/lease/timetolive") ||
	       !strcmp(path, "/v3/lease/keepalive");
}

/* How one attempt on one endpoint ended. */
struct attempt {
	CURLcode cc;
	long http;
	long os_errno;
	bool sent; /* the request left: etcd may have acted on it */
	char curl_msg[CURL_ERROR_SIZE];
};

static void attempt_run(struct etcd *e, CURL *h, const char *url, struct body_src *body,
			long tmo_ms, struct etcd_buf *reply, struct attempt *a)
{
	struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
	long ctmo = e->timeout_ms / (long)e->nep;
	long sent = 0;

	hdr = hdr ? curl_slist_append(hdr, "Expect:") : NULL; /* no 100-continue round trip */
	a->curl_msg[0] = 0;
	body->off = 0;
	body->sent = false;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	curl_easy_setopt(h, CURLOPT_READFUNCTION, body_read);
	curl_easy_setopt(h, CURLOPT_READDATA, body);
	curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, body_seek);
	curl_easy_setopt(h, CURLOPT_SEEKDATA, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, tmo_ms);
	/* Leave a dead endpoint in time to try the others: its share of the timeout, at least
	 * a second (within what is left). */
	ctmo = ctmo < 1000 ? 1000 : ctmo;
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, ctmo < tmo_ms ? ctmo : tmo_ms);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, reply);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, a->curl_msg);
	a->cc = curl_easy_perform(h);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	curl_slist_free_all(hdr);
	a->http = 0;
	a->os_errno = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &a->http);
	curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &a->os_errno);
	/* Bytes of request sent (a reused connection has no connect time of its own); the
	 * body's reader saw them go even where libcurl then failed to re-send on a fresh
	 * connection, which it reports as a failed connect. */
	curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &sent);
	a->sent = sent > 0 || a->http > 0 || body->sent;
}

/* True when the request never reached the endpoint, so another one may be tried. */
static bool attempt_unreached(const struct attempt *a)
{
	if (a->sent) /* etcd may have acted on it: never sent to a second endpoint */
		return false;
	switch (a->cc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_OPERATION_TIMEDOUT: return true;
	default: return false;
	}
}

static void attempt_why(const struct attempt *a, char *buf, size_t len)
{
	if (a->cc == CURLE_COULDNT_CONNECT && a->os_errno)
		snprintf(buf, len, "%s", strerror((int)a->os_errno));
	else if (a->curl_msg[0])
		snprintf(buf, len, "%s", a->curl_msg);
	else
		snprintf(buf, len, "%s", curl_easy_strerror(a->cc));
}

/* "ep: why" appended to the list of endpoints that failed. */
static void note_unreached(char *list, size_t len, const char *ep, const struct attempt *a)
{
	char why[CURL_ERROR_SIZE];
	size_t used = strlen(list);

	attempt_why(a, why, sizeof(why));
	snprintf(list + used, len - used, "%s%s: %s", used ? "; " : "", ep, why);
}

/* A reached endpoint answered with a transport error or an HTTP status. */
static int attempt_result(struct etcd *e, const char *ep, const struct attempt *a,
			  struct etcd_buf *reply, json_t **out, struct etcd_err *err)
{
	json_t *j, *m;
	char why[CURL_ERROR_SIZE];
	int rc;

	if (a->cc == CURLE_OPERATION_TIMEDOUT)
		return etcd_fail(err, -ETIMEDOUT, "etcd timed out after %d ms: %s", e->timeout_ms,
				 ep);
	if (a->cc != CURLE_OK) {
		attempt_why(a, why, sizeof(why));
		rc = a->cc == CURLE_WRITE_ERROR ? -EMSGSIZE : -ECONNRESET;
		return etcd_fail(err, rc, "etcd connection lost: %s: %s", ep, why);
	}
	j = json_loadb(reply->p ? reply->p : "", reply->len, 0, NULL);
	if (!json_is_object(j)) {
		json_decref(j);
		return etcd_fail(err, -EPROTO, "etcd %s: HTTP %ld with a reply that is not JSON",
				 ep, a->http);
	}
	if (a->http == 200) {
		*out = j;
		return 0;
	}
	m = json_object_get(j, "message");
	rc = etcd_map_error((int)json_integer_value(json_object_get(j, "code")),
			    json_is_string(m) ? json_string_value(m) : "", err);
	json_decref(j);
	return rc;
}

int etcd_call(struct etcd *e, const char *path, const json_t *body, json_t **reply,
	      struct etcd_err *err)
{
	uint64_t deadline = now_ns() + (uint64_t)e->timeout_ms * 1000000;
	char *txt = json_dumps(body, JSON_COMPACT), url[512], tried[768] = "";
	unsigned first = atomic_load(&e->cur);
	struct etcd_buf rb = { .max = ETCD_REPLY_MAX };
	struct body_src src = { .p = txt,
				.len = txt ? strlen(txt) : 0,
				.idempotent = path_idempotent(path) };
	struct attempt a;
	CURL *h = NULL;
	int rc = -EHOSTUNREACH;
	size_t i;

	if (!txt || !(h = handle_get(e))) {
		free(txt);
		return etcd_fail(err, -ENOMEM, "etcd: out of memory");
	}
	for (i = 0; i < e->nep && now_ns() < deadline; i++) {
		unsigned k = (first + i) % e->nep;

		snprintf(url, sizeof(url), "%s%s", e->ep[k], path);
		rb.len = 0;
		attempt_run(e, h, url, &src, (long)((deadline - now_ns()) / 1000000) + 1, &rb, &a);
		if (!attempt_unreached(&a)) {
			rc = attempt_result(e, e->ep[k], &a, &rb, reply, err);
			/* A member that takes connections but does not answer (stalled, cut off
			 * from its peers, without a leader): the next call starts at the next
			 * one, so calls do not stay on it for ever. */
			atomic_store(&e->cur, rc == -ETIMEDOUT || rc == -EAGAIN ||
							      rc == -ECONNRESET || rc == -EPROTO
						      ? (k + 1) % (unsigned)e->nep
						      : k);
			break;
		}
		note_unreached(tried, sizeof(tried), e->ep[k], &a);
	}
	if (rc == -EHOSTUNREACH)
		rc = i == e->nep ? etcd_fail(err, rc, "etcd unreachable: %s", tried)
				 : etcd_fail(err, -ETIMEDOUT, "etcd timed out after %d ms (%s)",
					     e->timeout_ms, tried);
	handle_put(e, h);
	etcd_buf_free(&rb);
	free(txt);
	return rc;
}

/* gRPC codes etcd uses, by number (google.golang.org/grpc/codes). */
enum {
	G_UNKNOWN = 2,
	G_INVALID = 3,
	G_DEADLINE = 4,
	G_NOT_FOUND = 5,
	G_EXISTS = 6,
	G_DENIED = 7,
	G_EXHAUSTED = 8,
	G_PRECONDITION = 9,
	G_RANGE = 11,
	G_UNAVAILABLE = 14,
	G_UNAUTH = 16
};

int etcd_map_error(int code, const char *msg, struct etcd_err *err)
{
	if (strstr(msg, "compacted"))
		return etcd_fail(err, -ESTALE, "etcd: %s", msg);
	if (strstr(msg, "no leader"))
		return etcd_fail(err, -EAGAIN, "etcd: no leader");
	if (strstr(msg, "timed out") || strstr(msg, "deadline exceeded") || code == G_DEADLINE)
		return etcd_fail(err, -ETIMEDOUT, "etcd timed out (outcome unknown): %s", msg);
	if (strstr(msg, "already exists"))
		return etcd_fail(err, -EEXIST, "etcd: %s", msg);
	/* By message too: a watch canceled for them says so with no code. */
	if (strstr(msg, "permission denied"))
		return etcd_fail(err, -EACCES, "permission denied (%s)", msg);
	if (strstr(msg, "invalid auth token") || strstr(msg, "authentication failed"))
		return etcd_fail(err, -EPERM, "etcd: authentication failed: %s", msg);
	if (code == G_EXHAUSTED && strstr(msg, "too many requests")) /* passing, not full */
		return etcd_fail(err, -EAGAIN, "etcd busy: %s", msg);
	switch (code) {
	case G_DENIED: return etcd_fail(err, -EACCES, "permission denied (%s)", msg);
	case G_UNAUTH: return etcd_fail(err, -EPERM, "etcd: authentication failed: %s", msg);
	case G_NOT_FOUND: return etcd_fail(err, -ENOENT, "etcd: %s", msg);
	case G_EXISTS: return etcd_fail(err, -EEXIST, "etcd: %s", msg);
	case G_RANGE: return etcd_fail(err, -ERANGE, "etcd: %s", msg);
	case G_EXHAUSTED: return etcd_fail(err, -ENOSPC, "etcd: %s", msg);
	case G_INVALID:
	case G_PRECONDITION: return etcd_fail(err, -EINVAL, "etcd refused the request: %s", msg);
	case G_UNAVAILABLE: return etcd_fail(err, -EAGAIN, "etcd unavailable: %s", msg);
	case G_UNKNOWN:
	default: return etcd_fail(err, -EIO, "etcd error %d: %s", code, msg);
	}
}
