/* virtio-blk (virtio 1.x section 5.2) backed by a raw image file: read, write, flush and
 * get-id, read-only disks, one request queue. The image is locked (flock, exclusive) while
 * the VMM has it open, so a second VMM never writes the same image. Requests run on the
 * transport's thread, with preadv/pwritev straight into and out of guest RAM. */
#include "virtio_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#define SUB	  "virtio-blk"
#define SECTOR	  512
#define QUEUE_MAX 256
#define ID_BYTES  20
#define HDR_BYTES 16
#define MAX_IOV	  VIRTQ_MAX_SEGS

#define BLK_F_SEG_MAX  (1ull << 2)
#define BLK_F_RO       (1ull << 5)
#define BLK_F_BLK_SIZE (1ull << 6)
#define BLK_F_FLUSH    (1ull << 9)
#define BLK_F_DISCARD  (1ull << 13)

#define T_IN	  0
#define T_OUT	  1
#define T_FLUSH	  4
#define T_GET_ID  8
#define T_DISCARD 11

#define DISCARD_MAX_SEG	    16
#define DISCARD_MAX_SECTORS (1u << 22) /* 2 GiB per range */

#define S_OK	 0
#define S_IOERR	 1
#define S_UNSUPP 2

#define OWNER_XATTR "user.cme.epoch"

struct blk {
	int fd;
	bool ro, direct;
	bool stale; /* a newer epoch took the image over: no more writes */
	/* Live migration (enum vm_handoff): not locked yet (destination), unlocked for the
	 * destination (source), the owner epoch to record when the guest first runs here. */
	bool unclaimed, released, epoch_due;
	uint64_t sectors;
	char id[ID_BYTES];
	/* vm_disk_track_*: blocks of track_block bytes written since the last fetch (one bit
	 * each, set once a write has completed; under the device's mu). NULL: off. */
	uint64_t *track;
	uint64_t track_block, track_words;
};

/* The owner epoch written on the image (its extended attribute), 0 when none. */
static uint64_t image_epoch(int fd)
{
	char txt[24] = "";
	ssize_t n = fgetxattr(fd, OWNER_XATTR, txt, sizeof(txt) - 1);

	return n > 0 ? strtoull(txt, NULL, 10) : 0;
}

static int set_image_epoch(int fd, uint64_t epoch)
{
	char txt[24];

	snprintf(txt, sizeof(txt), "%llu", (unsigned long long)epoch);
	return fsetxattr(fd, OWNER_XATTR, txt, strlen(txt), 0);
}

/* The image is this VMM's: its lock (flock), and with an owner epoch the epoch on the
 * image too. A copy of the VM with a newer epoch (HA restarted it elsewhere) takes over an
 * image whose lock an older, fenced copy still holds — that copy writes nothing while
 * fenced, and never again once it sees the newer epoch (blk_pause). Returns 0 or -1 with
 * the reason. */
static int claim(struct virtio_dev *v, struct blk *b, const struct vm_disk *disk, char *why,
		 size_t len)
{
	uint64_t mine = v->vm->cfg.epoch, theirs = image_epoch(b->fd);
	bool locked = flock(b->fd, (disk->ro ? LOCK_SH : LOCK_EX) | LOCK_NB) == 0;

	if (disk->ro) /* readers take no ownership */
		return locked ? 0
			      : (snprintf(why, len, "disk %s: in use by another VMM (locked)",
					  disk->path),
				 -1);
	if (mine && theirs > mine)
		return snprintf(why, len,
				"disk %s: owned by epoch %llu, this VM has epoch %llu (a newer "
				"copy of the VM runs)",
				disk->path, (unsigned long long)theirs, (unsigned long long)mine),
		       -1;
	if (!locked && (!mine || theirs >= mine))
		return snprintf(why, len, "disk %s: in use by another VMM (locked%s)", disk->path,
				theirs ? ", same epoch" : ""),
		       -1;
	if (mine && set_image_epoch(b->fd, mine) < 0)
		return snprintf(why, len, "disk %s: cannot record the owner epoch: %s", disk->path,
				strerror(errno)),
		       -1;
	if (!locked)
		log_warn(SUB, "vm=%s disk %s: taken over from epoch %llu (that copy is fenced)",
			 v->vm->cfg.name, disk->path, (unsigned long long)theirs);
	return 0;
}

