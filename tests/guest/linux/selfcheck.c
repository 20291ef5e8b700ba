/* selfcheck.c — the self-checking workload of the Linux guest kit, a static Linux program
 * that prints the same console lines as the flat test guest (DESIGN.md "The test guest",
 * "Interfaces"): one writer thread per CPU stamps the pages of its share of the working set
 * generation after generation, checking each old stamp first, with a running checksum in
 * an SSE register that only survives if the kernel and the VMM keep FPU state; the main
 * thread prints READY and the heartbeats.
 *
 * Parameters are "key=value" arguments (wss_mb, dirty_rate, hb_ms, exit_after, vcpus), the
 * names of the kernel command line that /init passes on; unknown keys are ignored.
 * Exit status: 0 after exit_after heartbeats, 1 on a system error, 2 on a bad parameter,
 * 4 on corruption. */
#define _GNU_SOURCE
#include <emmintrin.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE_SIZE      4096UL
#define PAGE_WORDS     (PAGE_SIZE / sizeof(uint64_t))
#define PAGES_PER_MIB  256UL
#define STAMP_KEY      0x5ca1ab1e5ca1ab1eUL
#define NSEC	       1000000000UL
#define UNSET	       UINT64_MAX
#define MAX_WSS_MB     (1UL << 20) /* 1 TiB: keeps page arithmetic far from overflow */
#define MAX_DIRTY_RATE 1000000UL   /* MiB/s, keeps the pacing arithmetic in 64 bits */
#define MAX_HB_MS      3600000UL
#define PACE_POLL_NS   1000000UL  /* a paced writer reads the clock about once per ms of work */
#define BURST_NS       10000000UL /* the most idle time a paced writer may make up for */

enum { EXIT_OK = 0, EXIT_SYS = 1, EXIT_BADARG = 2, EXIT_CORRUPT = 4 };

/* The parameters as given; vcpus is UNSET unless the caller limits the writers. */
static struct {
	uint64_t wss_mb, dirty_rate, hb_ms, exit_after, vcpus;
} arg = { 64, 0, 100, 0, UNSET };

static const struct {
	const char *key;
	uint64_t *val;
} keys[] = {
	{ "wss_mb", &arg.wss_mb }, { "dirty_rate", &arg.dirty_rate },
	{ "hb_ms", &arg.hb_ms },   { "exit_after", &arg.exit_after },
	{ "vcpus", &arg.vcpus },
};

/* One per thread, on cache lines of its own so the heartbeat's reads of `written` do not
 * slow the writers. */
struct writer {
	pthread_t thread;
	uint32_t id;
	uint64_t first, end;	  /* pages [first, end) of the working set */
	uint64_t rate;		  /* pages/s, 0 = as fast as it can */
	uint64_t chunk;		  /* paced: pages written between clock reads */
	uint64_t due;		  /* paced: CLOCK_MONOTONIC ns by which the writes so far are due */
	_Atomic uint64_t written; /* page writes so far, read by the heartbeat */
} __attribute__((aligned(64)));

static volatile uint64_t *wss;
static uint64_t wss_pages;

/* Prints one whole line with one write(2), so lines of different threads never mix. */
__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
	char buf[256];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	size_t len = (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
	for (size_t off = 0; off < len;) {
		ssize_t w = write(STDOUT_FILENO, buf + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		off += (size_t)w;
	}
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / NSEC), .tv_nsec = (long)(ns % NSEC) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* ---- timer interrupts ---------------------------------------------------------------- */

/* Sums the decimal columns after "label:" (one per CPU), stopping at the first word that
 * is not a number (the interrupt's description). */
static uint64_t sum_columns(const char *s)
{
	uint64_t sum = 0;

	for (;;) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s < '0' || *s > '9')
			return sum;
		char *end;
		sum += strtoull(s, &end, 10);
		s = end;
	}
}

