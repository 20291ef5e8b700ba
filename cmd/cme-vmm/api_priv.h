/* Private to the control API files. */
#ifndef CME_API_PRIV_H
#define CME_API_PRIV_H

#include "vmm.h"

#define API_MAX_CLIENTS 16
#define API_MAX_LINE	65536

struct api_client {
	int fd;
	struct linebuf lb;
};

struct api {
	struct vm *vm;
	int listen_fd;
	char *path;
	struct api_client clients[API_MAX_CLIENTS];
	uint64_t dirty_since_ns; /* when dirty logging started or was last fetched */
};

/* Parse and answer one request line; returns the reply (caller decrefs). */
json_t *api_dispatch(struct api *api, const char *line);

#endif