static int blk_open(struct virtio_dev *v, char *why, size_t len)
{
	const struct vm_disk *disk = v->be_arg;
	struct blk *b = calloc(1, sizeof(*b));
	const char *base = strrchr(disk->path, '/');
	struct stat st;

	if (!b)
		return -ENOMEM;
	b->ro = disk->ro;
	b->direct = disk->direct;
	b->fd = open(disk->path,
		     (disk->ro ? O_RDONLY : O_RDWR) | (disk->direct ? O_DIRECT : 0) | O_CLOEXEC);
	if (b->fd < 0 || fstat(b->fd, &st) < 0) {
		int err = -errno;

		snprintf(why, len, "disk %s: %s", disk->path, strerror(-err));
		if (b->fd >= 0)
			close(b->fd);
		free(b);
		return err;
	}
	b->unclaimed = v->vm->cfg.incoming && !disk->ro; /* the source still has it */
	if (!b->unclaimed && claim(v, b, disk, why, len)) {
		close(b->fd);
		free(b);
		return -EBUSY;
	}
	b->sectors = (uint64_t)st.st_size / SECTOR;
	snprintf(b->id, sizeof(b->id), "cme-%s", base ? base + 1 : disk->path);
	v->be_priv = b;
	return 0;
}

static void blk_close(struct virtio_dev *v)
{
	struct blk *b = v->be_priv;

	close(b->fd);
	free(b->track);
	free(b);
	v->be_priv = NULL;
}

static uint64_t blk_features(struct virtio_dev *v)
{
	const struct blk *b = v->be_priv;

	return BLK_F_SEG_MAX | BLK_F_BLK_SIZE | BLK_F_FLUSH | (b->ro ? BLK_F_RO : BLK_F_DISCARD);
}

/* The configuration space: capacity (sectors) at 0, seg_max at 12, blk_size at 20, the
 * discard limits at 36..47. */
static void blk_config(struct virtio_dev *v, uint64_t off, uint8_t *data, unsigned size)
{
	const struct blk *b = v->be_priv;
	uint8_t cfg[48] = { 0 };
	uint32_t seg_max = MAX_IOV - 2, blk_size = SECTOR, discard_max = DISCARD_MAX_SECTORS,
		 discard_seg = DISCARD_MAX_SEG, discard_align = 1;

	memcpy(cfg, &b->sectors, 8);
	memcpy(cfg + 12, &seg_max, 4);
	memcpy(cfg + 20, &blk_size, 4);
	memcpy(cfg + 36, &discard_max, 4);   /* max_discard_sectors */
	memcpy(cfg + 40, &discard_seg, 4);   /* max_discard_seg */
	memcpy(cfg + 44, &discard_align, 4); /* discard_sector_alignment */
	memset(data, 0, size);
	if (off < sizeof(cfg))
		memcpy(data, cfg + off, size < sizeof(cfg) - off ? size : sizeof(cfg) - off);
}

/* The iovecs of a chain's data: readable buffers after the header (write) or writable
 * ones before the status byte (read). Returns their count; *bytes their length. */
static int data_iov(const struct virtq_chain *c, bool out, struct iovec *iov, uint64_t *bytes)
{
	*bytes = out ? c->read_len - HDR_BYTES : c->write_len - 1;
	return (int)virtq_iov(c, !out, out ? HDR_BYTES : 0, *bytes, iov);
}

/* O_DIRECT takes buffers and lengths aligned to the block size only. */
static bool aligned(const struct iovec *iov, int n)
{
	for (int i = 0; i < n; i++)
		if ((uintptr_t)iov[i].iov_base % SECTOR || iov[i].iov_len % SECTOR)
			return false;
	return true;
}

