/* Backups in the cluster: the node that owns a VM runs what vms/<vm>/backup asks — by
 * cmectl vm backup, or by the VM's schedule when one is due — through its VMM, into a
 * store of this node's configuration, then prunes the VM's backups to the schedule's
 * keep. Main thread; each step is one quick control request, never a wait. */
#include "cd_priv.h"
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SUB	       "backup"
#define PRUNE_GRACE_MS (3600 * 1000) /* chunks a running backup may reuse stay an hour */

/* Write b as vms/<vm>/backup unless it changed since the read. 1 swapped, 0 lost, -errno. */
static int backup_cas(struct cd *cd, const char *vm, struct cl_backup *b)
{
	struct etcd_err err = { "" };
	char key[256];
	int rc;

	b->updated_ms = wall_ms();
	cd_key(cd, key, sizeof(key), "vms", vm, "backup");
	rc = cd_cas_json(cd, key, &b->mod_rev, cl_backup_json(b), &err);
	if (rc < 0)
		log_warn(SUB, "vm=%s backup=%s: update to %s: %s", vm, b->id, b->phase, err.msg);
	return rc;
}

static void backup_fail(struct cd *cd, const char *vm, struct cl_backup *b, const char *fmt, ...)
	CME_PRINTF(4, 5);
static void backup_fail(struct cd *cd, const char *vm, struct cl_backup *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(b->error, sizeof(b->error), fmt, ap);
	va_end(ap);
	snprintf(b->phase, sizeof(b->phase), "failed");
	snprintf(b->node, sizeof(b->node), "%s", cd->cfg->node);
	if (backup_cas(cd, vm, b) == 1)
		cd_event(cd, vm, "backup-failed", "backup of %s failed: %s", vm, b->error);
}

/* The store's folder and key for b, or why not (the record is failed). */
static bool store_of(struct cd *cd, const char *vm, struct cl_backup *b, char *dir, size_t len,
		     uint8_t key[KEY_FILE_BYTES])
{
	char err[512];

	if (cd_config_store(cd->cfg, b->store, dir, len)) {
		backup_fail(cd, vm, b, "node %s has no backup store %s%s%s (config backup_stores)",
			    cd->cfg->node, b->store[0] ? "\"" : "",
			    b->store[0] ? b->store : "at all", b->store[0] ? "\"" : "");
		return false;
	}
	if (!cd->cfg->backup_key[0] || key_file_load(cd->cfg->backup_key, key, err, sizeof(err))) {
		backup_fail(cd, vm, b, "node %s has no key for its stores: %s", cd->cfg->node,
			    cd->cfg->backup_key[0] ? err : "config backup_key is not set");
		return false;
	}
	return true;
}

/* With jail_user, a jailed VMM writes the store as that user: its folders (every one a
 * chunk or manifest is made in) and store.json become that user's, as libvirt hands a
 * guest's images to its qemu user. Files already in it are left as they are. */
static int hand_store(struct cd *cd, const char *dir, char *why, size_t len)
{
	static const char *const top[] = { "", "/store.json", "/chunks", "/backups", "/.tmp" };
	char path[CL_PATH_MAX + 32];
	long uid, gid;

	if (!cd->cfg->jail || !cd->cfg->jail_root || !cd->cfg->jail_user[0])
		return 0;
	if (parse_user(cd->cfg->jail_user, &uid, &gid))
		return snprintf(why, len, "jail_user %s is no user", cd->cfg->jail_user), -EINVAL;
	for (unsigned i = 0; i < ARRAY_SIZE(top) + 256; i++) {
		if (i < ARRAY_SIZE(top))
			snprintf(path, sizeof(path), "%s%s", dir, top[i]);
		else
			snprintf(path, sizeof(path), "%s/chunks/%02x", dir,
				 i - (unsigned)ARRAY_SIZE(top));
		if (i != 1 && mkdir(path, 0755) && errno != EEXIST)
			return snprintf(why, len, "%s: %s", path, strerror(errno)), -errno;
		if (lchown(path, (uid_t)uid, (gid_t)gid))
			return snprintf(why, len, "giving %s to %s: %s", path, cd->cfg->jail_user,
					strerror(errno)),
			       -errno;
	}
	return 0;
}

