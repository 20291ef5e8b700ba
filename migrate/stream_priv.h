/* The migration stream: framed records on a TLS connection. A record is a header
 * {u32 type, u32 length} (little-endian) and length bytes of payload. Control records are
 * protobuf-c messages (proto/migration.proto); page records are raw:
 *   u32 count, u32 reserved, count x u64 (guest physical address | flags),
 *   then 4096 bytes for every entry without MIG_PAGE_ZERO, in entry order. */
#ifndef CME_STREAM_PRIV_H
#define CME_STREAM_PRIV_H

#include <protobuf-c/protobuf-c.h>
#include <stdatomic.h>

#include "migrate.h"
#include "migration.pb-c.h"
#include "net.h"

enum rec_type {
	REC_HELLO = 1,
	REC_WELCOME,
	REC_CHANNEL_HELLO,
	REC_PAGES,
	REC_ROUND_END,
	REC_SWITCHOVER,
	REC_READY,
	REC_COMMIT,
	REC_ACK,
	REC_ABORT,
	REC_PAGE_REQ,	   /* post-copy, destination -> source: u64 guest addresses */
	REC_POSTCOPY_DONE, /* post-copy: MigPostcopyDone */
	REC_PC_DROP,	   /* before a post-copy switch: MigPostcopyDrop */
	REC_PC_DROPPED,	   /* its answer: MigPostcopyDropped */
	REC_TYPES_END,	   /* not a record: one past the last */
};

#define REC_MAX_LEN                                                                                \
	(64u << 20)		      /* SWITCHOVER: the state of 64 vCPUs and the stale map of
				     * 64 GiB fit many times over */
#define REC_MAX_CTL	(1u << 20)    /* any other record but pages */
#define MIG_PAGE_ZERO	0x1ull	      /* flag in the low bits of a page address */
#define MIG_BATCH_PAGES 256	      /* pages per record: 1 MiB of data */
#define MIG_LINK_RATE	1250000000ull /* bytes/s the page channels' buffers are sized for */

/* Send one protobuf message as a record. Returns 0 or -errno. */
int mig_rec_send_msg(struct tls_conn *c, uint32_t type, const ProtobufCMessage *msg) CME_WUR;
/* Send one record of raw bytes. Returns 0 or -errno. */
int mig_rec_send_raw(struct tls_conn *c, uint32_t type, const void *buf, uint32_t len) CME_WUR;
/* Receive one record: *payload is malloc'd (caller frees; NULL when empty). Refuses
 * lengths over REC_MAX_LEN (-EPROTO). Returns 0, -EPIPE on EOF, or -errno. */
int mig_rec_recv(struct tls_conn *c, uint32_t *type, uint8_t **payload, uint32_t *len) CME_WUR;
/* Receive the header of the next record only (for page records read in place). */
int mig_rec_recv_header(struct tls_conn *c, uint32_t *type, uint32_t *len) CME_WUR;
/* The text of an ABORT payload (or a fallback), into buf. */
void mig_rec_abort_reason(const uint8_t *payload, uint32_t len, char *buf, size_t buflen);
/* Send ABORT with a reason (best effort). */
void mig_rec_send_abort(struct tls_conn *c, const char *reason);
/* A page channel's socket buffers: enough for 10 Gbit/s over its round trip and no more.
 * What sits in them when the guest pauses is what the destination must still take in the
 * pause (4 MiB each way made 17-33 ms of a 35-39 ms downtime here; 1 MiB, 4 ms). */
void mig_fit_buffers(struct tls_conn *c);

/* A batch of pages being assembled for one page record. */
struct page_batch {
	uint32_t count;
	uint64_t addr[MIG_BATCH_PAGES];
	uint8_t *data; /* MIG_BATCH_PAGES * 4096 staging buffer */
	uint32_t data_pages;
};

int mig_batch_init(struct page_batch *b) CME_WUR;
void mig_batch_free(struct page_batch *b);
/* Add a page (copied now: the caller has just cleared its dirty bit). */
void mig_batch_add(struct page_batch *b, uint64_t gpa, const uint8_t *page);
bool mig_batch_full(const struct page_batch *b);
/* Send the batch as one record and empty it. Returns bytes sent, or -errno. */
int64_t mig_batch_send(struct tls_conn *c, struct page_batch *b) CME_WUR;

/* dest_place.c: pre-copy pages placed with userfaultfd (UFFDIO_COPY allocates a page and
 * fills it in one step, where a write would fault and zero it first). */
struct mig_place;
#define MIG_RUN_PAGES 64 /* pages placed in one call at most */
/* Register vm's RAM (missing pages) and start the thread that answers any other touch of
 * a missing page with zeros. Returns 0 with *out, or -errno (then write in place). */
int mig_place_start(struct vm *vm, struct mig_place **out) CME_WUR;
/* Place pages (contiguous in guest memory at hva) from src: new ones allocated and filled,
 * ones already there copied over. Returns 0 or -errno. */
int mig_place_copy(struct mig_place *pl, uint8_t *hva, const uint8_t *src, uint32_t pages) CME_WUR;
/* Map the zero page at hva if nothing is there; false when a page is there already. */
bool mig_place_zero(struct mig_place *pl, uint8_t *hva);
/* Stop the thread and unregister (the kernel's own faults again). NULL ok. */
void mig_place_stop(struct mig_place *pl);

struct mig_track; /* dest_digest.c, below */
/* Receive a page record's payload of len bytes into guest memory, checking every address
 * against the VM: with pl, runs of up to MIG_RUN_PAGES through run (that many pages of
 * buffer) and mig_place_copy; without, straight into place. Every page written (zero pages
 * too) is marked in track (NULL: none) once its bytes are in. Returns the pages received,
 * or -errno (-EPROTO; -ERANGE for a page outside guest RAM). */
