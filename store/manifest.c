/* Manifests: one sealed JSON document per backup, naming the chunks of each area. */
#include "store_priv.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MANIFEST_FORMAT 1

bool store_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (!n || n >= STORE_NAME_MAX || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (name[i] == '/' || name[i] < 0x21 || name[i] > 0x7e)
			return false;
	return true;
}

void store_backup_id(char out[STORE_NAME_MAX])
{
	uint64_t ms = wall_ms();
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char day[32];

	gmtime_r(&t, &tm);
	strftime(day, sizeof(day), "%Y%m%dT%H%M%S", &tm);
	snprintf(out, STORE_NAME_MAX, "%s.%03uZ", day, (unsigned)(ms % 1000));
}

int store_area_add(struct store_manifest *m, const char *name, uint64_t base, uint64_t size)
{
	struct store_area *a;

	if (m->nareas >= STORE_AREAS_MAX || !m->chunk_size)
		return -E2BIG;
	a = &m->areas[m->nareas];
	memset(a, 0, sizeof(*a));
	snprintf(a->name, sizeof(a->name), "%s", name);
	a->base = base;
	a->size = size;
	a->nchunks = (size + m->chunk_size - 1) / m->chunk_size;
	a->chunks = calloc(a->nchunks ? a->nchunks : 1, sizeof(*a->chunks));
	if (!a->chunks)
		return -ENOMEM;
	m->nareas++;
	return 0;
}

const struct store_area *store_area_find(const struct store_manifest *m, const char *name)
{
	for (unsigned i = 0; i < m->nareas; i++)
		if (!strcmp(m->areas[i].name, name))
			return &m->areas[i];
	return NULL;
}

size_t store_chunk_len(const struct store_area *a, uint64_t idx, uint32_t chunk_size)
{
	uint64_t off = idx * chunk_size;

	return a->size - off < chunk_size ? (size_t)(a->size - off) : chunk_size;
}

void store_manifest_free(struct store_manifest *m)
{
	for (unsigned i = 0; i < m->nareas; i++)
		free(m->areas[i].chunks);
	m->nareas = 0;
}

/* ---- JSON --------------------------------------------------------------------------- */

static json_t *area_json(const struct store_area *a)
{
	char *hex = malloc(a->nchunks * STORE_ID_HEX + 1);
	json_t *j;

	if (!hex)
		return NULL;
	hex[0] = 0;
	for (uint64_t i = 0; i < a->nchunks; i++)
		store_id_hex(&a->chunks[i], hex + i * STORE_ID_HEX);
	j = json_pack("{s:s, s:I, s:I, s:s}", "name", a->name, "base", (json_int_t)a->base, "size",
		      (json_int_t)a->size, "chunks", hex);
	free(hex);
	return j;
}

static json_t *manifest_json(const struct store_manifest *m)
{
	json_t *areas = json_array(), *j;

	for (unsigned i = 0; areas && i < m->nareas; i++)
		if (json_array_append_new(areas, area_json(&m->areas[i]))) {
			json_decref(areas);
			return NULL;
		}
	j = json_pack("{s:i, s:s, s:s, s:s, s:I, s:I, s:i, s:i, s:s, s:o, s:{s:I, s:I, s:I, "
		      "s:I, s:I, s:I, s:I, s:I}}",
		      "format", MANIFEST_FORMAT, "vm", m->vm, "id", m->id, "parent", m->parent,
		      "created_ms", (json_int_t)m->created_ms, "mem_bytes",
		      (json_int_t)m->mem_bytes, "vcpus", (int)m->vcpus, "chunk_size",
		      (int)m->chunk_size, "measurement", m->measurement, "areas", areas, "stats",
		      "new_chunks", (json_int_t)m->new_chunks, "reused_chunks",
		      (json_int_t)m->reused_chunks, "zero_chunks", (json_int_t)m->zero_chunks,
		      "new_bytes", (json_int_t)m->new_bytes, "stored_bytes",
		      (json_int_t)m->stored_bytes, "pause_ms", (json_int_t)m->pause_ms, "total_ms",
		      (json_int_t)m->total_ms, "rounds", (json_int_t)m->rounds);
	return j;
}

static int area_parse(struct store_manifest *m, json_t *j)
{
	const char *name = NULL, *hex = NULL;
	json_int_t base = 0, size = 0;
	struct store_area *a;
	char one[STORE_ID_HEX + 1];
	uint64_t nchunks;

	if (json_unpack(j, "{s:s, s:I, s:I, s:s}", "name", &name, "base", &base, "size", &size,
			"chunks", &hex) ||
	    base < 0 || size < 0 || strlen(name) >= STORE_NAME_MAX)
		return -EBADMSG;
	/* The chunk list must be there in full before anything is sized by the claim: a
	 * manifest's own length (at most STORE_MANIFEST_MAX) then bounds every allocation. */
	nchunks = (uint64_t)size / m->chunk_size + ((uint64_t)size % m->chunk_size != 0);
	if (strlen(hex) / STORE_ID_HEX != nchunks || strlen(hex) % STORE_ID_HEX ||
	    store_area_find(m, name) || store_area_add(m, name, (uint64_t)base, (uint64_t)size))
		return -EBADMSG;
	a = &m->areas[m->nareas - 1];
	for (uint64_t i = 0; i < a->nchunks; i++) {
		memcpy(one, hex + i * STORE_ID_HEX, STORE_ID_HEX);
		one[STORE_ID_HEX] = 0;
		if (store_id_parse(one, &a->chunks[i]))
			return -EBADMSG;
	}
	return 0;
}

static int copy_name(char *dst, const char *src)
{
	if (strlen(src) >= STORE_NAME_MAX)
		return -EBADMSG;
	strcpy(dst, src);
	return 0;
}

