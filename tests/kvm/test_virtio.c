/* virtio-blk with the test guest's own driver (tests/guest/selfcheck/vblk.c): stamped
 * blocks reach the image file and survive kill -9 once flushed, each completion interrupts
 * the guest through the irqfd, a read-only disk refuses
 * writes, a second VMM is refused the image, a queue outside RAM marks the device broken
 * while the guest runs on, a snapshot taken mid-write restores with nothing lost, and so
 * does a live migration (the image handed from one VMM to the other). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common.h"
#include "guestrun.h"
#include "kvmtests.h"
#include "migrun.h"

#define IMAGE_MB 8
#define DISK_MB	 4
#define STAMP	 0x5ca1ab1e5ca1ab1eUL
#define MIG_SRC	 "127.0.0.1"
#define MIG_DST	 "127.0.0.2"

/* A fresh zero-filled image of IMAGE_MB MiB in the test's directory. */
static const char *make_image(void)
{
	static char path[600];
	int fd;

	snprintf(path, sizeof(path), "%s/disk.img", test_tmpdir());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	CU_ASSERT_FATAL(fd >= 0 && ftruncate(fd, IMAGE_MB << 20) == 0);
	close(fd);
	return path;
}

/* Whether the file system of path takes user extended attributes (--epoch needs them) and
 * O_DIRECT (,direct): older tmpfs takes neither; the tests that need them skip there. */
static bool fs_has_xattr(const char *path)
{
	bool ok = setxattr(path, "user.cme.probe", "1", 1, 0) == 0;

	if (ok)
		removexattr(path, "user.cme.probe");
	else
		test_skip("the file system of %s takes no user extended attributes", path);
	return ok;
}

static bool fs_has_direct(const char *path)
{
	int fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);

	if (fd >= 0)
		close(fd);
	else
		test_skip("the file system of %s refuses O_DIRECT", path);
	return fd >= 0;
}

static void boot_with_disk_vcpus(struct vmm_proc *p, const char *disk, const char *vcpus,
				 const char *cmdline)
{
	const char *args[] = { "--mem",	     "128M",	  "--vcpus", vcpus,    "--image",
			       test_guest(), "--cmdline", cmdline,   "--disk", disk,
			       "--name",     "disk",	  NULL };

	CU_ASSERT_EQUAL_FATAL(vmm_start(p, args), 0);
	if (!vmm_console_wait(p, "READY", 30000)) {
		char *e = test_read_file(p->errlog);

		printf("\n    no READY; stderr:\n%s\n", e);
		free(e);
		vmm_kill(p);
		CU_FAIL_FATAL("guest did not print READY");
	}
}

static void boot_with_disk(struct vmm_proc *p, const char *disk, const char *cmdline)
{
	boot_with_disk_vcpus(p, disk, "1", cmdline);
}

/* Every block of the first DISK_MB MiB carries its index and one generation of at least
 * min (a later pass may have begun), consistently. Returns the blocks that do not. */
static unsigned bad_blocks(const char *image, unsigned long min)
{
	unsigned long w[512];
	unsigned bad = 0;
	int fd = open(image, O_RDONLY | O_CLOEXEC);

	CU_ASSERT_FATAL(fd >= 0);
	for (unsigned long b = 0; b < DISK_MB * 256; b++) {
		if (pread(fd, w, sizeof(w), (off_t)(b * 4096)) != (ssize_t)sizeof(w) || w[0] != b ||
		    w[1] < min || w[511] != (b ^ w[1] ^ STAMP)) {
			if (!bad)
				printf("\n    block %lu: %lx %lx %lx\n", b, w[0], w[1], w[511]);
			bad++;
		}
	}
	close(fd);
	return bad;
}

/* The irqs= of the "DISK pass=G" line (0 when there is none). */
static unsigned long pass_irqs(struct vmm_proc *p, unsigned long g)
{
	char *c = test_read_file(p->console), want[48], *hit, *irqs;
	unsigned long n = 0;

	snprintf(want, sizeof(want), "DISK pass=%lu ", g);
	hit = strstr(c, want);
	irqs = hit ? strstr(hit, "irqs=") : NULL;
	if (irqs)
		n = strtoul(irqs + 5, NULL, 10);
	free(c);
	return n;
}

