/* CPU templates on real KVM: a guest on a template sees only the template's features (asked
 * with CPUID from inside), keeps them through a snapshot and a live migration, and a
 * destination that does not offer every feature the guest sees refuses it by name before
 * any page is sent, while the guest runs on at the source.
 *
 * A destination that offers less is made honestly, on one machine: `cme-vmm incoming
 * --cpu-template x86-64-v1` offers arriving guests no more than x86-64-v1, as a host whose
 * KVM had only those features would. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common.h"
#include "cpu_priv.h"
#include "guestrun.h"
#include "vm_priv.h"
#include "kvmtests.h"
#include "migrun.h"

#define SRC	"127.0.0.1"
#define DST	"127.0.0.2"
#define V1	"x86-64-v1"
#define LISTMAX 4096

static const char *const nodes[] = { SRC, DST, NULL };

/* ---- helpers ---------------------------------------------------------------------- */

/* This host's features (KVM's supported CPUID), or the test is skipped. */
static bool host_features(char *have, size_t len)
{
	if (vm_host_cpu_features(have, len) > 0)
		return true;
	test_skip("cannot ask KVM for its supported CPUID");
	return false;
}

/* The names of what template level needs and have lacks, ", "-separated; how many. */
static unsigned template_lacks(const char *have, int level, char *out, size_t len)
{
	char need[LISTMAX];

	CU_ASSERT_EQUAL_FATAL(cpu_template_features(level, need, sizeof(need)), 0);
	return cpu_list_lacks(have, need, out, len);
}

/* Boot the test guest on template tmpl (printing its CPUID lines). */
static void boot_on(struct vmm_proc *p, const char *tmpl, const char *cmdline)
{
	const char *args[] = { "--mem",		 "256M",      "--vcpus", "2",	   "--image",
			       test_guest(),	 "--cmdline", cmdline,	 "--name", "tmpl",
			       "--cpu-template", tmpl,	      NULL };

	CU_ASSERT_EQUAL_FATAL(vmm_start(p, args), 0);
	if (!vmm_console_wait(p, "READY", 30000)) {
		char *e = test_read_file(p->errlog);

		printf("\n    no READY; stderr:\n%s\n", e);
		free(e);
		CU_FAIL_FATAL("guest did not print READY");
	}
}

struct regs {
	unsigned eax, ebx, ecx, edx;
};

/* The guest's "CPUID leaf=L sub=S ..." line for (leaf, sub). */
static bool guest_cpuid(struct vmm_proc *p, unsigned leaf, unsigned sub, struct regs *r)
{
	char *c = test_read_file(p->console), want[64];
	const char *at;
	bool ok;

	snprintf(want, sizeof(want), "CPUID leaf=0x%x sub=%u ", leaf, sub);
	at = strstr(c, want);
	ok = at && sscanf(at + strlen(want), "eax=0x%x ebx=0x%x ecx=0x%x edx=0x%x", &r->eax,
			  &r->ebx, &r->ecx, &r->edx) == 4;
	free(c);
	return ok;
}

/* Does the guest's CPUID show feature name? */
static bool guest_sees(struct vmm_proc *p, const char *name)
{
	const struct cpu_feature *f = cpu_feature_find(name);
	struct regs r;
	unsigned v[4];

	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	CU_ASSERT_FATAL(guest_cpuid(p, f->leaf, f->subleaf, &r));
	v[0] = r.eax, v[1] = r.ebx, v[2] = r.ecx, v[3] = r.edx;
	return v[f->reg] >> f->bit & 1;
}

/* The VMM's status: cpu_template, and cpu_features as a comma-separated list. */
static void status_cpu(struct vmm_proc *p, char *tmpl, size_t tlen, char *feats, size_t flen)
{
	json_t *r = vmm_request(p, "status", NULL), *a = json_object_get(r, "cpu_features"), *v;
	const char *t = json_string_value(json_object_get(r, "cpu_template"));
	size_t i, off = 0;

	snprintf(tmpl, tlen, "%s", t ? t : "(none)");
	feats[0] = 0;
	json_array_foreach(a, i, v) off +=
		(size_t)snprintf(feats + off, off < flen ? flen - off : 0, "%s%s", i ? "," : "",
				 json_string_value(v));
	CU_ASSERT(json_is_array(a) && off < flen);
	json_decref(r);
}

