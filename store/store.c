/* The store's folder, its keys and its chunks. */
#include "store_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define SUB	       "store"
#define KDF_CONTEXT    "cmestore"
#define KDF_NAME       1
#define KDF_SEAL       2
#define KDF_CHECK      3
#define STORE_JSON_MAX (64u << 10)

static void derive_keys(struct store *s, const uint8_t key[KEY_FILE_BYTES])
{
	crypto_kdf_derive_from_key(s->name_key, sizeof(s->name_key), KDF_NAME, KDF_CONTEXT, key);
	crypto_kdf_derive_from_key(s->seal_key, sizeof(s->seal_key), KDF_SEAL, KDF_CONTEXT, key);
}

/* 32 bytes that only the right key gives: store.json's key check. */
static void key_check(const uint8_t key[KEY_FILE_BYTES], char hex[65])
{
	static const char what[] = "cme-store-key-check";
	uint8_t k[32], h[32];

	crypto_kdf_derive_from_key(k, sizeof(k), KDF_CHECK, KDF_CONTEXT, key);
	crypto_generichash(h, sizeof(h), (const uint8_t *)what, sizeof(what) - 1, k, sizeof(k));
	sodium_bin2hex(hex, 65, h, sizeof(h));
	sodium_memzero(k, sizeof(k));
}

int store_fail(char *err, size_t len, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return rc;
}

static struct store *store_alloc(const char *dir)
{
	struct store *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->dir = strdup(dir);
	s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!s->dir || s->dirfd < 0) {
		int e = s->dir ? errno : ENOMEM;

		store_close(s);
		errno = e;
		return NULL;
	}
	return s;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	if (s->dirfd >= 0)
		close(s->dirfd);
	free(s->dir);
	sodium_memzero(s, sizeof(*s));
	free(s);
}

uint32_t store_chunk_size(const struct store *s)
{
	return s->chunk_size;
}

const char *store_dir(const struct store *s)
{
	return s->dir;
}

int store_create(const char *dir, const uint8_t key[KEY_FILE_BYTES], uint32_t chunk_size, char *err,
		 size_t len)
{
	char check[65], *text;
	struct store *s;
	json_t *j;
	int rc;

	if (chunk_size < 4096 || chunk_size > STORE_CHUNK_MAX || (chunk_size & (chunk_size - 1)))
		return store_fail(err, len, -EINVAL,
				  "chunk size %u: a power of two from 4 KiB to 16 MiB, please",
				  chunk_size);
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return store_fail(err, len, -errno, "%s: %s", dir, strerror(errno));
	s = store_alloc(dir);
	if (!s)
		return store_fail(err, len, -errno, "%s: %s", dir, strerror(errno));
	key_check(key, check);
	j = json_pack("{s:s, s:i, s:s, s:I}", "format", STORE_FORMAT, "chunk_size",
		      (json_int_t)chunk_size, "key_check", check, "created_ms",
		      (json_int_t)wall_ms());
	text = j ? json_dumps(j, JSON_INDENT(1)) : NULL;
	json_decref(j);
	rc = text ? 0 : -ENOMEM;
	if (!rc && mkdirat(s->dirfd, "chunks", 0755) && errno != EEXIST)
		rc = -errno;
	if (!rc && mkdirat(s->dirfd, "backups", 0755) && errno != EEXIST)
		rc = -errno;
	if (!rc)
		rc = store_put_file(s, ".lock", "", 0, false, false);
	if (!rc)
		rc = store_put_file(s, "store.json", text, strlen(text), true, true);
	free(text);
	store_close(s);
	if (rc == -EEXIST)
		return store_fail(err, len, rc, "%s holds a store already", dir);
	return rc ? store_fail(err, len, rc, "%s: cannot make a store: %s", dir, strerror(-rc)) : 0;
}

/* store.json: its format, chunk size and key check. */
static int read_meta(struct store *s, const uint8_t key[KEY_FILE_BYTES], char *err, size_t len)
{
	char check[65];
	uint8_t *text = NULL;
	size_t n = 0;
	json_t *j = NULL;
	const char *fmt = NULL, *kc = NULL;
	json_int_t cs = 0;
	int rc = store_get_file(s, "store.json", STORE_JSON_MAX, &text, &n);

	if (rc == -ENOENT)
		return store_fail(err, len, rc, "%s is not a backup store (no store.json)", s->dir);
	if (rc)
		return store_fail(err, len, rc, "%s/store.json: %s", s->dir, strerror(-rc));
	j = json_loadb((const char *)text, n, 0, NULL);
	free(text);
	if (!j ||
	    json_unpack(j, "{s:s, s:I, s:s}", "format", &fmt, "chunk_size", &cs, "key_check",
			&kc) ||
	    strcmp(fmt, STORE_FORMAT) || cs < 4096 || cs > STORE_CHUNK_MAX || (cs & (cs - 1))) {
		json_decref(j);
		return store_fail(err, len, -EINVAL,
				  "%s/store.json is damaged or of another format", s->dir);
	}
	s->chunk_size = (uint32_t)cs;
	key_check(key, check);
	rc = strlen(kc) != 64 || sodium_memcmp(check, kc, 64) ? -EKEYREJECTED : 0;
	json_decref(j);
	return rc ? store_fail(err, len, rc, "wrong key for the store in %s", s->dir) : 0;
}

