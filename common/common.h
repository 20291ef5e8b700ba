/* common — small helpers shared by every module: logging, errors, time, sizes, I/O and
 * JSON lines, and the CPU feature table both planes share. No dependencies beyond libc and
 * jansson. */
#ifndef CME_COMMON_H
#define CME_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CME_WUR		 __attribute__((warn_unused_result))
#define CME_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define ARRAY_SIZE(a)	 (sizeof(a) / sizeof((a)[0]))

/* ---- logging ------------------------------------------------------------------------ */

enum log_level { LOG_ERR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Set the program name shown in every line and the most verbose level printed. */
void log_init(const char *prog, enum log_level max);
/* One line on stderr: "prog: [subsys] message". Thread-safe; never fails. */
void log_msg(enum log_level lvl, const char *subsys, const char *fmt, ...) CME_PRINTF(3, 4);
#define log_err(sub, ...)   log_msg(LOG_ERR, sub, __VA_ARGS__)
#define log_warn(sub, ...)  log_msg(LOG_WARN, sub, __VA_ARGS__)
#define log_info(sub, ...)  log_msg(LOG_INFO, sub, __VA_ARGS__)
#define log_debug(sub, ...) log_msg(LOG_DEBUG, sub, __VA_ARGS__)

/* ---- errors and arithmetic ---------------------------------------------------------- */

/* a + b into *out; returns false (and leaves *out alone) on overflow. */
static inline bool add_overflows_u64(uint64_t a, uint64_t b, uint64_t *out)
{
	return __builtin_add_overflow(a, b, out);
}

/* True when [addr, addr + len) lies inside [base, base + size), overflow-safe. */
bool range_within(uint64_t addr, uint64_t len, uint64_t base, uint64_t size);

/* The bits set in words[0..n) (a page bitmap's pages), counted word by word until the
 * count passes limit (UINT64_MAX: all of them); past it the count is only "more". */
uint64_t bits_count(const uint64_t *words, uint64_t n, uint64_t limit);

/* True when all len bytes at p are zero (len a multiple of 32; word-aligned p). */
bool mem_is_zero(const void *p, size_t len);

/* ---- time --------------------------------------------------------------------------- */

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t now_ns(void);
/* CLOCK_BOOTTIME in nanoseconds: like CLOCK_MONOTONIC, but it also counts while the host
 * is suspended. Fencing deadlines are on this clock. */
uint64_t boottime_ns(void);
/* CLOCK_REALTIME in milliseconds since the epoch. */
uint64_t wall_ms(void);
/* Sleep for ms milliseconds (ns nanoseconds), restarting after signals. */
void sleep_ms(unsigned ms);
void sleep_ns(uint64_t ns);

/* ---- sizes -------------------------------------------------------------------------- */

/* Parse "512M", "2G", "1048576", "64K", "1T" (binary units, optional trailing "iB"/"B")
 * into bytes. Returns 0, or -EINVAL for anything else (empty, junk, overflow, zero). */
int parse_size(const char *s, uint64_t *out) CME_WUR;
/* A user given as a name or "UID[:GID]" in numbers into *uid and *gid (GID: the user's,
 * or UID's own number). 0, or -EINVAL. */
int parse_user(const char *s, long *uid, long *gid) CME_WUR;
/* Parse "500ms", "90s", "15m", "2h", "7d" (a bare number: seconds) into milliseconds.
 * Returns 0, or -EINVAL for anything else (empty, junk, overflow). */
int parse_duration_ms(const char *s, uint64_t *out) CME_WUR;
/* Parse a whole decimal unsigned number in [min, max]. Returns 0 or -EINVAL/-ERANGE. */
int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out) CME_WUR;
/* Total RAM of this host in bytes (from sysinfo), 0 if unknown. */
uint64_t host_mem_bytes(void);

/* ---- I/O ---------------------------------------------------------------------------- */

/* write() all of buf, retrying on EINTR and short writes. Returns 0 or -errno. */
int write_all(int fd, const void *buf, size_t len) CME_WUR;
/* read() exactly len bytes. Returns 0, -EPIPE on early EOF, or -errno. */
int read_full(int fd, void *buf, size_t len) CME_WUR;
/* Replace the file at path with len bytes of data: written to path.tmp, flushed to disk,
 * then renamed over path, so a reader sees the old or the new content, never a part.
 * Returns 0 or -errno. */
