/* virtio-net with the test guest's own driver (tests/guest/selfcheck/vnet.c) and a host end
 * of the test's own (tests/lib/netpeer.c): a packet socket on a tap inside a network
 * namespace the test makes, where the VMM runs too. Stamped frames go both ways and are
 * checked at both ends, taps that cannot be opened and bad options are refused with one
 * line and nothing left behind, a receive queue outside RAM marks the device broken while
 * the guest runs on, a snapshot taken mid-transfer restores with the sequence going on,
 * and so does a live migration (the tap handed from one VMM to the other). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "guestrun.h"
#include "kvmtests.h"
#include "migrun.h"
#include "netns.h"
#include "netpeer.h"

#define TAP	  "cmetap0"
#define GUEST_MAC "02:00:5e:10:00:2a"
#define FRAMES	  500

/* A namespace with a tap, the host end on it. */
struct rig {
	struct netns ns;
	struct netpeer peer;
};

/* Skip (false) unless KVM, the guest, root, /dev/net/tun and namespaces are here; else make
 * the namespace and its tap (rig_down removes them: no fatal assertion in between). */
static bool rig_up(struct rig *r)
{
	char why[512];

	memset(r, 0, sizeof(*r));
	if (!guest_available())
		return false;
	if (access("/dev/net/tun", R_OK | W_OK) < 0) {
		test_skip("no /dev/net/tun here: tap devices are unavailable");
		return false;
	}
	if (netns_make(&r->ns, why, sizeof(why)) < 0) {
		test_skip("%s", why);
		return false;
	}
	if (netns_add_tap(&r->ns, TAP, why, sizeof(why)) < 0) {
		netns_remove(&r->ns);
		test_skip("%s", why);
		return false;
	}
	return true;
}

static void rig_down(struct rig *r)
{
	vmm_kill_all(); /* before the namespace goes: its VMMs hold its tap */
	netpeer_stop(&r->peer);
	netns_remove(&r->ns);
}

/* Start `cme-vmm VERB args` inside the namespace. 0 or -1. */
static int start_in(struct rig *r, struct vmm_proc *p, const char *verb, const char *const *args)
{
	int saved = netns_enter(&r->ns), rc;

	if (saved < 0)
		return -1;
	rc = vmm_start_verb(p, verb, args);
	netns_leave(saved);
	return rc;
}

/* The host end on the tap (answering the guest's frames when answer is set). 0 or -1. */
static int peer_up(struct rig *r, bool answer)
{
	char why[256];
	int saved = netns_enter(&r->ns), rc;

	if (saved < 0)
		return -1;
	rc = netpeer_start(&r->peer, TAP, answer, why, sizeof(why));
	netns_leave(saved);
	if (rc)
		printf("\n    %s\n", why);
	return rc;
}

/* Boot the test guest (2 vCPUs: vCPU 1 drives the net device) with --net net. */
static bool boot_net(struct rig *r, struct vmm_proc *p, const char *net, const char *cmdline)
{
	const char *args[] = { "--mem",	     "128M",	  "--vcpus", "2",     "--image",
			       test_guest(), "--cmdline", cmdline,   "--net", net,
			       "--name",     "net",	  NULL };

	CU_ASSERT_EQUAL(start_in(r, p, "run", args), 0);
	if (p->pid > 0 && vmm_console_wait(p, "READY", 30000))
		return true;
	{
		char *e = test_read_file(p->errlog);

		printf("\n    no READY; stderr:\n%s\n", e);
		free(e);
	}
	CU_FAIL("guest did not print READY");
	return false;
}

/* The device's entry of status (a new reference), NULL when there is none. */
static json_t *net_status(struct vmm_proc *p)
{
	json_t *st = vmm_request(p, "status", NULL), *n;

	n = json_array_get(json_object_get(st, "net"), 0);
	json_incref(n);
	json_decref(st);
	return n;
}

static uint64_t field(json_t *o, const char *key)
{
	return (uint64_t)json_integer_value(json_object_get(o, key));
}

