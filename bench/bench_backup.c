/* Backups: live backups of a dirtying 1 GiB guest into a store on the test's disk, against
 * the raw write speed of that disk in the same run; incremental backups after the guest
 * rewrote about a tenth of its memory; restore to the first heartbeat. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "common.h"
#include "harness.h"

#define RUNS	  3
#define RAW_BYTES (256u << 20)

static void emit_error(const char *what)
{
	printf("{\"bench\":\"backup\",\"error\":\"%s\"}\n", what);
	fflush(stdout);
}

/* MiB/s of writing RAW_BYTES of random bytes to a file in dir, synced. */
static double raw_write_mib_s(const char *dir)
{
	char path[700];
	size_t chunk = 1u << 20;
	uint8_t *buf = malloc(chunk);
	uint64_t t0;
	int fd;
	double mib_s = 0;

	snprintf(path, sizeof(path), "%s/raw.bin", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || !buf)
		goto out;
	for (size_t i = 0; i < chunk; i++)
		buf[i] = (uint8_t)(rand() >> 7);
	t0 = now_ns();
	for (size_t done = 0; done < RAW_BYTES; done += chunk)
		if (write_all(fd, buf, chunk))
			goto out;
	if (fsync(fd) == 0)
		mib_s = (double)(RAW_BYTES >> 20) * 1e9 / (double)(now_ns() - t0);
out:
	if (fd >= 0)
		close(fd);
	unlink(path);
	free(buf);
	return mib_s;
}

/* One `cme-vmm backup`: its final status, or NULL. */
static json_t *backup_once(struct vmm_proc *p, const char *store, const char *key)
{
	const char *argv[] = {
		test_bin("cme-vmm"), "backup", "--api", p->api, "--store", store, "--key", key, NULL
	};
	char *out = NULL, *last;
	json_t *st = NULL;

	if (test_run(argv, &out, 600000) == 0 && out) {
		size_t n = strlen(out);

		while (n && out[n - 1] == '\n')
			out[--n] = 0;
		last = strrchr(out, '\n');
		st = json_loads(last ? last + 1 : out, 0, NULL);
	}
	free(out);
	return st;
}

static double stat_d(json_t *st, const char *k)
{
	json_t *v = json_object_get(json_object_get(st, "stats"), k);

	return json_is_real(v) ? json_real_value(v) : (double)json_integer_value(v);
}

static bool last_pages(struct vmm_proc *p, uint64_t *pages)
{
	struct heartbeat hb;

	if (!vmm_last_heartbeat(p, &hb))
		return false;
	*pages = hb.pages;
	return true;
}

/* Process start of `cme-vmm restore --store` to its first heartbeat. */
static bool restore_once(const char *store, const char *key, bool eager, double *ms)
{
	const char *args[] = { "--store", store,    "--key", key,
			       "bench",	  "--name", "bench", eager ? "--eager" : NULL,
			       NULL };
	struct vmm_proc p;
	uint64_t t0 = now_ns();
	bool ok;

	if (vmm_start_verb(&p, "restore", args) < 0)
		return false;
	ok = bench_console_wait_fine(&p, "HB seq=", 60000);
	*ms = (double)(now_ns() - t0) / 1e6;
	vmm_kill(&p);
	return ok;
}

static void run(struct vmm_proc *p, const char *store, const char *key, double raw)
{
	double pause[RUNS], mib_s[RUNS], ratio[RUNS], total[RUNS], restore[RUNS], lazy[RUNS];
	const char *const live_keys[] = { "pause_ms", "total_ms", "mib_s", NULL };
	const char *const inc_keys[] = { "new_fraction", "pause_ms", NULL };
	const char *const rs_keys[] = { "to_first_hb_ms", NULL };
	double *live[] = { pause, total, mib_s }, *inc[] = { ratio, pause }, *rs[] = { restore },
	       *lz[] = { lazy };
	uint64_t pages = 0;
	struct heartbeat hb;
	json_t *st;

	for (int i = 0; i < RUNS; i++) { /* full: each into a store of its own would be the same */
		st = backup_once(p, store, key);
		if (!st)
			return emit_error("a live backup failed");
		pause[i] = stat_d(st, "pause_ms");
		total[i] = stat_d(st, "total_ms");
		mib_s[i] = stat_d(st, "mib_s");
		json_decref(st);
	}
	bench_emit_many("backup_live_1g_dirtying_64mib_s", RUNS, live_keys, live);
	printf("{\"bench\":\"backup_store_raw_write\",\"unit\":\"MiB/s\",\"median\":%.1f,"
	       "\"note\":\"256 MiB of random bytes written and fsynced to the store's disk\"}\n",
	       raw);
	for (int i = 0; i < RUNS; i++) { /* about a tenth rewritten, then a backup */
		if (!last_pages(p, &pages) ||
		    !vmm_wait_pages(p, pages + (102u << 20) / 4096, 60000, &hb))
			return emit_error("the guest did not rewrite a tenth of its memory");
		st = backup_once(p, store, key);
		if (!st)
			return emit_error("an incremental backup failed");
		ratio[i] = stat_d(st, "new_bytes") / (double)(1u << 30);
		pause[i] = stat_d(st, "pause_ms");
		json_decref(st);
	}
	bench_emit_many("backup_incremental_after_10pct", RUNS, inc_keys, inc);
	vmm_kill(p);
	for (int i = 0; i < RUNS; i++)
		if (!restore_once(store, key, false, &lazy[i]) ||
		    !restore_once(store, key, true, &restore[i]))
			return emit_error("a restore from the store failed");
	bench_emit_many("backup_restore_lazy_1g", RUNS, rs_keys, lz);
	bench_emit_many("backup_restore_eager_1g", RUNS, rs_keys, rs);
}

void bench_backup(void)
{
	const char *args[] = { "--mem",	  "1G",		"--vcpus",   "2",
			       "--image", test_guest(), "--cmdline", "wss_mb=256 dirty_rate=64",
			       "--name",  "bench",	NULL };
	char store[600], key[600], *out = NULL;
	const char *dir = test_tmpdir();
	struct vmm_proc p;
	struct heartbeat hb;
	double raw;

	snprintf(store, sizeof(store), "%s/store", dir);
	snprintf(key, sizeof(key), "%s/key", dir);
	const char *keygen[] = { test_bin("cmectl"), "backup", "keygen", key, NULL };
	const char *init[] = {
		test_bin("cmectl"), "backup", "init", "--store", store, "--key", key, NULL
	};

	if (test_run(keygen, &out, 10000) || (free(out), out = NULL, test_run(init, &out, 10000)))
		return free(out), emit_error("cannot make a store");
	free(out);
	raw = raw_write_mib_s(store);
	if (vmm_start(&p, args) < 0)
		return emit_error("cannot start cme-vmm");
	if (!vmm_wait_pages(&p, 2 * (256u << 20) / 4096, 60000, &hb))
		emit_error("the working set was not written in 60 s");
	else
		run(&p, store, key, raw);
	vmm_kill(&p);
}
