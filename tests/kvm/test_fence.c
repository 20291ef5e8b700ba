/* Fencing in the VMM (lease-bound execution): at its deadline (CLOCK_BOOTTIME) the guest
 * stops by the VMM's own timer, resume is refused until a later deadline is given, a
 * deadline kept ahead never fences, and a VMM frozen past its deadline and thawed does not
 * let the guest print one more heartbeat. */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "guestrun.h"
#include "kvmtests.h"

#define MS 1000000ull

static const char *state_of(json_t *r)
{
	const char *s = json_string_value(json_object_get(r, "state"));

	return s ? s : "";
}

/* Set the deadline; returns the reply (caller decrefs). */
static json_t *set_deadline(struct vmm_proc *p, uint64_t deadline_ns)
{
	char args[64];

	snprintf(args, sizeof(args), "{\"deadline_ns\":%llu}", (unsigned long long)deadline_ns);
	return vmm_request(p, "fence-deadline", args);
}

static void test_deadline_fences(void)
{
	uint64_t deadline;
	struct vmm_proc p;
	json_t *r, *f;
	int n;

	if (!guest_available())
		return;
	guest_boot(&p, "256M", "2", "wss_mb=32");
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&p, 3, 30000));
	deadline = boottime_ns() + 1500 * MS;
	r = set_deadline(&p, deadline);
	CU_ASSERT_TRUE(json_is_true(json_object_get(r, "ok")));
	f = json_object_get(r, "fence");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(f, "deadline_ns")),
			(json_int_t)deadline);
	CU_ASSERT_TRUE(json_is_false(json_object_get(f, "fenced")));
	json_decref(r);
	CU_ASSERT_FATAL(vmm_wait_status(&p, "state", "\"fenced\"", 30000));
	r = vmm_request(&p, "status", NULL);
	f = json_object_get(r, "fence");
	CU_ASSERT_TRUE(json_is_true(json_object_get(f, "fenced")));
	CU_ASSERT(json_integer_value(json_object_get(f, "fenced_at_ns")) >= (json_int_t)deadline);
	json_decref(r);
	/* Not one more heartbeat while fenced (watching for what must not happen). */
	n = vmm_heartbeats(&p, NULL, 0);
	sleep_ms(1000);
	CU_ASSERT_EQUAL(vmm_heartbeats(&p, NULL, 0), n);
	r = vmm_request(&p, "resume", NULL);
	CU_ASSERT_TRUE(json_is_false(json_object_get(r, "ok")));
	CU_ASSERT_PTR_NOT_NULL(strstr(json_string_value(json_object_get(r, "error")), "fenced"));
	json_decref(r);
	/* A later deadline alone does not let the guest go; resume after it does. */
	json_decref(set_deadline(&p, boottime_ns() + 600000 * MS));
	r = vmm_request(&p, "status", NULL);
	CU_ASSERT_STRING_EQUAL(state_of(r), "fenced");
	json_decref(r);
	r = vmm_request(&p, "resume", NULL);
	CU_ASSERT_STRING_EQUAL(state_of(r), "running");
	json_decref(r);
	CU_ASSERT(vmm_wait_heartbeats(&p, n + 3, 30000));
	guest_check_console(&p); /* one unbroken, uncorrupted heartbeat sequence */
	vmm_kill(&p);
}

static void test_deadline_kept_ahead(void)
{
	struct vmm_proc p;
	json_t *r;
	int n;

	if (!guest_available())
		return;
	guest_boot(&p, "256M", "1", "wss_mb=32");
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&p, 2, 30000));
	n = vmm_heartbeats(&p, NULL, 0);
	/* Extended well before it passes, as cme-clusterd does after each keepalive; over
	 * twice the first deadline in all, so a VMM that ignored an extension would fence. */
	for (int i = 0; i < 24; i++) {
		json_decref(set_deadline(&p, boottime_ns() + 2500 * MS));
		sleep_ms(250);
		r = vmm_request(&p, "status", NULL);
		CU_ASSERT_STRING_EQUAL(state_of(r), "running");
		json_decref(r);
	}
	CU_ASSERT(vmm_wait_heartbeats(&p, n + 3, 30000));
	r = set_deadline(&p, 0); /* cleared */
	CU_ASSERT_TRUE(json_is_null(json_object_get(r, "fence")));
	json_decref(r);
	guest_check_console(&p);
	vmm_kill(&p);
}

