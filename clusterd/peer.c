/* The peer channel: the daemons talk to each other directly, over mutual TLS with their
 * node certificates (net/), for what must work while etcd does not — the confirmations of
 * an etcd outage and the releases the leader gathers before it restarts a lost node's VMs
 * (quorum.c). One request per connection: a 4-byte big-endian length and a JSON object,
 * answered the same way. The server is one thread that answers each request at once (a
 * handler never blocks); a client asks all peers at once, each from a thread of its own,
 * so one unreachable peer costs the others nothing. */
#include "cd_priv.h"
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SUB	     "peer"
#define MSG_MAX	     4096
#define ACCEPT_MS    250 /* how often the server looks at the stop flag */
#define SERVE_MS     500 /* a client's handshake and request, on the server */
#define MAX_ASK	     CD_MAX_MEMBERS
#define DEFAULT_PORT 7410

struct cd_peer {
	struct tls_ctx *srv, *cli;
	int listen_fd;
	pthread_t thread;
	bool started;
	atomic_bool quit;
	cd_peer_handler handler;
	char addr[160]; /* host:port we listen on (the port the kernel picked, if 0 was asked) */
};

static int send_msg(struct tls_conn *c, json_t *msg)
{
	char *txt = json_dumps(msg, JSON_COMPACT);
	uint32_t len;
	int rc;

	if (!txt)
		return -ENOMEM;
	len = htonl((uint32_t)strlen(txt));
	rc = net_tls_write_all(c, &len, sizeof(len));
	if (!rc)
		rc = net_tls_write_all(c, txt, strlen(txt));
	free(txt);
	return rc;
}

static int recv_msg(struct tls_conn *c, json_t **out)
{
	char buf[MSG_MAX + 1];
	uint32_t len;
	int rc = net_tls_read_full(c, &len, sizeof(len));

	*out = NULL;
	if (rc)
		return rc;
	len = ntohl(len);
	if (len == 0 || len > MSG_MAX)
		return -EMSGSIZE;
	rc = net_tls_read_full(c, buf, len);
	if (rc)
		return rc;
	buf[len] = 0;
	*out = json_loads(buf, 0, NULL);
	return json_is_object(*out) ? 0 : -EBADMSG;
}

/* One request: only nodes of the cluster (node certificates) are answered. */
static void serve(struct cd *cd, struct tls_conn *c)
{
	json_t *req = NULL, *reply;

	if (!net_tls_peer_is_node(c)) {
		log_warn(SUB, "%s: not a node certificate (CN=%s): refused", net_tls_peer_addr(c),
			 net_tls_peer_cn(c));
		return;
	}
	if (net_tls_set_timeout(c, SERVE_MS) || recv_msg(c, &req))
		goto out;
	reply = cd->peer->handler(cd, net_tls_peer_cn(c), req);
	if (reply && send_msg(c, reply))
		log_debug(SUB, "%s: reply not sent", net_tls_peer_addr(c));
	json_decref(reply);
out:
	json_decref(req);
}

static void *server_main(void *arg)
{
	struct cd *cd = arg;
	char err[256];

	while (!atomic_load(cd->stop) && !atomic_load(&cd->peer->quit)) {
		struct tls_conn *c = NULL;
		int rc = net_tls_accept(cd->peer->srv, cd->peer->listen_fd, ACCEPT_MS, &c, err,
					sizeof(err));

		if (rc == 0) {
			serve(cd, c);
			net_tls_close(c);
		} else if (rc != -ETIMEDOUT) {
			log_debug(SUB, "accept: %s", err);
		}
	}
	return NULL;
}

/* cfg->peer, or address:7410 when it is not set. */
static void listen_addr(const struct cd *cd, char *host, size_t hlen, uint16_t *port)
{
	if (!cd->cfg->peer[0] ||
	    net_parse_hostport(cd->cfg->peer, host, hlen, port)) { /* checked by config.c */
		snprintf(host, hlen, "%s", cd->cfg->address);
		*port = DEFAULT_PORT;
	}
}

int cd_peer_start(struct cd *cd, cd_peer_handler handler, char *err, size_t errlen)
{
	struct cd_peer *p = calloc(1, sizeof(*p));
	char host[128];
	uint16_t port, bound = 0;
	int rc;

	if (!p)
		return -ENOMEM;
	cd->peer = p;
	p->listen_fd = -1;
	p->handler = handler;
	listen_addr(cd, host, sizeof(host), &port);
	rc = net_tls_ctx_new(cd->cfg->tls_dir, true, &p->srv, err, errlen);
	if (!rc)
		rc = net_tls_ctx_new(cd->cfg->tls_dir, false, &p->cli, err, errlen);
	if (!rc)
		rc = net_tls_listen(host, port, &p->listen_fd, &bound, err, errlen);
	if (rc)
		return rc;
	snprintf(p->addr, sizeof(p->addr), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host,
		 (unsigned)bound);
	rc = -pthread_create(&p->thread, NULL, server_main, cd);
	if (rc) {
		snprintf(err, errlen, "peer channel: cannot start its thread");
		return rc;
	}
	p->started = true;
	log_info(SUB, "node=%s: peer channel on %s", cd->cfg->node, p->addr);
	return 0;
}

void cd_peer_stop(struct cd *cd)
{
	struct cd_peer *p = cd->peer;

	if (!p)
		return;
	atomic_store(&p->quit, true);
	if (p->started)
		pthread_join(p->thread, NULL); /* it looks within ACCEPT_MS */
	if (p->listen_fd >= 0)
		close(p->listen_fd);
	net_tls_ctx_free(p->srv);
	net_tls_ctx_free(p->cli);
	free(p);
	cd->peer = NULL;
}

const char *cd_peer_addr(const struct cd *cd)
{
	return cd->peer ? cd->peer->addr : "";
}

/* ---- asking ------------------------------------------------------------------------------ */

struct ask {
	struct cd *cd;
	const struct cl_member *to;
	json_t *req;
	json_t *reply;
	unsigned ms;
	pthread_t t;
	bool started;
};

static void *ask_main(void *arg)
{
	struct ask *a = arg;
	struct tls_conn *c = NULL;
	char host[128], err[256];
	uint16_t port;

	if (net_parse_hostport(a->to->peer, host, sizeof(host), &port) ||
	    net_tls_connect(a->cd->peer->cli, host, port, a->to->name, (int)a->ms, &c, err,
			    sizeof(err))) {
		log_debug(SUB, "node=%s (%s): %s", a->to->name, a->to->peer, err);
		return NULL;
	}
	if (net_tls_set_timeout(c, (int)a->ms) || send_msg(c, a->req) || recv_msg(c, &a->reply)) {
		json_decref(a->reply);
		a->reply = NULL;
	}
	net_tls_close(c);
	return NULL;
}

void cd_peer_ask(struct cd *cd, const struct cl_member *to, size_t n, json_t *req, json_t **replies,
		 unsigned ms)
{
	struct ask a[MAX_ASK];

	if (n > MAX_ASK)
		n = MAX_ASK;
	for (size_t i = 0; i < n; i++) {
		a[i] = (struct ask){ .cd = cd, .to = &to[i], .req = req, .ms = ms };
		a[i].started = cd->peer && !pthread_create(&a[i].t, NULL, ask_main, &a[i]);
	}
	for (size_t i = 0; i < n; i++) {
		if (a[i].started)
			pthread_join(a[i].t, NULL);
		replies[i] = a[i].reply;
	}
}
