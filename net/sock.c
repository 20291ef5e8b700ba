/* The bottom of the transport: socket options (the tuning tlsbench shares), deadlines,
 * and the one-line error helper every transport file reports through. */
#include "net_priv.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/time.h>

int net_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

uint64_t net_deadline_in(int timeout_ms)
{
	return timeout_ms < 0 ? UINT64_MAX : now_ns() + (uint64_t)timeout_ms * 1000000u;
}

int net_ms_left(uint64_t deadline)
{
	uint64_t now = now_ns();

	if (deadline == UINT64_MAX)
		return -1;
	if (now >= deadline)
		return 0;
	return (int)((deadline - now + 999999) / 1000000);
}

int net_sock_timeout(int fd, int ms)
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
void net_sock_tune(int fd)
{
	int one = 1, sz = NET_SOCKBUF;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (sysctl_at_least("/proc/sys/net/core/wmem_max", sz))
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	if (sysctl_at_least("/proc/sys/net/core/rmem_max", sz))
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
}

int net_sock_wait_readable(int fd, uint64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r;

	do
		r = poll(&p, 1, net_ms_left(deadline));
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	return r == 0 ? -ETIMEDOUT : 0;
}
