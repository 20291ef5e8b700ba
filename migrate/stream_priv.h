/* The migration stream: framed records on a TLS connection. A record is a header
 * {u32 type, u32 length} (little-endian) and length bytes of payload. Control records are
 * protobuf-c messages (proto/migration.proto); page records are raw:
 *   u32 count, u32 reserved, count x u64 (guest physical address | flags),
 *   then 4096 bytes for every entry without MIG_PAGE_ZERO, in entry order. */
#ifndef CME_STREAM_PRIV_H
#define CME_STREAM_PRIV_H

#include <protobuf-c/protobuf-c.h>

#include "migrate.h"
#include "migration.pb-c.h"
#include "tls_priv.h"

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
};

#define REC_MAX_LEN	(256u << 20) /* the VM state of 32 vCPUs fits many times over */
#define MIG_PAGE_ZERO	0x1ull	     /* flag in the low bits of a page address */
#define MIG_BATCH_PAGES 256	     /* pages per record: 1 MiB of data */

/* Send one protobuf message as a record. Returns 0 or -errno. */
int rec_send_msg(struct tls_conn *c, uint32_t type, const ProtobufCMessage *msg) CME_WUR;
/* Receive one record: *payload is malloc'd (caller frees; NULL when empty). Refuses
 * lengths over REC_MAX_LEN (-EPROTO). Returns 0, -EPIPE on EOF, or -errno. */
int rec_recv(struct tls_conn *c, uint32_t *type, uint8_t **payload, uint32_t *len) CME_WUR;
/* Receive the header of the next record only (for page records read in place). */
int rec_recv_header(struct tls_conn *c, uint32_t *type, uint32_t *len) CME_WUR;
/* The text of an ABORT payload (or a fallback), into buf. */
void rec_abort_reason(const uint8_t *payload, uint32_t len, char *buf, size_t buflen);
/* Send ABORT with a reason (best effort). */
void rec_send_abort(struct tls_conn *c, const char *reason);

/* A batch of pages being assembled for one page record. */
struct page_batch {
	uint32_t count;
	uint64_t addr[MIG_BATCH_PAGES];
	uint8_t *data; /* MIG_BATCH_PAGES * 4096 staging buffer */
	uint32_t data_pages;
};

int page_batch_init(struct page_batch *b) CME_WUR;
void page_batch_free(struct page_batch *b);
/* Add a page (copied now: the caller has just cleared its dirty bit). */
void page_batch_add(struct page_batch *b, uint64_t gpa, const uint8_t *page);
bool page_batch_full(const struct page_batch *b);
/* Send the batch as one record and empty it. Returns bytes sent, or -errno. */
int64_t page_batch_send(struct tls_conn *c, struct page_batch *b) CME_WUR;
/* Receive a page record's payload of len bytes straight into guest memory, checking
 * every address against the VM. Returns the pages received, or -errno (-EPROTO: bad). */
int64_t page_batch_recv(struct tls_conn *c, struct vm *vm, uint32_t len, uint64_t *zero,
			uint8_t *scratch) CME_WUR;

/* digest.c: BLAKE2b-256 of all guest RAM (zero pages excluded, so untouched memory costs
 * no hashing), computed on `threads` threads in 2 MiB chunks. */
#define MIG_DIGEST_BYTES 32
int mig_ram_digest(struct vm *vm, unsigned threads, uint8_t out[MIG_DIGEST_BYTES]) CME_WUR;

#endif
