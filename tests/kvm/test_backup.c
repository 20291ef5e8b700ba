/* Live backups on real KVM into a real store: the guest runs on through a backup and its
 * short pause; a restore in a new process continues from the backup point with the
 * guest's own checks passing; a second backup writes only what changed; a tampered chunk
 * is named by verify and refused by restore; a wrong key, a folder that is no store, a
 * full disk and a cancelled backup each leave the VM running and no backup listed. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "guestrun.h"
#include "kvmtests.h"
#include "store.h"

struct store_fx {
	char dir[600], key[600];
};

/* A key and an empty store in the test's folder, made with cmectl as an operator would. */
static void store_init(struct store_fx *s, const char *where)
{
	char *out = NULL;
	const char *keygen[] = { test_bin("cmectl"), "backup", "keygen", s->key, NULL };
	const char *init[] = {
		test_bin("cmectl"), "backup", "init", "--store", s->dir, "--key", s->key, NULL
	};

	if (where != s->dir)
		snprintf(s->dir, sizeof(s->dir), "%s", where);
	snprintf(s->key, sizeof(s->key), "%s/store.key", test_tmpdir());
	if (access(s->key, F_OK) == 0)
		snprintf(s->key, sizeof(s->key), "%s/store2.key", test_tmpdir());
	CU_ASSERT_EQUAL_FATAL(test_run(keygen, &out, 10000), 0);
	free(out);
	CU_ASSERT_EQUAL_FATAL(test_run(init, &out, 10000), 0);
	free(out);
}

/* `cme-vmm backup` of p; returns its exit status, the final status object in *st. */
static int backup(struct vmm_proc *p, const struct store_fx *s, const char *key, json_t **st,
		  char **text)
{
	const char *argv[] = {
		test_bin("cme-vmm"), "backup", "--api", p->api, "--store", s->dir, "--key",
		key ? key : s->key,  NULL
	};
	char *out = NULL, *last;
	int rc = test_run(argv, &out, 600000);

	*st = NULL;
	if (out) {
		size_t n = strlen(out);

		while (n && out[n - 1] == '\n')
			out[--n] = 0;
		last = strrchr(out, '\n');
		*st = json_loads(last ? last + 1 : out, 0, NULL);
	}
	if (text)
		*text = out;
	else
		free(out);
	return rc;
}

static uint64_t stat_of(json_t *st, const char *field)
{
	return (uint64_t)json_integer_value(json_object_get(json_object_get(st, "stats"), field));
}

static int cmectl_store(const struct store_fx *s, const char *cmd, const char *arg, char **out)
{
	const char *argv[] = {
		test_bin("cmectl"), "backup", cmd, "--store", s->dir, "--key", s->key, arg, NULL
	};

	return test_run(argv, out, 120000);
}

static int restore(struct vmm_proc *p, const struct store_fx *s, const char *key, const char *ref,
		   bool eager)
{
	const char *args[] = { "--store", s->dir,   "--key",	key ? key : s->key,
			       ref,	  "--name", "restored", eager ? "--eager" : NULL,
			       NULL };

	return vmm_start_verb(p, "restore", args);
}

/* A backup of a guest dirtying its memory while it runs; the guest beats on during it;
 * restored in a new process, it continues from the backup point, its checks passing. */
