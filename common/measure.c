/* Boot measurements (common.h): a hash chain of what was loaded, like a TPM PCR. */
#include "common.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

void measure_init(uint8_t m[MEASURE_BYTES])
{
	memset(m, 0, MEASURE_BYTES);
}

void measure_extend(uint8_t m[MEASURE_BYTES], const char *what, const void *data, size_t len)
{
	uint8_t item[MEASURE_BYTES];
	crypto_generichash_state h;

	crypto_generichash(item, sizeof(item), data, len, NULL, 0);
	crypto_generichash_init(&h, NULL, 0, MEASURE_BYTES);
	crypto_generichash_update(&h, m, MEASURE_BYTES);
	crypto_generichash_update(&h, (const uint8_t *)what, strlen(what) + 1);
	crypto_generichash_update(&h, item, sizeof(item));
	crypto_generichash_final(&h, m, MEASURE_BYTES);
}

void measure_hex(const uint8_t m[MEASURE_BYTES], char out[2 * MEASURE_BYTES + 1])
{
	for (int i = 0; i < MEASURE_BYTES; i++)
		snprintf(out + 2 * i, 3, "%02x", m[i]);
}

int hex_parse(const char *hex, uint8_t *out, size_t n)
{
	size_t bin = 0;

	if (strlen(hex) != 2 * n || sodium_hex2bin(out, n, hex, 2 * n, NULL, &bin, NULL) ||
	    bin != n)
		return -EINVAL;
	return 0;
}

int measure_parse(const char *hex, uint8_t m[MEASURE_BYTES])
{
	return hex_parse(hex, m, MEASURE_BYTES);
}
