/* Option parsing for `cme-vmm run`, `restore` and `incoming`. Pure: checks syntax and
 * limits, touches nothing. */
#include "vmm.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <getopt.h>
#include <sched.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static int arg_fail(char *err, size_t errlen, const char *fmt, const char *a)
{
	snprintf(err, errlen, fmt, a);
	return -EINVAL;
}

static int parse_mem(const char *a, struct run_opts *o, char *err, size_t errlen)
{
	if (parse_size(a, &o->mem_bytes) < 0)
		return arg_fail(err, errlen, "--mem %s: not a size (examples: 512M, 2G)", a);
	if (o->mem_bytes % (2ull << 20) || o->mem_bytes > VM_MAX_MEM)
		return arg_fail(err, errlen, "--mem %s: must be a multiple of 2M and at most 64G",
				a);
	return 0;
}

static int parse_vcpus(const char *a, struct run_opts *o, char *err, size_t errlen)
{
	uint64_t v;

	if (parse_uint(a, 1, VM_MAX_VCPUS, &v) < 0)
		return arg_fail(err, errlen, "--vcpus %s: must be a number from 1 to 32", a);
	o->vcpus = (unsigned)v;
	return 0;
}

/* --disk PATH[,ro][,direct]. The path is argv's: the options are cut off in place; a comma
 * followed by a '/' belongs to the path. */
static int parse_disk(char *a, struct run_opts *o, char *err, size_t errlen)
{
	char *comma;
	struct vm_disk *d;

	if (o->nr_disks == VM_MAX_DISKS)
		return arg_fail(err, errlen, "--disk %s: at most 8 disks", a);
	d = &o->disks[o->nr_disks];
	*d = (struct vm_disk){ 0 };
	while ((comma = strrchr(a, ',')) && !strchr(comma, '/')) {
		if (!strcmp(comma, ",ro"))
			d->ro = true;
		else if (!strcmp(comma, ",direct"))
			d->direct = true;
		else
			return arg_fail(err, errlen,
					"--disk %s: expected PATH with options ,ro and ,direct", a);
		*comma = 0;
	}
	if (!*a)
		return arg_fail(err, errlen, "%s", "--disk: empty path");
	d->path = a;
	o->nr_disks++;
	return 0;
}

#define NET_USAGE                                                                                  \
	"expected "                                                                                \
	"tap=NAME[,mac=XX:XX:XX:XX:XX:XX][,rate_tx=BW][,rate_rx=BW][,pps_tx=N][,pps_rx=N]"
#define NET_MAX_RATE (1ull << 36) /* bytes or frames a second (64 Gi): the limiter's bound */

/* A MAC written XX:XX:XX:XX:XX:XX that a device may have: unicast, not all zero. */
static bool parse_mac(const char *s, uint8_t *mac)
{
	unsigned v[VM_MAC_LEN], any = 0;
	int end = 0;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%n", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
		   &end) != VM_MAC_LEN ||
	    s[end] || strlen(s) != 17)
		return false;
	for (int i = 0; i < VM_MAC_LEN; i++) {
		mac[i] = (uint8_t)v[i];
		any |= v[i];
	}
	return any && !(mac[0] & 1);
}

/* An interface name the kernel takes: 1 to 15 characters, no '/', ':' or white space. */
static bool ifname_ok(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= 15 && !strpbrk(s, "/: \t\n") && strcmp(s, ".") && strcmp(s, "..");
}

/* rate_tx=BW, rate_rx=BW (bytes a second, K/M/G binary), pps_tx=N, pps_rx=N into n;
 * false when key is none of them. */
static bool net_rate(struct vm_net *n, const char *key, const char *val, const char **what)
{
	struct {
		const char *key;
		uint64_t *to;
		bool bytes;
	} keys[] = { { "rate_tx", &n->tx.bytes_per_s, true },
		     { "rate_rx", &n->rx.bytes_per_s, true },
		     { "pps_tx", &n->tx.frames_per_s, false },
		     { "pps_rx", &n->rx.frames_per_s, false } };

	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		if (strcmp(key, keys[i].key))
			continue;
		if (keys[i].bytes ? parse_size(val, keys[i].to) < 0 || *keys[i].to > NET_MAX_RATE
				  : parse_uint(val, 1, NET_MAX_RATE, keys[i].to) < 0)
			*what = keys[i].bytes
					? "is not a rate (bytes a second, 1 to 64G: 500K, 2M, "
					  "1G)"
					: "is not a rate (frames a second, 1 to 68719476736)";
		return true;
	}
	return false;
}