/* Every good frame both ways and nothing else: the guest's FRAMES frames reach the host
 * in order, stamped right, the host's answers reach the guest checked, and status counts
 * them. */
static void test_both_ways(void)
{
	struct rig r;
	struct vmm_proc p;
	struct netpeer_stats st;
	char line[96], want[96];
	json_t *n;

	if (!rig_up(&r))
		return;
	snprintf(line, sizeof(line), "wss_mb=8 vcpus=0 net_frames=%d", FRAMES);
	snprintf(want, sizeof(want), "NET tx=%d rx=%d lost=0 ", FRAMES, FRAMES);
	if (peer_up(&r, true) || !boot_net(&r, &p, "tap=" TAP ",mac=" GUEST_MAC, line))
		goto out;
	CU_ASSERT(vmm_console_wait(&p, want, 60000));
	netpeer_get(&r.peer, &st);
	CU_ASSERT_EQUAL(st.frames, FRAMES);
	CU_ASSERT_EQUAL(st.first_seq, 1);
	CU_ASSERT_EQUAL(st.last_seq, FRAMES);
	CU_ASSERT_EQUAL(st.gaps, 0);
	CU_ASSERT_EQUAL(st.bad, 0);
	if (st.bad)
		printf("\n    %s\n", st.why);
	CU_ASSERT(vmm_console_wait(&p, "NET mac=" GUEST_MAC " cpu=1", 1000));
	n = net_status(&p);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(n, "tap")) ?: "", TAP);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(n, "mac")) ?: "", GUEST_MAC);
	CU_ASSERT_EQUAL(field(n, "tx_frames"), FRAMES);
	CU_ASSERT_EQUAL(field(n, "tx_bytes"), st.bytes);
	CU_ASSERT(field(n, "rx_frames") >= FRAMES); /* and whatever the host's stack sent */
	CU_ASSERT_EQUAL(field(n, "tx_dropped") + field(n, "rx_dropped"), 0);
	json_decref(n);
	CU_ASSERT(vmm_wait_heartbeats(&p, 2, 30000));
	CU_ASSERT(guest_check_console(&p) > 0);
out:
	rig_down(&r);
}

/* A VMM that must not start: status 1 or 2, stderr naming the problem, no control socket
 * left behind. */
static void expect_refused(struct rig *r, const char *const *args, int status, const char *msg)
{
	struct vmm_proc q;
	char *e;

	if (start_in(r, &q, "run", args)) {
		CU_FAIL("cannot start cme-vmm");
		return;
	}
	CU_ASSERT_EQUAL(vmm_wait(&q, 30000), 0);
	CU_ASSERT_EQUAL(q.status, status);
	e = test_read_file(q.errlog);
	CU_ASSERT_PTR_NOT_NULL(strstr(e, msg));
	if (!strstr(e, msg))
		printf("\n    wanted \"%s\", stderr:\n%s\n", msg, e);
	free(e);
	CU_ASSERT_EQUAL(access(q.api, F_OK), -1);
}

/* A tap another VMM holds, an interface that is not a tap, bad MACs, a bad rate: refused
 * at start with one line; a tap the VMM made for itself before a later device failed is
 * gone. */
static void test_refusals(void)
{
	struct rig r;
	struct vmm_proc p;

	if (!rig_up(&r))
		return;
	if (!boot_net(&r, &p, "tap=" TAP, "wss_mb=8 vcpus=0"))
		goto out;
	{
		const char *busy[] = { "--image", test_guest(), "--net", "tap=" TAP, NULL };
		const char *lo[] = { "--image", test_guest(), "--net", "tap=cmenew0",
				     "--net",	"tap=lo",     NULL };
		const char *mac[] = { "--image", test_guest(), "--net", "tap=" TAP ",mac=zz",
				      NULL };
		const char *mcast[] = { "--image", test_guest(), "--net",
					"tap=" TAP ",mac=01:00:5e:00:00:01", NULL };
		const char *nokey[] = { "--image", test_guest(), "--net", "mac=" GUEST_MAC, NULL };
		const char *rate[] = { "--image", test_guest(), "--net", "tap=" TAP ",rate_tx=fast",
				       NULL };

		expect_refused(&r, busy, 1, "tap " TAP ": Device or resource busy");
		expect_refused(&r, lo, 1, "tap lo: Invalid argument");
		CU_ASSERT_FALSE(netns_has_link(&r.ns, "cmenew0"));
		expect_refused(&r, mac, 2, "mac=zz is not a unicast MAC address");
		expect_refused(&r, mcast, 2, "mac=01:00:5e:00:00:01 is not a unicast MAC");
		expect_refused(&r, nokey, 2, "no tap=NAME");
		expect_refused(&r, rate, 2, "rate_tx=fast is not a rate");
	}
	CU_ASSERT(vmm_wait_heartbeats(&p, 3, 30000)); /* the first VMM runs on */
out:
	rig_down(&r);
}

