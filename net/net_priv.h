/* Private to the transport's files (sock.c, tcp.c, tls_ctx.c, tls_handshake.c, tls_conn.c,
 * tls_io.c): the structures behind net.h's handles and the helpers those files share.
 * Nothing outside net/ looks inside a connection. */
#ifndef CME_NET_PRIV_H
#define CME_NET_PRIV_H

#include <netinet/in.h>

#include <openssl/ssl.h>

#include "net.h"

#define NET_SOCKBUF (4 << 20) /* per direction: a few ms of a 10 Gbit/s link */
#define FIT_MIN	    (1 << 20) /* net_tls_fit_buffers never goes below */

struct tls_ctx {
	SSL_CTX *ssl;
	bool server;
};

struct tls_conn {
	SSL *ssl;
	int fd;
	bool server;
	bool broken;	    /* a fatal error happened: no close_notify, no more I/O */
	const char *expect; /* net_tls_connect: the name the peer must carry (during it) */
	char seen_cn[256];  /* CN of the leaf the peer presented, even when refused */
	char peer_addr[INET6_ADDRSTRLEN + 16];
	const uint8_t *mem; /* net_mem_conn: the bytes reads come from (ssl is NULL) */
	size_t mem_len, mem_off;
};

/* sock.c */
/* Format a one-line reason into err (when err and errlen are given); returns rc. */
int net_errf(char *err, size_t errlen, int rc, const char *fmt, ...) CME_PRINTF(4, 5);
/* The now_ns() deadline timeout_ms from now; UINT64_MAX when timeout_ms < 0 (none). */
uint64_t net_deadline_in(int timeout_ms);
/* Milliseconds left, rounded up (so 0 means the deadline has passed); -1 for none. */
int net_ms_left(uint64_t deadline);
/* SO_RCVTIMEO and SO_SNDTIMEO of fd in ms (0: none). Returns 0 or -errno. */
int net_sock_timeout(int fd, int ms) CME_WUR;
/* Wait (through EINTR) until fd is readable. Returns 0, -ETIMEDOUT at the deadline, or
 * -errno from poll(). */
int net_sock_wait_readable(int fd, uint64_t deadline) CME_WUR;

/* tcp.c */
/* A blocking, tuned TCP socket connected to host:port (each address in turn) before the
 * deadline. Returns the fd (caller closes), or -errno with a reason in err. */
int net_tcp_connect(const char *host, uint16_t port, uint64_t deadline, char *err,
		    size_t errlen) CME_WUR;
/* The next connection on the non-blocking listen_fd before the deadline, as a blocking,
 * tuned socket; its "addr:port" goes to addr. Returns the fd (caller closes), -ETIMEDOUT,
 * or -errno from accept. */
int net_tcp_accept(int listen_fd, uint64_t deadline, char *addr, size_t addrlen) CME_WUR;

/* tls_ctx.c */
/* OpenSSL's most specific reason for the last failure, for one-line messages. */
const char *net_tls_reason(void);
/* Copy the subject CN of x into buf, printable ASCII only (it ends up in logs). */
void net_tls_cert_cn(X509 *x, char *buf, size_t len);

/* tls_handshake.c */
/* Run fn (SSL_do_handshake, or a 1-byte read/write) on c until it returns 1 or the
 * deadline passes, then note the verified peer's CN in c->seen_cn and clear the socket's
 * timeouts. Returns 0 or -errno; a failed handshake breaks c and says why in err:
 * -ETIMEDOUT, -EACCES (a certificate refused), -EPROTO (not TLS 1.3), -EPIPE (hung up). */
int net_tls_step(struct tls_conn *c, uint64_t deadline, int (*fn)(struct tls_conn *), char *err,
		 size_t errlen) CME_WUR;

#endif
