/* Private to hypervisor/: the allocations of a state message being built, released together
 * after packing. Capturing state happens while a guest is paused for a snapshot or a
 * migration, so running out of memory must fail that capture, never the VMM: every
 * allocation may return NULL, and the arena remembers that one did. */
#ifndef CME_ARENA_PRIV_H
#define CME_ARENA_PRIV_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct arena {
	void **ptrs;
	size_t n, cap;
	bool failed; /* an allocation returned NULL: the message is incomplete */
};

/* Zeroed memory of size bytes (at least 1) owned by the arena, or NULL (and a->failed). */
void *arena_alloc(struct arena *a, size_t size);
/* A copy of src[0..size) owned by the arena, or NULL (and a->failed). */
void *arena_dup(struct arena *a, const void *src, size_t size);
/* Pack msg, built in a, into *buf (malloc'd, the caller frees) and *len. Returns 0, or
 * -ENOMEM when an allocation of a failed (the message is incomplete) or the buffer cannot
 * be had. a is left as it is. */
int arena_pack(const struct arena *a, const ProtobufCMessage *msg, uint8_t **buf, size_t *len)
	__attribute__((warn_unused_result));
/* Release every allocation and reset the arena (failed too). */
void arena_free(struct arena *a);

#endif