/* "requested": ask the VMM to begin. */
static void backup_begin(struct cd *cd, const struct cl_vm_view *vv, struct lvm *l)
{
	struct cl_backup b = vv->backup;
	uint8_t key[KEY_FILE_BYTES];
	char dir[CL_PATH_MAX], hex[2 * KEY_FILE_BYTES + 1], why[CL_PATH_MAX + 128];
	json_t *args, *reply = NULL;
	int rc;

	if (!store_of(cd, vv->name, &b, dir, sizeof(dir), key))
		return;
	snprintf(why, sizeof(why), "%s/store.json", dir); /* a store: else the VMM says so */
	if (access(why, F_OK) == 0 && hand_store(cd, dir, why, sizeof(why))) {
		sodium_memzero(key, sizeof(key));
		backup_fail(cd, vv->name, &b, "store %s: %s", dir, why);
		return;
	}
	sodium_bin2hex(hex, sizeof(hex), key, sizeof(key));
	sodium_memzero(key, sizeof(key));
	args = json_pack("{s:s,s:s,s:s}", "store", dir, "key", hex, "name", vv->name);
	sodium_memzero(hex, sizeof(hex));
	rc = args ? cd_lvm_request(l, "backup", args, &reply) : -ENOMEM;
	json_decref(args);
	if (rc) {
		backup_fail(cd, vv->name, &b, "%s",
			    rc == -EREMOTEIO ? json_string_value(json_object_get(reply, "error"))
						       ?: "refused"
					     : "its VMM does not answer");
		json_decref(reply);
		return;
	}
	snprintf(b.phase, sizeof(b.phase), "running");
	snprintf(b.node, sizeof(b.node), "%s", cd->cfg->node);
	snprintf(b.backup, sizeof(b.backup), "%s/%.60s", vv->name,
		 json_string_value(json_object_get(reply, "id")) ?: "?");
	json_decref(reply);
	if (backup_cas(cd, vv->name, &b) == 1)
		cd_event(cd, vv->name, "backup-started", "backup %s into store %s on %s", b.backup,
			 b.store[0] ? b.store : "(default)", cd->cfg->node);
}

/* A prune in progress: one at a time, on a thread of its own — reading every manifest and
 * walking every chunk of a large store (over NFS) takes longer than the main loop may. */
struct prune_job {
	struct cd *cd;
	char vm[CL_NAME_MAX], dir[CL_PATH_MAX];
	uint8_t key[KEY_FILE_BYTES];
	unsigned keep;
	uint64_t max_age_ms;
};

static pthread_t prune_thread;
static atomic_bool prune_running, prune_joinable;

static void *prune_main(void *arg)
{
	struct prune_job *j = arg;
	struct store_prune_result r;
	struct store *s = NULL;
	char err[512];

	if (store_open(j->dir, j->key, &s, err, sizeof(err)) ||
	    store_prune(s, j->vm, j->keep, j->max_age_ms, PRUNE_GRACE_MS, &r, err, sizeof(err)))
		cd_event(j->cd, j->vm, "backup-prune-failed", "pruning the backups of %s: %s",
			 j->vm, err);
	else if (r.backups_removed || r.chunks_removed)
		cd_event(j->cd, j->vm, "backup-pruned",
			 "pruned the backups of %s (keep %u, max age %llu s): %llu removed, %llu "
			 "chunks freed%s",
			 j->vm, j->keep, (unsigned long long)(j->max_age_ms / 1000),
			 (unsigned long long)r.backups_removed,
			 (unsigned long long)r.chunks_removed,
			 r.gc_skipped ? " (chunks: next time, a backup held the store)" : "");
	store_close(s);
	sodium_memzero(j->key, sizeof(j->key));
	free(j);
	atomic_store(&prune_running, false);
	return NULL;
}

/* Wait for the prune thread (daemon exit). */
void cd_backups_stop(struct cd *cd)
{
	(void)cd;
	if (atomic_exchange(&prune_joinable, false))
		pthread_join(prune_thread, NULL);
}

/* After a scheduled backup: the VM's backups beyond keep (and max age) go, on the prune
 * thread; while one runs, this one waits for the next backup. */
static void backup_prune(struct cd *cd, const char *vm, struct cl_backup *b)
{
	struct prune_job *j;

	if ((!b->keep && !b->max_age_ms) || atomic_load(&prune_running))
		return;
	j = calloc(1, sizeof(*j));
	if (!j)
		return;
	if (!store_of(cd, vm, b, j->dir, sizeof(j->dir), j->key)) {
		free(j);
		return;
	}
	j->cd = cd;
	snprintf(j->vm, sizeof(j->vm), "%s", vm);
	j->keep = b->keep;
	j->max_age_ms = b->max_age_ms;
	cd_backups_stop(cd); /* the last one, finished */
	atomic_store(&prune_running, true);
	if (pthread_create(&prune_thread, NULL, prune_main, j)) {
		atomic_store(&prune_running, false);
		sodium_memzero(j->key, sizeof(j->key));
		free(j);
		return;
	}
	atomic_store(&prune_joinable, true);
}

