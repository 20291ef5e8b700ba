/* Which files a VM may be given. Its image, kernel, initrd and disk come from etcd, where
 * any holder of a cluster certificate can write any string — and a root VMM opens them (an
 * initrd of this node's TLS key would put it in guest RAM). Only files inside the node's
 * image_dirs are accepted, by their real path: links are followed first, so one that
 * leads out of the folders is refused, and the VMM is given the real path. */
#include "cd_priv.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* True when real (a real path) lies inside one of the colon-separated folders. */
static bool inside_dirs(const char *dirs, const char *real)
{
	char list[sizeof(((struct cd_config *)0)->image_dirs)], *save = NULL;

	snprintf(list, sizeof(list), "%s", dirs);
	for (char *d = strtok_r(list, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		char rd[PATH_MAX];
		size_t n;

		if (!realpath(d, rd))
			continue; /* a folder that is not there holds nothing */
		n = strlen(rd);
		if (!strcmp(rd, "/") || (!strncmp(real, rd, n) && real[n] == '/'))
			return true;
	}
	return false;
}

int cd_image_path(const struct cd_config *c, const char *what, const char *path, bool device,
		  char *out, size_t len, char *why, size_t whylen)
{
	char real[PATH_MAX];
	struct stat st;

	if (!realpath(path, real) || stat(real, &st) < 0) {
		int err = -errno;

		snprintf(why, whylen, "%s %s: %s", what, path, strerror(-err));
		return err;
	}
	if (!inside_dirs(c->image_dirs, real)) {
		snprintf(why, whylen, "%s %s is outside this node's image_dirs (%s)", what, path,
			 c->image_dirs);
		return -EACCES;
	}
	if (!S_ISREG(st.st_mode) && !(device && S_ISBLK(st.st_mode))) {
		snprintf(why, whylen, "%s %s is not a regular file%s", what, path,
			 device ? " or block device" : "");
		return -EACCES;
	}
	if (strlen(real) >= len) {
		snprintf(why, whylen, "%s %s: its real path is too long", what, path);
		return -ENAMETOOLONG;
	}
	strcpy(out, real);
	return 0;
}
