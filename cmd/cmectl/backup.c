/* cmectl backup keygen|init|ls|show|verify|prune: the backup store in a folder (store/),
 * read and kept with its key on the operator's host. Files only: no etcd. */
#include "cmectl.h"
#include "store.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --store and --key (defaults: CME_BACKUP_STORE, CME_BACKUP_KEY). */
struct store_args {
	const char *dir, *key_file;
};

#define STORE_FLAGS(a)                                                                             \
	{ "--store", NULL, FL_STR, NULL, &(a)->dir },                                              \
	{                                                                                          \
		"--key", NULL, FL_STR, NULL, &(a)->key_file                                        \
	}

static void store_args_init(struct store_args *a)
{
	a->dir = getenv("CME_BACKUP_STORE");
	a->key_file = getenv("CME_BACKUP_KEY");
}

static int key_of(const char *cmd, const struct store_args *a, uint8_t key[KEY_FILE_BYTES])
{
	char err[512];

	if (!a->dir || !a->key_file)
		return ctl_usage("%s: needs --store DIR and --key FILE (or CME_BACKUP_STORE, "
				 "CME_BACKUP_KEY)",
				 cmd);
	if (key_file_load(a->key_file, key, err, sizeof(err)))
		return ctl_fail("%s: %s", cmd, err);
	return CTL_OK;
}

static int open_store(const char *cmd, const struct store_args *a, struct store **s)
{
	uint8_t key[KEY_FILE_BYTES];
	char err[512];
	int rc = key_of(cmd, a, key);

	if (rc)
		return rc;
	rc = store_open(a->dir, key, s, err, sizeof(err));
	sodium_memzero(key, sizeof(key));
	return rc ? ctl_fail("%s: %s", cmd, err) : CTL_OK;
}

int ctl_cmd_backup_keygen(struct ctl *c, int argc, char **argv)
{
	const char *file = NULL;
	char err[512];
	int rc = ctl_args_parse(c, "backup keygen", argc, argv, NULL, "FILE", &file);

	if (rc)
		return rc;
	if (key_file_create(file, err, sizeof(err)))
		return ctl_fail("backup keygen: %s", err);
	printf("a new store key in %s: keep a copy safe — without it no backup can be read\n",
	       file);
	return CTL_OK;
}

int ctl_cmd_backup_init(struct ctl *c, int argc, char **argv)
{
	struct store_args a;
	const char *cs_s = NULL;
	const struct flag flags[] = { STORE_FLAGS(&a),
				      { "--chunk-size", NULL, FL_STR, NULL, &cs_s },
				      { 0 } };
	uint8_t key[KEY_FILE_BYTES];
	uint64_t cs = STORE_CHUNK_DEFAULT;
	char err[512];
	int rc;

	store_args_init(&a);
	rc = ctl_args_parse(c, "backup init", argc, argv, flags, NULL, NULL);
	if (!rc && cs_s && (parse_size(cs_s, &cs) || cs > STORE_CHUNK_MAX))
		return ctl_usage("backup init: --chunk-size %s: a size such as 256K", cs_s);
	if (rc || (rc = key_of("backup init", &a, key)))
		return rc;
	rc = store_create(a.dir, key, (uint32_t)cs, err, sizeof(err));
	sodium_memzero(key, sizeof(key));
	if (rc)
		return ctl_fail("backup init: %s", err);
	printf("a backup store in %s (chunks of %llu KiB)\n", a.dir, (unsigned long long)cs >> 10);
	return CTL_OK;
}

/* ---- ls and show -------------------------------------------------------------------- */

static json_t *manifest_json(const struct store_manifest *m)
{
	return json_pack("{s:s,s:s,s:s,s:I,s:I,s:i,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "vm", m->vm,
			 "id", m->id, "parent", m->parent, "created_ms", (json_int_t)m->created_ms,
			 "mem_bytes", (json_int_t)m->mem_bytes, "vcpus", (int)m->vcpus,
			 "measurement", m->measurement, "new_chunks", (json_int_t)m->new_chunks,
			 "reused_chunks", (json_int_t)m->reused_chunks, "zero_chunks",
			 (json_int_t)m->zero_chunks, "new_bytes", (json_int_t)m->new_bytes,
			 "pause_ms", (json_int_t)m->pause_ms, "total_ms", (json_int_t)m->total_ms,
			 "rounds", (json_int_t)m->rounds);
}

