/* Private to the control API files. */
#ifndef CME_API_PRIV_H
#define CME_API_PRIV_H

#include "vmm.h"

#define API_MAX_CLIENTS 16
#define API_MAX_LINE	65536
#define API_MAX_RATE	200 /* requests a second from one client */

struct api_client {
	int fd;
	struct linebuf lb;
	uint64_t last_ms;	       /* its last request or its connect */
	uint64_t window_ms, in_window; /* requests in the current second */
	bool privileged;	       /* root or the VMM's own user, not only --api-group */
};

struct api {
	struct vm *vm;
	int listen_fd;
	char *path;
	long gid;	 /* --api-group: its members are served too (-1: none) */
	bool privileged; /* the client of the request in hand: root or the VMM's user */
	struct api_client clients[API_MAX_CLIENTS];
	uint64_t dirty_since_ns; /* when dirty logging started or was last fetched */
	struct migration *mig;	 /* the current or last migration */
	struct backup *backup;	 /* the current or last live backup */
	bool follow_pending;	 /* hand the requesting client to the migration after replying */
	bool in_doubt; /* a migration ended in doubt: sticky until stop or a forced resume */
	struct mig_dest *dest;	 /* an arriving migration (vm is NULL until it runs here) */
	bool arrived;		 /* the VM came by migration (incoming-commit stays an ok) */
	bool stop_requested;	 /* stop or a signal while the migration arrived */
	const struct cgroup *cg; /* --cgroup, for status (NULL: none) */
	const char *tls_dir;	 /* --tls-dir: migrate's default (NULL: none) */
};

/* api_migrate.c: migrate, migrate-status, migrate-cancel, migrate-commit; and
 * incoming-commit / incoming-abort once an arrived guest runs here. */
json_t *api_migrate(struct api *api, json_t *req);
json_t *api_migrate_status(struct api *api, json_t *req);
json_t *api_migrate_cancel(struct api *api, json_t *req);
json_t *api_migrate_commit(struct api *api, json_t *req);
json_t *api_arrived_commit(struct api *api, json_t *req);
json_t *api_arrived_abort(struct api *api, json_t *req);
/* The optional "reason" of migrate-commit and incoming-abort: NULL when absent, or an error
 * reply in *bad. */
const char *api_reason(json_t *req, json_t **bad);
/* Non-NULL (an error reply) when resume must be refused: during a migration, and after
 * one ended in doubt unless req has "force" (which clears the doubt). */
json_t *api_in_doubt_guard(struct api *api, json_t *req);
/* Non-NULL (an error reply) while a migration or a backup runs: pause, snapshot and
 * dirty-log would fight it over the vCPUs and the dirty log. */
json_t *api_migration_busy(struct api *api, const char *what);

/* api_backup.c: backup, backup-status, backup-cancel. */
json_t *api_backup(struct api *api, json_t *req);
json_t *api_backup_status(struct api *api, json_t *req);
json_t *api_backup_cancel(struct api *api, json_t *req);

/* api_fence.c: fence-deadline; "fenced" for a paused VM whose deadline passed; the
 * fence object of status (JSON null when there is no deadline); the refusal of resume. */
json_t *api_fence_deadline(struct api *api, json_t *req);
/* Read "deadline_ns" of a fence-deadline request: NULL with *deadline_ns set, or the error
 * reply. */
json_t *api_fence_arg(json_t *req, uint64_t *deadline_ns);
const char *api_state_name(const struct vm_info *info);
json_t *api_fence_json(struct vm *vm);
json_t *api_fence_refusal(struct vm *vm, const char *what);
/* True when the VM is fenced or its deadline has passed: a fenced guest must not move to
 * another host (the cluster may be restarting it elsewhere). */
bool api_fenced(struct vm *vm);

/* api_balloon.c: balloon {"target_mb":N}; the balloon object of status (JSON null when the
 * VM has no balloon). */
json_t *api_balloon(struct api *api, json_t *req);
json_t *api_balloon_json(struct vm *vm);

/* Parse and answer one request line; returns the reply (caller decrefs). */
json_t *api_dispatch(struct api *api, const char *line);
/* True when cmd is a request of a running VM (api_dispatch knows it). */
bool api_known_command(const char *cmd);

/* api_incoming.c: the same while a migration arrives (api->vm is NULL). */
json_t *api_incoming_dispatch(struct api *api, const char *line);

#endif
