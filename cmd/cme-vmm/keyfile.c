/* Snapshot keys: 32 random bytes as 64 hex digits on one line, in a file only its owner
 * may read or write. `cme-vmm keygen FILE` makes one; `cme-vmm verify-snapshot` checks a
 * snapshot (with its key) without restoring it. */
#include "vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_HEX (2 * VM_SNAPSHOT_KEY_BYTES)

int vmm_key_load(const char *path, uint8_t key[VM_SNAPSHOT_KEY_BYTES], char *err, size_t len)
{
	char hex[KEY_HEX + 8];
	size_t bin_len = 0;
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
	if (strlen(hex) != KEY_HEX ||
	    sodium_hex2bin(key, VM_SNAPSHOT_KEY_BYTES, hex, KEY_HEX, NULL, &bin_len, NULL) ||
	    bin_len != VM_SNAPSHOT_KEY_BYTES) {
		sodium_memzero(hex, sizeof(hex));
		sodium_memzero(key, VM_SNAPSHOT_KEY_BYTES);
		snprintf(err, len, "key file %s does not hold a key (64 hex digits)", path);
		return -EINVAL;
	}
	sodium_memzero(hex, sizeof(hex));
	return 0;
}

int vmm_keygen_main(int argc, char **argv)
{
	uint8_t key[VM_SNAPSHOT_KEY_BYTES];
	char hex[KEY_HEX + 2];
	int fd, rc = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: cme-vmm keygen FILE\n");
		return VMM_EXIT_USAGE;
	}
	fd = open(argv[1], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		fprintf(stderr, "cme-vmm keygen: %s: %s\n", argv[1], strerror(errno));
		return VMM_EXIT_SETUP;
	}
	randombytes_buf(key, sizeof(key));
	sodium_bin2hex(hex, sizeof(hex) - 1, key, sizeof(key));
	strcat(hex, "\n");
	if (write_all(fd, hex, strlen(hex)) < 0 || fsync(fd) < 0) {
		fprintf(stderr, "cme-vmm keygen: writing %s: %s\n", argv[1], strerror(errno));
		unlink(argv[1]);
		rc = VMM_EXIT_SETUP;
	}
	close(fd);
	sodium_memzero(key, sizeof(key));
	sodium_memzero(hex, sizeof(hex));
	return rc;
}

/* `cme-vmm verify-snapshot FILE [--key KEYFILE]`: the whole file read and checked as
 * restore would, no VM made. One JSON line on stdout and status 0, or the reason on
 * stderr and status 1 (2: usage). */
int vmm_verify_snapshot_main(int argc, char **argv)
{
	uint8_t key[VM_SNAPSHOT_KEY_BYTES];
	char err[512] = "", hex[2 * MEASURE_BYTES + 1];
	struct vm_snapshot_info in;
	const char *key_file = argc == 4 && !strcmp(argv[2], "--key") ? argv[3] : NULL;
	int fd, rc;

	if (argc != 2 && !key_file) {
		fprintf(stderr, "usage: cme-vmm verify-snapshot FILE [--key KEYFILE]\n");
		return VMM_EXIT_USAGE;
	}
	if (key_file && vmm_key_load(key_file, key, err, sizeof(err))) {
		fprintf(stderr, "cme-vmm verify-snapshot: %s\n", err);
		return VMM_EXIT_SETUP;
	}
	fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "cme-vmm verify-snapshot: %s: %s\n", argv[1], strerror(errno));
		return VMM_EXIT_SETUP;
	}
	rc = vm_snapshot_verify_fd(fd, key_file ? key : NULL, &in, err, sizeof(err));
	close(fd);
	sodium_memzero(key, sizeof(key));
	if (rc) {
		fprintf(stderr, "cme-vmm verify-snapshot: %s: %s\n", argv[1],
			err[0] ? err : strerror(-rc));
		return VMM_EXIT_SETUP;
	}
	if (in.measured)
		measure_hex(in.measurement, hex);
	printf("{\"ok\":true,\"mem_bytes\":%llu,\"vcpus\":%u,\"pages\":%llu,\"state_bytes\":"
	       "%llu,\"bytes\":%llu,\"encrypted\":%s,\"measurement\":%s%s%s}\n",
	       (unsigned long long)in.mem_bytes, in.vcpus, (unsigned long long)in.st.pages,
	       (unsigned long long)in.st.state_bytes, (unsigned long long)in.st.bytes,
	       in.encrypted ? "true" : "false", in.measured ? "\"" : "", in.measured ? hex : "null",
	       in.measured ? "\"" : "");
	return VMM_EXIT_OK;
}
