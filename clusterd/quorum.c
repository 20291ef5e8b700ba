/* Riding out an etcd outage, safely. A node whose lease cannot be renewed keeps its guests
 * running only on confirmations from a majority of the cluster's members (members/
 * records, counting itself), given over the peer channel; and the leader restarts the
 * VMs of a lost node only after a majority of members released it. Two majorities always
 * share a member, so the two can never both happen:
 *
 *   - a member grants a confirmation to X only while etcd does not answer it, and promises
 *     with it not to release X for `hold` (TTL + margin) on its own clock; X's deadline
 *     from a confirmation asked at s is s + the fencing window (ha_fence_quorum_deadline:
 *     the majority's oldest confirmation counts), which ends before every promise of it;
 *   - a member asked by the leader to release X refuses X's confirmations from then on
 *     (until it reads X registered again) and says how long its last promise to X still
 *     holds; the leader waits that long (plus the margin) after a majority released X;
 *   - promises and releases are written to <state_dir>/promises.json (flushed) before the
 *     answer goes out, so a restarted daemon keeps them; one that cannot trust the file
 *     (unreadable, or written in another boot of the host, whose CLOCK_BOOTTIME differs)
 *     neither grants nor releases without making the leader wait for `hold`;
 *   - the leader's move of a VM also requires nodes/<X> to be absent (cd_owner_take): a node
 *     that got etcd back registers again and keeps its guests.
 *
 * Clusters of fewer than three members cannot ride through (a majority of two is both) and
 * fence on the lease alone, as with ride_through = off. */
#include "cd_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SUB	    "quorum"
#define RIDE_MS	    500 /* how often a node that etcd does not answer asks its peers */
#define RETRY_MS    100 /* ... while a majority has not confirmed yet */
#define ASK_MS	    300
#define MIN_MEMBERS 3
#define NS_PER_MS   1000000ull

struct given {
	char node[CL_NAME_MAX];
	uint64_t until_ns;    /* our promise to it holds until then (CLOCK_BOOTTIME) */
	uint64_t released_ns; /* when the leader asked us to release it; 0: not released */
};

struct rel {
	char node[CL_NAME_MAX];
	uint64_t ready_ns; /* the leader may move its VMs from then on; 0: no majority yet */
	unsigned wait_ms;  /* what the majority's promises still held when it released */
};

struct confirm {
	char node[CL_NAME_MAX];
	uint64_t sent_ns; /* when we asked for its last confirmation (CLOCK_BOOTTIME) */
};

struct cd_quorum {
	pthread_mutex_t mu;
	struct cl_member members[CD_MAX_MEMBERS]; /* the last view's, or the cached file's */
	size_t nmembers;
	struct given given[CD_MAX_MEMBERS];
	size_t ngiven;
	uint64_t start_ns; /* no confirmation or release before start_ns + hold_ns (0: none) */
	uint64_t hold_ns;
	/* the ride thread's own */
	pthread_t ride;
	bool ride_started;
	atomic_bool quit;
	struct confirm got[CD_MAX_MEMBERS];
	size_t ngot;
	unsigned last_granted;
	/* the leader's (main thread) */
	struct rel rel[CD_MAX_MEMBERS];
	size_t nrel;
	char join_why[256]; /* why this node did not join the members yet (logged once) */
};

static bool ride_on(const struct cd *cd)
{
	return cd->cfg->ride_through && cd->cfg->fence;
}

static const struct cl_member *member_find(const struct cd_quorum *q, const char *name)
{
	for (size_t i = 0; i < q->nmembers; i++)
		if (!strcmp(q->members[i].name, name))
			return &q->members[i];
	return NULL;
}

static struct given *given_get(struct cd_quorum *q, const char *node, bool add)
{
	for (size_t i = 0; i < q->ngiven; i++)
		if (!strcmp(q->given[i].node, node))
			return &q->given[i];
	if (!add || q->ngiven == CD_MAX_MEMBERS)
		return NULL;
	memset(&q->given[q->ngiven], 0, sizeof(q->given[0]));
	snprintf(q->given[q->ngiven].node, CL_NAME_MAX, "%s", node);
	return &q->given[q->ngiven++];
}

