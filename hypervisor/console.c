/* Console backends for the UART: stdout, a file, or a Unix socket that any number of
 * clients can attach to (each new client first gets the recent output). */
#include "vm_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SUB		    "console"
#define CONSOLE_MAX_CLIENTS 8
#define CONSOLE_HISTORY	    65536

struct console {
	enum console_kind kind;
	console_input_fn input; /* bytes typed by a client, for the UART */
	void *opaque;
	int out_fd;    /* stdout or file */
	int listen_fd; /* socket mode */
	char *path;    /* the socket's path, removed on close */
	int wake[2];   /* pipe that ends the socket thread */
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	int clients[CONSOLE_MAX_CLIENTS];
	char history[CONSOLE_HISTORY]; /* ring of the latest output */
	size_t hist_pos, hist_len;
};

int console_cfg_parse(const char *s, struct console_cfg *out)
{
	if (!strcmp(s, "stdout"))
		*out = (struct console_cfg){ CONSOLE_STDOUT, NULL };
	else if (!strcmp(s, "none"))
		*out = (struct console_cfg){ CONSOLE_NONE, NULL };
	else if (!strncmp(s, "file:", 5) && s[5])
		*out = (struct console_cfg){ CONSOLE_FILE, s + 5 };
	else if (!strncmp(s, "socket:", 7) && s[7])
		*out = (struct console_cfg){ CONSOLE_SOCKET, s + 7 };
	else
		return -EINVAL;
	return 0;
}

static void console_history_add(struct console *c, const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		c->history[(c->hist_pos + c->hist_len) % CONSOLE_HISTORY] = buf[i];
		if (c->hist_len < CONSOLE_HISTORY)
			c->hist_len++;
		else
			c->hist_pos = (c->hist_pos + 1) % CONSOLE_HISTORY;
	}
}

/* Send to one client without blocking the vCPU; a client that cannot keep up loses
 * bytes, a client that is gone is dropped. */
static void console_send_client(struct console *c, int i, const void *buf, size_t len)
{
	ssize_t n = send(c->clients[i], buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);

	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
		close(c->clients[i]);
		c->clients[i] = -1;
	}
}

static void console_add_client(struct console *c, int fd)
{
	pthread_mutex_lock(&c->lock);
	for (int i = 0; i < CONSOLE_MAX_CLIENTS; i++) {
		if (c->clients[i] >= 0)
			continue;
		c->clients[i] = fd;
		/* Replay the recent output, oldest first, in (at most) two pieces. */
		size_t first = CONSOLE_HISTORY - c->hist_pos;

		first = first < c->hist_len ? first : c->hist_len;
		console_send_client(c, i, c->history + c->hist_pos, first);
		if (c->clients[i] >= 0 && c->hist_len > first)
			console_send_client(c, i, c->history, c->hist_len - first);
		pthread_mutex_unlock(&c->lock);
		return;
	}
	pthread_mutex_unlock(&c->lock);
	log_warn(SUB, "too many console clients, refusing one");
	close(fd);
}

/* Input from one client goes to the guest; a closed client is dropped. */
static void console_client_input(struct console *c, int i)
{
	char buf[512];
	ssize_t n = recv(c->clients[i], buf, sizeof(buf), MSG_DONTWAIT);

	if (n > 0 && c->input)
		c->input(c->opaque, (const uint8_t *)buf, (size_t)n);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		pthread_mutex_lock(&c->lock);
		close(c->clients[i]);
		c->clients[i] = -1;
		pthread_mutex_unlock(&c->lock);
	}
}