static void ls_row(struct table *t, const struct store_manifest *m)
{
	char when[40];

	ctl_table_cell(t, "%s/%s", m->vm, m->id);
	ctl_table_cell(t, "%s", ctl_out_time(m->created_ms, when));
	ctl_table_cell(t, "%llu MiB", (unsigned long long)(m->mem_bytes >> 20));
	ctl_table_cell(t, "%.1f MiB", (double)m->new_bytes / (1 << 20));
	ctl_table_cell(t, "%llu", (unsigned long long)m->reused_chunks);
	ctl_table_cell(t, "%llu ms", (unsigned long long)m->pause_ms);
	ctl_table_cell(t, "%s", ctl_out_dash(m->parent));
}

static int ls_all(struct ctl *c, struct store *s, const struct store_entry *e, size_t n)
{
	static const char *const heads[] = { "BACKUP", "CREATED", "MEMORY", "NEW",
					     "REUSED", "PAUSE",	  "PARENT" };
	struct table *t = c->json ? NULL : ctl_table_new(ARRAY_SIZE(heads), heads);
	json_t *arr = c->json ? json_array() : NULL;
	struct store_manifest m;
	char err[512];
	int rc = CTL_OK;

	for (size_t i = 0; i < n; i++) {
		if (store_manifest_read(s, e[i].vm, e[i].id, &m, err, sizeof(err))) {
			fprintf(stderr, "cmectl: backup ls: %s\n", err);
			rc = CTL_FAIL; /* the others are still listed */
			continue;
		}
		if (arr)
			json_array_append_new(arr, manifest_json(&m));
		else
			ls_row(t, &m);
		store_manifest_free(&m);
	}
	if (arr)
		ctl_out_json(arr);
	else
		ctl_table_print(t, stdout); /* and frees it */
	return rc;
}

int ctl_cmd_backup_ls(struct ctl *c, int argc, char **argv)
{
	struct store_args a;
	const char *vm = NULL;
	const struct flag flags[] = { STORE_FLAGS(&a), { "--vm", NULL, FL_STR, NULL, &vm }, { 0 } };
	struct store_entry *e = NULL;
	struct store *s = NULL;
	size_t n = 0;
	char err[512];
	int rc;

	store_args_init(&a);
	rc = ctl_args_parse(c, "backup ls", argc, argv, flags, NULL, NULL);
	if (rc || (rc = open_store("backup ls", &a, &s)))
		return rc;
	if (store_list(s, vm, &e, &n, err, sizeof(err)))
		rc = ctl_fail("backup ls: %s", err);
	else
		rc = ls_all(c, s, e, n);
	free(e);
	store_close(s);
	return rc;
}

/* Open the store and read the backup ref names. */
static int read_ref(const char *cmd, const struct store_args *a, const char *ref, struct store **s,
		    struct store_manifest *m)
{
	char vm[STORE_NAME_MAX], id[STORE_NAME_MAX], err[512];
	int rc = open_store(cmd, a, s);

	if (rc)
		return rc;
	if (store_ref_parse(*s, ref, vm, id, err, sizeof(err)) ||
	    store_manifest_read(*s, vm, id, m, err, sizeof(err))) {
		store_close(*s);
		*s = NULL;
		return ctl_fail("%s: %s", cmd, err);
	}
	return CTL_OK;
}

