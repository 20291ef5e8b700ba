/* The control protocol's framing: one JSON object per line, {"cmd":"NAME", ...arguments},
 * and its error replies. Shared by every request handler, below all of them. */
#include "vmm.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

json_t *api_error(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:b,s:s}", "ok", 0, "error", msg);
}

int api_parse_request(const char *line, json_t **req, const char **cmd, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *r = json_loads(line, JSON_REJECT_DUPLICATES, &jerr), *c;

	if (!r) {
		snprintf(err, errlen, "malformed request: %s", jerr.text);
		return -EINVAL;
	}
	c = json_object_get(r, "cmd");
	if (!json_is_object(r) || !json_is_string(c)) {
		snprintf(err, errlen, "malformed request: expected {\"cmd\":\"...\"}");
		json_decref(r);
		return -EINVAL;
	}
	*req = r;
	*cmd = json_string_value(c);
	return 0;
}
