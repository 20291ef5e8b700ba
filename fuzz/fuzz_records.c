/* The etcd record parsers: the first byte picks the record type, the rest is its JSON
 * text. Whatever a parser accepts must encode back and parse again the same way. */
#include "cluster.h"
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#define ROUND_TRIP(type, parse, json, txt, len)                                                    \
	do {                                                                                       \
		struct type a, b;                                                                  \
		struct etcd_err e = { "" };                                                        \
		if (parse(txt, len, &a, &e) == 0) {                                                \
			char *j = json(&a);                                                        \
			if (j && parse(j, strlen(j), &b, &e) != 0)                                 \
				abort(); /* what was accepted must round-trip */                   \
			free(j);                                                                   \
		}                                                                                  \
	} while (0)

int fuzz_records(const uint8_t *data, size_t size)
{
	const char *txt = (const char *)data + 1;
	size_t len = size ? size - 1 : 0;

	if (!size)
		return 0;
	switch (data[0] % 8) {
	case 0: ROUND_TRIP(cl_node, cl_node_parse, cl_node_json, txt, len); break;
	case 1: ROUND_TRIP(cl_admin, cl_admin_parse, cl_admin_json, txt, len); break;
	case 2: ROUND_TRIP(cl_member, cl_member_parse, cl_member_json, txt, len); break;
	case 3: ROUND_TRIP(cl_spec, cl_spec_parse, cl_spec_json, txt, len); break;
	case 4: ROUND_TRIP(cl_owner, cl_owner_parse, cl_owner_json, txt, len); break;
	case 5: ROUND_TRIP(cl_status, cl_status_parse, cl_status_json, txt, len); break;
	case 6: ROUND_TRIP(cl_migration, cl_migration_parse, cl_migration_json, txt, len); break;
	default: ROUND_TRIP(cl_event, cl_event_parse, cl_event_json, txt, len); break;
	}
	return 0;
}
