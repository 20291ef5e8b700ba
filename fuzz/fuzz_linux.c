/* The Linux kernel loaders' parsers: bzImage setup header and ELF program headers. What
 * they accept must lie inside the image they were given. */
#include "fuzz.h"
#include "linux_priv.h"

#include <stdlib.h>

int fuzz_linux(const uint8_t *data, size_t size)
{
	struct linux_setup s;
	struct linux_elf e;
	char err[256];

	if (linux_is_elf(data, size)) {
		if (linux_parse_elf(data, size, &e, err, sizeof(err)) == 0) {
			if (e.nr_seg > LINUX_MAX_SEGMENTS)
				abort();
			for (unsigned i = 0; i < e.nr_seg; i++)
				if (e.seg[i].offset > size ||
				    e.seg[i].filesz > size - e.seg[i].offset)
					abort(); /* a segment's bytes outside the file */
		}
	} else {
		(void)linux_parse_setup(data, size, &s, err, sizeof(err));
	}
	return 0;
}
