/* The memory balloon on the control socket: `balloon {"target_mb":N}` sets the target the
 * guest inflates or deflates towards, and status shows where it stands. A bad target is
 * refused with one line and leaves the VM as it was. */
#include "api_priv.h"

#include <errno.h>
#include <string.h>

#define PAGES_PER_MIB ((1ull << 20) / VM_PAGE_SIZE)

json_t *api_balloon_json(struct vm *vm)
{
	struct vm_balloon b;

	if (!vm_balloon_get(vm, &b))
		return json_null();
	return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "target_mb",
			 (json_int_t)(b.target_pages / PAGES_PER_MIB), "actual_mb",
			 (json_int_t)(b.actual_pages / PAGES_PER_MIB), "target_pages",
			 (json_int_t)b.target_pages, "actual_pages", (json_int_t)b.actual_pages,
			 "inflated_pages", (json_int_t)b.inflated_pages, "deflated_pages",
			 (json_int_t)b.deflated_pages, "reported_pages",
			 (json_int_t)b.reported_pages, "released_bytes",
			 (json_int_t)b.released_bytes);
}

json_t *api_balloon(struct api *api, json_t *req)
{
	json_t *t = json_object_get(req, "target_mb");
	struct vm_info info;
	json_int_t mb;
	int err;

	vm_get_info(api->vm, &info);
	if (!info.balloon)
		return api_error(
			"balloon: this VM has no balloon device (start it with --balloon)");
	if (!json_is_integer(t) || json_integer_value(t) < 0)
		return api_error(
			"balloon needs \"target_mb\": a whole number of MiB from 0 to %llu",
			(unsigned long long)(info.mem_bytes >> 20));
	mb = json_integer_value(t);
	if ((uint64_t)mb > info.mem_bytes >> 20)
		return api_error("balloon: target_mb %lld is more than the VM's %llu MiB of RAM",
				 (long long)mb, (unsigned long long)(info.mem_bytes >> 20));
	err = vm_balloon_set(api->vm, (uint64_t)mb * PAGES_PER_MIB);
	if (err)
		return api_error("balloon: %s", strerror(-err));
	return json_pack("{s:b,s:I}", "ok", 1, "target_mb", mb);
}