static uint64_t left_ns(uint64_t until, uint64_t now)
{
	return until > now ? until - now : 0;
}

/* ---- promises and releases survive a restart of the daemon ------------------------------- */

static void boot_id(char *buf, size_t len)
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");

	buf[0] = 0;
	if (f) {
		if (!fgets(buf, (int)len, f))
			buf[0] = 0;
		fclose(f);
	}
	buf[strcspn(buf, "\n")] = 0;
}

static void promises_path(const struct cd *cd, char *buf, size_t len)
{
	snprintf(buf, len, "%s/promises.json", cd->cfg->state_dir);
}

/* Write the given table (mu held). Returns 0 or -errno: no answer may go out unsaved. */
static int persist_locked(struct cd *cd)
{
	struct cd_quorum *q = cd->quorum;
	char path[CL_PATH_MAX + 16], boot[64], *txt;
	json_t *arr = json_array(), *o;
	int rc = -ENOMEM;

	boot_id(boot, sizeof(boot));
	for (size_t i = 0; arr && i < q->ngiven; i++)
		json_array_append_new(arr, json_pack("{s:s,s:I,s:I}", "node", q->given[i].node,
						     "until_ns", (json_int_t)q->given[i].until_ns,
						     "released_ns",
						     (json_int_t)q->given[i].released_ns));
	o = arr ? json_pack("{s:s,s:o}", "boot_id", boot, "given", arr) : NULL;
	txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
	promises_path(cd, path, sizeof(path));
	if (txt)
		rc = write_file_atomic(path, txt, strlen(txt));
	if (rc)
		log_err(SUB, "cannot save promises in %s: %s", path, strerror(-rc));
	free(txt);
	json_decref(o);
	return rc;
}

/* Load what an earlier life of this daemon promised and released. No file: it never did
 * either. A file it cannot trust: hold everything for `hold` from now. */
static void promises_load(struct cd *cd)
{
	struct cd_quorum *q = cd->quorum;
	char path[CL_PATH_MAX + 16], boot[64];
	json_t *o, *e;
	size_t i;

	promises_path(cd, path, sizeof(path));
	if (access(path, F_OK) < 0)
		return;
	o = json_load_file(path, 0, NULL);
	boot_id(boot, sizeof(boot));
	if (!o || !boot[0] ||
	    strcmp(json_string_value(json_object_get(o, "boot_id")) ?: "", boot)) {
		log_warn(SUB,
			 "%s is unreadable or from another boot: no confirmation or release "
			 "for the next %llu ms",
			 path, (unsigned long long)(q->hold_ns / NS_PER_MS));
		q->start_ns = boottime_ns();
		json_decref(o);
		return;
	}
	json_array_foreach(json_object_get(o, "given"), i, e)
	{
		const char *node = json_string_value(json_object_get(e, "node"));
		struct given *g = node && cl_name_ok(node) ? given_get(q, node, true) : NULL;

		if (!g)
			continue;
		g->until_ns = (uint64_t)json_integer_value(json_object_get(e, "until_ns"));
		g->released_ns = (uint64_t)json_integer_value(json_object_get(e, "released_ns"));
	}
	json_decref(o);
}

/* ---- the members, cached in <state_dir>/members.json for a restart during an outage ---- */

static void cache_path(const struct cd *cd, char *buf, size_t len)
{
	snprintf(buf, len, "%s/members.json", cd->cfg->state_dir);
}