static void test_live_backup_restore(void)
{
	struct store_fx s;
	struct vmm_proc p;
	struct heartbeat before, after, first;
	json_t *st;
	char *out = NULL;
	int rc;

	if (!guest_available())
		return;
	store_init(&s, test_tmpdir());
	guest_boot(&p, "512M", "2", "wss_mb=128 dirty_rate=64");
	/* Once the working set is written, the guest rewrites it at 64 MiB/s. */
	CU_ASSERT_FATAL(vmm_wait_pages(&p, (128u << 20) / 4096, 60000, &before));
	rc = backup(&p, &s, NULL, &st, &out);
	CU_ASSERT_EQUAL(rc, 0);
	if (rc)
		printf("\n    backup: %s\n", out);
	free(out);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(st, "phase")) ?: "", "done");
	CU_ASSERT(stat_of(st, "new_bytes") >= (100u << 20)); /* the working set, at least */
	CU_ASSERT(stat_of(st, "rounds") >= 1);
	CU_ASSERT(json_object_get(json_object_get(st, "stats"), "pause_ms") != NULL);
	json_decref(st);
	/* It ran on through the backup, and runs on after it. */
	CU_ASSERT_FATAL(vmm_last_heartbeat(&p, &after));
	CU_ASSERT(vmm_wait_heartbeats(&p, (int)(after.seq - before.seq) + 8, 30000));
	CU_ASSERT(guest_check_console(&p) > 8);
	CU_ASSERT_EQUAL(cmectl_store(&s, "verify", "selfcheck", &out), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", "is sound"));
	free(out);
	vmm_kill(&p);
	/* The restored guest continues from inside the backup: after the last heartbeat seen
	 * before it began, not after the last one seen when it ended. Lazily (its memory
	 * coming in behind it, the default), then eagerly. */
	for (int eager = 0; eager < 2; eager++) {
		CU_ASSERT_EQUAL_FATAL(restore(&p, &s, NULL, "selfcheck", eager), 0);
		CU_ASSERT_FATAL(vmm_wait_heartbeats(&p, 5, 30000));
		CU_ASSERT(vmm_heartbeats(&p, &first, 1) >= 1);
		CU_ASSERT(first.seq > before.seq);
		CU_ASSERT(first.seq <= after.seq + 1);
		if (!eager) /* every chunk in, and the guest beats on after that */
			CU_ASSERT(test_wait_file_has(p.errlog, "all memory in after", 60000));
		CU_ASSERT_FATAL(vmm_last_heartbeat(&p, &after));
		CU_ASSERT(vmm_wait_heartbeats(&p, (int)(after.seq - first.seq) + 4, 30000));
		guest_check_console(&p);
		vmm_kill(&p);
	}
}

/* The DISK line count of a console. */
static int disk_passes(struct vmm_proc *p)
{
	char *c = test_read_file(p->console), *at = c;
	int n = 0;

	while ((at = strstr(at, "DISK pass=")))
		n++, at++;
	free(c);
	return n;
}

static bool wait_passes(struct vmm_proc *p, int n)
{
	for (int i = 0; i < 1200 && disk_passes(p) < n; i++)
		sleep_ms(50);
	return disk_passes(p) >= n;
}

/* A VM whose vCPU 0 stamps, flushes and reads back its disk pass after pass while vCPU 1
 * rewrites memory: backed up live, it runs on (its image moves past the backup), then is
 * restored onto the same image — disk and memory from the same instant, or the guest's
 * read-back would find blocks of the wrong pass. */
static void test_disk_backup(void)
{
	struct store_fx s;
	struct vmm_proc p;
	char img[600];
	const char *args[] = { "--mem",	  "256M",	"--vcpus",   "2",
			       "--image", test_guest(), "--cmdline", "wss_mb=32 disk_mb=8",
			       "--disk",  img,		"--name",    "selfcheck",
			       NULL };
	const char *rargs[] = { "--store", s.dir, "--key",  s.key,	"selfcheck",
				"--disk",  img,	  "--name", "restored", NULL };
	json_t *st;
	FILE *f;

	if (!guest_available())
		return;
	store_init(&s, test_tmpdir());
	snprintf(img, sizeof(img), "%s/disk.img", test_tmpdir());
	f = fopen(img, "w");
	CU_ASSERT_FATAL(f && ftruncate(fileno(f), 16 << 20) == 0);
	fclose(f);
	CU_ASSERT_EQUAL_FATAL(vmm_start(&p, args), 0);
	CU_ASSERT_FATAL(wait_passes(&p, 1));
	CU_ASSERT_EQUAL_FATAL(backup(&p, &s, NULL, &st, NULL), 0);
	json_decref(st);
	/* Two more passes: the image is well past the backup. */
	int now = disk_passes(&p);

	CU_ASSERT_FATAL(wait_passes(&p, now + 2));
	guest_check_console(&p);
	vmm_kill(&p);
	CU_ASSERT_EQUAL_FATAL(vmm_start_verb(&p, "restore", rargs), 0);
	CU_ASSERT(wait_passes(&p, 2)); /* the pass it was in, and a whole one after */
	CU_ASSERT(vmm_wait_heartbeats(&p, 3, 30000));
	guest_check_console(&p);
	vmm_kill(&p);
}

