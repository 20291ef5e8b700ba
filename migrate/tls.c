/* Mutual TLS 1.3 over TCP: contexts from a --tls-dir, listen/connect/accept with deadlines,
 * and full reads and writes that map OpenSSL's errors onto -errno. See tls_priv.h. */
#include "tls_priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define TLS_SOCKBUF	     (4 << 20) /* per direction: a few ms of a 10 Gbit/s link */
#define TLS_ACCEPTED	     0x01      /* the server's "your certificate is fine" byte */
#define TLS_RECORD_HANDSHAKE 0x16

struct tls_ctx {
	SSL_CTX *ssl;
	bool server;
};

struct tls_conn {
	SSL *ssl;
	int fd;
	bool server;
	bool broken;	    /* a fatal error happened: no close_notify, no more I/O */
	const char *expect; /* mig_tls_connect: the name the peer must carry (during it) */
	char seen_cn[256];  /* CN of the leaf the peer presented, even when refused */
	char peer_addr[INET6_ADDRSTRLEN + 16];
};

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...) CME_PRINTF(4, 5);
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* OpenSSL's most specific reason for the last failure, for one-line messages. */
static const char *ssl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	return r ? r : "unknown error";
}

static void ignore_sigpipe(void)
{
	struct sigaction sa;

	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
}

/* ---- time and sockets --------------------------------------------------------------- */

static uint64_t deadline_in(int timeout_ms)
{
	return timeout_ms < 0 ? UINT64_MAX : now_ns() + (uint64_t)timeout_ms * 1000000u;
}

/* Milliseconds left, rounded up (so 0 means the deadline has passed); -1 for none. */
static int ms_left(uint64_t deadline)
{
	uint64_t now = now_ns();

	if (deadline == UINT64_MAX)
		return -1;
	if (now >= deadline)
		return 0;
	return (int)((deadline - now + 999999) / 1000000);
}

static int sock_timeout(int fd, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		return -errno;
	return 0;
}

static bool sysctl_at_least(const char *path, long want)
{
	FILE *f = fopen(path, "re");
	long v = 0;
	bool ok;

	if (!f)
		return false;
	ok = fscanf(f, "%ld", &v) == 1 && v >= want;
	fclose(f);
	return ok;
}

/* TCP_NODELAY (records are flushed whole) and big buffers. Setting SO_*BUF turns off
 * Linux's buffer autotuning, so only ask when the kernel will grant the full size. */
static void tune_socket(int fd)
{
	int one = 1, sz = TLS_SOCKBUF;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (sysctl_at_least("/proc/sys/net/core/wmem_max", sz))
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	if (sysctl_at_least("/proc/sys/net/core/rmem_max", sz))
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
}

static void format_addr(const struct sockaddr *sa, socklen_t len, char *buf, size_t buflen)
{
	char h[INET6_ADDRSTRLEN], p[8];

	if (getnameinfo(sa, len, h, sizeof(h), p, sizeof(p), NI_NUMERICHOST | NI_NUMERICSERV))
		snprintf(buf, buflen, "?");
	else if (sa->sa_family == AF_INET6)
		snprintf(buf, buflen, "[%s]:%s", h, p);
	else
		snprintf(buf, buflen, "%s:%s", h, p);
}

static bool is_ip_literal(const char *s)
{
	unsigned char a[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

/* ---- contexts ----------------------------------------------------------------------- */

/* Copy the subject CN of x into buf, printable ASCII only (it ends up in logs). */
static void cert_cn(X509 *x, char *buf, size_t len)
{
	buf[0] = '\0';
	if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, (int)len) < 0)
		buf[0] = '\0';
	for (char *p = buf; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			*p = '?';
}

/* OpenSSL decides; this only remembers who the peer claimed to be, for the messages. */
static int verify_cb(int ok, X509_STORE_CTX *xs)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_conn *c = ssl ? SSL_get_app_data(ssl) : NULL;
	X509 *leaf = X509_STORE_CTX_get0_cert(xs);

	if (c && leaf && !c->seen_cn[0])
		cert_cn(leaf, c->seen_cn, sizeof(c->seen_cn));
	return ok;
}

