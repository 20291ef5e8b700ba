/* store — the backup store: a directory (local, NFS, any mounted file system) of
 * content-addressed, encrypted chunks and one manifest per backup (README "Backups").
 *
 *   STORE/store.json        {"format":"cme-store-1","chunk_size":N,"key_check":HEX,...}
 *   STORE/chunks/XX/ID      one chunk: "CMECHNK1", a 24-byte nonce, then its bytes sealed
 *                           with XChaCha20-Poly1305 (associated data: the ID)
 *   STORE/backups/VM/BID    one backup's manifest: "CMEMANI1", a nonce, then its JSON
 *                           sealed the same way (associated data: "VM/BID")
 *   STORE/.tmp/             what is being written; renamed into place once complete
 *
 * A chunk's ID is the keyed BLAKE2b-256 of its bytes (64 hex digits; XX its first two), so
 * equal chunks are stored once, and a name says nothing of its content to whoever lacks
 * the key. Every key is derived from one store key (a key file, common.h) that never has
 * to leave the operator's hosts: the store itself holds only ciphertext and a key check,
 * so a wrong key is told from a damaged store. A chunk read is authenticated and hashed
 * again; a manifest is written last, atomically, after the chunks it names are on disk:
 * an interrupted backup is never listed. All-zero chunks are not stored (their ID is all
 * zeros). Safe for concurrent readers and writers of different backups; prune removes
 * only chunks no manifest names that nobody wrote or reused within its grace period. */
#ifndef CME_STORE_H
#define CME_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

#define STORE_ID_BYTES	    32
#define STORE_ID_HEX	    (2 * STORE_ID_BYTES)
#define STORE_CHUNK_DEFAULT (256u << 10)
#define STORE_CHUNK_MAX	    (16u << 20)
#define STORE_NAME_MAX	    64 /* a VM's name, a backup's ID, an area's name */
#define STORE_AREAS_MAX	    16
#define STORE_SEAL_OVERHEAD (8 + 24 + 16) /* magic, nonce, tag */

struct store;

struct store_id {
	uint8_t b[STORE_ID_BYTES]; /* all zero: a chunk of zeros, not stored */
};

/* Make a new, empty store in dir (created if missing; it must not hold a store already).
 * chunk_size: a power of two from 4 KiB to STORE_CHUNK_MAX. 0 or -errno, reason in err. */
int store_create(const char *dir, const uint8_t key[KEY_FILE_BYTES], uint32_t chunk_size, char *err,
		 size_t len) CME_WUR;
/* Open the store in dir with its key: -ENOENT "not a store", -EKEYREJECTED for a wrong
 * key, -EINVAL for a damaged store.json. The caller closes *out. */
int store_open(const char *dir, const uint8_t key[KEY_FILE_BYTES], struct store **out, char *err,
	       size_t len) CME_WUR;
void store_close(struct store *s);
uint32_t store_chunk_size(const struct store *s);
const char *store_dir(const struct store *s);

/* A chunk's ID (all zeros for all-zero data). Thread-safe. */
void store_chunk_id(const struct store *s, const void *data, size_t len, struct store_id *id);
bool store_id_is_zero(const struct store_id *id);
void store_id_hex(const struct store_id *id, char out[STORE_ID_HEX + 1]);
int store_id_parse(const char *hex, struct store_id *id) CME_WUR;
/* Store data (len bytes, ≤ the chunk size) under id unless a chunk of that ID and size is
 * there already (then only its time is touched, for prune's grace). *added says which.
 * Not durable until store_sync(). Thread-safe. 0 or -errno, reason in err. */
int store_chunk_put(struct store *s, const struct store_id *id, const void *data, size_t len,
		    bool *added, char *err, size_t errlen) CME_WUR;
/* Read chunk id, which must be len bytes, into buf: decrypted, authenticated and its ID
 * computed again. -ENOENT missing, -EBADMSG damaged or not of this store (the reason names
 * the chunk). Thread-safe. */
int store_chunk_get(struct store *s, const struct store_id *id, void *buf, size_t len, char *err,
		    size_t errlen) CME_WUR;
/* The store's lock (STORE/.lock, flock): shared while a backup writes or a restore reads,
 * exclusive while prune removes chunks — so a chunk a backup in progress found present is
 * never collected under it. Returns the lock's descriptor (store_unlock releases it), or
 * -EBUSY (not wait: taken the other way), -errno. */
int store_lock(struct store *s, bool exclusive, bool wait) CME_WUR;
void store_unlock(int fd);
/* Everything written so far on stable storage (syncfs). 0 or -errno. */
int store_sync(struct store *s) CME_WUR;

/* ---- manifests (manifest.c) ---------------------------------------------------------- */

/* One run of backed-up bytes: a slot of guest RAM ("ram0" at base = its guest physical
 * address), the VM state ("state"), a disk ("disk0" ...), cut into chunks. */
