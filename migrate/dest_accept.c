/* The destination's listener: every TCP connection gets its TLS handshake in a thread of
 * its own, so that a peer that stalls, is not TLS or holds no node certificate holds up
 * no one — the source's connections are handshaken beside it, within the source's own
 * connect timeout. Node connections wait in a queue until taken. */
#include "dest_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SUB		"incoming"
#define MAX_HANDSHAKES	64   /* at once; more connections wait in the listen backlog */
#define MAX_QUEUED	16   /* node connections not taken yet */
#define HANDSHAKE_MS	3000 /* a node's handshake takes milliseconds; a silent peer this */
#define TAKE_RECHECK_MS 100  /* how often a take looks at its stop condition */

struct mig_acceptor {
	struct tls_ctx *ctx;
	int listen_fd;
	int stop_pipe[2];
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stopping;
	unsigned inflight;
	int shut[MAX_HANDSHAKES]; /* a dup of each handshake's socket, to cut it at stop */
	struct tls_conn *queue[MAX_QUEUED];
	unsigned queued;
};

struct handshake {
	struct mig_acceptor *a;
	int fd, slot;
	char addr[64];
};

/* Queue a node's connection; anything else is refused (logged) and closed. */
static void accept_done(struct mig_acceptor *a, struct tls_conn *conn)
{
	if (!net_tls_peer_is_node(conn)) {
		log_warn(SUB, "refused %s (%s): an operator's certificate, not a node's",
			 net_tls_peer_addr(conn), net_tls_peer_cn(conn));
		net_tls_close(conn);
		return;
	}
	pthread_mutex_lock(&a->lock);
	if (!a->stopping && a->queued < MAX_QUEUED) {
		a->queue[a->queued++] = conn;
		conn = NULL;
		pthread_cond_broadcast(&a->cond);
	}
	pthread_mutex_unlock(&a->lock);
	if (conn) {
		log_warn(SUB, "refused %s: %s", net_tls_peer_addr(conn),
			 a->stopping ? "no connection is awaited any more" : "too many waiting");
		net_tls_close(conn);
	}
}

static void *handshake_thread(void *arg)
{
	struct handshake *h = arg;
	struct mig_acceptor *a = h->a;
	struct tls_conn *conn = NULL;
	char why[256];

	/* A refusal is logged by net_tls_accept_fd itself. */
	int rc = net_tls_accept_fd(a->ctx, h->fd, h->addr, HANDSHAKE_MS, &conn, why, sizeof(why));

	/* The handshake is over: stop may no longer cut this socket (once queued, it may be a
	 * page channel in use). */
	pthread_mutex_lock(&a->lock);
	close(a->shut[h->slot]);
	a->shut[h->slot] = -1;
	pthread_mutex_unlock(&a->lock);
	if (rc == 0)
		accept_done(a, conn);
	pthread_mutex_lock(&a->lock);
	a->inflight--;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
	free(h);
	return NULL;
}

/* One connection: a handshake thread for it, or closed when too many are under way. */
static void accept_one(struct mig_acceptor *a, int fd, const char *addr)
{
	struct handshake *h = calloc(1, sizeof(*h));
	pthread_attr_t at;
	pthread_t t;
	int slot = -1, dup_fd = dup(fd);

	pthread_mutex_lock(&a->lock);
	for (int i = 0; i < MAX_HANDSHAKES && slot < 0 && !a->stopping; i++)
		if (a->shut[i] < 0)
			slot = i;
	if (slot >= 0 && h && dup_fd >= 0) {
		a->shut[slot] = dup_fd;
		a->inflight++;
	}
	pthread_mutex_unlock(&a->lock);
	if (slot < 0 || !h || dup_fd < 0) {
		log_warn(SUB, "refused %s: %d handshakes under way already", addr, MAX_HANDSHAKES);
		goto fail;
	}
	*h = (struct handshake){ a, fd, slot, "" };
	snprintf(h->addr, sizeof(h->addr), "%s", addr);
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &at, handshake_thread, h) == 0) {
		pthread_attr_destroy(&at);
		return;
	}
	pthread_attr_destroy(&at);
	pthread_mutex_lock(&a->lock);
	a->shut[slot] = -1;
	a->inflight--;
	pthread_mutex_unlock(&a->lock);
	log_warn(SUB, "refused %s: cannot start a handshake thread", addr);