static void *console_thread(void *arg)
{
	struct console *c = arg;
	struct pollfd p[2 + CONSOLE_MAX_CLIENTS];

	for (;;) {
		p[0] = (struct pollfd){ c->listen_fd, POLLIN, 0 };
		p[1] = (struct pollfd){ c->wake[0], POLLIN, 0 };
		pthread_mutex_lock(&c->lock);
		for (int i = 0; i < CONSOLE_MAX_CLIENTS; i++)
			p[2 + i] = (struct pollfd){ c->clients[i], POLLIN, 0 };
		pthread_mutex_unlock(&c->lock);
		if (poll(p, 2 + CONSOLE_MAX_CLIENTS, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		if (p[0].revents & POLLIN) {
			int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC);

			if (fd >= 0)
				console_add_client(c, fd);
		}
		for (int i = 0; i < CONSOLE_MAX_CLIENTS; i++)
			if (p[2 + i].revents && p[2 + i].fd >= 0 && c->clients[i] == p[2 + i].fd)
				console_client_input(c, i);
	}
	return NULL;
}

static int console_open_socket(struct console *c, const char *path)
{
	int err;

	c->listen_fd = unix_listen(path);
	if (c->listen_fd < 0) {
		log_err(SUB, "console socket %s: %s", path, strerror(-c->listen_fd));
		return c->listen_fd;
	}
	c->path = strdup(path);
	if (pipe2(c->wake, O_CLOEXEC) < 0)
		return -errno;
	err = pthread_create(&c->thread, NULL, console_thread, c);
	if (err)
		return -err;
	c->thread_started = true;
	return 0;
}

static int console_open_out(struct console *c, const struct console_cfg *cfg)
{
	if (cfg->kind == CONSOLE_STDOUT) {
		c->out_fd = dup(STDOUT_FILENO);
	} else {
		c->out_fd =
			open(cfg->path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
		if (c->out_fd < 0)
			log_err(SUB, "console file %s: %s", cfg->path, strerror(errno));
	}
	return c->out_fd < 0 ? -errno : 0;
}

int console_open(const struct console_cfg *cfg, console_input_fn input, void *opaque,
		 struct console **out)
{
	struct console *c = calloc(1, sizeof(*c));
	int err = 0;

	if (!c)
		return -ENOMEM;
	c->kind = cfg->kind;
	c->input = input;
	c->opaque = opaque;
	c->out_fd = c->listen_fd = c->wake[0] = c->wake[1] = -1;
	for (int i = 0; i < CONSOLE_MAX_CLIENTS; i++)
		c->clients[i] = -1;
	pthread_mutex_init(&c->lock, NULL);
	if (cfg->kind == CONSOLE_STDOUT || cfg->kind == CONSOLE_FILE)
		err = console_open_out(c, cfg);
	else if (cfg->kind == CONSOLE_SOCKET)
		err = console_open_socket(c, cfg->path);
	if (err) {
		console_close(c);
		return err;
	}
	*out = c;
	return 0;
}

void console_write(struct console *c, const void *buf, size_t len)
{
	if (!c || c->kind == CONSOLE_NONE)
		return;
	pthread_mutex_lock(&c->lock);
	if (c->out_fd >= 0) {
		if (write_all(c->out_fd, buf, len) < 0)
			c->kind =
				CONSOLE_NONE; /* the reader went away: stop writing, keep running */
	} else {
		console_history_add(c, buf, len);
		for (int i = 0; i < CONSOLE_MAX_CLIENTS; i++)
			if (c->clients[i] >= 0)
				console_send_client(c, i, buf, len);
	}
	pthread_mutex_unlock(&c->lock);
}

void console_close(struct console *c)
{
	if (!c)
		return;
	if (c->thread_started) {
		if (write(c->wake[1], "x", 1) < 0)
			log_warn(SUB, "cannot wake console thread");
		pthread_join(c->thread, NULL);
	}
	for (int i = 0; i < CONSOLE_MAX_CLIENTS; i++)
		if (c->clients[i] >= 0)
			close(c->clients[i]);
	for (int i = 0; i < 2; i++)
		if (c->wake[i] >= 0)
			close(c->wake[i]);
	if (c->listen_fd >= 0)
		close(c->listen_fd);
	if (c->path)
		unlink(c->path);
	free(c->path);
	if (c->out_fd >= 0)
		close(c->out_fd);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
