/* The control socket's request handlers: each line of the input, as a client would send
 * it, dispatched to a VMM's API over a VM without KVM (tests/unit/unit_vm.c: no vCPUs,
 * no memory). Requests that name host files or end the VMM — snapshot, migrate, stop and
 * the test hook — are left out: their arguments are checked by the same parsers the
 * others use (fuzzed here), and what they do is tested with real VMMs. The API and the VM
 * live across inputs, as in a VMM that takes request after request. */
#include "api_priv.h"
#include "fuzz.h"
#include "unit_vm.h"
#include "vmm.h"

#include <stdlib.h>
#include <string.h>

static bool excluded(const char *cmd)
{
	static const char *const skip[] = { "snapshot", "migrate", "stop", "sandbox-probe" };

	for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
		if (!strcmp(cmd, skip[i]))
			return true;
	return false;
}

int fuzz_handlers(const uint8_t *data, size_t size)
{
	static struct api *api;
	char *text = malloc(size + 1), *save = NULL;

	if (!api && api_open(NULL, -1, unit_vm_new(), &api))
		abort();
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	api->privileged = true; /* root's requests: every handler takes them */
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_t *req = NULL, *reply;
		const char *cmd = NULL;
		char err[256];

		if (api_parse_request(line, &req, &cmd, err, sizeof(err)) == 0 && excluded(cmd)) {
			json_decref(req);
			continue;
		}
		json_decref(req);
		reply = api_dispatch(api, line);
		if (!reply || !json_is_object(reply) ||
		    !json_is_boolean(json_object_get(reply, "ok")))
			abort(); /* every request gets {"ok":...} */
		json_decref(reply);
	}
	free(text);
	return 0;
}
