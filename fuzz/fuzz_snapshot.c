/* The snapshot loader's reading side (hypervisor/snapshot.c), as restore and `cme-vmm
 * verify-snapshot` run it: header, VM state, memory records against the RAM layout,
 * checksum, and the encrypted framing — the file from memory, plain, and with the all-zero
 * key the seed corpus's encrypted snapshot was written with. */
#include "fuzz.h"
#include "hypervisor.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int fuzz_snapshot(const uint8_t *data, size_t size)
{
	static const uint8_t key[VM_SNAPSHOT_KEY_BYTES];
	struct vm_snapshot_info in;
	char err[512];
	int fd = memfd_create("fuzz-snapshot", MFD_CLOEXEC);

	if (fd < 0)
		return 0;
	if (write_all(fd, data, size) == 0 && lseek(fd, 0, SEEK_SET) == 0) {
		if (vm_snapshot_verify_fd(fd, NULL, &in, err, sizeof(err)) == 0 &&
		    (!in.vcpus || !in.mem_bytes))
			abort(); /* accepted without a VM to restore */
		if (lseek(fd, 0, SEEK_SET) == 0 &&
		    vm_snapshot_verify_fd(fd, key, &in, err, sizeof(err)) == 0 && !in.encrypted)
			abort(); /* a key, yet read in clear */
	}
	close(fd);
	return 0;
}
