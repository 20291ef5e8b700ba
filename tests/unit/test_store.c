/* The backup store on a real folder: keys, chunks, manifests, listing, verify and prune.
 * A wrong key, a folder that is no store, a tampered, truncated, missing or misnamed chunk
 * or manifest are each refused with the reason; prune keeps what a manifest names. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "store.h"
#include "unit.h"

#define CS (64u << 10)

static uint8_t key[KEY_FILE_BYTES], other[KEY_FILE_BYTES];

static const char *new_store(void)
{
	static char dir[512];
	static unsigned n;
	char err[512];

	snprintf(dir, sizeof(dir), "%s/store%u", test_tmpdir(), n++);
	memset(key, 0x5a, sizeof(key));
	memset(other, 0xa5, sizeof(other));
	CU_ASSERT_EQUAL_FATAL(store_create(dir, key, CS, err, sizeof(err)), 0);
	return dir;
}

static struct store *open_ok(const char *dir)
{
	struct store *s = NULL;
	char err[512];

	CU_ASSERT_EQUAL_FATAL(store_open(dir, key, &s, err, sizeof(err)), 0);
	return s;
}

static void fill(uint8_t *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(seed * 31 + i * 7 + (i >> 9));
}

/* Put one chunk of seed's bytes; returns its ID. */
static struct store_id put(struct store *s, unsigned seed, size_t n, bool want_added)
{
	static uint8_t b[CS];
	struct store_id id;
	bool added = !want_added;
	char err[512];

	fill(b, n, seed);
	store_chunk_id(s, b, n, &id);
	CU_ASSERT_EQUAL(store_chunk_put(s, &id, b, n, &added, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(added, want_added);
	return id;
}

static void chunk_file(const char *dir, const struct store_id *id, char *path, size_t len)
{
	char hex[STORE_ID_HEX + 1];

	store_id_hex(id, hex);
	snprintf(path, len, "%s/chunks/%.2s/%s", dir, hex, hex);
}

static void flip_byte(const char *path, off_t at)
{
	int fd = open(path, O_RDWR);
	uint8_t c = 0;

	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(pread(fd, &c, 1, at), 1);
	c ^= 0x40;
	CU_ASSERT_EQUAL(pwrite(fd, &c, 1, at), 1);
	close(fd);
}

static void test_open(void)
{
	const char *dir = new_store();
	struct store *s = NULL;
	char err[512], plain[600];

	CU_ASSERT_EQUAL(store_create(dir, key, CS, err, sizeof(err)), -EEXIST);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "holds a store already"));
	CU_ASSERT_EQUAL(store_open(dir, other, &s, err, sizeof(err)), -EKEYREJECTED);
	CU_ASSERT_PTR_NULL(s);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "wrong key"));
	snprintf(plain, sizeof(plain), "%s/plain", test_tmpdir());
	mkdir(plain, 0700);
	CU_ASSERT_EQUAL(store_open(plain, key, &s, err, sizeof(err)), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "is not a backup store"));
	CU_ASSERT_EQUAL(store_create(plain, key, 3000, err, sizeof(err)), -EINVAL);
	s = open_ok(dir);
	CU_ASSERT_EQUAL(store_chunk_size(s), CS);
	store_close(s);
}

