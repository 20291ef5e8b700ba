/* Snapshot files: a header, the packed VM state, the non-zero memory pages in runs, and a
 * BLAKE2b checksum of everything before it.
 *
 *   header   64 bytes: "CMESNAP\0", u32 version, u32 header size, u64 mem_bytes,
 *            u32 vcpus, u32 reserved, u64 state_len, u64 created_ms, 16 reserved
 *   state    state_len bytes: VmState (proto/vmstate.proto)
 *   memory   records {u64 gpa, u64 npages} + npages * 4096 bytes; ends with {~0, 0}
 *   trailer  32 bytes: BLAKE2b-256 of all the above
 *
 * All integers little-endian (the only byte order KVM on x86 has). */
#include "vm_priv.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SUB		 "snapshot"
#define SNAP_MAGIC	 "CMESNAP"
#define SNAP_VERSION	 1
#define SNAP_HASH_BYTES	 32
#define SNAP_STATE_MAX	 (64u << 20)
#define SNAP_CHUNK_PAGES 512 /* 2 MiB scanned at a time */
#define SNAP_BUF	 (1u << 20)
#define SNAP_END	 UINT64_MAX

struct snap_header {
	char magic[8];
	uint32_t version;
	uint32_t header_size;
	uint64_t mem_bytes;
	uint32_t vcpus;
	uint32_t reserved0;
	uint64_t state_len;
	uint64_t created_ms;
	uint8_t reserved[16];
};
_Static_assert(sizeof(struct snap_header) == 64, "snapshot header is 64 bytes");

struct snap_record {
	uint64_t gpa;
	uint64_t npages;
};

/* A file stream that hashes everything it writes or reads. */
struct snap_io {
	int fd;
	crypto_generichash_state hash;
	uint64_t offset;
	uint8_t *buf; /* write buffer */
	size_t len;
};

static int snap_io_init(struct snap_io *io, int fd)
{
	memset(io, 0, sizeof(*io));
	io->fd = fd;
	crypto_generichash_init(&io->hash, NULL, 0, SNAP_HASH_BYTES);
	return 0;
}

static int snap_flush(struct snap_io *io)
{
	int err = io->len ? write_all(io->fd, io->buf, io->len) : 0;

	io->len = 0;
	return err;
}

static int snap_write(struct snap_io *io, const void *p, size_t n)
{
	crypto_generichash_update(&io->hash, p, n);
	io->offset += n;
	if (n >= SNAP_BUF / 2) { /* page runs go straight from guest memory to the file */
		int err = snap_flush(io);

		return err ? err : write_all(io->fd, p, n);
	}
	if (io->len + n > SNAP_BUF) {
		int err = snap_flush(io);

		if (err)
			return err;
	}
	memcpy(io->buf + io->len, p, n);
	io->len += n;
	return 0;
}

static int snap_read(struct snap_io *io, void *p, size_t n)
{
	int err = read_full(io->fd, p, n);

	if (err)
		return err;
	crypto_generichash_update(&io->hash, p, n);
	io->offset += n;
	return 0;
}

/* ---- writing ------------------------------------------------------------------------- */

static int snap_write_run(struct snap_io *io, const struct vm_slot *s, uint64_t first, uint64_t n)
{
	struct snap_record r = { s->gpa + first * VM_PAGE_SIZE, n };
	int err = snap_write(io, &r, sizeof(r));

	return err ? err : snap_write(io, s->hva + first * VM_PAGE_SIZE, n * VM_PAGE_SIZE);
}

/* Pages never touched are not resident (mincore) and are skipped without reading them;
 * resident pages that are all zero are skipped too. */
static int snap_write_chunk(struct snap_io *io, const struct vm_slot *s, uint64_t first,
			    struct vm_snapshot_stats *st)
{
	unsigned char res[SNAP_CHUNK_PAGES];
	uint64_t run = 0, run_start = 0;
	int err = 0;

	if (mincore(s->hva + first * VM_PAGE_SIZE, SNAP_CHUNK_PAGES * VM_PAGE_SIZE, res) < 0)
		memset(res, 1, sizeof(res));
	for (uint64_t i = 0; i < SNAP_CHUNK_PAGES && !err; i++) {
		uint64_t pfn = first + i;
		bool keep = (res[i] & 1) && !mem_is_zero(s->hva + pfn * VM_PAGE_SIZE, VM_PAGE_SIZE);

		if (keep && !run)
			run_start = pfn;
		run += keep;
		st->pages += keep;
		st->zero_pages += !keep;
		if (!keep && run) {
			err = snap_write_run(io, s, run_start, run);
			run = 0;
		}
	}
	return !err && run ? snap_write_run(io, s, run_start, run) : err;
}