/* Our own certificate must chain to our CA and suit our role; say so now rather than
 * letting every peer refuse us later with a vaguer alert. */
static int check_own_cert(SSL_CTX *s, bool server, const char *crt, const char *ca, char *err,
			  size_t errlen)
{
	X509_STORE_CTX *xs = X509_STORE_CTX_new();
	X509 *x = SSL_CTX_get0_certificate(s);
	STACK_OF(X509) *chain = NULL; /* intermediates from tls.crt, if any */
	int rc = 0;

	SSL_CTX_get0_chain_certs(s, &chain);
	if (!xs || !x || !X509_STORE_CTX_init(xs, SSL_CTX_get_cert_store(s), x, chain))
		rc = fail(err, errlen, -ENOMEM, "cannot check %s: %s", crt, ssl_reason());
	else if (!X509_STORE_CTX_set_purpose(xs, server ? X509_PURPOSE_SSL_SERVER
							: X509_PURPOSE_SSL_CLIENT) ||
		 X509_verify_cert(xs) != 1)
		rc = fail(err, errlen, -EINVAL, "%s does not verify against %s as a TLS %s: %s",
			  crt, ca, server ? "server" : "client",
			  X509_verify_cert_error_string(X509_STORE_CTX_get_error(xs)));
	X509_STORE_CTX_free(xs);
	return rc;
}

static int ctx_load(SSL_CTX *s, const char *dir, bool server, char *err, size_t errlen)
{
	char ca[4096], crt[4096], key[4096];
	STACK_OF(X509_NAME) * names;

	snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
	snprintf(crt, sizeof(crt), "%s/tls.crt", dir);
	snprintf(key, sizeof(key), "%s/tls.key", dir);
	if (access(ca, R_OK) < 0 || access(crt, R_OK) < 0 || access(key, R_OK) < 0)
		return fail(err, errlen, -errno, "cannot read %s/{ca.crt,tls.crt,tls.key}: %s", dir,
			    strerror(errno));
	if (SSL_CTX_use_certificate_chain_file(s, crt) != 1)
		return fail(err, errlen, -EINVAL, "cannot load %s: %s", crt, ssl_reason());
	if (SSL_CTX_use_PrivateKey_file(s, key, SSL_FILETYPE_PEM) != 1)
		return fail(err, errlen, -EINVAL, "cannot load %s: %s", key, ssl_reason());
	if (SSL_CTX_check_private_key(s) != 1)
		return fail(err, errlen, -EINVAL, "%s does not match %s", key, crt);
	if (SSL_CTX_load_verify_locations(s, ca, NULL) != 1)
		return fail(err, errlen, -EINVAL, "cannot load %s: %s", ca, ssl_reason());
	if (server) {
		names = SSL_load_client_CA_file(ca);
		if (!names)
			return fail(err, errlen, -EINVAL, "no CA name in %s", ca);
		SSL_CTX_set_client_CA_list(s, names);
	}
	return check_own_cert(s, server, crt, ca, err, errlen);
}

int mig_tls_ctx_new(const char *tls_dir, bool server, struct tls_ctx **out, char *err,
		    size_t errlen)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct tls_ctx *ctx;
	int rc;

	pthread_once(&once, ignore_sigpipe);
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return fail(err, errlen, -ENOMEM, "out of memory");
	ctx->server = server;
	ctx->ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!ctx->ssl) {
		rc = fail(err, errlen, -ENOMEM, "SSL_CTX_new: %s", ssl_reason());
		goto out_free;
	}
	if (!SSL_CTX_set_min_proto_version(ctx->ssl, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx->ssl, TLS1_3_VERSION)) {
		rc = fail(err, errlen, -ENOTSUP, "this OpenSSL has no TLS 1.3");
		goto out_ctx;
	}
	rc = ctx_load(ctx->ssl, tls_dir, server, err, errlen);
	if (rc < 0)
		goto out_ctx;
	SSL_CTX_set_verify(ctx->ssl,
			   SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
			   verify_cb);
	/* One connection per migration: no resumption, so every peer shows its certificate. */
	SSL_CTX_set_session_cache_mode(ctx->ssl, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx->ssl, 0);
	*out = ctx;
	return 0;