static bool cache_save(struct cd *cd, const struct cl_member *m, size_t n)
{
	char path[CL_PATH_MAX + 16], *txt;
	json_t *arr = json_array();
	bool ok;

	for (size_t i = 0; arr && i < n; i++)
		json_array_append_new(arr, json_pack("{s:s,s:s,s:b}", "name", m[i].name, "peer",
						     m[i].peer, "ride", m[i].ride));
	txt = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
	cache_path(cd, path, sizeof(path));
	ok = txt && !write_file_atomic(path, txt, strlen(txt));
	if (!ok)
		log_warn(SUB,
			 "cannot save the members in %s: this node keeps counting over the list "
			 "saved before",
			 path);
	free(txt);
	json_decref(arr);
	return ok;
}

static void cache_load(struct cd *cd)
{
	struct cd_quorum *q = cd->quorum;
	char path[CL_PATH_MAX + 16];
	json_t *arr, *e;
	size_t i;

	cache_path(cd, path, sizeof(path));
	arr = json_load_file(path, 0, NULL);
	json_array_foreach(arr, i, e)
	{
		const char *name = json_string_value(json_object_get(e, "name"));
		const char *peer = json_string_value(json_object_get(e, "peer"));

		if (q->nmembers == CD_MAX_MEMBERS || !name || !peer || !cl_name_ok(name) ||
		    strlen(peer) >= sizeof(q->members[0].peer))
			continue;
		snprintf(q->members[q->nmembers].name, CL_NAME_MAX, "%s", name);
		snprintf(q->members[q->nmembers].peer, sizeof(q->members[0].peer), "%s", peer);
		q->members[q->nmembers].ride = json_is_true(json_object_get(e, "ride"));
		q->nmembers++;
	}
	json_decref(arr);
}

void cd_quorum_members_hash(struct cd *cd, char out[CL_MEMBERS_HASH])
{
	struct cd_quorum *q = cd->quorum;
	const char *names[CD_MAX_MEMBERS];
	size_t n;

	pthread_mutex_lock(&q->mu);
	n = q->nmembers;
	for (size_t i = 0; i < n; i++)
		names[i] = q->members[i].name;
	cl_members_hash(names, n, out);
	pthread_mutex_unlock(&q->mu);
}

/* members/<node> as one change of the member list (cl_membership_change): a forget
 * (cmectl) and a rewrite of the record cannot cross. change: "join", or "peer" (a member's
 * peer channel moved, or how it rides). 0, -EAGAIN (another change came first: the next
 * round looks again) or -errno. */
static int member_write(struct cd *cd, const struct cl_view *v, const struct cl_member *m,
			const char *change)
{
	char key[256], *mj = cl_member_json(m);
	struct etcd_op op = { .type = ETCD_OP_PUT,
			      .key = cd_key(cd, key, sizeof(key), "members", m->name, NULL),
			      .val = mj,
			      .vlen = mj ? strlen(mj) : 0 };
	struct etcd_err err = { "out of memory" };
	int rc = mj ? cl_membership_change(cd->etcd, cd->cfg->prefix, v, change, m->name, NULL, 0,
					   &op, 1, &err)
		    : -ENOMEM;

	if (rc && rc != -EAGAIN)
		log_warn(SUB, "node=%s: writing members/%s: %s", m->name, m->name, err.msg);
	free(mj);
	return rc;
}

/* members/<me> with the peer channel's address, written when missing or stale. */
static void publish_self(struct cd *cd, const struct cl_view *v)
{
	const struct cl_node_view *nv = cl_view_node(v, cd->cfg->node);
	struct cl_member m = { .joined_ms = wall_ms() };
	char why[256];

	if (!cd->peer || (nv && nv->member && !strcmp(nv->mem.peer, cd_peer_addr(cd)) &&
			  nv->mem.ride == ride_on(cd)))
		return;
	snprintf(m.name, sizeof(m.name), "%s", cd->cfg->node);
	snprintf(m.peer, sizeof(m.peer), "%s", cd_peer_addr(cd));
	m.ride = ride_on(cd);
	if (nv && nv->member) { /* its peer channel moved, or how it rides: the list stays */
		m.joined_ms = nv->mem.joined_ms;
		if (!member_write(cd, v, &m, "peer"))
			log_info(SUB, "node=%s: peer channel now %s", m.name, m.peer);
		return;
	}
	if (cl_view_members(v) >= CD_MAX_MEMBERS) {
		snprintf(why, sizeof(why), "the cluster has %d members, the most a daemon counts",
			 CD_MAX_MEMBERS);
	} else if (cl_view_membership_settled(v, NULL, why, sizeof(why))) {
		if (!member_write(cd, v, &m, "join"))
			log_info(SUB, "node=%s: member of the cluster, peer channel %s", m.name,
				 m.peer);
		return;
	}
	if (strcmp(why, cd->quorum->join_why))
		log_info(SUB, "node=%s: not joining the members yet: %s", m.name, why);
	snprintf(cd->quorum->join_why, sizeof(cd->quorum->join_why), "%s", why);
}

