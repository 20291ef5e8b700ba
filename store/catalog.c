/* What a store holds: listing backups, naming one, verifying, pruning. */
#include "store_priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static DIR *open_dir(struct store *s, const char *path)
{
	int fd = openat(s->dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

	if (fd >= 0 && !d)
		close(fd);
	return d;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct store_entry *x = a, *y = b;
	int c = strcmp(x->vm, y->vm);

	return c ? c : strcmp(x->id, y->id);
}

/* The manifests of one VM's folder appended to *out. */
static int list_vm(struct store *s, const char *vm, struct store_entry **out, size_t *n,
		   size_t *cap)
{
	char path[STORE_NAME_MAX + 16];
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "backups/%s", vm);
	d = open_dir(s, path);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		if (!store_name_ok(de->d_name))
			continue;
		if (*n == *cap) {
			size_t nc = *cap ? 2 * *cap : 64;
			struct store_entry *e = realloc(*out, nc * sizeof(*e));

			if (!e) {
				closedir(d);
				return -ENOMEM;
			}
			*out = e;
			*cap = nc;
		}
		snprintf((*out)[*n].vm, STORE_NAME_MAX, "%s", vm);
		snprintf((*out)[*n].id, STORE_NAME_MAX, "%.63s", de->d_name);
		(*n)++;
	}
	closedir(d);
	return 0;
}

int store_list(struct store *s, const char *vm, struct store_entry **out, size_t *n, char *err,
	       size_t len)
{
	size_t cap = 0;
	struct dirent *de;
	DIR *d;
	int rc = 0;

	*out = NULL;
	*n = 0;
	if (vm) {
		if (!store_name_ok(vm))
			return store_fail(err, len, -EINVAL, "\"%s\" cannot name a VM", vm);
		rc = list_vm(s, vm, out, n, &cap);
	} else if (!(d = open_dir(s, "backups"))) {
		rc = -errno;
	} else {
		while (!rc && (de = readdir(d)))
			if (store_name_ok(de->d_name))
				rc = list_vm(s, de->d_name, out, n, &cap);
		closedir(d);
	}
	if (rc) {
		free(*out);
		*out = NULL;
		*n = 0;
		return store_fail(err, len, rc, "listing %s: %s", s->dir, strerror(-rc));
	}
	if (*n)
		qsort(*out, *n, sizeof(**out), entry_cmp);
	return 0;
}

int store_ref_parse(struct store *s, const char *ref, char vm[STORE_NAME_MAX],
		    char id[STORE_NAME_MAX], char *err, size_t len)
{
	const char *slash = strchr(ref, '/');
	struct store_entry *e = NULL;
	size_t n = 0;
	int rc;

	if (slash) {
		if ((size_t)(slash - ref) >= STORE_NAME_MAX || strlen(slash + 1) >= STORE_NAME_MAX)
			return store_fail(err, len, -EINVAL, "\"%s\" cannot name a backup", ref);
		snprintf(vm, STORE_NAME_MAX, "%.*s", (int)(slash - ref), ref);
		snprintf(id, STORE_NAME_MAX, "%s", slash + 1);
		return store_name_ok(vm) && store_name_ok(id)
			       ? 0
			       : store_fail(err, len, -EINVAL, "\"%s\" cannot name a backup", ref);
	}
	if (!store_name_ok(ref))
		return store_fail(err, len, -EINVAL, "\"%s\" cannot name a backup (VM or VM/ID)",
				  ref);
	rc = store_list(s, ref, &e, &n, err, len);
	if (!rc && !n)
		rc = store_fail(err, len, -ENOENT, "no backup of %s in %s", ref, s->dir);
	if (!rc) {
		snprintf(vm, STORE_NAME_MAX, "%s", e[n - 1].vm);
		snprintf(id, STORE_NAME_MAX, "%s", e[n - 1].id);
	}
	free(e);
	return rc;
}

/* ---- verify ------------------------------------------------------------------------- */

int store_verify(struct store *s, const struct store_manifest *m, struct store_verify_result *r)
{
	uint8_t *buf = malloc(s->chunk_size);
	char why[400];

	memset(r, 0, sizeof(*r));
	if (!buf)
		return -ENOMEM;
	for (unsigned a = 0; a < m->nareas; a++) {
		const struct store_area *ar = &m->areas[a];

		for (uint64_t i = 0; i < ar->nchunks; i++) {
			uint64_t off = i * s->chunk_size;
			size_t n = store_chunk_len(ar, i, s->chunk_size);

			if (store_id_is_zero(&ar->chunks[i]))
				continue;
			r->chunks++;
			if (!store_chunk_get(s, &ar->chunks[i], buf, n, why, sizeof(why))) {
				r->bytes += n;
				continue;
			}
			if (!r->bad++)
				snprintf(r->first_bad, sizeof(r->first_bad), "%s (%s at byte %llu)",
					 why, ar->name, (unsigned long long)off);
		}
	}
	free(buf);
	return r->bad ? -EBADMSG : 0;
}

/* ---- prune -------------------------------------------------------------------------- */

static int id_cmp(const void *a, const void *b)
{
	return memcmp(a, b, STORE_ID_BYTES);
}

/* Every chunk ID the remaining manifests name, sorted. Any manifest that cannot be read
 * stops the prune: its chunks would otherwise look unused. */
