/* virtio-net, in a network namespace of the benchmark's own with a tap and a packet socket
 * on it (netpeer), so guest and host pay the same for the host's stack:
 *  - transmit: the test guest's bulk send (net_bench=1: 1514-byte frames through its polled
 *    ring-3 driver) against the host's own writes of the same frames into the same tap;
 *  - receive: the host floods the tap with 1514-byte frames; the test guest takes what the
 *    device delivers (net_bench=2) against the host's own reads from the same tap.
 * Needs root, /dev/net/tun and iproute2. */
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bench.h"
#include "common.h"
#include "harness.h"
#include "netframe.h"
#include "netns.h"
#include "netpeer.h"

#define NET_RUNS   3
#define NET_FRAMES 100000	 /* of 1514 bytes: 144 MiB */
#define RX_QUIET   2000000000ull /* a receive run ends after 2 s without a frame */
#define TAP	   "cmebench0"
#define HDR	   12

struct net_run {
	double mib_s, frames_s;
	double received; /* the fraction of the frames the host's reader got */
};

/* The reader on the tap (inside the namespace). 0, or -1 after a line saying why. */
static int peer_start(struct netns *ns, struct netpeer *peer)
{
	char why[256] = "cannot enter the namespace";
	int saved = netns_enter(ns), rc = -1;

	if (saved >= 0)
		rc = netpeer_start(peer, TAP, false, why, sizeof(why));
	netns_leave(saved);
	if (rc)
		printf("{\"bench\":\"virtio_net\",\"error\":\"%s\"}\n", why);
	return rc;
}

static double received(struct netpeer *peer)
{
	struct netpeer_stats st;

	netpeer_wait_seq(peer, NET_FRAMES, 5000); /* the reader may lag the writer */
	netpeer_get(peer, &st);
	return st.bad ? 0 : (double)st.frames / NET_FRAMES;
}

/* A run that gave no figure says why: the VMM's last line on stderr, or its console's. */
static void run_failed(const char *name, struct vmm_proc *p)
{
	char *e = test_read_file(p->errlog), *c = test_read_file(p->console), *last;
	const char *text = e[0] ? e : c;
	json_t *o;
	char *s;

	last = strrchr(text, '\n');
	while (last && last > text && !last[1]) { /* the last line that has text */
		*last = 0;
		last = strrchr(text, '\n');
	}
	o = json_pack("{s:s,s:s}", "bench", name, "error", last ? last + 1 : text);
	s = json_dumps(o, JSON_COMPACT);
	printf("%s\n", s ? s : "");
	fflush(stdout);
	free(s);
	json_decref(o);
	free(e);
	free(c);
}

/* The guest's "NETBENCH ..." or "NETRXBENCH ..." line (line) on p's console: frames/s and
 * MiB/s by its TSC into r. */
static bool guest_figures(struct vmm_proc *p, const char *line, struct net_run *r)
{
	unsigned long frames = 0, lost = 0, bytes = 0, tsc = 0, khz = 0;
	char *c, *hit;
	bool ok;

	if (!vmm_console_wait(p, line, 120000)) {
		run_failed(strcmp(line, "NETBENCH") ? "virtio_net_rx" : "virtio_net_tx", p);
		return false;
	}
	/* The guest writes a line a character at a time: wait for its end. */
	for (int i = 0;; i++) {
		c = test_read_file(p->console);
		hit = strstr(c, line);
		if (!hit || strchr(hit, '\n') || i == 500)
			break;
		free(c);
		usleep(10000);
	}
	ok = hit &&
	     (sscanf(hit, "NETBENCH frames=%lu bytes=%lu tsc=%lu tsc_khz=%lu", &frames, &bytes,
		     &tsc, &khz) == 4 ||
	      sscanf(hit, "NETRXBENCH frames=%lu lost=%lu bytes=%lu tsc=%lu tsc_khz=%lu", &frames,
		     &lost, &bytes, &tsc, &khz) == 5) &&
	     tsc && khz;
	if (ok) {
		r->mib_s = bytes / (double)(1 << 20) / ((double)tsc / khz / 1000.0);
		r->frames_s = frames / ((double)tsc / khz / 1000.0);
		r->received = frames ? (double)frames / (double)(frames + lost) : 0;
	}
	free(c);
	if (!ok)
		run_failed(strcmp(line, "NETBENCH") ? "virtio_net_rx" : "virtio_net_tx", p);
	return ok;
}

