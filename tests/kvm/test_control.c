/* The control socket: status, pause/resume, stop, signals, bad requests, the ctl client. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "guestrun.h"
#include "kvmtests.h"

static const char *reply_state(json_t *r)
{
	return json_string_value(json_object_get(r, "state"));
}

static void test_pause_resume(void)
{
	struct heartbeat hb[256];
	struct vmm_proc p;
	json_t *r;
	int before, during, after;

	if (!guest_available())
		return;
	guest_boot(&p, "256M", "2", "wss_mb=32");
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&p, 3, 20000));
	r = vmm_request(&p, "pause", NULL);
	CU_ASSERT_STRING_EQUAL(reply_state(r), "paused");
	json_decref(r);
	before = vmm_heartbeats(&p, hb, 256);
	sleep_ms(1000);
	during = vmm_heartbeats(&p, hb, 256);
	CU_ASSERT_EQUAL(during, before); /* not one heartbeat while paused */
	r = vmm_request(&p, "status", NULL);
	CU_ASSERT_STRING_EQUAL(reply_state(r), "paused");
	CU_ASSERT(json_integer_value(json_object_get(r, "paused_ms")) >= 900);
	json_decref(r);
	r = vmm_request(&p, "resume", NULL);
	CU_ASSERT_STRING_EQUAL(reply_state(r), "running");
	json_decref(r);
	CU_ASSERT(vmm_wait_heartbeats(&p, before + 3, 20000));
	after = guest_check_console(&p); /* sequence continues: 1..n without a gap */
	CU_ASSERT(after >= before + 3);
	vmm_kill(&p);
}

/* Every kind of bad request gets an error reply; the guest never notices. */
static void test_bad_requests(void)
{
	static const char *const bad[] = {
		"this is not json",
		"{\"cmd\":42}",
		"{\"nocmd\":true}",
		"{\"cmd\":\"reboot-host\"}",
		"{\"cmd\":\"dirty-log\"}",
		"{\"cmd\":\"dirty-log\",\"op\":\"fetch\"}",
		"{\"cmd\":\"dirty-log\",\"op\":\"explode\"}",
		"[]",
		"{\"cmd\":\"pause\"",
		"",
	};
	struct vmm_proc p;
	char *big;
	json_t *r;
	int n;

	if (!guest_available())
		return;
	guest_boot(&p, "256M", "1", "wss_mb=32");
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&p, 2, 20000));
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char *reply = vmm_request_raw(&p, bad[i]);

		CU_ASSERT_PTR_NOT_NULL(reply);
		CU_ASSERT_PTR_NOT_NULL(reply ? strstr(reply, "\"ok\":false") : NULL);
		CU_ASSERT_PTR_NOT_NULL(reply ? strstr(reply, "\"error\":") : NULL);
		free(reply);
	}
	big = malloc(200000);
	memset(big, 'x', 199999);
	big[199999] = 0;
	free(vmm_request_raw(&p, big)); /* oversized: refused, connection dropped */
	free(big);
	n = vmm_heartbeats(&p, NULL, 0);
	CU_ASSERT(vmm_wait_heartbeats(&p, n + 3, 20000)); /* still running */
	r = vmm_request(&p, "status", NULL);
	CU_ASSERT_STRING_EQUAL(reply_state(r), "running");
	json_decref(r);
	guest_check_console(&p);
	vmm_kill(&p);
}

static void test_status_and_stop(void)
{
	struct vmm_proc p;
	json_t *r, *v;

	if (!guest_available())
		return;
	guest_boot(&p, "256M", "2", "wss_mb=16");
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&p, 2, 20000));
	r = vmm_request(&p, "status", NULL);
	CU_ASSERT_TRUE(json_is_true(json_object_get(r, "ok")));
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(r, "mem_bytes")), 256 << 20);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(r, "vcpus")), 2);
	v = json_object_get(r, "vcpu");
	CU_ASSERT_EQUAL(json_array_size(v), 2);
	/* vCPU 0 prints the heartbeats: its UART writes are port I/O exits. */
	CU_ASSERT(json_integer_value(json_object_get(json_array_get(v, 0), "io_exits")) > 10);
	CU_ASSERT(json_integer_value(json_object_get(json_array_get(v, 1), "cpu_ms")) > 0);
	json_decref(r);
	r = vmm_request(&p, "stop", NULL);
	CU_ASSERT_TRUE(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	CU_ASSERT_EQUAL(vmm_wait(&p, 10000), 0);
	CU_ASSERT_EQUAL(p.status, 0);
	CU_ASSERT_EQUAL(access(p.api, F_OK), -1); /* socket removed */
}

static void test_sigterm_stops_cleanly(void)
{
	struct vmm_proc p;
	char *err;

	if (!guest_available())
		return;
	guest_boot(&p, "128M", "1", "wss_mb=16");
	kill(p.pid, SIGTERM);
	CU_ASSERT_EQUAL(vmm_wait(&p, 10000), 0);
	CU_ASSERT_EQUAL(p.status, 0);
	err = test_read_file(p.errlog);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "stopped on request"));
	free(err);
}