static void backup_done(struct cd *cd, const char *vm, struct cl_backup *b, json_t *st)
{
	json_t *stats = json_object_get(st, "stats");
	char *text = json_dumps(stats, JSON_COMPACT);

	snprintf(b->phase, sizeof(b->phase), "done");
	snprintf(b->stats, sizeof(b->stats), "%s",
		 text && strlen(text) < sizeof(b->stats) ? text : "");
	free(text);
	if (backup_cas(cd, vm, b) != 1)
		return;
	cd_event(cd, vm, "backup-done",
		 "backup %s: %.1f MiB new, %lld chunks reused, pause %lld ms, %lld ms in all",
		 b->backup,
		 (double)json_integer_value(json_object_get(stats, "new_bytes")) / (1 << 20),
		 json_integer_value(json_object_get(stats, "reused_chunks")),
		 json_integer_value(json_object_get(stats, "pause_ms")),
		 json_integer_value(json_object_get(stats, "total_ms")));
	backup_prune(cd, vm, b);
}

/* "running" here: how the VMM's backup stands. */
static void backup_follow(struct cd *cd, const struct cl_vm_view *vv, struct lvm *l)
{
	struct cl_backup b = vv->backup;
	json_t *st = NULL;
	const char *phase;

	if (!l || cd_lvm_request(l, "backup-status", NULL, &st)) {
		backup_fail(cd, vv->name, &b, "the VM's VMM ended during the backup");
		json_decref(st);
		return;
	}
	phase = json_string_value(json_object_get(st, "phase")) ?: "";
	if (!strcmp(phase, "done"))
		backup_done(cd, vv->name, &b, st);
	else if (!strcmp(phase, "failed"))
		backup_fail(cd, vv->name, &b, "%s",
			    json_string_value(json_object_get(st, "error")) ?: "?");
	json_decref(st);
}

/* A schedule whose time has come: a new request (unless one was made since the read). */
static void backup_due(struct cd *cd, const struct cl_vm_view *vv)
{
	const struct cl_schedule *sc = &vv->schedule;
	uint64_t last = vv->has_backup ? vv->backup.requested_ms : sc->set_ms, now = wall_ms();
	struct cl_backup b = { 0 };
	unsigned char r[8];

	if (!sc->every_ms || cd_ms_between(now, last) < sc->every_ms)
		return;
	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(b.id, sizeof(b.id), r, sizeof(r));
	snprintf(b.phase, sizeof(b.phase), "requested");
	snprintf(b.by, sizeof(b.by), "schedule");
	snprintf(b.store, sizeof(b.store), "%s", sc->store);
	b.keep = sc->keep;
	b.max_age_ms = sc->max_age_ms;
	b.requested_ms = now;
	b.mod_rev = vv->has_backup ? vv->backup.mod_rev : 0;
	if (backup_cas(cd, vv->name, &b) == 1)
		log_info(SUB, "vm=%s scheduled backup %s due (every %llu s)", vv->name, b.id,
			 (unsigned long long)(sc->every_ms / 1000));
}

void cd_backups(struct cd *cd, const struct cl_view *v)
{
	for (size_t i = 0; i < v->nvms; i++) {
		const struct cl_vm_view *vv = &v->vms[i];
		struct lvm *l = cd_lvm_find(cd, vv->name);
		bool runs = l && l->role == LVM_RUN && l->running_seen && cd_lvm_alive(l);

		if (vv->bad || !cd_owned_here(cd, vv) ||
		    (vv->has_mig && cl_migration_pending(&vv->mig)))
			continue;
		if (vv->has_backup && !strcmp(vv->backup.phase, "running") &&
		    !strcmp(vv->backup.node, cd->cfg->node)) {
			backup_follow(cd, vv, runs ? l : NULL);
			continue;
		}
		if (vv->has_backup && !strcmp(vv->backup.phase, "requested")) {
			struct cl_backup b = vv->backup;

			if (runs)
				backup_begin(cd, vv, l);
			else if (vv->has_spec && !vv->spec.running)
				backup_fail(cd, vv->name, &b, "the VM is stopped");
			continue;
		}
		if (vv->has_schedule && runs)
			backup_due(cd, vv);
	}
}
