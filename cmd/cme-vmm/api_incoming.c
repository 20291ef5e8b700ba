/* The control socket while a migration arrives (`cme-vmm incoming`): no guest runs here
 * yet, so only status, the commit decision (incoming-commit), incoming-abort and stop mean
 * anything; every other request gets a one-line error. */
#include "api_priv.h"
#include "migrate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SUB "api"

static json_t *in_status(struct api *api, json_t *req)
{
	struct mig_in_status st;
	json_t *o;

	(void)req;
	mig_dest_get_status(api->dest, &st);
	/* running: the guest started a moment ago and the normal status is next. */
	o = json_pack("{s:b,s:s,s:s,s:i,s:s}", "ok", 1, "state",
		      st.phase == MIG_IN_RUNNING ? "running" : "incoming", "phase",
		      mig_in_phase_name(st.phase), "port", (int)st.port, "commit",
		      st.commit == MIG_COMMIT_EXTERNAL ? "external" : "direct");
	if (st.phase == MIG_IN_READY)
		json_object_set_new(o, "source_connected", json_boolean(!st.source_lost));
	if (st.error[0])
		json_object_set_new(o, "error", json_string(st.error));
	return o;
}

/* Returns once the guest runs here (or did not start); the API loop then serves it. */
static json_t *in_commit(struct api *api, json_t *req)
{
	char err[512] = "";

	(void)req;
	if (mig_dest_commit(api->dest, err, sizeof(err)) < 0)
		return api_error("incoming-commit refused: %s", err);
	log_info(SUB, "incoming-commit: the guest runs here");
	return json_pack("{s:b,s:s}", "ok", 1, "state", "running");
}

static json_t *in_abort_with(struct api *api, const char *reason)
{
	char err[512] = "";
	struct mig_in_status st;

	if (mig_dest_abort(api->dest, reason, err, sizeof(err)) < 0)
		return api_error("incoming-abort refused: %s", err);
	mig_dest_get_status(api->dest, &st);
	return json_pack("{s:b,s:s,s:s,s:b}", "ok", 1, "state", "incoming", "phase",
			 mig_in_phase_name(st.phase), "aborted", 1);
}

static json_t *in_abort(struct api *api, json_t *req)
{
	json_t *bad;
	const char *reason = api_reason(req, &bad);

	if (bad)
		return bad;
	return in_abort_with(api, reason ? reason : "incoming-abort from the control socket");
}

/* stop before the guest runs is an abort; if the guest is starting just now, it is
 * stopped as soon as it runs. */
static json_t *in_stop(struct api *api, json_t *req)
{
	json_t *r;

	(void)req;
	api->stop_requested = true;
	r = in_abort_with(api, "stopped by the operator");
	if (json_is_true(json_object_get(r, "ok")))
		return r;
	json_decref(r);
	return json_pack("{s:b,s:s}", "ok", 1, "state", "running");
}

/* The deadline the guest gets before its first instruction here. */
static json_t *in_fence(struct api *api, json_t *req)
{
	uint64_t ns = 0;
	json_t *bad = api_fence_arg(req, &ns);
	int err;

	if (bad)
		return bad;
	err = mig_dest_set_fence(api->dest, ns);
	if (err)
		return api_error("fence-deadline: %s", strerror(-err));
	return json_pack("{s:b,s:{s:I}}", "ok", 1, "fence", "deadline_ns", (json_int_t)ns);
}

static const struct {
	const char *name;
	json_t *(*fn)(struct api *api, json_t *req);
} in_cmds[] = {
	{ "status", in_status }, { "incoming-commit", in_commit }, { "incoming-abort", in_abort },
	{ "stop", in_stop },	 { "fence-deadline", in_fence },
};

json_t *api_incoming_dispatch(struct api *api, const char *line)
{
	char err[256];
	const char *cmd;
	json_t *req, *reply = NULL;
	struct mig_in_status st;

	if (api_parse_request(line, &req, &cmd, err, sizeof(err)) < 0)
		return api_error("%s", err);
	for (size_t i = 0; i < ARRAY_SIZE(in_cmds) && !reply; i++)
		if (!strcmp(cmd, in_cmds[i].name))
			reply = in_cmds[i].fn(api, req);
	if (!reply && api_known_command(cmd)) {
		mig_dest_get_status(api->dest, &st);
		reply = api_error("%s: no guest runs here yet (incoming migration, phase %s)", cmd,
				  mig_in_phase_name(st.phase));
	}
	if (!reply)
		reply = api_error("unknown command \"%s\"", cmd);
	json_decref(req);
	return reply;
}
