/* netload.c — the net vCPU's work (net_frames, net_bench, net_bad): it drives the first
 * virtio-net device with vnet.c, sending stamped frames (netframe.h) to the host end's MAC
 * and checking every frame the host sends back. Runs on vCPU 1 (vCPU 0 on a one-vCPU VM,
 * which then also keeps the heartbeats going), so a disk on vCPU 0 can run beside it. */
#include "selfcheck.h"
#include "netframe.h"

#define QUIET_MS 2000 /* all sent, nothing from the host for this long: the rest is lost */

static const u8 host_mac[MAC_LEN] = NETF_HOST_MAC;
static u8 mac[MAC_LEN];
static struct {
	u64 tx, rx;	 /* frames sent; frames of ours received */
	u64 rx_last;	 /* the highest sequence number received */
	u64 lost, other; /* sequence numbers skipped; frames not ours (ignored) */
	u64 heard;	 /* TSC when the last frame of ours came (or the last was sent) */
} net;

/* The device's MAC as XX:XX:XX:XX:XX:XX (con_printf has no field widths). */
static const char *mac_text(void)
{
	static char s[3 * MAC_LEN];

	for (u32 i = 0; i < MAC_LEN; i++) {
		s[3 * i] = "0123456789abcdef"[mac[i] >> 4];
		s[3 * i + 1] = "0123456789abcdef"[mac[i] & 15];
		s[3 * i + 2] = i + 1 < MAC_LEN ? ':' : 0;
	}
	return s;
}

static void keep_beating(u32 cpu)
{
	if (cpu == 0)
		hb_poll(rdtsc());
}

/* net_bad=1: the receive queue points outside RAM; the device must say it needs a reset. */
static __attribute__((noreturn)) void net_broken(u32 cpu)
{
	u32 st;

	while (!((st = vnet_status()) & VMMIO_NEEDS_RESET))
		keep_beating(cpu);
	con_printf("NET needs-reset status=0x%x\n", st);
	for (;;) {
		idle();
		keep_beating(cpu);
	}
}

static __attribute__((noreturn)) void corrupt(u64 seq, u32 at, u32 expected, u32 found)
{
	con_printf("CORRUPT net seq=%lu byte=%u expected=%u found=%u\n", seq, at, expected, found);
	guest_exit(EXIT_CORRUPT);
}

/* A frame from the host: ours must be stamped right and come in order (a gap is frames
 * lost on the way, which a network may do; a step back is not). */
static void rx_check(const u8 *f, u32 len)
{
	u64 seq;
	u32 at;
	enum netf_verdict v = netf_check(f, len, mac, NETF_TO_GUEST, &seq, &at);

	if (v == NETF_OTHER) {
		net.other++;
		return;
	}
	if (v == NETF_BAD)
		corrupt(seq, at, at >= NETF_HDR ? netf_byte(seq, at, NETF_TO_GUEST) : 0,
			at < len ? f[at] : 0);
	if (seq <= net.rx_last)
		corrupt(seq, 18, (u32)net.rx_last + 1, (u32)seq);
	net.lost += seq - net.rx_last - 1;
	net.rx_last = seq;
	net.rx++;
	net.heard = rdtsc();
}

/* Take every frame received; returns how many. */
static u32 rx_drain(void)
{
	const u8 *f;
	u32 len, n = 0;

	for (; (f = vnet_rx_next(&len)); n++) {
		if (cfg.net_bench != 1)
			rx_check(f, len);
		vnet_rx_release();
	}
	return n;
}

/* Send the next frames while buffers are free (the device hears of them as a batch). */
static void tx_some(void)
{
	u8 *f;
	u32 len;

	while (net.tx < cfg.net_frames && (f = vnet_tx_slot())) {
		len = cfg.net_bench == 1 ? NETF_MAX : netf_len(net.tx + 1);
		netf_build(f, host_mac, mac, net.tx + 1, NETF_TO_HOST, len);
		vnet_tx_post(len);
		net.tx++;
		net.heard = rdtsc();
	}
}

/* Until every frame is sent and the host's answer to the last one came, or nothing came
 * for QUIET_MS: a network may lose frames, the last ones too. */
static bool busy(void)
{
	if (net.tx < cfg.net_frames)
		return true;
	return net.rx_last < cfg.net_frames && rdtsc() - net.heard < QUIET_MS * cfg.tsc_khz;
}

/* net_frames alone: send them, check the host's answers. */
static void exchange(u32 cpu)
{
	u32 got;

	while (busy()) {
		tx_some();
		got = rx_drain();
		vnet_kick();
		if (!got && net.tx == cfg.net_frames)
			idle(); /* all sent: the next answer's interrupt (or a tick) wakes us */
		keep_beating(cpu);
	}
	con_printf("NET tx=%lu rx=%lu lost=%lu other=%lu irqs=%lu ok\n", net.tx, net.rx,
		   net.lost + (cfg.net_frames - net.rx_last), net.other, net_irqs);
}

/* net_bench=1: send net_frames frames as fast as it can, timed from the first post to
 * the last completion. */
static void tx_bench(u32 cpu)
{
	u64 t0 = rdtsc();

	while (net.tx < cfg.net_frames || !vnet_tx_idle()) {
		tx_some();
		rx_drain();
		vnet_kick();
		keep_beating(cpu);
	}
	con_printf("NETBENCH frames=%lu bytes=%lu tsc=%lu tsc_khz=%lu\n", net.tx, net.tx * NETF_MAX,
		   rdtsc() - t0, cfg.tsc_khz);
}

/* net_bench=2: take the host's frames as fast as they come (checked), timed from the first
 * to the net_frames-th, or to the last one before QUIET_MS without any. */
static void rx_bench(u32 cpu)
{
	u64 first = 0;

	while (net.rx < cfg.net_frames &&
	       (!first || rdtsc() - net.heard < QUIET_MS * cfg.tsc_khz)) {
		rx_drain();
		if (!first && net.rx)
			first = net.heard;
		vnet_kick();
		keep_beating(cpu);
	}
	con_printf("NETRXBENCH frames=%lu lost=%lu bytes=%lu tsc=%lu tsc_khz=%lu\n", net.rx,
		   net.lost, net.rx * NETF_MAX, net.heard - first, cfg.tsc_khz);
}

void net_run(u32 cpu)
{
	if (vnet_init(cfg.net_base, cfg.net_bad, mac))
		guest_exit(EXIT_BADARG);
	if (cfg.net_bad)
		net_broken(cpu);
	con_printf("NET mac=%s cpu=%u\n", mac_text(), cpu);
	if (cfg.net_bench == 1)
		tx_bench(cpu);
	else if (cfg.net_bench == 2)
		rx_bench(cpu);
	else
		exchange(cpu);
	for (;;) { /* frames may still come: take them, woken by their interrupt */
		rx_drain();
		vnet_kick();
		idle();
		keep_beating(cpu);
	}
}
