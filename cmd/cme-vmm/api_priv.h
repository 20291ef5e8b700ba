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
	struct migration *mig;	 /* the current or last migration */
	bool follow_pending;	 /* hand the requesting client to the migration after replying */
	bool in_doubt; /* a migration ended in doubt: sticky until stop or a forced resume */
};

/* api_migrate.c: migrate, migrate-status, migrate-cancel. */
json_t *api_migrate(struct api *api, json_t *req);
json_t *api_migrate_status(struct api *api, json_t *req);
json_t *api_migrate_cancel(struct api *api, json_t *req);
/* Non-NULL (an error reply) when resume must be refused: during a migration, and after
 * one ended in doubt unless req has "force" (which clears the doubt). */
json_t *api_in_doubt_guard(struct api *api, json_t *req);
/* Non-NULL (an error reply) while a migration runs: pause, snapshot and dirty-log would
 * fight it over the vCPUs and the dirty log. */
json_t *api_migration_busy(struct api *api, const char *what);

/* Parse and answer one request line; returns the reply (caller decrefs). */
json_t *api_dispatch(struct api *api, const char *line);

#endif