static int snap_write_memory(struct vm *vm, struct snap_io *io, struct vm_snapshot_stats *st)
{
	struct snap_record end = { SNAP_END, 0 };
	int err = 0;

	for (unsigned i = 0; i < vm->nr_slots && !err; i++) {
		const struct vm_slot *s = &vm->slots[i];

		for (uint64_t p = 0; p < s->size / VM_PAGE_SIZE && !err; p += SNAP_CHUNK_PAGES)
			err = snap_write_chunk(io, s, p, st);
	}
	return err ? err : snap_write(io, &end, sizeof(end));
}

static int snap_write_all(struct vm *vm, struct snap_io *io, const uint8_t *state, size_t state_len,
			  struct vm_snapshot_stats *st)
{
	struct snap_header h = {
		.magic = SNAP_MAGIC,
		.version = SNAP_VERSION,
		.header_size = sizeof(h),
		.mem_bytes = vm->cfg.mem_bytes,
		.vcpus = vm->cfg.nr_vcpus,
		.state_len = state_len,
		.created_ms = wall_ms(),
	};
	uint8_t sum[SNAP_HASH_BYTES];
	int err = snap_write(io, &h, sizeof(h));

	if (!err)
		err = snap_write(io, state, state_len);
	if (!err)
		err = snap_write_memory(vm, io, st);
	if (err)
		return err;
	crypto_generichash_final(&io->hash, sum, sizeof(sum));
	err = snap_write(io, sum, sizeof(sum));
	if (!err)
		err = snap_flush(io);
	if (!err && fdatasync(io->fd) < 0)
		err = -errno;
	st->bytes = io->offset;
	return err;
}

int vm_snapshot_write(struct vm *vm, const char *path, struct vm_snapshot_stats *st, char *err,
		      size_t errlen)
{
	char tmp[4096];
	uint8_t *state = NULL;
	size_t state_len;
	struct snap_io io;
	uint64_t t0 = now_ns();
	int fd, rc;

	memset(st, 0, sizeof(*st));
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return snprintf(err, errlen, "path too long"), -ENAMETOOLONG;
	rc = vm_state_save(vm, &state, &state_len);
	if (rc) {
		snprintf(err, errlen, "cannot capture VM state: %s", strerror(-rc));
		return rc;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		free(state);
		return rc;
	}
	snap_io_init(&io, fd);
	io.buf = malloc(SNAP_BUF);
	rc = io.buf ? snap_write_all(vm, &io, state, state_len, st) : -ENOMEM;
	close(fd);
	free(io.buf);
	free(state);
	if (!rc && rename(tmp, path) < 0)
		rc = -errno;
	if (rc) {
		snprintf(err, errlen, "writing %s: %s", path, strerror(-rc));
		unlink(tmp);
		return rc;
	}
	st->state_bytes = state_len;
	st->ms = (now_ns() - t0) / 1000000;
	return 0;
}

/* ---- restoring ----------------------------------------------------------------------- */

static int snap_fail(char *err, size_t errlen, int rc, const char *fmt, ...) CME_PRINTF(4, 5);
static int snap_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return rc;
}

static int snap_read_checked(struct snap_io *io, void *p, size_t n, char *err, size_t errlen)
{
	int rc = snap_read(io, p, n);

	if (rc == -EPIPE)
		return snap_fail(err, errlen, -EINVAL, "snapshot is truncated at byte %llu",
				 (unsigned long long)io->offset);
	if (rc)
		return snap_fail(err, errlen, rc, "reading snapshot: %s", strerror(-rc));
	return 0;
}

static int snap_check_header(const struct snap_header *h, const struct vm_config *want, char *err,
			     size_t errlen)
{
	if (memcmp(h->magic, SNAP_MAGIC, sizeof(h->magic)))
		return snap_fail(err, errlen, -EINVAL, "not a CME snapshot (bad magic)");
	if (h->version != SNAP_VERSION || h->header_size != sizeof(*h))
		return snap_fail(err, errlen, -EINVAL, "snapshot format version %u is not %d",
				 h->version, SNAP_VERSION);
	if (h->state_len == 0 || h->state_len > SNAP_STATE_MAX || h->vcpus == 0 ||
	    h->vcpus > VM_MAX_VCPUS || h->mem_bytes == 0 || h->mem_bytes > VM_MAX_MEM)
		return snap_fail(err, errlen, -EINVAL, "snapshot header is corrupt");
	if ((want->mem_bytes && want->mem_bytes != h->mem_bytes) ||
	    (want->nr_vcpus && want->nr_vcpus != h->vcpus))
		return snap_fail(err, errlen, -EINVAL,
				 "snapshot is for %llu MiB and %u vCPUs, not %llu MiB and %u",
				 (unsigned long long)(h->mem_bytes >> 20), h->vcpus,
				 (unsigned long long)(want->mem_bytes ? want->mem_bytes >> 20
								      : h->mem_bytes >> 20),
				 want->nr_vcpus ? want->nr_vcpus : h->vcpus);
	return 0;
}

