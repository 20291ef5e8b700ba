/* Snapshot files: a header, the packed VM state, the non-zero memory pages in runs, and a
 * BLAKE2b checksum of everything before it.
 *
 *   header   64 bytes: "CMESNAP\0", u32 version, u32 header size, u64 mem_bytes,
 *            u32 vcpus, u32 reserved, u64 state_len, u64 created_ms, 16 reserved
 *   state    state_len bytes: VmState (proto/vmstate.proto)
 *   memory   records {u64 gpa, u64 npages} + npages * 4096 bytes; ends with {~0, 0}
 *   trailer  32 bytes: BLAKE2b-256 of all the above
 *
 * All integers little-endian (the only byte order KVM on x86 has).
 *
 * Encrypted (a key given): a 64-byte header of its own — "CMESNAPE", u32 version, u32
 * chunk size, 16 bytes of key check (keyed BLAKE2b of a constant: a wrong key is told from
 * a tampered file), the 24-byte secretstream header, 8 reserved — then the whole format
 * above as libsodium secretstream (XChaCha20-Poly1305) messages of at most a chunk each,
 * every one {u32 length, ciphertext}, the last tagged FINAL: a flipped byte, a reordered,
 * dropped or truncated message, or a wrong key is refused. */
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
#define SNAP_ENC_MAGIC	 "CMESNAPE"
#define SNAP_ENC_VERSION 1
#define SNAP_SEAL_BYTES	 crypto_secretstream_xchacha20poly1305_ABYTES

