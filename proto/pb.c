/* Bounded protobuf-c allocations (proto.h). */
#include "proto.h"

#include <stdlib.h>

static void *budget_alloc(void *data, size_t size)
{
	struct pb_budget *b = data;

	if (size > b->max - b->used)
		return NULL;
	b->used += size;
	return malloc(size);
}

static void budget_free(void *data, void *p)
{
	(void)data;
	free(p);
}

ProtobufCAllocator *pb_budget(struct pb_budget *b, size_t len)
{
	b->alloc = (ProtobufCAllocator){ budget_alloc, budget_free, b };
	b->used = 0;
	b->max = PB_DECODED_MAX(len);
	return &b->alloc;
}