out_ctx:
	SSL_CTX_free(ctx->ssl);
out_free:
	free(ctx);
	ERR_clear_error();
	return rc;
}

void mig_tls_ctx_free(struct tls_ctx *ctx)
{
	if (!ctx)
		return;
	SSL_CTX_free(ctx->ssl);
	free(ctx);
}

/* ---- addresses ---------------------------------------------------------------------- */

static bool host_chars_ok(const char *h, size_t n, bool v6)
{
	for (size_t i = 0; i < n; i++) {
		char ch = h[i];
		bool ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
			  (ch >= 'A' && ch <= 'Z') || ch == '.' || ch == '-' || ch == '_' ||
			  (v6 && (ch == ':' || ch == '%'));

		if (!ok)
			return false;
	}
	return true;
}

int mig_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *h, *colon, *end;
	unsigned long v = 0;
	size_t n, i;

	if (!s || !host || !hostlen || !port)
		return -EINVAL;
	if (s[0] == '[') {
		end = strchr(s, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		h = s + 1;
		n = (size_t)(end - h);
		colon = end + 1;
		if (!memchr(h, ':', n) || !host_chars_ok(h, n, true))
			return -EINVAL; /* brackets are for IPv6 literals only */
	} else {
		colon = strchr(s, ':');
		if (!colon || strchr(colon + 1, ':'))
			return -EINVAL; /* none, or a bare IPv6 address */
		h = s;
		n = (size_t)(colon - s);
		if (!host_chars_ok(h, n, false))
			return -EINVAL;
	}
	if (n == 0 || n >= hostlen)
		return -EINVAL;
	for (i = 1; colon[i]; i++) {
		if (i > 5 || colon[i] < '0' || colon[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(colon[i] - '0');
	}
	if (i == 1 || v > 65535)
		return -EINVAL;
	memcpy(host, h, n);
	host[n] = '\0';
	*port = (uint16_t)v;
	return 0;
}

static int resolve(const char *host, uint16_t port, bool passive, struct addrinfo **res, char *err,
		   size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	char p[8];
	int r;

	if (passive)
		hints.ai_flags |= AI_PASSIVE;
	snprintf(p, sizeof(p), "%u", port);
	r = getaddrinfo(host, p, &hints, res);
	if (r == EAI_SYSTEM)
		return fail(err, errlen, -errno, "cannot resolve %s: %s", host, strerror(errno));
	if (r)
		return fail(err, errlen, -EHOSTUNREACH, "cannot resolve %s: %s", host,
			    gai_strerror(r));
	return 0;
}

int mig_tls_listen(const char *host, uint16_t port, int *fd_out, uint16_t *bound_port, char *err,
		   size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct addrinfo *res, *ai;
	int fd = -1, one = 1, rc;

	rc = resolve(host, port, true, &res, err, errlen);
	if (rc < 0)
		return rc;
	rc = -EADDRNOTAVAIL;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			rc = -errno;
			continue;
		}
		/* Accepted sockets inherit the buffer sizes, which matter before the SYN. */
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		tune_socket(fd);
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0)
			break;
		rc = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return fail(err, errlen, rc, "cannot listen on %s:%u: %s", host, port,
			    strerror(-rc));
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		rc = -errno;
		close(fd);
		return fail(err, errlen, rc, "getsockname: %s", strerror(-rc));
	}
	if (bound_port)
		*bound_port =
			ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						       : ((struct sockaddr_in *)&ss)->sin_port);
	*fd_out = fd;
	return 0;
}

/* ---- handshake ---------------------------------------------------------------------- */