/* The guest, net_bench=mode: transmit (1) NET_FRAMES frames timed by its own TSC from the
 * first post to the last completion, or receive (2) the host's flood, timed from the first
 * frame to the NET_FRAMES-th. */
static void guest_run(struct netns *ns, int mode, struct net_run *r)
{
	static const uint8_t mac[6] = { 0x02, 0, 0, 0, 0, 0x2a };
	char cmdline[96];
	const char *args[] = {
		"--mem",      "128M",	   "--vcpus", "2",     "--image",
		test_guest(), "--cmdline", cmdline,   "--net", "tap=" TAP ",mac=02:00:00:00:00:2a",
		NULL
	};
	struct netpeer peer;
	struct vmm_proc p;
	bool rx = mode == 2;
	int saved;

	*r = (struct net_run){ 0 };
	snprintf(cmdline, sizeof(cmdline), "wss_mb=8 vcpus=0 net_bench=%d net_frames=%d", mode,
		 NET_FRAMES);
	if (peer_start(ns, &peer))
		return;
	saved = netns_enter(ns);
	if (saved >= 0 && vmm_start(&p, args) == 0 &&
	    (!rx || (vmm_console_wait(&p, "NET mac=", 30000) && netpeer_flood(&peer, mac) == 0)) &&
	    guest_figures(&p, rx ? "NETRXBENCH" : "NETBENCH", r) && !rx)
		r->received = received(&peer); /* receive: 1 - the guest's lost share */
	netns_leave(saved);
	vmm_kill_all();
	netpeer_stop(&peer);
}

/* The tap as the VMM opens it: the 12-byte virtio header on every frame. */
static int tap_open(void)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC), hdr = HDR;

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", TAP);
	if (fd >= 0 && (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 ||
			ioctl(fd, TUNSETOFFLOAD, 0) < 0)) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* The host: the same frames, built the same way, written into the tap by one thread. */
static void host_net(struct netns *ns, struct net_run *r)
{
	static const uint8_t src[6] = { 0x02, 0, 0, 0, 0, 0x01 }, dst[6] = NETF_HOST_MAC;
	static uint8_t hdr[HDR], frame[NETF_MAX];
	struct iovec iov[2] = { { hdr, HDR }, { frame, NETF_MAX } };
	struct netpeer peer;
	int saved, fd;
	uint64_t t0, ns_taken;
	bool ok = true;

	*r = (struct net_run){ 0 };
	if (peer_start(ns, &peer))
		return;
	saved = netns_enter(ns);
	fd = saved >= 0 ? tap_open() : -1;
	netns_leave(saved);
	t0 = now_ns();
	for (uint64_t seq = 1; fd >= 0 && ok && seq <= NET_FRAMES; seq++) {
		netf_build(frame, dst, src, seq, NETF_TO_HOST, NETF_MAX);
		ok = writev(fd, iov, 2) == HDR + NETF_MAX; /* a tap never says EAGAIN to a write */
	}
	ns_taken = now_ns() - t0;
	if (fd >= 0 && ok) {
		r->mib_s = (double)NET_FRAMES * NETF_MAX / (1 << 20) / ((double)ns_taken / 1e9);
		r->frames_s = NET_FRAMES / ((double)ns_taken / 1e9);
		r->received = received(&peer);
	}
	if (fd >= 0)
		close(fd);
	netpeer_stop(&peer);
}

