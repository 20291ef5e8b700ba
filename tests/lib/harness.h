/* Test harness shared by every tier: CUnit runner with skips, and helpers that start a
 * real cme-vmm, read its console and talk to its control socket. Tests own every
 * process they start, by PID. */
#ifndef CME_TEST_HARNESS_H
#define CME_TEST_HARNESS_H

#include <CUnit/CUnit.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Mark the running test skipped with a reason (printed, counted apart from passes). The
 * test must return right after. */
void test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Run every registered suite with CUnit's basic interface; append "name run failed
 * skipped" to $CME_TEST_RESULTS. Returns the process exit status. */
int test_main(const char *runner);
/* Add a suite with its tests (NULL-terminated {name, fn} list). */
struct test_case {
	const char *name;
	void (*fn)(void);
};
void test_add_suite(const char *name, const struct test_case *cases);
/* Also run fn after every test (before the VMMs are killed): for processes a tier starts
 * by other means (cluster daemons and the VMMs they start). */
void test_on_teardown(void (*fn)(void));

/* True when /dev/kvm can be opened read-write; otherwise why in buf. */
bool test_have_kvm(char *why, size_t len);
/* Skip the current test (and return from it) when KVM is missing. */
#define REQUIRE_KVM()                                                                              \
	do {                                                                                       \
		char why_[256];                                                                    \
		if (!test_have_kvm(why_, sizeof(why_))) {                                          \
			test_skip("%s", why_);                                                     \
			return;                                                                    \
		}                                                                                  \
	} while (0)

/* The programs of a sanitizer build (make SAN=1) load no seccomp filters: the sanitizers'
 * runtime needs ptrace and processes. Tests of the filters skip themselves there. */
#ifdef __SANITIZE_ADDRESS__
#define TEST_SANITIZED 1
#else
#define TEST_SANITIZED 0
#endif
#define REQUIRE_SECCOMP()                                                                          \
	do {                                                                                       \
		if (TEST_SANITIZED) {                                                              \
			test_skip("a sanitizer build loads no seccomp filters");                   \
			return;                                                                    \
		}                                                                                  \
	} while (0)

/* Paths of built artifacts: $CME_BUILD (default "build") + "/bin/NAME", the test guest. */
const char *test_bin(const char *name);
const char *test_guest(void);
/* A fresh private directory for this test (removed at exit of the runner). */
const char *test_tmpdir(void);
/* Remove every test_tmpdir() (test_main() does it; other programs call it at the end). */
void test_remove_tmp(void);

/* ---- a cme-vmm process ------------------------------------------------------------- */

struct vmm_proc {
	pid_t pid;
	char console[512]; /* console file */
	char api[512];	   /* control socket */
	char errlog[512];  /* the VMM's stderr */
	int status;	   /* exit status once reaped, -1 before; 128+sig if killed */
};

/* An argument of vmm_start that stands for the VMM's own folder (its console's and
 * control socket's), e.g. after --jail-root. */
#define VMM_OWN_DIR "@vmdir"

/* Start `cme-vmm run` with the given extra arguments (NULL-terminated) plus --console
 * file:... (unless args choose a console), --api ... and stderr to a file in a fresh
 * directory. Returns 0 or -errno. */
int vmm_start(struct vmm_proc *p, const char *const *args);
/* The same with another verb than "run" (e.g. "restore"). */
int vmm_start_verb(struct vmm_proc *p, const char *verb, const char *const *args);
/* `run` with its stdout on out_fd (for --console stdout). */
int vmm_start_out(struct vmm_proc *p, const char *const *args, int out_fd);
/* Wait up to timeout_ms for the process to exit; returns 0 and sets p->status, or
 * -ETIMEDOUT. */
int vmm_wait(struct vmm_proc *p, int timeout_ms);
/* SIGKILL and reap (no-op if already reaped). */
void vmm_kill(struct vmm_proc *p);
/* SIGKILL and reap every process vmm_start() or test_run() started that still runs
 * (the harness calls it after each test). */
void vmm_kill_all(void);
/* Wait until the console contains needle; true if found within timeout_ms. */
bool vmm_console_wait(struct vmm_proc *p, const char *needle, int timeout_ms);
/* The whole console (or stderr) so far, malloc'd, NUL-terminated ("" if missing). */
char *test_read_file(const char *path);
/* Wait until the file at path contains needle; true if it did within timeout_ms. */
bool test_wait_file_has(const char *path, const char *needle, int timeout_ms);

struct heartbeat {
	uint64_t seq, pages, ticks, ms;
};
/* Parse every "HB seq=N pages=M ticks=T ms=G" line of the console; returns the count (at
 * most max stored). */
int vmm_heartbeats(struct vmm_proc *p, struct heartbeat *hb, int max);
/* Wait until at least n heartbeats are on the console. */
bool vmm_wait_heartbeats(struct vmm_proc *p, int n, int timeout_ms);
/* The last whole heartbeat on the console into *last; false when there is none yet. */
bool vmm_last_heartbeat(struct vmm_proc *p, struct heartbeat *last);
/* Wait until a heartbeat reports at least pages page writes (the guest's own count, so
 * the wait follows the guest's progress, however slow the machine); that heartbeat (the
 * last one then) into *at. */
bool vmm_wait_pages(struct vmm_proc *p, uint64_t pages, int timeout_ms, struct heartbeat *at);

/* How many threads of pid run under a seccomp filter with no_new_privs ("Seccomp: 2",
 * "NoNewPrivs: 1"), out of *total (KVM's kernel workers in the process not counted);
 * -1 when pid is gone. */
int test_filtered_threads(pid_t pid, int *total);

/* Send one control request ({"cmd":cmd} merged with args JSON, may be NULL); returns the
 * reply (caller decrefs) or NULL on a transport error. */
json_t *vmm_request(struct vmm_proc *p, const char *cmd, const char *args);
/* Poll status (every 20 ms, up to timeout_ms) until its field equals the JSON text want
 * (e.g. "\"fenced\"", "false"); true when it did. */
bool vmm_wait_status(struct vmm_proc *p, const char *field, const char *want, int timeout_ms);
/* Send a raw line and return the raw reply line (malloc'd) or NULL. */
char *vmm_request_raw(struct vmm_proc *p, const char *line);

/* True when the host has hardware virtualization (kvm_intel or kvm_amd), where stock
 * Linux kernels boot; otherwise why in buf (PVM hosts emulate guest ring 0). */
bool test_have_hw_virt(char *why, size_t len);

/* A client of a VMM's console socket that collects everything it receives. */
struct console_client {
	int fd;
	char *buf;
	size_t len, cap;
};
/* Connect (retrying up to timeout_ms while the socket appears). Returns 0 or -errno. */
int console_client_open(struct console_client *c, const char *path, int timeout_ms);
/* Read until needle has been received (anywhere in the output so far). */
bool console_client_wait(struct console_client *c, const char *needle, int timeout_ms);
/* Type bytes into the guest's console. Returns 0 or -errno. */
int console_client_send(struct console_client *c, const char *s);
void console_client_close(struct console_client *c);

/* Run a command to completion with stdout+stderr captured into *out (malloc'd).
 * Returns the exit status (128+sig if killed), or -errno. */
int test_run(const char *const *argv, char **out, int timeout_ms);

#endif