static void test_chunks(void)
{
	const char *dir = new_store();
	struct store *s = open_ok(dir);
	static uint8_t b[CS], back[CS];
	struct store_id id, zero;
	char err[512], path[600], hex[STORE_ID_HEX + 1];
	bool added = true;

	id = put(s, 1, CS, true);
	put(s, 1, CS, false); /* the same bytes again: stored once */
	CU_ASSERT_EQUAL(store_chunk_get(s, &id, back, CS, err, sizeof(err)), 0);
	fill(b, CS, 1);
	CU_ASSERT_EQUAL(memcmp(b, back, CS), 0);
	/* All zero: a zero ID, no file, reads back as zeros. */
	memset(b, 0, CS);
	store_chunk_id(s, b, CS, &zero);
	CU_ASSERT_TRUE(store_id_is_zero(&zero));
	CU_ASSERT_EQUAL(store_chunk_put(s, &zero, b, CS, &added, err, sizeof(err)), 0);
	CU_ASSERT_FALSE(added);
	memset(back, 1, CS);
	CU_ASSERT_EQUAL(store_chunk_get(s, &zero, back, CS, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(back[0] | back[CS - 1], 0);
	/* The wrong length asked, a flipped byte, a truncated and a missing file. */
	CU_ASSERT_EQUAL(store_chunk_get(s, &id, back, CS - 1, err, sizeof(err)), -EBADMSG);
	chunk_file(dir, &id, path, sizeof(path));
	flip_byte(path, 100);
	CU_ASSERT_EQUAL(store_chunk_get(s, &id, back, CS, err, sizeof(err)), -EBADMSG);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "is damaged"));
	store_id_hex(&id, hex);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, hex)); /* the reason names the chunk */
	flip_byte(path, 100);
	CU_ASSERT_EQUAL(store_chunk_get(s, &id, back, CS, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(truncate(path, 1000), 0);
	CU_ASSERT_EQUAL(store_chunk_get(s, &id, back, CS, err, sizeof(err)), -EBADMSG);
	put(s, 1, CS, true); /* a damaged chunk of the wrong size is written again */
	unlink(path);
	CU_ASSERT_EQUAL(store_chunk_get(s, &id, back, CS, err, sizeof(err)), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "is missing"));
	store_close(s);
}

/* A manifest of one area of three chunks (the middle one zero) under vm/id. */
static void make_manifest(struct store *s, const char *vm, const char *id, unsigned seed,
			  struct store_manifest *m)
{
	char err[512];

	memset(m, 0, sizeof(*m));
	snprintf(m->vm, sizeof(m->vm), "%s", vm);
	snprintf(m->id, sizeof(m->id), "%s", id);
	m->chunk_size = CS;
	m->mem_bytes = 3 * CS;
	m->vcpus = 2;
	CU_ASSERT_EQUAL_FATAL(store_area_add(m, "ram0", 0, 3 * CS - 100), 0);
	m->areas[0].chunks[0] = put(s, seed, CS, true);
	m->areas[0].chunks[2] = put(s, seed + 1, CS - 100, true);
	m->new_chunks = 2;
	CU_ASSERT_EQUAL(store_manifest_write(s, m, err, sizeof(err)), 0);
}

