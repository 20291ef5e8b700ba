/* The fence thread: gives every VMM of this node the deadline its guest may run until —
 * the send time of the last keepalive etcd acknowledged plus the fencing window — right
 * after each renewal and four times a second, and hears back whether a guest was fenced.
 * It talks to all VMMs at once, so a hung one costs the others nothing. It never waits on
 * the main loop or on etcd: a stuck daemon still fences (its deadlines stop moving). */
#include "cd_priv.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SUB	      "fence"
#define ROUND_MS      250
#define REPLY_MS      300
#define MAX_PUSH      512
#define REPLY_MAX     4096
#define SEND_TIMEO_MS 100

struct push {
	int fd;
	char name[CL_NAME_MAX];
};

static void timeouts(int fd, unsigned ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Send req to the VMM of every folder under <state_dir>/vms that has a live socket. */
static size_t send_all(struct cd *cd, json_t *req, struct push *p)
{
	char dir[CL_PATH_MAX + 8], api[2 * CL_PATH_MAX];
	struct dirent *e;
	size_t n = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/vms", cd->cfg->state_dir);
	d = opendir(dir);
	if (!d)
		return 0;
	while ((e = readdir(d)) && n < MAX_PUSH) {
		int fd;

		if (e->d_name[0] == '.' || strlen(e->d_name) >= CL_NAME_MAX)
			continue;
		snprintf(api, sizeof(api), "%s/%s/vm/api.sock", dir, e->d_name);
		fd = unix_connect(api);
		if (fd < 0) { /* a VMM an older daemon started */
			snprintf(api, sizeof(api), "%s/%s/api.sock", dir, e->d_name);
			fd = unix_connect(api);
		}
		if (fd < 0)
			continue; /* no VMM there (any more) */
		timeouts(fd, SEND_TIMEO_MS);
		if (jsonl_send(fd, req)) {
			close(fd);
			continue;
		}
		p[n].fd = fd;
		snprintf(p[n].name, sizeof(p[n].name), "%s", e->d_name);
		n++;
	}
	closedir(d);
	return n;
}

/* One VMM's answer: remember whether its guest is fenced. */
static void take_reply(struct cd *cd, const struct push *p)
{
	json_t *r = NULL, *f;

	if (jsonl_recv(p->fd, REPLY_MAX, &r) == 0 && json_is_true(json_object_get(r, "ok"))) {
		f = json_object_get(r, "fence");
		cd_fence_note(cd, p->name, json_is_true(json_object_get(f, "fenced")),
			      (uint64_t)json_integer_value(json_object_get(f, "fenced_at_ns")));
	} else if (r) {
		log_debug(SUB, "vm=%s: fence-deadline refused: %s", p->name,
			  json_string_value(json_object_get(r, "error")));
	}
	json_decref(r);
}

/* Wait (at most REPLY_MS in all) for the answers; a VMM that does not answer in time is
 * left alone until the next round. */
static void collect(struct cd *cd, struct push *p, size_t n)
{
	struct pollfd pf[MAX_PUSH];
	uint64_t end = now_ns() + REPLY_MS * 1000000ull;
	size_t left = n;

	for (size_t i = 0; i < n; i++)
		pf[i] = (struct pollfd){ .fd = p[i].fd, .events = POLLIN };
	while (left) {
		uint64_t now = now_ns();
		int ready;

		if (now >= end)
			break;
		ready = poll(pf, n, (int)((end - now) / 1000000) + 1);
		if (ready < 0 && errno != EINTR)
			break;
		for (size_t i = 0; ready > 0 && i < n; i++) {
			if (pf[i].fd < 0 || !pf[i].revents)
				continue;
			take_reply(cd, &p[i]);
			close(p[i].fd);
			pf[i].fd = -1; /* poll skips it */
			left--;
		}
	}
	for (size_t i = 0; i < n; i++)
		if (pf[i].fd >= 0)
			close(pf[i].fd);
}

static void push_round(struct cd *cd, uint64_t deadline_ns)
{
	static struct push p[MAX_PUSH]; /* this thread's only */
	json_t *req = json_pack("{s:s,s:I}", "cmd", "fence-deadline", "deadline_ns",
				(json_int_t)deadline_ns);
	size_t n;

	if (!req)
		return;
	n = send_all(cd, req, p);
	json_decref(req);
	collect(cd, p, n);
}

static void wait_renewal(struct cd *cd, unsigned ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += (long)ms * 1000000;
	ts.tv_sec += ts.tv_nsec / 1000000000;
	ts.tv_nsec %= 1000000000;
	pthread_mutex_lock(&cd->fence.mu);
	if (!atomic_load(cd->stop))
		pthread_cond_timedwait(&cd->fence.cond, &cd->fence.mu, &ts);
	pthread_mutex_unlock(&cd->fence.mu);
}

void *cd_fence_main(void *arg)
{
	struct cd *cd = arg;

	while (!atomic_load(cd->stop)) {
		uint64_t deadline = cd_fence_deadline(cd, NULL);

		/* Fencing on: never push "no deadline" (0 clears one) before a renewal gave
		 * one. Fencing off: clear whatever an earlier configuration left. */
		if (!cd->cfg->fence || deadline)
			push_round(cd, deadline);
		wait_renewal(cd, ROUND_MS);
	}
	return NULL;
}

void cd_fence_wake(struct cd *cd)
{
	pthread_mutex_lock(&cd->fence.mu);
	pthread_cond_broadcast(&cd->fence.cond);
	pthread_mutex_unlock(&cd->fence.mu);
}