static void show_text(const struct store_manifest *m)
{
	char when[40];

	printf("backup:      %s/%s\n", m->vm, m->id);
	printf("created:     %s\n", ctl_out_time(m->created_ms, when));
	printf("parent:      %s\n", ctl_out_dash(m->parent));
	printf("vm:          %llu MiB, %u vCPUs\n", (unsigned long long)(m->mem_bytes >> 20),
	       m->vcpus);
	printf("measurement: %s\n", ctl_out_dash(m->measurement));
	printf("chunks:      %llu new (%.1f MiB written), %llu already stored, %llu zero; "
	       "%u KiB each\n",
	       (unsigned long long)m->new_chunks, (double)m->new_bytes / (1 << 20),
	       (unsigned long long)m->reused_chunks, (unsigned long long)m->zero_chunks,
	       m->chunk_size >> 10);
	printf("cost:        pause %llu ms, %llu ms in all, %llu rounds\n",
	       (unsigned long long)m->pause_ms, (unsigned long long)m->total_ms,
	       (unsigned long long)m->rounds);
	for (unsigned i = 0; i < m->nareas; i++)
		printf("area:        %s at %#llx, %llu bytes in %llu chunks\n", m->areas[i].name,
		       (unsigned long long)m->areas[i].base, (unsigned long long)m->areas[i].size,
		       (unsigned long long)m->areas[i].nchunks);
}

int ctl_cmd_backup_show(struct ctl *c, int argc, char **argv)
{
	struct store_args a;
	const struct flag flags[] = { STORE_FLAGS(&a), { 0 } };
	const char *ref = NULL;
	struct store_manifest m;
	struct store *s = NULL;
	int rc;

	store_args_init(&a);
	rc = ctl_args_parse(c, "backup show", argc, argv, flags, "VM[/ID]", &ref);
	if (rc || (rc = read_ref("backup show", &a, ref, &s, &m)))
		return rc;
	if (c->json)
		ctl_out_json(manifest_json(&m));
	else
		show_text(&m);
	store_manifest_free(&m);
	store_close(s);
	return CTL_OK;
}

/* ---- verify and prune --------------------------------------------------------------- */

int ctl_cmd_backup_verify(struct ctl *c, int argc, char **argv)
{
	struct store_args a;
	const struct flag flags[] = { STORE_FLAGS(&a), { 0 } };
	const char *ref = NULL;
	struct store_manifest m;
	struct store_verify_result r;
	struct store *s = NULL;
	int rc;

	store_args_init(&a);
	rc = ctl_args_parse(c, "backup verify", argc, argv, flags, "VM[/ID]", &ref);
	if (rc || (rc = read_ref("backup verify", &a, ref, &s, &m)))
		return rc;
	rc = store_verify(s, &m, &r);
	if (rc == -EBADMSG)
		rc = ctl_fail("backup verify: %s/%s: %llu of %llu chunks missing or damaged; the "
			      "first: %s",
			      m.vm, m.id, (unsigned long long)r.bad, (unsigned long long)r.chunks,
			      r.first_bad);
	else if (rc)
		rc = ctl_fail("backup verify: %s", strerror(-rc));
	else
		printf("backup %s/%s is sound: %llu chunks (%.1f MiB) read and hashed again\n",
		       m.vm, m.id, (unsigned long long)r.chunks, (double)r.bytes / (1 << 20));
	store_manifest_free(&m);
	store_close(s);
	return rc;
}