int store_open(const char *dir, const uint8_t key[KEY_FILE_BYTES], struct store **out, char *err,
	       size_t len)
{
	struct store *s = store_alloc(dir);
	int rc;

	*out = NULL;
	if (!s) {
		rc = -errno;
		if (rc == -ENOENT || rc == -ENOTDIR)
			return store_fail(err, len, -ENOENT, "%s is not a backup store (%s)", dir,
					  strerror(-rc));
		return store_fail(err, len, rc, "%s: %s", dir, strerror(-rc));
	}
	rc = read_meta(s, key, err, len);
	if (rc) {
		store_close(s);
		return rc;
	}
	derive_keys(s, key);
	*out = s;
	return 0;
}

/* ---- sealing ------------------------------------------------------------------------ */

int store_seal(const struct store *s, const char *magic, const void *ad, size_t adlen,
	       const void *plain, size_t len, uint8_t **out, size_t *outlen)
{
	uint8_t *b = malloc(STORE_SEAL_OVERHEAD + len);
	unsigned long long clen = 0;

	if (!b)
		return -ENOMEM;
	memcpy(b, magic, 8);
	randombytes_buf(b + 8, STORE_NONCE);
	crypto_aead_xchacha20poly1305_ietf_encrypt(b + 8 + STORE_NONCE, &clen, plain, len, ad,
						   adlen, NULL, b + 8, s->seal_key);
	*out = b;
	*outlen = 8 + STORE_NONCE + (size_t)clen;
	return 0;
}

int store_unseal(const struct store *s, const char *magic, const void *ad, size_t adlen,
		 const uint8_t *in, size_t inlen, uint8_t *plain, size_t *len)
{
	unsigned long long mlen = 0;

	if (inlen < STORE_SEAL_OVERHEAD || memcmp(in, magic, 8))
		return -EBADMSG;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &mlen, NULL, in + 8 + STORE_NONCE,
						       inlen - 8 - STORE_NONCE, ad, adlen, in + 8,
						       s->seal_key))
		return -EBADMSG;
	*len = (size_t)mlen;
	return 0;
}

/* ---- files -------------------------------------------------------------------------- */

static int mkdir_parent(struct store *s, const char *path)
{
	char dir[512];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash)
		return 0;
	*slash = 0;
	if (!mkdirat(s->dirfd, dir, 0755) || errno == EEXIST)
		return 0;
	if (errno != ENOENT)
		return -errno;
	if (mkdir_parent(s, dir))
		return -errno;
	return mkdirat(s->dirfd, dir, 0755) && errno != EEXIST ? -errno : 0;
}

static int write_tmp(struct store *s, char tmp[64], const void *data, size_t len, bool sync)
{
	uint8_t r[8];
	char hex[17];
	int fd, rc = 0;

	if (mkdirat(s->dirfd, ".tmp", 0755) && errno != EEXIST)
		return -errno;
	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(hex, sizeof(hex), r, sizeof(r));
	snprintf(tmp, 64, ".tmp/%s", hex);
	fd = openat(s->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return -errno;
	if (write_all(fd, data, len) || (sync && fsync(fd)))
		rc = errno ? -errno : -EIO;
	close(fd);
	if (rc)
		unlinkat(s->dirfd, tmp, 0);
	return rc;
}

int store_put_file(struct store *s, const char *path, const void *data, size_t len, bool excl,
		   bool sync)
{
	char tmp[64];
	int rc = mkdir_parent(s, path);

	if (!rc)
		rc = write_tmp(s, tmp, data, len, sync);
	if (rc)
		return rc;
	/* linkat refuses an existing name: the exclusive case, no window between check and
	 * rename. Otherwise rename replaces atomically. */
	if (excl)
		rc = linkat(s->dirfd, tmp, s->dirfd, path, 0) ? -errno : 0;
	else
		rc = renameat(s->dirfd, tmp, s->dirfd, path) ? -errno : 0;
	if (excl || rc)
		unlinkat(s->dirfd, tmp, 0);
	if (!rc && sync)
		rc = store_sync(s);
	return rc;
}

int store_get_file(struct store *s, const char *path, size_t max, uint8_t **out, size_t *len)
{
	struct stat st;
	uint8_t *b;
	int fd = openat(s->dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), rc = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		return -EFBIG;
	}
	b = malloc(st.st_size ? st.st_size : 1);
	if (!b)
		rc = -ENOMEM;
	else if (read_full(fd, b, st.st_size))
		rc = errno ? -errno : -EIO;
	close(fd);
	if (rc) {
		free(b);
		return rc;
	}
	*out = b;
	*len = st.st_size;
	return 0;
}

