/* backup — live backup of a running VM into a backup store (store/), and restore from one.
 *
 * A backup is a pre-copy, like a live migration's, with the store as its destination: the
 * guest runs while every chunk of its RAM is copied, hashed, and written unless the store
 * holds it already (so a second backup writes only what changed); rounds over KVM's dirty
 * log follow until what is left is small; then the guest pauses only to copy the chunks
 * still dirty and its state into memory of the VMM's own, and runs again at once — the
 * hashing, encryption and writing of those happen after. The manifest is written last.
 * Restoring reads and authenticates every chunk before the state is applied. */
#ifndef CME_BACKUP_H
#define CME_BACKUP_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "hypervisor.h"

struct backup_params {
	const char *store;	     /* the store's folder */
	uint8_t key[KEY_FILE_BYTES]; /* the store's key */
	const char *name;	     /* the VM's name in the store */
	uint64_t pause_ms;	     /* aim for a pause this short (default 50) */
	unsigned max_rounds;	     /* pause after this many rounds anyway (default 8) */
};

enum backup_phase {
	BACKUP_COPY,  /* rounds while the guest runs */
	BACKUP_PAUSE, /* the guest paused: the last chunks and the state copied */
	BACKUP_WRITE, /* the guest runs; what the pause copied is written */
	BACKUP_DONE,  /* the manifest is written: the backup is complete */
	BACKUP_FAILED,
};

struct backup_stats {
	char id[64]; /* the backup's ID in the store */
	char parent[64];
	uint64_t total_ms, pause_ms, rounds;
	uint64_t chunks, new_chunks, reused_chunks, zero_chunks;
	uint64_t new_bytes;	/* bytes of chunks written (before sealing) */
	uint64_t mem_bytes;	/* guest RAM backed up */
	double throughput_mbps; /* MiB/s of guest RAM read over the whole backup */
};

struct backup_progress {
	enum backup_phase phase;
	unsigned round;
	uint64_t chunks_done;
	char error[512];
	struct backup_stats stats; /* final when BACKUP_DONE */
};

struct backup;

const char *backup_phase_name(enum backup_phase p);
/* Begin backing up vm (running or paused; left as it was) in a thread of its own. The
 * store is opened here: a missing store or wrong key fails now. 0 with *out, or -errno
 * with the reason in err (-EBUSY: the dirty log is in use, by a migration). */
int backup_start(struct vm *vm, const struct backup_params *p, struct backup **out, char *err,
		 size_t len) CME_WUR;
void backup_get_progress(struct backup *b, struct backup_progress *out);
bool backup_finished(struct backup *b);
/* Ask it to stop: no backup is listed, the guest runs on. */
void backup_cancel(struct backup *b);
/* Wait for the thread and free (cancels it first unless finished). NULL is ignored. */
void backup_free(struct backup *b);

struct backup_restore_stats {
	uint64_t ms, chunks, bytes; /* lazy: ms to a VM ready to start; chunks read so far */
	char vm[64], id[64];
};

/* A lazy restore's memory, brought in behind the running guest. */
struct backup_lazy;
/* Create a VM (not started) from backup ref ("VM/ID", or "VM": its newest) of the store in
 * dir. cfg as for vm_snapshot_restore (its mem_bytes and nr_vcpus, when set, must match
 * the backup's). Eager (lazy NULL): every chunk read and authenticated before the state
 * is applied. Lazy: only the state is read now; the memory comes in behind the guest
 * (*lazy, which the caller frees with backup_lazy_free before vm_destroy). 0 with *out,
 * or -errno with the one-line reason in err; nothing is left behind. */
int backup_restore(const char *dir, const uint8_t key[KEY_FILE_BYTES], const char *ref,
		   const struct vm_config *cfg, struct vm **out, struct backup_restore_stats *st,
		   struct backup_lazy **lazy, char *err, size_t len) CME_WUR;
/* Stop bringing memory in and release it all (NULL is ignored). */
void backup_lazy_free(struct backup_lazy *lz);
/* True (the reason in buf) when a chunk could not be brought in: the VM was stopped. */
bool backup_lazy_error(struct backup_lazy *lz, char *buf, size_t len);
/* Start to the last chunk in, in ms (0 while some are still out). */
uint64_t backup_lazy_done_ms(struct backup_lazy *lz);

#endif
