/* Console backends for the UART: stdout, a file, or a Unix socket that any number of
 * clients can attach to (each new client first gets the recent output).
 *
 * Output to stdout or a file is buffered: written at a line end, when 4 KiB are waiting,
 * or 20 ms after the first byte that waits (a prompt without a line end), never one
 * write(2) per byte the guest sends. A file is capped: past its limit it becomes PATH.1
 * (replacing the one before) and PATH starts again, so a guest can fill at most twice the
 * limit of the host's disk. */
#include "vm_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SUB		    "console"
#define CONSOLE_MAX_CLIENTS 8
#define CONSOLE_HISTORY	    65536
#define CONSOLE_OUTBUF	    4096
#define CONSOLE_FLUSH_MS    20

struct console {
	enum console_kind kind;
	console_input_fn input; /* bytes typed by a client, for the UART */
	void *opaque;
	int out_fd;    /* stdout or file */
	int listen_fd; /* socket mode */
	char *file;    /* the file's path (rotation) */
	uint64_t file_bytes, file_max;
	char outbuf[CONSOLE_OUTBUF]; /* what waits for out_fd */
	size_t outlen;
	pthread_cond_t flush_cond; /* the flusher waits on it for output */
	pthread_cond_t rotated;	   /* writers wait on it while a rotation is due */
	bool rotate_due;	   /* past the cap: the flusher renames and reopens */
	pthread_t flusher;
	bool flusher_started, closing;
	char *path;  /* the socket's path, removed on close */
	int wake[2]; /* pipe that ends the socket thread */
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
		*out = (struct console_cfg){ .kind = CONSOLE_STDOUT, .path = NULL };
	else if (!strcmp(s, "none"))
		*out = (struct console_cfg){ .kind = CONSOLE_NONE, .path = NULL };
	else if (!strncmp(s, "file:", 5) && s[5])
		*out = (struct console_cfg){ .kind = CONSOLE_FILE, .path = s + 5 };
	else if (!strncmp(s, "socket:", 7) && s[7])
		*out = (struct console_cfg){ .kind = CONSOLE_SOCKET, .path = s + 7 };
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

/* Input from one client goes to the guest; a closed client is dropped. The slot is
 * read under the lock: the vCPU's console_write may have dropped the client (and its
 * descriptor number gone to another file) since the poll. */
static void console_client_input(struct console *c, int i, int fd)
{
	char buf[512];
	ssize_t n = 0;

	pthread_mutex_lock(&c->lock);
	if (c->clients[i] == fd) {
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			close(fd);
			c->clients[i] = -1;
		}
	}
	pthread_mutex_unlock(&c->lock);
	if (n > 0 && c->input) /* outside the lock: the UART may write back */
		c->input(c->opaque, (const uint8_t *)buf, (size_t)n);
}