void cd_quorum_view(struct cd *cd, const struct cl_view *v, uint64_t read_ns)
{
	struct cd_quorum *q = cd->quorum;
	struct cl_member m[CD_MAX_MEMBERS];
	size_t n = 0;
	bool changed, cleared = false;

	publish_self(cd, v);
	for (size_t i = 0; i < v->nnodes && n < CD_MAX_MEMBERS; i++)
		if (v->nodes[i].member)
			m[n++] = v->nodes[i].mem;
	/* Saved first: a restart during an outage counts over the saved list, which is the
	 * one this node's record names (only this thread writes q->members). */
	changed = (n != q->nmembers || memcmp(m, q->members, n * sizeof(m[0]))) &&
		  cache_save(cd, m, n);
	pthread_mutex_lock(&q->mu);
	if (changed) {
		memcpy(q->members, m, n * sizeof(m[0]));
		q->nmembers = n;
	}
	/* A released node that registered again (after the release) may be confirmed again. */
	for (size_t i = 0; i < q->ngiven; i++) {
		const struct cl_node_view *nv = cl_view_node(v, q->given[i].node);

		if (q->given[i].released_ns && q->given[i].released_ns < read_ns && nv &&
		    nv->alive) {
			q->given[i].released_ns = 0;
			cleared = true;
		}
	}
	if (cleared && persist_locked(cd))
		log_warn(SUB,
			 "released nodes stay released until the promises file can be written");
	pthread_mutex_unlock(&q->mu);
	if (!cd->leader)
		q->nrel = 0;		 /* a leader again later asks anew */
	for (size_t i = 0; i < q->nrel;) /* leader: alive again, a loss later asks anew */
		if (cl_view_node(v, q->rel[i].node) && cl_view_node(v, q->rel[i].node)->alive)
			q->rel[i] = q->rel[--q->nrel];
		else
			i++;
}

/* ---- answering peers (the peer thread) --------------------------------------------------- */

static json_t *answer_confirm(struct cd *cd, const char *node)
{
	struct cd_quorum *q = cd->quorum;
	uint64_t now = boottime_ns();
	const char *why = NULL;
	struct given *g;

	pthread_mutex_lock(&q->mu);
	g = given_get(q, node, false);
	if (!ride_on(cd) || q->nmembers < MIN_MEMBERS)
		why = "no ride-through here (ride_through off, or fewer than 3 members)";
	else if (!cd_etcd_silent(cd)) {
		cd_etcd_probe(cd); /* renew now: the next ask gets a fresh answer */
		why = "etcd answers this node (looking again now)";
	} else if (now < q->start_ns + q->hold_ns)
		why = "this daemon has just started";
	else if (!member_find(q, node))
		why = "not a member";
	else if (g && g->released_ns)
		why = "released to the leader: its VMs restart elsewhere";
	else if (!(g = given_get(q, node, true)))
		why = "too many nodes";
	else if ((g->until_ns = now + q->hold_ns), persist_locked(cd))
		why = "cannot save the promise";
	pthread_mutex_unlock(&q->mu);
	return json_pack("{s:b,s:b,s:s}", "ok", 1, "granted", why == NULL, "why", why ? why : "");
}

