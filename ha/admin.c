/* ha: the operator's admin states and their names in etcd and cmectl. */
#include <string.h>

#include "ha.h"

static const char *const admin_names[] = {
	[HA_SCHEDULABLE] = "schedulable",
	[HA_DRAINING] = "draining",
	[HA_MAINTENANCE] = "maintenance",
};

#define NADMIN (sizeof(admin_names) / sizeof(admin_names[0]))

bool ha_admin_parse(const char *s, enum ha_admin *out)
{
	for (size_t i = 0; s && i < NADMIN; i++) {
		if (strcmp(s, admin_names[i]) == 0) {
			*out = (enum ha_admin)i;
			return true;
		}
	}
	return false;
}

const char *ha_admin_name(enum ha_admin a)
{
	/* Compared unsigned: an enum read from outside may hold any int. */
	if ((unsigned)a >= NADMIN)
		return "unknown";
	return admin_names[a];
}
