/* cmectl image keygen|measure|sign|verify: signed boot for the operator (common.h's
 * bootsig.c, the same code as cme-vmm's). Files only: no etcd. */
#include "cmectl.h"

#include <stdlib.h>

/* argv after the command words, with argv[0] naming the command for messages. */
static int run(int (*fn)(int, char **), const char *name, int argc, char **argv)
{
	char **v = calloc((size_t)argc + 2, sizeof(*v));
	int rc;

	if (!v)
		return ctl_fail("out of memory");
	v[0] = (char *)name;
	for (int i = 0; i < argc; i++)
		v[i + 1] = argv[i];
	rc = fn(argc + 1, v);
	free(v);
	return rc;
}

int ctl_cmd_image_keygen(struct ctl *c, int argc, char **argv)
{
	(void)c;
	return run(boot_cmd_keygen, "cmectl image keygen", argc, argv);
}

int ctl_cmd_image_measure(struct ctl *c, int argc, char **argv)
{
	(void)c;
	return run(boot_cmd_measure, "cmectl image measure", argc, argv);
}

int ctl_cmd_image_sign(struct ctl *c, int argc, char **argv)
{
	(void)c;
	return run(boot_cmd_sign, "cmectl image sign", argc, argv);
}

int ctl_cmd_image_verify(struct ctl *c, int argc, char **argv)
{
	(void)c;
	return run(boot_cmd_verify, "cmectl image verify", argc, argv);
}
