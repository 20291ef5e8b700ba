/* Fencing on the control socket: fence-deadline, and how a fenced VM shows in replies. The
 * deadline is an absolute CLOCK_BOOTTIME time, never a duration: a request that arrives
 * late must not move the deadline later than its sender meant. */
#include "api_priv.h"

#include <errno.h>
#include <string.h>

const char *api_state_name(const struct vm_info *info)
{
	return info->fenced && info->state == VM_PAUSED ? "fenced" : vm_state_name(info->state);
}

json_t *api_fence_json(struct vm *vm)
{
	struct vm_fence f;
	int64_t left;

	vm_fence_get(vm, &f);
	if (!f.deadline_ns && !f.fenced)
		return json_null();
	left = f.deadline_ns ? ((int64_t)f.deadline_ns - (int64_t)boottime_ns()) / 1000000 : 0;
	return json_pack("{s:I,s:I,s:b,s:I}", "deadline_ns", (json_int_t)f.deadline_ns, "left_ms",
			 (json_int_t)left, "fenced", f.fenced, "fenced_at_ns",
			 (json_int_t)f.fenced_at_ns);
}

/* {"deadline_ns": N}: N of CLOCK_BOOTTIME (cat /proc/uptime is its seconds), 0 clears. */
json_t *api_fence_arg(json_t *req, uint64_t *deadline_ns)
{
	json_t *d = json_object_get(req, "deadline_ns");

	if (!json_is_integer(d) || json_integer_value(d) < 0)
		return api_error("fence-deadline needs \"deadline_ns\": a CLOCK_BOOTTIME time in "
				 "nanoseconds (0 clears it)");
	*deadline_ns = (uint64_t)json_integer_value(d);
	return NULL;
}

json_t *api_fence_deadline(struct api *api, json_t *req)
{
	uint64_t ns = 0;
	json_t *bad = api_fence_arg(req, &ns);
	int err;

	if (bad)
		return bad;
	err = vm_fence_set(api->vm, ns);
	if (err == -ESRCH)
		return api_error("the VM has ended");
	if (err)
		return api_error("fence-deadline: %s", strerror(-err));
	return json_pack("{s:b,s:o}", "ok", 1, "fence", api_fence_json(api->vm));
}

bool api_fenced(struct vm *vm)
{
	struct vm_fence f;

	vm_fence_get(vm, &f);
	return f.fenced || f.passed;
}

json_t *api_fence_refusal(struct vm *vm, const char *what)
{
	struct vm_fence f;

	vm_fence_get(vm, &f);
	return api_error("%s refused: fenced, its deadline passed %lld ms ago (the guest may run "
			 "elsewhere now); give a later deadline with fence-deadline first",
			 what,
			 (long long)((int64_t)boottime_ns() - (int64_t)f.deadline_ns) / 1000000);
}
