/* Control requests for live migration: start (optionally following progress on the same
 * connection), status, cancel, the commit decision of the external mode; the in-doubt
 * guard on resume; and incoming-commit/-abort once an arrived guest runs here. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api_priv.h"
#include "backup.h"
#include "migrate.h"

/* A rate: a number of bytes/s, or a size string per second ("100M" = 100 MiB/s). */
static int json_rate(json_t *v, uint64_t *out)
{
	if (!v)
		return 0;
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*out = (uint64_t)json_integer_value(v);
		return 0;
	}
	return json_is_string(v) ? parse_size(json_string_value(v), out) : -EINVAL;
}

static int json_u64(json_t *req, const char *key, uint64_t min, uint64_t max, uint64_t *out)
{
	json_t *v = json_object_get(req, key);

	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)min ||
	    (uint64_t)json_integer_value(v) > max)
		return -EINVAL;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

/* Operator arguments onto the defaults; the reply names the first bad one. */
static const char *migrate_params(json_t *req, const char *tls_dir, struct mig_params *p)
{
	uint64_t ch = p->channels, rounds = p->max_rounds, timeout_s = p->timeout_ms / 1000;
	uint64_t pc_after = 0;
	json_t *pc = json_object_get(req, "postcopy");
	json_t *ac = json_object_get(req, "auto_converge");
	json_t *commit = json_object_get(req, "commit");

	p->to = json_string_value(json_object_get(req, "to"));
	p->tls_dir = json_string_value(json_object_get(req, "tls_dir"));
	p->peer_name = json_string_value(json_object_get(req, "peer_name"));
	if (!p->tls_dir)
		p->tls_dir = tls_dir; /* the VMM's --tls-dir */
	if (!p->to || !p->tls_dir)
		return "migrate needs \"to\" (HOST:PORT) and \"tls_dir\" (or the VMM's --tls-dir)";
	if (json_u64(req, "downtime_ms", 1, 600000, &p->downtime_ms))
		return "downtime_ms must be 1..600000";
	if (json_rate(json_object_get(req, "max_bandwidth"), &p->max_bandwidth))
		return "max_bandwidth must be bytes/s or a size like 100M (per second)";
	if (json_u64(req, "channels", 1, 8, &ch) || json_u64(req, "max_rounds", 1, 1000, &rounds))
		return "channels must be 1..8 and max_rounds 1..1000";
	if (json_u64(req, "timeout_s", 1, 86400, &timeout_s))
		return "timeout_s must be 1..86400";
	if (ac && !json_is_boolean(ac))
		return "auto_converge must be true or false";
	if (pc && !json_is_boolean(pc))
		return "postcopy must be true or false";
	if (json_u64(req, "postcopy_after", 1, 1000, &pc_after))
		return "postcopy_after must be 1..1000 (rounds)";
	p->postcopy_after = (unsigned)(pc_after ? pc_after : json_is_true(pc) ? 1 : 0);
	if (commit && (!json_is_string(commit) || (strcmp(json_string_value(commit), "direct") &&
						   strcmp(json_string_value(commit), "external"))))
		return "commit must be \"direct\" or \"external\"";
	p->commit = commit && !strcmp(json_string_value(commit), "external") ? MIG_COMMIT_EXTERNAL
									     : MIG_COMMIT_DIRECT;
	p->channels = (unsigned)ch;
	p->max_rounds = (unsigned)rounds;
	p->timeout_ms = timeout_s * 1000;
	p->auto_converge = !ac || json_is_true(ac);
	return NULL;
}

/* Why a resume or a new migration waits for the operator (api->in_doubt); in_doubt: the
 * text for a migration in doubt. */
static const char *doubt_msg(struct api *api, const char *in_doubt)
{
	struct mig_progress prog = { 0 };

	if (api->mig)
		mig_get_progress(api->mig, &prog);
	if (prog.phase == MIG_POSTCOPY_BROKEN)
		return "post-copy broke after the switch: the guest ran on the destination and "
		       "cannot go on there; its state here is as of the switch: resume "
		       "{\"force\":true} runs it from that point (what it did there is lost), "
		       "or stop";
	return in_doubt;
}

/* Whether the last migration ended in doubt (then it stays so until stop or a forced
 * resume, whatever happens to api->mig). */
static bool api_check_doubt(struct api *api)
{
	struct mig_progress prog;

	if (api->mig && mig_finished(api->mig)) {
		mig_get_progress(api->mig, &prog);
		if (prog.phase == MIG_IN_DOUBT || prog.phase == MIG_POSTCOPY_BROKEN)
			api->in_doubt = true;
	}
	return api->in_doubt;
}