/* The guest rewrites about a tenth of its memory between two backups: the second writes
 * about that much, and reuses the rest. */
static void test_incremental(void)
{
	const uint64_t mem = 256u << 20, tenth = mem / 10;
	struct store_fx s;
	struct vmm_proc p;
	struct heartbeat at;
	json_t *st, *r;
	uint64_t first, second;

	if (!guest_available())
		return;
	store_init(&s, test_tmpdir());
	guest_boot(&p, "256M", "1", "wss_mb=200 dirty_rate=16");
	/* A first backup once the working set has been written once. */
	CU_ASSERT_FATAL(vmm_wait_pages(&p, (200u << 20) / 4096, 60000, &at));
	CU_ASSERT_EQUAL_FATAL(backup(&p, &s, NULL, &st, NULL), 0);
	first = stat_of(st, "new_bytes");
	json_decref(st);
	CU_ASSERT_FATAL(vmm_last_heartbeat(&p, &at));
	CU_ASSERT_FATAL(vmm_wait_pages(&p, at.pages + tenth / 4096, 60000, &at));
	r = vmm_request(&p, "pause", NULL);
	json_decref(r);
	CU_ASSERT_EQUAL_FATAL(backup(&p, &s, NULL, &st, NULL), 0);
	second = stat_of(st, "new_bytes");
	CU_ASSERT(stat_of(st, "reused_chunks") > 0);
	CU_ASSERT_STRING_NOT_EQUAL(
		json_string_value(json_object_get(json_object_get(st, "stats"), "parent")) ?: "",
		"");
	json_decref(st);
	CU_ASSERT(first >= (180u << 20));
	/* About a tenth: what was rewritten, its chunks' edges, and a heartbeat's worth. */
	CU_ASSERT(second >= tenth / 2);
	CU_ASSERT(second <= 2 * tenth);
	if (second < tenth / 2 || second > 2 * tenth)
		printf("\n    second backup wrote %llu bytes (a tenth is %llu)\n",
		       (unsigned long long)second, (unsigned long long)tenth);
	json_decref(vmm_request(&p, "resume", NULL));
	guest_check_console(&p);
	vmm_kill(&p);
}

/* The file of a chunk the newest backup of vm names (its first in RAM), its ID into id.
 * (Not any file in chunks/: a live backup also leaves chunks no backup names, until
 * prune.) */
static bool some_chunk(const struct store_fx *s, const char *vm, char *path, size_t len,
		       char id[STORE_ID_HEX + 1])
{
	uint8_t key[KEY_FILE_BYTES];
	char err[512], bvm[STORE_NAME_MAX], bid[STORE_NAME_MAX];
	struct store_manifest m;
	struct store *st = NULL;
	bool found = false;

	if (key_file_load(s->key, key, err, sizeof(err)) ||
	    store_open(s->dir, key, &st, err, sizeof(err)) ||
	    store_ref_parse(st, vm, bvm, bid, err, sizeof(err)) ||
	    store_manifest_read(st, bvm, bid, &m, err, sizeof(err))) {
		printf("\n    %s\n", err);
		store_close(st);
		return false;
	}
	for (uint64_t i = 0; !found && i < m.areas[0].nchunks; i++)
		if (!store_id_is_zero(&m.areas[0].chunks[i])) {
			store_id_hex(&m.areas[0].chunks[i], id);
			snprintf(path, len, "%s/chunks/%.2s/%s", s->dir, id, id);
			found = true;
		}
	store_manifest_free(&m);
	store_close(st);
	return found;
}