/* True when every thread of pid is stopped ('T' in /proc/PID/task/TID/stat); with say,
 * prints the threads that are not. */
static bool all_stopped_say(pid_t pid, bool say)
{
	char path[300], *s, *rp;
	struct dirent *e;
	bool all = true;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return false;
	while (all && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/stat", (int)pid, e->d_name);
		s = test_read_file(path);
		rp = strrchr(s, ')');
		all = rp && rp[1] == ' ' && rp[2] == 'T';
		if (!all && say)
			printf("\n    not stopped: %.120s\n", s);
		free(s);
	}
	closedir(d);
	return all;
}

static bool all_stopped(pid_t pid)
{
	return all_stopped_say(pid, false);
}

static void test_frozen_past_deadline(void)
{
	uint64_t deadline, end;
	struct vmm_proc p;
	char *c;
	int n, partial;

	if (!guest_available())
		return;
	guest_boot(&p, "256M", "2", "wss_mb=32");
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&p, 3, 30000));
	deadline = boottime_ns() + 2000 * MS;
	json_decref(set_deadline(&p, deadline));
	CU_ASSERT_EQUAL_FATAL(kill(p.pid, SIGSTOP), 0);
	for (end = now_ns() + 10000 * MS; !all_stopped(p.pid) && now_ns() < end;)
		sleep_ms(10);
	CU_ASSERT_FATAL(all_stopped_say(p.pid, true));
	/* What the guest had printed when the whole VMM froze; a line cut short may still
	 * get the rest of the character being written, never another. */
	n = vmm_heartbeats(&p, NULL, 0);
	c = test_read_file(p.console);
	partial = *c && c[strlen(c) - 1] != '\n';
	free(c);
	while (boottime_ns() < deadline + 500 * MS)
		sleep_ms(50);
	CU_ASSERT_EQUAL(kill(p.pid, SIGCONT), 0);
	CU_ASSERT(vmm_wait_status(&p, "state", "\"fenced\"", 30000));
	sleep_ms(500); /* watching for a heartbeat that must not come */
	CU_ASSERT(vmm_heartbeats(&p, NULL, 0) <= n + partial);
	vmm_kill(&p);
}

static void test_bad_requests(void)
{
	static const char *const bad[] = { NULL, "{\"deadline_ns\":-5}",
					   "{\"deadline_ns\":\"soon\"}", "{\"deadline\":1}" };
	struct vmm_proc p;
	json_t *r;
	int n;

	if (!guest_available())
		return;
	guest_boot(&p, "256M", "1", "wss_mb=32");
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&p, 2, 30000));
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		r = vmm_request(&p, "fence-deadline", bad[i]);
		CU_ASSERT_TRUE(json_is_false(json_object_get(r, "ok")));
		CU_ASSERT_PTR_NOT_NULL(
			strstr(json_string_value(json_object_get(r, "error")), "deadline_ns"));
		json_decref(r);
	}
	n = vmm_heartbeats(&p, NULL, 0);
	CU_ASSERT(vmm_wait_heartbeats(&p, n + 2, 30000)); /* the guest runs on */
	r = vmm_request(&p, "status", NULL);
	CU_ASSERT_TRUE(json_is_null(json_object_get(r, "fence")));
	json_decref(r);
	vmm_kill(&p);
}

void suite_vmm_fence(void)
{
	static const struct test_case cases[] = {
		{ "at its deadline the guest stops; resume refused until a later one",
		  test_deadline_fences },
		{ "a deadline kept ahead never fences", test_deadline_kept_ahead },
		{ "frozen past the deadline, thawed: not one more heartbeat",
		  test_frozen_past_deadline },
		{ "bad fence-deadline requests change nothing", test_bad_requests },
		{ NULL, NULL },
	};
	test_add_suite("vmm-fence", cases);
}
