/* The destination of a live migration, up to READY: accept the source over mutual TLS,
 * build the VM it describes, take pages on every channel, check the digest and load the
 * state. Nothing runs here until the commit (dest_run.c), and any failure throws the
 * half-received VM away. */
#include "dest_priv.h"
#include "proto.h"

#include <errno.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SUB		"incoming"
#define IDLE_TIMEOUT_MS 30000 /* a page channel silent this long: the source is gone */
/* After its last pages the source flushes and unlocks its disks (fdatasync, on slow storage
 * a while) and finishes its digest before the switchover record. */
#define SWITCHOVER_TIMEOUT_MS 120000
#define CLAIM_MS	      2000 /* the source unlocked the disks before it sent the state */

static bool in_stop(void *arg)
{
	return mig_in_stopping(arg);
}

/* Wait for the source: only node certificates get this far (dest_accept.c); one that is
 * not the node named by --peer-name is refused and logged, and the wait goes on until the
 * deadline. */
static int in_accept_source(struct mig_dest *c)
{
	uint64_t end = c->in.timeout_ms < 0 ? UINT64_MAX
					    : now_ns() + (uint64_t)c->in.timeout_ms * 1000000ull;
	struct tls_conn *conn = NULL;
	int rc = mig_acceptor_start(c->ctx, c->listen_fd, &c->acc);

	if (rc)
		return mig_in_fail(c, rc, "cannot accept connections: %s", strerror(-rc));
	for (;;) {
		rc = mig_acceptor_take(c->acc, end, in_stop, c, &conn);
		if (rc == -ETIMEDOUT)
			return mig_in_fail(c, rc, "no migration arrived in time");
		if (rc == -ECANCELED)
			return mig_in_fail(c, rc, "stopped while waiting for the source");
		if (!c->in.peer_name || !strcmp(net_tls_peer_cn(conn), c->in.peer_name))
			break;
		log_warn(SUB, "vm=%s refused %s: its certificate is for %s, not %s", c->in.name,
			 net_tls_peer_addr(conn), net_tls_peer_cn(conn), c->in.peer_name);
		net_tls_close(conn);
	}
	snprintf(c->source, sizeof(c->source), "%s", net_tls_peer_cn(conn));
	if (net_tls_set_timeout(conn, IN_CHANNEL_TIMEOUT) < 0)
		log_debug(SUB, "cannot set the handshake timeout");
	pthread_mutex_lock(&c->lock);
	c->ctl = conn;
	pthread_mutex_unlock(&c->lock);
	mig_in_set_phase(c, MIG_IN_RECEIVING);
	c->t0 = now_ns();
	return 0;
}

static int in_welcome(struct mig_dest *c, bool ok, const char *reason)
{
	Cme__MigWelcome w = CME__MIG_WELCOME__INIT;

	w.ok = ok;
	w.reason = (char *)(reason ? reason : "");
	w.node = (char *)"";
	w.postcopy_drop = c->postcopy_offer;
	return mig_rec_send_msg(c->ctl, REC_WELCOME, &w.base);
}

static int in_check_hello(struct mig_dest *c, const Cme__MigHello *h)
{
	if (h->version != MIG_PROTOCOL_VERSION)
		return mig_in_fail(c, -EPROTO, "protocol version %u, this VMM speaks %d",
				   h->version, MIG_PROTOCOL_VERSION);
	if (!h->config || !h->config->nr_vcpus || h->config->nr_vcpus > VM_MAX_VCPUS ||
	    !h->config->mem_bytes || h->config->mem_bytes > VM_MAX_MEM)
		return mig_in_fail(c, -EINVAL, "the source describes an impossible VM");
	if (host_mem_bytes() && h->config->mem_bytes > host_mem_bytes())
		return mig_in_fail(c, -ENOMEM, "the VM needs %llu MiB, this host has %llu MiB",
				   (unsigned long long)(h->config->mem_bytes >> 20),
				   (unsigned long long)(host_mem_bytes() >> 20));
	if (h->channels < 1 || h->channels > IN_MAX_CHANNELS ||
	    h->session.len != sizeof(c->session))
		return mig_in_fail(c, -EPROTO, "bad channel count or session");
	if (h->postcopy) {
		char why[200];

		if (mig_pc_check(c, why, sizeof(why)))
			return mig_in_fail(c, -ENOTSUP, "post-copy is not possible here: %s", why);
		c->postcopy_offer = true;
	}
	return 0;
}