struct snap_enc_header {
	char magic[8];
	uint32_t version;
	uint32_t chunk;
	uint8_t key_check[16];
	uint8_t stream[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
	uint8_t reserved[8];
};
_Static_assert(sizeof(struct snap_enc_header) == 64, "encrypted header is 64 bytes");

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

/* A file stream that hashes everything it writes or reads, and with a key encrypts it. */
struct snap_io {
	int fd;
	crypto_generichash_state hash;
	uint64_t offset;
	uint8_t *buf; /* write buffer, or (encrypted) the plaintext of the message read */
	size_t len, pos;
	bool enc, final; /* final: the FINAL message was read */
	crypto_secretstream_xchacha20poly1305_state ss;
	uint8_t *sealed; /* one message: u32 length and ciphertext */
};

static int snap_io_init(struct snap_io *io, int fd)
{
	memset(io, 0, sizeof(*io));
	io->fd = fd;
	crypto_generichash_init(&io->hash, NULL, 0, SNAP_HASH_BYTES);
	return 0;
}

static void snap_key_check(const uint8_t *key, uint8_t out[16])
{
	static const char what[] = "cme snapshot key check";

	crypto_generichash(out, 16, (const uint8_t *)what, sizeof(what) - 1, key,
			   crypto_secretstream_xchacha20poly1305_KEYBYTES);
}

/* Encrypt what the buffer holds as one message (tag: MESSAGE or FINAL) and write it. */
static int snap_seal(struct snap_io *io, uint8_t tag)
{
	unsigned long long clen;
	uint32_t len32;

	crypto_secretstream_xchacha20poly1305_push(&io->ss, io->sealed + 4, &clen, io->buf, io->len,
						   NULL, 0, tag);
	len32 = (uint32_t)clen;
	memcpy(io->sealed, &len32, 4);
	io->len = 0;
	return write_all(io->fd, io->sealed, 4 + (size_t)clen);
}

static int snap_flush(struct snap_io *io)
{
	int err;

	if (io->enc)
		return io->len ? snap_seal(io, 0) : 0;
	err = io->len ? write_all(io->fd, io->buf, io->len) : 0;
	io->len = 0;
	return err;
}

static int snap_write(struct snap_io *io, const void *p, size_t n)
{
	crypto_generichash_update(&io->hash, p, n);
	io->offset += n;
	if (!io->enc && n >= SNAP_BUF / 2) { /* page runs go from guest memory to the file */
		int err = snap_flush(io);

		return err ? err : write_all(io->fd, p, n);
	}
	for (size_t done = 0; done < n;) {
		size_t take;
		int err;

		/* A full buffer goes out only when more follows: the last bytes always end the
		 * stream in the FINAL message, never an empty one after them. */
		if (io->len == SNAP_BUF && (err = snap_flush(io)))
			return err;
		take = n - done < SNAP_BUF - io->len ? n - done : SNAP_BUF - io->len;
		memcpy(io->buf + io->len, (const uint8_t *)p + done, take);
		io->len += take;
		done += take;
	}
	return 0;
}

/* The end of the stream: the last message, tagged FINAL (encrypted), or the buffer. */
static int snap_finish(struct snap_io *io)
{
	return io->enc ? snap_seal(io, crypto_secretstream_xchacha20poly1305_TAG_FINAL)
		       : snap_flush(io);
}

/* The next message into the buffer. -EPIPE when the file ends (truncated), -EBADMSG
 * when it does not decrypt (tampered, reordered, or corrupt). */
static int snap_open_next(struct snap_io *io)
{
	unsigned long long plen;
	uint32_t clen;
	uint8_t tag;
	int err;

	if (io->final)
		return -EPIPE;
	err = read_full(io->fd, &clen, 4);
	if (!err && (clen < SNAP_SEAL_BYTES || clen > SNAP_BUF + SNAP_SEAL_BYTES))
		return -EBADMSG;
	if (!err)
		err = read_full(io->fd, io->sealed, clen);
	if (err)
		return err;
	if (crypto_secretstream_xchacha20poly1305_pull(&io->ss, io->buf, &plen, &tag, io->sealed,
						       clen, NULL, 0))
		return -EBADMSG;
	io->len = (size_t)plen;
	io->pos = 0;
	io->final = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
	return 0;
}

/* n bytes of the stream, decrypted, not hashed (the trailer is read so). */
static int snap_take(struct snap_io *io, void *p, size_t n)
{
	int err = 0;

	if (!io->enc)
		return read_full(io->fd, p, n);
	for (size_t done = 0; done < n && !err;) {
		size_t take = io->len - io->pos;

		if (!take) {
			err = snap_open_next(io);
			continue;
		}
		take = take < n - done ? take : n - done;
		memcpy((uint8_t *)p + done, io->buf + io->pos, take);
		io->pos += take;
		done += take;
	}
	return err;
}

static int snap_read(struct snap_io *io, void *p, size_t n)
{
	int err = snap_take(io, p, n);

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
		err = snap_finish(io);
	if (!err && fdatasync(io->fd) < 0)
		err = -errno;
	st->bytes = io->offset;
	return err;
}

/* With a key: the encrypted header, in clear, before the stream. */
static int snap_enc_begin(struct snap_io *io, const uint8_t *key)
{
	struct snap_enc_header eh = { .magic = SNAP_ENC_MAGIC,
				      .version = SNAP_ENC_VERSION,
				      .chunk = SNAP_BUF };

	io->enc = true;
	io->sealed = malloc(4 + SNAP_BUF + SNAP_SEAL_BYTES);
	if (!io->sealed)
		return -ENOMEM;
	snap_key_check(key, eh.key_check);
	crypto_secretstream_xchacha20poly1305_init_push(&io->ss, eh.stream, key);
	return write_all(io->fd, &eh, sizeof(eh));
}

int vm_snapshot_write(struct vm *vm, const char *path, const uint8_t *key,
		      struct vm_snapshot_stats *st, char *err, size_t errlen)
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
	rc = io.buf ? 0 : -ENOMEM;
	if (!rc && key)
		rc = snap_enc_begin(&io, key);
	if (!rc)
		rc = snap_write_all(vm, &io, state, state_len, st);
	close(fd);
	free(io.buf);
	free(io.sealed);
	sodium_memzero(&io.ss, sizeof(io.ss));
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
	if (rc == -EBADMSG)
		return snap_fail(err, errlen, -EINVAL,
				 "snapshot does not decrypt after byte %llu: it was tampered with "
				 "or is corrupt",
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

/* Where a memory record's bytes go: guest RAM, or (vm NULL: only verifying) a scratch
 * buffer, after the same check against the RAM layout of mem_bytes (vm.c: below 3 GiB,
 * the rest from 4 GiB). */
struct snap_sink {
	struct vm *vm;
	uint64_t mem_bytes;
	uint8_t *scratch; /* SNAP_BUF bytes when verifying */
};

static bool snap_in_layout(uint64_t mem_bytes, uint64_t gpa, uint64_t len)
{
	uint64_t low = mem_bytes < VM_LOW_MEM_END ? mem_bytes : VM_LOW_MEM_END;

	return range_within(gpa, len, 0, low) ||
	       (mem_bytes > low && range_within(gpa, len, VM_HIGH_MEM_BASE, mem_bytes - low));
}

/* A record's bytes into hva (restore), or through the scratch buffer (hva NULL). */
static int snap_read_record(struct snap_io *io, const struct snap_sink *k, void *hva, uint64_t len,
			    char *err, size_t errlen)
{
	int rc = 0;

	if (hva)
		return snap_read_checked(io, hva, len, err, errlen);
	for (uint64_t at = 0; !rc && at < len; at += SNAP_BUF)
		rc = snap_read_checked(io, k->scratch, len - at < SNAP_BUF ? len - at : SNAP_BUF,
				       err, errlen);
	return rc;
}

/* Memory records go straight into guest RAM; each is checked to lie inside one slot. */
static int snap_read_memory(const struct snap_sink *k, struct snap_io *io,
			    struct vm_snapshot_stats *st, char *err, size_t errlen)
{
	for (;;) {
		struct snap_record r;
		uint64_t len;
		void *hva = NULL;
		bool inside;
		int rc = snap_read_checked(io, &r, sizeof(r), err, errlen);

		if (rc)
			return rc;
		if (r.gpa == SNAP_END && r.npages == 0)
			return 0;
		inside = !__builtin_mul_overflow(r.npages, VM_PAGE_SIZE, &len) && r.npages &&
			 !(r.gpa % VM_PAGE_SIZE) &&
			 (k->vm ? (hva = vm_gpa_to_hva(k->vm, r.gpa, len)) != NULL
				: snap_in_layout(k->mem_bytes, r.gpa, len));
		if (!inside)
			return snap_fail(err, errlen, -EINVAL,
					 "snapshot is corrupt: memory record 0x%llx+%llu pages "
					 "outside guest RAM",
					 (unsigned long long)r.gpa, (unsigned long long)r.npages);
		rc = snap_read_record(io, k, hva, len, err, errlen);
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
	rc = snap_take(io, got, sizeof(got));
	if (rc == -EBADMSG)
		return snap_fail(err, errlen, -EINVAL,
				 "snapshot does not decrypt after byte %llu: it was tampered with "
				 "or is corrupt",
				 (unsigned long long)io->offset);
	if (rc == -EPIPE)
		return snap_fail(err, errlen, -EINVAL, "snapshot is truncated at byte %llu",
				 (unsigned long long)io->offset);
	if (rc)
		return snap_fail(err, errlen, rc, "reading snapshot: %s", strerror(-rc));
	if (sodium_memcmp(want, got, sizeof(want)))
		return snap_fail(err, errlen, -EINVAL,
				 "snapshot checksum mismatch: the file is corrupt");
	/* After the checksum: nothing, or (a writer that sealed a full buffer first) an empty
	 * FINAL message. */
	if (io->enc && io->pos == io->len && !io->final && snap_open_next(io) == 0 && io->len)
		return snap_fail(err, errlen, -EINVAL, "snapshot has data after its checksum");
	if (io->enc && io->pos < io->len)
		return snap_fail(err, errlen, -EINVAL, "snapshot has data after its checksum");
	if (io->enc && !io->final)
		return snap_fail(err, errlen, -EINVAL,
				 "snapshot is truncated: its final part is missing");
	if (read(io->fd, &extra, 1) != 0)
		return snap_fail(err, errlen, -EINVAL, "snapshot has data after its checksum");
	return 0;
}

/* Everything is read and verified first; the state is applied only to verified bytes. */
static int snap_load(struct snap_io *io, const struct snap_header *h, struct vm *vm,
		     struct vm_snapshot_stats *st, char *err, size_t errlen)
{
	uint8_t *state = malloc(h->state_len);
	struct snap_sink k = { .vm = vm, .mem_bytes = h->mem_bytes };
	int rc;

	if (!state)
		return -ENOMEM;
	rc = snap_read_checked(io, state, h->state_len, err, errlen);
	if (!rc)
		rc = snap_read_memory(&k, io, st, err, errlen);
	if (!rc)
		rc = snap_verify_trailer(io, err, errlen);
	if (!rc)
		rc = vm_state_load(vm, state, h->state_len, err, errlen);
	st->state_bytes = h->state_len;
	free(state);
	return rc;
}

/* Encrypted or not, as the key says: the encrypted header is read and checked here. */
static int snap_enc_open(struct snap_io *io, const uint8_t *key, char *err, size_t errlen)
{
	struct snap_enc_header eh;
	uint8_t check[16];
	int rc = read_full(io->fd, &eh, sizeof(eh));

	if (rc == -EPIPE)
		return snap_fail(err, errlen, -EINVAL, "not a CME snapshot (too short)");
	if (rc)
		return snap_fail(err, errlen, rc, "reading snapshot: %s", strerror(-rc));
	if (!memcmp(eh.magic, SNAP_MAGIC, sizeof(SNAP_MAGIC)) && key)
		return snap_fail(err, errlen, -EINVAL,
				 "the snapshot is not encrypted, but a key was given");
	if (!memcmp(eh.magic, SNAP_MAGIC, sizeof(SNAP_MAGIC)))
		return lseek(io->fd, 0, SEEK_SET) < 0 ? -errno : 0;
	if (memcmp(eh.magic, SNAP_ENC_MAGIC, sizeof(eh.magic)))
		return snap_fail(err, errlen, -EINVAL, "not a CME snapshot (bad magic)");
	if (!key)
		return snap_fail(err, errlen, -EACCES, "the snapshot is encrypted: give its key");
	if (eh.version != SNAP_ENC_VERSION || eh.chunk != SNAP_BUF)
		return snap_fail(err, errlen, -EINVAL, "encrypted snapshot version %u is not %d",
				 eh.version, SNAP_ENC_VERSION);
	snap_key_check(key, check);
	if (sodium_memcmp(check, eh.key_check, sizeof(check)))
		return snap_fail(err, errlen, -EACCES,
				 "wrong key: the snapshot was encrypted with another one");
	io->enc = true;
	io->sealed = malloc(4 + SNAP_BUF + SNAP_SEAL_BYTES);
	io->buf = malloc(SNAP_BUF);
	if (!io->sealed || !io->buf)
		return -ENOMEM;
	if (crypto_secretstream_xchacha20poly1305_init_pull(&io->ss, eh.stream, key))
		return snap_fail(err, errlen, -EINVAL, "encrypted snapshot header is corrupt");
	return 0;
}

int vm_snapshot_restore(const char *path, const uint8_t *key, const struct vm_config *cfg,
			struct vm **out, struct vm_snapshot_stats *st, char *err, size_t errlen)
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
	rc = snap_enc_open(&io, key, err, errlen);
	if (!rc)
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
	free(io.buf);
	free(io.sealed);
	sodium_memzero(&io.ss, sizeof(io.ss));
	if (rc) {
		vm_destroy(vm);
		return rc;
	}
	st->ms = (now_ns() - t0) / 1000000;
	*out = vm;
	return 0;
}

/* ---- verifying without restoring ------------------------------------------------------ */

/* What verification reads before the memory: the header and the state, which must decode. */
static int snap_verify_head(struct snap_io *io, struct snap_header *h, uint8_t **state,
			    struct vm_snapshot_info *info, char *err, size_t errlen)
{
	static const struct vm_config any = { 0 };
	int rc = snap_read_checked(io, h, sizeof(*h), err, errlen);

	if (!rc)
		rc = snap_check_header(h, &any, err, errlen);
	if (rc)
		return rc;
	*state = malloc(h->state_len);
	if (!*state)
		return -ENOMEM;
	rc = snap_read_checked(io, *state, h->state_len, err, errlen);
	if (!rc &&
	    vm_state_peek_measurement(*state, h->state_len, info->measurement, &info->measured))
		rc = snap_fail(err, errlen, -EINVAL,
			       "snapshot is corrupt: its VM state does not parse");
	info->mem_bytes = h->mem_bytes;
	info->vcpus = h->vcpus;
	info->st.state_bytes = h->state_len;
	return rc;
}

int vm_snapshot_verify_fd(int fd, const uint8_t *key, struct vm_snapshot_info *info, char *err,
			  size_t errlen)
{
	struct snap_header h = { 0 };
	struct snap_io io;
	struct snap_sink k = { 0 };
	uint8_t *state = NULL;
	int rc;

	memset(info, 0, sizeof(*info));
	if (errlen)
		err[0] = 0;
	snap_io_init(&io, fd);
	rc = snap_enc_open(&io, key, err, errlen);
	info->encrypted = io.enc;
	if (!rc)
		rc = snap_verify_head(&io, &h, &state, info, err, errlen);
	k.mem_bytes = h.mem_bytes;
	k.scratch = rc ? NULL : malloc(SNAP_BUF);
	if (!rc && !k.scratch)
		rc = -ENOMEM;
	if (!rc)
		rc = snap_read_memory(&k, &io, &info->st, err, errlen);
	if (!rc)
		rc = snap_verify_trailer(&io, err, errlen);
	info->st.bytes = io.offset;
	free(k.scratch);
	free(state);
	free(io.buf);
	free(io.sealed);
	sodium_memzero(&io.ss, sizeof(io.ss));
	if (rc == -ENOMEM && !err[0])
		snprintf(err, errlen, "out of memory");
	return rc;
}