static json_t *answer_release(struct cd *cd, const char *node)
{
	struct cd_quorum *q = cd->quorum;
	uint64_t now = boottime_ns(), wait;
	struct given *g;

	pthread_mutex_lock(&q->mu);
	g = given_get(q, node, true);
	if (g && !g->released_ns) {
		g->released_ns = now;
		if (persist_locked(cd))
			g = NULL; /* not kept: not counted */
	}
	wait = left_ns(q->start_ns + q->hold_ns, now);
	if (g && left_ns(g->until_ns, now) > wait)
		wait = left_ns(g->until_ns, now);
	pthread_mutex_unlock(&q->mu);
	if (!g)
		return json_pack("{s:b,s:s}", "ok", 0, "error", "too many nodes, or not saved");
	return json_pack("{s:b,s:I}", "ok", 1, "wait_ms",
			 (json_int_t)((wait + NS_PER_MS - 1) / NS_PER_MS));
}

static json_t *answer(struct cd *cd, const char *from, json_t *req)
{
	const char *op = json_string_value(json_object_get(req, "op"));
	const char *node = json_string_value(json_object_get(req, "node"));

	if (!op || !node || !cl_name_ok(node))
		return json_pack("{s:b,s:s}", "ok", 0, "error", "bad request");
	if (!strcmp(op, "confirm") && strcmp(from, node))
		return json_pack("{s:b,s:s}", "ok", 0, "error",
				 "a node asks confirmations for itself only");
	if (!strcmp(op, "confirm"))
		return answer_confirm(cd, node);
	if (!strcmp(op, "release"))
		return answer_release(cd, node);
	return json_pack("{s:b,s:s}", "ok", 0, "error", "unknown op");
}

/* ---- riding through (the ride thread) ---------------------------------------------------- */

/* The other members to ask, and how many members there are; 0 when this node may not ride
 * (not a member, too few, ride-through off). */
static size_t ride_peers(struct cd *cd, struct cl_member *peers, size_t *npeers)
{
	struct cd_quorum *q = cd->quorum;
	const struct cl_member *self;
	size_t n;

	*npeers = 0;
	pthread_mutex_lock(&q->mu);
	n = q->nmembers;
	self = member_find(q, cd->cfg->node);
	/* Only once its own members/ record says it rides: a leader whose own ride_through
	 * is off gathers releases for it only then. */
	if (n < MIN_MEMBERS || !self || !self->ride)
		n = 0;
	for (size_t i = 0; n && i < q->nmembers; i++)
		if (strcmp(q->members[i].name, cd->cfg->node))
			peers[(*npeers)++] = q->members[i];
	pthread_mutex_unlock(&q->mu);
	return n;
}

static uint64_t *got_time(struct cd_quorum *q, const char *node)
{
	for (size_t i = 0; i < q->ngot; i++)
		if (!strcmp(q->got[i].node, node))
			return &q->got[i].sent_ns;
	if (q->ngot == CD_MAX_MEMBERS)
		return NULL;
	snprintf(q->got[q->ngot].node, CL_NAME_MAX, "%.*s", CL_NAME_MAX - 1, node);
	q->got[q->ngot].sent_ns = 0;
	return &q->got[q->ngot++].sent_ns;
}

/* One round; true when a majority confirmed (the next round may wait RIDE_MS). While etcd
 * answers it only looks, every RETRY_MS, so an outage is ridden from its first moments. */
