/* cme-clusterd's configuration file, as the operator (or a typo) writes it. */
#include "clusterd.h"
#include "fuzz.h"

#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int fuzz_config(const uint8_t *data, size_t size)
{
	int fd = memfd_create("cme-fuzz-config", MFD_CLOEXEC);
	struct cd_config c;
	char path[64], err[512];

	if (fd < 0)
		return 0;
	if (write(fd, data, size) == (ssize_t)size) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		if (cd_config_load(path, &c, err, sizeof(err)))
			err[0] = 0; /* refused: a reason, no crash */
	}
	close(fd);
	return 0;
}
