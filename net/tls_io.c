/* Data on an established connection: full reads and writes through one loop, OpenSSL's
 * errors mapped onto -errno, the socket timeouts, and the shutdown that wakes the owner. */
#include "net_priv.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <openssl/err.h>

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
		log_warn("tls", "peer %s: %s", c->peer_addr, net_tls_reason());
		return -EIO;
	}
}

/* Move all len bytes of buf in one direction (SSL_write_ex when writing, else SSL_read_ex)
 * on the blocking socket, whose SO_*TIMEO bound each call. Returns 0 or -errno as
 * net_tls_write_all and net_tls_read_full promise. */
/* net_mem_conn: reads from the bytes (the stream ends with them), writes go nowhere. */
static int mem_io(struct tls_conn *c, bool writing, unsigned char *p, size_t len)
{
	if (writing)
		return 0;
	if (len > c->mem_len - c->mem_off)
		return -ECONNRESET; /* the peer hung up mid-record */
	memcpy(p, c->mem + c->mem_off, len);
	c->mem_off += len;
	return 0;
}

struct tls_conn *net_mem_conn(const void *data, size_t len)
{
	static const uint8_t none;
	struct tls_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->fd = -1;
	c->mem = data ? data : &none; /* never NULL: that marks a TLS connection */
	c->mem_len = len;
	return c;
}

static int io_full(struct tls_conn *c, bool writing, unsigned char *p, size_t len)
{
	size_t want = len;

	if (c->mem)
		return mem_io(c, writing, p, len);

	while (len) {
		size_t n = 0;
		int r, saved;

		if (c->broken)
			return -EPIPE;
		ERR_clear_error();
		errno = 0;
		r = writing ? SSL_write_ex(c->ssl, p, len, &n) : SSL_read_ex(c->ssl, p, len, &n);
		saved = errno;
		if (r == 1) {
			p += n;
			len -= n;
			continue;
		}
		r = io_failure(c, r, saved);
		/* OpenSSL wants a failed write retried with the same bytes, which we never do;
		 * a read that timed out before its first byte leaves the stream in step. */
		if (r < 0 && (writing || r != -ETIMEDOUT || len != want))
			c->broken = true;
		if (r < 0)
			return r;
	}
	return 0;
}

int net_tls_write_all(struct tls_conn *c, const void *buf, size_t len)
{
	/* Only read from when writing: the cast drops a const io_full never uses. */
	return io_full(c, true, (unsigned char *)buf, len);
}

int net_tls_read_full(struct tls_conn *c, void *buf, size_t len)
{
	return io_full(c, false, buf, len);
}

uint32_t net_tls_rtt_us(const struct tls_conn *c)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
	    len < offsetof(struct tcp_info, tcpi_rtt) + sizeof(ti.tcpi_rtt))
		return 0;
	return ti.tcpi_rtt;
}

int net_tls_fit_buffers(struct tls_conn *c, uint64_t rate)
{
	uint64_t want = (uint64_t)net_tls_rtt_us(c) * rate / 1000000 * 2;
	int sz = want < FIT_MIN ? FIT_MIN : want > NET_SOCKBUF ? NET_SOCKBUF : (int)want;

	if (sz >= NET_SOCKBUF || setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)) < 0 ||
	    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)) < 0)
		return 0;
	return sz;
}

bool net_tls_pending(const struct tls_conn *c)
{
	return SSL_pending(c->ssl) > 0;
}

int net_tls_set_timeout(struct tls_conn *c, int ms)
{
	unsigned int user = (unsigned int)ms;

	if (ms < 0)
		return -EINVAL;
	/* SO_SNDTIMEO restarts with every send(); a peer that stopped acknowledging (a cut
	 * link) is detected within ms only by TCP_USER_TIMEOUT, which fails the connection. */
	if (setsockopt(c->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user, sizeof(user)) < 0)
		return -errno;
	return net_sock_timeout(c->fd, ms);
}

void net_tls_shutdown(struct tls_conn *c)
{
	if (c)
		(void)shutdown(c->fd, SHUT_RDWR);
}
