/* config.c — the run's parameters from the command line ("key=value" words, all optional,
 * unknown keys ignored). Runs once, on vCPU 0 in ring 0, before the others start. */
#include "selfcheck.h"

#define CMDLINE_MAX    4096
#define WSS_ALIGN      (2 * MIB)
#define UNSET	       (~0UL)
#define MAX_DIRTY_RATE 1000000

struct config cfg;

/* Parameters as given; UNSET where the default depends on the machine. */
static struct {
	u64 wss_mb, dirty_rate, vcpus, stride, hb_ms, exit_after, iters, passes, echo, disk_mb,
		disk_bad, disk_discard, disk_bench, balloon_mb, balloon_report, balloon_bad,
		net_frames, net_bench, net_bad, disk_bs, disk_qd, disk_rand, cpuid;
} arg = { 64, 0, UNSET, 1, 100, 0, 100000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 1, 0, 0 };

static const struct {
	const char *key;
	u64 *val;
} numeric_keys[] = {
	{ "wss_mb", &arg.wss_mb },
	{ "dirty_rate", &arg.dirty_rate },
	{ "vcpus", &arg.vcpus },
	{ "stride", &arg.stride },
	{ "hb_ms", &arg.hb_ms },
	{ "exit_after", &arg.exit_after },
	{ "iters", &arg.iters },
	{ "passes", &arg.passes },
	{ "echo", &arg.echo },
	{ "disk_mb", &arg.disk_mb },
	{ "disk_bad", &arg.disk_bad },
	{ "disk_discard", &arg.disk_discard },
	{ "disk_bench", &arg.disk_bench },
	{ "disk_bs", &arg.disk_bs },
	{ "disk_qd", &arg.disk_qd },
	{ "disk_rand", &arg.disk_rand },
	{ "balloon_mb", &arg.balloon_mb },
	{ "balloon_report", &arg.balloon_report },
	{ "balloon_bad", &arg.balloon_bad },
	{ "net_frames", &arg.net_frames },
	{ "net_bench", &arg.net_bench },
	{ "net_bad", &arg.net_bad },
	{ "cpuid", &arg.cpuid },
};

static __attribute__((noreturn)) void bad_arg(const char *what, u64 v)
{
	con_printf("ERROR %s (%lu)\n", what, v);
	guest_exit(EXIT_BADARG);
}

/* True if s[0..n) equals the NUL-terminated word. */
static bool word_is(const char *s, size_t n, const char *word)
{
	size_t i = 0;

	while (i < n && word[i] && s[i] == word[i])
		i++;
	return i == n && !word[i];
}

/* Decimal only; rejects empty strings, other characters and overflow. */
static bool parse_u64(const char *s, size_t n, u64 *out)
{
	u64 v = 0;

	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9' || v > (~0UL - 9) / 10)
			return false;
		v = v * 10 + (u64)(s[i] - '0');
	}
	*out = v;
	return true;
}

static void parse_pair(const char *k, size_t kn, const char *v, size_t vn)
{
	if (word_is(k, kn, "mode")) {
		if (!word_is(v, vn, "ioloop")) {
			con_printf("ERROR mode: only mode=ioloop is known\n");
			guest_exit(EXIT_BADARG);
		}
		cfg.mode = MODE_IOLOOP;
		return;
	}
	for (size_t i = 0; i < sizeof(numeric_keys) / sizeof(numeric_keys[0]); i++) {
		if (word_is(k, kn, numeric_keys[i].key) && !parse_u64(v, vn, numeric_keys[i].val)) {
			con_printf("ERROR %s: not a decimal number\n", numeric_keys[i].key);
			guest_exit(EXIT_BADARG);
		}
	}
}

static void parse_cmdline(const char *s)
{
	for (size_t i = 0; s && i < CMDLINE_MAX && s[i];) {
		size_t start = i, eq = 0;

		while (i < CMDLINE_MAX && s[i] && s[i] != ' ') {
			if (s[i] == '=' && !eq)
				eq = i;
			i++;
		}
		if (eq)
			parse_pair(s + start, eq - start, s + eq + 1, i - eq - 1);
		while (i < CMDLINE_MAX && s[i] == ' ')
			i++;
	}
}

/* balloon_mb / balloon_bad: a vCPU of its own (the last: not vCPU 0, which prints the
 * heartbeats and drives the disk, nor a writer), and the pool after the working set. */