static int verify_failure(struct tls_conn *c, long v, char *err, size_t errlen)
{
	const char *cn = c->seen_cn[0] ? c->seen_cn : "?";

	switch (v) {
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
		return fail(err, errlen, -EACCES,
			    "certificate not signed by the cluster CA (CN=%s)", cn);
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		return fail(err, errlen, -EACCES, "certificate is for %s, not %s", cn,
			    c->expect ? c->expect : "?");
	case X509_V_ERR_CERT_HAS_EXPIRED:
		return fail(err, errlen, -EACCES, "certificate expired (CN=%s)", cn);
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return fail(err, errlen, -EACCES, "certificate not yet valid, clock skew? (CN=%s)",
			    cn);
	case X509_V_ERR_INVALID_PURPOSE:
		return fail(err, errlen, -EACCES, "certificate of %s is not for a TLS %s", cn,
			    c->server ? "client" : "server (an operator certificate?)");
	default:
		return fail(err, errlen, -EACCES, "certificate refused (CN=%s): %s", cn,
			    X509_verify_cert_error_string(v));
	}
}

static int alert_failure(int alert, char *err, size_t errlen)
{
	const char *what = SSL_alert_desc_string_long(alert);

	switch (alert) {
	case SSL_AD_UNKNOWN_CA:
	case SSL_AD_BAD_CERTIFICATE:
	case SSL_AD_UNSUPPORTED_CERTIFICATE:
	case SSL_AD_CERTIFICATE_EXPIRED:
	case SSL_AD_CERTIFICATE_UNKNOWN:
	case SSL_AD_CERTIFICATE_REQUIRED:
	case SSL_AD_ACCESS_DENIED:
		return fail(err, errlen, -EACCES, "peer refused our certificate (alert: %s)", what);
	case SSL_AD_PROTOCOL_VERSION:
		return fail(err, errlen, -EPROTO, "peer does not speak TLS 1.3");
	default: return fail(err, errlen, -EPROTO, "peer aborted the handshake (alert: %s)", what);
	}
}

/* Why the handshake (or the wait for the acceptance byte) failed, as -errno and a line. */
static int handshake_failure(struct tls_conn *c, int sslerr, int saved_errno, char *err,
			     size_t errlen)
{
	unsigned long e = ERR_peek_last_error();
	int reason = ERR_GET_LIB(e) == ERR_LIB_SSL ? ERR_GET_REASON(e) : 0;
	long v = SSL_get_verify_result(c->ssl);

	c->broken = true;
	if (v != X509_V_OK)
		return verify_failure(c, v, err, errlen);
	if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
		return fail(err, errlen, -EACCES, "peer sent no certificate");
	if (reason > SSL_AD_REASON_OFFSET)
		return alert_failure(reason - SSL_AD_REASON_OFFSET, err, errlen);
	if (reason == SSL_R_UNSUPPORTED_PROTOCOL || reason == SSL_R_NO_PROTOCOLS_AVAILABLE)
		return fail(err, errlen, -EPROTO, "peer does not speak TLS 1.3");
	if (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_HTTP_REQUEST ||
	    reason == SSL_R_PACKET_LENGTH_TOO_LONG || reason == SSL_R_UNKNOWN_PROTOCOL)
		return fail(err, errlen, -EPROTO, "not a TLS %s (plain TCP?)",
			    c->server ? "client" : "server");
	if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING || sslerr == SSL_ERROR_ZERO_RETURN ||
	    (sslerr == SSL_ERROR_SYSCALL &&
	     (saved_errno == 0 || saved_errno == ECONNRESET || saved_errno == EPIPE)))
		return fail(err, errlen, -EPIPE, "peer closed the connection during the handshake");
	if (sslerr == SSL_ERROR_SYSCALL && saved_errno)
		return fail(err, errlen, -saved_errno, "handshake: %s", strerror(saved_errno));
	return fail(err, errlen, -EPROTO, "TLS handshake failed: %s", ssl_reason());
}

/* Run fn (SSL_do_handshake, or a 1-byte read/write) until done or the deadline passes. */
static int step_until(struct tls_conn *c, uint64_t deadline, int (*fn)(struct tls_conn *),
		      char *err, size_t errlen)
{
	for (;;) {
		int left = ms_left(deadline), r, e, saved;

		if (left == 0 || sock_timeout(c->fd, left < 0 ? 0 : left) < 0) {
			c->broken = true;
			return fail(err, errlen, -ETIMEDOUT, "TLS handshake timed out");
		}
		ERR_clear_error();
		errno = 0;
		r = fn(c);
		saved = errno;
		if (r == 1)
			break;
		e = SSL_get_error(c->ssl, r);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
			return handshake_failure(c, e, saved, err, errlen);
	}
	/* The verified leaf, rather than whatever the callback saw first. */
	if (SSL_get0_peer_certificate(c->ssl))
		cert_cn(SSL_get0_peer_certificate(c->ssl), c->seen_cn, sizeof(c->seen_cn));
	return sock_timeout(c->fd, 0);
}

