/* virtio-net (virtio 1.x section 5.1) backed by a host tap device: one receive queue (0)
 * and one transmit queue (1), the MAC in the configuration space, the 12-byte header
 * (with num_buffers) on every buffer, no offloads. Frames move on the transport's thread
 * straight between the tap and guest RAM (readv/writev): the tap is opened with
 * IFF_VNET_HDR so each frame carries the header through it, but the header the guest
 * sees (and the one the tap gets) is our own — no offload was negotiated, so nothing of
 * the guest's header may reach the host's stack, and nothing of the host's the guest.
 *
 * Receive: frames wait in the tap until the guest has posted a buffer; with none posted
 * the thread stops watching the tap until the guest's next notification, so a tap full of
 * frames never makes it spin.
 *
 * Rate limits (ratelimit_priv.h), one per direction: a transmit queue held back leaves the
 * guest's chains in its ring, a receive queue held back leaves the frames in the tap; each
 * waits on its limiter's timerfd, not on the tap or the guest. */
#include "ratelimit_priv.h"
#include "virtio_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define SUB	  "virtio-net"
#define QUEUE_MAX 256
#define RXQ	  0
#define TXQ	  1
#define HDR_BYTES 12	/* struct virtio_net_hdr_v1: flags .. csum_offset, num_buffers */
#define FRAME_MIN 14	/* an Ethernet header */
#define FRAME_MAX 65535 /* what a tap takes in one write */
#define BATCH	  64	/* frames per turn before the thread looks at its other work */

#define NET_F_MAC (1ull << 5)

struct net {
	int tap;
	uint8_t mac[VM_MAC_LEN];
	int w_tap;     /* the watch on the tap having frames */
	bool tap_gone; /* reading it failed (the tap was deleted): receive no more */
	/* Live migration (enum vm_handoff): tap holds /dev/null instead of the tap, which the
	 * source let go for the destination, or the destination has not attached yet. */
	bool detached;
	struct ratelimit tx, rx;
	int w_tx_timer, w_rx_timer; /* the watches on their timers (-1: no limit) */
	struct vm_net_stats st;
	uint8_t spill[FRAME_MAX]; /* the end of a frame longer than the guest's buffer */
};

/* A locally administered unicast MAC from the VM's name and the device's index, so a VM
 * keeps its MACs across restarts without the operator choosing them. */
static void derive_mac(const char *name, unsigned index, uint8_t *mac)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (const char *p = name; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	mac[0] = 0x02;
	mac[1] = (uint8_t)(h >> 24);
	mac[2] = (uint8_t)(h >> 16);
	mac[3] = (uint8_t)(h >> 8);
	mac[4] = (uint8_t)h;
	mac[5] = (uint8_t)index;
}

/* Attach to the tap NAME (made if absent, as TUNSETIFF does), non-blocking, the virtio
 * header on every frame, offloads off. Returns the fd or -errno with the reason in why. */
static int tap_attach(const char *name, char *why, size_t len)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC), hdr = HDR_BYTES, err;
	const char *hint = "";

	if (fd < 0) {
		err = -errno;
		snprintf(why, len, "tap %s: /dev/net/tun: %s", name, strerror(-err));
		return err;
	}
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 ||
	    ioctl(fd, TUNSETOFFLOAD, 0) < 0) {
		err = -errno;
		if (err == -EBUSY)
			hint = " (another process has it open)";
		else if (err == -EINVAL)
			hint = " (an interface that is not a tap, or a multi-queue tap)";
		else if (err == -EPERM)
			hint = " (needs CAP_NET_ADMIN, or a tap made for this user)";
		snprintf(why, len, "tap %s: %s%s", name, strerror(-err), hint);
		close(fd);
		return err;
	}
	return fd;
}

/* What stands in the tap's descriptor while the device is detached from it: the watch
 * keeps its number, and nothing polls it (the device does not run then). */
static int placeholder(char *why, size_t len)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		snprintf(why, len, "/dev/null: %s", strerror(errno));
	return fd < 0 ? -errno : fd;
}

/* Put fd (a tap, or the placeholder) in the tap's descriptor number and close it. */
static int swap_tap(struct net *n, int fd)
{
	int rc = fd < 0 ? fd : dup3(fd, n->tap, O_CLOEXEC) < 0 ? -errno : 0;

	if (fd >= 0)
		close(fd);
	return rc;
}

