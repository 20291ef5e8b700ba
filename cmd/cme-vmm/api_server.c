/* The control socket's event loop: accept clients, read lines, reply, and return when
 * the VM ends or a stop signal arrives — or, while a migration arrives, once it runs here
 * or failed. */
#include "api_priv.h"
#include "backup.h"
#include "migrate.h"

#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define SUB "api"

/* --api-group: the group may connect (0660). */
static int api_share(const char *path, long gid)
{
	if (gid < 0)
		return 0;
	if (chown(path, (uid_t)-1, (gid_t)gid) < 0 || chmod(path, 0660) < 0) {
		int err = -errno;

		log_err(SUB, "control socket %s: giving it to group %ld: %s", path, gid,
			strerror(-err));
		return err;
	}
	return 0;
}

int api_open(const char *path, long gid, struct vm *vm, struct api **out)
{
	struct api *api = calloc(1, sizeof(*api));

	if (!api)
		return -ENOMEM;
	api->vm = vm;
	api->gid = gid;
	api->listen_fd = -1;
	for (int i = 0; i < API_MAX_CLIENTS; i++)
		api->clients[i].fd = -1;
	if (path) {
		api->listen_fd = unix_listen(path);
		if (api->listen_fd < 0) {
			int err = api->listen_fd;

			log_err(SUB, "control socket %s: %s", path,
				err == -EEXIST ? "a file that is not a socket is in the way"
					       : strerror(-err));
			free(api);
			return err;
		}
		api->path = strdup(path);
		int err = api_share(path, gid);

		if (err) {
			api_close(api);
			return err;
		}
	}
	*out = api;
	return 0;
}

static void api_drop(struct api_client *c)
{
	close(c->fd);
	c->fd = -1;
	linebuf_free(&c->lb);
}

/* True when uid is a member of group gid (its primary group or a supplementary one). */
static bool uid_in_group(uid_t uid, gid_t peer_gid, long gid)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	gid_t groups[256];
	int n = 256;

	if (gid < 0)
		return false;
	if (peer_gid == (gid_t)gid)
		return true;
	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) || !res ||
	    getgrouplist(pw.pw_name, pw.pw_gid, groups, &n) < 0)
		return false;
	for (int i = 0; i < n; i++)
		if (groups[i] == (gid_t)gid)
			return true;
	return false;
}

/* Only root, this VMM's own uid and the --api-group may drive the VM, whatever the
 * socket's mode (a chmod by hand does not open it). Refused: one error line, closed.
 * *privileged: root or the VMM's user (only they may name host files). */
static bool api_peer_ok(struct api *api, int fd, bool *privileged)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return false;
	*privileged = cr.uid == 0 || cr.uid == geteuid();
	if (*privileged || uid_in_group(cr.uid, cr.gid, api->gid))
		return true;
	log_warn(SUB,
		 "control socket: refused uid %u (pid %d): not root, this VMM's user or "
		 "its --api-group",
		 (unsigned)cr.uid, (int)cr.pid);
	json_t *r = api_error("uid %u may not use this control socket", (unsigned)cr.uid);

	if (jsonl_send(fd, r) < 0)
		log_debug(SUB, "refused client went away");
	json_decref(r);
	/* What it sent already is read and dropped: closing a Unix socket with unread data
	 * resets the peer, which might then miss the refusal. */
	char junk[4096];

	for (int i = 0; i < 16 && recv(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0; i++)
		; /* bounded: a peer that keeps writing must not hold the loop */
	return false;
}

/* A free slot, or the one idle longest: idle clients cannot lock the socket. */
static struct api_client *api_slot(struct api *api)
{
	struct api_client *idle = NULL;

	for (int i = 0; i < API_MAX_CLIENTS; i++) {
		struct api_client *c = &api->clients[i];

		if (c->fd < 0)
			return c;
		if (!idle || c->last_ms < idle->last_ms)
			idle = c;
	}
	log_info(SUB, "%d control clients: dropping the one idle for %llu ms", API_MAX_CLIENTS,
		 (unsigned long long)(now_ns() / 1000000 - idle->last_ms));
	api_drop(idle);
	return idle;
}