/* The guest's CPU (HELLO's config) against what this VM offers: KVM's CPUID here, masked
 * by this side's --cpu-template. A refusal names what this host lacks. */
static int in_check_cpu(struct mig_dest *c, const Cme__VmConfig *cfg)
{
	size_t len = cme__vm_config__get_packed_size(cfg);
	uint8_t *buf = malloc(len ? len : 1);
	char why[400] = "";
	int rc;

	if (!buf)
		return mig_in_fail(c, -ENOMEM, "out of memory");
	cme__vm_config__pack(cfg, buf);
	rc = vm_cpu_check(c->vm, buf, len, why, sizeof(why));
	free(buf);
	if (rc)
		return mig_in_fail(c, rc, "%s", why);
	return 0;
}

/* HELLO: check the offer, build the VM, and answer. */
static int in_hello(struct mig_dest *c)
{
	uint8_t *payload;
	uint32_t type, len;
	Cme__MigHello *h;
	int rc = mig_rec_recv(c->ctl, &type, &payload, &len);

	if (rc)
		return mig_in_fail(c, rc, "source went away during the handshake");
	h = type == REC_HELLO ? PB_UNPACK(cme__mig_hello__unpack, len, payload) : NULL;
	free(payload);
	if (!h)
		return mig_in_fail(c, -EPROTO, "the source did not say hello");
	rc = in_check_hello(c, h);
	if (!rc) {
		struct vm_config cfg = { 0 };

		if (c->in.vm)
			cfg = *c->in.vm;
		cfg.name = c->in.name;
		cfg.mem_bytes = h->config->mem_bytes;
		cfg.nr_vcpus = h->config->nr_vcpus;
		cfg.console = c->in.console;
		cfg.incoming = true;
		c->nch = h->channels;
		memcpy(c->session, h->session.data, sizeof(c->session));
		rc = vm_create(&cfg, &c->vm);
		if (rc)
			mig_in_fail(c, rc, "cannot create the VM here: %s", strerror(-rc));
		else
			rc = in_check_cpu(c, h->config);
	}
	cme__mig_hello__free_unpacked(h, NULL);
	if (in_welcome(c, !rc, rc ? c->err : NULL) < 0 && !rc)
		rc = mig_in_fail(c, -EPIPE, "source went away during the handshake");
	/* Pre-copy may take minutes with nothing on the control channel: no timeout there
	 * (a source that vanishes is noticed on the page channels, which wake this one). */
	if (!rc && net_tls_set_timeout(c->ctl, 0) < 0)
		log_debug(SUB, "cannot clear the handshake timeout");
	return rc;
}

static int in_channel_hello(struct mig_dest *c, struct tls_conn *conn, unsigned *index)
{
	uint8_t *payload;
	uint32_t type, len;
	Cme__MigChannelHello *h;
	int rc = mig_rec_recv(conn, &type, &payload, &len);

	if (rc)
		return rc;
	h = type == REC_CHANNEL_HELLO ? PB_UNPACK(cme__mig_channel_hello__unpack, len, payload)
				      : NULL;
	free(payload);
	if (!h)
		return -EPROTO;
	rc = h->session.len == sizeof(c->session) &&
			     !sodium_memcmp(h->session.data, c->session, sizeof(c->session)) &&
			     (h->index < c->nch
				      ? !c->ch[h->index].conn
				      : h->index == c->nch && c->postcopy_offer && !c->urgent)
		     ? 0
		     : -EPERM;
	*index = h->index;
	cme__mig_channel_hello__free_unpacked(h, NULL);
	return rc;
}

/* One page channel: from the source's node, and part of this migration (its session);
 * anything else is refused and logged — it changes nothing here. */
