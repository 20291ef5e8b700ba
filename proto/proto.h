/* Decoding with a bound. protobuf-c's unpack allocates for every field it meets — an
 * unknown field of two bytes costs some fifty — so the length of a record alone does not
 * bound the memory its decoding takes: an 8 MiB record of tiny unknown fields took 367
 * MiB. Every unpack of bytes from a peer or a file goes through a budget instead. */
#ifndef CME_PROTO_H
#define CME_PROTO_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

struct pb_budget {
	ProtobufCAllocator alloc;
	size_t used, max;
};

/* What a message of len bytes may take decoded: its bytes fields are copied once, its
 * small fields cost a struct each. */
#define PB_DECODED_MAX(len) ((size_t)(len)*4 + (1u << 20))

/* An allocator for one unpack whose allocations fail past PB_DECODED_MAX(len) bytes (the
 * unpack then returns NULL). What it unpacked is freed as usual (free_unpacked, NULL). */
ProtobufCAllocator *pb_budget(struct pb_budget *b, size_t len);

/* fn(allocator, len, data) on a budget of its own: PB_UNPACK(cme__mig_hello__unpack, len, p). */
#define PB_UNPACK(fn, len, data)                                                                   \
	({                                                                                         \
		struct pb_budget pb_b_;                                                            \
		fn(pb_budget(&pb_b_, (len)), (len), (data));                                       \
	})

#endif