/* The guest writes, flushes and reads back; kill -9 after its second flush: the image
 * holds every block at generation 2 or later. */
static void test_write_flush_kill(void)
{
	struct vmm_proc p;
	const char *img;
	char line[64];

	if (!guest_available())
		return;
	img = make_image();
	snprintf(line, sizeof(line), "wss_mb=8 vcpus=0 disk_mb=%d", DISK_MB);
	boot_with_disk(&p, img, line);
	CU_ASSERT_FATAL(vmm_console_wait(&p, "DISK pass=2 blocks=1024 flushed", 60000));
	vmm_kill(&p);
	CU_ASSERT_EQUAL(bad_blocks(img, 2), 0);
	/* Completions raise the interrupt (irqfd → IOAPIC pin 5 → the guest's handler) all
	 * along; edges that come while one is still pending merge, as on hardware, so a busy
	 * host sees fewer than one per request. */
	CU_ASSERT(pass_irqs(&p, 1) > 0);
	CU_ASSERT(pass_irqs(&p, 2) > pass_irqs(&p, 1));
	CU_ASSERT_EQUAL(guest_check_console(&p) > 0, 1);
}

/* Several requests at a time (disk_qd), larger ones (disk_bs) in a shuffled order
 * (disk_rand): every block is read back checked, pass after pass, and the image holds them
 * all after kill -9. */
static void test_batched(void)
{
	struct vmm_proc p;
	const char *img;

	if (!guest_available())
		return;
	img = make_image();
	boot_with_disk(&p, img, "wss_mb=8 vcpus=0 disk_mb=4 disk_bs=64 disk_qd=8 disk_rand=1");
	CU_ASSERT_FATAL(vmm_console_wait(&p, "DISK pass=3 blocks=1024 flushed", 60000));
	CU_ASSERT(vmm_wait_heartbeats(&p, 2, 30000)); /* passes go on meanwhile, each checked */
	vmm_kill(&p);
	CU_ASSERT_EQUAL(bad_blocks(img, 3), 0);
	CU_ASSERT(guest_check_console(&p) > 0); /* no CORRUPT: every read-back found its blocks */
}

/* The same past the page cache (O_DIRECT): the guest's aligned buffers go straight to the
 * image. */
static void test_direct(void)
{
	struct vmm_proc p;
	char disk[640], line[64];
	const char *img;

	if (!guest_available())
		return;
	img = make_image();
	if (!fs_has_direct(img))
		return;
	snprintf(disk, sizeof(disk), "%s,direct", img);
	snprintf(line, sizeof(line), "wss_mb=8 vcpus=0 disk_mb=%d", DISK_MB);
	boot_with_disk(&p, disk, line);
	CU_ASSERT_FATAL(vmm_console_wait(&p, "DISK pass=2 blocks=1024 flushed", 60000));
	vmm_kill(&p);
	CU_ASSERT_EQUAL(bad_blocks(img, 2), 0);
	CU_ASSERT(guest_check_console(&p) > 0);
}

/* Discard: the guest discards half of what it wrote; those blocks read as zeros (holes
 * punched in the image), and it goes on. */
static void test_discard(void)
{
	struct vmm_proc p;

	if (!guest_available())
		return;
	boot_with_disk(&p, make_image(), "wss_mb=8 vcpus=0 disk_mb=4 disk_discard=1");
	CU_ASSERT(vmm_console_wait(&p, "DISK discard blocks=512 status=0 zeros=1", 60000));
	CU_ASSERT(vmm_console_wait(&p, "DISK pass=2 blocks=1024 flushed", 60000));
	vmm_kill(&p);
	CU_ASSERT(guest_check_console(&p) > 0);
}

/* A read-only disk: the guest's write fails (status 1), its read works; the image stays
 * zero. */
static void test_read_only(void)
{
	struct vmm_proc p;
	char disk[640];
	const char *img;
	char *c;

	if (!guest_available())
		return;
	img = make_image();
	snprintf(disk, sizeof(disk), "%s,ro", img);
	boot_with_disk(&p, disk, "wss_mb=8 vcpus=0 disk_mb=1");
	CU_ASSERT(vmm_console_wait(&p, "DISK ro write=1 read=0", 30000));
	vmm_kill(&p);
	c = test_read_file(img);
	CU_ASSERT_EQUAL(c[0], 0); /* test_read_file stops at the first NUL: nothing written */
	free(c);
}