int write_file_atomic(const char *path, const void *data, size_t len) CME_WUR;
/* Bind and listen on a Unix stream socket at path (an existing socket file is replaced,
 * any other existing file is refused with -EEXIST). Returns the fd (CLOEXEC) or -errno. */
int unix_listen(const char *path) CME_WUR;
/* Connect to a Unix stream socket. Returns the fd (CLOEXEC) or -errno. */
int unix_connect(const char *path) CME_WUR;
/* Set O_NONBLOCK on fd. Returns 0 or -errno. */
int fd_set_nonblock(int fd) CME_WUR;

/* ---- processes (proc.c) --------------------------------------------------------------- */

/* fork() into a PID namespace of its own: the child is its PID 1, and when it ends every
 * process it left in there ends too. As fork() returns; -1 with errno where no namespace
 * can be made here (EPERM without CAP_SYS_ADMIN, a limit): the caller decides. */
pid_t proc_clone_pidns(void);
/* This process's PID as the host's /proc names it (getpid() says 1 as a namespace's PID
 * 1). Async-signal-safe. */
pid_t proc_host_pid(void);
/* The file a VMM that is its namespace's PID 1 leaves instead of a helper: the control
 * group folders it made for --cgroup REL, one per line. Once it has ended its starter
 * calls this: the folders are removed (the deepest first) — only folders of a control
 * group file system named as REL or its leading parts — and the file with them. */
#define CG_MADE_FILE "cgroup.made"
void cg_remove_made(const char *made_file, const char *rel);

/* ---- JSON lines --------------------------------------------------------------------- */

/* A line buffer for reading newline-delimited messages from a stream socket. */
struct linebuf {
	char *buf;
	size_t len, cap, max;
};

/* Prepare an empty buffer that refuses lines longer than max bytes. */
void linebuf_init(struct linebuf *lb, size_t max);
void linebuf_free(struct linebuf *lb);
/* Read what is available from fd (once). Returns bytes read, 0 on EOF, -EAGAIN when
 * nothing is there, -EMSGSIZE when a line exceeds max, or -errno. */
ssize_t linebuf_fill(struct linebuf *lb, int fd) CME_WUR;
/* Take the next complete line (without '\n') into a malloc'd string the caller frees;
 * NULL when no complete line is buffered. */
char *linebuf_take(struct linebuf *lb);

struct json_t;
/* Serialize obj compactly plus '\n' and write it to fd. Returns 0 or -errno. */
int jsonl_send(int fd, const struct json_t *obj) CME_WUR;
/* Read one line from a blocking fd (up to max bytes) and parse it as a JSON object.
 * Returns 0 with *out set (caller decrefs), -EPROTO on bad JSON, -EPIPE on EOF, -errno. */
int jsonl_recv(int fd, size_t max, struct json_t **out) CME_WUR;
/* A comma-separated list of names ("fpu,sse,sse2"; NULL is empty) as a new JSON array of
 * strings; NULL when out of memory. */
struct json_t *jsonl_names(const char *list);

/* ---- CPU features and templates (cpufeat.c) --------------------------------------------- */

/* A CPUID register. */
enum cpu_reg { CPU_EAX, CPU_EBX, CPU_ECX, CPU_EDX };

/* One x86 CPU feature: a bit of one CPUID leaf's register, by the name operators know. */
struct cpu_feature {
	const char *name; /* as Linux's /proc/cpuinfo names it (sse3 for its "pni") */
	uint32_t leaf, subleaf;
	uint8_t reg;   /* enum cpu_reg */
	uint8_t bit;   /* 0..31 */
	uint8_t level; /* 1..4: the templates x86-64-v<level> and up need it; 0: none does */
};

/* Every feature CME names, in CPUID order; *n gets how many. Static, never freed. */
const struct cpu_feature *cpu_feature_table(size_t *n);
/* The feature called name, or NULL. */
const struct cpu_feature *cpu_feature_find(const char *name);

/* CPU templates: "host" (level 0: what KVM offers, as it is) and "x86-64-v1".."x86-64-v4"
 * (levels 1..4: masked down to the features of that level and below). */
#define CPU_TEMPLATE_MAX_LEVEL 4
#define CPU_TEMPLATE_NAMES     "host, x86-64-v1, x86-64-v2, x86-64-v3, x86-64-v4"
/* The level of the template called name (NULL and "" are "host"), or -EINVAL. */
int cpu_template_level(const char *name);
/* The name of template level (0..CPU_TEMPLATE_MAX_LEVEL), "unknown" otherwise. */
const char *cpu_template_name(int level);
/* The features template level needs, comma-separated ("" for host) into buf. Returns 0, or
 * -ENOSPC when they do not fit in len bytes. */
