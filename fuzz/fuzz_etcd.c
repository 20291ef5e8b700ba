/* etcd's answers as the client reads them: the first byte picks what. Even: a watch
 * stream (JSON lines from the gateway, as etcd_watch's reader takes them), handed over in
 * chunks of a size the second byte picks, from a start revision the third picks; the
 * events delivered must be the same as when the whole stream comes in one piece, never
 * older than the start, in revision order (progress notifications included: none is
 * followed by a change it said was delivered), and the position a reconnect would resume
 * from never behind the start. Odd: a range response (etcd_json_kvs), whose every entry
 * has a key and a value ending in the NUL the decoder promises after its length. */
#include "etcd_priv.h"
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#define MAX_EVENTS 64

struct seen {
	unsigned n;
	struct {
		int type;
		int64_t rev;
		uint64_t key; /* FNV-1a of the key */
	} ev[MAX_EVENTS];
};

static uint64_t fnv(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
	return h;
}

static int on_event(void *opaque, const struct etcd_event *ev)
{
	struct seen *s = opaque;

	if (s->n < MAX_EVENTS) {
		s->ev[s->n].type = (int)ev->type;
		s->ev[s->n].rev = ev->rev;
		s->ev[s->n].key = ev->kv && ev->kv->key ? fnv(ev->kv->key, strlen(ev->kv->key)) : 0;
	}
	s->n++;
	return 0;
}

static void watch_stream(const uint8_t *data, size_t size)
{
	struct seen whole = { 0 }, cut = { 0 };
	size_t chunk = size > 1 ? (size_t)(data[1] % 32) + 1 : 1;
	int64_t start = size > 2 ? data[2] % 8 : 0, rev_whole, rev_cut, last = 0;
	const char *txt = (const char *)data + (size > 3 ? 3 : size);
	size_t len = size > 3 ? size - 3 : 0;
	int st_whole =
		etcd_watch_read(txt, len, len ? len : 1, start, on_event, &whole, &rev_whole);
	int st_cut = etcd_watch_read(txt, len, chunk, start, on_event, &cut, &rev_cut);

	if (st_whole != st_cut || rev_whole != rev_cut || whole.n != cut.n ||
	    memcmp(whole.ev, cut.ev, sizeof(whole.ev)))
		abort(); /* the stream's cut into pieces changed what it delivered */
	if (rev_whole < start)
		abort(); /* a reconnect would go back before the start */
	for (unsigned i = 0; i < whole.n && i < MAX_EVENTS; i++) {
		bool progress = whole.ev[i].type == ETCD_EV_PROGRESS;

		if ((!progress && start && whole.ev[i].rev < start) || whole.ev[i].rev < last)
			abort(); /* older than asked for, or out of revision order */
		/* after a progress notification at P every change up to P was delivered */
		last = progress ? whole.ev[i].rev + 1 : whole.ev[i].rev;
	}
}

static void range_response(const uint8_t *data, size_t size)
{
	json_t *j = json_loadb((const char *)data + 1, size - 1, 0, NULL);
	struct etcd_kvs kvs = { 0 };

	if (j && etcd_json_kvs(j, &kvs) == 0) {
		for (size_t i = 0; i < kvs.n; i++)
			if (!kvs.kv[i].key || !kvs.kv[i].val || kvs.kv[i].val[kvs.kv[i].vlen])
				abort(); /* a key, and a value with the NUL after its length */
		etcd_kvs_free(&kvs);
	}
	json_decref(j);
}

int fuzz_etcd(const uint8_t *data, size_t size)
{
	if (!size)
		return 0;
	if (data[0] % 2 == 0)
		watch_stream(data, size);
	else
		range_response(data, size);
	return 0;
}