/* Memory records go straight into guest RAM; each is checked to lie inside one slot. */
static int snap_read_memory(struct vm *vm, struct snap_io *io, struct vm_snapshot_stats *st,
			    char *err, size_t errlen)
{
	for (;;) {
		struct snap_record r;
		uint64_t len;
		void *hva;
		int rc = snap_read_checked(io, &r, sizeof(r), err, errlen);

		if (rc)
			return rc;
		if (r.gpa == SNAP_END && r.npages == 0)
			return 0;
		hva = __builtin_mul_overflow(r.npages, VM_PAGE_SIZE, &len) || r.npages == 0
			      ? NULL
			      : vm_gpa_to_hva(vm, r.gpa, len);
		if (!hva || r.gpa % VM_PAGE_SIZE)
			return snap_fail(err, errlen, -EINVAL,
					 "snapshot is corrupt: memory record 0x%llx+%llu pages "
					 "outside guest RAM",
					 (unsigned long long)r.gpa, (unsigned long long)r.npages);
		rc = snap_read_checked(io, hva, len, err, errlen);
		if (rc)
			return rc;
		st->pages += r.npages;
	}
}

static int snap_verify_trailer(struct snap_io *io, char *err, size_t errlen)
{
	uint8_t want[SNAP_HASH_BYTES], got[SNAP_HASH_BYTES], extra;
	int rc;

	crypto_generichash_final(&io->hash, want, sizeof(want));
	rc = read_full(io->fd, got, sizeof(got));
	if (rc == -EPIPE)
		return snap_fail(err, errlen, -EINVAL, "snapshot is truncated at byte %llu",
				 (unsigned long long)io->offset);
	if (rc)
		return snap_fail(err, errlen, rc, "reading snapshot: %s", strerror(-rc));
	if (sodium_memcmp(want, got, sizeof(want)))
		return snap_fail(err, errlen, -EINVAL,
				 "snapshot checksum mismatch: the file is corrupt");
	if (read(io->fd, &extra, 1) != 0)
		return snap_fail(err, errlen, -EINVAL, "snapshot has data after its checksum");
	return 0;
}

/* Everything is read and verified first; the state is applied only to verified bytes. */
static int snap_load(struct snap_io *io, const struct snap_header *h, struct vm *vm,
		     struct vm_snapshot_stats *st, char *err, size_t errlen)
{
	uint8_t *state = malloc(h->state_len);
	int rc;

	if (!state)
		return -ENOMEM;
	rc = snap_read_checked(io, state, h->state_len, err, errlen);
	if (!rc)
		rc = snap_read_memory(vm, io, st, err, errlen);
	if (!rc)
		rc = snap_verify_trailer(io, err, errlen);
	if (!rc)
		rc = vm_state_load(vm, state, h->state_len, err, errlen);
	st->state_bytes = h->state_len;
	free(state);
	return rc;
}

int vm_snapshot_restore(const char *path, const struct vm_config *cfg, struct vm **out,
			struct vm_snapshot_stats *st, char *err, size_t errlen)
{
	struct vm_config vc = *cfg;
	struct snap_header h;
	struct snap_io io;
	struct vm *vm = NULL;
	uint64_t t0 = now_ns();
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	memset(st, 0, sizeof(*st));
	if (fd < 0)
		return snap_fail(err, errlen, -errno, "%s: %s", path, strerror(errno));
	snap_io_init(&io, fd);
	rc = snap_read_checked(&io, &h, sizeof(h), err, errlen);
	if (!rc)
		rc = snap_check_header(&h, cfg, err, errlen);
	if (!rc) {
		vc.mem_bytes = h.mem_bytes;
		vc.nr_vcpus = h.vcpus;
		rc = vm_create(&vc, &vm);
		if (rc)
			snprintf(err, errlen, "cannot create the VM: %s", strerror(-rc));
	}
	if (!rc)
		rc = snap_load(&io, &h, vm, st, err, errlen);
	st->bytes = io.offset;
	close(fd);
	if (rc) {
		vm_destroy(vm);
		return rc;
	}
	st->ms = (now_ns() - t0) / 1000000;
	*out = vm;
	return 0;
}