/* One KEY=VALUE of --net into n; false when it is not one. */
static bool net_key(struct vm_net *n, const char *key, const char *val, const char **what)
{
	*what = NULL;
	if (net_rate(n, key, val, what))
		return true;
	if (!strcmp(key, "tap")) {
		n->tap = val;
		*what = ifname_ok(val) ? NULL
				       : "is not an interface name (1 to 15 characters, no "
					 "'/', ':' or spaces)";
		return true;
	}
	if (!strcmp(key, "mac")) {
		n->mac_set = parse_mac(val, n->mac);
		*what = n->mac_set ? NULL : "is not a unicast MAC address (XX:XX:XX:XX:XX:XX)";
		return true;
	}
	return false;
}

/* --net tap=NAME[,mac=MAC][,rate_tx=BW]...: the keys in any order, cut apart in a copy
 * of the argument (argv stays as given: ps shows it). */
static int parse_net(const char *orig, struct run_opts *o, char *err, size_t errlen)
{
	char *a;
	struct vm_net *n;
	const char *what;

	if (o->nr_nets == VM_MAX_NETS)
		return arg_fail(err, errlen, "--net %s: at most 4 network devices", orig);
	a = o->net_args[o->nr_nets];
	if (strlen(orig) >= sizeof(o->net_args[0]))
		return arg_fail(err, errlen, "--net %.40s...: longer than 255 characters", orig);
	strcpy(a, orig);
	n = &o->nets[o->nr_nets];
	*n = (struct vm_net){ 0 };
	for (char *key = a, *next; key; key = next) {
		char *eq = strchr(key, '=');

		next = strchr(key, ',');
		if (next)
			*next++ = 0;
		if (eq && (!next || eq < next - 1))
			*eq = 0;
		else
			eq = NULL;
		if (!eq || !net_key(n, key, eq + 1, &what))
			return arg_fail(err, errlen, "--net %s: " NET_USAGE, orig);
		if (what) {
			snprintf(err, errlen, "--net %s: %s=%s %s", orig, key, eq + 1, what);
			return -EINVAL;
		}
	}
	if (!n->tap)
		return arg_fail(err, errlen, "--net %s: no tap=NAME", orig);
	o->nr_nets++;
	return 0;
}

/* --pin-vcpus 0,2,3: vCPU i runs on host CPU list[i] (fewer CPUs than vCPUs pins the
 * first ones). Whether those CPUs exist is checked when the VM starts. */
static int parse_pin(const char *a, struct run_opts *o, char *err, size_t errlen)
{
	const char *p = a;

	o->nr_pin = 0;
	while (*p) {
		char *end;
		unsigned long cpu = strtoul(p, &end, 10);

		if (end == p || cpu >= CPU_SETSIZE || (*end && *end != ',') ||
		    o->nr_pin == VM_MAX_VCPUS)
			return arg_fail(err, errlen,
					"--pin-vcpus %s: expected host CPU numbers, one per vCPU, "
					"comma-separated",
					a);
		o->pin[o->nr_pin++] = (int)cpu;
		p = *end ? end + 1 : end;
	}
	return o->nr_pin ? 0 : arg_fail(err, errlen, "--pin-vcpus %s: no CPU given", a);
}

/* A cgroup path: relative, no "..", plain characters, at most CG_MAX_DEPTH folders (it
 * becomes folders, removed again at exit). */
static bool cg_path_ok(const char *p)
{
	unsigned depth = 1;

	for (const char *s = p; *s; s++)
		depth += *s == '/';
	if (!*p || *p == '/' || strstr(p, "..") || strstr(p, "//") || p[strlen(p) - 1] == '/' ||
	    depth > CG_MAX_DEPTH)
		return false;
	return strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/") ==
	       strlen(p);
}

