/* cme-vmm run option parsing. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "unit.h"
#include "vmm.h"

/* argv as a program gets it: writable strings (--disk cuts ",ro" off in place). They stay
 * valid until the next parse. */
static int parse_verb(struct run_opts *o, char *err, const char *verb, const char *const *args)
{
	static char copies[32][256];
	char *argv[32];
	int n = 0;

	argv[n++] = (char *)verb;
	while (*args && n < 31) {
		snprintf(copies[n], sizeof(copies[n]), "%s", *args++);
		argv[n] = copies[n];
		n++;
	}
	argv[n] = NULL;
	return vmm_parse_run(n, argv, o, err, 256);
}

static int parse(struct run_opts *o, char *err, const char *const *args)
{
	return parse_verb(o, err, "run", args);
}

static void test_run_good(void)
{
	static const char *const a[] = {
		"--mem",	"2G",	       "--vcpus",     "4",	   "--image",
		"g.bin",	"--cmdline",   "wss_mb=8",    "--console", "file:/tmp/c",
		"--api",	"/tmp/a",      "--name",      "web1",	   "--fence-deadline",
		"123456789012", "--exit-file", "/tmp/x.json", NULL
	};
	struct run_opts o;
	char err[256] = "";

	CU_ASSERT_EQUAL_FATAL(parse(&o, err, a), 0);
	CU_ASSERT_EQUAL(o.fence_ns, 123456789012ull);
	CU_ASSERT_STRING_EQUAL(o.exit_file, "/tmp/x.json");
	CU_ASSERT_EQUAL(o.mem_bytes, 2ull << 30);
	CU_ASSERT_EQUAL(o.vcpus, 4);
	CU_ASSERT_STRING_EQUAL(o.image, "g.bin");
	CU_ASSERT_STRING_EQUAL(o.cmdline, "wss_mb=8");
	CU_ASSERT_EQUAL(o.console.kind, CONSOLE_FILE);
	CU_ASSERT_STRING_EQUAL(o.console.path, "/tmp/c");
	CU_ASSERT_STRING_EQUAL(o.api_path, "/tmp/a");
	CU_ASSERT_STRING_EQUAL(o.name, "web1");
}

static void test_run_defaults(void)
{
	static const char *const a[] = { "--image", "g.bin", NULL };
	struct run_opts o;
	char err[256];

	CU_ASSERT_EQUAL_FATAL(parse(&o, err, a), 0);
	CU_ASSERT_EQUAL(o.mem_bytes, 256ull << 20);
	CU_ASSERT_EQUAL(o.vcpus, 1);
	CU_ASSERT_EQUAL(o.console.kind, CONSOLE_STDOUT);
	CU_ASSERT_PTR_NULL(o.api_path);
	CU_ASSERT_EQUAL(o.fence_ns, 0); /* no deadline unless given */
}

/* --disk PATH[,ro][,direct], in order; a comma inside a directory name is part of the
 * path. */
static void test_disks(void)
{
	static const char *const a[] = { "--image",	    "g",	  "--disk",
					 "/srv/a.img",	    "--disk",	  "b.img,ro",
					 "--disk",	    "/x,y/c.img", "--disk",
					 "d.img,direct,ro", NULL };
	static const char *const nine[] = { "--image", "g", "--disk", "1", "--disk", "2",
					    "--disk",  "3", "--disk", "4", "--disk", "5",
					    "--disk",  "6", "--disk", "7", "--disk", "8",
					    "--disk",  "9", NULL };
	struct run_opts o;
	char err[256] = "";

	CU_ASSERT_EQUAL_FATAL(parse(&o, err, a), 0);
	CU_ASSERT_EQUAL(o.nr_disks, 4);
	CU_ASSERT_STRING_EQUAL(o.disks[3].path, "d.img");
	CU_ASSERT_TRUE(o.disks[3].ro && o.disks[3].direct);
	CU_ASSERT_FALSE(o.disks[1].direct);
	CU_ASSERT_STRING_EQUAL(o.disks[0].path, "/srv/a.img");
	CU_ASSERT_FALSE(o.disks[0].ro);
	CU_ASSERT_STRING_EQUAL(o.disks[1].path, "b.img");
	CU_ASSERT_TRUE(o.disks[1].ro);
	CU_ASSERT_STRING_EQUAL(o.disks[2].path, "/x,y/c.img");
	CU_ASSERT_EQUAL(parse(&o, err, nine), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "at most 8 disks"));
}

