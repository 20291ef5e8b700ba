/* Restore from a backup: every chunk read, authenticated and hashed again into the new
 * VM's memory, the state applied last. */
#include "backup_priv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATE_MAX (64u << 20) /* a VM state is tens of KiB; a snapshot allows 64 MiB */

static int failf(char *err, size_t len, int rc, const char *fmt, ...) CME_PRINTF(4, 5);
static int failf(char *err, size_t len, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return rc;
}

/* The backup's RAM areas must be the new VM's slots, one for one, first and in order
 * (restore and lazy.c use area i for slot i), and its state small. */
static int check_layout(struct vm *vm, const struct store_manifest *m, char *err, size_t len)
{
	const struct store_area *a;
	struct vm_slot s;
	unsigned n = vm_nr_slots(vm);

	for (unsigned i = 0; i < n; i++) {
		char name[16];

		snprintf(name, sizeof(name), "ram%u", i);
		a = i < m->nareas ? &m->areas[i] : NULL;
		vm_get_slot(vm, i, &s);
		if (!a || strcmp(a->name, name) || a->base != s.gpa || a->size != s.size)
			return failf(err, len, -EINVAL,
				     "backup %s/%s does not match the VM's memory layout (%s)",
				     m->vm, m->id, name);
	}
	a = store_area_find(m, "state");
	if (a && a->size > STATE_MAX)
		return failf(err, len, -EBADMSG, "backup %s/%s has a VM state of %llu bytes", m->vm,
			     m->id, (unsigned long long)a->size);
	return 0;
}

static int read_area(struct store *st, const struct store_area *a, uint8_t *to, uint32_t cs,
		     struct backup_restore_stats *rs, char *err, size_t len)
{
	for (uint64_t i = 0; i < a->nchunks; i++) {
		uint64_t off = i * cs;
		size_t n = store_chunk_len(a, i, cs);
		int rc;

		if (store_id_is_zero(&a->chunks[i]))
			continue; /* the new VM's memory and the buffer are zero already */
		rc = store_chunk_get(st, &a->chunks[i], to + off, n, err, len);
		if (rc)
			return rc;
		rs->chunks++;
		rs->bytes += n;
	}
	return 0;
}

/* The VM state area, read whole (it is small). */
static int read_state(struct store *st, const struct store_manifest *m, uint8_t **state, size_t *n,
		      struct backup_restore_stats *rs, char *err, size_t len)
{
	const struct store_area *sa = store_area_find(m, "state");
	int rc;

	if (!sa || !sa->size)
		return failf(err, len, -EBADMSG, "backup %s/%s has no VM state", m->vm, m->id);
	*state = calloc(1, sa->size);
	if (!*state)
		return -ENOMEM;
	*n = sa->size;
	rc = read_area(st, sa, *state, m->chunk_size, rs, err, len);
	if (rc) {
		free(*state);
		*state = NULL;
	}
	return rc;
}

/* Disk area a (named diskN) into the VM's disk N, whole: its image must be writable and
 * of the backup's size. Disks are always restored eagerly, before the guest runs. */
static int restore_disk(struct store *st, const struct store_area *a, struct vm *vm, uint32_t cs,
			struct backup_restore_stats *rs, char *err, size_t len)
{
	unsigned idx = (unsigned)strtoul(a->name + 4, NULL, 10);
	uint64_t bytes = 0;
	bool ro = true;
	uint8_t *buf;
	int rc = 0;

	if (vm_disk_info(vm, idx, &bytes, &ro) || ro || bytes != a->size)
		return failf(err, len, -EINVAL,
			     "the backup holds %s (%llu bytes): give the VM a writable --disk of "
			     "that size as disk %u (its contents are replaced)",
			     a->name, (unsigned long long)a->size, idx);
	buf = malloc(cs);
	if (!buf)
		return -ENOMEM;
	for (uint64_t i = 0; !rc && i < a->nchunks; i++) {
		uint64_t off = i * cs;
		size_t n = store_chunk_len(a, i, cs);

		if (store_id_is_zero(&a->chunks[i])) {
			rc = vm_disk_pwrite(vm, idx, NULL, n, off);
		} else if (!(rc = store_chunk_get(st, &a->chunks[i], buf, n, err, len))) {
			rc = vm_disk_pwrite(vm, idx, buf, n, off);
			rs->chunks++;
			rs->bytes += n;
		} else {
			break; /* err says which chunk */
		}
		if (rc)
			failf(err, len, rc, "writing %s at byte %llu: %s", a->name,
			      (unsigned long long)off, strerror(-rc));
	}
	free(buf);
	return rc;
}

