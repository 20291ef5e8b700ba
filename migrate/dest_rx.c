/* The destination's page channels: a thread each, taking page records until the
 * channel's final round ends — into guest memory in place (pre-copy), or a page at a time
 * through a function (post-copy). */
#include "dest_priv.h"
#include "proto.h"

#include <errno.h>
#include <stdlib.h>

int mig_rx_run(struct rx_channel *ch)
{
	uint8_t *scratch = malloc(MIG_BATCH_PAGES * sizeof(uint64_t));
	/* A page at a time (post-copy), or runs of pages to place (pre-copy). */
	uint8_t *page = ch->page_fn || ch->place ? malloc(MIG_RUN_PAGES * VM_PAGE_SIZE) : NULL;

	if ((ch->page_fn || ch->place) && !page)
		ch->err = -ENOMEM;
	while (!ch->err && scratch) {
		uint32_t type, len;
		int64_t n;
		uint8_t *payload = NULL;

		ch->err = mig_rec_recv_header(ch->conn, &type, &len);
		if (ch->err)
			break;
		ch->bytes += len + 8ull;
		if (type == REC_PAGES) {
			n = ch->page_fn ? mig_batch_recv_each(ch->conn, ch->vm, len, scratch, page,
							      ch->page_fn, ch->page_arg)
					: mig_batch_recv(ch->conn, ch->vm, ch->track, ch->place,
							 len, &ch->zero, scratch, page);
			ch->err = n < 0 ? (int)n : 0;
			ch->pages += n > 0 ? (uint64_t)n : 0;
			continue;
		}
		payload = len ? malloc(len) : NULL;
		ch->err = len && (!payload || net_tls_read_full(ch->conn, payload, len)) ? -EIO : 0;
		Cme__MigRoundEnd *e = !ch->err && type == REC_ROUND_END
					      ? PB_UNPACK(cme__mig_round_end__unpack, len, payload)
					      : NULL;
		bool final = e && e->final;

		if (!e && !ch->err)
			ch->err = -EPROTO;
		if (e)
			atomic_fetch_add(&ch->rounds, 1);
		if (e)
			cme__mig_round_end__free_unpacked(e, NULL);
		free(payload);
		if (final)
			break;
	}
	if (!scratch)
		ch->err = -ENOMEM;
	free(scratch);
	free(page);
	return ch->err;
}

/* A page channel until its final round ends. */
static void *rx_thread(void *arg)
{
	struct rx_channel *ch = arg;

	sandbox_enter(SANDBOX_MIGRATION); /* it parses what the peer sends */
	mig_rx_run(ch);
	mig_track_writer_done(ch->track);
	if (ch->err && ch->fail_fn)
		ch->fail_fn(ch->page_arg, ch->err);
	else if (ch->err)
		net_tls_shutdown(ch->ctl); /* the source is gone: stop waiting for it */
	atomic_store(&ch->done, true);
	return NULL;
}

int mig_rx_start(struct rx_channel *ch)
{
	int rc = pthread_create(&ch->thread, NULL, rx_thread, ch);

	ch->started = rc == 0;
	return -rc;
}

int mig_in_join(struct mig_dest *c)
{
	int err = 0;

	for (unsigned i = 0; i < c->nch; i++) {
		if (c->ch[i].started)
			pthread_join(c->ch[i].thread, NULL);
		c->ch[i].started = false;
		if (c->ch[i].err && !err)
			err = c->ch[i].err;
	}
	return err;
}