int store_lock(struct store *s, bool exclusive, bool wait)
{
	/* Read-write for the exclusive lock: over NFS flock becomes a POSIX lock, which
	 * needs it. store_create makes the file; a store without one gets it here. */
	int fd = openat(s->dirfd, ".lock",
			(exclusive ? O_RDWR : O_RDONLY) | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);

	if (fd < 0)
		return -errno;
	if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB))) {
		int e = errno;

		close(fd);
		return e == EWOULDBLOCK ? -EBUSY : -e;
	}
	return fd;
}

void store_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}

int store_sync(struct store *s)
{
	return syncfs(s->dirfd) ? -errno : 0;
}

/* ---- chunks ------------------------------------------------------------------------- */

bool store_id_is_zero(const struct store_id *id)
{
	return mem_is_zero(id->b, sizeof(id->b));
}

void store_id_hex(const struct store_id *id, char out[STORE_ID_HEX + 1])
{
	sodium_bin2hex(out, STORE_ID_HEX + 1, id->b, sizeof(id->b));
}

int store_id_parse(const char *hex, struct store_id *id)
{
	return hex_parse(hex, id->b, sizeof(id->b));
}

void store_chunk_id(const struct store *s, const void *data, size_t len, struct store_id *id)
{
	if (mem_is_zero(data, len)) {
		memset(id, 0, sizeof(*id));
		return;
	}
	crypto_generichash(id->b, sizeof(id->b), data, len, s->name_key, sizeof(s->name_key));
}

void store_chunk_path(const struct store_id *id, char out[STORE_ID_HEX + 16])
{
	char hex[STORE_ID_HEX + 1];

	store_id_hex(id, hex);
	snprintf(out, STORE_ID_HEX + 16, "chunks/%.2s/%s", hex, hex);
}

/* A chunk there already, of the size len bytes seal to: touch it (prune's grace). */
static bool chunk_present(struct store *s, const char *path, size_t len)
{
	struct stat st;

	if (fstatat(s->dirfd, path, &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != STORE_SEAL_OVERHEAD + len)
		return false;
	/* Not touched (another user's file): written again, so that its time is fresh. */
	return utimensat(s->dirfd, path, NULL, AT_SYMLINK_NOFOLLOW) == 0;
}

int store_chunk_put(struct store *s, const struct store_id *id, const void *data, size_t len,
		    bool *added, char *err, size_t errlen)
{
	char path[STORE_ID_HEX + 16];
	uint8_t *sealed = NULL;
	size_t n = 0;
	int rc;

	*added = false;
	if (store_id_is_zero(id))
		return 0;
	if (len > s->chunk_size)
		return store_fail(err, errlen, -EINVAL,
				  "a chunk of %zu bytes is over the store's %u", len,
				  s->chunk_size);
	store_chunk_path(id, path);
	if (chunk_present(s, path, len))
		return 0;
	rc = store_seal(s, STORE_CHUNK_MAGIC, id->b, sizeof(id->b), data, len, &sealed, &n);
	if (!rc)
		rc = store_put_file(s, path, sealed, n, false, false);
	free(sealed);
	if (rc)
		return store_fail(err, errlen, rc, "%s/%s: %s", s->dir, path, strerror(-rc));
	*added = true;
	return 0;
}

int store_chunk_get(struct store *s, const struct store_id *id, void *buf, size_t len, char *err,
		    size_t errlen)
{
	char path[STORE_ID_HEX + 16];
	struct store_id again;
	uint8_t *sealed = NULL;
	size_t n = 0, got = 0;
	int rc;

	if (store_id_is_zero(id)) {
		memset(buf, 0, len);
		return 0;
	}
	store_chunk_path(id, path);
	rc = store_get_file(s, path, STORE_SEAL_OVERHEAD + (size_t)s->chunk_size, &sealed, &n);
	if (rc == -ENOENT)
		return store_fail(err, errlen, rc, "chunk %s is missing", path + 10);
	if (rc == -EFBIG)
		rc = -EBADMSG;
	if (!rc && n != STORE_SEAL_OVERHEAD + len)
		rc = -EBADMSG;
	if (!rc)
		rc = store_unseal(s, STORE_CHUNK_MAGIC, id->b, sizeof(id->b), sealed, n, buf, &got);
	free(sealed);
	if (!rc) {
		store_chunk_id(s, buf, got, &again);
		rc = sodium_memcmp(again.b, id->b, sizeof(id->b)) ? -EBADMSG : 0;
	}
	if (rc == -EBADMSG)
		return store_fail(err, errlen, rc,
				  "chunk %s is damaged (truncated, tampered or not of this store)",
				  path + 10);
	return rc ? store_fail(err, errlen, rc, "chunk %s: %s", path + 10, strerror(-rc)) : 0;
}