/* One byte of one chunk flipped: verify names the chunk, restore refuses the backup with
 * it; a wrong key is refused by backup (the guest runs on) and by restore. */
static void test_tamper_and_wrong_key(void)
{
	struct store_fx s, other;
	struct vmm_proc p;
	char path[800], id[STORE_ID_HEX + 1], *out = NULL, *log;
	json_t *st;
	FILE *f;
	int c;

	if (!guest_available())
		return;
	store_init(&s, test_tmpdir());
	snprintf(other.dir, sizeof(other.dir), "%s/other", test_tmpdir());
	store_init(&other, other.dir); /* a second key */
	guest_boot(&p, "128M", "1", "wss_mb=32");
	CU_ASSERT_EQUAL(backup(&p, &s, other.key, &st, &out), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", "wrong key"));
	free(out);
	json_decref(st);
	CU_ASSERT_EQUAL_FATAL(backup(&p, &s, NULL, &st, NULL), 0);
	json_decref(st);
	CU_ASSERT(guest_check_console(&p) > 0);
	vmm_kill(&p);
	CU_ASSERT_EQUAL(restore(&p, &s, other.key, "selfcheck", false), 0);
	CU_ASSERT_EQUAL(vmm_wait(&p, 30000), 0);
	CU_ASSERT_NOT_EQUAL(p.status, 0);
	log = test_read_file(p.errlog);
	CU_ASSERT_PTR_NOT_NULL(strstr(log, "wrong key"));
	free(log);
	CU_ASSERT_FATAL(some_chunk(&s, "selfcheck", path, sizeof(path), id));
	f = fopen(path, "r+b");
	CU_ASSERT_FATAL(f != NULL);
	fseek(f, 200, SEEK_SET);
	c = fgetc(f);
	fseek(f, 200, SEEK_SET);
	fputc(c ^ 0x01, f);
	fclose(f);
	CU_ASSERT_EQUAL(cmectl_store(&s, "verify", "selfcheck", &out), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", id));
	CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", "damaged"));
	free(out);
	/* Eager: refused before the guest runs. Lazy: the VM ends when the chunk is due. */
	for (int eager = 1; eager >= 0; eager--) {
		CU_ASSERT_EQUAL(restore(&p, &s, NULL, "selfcheck", eager), 0);
		CU_ASSERT_EQUAL(vmm_wait(&p, 60000), 0);
		CU_ASSERT_NOT_EQUAL(p.status, 0);
		log = test_read_file(p.errlog);
		CU_ASSERT_PTR_NOT_NULL(strstr(log, id));
		CU_ASSERT_PTR_NOT_NULL(strstr(log, "damaged"));
		free(log);
	}
}

static size_t listed(const struct store_fx *s)
{
	char *out = NULL;
	size_t n = 0;

	CU_ASSERT_EQUAL(cmectl_store(s, "ls", "-o", &out), 2); /* -o needs its value */
	free(out);
	const char *argv[] = { test_bin("cmectl"), "-o",   "json",  "backup", "ls",
			       "--store",	   s->dir, "--key", s->key,   NULL };
	CU_ASSERT_EQUAL(test_run(argv, &out, 60000), 0);
	json_t *j = json_loads(out ?: "", 0, NULL);

	n = json_array_size(j);
	json_decref(j);
	free(out);
	return n;
}

/* A folder that is no store, a store whose disk fills up, a backup cancelled half-way:
 * each a one-line error, the guest running on, nothing listed. */
static void test_faults(void)
{
	struct store_fx s;
	struct vmm_proc p;
	struct heartbeat hb;
	char small[600], *out = NULL, args[1400];
	json_t *st, *r;

	if (!guest_available())
		return;
	snprintf(s.dir, sizeof(s.dir), "%s", test_tmpdir());
	snprintf(s.key, sizeof(s.key), "%s/k", test_tmpdir());
	store_init(&s, test_tmpdir());
	guest_boot(&p, "1G", "2", "wss_mb=256 dirty_rate=64");
	snprintf(small, sizeof(small), "%s/plain", test_tmpdir());
	mkdir(small, 0700);
	struct store_fx plain = s;

	snprintf(plain.dir, sizeof(plain.dir), "%s", small);
	CU_ASSERT_EQUAL(backup(&p, &plain, NULL, &st, &out), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", "is not a backup store"));
	free(out);
	json_decref(st);
	/* Cancelled right after it began: round 0 of 1 GiB is far from done. */
	snprintf(args, sizeof(args), "{\"store\":\"%s\",\"key_file\":\"%s\"}", s.dir, s.key);
	r = vmm_request(&p, "backup", args);
	CU_ASSERT_TRUE(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	r = vmm_request(&p, "backup-cancel", NULL);
	CU_ASSERT_TRUE(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	CU_ASSERT(vmm_wait_status(&p, "state", "\"running\"", 10000));
	for (int i = 0; i < 500; i++) {
		r = vmm_request(&p, "backup-status", NULL);
		const char *ph = json_string_value(json_object_get(r, "phase")) ?: "";

		if (!strcmp(ph, "failed") || !strcmp(ph, "done")) {
			CU_ASSERT_STRING_EQUAL(ph, "failed");
			CU_ASSERT_PTR_NOT_NULL(strstr(
				json_string_value(json_object_get(r, "error")) ?: "", "cancelled"));
			json_decref(r);
			break;
		}
		json_decref(r);
		sleep_ms(20);
	}
	CU_ASSERT_EQUAL(listed(&s), 0);
	/* A full disk: an 8 MiB file system under a 256 MiB working set. */
	if (geteuid() == 0) {
		struct store_fx tiny = s;

		snprintf(tiny.dir, sizeof(tiny.dir), "%s/tiny", test_tmpdir());
		mkdir(tiny.dir, 0700);
		CU_ASSERT_EQUAL_FATAL(mount("tmpfs", tiny.dir, "tmpfs", 0, "size=8m"), 0);
		snprintf(tiny.key, sizeof(tiny.key), "%s", s.key);
		const char *init[] = { test_bin("cmectl"), "backup", "init",   "--store",
				       tiny.dir,	   "--key",  tiny.key, NULL };
		CU_ASSERT_EQUAL(test_run(init, &out, 10000), 0);
		free(out);
		CU_ASSERT_EQUAL(backup(&p, &tiny, NULL, &st, &out), 1);
		CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", "No space left on device"));
		free(out);
		json_decref(st);
		CU_ASSERT_EQUAL(listed(&tiny), 0);
		umount2(tiny.dir, MNT_DETACH);
	} else {
		printf("\n    (the full-disk case needs root to mount a small file system)\n");
	}
	/* The guest beat on through all of it. */
	CU_ASSERT_FATAL(vmm_last_heartbeat(&p, &hb));
	CU_ASSERT(vmm_wait_heartbeats(&p, (int)hb.seq + 5, 30000));
	guest_check_console(&p);
	vmm_kill(&p);
}

void suite_backup(void)
{
	static const struct test_case cases[] = {
		{ "a live backup: the guest runs on; restored, it continues",
		  test_live_backup_restore },
		{ "a second backup writes only what changed", test_incremental },
		{ "a VM with a disk: memory and disk from the same instant", test_disk_backup },
		{ "a tampered chunk is named; a wrong key refused", test_tamper_and_wrong_key },
		{ "no store, a full disk, a cancel: nothing listed, the VM runs", test_faults },
		{ NULL, NULL },
	};

	test_add_suite("backup", cases);
}