/* The line's label ("LOC", "0", "cpu") if it has one: leading blanks skipped, `sep` ends it. */
static bool line_label(const char *line, char sep, const char *label, const char **rest)
{
	size_t n = strlen(label);

	while (*line == ' ')
		line++;
	if (strncmp(line, label, n) != 0 || line[n] != sep)
		return false;
	*rest = line + n + 1;
	return true;
}

/* Timer interrupts so far on all CPUs: the local APIC timer line, else IRQ 0 (the PIT).
 * Returns false if /proc/interrupts has neither. */
static bool ticks_from_interrupts(uint64_t *ticks)
{
	FILE *f = fopen("/proc/interrupts", "r");
	char *line = NULL;
	size_t cap = 0;
	const char *rest;
	bool loc = false, irq0 = false;
	uint64_t irq0_sum = 0;

	if (!f)
		return false;
	while (!loc && getline(&line, &cap, f) > 0) {
		if (line_label(line, ':', "LOC", &rest)) {
			*ticks = sum_columns(rest);
			loc = true;
		} else if (!irq0 && line_label(line, ':', "0", &rest)) {
			irq0_sum = sum_columns(rest);
			irq0 = true;
		}
	}
	free(line);
	fclose(f);
	if (!loc && irq0)
		*ticks = irq0_sum;
	return loc || irq0;
}

/* The last resort: CPU time in USER_HZ ticks from /proc/stat's "cpu" line, which at least
 * rises while the timer keeps running. */
static uint64_t ticks_from_stat(void)
{
	FILE *f = fopen("/proc/stat", "r");
	char *line = NULL;
	size_t cap = 0;
	const char *rest;
	uint64_t ticks = 0;

	if (!f)
		return 0;
	if (getline(&line, &cap, f) > 0 && line_label(line, ' ', "cpu", &rest))
		ticks = sum_columns(rest);
	free(line);
	fclose(f);
	return ticks;
}

static uint64_t timer_ticks(void)
{
	uint64_t ticks;

	return ticks_from_interrupts(&ticks) ? ticks : ticks_from_stat();
}

/* ---- the writers ------------------------------------------------------------------------ */

static inline volatile uint64_t *page_at(uint64_t idx)
{
	return wss + idx * PAGE_WORDS;
}

/* Generation 0 is a page never written: still all zero. */
static inline bool stamp_ok(uint64_t idx, uint64_t gen, uint64_t w0, uint64_t w1, uint64_t w511)
{
	if (gen == 0)
		return (w0 | w1 | w511) == 0;
	return w0 == idx && w1 == gen && w511 == (idx ^ gen ^ STAMP_KEY);
}

/* A cheap mix of a stamp's first two words; 0 for a zero page, so the sum starts at 0. */
static inline uint64_t stamp_hash(uint64_t w0, uint64_t w1)
{
	return (w0 * 0x9e3779b97f4a7c15UL + w1) * 0xff51afd7ed558ccdUL;
}

static __attribute__((noreturn)) void corrupt_page(uint64_t idx, uint64_t expected, uint64_t found)
{
	say("CORRUPT page=%" PRIu64 " expected=%" PRIu64 " found=%" PRIu64 "\n", idx, expected,
	    found);
	_exit(EXIT_CORRUPT);
}

/* The accumulator: lane 0 the checksum, lane 1 the generation. It is a local the compiler
 * keeps in an xmm register through the pass, so a VMM or kernel that loses the vector
 * state of a running thread shows up as a mismatch. */
static inline __m128i acc_set_gen(__m128i acc, uint64_t gen)
{
	return _mm_unpacklo_epi64(acc, _mm_cvtsi64_si128((long long)gen));
}

static inline uint64_t acc_sum(__m128i acc)
{
	return (uint64_t)_mm_cvtsi128_si64(acc);
}

static inline uint64_t acc_gen(__m128i acc)
{
	return (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(acc, acc));
}