static int do_handshake(struct tls_conn *c)
{
	return SSL_do_handshake(c->ssl);
}

static int send_accepted(struct tls_conn *c)
{
	static const unsigned char b = TLS_ACCEPTED;
	size_t n;

	return SSL_write_ex(c->ssl, &b, 1, &n);
}

static int recv_accepted(struct tls_conn *c)
{
	unsigned char b = 0;
	size_t n;
	int r = SSL_read_ex(c->ssl, &b, 1, &n);

	if (r == 1 && b != TLS_ACCEPTED) {
		/* Not our protocol: report it as a failure that is not a retry. */
		ERR_raise(ERR_LIB_SSL, SSL_R_UNEXPECTED_MESSAGE);
		return 0;
	}
	return r;
}

static struct tls_conn *conn_new(struct tls_ctx *ctx, int fd, char *err, size_t errlen)
{
	struct tls_conn *c = calloc(1, sizeof(*c));

	if (!c || !(c->ssl = SSL_new(ctx->ssl)) || SSL_set_fd(c->ssl, fd) != 1) {
		if (c)
			SSL_free(c->ssl);
		free(c);
		fail(err, errlen, -ENOMEM, "SSL_new: %s", ssl_reason());
		return NULL;
	}
	c->fd = fd;
	c->server = ctx->server;
	SSL_set_app_data(c->ssl, c);
	return c;
}

/* ---- connect ------------------------------------------------------------------------ */

static int set_blocking(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static int connect_one(const struct addrinfo *ai, uint64_t deadline)
{
	struct pollfd p = { .events = POLLOUT };
	socklen_t sl = sizeof(int);
	int fd, soerr = 0, r;

	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	tune_socket(fd);
	p.fd = fd;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINPROGRESS)
			goto fail_errno;
		do
			r = poll(&p, 1, ms_left(deadline));
		while (r < 0 && errno == EINTR);
		if (r < 0)
			goto fail_errno;
		if (r == 0) {
			close(fd);
			return -ETIMEDOUT;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			goto fail_errno;
		if (soerr) {
			close(fd);
			return -soerr;
		}
	}
	if (set_blocking(fd) < 0)
		goto fail_errno;
	return fd;
fail_errno:
	r = -errno;
	close(fd);
	return r;
}

static int tcp_connect(const char *host, uint16_t port, uint64_t deadline, char *err, size_t errlen)
{
	struct addrinfo *res, *ai;
	int fd = -ECONNREFUSED, rc;

	rc = resolve(host, port, false, &res, err, errlen);
	if (rc < 0)
		return rc;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = connect_one(ai, deadline);
		if (fd >= 0 || fd == -ETIMEDOUT)
			break;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return fail(err, errlen, fd, "cannot connect to %s:%u: %s", host, port,
			    strerror(-fd));
	return fd;
}

static void set_expected_peer(SSL *ssl, const char *name)
{
	X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);

	X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (is_ip_literal(name)) {
		X509_VERIFY_PARAM_set1_ip_asc(vp, name);
	} else {
		X509_VERIFY_PARAM_set1_host(vp, name, 0);
		SSL_set_tlsext_host_name(ssl, name);
	}
}

