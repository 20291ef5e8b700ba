/* The control socket's event loop: accept clients, read lines, reply, and return when
 * the VM ends or a stop signal arrives — or, while a migration arrives, once it runs here
 * or failed. */
#include "api_priv.h"
#include "migrate.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define SUB "api"

int api_open(const char *path, struct vm *vm, struct api **out)
{
	struct api *api = calloc(1, sizeof(*api));

	if (!api)
		return -ENOMEM;
	api->vm = vm;
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

static void api_accept(struct api *api)
{
	int fd = accept4(api->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	for (int i = 0; i < API_MAX_CLIENTS; i++) {
		if (api->clients[i].fd < 0) {
			api->clients[i].fd = fd;
			linebuf_init(&api->clients[i].lb, API_MAX_LINE);
			return;
		}
	}
	log_warn(SUB, "too many control clients, refusing one");
	close(fd);
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