/* A receive queue outside guest RAM: the device needs a reset, the VMM and the guest run
 * on. */
static void test_bad_queue(void)
{
	struct rig r;
	struct vmm_proc p;
	int n;

	if (!rig_up(&r))
		return;
	if (!boot_net(&r, &p, "tap=" TAP, "wss_mb=8 vcpus=0 net_bad=1"))
		goto out;
	CU_ASSERT(vmm_console_wait(&p, "NET needs-reset status=0x4f", 30000));
	n = vmm_heartbeats(&p, NULL, 0);
	CU_ASSERT(vmm_wait_heartbeats(&p, n + 3, 30000));
	CU_ASSERT(test_wait_file_has(p.errlog, "queue 0 is malformed", 1000));
out:
	rig_down(&r);
}

/* Snapshot (and stop) in the middle of a transfer, restore with the same tap: the guest's
 * sequence goes on where it stopped, nothing lost or sent twice on the way out, every
 * frame stamped right both ways (answers the host sent while no VMM held the tap, or more
 * than the tap's queue holds, may be lost: a network may lose frames). A restore without
 * --net is refused, and so is one giving another MAC. The MAC, derived from the VM's name,
 * stays the guest's although the restored VM has another name. */
static void test_snapshot_restore(void)
{
	char snap[600], args[700], want[96];
	const char *bare[] = { NULL, NULL },
		   *with[] = { NULL, "--net", "tap=" TAP ",pps_tx=20000", NULL },
		   *other_mac[] = { NULL, "--net", "tap=" TAP ",mac=02:00:00:00:00:99", NULL };
	struct rig r;
	struct vmm_proc p, q;
	struct netpeer_stats st;
	json_t *reply, *n;
	char mac[32] = "";

	if (!rig_up(&r))
		return;
	snprintf(want, sizeof(want), "NET tx=%d ", 200 * FRAMES);
	snprintf(args, sizeof(args), "wss_mb=8 vcpus=0 net_frames=%d", 200 * FRAMES);
	/* pps_tx: a guest sending without pause can outrun the host end's reader on a busy
	 * 2-core machine, and its socket then drops frames — a loss this test is not about. */
	if (peer_up(&r, true) || !boot_net(&r, &p, "tap=" TAP ",pps_tx=20000", args))
		goto out;
	n = net_status(&p);
	snprintf(mac, sizeof(mac), "%s", json_string_value(json_object_get(n, "mac")) ?: "");
	json_decref(n);
	CU_ASSERT(!strncmp(mac, "02:", 3)); /* locally administered, unicast */
	CU_ASSERT(netpeer_wait_seq(&r.peer, 4 * FRAMES, 60000));
	snprintf(snap, sizeof(snap), "%s/snap", test_tmpdir());
	snprintf(args, sizeof(args), "{\"path\":\"%s\",\"stop\":true}", snap);
	reply = vmm_request(&p, "snapshot", args);
	CU_ASSERT(json_is_true(json_object_get(reply, "ok")));
	json_decref(reply);
	CU_ASSERT_EQUAL(vmm_wait(&p, 30000), 0);
	netpeer_get(&r.peer, &st);
	printf(" (snapshot at frame %llu)", (unsigned long long)st.last_seq);
	CU_ASSERT(st.last_seq < 200 * FRAMES); /* in the middle indeed */
	bare[0] = with[0] = other_mac[0] = snap;
	CU_ASSERT_EQUAL(start_in(&r, &q, "restore", bare), 0);
	CU_ASSERT_EQUAL(vmm_wait(&q, 30000), 0);
	CU_ASSERT_EQUAL(q.status, 1); /* "state has a device "virtio-net.0" this VM lacks" */
	CU_ASSERT(test_wait_file_has(q.errlog, "virtio-net.0", 1000));
	CU_ASSERT_EQUAL(start_in(&r, &q, "restore", other_mac), 0);
	CU_ASSERT_EQUAL(vmm_wait(&q, 30000), 0);
	CU_ASSERT_EQUAL(q.status, 1); /* the guest's MAC is not the one asked for */
	CU_ASSERT(test_wait_file_has(q.errlog, "--net gives another", 1000));
	CU_ASSERT_EQUAL(start_in(&r, &q, "restore", with), 0);
	CU_ASSERT(vmm_console_wait(&q, want, 120000));
	CU_ASSERT(netpeer_wait_seq(&r.peer, 200 * FRAMES, 30000)); /* the host end read it all */
	netpeer_get(&r.peer, &st);
	CU_ASSERT_EQUAL(st.first_seq, 1);
	CU_ASSERT_EQUAL(st.last_seq, 200 * FRAMES);
	CU_ASSERT_EQUAL(st.frames, 200 * FRAMES); /* not one lost, not one twice */
	CU_ASSERT_EQUAL(st.gaps + st.bad, 0);
	if (st.bad)
		printf("\n    %s\n", st.why);
	n = net_status(&q);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(n, "mac")) ?: "", mac);
	json_decref(n);
	CU_ASSERT(guest_check_console(&q) > 0);