static void check_balloon(u64 wss_end)
{
	u64 writers = arg.vcpus == UNSET ? cfg.nr_vcpus : arg.vcpus;

	cfg.pool_base = (wss_end + WSS_ALIGN - 1) & ~(WSS_ALIGN - 1);
	if (!arg.balloon_mb && !arg.balloon_bad)
		return;
	if (cfg.nr_vcpus < 2 || writers >= cfg.nr_vcpus)
		bad_arg("balloon_mb and balloon_bad need a vCPU that does not write: vcpus= below "
			"the VM's vCPUs, and at least 2",
			writers);
	if (cfg.virtio_count == 0)
		bad_arg("balloon_mb and balloon_bad need a balloon (cme-vmm --balloon)", 0);
	if (arg.balloon_mb > cfg.mem_bytes / MIB ||
	    cfg.pool_base + arg.balloon_mb * MIB > cfg.mem_bytes)
		bad_arg("balloon_mb does not fit in RAM after the working set", arg.balloon_mb);
	if (arg.balloon_report > 1 || arg.balloon_bad > 1)
		bad_arg("balloon_report and balloon_bad must be 0 or 1", 0);
	cfg.balloon_cpu = cfg.nr_vcpus - 1;
}

/* disk_bs / disk_qd / disk_rand: the requests' buffers (disk_qd of disk_bs KiB) after the
 * working set and the balloon's pool; the disk's size must be a whole number of requests. */
static void check_disk_io(void)
{
	u64 bs = arg.disk_bs * 1024;

	cfg.disk_io_base = cfg.pool_base + arg.balloon_mb * MIB;
	if (arg.disk_bs < 4 || arg.disk_bs > 1024 || (arg.disk_bs & (arg.disk_bs - 1)))
		bad_arg("disk_bs must be a power of two from 4 to 1024 (KiB)", arg.disk_bs);
	if (arg.disk_qd < 1 || arg.disk_qd > VBLK_MAX_BATCH)
		bad_arg("disk_qd must be 1..32", arg.disk_qd);
	if (arg.disk_rand > 1)
		bad_arg("disk_rand must be 0 or 1", arg.disk_rand);
	if ((arg.disk_mb * MIB) % bs)
		bad_arg("disk_mb must be a whole number of disk_bs requests", arg.disk_mb);
	if (arg.disk_mb && (cfg.disk_io_base + arg.disk_qd * bs > cfg.mem_bytes ||
			    cfg.disk_io_base + arg.disk_qd * bs > 3ull * 1024 * MIB))
		bad_arg("disk_qd * disk_bs does not fit in RAM after the working set", arg.disk_qd);
}

/* The working set sits in RAM offsets [wss_base, wss_base + wss bytes); RAM offsets past
 * 3 GiB are mapped 1 GiB higher, which the workload does when it forms addresses. */
static void check_args(void)
{
	u64 wss_base = ((u64)__image_end + WSS_ALIGN - 1) & ~(WSS_ALIGN - 1);

	bool fits = arg.wss_mb != 0 && arg.wss_mb <= cfg.mem_bytes / MIB &&
		    wss_base + arg.wss_mb * MIB <= cfg.mem_bytes;

	if (!fits && cfg.mode == MODE_WRITE) {
		con_printf("ERROR wss_mb=%lu does not fit: RAM is %lu MiB, the working set starts "
			   "at 0x%lx\n",
			   arg.wss_mb, cfg.mem_bytes / MIB, wss_base);
		guest_exit(EXIT_BADARG);
	}
	if (arg.vcpus != UNSET && arg.vcpus > cfg.nr_vcpus)
		bad_arg("vcpus is more than the VM has", arg.vcpus);
	if (arg.dirty_rate > MAX_DIRTY_RATE) /* keeps the pacing arithmetic in 64 bits */
		bad_arg("dirty_rate is above 1000000 MiB/s", arg.dirty_rate);
	if (arg.stride == 0)
		bad_arg("stride must be at least 1", 0);
	if (arg.hb_ms == 0 || arg.hb_ms > 3600 * 1000)
		bad_arg("hb_ms must be 1..3600000", arg.hb_ms);
	if (arg.echo > 1)
		bad_arg("echo must be 0 or 1", arg.echo);
	if (arg.cpuid > 1)
		bad_arg("cpuid must be 0 or 1", arg.cpuid);
	if ((arg.disk_mb || arg.disk_bad) && cfg.virtio_count == 0)
		bad_arg("disk_mb and disk_bad need a disk (cme-vmm --disk)", 0);
	if (arg.net_bench > 2 || arg.net_bad > 1)
		bad_arg("net_bench must be 0, 1 or 2, net_bad 0 or 1", arg.net_bench | arg.net_bad);
	if (arg.net_bench && !arg.net_frames)
		bad_arg("net_bench needs net_frames=N", 0);
	if (cfg.nr_vcpus == 0 || cfg.nr_vcpus > MAX_CPUS)
		bad_arg("the boot info gives a bad vCPU count", cfg.nr_vcpus);
	check_balloon(wss_base + (fits ? arg.wss_mb * MIB : 0));
	check_disk_io();
	if (cfg.tsc_khz == 0)
		bad_arg("the boot info gives no TSC frequency", 0);
	cfg.wss_base = wss_base;
}

