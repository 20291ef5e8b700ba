/* net (TLS): real mutual TLS 1.3 on loopback with certificates from certs/mkcerts.sh —
 * the good path both ways, and every refusal with the reason the operator will read. */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common.h"
#include "harness.h"
#include "net.h"
#include "unit.h"

#define BIG (10u << 20)

/* Two clusters: "good" (127.0.0.1, node-b, operator admin) and "evil" (127.0.0.1), plus
 * "evil/mixed": evil's 127.0.0.1 that also trusts the good CA, so it gets as far as showing
 * its certificate to a good server. */
static char good[512], evil[512];

static bool make_certs(void)
{
	const char *src = getenv("CME_SRCDIR"); /* where certs/ is; default: the current dir */

	if (good[0])
		return true;
	snprintf(good, sizeof(good), "%s", test_tmpdir());
	snprintf(evil, sizeof(evil), "%s", test_tmpdir());
	if (setenv("T_SRC", src ? src : ".", 1) || setenv("T_GOOD", good, 1) ||
	    setenv("T_EVIL", evil, 1))
		return false;
	if (system("sh \"$T_SRC/certs/mkcerts.sh\" \"$T_GOOD\" 127.0.0.1 node-b "
		   "--operator admin >/dev/null && "
		   "sh \"$T_SRC/certs/mkcerts.sh\" \"$T_EVIL\" 127.0.0.1 >/dev/null && "
		   "mkdir \"$T_EVIL/mixed\" && cp \"$T_EVIL/127.0.0.1/tls.crt\" "
		   "\"$T_EVIL/127.0.0.1/tls.key\" \"$T_EVIL/mixed/\" && "
		   "cat \"$T_GOOD/ca.crt\" \"$T_EVIL/ca.crt\" >\"$T_EVIL/mixed/ca.crt\" && "
		   /* good/noeku: signed by the good CA, no extendedKeyUsage at all */
		   "mkdir \"$T_GOOD/noeku\" && cp \"$T_GOOD/ca.crt\" \"$T_GOOD/noeku/\" && "
		   "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
		   "-keyout \"$T_GOOD/noeku/tls.key\" -subj /CN=noeku "
		   "-out \"$T_GOOD/noeku/req.csr\" 2>/dev/null && "
		   "openssl x509 -req -in \"$T_GOOD/noeku/req.csr\" -CA \"$T_GOOD/ca.crt\" "
		   "-CAkey \"$T_GOOD/ca.key\" -CAcreateserial -days 2 "
		   "-out \"$T_GOOD/noeku/tls.crt\" 2>/dev/null") != 0) {
		good[0] = '\0';
		return false;
	}
	return true;
}

static struct tls_ctx *ctx_of(const char *cluster, const char *name, bool server)
{
	char dir[1024], err[256] = "";
	struct tls_ctx *ctx = NULL;
	int rc;

	snprintf(dir, sizeof(dir), "%s/%s", cluster, name);
	rc = net_tls_ctx_new(dir, server, &ctx, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "net_tls_ctx_new(%s): %s\n", dir, err);
	return ctx;
}

#define CERTS_OR_FAIL()                                                                            \
	do {                                                                                       \
		if (!make_certs()) {                                                               \
			CU_FAIL("certs/mkcerts.sh failed");                                        \
			return;                                                                    \
		}                                                                                  \
	} while (0)

/* ---- a server thread: accept one connection, optionally echo a pattern ---------------- */

struct server {
	struct tls_ctx *ctx;
	int lfd;
	uint16_t port;
	int timeout_ms;
	size_t exchange; /* bytes to receive, check, then send back (0: none) */
	pthread_t thread;
	int rc, io_rc;
	bool data_ok;
	uint64_t elapsed_ms;
	char err[256], cn[256], version[32];
	bool node; /* net_tls_peer_is_node */
};

static unsigned char pattern_byte(size_t i, unsigned seed)
{
	return (unsigned char)((i * 2654435761u + seed) >> 7);
}

static void fill(unsigned char *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = pattern_byte(i, seed);
}

static bool check(const unsigned char *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		if (b[i] != pattern_byte(i, seed))
			return false;
	return true;
}