json_t *api_migrate(struct api *api, json_t *req)
{
	struct mig_params p;
	struct migration *m = NULL;
	const char *bad;
	char err[512] = "";
	int rc;

	if (!api->privileged) /* it names host files (tls_dir) the VMM reads */
		return api_error("migrate: only root or the VMM's own user may ask it "
				 "(--api-group members may not)");
	if (api->mig && !mig_finished(api->mig))
		return api_error("a migration is already running");
	if (api->backup && !backup_finished(api->backup))
		return api_error("migrate refused: a backup is running (backup-cancel first)");
	if (api_check_doubt(api))
		return api_error("%s", doubt_msg(api, "the last migration is in doubt: the guest "
						      "may run on its destination; check there, "
						      "then resume {\"force\":true} or stop"));
	if (api_fenced(api->vm))
		return api_fence_refusal(api->vm, "migrate");
	mig_params_defaults(&p);
	bad = migrate_params(req, api->tls_dir, &p);
	if (bad)
		return api_error("%s", bad);
	rc = mig_start(api->vm, &p, &m, err, sizeof(err));
	if (rc)
		return api_error("migrate: %s", err[0] ? err : strerror(-rc));
	mig_free(api->mig);
	api->mig = m;
	api->follow_pending = json_is_true(json_object_get(req, "follow"));
	return json_pack("{s:b,s:s,s:s,s:s}", "ok", 1, "phase", "setup", "to", p.to, "commit",
			 p.commit == MIG_COMMIT_EXTERNAL ? "external" : "direct");
}

json_t *api_migrate_status(struct api *api, json_t *req)
{
	struct mig_progress prog;
	json_t *o;
	char *s;

	(void)req;
	if (!api->mig)
		return api_error("no migration has been started");
	mig_get_progress(api->mig, &prog);
	s = mig_progress_json(&prog);
	o = s ? json_loads(s, 0, NULL) : NULL;
	free(s);
	if (!o)
		return api_error("out of memory");
	json_object_set_new(o, "ok", json_true());
	return o;
}

json_t *api_migrate_cancel(struct api *api, json_t *req)
{
	struct mig_progress prog;

	(void)req;
	if (!api->mig || mig_finished(api->mig))
		return api_error("no migration is running");
	mig_get_progress(api->mig, &prog);
	if (prog.phase == MIG_COMMIT)
		return api_error("too late to cancel: the destination is taking over");
	if (mig_cancel(api->mig) == -EBUSY)
		return api_error("cancel refused: the cluster is deciding the commit "
				 "(migrate-commit {\"decision\":\"abort\"} ends it)");
	return json_pack("{s:b,s:s}", "ok", 1, "phase", mig_phase_name(prog.phase));
}

const char *api_reason(json_t *req, json_t **bad)
{
	json_t *r = json_object_get(req, "reason");

	*bad = NULL;
	if (r && (!json_is_string(r) || !json_string_length(r) || json_string_length(r) > 200))
		*bad = api_error("\"reason\" must be a string of 1 to 200 bytes");
	return r && !*bad ? json_string_value(r) : NULL;
}

json_t *api_migrate_commit(struct api *api, json_t *req)
{
	const char *d = json_string_value(json_object_get(req, "decision")), *reason;
	struct mig_progress prog;
	json_t *bad;
	int rc;

	if (!d || (strcmp(d, "commit") && strcmp(d, "abort")))
		return api_error("migrate-commit needs \"decision\": \"commit\" or \"abort\"");
	reason = api_reason(req, &bad);
	if (bad)
		return bad;
	if (!api->mig || mig_finished(api->mig))
		return api_error("no migration is awaiting commit");
	rc = mig_decide(api->mig, !strcmp(d, "commit"), reason);
	mig_get_progress(api->mig, &prog);
	if (rc == -EALREADY)
		return api_error("the commit was already decided");
	if (rc)
		return api_error("no migration is awaiting commit (phase %s)",
				 mig_phase_name(prog.phase));
	log_info("api", "migration commit decided: %s%s%s", d, reason ? ": " : "",
		 reason ? reason : "");
	return json_pack("{s:b,s:s}", "ok", 1, "decision", d);
}

json_t *api_arrived_commit(struct api *api, json_t *req)
{
	struct vm_info info;

	(void)req;
	if (!api->arrived)
		return api_error("no incoming migration: this VM did not arrive by migration");
	vm_get_info(api->vm, &info);
	return json_pack("{s:b,s:s}", "ok", 1, "state", api_state_name(&info));
}

json_t *api_arrived_abort(struct api *api, json_t *req)
{
	(void)req;
	if (!api->arrived)
		return api_error("no incoming migration: this VM did not arrive by migration");
	return api_error("incoming-abort refused: the guest runs here already");
}

json_t *api_migration_busy(struct api *api, const char *what)
{
	struct mig_progress prog;

	if (api->backup && !backup_finished(api->backup))
		return api_error("%s refused: a backup is running (backup-cancel first)", what);
	if (!api->mig || mig_finished(api->mig))
		return NULL;
	mig_get_progress(api->mig, &prog);
	if (prog.phase == MIG_AWAIT_COMMIT)
		return api_error("%s refused: a migration is running and the cluster is deciding "
				 "the commit (migrate-commit ends it)",
				 what);
	return api_error("%s refused: a migration is running (migrate-cancel first)", what);
}

json_t *api_in_doubt_guard(struct api *api, json_t *req)
{
	/* During a migration only the migration may resume the guest: a resume here could
	 * let it run on both hosts. */
	json_t *busy = api_migration_busy(api, "resume");

	if (busy)
		return busy;
	if (!api_check_doubt(api))
		return NULL;
	if (json_is_true(json_object_get(req, "force"))) {
		api->in_doubt = false;
		log_warn("api", "resume forced after a migration in doubt or a broken post-copy");
		return NULL;
	}
	return api_error("%s", doubt_msg(api, "migration in doubt: the guest may already run on "
					      "the destination; check there, then resume "
					      "{\"force\":true} or stop"));
}