/* --cgroup PATH[,cpu=CPUS][,mem=SIZE]; incoming takes it too (this host's side). */
static void test_cgroup(void)
{
	static const char *const a[] = { "--image", "g", "--cgroup", "cme/vm1,cpu=1.5,mem=2G",
					 NULL };
	static const char *const in[] = { "--listen", "h:0",	"--tls-dir", "t", "--cgroup",
					  "x",	      "--disk", "d.img",     NULL };
	struct run_opts o;
	char err[256] = "";

	CU_ASSERT_EQUAL_FATAL(parse(&o, err, a), 0);
	CU_ASSERT_STRING_EQUAL(o.cgroup.path, "cme/vm1");
	CU_ASSERT_DOUBLE_EQUAL(o.cgroup.cpus, 1.5, 1e-9);
	CU_ASSERT_EQUAL(o.cgroup.mem, 2ull << 30);
	CU_ASSERT_EQUAL(parse_verb(&o, err, "incoming", in), 0);
	CU_ASSERT_STRING_EQUAL(o.cgroup.path, "x");
	CU_ASSERT_EQUAL(o.cgroup.cpus, 0);
	CU_ASSERT_EQUAL(o.nr_disks, 1);
}

/* --balloon: the last virtio slot, so 8 disks leave no room; not with --hugepages. */
static void test_balloon(void)
{
	static const char *const a[] = { "--image", "g", "--disk", "a.img", "--balloon", NULL };
	static const char *const nine[] = { "--image", "g",	 "--disk", "1",		"--disk",
					    "2",       "--disk", "3",	   "--disk",	"4",
					    "--disk",  "5",	 "--disk", "6",		"--disk",
					    "7",       "--disk", "8",	   "--balloon", NULL };
	static const char *const huge[] = { "--image", "g", "--balloon", "--hugepages", NULL };
	struct run_opts o;
	char err[256] = "";

	CU_ASSERT_EQUAL_FATAL(parse(&o, err, a), 0);
	CU_ASSERT_TRUE(o.balloon);
	CU_ASSERT_EQUAL(o.nr_disks, 1);
	CU_ASSERT_EQUAL(parse(&o, err, nine), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "at most 8 virtio devices in all"));
	CU_ASSERT_EQUAL(parse(&o, err, huge), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "--balloon and --hugepages exclude each other"));
}

/* --cpu-template: run and incoming take a template by name; a bad name lists the valid
 * ones; restore takes the snapshot's. */
static void test_cpu_template(void)
{
	static const char *const a[] = { "--image", "g", "--cpu-template", "x86-64-v2", NULL };
	static const char *const in[] = { "--listen",	    "127.0.0.1:0", "--tls-dir", "d",
					  "--cpu-template", "x86-64-v1",   NULL };
	static const char *const bad[] = { "--image", "g", "--cpu-template", "x86-64-v9", NULL };
	static const char *const empty[] = { "--image", "g", "--cpu-template", "", NULL };
	static const char *const rs[] = { "s.snap", "--cpu-template", "host", NULL };
	struct run_opts o;
	char err[256] = "";

	CU_ASSERT_EQUAL_FATAL(parse(&o, err, a), 0);
	CU_ASSERT_STRING_EQUAL(o.cpu_template, "x86-64-v2");
	CU_ASSERT_EQUAL_FATAL(parse_verb(&o, err, "incoming", in), 0);
	CU_ASSERT_STRING_EQUAL(o.cpu_template, "x86-64-v1");
	CU_ASSERT_EQUAL(parse(&o, err, bad), -EINVAL);
	CU_ASSERT_STRING_EQUAL(err, "--cpu-template x86-64-v9: unknown CPU template (one of host, "
				    "x86-64-v1, x86-64-v2, x86-64-v3, x86-64-v4)");
	CU_ASSERT_EQUAL(parse(&o, err, empty), -EINVAL);
	CU_ASSERT_EQUAL(parse_verb(&o, err, "restore", rs), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "--cpu-template"));
}