/* An unaligned request on an O_DIRECT disk: through an aligned buffer of our own. */
static ssize_t bounced(struct blk *b, bool out, const struct iovec *iov, int n, uint64_t bytes,
		       uint64_t sector)
{
	void *buf = NULL;
	ssize_t done;
	uint64_t at = 0;

	if (posix_memalign(&buf, 4096, bytes))
		return -1;
	for (int i = 0; out && i < n; at += iov[i].iov_len, i++)
		memcpy((uint8_t *)buf + at, iov[i].iov_base, iov[i].iov_len);
	done = out ? pwrite(b->fd, buf, bytes, (off_t)(sector * SECTOR))
		   : pread(b->fd, buf, bytes, (off_t)(sector * SECTOR));
	for (int i = 0; !out && done == (ssize_t)bytes && i < n; at += iov[i].iov_len, i++)
		memcpy(iov[i].iov_base, (uint8_t *)buf + at, iov[i].iov_len);
	free(buf);
	return done;
}

/* Read or write the request's data at sector; a status byte. */
/* A completed write of [off, off + len): its blocks are dirty for a backup that tracks. */
static void track(struct blk *b, uint64_t off, uint64_t len)
{
	if (!b->track || !len)
		return;
	for (uint64_t i = off / b->track_block; i <= (off + len - 1) / b->track_block; i++)
		b->track[i / 64] |= 1ull << (i % 64);
}

static uint8_t do_rw(struct virtio_dev *v, const struct virtq_chain *c, bool out, uint64_t sector,
		     uint32_t *written)
{
	struct blk *b = v->be_priv;
	struct iovec iov[MAX_IOV];
	uint64_t bytes;
	int n = data_iov(c, out, iov, &bytes);
	ssize_t done;

	if (out && (b->ro || b->stale || b->unclaimed || b->released))
		return S_IOERR;
	if (bytes % SECTOR || sector > b->sectors || bytes / SECTOR > b->sectors - sector)
		return S_IOERR;
	if (!bytes)
		return S_OK;
	done = b->direct && !aligned(iov, n) ? bounced(b, out, iov, n, bytes, sector)
	       : out			     ? pwritev(b->fd, iov, n, (off_t)(sector * SECTOR))
					     : preadv(b->fd, iov, n, (off_t)(sector * SECTOR));
	if (out) /* even a failed or short write may have changed the image */
		track(b, sector * SECTOR, bytes);
	if (done != (ssize_t)bytes) {
		if (!out && done > 0) /* what a short read did put in guest RAM */
			virtq_written(c, &v->mem, 0, (size_t)done);
		log_warn(SUB, "vm=%s disk %s: %s at sector %llu: %s", v->vm->cfg.name, b->id,
			 out ? "write" : "read", (unsigned long long)sector,
			 done < 0 ? strerror(errno) : "short");
		return S_IOERR;
	}
	if (!out) /* into guest RAM behind KVM's back: a migration sends those pages again */
		*written = (uint32_t)virtq_written(c, &v->mem, 0, bytes);
	return S_OK;
}

/* Discard: each 16-byte range {sector, num_sectors, flags} after the header becomes a hole
 * in the image (its blocks go back to the host's file system; they read as zeros). */
static uint8_t do_discard(struct virtio_dev *v, const struct virtq_chain *c)
{
	struct blk *b = v->be_priv;
	uint64_t n = (c->read_len - HDR_BYTES) / 16;
	struct {
		uint64_t sector;
		uint32_t num, flags;
	} r;

	if (b->ro || b->stale || b->unclaimed || b->released)
		return S_IOERR;
	if ((c->read_len - HDR_BYTES) % 16 || n == 0 || n > DISCARD_MAX_SEG)
		return S_IOERR;
	for (uint64_t i = 0; i < n; i++) {
		virtq_read(c, HDR_BYTES + 16 * i, &r, sizeof(r));
		if (r.flags || r.num > DISCARD_MAX_SECTORS || r.sector > b->sectors ||
		    r.num > b->sectors - r.sector)
			return r.flags ? S_UNSUPP : S_IOERR; /* flags: the unmap hint we lack */
		int rc = r.num ? fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					   (off_t)(r.sector * SECTOR), (off_t)r.num * SECTOR)
			       : 0;
		int e = errno;

		/* After the call, done or not: a backup reading the block before it ends must
		 * read it again. */
		track(b, r.sector * SECTOR, (uint64_t)r.num * SECTOR);
		if (rc < 0)
			return e == EOPNOTSUPP ? S_UNSUPP : S_IOERR;
	}
	return S_OK;
}

