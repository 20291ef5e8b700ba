/* Plain TCP under the TLS layer: "host:port" parsing, name resolution, and listening,
 * connecting and accepting with deadlines. Every socket gets net_sock_tune(). */
#include "net_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

int net_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
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
		return net_errf(err, errlen, -errno, "cannot resolve %s: %s", host,
				strerror(errno));
	if (r)
		return net_errf(err, errlen, -EHOSTUNREACH, "cannot resolve %s: %s", host,
				gai_strerror(r));
	return 0;
}

int net_tls_listen(const char *host, uint16_t port, int *fd_out, uint16_t *bound_port, char *err,
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
		net_sock_tune(fd);
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0)
			break;
		rc = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return net_errf(err, errlen, rc, "cannot listen on %s:%u: %s", host, port,
				strerror(-rc));
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		rc = -errno;
		close(fd);
		return net_errf(err, errlen, rc, "getsockname: %s", strerror(-rc));
	}
	if (bound_port)
		*bound_port =
			ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						       : ((struct sockaddr_in *)&ss)->sin_port);
	*fd_out = fd;
	return 0;
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
	net_sock_tune(fd);
	p.fd = fd;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINPROGRESS)
			goto fail_errno;
		do
			r = poll(&p, 1, net_ms_left(deadline));
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

int net_tcp_connect(const char *host, uint16_t port, uint64_t deadline, char *err, size_t errlen)
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
		return net_errf(err, errlen, fd, "cannot connect to %s:%u: %s", host, port,
				strerror(-fd));
	return fd;
}

int net_tcp_accept(int listen_fd, uint64_t deadline, char *addr, size_t addrlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, rc;

	for (;;) {
		rc = net_sock_wait_readable(listen_fd, deadline);
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
	net_sock_tune(fd);
	return fd;
}