static bool ride_round(struct cd *cd)
{
	struct cd_quorum *q = cd->quorum;
	struct cl_member peers[CD_MAX_MEMBERS];
	json_t *replies[CD_MAX_MEMBERS], *req;
	uint64_t confirmed[CD_MAX_MEMBERS], sent, qd;
	size_t npeers, nodes;
	unsigned granted = 0;
	int64_t lease;

	if (!cd_fence_deadline(cd, &lease) || !cd_etcd_silent(cd) ||
	    !(nodes = ride_peers(cd, peers, &npeers))) {
		q->ngot = 0; /* confirmations are for one outage */
		q->last_granted = 0;
		return false;
	}
	req = json_pack("{s:s,s:s}", "op", "confirm", "node", cd->cfg->node);
	sent = boottime_ns();
	cd_peer_ask(cd, peers, npeers, req, replies, ASK_MS);
	json_decref(req);
	for (size_t i = 0; i < npeers; i++) {
		uint64_t *t = got_time(q, peers[i].name);

		if (t && json_is_true(json_object_get(replies[i], "granted"))) {
			*t = sent;
			granted++;
		}
		confirmed[i] = t ? *t : 0;
		json_decref(replies[i]);
	}
	qd = ha_fence_quorum_deadline(&cd->fence.cfg, (unsigned)nodes, confirmed, npeers);
	if (qd)
		cd_fence_quorum(cd, lease, qd);
	if (granted != q->last_granted)
		log_warn(SUB,
			 "node=%s: etcd does not answer; %u of %zu other members confirm (a "
			 "majority needs %zu): guests %s",
			 cd->cfg->node, granted, npeers, nodes / 2,
			 granted >= nodes / 2 ? "keep running" : "stop at the lease's deadline");
	q->last_granted = granted;
	return granted >= nodes / 2;
}

static void *ride_main(void *arg)
{
	struct cd *cd = arg;

	pthread_setname_np(pthread_self(), "ride");
	while (!atomic_load(cd->stop) && !atomic_load(&cd->quorum->quit)) {
		unsigned wait = ride_round(cd) ? RIDE_MS : RETRY_MS; /* hurry until confirmed */

		for (unsigned t = 0; t < wait && !atomic_load(&cd->quorum->quit); t += 20)
			sleep_ms(20);
	}
	return NULL;
}

/* ---- the leader's releases ---------------------------------------------------------------- */

static struct rel *rel_get(struct cd_quorum *q, const char *node)
{
	for (size_t i = 0; i < q->nrel; i++)
		if (!strcmp(q->rel[i].node, node))
			return &q->rel[i];
	if (q->nrel == CD_MAX_MEMBERS)
		return NULL;
	memset(&q->rel[q->nrel], 0, sizeof(q->rel[0]));
	snprintf(q->rel[q->nrel].node, CL_NAME_MAX, "%s", node);
	return &q->rel[q->nrel++];
}

/* Ask every live member but the lost one (and this one, directly) to release node. */
static void gather(struct cd *cd, const struct cl_view *v, const char *node, struct rel *r,
		   size_t members, char *why, size_t len)
{
	struct cl_member peers[CD_MAX_MEMBERS];
	json_t *replies[CD_MAX_MEMBERS], *req, *mine;
	const struct cl_node_view *self = cl_view_node(v, cd->cfg->node);
	uint64_t answered, wait;
	size_t n = 0, got, need = members / 2 + 1;

	for (size_t i = 0; i < v->nnodes && n < CD_MAX_MEMBERS; i++)
		if (v->nodes[i].member && strcmp(v->nodes[i].name, node) &&
		    strcmp(v->nodes[i].name, cd->cfg->node))
			peers[n++] = v->nodes[i].mem;
	req = json_pack("{s:s,s:s}", "op", "release", "node", node);
	/* This node counts only as a member (a leader that has not joined yet is no vote),
	 * and only if its own release holds (saved): it failed when its state could not be
	 * written, and then its promise to the lost node was not counted. */
	mine = self && self->member ? answer_release(cd, node) : NULL;
	got = json_is_true(json_object_get(mine, "ok")) ? 1 : 0;
	wait = (uint64_t)json_integer_value(json_object_get(mine, "wait_ms"));
	json_decref(mine);
	cd_peer_ask(cd, peers, n, req, replies, ASK_MS);
	/* Each member counted its promise's time left when it answered: from the answers
	 * on, not from the asking, which was earlier by the round trip. */
	answered = boottime_ns();
	json_decref(req);
	for (size_t i = 0; i < n; i++) {
		json_t *w = json_object_get(replies[i], "wait_ms");

		if (json_is_true(json_object_get(replies[i], "ok")) && json_is_integer(w)) {
			got++;
			if ((uint64_t)json_integer_value(w) > wait)
				wait = (uint64_t)json_integer_value(w);
		}
		json_decref(replies[i]);
	}
	if (got >= need) {
		/* Promises still open are counted on other clocks: add the margin for their
		 * drift. None open: nothing to wait for. */
		if (wait)
			wait += cd->cfg->fence_margin_ms;
		r->ready_ns = answered + wait * NS_PER_MS;
		r->wait_ms = (unsigned)wait;
		log_info(SUB, "node %s released by %zu of %zu members; its VMs move in %llu ms",
			 node, got, members, (unsigned long long)wait);
	} else {
		snprintf(why, len,
			 "node %s is down; waiting for fencing: %zu of %zu members confirm it can "
			 "no longer run guests (a majority is %zu)",
			 node, got, members, need);
	}
}

