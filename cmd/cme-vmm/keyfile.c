/* Snapshot keys (common's key files): `cme-vmm keygen FILE` makes one; `cme-vmm verify-snapshot` checks a
 * snapshot (with its key) without restoring it. */
#include "vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(VM_SNAPSHOT_KEY_BYTES == KEY_FILE_BYTES, "snapshot keys are key files");

/* --key read while the VMM is still root (jail_drop_user): its user may not read it. */
static uint8_t preloaded[KEY_FILE_BYTES];
static char preloaded_path[PATH_MAX];

int vmm_key_preload(const char *path, char *err, size_t len)
{
	int rc = key_file_load(path, preloaded, err, len);

	if (!rc)
		snprintf(preloaded_path, sizeof(preloaded_path), "%s", path);
	return rc;
}

int vmm_key_load(const char *path, uint8_t key[KEY_FILE_BYTES], char *err, size_t len)
{
	if (preloaded_path[0] && !strcmp(path, preloaded_path)) {
		memcpy(key, preloaded, KEY_FILE_BYTES);
		sodium_memzero(preloaded, sizeof(preloaded));
		preloaded_path[0] = 0;
		return 0;
	}
	return key_file_load(path, key, err, len);
}

int vmm_keygen_main(int argc, char **argv)
{
	char err[512];

	if (argc != 2) {
		fprintf(stderr, "usage: cme-vmm keygen FILE\n");
		return VMM_EXIT_USAGE;
	}
	if (key_file_create(argv[1], err, sizeof(err))) {
		fprintf(stderr, "cme-vmm keygen: %s\n", err);
		return VMM_EXIT_SETUP;
	}
	return VMM_EXIT_OK;
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
	if (key_file && key_file_load(key_file, key, err, sizeof(err))) {
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