/* --net tap=NAME[,mac=MAC]: keys in any order, in --net order; a missing MAC is left to
 * be derived; at most 4 nets and 8 virtio devices in all. */
static void test_nets(void)
{
	static const char *const a[] = { "--image", "g",
					 "--net",   "tap=tap0,rate_tx=2M,pps_rx=500",
					 "--net",   "mac=02:AA:bb:cc:dd:0e,tap=vm1-tap1",
					 NULL };
	static const char *const five[] = { "--image", "g",	"--net", "tap=a", "--net",
					    "tap=b",   "--net", "tap=c", "--net", "tap=d",
					    "--net",   "tap=e", NULL };
	static const char *const nine[] = { "--image", "g",	"--disk", "1", "--disk", "2",
					    "--disk",  "3",	"--disk", "4", "--disk", "5",
					    "--disk",  "6",	"--disk", "7", "--net",	 "tap=a",
					    "--net",   "tap=b", NULL };
	static const uint8_t mac[6] = { 0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x0e };
	struct run_opts o;
	char err[256] = "";

	CU_ASSERT_EQUAL_FATAL(parse(&o, err, a), 0);
	CU_ASSERT_EQUAL(o.nr_nets, 2);
	CU_ASSERT_STRING_EQUAL(o.nets[0].tap, "tap0");
	CU_ASSERT_FALSE(o.nets[0].mac_set);
	CU_ASSERT_EQUAL(o.nets[0].tx.bytes_per_s, 2u << 20);
	CU_ASSERT_EQUAL(o.nets[0].tx.frames_per_s, 0);
	CU_ASSERT_EQUAL(o.nets[0].rx.frames_per_s, 500);
	CU_ASSERT_EQUAL(o.nets[0].rx.bytes_per_s, 0);
	CU_ASSERT_EQUAL(o.nets[1].tx.bytes_per_s + o.nets[1].rx.frames_per_s, 0);
	CU_ASSERT_STRING_EQUAL(o.nets[1].tap, "vm1-tap1");
	CU_ASSERT_TRUE(o.nets[1].mac_set);
	CU_ASSERT_EQUAL(memcmp(o.nets[1].mac, mac, 6), 0);
	CU_ASSERT_EQUAL(parse(&o, err, five), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "--net tap=e: at most 4 network devices"));
	CU_ASSERT_EQUAL(parse(&o, err, nine), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "at most 8 virtio devices in all"));
}

