/* Secret keys in files: 32 random bytes as 64 hex digits on one line, in a regular file
 * only its owner may read or write (no link). Snapshot keys and backup store keys. */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_HEX (2 * KEY_FILE_BYTES)

int key_file_load(const char *path, uint8_t key[KEY_FILE_BYTES], char *err, size_t len)
{
	char hex[KEY_HEX + 8];
	struct stat st;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0) {
		snprintf(err, len, "key file %s: %s", path, strerror(errno));
		return -errno;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
		snprintf(err, len,
			 "key file %s is not a regular file only its owner may read (mode %04o): "
			 "chmod 600 it",
			 path, (unsigned)(st.st_mode & 07777));
		close(fd);
		return -EACCES;
	}
	n = read(fd, hex, sizeof(hex) - 1);
	close(fd);
	hex[n > 0 ? n : 0] = 0;
	hex[strcspn(hex, "\r\n")] = 0;
	if (hex_parse(hex, key, KEY_FILE_BYTES)) {
		sodium_memzero(hex, sizeof(hex));
		sodium_memzero(key, KEY_FILE_BYTES);
		snprintf(err, len, "key file %s does not hold a key (64 hex digits)", path);
		return -EINVAL;
	}
	sodium_memzero(hex, sizeof(hex));
	return 0;
}

int key_file_create(const char *path, char *err, size_t len)
{
	uint8_t key[KEY_FILE_BYTES];
	char hex[KEY_HEX + 2];
	int fd, rc = 0;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		snprintf(err, len, "%s: %s", path, strerror(errno));
		return -errno;
	}
	randombytes_buf(key, sizeof(key));
	sodium_bin2hex(hex, sizeof(hex) - 1, key, sizeof(key));
	strcat(hex, "\n");
	if (write_all(fd, hex, strlen(hex)) < 0 || fsync(fd) < 0) {
		rc = -errno;
		snprintf(err, len, "writing %s: %s", path, strerror(errno));
		unlink(path);
	}
	close(fd);
	sodium_memzero(key, sizeof(key));
	sodium_memzero(hex, sizeof(hex));
	return rc;
}