/* One image, two VMMs: the second is refused with one line, and the first runs on. */
static void test_locked(void)
{
	const char *args[] = { "--mem", "64M", "--image", test_guest(), "--disk", NULL, NULL };
	struct vmm_proc p, q;
	const char *img;
	char *e;

	if (!guest_available())
		return;
	img = make_image();
	boot_with_disk(&p, img, "wss_mb=8 vcpus=0 disk_mb=1");
	args[5] = img;
	CU_ASSERT_EQUAL_FATAL(vmm_start(&q, args), 0);
	CU_ASSERT_EQUAL(vmm_wait(&q, 30000), 0);
	CU_ASSERT_EQUAL(q.status, 1);
	e = test_read_file(q.errlog);
	CU_ASSERT_PTR_NOT_NULL(strstr(e, "in use by another VMM (locked)"));
	free(e);
	CU_ASSERT(vmm_console_wait(&p, "DISK pass=1", 30000));
	vmm_kill(&p);
}

/* Storage fencing by owner epoch: copy A (epoch 1) pauses as a fenced copy would; copy B
 * (epoch 2, an HA restart) takes the image over although A still holds its lock; a copy of
 * epoch 1 is refused; A, resumed, has its writes refused and stops, and B's own read-back
 * finds nothing of A's. */
static void test_epoch_takeover(void)
{
	const char *img;
	struct vmm_proc a, b, c;
	bool stale_seen = false;
	char *e;
	json_t *r;

	if (!guest_available())
		return;
	img = make_image();
	if (!fs_has_xattr(img))
		return;
	{
		const char *args[] = { "--mem",	     "128M",	  "--image",
				       test_guest(), "--cmdline", "wss_mb=8 vcpus=0 disk_mb=4",
				       "--disk",     img,	  "--epoch",
				       "1",	     NULL };

		CU_ASSERT_EQUAL_FATAL(vmm_start(&a, args), 0);
	}
	CU_ASSERT_FATAL(vmm_console_wait(&a, "DISK pass=1 blocks=1024 flushed", 60000));
	r = vmm_request(&a, "pause", NULL);
	json_decref(r);
	{
		const char *args[] = { "--mem",	     "128M",	  "--image",
				       test_guest(), "--cmdline", "wss_mb=8 vcpus=0 disk_mb=4",
				       "--disk",     img,	  "--epoch",
				       "2",	     NULL };
		const char *old[] = { "--mem", "64M",	  "--image", test_guest(), "--disk",
				      img,     "--epoch", "1",	     NULL };

		CU_ASSERT_EQUAL_FATAL(vmm_start(&b, args), 0);
		CU_ASSERT_FATAL(vmm_console_wait(&b, "DISK pass=1 blocks=1024 flushed", 60000));
		CU_ASSERT_EQUAL_FATAL(vmm_start(&c, old), 0); /* once B has the image */
	}
	CU_ASSERT_EQUAL(vmm_wait(&c, 30000), 0);
	CU_ASSERT_EQUAL(c.status, 1);
	e = test_read_file(c.errlog);
	CU_ASSERT_PTR_NOT_NULL(strstr(e, "owned by epoch 2, this VM has epoch 1"));
	free(e);
	r = vmm_request(&a, "resume", NULL);
	json_decref(r);
	/* A's next write is refused (status 1) — unless A, paused in its read-back, first
	 * reads what B wrote since and stops there (CORRUPT): either way it writes nothing. */
	for (uint64_t end = now_ns() + 30000 * 1000000ull; now_ns() < end; sleep_ms(50)) {
		e = test_read_file(a.console);
		stale_seen = strstr(e, "ERROR disk write") || strstr(e, "CORRUPT disk");
		free(e);
		if (stale_seen)
			break;
	}
	CU_ASSERT(stale_seen);
	CU_ASSERT(vmm_console_wait(&b, "DISK pass=3 blocks=1024 flushed", 60000));
	vmm_kill(&b);
	vmm_kill(&a);
	CU_ASSERT(guest_check_console(&b) > 0); /* no CORRUPT: A wrote nothing after B came */
	e = test_read_file(b.errlog);
	CU_ASSERT_PTR_NOT_NULL(strstr(e, "taken over from epoch 1"));
	free(e);
}