struct store_area {
	char name[STORE_NAME_MAX];
	uint64_t base, size;
	uint64_t nchunks; /* ceil(size / chunk size) */
	struct store_id *chunks;
};

struct store_manifest {
	char vm[STORE_NAME_MAX];
	char id[STORE_NAME_MAX];     /* the backup's ID: its UTC time, 20261207T193012.345Z */
	char parent[STORE_NAME_MAX]; /* the backup it was incremental to ("" none) */
	uint64_t created_ms, mem_bytes;
	unsigned vcpus;
	uint32_t chunk_size;
	char measurement[2 * MEASURE_BYTES + 1]; /* the guest's boot measurement ("" none) */
	unsigned nareas;
	struct store_area areas[STORE_AREAS_MAX];
	/* What writing it cost: chunks written, found already stored, all zero; their bytes. */
	uint64_t new_chunks, reused_chunks, zero_chunks, new_bytes, stored_bytes;
	uint64_t pause_ms, total_ms, rounds;
};

/* Add an area of size bytes to m (chunks all zero). 0, -E2BIG (too many), -ENOMEM. */
int store_area_add(struct store_manifest *m, const char *name, uint64_t base,
		   uint64_t size) CME_WUR;
const struct store_area *store_area_find(const struct store_manifest *m, const char *name);
/* Bytes of chunk idx of a, cut into chunks of chunk_size (the last may be shorter). */
size_t store_chunk_len(const struct store_area *a, uint64_t idx, uint32_t chunk_size);
void store_manifest_free(struct store_manifest *m);
/* A fresh backup ID from the wall clock. */
void store_backup_id(char out[STORE_NAME_MAX]);
/* True when name can be a VM's name or a backup ID in a store (no '/', no leading '.'). */
bool store_name_ok(const char *name);

/* Write m as backup m->vm/m->id, after store_sync(), atomically: a manifest is complete or
 * absent. -EEXIST when that backup exists. 0 or -errno, reason in err. */
int store_manifest_write(struct store *s, const struct store_manifest *m, char *err,
			 size_t len) CME_WUR;
/* Read backup vm/id into *m (freed with store_manifest_free). -ENOENT no such backup,
 * -EBADMSG truncated, tampered or not of this store. */
int store_manifest_read(struct store *s, const char *vm, const char *id, struct store_manifest *m,
			char *err, size_t len) CME_WUR;
/* "VM/ID" (or "VM" alone: its newest backup) into vm and id. 0, -EINVAL, -ENOENT. */
int store_ref_parse(struct store *s, const char *ref, char vm[STORE_NAME_MAX],
		    char id[STORE_NAME_MAX], char *err, size_t len) CME_WUR;

/* ---- listing, verifying, pruning (prune.c) ------------------------------------------- */

struct store_entry {
	char vm[STORE_NAME_MAX], id[STORE_NAME_MAX];
};

/* The backups of vm (NULL: all VMs), oldest first per VM. *out is malloc'd. 0 or -errno. */
int store_list(struct store *s, const char *vm, struct store_entry **out, size_t *n, char *err,
	       size_t len) CME_WUR;

struct store_verify_result {
	uint64_t chunks, bytes; /* read and checked */
	uint64_t bad;		/* missing or damaged */
	char first_bad[512];	/* the first one's reason, naming the chunk */
};
/* Read and re-hash every chunk m names. 0 (r->bad == 0), -EBADMSG, or -errno. */
int store_verify(struct store *s, const struct store_manifest *m, struct store_verify_result *r);

struct store_prune_result {
	uint64_t backups_removed, chunks_removed, bytes_freed, chunks_kept;
	bool gc_skipped; /* a backup or restore held the store: chunks are collected next time */
};
/* Keep the newest keep backups of vm (NULL: of each VM; keep 0: no limit by count) and
 * those younger than max_age_ms (0: no limit by age) — at least one always stays — then,
 * holding the store's lock exclusively (skipped, *r->gc_skipped, while a backup or
 * restore holds it), remove chunks no manifest names, unless written or reused within
 * grace_ms. 0 or -errno, reason in err. */
int store_prune(struct store *s, const char *vm, unsigned keep, uint64_t max_age_ms,
		uint64_t grace_ms, struct store_prune_result *r, char *err, size_t len) CME_WUR;

/* ---- copying to a second store (sync.c) ---------------------------------------------- */

struct store_sync_result {
	uint64_t backups_copied, backups_present; /* present: the other store had it */
	uint64_t chunks_copied, chunks_present;
	uint64_t bytes; /* copied */
};
/* Copy backup vm/id from src to dst (opened with the same key, so of the same chunk
 * size): the chunks dst lacks, then the manifest, each synced. A backup dst has already
 * is left alone. Accumulates into *r. 0 or -errno, reason in err. */
int store_sync_backup(struct store *src, struct store *dst, const char *vm, const char *id,
		      struct store_sync_result *r, char *err, size_t len) CME_WUR;

#endif