int mig_tls_connect(struct tls_ctx *ctx, const char *host, uint16_t port, const char *peer_name,
		    int timeout_ms, struct tls_conn **out, char *err, size_t errlen)
{
	uint64_t deadline = deadline_in(timeout_ms);
	struct tls_conn *c;
	int fd, rc;

	if (ctx->server)
		return fail(err, errlen, -EINVAL, "tls_connect needs a client context");
	fd = tcp_connect(host, port, deadline, err, errlen);
	if (fd < 0)
		return fd;
	c = conn_new(ctx, fd, err, errlen);
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	snprintf(c->peer_addr, sizeof(c->peer_addr), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host,
		 port);
	c->expect = peer_name ? peer_name : host;
	set_expected_peer(c->ssl, c->expect);
	SSL_set_connect_state(c->ssl);
	rc = step_until(c, deadline, do_handshake, err, errlen);
	if (rc == 0)
		rc = step_until(c, deadline, recv_accepted, err, errlen);
	c->expect = NULL;
	if (rc < 0) {
		if (rc == -EACCES || rc == -EPROTO)
			log_warn("tls", "refused peer %s: %s", c->peer_addr, err);
		mig_tls_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

/* ---- accept ------------------------------------------------------------------------- */

static int wait_readable(int fd, uint64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r;

	do
		r = poll(&p, 1, ms_left(deadline));
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	return r == 0 ? -ETIMEDOUT : 0;
}

/* A TLS client speaks first, with a handshake record; anything else is not a TLS client. */
static int check_first_byte(struct tls_conn *c, uint64_t deadline, char *err, size_t errlen)
{
	unsigned char b;
	ssize_t n;
	int rc = wait_readable(c->fd, deadline);

	if (rc == -ETIMEDOUT)
		return fail(err, errlen, rc, "TLS handshake timed out (peer sent nothing)");
	if (rc < 0)
		return fail(err, errlen, rc, "poll: %s", strerror(-rc));
	do
		n = recv(c->fd, &b, 1, MSG_PEEK);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return fail(err, errlen, -errno, "recv: %s", strerror(errno));
	if (n == 0)
		return fail(err, errlen, -EPIPE, "peer closed the connection before the handshake");
	if (b != TLS_RECORD_HANDSHAKE)
		return fail(err, errlen, -EPROTO, "not a TLS client (plain TCP?)");
	return 0;
}

static int accept_tcp(int listen_fd, uint64_t deadline, char *addr, size_t addrlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, rc;

	for (;;) {
		rc = wait_readable(listen_fd, deadline);
		if (rc < 0)
			return rc;
		sl = sizeof(ss);
		fd = accept4(listen_fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
		if (fd >= 0)
			break;
		/* Gone before we took it, or a signal: wait again. */
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
		    errno != ECONNABORTED)
			return -errno;
	}
	format_addr((struct sockaddr *)&ss, sl, addr, addrlen);
	tune_socket(fd);
	return fd;
}

int mig_tls_accept(struct tls_ctx *ctx, int listen_fd, int timeout_ms, struct tls_conn **out,
		   char *err, size_t errlen)
{
	char addr[sizeof(((struct tls_conn *)0)->peer_addr)];
	struct tls_conn *c;
	uint64_t deadline;
	int fd, rc;

	if (!ctx->server)
		return fail(err, errlen, -EINVAL, "tls_accept needs a server context");
	fd = accept_tcp(listen_fd, deadline_in(timeout_ms), addr, sizeof(addr));
	if (fd == -ETIMEDOUT)
		return fail(err, errlen, fd, "no connection within %d ms", timeout_ms);
	if (fd < 0)
		return fail(err, errlen, fd, "accept: %s", strerror(-fd));
	c = conn_new(ctx, fd, err, errlen);
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	snprintf(c->peer_addr, sizeof(c->peer_addr), "%s", addr);
	deadline = deadline_in(timeout_ms < 0 ? TLS_HANDSHAKE_DEFAULT_MS : timeout_ms);
	SSL_set_accept_state(c->ssl);
	rc = check_first_byte(c, deadline, err, errlen);
	if (rc == 0)
		rc = step_until(c, deadline, do_handshake, err, errlen);
	if (rc == 0)
		rc = step_until(c, deadline, send_accepted, err, errlen);
	if (rc < 0) {
		log_warn("tls", "refused peer %s: %s", c->peer_addr, err);
		c->broken = true;
		mig_tls_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

/* ---- data --------------------------------------------------------------------------- */

/* Map a failed SSL_read_ex/SSL_write_ex; 1 means "retry" (a signal interrupted it). */
static int io_failure(struct tls_conn *c, int r, int saved_errno)
{
	int e = SSL_get_error(c->ssl, r);
	unsigned long le = ERR_peek_last_error();

	switch (e) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		if (saved_errno == EINTR)
			return 1;
		return -ETIMEDOUT;
	case SSL_ERROR_ZERO_RETURN: return -EPIPE;
	case SSL_ERROR_SYSCALL:
		c->broken = true;
		if (saved_errno == 0 || saved_errno == EPIPE || saved_errno == ECONNRESET ||
		    saved_errno == ESHUTDOWN)
			return -EPIPE;
		return -EIO;
	default:
		c->broken = true;
		if (ERR_GET_LIB(le) == ERR_LIB_SSL &&
		    ERR_GET_REASON(le) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
			return -EPIPE;
		log_warn("tls", "peer %s: %s", c->peer_addr, ssl_reason());
		return -EIO;
	}
}

int mig_tls_write_all(struct tls_conn *c, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	while (len) {
		size_t n = 0;
		int r, saved;

		if (c->broken)
			return -EPIPE;
		ERR_clear_error();
		errno = 0;
		r = SSL_write_ex(c->ssl, p, len, &n);
		saved = errno;
		if (r == 1) {
			p += n;
			len -= n;
			continue;
		}
		r = io_failure(c, r, saved);
		if (r < 0) {
			c->broken = true; /* OpenSSL wants the same write retried; we do not */
			return r;
		}
	}
	return 0;
}

int mig_tls_read_full(struct tls_conn *c, void *buf, size_t len)
{
	unsigned char *p = buf;
	size_t want = len;

	while (len) {
		size_t n = 0;
		int r, saved;

		if (c->broken)
			return -EPIPE;
		ERR_clear_error();
		errno = 0;
		r = SSL_read_ex(c->ssl, p, len, &n);
		saved = errno;
		if (r == 1) {
			p += n;
			len -= n;
			continue;
		}
		r = io_failure(c, r, saved);
		if (r < 0) {
			/* A timeout before any byte leaves the stream in step; after some, not. */
			if (r != -ETIMEDOUT || len != want)
				c->broken = true;
			return r;
		}
	}
	return 0;
}

int mig_tls_set_timeout(struct tls_conn *c, int ms)
{
	unsigned int user = (unsigned int)ms;

	if (ms < 0)
		return -EINVAL;
	/* SO_SNDTIMEO restarts with every send(); a peer that stopped acknowledging (a cut
	 * link) is detected within ms only by TCP_USER_TIMEOUT, which fails the connection. */
	if (setsockopt(c->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user, sizeof(user)) < 0)
		return -errno;
	return sock_timeout(c->fd, ms);
}

void mig_tls_shutdown(struct tls_conn *c)
{
	if (c)
		(void)shutdown(c->fd, SHUT_RDWR);
}

void mig_tls_close(struct tls_conn *c)
{
	if (!c)
		return;
	/* close_notify only if it can go out now: a stuck peer must not hold us. */
	if (!c->broken && SSL_is_init_finished(c->ssl) && fd_set_nonblock(c->fd) == 0)
		(void)SSL_shutdown(c->ssl);
	ERR_clear_error();
	SSL_free(c->ssl);
	close(c->fd);
	free(c);
}

bool mig_tls_peer_is_node(const struct tls_conn *c)
{
	X509 *x = SSL_get0_peer_certificate(c->ssl);
	uint32_t xku = x ? X509_get_extended_key_usage(x) : 0;

	/* Node certificates serve and connect; operator certificates only connect. */
	return x && (xku & XKU_SSL_SERVER);
}

const char *mig_tls_peer_cn(const struct tls_conn *c)
{
	return c->seen_cn;
}

const char *mig_tls_peer_addr(const struct tls_conn *c)
{
	return c->peer_addr;
}

const char *mig_tls_version(const struct tls_conn *c)
{
	return SSL_get_version(c->ssl);
}

const char *mig_tls_cipher(const struct tls_conn *c)
{
	return SSL_get_cipher_name(c->ssl);
}

int mig_tls_fd(const struct tls_conn *c)
{
	return c->fd;
}