static void *console_thread(void *arg)
{
	struct console *c = arg;
	struct pollfd p[2 + CONSOLE_MAX_CLIENTS];

	sandbox_enter(SANDBOX_CONSOLE);
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
			if (p[2 + i].revents && p[2 + i].fd >= 0)
				console_client_input(c, i, p[2 + i].fd);
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

/* A file past its limit becomes PATH.1 and PATH starts again. Called with the lock. */
static void console_rotate(struct console *c)
{
	char old[4096];
	int fd;

	if (snprintf(old, sizeof(old), "%s.1", c->file) >= (int)sizeof(old) ||
	    rename(c->file, old) < 0) {
		log_warn(SUB, "console file %s: cannot rotate (%s): writing stops", c->file,
			 strerror(errno));
		c->kind = CONSOLE_NONE;
		return;
	}
	fd = open(c->file, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0) {
		log_warn(SUB, "console file %s: %s: writing stops", c->file, strerror(errno));
		c->kind = CONSOLE_NONE;
		return;
	}
	close(c->out_fd);
	c->out_fd = fd;
	c->file_bytes = 0;
	log_info(SUB, "console file %s reached %llu bytes: the older output is in %s", c->file,
		 (unsigned long long)c->file_max, old);
}

/* Write out what waits. Called with the lock. Past the cap, only the flusher rotates
 * (renames and opens files: its sandbox list has them, a vCPU's has not); a vCPU thread
 * that flushes then waits for it, so the cap holds and no output is lost. */
/* The flusher's part of a rotation that is due (with the lock). */
static void console_rotate_due(struct console *c)
{
	if (!c->rotate_due)
		return;
	console_rotate(c);
	c->rotate_due = false;
	pthread_cond_broadcast(&c->rotated);
}

static void console_flush(struct console *c, bool flusher)
{
	while (c->rotate_due && !flusher && !c->closing)
		pthread_cond_wait(&c->rotated, &c->lock);
	if (flusher)
		console_rotate_due(c);
	if (!c->outlen || c->kind == CONSOLE_NONE) {
		c->outlen = 0;
		return;
	}
	if (write_all(c->out_fd, c->outbuf, c->outlen) < 0)
		c->kind = CONSOLE_NONE; /* the reader went away: stop writing, keep running */
	c->file_bytes += c->outlen;
	c->outlen = 0;
	if (c->file && c->file_max && c->file_bytes >= c->file_max && c->kind != CONSOLE_NONE) {
		c->rotate_due = true;
		if (flusher)
			console_rotate_due(c);
		else
			pthread_cond_signal(&c->flush_cond);
	}
}

/* Bytes that wait without a line end go out CONSOLE_FLUSH_MS after the first of them. */
static void *console_flusher(void *arg)
{
	struct console *c = arg;

	sandbox_enter(SANDBOX_CONSOLE);
	pthread_mutex_lock(&c->lock);
	while (!c->closing) {
		if (c->rotate_due) {
			console_rotate_due(c);
			continue;
		}
		if (!c->outlen) {
			pthread_cond_wait(&c->flush_cond, &c->lock);
			continue;
		}
		struct timespec t;

		clock_gettime(CLOCK_MONOTONIC, &t);
		t.tv_nsec += CONSOLE_FLUSH_MS * 1000000L;
		t.tv_sec += t.tv_nsec / 1000000000L;
		t.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&c->flush_cond, &c->lock, &t);
		console_flush(c, true);
	}
	console_flush(c, true);
	pthread_cond_broadcast(&c->rotated);
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static int console_open_out(struct console *c, const struct console_cfg *cfg)
{
	pthread_condattr_t ca;
	int err;

	if (cfg->kind == CONSOLE_STDOUT) {
		c->out_fd = dup(STDOUT_FILENO);
	} else {
		c->out_fd =
			open(cfg->path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
		if (c->out_fd < 0)
			log_err(SUB, "console file %s: %s", cfg->path, strerror(errno));
		c->file = strdup(cfg->path);
		c->file_max = cfg->max_bytes;
	}
	if (c->out_fd < 0)
		return -errno;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->flush_cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&c->rotated, NULL);
	err = pthread_create(&c->flusher, NULL, console_flusher, c);
	if (err)
		return -err;
	c->flusher_started = true;
	return 0;
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
		const char *b = buf;
		bool wake = !c->outlen;

		for (size_t done = 0; done < len && c->kind != CONSOLE_NONE;) {
			size_t n = len - done < CONSOLE_OUTBUF - c->outlen
					   ? len - done
					   : CONSOLE_OUTBUF - c->outlen;

			memcpy(c->outbuf + c->outlen, b + done, n);
			c->outlen += n;
			done += n;
			if (c->outlen == CONSOLE_OUTBUF)
				console_flush(c, false);
		}
		if (memchr(buf, '\n', len))
			console_flush(c, false);
		else if (wake && c->outlen)
			pthread_cond_signal(&c->flush_cond);
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
	if (c->flusher_started) {
		pthread_mutex_lock(&c->lock);
		c->closing = true;
		pthread_cond_signal(&c->flush_cond);
		pthread_mutex_unlock(&c->lock);
		pthread_join(c->flusher, NULL);
		pthread_cond_destroy(&c->flush_cond);
		pthread_cond_destroy(&c->rotated);
	}
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
	free(c->file);
	if (c->out_fd >= 0)
		close(c->out_fd);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