/* One request; returns the bytes written into the guest's buffers (status included). */
static uint32_t request(struct virtio_dev *v, const struct virtq_chain *c)
{
	struct blk *b = v->be_priv;
	struct {
		uint32_t type, reserved;
		uint64_t sector;
	} hdr;
	uint32_t written = 0;
	uint8_t st;

	if (c->read_len < HDR_BYTES || c->write_len < 1)
		return 0; /* no room for a status: nothing to say */
	virtq_read(c, 0, &hdr, sizeof(hdr));
	switch (hdr.type) {
	case T_IN:
	case T_OUT: st = do_rw(v, c, hdr.type == T_OUT, hdr.sector, &written); break;
	case T_FLUSH:
		st = b->stale ? S_IOERR : b->ro || fdatasync(b->fd) == 0 ? S_OK : S_IOERR;
		break;
	case T_DISCARD: st = do_discard(v, c); break;
	case T_GET_ID:
		written = (uint32_t)virtq_write(c, &v->mem, 0, b->id,
						c->write_len - 1 < ID_BYTES ? c->write_len - 1
									    : ID_BYTES);
		st = S_OK;
		break;
	default: st = S_UNSUPP; break;
	}
	virtq_write(c, &v->mem, c->write_len - 1, &st, 1);
	return written + 1;
}

static uint64_t blk_identity(struct virtio_dev *v)
{
	return ((const struct blk *)v->be_priv)->sectors;
}

/* A request never breaks the queue: what is wrong in it is its status byte. */
static int blk_chain(struct virtio_dev *v, unsigned qi, const struct virtq_chain *c,
		     uint32_t *written, char *why, size_t whylen)
{
	(void)qi;
	(void)why;
	(void)whylen;
	*written = request(v, c);
	return 0;
}

static bool blk_process(struct virtio_dev *v, unsigned qi)
{
	return virtio_process_chains(v, qi, blk_chain);
}

static const struct virtio_backend virtio_blk_backend = {
	.name = "virtio-blk",
	.device_id = VIRTIO_ID_BLOCK,
	.nr_queues = 1,
	.queue_max = QUEUE_MAX,
	.linger = true,
	.open = blk_open,
	.close = blk_close,
	.features = blk_features,
	.config_read = blk_config,
	.identity = blk_identity,
	.process = blk_process,
};

/* Running again (after a pause, e.g. a fence): an image a newer epoch has taken over is
 * not ours any more. An image still handed over (a migration in doubt that someone
 * resumes) is locked again if it can be, else written no more. The first run after a
 * migration's claim records the owner epoch. */
static void blk_pause(struct vm_device *d, bool pause)
{
	struct virtio_dev *v = d->priv;
	struct blk *b = v->be_priv;
	uint64_t mine = v->vm->cfg.epoch, theirs;

	if (!pause && b && b->released && !b->stale) {
		b->released = flock(b->fd, LOCK_EX | LOCK_NB) < 0;
		b->stale = b->released;
		if (b->stale)
			log_err(SUB,
				"vm=%s disk %s: handed over and locked by another VMM; writes "
				"refused",
				v->vm->cfg.name, b->id);
	}
	if (!pause && b && b->epoch_due && set_image_epoch(b->fd, mine) < 0)
		log_warn(SUB, "vm=%s disk %s: cannot record the owner epoch: %s", v->vm->cfg.name,
			 b->id, strerror(errno));
	if (!pause && b)
		b->epoch_due = false;
	if (!pause && b && mine && !b->ro && !b->stale && (theirs = image_epoch(b->fd)) > mine) {
		b->stale = true; /* read by the device thread after the kick below */
		log_err(SUB, "vm=%s disk %s: epoch %llu took the image over; writes refused",
			v->vm->cfg.name, b->id, (unsigned long long)theirs);
	}
	virtio_mmio_pause(d, pause);
}

