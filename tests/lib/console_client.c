/* Test helper: a console-socket client, and the hardware-virtualization check. */
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static uint64_t cc_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

bool test_have_hw_virt(char *why, size_t len)
{
	if (access("/sys/module/kvm_intel", F_OK) == 0 || access("/sys/module/kvm_amd", F_OK) == 0)
		return true;
	snprintf(why, len,
		 "needs hardware virtualization (kvm_intel or kvm_amd); this host has %s, "
		 "where a stock Linux kernel cannot boot",
		 access("/sys/module/kvm_pvm", F_OK) == 0 ? "kvm_pvm" : "neither");
	return false;
}

int console_client_open(struct console_client *c, const char *path, int timeout_ms)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint64_t end = cc_ms() + (uint64_t)timeout_ms;

	memset(c, 0, sizeof(*c));
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	do {
		c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c->fd >= 0 && connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return 0;
		if (c->fd >= 0)
			close(c->fd);
		c->fd = -1;
		usleep(20000);
	} while (cc_ms() < end);
	return -ETIMEDOUT;
}

static void cc_read(struct console_client *c, int wait_ms)
{
	struct pollfd p = { c->fd, POLLIN, 0 };
	ssize_t n;

	if (poll(&p, 1, wait_ms) <= 0)
		return;
	if (c->len + 4096 + 1 > c->cap) {
		c->cap = c->cap ? c->cap * 2 : 65536;
		c->buf = realloc(c->buf, c->cap);
	}
	n = read(c->fd, c->buf + c->len, 4096);
	if (n > 0)
		c->len += (size_t)n;
	c->buf[c->len] = 0;
}

bool console_client_wait(struct console_client *c, const char *needle, int timeout_ms)
{
	uint64_t end = cc_ms() + (uint64_t)timeout_ms;

	do {
		if (c->buf && strstr(c->buf, needle))
			return true;
		cc_read(c, 50);
	} while (cc_ms() < end);
	return c->buf && strstr(c->buf, needle);
}

int console_client_send(struct console_client *c, const char *s)
{
	size_t n = strlen(s);

	return write(c->fd, s, n) == (ssize_t)n ? 0 : -EIO;
}

void console_client_close(struct console_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}
