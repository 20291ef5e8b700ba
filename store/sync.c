/* Copying backups to a second store (a disaster-recovery site's, on a mounted path): the
 * sealed files as they are, only the chunks the other store lacks, each backup's manifest
 * last. Both stores have the same key, so chunk names agree and either restores. */
#include "store_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* One file from src to dst (relative path), as it is. */
static int copy_file(struct store *src, struct store *dst, const char *path, size_t max, bool excl,
		     uint64_t *bytes)
{
	uint8_t *data = NULL;
	size_t n = 0;
	int rc = store_get_file(src, path, max, &data, &n);

	if (!rc)
		rc = store_put_file(dst, path, data, n, excl, false);
	if (!rc)
		*bytes += n;
	free(data);
	return rc;
}

static bool has_file(struct store *s, const char *path, uint64_t size)
{
	struct stat st;

	return !fstatat(s->dirfd, path, &st, AT_SYMLINK_NOFOLLOW) && S_ISREG(st.st_mode) &&
	       (!size || (uint64_t)st.st_size == size);
}

/* The chunks of m that dst lacks. */
static int copy_chunks(struct store *src, struct store *dst, const struct store_manifest *m,
		       struct store_sync_result *r, char *err, size_t len)
{
	char path[STORE_ID_HEX + 16];

	for (unsigned a = 0; a < m->nareas; a++) {
		const struct store_area *ar = &m->areas[a];

		for (uint64_t i = 0; i < ar->nchunks; i++) {
			uint64_t n = store_chunk_len(ar, i, m->chunk_size);
			int rc;

			if (store_id_is_zero(&ar->chunks[i]))
				continue;
			store_chunk_path(&ar->chunks[i], path);
			if (has_file(dst, path, STORE_SEAL_OVERHEAD + n)) {
				r->chunks_present++;
				continue;
			}
			rc = copy_file(src, dst, path, STORE_SEAL_OVERHEAD + (size_t)n, false,
				       &r->bytes);
			if (rc)
				return store_fail(err, len, rc, "copying chunk %s: %s", path + 10,
						  strerror(-rc));
			r->chunks_copied++;
		}
	}
	return 0;
}

int store_sync_backup(struct store *src, struct store *dst, const char *vm, const char *id,
		      struct store_sync_result *r, char *err, size_t len)
{
	char path[3 * STORE_NAME_MAX];
	struct store_manifest m;
	int rc;

	if (src->chunk_size != dst->chunk_size)
		return store_fail(err, len, -EINVAL, "the stores' chunk sizes differ (%u and %u)",
				  src->chunk_size, dst->chunk_size);
	snprintf(path, sizeof(path), "backups/%s/%s", vm, id);
	if (has_file(dst, path, 0)) {
		r->backups_present++;
		return 0;
	}
	/* Read (and so authenticate) the manifest: a damaged one is not spread further. */
	rc = store_manifest_read(src, vm, id, &m, err, len);
	if (rc)
		return rc;
	rc = copy_chunks(src, dst, &m, r, err, len);
	store_manifest_free(&m);
	if (!rc && (rc = store_sync(dst)))
		return store_fail(err, len, rc, "%s: %s", dst->dir, strerror(-rc));
	if (!rc && (rc = copy_file(src, dst, path, STORE_MANIFEST_MAX, true, &r->bytes)))
		return store_fail(err, len, rc, "copying backup %s/%s: %s", vm, id, strerror(-rc));
	if (!rc && (rc = store_sync(dst)))
		return store_fail(err, len, rc, "%s: %s", dst->dir, strerror(-rc));
	if (!rc)
		r->backups_copied++;
	return rc;
}