/* Lock the image, waiting up to timeout_ms for a holder about to let go. */
static bool lock_within(int fd, int timeout_ms)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000ull;

	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK || now_ns() >= end)
			return false;
		sleep_ms(10);
	}
	return true;
}

/* Source: flush and unlock. Destination: lock what the source let go — never a takeover
 * (a source that still holds the lock still runs), and never an image a newer epoch owns. */
static int blk_handoff(struct vm_device *d, enum vm_handoff step, int timeout_ms, char *why,
		       size_t len)
{
	struct virtio_dev *v = d->priv;
	struct blk *b = v->be_priv;
	const struct vm_disk *disk = v->be_arg;
	uint64_t mine = v->vm->cfg.epoch, theirs;

	if (b->ro || b->stale)
		return 0;
	switch (step) {
	case VM_HANDOFF_RELEASE:
		if (b->released)
			return 0;
		if (fdatasync(b->fd) < 0)
			return snprintf(why, len,
					"disk %s: cannot flush it for the destination: %s",
					disk->path, strerror(errno)),
			       -EIO;
		if (flock(b->fd, LOCK_UN) < 0) {
			int err = -errno;

			snprintf(why, len, "disk %s: cannot unlock it for the destination: %s",
				 disk->path, strerror(-err));
			return err;
		}
		b->released = true;
		return 0;
	case VM_HANDOFF_RECLAIM:
		if (!b->released)
			return 0;
		if (!lock_within(b->fd, timeout_ms))
			return snprintf(why, len, "disk %s: still locked by another VMM",
					disk->path),
			       -EBUSY;
		b->released = false;
		return 0;
	case VM_HANDOFF_CLAIM:
		if (!b->unclaimed)
			return 0;
		theirs = image_epoch(b->fd);
		if (mine && theirs > mine)
			return snprintf(why, len,
					"disk %s: owned by epoch %llu, this VM has epoch %llu",
					disk->path, (unsigned long long)theirs,
					(unsigned long long)mine),
			       -EPERM;
		if (!lock_within(b->fd, timeout_ms))
			return snprintf(why, len,
					"disk %s: still locked (the source has not let it go)",
					disk->path),
			       -EBUSY;
		b->unclaimed = false;
		b->epoch_due = mine && theirs != mine;
		return 0;
	}
	return -EINVAL;
}

/* ---- disks for backups (hypervisor.h) ------------------------------------------------ */

static struct virtio_dev *disk_dev(struct vm *vm, unsigned idx)
{
	struct virtio_dev *v = virtio_find(vm, &dev_virtio_blk_ops, idx);

	return v && v->be_priv ? v : NULL;
}

int vm_disk_info(struct vm *vm, unsigned idx, uint64_t *bytes, bool *ro)
{
	struct virtio_dev *v = disk_dev(vm, idx);
	struct blk *b = v ? v->be_priv : NULL;

	if (!b)
		return -ENOENT;
	*bytes = b->sectors * SECTOR;
	*ro = b->ro;
	return 0;
}

int vm_disk_track_start(struct vm *vm, unsigned idx, uint32_t block)
{
	struct virtio_dev *v = disk_dev(vm, idx);
	struct blk *b = v ? v->be_priv : NULL;
	int rc = 0;

	if (!b || !block || (block % SECTOR))
		return b ? -EINVAL : -ENOENT;
	pthread_mutex_lock(&v->mu);
	if (b->track) {
		rc = -EALREADY;
	} else {
		b->track_block = block;
		b->track_words = ((b->sectors * SECTOR + block - 1) / block + 63) / 64;
		b->track = calloc(b->track_words ? b->track_words : 1, sizeof(uint64_t));
		rc = b->track ? 0 : -ENOMEM;
	}
	pthread_mutex_unlock(&v->mu);
	return rc;
}

