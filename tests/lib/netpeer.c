/* The host end of the test guest's network: see netpeer.h. */
#include "netpeer.h"
#include "netframe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RCVBUF (16 << 20) /* a burst of the guest's frames must not overflow it */

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Send the host's frame seq (of len bytes) to the guest's MAC. */
static void answer(struct netpeer *p, const uint8_t *guest_mac, uint64_t seq, uint32_t len)
{
	static const uint8_t host_mac[6] = NETF_HOST_MAC;
	uint8_t f[NETF_MAX];

	netf_build(f, guest_mac, host_mac, seq, NETF_TO_GUEST, len);
	if (send(p->fd, f, len, 0) == (ssize_t)len) {
		pthread_mutex_lock(&p->mu);
		p->st.answered++;
		pthread_mutex_unlock(&p->mu);
	}
}

/* One frame from the guest, the kernel took in at ts: stamped right and the next in
 * sequence? */
static void take(struct netpeer *p, const uint8_t *f, uint32_t len, uint64_t ts)
{
	static const uint8_t host_mac[6] = NETF_HOST_MAC;
	uint64_t seq;
	uint32_t at;
	enum netf_verdict v = netf_check(f, len, host_mac, NETF_TO_HOST, &seq, &at);
	bool ok = v == NETF_OK;

	if (v == NETF_OTHER)
		return;
	pthread_mutex_lock(&p->mu);
	if (ok && p->st.frames && seq <= p->st.last_seq)
		ok = false, at = 18;
	if (!ok) {
		if (!p->st.bad++)
			snprintf(p->st.why, sizeof(p->st.why), "seq %llu len %u: byte %u wrong",
				 (unsigned long long)seq, len, at);
	} else {
		if (ts >= p->st.win_from && ts < p->st.win_to) {
			p->st.win_frames++;
			p->st.win_bytes += len;
		}
		p->st.last_ts = ts;
		if (!p->st.frames)
			p->st.first_seq = seq;
		else
			p->st.gaps += seq - p->st.last_seq - 1;
		p->st.last_seq = seq;
		p->st.frames++;
		p->st.bytes += len;
	}
	pthread_mutex_unlock(&p->mu);
	if (ok && p->answer)
		answer(p, f + 6, seq, len);
}

/* The kernel's arrival time of a message (SO_TIMESTAMPNS), 0 when it gave none. */
static uint64_t arrival(struct msghdr *m)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
		struct timespec ts;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_TIMESTAMPNS)
			continue;
		memcpy(&ts, CMSG_DATA(c), sizeof(ts));
		return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	}
	return 0;
}

static void *reader(void *arg)
{
	struct netpeer *p = arg;
	uint8_t f[65536];
	char ctl[256];
	struct sockaddr_ll from;
	struct iovec iov = { f, sizeof(f) };
	struct msghdr m;
	ssize_t n;

	while (!atomic_load(&p->stop)) {
		struct pollfd pf = { .fd = p->fd, .events = POLLIN };

		if (poll(&pf, 1, 100) <= 0)
			continue;
		m = (struct msghdr){ .msg_name = &from,
				     .msg_namelen = sizeof(from),
				     .msg_iov = &iov,
				     .msg_iovlen = 1,
				     .msg_control = ctl,
				     .msg_controllen = sizeof(ctl) };
		n = recvmsg(p->fd, &m, 0);
		if (n > 0 && from.sll_pkttype != PACKET_OUTGOING)
			take(p, f, (uint32_t)n, arrival(&m));
	}
	return NULL;
}

int netpeer_start(struct netpeer *p, const char *ifname, bool answer_frames, char *why, size_t len)
{
	struct sockaddr_ll at = { .sll_family = AF_PACKET, .sll_protocol = htons(NETF_ETHERTYPE) };
	int rcvbuf = RCVBUF, on = 1;

	memset(p, 0, sizeof(*p));
	p->answer = answer_frames;
	pthread_mutex_init(&p->mu, NULL);
	at.sll_ifindex = (int)if_nametoindex(ifname);
	p->fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(NETF_ETHERTYPE));
	if (p->fd < 0 || !at.sll_ifindex ||
	    setsockopt(p->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0 ||
	    setsockopt(p->fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on)) < 0 ||
	    bind(p->fd, (struct sockaddr *)&at, sizeof(at)) < 0 ||
	    pthread_create(&p->thread, NULL, reader, p)) {
		snprintf(why, len, "packet socket on %s: %s", ifname, strerror(errno));
		if (p->fd >= 0)
			close(p->fd);
		p->fd = -1;
		return -1;
	}
	p->started = true;
	return 0;
}

void netpeer_get(struct netpeer *p, struct netpeer_stats *st)
{
	pthread_mutex_lock(&p->mu);
	*st = p->st;
	pthread_mutex_unlock(&p->mu);
}

bool netpeer_wait_seq(struct netpeer *p, uint64_t seq, int timeout_ms)
{
	uint64_t end = mono_ms() + (uint64_t)timeout_ms;
	struct netpeer_stats st;

	do {
		netpeer_get(p, &st);
		if (st.frames && st.last_seq >= seq)
			return true;
		usleep(10000);
	} while (mono_ms() < end);
	return false;
}

bool netpeer_rate(struct netpeer *p, int len_ms, int timeout_ms, double *frames_s, double *bytes_s)
{
	struct timespec now;
	uint64_t end = mono_ms() + (uint64_t)timeout_ms, from;
	struct netpeer_stats st;

	clock_gettime(CLOCK_REALTIME, &now);
	from = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
	pthread_mutex_lock(&p->mu);
	p->st.win_from = from;
	p->st.win_to = from + (uint64_t)len_ms * 1000000ull;
	p->st.win_frames = p->st.win_bytes = 0;
	pthread_mutex_unlock(&p->mu);
	do {
		usleep(10000);
		netpeer_get(p, &st);
	} while (st.last_ts < st.win_to && mono_ms() < end);
	*frames_s = (double)st.win_frames * 1000.0 / len_ms;
	*bytes_s = (double)st.win_bytes * 1000.0 / len_ms;
	return st.last_ts >= st.win_to;
}

static void *flooder(void *arg)
{
	static const uint8_t host_mac[6] = NETF_HOST_MAC;
	struct netpeer *p = arg;
	uint8_t f[NETF_MAX];

	for (uint64_t seq = 1; !atomic_load(&p->stop);) {
		netf_build(f, p->flood_mac, host_mac, seq, NETF_TO_GUEST, NETF_MAX);
		if (send(p->fd, f, NETF_MAX, 0) == NETF_MAX)
			p->flooded = seq++;
		else if (errno != ENOBUFS && errno != EAGAIN)
			break;
		else
			sched_yield(); /* the socket's buffer is full: let the stack drain it */
	}
	return NULL;
}

int netpeer_flood(struct netpeer *p, const uint8_t *mac)
{
	memcpy(p->flood_mac, mac, 6);
	p->flooding = p->started && !pthread_create(&p->flooder, NULL, flooder, p);
	return p->flooding ? 0 : -1;
}

void netpeer_stop(struct netpeer *p)
{
	if (!p->started)
		return;
	atomic_store(&p->stop, true);
	if (p->flooding)
		pthread_join(p->flooder, NULL);
	p->flooding = false;
	pthread_join(p->thread, NULL);
	close(p->fd);
	p->started = false;
}