static void *server_main(void *arg)
{
	struct server *s = arg;
	struct tls_conn *c = NULL;
	uint64_t t0 = now_ns();
	unsigned char *buf;

	s->rc = net_tls_accept(s->ctx, s->lfd, s->timeout_ms, &c, s->err, sizeof(s->err));
	s->elapsed_ms = (now_ns() - t0) / 1000000;
	if (s->rc < 0)
		return NULL;
	snprintf(s->cn, sizeof(s->cn), "%s", net_tls_peer_cn(c));
	s->node = net_tls_peer_is_node(c);
	snprintf(s->version, sizeof(s->version), "%s", net_tls_version(c));
	if (s->exchange && (buf = malloc(s->exchange))) {
		s->io_rc = net_tls_read_full(c, buf, s->exchange);
		s->data_ok = s->io_rc == 0 && check(buf, s->exchange, 1);
		fill(buf, s->exchange, 2);
		if (s->io_rc == 0)
			s->io_rc = net_tls_write_all(c, buf, s->exchange);
		free(buf);
	}
	net_tls_close(c);
	return NULL;
}

/* Listen on 127.0.0.1:0 with a server ctx from cluster/name and start accepting. */
static bool server_start(struct server *s, const char *cluster, const char *name, int timeout_ms,
			 size_t exchange)
{
	char err[256];

	memset(s, 0, sizeof(*s));
	s->timeout_ms = timeout_ms;
	s->exchange = exchange;
	s->ctx = ctx_of(cluster, name, true);
	if (!s->ctx)
		return false;
	if (net_tls_listen("127.0.0.1", 0, &s->lfd, &s->port, err, sizeof(err)) < 0) {
		fprintf(stderr, "net_tls_listen: %s\n", err);
		net_tls_ctx_free(s->ctx);
		return false;
	}
	CU_ASSERT(s->port != 0);
	if (pthread_create(&s->thread, NULL, server_main, s) != 0) {
		close(s->lfd);
		net_tls_ctx_free(s->ctx);
		return false;
	}
	return true;
}

static void server_join(struct server *s)
{
	pthread_join(s->thread, NULL);
	close(s->lfd);
	net_tls_ctx_free(s->ctx);
}

/* Client from cluster/name connects to the server expecting peer_name (NULL: the host). */
static int client_try(struct server *s, const char *cluster, const char *name,
		      const char *peer_name, struct tls_conn **out, char *err, size_t errlen)
{
	struct tls_ctx *ctx = ctx_of(cluster, name, false);
	int rc;

	if (!ctx)
		return -ENOENT;
	rc = net_tls_connect(ctx, "127.0.0.1", s->port, peer_name, 5000, out, err, errlen);
	net_tls_ctx_free(ctx); /* the SSL objects hold their own reference */
	return rc;
}

/* ---- cases -------------------------------------------------------------------------- */

static void exchange_both_ways(const char *srv_name, const char *cli_name, const char *peer)
{
	unsigned char *buf = malloc(BIG);
	struct tls_conn *c = NULL;
	struct server s;
	char err[256] = "";
	int rc;

	CU_ASSERT_FATAL(buf != NULL);
	CU_ASSERT_FATAL(server_start(&s, good, srv_name, 5000, BIG));
	rc = client_try(&s, good, cli_name, peer, &c, err, sizeof(err));
	CU_ASSERT_EQUAL(rc, 0);
	if (rc == 0) {
		CU_ASSERT_STRING_EQUAL(net_tls_peer_cn(c), srv_name);
		CU_ASSERT_STRING_EQUAL(net_tls_version(c), "TLSv1.3");
		fill(buf, BIG, 1);
		CU_ASSERT_EQUAL(net_tls_write_all(c, buf, BIG), 0);
		memset(buf, 0, BIG);
		CU_ASSERT_EQUAL(net_tls_read_full(c, buf, BIG), 0);
		CU_ASSERT_TRUE(check(buf, BIG, 2));
		net_tls_close(c);
	} else {
		fprintf(stderr, "client: %s\n", err);
	}
	server_join(&s);
	CU_ASSERT_EQUAL(s.rc, 0);
	CU_ASSERT_EQUAL(s.io_rc, 0);
	CU_ASSERT_TRUE(s.data_ok);
	CU_ASSERT_STRING_EQUAL(s.cn, cli_name);
	CU_ASSERT_STRING_EQUAL(s.version, "TLSv1.3");
	free(buf);
}

static void test_mutual_ok(void)
{
	CERTS_OR_FAIL();
	exchange_both_ways("127.0.0.1", "node-b", NULL);
	exchange_both_ways("node-b", "127.0.0.1", "node-b");
}