/* Receive: the host reads the same flood from the tap as the VMM would, one thread. */
static void host_rx(struct netns *ns, struct net_run *r)
{
	static const uint8_t mac[6] = { 0x02, 0, 0, 0, 0, 0x2a };
	static uint8_t hdr[HDR], frame[65536];
	struct iovec iov[2] = { { hdr, HDR }, { frame, sizeof(frame) } };
	uint64_t got = 0, first = 0, last = 0, seq0 = 0, seq = 0;
	struct netpeer peer;
	struct pollfd pf;
	int saved, fd;

	*r = (struct net_run){ 0 };
	if (peer_start(ns, &peer))
		return;
	saved = netns_enter(ns);
	fd = saved >= 0 ? tap_open() : -1;
	netns_leave(saved);
	if (fd >= 0 && netpeer_flood(&peer, mac) == 0) {
		while (got < NET_FRAMES && (!got || now_ns() - last < RX_QUIET)) {
			pf = (struct pollfd){ .fd = fd, .events = POLLIN };
			if (poll(&pf, 1, 100) != 1 || readv(fd, iov, 2) != HDR + NETF_MAX)
				continue;
			last = now_ns();
			first = got++ ? first : last;
			seq = netf_get(frame + 18, 8);
			seq0 = seq0 ? seq0 : seq;
		}
		if (got > 1 && last > first) {
			r->mib_s =
				got * (double)NETF_MAX / (1 << 20) / ((double)(last - first) / 1e9);
			r->frames_s = got / ((double)(last - first) / 1e9);
			r->received = (double)got / (double)(seq - seq0 + 1);
		}
	}
	netpeer_stop(&peer);
	if (fd >= 0)
		close(fd);
}

static void emit_skip(const char *why)
{
	printf("{\"bench\":\"virtio_net\",\"skipped\":\"%s\"}\n", why);
	fflush(stdout);
}

/* NET_RUNS runs of guest and host into one line, name, and its _fraction line. */
static void emit(const char *name, struct net_run *g, struct net_run *h, const char *what)
{
	double gm[NET_RUNS], hm[NET_RUNS], gf[NET_RUNS], hf[NET_RUNS], gr[NET_RUNS], hr[NET_RUNS];
	const char *const keys[] = {
		"guest_mib_s",	 "host_mib_s", "guest_frames_s", "host_frames_s", "guest_received",
		"host_received", NULL
	};
	double *const vals[] = { gm, hm, gf, hf, gr, hr };

	for (int i = 0; i < NET_RUNS; i++) {
		gm[i] = g[i].mib_s, hm[i] = h[i].mib_s, gf[i] = g[i].frames_s;
		hf[i] = h[i].frames_s, gr[i] = g[i].received, hr[i] = h[i].received;
	}
	bench_emit_many(name, NET_RUNS, keys, vals);
	printf("{\"bench\":\"%s_fraction\",\"mib_s\":%.3f,\"note\":\"guest over host, medians; "
	       "%s\"}\n",
	       name,
	       bench_median(hm, NET_RUNS) > 0
		       ? bench_median(gm, NET_RUNS) / bench_median(hm, NET_RUNS)
		       : 0,
	       what);
	fflush(stdout);
}

void bench_virtio_net(void)
{
	struct net_run g[NET_RUNS], h[NET_RUNS], gr[NET_RUNS], hr[NET_RUNS];
	struct netns ns;
	char why[256];

	if (access("/dev/net/tun", R_OK | W_OK) < 0)
		return emit_skip("no /dev/net/tun");
	if (netns_make(&ns, why, sizeof(why)) < 0)
		return emit_skip(why);
	if (netns_add_tap(&ns, TAP, why, sizeof(why)) < 0) {
		netns_remove(&ns);
		return emit_skip(why);
	}
	for (int i = 0; i < NET_RUNS; i++) {
		guest_run(&ns, 1, &g[i]);
		host_net(&ns, &h[i]);
		guest_run(&ns, 2, &gr[i]);
		host_rx(&ns, &hr[i]);
	}
	netns_remove(&ns);
	emit("virtio_net_tx", g, h, "1514-byte frames, the test guest's polled driver on one vCPU");
	emit("virtio_net_rx", gr, hr,
	     "1514-byte frames flooded by a host thread; received: the fraction of those sent");
}