/* A queue outside guest RAM: the device needs a reset, the VMM and the guest run on. */
static void test_bad_queue(void)
{
	struct vmm_proc p;
	int n;

	if (!guest_available())
		return;
	boot_with_disk(&p, make_image(), "wss_mb=8 vcpus=0 disk_bad=1");
	CU_ASSERT_FATAL(vmm_console_wait(&p, "DISK needs-reset status=0x4f", 30000));
	n = vmm_heartbeats(&p, NULL, 0);
	CU_ASSERT(vmm_wait_heartbeats(&p, n + 3, 30000));
	vmm_kill(&p);
}

/* The last "DISK pass=G" on p's console, 0 when none. */
static unsigned long last_pass(struct vmm_proc *p)
{
	char *c = test_read_file(p->console), *at = c, *hit;
	unsigned long g = 0;

	while ((hit = strstr(at, "DISK pass="))) {
		g = strtoul(hit + 10, NULL, 10);
		at = hit + 10;
	}
	free(c);
	return g;
}

/* Snapshot (and stop) in the middle of the disk loop, restore with the same image: the
 * guest goes on, and its read-back of the next whole pass finds every block (nothing it was
 * told was written is lost); a restore without the disk is refused. */
static void test_snapshot_restore(void)
{
	char snap[600], args[700], want[64];
	const char *img;
	struct vmm_proc p, q;
	unsigned long pass;
	json_t *r;

	if (!guest_available())
		return;
	img = make_image();
	boot_with_disk(&p, img, "wss_mb=8 vcpus=0 disk_mb=4");
	CU_ASSERT_FATAL(vmm_console_wait(&p, "DISK pass=2 blocks=1024 flushed", 60000));
	snprintf(snap, sizeof(snap), "%s/snap", test_tmpdir());
	snprintf(args, sizeof(args), "{\"path\":\"%s\",\"stop\":true}", snap);
	r = vmm_request(&p, "snapshot", args);
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT_TRUE_FATAL(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	CU_ASSERT_EQUAL_FATAL(vmm_wait(&p, 30000), 0);
	pass = last_pass(&p);
	{
		const char *bare[] = { snap, NULL };
		const char *with[] = { snap, "--disk", img, NULL };

		CU_ASSERT_EQUAL_FATAL(vmm_start_verb(&q, "restore", bare), 0);
		CU_ASSERT_EQUAL(vmm_wait(&q, 30000), 0);
		CU_ASSERT_EQUAL(q.status, 1); /* "state has a device virtio-blk.0 this VM lacks" */
		CU_ASSERT_EQUAL_FATAL(vmm_start_verb(&q, "restore", with), 0);
	}
	snprintf(want, sizeof(want), "DISK pass=%lu blocks=1024 flushed", pass + 2);
	CU_ASSERT(vmm_console_wait(&q, want, 60000)); /* pass + 1 was written and read back */
	CU_ASSERT(guest_check_console(&q) > 0);
	vmm_kill(&q);
	CU_ASSERT_EQUAL(bad_blocks(img, pass + 1), 0);
}

/* The certificates of two loopback nodes from a fresh CA: tls[0] the source's. */
static void make_certs(char tls[2][700])
{
	static const char *const nodes[] = { MIG_SRC, MIG_DST, NULL };
	char pki[600];

	CU_ASSERT_EQUAL_FATAL(mig_certs(pki, sizeof(pki), nodes), 0);
	net_tls_dir(tls[0], sizeof(tls[0]), pki, MIG_SRC);
	net_tls_dir(tls[1], sizeof(tls[1]), pki, MIG_DST);
}

/* Live migration in the middle of the disk loop (vCPU 0 writes, flushes and reads back
 * its disk; vCPU 1 dirties memory): the destination reopens the same image once the
 * source has let it go, the loop goes on there with every block checked, the heartbeats
 * run on without a gap, and the digest proves the pages the disk read into guest RAM
 * (behind KVM's dirty log) were sent again. */
static void test_migrate_mid_write(void)
{
	struct vmm_proc src, dst, *both[2] = { &src, &dst };
	const char *img, *extra[3] = { "--disk", NULL, NULL };
	char tls[2][700], want[64];
	struct hb_chain chain;
	struct mig_run r;
	unsigned long pass;
	int port;

	if (!guest_available())
		return;
	make_certs(tls);
	img = make_image();
	boot_with_disk_vcpus(&src, img, "2", "wss_mb=16 disk_mb=4");
	CU_ASSERT_FATAL(vmm_console_wait(&src, "DISK pass=2", 60000));
	extra[1] = img;
	port = mig_incoming(&dst, MIG_DST, tls[1], extra);
	CU_ASSERT_FATAL(port > 0);
	mig_cli(&r, &src, MIG_DST, port, tls[0], NULL, 120000);
	CU_ASSERT_EQUAL(r.status, 0);
	if (r.status)
		printf("\n    migrate: %s\n", r.out);
	mig_run_free(&r);
	mig_expect_source_migrated(&src);
	pass = last_pass(&src);
	snprintf(want, sizeof(want), "DISK pass=%lu blocks=1024 flushed", pass + 2);
	CU_ASSERT(vmm_console_wait(&dst, want, 60000)); /* pass + 1 written there, read back */
	CU_ASSERT(mig_check_consoles(both, 2, &chain) > 0);
	vmm_kill(&dst);
	CU_ASSERT_EQUAL(bad_blocks(img, pass + 1), 0);
}

/* A destination without the disk fails the migration (the source's state has a disk it
 * lacks): the source takes its image back and the loop goes on there. */
static void test_migrate_missing_disk(void)
{
	struct vmm_proc src, dst;
	char tls[2][700], want[64];
	struct mig_run r;
	unsigned long pass;
	int port;

	if (!guest_available())
		return;
	make_certs(tls);
	boot_with_disk_vcpus(&src, make_image(), "1", "wss_mb=8 vcpus=0 disk_mb=1");
	CU_ASSERT_FATAL(vmm_console_wait(&src, "DISK pass=1", 30000));
	port = mig_incoming(&dst, MIG_DST, tls[1], NULL);
	CU_ASSERT_FATAL(port > 0);
	mig_cli(&r, &src, MIG_DST, port, tls[0], NULL, 120000);
	CU_ASSERT_NOT_EQUAL(r.status, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(mig_error(r.fin), "virtio-blk.0"));
	if (!strstr(mig_error(r.fin), "virtio-blk.0"))
		printf("\n    migrate: %s\n", r.out);
	mig_run_free(&r);
	mig_expect_source_runs(&src);
	pass = last_pass(&src);
	snprintf(want, sizeof(want), "DISK pass=%lu blocks=256 flushed", pass + 2);
	CU_ASSERT(vmm_console_wait(&src, want, 30000)); /* writes go on: the lock is back */
	mig_expect_no_guest(&dst);
	vmm_kill(&dst);
	vmm_kill(&src);
}

void suite_virtio(void)
{
	static const struct test_case cases[] = {
		{ "virtio-blk: written, flushed, kill -9: the image holds it",
		  test_write_flush_kill },
		{ "virtio-blk: 8 requests of 64 KiB at a time, shuffled: every block checked",
		  test_batched },
		{ "virtio-blk: O_DIRECT (,direct) writes reach the image", test_direct },
		{ "virtio-blk: discarded blocks read as zeros", test_discard },
		{ "virtio-blk: a read-only disk refuses writes", test_read_only },
		{ "virtio-blk: a second VMM is refused the image", test_locked },
		{ "virtio-blk: a newer epoch takes the image over; the fenced copy writes no more",
		  test_epoch_takeover },
		{ "virtio-blk: a queue outside RAM needs a reset; the guest runs on",
		  test_bad_queue },
		{ "virtio-blk: snapshot mid-write, restore: nothing written is lost",
		  test_snapshot_restore },
		{ "virtio-blk: live migration mid-write: the destination goes on, nothing lost",
		  test_migrate_mid_write },
		{ "virtio-blk: a destination without the disk fails; the source writes on",
		  test_migrate_missing_disk },
		{ NULL, NULL },
	};

	test_add_suite("virtio", cases);
}
