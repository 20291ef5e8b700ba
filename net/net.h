/* net — the host-to-host transport: TCP with mutual TLS 1.3 (OpenSSL), used by live
 * migration (migrate/) and by the cluster daemons' peer channel (clusterd/).
 *
 * Both ends present a certificate from the cluster CA (certs/mkcerts.sh) and verify the
 * other's against DIR/ca.crt; the connecting side also checks that the listener's
 * certificate names the node it meant to reach. Nothing is ever sent in the clear.
 *
 * Wire detail: after the TLS handshake the server sends one byte (0x01) that net_tls_connect()
 * waits for. In TLS 1.3 the client finishes its handshake before the server has checked the
 * client's certificate, so without it a refused client would only learn at its first read.
 *
 * Threads: a connection is owned by one thread at a time (OpenSSL's SSL object does not
 * allow a reader and a writer at once). The one exception is net_tls_shutdown(), which any
 * thread may call to wake the owner; net_tls_close() must not race with it.
 *
 * SIGPIPE: writing to a connection the peer closed raises SIGPIPE; net_tls_ctx_new() sets it to
 * SIG_IGN if it is still SIG_DFL, so a vanished peer is an -EPIPE, never a dead process.
 *
 * Files, bottom-up (their shared insides in net_priv.h): sock.c, tcp.c, tls_ctx.c,
 * tls_handshake.c, tls_conn.c, tls_io.c. */
#ifndef CME_NET_H
#define CME_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct tls_ctx;	 /* SSL_CTX + role (server or client) */
struct tls_conn; /* one TCP connection with TLS */

/* Default time for the TLS handshake when net_tls_accept() is told to wait forever. */
#define TLS_HANDSHAKE_DEFAULT_MS 10000

/* Load DIR/ca.crt, DIR/tls.crt and DIR/tls.key (a folder made by certs/mkcerts.sh). TLS 1.3
 * only; the peer is always verified against DIR/ca.crt, and a server refuses a client that
 * sends no certificate. Returns 0 with *out set (free with net_tls_ctx_free), or -errno with a
 * one-line reason in err (missing file, key not matching the certificate, ...). */
int net_tls_ctx_new(const char *tls_dir, bool server, struct tls_ctx **out, char *err,
		    size_t errlen) CME_WUR;
/* Load tls_dir's client and server contexts now, while its files can be read (a jailed
 * VMM, before it drops to its user): later net_tls_ctx_new of the same folder hands them
 * out without reading the files again. 0 or -errno with the reason in err. */
int net_tls_ctx_preload(const char *tls_dir, char *err, size_t errlen) CME_WUR;
/* NULL ok. Connections made from ctx must be closed first. */
void net_tls_ctx_free(struct tls_ctx *ctx);

/* Split "host:port" or "[v6addr]:port" into host (NUL-terminated, brackets removed) and
 * port (0..65535). Returns 0, or -EINVAL on junk: empty host, bare IPv6 without brackets,
 * port missing or not a decimal number, host longer than hostlen - 1. */
int net_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port) CME_WUR;

/* A listening TCP socket (SO_REUSEADDR, CLOEXEC, non-blocking: use it with net_tls_accept) on
 * host:port; port 0 lets the kernel pick one. *bound_port (may be NULL) gets the port.
 * Returns 0 with *fd_out set (caller closes), or -errno with a reason in err. */
int net_tls_listen(const char *host, uint16_t port, int *fd_out, uint16_t *bound_port, char *err,
		   size_t errlen) CME_WUR;

/* Connect to host:port (a client ctx), run the handshake and wait for the server's
 * acceptance, all within timeout_ms (< 0: no limit). The server's chain must lead to the
 * CA and its certificate must name peer_name (a DNS name or an IP address; NULL means host).
 * Returns 0 with *out set (close with net_tls_close), or -errno with a reason in err:
 * -ETIMEDOUT, -ECONNREFUSED and other connect errors, -EACCES when either side refused the
 * other's certificate, -EPROTO when the peer does not speak TLS 1.3, -EPIPE when it hung up. */
int net_tls_connect(struct tls_ctx *ctx, const char *host, uint16_t port, const char *peer_name,
		    int timeout_ms, struct tls_conn **out, char *err, size_t errlen) CME_WUR;

/* Wait at most timeout_ms (< 0: forever) for a connection on listen_fd (a server ctx), then
 * complete the handshake within timeout_ms (TLS_HANDSHAKE_DEFAULT_MS when < 0). A refused
 * peer is logged and closed, and the reason is in err ("peer sent no certificate",
 * "certificate not signed by the cluster CA", "not a TLS client (plain TCP?)", ...).
 * Returns 0 with *out set, or -ETIMEDOUT (no connection, or a handshake too slow), -EACCES
 * (certificate refused), -EPROTO (not TLS), -EPIPE (peer left), -errno. */
