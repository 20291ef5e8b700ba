/* Private to store/. */
#ifndef CME_STORE_PRIV_H
#define CME_STORE_PRIV_H

#include "store.h"

#include <sodium.h>

#define STORE_FORMAT	   "cme-store-1"
#define STORE_NONCE	   crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define STORE_TAG	   crypto_aead_xchacha20poly1305_ietf_ABYTES
#define STORE_CHUNK_MAGIC  "CMECHNK1"
#define STORE_MANI_MAGIC   "CMEMANI1"
#define STORE_MANIFEST_MAX (256u << 20)

struct store {
	char *dir;
	int dirfd;
	uint32_t chunk_size;
	uint8_t name_key[32]; /* chunk IDs */
	uint8_t seal_key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
};

/* store.c: the one-line reason into err (len bytes); returns rc. */
int store_fail(char *err, size_t len, int rc, const char *fmt, ...) CME_PRINTF(4, 5);
/* store.c: seal plain (len bytes) under magic with ad into a malloc'd buffer of
 * STORE_SEAL_OVERHEAD + len bytes; open such a buffer again (-EBADMSG when it does not
 * authenticate). */
int store_seal(const struct store *s, const char *magic, const void *ad, size_t adlen,
	       const void *plain, size_t len, uint8_t **out, size_t *outlen) CME_WUR;
int store_unseal(const struct store *s, const char *magic, const void *ad, size_t adlen,
		 const uint8_t *in, size_t inlen, uint8_t *plain, size_t *len) CME_WUR;
/* Write data to path (relative to the store) through a file in .tmp/ renamed into place;
 * with excl, never over an existing file (-EEXIST). Creates the parent folder. */
int store_put_file(struct store *s, const char *path, const void *data, size_t len, bool excl,
		   bool sync) CME_WUR;
/* Read path (relative to the store), at most max bytes, into a malloc'd buffer. */
int store_get_file(struct store *s, const char *path, size_t max, uint8_t **out,
		   size_t *len) CME_WUR;
void store_chunk_path(const struct store_id *id, char out[STORE_ID_HEX + 16]);

#endif