int64_t mig_batch_recv(struct tls_conn *c, struct vm *vm, struct mig_track *track,
		       struct mig_place *pl, uint32_t len, uint64_t *zero, uint8_t *scratch,
		       uint8_t *run) CME_WUR;

/* The same record taken one page at a time through page (4096 bytes), for memory that must
 * not be written in place (post-copy): fn(arg, gpa, data) for each entry, data NULL for a
 * zero page, once the address is checked against vm. Returns the pages, or -errno (-EPROTO,
 * or fn's own error). */
typedef int (*mig_page_fn)(void *arg, uint64_t gpa, const uint8_t *data);
int64_t mig_batch_recv_each(struct tls_conn *c, struct vm *vm, uint32_t len, uint8_t *scratch,
			    uint8_t *page, mig_page_fn fn, void *arg) CME_WUR;

/* digest.c: the digest of all guest RAM (zero pages excluded, so untouched memory costs
 * no hashing): the sum mod 2^128 of XXH3-128(page, seed = address) over non-zero pages, kept
 * as a sum per chunk of 64 pages (chunks count across slots; a slot's tail short of a chunk
 * is left out). Sums are 16 bytes, little-endian. */
#define MIG_DIGEST_BYTES       16
#define MIG_SUM_BYTES	       16
#define MIG_DIGEST_CHUNK_PAGES 64 /* 256 KiB */
#define MIG_TOUCHED_MAX	       512
/* acc += other. */
void mig_digest_add(uint8_t acc[MIG_SUM_BYTES], const uint8_t other[MIG_SUM_BYTES]);
/* acc += the page's hash (nothing for a zero page). */
void mig_digest_page(uint8_t acc[MIG_SUM_BYTES], uint64_t gpa, const uint8_t *page);
/* Which of the n (<= MIG_TOUCHED_MAX) pages at base were ever touched: res[i] = 1 when in
 * RAM or swapped out (from /proc/self/pagemap; without it mincore; without that, all). */
void mig_touched_pages(const uint8_t *base, unsigned n, unsigned char *res);
/* The digest on `threads` threads (1..8). Returns 0 or -ENOMEM. */
int mig_ram_digest(struct vm *vm, unsigned threads, uint8_t out[MIG_DIGEST_BYTES]) CME_WUR;
uint64_t mig_digest_nr_chunks(struct vm *vm);
/* Hash chunk c into out (the VM's memory must not change meanwhile, or the chunk must be
 * hashed again), and each of its pages into pages[its number over all slots] (NULL: not
 * kept). Gives up, returning false with out undefined, once *stop (NULL: never) is seen
 * set; true when done. */
bool mig_digest_chunk(struct vm *vm, uint64_t c, const atomic_bool *stop,
		      uint8_t out[MIG_SUM_BYTES], uint8_t (*pages)[MIG_SUM_BYTES]);
/* Hash into sums every chunk whose mark is set (clearing it first; all chunks when mark is
 * NULL) on `threads` threads, then (out not NULL) out = the hash of all nr_chunks sums. */
void mig_digest_chunks(struct vm *vm, unsigned threads, _Atomic uint32_t *mark,
		       uint8_t (*sums)[MIG_SUM_BYTES], uint8_t (*pages)[MIG_SUM_BYTES],
		       uint64_t nr_chunks, uint8_t out[MIG_DIGEST_BYTES]);

/* dest_digest.c: the destination's digest kept up to date while pages arrive. Its guest
 * does not run before the commit, so its memory changes only where it is written here:
 * every writer marks the chunk of each page after writing it, and a background thread
 * re-hashes a chunk once it has been quiet for a while (at once when every writer is done),
 * clearing the mark before reading. At switchover only the chunks still marked are hashed.
 * A write to guest memory that is not marked would go unseen by the digest. */
/* Track vm's chunks; vm must be new (all its memory zero: no chunk marked to start with);
 * writers: how many will call mig_track_writer_done. Returns 0 with *out (free with
 * mig_track_free), or -errno. */
int mig_track_new(struct vm *vm, unsigned writers, struct mig_track **out) CME_WUR;
/* Start the background hasher. Without it (-errno) the switchover hashes every chunk. */
int mig_track_start(struct mig_track *t) CME_WUR;
/* The page at gpa was written (call after the write; any thread). NULL t: nothing. */
void mig_track_mark(struct mig_track *t, uint64_t gpa);
/* A writer will write no more: once all are done the hasher stops waiting for quiet. */
void mig_track_writer_done(struct mig_track *t);
struct mig_track_counts {
	uint64_t chunks;     /* in the VM */
	uint64_t background; /* hashed by the background thread (some more than once) */
	uint64_t final;	     /* still marked for the last mig_track_digest */
};
/* Every writer has stopped: stop the hasher, hash what is still marked on `threads`
 * threads, and give the digest (the same as mig_ram_digest's) and what it took. May be
 * called again after more marks. */
void mig_track_digest(struct mig_track *t, unsigned threads, uint8_t out[MIG_DIGEST_BYTES],
		      struct mig_track_counts *n);
/* Post-copy's switch, every writer done: stop the hasher, then take the page at gpa out
 * of the digest as it is dropped (its hash subtracted where its chunk's sum is current;
 * a chunk still marked is hashed whole at the end anyway). Call before dropping it. */
void mig_track_stop(struct mig_track *t);
void mig_track_forget(struct mig_track *t, uint64_t gpa);
/* Stop the hasher and free. NULL ok. */
void mig_track_free(struct mig_track *t);

#endif