/* --cgroup PATH[,cpu=CPUS][,mem=SIZE] */
static int parse_cgroup(char *a, struct run_opts *o, char *err, size_t errlen)
{
	char *save = NULL, *tok = strtok_r(a, ",", &save);
	struct cg_opts *c = &o->cgroup;

	if (!tok || !cg_path_ok(tok) || strlen(tok) >= sizeof(c->path))
		return arg_fail(
			err, errlen,
			"--cgroup %s: expected a relative PATH (letters, digits, . _ - /; at "
			"most 8 folders) with options ,cpu=CPUS and ,mem=SIZE",
			tok ? tok : "");
	snprintf(c->path, sizeof(c->path), "%s", tok);
	while ((tok = strtok_r(NULL, ",", &save))) {
		char *end = NULL;

		if (!strncmp(tok, "cpu=", 4)) {
			c->cpus = strtod(tok + 4, &end);
			if (end == tok + 4 || *end || !(c->cpus >= 0.01 && c->cpus <= 4096))
				return arg_fail(err, errlen,
						"--cgroup: %s: CPUS is a number of cores, 0.01 "
						"to 4096 (0.5: half a core)",
						tok);
		} else if (!strncmp(tok, "mem=", 4)) {
			if (parse_size(tok + 4, &c->mem) < 0 || c->mem < (16ull << 20))
				return arg_fail(err, errlen,
						"--cgroup: %s: SIZE is bytes with units, at least "
						"16M",
						tok);
		} else {
			return arg_fail(err, errlen,
					"--cgroup: unknown option %s (expected cpu= or mem=)", tok);
		}
	}
	return 0;
}

/* --jail-user USER or UID[:GID] (GID: the user's, or UID's own number): not root. */
static int parse_jail_user(const char *a, struct run_opts *o, char *err, size_t errlen)
{
	if (parse_user(a, &o->jail_uid, &o->jail_gid))
		return arg_fail(err, errlen, "--jail-user %s: a user name, or UID[:GID] in numbers",
				a);
	if (o->jail_uid == 0 || o->jail_gid == 0)
		return arg_fail(err, errlen, "--jail-user %s: not root (uid and gid 0 stay root)",
				a);
	return 0;
}

static int parse_one(int c, char *a, struct run_opts *o, char *err, size_t errlen)
{
	switch (c) {
	case 'G': return parse_cgroup(a, o, err, errlen);
	case 'P': return parse_pin(a, o, err, errlen);
	case 'H': o->hugepages = true; return 0;
	case 'E':
		if (parse_uint(a, 1, UINT64_MAX, &o->epoch) < 0)
			return arg_fail(err, errlen, "--epoch %s: a positive number", a);
		return 0;
	case 'K': o->ksm = true; return 0;
	case 'Z': o->confidential = true; return 0;
	case 'J': o->jail = true; return 0;
	case 'j': o->jail_root = a; return 0;
	case 'u': return parse_jail_user(a, o, err, errlen);
	case 't': o->trust = a; return 0;
	case 'b': o->boot_sig = a; return 0;
	case 'M': {
		uint8_t m[MEASURE_BYTES];

		if (measure_parse(a, m))
			return arg_fail(err, errlen, "--measurement %s: 64 hex digits", a);
		o->measurement = a;
		return 0;
	}
	case 'B': o->balloon = true; return 0;
	case 'U':
		if (cpu_template_level(a) < 0 || !a[0])
			return arg_fail(err, errlen,
					"--cpu-template %s: unknown CPU template (one "
					"of " CPU_TEMPLATE_NAMES ")",
					a);
		o->cpu_template = a;
		return 0;
	case 'd': return parse_disk(a, o, err, errlen);
	case 'N': return parse_net(a, o, err, errlen);
	case 'm': return parse_mem(a, o, err, errlen);
	case 'c': return parse_vcpus(a, o, err, errlen);
	case 'i': o->image = a; return 0;
	case 'k': o->kernel = a; return 0;
	case 'r': o->initrd = a; return 0;
	case 'l': o->cmdline = a; return 0;
	case 'a': o->api_path = a; return 0;
	case 'n': o->name = a; return 0;
	case 'p': o->paused = true; return 0;
	case 'X': o->exit_file = a; return 0;
	case 'F':
		if (parse_uint(a, 1, UINT64_MAX, &o->fence_ns) < 0)
			return arg_fail(err, errlen,
					"--fence-deadline %s: a CLOCK_BOOTTIME time in nanoseconds",
					a);
		return 0;
	case 'L': o->listen = a; return 0;
	case 'T': o->tls_dir = a; return 0;
	case 'R': o->peer_name = a; return 0;
	case 'Y': o->key_file = a; return 0;
	case 'S': o->store = a; return 0;
	case 'e': o->eager = true; return 0;
	case 'O':
		if (o->nr_backup_stores == ARRAY_SIZE(o->backup_stores))
			return arg_fail(err, errlen, "%s", "--backup-store: at most 4");
		o->backup_stores[o->nr_backup_stores++] = a;
		return 0;
	case 'C':
		if (strcmp(a, "direct") && strcmp(a, "external"))
			return arg_fail(err, errlen, "--commit %s: expected direct or external", a);
		o->commit = a;
		return 0;
	case 'W': {
		uint64_t v;

		if (parse_uint(a, 0, 86400, &v) < 0)
			return arg_fail(err, errlen, "--wait %s: seconds, 0 = forever", a);
		o->wait_ms = v ? (int)v * 1000 : -1;
		return 0;
	}
	case 'o':
		if (console_cfg_parse(a, &o->console) < 0)
			return arg_fail(
				err, errlen,
				"--console %s: expected stdout, none, file:PATH or socket:PATH", a);
		return 0;
	case 'g': {
		struct group *g = getgrnam(a);

		if (!g)
			return arg_fail(err, errlen, "--api-group %s: no such group", a);
		o->api_gid = (long)g->gr_gid;
		return 0;
	}
	case 'Q':
		if (parse_size(a, &o->console_max) < 0 || o->console_max < CONSOLE_MAX_MIN)
			return arg_fail(err, errlen,
					"--console-max %s: a size of at least 64K (e.g. 16M)", a);
		return 0;
	default: return -EINVAL;
	}
}