/* Watch a limiter's timer (when it has one): its watch number, -1 without, or -errno. */
static int watch_timer(struct virtio_dev *v, const struct ratelimit *rl)
{
	return rl->timer_fd < 0 ? -1 : virtio_watch_add(v, rl->timer_fd, POLLIN);
}

/* The limits and the watches of the device's thread: the tap, the limiters' timers. */
static int net_watches(struct virtio_dev *v, struct net *n, const struct vm_net *cfg)
{
	uint64_t now = now_ns();
	int err;

	if ((err = rl_init(&n->tx, &cfg->tx, now, true)) ||
	    (err = rl_init(&n->rx, &cfg->rx, now, true)))
		return err;
	n->w_tap = virtio_watch_add(v, n->tap, POLLIN);
	n->w_tx_timer = watch_timer(v, &n->tx);
	n->w_rx_timer = watch_timer(v, &n->rx);
	return n->w_tap < 0 || n->w_tx_timer < -1 || n->w_rx_timer < -1 ? -ENOSPC : 0;
}

static int net_open(struct virtio_dev *v, char *why, size_t len)
{
	const struct vm_net *cfg = v->be_arg;
	unsigned index = v->index - v->vm->cfg.nr_disks;
	struct net *n = calloc(1, sizeof(*n));
	int err;

	if (!n)
		return -ENOMEM;
	n->tx.timer_fd = n->rx.timer_fd = -1;
	n->detached = v->vm->cfg.incoming; /* the source still has the tap: attach at CLAIM */
	n->tap = n->detached ? placeholder(why, len) : tap_attach(cfg->tap, why, len);
	err = n->tap < 0 ? n->tap : net_watches(v, n, cfg);
	if (err) {
		if (n->tap >= 0)
			snprintf(why, len, "tap %s: cannot set up: %s", cfg->tap, strerror(-err));
		goto fail;
	}
	if (cfg->mac_set)
		memcpy(n->mac, cfg->mac, VM_MAC_LEN);
	else
		derive_mac(v->vm->cfg.name, index, n->mac);
	snprintf(n->st.tap, sizeof(n->st.tap), "%s", cfg->tap);
	memcpy(n->st.mac, n->mac, VM_MAC_LEN);
	n->st.tx_limit = cfg->tx;
	n->st.rx_limit = cfg->rx;
	v->be_priv = n;
	return 0;
fail:
	rl_destroy(&n->rx);
	rl_destroy(&n->tx);
	if (n->tap >= 0)
		close(n->tap);
	free(n);
	return err;
}

static void net_close(struct virtio_dev *v)
{
	struct net *n = v->be_priv;

	rl_destroy(&n->rx);
	rl_destroy(&n->tx);
	close(n->tap);
	free(n);
	v->be_priv = NULL;
}

static uint64_t net_features(struct virtio_dev *v)
{
	(void)v;
	return NET_F_MAC;
}

/* The configuration space: the MAC at 0 (no status field: VIRTIO_NET_F_STATUS is not
 * offered, the link is always up). */
static void net_config(struct virtio_dev *v, uint64_t off, uint8_t *data, unsigned size)
{
	const struct net *n = v->be_priv;

	memset(data, 0, size);
	if (off < VM_MAC_LEN)
		memcpy(data, n->mac + off, size < VM_MAC_LEN - off ? size : VM_MAC_LEN - off);
}

static uint64_t net_identity(struct virtio_dev *v)
{
	(void)v;
	return 0; /* nothing of the backend must match; the MAC travels in its own field */
}

/* ---- transmit: guest → tap ------------------------------------------------------------ */

/* Write one frame (the chain's readable bytes after its header) to the tap behind a header
 * of our own. Returns the frame's length, 0 when it was dropped. */