int cpu_template_features(int level, char *buf, size_t len) CME_WUR;
/* The names in need that have lacks (both comma-separated lists of feature names; NULL is
 * empty), ", "-separated into out (may be NULL; cut short when len is too small). Returns
 * how many. */
unsigned cpu_list_lacks(const char *have, const char *need, char *out, size_t len);
/* Whether the comma-separated list (NULL is empty) holds name as one of its entries. */
bool list_has(const char *list, const char *name);
/* The CPU templates a host offering features (comma-separated) can run, separated by sep,
 * into buf (cut short at len): "host" and each level whose features it all has; "" for no
 * features (unknown). Returns buf. */
const char *cpu_templates_offered(const char *features, const char *sep, char *buf, size_t len);

/* measure.c: a boot measurement, like a TPM PCR — a hash chain of what was loaded:
 * m = 32 zero bytes, then for each item m = BLAKE2b-256(m || what || NUL || BLAKE2b-256(data)).
 * The VMM extends it with the image (or kernel, then initrd), then the command line. */
#define MEASURE_BYTES 32
void measure_init(uint8_t m[MEASURE_BYTES]);
void measure_extend(uint8_t m[MEASURE_BYTES], const char *what, const void *data, size_t len);
void measure_hex(const uint8_t m[MEASURE_BYTES], char out[2 * MEASURE_BYTES + 1]);
/* 64 hex digits into m: 0 or -EINVAL. */
int measure_parse(const char *hex, uint8_t m[MEASURE_BYTES]) CME_WUR;
/* Exactly 2 * n hex digits into n bytes of out: 0 or -EINVAL. */
int hex_parse(const char *hex, uint8_t *out, size_t n) CME_WUR;

/* bootsig.c: m signed (Ed25519, by the key the signature file names) with a key of the
 * trust file (a public key per line): 0, or -errno with the reason in err. The commands
 * that measure, make keys, sign and verify, shared by cme-vmm and cmectl: argv[0] names the
 * command for messages; they return an exit status (0, 1 failed, 2 usage). */
int boot_verify(const uint8_t m[MEASURE_BYTES], const char *trust, const char *sigfile, char *err,
		size_t len) CME_WUR;
/* The cluster's trust record (cmectl trust set): keys ("HEX,HEX,...", 1 to 16 public keys),
 * seq and the cluster's etcd prefix signed with the operator's secret key file; signer and
 * sig get hex. Checked against a file of operator public keys (one a line, as --trust
 * takes them). 0, or -errno with the reason in err. */
int trust_sign(const char *sk_file, const char *prefix, uint64_t seq, const char *keys,
	       char signer[65], char sig[129], char *err, size_t len) CME_WUR;
int trust_verify(const char *operator_keys, const char *prefix, uint64_t seq, const char *keys,
		 const char *signer, const char *sig, char *err, size_t len) CME_WUR;
int boot_cmd_measure(int argc, char **argv);
int boot_cmd_keygen(int argc, char **argv);
int boot_cmd_sign(int argc, char **argv);
int boot_cmd_verify(int argc, char **argv);

/* keyfile.c: a secret key from path (64 hex digits on one line, a regular file of mode
 * 0600 or stricter, not a link): 0, or -errno with the reason in err. key_file_create
 * writes a new random one (never over an existing file). */
#define KEY_FILE_BYTES 32
int key_file_load(const char *path, uint8_t key[KEY_FILE_BYTES], char *err, size_t len) CME_WUR;
int key_file_create(const char *path, char *err, size_t len) CME_WUR;

/* A userfaultfd (flags: O_CLOEXEC, O_NONBLOCK), -1 with errno. A process without the
 * privilege (vm.unprivileged_userfaultfd 0) makes it through /dev/userfaultfd, when one
 * was opened for it earlier (uffd_use_device: a jailed VMM, before it drops to its user). */
int uffd_create(int flags);
void uffd_use_device(int fd);
/* This process's /proc/self/pagemap, opened once for its lifetime and shared (never close
 * it; -1 where it cannot be opened). A jailed VMM opens it before it gives up root: its
 * /proc entry is root's from then on. */
int proc_pagemap_fd(void);

#endif
