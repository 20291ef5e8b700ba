/* Test harness: CUnit runner, skips, temp dirs. */
#include "harness.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static unsigned skipped;
static char tmp_root[256];

void test_skip(const char *fmt, ...)
{
	CU_pTest t = CU_get_current_test();
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	printf("\n  SKIPPED %s: %s\n", t ? t->pName : "?", why);
	fflush(stdout);
	skipped++;
}

static void (*extra_teardown)(void);

void test_on_teardown(void (*fn)(void))
{
	extra_teardown = fn;
}

/* After every test: no VMM it started may outlive it, whatever assertion ended it. */
static void test_teardown(void)
{
	if (extra_teardown)
		extra_teardown();
	vmm_kill_all();
}

void test_add_suite(const char *name, const struct test_case *cases)
{
	CU_pSuite s = CU_add_suite_with_setup_and_teardown(name, NULL, NULL, NULL, test_teardown);

	for (; s && cases->name; cases++)
		CU_add_test(s, cases->name, cases->fn);
}

static void write_results(const char *runner, unsigned run, unsigned failed)
{
	const char *path = getenv("CME_TEST_RESULTS");
	FILE *f;

	if (!path || !(f = fopen(path, "a")))
		return;
	fprintf(f, "%s %u %u %u\n", runner, run, failed, skipped);
	fclose(f);
}

void test_remove_tmp(void)
{
	char cmd[300];

	if (!tmp_root[0] || getenv("CME_KEEP_TMP"))
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_root);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmp_root);
}

static void on_sigpipe(int sig)
{
	(void)sig;
}

int test_main(const char *runner)
{
	unsigned run, failed;

	const char *only = getenv("CME_TEST_SUITE"); /* developers: run one suite */

	/* A VMM that drops a connection mid-request must fail the test, not kill the runner.
	 * A handler, not SIG_IGN: exec resets it, so the programs the tests start get the
	 * default disposition, as from an operator's shell (SIG_IGN would be inherited and
	 * hide a VMM that dies of SIGPIPE). */
	signal(SIGPIPE, on_sigpipe);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	const char *one = getenv("CME_TEST_CASE"); /* and one test of it */

	if (only && CU_get_suite(only) && one && CU_get_test(CU_get_suite(only), one))
		CU_basic_run_test(CU_get_suite(only), CU_get_test(CU_get_suite(only), one));
	else if (only && CU_get_suite(only))
		CU_basic_run_suite(CU_get_suite(only));
	else
		CU_basic_run_tests();
	run = CU_get_number_of_tests_run();
	failed = CU_get_number_of_tests_failed();
	write_results(runner, run, failed);
	printf("%s: %u tests, %u failed, %u skipped\n", runner, run, failed, skipped);
	CU_cleanup_registry();
	test_remove_tmp();
	return failed ? 1 : 0;
}

bool test_have_kvm(char *why, size_t len)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		snprintf(why, len, "needs /dev/kvm (%s)", strerror(errno));
		return false;
	}
	close(fd);
	return true;
}

const char *test_bin(const char *name)
{
	static char path[8][512];
	static unsigned n;
	const char *b = getenv("CME_BUILD");
	char *p = path[n++ % 8];

	snprintf(p, 512, "%s/bin/%s", b ? b : "build", name);
	return p;
}

const char *test_guest(void)
{
	static char path[512];
	const char *b = getenv("CME_BUILD");

	snprintf(path, sizeof(path), "%s/guest/selfcheck.bin", b ? b : "build");
	return path;
}

const char *test_tmpdir(void)
{
	static char dir[512];
	static unsigned n;

	if (!tmp_root[0]) {
		snprintf(tmp_root, sizeof(tmp_root), "/tmp/cme-test.XXXXXX");
		if (!mkdtemp(tmp_root) || chmod(tmp_root, 0755) < 0) {
			perror("mkdtemp");
			exit(1);
		}
	}
	snprintf(dir, sizeof(dir), "%s/%u", tmp_root, n++);
	mkdir(dir, 0755);
	return dir;
}

bool test_wait_file_has(const char *path, const char *needle, int timeout_ms)
{
	for (int t = 0;; t += 100) {
		char *text = test_read_file(path);
		bool hit = text && strstr(text, needle);

		free(text);
		if (hit)
			return true;
		if (t >= timeout_ms)
			return false;
		usleep(100 * 1000);
	}
}

char *test_read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	size_t len = 0, cap = 4096;
	char *buf = calloc(1, cap + 1), *more;
	size_t n;

	if (!f || !buf) {
		if (f)
			fclose(f);
		free(buf);
		return strdup("");
	}
	/* Read to the end: /proc files say they are empty and are not. */
	while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len < cap)
			continue;
		more = realloc(buf, 2 * cap + 1);
		if (!more)
			break;
		buf = more;
		cap *= 2;
	}
	buf[len] = 0;
	fclose(f);
	return buf;
}