/* The server refuses, the client must fail too (it waits for the acceptance byte). */
static void expect_server_refuses(const char *cluster, const char *cli_name, const char *why)
{
	struct tls_conn *c = NULL;
	struct server s;
	char err[256] = "";
	int rc;

	CU_ASSERT_FATAL(server_start(&s, good, "127.0.0.1", 5000, 0));
	rc = client_try(&s, cluster, cli_name, NULL, &c, err, sizeof(err));
	CU_ASSERT_EQUAL(rc, -EACCES);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "peer refused our certificate"));
	if (rc == 0)
		net_tls_close(c);
	server_join(&s);
	CU_ASSERT_EQUAL(s.rc, -EACCES);
	CU_ASSERT_PTR_NOT_NULL(strstr(s.err, why));
	if (!strstr(s.err, why))
		fprintf(stderr, "server said: %s\n", s.err);
}

static void test_client_other_ca(void)
{
	CERTS_OR_FAIL();
	expect_server_refuses(evil, "mixed", "certificate not signed by the cluster CA");
}

static void expect_client_refuses(const char *srv_cluster, const char *peer, const char *why)
{
	struct tls_conn *c = NULL;
	struct server s;
	char err[256] = "";
	int rc;

	CU_ASSERT_FATAL(server_start(&s, srv_cluster, "127.0.0.1", 5000, 0));
	rc = client_try(&s, good, "node-b", peer, &c, err, sizeof(err));
	CU_ASSERT_EQUAL(rc, -EACCES);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, why));
	if (!strstr(err, why))
		fprintf(stderr, "client said: %s\n", err);
	if (rc == 0)
		net_tls_close(c);
	server_join(&s);
	CU_ASSERT_EQUAL(s.rc, -EACCES);
	CU_ASSERT_PTR_NOT_NULL(strstr(s.err, "peer refused our certificate"));
}

static void test_server_other_ca(void)
{
	CERTS_OR_FAIL();
	expect_client_refuses(evil, NULL, "certificate not signed by the cluster CA");
}

static void test_peer_name_mismatch(void)
{
	CERTS_OR_FAIL();
	expect_client_refuses(good, "node-b", "certificate is for 127.0.0.1, not node-b");
}