static inline __m128i page_write(uint64_t idx, uint64_t gen, __m128i acc)
{
	volatile uint64_t *p = page_at(idx);
	uint64_t w0 = p[0], w1 = p[1], w511 = p[511];

	if (!stamp_ok(idx, gen - 1, w0, w1, w511))
		corrupt_page(idx, gen - 1, w1);
	p[0] = idx;
	p[1] = gen;
	p[511] = idx ^ gen ^ STAMP_KEY;
	acc = _mm_add_epi64(acc, _mm_cvtsi64_si128((long long)stamp_hash(idx, gen)));
	return _mm_sub_epi64(acc, _mm_cvtsi64_si128((long long)stamp_hash(w0, w1)));
}

/* Called every w->chunk writes: sleeps while the writer is ahead of its rate. After a
 * stall (a paused VM) it keeps at most BURST_NS of backlog rather than racing to catch up. */
static void pace(struct writer *w)
{
	uint64_t now;

	w->due += w->chunk * NSEC / w->rate;
	now = now_ns();
	if (w->due > now)
		sleep_until(w->due);
	else if (now - w->due > BURST_NS)
		w->due = now - BURST_NS;
}

/* After a pass: every stamp must be at gen, and the register must agree with memory. */
static void verify_pass(const struct writer *w, uint64_t gen, __m128i acc)
{
	uint64_t sum = 0;

	for (uint64_t idx = w->first; idx < w->end; idx++) {
		volatile uint64_t *p = page_at(idx);
		uint64_t w0 = p[0], w1 = p[1], w511 = p[511];

		if (!stamp_ok(idx, gen, w0, w1, w511))
			corrupt_page(idx, gen, w1);
		sum += stamp_hash(w0, w1);
	}
	if (acc_sum(acc) != sum || acc_gen(acc) != gen) {
		say("CORRUPT fpu acc=0x%" PRIx64 " mem=0x%" PRIx64 " gen=%" PRIu64
		    " expected=%" PRIu64 " cpu=%" PRIu32 "\n",
		    acc_sum(acc), sum, acc_gen(acc), gen, w->id);
		_exit(EXIT_CORRUPT);
	}
}

static void *writer_main(void *p)
{
	struct writer *w = p;
	__m128i acc = _mm_setzero_si128();
	uint64_t written = 0, left = w->chunk;

	if (w->first >= w->end)
		return NULL;
	w->due = now_ns();
	for (uint64_t gen = 1;; gen++) {
		acc = acc_set_gen(acc, gen);
		for (uint64_t idx = w->first; idx < w->end; idx++) {
			acc = page_write(idx, gen, acc);
			atomic_store_explicit(&w->written, ++written, memory_order_relaxed);
			if (w->rate && --left == 0) {
				pace(w);
				left = w->chunk;
			}
		}
		verify_pass(w, gen, acc);
	}
}

/* ---- setup and heartbeats ------------------------------------------------------------- */

static __attribute__((noreturn)) void bad_arg(const char *what, uint64_t v)
{
	say("ERROR %s (%" PRIu64 ")\n", what, v);
	exit(EXIT_BADARG);
}

/* Decimal only: strtoull alone would take signs, blanks and hex. */
static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno == 0 && *end == '\0';
}

static void parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *eq = strchr(argv[i], '=');

		for (size_t k = 0; eq && k < sizeof(keys) / sizeof(keys[0]); k++) {
			size_t n = strlen(keys[k].key);

			if ((size_t)(eq - argv[i]) != n || strncmp(argv[i], keys[k].key, n) != 0)
				continue;
			if (!parse_u64(eq + 1, keys[k].val)) {
				say("ERROR %s: not a decimal number\n", keys[k].key);
				exit(EXIT_BADARG);
			}
		}
	}
}

