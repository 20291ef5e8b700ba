/* The fuzz targets' seed corpus (fuzz/corpus/NAME/), replayed through the same functions
 * libFuzzer drives in `make fuzz`: no input of it may crash, leak or trip a sanitizer. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "harness.h"
#include "unit.h"

static const struct {
	const char *name;
	int (*fn)(const uint8_t *, size_t);
} targets[] = {
	{ "records", fuzz_records },   { "linux", fuzz_linux },	  { "request", fuzz_request },
	{ "proto", fuzz_proto },       { "config", fuzz_config }, { "snapshot", fuzz_snapshot },
	{ "handlers", fuzz_handlers }, { "stream", fuzz_stream }, { "store", fuzz_store },
	{ "etcd", fuzz_etcd },
};

/* Every file of dir through fn; returns how many. */
static int replay(const char *dir, int (*fn)(const uint8_t *, size_t))
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d))) {
		char path[1400];
		FILE *f;
		uint8_t *buf;
		long len;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		f = fopen(path, "rb");
		if (!f)
			continue;
		fseek(f, 0, SEEK_END);
		len = ftell(f);
		rewind(f);
		buf = malloc(len > 0 ? (size_t)len : 1);
		if (buf && fread(buf, 1, (size_t)len, f) == (size_t)len) {
			fn(buf, (size_t)len);
			n++;
		}
		free(buf);
		fclose(f);
	}
	if (d)
		closedir(d);
	return n;
}

static void test_corpus(void)
{
	const char *src = getenv("CME_SRCDIR");

	for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
		char dir[1024];
		int n;

		snprintf(dir, sizeof(dir), "%s/fuzz/corpus/%s", src ? src : ".", targets[i].name);
		n = replay(dir, targets[i].fn);
		CU_ASSERT(n > 0); /* every target has seeds */
		if (n <= 0)
			printf("\n    no corpus in %s\n", dir);
	}
}

void suite_fuzz(void)
{
	static const struct test_case cases[] = {
		{ "fuzz targets: the corpus replays clean", test_corpus },
		{ NULL, NULL },
	};
	test_add_suite("fuzz", cases);
}
