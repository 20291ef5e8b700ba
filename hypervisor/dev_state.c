/* Helpers of the devices' state functions: a restore's refusal, a save's packing. */
#include "dev_priv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

int dev_state_fail(struct dev_xfer *x, const char *fmt, ...)
{
	char why[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	snprintf(x->err, x->errlen, "%s state: %s", x->name, why);
	return -EINVAL;
}

int dev_state_pack(struct dev_xfer *x, const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = arena_alloc(x->arena, len);

	if (!buf)
		return -ENOMEM;
	x->bytes.len = protobuf_c_message_pack(msg, buf);
	x->bytes.data = buf;
	return 0;
}