static int tcp_to(uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void test_plain_tcp_client(void)
{
	static const char *const lines[] = { "hello\n", "{\"cmd\":\"migrate\"}\n",
					     "GET / HTTP/1.0\r\n\r\n" };

	CERTS_OR_FAIL();
	for (size_t i = 0; i < ARRAY_SIZE(lines); i++) {
		struct server s;
		int fd;

		CU_ASSERT_FATAL(server_start(&s, good, "127.0.0.1", 2000, 0));
		fd = tcp_to(s.port);
		CU_ASSERT(fd >= 0);
		CU_ASSERT(write(fd, lines[i], strlen(lines[i])) == (ssize_t)strlen(lines[i]));
		server_join(&s);
		CU_ASSERT_EQUAL(s.rc, -EPROTO);
		CU_ASSERT_PTR_NOT_NULL(strstr(s.err, "not a TLS client"));
		CU_ASSERT(s.elapsed_ms < 1000);
		if (fd >= 0)
			close(fd);
	}
}

/* A raw OpenSSL client that trusts the CA but has no certificate of its own. */
static void test_client_without_cert(void)
{
	SSL_CTX *sc;
	SSL *ssl;
	struct server s;
	char ca[1024], b;
	int fd, r;

	CERTS_OR_FAIL();
	snprintf(ca, sizeof(ca), "%s/ca.crt", good);
	sc = SSL_CTX_new(TLS_client_method());
	CU_ASSERT_FATAL(sc != NULL);
	SSL_CTX_set_min_proto_version(sc, TLS1_3_VERSION);
	CU_ASSERT(SSL_CTX_load_verify_locations(sc, ca, NULL) == 1);
	SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
	CU_ASSERT_FATAL(server_start(&s, good, "127.0.0.1", 5000, 0));
	fd = tcp_to(s.port);
	CU_ASSERT_FATAL(fd >= 0);
	ssl = SSL_new(sc);
	SSL_set_fd(ssl, fd);
	r = SSL_connect(ssl);
	/* TLS 1.3: the client may think it is done; its first read must see the refusal. */
	if (r == 1)
		r = SSL_read(ssl, &b, 1);
	CU_ASSERT(r <= 0);
	server_join(&s);
	CU_ASSERT_EQUAL(s.rc, -EACCES);
	CU_ASSERT_PTR_NOT_NULL(strstr(s.err, "peer sent no certificate"));
	SSL_free(ssl);
	close(fd);
	SSL_CTX_free(sc);
	ERR_clear_error();
}

static void test_operator_cert(void)
{
	struct tls_conn *c = NULL;
	struct tls_ctx *ctx = NULL;
	struct server s;
	char dir[1024], err[256] = "";
	int rc;

	CERTS_OR_FAIL();
	/* An operator may connect as a client... */
	CU_ASSERT_FATAL(server_start(&s, good, "127.0.0.1", 5000, 0));
	rc = client_try(&s, good, "admin", NULL, &c, err, sizeof(err));
	CU_ASSERT_EQUAL(rc, 0);
	net_tls_close(c);
	server_join(&s);
	CU_ASSERT_EQUAL(s.rc, 0);
	CU_ASSERT_STRING_EQUAL(s.cn, "admin");
	/* ...but never serve. */
	snprintf(dir, sizeof(dir), "%s/admin", good);
	CU_ASSERT_EQUAL(net_tls_ctx_new(dir, true, &ctx, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "as a TLS server"));
	/* A folder without certificates says what is missing. */
	CU_ASSERT_EQUAL(net_tls_ctx_new(good, true, &ctx, err, sizeof(err)), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot read"));
}

/* A node is a certificate with serverAuth and clientAuth; an operator's (clientAuth) and
 * one of the cluster's CA without any extendedKeyUsage (which OpenSSL lets do anything)
 * are not. */
static void test_node_needs_eku(void)
{
	static const struct {
		const char *name;
		bool node;
	} cases[] = { { "node-b", true }, { "admin", false }, { "noeku", false } };

	CERTS_OR_FAIL();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tls_conn *c = NULL;
		struct server s;
		char err[256] = "";

		CU_ASSERT_FATAL(server_start(&s, good, "127.0.0.1", 5000, 0));
		CU_ASSERT_EQUAL(client_try(&s, good, cases[i].name, NULL, &c, err, sizeof(err)), 0);
		net_tls_close(c);
		server_join(&s);
		CU_ASSERT_EQUAL(s.rc, 0);
		CU_ASSERT_EQUAL(s.node, cases[i].node);
		if (s.node != cases[i].node)
			printf("\n    %s: node %d\n", cases[i].name, s.node);
	}
}

static void test_timeouts(void)
{
	struct tls_conn *c = NULL;
	struct server s;
	char err[256] = "";
	uint64_t t0;
	int fd, rc;

	CERTS_OR_FAIL();
	/* Nobody connects. */
	CU_ASSERT_FATAL(server_start(&s, good, "127.0.0.1", 200, 0));
	server_join(&s);
	CU_ASSERT_EQUAL(s.rc, -ETIMEDOUT);
	CU_ASSERT(s.elapsed_ms >= 190 && s.elapsed_ms < 1000);
	/* Someone connects and says nothing. */
	CU_ASSERT_FATAL(server_start(&s, good, "127.0.0.1", 300, 0));
	fd = tcp_to(s.port);
	server_join(&s);
	CU_ASSERT_EQUAL(s.rc, -ETIMEDOUT);
	CU_ASSERT_PTR_NOT_NULL(strstr(s.err, "timed out"));
	CU_ASSERT(s.elapsed_ms < 1000);
	if (fd >= 0)
		close(fd);
	/* A listener that never answers the handshake: the client gives up in time. */
	{
		struct tls_ctx *cctx = ctx_of(good, "node-b", false);
		uint16_t port;
		int lfd;

		CU_ASSERT_FATAL(cctx != NULL);
		CU_ASSERT_FATAL(net_tls_listen("127.0.0.1", 0, &lfd, &port, err, sizeof(err)) == 0);
		t0 = now_ns();
		rc = net_tls_connect(cctx, "127.0.0.1", port, NULL, 300, &c, err, sizeof(err));
		CU_ASSERT_EQUAL(rc, -ETIMEDOUT);
		CU_ASSERT((now_ns() - t0) / 1000000 < 1000);
		close(lfd);
		/* Nobody listens at all. */
		rc = net_tls_connect(cctx, "127.0.0.1", port, NULL, 300, &c, err, sizeof(err));
		CU_ASSERT_EQUAL(rc, -ECONNREFUSED);
		net_tls_ctx_free(cctx);
	}
}

struct reader {
	struct tls_conn *c;
	int rc;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	char b[16];

	r->rc = net_tls_read_full(r->c, b, sizeof(b));
	return NULL;
}

/* net_tls_shutdown() from another thread wakes a blocked reader; a read timeout is -ETIMEDOUT. */
static void test_shutdown_and_read_timeout(void)
{
	struct reader r = { 0 };
	struct server s;
	pthread_t t;
	char err[256] = "", b;
	uint64_t t0;

	CERTS_OR_FAIL();
	/* The server waits for 1 byte we never send, so the connection stays open. */
	CU_ASSERT_FATAL(server_start(&s, good, "127.0.0.1", 5000, 1));
	CU_ASSERT_FATAL(client_try(&s, good, "node-b", NULL, &r.c, err, sizeof(err)) == 0);
	CU_ASSERT_EQUAL(net_tls_set_timeout(r.c, 100), 0);
	t0 = now_ns();
	CU_ASSERT_EQUAL(net_tls_read_full(r.c, &b, 1), -ETIMEDOUT);
	CU_ASSERT((now_ns() - t0) / 1000000 >= 90);
	CU_ASSERT_EQUAL(net_tls_set_timeout(r.c, 0), 0);
	CU_ASSERT_FATAL(pthread_create(&t, NULL, reader_main, &r) == 0);
	sleep_ms(100);
	net_tls_shutdown(r.c);
	pthread_join(t, NULL);
	CU_ASSERT_EQUAL(r.rc, -EPIPE);
	CU_ASSERT_EQUAL(net_tls_write_all(r.c, "x", 1), -EPIPE);
	net_tls_close(r.c);
	server_join(&s);
	CU_ASSERT_EQUAL(s.rc, 0);
	CU_ASSERT_EQUAL(s.io_rc, -EPIPE);
}

static void test_parse_hostport(void)
{
	static const char *const bad[] = { "",	    "host",	    ":80",    "h:",    "h:65536",
					   "h:-1",  "h:8x",	    "::1:80", "[::1]", "[::1]80",
					   "[]:80", "[1.2.3.4]:80", "h :80",  "h:+80", "h:123456" };
	char host[64];
	uint16_t port = 7;

	CU_ASSERT_EQUAL(net_parse_hostport("10.0.0.2:4444", host, sizeof(host), &port), 0);
	CU_ASSERT_STRING_EQUAL(host, "10.0.0.2");
	CU_ASSERT_EQUAL(port, 4444);
	CU_ASSERT_EQUAL(net_parse_hostport("[fe80::1]:0", host, sizeof(host), &port), 0);
	CU_ASSERT_STRING_EQUAL(host, "fe80::1");
	CU_ASSERT_EQUAL(port, 0);
	CU_ASSERT_EQUAL(net_parse_hostport("node-b.example:65535", host, sizeof(host), &port), 0);
	CU_ASSERT_STRING_EQUAL(host, "node-b.example");
	CU_ASSERT_EQUAL(port, 65535);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		CU_ASSERT_EQUAL(net_parse_hostport(bad[i], host, sizeof(host), &port), -EINVAL);
	CU_ASSERT_EQUAL(net_parse_hostport("abcdefgh:1", host, 8, &port), -EINVAL); /* too long */
}

void suite_tls(void)
{
	static const struct test_case cases[] = {
		{ "mutual TLS 1.3 both ways, 10 MiB each way", test_mutual_ok },
		{ "client from another CA is refused", test_client_other_ca },
		{ "server from another CA is refused", test_server_other_ca },
		{ "server with another name is refused", test_peer_name_mismatch },
		{ "plain TCP client is refused quickly", test_plain_tcp_client },
		{ "client without a certificate is refused", test_client_without_cert },
		{ "operator certificate: client only", test_operator_cert },
		{ "a node certificate needs serverAuth and clientAuth", test_node_needs_eku },
		{ "accept, handshake and connect time out", test_timeouts },
		{ "read timeout and shutdown from another thread", test_shutdown_and_read_timeout },
		{ "net_parse_hostport", test_parse_hostport },
		{ NULL, NULL },
	};
	test_add_suite("tls", cases);
}