static int in_take_channel(struct mig_dest *c, struct tls_conn *conn)
{
	unsigned idx;
	int rc;

	if (strcmp(net_tls_peer_cn(conn), c->source)) {
		log_warn(SUB, "vm=%s refused a page channel from %s: %s, not the source %s",
			 c->in.name, net_tls_peer_addr(conn), net_tls_peer_cn(conn), c->source);
		return -EACCES;
	}
	rc = net_tls_set_timeout(conn, IN_CHANNEL_TIMEOUT);
	if (!rc)
		rc = in_channel_hello(c, conn, &idx);
	if (rc) {
		log_warn(SUB, "vm=%s refused a connection from %s: not a channel of this migration",
			 c->in.name, net_tls_peer_addr(conn));
		return rc;
	}
	if (net_tls_set_timeout(conn, IDLE_TIMEOUT_MS) < 0)
		log_debug(SUB, "cannot set a channel timeout");
	if (idx == c->nch) {
		c->urgent = conn;
		return 0;
	}
	mig_fit_buffers(conn);
	c->ch[idx].conn = conn;
	c->ch[idx].vm = c->vm;
	c->ch[idx].ctl = c->ctl;
	return 0;
}

static int in_accept_channels(struct mig_dest *c)
{
	unsigned want = c->nch + c->postcopy_offer;
	/* One deadline for them all: refused connections do not extend it. */
	uint64_t end = now_ns() + IN_CHANNEL_TIMEOUT * 1000000ull;

	for (unsigned n = 0; n < want;) {
		struct tls_conn *conn = NULL;
		int rc = mig_acceptor_take(c->acc, end, in_stop, c, &conn);

		if (rc == -ETIMEDOUT)
			return mig_in_fail(c, rc, "page channel %u: nothing connected in time", n);
		if (rc)
			return mig_in_fail(c, rc, "stopped while the page channels connected");
		if (in_take_channel(c, conn)) {
			net_tls_close(conn);
			continue;
		}
		n++;
	}
	mig_acceptor_stop(c->acc); /* no one else gets in */
	c->acc = NULL;
	return 0;
}

/* Every pre-copy page is in (or none will come): guest RAM is the kernel's again. */
static void in_place_stop(struct mig_dest *c)
{
	for (unsigned i = 0; i < c->nch; i++)
		c->ch[i].place = NULL;
	mig_place_stop(c->place);
	c->place = NULL;
}

/* The running digest first: the channels mark what they write from their first page. */
static int in_start_receivers(struct mig_dest *c)
{
	int rc = mig_track_new(c->vm, c->nch, &c->track);

	if (rc)
		return mig_in_fail(c, rc, "cannot track the memory digest: %s", strerror(-rc));
	rc = mig_track_start(c->track);
	if (rc)
		log_warn(SUB, "vm=%s no background digest (%s): all of it at switchover",
			 c->in.name, strerror(-rc));
	/* Hugepages are placed 2 MiB at a time: those are written in place. */
	rc = c->in.vm && c->in.vm->hugepages ? -ENOTSUP : mig_place_start(c->vm, &c->place);
	if (rc)
		log_info(SUB, "vm=%s pages written in place (%s)", c->in.name, strerror(-rc));
	for (unsigned i = 0; i < c->nch; i++) {
		c->ch[i].track = c->track;
		c->ch[i].place = c->place;
		if (mig_rx_start(&c->ch[i]))
			return mig_in_fail(c, -EAGAIN, "cannot start receiver threads");
	}
	return 0;
}

/* Why a page channel failed, when not for the link: a record no source should send (the
 * channel then closed the control link, which would otherwise read as the source gone). */
const char *mig_in_rx_why(const struct mig_dest *c)
{
	for (unsigned i = 0; i < c->nch; i++) {
		if (c->ch[i].err == -ERANGE)
			return "the source sent a page outside guest RAM";
		if (c->ch[i].err == -EPROTO)
			return "the source sent a malformed page record";
	}
	return NULL;
}

/* The next control record, of type want or also (its type in *got, unless NULL); an ABORT
 * or anything else ends the migration. */
static int in_expect_either(struct mig_dest *c, uint32_t want, uint32_t also, uint32_t *got,
			    uint8_t **payload, uint32_t *len, const char *what)
{
	uint32_t type;
	char reason[256];
	int rc = mig_rec_recv(c->ctl, &type, payload, len);

	if (rc && mig_in_rx_why(c))
		return mig_in_fail(c, -EPROTO, "%s", mig_in_rx_why(c));
	if (rc == -EPROTO)
		return mig_in_fail(c, rc, "the source sent an unknown or oversized record while %s",
				   what);
	if (rc)
		return mig_in_fail(c, rc, "the source went away while %s", what);
	if (got)
		*got = type;
	if (type == want || type == also)
		return 0;
	if (type == REC_ABORT)
		mig_rec_abort_reason(*payload, *len, reason, sizeof(reason));
	free(*payload);
	*payload = NULL;
	return type == REC_ABORT
		       ? mig_in_fail(c, -ECONNABORTED, "the source aborted: %s", reason)
		       : mig_in_fail(c, -EPROTO, "unexpected record %u while %s", type, what);
}