static void test_ctl_client(void)
{
	struct vmm_proc p;
	char *out;

	if (!guest_available())
		return;
	guest_boot(&p, "128M", "1", "wss_mb=16");
	const char *ok[] = { test_bin("cme-vmm"), "ctl", "--api", p.api, "status", NULL };
	const char *unknown[] = { test_bin("cme-vmm"), "ctl", "--api", p.api, "frob", NULL };
	const char *badjson[] = { test_bin("cme-vmm"), "ctl",  "--api", p.api,
				  "dirty-log",	       "{op:", NULL };
	const char *noserver[] = { test_bin("cme-vmm"), "ctl",	  "--api",
				   "/nonexistent/s",	"status", NULL };

	CU_ASSERT_EQUAL(test_run(ok, &out, 10000), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"state\":\"running\""));
	free(out);
	CU_ASSERT_EQUAL(test_run(unknown, &out, 10000), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "unknown command \\\"frob\\\""));
	free(out);
	CU_ASSERT_EQUAL(test_run(badjson, &out, 10000), 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "arguments must be a JSON object"));
	free(out);
	CU_ASSERT_EQUAL(test_run(noserver, &out, 10000), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "cannot connect to /nonexistent/s"));
	free(out);
	vmm_kill(&p);
}

static json_int_t io_exits(struct vmm_proc *p)
{
	json_t *r = vmm_request(p, "status", NULL);
	json_int_t n = -1;

	if (r)
		n = json_integer_value(
			json_object_get(json_array_get(json_object_get(r, "vcpu"), 0), "io_exits"));
	json_decref(r);
	return n;
}

/* Wait until the guest has made its vCPU exit for I/O `more` times (its console bytes)
 * beyond `from`; true when it did. */
static bool wait_io_exits(struct vmm_proc *p, json_int_t from, json_int_t more)
{
	for (int i = 0; i < 3000; i++) {
		if (io_exits(p) >= from + more)
			return true;
		sleep_ms(10);
	}
	return false;
}

/* Clients that send a request and close before the reply: the reply's write fails with
 * EPIPE, and the VMM (started with SIGPIPE's default action, as from a shell) goes on. */