/* ---- what the guest sees ------------------------------------------------------------ */

/* vCPU v's CPUID table as KVM holds it (KVM_GET_CPUID2) into c (256 entries). */
static void vcpu_cpuid(struct vm *vm, unsigned v, struct kvm_cpuid2 *c)
{
	memset(c, 0, sizeof(*c) + 256 * sizeof(c->entries[0]));
	c->nent = 256;
	CU_ASSERT_EQUAL_FATAL(ioctl(vm->vcpus[v].fd, KVM_GET_CPUID2, c), 0);
}

static bool table_has(const struct kvm_cpuid2 *c, const struct cpu_feature *f)
{
	struct kvm_cpuid_entry2 *e = cpu_find(c, f->leaf, f->subleaf);
	uint32_t r[4] = { e ? e->eax : 0, e ? e->ebx : 0, e ? e->ecx : 0, e ? e->edx : 0 };

	return r[f->reg] >> f->bit & 1;
}

/* True when KVM answers with a feature it never offered (have): its table is the host
 * CPU's own, as PVM's is where the CPU cannot trap CPUID (the guest runs it natively). */
static bool kvm_shows_native(const struct kvm_cpuid2 *c, const char *have)
{
	size_t n;
	const struct cpu_feature *t = cpu_feature_table(&n);

	for (size_t i = 0; i < n; i++)
		if (table_has(c, &t[i]) && cpu_list_lacks(have, t[i].name, NULL, 0)) {
			printf("\n    KVM shows the vCPU %s, which it does not offer: it answers "
			       "CPUID from the host CPU (PVM), no VMM can mask what the guest sees "
			       "here; the template still rules the VM's state and migrations",
			       t[i].name);
			return true;
		}
	return false;
}

/* KVM's CPUID table of every vCPU of a VM made here on template level: the VMM's answer to
 * every CPUID the guest executes (each CPUID exits to KVM under VT-x/AMD-V). Each named
 * feature is there exactly when the template keeps it and this host has it; the hypervisor
 * bit and each vCPU's own APIC ID are the VMM's. Returns false when KVM shows the host
 * CPU's own table instead (nothing to compare). */
static bool expect_vcpu_cpuid(int level, const char *have)
{
	struct vm_config cfg = { .name = "tmpl",
				 .mem_bytes = 16 << 20,
				 .nr_vcpus = 2,
				 .console = { .kind = CONSOLE_NONE },
				 .cpu_template = cpu_template_name(level) };
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 256 * sizeof(c->entries[0]));
	size_t n;
	const struct cpu_feature *t = cpu_feature_table(&n);
	struct vm *vm = NULL;
	bool native = false;

	CU_ASSERT_EQUAL_FATAL(vm_create(&cfg, &vm), 0);
	for (unsigned v = 0; v < cfg.nr_vcpus && !native; v++) {
		vcpu_cpuid(vm, v, c);
		native = kvm_shows_native(c, have);
		for (size_t i = 0; i < n && !native; i++) {
			bool want = !cpu_list_lacks(have, t[i].name, NULL, 0) &&
				    (level == 0 || (t[i].level && t[i].level <= level));

			CU_ASSERT_EQUAL(table_has(c, &t[i]), want);
			if (table_has(c, &t[i]) != want)
				printf("\n    %s vcpu %u: %s %s", cfg.cpu_template, v, t[i].name,
				       want ? "missing" : "not masked");
		}
		CU_ASSERT_PTR_NOT_NULL_FATAL(cpu_find(c, 1, 0));
		CU_ASSERT_EQUAL(cpu_find(c, 1, 0)->ebx >> 24, v);
		CU_ASSERT(native || cpu_find(c, 1, 0)->ecx >> 31);
	}
	vm_destroy(vm);
	free(c);
	return !native;
}