/* Wait for the control record `want`; an ABORT or anything else ends the migration. */
int mig_in_expect(struct mig_dest *c, uint32_t want, uint8_t **payload, uint32_t *len,
		  const char *what)
{
	return in_expect_either(c, want, want, NULL, payload, len, what);
}

/* Fault injection for tests (CME_FAULT_CORRUPT_PAGE=1): flip one bit of the first
 * non-zero page below 16 MiB after everything arrived, as a transport or dirty-log bug
 * would. The digest check must catch it and the source must resume. */
static void in_fault_corrupt(struct vm *vm, struct mig_track *track)
{
	const char *f = getenv("CME_FAULT_CORRUPT_PAGE");

	if (!f || strcmp(f, "1"))
		return;
	for (uint64_t gpa = 0x100000; gpa < (16u << 20); gpa += VM_PAGE_SIZE) {
		uint8_t *p = vm_gpa_hva(vm, gpa, VM_PAGE_SIZE);

		if (p && !mem_is_zero(p, VM_PAGE_SIZE)) {
			log_warn(SUB, "fault injection: corrupting the page at 0x%llx",
				 (unsigned long long)gpa);
			p[17] ^= 0x01;
			mig_track_mark(track, gpa); /* a write like any other: the digest sees it */
			return;
		}
	}
}

/* Pre-copy may take minutes with nothing on the control channel, but once every page
 * channel has ended (its final round), the source owes the switchover at once: a source
 * that then stalls (stopped, its host frozen) is given SWITCHOVER_TIMEOUT_MS, not for ever.
 * Returns 0 once the control channel has something (or an error) to read. */
static int in_await_switchover(struct mig_dest *c)
{
	const char *env = getenv("CME_SWITCHOVER_TIMEOUT_MS"); /* tests: shorter */
	uint64_t since = 0,
		 limit_ms = env && atoi(env) > 0 ? (uint64_t)atoi(env) : SWITCHOVER_TIMEOUT_MS;

	for (;;) {
		struct pollfd pf = { net_tls_fd(c->ctl), POLLIN, 0 };
		bool all = true;

		if (net_tls_pending(c->ctl) || poll(&pf, 1, 500) != 0)
			return 0;
		for (unsigned i = 0; i < c->nch; i++)
			all &= atomic_load(&c->ch[i].done);
		since = all ? (since ? since : now_ns()) : 0;
		if (since && now_ns() - since > limit_ms * 1000000ull)
			return mig_in_fail(
				c, -ETIMEDOUT,
				"the source sent its last pages but no switchover in %llu s",
				(unsigned long long)(limit_ms / 1000));
	}
}

/* The switchover record, after a post-copy's early drop if the source sends one. */
static int in_await_record(struct mig_dest *c, uint8_t **payload, uint32_t *len)
{
	uint32_t type = REC_PC_DROP;
	int rc = 0;

	while (!rc && type == REC_PC_DROP) {
		rc = in_await_switchover(c);
		if (!rc)
			rc = in_expect_either(c, REC_SWITCHOVER, REC_PC_DROP, &type, payload, len,
					      "sending pages");
		if (!rc && type == REC_PC_DROP) {
			rc = mig_pc_drop_early(c, *payload, *len);
			free(*payload);
			*payload = NULL;
		}
	}
	return rc;
}