int vm_disk_track_fetch(struct vm *vm, unsigned idx, uint64_t *bitmap, size_t words)
{
	struct virtio_dev *v = disk_dev(vm, idx);
	struct blk *b = v ? v->be_priv : NULL;
	int rc = 0;

	if (!b)
		return -ENOENT;
	pthread_mutex_lock(&v->mu);
	if (!b->track || words < b->track_words) {
		rc = -EINVAL;
	} else {
		for (size_t w = 0; w < b->track_words; w++)
			bitmap[w] |= b->track[w];
		memset(b->track, 0, b->track_words * sizeof(uint64_t));
	}
	pthread_mutex_unlock(&v->mu);
	return rc;
}

void vm_disk_track_stop(struct vm *vm, unsigned idx)
{
	struct virtio_dev *v = disk_dev(vm, idx);
	struct blk *b = v ? v->be_priv : NULL;

	if (!b)
		return;
	pthread_mutex_lock(&v->mu);
	free(b->track);
	b->track = NULL;
	pthread_mutex_unlock(&v->mu);
}

/* An aligned bounce for an O_DIRECT image (offsets and lengths are whole sectors). */
static int disk_io(struct blk *b, bool out, void *buf, size_t len, uint64_t off)
{
	void *bounce = buf;
	ssize_t n;

	if (b->direct && posix_memalign(&bounce, 4096, len ? len : 1))
		return -ENOMEM;
	if (out && bounce != buf)
		memcpy(bounce, buf, len);
	n = out ? pwrite(b->fd, bounce, len, (off_t)off) : pread(b->fd, bounce, len, (off_t)off);
	if (!out && n == (ssize_t)len && bounce != buf)
		memcpy(buf, bounce, len);
	if (bounce != buf)
		free(bounce);
	return n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
}

int vm_disk_pread(struct vm *vm, unsigned idx, void *buf, size_t len, uint64_t off)
{
	struct virtio_dev *v = disk_dev(vm, idx);
	struct blk *b = v ? v->be_priv : NULL;

	if (!b)
		return -ENOENT;
	if (len % SECTOR || off % SECTOR || off > b->sectors * SECTOR ||
	    len > b->sectors * SECTOR - off)
		return -EINVAL;
	return disk_io(b, false, buf, len, off);
}

int vm_disk_pwrite(struct vm *vm, unsigned idx, const void *buf, size_t len, uint64_t off)
{
	struct virtio_dev *v = disk_dev(vm, idx);
	struct blk *b = v ? v->be_priv : NULL;

	if (!b)
		return -ENOENT;
	if (b->ro)
		return -EROFS;
	if (len % SECTOR || off % SECTOR || off > b->sectors * SECTOR ||
	    len > b->sectors * SECTOR - off)
		return -EINVAL;
	if (!buf) { /* zeros: a hole, or written out where the file system makes none */
		void *zero;
		int rc;

		if (!fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			       (off_t)len))
			return 0;
		zero = calloc(1, len ? len : 1);
		rc = zero ? disk_io(b, true, zero, len, off) : -ENOMEM;
		free(zero);
		return rc;
	}
	return disk_io(b, true, (void *)buf, len, off);
}

static int blk_create(struct vm_device *d)
{
	return virtio_mmio_create(d, &virtio_blk_backend);
}

const struct dev_ops dev_virtio_blk_ops = {
	.name = "virtio-blk",
	.state_version = 1,
	.create = blk_create,
	.destroy = virtio_mmio_destroy,
	.reset = virtio_mmio_reset,
	.io = virtio_mmio_io,
	.pause = blk_pause,
	.state = virtio_mmio_state,
	.handoff = blk_handoff,
};