/* The virtio devices: at most VM_MAX_VIRTIO in all; a balloon cannot give back hugepages
 * (README "Memory balloon"). */
static int check_devices(const struct run_opts *o, char *err, size_t errlen)
{
	if (o->nr_disks + o->nr_nets + (o->balloon ? 1 : 0) > VM_MAX_VIRTIO)
		return arg_fail(err, errlen, "%s",
				"at most 8 virtio devices in all (--disk, --net, --balloon)");
	if (o->balloon && o->hugepages)
		return arg_fail(err, errlen, "%s",
				"--balloon and --hugepages exclude each other: the balloon gives "
				"back 4 KiB pages, hugepages are reserved 2 MiB at a time");
	return 0;
}

/* Options that only make sense for one of run, restore and incoming, or together. */
static int check_mode(const struct run_opts *o, bool restore, char *err, size_t errlen)
{
	if (o->listen || o->commit)
		return arg_fail(err, errlen, "%s", "--listen and --commit belong to incoming");
	if (check_devices(o, err, errlen))
		return -EINVAL;
	if (restore && (o->image || o->kernel || o->cmdline || o->initrd || o->cpu_template))
		return arg_fail(err, errlen, "%s",
				"restore takes the guest from the snapshot: no --image, --kernel, "
				"--initrd, --cmdline or --cpu-template");
	if (restore)
		return 0;
	if (o->image && o->kernel)
		return arg_fail(err, errlen, "%s", "--image and --kernel exclude each other");
	if (!o->image && !o->kernel)
		return arg_fail(err, errlen, "%s",
				"no guest given: --image FILE or --kernel FILE is required");
	if (o->initrd && !o->kernel)
		return arg_fail(err, errlen, "%s", "--initrd needs --kernel");
	if (o->nr_pin > o->vcpus)
		return arg_fail(err, errlen, "%s", "--pin-vcpus names more CPUs than --vcpus");
	return 0;
}

static int check_incoming(const struct run_opts *o, char *err, size_t errlen)
{
	if (o->image || o->kernel || o->cmdline || o->initrd || o->snapshot || o->mem_bytes ||
	    o->vcpus || o->paused)
		return arg_fail(err, errlen, "%s",
				"incoming takes the guest, its memory size and vCPUs from the "
				"source: no --image, --kernel, --initrd, --cmdline, --mem, --vcpus "
				"or --paused");
	if (!o->listen || !o->tls_dir)
		return arg_fail(err, errlen, "%s",
				"incoming needs --listen HOST:PORT and --tls-dir DIR");
	return check_devices(o, err, errlen);
}

/* --peer-name names the source: only incoming has one. */
static int check_peer(const struct run_opts *o, bool incoming, char *err, size_t errlen)
{
	if (o->peer_name && !incoming)
		return arg_fail(err, errlen, "%s",
				"--peer-name is for incoming (the source's certificate name)");
	return 0;
}