/* incoming --measurement: the arriving guest must have booted what was expected. */
static int in_check_measurement(struct mig_dest *c)
{
	uint8_t m[MEASURE_BYTES];
	char hex[2 * MEASURE_BYTES + 1] = "none", want[2 * MEASURE_BYTES + 1], why[600];
	bool have = vm_get_measurement(c->vm, m);

	if (c->in.trust && !have)
		return mig_in_fail(c, -EACCES,
				   "the guest carries no measurement, and this node "
				   "runs only signed boots");
	if (c->in.trust && boot_verify(m, c->in.trust, c->in.boot_sig, why, sizeof(why)))
		return mig_in_fail(c, -EACCES, "the arriving guest's %s", why);
	if (!c->in.measurement)
		return 0;
	if (have)
		measure_hex(m, hex);
	if (!strcmp(hex, "none") || sodium_memcmp(m, c->in.measurement, MEASURE_BYTES)) {
		measure_hex(c->in.measurement, want);
		return mig_in_fail(c, -EACCES, "the guest's measurement %s is not the expected %s",
				   hex, want);
	}
	return 0;
}

/* The switch's post-copy part agrees with what came before it: a post-copy switch only
 * where this side offered one (its map of missing pages taken, mig_pc_prepare), and none
 * after pages were dropped early for one. 0, or the failure (set). */
static int in_switch_postcopy(struct mig_dest *c, const Cme__MigSwitchover *sw)
{
	if (!sw->postcopy)
		return c->pc ? mig_in_fail(c, -EPROTO,
					   "pages were dropped for a post-copy switch that did "
					   "not come")
			     : 0;
	if (!c->postcopy_offer)
		return mig_in_fail(c, -EPROTO, "post-copy was not offered at hello");
	return mig_pc_prepare(c, sw->stale.data, sw->stale.len, sw->digest.data);
}

/* All pages are in once every channel has ended its final round: compare digests and
 * load the state. The VM still has not run. */
static int in_switchover(struct mig_dest *c, struct mig_stats *st)
{
	uint8_t *payload = NULL, digest[MIG_DIGEST_BYTES];
	uint32_t len;
	char why[300];
	Cme__MigSwitchover *sw;
	struct mig_track_counts n;
	uint64_t t0, tsw;
	int rc = in_await_record(c, &payload, &len);

	tsw = now_ns();
	/* The receivers are joined before their placement goes, on failure too: cut their
	 * channels first so that they end at once. */
	for (unsigned i = 0; rc && i < c->nch; i++)
		if (c->ch[i].conn)
			net_tls_shutdown(c->ch[i].conn);
	if (mig_in_join(c) && !rc)
		rc = mig_in_fail(c, -EIO, "a page channel failed");
	st->drain_us = (now_ns() - tsw) / 1000;
	in_place_stop(c);
	log_debug(SUB, "vm=%s switch: receivers joined after %llu us", c->in.name,
		  (unsigned long long)(now_ns() - tsw) / 1000);
	if (rc) {
		free(payload);
		return rc;
	}
	sw = PB_UNPACK(cme__mig_switchover__unpack, len, payload);
	free(payload);
	if (!sw || sw->digest.len != MIG_DIGEST_BYTES) {
		if (sw)
			cme__mig_switchover__free_unpacked(sw, NULL);
		return mig_in_fail(c, -EPROTO, "malformed switchover record");
	}
	rc = in_switch_postcopy(c, sw);
	if (rc) {
		cme__mig_switchover__free_unpacked(sw, NULL);
		return rc;
	}
	in_fault_corrupt(c->vm, c->track);
	t0 = now_ns();
	/* Only the chunks written since the background hasher last saw them are left. */
	mig_track_digest(c->track, 2, digest, &n);
	mig_track_free(c->track);
	c->track = NULL;
	st->digest_ms = (now_ns() - t0) / 1000000;
	log_info(SUB,
		 "vm=%s digest in %llu ms: %llu of %llu chunks left for the switchover (%llu "
		 "hashed while pages arrived)",
		 c->in.name, (unsigned long long)st->digest_ms, (unsigned long long)n.final,
		 (unsigned long long)n.chunks, (unsigned long long)n.background);
	if (c->pc) /* post-copy: what is here now, the rest is added as it arrives */
		mig_pc_set_base(c, digest);
	else if (sodium_memcmp(digest, sw->digest.data, MIG_DIGEST_BYTES))
		rc = mig_in_fail(c, -EBADMSG,
				 "memory digest mismatch: pages were lost or corrupted");
	t0 = now_ns();
	if (!rc && vm_state_load(c->vm, sw->state.data, sw->state.len, c->err, sizeof(c->err)))
		rc = -EINVAL;
	st->state_ms = (now_ns() - t0) / 1000000;
	cme__mig_switchover__free_unpacked(sw, NULL);
	if (!rc)
		rc = in_check_measurement(c);
	if (!rc && vm_devices_handoff(c->vm, VM_HANDOFF_CLAIM, CLAIM_MS, why, sizeof(why)))
		rc = mig_in_fail(c, -EBUSY, "%s", why);
	/* The vCPU threads now, parked: the commit only has to release them. */
	log_debug(SUB, "vm=%s switch: state loaded after %llu us", c->in.name,
		  (unsigned long long)(now_ns() - tsw) / 1000);
	if (!rc && vm_start(c->vm, true))
		rc = mig_in_fail(c, -EIO, "cannot start the vCPU threads (parked)");
	log_debug(SUB, "vm=%s switch: vCPU threads parked after %llu us", c->in.name,
		  (unsigned long long)(now_ns() - tsw) / 1000);
	if (!rc && c->pc)
		rc = mig_pc_start(c);
	log_debug(SUB, "vm=%s switch: ready to send READY after %llu us", c->in.name,
		  (unsigned long long)(now_ns() - tsw) / 1000);
	return rc;
}