int net_tls_accept(struct tls_ctx *ctx, int listen_fd, int timeout_ms, struct tls_conn **out,
		   char *err, size_t errlen) CME_WUR;
/* The same in two steps, so that handshakes can run side by side: take a TCP connection
 * (its address into addr; timeout_ms < 0 waits forever, 0 not at all: -ETIMEDOUT), then
 * the TLS server side on it (fd is the connection's from then on, closed on failure). */
int net_tls_accept_tcp(int listen_fd, int timeout_ms, char *addr, size_t addrlen) CME_WUR;
int net_tls_accept_fd(struct tls_ctx *ctx, int fd, const char *addr, int timeout_ms,
		      struct tls_conn **out, char *err, size_t errlen) CME_WUR;

/* Write all of buf. Returns 0, -EPIPE when the peer closed or net_tls_shutdown() was called,
 * -ETIMEDOUT when the send timeout expired, -EIO on a TLS error. After any error the
 * connection is unusable except for net_tls_close(). */
int net_tls_write_all(struct tls_conn *c, const void *buf, size_t len) CME_WUR;
/* A connection over bytes in memory, without TLS or a peer: reads come from data (the
 * stream ends with it: a read past it fails with -ECONNRESET), writes go nowhere; close
 * with net_tls_close. For fuzzing and testing what reads a stream (the migration's page
 * channels); NULL without memory. */
struct tls_conn *net_mem_conn(const void *data, size_t len);
/* Read exactly len bytes. Returns 0, -EPIPE on EOF (clean or not, or after net_tls_shutdown()),
 * -ETIMEDOUT when the receive timeout expired, -EIO on a TLS error (bad record, ...). */
int net_tls_read_full(struct tls_conn *c, void *buf, size_t len) CME_WUR;

/* The kernel's smoothed round-trip time of c's TCP connection in µs (0: unknown). */
uint32_t net_tls_rtt_us(const struct tls_conn *c);
/* Shrink c's socket buffers to what keeps a link of rate bytes/s busy over its measured
 * round trip, twice over (at least 1 MiB, at most what net_sock_tune gave): bytes a buffer
 * holds are bytes the peer has not yet taken, which a migration's pause must wait for.
 * Returns the size set, 0 when it left them. */
int net_tls_fit_buffers(struct tls_conn *c, uint64_t rate);
/* True when decrypted bytes wait inside c: a read returns them though poll() on the socket
 * may say nothing is readable. */
bool net_tls_pending(const struct tls_conn *c);
/* Receive and send timeout of the socket in ms (0 = none). Returns 0 or -errno. */
int net_tls_set_timeout(struct tls_conn *c, int ms) CME_WUR;
/* shutdown(fd, SHUT_RDWR): a thread blocked in net_tls_read_full/net_tls_write_all on c returns
 * -EPIPE. Safe from any thread while c is open. NULL ok. */
void net_tls_shutdown(struct tls_conn *c);
/* Send close_notify if the connection is healthy (never blocks for it), close the socket
 * and free c. NULL ok. */
void net_tls_close(struct tls_conn *c);

/* Subject CN of the verified peer certificate ("" if it has none); valid until net_tls_close. */
const char *net_tls_peer_cn(const struct tls_conn *c);
/* True when the verified peer holds a node certificate (an extendedKeyUsage of serverAuth
 * and clientAuth), not an operator's (clientAuth only) nor one without the extension. */
bool net_tls_peer_is_node(const struct tls_conn *c);
/* "addr:port" of the peer, for log lines; valid until net_tls_close. */
const char *net_tls_peer_addr(const struct tls_conn *c);
/* Negotiated protocol ("TLSv1.3") and cipher suite name, for logs and statistics. */
const char *net_tls_version(const struct tls_conn *c);
const char *net_tls_cipher(const struct tls_conn *c);
/* The socket (for poll()); owned by c. */
int net_tls_fd(const struct tls_conn *c);

/* Tune a TCP socket for bulk traffic (migration streams, tlsbench): TCP_NODELAY (records are flushed whole),
 * and 4 MiB send and receive buffers where the kernel allows that much (net.core.wmem_max,
 * rmem_max), since setting them turns off Linux's autotuning. Best effort: errors are
 * ignored. Call it before connect() or listen() (buffer sizes matter from the SYN on), and
 * again on each accepted socket. */
void net_sock_tune(int fd);

#endif