static void test_client_gone_before_reply(void)
{
	struct vmm_proc p;

	if (!guest_available())
		return;
	guest_boot(&p, "64M", "1", "wss_mb=8");
	for (int i = 0; i < 50; i++) {
		int fd = unix_connect(p.api);

		CU_ASSERT_FATAL(fd >= 0);
		CU_ASSERT(write(fd, "{\"cmd\":\"status\"}\n", 17) == 17);
		close(fd);
	}
	json_t *r = vmm_request(&p, "status", NULL);

	CU_ASSERT_TRUE(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	CU_ASSERT_EQUAL(vmm_wait(&p, 0), -ETIMEDOUT); /* still running */
	vmm_kill(&p);
}

/* `cme-vmm run --console stdout | head -c80`: the reader goes after 80 bytes; the guest
 * keeps running and printing (into nothing) and the VMM answers. */
static void test_stdout_reader_gone(void)
{
	const char *args[] = { "--mem",	   "64M",	"--image", test_guest(), "--cmdline",
			       "wss_mb=8", "--console", "stdout",  NULL };
	struct vmm_proc p;
	char buf[80];
	size_t got = 0;
	int fds[2];

	if (!guest_available())
		return;
	CU_ASSERT_FATAL(pipe2(fds, O_CLOEXEC) == 0); /* the VMM must not hold the read end */
	CU_ASSERT_FATAL(vmm_start_out(&p, args, fds[1]) == 0);
	close(fds[1]);
	while (got < sizeof(buf)) {
		struct pollfd pf = { fds[0], POLLIN, 0 };
		ssize_t n =
			poll(&pf, 1, 30000) == 1 ? read(fds[0], buf + got, sizeof(buf) - got) : -1;

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fds[0]);
	CU_ASSERT_EQUAL_FATAL(got, sizeof(buf));
	/* A heartbeat line is ~50 bytes, one I/O exit each: 500 are many lines after. */
	json_int_t at = io_exits(&p);

	CU_ASSERT(at >= 0);
	CU_ASSERT_TRUE(wait_io_exits(&p, at, 500));
	CU_ASSERT_EQUAL(vmm_wait(&p, 0), -ETIMEDOUT);
	if (p.status >= 0)
		printf("\n    the VMM ended with status %d\n", p.status);
	vmm_kill(&p);
}

enum { AS_REFUSED_CONNECT = 10, AS_REFUSED_REPLY, AS_SERVED, AS_OTHER };

/* Connect to path as uid:gid (no supplementary groups) and ask for status. */
static int status_as(const char *path, uid_t uid, gid_t gid)
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		char buf[4096];
		ssize_t n = 0;
		int fd;

		if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
			_exit(AS_OTHER);
		fd = unix_connect(path);
		if (fd == -EACCES)
			_exit(AS_REFUSED_CONNECT);
		if (fd < 0)
			_exit(AS_OTHER);
		/* A refused client may find the socket closed already: its refusal waits to be
		 * read all the same. */
		if (write(fd, "{\"cmd\":\"status\"}\n", 17) != 17)
			n = 0;
		struct pollfd pf = { fd, POLLIN, 0 };

		if (poll(&pf, 1, 10000) == 1)
			n = read(fd, buf, sizeof(buf) - 1);
		buf[n > 0 ? n : 0] = 0;
		if (strstr(buf, "may not use this control socket"))
			_exit(AS_REFUSED_REPLY);
		_exit(strstr(buf, "\"ok\":true") ? AS_SERVED : AS_OTHER);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

/* Mode 0600; another uid cannot connect, and with the mode opened by hand is refused by
 * its credentials; 16 idle clients do not lock the socket; a flooding client is cut. */
static void test_socket_access(void)
{
	struct vmm_proc p;
	struct stat st;
	int idle[20];
	json_t *r;

	if (!guest_available())
		return;
	if (geteuid() != 0) {
		test_skip("needs root to connect as another uid");
		return;
	}
	guest_boot(&p, "64M", "1", "wss_mb=8");
	CU_ASSERT_FATAL(stat(p.api, &st) == 0);
	CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
	CU_ASSERT_EQUAL(status_as(p.api, 65534, 65534), AS_REFUSED_CONNECT);
	CU_ASSERT_FATAL(chmod(p.api, 0666) == 0);
	int as = status_as(p.api, 65534, 65534);
	CU_ASSERT_EQUAL(as, AS_REFUSED_REPLY);
	if (as != AS_REFUSED_REPLY)
		printf("\n    status_as: %d\n", as);
	CU_ASSERT_EQUAL(status_as(p.api, 0, 0), AS_SERVED);

	for (int i = 0; i < 20; i++)
		idle[i] = unix_connect(p.api);
	r = vmm_request(&p, "status", NULL);
	CU_ASSERT_TRUE(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	for (int i = 0; i < 20; i++)
		if (idle[i] >= 0)
			close(idle[i]);

	/* 300 requests at once: served up to the rate, then one error and the end. */
	int fd = unix_connect(p.api);
	char *lines = NULL, buf[65536];
	size_t len = 0;
	ssize_t n;

	CU_ASSERT_FATAL(fd >= 0);
	for (int i = 0; i < 300; i++)
		CU_ASSERT(write(fd, "{\"cmd\":\"status\"}\n", 17) == 17);
	for (;;) {
		struct pollfd pf = { fd, POLLIN, 0 };

		if (poll(&pf, 1, 20000) != 1 || (n = read(fd, buf, sizeof(buf))) <= 0)
			break;
		lines = realloc(lines, len + (size_t)n + 1);
		memcpy(lines + len, buf, (size_t)n);
		len += (size_t)n;
		lines[len] = 0;
	}
	close(fd);
	CU_ASSERT_PTR_NOT_NULL(lines ? strstr(lines, "too many requests: at most 200 a second")
				     : NULL);
	free(lines);
	r = vmm_request(&p, "status", NULL);
	CU_ASSERT_TRUE(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	vmm_kill(&p);
}

/* --api-group: mode 0660, the group's members are served. */
static void test_api_group(void)
{
	struct group *g = getgrnam("nogroup");
	const char *args[] = { "--mem",	   "64M",	  "--image", test_guest(), "--cmdline",
			       "wss_mb=8", "--api-group", "nogroup", NULL };
	struct vmm_proc p;
	struct stat st;

	if (!guest_available())
		return;
	if (geteuid() != 0 || !g) {
		test_skip("needs root and the group nogroup");
		return;
	}
	CU_ASSERT_FATAL(vmm_start(&p, args) == 0);
	CU_ASSERT_FATAL(vmm_console_wait(&p, "READY", 30000));
	CU_ASSERT_FATAL(stat(p.api, &st) == 0);
	CU_ASSERT_EQUAL(st.st_mode & 0777, 0660);
	CU_ASSERT_EQUAL(st.st_gid, g->gr_gid);
	CU_ASSERT_EQUAL(status_as(p.api, 65534, g->gr_gid), AS_SERVED);
	CU_ASSERT_EQUAL(status_as(p.api, 65533, 65533), AS_REFUSED_CONNECT);
	vmm_kill(&p);
}

void suite_control(void)
{
	static const struct test_case cases[] = {
		{ "pause 1 s: no heartbeats; resume: sequence continues", test_pause_resume },
		{ "bad requests get errors, the guest keeps running", test_bad_requests },
		{ "status reports vCPUs; stop ends the VMM cleanly", test_status_and_stop },
		{ "SIGTERM stops the VM cleanly", test_sigterm_stops_cleanly },
		{ "cme-vmm ctl prints replies and exit statuses", test_ctl_client },
		{ "a client gone before its reply costs nothing (no SIGPIPE)",
		  test_client_gone_before_reply },
		{ "a stdout console whose reader went away: the guest runs on",
		  test_stdout_reader_gone },
		{ "control socket: 0600, peer uid checked, idle clients, request rate",
		  test_socket_access },
		{ "control socket --api-group: 0660, the group served", test_api_group },
		{ NULL, NULL },
	};
	test_add_suite("control", cases);
}