static int restore_disks(struct store *st, const struct store_manifest *m, struct vm *vm,
			 struct backup_restore_stats *rs, char *err, size_t len)
{
	int rc = 0;

	for (unsigned a = 0; !rc && a < m->nareas; a++)
		if (!strncmp(m->areas[a].name, "disk", 4))
			rc = restore_disk(st, &m->areas[a], vm, m->chunk_size, rs, err, len);
	return rc;
}

/* Memory then state (eager), or state with the memory coming in behind it (lazy: *st and
 * *m pass to *lazy). */
static int load(struct store **st, struct store_manifest *m, struct vm *vm,
		struct backup_restore_stats *rs, struct backup_lazy **lazy, char *err, size_t len)
{
	uint8_t *state = NULL;
	size_t n = 0;
	struct vm_slot s;
	int rc = check_layout(vm, m, err, len);

	if (!rc)
		rc = read_state(*st, m, &state, &n, rs, err, len);
	if (!rc)
		rc = restore_disks(*st, m, vm, rs, err, len);
	for (unsigned i = 0; !rc && !lazy && i < vm_nr_slots(vm); i++) {
		vm_get_slot(vm, i, &s);
		rc = read_area(*st, &m->areas[i], s.hva, m->chunk_size, rs, err, len);
	}
	/* Lazy: registered, and its threads running, before the state is applied (loading
	 * it may touch guest memory). Huge pages are restored eagerly: userfaultfd would have
	 * to fill them a huge page at a time. */
	if (!rc && lazy && !(rc = lazy_begin(vm, *st, m, lazy, err, len)))
		*st = NULL;
	if (!rc)
		rc = vm_state_load(vm, state, n, err, len);
	free(state);
	return rc;
}

static int restore_from(struct store **st, struct store_manifest *m, const struct vm_config *cfg,
			struct vm **out, struct backup_restore_stats *rs, struct backup_lazy **lazy,
			char *err, size_t len)
{
	struct vm_config vc = *cfg;
	struct vm *vm = NULL;
	int rc;

	if (cfg->hugepages)
		lazy = NULL;
	if ((cfg->mem_bytes && cfg->mem_bytes != m->mem_bytes) ||
	    (cfg->nr_vcpus && cfg->nr_vcpus != m->vcpus))
		return failf(
			err, len, -EINVAL,
			"backup %s/%s is of a VM with %llu MiB and %u vCPUs, not the one asked "
			"for",
			m->vm, m->id, (unsigned long long)(m->mem_bytes >> 20), m->vcpus);
	if (m->chunk_size != store_chunk_size(*st))
		return failf(err, len, -EBADMSG,
			     "backup %s/%s has another chunk size than its store", m->vm, m->id);
	vc.mem_bytes = m->mem_bytes;
	vc.nr_vcpus = m->vcpus;
	rc = vm_create(&vc, &vm);
	if (rc)
		return failf(err, len, rc, "cannot create the VM: %s", strerror(-rc));
	rc = load(st, m, vm, rs, lazy, err, len);
	if (rc) {
		if (lazy) {
			backup_lazy_free(*lazy);
			*lazy = NULL;
		}
		vm_destroy(vm);
		return rc;
	}
	*out = vm;
	return 0;
}

int backup_restore(const char *dir, const uint8_t key[KEY_FILE_BYTES], const char *ref,
		   const struct vm_config *cfg, struct vm **out, struct backup_restore_stats *st,
		   struct backup_lazy **lazy, char *err, size_t len)
{
	struct store *s = NULL;
	struct store_manifest m;
	uint64_t t0 = now_ns();
	int rc, lock = -1;

	memset(st, 0, sizeof(*st));
	*out = NULL;
	if (lazy)
		*lazy = NULL;
	rc = store_open(dir, key, &s, err, len);
	if (!rc && (lock = store_lock(s, false, false)) < 0) {
		rc = lock;
		failf(err, len, rc,
		      rc == -EBUSY ? "the store is being pruned: try again in a moment"
				   : "the store's lock: %s",
		      strerror(-rc));
	}
	if (!rc)
		rc = store_ref_parse(s, ref, st->vm, st->id, err, len);
	if (!rc)
		rc = store_manifest_read(s, st->vm, st->id, &m, err, len);
	if (!rc) {
		rc = restore_from(&s, &m, cfg, out, st, lazy, err, len);
		store_manifest_free(&m);
	}
	if (!rc && lazy && *lazy) /* held until its memory is all in */
		lazy_hold_lock(*lazy, lock);
	else
		store_unlock(lock);
	store_close(s);
	st->ms = (now_ns() - t0) / 1000000;
	return rc;
}