/* The net vCPU and the first virtio-net device (net_frames / net_bad): vCPU 1, so vCPU 0
 * keeps the heartbeats and may drive a disk; vCPU 0 on a one-vCPU VM. */
static void net_setup(void)
{
	static const u8 pins[8] = { 5, 6, 7, 9, 10, 11, 12, 14 }; /* the VMM's, by slot */
	int slot;

	cfg.net = arg.net_frames || arg.net_bad;
	if (!cfg.net)
		return;
	slot = vmmio_find(cfg.virtio_base, cfg.virtio_count, VIRTIO_ID_NET);
	if (slot < 0 || slot >= 8)
		bad_arg("net_frames and net_bad need a network device (cme-vmm --net)", 0);
	cfg.net_cpu = cfg.nr_vcpus > 1 ? 1 : 0;
	if (cfg.net_cpu == 0 && (arg.disk_mb || arg.disk_bad))
		bad_arg("a disk and a network device together need 2 vCPUs", cfg.nr_vcpus);
	if ((arg.balloon_mb || arg.balloon_bad) && cfg.balloon_cpu == cfg.net_cpu)
		bad_arg("the balloon and a network device together need 3 vCPUs (balloon on the "
			"last, net on vCPU 1)",
			cfg.nr_vcpus);
	cfg.net_base = cfg.virtio_base + (u64)slot * VIRTIO_SLOT_SIZE;
	cfg.net_pin = pins[slot];
}

void config_init(const struct boot_info *bi)
{
	cfg.mode = MODE_WRITE;
	cfg.nr_vcpus = bi->nr_vcpus;
	cfg.mem_bytes = bi->mem_bytes;
	cfg.tsc_khz = bi->tsc_khz;
	cfg.virtio_base = bi->virtio_base;
	cfg.virtio_count = bi->virtio_count;
	parse_cmdline((const char *)bi->cmdline_gpa);
	check_args();
	cfg.wss_pages = arg.wss_mb * (MIB / PAGE_SIZE);
	cfg.writers = arg.vcpus == UNSET ? cfg.nr_vcpus : (u32)arg.vcpus;
	cfg.stride = arg.stride;
	cfg.dirty_rate = arg.dirty_rate;
	cfg.hb_tsc = arg.hb_ms * cfg.tsc_khz;
	cfg.exit_after = arg.exit_after;
	cfg.iters = arg.iters;
	cfg.passes = arg.passes;
	cfg.echo = arg.echo;
	cfg.cpuid = arg.cpuid;
	cfg.disk_mb = arg.disk_mb;
	cfg.disk_bad = arg.disk_bad;
	cfg.disk_discard = arg.disk_discard;
	cfg.disk_bench = arg.disk_bench;
	cfg.disk_bs = arg.disk_bs;
	cfg.disk_qd = arg.disk_qd;
	cfg.disk_rand = arg.disk_rand;
	cfg.balloon_mb = arg.balloon_mb;
	cfg.balloon_report = arg.balloon_report;
	cfg.balloon_bad = arg.balloon_bad;
	cfg.net_frames = arg.net_frames;
	cfg.net_bench = arg.net_bench;
	cfg.net_bad = arg.net_bad;
	net_setup();
}