bool cd_quorum_fenced(struct cd *cd, const struct cl_view *v, const char *node, char *why,
		      size_t len)
{
	const struct cl_node_view *lost = cl_view_node(v, node);
	size_t members = cl_view_members(v);
	bool asked = false;
	struct rel *r;
	uint64_t now;

	/* Whether the lost node may ride is its own setting (its member record), not only
	 * this leader's. */
	if (members < MIN_MEMBERS || !(ride_on(cd) || (lost && lost->member && lost->mem.ride)))
		return true; /* no confirmations anywhere: the lease's expiry is enough */
	r = rel_get(cd->quorum, node);
	if (!r) {
		snprintf(why, len, "node %s is down; waiting for fencing (too many nodes)", node);
		return false;
	}
	if (!r->ready_ns) {
		gather(cd, v, node, r, members, why, len);
		asked = true;
	}
	now = boottime_ns(); /* after the asking: no promise left open means ready now */
	if (r->ready_ns && now >= r->ready_ns && (!asked || r->wait_ms)) {
		/* The wait is over: ask once more, right before the move. Releases gathered for
		 * an earlier loss of the node (it came back since, unseen by this leader, and may
		 * have been confirmed again) do not stand for this one: only a majority with no
		 * promise to it still open now counts. */
		r->ready_ns = 0;
		gather(cd, v, node, r, members, why, len);
		now = boottime_ns();
	}
	if (r->ready_ns && now < r->ready_ns) /* the same text each round: one event */
		snprintf(why, len,
			 "node %s is down; waiting for fencing: released by a majority, whose "
			 "last confirmations to it held %u ms more",
			 node, r->wait_ms);
	return r->ready_ns && now >= r->ready_ns;
}

/* ---- life ------------------------------------------------------------------------------- */

int cd_quorum_start(struct cd *cd, char *err, size_t errlen)
{
	struct cd_quorum *q = calloc(1, sizeof(*q));
	int rc;

	if (!q)
		return -ENOMEM;
	pthread_mutex_init(&q->mu, NULL);
	q->hold_ns = (cd->cfg->lease_ttl_s * 1000ull + cd->cfg->fence_margin_ms) * NS_PER_MS;
	cd->quorum = q;
	cache_load(cd);
	promises_load(cd);
	rc = cd_peer_start(cd, answer, err, errlen);
	if (rc)
		return rc;
	rc = -pthread_create(&q->ride, NULL, ride_main, cd);
	if (rc) {
		snprintf(err, errlen, "cannot start the ride-through thread");
		return rc;
	}
	q->ride_started = true;
	return 0;
}

void cd_quorum_stop(struct cd *cd)
{
	struct cd_quorum *q = cd->quorum;

	if (!q)
		return;
	atomic_store(&q->quit, true);
	if (q->ride_started)
		pthread_join(q->ride, NULL);
	cd_peer_stop(cd);
	pthread_mutex_destroy(&q->mu);
	free(q);
	cd->quorum = NULL;
}
