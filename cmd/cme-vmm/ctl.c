/* `cme-vmm ctl --api PATH CMD [JSON]`: send one control request, print the reply. */
#include "vmm.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

#define CTL_MAX_REPLY (16u << 20)

/* {"cmd":CMD} merged with the optional JSON object of arguments. */
static json_t *ctl_build_request(const char *cmd, const char *args)
{
	json_error_t jerr;
	json_t *req = args ? json_loads(args, 0, &jerr) : json_object();

	if (!req || !json_is_object(req)) {
		fprintf(stderr, "cme-vmm ctl: arguments must be a JSON object: %s\n",
			req ? "got another JSON value" : jerr.text);
		json_decref(req);
		return NULL;
	}
	json_object_set_new(req, "cmd", json_string(cmd));
	return req;
}

static int ctl_exchange(const char *path, json_t *req)
{
	int fd = unix_connect(path), err;
	json_t *reply;
	char *s;

	if (fd < 0) {
		fprintf(stderr, "cme-vmm ctl: cannot connect to %s: %s\n", path, strerror(-fd));
		return 1;
	}
	err = jsonl_send(fd, req);
	if (!err)
		err = jsonl_recv(fd, CTL_MAX_REPLY, &reply);
	close(fd);
	if (err) {
		fprintf(stderr, "cme-vmm ctl: %s: %s\n", path,
			err == -EPIPE ? "the VMM closed the connection" : strerror(-err));
		return 1;
	}
	s = json_dumps(reply, JSON_COMPACT);
	printf("%s\n", s ? s : "{}");
	free(s);
	err = json_is_true(json_object_get(reply, "ok")) ? 0 : 1;
	json_decref(reply);
	return err;
}

int vmm_ctl_main(int argc, char **argv)
{
	const char *path = NULL;
	json_t *req;
	int i = 1, rc;

	if (argc > 2 && !strcmp(argv[1], "--api")) {
		path = argv[2];
		i = 3;
	}
	if (!path || i >= argc || argc - i > 2) {
		fprintf(stderr, "usage: cme-vmm ctl --api PATH CMD [JSON-ARGS]\n");
		return VMM_EXIT_USAGE;
	}
	req = ctl_build_request(argv[i], i + 1 < argc ? argv[i + 1] : NULL);
	if (!req)
		return VMM_EXIT_USAGE;
	rc = ctl_exchange(path, req);
	json_decref(req);
	return rc;
}