/* Each bad command line fails with a message naming the culprit. */
static void test_run_bad(void)
{
	static const struct {
		const char *args[6];
		const char *msg;
	} bad[] = {
		{ { "--image", "g", "--frobnicate", NULL }, "unknown option --frobnicate" },
		{ { "--image", "g", "--mem", "lots", NULL }, "--mem lots: not a size" },
		{ { "--image", "g", "--mem", "3M", NULL }, "multiple of 2M" },
		{ { "--image", "g", "--mem", "128G", NULL }, "at most 64G" },
		{ { "--image", "g", "--vcpus", "0", NULL }, "--vcpus 0" },
		{ { "--image", "g", "--vcpus", "33", NULL }, "--vcpus 33" },
		{ { "--image", "g", "--console", "tty", NULL }, "--console tty" },
		{ { "--mem", "1G", NULL }, "--image FILE or --kernel FILE is required" },
		{ { "--image", "g", "--kernel", "k", NULL }, "exclude each other" },
		{ { "--image", "g", "--initrd", "i", NULL }, "--initrd needs --kernel" },
		{ { "--image", NULL }, "needs a value" },
		{ { "--image", "g", "extra", NULL }, "unexpected argument extra" },
		{ { "--image", "g", "--fence-deadline", "soon", NULL }, "--fence-deadline soon" },
		{ { "--image", "g", "--fence-deadline", "0", NULL }, "--fence-deadline 0" },
		{ { "--image", "g", "--disk", "d.img,rw", NULL },
		  "expected PATH with options ,ro and ,direct" },
		{ { "--image", "g", "--disk", ",ro", NULL }, "--disk: empty path" },
		{ { "--image", "g", "--cgroup", "/sys/x", NULL }, "expected a relative PATH" },
		{ { "--image", "g", "--cgroup", "a/../b", NULL }, "expected a relative PATH" },
		{ { "--image", "g", "--cgroup", "a,cpu=0", NULL }, "cpu=0: CPUS is a number" },
		{ { "--image", "g", "--cgroup", "a,mem=x", NULL }, "mem=x: SIZE is bytes" },
		{ { "--image", "g", "--cgroup", "a,io=1", NULL }, "unknown option io=1" },
		{ { "--image", "g", "--net", "mac=02:00:00:00:00:01", NULL },
		  "--net mac=02:00:00:00:00:01: no tap=NAME" },
		{ { "--image", "g", "--net", "tap=t,speed=9", NULL },
		  "--net tap=t,speed=9: expected tap=NAME" },
		{ { "--image", "g", "--net", "tap", NULL }, "--net tap: expected tap=NAME" },
		{ { "--image", "g", "--net", "tap=", NULL }, "tap= is not an interface name" },
		{ { "--image", "g", "--net", "tap=a/b", NULL },
		  "tap=a/b is not an interface name" },
		{ { "--image", "g", "--net", "tap=sixteen-chars-xy", NULL },
		  "is not an interface name" },
		{ { "--image", "g", "--net", "tap=t,mac=02:00:00:00:00", NULL },
		  "mac=02:00:00:00:00 is not a unicast MAC address" },
		{ { "--image", "g", "--net", "tap=t,mac=03:00:00:00:00:01", NULL },
		  "is not a unicast MAC" },
		{ { "--image", "g", "--net", "tap=t,mac=00:00:00:00:00:00", NULL },
		  "is not a unicast MAC" },
		{ { "--image", "g", "--net", "tap=t,mac=02:00:00:00:00:0g", NULL },
		  "is not a unicast MAC" },
		{ { "--image", "g", "--net", "tap=t,rate_tx=fast", NULL },
		  "--net tap=t,rate_tx=fast: rate_tx=fast is not a rate (bytes a second" },
		{ { "--image", "g", "--net", "tap=t,rate_rx=0", NULL }, "rate_rx=0 is not a rate" },
		{ { "--image", "g", "--net", "tap=t,rate_rx=65G", NULL },
		  "rate_rx=65G is not a rate" },
		{ { "--image", "g", "--net", "tap=t,pps_tx=1k", NULL },
		  "pps_tx=1k is not a rate (frames a second" },
		{ { "--image", "g", "--net", "tap=t,pps_rx=0", NULL }, "pps_rx=0 is not a rate" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct run_opts o;
		char err[256] = "";

		CU_ASSERT_EQUAL(parse(&o, err, bad[i].args), -EINVAL);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i].msg));
		if (!strstr(err, bad[i].msg))
			printf("\n    case %zu: got \"%s\"\n", i, err);
	}
}

static void test_console_cfg(void)
{
	struct console_cfg c;

	CU_ASSERT_EQUAL(console_cfg_parse("socket:/run/x.sock", &c), 0);
	CU_ASSERT_EQUAL(c.kind, CONSOLE_SOCKET);
	CU_ASSERT_STRING_EQUAL(c.path, "/run/x.sock");
	CU_ASSERT_EQUAL(console_cfg_parse("none", &c), 0);
	CU_ASSERT_EQUAL(c.kind, CONSOLE_NONE);
	CU_ASSERT_EQUAL(console_cfg_parse("file:", &c), -EINVAL);
	CU_ASSERT_EQUAL(console_cfg_parse("socket", &c), -EINVAL);
}

void suite_args(void)
{
	static const struct test_case cases[] = {
		{ "run: every option parsed", test_run_good },
		{ "run: defaults", test_run_defaults },
		{ "run: bad options name the problem", test_run_bad },
		{ "run: --disk PATH[,ro][,direct]", test_disks },
		{ "run, incoming: --cgroup PATH[,cpu=CPUS][,mem=SIZE]", test_cgroup },
		{ "run: --balloon", test_balloon },
		{ "run: --net tap=NAME[,mac=MAC]", test_nets },
		{ "run, incoming: --cpu-template NAME", test_cpu_template },
		{ "console targets", test_console_cfg },
		{ NULL, NULL },
	};
	test_add_suite("args", cases);
}
