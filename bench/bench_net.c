/* virtio-net: the test guest's bulk send (net_bench=1: 1514-byte frames through its polled
 * ring-3 driver) into a tap, against the host's own writes of the same frames into the same
 * tap, in a network namespace of its own with a packet socket reading them (netpeer), so
 * both pay the same for the host's stack. Needs root, /dev/net/tun and iproute2. */
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
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
#define NET_FRAMES 100000 /* of 1514 bytes: 144 MiB */
#define TAP	   "cmebench0"
#define HDR	   12

struct net_run {
	double mib_s, frames_s;
	double received; /* the fraction of the frames the host's reader got */
};

/* The reader on the tap (inside the namespace). 0 or -1. */
static int peer_start(struct netns *ns, struct netpeer *peer)
{
	char why[256];
	int saved = netns_enter(ns), rc;

	if (saved < 0)
		return -1;
	rc = netpeer_start(peer, TAP, false, why, sizeof(why));
	netns_leave(saved);
	return rc;
}

static double received(struct netpeer *peer)
{
	struct netpeer_stats st;

	netpeer_wait_seq(peer, NET_FRAMES, 5000); /* the reader may lag the writer */
	netpeer_get(peer, &st);
	return st.bad ? 0 : (double)st.frames / NET_FRAMES;
}

/* The guest: NET_FRAMES frames timed by its own TSC (first post to last completion). */
static void guest_net(struct netns *ns, struct net_run *r)
{
	char cmdline[96];
	const char *args[] = { "--mem",	    "128M",  "--vcpus", "2",	    "--image", test_guest(),
			       "--cmdline", cmdline, "--net",	"tap=" TAP, NULL };
	unsigned long frames = 0, bytes = 0, tsc = 0, khz = 0;
	struct netpeer peer;
	struct vmm_proc p;
	int saved;
	char *c, *hit;

	*r = (struct net_run){ 0 };
	snprintf(cmdline, sizeof(cmdline), "wss_mb=8 vcpus=0 net_bench=1 net_frames=%d",
		 NET_FRAMES);
	if (peer_start(ns, &peer))
		return;
	saved = netns_enter(ns);
	if (saved >= 0 && vmm_start(&p, args) == 0 && vmm_console_wait(&p, "NETBENCH", 120000)) {
		c = test_read_file(p.console);
		hit = strstr(c, "NETBENCH");
		if (hit &&
		    sscanf(hit, "NETBENCH frames=%lu bytes=%lu tsc=%lu tsc_khz=%lu", &frames,
			   &bytes, &tsc, &khz) == 4 &&
		    tsc && khz) {
			r->mib_s = bytes / (double)(1 << 20) / ((double)tsc / khz / 1000.0);
			r->frames_s = frames / ((double)tsc / khz / 1000.0);
		}
		free(c);
		r->received = received(&peer);
	}
	netns_leave(saved);
	vmm_kill_all();
	netpeer_stop(&peer);
}

/* The tap as the VMM opens it: the 12-byte virtio header on every frame. */
static int tap_open(void)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC), hdr = HDR;

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
		ok = writev(fd, iov, 2) == HDR + NETF_MAX;
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

static void emit_skip(const char *why)
{
	printf("{\"bench\":\"virtio_net_tx\",\"skipped\":\"%s\"}\n", why);
	fflush(stdout);
}

void bench_virtio_net(void)
{
	struct net_run g[NET_RUNS], h[NET_RUNS];
	double gm[NET_RUNS], hm[NET_RUNS], gf[NET_RUNS], hf[NET_RUNS], gr[NET_RUNS], hr[NET_RUNS];
	const char *const keys[] = {
		"guest_mib_s",	 "host_mib_s", "guest_frames_s", "host_frames_s", "guest_received",
		"host_received", NULL
	};
	double *const vals[] = { gm, hm, gf, hf, gr, hr };
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
		guest_net(&ns, &g[i]);
		host_net(&ns, &h[i]);
		gm[i] = g[i].mib_s, hm[i] = h[i].mib_s, gf[i] = g[i].frames_s;
		hf[i] = h[i].frames_s, gr[i] = g[i].received, hr[i] = h[i].received;
	}
	netns_remove(&ns);
	bench_emit_many("virtio_net_tx", NET_RUNS, keys, vals);
	printf("{\"bench\":\"virtio_net_tx_fraction\",\"mib_s\":%.3f,\"note\":\"guest over host, "
	       "medians; 1514-byte frames, the test guest's polled driver on one vCPU\"}\n",
	       bench_median(hm, NET_RUNS) > 0
		       ? bench_median(gm, NET_RUNS) / bench_median(hm, NET_RUNS)
		       : 0);
	fflush(stdout);
}
