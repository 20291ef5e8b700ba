/* The arena of a state message being built: many small allocations, one release. */
#include "arena_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void *arena_alloc(struct arena *a, size_t size)
{
	void *p;

	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		void **np = realloc(a->ptrs, cap * sizeof(void *));

		if (!np)
			goto fail;
		a->ptrs = np;
		a->cap = cap;
	}
	p = calloc(1, size ? size : 1);
	if (!p)
		goto fail;
	a->ptrs[a->n++] = p;
	return p;
fail:
	a->failed = true;
	return NULL;
}

void *arena_dup(struct arena *a, const void *src, size_t size)
{
	void *p = arena_alloc(a, size);

	return p ? memcpy(p, src, size) : NULL;
}

int arena_pack(const struct arena *a, const ProtobufCMessage *msg, uint8_t **buf, size_t *len)
{
	if (a->failed)
		return -ENOMEM;
	*len = protobuf_c_message_get_packed_size(msg);
	*buf = malloc(*len ? *len : 1);
	if (!*buf)
		return -ENOMEM;
	protobuf_c_message_pack(msg, *buf);
	return 0;
}

void arena_free(struct arena *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->ptrs[i]);
	free(a->ptrs);
	memset(a, 0, sizeof(*a));
}