static int mark(struct store *s, struct store_id **ids, size_t *n, char *err, size_t len)
{
	struct store_entry *e = NULL;
	size_t ne = 0, cap = 0;
	struct store_manifest m;
	int rc = store_list(s, NULL, &e, &ne, err, len);

	*ids = NULL;
	*n = 0;
	for (size_t i = 0; !rc && i < ne; i++) {
		rc = store_manifest_read(s, e[i].vm, e[i].id, &m, err, len);
		for (unsigned a = 0; !rc && a < m.nareas; a++) {
			size_t add = m.areas[a].nchunks;

			if (*n + add > cap) {
				struct store_id *p;

				cap = 2 * (*n + add);
				p = realloc(*ids, cap * sizeof(*p));
				if (!p) {
					rc = -ENOMEM;
					break;
				}
				*ids = p;
			}
			memcpy(*ids + *n, m.areas[a].chunks, add * sizeof(**ids));
			*n += add;
		}
		if (m.nareas) /* read (ENOMEM may come after) */
			store_manifest_free(&m);
	}
	free(e);
	if (rc) {
		free(*ids);
		*ids = NULL;
		*n = 0;
	}
	if (!rc && *n)
		qsort(*ids, *n, sizeof(**ids), id_cmp);
	return rc;
}

/* Remove the files of dir (relative to the store) that are neither named by ids (when a
 * chunk folder) nor younger than the cut-off. */
static void sweep_dir(struct store *s, const char *dir, const struct store_id *ids, size_t n,
		      bool chunks, time_t cutoff, struct store_prune_result *r)
{
	char path[300];
	struct store_id id;
	struct dirent *de;
	struct stat st;
	DIR *d = open_dir(s, dir);

	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (fstatat(s->dirfd, path, &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode))
			continue;
		if (chunks && !store_id_parse(de->d_name, &id) &&
		    bsearch(&id, ids, n, sizeof(id), id_cmp)) {
			r->chunks_kept++;
			continue;
		}
		if (st.st_mtime >= cutoff || unlinkat(s->dirfd, path, 0))
			continue;
		if (chunks) {
			r->chunks_removed++;
			r->bytes_freed += st.st_size;
		}
	}
	if (d)
		closedir(d);
}

static int gc(struct store *s, uint64_t grace_ms, struct store_prune_result *r, char *err,
	      size_t len)
{
	time_t cutoff = (time_t)((wall_ms() - grace_ms) / 1000);
	struct store_id *ids = NULL;
	size_t n = 0;
	char dir[16];
	int lock = store_lock(s, true, false), rc;

	if (lock == -EBUSY) {
		r->gc_skipped = true;
		return 0;
	}
	if (lock < 0)
		return store_fail(err, len, lock, "%s/.lock: %s", s->dir, strerror(-lock));
	rc = mark(s, &ids, &n, err, len);
	if (rc) {
		store_unlock(lock);
		return rc;
	}
	if (grace_ms == 0)
		cutoff++; /* mtime has whole seconds here: "now" too is past */
	for (unsigned i = 0; i < 256; i++) {
		snprintf(dir, sizeof(dir), "chunks/%02x", i);
		sweep_dir(s, dir, ids, n, true, cutoff, r);
	}
	sweep_dir(s, ".tmp", NULL, 0, false, cutoff, r);
	free(ids);
	store_unlock(lock);
	return 0;
}

/* Remove the backups of one VM past the limits (the newest always stays). */
static int prune_vm(struct store *s, const struct store_entry *e, size_t n, unsigned keep,
		    uint64_t max_age_ms, struct store_prune_result *r, char *err, size_t len)
{
	char path[3 * STORE_NAME_MAX];
	struct store_manifest m;
	uint64_t now = wall_ms();

	for (size_t i = 0; i + 1 < n; i++) {
		bool old = false;

		if (max_age_ms) {
			int rc = store_manifest_read(s, e[i].vm, e[i].id, &m, err, len);

			if (rc)
				return rc;
			old = m.created_ms + max_age_ms < now;
			store_manifest_free(&m);
		}
		if (!old && !(keep && n - i > keep))
			continue;
		snprintf(path, sizeof(path), "backups/%s/%s", e[i].vm, e[i].id);
		if (unlinkat(s->dirfd, path, 0))
			return store_fail(err, len, -errno, "removing backup %s/%s: %s", e[i].vm,
					  e[i].id, strerror(errno));
		r->backups_removed++;
	}
	return 0;
}

int store_prune(struct store *s, const char *vm, unsigned keep, uint64_t max_age_ms,
		uint64_t grace_ms, struct store_prune_result *r, char *err, size_t len)
{
	struct store_entry *e = NULL;
	size_t n = 0, from = 0;
	int rc = store_list(s, vm, &e, &n, err, len);

	memset(r, 0, sizeof(*r));
	for (size_t i = 1; !rc && i <= n; i++)
		if (i == n || strcmp(e[i].vm, e[from].vm)) {
			rc = prune_vm(s, e + from, i - from, keep, max_age_ms, r, err, len);
			from = i;
		}
	free(e);
	if (!rc && r->backups_removed && (rc = store_sync(s)))
		store_fail(err, len, rc, "%s: %s", s->dir, strerror(-rc));
	return rc ? rc : gc(s, grace_ms, r, err, len);
}
