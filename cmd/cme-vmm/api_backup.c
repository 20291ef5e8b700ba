/* The control API's live backups: backup, backup-status, backup-cancel (README "Backups"). */
#include "api_priv.h"
#include "backup.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

static json_t *stats_json(const struct backup_stats *s)
{
	return json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "id", s->id, "parent",
			 s->parent, "total_ms", (json_int_t)s->total_ms, "pause_ms",
			 (json_int_t)s->pause_ms, "rounds", (json_int_t)s->rounds, "chunks",
			 (json_int_t)s->chunks, "new_chunks", (json_int_t)s->new_chunks,
			 "reused_chunks", (json_int_t)s->reused_chunks, "zero_chunks",
			 (json_int_t)s->zero_chunks, "new_bytes", (json_int_t)s->new_bytes,
			 "mem_bytes", (json_int_t)s->mem_bytes, "mib_s", s->throughput_mbps);
}

static json_t *progress_json(struct backup *b)
{
	struct backup_progress p;
	json_t *j;

	backup_get_progress(b, &p);
	j = json_pack("{s:b,s:s,s:i,s:I,s:s}", "ok", 1, "phase", backup_phase_name(p.phase),
		      "round", (int)p.round, "chunks_done", (json_int_t)p.chunks_done, "id",
		      p.stats.id);
	if (j && p.phase == BACKUP_FAILED)
		json_object_set_new(j, "error", json_string(p.error));
	if (j && p.phase == BACKUP_DONE)
		json_object_set_new(j, "stats", stats_json(&p.stats));
	return j;
}

static bool backup_running(struct api *api)
{
	return api->backup && !backup_finished(api->backup);
}

/* "key": the store's key itself, 64 hex digits (cme-clusterd sends it: a jailed VMM
 * cannot read the node's key file). */
static json_t *backup_key_hex(const char *hex, uint8_t key[KEY_FILE_BYTES])
{
	if (hex_parse(hex, key, KEY_FILE_BYTES))
		return api_error("backup: \"key\" must be 64 hex digits");
	return NULL;
}

/* The request's fields into p: store, key_file or key, optional name and pause_ms. */
static json_t *backup_args(struct api *api, json_t *req, struct backup_params *p)
{
	const char *key_file = json_string_value(json_object_get(req, "key_file"));
	const char *key_hex = json_string_value(json_object_get(req, "key"));
	json_t *pause = json_object_get(req, "pause_ms");
	struct vm_info info;
	char err[512];

	vm_get_info(api->vm, &info);
	p->store = json_string_value(json_object_get(req, "store"));
	p->name = json_string_value(json_object_get(req, "name"));
	if (!p->name)
		p->name = info.name;
	if (!p->store || !*p->store)
		return api_error("backup needs \"store\" (the store's folder)");
	if (!key_hex && (!key_file || !*key_file))
		return api_error("backup needs \"key_file\" or \"key\" (the store's key)");
	if (json_object_get(req, "name") && !json_is_string(json_object_get(req, "name")))
		return api_error("backup: \"name\" must be a string");
	if (pause && (!json_is_integer(pause) || json_integer_value(pause) < 1 ||
		      json_integer_value(pause) > 60000))
		return api_error("backup: \"pause_ms\" must be a whole number from 1 to 60000");
	p->pause_ms = pause ? (uint64_t)json_integer_value(pause) : 0;
	if (key_hex)
		return backup_key_hex(key_hex, p->key);
	if (key_file_load(key_file, p->key, err, sizeof(err)))
		return api_error("backup: %s", err);
	return NULL;
}

/* Start a live backup; it runs on in a thread of its own (backup-status follows it). */
json_t *api_backup(struct api *api, json_t *req)
{
	struct backup_params p = { 0 };
	char err[512] = "";
	json_t *bad = api_migration_busy(api, "backup");
	int rc;

	if (bad)
		return bad;
	if (!api->privileged) /* store and key_file are host files the VMM opens */
		return api_error("backup: only root or the VMM's own user may ask it "
				 "(--api-group members may not)");
	bad = backup_args(api, req, &p);
	if (bad) {
		sodium_memzero(p.key, sizeof(p.key));
		return bad;
	}
	backup_free(api->backup); /* the last one, finished */
	api->backup = NULL;
	rc = backup_start(api->vm, &p, &api->backup, err, sizeof(err));
	sodium_memzero(p.key, sizeof(p.key));
	if (rc && jail_root())
		return api_error("backup: %s (this VMM is jailed in %s: paths are from there)", err,
				 jail_root());
	if (rc)
		return api_error("backup: %s", err);
	return progress_json(api->backup);
}

json_t *api_backup_status(struct api *api, json_t *req)
{
	(void)req;
	if (!api->backup)
		return api_error("no backup has run in this VMM");
	return progress_json(api->backup);
}

json_t *api_backup_cancel(struct api *api, json_t *req)
{
	(void)req;
	if (!backup_running(api))
		return api_error("no backup is running");
	backup_cancel(api->backup);
	return json_pack("{s:b,s:b}", "ok", 1, "cancelling", 1);
}