/* The guest's own CPUID (cpuid=1 lines): exactly the template's features. */
static void expect_guest_view(struct vmm_proc *p, int level)
{
	size_t n;
	const struct cpu_feature *t = cpu_feature_table(&n);

	for (size_t i = 0; i < n; i++) {
		bool in_tmpl = t[i].level && t[i].level <= level;

		CU_ASSERT(!guest_sees(p, t[i].name) || in_tmpl);
		if (guest_sees(p, t[i].name) && !in_tmpl)
			printf("\n    the guest sees %s", t[i].name);
	}
	CU_ASSERT(!guest_sees(p, "avx") && !guest_sees(p, "avx2"));
}

/* On x86-64-v1 every vCPU is given the template's features and nothing this host offers
 * beyond them (AVX included, on hosts that have it): KVM holds that table for each vCPU and
 * the guest's own CPUID shows it, wherever KVM answers CPUID from it; status says the same;
 * the guest runs its checks clean. The host template gives what KVM offers. */
static void test_guest_masked(void)
{
	char have[LISTMAX], need[LISTMAX], tmpl[32], feats[LISTMAX], extra[LISTMAX];
	struct vmm_proc p;
	bool kvm_keeps;

	if (!guest_available() || !host_features(have, sizeof(have)))
		return;
	CU_ASSERT_EQUAL_FATAL(template_lacks(have, 1, extra, sizeof(extra)), 0);
	kvm_keeps = expect_vcpu_cpuid(0, have) && expect_vcpu_cpuid(1, have);
	boot_on(&p, V1, "wss_mb=16 cpuid=1");
	CU_ASSERT_EQUAL_FATAL(cpu_template_features(1, need, sizeof(need)), 0);
	status_cpu(&p, tmpl, sizeof(tmpl), feats, sizeof(feats));
	CU_ASSERT_STRING_EQUAL(tmpl, V1);
	CU_ASSERT_STRING_EQUAL(feats, need);
	if (kvm_keeps)
		expect_guest_view(&p, 1);
	CU_ASSERT(vmm_wait_heartbeats(&p, 3, 20000));
	guest_check_console(&p);
	printf("\n    the VMM gives every vCPU %s; this host offers %u more, masked", need,
	       cpu_list_lacks(need, have, NULL, 0));
	vmm_kill(&p);
}

/* The host template shows the guest what KVM offers; a template beyond this host is
 * refused at start, naming what it lacks; an unknown name lists the known ones. */
static void test_host_and_refusals(void)
{
	char have[LISTMAX], tmpl[32], feats[LISTMAX], lacks[1024], name[32], want[1200];
	const char *bad[] = { test_bin("cme-vmm"), "run",	"--image", test_guest(),
			      "--cpu-template",	   "x86-64-v7", NULL };
	const char *beyond[] = { test_bin("cme-vmm"), "run", "--image", test_guest(),
				 "--cpu-template",    name,  NULL };
	struct vmm_proc p;
	char *out;
	int level = 1;

	if (!guest_available() || !host_features(have, sizeof(have)))
		return;
	boot_on(&p, "host", "wss_mb=16 cpuid=1");
	status_cpu(&p, tmpl, sizeof(tmpl), feats, sizeof(feats));
	CU_ASSERT_STRING_EQUAL(tmpl, "host");
	CU_ASSERT_STRING_EQUAL(feats, have);
	CU_ASSERT_EQUAL(guest_sees(&p, "x2apic"), !cpu_list_lacks(have, "x2apic", NULL, 0));
	vmm_kill(&p);
	CU_ASSERT_EQUAL(test_run(bad, &out, 30000), 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "--cpu-template x86-64-v7: unknown CPU template (one of "
					   "host, x86-64-v1, x86-64-v2, x86-64-v3, x86-64-v4)"));
	free(out);
	while (level <= CPU_TEMPLATE_MAX_LEVEL &&
	       !template_lacks(have, level, lacks, sizeof(lacks)))
		level++;
	if (level > CPU_TEMPLATE_MAX_LEVEL) {
		test_skip("this host offers every template up to x86-64-v4");
		return;
	}
	snprintf(name, sizeof(name), "%s", cpu_template_name(level));
	snprintf(want, sizeof(want),
		 "--cpu-template %s: this host lacks %s (KVM does not offer "
		 "them)",
		 name, lacks);
	CU_ASSERT_EQUAL(test_run(beyond, &out, 30000), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, want));
	if (!strstr(out, want))
		printf("\n    expected \"%s\", got:\n%s", want, out);
	else
		printf("\n    refused: %s", want);
	free(out);
}