static void test_manifests(void)
{
	const char *dir = new_store();
	struct store *s = open_ok(dir);
	struct store_manifest m, r;
	char err[512], path[600], moved[600], vm[STORE_NAME_MAX], id[STORE_NAME_MAX];
	struct store_entry *e = NULL;
	size_t n = 0;

	make_manifest(s, "web1", "20261207T100000.000Z", 10, &m);
	CU_ASSERT_EQUAL(store_manifest_write(s, &m, err, sizeof(err)), -EEXIST);
	CU_ASSERT_EQUAL(
		store_manifest_read(s, "web1", "20261207T100000.000Z", &r, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(r.vm, "web1");
	CU_ASSERT_EQUAL(r.nareas, 1);
	CU_ASSERT_EQUAL(r.areas[0].size, 3 * CS - 100);
	CU_ASSERT_EQUAL(r.new_chunks, 2);
	CU_ASSERT_EQUAL(memcmp(r.areas[0].chunks, m.areas[0].chunks, 3 * sizeof(struct store_id)),
			0);
	store_manifest_free(&r);
	store_manifest_free(&m);
	make_manifest(s, "web1", "20261207T110000.000Z", 20, &m);
	store_manifest_free(&m);
	make_manifest(s, "db", "20261207T090000.000Z", 30, &m);
	store_manifest_free(&m);
	/* A half-written file in .tmp is never listed; the newest is found by VM name. */
	snprintf(path, sizeof(path), "%s/.tmp/leftover", dir);
	CU_ASSERT_EQUAL(write_file_atomic(path, "x", 1), 0);
	CU_ASSERT_EQUAL(store_list(s, NULL, &e, &n, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(n, 3);
	if (n == 3) {
		CU_ASSERT_STRING_EQUAL(e[0].vm, "db");
		CU_ASSERT_STRING_EQUAL(e[2].id, "20261207T110000.000Z");
	}
	free(e);
	CU_ASSERT_EQUAL(store_ref_parse(s, "web1", vm, id, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(id, "20261207T110000.000Z");
	CU_ASSERT_EQUAL(store_ref_parse(s, "nosuch", vm, id, err, sizeof(err)), -ENOENT);
	CU_ASSERT_EQUAL(store_ref_parse(s, "../x", vm, id, err, sizeof(err)), -EINVAL);
	/* Renamed to another ID, tampered, truncated: refused. */
	snprintf(path, sizeof(path), "%s/backups/web1/20261207T100000.000Z", dir);
	snprintf(moved, sizeof(moved), "%s/backups/web1/20261207T120000.000Z", dir);
	CU_ASSERT_EQUAL(link(path, moved), 0);
	CU_ASSERT_EQUAL(
		store_manifest_read(s, "web1", "20261207T120000.000Z", &r, err, sizeof(err)),
		-EBADMSG);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "is damaged"));
	unlink(moved);
	flip_byte(path, 60);
	CU_ASSERT_EQUAL(
		store_manifest_read(s, "web1", "20261207T100000.000Z", &r, err, sizeof(err)),
		-EBADMSG);
	flip_byte(path, 60);
	CU_ASSERT_EQUAL(truncate(path, 40), 0);
	CU_ASSERT_EQUAL(
		store_manifest_read(s, "web1", "20261207T100000.000Z", &r, err, sizeof(err)),
		-EBADMSG);
	CU_ASSERT_EQUAL(store_manifest_read(s, "web1", "nosuch", &r, err, sizeof(err)), -ENOENT);
	store_close(s);
}

static void test_verify(void)
{
	const char *dir = new_store();
	struct store *s = open_ok(dir);
	struct store_manifest m;
	struct store_verify_result r;
	char path[600], hex[STORE_ID_HEX + 1];

	make_manifest(s, "web1", "20261207T100000.000Z", 40, &m);
	CU_ASSERT_EQUAL(store_verify(s, &m, &r), 0);
	CU_ASSERT_EQUAL(r.chunks, 2);
	CU_ASSERT_EQUAL(r.bytes, 2 * CS - 100);
	chunk_file(dir, &m.areas[0].chunks[2], path, sizeof(path));
	flip_byte(path, 500);
	CU_ASSERT_EQUAL(store_verify(s, &m, &r), -EBADMSG);
	CU_ASSERT_EQUAL(r.bad, 1);
	store_id_hex(&m.areas[0].chunks[2], hex);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.first_bad, hex));
	CU_ASSERT_PTR_NOT_NULL(strstr(r.first_bad, "ram0 at byte 131072"));
	store_manifest_free(&m);
	store_close(s);
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static void test_prune(void)
{
	const char *dir = new_store();
	struct store *s = open_ok(dir);
	struct store_manifest m[3];
	struct store_prune_result r;
	struct store_entry *e = NULL;
	char err[512], c0[600], c2[600], stray[600];
	size_t n = 0;

	make_manifest(s, "web1", "20261207T100000.000Z", 50, &m[0]);
	make_manifest(s, "web1", "20261207T110000.000Z", 60, &m[1]);
	make_manifest(s, "web1", "20261207T120000.000Z", 70, &m[2]);
	chunk_file(dir, &m[0].areas[0].chunks[0], c0, sizeof(c0));
	chunk_file(dir, &m[2].areas[0].chunks[0], c2, sizeof(c2));
	/* A chunk no manifest names, just written: a backup may be running. */
	struct store_id young = put(s, 99, CS, true);

	chunk_file(dir, &young, stray, sizeof(stray));
	CU_ASSERT_EQUAL(store_prune(s, "web1", 2, 0, 3600 * 1000, &r, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(r.backups_removed, 1);
	CU_ASSERT_EQUAL(r.chunks_removed, 0); /* all within the grace */
	CU_ASSERT_EQUAL(store_list(s, "web1", &e, &n, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(n, 2);
	if (n == 2)
		CU_ASSERT_STRING_EQUAL(e[0].id, "20261207T110000.000Z");
	free(e);
	/* A backup or restore holds the store: nothing is collected under it. */
	int lock = store_lock(s, false, false);

	CU_ASSERT(lock >= 0);
	CU_ASSERT_EQUAL(store_lock(s, true, false), -EBUSY);
	CU_ASSERT_EQUAL(store_prune(s, NULL, 0, 0, 0, &r, err, sizeof(err)), 0);
	CU_ASSERT_TRUE(r.gc_skipped);
	CU_ASSERT_EQUAL(r.chunks_removed, 0);
	CU_ASSERT_TRUE(exists(stray));
	store_unlock(lock);
	CU_ASSERT_EQUAL(store_prune(s, NULL, 0, 0, 0, &r, err, sizeof(err)), 0);
	CU_ASSERT_FALSE(r.gc_skipped);
	CU_ASSERT_EQUAL(r.backups_removed, 0);
	CU_ASSERT_EQUAL(r.chunks_removed, 3); /* m[0]'s two and the stray one */
	CU_ASSERT_EQUAL(r.chunks_kept, 4);
	CU_ASSERT_FALSE(exists(c0));
	CU_ASSERT_FALSE(exists(stray));
	CU_ASSERT_TRUE(exists(c2));
	/* keep 1 with an age limit: the newest always stays. */
	CU_ASSERT_EQUAL(store_prune(s, "web1", 1, 1, 0, &r, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(r.backups_removed, 1);
	CU_ASSERT_EQUAL(store_list(s, "web1", &e, &n, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(n, 1);
	free(e);
	CU_ASSERT_TRUE(exists(c2));
	for (int i = 0; i < 3; i++)
		store_manifest_free(&m[i]);
	store_close(s);
}

/* A second store with the same key gets each backup once, and only the chunks it lacks. */
static void test_sync(void)
{
	const char *a_dir = new_store();
	char b_dir[600], err[512];
	struct store *a = open_ok(a_dir), *b;
	struct store_manifest m, r;
	struct store_sync_result res = { 0 };
	struct store_verify_result v;

	snprintf(b_dir, sizeof(b_dir), "%s", new_store());
	b = open_ok(b_dir);
	make_manifest(a, "web1", "20261207T100000.000Z", 80, &m);
	CU_ASSERT_EQUAL(
		store_sync_backup(a, b, "web1", "20261207T100000.000Z", &res, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(res.backups_copied, 1);
	CU_ASSERT_EQUAL(res.chunks_copied, 2);
	CU_ASSERT_EQUAL(
		store_manifest_read(b, "web1", "20261207T100000.000Z", &r, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(store_verify(b, &r, &v), 0);
	CU_ASSERT_EQUAL(v.chunks, 2);
	store_manifest_free(&r);
	memset(&res, 0, sizeof(res));
	CU_ASSERT_EQUAL(
		store_sync_backup(a, b, "web1", "20261207T100000.000Z", &res, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(res.backups_present, 1);
	CU_ASSERT_EQUAL(res.chunks_copied, 0);
	store_manifest_free(&m);
	/* A second backup: its own chunks follow. */
	make_manifest(a, "web1", "20261207T110000.000Z", 81, &m);
	memset(&res, 0, sizeof(res));
	CU_ASSERT_EQUAL(
		store_sync_backup(a, b, "web1", "20261207T110000.000Z", &res, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(res.backups_copied, 1);
	CU_ASSERT_EQUAL(res.chunks_copied, 2);
	store_manifest_free(&m);
	store_close(a);
	store_close(b);
}

void suite_store(void)
{
	static const struct test_case cases[] = {
		{ "a store: made once, opened only with its key", test_open },
		{ "chunks: stored once, read back, damage named", test_chunks },
		{ "manifests: atomic, listed, refused when tampered", test_manifests },
		{ "verify names the damaged chunk", test_verify },
		{ "prune keeps N and what a manifest names", test_prune },
		{ "sync copies each backup once, only missing chunks", test_sync },
		{ NULL, NULL },
	};

	test_add_suite("store", cases);
}
