/* Time, sizes and overflow-safe range checks. */
#include "common.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <time.h>

bool range_within(uint64_t addr, uint64_t len, uint64_t base, uint64_t size)
{
	uint64_t end, limit;

	if (add_overflows_u64(addr, len, &end) || add_overflows_u64(base, size, &limit))
		return false;
	return addr >= base && end <= limit;
}

uint64_t bits_count(const uint64_t *words, uint64_t n, uint64_t limit)
{
	uint64_t c = 0;

	for (uint64_t w = 0; w < n && c <= limit; w++)
		c += (uint64_t)__builtin_popcountll(words[w]);
	return c;
}

bool mem_is_zero(const void *p, size_t len)
{
	const uint64_t *w = p;

	for (size_t i = 0; i < len / 8; i += 4)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3])
			return false;
	return true;
}

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t boottime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

void sleep_ns(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

void sleep_ms(unsigned ms)
{
	sleep_ns((uint64_t)ms * 1000000ull);
}

/* The shift for a binary unit letter, or -1. */
static int unit_shift(char c)
{
	switch (c) {
	case 'k':
	case 'K': return 10;
	case 'm':
	case 'M': return 20;
	case 'g':
	case 'G': return 30;
	case 't':
	case 'T': return 40;
	default: return -1;
	}
}

/* The decimal number s starts with (a digit first: no sign, no space) into *v, *end after
 * it. 0, or -EINVAL (none, or too large). */
static int leading_number(const char *s, unsigned long long *v, char **end)
{
	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	*v = strtoull(s, end, 10);
	return errno ? -EINVAL : 0;
}

int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	int shift = 0;

	if (leading_number(s, &v, &end))
		return -EINVAL;
	if (*end) {
		shift = unit_shift(*end++);
		if (shift < 0)
			return -EINVAL;
		if (!strcmp(end, "iB") || !strcmp(end, "B"))
			end += strlen(end);
		if (*end)
			return -EINVAL;
	}
	if (v == 0 || v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (leading_number(s, &v, &end) || *end)
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int parse_user(const char *a, long *uid, long *gid)
{
	struct passwd *pw = getpwnam(a);
	const char *colon = strchr(a, ':');
	uint64_t u, g = 0;
	char num[32];

	if (pw) {
		*uid = (long)pw->pw_uid;
		*gid = (long)pw->pw_gid;
		return 0;
	}
	snprintf(num, sizeof(num), "%.*s", colon ? (int)(colon - a) : (int)strlen(a), a);
	if (parse_uint(num, 0, 0xfffffffe, &u) ||
	    (colon && parse_uint(colon + 1, 0, 0xfffffffe, &g)))
		return -EINVAL;
	pw = colon ? NULL : getpwuid((uid_t)u);
	*uid = (long)u;
	*gid = colon ? (long)g : pw ? (long)pw->pw_gid : (long)u;
	return 0;
}

int parse_duration_ms(const char *s, uint64_t *out)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = { { "", 1000 },   { "ms", 1 },	{ "s", 1000 },
		      { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 } };
	char *end;
	unsigned long long v;

	if (leading_number(s, &v, &end))
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++)
		if (!strcmp(end, units[i].unit)) {
			if (v > UINT64_MAX / units[i].ms)
				return -EINVAL;
			*out = v * units[i].ms;
			return 0;
		}
	return -EINVAL;
}

uint64_t host_mem_bytes(void)
{
	struct sysinfo si;

	if (sysinfo(&si) < 0)
		return 0;
	return (uint64_t)si.totalram * si.mem_unit;
}