/* A snapshot keeps the template: the restored guest sees what it saw. */
static void test_snapshot_keeps(void)
{
	char have[LISTMAX], tmpl[32], before[LISTMAX], after[LISTMAX], snap[600], args[700];
	const char *rargs[] = { snap, "--name", "tmpl", NULL };
	struct vmm_proc p, q;
	json_t *r;

	if (!guest_available() || !host_features(have, sizeof(have)))
		return;
	boot_on(&p, V1, "wss_mb=16");
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&p, 3, 20000));
	status_cpu(&p, tmpl, sizeof(tmpl), before, sizeof(before));
	snprintf(snap, sizeof(snap), "%s/v1.snap", test_tmpdir());
	snprintf(args, sizeof(args), "{\"path\":\"%s\",\"stop\":true}", snap);
	r = vmm_request(&p, "snapshot", args);
	CU_ASSERT_TRUE_FATAL(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	CU_ASSERT_EQUAL(vmm_wait(&p, 30000), 0);
	CU_ASSERT_EQUAL_FATAL(vmm_start_verb(&q, "restore", rargs), 0);
	CU_ASSERT(vmm_wait_heartbeats(&q, 3, 30000));
	status_cpu(&q, tmpl, sizeof(tmpl), after, sizeof(after));
	CU_ASSERT_STRING_EQUAL(tmpl, V1);
	CU_ASSERT_STRING_EQUAL(after, before);
	guest_check_console(&q);
	vmm_kill(&q);
}

/* ---- live migration --------------------------------------------------------------- */

/* A guest on x86-64-v1 moves to a destination that offers exactly x86-64-v1: it keeps
 * running there, its checks clean, on the same template. */
static void test_migrate_on_template(void)
{
	char pki[600], tls[2][700], have[LISTMAX], tmpl[32], f0[LISTMAX], f1[LISTMAX];
	const char *extra[] = { "--cpu-template", V1, NULL };
	struct vmm_proc src, dst, *both[] = { &src, &dst };
	struct hb_chain c;
	struct mig_run r;
	int port;

	if (!guest_available() || !host_features(have, sizeof(have)))
		return;
	CU_ASSERT_EQUAL_FATAL(mig_certs(pki, sizeof(pki), nodes), 0);
	net_tls_dir(tls[0], sizeof(tls[0]), pki, SRC);
	net_tls_dir(tls[1], sizeof(tls[1]), pki, DST);
	boot_on(&src, V1, "wss_mb=64");
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&src, 4, 30000));
	status_cpu(&src, tmpl, sizeof(tmpl), f0, sizeof(f0));
	port = mig_incoming(&dst, DST, tls[1], extra);
	CU_ASSERT_FATAL(port > 0);
	mig_cli(&r, &src, DST, port, tls[0], NULL, 120000);
	CU_ASSERT_EQUAL(r.status, 0);
	if (r.status)
		printf("\n    cme-vmm migrate (%d):\n%s\n", r.status, r.out);
	mig_run_free(&r);
	mig_expect_source_migrated(&src);
	CU_ASSERT(vmm_wait_heartbeats(&dst, 4, 30000));
	mig_check_consoles(both, 2, &c);
	CU_ASSERT_EQUAL(c.first[1].seq, c.last[0].seq + 1);
	status_cpu(&dst, tmpl, sizeof(tmpl), f1, sizeof(f1));
	CU_ASSERT_STRING_EQUAL(tmpl, V1);
	CU_ASSERT_STRING_EQUAL(f1, f0);
	vmm_kill(&dst);
}