static void check_args(uint32_t cpus)
{
	if (arg.wss_mb == 0 || arg.wss_mb > MAX_WSS_MB)
		bad_arg("wss_mb must be 1..1048576", arg.wss_mb);
	if (arg.dirty_rate > MAX_DIRTY_RATE)
		bad_arg("dirty_rate is above 1000000 MiB/s", arg.dirty_rate);
	if (arg.hb_ms == 0 || arg.hb_ms > MAX_HB_MS)
		bad_arg("hb_ms must be 1..3600000", arg.hb_ms);
	if (arg.vcpus != UNSET && arg.vcpus > cpus)
		bad_arg("vcpus is more than the online CPUs", arg.vcpus);
}

/* Populated up front, by one thread: READY then means the whole working set is resident,
 * and the writers do not start with a storm of concurrent first-touch faults (which a
 * 2-vCPU QEMU TCG guest takes seconds to get through). */
static void map_wss(void)
{
	wss_pages = arg.wss_mb * PAGES_PER_MIB;
	void *p = mmap(NULL, wss_pages * PAGE_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (p == MAP_FAILED) {
		say("ERROR mmap of wss_mb=%" PRIu64 ": %s\n", arg.wss_mb, strerror(errno));
		exit(EXIT_SYS);
	}
	wss = p;
}

/* Writer i gets pages [i * P / W, (i + 1) * P / W) and an equal share of dirty_rate. */
static void writer_init(struct writer *w, uint32_t id, uint32_t n)
{
	w->id = id;
	w->first = id * wss_pages / n;
	w->end = (id + 1) * wss_pages / n;
	w->rate = arg.dirty_rate * PAGES_PER_MIB / n;
	if (arg.dirty_rate && w->rate == 0)
		w->rate = 1;
	w->chunk = w->rate ? w->rate * PACE_POLL_NS / NSEC + 1 : 0;
	atomic_init(&w->written, 0);
}

static struct writer *start_writers(uint32_t n)
{
	struct writer *ws = aligned_alloc(64, (n ? n : 1) * sizeof(*ws));

	if (!ws) {
		say("ERROR out of memory for %" PRIu32 " writers\n", n);
		exit(EXIT_SYS);
	}
	for (uint32_t i = 0; i < n; i++) {
		writer_init(&ws[i], i, n);
		int err = pthread_create(&ws[i].thread, NULL, writer_main, &ws[i]);
		if (err) {
			say("ERROR pthread_create of writer %" PRIu32 ": %s\n", i, strerror(err));
			exit(EXIT_SYS);
		}
	}
	return ws;
}

static uint64_t pages_written(struct writer *ws, uint32_t n)
{
	uint64_t sum = 0;

	for (uint32_t i = 0; i < n; i++)
		sum += atomic_load_explicit(&ws[i].written, memory_order_relaxed);
	return sum;
}

/* After a long stall (a paused or migrating VM) the next heartbeat is due a full period
 * later, rather than a burst of overdue ones. */
static __attribute__((noreturn)) void heartbeats(struct writer *ws, uint32_t n)
{
	uint64_t period = arg.hb_ms * 1000000UL, next = now_ns() + period;

	for (uint64_t seq = 1;; seq++) {
		sleep_until(next);
		uint64_t now = now_ns();
		next = now - next < period ? next + period : now + period;
		say("HB seq=%" PRIu64 " pages=%" PRIu64 " ticks=%" PRIu64 " ms=%" PRIu64 "\n", seq,
		    pages_written(ws, n), timer_ticks(), now / 1000000);
		if (arg.exit_after && seq >= arg.exit_after)
			_exit(EXIT_OK);
	}
}

int main(int argc, char **argv)
{
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	uint32_t cpus = online > 0 ? (uint32_t)online : 1;

	parse_args(argc, argv);
	check_args(cpus);
	map_wss();
	uint32_t n = arg.vcpus == UNSET ? cpus : (uint32_t)arg.vcpus;
	struct writer *ws = start_writers(n);
	say("READY wss_base=0x%" PRIxPTR " wss_pages=%" PRIu64 " vcpus=%" PRIu32 " writers=%" PRIu32
	    "\n",
	    (uintptr_t)wss, wss_pages, cpus, n);
	heartbeats(ws, n);
}
