/* Connections: connect or accept over TCP, run the handshake, and the acceptance byte that
 * tells a client its certificate was taken (see net.h); close, and who the peer is. */
#include "net_priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#define TLS_ACCEPTED	     0x01 /* the server's "your certificate is fine" byte */
#define TLS_RECORD_HANDSHAKE 0x16

static bool is_ip_literal(const char *s)
{
	unsigned char a[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
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
		net_errf(err, errlen, -ENOMEM, "SSL_new: %s", net_tls_reason());
		return NULL;
	}
	c->fd = fd;
	c->server = ctx->server;
	SSL_set_app_data(c->ssl, c);
	return c;
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

int net_tls_connect(struct tls_ctx *ctx, const char *host, uint16_t port, const char *peer_name,
		    int timeout_ms, struct tls_conn **out, char *err, size_t errlen)
{
	uint64_t deadline = net_deadline_in(timeout_ms);
	struct tls_conn *c;
	int fd, rc;

	if (ctx->server)
		return net_errf(err, errlen, -EINVAL, "tls_connect needs a client context");
	fd = net_tcp_connect(host, port, deadline, err, errlen);
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
	rc = net_tls_step(c, deadline, do_handshake, err, errlen);
	if (rc == 0)
		rc = net_tls_step(c, deadline, recv_accepted, err, errlen);
	c->expect = NULL;
	if (rc < 0) {
		if (rc == -EACCES || rc == -EPROTO)
			log_warn("tls", "refused peer %s: %s", c->peer_addr, err);
		net_tls_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

/* A TLS client speaks first, with a handshake record; anything else is not a TLS client. */
static int check_first_byte(struct tls_conn *c, uint64_t deadline, char *err, size_t errlen)
{
	unsigned char b;
	ssize_t n;
	int rc = net_sock_wait_readable(c->fd, deadline);

	if (rc == -ETIMEDOUT)
		return net_errf(err, errlen, rc, "TLS handshake timed out (peer sent nothing)");
	if (rc < 0)
		return net_errf(err, errlen, rc, "poll: %s", strerror(-rc));
	do
		n = recv(c->fd, &b, 1, MSG_PEEK);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return net_errf(err, errlen, -errno, "recv: %s", strerror(errno));
	if (n == 0)
		return net_errf(err, errlen, -EPIPE,
				"peer closed the connection before the handshake");
	if (b != TLS_RECORD_HANDSHAKE)
		return net_errf(err, errlen, -EPROTO, "not a TLS client (plain TCP?)");
	return 0;
}

int net_tls_accept_tcp(int listen_fd, int timeout_ms, char *addr, size_t addrlen)
{
	return net_tcp_accept(listen_fd, net_deadline_in(timeout_ms), addr, addrlen);
}

int net_tls_accept_fd(struct tls_ctx *ctx, int fd, const char *addr, int timeout_ms,
		      struct tls_conn **out, char *err, size_t errlen)
{
	struct tls_conn *c;
	uint64_t deadline;
	int rc;

	if (!ctx->server) {
		close(fd);
		return net_errf(err, errlen, -EINVAL, "tls_accept needs a server context");
	}
	c = conn_new(ctx, fd, err, errlen);
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	snprintf(c->peer_addr, sizeof(c->peer_addr), "%s", addr);
	deadline = net_deadline_in(timeout_ms < 0 ? TLS_HANDSHAKE_DEFAULT_MS : timeout_ms);
	SSL_set_accept_state(c->ssl);
	rc = check_first_byte(c, deadline, err, errlen);
	if (rc == 0)
		rc = net_tls_step(c, deadline, do_handshake, err, errlen);
	if (rc == 0)
		rc = net_tls_step(c, deadline, send_accepted, err, errlen);
	if (rc < 0) {
		log_warn("tls", "refused peer %s: %s", c->peer_addr, err);
		c->broken = true;
		net_tls_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

int net_tls_accept(struct tls_ctx *ctx, int listen_fd, int timeout_ms, struct tls_conn **out,
		   char *err, size_t errlen)
{
	char addr[sizeof(((struct tls_conn *)0)->peer_addr)];
	int fd;

	if (!ctx->server)
		return net_errf(err, errlen, -EINVAL, "tls_accept needs a server context");
	fd = net_tls_accept_tcp(listen_fd, timeout_ms, addr, sizeof(addr));
	if (fd == -ETIMEDOUT)
		return net_errf(err, errlen, fd, "no connection within %d ms", timeout_ms);
	if (fd < 0)
		return net_errf(err, errlen, fd, "accept: %s", strerror(-fd));
	return net_tls_accept_fd(ctx, fd, addr, timeout_ms, out, err, errlen);
}

void net_tls_close(struct tls_conn *c)
{
	if (!c)
		return;
	if (c->mem) { /* net_mem_conn: no TLS, no socket */
		free(c);
		return;
	}
	/* close_notify only if it can go out now: a stuck peer must not hold us. */
	if (!c->broken && SSL_is_init_finished(c->ssl) && fd_set_nonblock(c->fd) == 0)
		(void)SSL_shutdown(c->ssl);
	ERR_clear_error();
	SSL_free(c->ssl);
	close(c->fd);
	free(c);
}

bool net_tls_peer_is_node(const struct tls_conn *c)
{
	X509 *x = SSL_get0_peer_certificate(c->ssl);

	/* Node certificates serve and connect (serverAuth and clientAuth); operator
	 * certificates only connect. Without the extension OpenSSL allows every use: such a
	 * certificate, even signed by the cluster CA, is no node's. */
	if (!x || !(X509_get_extension_flags(x) & EXFLAG_XKUSAGE))
		return false;
	uint32_t xku = X509_get_extended_key_usage(x);

	return (xku & XKU_SSL_SERVER) && (xku & XKU_SSL_CLIENT);
}

const char *net_tls_peer_cn(const struct tls_conn *c)
{
	return c->seen_cn;
}

const char *net_tls_peer_addr(const struct tls_conn *c)
{
	return c->peer_addr;
}

const char *net_tls_version(const struct tls_conn *c)
{
	return SSL_get_version(c->ssl);
}

const char *net_tls_cipher(const struct tls_conn *c)
{
	return SSL_get_cipher_name(c->ssl);
}

int net_tls_fd(const struct tls_conn *c)
{
	return c->fd;
}