int mig_in_send_ready(struct mig_dest *c)
{
	Cme__MigReady r = CME__MIG_READY__INIT;

	r.digest_ms = c->st.digest_ms;
	r.load_ms = c->st.state_ms;
	r.drain_us = c->st.drain_us;
	return mig_rec_send_msg(c->ctl, REC_READY, &r.base);
}

int mig_in_receive(struct mig_dest *c)
{
	int rc = in_accept_source(c);

	if (!rc)
		rc = in_hello(c);
	if (!rc)
		rc = in_accept_channels(c);
	if (!rc)
		rc = in_start_receivers(c);
	if (!rc)
		rc = in_switchover(c, &c->st);
	return rc;
}

/* The connections are detached under the lock first: mig_dest_abort may be shutting
 * the control channel down. */
void mig_in_cleanup(struct mig_dest *c)
{
	struct tls_conn *ctl;

	for (unsigned i = 0; i < c->nch; i++)
		if (c->ch[i].conn)
			net_tls_shutdown(c->ch[i].conn);
	net_tls_shutdown(c->urgent);
	mig_in_join(c);
	in_place_stop(c);
	mig_pc_free(c);		  /* after the receivers that place its pages */
	mig_track_free(c->track); /* after its writers, before the VM goes */
	c->track = NULL;
	net_tls_close(c->urgent);
	c->urgent = NULL;
	for (unsigned i = 0; i < c->nch; i++) {
		net_tls_close(c->ch[i].conn);
		c->ch[i].conn = NULL;
	}
	pthread_mutex_lock(&c->lock);
	ctl = c->ctl;
	c->ctl = NULL;
	pthread_mutex_unlock(&c->lock);
	net_tls_close(ctl);
	mig_acceptor_stop(c->acc);
	c->acc = NULL;
	if (c->listen_fd >= 0)
		close(c->listen_fd);
	c->listen_fd = -1;
}

int mig_in_listen(struct mig_dest *c)
{
	char host[256];
	uint16_t port;
	int rc;

	if (!c->in.listen || net_parse_hostport(c->in.listen, host, sizeof(host), &port) < 0)
		return mig_in_fail(c, -EINVAL, "--listen %s is not HOST:PORT",
				   c->in.listen ? c->in.listen : "");
	rc = net_tls_ctx_new(c->in.tls_dir, true, &c->ctx, c->err, sizeof(c->err));
	if (!rc)
		rc = net_tls_listen(host, port, &c->listen_fd, &c->port, c->err, sizeof(c->err));
	if (rc)
		return rc;
	log_info(SUB, "waiting for a migration on %s:%u", host, c->port);
	return 0;
}

void mig_in_count(struct mig_dest *c)
{
	struct mig_stats *st = &c->st;

	st->bytes = st->pages = st->zero_pages = 0;
	for (unsigned i = 0; i < c->nch; i++) {
		st->bytes += c->ch[i].bytes;
		st->pages += c->ch[i].pages - c->ch[i].zero;
		st->zero_pages += c->ch[i].zero;
	}
}