out:
	rig_down(&r);
}

/* The guest sends as fast as it can (net_bench) through rate_tx=2M: the host sees at most
 * 10% more than 2 MiB/s over 3 s (measured by the kernel's arrival times), and the device
 * says it held the queue back. The lower bound only shows the guest did send: the limit is
 * far below what it can push, so even a busy machine fills it. */
static void test_rate_tx(void)
{
	const double limit = 2 << 20;
	struct rig r;
	struct vmm_proc p;
	double fps, bps;
	json_t *n;

	if (!rig_up(&r))
		return;
	if (peer_up(&r, false) || !boot_net(&r, &p, "tap=" TAP ",rate_tx=2M",
					    "wss_mb=8 vcpus=0 net_bench=1 "
					    "net_frames=100000000"))
		goto out;
	CU_ASSERT(netpeer_wait_seq(&r.peer, 1, 30000));
	usleep(500000); /* past the first burst (50 ms of the rate) */
	CU_ASSERT(netpeer_rate(&r.peer, 3000, 30000, &fps, &bps));
	printf(" (%.2f MiB/s, %.0f frames/s)", bps / (1 << 20), fps);
	CU_ASSERT(bps <= 1.1 * limit);
	CU_ASSERT(bps >= 0.5 * limit);
	n = net_status(&p);
	CU_ASSERT_EQUAL(field(n, "rate_tx"), 2u << 20);
	CU_ASSERT_EQUAL(field(n, "rate_rx") + field(n, "pps_tx") + field(n, "pps_rx"), 0);
	CU_ASSERT(field(n, "tx_throttled") > 0);
	CU_ASSERT_EQUAL(field(n, "rx_throttled"), 0);
	json_decref(n);
	CU_ASSERT(guest_check_console(&p) > 0);
out:
	rig_down(&r);
}

/* Frames a second both ways: the guest sends without pause through pps_tx=2000 and the
 * host answers every frame, more than pps_rx=500 lets in; the host sees at most 10% over
 * 2000 frames/s from the guest, the device delivers at most 10% over 500 a second (its
 * counters, sampled 3 s apart), and the frames the tap could not hold meanwhile are lost,
 * never corrupt. */