int ctl_cmd_backup_prune(struct ctl *c, int argc, char **argv)
{
	struct store_args a;
	const char *vm = NULL, *keep_s = NULL, *age_s = NULL, *grace_s = NULL;
	const struct flag flags[] = { STORE_FLAGS(&a),
				      { "--vm", NULL, FL_STR, NULL, &vm },
				      { "--keep", NULL, FL_STR, NULL, &keep_s },
				      { "--max-age", NULL, FL_STR, NULL, &age_s },
				      { "--grace", NULL, FL_STR, NULL, &grace_s },
				      { 0 } };
	uint64_t keep = 0, age = 0, grace = 3600 * 1000;
	struct store_prune_result r;
	struct store *s = NULL;
	char err[512];
	int rc;

	store_args_init(&a);
	rc = ctl_args_parse(c, "backup prune", argc, argv, flags, NULL, NULL);
	if (!rc && keep_s)
		rc = ctl_args_uint("backup prune", "--keep", keep_s, 1, 100000, &keep);
	if (!rc && age_s && parse_duration_ms(age_s, &age))
		rc = ctl_usage("backup prune: --max-age %s: a duration such as 30d or 12h", age_s);
	if (!rc && grace_s && parse_duration_ms(grace_s, &grace))
		rc = ctl_usage("backup prune: --grace %s: a duration such as 1h or 0s", grace_s);
	if (!rc && !keep_s && !age_s)
		rc = ctl_usage("backup prune: --keep N or --max-age DURATION (or both)");
	if (rc || (rc = open_store("backup prune", &a, &s)))
		return rc;
	if (store_prune(s, vm, (unsigned)keep, age, grace, &r, err, sizeof(err)))
		rc = ctl_fail("backup prune: %s", err);
	else
		printf("pruned: %llu backups and %llu chunks removed (%.1f MiB freed), %llu chunks "
		       "kept\n",
		       (unsigned long long)r.backups_removed, (unsigned long long)r.chunks_removed,
		       (double)r.bytes_freed / (1 << 20), (unsigned long long)r.chunks_kept);
	store_close(s);
	return rc;
}

/* ---- sync ---------------------------------------------------------------------------- */

/* The second store: opened, or made (same key, same chunk size) where there is none. */
static int open_dest(const char *dir, const struct store_args *a, uint32_t chunk_size,
		     struct store **d)
{
	uint8_t key[KEY_FILE_BYTES];
	char err[512];
	int rc = key_of("backup sync", a, key);

	if (rc)
		return rc;
	rc = store_open(dir, key, d, err, sizeof(err));
	if (rc == -ENOENT && !(rc = store_create(dir, key, chunk_size, err, sizeof(err)))) {
		printf("a backup store in %s (made for the sync)\n", dir);
		rc = store_open(dir, key, d, err, sizeof(err));
	}
	sodium_memzero(key, sizeof(key));
	return rc ? ctl_fail("backup sync: %s", err) : CTL_OK;
}

int ctl_cmd_backup_sync(struct ctl *c, int argc, char **argv)
{
	struct store_args a;
	const char *to = NULL, *vm = NULL;
	const struct flag flags[] = { STORE_FLAGS(&a),
				      { "--to", NULL, FL_STR, NULL, &to },
				      { "--vm", NULL, FL_STR, NULL, &vm },
				      { 0 } };
	struct store_sync_result r = { 0 };
	struct store *s = NULL, *d = NULL;
	struct store_entry *e = NULL;
	size_t n = 0;
	char err[512];
	int rc;

	store_args_init(&a);
	rc = ctl_args_parse(c, "backup sync", argc, argv, flags, NULL, NULL);
	if (!rc && !to)
		rc = ctl_usage("backup sync: --to DIR (the second store, a mounted path)");
	if (rc || (rc = open_store("backup sync", &a, &s)))
		return rc;
	rc = open_dest(to, &a, store_chunk_size(s), &d);
	if (!rc && store_list(s, vm, &e, &n, err, sizeof(err)))
		rc = ctl_fail("backup sync: %s", err);
	for (size_t i = 0; !rc && i < n; i++)
		if (store_sync_backup(s, d, e[i].vm, e[i].id, &r, err, sizeof(err)))
			rc = ctl_fail("backup sync: %s/%s: %s", e[i].vm, e[i].id, err);
	printf("synced to %s: %llu backups copied (%llu there already), %llu chunks copied "
	       "(%llu there already), %.1f MiB\n",
	       to, (unsigned long long)r.backups_copied, (unsigned long long)r.backups_present,
	       (unsigned long long)r.chunks_copied, (unsigned long long)r.chunks_present,
	       (double)r.bytes / (1 << 20));
	free(e);
	store_close(d);
	store_close(s);
	return rc;
}