static uint64_t tx_frame(struct net *n, const struct virtq_chain *c)
{
	static const uint8_t hdr[HDR_BYTES];
	struct iovec iov[VIRTQ_MAX_SEGS + 1] = { { (void *)hdr, HDR_BYTES } };
	uint64_t len = c->read_len > HDR_BYTES ? c->read_len - HDR_BYTES : 0;
	unsigned k;

	if (len < FRAME_MIN || len > FRAME_MAX || n->detached) /* detached: no link */
		return 0;
	k = virtq_iov(c, false, HDR_BYTES, len, iov + 1);
	return writev(n->tap, iov, (int)k + 1) == (ssize_t)(len + HDR_BYTES) ? len : 0;
}

/* The next chain of queue qi: 1, or 0 when there is none (the event index then asks the
 * guest to notify us of the next), or -EINVAL (malformed, why says how). */
static int next_chain(struct virtio_dev *v, unsigned qi, struct virtq_chain *c, char *why,
		      size_t len)
{
	struct virtq *q = &v->q[qi];
	int rc;

	do
		rc = virtq_pop(q, &v->mem, c, why, len);
	while (rc == 0 && virtq_arm_notify(q, &v->mem));
	return rc;
}

/* A turn on queue qi ended: it turned out broken (rc < 0), or the guest hears of what was
 * used. Returns false when broken. */
static bool turn_end(struct virtio_dev *v, unsigned qi, int rc, const char *why)
{
	if (rc < 0) {
		virtio_queue_broken(v, qi, why);
		return false;
	}
	virtio_notify(v, qi);
	return true;
}

/* The limit holds queue work back: wait for its timer. */
static void hold(struct virtio_dev *v, struct ratelimit *rl, int w_timer)
{
	rl_wait(rl);
	virtio_watch_set(v, (unsigned)w_timer, true);
}

/* Send what the guest has posted, while the limit lets it; held back, the chains stay in
 * the ring until the limiter's timer. */
static bool tx_run(struct virtio_dev *v)
{
	struct net *n = v->be_priv;
	struct virtq_chain c;
	char why[160] = "the used ring left guest RAM";
	unsigned done = 0;
	uint64_t len;
	int rc = 0;

	while (done < BATCH && (rc = next_chain(v, TXQ, &c, why, sizeof(why))) == 1) {
		if (!rl_ready(&n->tx, now_ns())) {
			virtq_unpop(&v->q[TXQ]);
			hold(v, &n->tx, n->w_tx_timer);
			break;
		}
		len = tx_frame(n, &c);
		rl_charge(&n->tx, len);
		n->st.tx_frames += len != 0;
		n->st.tx_bytes += len;
		n->st.tx_dropped += len == 0;
		if (virtq_push(&v->q[TXQ], &v->mem, c.head, 0)) {
			rc = -EINVAL;
			break;
		}
		done++;
	}
	if (done == BATCH && rc == 1)
		virtio_kick(v, TXQ); /* more, after the receive side had its turn */
	n->st.tx_throttled = n->tx.throttled;
	return turn_end(v, TXQ, rc, why);
}

/* ---- receive: tap → guest ------------------------------------------------------------- */

/* Read one frame from the tap into the chain's writable buffers, behind the header the
 * guest gets (no offloads, num_buffers 1). Returns the frame's length, 0 when the tap has
 * none, -1 when the frame was dropped (shorter than an Ethernet header, longer than the
 * buffer) — the chain is then unused. */
static long rx_frame(struct virtio_dev *v, struct net *n, const struct virtq_chain *c)
{
	uint8_t hdr[HDR_BYTES] = { 0 };
	struct iovec iov[VIRTQ_MAX_SEGS + 2] = { { hdr, HDR_BYTES } };
	uint64_t room = c->write_len > HDR_BYTES ? c->write_len - HDR_BYTES : 0;
	unsigned k = 1 + virtq_iov(c, true, HDR_BYTES, room, iov + 1);
	ssize_t got;

	iov[k++] = (struct iovec){ n->spill, sizeof(n->spill) };
	got = readv(n->tap, iov, (int)k);
	if (got < 0 && errno != EAGAIN && !n->tap_gone) {
		log_err(SUB, "vm=%s tap %s: %s: receiving stops", v->vm->cfg.name, n->st.tap,
			strerror(errno));
		n->tap_gone = true; /* a tap that fails says so every time it is polled */
	}
	if (got <= 0) /* nothing waiting (0: not a tap, the stand-in while detached) */
		return 0;
	/* What readv put in guest RAM is sent again by a migration — also for a frame dropped
	 * below, whose first bytes are in the guest's buffer all the same. */
	if ((uint64_t)got > HDR_BYTES)
		virtq_written(c, &v->mem, HDR_BYTES,
			      (uint64_t)got - HDR_BYTES < room ? (size_t)got - HDR_BYTES : room);
	if ((uint64_t)got < HDR_BYTES + FRAME_MIN || (uint64_t)got > HDR_BYTES + room)
		return -1;
	memset(hdr, 0, sizeof(hdr));
	hdr[10] = 1; /* num_buffers, little-endian */
	virtq_write(c, &v->mem, 0, hdr, HDR_BYTES);
	return (long)(got - HDR_BYTES);
}