fail:
	if (dup_fd >= 0)
		close(dup_fd);
	close(fd);
	free(h);
}

static void *acceptor_thread(void *arg)
{
	struct mig_acceptor *a = arg;

	for (;;) {
		struct pollfd p[2] = { { a->stop_pipe[0], POLLIN, 0 },
				       { a->listen_fd, POLLIN, 0 } };
		char addr[64];
		bool full;
		int fd;

		/* Every handshake slot taken (peers that say nothing): new connections wait in
		 * the kernel's backlog until one frees, rather than being closed. */
		pthread_mutex_lock(&a->lock);
		full = a->inflight >= MAX_HANDSHAKES;
		pthread_mutex_unlock(&a->lock);
		if (poll(p, full ? 1 : 2, full ? 100 : -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		if (full)
			continue;
		if (!(p[1].revents & POLLIN))
			continue;
		fd = net_tls_accept_tcp(a->listen_fd, 0, addr, sizeof(addr));
		if (fd >= 0)
			accept_one(a, fd, addr);
	}
	return NULL;
}

int mig_acceptor_start(struct tls_ctx *ctx, int listen_fd, struct mig_acceptor **out)
{
	struct mig_acceptor *a = calloc(1, sizeof(*a));

	if (!a)
		return -ENOMEM;
	a->ctx = ctx;
	a->listen_fd = listen_fd;
	for (int i = 0; i < MAX_HANDSHAKES; i++)
		a->shut[i] = -1;
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->cond, NULL);
	if (pipe2(a->stop_pipe, O_CLOEXEC) < 0) {
		a->stop_pipe[0] = a->stop_pipe[1] = -1;
		mig_acceptor_stop(a);
		return -errno;
	}
	if (pthread_create(&a->thread, NULL, acceptor_thread, a)) {
		mig_acceptor_stop(a);
		return -EAGAIN;
	}
	a->thread_started = true;
	*out = a;
	return 0;
}

int mig_acceptor_take(struct mig_acceptor *a, uint64_t end, bool (*stop)(void *), void *arg,
		      struct tls_conn **out)
{
	int rc = 0;

	pthread_mutex_lock(&a->lock);
	while (!a->queued) {
		uint64_t now = now_ns(), wake = now + TAKE_RECHECK_MS * 1000000ull;
		struct timespec ts;

		if (stop && stop(arg)) {
			rc = -ECANCELED;
			break;
		}
		if (now >= end) {
			rc = -ETIMEDOUT;
			break;
		}
		wake = wake < end ? wake : end;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)((wake - now) % 1000000000ull);
		ts.tv_sec += (time_t)((wake - now) / 1000000000ull) + ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&a->cond, &a->lock, &ts);
	}
	if (!rc) {
		*out = a->queue[0];
		memmove(a->queue, a->queue + 1, --a->queued * sizeof(a->queue[0]));
	}
	pthread_mutex_unlock(&a->lock);
	return rc;
}

void mig_acceptor_stop(struct mig_acceptor *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	a->stopping = true;
	for (int i = 0; i < MAX_HANDSHAKES; i++)
		if (a->shut[i] >= 0)
			shutdown(a->shut[i], SHUT_RDWR); /* the handshake fails at once */
	pthread_mutex_unlock(&a->lock);
	if (a->thread_started) {
		if (write(a->stop_pipe[1], "x", 1) < 0)
			log_warn(SUB, "cannot wake the acceptor");
		pthread_join(a->thread, NULL);
	}
	pthread_mutex_lock(&a->lock);
	while (a->inflight)
		pthread_cond_wait(&a->cond, &a->lock);
	pthread_mutex_unlock(&a->lock);
	for (unsigned i = 0; i < a->queued; i++)
		net_tls_close(a->queue[i]);
	for (int i = 0; i < 2; i++)
		if (a->stop_pipe[i] >= 0)
			close(a->stop_pipe[i]);
	pthread_cond_destroy(&a->cond);
	pthread_mutex_destroy(&a->lock);
	free(a);
}
