/* Booting and checking the self-checking test guest. */
#include "guestrun.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_HB 4096

bool guest_available(void)
{
	char why[256];

	if (!test_have_kvm(why, sizeof(why))) {
		test_skip("%s", why);
		return false;
	}
	/* `make test` builds the guest: its absence is a failure, never a skip. */
	if (access(test_guest(), R_OK) < 0) {
		CU_FAIL("test guest not built (make guests)");
		return false;
	}
	return true;
}

void guest_boot(struct vmm_proc *p, const char *mem, const char *vcpus, const char *cmdline)
{
	const char *args[] = { "--mem",	  mem,		"--vcpus",   vcpus,
			       "--image", test_guest(), "--cmdline", cmdline,
			       "--name",  "selfcheck",	NULL };

	CU_ASSERT_EQUAL_FATAL(vmm_start(p, args), 0);
	if (!vmm_console_wait(p, "READY", 30000)) {
		char *e = test_read_file(p->errlog), *c = test_read_file(p->console);

		printf("\n    no READY; console:\n%s\n    stderr:\n%s\n", c, e);
		free(e);
		free(c);
		vmm_kill(p);
		CU_FAIL_FATAL("guest did not print READY");
	}
}

int guest_check_console(struct vmm_proc *p)
{
	static struct heartbeat hb[MAX_HB];
	char *c = test_read_file(p->console);
	int n = vmm_heartbeats(p, hb, MAX_HB);

	CU_ASSERT_PTR_NULL(strstr(c, "CORRUPT"));
	CU_ASSERT_PTR_NULL(strstr(c, "FAULT"));
	CU_ASSERT_PTR_NULL(strstr(c, "ERROR"));
	if (strstr(c, "CORRUPT") || strstr(c, "FAULT") || strstr(c, "ERROR"))
		printf("\n    console:\n%s\n", c);
	free(c);
	n = n < MAX_HB ? n : MAX_HB;
	for (int i = 0; i < n; i++) {
		CU_ASSERT_EQUAL(hb[i].seq, hb[0].seq + (uint64_t)i);
		if (i > 0) {
			CU_ASSERT(hb[i].ticks >= hb[i - 1].ticks);
			CU_ASSERT(hb[i].ms > hb[i - 1].ms); /* guest time only moves forward */
			CU_ASSERT(hb[i].pages >= hb[i - 1].pages);
		}
	}
	if (n > 1)
		CU_ASSERT(hb[n - 1].ticks > hb[0].ticks);
	return n;
}
