/* netframe.h — the test guest's network frames (README.md, "Network"), built and checked
 * by the guest (netload.c) and by the host side of the tests and benchmarks, so both agree
 * on every byte. Freestanding: no libc.
 *
 * A frame: destination and source MAC, ethertype 0x88b5 (IEEE 802 local experimental),
 * then little-endian magic "CMEN" (u32), sequence number (u64), direction (u16: 1 guest to
 * host, 2 host to guest) and the frame's length (u16); every byte after that is a function
 * of the sequence number, its offset and the direction. */
#ifndef CME_NETFRAME_H
#define CME_NETFRAME_H

#include <stdbool.h>
#include <stdint.h>

#define NETF_ETHERTYPE 0x88b5
#define NETF_MAGIC     0x4e454d43u /* "CMEN" */
#define NETF_TO_HOST   1
#define NETF_TO_GUEST  2
#define NETF_HDR       30 /* Ethernet header, magic, sequence, direction, length */
#define NETF_MIN       60
#define NETF_MAX       1514
/* The host end's MAC, where the guest sends its frames. */
#define NETF_HOST_MAC                                                                              \
	{                                                                                          \
		0x02, 0x43, 0x4d, 0x45, 0x00, 0x01                                                 \
	}

enum netf_verdict { NETF_OK, NETF_OTHER, NETF_BAD };

/* The length of frame seq when lengths vary: every size from NETF_MIN to NETF_MAX. */
static inline uint32_t netf_len(uint64_t seq)
{
	return NETF_MIN + (uint32_t)(seq * 97 % (NETF_MAX - NETF_MIN + 1));
}

static inline uint8_t netf_byte(uint64_t seq, uint32_t at, uint32_t dir)
{
	return (uint8_t)(seq * 7 + at * 13 + dir * 101);
}

static inline void netf_put(uint8_t *p, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t netf_get(const uint8_t *p, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* Write frame seq of len bytes (NETF_HDR..65535) from src to dst into f. */
static inline void netf_build(uint8_t *f, const uint8_t *dst, const uint8_t *src, uint64_t seq,
			      uint32_t dir, uint32_t len)
{
	for (unsigned i = 0; i < 6; i++) {
		f[i] = dst[i];
		f[6 + i] = src[i];
	}
	f[12] = NETF_ETHERTYPE >> 8;
	f[13] = NETF_ETHERTYPE & 0xff;
	netf_put(f + 14, NETF_MAGIC, 4);
	netf_put(f + 18, seq, 8);
	netf_put(f + 26, dir, 2);
	netf_put(f + 28, len, 2);
	for (uint32_t i = NETF_HDR; i < len; i++)
		f[i] = netf_byte(seq, i, dir);
}

/* Check a received frame of len bytes meant for dst, sent in direction dir: NETF_OTHER
 * when it is not one of ours (another ethertype), NETF_BAD with *at the offset of the
 * first wrong byte, NETF_OK; *seq is its sequence number. */
static inline enum netf_verdict netf_check(const uint8_t *f, uint32_t len, const uint8_t *dst,
					   uint32_t dir, uint64_t *seq, uint32_t *at)
{
	*seq = 0;
	*at = 12;
	if (len < 14 || f[12] != NETF_ETHERTYPE >> 8 || f[13] != (NETF_ETHERTYPE & 0xff))
		return NETF_OTHER;
	*at = 14;
	if (len < NETF_HDR || netf_get(f + 14, 4) != NETF_MAGIC)
		return NETF_BAD;
	*seq = netf_get(f + 18, 8);
	for (*at = 0; *at < 6; (*at)++)
		if (f[*at] != dst[*at])
			return NETF_BAD;
	*at = 26;
	if (netf_get(f + 26, 2) != dir)
		return NETF_BAD;
	*at = 28;
	if (netf_get(f + 28, 2) != len)
		return NETF_BAD;
	for (*at = NETF_HDR; *at < len; (*at)++)
		if (f[*at] != netf_byte(*seq, *at, dir))
			return NETF_BAD;
	return NETF_OK;
}

#endif