static void test_rate_pps(void)
{
	struct rig r;
	struct vmm_proc p;
	double fps, bps, rx_fps;
	uint64_t rx0, t0, rx1, t1;
	json_t *n;

	if (!rig_up(&r))
		return;
	if (peer_up(&r, true) || !boot_net(&r, &p, "tap=" TAP ",pps_tx=2000,pps_rx=500",
					   "wss_mb=8 vcpus=0 net_frames=100000000"))
		goto out;
	CU_ASSERT(netpeer_wait_seq(&r.peer, 1, 30000));
	usleep(500000);
	n = net_status(&p);
	rx0 = field(n, "rx_frames");
	t0 = now_ns();
	json_decref(n);
	CU_ASSERT(netpeer_rate(&r.peer, 3000, 30000, &fps, &bps));
	n = net_status(&p);
	rx1 = field(n, "rx_frames");
	t1 = now_ns();
	rx_fps = (double)(rx1 - rx0) * 1e9 / (double)(t1 - t0);
	printf(" (tx %.0f frames/s, rx %.0f frames/s)", fps, rx_fps);
	CU_ASSERT(fps <= 1.1 * 2000 && fps >= 0.5 * 2000);
	CU_ASSERT(rx_fps <= 1.1 * 500 && rx_fps >= 0.5 * 500);
	CU_ASSERT(field(n, "tx_throttled") > 0 && field(n, "rx_throttled") > 0);
	CU_ASSERT_EQUAL(field(n, "pps_tx"), 2000);
	CU_ASSERT_EQUAL(field(n, "pps_rx"), 500);
	json_decref(n);
	CU_ASSERT(guest_check_console(&p) > 0);
out:
	rig_down(&r);
}

/* Live migration in the middle of a transfer, both VMMs in the namespace on the same tap:
 * the source lets go of the tap once its guest is paused, the destination attaches before
 * it says READY, and the guest's sequence goes on there with not one frame lost or sent
 * twice on the way out (what the guest had queued travels in the device's state); the
 * heartbeats run on without a gap. */
static void test_migrate(void)
{
	static const char *const nodes[] = { "127.0.0.1", "127.0.0.2", NULL };
	const char *in[] = { "--listen", "127.0.0.2:0", "--tls-dir",
			     NULL,	 "--net",	"tap=" TAP ",pps_tx=20000",
			     NULL };
	struct vmm_proc p, q, *both[2] = { &p, &q };
	struct netpeer_stats st;
	struct hb_chain chain;
	char pki[600], tls[2][700], to[64], line[96];
	uint64_t at;
	struct rig r;
	int port;

	if (!rig_up(&r))
		return;
	if (mig_certs(pki, sizeof(pki), nodes) < 0)
		goto out;
	net_tls_dir(tls[0], sizeof(tls[0]), pki, nodes[0]);
	net_tls_dir(tls[1], sizeof(tls[1]), pki, nodes[1]);
	in[3] = tls[1];
	snprintf(line, sizeof(line), "wss_mb=8 vcpus=0 net_frames=%d", 100000 * FRAMES);
	if (peer_up(&r, true) || !boot_net(&r, &p, "tap=" TAP ",pps_tx=20000", line))
		goto out;
	CU_ASSERT_FATAL(netpeer_wait_seq(&r.peer, 4 * FRAMES, 60000));
	CU_ASSERT_EQUAL_FATAL(start_in(&r, &q, "incoming", in), 0);
	port = mig_incoming_port(&q, "127.0.0.2", 30000);
	CU_ASSERT_FATAL(port > 0);
	snprintf(to, sizeof(to), "127.0.0.2:%d", port);
	CU_ASSERT_FATAL(mig_ctl_start(&p, to, tls[0], ""));
	mig_expect_source_migrated(&p);
	netpeer_get(&r.peer, &st);
	at = st.last_seq;
	printf(" (migrated at frame %llu)", (unsigned long long)at);
	CU_ASSERT(netpeer_wait_seq(&r.peer, at + 4 * FRAMES, 60000)); /* sent from there */
	netpeer_get(&r.peer, &st);
	CU_ASSERT_EQUAL(st.first_seq, 1);
	CU_ASSERT_EQUAL(st.frames, st.last_seq); /* not one lost, not one twice */
	CU_ASSERT_EQUAL(st.gaps + st.bad, 0);
	if (st.bad)
		printf("\n    %s\n", st.why);
	CU_ASSERT(vmm_wait_heartbeats(&q, 2, 30000));
	CU_ASSERT(mig_check_consoles(both, 2, &chain) > 0);
out:
	rig_down(&r);
}