static int manifest_parse(json_t *j, struct store_manifest *m)
{
	const char *vm = NULL, *id = NULL, *parent = NULL, *meas = NULL;
	json_int_t fmt = 0, created = 0, mem = 0, vcpus = 0, cs = 0;
	json_t *areas = NULL, *a;
	size_t i;

	if (json_unpack(j, "{s:I, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:o}", "format", &fmt,
			"vm", &vm, "id", &id, "parent", &parent, "created_ms", &created,
			"mem_bytes", &mem, "vcpus", &vcpus, "chunk_size", &cs, "measurement", &meas,
			"areas", &areas) ||
	    fmt != MANIFEST_FORMAT || !json_is_array(areas) || cs < 4096 || cs > STORE_CHUNK_MAX ||
	    vcpus < 0 || vcpus > 4096 || mem < 0 || strlen(meas) > 2 * MEASURE_BYTES ||
	    copy_name(m->vm, vm) || copy_name(m->id, id) || copy_name(m->parent, parent))
		return -EBADMSG;
	m->created_ms = (uint64_t)created;
	m->mem_bytes = (uint64_t)mem;
	m->vcpus = (unsigned)vcpus;
	m->chunk_size = (uint32_t)cs;
	strcpy(m->measurement, meas);
	json_array_foreach(areas, i, a) if (area_parse(m, a)) return -EBADMSG;
	json_unpack(j, "{s:{s?I, s?I, s?I, s?I, s?I, s?I, s?I, s?I}}", "stats", "new_chunks",
		    &m->new_chunks, "reused_chunks", &m->reused_chunks, "zero_chunks",
		    &m->zero_chunks, "new_bytes", &m->new_bytes, "stored_bytes", &m->stored_bytes,
		    "pause_ms", &m->pause_ms, "total_ms", &m->total_ms, "rounds", &m->rounds);
	return 0;
}

/* ---- files -------------------------------------------------------------------------- */

int store_manifest_write(struct store *s, const struct store_manifest *m, char *err, size_t len)
{
	char path[3 * STORE_NAME_MAX], ad[2 * STORE_NAME_MAX + 2];
	json_t *j;
	char *text;
	uint8_t *sealed = NULL;
	size_t n = 0;
	int rc;

	if (!store_name_ok(m->vm) || !store_name_ok(m->id))
		return store_fail(err, len, -EINVAL, "\"%s/%s\" cannot name a backup", m->vm,
				  m->id);
	j = manifest_json(m);
	text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!text)
		return store_fail(err, len, -ENOMEM, "out of memory writing a manifest");
	if (strlen(text) + STORE_SEAL_OVERHEAD > STORE_MANIFEST_MAX) { /* it could not be read */
		free(text);
		return store_fail(
			err, len, -EFBIG,
			"backup %s/%s names too many chunks for one manifest (%u MiB at most): "
			"use a store with larger chunks",
			m->vm, m->id, STORE_MANIFEST_MAX >> 20);
	}
	snprintf(ad, sizeof(ad), "%s/%s", m->vm, m->id);
	snprintf(path, sizeof(path), "backups/%s/%s", m->vm, m->id);
	rc = store_seal(s, STORE_MANI_MAGIC, ad, strlen(ad), text, strlen(text), &sealed, &n);
	free(text);
	/* The chunks first: a manifest on disk names only chunks on disk. */
	if (!rc)
		rc = store_sync(s);
	if (!rc)
		rc = store_put_file(s, path, sealed, n, true, true);
	free(sealed);
	if (rc == -EEXIST)
		return store_fail(err, len, rc, "backup %s exists already in %s", ad, s->dir);
	return rc ? store_fail(err, len, rc, "writing backup %s to %s: %s", ad, s->dir,
			       strerror(-rc))
		  : 0;
}

int store_manifest_read(struct store *s, const char *vm, const char *id, struct store_manifest *m,
			char *err, size_t len)
{
	char path[3 * STORE_NAME_MAX], ad[2 * STORE_NAME_MAX + 2];
	uint8_t *sealed = NULL, *plain = NULL;
	size_t n = 0, pn = 0;
	json_t *j = NULL;
	int rc;

	memset(m, 0, sizeof(*m));
	if (!store_name_ok(vm) || !store_name_ok(id))
		return store_fail(err, len, -EINVAL, "\"%s/%s\" cannot name a backup", vm, id);
	snprintf(ad, sizeof(ad), "%s/%s", vm, id);
	snprintf(path, sizeof(path), "backups/%s/%s", vm, id);
	rc = store_get_file(s, path, STORE_MANIFEST_MAX, &sealed, &n);
	if (rc == -ENOENT)
		return store_fail(err, len, rc, "no backup %s in %s", ad, s->dir);
	if (rc)
		return store_fail(err, len, rc, "backup %s: %s", ad, strerror(-rc));
	plain = malloc(n + 1);
	rc = plain ? store_unseal(s, STORE_MANI_MAGIC, ad, strlen(ad), sealed, n, plain, &pn)
		   : -ENOMEM;
	free(sealed);
	if (!rc) {
		j = json_loadb((const char *)plain, pn, 0, NULL);
		rc = j ? manifest_parse(j, m) : -EBADMSG;
	}
	if (!rc && (strcmp(m->vm, vm) || strcmp(m->id, id) || m->chunk_size != s->chunk_size))
		rc = -EBADMSG;
	json_decref(j);
	free(plain);
	if (rc)
		store_manifest_free(m);
	if (rc == -EBADMSG)
		return store_fail(
			err, len, rc,
			"the manifest of backup %s is damaged (truncated, tampered or not of "
			"this store)",
			ad);
	return rc ? store_fail(err, len, rc, "backup %s: %s", ad, strerror(-rc)) : 0;
}
