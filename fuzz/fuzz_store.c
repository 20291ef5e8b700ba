/* The backup store's parsers: a store.json as a folder might hold it (read before any key
 * check), and a manifest's JSON once it has authenticated — sealed here with the store's
 * own key, as a buggy or hostile holder of the key could have written it — then listed,
 * read and verified as `cmectl backup` does (its chunks are missing: verify must say so,
 * never read out of bounds). The first input byte picks which. */
#include "fuzz.h"
#include "store_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

static const uint8_t key[KEY_FILE_BYTES] = { 1, 2, 3 };
static char dir[64];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(path) < 0 ? 0 : 0;
}

/* The store's folder goes with the process (make test replays in the unit runner). */
static void remove_store(void)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* One store for the whole run, in a folder of its own. */
static struct store *fuzz_store_get(void)
{
	static struct store *s;
	char err[512];

	if (s)
		return s;
	snprintf(dir, sizeof(dir), "/tmp/cme-fuzz-store.%d", (int)getpid());
	if (store_create(dir, key, 4096, err, sizeof(err)) && !strstr(err, "already"))
		return NULL;
	atexit(remove_store);
	if (store_open(dir, key, &s, err, sizeof(err)))
		s = NULL;
	return s;
}

static void meta(struct store *s, const uint8_t *data, size_t size)
{
	char mdir[96], path[128], err[512];
	struct store *o = NULL;

	snprintf(mdir, sizeof(mdir), "%s/meta", store_dir(s));
	mkdir(mdir, 0700);
	snprintf(path, sizeof(path), "%s/store.json", mdir);
	unlink(path);
	if (write_file_atomic(path, data, size))
		return;
	if (!store_open(mdir, key, &o, err, sizeof(err)))
		store_close(o);
}

static void manifest(struct store *s, const uint8_t *data, size_t size)
{
	struct store_manifest m;
	struct store_verify_result r;
	struct store_entry *e = NULL;
	uint8_t *sealed = NULL;
	size_t n = 0, ne = 0;
	char err[512];

	if (store_seal(s, STORE_MANI_MAGIC, "vm/id", 5, data, size, &sealed, &n))
		return;
	if (!store_put_file(s, "backups/vm/id", sealed, n, false, false) &&
	    !store_manifest_read(s, "vm", "id", &m, err, sizeof(err))) {
		if (store_verify(s, &m, &r) == 0 && r.chunks)
			abort(); /* chunks that are not there, found */
		store_manifest_free(&m);
	}
	if (!store_list(s, NULL, &e, &ne, err, sizeof(err)))
		free(e);
	free(sealed);
}

int fuzz_store(const uint8_t *data, size_t size)
{
	struct store *s = fuzz_store_get();

	if (!s || !size)
		return 0;
	if (data[0] & 1)
		meta(s, data + 1, size - 1);
	else
		manifest(s, data + 1, size - 1);
	return 0;
}