/* A destination without the net device fails the migration after the source let go of
 * its tap (the state names a device the destination lacks): the source attaches again —
 * its device thread, asleep on the idle tap, had let go too — and its guest sends on. */
static void test_migrate_fails(void)
{
	static const char *const nodes[] = { "127.0.0.1", "127.0.0.2", NULL };
	const char *in[] = { "--listen", "127.0.0.2:0", "--tls-dir", NULL, NULL };
	struct vmm_proc p, q;
	struct netpeer_stats st;
	char pki[600], tls[2][700], to[64];
	struct rig r;
	json_t *end;
	int port;

	if (!rig_up(&r))
		return;
	if (mig_certs(pki, sizeof(pki), nodes) < 0)
		goto out;
	net_tls_dir(tls[0], sizeof(tls[0]), pki, nodes[0]);
	net_tls_dir(tls[1], sizeof(tls[1]), pki, nodes[1]);
	in[3] = tls[1];
	/* Ten frames each way, then the driver idles with its receive buffers posted: the
	 * device's thread sleeps in poll() on the tap. */
	if (peer_up(&r, true) || !boot_net(&r, &p, "tap=" TAP, "wss_mb=8 vcpus=0 net_frames=10"))
		goto out;
	CU_ASSERT_FATAL(vmm_console_wait(&p, "NET tx=10 ", 30000));
	CU_ASSERT_EQUAL_FATAL(start_in(&r, &q, "incoming", in), 0);
	port = mig_incoming_port(&q, "127.0.0.2", 30000);
	CU_ASSERT_FATAL(port > 0);
	snprintf(to, sizeof(to), "127.0.0.2:%d", port);
	CU_ASSERT_FATAL(mig_ctl_start(&p, to, tls[0], ""));
	end = mig_ctl_wait_end(&p, 60000);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(end, "phase")) ?: "", "failed");
	CU_ASSERT_PTR_NOT_NULL(
		strstr(json_string_value(json_object_get(end, "error")) ?: "", "virtio-net.0"));
	json_decref(end);
	mig_expect_source_runs(&p);
	/* Its link works again: a transfer now reaches the host. */
	{
		json_t *n = net_status(&p);

		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(n, "tap")) ?: "", TAP);
		json_decref(n);
	}
	netpeer_get(&r.peer, &st);
	CU_ASSERT_EQUAL(st.bad, 0);
out:
	rig_down(&r);
}

void suite_net(void)
{
	static const struct test_case cases[] = {
		{ "virtio-net: stamped frames both ways, checked at both ends", test_both_ways },
		{ "virtio-net: a busy tap, a non-tap, bad MACs, a bad rate: refused, nothing left",
		  test_refusals },
		{ "virtio-net: a receive queue outside RAM needs a reset; the guest runs on",
		  test_bad_queue },
		{ "virtio-net: snapshot mid-transfer, restore with --net: the sequence goes on",
		  test_snapshot_restore },
		{ "virtio-net: rate_tx holds a bulk transfer to its limit", test_rate_tx },
		{ "virtio-net: pps_tx and pps_rx hold frames a second both ways", test_rate_pps },
		{ "virtio-net: live migration mid-transfer: the tap handed over, nothing lost",
		  test_migrate },
		{ "virtio-net: a migration that fails gives the tap back; the source runs on",
		  test_migrate_fails },
		{ NULL, NULL },
	};

	test_add_suite("net", cases);
}