/* The tap has a frame waiting (without waiting for one). */
static bool tap_has_frame(const struct net *n)
{
	struct pollfd p = { .fd = n->tap, .events = POLLIN };

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* May the next frame be received now? Held back with a frame waiting, wait for the
 * limiter's timer (the frame stays in the tap); with none, for the tap as usual. */
static bool rx_admit(struct virtio_dev *v, struct net *n, bool *watch_tap)
{
	if (rl_ready(&n->rx, now_ns()))
		return true;
	*watch_tap = !tap_has_frame(n);
	if (!*watch_tap)
		hold(v, &n->rx, n->w_rx_timer);
	return false;
}

/* Deliver what the tap has while the guest has buffers for it and the limit lets it.
 * Watches the tap only when it ran dry with buffers left, so frames wait in the tap while
 * the guest has none (its notification brings us back) or the limit holds them. */
static bool rx_run(struct virtio_dev *v)
{
	struct net *n = v->be_priv;
	struct virtq_chain c;
	char why[160] = "the used ring left guest RAM";
	bool watch_tap = !n->detached; /* detached: the stand-in has nothing to receive */
	unsigned done = 0;
	int rc = 0;
	long len;

	while (!n->detached && done < BATCH && rx_admit(v, n, &watch_tap)) {
		rc = next_chain(v, RXQ, &c, why, sizeof(why));
		if (rc != 1) {
			watch_tap = false; /* no buffer (or a broken queue) */
			break;
		}
		len = rx_frame(v, n, &c);
		if (len <= 0)
			virtq_unpop(&v->q[RXQ]);
		if (len == 0)
			break; /* the tap ran dry: wait for it */
		if (len < 0) { /* a bounded turn and the limit count dropped frames too */
			n->st.rx_dropped++;
			rl_charge(&n->rx, 0);
			done++;
			continue;
		}
		if (virtq_push(&v->q[RXQ], &v->mem, c.head, (uint32_t)(len + HDR_BYTES))) {
			rc = -EINVAL;
			watch_tap = false;
			break;
		}
		rl_charge(&n->rx, (uint64_t)len);
		n->st.rx_frames++;
		n->st.rx_bytes += (uint64_t)len;
		done++;
	}
	virtio_watch_set(v, (unsigned)n->w_tap, watch_tap && !n->tap_gone);
	n->st.rx_throttled = n->rx.throttled;
	return turn_end(v, RXQ, rc, why);
}

static bool net_process(struct virtio_dev *v, unsigned q)
{
	return q == TXQ ? tx_run(v) : rx_run(v);
}

/* The tap has frames, or a limiter's timer fired. */
static void net_event(struct virtio_dev *v, unsigned w)
{
	struct net *n = v->be_priv;
	bool tx = (int)w == n->w_tx_timer;
	unsigned q = tx ? TXQ : RXQ;

	if ((int)w != n->w_tap) {
		rl_timer_ack(tx ? &n->tx : &n->rx);
		virtio_watch_set(v, w, false);
	}
	if (!virtio_queue_runnable(v, q)) {
		if (!tx) /* the guest's set-up of the queue brings us back */
			virtio_watch_set(v, (unsigned)n->w_tap, false);
	} else if (tx)
		tx_run(v);
	else
		rx_run(v);
}

/* The MAC the guest was shown travels with the device: a restore keeps it (a MAC derived
 * from another --name would change it under the guest), and one given with mac= must be
 * the same. */
static int net_state(struct virtio_dev *v, Cme__VirtioState *m, struct dev_xfer *x)
{
	struct net *n = v->be_priv;
	const struct vm_net *cfg = v->be_arg;

	if (x->save) {
		m->mac = (ProtobufCBinaryData){ VM_MAC_LEN, n->mac };
		return 0;
	}
	if (!m->mac.len)
		return 0;
	if (m->mac.len != VM_MAC_LEN)
		return dev_state_fail(x, "mac of %zu bytes", m->mac.len);
	if (cfg->mac_set && memcmp(cfg->mac, m->mac.data, VM_MAC_LEN))
		return dev_state_fail(x,
				      "mac is %02x:%02x:%02x:%02x:%02x:%02x, --net gives another",
				      m->mac.data[0], m->mac.data[1], m->mac.data[2],
				      m->mac.data[3], m->mac.data[4], m->mac.data[5]);
	memcpy(n->mac, m->mac.data, VM_MAC_LEN);
	memcpy(n->st.mac, n->mac, VM_MAC_LEN);
	return 0;
}

static const struct virtio_backend virtio_net_backend = {
	.name = "virtio-net",
	.device_id = VIRTIO_ID_NET,
	.nr_queues = 2,
	.queue_max = QUEUE_MAX,
	.open = net_open,
	.close = net_close,
	.features = net_features,
	.config_read = net_config,
	.identity = net_identity,
	.process = net_process,
	.event = net_event,
	.state = net_state,
};

/* A live migration hands the tap over like a disk (hypervisor.h, enum vm_handoff): the
 * source lets go of it once its guest is paused (a tap admits one attachment), the
 * destination attaches before it says READY, a failed migration gives it back. Frames the
 * host sends meanwhile wait in the tap, or are lost once it has no attachment, as on a link
 * that moves. */
static int net_handoff(struct vm_device *d, enum vm_handoff step, int timeout_ms, char *why,
		       size_t len)
{
	struct virtio_dev *v = d->priv;
	struct net *n = v->be_priv;
	const struct vm_net *cfg = v->be_arg;
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000ull;
	int rc;

	if ((step == VM_HANDOFF_RELEASE) == n->detached)
		return 0; /* released already, or attached already */
	if (step == VM_HANDOFF_RELEASE)
		rc = swap_tap(n, placeholder(why, len));
	else /* a destination that still has it lets go as it exits */
		while ((rc = swap_tap(n, tap_attach(cfg->tap, why, len))) == -EBUSY &&
		       now_ns() < end)
			sleep_ms(10);
	if (!rc)
		n->detached = step == VM_HANDOFF_RELEASE;
	else if (step == VM_HANDOFF_RELEASE)
		snprintf(why, len, "tap %s: cannot let go of it: %s", cfg->tap, strerror(-rc));
	return rc;
}

/* Running again while still detached (a migration in doubt that someone resumes): attach
 * again if the tap is free, else run on without a link. */
static void net_pause(struct vm_device *d, bool pause)
{
	struct virtio_dev *v = d->priv;
	struct net *n = v->be_priv;
	char why[160];

	if (!pause && n && n->detached && net_handoff(d, VM_HANDOFF_RECLAIM, 0, why, sizeof(why)))
		log_err(SUB, "vm=%s %s: the guest runs without its link", v->vm->cfg.name, why);
	virtio_mmio_pause(d, pause);
}

static int net_create(struct vm_device *d)
{
	return virtio_mmio_create(d, &virtio_net_backend);
}

const struct dev_ops dev_virtio_net_ops = {
	.name = "virtio-net",
	.state_version = 1,
	.create = net_create,
	.destroy = virtio_mmio_destroy,
	.reset = virtio_mmio_reset,
	.io = virtio_mmio_io,
	.pause = net_pause,
	.state = virtio_mmio_state,
	.handoff = net_handoff,
};

int vm_get_net_stats(struct vm *vm, unsigned idx, struct vm_net_stats *st)
{
	struct virtio_dev *v = virtio_find(vm, &dev_virtio_net_ops, vm->cfg.nr_disks + idx);

	if (!v)
		return -ENOENT;
	pthread_mutex_lock(&v->mu);
	*st = ((struct net *)v->be_priv)->st;
	pthread_mutex_unlock(&v->mu);
	return 0;
}