static void api_accept(struct api *api)
{
	int fd = accept4(api->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	struct api_client *c;
	bool privileged = false;

	if (fd < 0)
		return;
	if (!api_peer_ok(api, fd, &privileged)) {
		close(fd);
		return;
	}
	c = api_slot(api);
	c->fd = fd;
	c->privileged = privileged;
	c->last_ms = c->window_ms = now_ns() / 1000000;
	c->in_window = 0;
	linebuf_init(&c->lb, API_MAX_LINE);
}

/* At most API_MAX_RATE requests a second from one client; past it, an error and the
 * client is dropped. */
static bool api_rate_ok(struct api_client *c)
{
	uint64_t now = now_ns() / 1000000;

	c->last_ms = now;
	if (now - c->window_ms >= 1000) {
		c->window_ms = now;
		c->in_window = 0;
	}
	if (++c->in_window <= API_MAX_RATE)
		return true;
	json_t *r = api_error("too many requests: at most %d a second", API_MAX_RATE);

	if (jsonl_send(c->fd, r) < 0)
		log_debug(SUB, "client went away");
	json_decref(r);
	log_warn(SUB, "a control client sent over %d requests a second: dropped", API_MAX_RATE);
	return false;
}

/* Read and answer every complete line of one client. */
static void api_client_input(struct api *api, struct api_client *c)
{
	ssize_t n = linebuf_fill(&c->lb, c->fd);
	char *line;

	if (n == -EAGAIN)
		return;
	if (n == -EMSGSIZE) {
		json_t *r = api_error("request longer than %d bytes", API_MAX_LINE);

		if (jsonl_send(c->fd, r) < 0)
			log_debug(SUB, "client went away");
		json_decref(r);
	}
	while ((line = linebuf_take(&c->lb))) {
		if (!api_rate_ok(c)) {
			free(line);
			api_drop(c);
			return;
		}
		api->privileged = c->privileged;
		json_t *reply =
			api->vm ? api_dispatch(api, line) : api_incoming_dispatch(api, line);
		int err = jsonl_send(c->fd, reply);

		json_decref(reply);
		free(line);
		if (err < 0) {
			api->follow_pending = false; /* the follower is gone already */
			break;
		}
		if (api->follow_pending) {
			/* `migrate` with follow: the migration writes to this client from now on. */
			api->follow_pending = false;
			mig_follow(api->mig, c->fd);
			c->fd = -1;
			linebuf_free(&c->lb);
			return;
		}
	}
	if (n <= 0)
		api_drop(c);
}

/* A stop signal: stop the VM, or abort the migration that brings it. */
static void api_signal(struct api *api, int signal_fd)
{
	struct signalfd_siginfo si;
	char why[64] = "a stop signal", err[256];

	if (read(signal_fd, &si, sizeof(si)) > 0) {
		snprintf(why, sizeof(why), "signal %u", si.ssi_signo);
		log_info(SUB, "%s: stopping the VM", why);
	}
	api->stop_requested = true;
	if (api->vm)
		vm_request_stop(api->vm);
	else if (mig_dest_abort(api->dest, why, err, sizeof(err)) < 0)
		log_info(SUB, "%s: the guest is stopped once it runs", err);
}

void api_serve(struct api *api, int signal_fd)
{
	struct pollfd p[3 + API_MAX_CLIENTS];

	for (;;) {
		int n = 0, efd = api->vm ? vm_event_fd(api->vm) : mig_dest_event_fd(api->dest);

		p[n++] = (struct pollfd){ efd, POLLIN, 0 };
		p[n++] = (struct pollfd){ signal_fd, POLLIN, 0 };
		p[n++] = (struct pollfd){ api->listen_fd, POLLIN, 0 };
		for (int i = 0; i < API_MAX_CLIENTS; i++)
			p[n++] = (struct pollfd){ api->clients[i].fd, POLLIN, 0 };
		if (poll(p, (nfds_t)n, -1) < 0 && errno != EINTR)
			return;
		if (p[0].revents)
			return;
		if (p[1].revents) {
			api_signal(api, signal_fd);
			return;
		}
		if (p[2].revents & POLLIN)
			api_accept(api);
		for (int i = 0; i < API_MAX_CLIENTS; i++)
			if (p[3 + i].revents && api->clients[i].fd >= 0)
				api_client_input(api, &api->clients[i]);
	}
}

void api_set_incoming(struct api *api, struct mig_dest *d)
{
	api->dest = d;
}

void api_set_arrived(struct api *api, struct vm *vm)
{
	api->vm = vm;
	api->arrived = true;
}

void api_set_cgroup(struct api *api, const struct cgroup *cg)
{
	api->cg = cg;
}

void api_set_tls_dir(struct api *api, const char *dir)
{
	api->tls_dir = dir;
}

bool api_stop_requested(const struct api *api)
{
	return api->stop_requested;
}

struct migration *api_migration(struct api *api)
{
	return api ? api->mig : NULL;
}

void api_close(struct api *api)
{
	if (!api)
		return;
	backup_free(api->backup); /* before the VM goes: its thread reads the guest's memory */
	for (int i = 0; i < API_MAX_CLIENTS; i++)
		if (api->clients[i].fd >= 0)
			api_drop(&api->clients[i]);
	if (api->listen_fd >= 0)
		close(api->listen_fd);
	if (api->path)
		unlink(api->path);
	free(api->path);
	free(api);
}