int vmm_parse_run(int argc, char **argv, struct run_opts *o, char *err, size_t errlen)
{
	static const struct option opts[] = {
		{ "mem", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'c' },
		{ "image", required_argument, NULL, 'i' },
		{ "cmdline", required_argument, NULL, 'l' },
		{ "api", required_argument, NULL, 'a' },
		{ "name", required_argument, NULL, 'n' },
		{ "console", required_argument, NULL, 'o' },
		{ "console-max", required_argument, NULL, 'Q' },
		{ "api-group", required_argument, NULL, 'g' },
		{ "paused", no_argument, NULL, 'p' },
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'r' },
		{ "listen", required_argument, NULL, 'L' },
		{ "tls-dir", required_argument, NULL, 'T' },
		{ "peer-name", required_argument, NULL, 'R' },
		{ "key", required_argument, NULL, 'Y' },
		{ "store", required_argument, NULL, 'S' },
		{ "eager", no_argument, NULL, 'e' },
		{ "backup-store", required_argument, NULL, 'O' },
		{ "wait", required_argument, NULL, 'W' },
		{ "commit", required_argument, NULL, 'C' },
		{ "fence-deadline", required_argument, NULL, 'F' },
		{ "exit-file", required_argument, NULL, 'X' },
		{ "disk", required_argument, NULL, 'd' },
		{ "net", required_argument, NULL, 'N' },
		{ "pin-vcpus", required_argument, NULL, 'P' },
		{ "hugepages", no_argument, NULL, 'H' },
		{ "ksm", no_argument, NULL, 'K' },
		{ "confidential", no_argument, NULL, 'Z' },
		{ "jail", no_argument, NULL, 'J' },
		{ "jail-root", required_argument, NULL, 'j' },
		{ "jail-user", required_argument, NULL, 'u' },
		{ "trust", required_argument, NULL, 't' },
		{ "boot-sig", required_argument, NULL, 'b' },
		{ "measurement", required_argument, NULL, 'M' },
		{ "epoch", required_argument, NULL, 'E' },
		{ "cgroup", required_argument, NULL, 'G' },
		{ "balloon", no_argument, NULL, 'B' },
		{ "cpu-template", required_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	bool restore = !strcmp(argv[0], "restore"), incoming = !strcmp(argv[0], "incoming");
	int c;

	memset(o, 0, sizeof(*o));
	o->mem_bytes = restore || incoming ? 0 : 256ull << 20; /* from the snapshot/source */
	o->vcpus = restore || incoming ? 0 : 1;
	o->wait_ms = -1;
	o->name = "vm";
	o->console.kind = CONSOLE_STDOUT;
	o->console_max = CONSOLE_MAX_DEFAULT;
	o->api_gid = -1;
	o->jail_uid = o->jail_gid = -1;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		if (c == '?')
			return arg_fail(err, errlen, "unknown option %s", argv[optind - 1]);
		if (c == ':')
			return arg_fail(err, errlen, "option %s needs a value", argv[optind - 1]);
		if (parse_one(c, optarg, o, err, errlen) < 0)
			return -EINVAL;
	}
	o->console.max_bytes = o->console_max;
	if (restore && optind < argc)
		o->snapshot = argv[optind++];
	if (restore && !o->snapshot)
		return arg_fail(err, errlen, "%s",
				"no snapshot given: cme-vmm restore FILE, or --store DIR VM[/ID]");
	if (optind < argc)
		return arg_fail(err, errlen, "unexpected argument %s", argv[optind]);
	if (check_peer(o, incoming, err, errlen))
		return -EINVAL;
	if (o->jail_root && !o->jail)
		return arg_fail(err, errlen, "%s",
				"--jail-root needs --jail (the seccomp sandbox comes with it)");
	if (o->jail_uid >= 0 && !o->jail_root)
		return arg_fail(err, errlen, "%s",
				"--jail-user needs --jail-root (the devices it may open are made "
				"there)");
	if (o->key_file && !restore)
		return arg_fail(err, errlen, "%s", "--key is for restore (the snapshot's key)");
	if (o->store && !restore)
		return arg_fail(err, errlen, "%s", "--store is for restore (the backup store)");
	if (o->eager && !o->store)
		return arg_fail(err, errlen, "%s", "--eager is for restore --store");
	if (o->store && !o->key_file)
		return arg_fail(err, errlen, "%s", "--store needs --key (the store's key file)");
	if ((o->trust || o->boot_sig) && restore)
		return arg_fail(err, errlen, "%s",
				"--trust and --boot-sig are for run and incoming (restore checks "
				"--measurement)");
	if (o->boot_sig && !o->trust)
		return arg_fail(err, errlen, "%s", "--boot-sig needs --trust KEYS");
	if (o->measurement && restore && !o->key_file)
		return arg_fail(err, errlen, "%s",
				"--measurement on restore needs --key: a plain snapshot's state "
				"(its measurement with it) can be rewritten by whoever can write "
				"the file");
	if (o->measurement && !restore && !incoming)
		return arg_fail(err, errlen, "%s",
				"--measurement is for restore and incoming (run measures what it "
				"loads; --trust checks it)");
	return incoming ? check_incoming(o, err, errlen) : check_mode(o, restore, err, errlen);
}
