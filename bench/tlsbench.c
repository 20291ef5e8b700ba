/* tlsbench CERTDIR [MIB] — raw TLS 1.3 throughput on loopback, straight OpenSSL.
 *
 * The baseline for the migration transport: what this host's OpenSSL can push through one
 * loopback TCP connection, with the migration's socket tuning (net_sock_tune, the one thing
 * taken from net/) and none of its TLS code. A sender thread writes MIB (default 1024) MiB
 * in 1 MiB SSL_write calls; a receiver thread reads it all. Three runs; one JSON line on stdout:
 *   {"bench":"tls_loopback_raw","unit":"MiB/s","median":X,"runs":[a,b,c],"cipher":"..."}
 * CERTDIR is certs/mkcerts.sh output with a 127.0.0.1 node folder (used by both ends; the
 * client checks the server's IP address and the server requires a client certificate). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "net.h" /* net_sock_tune; now_ns from common.h */

#define CHUNK (1u << 20)
#define RUNS  3

struct run {
	SSL_CTX *sctx, *cctx;
	int lfd;
	uint16_t port;
	uint64_t total;
	uint64_t t_start, t_end; /* ns: sender's first write, receiver's last byte */
	char cipher[64];
	bool failed;
	bool fresh; /* the receiver reads into untouched memory */
};

static void die(const char *what)
{
	unsigned long e = ERR_peek_last_error();

	fprintf(stderr, "tlsbench: %s: %s\n", what,
		e ? ERR_reason_error_string(e) : strerror(errno));
	exit(1);
}

static SSL_CTX *make_ctx(const char *dir, bool server)
{
	SSL_CTX *c = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	char ca[4096], crt[4096], key[4096];

	snprintf(ca, sizeof(ca), "%s/127.0.0.1/ca.crt", dir);
	snprintf(crt, sizeof(crt), "%s/127.0.0.1/tls.crt", dir);
	snprintf(key, sizeof(key), "%s/127.0.0.1/tls.key", dir);
	if (!c || !SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION))
		die("SSL_CTX_new");
	if (access(ca, R_OK) || access(crt, R_OK) || access(key, R_OK)) {
		fprintf(stderr, "tlsbench: cannot read %s/127.0.0.1/{ca.crt,tls.crt,tls.key}: %s\n",
			dir, strerror(errno));
		exit(1);
	}
	if (SSL_CTX_use_certificate_chain_file(c, crt) != 1)
		die(crt);
	if (SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1)
		die(key);
	if (SSL_CTX_load_verify_locations(c, ca, NULL) != 1)
		die(ca);
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
			   NULL);
	SSL_CTX_set_num_tickets(c, 0);
	return c;
}

static void *receiver(void *arg)
{
	struct run *r = arg;
	unsigned char *buf = malloc(CHUNK), *mem = NULL;
	uint64_t got = 0;
	size_t n;
	SSL *ssl;
	int fd;

	fd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (!buf || fd < 0)
		die("accept");
	net_sock_tune(fd);
	ssl = SSL_new(r->sctx);
	if (!ssl || SSL_set_fd(ssl, fd) != 1 || SSL_accept(ssl) != 1) {
		r->failed = true;
		fprintf(stderr, "tlsbench: server handshake failed\n");
		goto out;
	}
	/* fresh: into memory never touched before, as a migration's destination writes guest
	 * RAM (on a nested host the first touch of a page costs more than its bytes). */
	mem = r->fresh ? mmap(NULL, r->total + CHUNK, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
		       : NULL;
	if (mem == MAP_FAILED)
		die("mmap");
	while (got < r->total) {
		if (SSL_read_ex(ssl, mem ? mem + got : buf, CHUNK, &n) != 1) {
			r->failed = true;
			fprintf(stderr, "tlsbench: read failed after %llu bytes\n",
				(unsigned long long)got);
			goto out;
		}
		got += n;
	}
	r->t_end = now_ns();
out:
	if (mem)
		munmap(mem, r->total + CHUNK);
	SSL_free(ssl);
	close(fd);
	free(buf);
	return NULL;
}

static void *sender(void *arg)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct run *r = arg;
	unsigned char *buf = malloc(CHUNK);
	SSL *ssl;
	size_t n;
	int fd;

	a.sin_port = htons(r->port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!buf || fd < 0)
		die("socket");
	net_sock_tune(fd);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect");
	memset(buf, 0xa5, CHUNK); /* content does not matter to AES-GCM/ChaCha20 speed */
	ssl = SSL_new(r->cctx);
	if (!ssl || SSL_set_fd(ssl, fd) != 1 ||
	    !X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), "127.0.0.1") ||
	    SSL_connect(ssl) != 1) {
		r->failed = true;
		fprintf(stderr, "tlsbench: client handshake failed: %s\n",
			ERR_reason_error_string(ERR_peek_last_error()));
		goto out;
	}
	snprintf(r->cipher, sizeof(r->cipher), "%s", SSL_get_cipher_name(ssl));
	r->t_start = now_ns();
	for (uint64_t sent = 0; sent < r->total; sent += CHUNK) {
		if (SSL_write_ex(ssl, buf, CHUNK, &n) != 1) {
			r->failed = true;
			fprintf(stderr, "tlsbench: write failed\n");
			goto out;
		}
	}
	SSL_shutdown(ssl);
out:
	SSL_free(ssl);
	close(fd);
	free(buf);
	return NULL;
}

static double one_run(struct run *r)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t sl = sizeof(a);
	pthread_t rt, st;
	int one = 1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (r->lfd < 0)
		die("socket");
	(void)setsockopt(r->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	net_sock_tune(r->lfd);
	if (bind(r->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(r->lfd, 1) < 0 ||
	    getsockname(r->lfd, (struct sockaddr *)&a, &sl) < 0)
		die("listen");
	r->port = ntohs(a.sin_port);
	if (pthread_create(&rt, NULL, receiver, r) || pthread_create(&st, NULL, sender, r))
		die("pthread_create");
	pthread_join(st, NULL);
	pthread_join(rt, NULL);
	close(r->lfd);
	if (r->failed || r->t_end <= r->t_start)
		exit(1);
	return (double)r->total / (1 << 20) / ((double)(r->t_end - r->t_start) / 1e9);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	struct run r = { 0 };
	double mib[RUNS], sorted[RUNS];
	long total_mib = 1024;

	r.fresh = argc == 4 && !strcmp(argv[3], "fresh");
	if (argc < 2 || argc > 4 || (argc >= 3 && (total_mib = atol(argv[2])) <= 0) ||
	    (argc == 4 && !r.fresh)) {
		fprintf(stderr, "usage: tlsbench CERTDIR [MIB [fresh]]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	r.sctx = make_ctx(argv[1], true);
	r.cctx = make_ctx(argv[1], false);
	r.total = (uint64_t)total_mib << 20;
	for (int i = 0; i < RUNS; i++) {
		r.t_start = r.t_end = 0;
		mib[i] = sorted[i] = one_run(&r);
	}
	qsort(sorted, RUNS, sizeof(sorted[0]), cmp_double);
	printf("{\"bench\":\"tls_loopback_raw%s\",\"unit\":\"MiB/s\",\"median\":%.1f,"
	       "\"runs\":[",
	       r.fresh ? "_into_fresh_memory" : "", sorted[RUNS / 2]);
	for (int i = 0; i < RUNS; i++)
		printf("%s%.1f", i ? "," : "", mib[i]);
	printf("],\"cipher\":\"%s\",\"mib\":%ld}\n", r.cipher, total_mib);
	SSL_CTX_free(r.sctx);
	SSL_CTX_free(r.cctx);
	return 0;
}
