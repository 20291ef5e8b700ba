/* The control socket's framing: bytes as they come from a client, split into lines by
 * the line buffer (with its size limit), each line parsed as a request. */
#include "fuzz.h"
#include "vmm.h"

#include <stdlib.h>
#include <unistd.h>

int fuzz_request(const uint8_t *data, size_t size)
{
	struct linebuf lb;
	int p[2];
	char *line;

	if (pipe(p) < 0)
		return 0;
	if (size > 60000)
		size = 60000; /* a pipe's buffer; bigger lines are tested by the unit tests */
	if (write(p[1], data, size) != (ssize_t)size) {
		close(p[0]);
		close(p[1]);
		return 0;
	}
	close(p[1]);
	linebuf_init(&lb, 4096);
	while (linebuf_fill(&lb, p[0]) > 0)
		;
	while ((line = linebuf_take(&lb))) {
		json_t *req = NULL;
		const char *cmd = NULL;
		char err[256];

		if (api_parse_request(line, &req, &cmd, err, sizeof(err)) == 0 && !cmd)
			abort();
		json_decref(req);
		free(line);
	}
	linebuf_free(&lb);
	close(p[0]);
	return 0;
}