/* What a destination on template level lacks of a guest on "host": KVM's own comparison
 * of the two tables, as the destination makes it (the list cut as it cuts it). */
static void lacks_of_host(int level, char *out, size_t len)
{
	struct kvm_cpuid2 *host = NULL, *dst = NULL;
	char why[256];
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL_FATAL(cpu_supported(fd, &host), 0);
	CU_ASSERT_EQUAL_FATAL(cpu_supported(fd, &dst), 0);
	close(fd);
	CU_ASSERT_EQUAL_FATAL(cpu_template_apply(dst, level, why, sizeof(why)), 0);
	cpu_lacks(host, dst, out, len);
	free(host);
	free(dst);
}

/* A guest on "host" sees features beyond x86-64-v1 (on any host that has one); a
 * destination that offers only x86-64-v1 refuses it in its WELCOME, naming them: no page
 * moves, the destination never runs it, the guest runs on at the source. */
static void test_refused_names_features(void)
{
	char pki[600], tls[2][700], have[LISTMAX], v1[LISTMAX], lacks[2048], want[400];
	const char *extra[] = { "--cpu-template", V1, NULL };
	struct vmm_proc src, dst;
	struct mig_run r;
	const char *e;
	int port;

	if (!guest_available() || !host_features(have, sizeof(have)))
		return;
	CU_ASSERT_EQUAL_FATAL(cpu_template_features(1, v1, sizeof(v1)), 0);
	if (!cpu_list_lacks(v1, have, lacks, sizeof(lacks))) {
		test_skip("this host offers nothing beyond x86-64-v1");
		return;
	}
	CU_ASSERT_EQUAL_FATAL(mig_certs(pki, sizeof(pki), nodes), 0);
	net_tls_dir(tls[0], sizeof(tls[0]), pki, SRC);
	net_tls_dir(tls[1], sizeof(tls[1]), pki, DST);
	boot_on(&src, "host", "wss_mb=64");
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&src, 4, 30000));
	port = mig_incoming(&dst, DST, tls[1], extra);
	CU_ASSERT_FATAL(port > 0);
	mig_cli(&r, &src, DST, port, tls[0], NULL, 120000);
	e = mig_error(r.fin);
	CU_ASSERT_EQUAL(r.status, 1);
	lacks_of_host(1, want, 180);
	snprintf(v1, sizeof(v1), "destination refused: this host lacks %s that the guest sees",
		 want);
	CU_ASSERT_STRING_EQUAL(e, v1);
	/* It begins with the first feature beyond x86-64-v1 that this host has, by name. */
	snprintf(want, sizeof(want), "this host lacks %.*s", (int)strcspn(lacks, ","), lacks);
	CU_ASSERT_PTR_NOT_NULL(strstr(e, want));
	printf("\n    %s", e);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(r.fin, "bytes_sent")), 0);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(r.fin, "round")), 0);
	mig_run_free(&r);
	CU_ASSERT_EQUAL(vmm_wait(&dst, 30000), 0);
	CU_ASSERT_EQUAL(dst.status, 1);
	CU_ASSERT(test_wait_file_has(dst.errlog, "incoming migration failed: this host lacks", 1));
	mig_expect_no_guest(&dst);
	mig_expect_source_runs(&src);
	vmm_kill(&src);
}

void suite_cputemplate(void)
{
	static const struct test_case cases[] = {
		{ "x86-64-v1: every vCPU is given the template's features only",
		  test_guest_masked },
		{ "host template; templates beyond the host refused by name",
		  test_host_and_refusals },
		{ "a snapshot keeps the template", test_snapshot_keeps },
		{ "a guest on x86-64-v1 migrates and keeps its template",
		  test_migrate_on_template },
		{ "a destination that lacks a feature refuses before any page, by name",
		  test_refused_names_features },
		{ NULL, NULL },
	};

	test_add_suite("cputemplate", cases);
}
